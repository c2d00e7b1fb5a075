//! The adapter conformance suite: one set of checks, generic over [`crate::Adapter`], that every
//! payment rail must pass against an emulation of its service (feature `testkit`). It is what
//! `trustos adapters conformance [--json]` prints as a matrix, adapter × check.
//!
//! The checks ([`CHECKS`]):
//!
//! | id | what it proves |
//! |---|---|
//! | `decision_required` | nothing moves without a `VerifiedDecision`: a decision signed by an unknown key, a deny, and an expired allow all fail before the rail is called, with no attempt recorded |
//! | `terms_bound` | terms that differ from the decision's (amount, payee) are refused (`PAYMENT_TERMS_MISMATCH`), nothing recorded, nothing moved |
//! | `concurrent_retries` | 100 concurrent retries of one decision: exactly one authorization, exactly one movement of money |
//! | `crash_recovery` | the gateway killed at random points around the rail call, 20 times: after a restart, reconciliation finds every payment by its idempotency key; zero double settlements, zero payments without a record |
//! | `unknown_not_repaid` | an answer lost after money moved, and a rail that failed before anything moved: neither ever leads to a second payment; reconciliation settles both |
//! | `receipt_reference` | every completed payment gets a receipt that verifies offline and names the rail's reference |
//!
//! A rail plugs in with two traits: [`Rail`] is the gateway's side (the adapter, and how an
//! authorization reaches the rail and comes back as a [`SettlementReport`]); [`RailUnderTest`]
//! adds the emulator's side (what money actually moved, keyed by the rail's idempotency key, and
//! injectable faults). Decisions and receipts come from a [`Gate`]: [`gate::KernelGate`] signs
//! them with a gateway key through the kernel, as the gateway does. The kill-and-restart check
//! runs through a [`Crasher`]: [`TaskCrasher`] aborts the paying task in this process; the
//! gateway's command kills a separate `trustos` process with `SIGKILL` and reopens its store.

pub mod circle;
pub mod gate;
pub mod x402;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::GatewayKey;
use trustos_kernel::objects::{
    DecisionType, Mode, Outcome, PolicyDecision, RequestFingerprint, Route, Settlement,
};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::VerifiedDecision;

use crate::ledger::{AttemptRecord, AttemptState, MemoryLedger, PaymentLedger};
use crate::{Adapter, AdapterError, Allowances, Reconciliation, SettlementReport};

pub use gate::{Gate, KernelGate};

/// Every check, in the order the suite runs them: `(id, what it proves)`.
pub const CHECKS: [(&str, &str); 6] = [
    (
        "decision_required",
        "nothing moves without a VerifiedDecision",
    ),
    (
        "terms_bound",
        "terms that differ from the decision are refused",
    ),
    (
        "concurrent_retries",
        "100 concurrent retries of one decision make exactly one payment",
    ),
    (
        "crash_recovery",
        "killed around the rail call 20 times: every payment found by its idempotency key, none doubled, none unrecorded",
    ),
    (
        "unknown_not_repaid",
        "an unknown outcome never leads to a second payment",
    ),
    (
        "receipt_reference",
        "every completed payment gets a receipt naming the rail's reference",
    ),
];

/// How many concurrent retries `concurrent_retries` makes.
pub const CONCURRENT_RETRIES: usize = 100;
/// How many kills `crash_recovery` makes.
pub const CRASH_RUNS: usize = 20;

/// How long a decision made by the suite stays in force.
pub const DECISION_TTL_MILLIS: u64 = 5 * 60 * 1000;

/// One payment the suite makes: enough for a separate process to rebuild it exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentCase {
    /// The decision id (the rail's idempotency key derives from it).
    pub decision_id: String,
    /// Amount in base units.
    pub amount: u128,
    /// When the decision is issued, Unix milliseconds.
    pub issued_at_ms: u64,
}

impl PaymentCase {
    /// A case with a fresh decision id, issued now.
    pub fn fresh(tag: &str, amount: u128) -> Result<Self, AdapterError> {
        Ok(Self {
            decision_id: fresh_id(&format!("dec_conf_{tag}"))?,
            amount,
            issued_at_ms: now()?.unix_millis(),
        })
    }

    /// When the decision is issued.
    pub fn issued_at(&self) -> Result<Timestamp, AdapterError> {
        Timestamp::from_unix_millis(self.issued_at_ms).map_err(internal)
    }

    /// The resource this case pays for (one per decision).
    pub fn resource(&self) -> String {
        format!("https://conformance.trustos.dev/paid/{}", self.decision_id)
    }

