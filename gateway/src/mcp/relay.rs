//! The relay: one host connection to one upstream MCP server, with the gateway in between.
//!
//! Transports (the stdio shim, the HTTP front) feed it raw bytes from each side
//! ([`Relay::from_client`], [`Relay::from_upstream`]) and drain its two outboxes. It forwards the
//! bytes it inspected; the only change to a forwarded message is the gateway's `_meta` entry
//! (the decision on a `tools/call`, the receipt on its result).
//!
//! Phases of a client message: strict parse → batch rule of the negotiated era → lifecycle
//! (nothing but `initialize`/`ping` before the handshake, in eras that have one) → method
//! allow-list → for `tools/call`: the authority's verdict (pass, forward with decision, refuse
//! with reasons, or hold) → forward. Phases of an upstream message: strict parse → drop the
//! upstream's own `io.trustos/*` entries from `result._meta` → match the response to its request
//! → record the era, pin the tools, pay and retry once (an x402 payment request), or receipt the
//! call → deliver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock, MetaObject};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncBufRead;
use tokio::sync::mpsc;
use trustos_kernel::canonical::Digest;
use trustos_kernel::timestamp::Timestamp;

use super::era::{Era, META_PROTOCOL_VERSION};
use super::lines::{Line, read_line};
use super::message::{
    self, Frame, FrameError, Id, Kind, MAX_MESSAGE_BYTES, META_DECISION, META_RECEIPT, Message,
    codes,
};
use crate::enforce::pay::{PaidOutcome, PaymentVerdict};
use crate::enforce::{self, Authority, CallEnd, Reason, ToolCall, Verdict};
use trustos_adapters::x402::wire as x402_wire;

/// `_meta` keys only the gateway may write.
pub const RESERVED_META_PREFIX: &str = "io.trustos/";

/// Client-to-server requests the relay forwards (every era's); anything else is refused.
const CLIENT_REQUESTS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "resources/subscribe",
    "resources/unsubscribe",
    "subscriptions/listen",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "tasks/get",
    "tasks/update",
    "tasks/list",
    "tasks/cancel",
    "tasks/result",
];

/// Client-to-server notifications the relay forwards.
const CLIENT_NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "notifications/tasks/status",
];

/// Who is calling through this relay, and to which server.
#[derive(Clone, Debug)]
pub struct RelayIdentity {
    /// Server name (as configured, as routes name it).
    pub server: String,
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Session, when the transport has one.
    pub session: Option<String>,
}

/// What a request in flight is, for handling its response.
#[derive(Clone, Debug)]
enum Pending {
    Initialize,
    ToolsList,
    Enforced {
        decision_id: String,
        started_at: Timestamp,
    },
    /// Waiting for a verdict (or an approval: then the challenge's decision id), or for the
    /// daemon to decide and sign a payment.
    Held(Option<String>),
    /// A `tools/call` forwarded without a decision (low risk, or a paid tool asked for its
    /// price): if the tool answers with an x402 payment request, the gateway pays and retries.
    Probe(Box<Message>),
    /// A paid retry: the decision that allowed the payment, and when it was sent.
    Paid {
        decision_id: String,
        started_at: Timestamp,
    },
    /// A paid retry that did not answer in time: its outcome was receipted unknown and the
    /// host answered; a late answer is dropped (the host must not get two).
    Abandoned,
    Other,
}

/// A batch being answered: the responses it still waits for, and those it has.
#[derive(Debug, Default)]
struct Batch {
    waiting: usize,
    answers: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    era: Option<Era>,
    initialize_sent: bool,
    initialized: bool,
    pending: HashMap<Id, Pending>,
    batch_of: HashMap<Id, u64>,
    batches: HashMap<u64, Batch>,
    next_batch: u64,
    /// The host declared the `elicitation` capability in `initialize`.
    host_elicits: bool,
    /// The gateway's own elicitation requests to the host, by id, waiting for answers.
    elicitations: HashMap<String, tokio::sync::oneshot::Sender<Value>>,
    next_elicitation: u64,
}

/// Prefix of the ids of the gateway's own requests to the host.
const ELICITATION_ID_PREFIX: &str = "io.trustos/elicit-";

/// One relayed connection.
pub struct Relay {
    identity: RelayIdentity,
    authority: Arc<dyn Authority>,
    to_client: mpsc::Sender<String>,
    to_upstream: mpsc::Sender<String>,
    state: Mutex<State>,
}

/// The id of a message the strict reader refused, read as leniently as possible (BOM dropped,
/// invalid UTF-8 replaced, last duplicate key wins), only to address the error answer.
fn lenient_id(bytes: &[u8]) -> Option<Id> {
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let text = String::from_utf8_lossy(bytes);
    match serde_json::from_str::<Value>(&text).ok()?.get("id")? {
        Value::Number(n) => n.as_i64().map(Id::Number),
        Value::String(s) => Some(Id::Text(s.clone())),
        _ => None,
    }
}

