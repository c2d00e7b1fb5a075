//! The order in which a reconcile round asks a rail about its open attempts.
//!
//! A round (the daemon's periodic one, or `trustos payments`) has a time budget per rail. If
//! the rail answers slowly, a round ends before it has asked about every open attempt. Asking
//! in ledger order would then ask about the same first attempts every round and never reach the
//! rest. Instead, each round asks first about the attempts asked about longest ago, and about
//! the ones never asked before all others.

use std::collections::{HashMap, HashSet};

use trustos_adapters::AttemptRecord;

/// When each open attempt was last asked about, per rail, as a round-independent sequence.
#[derive(Debug, Default)]
pub struct ReconcileOrder {
    /// The next sequence number to hand out.
    next: u64,
    /// Per rail: decision id → the sequence number of its last ask.
    asked: HashMap<String, HashMap<String, u64>>,
}

impl ReconcileOrder {
    /// Sorts `attempts` (all open attempts of `rail`) for a round: never asked first, then
    /// asked longest ago; ties keep the ledger's order. Forgets attempts no longer open.
    pub fn order(&mut self, rail: &str, attempts: &mut [AttemptRecord]) {
        let open: HashSet<&str> = attempts.iter().map(|a| a.decision_id.as_str()).collect();
        let asked = self.asked.entry(rail.to_owned()).or_default();
        asked.retain(|decision_id, _| open.contains(decision_id.as_str()));
        attempts.sort_by_key(|attempt| asked.get(&attempt.decision_id).copied());
    }

    /// Notes that `decision_id` of `rail` has just been asked about.
    pub fn asked(&mut self, rail: &str, decision_id: &str) {
        let sequence = self.next;
        self.next += 1;
        self.asked
            .entry(rail.to_owned())
            .or_default()
            .insert(decision_id.to_owned(), sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustos_adapters::AttemptState;

    fn attempt(decision_id: &str) -> AttemptRecord {
        AttemptRecord {
            rail: "circle".into(),
            decision_id: decision_id.into(),
            state: AttemptState::Unknown,
            idempotency_key: format!("idem-{decision_id}"),
            replay_key: format!("replay-{decision_id}"),
            valid_before: 0,
            authorization: "{}".into(),
            reference: None,
            detail: None,
        }
    }

    fn ids(attempts: &[AttemptRecord]) -> Vec<&str> {
        attempts.iter().map(|a| a.decision_id.as_str()).collect()
    }

    /// Rounds cut off after two asks each still reach every attempt, in turn.
    #[test]
    fn rounds_cut_short_still_reach_every_attempt() {
        let mut order = ReconcileOrder::default();
        let mut seen = Vec::new();
        for _ in 0..3 {
            let mut open: Vec<_> = ["a", "b", "c", "d", "e"].map(attempt).into();
            order.order("circle", &mut open);
            for attempt in open.iter().take(2) {
                order.asked("circle", &attempt.decision_id);
                seen.push(attempt.decision_id.clone());
            }
        }
        assert_eq!(seen, ["a", "b", "c", "d", "e", "a"]);
    }

    #[test]
    fn new_attempts_come_first_and_closed_ones_are_forgotten() {
        let mut order = ReconcileOrder::default();
        let mut open: Vec<_> = ["a", "b"].map(attempt).into();
        order.order("x402", &mut open);
        order.asked("x402", "b");
        order.asked("x402", "a");
        // "b" concluded; "c" is new.
        let mut open: Vec<_> = ["a", "c"].map(attempt).into();
        order.order("x402", &mut open);
        assert_eq!(ids(&open), ["c", "a"]);
        assert!(!order.asked["x402"].contains_key("b"));
        // Each rail keeps its own.
        let mut circle: Vec<_> = ["a", "z"].map(attempt).into();
        order.order("circle", &mut circle);
        assert_eq!(ids(&circle), ["a", "z"]);
        assert!(order.asked["x402"].contains_key("a"));
    }
}
