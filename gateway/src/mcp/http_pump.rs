//! Feeding a relay's upstream outbox to a Streamable HTTP server: each message is its own POST
//! (its exact bytes), and whatever the server sends back for it goes to the relay. Shared by the
//! stdio shim (`trustos mcp --url`) and the HTTP front.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use super::http_upstream::{HttpUpstream, PostMeta};
use super::relay::Relay;

/// What the transport needs to know of a message before it POSTs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outgoing {
    /// `method`, for requests and notifications.
    pub method: Option<String>,
    /// `params.name` or `params.uri` (the `Mcp-Name` header of 2026-07-28).
    pub name: Option<String>,
    /// A request (it has an id), so a response is awaited.
    pub is_request: bool,
}

impl Outgoing {
    /// Reads the routing facts of a message the relay already checked.
    pub fn of(text: &str) -> Self {
        let value: Value = serde_json::from_str(text).unwrap_or(Value::Null);
        let method = value
            .get("method")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let name = value
            .pointer("/params/name")
            .or_else(|| value.pointer("/params/uri"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let is_request = method.is_some() && value.get("id").is_some();
        Self {
            method,
            name,
            is_request,
        }
    }

    /// `initialize`, which must finish before anything else goes out (the session id).
    pub fn is_initialize(&self) -> bool {
        self.method.as_deref() == Some("initialize")
    }
}

/// POSTs one message and feeds every reply to the relay; a failure fails its request there.
pub async fn post_one(
    relay: Arc<Relay>,
    upstream: Arc<HttpUpstream>,
    text: String,
    outgoing: Outgoing,
) {
    upstream.set_protocol_version(relay.era());
    let meta = PostMeta {
        method: outgoing.method.as_deref().unwrap_or_default(),
        name: outgoing.name.as_deref(),
        is_request: outgoing.is_request,
    };
    match upstream.post(Bytes::from(text.clone()), meta).await {
        Ok(mut replies) => {
            while let Some(reply) = replies.recv().await {
                match reply {
                    Ok(bytes) => relay.from_upstream(&bytes).await,
                    Err(err) => {
                        tracing::warn!(%err, "upstream stream failed");
                        relay.upstream_failed(&text, &err.to_string()).await;
                    }
                }
            }
        }
        Err(err) => {
            tracing::warn!(%err, "upstream POST failed");
            relay.upstream_failed(&text, &err.to_string()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_routing_facts() {
        let call = Outgoing::of(
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
        );
        assert_eq!(call.method.as_deref(), Some("tools/call"));
        assert_eq!(call.name.as_deref(), Some("echo"));
        assert!(call.is_request && !call.is_initialize());
        let read = Outgoing::of(
            r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///a"}}"#,
        );
        assert_eq!(read.name.as_deref(), Some("file:///a"));
        let note = Outgoing::of(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        assert!(!note.is_request);
        let answer = Outgoing::of(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
        assert_eq!(answer, Outgoing::default());
    }
}