    /// The call's fingerprint without payment terms: what `authorize` is given.
    pub fn request(&self) -> Result<RequestFingerprint, AdapterError> {
        RequestFingerprint::new(
            "tenant-conformance",
            "agent-conformance",
            Route::Http {
                method: "POST".to_owned(),
                url: self.resource(),
            },
            &json!({}),
            None,
        )
        .map_err(internal)
    }
}

/// The gateway's side of a rail: its adapter, and how an authorization reaches the rail.
#[async_trait::async_trait]
pub trait Rail: Send + Sync + 'static {
    /// The adapter under test.
    type A: Adapter + 'static;

    /// The adapter.
    fn adapter(&self) -> &Self::A;

    /// What the profile allows: everything the suite's requests need.
    fn allowances(&self) -> Allowances;

    /// The rail's payment request for `case` (deterministic: a restarted process rebuilds it).
    fn payment_request(
        &self,
        case: &PaymentCase,
    ) -> Result<<Self::A as Adapter>::Request, AdapterError>;

    /// `case`'s request with one bound term changed (another payee): terms a decision for
    /// `case` must not cover.
    fn other_payee_request(
        &self,
        case: &PaymentCase,
    ) -> Result<<Self::A as Adapter>::Request, AdapterError>;

    /// Takes `authorization` to the rail and waits for the outcome, as the gateway would.
    async fn execute(
        &self,
        decision_id: &str,
        authorization: <Self::A as Adapter>::Authorization,
    ) -> SettlementReport;

    /// Reconciles the attempt of `decision_id` to a final answer, resubmitting only where the
    /// adapter says it is safe. `None` when no attempt was ever recorded.
    async fn recover(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, AdapterError>;

    /// The receipt's settlement for a settled payment of `case`.
    fn settlement(&self, case: &PaymentCase, record: &AttemptRecord) -> Settlement;
}

/// One movement of money the emulated rail made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    /// The rail's idempotency key it was made under (Circle `idempotencyKey`, x402 nonce).
    pub key: String,
    /// The reference the ledger must hold for it (transaction hash, Circle transaction).
    pub reference: String,
}

/// A rail and its emulator: what moved, and faults.
pub trait RailUnderTest: Send + Sync + 'static {
    /// The gateway's side.
    type Rail: Rail;

    /// The gateway's side of the rail.
    fn rail(&self) -> &Self::Rail;

    /// The rail's name in the matrix (`x402`, `circle`).
    fn name(&self) -> &'static str;

    /// The idempotency key the rail sees for `decision_id`.
    fn key_for(&self, decision_id: &str) -> String;

    /// Every movement of money so far.
    fn movements(&self) -> Vec<Movement>;

    /// The next call to the rail moves money and loses its answer (every retry of it too).
    fn lose_next_answer(&self);

    /// The next call to the rail fails before anything moves (every retry of it too).
    fn fail_next_call(&self);

    /// Removes any fault still queued.
    fn clear_faults(&self);

    /// Delays the rail's answer after money moved by up to `max` (random per call), so that a
    /// kill lands between the rail call and the store write; `None` stops delaying.
    fn delay_answers(&self, max: Option<Duration>);

    /// How to rebuild this rail's gateway side in another process.
    fn spec(&self) -> RailSpec;
}

/// What a separate process needs to rebuild a rail's gateway side (test credentials only).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "rail", rename_all = "camelCase", deny_unknown_fields)]
pub enum RailSpec {
    /// The Circle rail against an emulator.
    #[serde(rename_all = "camelCase")]
    Circle {
        /// The emulator's base URL.
        base_url: String,
        /// Its API key.
        api_key: String,
        /// Its entity secret, hex.
        entity_secret_hex: String,
    },
    /// The x402 rail against an emulated facilitator and chain.
    #[serde(rename_all = "camelCase")]
    X402 {
        /// The emulator's base URL (facilitator and JSON-RPC).
        base_url: String,
        /// The payer's key, hex.
        payer_key_hex: String,
    },
}

/// How a [`Crasher::run_killed`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Whether it was killed (false: it finished first).
    pub killed: bool,
    /// How long it paid before it was killed or finished.
    pub ran: Duration,
}

/// Kills a gateway in the middle of a payment and restarts it.
#[async_trait::async_trait]
pub trait Crasher: Send + Sync {
    /// Pays `case` with `spec`'s rail in a gateway that is killed `kill_after` after it starts
    /// paying (or that finishes first); returns once it is gone.
    async fn run_killed(
        &self,
        spec: &RailSpec,
        case: &PaymentCase,
        kill_after: Duration,
    ) -> Result<Run, String>;

