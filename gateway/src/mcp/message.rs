//! Raw JSON-RPC messages: read enough of a message to route and decide it, keep its exact bytes.
//!
//! The relay forwards the bytes it inspected (invariant 4). [`Frame::parse`] checks a message
//! strictly (UTF-8, no BOM, no duplicate keys at any depth, bounded nesting, no integers two
//! parsers would read differently), then records where the interesting members sit in the
//! original text. The only change the relay ever makes to a forwarded message is an insertion
//! into a `_meta` object ([`Message::with_meta_member`]): every other byte is the sender's.

use std::ops::Range;

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use trustos_kernel::strict_json;

/// The `_meta` key carrying the gateway's signed decision on a forwarded `tools/call`.
pub const META_DECISION: &str = "io.trustos/decision";
/// The `_meta` key carrying the gateway's signed receipt on a `tools/call` result.
pub const META_RECEIPT: &str = "io.trustos/receipt";

/// Largest message the relay accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// JSON-RPC error codes the relay answers with.
pub mod codes {
    /// Invalid JSON.
    pub const PARSE_ERROR: i64 = -32700;
    /// Not a valid request object.
    pub const INVALID_REQUEST: i64 = -32600;
    /// The method does not exist (or is not allowed through the gateway).
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Invalid parameters.
    pub const INVALID_PARAMS: i64 = -32602;
    /// Internal error.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// Implementation-defined: the gateway refused the message.
    pub const GATEWAY_REFUSED: i64 = -32010;
    /// 2026-07-28: `Mcp-Method` / `Mcp-Name` headers disagree with the body.
    pub const HEADER_MISMATCH: i64 = -32020;
    /// 2026-07-28: the protocol version is not supported.
    pub const UNSUPPORTED_PROTOCOL_VERSION: i64 = -32022;
}

/// Why a message was refused before anything was forwarded. Each has a stable reason code.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not strict JSON (see the kernel's `strict_json`).
    #[error("message is not strict JSON: {0}")]
    Json(#[from] strict_json::StrictJsonError),
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message is {0} bytes, more than the {MAX_MESSAGE_BYTES} allowed")]
    TooLarge(usize),
    /// Valid JSON, but not a JSON-RPC 2.0 message.
    #[error("not a JSON-RPC 2.0 message: {0}")]
    NotJsonRpc(String),
    /// An empty batch.
    #[error("empty JSON-RPC batch")]
    EmptyBatch,
}

impl FrameError {
    /// Stable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            FrameError::Json(err) => err.reason_code(),
            FrameError::TooLarge(_) => "MCP_MESSAGE_TOO_LARGE",
            FrameError::NotJsonRpc(_) => "MCP_NOT_JSONRPC",
            FrameError::EmptyBatch => "MCP_EMPTY_BATCH",
        }
    }

    /// The JSON-RPC error code to answer with.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            FrameError::Json(_) | FrameError::TooLarge(_) => codes::PARSE_ERROR,
            FrameError::NotJsonRpc(_) | FrameError::EmptyBatch => codes::INVALID_REQUEST,
        }
    }
}

/// What a message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A request: `method` and `id`.
    Request,
    /// A notification: `method`, no `id`.
    Notification,
    /// A response: `id` and `result`.
    Result,
    /// An error response: `id` (maybe null) and `error`.
    Error,
}

/// A JSON-RPC id: a string or an integer (JSON-RPC also allows null only in error responses).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Id {
    /// An integer id.
    Number(i64),
    /// A string id.
    Text(String),
    /// `null` (error responses to unreadable requests).
    Null,
}

