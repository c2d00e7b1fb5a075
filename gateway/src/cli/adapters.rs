//! `trustos adapters conformance [--json] [--adapter NAME]…`: runs the adapter conformance suite
//! (`trustos_adapters::conformance`) against every payment rail and prints the matrix, adapter ×
//! check. Exit 0 when every check of every adapter passed, 1 otherwise, 2 on a setup error.
//!
//! Each rail runs against its emulator in this process (Circle's W3S API; an x402 facilitator
//! and its chain), with the gateway's own redb store as the payment ledger. The
//! kill-and-restart check pays in a separate `trustos adapters conformance-worker` process that
//! opens the store, pays, and is killed with `SIGKILL` at a random moment (the emulators hold
//! their answers a random while after money moved, so most kills land between the rail call and
//! the store write); the store is then reopened as a restarted gateway would, and reconciliation
//! must find every payment by its idempotency key. Decisions are signed with the store's key,
//! and the receipt check commits each completed payment's decision and receipt into the store's
//! Merkle log as the daemon does ([`StoreGate`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::AsyncBufReadExt as _;
use trustos_adapters::AdapterError;
use trustos_adapters::conformance::circle::{CircleRail, CircleUnderTest};
use trustos_adapters::conformance::x402::{X402Rail, X402UnderTest};
use trustos_adapters::conformance::{
    AdapterReport, CHECKS, Crasher, Gate, KernelGate, PaymentCase, RailSpec, RailUnderTest, Run,
    pay_once, run_suite,
};
use trustos_adapters::ledger::PaymentLedger;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::objects::{
    ExecutionStatus, PolicyDecision, Receipt, ReceiptType, SafeIndex, Settlement,
};
use trustos_kernel::verify::Verifier;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::store::redb_store::RedbStore;
use crate::store::{BudgetSettlement, DecisionCommit, EntryBuilder, ReceiptCommit, Store as _};

/// The rails the suite knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AdapterName {
    /// x402 `exact` on EVM, signed with a local key.
    X402,
    /// Circle developer-controlled wallet transfers.
    Circle,
}

impl AdapterName {
    fn as_str(self) -> &'static str {
        match self {
            Self::X402 => "x402",
            Self::Circle => "circle",
        }
    }
}

/// What `trustos adapters conformance` was asked.
#[derive(Debug)]
pub struct ConformanceArgs {
    /// Print JSON.
    pub json: bool,
    /// Only these adapters (empty: all).
    pub adapters: Vec<AdapterName>,
}

/// How long a worker may take to open its store and say it is ready.
const WORKER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The seed of the conformance stores' signing key (they hold only emulated payments).
const STORE_KEY_SEED: [u8; 32] = [0x3c; 32];
/// The store's log origin.
const STORE_ORIGIN: &str = "conformance.trustos.dev";

/// The whole matrix, as `--json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Matrix {
    passed: bool,
    millis: u64,
    kills: &'static str,
    checks: Vec<CheckTitle>,
    adapters: Vec<AdapterReport>,
}

#[derive(Serialize)]
struct CheckTitle {
    id: &'static str,
    title: &'static str,
}

/// Runs the suite; the exit code.
pub fn run_conformance(args: ConformanceArgs) -> u8 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return setup_error(&err),
    };
    let scratch = match Scratch::new() {
        Ok(scratch) => scratch,
        Err(err) => return setup_error(&err),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return setup_error(&format!("cannot find the trustos executable: {err}")),
    };
    let wanted = if args.adapters.is_empty() {
        vec![AdapterName::X402, AdapterName::Circle]
    } else {
        args.adapters
    };
    let started = Instant::now();
    let mut reports = Vec::new();
    for adapter in wanted {
        let dir = scratch.path.join(adapter.as_str());
        let report = match adapter {
            AdapterName::X402 => match X402UnderTest::start() {
                Ok(rail) => runtime.block_on(run_one(Arc::new(rail), &dir, &exe)),
                Err(err) => Err(err.to_string()),
            },
            AdapterName::Circle => match CircleUnderTest::start() {
                Ok(rail) => runtime.block_on(run_one(Arc::new(rail), &dir, &exe)),
                Err(err) => Err(err.to_string()),
            },
        };
        match report {
            Ok(report) => reports.push(report),
            Err(err) => return setup_error(&format!("{}: {err}", adapter.as_str())),
        }
    }
    let matrix = Matrix {
        passed: reports.iter().all(AdapterReport::passed),
        millis: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        kills: "SIGKILL of a worker process",
        checks: CHECKS
            .iter()
            .map(|(id, title)| CheckTitle { id, title })
            .collect(),
        adapters: reports,
    };
    if args.json {
        match serde_json::to_string_pretty(&matrix) {
            Ok(text) => out!("{text}"),
            Err(err) => return setup_error(&err),
        }
    } else {
        print_matrix(&matrix);
    }
    if matrix.passed { EXIT_OK } else { EXIT_INVALID }
}

