//! Operator approvals of held calls: a signed `Approval.v1`, made by `trustos approve` with an
//! operator's own Ed25519 key and checked by the daemon against the profile's approvers.
//!
//! The approval names the decision it answers and that decision's request fingerprint, so it
//! cannot be replayed onto another call. It is JCS + compact JWS like every signed object
//! (`typ` [`TYP_APPROVAL`], `kid` the RFC 7638 thumbprint of the operator key).

use serde::{Deserialize, Serialize};
use trustos_kernel::canonical::{CanonicalError, Digest};
use trustos_kernel::jws::{self, JwsError};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::timestamp::Timestamp;

/// JWS `typ` of an approval.
pub const TYP_APPROVAL: &str = "trustos-approval.v1+jws";

/// The object tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApprovalType {
    /// Version 1.
    #[serde(rename = "Approval.v1")]
    V1,
}

/// What the operator decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Let the held call go ahead.
    Approve,
    /// Refuse it now.
    Reject,
}

/// One operator's answer to one held decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// Object tag.
    #[serde(rename = "type")]
    pub object_type: ApprovalType,
    /// The challenged decision.
    pub decision_id: String,
    /// Its request fingerprint.
    pub fingerprint: Digest,
    /// Approve or reject.
    pub verdict: Verdict,
    /// When it was signed.
    pub issued_at: Timestamp,
}

/// Why an approval was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalError {
    /// The signature, key or header is wrong.
    #[error("approval signature: {0}")]
    Jws(#[from] JwsError),
    /// The payload is not an `Approval.v1`.
    #[error("approval payload: {0}")]
    Shape(String),
    /// Could not be encoded.
    #[error("approval encoding: {0}")]
    Canonical(#[from] CanonicalError),
}

impl Approval {
    /// Signs the approval with an operator key.
    pub fn sign(&self, key: &GatewayKey) -> Result<String, ApprovalError> {
        Ok(jws::sign(key, TYP_APPROVAL, self)?)
    }

    /// Verifies a signed approval against operator keys; returns it with the signer's key id.
    pub fn verify(jws_text: &str, keys: &TrustedKeys) -> Result<(Approval, String), ApprovalError> {
        let verified = jws::verify(jws_text, keys, Some(TYP_APPROVAL))?;
        let approval: Approval = serde_json::from_value(verified.payload)
            .map_err(|err| ApprovalError::Shape(err.to_string()))?;
        Ok((approval, verified.kid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Approval {
        Approval {
            object_type: ApprovalType::V1,
            decision_id: "dec_1".into(),
            fingerprint: Digest::of(b"request"),
            verdict: Verdict::Approve,
            issued_at: Timestamp::from_unix_millis(1_700_000_000_000).unwrap(),
        }
    }

    #[test]
    fn round_trips_and_binds_the_signer() {
        let alice = GatewayKey::from_seed(&[1; 32]);
        let mallory = GatewayKey::from_seed(&[2; 32]);
        let signed = sample().sign(&alice).unwrap();
        let (approval, kid) =
            Approval::verify(&signed, &TrustedKeys::new([alice.public().clone()])).unwrap();
        assert_eq!(approval, sample());
        assert_eq!(kid, alice.kid());
        assert!(Approval::verify(&signed, &TrustedKeys::new([mallory.public().clone()])).is_err());
    }

    #[test]
    fn a_decision_is_not_an_approval() {
        let alice = GatewayKey::from_seed(&[1; 32]);
        let other = jws::sign(&alice, jws::TYP_DECISION, &sample()).unwrap();
        assert!(Approval::verify(&other, &TrustedKeys::new([alice.public().clone()])).is_err());
    }
}