impl Id {
    /// The id as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(text) => Value::String(text.clone()).to_string(),
            Id::Null => "null".to_owned(),
        }
    }

    /// The id as a JSON value.
    pub fn to_value(&self) -> Value {
        match self {
            Id::Number(n) => Value::from(*n),
            Id::Text(text) => Value::String(text.clone()),
            Id::Null => Value::Null,
        }
    }

    fn from_value(value: &Value) -> Option<Id> {
        match value {
            Value::Number(n) => n.as_i64().map(Id::Number),
            Value::String(text) => Some(Id::Text(text.clone())),
            Value::Null => Some(Id::Null),
            _ => None,
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// One JSON-RPC message, its exact text, and where its parts are.
#[derive(Clone, Debug)]
pub struct Message {
    text: String,
    kind: Kind,
    id: Option<Id>,
    method: Option<String>,
    params: Option<Range<usize>>,
    result: Option<Range<usize>>,
    value: Value,
}

/// A parsed line or body: one message or a batch.
#[derive(Clone, Debug)]
pub enum Frame {
    /// One message.
    Single(Message),
    /// A JSON-RPC batch (a top-level array), each element with its own text.
    Batch(Vec<Message>),
}

/// The members of a message envelope, borrowed from the text.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a RawValue>,
    #[serde(borrow, default)]
    params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
}

/// Byte range of `part` inside `whole` (`part` must be a sub-slice of `whole`).
fn range_in(whole: &str, part: &str) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(whole.as_ptr() as usize);
    start..start + part.len()
}

impl Frame {
    /// Reads one message or batch strictly.
    pub fn parse(bytes: &[u8]) -> Result<Frame, FrameError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(FrameError::TooLarge(bytes.len()));
        }
        let value = strict_json::parse(bytes)?;
        // strict_json checked UTF-8 already.
        let text = std::str::from_utf8(bytes)
            .map_err(|err| FrameError::NotJsonRpc(err.to_string()))?
            .trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
        match value {
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(FrameError::EmptyBatch);
                }
                let raws: Vec<&RawValue> = serde_json::from_str(text)
                    .map_err(|err| FrameError::NotJsonRpc(err.to_string()))?;
                raws.into_iter()
                    .zip(items)
                    .map(|(raw, value)| Message::from_parts(raw.get(), value))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Frame::Batch)
            }
            value => Message::from_parts(text, value).map(Frame::Single),
        }
    }
}

impl Message {
    /// Reads one message strictly (a batch is an error here).
    pub fn parse(bytes: &[u8]) -> Result<Message, FrameError> {
        match Frame::parse(bytes)? {
            Frame::Single(message) => Ok(message),
            Frame::Batch(_) => Err(FrameError::NotJsonRpc(
                "a batch where one message is expected".into(),
            )),
        }
    }

    fn from_parts(text: &str, value: Value) -> Result<Message, FrameError> {
        if !value.is_object() {
            return Err(FrameError::NotJsonRpc("not an object".into()));
        }
        let envelope: Envelope<'_> =
            serde_json::from_str(text).map_err(|err| FrameError::NotJsonRpc(err.to_string()))?;
        if envelope.jsonrpc.map(RawValue::get) != Some("\"2.0\"") {
            return Err(FrameError::NotJsonRpc("\"jsonrpc\" must be \"2.0\"".into()));
        }
        let id = match value.get("id") {
            None => None,
            Some(id) => Some(Id::from_value(id).ok_or_else(|| {
                FrameError::NotJsonRpc("id must be a string or an integer".into())
            })?),
        };
        let method = match value.get("method") {
            None => None,
            Some(Value::String(method)) => Some(method.clone()),
            Some(_) => return Err(FrameError::NotJsonRpc("method must be a string".into())),
        };
        let kind = match (
            &method,
            &id,
            envelope.result.is_some(),
            envelope.error.is_some(),
        ) {
            (Some(_), Some(Id::Null), _, _) => {
                return Err(FrameError::NotJsonRpc(
                    "a request id must not be null".into(),
                ));
            }
            (Some(_), Some(_), false, false) => Kind::Request,
            (Some(_), None, false, false) => Kind::Notification,
            (None, Some(Id::Null), false, true) => Kind::Error,
            (None, Some(Id::Null), true, _) => {
                return Err(FrameError::NotJsonRpc(
                    "a result's id must not be null".into(),
                ));
            }
            (None, Some(_), true, false) => Kind::Result,
            (None, Some(_), false, true) => Kind::Error,
            _ => {
                return Err(FrameError::NotJsonRpc(
                    "neither a request, a notification nor a response".into(),
                ));
            }
        };
        if matches!(kind, Kind::Request | Kind::Notification)
            && value
                .get("params")
                .is_some_and(|params| !params.is_object() && !params.is_array())
        {
            return Err(FrameError::NotJsonRpc(
                "params must be an object or an array".into(),
            ));
        }
        Ok(Message {
            text: text.to_owned(),
            kind,
            id,
            method,
            params: envelope.params.map(|raw| range_in(text, raw.get())),
            result: envelope.result.map(|raw| range_in(text, raw.get())),
            value,
        })
    }

