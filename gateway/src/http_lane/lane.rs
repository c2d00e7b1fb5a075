//! The HTTP lane: `trustos serve` reverse-proxies `/http/NAME/…` to the API configured as
//! `[http.NAME]`, so an agent points its HTTP client at the gateway and never holds a wallet.
//!
//! A request, in order (the first step that refuses answers the agent):
//!
//! 1. the agent's own payment (`PAYMENT-SIGNATURE`, `X-PAYMENT`) or a forged `Trust-*` header
//!    is refused: money moves only through the gateway's adapter; so is a header some servers
//!    route by instead of the request line (`X-Original-URL`, `X-HTTP-Method-Override`, …);
//! 2. the path after `/http/NAME` is joined under the configured base URL with the one
//!    normalization ([`super::url`]) that routing and fingerprints share;
//! 3. the request is classified by the profile's `http` routes and decided like an MCP call:
//!    low risk passes, high risk needs an allow decision (forwarded in `Trust-Decision`), a
//!    paid route is sent unpaid first to learn its price;
//! 4. a 402 starts the payment flow: read the offer (x402 v2 header or v1 body), choose an
//!    offer the profile allows, decide with the payment terms bound into the fingerprint,
//!    verify the decision, have the x402 adapter sign exactly those terms, retry once;
//! 5. the answer goes back with `Trust-Receipt` (the signed receipt) and, when money moved,
//!    `Trust-Settlement` (the decoded settlement); the upstream's own `Trust-*` headers are
//!    dropped. A timeout, a second 402 or an unreadable
//!    settlement is "outcome unknown": recorded, receipted as such, never paid twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use trustos_adapters::x402::report_of;
use trustos_adapters::x402::wire::{self, PaymentRequired};
use trustos_kernel::canonical::Digest;
use trustos_kernel::objects::Settlement;
use trustos_kernel::timestamp::Timestamp;

use super::client::{UpstreamClient, build_client};
use super::url::{NormalizedUrl, join_upstream, normalize};
use crate::config::GatewayConfig;
use crate::enforce::pay::{PaidOutcome, PaymentVerdict};
use crate::enforce::{
    CallEnd, Enforcer, HttpTarget, IssuedReceipt, Reason, ToolCall, Verdict, now,
};

/// Header carrying the signed decision to the upstream.
pub const HEADER_DECISION: &str = "trust-decision";
/// Header carrying the signed receipt back to the agent.
pub const HEADER_RECEIPT: &str = "trust-receipt";
/// Header carrying the decoded settlement back to the agent (compact JSON).
pub const HEADER_SETTLEMENT: &str = "trust-settlement";
/// Header naming the decision id back to the agent.
pub const HEADER_DECISION_ID: &str = "trust-decision-id";

/// Largest upstream response body the lane relays, in bytes.
const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Headers never forwarded either way (RFC 9110 §7.6.1), plus the gateway's own bearer token.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "authorization",
];

/// Request headers that some servers and frameworks route by in place of the request line
/// (IIS URL Rewrite and old Symfony read the URL from `X-Original-URL` / `X-Rewrite-URL`;
/// method-override middlewares the method from the others): with one of them the request run
/// upstream would not be the one classified and decided.
const ROUTING_OVERRIDES: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// One configured API.
struct Upstream {
    base: NormalizedUrl,
    client: UpstreamClient,
    fingerprint_headers: Vec<String>,
}

/// A request on the lane, as the front read it.
pub struct LaneRequest {
    /// The lane (`[http.NAME]`).
    pub lane: String,
    /// Tenant of the caller's token.
    pub tenant: String,
    /// Agent of the caller's token.
    pub agent: String,
    /// Method.
    pub method: Method,
    /// Path and query after `/http/NAME` (starting with `/`, or empty).
    pub rest: String,
    /// The agent's headers.
    pub headers: HeaderMap,
    /// The agent's body.
    pub body: Bytes,
}

/// What the lane answers the agent.
pub type LaneResponse = Response<Full<Bytes>>;

/// The lane: upstream clients, the x402 adapter, and the enforcer that decides.
pub struct HttpLane {
    enforcer: Arc<Enforcer>,
    upstreams: BTreeMap<String, Upstream>,
    answer_timeout: Duration,
    call_timeout: Duration,
}

