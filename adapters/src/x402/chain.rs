//! Reading the chain for x402 reconciliation: did an EIP-3009 authorization settle, and where?
//!
//! An `exact` EVM payment settles when a facilitator calls `transferWithAuthorization` on the
//! token. A FiatToken (USDC) records every `(authorizer, nonce)` it executes and emits
//! `AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)` in the same
//! transaction as the `Transfer`. Our nonces are derived from the decision id
//! ([`super::evm::nonce_for_decision`]), so the event with topics
//! `[keccak256("AuthorizationUsed(address,bytes32)"), payer, nonce]` on the asset contract is the
//! one and only proof that a decision's payment settled — whatever the facilitator or the paid
//! API said, or failed to say.
//!
//! [`ChainReader`] is a small Ethereum JSON-RPC 2.0 client for that question: one RPC URL per
//! CAIP-2 network, `eth_chainId` checked once per network against the CAIP-2 chain id (a node of
//! another chain is refused, [`ChainError::Mismatch`]), `eth_getLogs` over a configurable block
//! window, and `eth_getBlockByNumber("latest")` for the chain's own clock. Transport: hyper 1
//! with hyper-util's pooled client, HTTP/1.1, TLS by rustls (ring) trusting the `webpki-roots`
//! Mozilla roots — the same stack as [`crate::circle::client`]. An `http://` URL is accepted only
//! for a loopback host. Every call is bounded by [`ChainReaderOptions::request_timeout`]; bodies
//! above [`MAX_RPC_RESPONSE_BYTES`] are refused. RPC URLs often carry an API key, so no error
//! quotes one. There are no retries here: reconciliation is itself retried later.
//!
//! [`reconcile_on_chain`] runs the adapter's own reconciliation and settles what it leaves open
//! from the chain:
//!
//! - found on chain → the attempt is recorded `settled` with the transaction hash;
//! - not found, still before `validBefore` → [`Reconciliation::Resubmit`] (the same bytes);
//! - not found, and the chain's latest block is at least [`EXPIRY_MARGIN_SECONDS`] past
//!   `validBefore` (and so is the caller's clock) → recorded `failed` ("authorization expired
//!   unused"). This is sound because EIP-3009 enforces the window on chain:
//!   `transferWithAuthorization` reverts unless `block.timestamp < validBefore`, and block
//!   timestamps never decrease, so once the node we read has a block at or past `validBefore`
//!   every block that could ever include the authorization is already in its history, and
//!   `eth_getLogs` over it found nothing. The margin covers shallow reorganisations (a block
//!   below `validBefore` replaced after we looked) and nodes serving a stale head;
//! - not found, expired, but the chain's head is not yet far enough → [`Reconciliation::Expired`]
//!   (unknown; ask again later).
//!
//! Sources: Ethereum JSON-RPC (`eth_getLogs`, `eth_chainId`, `eth_getBlockByNumber`, log
//! objects): <https://ethereum.github.io/execution-apis/api-documentation/>,
//! <https://github.com/ethereum/execution-apis>; EIP-3009 (`AuthorizationUsed`, validity
//! window): <https://eips.ethereum.org/EIPS/eip-3009>; Circle FiatToken v2
//! (`EIP3009.sol`): <https://github.com/circlefin/stablecoin-evm>.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use alloy_primitives::{B256, hex, keccak256};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper::{Method, Request, Uri};
use serde_json::{Value, json};
use trustos_kernel::timestamp::Timestamp;

use super::evm::{Address, parse_address};
use super::wire::ExactEvmAuthorization;
use super::{RAIL, X402Adapter, networks};
use crate::ledger::{AttemptRecord, PaymentLedger};
use crate::transport::ExchangeError;
use crate::{Adapter, AdapterError, Reconciliation, SettlementReport, record_report};

/// The event signature of EIP-3009's `AuthorizationUsed`.
pub const AUTHORIZATION_USED_EVENT: &str = "AuthorizationUsed(address,bytes32)";

/// The ERC-20 `Transfer` event signature.
pub const TRANSFER_EVENT: &str = "Transfer(address,address,uint256)";

/// Largest JSON-RPC response body read, in bytes.
pub const MAX_RPC_RESPONSE_BYTES: usize = 4 << 20;

/// How far past `validBefore` both the chain's head and the caller's clock must be before an
/// authorization not found on chain is declared dead.
pub const EXPIRY_MARGIN_SECONDS: u64 = 60;

