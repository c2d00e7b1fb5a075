//! A JSON scanner that records the byte span of every value, so a host's config can be edited by
//! splicing only the bytes of the values that change: indentation, key order, CRLF line endings,
//! escapes and unicode everywhere else stay exactly as they were (serde_json would re-serialize).
//!
//! Accepts JSON plus what JSONC / JSON5-lite host files use: `//` and `/* */` comments and
//! trailing commas (VS Code's `mcp.json` is JSONC, OpenClaw's `openclaw.json` is JSON5). Rejects
//! duplicate keys, which two readers could resolve differently.

use std::ops::Range;

/// A parsed value and where it sits in the text.
#[derive(Debug, Clone)]
pub struct Node {
    /// Byte range of the value in the text.
    pub span: Range<usize>,
    /// What it is.
    pub kind: Kind,
}

/// One object member.
#[derive(Debug, Clone)]
pub struct Member {
    /// The decoded key.
    pub key: String,
    /// Byte range of the key's string literal (quotes included).
    pub key_span: Range<usize>,
    /// The value.
    pub value: Node,
}

/// The kinds of JSON values.
#[derive(Debug, Clone)]
pub enum Kind {
    /// An object, members in file order.
    Object(Vec<Member>),
    /// An array.
    Array(Vec<Node>),
    /// A string, decoded.
    String(String),
    /// A number, boolean or null (its text is in the span).
    Scalar,
}

impl Node {
    /// The member `key` of an object.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.member(key).map(|member| &member.value)
    }

    /// The member entry `key` of an object.
    pub fn member(&self, key: &str) -> Option<&Member> {
        match &self.kind {
            Kind::Object(members) => members.iter().find(|member| member.key == key),
            _ => None,
        }
    }

    /// The decoded string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::String(text) => Some(text),
            _ => None,
        }
    }

    /// The members, if this is an object.
    pub fn members(&self) -> Option<&[Member]> {
        match &self.kind {
            Kind::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn elements(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Why the text is not JSON, with its line and column (1-based).
#[derive(Debug, Clone, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct JsonError {
    /// Line.
    pub line: usize,
    /// Column (in characters).
    pub column: usize,
    /// What was expected.
    pub message: String,
}

/// Parses a whole document (a UTF-8 BOM is skipped).
pub fn parse(text: &str) -> Result<Node, JsonError> {
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: if text.starts_with('\u{feff}') { 3 } else { 0 },
        depth: 0,
    };
    parser.skip_ws()?;
    let node = parser.value()?;
    parser.skip_ws()?;
    if parser.pos != parser.bytes.len() {
        return Err(parser.error("unexpected text after the document"));
    }
    Ok(node)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 256;

impl Parser<'_> {
    fn error(&self, message: &str) -> JsonError {
        let before = &self.text[..self.pos.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before
            .rsplit('\n')
            .next()
            .map_or(0, |tail| tail.chars().count())
            + 1;
        JsonError {
            line,
            column,
            message: message.to_owned(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) -> Result<(), JsonError> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n' | b'\r') => self.pos += 1,
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'/') => {
                    while let Some(byte) = self.peek() {
                        if byte == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                Some(b'/') if self.bytes.get(self.pos + 1) == Some(&b'*') => {
                    let rest = &self.text[self.pos + 2..];
                    match rest.find("*/") {
                        Some(end) => self.pos += 2 + end + 2,
                        None => return Err(self.error("unterminated comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Node, JsonError> {
        let start = self.pos;
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => {
                let text = self.string()?;
                Ok(Node {
                    span: start..self.pos,
                    kind: Kind::String(text),
                })
            }
            Some(b'-' | b'0'..=b'9') => {
                while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                }
                self.text[start..self.pos]
                    .parse::<f64>()
                    .map_err(|_| self.error("invalid number"))?;
                Ok(Node {
                    span: start..self.pos,
                    kind: Kind::Scalar,
                })
            }
            _ => {
                for word in ["true", "false", "null"] {
                    if self.text[self.pos..].starts_with(word) {
                        self.pos += word.len();
                        return Ok(Node {
                            span: start..self.pos,
                            kind: Kind::Scalar,
                        });
                    }
                }
                Err(self.error("expected a value"))
            }
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.pos += 1;
        self.skip_ws()
    }

    fn object(&mut self) -> Result<Node, JsonError> {
        let start = self.pos;
        self.enter()?;
        let mut members: Vec<Member> = Vec::new();
        loop {
            match self.peek() {
                Some(b'}') => break,
                Some(b'"') => {}
                _ => return Err(self.error("expected a string key or '}'")),
            }
            let key_start = self.pos;
            let key = self.string()?;
            let key_span = key_start..self.pos;
            if members.iter().any(|member| member.key == key) {
                self.pos = key_start;
                return Err(self.error(&format!("duplicate key {key:?}")));
            }
            self.skip_ws()?;
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.pos += 1;
            self.skip_ws()?;
            let value = self.value()?;
            members.push(Member {
                key,
                key_span,
                value,
            });
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws()?;
                }
                Some(b'}') => break,
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(Node {
            span: start..self.pos,
            kind: Kind::Object(members),
        })
    }

    fn array(&mut self) -> Result<Node, JsonError> {
        let start = self.pos;
        self.enter()?;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(b']') {
                break;
            }
            items.push(self.value()?);
            self.skip_ws()?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws()?;
                }
                Some(b']') => break,
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(Node {
            span: start..self.pos,
            kind: Kind::Array(items),
        })
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(ch) = rest.chars().next() else {
                return Err(self.error("unterminated string"));
            };
            match ch {
                '"' => {
                    self.pos += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.pos += 1;
                    let escape = self
                        .peek()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let high = self.hex4()?;
                            let code = if (0xd800..0xdc00).contains(&high)
                                && self.text[self.pos..].starts_with("\\u")
                            {
                                self.pos += 2;
                                let low = self.hex4()?;
                                if !(0xdc00..0xe000).contains(&low) {
                                    return Err(self.error("invalid surrogate pair"));
                                }
                                0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)
                            } else {
                                high
                            };
                            out.push(
                                char::from_u32(code)
                                    .ok_or_else(|| self.error("invalid \\u escape"))?,
                            );
                        }
                        _ => return Err(self.error("invalid escape")),
                    }
                }
                ch if (ch as u32) < 0x20 => {
                    return Err(self.error("control character in a string"));
                }
                ch => {
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let code = u32::from_str_radix(digits, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(code)
    }
}

/// Writes `text` as a JSON string literal (non-ASCII kept as is, like the hosts write it).
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ch if (ch as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", ch as u32)),
            ch => out.push(ch),
        }
    }
    out.push('"');
    out
}

/// Applies non-overlapping `(range, replacement)` edits to `text`.
pub fn splice(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(range, _)| (range.start, range.end));
    let mut out = String::with_capacity(text.len() + 256);
    let mut at = 0;
    for (range, replacement) in edits {
        out.push_str(&text[at..range.start]);
        out.push_str(&replacement);
        at = range.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_decoding() {
        let text =
            "{\r\n  // c\r\n  \"a\": [1, \"\\u00e9t\\u00e9\"],\r\n  \"b\": {\"c\": true,},\r\n}";
        let doc = parse(text).unwrap();
        let a = doc.get("a").unwrap();
        assert_eq!(&text[a.span.clone()], "[1, \"\\u00e9t\\u00e9\"]");
        assert_eq!(a.elements().unwrap()[1].as_str(), Some("été"));
        assert!(parse("{\"a\":1,\"a\":2}").is_err());
        assert!(parse("{\"a\":1").is_err());
        assert!(parse("[1] x").is_err());
    }
}
