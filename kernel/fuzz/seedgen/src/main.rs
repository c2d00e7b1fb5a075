//! Writes the signed seed inputs of the fuzz targets into `kernel/fuzz/seeds/`: JWS tokens signed
//! by the fuzzing key `GatewayKey::from_seed(&[7; 32])` for `jws`, and receipt bundles for
//! `bundle` (the kernel's golden bundle, signed by the golden test key, and one signed by the
//! fuzzing key). Hand-written seeds (plain JSON, signing-mode payloads) are checked in as they are.
//!
//! Usage: `cargo run --manifest-path seedgen/Cargo.toml` from `kernel/fuzz/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::checkpoint::{self, Checkpoint};
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::merkle::MemoryTree;
use trustos_kernel::objects::SafeIndex;

// The kernel's golden scenario, shared with its integration tests.
#[path = "../../../tests/common/mod.rs"]
mod common;

fn seeds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../seeds")
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = seeds().join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
    println!("wrote seeds/{target}/{name} ({} bytes)", bytes.len());
}

fn main() {
    let key = GatewayKey::from_seed(&[7; 32]);
    let golden = common::golden();

    // jws: tokens the fuzzing key really signed (they verify), and ones it signed that must not.
    write(
        "jws",
        "signed-object",
        jws::sign(&key, "t", &json!({"a": 1})).unwrap().as_bytes(),
    );
    write(
        "jws",
        "signed-receipt",
        jws::sign(&key, TYP_RECEIPT, &golden.receipt)
            .unwrap()
            .as_bytes(),
    );
    write(
        "jws",
        "signed-decision",
        jws::sign(&key, TYP_DECISION, &golden.decision)
            .unwrap()
            .as_bytes(),
    );
    write(
        "jws",
        "signed-noncanonical",
        jws::sign_raw_payload_for_tests(&key, "t", br#"{"b":1,"a":2}"#).as_bytes(),
    );
    write(
        "jws",
        "signed-duplicate-key",
        jws::sign_raw_payload_for_tests(&key, "t", br#"{"a":1,"a":2}"#).as_bytes(),
    );
    // Signed by the golden key, which the jws target does not trust.
    write("jws", "untrusted-receipt", golden.receipt_jws.as_bytes());

    // bundle: the golden bundle, and the same log rebuilt around a receipt of the fuzzing key.
    write("bundle", "golden-bundle.json", &golden.bundle_json);
    let receipt_jws = jws::sign(&key, TYP_RECEIPT, &golden.receipt).unwrap();
    let mut log = MemoryTree::new();
    for index in 0..golden.receipt.log_index.get() {
        log.append(format!("entry {index}").as_bytes());
    }
    let leaf = log.append(receipt_jws.as_bytes());
    log.append(b"later entry");
    let body = Checkpoint {
        origin: common::ORIGIN.into(),
        size: log.size(),
        root: log.root(),
        extensions: vec![],
    }
    .body();
    let note = checkpoint::sign_note(&body, common::ORIGIN, key.signing_key()).unwrap();
    let bundle = ReceiptBundle::new(
        receipt_jws,
        SafeIndex::new(leaf).unwrap(),
        SafeIndex::new(log.size()).unwrap(),
        &log.inclusion_proof(leaf).unwrap(),
        note,
    );
    write("bundle", "fuzz-key-bundle.json", &bundle.to_json_pretty());

    // The seeds meant to verify do, so the targets start from their deepest paths.
    let trusted = TrustedKeys::new([key.public().clone()]);
    for name in ["signed-object", "signed-receipt", "signed-decision"] {
        let token = fs::read_to_string(seeds().join("jws").join(name)).unwrap();
        jws::verify(&token, &trusted, None).unwrap();
    }
    let both = TrustedKeys::new([key.public().clone(), golden.key.public().clone()]);
    for name in ["golden-bundle.json", "fuzz-key-bundle.json"] {
        let bytes = fs::read(seeds().join("bundle").join(name)).unwrap();
        ReceiptBundle::from_json(&bytes)
            .unwrap()
            .verify(&both)
            .unwrap();
    }
    println!("signed seeds verify");
}
