//! Load harness for the Circle lane: the time `trustos serve` adds to one Circle transfer
//! (`POST /rails/circle/transfers`: decision, verification, attempt recorded, the transfer
//! created, its final state awaited, the outcome recorded, the receipt) beyond what any
//! integration does with the same client library to make the same transfer.
//!
//! Run with `cargo bench -p trustos --bench circle_lane` (about a minute after the build;
//! `CIRCLE_BENCH_SECONDS=2` for a quick run). Results are printed as tables and written as JSON
//! to `<target>/circle_lane.json`. Built like `x402_lane` (its helpers are shared through
//! `benches/support/`), with the same honesty rules.
//!
//! Everything runs in this one process, each part on a runtime or thread of its own as if it
//! were its own process:
//!
//! - *two Circle W3S emulators* (`trustos_adapters::testkit::circle::CircleEmulator`), one per
//!   path, identical but for where their webhooks go, both with
//!   [`EmulatorConfig::auto_complete`]: a transfer is advanced `INITIATED → QUEUED → SENT →
//!   CONFIRMED → COMPLETE` at creation (the creation answers `INITIATED`, a following `GET`
//!   finds `COMPLETE`), each state notified by a signed webhook, in order, from the emulator's
//!   sender thread (a new connection per webhook, as the emulator always does). The gateway's
//!   emulator notifies the gateway's `/webhooks/circle`; the direct path's notifies a sink
//!   that answers `200` (the direct integration polls instead), so both emulators do the same
//!   work per transfer: one RSA-OAEP decryption of the entity secret ciphertext, five signed
//!   notifications sent. They are started from a thread named `emulator`, so their threads
//!   (which inherit the name) are counted apart;
//! - *the gateway*: a fresh home under `CARGO_TARGET_TMPDIR` (`ensure_initialized`), its
//!   `gateway.toml` extended with `[circle]` (the emulator's URL, `api_key_env` and
//!   `entity_secret_env`: `std::env::set_var` is unsafe in edition 2024, so the harness runs
//!   itself again with the variables set; the emulator's default wallet and a USDC token on
//!   Base Sepolia; `poll_interval_ms = 2000`, the default, so that the measured transfers are
//!   the ones webhooks drive, as in production, and a lost webhook would show as a 2 s
//!   outlier; `answer_timeout_seconds = 10`, far above any healthy answer, below the client's
//!   15 s limit) and one `[[tokens]]` bearer; the profile ([`PROFILE`]) makes server `circle`
//!   tool `transfer` a paid route, allows USDC on Base Sepolia, first-time payees, at most
//!   1 USDC a transfer and a daily budget far above the run. Opened with `daemon::server::open`
//!   and served with `front::serve` on a 2-worker multi-thread runtime, as `trustos serve`
//!   does, logging at `info` (its default) to `H/serve.log`;
//! - *the client* (current-thread runtime on the main thread): the agent's hyper client
//!   (keep-alive) and the direct integration's `CircleClient`.
//!
//! Every transfer has an amount of its own (1 + a counter, base units): the gateway refuses a
//! transfer equal (wallet, token, payee, amount) to one still in flight, so equal concurrent
//! asks would be refused, not measured.
//!
//! Two paths, each checked on every response (any error counts and the harness panics at the
//! end, after printing and writing the results):
//!
//! - *direct*: what an integration does without Trust OS, with the same client library:
//!   `CircleClient::create_transfer` (an idempotency key per transfer, a fresh RSA-OAEP entity
//!   secret ciphertext, a `refId`) → `INITIATED`, then `CircleClient::get_transaction` until
//!   the state is `COMPLETE` (one `GET` each with auto-complete; the number is reported);
//! - *gateway*: one `POST http://<front>/rails/circle/transfers` with the bearer token → `200`
//!   with `status` `completed`, `state` `COMPLETE`, a receipt (compact JWS) and the transaction
//!   id. Behind it: the body checked, the in-doubt check (which lists the ledger's attempt
//!   records), decision (policy, Ed25519 JWS, durable commit), verified, attempt recorded
//!   (durable), the transfer created with the same client library (a fresh ciphertext), then
//!   the wait for a final state: the gateway does not `GET` after the creation; it is woken by
//!   the webhooks (each one's P-256 signature verified) or, failing them, polls after
//!   `poll_interval_ms`; then the outcome recorded and the receipt committed.
//!
//! Both paths make the same calls on their emulators (one create, with the same fields; the
//! gateway's `GET` is replaced by waiting for the fifth webhook), so overhead = gateway −
//! direct at each percentile is the gateway's own time per Circle transfer, excluding the
//! emulator's, plus the agent's own hop to the gateway (one more local HTTP exchange) and the
//! wait for the webhooks' delivery (five sequential connections from the emulator's sender to
//! the gateway) instead of one `GET`.
//!
//! Phases:
//!
//! 1. Warm-up: each path closed loop for [`WARM_UP`].
//! 2. *Open loop* at `CIRCLE_BENCH_RATE` transfers/s (default 20) for `CIRCLE_BENCH_SECONDS`
//!    (default 10) per path: sends are scheduled on a fixed clock by a sender thread and each
//!    latency runs from the *scheduled* send time to the full response (body read), so a stall
//!    delays every request behind it instead of hiding them (no coordinated omission). The two
//!    paths take turns in [`OPEN_SLICE`] slices (each drains before the next starts; each round
//!    starts with the other path), so background noise falls on both alike. Overhead = gateway
//!    − direct at p50, p90, p99, p99.9 and max. At the defaults each path has 200 samples, so
//!    p99.9 and max are the same single sample, and p99 is the second worst. Each slice's p50
//!    is reported too: the gateway's in-doubt check reads every attempt record in the ledger
//!    on every transfer, so its time grows with the ledger.
//!
//!    Beside it, what waiting for webhooks costs by itself: for the direct transfers of the
//!    open loop, from the creation sent to the `GET` that finds `COMPLETE`, and to the arrival
//!    of the `COMPLETE` notification (the fifth) at the direct path's sink, an idle receiver
//!    that does no work. The gateway waits for that notification instead of asking, so the
//!    difference is the part of the overhead that is the emulator's delivery, not the
//!    gateway's work.
//! 3. *Closed loop*, 1 transfer in flight, `CIRCLE_BENCH_SECONDS` per path: transfers/s.
//!
//! Beside the open loop's latencies, each path's CPU per transfer by thread group (client,
//! gateway runtime, store writer, emulators and the direct path's webhook sink, pacer) from
//! `/proc/self/task/*/schedstat`: time on a CPU, and time runnable but waiting for one.
//!
//! At the end, every transfer must have moved money exactly once: each emulator holds exactly
//! as many transfers as its path sent, all `COMPLETE` with a `txHash`, distinct idempotency
//! keys and `refId`s, five notifications each, and the transaction ids the path was answered
//! are exactly those transfers.
//!
//! The gateway's log (`info`) is counted for `WARN` and `ERROR` lines.
//!
//! The machine is shared with whatever else runs: the load average at start and the
//! machine-wide CPU and I/O stall (PSI `some`) during the open loop are reported beside the
//! figures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use trustos::home::{Home, ensure_initialized};
use trustos_adapters::circle::client::{
    CircleClient, ClientOptions, FeeLevel, TransferRequest, idempotency_key_for,
};
use trustos_adapters::circle::{ApiKey, EntitySecret, TransactionState};
use trustos_adapters::testkit::circle::{CircleEmulator, DEFAULT_WALLET_ID, EmulatorConfig};
use trustos_kernel::canonical::Digest;

