//! The single writer thread: group commit of every mutating operation.
//!
//! Callers hand operations to one dedicated OS thread (never a tokio worker, so blocking redb
//! calls never stall the async runtime). The thread takes every operation waiting in the queue
//! — up to [`MAX_BATCH`] — applies them one after another inside one redb write transaction, and
//! commits it with `Durability::Immediate` (one fsync for the whole batch). Only after that commit
//! returns does any caller get its answer, so nothing is acknowledged before it is durable. While
//! one batch is being fsync'd the next one queues up, which is what makes throughput grow with
//! concurrency.
//!
//! Each operation checks everything before it writes anything, so an operation that is refused
//! (budget exceeded, duplicate decision…) leaves no trace in the batch. A storage failure aborts
//! the whole transaction and every operation of the batch gets the error.

use std::path::PathBuf;
use std::sync::Arc;

use redb::{Database, ReadableTable, Table, WriteTransaction};
use tokio::sync::{mpsc, oneshot};
use trustos_kernel::canonical::Digest;
use trustos_kernel::merkle;
use trustos_kernel::objects::Outcome;
use trustos_kernel::timestamp::Timestamp;

use super::tables::*;
use super::{Internal, map_error};
use crate::store::{
    BudgetSettlement, CasOutcome, CommitError, ConsumeOutcome, DecisionCommit, IdempotencyBegin,
    LateEntry, LateOutcome, LateReceiptCommit, NonceOutcome, ReceiptCommit, SettleOutcome,
    StoreError,
};
use trustos_kernel::objects::Settlement;

/// Most operations in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Most expired unused reservations released inside one decision commit.
const SWEEP_PER_COMMIT: usize = 32;

/// A mutating operation.
pub enum Op {
    /// See `Store::commit_decision`.
    CommitDecision(Box<DecisionCommit>),
    /// See `Store::consume_decision`.
    Consume {
        decision_id: String,
        fingerprint: Digest,
        now: Timestamp,
    },
    /// See `Store::commit_receipt`.
    CommitReceipt(ReceiptCommit),
    /// See `Store::commit_late_receipt`.
    CommitLateReceipt(LateReceiptCommit),
    /// See `Store::capture` / `Store::release`.
    Settle { decision_id: String, capture: bool },
    /// See `Store::release_expired`.
    ReleaseExpired { now: Timestamp },
    /// See `Store::begin_idempotent`.
    BeginIdempotent {
        key: String,
        fingerprint: Digest,
        ttl_millis: u64,
        now: Timestamp,
    },
    /// See `Store::complete_idempotent`.
    CompleteIdempotent {
        key: String,
        fingerprint: Digest,
        response: Vec<u8>,
    },
    /// See `Store::abandon_idempotent`.
    AbandonIdempotent { key: String, fingerprint: Digest },
    /// See `Store::reserve_nonce`.
    ReserveNonce {
        scope: String,
        nonce: String,
        expires_at: Timestamp,
        now: Timestamp,
    },
    /// See `Store::compare_and_set`.
    CompareAndSet {
        kind: String,
        id: String,
        expected: Option<u64>,
        body: Vec<u8>,
    },
}

/// The answer to an operation that was applied.
pub enum Answer {
    /// A log index.
    Index(u64),
    /// A consume outcome.
    Consume(ConsumeOutcome),
    /// A receipt's index and bytes.
    Receipt(u64, Vec<u8>),
    /// A late receipt's index and bytes, or nothing to receipt.
    LateReceipt(Option<(u64, Vec<u8>)>),
    /// A settlement outcome.
    Settle(SettleOutcome),
    /// A count.
    Count(u64),
    /// An idempotency outcome.
    Begin(IdempotencyBegin),
    /// Done.
    Done,
    /// A nonce outcome.
    Nonce(NonceOutcome),
    /// A compare-and-set outcome.
    Cas(CasOutcome),
}

/// What the caller receives: the answer, a refusal that wrote nothing, or a store failure.
pub type Reply = Result<Result<Answer, CommitError>, StoreError>;

/// An operation and where to send its reply.
pub struct Job {
    /// The operation.
    pub op: Op,
    /// Its reply channel.
    pub reply: oneshot::Sender<Reply>,
}