/// Bound on establishing one TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// `keccak256("AuthorizationUsed(address,bytes32)")`, topic 0 of the event.
pub fn authorization_used_topic() -> B256 {
    keccak256(AUTHORIZATION_USED_EVENT.as_bytes())
}

/// `keccak256("Transfer(address,address,uint256)")`, topic 0 of the event.
pub fn transfer_topic() -> B256 {
    keccak256(TRANSFER_EVENT.as_bytes())
}

/// An address as a 32-byte topic (left-padded with zeros).
pub fn address_topic(address: &Address) -> B256 {
    address.into_word()
}

/// The first block `eth_getLogs` searches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromBlock {
    /// `"earliest"`: the whole chain (some providers refuse wide ranges; set a number then).
    Earliest,
    /// A block number, e.g. the token's deployment block or a recent checkpoint.
    Number(u64),
}

impl FromBlock {
    fn param(self) -> Value {
        match self {
            Self::Earliest => Value::String("earliest".to_owned()),
            Self::Number(number) => Value::String(format!("{number:#x}")),
        }
    }
}

/// How the reader behaves.
#[derive(Clone, Debug)]
pub struct ChainReaderOptions {
    /// Bound on one call: connect, TLS, request and the whole response.
    pub request_timeout: Duration,
    /// The first block searched for `AuthorizationUsed`.
    pub from_block: FromBlock,
}

impl Default for ChainReaderOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(20),
            from_block: FromBlock::Earliest,
        }
    }
}

/// Where an authorization was used on chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedAuthorization {
    /// The transaction that executed it, `0x` + 64 lower-case hex digits.
    pub tx_hash: String,
    /// Its block.
    pub block_number: u64,
}

/// The chain's head, as the node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Latest block number.
    pub number: u64,
    /// Its timestamp (Unix seconds).
    pub timestamp: u64,
}

/// Why the chain could not answer. No variant quotes an RPC URL (they often carry API keys).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// No RPC endpoint is configured for the network.
    #[error("no RPC endpoint is configured for {network}")]
    NetworkUnknown {
        /// The CAIP-2 network asked about.
        network: String,
    },
    /// The configuration is unusable (bad URL, bad network, TLS setup).
    #[error("chain reader configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The node could not be reached, or answered with an HTTP error.
    #[error("chain RPC unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
    },
    /// The node did not answer in time.
    #[error("chain RPC timed out after {timeout_ms} ms")]
    Timeout {
        /// The bound.
        timeout_ms: u128,
    },
    /// The node serves another chain than the network names.
    #[error("RPC endpoint for {network} serves chain id {actual}, not {expected}")]
    Mismatch {
        /// The CAIP-2 network.
        network: String,
        /// Its chain id.
        expected: u64,
        /// What the node said.
        actual: u64,
    },
    /// The node answered something that is not a valid answer to the question.
    #[error("chain RPC answer is invalid: {reason}")]
    AnswerInvalid {
        /// What is wrong.
        reason: String,
    },
    /// The node answered with a JSON-RPC error.
    #[error("chain RPC error {code}: {message}")]
    Rpc {
        /// JSON-RPC error code.
        code: i64,
        /// Its message, truncated.
        message: String,
    },
}

impl ChainError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::NetworkUnknown { .. } => "X402_CHAIN_NETWORK_UNKNOWN",
            Self::Config { .. } => "X402_CHAIN_CONFIG_INVALID",
            Self::Unavailable { .. } => "X402_CHAIN_UNAVAILABLE",
            Self::Timeout { .. } => "X402_CHAIN_TIMEOUT",
            Self::Mismatch { .. } => "X402_CHAIN_MISMATCH",
            Self::AnswerInvalid { .. } => "X402_CHAIN_ANSWER_INVALID",
            Self::Rpc { .. } => "X402_CHAIN_RPC_ERROR",
        }
    }
}

impl From<ChainError> for AdapterError {
    fn from(error: ChainError) -> Self {
        AdapterError::Rail {
            code: error.reason_code(),
            message: error.to_string(),
        }
    }
}

/// One configured network.
struct Endpoint {
    uri: Uri,
    chain_id: u64,
}

