//! Test support: an in-process emulator of the subset of Circle's Web3 Services (W3S) API that
//! the Circle adapter uses, following Circle's documented contract, with injectable faults.
//!
//! It is an HTTP/1.1 server (hyper 1 on a current-thread tokio runtime in its own thread) on
//! `127.0.0.1:0`, so it works from plain and from `#[tokio::test]` tests alike, and from the
//! `trustos adapters conformance` command (feature `testkit`).
//!
//! # Endpoints
//!
//! Every endpoint requires `Authorization: Bearer <api key>` with exactly the configured
//! `TEST_API_KEY:…` key, else `401`.
//!
//! - `GET /v1/w3s/config/entity/publicKey` → `{"data":{"publicKey":"<PEM>"}}`, the RSA public key
//!   of the test vectors (`tests/vectors/circle/rsa4096-public.pem`); the emulator holds the
//!   matching private key.
//! - `POST /v1/w3s/developer/transactions/transfer` with `idempotencyKey` (UUID),
//!   `entitySecretCiphertext`, `walletId` (or `walletAddress` + `blockchain`), `tokenId` (or
//!   `blockchain` + `tokenAddress`), `destinationAddress`, `amounts` (one decimal string, at most
//!   6 fractional digits, above zero), `feeLevel` (`LOW`/`MEDIUM`/`HIGH`) or explicit gas fields,
//!   optional `refId` → `201 {"data":{"id","state":"INITIATED"}}`.
//! - `GET /v1/w3s/transactions/{id}` → `{"data":{"transaction":{id, state, txHash, amounts, …}}}`.
//! - `GET /v1/w3s/transactions[?refId=…]` → `{"data":{"transactions":[…]}}`, newest first.
//! - `GET /v2/notifications/publicKey/{id}` →
//!   `{"data":{"id","algorithm":"ECDSA_SHA_256","publicKey","createDate"}}`.
//! - `POST /v1/w3s/developer/sign/typedData` with `entitySecretCiphertext`, `walletId`, `data`
//!   (the EIP-712 typed data as a JSON *string*: `types`, `primaryType`, `domain`, `message`) and
//!   optional `memo` → `200 {"data":{"signature":"0x…"}}`: 65 bytes `r ‖ s ‖ v`, `v` ∈ {27, 28},
//!   low `s`, made with the key of the wallet ([`EmulatorConfig::wallets`]; by default one
//!   wallet, [`DEFAULT_WALLET_ID`], with the public Hardhat #0 key, see
//!   [`CircleEmulator::default_wallet`]) over the EIP-712 digest. Every request is recorded
//!   ([`CircleEmulator::typed_data_signatures`]).
//!
//! Errors are `{"code", "message"}` (Circle's general error format).
//!
//! # The contract it enforces
//!
//! - The entity secret ciphertext is decoded (base64), decrypted (RSA-OAEP-SHA-256) and must be the
//!   registered entity secret, else `400`. A ciphertext seen before (decoded bytes) is refused with
//!   `400` and code [`CODE_CIPHERTEXT_REUSED`] (156004), so every request, retries included, needs
//!   a fresh one. A decrypted ciphertext is spent even when the request then fails.
//! - Idempotency: the request minus `entitySecretCiphertext` (which must differ on every try) is
//!   the request's identity. The same `idempotencyKey` with the same identity returns the same
//!   transaction (`200`, nothing new created); with another identity it is refused with `409`.
//! - Signing typed data: the same ciphertext rules. `walletId` must name a configured wallet,
//!   else `404` with [`CODE_NOT_FOUND`]. Only `primaryType` `TransferWithAuthorization`
//!   (EIP-3009, exactly its six fields) under the four-field `EIP712Domain` (`name`, `version`,
//!   `chainId`, `verifyingContract`, in that order) is supported; any other typed data, and a
//!   `data` that is not a JSON string of an object, is refused with `400` and code
//!   [`CODE_PARAMETER_INVALID`] (a documented limitation: Circle signs any EIP-712 data). The
//!   digest is computed by the crate's EIP-712 code (`x402::evm`) and signed with the crate's
//!   `EvmSigner`; nothing is created.
//! - Transactions advance `INITIATED → QUEUED → SENT → CONFIRMED → COMPLETE` only when the test
//!   says so ([`CircleEmulator::advance`], [`CircleEmulator::advance_to`],
//!   [`CircleEmulator::tick`]), or all at once at creation with
//!   [`EmulatorConfig::auto_complete`] (the creation still answers `INITIATED`): a destination
//!   in [`EmulatorConfig::fail_destinations`] goes
//!   `INITIATED → QUEUED → SENT → FAILED`, one in [`EmulatorConfig::deny_destinations`] goes
//!   `INITIATED → DENIED`. `txHash` appears at `SENT`.
//! - On every state (creation included) a v2 notification
//!   `{subscriptionId, notificationId, notificationType:"transactions.outbound", notification:{…the
//!   transaction…}, timestamp, version:2}` is POSTed to [`EmulatorConfig::webhook_url`] with
//!   `X-Circle-Signature` (base64 of the DER ECDSA P-256/SHA-256 signature over the exact body
//!   bytes) and `X-Circle-Key-Id`. `notificationId` is unique per notification. Delivery happens
//!   in order on a background thread; [`CircleEmulator::flush_webhooks`] waits for it.
//!
//! # Faults ([`Fault`], [`CircleEmulator::set_fault`])
//!
//! - [`Fault::TimeoutAfterCreate`] and [`Fault::ServerError`] are queued and each applies to one
//!   later transfer request: the first creates the transaction (and its notification) and then
//!   closes the connection without any response; the second answers `500` without creating
//!   anything or spending the ciphertext.
//! - [`Fault::DropWebhooks`] and [`Fault::DuplicateWebhooks`] hold until
//!   [`CircleEmulator::clear_faults`]: notifications are recorded and signed but not sent, or sent
//!   twice (same bytes, same `notificationId`, as a redelivery is).
//! - [`Fault::SignWithOtherKey`] holds until [`CircleEmulator::clear_faults`]: typed data is
//!   signed with another key ([`OTHER_SIGNING_KEY_HEX`], Hardhat #1) than the wallet's, as a
//!   wrong or tampered answer would be.
//! - [`Fault::SignServerError`] is queued and applies to one later sign request: its ciphertext
//!   is checked and spent, then it answers `500` (so a retry that reused the ciphertext would be
//!   refused with 156004).
//!
//! # Sources and what is the emulator's own choice
//!
//! Request and response shapes:
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/create-developer-transaction-transfer>,
//! <https://developers.circle.com/openapi/developer-controlled-wallets.yaml> (every W3S path above),
//! <https://developers.circle.com/api-reference/wallets/programmable-wallets/get-public-key>,
//! <https://developers.circle.com/api-reference/wallets/common/get-notification-signature>.
//! Error format and general codes (`2` invalid parameter, `-1` something went wrong):
//! <https://developers.circle.com/wallets/error-codes>,
//! <https://developers.circle.com/api-reference/errors>. Entity secret ciphertext (fresh per
//! request): <https://developers.circle.com/wallets/dev-controlled/entity-secret-management>.
//! Notifications (envelope, `notificationId` stable across retries, redeliveries happen,
//! signature headers): <https://developers.circle.com/api-reference/webhooks>,
//! <https://developers.circle.com/wallets/webhook-notifications-for-wallets>,
//! <https://developers.circle.com/api-reference/verify-webhook-signatures>. Transaction states:
//! <https://developers.circle.com/api-reference/wallets/transaction-states-and-errors>.
//!
//! Not confirmed from Circle's documentation (the emulator's choices, so an adapter must not
//! depend on them beyond the HTTP status class): the `code` for a wrong API key
//! ([`CODE_UNAUTHORIZED`]), for an idempotency conflict ([`CODE_IDEMPOTENCY_CONFLICT`], with HTTP
//! `409`), for a ciphertext that does not decrypt to the entity secret
//! ([`CODE_CIPHERTEXT_INVALID`]), for an unknown resource; `200` (rather than `201`) for an
//! idempotent replay; the body of a `500`; the emulated transaction object carries only the
//! fields listed in [`Transfer`].
//!
//! Signing typed data follows
//! <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/sign-typed-data>
//! (request `walletId` or `walletAddress` + `blockchain`, `data` as a string, `memo`,
//! `entitySecretCiphertext`; answer `data.signature`). The emulator's own choices there: only
//! `walletId` identifies a wallet (`walletAddress` + `blockchain` is refused with code `2`); an
//! unknown wallet is `404` with [`CODE_NOT_FOUND`]; only EIP-3009 transfer authorizations are
//! signed (above); `chainId` and the `uint256` values may be JSON numbers or decimal strings;
//! `v` is 27/28 (Circle does not document which convention it answers); signatures are RFC 6979
//! deterministic.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::circle::TransactionState;
use crate::circle::amount::from_decimal;
use crate::x402::evm::{
    self, Address, B256, EvmSigner, TRANSFER_WITH_AUTHORIZATION_TYPE, TokenDomain,
    TransferAuthorization, U256,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::{Oaep, PrivateKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// The emulator could not start.
#[derive(Debug, thiserror::Error)]
#[error("Circle emulator: {0}")]
pub struct EmulatorError(String);

impl EmulatorError {
    /// An error saying `what`.
    pub fn new(what: impl Into<String>) -> Self {
        Self(what.into())
    }
}

/// Circle's code for an invalid request parameter (documented, HTTP 400).
pub const CODE_PARAMETER_INVALID: i64 = 2;
/// Circle's code for "something went wrong" (documented); used with HTTP 500.
pub const CODE_SOMETHING_WENT_WRONG: i64 = -1;
/// Circle's code for a reused entity secret ciphertext (HTTP 400).
pub const CODE_CIPHERTEXT_REUSED: i64 = 156004;
/// Emulator's code for a ciphertext that does not decrypt to the entity secret (HTTP 400).
pub const CODE_CIPHERTEXT_INVALID: i64 = 156013;
/// Emulator's code for a missing or wrong API key (HTTP 401).
pub const CODE_UNAUTHORIZED: i64 = 401;
/// Emulator's code for an idempotency key reused with another request (HTTP 409).
pub const CODE_IDEMPOTENCY_CONFLICT: i64 = 409;
/// Emulator's code for an unknown transaction, key or path (HTTP 404).
pub const CODE_NOT_FOUND: i64 = 404;

/// Id of the default wallet of [`EmulatorConfig::default`].
pub const DEFAULT_WALLET_ID: &str = "3f6b2c1e-8d4a-4f7b-9e2c-5a1d7c9b0e42";
/// Key of the default wallet: the public Hardhat #0 key (address
/// `0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266`; never fund it on a real chain).
pub const DEFAULT_WALLET_KEY_HEX: &str =
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// The key [`Fault::SignWithOtherKey`] signs with: the public Hardhat #1 key.
pub const OTHER_SIGNING_KEY_HEX: &str =
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

/// The test RSA private key whose public half is the entity public key.
const RSA_PRIVATE_PEM: &str = include_str!("../../tests/vectors/circle/rsa4096-private.pem");
/// The entity public key served by `GET /v1/w3s/config/entity/publicKey`.
const RSA_PUBLIC_PEM: &str = include_str!("../../tests/vectors/circle/rsa4096-public.pem");
/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1, 65-byte BIT STRING).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// The test notification signing key: a fixed scalar, test-only.
const NOTIFICATION_SIGNING_SCALAR: [u8; 32] = [
    0x5e, 0x1f, 0x3a, 0x77, 0x0c, 0x91, 0x42, 0xd8, 0x6b, 0x2e, 0xa4, 0x13, 0x7f, 0xc0, 0x58, 0x9d,
    0x21, 0xe6, 0x04, 0xbb, 0x3c, 0x95, 0x6a, 0x0f, 0xd2, 0x47, 0x81, 0x1e, 0x6c, 0xf3, 0x29, 0x50,
];

/// What the emulator is started with.
#[derive(Clone, Debug)]
pub struct EmulatorConfig {
    /// The only API key accepted (`TEST_API_KEY:ID:SECRET`).
    pub api_key: String,
    /// The registered entity secret, 64 hex digits.
    pub entity_secret_hex: String,
    /// Where notifications are POSTed (`http://host:port/path`); none are sent when `None`.
    pub webhook_url: Option<String>,
    /// Destinations whose transfers end `FAILED` (after `SENT`).
    pub fail_destinations: HashSet<String>,
    /// Destinations whose transfers end `DENIED` (right after `INITIATED`).
    pub deny_destinations: HashSet<String>,
    /// The developer-controlled EVM wallets that can sign typed data.
    pub wallets: Vec<EmulatorWallet>,
    /// When true, a newly created transfer is advanced to its final state right at creation,
    /// before the creating request is answered: `INITIATED → QUEUED → SENT → CONFIRMED →
    /// COMPLETE` (or the `FAILED` / `DENIED` route of [`Self::fail_destinations`] and
    /// [`Self::deny_destinations`]), one notification per state in that order, `txHash` set at
    /// `SENT`, exactly as [`CircleEmulator::advance_to`] would. The creation still answers
    /// `INITIATED`; a following `GET` already finds the final state. For load tests that need
    /// transfers to finish at once and the same way for every client. Default `false`: states
    /// move only when the test says so.
    pub auto_complete: bool,
}

/// A developer-controlled EVM wallet of the emulator: Circle's id and the secp256k1 key Circle
/// would hold for it.
#[derive(Clone)]
pub struct EmulatorWallet {
    /// The wallet id (`walletId`).
    pub id: String,
    /// The wallet's secp256k1 private key, 64 hex digits (test keys only).
    pub private_key_hex: String,
}

impl std::fmt::Debug for EmulatorWallet {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EmulatorWallet")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            api_key: "TEST_API_KEY:0f1e2d3c4b5a69788796a5b4c3d2e1f0:emulatorsecret0123456789abcdef"
                .to_owned(),
            entity_secret_hex: "7ae43b03d7e48795cbf39ddad2f58dc8e186eb3d2dab3a5ec5bb3b33946639a4"
                .to_owned(),
            webhook_url: None,
            fail_destinations: HashSet::new(),
            deny_destinations: HashSet::new(),
            wallets: vec![EmulatorWallet {
                id: DEFAULT_WALLET_ID.to_owned(),
                private_key_hex: DEFAULT_WALLET_KEY_HEX.to_owned(),
            }],
            auto_complete: false,
        }
    }
}