fn tool_name(message: &Message) -> String {
    message
        .params()
        .and_then(|p| p.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn reason_data(code: &str) -> Value {
    json!({"reason": code, "remediation": crate::policy::reasons::remediation(code)})
}

impl Relay {
    /// A relay that writes to `to_client` (host) and `to_upstream` (server).
    pub fn new(
        identity: RelayIdentity,
        authority: Arc<dyn Authority>,
        to_client: mpsc::Sender<String>,
        to_upstream: mpsc::Sender<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            identity,
            authority,
            to_client,
            to_upstream,
            state: Mutex::new(State::default()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The negotiated protocol era, once known.
    pub fn era(&self) -> Option<Era> {
        self.state().era
    }

    /// Sets the era (transports that learn it out of band: HTTP headers, stateless requests).
    pub fn set_era(&self, era: Era) {
        self.state().era = Some(era);
    }

    /// The identity this relay speaks for.
    pub fn identity(&self) -> &RelayIdentity {
        &self.identity
    }

    async fn forward(&self, text: String) {
        if self.to_upstream.send(text).await.is_err() {
            tracing::debug!("upstream outbox closed");
        }
    }

    /// Delivers a message to the host, gathering batch answers until the batch is complete.
    async fn deliver(&self, id: Option<&Id>, text: String) {
        let out = {
            let mut state = self.state();
            match id.and_then(|id| state.batch_of.remove(id)) {
                None => Some(text),
                Some(batch_id) => {
                    let done = match state.batches.get_mut(&batch_id) {
                        Some(batch) => {
                            batch.answers.push(text);
                            batch.waiting = batch.waiting.saturating_sub(1);
                            batch.waiting == 0
                        }
                        None => false,
                    };
                    done.then(|| state.batches.remove(&batch_id))
                        .flatten()
                        .map(|batch| format!("[{}]", batch.answers.join(",")))
                }
            }
        };
        if let Some(text) = out
            && self.to_client.send(text).await.is_err()
        {
            tracing::debug!("client outbox closed");
        }
    }

    async fn reply_error(&self, id: &Id, code: i64, message: &str, reason: &str) {
        let text = message::error_response(id, code, message, Some(reason_data(reason)));
        self.deliver(Some(id), text).await;
    }

    /// Handles bytes from the host: one message or a batch.
    pub async fn from_client(self: &Arc<Self>, bytes: &[u8]) {
        match Frame::parse(bytes) {
            Err(err) => self.refuse_unreadable(bytes, &err).await,
            Ok(Frame::Single(message)) => self.client_message(message).await,
            Ok(Frame::Batch(items)) => {
                let era = self.era();
                if !era.is_some_and(Era::allows_batches) {
                    let message = format!(
                        "JSON-RPC batches are not allowed in protocol {}; send one message at a time",
                        era.map_or("before initialization".to_owned(), |e| e.to_string())
                    );
                    let text = message::error_response(
                        &Id::Null,
                        codes::INVALID_REQUEST,
                        &message,
                        Some(reason_data("MCP_BATCH_NOT_ALLOWED")),
                    );
                    let _ = self.to_client.send(text).await;
                    return;
                }
                {
                    let mut state = self.state();
                    let batch_id = state.next_batch;
                    state.next_batch += 1;
                    let ids: Vec<Id> = items
                        .iter()
                        .filter(|m| m.kind() == Kind::Request)
                        .filter_map(|m| m.id().cloned())
                        .collect();
                    if !ids.is_empty() {
                        state.batches.insert(
                            batch_id,
                            Batch {
                                waiting: ids.len(),
                                answers: Vec::new(),
                            },
                        );
                        for id in ids {
                            state.batch_of.insert(id, batch_id);
                        }
                    }
                }
                // Every element is enforced on its own, exactly as if sent alone.
                for item in items {
                    self.client_message(item).await;
                }
            }
        }
    }

    async fn refuse_unreadable(&self, bytes: &[u8], err: &FrameError) {
        tracing::warn!(reason = err.reason_code(), %err, "refused an unreadable client message");
        // Answer with the id when a lenient reading finds one; never forward.
        let id = lenient_id(bytes).unwrap_or(Id::Null);
        let text = message::error_response(
            &id,
            err.jsonrpc_code(),
            &err.to_string(),
            Some(reason_data(err.reason_code())),
        );
        let _ = self.to_client.send(text).await;
    }

    async fn client_message(self: &Arc<Self>, message: Message) {
        match message.kind() {
            Kind::Result | Kind::Error => {
                // The host's answer to the gateway's own elicitation stays here.
                let waiter = match message.id() {
                    Some(Id::Text(id)) if id.starts_with(ELICITATION_ID_PREFIX) => {
                        self.state().elicitations.remove(id)
                    }
                    _ => None,
                };
                match waiter {
                    Some(waiter) => {
                        let _ = waiter.send(message.value().clone());
                    }
                    None => self.forward(message.text().to_owned()).await,
                }
            }
            Kind::Notification => {
                let method = message.method().unwrap_or_default();
                if CLIENT_NOTIFICATIONS.contains(&method) {
                    if method == "notifications/cancelled" {
                        self.cancel_held(&message);
                    }
                    self.forward(message.text().to_owned()).await;
                } else {
                    // Notifications get no answer; a `tools/call` sent as one is dropped here.
                    tracing::warn!(
                        method,
                        "dropped a notification the gateway does not forward"
                    );
                }
            }
            Kind::Request => self.client_request(message).await,
        }
    }

    fn cancel_held(&self, message: &Message) {
        let Some(id) = message
            .params()
            .and_then(|p| p.get("requestId"))
            .and_then(|id| match id {
                Value::Number(n) => n.as_i64().map(Id::Number),
                Value::String(s) => Some(Id::Text(s.clone())),
                _ => None,
            })
        else {
            return;
        };
        let cancelled = {
            let mut state = self.state();
            match state.pending.get(&id) {
                Some(Pending::Held(decision)) => {
                    let decision = decision.clone();
                    state.pending.remove(&id);
                    state.batch_of.remove(&id);
                    decision
                }
                _ => None,
            }
        };
        // The daemon drops the hold: a later approval finds nothing to approve.
        if let Some(decision_id) = cancelled {
            let authority = Arc::clone(&self.authority);
            tokio::spawn(async move {
                if let Err(err) = authority.cancel_hold(&decision_id).await {
                    tracing::warn!(%err, decision_id, "could not cancel the hold");
                }
            });
        }
    }

    async fn client_request(self: &Arc<Self>, message: Message) {
        let Some(id) = message.id().cloned() else {
            return;
        };
        let method = message.method().unwrap_or_default().to_owned();
        if !CLIENT_REQUESTS.contains(&method.as_str()) {
            let text = format!("method {method:?} is not forwarded by the Trust OS gateway");
            return self
                .reply_error(&id, codes::METHOD_NOT_FOUND, &text, "MCP_METHOD_UNKNOWN")
                .await;
        }
        // Lifecycle: eras with a handshake allow only initialize and ping before it.
        let refusal = {
            let mut state = self.state();
            if state.pending.contains_key(&id) {
                Some((
                    "MCP_DUPLICATE_ID",
                    "a request with this id is still in flight",
                ))
            } else if method == "initialize" {
                if state.initialize_sent {
                    Some(("MCP_ALREADY_INITIALIZED", "initialize was already sent"))
                } else {
                    state.initialize_sent = true;
                    None
                }
            } else if state.era.is_none() && method != "ping" {
                // A stateless (2026-07-28) client names its version on every request.
                match message
                    .params()
                    .and_then(|p| {
                        p.pointer(&format!(
                            "/_meta/{}",
                            META_PROTOCOL_VERSION.replace('/', "~1")
                        ))
                    })
                    .and_then(Value::as_str)
                    .and_then(Era::parse)
                {
                    Some(era) if !era.has_handshake() => {
                        state.era = Some(era);
                        None
                    }
                    _ if state.initialized => None,
                    _ => Some((
                        "MCP_NOT_INITIALIZED",
                        "send initialize (and wait for its result) before any other request",
                    )),
                }
            } else {
                None
            }
        };
        if let Some((reason, text)) = refusal {
            return self
                .reply_error(&id, codes::INVALID_REQUEST, text, reason)
                .await;
        }
        match method.as_str() {
            "tools/call" => {
                // Decided concurrently: a slow decision (or a hold) never stalls the
                // connection. The id is taken now, so a duplicate is refused meanwhile.
                self.state().pending.insert(id.clone(), Pending::Held(None));
                let relay = Arc::clone(self);
                tokio::spawn(async move { relay.enforce_call(id, message).await });
            }
            "initialize" => {
                let elicits = message
                    .params()
                    .and_then(|p| p.pointer("/capabilities/elicitation"))
                    .is_some_and(Value::is_object);
                {
                    let mut state = self.state();
                    state.host_elicits = elicits;
                    state.pending.insert(id, Pending::Initialize);
                }
                self.forward(message.text().to_owned()).await;
            }
            "tools/list" => {
                self.state().pending.insert(id, Pending::ToolsList);
                self.forward(message.text().to_owned()).await;
            }
            _ => {
                self.state().pending.insert(id, Pending::Other);
                self.forward(message.text().to_owned()).await;
            }
        }
    }

    async fn enforce_call(self: &Arc<Self>, id: Id, message: Message) {
        let params = message.params().unwrap_or(&Value::Null);
        // Read in place: the message is already parsed, no copy of its params is needed.
        let call = match CallToolRequestParams::deserialize(params) {
            Ok(call) => call,
            Err(err) => {
                self.state().pending.remove(&id);
                let text = format!("tools/call params: {err}");
                return self
                    .reply_error(&id, codes::INVALID_PARAMS, &text, "MCP_INVALID_PARAMS")
                    .await;
            }
        };
        if params
            .get("_meta")
            .and_then(Value::as_object)
            .is_some_and(|meta| meta.keys().any(|k| k.starts_with(RESERVED_META_PREFIX)))
        {
            self.state().pending.remove(&id);
            return self
                .reply_error(
                    &id,
                    codes::GATEWAY_REFUSED,
                    "io.trustos/* _meta keys are written by the gateway only",
                    "MCP_META_FORGED",
                )
                .await;
        }
        // Money moves only through the gateway's own adapters: an agent's own x402 payment is
        // refused, whatever the tool's risk.
        if let Err(err) =
            trustos_adapters::x402::wire::refuse_agent_payment_meta(params.get("_meta"))
        {
            self.state().pending.remove(&id);
            return self
                .reply_error(
                    &id,
                    codes::GATEWAY_REFUSED,
                    &err.to_string(),
                    err.reason_code(),
                )
                .await;
        }
        let tool_call = ToolCall {
            tenant: self.identity.tenant.clone(),
            agent: self.identity.agent.clone(),
            session: self.identity.session.clone(),
            server: self.identity.server.clone(),
            tool: call.name.to_string(),
            arguments: Value::Object(call.arguments.unwrap_or_default()),
            http: None,
            payment: None,
        };
        let verdict = self.authority.decide(tool_call).await;
        match verdict {
            Ok(Verdict::Hold {
                decision_id,
                reasons,
                approvers,
                timeout_ms,
                ..
            }) => {
                if let Some(Pending::Held(held)) = self.state().pending.get_mut(&id) {
                    *held = Some(decision_id.clone());
                }
                if approvers.iter().any(|a| a == enforce::HOST_APPROVER) {
                    let relay = Arc::clone(self);
                    let (decision, tool) = (decision_id.clone(), tool_name(&message));
                    tokio::spawn(async move {
                        relay.elicit(&decision, &tool, &reasons, timeout_ms).await;
                    });
                }
                // Held calls resolve in the background; other traffic keeps flowing.
                let relay = Arc::clone(self);
                tokio::spawn(async move {
                    let resolved = relay.authority.await_hold(&decision_id).await;
                    relay.apply(id, message, resolved).await;
                });
            }
            other => self.apply(id, message, other).await,
        }
    }

    /// Asks the host's user, by MCP elicitation, whether a held call may run; their answer
    /// counts as the approver [`enforce::HOST_APPROVER`]. Only for hosts that declared the
    /// capability, in eras where servers send requests (before 2026-07-28).
    async fn elicit(&self, decision_id: &str, tool: &str, reasons: &[Reason], timeout_ms: u64) {
        let (id, receiver) = {
            let mut state = self.state();
            if !state.host_elicits || !state.era.is_some_and(Era::has_handshake) {
                return;
            }
            state.next_elicitation += 1;
            let id = format!("{ELICITATION_ID_PREFIX}{}", state.next_elicitation);
            let (sender, receiver) = tokio::sync::oneshot::channel();
            state.elicitations.insert(id.clone(), sender);
            (id, receiver)
        };
        let why: Vec<String> = reasons.iter().map(|r| r.code.clone()).collect();
        let request = json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "elicitation/create",
            "params": {
                "message": format!(
                    "Trust OS holds the call to {}/{tool} ({}), decision {decision_id}. Let it run?",
                    self.identity.server,
                    why.join(", ")
                ),
                "requestedSchema": {
                    "type": "object",
                    "properties": {"approve": {"type": "boolean", "title": "Let this call run"}},
                    "required": ["approve"]
                }
            }
        });
        if self.to_client.send(request.to_string()).await.is_err() {
            return;
        }
        let answer =
            tokio::time::timeout(std::time::Duration::from_millis(timeout_ms), receiver).await;
        self.state().elicitations.remove(&id);
        let Ok(Ok(answer)) = answer else {
            return;
        };
        let result = &answer["result"];
        let approve = result["action"] == "accept" && result["content"]["approve"] == true;
        let declined = result["action"] == "decline"
            || (result["action"] == "accept" && result["content"]["approve"] == false);
        if (approve || declined)
            && let Err(err) = self.authority.host_answer(decision_id, approve).await
        {
            tracing::warn!(%err, decision_id, "the host's answer could not be counted");
        }
    }

    /// Carries out a verdict on a call that is still pending.
    async fn apply(
        &self,
        id: Id,
        message: Message,
        verdict: Result<Verdict, enforce::EnforceError>,
    ) {
        if !matches!(self.state().pending.get(&id), Some(Pending::Held(_))) {
            // Cancelled by the host while held: nothing is forwarded, nothing stays reserved.
            if let Ok(Verdict::Forward { decision_id, .. }) = verdict
                && let Ok(started_at) = enforce::now()
            {
                let _ = self
                    .authority
                    .finish(&decision_id, CallEnd::NotForwarded, None, started_at)
                    .await;
            }
            return;
        }
        let verdict = verdict.unwrap_or_else(|err| {
            tracing::warn!(%err, "no verdict: refusing the call");
            Verdict::Refuse {
                decision_id: None,
                decision: None,
                reasons: vec![Reason {
                    code: "GATEWAY_UNAVAILABLE".into(),
                    remediation: format!(
                        "{} ({err})",
                        crate::policy::reasons::remediation("GATEWAY_UNAVAILABLE")
                    ),
                }],
            }
        });
        match verdict {
            Verdict::Pass { .. } => {
                let text = message.text().to_owned();
                self.state()
                    .pending
                    .insert(id, Pending::Probe(Box::new(message)));
                self.forward(text).await;
            }
            Verdict::Forward {
                decision_id,
                decision,
            } => {
                let value = Value::String(decision).to_string();
                let prepared = message
                    .with_meta_member(META_DECISION, &value)
                    .map_err(|err| err.to_string())
                    .and_then(|text| {
                        enforce::now()
                            .map(|now| (text, now))
                            .map_err(|err| err.to_string())
                    });
                match prepared {
                    Ok((text, started_at)) => {
                        self.state().pending.insert(
                            id,
                            Pending::Enforced {
                                decision_id,
                                started_at,
                            },
                        );
                        self.forward(text).await;
                    }
                    Err(err) => {
                        self.state().pending.remove(&id);
                        self.reply_error(&id, codes::INVALID_PARAMS, &err, "MCP_INVALID_PARAMS")
                            .await;
                    }
                }
            }
            Verdict::Refuse {
                decision_id,
                decision,
                reasons,
            } => {
                let tool = tool_name(&message);
                self.answer_refusal(
                    &id,
                    "refused",
                    &tool,
                    decision_id.as_deref(),
                    decision,
                    &reasons,
                )
                .await;
            }
            Verdict::Hold {
                decision_id,
                decision,
                reasons,
                ..
            } => {
                // A hold that resolves into another hold is a refusal (never forward).
                let tool = tool_name(&message);
                self.answer_refusal(
                    &id,
                    "held",
                    &tool,
                    Some(&decision_id),
                    Some(decision),
                    &reasons,
                )
                .await;
            }
        }
    }

    /// Ends a pending call with the tool error of [`Self::refusal_result`].
    async fn answer_refusal(
        &self,
        id: &Id,
        what: &str,
        tool: &str,
        decision_id: Option<&str>,
        decision: Option<String>,
        reasons: &[Reason],
    ) {
        self.state().pending.remove(id);
        let result = self.refusal_result(what, tool, decision_id, decision, reasons);
        let text = message::result_response(id, result);
        self.deliver(Some(id), text).await;
    }

    /// The tool error an agent reads when a call is refused: every reason with its remediation,
    /// and the signed decision in `_meta`.
    fn refusal_result(
        &self,
        what: &str,
        tool: &str,
        decision_id: Option<&str>,
        decision: Option<String>,
        reasons: &[Reason],
    ) -> Value {
        let mut text = format!(
            "Trust OS {what} this call to {}/{tool}{}.",
            self.identity.server,
            decision_id.map_or(String::new(), |id| format!(" (decision {id})"))
        );
        for reason in reasons {
            text.push_str(&format!("\n- {}: {}", reason.code, reason.remediation));
        }
        let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
        if self.era().is_none_or(|era| era < Era::V2026_07_28) {
            result.result_type = None;
        }
        let mut meta = serde_json::Map::new();
        if let Some(decision) = decision {
            meta.insert(META_DECISION.into(), Value::String(decision));
        }
        meta.insert(
            "io.trustos/reasons".into(),
            serde_json::to_value(reasons).unwrap_or(Value::Null),
        );
        result.meta = Some(MetaObject(meta));
        serde_json::to_value(&result).unwrap_or_else(|_| json!({"content": [], "isError": true}))
    }

    /// Handles bytes from the upstream server.
    pub async fn from_upstream(self: &Arc<Self>, bytes: &[u8]) {
        match Frame::parse(bytes) {
            Ok(Frame::Single(message)) => self.upstream_message(message).await,
            Ok(Frame::Batch(items)) => {
                for item in items {
                    self.upstream_message(item).await;
                }
            }
            Err(err) => {
                // Ambiguous bytes from the server: never relayed. A call waiting on them
                // ends unknown (money may have moved) and the host gets an error.
                tracing::warn!(reason = err.reason_code(), %err, "refused an unreadable upstream message");
                if let Some(id) = lenient_id(bytes) {
                    let message = format!("the upstream answered with unreadable JSON: {err}");
                    self.fail_pending(&id, &message, "MCP_UPSTREAM_UNREADABLE")
                        .await;
                }
            }
        }
    }

    async fn upstream_message(self: &Arc<Self>, message: Message) {
        let id = match message.kind() {
            Kind::Result | Kind::Error => message.id().cloned(),
            // Server requests and notifications go to the host as they are.
            Kind::Request | Kind::Notification => {
                let _ = self.to_client.send(message.text().to_owned()).await;
                return;
            }
        };
        // `io.trustos/*` entries come only from the gateway: an upstream's own (a receipt posing
        // as the gateway's, perhaps replayed from another call) are dropped before anything
        // reads the result, as the HTTP lane drops an upstream's `Trust-*` headers.
        let message = match message
            .without_result_meta(RESERVED_META_PREFIX)
            .and_then(|text| text.map(|text| Message::parse(text.as_bytes())).transpose())
        {
            Ok(None) => message,
            Ok(Some(cleaned)) => {
                tracing::warn!("dropped io.trustos/* _meta entries the upstream wrote");
                cleaned
            }
            Err(err) => {
                if let Some(id) = &id {
                    let text = format!("the upstream answered with an unreadable _meta: {err}");
                    self.fail_pending(id, &text, "MCP_UPSTREAM_UNREADABLE")
                        .await;
                }
                return;
            }
        };
        let pending = id.as_ref().and_then(|id| self.state().pending.remove(id));
        let text = match pending {
            Some(Pending::Initialize) => {
                if let Some(era) = message
                    .result()
                    .and_then(|r| r.get("protocolVersion"))
                    .and_then(Value::as_str)
                    .and_then(Era::parse)
                {
                    self.set_era(era);
                }
                if message.kind() == Kind::Result {
                    self.state().initialized = true;
                } else {
                    self.state().initialize_sent = false;
                }
                message.text().to_owned()
            }
            Some(Pending::ToolsList) => {
                let more = message
                    .result()
                    .and_then(|r| r.get("nextCursor"))
                    .is_some_and(|cursor| !cursor.is_null());
                if let Some(tools) = message
                    .result()
                    .and_then(|r| r.get("tools"))
                    .and_then(Value::as_array)
                    && let Err(err) = self
                        .authority
                        .observe_tools(&self.identity.server, tools, more)
                        .await
                {
                    // Unpinned tools stay refused; the listing itself is harmless to relay.
                    tracing::warn!(%err, "could not pin the listed tools");
                }
                message.text().to_owned()
            }
            Some(Pending::Enforced {
                decision_id,
                started_at,
            }) => {
                // The receipt's durable commit runs beside the other traffic.
                let relay = Arc::clone(self);
                tokio::spawn(async move {
                    let text = relay.receipted(&message, &decision_id, started_at).await;
                    relay.deliver(id.as_ref(), text).await;
                });
                return;
            }
            Some(Pending::Probe(request)) => {
                let asks_payment = message.result().is_some_and(|result| {
                    matches!(
                        x402_wire::payment_required_from_mcp_result(result),
                        Ok(Some(_)) | Err(_)
                    )
                });
                if asks_payment && let Some(id) = id {
                    let relay = Arc::clone(self);
                    self.state().pending.insert(id.clone(), Pending::Held(None));
                    tokio::spawn(async move { relay.pay_and_retry(id, *request, message).await });
                    return;
                }
                message.text().to_owned()
            }
            Some(Pending::Paid {
                decision_id,
                started_at,
            }) => {
                let relay = Arc::clone(self);
                tokio::spawn(async move {
                    let text = relay
                        .receipted_paid(&message, &decision_id, started_at)
                        .await;
                    relay.deliver(id.as_ref(), text).await;
                });
                return;
            }
            Some(Pending::Abandoned) => {
                tracing::warn!(?id, "dropped the late answer of an abandoned paid call");
                return;
            }
            Some(Pending::Held(_) | Pending::Other) | None => message.text().to_owned(),
        };
        self.deliver(id.as_ref(), text).await;
    }

    /// The result with its signed receipt in `result._meta`.
    async fn receipted(
        &self,
        message: &Message,
        decision_id: &str,
        started_at: Timestamp,
    ) -> String {
        let (end, digest) = match message.result() {
            Some(result) => {
                let end = if result.get("isError").and_then(Value::as_bool) == Some(true) {
                    CallEnd::ToolError
                } else {
                    CallEnd::Completed
                };
                (end, Digest::of_canonical_value(result).ok())
            }
            None => (CallEnd::ProtocolError, None),
        };
        match self
            .authority
            .finish(decision_id, end, digest, started_at)
            .await
        {
            Ok(issued) if message.kind() == Kind::Result => {
                let value = Value::String(issued.receipt).to_string();
                message
                    .with_meta_member(META_RECEIPT, &value)
                    .unwrap_or_else(|_| message.text().to_owned())
            }
            Ok(_) => message.text().to_owned(),
            Err(err) => {
                tracing::error!(%err, decision_id, "the call ran but its receipt could not be issued");
                message.text().to_owned()
            }
        }
    }

    /// Receipts a call that will get no answer as `unknown` (money may have moved); a paid
    /// retry is recorded as an unknown payment, never paid again.
    async fn end_unknown(&self, pending: &Pending) {
        match pending {
            Pending::Enforced {
                decision_id,
                started_at,
            } => {
                let _ = self
                    .authority
                    .finish(decision_id, CallEnd::Unknown, None, *started_at)
                    .await;
            }
            Pending::Paid {
                decision_id,
                started_at,
            } => {
                let outcome = PaidOutcome::Unknown {
                    detail: "the upstream gave no answer to the paid call".into(),
                };
                let _ = self
                    .authority
                    .conclude_payment(decision_id, outcome, false, None, *started_at)
                    .await;
            }
            _ => {}
        }
    }

    /// A paid tool asked for money: the daemon decides and signs, and the call is retried once
    /// with `_meta["x402/payment"]` and the decision. A refusal answers the host instead.
    async fn pay_and_retry(self: Arc<Self>, id: Id, request: Message, answer: Message) {
        let tool = tool_name(&request);
        let Some(call) = self.tool_call_of(&request) else {
            self.state().pending.remove(&id);
            self.deliver(Some(&id), answer.text().to_owned()).await;
            return;
        };
        let result = answer.result().cloned().unwrap_or(Value::Null);
        let verdict = self.authority.pay(call, result).await;
        let still_wanted = matches!(self.state().pending.get(&id), Some(Pending::Held(_)));
        match verdict {
            Ok(PaymentVerdict::Pay {
                decision_id,
                decision,
                payload,
                answer_timeout_ms,
                ..
            }) => {
                let Ok(started_at) = enforce::now() else {
                    return;
                };
                if !still_wanted {
                    // Cancelled while the payment was decided: nothing was sent.
                    let outcome = PaidOutcome::Failed {
                        reason: "not sent: the host cancelled the call".into(),
                    };
                    let _ = self
                        .authority
                        .conclude_payment(&decision_id, outcome, false, None, started_at)
                        .await;
                    return;
                }
                let decision_json = Value::String(decision).to_string();
                let retry = request
                    .with_meta_member(META_DECISION, &decision_json)
                    .and_then(|text| Message::parse(text.as_bytes()))
                    .and_then(|message| {
                        message.with_meta_member(x402_wire::MCP_META_PAYMENT, &payload)
                    });
                match retry {
                    Ok(text) => {
                        self.state().pending.insert(
                            id.clone(),
                            Pending::Paid {
                                decision_id: decision_id.clone(),
                                started_at,
                            },
                        );
                        self.forward(text).await;
                        let relay = Arc::clone(&self);
                        tokio::spawn(async move {
                            let wait = std::time::Duration::from_millis(answer_timeout_ms);
                            tokio::time::sleep(wait).await;
                            relay.abandon_paid(&id, &decision_id).await;
                        });
                    }
                    Err(err) => {
                        self.state().pending.remove(&id);
                        let outcome = PaidOutcome::Failed {
                            reason: format!("not sent: {err}"),
                        };
                        let _ = self
                            .authority
                            .conclude_payment(&decision_id, outcome, false, None, started_at)
                            .await;
                        self.reply_error(
                            &id,
                            codes::INVALID_PARAMS,
                            &err.to_string(),
                            err.reason_code(),
                        )
                        .await;
                    }
                }
            }
            refused => {
                let (decision_id, decision, reasons) = match refused {
                    Ok(PaymentVerdict::Refuse {
                        decision_id,
                        decision,
                        reasons,
                        ..
                    }) => (decision_id, decision, reasons),
                    Ok(PaymentVerdict::Pay { .. }) => return,
                    Err(err) => {
                        tracing::warn!(%err, "no payment verdict: refusing the call");
                        (None, None, vec![Reason::new("GATEWAY_UNAVAILABLE")])
                    }
                };
                // A call the host cancelled meanwhile gets no answer.
                if !still_wanted {
                    return;
                }
                self.answer_refusal(
                    &id,
                    "refused to pay for",
                    &tool,
                    decision_id.as_deref(),
                    decision,
                    &reasons,
                )
                .await;
            }
        }
    }

    /// A paid retry still unanswered after the payer's answer timeout: receipted unknown (never
    /// paid again), and the host gets an error now.
    async fn abandon_paid(&self, id: &Id, decision_id: &str) {
        let pending = {
            let mut state = self.state();
            match state.pending.get(id) {
                Some(Pending::Paid { decision_id: d, .. }) if d == decision_id => {
                    state.pending.insert(id.clone(), Pending::Abandoned)
                }
                _ => return,
            }
        };
        if let Some(pending) = pending {
            self.end_unknown(&pending).await;
        }
        self.reply_error(
            id,
            codes::INTERNAL_ERROR,
            "the paid call got no answer in time; whether money moved is unknown, and it will not be paid again",
            "X402_OUTCOME_UNKNOWN",
        )
        .await;
    }

    /// The paid retry's result with its receipt; the settlement in
    /// `result._meta["x402/payment-response"]` decides what the receipt says.
    async fn receipted_paid(
        &self,
        message: &Message,
        decision_id: &str,
        started_at: Timestamp,
    ) -> String {
        let result = message.result();
        let is_error = result
            .and_then(|r| r.get("isError"))
            .and_then(Value::as_bool)
            == Some(true);
        let settlement = result.map(x402_wire::settlement_from_mcp_result);
        let asked_again = result
            .is_some_and(|r| matches!(x402_wire::payment_required_from_mcp_result(r), Ok(Some(_))));
        let outcome = match settlement {
            Some(Ok(Some(settled))) if !asked_again || !settled.success => {
                PaidOutcome::from(trustos_adapters::x402::report_of(Some(&settled)))
            }
            Some(Ok(_)) if asked_again => PaidOutcome::Unknown {
                detail: "the tool asked for payment again after payment".into(),
            },
            Some(Ok(None)) => PaidOutcome::Unknown {
                detail: "no settlement in the result".into(),
            },
            Some(Ok(Some(_))) => PaidOutcome::Unknown {
                detail: "the tool asked for payment again after payment".into(),
            },
            Some(Err(err)) => PaidOutcome::Unknown {
                detail: format!("unreadable settlement: {}", err.reason_code()),
            },
            None => PaidOutcome::Unknown {
                detail: "the tool answered with a JSON-RPC error".into(),
            },
        };
        let served = message.kind() == Kind::Result && !is_error;
        let digest = result.and_then(|r| Digest::of_canonical_value(r).ok());
        match self
            .authority
            .conclude_payment(decision_id, outcome, served, digest, started_at)
            .await
        {
            Ok(concluded) if message.kind() == Kind::Result => {
                let value = Value::String(concluded.receipt.receipt).to_string();
                message
                    .with_meta_member(META_RECEIPT, &value)
                    .unwrap_or_else(|_| message.text().to_owned())
            }
            Ok(_) => message.text().to_owned(),
            Err(err) => {
                tracing::error!(%err, decision_id, "the paid call ran but its receipt could not be issued");
                message.text().to_owned()
            }
        }
    }

    /// The call a `tools/call` request names, as the daemon decides it.
    fn tool_call_of(&self, request: &Message) -> Option<ToolCall> {
        let call = CallToolRequestParams::deserialize(request.params()?).ok()?;
        Some(ToolCall {
            tenant: self.identity.tenant.clone(),
            agent: self.identity.agent.clone(),
            session: self.identity.session.clone(),
            server: self.identity.server.clone(),
            tool: call.name.to_string(),
            arguments: Value::Object(call.arguments.unwrap_or_default()),
            http: None,
            payment: None,
        })
    }

    /// A message could not be delivered upstream (HTTP transport): its request fails, and an
    /// enforced call ends with an `unknown` receipt.
    pub async fn upstream_failed(&self, sent: &str, error: &str) {
        let Ok(Frame::Single(message)) = Frame::parse(sent.as_bytes()) else {
            return;
        };
        let Some(id) = message
            .id()
            .cloned()
            .filter(|_| message.kind() == Kind::Request)
        else {
            return;
        };
        let message = format!("the upstream MCP server failed: {error}");
        self.fail_pending(&id, &message, "MCP_UPSTREAM_FAILED")
            .await;
    }

    /// A request in flight will get no answer from the upstream: the host gets an error, and an
    /// enforced call ends with an `unknown` receipt (money may have moved).
    async fn fail_pending(&self, id: &Id, message: &str, reason: &str) {
        let Some(pending) = self.state().pending.remove(id) else {
            return;
        };
        if matches!(pending, Pending::Abandoned) {
            return;
        }
        self.end_unknown(&pending).await;
        self.reply_error(id, codes::INTERNAL_ERROR, message, reason)
            .await;
    }

    /// Feeds an upstream's newline-delimited output (a child's stdout) to the relay until it
    /// ends, then closes the upstream side ([`Self::upstream_closed`]).
    pub async fn pump_upstream_lines<R: AsyncBufRead + Unpin>(self: Arc<Self>, mut output: R) {
        loop {
            match read_line(&mut output, MAX_MESSAGE_BYTES).await {
                Ok(Line::Complete(line)) => {
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        self.from_upstream(&line).await;
                    }
                }
                Ok(Line::TooLong(size)) => {
                    tracing::warn!(size, "dropped an oversized upstream message");
                }
                Ok(Line::Eof) | Err(_) => break,
            }
        }
        self.upstream_closed().await;
    }

    /// The upstream is gone: every request in flight gets an error, and enforced calls end
    /// with an `unknown` receipt (money may have moved).
    pub async fn upstream_closed(&self) {
        let pending: Vec<(Id, Pending)> = self.state().pending.drain().collect();
        for (id, pending) in pending {
            self.end_unknown(&pending).await;
            if matches!(pending, Pending::Held(_) | Pending::Abandoned) {
                continue;
            }
            self.reply_error(
                &id,
                codes::INTERNAL_ERROR,
                "the upstream MCP server closed the connection",
                "MCP_UPSTREAM_CLOSED",
            )
            .await;
        }
    }
}
