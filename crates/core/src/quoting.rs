//! What an error message may quote of its input: excerpts cut with an ellipsis, and
//! messages whose quoted spans (`"..."` with backslash escapes, or `` `...` ``) are each cut
//! to an excerpt. The API cuts every answer this way (200 characters a span), the pack
//! loader the values it quotes from a pack's files (40).

use std::borrow::Cow;

/// `input` cut to `max_chars` characters, with an ellipsis when cut.
pub fn excerpt(input: &str, max_chars: usize) -> Cow<'_, str> {
    match input.char_indices().nth(max_chars) {
        None => Cow::Borrowed(input),
        Some((cut, _)) => Cow::Owned(format!("{}…", &input[..cut])),
    }
}

/// `message` with each quoted span cut to an [`excerpt`] of `max_chars`; an unclosed quote
/// runs to the end of the message.
pub fn clip_quoted(message: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(open) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[open] as char;
        out.push_str(&rest[..=open]);
        let body = &rest[open + 1..];
        let mut escaped = false;
        let close = body.char_indices().find_map(|(i, c)| {
            let closes = !escaped && c == quote;
            escaped = !escaped && c == '\\' && quote == '"';
            closes.then_some(i)
        });
        let end = close.unwrap_or(body.len());
        out.push_str(&excerpt(&body[..end], max_chars));
        match close {
            Some(i) => {
                out.push(quote);
                rest = &body[i + 1..];
            }
            None => rest = "",
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_are_cut_and_the_rest_kept() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééééé", 2), "éé…");
        assert_eq!(clip_quoted(r#"field "abcdef" and `xyz`"#, 3), r#"field "abc…" and `xyz`"#);
        assert_eq!(clip_quoted(r#"a "b\"cdef" c"#, 3), r#"a "b\"…" c"#);
        assert_eq!(clip_quoted("open \"abcdef", 2), "open \"ab…");
    }
}