/// One adapter's column: a fresh store for the ledger, another for the killed workers.
async fn run_one<R: RailUnderTest>(
    rail: Arc<R>,
    dir: &Path,
    exe: &Path,
) -> Result<AdapterReport, String> {
    std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let ledger = open_store(&dir.join("ledger.redb")).await?;
    let crasher = ProcessCrasher {
        dir: dir.join("crash"),
        exe: exe.to_owned(),
        open: tokio::sync::Mutex::new(None),
    };
    std::fs::create_dir_all(&crasher.dir)
        .map_err(|err| format!("{}: {err}", crasher.dir.display()))?;
    let gate: Arc<dyn Gate> = Arc::new(StoreGate::new(store_key(), Arc::clone(&ledger)));
    let report = run_suite(
        rail,
        gate,
        Arc::clone(&ledger) as Arc<dyn PaymentLedger>,
        &crasher,
    )
    .await;
    crasher.close().await;
    if let Ok(store) = Arc::try_unwrap(ledger) {
        let _ = store.close().await;
    }
    Ok(report)
}

/// The conformance stores' signing key (they hold only emulated payments).
fn store_key() -> Arc<GatewayKey> {
    Arc::new(GatewayKey::from_seed(&STORE_KEY_SEED))
}

async fn open_store(path: &Path) -> Result<Arc<RedbStore>, String> {
    RedbStore::open_async(path.to_owned(), store_key(), STORE_ORIGIN.to_owned())
        .await
        .map(Arc::new)
        .map_err(|err| format!("store {}: {err}", path.display()))
}

/// The suite's [`Gate`] over the gateway's own store: decisions signed with the store's key,
/// and each completed payment's receipt committed the way the daemon commits one — the decision
/// (consumed) into the audit log, then the receipt appended to the Merkle log with its index —
/// so the receipt check exercises the gateway's real receipt path.
struct StoreGate {
    key: Arc<GatewayKey>,
    verifier: Verifier,
    store: Arc<RedbStore>,
    signed: std::sync::Mutex<HashMap<String, (PolicyDecision, String)>>,
}