    /// The payment ledger as a restarted gateway opens it.
    async fn restart(&self) -> Result<Arc<dyn PaymentLedger>, String>;

    /// How the kill is done, for the report.
    fn how(&self) -> &'static str;
}

/// The result of one check.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckOutcome {
    /// The check's id.
    pub check: &'static str,
    /// Whether it passed.
    pub passed: bool,
    /// What was measured, or why it failed.
    pub detail: String,
    /// How long it took, milliseconds.
    pub millis: u64,
}

/// One adapter's column of the matrix.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterReport {
    /// The adapter (`x402`, `circle`).
    pub adapter: &'static str,
    /// One outcome per entry of [`CHECKS`], in order.
    pub checks: Vec<CheckOutcome>,
    /// How long the whole column took, milliseconds.
    pub millis: u64,
}

impl AdapterReport {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|check| check.passed)
    }
}

/// A failed check's explanation.
type CheckResult = Result<String, String>;

/// Runs every check against `rail`. `ledger` is a fresh ledger for the checks that do not
/// restart; `crasher` does the kills.
pub async fn run_suite<R: RailUnderTest>(
    rail: Arc<R>,
    gate: Arc<dyn Gate>,
    ledger: Arc<dyn PaymentLedger>,
    crasher: &dyn Crasher,
) -> AdapterReport {
    let started = Instant::now();
    let mut checks = Vec::with_capacity(CHECKS.len());
    for (check, _) in CHECKS {
        let at = Instant::now();
        rail.clear_faults();
        rail.delay_answers(None);
        let result = match check {
            "decision_required" => decision_required(&*rail, &*gate, &*ledger).await,
            "terms_bound" => terms_bound(&*rail, &*gate, &*ledger).await,
            "concurrent_retries" => {
                concurrent_retries(Arc::clone(&rail), &*gate, Arc::clone(&ledger)).await
            }
            "crash_recovery" => crash_recovery(&*rail, crasher).await,
            "unknown_not_repaid" => unknown_not_repaid(&*rail, &*gate, &*ledger).await,
            _ => receipt_reference(&*rail, &*gate, &*ledger).await,
        };
        rail.clear_faults();
        rail.delay_answers(None);
        let (passed, detail) = match result {
            Ok(detail) => (true, detail),
            Err(detail) => (false, detail),
        };
        checks.push(CheckOutcome {
            check,
            passed,
            detail,
            millis: elapsed_millis(at),
        });
    }
    AdapterReport {
        adapter: rail.name(),
        checks,
        millis: elapsed_millis(started),
    }
}

/// Pays `case` through `rail` the way the gateway does: prepare, bind, decide, authorize,
/// execute, report. The step a crashed worker runs.
pub async fn pay_once<R: Rail + ?Sized>(
    rail: &R,
    gate: &dyn Gate,
    ledger: &dyn PaymentLedger,
    case: &PaymentCase,
) -> Result<AttemptRecord, AdapterError> {
    let adapter = rail.adapter();
    let terms = adapter.prepare(&rail.payment_request(case)?, &rail.allowances())?;
    let decision = allow(gate, adapter, &terms, case)?;
    let authorization = adapter
        .authorize(ledger, &decision, &case.request()?, &terms, now()?)
        .await?;
    let report = rail.execute(&case.decision_id, authorization).await;
    adapter.report(ledger, &case.decision_id, &report).await
}

/// A verified allow decision for `case` paying `terms`.
fn allow<A: Adapter + ?Sized>(
    gate: &dyn Gate,
    adapter: &A,
    terms: &A::Terms,
    case: &PaymentCase,
) -> Result<VerifiedDecision, AdapterError> {
    let decision = decision_for(adapter, terms, case, Outcome::Allow)?;
    let signed = gate.sign_decision(&decision)?;
    gate.verifier()
        .verify_decision(&signed, &decision.fingerprint, case.issued_at()?)
        .map_err(|err| AdapterError::DecisionNotInForce(err.to_string()))
}

