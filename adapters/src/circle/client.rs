//! The W3S HTTP client: the code that talks to `https://api.circle.com` (or, in tests, to the
//! emulator), for developer-controlled wallets.
//!
//! Endpoints used (Circle's `developer-controlled-wallets.yaml`):
//!
//! - `GET /v1/w3s/config/entity/publicKey` → `{"data":{"publicKey":"<PEM>"}}`, fetched once and
//!   cached ([`CircleClient::entity_public_key`]);
//! - `POST /v1/w3s/developer/transactions/transfer` ([`CircleClient::create_transfer`]);
//! - `GET /v1/w3s/transactions/{id}` ([`CircleClient::get_transaction`]);
//! - `GET /v1/w3s/transactions?refId=…` ([`CircleClient::find_by_ref_id`]);
//! - `POST /v1/w3s/developer/sign/typedData` ([`CircleClient::sign_typed_data`]).
//!
//! **Transport.** hyper 1 with hyper-util's pooled client, HTTP/1.1 only, TLS by rustls (ring
//! provider) trusting the Mozilla roots of `webpki-roots` (the gateway's stack, see its
//! `http_lane::client`). Every attempt (connect, TLS, request, whole response body) is bounded by
//! [`ClientOptions::request_timeout`]; bodies above [`MAX_RESPONSE_BYTES`] are refused. The API
//! key travels only to an `https://` base URL, or to `http://` on a loopback host (tests, a local
//! emulator); anything else is refused when the client is built.
//!
//! **Environment.** Circle serves testnet and mainnet from the same host: the key's prefix
//! (`TEST_API_KEY` / `LIVE_API_KEY`) decides the environment, so the base URL cannot tell which
//! one is meant. [`ClientOptions::expected_environment`] lets the operator pin it; a key of the
//! other environment is then refused when the client is built.
//!
//! **Retries and idempotency.** A transfer carries a caller-supplied `idempotencyKey`; derive it
//! from the decision with [`idempotency_key_for`] so that a retry after a crash reuses it. Each
//! attempt, retries included, carries a *fresh* `entitySecretCiphertext` (Circle refuses a reused
//! one with code `156004`). Transport errors, timeouts and `5xx` answers are retried up to
//! [`ClientOptions::max_retries`] times with exponential backoff and the same idempotency key;
//! Circle answers a repeated key with the transaction it created the first time, so a request
//! whose answer was lost creates nothing new. Any `4xx` is final. `GET`s are retried the same
//! way.
//!
//! **Secrets.** Neither the API key, the entity secret nor a ciphertext appears in an error,
//! `Debug` or `Display`. Error messages that come from Circle are truncated, stripped of control
//! characters, and scrubbed of the key and of the ciphertext of the request in case a server
//! echoes them.
//!
//! Sources: <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/create-developer-transaction-transfer>,
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/get-transaction>,
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/list-transactions>,
//! <https://developers.circle.com/api-reference/idempotent-requests.md> (idempotency keys in
//! UUID version 4 format), <https://developers.circle.com/wallets/error-codes>,
//! <https://developers.circle.com/w3s/web3-services-api-client-keys-auth>,
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/sign-typed-data>.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, USER_AGENT};
use hyper::{Method, Request, StatusCode, Uri};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use super::amount::{AmountError, from_decimal, to_decimal};
use super::ciphertext::{CiphertextError, entity_secret_ciphertext};
use super::secrets::{ApiKey, CircleEnvironment, EntitySecret, SecretError};
use super::state::TransactionState;

/// Circle's production API, for testnet and mainnet keys alike.
pub const CIRCLE_API_BASE_URL: &str = "https://api.circle.com";

/// Largest response body read, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Bound on establishing one TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Circle's error code for a reused entity secret ciphertext.
pub const CODE_CIPHERTEXT_REUSED: i64 = 156_004;

