//! A Streamable HTTP MCP server as the relay's upstream: the client side of the transport.
//!
//! [`HttpUpstream`] POSTs each JSON-RPC message to the server's MCP endpoint exactly as the relay
//! hands it over (the body is never parsed or re-serialized here), and gives back every message
//! the server sends for it, again as the exact bytes received: the whole `application/json` body
//! (trimmed of surrounding whitespace) or the `data` of each SSE `message` event. It covers the
//! Streamable HTTP rules of every era the relay speaks (2025-03-26 to 2026-07-28):
//!
//! - `Accept: application/json, text/event-stream` and `Content-Type: application/json` on every
//!   POST; `MCP-Protocol-Version` once the caller has set the era;
//! - sessions (eras with a handshake): the `Mcp-Session-Id` a response carries is kept and sent
//!   on every later request, a 404 for it is [`UpstreamError::SessionExpired`], and
//!   [`HttpUpstream::close`] ends it with DELETE. 2026-07-28 has no sessions: none are kept;
//! - 2026-07-28 request metadata: `Mcp-Method` and `Mcp-Name` (Base64 sentinel form when the
//!   name is not a plain header value);
//! - resumption (eras before 2026-07-28): when a response stream ends before its JSON-RPC
//!   response after the server gave an event ID, the stream is resumed with GET and
//!   `Last-Event-ID`, after the server's `retry` delay;
//! - the optional GET stream for server-initiated messages ([`HttpUpstream::open_listen_stream`]).
//!
//! `http://` and `https://` endpoints, through the HTTP lane's upstream client
//! ([`crate::http_lane::client`]: rustls, Mozilla roots). A message larger than
//! [`MAX_MESSAGE_BYTES`] is refused. Connecting and receiving response headers is
//! bounded by a timeout ([`DEFAULT_TIMEOUT`], see [`HttpUpstream::with_timeout`]); response
//! bodies and streams are not, since a tool call may legitimately run for a long time. Dropping a
//! receiver closes its stream, which 2026-07-28 servers treat as cancellation.

use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Uri};
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny};
use tokio::sync::mpsc;

use crate::http_lane::client::{UpstreamClient, build_client};
use crate::mcp::era::Era;
use crate::mcp::sse::{MAX_EVENT_BYTES, SseError, SseParser};

/// Largest single message accepted from the upstream, in bytes (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = MAX_EVENT_BYTES;

/// Default bound on connecting and receiving a response's headers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Session header (eras 2025-03-26 to 2025-11-25).
pub const HEADER_SESSION_ID: &str = "mcp-session-id";
/// Protocol version header, sent once the era is known.
pub const HEADER_PROTOCOL_VERSION: &str = "mcp-protocol-version";
/// 2026-07-28: the JSON-RPC method of the POSTed message.
pub const HEADER_METHOD: &str = "mcp-method";
/// 2026-07-28: `params.name` or `params.uri` of `tools/call`, `prompts/get`, `resources/read`.
pub const HEADER_NAME: &str = "mcp-name";
/// Resumption cursor on a GET that resumes an interrupted stream.
pub const HEADER_LAST_EVENT_ID: &str = "last-event-id";

/// What a POST or GET accepts.
const ACCEPT_POST: &str = "application/json, text/event-stream";
const ACCEPT_GET: &str = "text/event-stream";
/// How much of an error response's body is kept for [`UpstreamError::Status`].
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Messages buffered between the reading task and the caller.
const CHANNEL_CAPACITY: usize = 16;
/// Wait before resuming a stream when the server gave no `retry`.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Longest `retry` honoured.
const MAX_RETRY: Duration = Duration::from_secs(60);
/// Resumptions of one response stream before giving up.
const MAX_RESUMES: u32 = 100;
/// Headers the transport sets itself; configured extra headers may not override them.
const MANAGED_HEADERS: [&str; 10] = [
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "accept",
    HEADER_SESSION_ID,
    HEADER_PROTOCOL_VERSION,
    HEADER_METHOD,
    HEADER_NAME,
];

/// Why talking to the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The endpoint URL could not be used.
    #[error("invalid upstream URL: {0}")]
    InvalidUrl(String),
    /// The endpoint needs something this build does not do yet.
    #[error("unsupported upstream: {0}")]
    Unsupported(&'static str),
    /// A configured header, or a header value taken from the message, is not a valid header.
    #[error("invalid header: {0}")]
    InvalidHeader(String),
    /// Connecting, sending, or receiving the response headers failed.
    #[error("cannot reach the upstream: {0}")]
    Connect(String),
    /// Reading a response body failed part way.
    #[error("reading the upstream response failed: {0}")]
    Read(String),
    /// No response headers within the configured timeout.
    #[error("upstream did not answer in time")]
    Timeout,
    /// The upstream answered with an HTTP error status.
    #[error("upstream answered HTTP {status}: {body}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The start of the response body, lossily decoded.
        body: String,
    },
    /// The upstream answered 404 to a request carrying the session ID: the session is gone and
    /// has been forgotten; the client must initialize again.
    #[error("upstream session expired; a new initialize is needed")]
    SessionExpired,
    /// A successful answer with a body that is neither JSON nor an event stream.
    #[error("upstream answered with unexpected content type {0:?}")]
    BadContentType(String),
    /// The response event stream ended before the JSON-RPC response and could not be resumed.
    #[error("upstream event stream: {0}")]
    Sse(String),
    /// A message (or an event-stream line) larger than [`MAX_MESSAGE_BYTES`].
    #[error("upstream message larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
}

impl From<SseError> for UpstreamError {
    fn from(_: SseError) -> Self {
        UpstreamError::TooLarge
    }
}

/// What the relay knows about the message it POSTs, for headers and response handling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostMeta<'a> {
    /// The JSON-RPC method (`Mcp-Method` in 2026-07-28).
    pub method: &'a str,
    /// `params.name` or `params.uri` for `tools/call`, `prompts/get`, `resources/read`
    /// (`Mcp-Name` in 2026-07-28).
    pub name: Option<&'a str>,
    /// Whether the message is a request, so a JSON-RPC response is expected back.
    pub is_request: bool,
}

