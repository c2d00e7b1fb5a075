//! The verifier: the only place a [`VerifiedDecision`] can come from (invariant 1).
//!
//! Money adapters accept nothing but a [`VerifiedDecision`]. Its fields are private, it has no
//! public constructor, no `Default`, no `Clone` and no `Deserialize`, so code outside this module
//! cannot make one without [`Verifier::verify_decision`], which checks, in order:
//!
//! 1. the compact JWS: a trusted key (`verify_strict`), `alg` EdDSA, canonical payload, `typ`;
//! 2. the payload is a well-formed `PolicyDecision.v1`;
//! 3. the decision is in force at the given clock (`issuedAt ≤ now < expiresAt`);
//! 4. its outcome is `allow`;
//! 5. its fingerprint equals the one the caller recomputed from the exact outgoing request.
//!
//! None of these can be skipped, as the compile-fail examples below show:
//!
//! ```compile_fail,E0451
//! // Fields are private: a struct literal does not compile.
//! let forged = trustos_kernel::verify::VerifiedDecision { decision: panic!(), kid: String::new(), jws: String::new() };
//! ```
//!
//! ```compile_fail,E0599
//! // No Default, no public constructor.
//! let forged = trustos_kernel::verify::VerifiedDecision::default();
//! ```
//!
//! ```compile_fail,E0277
//! // Not deserializable from attacker-supplied JSON.
//! let forged: trustos_kernel::verify::VerifiedDecision = serde_json::from_str("{}").unwrap();
//! ```
//!
//! ```compile_fail,E0277
//! // Not cloneable: one verification, one value.
//! use trustos_kernel::verify::VerifiedDecision;
//! fn copy(decision: &VerifiedDecision) -> VerifiedDecision {
//!     <VerifiedDecision as Clone>::clone(decision)
//! }
//! ```
//!
//! The only way in:
//!
//! ```
//! use trustos_kernel::{jws, keys::*, objects::*, timestamp::Timestamp, canonical::Digest,
//!     verify::Verifier};
//! let key = GatewayKey::from_seed(&[9; 32]);
//! let fingerprint = Digest::of(b"the exact request");
//! let decision = PolicyDecision {
//!     object_type: DecisionType::V1, decision_id: "dec_1".into(), fingerprint,
//!     outcome: Outcome::Allow, reason_codes: vec![], policy_ids: vec!["p".into()],
//!     profile_fingerprint: Digest::of(b"profile"), reservations: vec![],
//!     issued_at: Timestamp::from_unix_millis(1_000).unwrap(),
//!     expires_at: Timestamp::from_unix_millis(61_000).unwrap(), mode: Mode::Hard,
//! };
//! let signed = jws::sign(&key, jws::TYP_DECISION, &decision).unwrap();
//! let verifier = Verifier::new(TrustedKeys::new([key.public().clone()]));
//! let now = Timestamp::from_unix_millis(2_000).unwrap();
//! let verified = verifier.verify_decision(&signed, &fingerprint, now).unwrap();
//! assert_eq!(verified.decision().decision_id, "dec_1");
//! ```

use crate::canonical::Digest;
use crate::jws::{self, JwsError, TYP_DECISION, TYP_RECEIPT};
use crate::keys::TrustedKeys;
use crate::objects::{Outcome, PolicyDecision, Receipt};
use crate::timestamp::Timestamp;

/// Why a decision or receipt did not verify. Each variant has a stable
/// [`reason_code`](Self::reason_code).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The JWS itself was refused.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// The signed payload is not a well-formed object of the expected type.
    #[error("signed payload is not a valid {object}: {reason}")]
    Shape {
        /// Expected object type.
        object: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The decision's expiry is at or before the clock.
    #[error("decision expired at {expires_at} (now {now})")]
    Expired {
        /// When it expired.
        expires_at: Timestamp,
        /// The clock used.
        now: Timestamp,
    },
    /// The decision was issued after the clock.
    #[error("decision is issued at {issued_at}, after now ({now})")]
    NotYetValid {
        /// When it was issued.
        issued_at: Timestamp,
        /// The clock used.
        now: Timestamp,
    },
    /// The decision does not allow the call.
    #[error("decision outcome is {}, not allow", .0.as_str())]
    NotAllowed(Outcome),
    /// The decision is for another request.
    #[error("decision is for fingerprint {decided}, but the request is {expected}")]
    FingerprintMismatch {
        /// The fingerprint recomputed from the outgoing request.
        expected: Digest,
        /// The fingerprint the decision was made for.
        decided: Digest,
    },
}

impl VerifyError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Jws(err) => err.reason_code(),
            Self::Shape { .. } => "OBJECT_INVALID",
            Self::Expired { .. } => "DECISION_EXPIRED",
            Self::NotYetValid { .. } => "DECISION_NOT_YET_VALID",
            Self::NotAllowed(_) => "DECISION_NOT_ALLOW",
            Self::FingerprintMismatch { .. } => "DECISION_FINGERPRINT_MISMATCH",
        }
    }
}

/// A decision whose signature verified, whatever it says. For audit tools; it unlocks nothing.
#[derive(Debug, Clone)]
pub struct SignedDecision {
    /// The decision.
    pub decision: PolicyDecision,
    /// Key id that signed it.
    pub kid: String,
}

