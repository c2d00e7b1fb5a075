//! Circle transaction states, which of them are final, and the order in which a stored state may
//! be replaced by a newer report.
//!
//! The states (Circle Wallets, "Transaction states and errors"):
//!
//! | state | meaning | final |
//! |---|---|---|
//! | `INITIATED` | the transaction has been initiated | no |
//! | `QUEUED` | in the processing queue | no |
//! | `CLEARED` | passed initial checks and risk screening, ready for further processing | no |
//! | `SENT` | seen in the mempool, has a transaction hash; may be cancelled or accelerated | no |
//! | `STUCK` | sent but not progressing; needs action (may be accelerated) | no |
//! | `CONFIRMED` | included in a block, not yet past the chain's confirmation threshold | **no** |
//! | `COMPLETE` | past the confirmation threshold: the transfer happened | yes, money moved |
//! | `FAILED` | could not be completed (`errorReason`, `errorDetails` say why) | yes |
//! | `DENIED` | refused by Circle's risk/compliance screening | yes |
//! | `CANCELLED` | cancelled (possible from `INITIATED`, `QUEUED`, `SENT`) | yes |
//!
//! `CONFIRMED` is not final: Circle marks a transaction `COMPLETE` only once the chain's standard
//! number of confirmations is reached, because a reorganization can undo an inclusion. Circle
//! also warns that webhook delivery is not ordered: `CONFIRMED` "may arrive after `COMPLETE` or
//! not at all", and instant-finality chains go straight from `SENT` to `COMPLETE`.
//!
//! Sources:
//! <https://developers.circle.com/api-reference/wallets/transaction-states-and-errors>,
//! <https://developers.circle.com/w3s/asynchronous-states-and-statuses>,
//! <https://developers.circle.com/wallets/blockchain-confirmations>.
//! An older revision of the docs also listed `PENDING_RISK_SCREENING`; it is not in the current
//! list and is refused as unknown, like any state not listed above (fail closed).
//!
//! **The order rule** ([`TransactionState::may_follow`]). States are ranked: `INITIATED` (0) <
//! `QUEUED` = `CLEARED` (1, the docs disagree across revisions about which comes first) <
//! `SENT` = `STUCK` (2, acceleration takes `STUCK` back to `SENT`) < `CONFIRMED` (3) <
//! the final states (4). A report `next` may replace the stored `prev` when:
//!
//! 1. `next == prev` (a redelivery; nothing changes), or
//! 2. `prev` is not final, and
//!    - `next` is `FAILED` (anything in flight, including an included transaction, can fail), or
//!    - `next` is `DENIED` and `prev` is before `SENT` (screening happens before broadcast), or
//!    - `next` is `CANCELLED` and `prev` is before `CONFIRMED` (nothing in a block is cancelled),
//!      or
//!    - `next` is `COMPLETE` or not final and its rank is at least `prev`'s (forward jumps are
//!      fine: intermediate webhooks may be lost or late).
//!
//! Nothing replaces a final state, so a late `CONFIRMED` cannot reopen a `COMPLETE` transaction,
//! and a late `SENT` cannot undo a `CONFIRMED` one. A report refused by this rule is ignored (the
//! stored state stands); a refused *final* report (say `DENIED` after `SENT`) contradicts what is
//! known, and the transaction should be re-read with `GET /v1/w3s/transactions/{id}` rather than
//! trusted either way.

use std::fmt;
use std::str::FromStr;

/// A Circle Wallets transaction state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionState {
    /// `INITIATED`: accepted by Circle, nothing done yet.
    Initiated,
    /// `QUEUED`: in the processing queue.
    Queued,
    /// `CLEARED`: passed initial checks and risk screening.
    Cleared,
    /// `SENT`: in the mempool with a transaction hash.
    Sent,
    /// `STUCK`: sent but not progressing; can be accelerated.
    Stuck,
    /// `CONFIRMED`: included in a block; **not final**.
    Confirmed,
    /// `COMPLETE`: final, the transfer happened.
    Complete,
    /// `FAILED`: final, the transfer did not happen.
    Failed,
    /// `DENIED`: final, refused by screening.
    Denied,
    /// `CANCELLED`: final, cancelled before inclusion.
    Cancelled,
}

impl TransactionState {
    /// Every state, in rank order.
    pub const ALL: [Self; 10] = [
        Self::Initiated,
        Self::Queued,
        Self::Cleared,
        Self::Sent,
        Self::Stuck,
        Self::Confirmed,
        Self::Complete,
        Self::Failed,
        Self::Denied,
        Self::Cancelled,
    ];