/// Messages the upstream sends back, each the exact bytes of one JSON value, in order.
pub type MessageReceiver = mpsc::Receiver<Result<Bytes, UpstreamError>>;

/// A Streamable HTTP MCP endpoint. See the module documentation.
pub struct HttpUpstream {
    inner: Arc<Inner>,
}

/// The state shared with the tasks that read response streams.
struct Inner {
    client: UpstreamClient,
    url: Uri,
    extra_headers: HeaderMap,
    timeout: Duration,
    session_id: Mutex<Option<String>>,
    era: Mutex<Option<Era>>,
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values and the session ID are credentials: names only.
        let names: Vec<&str> = self
            .inner
            .extra_headers
            .keys()
            .map(HeaderName::as_str)
            .collect();
        f.debug_struct("HttpUpstream")
            .field("url", &self.inner.url)
            .field("extra_headers", &names)
            .field("timeout", &self.inner.timeout)
            .field("has_session", &self.inner.session().is_some())
            .field("era", &self.inner.era())
            .finish()
    }
}

impl HttpUpstream {
    /// An upstream at `url` (`http://` or `https://`), sending `extra_headers` (e.g.
    /// `Authorization`) on every request. Headers the transport manages itself are refused.
    pub fn new(url: &str, extra_headers: Vec<(String, String)>) -> Result<Self, UpstreamError> {
        let url = parse_url(url)?;
        let mut headers = HeaderMap::new();
        for (name, value) in extra_headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| UpstreamError::InvalidHeader(format!("bad header name {name:?}")))?;
            if MANAGED_HEADERS.contains(&header.as_str()) {
                return Err(UpstreamError::InvalidHeader(format!(
                    "{header} is set by the transport and cannot be configured"
                )));
            }
            let value = HeaderValue::from_str(&value)
                .map_err(|_| UpstreamError::InvalidHeader(format!("bad value for {header}")))?;
            headers.append(header, value);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client: build_client(None)
                    .map_err(|error| UpstreamError::Connect(error.to_string()))?,
                url,
                extra_headers: headers,
                timeout: DEFAULT_TIMEOUT,
                session_id: Mutex::new(None),
                era: Mutex::new(None),
            }),
        })
    }

    /// The same upstream with `timeout` bounding each connect and wait for response headers.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                client: inner.client.clone(),
                url: inner.url.clone(),
                extra_headers: inner.extra_headers.clone(),
                timeout,
                session_id: Mutex::new(inner.session()),
                era: Mutex::new(inner.era()),
            }),
        }
    }

    /// The endpoint URL.
    pub fn url(&self) -> &Uri {
        &self.inner.url
    }

    /// Sets the negotiated protocol era, sent as `MCP-Protocol-Version` from now on (`None`
    /// stops sending it). It also decides whether sessions are kept and whether the 2026-07-28
    /// `Mcp-Method` / `Mcp-Name` headers are sent.
    pub fn set_protocol_version(&self, era: Option<Era>) {
        *lock(&self.inner.era) = era;
    }

    /// The protocol era set with [`HttpUpstream::set_protocol_version`].
    pub fn protocol_version(&self) -> Option<Era> {
        self.inner.era()
    }

    /// The session ID the server assigned, if any.
    pub fn session_id(&self) -> Option<String> {
        self.inner.session()
    }

    /// Sends one raw message. For a request, returns a receiver of every raw JSON-RPC message
    /// the server sends back for it, each the exact bytes of one JSON value as received: for an
    /// `application/json` body, the whole body trimmed of surrounding whitespace; for an event
    /// stream, each `message` event's data (trimmed the same way; events with empty data, such
    /// as resumption primers, are skipped). The channel closes when the response stream ends,
    /// after an [`UpstreamError::Sse`] item if a request's stream ended before its JSON-RPC
    /// response and could not be resumed. For notifications and responses the receiver yields
    /// nothing and closes after the 202 (any 2xx without a body is accepted).
    pub async fn post(
        &self,
        raw: Bytes,
        meta: PostMeta<'_>,
    ) -> Result<MessageReceiver, UpstreamError> {
        let era = self.inner.era();
        let (mut request, sent_session) = self.inner.request(Method::POST, raw, era);
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_POST));
        if era.is_some_and(Era::has_method_headers) {
            let method = HeaderValue::from_str(meta.method).map_err(|_| {
                UpstreamError::InvalidHeader(format!(
                    "method {:?} is not a header value",
                    meta.method
                ))
            })?;
            headers.insert(HeaderName::from_static(HEADER_METHOD), method);
            if let Some(name) = meta.name {
                headers.insert(HeaderName::from_static(HEADER_NAME), encode_name(name)?);
            }
        }

        let response = self.inner.send(request).await?;
        let response = self
            .inner
            .check(response, sent_session.as_deref(), era)
            .await?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        match media_type(response.headers()).as_deref() {
            Some("text/event-stream") => {
                let stream = Stream {
                    inner: Arc::clone(&self.inner),
                    tx,
                    expect_response: meta.is_request,
                    may_resume: era.is_none_or(Era::has_handshake),
                };
                tokio::spawn(stream.pump(response.into_body()));
            }
            Some("application/json") => {
                let body = read_limited(response.into_body(), MAX_MESSAGE_BYTES).await?;
                let message = trim_json(body);
                if !message.is_empty() {
                    // The receiver is still held here, so this cannot fail.
                    let _ = tx.send(Ok(message)).await;
                }
            }
            // 202 Accepted: whatever body there is means nothing.
            _ if response.status() == StatusCode::ACCEPTED => {}
            other => {
                let shown = other.unwrap_or("none").to_owned();
                match read_limited(response.into_body(), MAX_ERROR_BODY).await {
                    Ok(body) if trim_json(body.clone()).is_empty() => {}
                    Ok(_) | Err(UpstreamError::TooLarge) => {
                        return Err(UpstreamError::BadContentType(shown));
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(rx)
    }

    /// Opens the optional GET stream for server-initiated messages (eras before 2026-07-28).
    /// `Ok(None)` when the server does not offer one (405). The receiver yields each `message`
    /// event's data until the server closes the stream; it is not resumed.
    pub async fn open_listen_stream(&self) -> Result<Option<MessageReceiver>, UpstreamError> {
        let era = self.inner.era();
        let (mut request, sent_session) = self.inner.request(Method::GET, Bytes::new(), era);
        request
            .headers_mut()
            .insert(ACCEPT, HeaderValue::from_static(ACCEPT_GET));
        let response = self.inner.send(request).await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(None);
        }
        let response = self
            .inner
            .check(response, sent_session.as_deref(), era)
            .await?;
        let body = event_stream_body(response)?;
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let stream = Stream {
            inner: Arc::clone(&self.inner),
            tx,
            expect_response: false,
            may_resume: false,
        };
        tokio::spawn(stream.pump(body));
        Ok(Some(rx))
    }

    /// Ends the session with DELETE when there is one, and forgets it. A server that does not
    /// allow clients to end sessions (405), or has already dropped it (404), is fine.
    pub async fn close(&self) -> Result<(), UpstreamError> {
        let era = self.inner.era();
        let (request, sent_session) = self.inner.request(Method::DELETE, Bytes::new(), era);
        let Some(session) = sent_session else {
            return Ok(());
        };
        let response = self.inner.send(request).await?;
        self.inner.forget_session(&session);
        let status = response.status();
        if status.is_success()
            || status == StatusCode::METHOD_NOT_ALLOWED
            || status == StatusCode::NOT_FOUND
        {
            return Ok(());
        }
        let body = read_truncated(response.into_body(), MAX_ERROR_BODY).await;
        Err(UpstreamError::Status {
            status: status.as_u16(),
            body,
        })
    }
}

impl Inner {
    fn session(&self) -> Option<String> {
        lock(&self.session_id).clone()
    }

    fn era(&self) -> Option<Era> {
        *lock(&self.era)
    }

    /// Forgets the session if it is still `session` (a newer one is kept).
    fn forget_session(&self, session: &str) {
        let mut current = lock(&self.session_id);
        if current.as_deref() == Some(session) {
            *current = None;
        }
    }

    /// A request to the endpoint with the configured headers, the session and the protocol
    /// version; also returns the session ID it carries.
    fn request(
        &self,
        method: Method,
        body: Bytes,
        era: Option<Era>,
    ) -> (Request<Full<Bytes>>, Option<String>) {
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = self.url.clone();
        let headers = request.headers_mut();
        headers.extend(self.extra_headers.clone());
        if let Some(era) = era {
            headers.insert(
                HeaderName::from_static(HEADER_PROTOCOL_VERSION),
                HeaderValue::from_static(era.as_str()),
            );
        }
        let mut sent_session = None;
        if era.is_none_or(Era::has_handshake)
            && let Some(session) = self.session()
            // Stored only after checking it is a valid header value.
            && let Ok(value) = HeaderValue::from_str(&session)
        {
            headers.insert(HeaderName::from_static(HEADER_SESSION_ID), value);
            sent_session = Some(session);
        }
        (request, sent_session)
    }

    /// Sends `request`, bounding connect and response headers by the timeout.
    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamError::Timeout),
            Ok(Err(error)) => Err(UpstreamError::Connect(describe(&error))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Turns an error status into an error and records a session ID the server assigned.
    async fn check(
        &self,
        response: Response<Incoming>,
        sent_session: Option<&str>,
        era: Option<Era>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let status = response.status();
        if status == StatusCode::NOT_FOUND
            && let Some(session) = sent_session
        {
            tracing::debug!("upstream session expired");
            self.forget_session(session);
            return Err(UpstreamError::SessionExpired);
        }
        if !status.is_success() {
            let body = tokio::time::timeout(
                self.timeout,
                read_truncated(response.into_body(), MAX_ERROR_BODY),
            )
            .await
            .unwrap_or_default();
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                body,
            });
        }
        if era.is_none_or(Era::has_handshake)
            && let Some(value) = response.headers().get(HEADER_SESSION_ID)
        {
            match value.to_str() {
                Ok(id) if is_session_id(id) => {
                    let mut current = lock(&self.session_id);
                    if current.as_deref() != Some(id) {
                        tracing::debug!("upstream assigned a session");
                        *current = Some(id.to_owned());
                    }
                }
                _ => tracing::warn!("upstream sent an invalid Mcp-Session-Id; ignoring it"),
            }
        }
        Ok(response)
    }

    /// Resumes an interrupted response stream with GET and `Last-Event-ID`. `Ok(None)` when the
    /// server does not offer resumption (405).
    async fn resume(&self, last_event_id: &str) -> Result<Option<Incoming>, UpstreamError> {
        let era = self.era();
        let (mut request, sent_session) = self.request(Method::GET, Bytes::new(), era);
        let cursor = HeaderValue::from_str(last_event_id).map_err(|_| {
            UpstreamError::Sse("the last event ID is not a header value".to_owned())
        })?;
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_GET));
        headers.insert(HeaderName::from_static(HEADER_LAST_EVENT_ID), cursor);
        let response = self.send(request).await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(None);
        }
        let response = self.check(response, sent_session.as_deref(), era).await?;
        event_stream_body(response).map(Some)
    }
}

