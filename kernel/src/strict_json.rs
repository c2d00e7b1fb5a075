//! Strict JSON reader for every byte string that will be fingerprinted, signed or verified.
//!
//! Invariant 4 ("what was decided is what is sent") needs input that every parser reads the same
//! way. Plain `serde_json` silently keeps the last of two duplicate keys, and other parsers keep
//! the first; numbers beyond 2^53 lose precision in JavaScript. This reader rejects each kind of
//! ambiguous input with its own error and a stable reason code:
//!
//! | input | error | reason code |
//! |---|---|---|
//! | a UTF-8 byte order mark | [`StrictJsonError::Bom`] | `JSON_BOM` |
//! | bytes that are not UTF-8 | [`StrictJsonError::InvalidUtf8`] | `JSON_INVALID_UTF8` |
//! | a `\u` escape of a lone UTF-16 surrogate | [`StrictJsonError::LoneSurrogate`] | `JSON_LONE_SURROGATE` |
//! | the same key twice in one object, at any depth | [`StrictJsonError::DuplicateKey`] | `JSON_DUPLICATE_KEY` |
//! | an integer outside ±(2^53 − 1) | [`StrictJsonError::IntegerOutOfRange`] | `JSON_INTEGER_OUT_OF_RANGE` |
//! | anything after the value but whitespace | [`StrictJsonError::TrailingBytes`] | `JSON_TRAILING_BYTES` |
//! | nesting deeper than [`MAX_DEPTH`] | [`StrictJsonError::TooDeep`] | `JSON_TOO_DEEP` |
//! | any other syntax error | [`StrictJsonError::Syntax`] | `JSON_SYNTAX` |
//!
//! The safe integer range is the one of RFC 7493 (I-JSON) and JavaScript's
//! `Number.MAX_SAFE_INTEGER`. A number written with a fraction or exponent whose value is an
//! integer beyond that range (`1e300`) is rejected too, because it is the same number.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Largest integer magnitude accepted: 2^53 − 1 (RFC 7493 §2.2).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 100;

/// Why a byte string was refused. Each variant has a stable [`reason_code`](Self::reason_code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrictJsonError {
    /// The input starts with a UTF-8 byte order mark (RFC 8259 §8.1 forbids sending one).
    #[error("JSON starts with a byte order mark (EF BB BF)")]
    Bom,
    /// The input is not valid UTF-8.
    #[error("JSON is not valid UTF-8 at byte offset {offset}")]
    InvalidUtf8 {
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A `\uXXXX` escape names half of a UTF-16 surrogate pair without its other half.
    #[error("JSON string has a lone UTF-16 surrogate escape at line {line}, column {column}")]
    LoneSurrogate {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// An object has the same key twice (after unescaping).
    #[error("JSON object at {pointer:?} has the key {key:?} twice")]
    DuplicateKey {
        /// JSON Pointer (RFC 6901) of the object.
        pointer: String,
        /// The repeated key.
        key: String,
    },
    /// An integer lies outside ±(2^53 − 1).
    #[error("JSON number {number} at {pointer:?} is an integer outside ±(2^53-1)")]
    IntegerOutOfRange {
        /// JSON Pointer (RFC 6901) of the number.
        pointer: String,
        /// The number as read.
        number: String,
    },
    /// Something other than whitespace follows the JSON value.
    #[error("JSON value is followed by trailing bytes at line {line}, column {column}")]
    TrailingBytes {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    #[error("JSON nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Any other violation of RFC 8259 grammar.
    #[error("JSON syntax error at line {line}, column {column}: {message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
}

impl StrictJsonError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Bom => "JSON_BOM",
            Self::InvalidUtf8 { .. } => "JSON_INVALID_UTF8",
            Self::LoneSurrogate { .. } => "JSON_LONE_SURROGATE",
            Self::DuplicateKey { .. } => "JSON_DUPLICATE_KEY",
            Self::IntegerOutOfRange { .. } => "JSON_INTEGER_OUT_OF_RANGE",
            Self::TrailingBytes { .. } => "JSON_TRAILING_BYTES",
            Self::TooDeep => "JSON_TOO_DEEP",
            Self::Syntax { .. } => "JSON_SYNTAX",
        }
    }
}

