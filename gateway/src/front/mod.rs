//! The Streamable HTTP front: `trustos serve` exposes `/mcp/NAME` for hosts that speak HTTP
//! (Claude Code, Cursor, Codex), relaying to the stdio or HTTP upstream configured as
//! `[servers.NAME]` in `gateway.toml`, with the same enforcement as the stdio shim.
//!
//! Phases of a request, in order (the first that fails answers):
//!
//! 1. route: `/mcp/NAME` with a valid name (else 404); `POST`, `GET` or `DELETE` (else 405);
//! 2. origin: an `Origin` header, when present, must name an allowed origin (scheme and host,
//!    any port) — DNS rebinding protection (403);
//! 3. auth: `Authorization: Bearer <token>` known to `[[tokens]]` (401 with `WWW-Authenticate`),
//!    for a configured server (404) the token may reach (403);
//! 4. version: `MCP-Protocol-Version`, when present, must be an era the relay speaks (400);
//! 5. the method:
//!    - POST: `Content-Type: application/json` (415), an `Accept` that admits JSON (406), a body
//!      of at most 16 MiB (413). Eras with a handshake: `initialize` without `Mcp-Session-Id`
//!      opens a session (its upstream starts; the id comes back in `Mcp-Session-Id` when the
//!      upstream's answer is a result); anything else needs the session's id (400 without, 404
//!      for an unknown one or one another token opened). 2026-07-28 (the header, or the body's
//!      `_meta` when no header names a version): no sessions, one relay per token and server,
//!      and `Mcp-Method` / `Mcp-Name` must match the body (400 with JSON-RPC error -32020,
//!      nothing forwarded). The body goes to the relay as received; the relay's answer comes
//!      back as `application/json`, exactly as the relay wrote it (202 without a body when the
//!      body held no request; 504 after `call_timeout_seconds`);
//!    - GET (handshake eras): the session's stream of server requests and notifications, as
//!      Server-Sent Events; 405 in 2026-07-28;
//!    - DELETE (handshake eras): ends the session and its upstream (204).
//!
//! `GET /healthz` answers without a token (after the same Origin check) whether the daemon's
//! store can be read: see [`health`].
//!
//! Sessions idle for an hour (no POST in flight, no GET stream open) are ended. Submodules:
//! [`checks`] (header and body checks), [`conn`] (a relay with its upstream), [`health`] (the
//! health route), [`router`] (the relay's answers to the POSTs waiting for them).

mod checks;
mod conn;
mod health;
mod rails;
mod router;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, LengthLimitError, Limited};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, ORIGIN,
    WWW_AUTHENTICATE,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use self::checks::MetadataHeaders;
use self::conn::{Conn, OnClosed};
use self::router::Answer;
use crate::config::{GatewayConfig, TokenConfig, valid_server_name};
use crate::enforce::{Authority, Enforcer, random_id};
use crate::home::Home;
use crate::http_lane::lane::{HttpLane, LaneRequest};
use crate::mcp::era::Era;
use crate::mcp::http_upstream::{
    HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID,
};
use crate::mcp::message::{Id, MAX_MESSAGE_BYTES, codes};
use crate::mcp::relay::{Relay, RelayIdentity};

/// Largest POST body, in bytes (16 MiB, the relay's message limit).
pub const MAX_BODY_BYTES: usize = MAX_MESSAGE_BYTES;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to send a POST body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Live connections (sessions and stateless relays) in all.
const MAX_CONNS: usize = 256;
/// Live connections one token may hold.
const MAX_CONNS_PER_TOKEN: usize = 64;
/// A connection unused this long is ended.
const IDLE_LIMIT: Duration = Duration::from_secs(60 * 60);
/// How often idle connections are looked for.
const REAP_EVERY: Duration = Duration::from_secs(60);
/// Interval of SSE keep-alive comments on a GET stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The body of every response of the front.
type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Binds `address` and serves `/mcp/NAME` for every configured server. Returns the bound
/// address (useful with port 0) and the task accepting connections.
pub async fn serve(
    enforcer: Arc<Enforcer>,
    config: GatewayConfig,
    home: Home,
    address: &str,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|err| format!("cannot listen on {address}: {err}"))?;
    let bound = listener
        .local_addr()
        .map_err(|err| format!("cannot read the bound address of {address}: {err}"))?;
    let call_timeout = Duration::from_secs(config.gateway.call_timeout_seconds.max(1));
    let lane = if config.http.is_empty() {
        None
    } else {
        let lane = HttpLane::new(Arc::clone(&enforcer), &config, home.root())
            .map_err(|err| err.to_string())?;
        Some(Arc::new(lane))
    };
    let front = Arc::new(Front {
        lane,
        enforcer: Arc::clone(&enforcer),
        authority: enforcer,
        config,
        home,
        call_timeout,
        sessions: Mutex::new(HashMap::new()),
        stateless: Mutex::new(HashMap::new()),
    });
    Ok((bound, tokio::spawn(accept(listener, front))))
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn accept(listener: TcpListener, front: Arc<Front>) {
    let _reaper = AbortOnDrop(tokio::spawn(reap_idle(Arc::downgrade(&front))));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                // Out of descriptors and the like: wait instead of spinning.
                tracing::warn!(%err, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let front = Arc::clone(&front);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let front = Arc::clone(&front);
                async move { Ok::<_, Infallible>(front.handle(request).await) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(err) = served {
                tracing::debug!(%err, "HTTP connection ended");
            }
        });
    }
}

