//! Where the conformance suite's decisions and receipts come from.
//!
//! A `VerifiedDecision` can only come out of the kernel's verifier (DESIGN.md invariant 1), so
//! the suite never builds one directly: a [`Gate`] signs each `PolicyDecision.v1` as a compact
//! JWS (`trustos-decision.v1+jws`) and the suite runs it through the gate's
//! [`Verifier::verify_decision`]. Receipts (`Receipt.v1`, `trustos-receipt.v1+jws`) are signed
//! the same way and verified offline with the same verifier.
//!
//! [`KernelGate`] does this with one Ed25519 gateway key from a fixed conformance seed, so a
//! separate worker process (the kill-and-restart check) signs with the very key the parent
//! verifies against.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::objects::{
    ExecutionStatus, PolicyDecision, Receipt, ReceiptType, SafeIndex, Settlement,
};
use trustos_kernel::verify::Verifier;

use super::{PaymentCase, fresh_id, internal, now};
use crate::AdapterError;

/// The seed of the conformance gateway key (a test key: it guards only emulated rails).
const CONFORMANCE_SEED: [u8; 32] = [0x5a; 32];

/// Signs the suite's decisions and receipts, and verifies them.
#[async_trait::async_trait]
pub trait Gate: Send + Sync {
    /// Signs `decision` as the gateway would (a compact JWS).
    fn sign_decision(&self, decision: &PolicyDecision) -> Result<String, AdapterError>;

    /// The verifier trusting exactly the gate's key.
    fn verifier(&self) -> &Verifier;

    /// Issues the receipt of `case`'s completed payment, naming `settlement`.
    async fn receipt(
        &self,
        case: &PaymentCase,
        settlement: Settlement,
    ) -> Result<String, AdapterError>;
}

/// A [`Gate`] over the kernel alone: one gateway key, receipts numbered in order.
pub struct KernelGate {
    key: GatewayKey,
    verifier: Verifier,
    fingerprints: Mutex<HashMap<String, Digest>>,
    next_index: AtomicU64,
}

impl std::fmt::Debug for KernelGate {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KernelGate")
            .field("kid", &self.key.public().kid())
            .finish_non_exhaustive()
    }
}

impl Default for KernelGate {
    fn default() -> Self {
        Self::new()
    }
}

impl KernelGate {
    /// The gate with the conformance key.
    pub fn new() -> Self {
        let key = GatewayKey::from_seed(&CONFORMANCE_SEED);
        let verifier = Verifier::new(TrustedKeys::new([key.public().clone()]));
        Self {
            key,
            verifier,
            fingerprints: Mutex::new(HashMap::new()),
            next_index: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Gate for KernelGate {
    fn sign_decision(&self, decision: &PolicyDecision) -> Result<String, AdapterError> {
        self.fingerprints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(decision.decision_id.clone(), decision.fingerprint);
        jws::sign(&self.key, TYP_DECISION, decision).map_err(internal)
    }

    fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    async fn receipt(
        &self,
        case: &PaymentCase,
        settlement: Settlement,
    ) -> Result<String, AdapterError> {
        let fingerprint = self
            .fingerprints
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&case.decision_id)
            .copied()
            .ok_or_else(|| internal(format!("no decision {}", case.decision_id)))?;
        let index = self.next_index.fetch_add(1, Ordering::Relaxed);
        let receipt = Receipt {
            object_type: ReceiptType::V1,
            receipt_id: fresh_id("rcpt_conf")?,
            decision_id: case.decision_id.clone(),
            fingerprint,
            status: ExecutionStatus::Completed,
            result_digest: None,
            settlement: Some(settlement),
            started_at: case.issued_at()?,
            completed_at: now()?,
            log_index: SafeIndex::new(index).map_err(internal)?,
            composes: Vec::new(),
        };
        jws::sign(&self.key, TYP_RECEIPT, &receipt).map_err(internal)
    }
}
