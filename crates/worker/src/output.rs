//! Bounded capture of a child's stdout/stderr: secret values are masked as the stream is
//! read ([`crate::masking`]), then the first `limit` bytes of the masked stream are kept,
//! the rest is drained and counted (so the child never blocks on a full pipe), and a cut
//! stream ends with a marker. The last few KiB are also kept, for error messages and for
//! the output line of a long stream. Nothing unmasked is ever kept: every count and limit
//! applies to the masked bytes.

use std::collections::VecDeque;

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::masking::Masker;

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

    /// Counts `chunk` (masked output), keeping what fits in the head and the tail.
    fn keep(&mut self, chunk: &[u8], limit: usize) {
        let room = limit.saturating_sub(self.head.len());
        self.head.extend_from_slice(&chunk[..room.min(chunk.len())]);
        self.total += chunk.len();
        self.tail.extend(chunk.iter().rev().take(TAIL_BYTES).rev());
        let excess = self.tail.len().saturating_sub(TAIL_BYTES);
        self.tail.drain(..excess);
    }
}

/// Reads `stream` to its end, masking the secrets of `masker` and keeping at most `limit`
/// bytes of the masked stream's head.
pub async fn capture(mut stream: impl AsyncRead + Unpin, limit: usize, masker: Masker) -> Captured {
    let mut captured = Captured::default();
    let mut masking = masker.stream();
    let mut buf = vec![0u8; 64 * 1024];
    let mut masked = Vec::with_capacity(buf.len());
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        masked.clear();
        masking.push(&buf[..n], &mut masked);
        captured.keep(&masked, limit);
    }
    masked.clear();
    masking.finish(&mut masked);
    captured.keep(&masked, limit);
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
        let c = capture(&data[..], 1000, Masker::default()).await;
        assert_eq!(c.head.len(), 1000);
        assert_eq!(c.total, 100_000);
        assert!(c.truncated(1000));
        assert!(c.text(1000).ends_with(TRUNCATION_MARKER));
        assert_eq!(c.tail.len(), TAIL_BYTES);
        let short = capture(&b"hello"[..], 1000, Masker::default()).await;
        assert_eq!(short.text(1000), "hello");
        assert_eq!(short.tail_text(), "hello");
    }

    /// A reader that hands out one chunk per read, as a pipe does.
    struct Chunks(std::collections::VecDeque<Vec<u8>>);

    impl AsyncRead for Chunks {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(chunk) = self.0.pop_front() {
                buf.put_slice(&chunk);
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn chunked(chunks: &[&[u8]]) -> Chunks {
        Chunks(chunks.iter().map(|c| c.to_vec()).collect())
    }

    #[tokio::test]
    async fn secrets_are_masked_across_reads_and_limits_count_masked_bytes() {
        let masker = Masker::new(&[serde_json::json!("0123456789abcdef")]).unwrap();
        // The 16-byte secret becomes 8 bytes: the masked stream is 3 + 8 + 3 = 14 bytes.
        let c = capture(chunked(&[b"<< 01234567", b"89abcdef >>"]), 14, masker.clone()).await;
        assert_eq!((c.total, c.truncated(14)), (14, false));
        assert_eq!(c.text(14), "<< ******** >>");
        assert_eq!(c.tail_text(), "<< ******** >>");
        // A limit that cuts the masked stream cuts the mask, never reveals the secret.
        let c = capture(chunked(&[b"<< 01234567", b"89abcdef >>"]), 6, masker.clone()).await;
        assert_eq!(c.text(6), format!("<< ***{TRUNCATION_MARKER}"));
        assert_eq!(c.total, 14);
        // The tail of a long stream is masked as well.
        let mut long = vec![b'.'; 3 * TAIL_BYTES];
        long.extend_from_slice(b"0123456789abcdef!");
        let chunks: Vec<&[u8]> = long.chunks(1000).collect();
        let c = capture(chunked(&chunks), 100, masker).await;
        assert!(c.truncated(100));
        assert!(c.tail_text().ends_with("...********!"), "{}", &c.tail_text()[TAIL_BYTES - 20..]);
        assert_eq!(c.total, 3 * TAIL_BYTES + 9);
    }

    #[test]
    fn finds_the_last_json_object_line() {
        assert_eq!(last_json_object("a\n{\"x\":1}\nb\n{\"y\":2}\n[1]\n"), Some(serde_json::json!({"y": 2})));
        assert_eq!(last_json_object("no json {here\n"), None);
    }
}
