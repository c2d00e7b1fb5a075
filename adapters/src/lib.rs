//! Trust OS payment rail adapters.
//!
//! Every rail implements [`Adapter`]: prepare terms from a payment request, authorize a payment
//! given a [`VerifiedDecision`] (the only way in), report settlement, and reconcile unknown
//! outcomes. Money never moves without a verified decision whose fingerprint equals the one the
//! adapter recomputes from the exact terms it is about to sign (DESIGN.md invariant 1).
//!
//! The adapter keeps no state of its own: a [`ledger::PaymentLedger`] (the gateway's store, or
//! [`ledger::MemoryLedger`] in tests) holds one attempt record per decision, written before
//! anything leaves the gateway, and the replay set of signed authorizations.

pub mod circle;
#[cfg(feature = "testkit")]
pub mod conformance;
pub mod ledger;
#[cfg(feature = "testkit")]
pub mod testkit;
mod transport;
pub mod x402;

use trustos_kernel::objects::{PaymentTerms, RequestFingerprint};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::VerifiedDecision;

pub use ledger::{AttemptRecord, AttemptState, LedgerError, PaymentLedger};

/// What a profile lets an agent pay with, as the adapter needs it to choose among offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Allowances {
    /// Schemes the gateway may sign (empty: none).
    pub schemes: Vec<String>,
    /// CAIP-2 networks allowed (empty: any known network).
    pub networks: Vec<String>,
    /// Asset symbols allowed, as the profile names them (`usdc`; empty: any known asset).
    pub assets: Vec<String>,
    /// Largest amount per call, by asset symbol, in base units.
    pub max_amount: Vec<(String, u128)>,
    /// Networks refused whatever else applies.
    pub denied_networks: Vec<String>,
    /// Assets refused whatever else applies.
    pub denied_assets: Vec<String>,
    /// Payees refused whatever else applies (compared case-insensitively).
    pub denied_payees: Vec<String>,
    /// When non-empty, the only payees allowed (compared case-insensitively).
    pub allowed_payees: Vec<String>,
    /// Longest validity an authorization may have, in seconds.
    pub max_timeout_seconds: u64,
}

/// How a payment ended, as the rail reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettlementReport {
    /// Money moved: the rail's reference (transaction hash, transfer id).
    Settled {
        /// Rail reference.
        reference: String,
        /// CAIP-2 network it settled on.
        network: String,
    },
    /// The rail says nothing moved.
    Failed {
        /// The rail's reason.
        reason: String,
    },
    /// No answer, a timeout, a pending state, or an answer that cannot be trusted: money may
    /// have moved. Never followed by a second authorization; reconciliation settles it.
    Unknown {
        /// What is known.
        detail: String,
    },
}

/// What reconciling an attempt found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reconciliation {
    /// The outcome is known; nothing to do.
    Known(AttemptRecord),
    /// Still unknown and still valid: resubmit exactly these bytes (no new signature).
    Resubmit(AttemptRecord),
    /// Unknown, and the authorization can no longer be submitted: only the chain can tell.
    Expired(AttemptRecord),
    /// No attempt was ever recorded for the decision: nothing was authorized.
    NoAttempt,
}

/// A refusal of an adapter: nothing was authorized, or nothing more will be.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// No offered term can be paid under the profile; one entry per offer.
    #[error("no acceptable payment offer: {}", .0.iter().map(|(i, c)| format!("offer {i}: {c}")).collect::<Vec<_>>().join(", "))]
    NoAcceptableOffer(Vec<(usize, &'static str)>),
    /// The terms about to be signed are not the ones the decision binds.
    #[error("the decision binds other terms than the ones about to be signed")]
    TermsMismatch,
    /// The decision expired or is not yet valid.
    #[error("the decision is not in force: {0}")]
    DecisionNotInForce(String),
    /// This decision already authorized a payment; it never authorizes a second.
    #[error("decision {decision_id} already authorized a payment ({state})")]
    AlreadyAuthorized {
        /// The decision.
        decision_id: String,
        /// State of the earlier attempt.
        state: &'static str,
    },
    /// The replay set already holds this authorization's key.
    #[error("authorization replay refused")]
    Replay,
    /// A wire-format problem.
    #[error(transparent)]
    Wire(#[from] x402::wire::WireError),
    /// An EVM problem.
    #[error(transparent)]
    Evm(#[from] x402::evm::EvmError),
    /// The ledger failed: nothing was authorized.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The rail refused or failed, with the rail's own stable code (`CIRCLE_OUTCOME_UNKNOWN`…).
    #[error("{code}: {message}")]
    Rail {
        /// The rail's reason code.
        code: &'static str,
        /// What happened (never a secret).
        message: String,
    },
    /// Anything else that stops a payment (canonicalization, clock range).
    #[error("{0}")]
    Internal(String),
}

impl AdapterError {
    /// The stable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::NoAcceptableOffer(codes) => match codes.as_slice() {
                [(_, code)] => code,
                _ => "X402_NO_ACCEPTABLE_REQUIREMENT",
            },
            Self::TermsMismatch => "PAYMENT_TERMS_MISMATCH",
            Self::DecisionNotInForce(_) => "PAYMENT_DECISION_NOT_IN_FORCE",
            Self::AlreadyAuthorized { .. } => "PAYMENT_ALREADY_AUTHORIZED",
            Self::Replay => "PAYMENT_REPLAY",
            Self::Wire(err) => err.reason_code(),
            Self::Evm(err) => err.reason_code(),
            Self::Ledger(_) => "PAYMENT_LEDGER_UNAVAILABLE",
            Self::Rail { code, .. } => code,
            Self::Internal(_) => "PAYMENT_INTERNAL",
        }
    }
}