/// A receipt whose signature verified.
#[derive(Debug, Clone)]
pub struct SignedReceipt {
    /// The receipt.
    pub receipt: Receipt,
    /// Key id that signed it.
    pub kid: String,
}

/// Any Trust OS signed object whose signature verified, told apart by its JWS `typ`.
#[derive(Debug, Clone)]
pub enum SignedObject {
    /// A `PolicyDecision.v1`.
    Decision(SignedDecision),
    /// A `Receipt.v1`.
    Receipt(SignedReceipt),
}

/// An allow decision, signed by a trusted gateway key, in force, for exactly this request.
///
/// Only [`Verifier::verify_decision`] makes one; see the module documentation.
#[derive(Debug)]
pub struct VerifiedDecision {
    decision: PolicyDecision,
    kid: String,
    jws: String,
}

impl VerifiedDecision {
    /// The decision.
    pub fn decision(&self) -> &PolicyDecision {
        &self.decision
    }

    /// Its id, under which single use is recorded.
    pub fn decision_id(&self) -> &str {
        &self.decision.decision_id
    }

    /// The fingerprint it is bound to (equal to the one the caller expected).
    pub fn fingerprint(&self) -> &Digest {
        &self.decision.fingerprint
    }

    /// Key id that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The compact JWS it was verified from, to forward or log.
    pub fn jws(&self) -> &str {
        &self.jws
    }
}

/// Checks that `decision` is in force at `now`: `issuedAt ≤ now < expiresAt`.
pub fn check_in_force(decision: &PolicyDecision, now: Timestamp) -> Result<(), VerifyError> {
    if now < decision.issued_at {
        return Err(VerifyError::NotYetValid {
            issued_at: decision.issued_at,
            now,
        });
    }
    if now >= decision.expires_at {
        return Err(VerifyError::Expired {
            expires_at: decision.expires_at,
            now,
        });
    }
    Ok(())
}

/// Verifies Trust OS signed objects against a set of trusted gateway keys.
#[derive(Clone, Debug)]
pub struct Verifier {
    keys: TrustedKeys,
}

impl Verifier {
    /// A verifier trusting exactly `keys`.
    pub fn new(keys: TrustedKeys) -> Self {
        Self { keys }
    }

    /// The trusted keys.
    pub fn keys(&self) -> &TrustedKeys {
        &self.keys
    }

    /// Checks a decision's signature and shape only, whatever its outcome or expiry.
    pub fn verify_decision_signature(&self, jws: &str) -> Result<SignedDecision, VerifyError> {
        let verified = jws::verify(jws, &self.keys, Some(TYP_DECISION))?;
        let decision = shape("PolicyDecision.v1", verified.payload)?;
        Ok(SignedDecision {
            decision,
            kid: verified.kid,
        })
    }

    /// The full check that yields a [`VerifiedDecision`]: signature, clock, allow, fingerprint.
    pub fn verify_decision(
        &self,
        jws: &str,
        expected_fingerprint: &Digest,
        now: Timestamp,
    ) -> Result<VerifiedDecision, VerifyError> {
        let SignedDecision { decision, kid } = self.verify_decision_signature(jws)?;
        check_in_force(&decision, now)?;
        if decision.outcome != Outcome::Allow {
            return Err(VerifyError::NotAllowed(decision.outcome));
        }
        if decision.fingerprint != *expected_fingerprint {
            return Err(VerifyError::FingerprintMismatch {
                expected: *expected_fingerprint,
                decided: decision.fingerprint,
            });
        }
        Ok(VerifiedDecision {
            decision,
            kid,
            jws: jws.to_owned(),
        })
    }

    /// Checks the signature and shape of a decision or a receipt, whichever `typ` says it is.
    pub fn verify_any(&self, jws: &str) -> Result<SignedObject, VerifyError> {
        let verified = jws::verify(jws, &self.keys, None)?;
        match verified.typ.as_str() {
            TYP_DECISION => Ok(SignedObject::Decision(SignedDecision {
                decision: shape("PolicyDecision.v1", verified.payload)?,
                kid: verified.kid,
            })),
            TYP_RECEIPT => Ok(SignedObject::Receipt(SignedReceipt {
                receipt: shape("Receipt.v1", verified.payload)?,
                kid: verified.kid,
            })),
            other => Err(VerifyError::Jws(JwsError::WrongTyp {
                expected: format!("{TYP_DECISION} or {TYP_RECEIPT}"),
                found: other.to_owned(),
            })),
        }
    }

    /// Checks a receipt's signature and shape.
    pub fn verify_receipt(&self, jws: &str) -> Result<SignedReceipt, VerifyError> {
        let verified = jws::verify(jws, &self.keys, Some(TYP_RECEIPT))?;
        let receipt = shape("Receipt.v1", verified.payload)?;
        Ok(SignedReceipt {
            receipt,
            kid: verified.kid,
        })
    }
}

/// Reads a verified payload as the object its `typ` names.
fn shape<T: serde::de::DeserializeOwned>(
    object: &'static str,
    payload: serde_json::Value,
) -> Result<T, VerifyError> {
    serde_json::from_value(payload).map_err(|err| VerifyError::Shape {
        object,
        reason: err.to_string(),
    })
}
