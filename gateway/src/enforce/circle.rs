//! Sending money through the Circle rail: a transfer from the operator's developer-controlled
//! wallet that an agent asks for with `POST /rails/circle/transfers`, and the webhooks through
//! which Circle reports how it went (`POST /webhooks/circle`).
//!
//! [`Enforcer::circle_transfer`] takes the same path as an x402 payment
//! ([`Enforcer::authorize_payment`]):
//!
//! 1. the adapter checks the asked transfer against the profile (`prepare`) and the terms it
//!    would send are bound into the call's fingerprint (server `circle`, tool `transfer`, so the
//!    profile's routes classify it: a paid route gets amounts, payees, networks and budgets);
//! 2. the call is decided (holds are waited out; budgets reserve; shadow mode never moves money);
//! 3. the signed allow is verified into a `VerifiedDecision` for exactly those terms, and the
//!    adapter records the attempt and creates the transfer with `refId` = the decision id under
//!    an idempotency key derived from it;
//! 4. the request waits, up to `answer_timeout_seconds`, for a final state: woken by webhooks and
//!    polling `GET /v1/w3s/transactions/{id}` (by `refId` while the creation's answer is
//!    unknown). `COMPLETE` is receipted with the Circle transaction id as the settlement
//!    reference (the receipt's result digest binds the transaction id, state and `txHash`);
//!    `FAILED`, `DENIED` and `CANCELLED` are receipted failed and release the budget
//!    reservation; no final state in time is receipted `unknown`, the reservation kept.
//!
//! **Never a second transfer.** One decision creates at most one transfer (the adapter's ledger
//! record and Circle's idempotency key). A new request whose transfer equals one still in doubt
//! (its attempt `authorized` or `unknown`, or one in flight in this daemon) is refused with
//! `CIRCLE_TRANSFER_IN_DOUBT` after asking Circle about the earlier one: an agent retrying after
//! an `unknown` answer cannot pay twice. Once the earlier one is known, an equal transfer is a
//! new payment, decided on its own.
//!
//! **Webhooks** ([`Enforcer::circle_webhook`]) are authenticated by their signature only:
//! `X-Circle-Signature` over the raw body under the key `X-Circle-Key-Id` names, fetched from
//! Circle once and cached. A verified notification is de-duplicated on its `notificationId` (a
//! redelivery of one whose processing failed is processed again); `transactions.*`
//! notifications find their attempt by `refId` and either wake the waiting request or, after its
//! `unknown` receipt, record the late final state in the ledger and receipt it: a second
//! receipt for the decision, `completed` with the Circle transaction id (the reservation
//! captured) or `failed` (released), composing the `unknown` one — once, whichever of the
//! webhook, the in-doubt check or `trustos payments` learns it first. States only move forward
//! (`TransactionState::may_follow`).
//!
//! The API key and the entity secret live in the adapter's client, which never shows them in
//! `Debug`, errors or logs; nothing here copies them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use trustos_adapters::circle::adapter::{
    CODE_OUTCOME_UNKNOWN, CircleAdapter, CircleTerms, CircleToken, CircleTransferIntent, RAIL,
    SCHEME,
};
use trustos_adapters::circle::client::{
    CircleClient, CircleError, ClientOptions, FeeLevel, Transaction,
};
use trustos_adapters::circle::webhook::{Delivery, NotificationDeduper, NotificationKey};
use trustos_adapters::circle::{ApiKey, CircleEnvironment, EntitySecret, TransactionState};
use trustos_adapters::{Adapter, AdapterError, AttemptRecord, AttemptState, SettlementReport};
use trustos_kernel::canonical::Digest;
use trustos_kernel::objects::{Amount, Settlement};
use trustos_kernel::timestamp::Timestamp;

use super::pay::allowances_of;
use super::{
    CallEnd, CallPayment, EnforceError, Enforcer, IssuedReceipt, Reason, ToolCall, Verdict,
};
use crate::config::{CircleConfig, CircleEnvironmentName, CircleFeeLevel};

/// Notification ids remembered for de-duplication.
const DEDUP_CAPACITY: usize = 10_000;
/// Notification keys cached, and unknown key ids remembered (each bounded).
const KEY_CACHE_CAPACITY: usize = 64;
/// Longest `X-Circle-Key-Id` looked up (Circle's are UUIDs).
const MAX_KEY_ID_LEN: usize = 128;
/// How long `trustos payments` lets the daemon ask Circle about open attempts, in all.
use super::pay::RECONCILE_BUDGET;
/// How long a webhook waits for Circle to hand out an unknown notification key.
const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// After a key id Circle did not know, how long before another new key id is looked up: each
/// unauthenticated webhook with an invented key id would otherwise cost a request to Circle.
const UNKNOWN_KEY_BACKOFF: Duration = Duration::from_secs(1);

/// The gateway's Circle rail: the adapter (with the client and its secrets), the source wallet,
/// and the state of transfers waiting for their outcome.
pub struct CirclePayer {
    adapter: CircleAdapter,
    wallet_id: String,
    wallet_address: Option<String>,
    tokens: Vec<CircleToken>,
    answer_timeout: Duration,
    poll_interval: Duration,
    /// Transfers waiting for a final state, by decision id: the latest state reported.
    waiting: Mutex<HashMap<String, watch::Sender<Option<Observed>>>>,
    /// Transfers being decided or executed, by what they send (see [`transfer_key`]).
    in_flight: Mutex<HashSet<String>>,
    deduper: Mutex<NotificationDeduper>,
    /// Notification ids seen whose processing failed: their redelivery is processed.
    unfinished: Mutex<HashSet<String>>,
    keys: Mutex<KeyCache>,
    /// Decision ids of Circle attempts that may still be open, by transfer key: read from the
    /// ledger once, on the first transfer, then kept by this daemon (the only writer of its
    /// ledger). A superset: an entry whose attempt turns out final is dropped when consulted,
    /// so the in-doubt rule never rereads the whole ledger.
    open_attempts: tokio::sync::OnceCell<Mutex<OpenAttempts>>,
}

