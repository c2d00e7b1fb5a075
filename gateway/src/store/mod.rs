//! Durable state that protects money: the domain-level [`Store`] contract and its backends.
//!
//! Every operation is a domain operation (commit a decision, consume it once, reserve and settle
//! a budget, append to the audit log…) that a backend implements with its own atomic primitive:
//! one redb write transaction ([`redb_store`]), later one PostgreSQL transaction with unique
//! constraints. Nothing here is a generic key-value API, so a backend cannot be used in a way
//! that splits what must be atomic.
//!
//! Every method takes the time it should act at; the store has no clock of its own, which makes
//! window roll-over and expiry testable and decisions deterministic (invariant 8).
//!
//! An `Ok` from a mutating method means the change is durable (fsync'd). An `Err` means it was
//! not made — or, for [`StoreError::Unavailable`] after a write was handed to the backend, that
//! it is unknown whether it was; callers on a high-risk path treat every error as deny (invariant
//! 3).

pub mod budget;
pub mod payment_ledger;
pub mod redb_store;

use std::path::PathBuf;

use async_trait::async_trait;
use trustos_kernel::canonical::Digest;
use trustos_kernel::checkpoint::Checkpoint;
use trustos_kernel::merkle::Hash;
use trustos_kernel::objects::{Amount, PolicyDecision, Settlement};
use trustos_kernel::timestamp::Timestamp;

pub use budget::BudgetWindow;

/// One budget amount a decision reserves, with the limit it must fit in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetCharge {
    /// The budget counted against, e.g. `agent:research-bot`.
    pub budget_key: String,
    /// The window the limit applies to.
    pub window: BudgetWindow,
    /// Amount in base units; must equal the signed reservation's amount.
    pub amount: u128,
    /// The most that may be reserved plus captured in the window.
    pub limit: u128,
}

/// Everything [`Store::commit_decision`] records in one atomic unit.
#[derive(Clone, Debug)]
pub struct DecisionCommit {
    /// The decision, as signed.
    pub decision: PolicyDecision,
    /// Its compact JWS: the bytes appended to the audit log.
    pub signed: String,
    /// One charge per entry of `decision.reservations`, same budget key and amount, with the
    /// window whose bounds at `decision.issued_at` are the signed window.
    pub charges: Vec<BudgetCharge>,
    /// Consume an allow decision in the same unit (the gateway forwards it itself, at once):
    /// one durable write instead of two, and no moment where it exists unconsumed.
    pub consume: bool,
    /// For an allow a rail adapter will pay, consumed in this unit: what the payment would
    /// settle, kept until a receipt closes its outcome, so that an outcome the call's own
    /// receipt never named (left `unknown`, or the daemon gone mid-call) is receipted later,
    /// once ([`Store::commit_late_receipt`]).
    pub awaiting: Option<AwaitedPayment>,
}

/// A rail payment a decision allows, until a receipt closes its outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwaitedPayment {
    /// What it would settle.
    pub settlement: AwaitedSettlement,
    /// The daemon run that executes it (see [`LateReceiptCommit::owner`]).
    pub owner: String,
}

/// Why a decision was not committed. Nothing of it was recorded.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// A charge does not fit its budget.
    #[error(
        "budget {budget_key} ({window}) has {spent} reserved or captured; {amount} more exceeds the limit {limit}"
    )]
    BudgetExceeded {
        /// The budget.
        budget_key: String,
        /// Its window.
        window: BudgetWindow,
        /// Reserved plus captured in the window now.
        spent: u128,
        /// The amount asked for.
        amount: u128,
        /// The limit.
        limit: u128,
    },
    /// A decision with this id was already committed.
    #[error("decision {0} was already committed")]
    DuplicateDecision(String),
    /// The commit does not match the signed decision.
    #[error("decision commit is inconsistent: {0}")]
    Inconsistent(String),
    /// The store could not make it durable.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`Store::consume_decision`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsumeOutcome {
    /// First use: recorded durably; the call may be forwarded.
    Consumed,
    /// Used before (also before a restart).
    AlreadyUsed,
    /// No such decision was committed.
    Unknown,
    /// The decision's validity ended.
    Expired,
    /// The decision is for another request.
    FingerprintMismatch,
    /// The decision's outcome is not allow, so there is nothing to consume.
    NotAllowed,
}

/// What [`Store::begin_idempotent`] found, with Stripe's idempotency-key semantics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// New key: the caller runs the request and then calls `complete_idempotent` or
    /// `abandon_idempotent`.
    Started,
    /// The same request completed before: its stored response, byte for byte.
    Replay(Vec<u8>),
    /// The same request is running now.
    InFlight,
    /// The key was used for a different request.
    Mismatch,
}

/// What a budget settlement found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SettleOutcome {
    /// The reservation moved to the requested state.
    Settled,
    /// It was already in that state (settling is idempotent).
    AlreadySettled,
    /// Money moved, so the reservation was captured and can no longer be released.
    AlreadyCaptured,
    /// No reservation for this decision.
    Unknown,
}

