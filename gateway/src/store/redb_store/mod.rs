//! The embedded default [`Store`]: one redb file, written by a group-commit writer thread.
//!
//! - Writes go through [`writer`]: one OS thread, many operations per transaction, one fsync per
//!   transaction, answers only after the commit returned.
//! - Reads (log entries, proofs, budget usage, records) run in redb read transactions on tokio's
//!   blocking pool, never on the async worker threads, and see only committed state.
//! - Opening checks what the file is before using it: another process holding it, a file that is
//!   not a Trust OS database, a newer schema, or a log that does not add up are each refused with
//!   an error naming the file and the remedy. Nothing is ever reset or re-initialized.

mod tables;
mod writer;

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, StorageBackend};
use tokio::sync::{mpsc, oneshot};
use trustos_kernel::canonical::Digest;
use trustos_kernel::checkpoint::Checkpoint;
use trustos_kernel::keys::GatewayKey;
use trustos_kernel::merkle::{self, Hash, ProofError};
use trustos_kernel::timestamp::Timestamp;

use self::tables::*;
use self::writer::{Answer, Job, Op};
use super::{
    BudgetUsage, BudgetWindow, CasOutcome, CommitError, ConsumeOutcome, DecisionCommit,
    IdempotencyBegin, LateReceiptCommit, NonceOutcome, ReceiptCommit, SettleOutcome,
    SignedCheckpoint, Store, StoreError, VersionedRecord,
};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "trustos.redb";

/// Operations that may wait for the writer before callers feel back-pressure.
const QUEUE_DEPTH: usize = 16 * 1024;

/// A failure inside a transaction, before it is given a path and a remedy.
#[derive(Debug)]
pub enum Internal {
    /// redb failed.
    Redb(redb::Error),
    /// Stored data does not decode or does not add up.
    Corrupt(String),
    /// Applying a batch panicked; its transaction was aborted.
    Panicked,
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for Internal {
            fn from(err: $error) -> Self {
                Self::Redb(err.into())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError
);

impl From<NodeReadError> for Internal {
    fn from(err: NodeReadError) -> Self {
        match err {
            NodeReadError::Storage(err) => err.into(),
            missing @ NodeReadError::Missing { .. } => Self::Corrupt(missing.to_string()),
        }
    }
}

/// Gives an internal failure the database path and a remedy.
pub fn map_error(path: &Path, err: Internal) -> StoreError {
    let path = path.to_owned();
    match err {
        Internal::Corrupt(detail) => StoreError::Corrupt { path, detail },
        Internal::Panicked => StoreError::Io {
            path,
            detail: "an internal error aborted the transaction".into(),
        },
        Internal::Redb(redb::Error::DatabaseAlreadyOpen) => StoreError::Locked { path },
        Internal::Redb(redb::Error::Corrupted(detail)) => StoreError::Corrupt { path, detail },
        Internal::Redb(redb::Error::Io(io)) if io.raw_os_error() == Some(28) => {
            StoreError::DiskFull { path }
        }
        Internal::Redb(other) => StoreError::Io {
            path,
            detail: other.to_string(),
        },
    }
}

/// Reads the version prefix of a stored record.
fn record_version(stored: &[u8]) -> Result<u64, Internal> {
    let prefix: [u8; 8] = stored
        .get(..8)
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| Internal::Corrupt("record shorter than its version".into()))?;
    Ok(u64::from_be_bytes(prefix))
}

struct Shared {
    db: Arc<Database>,
    path: PathBuf,
    origin: String,
    key: Arc<GatewayKey>,
}

/// The redb-backed [`Store`].
pub struct RedbStore {
    shared: Arc<Shared>,
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<thread::JoinHandle<()>>>,
}

impl RedbStore {
    /// Opens (or creates) the database at `path`. `origin` names the log in its checkpoints; it
    /// is recorded when the database is created and read back afterwards. `key` signs
    /// checkpoints. Blocking: call it before starting async work or from a blocking task.
    pub fn open(path: &Path, key: Arc<GatewayKey>, origin: &str) -> Result<Self, StoreError> {
        let db = open_file(path)?;
        Self::start(db, path, key, origin)
    }