/// Decision ids of possibly open Circle attempts, by transfer key (see [`transfer_key`]).
type OpenAttempts = HashMap<String, Vec<String>>;

impl std::fmt::Debug for CirclePayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CirclePayer")
            .field("adapter", &self.adapter)
            .field("wallet_id", &self.wallet_id)
            .finish_non_exhaustive()
    }
}

/// Why the Circle rail could not be set up. Names the field and the reason code; never
/// contains a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CirclePayerError(String);

/// The W3S client `[circle]` describes: its API key and entity secret from the files (relative to
/// `home`, owner-only) or environment variables it names, the key's environment checked. Shared
/// by the transfer rail and by `[x402] signer = "circle"`.
pub fn circle_client(config: &CircleConfig, home: &Path) -> Result<CircleClient, CirclePayerError> {
    let fail = |field: &str, code: &str, err: &dyn std::fmt::Display| {
        CirclePayerError(format!("[circle] {field}: {err} ({code})"))
    };
    let api_key = match (&config.api_key_file, &config.api_key_env) {
        (Some(file), None) => ApiKey::from_file(&home.join(file))
            .map_err(|err| fail("api_key_file", err.reason_code(), &err))?,
        (None, Some(name)) => {
            ApiKey::from_env(name).map_err(|err| fail("api_key_env", err.reason_code(), &err))?
        }
        _ => {
            return Err(CirclePayerError(
                "[circle] needs exactly one of api_key_file or api_key_env".into(),
            ));
        }
    };
    let expected = config.environment.map(|name| match name {
        CircleEnvironmentName::Testnet => CircleEnvironment::Testnet,
        CircleEnvironmentName::Mainnet => CircleEnvironment::Mainnet,
    });
    if let Some(expected) = expected
        && api_key.environment() != expected
    {
        return Err(CirclePayerError(format!(
            "[circle] environment = \"{expected}\", but the API key is a {} key ({}…): use a {} key, or set environment = \"{}\" (CIRCLE_API_KEY_WRONG_ENVIRONMENT)",
            api_key.environment(),
            api_key.environment().api_key_prefix(),
            expected.api_key_prefix(),
            api_key.environment(),
        )));
    }
    let entity_secret = match (&config.entity_secret_file, &config.entity_secret_env) {
        (Some(file), None) => EntitySecret::from_file(&home.join(file))
            .map_err(|err| fail("entity_secret_file", err.reason_code(), &err))?,
        (None, Some(name)) => EntitySecret::from_env(name)
            .map_err(|err| fail("entity_secret_env", err.reason_code(), &err))?,
        _ => {
            return Err(CirclePayerError(
                "[circle] needs exactly one of entity_secret_file or entity_secret_env".into(),
            ));
        }
    };
    let answer_timeout = Duration::from_secs(config.answer_timeout_seconds.max(1));
    let options = ClientOptions {
        request_timeout: answer_timeout.min(Duration::from_secs(30)),
        expected_environment: expected,
        ..ClientOptions::default()
    };
    CircleClient::new(&config.base_url, api_key, entity_secret, options)
        .map_err(|err| fail("base_url", err.reason_code(), &err))
}

impl CirclePayer {
    /// The rail `gateway.toml`'s `[circle]` describes; secrets come from the files (relative to
    /// `home`, owner-only) or environment variables it names.
    pub fn from_config(config: &CircleConfig, home: &Path) -> Result<Self, CirclePayerError> {
        let client = circle_client(config, home)?;
        let tokens: Vec<CircleToken> = config
            .tokens
            .iter()
            .map(|token| CircleToken {
                network: token.network.clone(),
                asset: token.asset.clone(),
                token_id: token.token_id.clone(),
                decimals: token.decimals,
            })
            .collect();
        let fee_level = match config.fee_level {
            CircleFeeLevel::Low => FeeLevel::Low,
            CircleFeeLevel::Medium => FeeLevel::Medium,
            CircleFeeLevel::High => FeeLevel::High,
        };
        Ok(Self {
            adapter: CircleAdapter::new(client, tokens.clone()).with_fee_level(fee_level),
            wallet_id: config.wallet_id.clone(),
            wallet_address: config.wallet_address.clone(),
            tokens,
            answer_timeout: Duration::from_secs(config.answer_timeout_seconds.max(1)),
            poll_interval: Duration::from_millis(config.poll_interval_ms.max(50)),
            waiting: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashSet::new()),
            deduper: Mutex::new(NotificationDeduper::new(DEDUP_CAPACITY)),
            unfinished: Mutex::new(HashSet::new()),
            keys: Mutex::new(KeyCache::default()),
            open_attempts: tokio::sync::OnceCell::new(),
        })
    }

    /// The adapter (for reconciliation).
    pub fn adapter(&self) -> &CircleAdapter {
        &self.adapter
    }

    /// The source wallet's id.
    pub fn wallet_id(&self) -> &str {
        &self.wallet_id
    }

    /// The source wallet's address, when configured.
    pub fn wallet_address(&self) -> Option<&str> {
        self.wallet_address.as_deref()
    }

    /// The environment of the API key.
    pub fn environment(&self) -> CircleEnvironment {
        self.adapter.client().environment()
    }

    /// The intent for `ask` from the configured wallet and token (an unknown token leaves its
    /// id empty: `prepare` refuses it as `CIRCLE_ASSET_UNKNOWN`).
    fn intent(&self, ask: &TransferAsk) -> CircleTransferIntent {
        let token = self
            .tokens
            .iter()
            .find(|token| token.network == ask.network && token.asset == ask.asset);
        CircleTransferIntent {
            wallet_id: self.wallet_id.clone(),
            token_id: token.map(|t| t.token_id.clone()).unwrap_or_default(),
            network: ask.network.clone(),
            asset: ask.asset.clone(),
            destination: ask.destination.clone(),
            amount: ask.amount,
            decimals: token.map_or(0, |t| t.decimals),
            resource: ask.resource.clone(),
        }
    }
}

