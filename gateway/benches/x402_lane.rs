//! Load harness for the x402 HTTP lane: the time `trustos serve` adds to a paid request
//! (decision, EIP-712 signature, retry, receipt) beyond the two upstream round trips any x402
//! client makes, and where that time goes.
//!
//! Run with `cargo bench -p trustos --bench x402_lane` (about a minute after the build;
//! `X402_BENCH_SECONDS=2` for a quick run of about 20 s). Results are printed as tables and written as JSON to
//! `<target>/x402_lane.json`.
//!
//! Everything runs in this one process, each part on a runtime of its own as if it were its own
//! process:
//!
//! - *the gateway*: a fresh home under `CARGO_TARGET_TMPDIR` (`ensure_initialized`), its
//!   `gateway.toml` extended with `[http.paid] url = "http://127.0.0.1:<upstream port>"`,
//!   `[x402] key_env` (the public Hardhat #0 key: `std::env::set_var` is unsafe in edition 2024,
//!   so the harness runs itself again with the variable set) and one `[[tokens]]` bearer; the
//!   profile ([`PROFILE`]) classifies `GET 127.0.0.1/paid*` as paid, allows USDC on Base Sepolia,
//!   first-time payees, at most 1 USDC a call and a daily budget far above the run. Opened with
//!   `daemon::server::open` and served with `front::serve` on a 2-worker multi-thread runtime,
//!   as `trustos serve` does, logging at `info` (its default) to `H/serve.log`;
//! - *the paid upstream* (a hyper server on a current-thread runtime of its own): without
//!   `PAYMENT-SIGNATURE` it answers 402 with a precomputed x402 v2 `PAYMENT-REQUIRED` (exact,
//!   `eip155:84532`, USDC, 1000 base units); with it, 200 and a precomputed `PAYMENT-RESPONSE`
//!   (success, a fixed transaction hash). It verifies no signature, so its own time is small and
//!   the same on both paths, but it does decode every payment (base64 JSON with `x402Version` 2)
//!   and counts them, and the nonces of the gateway's: the harness asserts at the end that every
//!   gateway request paid exactly once, with a nonce of its own;
//! - *the client* (hyper, keep-alive, current-thread runtime on the main thread).
//!
//! Two paths, each checked on every response (any error counts and the harness panics at the
//! end, after printing and writing the results):
//!
//! - *direct*: the client does the two round trips itself: `GET /paid-item` → 402 with
//!   `PAYMENT-REQUIRED`, then `GET /paid-item` with a canned `PAYMENT-SIGNATURE` (a real payload
//!   signed once at setup) → 200 with `PAYMENT-RESPONSE` and the item;
//! - *gateway*: one `GET http://<front>/http/paid/paid-item` with the bearer token → 200 with
//!   the item, a `Trust-Receipt` (compact JWS) and a `Trust-Settlement`. Behind it: the unpaid
//!   request, the 402 read, offer chosen, decision (policy, Ed25519 JWS, durable commit and
//!   consume), verified, EIP-712 signed, attempt and replay key recorded, the paid retry, the
//!   settlement recorded and the receipt committed.
//!
//! Phases:
//!
//! 1. Warm-up: each path closed loop for [`WARM_UP`].
//! 2. *Open loop* at `X402_BENCH_RATE` requests/s (default 100) for `X402_BENCH_SECONDS`
//!    (default 10) per path: sends are scheduled on a fixed clock by a sender thread and each
//!    latency runs from the *scheduled* send time to the full response (body read), so a stall
//!    delays every request behind it instead of hiding them (no coordinated omission). The two
//!    paths take turns in [`OPEN_SLICE`] slices (each drains before the next starts; each round
//!    starts with the other path), so background noise falls on both alike. Overhead = gateway −
//!    direct at p50, p90, p99, p99.9 and max; it includes the agent's own hop to the gateway (one
//!    more local HTTP exchange) besides the gateway's work. At the defaults each path has 1,000
//!    samples, so p99.9 is a single sample.
//! 3. *Closed loop*, 1 request in flight, `X402_BENCH_SECONDS` per path: requests/s.
//! 4. *Where the time goes*, one request at a time (`X402_BENCH_SAMPLES`, default 1000), with
//!    the load stopped. Each sample first runs the lane's own calls for one paid request, each
//!    timed: `Enforcer::decide` of the unpaid request (the probe), reading the 402's offer,
//!    `Enforcer::authorize_payment` (offer chosen, decision committed and consumed, verified,
//!    EIP-712 signed, attempt recorded, replay key claimed) and, after the retry would have
//!    come back, reading `PAYMENT-RESPONSE` + `Enforcer::conclude_payment` (attempt updated,
//!    receipt committed); their sum is the gateway's in-process share. Then it pays a second
//!    time step by step with the same functions, to time the parts: the offer chosen,
//!    `Enforcer::decide` (and beside it policy evaluation, the decision's JWS and its durable
//!    commit + consume on their own), the verification, `X402Adapter::authorize` against a
//!    ledger wrapper that times each durable store call (attempt created, replay key claimed),
//!    `EvmSigner::sign_transfer` alone, the settlement report (attempt read + updated) and
//!    `Enforcer::finish_paid` (receipt). Last, a raw 4 KiB write + `fdatasync` in the home's
//!    file system.
//!
//! Beside the open loop's latencies, each path's CPU per request by thread group (client,
//! gateway runtime, store writer, upstream, pacer) from `/proc/self/task/*/schedstat`: time on
//! a CPU, and time runnable but waiting for one. The second is how a busy machine shows up: a
//! paid request passes from thread to thread (client, gateway workers, store writer, upstream)
//! some sixteen times, and each handoff may wait for a core.
//!
//! The machine is shared with whatever else runs: the load average at start and the
//! machine-wide CPU and I/O stall (PSI `some`) during the open loop are reported beside the
//! figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use trustos::enforce::pay::{PaidOutcome, PaymentVerdict, allowances_of};
use trustos::enforce::{CallEnd, CallPayment, Enforcer, HttpTarget, ToolCall, Verdict, now};
use trustos::home::{Home, ensure_initialized};
use trustos::policy::engine::{Intent, PaymentFacts, decide_with_store};
use trustos::store::redb_store::RedbStore;
use trustos::store::{AwaitedPayment, AwaitedSettlement, DecisionCommit, Store as _};
use trustos_adapters::ledger::AttemptClaim;
use trustos_adapters::x402::assets::AssetRegistry;
use trustos_adapters::x402::evm::{
    EvmSigner, TokenDomain, TransferAuthorization, U256, checksum, nonce_for_decision,
    parse_address, signature_hex,
};
use trustos_adapters::x402::wire::{self, ExactEvmAuthorization, ExactEvmPayload};
use trustos_adapters::x402::{X402Adapter, report_of};
use trustos_adapters::{Adapter as _, AttemptRecord, LedgerError, PaymentLedger};
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION};
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::objects::{
    Amount, DecisionType, Outcome, PolicyDecision, Settlement as SettlementObject,
};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

