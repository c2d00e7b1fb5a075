//! Test support: an in-process x402 facilitator for the `exact` scheme on EVM, and the chain it
//! settles on, with injectable faults.
//!
//! Like [`super::circle`], it is an HTTP/1.1 server (hyper 1 on a current-thread tokio runtime in
//! its own thread) on `127.0.0.1:0`; it stops when dropped. One emulator serves one chain
//! ([`EmulatorConfig::chain_id`], Base Sepolia by default) with the EIP-3009 tokens of
//! [`EmulatorConfig::tokens`] (Circle's USDC on Base Sepolia by default).
//!
//! # Endpoints
//!
//! Facilitator (x402 v2 spec §7; v1 bodies accepted too):
//!
//! - `POST /verify` with `{x402Version, paymentPayload, paymentRequirements}` →
//!   `{"isValid": true, "payer"}` or `{"isValid": false, "invalidReason", "payer"}`;
//! - `POST /settle`, same body → `{"success": true, "payer", "transaction", "network"}` or
//!   `{"success": false, "errorReason", "payer", "transaction": "", "network"}`;
//! - `GET /supported` → `{"kinds": [{x402Version: 1|2, scheme: "exact", network}], "extensions":
//!   [], "signers": {"eip155:*": [facilitator address]}}`.
//!
//! Chain: `POST /rpc`, Ethereum JSON-RPC 2.0: `eth_chainId`, `eth_blockNumber`,
//! `eth_getBlockByNumber` (`number`, `hash`, `parentHash`, `timestamp`, `transactions` as hashes),
//! `eth_getLogs` (`address` string or array, `topics` with `null` wildcards and OR-arrays,
//! `fromBlock`/`toBlock` as `earliest`, `latest`, `safe`, `finalized`, `pending` or hex, or
//! `blockHash`). Log objects carry `address`, `topics`, `data`, `blockNumber`, `blockHash`,
//! `blockTimestamp`, `transactionHash`, `transactionIndex`, `logIndex`, `removed: false`.
//!
//! # What a settlement does
//!
//! `/verify` and `/settle` run the same checks, in the reference facilitator's order: scheme
//! `exact` on both sides; the payload's `accepted` equal (as JSON) to `paymentRequirements` (v2;
//! in v1 the payload's `scheme` and `network`); the network is this chain (CAIP-2 in v2, the v1
//! name in v1); `extra.name` and `extra.version` present; the EIP-712 signature (domain: those
//! name and version, the chain id, `verifyingContract` = the requirements' `asset`) recovers to
//! `authorization.from` (strictly, via [`crate::x402::evm::recover_signer`]); `to == payTo`;
//! `validBefore ≥ now + 6`; `validAfter < now`; `value == amount`; the asset is a token of this
//! chain and `extra` names its real EIP-712 domain; `(asset, from, nonce)` not used yet (FiatToken
//! `authorizationState`); the payer's balance (default [`EmulatorConfig::default_balance`], see
//! [`X402Emulator::set_balance`]) covers `value`. A successful settle appends one block holding
//! one transaction whose logs, on the asset contract, are `AuthorizationUsed(authorizer, nonce)`
//! (log 0) and `Transfer(from, to, value)` (log 1); the nonce is then used forever, so a second
//! settle of the same authorization fails with `invalid_exact_evm_nonce_already_used` and
//! `/verify` reports it invalid.
//!
//! Blocks: block 0 is created at start; besides settlement blocks, an empty block is appended
//! whenever a request arrives [`EmulatorConfig::block_time_seconds`] or more after the last block,
//! so the head's timestamp follows the emulator's clock (the wall clock plus
//! [`X402Emulator::set_clock_offset`]).
//!
//! # Faults ([`Fault`], [`X402Emulator::push_fault`]), each for one request
//!
//! - [`Fault::SettleThenDrop`], [`Fault::ServerError`], [`Fault::Delay`] apply to the next
//!   `POST /settle`: it settles on chain then closes the connection unanswered (the lost answer);
//!   answers `500` and settles nothing; waits, then answers normally.
//! - [`Fault::RpcMalformed`], [`Fault::RpcServerError`], [`Fault::RpcDelay`] apply to the next
//!   `POST /rpc`: a `200` whose body is not JSON-RPC; a `500`; a delay.
//!
//! # Sources and what is the emulator's own choice
//!
//! Facilitator contract: x402 v2 specification §7 (`/verify`, `/settle`, `/supported`) and §9
//! (error codes), <https://github.com/coinbase/x402/blob/main/specs/x402-specification-v2.md>;
//! the `exact` EVM scheme, <https://github.com/coinbase/x402/blob/main/specs/schemes/exact/scheme_exact_evm.md>.
//! Reason strings and check order: the reference `@x402/evm` 2.27.0 facilitator
//! (`src/exact/facilitator/eip3009.ts`, `errors.ts`; the version pinned in
//! `adapters/tests/reference/package.json`). EIP-3009 and FiatToken semantics (`AuthorizationUsed`,
//! strict `validAfter < now < validBefore`, one use per `(authorizer, nonce)`):
//! <https://eips.ethereum.org/EIPS/eip-3009>, <https://github.com/circlefin/stablecoin-evm>
//! (`contracts/v2/EIP3009.sol`). JSON-RPC methods and the log object:
//! <https://ethereum.github.io/execution-apis/api-documentation/>.
//!
//! The emulator's own choices (not from a spec): comparing `accepted` with the requirements as
//! whole JSON values (reason `invalid_payment_requirements`, from the spec's §9 list; the
//! reference facilitator leaves that to the resource server); `unsupported_scheme`,
//! `invalid_network`, `invalid_payload`, `invalid_x402_version` for those malformed inputs (§9);
//! `asset_not_deployed_contract` (the reference's string) for an unknown token; checking the
//! balance and the token's domain in `/verify` directly instead of by simulation; transaction and
//! block hashes (keccak256 of emulator-chosen bytes); one transaction per block; `500` bodies;
//! HTTP `400` for an unreadable body and `200` for every verdict (as the reference); JSON-RPC
//! error codes (`-32700`, `-32600`, `-32601`, `-32602`, from the JSON-RPC 2.0 spec).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher as _, Hasher as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy_primitives::{B256, U256, hex, keccak256};
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::x402::chain::{address_topic, authorization_used_topic, transfer_topic};
use crate::x402::evm::{
    Address, TokenDomain, TransferAuthorization, checksum, parse_address, recover_signer,
};
use crate::x402::networks;
use crate::x402::wire::ExactEvmPayload;

