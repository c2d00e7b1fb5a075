//! The example files under `gateway/tests/fixtures/`: valid ones equal the kernel's golden
//! fixtures, and each tampered twin is one precise kind of damage to them.
//!
//! Regenerate with `TRUSTOS_BLESS=1 cargo test -p trustos --test fixtures` (after blessing the
//! kernel's golden fixtures) and review the diff.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../kernel/tests/common/mod.rs"]
mod common;

use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::checkpoint::{self, Checkpoint};
use trustos_kernel::jws::{self, TYP_RECEIPT};
use trustos_kernel::keys::GatewayKey;
use trustos_kernel::merkle::MemoryTree;
use trustos_kernel::objects::SafeIndex;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Every fixture file: name, bytes.
pub fn fixture_files() -> Vec<(&'static str, Vec<u8>)> {
    let golden = common::golden();
    let key = &golden.key;
    let receipt = &golden.receipt_jws;
    let (header, rest) = receipt.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();

    // One payload byte changed (a base64url character swapped for another).
    let mut tampered_payload = payload.as_bytes().to_vec();
    let middle = tampered_payload.len() / 2;
    tampered_payload[middle] = if tampered_payload[middle] == b'A' {
        b'B'
    } else {
        b'A'
    };
    let tampered_payload = String::from_utf8(tampered_payload).unwrap();

    let receipt_value = serde_json::to_value(&golden.receipt).unwrap();
    let canonical = serde_json_canonicalizer::to_string(&receipt_value).unwrap();
    let duplicate = canonical.replacen('{', r#"{"status":"failed","#, 1);
    // The same members in reverse key order: valid JSON, same value, not canonical. Built by
    // hand so it does not depend on how serde_json orders a map in this build.
    let object = receipt_value.as_object().unwrap();
    let mut keys: Vec<&String> = object.keys().collect();
    keys.sort();
    keys.reverse();
    let members: Vec<String> = keys
        .iter()
        .map(|key| {
            format!(
                "{}:{}",
                serde_json::to_string(key).unwrap(),
                serde_json_canonicalizer::to_string(&object[key.as_str()]).unwrap()
            )
        })
        .collect();
    let pretty = format!("{{{}}}", members.join(","));
    let other_key = GatewayKey::from_seed(&[0x42; 32]);
    let alg_none_header = URL_SAFE_NO_PAD.encode(format!(
        r#"{{"alg":"none","kid":"{}","typ":"{TYP_RECEIPT}"}}"#,
        key.kid()
    ));

    let bundle = ReceiptBundle::from_json(&golden.bundle_json).unwrap();
    let mut tampered_proof = bundle.clone();
    let mut first = STANDARD
        .decode(&tampered_proof.inclusion_proof.hashes[0])
        .unwrap();
    first[0] ^= 1;
    tampered_proof.inclusion_proof.hashes[0] = STANDARD.encode(first);

    // A proof for another tree size: the real proof for the tree one leaf smaller.
    let mut smaller = MemoryTree::new();
    for index in 0..5 {
        smaller.append(format!("earlier entry {index}").as_bytes());
    }
    smaller.append(golden.decision_jws.as_bytes());
    smaller.append(receipt.as_bytes());
    for index in 0..2 {
        smaller.append(format!("later entry {index}").as_bytes());
    }
    let mut other_size = bundle.clone();
    let receipt_index = golden.receipt.log_index.get();
    other_size.inclusion_proof = ReceiptBundle::new(
        receipt.clone(),
        golden.receipt.log_index,
        SafeIndex::new(smaller.size()).unwrap(),
        &smaller.inclusion_proof(receipt_index).unwrap(),
        String::new(),
    )
    .inclusion_proof;

    let mut unknown_checkpoint_key = bundle.clone();
    let body = checkpoint::note_text(&bundle.checkpoint).unwrap();
    unknown_checkpoint_key.checkpoint =
        checkpoint::sign_note(body, common::ORIGIN, other_key.signing_key()).unwrap();

    // Signed by the real key, but over another root: the note verifies, the proof must not.
    let mut parsed = Checkpoint::parse(body).unwrap();
    parsed.root[0] ^= 1;
    let mut rerooted = bundle.clone();
    rerooted.checkpoint =
        checkpoint::sign_note(&parsed.body(), common::ORIGIN, key.signing_key()).unwrap();

    let mut wrong_index = bundle.clone();
    wrong_index.inclusion_proof.leaf_index = SafeIndex::new(receipt_index + 1).unwrap();

    let line = |text: &str| format!("{text}\n").into_bytes();
    vec![
        ("receipt.jws", line(receipt)),
        ("decision.jws", line(&golden.decision_jws)),
        ("bundle.json", golden.bundle_json.clone()),
        ("jwks.json", golden.jwks_json.clone()),
        (
            "receipt.tampered-payload.jws",
            line(&format!("{header}.{tampered_payload}.{signature}")),
        ),
        (
            "receipt.truncated-signature.jws",
            // 80 base64url characters: the first 60 of the 64 signature bytes.
            line(&format!("{header}.{payload}.{}", &signature[..80])),
        ),
        (
            "receipt.wrong-key.jws",
            line(&jws::sign(&other_key, TYP_RECEIPT, &golden.receipt).unwrap()),
        ),
        (
            "receipt.duplicate-key.jws",
            line(&jws::sign_raw_payload_for_tests(
                key,
                TYP_RECEIPT,
                duplicate.as_bytes(),
            )),
        ),
        (
            "receipt.reordered.jws",
            line(&jws::sign_raw_payload_for_tests(
                key,
                TYP_RECEIPT,
                pretty.as_bytes(),
            )),
        ),
        (
            "receipt.alg-none.jws",
            line(&format!("{alg_none_header}.{payload}.")),
        ),
        (
            "receipt.malformed.jws",
            line(&format!("{header}.{payload}")),
        ),
        (
            "bundle.tampered-proof.json",
            tampered_proof.to_json_pretty(),
        ),
        ("bundle.other-tree-size.json", other_size.to_json_pretty()),
        (
            "bundle.unknown-checkpoint-key.json",
            unknown_checkpoint_key.to_json_pretty(),
        ),
        ("bundle.tampered-root.json", rerooted.to_json_pretty()),
        ("bundle.wrong-index.json", wrong_index.to_json_pretty()),
    ]
}

#[test]
fn fixtures_are_up_to_date() {
    let bless = std::env::var_os("TRUSTOS_BLESS").is_some();
    for (name, bytes) in fixture_files() {
        let path = fixtures_dir().join(name);
        if bless {
            fs::write(&path, &bytes).unwrap();
            continue;
        }
        let checked_in = fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        assert_eq!(
            String::from_utf8_lossy(&checked_in),
            String::from_utf8_lossy(&bytes),
            "{name} is out of date"
        );
    }
}

#[test]
fn valid_fixtures_are_the_kernel_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kernel/tests/golden");
    let pairs = [
        ("receipt.jws", "receipt.v1.jws"),
        ("decision.jws", "policy-decision.v1.jws"),
        ("bundle.json", "receipt-bundle.v1.json"),
        ("jwks.json", "jwks.json"),
    ];
    for (fixture, golden_name) in pairs {
        let fixture_bytes = fs::read(fixtures_dir().join(fixture)).unwrap();
        let golden_bytes = fs::read(golden.join(golden_name)).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&fixture_bytes).trim_end(),
            String::from_utf8_lossy(&golden_bytes).trim_end(),
            "{fixture} differs from kernel golden {golden_name}"
        );
    }
}