/// The contract every payment rail honours.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync {
    /// The rail's payment request (x402: a `PaymentRequired`).
    type Request: Send + Sync;
    /// Terms chosen from a request, before any decision.
    type Terms: Send + Sync;
    /// What the rail receives to move money (x402: a `PaymentPayload`).
    type Authorization: Send;

    /// The rail's name in receipts (`x402`, `circle`).
    fn rail(&self) -> &'static str;

    /// Chooses the first offer of `request` the allowances permit.
    fn prepare(
        &self,
        request: &Self::Request,
        allowances: &Allowances,
    ) -> Result<Self::Terms, AdapterError>;

    /// The payment terms a decision must bind for `terms`: everything that reaches the rail.
    fn bound_terms(&self, terms: &Self::Terms) -> Result<PaymentTerms, AdapterError>;

    /// Authorizes the payment `decision` allows. `request` is the fingerprint the decision was
    /// made for; the adapter recomputes its digest with [`Adapter::bound_terms`] of `terms` and
    /// refuses on any difference. Records the attempt in `ledger` before returning, and never
    /// authorizes twice for one decision.
    async fn authorize(
        &self,
        ledger: &dyn PaymentLedger,
        decision: &VerifiedDecision,
        request: &RequestFingerprint,
        terms: &Self::Terms,
        now: Timestamp,
    ) -> Result<Self::Authorization, AdapterError>;

    /// Records how the payment of `decision_id` ended.
    async fn report(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
        report: &SettlementReport,
    ) -> Result<AttemptRecord, AdapterError>;

    /// Looks at an attempt whose outcome may be unknown and says what is safe to do.
    async fn reconcile(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
        now: Timestamp,
    ) -> Result<Reconciliation, AdapterError>;
}

/// Checks that `terms` are exactly what `decision` binds for `request`: the fingerprint with
/// these terms must hash to the decision's fingerprint. Shared by every adapter.
pub fn check_bound(
    decision: &VerifiedDecision,
    request: &RequestFingerprint,
    terms: PaymentTerms,
    now: Timestamp,
) -> Result<(), AdapterError> {
    trustos_kernel::verify::check_in_force(decision.decision(), now)
        .map_err(|err| AdapterError::DecisionNotInForce(err.to_string()))?;
    let mut bound = request.clone();
    bound.payment = Some(terms);
    let digest = bound
        .digest()
        .map_err(|err| AdapterError::Internal(err.to_string()))?;
    if digest != *decision.fingerprint() {
        return Err(AdapterError::TermsMismatch);
    }
    Ok(())
}

/// Creates the attempt record of `record.decision_id`, durably, unless one exists — then
/// [`AdapterError::AlreadyAuthorized`]: the one gate every adapter passes before anything
/// leaves the gateway, so a decision authorizes at most once however often it is retried.
pub async fn create_attempt_once(
    ledger: &dyn PaymentLedger,
    record: &AttemptRecord,
) -> Result<(), AdapterError> {
    match ledger.create_attempt(record).await? {
        ledger::AttemptClaim::Created => Ok(()),
        ledger::AttemptClaim::Existing(existing) => Err(AdapterError::AlreadyAuthorized {
            decision_id: record.decision_id.clone(),
            state: existing.state.as_str(),
        }),
    }
}

/// Records a rail's report on the attempt of `decision_id`: the one `report` of every adapter.
/// Settled and failed are final: a later, different word does not undo them.
pub async fn record_report(
    ledger: &dyn PaymentLedger,
    rail: &str,
    decision_id: &str,
    report: &SettlementReport,
) -> Result<AttemptRecord, AdapterError> {
    let mut record = ledger
        .load_attempt(rail, decision_id)
        .await?
        .ok_or_else(|| AdapterError::Internal(format!("no attempt for {decision_id}")))?;
    if matches!(record.state, AttemptState::Settled | AttemptState::Failed) {
        return Ok(record);
    }
    match report {
        SettlementReport::Settled { reference, .. } => {
            record.state = AttemptState::Settled;
            record.reference = Some(reference.clone());
            record.detail = None;
        }
        SettlementReport::Failed { reason } => {
            record.state = AttemptState::Failed;
            record.detail = Some(reason.clone());
        }
        SettlementReport::Unknown { detail } => {
            record.state = AttemptState::Unknown;
            record.detail = Some(detail.clone());
        }
    }
    ledger.update_attempt(&record).await?;
    Ok(record)
}
