//! The redb tables of a Trust OS database and the encoding of what they hold.
//!
//! Keys are typed redb tuples; structured values are JSON (small, and readable with any redb
//! tool when an operator has to look). Amounts are 16-byte big-endian `u128`s.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use trustos_kernel::merkle::{Hash, NodeSource};

use super::Internal;

/// `format`, `schema_version`, `origin`, `log_size`.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// decision id → [`DecisionRecord`].
pub const DECISIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("decisions");
/// (expires-at millis, decision id) for decisions holding reservations that were never consumed.
pub const UNUSED_RESERVATIONS: TableDefinition<(u64, &str), ()> =
    TableDefinition::new("unused_reservations");
/// (budget key + window label, window start millis) → [`Totals`], for fixed windows.
pub const BUDGET_TOTALS: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("budget_totals");
/// (budget key + window label, at millis, decision id) → [`Totals`] of one charge, for rolling
/// windows.
pub const BUDGET_CHARGES: TableDefinition<(&str, u64, &str), &[u8]> =
    TableDefinition::new("budget_charges");
/// log index → entry bytes.
pub const LOG_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("log_entries");
/// (level, index) → hash of that complete subtree.
pub const LOG_NODES: TableDefinition<(u32, u64), [u8; 32]> = TableDefinition::new("log_nodes");
/// idempotency key → [`IdempotencyRecord`].
pub const IDEMPOTENCY: TableDefinition<&str, &[u8]> = TableDefinition::new("idempotency");
/// idempotency key → stored response bytes.
pub const IDEMPOTENT_RESPONSES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("idempotent_responses");
/// (scope, nonce) → expires-at millis.
pub const NONCES: TableDefinition<(&str, &str), u64> = TableDefinition::new("nonces");
/// (kind, id) → 8-byte big-endian version followed by the body.
pub const RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("records");
/// Decisions of rail payments whose outcome no receipt has closed (`DecisionRecord::awaiting`), by
/// id, with the rail: what reconciliation must still receipt, without scanning every decision.
pub const AWAITING_OUTCOMES: TableDefinition<&str, &str> =
    TableDefinition::new("awaiting_outcomes");

/// Value of `meta.format`.
pub const FORMAT: &[u8] = b"trustos-store";
/// Schema version this build writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

/// State of a decision's budget reservations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChargeState {
    /// Counted as reserved.
    Reserved,
    /// Counted as captured.
    Captured,
    /// Not counted.
    Released,
}

/// One reservation of a committed decision, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCharge {
    /// Budget key and window label, the first part of the totals key.
    pub budget: String,
    /// Whether the window is fixed (totals) or rolling (per-charge rows).
    pub fixed: bool,
    /// Window start (fixed) or the charge instant (rolling), in millis.
    pub slot: u64,
    /// Amount, decimal.
    pub amount: String,
}

/// A committed decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Fingerprint text (`sha256:…`).
    pub fingerprint: String,
    /// Whether the outcome is allow.
    pub allow: bool,
    /// Expiry, millis.
    pub expires_at: u64,
    /// When consumed, millis.
    pub consumed_at: Option<u64>,
    /// Log index of the signed decision.
    pub log_index: u64,
    /// Reservations.
    pub charges: Vec<StoredCharge>,
    /// Their state.
    pub state: ChargeState,
    /// A rail payment whose outcome no receipt has closed yet: what it would settle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting: Option<AwaitingOutcome>,
    /// Log index of the late receipt that closed an open outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_receipt: Option<u64>,
}

/// A rail payment's outcome no receipt has closed yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwaitingOutcome {
    /// What the payment would settle.
    pub settlement: crate::store::AwaitedSettlement,
    /// The daemon run executing it.
    #[serde(default)]
    pub owner: String,
    /// SHA-256 of the receipt that left it open (`unknown`); none while in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
}

/// Reserved and captured amounts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Reserved.
    pub reserved: u128,
    /// Captured.
    pub captured: u128,
}