/// A transfer an agent asks for (the body of `POST /rails/circle/transfers`, checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferAsk {
    /// Recipient address.
    pub destination: String,
    /// Amount in integer base units of the token.
    pub amount: u128,
    /// The profile's name of the token (`usdc`).
    pub asset: String,
    /// CAIP-2 network.
    pub network: String,
    /// What is paid for.
    pub resource: String,
}

/// A transaction's state as last seen (from Circle's answer, a webhook or a poll).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Observed {
    id: String,
    state: TransactionState,
    tx_hash: Option<String>,
    error_reason: Option<String>,
}

impl Observed {
    fn from_transaction(transaction: &Transaction) -> Self {
        Self {
            id: transaction.id.clone(),
            state: transaction.state,
            tx_hash: transaction.tx_hash.clone(),
            error_reason: transaction.error_reason.clone(),
        }
    }
}

/// Replaces `current` with `next` when the state order allows it (a late report never moves a
/// transaction backwards); a known `txHash` is kept.
fn advance(current: &mut Option<Observed>, next: Observed) -> bool {
    match current {
        Some(seen) if seen.id != next.id => false,
        Some(seen) if next.state == seen.state => {
            if seen.tx_hash.is_none() && next.tx_hash.is_some() {
                seen.tx_hash = next.tx_hash;
                return true;
            }
            false
        }
        Some(seen) if next.state.may_follow(seen.state) => {
            let tx_hash = next.tx_hash.clone().or_else(|| seen.tx_hash.take());
            *seen = Observed { tx_hash, ..next };
            true
        }
        Some(_) => false,
        None => {
            *current = Some(next);
            true
        }
    }
}

/// How a Circle transfer request ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum TransferVerdict {
    /// Nothing was sent to Circle.
    Refused {
        /// The decision id, when a decision was signed and logged.
        decision_id: Option<String>,
        /// The signed decision, when there is one.
        decision: Option<String>,
        /// Why.
        reasons: Vec<Reason>,
        /// The receipt, when an allow was consumed and closed without a transfer.
        receipt: Option<IssuedReceipt>,
        /// Whether the request itself was at fault (as opposed to the policy or the rail).
        kind: RefusalKind,
    },
    /// The transfer was sent; how it stands, with its receipt.
    Executed(Box<Executed>),
}

/// Why a transfer was refused, for the HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The profile or the adapter refused it (403).
    Policy,
    /// An equal transfer is still in doubt (409).
    InDoubt,
    /// Circle refused to create it (502).
    Rail,
    /// The gateway could not go on (503).
    Unavailable,
}

/// A transfer Circle was asked to make.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Executed {
    /// The allow decision's id (the transfer's `refId`).
    pub decision_id: String,
    /// `completed`, `failed` or `unknown`.
    pub status: TransferStatus,
    /// Circle's state when answered (`COMPLETE`, `FAILED`, …), when one is known.
    pub state: Option<String>,
    /// Circle's transaction id, when known.
    pub transaction_id: Option<String>,
    /// The chain transaction hash, when known.
    pub tx_hash: Option<String>,
    /// The signed receipt.
    pub receipt: IssuedReceipt,
    /// The settlement the receipt names, when money moved.
    pub settlement: Option<Settlement>,
    /// Reasons for anything but `completed`.
    pub reasons: Vec<Reason>,
}

/// Where an executed transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferStatus {
    /// `COMPLETE`: the money moved.
    Completed,
    /// `FAILED`, `DENIED` or `CANCELLED`: nothing moved; the budget was released.
    Failed,
    /// No final state in time: money may move; reconcile with `trustos payments`.
    Unknown,
}

/// What the webhook endpoint answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookAnswer {
    /// HTTP status.
    pub status: u16,
    /// Reason code (of a refusal, or of what was done).
    pub code: &'static str,
    /// One sentence.
    pub message: String,
}

impl WebhookAnswer {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

/// Notification keys fetched, and key ids Circle did not know (both bounded, oldest evicted).
#[derive(Default)]
struct KeyCache {
    known: HashMap<String, NotificationKey>,
    order: VecDeque<String>,
    unknown: VecDeque<String>,
    /// When Circle last said it did not know a key id.
    last_unknown: Option<std::time::Instant>,
}

impl KeyCache {
    fn insert(&mut self, id: &str, key: NotificationKey) {
        if self.order.len() >= KEY_CACHE_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.known.remove(&oldest);
        }
        self.known.insert(id.to_owned(), key);
        self.order.push_back(id.to_owned());
    }

