//! The gateway's store as the adapters' [`PaymentLedger`]: attempt records are versioned
//! records of kind `payment-attempt` (created with compare-and-set, so of concurrent retries of
//! one decision exactly one authorizes), and the replay set is the store's nonce table, kept
//! until each authorization's `validBefore`. Both are durable before an adapter returns.

use trustos_adapters::ledger::AttemptClaim;
use trustos_adapters::{AttemptRecord, LedgerError, PaymentLedger};
use trustos_kernel::timestamp::Timestamp;

use super::redb_store::RedbStore;
use super::{CasOutcome, NonceOutcome, Store};

/// Record kind of payment attempts.
pub const ATTEMPT_KIND: &str = "payment-attempt";

/// How often an update retries after losing a compare-and-set race.
const UPDATE_ATTEMPTS: usize = 8;

fn attempt_id(rail: &str, decision_id: &str) -> String {
    format!("{rail}/{decision_id}")
}

fn ledger_error<E: std::fmt::Display>(err: E) -> LedgerError {
    LedgerError(err.to_string())
}

fn encode(record: &AttemptRecord) -> Result<Vec<u8>, LedgerError> {
    serde_json::to_vec(record).map_err(ledger_error)
}

fn decode(body: &[u8]) -> Result<AttemptRecord, LedgerError> {
    serde_json::from_slice(body).map_err(ledger_error)
}

#[async_trait::async_trait]
impl PaymentLedger for RedbStore {
    async fn create_attempt(&self, record: &AttemptRecord) -> Result<AttemptClaim, LedgerError> {
        let id = attempt_id(&record.rail, &record.decision_id);
        match self
            .compare_and_set(ATTEMPT_KIND, &id, None, encode(record)?)
            .await
            .map_err(ledger_error)?
        {
            CasOutcome::Stored(_) => Ok(AttemptClaim::Created),
            CasOutcome::Conflict(_) => {
                let existing = self
                    .load_record(ATTEMPT_KIND, &id)
                    .await
                    .map_err(ledger_error)?
                    .ok_or_else(|| LedgerError(format!("attempt {id} vanished")))?;
                Ok(AttemptClaim::Existing(decode(&existing.body)?))
            }
        }
    }

    async fn update_attempt(&self, record: &AttemptRecord) -> Result<(), LedgerError> {
        let id = attempt_id(&record.rail, &record.decision_id);
        let body = encode(record)?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self
                .load_record(ATTEMPT_KIND, &id)
                .await
                .map_err(ledger_error)?
                .ok_or_else(|| LedgerError(format!("no attempt {id}")))?;
            match self
                .compare_and_set(ATTEMPT_KIND, &id, Some(current.version), body.clone())
                .await
                .map_err(ledger_error)?
            {
                CasOutcome::Stored(_) => return Ok(()),
                CasOutcome::Conflict(_) => continue,
            }
        }
        Err(LedgerError(format!("attempt {id} kept changing")))
    }

    async fn load_attempt(
        &self,
        rail: &str,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, LedgerError> {
        self.load_record(ATTEMPT_KIND, &attempt_id(rail, decision_id))
            .await
            .map_err(ledger_error)?
            .map(|record| decode(&record.body))
            .transpose()
    }

    async fn claim_replay_key(
        &self,
        scope: &str,
        key: &str,
        until: u64,
        now: Timestamp,
    ) -> Result<bool, LedgerError> {
        let expires_at = until
            .checked_mul(1000)
            .and_then(|millis| Timestamp::from_unix_millis(millis).ok())
            .ok_or_else(|| LedgerError(format!("validBefore {until} is out of range")))?;
        let scope = format!("replay:{scope}");
        match self
            .reserve_nonce(&scope, key, expires_at, now)
            .await
            .map_err(ledger_error)?
        {
            NonceOutcome::Fresh => Ok(true),
            NonceOutcome::Replayed => Ok(false),
        }
    }
}