/// Longest error message kept from a Circle answer, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Namespace of [`idempotency_key_for`] (a fixed random UUID, never to change: changing it would
/// make a retry after an upgrade create a second transfer).
const IDEMPOTENCY_NAMESPACE: [u8; 16] = [
    0x3b, 0x8e, 0x5f, 0x0c, 0x91, 0x2d, 0x4a, 0x67, 0xb4, 0x1e, 0x7c, 0x53, 0xd2, 0x08, 0xa9, 0xf6,
];

/// The idempotency key of the transfer that executes decision `decision_id`: deterministic, so
/// a retry after a crash or restart sends the same key and Circle returns the transfer it already
/// made instead of making a second one.
///
/// Derivation (name-based, like RFC 4122 version 5, with SHA-256 instead of SHA-1): the first
/// 16 bytes of `SHA-256(namespace ‖ "trustos/circle/transfer/v1\0" ‖ decision_id)`, with the
/// RFC 4122 variant bits set to `10` and the version nibble set to **4**, written as lower-case
/// 8-4-4-4-12 hex. The version nibble says 4 rather than 5 because Circle documents its
/// idempotency keys as "UUID version 4 format"; a validator cannot tell hashed bits from random
/// ones, and 122 bits of SHA-256 keep distinct decisions apart as well as random bits would.
pub fn idempotency_key_for(decision_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(IDEMPOTENCY_NAMESPACE);
    hasher.update(b"trustos/circle/transfer/v1\0");
    hasher.update(decision_id.as_bytes());
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// How the client behaves.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Bound on one attempt: connect, TLS, request and the whole response.
    pub request_timeout: Duration,
    /// Retries after the first attempt (so at most `max_retries + 1` attempts).
    pub max_retries: u32,
    /// Wait before the first retry; doubled for each further retry.
    pub initial_backoff: Duration,
    /// Longest wait between two attempts.
    pub max_backoff: Duration,
    /// When set, an API key of another environment is refused by [`CircleClient::new`].
    pub expected_environment: Option<CircleEnvironment>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
            expected_environment: None,
        }
    }
}

/// Circle's transfer fee level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeeLevel {
    /// `LOW`.
    Low,
    /// `MEDIUM`.
    Medium,
    /// `HIGH`.
    High,
}

impl FeeLevel {
    /// As Circle writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
        }
    }
}

/// A transfer from a developer-controlled wallet (by `walletId`, token by `tokenId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    /// The idempotency key, a UUID; see [`idempotency_key_for`].
    pub idempotency_key: String,
    /// The source wallet's id.
    pub wallet_id: String,
    /// Circle's id of the token.
    pub token_id: String,
    /// The token's decimals (6 for USDC), to write the amount.
    pub decimals: u8,
    /// The amount in integer base units.
    pub amount_base_units: u128,
    /// The recipient address.
    pub destination_address: String,
    /// The fee level.
    pub fee_level: FeeLevel,
    /// Optional reference kept by Circle on the transaction (searchable with
    /// [`CircleClient::find_by_ref_id`]).
    pub ref_id: Option<String>,
}

/// Circle's answer to a created (or replayed) transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferCreated {
    /// Circle's transaction id.
    pub id: String,
    /// Its state when answered.
    pub state: TransactionState,
}

/// A transaction as `GET /v1/w3s/transactions…` describes it (the fields the rail uses).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Circle's transaction id.
    pub id: String,
    /// Its current state.
    pub state: TransactionState,
    /// The chain transaction hash, once sent.
    pub tx_hash: Option<String>,
    /// The amounts, decimal strings as Circle writes them.
    pub amounts: Vec<String>,
    /// The source wallet.
    pub wallet_id: Option<String>,
    /// The recipient.
    pub destination_address: Option<String>,
    /// The chain.
    pub blockchain: Option<String>,
    /// The token id.
    pub token_id: Option<String>,
    /// The caller's reference.
    pub ref_id: Option<String>,
    /// Why it failed, when it did.
    pub error_reason: Option<String>,
    /// Creation time (RFC 3339).
    pub create_date: Option<String>,
    /// Last update time (RFC 3339).
    pub update_date: Option<String>,
}