    fn mark_unknown(&mut self, id: &str) {
        if self.unknown.len() >= KEY_CACHE_CAPACITY {
            self.unknown.pop_front();
        }
        self.unknown.push_back(id.to_owned());
        self.last_unknown = Some(std::time::Instant::now());
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What identifies a transfer for the in-doubt rule: wallet, token, destination (hex in lower
/// case) and amount, exactly as the ledger's stored transfer body names them.
fn transfer_key(wallet_id: &str, token_id: &str, destination: &str, amount: &str) -> String {
    let destination = if destination.starts_with("0x") || destination.starts_with("0X") {
        destination.to_ascii_lowercase()
    } else {
        destination.to_owned()
    };
    json!([wallet_id, token_id, destination, amount]).to_string()
}

/// The in-doubt key of a recorded attempt, from its stored transfer body.
fn recorded_key(record: &AttemptRecord) -> Option<String> {
    let body: Value = serde_json::from_str(&record.authorization).ok()?;
    let text = |name: &str| body.get(name).and_then(Value::as_str);
    Some(transfer_key(
        text("walletId")?,
        text("tokenId")?,
        text("destinationAddress")?,
        body.pointer("/amounts/0").and_then(Value::as_str)?,
    ))
}

/// Drops `decision_id` from the open-attempt index under `key`.
fn forget_open(index: &Mutex<OpenAttempts>, key: &str, decision_id: &str) {
    let mut index = lock(index);
    if let Some(ids) = index.get_mut(key) {
        ids.retain(|id| id != decision_id);
        if ids.is_empty() {
            index.remove(key);
        }
    }
}

/// Removes a waiter and an in-flight mark when the request ends, however it ends.
struct Registration<'a> {
    payer: &'a CirclePayer,
    decision_id: Option<String>,
    key: String,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Some(decision_id) = &self.decision_id {
            lock(&self.payer.waiting).remove(decision_id);
        }
        lock(&self.payer.in_flight).remove(&self.key);
    }
}

fn refused(verdict: Verdict, kind: RefusalKind) -> TransferVerdict {
    match verdict {
        Verdict::Refuse {
            decision_id,
            decision,
            reasons,
        } => TransferVerdict::Refused {
            decision_id,
            decision,
            reasons,
            receipt: None,
            kind,
        },
        _ => TransferVerdict::Refused {
            decision_id: None,
            decision: None,
            reasons: vec![Reason::new("PAYMENT_NOT_ALLOWED")],
            receipt: None,
            kind: RefusalKind::Policy,
        },
    }
}

impl Enforcer {
    /// Decides and executes the Circle transfer `ask` for `call` (server `circle`, tool
    /// `transfer`, the request body as arguments). See the module docs.
    pub async fn circle_transfer(
        &self,
        mut call: ToolCall,
        ask: &TransferAsk,
    ) -> Result<TransferVerdict, EnforceError> {
        let Some(payer) = self.circle() else {
            return Ok(refused(
                self.refuse_call(&call, "CIRCLE_NOT_CONFIGURED").await?,
                RefusalKind::Policy,
            ));
        };
        let intent = payer.intent(ask);
        let mut allowances = allowances_of(&self.profile(), 0);
        allowances.schemes = vec![SCHEME.to_owned()];
        let terms = match payer.adapter.prepare(&intent, &allowances) {
            Ok(terms) => terms,
            Err(err) => {
                return Ok(refused(
                    self.refuse_call(&call, err.reason_code()).await?,
                    RefusalKind::Policy,
                ));
            }
        };

        // One transfer in doubt at a time for the same wallet, token, payee and amount.
        let amount_text =
            trustos_adapters::circle::amount::to_decimal(terms.amount, terms.decimals);
        let key = transfer_key(
            &terms.wallet_id,
            &terms.token_id,
            &terms.destination,
            &amount_text,
        );
        if !lock(&payer.in_flight).insert(key.clone()) {
            return Ok(refused(
                self.refuse_call(&call, "CIRCLE_TRANSFER_IN_DOUBT").await?,
                RefusalKind::InDoubt,
            ));
        }
        let mut registration = Registration {
            payer,
            decision_id: None,
            key: key.clone(),
        };
        if let Some(earlier) = self.in_doubt(payer, &key).await? {
            tracing::warn!(earlier = %earlier, "a Circle transfer equal to one still in doubt was refused");
            return Ok(refused(
                self.refuse_call(&call, "CIRCLE_TRANSFER_IN_DOUBT").await?,
                RefusalKind::InDoubt,
            ));
        }

        let bound = payer
            .adapter
            .bound_terms(&terms)
            .map_err(|err| EnforceError::Internal(err.to_string()))?;
        call.payment = Some(CallPayment {
            terms: bound,
            asset_symbol: terms.asset.clone(),
            rail: RAIL.to_owned(),
        });
        let (decision_id, jws) = match self.decide_payment(&call, true).await? {
            Ok(allowed) => allowed,
            Err(refusal) => return Ok(refused(refusal, RefusalKind::Policy)),
        };

        // In the index before the attempt exists: a crash in between leaves a stale entry,
        // never a missing one.
        let index = self.open_circle_attempts(payer).await?;
        lock(index)
            .entry(key.clone())
            .or_default()
            .push(decision_id.clone());

        // Waiting before the transfer exists: its first webhook can beat Circle's answer.
        let (sender, mut updates) = watch::channel(None);
        lock(&payer.waiting).insert(decision_id.clone(), sender);
        registration.decision_id = Some(decision_id.clone());

        let started_at = super::now()?;
        let mut seen: Option<Observed> = None;
        let mut creation_unknown = false;
        match self.send_transfer(payer, &call, &terms, &jws).await {
            Ok(created) => {
                advance(
                    &mut seen,
                    Observed {
                        id: created.id,
                        state: created.state,
                        tx_hash: None,
                        error_reason: None,
                    },
                );
            }
            Err(err) if err.reason_code() == CODE_OUTCOME_UNKNOWN => {
                // Circle may have created it: look for it by refId until the answer timeout.
                tracing::warn!(%decision_id, error = %err, "Circle transfer creation outcome unknown");
                creation_unknown = true;
            }
            Err(err) => {
                // Nothing was created: the decision is closed and its reservation released.
                let kind = match &err {
                    AdapterError::Rail { .. } => RefusalKind::Rail,
                    AdapterError::Ledger(_) | AdapterError::Internal(_) => RefusalKind::Unavailable,
                    _ => RefusalKind::Policy,
                };
                let end = if kind == RefusalKind::Rail {
                    CallEnd::ProtocolError
                } else {
                    CallEnd::NotForwarded
                };
                tracing::warn!(%decision_id, error = %err, "Circle transfer not created");
                let receipt = self.finish(&decision_id, end, None, started_at).await?;
                return Ok(TransferVerdict::Refused {
                    decision_id: Some(decision_id),
                    decision: None,
                    reasons: vec![Reason::new(err.reason_code())],
                    receipt: Some(receipt),
                    kind,
                });
            }
        }

        let seen = self
            .await_final(payer, &decision_id, seen, &mut updates)
            .await;
        let executed = self
            .conclude_transfer(
                payer,
                &decision_id,
                &terms,
                seen,
                creation_unknown,
                started_at,
            )
            .await?;
        if executed.status != TransferStatus::Unknown {
            forget_open(index, &key, &decision_id);
        }
        drop(registration);
        Ok(TransferVerdict::Executed(Box::new(executed)))
    }