impl StoreGate {
    fn new(key: Arc<GatewayKey>, store: Arc<RedbStore>) -> Self {
        let verifier = Verifier::new(TrustedKeys::new([key.public().clone()]));
        Self {
            key,
            verifier,
            store,
            signed: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait::async_trait]
impl Gate for StoreGate {
    fn sign_decision(&self, decision: &PolicyDecision) -> Result<String, AdapterError> {
        let signed = jws::sign(&self.key, TYP_DECISION, decision)
            .map_err(|err| AdapterError::Internal(err.to_string()))?;
        self.signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(
                decision.decision_id.clone(),
                (decision.clone(), signed.clone()),
            );
        Ok(signed)
    }

    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    async fn receipt(
        &self,
        case: &PaymentCase,
        settlement: Settlement,
    ) -> Result<String, AdapterError> {
        let internal = |err: &dyn std::fmt::Display| AdapterError::Internal(err.to_string());
        let (decision, signed) = self
            .signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&case.decision_id)
            .cloned()
            .ok_or_else(|| internal(&format!("no decision {}", case.decision_id)))?;
        let fingerprint = decision.fingerprint;
        let started_at = decision.issued_at;
        self.store
            .commit_decision(DecisionCommit {
                decision,
                signed,
                charges: Vec::new(),
                consume: true,
                awaiting: None,
            })
            .await
            .map_err(|err| internal(&err))?;
        let key = Arc::clone(&self.key);
        let decision_id = case.decision_id.clone();
        let receipt_id = trustos_adapters::conformance::fresh_id("rcpt_conf")?;
        let completed_at = trustos_adapters::conformance::now()?;
        let build: EntryBuilder = Box::new(move |index| {
            let receipt = Receipt {
                object_type: ReceiptType::V1,
                receipt_id,
                decision_id,
                fingerprint,
                status: ExecutionStatus::Completed,
                result_digest: None,
                settlement: Some(settlement),
                started_at,
                completed_at,
                log_index: SafeIndex::new(index).map_err(|err| err.to_string())?,
                composes: Vec::new(),
            };
            jws::sign(&key, TYP_RECEIPT, &receipt)
                .map(String::into_bytes)
                .map_err(|err| err.to_string())
        });
        let (_, bytes) = self
            .store
            .commit_receipt(ReceiptCommit {
                decision_id: case.decision_id.clone(),
                settlement: BudgetSettlement::Capture,
                build,
                outcome_open: false,
            })
            .await
            .map_err(|err| internal(&err))?;
        String::from_utf8(bytes).map_err(|err| internal(&err))
    }
}

/// Kills `trustos adapters conformance-worker` processes; the store they share lives in `dir`.
struct ProcessCrasher {
    dir: PathBuf,
    exe: PathBuf,
    /// The store as the last restart opened it (closed before the next worker starts).
    open: tokio::sync::Mutex<Option<Arc<RedbStore>>>,
}

impl ProcessCrasher {
    fn store_path(&self) -> PathBuf {
        self.dir.join("store.redb")
    }

