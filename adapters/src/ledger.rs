//! Where adapters record payment attempts, durably, before anything leaves the gateway.
//!
//! One [`AttemptRecord`] per (rail, decision): created once with compare-and-set semantics, so
//! of any number of concurrent retries of one decision exactly one authorizes, and the others
//! find the record. The replay set holds each signed authorization's key until it can no longer
//! be submitted. The gateway implements [`PaymentLedger`] over its store; [`MemoryLedger`] is
//! the same contract in memory, for tests and tools.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use trustos_kernel::timestamp::Timestamp;

/// Where an attempt stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Authorized and recorded; the rail's answer is not in yet.
    Authorized,
    /// The rail reported that money moved.
    Settled,
    /// The rail reported that nothing moved.
    Failed,
    /// The outcome is not known; reconciliation settles it. Never re-authorized.
    Unknown,
}

impl AttemptState {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Settled => "settled",
            Self::Failed => "failed",
            Self::Unknown => "unknown",
        }
    }
}

/// One payment attempt: everything needed to reconcile it without signing anything new.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AttemptRecord {
    /// The rail (`x402`, `circle`).
    pub rail: String,
    /// The decision that allowed it.
    pub decision_id: String,
    /// Where it stands.
    pub state: AttemptState,
    /// The idempotency key the rail sees (x402 `payment-identifier`, Circle `idempotencyKey`).
    pub idempotency_key: String,
    /// The replay-set key (x402: chain, asset, payer, nonce).
    pub replay_key: String,
    /// Unix seconds after which the authorization can no longer be submitted.
    pub valid_before: u64,
    /// What was sent to the rail, exactly (x402: the PaymentPayload JSON), for resubmission.
    pub authorization: String,
    /// The rail's reference once known (transaction hash, transfer id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// The rail's last word (error reason, pending detail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// What [`PaymentLedger::create_attempt`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptClaim {
    /// Recorded: this caller authorizes.
    Created,
    /// Another attempt of the same decision exists: nothing new may be authorized.
    Existing(AttemptRecord),
}

/// The ledger failed; the adapter refuses (fail closed).
#[derive(Debug, thiserror::Error)]
#[error("payment ledger: {0}")]
pub struct LedgerError(pub String);

/// Durable storage of attempts and the replay set.
#[async_trait::async_trait]
pub trait PaymentLedger: Send + Sync {
    /// Creates the attempt record of `record.decision_id` unless one exists. Durable on return.
    async fn create_attempt(&self, record: &AttemptRecord) -> Result<AttemptClaim, LedgerError>;

    /// Replaces the attempt record of `record.decision_id` (which must exist).
    async fn update_attempt(&self, record: &AttemptRecord) -> Result<(), LedgerError>;

    /// The attempt record of a decision on a rail.
    async fn load_attempt(
        &self,
        rail: &str,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, LedgerError>;

    /// Adds `key` to the replay set of `scope` until `until` (unix seconds): `true` when it was
    /// not there (or had expired), `false` when it is a replay. Durable on return.
    async fn claim_replay_key(
        &self,
        scope: &str,
        key: &str,
        until: u64,
        now: Timestamp,
    ) -> Result<bool, LedgerError>;
}

/// [`PaymentLedger`] in memory.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    attempts: Mutex<HashMap<(String, String), AttemptRecord>>,
    replay: Mutex<HashMap<(String, String), u64>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every attempt recorded, in no particular order.
    pub fn attempts(&self) -> Vec<AttemptRecord> {
        lock(&self.attempts).values().cloned().collect()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait::async_trait]
impl PaymentLedger for MemoryLedger {
    async fn create_attempt(&self, record: &AttemptRecord) -> Result<AttemptClaim, LedgerError> {
        let mut attempts = lock(&self.attempts);
        let key = (record.rail.clone(), record.decision_id.clone());
        if let Some(existing) = attempts.get(&key) {
            return Ok(AttemptClaim::Existing(existing.clone()));
        }
        attempts.insert(key, record.clone());
        Ok(AttemptClaim::Created)
    }

    async fn update_attempt(&self, record: &AttemptRecord) -> Result<(), LedgerError> {
        let mut attempts = lock(&self.attempts);
        let key = (record.rail.clone(), record.decision_id.clone());
        match attempts.get_mut(&key) {
            Some(slot) => {
                *slot = record.clone();
                Ok(())
            }
            None => Err(LedgerError(format!(
                "no attempt for decision {}",
                record.decision_id
            ))),
        }
    }

    async fn load_attempt(
        &self,
        rail: &str,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, LedgerError> {
        Ok(lock(&self.attempts)
            .get(&(rail.to_owned(), decision_id.to_owned()))
            .cloned())
    }

    async fn claim_replay_key(
        &self,
        scope: &str,
        key: &str,
        until: u64,
        now: Timestamp,
    ) -> Result<bool, LedgerError> {
        let now_seconds = now.unix_millis() / 1000;
        let mut replay = lock(&self.replay);
        replay.retain(|_, expiry| *expiry > now_seconds);
        let entry = (scope.to_owned(), key.to_owned());
        if replay.contains_key(&entry) {
            return Ok(false);
        }
        replay.insert(entry, until);
        Ok(true)
    }
}