    /// Asks Circle about every Circle attempt in the ledger whose outcome is open (`authorized`
    /// or `unknown`), those asked about longest ago first, and records what it says, within
    /// [`RECONCILE_BUDGET`] in all; used by the daemon's reconcile rounds and before
    /// `trustos payments` lists the ledger. Never creates or resubmits a transfer. Without
    /// `[circle]`, does nothing.
    pub async fn reconcile_circle_attempts(&self) {
        let Some(payer) = self.circle() else { return };
        let work = async {
            let attempts = match self.attempts_to_reconcile(RAIL).await {
                Ok(attempts) => attempts,
                Err(err) => {
                    tracing::warn!(error = %err, "could not list payment attempts to reconcile");
                    return;
                }
            };
            for attempt in attempts {
                let Ok(at) = super::now() else { return };
                self.asking_about(RAIL, &attempt.decision_id);
                match payer
                    .adapter
                    .reconcile(&**self.store(), &attempt.decision_id, at)
                    .await
                {
                    Ok(trustos_adapters::Reconciliation::Known(record)) => {
                        self.receipt_concluded(&record).await;
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(decision_id = %attempt.decision_id, error = %err, "could not reconcile a Circle attempt");
                    }
                }
            }
        };
        if tokio::time::timeout(RECONCILE_BUDGET, work).await.is_err() {
            tracing::warn!("reconciling Circle attempts took too long; listing what is recorded");
        }
    }