use support::{
    PERCENTILES, Phase, closed_loop, cpu_model, env_number, load_average, nanos, open_loop,
    pressure, pressure_share, scratch_dir,
};

/// The variable `[circle] api_key_env` names.
const API_KEY_ENV: &str = "TRUSTOS_BENCH_CIRCLE_API_KEY";
/// The variable `[circle] entity_secret_env` names.
const SECRET_ENV: &str = "TRUSTOS_BENCH_CIRCLE_ENTITY_SECRET";
/// The agent's bearer token.
const TOKEN: &str = "circle-bench-token-3a9e51";
/// Base Sepolia.
const NETWORK: &str = "eip155:84532";
/// Circle's id of USDC on Base Sepolia (as the emulator is told; it checks only the shape).
const TOKEN_ID: &str = "5797fbd6-3795-519d-84ca-ec4c5f80c3b1";
/// The payee.
const PAYEE: &str = "0x1111111111111111111111111111111111111111";
/// `[circle].poll_interval_ms`: the default; webhooks drive the measured transfers.
const POLL_INTERVAL_MS: u64 = 2000;
/// `[circle].answer_timeout_seconds`.
const ANSWER_TIMEOUT_SECONDS: u64 = 10;
/// Open-loop phases run in slices of this length, taking turns.
const OPEN_SLICE: Duration = Duration::from_secs(2);
/// Warm-up per path (closed loop, 1 in flight).
const WARM_UP: Duration = Duration::from_secs(1);
/// Longest wait for any one transfer (above the gateway's answer timeout).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// The direct path gives up on a transfer not `COMPLETE` after this many `GET`s.
const MAX_GETS: u64 = 1000;
/// Notifications per completed transfer: `INITIATED`, `QUEUED`, `SENT`, `CONFIRMED`, `COMPLETE`.
const NOTIFICATIONS_PER_TRANSFER: usize = 5;