impl Transaction {
    /// The single amount in base units of a token with `decimals` (an error when there is not
    /// exactly one amount or it does not fit the token's precision).
    pub fn amount_base_units(&self, decimals: u8) -> Result<u128, AmountError> {
        match self.amounts.as_slice() {
            [amount] => from_decimal(amount, decimals),
            _ => Err(AmountError::Malformed {
                reason: "expected exactly one amount",
            }),
        }
    }
}

/// Why a Circle call failed. No variant carries the API key, the entity secret or a ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum CircleError {
    /// The client could not be built (base URL, TLS configuration).
    #[error("Circle client configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// The API key was refused before any request (wrong environment).
    #[error("Circle API key refused: {0}")]
    ApiKey(#[from] SecretError),
    /// Connecting, sending or reading failed.
    #[error("HTTP transport error talking to Circle: {reason}")]
    Http {
        /// The transport error (never request content).
        reason: String,
    },
    /// No complete answer within the request timeout.
    #[error("no answer from Circle within {timeout_ms} ms")]
    Timeout {
        /// The timeout.
        timeout_ms: u128,
    },
    /// Circle refused the API key (`401` or `403`).
    #[error("Circle refused the API key (HTTP {status})")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
    },
    /// The idempotency key was already used with a different request (`409`).
    #[error("Circle refused the idempotency key, already used for another request: {message}")]
    IdempotencyConflict {
        /// Circle's error code, when given.
        code: Option<i64>,
        /// Circle's message (scrubbed).
        message: String,
    },
    /// Circle refused the entity secret ciphertext as already used (code `156004`).
    #[error("Circle refused the entity secret ciphertext as already used (code 156004)")]
    CiphertextReused,
    /// Any other error answer.
    #[error("Circle API error: HTTP {status}, code {code:?}: {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// Circle's error code, when given.
        code: Option<i64>,
        /// Circle's message (scrubbed).
        message: String,
    },
    /// A success answer that is not what the API documents.
    #[error("malformed response from Circle: {reason}")]
    ResponseMalformed {
        /// What is wrong.
        reason: String,
    },
    /// No entity secret ciphertext could be made (bad entity public key, RNG failure).
    #[error(transparent)]
    Ciphertext(#[from] CiphertextError),
}

impl CircleError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Config { .. } => "CIRCLE_CLIENT_CONFIG",
            Self::ApiKey(error) => error.reason_code(),
            Self::Http { .. } => "CIRCLE_HTTP",
            Self::Timeout { .. } => "CIRCLE_TIMEOUT",
            Self::Unauthorized { .. } => "CIRCLE_UNAUTHORIZED",
            Self::IdempotencyConflict { .. } => "CIRCLE_IDEMPOTENCY_CONFLICT",
            Self::CiphertextReused => "CIRCLE_CIPHERTEXT_REUSED",
            Self::Api { .. } => "CIRCLE_API_ERROR",
            Self::ResponseMalformed { .. } => "CIRCLE_RESPONSE_MALFORMED",
            Self::Ciphertext(error) => error.reason_code(),
        }
    }

    /// Every reason code of this type's own variants (the wrapped secret and ciphertext errors
    /// list theirs in their modules).
    pub fn all_reason_codes() -> &'static [&'static str] {
        &[
            "CIRCLE_CLIENT_CONFIG",
            "CIRCLE_HTTP",
            "CIRCLE_TIMEOUT",
            "CIRCLE_UNAUTHORIZED",
            "CIRCLE_IDEMPOTENCY_CONFLICT",
            "CIRCLE_CIPHERTEXT_REUSED",
            "CIRCLE_API_ERROR",
            "CIRCLE_RESPONSE_MALFORMED",
        ]
    }

    /// Whether another attempt may succeed: transport errors, timeouts, `429` and `5xx`.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Http { .. } | Self::Timeout { .. } => true,
            // Rate limited: the idempotency key makes the retry safe.
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

