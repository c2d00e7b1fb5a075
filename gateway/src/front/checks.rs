//! The request checks of the HTTP front that need no session: `Origin` (DNS rebinding), the
//! bearer token, content negotiation, and the 2026-07-28 request metadata headers
//! (`Mcp-Method`, `Mcp-Name`, `MCP-Protocol-Version` against the body).
//!
//! Each check is a pure function of headers and the leniently read body, so it can be tested
//! without a server.

use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::mcp::era::{Era, META_PROTOCOL_VERSION};

/// Whether a browser `Origin` is one of `allowed` (scheme and host compared, any port).
pub(super) fn origin_allowed(origin: &HeaderValue, allowed: &[String]) -> bool {
    let Some((scheme, host)) = origin.to_str().ok().and_then(scheme_and_host) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|entry| scheme_and_host(entry))
        .any(|(s, h)| s == scheme && h == host)
}

/// `scheme://host[:port][/]` → (scheme, host), both lowercase; `None` for anything else
/// (`null`, paths, user info, missing host).
fn scheme_and_host(origin: &str) -> Option<(String, String)> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if scheme.is_empty()
        || authority.is_empty()
        || authority.contains(['/', '@', '?', '#'])
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
    {
        return None;
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        format!("[{inside}]")
    } else {
        match authority.split_once(':') {
            Some((host, port)) if is_port(port) => host.to_owned(),
            Some(_) => return None,
            None => authority.to_owned(),
        }
    };
    if host.is_empty() {
        return None;
    }
    Some((scheme.to_ascii_lowercase(), host.to_ascii_lowercase()))
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The media type of `Content-Type` (lowercase, parameters dropped).
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    Some(media.to_ascii_lowercase())
}

/// Whether the body is declared `application/json`.
pub(super) fn is_json_body(headers: &HeaderMap) -> bool {
    media_type(headers).as_deref() == Some("application/json")
}

/// The media ranges of every `Accept` header (lowercase, parameters dropped); `None` without one.
fn accepted(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut ranges = Vec::new();
    let mut any = false;
    for value in headers.get_all(ACCEPT) {
        any = true;
        let Ok(value) = value.to_str() else { continue };
        ranges.extend(
            value
                .split(',')
                .map(|range| range.split(';').next().unwrap_or_default().trim())
                .filter(|range| !range.is_empty())
                .map(str::to_ascii_lowercase),
        );
    }
    any.then_some(ranges)
}

/// Whether a POST's `Accept` (when present) admits a JSON or event-stream answer.
pub(super) fn accepts_post_answer(headers: &HeaderMap) -> bool {
    accepted(headers).is_none_or(|ranges| {
        ranges.iter().any(|r| {
            matches!(
                r.as_str(),
                "application/json" | "text/event-stream" | "application/*" | "text/*" | "*/*"
            )
        })
    })
}

/// Whether a GET's `Accept` admits an event stream (it must be present).
pub(super) fn accepts_event_stream(headers: &HeaderMap) -> bool {
    accepted(headers).is_some_and(|ranges| {
        ranges
            .iter()
            .any(|r| matches!(r.as_str(), "text/event-stream" | "text/*" | "*/*"))
    })
}