/// Why the lane could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LaneSetupError(String);

impl HttpLane {
    /// The lane for `config`'s `[http.*]` APIs and `[x402]` rail.
    pub fn new(
        enforcer: Arc<Enforcer>,
        config: &GatewayConfig,
        home: &Path,
    ) -> Result<Self, LaneSetupError> {
        let mut upstreams = BTreeMap::new();
        for (name, lane) in &config.http {
            let base = normalize(&lane.url)
                .map_err(|err| LaneSetupError(format!("[http.{name}].url: {err}")))?;
            if base.query.is_some() {
                return Err(LaneSetupError(format!(
                    "[http.{name}].url must not have a query: the agent's path and query are joined under it"
                )));
            }
            let roots = lane.ca_file.as_ref().map(|file| home.join(file));
            let client = build_client(roots.as_deref())
                .map_err(|err| LaneSetupError(format!("[http.{name}]: {err}")))?;
            upstreams.insert(
                name.clone(),
                Upstream {
                    base,
                    client,
                    fingerprint_headers: lane
                        .fingerprint_headers
                        .iter()
                        .map(|h| h.to_ascii_lowercase())
                        .collect(),
                },
            );
        }
        let answer_timeout = Duration::from_secs(
            config
                .x402
                .as_ref()
                .map_or(60, |x402| x402.answer_timeout_seconds)
                .max(1),
        );
        Ok(Self {
            enforcer,
            upstreams,
            answer_timeout,
            call_timeout: Duration::from_secs(config.gateway.call_timeout_seconds.max(1)),
        })
    }

    /// Whether `name` is a configured API.
    pub fn has(&self, name: &str) -> bool {
        self.upstreams.contains_key(name)
    }

    /// Handles one agent request. Never panics; every refusal has a reason code.
    pub async fn handle(&self, request: LaneRequest) -> LaneResponse {
        match self.run(request).await {
            Ok(response) => response,
            Err(refusal) => refusal.into_response(),
        }
    }

    async fn run(&self, request: LaneRequest) -> Result<LaneResponse, Refusal> {
        let Some(upstream) = self.upstreams.get(&request.lane) else {
            return Err(Refusal::plain(
                StatusCode::NOT_FOUND,
                "HTTP_NOT_FOUND",
                &format!("no HTTP API named {:?}", request.lane),
            ));
        };
        let target = join_upstream(&upstream.base, &request.rest).map_err(|err| {
            Refusal::plain(StatusCode::BAD_REQUEST, err.reason_code(), &err.to_string())
        })?;
        let arguments = arguments_of(
            &request.headers,
            &upstream.fingerprint_headers,
            &request.body,
        )?;
        let call = ToolCall {
            tenant: request.tenant.clone(),
            agent: request.agent.clone(),
            session: None,
            server: request.lane.clone(),
            tool: format!("{} {}", request.method, target.path),
            arguments,
            http: Some(HttpTarget {
                method: request.method.as_str().to_owned(),
                url: target.as_string(),
                host: target.host.clone(),
                path: target.path.clone(),
            }),
            payment: None,
        };

        // 1. Nothing of the agent's own may pay or pose as the gateway.
        if let Err(err) =
            wire::refuse_agent_payment_headers(request.headers.keys().map(HeaderName::as_str))
        {
            return Err(self
                .refuse_logged(&call, err.reason_code(), StatusCode::FORBIDDEN)
                .await);
        }
        if request.headers.keys().any(is_trust_header) {
            return Err(self
                .refuse_logged(&call, "HTTP_TRUST_HEADER_FORGED", StatusCode::FORBIDDEN)
                .await);
        }
        if request
            .headers
            .keys()
            .any(|name| ROUTING_OVERRIDES.contains(&name.as_str()))
        {
            return Err(self
                .refuse_logged(&call, "HTTP_ROUTING_OVERRIDE", StatusCode::BAD_REQUEST)
                .await);
        }

        let outgoing = Outgoing {
            client: &upstream.client,
            method: request.method.clone(),
            url: target.as_string(),
            headers: forwardable(&request.headers),
            body: request.body.clone(),
        };

        // 2. Decide the unpaid request (the enforcer passes a paid route's first, unpaid
        // request: its 402 is the price).
        let started_at = now().map_err(Refusal::internal)?;
        let decision = match self.settle_verdict(&call).await? {
            Decided::Pass => None,
            Decided::Forward { decision_id, jws } => Some((decision_id, jws)),
        };
        let decision_header: Vec<(&str, &str)> = decision
            .iter()
            .map(|(_, jws)| (HEADER_DECISION, jws.as_str()))
            .collect();
        let answer = outgoing.send(&decision_header, self.call_timeout).await;

        let answer = match (answer, decision) {
            (Ok(answer), decision) if answer.status == StatusCode::PAYMENT_REQUIRED => {
                if let Some((decision_id, _)) = decision {
                    // The decided request ran and asked for money: its receipt says so.
                    let digest = answer.result_digest();
                    self.enforcer
                        .finish(&decision_id, CallEnd::ToolError, Some(digest), started_at)
                        .await
                        .map_err(Refusal::internal)?;
                }
                return self.pay(call, &outgoing, answer).await;
            }
            (Ok(answer), None) => return Ok(answer.into_response(None, None)),
            (Ok(answer), Some((decision_id, _))) => {
                let end = if answer.status.is_success() {
                    CallEnd::Completed
                } else {
                    CallEnd::ToolError
                };
                let receipt = self
                    .enforcer
                    .finish(&decision_id, end, Some(answer.result_digest()), started_at)
                    .await
                    .map_err(Refusal::internal)?;
                (answer, receipt, decision_id)
            }
            (Err(err), Some((decision_id, _))) => {
                let receipt = self
                    .enforcer
                    .finish(&decision_id, CallEnd::Unknown, None, started_at)
                    .await
                    .map_err(Refusal::internal)?;
                return Err(Refusal::upstream(err, Some(receipt), Some(decision_id)));
            }
            (Err(err), None) => return Err(Refusal::upstream(err, None, None)),
        };
        let (answer, receipt, decision_id) = answer;
        Ok(answer.into_response(Some((&decision_id, &receipt)), None))
    }