    /// The exact text of the message.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// What the message is.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The id of a request or response.
    pub fn id(&self) -> Option<&Id> {
        self.id.as_ref()
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The whole message, parsed.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// `params`, parsed.
    pub fn params(&self) -> Option<&Value> {
        self.value.get("params")
    }

    /// `result`, parsed.
    pub fn result(&self) -> Option<&Value> {
        self.value.get("result")
    }

    /// Text of the message with `"key": value_json` added to `params._meta` (request) or
    /// `result._meta` (response), creating `_meta` when absent. Every other byte is unchanged.
    /// Refuses when the key is already there: only the gateway writes it.
    pub fn with_meta_member(&self, key: &str, value_json: &str) -> Result<String, FrameError> {
        let (container, range) = match self.kind {
            Kind::Request | Kind::Notification => (self.params(), self.params.clone()),
            Kind::Result => (self.result(), self.result.clone()),
            Kind::Error => (None, None),
        };
        let (Some(Value::Object(container)), Some(range)) = (container, range) else {
            return Err(FrameError::NotJsonRpc("no object to carry _meta".into()));
        };
        let member = format!("{}:{value_json}", Value::String(key.to_owned()));
        match container.get("_meta") {
            None => Ok(insert_first_member(
                &self.text,
                range,
                &format!("\"_meta\":{{{member}}}"),
            )),
            Some(Value::Object(meta)) => {
                if meta.contains_key(key) {
                    return Err(FrameError::NotJsonRpc(format!(
                        "_meta already carries {key}"
                    )));
                }
                let inner = &self.text[range.clone()];
                let meta_range = meta_member_range(inner).ok_or_else(|| {
                    FrameError::NotJsonRpc("cannot locate _meta in the message".into())
                })?;
                let absolute = range.start + meta_range.start..range.start + meta_range.end;
                Ok(insert_first_member(&self.text, absolute, &member))
            }
            Some(_) => Err(FrameError::NotJsonRpc("_meta must be an object".into())),
        }
    }

    /// Text of a response with the members of `result._meta` whose keys start with `prefix`
    /// removed; `Ok(None)` when it has none. Only `_meta`'s text is rewritten, and the members
    /// kept keep their order and the exact text of their values.
    pub fn without_result_meta(&self, prefix: &str) -> Result<Option<String>, FrameError> {
        let (Some(Value::Object(result)), Some(range)) = (self.result(), self.result.clone())
        else {
            return Ok(None);
        };
        let Some(Value::Object(meta)) = result.get("_meta") else {
            return Ok(None);
        };
        if !meta.keys().any(|key| key.starts_with(prefix)) {
            return Ok(None);
        }
        let inner = &self.text[range.clone()];
        let meta_range = meta_member_range(inner)
            .ok_or_else(|| FrameError::NotJsonRpc("cannot locate _meta in the message".into()))?;
        let members: RawMembers<'_> = serde_json::from_str(&inner[meta_range.clone()])
            .map_err(|err| FrameError::NotJsonRpc(err.to_string()))?;
        let kept: Vec<String> = members
            .0
            .iter()
            .filter(|(key, _)| !key.starts_with(prefix))
            .map(|(key, value)| format!("{}:{}", Value::String(key.clone()), value.get()))
            .collect();
        let start = range.start + meta_range.start;
        let end = range.start + meta_range.end;
        Ok(Some(format!(
            "{}{{{}}}{}",
            &self.text[..start],
            kept.join(","),
            &self.text[end..]
        )))
    }
}

/// The members of a JSON object in order, each value as its exact text.
struct RawMembers<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for RawMembers<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Members<'a> {
            type Value = RawMembers<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, &'de RawValue>()? {
                    members.push(member);
                }
                Ok(RawMembers(members))
            }
        }
        deserializer.deserialize_map(Members(std::marker::PhantomData))
    }
}