/// The ids of the requests in a (leniently read) body: a request is an object with a `method`
/// and an `id`. Responses and notifications are not waited for.
pub(super) fn request_ids(body: Option<&Value>) -> Vec<Value> {
    let is_request = |v: &Value| v.get("method").is_some() && v.get("id").is_some();
    match body {
        Some(Value::Array(items)) => items
            .iter()
            .filter(|v| is_request(v))
            .filter_map(|v| v.get("id").cloned())
            .collect(),
        Some(v) if is_request(v) => v.get("id").cloned().into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The first id that occurs twice in `ids` (null ids aside).
pub(super) fn duplicate_id(ids: &[Value]) -> Option<&Value> {
    ids.iter()
        .enumerate()
        .find(|(i, id)| !id.is_null() && ids[..*i].contains(id))
        .map(|(_, id)| id)
}

/// The protocol version a single message names in `params._meta`.
pub(super) fn body_protocol_version(body: Option<&Value>) -> Option<&str> {
    body?
        .get("params")?
        .get("_meta")?
        .get(META_PROTOCOL_VERSION)?
        .as_str()
}

/// Whether a single message is an `initialize` request.
pub(super) fn is_initialize(body: Option<&Value>) -> bool {
    body.is_some_and(|v| {
        v.get("method").and_then(Value::as_str) == Some("initialize") && v.get("id").is_some()
    })
}

/// The 2026-07-28 request metadata a POST carries.
#[derive(Debug, Default)]
pub(super) struct MetadataHeaders {
    /// `Mcp-Method`, raw.
    pub method: Option<HeaderValue>,
    /// `Mcp-Name`, raw (maybe in the Base64 sentinel form).
    pub name: Option<HeaderValue>,
}

/// Checks the 2026-07-28 request metadata against the body. `Err` is the `HeaderMismatch`
/// message. A batch passes (the relay refuses batches in this era); a notification or response
/// is checked only for the headers it carries.
pub(super) fn check_metadata(
    body: Option<&Value>,
    headers: &MetadataHeaders,
) -> Result<(), String> {
    let Some(message) = body.filter(|v| v.is_object()) else {
        return match body {
            Some(Value::Array(_)) => Ok(()),
            _ => Err("the body is not a JSON-RPC message".to_owned()),
        };
    };
    let Some(method) = message.get("method").and_then(Value::as_str) else {
        // A response carries no metadata to check.
        return Ok(());
    };
    let is_request = message.get("id").is_some();
    if is_request {
        match body_protocol_version(body) {
            Some(version) if version == Era::V2026_07_28.as_str() => {}
            Some(version) => {
                return Err(format!(
                    "_meta[{META_PROTOCOL_VERSION:?}] is {version:?} but the request is sent as 2026-07-28"
                ));
            }
            None => {
                return Err(format!(
                    "a 2026-07-28 request needs _meta[{META_PROTOCOL_VERSION:?}] in its params"
                ));
            }
        }
    }
    match headers.method.as_ref().map(HeaderValue::to_str) {
        None if is_request => return Err("the Mcp-Method header is missing".to_owned()),
        None => {}
        Some(Ok(value)) if value == method => {}
        Some(Ok(value)) => {
            return Err(format!(
                "Mcp-Method header value {value:?} does not match body value {method:?}"
            ));
        }
        Some(Err(_)) => return Err("the Mcp-Method header is not visible ASCII".to_owned()),
    }
    let field = match method {
        "tools/call" | "prompts/get" => "name",
        "resources/read" => "uri",
        _ => return Ok(()),
    };
    if !is_request {
        return Ok(());
    }
    let expected = message
        .get("params")
        .and_then(|p| p.get(field))
        .and_then(Value::as_str);
    let Some(header) = headers.name.as_ref() else {
        return Err("the Mcp-Name header is missing".to_owned());
    };
    let presented = decode_header_value(header)?;
    match expected {
        Some(expected) if expected == presented => Ok(()),
        Some(expected) => Err(format!(
            "Mcp-Name header value {presented:?} does not match body value {expected:?}"
        )),
        None => Err(format!("params.{field} is missing or not a string")),
    }
}

/// A header value, decoded from the Base64 sentinel form `=?base64?…?=` when it has it.
pub(super) fn decode_header_value(value: &HeaderValue) -> Result<String, String> {
    let text = value
        .to_str()
        .map_err(|_| "the Mcp-Name header is not visible ASCII".to_owned())?;
    match text
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => base64_decode(encoded)
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| "the Mcp-Name header's Base64 value is malformed".to_owned()),
        None => Ok(text.to_owned()),
    }
}