    /// The decision for `call`, waiting out a hold; a refusal when it is not an allow.
    async fn settle_verdict(&self, call: &ToolCall) -> Result<Decided, Refusal> {
        let mut verdict = self
            .enforcer
            .decide(call.clone())
            .await
            .map_err(Refusal::internal)?;
        loop {
            match verdict {
                Verdict::Pass { .. } => return Ok(Decided::Pass),
                Verdict::Forward {
                    decision_id,
                    decision,
                } => {
                    return Ok(Decided::Forward {
                        decision_id,
                        jws: decision,
                    });
                }
                Verdict::Refuse {
                    decision_id,
                    decision,
                    reasons,
                } => {
                    return Err(Refusal::from(RefusalBody {
                        status: StatusCode::FORBIDDEN,
                        reasons,
                        message: "refused by policy".into(),
                        decision_id,
                        decision,
                        receipt: None,
                    }));
                }
                Verdict::Hold { decision_id, .. } => {
                    tracing::info!(%decision_id, "HTTP request held for approval");
                    verdict = self
                        .enforcer
                        .await_hold(&decision_id)
                        .await
                        .map_err(Refusal::internal)?;
                }
            }
        }
    }

    /// Signs and logs a deny the lane decided, and the refusal that carries it.
    async fn refuse_logged(&self, call: &ToolCall, code: &str, status: StatusCode) -> Refusal {
        match self.enforcer.refuse_call(call, code).await {
            Ok(Verdict::Refuse {
                decision_id,
                decision,
                reasons,
            }) => Refusal::from(RefusalBody {
                status,
                reasons,
                message: "refused".into(),
                decision_id,
                decision,
                receipt: None,
            }),
            Ok(_) => Refusal::plain(status, code, "refused"),
            Err(err) => Refusal::internal(err),
        }
    }