/// Runs the writer until every sender is dropped.
pub fn run(db: Arc<Database>, path: PathBuf, mut jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<Op>, Vec<_>) =
            batch.drain(..).map(|job| (job.op, job.reply)).unzip();
        // A panic while applying (a bug, or a receipt builder that panicked) aborts this batch's
        // transaction, answers every caller with an error, and keeps the writer alive.
        let applied =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| apply_batch(&db, ops)))
                .unwrap_or_else(|_| {
                    Err(Internal::Corrupt(
                        "the writer panicked while applying a batch; nothing of it was written"
                            .into(),
                    ))
                });
        match applied {
            Ok(answers) => {
                for (reply, answer) in replies.into_iter().zip(answers) {
                    // A caller that stopped waiting does not undo a durable write.
                    let _ = reply.send(Ok(answer));
                }
            }
            Err(err) => {
                let err = map_error(&path, err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
        }
    }
}

fn apply_batch(db: &Database, ops: Vec<Op>) -> Result<Vec<Result<Answer, CommitError>>, Internal> {
    let txn = db.begin_write()?;
    let answers = {
        let mut tables = Tables::open(&txn)?;
        let mut answers = Vec::with_capacity(ops.len());
        for op in ops {
            answers.push(tables.apply(op)?);
        }
        tables.finish()?;
        answers
    };
    txn.commit()?;
    Ok(answers)
}

/// Every table, open in one write transaction.
pub struct Tables<'t> {
    meta: Table<'t, &'static str, &'static [u8]>,
    decisions: Table<'t, &'static str, &'static [u8]>,
    unused: Table<'t, (u64, &'static str), ()>,
    totals: Table<'t, (&'static str, u64), &'static [u8]>,
    charges: Table<'t, (&'static str, u64, &'static str), &'static [u8]>,
    entries: Table<'t, u64, &'static [u8]>,
    nodes: Table<'t, (u32, u64), [u8; 32]>,
    idempotency: Table<'t, &'static str, &'static [u8]>,
    responses: Table<'t, &'static str, &'static [u8]>,
    nonces: Table<'t, (&'static str, &'static str), u64>,
    records: Table<'t, (&'static str, &'static str), &'static [u8]>,
    awaiting: Table<'t, &'static str, &'static str>,
    log_size: u64,
    log_size_at_start: u64,
}