    /// The index of possibly open Circle attempts, read from the ledger on first use.
    async fn open_circle_attempts<'p>(
        &self,
        payer: &'p CirclePayer,
    ) -> Result<&'p Mutex<OpenAttempts>, EnforceError> {
        payer
            .open_attempts
            .get_or_try_init(|| async {
                let mut index = OpenAttempts::new();
                for attempt in self.open_attempts(RAIL).await? {
                    if let Some(key) = recorded_key(&attempt) {
                        index.entry(key).or_default().push(attempt.decision_id);
                    }
                }
                Ok(Mutex::new(index))
            })
            .await
    }

    /// The decision id of a recorded Circle attempt still in doubt whose transfer is `key`,
    /// after asking Circle about it (which may settle it). Only the attempts the index names
    /// for `key` are looked at; those found final leave the index.
    async fn in_doubt(
        &self,
        payer: &CirclePayer,
        key: &str,
    ) -> Result<Option<String>, EnforceError> {
        let index = self.open_circle_attempts(payer).await?;
        let candidates = lock(index).get(key).cloned().unwrap_or_default();
        for decision_id in candidates {
            let at = super::now()?;
            let still_open = match payer
                .adapter
                .reconcile(&**self.store(), &decision_id, at)
                .await
            {
                Ok(trustos_adapters::Reconciliation::Known(record)) => {
                    self.receipt_concluded(&record).await;
                    matches!(
                        record.state,
                        AttemptState::Authorized | AttemptState::Unknown
                    )
                }
                // No attempt, or none found at Circle a day after authorization (the adapter
                // never resubmits it): nothing will move.
                Ok(
                    trustos_adapters::Reconciliation::NoAttempt
                    | trustos_adapters::Reconciliation::Expired(_),
                ) => false,
                // Not found at Circle yet, or Circle unreachable: still in doubt.
                Ok(trustos_adapters::Reconciliation::Resubmit(_)) | Err(_) => true,
            };
            if still_open {
                return Ok(Some(decision_id));
            }
            forget_open(index, key, &decision_id);
        }
        Ok(None)
    }

    /// Verifies the allow into a `VerifiedDecision` for exactly these terms, then has the
    /// adapter record the attempt and create the transfer.
    async fn send_transfer(
        &self,
        payer: &CirclePayer,
        call: &ToolCall,
        terms: &CircleTerms,
        jws: &str,
    ) -> Result<trustos_adapters::circle::client::TransferCreated, AdapterError> {
        self.verify_and_authorize(&payer.adapter, call, terms, jws)
            .await
    }

    /// Waits until the transaction is final or the answer timeout passes: webhooks wake it,
    /// and Circle is polled every `poll_interval`.
    async fn await_final(
        &self,
        payer: &CirclePayer,
        decision_id: &str,
        mut seen: Option<Observed>,
        updates: &mut watch::Receiver<Option<Observed>>,
    ) -> Option<Observed> {
        let deadline = tokio::time::Instant::now() + payer.answer_timeout;
        // Polls on a fixed schedule, the first at once (the transfer may be final already, and
        // webhooks may never come): a webhook that wakes the wait does not put the next poll off.
        let mut polls = tokio::time::interval(payer.poll_interval);
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(reported) = updates.borrow_and_update().clone() {
                advance(&mut seen, reported);
            }
            if seen.as_ref().is_some_and(|s| s.state.is_final()) {
                return seen;
            }
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The waiter was removed: nothing more will come this way.
                        tokio::time::sleep_until(deadline).await;
                        return seen;
                    }
                }
                _ = polls.tick() => {
                    if let Some(polled) = poll(payer, decision_id, seen.as_ref()).await {
                        advance(&mut seen, polled);
                    }
                }
                () = tokio::time::sleep_until(deadline) => return seen,
            }
        }
    }

    /// Records the outcome with the adapter and receipts the call.
    async fn conclude_transfer(
        &self,
        payer: &CirclePayer,
        decision_id: &str,
        terms: &CircleTerms,
        seen: Option<Observed>,
        creation_unknown: bool,
        started_at: Timestamp,
    ) -> Result<Executed, EnforceError> {
        let state = seen.as_ref().map(|s| s.state);
        let (status, end, report, reasons) = match &seen {
            Some(s) if s.state.moved_money() => (
                TransferStatus::Completed,
                CallEnd::Completed,
                SettlementReport::Settled {
                    reference: s.id.clone(),
                    network: terms.network.clone(),
                },
                Vec::new(),
            ),
            Some(s) if s.state.failed() => {
                let code = match s.state {
                    TransactionState::Denied => "CIRCLE_TRANSFER_DENIED",
                    TransactionState::Cancelled => "CIRCLE_TRANSFER_CANCELLED",
                    _ => "CIRCLE_TRANSFER_FAILED",
                };
                let reason = match &s.error_reason {
                    Some(why) => format!("circle transaction {} {}: {why}", s.id, s.state),
                    None => format!("circle transaction {} {}", s.id, s.state),
                };
                (
                    TransferStatus::Failed,
                    // Nothing moved and nothing will: the reservation is released.
                    CallEnd::ProtocolError,
                    SettlementReport::Failed { reason },
                    vec![Reason::new(code)],
                )
            }
            _ => {
                let (code, detail) = match &seen {
                    Some(s) => (
                        "CIRCLE_TRANSFER_PENDING",
                        format!(
                            "circle transaction {} still {} after the answer timeout",
                            s.id, s.state
                        ),
                    ),
                    None if creation_unknown => (
                        CODE_OUTCOME_UNKNOWN,
                        "the transfer's creation was not confirmed by Circle".to_owned(),
                    ),
                    None => (
                        CODE_OUTCOME_UNKNOWN,
                        "no state reported by Circle".to_owned(),
                    ),
                };
                (
                    TransferStatus::Unknown,
                    CallEnd::Unknown,
                    SettlementReport::Unknown { detail },
                    vec![Reason::new(code)],
                )
            }
        };
        let settlement = match (&seen, status) {
            (Some(s), TransferStatus::Completed) => Some(Settlement {
                rail: RAIL.to_owned(),
                reference: s.id.clone(),
                network: terms.network.clone(),
                asset: terms.asset.clone(),
                amount: Amount::from(terms.amount),
            }),
            _ => None,
        };
        let digest_input = json!({
            "rail": RAIL,
            "transactionId": seen.as_ref().map(|s| s.id.as_str()),
            "state": state.map(TransactionState::as_str),
            "txHash": seen.as_ref().and_then(|s| s.tx_hash.as_deref()),
        });
        let result_digest = Digest::of_canonical_value(&digest_input).ok();
        let receipt = self
            .record_and_receipt(
                &payer.adapter,
                decision_id,
                &report,
                end,
                result_digest,
                started_at,
                settlement.clone(),
            )
            .await?;
        tracing::info!(%decision_id, ?status, state = ?state, "Circle transfer concluded");
        Ok(Executed {
            decision_id: decision_id.to_owned(),
            status,
            state: state.map(|s| s.as_str().to_owned()),
            transaction_id: seen.as_ref().map(|s| s.id.clone()),
            tx_hash: seen.as_ref().and_then(|s| s.tx_hash.clone()),
            receipt,
            settlement,
            reasons,
        })
    }

    /// Handles one `POST /webhooks/circle`: `raw` is the body exactly as received. See the
    /// module docs. Refusals record nothing.
    pub async fn circle_webhook(
        &self,
        raw: &[u8],
        key_id: Option<&str>,
        signature: Option<&str>,
    ) -> WebhookAnswer {
        let Some(payer) = self.circle() else {
            return WebhookAnswer::new(
                404,
                "CIRCLE_NOT_CONFIGURED",
                "the Circle rail is not configured",
            );
        };
        let (Some(key_id), Some(signature)) = (key_id, signature) else {
            return WebhookAnswer::new(
                401,
                "CIRCLE_WEBHOOK_HEADERS_MISSING",
                "X-Circle-Signature and X-Circle-Key-Id are required",
            );
        };
        let key = match self.notification_key(payer, key_id).await {
            Ok(key) => key,
            Err(answer) => return answer,
        };
        if let Err(err) = key.verify(raw, signature) {
            tracing::warn!(code = err.reason_code(), "refused a Circle webhook");
            return WebhookAnswer::new(401, err.reason_code(), err.to_string());
        }
        let Ok(body) = serde_json::from_slice::<Value>(raw) else {
            return WebhookAnswer::new(
                400,
                "CIRCLE_WEBHOOK_BODY_INVALID",
                "the notification is not JSON",
            );
        };
        let kind = body
            .get("notificationType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind == "webhooks.test" {
            return WebhookAnswer::new(200, "CIRCLE_WEBHOOK_TEST", "test notification received");
        }
        let notification_id = body
            .get("notificationId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match lock(&payer.deduper).observe(notification_id) {
            Ok(Delivery::FirstSeen) => {}
            // A redelivery of one whose processing failed (503) is processed again.
            Ok(Delivery::Duplicate) if lock(&payer.unfinished).remove(notification_id) => {}
            Ok(Delivery::Duplicate) => {
                return WebhookAnswer::new(200, "CIRCLE_WEBHOOK_DUPLICATE", "already processed");
            }
            Err(err) => return WebhookAnswer::new(400, err.reason_code(), err.to_string()),
        }
        if !kind.starts_with("transactions.") {
            return WebhookAnswer::new(
                200,
                "CIRCLE_WEBHOOK_IGNORED",
                format!("{kind:?} is not about transactions"),
            );
        }
        let notification = body.get("notification").unwrap_or(&Value::Null);
        let text = |name: &str| notification.get(name).and_then(Value::as_str);
        let (Some(id), Some(state), Some(ref_id)) = (text("id"), text("state"), text("refId"))
        else {
            return WebhookAnswer::new(
                200,
                "CIRCLE_WEBHOOK_IGNORED",
                "not a transaction of this gateway (no id, state or refId)",
            );
        };
        let Ok(state) = TransactionState::parse(state) else {
            tracing::warn!(
                transaction = id,
                state,
                "a Circle webhook names an unknown state"
            );
            return WebhookAnswer::new(
                200,
                "CIRCLE_TRANSACTION_STATE_UNKNOWN",
                "unknown transaction state ignored",
            );
        };
        let observed = Observed {
            id: id.to_owned(),
            state,
            tx_hash: text("txHash").filter(|h| !h.is_empty()).map(str::to_owned),
            error_reason: text("errorReason").map(str::to_owned),
        };
        if let Some(waiter) = lock(&payer.waiting).get(ref_id) {
            waiter.send_modify(|current| {
                advance(current, observed.clone());
            });
            return WebhookAnswer::new(
                200,
                "CIRCLE_WEBHOOK_APPLIED",
                "state delivered to the waiting transfer",
            );
        }
        let answer = self.apply_late(payer, ref_id, observed).await;
        if answer.status >= 500 {
            let mut unfinished = lock(&payer.unfinished);
            if unfinished.len() < KEY_CACHE_CAPACITY {
                unfinished.insert(notification_id.to_owned());
            }
        }
        answer
    }

    /// A notification for an attempt nobody waits for: a final state updates the ledger (a
    /// transfer receipted `unknown` becomes known in `trustos payments`).
    async fn apply_late(
        &self,
        payer: &CirclePayer,
        ref_id: &str,
        observed: Observed,
    ) -> WebhookAnswer {
        let ledger = &**self.store();
        let record = match trustos_adapters::PaymentLedger::load_attempt(ledger, RAIL, ref_id).await
        {
            Ok(Some(record)) => record,
            Ok(None) => {
                return WebhookAnswer::new(
                    200,
                    "CIRCLE_WEBHOOK_IGNORED",
                    "no attempt of this gateway has this refId",
                );
            }
            Err(err) => {
                tracing::error!(error = %err, "a Circle webhook could not read the ledger");
                return WebhookAnswer::new(
                    503,
                    "PAYMENT_LEDGER_UNAVAILABLE",
                    "the ledger could not be read; retry",
                );
            }
        };
        if record
            .reference
            .as_deref()
            .is_some_and(|id| id != observed.id && record.state != AttemptState::Settled)
        {
            tracing::warn!(
                decision_id = ref_id,
                "a Circle webhook names another transaction than the attempt's"
            );
            return WebhookAnswer::new(
                200,
                "CIRCLE_WEBHOOK_IGNORED",
                "another transaction than the attempt's",
            );
        }
        if matches!(record.state, AttemptState::Settled | AttemptState::Failed) {
            // Known already; receipted late if an earlier try could not be.
            self.receipt_concluded(&record).await;
            return WebhookAnswer::new(200, "CIRCLE_WEBHOOK_APPLIED", "nothing to change");
        }
        if !observed.state.is_final() {
            return WebhookAnswer::new(200, "CIRCLE_WEBHOOK_APPLIED", "nothing to change");
        }
        let report = if observed.state.moved_money() {
            SettlementReport::Settled {
                reference: observed.id.clone(),
                network: String::new(),
            }
        } else {
            SettlementReport::Failed {
                reason: format!("circle transaction {} {}", observed.id, observed.state),
            }
        };
        match payer.adapter.report(ledger, ref_id, &report).await {
            Ok(record) => {
                tracing::info!(
                    decision_id = ref_id,
                    state = record.state.as_str(),
                    "a late Circle webhook settled an attempt"
                );
                self.receipt_concluded(&record).await;
                WebhookAnswer::new(200, "CIRCLE_WEBHOOK_APPLIED", "attempt updated")
            }
            Err(err) => {
                tracing::error!(decision_id = ref_id, error = %err, "a late Circle webhook could not be recorded");
                WebhookAnswer::new(
                    503,
                    err.reason_code(),
                    "the outcome could not be recorded; reconcile with trustos payments",
                )
            }
        }
    }

    /// The notification key `key_id`, from the cache or from Circle.
    async fn notification_key(
        &self,
        payer: &CirclePayer,
        key_id: &str,
    ) -> Result<NotificationKey, WebhookAnswer> {
        let unknown = || {
            WebhookAnswer::new(
                401,
                "CIRCLE_WEBHOOK_KEY_UNKNOWN",
                "Circle knows no notification key with this X-Circle-Key-Id",
            )
        };
        if key_id.is_empty()
            || key_id.len() > MAX_KEY_ID_LEN
            || !key_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(unknown());
        }
        {
            let cache = lock(&payer.keys);
            if let Some(key) = cache.known.get(key_id) {
                return Ok(key.clone());
            }
            if cache.unknown.iter().any(|id| id == key_id) {
                return Err(unknown());
            }
            if cache
                .last_unknown
                .is_some_and(|at| at.elapsed() < UNKNOWN_KEY_BACKOFF)
            {
                // Someone is sending invented key ids: Circle redelivers a genuine one later.
                return Err(WebhookAnswer::new(
                    503,
                    "CIRCLE_WEBHOOK_KEY_RATE_LIMITED",
                    "a new X-Circle-Key-Id is looked up at most once a second after an unknown one; retry",
                ));
            }
        }
        let fetched = tokio::time::timeout(
            KEY_FETCH_TIMEOUT,
            payer.adapter.client().notification_public_key(key_id),
        )
        .await;
        match fetched {
            Ok(Ok(key)) => {
                lock(&payer.keys).insert(key_id, key.clone());
                Ok(key)
            }
            Ok(Err(CircleError::Api { status, .. }))
                if (400..500).contains(&status) && status != 429 =>
            {
                lock(&payer.keys).mark_unknown(key_id);
                Err(unknown())
            }
            Ok(Err(CircleError::ResponseMalformed { .. })) => Err(WebhookAnswer::new(
                401,
                "CIRCLE_WEBHOOK_KEY_INVALID",
                "Circle's notification key is not an ECDSA P-256 key",
            )),
            Ok(Err(err)) => {
                tracing::warn!(code = err.reason_code(), error = %err, "could not fetch a Circle notification key");
                Err(WebhookAnswer::new(
                    503,
                    "CIRCLE_WEBHOOK_KEY_UNAVAILABLE",
                    "the notification key could not be fetched from Circle; retry",
                ))
            }
            Err(_) => Err(WebhookAnswer::new(
                503,
                "CIRCLE_WEBHOOK_KEY_UNAVAILABLE",
                "Circle did not hand out the notification key in time; retry",
            )),
        }
    }
}