/// The profile: Circle transfers (server `circle`, tool `transfer`) are paid; USDC on Base
/// Sepolia; any payee the first time; at most 1 USDC a transfer; a daily budget no run comes
/// near.
const PROFILE: &str = r#"
[profile]
name = "circle-bench"
description = "An agent paying a supplier again and again through the Circle lane."

[defaults]
unknown_agent = "deny"
mode = { low = "hard", high = "hard", paid = "hard" }

[[subjects]]
tenant = "bench"
agent = "buyer"

[[routes]]
id = "circle-transfer"
risk = "paid"
mcp = { server = "circle", tool = "transfer" }

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
// The direct path's webhook sink
// ---------------------------------------------------------------------------------------------

/// What the sink counts and times.
#[derive(Default)]
struct Sink {
    /// Notifications received.
    received: AtomicU64,
    /// Whether direct transfers are timed now (open loop).
    recording: AtomicBool,
    /// Timed direct transfers not yet announced `COMPLETE`: when their creation was sent, by
    /// `refId`.
    started: Mutex<HashMap<String, Instant>>,
    /// Per timed transfer, from its creation sent to its `COMPLETE` notification received, in
    /// nanoseconds.
    webhook_done: Mutex<Vec<u64>>,
    /// Per timed transfer, from its creation sent to the `GET` that found it `COMPLETE`, in
    /// nanoseconds.
    get_done: Mutex<Vec<u64>>,
}

impl Sink {
    /// Notes a notification: a `COMPLETE` one of a timed transfer ends its webhook wait.
    fn note(&self, body: &[u8]) {
        let received = Instant::now();
        self.received.fetch_add(1, Ordering::Relaxed);
        let Ok(envelope) = serde_json::from_slice::<Value>(body) else {
            return;
        };
        let notification = &envelope["notification"];
        if notification["state"] != "COMPLETE" {
            return;
        }
        let Some(ref_id) = notification["refId"].as_str() else {
            return;
        };
        if let Some(started) = self.started.lock().unwrap().remove(ref_id) {
            self.webhook_done
                .lock()
                .unwrap()
                .push(nanos(received.saturating_duration_since(started)));
        }
    }
}

/// Answers every request `200 {}` after reading it whole and noting it, until `stop` fires.
async fn serve_sink(
    listener: tokio::net::TcpListener,
    sink: Arc<Sink>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let sink = Arc::clone(&sink);
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                        let sink = Arc::clone(&sink);
                        async move {
                            if let Ok(body) = request.into_body().collect().await {
                                sink.note(&body.to_bytes());
                            }
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
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
    /// The agent's HTTP client.
    http: HttpClient,
    /// `http://<front>/rails/circle/transfers`.
    gateway: Uri,
    bearer: HeaderValue,
    /// The direct integration's client, on the direct path's emulator.
    circle: CircleClient,
    /// Numbers the transfers of both paths (amounts, keys, references).
    next: AtomicU64,
    /// `GET`s the direct path made.
    direct_gets: AtomicU64,
    /// The direct path's webhook sink, which also times its transfers.
    sink: Arc<Sink>,
    /// Transaction ids each path was answered, with how many were answered twice.
    answered: Mutex<BTreeMap<PathKind, (HashSet<String>, u64)>>,
}

impl Target {
    /// The next transfer's number and amount in base units (distinct for every transfer).
    fn next_amount(&self) -> (u64, u64) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n, 1 + n)
    }

    fn answered(&self, path: PathKind, id: String) -> Result<(), String> {
        let mut answered = self.answered.lock().unwrap();
        let (ids, twice) = answered.entry(path).or_default();
        if ids.insert(id.clone()) {
            Ok(())
        } else {
            *twice += 1;
            Err(format!("transaction {id} answered twice"))
        }
    }
}