    /// [`open`](Self::open) on tokio's blocking pool, for callers already inside a runtime.
    pub async fn open_async(
        path: PathBuf,
        key: Arc<GatewayKey>,
        origin: String,
    ) -> Result<Self, StoreError> {
        tokio::task::spawn_blocking(move || Self::open(&path, key, &origin))
            .await
            .map_err(|err| StoreError::Unavailable(format!("open task failed: {err}")))?
    }

    /// As [`open`](Self::open), on a caller-supplied storage backend (used to inject failing
    /// disks in tests). `path` only labels errors.
    pub fn open_with_backend(
        backend: impl StorageBackend,
        path: &Path,
        key: Arc<GatewayKey>,
        origin: &str,
    ) -> Result<Self, StoreError> {
        let db = guard_open(path, || builder().create_with_backend(backend))?;
        Self::start(db, path, key, origin)
    }

    fn start(
        db: Database,
        path: &Path,
        key: Arc<GatewayKey>,
        origin: &str,
    ) -> Result<Self, StoreError> {
        let origin = initialize(&db, path, origin)?;
        let db = Arc::new(db);
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let writer_db = Arc::clone(&db);
        let writer_path = path.to_owned();
        let writer = thread::Builder::new()
            .name("trustos-store-writer".into())
            .spawn(move || writer::run(writer_db, writer_path, receiver))
            .map_err(|err| StoreError::Io {
                path: path.to_owned(),
                detail: format!("cannot start the writer thread: {err}"),
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                db,
                path: path.to_owned(),
                origin,
                key,
            }),
            jobs: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The log's origin (checkpoint first line and signing key name).
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// Stops accepting operations, lets the writer finish what it has, and releases the file so
    /// it can be opened again. Operations already answered stay durable.
    pub async fn close(self) -> Result<(), StoreError> {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut writer| writer.take());
        if let Some(writer) = writer {
            tokio::task::spawn_blocking(move || writer.join())
                .await
                .map_err(|err| StoreError::Unavailable(err.to_string()))?
                .map_err(|_| StoreError::Unavailable("the writer thread panicked".into()))?;
        }
        Ok(())
    }

    async fn submit(&self, op: Op) -> Result<Result<Answer, CommitError>, StoreError> {
        let sender = self
            .jobs
            .lock()
            .ok()
            .and_then(|jobs| jobs.clone())
            .ok_or_else(|| StoreError::Unavailable("closed".into()))?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Job { op, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer stopped before answering".into()))?
    }

    /// Submits an operation whose refusals are plain store errors.
    async fn write(&self, op: Op) -> Result<Answer, StoreError> {
        match self.submit(op).await? {
            Ok(answer) => Ok(answer),
            Err(CommitError::Store(err)) => Err(err),
            Err(other) => Err(StoreError::Invalid(other.to_string())),
        }
    }

    /// Runs a read transaction on the blocking pool.
    async fn read<T: Send + 'static>(
        &self,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, Internal> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let txn = shared
                .db
                .begin_read()
                .map_err(|err| map_error(&shared.path, err.into()))?;
            read(&txn).map_err(|err| map_error(&shared.path, err))
        })
        .await
        .map_err(|err| StoreError::Unavailable(format!("read task failed: {err}")))?
    }
}

fn unexpected(answer: Answer) -> StoreError {
    let kind = match answer {
        Answer::Index(_) => "index",
        Answer::Consume(_) => "consume",
        Answer::Receipt(..) => "receipt",
        Answer::LateReceipt(_) => "late receipt",
        Answer::Settle(_) => "settle",
        Answer::Count(_) => "count",
        Answer::Begin(_) => "begin",
        Answer::Done => "done",
        Answer::Nonce(_) => "nonce",
        Answer::Cas(_) => "cas",
    };
    StoreError::Unavailable(format!("writer answered with an unexpected {kind}"))
}