    /// The payment flow for a 402: the daemon's payer chooses, decides, verifies and signs
    /// ([`Enforcer::authorize_payment`]); the lane retries once and reads the settlement.
    async fn pay(
        &self,
        call: ToolCall,
        outgoing: &Outgoing<'_>,
        answer: Answer,
    ) -> Result<LaneResponse, Refusal> {
        let required = match payment_required(&answer) {
            Ok(required) => required,
            Err(code) => {
                return Err(self
                    .refuse_logged(&call, code, StatusCode::BAD_GATEWAY)
                    .await);
            }
        };
        let verdict = self
            .enforcer
            .authorize_payment(call, &required)
            .await
            .map_err(Refusal::internal)?;
        let (decision_id, decision, header_name, header_value) = match verdict {
            PaymentVerdict::Pay {
                decision_id,
                decision,
                header_name,
                header_value,
                ..
            } => (decision_id, decision, header_name, header_value),
            PaymentVerdict::Refuse {
                decision_id,
                decision,
                reasons,
                receipt,
            } => {
                let status = if reasons.iter().any(|r| r.code == "X402_NOT_CONFIGURED") {
                    StatusCode::PAYMENT_REQUIRED
                } else {
                    StatusCode::FORBIDDEN
                };
                return Err(Refusal::from(RefusalBody {
                    status,
                    reasons,
                    message: "payment refused".into(),
                    decision_id,
                    decision,
                    receipt,
                }));
            }
        };
        let started_at = now().map_err(Refusal::internal)?;
        let headers = [
            (HEADER_DECISION, decision.as_str()),
            (header_name.as_str(), header_value.as_str()),
        ];
        let retried = tokio::time::timeout(
            self.answer_timeout,
            outgoing.send(&headers, self.answer_timeout),
        )
        .await;
        self.conclude(decision_id, started_at, retried).await
    }