/// An EVM JSON-RPC client, one endpoint per CAIP-2 network.
pub struct ChainReader {
    http: crate::transport::HttpClient,
    endpoints: HashMap<String, Endpoint>,
    options: ChainReaderOptions,
    /// Networks whose `eth_chainId` has been checked.
    checked: Mutex<HashSet<String>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for ChainReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs are left out: they may carry API keys.
        let mut networks: Vec<&String> = self.endpoints.keys().collect();
        networks.sort();
        f.debug_struct("ChainReader")
            .field("networks", &networks)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ChainReader {
    /// A reader for `endpoints`: pairs of a CAIP-2 EVM network (`eip155:84532`) and its RPC URL
    /// (`https://…`, or `http://` to a loopback host).
    pub fn new<I, N, U>(endpoints: I, options: ChainReaderOptions) -> Result<Self, ChainError>
    where
        I: IntoIterator<Item = (N, U)>,
        N: Into<String>,
        U: AsRef<str>,
    {
        let mut configured = HashMap::new();
        for (network, url) in endpoints {
            let network = network.into();
            let chain_id = caip2_chain_id(&network).ok_or_else(|| ChainError::Config {
                reason: format!("{network} is not a CAIP-2 EVM network (eip155:<chain id>)"),
            })?;
            let uri = check_rpc_url(url.as_ref()).map_err(|reason| ChainError::Config {
                reason: format!("RPC URL for {network} {reason}"),
            })?;
            if configured
                .insert(network.clone(), Endpoint { uri, chain_id })
                .is_some()
            {
                return Err(ChainError::Config {
                    reason: format!("{network} is configured twice"),
                });
            }
        }
        let http = crate::transport::https_client(CONNECT_TIMEOUT.min(options.request_timeout))
            .map_err(|reason| ChainError::Config { reason })?;
        Ok(Self {
            http,
            endpoints: configured,
            options,
            checked: Mutex::new(HashSet::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// The chain id the node of `network` reports (`eth_chainId`), unchecked.
    pub async fn chain_id(&self, network: &str) -> Result<u64, ChainError> {
        let endpoint = self.endpoint(network)?;
        let result = self.call(endpoint, "eth_chainId", json!([])).await?;
        quantity(&result, "eth_chainId result")
    }

    /// The node's latest block (`eth_getBlockByNumber("latest", false)`).
    pub async fn head(&self, network: &str) -> Result<ChainHead, ChainError> {
        let endpoint = self.checked_endpoint(network).await?;
        let result = self
            .call(endpoint, "eth_getBlockByNumber", json!(["latest", false]))
            .await?;
        let Value::Object(block) = &result else {
            return Err(invalid("the latest block is not an object"));
        };
        Ok(ChainHead {
            number: quantity(field(block, "number")?, "block number")?,
            timestamp: quantity(field(block, "timestamp")?, "block timestamp")?,
        })
    }

    /// Where `authorizer`'s authorization `nonce` was used on the token `asset`, if it was:
    /// `eth_getLogs` for `AuthorizationUsed(authorizer, nonce)` on `asset` from
    /// [`ChainReaderOptions::from_block`] to `latest`.
    ///
    /// Every log returned is checked against the filter; removed logs are ignored; two distinct
    /// transactions for one nonce (impossible on an EIP-3009 token) are refused as an invalid
    /// answer.
    pub async fn authorization_used(
        &self,
        network: &str,
        asset: Address,
        authorizer: Address,
        nonce: [u8; 32],
    ) -> Result<Option<UsedAuthorization>, ChainError> {
        let endpoint = self.checked_endpoint(network).await?;
        let topics = [
            authorization_used_topic(),
            address_topic(&authorizer),
            B256::from(nonce),
        ];
        let filter = json!({
            "address": hex::encode_prefixed(asset.as_slice()),
            "topics": topics.iter().map(|t| hex::encode_prefixed(t.as_slice())).collect::<Vec<_>>(),
            "fromBlock": self.options.from_block.param(),
            "toBlock": "latest",
        });
        let result = self.call(endpoint, "eth_getLogs", json!([filter])).await?;
        let Value::Array(logs) = result else {
            return Err(invalid("eth_getLogs result is not an array"));
        };
        let mut found: Option<UsedAuthorization> = None;
        for log in &logs {
            let Value::Object(log) = log else {
                return Err(invalid("a log is not an object"));
            };
            if log.get("removed").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let address = field(log, "address")?
                .as_str()
                .ok_or_else(|| invalid("log address is not a string"))?;
            if parse_address(&address.to_ascii_lowercase()).ok() != Some(asset) {
                return Err(invalid("a log comes from another contract than asked"));
            }
            let Value::Array(log_topics) = field(log, "topics")? else {
                return Err(invalid("log topics are not an array"));
            };
            let parsed: Result<Vec<B256>, ChainError> = log_topics
                .iter()
                .map(|topic| word(topic, "log topic"))
                .collect();
            if parsed?.as_slice() != topics.as_slice() {
                return Err(invalid("a log does not match the topics asked for"));
            }
            let tx_hash = word(field(log, "transactionHash")?, "transaction hash")?;
            let block_number = quantity(field(log, "blockNumber")?, "log block number")?;
            let used = UsedAuthorization {
                tx_hash: hex::encode_prefixed(tx_hash.as_slice()),
                block_number,
            };
            match &found {
                Some(earlier) if earlier.tx_hash != used.tx_hash => {
                    return Err(invalid("one nonce is reported used by two transactions"));
                }
                Some(_) => {}
                None => found = Some(used),
            }
        }
        Ok(found)
    }

    fn endpoint(&self, network: &str) -> Result<&Endpoint, ChainError> {
        self.endpoints
            .get(network)
            .ok_or_else(|| ChainError::NetworkUnknown {
                network: network.to_owned(),
            })
    }

    /// The endpoint of `network`, after checking once that its node serves that chain.
    async fn checked_endpoint(&self, network: &str) -> Result<&Endpoint, ChainError> {
        let endpoint = self.endpoint(network)?;
        let known = self
            .checked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(network);
        if !known {
            let actual = self.chain_id(network).await?;
            if actual != endpoint.chain_id {
                return Err(ChainError::Mismatch {
                    network: network.to_owned(),
                    expected: endpoint.chain_id,
                    actual,
                });
            }
            self.checked
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(network.to_owned());
        }
        Ok(endpoint)
    }

    /// One JSON-RPC 2.0 call; the `result`, or the mapped error.
    async fn call(
        &self,
        endpoint: &Endpoint,
        method: &str,
        params: Value,
    ) -> Result<Value, ChainError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let request = Request::builder()
            .method(Method::POST)
            .uri(endpoint.uri.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "trustos-chain-reader")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| ChainError::Config {
                reason: "request could not be built".to_owned(),
            })?;
        let timeout = self.options.request_timeout;
        let (status, bytes) =
            crate::transport::exchange(&self.http, request, MAX_RPC_RESPONSE_BYTES, timeout)
                .await
                .map_err(|error| match error {
                    ExchangeError::Transport(reason) | ExchangeError::Body(reason) => {
                        ChainError::Unavailable { reason }
                    }
                    ExchangeError::Timeout => ChainError::Timeout {
                        timeout_ms: timeout.as_millis(),
                    },
                })?;
        if !status.is_success() {
            return Err(ChainError::Unavailable {
                reason: format!("HTTP {status} from {method}"),
            });
        }
        let answer: Value = serde_json::from_slice(&bytes)
            .map_err(|_| invalid(&format!("the answer to {method} is not JSON")))?;
        let Value::Object(mut answer) = answer else {
            return Err(invalid(&format!(
                "the answer to {method} is not a JSON-RPC object"
            )));
        };
        if answer.get("jsonrpc").and_then(Value::as_str) != Some("2.0")
            || answer.get("id").and_then(Value::as_u64) != Some(id)
        {
            return Err(invalid(&format!(
                "the answer to {method} is not JSON-RPC 2.0 with our id"
            )));
        }
        if let Some(error) = answer.get("error") {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let message: String = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            return Err(ChainError::Rpc { code, message });
        }
        answer
            .remove("result")
            .ok_or_else(|| invalid(&format!("the answer to {method} has no result")))
    }
}

/// The chain id of a CAIP-2 EVM network (`eip155:<id>` only; v1 names are not accepted here).
fn caip2_chain_id(network: &str) -> Option<u64> {
    if network.starts_with("eip155:") {
        networks::evm_chain_id(network)
    } else {
        None
    }
}

/// Checks an RPC URL: absolute, `https://` or `http://` to a loopback host, no user info or
/// fragment. The reason never quotes the URL.
fn check_rpc_url(url: &str) -> Result<Uri, &'static str> {
    let uri: Uri = url.parse().map_err(|_| "is not a valid absolute URL")?;
    let host = uri.host().ok_or("has no host")?.to_ascii_lowercase();
    if url.contains('#') || uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err("must not carry a fragment or user info");
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1") => {
            Ok(uri)
        }
        Some("http") => Err("uses http:// to a non-loopback host; https:// is required"),
        _ => Err("must be https:// (or http:// to a loopback host)"),
    }
}