/// Error from [`from_slice`]: the bytes were refused, or they were strict JSON of the wrong shape.
#[derive(Debug, thiserror::Error)]
pub enum StrictDecodeError {
    /// The bytes are not strict JSON.
    #[error(transparent)]
    Json(#[from] StrictJsonError),
    /// The JSON does not have the shape of the expected type.
    #[error("JSON does not match the expected shape: {0}")]
    Shape(#[source] serde_json::Error),
}

/// Reads `input` as one strict JSON value.
pub fn parse(input: &[u8]) -> Result<Value, StrictJsonError> {
    if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(StrictJsonError::Bom);
    }
    let text = std::str::from_utf8(input).map_err(|err| StrictJsonError::InvalidUtf8 {
        offset: err.valid_up_to(),
    })?;
    let state = RefCell::new(ReadState::default());
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = match (ValueSeed { state: &state }).deserialize(&mut deserializer) {
        Ok(value) => value,
        Err(err) => return Err(state.into_inner().failure.unwrap_or_else(|| syntax(&err))),
    };
    deserializer
        .end()
        .map_err(|err| StrictJsonError::TrailingBytes {
            line: err.line(),
            column: err.column(),
        })?;
    Ok(value)
}

/// Reads `input` as strict JSON, then as a `T`.
pub fn from_slice<T: DeserializeOwned>(input: &[u8]) -> Result<T, StrictDecodeError> {
    let value = parse(input)?;
    serde_json::from_value(value).map_err(StrictDecodeError::Shape)
}

fn syntax(err: &serde_json::Error) -> StrictJsonError {
    let full = err.to_string();
    // serde_json appends " at line L column C"; the position is reported separately.
    let message = match full.rfind(" at line ") {
        Some(at) => full[..at].to_owned(),
        None => full,
    };
    // serde_json reports a leading surrogate with no trailing half as "unexpected end of hex
    // escape" and every other lone surrogate as "lone leading surrogate in hex escape".
    if message.contains("surrogate") || message.contains("end of hex escape") {
        StrictJsonError::LoneSurrogate {
            line: err.line(),
            column: err.column(),
        }
    } else if message.contains("recursion limit") {
        StrictJsonError::TooDeep
    } else {
        StrictJsonError::Syntax {
            line: err.line(),
            column: err.column(),
            message,
        }
    }
}

/// Where the reader is, and the first strictness failure it met (serde's error type cannot carry
/// ours, so it is kept here and preferred over the generic error serde unwinds with).
#[derive(Default)]
struct ReadState {
    pointer: Vec<String>,
    failure: Option<StrictJsonError>,
}

impl ReadState {
    fn pointer(&self) -> String {
        let mut out = String::new();
        for token in &self.pointer {
            out.push('/');
            out.push_str(&token.replace('~', "~0").replace('/', "~1"));
        }
        out
    }