use crate::transport::{ExchangeError, HttpClient};

/// A client of Circle's W3S API for one API key and entity secret.
pub struct CircleClient {
    http: HttpClient,
    base_url: String,
    api_key: ApiKey,
    entity_secret: EntitySecret,
    options: ClientOptions,
    entity_public_key: Mutex<Option<Arc<str>>>,
}

impl fmt::Debug for CircleClient {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CircleClient")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key)
            .field("entity_secret", &self.entity_secret)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl CircleClient {
    /// Builds a client for `base_url` (e.g. [`CIRCLE_API_BASE_URL`]; scheme and authority, an
    /// optional path prefix, no query). Refuses an `http://` URL unless its host is loopback, and
    /// a key of another environment than [`ClientOptions::expected_environment`] when set.
    pub fn new(
        base_url: &str,
        api_key: ApiKey,
        entity_secret: EntitySecret,
        options: ClientOptions,
    ) -> Result<Self, CircleError> {
        let base_url = check_base_url(base_url)?;
        if let Some(expected) = options.expected_environment {
            api_key.expect_environment(expected)?;
        }
        let http = crate::transport::https_client(CONNECT_TIMEOUT.min(options.request_timeout))
            .map_err(|reason| CircleError::Config { reason })?;
        Ok(Self {
            http,
            base_url,
            api_key,
            entity_secret,
            options,
            entity_public_key: Mutex::new(None),
        })
    }

    /// The environment of the API key (its prefix decides).
    pub fn environment(&self) -> CircleEnvironment {
        self.api_key.environment()
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The entity's RSA public key (PEM), fetched on first use and cached after a success.
    pub async fn entity_public_key(&self) -> Result<Arc<str>, CircleError> {
        if let Some(key) = self.cached_public_key() {
            return Ok(key);
        }
        let body = self
            .get_json("/v1/w3s/config/entity/publicKey".to_owned())
            .await?;
        let key: Arc<str> = body
            .pointer("/data/publicKey")
            .and_then(Value::as_str)
            .filter(|pem| !pem.is_empty())
            .ok_or_else(|| malformed("no data.publicKey string"))?
            .into();
        if let Ok(mut cache) = self.entity_public_key.lock() {
            *cache = Some(Arc::clone(&key));
        }
        Ok(key)
    }

    /// Creates a transfer (`POST /v1/w3s/developer/transactions/transfer`), retrying transport
    /// errors, timeouts and `5xx` with the same idempotency key and a new ciphertext each time.
    pub async fn create_transfer(
        &self,
        request: &TransferRequest,
    ) -> Result<TransferCreated, CircleError> {
        let mut body = json!({
            "idempotencyKey": request.idempotency_key,
            "walletId": request.wallet_id,
            "tokenId": request.token_id,
            "destinationAddress": request.destination_address,
            "amounts": [to_decimal(request.amount_base_units, request.decimals)],
            "feeLevel": request.fee_level.as_str(),
        });
        if let (Some(ref_id), Some(object)) = (&request.ref_id, body.as_object_mut()) {
            object.insert("refId".into(), json!(ref_id));
        }
        let value = self
            .post_with_ciphertext("/v1/w3s/developer/transactions/transfer", body)
            .await?;
        parse_created(&value)
    }

    /// POSTs `body` to `path` with a fresh entity secret ciphertext on every attempt, retrying
    /// transport errors, timeouts, `429` and `5xx` (the caller's idempotency key, or the nature
    /// of the request, makes a retry safe); the answer's JSON.
    async fn post_with_ciphertext(
        &self,
        path: &str,
        mut body: Value,
    ) -> Result<Value, CircleError> {
        let public_key = self.entity_public_key().await?;
        let mut attempt = 0;
        loop {
            let ciphertext =
                Zeroizing::new(entity_secret_ciphertext(&self.entity_secret, &public_key)?);
            if let Some(object) = body.as_object_mut() {
                object.insert("entitySecretCiphertext".into(), json!(ciphertext.as_str()));
            }
            let bytes =
                Zeroizing::new(serde_json::to_vec(&body).map_err(|_| CircleError::Config {
                    reason: "request not serializable".into(),
                })?);
            let result = self
                .send(
                    Method::POST,
                    path,
                    Some(Bytes::copy_from_slice(&bytes)),
                    &ciphertext,
                )
                .await;
            match result {
                Ok(value) => return Ok(value),
                Err(error) if error.is_retryable() && attempt < self.options.max_retries => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Signs EIP-712 typed data with developer-controlled wallet `wallet_id`
    /// (`POST /v1/w3s/developer/sign/typedData`) and answers Circle's signature, `0x` + hex.
    ///
    /// The body is `{"walletId", "data", "memo"?, "entitySecretCiphertext"}`, where `data` is the
    /// typed data (`types`, `primaryType`, `domain`, `message`) as a JSON *string*, exactly
    /// `typed_data_json`; the answer is `{"data":{"signature":"0x…"}}`. Only EVM wallets can sign
    /// typed data. The answer is not checked here beyond its shape: a caller that pays with it
    /// must recover the signer from the digest and compare it with the wallet's address
    /// (`crate::circle::wallet_signer` does).
    ///
    /// Retries as [`Self::create_transfer`] does (transport errors, timeouts, `429`, `5xx`),
    /// with a fresh entity secret ciphertext on every attempt. Signing moves nothing: a retry
    /// whose first answer was lost at most makes Circle sign the same message again, and every
    /// signature of one message authorizes the same single use of the same nonce.
    ///
    /// Sources: <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/sign-typed-data>,
    /// <https://developers.circle.com/openapi/developer-controlled-wallets.yaml>
    /// (`SignTypedDataRequest`, `SignatureResponse`).
    pub async fn sign_typed_data(
        &self,
        wallet_id: &str,
        typed_data_json: &str,
        memo: Option<&str>,
    ) -> Result<String, CircleError> {
        let mut body = json!({
            "walletId": wallet_id,
            "data": typed_data_json,
        });
        if let (Some(memo), Some(object)) = (memo, body.as_object_mut()) {
            object.insert("memo".into(), json!(memo));
        }
        self.post_with_ciphertext("/v1/w3s/developer/sign/typedData", body)
            .await?
            .pointer("/data/signature")
            .and_then(Value::as_str)
            .filter(|signature| signature.starts_with("0x"))
            .map(str::to_owned)
            .ok_or_else(|| malformed("no data.signature 0x string"))
    }

    /// One transaction (`GET /v1/w3s/transactions/{id}`).
    pub async fn get_transaction(&self, id: &str) -> Result<Transaction, CircleError> {
        let body = self
            .get_json(format!("/v1/w3s/transactions/{}", percent_encode(id)))
            .await?;
        let raw = body
            .pointer("/data/transaction")
            .ok_or_else(|| malformed("no data.transaction"))?;
        parse_transaction(raw)
    }

    /// The transactions carrying `refId` `ref_id` (`GET /v1/w3s/transactions?refId=…`), as Circle
    /// lists them (newest first).
    pub async fn find_by_ref_id(&self, ref_id: &str) -> Result<Vec<Transaction>, CircleError> {
        let body = self
            .get_json(format!(
                "/v1/w3s/transactions?refId={}",
                percent_encode(ref_id)
            ))
            .await?;
        body.pointer("/data/transactions")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("no data.transactions array"))?
            .iter()
            .map(parse_transaction)
            .collect()
    }

    /// The cached entity public key, if any.
    fn cached_public_key(&self) -> Option<Arc<str>> {
        self.entity_public_key
            .lock()
            .ok()
            .and_then(|cache| cache.clone())
    }

    /// The wait before retry number `attempt + 1`.
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.options
            .initial_backoff
            .saturating_mul(factor)
            .min(self.options.max_backoff)
    }

    /// A `GET` with retries, answering the JSON body.
    async fn get_json(&self, path: String) -> Result<Value, CircleError> {
        let mut attempt = 0;
        loop {
            match self.send(Method::GET, &path, None, "").await {
                Err(error) if error.is_retryable() && attempt < self.options.max_retries => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt: sends the request, answers the parsed JSON of a `2xx` or the mapped error.
    /// `ciphertext` (possibly empty) is scrubbed from any message Circle sends back.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        ciphertext: &str,
    ) -> Result<Value, CircleError> {
        let uri: Uri =
            format!("{}{path}", self.base_url)
                .parse()
                .map_err(|_| CircleError::Config {
                    reason: "request URL is not valid".into(),
                })?;
        let authorization = Zeroizing::new(self.api_key.authorization_header());
        let mut auth_value =
            HeaderValue::from_str(&authorization).map_err(|_| CircleError::Config {
                reason: "API key is not a valid header value".into(),
            })?;
        auth_value.set_sensitive(true);
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, auth_value)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, "trustos-circle-client");
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        let request = builder
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|_| CircleError::Config {
                reason: "request could not be built".into(),
            })?;

        let timeout = self.options.request_timeout;
        let (status, bytes) =
            crate::transport::exchange(&self.http, request, MAX_RESPONSE_BYTES, timeout)
                .await
                .map_err(|error| match error {
                    ExchangeError::Transport(reason) | ExchangeError::Body(reason) => {
                        CircleError::Http { reason }
                    }
                    ExchangeError::Timeout => CircleError::Timeout {
                        timeout_ms: timeout.as_millis(),
                    },
                })?;

        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|_| malformed(&format!("HTTP {} with a body that is not JSON", status)));
        }
        let scrub: [&str; 3] = [
            ciphertext,
            authorization.trim_start_matches("Bearer "),
            authorization.rsplit(':').next().unwrap_or_default(),
        ];
        Err(error_from_answer(status, &bytes, &scrub))
    }