/// Runs a redb open, turning a panic inside redb (its debug builds assert on some corruptions)
/// into a corruption error instead of taking the process down.
fn guard_open(
    path: &Path,
    open: impl FnOnce() -> Result<Database, redb::DatabaseError>,
) -> Result<Database, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::UpgradeRequired(version))) => Err(StoreError::Foreign {
            path: path.to_owned(),
            detail: format!("redb file format {version} needs a manual upgrade"),
        }),
        Ok(Err(err)) if err.to_string().contains("magic number") => Err(StoreError::Foreign {
            path: path.to_owned(),
            detail: "the file is not a redb database".into(),
        }),
        Ok(Err(err)) => Err(map_error(path, err.into())),
        Err(_) => Err(StoreError::Corrupt {
            path: path.to_owned(),
            detail: "the database engine failed while reading the file".into(),
        }),
    }
}

fn open_file(path: &Path) -> Result<Database, StoreError> {
    if path.exists() {
        if path.metadata().map(|meta| meta.len()).unwrap_or(0) == 0 {
            return Err(StoreError::Foreign {
                path: path.to_owned(),
                detail: "the file is empty".into(),
            });
        }
        return guard_open(path, || builder().open(path));
    }
    // Financial state is private to the gateway's user: the directory 0700, the file 0600.
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|err| StoreError::Io {
                path: path.to_owned(),
                detail: format!("cannot create {}: {err}", parent.display()),
            })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|err| StoreError::Io {
            path: path.to_owned(),
            detail: format!("cannot create the database file: {err}"),
        })?;
    // `create` initializes an empty file in place.
    guard_open(path, || builder().create(path))
}

/// redb's page cache bound. Its default (1 GiB) keeps every page the daemon ever writes in
/// memory, so the daemon's RSS grows with the log; the hot set (budget windows, recent decisions,
/// the log's right edge) is a few MiB.
pub const CACHE_BYTES: usize = 8 * 1024 * 1024;

fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder
}

/// Checks (or, for a new file, writes) the format marker, schema version and origin, and that the
/// log's stored nodes add up to a root. Returns the recorded origin.
fn initialize(db: &Database, path: &Path, origin: &str) -> Result<String, StoreError> {
    let fail = |err: Internal| map_error(path, err);
    let read = db.begin_read().map_err(|err| fail(err.into()))?;
    let existing = match read.open_table(META) {
        Ok(meta) => Some(read_meta(&meta, path)?),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(err) => return Err(fail(err.into())),
    };
    drop(read);
    match existing {
        Some((recorded_origin, log_size)) => {
            check_log(db, log_size).map_err(fail)?;
            Ok(recorded_origin)
        }
        None => {
            let has_tables = {
                let read = db.begin_read().map_err(|err| fail(err.into()))?;
                read.list_tables()
                    .map_err(|err| fail(err.into()))?
                    .next()
                    .is_some()
            };
            if has_tables {
                return Err(StoreError::Foreign {
                    path: path.to_owned(),
                    detail: "a redb database without Trust OS metadata".into(),
                });
            }
            if origin.is_empty() || origin.contains(char::is_whitespace) || origin.contains('+') {
                return Err(StoreError::Invalid(format!(
                    "log origin {origin:?} must be non-empty, without whitespace or '+'"
                )));
            }
            let txn = db.begin_write().map_err(|err| fail(err.into()))?;
            {
                let mut meta = txn.open_table(META).map_err(|err| fail(err.into()))?;
                let schema = SCHEMA_VERSION.to_be_bytes();
                for (key, value) in [
                    ("format", FORMAT),
                    ("schema_version", schema.as_slice()),
                    ("origin", origin.as_bytes()),
                ] {
                    meta.insert(key, value).map_err(|err| fail(err.into()))?;
                }
            }
            txn.commit().map_err(|err| fail(err.into()))?;
            Ok(origin.to_owned())
        }
    }
}