/// Ends connections nobody has used for [`IDLE_LIMIT`].
async fn reap_idle(front: Weak<Front>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    loop {
        tick.tick().await;
        let Some(front) = front.upgrade() else { return };
        let mut idle = Vec::new();
        lock(&front.sessions).retain(|_, conn| keep_unless_idle(conn, &mut idle));
        lock(&front.stateless).retain(|_, conn| keep_unless_idle(conn, &mut idle));
        for conn in idle {
            tracing::debug!(
                server = conn.relay.identity().server,
                "ending an idle MCP session"
            );
            conn.close().await;
        }
    }
}

fn keep_unless_idle(conn: &Arc<Conn>, idle: &mut Vec<Arc<Conn>>) -> bool {
    if conn.idle() < IDLE_LIMIT {
        return true;
    }
    idle.push(Arc::clone(conn));
    false
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The front's state.
struct Front {
    /// The HTTP lane, when `gateway.toml` configures `[http.*]` APIs.
    lane: Option<Arc<HttpLane>>,
    /// The daemon's enforcer, for the rails' endpoints ([`rails`]).
    enforcer: Arc<Enforcer>,
    authority: Arc<dyn Authority>,
    config: GatewayConfig,
    home: Home,
    call_timeout: Duration,
    /// Handshake-era sessions by `Mcp-Session-Id`.
    sessions: Mutex<HashMap<String, Arc<Conn>>>,
    /// 2026-07-28 relays by (token digest, server).
    stateless: Mutex<HashMap<(String, String), Arc<Conn>>>,
}

/// What a path names: an MCP server (`/mcp/NAME`) or an HTTP API (`/http/NAME`).
#[derive(Clone, Copy)]
enum Endpoint {
    Mcp,
    Http,
    /// A rail the gateway pays through itself (`/rails/circle/…`).
    Rail,
}

impl Endpoint {
    fn noun(self) -> &'static str {
        match self {
            Self::Mcp => "MCP server",
            Self::Http => "HTTP API",
            Self::Rail => "payment rail",
        }
    }

    fn remediation(self) -> &'static str {
        match self {
            Self::Mcp => {
                "Add a [servers.NAME] table with `command` or `url` to gateway.toml, or use a configured name."
            }
            Self::Http => {
                "Add an [http.NAME] table with `url` to gateway.toml, or use a configured name."
            }
            Self::Rail => {
                "Add a [circle] table (credentials, wallet_id, [[circle.tokens]]) to gateway.toml and restart trustos serve."
            }
        }
    }
}

/// Who is calling, and which server.
struct Caller {
    owner: String,
    tenant: String,
    agent: String,
    server: String,
}

impl Caller {
    fn new(token: &TokenConfig, server: &str) -> Self {
        Self {
            owner: token.token_sha256.clone(),
            tenant: token.tenant.clone(),
            agent: token.agent.clone(),
            server: server.to_owned(),
        }
    }

    fn owns(&self, conn: &Conn) -> bool {
        conn.owner == self.owner && conn.relay.identity().server == self.server
    }
}

/// What feeding a POST body to a relay came to.
enum Outcome {
    /// The relay's answer; `for_requests` is false when the body held no request (the answer is
    /// then a refusal of the whole body).
    Answer { text: String, for_requests: bool },
    /// The body held no request and was accepted.
    Accepted,
    /// An HTTP-level failure.
    Failed(Response<Body>),
}

