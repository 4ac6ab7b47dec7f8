//! Secret values out of an action's output: every occurrence of a value the action was
//! given as a secret (its sealed parameters, its declared datastore secrets) becomes
//! [`MASK`] before the output is kept anywhere.
//!
//! What counts as an occurrence of a value:
//! - a string: its text and, where JSON writes it differently, its JSON-escaped form (the
//!   text between the quotes of `serde_json::to_string`), so a secret inside a JSON line
//!   is caught too;
//! - a number, array or object: its compact JSON text;
//! - nothing for empty strings, `null` and booleans (masking every `true` of the output
//!   would hide nothing and ruin JSON results).
//!
//! Output arrives in chunks that split a secret wherever the child's writes and the pipe
//! put the cut, so [`MaskStream`] keeps back the last (longest pattern − 1) bytes it has
//! not matched yet, until more arrives or the stream ends. Matching is leftmost-longest: of
//! two secrets where one is a prefix of the other, the longer is masked whole. The result
//! is exactly that of masking the whole stream at once.

use std::fmt;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// What replaces a secret (the mask of sealed parameters in stored rows too).
pub use attune_core::execution::MASK;

/// The secret values of one job, ready to find in its output. Its `Debug` shows how many
/// patterns it has, never them.
#[derive(Clone, Default)]
pub struct Masker {
    /// `None` when there is nothing to mask: output passes through untouched.
    finder: Option<AhoCorasick>,
    /// Bytes a stream keeps back: the longest pattern's length minus one.
    keep: usize,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let patterns = self.finder.as_ref().map_or(0, AhoCorasick::patterns_len);
        f.debug_struct("Masker").field("patterns", &patterns).finish()
    }
}

impl Masker {
    /// A masker of `values` (see the module doc for what each value masks). Fails only
    /// when the values are too many or too large to search for; the error names no value.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a Value>) -> Result<Masker, String> {
        let mut patterns: Vec<String> = values.into_iter().flat_map(patterns_of).collect();
        patterns.sort_unstable();
        patterns.dedup();
        if patterns.is_empty() {
            return Ok(Masker::default());
        }
        let keep = patterns.iter().map(String::len).max().unwrap_or(1) - 1;
        let finder = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| format!("cannot search the output for {} secret values: {e}", patterns.len()))?;
        Ok(Masker { finder: Some(finder), keep })
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.finder.is_none()
    }

    /// Whether `text` holds a secret value.
    pub fn finds(&self, text: &str) -> bool {
        self.finder.as_ref().is_some_and(|f| f.is_match(text))
    }

    /// A stream to mask chunk by chunk.
    pub fn stream(&self) -> MaskStream {
        MaskStream { masker: self.clone(), pending: Vec::new() }
    }

    /// `bytes`, masked, all at once.
    pub fn mask(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = self.stream();
        let mut out = Vec::with_capacity(bytes.len());
        stream.push(bytes, &mut out);
        stream.finish(&mut out);
        out
    }

    /// `text`, masked. A match of valid UTF-8 patterns in valid UTF-8 text spans whole
    /// characters, so the result is valid UTF-8 too.
    pub fn mask_str(&self, text: &str) -> String {
        if !self.finds(text) {
            return text.to_string();
        }
        String::from_utf8(self.mask(text.as_bytes()))
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// `value` with every string in it (keys included) masked.
    pub fn mask_json(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.mask_str(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.mask_json(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (self.mask_str(&k), self.mask_json(v))).collect())
            }
            other => other,
        }
    }
}

/// The texts that reveal `value`.
fn patterns_of(value: &Value) -> Vec<String> {
    match value {
        Value::Null | Value::Bool(_) => Vec::new(),
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => {
            let quoted = Value::String(s.clone()).to_string();
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped == s {
                vec![s.clone()]
            } else {
                vec![s.clone(), escaped.to_string()]
            }
        }
        other => vec![other.to_string()],
    }
}

/// One output stream being masked: [`push`](MaskStream::push) each chunk as it is read,
/// then [`finish`](MaskStream::finish) at its end.
pub struct MaskStream {
    masker: Masker,
    /// Read, not yet passed on: the end of the input that may be the start of a secret.
    pending: Vec<u8>,
}

