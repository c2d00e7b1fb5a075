//! Attempts to pass off a receipt as logged when it is not, or under a checkpoint the gateway
//! did not sign (invariant 7).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::checkpoint::{self, Checkpoint};
use trustos_kernel::jws::{self, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};

fn setup() -> (common::Golden, ReceiptBundle, TrustedKeys) {
    let golden = common::golden();
    let bundle = ReceiptBundle::from_json(&golden.bundle_json).unwrap();
    let keys = TrustedKeys::new([golden.key.public().clone()]);
    (golden, bundle, keys)
}

fn code(bundle: &ReceiptBundle, keys: &TrustedKeys) -> &'static str {
    bundle.verify(keys).unwrap_err().reason_code()
}

#[test]
fn the_golden_bundle_verifies_and_can_be_pinned_to_its_log() {
    let (golden, bundle, keys) = setup();
    let verified = bundle.verify_in_log(&keys, Some(common::ORIGIN)).unwrap();
    assert_eq!(verified.leaf_index, 6);
    assert_eq!(verified.tree_size, golden.tree_size);
    assert_eq!(
        bundle
            .verify_in_log(&keys, Some("trustos.example/other-log"))
            .unwrap_err()
            .reason_code(),
        "CHECKPOINT_ORIGIN_MISMATCH"
    );
}

#[test]
fn a_genuine_receipt_that_was_never_logged_is_refused() {
    let (golden, mut bundle, keys) = setup();
    // Signed by the gateway key, same log index, but not the leaf in the tree.
    let mut receipt = golden.receipt.clone();
    receipt.receipt_id = "rcpt_never_logged".into();
    bundle.receipt = jws::sign(&golden.key, TYP_RECEIPT, &receipt).unwrap();
    assert_eq!(code(&bundle, &keys), "PROOF_ROOT_MISMATCH");
}

#[test]
fn proofs_of_the_wrong_length_or_encoding_are_refused() {
    let (_, bundle, keys) = setup();
    let mut longer = bundle.clone();
    longer
        .inclusion_proof
        .hashes
        .push(STANDARD.encode([0u8; 32]));
    assert_eq!(code(&longer, &keys), "PROOF_WRONG_LENGTH");
    let mut shorter = bundle.clone();
    shorter.inclusion_proof.hashes.pop();
    assert_eq!(code(&shorter, &keys), "PROOF_WRONG_LENGTH");
    let mut short_hash = bundle.clone();
    short_hash.inclusion_proof.hashes[1] = STANDARD.encode([0u8; 31]);
    assert_eq!(code(&short_hash, &keys), "PROOF_HASH_INVALID");
    let mut not_base64 = bundle;
    not_base64.inclusion_proof.hashes[0] = "not base64!".into();
    assert_eq!(code(&not_base64, &keys), "PROOF_HASH_INVALID");
}

#[test]
fn checkpoints_not_signed_by_the_gateway_under_the_log_origin_are_refused() {
    let (golden, bundle, keys) = setup();
    let body = checkpoint::note_text(&bundle.checkpoint)
        .unwrap()
        .to_owned();

    let mut other_name = bundle.clone();
    other_name.checkpoint =
        checkpoint::sign_note(&body, "someone.else/log", golden.key.signing_key()).unwrap();
    assert_eq!(code(&other_name, &keys), "NOTE_UNKNOWN_KEY");

    let attacker = GatewayKey::from_seed(&[0x13; 32]);
    let mut forged = bundle.clone();
    forged.checkpoint =
        checkpoint::sign_note(&body, common::ORIGIN, attacker.signing_key()).unwrap();
    assert_eq!(code(&forged, &keys), "NOTE_UNKNOWN_KEY");

    let mut unsigned = bundle.clone();
    unsigned.checkpoint = body.clone();
    assert!(bundle.verify(&keys).is_ok());
    assert!(unsigned.verify(&keys).is_err());

    // A checkpoint for a bigger tree, signed, with the old proof: wrong tree size.
    let mut bigger = Checkpoint::parse(&body).unwrap();
    bigger.size += 1;
    let mut grown = bundle;
    grown.checkpoint = bigger
        .sign(common::ORIGIN, golden.key.signing_key())
        .unwrap();
    assert_eq!(code(&grown, &keys), "PROOF_TREE_SIZE_MISMATCH");
}

#[test]
fn bundle_json_is_read_strictly() {
    let (golden, _, _) = setup();
    let text = String::from_utf8(golden.bundle_json.clone()).unwrap();
    let duplicated = text.replacen("{\n", "{\n  \"type\": \"ReceiptBundle.v1\",\n", 1);
    assert_eq!(
        ReceiptBundle::from_json(duplicated.as_bytes())
            .unwrap_err()
            .reason_code(),
        "BUNDLE_MALFORMED"
    );
    let extra = text.replacen("{\n", "{\n  \"note\": \"trust me\",\n", 1);
    assert!(ReceiptBundle::from_json(extra.as_bytes()).is_err());
    let wrong_type = text.replace("ReceiptBundle.v1", "ReceiptBundle.v2");
    assert!(ReceiptBundle::from_json(wrong_type.as_bytes()).is_err());
}