/// The unsigned decision with `outcome` for `case` paying `terms`.
fn decision_for<A: Adapter + ?Sized>(
    adapter: &A,
    terms: &A::Terms,
    case: &PaymentCase,
    outcome: Outcome,
) -> Result<PolicyDecision, AdapterError> {
    let mut bound = case.request()?;
    bound.payment = Some(adapter.bound_terms(terms)?);
    let issued_at = case.issued_at()?;
    Ok(PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: case.decision_id.clone(),
        fingerprint: bound.digest().map_err(internal)?,
        outcome,
        reason_codes: vec![match outcome {
            Outcome::Allow => "POLICY_ALLOW".to_owned(),
            _ => "POLICY_DENY".to_owned(),
        }],
        policy_ids: vec!["conformance".to_owned()],
        profile_fingerprint: Digest::of(b"trustos adapter conformance"),
        reservations: Vec::new(),
        issued_at,
        expires_at: issued_at
            .checked_add_millis(DECISION_TTL_MILLIS)
            .ok_or_else(|| internal("time out of range"))?,
        mode: Mode::Hard,
    })
}

async fn decision_required<R: RailUnderTest>(
    rail: &R,
    gate: &dyn Gate,
    ledger: &dyn PaymentLedger,
) -> CheckResult {
    let adapter = rail.rail().adapter();
    let before = rail.movements().len();
    let case = PaymentCase::fresh("nodecision", 1_000).map_err(text)?;
    let terms = adapter
        .prepare(
            &rail.rail().payment_request(&case).map_err(text)?,
            &rail.rail().allowances(),
        )
        .map_err(text)?;

    // Signed by a key the gateway does not trust: the verifier gives no VerifiedDecision.
    let forged = decision_for(adapter, &terms, &case, Outcome::Allow).map_err(text)?;
    let stranger = GatewayKey::from_seed(&random_bytes()?);
    let forged_jws =
        trustos_kernel::jws::sign(&stranger, trustos_kernel::jws::TYP_DECISION, &forged)
            .map_err(text)?;
    let forged_refused = gate
        .verifier()
        .verify_decision(
            &forged_jws,
            &forged.fingerprint,
            case.issued_at().map_err(text)?,
        )
        .err()
        .ok_or("a decision signed by an unknown key verified")?;

    // A deny signed by the gateway's own key is not an allow.
    let deny = decision_for(adapter, &terms, &case, Outcome::Deny).map_err(text)?;
    let deny_jws = gate.sign_decision(&deny).map_err(text)?;
    let deny_refused = gate
        .verifier()
        .verify_decision(
            &deny_jws,
            &deny.fingerprint,
            case.issued_at().map_err(text)?,
        )
        .err()
        .ok_or("a deny decision verified as an allow")?;

    // A genuine allow used after it expired.
    let decision = allow(gate, adapter, &terms, &case).map_err(text)?;
    let late = case
        .issued_at()
        .and_then(|at| {
            at.checked_add_millis(DECISION_TTL_MILLIS + 1)
                .ok_or_else(|| internal("time out of range"))
        })
        .map_err(text)?;
    let expired = adapter
        .authorize(
            ledger,
            &decision,
            &case.request().map_err(text)?,
            &terms,
            late,
        )
        .await
        .err()
        .ok_or("an expired decision authorized a payment")?;
    if expired.reason_code() != "PAYMENT_DECISION_NOT_IN_FORCE" {
        return Err(format!(
            "expired decision refused with {}",
            expired.reason_code()
        ));
    }
    nothing_happened(rail, ledger, &case.decision_id, before).await?;
    Ok(format!(
        "unknown key: {}; deny: {}; expired allow: {}; no attempt, 0 movements",
        forged_refused.reason_code(),
        deny_refused.reason_code(),
        expired.reason_code()
    ))
}

async fn terms_bound<R: RailUnderTest>(
    rail: &R,
    gate: &dyn Gate,
    ledger: &dyn PaymentLedger,
) -> CheckResult {
    let adapter = rail.rail().adapter();
    let before = rail.movements().len();
    let case = PaymentCase::fresh("terms", 1_000).map_err(text)?;
    let allowances = rail.rail().allowances();
    let terms = adapter
        .prepare(
            &rail.rail().payment_request(&case).map_err(text)?,
            &allowances,
        )
        .map_err(text)?;
    let decision = allow(gate, adapter, &terms, &case).map_err(text)?;
    let request = case.request().map_err(text)?;
    let mut refused = Vec::new();
    let more = PaymentCase {
        amount: case.amount + 1,
        ..case.clone()
    };
    let variants = [
        (
            "amount+1",
            rail.rail().payment_request(&more).map_err(text)?,
        ),
        (
            "other payee",
            rail.rail().other_payee_request(&case).map_err(text)?,
        ),
    ];
    for (what, variant) in variants {
        let other = adapter.prepare(&variant, &allowances).map_err(text)?;
        let error = adapter
            .authorize(ledger, &decision, &request, &other, now().map_err(text)?)
            .await
            .err()
            .ok_or_else(|| format!("terms with {what} were authorized"))?;
        if error.reason_code() != "PAYMENT_TERMS_MISMATCH" {
            return Err(format!("{what} refused with {}", error.reason_code()));
        }
        refused.push(format!("{what}: {}", error.reason_code()));
    }
    // Another request (another resource) under this decision.
    let elsewhere = RequestFingerprint::new(
        "tenant-conformance",
        "agent-conformance",
        Route::Http {
            method: "POST".to_owned(),
            url: format!("{}/elsewhere", case.resource()),
        },
        &json!({}),
        None,
    )
    .map_err(text)?;
    let error = adapter
        .authorize(ledger, &decision, &elsewhere, &terms, now().map_err(text)?)
        .await
        .err()
        .ok_or("the decision paid for another request")?;
    refused.push(format!("other request: {}", error.reason_code()));
    nothing_happened(rail, ledger, &case.decision_id, before).await?;
    Ok(format!("{}; no attempt, 0 movements", refused.join(", ")))
}