/// One response event stream being read into a channel.
struct Stream {
    inner: Arc<Inner>,
    tx: mpsc::Sender<Result<Bytes, UpstreamError>>,
    /// A request's stream: it should carry a JSON-RPC response before it ends.
    expect_response: bool,
    /// Resume with `Last-Event-ID` when the stream ends before the response.
    may_resume: bool,
}

/// How reading one HTTP body of a stream ended.
enum Ended {
    /// The server finished the body.
    Finished,
    /// The connection broke.
    Broken(String),
    /// The caller dropped the receiver, or the stream failed and the error was delivered.
    Stop,
}

impl Stream {
    async fn pump(self, mut body: Incoming) {
        let mut parser = SseParser::new();
        let mut saw_response = false;
        let mut resumes = 0;
        loop {
            let broken = match self
                .read_body(&mut body, &mut parser, &mut saw_response)
                .await
            {
                Ended::Stop => return,
                Ended::Finished => None,
                Ended::Broken(reason) => Some(reason),
            };
            if !self.expect_response || saw_response {
                if let Some(reason) = broken {
                    let _ = self.tx.send(Err(UpstreamError::Read(reason))).await;
                }
                return;
            }
            let why = broken.unwrap_or_else(|| "the stream ended before the response".to_owned());
            if !self.may_resume || parser.last_event_id().is_empty() || resumes >= MAX_RESUMES {
                let _ = self.tx.send(Err(UpstreamError::Sse(why))).await;
                return;
            }
            resumes += 1;
            let delay = parser
                .retry_ms()
                .map_or(DEFAULT_RETRY, Duration::from_millis)
                .min(MAX_RETRY);
            tracing::debug!(attempt = resumes, ?delay, "resuming upstream event stream");
            tokio::select! {
                () = self.tx.closed() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match self.inner.resume(parser.last_event_id()).await {
                Ok(Some(next)) => {
                    body = next;
                    parser.reconnected();
                }
                Ok(None) => {
                    let why = format!("{why}, and the server does not resume streams");
                    let _ = self.tx.send(Err(UpstreamError::Sse(why))).await;
                    return;
                }
                Err(error) => {
                    let _ = self.tx.send(Err(error)).await;
                    return;
                }
            }
        }
    }

    async fn read_body(
        &self,
        body: &mut Incoming,
        parser: &mut SseParser,
        saw_response: &mut bool,
    ) -> Ended {
        let mut events = Vec::new();
        loop {
            let frame = tokio::select! {
                biased;
                () = self.tx.closed() => return Ended::Stop,
                frame = body.frame() => frame,
            };
            let data = match frame {
                None => return Ended::Finished,
                Some(Err(error)) => return Ended::Broken(describe(&error)),
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => data,
                    Err(_) => continue, // trailers
                },
            };
            if let Err(error) = parser.feed_into(&data, &mut events) {
                let _ = self.tx.send(Err(error.into())).await;
                return Ended::Stop;
            }
            for event in events.drain(..) {
                if !event.is_message() {
                    continue;
                }
                let message = trim_json(event.data);
                if message.is_empty() {
                    continue;
                }
                if self.expect_response && is_response(&message) {
                    *saw_response = true;
                }
                if self.tx.send(Ok(message)).await.is_err() {
                    return Ended::Stop;
                }
            }
        }
    }
}