/// An injectable fault (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next transfer request creates its transaction, then the connection closes unanswered.
    TimeoutAfterCreate,
    /// The next transfer request gets `500` and creates nothing.
    ServerError,
    /// Notifications are not sent until [`CircleEmulator::clear_faults`].
    DropWebhooks,
    /// Notifications are sent twice until [`CircleEmulator::clear_faults`].
    DuplicateWebhooks,
    /// Typed data is signed with [`OTHER_SIGNING_KEY_HEX`] instead of the wallet's key until
    /// [`CircleEmulator::clear_faults`].
    SignWithOtherKey,
    /// The next sign request spends its ciphertext, then gets `500` and signs nothing.
    SignServerError,
}

/// A `POST /v1/w3s/developer/sign/typedData` request the emulator answered with a signature.
#[derive(Clone, Debug)]
pub struct TypedDataSignature {
    /// The `walletId`.
    pub wallet_id: String,
    /// The EIP-712 digest signed.
    pub digest: B256,
    /// The signature answered (`0x` + 130 hex digits).
    pub signature: String,
    /// The request's `memo`, when given.
    pub memo: Option<String>,
    /// Whether [`Fault::SignWithOtherKey`] made another key sign.
    pub other_key: bool,
}

/// A transaction the emulator created.
#[derive(Clone, Debug)]
pub struct Transfer {
    /// Circle's transaction id.
    pub id: String,
    /// The request's `idempotencyKey`.
    pub idempotency_key: String,
    /// The current state.
    pub state: TransactionState,
    /// `walletId` (or `walletAddress`) of the request.
    pub wallet_id: String,
    /// `blockchain`, when given.
    pub blockchain: Option<String>,
    /// `tokenId`, when given.
    pub token_id: Option<String>,
    /// `tokenAddress`, when given.
    pub token_address: Option<String>,
    /// `destinationAddress`.
    pub destination_address: String,
    /// `amounts`.
    pub amounts: Vec<String>,
    /// `feeLevel`, when given.
    pub fee_level: Option<String>,
    /// `refId`, when given.
    pub ref_id: Option<String>,
    /// Set from `SENT` on.
    pub tx_hash: Option<String>,
    /// Whether the creating request was answered (false after [`Fault::TimeoutAfterCreate`]).
    pub answered: bool,
    /// RFC 3339 creation time.
    pub create_date: String,
    /// RFC 3339 time of the last state change.
    pub update_date: String,
    /// The request's identity for idempotency: its body without the ciphertext.
    fingerprint: Value,
    /// Which path through the states it takes.
    route: Route,
}