/// The log size stored in `meta`.
pub fn read_log_size<T: ReadableTable<&'static str, &'static [u8]>>(
    meta: &T,
) -> Result<u64, Internal> {
    match meta.get("log_size")? {
        None => Ok(0),
        Some(bytes) => {
            let bytes: [u8; 8] = bytes
                .value()
                .try_into()
                .map_err(|_| Internal::Corrupt("meta.log_size is not 8 bytes".into()))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, Internal> {
    serde_json::from_slice(bytes).map_err(|err| Internal::Corrupt(format!("{what}: {err}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Internal> {
    serde_json::to_vec(value).map_err(|err| Internal::Corrupt(format!("cannot encode: {err}")))
}

fn refuse(reason: impl Into<String>) -> Result<Answer, CommitError> {
    Err(CommitError::Store(StoreError::Invalid(reason.into())))
}

impl<'t> Tables<'t> {
    /// Opens every table (creating those that do not exist yet).
    pub fn open(txn: &'t WriteTransaction) -> Result<Self, Internal> {
        let meta = txn.open_table(META)?;
        let log_size = read_log_size(&meta)?;
        Ok(Self {
            meta,
            decisions: txn.open_table(DECISIONS)?,
            unused: txn.open_table(UNUSED_RESERVATIONS)?,
            totals: txn.open_table(BUDGET_TOTALS)?,
            charges: txn.open_table(BUDGET_CHARGES)?,
            entries: txn.open_table(LOG_ENTRIES)?,
            nodes: txn.open_table(LOG_NODES)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            responses: txn.open_table(IDEMPOTENT_RESPONSES)?,
            nonces: txn.open_table(NONCES)?,
            records: txn.open_table(RECORDS)?,
            awaiting: txn.open_table(AWAITING_OUTCOMES)?,
            log_size,
            log_size_at_start: log_size,
        })
    }

    /// Writes what is kept in memory during the batch.
    pub fn finish(&mut self) -> Result<(), Internal> {
        if self.log_size != self.log_size_at_start {
            self.meta
                .insert("log_size", self.log_size.to_be_bytes().as_slice())?;
        }
        Ok(())
    }

    /// Applies one operation: `Ok(Err(_))` is a refusal that wrote nothing.
    pub fn apply(&mut self, op: Op) -> Result<Result<Answer, CommitError>, Internal> {
        match op {
            Op::CommitDecision(commit) => self.commit_decision(*commit),
            Op::Consume {
                decision_id,
                fingerprint,
                now,
            } => self.consume(&decision_id, &fingerprint, now),
            Op::CommitReceipt(commit) => self.commit_receipt(commit),
            Op::CommitLateReceipt(commit) => self.commit_late_receipt(commit),
            Op::Settle {
                decision_id,
                capture,
            } => self
                .settle(&decision_id, capture)
                .map(|outcome| Ok(Answer::Settle(outcome))),
            Op::ReleaseExpired { now } => self
                .sweep(now, usize::MAX)
                .map(|count| Ok(Answer::Count(count))),
            Op::BeginIdempotent {
                key,
                fingerprint,
                ttl_millis,
                now,
            } => self.begin_idempotent(&key, &fingerprint, ttl_millis, now),
            Op::CompleteIdempotent {
                key,
                fingerprint,
                response,
            } => self.complete_idempotent(&key, &fingerprint, &response),
            Op::AbandonIdempotent { key, fingerprint } => {
                self.abandon_idempotent(&key, &fingerprint)
            }
            Op::ReserveNonce {
                scope,
                nonce,
                expires_at,
                now,
            } => self.reserve_nonce(&scope, &nonce, expires_at, now),
            Op::CompareAndSet {
                kind,
                id,
                expected,
                body,
            } => self.compare_and_set(&kind, &id, expected, &body),
        }
    }

    fn append(&mut self, bytes: &[u8]) -> Result<u64, Internal> {
        let index = self.log_size;
        let leaf = merkle::leaf_hash(bytes);
        let completed = merkle::completed_node_hashes(&NodeTable(&self.nodes), index, leaf)?;
        for (id, hash) in completed {
            self.nodes.insert((id.level, id.index), hash)?;
        }
        self.entries.insert(index, bytes)?;
        self.log_size += 1;
        Ok(index)
    }

    fn usage(&self, charge: &StoredCharge, window_floor: u64) -> Result<Totals, Internal> {
        if charge.fixed {
            fixed_window_totals(&self.totals, &charge.budget, charge.slot)
        } else {
            rolling_window_totals(&self.charges, &charge.budget, window_floor, charge.slot)
        }
    }

    /// Moves `amount` of one charge between states (`from` → `to`; `Released` means uncounted).
    fn shift(
        &mut self,
        decision_id: &str,
        charge: &StoredCharge,
        from: ChargeState,
        to: ChargeState,
    ) -> Result<(), Internal> {
        let amount: u128 = charge
            .amount
            .parse()
            .map_err(|_| Internal::Corrupt(format!("stored amount {:?}", charge.amount)))?;
        let mut totals = if charge.fixed {
            fixed_window_totals(&self.totals, &charge.budget, charge.slot)?
        } else {
            // This decision's own charge row.
            match self
                .charges
                .get((charge.budget.as_str(), charge.slot, decision_id))?
            {
                None => Totals::default(),
                Some(bytes) => Totals::decode(bytes.value())
                    .ok_or_else(|| Internal::Corrupt("budget charge is not 32 bytes".into()))?,
            }
        };
        let underflow = || Internal::Corrupt("budget totals would go negative".into());
        match from {
            ChargeState::Reserved => {
                totals.reserved = totals.reserved.checked_sub(amount).ok_or_else(underflow)?
            }
            ChargeState::Captured => {
                totals.captured = totals.captured.checked_sub(amount).ok_or_else(underflow)?
            }
            ChargeState::Released => {}
        }
        match to {
            ChargeState::Reserved => totals.reserved = totals.reserved.saturating_add(amount),
            ChargeState::Captured => totals.captured = totals.captured.saturating_add(amount),
            ChargeState::Released => {}
        }
        let encoded = totals.encode();
        if charge.fixed {
            self.totals
                .insert((charge.budget.as_str(), charge.slot), encoded.as_slice())?;
        } else if totals == Totals::default() {
            self.charges
                .remove((charge.budget.as_str(), charge.slot, decision_id))?;
        } else {
            self.charges.insert(
                (charge.budget.as_str(), charge.slot, decision_id),
                encoded.as_slice(),
            )?;
        }
        Ok(())
    }

    fn commit_decision(
        &mut self,
        commit: DecisionCommit,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let decision = &commit.decision;
        let now = decision.issued_at;
        self.sweep(now, SWEEP_PER_COMMIT)?;
        if self.decisions.get(decision.decision_id.as_str())?.is_some() {
            return Ok(Err(CommitError::DuplicateDecision(
                decision.decision_id.clone(),
            )));
        }
        if decision.reservations.len() != commit.charges.len() {
            return Ok(Err(CommitError::Inconsistent(format!(
                "{} signed reservations but {} charges",
                decision.reservations.len(),
                commit.charges.len()
            ))));
        }
        let mut stored = Vec::with_capacity(commit.charges.len());
        for (signed, charge) in decision.reservations.iter().zip(&commit.charges) {
            let (window_start, window_end) = charge.window.bounds(now);
            let signed_amount = signed.amount.to_u128();
            if signed.budget_key != charge.budget_key
                || signed_amount != Some(charge.amount)
                || signed.window_start != window_start
                || signed.window_end != window_end
            {
                return Ok(Err(CommitError::Inconsistent(format!(
                    "charge for {} does not match the signed reservation",
                    charge.budget_key
                ))));
            }
            let budget = budget_id(&charge.budget_key, &charge.window.label());
            if stored
                .iter()
                .any(|other: &(StoredCharge, u64)| other.0.budget == budget)
            {
                return Ok(Err(CommitError::Inconsistent(format!(
                    "budget {} is charged twice",
                    charge.budget_key
                ))));
            }
            let fixed = charge.window.is_fixed();
            let slot = if fixed {
                window_start.unix_millis()
            } else {
                now.unix_millis()
            };
            let entry = StoredCharge {
                budget,
                fixed,
                slot,
                amount: charge.amount.to_string(),
            };
            let spent = self.usage(&entry, window_start.unix_millis())?.spent();
            if spent
                .checked_add(charge.amount)
                .is_none_or(|total| total > charge.limit)
            {
                return Ok(Err(CommitError::BudgetExceeded {
                    budget_key: charge.budget_key.clone(),
                    window: charge.window,
                    spent,
                    amount: charge.amount,
                    limit: charge.limit,
                }));
            }
            stored.push((entry, window_start.unix_millis()));
        }
        // Everything checked: write.
        let charges: Vec<StoredCharge> = stored.into_iter().map(|(charge, _)| charge).collect();
        for charge in &charges {
            self.shift(
                &decision.decision_id,
                charge,
                ChargeState::Released,
                ChargeState::Reserved,
            )?;
        }
        let log_index = self.append(commit.signed.as_bytes())?;
        let record = DecisionRecord {
            fingerprint: decision.fingerprint.to_string(),
            allow: decision.outcome == Outcome::Allow,
            expires_at: decision.expires_at.unix_millis(),
            consumed_at: (commit.consume && decision.outcome == Outcome::Allow)
                .then_some(now.unix_millis()),
            log_index,
            state: if charges.is_empty() {
                ChargeState::Released
            } else {
                ChargeState::Reserved
            },
            charges,
            // Only a payment that starts now can await its outcome.
            awaiting: commit
                .awaiting
                .filter(|_| commit.consume && decision.outcome == Outcome::Allow)
                .map(|awaited| AwaitingOutcome {
                    settlement: awaited.settlement,
                    owner: awaited.owner,
                    receipt: None,
                }),
            late_receipt: None,
        };
        if record.state == ChargeState::Reserved && record.consumed_at.is_none() {
            self.unused
                .insert((record.expires_at, decision.decision_id.as_str()), ())?;
        }
        if let Some(awaiting) = &record.awaiting {
            self.awaiting.insert(
                decision.decision_id.as_str(),
                awaiting.settlement.rail.as_str(),
            )?;
        }
        self.decisions
            .insert(decision.decision_id.as_str(), encode(&record)?.as_slice())?;
        Ok(Ok(Answer::Index(log_index)))
    }

    fn load_decision(&self, decision_id: &str) -> Result<Option<DecisionRecord>, Internal> {
        match self.decisions.get(decision_id)? {
            None => Ok(None),
            Some(bytes) => decode("decision record", bytes.value()).map(Some),
        }
    }

    fn save_decision(
        &mut self,
        decision_id: &str,
        record: &DecisionRecord,
    ) -> Result<(), Internal> {
        self.decisions
            .insert(decision_id, encode(record)?.as_slice())?;
        Ok(())
    }

    fn consume(
        &mut self,
        decision_id: &str,
        fingerprint: &Digest,
        now: Timestamp,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let Some(mut record) = self.load_decision(decision_id)? else {
            return Ok(Ok(Answer::Consume(ConsumeOutcome::Unknown)));
        };
        let outcome = if record.consumed_at.is_some() {
            ConsumeOutcome::AlreadyUsed
        } else if record.fingerprint != fingerprint.to_string() {
            ConsumeOutcome::FingerprintMismatch
        } else if !record.allow {
            ConsumeOutcome::NotAllowed
        } else if now.unix_millis() >= record.expires_at {
            ConsumeOutcome::Expired
        } else {
            record.consumed_at = Some(now.unix_millis());
            // Consumed: money may move, so the reservation is no longer swept on expiry.
            self.unused.remove((record.expires_at, decision_id))?;
            self.save_decision(decision_id, &record)?;
            ConsumeOutcome::Consumed
        };
        Ok(Ok(Answer::Consume(outcome)))
    }

    fn settle(&mut self, decision_id: &str, capture: bool) -> Result<SettleOutcome, Internal> {
        let Some(mut record) = self.load_decision(decision_id)? else {
            return Ok(SettleOutcome::Unknown);
        };
        if record.charges.is_empty() {
            return Ok(SettleOutcome::Unknown);
        }
        let target = if capture {
            ChargeState::Captured
        } else {
            ChargeState::Released
        };
        if record.state == target {
            return Ok(SettleOutcome::AlreadySettled);
        }
        if !capture && record.state == ChargeState::Captured {
            return Ok(SettleOutcome::AlreadyCaptured);
        }
        let charges = record.charges.clone();
        for charge in &charges {
            self.shift(decision_id, charge, record.state, target)?;
        }
        if record.state == ChargeState::Reserved {
            self.unused.remove((record.expires_at, decision_id))?;
        }
        record.state = target;
        self.save_decision(decision_id, &record)?;
        Ok(SettleOutcome::Settled)
    }

    /// Releases up to `limit` reservations of decisions that expired at or before `now` unused.
    fn sweep(&mut self, now: Timestamp, limit: usize) -> Result<u64, Internal> {
        let mut expired = Vec::new();
        for row in self
            .unused
            .range((0u64, "")..=(now.unix_millis(), "\u{10ffff}"))?
        {
            if expired.len() >= limit {
                break;
            }
            let (key, _) = row?;
            let (expires_at, decision_id) = key.value();
            if expires_at <= now.unix_millis() {
                expired.push(decision_id.to_owned());
            }
        }
        let mut released = 0;
        for decision_id in expired {
            if self.settle(&decision_id, false)? == SettleOutcome::Settled {
                released += 1;
            }
        }
        Ok(released)
    }

    fn commit_receipt(
        &mut self,
        commit: ReceiptCommit,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let Some(record) = self.load_decision(&commit.decision_id)? else {
            return Ok(refuse(format!(
                "receipt for unknown decision {}",
                commit.decision_id
            )));
        };
        if commit.settlement == BudgetSettlement::Release && record.state == ChargeState::Captured {
            return Ok(refuse(format!(
                "decision {} is captured; its reservations cannot be released",
                commit.decision_id
            )));
        }
        let index = self.log_size;
        let bytes = match (commit.build)(index) {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(refuse(format!("receipt could not be built: {reason}"))),
        };
        match commit.settlement {
            BudgetSettlement::Capture => {
                self.settle(&commit.decision_id, true)?;
            }
            BudgetSettlement::Release => {
                self.settle(&commit.decision_id, false)?;
            }
            BudgetSettlement::Keep => {}
        }
        let appended = self.append(&bytes)?;
        // A payment awaiting its outcome: a receipt that leaves it open names itself as the one
        // a late receipt will compose; any other receipt closes it. (Read again only then:
        // settling above may have rewritten the record.)
        if record.awaiting.is_none() {
            return Ok(Ok(Answer::Receipt(appended, bytes)));
        }
        let mut record = self.load_decision(&commit.decision_id)?.ok_or_else(|| {
            Internal::Corrupt(format!("decision {} vanished", commit.decision_id))
        })?;
        if let Some(awaiting) = &mut record.awaiting {
            if commit.settlement == BudgetSettlement::Keep && commit.outcome_open {
                awaiting.receipt = Some(Digest::of(&bytes).to_string());
            } else {
                record.awaiting = None;
                self.awaiting.remove(commit.decision_id.as_str())?;
            }
            self.save_decision(&commit.decision_id, &record)?;
        }
        Ok(Ok(Answer::Receipt(appended, bytes)))
    }

    fn commit_late_receipt(
        &mut self,
        commit: LateReceiptCommit,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let Some(record) = self.load_decision(&commit.decision_id)? else {
            return Ok(refuse(format!(
                "late receipt for unknown decision {}",
                commit.decision_id
            )));
        };
        let Some(awaiting) = record.awaiting.clone() else {
            return Ok(Ok(Answer::LateReceipt(None)));
        };
        if awaiting.receipt.is_none() && awaiting.owner == commit.owner {
            // In flight in the asking run: its own receipt will close it.
            return Ok(Ok(Answer::LateReceipt(None)));
        }
        if commit.outcome == LateOutcome::Abandoned && awaiting.receipt.is_some() {
            // A receipt left the outcome open: the rail was asked, so only the rail's answer
            // closes it.
            return Ok(Ok(Answer::LateReceipt(None)));
        }
        let fingerprint: Digest = record.fingerprint.parse().map_err(|_| {
            Internal::Corrupt(format!("decision {}: bad fingerprint", commit.decision_id))
        })?;
        let open_receipt: Option<Digest> = awaiting
            .receipt
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|_| {
                Internal::Corrupt(format!(
                    "decision {}: bad receipt digest",
                    commit.decision_id
                ))
            })?;
        let forwarded_at = record
            .consumed_at
            .and_then(|millis| Timestamp::from_unix_millis(millis).ok());
        let (settlement, capture) = match &commit.outcome {
            LateOutcome::Settled { reference } => (
                Some(Settlement {
                    rail: awaiting.settlement.rail,
                    reference: reference.clone(),
                    network: awaiting.settlement.network,
                    asset: awaiting.settlement.asset,
                    amount: awaiting.settlement.amount,
                }),
                true,
            ),
            LateOutcome::Failed | LateOutcome::Abandoned => (None, false),
        };
        let index = self.log_size;
        let entry = LateEntry {
            index,
            fingerprint,
            forwarded_at,
            settlement,
            open_receipt,
        };
        let bytes = match (commit.build)(entry) {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(refuse(format!("receipt could not be built: {reason}"))),
        };
        // Money that moved is always counted; a release after a capture is refused (ignored).
        self.settle(&commit.decision_id, capture)?;
        let appended = self.append(&bytes)?;
        let mut record = self.load_decision(&commit.decision_id)?.ok_or_else(|| {
            Internal::Corrupt(format!("decision {} vanished", commit.decision_id))
        })?;
        record.awaiting = None;
        record.late_receipt = Some(appended);
        self.save_decision(&commit.decision_id, &record)?;
        self.awaiting.remove(commit.decision_id.as_str())?;
        Ok(Ok(Answer::LateReceipt(Some((appended, bytes)))))
    }

    fn begin_idempotent(
        &mut self,
        key: &str,
        fingerprint: &Digest,
        ttl_millis: u64,
        now: Timestamp,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let existing: Option<IdempotencyRecord> = match self.idempotency.get(key)? {
            None => None,
            Some(bytes) => Some(decode("idempotency record", bytes.value())?),
        };
        if let Some(record) = existing
            && now.unix_millis() < record.expires_at
        {
            let answer = if record.fingerprint != fingerprint.to_string() {
                IdempotencyBegin::Mismatch
            } else if !record.completed {
                IdempotencyBegin::InFlight
            } else {
                let response = self
                    .responses
                    .get(key)?
                    .map(|bytes| bytes.value().to_vec())
                    .ok_or_else(|| {
                        Internal::Corrupt(format!("stored response for {key:?} is missing"))
                    })?;
                IdempotencyBegin::Replay(response)
            };
            return Ok(Ok(Answer::Begin(answer)));
        }
        let record = IdempotencyRecord {
            fingerprint: fingerprint.to_string(),
            completed: false,
            expires_at: now.unix_millis().saturating_add(ttl_millis),
        };
        self.responses.remove(key)?;
        self.idempotency.insert(key, encode(&record)?.as_slice())?;
        Ok(Ok(Answer::Begin(IdempotencyBegin::Started)))
    }

    fn in_flight_record(
        &self,
        key: &str,
        fingerprint: &Digest,
    ) -> Result<Result<IdempotencyRecord, CommitError>, Internal> {
        let Some(bytes) = self.idempotency.get(key)? else {
            return Ok(Err(CommitError::Store(StoreError::Invalid(format!(
                "idempotency key {key:?} was not started"
            )))));
        };
        let record: IdempotencyRecord = decode("idempotency record", bytes.value())?;
        if record.fingerprint != fingerprint.to_string() {
            return Ok(Err(CommitError::Store(StoreError::Invalid(format!(
                "idempotency key {key:?} belongs to another request"
            )))));
        }
        if record.completed {
            return Ok(Err(CommitError::Store(StoreError::Invalid(format!(
                "idempotency key {key:?} is already completed"
            )))));
        }
        Ok(Ok(record))
    }

    fn complete_idempotent(
        &mut self,
        key: &str,
        fingerprint: &Digest,
        response: &[u8],
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let mut record = match self.in_flight_record(key, fingerprint)? {
            Ok(record) => record,
            Err(refusal) => return Ok(Err(refusal)),
        };
        record.completed = true;
        self.responses.insert(key, response)?;
        self.idempotency.insert(key, encode(&record)?.as_slice())?;
        Ok(Ok(Answer::Done))
    }

    fn abandon_idempotent(
        &mut self,
        key: &str,
        fingerprint: &Digest,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        if let Err(refusal) = self.in_flight_record(key, fingerprint)? {
            return Ok(Err(refusal));
        }
        self.idempotency.remove(key)?;
        Ok(Ok(Answer::Done))
    }

    fn reserve_nonce(
        &mut self,
        scope: &str,
        nonce: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Result<Answer, CommitError>, Internal> {
        if let Some(existing) = self.nonces.get((scope, nonce))?
            && now.unix_millis() < existing.value()
        {
            return Ok(Ok(Answer::Nonce(NonceOutcome::Replayed)));
        }
        self.nonces
            .insert((scope, nonce), expires_at.unix_millis())?;
        Ok(Ok(Answer::Nonce(NonceOutcome::Fresh)))
    }

    fn compare_and_set(
        &mut self,
        kind: &str,
        id: &str,
        expected: Option<u64>,
        body: &[u8],
    ) -> Result<Result<Answer, CommitError>, Internal> {
        let current = match self.records.get((kind, id))? {
            None => None,
            Some(bytes) => Some(super::record_version(bytes.value())?),
        };
        if current != expected {
            return Ok(Ok(Answer::Cas(CasOutcome::Conflict(current))));
        }
        let version = current.map_or(1, |version| version + 1);
        let mut stored = Vec::with_capacity(8 + body.len());
        stored.extend_from_slice(&version.to_be_bytes());
        stored.extend_from_slice(body);
        self.records.insert((kind, id), stored.as_slice())?;
        Ok(Ok(Answer::Cas(CasOutcome::Stored(version))))
    }
}