fn parse_url(url: &str) -> Result<Uri, UpstreamError> {
    let uri: Uri = url
        .parse()
        .map_err(|error| UpstreamError::InvalidUrl(format!("{url:?}: {error}")))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(UpstreamError::InvalidUrl(format!(
                "{url:?}: only http:// and https:// URLs are supported"
            )));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(UpstreamError::InvalidUrl(format!("{url:?}: no host")));
    };
    if authority.as_str().contains('@') {
        return Err(UpstreamError::InvalidUrl(
            "credentials in the URL are not supported; configure an Authorization header"
                .to_owned(),
        ));
    }
    if authority.host().is_empty() {
        return Err(UpstreamError::InvalidUrl(format!("{url:?}: no host")));
    }
    Ok(uri)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An error and its causes on one line (hyper's own messages are terse).
fn describe(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The media type of the `Content-Type` header, lowercased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// The body of a response that must be an event stream.
fn event_stream_body(response: Response<Incoming>) -> Result<Incoming, UpstreamError> {
    match media_type(response.headers()).as_deref() {
        Some("text/event-stream") => Ok(response.into_body()),
        other => Err(UpstreamError::BadContentType(
            other.unwrap_or("none").to_owned(),
        )),
    }
}

/// Session IDs are visible ASCII (0x21 to 0x7E), and not empty.
fn is_session_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| (0x21..=0x7E).contains(&b))
}

/// Reads a whole body, refusing one longer than `limit` with [`UpstreamError::TooLarge`].
async fn read_limited(mut body: Incoming, limit: usize) -> Result<Bytes, UpstreamError> {
    let mut buffer = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| UpstreamError::Read(describe(&error)))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len().saturating_add(data.len()) > limit {
                return Err(UpstreamError::TooLarge);
            }
            if buffer.is_empty() && body.is_end_stream() {
                // A single-frame body: keep it without copying.
                return Ok(data);
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

/// Reads up to `limit` bytes of an error body, lossily decoded; errors end it early.
async fn read_truncated(mut body: Incoming, limit: usize) -> String {
    let mut buffer = Vec::new();
    while buffer.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    let room = limit - buffer.len();
                    buffer.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(_)) | None => break,
        }
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

/// `bytes` without the JSON whitespace (space, tab, LF, CR) around it; the value itself is
/// untouched.
fn trim_json(bytes: Bytes) -> Bytes {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ws(b))
        .map_or(start, |i| i + 1);
    bytes.slice(start..end)
}