/// A transport error with its source chain (hyper's errors carry no URL).
fn invalid(reason: &str) -> ChainError {
    ChainError::AnswerInvalid {
        reason: reason.to_owned(),
    }
}

fn field<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Result<&'a Value, ChainError> {
    object
        .get(key)
        .ok_or_else(|| invalid(&format!("`{key}` is missing")))
}

/// A JSON-RPC quantity: `0x` and 1 to 16 hex digits.
fn quantity(value: &Value, what: &str) -> Result<u64, ChainError> {
    let digits = value
        .as_str()
        .and_then(|text| text.strip_prefix("0x"))
        .filter(|digits| {
            !digits.is_empty()
                && digits.len() <= 16
                && digits.bytes().all(|byte| byte.is_ascii_hexdigit())
        })
        .ok_or_else(|| invalid(&format!("{what} is not a hex quantity")))?;
    u64::from_str_radix(digits, 16).map_err(|_| invalid(&format!("{what} is not a hex quantity")))
}

/// A 32-byte word: `0x` and 64 hex digits.
fn word(value: &Value, what: &str) -> Result<B256, ChainError> {
    let digits = value
        .as_str()
        .and_then(|text| text.strip_prefix("0x"))
        .filter(|digits| digits.len() == 64)
        .ok_or_else(|| invalid(&format!("{what} is not 32 bytes of hex")))?;
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(digits, &mut bytes)
        .map_err(|_| invalid(&format!("{what} is not 32 bytes of hex")))?;
    Ok(B256::from(bytes))
}