    /// The notification public key `key_id` (`GET /v2/notifications/publicKey/{id}`), the key
    /// that signs webhooks carrying `X-Circle-Key-Id: key_id`. Not cached here: the caller keeps
    /// the keys it has fetched. An unknown id is Circle's `404` ([`CircleError::Api`]); an
    /// answer whose algorithm is not `ECDSA_SHA_256` or whose key is not P-256 is
    /// [`CircleError::ResponseMalformed`].
    pub async fn notification_public_key(
        &self,
        key_id: &str,
    ) -> Result<super::webhook::NotificationKey, CircleError> {
        let body = self
            .get_json(format!(
                "/v2/notifications/publicKey/{}",
                percent_encode(key_id)
            ))
            .await?;
        let text = |name: &str| {
            body.pointer(&format!("/data/{name}"))
                .and_then(Value::as_str)
                .ok_or_else(|| malformed(&format!("no data.{name} string")))
        };
        super::webhook::NotificationKey::from_response(text("algorithm")?, text("publicKey")?)
            .map_err(|error| malformed(&error.to_string()))
    }
}

/// Checks and normalizes the base URL (no trailing slash).
fn check_base_url(base_url: &str) -> Result<String, CircleError> {
    let bad = |reason: &str| CircleError::Config {
        reason: format!("base URL {reason}"),
    };
    let trimmed = base_url.trim_end_matches('/');
    let uri: Uri = trimmed
        .parse()
        .map_err(|_| bad("is not a valid absolute URL"))?;
    let host = uri
        .host()
        .ok_or_else(|| bad("has no host"))?
        .to_ascii_lowercase();
    if uri.query().is_some() || trimmed.contains('#') || trimmed.contains('@') {
        return Err(bad("must not carry a query, fragment or user info"));
    }
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if matches!(host.as_str(), "localhost" | "127.0.0.1" | "[::1]" | "::1") => {}
        Some("http") => {
            return Err(bad(
                "uses http:// to a non-loopback host; the API key needs https://",
            ));
        }
        _ => return Err(bad("must be https:// (or http:// to a loopback host)")),
    }
    Ok(trimmed.to_owned())
}