/// One direct transfer: create, then `GET` until `COMPLETE`.
async fn direct_once(target: &Target) -> Result<(), String> {
    let (n, amount) = target.next_amount();
    let request = TransferRequest {
        idempotency_key: idempotency_key_for(&format!("bench-direct-{n}")),
        wallet_id: DEFAULT_WALLET_ID.to_owned(),
        token_id: TOKEN_ID.to_owned(),
        decimals: 6,
        amount_base_units: u128::from(amount),
        destination_address: PAYEE.to_owned(),
        fee_level: FeeLevel::Medium,
        // As long as the gateway's (its decision id).
        ref_id: Some(format!("direct_{n:024x}")),
    };
    let started = Instant::now();
    if target.sink.recording.load(Ordering::Relaxed)
        && let Some(ref_id) = &request.ref_id
    {
        target
            .sink
            .started
            .lock()
            .unwrap()
            .insert(ref_id.clone(), started);
    }
    let created = target
        .circle
        .create_transfer(&request)
        .await
        .map_err(|err| format!("create: {err}"))?;
    for _ in 0..MAX_GETS {
        target.direct_gets.fetch_add(1, Ordering::Relaxed);
        let transaction = target
            .circle
            .get_transaction(&created.id)
            .await
            .map_err(|err| format!("get: {err}"))?;
        match transaction.state {
            TransactionState::Complete => {
                if target.sink.recording.load(Ordering::Relaxed) {
                    let took = nanos(started.elapsed());
                    target.sink.get_done.lock().unwrap().push(took);
                }
                return target.answered(PathKind::Direct, transaction.id);
            }
            state if state.is_final() => return Err(format!("transfer ended {state}")),
            _ => {}
        }
    }
    Err(format!("not COMPLETE after {MAX_GETS} GETs"))
}