/// Range of the `_meta` member's value inside the object text `object`.
fn meta_member_range(object: &str) -> Option<Range<usize>> {
    #[derive(Deserialize)]
    struct MetaOnly<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: &'a RawValue,
    }
    let found: MetaOnly<'_> = serde_json::from_str(object).ok()?;
    Some(range_in(object, found.meta.get()))
}

/// `text` with `member` inserted as the first member of the object at `object`.
fn insert_first_member(text: &str, object: Range<usize>, member: &str) -> String {
    let open = object.start + 1;
    let empty = text[open..object.end]
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .starts_with('}');
    let mut out = String::with_capacity(text.len() + member.len() + 1);
    out.push_str(&text[..open]);
    out.push_str(member);
    if !empty {
        out.push(',');
    }
    out.push_str(&text[open..]);
    out
}

/// A JSON-RPC error response, as text.
pub fn error_response(id: &Id, code: i64, message: &str, data: Option<Value>) -> String {
    let mut error = serde_json::json!({"code": code, "message": message});
    if let (Some(data), Some(object)) = (data, error.as_object_mut()) {
        object.insert("data".into(), data);
    }
    serde_json::json!({"jsonrpc": "2.0", "id": id.to_value(), "error": error}).to_string()
}

/// A JSON-RPC result response, as text.
pub fn result_response(id: &Id, result: Value) -> String {
    serde_json::json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Message {
        Message::parse(text.as_bytes()).unwrap()
    }

    #[test]
    fn reads_each_kind() {
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).kind(),
            Kind::Request
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).kind(),
            Kind::Notification
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":"a","result":{}}"#).kind(),
            Kind::Result
        );
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"x"}}"#).kind(),
            Kind::Error
        );
    }

    #[test]
    fn refuses_ambiguous_or_malformed_messages() {
        let cases: &[(&[u8], &str)] = &[
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#,
                "JSON_DUPLICATE_KEY",
            ),
            (
                b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"a\"}",
                "JSON_BOM",
            ),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}",
                "JSON_INVALID_UTF8",
            ),
            (
                br#"{"jsonrpc":"1.0","id":1,"method":"a"}"#,
                "MCP_NOT_JSONRPC",
            ),
            (br#"{"id":1,"method":"a"}"#, "MCP_NOT_JSONRPC"),
            (
                br#"{"jsonrpc":"2.0","id":1.5,"method":"a"}"#,
                "MCP_NOT_JSONRPC",
            ),
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"a"}"#,
                "MCP_NOT_JSONRPC",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"a","result":{}}"#,
                "MCP_NOT_JSONRPC",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"a","params":3}"#,
                "MCP_NOT_JSONRPC",
            ),
            (br#"[]"#, "MCP_EMPTY_BATCH"),
            (
                br#"{"jsonrpc":"2.0","id":9007199254740993,"method":"a"}"#,
                "JSON_INTEGER_OUT_OF_RANGE",
            ),
        ];
        for (bytes, code) in cases {
            let err = Frame::parse(bytes).unwrap_err();
            assert_eq!(
                err.reason_code(),
                *code,
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn a_batch_keeps_each_element_text() {
        let text = r#"[ {"jsonrpc":"2.0","id":1,"method":"a"} ,{"jsonrpc":"2.0","method":"n"}]"#;
        let Frame::Batch(items) = Frame::parse(text.as_bytes()).unwrap() else {
            panic!("not a batch")
        };
        assert_eq!(items[0].text(), r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#);
        assert_eq!(items[1].kind(), Kind::Notification);
    }

    #[test]
    fn meta_insertion_changes_nothing_else() {
        let text = r#"{"params": { "name" :"pay", "arguments":{"b":1,"a":2}} ,"id":7,"jsonrpc":"2.0","method":"tools/call"}"#;
        let out = one(text)
            .with_meta_member(META_DECISION, "\"jws\"")
            .unwrap();
        assert_eq!(
            out,
            r#"{"params": {"_meta":{"io.trustos/decision":"jws"}, "name" :"pay", "arguments":{"b":1,"a":2}} ,"id":7,"jsonrpc":"2.0","method":"tools/call"}"#
        );
        let existing = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pay","_meta": { },"arguments":{}}}"#;
        let out = one(existing)
            .with_meta_member(META_DECISION, "\"j\"")
            .unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pay","_meta": {"io.trustos/decision":"j" },"arguments":{}}}"#
        );
        let with_other = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"_meta":{"progressToken":5},"name":"pay"}}"#;
        let out = one(with_other)
            .with_meta_member(META_DECISION, "\"j\"")
            .unwrap();
        assert!(out.contains(r#""_meta":{"io.trustos/decision":"j","progressToken":5}"#));
        assert_eq!(
            Message::parse(out.as_bytes()).unwrap().params().unwrap()["_meta"]["progressToken"],
            5
        );
    }

    #[test]
    fn meta_insertion_refuses_a_forged_key() {
        let forged = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"pay","_meta":{"io.trustos/decision":"forged"}}}"#;
        assert!(
            one(forged)
                .with_meta_member(META_DECISION, "\"j\"")
                .is_err()
        );
    }

    #[test]
    fn result_meta_insertion() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[]}}"#;
        let out = one(text).with_meta_member(META_RECEIPT, "\"r\"").unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":7,"result":{"_meta":{"io.trustos/receipt":"r"},"content":[]}}"#
        );
    }

    #[test]
    fn reserved_result_meta_is_removed_and_nothing_else() {
        let text = r#"{"jsonrpc":"2.0","id":7,"result":{"content":[], "_meta" : {"a":1.50,"io.trustos/receipt":"forged","x402/payment-response":{"success":true},"io.trustos/decision":"d"},"isError":false}}"#;
        let out = one(text)
            .without_result_meta("io.trustos/")
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[], "_meta" : {"a":1.50,"x402/payment-response":{"success":true}},"isError":false}}"#
        );
        let only = r#"{"jsonrpc":"2.0","id":7,"result":{"_meta":{"io.trustos/receipt":"r"}}}"#;
        assert_eq!(
            one(only)
                .without_result_meta("io.trustos/")
                .unwrap()
                .unwrap(),
            r#"{"jsonrpc":"2.0","id":7,"result":{"_meta":{}}}"#
        );
        let clean = r#"{"jsonrpc":"2.0","id":7,"result":{"_meta":{"progressToken":1}}}"#;
        assert!(
            one(clean)
                .without_result_meta("io.trustos/")
                .unwrap()
                .is_none()
        );
        let request = r#"{"jsonrpc":"2.0","id":7,"method":"x","params":{"_meta":{"io.trustos/decision":"d"}}}"#;
        assert!(
            one(request)
                .without_result_meta("io.trustos/")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn error_responses_echo_the_id() {
        let text = error_response(&Id::Text("x".into()), codes::INVALID_REQUEST, "no", None);
        assert_eq!(one(&text).id(), Some(&Id::Text("x".into())));
    }
}