impl Totals {
    /// 32 bytes: reserved then captured, big-endian.
    pub fn encode(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[..16].copy_from_slice(&self.reserved.to_be_bytes());
        out[16..].copy_from_slice(&self.captured.to_be_bytes());
        out
    }

    /// Reads 32 bytes written by [`encode`](Self::encode).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let reserved: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let captured: [u8; 16] = bytes.get(16..32)?.try_into().ok()?;
        (bytes.len() == 32).then(|| Self {
            reserved: u128::from_be_bytes(reserved),
            captured: u128::from_be_bytes(captured),
        })
    }

    /// Reserved plus captured, saturating (a saturated sum exceeds every limit: fail closed).
    pub fn spent(self) -> u128 {
        self.reserved.saturating_add(self.captured)
    }
}

/// State of an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    /// Fingerprint of the request that first used the key.
    pub fingerprint: String,
    /// Whether its response is stored.
    pub completed: bool,
    /// When the key expires, millis.
    pub expires_at: u64,
}

/// The key of a budget in the totals and charges tables.
pub fn budget_id(budget_key: &str, window_label: &str) -> String {
    // U+001F (unit separator) cannot appear in a budget key read from a profile.
    format!("{budget_key}\u{1f}{window_label}")
}

/// Reserved and captured totals of a fixed window starting at `window_start` millis.
pub fn fixed_window_totals<T: ReadableTable<(&'static str, u64), &'static [u8]>>(
    totals: &T,
    budget: &str,
    window_start: u64,
) -> Result<Totals, Internal> {
    match totals.get((budget, window_start))? {
        None => Ok(Totals::default()),
        Some(bytes) => Totals::decode(bytes.value()).ok_or_else(|| {
            Internal::Corrupt(format!("budget totals of {budget:?} are not 32 bytes"))
        }),
    }
}

/// Sum of the charges of a rolling window: every charge made in `(after, through]` millis.
pub fn rolling_window_totals<T: ReadableTable<(&'static str, u64, &'static str), &'static [u8]>>(
    charges: &T,
    budget: &str,
    after: u64,
    through: u64,
) -> Result<Totals, Internal> {
    let mut sum = Totals::default();
    let low = (budget, after.saturating_add(1), "");
    let high = (budget, through, "\u{10ffff}");
    for row in charges.range(low..=high)? {
        let (_, value) = row?;
        let charge = Totals::decode(value.value())
            .ok_or_else(|| Internal::Corrupt(format!("a charge of {budget:?} is not 32 bytes")))?;
        sum.reserved = sum.reserved.saturating_add(charge.reserved);
        sum.captured = sum.captured.saturating_add(charge.captured);
    }
    Ok(sum)
}

/// A failed read of a Merkle node.
#[derive(Debug, thiserror::Error)]
pub enum NodeReadError {
    /// redb failed.
    #[error(transparent)]
    Storage(#[from] redb::StorageError),
    /// A node that must exist does not: the log is damaged.
    #[error("Merkle node (level {level}, index {index}) is missing")]
    Missing {
        /// Level.
        level: u32,
        /// Index.
        index: u64,
    },
}

/// The Merkle nodes table seen as a kernel [`NodeSource`].
pub struct NodeTable<'t, T>(pub &'t T);

impl<T: ReadableTable<(u32, u64), [u8; 32]>> NodeSource for NodeTable<'_, T> {
    type Error = NodeReadError;

    fn node(&self, level: u32, index: u64) -> Result<Hash, Self::Error> {
        self.0
            .get((level, index))?
            .map(|guard| guard.value())
            .ok_or(NodeReadError::Missing { level, index })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_trip_and_refuse_wrong_lengths() {
        let totals = Totals {
            reserved: u128::MAX,
            captured: 7,
        };
        assert_eq!(Totals::decode(&totals.encode()), Some(totals));
        assert_eq!(Totals::decode(&[0; 31]), None);
        assert_eq!(Totals::decode(&[0; 33]), None);
        assert_eq!(totals.spent(), u128::MAX);
    }
}