/// A notification the emulator produced (whether or not it was delivered).
#[derive(Clone, Debug)]
pub struct SentNotification {
    /// Its `notificationId`.
    pub notification_id: String,
    /// The transaction it is about.
    pub transaction_id: String,
    /// The state it announces.
    pub state: TransactionState,
    /// The exact body bytes that were signed.
    pub body: Vec<u8>,
    /// `X-Circle-Signature`.
    pub signature: String,
    /// How many copies were handed to the sender: 0 (dropped), 1, or 2 (duplicated).
    pub copies: u8,
}

/// The path a transaction takes through the states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Complete,
    Fail,
    Deny,
}

/// The state after `state` on `route`, or `None` when it is final.
fn next_state(state: TransactionState, route: Route) -> Option<TransactionState> {
    use TransactionState as S;
    match (route, state) {
        (Route::Deny, S::Initiated) => Some(S::Denied),
        (_, S::Initiated) => Some(S::Queued),
        (_, S::Queued) => Some(S::Sent),
        (Route::Fail, S::Sent) => Some(S::Failed),
        (_, S::Sent) => Some(S::Confirmed),
        (_, S::Confirmed) => Some(S::Complete),
        _ => None,
    }
}

/// Work for the webhook sender thread.
enum Outgoing {
    Deliver {
        url: String,
        body: Vec<u8>,
        signature: String,
        key_id: String,
        copies: u8,
    },
    Flush(mpsc::Sender<()>),
}