    /// Reads the paid retry's answer, records the settlement, and receipts the call.
    async fn conclude(
        &self,
        decision_id: String,
        started_at: Timestamp,
        retried: Result<Result<Answer, String>, tokio::time::error::Elapsed>,
    ) -> Result<LaneResponse, Refusal> {
        let (answer, outcome, problem) = match retried {
            Err(_) => (
                None,
                PaidOutcome::Unknown {
                    detail: "no answer to the paid retry in time".into(),
                },
                Some("X402_OUTCOME_UNKNOWN"),
            ),
            Ok(Err(err)) => (
                None,
                PaidOutcome::Unknown {
                    detail: format!("the paid retry failed: {err}"),
                },
                Some("X402_OUTCOME_UNKNOWN"),
            ),
            Ok(Ok(answer)) => {
                let (outcome, problem) = read_settlement(&answer);
                (Some(answer), outcome, problem)
            }
        };
        let served = answer.as_ref().is_some_and(|a| a.status.is_success());
        let digest = answer.as_ref().map(Answer::result_digest);
        let concluded = self
            .enforcer
            .conclude_payment(&decision_id, outcome.clone(), served, digest, started_at)
            .await
            .map_err(Refusal::internal)?;
        match (answer, problem) {
            (Some(answer), None) => {
                let settled = concluded
                    .settlement
                    .as_ref()
                    .map(|s| settlement_json(s, &concluded.pay_to));
                Ok(answer.into_response(Some((&decision_id, &concluded.receipt)), settled))
            }
            (Some(answer), Some("X402_OUTCOME_UNKNOWN")) if served => {
                Ok(answer.into_response(Some((&decision_id, &concluded.receipt)), None))
            }
            (_, problem) => {
                let code = problem.unwrap_or("X402_OUTCOME_UNKNOWN");
                let status = if code == "X402_OUTCOME_UNKNOWN" {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                Err(Refusal::from(RefusalBody {
                    status,
                    reasons: vec![Reason::new(code)],
                    message: format!("payment outcome: {outcome:?}"),
                    decision_id: Some(decision_id),
                    decision: None,
                    receipt: Some(concluded.receipt),
                }))
            }
        }
    }
}

/// What a paid retry's answer says about the payment, and the problem code when it is not a
/// clean settlement. A second 402 is never paid again; only an explicit failure report says
/// nothing moved.
fn read_settlement(answer: &Answer) -> (PaidOutcome, Option<&'static str>) {
    if answer.repeated(wire::HEADER_PAYMENT_RESPONSE)
        || answer.repeated(wire::HEADER_X_PAYMENT_RESPONSE)
    {
        return (
            PaidOutcome::Unknown {
                detail: "unreadable settlement: the settlement header is repeated".into(),
            },
            Some("X402_HEADER_REPEATED"),
        );
    }
    let settlement = wire::settlement_from_http(
        answer.header(wire::HEADER_PAYMENT_RESPONSE),
        answer.header(wire::HEADER_X_PAYMENT_RESPONSE),
    );
    match settlement {
        Err(err) => (
            PaidOutcome::Unknown {
                detail: format!("unreadable settlement: {}", err.reason_code()),
            },
            Some(err.reason_code()),
        ),
        Ok(settlement) if answer.status == StatusCode::PAYMENT_REQUIRED => {
            let outcome = match &settlement {
                Some(s) if !s.success => PaidOutcome::from(report_of(Some(s))),
                _ => PaidOutcome::Unknown {
                    detail: "the server answered 402 again after payment".into(),
                },
            };
            (outcome, Some("X402_PAYMENT_REJECTED"))
        }
        Ok(settlement) => {
            let outcome = PaidOutcome::from(report_of(settlement.as_ref()));
            let problem = match &outcome {
                PaidOutcome::Settled { .. } => None,
                PaidOutcome::Failed { .. } => Some("X402_SETTLEMENT_FAILED"),
                PaidOutcome::Unknown { .. } => Some("X402_OUTCOME_UNKNOWN"),
            };
            (outcome, problem)
        }
    }
}

/// A decided request: pass (low risk, no decision) or forward with a consumed allow.
enum Decided {
    Pass,
    Forward { decision_id: String, jws: String },
}

/// The request as it goes upstream, sendable twice (unpaid, then paid).
struct Outgoing<'a> {
    client: &'a UpstreamClient,
    method: Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Outgoing<'_> {
    async fn send(&self, extra: &[(&str, &str)], timeout: Duration) -> Result<Answer, String> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        for (name, value) in extra {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(self.body.clone()))
            .map_err(|err| format!("cannot build the upstream request: {err}"))?;
        let response = tokio::time::timeout(timeout, self.client.request(request))
            .await
            .map_err(|_| "the upstream did not answer in time".to_owned())?
            .map_err(|err| format!("the upstream request failed: {err}"))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(timeout, Limited::new(body, MAX_RESPONSE_BYTES).collect())
            .await
            .map_err(|_| "the upstream body did not arrive in time".to_owned())?
            .map_err(|err| format!("the upstream body could not be read: {err}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An upstream answer, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    /// Whether the answer carries `name` more than once.
    fn repeated(&self, name: &str) -> bool {
        self.headers.get_all(name).iter().nth(1).is_some()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(HeaderValue::as_bytes)
    }

    /// What a receipt binds of the answer: its status and the SHA-256 of its body.
    fn result_digest(&self) -> Digest {
        let value = json!({
            "status": self.status.as_u16(),
            "bodySha256": Digest::of(&self.body).to_string(),
        });
        // A two-member object of a number and a string always canonicalizes.
        Digest::of_canonical_value(&value).unwrap_or_else(|_| Digest::of(&self.body))
    }

    fn into_response(
        self,
        receipt: Option<(&str, &IssuedReceipt)>,
        settlement: Option<String>,
    ) -> LaneResponse {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        for (name, value) in &self.headers {
            // `Trust-*` headers come from the gateway only: an upstream's would pose as a
            // receipt or a settlement (unsigned) the agent never got.
            if !HOP_BY_HOP.contains(&name.as_str()) && !is_trust_header(name) {
                headers.append(name, value.clone());
            }
        }
        if let Some((decision_id, receipt)) = receipt {
            insert(headers, HEADER_DECISION_ID, decision_id);
            insert(headers, HEADER_RECEIPT, &receipt.receipt);
        }
        if let Some(settlement) = settlement {
            insert(headers, HEADER_SETTLEMENT, &settlement);
        }
        response
    }
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.insert(HeaderName::from_static(name), value);
        }
        Err(_) => tracing::error!(header = name, "a value is not a header value"),
    }
}

/// The settlement the agent sees in `Trust-Settlement`.
fn settlement_json(settlement: &Settlement, pay_to: &str) -> String {
    json!({
        "rail": settlement.rail,
        "transaction": settlement.reference,
        "network": settlement.network,
        "asset": settlement.asset,
        "amount": settlement.amount,
        "payTo": pay_to,
    })
    .to_string()
}