/// Asks Circle where the transfer of `decision_id` stands: by id once known, else by `refId`.
async fn poll(payer: &CirclePayer, decision_id: &str, seen: Option<&Observed>) -> Option<Observed> {
    let client = payer.adapter.client();
    let found = match seen {
        Some(seen) => client.get_transaction(&seen.id).await.map(Some),
        None => client.find_by_ref_id(decision_id).await.map(|found| {
            found.into_iter().find(|t| {
                t.ref_id.as_deref() == Some(decision_id)
                    && t.wallet_id.as_deref().is_none_or(|w| w == payer.wallet_id)
            })
        }),
    };
    match found {
        Ok(found) => found.map(|t| Observed::from_transaction(&t)),
        Err(err) => {
            tracing::debug!(%decision_id, code = err.reason_code(), "polling Circle failed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(id: &str, state: TransactionState, tx_hash: Option<&str>) -> Observed {
        Observed {
            id: id.into(),
            state,
            tx_hash: tx_hash.map(str::to_owned),
            error_reason: None,
        }
    }

    #[test]
    fn states_only_move_forward_and_keep_the_tx_hash() {
        let mut seen = None;
        assert!(advance(
            &mut seen,
            observed("t", TransactionState::Initiated, None)
        ));
        assert!(advance(
            &mut seen,
            observed("t", TransactionState::Sent, Some("0xab"))
        ));
        assert!(!advance(
            &mut seen,
            observed("t", TransactionState::Queued, None)
        ));
        assert!(advance(
            &mut seen,
            observed("t", TransactionState::Complete, None)
        ));
        let now = seen.clone().unwrap();
        assert_eq!(now.state, TransactionState::Complete);
        assert_eq!(now.tx_hash.as_deref(), Some("0xab"));
        assert!(!advance(
            &mut seen,
            observed("t", TransactionState::Confirmed, None)
        ));
        assert!(!advance(
            &mut seen,
            observed("t", TransactionState::Failed, None)
        ));
        assert!(!advance(
            &mut seen,
            observed("other", TransactionState::Failed, None)
        ));
    }

    #[test]
    fn transfer_keys_ignore_hex_case_and_match_the_stored_body() {
        let record = AttemptRecord {
            rail: RAIL.into(),
            decision_id: "dec_1".into(),
            state: AttemptState::Unknown,
            idempotency_key: "k".into(),
            replay_key: "k".into(),
            valid_before: 0,
            authorization: json!({"walletId": "w", "tokenId": "t", "destinationAddress": "0xABcd", "amounts": ["1.5"]}).to_string(),
            reference: None,
            detail: None,
        };
        assert_eq!(
            recorded_key(&record).unwrap(),
            transfer_key("w", "t", "0xabCD", "1.5")
        );
        assert_ne!(
            recorded_key(&record).unwrap(),
            transfer_key("w", "t", "0xabCD", "1.50")
        );
    }
}