/// Mutable emulator state.
struct Inner {
    transfers: Vec<Transfer>,
    by_key: HashMap<String, usize>,
    used_ciphertexts: HashSet<Vec<u8>>,
    request_faults: VecDeque<Fault>,
    drop_webhooks: bool,
    duplicate_webhooks: bool,
    notifications: Vec<SentNotification>,
    counter: u64,
    sign_with_other_key: bool,
    sign_faults: VecDeque<Fault>,
    typed_data_signatures: Vec<TypedDataSignature>,
}

/// State shared between the test thread and the server.
struct Shared {
    config: EmulatorConfig,
    entity_secret: Vec<u8>,
    rsa: PrivateKey,
    signing_key: SigningKey,
    key_id: String,
    public_key_b64: String,
    key_create_date: String,
    subscription_id: String,
    seed: u64,
    inner: Mutex<Inner>,
    outbox: Mutex<mpsc::Sender<Outgoing>>,
    wallets: Vec<(String, EvmSigner)>,
    other_key: EvmSigner,
    /// Longest random delay before answering a transfer request that created or found its
    /// transaction (see [`CircleEmulator::set_answer_delay`]).
    answer_delay: Mutex<Option<Duration>>,
}

/// The running emulator; stops when dropped.
pub struct CircleEmulator {
    shared: Arc<Shared>,
    server: super::LocalServer,
}

impl CircleEmulator {
    /// Starts the emulator on `127.0.0.1` on a free port.
    pub fn start(config: EmulatorConfig) -> Result<Self, EmulatorError> {
        let entity_secret = decode_hex(&config.entity_secret_hex);
        if entity_secret.len() != 32 || config.entity_secret_hex.len() != 64 {
            return Err(EmulatorError("entity secret must be 64 hex digits".into()));
        }
        let rsa = PrivateKey::from_pkcs8_pem(RSA_PRIVATE_PEM)
            .map_err(|e| EmulatorError(format!("test RSA key: {e}")))?;
        let signing_key = SigningKey::from_slice(&NOTIFICATION_SIGNING_SCALAR)
            .map_err(|e| EmulatorError(format!("P-256 key: {e}")))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(signing_key.verifying_key().to_sec1_point(false).as_bytes());
        let mut wallets = Vec::with_capacity(config.wallets.len());
        for wallet in &config.wallets {
            let key = EvmSigner::from_hex(&wallet.private_key_hex)
                .map_err(|e| EmulatorError(format!("key of wallet {}: {e}", wallet.id)))?;
            wallets.push((wallet.id.clone(), key));
        }
        let other_key = EvmSigner::from_hex(OTHER_SIGNING_KEY_HEX)
            .map_err(|e| EmulatorError(format!("other signing key: {e}")))?;
        let seed = RandomState::new().build_hasher().finish();
        let (outbox, outbox_rx) = mpsc::channel();
        std::thread::spawn(move || webhook_sender(outbox_rx));
        let shared = Arc::new(Shared {
            key_id: uuid_like(seed, 0xffff_0001),
            subscription_id: uuid_like(seed, 0xffff_0002),
            public_key_b64: STANDARD.encode(&spki),
            key_create_date: rfc3339_now(),
            config,
            entity_secret,
            rsa,
            signing_key,
            seed,
            inner: Mutex::new(Inner {
                transfers: Vec::new(),
                by_key: HashMap::new(),
                used_ciphertexts: HashSet::new(),
                request_faults: VecDeque::new(),
                drop_webhooks: false,
                duplicate_webhooks: false,
                notifications: Vec::new(),
                counter: 0,
                sign_with_other_key: false,
                sign_faults: VecDeque::new(),
                typed_data_signatures: Vec::new(),
            }),
            outbox: Mutex::new(outbox),
            answer_delay: Mutex::new(None),
            wallets,
            other_key,
        });

        let server =
            super::LocalServer::start(Arc::clone(&shared), handle).map_err(EmulatorError)?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.server.base_url()
    }

    /// The accepted API key.
    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    /// The registered entity secret, 64 hex digits.
    pub fn entity_secret_hex(&self) -> &str {
        &self.shared.config.entity_secret_hex
    }