impl MaskStream {
    /// Adds `chunk` to the stream and appends to `out` what is settled: all of the input
    /// but its last `keep` bytes, unless a secret that starts before them is masked whole.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        let Some(finder) = &self.masker.finder else {
            out.extend_from_slice(chunk);
            return;
        };
        self.pending.extend_from_slice(chunk);
        // A match starting before `cut` is complete within `pending` (it is at most keep
        // + 1 bytes long), and so is any longer one starting there: it can be decided now.
        let cut = self.pending.len().saturating_sub(self.masker.keep);
        let mut done = 0;
        for m in finder.find_iter(&self.pending) {
            if m.start() >= cut {
                break;
            }
            out.extend_from_slice(&self.pending[done..m.start()]);
            out.extend_from_slice(MASK.as_bytes());
            done = m.end();
        }
        let settled = done.max(cut);
        out.extend_from_slice(&self.pending[done..settled]);
        self.pending.drain(..settled);
    }

    /// The end of the stream: appends to `out` what was kept back, masked.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let pending = std::mem::take(&mut self.pending);
        match &self.masker.finder {
            Some(finder) => finder.replace_all_with_bytes(&pending, out, |_, _, dst| {
                dst.extend_from_slice(MASK.as_bytes());
                true
            }),
            None => out.extend_from_slice(&pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn masker(values: &[Value]) -> Masker {
        Masker::new(values).unwrap()
    }

    /// `chunks` through a stream of `m`, as text.
    fn streamed(m: &Masker, chunks: &[&[u8]]) -> String {
        let mut stream = m.stream();
        let mut out = Vec::new();
        for chunk in chunks {
            stream.push(chunk, &mut out);
        }
        stream.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_secret_split_at_any_position_across_two_chunks_is_masked_whole() {
        let m = masker(&[json!("hunter2-secret")]);
        let text = "before hunter2-secret after";
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(streamed(&m, &[a, b]), "before ******** after", "cut at {cut}");
        }
        // Byte by byte, and back to back.
        let bytes: Vec<&[u8]> = text.as_bytes().chunks(1).collect();
        assert_eq!(streamed(&m, &bytes), "before ******** after");
        assert_eq!(streamed(&m, &[b"hunter2-secrethunter2-secret"]), "****************");
    }

    #[test]
    fn of_overlapping_secrets_the_longest_is_masked() {
        let m = masker(&[json!("abc"), json!("abcdef"), json!("defg")]);
        let text = "xabcdefgy abcx abcdeX";
        let expected = "x********gy ********x ********deX";
        for cut in 0..=text.len() {
            let (a, b) = text.as_bytes().split_at(cut);
            assert_eq!(streamed(&m, &[a, b]), expected, "cut at {cut}");
        }
        // Three chunks, every pair of cuts.
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let b = text.as_bytes();
                assert_eq!(streamed(&m, &[&b[..i], &b[i..j], &b[j..]]), expected, "cuts at {i}, {j}");
            }
        }
    }

    #[test]
    fn a_secret_ending_the_stream_is_masked() {
        let m = masker(&[json!("tail-secret")]);
        assert_eq!(streamed(&m, &[b"x tail-sec", b"ret"]), "x ********");
        assert_eq!(streamed(&m, &[b"x tail-sec"]), "x tail-sec", "a part alone is not the secret");
    }

    #[test]
    fn no_secrets_pass_everything_through() {
        let m = masker(&[json!(""), Value::Null, json!(true)]);
        assert!(m.is_empty());
        let mut stream = m.stream();
        let mut out = Vec::new();
        stream.push(b"all of ", &mut out);
        assert_eq!(out, b"all of ", "nothing is kept back");
        stream.push(b"it\0\xff", &mut out);
        stream.finish(&mut out);
        assert_eq!(out, b"all of it\0\xff");
        assert_eq!(m.mask_str("true"), "true");
    }

    #[test]
    fn strings_mask_their_json_escaped_form_and_other_values_their_json() {
        let m = masker(&[json!("pa\"ss\\wo\nrd"), json!(424242), json!({"k": "v"})]);
        let line = format!(r#"{{"p":{},"n":424242,"o":{{"k":"v"}}}}"#, json!("pa\"ss\\wo\nrd"));
        assert_eq!(line, r#"{"p":"pa\"ss\\wo\nrd","n":424242,"o":{"k":"v"}}"#);
        assert_eq!(m.mask_str(&line), r#"{"p":"********","n":********,"o":********}"#);
        assert_eq!(m.mask_str("raw: pa\"ss\\wo\nrd"), "raw: ********");
        assert!(m.finds("x424242x") && !m.finds("4242"));
    }

    #[test]
    fn json_values_are_masked_in_keys_and_strings() {
        let m = masker(&[json!("s3cret")]);
        let masked = m.mask_json(json!({"a": ["x s3cret", 1], "s3cret": null}));
        assert_eq!(masked, json!({"a": ["x ********", 1], "********": null}));
    }

    #[test]
    fn debug_names_no_value() {
        let m = masker(&[json!("visible-if-leaked")]);
        assert_eq!(format!("{m:?}"), "Masker { patterns: 1 }");
    }

    #[test]
    fn non_utf8_output_around_a_secret_is_kept_as_bytes() {
        let m = masker(&[json!("é-secret")]);
        let input = b"\xff\xfe \xc3\xa9-secret \xc3";
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let mut stream = m.stream();
            let mut out = Vec::new();
            stream.push(a, &mut out);
            stream.push(b, &mut out);
            stream.finish(&mut out);
            assert_eq!(out, b"\xff\xfe ******** \xc3", "cut at {cut}");
        }
    }
}