/// How a receipt settles its decision's reservations, in the same atomic unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BudgetSettlement {
    /// The call succeeded and spent: capture.
    Capture,
    /// The call failed and spent nothing: release.
    Release,
    /// The outcome is unknown (reconciliation settles it later): keep reserved.
    Keep,
}

/// Builds the signed bytes of a log entry once its index is known (receipts carry their index).
pub type EntryBuilder = Box<dyn FnOnce(u64) -> Result<Vec<u8>, String> + Send>;

/// A receipt to append, settling its decision's budget reservations atomically.
pub struct ReceiptCommit {
    /// The decision the receipt closes.
    pub decision_id: String,
    /// What to do with its reservations.
    pub settlement: BudgetSettlement,
    /// Builds the signed receipt given its log index.
    pub build: EntryBuilder,
    /// With [`BudgetSettlement::Keep`]: the receipt leaves a rail payment's outcome open
    /// (`unknown`), so the decision keeps awaiting it. Any other receipt closes it.
    pub outcome_open: bool,
}

/// What a rail payment left open would settle: everything of its receipt's settlement but the
/// rail's reference, which only reconciliation learns.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AwaitedSettlement {
    /// `x402` or `circle`.
    pub rail: String,
    /// CAIP-2 network.
    pub network: String,
    /// Asset.
    pub asset: String,
    /// Amount, in base units.
    pub amount: Amount,
}

/// How reconciliation found a payment left open to have ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LateOutcome {
    /// Money moved: the rail's reference (x402 transaction hash, Circle transaction id).
    Settled {
        /// The rail's reference.
        reference: String,
    },
    /// Nothing moved, and nothing will.
    Failed,
    /// The run that owned the payment ended before it recorded an attempt with the rail, so
    /// nothing was ever sent: nothing moved, and nothing will. Accepted only for a payment
    /// never receipted, owned by another run (one that is over: a store has one owner).
    Abandoned,
}

/// What the builder of a late receipt is given by the store, from the decision's record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateEntry {
    /// The receipt's log index.
    pub index: u64,
    /// The fingerprint the decision was made for.
    pub fingerprint: Digest,
    /// When the decision was consumed (the call forwarded).
    pub forwarded_at: Option<Timestamp>,
    /// The settlement to name, when money moved.
    pub settlement: Option<Settlement>,
    /// SHA-256 of the receipt that left the outcome open (the late receipt composes it);
    /// none when the call was never receipted (its daemon stopped mid-call).
    pub open_receipt: Option<Digest>,
}

/// Builds the signed bytes of a late receipt.
pub type LateEntryBuilder = Box<dyn FnOnce(LateEntry) -> Result<Vec<u8>, String> + Send>;

/// A late outcome to receipt: see [`Store::commit_late_receipt`].
pub struct LateReceiptCommit {
    /// The decision whose receipt left the outcome open.
    pub decision_id: String,
    /// How it ended.
    pub outcome: LateOutcome,
    /// The daemon run asking (unique per start). A payment its own run has not receipted yet
    /// is still in flight there and is left alone; one another run never receipted was cut
    /// off mid-call and is receipted now.
    pub owner: String,
    /// Builds the signed receipt.
    pub build: LateEntryBuilder,
}

/// What [`Store::reserve_nonce`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonceOutcome {
    /// Not seen (or seen but expired): now reserved until its expiry.
    Fresh,
    /// Seen and not expired.
    Replayed,
}

/// Reserved plus captured amounts of one budget window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BudgetUsage {
    /// Reserved, not yet captured or released.
    pub reserved: u128,
    /// Captured (money moved).
    pub captured: u128,
}

/// A record with a version, for compare-and-set state machines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionedRecord {
    /// Starts at 1, increases by one per successful write.
    pub version: u64,
    /// The record's bytes.
    pub body: Vec<u8>,
}

/// What [`Store::compare_and_set`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    /// Written with this new version.
    Stored(u64),
    /// Not written: the record's current version (`None`: it does not exist).
    Conflict(Option<u64>),
}

/// A signed checkpoint of the audit log.
#[derive(Clone, Debug)]
pub struct SignedCheckpoint {
    /// The checkpoint.
    pub checkpoint: Checkpoint,
    /// The C2SP signed note.
    pub note: String,
}

/// Why the store could not do what was asked. Every message names the file and the remedy.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process has the data directory open.
    #[error(
        "{path}: the Trust OS database is open in another process; stop the other trustos (only one process may own the data directory)"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file is not a Trust OS database.
    #[error(
        "{path}: not a Trust OS database ({detail}); point TRUSTOS_HOME elsewhere or move the file aside — it is never overwritten"
    )]
    Foreign {
        /// The database file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The file is damaged.
    #[error(
        "{path}: the Trust OS database is corrupted ({detail}); restore it from a backup — Trust OS never resets it"
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The file was written by a newer Trust OS.
    #[error(
        "{path}: the database has schema version {found}, newer than the {supported} this trustos understands; upgrade trustos"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: u64,
        /// Newest version supported.
        supported: u64,
    },
    /// The disk is full: nothing of the failed operation was acknowledged.
    #[error(
        "{path}: no space left on the device; the operation was not recorded — free space and retry"
    )]
    DiskFull {
        /// The database file.
        path: PathBuf,
    },
    /// Reading or writing failed: nothing of the failed operation was acknowledged.
    #[error("{path}: storage error ({detail}); the operation was not recorded")]
    Io {
        /// The database file.
        path: PathBuf,
        /// The cause.
        detail: String,
    },
    /// The store is shut down or its writer stopped.
    #[error("the store is closed ({0}); the operation was not recorded")]
    Unavailable(String),
    /// The request itself is invalid.
    #[error("invalid store request: {0}")]
    Invalid(String),
}