async fn concurrent_retries<R: RailUnderTest>(
    rail: Arc<R>,
    gate: &dyn Gate,
    ledger: Arc<dyn PaymentLedger>,
) -> CheckResult {
    let case = PaymentCase::fresh("concurrent", 2_500).map_err(text)?;
    let terms = rail
        .rail()
        .adapter()
        .prepare(
            &rail.rail().payment_request(&case).map_err(text)?,
            &rail.rail().allowances(),
        )
        .map_err(text)?;
    let decision = Arc::new(allow(gate, rail.rail().adapter(), &terms, &case).map_err(text)?);
    let terms = Arc::new(terms);
    let request = Arc::new(case.request().map_err(text)?);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT_RETRIES {
        let (rail, ledger) = (Arc::clone(&rail), Arc::clone(&ledger));
        let (decision, terms, request) = (
            Arc::clone(&decision),
            Arc::clone(&terms),
            Arc::clone(&request),
        );
        let decision_id = case.decision_id.clone();
        tasks.spawn(async move {
            let at = now()?;
            let authorization = rail
                .rail()
                .adapter()
                .authorize(&*ledger, &decision, &request, &terms, at)
                .await?;
            let report = rail.rail().execute(&decision_id, authorization).await;
            rail.rail()
                .adapter()
                .report(&*ledger, &decision_id, &report)
                .await
        });
    }
    let (mut authorized, mut already, mut other) = (0, 0, Vec::new());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(_)) => authorized += 1,
            Ok(Err(AdapterError::AlreadyAuthorized { .. })) => already += 1,
            Ok(Err(error)) => other.push(error.reason_code()),
            Err(error) => other.push(if error.is_panic() {
                "panic"
            } else {
                "cancelled"
            }),
        }
    }
    let moved = movements_for(&*rail, &case.decision_id);
    if authorized != 1 || moved.len() != 1 || !other.is_empty() {
        return Err(format!(
            "{authorized} authorized, {already} refused as already authorized, other errors {other:?}, {} movements",
            moved.len()
        ));
    }
    let record = settled(&*ledger, rail.name(), &case.decision_id).await?;
    same_reference(&record, &moved[0])?;
    Ok(format!(
        "{CONCURRENT_RETRIES} retries: 1 authorized, {already} PAYMENT_ALREADY_AUTHORIZED, 1 movement ({})",
        moved[0].reference
    ))
}

/// Where a kill landed, judged from what survived it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum KillPoint {
    /// No attempt recorded, nothing moved.
    BeforeRecord,
    /// The attempt recorded, the rail not (yet) moved.
    BeforeRail,
    /// The rail moved money, the record does not know it: the window that matters.
    BetweenRailAndStore,
    /// The rail's answer recorded.
    AfterStore,
}