/// Just enough of a JSON-RPC message to tell a response from a request or notification.
#[derive(Deserialize)]
struct Probe {
    #[serde(default, deserialize_with = "present")]
    method: bool,
    #[serde(default, deserialize_with = "present")]
    result: bool,
    #[serde(default, deserialize_with = "present")]
    error: bool,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl Probe {
    fn is_response(&self) -> bool {
        !self.method && (self.result || self.error)
    }
}

/// Whether `message` is a JSON-RPC response, or a batch holding one. Unreadable input is not
/// (the relay's strict check deals with it).
fn is_response(message: &[u8]) -> bool {
    if message.first() == Some(&b'[') {
        serde_json::from_slice::<Vec<Probe>>(message)
            .is_ok_and(|batch| batch.iter().any(Probe::is_response))
    } else {
        serde_json::from_slice::<Probe>(message).is_ok_and(|probe| probe.is_response())
    }
}

/// The `Mcp-Name` value: as is when it is a plain header value, else the Base64 sentinel form
/// `=?base64?…?=` (also for a plain value that looks like the sentinel).
fn encode_name(name: &str) -> Result<HeaderValue, UpstreamError> {
    let looks_encoded = name.starts_with("=?base64?") && name.ends_with("?=");
    let plain = !looks_encoded
        && name
            .bytes()
            .all(|b| b == b'\t' || (0x20..=0x7E).contains(&b))
        && !name.starts_with([' ', '\t'])
        && !name.ends_with([' ', '\t']);
    let text = if plain {
        name.to_owned()
    } else {
        format!("=?base64?{}?=", base64_standard(name.as_bytes()))
    };
    HeaderValue::from_str(&text)
        .map_err(|_| UpstreamError::InvalidHeader("Mcp-Name is not a header value".to_owned()))
}

/// RFC 4648 Base64, standard alphabet, with padding.
fn base64_standard(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 0x3F) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use hyper::body::Frame;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use serde_json::Value;
    use tokio::net::TcpListener;

    /// A response body fed from a channel, so the test server can stream, pause and notice a
    /// client that went away.
    struct ChanBody(mpsc::Receiver<Bytes>);