    /// The entity public key PEM (what `GET /v1/w3s/config/entity/publicKey` serves).
    pub fn entity_public_key_pem(&self) -> &'static str {
        RSA_PUBLIC_PEM
    }

    /// `X-Circle-Key-Id` of the notifications.
    pub fn notification_key_id(&self) -> &str {
        &self.shared.key_id
    }

    /// The notification public key, base64 DER SubjectPublicKeyInfo.
    pub fn notification_public_key_b64(&self) -> &str {
        &self.shared.public_key_b64
    }

    /// Id and address of the first configured wallet ([`DEFAULT_WALLET_ID`] and Hardhat #0's
    /// address with the default configuration); `None` when no wallet is configured.
    pub fn default_wallet(&self) -> Option<(String, Address)> {
        self.shared
            .wallets
            .first()
            .map(|(id, key)| (id.clone(), key.address()))
    }

    /// The address of wallet `id`, when configured.
    pub fn wallet_address(&self, id: &str) -> Option<Address> {
        self.shared
            .wallets
            .iter()
            .find(|(wallet, _)| wallet == id)
            .map(|(_, key)| key.address())
    }

    /// Every typed-data signature answered so far, oldest first.
    pub fn typed_data_signatures(&self) -> Vec<TypedDataSignature> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .typed_data_signatures
            .clone()
    }

    /// How many entity secret ciphertexts were accepted and spent so far (every request that
    /// passed the ciphertext check, whatever happened next).
    pub fn spent_ciphertexts(&self) -> usize {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .used_ciphertexts
            .len()
    }

    /// Every transaction created so far, oldest first.
    pub fn transfers(&self) -> Vec<Transfer> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .transfers
            .clone()
    }

    /// One transaction by id.
    pub fn transfer(&self, id: &str) -> Option<Transfer> {
        let inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        inner.transfers.iter().find(|t| t.id == id).cloned()
    }

    /// Every notification produced so far, in order.
    pub fn notifications(&self) -> Vec<SentNotification> {
        self.shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .notifications
            .clone()
    }

    /// Injects a fault (see [`Fault`]).
    pub fn set_fault(&self, fault: Fault) {
        let mut inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match fault {
            Fault::TimeoutAfterCreate | Fault::ServerError => inner.request_faults.push_back(fault),
            Fault::DropWebhooks => inner.drop_webhooks = true,
            Fault::DuplicateWebhooks => inner.duplicate_webhooks = true,
            Fault::SignWithOtherKey => inner.sign_with_other_key = true,
            Fault::SignServerError => inner.sign_faults.push_back(fault),
        }
    }

    /// Holds every later answer to a transfer request whose transaction exists (created or
    /// found) for a random time up to `max` (`None`: answer at once). The transaction exists
    /// while its answer is held: a client killed meanwhile never learns of it.
    pub fn set_answer_delay(&self, max: Option<Duration>) {
        *self
            .shared
            .answer_delay
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = max;
    }

    /// Removes every pending and standing fault.
    pub fn clear_faults(&self) {
        let mut inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        inner.request_faults.clear();
        inner.drop_webhooks = false;
        inner.duplicate_webhooks = false;
        inner.sign_with_other_key = false;
        inner.sign_faults.clear();
    }

    /// Moves transaction `id` one state on; returns its state afterwards (`None` if unknown).
    pub fn advance(&self, id: &str) -> Option<TransactionState> {
        let mut inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let index = inner.transfers.iter().position(|t| t.id == id)?;
        step(&self.shared, &mut inner, index);
        Some(inner.transfers[index].state)
    }

    /// Moves transaction `id` on until it is in `target` or final; returns where it stopped.
    pub fn advance_to(&self, id: &str, target: TransactionState) -> Option<TransactionState> {
        loop {
            let before = self.transfer(id)?.state;
            if before == target {
                return Some(before);
            }
            let after = self.advance(id)?;
            if after == before {
                return Some(after);
            }
        }
    }

    /// Moves every transaction that is not final one state on.
    pub fn tick(&self) {
        let mut inner = self
            .shared
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for index in 0..inner.transfers.len() {
            step(&self.shared, &mut inner, index);
        }
    }

    /// Waits until every notification produced so far has been sent (or failed to send).
    pub fn flush_webhooks(&self) {
        let (done, wait) = mpsc::channel();
        let sent = self
            .shared
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Outgoing::Flush(done));
        if sent.is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
    }
}

/// Moves transfer `index` one state on (if not final) and notifies.
fn step(shared: &Shared, inner: &mut Inner, index: usize) {
    let transfer = &mut inner.transfers[index];
    let Some(next) = next_state(transfer.state, transfer.route) else {
        return;
    };
    transfer.state = next;
    transfer.update_date = rfc3339_now();
    if next == TransactionState::Sent {
        let digest = Sha256::digest(transfer.id.as_bytes());
        transfer.tx_hash = Some(format!("0x{}", encode_hex(&digest)));
    }
    notify(shared, inner, index);
}

/// Records, signs and queues the notification of transfer `index`'s current state.
fn notify(shared: &Shared, inner: &mut Inner, index: usize) {
    inner.counter += 1;
    let notification_id = uuid_like(shared.seed, inner.counter);
    let transfer = &inner.transfers[index];
    let envelope = json!({
        "subscriptionId": shared.subscription_id,
        "notificationId": notification_id,
        "notificationType": "transactions.outbound",
        "notification": transaction_json(transfer),
        "timestamp": rfc3339_now(),
        "version": 2,
    });
    // A `Value` always serializes.
    let body = serde_json::to_vec(&envelope).unwrap_or_default();
    let signature: Signature = shared.signing_key.sign(&body);
    let signature = STANDARD.encode(signature.to_der().as_bytes());
    let copies = match (inner.drop_webhooks, inner.duplicate_webhooks) {
        (true, _) => 0,
        (false, true) => 2,
        (false, false) => 1,
    };
    let record = SentNotification {
        notification_id,
        transaction_id: transfer.id.clone(),
        state: transfer.state,
        body: body.clone(),
        signature: signature.clone(),
        copies,
    };
    inner.notifications.push(record);
    if let (Some(url), true) = (&shared.config.webhook_url, copies > 0) {
        let _ = shared
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(Outgoing::Deliver {
                url: url.clone(),
                body,
                signature,
                key_id: shared.key_id.clone(),
                copies,
            });
    }
}

/// A transaction as `GET /v1/w3s/transactions/{id}` and notifications show it.
fn transaction_json(transfer: &Transfer) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), json!(transfer.id));
    object.insert("state".into(), json!(transfer.state.as_str()));
    object.insert("walletId".into(), json!(transfer.wallet_id));
    object.insert(
        "destinationAddress".into(),
        json!(transfer.destination_address),
    );
    object.insert("amounts".into(), json!(transfer.amounts));
    object.insert("transactionType".into(), json!("OUTBOUND"));
    object.insert("operation".into(), json!("TRANSFER"));
    object.insert("custodyType".into(), json!("DEVELOPER"));
    for (name, value) in [
        ("blockchain", &transfer.blockchain),
        ("tokenId", &transfer.token_id),
        ("tokenAddress", &transfer.token_address),
        ("feeLevel", &transfer.fee_level),
        ("refId", &transfer.ref_id),
        ("txHash", &transfer.tx_hash),
    ] {
        if let Some(value) = value {
            object.insert(name.into(), json!(value));
        }
    }
    object.insert("createDate".into(), json!(transfer.create_date));
    object.insert("updateDate".into(), json!(transfer.update_date));
    Value::Object(object)
}