async fn crash_recovery<R: RailUnderTest>(rail: &R, crasher: &dyn Crasher) -> CheckResult {
    // Calibrate: how long one whole payment takes when nobody kills it, with answers delayed
    // after money moved so that the rail-to-store window is wide.
    let window = Duration::from_millis(40);
    rail.delay_answers(Some(window));
    let spec = rail.spec();
    let calibration = PaymentCase::fresh("crash-calibrate", 700).map_err(text)?;
    let full = crasher
        .run_killed(&spec, &calibration, Duration::from_secs(30))
        .await?
        .ran
        .max(Duration::from_millis(5));
    let mut cases = vec![calibration];
    let mut points = std::collections::BTreeMap::new();
    let mut finished_first = 0;
    let mut killed = 0;
    // Until CRASH_RUNS runs were really killed (a run may finish before its kill time).
    for run in 0..CRASH_RUNS * 4 {
        if killed == CRASH_RUNS {
            break;
        }
        let case = PaymentCase::fresh(&format!("crash{run}"), 700 + run as u128).map_err(text)?;
        let fraction = f64::from(u32::from_le_bytes(random_bytes::<4>()?)) / f64::from(u32::MAX);
        let kill_after = full.mul_f64(fraction);
        let outcome = crasher.run_killed(&spec, &case, kill_after).await?;
        let ledger = crasher.restart().await?;
        if outcome.killed {
            killed += 1;
            let point = kill_point(rail, &*ledger, &case.decision_id).await?;
            *points.entry(point).or_insert(0u32) += 1;
        } else {
            finished_first += 1;
        }
        cases.push(case);
    }
    rail.delay_answers(None);
    if killed < CRASH_RUNS {
        return Err(format!(
            "only {killed} of {} runs were killed before they finished",
            killed + finished_first
        ));
    }

    // After the last restart: reconcile every case to its end.
    let ledger = crasher.restart().await?;
    let mut settled_count = 0;
    let mut never = 0;
    for case in &cases {
        let moved = movements_for(rail, &case.decision_id);
        if moved.len() > 1 {
            return Err(format!("{}: {} movements", case.decision_id, moved.len()));
        }
        match rail
            .rail()
            .recover(&*ledger, &case.decision_id)
            .await
            .map_err(text)?
        {
            None => {
                if !movements_for(rail, &case.decision_id).is_empty() {
                    return Err(format!(
                        "{}: money moved without a record",
                        case.decision_id
                    ));
                }
                never += 1;
            }
            Some(_) => {
                let moved = movements_for(rail, &case.decision_id);
                let [movement] = moved.as_slice() else {
                    return Err(format!(
                        "{}: {} movements after reconciliation",
                        case.decision_id,
                        moved.len()
                    ));
                };
                let record = settled(&*ledger, rail.name(), &case.decision_id).await?;
                same_reference(&record, movement)?;
                settled_count += 1;
            }
        }
    }
    // No movement on the rail that the ledger does not account for.
    let keys: Vec<String> = cases
        .iter()
        .map(|case| rail.key_for(&case.decision_id))
        .collect();
    let ours = rail
        .movements()
        .into_iter()
        .filter(|movement| keys.contains(&movement.key))
        .count();
    if ours != settled_count {
        return Err(format!(
            "{ours} movements on the rail, {settled_count} settled records"
        ));
    }
    let landed: Vec<String> = points
        .iter()
        .map(|(point, count)| format!("{point:?} {count}"))
        .collect();
    Ok(format!(
        "{killed} runs killed at random points within {} ms ({}): {}; {finished_first} more finished before their kill time; after restart {settled_count} settled once each, {never} never authorized, 0 doubled, 0 unrecorded",
        full.as_millis(),
        crasher.how(),
        landed.join(", ")
    ))
}

async fn kill_point<R: RailUnderTest>(
    rail: &R,
    ledger: &dyn PaymentLedger,
    decision_id: &str,
) -> Result<KillPoint, String> {
    let record = ledger
        .load_attempt(rail.name(), decision_id)
        .await
        .map_err(text)?;
    let moved = !movements_for(rail, decision_id).is_empty();
    Ok(match (record, moved) {
        (None, false) => KillPoint::BeforeRecord,
        (None, true) => {
            return Err(format!(
                "{decision_id}: money moved with no attempt recorded"
            ));
        }
        (Some(record), _)
            if matches!(record.state, AttemptState::Settled | AttemptState::Failed) =>
        {
            KillPoint::AfterStore
        }
        (Some(_), false) => KillPoint::BeforeRail,
        (Some(_), true) => KillPoint::BetweenRailAndStore,
    })
}