/// What a recorded x402 attempt says about its authorization.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RecordedAuthorization {
    network: String,
    asset: Address,
    payer: Address,
    nonce: B256,
    valid_before: u64,
}

fn malformed_record(reason: &str) -> AdapterError {
    AdapterError::Rail {
        code: "X402_RECORD_MALFORMED",
        message: format!("the recorded x402 attempt cannot be read: {reason}"),
    }
}

/// Reads the network, asset, payer and nonce from the record's replay key
/// (`<network>:<asset>:<payer>:<nonce>`, the network itself being `eip155:<id>`), and checks them
/// against the recorded PaymentPayload's `authorization`.
fn recorded_authorization(record: &AttemptRecord) -> Result<RecordedAuthorization, AdapterError> {
    let mut parts = record.replay_key.rsplitn(4, ':');
    let (Some(nonce), Some(payer), Some(asset), Some(network)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed_record("replay key has too few parts"));
    };
    if caip2_chain_id(network).is_none() {
        return Err(malformed_record("replay key names no EVM network"));
    }
    let asset = parse_address(&asset.to_ascii_lowercase())
        .map_err(|_| malformed_record("replay key asset"))?;
    let payer = parse_address(&payer.to_ascii_lowercase())
        .map_err(|_| malformed_record("replay key payer"))?;
    let nonce = word(&Value::String(nonce.to_owned()), "nonce")
        .map_err(|_| malformed_record("replay key nonce"))?;

    let recorded = RecordedAuthorization {
        network: network.to_owned(),
        asset,
        payer,
        nonce,
        valid_before: record.valid_before,
    };
    if record.authorization.is_empty() {
        // No payload recorded (a remote signer was asked): the replay key alone names what the
        // chain would show, whoever holds a signature.
        return Ok(recorded);
    }
    let payload: Value = serde_json::from_str(&record.authorization)
        .map_err(|_| malformed_record("the payment payload is not JSON"))?;
    let authorization = payload
        .get("payload")
        .and_then(|inner| inner.get("authorization"))
        .cloned()
        .ok_or_else(|| malformed_record("the payment payload has no authorization"))?;
    let authorization: ExactEvmAuthorization = serde_json::from_value(authorization)
        .map_err(|_| malformed_record("the payment payload's authorization"))?;
    let from = parse_address(&authorization.from.to_ascii_lowercase())
        .map_err(|_| malformed_record("authorization.from"))?;
    let signed_nonce = word(&Value::String(authorization.nonce.clone()), "nonce")
        .map_err(|_| malformed_record("authorization.nonce"))?;
    let valid_before: u64 = authorization
        .valid_before
        .parse()
        .map_err(|_| malformed_record("authorization.validBefore"))?;
    if from != payer || signed_nonce != nonce || valid_before != record.valid_before {
        return Err(malformed_record(
            "the replay key and the signed authorization disagree",
        ));
    }
    Ok(recorded)
}

