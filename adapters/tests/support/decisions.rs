//! Test support: real [`VerifiedDecision`]s for adapter tests.
//!
//! A `VerifiedDecision` can only come out of the kernel's verifier (DESIGN.md invariant 1), so
//! this module does what the gateway does: it holds a gateway Ed25519 key, builds a
//! `PolicyDecision.v1` with outcome allow for the digest of a `RequestFingerprint.v1`, signs it
//! as a compact JWS (`trustos-decision.v1+jws`) and runs it through
//! [`Verifier::verify_decision`] with the expected fingerprint. Nothing here shortcuts the
//! verifier; a decision that would not verify makes the helper panic.
//!
//! [`Decider::allow_terms`] is the usual entry: the fingerprint of a call whose `payment` is
//! `adapter.bound_terms(&terms)`, and an allow decision for it.
//!
//! Include it with `#[path = "support/decisions.rs"] mod decisions;`.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use trustos_adapters::Adapter;
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::objects::{
    DecisionType, Mode, Outcome, PaymentTerms, PolicyDecision, RequestFingerprint, Route,
};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::{VerifiedDecision, Verifier};

/// How long the decisions made here stay in force: five minutes, like the gateway's default.
pub const DECISION_TTL_MILLIS: u64 = 5 * 60 * 1000;

/// The wall clock as a kernel [`Timestamp`] (the reference facilitator checks authorizations
/// against its own wall clock, so decisions that reach it must be issued now).
pub fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(millis).expect("millis fit u64")).expect("in range")
}

/// `at` plus `seconds`.
pub fn after(at: Timestamp, seconds: u64) -> Timestamp {
    at.checked_add_millis(seconds * 1000).expect("in range")
}

/// A decision id unique in this process and across processes (the x402 nonce derives from it).
pub fn unique_decision_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("dec_test_{}_{n}_{nanos}", std::process::id())
}

/// The fingerprint of an HTTP call to `url` with `method`, paying `payment`.
pub fn http_request(method: &str, url: &str, payment: Option<PaymentTerms>) -> RequestFingerprint {
    RequestFingerprint::new(
        "tenant-test",
        "agent-test",
        Route::Http {
            method: method.to_owned(),
            url: url.to_owned(),
        },
        &json!({}),
        payment,
    )
    .expect("fingerprint canonicalizes")
}

/// A gateway key and a verifier trusting exactly it.
pub struct Decider {
    key: GatewayKey,
    verifier: Verifier,
}

impl Default for Decider {
    fn default() -> Self {
        Self::new()
    }
}

impl Decider {
    /// A decider with a fixed test key.
    pub fn new() -> Self {
        let key = GatewayKey::from_seed(&[0x5a; 32]);
        let verifier = Verifier::new(TrustedKeys::new([key.public().clone()]));
        Self { key, verifier }
    }

    /// The verifier that trusts this decider's key.
    pub fn verifier(&self) -> &Verifier {
        &self.verifier
    }

    /// An unsigned allow decision for `fingerprint`, issued at `issued_at`, in force for
    /// [`DECISION_TTL_MILLIS`].
    pub fn decision(
        &self,
        fingerprint: &RequestFingerprint,
        issued_at: Timestamp,
    ) -> PolicyDecision {
        PolicyDecision {
            object_type: DecisionType::V1,
            decision_id: unique_decision_id(),
            fingerprint: fingerprint.digest().expect("fingerprint digests"),
            outcome: Outcome::Allow,
            reason_codes: vec!["POLICY_ALLOW".to_owned()],
            policy_ids: vec!["test-allow".to_owned()],
            profile_fingerprint: Digest::of(b"trustos adapter tests profile"),
            reservations: Vec::new(),
            issued_at,
            expires_at: issued_at
                .checked_add_millis(DECISION_TTL_MILLIS)
                .expect("in range"),
            mode: Mode::Hard,
        }
    }

    /// Signs `decision` and verifies it at its issue time against its own fingerprint: the only
    /// way to a [`VerifiedDecision`].
    pub fn verify(&self, decision: &PolicyDecision) -> VerifiedDecision {
        let signed = jws::sign(&self.key, TYP_DECISION, decision).expect("decision signs");
        self.verifier
            .verify_decision(&signed, &decision.fingerprint, decision.issued_at)
            .expect("the decision verifies")
    }

    /// A verified allow decision for `fingerprint`, issued at `issued_at`.
    pub fn allow_at(
        &self,
        fingerprint: &RequestFingerprint,
        issued_at: Timestamp,
    ) -> VerifiedDecision {
        self.verify(&self.decision(fingerprint, issued_at))
    }

    /// A verified allow decision for `fingerprint`, issued now.
    pub fn allow(&self, fingerprint: &RequestFingerprint) -> VerifiedDecision {
        self.allow_at(fingerprint, now())
    }

    /// The fingerprint of `method url` paying `adapter.bound_terms(terms)`, and a verified allow
    /// decision for it issued at `issued_at`.
    pub fn allow_terms<A: Adapter>(
        &self,
        adapter: &A,
        terms: &A::Terms,
        method: &str,
        url: &str,
        issued_at: Timestamp,
    ) -> (RequestFingerprint, VerifiedDecision) {
        let bound = adapter.bound_terms(terms).expect("terms bind");
        let fingerprint = http_request(method, url, Some(bound));
        let decision = self.allow_at(&fingerprint, issued_at);
        (fingerprint, decision)
    }
}