impl Front {
    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        // 1. Route: the health route, the rails' endpoints, the HTTP lane, or an MCP server.
        match request.uri().path() {
            health::PATH => return self.health(&request).await,
            rails::TRANSFERS_PATH => return self.circle_transfer(request).await,
            rails::WEBHOOK_PATH => return self.circle_webhook(request).await,
            _ => {}
        }
        if let Some(rest) = request.uri().path().strip_prefix("/http/") {
            let (name, path) = match rest.split_once('/') {
                Some((name, path)) => (name.to_owned(), format!("/{path}")),
                None => (rest.to_owned(), String::new()),
            };
            return self.http_lane(request, name, path).await;
        }
        let Some(name) = request
            .uri()
            .path()
            .strip_prefix("/mcp/")
            .filter(|name| valid_server_name(name))
            .map(str::to_owned)
        else {
            return refusal(
                StatusCode::NOT_FOUND,
                "HTTP_NOT_FOUND",
                "no such endpoint",
                "MCP servers are served at /mcp/NAME, NAME a [servers.NAME] of gateway.toml.",
            );
        };
        let method = request.method().clone();
        if !matches!(method, Method::POST | Method::GET | Method::DELETE) {
            return method_not_allowed("GET, POST, DELETE");
        }
        let headers = request.headers();
        // 2 and 3. Origin and auth.
        let token = match self.admit(headers, &name, Endpoint::Mcp) {
            Ok(token) => token,
            Err(response) => return *response,
        };
        let caller = Caller::new(token, &name);
        // 4. Version.
        let era = match headers.get(HEADER_PROTOCOL_VERSION) {
            None => None,
            Some(value) => match value.to_str().ok().and_then(Era::parse) {
                Some(era) => Some(era),
                None => return unsupported_version(value),
            },
        };
        // 5. The method.
        match method {
            Method::POST => self.post(request, caller, era).await,
            Method::GET => self.get(request.headers(), &caller, era),
            _ => self.delete(request.headers(), &caller, era).await,
        }
    }

    /// Origin, bearer token, the endpoint's existence (only a caller with a token learns which
    /// endpoints exist), and the token's reach: the checks `/mcp/NAME` and `/http/NAME` share.
    fn admit(
        &self,
        headers: &HeaderMap,
        name: &str,
        endpoint: Endpoint,
    ) -> Result<&TokenConfig, Box<Response<Body>>> {
        self.check_origin(headers)?;
        let Some(token) = checks::bearer(headers).and_then(|token| self.config.token(token)) else {
            return Err(Box::new(unauthorized(checks::bearer(headers).is_some())));
        };
        let exists = match endpoint {
            Endpoint::Mcp => self.config.servers.contains_key(name),
            Endpoint::Http => self.lane.as_ref().is_some_and(|lane| lane.has(name)),
            Endpoint::Rail => self.enforcer.circle().is_some(),
        };
        if !exists {
            return Err(Box::new(refusal(
                StatusCode::NOT_FOUND,
                "HTTP_NOT_FOUND",
                &format!("no {} named {name:?}", endpoint.noun()),
                endpoint.remediation(),
            )));
        }
        if !token.servers.is_empty() && !token.servers.iter().any(|s| s == name) {
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "HTTP_TOKEN_NOT_ALLOWED",
                &format!("this token may not reach the {} {name:?}", endpoint.noun()),
                "Add the name to this token's `servers` list in gateway.toml, or use a token allowed on it.",
            )));
        }
        Ok(token)
    }

    /// An `Origin` header, when present, must name an allowed origin (DNS rebinding).
    fn check_origin(&self, headers: &HeaderMap) -> Result<(), Box<Response<Body>>> {
        if let Some(origin) = headers.get(ORIGIN)
            && !checks::origin_allowed(origin, &self.config.gateway.allowed_origins)
        {
            tracing::warn!(?origin, "refused a request from a foreign origin");
            return Err(Box::new(refusal(
                StatusCode::FORBIDDEN,
                "HTTP_ORIGIN_NOT_ALLOWED",
                "the request's Origin is not allowed",
                "Add the origin (scheme://host) to allowed_origins in the [gateway] table of gateway.toml if this page should reach the gateway.",
            )));
        }
        Ok(())
    }

    /// `GET /healthz`: the Origin check, a bodiless GET or HEAD, then a cheap read of the store
    /// (see [`health`]). No token: a probe has none, and the answer holds nothing secret.
    async fn health(&self, request: &Request<Incoming>) -> Response<Body> {
        let headers = request.headers();
        if let Err(response) = self.check_origin(headers) {
            return *response;
        }
        match health::admit(request.method(), headers) {
            Ok(()) => {}
            Err(health::Refused::Method) => return method_not_allowed(health::ALLOW),
            Err(health::Refused::Body) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "HTTP_BODY_NOT_ALLOWED",
                    "the health route takes no body",
                    "Send GET /healthz without a body.",
                );
            }
        }
        let store = Arc::clone(self.enforcer.store());
        let outcome = health::check(
            async move { crate::store::Store::log_size(store.as_ref()).await },
            health::STORE_DEADLINE,
        )
        .await;
        let (status, text) = health::answer(
            outcome,
            self.enforcer.key().kid(),
            self.enforcer.generation(),
        );
        let head = request.method() == Method::HEAD;
        let mut response = if head {
            plain(status, empty())
        } else {
            json_response(status, text)
        };
        if head {
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        response
            .headers_mut()
            .insert(CACHE_CONTROL, health::cache_control());
        response
    }

    /// A request for the HTTP lane: origin and bearer checks as for `/mcp`, then the lane.
    async fn http_lane(
        self: &Arc<Self>,
        request: Request<Incoming>,
        name: String,
        path: String,
    ) -> Response<Body> {
        let token = match self.admit(request.headers(), &name, Endpoint::Http) {
            Ok(token) => token,
            Err(response) => return *response,
        };
        let Some(lane) = self.lane.as_ref() else {
            return refusal(
                StatusCode::NOT_FOUND,
                "HTTP_NOT_FOUND",
                &format!("no HTTP API named {name:?}"),
                Endpoint::Http.remediation(),
            );
        };
        let (tenant, agent) = (token.tenant.clone(), token.agent.clone());
        let rest = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let body = match read_body(body, declared).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let response = lane
            .handle(LaneRequest {
                lane: name,
                tenant,
                agent,
                method: parts.method,
                rest,
                headers: parts.headers,
                body,
            })
            .await;
        response.map(|body| body.map_err(|never| match never {}).boxed_unsync())
    }

    async fn post(
        self: &Arc<Self>,
        request: Request<Incoming>,
        caller: Caller,
        era: Option<Era>,
    ) -> Response<Body> {
        let headers = request.headers();
        if !checks::is_json_body(headers) {
            return refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "HTTP_UNSUPPORTED_MEDIA_TYPE",
                "the body must be Content-Type: application/json",
                "Send the JSON-RPC message with Content-Type: application/json.",
            );
        }
        if !checks::accepts_post_answer(headers) {
            return refusal(
                StatusCode::NOT_ACCEPTABLE,
                "HTTP_NOT_ACCEPTABLE",
                "the Accept header admits neither application/json nor text/event-stream",
                "Send Accept: application/json, text/event-stream.",
            );
        }
        let session = match session_header(headers) {
            Ok(session) => session,
            Err(response) => return *response,
        };
        let metadata = MetadataHeaders {
            method: headers.get(HEADER_METHOD).cloned(),
            name: headers.get(HEADER_NAME).cloned(),
        };
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = match read_body(request.into_body(), declared).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        let error_id = single_id(value.as_ref());
        let ids = checks::request_ids(value.as_ref());
        if let Some(id) = checks::duplicate_id(&ids) {
            return rpc_refusal(
                StatusCode::BAD_REQUEST,
                &error_id,
                codes::INVALID_REQUEST,
                &format!("the request id {id} occurs twice in this batch"),
                "MCP_DUPLICATE_ID",
                "Give every request of a batch its own id.",
            );
        }
        let stateless = era == Some(Era::V2026_07_28)
            || (era.is_none()
                && session.is_none()
                && checks::body_protocol_version(value.as_ref())
                    == Some(Era::V2026_07_28.as_str()));
        if stateless {
            // 2026-07-28: every POST carries MCP-Protocol-Version, equal to the body's.
            let checked = if era.is_none() {
                Err(
                    "the MCP-Protocol-Version header is missing; the body says 2026-07-28"
                        .to_owned(),
                )
            } else {
                checks::check_metadata(value.as_ref(), &metadata)
            };
            if let Err(message) = checked {
                tracing::warn!(%message, "refused a request whose headers disagree with its body");
                return rpc_refusal(
                    StatusCode::BAD_REQUEST,
                    &error_id,
                    codes::HEADER_MISMATCH,
                    &format!("Header mismatch: {message}"),
                    "MCP_HEADER_MISMATCH",
                    "Send Mcp-Method (and Mcp-Name for tools/call, prompts/get, resources/read) equal to the body's method and params.name / params.uri, and the protocol version in params._meta.",
                );
            }
            let conn = match self.stateless_conn(&caller) {
                Ok(conn) => conn,
                Err(response) => return *response,
            };
            return respond(self.exchange(&conn, body, ids, error_id).await, None);
        }
        if let Some(session) = session {
            let Some(conn) = self.session(&session, &caller) else {
                return unknown_session();
            };
            return respond(self.exchange(&conn, body, ids, error_id).await, None);
        }
        if checks::is_initialize(value.as_ref()) {
            return self.initialize(&caller, body, ids, error_id).await;
        }
        rpc_refusal(
            StatusCode::BAD_REQUEST,
            &error_id,
            codes::INVALID_REQUEST,
            "no Mcp-Session-Id: send initialize first, then the session id it returns on every request",
            "MCP_SESSION_REQUIRED",
            "Send initialize without Mcp-Session-Id, then send the Mcp-Session-Id of its response on every later request (or speak protocol 2026-07-28, which has no sessions).",
        )
    }

    /// Opens a session with `initialize`: the session exists once the upstream's answer is a
    /// result; otherwise its upstream is stopped and the answer returned without a session.
    async fn initialize(
        self: &Arc<Self>,
        caller: &Caller,
        body: Bytes,
        ids: Vec<Value>,
        error_id: Id,
    ) -> Response<Body> {
        if let Err(response) = self.check_capacity(&caller.owner) {
            return *response;
        }
        let session = match random_id("mcp_") {
            Ok(session) => session,
            Err(err) => {
                tracing::error!(%err, "no session id");
                return rpc_refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &error_id,
                    codes::INTERNAL_ERROR,
                    "the gateway could not draw a session id",
                    "GATEWAY_UNAVAILABLE",
                    "Retry; if it persists, check the gateway's logs.",
                );
            }
        };
        let conn = match self.start_conn(caller, Some(session.clone())) {
            Ok(conn) => conn,
            Err(response) => return *response,
        };
        let outcome = self.exchange(&conn, body, ids, error_id).await;
        let initialized = matches!(&outcome, Outcome::Answer { text, for_requests: true }
            if serde_json::from_str::<Value>(text).is_ok_and(|v| v.get("result").is_some()));
        if initialized {
            lock(&self.sessions).insert(session.clone(), conn);
            tracing::info!(
                server = caller.server,
                agent = caller.agent,
                "MCP session opened"
            );
            respond(outcome, Some(&session))
        } else {
            conn.close().await;
            respond(outcome, None)
        }
    }

    /// Feeds a body to a connection's relay and waits for its answer.
    async fn exchange(
        &self,
        conn: &Arc<Conn>,
        body: Bytes,
        ids: Vec<Value>,
        error_id: Id,
    ) -> Outcome {
        let for_requests = !ids.is_empty();
        // In its own task: a relay is never interrupted half way through a message.
        let feeder = Arc::clone(conn);
        let fed = tokio::spawn(async move { feeder.feed(&body, ids).await }).await;
        let (guard, answer) = match fed {
            Ok(Ok(waiting)) => waiting,
            Ok(Err(id)) => {
                return Outcome::Failed(rpc_refusal(
                    StatusCode::BAD_REQUEST,
                    &error_id,
                    codes::INVALID_REQUEST,
                    &format!("a request with id {id} is still in flight"),
                    "MCP_DUPLICATE_ID",
                    "Give every request in flight its own id.",
                ));
            }
            Err(err) => {
                tracing::error!(%err, "feeding the relay failed");
                return Outcome::Failed(rpc_refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &error_id,
                    codes::INTERNAL_ERROR,
                    "the gateway failed while handling the message",
                    "GATEWAY_UNAVAILABLE",
                    "Retry; if it persists, check the gateway's logs.",
                ));
            }
        };
        let answer = tokio::time::timeout(self.call_timeout, answer).await;
        drop(guard);
        conn.touch();
        match answer {
            Ok(Ok(Answer::Message(text))) => Outcome::Answer { text, for_requests },
            Ok(Ok(Answer::Accepted)) => Outcome::Accepted,
            Ok(Err(_)) => Outcome::Failed(rpc_refusal(
                StatusCode::BAD_GATEWAY,
                &error_id,
                codes::INTERNAL_ERROR,
                "the upstream MCP server went away before answering",
                "MCP_UPSTREAM_CLOSED",
                "Check the upstream server; start a new session.",
            )),
            Err(_) => Outcome::Failed(rpc_refusal(
                StatusCode::GATEWAY_TIMEOUT,
                &error_id,
                codes::INTERNAL_ERROR,
                &format!("no answer within {} seconds", self.call_timeout.as_secs()),
                "MCP_CALL_TIMEOUT",
                "Retry later, or raise call_timeout_seconds in the [gateway] table of gateway.toml.",
            )),
        }
    }

    fn get(&self, headers: &HeaderMap, caller: &Caller, era: Option<Era>) -> Response<Body> {
        if era.is_some_and(|era| !era.has_handshake()) {
            return method_not_allowed("POST");
        }
        if !checks::accepts_event_stream(headers) {
            return refusal(
                StatusCode::NOT_ACCEPTABLE,
                "HTTP_NOT_ACCEPTABLE",
                "the GET stream is text/event-stream only",
                "Send Accept: text/event-stream.",
            );
        }
        let conn = match session_header(headers) {
            Ok(Some(session)) => self.session(&session, caller),
            Ok(None) => return session_required(),
            Err(response) => return *response,
        };
        let Some(conn) = conn else {
            return unknown_session();
        };
        conn.touch();
        let stream = EventStream {
            messages: conn.router.open_stream(),
            keep_alive: tokio::time::interval_at(
                tokio::time::Instant::now() + KEEP_ALIVE,
                KEEP_ALIVE,
            ),
        };
        let mut response = plain(StatusCode::OK, stream.boxed_unsync());
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        );
        response
    }

    async fn delete(
        &self,
        headers: &HeaderMap,
        caller: &Caller,
        era: Option<Era>,
    ) -> Response<Body> {
        if era.is_some_and(|era| !era.has_handshake()) {
            return method_not_allowed("POST");
        }
        let session = match session_header(headers) {
            Ok(Some(session)) => session,
            Ok(None) => return session_required(),
            Err(response) => return *response,
        };
        let conn = {
            let mut sessions = lock(&self.sessions);
            match sessions.get(&session) {
                Some(conn) if caller.owns(conn) => sessions.remove(&session),
                _ => None,
            }
        };
        let Some(conn) = conn else {
            return unknown_session();
        };
        conn.close().await;
        tracing::info!(
            server = caller.server,
            agent = caller.agent,
            "MCP session ended"
        );
        plain(StatusCode::NO_CONTENT, empty())
    }

    /// The session `id` when `caller` opened it on this server.
    fn session(&self, id: &str, caller: &Caller) -> Option<Arc<Conn>> {
        lock(&self.sessions)
            .get(id)
            .filter(|conn| caller.owns(conn))
            .cloned()
    }

    /// The 2026-07-28 relay of the caller's token and server, started on first use.
    fn stateless_conn(self: &Arc<Self>, caller: &Caller) -> Result<Arc<Conn>, Box<Response<Body>>> {
        let key = (caller.owner.clone(), caller.server.clone());
        if let Some(conn) = lock(&self.stateless).get(&key) {
            return Ok(Arc::clone(conn));
        }
        self.check_capacity(&caller.owner)?;
        let conn = self.start_conn(caller, None)?;
        conn.relay.set_era(Era::V2026_07_28);
        let mut stateless = lock(&self.stateless);
        if let Some(existing) = stateless.get(&key) {
            // Another request started one meanwhile: keep that one.
            let existing = Arc::clone(existing);
            drop(stateless);
            tokio::spawn(async move { conn.close().await });
            return Ok(existing);
        }
        stateless.insert(key, Arc::clone(&conn));
        Ok(conn)
    }

    fn check_capacity(&self, owner: &str) -> Result<(), Box<Response<Body>>> {
        let (mut total, mut owned) = (0, 0);
        for conn in lock(&self.sessions)
            .values()
            .chain(lock(&self.stateless).values())
        {
            total += 1;
            owned += usize::from(conn.owner == owner);
        }
        if total < MAX_CONNS && owned < MAX_CONNS_PER_TOKEN {
            return Ok(());
        }
        Err(Box::new(refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "HTTP_TOO_MANY_SESSIONS",
            "too many open MCP sessions",
            "End sessions you no longer use with DELETE (idle ones end after an hour).",
        )))
    }

    fn start_conn(
        self: &Arc<Self>,
        caller: &Caller,
        session: Option<String>,
    ) -> Result<Arc<Conn>, Box<Response<Body>>> {
        let server = self.config.servers.get(&caller.server).ok_or_else(|| {
            Box::new(refusal(
                StatusCode::NOT_FOUND,
                "HTTP_NOT_FOUND",
                "no such MCP server",
                "Use a configured server name.",
            ))
        })?;
        let identity = RelayIdentity {
            server: caller.server.clone(),
            tenant: caller.tenant.clone(),
            agent: caller.agent.clone(),
            session,
        };
        let front = Arc::downgrade(self);
        let on_closed: OnClosed = Box::new(move |relay| {
            if let Some(front) = front.upgrade() {
                front.forget(relay);
            }
        });
        Conn::start(
            server,
            identity,
            caller.owner.clone(),
            Arc::clone(&self.authority),
            self.home.root(),
            on_closed,
        )
        .map_err(|err| {
            tracing::warn!(server = caller.server, %err, "cannot start the upstream");
            Box::new(refusal(
                StatusCode::BAD_GATEWAY,
                "MCP_UPSTREAM_FAILED",
                &format!(
                    "cannot start the upstream MCP server {:?}: {err}",
                    caller.server
                ),
                "Check the server's `command` or `url` in gateway.toml.",
            ))
        })
    }

    /// Forgets the connection of `relay` (its upstream exited).
    fn forget(&self, relay: &Arc<Relay>) {
        lock(&self.sessions).retain(|_, conn| !Arc::ptr_eq(&conn.relay, relay));
        lock(&self.stateless).retain(|_, conn| !Arc::ptr_eq(&conn.relay, relay));
    }
}

