//! Server-Sent Events framing for Streamable HTTP responses.
//!
//! [`SseParser`] is an incremental parser for the WHATWG `text/event-stream` format
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>):
//! feed it byte chunks split anywhere, get back complete [`SseEvent`]s. It follows the spec's
//! interpretation rules (`\r\n`, `\r` and `\n` line endings, a BOM at stream start, comment lines,
//! fields without a colon, one leading space stripped from a value, `data` lines joined with
//! `\n`, an event without data not dispatched, an unfinished event at end of stream dropped) with
//! one deliberate difference: an event's `data` is kept as the raw bytes received, never decoded
//! and re-encoded, so invalid UTF-8 reaches the relay's strict message check instead of being
//! silently replaced with U+FFFD (invariant 4: what was inspected is what is forwarded).
//!
//! Memory is bounded: a line longer than the limit plus [`LINE_SLACK`], or an event whose data is
//! longer than the limit, is an [`SseError`], after which the parser is unusable.

use bytes::Bytes;

/// Default bound on one event's data, in bytes: the largest JSON-RPC message the relay accepts.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// Room a line may take beyond the data limit, for its field name and colon (`data: `).
pub const LINE_SLACK: usize = 64;

/// The UTF-8 byte order mark, stripped once at the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The event type: the last `event` field's value, or `"message"` when none was given.
    pub event: String,
    /// The `data` lines joined with `\n`, exactly as received (not UTF-8 decoded).
    pub data: Bytes,
    /// The stream's last event ID when this event was dispatched (it carries over from earlier
    /// events, as in the spec); `None` while it is empty.
    pub id: Option<String>,
}

impl SseEvent {
    /// Whether this is a plain `message` event (no `event` field, or `event: message`).
    pub fn is_message(&self) -> bool {
        self.event == "message"
    }
}

/// Why the parser refused the stream. The parser must not be fed again after an error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A single line grew past the limit plus [`LINE_SLACK`] without ending.
    #[error("event-stream line longer than {limit} bytes")]
    LineTooLong {
        /// The line limit that was exceeded, in bytes.
        limit: usize,
    },
    /// One event's data grew past the limit.
    #[error("event-stream event data longer than {limit} bytes")]
    EventTooLarge {
        /// The data limit that was exceeded, in bytes.
        limit: usize,
    },
}

/// Where the parser is in recognising a BOM at the start of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BomState {
    /// This many leading bytes of the stream matched the BOM so far.
    Matching(usize),
    /// Past the start of the stream.
    Done,
}

/// Incremental `text/event-stream` parser. See the module documentation.
#[derive(Debug)]
pub struct SseParser {
    limit: usize,
    bom: BomState,
    /// The current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended with `\r`: a `\n` at the start of the next one ends nothing.
    after_cr: bool,
    data: Vec<u8>,
    event_type: String,
    last_event_id: String,
    retry_ms: Option<u64>,
    /// The error that stopped the parser, returned again on every later feed.
    failed: Option<SseError>,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser bounding each event's data at [`MAX_EVENT_BYTES`].
    pub fn new() -> Self {
        Self::with_limit(MAX_EVENT_BYTES)
    }