    fn fail<E: de::Error>(&mut self, failure: StrictJsonError) -> E {
        let message = failure.to_string();
        self.failure.get_or_insert(failure);
        E::custom(message)
    }
}

#[derive(Clone, Copy)]
struct ValueSeed<'s> {
    state: &'s RefCell<ReadState>,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn enter<E: de::Error>(&self, token: String) -> Result<(), E> {
        let mut state = self.state.borrow_mut();
        if state.pointer.len() >= MAX_DEPTH {
            return Err(state.fail(StrictJsonError::TooDeep));
        }
        state.pointer.push(token);
        Ok(())
    }

    fn leave(&self) {
        self.state.borrow_mut().pointer.pop();
    }

    fn out_of_range<E: de::Error>(&self, number: String) -> E {
        let mut state = self.state.borrow_mut();
        let pointer = state.pointer();
        state.fail(StrictJsonError::IntegerOutOfRange { pointer, number })
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        if value > MAX_SAFE_INTEGER {
            return Err(self.out_of_range(value.to_string()));
        }
        Ok(Value::Number(value.into()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        if value.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(self.out_of_range(value.to_string()));
        }
        Ok(Value::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        // MAX_SAFE_INTEGER is exactly representable as f64.
        let number = Number::from_f64(value).ok_or_else(|| E::custom("number is not finite"))?;
        if value.fract() == 0.0 && value.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(self.out_of_range(number.to_string()));
        }
        Ok(Value::Number(number))
    }

    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.enter(items.len().to_string())?;
            let next = seq.next_element_seed(self);
            self.leave();
            match next? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                let mut state = self.state.borrow_mut();
                let pointer = state.pointer();
                return Err(state.fail(StrictJsonError::DuplicateKey { pointer, key }));
            }
            self.enter(key.clone())?;
            let value = map.next_value_seed(self);
            self.leave();
            object.insert(key, value?);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(input: &[u8]) -> &'static str {
        match parse(input) {
            Ok(value) => panic!("accepted {value}"),
            Err(err) => err.reason_code(),
        }
    }

    #[test]
    fn reads_plain_json() {
        let value = parse(br#" {"a":[1,-2,3.5,"x",null,true],"b":{"c":{}}} "#).unwrap();
        assert_eq!(value["a"][2], serde_json::json!(3.5));
        assert_eq!(value["b"]["c"], serde_json::json!({}));
    }

    #[test]
    fn serde_json_alone_keeps_the_last_duplicate_but_we_refuse() {
        let input = br#"{"amount":"1","amount":"1000000"}"#;
        let lenient: Value = serde_json::from_slice(input).unwrap();
        assert_eq!(lenient["amount"], "1000000");
        assert_eq!(
            parse(input).unwrap_err(),
            StrictJsonError::DuplicateKey {
                pointer: String::new(),
                key: "amount".into()
            }
        );
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth_and_after_unescaping() {
        assert_eq!(
            parse(br#"{"a":[{"ok":1},{"b":{"x":1,"x":2}}]}"#).unwrap_err(),
            StrictJsonError::DuplicateKey {
                pointer: "/a/1/b".into(),
                key: "x".into()
            }
        );
        assert_eq!(code(br#"{"a":1,"\u0061":2}"#), "JSON_DUPLICATE_KEY");
    }

    #[test]
    fn every_kind_of_ambiguity_has_its_own_error() {
        assert_eq!(code(b"\xEF\xBB\xBF{}"), "JSON_BOM");
        assert_eq!(code(b"{\"a\":\"\xFF\"}"), "JSON_INVALID_UTF8");
        assert_eq!(code(b"\"\xC0\xAF\""), "JSON_INVALID_UTF8");
        assert_eq!(code(br#""\ud800""#), "JSON_LONE_SURROGATE");
        assert_eq!(code(br#""\udc00""#), "JSON_LONE_SURROGATE");
        assert_eq!(code(br#""\ud800\u0041""#), "JSON_LONE_SURROGATE");
        assert_eq!(code(br#"{} {}"#), "JSON_TRAILING_BYTES");
        assert_eq!(code(br#"{}x"#), "JSON_TRAILING_BYTES");
        assert_eq!(code(b"9007199254740992"), "JSON_INTEGER_OUT_OF_RANGE");
        assert_eq!(code(b"-9007199254740992"), "JSON_INTEGER_OUT_OF_RANGE");
        assert_eq!(code(b"[18446744073709551616]"), "JSON_INTEGER_OUT_OF_RANGE");
        assert_eq!(code(b"{\"a\":1e300}"), "JSON_INTEGER_OUT_OF_RANGE");
        assert_eq!(code(b"{\"a\":"), "JSON_SYNTAX");
        assert_eq!(code(b"{'a':1}"), "JSON_SYNTAX");
        assert_eq!(code(b""), "JSON_SYNTAX");
        assert_eq!(code(b"[1,]"), "JSON_SYNTAX");
        assert_eq!(code(br#""\u12""#), "JSON_SYNTAX");
        assert_eq!(code(br#""\x""#), "JSON_SYNTAX");
        assert_eq!(code(b"\"a\nb\""), "JSON_SYNTAX");
    }

    #[test]
    fn the_safe_range_and_surrogate_pairs_are_accepted() {
        assert_eq!(
            parse(b"9007199254740991").unwrap(),
            serde_json::json!(9_007_199_254_740_991_u64)
        );
        assert_eq!(
            parse(b"-9007199254740991").unwrap(),
            serde_json::json!(-9_007_199_254_740_991_i64)
        );
        assert_eq!(parse(br#""\ud83d\ude00""#).unwrap(), "😀");
        assert_eq!(parse(b"0.5").unwrap(), serde_json::json!(0.5));
    }

    #[test]
    fn pointers_escape_slash_and_tilde() {
        let err = parse(br#"{"a/b":{"c~d":[9007199254740993]}}"#).unwrap_err();
        assert_eq!(
            err,
            StrictJsonError::IntegerOutOfRange {
                pointer: "/a~1b/c~0d/0".into(),
                number: "9007199254740993".into()
            }
        );
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(code(deep.as_bytes()), "JSON_TOO_DEEP");
        let very_deep = "[".repeat(100_000);
        assert_eq!(code(very_deep.as_bytes()), "JSON_TOO_DEEP");
        let fine = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(fine.as_bytes()).is_ok());
    }
}