    impl hyper::body::Body for ChanBody {
        type Data = Bytes;
        type Error = Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            self.0
                .poll_recv(cx)
                .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
        }
    }

    /// One request as the server received it.
    #[derive(Clone, Debug)]
    struct Seen {
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.get(name).map(|v| v.to_str().unwrap())
        }
    }

    #[derive(Default)]
    struct State {
        seen: Vec<Seen>,
        sessions: Vec<String>,
        issued: u32,
        /// 2026-07-28 behaviour: no sessions at all.
        stateless: bool,
        /// Offer the GET stream.
        listen: bool,
        /// The client went away from the endless stream.
        cancelled: bool,
    }

    struct TestServer {
        url: String,
        state: Arc<Mutex<State>>,
    }

    impl TestServer {
        async fn start() -> TestServer {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}/mcp", listener.local_addr().unwrap());
            let state = Arc::new(Mutex::new(State::default()));
            let shared = Arc::clone(&state);
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let state = Arc::clone(&shared);
                    tokio::spawn(async move {
                        let service = service_fn(move |req| handle(Arc::clone(&state), req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            });
            TestServer { url, state }
        }

        fn state(&self) -> MutexGuard<'_, State> {
            self.state.lock().unwrap()
        }

        fn seen(&self) -> Vec<Seen> {
            self.state().seen.clone()
        }

        fn last(&self) -> Seen {
            self.state().seen.last().cloned().unwrap()
        }
    }

    fn reply(
        status: u16,
        headers: &[(&str, &str)],
        chunks: Vec<(u64, &'static [u8])>,
    ) -> Response<ChanBody> {
        let (tx, rx) = mpsc::channel(chunks.len().max(1));
        tokio::spawn(async move {
            for (delay_ms, chunk) in chunks {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                if tx.send(Bytes::from_static(chunk)).await.is_err() {
                    return;
                }
            }
        });
        let mut response = Response::new(ChanBody(rx));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    }

    const SSE: (&str, &str) = ("content-type", "text/event-stream");
    const JSON: (&str, &str) = ("content-type", "application/json");

    const INIT_REPLY: &[u8] =
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"protocolVersion\":\"2025-11-25\"}}";
    const PROGRESS: &[u8] = b"{\"method\":\"notifications/progress\",  \"jsonrpc\":\"2.0\",\"params\":{\"progress\":1}}";
    const CALL_REPLY: &[u8] = b"{\"jsonrpc\":\"2.0\",\n\"id\":2,\"result\":{\"content\":[]}}";
    const RESUMED_REPLY: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{}}";

    /// Everything the server decides under the state lock: an early answer, or the method of
    /// a request to answer below.
    fn route(
        st: &mut State,
        parts: &hyper::http::request::Parts,
        body: Bytes,
    ) -> Result<String, Response<ChanBody>> {
        st.seen.push(Seen {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            body: body.clone(),
        });
        let session = parts
            .headers
            .get(HEADER_SESSION_ID)
            .map(|v| v.to_str().unwrap().to_owned());
        let known = session.as_ref().is_some_and(|s| st.sessions.contains(s));
        if parts.method == Method::DELETE {
            let status = match session {
                Some(s) if known => {
                    st.sessions.retain(|k| *k != s);
                    200
                }
                Some(_) => 404,
                None => 400,
            };
            return Err(reply(status, &[], vec![]));
        }
        if parts.method == Method::GET {
            if session.is_some() && !known {
                return Err(reply(404, &[], vec![]));
            }
            if let Some(cursor) = parts.headers.get(HEADER_LAST_EVENT_ID) {
                assert_eq!(cursor, "p-1");
                return Err(reply(
                    200,
                    &[SSE],
                    vec![(0, b"id: p-2\ndata: "), (5, RESUMED_REPLY), (0, b"\n\n")],
                ));
            }
            if !st.listen {
                return Err(reply(405, &[], vec![]));
            }
            let events: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"a\"}\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"roots/list\"}\n\n";
            return Err(reply(200, &[SSE], vec![(0, events)]));
        }
        let accept = parts
            .headers
            .get(ACCEPT)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("");
        if !(accept.contains("application/json") && accept.contains("text/event-stream"))
            || parts.headers.get(CONTENT_TYPE).unwrap() != "application/json"
        {
            return Err(reply(400, &[], vec![(0, b"bad accept or content type")]));
        }
        let message: Value = serde_json::from_slice(&body).unwrap();
        let method = message["method"].as_str().unwrap_or("");
        if method == "initialize" && !st.stateless {
            st.issued += 1;
            let id = format!("sess-{}", st.issued);
            st.sessions.push(id.clone());
            let chunks = vec![(0, &b"\n  "[..]), (0, INIT_REPLY), (0, b" \r\n")];
            return Err(reply(200, &[JSON, ("Mcp-Session-Id", &id)], chunks));
        }
        if !st.stateless {
            match session {
                None => return Err(reply(400, &[], vec![(0, b"session required")])),
                Some(_) if !known => return Err(reply(404, &[], vec![])),
                Some(_) => {}
            }
        }
        if message.get("id").is_none() {
            return Err(reply(202, &[], vec![]));
        }
        Ok(method.to_owned())
    }

    async fn handle(
        state: Arc<Mutex<State>>,
        req: Request<Incoming>,
    ) -> Result<Response<ChanBody>, Infallible> {
        let (parts, body) = req.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let routed = route(&mut state.lock().unwrap(), &parts, body);
        let method = match routed {
            Ok(method) => method,
            Err(response) => return Ok(response),
        };
        let response = match method.as_str() {
            "tools/call" => reply(
                200,
                &[("content-type", "Text/Event-Stream; charset=utf-8")],
                vec![
                    (0, b": keep-alive\r\n\r\nevent: message\r\ndata: "),
                    (5, PROGRESS),
                    (0, b"\r\n\r"),
                    (5, b"\nevent: other\r\ndata: {\"ignored\":true}\r\n\r\n"),
                    (
                        0,
                        b"data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":2,\"result\":{\"con",
                    ),
                    (5, b"tent\":[]}}\r\n\r\n"),
                ],
            ),
            "resume/me" => reply(200, &[SSE], vec![(0, b"retry: 10\nid: p-1\ndata:\n\n")]),
            "cut/short" => reply(
                200,
                &[SSE],
                vec![(0, b"data: "), (0, PROGRESS), (0, b"\n\ndata: {\"id\":")],
            ),
            "big" => {
                let body: &'static [u8] =
                    Box::leak(vec![b' '; MAX_MESSAGE_BYTES + 1].into_boxed_slice());
                reply(200, &[JSON], vec![(0, b"{}"), (0, body)])
            }
            "html" => reply(
                200,
                &[("content-type", "text/html")],
                vec![(0, b"<p>hi</p>")],
            ),
            "boom" => reply(500, &[], vec![(0, b"boom")]),
            "slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                reply(200, &[JSON], vec![(0, b"{}")])
            }
            "forever" => {
                let (tx, rx) = mpsc::channel(1);
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    loop {
                        let event = Bytes::from_static(
                            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"tick\"}\n\n",
                        );
                        if tx.send(event).await.is_err() {
                            state.lock().unwrap().cancelled = true;
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
                let mut response = Response::new(ChanBody(rx));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
                response
            }
            _ => reply(
                200,
                &[("content-type", "application/json; charset=utf-8")],
                vec![(0, b"{\"result\":{},\"id\":3,\"jsonrpc\":\"2.0\"}")],
            ),
        };
        Ok(response)
    }

    fn request(method: &str) -> PostMeta<'_> {
        PostMeta {
            method,
            name: None,
            is_request: true,
        }
    }

    fn notification(method: &str) -> PostMeta<'_> {
        PostMeta {
            method,
            name: None,
            is_request: false,
        }
    }

    async fn collect(mut rx: MessageReceiver) -> Vec<Result<Bytes, UpstreamError>> {
        let mut all = Vec::new();
        while let Some(item) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
        {
            all.push(item);
        }
        all
    }

    async fn messages(rx: MessageReceiver) -> Vec<Bytes> {
        collect(rx).await.into_iter().map(Result::unwrap).collect()
    }

    const INIT: &[u8] =
        b"  {\"params\":{\"protocolVersion\":\"2025-11-25\" ,\"capabilities\":{}},\"method\":\"initialize\",\"jsonrpc\":\"2.0\",\"id\":1}\n";

    async fn initialized(server: &TestServer) -> HttpUpstream {
        let upstream = HttpUpstream::new(&server.url, vec![]).unwrap();
        messages(
            upstream
                .post(Bytes::from_static(INIT), request("initialize"))
                .await
                .unwrap(),
        )
        .await;
        upstream.set_protocol_version(Some(Era::V2025_11_25));
        upstream
    }

    #[tokio::test]
    async fn a_session_from_initialize_to_delete() {
        let server = TestServer::start().await;
        let upstream = HttpUpstream::new(
            &server.url,
            vec![("Authorization".into(), "Bearer t0ken".into())],
        )
        .unwrap();

        // initialize: JSON answer, trimmed, and the session is kept.
        let got = messages(
            upstream
                .post(Bytes::from_static(INIT), request("initialize"))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(got, vec![Bytes::from_static(INIT_REPLY)]);
        assert_eq!(upstream.session_id().as_deref(), Some("sess-1"));
        let first = server.last();
        assert_eq!(first.method, Method::POST);
        assert_eq!(first.body, INIT, "body forwarded byte for byte");
        assert_eq!(
            first.header("accept"),
            Some("application/json, text/event-stream")
        );
        assert_eq!(first.header("content-type"), Some("application/json"));
        assert_eq!(first.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(first.header(HEADER_SESSION_ID), None);
        assert_eq!(first.header(HEADER_PROTOCOL_VERSION), None);
        assert_eq!(first.header(HEADER_METHOD), None);

        upstream.set_protocol_version(Some(Era::V2025_11_25));

        // A notification: 202, nothing back.
        let note =
            Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\t");
        let got = collect(
            upstream
                .post(note.clone(), notification("notifications/initialized"))
                .await
                .unwrap(),
        )
        .await;
        assert!(got.is_empty());
        let seen = server.last();
        assert_eq!(seen.body, note);
        assert_eq!(seen.header(HEADER_SESSION_ID), Some("sess-1"));
        assert_eq!(seen.header(HEADER_PROTOCOL_VERSION), Some("2025-11-25"));
        assert_eq!(
            seen.header(HEADER_METHOD),
            None,
            "no Mcp-Method before 2026-07-28"
        );

        // A request answered by an event stream: the notification, then the response, exactly
        // as the data lines carried them; the other event type and the comment are skipped.
        let call = Bytes::from_static(
            b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"x\",\"arguments\":{\"b\":1,\"a\":2.50}}}",
        );
        let meta = PostMeta {
            method: "tools/call",
            name: Some("x"),
            is_request: true,
        };
        let got = messages(upstream.post(call.clone(), meta).await.unwrap()).await;
        assert_eq!(
            got,
            vec![Bytes::from_static(PROGRESS), Bytes::from_static(CALL_REPLY)]
        );
        assert_eq!(server.last().body, call);

        // A request answered with JSON (with a charset parameter).
        let ping = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}");
        let got = messages(upstream.post(ping, request("ping")).await.unwrap()).await;
        assert_eq!(
            got,
            vec![Bytes::from_static(
                b"{\"result\":{},\"id\":3,\"jsonrpc\":\"2.0\"}"
            )]
        );

        // close: DELETE with the session, which is then forgotten; a second close sends nothing.
        upstream.close().await.unwrap();
        let delete = server.last();
        assert_eq!(delete.method, Method::DELETE);
        assert_eq!(delete.header(HEADER_SESSION_ID), Some("sess-1"));
        assert_eq!(delete.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(upstream.session_id(), None);
        assert!(server.state().sessions.is_empty());
        let count = server.seen().len();
        upstream.close().await.unwrap();
        assert_eq!(server.seen().len(), count);
    }

    #[tokio::test]
    async fn an_expired_session_is_a_typed_error_and_is_forgotten() {
        let server = TestServer::start().await;
        let upstream = initialized(&server).await;
        server.state().sessions.clear();
        let ping = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}");
        let err = upstream.post(ping, request("ping")).await.unwrap_err();
        assert!(matches!(err, UpstreamError::SessionExpired), "{err:?}");
        assert_eq!(upstream.session_id(), None);

        // A new initialize goes out without the old session and gets a new one.
        messages(
            upstream
                .post(Bytes::from_static(INIT), request("initialize"))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(server.last().header(HEADER_SESSION_ID), None);
        assert_eq!(upstream.session_id().as_deref(), Some("sess-2"));

        // Without a session the test server wants 400: a plain status error, not expiry.
        let fresh = HttpUpstream::new(&server.url, vec![]).unwrap();
        let ping = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}");
        let err = fresh.post(ping, request("ping")).await.unwrap_err();
        assert!(
            matches!(err, UpstreamError::Status { status: 400, ref body } if body == "session required"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn a_stream_cut_before_the_response_is_resumed_with_last_event_id() {
        let server = TestServer::start().await;
        let upstream = initialized(&server).await;
        let raw = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"resume/me\"}");
        let got = messages(upstream.post(raw, request("resume/me")).await.unwrap()).await;
        assert_eq!(got, vec![Bytes::from_static(RESUMED_REPLY)]);
        let resume = server.last();
        assert_eq!(resume.method, Method::GET);
        assert_eq!(resume.header(HEADER_LAST_EVENT_ID), Some("p-1"));
        assert_eq!(resume.header(HEADER_SESSION_ID), Some("sess-1"));
        assert_eq!(resume.header("accept"), Some("text/event-stream"));
    }

    #[tokio::test]
    async fn a_stream_that_ends_without_the_response_says_so() {
        let server = TestServer::start().await;
        let upstream = initialized(&server).await;
        // No event ID: nothing to resume from. The unfinished event is dropped.
        let raw = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"cut/short\"}");
        let got = collect(upstream.post(raw, request("cut/short")).await.unwrap()).await;
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap(), PROGRESS);
        assert!(matches!(got[1], Err(UpstreamError::Sse(_))), "{:?}", got[1]);

        // 2026-07-28 streams are not resumable: no GET is tried.
        server.state().stateless = true;
        upstream.set_protocol_version(Some(Era::V2026_07_28));
        let count = server.seen().len();
        let raw = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"resume/me\"}");
        let got = collect(upstream.post(raw, request("resume/me")).await.unwrap()).await;
        assert!(matches!(got[..], [Err(UpstreamError::Sse(_))]), "{got:?}");
        assert_eq!(server.seen().len(), count + 1);
    }

    #[tokio::test]
    async fn era_2026_sends_method_and_name_headers_and_keeps_no_session() {
        let server = TestServer::start().await;
        server.state().stateless = true;
        let upstream = HttpUpstream::new(&server.url, vec![]).unwrap();
        upstream.set_protocol_version(Some(Era::V2026_07_28));
        let raw = Bytes::from_static(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"get_weather\"}}",
        );
        let meta = PostMeta {
            method: "tools/call",
            name: Some("get_weather"),
            is_request: true,
        };
        let got = messages(upstream.post(raw.clone(), meta).await.unwrap()).await;
        assert_eq!(got.len(), 2);
        let seen = server.last();
        assert_eq!(seen.body, raw);
        assert_eq!(seen.header(HEADER_PROTOCOL_VERSION), Some("2026-07-28"));
        assert_eq!(seen.header(HEADER_METHOD), Some("tools/call"));
        assert_eq!(seen.header(HEADER_NAME), Some("get_weather"));

        let meta = PostMeta {
            method: "tools/call",
            name: Some("Hello, 世界"),
            is_request: true,
        };
        messages(upstream.post(raw, meta).await.unwrap()).await;
        assert_eq!(
            server.last().header(HEADER_NAME),
            Some("=?base64?SGVsbG8sIOS4lueVjA==?=")
        );

        let raw = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/list\"}");
        messages(upstream.post(raw, request("tools/list")).await.unwrap()).await;
        let seen = server.last();
        assert_eq!(seen.header(HEADER_METHOD), Some("tools/list"));
        assert_eq!(seen.header(HEADER_NAME), None);
        assert_eq!(upstream.session_id(), None);
        // close without a session sends nothing.
        let count = server.seen().len();
        upstream.close().await.unwrap();
        assert_eq!(server.seen().len(), count);
    }

    #[tokio::test]
    async fn failures_are_typed() {
        let server = TestServer::start().await;
        let upstream = initialized(&server)
            .await
            .with_timeout(Duration::from_millis(300));
        assert_eq!(
            upstream.session_id().as_deref(),
            Some("sess-1"),
            "with_timeout keeps the session"
        );
        let post = |method: &'static str| {
            let raw = format!("{{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"{method}\"}}");
            upstream.post(Bytes::from(raw), request(method))
        };
        let err = post("big").await.unwrap_err();
        assert!(matches!(err, UpstreamError::TooLarge), "{err:?}");
        let err = post("html").await.unwrap_err();
        assert!(
            matches!(err, UpstreamError::BadContentType(ref t) if t == "text/html"),
            "{err:?}"
        );
        let err = post("boom").await.unwrap_err();
        assert!(
            matches!(err, UpstreamError::Status { status: 500, ref body } if body == "boom"),
            "{err:?}"
        );
        let err = post("slow").await.unwrap_err();
        assert!(matches!(err, UpstreamError::Timeout), "{err:?}");

        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", closed.local_addr().unwrap());
        drop(closed);
        let nobody = HttpUpstream::new(&url, vec![]).unwrap();
        let err = nobody
            .post(Bytes::from_static(INIT), request("initialize"))
            .await
            .unwrap_err();
        assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    }

    #[tokio::test]
    async fn dropping_the_receiver_closes_the_stream() {
        let server = TestServer::start().await;
        let upstream = initialized(&server).await;
        let raw = Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"forever\"}");
        let mut rx = upstream.post(raw, request("forever")).await.unwrap();
        assert!(rx.recv().await.unwrap().is_ok());
        drop(rx);
        for _ in 0..500 {
            if server.state().cancelled {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the server never saw the stream close");
    }

    #[tokio::test]
    async fn the_listen_stream_is_optional() {
        let server = TestServer::start().await;
        let upstream = initialized(&server).await;
        assert!(upstream.open_listen_stream().await.unwrap().is_none());
        server.state().listen = true;
        let rx = upstream.open_listen_stream().await.unwrap().unwrap();
        let got = messages(rx).await;
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[1],
            Bytes::from_static(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"roots/list\"}")
        );
        let seen = server.last();
        assert_eq!(seen.method, Method::GET);
        assert_eq!(seen.header("accept"), Some("text/event-stream"));
        assert_eq!(seen.header(HEADER_SESSION_ID), Some("sess-1"));
    }

    #[test]
    fn urls_and_headers_are_checked() {
        let tls = HttpUpstream::new("https://example.com/mcp", vec![]).unwrap();
        assert_eq!(tls.url().scheme_str(), Some("https"));
        for bad in [
            "ftp://example.com/",
            "example.com/mcp",
            "http://user:pw@example.com/",
            "not a url",
            "http:///x",
        ] {
            let err = HttpUpstream::new(bad, vec![]).unwrap_err();
            assert!(
                matches!(err, UpstreamError::InvalidUrl(_)),
                "{bad}: {err:?}"
            );
        }
        for (name, value) in [
            ("Mcp-Session-Id", "x"),
            ("Accept", "*/*"),
            ("bad name", "x"),
            ("X-Ok", "a\nb"),
        ] {
            let err = HttpUpstream::new("http://127.0.0.1:1/", vec![(name.into(), value.into())])
                .unwrap_err();
            assert!(
                matches!(err, UpstreamError::InvalidHeader(_)),
                "{name}: {err:?}"
            );
        }
        let ok = HttpUpstream::new(
            "http://127.0.0.1:1",
            vec![("Authorization".into(), "secret".into())],
        )
        .unwrap();
        assert!(!format!("{ok:?}").contains("secret"));
    }

    #[test]
    fn base64_and_mcp_name_encoding_follow_the_spec_examples() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in vectors {
            assert_eq!(base64_standard(input.as_bytes()), expected);
        }
        let name = |n: &str| encode_name(n).unwrap().to_str().unwrap().to_owned();
        assert_eq!(name("us-west1"), "us-west1");
        assert_eq!(
            name("file:///projects/myapp/config.json"),
            "file:///projects/myapp/config.json"
        );
        assert_eq!(name(" padded "), "=?base64?IHBhZGRlZCA=?=");
        assert_eq!(name("line1\nline2"), "=?base64?bGluZTEKbGluZTI=?=");
        assert_eq!(
            name("=?base64?literal?="),
            "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?="
        );
    }

    #[test]
    fn responses_are_told_from_requests_and_notifications() {
        assert!(is_response(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}"
        ));
        assert!(is_response(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":1}}"
        ));
        assert!(!is_response(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"sampling/createMessage\"}"
        ));
        assert!(!is_response(
            b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}"
        ));
        assert!(is_response(
            b"[{\"jsonrpc\":\"2.0\",\"method\":\"n\"},{\"id\":2,\"result\":{}}]"
        ));
        assert!(!is_response(b"{\"id\":1,\"result\":{}"));
    }

    #[test]
    fn trimming_removes_only_surrounding_json_whitespace() {
        assert_eq!(
            trim_json(Bytes::from_static(b" \r\n\t{ \"a\" : 1 }\n ")),
            Bytes::from_static(b"{ \"a\" : 1 }")
        );
        assert!(trim_json(Bytes::from_static(b" \n")).is_empty());
        assert_eq!(
            trim_json(Bytes::from_static(b"\x0c{}")),
            Bytes::from_static(b"\x0c{}")
        );
    }
}