/// A transport error, with its source chain (hyper's errors carry no request content).
/// Maps a non-`2xx` answer in Circle's `{"code", "message"}` format (or anything else).
fn error_from_answer(status: StatusCode, body: &[u8], scrub: &[&str]) -> CircleError {
    #[derive(Deserialize)]
    struct ErrorBody {
        code: Option<i64>,
        message: Option<String>,
    }
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|error| error.code);
    let message = parsed
        .and_then(|error| error.message)
        .map(|message| scrub_message(&message, scrub))
        .unwrap_or_default();
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        CircleError::Unauthorized {
            status: status.as_u16(),
        }
    } else if status == StatusCode::CONFLICT {
        CircleError::IdempotencyConflict { code, message }
    } else if code == Some(CODE_CIPHERTEXT_REUSED) {
        CircleError::CiphertextReused
    } else {
        CircleError::Api {
            status: status.as_u16(),
            code,
            message,
        }
    }
}

/// A server message made safe to log: secrets replaced, control characters dropped, truncated.
fn scrub_message(message: &str, secrets: &[&str]) -> String {
    let mut text = message.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 8) {
        text = text.replace(secret, "<redacted>");
    }
    let mut cleaned: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE_CHARS)
        .collect();
    if text.chars().count() > MAX_MESSAGE_CHARS {
        cleaned.push('…');
    }
    cleaned
}