/// What a request handler decided.
enum Outcome {
    Respond(StatusCode, Value),
    Abort,
}

/// The connection is closed without a response ([`Fault::TimeoutAfterCreate`]).
#[derive(Debug)]
struct Abort;

impl std::fmt::Display for Abort {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("emulated timeout: connection closed without a response")
    }
}

impl std::error::Error for Abort {}

/// Serves one request.
async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Abort> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or("").to_owned();
    let authorized = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .is_some_and(|key| key == shared.config.api_key);
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Err(Abort),
    };
    let outcome = if authorized {
        route(&shared, &method, &path, &query, &body)
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            CODE_UNAUTHORIZED,
            "Malformed authorization. Are the credentials properly encoded?",
        )
    };
    let delay = *shared
        .answer_delay
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let (Some(max), Outcome::Respond(status, _)) = (delay, &outcome)
        && method == Method::POST
        && path.ends_with("/transactions/transfer")
        && status.is_success()
    {
        let fraction = (RandomState::new().build_hasher().finish() % 1_000) as f64 / 1_000.0;
        tokio::time::sleep(max.mul_f64(fraction)).await;
    }
    match outcome {
        Outcome::Abort => Err(Abort),
        Outcome::Respond(status, value) => {
            let bytes = serde_json::to_vec(&value).unwrap_or_default();
            let mut response = Response::new(Full::new(Bytes::from(bytes)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
    }
}

/// Dispatches an authorized request.
fn route(shared: &Shared, method: &Method, path: &str, query: &str, body: &[u8]) -> Outcome {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["v1", "w3s", "config", "entity", "publicKey"]) => Outcome::Respond(
            StatusCode::OK,
            json!({"data": {"publicKey": RSA_PUBLIC_PEM}}),
        ),
        (&Method::POST, ["v1", "w3s", "developer", "transactions", "transfer"]) => {
            create_transfer(shared, body)
        }
        (&Method::POST, ["v1", "w3s", "developer", "sign", "typedData"]) => {
            sign_typed_data(shared, body)
        }
        (&Method::GET, ["v1", "w3s", "transactions", id]) => {
            let inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
            match inner.transfers.iter().find(|t| t.id == *id) {
                Some(transfer) => Outcome::Respond(
                    StatusCode::OK,
                    json!({"data": {"transaction": transaction_json(transfer)}}),
                ),
                None => error(StatusCode::NOT_FOUND, CODE_NOT_FOUND, "Resource not found"),
            }
        }
        (&Method::GET, ["v1", "w3s", "transactions"]) => {
            let ref_id = query_param(query, "refId");
            let inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
            let transactions: Vec<Value> = inner
                .transfers
                .iter()
                .rev()
                .filter(|t| ref_id.is_none() || t.ref_id == ref_id)
                .map(transaction_json)
                .collect();
            Outcome::Respond(
                StatusCode::OK,
                json!({"data": {"transactions": transactions}}),
            )
        }
        (&Method::GET, ["v2", "notifications", "publicKey", id]) if *id == shared.key_id => {
            Outcome::Respond(
                StatusCode::OK,
                json!({"data": {
                    "id": shared.key_id,
                    "algorithm": "ECDSA_SHA_256",
                    "publicKey": shared.public_key_b64,
                    "createDate": shared.key_create_date,
                }}),
            )
        }
        _ => error(StatusCode::NOT_FOUND, CODE_NOT_FOUND, "Resource not found"),
    }
}

/// `POST /v1/w3s/developer/transactions/transfer`.
fn create_transfer(shared: &Shared, body: &[u8]) -> Outcome {
    let mut inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
    let fault = inner.request_faults.pop_front();
    if fault == Some(Fault::ServerError) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_SOMETHING_WENT_WRONG,
            "Something went wrong",
        );
    }
    let invalid = |message: &str| error(StatusCode::BAD_REQUEST, CODE_PARAMETER_INVALID, message);
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid Entity");
    };

    // The entity secret ciphertext: decrypts to the registered secret, never seen before.
    if let Err(refusal) = spend_ciphertext(shared, &mut inner, &mut request) {
        return refusal;
    }

    // Field validation.
    let text = |name: &str| match request.get(name) {
        Some(Value::String(value)) if !value.is_empty() => Some(value.clone()),
        _ => None,
    };
    let Some(idempotency_key) = text("idempotencyKey").filter(|key| is_uuid(key)) else {
        return invalid("Fail to bind request to parameter: invalid UUID format (idempotencyKey)");
    };
    let blockchain = text("blockchain");
    let Some(wallet_id) =
        text("walletId").or_else(|| blockchain.as_ref().and_then(|_| text("walletAddress")))
    else {
        return invalid("walletId, or walletAddress and blockchain, is required");
    };
    let token_id = text("tokenId");
    let token_address = text("tokenAddress");
    if token_id.is_none() && (token_address.is_none() || blockchain.is_none()) {
        return invalid("tokenId, or tokenAddress and blockchain, is required");
    }
    let Some(destination_address) = text("destinationAddress") else {
        return invalid("destinationAddress is required");
    };
    let amounts: Vec<String> = match request.get("amounts") {
        Some(Value::Array(items)) if items.len() == 1 => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let amount_ok =
        amounts.len() == 1 && matches!(from_decimal(&amounts[0], 6), Ok(units) if units > 0);
    if !amount_ok {
        return invalid("amounts must hold one positive decimal with at most 6 fractional digits");
    }
    let fee_level = text("feeLevel");
    match fee_level.as_deref() {
        Some("LOW" | "MEDIUM" | "HIGH") => {}
        Some(_) => return invalid("feeLevel must be LOW, MEDIUM or HIGH"),
        None if text("gasLimit").is_some() => {}
        None => return invalid("feeLevel or gasLimit is required"),
    }

    let ref_id = text("refId");

    // Idempotency: the same key names the same request.
    let fingerprint = Value::Object(request);
    if let Some(&index) = inner.by_key.get(&idempotency_key) {
        let existing = &inner.transfers[index];
        if existing.fingerprint == fingerprint {
            return Outcome::Respond(
                StatusCode::OK,
                json!({"data": {"id": existing.id, "state": existing.state.as_str()}}),
            );
        }
        return error(
            StatusCode::CONFLICT,
            CODE_IDEMPOTENCY_CONFLICT,
            "The idempotency key was already used with a different request",
        );
    }

    let route = if shared
        .config
        .deny_destinations
        .contains(&destination_address)
    {
        Route::Deny
    } else if shared
        .config
        .fail_destinations
        .contains(&destination_address)
    {
        Route::Fail
    } else {
        Route::Complete
    };
    inner.counter += 1;
    let id = uuid_like(shared.seed ^ 0x5a5a_5a5a, inner.counter);
    let now = rfc3339_now();
    let answered = fault != Some(Fault::TimeoutAfterCreate);
    inner.transfers.push(Transfer {
        id: id.clone(),
        idempotency_key: idempotency_key.clone(),
        state: TransactionState::Initiated,
        wallet_id,
        blockchain,
        token_id,
        token_address,
        destination_address,
        amounts,
        fee_level,
        ref_id,
        tx_hash: None,
        answered,
        create_date: now.clone(),
        update_date: now,
        fingerprint,
        route,
    });
    let index = inner.transfers.len() - 1;
    inner.by_key.insert(idempotency_key, index);
    notify(shared, &mut inner, index);
    if shared.config.auto_complete {
        while next_state(inner.transfers[index].state, route).is_some() {
            step(shared, &mut inner, index);
        }
    }
    if !answered {
        return Outcome::Abort;
    }
    Outcome::Respond(
        StatusCode::CREATED,
        json!({"data": {"id": id, "state": "INITIATED"}}),
    )
}

