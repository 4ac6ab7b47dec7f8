//! Bounded capture of a child's stdout/stderr: the first `limit` bytes are kept, the rest
//! is drained and counted (so the child never blocks on a full pipe), and a cut stream
//! ends with a marker. The last few KiB are also kept, for error messages and for the
//! output line of a long stream.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};

pub const TRUNCATION_MARKER: &str = "\n... (output truncated)";
/// How much of a stream's end is kept apart from the head.
pub const TAIL_BYTES: usize = 8 * 1024;

#[derive(Debug, Default)]
pub struct Captured {
    pub head: Vec<u8>,
    pub tail: VecDeque<u8>,
    pub total: usize,
}

impl Captured {
    pub fn truncated(&self, limit: usize) -> bool {
        self.total > limit
    }

    /// The kept text, with the marker when the stream was cut.
    pub fn text(&self, limit: usize) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.truncated(limit) {
            text.push_str(TRUNCATION_MARKER);
        }
        text
    }

    /// The end of the stream (the whole of it when it was short).
    pub fn tail_text(&self) -> String {
        let (a, b) = self.tail.as_slices();
        let mut bytes = a.to_vec();
        bytes.extend_from_slice(b);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Reads `stream` to its end, keeping at most `limit` bytes of its head.
pub async fn capture(mut stream: impl AsyncRead + Unpin, limit: usize) -> Captured {
    let mut captured = Captured::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let room = limit.saturating_sub(captured.head.len());
        captured.head.extend_from_slice(&chunk[..room.min(n)]);
        captured.total += n;
        captured.tail.extend(chunk.iter().rev().take(TAIL_BYTES).rev());
        let excess = captured.tail.len().saturating_sub(TAIL_BYTES);
        captured.tail.drain(..excess);
    }
    captured
}

/// The last line of `text` that parses as a JSON object.
pub fn last_json_object(text: &str) -> Option<serde_json::Value> {
    text.lines().rev().map(str::trim).filter(|l| l.starts_with('{')).find_map(|l| match serde_json::from_str(l) {
        Ok(v @ serde_json::Value::Object(_)) => Some(v),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_the_head_counts_the_rest_and_marks_the_cut() {
        let data = vec![b'x'; 100_000];
        let c = capture(&data[..], 1000).await;
        assert_eq!(c.head.len(), 1000);
        assert_eq!(c.total, 100_000);
        assert!(c.truncated(1000));
        assert!(c.text(1000).ends_with(TRUNCATION_MARKER));
        assert_eq!(c.tail.len(), TAIL_BYTES);
        let short = capture(&b"hello"[..], 1000).await;
        assert_eq!(short.text(1000), "hello");
        assert_eq!(short.tail_text(), "hello");
    }

    #[test]
    fn finds_the_last_json_object_line() {
        assert_eq!(last_json_object("a\n{\"x\":1}\nb\n{\"y\":2}\n[1]\n"), Some(serde_json::json!({"y": 2})));
        assert_eq!(last_json_object("no json {here\n"), None);
    }
}