/// RFC 4648 Base64 (standard alphabet, padding required), strictly: `None` on anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn sextet(byte: u8) -> Option<u32> {
        Some(u32::from(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let quads = bytes.len() / 4;
    for (index, quad) in bytes.chunks(4).enumerate() {
        let padding = quad.iter().rev().take_while(|b| **b == b'=').count();
        if padding > 2 || (padding > 0 && index + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for (i, byte) in quad.iter().enumerate() {
            let value = if i >= 4 - padding { 0 } else { sextet(*byte)? };
            n = (n << 6) | value;
        }
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        // Canonical encoding only: the bits a padded quad drops must be zero.
        if (padding == 1 && decoded[2] != 0) || (padding == 2 && decoded[1] != 0) {
            return None;
        }
        out.extend_from_slice(&decoded[..3 - padding]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allowed() -> Vec<String> {
        vec![
            "http://localhost".into(),
            "http://127.0.0.1".into(),
            "https://localhost".into(),
        ]
    }

    #[test]
    fn origins_compare_scheme_and_host_at_any_port() {
        let ok = |o: &str| origin_allowed(&HeaderValue::from_str(o).unwrap(), &allowed());
        assert!(ok("http://localhost:6274"));
        assert!(ok("http://LOCALHOST"));
        assert!(ok("http://127.0.0.1:3000"));
        assert!(ok("https://localhost:8443/"));
        assert!(!ok("https://127.0.0.1"));
        assert!(!ok("http://evil.example"));
        assert!(!ok("http://localhost.evil.example"));
        assert!(!ok("http://localhost@evil.example"));
        assert!(!ok("null"));
        assert!(!ok("http://localhost:abc"));
        let v6 = vec!["http://[::1]".to_owned()];
        assert!(origin_allowed(
            &HeaderValue::from_static("http://[::1]:8080"),
            &v6
        ));
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer  abc "));
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn negotiation() {
        let mut headers = HeaderMap::new();
        assert!(accepts_post_answer(&headers));
        assert!(!accepts_event_stream(&headers));
        headers.insert(ACCEPT, HeaderValue::from_static("text/html"));
        assert!(!accepts_post_answer(&headers));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        assert!(accepts_post_answer(&headers));
        assert!(accepts_event_stream(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("Application/JSON; charset=utf-8"),
        );
        assert!(is_json_body(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json_body(&headers));
    }

    #[test]
    fn base64_follows_the_spec_examples() {
        let decode = |s: &str| decode_header_value(&HeaderValue::from_str(s).unwrap());
        assert_eq!(
            decode("=?base64?SGVsbG8sIOS4lueVjA==?=").unwrap(),
            "Hello, 世界"
        );
        assert_eq!(decode("=?base64?IHBhZGRlZCA=?=").unwrap(), " padded ");
        assert_eq!(
            decode("=?base64?bGluZTEKbGluZTI=?=").unwrap(),
            "line1\nline2"
        );
        assert_eq!(
            decode("=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=").unwrap(),
            "=?base64?literal?="
        );
        assert_eq!(decode("get_weather").unwrap(), "get_weather");
        assert!(decode("=?base64?SGVsbG8?=").is_err());
        assert!(decode("=?base64?SGVsbG9=?=").is_err());
        assert!(decode("=?base64?S=VsbG8=?=").is_err());
    }

    #[test]
    fn metadata_must_match_the_body() {
        let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": "echo", "arguments": {},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        let headers = |method: Option<&'static str>, name: Option<&'static str>| MetadataHeaders {
            method: method.map(HeaderValue::from_static),
            name: name.map(HeaderValue::from_static),
        };
        assert!(check_metadata(Some(&call), &headers(Some("tools/call"), Some("echo"))).is_ok());
        assert!(
            check_metadata(
                Some(&call),
                &headers(Some("tools/call"), Some("=?base64?ZWNobw==?="))
            )
            .is_ok()
        );
        assert!(check_metadata(Some(&call), &headers(Some("tools/call"), Some("deploy"))).is_err());
        assert!(check_metadata(Some(&call), &headers(Some("tools/call"), None)).is_err());
        assert!(check_metadata(Some(&call), &headers(None, Some("echo"))).is_err());
        assert!(check_metadata(Some(&call), &headers(Some("tools/list"), Some("echo"))).is_err());
        let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert!(check_metadata(Some(&list), &headers(Some("tools/list"), None)).is_ok());
        let bare = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"});
        assert!(check_metadata(Some(&bare), &headers(Some("tools/list"), None)).is_err());
        let read = json!({"jsonrpc": "2.0", "id": 4, "method": "resources/read", "params": {
            "uri": "file:///a b",
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}});
        assert!(
            check_metadata(
                Some(&read),
                &headers(Some("resources/read"), Some("file:///a b"))
            )
            .is_ok()
        );
        assert!(check_metadata(Some(&json!([call])), &headers(None, None)).is_ok());
    }

    #[test]
    fn request_ids_and_duplicates() {
        let batch = json!([
            {"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": "a", "result": {}},
            {"jsonrpc": "2.0", "id": 1, "method": "ping"}
        ]);
        let ids = request_ids(Some(&batch));
        assert_eq!(ids, vec![json!(1), json!(1)]);
        assert_eq!(duplicate_id(&ids), Some(&json!(1)));
        assert!(request_ids(Some(&json!({"jsonrpc": "2.0", "method": "x"}))).is_empty());
    }
}