/// Reads a POST body of at most [`MAX_BODY_BYTES`].
async fn read_body(body: Incoming, declared: Option<u64>) -> Result<Bytes, Box<Response<Body>>> {
    let too_large = || {
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "MCP_MESSAGE_TOO_LARGE",
            &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            "Send smaller messages.",
        )
    };
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(Box::new(too_large()));
    }
    match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Box::new(too_large()))
        }
        Ok(Err(err)) => Err(Box::new(refusal(
            StatusCode::BAD_REQUEST,
            "HTTP_BODY_UNREADABLE",
            &format!("the body could not be read: {err}"),
            "Resend the request.",
        ))),
        Err(_) => Err(Box::new(refusal(
            StatusCode::REQUEST_TIMEOUT,
            "HTTP_BODY_TIMEOUT",
            "the body did not arrive in time",
            "Resend the request.",
        ))),
    }
}

/// The `Mcp-Session-Id` header, if any (400 when it is not visible ASCII).
fn session_header(headers: &HeaderMap) -> Result<Option<String>, Box<Response<Body>>> {
    match headers.get(HEADER_SESSION_ID).map(HeaderValue::to_str) {
        None => Ok(None),
        Some(Ok(session)) => Ok(Some(session.to_owned())),
        Some(Err(_)) => Err(Box::new(refusal(
            StatusCode::BAD_REQUEST,
            "MCP_SESSION_UNKNOWN",
            "the Mcp-Session-Id header is not visible ASCII",
            "Send the session id exactly as initialize returned it.",
        ))),
    }
}