/// Checks and spends the request's entity secret ciphertext (removed from `request`): it must
/// decrypt to the registered entity secret and never have been seen before.
fn spend_ciphertext(
    shared: &Shared,
    inner: &mut Inner,
    request: &mut Map<String, Value>,
) -> Result<(), Outcome> {
    let Some(Value::String(ciphertext)) = request.remove("entitySecretCiphertext") else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            CODE_PARAMETER_INVALID,
            "entitySecretCiphertext is required",
        ));
    };
    let decrypted = STANDARD
        .decode(ciphertext.as_bytes())
        .ok()
        .and_then(|bytes| {
            let plain = shared.rsa.decrypt(Oaep::<Sha256>::new(), &bytes).ok()?;
            Some((bytes, plain))
        });
    let Some((ciphertext_bytes, plain)) = decrypted else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            CODE_CIPHERTEXT_INVALID,
            "Invalid entity secret ciphertext",
        ));
    };
    if plain != shared.entity_secret {
        return Err(error(
            StatusCode::BAD_REQUEST,
            CODE_CIPHERTEXT_INVALID,
            "The entity secret ciphertext does not match the registered entity secret",
        ));
    }
    if !inner.used_ciphertexts.insert(ciphertext_bytes) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            CODE_CIPHERTEXT_REUSED,
            "The entity secret ciphertext has already been used; make a new one for every request",
        ));
    }
    Ok(())
}

/// `POST /v1/w3s/developer/sign/typedData`.
fn sign_typed_data(shared: &Shared, body: &[u8]) -> Outcome {
    let mut inner = shared.inner.lock().unwrap_or_else(PoisonError::into_inner);
    let invalid = |message: &str| error(StatusCode::BAD_REQUEST, CODE_PARAMETER_INVALID, message);
    let Ok(Value::Object(mut request)) = serde_json::from_slice::<Value>(body) else {
        return invalid("Invalid Entity");
    };
    if let Err(refusal) = spend_ciphertext(shared, &mut inner, &mut request) {
        return refusal;
    }
    if inner.sign_faults.pop_front() == Some(Fault::SignServerError) {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_SOMETHING_WENT_WRONG,
            "Something went wrong",
        );
    }
    let Some(wallet_id) = request
        .get("walletId")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
    else {
        return invalid("walletId is required (walletAddress and blockchain are not emulated)");
    };
    let Some(Value::String(data)) = request.get("data") else {
        return invalid("data must be a string holding the EIP-712 typed data");
    };
    let memo = match request.get("memo") {
        None => None,
        Some(Value::String(memo)) => Some(memo.clone()),
        Some(_) => return invalid("memo must be a string"),
    };
    let Some(wallet_key) = shared
        .wallets
        .iter()
        .find(|(id, _)| id == wallet_id)
        .map(|(_, key)| key)
    else {
        return error(StatusCode::NOT_FOUND, CODE_NOT_FOUND, "Wallet not found");
    };
    let (domain, authorization) = match parse_transfer_typed_data(data) {
        Ok(parsed) => parsed,
        Err(reason) => return invalid(reason),
    };
    let digest = authorization.signing_digest(&domain);
    let other_key = inner.sign_with_other_key;
    let key = if other_key {
        &shared.other_key
    } else {
        wallet_key
    };
    let signature = match key.sign_digest(&digest) {
        Ok(signature) => evm::signature_hex(&signature),
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                CODE_SOMETHING_WENT_WRONG,
                "Something went wrong",
            );
        }
    };
    inner.typed_data_signatures.push(TypedDataSignature {
        wallet_id: wallet_id.to_owned(),
        digest,
        signature: signature.clone(),
        memo,
        other_key,
    });
    Outcome::Respond(StatusCode::OK, json!({"data": {"signature": signature}}))
}