    /// A parser bounding each event's data at `limit` bytes (and each line at `limit` plus
    /// [`LINE_SLACK`]).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            limit,
            bom: BomState::Matching(0),
            line: Vec::new(),
            after_cr: false,
            data: Vec::new(),
            event_type: String::new(),
            last_event_id: String::new(),
            retry_ms: None,
            failed: None,
        }
    }

    /// The stream's last event ID (empty when none was set): what a reconnect sends as
    /// `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time the server last asked for with a `retry` field, in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.retry_ms
    }

    /// Whether bytes of an unfinished event are buffered. At end of stream such an event is
    /// dropped, as the spec requires; this tells the caller it happened.
    pub fn has_partial_event(&self) -> bool {
        !self.line.is_empty() || !self.data.is_empty() || !self.event_type.is_empty()
    }

    /// Prepares for the next connection of the same stream (a resumption): an unfinished event
    /// is dropped and a BOM is allowed again; the last event ID and `retry` are kept.
    pub fn reconnected(&mut self) {
        self.bom = BomState::Matching(0);
        self.line.clear();
        self.after_cr = false;
        self.data.clear();
        self.event_type.clear();
    }

    /// Feeds the next chunk of the stream, returning every event it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut events = Vec::new();
        self.feed_into(chunk, &mut events)?;
        Ok(events)
    }

    /// As [`SseParser::feed`], appending the completed events to `events`.
    pub fn feed_into(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.feed_inner(chunk, events);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
            self.line = Vec::new();
            self.data = Vec::new();
        }
        result
    }

    fn line_limit(&self) -> usize {
        self.limit.saturating_add(LINE_SLACK)
    }

    fn feed_inner(&mut self, chunk: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let mut rest = self.strip_bom(chunk)?;
        while !rest.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if rest[0] == b'\n' {
                    rest = &rest[1..];
                    continue;
                }
            }
            match rest.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.push_line_bytes(rest)?;
                    break;
                }
                Some(end) => {
                    self.push_line_bytes(&rest[..end])?;
                    self.after_cr = rest[end] == b'\r';
                    rest = &rest[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(&line, events)?;
                    // Reuse the allocation for the next line.
                    self.line = line;
                    self.line.clear();
                }
            }
        }
        Ok(())
    }

    /// Consumes a leading BOM (possibly split across chunks) and returns the rest of `chunk`.
    fn strip_bom<'c>(&mut self, chunk: &'c [u8]) -> Result<&'c [u8], SseError> {
        let BomState::Matching(mut matched) = self.bom else {
            return Ok(chunk);
        };
        let mut rest = chunk;
        while let Some((&byte, tail)) = rest.split_first() {
            if byte != BOM[matched] {
                // Not a BOM after all: the bytes held back are ordinary line content.
                self.bom = BomState::Done;
                self.push_line_bytes(&BOM[..matched])?;
                return Ok(rest);
            }
            matched += 1;
            rest = tail;
            if matched == BOM.len() {
                self.bom = BomState::Done;
                return Ok(rest);
            }
        }
        self.bom = BomState::Matching(matched);
        Ok(rest)
    }

    fn push_line_bytes(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        let limit = self.line_limit();
        if self.line.len().saturating_add(bytes.len()) > limit {
            return Err(SseError::LineTooLong { limit });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], events: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        match field {
            b"event" => self.event_type = String::from_utf8_lossy(value).into_owned(),
            b"data" => {
                if self.data.len().saturating_add(value.len()) > self.limit {
                    return Err(SseError::EventTooLarge { limit: self.limit });
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"id" if !value.contains(&0) => {
                self.last_event_id = String::from_utf8_lossy(value).into_owned();
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits only, so parsing fails only on overflow: keep the old value then.
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<SseEvent>) {
        let event_type = std::mem::take(&mut self.event_type);
        if self.data.is_empty() {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        if data.last() == Some(&b'\n') {
            data.pop();
        }
        events.push(SseEvent {
            event: if event_type.is_empty() {
                "message".to_owned()
            } else {
                event_type
            },
            data: Bytes::from(data),
            id: (!self.last_event_id.is_empty()).then(|| self.last_event_id.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> Vec<SseEvent> {
        SseParser::new().feed(input).unwrap()
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.to_owned(),
            data: Bytes::copy_from_slice(data.as_bytes()),
            id: id.map(str::to_owned),
        }
    }

    /// Feeds `input` split at every pair of positions and checks the result never changes.
    fn assert_split_invariant(input: &[u8]) -> Vec<SseEvent> {
        let whole = parse_all(input);
        for i in 0..=input.len() {
            let mut p = SseParser::new();
            let mut got = p.feed(&input[..i]).unwrap();
            got.extend(p.feed(&input[i..]).unwrap());
            assert_eq!(got, whole, "split at {i}");
            for j in i..=input.len() {
                let mut p = SseParser::new();
                let mut got = p.feed(&input[..i]).unwrap();
                got.extend(p.feed(&input[i..j]).unwrap());
                got.extend(p.feed(&input[j..]).unwrap());
                assert_eq!(got, whole, "split at {i} and {j}");
            }
        }
        let mut p = SseParser::new();
        let mut got = Vec::new();
        for b in input {
            got.extend(p.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(got, whole, "byte at a time");
        whole
    }

    #[test]
    fn a_typical_mcp_stream_survives_every_split() {
        let input = b"\xEF\xBB\xBFid: 1\r\ndata:\r\n\r\n: keep-alive\r\n\
            event: message\r\nid: 2\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\r\n\r\n\
            data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{}}\r\r\
            data:x\n\n";
        let events = assert_split_invariant(input);
        assert_eq!(
            events,
            vec![
                ev("message", "", Some("1")),
                ev(
                    "message",
                    "{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}",
                    Some("2")
                ),
                ev(
                    "message",
                    "{\"jsonrpc\":\"2.0\",\n\"id\":1,\"result\":{}}",
                    Some("2")
                ),
                ev("message", "x", Some("2")),
            ]
        );
    }

    #[test]
    fn line_endings_crlf_cr_and_lf_are_equivalent() {
        let lf = parse_all(b"event: a\ndata: 1\ndata: 2\n\ndata: 3\n\n");
        let cr = parse_all(b"event: a\rdata: 1\rdata: 2\r\rdata: 3\r\r");
        let crlf = parse_all(b"event: a\r\ndata: 1\r\ndata: 2\r\n\r\ndata: 3\r\n\r\n");
        let mixed = parse_all(b"event: a\r\ndata: 1\rdata: 2\n\r\ndata: 3\r\r\n");
        assert_eq!(lf, vec![ev("a", "1\n2", None), ev("message", "3", None)]);
        assert_eq!(cr, lf);
        assert_eq!(crlf, lf);
        assert_eq!(mixed, lf);
        assert_split_invariant(b"data: 1\r\n\r\ndata: 2\r\r\n\n");
    }

    #[test]
    fn cr_then_lf_in_the_next_chunk_is_one_line_ending() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: a\r").unwrap().is_empty());
        // The \n belongs to the \r: this must not dispatch an event.
        assert!(p.feed(b"\n").unwrap().is_empty());
        assert_eq!(p.feed(b"\r\n").unwrap(), vec![ev("message", "a", None)]);
    }

    #[test]
    fn multi_line_data_is_joined_with_lf_and_keeps_inner_spaces() {
        let events = parse_all(b"data:  two spaces\ndata:\ndata: last \n\n");
        assert_eq!(events, vec![ev("message", " two spaces\n\nlast ", None)]);
    }

    #[test]
    fn comments_fields_without_colon_and_unknown_fields() {
        let events = assert_split_invariant(
            b":comment\n: another\ndata\n\nfoo: bar\ndata: x\n\nevent\ndata: y\n\n",
        );
        // `data` with no colon is a data line with an empty value; `event` with no colon resets
        // the type to empty, i.e. "message".
        assert_eq!(
            events,
            vec![
                ev("message", "", None),
                ev("message", "x", None),
                ev("message", "y", None)
            ]
        );
    }

    #[test]
    fn only_comments_and_no_data_dispatch_nothing() {
        assert!(parse_all(b": ping\n\n:\r\n\r\nevent: x\n\nid: 7\n\n").is_empty());
        let mut p = SseParser::new();
        p.feed(b"id: 7\n\n").unwrap();
        assert_eq!(p.last_event_id(), "7");
    }

    #[test]
    fn event_types_are_reported_and_reset_per_event() {
        let events = parse_all(b"event: endpoint\ndata: /x\n\ndata: y\n\n");
        assert_eq!(
            events,
            vec![ev("endpoint", "/x", None), ev("message", "y", None)]
        );
        assert!(!events[0].is_message());
        assert!(events[1].is_message());
    }

    #[test]
    fn id_carries_over_is_cleared_by_empty_and_ignores_nul() {
        let events =
            parse_all(b"id: a\ndata: 1\n\ndata: 2\n\nid\ndata: 3\n\nid: b\0c\ndata: 4\n\n");
        assert_eq!(
            events,
            vec![
                ev("message", "1", Some("a")),
                ev("message", "2", Some("a")),
                ev("message", "3", None),
                ev("message", "4", None),
            ]
        );
    }

    #[test]
    fn retry_is_recorded_but_never_an_event() {
        let mut p = SseParser::new();
        assert!(p.feed(b"retry: 1500\n\n").unwrap().is_empty());
        assert_eq!(p.retry_ms(), Some(1500));
        p.feed(b"retry: 15x\nretry:\nretry: 99999999999999999999999\n\n")
            .unwrap();
        assert_eq!(p.retry_ms(), Some(1500));
    }

    #[test]
    fn bom_is_stripped_only_at_stream_start() {
        assert_eq!(
            parse_all(b"\xEF\xBB\xBFdata: a\n\n"),
            vec![ev("message", "a", None)]
        );
        // A second BOM is part of the field name, which is then unknown.
        assert!(parse_all(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n").is_empty());
        // A partial BOM is ordinary bytes.
        let events = parse_all(b"\xEF\xBBdata: a\n\ndata: b\n\n");
        assert_eq!(events, vec![ev("message", "b", None)]);
        assert_split_invariant(b"\xEF\xBB\xBFdata: a\n\n");
        assert_split_invariant(b"\xEFdata: a\n\ndata: b\n\n");
    }

    #[test]
    fn data_bytes_are_kept_raw_not_utf8_decoded() {
        let events = parse_all(b"data: \xFF\xFE{}\n\n");
        assert_eq!(&events[0].data[..], b"\xFF\xFE{}");
    }

    #[test]
    fn an_unfinished_event_at_end_of_stream_is_reported_not_dispatched() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: {\"id\":1}\n").unwrap().is_empty());
        assert!(p.has_partial_event());
        let mut q = SseParser::new();
        q.feed(b"data: 1\n\n: bye\n").unwrap();
        assert!(!q.has_partial_event());
    }

    #[test]
    fn reconnecting_drops_the_partial_event_and_keeps_the_cursor() {
        let mut p = SseParser::new();
        p.feed(b"retry: 5\nid: 3\ndata: 1\n\nevent: x\ndata: half")
            .unwrap();
        p.reconnected();
        assert!(!p.has_partial_event());
        assert_eq!((p.last_event_id(), p.retry_ms()), ("3", Some(5)));
        let events = p.feed(b"\xEF\xBB\xBFdata: 2\n\n").unwrap();
        assert_eq!(events, vec![ev("message", "2", Some("3"))]);
    }

    #[test]
    fn data_limit_is_exact() {
        let mut p = SseParser::with_limit(8);
        assert_eq!(
            p.feed(b"data: 1234\ndata: 567\n\n").unwrap(),
            vec![ev("message", "1234\n567", None)]
        );
        let mut p = SseParser::with_limit(8);
        assert_eq!(
            p.feed(b"data: 1234\ndata: 5678\n\n"),
            Err(SseError::EventTooLarge { limit: 8 })
        );
        // A failed parser stays failed.
        assert_eq!(
            p.feed(b"data: 1\n\n"),
            Err(SseError::EventTooLarge { limit: 8 })
        );
    }

    #[test]
    fn a_line_that_never_ends_is_refused_even_when_it_is_a_comment() {
        let mut p = SseParser::with_limit(8);
        assert!(p.feed(b":").is_ok());
        let chunk = [b'x'; 16];
        let results: Vec<_> = (0..6).map(|_| p.feed(&chunk)).collect();
        // 1 + 4 * 16 = 65 fits in 8 + 64; the fifth chunk does not.
        assert!(results[..4].iter().all(Result::is_ok));
        assert_eq!(
            results[4],
            Err(SseError::LineTooLong {
                limit: 8 + LINE_SLACK
            })
        );
        assert_eq!(results[5], results[4]);
    }

    #[test]
    fn sixteen_mib_bound() {
        let payload = vec![b'a'; MAX_EVENT_BYTES];
        let mut p = SseParser::new();
        let mut events = p.feed(b"data: ").unwrap();
        for piece in payload.chunks(1 << 20) {
            events.extend(p.feed(piece).unwrap());
        }
        events.extend(p.feed(b"\n\n").unwrap());
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].data.len(), MAX_EVENT_BYTES);

        let mut p = SseParser::new();
        let mut input = b"data: ".to_vec();
        input.extend_from_slice(&payload);
        input.extend_from_slice(b"a\n\n");
        // One byte over: the line itself still fits its slack, the event does not.
        assert_eq!(
            p.feed(&input),
            Err(SseError::EventTooLarge {
                limit: MAX_EVENT_BYTES
            })
        );

        // Split over two data lines, each within the line bound, the event is still refused.
        let half = vec![b'a'; MAX_EVENT_BYTES / 2];
        let mut p = SseParser::new();
        let mut input = Vec::new();
        for _ in 0..2 {
            input.extend_from_slice(b"data: ");
            input.extend_from_slice(&half);
            input.push(b'\n');
        }
        input.extend_from_slice(b"\n");
        assert_eq!(
            p.feed(&input),
            Err(SseError::EventTooLarge {
                limit: MAX_EVENT_BYTES
            })
        );

        // A line with no end that never stops growing is refused once it passes the bound.
        let mut p = SseParser::new();
        let mut fed = 0;
        let error = loop {
            match p.feed(&payload[..1 << 20]) {
                Ok(events) => assert!(events.is_empty()),
                Err(error) => break error,
            }
            fed += 1 << 20;
        };
        assert_eq!(
            error,
            SseError::LineTooLong {
                limit: MAX_EVENT_BYTES + LINE_SLACK
            }
        );
        assert_eq!(fed, MAX_EVENT_BYTES);
    }
}