/// The id of a single message, for error answers (`null` for batches and unreadable bodies).
fn single_id(body: Option<&Value>) -> Id {
    match body.and_then(|v| v.get("id")) {
        Some(Value::Number(n)) => n.as_i64().map_or(Id::Null, Id::Number),
        Some(Value::String(s)) => Id::Text(s.clone()),
        _ => Id::Null,
    }
}

fn respond(outcome: Outcome, session: Option<&str>) -> Response<Body> {
    let mut response = match outcome {
        Outcome::Answer { text, for_requests } => {
            // A body without requests is answered only when the relay refused it.
            let status = if for_requests {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            json_response(status, text)
        }
        Outcome::Accepted => plain(StatusCode::ACCEPTED, empty()),
        Outcome::Failed(response) => return response,
    };
    if let Some(session) = session {
        match HeaderValue::from_str(session) {
            Ok(value) => {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(HEADER_SESSION_ID), value);
            }
            Err(_) => tracing::error!("a session id is not a header value"),
        }
    }
    response
}

fn empty() -> Body {
    Empty::new().boxed_unsync()
}

fn plain(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

fn json_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = plain(status, Full::new(Bytes::from(text)).boxed_unsync());
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON-RPC error answer with the front's reason and remediation in `data`.
fn rpc_refusal(
    status: StatusCode,
    id: &Id,
    code: i64,
    message: &str,
    reason: &str,
    remediation: &str,
) -> Response<Body> {
    let data = json!({"reason": reason, "remediation": remediation});
    json_response(
        status,
        crate::mcp::message::error_response(id, code, message, Some(data)),
    )
}

/// An HTTP-level refusal: a JSON-RPC error without id.
fn refusal(status: StatusCode, reason: &str, message: &str, remediation: &str) -> Response<Body> {
    rpc_refusal(
        status,
        &Id::Null,
        codes::GATEWAY_REFUSED,
        message,
        reason,
        remediation,
    )
}

fn unauthorized(presented: bool) -> Response<Body> {
    let (message, challenge) = if presented {
        (
            "unknown bearer token",
            r#"Bearer realm="trustos", error="invalid_token""#,
        )
    } else {
        ("a bearer token is required", r#"Bearer realm="trustos""#)
    };
    let mut response = refusal(
        StatusCode::UNAUTHORIZED,
        "HTTP_UNAUTHORIZED",
        message,
        "Send Authorization: Bearer <token>, with a token gateway.toml lists: add a [[tokens]] entry with token_sha256 = \"sha256:<hex SHA-256 of the token>\", tenant and agent (and optionally servers), then restart trustos serve.",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTP_METHOD_NOT_ALLOWED",
        "method not allowed on this endpoint",
        &format!("Use {allow}."),
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static(allow));
    response
}

fn unsupported_version(value: &HeaderValue) -> Response<Body> {
    let supported: Vec<&str> = Era::ALL.iter().map(|era| era.as_str()).collect();
    let data = json!({
        "reason": "MCP_PROTOCOL_VERSION_UNSUPPORTED",
        "remediation": "Send an MCP-Protocol-Version the gateway supports.",
        "supported": supported,
        "requested": String::from_utf8_lossy(value.as_bytes()),
    });
    json_response(
        StatusCode::BAD_REQUEST,
        crate::mcp::message::error_response(
            &Id::Null,
            codes::UNSUPPORTED_PROTOCOL_VERSION,
            "unsupported MCP-Protocol-Version",
            Some(data),
        ),
    )
}

fn session_required() -> Response<Body> {
    refusal(
        StatusCode::BAD_REQUEST,
        "MCP_SESSION_REQUIRED",
        "the Mcp-Session-Id header is required",
        "Send the Mcp-Session-Id that initialize returned.",
    )
}

fn unknown_session() -> Response<Body> {
    refusal(
        StatusCode::NOT_FOUND,
        "MCP_SESSION_UNKNOWN",
        "no such session (it ended, or another token opened it)",
        "Send initialize again without Mcp-Session-Id to open a new session.",
    )
}

/// A session's GET stream: each message as one SSE event, with keep-alive comments.
struct EventStream {
    messages: mpsc::Receiver<String>,
    keep_alive: tokio::time::Interval,
}

/// One SSE event carrying `text` (one `data` line per line of the text, so a receiver joins
/// them back with `\n`).
fn sse_event(text: &str) -> Bytes {
    let mut event = String::with_capacity(text.len() + 16);
    for line in text.split('\n') {
        event.push_str("data: ");
        event.push_str(line.strip_suffix('\r').unwrap_or(line));
        event.push('\n');
    }
    event.push('\n');
    Bytes::from(event)
}

impl hyper::body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.messages.poll_recv(cx) {
            Poll::Ready(Some(text)) => Poll::Ready(Some(Ok(Frame::data(sse_event(&text))))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.keep_alive.poll_tick(cx) {
                Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                    b": keep-alive\n\n",
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_carry_each_line() {
        assert_eq!(&sse_event("{\"a\":1}")[..], b"data: {\"a\":1}\n\n");
        assert_eq!(
            &sse_event("{\n\"a\":1}")[..],
            b"data: {\ndata: \"a\":1}\n\n"
        );
    }

    #[test]
    fn single_ids() {
        assert_eq!(single_id(Some(&json!({"id": 3}))), Id::Number(3));
        assert_eq!(single_id(Some(&json!({"id": "x"}))), Id::Text("x".into()));
        assert_eq!(single_id(Some(&json!([{"id": 3}]))), Id::Null);
        assert_eq!(single_id(None), Id::Null);
    }
}