fn read_meta(
    meta: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    path: &Path,
) -> Result<(String, u64), StoreError> {
    let fail = |err: Internal| map_error(path, err);
    let get = |key: &str| -> Result<Option<Vec<u8>>, StoreError> {
        Ok(meta
            .get(key)
            .map_err(|err| fail(err.into()))?
            .map(|value| value.value().to_vec()))
    };
    if get("format")?.as_deref() != Some(FORMAT) {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
            detail: "its metadata does not name the trustos-store format".into(),
        });
    }
    let schema = get("schema_version")?
        .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            detail: "schema_version is missing or malformed".into(),
        })?;
    if schema > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found: schema,
            supported: SCHEMA_VERSION,
        });
    }
    let origin = get("origin")?
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            detail: "origin is missing".into(),
        })?;
    let log_size = writer::read_log_size(meta).map_err(fail)?;
    Ok((origin, log_size))
}

/// The log adds up: its last entry exists, nothing lies beyond it, and the stored nodes give a
/// root (every node the root needs is present).
fn check_log(db: &Database, log_size: u64) -> Result<(), Internal> {
    let read = db.begin_read()?;
    let entries = match read.open_table(LOG_ENTRIES) {
        Ok(entries) => entries,
        Err(redb::TableError::TableDoesNotExist(_)) if log_size == 0 => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    let last = entries.last()?.map(|(key, _)| key.value());
    let expected_last = log_size.checked_sub(1);
    if last != expected_last {
        return Err(Internal::Corrupt(format!(
            "log size is {log_size} but the last entry is {last:?}"
        )));
    }
    if log_size > 0 {
        let nodes = read.open_table(LOG_NODES)?;
        merkle::root(&NodeTable(&nodes), log_size)?;
    }
    Ok(())
}

fn proof_error(err: ProofError<NodeReadError>) -> Internal {
    match err {
        ProofError::Invalid(err) => Internal::Corrupt(format!("invalid proof request: {err}")),
        ProofError::Source(err) => err.into(),
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn commit_decision(&self, commit: DecisionCommit) -> Result<u64, CommitError> {
        match self.submit(Op::CommitDecision(Box::new(commit))).await?? {
            Answer::Index(index) => Ok(index),
            other => Err(unexpected(other).into()),
        }
    }

    async fn consume_decision(
        &self,
        decision_id: &str,
        fingerprint: &Digest,
        now: Timestamp,
    ) -> Result<ConsumeOutcome, StoreError> {
        let op = Op::Consume {
            decision_id: decision_id.to_owned(),
            fingerprint: *fingerprint,
            now,
        };
        match self.write(op).await? {
            Answer::Consume(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn commit_receipt(&self, commit: ReceiptCommit) -> Result<(u64, Vec<u8>), StoreError> {
        match self.write(Op::CommitReceipt(commit)).await? {
            Answer::Receipt(index, bytes) => Ok((index, bytes)),
            other => Err(unexpected(other)),
        }
    }

    async fn commit_late_receipt(
        &self,
        commit: LateReceiptCommit,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        match self.write(Op::CommitLateReceipt(commit)).await? {
            Answer::LateReceipt(receipt) => Ok(receipt),
            other => Err(unexpected(other)),
        }
    }

    async fn capture(&self, decision_id: &str) -> Result<SettleOutcome, StoreError> {
        let op = Op::Settle {
            decision_id: decision_id.to_owned(),
            capture: true,
        };
        match self.write(op).await? {
            Answer::Settle(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn release(&self, decision_id: &str) -> Result<SettleOutcome, StoreError> {
        let op = Op::Settle {
            decision_id: decision_id.to_owned(),
            capture: false,
        };
        match self.write(op).await? {
            Answer::Settle(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn release_expired(&self, now: Timestamp) -> Result<u64, StoreError> {
        match self.write(Op::ReleaseExpired { now }).await? {
            Answer::Count(count) => Ok(count),
            other => Err(unexpected(other)),
        }
    }

    async fn budget_usage(
        &self,
        budget_key: &str,
        window: BudgetWindow,
        at: Timestamp,
    ) -> Result<BudgetUsage, StoreError> {
        let budget = budget_id(budget_key, &window.label());
        let (start, end) = window.bounds(at);
        self.read(move |txn| {
            let totals = if window.is_fixed() {
                match txn.open_table(BUDGET_TOTALS) {
                    Ok(table) => fixed_window_totals(&table, &budget, start.unix_millis())?,
                    Err(redb::TableError::TableDoesNotExist(_)) => Totals::default(),
                    Err(err) => return Err(err.into()),
                }
            } else {
                match txn.open_table(BUDGET_CHARGES) {
                    Ok(table) => rolling_window_totals(
                        &table,
                        &budget,
                        start.unix_millis(),
                        end.unix_millis(),
                    )?,
                    Err(redb::TableError::TableDoesNotExist(_)) => Totals::default(),
                    Err(err) => return Err(err.into()),
                }
            };
            Ok(BudgetUsage {
                reserved: totals.reserved,
                captured: totals.captured,
            })
        })
        .await
    }

    async fn begin_idempotent(
        &self,
        key: &str,
        fingerprint: &Digest,
        ttl_millis: u64,
        now: Timestamp,
    ) -> Result<IdempotencyBegin, StoreError> {
        let op = Op::BeginIdempotent {
            key: key.to_owned(),
            fingerprint: *fingerprint,
            ttl_millis,
            now,
        };
        match self.write(op).await? {
            Answer::Begin(begin) => Ok(begin),
            other => Err(unexpected(other)),
        }
    }

    async fn complete_idempotent(
        &self,
        key: &str,
        fingerprint: &Digest,
        response: Vec<u8>,
    ) -> Result<(), StoreError> {
        let op = Op::CompleteIdempotent {
            key: key.to_owned(),
            fingerprint: *fingerprint,
            response,
        };
        match self.write(op).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn abandon_idempotent(&self, key: &str, fingerprint: &Digest) -> Result<(), StoreError> {
        let op = Op::AbandonIdempotent {
            key: key.to_owned(),
            fingerprint: *fingerprint,
        };
        match self.write(op).await? {
            Answer::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    async fn reserve_nonce(
        &self,
        scope: &str,
        nonce: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<NonceOutcome, StoreError> {
        let op = Op::ReserveNonce {
            scope: scope.to_owned(),
            nonce: nonce.to_owned(),
            expires_at,
            now,
        };
        match self.write(op).await? {
            Answer::Nonce(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn load_record(
        &self,
        kind: &str,
        id: &str,
    ) -> Result<Option<VersionedRecord>, StoreError> {
        let (kind, id) = (kind.to_owned(), id.to_owned());
        self.read(move |txn| {
            let records = match txn.open_table(RECORDS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            let Some(stored) = records.get((kind.as_str(), id.as_str()))? else {
                return Ok(None);
            };
            let stored = stored.value();
            Ok(Some(VersionedRecord {
                version: record_version(stored)?,
                body: stored[8..].to_vec(),
            }))
        })
        .await
    }

    async fn list_records(&self, kind: &str) -> Result<Vec<(String, VersionedRecord)>, StoreError> {
        let kind = kind.to_owned();
        self.read(move |txn| {
            let records = match txn.open_table(RECORDS) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(err) => return Err(err.into()),
            };
            let mut found = Vec::new();
            for entry in records.range((kind.as_str(), "")..)? {
                let (key, stored) = entry?;
                let (entry_kind, id) = key.value();
                if entry_kind != kind {
                    break;
                }
                let stored = stored.value();
                found.push((
                    id.to_owned(),
                    VersionedRecord {
                        version: record_version(stored)?,
                        body: stored[8..].to_vec(),
                    },
                ));
            }
            Ok(found)
        })
        .await
    }

    async fn awaiting_outcomes(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.read(move |txn| {
            let awaiting = match txn.open_table(AWAITING_OUTCOMES) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(err) => return Err(err.into()),
            };
            let mut found = Vec::new();
            for entry in awaiting.iter()? {
                let (decision_id, rail) = entry?;
                found.push((decision_id.value().to_owned(), rail.value().to_owned()));
            }
            Ok(found)
        })
        .await
    }

    async fn compare_and_set(
        &self,
        kind: &str,
        id: &str,
        expected: Option<u64>,
        body: Vec<u8>,
    ) -> Result<CasOutcome, StoreError> {
        let op = Op::CompareAndSet {
            kind: kind.to_owned(),
            id: id.to_owned(),
            expected,
            body,
        };
        match self.write(op).await? {
            Answer::Cas(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    async fn log_size(&self) -> Result<u64, StoreError> {
        self.read(|txn| match txn.open_table(META) {
            Ok(meta) => writer::read_log_size(&meta),
            Err(err) => Err(err.into()),
        })
        .await
    }

    async fn log_entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(move |txn| match txn.open_table(LOG_ENTRIES) {
            Ok(entries) => Ok(entries.get(index)?.map(|bytes| bytes.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(err) => Err(err.into()),
        })
        .await
    }

    async fn log_root(&self, tree_size: u64) -> Result<Hash, StoreError> {
        let size = self.log_size().await?;
        if tree_size > size {
            return Err(StoreError::Invalid(format!(
                "tree size {tree_size} is beyond the log's {size} entries"
            )));
        }
        self.read(move |txn| {
            if tree_size == 0 {
                return Ok(merkle::empty_root());
            }
            let nodes = txn.open_table(LOG_NODES)?;
            Ok(merkle::root(&NodeTable(&nodes), tree_size)?)
        })
        .await
    }

    async fn inclusion_proof(&self, index: u64, tree_size: u64) -> Result<Vec<Hash>, StoreError> {
        let size = self.log_size().await?;
        if index >= tree_size || tree_size > size {
            return Err(StoreError::Invalid(format!(
                "no entry {index} in a tree of {tree_size} (the log has {size} entries)"
            )));
        }
        self.read(move |txn| {
            let nodes = txn.open_table(LOG_NODES)?;
            merkle::inclusion_proof(&NodeTable(&nodes), index, tree_size).map_err(proof_error)
        })
        .await
    }

    async fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let size = self.log_size().await?;
        if old_size == 0 || old_size > new_size || new_size > size {
            return Err(StoreError::Invalid(format!(
                "no consistency proof from {old_size} to {new_size} (the log has {size} entries)"
            )));
        }
        self.read(move |txn| {
            let nodes = txn.open_table(LOG_NODES)?;
            merkle::consistency_proof(&NodeTable(&nodes), old_size, new_size).map_err(proof_error)
        })
        .await
    }

    async fn checkpoint(&self) -> Result<SignedCheckpoint, StoreError> {
        let (size, root) = self
            .read(|txn| {
                let size = writer::read_log_size(&txn.open_table(META)?)?;
                if size == 0 {
                    return Ok((0, merkle::empty_root()));
                }
                let nodes = txn.open_table(LOG_NODES)?;
                Ok((size, merkle::root(&NodeTable(&nodes), size)?))
            })
            .await?;
        let checkpoint = Checkpoint::new(self.shared.origin.clone(), size, root);
        let note = checkpoint
            .sign(&self.shared.origin, self.shared.key.signing_key())
            .map_err(|err| StoreError::Invalid(format!("cannot sign the checkpoint: {err}")))?;
        Ok(SignedCheckpoint { checkpoint, note })
    }
}