/// Whether `name` is one of the gateway's own `Trust-*` headers (names are lower case).
fn is_trust_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("trust-")
}

/// The agent's headers that go upstream: all but hop-by-hop ones and its gateway token.
fn forwardable(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            out.append(name, value.clone());
        }
    }
    out
}

/// What a decision binds of an HTTP request besides method and URL: the headers that matter
/// (`Content-Type` and the configured ones) and the body (JSON as a value, anything else by
/// its SHA-256).
fn arguments_of(
    headers: &HeaderMap,
    fingerprint_headers: &[String],
    body: &Bytes,
) -> Result<Value, Refusal> {
    let mut bound = serde_json::Map::new();
    for name in
        std::iter::once("content-type").chain(fingerprint_headers.iter().map(String::as_str))
    {
        let values: Vec<Value> = headers
            .get_all(name)
            .iter()
            .map(|v| Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        if !values.is_empty() {
            bound.insert(name.to_owned(), Value::Array(values));
        }
    }
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            essence == "application/json" || essence.ends_with("+json")
        });
    let body_value = if body.is_empty() {
        Value::Null
    } else if is_json {
        trustos_kernel::strict_json::parse(body).map_err(|err| {
            Refusal::plain(
                StatusCode::BAD_REQUEST,
                "HTTP_BODY_INVALID_JSON",
                &format!("the JSON body cannot be read strictly: {err}"),
            )
        })?
    } else {
        json!({"sha256": Digest::of(body).to_string(), "length": body.len()})
    };
    Ok(json!({"headers": bound, "body": body_value}))
}

/// The payment request of a 402: the v2 header, else the v1 body.
fn payment_required(answer: &Answer) -> Result<PaymentRequired, &'static str> {
    // Two PAYMENT-REQUIRED headers are two offers readers would pick between differently.
    if answer.repeated(wire::HEADER_PAYMENT_REQUIRED) {
        return Err("X402_HEADER_REPEATED");
    }
    wire::payment_required_from_http(answer.header(wire::HEADER_PAYMENT_REQUIRED), &answer.body)
        .map_err(|err| err.reason_code())
}

/// A refusal of the lane: a JSON body with reason codes, the signed decision when there is
/// one, and the receipt when the call got one.
struct RefusalBody {
    status: StatusCode,
    reasons: Vec<Reason>,
    message: String,
    decision_id: Option<String>,
    decision: Option<String>,
    receipt: Option<IssuedReceipt>,
}

/// A boxed [`RefusalBody`]: refusals travel in `Result`s and should stay small.
struct Refusal(Box<RefusalBody>);

impl From<RefusalBody> for Refusal {
    fn from(body: RefusalBody) -> Self {
        Self(Box::new(body))
    }
}

impl Refusal {
    fn plain(status: StatusCode, code: &str, message: &str) -> Self {
        Self::from(RefusalBody {
            status,
            reasons: vec![Reason::new(code)],
            message: message.to_owned(),
            decision_id: None,
            decision: None,
            receipt: None,
        })
    }

    fn internal<E: std::fmt::Display>(err: E) -> Self {
        tracing::error!(error = %err, "the HTTP lane could not decide");
        Self::plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "GATEWAY_UNAVAILABLE",
            "the gateway could not decide this request",
        )
    }

    fn upstream(err: String, receipt: Option<IssuedReceipt>, decision_id: Option<String>) -> Self {
        Self::from(RefusalBody {
            status: StatusCode::BAD_GATEWAY,
            reasons: vec![Reason::new("HTTP_UPSTREAM_FAILED")],
            message: err,
            decision_id,
            decision: None,
            receipt,
        })
    }

    fn into_response(self) -> LaneResponse {
        let refusal = *self.0;
        let body = json!({
            "error": refusal.message,
            "reasons": refusal.reasons,
            "decisionId": refusal.decision_id,
            "decision": refusal.decision,
            "receipt": refusal.receipt.as_ref().map(|r| &r.receipt),
        });
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = refusal.status;
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(receipt) = &refusal.receipt {
            insert(response.headers_mut(), HEADER_RECEIPT, &receipt.receipt);
        }
        response
    }
}
