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
use trustos_adapters::x402::assets::{AssetRegistry, KnownAsset};
use trustos_adapters::x402::evm::{EvmSigner, checksum, parse_address};
use trustos_adapters::x402::wire::{self, PaymentRequired};
use trustos_adapters::x402::{X402Adapter, X402Payment, X402Terms, report_of};
use trustos_adapters::{Adapter, AdapterError, Allowances, SettlementReport};
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::objects::{Amount, Settlement};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

use super::client::{UpstreamClient, build_client};
use super::url::{NormalizedUrl, join_upstream, normalize};
use crate::config::{GatewayConfig, X402Config};
use crate::enforce::{
    CallEnd, CallPayment, Enforcer, HttpTarget, IssuedReceipt, Reason, ToolCall, Verdict, now,
};
use crate::policy::Compiled;
use crate::policy::profile::Risk;

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
    x402: Option<X402Adapter>,
    verifier: Verifier,
    max_timeout_seconds: u64,
    answer_timeout: Duration,
    call_timeout: Duration,
}

/// Why the lane could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LaneSetupError(String);

/// Reads the x402 payer key from the file or environment variable `gateway.toml` names.
fn load_signer(config: &X402Config, home: &Path) -> Result<EvmSigner, LaneSetupError> {
    let secret = match (&config.key_file, &config.key_env) {
        (Some(file), None) => {
            let path = home.join(file);
            std::fs::read_to_string(&path).map_err(|err| {
                LaneSetupError(format!("[x402] key_file {}: {err}", path.display()))
            })?
        }
        (None, Some(variable)) => std::env::var(variable).map_err(|_| {
            LaneSetupError(format!(
                "[x402] key_env: the variable {variable} is not set"
            ))
        })?,
        _ => {
            return Err(LaneSetupError(
                "[x402] needs exactly one of key_file or key_env".into(),
            ));
        }
    };
    // The error names the source, never the secret.
    EvmSigner::from_hex(&secret)
        .map_err(|err| LaneSetupError(format!("[x402] payer key: {}", err.reason_code())))
}

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
        let (x402, max_timeout_seconds, answer_timeout) = match &config.x402 {
            Some(x402) => {
                let signer = load_signer(x402, home)?;
                let extra = x402
                    .assets
                    .iter()
                    .map(|asset| {
                        Ok(KnownAsset {
                            network: asset.network.clone(),
                            address: parse_address(&asset.address).map_err(|err| {
                                LaneSetupError(format!("[x402] asset {}: {err}", asset.address))
                            })?,
                            symbol: asset.symbol.to_ascii_lowercase(),
                            eip712_name: asset.eip712_name.clone(),
                            eip712_version: asset.eip712_version.clone(),
                        })
                    })
                    .collect::<Result<Vec<_>, LaneSetupError>>()?;
                (
                    Some(X402Adapter::new(
                        signer,
                        AssetRegistry::with_defaults(extra),
                    )),
                    x402.max_timeout_seconds,
                    Duration::from_secs(x402.answer_timeout_seconds.max(1)),
                )
            }
            None => (None, 0, Duration::from_secs(60)),
        };
        let verifier = Verifier::new(TrustedKeys::new([enforcer.key().public().clone()]));
        Ok(Self {
            enforcer,
            upstreams,
            x402,
            verifier,
            max_timeout_seconds,
            answer_timeout,
            call_timeout: Duration::from_secs(config.gateway.call_timeout_seconds.max(1)),
        })
    }

    /// Whether `name` is a configured API.
    pub fn has(&self, name: &str) -> bool {
        self.upstreams.contains_key(name)
    }

    /// The payer address, when the x402 rail is configured.
    pub fn payer(&self) -> Option<String> {
        self.x402.as_ref().map(|adapter| checksum(&adapter.payer()))
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

        // 2. Decide the unpaid request (a paid route is sent unpaid first: its 402 is the price).
        let compiled = self.enforcer.profile();
        let risk = compiled
            .classify(&call.policy_call())
            .map_or(Risk::High, |route| route.risk);
        let started_at = now().map_err(Refusal::internal)?;
        let decision = if risk == Risk::Paid {
            None
        } else {
            match self.settle_verdict(&call).await? {
                Decided::Pass => None,
                Decided::Forward { decision_id, jws } => Some((decision_id, jws)),
            }
        };
        let answer = outgoing
            .send(
                decision
                    .as_ref()
                    .map(|(_, jws)| (HEADER_DECISION, jws.as_str())),
                self.call_timeout,
            )
            .await;

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
                return self.pay(call, &compiled, &outgoing, answer).await;
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

    /// The payment flow for a 402: choose, decide, verify, sign, retry once, receipt.
    async fn pay(
        &self,
        mut call: ToolCall,
        compiled: &Compiled,
        outgoing: &Outgoing<'_>,
        answer: Answer,
    ) -> Result<LaneResponse, Refusal> {
        let Some(adapter) = &self.x402 else {
            return Err(self
                .refuse_logged(&call, "X402_NOT_CONFIGURED", StatusCode::PAYMENT_REQUIRED)
                .await);
        };
        let required = match payment_required(&answer) {
            Ok(required) => required,
            Err(code) => {
                return Err(self
                    .refuse_logged(&call, code, StatusCode::BAD_GATEWAY)
                    .await);
            }
        };
        let allowances = allowances_of(compiled, self.max_timeout_seconds);
        let terms = match adapter.prepare(&required, &allowances) {
            Ok(terms) => terms,
            Err(err) => {
                return Err(self
                    .refuse_logged(&call, err.reason_code(), StatusCode::FORBIDDEN)
                    .await);
            }
        };
        let bound = adapter.bound_terms(&terms).map_err(Refusal::adapter)?;
        call.payment = Some(CallPayment {
            terms: bound.clone(),
            asset_symbol: terms.asset.symbol.clone(),
        });
        let Decided::Forward { decision_id, jws } = self.settle_verdict(&call).await? else {
            // Shadow mode lets a denied call pass, but money never moves without an allow.
            return Err(self
                .refuse_logged(&call, "PAYMENT_NOT_ALLOWED", StatusCode::FORBIDDEN)
                .await);
        };
        let started_at = now().map_err(Refusal::internal)?;
        let payment = match self.authorize(adapter, &call, &terms, &jws).await {
            Ok(payment) => payment,
            Err(err) => {
                // Nothing left the gateway: the decision's reservation is released.
                let receipt = self
                    .enforcer
                    .finish(&decision_id, CallEnd::NotForwarded, None, started_at)
                    .await
                    .map_err(Refusal::internal)?;
                let mut refusal = Refusal::adapter(err);
                refusal.0.receipt = Some(receipt);
                refusal.0.decision_id = Some(decision_id);
                return Err(refusal);
            }
        };
        let header = payment.header_value();
        let retried = tokio::time::timeout(
            self.answer_timeout,
            outgoing.send(
                Some((payment.header_name(), header.as_str())),
                self.answer_timeout,
            ),
        )
        .await;
        self.conclude(adapter, &terms, &payment, decision_id, started_at, retried)
            .await
    }

    async fn authorize(
        &self,
        adapter: &X402Adapter,
        call: &ToolCall,
        terms: &X402Terms,
        jws: &str,
    ) -> Result<X402Payment, AdapterError> {
        let at = now().map_err(|err| AdapterError::Internal(err.to_string()))?;
        let request = call
            .fingerprint(None)
            .map_err(|err| AdapterError::Internal(err.to_string()))?;
        let mut bound = request.clone();
        bound.payment = Some(adapter.bound_terms(terms)?);
        let expected = bound
            .digest()
            .map_err(|err| AdapterError::Internal(err.to_string()))?;
        let verified = self
            .verifier
            .verify_decision(jws, &expected, at)
            .map_err(|err| AdapterError::DecisionNotInForce(err.reason_code().to_owned()))?;
        adapter
            .authorize(&**self.enforcer.store(), &verified, &request, terms, at)
            .await
    }

    /// Reads the paid retry's answer, records the settlement, and receipts the call.
    async fn conclude(
        &self,
        adapter: &X402Adapter,
        terms: &X402Terms,
        payment: &X402Payment,
        decision_id: String,
        started_at: Timestamp,
        retried: Result<Result<Answer, String>, tokio::time::error::Elapsed>,
    ) -> Result<LaneResponse, Refusal> {
        let ledger = &**self.enforcer.store();
        let (answer, report, problem) = match retried {
            Err(_) => (
                None,
                SettlementReport::Unknown {
                    detail: "no answer to the paid retry in time".into(),
                },
                Some("X402_OUTCOME_UNKNOWN"),
            ),
            Ok(Err(err)) => (
                None,
                SettlementReport::Unknown {
                    detail: format!("the paid retry failed: {err}"),
                },
                Some("X402_OUTCOME_UNKNOWN"),
            ),
            Ok(Ok(answer)) => {
                let settlement = wire::settlement_from_http(
                    answer.header(wire::HEADER_PAYMENT_RESPONSE),
                    answer.header(wire::HEADER_X_PAYMENT_RESPONSE),
                );
                match settlement {
                    Err(err) => (
                        Some(answer),
                        SettlementReport::Unknown {
                            detail: format!("unreadable settlement: {}", err.reason_code()),
                        },
                        Some(err.reason_code()),
                    ),
                    Ok(settlement) if answer.status == StatusCode::PAYMENT_REQUIRED => {
                        // Paid and asked again: never a second signature. Only an explicit
                        // failure report says nothing moved.
                        let report = match &settlement {
                            Some(s) if !s.success => report_of(Some(s)),
                            _ => SettlementReport::Unknown {
                                detail: "the server answered 402 again after payment".into(),
                            },
                        };
                        (Some(answer), report, Some("X402_PAYMENT_REJECTED"))
                    }
                    Ok(settlement) => {
                        let report = report_of(settlement.as_ref());
                        let problem = match &report {
                            SettlementReport::Settled { .. } => None,
                            SettlementReport::Failed { .. } => Some("X402_SETTLEMENT_FAILED"),
                            SettlementReport::Unknown { .. } => Some("X402_OUTCOME_UNKNOWN"),
                        };
                        (Some(answer), report, problem)
                    }
                }
            }
        };
        if let Err(err) = adapter.report(ledger, &decision_id, &report).await {
            tracing::error!(%decision_id, error = %err, "could not record a payment's outcome");
        }
        let (end, settlement) = match &report {
            SettlementReport::Settled { reference, network } => (
                CallEnd::Completed,
                Some(Settlement {
                    rail: adapter.rail().to_owned(),
                    reference: reference.clone(),
                    network: network.clone(),
                    asset: checksum(&terms.asset.address),
                    amount: Amount::from(terms.amount),
                }),
            ),
            // A signed authorization can still settle until validBefore: keep the budget.
            SettlementReport::Failed { .. } => (CallEnd::ToolError, None),
            SettlementReport::Unknown { .. }
                if answer.as_ref().is_some_and(|a| a.status.is_success()) =>
            {
                // Served without a readable settlement: count the spend.
                (CallEnd::Completed, None)
            }
            SettlementReport::Unknown { .. } => (CallEnd::Unknown, None),
        };
        let digest = answer.as_ref().map(Answer::result_digest);
        let receipt = self
            .enforcer
            .finish_paid(&decision_id, end, digest, started_at, settlement.clone())
            .await
            .map_err(Refusal::internal)?;
        tracing::info!(
            %decision_id,
            valid_before = payment.valid_before,
            outcome = ?report,
            "x402 payment concluded"
        );
        match (answer, problem) {
            (Some(answer), None) => {
                let settled = settlement.as_ref().map(|_| settlement_json(&report, terms));
                Ok(answer.into_response(Some((&decision_id, &receipt)), settled))
            }
            (Some(answer), Some("X402_OUTCOME_UNKNOWN")) if answer.status.is_success() => {
                Ok(answer.into_response(Some((&decision_id, &receipt)), None))
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
                    message: format!("payment outcome: {report:?}"),
                    decision_id: Some(decision_id),
                    decision: None,
                    receipt: Some(receipt),
                }))
            }
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
    async fn send(&self, extra: Option<(&str, &str)>, timeout: Duration) -> Result<Answer, String> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(&self.url);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        if let Some((name, value)) = extra {
            builder = builder.header(name, value);
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
fn settlement_json(report: &SettlementReport, terms: &X402Terms) -> String {
    let (reference, network) = match report {
        SettlementReport::Settled { reference, network } => (reference.as_str(), network.as_str()),
        _ => ("", ""),
    };
    json!({
        "rail": "x402",
        "transaction": reference,
        "network": network,
        "asset": checksum(&terms.asset.address),
        "amount": terms.amount.to_string(),
        "payTo": checksum(&terms.pay_to),
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
    wire::payment_required_from_http(answer.header(wire::HEADER_PAYMENT_REQUIRED), &answer.body)
        .map_err(|err| err.reason_code())
}

/// What the active profile lets the x402 adapter choose among offers.
fn allowances_of(compiled: &Compiled, max_timeout_seconds: u64) -> Allowances {
    let profile = &compiled.profile;
    Allowances {
        schemes: vec!["exact".to_owned()],
        networks: profile.networks.allow.clone().unwrap_or_default(),
        denied_networks: profile.networks.deny.clone(),
        assets: profile.assets.allow.clone().unwrap_or_default(),
        denied_assets: profile.assets.deny.clone(),
        max_amount: profile
            .amounts
            .iter()
            .filter_map(|bounds| {
                let max = bounds.max.as_ref()?.parse().ok()?;
                Some((bounds.asset.clone(), max))
            })
            .collect(),
        denied_payees: profile.payees.deny.clone(),
        allowed_payees: profile.payees.allow.clone().unwrap_or_default(),
        max_timeout_seconds,
    }
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

    fn adapter(err: AdapterError) -> Self {
        Self::plain(StatusCode::FORBIDDEN, err.reason_code(), &err.to_string())
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