/// The EIP-712 domain fields the emulator signs under, in order.
const EIP712_DOMAIN_FIELDS: [(&str, &str); 4] = [
    ("name", "string"),
    ("version", "string"),
    ("chainId", "uint256"),
    ("verifyingContract", "address"),
];

/// Reads EIP-712 typed data of an EIP-3009 `TransferWithAuthorization` (see the module docs);
/// the reason it is refused otherwise.
fn parse_transfer_typed_data(
    data: &str,
) -> Result<(TokenDomain, TransferAuthorization), &'static str> {
    let Ok(Value::Object(typed)) = serde_json::from_str::<Value>(data) else {
        return Err("data is not a JSON object of EIP-712 typed data");
    };
    if typed.get("primaryType").and_then(Value::as_str) != Some("TransferWithAuthorization") {
        return Err("the emulator signs only primaryType TransferWithAuthorization");
    }
    let types = typed
        .get("types")
        .and_then(Value::as_object)
        .ok_or("types is required")?;
    let fields = |name: &str| -> Option<Vec<(String, String)>> {
        types
            .get(name)?
            .as_array()?
            .iter()
            .map(|field| {
                Some((
                    field.get("name")?.as_str()?.to_owned(),
                    field.get("type")?.as_str()?.to_owned(),
                ))
            })
            .collect()
    };
    let domain_fields = fields("EIP712Domain").ok_or("types.EIP712Domain is required")?;
    let expected_domain: Vec<(String, String)> = EIP712_DOMAIN_FIELDS
        .iter()
        .map(|(name, kind)| ((*name).to_owned(), (*kind).to_owned()))
        .collect();
    if domain_fields != expected_domain {
        return Err(
            "the emulator signs only under EIP712Domain(string name,string version,uint256 \
             chainId,address verifyingContract)",
        );
    }
    let message_fields =
        fields("TransferWithAuthorization").ok_or("types.TransferWithAuthorization is required")?;
    let encoded: Vec<String> = message_fields
        .iter()
        .map(|(name, kind)| format!("{kind} {name}"))
        .collect();
    if format!("TransferWithAuthorization({})", encoded.join(","))
        != TRANSFER_WITH_AUTHORIZATION_TYPE
    {
        return Err("types.TransferWithAuthorization is not EIP-3009's");
    }
    if types.len() != 2 {
        return Err("the emulator signs only EIP712Domain and TransferWithAuthorization types");
    }
    let domain = typed
        .get("domain")
        .and_then(Value::as_object)
        .ok_or("domain is required")?;
    let message = typed
        .get("message")
        .and_then(Value::as_object)
        .ok_or("message is required")?;
    let text = |object: &Map<String, Value>, name: &str| {
        object.get(name).and_then(Value::as_str).map(str::to_owned)
    };
    let address = |object: &Map<String, Value>, name: &str| {
        text(object, name).and_then(|value| evm::parse_address(&value).ok())
    };
    let uint = |object: &Map<String, Value>, name: &str| match object.get(name) {
        Some(Value::Number(number)) => number.as_u64().map(U256::from),
        Some(Value::String(digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            U256::from_str_radix(digits, 10).ok()
        }
        _ => None,
    };
    let chain_id = uint(domain, "chainId")
        .and_then(|id| u64::try_from(id).ok())
        .ok_or("domain.chainId must be a uint256 that fits 64 bits")?;
    let token_domain = TokenDomain {
        name: text(domain, "name").ok_or("domain.name must be a string")?,
        version: text(domain, "version").ok_or("domain.version must be a string")?,
        chain_id,
        verifying_contract: address(domain, "verifyingContract")
            .ok_or("domain.verifyingContract must be an address")?,
    };
    let nonce = text(message, "nonce")
        .filter(|nonce| nonce.len() == 66 && nonce.starts_with("0x"))
        .and_then(|nonce| nonce.parse::<B256>().ok())
        .ok_or("message.nonce must be 0x and 64 hexadecimal digits")?;
    let authorization = TransferAuthorization {
        from: address(message, "from").ok_or("message.from must be an address")?,
        to: address(message, "to").ok_or("message.to must be an address")?,
        value: uint(message, "value").ok_or("message.value must be a uint256")?,
        valid_after: uint(message, "validAfter").ok_or("message.validAfter must be a uint256")?,
        valid_before: uint(message, "validBefore")
            .ok_or("message.validBefore must be a uint256")?,
        nonce,
    };
    Ok((token_domain, authorization))
}

/// An error response in Circle's general format.
fn error(status: StatusCode, code: i64, message: &str) -> Outcome {
    Outcome::Respond(status, json!({"code": code, "message": message}))
}

/// The (undecoded, test-only) value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Whether `text` is a canonical UUID (8-4-4-4-12 hex digits).
fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(index, c)| match index {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A version-4-shaped UUID from a per-emulator seed and a counter: unique within a run.
fn uuid_like(seed: u64, counter: u64) -> String {
    let digest = Sha256::digest([seed.to_be_bytes(), counter.to_be_bytes()].concat());
    let hex = encode_hex(&digest[..16]);
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Lowercase hex.
fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Bytes of a hex string (test input, assumed well-formed).
fn decode_hex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// The current UTC time as RFC 3339 with whole seconds (`2024-05-01T12:00:00Z`).
fn rfc3339_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The webhook sender thread: delivers in order until the emulator is gone.
fn webhook_sender(outbox: mpsc::Receiver<Outgoing>) {
    for message in outbox {
        match message {
            Outgoing::Flush(done) => {
                let _ = done.send(());
            }
            Outgoing::Deliver {
                url,
                body,
                signature,
                key_id,
                copies,
            } => {
                for _ in 0..copies {
                    let _ = post_webhook(&url, &body, &signature, &key_id);
                }
            }
        }
    }
}

/// POSTs one notification over plain HTTP/1.1 and reads the answer to its end.
fn post_webhook(url: &str, body: &[u8], signature: &str, key_id: &str) -> std::io::Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("webhook URL must be http://"))?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         X-Circle-Signature: {signature}\r\nX-Circle-Key-Id: {key_id}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(())
}