/// One transfer through the gateway, its answer checked.
async fn gateway_once(target: &Target) -> Result<(), String> {
    let (n, amount) = target.next_amount();
    let body = json!({
        "destination": PAYEE,
        "amount": amount.to_string(),
        "asset": "usdc",
        "network": NETWORK,
        "resource": format!("https://supplier.example/invoices/{n}"),
    });
    let request = Request::post(target.gateway.clone())
        .header(AUTHORIZATION, target.bearer.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = target
        .http
        .request(request)
        .await
        .map_err(|err| format!("request failed: {err}"))?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("body failed: {err}"))?
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let receipt = answer["receipt"].as_str().unwrap_or_default();
    let id = answer["transactionId"].as_str().unwrap_or_default();
    if status != StatusCode::OK
        || answer["status"] != "completed"
        || answer["state"] != "COMPLETE"
        || receipt.split('.').count() != 3
        || id.is_empty()
    {
        return Err(format!(
            "gateway: {status} {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    target.answered(PathKind::Gateway, id.to_owned())
}

/// One transfer on `path`, checked, within [`RESPONSE_TIMEOUT`].
async fn run_once(target: &Target, path: PathKind) -> Result<(), String> {
    let work = async {
        match path {
            PathKind::Direct => direct_once(target).await,
            PathKind::Gateway => gateway_once(target).await,
        }
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, work)
        .await
        .map_err(|_| format!("no answer within {RESPONSE_TIMEOUT:?}"))?
}

// ---------------------------------------------------------------------------------------------
// Machine
// ---------------------------------------------------------------------------------------------

/// Thread groups of this process by thread name: the gateway's runtime (workers and blocking
/// pool), the store's writer thread, the emulators' threads and the direct path's webhook sink,
/// the open loop's pacer; everything else is the client (the main thread).
const THREAD_GROUPS: [&str; 5] = ["client", "gateway", "store_writer", "emulators", "pacer"];

/// The [`THREAD_GROUPS`] entry of a thread named `name`.
fn thread_group(name: &str) -> &'static str {
    match name {
        "gateway" => THREAD_GROUPS[1],
        n if n.starts_with("trustos-store") => THREAD_GROUPS[2],
        "emulator" | "webhook-sink" => THREAD_GROUPS[3],
        "pacer" => THREAD_GROUPS[4],
        _ => THREAD_GROUPS[0],
    }
}

/// The median of `phase`'s samples in milliseconds (unsorted samples).
fn median_ms(phase: &Phase) -> f64 {
    let mut nanos = phase.nanos.clone();
    nanos.sort_unstable();
    nanos
        .get(nanos.len() / 2)
        .map_or(f64::NAN, |n| *n as f64 / 1e6)
}

/// What an emulator holds, checked against `sent` transfers answered with `answered` ids.
fn check_emulator(
    name: &str,
    emulator: &CircleEmulator,
    sent: usize,
    answered: &HashSet<String>,
    problems: &mut Vec<String>,
) -> Value {
    let transfers = emulator.transfers();
    let complete = transfers
        .iter()
        .filter(|t| t.state == TransactionState::Complete && t.tx_hash.is_some())
        .count();
    let keys: HashSet<&str> = transfers
        .iter()
        .map(|t| t.idempotency_key.as_str())
        .collect();
    let refs: HashSet<&str> = transfers
        .iter()
        .filter_map(|t| t.ref_id.as_deref())
        .collect();
    let ids: HashSet<String> = transfers.iter().map(|t| t.id.clone()).collect();
    let notifications = emulator.notifications().len();
    if transfers.len() != sent
        || complete != sent
        || keys.len() != sent
        || refs.len() != sent
        || ids != *answered
        || notifications != NOTIFICATIONS_PER_TRANSFER * sent
    {
        problems.push(format!(
            "{name}: {sent} transfers sent, the emulator holds {} ({complete} COMPLETE with a \
             txHash, {} distinct idempotency keys, {} distinct refIds, {notifications} \
             notifications), {} answered ids, {} of them the emulator's: not exactly one \
             completed transfer each",
            transfers.len(),
            keys.len(),
            refs.len(),
            answered.len(),
            answered.intersection(&ids).count(),
        ));
    }
    json!({
        "transfers": transfers.len(),
        "complete_with_tx_hash": complete,
        "distinct_idempotency_keys": keys.len(),
        "distinct_ref_ids": refs.len(),
        "notifications": notifications,
        "answered_ids": answered.len(),
        "answered_ids_matching": answered.intersection(&ids).count(),
        "sent": sent,
    })
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

fn main() {
    // `std::env::set_var` is unsafe in edition 2024 and this workspace forbids unsafe code: run
    // this same harness again with the Circle secrets' variables set (the emulator's defaults).
    let emulator_defaults = EmulatorConfig::default();
    if std::env::var(API_KEY_ENV).as_deref() != Ok(emulator_defaults.api_key.as_str()) {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(std::env::args_os().skip(1))
            .env(API_KEY_ENV, &emulator_defaults.api_key)
            .env(SECRET_ENV, &emulator_defaults.entity_secret_hex)
            .status()
            .unwrap();
        std::process::exit(status.code().unwrap_or(1));
    }
    let rate = env_number("CIRCLE_BENCH_RATE", 20.0);
    let length = Duration::from_secs_f64(env_number("CIRCLE_BENCH_SECONDS", 10.0));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load_avg = load_average();
    println!(
        "circle_lane: {cores} cores ({}), load average {load_avg}; open loop at {rate:.0} \
         transfers/s, {:.0} s per path",
        cpu_model(),
        length.as_secs_f64()
    );

    // The front's port, chosen first: the gateway's emulator must know where to send webhooks.
    let front_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    // The direct path's webhook sink.
    let sink_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    sink_listener.set_nonblocking(true).unwrap();
    let sink_addr = sink_listener.local_addr().unwrap();
    let sink = Arc::new(Sink::default());
    let (stop_sink, sink_stopped) = tokio::sync::oneshot::channel();
    let sink_thread = {
        let sink = Arc::clone(&sink);
        std::thread::Builder::new()
            .name("webhook-sink".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(sink_listener).unwrap();
                    serve_sink(listener, sink, sink_stopped).await;
                });
            })
            .unwrap()
    };

    // The emulators, started from a thread named `emulator` (their threads inherit the name).
    let (gateway_emulator, direct_emulator) = std::thread::Builder::new()
        .name("emulator".into())
        .spawn(move || {
            let start = |webhook_url: String| {
                CircleEmulator::start(EmulatorConfig {
                    webhook_url: Some(webhook_url),
                    auto_complete: true,
                    ..EmulatorConfig::default()
                })
                .unwrap()
            };
            (
                start(format!("http://127.0.0.1:{front_port}/webhooks/circle")),
                start(format!("http://{sink_addr}/webhooks/circle")),
            )
        })
        .unwrap()
        .join()
        .unwrap();

    // The gateway's home.
    let dir = scratch_dir("circle_lane");
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
        "\n[circle]\nbase_url = \"{}\"\napi_key_env = \"{API_KEY_ENV}\"\n\
         entity_secret_env = \"{SECRET_ENV}\"\nenvironment = \"testnet\"\n\
         wallet_id = \"{DEFAULT_WALLET_ID}\"\nanswer_timeout_seconds = {ANSWER_TIMEOUT_SECONDS}\n\
         poll_interval_ms = {POLL_INTERVAL_MS}\n\n\
         [[circle.tokens]]\nnetwork = \"{NETWORK}\"\nasset = \"usdc\"\ntoken_id = \"{TOKEN_ID}\"\n\
         decimals = 6\n\n\
         [[tokens]]\ntoken_sha256 = \"{}\"\ntenant = \"bench\"\nagent = \"buyer\"\n",
        gateway_emulator.base_url(),
        Digest::of(TOKEN.as_bytes())
    ));
    std::fs::write(&config_path, config).unwrap();

    // The gateway as `trustos serve` runs it (logging at `info` to `H/serve.log`).
    let support::Gateway {
        runtime: gateway_rt,
        daemon,
        addr: front_addr,
        task: front_task,
    } = support::start_gateway(&home, &format!("127.0.0.1:{front_port}"));

    // The client.
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let circle = CircleClient::new(
        direct_emulator.base_url(),
        ApiKey::parse(direct_emulator.api_key()).unwrap(),
        EntitySecret::from_hex(direct_emulator.entity_secret_hex()).unwrap(),
        ClientOptions::default(),
    )
    .unwrap();
    let target = Arc::new(Target {
        http: Client::builder(TokioExecutor::new()).build(connector),
        gateway: format!("http://{front_addr}/rails/circle/transfers")
            .parse()
            .unwrap(),
        bearer: HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap(),
        circle,
        next: AtomicU64::new(0),
        direct_gets: AtomicU64::new(0),
        sink: Arc::clone(&sink),
        answered: Mutex::new(BTreeMap::new()),
    });
    let paths = [PathKind::Direct, PathKind::Gateway];
    for path in paths {
        client_rt
            .block_on(run_once(&target, path))
            .unwrap_or_else(|err| panic!("first {} transfer: {err}", path.name()));
    }
    println!(
        "checked: direct creates and finds COMPLETE itself; the gateway answers 200 COMPLETE with \
         a receipt"
    );
    let open_loop_on = |path: PathKind, length: Duration| {
        open_loop(&client_rt, rate, length, thread_group, || {
            let target = Arc::clone(&target);
            async move { run_once(&target, path).await }
        })
    };
    let closed_loop_on = |path: PathKind, length: Duration| {
        closed_loop(&client_rt, length, || run_once(&target, path))
    };

    // Warm-up.
    let warm: BTreeMap<PathKind, Phase> = paths
        .into_iter()
        .map(|path| (path, closed_loop_on(path, WARM_UP)))
        .collect();

    // Open loop, in interleaved slices.
    let slice = OPEN_SLICE.min(length);
    let mut slice_medians: BTreeMap<PathKind, Vec<f64>> = BTreeMap::new();
    let open_started = (Instant::now(), pressure());
    let open = support::interleaved(&paths, length, slice, |path, this| {
        sink.recording
            .store(path == PathKind::Direct, Ordering::Relaxed);
        let part = open_loop_on(path, this);
        sink.recording.store(false, Ordering::Relaxed);
        slice_medians
            .entry(path)
            .or_default()
            .push(median_ms(&part));
        part
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
        let phase = closed_loop_on(path, length);
        println!(
            "  closed {:<8} {:.0} transfers/s  errors {}",
            path.name(),
            phase.rate,
            phase.errors
        );
        closed.insert(path, phase);
    }
    let store_mib =
        std::fs::metadata(home.database_path()).map_or(0.0, |m| m.len() as f64) / (1024.0 * 1024.0);

    // Every webhook delivered, then the gateway and the sink stopped before counting.
    gateway_emulator.flush_webhooks();
    direct_emulator.flush_webhooks();
    front_task.abort();
    drop(daemon);
    gateway_rt.shutdown_timeout(Duration::from_secs(2));
    let _ = stop_sink.send(());
    sink_thread.join().unwrap();
    let timed = |samples: &Mutex<Vec<u64>>| {
        Phase {
            nanos: std::mem::take(&mut *samples.lock().unwrap()),
            ..Phase::default()
        }
        .finish()
    };
    let get_done = timed(&sink.get_done);
    let webhook_done = timed(&sink.webhook_done);
    let webhook_missing = sink.started.lock().unwrap().len();
    let serve_log = std::fs::read_to_string(home.root().join("serve.log")).unwrap_or_default();
    let log_count = |level: &str| serve_log.lines().filter(|l| l.contains(level)).count();
    let (log_warn, log_error) = (log_count(" WARN "), log_count(" ERROR "));

    // Report.
    println!(
        "\nOpen loop at {rate:.0} transfers/s, {:.0} s per path ({:.0} s slices taking turns); \
         latency from scheduled send to full response, ms",
        length.as_secs_f64(),
        slice.as_secs_f64()
    );
    println!(
        "| path | transfers | p50 | p90 | p99 | p99.9 | max | errors |\n|---|---|---|---|---|---|---|---|"
    );
    for (path, label) in [
        (
            PathKind::Direct,
            "direct (CircleClient: create, then GET until COMPLETE)",
        ),
        (
            PathKind::Gateway,
            "gateway (POST /rails/circle/transfers: decision, create, webhooks, receipt)",
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

    println!("\np50 of each open-loop slice, in order, ms");
    for path in paths {
        let medians: Vec<String> = slice_medians[&path]
            .iter()
            .map(|m| format!("{m:.3}"))
            .collect();
        println!("  {:<8} {}", path.name(), medians.join("  "));
    }

    println!(
        "\nDirect transfers of the open loop, from the creation sent (not the scheduled time): \
         until the GET finds COMPLETE, and until the COMPLETE webhook (the fifth) reaches an idle \
         receiver, the direct path's sink; the second is what the gateway's wait for webhooks \
         costs without any gateway work, ms"
    );
    println!(
        "| from the creation sent to | transfers | p50 | p90 | p99 | p99.9 | max |\n|---|---|---|---|---|---|---|"
    );
    for (label, phase) in [
        ("the GET that finds COMPLETE", &get_done),
        ("the COMPLETE webhook at the sink", &webhook_done),
    ] {
        print!("| {label} | {} |", phase.nanos.len());
        for (_, f) in PERCENTILES {
            print!(" {:.3} |", phase.ms(f));
        }
        println!();
    }
    if webhook_missing > 0 {
        println!("({webhook_missing} timed transfers' COMPLETE webhook never reached the sink)");
    }

    support::print_cpu_table("transfer", &paths, PathKind::name, &open, &THREAD_GROUPS);

    println!(
        "\nClosed loop, 1 in flight, {:.0} s per path: transfers/s (p50 / p99 ms)",
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

    // Checks: every transfer moved money exactly once.
    // The first checked transfer of each path, then the warm-up, open and closed loops.
    let sent = |path: PathKind| 1 + warm[&path].sent + open[&path].sent + closed[&path].sent;
    let (direct_sent, gateway_sent) = (sent(PathKind::Direct), sent(PathKind::Gateway));
    let mut problems = Vec::new();
    let errors = warm.values().map(|p| p.errors).sum::<usize>()
        + open.values().map(|p| p.errors).sum::<usize>()
        + closed.values().map(|p| p.errors).sum::<usize>();
    if errors > 0 {
        problems.push(format!(
            "{errors} transfers failed (first: {:?})",
            warm.values()
                .find_map(|p| p.first_error.as_ref())
                .or(open.values().find_map(|p| p.first_error.as_ref()))
                .or(closed.values().find_map(|p| p.first_error.as_ref()))
        ));
    }
    let answered = std::mem::take(&mut *target.answered.lock().unwrap());
    let empty = (HashSet::new(), 0);
    let (direct_ids, direct_twice) = answered.get(&PathKind::Direct).unwrap_or(&empty);
    let (gateway_ids, gateway_twice) = answered.get(&PathKind::Gateway).unwrap_or(&empty);
    let direct_counts = check_emulator(
        "direct",
        &direct_emulator,
        direct_sent,
        direct_ids,
        &mut problems,
    );
    let gateway_counts = check_emulator(
        "gateway",
        &gateway_emulator,
        gateway_sent,
        gateway_ids,
        &mut problems,
    );
    let direct_gets = target.direct_gets.load(Ordering::Relaxed);
    let sink_received = sink.received.load(Ordering::Relaxed);
    println!(
        "\nEmulators: direct {direct_counts}, {direct_gets} GETs, {sink_received} webhooks to its sink; \
         gateway {gateway_counts}; transaction ids answered twice: direct {direct_twice}, \
         gateway {gateway_twice}"
    );
    println!("Gateway log (info): {log_warn} WARN lines, {log_error} ERROR lines");
    println!(
        "Machine-wide stall during the open loop (PSI `some`, % of wall time): CPU {:.1}%, I/O \
         {:.1}%; load average at start: {load_avg}; store file after the run: {store_mib:.1} MiB",
        open_pressure["cpu_some_pct"].as_f64().unwrap_or(f64::NAN),
        open_pressure["io_some_pct"].as_f64().unwrap_or(f64::NAN),
    );

    let mut overhead_json = serde_json::Map::new();
    for ((name, _), value) in PERCENTILES.iter().zip(&overhead) {
        overhead_json.insert(format!("{}_ms", name.replace('.', "")), json!(value));
    }
    let report = json!({
        "machine": {"cores": cores, "cpu": cpu_model(), "load_average_at_start": load_avg},
        "open_loop_pressure": open_pressure,
        "seconds_per_path": length.as_secs_f64(),
        "gateway_circle_config": {
            "poll_interval_ms": POLL_INTERVAL_MS,
            "answer_timeout_seconds": ANSWER_TIMEOUT_SECONDS,
        },
        "open_loop": {
            "rate_per_s": rate,
            "slice_s": slice.as_secs_f64(),
            "direct": open[&PathKind::Direct].summary(),
            "gateway": open[&PathKind::Gateway].summary(),
            "overhead": overhead_json,
            "slice_p50_ms": {
                "direct": slice_medians[&PathKind::Direct],
                "gateway": slice_medians[&PathKind::Gateway],
            },
        },
        "closed_loop_1_in_flight": {
            "direct": closed[&PathKind::Direct].summary(),
            "gateway": closed[&PathKind::Gateway].summary(),
        },
        "emulators": {
            "direct": direct_counts,
            "direct_gets": direct_gets,
            "direct_sink_webhooks": sink_received,
            "gateway": gateway_counts,
        },
        "direct_webhook_wait": {
            "create_to_get_complete": get_done.percentiles(),
            "create_to_complete_webhook_at_sink": webhook_done.percentiles(),
            "timed": webhook_done.nanos.len(),
            "webhook_never_arrived": webhook_missing,
        },
        "gateway_log": {"warn_lines": log_warn, "error_lines": log_error},
        "store_mib_after_run": store_mib,
        "errors": errors,
        "problems": problems,
    });
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("circle_lane.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", out.display());

    drop(client_rt);
    drop(gateway_emulator);
    drop(direct_emulator);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(problems.is_empty(), "{}", problems.join("; "));
}