/// A [`CircleError::ResponseMalformed`].
fn malformed(reason: &str) -> CircleError {
    CircleError::ResponseMalformed {
        reason: reason.to_owned(),
    }
}

/// Reads a state, refusing unknown ones (fail closed).
fn parse_state(text: &str) -> Result<TransactionState, CircleError> {
    TransactionState::parse(text).map_err(|_| malformed("unknown transaction state"))
}

/// `{"data":{"id","state"}}` of a created transfer.
fn parse_created(value: &Value) -> Result<TransferCreated, CircleError> {
    #[derive(Deserialize)]
    struct Created {
        id: String,
        state: String,
    }
    let created: Created = value
        .get("data")
        .and_then(|data| Created::deserialize(data).ok())
        .ok_or_else(|| malformed("transfer answer lacks data.id or data.state"))?;
    if created.id.is_empty() {
        return Err(malformed("empty transaction id"));
    }
    Ok(TransferCreated {
        state: parse_state(&created.state)?,
        id: created.id,
    })
}

/// A transaction object; unknown fields are ignored.
fn parse_transaction(value: &Value) -> Result<Transaction, CircleError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Raw {
        id: String,
        state: String,
        tx_hash: Option<String>,
        #[serde(default)]
        amounts: Vec<String>,
        wallet_id: Option<String>,
        destination_address: Option<String>,
        blockchain: Option<String>,
        token_id: Option<String>,
        ref_id: Option<String>,
        error_reason: Option<String>,
        create_date: Option<String>,
        update_date: Option<String>,
    }
    let raw = Raw::deserialize(value)
        .map_err(|_| malformed("transaction lacks id or state, or has a mistyped field"))?;
    if raw.id.is_empty() {
        return Err(malformed("empty transaction id"));
    }
    Ok(Transaction {
        state: parse_state(&raw.state)?,
        id: raw.id,
        tx_hash: raw.tx_hash.filter(|hash| !hash.is_empty()),
        amounts: raw.amounts,
        wallet_id: raw.wallet_id,
        destination_address: raw.destination_address,
        blockchain: raw.blockchain,
        token_id: raw.token_id,
        ref_id: raw.ref_id,
        error_reason: raw.error_reason,
        create_date: raw.create_date,
        update_date: raw.update_date,
    })
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for a path segment or a
/// query value).
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        for good in [
            "https://api.circle.com",
            "https://api.circle.com/",
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9",
        ] {
            assert!(check_base_url(good).is_ok(), "{good}");
        }
        assert_eq!(
            check_base_url("https://api.circle.com/").ok().as_deref(),
            Some("https://api.circle.com")
        );
        for bad in [
            "http://api.circle.com",
            "ftp://api.circle.com",
            "api.circle.com",
            "https://api.circle.com/?x=1",
            "https://user@api.circle.com",
            "",
        ] {
            assert_eq!(
                check_base_url(bad).map(|_| ()).unwrap_err().reason_code(),
                "CIRCLE_CLIENT_CONFIG",
                "{bad}"
            );
        }
    }

    #[test]
    fn messages_are_scrubbed() {
        let message = format!(
            "bad ciphertext {} here\n{}",
            "A".repeat(20),
            "x".repeat(400)
        );
        let cleaned = scrub_message(&message, &[&"A".repeat(20), ""]);
        assert!(!cleaned.contains(&"A".repeat(20)));
        assert!(cleaned.contains("<redacted>") && !cleaned.contains('\n'));
        assert!(cleaned.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn error_mapping() {
        let body = br#"{"code":156004,"message":"reused"}"#;
        assert_eq!(
            error_from_answer(StatusCode::BAD_REQUEST, body, &[]).reason_code(),
            "CIRCLE_CIPHERTEXT_REUSED"
        );
        assert_eq!(
            error_from_answer(StatusCode::CONFLICT, b"", &[]).reason_code(),
            "CIRCLE_IDEMPOTENCY_CONFLICT"
        );
        assert_eq!(
            error_from_answer(StatusCode::FORBIDDEN, b"<html>", &[]).reason_code(),
            "CIRCLE_UNAUTHORIZED"
        );
        let server = error_from_answer(StatusCode::BAD_GATEWAY, b"oops", &[]);
        assert_eq!(server.reason_code(), "CIRCLE_API_ERROR");
        assert!(server.is_retryable());
        assert!(!error_from_answer(StatusCode::BAD_REQUEST, b"{}", &[]).is_retryable());
        assert!(error_from_answer(StatusCode::TOO_MANY_REQUESTS, b"{}", &[]).is_retryable());
    }

    #[test]
    fn transactions_parse_leniently_but_fail_closed() {
        let value = json!({"id": "t1", "state": "SENT", "txHash": "0xab", "amounts": ["1.5"],
            "somethingNew": {"nested": [1, 2]}});
        let transaction = parse_transaction(&value).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(transaction.state, TransactionState::Sent);
        assert_eq!(transaction.amount_base_units(6), Ok(1_500_000));
        for bad in [
            json!({"id": "t1", "state": "PENDING_RISK_SCREENING"}),
            json!({"id": "t1"}),
            json!({"id": "", "state": "SENT"}),
            json!({"id": "t1", "state": "SENT", "amounts": [1.5]}),
            json!([]),
        ] {
            assert_eq!(
                parse_transaction(&bad).unwrap_err().reason_code(),
                "CIRCLE_RESPONSE_MALFORMED",
                "{bad}"
            );
        }
        assert_eq!(
            parse_created(&json!({"data": {"id": "x"}}))
                .unwrap_err()
                .reason_code(),
            "CIRCLE_RESPONSE_MALFORMED"
        );
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("a-b_c.d~1"), "a-b_c.d~1");
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