/// Reconciles the x402 attempt of `decision_id` against the chain (see the module docs).
///
/// Runs [`X402Adapter::reconcile`] first; `Known` and `NoAttempt` are returned as they are. For
/// `Resubmit` and `Expired`, the chain is asked whether the authorization was used: if so the
/// attempt is recorded settled with the transaction hash and `Known` is returned; if not,
/// `Resubmit` while it can still settle, `Known` (recorded failed) once it provably never can,
/// `Expired` in between. Chain errors are [`AdapterError::Rail`] with the [`ChainError`] code;
/// nothing is recorded then.
pub async fn reconcile_on_chain(
    adapter: &X402Adapter,
    ledger: &dyn PaymentLedger,
    reader: &ChainReader,
    decision_id: &str,
    now: Timestamp,
) -> Result<Reconciliation, AdapterError> {
    let record = match adapter.reconcile(ledger, decision_id, now).await? {
        Reconciliation::Resubmit(record) | Reconciliation::Expired(record) => record,
        done @ (Reconciliation::Known(_) | Reconciliation::NoAttempt) => return Ok(done),
    };
    let recorded = recorded_authorization(&record)?;
    let used = reader
        .authorization_used(
            &recorded.network,
            recorded.asset,
            recorded.payer,
            recorded.nonce.0,
        )
        .await?;
    if let Some(used) = used {
        let report = SettlementReport::Settled {
            reference: used.tx_hash,
            network: recorded.network,
        };
        return Ok(Reconciliation::Known(
            record_report(ledger, RAIL, decision_id, &report).await?,
        ));
    }
    let now_seconds = now.unix_millis() / 1000;
    if now_seconds < recorded.valid_before {
        // Without recorded bytes (a remote signer whose answer was lost) there is nothing to
        // resubmit: only the chain can tell, once the authorization has expired.
        return Ok(if record.authorization.is_empty() {
            Reconciliation::Expired(record)
        } else {
            Reconciliation::Resubmit(record)
        });
    }
    let deadline = recorded.valid_before.saturating_add(EXPIRY_MARGIN_SECONDS);
    if now_seconds < deadline {
        return Ok(Reconciliation::Expired(record));
    }
    let head = reader.head(&recorded.network).await?;
    if head.timestamp < deadline {
        return Ok(Reconciliation::Expired(record));
    }
    // The head is past validBefore + margin: if it had been used, the log would be in the range
    // just searched. Search once more now that the head is known to be past the deadline, so a
    // block mined between the two calls cannot be missed.
    if let Some(used) = reader
        .authorization_used(
            &recorded.network,
            recorded.asset,
            recorded.payer,
            recorded.nonce.0,
        )
        .await?
    {
        let report = SettlementReport::Settled {
            reference: used.tx_hash,
            network: recorded.network,
        };
        return Ok(Reconciliation::Known(
            record_report(ledger, RAIL, decision_id, &report).await?,
        ));
    }
    let report = SettlementReport::Failed {
        reason: "authorization expired unused".to_owned(),
    };
    Ok(Reconciliation::Known(
        record_report(ledger, RAIL, decision_id, &report).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_the_event_hashes() {
        assert_eq!(
            hex::encode(authorization_used_topic()),
            "98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
        );
        assert_eq!(
            hex::encode(transfer_topic()),
            "ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
        );
    }

    #[test]
    fn rpc_urls_need_tls_off_loopback() {
        assert!(check_rpc_url("https://base-sepolia.example/v2/key").is_ok());
        assert!(check_rpc_url("http://127.0.0.1:8545").is_ok());
        assert!(check_rpc_url("http://node.example:8545").is_err());
        assert!(check_rpc_url("ftp://node.example").is_err());
        assert!(check_rpc_url("https://user:pw@node.example").is_err());
    }

    #[test]
    fn quantities_are_strict_hex() {
        assert_eq!(quantity(&json!("0x14a34"), "q").ok(), Some(84532));
        assert!(quantity(&json!("14a34"), "q").is_err());
        assert!(quantity(&json!("0x"), "q").is_err());
        assert!(quantity(&json!(5), "q").is_err());
    }
}