use support::{
    PERCENTILES, Phase, cpu_model, env_number, load_average, nanos, pressure, pressure_share,
    scratch_dir,
};

/// The variable `[x402] key_env` names.
const KEY_ENV: &str = "TRUSTOS_BENCH_X402_KEY";
/// The gateway's payer key: Hardhat account #0, public and worthless.
const PAYER_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// The agent's bearer token.
const TOKEN: &str = "x402-bench-token-5d1e9c";
/// The lane, `[http.NAME]`.
const LANE: &str = "paid";
/// Base Sepolia.
const NETWORK: &str = "eip155:84532";
/// Its EIP-155 chain id.
const CHAIN_ID: u64 = 84_532;
/// Circle's USDC on Base Sepolia.
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The upstream's payee.
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// The price, in USDC base units.
const PRICE: &str = "1000";
/// The settlement's transaction hash (fixed: nothing settles).
const TX_HASH: &str = "0x4b1e0c9a7f3d2e65b8a9c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5";
/// The paid resource's path on the upstream.
const ITEM_PATH: &str = "/paid-item";
/// The paid resource.
const ITEM_BODY: &[u8] = br#"{"item":"paid-item","text":"what the agent paid for"}"#;
/// Open-loop phases run in slices of this length, taking turns.
const OPEN_SLICE: Duration = Duration::from_secs(2);
/// Warm-up per path (closed loop, 1 in flight).
const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait for any one response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// The issue's target: p99 overhead of a paid request, in ms.
const TARGET_P99_MS: f64 = 5.0;

/// The profile: `GET 127.0.0.1/paid*` is paid; USDC on Base Sepolia; any payee the first time;
/// at most 1 USDC a call; a daily budget no run comes near.
const PROFILE: &str = r#"
[profile]
name = "x402-bench"
description = "An agent buying one paid item again and again through the x402 lane."

[defaults]
unknown_agent = "deny"
mode = { low = "hard", high = "hard", paid = "hard" }

[[subjects]]
tenant = "bench"
agent = "buyer"

[[routes]]
id = "paid-item"
risk = "paid"
http = { host = "127.0.0.1", path = "/paid*" }

[[amounts]]
asset = "usdc"
max = "1000000"

[[budgets]]
id = "agent-daily"
scope = "agent"
window = "day"
asset = "usdc"
limit = "1000000000000000"

[payees]
first_time = "allow"

[assets]
allow = ["usdc"]

[networks]
allow = ["eip155:84532"]
"#;

// ---------------------------------------------------------------------------------------------
// The paid upstream
// ---------------------------------------------------------------------------------------------

/// What the fake upstream counted.
#[derive(Default)]
struct Counts {
    /// 402 answers (requests without a payment).
    unpaid: AtomicU64,
    /// Payments equal to the canned one (the direct path).
    direct_paid: AtomicU64,
    /// Other well-formed payments (the gateway's).
    gateway_paid: AtomicU64,
    /// Payments that are not base64 JSON with `x402Version` 2 and a nonce.
    malformed: AtomicU64,
    /// Gateway payments whose nonce was seen before.
    repeated_nonces: AtomicU64,
    /// Requests for another path.
    stray: AtomicU64,
    /// Nonces of the gateway's payments.
    nonces: Mutex<HashSet<String>>,
}

/// The fake paid API: precomputed answers, counted payments.
struct Upstream {
    /// `PAYMENT-REQUIRED` of the 402.
    required: HeaderValue,
    /// `PAYMENT-RESPONSE` of the 200.
    response: HeaderValue,
    /// The direct path's `PAYMENT-SIGNATURE`.
    canned: HeaderValue,
    counts: Counts,
}