/// The durable state behind the gateway. See the module documentation for the contract.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records the decision, reserves every charge (`spent + amount ≤ limit` for each, or nothing
    /// at all), and appends the signed decision to the audit log, in one atomic unit. Returns the
    /// decision's log index.
    async fn commit_decision(&self, commit: DecisionCommit) -> Result<u64, CommitError>;

    /// Marks the decision used, durably, the first time; see [`ConsumeOutcome`].
    async fn consume_decision(
        &self,
        decision_id: &str,
        fingerprint: &Digest,
        now: Timestamp,
    ) -> Result<ConsumeOutcome, StoreError>;

    /// Appends a receipt (built once its index is known) and settles its decision's reservations,
    /// atomically. Returns the index and the bytes appended.
    async fn commit_receipt(&self, commit: ReceiptCommit) -> Result<(u64, Vec<u8>), StoreError>;

    /// Receipts how a rail payment whose outcome no receipt has closed ended, at most once per
    /// decision: appends the late receipt and captures (settled) or releases (failed) the
    /// reservation, in one atomic unit. `Ok(None)` when there is nothing to receipt: a receipt
    /// closed the outcome (or this late receipt was committed already), or the payment is still
    /// in flight in the asking run (`owner`) and not receipted yet.
    async fn commit_late_receipt(
        &self,
        commit: LateReceiptCommit,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError>;

    /// The decisions of rail payments whose outcome no receipt has closed yet (in flight, left
    /// `unknown`, or cut off mid-call), with their rail, in decision id order.
    async fn awaiting_outcomes(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Captures a decision's reservations (money moved). Also allowed after a release: money that
    /// moved is always counted.
    async fn capture(&self, decision_id: &str) -> Result<SettleOutcome, StoreError>;

    /// Releases a decision's reservations (nothing was spent). Refused once captured.
    async fn release(&self, decision_id: &str) -> Result<SettleOutcome, StoreError>;

    /// Releases reservations of decisions that expired unused (never consumed). Reservations of
    /// consumed decisions are kept until captured or released: money may have moved. Returns how
    /// many decisions were released.
    async fn release_expired(&self, now: Timestamp) -> Result<u64, StoreError>;

    /// Reserved and captured amounts of a budget in the window containing `at`.
    async fn budget_usage(
        &self,
        budget_key: &str,
        window: BudgetWindow,
        at: Timestamp,
    ) -> Result<BudgetUsage, StoreError>;

    /// Starts a request under an idempotency key, or reports what the key already holds. Keys
    /// expire `ttl_millis` after they are first used.
    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &Digest,
        ttl_millis: u64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError>;

    /// Stores the response of a started request; later `begin_idempotent` calls replay it.
    async fn complete_idempotent(
        &self,
        key: &str,
        fingerprint: &Digest,
        response: Vec<u8>,
    ) -> Result<(), StoreError>;

    /// Forgets a started request that failed before it had any effect, so it can be retried.
    async fn abandon_idempotent(&self, key: &str, fingerprint: &Digest) -> Result<(), StoreError>;

    /// Reserves a nonce in a scope until `expires_at`.
    async fn reserve_nonce(
        &self,
        scope: &str,
        nonce: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<NonceOutcome, StoreError>;

    /// A versioned record.
    async fn load_record(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<VersionedRecord>, StoreError>;

    /// Every record of one kind, by id (ascending).
    async fn list_records(&self, kind: &str) -> Result<Vec<(String, VersionedRecord)>, StoreError>;

    /// Writes a record if its current version is `expected` (`None`: it must not exist yet).
    async fn compare_and_set(
        &self,
        kind: &str,
        id: &str,
        expected: Option<u64>,
        body: Vec<u8>,
    ) -> Result<CasOutcome, StoreError>;

    /// Number of entries in the audit log (entries are indexed `0..size`, without gaps).
    async fn log_size(&self) -> Result<u64, StoreError>;

    /// The bytes of one log entry.
    async fn log_entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError>;

    /// Root hash of the log's first `tree_size` entries.
    async fn log_root(&self, tree_size: u64) -> Result<Hash, StoreError>;

    /// RFC 9162 inclusion proof of entry `index` in the log's first `tree_size` entries.
    async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError>;

    /// RFC 9162 consistency proof between two sizes of the log.
    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, StoreError>;

    /// Signs a C2SP checkpoint of the whole log with the gateway key.
    async fn checkpoint(&self) -> Result<SignedCheckpoint, StoreError>;
}