    /// Closes the store this process holds, so that a worker can open it.
    async fn close(&self) {
        if let Some(store) = self.open.lock().await.take() {
            match Arc::try_unwrap(store) {
                Ok(store) => {
                    let _ = store.close().await;
                }
                Err(shared) => {
                    // Still borrowed by the suite: wait for its writer to stop on drop.
                    drop(shared);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl Crasher for ProcessCrasher {
    async fn run_killed(
        &self,
        spec: &RailSpec,
        case: &PaymentCase,
        kill_after: Duration,
    ) -> Result<Run, String> {
        self.close().await;
        let spec_path = self.dir.join("rail.json");
        let spec_json = serde_json::to_vec(spec).map_err(|err| err.to_string())?;
        write_owner_only(&spec_path, &spec_json)
            .map_err(|err| format!("{}: {err}", spec_path.display()))?;
        let case_json = serde_json::to_string(case).map_err(|err| err.to_string())?;
        let mut child = tokio::process::Command::new(&self.exe)
            .args(["adapters", "conformance-worker", "--dir"])
            .arg(&self.dir)
            .args(["--case", &case_json])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|err| format!("cannot start a worker: {err}"))?;
        let stdout = child.stdout.take().ok_or("worker without stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        match tokio::time::timeout(WORKER_READY_TIMEOUT, lines.next_line()).await {
            Ok(Ok(Some(line))) if line == "ready" => {}
            Ok(other) => {
                let _ = child.kill().await;
                return Err(format!("the worker did not start: {other:?}"));
            }
            Err(_) => {
                let _ = child.kill().await;
                return Err("the worker did not get ready in time".to_owned());
            }
        }
        let started = Instant::now();
        let killed = tokio::select! {
            status = child.wait() => {
                status.map_err(|err| format!("worker: {err}"))?;
                false
            }
            () = tokio::time::sleep(kill_after) => {
                // SIGKILL: no destructor, no flush, no goodbye.
                child.kill().await.map_err(|err| format!("cannot kill the worker: {err}"))?;
                true
            }
        };
        Ok(Run {
            killed,
            ran: started.elapsed(),
        })
    }

    async fn restart(&self) -> Result<Arc<dyn PaymentLedger>, String> {
        let mut open = self.open.lock().await;
        if let Some(store) = open.as_ref() {
            return Ok(Arc::clone(store) as Arc<dyn PaymentLedger>);
        }
        let store = open_store(&self.store_path()).await?;
        *open = Some(Arc::clone(&store));
        Ok(store as Arc<dyn PaymentLedger>)
    }

    fn how(&self) -> &'static str {
        "SIGKILL of a worker process, store reopened"
    }
}

/// `trustos adapters conformance-worker --dir DIR --case JSON` (hidden): opens the store in
/// `DIR`, says `ready`, and pays the case through the rail `DIR/rail.json` describes. The
/// parent kills it when it likes.
pub fn run_worker(dir: &Path, case_json: &str) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return setup_error(&err),
    };
    match runtime.block_on(work(dir, case_json)) {
        Ok(()) => EXIT_OK,
        Err(err) => {
            eprintln!("trustos adapters conformance-worker: {err}");
            EXIT_INVALID
        }
    }
}

async fn work(dir: &Path, case_json: &str) -> Result<(), String> {
    let case: PaymentCase = serde_json::from_str(case_json).map_err(|err| err.to_string())?;
    let spec_path = dir.join("rail.json");
    let spec: RailSpec = serde_json::from_slice(
        &std::fs::read(&spec_path).map_err(|err| format!("{}: {err}", spec_path.display()))?,
    )
    .map_err(|err| err.to_string())?;
    let store = open_store(&dir.join("store.redb")).await?;
    let gate = KernelGate::new();
    out!("ready");
    let paid = match &spec {
        RailSpec::X402 { .. } => {
            let rail = X402Rail::connect(&spec).map_err(|err| err.to_string())?;
            pay_once(&rail, &gate, &*store, &case).await
        }
        RailSpec::Circle { .. } => {
            let rail = CircleRail::connect(&spec).map_err(|err| err.to_string())?;
            pay_once(&rail, &gate, &*store, &case).await
        }
    };
    if let Ok(store) = Arc::try_unwrap(store) {
        let _ = store.close().await;
    }
    paid.map(drop).map_err(|err| err.to_string())
}

fn print_matrix(matrix: &Matrix) {
    let names: Vec<&str> = matrix
        .adapters
        .iter()
        .map(|report| report.adapter)
        .collect();
    let width = CHECKS.iter().map(|(id, _)| id.len()).max().unwrap_or(0);
    out!("adapter conformance — kills: {}", matrix.kills);
    out!("");
    out!(
        "{:width$}  {}",
        "check",
        names
            .iter()
            .map(|name| format!("{name:8}"))
            .collect::<String>()
    );
    for (index, (id, _)) in CHECKS.iter().enumerate() {
        let cells: String = matrix
            .adapters
            .iter()
            .map(|report| {
                let cell = match report.checks.get(index) {
                    Some(check) if check.passed => "pass",
                    Some(_) => "FAIL",
                    None => "-",
                };
                format!("{cell:8}")
            })
            .collect();
        out!("{id:width$}  {cells}");
    }
    out!("");
    for report in &matrix.adapters {
        for check in &report.checks {
            let verdict = if check.passed { "pass" } else { "FAIL" };
            out!(
                "{}/{} {verdict} ({} ms): {}",
                report.adapter,
                check.check,
                check.millis,
                check.detail
            );
        }
    }
    out!("");
    let verdict = if matrix.passed {
        "every check passed"
    } else {
        "some checks FAILED"
    };
    out!("{verdict} in {:.1} s", matrix.millis as f64 / 1000.0);
}

/// Writes `bytes` to `path`, readable by the owner only (it holds test credentials).
fn write_owner_only(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

fn setup_error(err: &dyn std::fmt::Display) -> u8 {
    eprintln!("trustos adapters conformance: {err}");
    EXIT_USAGE
}

/// A scratch directory for the suite's stores, removed at the end.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(
            trustos_adapters::conformance::fresh_id("trustos-conformance")
                .map_err(|err| err.to_string())?,
        );
        std::fs::create_dir_all(&path).map_err(|err| format!("{}: {err}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
