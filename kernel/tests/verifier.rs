//! Attempts to get a `VerifiedDecision` (the only key to money movement, invariant 1) out of
//! anything but an in-force allow decision, signed by a trusted key, for exactly this request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{at, golden};
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::objects::{Mode, Outcome};
use trustos_kernel::verify::Verifier;

fn verifier() -> Verifier {
    Verifier::new(TrustedKeys::new([common::golden_key().public().clone()]))
}

fn code(
    result: Result<trustos_kernel::verify::VerifiedDecision, trustos_kernel::verify::VerifyError>,
) -> &'static str {
    result.map(|_| ()).unwrap_err().reason_code()
}

#[test]
fn the_golden_allow_decision_verifies() {
    let golden = golden();
    let verified = verifier()
        .verify_decision(&golden.decision_jws, &golden.fingerprint_digest, golden.now)
        .unwrap();
    assert_eq!(verified.decision_id(), golden.decision.decision_id);
    assert_eq!(verified.fingerprint(), &golden.fingerprint_digest);
    assert_eq!(verified.kid(), golden.key.kid());
    assert_eq!(verified.jws(), golden.decision_jws);
}

#[test]
fn the_validity_window_is_half_open() {
    let golden = golden();
    let verify = |now: &str| {
        verifier().verify_decision(&golden.decision_jws, &golden.fingerprint_digest, at(now))
    };
    assert!(verify("2026-01-15T12:00:00.000Z").is_ok());
    assert!(verify("2026-01-15T12:00:59.999Z").is_ok());
    assert_eq!(code(verify("2026-01-15T12:01:00.000Z")), "DECISION_EXPIRED");
    assert_eq!(code(verify("2027-01-01T00:00:00.000Z")), "DECISION_EXPIRED");
    assert_eq!(
        code(verify("2026-01-15T11:59:59.999Z")),
        "DECISION_NOT_YET_VALID"
    );
}

#[test]
fn deny_and_challenge_never_verify_in_any_mode() {
    let golden = golden();
    for outcome in [Outcome::Deny, Outcome::Challenge] {
        for mode in [Mode::Shadow, Mode::Soft, Mode::Hard] {
            let mut decision = golden.decision.clone();
            decision.outcome = outcome;
            decision.mode = mode;
            let signed = jws::sign(&golden.key, TYP_DECISION, &decision).unwrap();
            assert_eq!(
                code(verifier().verify_decision(&signed, &golden.fingerprint_digest, golden.now)),
                "DECISION_NOT_ALLOW"
            );
        }
    }
}

#[test]
fn a_decision_for_another_request_does_not_verify() {
    let golden = golden();
    let mut other = golden.fingerprint.clone();
    other.payment.as_mut().unwrap().amount = "10001".parse().unwrap();
    let other_digest = other.digest().unwrap();
    assert_eq!(
        code(verifier().verify_decision(&golden.decision_jws, &other_digest, golden.now)),
        "DECISION_FINGERPRINT_MISMATCH"
    );
}

#[test]
fn an_untrusted_key_or_a_forged_signature_does_not_verify() {
    let golden = golden();
    let attacker = GatewayKey::from_seed(&[0x66; 32]);
    let forged = jws::sign(&attacker, TYP_DECISION, &golden.decision).unwrap();
    assert_eq!(
        code(verifier().verify_decision(&forged, &golden.fingerprint_digest, golden.now)),
        "JWS_UNKNOWN_KID"
    );
    // Trusting the attacker's key as well does not let it speak for the golden key's kid.
    let header_with_golden_kid = golden.decision_jws.split('.').next().unwrap().to_owned();
    let (_, rest) = forged.split_once('.').unwrap();
    let relabeled = format!("{header_with_golden_kid}.{rest}");
    let both = Verifier::new(TrustedKeys::new([
        golden.key.public().clone(),
        attacker.public().clone(),
    ]));
    assert_eq!(
        code(both.verify_decision(&relabeled, &golden.fingerprint_digest, golden.now)),
        "JWS_BAD_SIGNATURE"
    );
}

#[test]
fn a_receipt_is_not_a_decision() {
    let golden = golden();
    assert_eq!(
        code(verifier().verify_decision(
            &golden.receipt_jws,
            &golden.fingerprint_digest,
            golden.now
        )),
        "JWS_WRONG_TYP"
    );
    // Even with a decision typ, a receipt payload has the wrong shape.
    let mislabeled = jws::sign(&golden.key, TYP_DECISION, &golden.receipt).unwrap();
    assert_eq!(
        code(verifier().verify_decision(&mislabeled, &golden.fingerprint_digest, golden.now)),
        "OBJECT_INVALID"
    );
    let receipt_typed_decision = jws::sign(&golden.key, TYP_RECEIPT, &golden.decision).unwrap();
    assert_eq!(
        verifier()
            .verify_receipt(&receipt_typed_decision)
            .unwrap_err()
            .reason_code(),
        "OBJECT_INVALID"
    );
}

#[test]
fn any_single_payload_byte_change_is_refused() {
    let golden = golden();
    let (header, rest) = golden.decision_jws.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for position in 0..payload.len() {
        let mut bytes = payload.as_bytes().to_vec();
        let original = bytes[position];
        bytes[position] = *alphabet.iter().find(|c| **c != original).unwrap();
        let tampered = format!("{header}.{}.{signature}", String::from_utf8(bytes).unwrap());
        assert!(
            verifier()
                .verify_decision(&tampered, &golden.fingerprint_digest, golden.now)
                .is_err(),
            "payload byte {position} changed and still verified"
        );
    }
}

#[test]
fn a_non_canonical_payload_signed_by_the_gateway_key_is_refused() {
    let golden = golden();
    let mut value = serde_json::to_value(&golden.decision).unwrap();
    let pretty = serde_json::to_vec_pretty(&value).unwrap();
    let signed = jws::sign_raw_payload_for_tests(&golden.key, TYP_DECISION, &pretty);
    assert_eq!(
        code(verifier().verify_decision(&signed, &golden.fingerprint_digest, golden.now)),
        "JWS_PAYLOAD_NOT_CANONICAL"
    );
    // Unknown members are refused even when canonical and signed.
    value["note"] = serde_json::Value::from("extra");
    let signed = jws::sign(&golden.key, TYP_DECISION, &value).unwrap();
    assert_eq!(
        code(verifier().verify_decision(&signed, &golden.fingerprint_digest, golden.now)),
        "OBJECT_INVALID"
    );
    let _ = Digest::of(b"");
}
