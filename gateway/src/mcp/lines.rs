//! Newline-delimited framing, for the stdio transports and the control socket: reading with a
//! size bound, and writing one message per line.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// One read from a line-framed stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A complete line, without its `\n` (a trailing `\r` is kept: strict parsing refuses it
    /// only if it is not whitespace, and JSON allows it as whitespace).
    Complete(Vec<u8>),
    /// A line longer than the bound; its bytes were discarded up to the next `\n`.
    TooLong(usize),
    /// End of stream (a final line without `\n` is returned as `Complete` first).
    Eof,
}

/// Reads the next line of at most `max` bytes.
pub async fn read_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut discarded = 0usize;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(match (discarded, line.is_empty()) {
                (0, true) => Line::Eof,
                (0, false) => Line::Complete(line),
                (n, _) => Line::TooLong(n),
            });
        }
        let (chunk, found) = match available.iter().position(|&b| b == b'\n') {
            Some(end) => (&available[..end], Some(end + 1)),
            None => (available, None),
        };
        if discarded > 0 || line.len() + chunk.len() > max {
            discarded += line.len() + chunk.len();
            line.clear();
        } else {
            line.extend_from_slice(chunk);
        }
        let used = found.unwrap_or(available.len());
        reader.consume(used);
        if found.is_some() {
            return Ok(if discarded > 0 {
                Line::TooLong(discarded)
            } else {
                Line::Complete(line)
            });
        }
    }
}

/// Writes each message as one line, flushed, until the channel closes or the writer fails.
pub async fn write_lines<W: AsyncWrite + Unpin>(mut out: W, mut messages: mpsc::Receiver<String>) {
    while let Some(message) = messages.recv().await {
        let mut line = message.into_bytes();
        line.push(b'\n');
        if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::BufReader;

    #[tokio::test]
    async fn splits_and_bounds_lines() {
        let data: &[u8] = b"one\ntoolongline\nthree";
        let mut reader = BufReader::with_capacity(4, data);
        assert_eq!(
            read_line(&mut reader, 5).await.unwrap(),
            Line::Complete(b"one".to_vec())
        );
        assert_eq!(read_line(&mut reader, 5).await.unwrap(), Line::TooLong(11));
        assert_eq!(
            read_line(&mut reader, 5).await.unwrap(),
            Line::Complete(b"three".to_vec())
        );
        assert_eq!(read_line(&mut reader, 5).await.unwrap(), Line::Eof);
    }
}