/// The emulator could not start, or a helper request failed.
#[derive(Debug, thiserror::Error)]
#[error("x402 emulator: {0}")]
pub struct EmulatorError(String);

impl EmulatorError {
    /// An error saying `what`.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// Seconds `validBefore` must lie ahead of now (the reference facilitator's margin).
const VALID_BEFORE_MARGIN_SECONDS: u64 = 6;

/// Hardhat account #1, the emulated facilitator's signer (public test key; never fund it).
pub const FACILITATOR_ADDRESS: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/// One EIP-3009 token deployed on the emulated chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmulatedToken {
    /// Contract address.
    pub address: Address,
    /// EIP-712 domain name.
    pub name: String,
    /// EIP-712 domain version.
    pub version: String,
}

/// What the emulator is started with.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// EIP-155 chain id of the one chain served.
    pub chain_id: u64,
    /// The tokens on it.
    pub tokens: Vec<EmulatedToken>,
    /// Balance of every holder not set with [`X402Emulator::set_balance`].
    pub default_balance: U256,
    /// Seconds after the last block at which a request makes the chain append an empty block.
    pub block_time_seconds: u64,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            chain_id: 84_532,
            tokens: vec![EmulatedToken {
                // Circle's USDC on Base Sepolia, domain `USDC` / `2`.
                address: Address::new([
                    0x03, 0x6c, 0xbd, 0x53, 0x84, 0x2c, 0x54, 0x26, 0x63, 0x4e, 0x79, 0x29, 0x54,
                    0x1e, 0xc2, 0x31, 0x8f, 0x3d, 0xcf, 0x7e,
                ]),
                name: "USDC".to_owned(),
                version: "2".to_owned(),
            }],
            default_balance: U256::from(1_000_000_000_000_000u128),
            block_time_seconds: 2,
        }
    }
}

/// An injectable fault (see the module docs); each applies to one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next `/settle` settles on chain, then the connection closes unanswered.
    SettleThenDrop,
    /// The next `/settle` answers `500` and settles nothing.
    ServerError,
    /// The next `/settle` waits this long before doing anything.
    Delay(Duration),
    /// The next `/rpc` answers `200` with a body that is not JSON-RPC.
    RpcMalformed,
    /// The next `/rpc` answers `500`.
    RpcServerError,
    /// The next `/rpc` waits this long before answering.
    RpcDelay(Duration),
}

/// A settlement on the emulated chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// Transaction hash, `0x` + 64 lower-case hex digits.
    pub tx_hash: String,
    /// Its block.
    pub block_number: u64,
    /// `authorization.from`.
    pub payer: Address,
    /// `authorization.to`.
    pub pay_to: Address,
    /// Amount moved.
    pub value: U256,
    /// The EIP-3009 nonce.
    pub nonce: B256,
    /// The token.
    pub asset: Address,
    /// Whether the `/settle` request was answered (false after [`Fault::SettleThenDrop`]).
    pub answered: bool,
}