/// The nonce of a payment header, if it is base64 JSON of an x402 v2 payload.
fn payment_nonce(value: &[u8]) -> Result<String, String> {
    let json = wire::decode_header_json(value).map_err(|e| e.to_string())?;
    let payload: Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    if payload["x402Version"] != 2 {
        return Err(format!("x402Version {}", payload["x402Version"]));
    }
    payload["payload"]["authorization"]["nonce"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no nonce".to_owned())
}

fn answer(upstream: &Upstream, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let reply =
        |status: StatusCode, header: Option<(&'static str, &HeaderValue)>, body: &'static [u8]| {
            let mut response = Response::new(Full::new(Bytes::from_static(body)));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            if let Some((name, value)) = header {
                headers.insert(HeaderName::from_static(name), value.clone());
            }
            response
        };
    let counts = &upstream.counts;
    if request.uri().path() != ITEM_PATH {
        counts.stray.fetch_add(1, Ordering::Relaxed);
        return reply(StatusCode::NOT_FOUND, None, b"{}");
    }
    let Some(payment) = request.headers().get(wire::HEADER_PAYMENT_SIGNATURE) else {
        counts.unpaid.fetch_add(1, Ordering::Relaxed);
        return reply(
            StatusCode::PAYMENT_REQUIRED,
            Some((wire::HEADER_PAYMENT_REQUIRED, &upstream.required)),
            b"{}",
        );
    };
    match payment_nonce(payment.as_bytes()) {
        Err(_) => {
            counts.malformed.fetch_add(1, Ordering::Relaxed);
            reply(StatusCode::BAD_REQUEST, None, b"{}")
        }
        Ok(nonce) => {
            if payment == upstream.canned {
                counts.direct_paid.fetch_add(1, Ordering::Relaxed);
            } else {
                counts.gateway_paid.fetch_add(1, Ordering::Relaxed);
                if !counts.nonces.lock().unwrap().insert(nonce) {
                    counts.repeated_nonces.fetch_add(1, Ordering::Relaxed);
                }
            }
            reply(
                StatusCode::OK,
                Some((wire::HEADER_PAYMENT_RESPONSE, &upstream.response)),
                ITEM_BODY,
            )
        }
    }
}

/// Serves `upstream` on `listener` until `stop` fires.
async fn serve_upstream(
    listener: tokio::net::TcpListener,
    upstream: Arc<Upstream>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let upstream = Arc::clone(&upstream);
                tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let response = answer(&upstream, &request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// The 402's `PAYMENT-REQUIRED` for `url` (x402 v2, one exact offer), as JSON.
fn payment_required_json(url: &str) -> Value {
    json!({
        "x402Version": 2,
        "error": "PAYMENT-SIGNATURE header is required",
        "resource": {"url": url, "description": "One paid item", "mimeType": "application/json"},
        "accepts": [{
            "scheme": "exact",
            "network": NETWORK,
            "amount": PRICE,
            "asset": USDC,
            "payTo": PAY_TO,
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"},
        }],
    })
}

/// A real payment for `required_header`, signed once with the payer key: the direct path's
/// `PAYMENT-SIGNATURE` (the same size and shape as the gateway's).
fn canned_payment(signer: &EvmSigner, required_header: &str) -> String {
    let required = wire::payment_required_from_http(Some(required_header.as_bytes()), b"")
        .expect("the bench's own PAYMENT-REQUIRED");
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let auth = TransferAuthorization {
        from: signer.address(),
        to: parse_address(PAY_TO).unwrap(),
        value: U256::from(1000u64),
        valid_after: U256::from(secs - 600),
        valid_before: U256::from(secs + 86_400),
        nonce: nonce_for_decision("bench-direct-canned"),
    };
    let signature = signer.sign_transfer(&usdc_domain(), &auth).unwrap();
    let payload = ExactEvmPayload {
        signature: signature_hex(&signature),
        authorization: ExactEvmAuthorization {
            from: checksum(&auth.from),
            to: checksum(&auth.to),
            value: auth.value.to_string(),
            valid_after: auth.valid_after.to_string(),
            valid_before: auth.valid_before.to_string(),
            nonce: auth.nonce.to_string(),
        },
    };
    let json = wire::payment_payload_json(&required, &required.accepts[0], &payload, None).unwrap();
    wire::encode_header_json(json.as_bytes())
}

fn usdc_domain() -> TokenDomain {
    TokenDomain {
        name: "USDC".into(),
        version: "2".into(),
        chain_id: CHAIN_ID,
        verifying_contract: parse_address(USDC).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The two paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum PathKind {
    Direct,
    Gateway,
}

impl PathKind {
    fn name(self) -> &'static str {
        match self {
            PathKind::Direct => "direct",
            PathKind::Gateway => "gateway",
        }
    }
}

/// What the client needs for both paths.
struct Target {
    client: HttpClient,
    /// `http://127.0.0.1:<upstream>/paid-item`.
    upstream: Uri,
    /// `http://<front>/http/paid/paid-item`.
    gateway: Uri,
    bearer: HeaderValue,
    canned: HeaderValue,
}

/// One response, read whole.
struct Fetched {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Bytes,
}

async fn get(
    client: &HttpClient,
    uri: &Uri,
    header: Option<(HeaderName, &HeaderValue)>,
) -> Result<Fetched, String> {
    let mut builder = Request::get(uri.clone());
    if let Some((name, value)) = header {
        builder = builder.header(name, value);
    }
    let request = builder.body(Full::new(Bytes::new())).unwrap();
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body failed: {e}"))?
            .to_bytes();
        Ok(Fetched {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {RESPONSE_TIMEOUT:?}"))?
}

fn has_header(fetched: &Fetched, name: &str) -> bool {
    fetched.headers.get(name).is_some_and(|v| !v.is_empty())
}

/// One request on `path`, checked.
async fn run_once(target: &Target, path: PathKind) -> Result<(), String> {
    match path {
        PathKind::Direct => {
            let first = get(&target.client, &target.upstream, None).await?;
            if first.status != StatusCode::PAYMENT_REQUIRED
                || !has_header(&first, wire::HEADER_PAYMENT_REQUIRED)
            {
                return Err(format!("unpaid request: {} without a price", first.status));
            }
            let name = HeaderName::from_static(wire::HEADER_PAYMENT_SIGNATURE);
            let paid = get(
                &target.client,
                &target.upstream,
                Some((name, &target.canned)),
            )
            .await?;
            if paid.status != StatusCode::OK
                || !has_header(&paid, wire::HEADER_PAYMENT_RESPONSE)
                || paid.body != ITEM_BODY
            {
                return Err(format!("paid request: {} {:?}", paid.status, paid.body));
            }
        }
        PathKind::Gateway => {
            let got = get(
                &target.client,
                &target.gateway,
                Some((AUTHORIZATION, &target.bearer)),
            )
            .await?;
            let receipt = got
                .headers
                .get("trust-receipt")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if got.status != StatusCode::OK
                || receipt.split('.').count() != 3
                || !has_header(&got, "trust-settlement")
                || got.body != ITEM_BODY
            {
                return Err(format!(
                    "gateway: {} receipt {:?} body {}",
                    got.status,
                    receipt.len(),
                    String::from_utf8_lossy(&got.body)
                ));
            }
        }
    }
    Ok(())
}

/// Open loop: `rate` requests/s on `path` for `length`, latency from each scheduled send time.
fn open_loop(
    client_rt: &Runtime,
    target: &Arc<Target>,
    path: PathKind,
    rate: f64,
    length: Duration,
) -> Phase {
    support::open_loop(client_rt, rate, length, thread_group, || {
        let target = Arc::clone(target);
        async move { run_once(&target, path).await }
    })
}

/// Closed loop, one request in flight on `path` for `length`.
fn closed_loop(client_rt: &Runtime, target: &Target, path: PathKind, length: Duration) -> Phase {
    support::closed_loop(client_rt, length, || run_once(target, path))
}

// ---------------------------------------------------------------------------------------------
// Where the time goes
// ---------------------------------------------------------------------------------------------

/// The store as the adapter's ledger, timing each call into `times`.
struct TimedLedger {
    store: Arc<RedbStore>,
    times: Mutex<Vec<(&'static str, u64)>>,
}

impl TimedLedger {
    fn note(&self, name: &'static str, started: Instant) {
        self.times
            .lock()
            .unwrap()
            .push((name, nanos(started.elapsed())));
    }
}

#[async_trait::async_trait]
impl PaymentLedger for TimedLedger {
    async fn create_attempt(&self, record: &AttemptRecord) -> Result<AttemptClaim, LedgerError> {
        let started = Instant::now();
        let out = self.store.create_attempt(record).await;
        self.note("attempt_create", started);
        out
    }

    async fn update_attempt(&self, record: &AttemptRecord) -> Result<(), LedgerError> {
        let started = Instant::now();
        let out = self.store.update_attempt(record).await;
        self.note("attempt_update", started);
        out
    }

    async fn load_attempt(
        &self,
        rail: &str,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, LedgerError> {
        let started = Instant::now();
        let out = self.store.load_attempt(rail, decision_id).await;
        self.note("attempt_load", started);
        out
    }

    async fn claim_replay_key(
        &self,
        scope: &str,
        key: &str,
        until: u64,
        now: Timestamp,
    ) -> Result<bool, LedgerError> {
        let started = Instant::now();
        let out = self.store.claim_replay_key(scope, key, until, now).await;
        self.note("replay_claim", started);
        out
    }
}

/// The steps of the breakdown, in order: name; depth (a step of depth n + 1 is a part of the
/// step of depth n above it, timed in a replay of the same code one call at a time); whether
/// it is one of the lane's own steps (those add up to `in_process_total`); what it does.
const STEPS: &[(&str, usize, bool, &str)] = &[
    (
        "probe",
        0,
        true,
        "Enforcer::decide of the unpaid request: the route's other rules (policy, no write)",
    ),
    ("offer", 0, true, "the 402's PAYMENT-REQUIRED read"),
    (
        "authorize_payment",
        0,
        true,
        "Enforcer::authorize_payment: offer chosen, decided, verified, signed (3 writes)",
    ),
    (
        "choose_offer",
        1,
        false,
        "allowances + X402Adapter::prepare + bound terms",
    ),
    (
        "decide",
        1,
        false,
        "Enforcer::decide with the terms: policy, decision JWS, commit + consume (1 write)",
    ),
    (
        "policy",
        2,
        false,
        "policy evaluation with the store's budget totals",
    ),
    (
        "decision_sign",
        2,
        false,
        "the PolicyDecision's JCS + Ed25519 JWS",
    ),
    (
        "decision_write",
        2,
        false,
        "Store::commit_decision with consume (durable)",
    ),
    (
        "verify",
        1,
        false,
        "fingerprint with the terms + Verifier::verify_decision",
    ),
    (
        "adapter_authorize",
        1,
        false,
        "X402Adapter::authorize: EIP-712 signature, payload, 2 writes",
    ),
    (
        "eip712_sign",
        2,
        false,
        "EvmSigner::sign_transfer alone (with its recovery check)",
    ),
    (
        "attempt_create",
        2,
        false,
        "attempt record created (durable compare-and-set)",
    ),
    ("replay_claim", 2, false, "replay key claimed (durable)"),
    (
        "conclude_payment",
        0,
        true,
        "PAYMENT-RESPONSE read + Enforcer::conclude_payment (2 writes)",
    ),
    (
        "report",
        1,
        false,
        "X402Adapter::report: attempt record read + updated",
    ),
    ("attempt_load", 2, false, "attempt record read"),
    (
        "attempt_update",
        2,
        false,
        "attempt record updated (read + durable compare-and-set)",
    ),
    (
        "receipt",
        1,
        false,
        "Enforcer::finish_paid: Receipt JWS + durable commit (1 write)",
    ),
    (
        "in_process_total",
        0,
        false,
        "the lane's steps above (depth 0) added up per request: the gateway without HTTP",
    ),
    (
        "fsync_4k",
        0,
        false,
        "raw 4 KiB write + fdatasync in the home's file system",
    ),
];

/// What the breakdown needs.
struct Side {
    enforcer: Arc<Enforcer>,
    /// An adapter like the payer's (same key, same assets), for the replay step by step.
    adapter: X402Adapter,
    signer: EvmSigner,
    ledger: TimedLedger,
    verifier: Verifier,
    max_timeout_seconds: u64,
    required: String,
    response: String,
    /// The unpaid request as the lane builds it.
    call: ToolCall,
    probe: std::fs::File,
}

/// What a receipt binds of the upstream's answer (the lane's `Answer::result_digest`).
fn result_digest() -> Result<Digest, String> {
    Digest::of_canonical_value(
        &json!({"status": 200, "bodySha256": Digest::of(ITEM_BODY).to_string()}),
    )
    .map_err(|err| err.to_string())
}

/// One paid request's gateway work through the calls the lane makes, each timed into `out`;
/// then a second one step by step, timing the parts; then one raw durable write.
async fn side_sample(
    side: &Side,
    round: u64,
    out: &mut BTreeMap<&'static str, Vec<u64>>,
) -> Result<(), String> {
    let mut record = |name: &'static str, took: u64| out.entry(name).or_default().push(took);
    let e = |err: &dyn std::fmt::Display| err.to_string();

    // The lane's own steps.
    let mut total = 0u64;
    let started = Instant::now();
    let probe = side
        .enforcer
        .decide(side.call.clone())
        .await
        .map_err(|err| e(&err))?;
    let took = nanos(started.elapsed());
    record("probe", took);
    total += took;
    if !matches!(probe, Verdict::Pass { .. }) {
        return Err(format!("the unpaid request was not passed: {probe:?}"));
    }

    let started = Instant::now();
    let required = wire::payment_required_from_http(Some(side.required.as_bytes()), b"{}")
        .map_err(|err| e(&err))?;
    let took = nanos(started.elapsed());
    record("offer", took);
    total += took;

    let started = Instant::now();
    let verdict = side
        .enforcer
        .authorize_payment(side.call.clone(), &required)
        .await
        .map_err(|err| e(&err))?;
    let took = nanos(started.elapsed());
    record("authorize_payment", took);
    total += took;
    let PaymentVerdict::Pay {
        decision_id,
        header_value,
        ..
    } = verdict
    else {
        return Err(format!("the payment was refused: {verdict:?}"));
    };
    if header_value.is_empty() {
        return Err("empty payment header".into());
    }
    let started_at = now().map_err(|err| e(&err))?;

    let started = Instant::now();
    let settlement =
        wire::settlement_from_http(Some(side.response.as_bytes()), None).map_err(|err| e(&err))?;
    let outcome = PaidOutcome::from(report_of(settlement.as_ref()));
    let concluded = side
        .enforcer
        .conclude_payment(
            &decision_id,
            outcome,
            true,
            Some(result_digest()?),
            started_at,
        )
        .await
        .map_err(|err| e(&err))?;
    let took = nanos(started.elapsed());
    record("conclude_payment", took);
    total += took;
    if concluded.settlement.is_none() || concluded.receipt.receipt.split('.').count() != 3 {
        return Err("the payment was not concluded with a settlement and a receipt".into());
    }
    record("in_process_total", total);

    // The same again, step by step.
    let started = Instant::now();
    let allowances = allowances_of(&side.enforcer.profile(), side.max_timeout_seconds);
    let terms = side
        .adapter
        .prepare(&required, &allowances)
        .map_err(|err| e(&err))?;
    let bound = side.adapter.bound_terms(&terms).map_err(|err| e(&err))?;
    let mut call = side.call.clone();
    call.payment = Some(CallPayment {
        terms: bound.clone(),
        asset_symbol: terms.asset.symbol.clone(),
        rail: "x402".into(),
    });
    record("choose_offer", nanos(started.elapsed()));

    // The parts of a decision on their own: policy, JWS, durable commit + consume.
    let compiled = side.enforcer.profile();
    let intent = Intent {
        tenant: call.tenant.clone(),
        agent: call.agent.clone(),
        session: None,
        call: call.policy_call(),
        arguments: call.arguments.clone(),
        payment: Some(PaymentFacts {
            amount: terms.amount,
            asset: terms.asset.symbol.clone(),
            payee: bound.pay_to.clone(),
            network: bound.network.clone(),
        }),
    };
    let issued_at = now().map_err(|err| e(&err))?;
    let started = Instant::now();
    let evaluation = decide_with_store(&compiled, &**side.enforcer.store(), &intent, issued_at)
        .await
        .map_err(|err| e(&err))?;
    record("policy", nanos(started.elapsed()));
    if evaluation.outcome != Outcome::Allow {
        return Err(format!("the policy said {:?}", evaluation.reasons));
    }
    let started = Instant::now();
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: format!("dec_side{round:024x}"),
        fingerprint: call
            .fingerprint(Some(bound.clone()))
            .and_then(|f| f.digest())
            .map_err(|err| e(&err))?,
        outcome: Outcome::Allow,
        reason_codes: evaluation.reasons.clone(),
        policy_ids: evaluation.policies.clone(),
        profile_fingerprint: evaluation.profile_fingerprint,
        reservations: evaluation.reservations(issued_at),
        issued_at,
        expires_at: issued_at.checked_add_millis(60_000).unwrap(),
        mode: evaluation.mode,
    };
    let signed = jws::sign(side.enforcer.key(), TYP_DECISION, &decision).map_err(|err| e(&err))?;
    record("decision_sign", nanos(started.elapsed()));
    let started = Instant::now();
    side.enforcer
        .store()
        .commit_decision(DecisionCommit {
            decision,
            signed,
            charges: evaluation.budget_charges(),
            consume: true,
            // As the gateway commits a payment it starts: awaiting its outcome.
            awaiting: Some(AwaitedPayment {
                settlement: AwaitedSettlement {
                    rail: "x402".into(),
                    network: NETWORK.into(),
                    asset: checksum(&terms.asset.address),
                    amount: Amount::from(terms.amount),
                },
                owner: "bench".into(),
            }),
        })
        .await
        .map_err(|err| e(&err))?;
    record("decision_write", nanos(started.elapsed()));

    let started = Instant::now();
    let verdict = side
        .enforcer
        .decide(call.clone())
        .await
        .map_err(|err| e(&err))?;
    record("decide", nanos(started.elapsed()));
    let Verdict::Forward {
        decision_id,
        decision: jws,
    } = verdict
    else {
        return Err(format!("not forwarded: {verdict:?}"));
    };
    let started_at = now().map_err(|err| e(&err))?;

    let started = Instant::now();
    let at = now().map_err(|err| e(&err))?;
    let request = call.fingerprint(None).map_err(|err| e(&err))?;
    let mut bound_request = request.clone();
    bound_request.payment = Some(side.adapter.bound_terms(&terms).map_err(|err| e(&err))?);
    let expected = bound_request.digest().map_err(|err| e(&err))?;
    let verified = side
        .verifier
        .verify_decision(&jws, &expected, at)
        .map_err(|err| e(&err))?;
    record("verify", nanos(started.elapsed()));

    let started = Instant::now();
    let payment = side
        .adapter
        .authorize(&side.ledger, &verified, &request, &terms, at)
        .await
        .map_err(|err| e(&err))?;
    let header = payment.header_value();
    record("adapter_authorize", nanos(started.elapsed()));
    if header.is_empty() {
        return Err("empty payment header".into());
    }

    // The signature on its own, same shape.
    let auth = TransferAuthorization {
        from: side.signer.address(),
        to: terms.pay_to,
        value: U256::from(terms.amount),
        valid_after: U256::from(payment.valid_before - 600),
        valid_before: U256::from(payment.valid_before),
        nonce: nonce_for_decision(&decision_id),
    };
    let domain = usdc_domain();
    let started = Instant::now();
    side.signer
        .sign_transfer(&domain, &auth)
        .map_err(|err| e(&err))?;
    record("eip712_sign", nanos(started.elapsed()));

    let started = Instant::now();
    let report = report_of(settlement.as_ref());
    side.adapter
        .report(&side.ledger, &decision_id, &report)
        .await
        .map_err(|err| e(&err))?;
    record("report", nanos(started.elapsed()));

    let started = Instant::now();
    let settled = SettlementObject {
        rail: "x402".into(),
        reference: TX_HASH.into(),
        network: NETWORK.into(),
        asset: checksum(&terms.asset.address),
        amount: Amount::from(terms.amount),
    };
    let receipt = side
        .enforcer
        .finish_paid(
            &decision_id,
            CallEnd::Completed,
            Some(result_digest()?),
            started_at,
            Some(settled),
        )
        .await
        .map_err(|err| e(&err))?;
    record("receipt", nanos(started.elapsed()));
    if receipt.receipt.split('.').count() != 3 {
        return Err("the receipt is not a compact JWS".into());
    }
    for (name, took) in side.ledger.times.lock().unwrap().drain(..) {
        record(name, took);
    }

    // Raw durable write.
    let page = [0x5a_u8; 4096];
    let started = Instant::now();
    side.probe
        .write_all_at(&page, (round % 16) * 4096)
        .map_err(|err| e(&err))?;
    side.probe.sync_data().map_err(|err| e(&err))?;
    record("fsync_4k", nanos(started.elapsed()));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------------------------

/// Thread groups of this process by thread name: the gateway's runtime (workers and blocking
/// pool), the store's writer thread, the upstream, the open loop's pacer; everything else is
/// the client (the main thread).
const THREAD_GROUPS: [&str; 5] = ["client", "gateway", "store_writer", "upstream", "pacer"];

/// The [`THREAD_GROUPS`] entry of a thread named `name`.
fn thread_group(name: &str) -> &'static str {
    match name {
        "gateway" => THREAD_GROUPS[1],
        n if n.starts_with("trustos-store") => THREAD_GROUPS[2],
        "upstream" => THREAD_GROUPS[3],
        "pacer" => THREAD_GROUPS[4],
        _ => THREAD_GROUPS[0],
    }
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() {
    // `std::env::set_var` is unsafe in edition 2024 and this workspace forbids unsafe code: run
    // this same harness again with the payer key's variable set.
    if std::env::var(KEY_ENV).as_deref() != Ok(PAYER_KEY) {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env(KEY_ENV, PAYER_KEY)
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let rate = env_number("X402_BENCH_RATE", 100.0);
    let length = Duration::from_secs_f64(env_number("X402_BENCH_SECONDS", 10.0));
    let samples = env_number("X402_BENCH_SAMPLES", 1000.0) as u64;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_avg = load_average();
    println!(
        "x402_lane: {cores} cores ({}), load average {load_avg}; open loop at {rate:.0} req/s, {:.0} s \
         per path",
        cpu_model(),
        length.as_secs_f64()
    );

    // The paid upstream, on a runtime of its own.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let upstream_addr = listener.local_addr().unwrap();
    let item_url = format!("http://{upstream_addr}{ITEM_PATH}");
    let required =
        wire::encode_header_json(payment_required_json(&item_url).to_string().as_bytes());
    let response = wire::encode_header_json(
        json!({
            "success": true,
            "transaction": TX_HASH,
            "network": NETWORK,
            "payer": checksum(&EvmSigner::from_hex(PAYER_KEY).unwrap().address()),
        })
        .to_string()
        .as_bytes(),
    );
    let signer = EvmSigner::from_hex(PAYER_KEY).unwrap();
    let canned = canned_payment(&signer, &required);
    let upstream = Arc::new(Upstream {
        required: HeaderValue::from_str(&required).unwrap(),
        response: HeaderValue::from_str(&response).unwrap(),
        canned: HeaderValue::from_str(&canned).unwrap(),
        counts: Counts::default(),
    });
    let (stop_upstream, stopped) = tokio::sync::oneshot::channel();
    let upstream_thread = {
        let upstream = Arc::clone(&upstream);
        std::thread::Builder::new()
            .name("upstream".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    serve_upstream(listener, upstream, stopped).await;
                });
            })
            .unwrap()
    };

    // The gateway's home.
    let dir = scratch_dir("x402_lane");
    let home = Home::resolve(Some(dir.join("home"))).unwrap();
    ensure_initialized(&home).unwrap();
    std::fs::write(
        home.root().join("profiles/default/profile.toml"),
        PROFILE.trim_start(),
    )
    .unwrap();
    let config_path = home.root().join("gateway.toml");
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        "\n[http.{LANE}]\nurl = \"http://{upstream_addr}\"\n\n[x402]\nkey_env = \"{KEY_ENV}\"\n\n\
         [[tokens]]\ntoken_sha256 = \"{}\"\ntenant = \"bench\"\nagent = \"buyer\"\n",
        Digest::of(TOKEN.as_bytes())
    ));
    std::fs::write(&config_path, config).unwrap();

    // The gateway as `trustos serve` runs it (logging at `info` to `H/serve.log`).
    let support::Gateway {
        runtime: gateway_rt,
        daemon,
        addr: front_addr,
        task: front_task,
    } = support::start_gateway(&home, "127.0.0.1:0");

    // The client.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let target = Arc::new(Target {
        client: Client::builder(TokioExecutor::new()).build(connector),
        upstream: item_url.parse().unwrap(),
        gateway: format!("http://{front_addr}/http/{LANE}{ITEM_PATH}")
            .parse()
            .unwrap(),
        bearer: HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        canned: HeaderValue::from_str(&canned).unwrap(),
    });
    let paths = [PathKind::Direct, PathKind::Gateway];
    for path in paths {
        client_rt
            .block_on(run_once(&target, path))
            .unwrap_or_else(|err| panic!("first {} request: {err}", path.name()));
    }
    println!(
        "checked: direct pays the upstream itself; the gateway answers 200 with a Trust-Receipt \
         and a Trust-Settlement"
    );

    // Warm-up.
    let warm: BTreeMap<PathKind, Phase> = paths
        .into_iter()
        .map(|path| (path, closed_loop(&client_rt, &target, path, WARM_UP)))
        .collect();

    // Open loop, in interleaved slices.
    let slice = OPEN_SLICE.min(length);
    let open_started = (Instant::now(), pressure());
    let open = support::interleaved(&paths, length, slice, |path, this| {
        open_loop(&client_rt, &target, path, rate, this)
    });
    let open_pressure = pressure_share(open_started.1, pressure(), open_started.0.elapsed());
    for (path, phase) in &open {
        println!(
            "  open {:<8} p50 {:.3} ms  p99 {:.3} ms  errors {}  (latest send {:.3} ms behind \
             schedule)",
            path.name(),
            phase.ms(0.5),
            phase.ms(0.99),
            phase.errors,
            phase.max_send_lag as f64 / 1e6
        );
    }

    // Closed loop.
    let mut closed: BTreeMap<PathKind, Phase> = BTreeMap::new();
    for path in paths {
        let phase = closed_loop(&client_rt, &target, path, length);
        println!(
            "  closed {:<8} {:.0} req/s  errors {}",
            path.name(),
            phase.rate,
            phase.errors
        );
        closed.insert(path, phase);
    }

    // Where the time goes.
    let side = Side {
        enforcer: Arc::clone(&daemon.enforcer),
        adapter: X402Adapter::new(
            EvmSigner::from_hex(PAYER_KEY).unwrap(),
            AssetRegistry::with_defaults(vec![]),
        ),
        signer: EvmSigner::from_hex(PAYER_KEY).unwrap(),
        ledger: TimedLedger {
            store: Arc::clone(daemon.enforcer.store()),
            times: Mutex::new(Vec::new()),
        },
        verifier: Verifier::new(TrustedKeys::new([daemon.enforcer.key().public().clone()])),
        max_timeout_seconds: daemon
            .config
            .x402
            .as_ref()
            .map_or(300, |x| x.max_timeout_seconds),
        required: required.clone(),
        response: response.clone(),
        call: ToolCall {
            tenant: "bench".into(),
            agent: "buyer".into(),
            session: None,
            server: LANE.into(),
            tool: format!("GET {ITEM_PATH}"),
            arguments: json!({"headers": {}, "body": null}),
            http: Some(HttpTarget {
                method: "GET".into(),
                url: item_url.clone(),
                host: "127.0.0.1".into(),
                path: ITEM_PATH.into(),
            }),
            payment: None,
        },
        probe: OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(home.root().join("fsync-probe"))
            .unwrap(),
    };
    let mut steps: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let mut side_errors = Phase::default();
    gateway_rt.block_on(async {
        for round in 0..samples {
            if let Err(err) = side_sample(&side, round, &mut steps).await {
                side_errors.error(err);
            }
        }
    });
    drop(side);
    let steps: BTreeMap<&'static str, Phase> = steps
        .into_iter()
        .map(|(name, nanos)| {
            (
                name,
                Phase {
                    nanos,
                    ..Phase::default()
                }
                .finish(),
            )
        })
        .collect();
    let store_mib =
        std::fs::metadata(home.database_path()).map_or(0.0, |m| m.len() as f64) / (1024.0 * 1024.0);

    // Stop the gateway and the upstream before counting.
    front_task.abort();
    drop(daemon);
    gateway_rt.shutdown_timeout(Duration::from_secs(2));
    let _ = stop_upstream.send(());
    upstream_thread.join().unwrap();

    // Report.
    println!(
        "\nOpen loop at {rate:.0} req/s, {:.0} s per path ({:.0} s slices taking turns); latency \
         from scheduled send to full response, ms",
        length.as_secs_f64(),
        slice.as_secs_f64()
    );
    println!(
        "| path | requests | p50 | p90 | p99 | p99.9 | max | errors |\n|---|---|---|---|---|---|---|---|"
    );
    for (path, label) in [
        (
            PathKind::Direct,
            "direct (402, then the paid retry: two round trips)",
        ),
        (
            PathKind::Gateway,
            "gateway (/http/paid: decision, EIP-712, retry, receipt)",
        ),
    ] {
        let phase = &open[&path];
        print!("| {label} | {} |", phase.sent);
        for (_, f) in PERCENTILES {
            print!(" {:.3} |", phase.ms(f));
        }
        println!(" {} |", phase.errors);
    }
    let overhead: Vec<f64> = PERCENTILES
        .iter()
        .map(|(_, f)| open[&PathKind::Gateway].ms(*f) - open[&PathKind::Direct].ms(*f))
        .collect();
    print!("| **overhead** (gateway − direct) | |");
    for value in &overhead {
        print!(" **{value:.3}** |");
    }
    println!(" |");
    support::print_cpu_table("request", &paths, PathKind::name, &open, &THREAD_GROUPS);

    println!(
        "\nClosed loop, 1 in flight, {:.0} s per path: requests/s (p50 / p99 ms)",
        length.as_secs_f64()
    );
    println!("| direct | gateway |\n|---|---|");
    println!(
        "| {:.0} ({:.3} / {:.3}) | {:.0} ({:.3} / {:.3}) |",
        closed[&PathKind::Direct].rate,
        closed[&PathKind::Direct].ms(0.5),
        closed[&PathKind::Direct].ms(0.99),
        closed[&PathKind::Gateway].rate,
        closed[&PathKind::Gateway].ms(0.5),
        closed[&PathKind::Gateway].ms(0.99)
    );

    println!(
        "\nWhere the time goes: the lane's paid path replayed in process, one at a time, \
         {samples} samples, ms"
    );
    println!("| step | p50 | p90 | p99 | p99.9 | max | what |\n|---|---|---|---|---|---|---|");
    for (name, depth, _, what) in STEPS {
        let Some(phase) = steps.get(name) else {
            continue;
        };
        print!("| {}{name} |", "· ".repeat(*depth));
        for (_, f) in PERCENTILES {
            print!(" {:.3} |", phase.ms(f));
        }
        println!(" {what} |");
    }

    let counts = &upstream.counts;
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    // The first checked request of each path, then the warm-up, open and closed loops.
    let sent = |path: PathKind| 1 + warm[&path].sent + open[&path].sent + closed[&path].sent;
    let (direct_sent, gateway_sent) = (sent(PathKind::Direct), sent(PathKind::Gateway));
    let distinct = counts.nonces.lock().unwrap().len() as u64;
    println!(
        "\nUpstream: {} unpaid 402s, {} direct payments, {} gateway payments ({distinct} distinct \
         nonces, {} repeated), {} malformed, {} stray; requests sent: {direct_sent} direct, \
         {gateway_sent} gateway",
        load(&counts.unpaid),
        load(&counts.direct_paid),
        load(&counts.gateway_paid),
        load(&counts.repeated_nonces),
        load(&counts.malformed),
        load(&counts.stray),
    );
    println!(
        "Machine-wide stall during the open loop (PSI `some`, % of wall time): CPU {:.1}%, I/O \
         {:.1}%; load average at start: {load_avg}; store file after the run: {store_mib:.1} MiB",
        open_pressure["cpu_some_pct"].as_f64().unwrap_or(f64::NAN),
        open_pressure["io_some_pct"].as_f64().unwrap_or(f64::NAN),
    );
    let p99_overhead = overhead[2];
    let target_ok = p99_overhead <= TARGET_P99_MS;
    println!(
        "\nTarget: paid-request overhead p99 {p99_overhead:.3} ms ≤ {TARGET_P99_MS} ms: {}",
        met(target_ok)
    );

    // Checks.
    let mut problems = Vec::new();
    let errors = warm.values().map(|p| p.errors).sum::<usize>()
        + open.values().map(|p| p.errors).sum::<usize>()
        + closed.values().map(|p| p.errors).sum::<usize>()
        + side_errors.errors;
    if errors > 0 {
        problems.push(format!(
            "{errors} requests failed (first: {:?})",
            warm.values()
                .find_map(|p| p.first_error.as_ref())
                .or(open.values().find_map(|p| p.first_error.as_ref()))
                .or(closed.values().find_map(|p| p.first_error.as_ref()))
                .or(side_errors.first_error.as_ref())
        ));
    }
    let gateway_paid = load(&counts.gateway_paid);
    if gateway_paid != gateway_sent as u64 || distinct != gateway_paid {
        problems.push(format!(
            "{gateway_sent} gateway requests, {gateway_paid} gateway payments, {distinct} distinct \
             nonces: not exactly one payment each"
        ));
    }
    if load(&counts.direct_paid) != direct_sent as u64
        || load(&counts.unpaid) != (direct_sent + gateway_sent) as u64
        || load(&counts.malformed) + load(&counts.stray) > 0
    {
        problems.push("the upstream's counts do not match the requests sent".into());
    }

    let mut overhead_json = serde_json::Map::new();
    for ((name, _), value) in PERCENTILES.iter().zip(&overhead) {
        overhead_json.insert(format!("{}_ms", name.replace('.', "")), json!(value));
    }
    let report = json!({
        "machine": {"cores": cores, "cpu": cpu_model(), "load_average_at_start": load_avg},
        "open_loop_pressure": open_pressure,
        "seconds_per_path": length.as_secs_f64(),
        "open_loop": {
            "rate_per_s": rate,
            "slice_s": slice.as_secs_f64(),
            "direct": open[&PathKind::Direct].summary(),
            "gateway": open[&PathKind::Gateway].summary(),
            "overhead": overhead_json,
        },
        "closed_loop_1_in_flight": {
            "direct": closed[&PathKind::Direct].summary(),
            "gateway": closed[&PathKind::Gateway].summary(),
        },
        "breakdown": {
            "samples": samples,
            "errors": side_errors.errors,
            "first_error": side_errors.first_error,
            "steps": STEPS
                .iter()
                .filter_map(|(name, depth, lane_step, what)| {
                    let phase = steps.get(name)?;
                    let mut entry = phase.percentiles();
                    entry.insert("depth".into(), json!(depth));
                    entry.insert("lane_step".into(), json!(lane_step));
                    entry.insert("what".into(), json!(what));
                    Some(((*name).to_owned(), Value::Object(entry)))
                })
                .collect::<serde_json::Map<_, _>>(),
        },
        "upstream": {
            "unpaid_402": load(&counts.unpaid),
            "direct_paid": load(&counts.direct_paid),
            "gateway_paid": gateway_paid,
            "gateway_distinct_nonces": distinct,
            "repeated_nonces": load(&counts.repeated_nonces),
            "malformed": load(&counts.malformed),
            "stray": load(&counts.stray),
            "direct_requests_sent": direct_sent,
            "gateway_requests_sent": gateway_sent,
        },
        "store_mib_after_run": store_mib,
        "target": {"p99_overhead_ms": p99_overhead, "max_ms": TARGET_P99_MS, "met": target_ok},
        "errors": errors,
        "problems": problems,
    });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("x402_lane.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", out.display());

    drop(client_rt);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{}", problems.join("; "));
}