    /// Reads a state exactly as Circle writes it (upper case, e.g. `COMPLETE`).
    pub fn parse(text: &str) -> Result<Self, StateError> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or(StateError::Unknown)
    }

    /// The state as Circle writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "INITIATED",
            Self::Queued => "QUEUED",
            Self::Cleared => "CLEARED",
            Self::Sent => "SENT",
            Self::Stuck => "STUCK",
            Self::Confirmed => "CONFIRMED",
            Self::Complete => "COMPLETE",
            Self::Failed => "FAILED",
            Self::Denied => "DENIED",
            Self::Cancelled => "CANCELLED",
        }
    }

    /// No later state will be reported: `COMPLETE`, `FAILED`, `DENIED`, `CANCELLED`.
    pub fn is_final(self) -> bool {
        self.moved_money() || self.failed()
    }

    /// The transfer happened: `COMPLETE` only (`CONFIRMED` can still be reorganized away).
    pub fn moved_money(self) -> bool {
        self == Self::Complete
    }

    /// The transfer did not and will not happen: `FAILED`, `DENIED`, `CANCELLED`.
    pub fn failed(self) -> bool {
        matches!(self, Self::Failed | Self::Denied | Self::Cancelled)
    }

    /// Position in the lifecycle (see the module docs); final states share the last rank.
    fn rank(self) -> u8 {
        match self {
            Self::Initiated => 0,
            Self::Queued | Self::Cleared => 1,
            Self::Sent | Self::Stuck => 2,
            Self::Confirmed => 3,
            Self::Complete | Self::Failed | Self::Denied | Self::Cancelled => 4,
        }
    }

    /// Whether a report of `self` may replace the stored state `prev` (the rule in the module
    /// docs). `false` means: keep `prev` and ignore the report.
    pub fn may_follow(self, prev: Self) -> bool {
        if self == prev {
            return true;
        }
        if prev.is_final() {
            return false;
        }
        match self {
            Self::Failed => true,
            Self::Denied => prev.rank() < Self::Sent.rank(),
            Self::Cancelled => prev.rank() < Self::Confirmed.rank(),
            _ => self.rank() >= prev.rank(),
        }
    }
}

impl FromStr for TransactionState {
    type Err = StateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for TransactionState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a state was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Not one of the documented transaction states.
    #[error("unknown Circle transaction state")]
    Unknown,
}

impl StateError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Unknown => "CIRCLE_TRANSACTION_STATE_UNKNOWN",
        }
    }

    /// Every reason code this module can return.
    pub fn all_reason_codes() -> &'static [&'static str] {
        &["CIRCLE_TRANSACTION_STATE_UNKNOWN"]
    }
}

#[cfg(test)]
mod tests {
    use super::TransactionState::*;
    use super::*;

    #[test]
    fn parses_exactly_the_documented_states() {
        for state in TransactionState::ALL {
            assert_eq!(TransactionState::parse(state.as_str()), Ok(state));
            assert_eq!(state.to_string().parse::<TransactionState>(), Ok(state));
        }
        for bad in [
            "",
            "complete",
            "Complete",
            " COMPLETE",
            "COMPLETED",
            "CANCELED",
            "PENDING_RISK_SCREENING",
            "UNKNOWN",
        ] {
            assert_eq!(
                TransactionState::parse(bad).unwrap_err().reason_code(),
                "CIRCLE_TRANSACTION_STATE_UNKNOWN",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn finality_and_outcomes() {
        let finals: Vec<_> = TransactionState::ALL
            .into_iter()
            .filter(|state| state.is_final())
            .collect();
        assert_eq!(finals, [Complete, Failed, Denied, Cancelled]);
        assert!(!Confirmed.is_final());
        assert!(!Confirmed.moved_money());
        assert!(Complete.moved_money() && !Complete.failed());
        for state in [Failed, Denied, Cancelled] {
            assert!(state.failed() && !state.moved_money());
        }
        for state in [Initiated, Queued, Cleared, Sent, Stuck, Confirmed] {
            assert!(!state.failed() && !state.moved_money() && !state.is_final());
        }
    }

    #[test]
    fn the_happy_path_and_its_shortcuts_move_forward() {
        let path = [Initiated, Queued, Cleared, Sent, Confirmed, Complete];
        for pair in path.windows(2) {
            assert!(pair[1].may_follow(pair[0]), "{} -> {}", pair[0], pair[1]);
        }
        // Lost or late webhooks: any forward jump.
        for (index, prev) in path.iter().enumerate() {
            for next in &path[index..] {
                assert!(next.may_follow(*prev), "{prev} -> {next}");
            }
        }
        assert!(Complete.may_follow(Sent)); // instant-finality chains skip CONFIRMED
        assert!(Queued.may_follow(Cleared)); // order of these two is not pinned
        assert!(Stuck.may_follow(Sent) && Sent.may_follow(Stuck)); // acceleration
    }

    #[test]
    fn late_reports_never_move_backwards() {
        assert!(!Confirmed.may_follow(Complete)); // documented: CONFIRMED may arrive after COMPLETE
        assert!(!Sent.may_follow(Confirmed));
        assert!(!Initiated.may_follow(Queued));
        assert!(!Cleared.may_follow(Sent));
        assert!(!Stuck.may_follow(Confirmed));
        for prev in TransactionState::ALL {
            for next in TransactionState::ALL {
                if next.rank() < prev.rank() {
                    assert!(!next.may_follow(prev), "{prev} -> {next}");
                }
            }
        }
    }

    #[test]
    fn final_states_are_never_left() {
        for prev in [Complete, Failed, Denied, Cancelled] {
            for next in TransactionState::ALL {
                assert_eq!(next.may_follow(prev), next == prev, "{prev} -> {next}");
            }
        }
    }

    #[test]
    fn failures_only_where_they_can_happen() {
        for prev in [Initiated, Queued, Cleared, Sent, Stuck, Confirmed] {
            assert!(Failed.may_follow(prev), "{prev} -> FAILED");
        }
        for prev in [Initiated, Queued, Cleared] {
            assert!(Denied.may_follow(prev), "{prev} -> DENIED");
        }
        for prev in [Sent, Stuck, Confirmed] {
            assert!(!Denied.may_follow(prev), "{prev} -> DENIED");
        }
        for prev in [Initiated, Queued, Cleared, Sent, Stuck] {
            assert!(Cancelled.may_follow(prev), "{prev} -> CANCELLED");
        }
        assert!(!Cancelled.may_follow(Confirmed));
    }

    #[test]
    fn reason_codes() {
        assert_eq!(
            StateError::all_reason_codes(),
            [StateError::Unknown.reason_code()]
        );
    }
}