/// A facilitator's answer to `/settle` (or `/verify`), as a resource server reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettleAnswer {
    /// HTTP status.
    pub status: u16,
    /// `success` (`/settle`) or `isValid` (`/verify`).
    pub success: bool,
    /// `errorReason` or `invalidReason`.
    pub error_reason: Option<String>,
    /// `payer`.
    pub payer: Option<String>,
    /// `transaction` (empty on failure, absent from `/verify`).
    pub transaction: String,
    /// `network`.
    pub network: String,
    /// The whole body.
    pub body: Value,
}

struct Block {
    hash: B256,
    timestamp: u64,
    transactions: Vec<B256>,
}

struct Log {
    address: Address,
    topics: Vec<B256>,
    data: Vec<u8>,
    block_number: u64,
    tx_hash: B256,
    log_index: u64,
}

struct Inner {
    blocks: Vec<Block>,
    logs: Vec<Log>,
    used: HashSet<(Address, Address, B256)>,
    balances: HashMap<(Address, Address), U256>,
    settlements: Vec<Settlement>,
    settle_faults: VecDeque<Fault>,
    rpc_faults: VecDeque<Fault>,
    clock_offset: i64,
    answer_delay: Option<Duration>,
}

struct Shared {
    config: EmulatorConfig,
    network: String,
    inner: Mutex<Inner>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running emulator; stops when dropped.
pub struct X402Emulator {
    shared: Arc<Shared>,
    server: super::LocalServer,
}

impl X402Emulator {
    /// Starts the emulator on `127.0.0.1` on a free port.
    pub fn start(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        if config.chain_id == 0 {
            return Err(EmulatorError("chain id must be positive".into()));
        }
        let genesis = Block {
            hash: keccak256(format!("trustos-emulator/genesis/{}", config.chain_id)),
            timestamp: wall_clock(0),
            transactions: Vec::new(),
        };
        let shared = Arc::new(Shared {
            network: format!("eip155:{}", config.chain_id),
            config,
            inner: Mutex::new(Inner {
                blocks: vec![genesis],
                logs: Vec::new(),
                used: HashSet::new(),
                balances: HashMap::new(),
                settlements: Vec::new(),
                settle_faults: VecDeque::new(),
                rpc_faults: VecDeque::new(),
                clock_offset: 0,
                answer_delay: None,
            }),
        });
        let server =
            super::LocalServer::start(Arc::clone(&shared), handle).map_err(EmulatorError)?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:<port>`, the facilitator's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// The JSON-RPC endpoint, `<base>/rpc`.
    pub fn rpc_url(&self) -> String {
        format!("{}/rpc", self.server.base_url())
    }

    /// The CAIP-2 network served, `eip155:<chain id>`.
    pub fn network(&self) -> &str {
        &self.shared.network
    }

    /// Drops every queued fault.
    pub fn clear_faults(&self) {
        let mut inner = self.shared.lock();
        inner.settle_faults.clear();
        inner.rpc_faults.clear();
    }

    /// Holds every later `/settle` answer, after the settlement is on chain, for a random time
    /// up to `max` (`None`: answer at once): a resource server killed meanwhile never learns
    /// that money moved.
    pub fn set_answer_delay(&self, max: Option<Duration>) {
        self.shared.lock().answer_delay = max;
    }

    /// Queues a fault (see [`Fault`]).
    pub fn push_fault(&self, fault: Fault) {
        let mut inner = self.shared.lock();
        match fault {
            Fault::SettleThenDrop | Fault::ServerError | Fault::Delay(_) => {
                inner.settle_faults.push_back(fault);
            }
            Fault::RpcMalformed | Fault::RpcServerError | Fault::RpcDelay(_) => {
                inner.rpc_faults.push_back(fault);
            }
        }
    }

    /// Moves the emulator's clock `seconds` away from the wall clock (the facilitator's checks
    /// and new block timestamps follow it).
    pub fn set_clock_offset(&self, seconds: i64) {
        self.shared.lock().clock_offset = seconds;
    }

    /// Sets `holder`'s balance of `asset`.
    pub fn set_balance(&self, asset: Address, holder: Address, amount: U256) {
        self.shared.lock().balances.insert((asset, holder), amount);
    }

    /// `holder`'s balance of `asset`.
    pub fn balance(&self, asset: Address, holder: Address) -> U256 {
        let inner = self.shared.lock();
        balance_of(&self.shared.config, &inner, asset, holder)
    }

    /// Every settlement, in chain order.
    pub fn settlements(&self) -> Vec<Settlement> {
        self.shared.lock().settlements.clone()
    }

    /// The settlements of one nonce (at most one, on a FiatToken).
    pub fn settlements_for_nonce(&self, nonce: B256) -> Vec<Settlement> {
        self.shared
            .lock()
            .settlements
            .iter()
            .filter(|s| s.nonce == nonce)
            .cloned()
            .collect()
    }

    /// The latest block number.
    pub fn block_number(&self) -> u64 {
        head_number(&self.shared.lock())
    }

    /// POSTs `/settle` as a resource server does; see [`settle`].
    pub async fn settle(
        &self,
        payment_payload_json: &str,
        requirement_json: &str,
    ) -> Result<SettleAnswer, EmulatorError> {
        settle(
            self.server.base_url(),
            payment_payload_json,
            requirement_json,
        )
        .await
    }

    /// POSTs `/verify` as a resource server does; see [`verify`].
    pub async fn verify(
        &self,
        payment_payload_json: &str,
        requirement_json: &str,
    ) -> Result<SettleAnswer, EmulatorError> {
        verify(
            self.server.base_url(),
            payment_payload_json,
            requirement_json,
        )
        .await
    }
}

/// POSTs `{x402Version, paymentPayload, paymentRequirements}` to `<base_url>/settle`, the way a
/// resource server does (the payload and requirement texts are sent as they are; `x402Version`
/// is the payload's). An unanswered request (connection closed, timeout of 30 s) is an error.
pub async fn settle(
    base_url: &str,
    payment_payload_json: &str,
    requirement_json: &str,
) -> Result<SettleAnswer, EmulatorError> {
    post_facilitator(base_url, "/settle", payment_payload_json, requirement_json).await
}

/// POSTs the same body as [`settle`] to `<base_url>/verify`; `success` is `isValid`.
pub async fn verify(
    base_url: &str,
    payment_payload_json: &str,
    requirement_json: &str,
) -> Result<SettleAnswer, EmulatorError> {
    post_facilitator(base_url, "/verify", payment_payload_json, requirement_json).await
}

async fn post_facilitator(
    base_url: &str,
    path: &str,
    payment_payload_json: &str,
    requirement_json: &str,
) -> Result<SettleAnswer, EmulatorError> {
    let payload: &RawValue = serde_json::from_str(payment_payload_json)
        .map_err(|e| EmulatorError(format!("payment payload is not JSON: {e}")))?;
    let requirement: &RawValue = serde_json::from_str(requirement_json)
        .map_err(|e| EmulatorError(format!("requirement is not JSON: {e}")))?;
    let version = serde_json::from_str::<Value>(payment_payload_json)
        .ok()
        .and_then(|v| v.get("x402Version").and_then(Value::as_u64))
        .unwrap_or(2);
    let body = format!(
        r#"{{"x402Version":{version},"paymentPayload":{},"paymentRequirements":{}}}"#,
        payload.get(),
        requirement.get()
    );
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{}{path}", base_url.trim_end_matches('/')))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| EmulatorError(format!("request: {e}")))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| EmulatorError(format!("no answer from {path}: {e}")))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| EmulatorError(format!("reading the answer of {path}: {e}")))?
            .to_bytes();
        Ok::<_, EmulatorError>((status, bytes))
    };
    let (status, bytes) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| EmulatorError(format!("{path} timed out")))??;
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
    Ok(SettleAnswer {
        status,
        success: body
            .get("success")
            .or_else(|| body.get("isValid"))
            .and_then(Value::as_bool)
            .unwrap_or(false),
        error_reason: text("errorReason").or_else(|| text("invalidReason")),
        payer: text("payer"),
        transaction: text("transaction").unwrap_or_default(),
        network: text("network").unwrap_or_default(),
        body,
    })
}

/// The wall clock plus `offset` seconds, in Unix seconds.
fn wall_clock(offset: i64) -> u64 {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    seconds.saturating_add_signed(offset)
}

fn head_number(inner: &Inner) -> u64 {
    u64::try_from(inner.blocks.len().saturating_sub(1)).unwrap_or(u64::MAX)
}

fn balance_of(config: &EmulatorConfig, inner: &Inner, asset: Address, holder: Address) -> U256 {
    inner
        .balances
        .get(&(asset, holder))
        .copied()
        .unwrap_or(config.default_balance)
}

/// Appends an empty block when the last one is a block time old or more.
fn tick(config: &EmulatorConfig, inner: &mut Inner) -> u64 {
    let now = wall_clock(inner.clock_offset);
    let last = inner.blocks.last().map_or(0, |b| b.timestamp);
    if now >= last.saturating_add(config.block_time_seconds.max(1)) {
        let number = inner.blocks.len();
        inner.blocks.push(Block {
            hash: keccak256(format!(
                "trustos-emulator/block/{}/{number}",
                config.chain_id
            )),
            timestamp: now,
            transactions: Vec::new(),
        });
    }
    now
}

/// The connection is closed without a response ([`Fault::SettleThenDrop`]).
#[derive(Debug)]
struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("emulated lost answer: connection closed without a response")
    }
}

impl std::error::Error for Abort {}

fn respond(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(bytes)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Abort> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Abort),
    };
    match (&method, path.as_str()) {
        (&Method::GET, "/supported") => Ok(respond(StatusCode::OK, &supported(&shared))),
        (&Method::POST, "/verify") => Ok(facilitate(&shared, &body, false)),
        (&Method::POST, "/settle") => {
            let fault = shared.lock().settle_faults.pop_front();
            match fault {
                Some(Fault::ServerError) => Ok(respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "emulated facilitator failure"}),
                )),
                Some(Fault::SettleThenDrop) => {
                    let _ = facilitate(&shared, &body, true);
                    if let Some(last) = shared.lock().settlements.last_mut() {
                        last.answered = false;
                    }
                    Err(Abort)
                }
                Some(Fault::Delay(delay)) => {
                    tokio::time::sleep(delay).await;
                    Ok(facilitate(&shared, &body, true))
                }
                _ => {
                    let answer = facilitate(&shared, &body, true);
                    let delay = shared.lock().answer_delay;
                    if let Some(max) = delay {
                        let fraction =
                            (RandomState::new().build_hasher().finish() % 1_000) as f64 / 1_000.0;
                        tokio::time::sleep(max.mul_f64(fraction)).await;
                    }
                    Ok(answer)
                }
            }
        }
        (&Method::POST, "/rpc") => {
            let fault = shared.lock().rpc_faults.pop_front();
            match fault {
                Some(Fault::RpcMalformed) => {
                    let mut response =
                        Response::new(Full::new(Bytes::from_static(b"{\"jsonrpc\":\"2.0\",")));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("application/json"),
                    );
                    Ok(response)
                }
                Some(Fault::RpcServerError) => Ok(respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &json!({"error": "emulated node failure"}),
                )),
                Some(Fault::RpcDelay(delay)) => {
                    tokio::time::sleep(delay).await;
                    Ok(respond(StatusCode::OK, &rpc(&shared, &body)))
                }
                _ => Ok(respond(StatusCode::OK, &rpc(&shared, &body))),
            }
        }
        _ => Ok(respond(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found"}),
        )),
    }
}

fn supported(shared: &Shared) -> Value {
    let mut kinds = vec![json!({"x402Version": 2, "scheme": "exact", "network": shared.network})];
    if let Some(name) = networks::caip2_to_v1_name(&shared.network) {
        kinds.insert(
            0,
            json!({"x402Version": 1, "scheme": "exact", "network": name}),
        );
    }
    json!({
        "kinds": kinds,
        "extensions": [],
        "signers": {"eip155:*": [FACILITATOR_ADDRESS]},
    })
}

/// A checked, signed authorization, ready to settle.
struct Checked {
    asset: Address,
    authorization: TransferAuthorization,
}

/// A refusal: the reason string.
struct Refusal(&'static str);

/// `/verify` (`settle == false`) or `/settle`.
fn facilitate(shared: &Shared, body: &[u8], settle: bool) -> Response<Full<Bytes>> {
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return respond(
            StatusCode::BAD_REQUEST,
            &json!({"error": "the body is not a JSON object"}),
        );
    };
    let payer = request
        .get("paymentPayload")
        .and_then(|p| p.get("payload"))
        .and_then(|p| p.get("authorization"))
        .and_then(|a| a.get("from"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let network = request
        .get("paymentRequirements")
        .and_then(|r| r.get("network"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let mut inner = shared.lock();
    let now = tick(&shared.config, &mut inner);
    let outcome = check(shared, &inner, &request, now);
    let verdict = match outcome {
        Err(Refusal(reason)) => Err(reason),
        Ok(checked) if settle => Ok(Some(execute(shared, &mut inner, &checked, now))),
        Ok(_) => Ok(None),
    };
    drop(inner);
    let body = match (settle, verdict) {
        (false, Ok(_)) => json!({"isValid": true, "payer": payer}),
        (false, Err(reason)) => json!({"isValid": false, "invalidReason": reason, "payer": payer}),
        (true, Ok(tx)) => json!({
            "success": true,
            "payer": payer,
            "transaction": tx.unwrap_or_default(),
            "network": network,
        }),
        (true, Err(reason)) => json!({
            "success": false,
            "errorReason": reason,
            "payer": payer,
            "transaction": "",
            "network": network,
        }),
    };
    respond(StatusCode::OK, &body)
}

fn text<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    object.get(key).and_then(Value::as_str)
}

fn decimal(text: &str) -> Option<U256> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    U256::from_str_radix(text, 10).ok()
}

fn address(text: &str) -> Option<Address> {
    parse_address(&text.to_ascii_lowercase()).ok()
}

/// Every check of `/verify`, in the reference's order.
fn check(
    shared: &Shared,
    inner: &Inner,
    request: &Map<String, Value>,
    now: u64,
) -> Result<Checked, Refusal> {
    let version = request
        .get("x402Version")
        .and_then(Value::as_u64)
        .ok_or(Refusal("invalid_x402_version"))?;
    let Some(Value::Object(payload)) = request.get("paymentPayload") else {
        return Err(Refusal("invalid_payload"));
    };
    let Some(Value::Object(requirements)) = request.get("paymentRequirements") else {
        return Err(Refusal("invalid_payment_requirements"));
    };
    if payload.get("x402Version").and_then(Value::as_u64) != Some(version) {
        return Err(Refusal("invalid_x402_version"));
    }
    if text(requirements, "scheme") != Some("exact") {
        return Err(Refusal("unsupported_scheme"));
    }
    let network = text(requirements, "network").ok_or(Refusal("invalid_payment_requirements"))?;
    let (accepted_scheme, accepted_network, amount_key) = match version {
        2 => {
            let Some(Value::Object(accepted)) = payload.get("accepted") else {
                return Err(Refusal("invalid_payload"));
            };
            (
                text(accepted, "scheme"),
                text(accepted, "network"),
                "amount",
            )
        }
        1 => (
            text(payload, "scheme"),
            text(payload, "network"),
            "maxAmountRequired",
        ),
        _ => return Err(Refusal("invalid_x402_version")),
    };
    if accepted_scheme != Some("exact") {
        return Err(Refusal("invalid_exact_evm_scheme"));
    }
    let Some(Value::Object(extra)) = requirements.get("extra") else {
        return Err(Refusal("invalid_exact_evm_missing_eip712_domain"));
    };
    let (Some(name), Some(domain_version)) = (text(extra, "name"), text(extra, "version")) else {
        return Err(Refusal("invalid_exact_evm_missing_eip712_domain"));
    };
    if accepted_network != Some(network) {
        return Err(Refusal("invalid_exact_evm_network_mismatch"));
    }
    if version == 2 && payload.get("accepted") != request.get("paymentRequirements") {
        return Err(Refusal("invalid_payment_requirements"));
    }
    let chain_id = match version {
        2 if network.starts_with("eip155:") => networks::evm_chain_id(network),
        1 => networks::v1_name_to_caip2(network).and_then(|n| networks::evm_chain_id(&n)),
        _ => None,
    };
    if chain_id != Some(shared.config.chain_id) {
        return Err(Refusal("invalid_network"));
    }
    let asset = text(requirements, "asset")
        .and_then(address)
        .ok_or(Refusal("invalid_payment_requirements"))?;
    let pay_to = text(requirements, "payTo")
        .and_then(address)
        .ok_or(Refusal("invalid_payment_requirements"))?;
    let amount = text(requirements, amount_key)
        .and_then(decimal)
        .ok_or(Refusal("invalid_payment_requirements"))?;

    let exact: ExactEvmPayload = payload
        .get("payload")
        .cloned()
        .and_then(|p| serde_json::from_value(p).ok())
        .ok_or(Refusal("invalid_payload"))?;
    let auth = &exact.authorization;
    let nonce_bytes = auth
        .nonce
        .strip_prefix("0x")
        .filter(|d| d.len() == 64)
        .and_then(|d| hex::decode(d).ok())
        .ok_or(Refusal("invalid_payload"))?;
    let authorization = TransferAuthorization {
        from: address(&auth.from).ok_or(Refusal("invalid_payload"))?,
        to: address(&auth.to).ok_or(Refusal("invalid_payload"))?,
        value: decimal(&auth.value).ok_or(Refusal("invalid_exact_evm_authorization_value"))?,
        valid_after: decimal(&auth.valid_after).ok_or(Refusal("invalid_payload"))?,
        valid_before: decimal(&auth.valid_before).ok_or(Refusal("invalid_payload"))?,
        nonce: B256::from_slice(&nonce_bytes),
    };
    let domain = TokenDomain {
        name: name.to_owned(),
        version: domain_version.to_owned(),
        chain_id: shared.config.chain_id,
        verifying_contract: asset,
    };
    let signature = exact
        .signature
        .strip_prefix("0x")
        .and_then(|d| hex::decode(d).ok())
        .ok_or(Refusal("invalid_exact_evm_signature"))?;
    let signer = recover_signer(&authorization.signing_digest(&domain), &signature)
        .map_err(|_| Refusal("invalid_exact_evm_signature"))?;
    if signer != authorization.from {
        return Err(Refusal("invalid_exact_evm_signature"));
    }
    if authorization.to != pay_to {
        return Err(Refusal("invalid_exact_evm_recipient_mismatch"));
    }
    if authorization.valid_before < U256::from(now.saturating_add(VALID_BEFORE_MARGIN_SECONDS)) {
        return Err(Refusal(
            "invalid_exact_evm_payload_authorization_valid_before",
        ));
    }
    if authorization.valid_after >= U256::from(now) {
        return Err(Refusal(
            "invalid_exact_evm_payload_authorization_valid_after",
        ));
    }
    if authorization.value != amount {
        return Err(Refusal(
            "invalid_exact_evm_payload_authorization_value_mismatch",
        ));
    }
    let token = shared
        .config
        .tokens
        .iter()
        .find(|t| t.address == asset)
        .ok_or(Refusal("asset_not_deployed_contract"))?;
    if token.name != name {
        return Err(Refusal("invalid_exact_evm_token_name_mismatch"));
    }
    if token.version != domain_version {
        return Err(Refusal("invalid_exact_evm_token_version_mismatch"));
    }
    if inner
        .used
        .contains(&(asset, authorization.from, authorization.nonce))
    {
        return Err(Refusal("invalid_exact_evm_nonce_already_used"));
    }
    if balance_of(&shared.config, inner, asset, authorization.from) < authorization.value {
        return Err(Refusal("invalid_exact_evm_insufficient_balance"));
    }
    Ok(Checked {
        asset,
        authorization,
    })
}

/// Executes `transferWithAuthorization` in a new block; the transaction hash.
fn execute(shared: &Shared, inner: &mut Inner, checked: &Checked, now: u64) -> String {
    let config = &shared.config;
    let auth = &checked.authorization;
    let number = inner.blocks.len();
    let block_number = u64::try_from(number).unwrap_or(u64::MAX);
    let timestamp = inner
        .blocks
        .last()
        .map_or(now, |b| now.max(b.timestamp.saturating_add(1)));
    let mut material = format!(
        "trustos-emulator/tx/{}/{}/{block_number}/",
        config.chain_id,
        checksum(&checked.asset)
    )
    .into_bytes();
    material.extend_from_slice(auth.from.as_slice());
    material.extend_from_slice(auth.nonce.as_slice());
    let tx_hash = keccak256(&material);
    inner.blocks.push(Block {
        hash: keccak256(format!(
            "trustos-emulator/block/{}/{number}",
            config.chain_id
        )),
        timestamp,
        transactions: vec![tx_hash],
    });
    inner.used.insert((checked.asset, auth.from, auth.nonce));
    let from_balance = balance_of(config, inner, checked.asset, auth.from);
    let to_balance = balance_of(config, inner, checked.asset, auth.to);
    inner.balances.insert(
        (checked.asset, auth.from),
        from_balance.saturating_sub(auth.value),
    );
    if auth.to != auth.from {
        inner.balances.insert(
            (checked.asset, auth.to),
            to_balance.saturating_add(auth.value),
        );
    }
    inner.logs.push(Log {
        address: checked.asset,
        topics: vec![
            authorization_used_topic(),
            address_topic(&auth.from),
            auth.nonce,
        ],
        data: Vec::new(),
        block_number,
        tx_hash,
        log_index: 0,
    });
    inner.logs.push(Log {
        address: checked.asset,
        topics: vec![
            transfer_topic(),
            address_topic(&auth.from),
            address_topic(&auth.to),
        ],
        data: auth.value.to_be_bytes::<32>().to_vec(),
        block_number,
        tx_hash,
        log_index: 1,
    });
    let tx = hex::encode_prefixed(tx_hash.as_slice());
    inner.settlements.push(Settlement {
        tx_hash: tx.clone(),
        block_number,
        payer: auth.from,
        pay_to: auth.to,
        value: auth.value,
        nonce: auth.nonce,
        asset: checked.asset,
        answered: true,
    });
    tx
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn quantity(number: u64) -> Value {
    Value::String(format!("{number:#x}"))
}

fn word(bytes: &B256) -> Value {
    Value::String(hex::encode_prefixed(bytes.as_slice()))
}

fn rpc(shared: &Shared, body: &[u8]) -> Value {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return rpc_error(&Value::Null, -32700, "parse error");
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let (Some("2.0"), Some(method)) = (
        request.get("jsonrpc").and_then(Value::as_str),
        request.get("method").and_then(Value::as_str),
    ) else {
        return rpc_error(&id, -32600, "invalid request");
    };
    let params = request
        .get("params")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut inner = shared.lock();
    tick(&shared.config, &mut inner);
    let result = match method {
        "eth_chainId" => Ok(quantity(shared.config.chain_id)),
        "eth_blockNumber" => Ok(quantity(head_number(&inner))),
        "eth_getBlockByNumber" => get_block(&inner, params.first()),
        "eth_getLogs" => get_logs(&inner, params.first()),
        _ => return rpc_error(&id, -32601, "method not found"),
    };
    match result {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(message) => rpc_error(&id, -32602, message),
    }
}

/// A block tag or number.
fn block_param(
    inner: &Inner,
    tag: Option<&Value>,
    default_latest: bool,
) -> Result<u64, &'static str> {
    let head = head_number(inner);
    match tag.map(|t| t.as_str()) {
        None => Ok(if default_latest { head } else { 0 }),
        Some(Some("latest" | "safe" | "finalized" | "pending")) => Ok(head),
        Some(Some("earliest")) => Ok(0),
        Some(Some(hex_number)) => hex_number
            .strip_prefix("0x")
            .filter(|d| !d.is_empty() && d.len() <= 16)
            .and_then(|d| u64::from_str_radix(d, 16).ok())
            .ok_or("invalid block number"),
        Some(None) => Err("invalid block number"),
    }
}

fn get_block(inner: &Inner, tag: Option<&Value>) -> Result<Value, &'static str> {
    let number = block_param(inner, tag, true)?;
    let Some(block) = usize::try_from(number)
        .ok()
        .and_then(|n| inner.blocks.get(n))
    else {
        return Ok(Value::Null);
    };
    let parent = number
        .checked_sub(1)
        .and_then(|p| usize::try_from(p).ok())
        .and_then(|p| inner.blocks.get(p))
        .map_or(B256::ZERO, |b| b.hash);
    Ok(json!({
        "number": quantity(number),
        "hash": word(&block.hash),
        "parentHash": word(&parent),
        "timestamp": quantity(block.timestamp),
        "transactions": block.transactions.iter().map(word).collect::<Vec<_>>(),
    }))
}

/// One position of a `topics` filter: any, one, or any of several.
fn topic_matches(filter: &Value, topic: Option<&B256>) -> Result<bool, &'static str> {
    let parse = |value: &Value| -> Result<B256, &'static str> {
        value
            .as_str()
            .and_then(|t| t.strip_prefix("0x"))
            .filter(|d| d.len() == 64)
            .and_then(|d| hex::decode(d).ok())
            .map(|bytes| B256::from_slice(&bytes))
            .ok_or("invalid topic")
    };
    match filter {
        Value::Null => Ok(true),
        Value::Array(options) => {
            let mut any = options.is_empty();
            for option in options {
                if option.is_null() || topic == Some(&parse(option)?) {
                    any = true;
                }
            }
            Ok(any)
        }
        single => Ok(topic == Some(&parse(single)?)),
    }
}

fn get_logs(inner: &Inner, filter: Option<&Value>) -> Result<Value, &'static str> {
    let Some(Value::Object(filter)) = filter else {
        return Err("the filter must be an object");
    };
    let addresses: Option<Vec<Address>> = match filter.get("address") {
        None | Some(Value::Null) => None,
        Some(Value::String(one)) => Some(vec![address(one).ok_or("invalid address")?]),
        Some(Value::Array(many)) => Some(
            many.iter()
                .map(|a| a.as_str().and_then(address).ok_or("invalid address"))
                .collect::<Result<_, _>>()?,
        ),
        Some(_) => return Err("invalid address"),
    };
    let topics = match filter.get("topics") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(topics)) if topics.len() <= 4 => topics.clone(),
        Some(_) => return Err("invalid topics"),
    };
    let (from, to) = if let Some(hash) = filter.get("blockHash") {
        if filter.contains_key("fromBlock") || filter.contains_key("toBlock") {
            return Err("blockHash excludes fromBlock and toBlock");
        }
        let wanted = hash.as_str().unwrap_or("").to_ascii_lowercase();
        let number = inner
            .blocks
            .iter()
            .position(|b| hex::encode_prefixed(b.hash.as_slice()) == wanted)
            .and_then(|n| u64::try_from(n).ok())
            .ok_or("unknown block hash")?;
        (number, number)
    } else {
        (
            block_param(inner, filter.get("fromBlock"), true)?,
            block_param(inner, filter.get("toBlock"), true)?,
        )
    };
    if from > to {
        return Err("fromBlock is after toBlock");
    }
    let mut out = Vec::new();
    for log in &inner.logs {
        if log.block_number < from || log.block_number > to {
            continue;
        }
        if addresses
            .as_ref()
            .is_some_and(|a| !a.contains(&log.address))
        {
            continue;
        }
        let mut matches = true;
        for (position, wanted) in topics.iter().enumerate() {
            if !topic_matches(wanted, log.topics.get(position))? {
                matches = false;
                break;
            }
        }
        if !matches {
            continue;
        }
        let block = usize::try_from(log.block_number)
            .ok()
            .and_then(|n| inner.blocks.get(n));
        out.push(json!({
            "address": hex::encode_prefixed(log.address.as_slice()),
            "topics": log.topics.iter().map(word).collect::<Vec<_>>(),
            "data": hex::encode_prefixed(&log.data),
            "blockNumber": quantity(log.block_number),
            "blockHash": word(&block.map_or(B256::ZERO, |b| b.hash)),
            "blockTimestamp": quantity(block.map_or(0, |b| b.timestamp)),
            "transactionHash": word(&log.tx_hash),
            "transactionIndex": "0x0",
            "logIndex": quantity(log.log_index),
            "removed": false,
        }));
    }
    Ok(Value::Array(out))
}