async fn unknown_not_repaid<R: RailUnderTest>(
    rail: &R,
    gate: &dyn Gate,
    ledger: &dyn PaymentLedger,
) -> CheckResult {
    let adapter = rail.rail().adapter();
    let mut found = Vec::new();
    for (what, fault) in [
        ("answer lost after money moved", true),
        ("rail failed before moving", false),
    ] {
        let case = PaymentCase::fresh("unknown", 1_200).map_err(text)?;
        if fault {
            rail.lose_next_answer();
        } else {
            rail.fail_next_call();
        }
        let first = pay_once(rail.rail(), gate, ledger, &case).await;
        rail.clear_faults();
        let state = match &first {
            Ok(record) => record.state,
            Err(_) => ledger
                .load_attempt(rail.name(), &case.decision_id)
                .await
                .map_err(text)?
                .map_or(AttemptState::Failed, |record| record.state),
        };
        if !matches!(state, AttemptState::Unknown | AttemptState::Authorized) {
            return Err(format!(
                "{what}: the attempt ended {} instead of unknown ({first:?})",
                state.as_str()
            ));
        }
        // The agent retries the same decision: refused, nothing sent.
        let terms = adapter
            .prepare(
                &rail.rail().payment_request(&case).map_err(text)?,
                &rail.rail().allowances(),
            )
            .map_err(text)?;
        let decision = allow(gate, adapter, &terms, &case).map_err(text)?;
        let retry = adapter
            .authorize(
                ledger,
                &decision,
                &case.request().map_err(text)?,
                &terms,
                now().map_err(text)?,
            )
            .await;
        match retry {
            Err(AdapterError::AlreadyAuthorized { .. }) => {}
            Err(error) => {
                return Err(format!(
                    "{what}: retry refused with {}",
                    error.reason_code()
                ));
            }
            Ok(_) => {
                return Err(format!(
                    "{what}: a retry of an unknown payment was authorized"
                ));
            }
        }
        let moved_before = movements_for(rail, &case.decision_id).len();
        rail.rail()
            .recover(ledger, &case.decision_id)
            .await
            .map_err(text)?;
        let moved = movements_for(rail, &case.decision_id);
        let [movement] = moved.as_slice() else {
            return Err(format!(
                "{what}: {} movements after reconciliation",
                moved.len()
            ));
        };
        let record = settled(ledger, rail.name(), &case.decision_id).await?;
        same_reference(&record, movement)?;
        found.push(format!(
            "{what}: unknown, retry PAYMENT_ALREADY_AUTHORIZED, {moved_before}→1 movement after reconciliation"
        ));
    }
    Ok(found.join("; "))
}

async fn receipt_reference<R: RailUnderTest>(
    rail: &R,
    gate: &dyn Gate,
    ledger: &dyn PaymentLedger,
) -> CheckResult {
    const PAYMENTS: u32 = 5;
    for n in 0..PAYMENTS {
        let case = PaymentCase::fresh("receipt", 900 + u128::from(n)).map_err(text)?;
        let record = pay_once(rail.rail(), gate, ledger, &case)
            .await
            .map_err(text)?;
        if record.state != AttemptState::Settled {
            return Err(format!("payment ended {}", record.state.as_str()));
        }
        let moved = movements_for(rail, &case.decision_id);
        let [movement] = moved.as_slice() else {
            return Err(format!("{} movements", moved.len()));
        };
        same_reference(&record, movement)?;
        let settlement = rail.rail().settlement(&case, &record);
        let jws = gate
            .receipt(&case, settlement.clone())
            .await
            .map_err(text)?;
        let verified = gate.verifier().verify_receipt(&jws).map_err(text)?;
        let named = verified
            .receipt
            .settlement
            .ok_or("the receipt names no settlement")?;
        if named.reference != movement.reference
            || named.rail != rail.name()
            || verified.receipt.decision_id != case.decision_id
        {
            return Err(format!(
                "receipt names {} on {}, the rail moved {}",
                named.reference, named.rail, movement.reference
            ));
        }
    }
    Ok(format!(
        "{PAYMENTS} payments, {PAYMENTS} receipts verified offline, each naming the rail's reference"
    ))
}

/// The movements made under `decision_id`'s idempotency key.
fn movements_for<R: RailUnderTest + ?Sized>(rail: &R, decision_id: &str) -> Vec<Movement> {
    let key = rail.key_for(decision_id);
    rail.movements()
        .into_iter()
        .filter(|movement| movement.key == key)
        .collect()
}

/// Checks that nothing was recorded for `decision_id` and nothing moved since `before`.
async fn nothing_happened<R: RailUnderTest>(
    rail: &R,
    ledger: &dyn PaymentLedger,
    decision_id: &str,
    before: usize,
) -> Result<(), String> {
    if let Some(record) = ledger
        .load_attempt(rail.name(), decision_id)
        .await
        .map_err(text)?
    {
        return Err(format!(
            "an attempt was recorded ({})",
            record.state.as_str()
        ));
    }
    let after = rail.movements().len();
    if after != before {
        return Err(format!("{} movements of money", after - before));
    }
    Ok(())
}

/// The settled record of `decision_id`.
async fn settled(
    ledger: &dyn PaymentLedger,
    rail: &str,
    decision_id: &str,
) -> Result<AttemptRecord, String> {
    let record = ledger
        .load_attempt(rail, decision_id)
        .await
        .map_err(text)?
        .ok_or_else(|| format!("{decision_id}: no attempt recorded"))?;
    if record.state != AttemptState::Settled {
        return Err(format!(
            "{decision_id}: recorded {} ({})",
            record.state.as_str(),
            record.detail.clone().unwrap_or_default()
        ));
    }
    Ok(record)
}

fn same_reference(record: &AttemptRecord, movement: &Movement) -> Result<(), String> {
    if record.reference.as_deref() == Some(movement.reference.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "{}: recorded reference {:?}, the rail moved {}",
            record.decision_id, record.reference, movement.reference
        ))
    }
}

/// Reconciles with the adapter and, on [`Reconciliation::Resubmit`], lets `resubmit` send the
/// same authorization again; answers the record as it ends.
pub async fn reconcile_then<R, F, Fut>(
    rail: &R,
    ledger: &dyn PaymentLedger,
    decision_id: &str,
    resubmit: F,
) -> Result<Option<AttemptRecord>, AdapterError>
where
    R: Rail + ?Sized,
    F: FnOnce(AttemptRecord) -> Fut,
    Fut: std::future::Future<Output = Result<(), AdapterError>>,
{
    match rail
        .adapter()
        .reconcile(ledger, decision_id, now()?)
        .await?
    {
        Reconciliation::NoAttempt => Ok(None),
        Reconciliation::Known(record) | Reconciliation::Expired(record) => Ok(Some(record)),
        Reconciliation::Resubmit(record) => {
            resubmit(record).await?;
            Ok(ledger
                .load_attempt(rail.adapter().rail(), decision_id)
                .await?)
        }
    }
}

/// A [`Crasher`] that pays in a task of this process and aborts it: the ledger (shared, in
/// memory) survives as a store's committed writes would.
pub struct TaskCrasher<R: RailUnderTest> {
    rail: Arc<R>,
    gate: Arc<dyn Gate>,
    ledger: Arc<MemoryLedger>,
}

impl<R: RailUnderTest> TaskCrasher<R> {
    /// Pays through `rail` with decisions from `gate`.
    pub fn new(rail: Arc<R>, gate: Arc<dyn Gate>) -> Self {
        Self {
            rail,
            gate,
            ledger: Arc::new(MemoryLedger::new()),
        }
    }
}

#[async_trait::async_trait]
impl<R: RailUnderTest> Crasher for TaskCrasher<R> {
    async fn run_killed(
        &self,
        _spec: &RailSpec,
        case: &PaymentCase,
        kill_after: Duration,
    ) -> Result<Run, String> {
        let (rail, gate, ledger) = (
            Arc::clone(&self.rail),
            Arc::clone(&self.gate),
            Arc::clone(&self.ledger),
        );
        let case = case.clone();
        let task = tokio::spawn(async move {
            let _ = pay_once(rail.rail(), &*gate, &*ledger, &case).await;
        });
        let started = Instant::now();
        let mut task = task;
        let killed = tokio::select! {
            _ = &mut task => false,
            () = tokio::time::sleep(kill_after) => {
                task.abort();
                // Wait until it is really gone: an abort lands at the task's next await.
                let _ = task.await;
                true
            }
        };
        Ok(Run {
            killed,
            ran: started.elapsed(),
        })
    }

    async fn restart(&self) -> Result<Arc<dyn PaymentLedger>, String> {
        Ok(Arc::clone(&self.ledger) as Arc<dyn PaymentLedger>)
    }

    fn how(&self) -> &'static str {
        "paying task aborted"
    }
}

/// The wall clock as a kernel timestamp.
pub fn now() -> Result<Timestamp, AdapterError> {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(internal)?
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(millis).map_err(internal)?).map_err(internal)
}

/// `prefix` and 16 random hex digits.
pub fn fresh_id(prefix: &str) -> Result<String, AdapterError> {
    let bytes: [u8; 8] = random_bytes().map_err(AdapterError::Internal)?;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{prefix}_{hex}"))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|err| format!("no randomness: {err}"))?;
    Ok(bytes)
}

fn elapsed_millis(at: Instant) -> u64 {
    u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn internal(err: impl std::fmt::Display) -> AdapterError {
    AdapterError::Internal(err.to_string())
}

fn text(err: impl std::fmt::Display) -> String {
    err.to_string()
}
