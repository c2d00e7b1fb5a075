//! Golden fixtures: the protocol objects made with a fixed test key and a fixed clock must come
//! out byte for byte as checked in under `kernel/tests/golden/`, and every fixture must validate
//! against its JSON Schema under `kernel/schemas/`.
//!
//! To regenerate after an intended protocol change: `TRUSTOS_BLESS=1 cargo test -p
//! trustos-kernel --test golden`, then review the diff: any change is a wire-format change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical;
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::verify::Verifier;

use common::{Golden, golden};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn check_or_bless(name: &str, produced: &[u8]) {
    let path = golden_dir().join(name);
    if std::env::var_os("TRUSTOS_BLESS").is_some() {
        fs::create_dir_all(golden_dir()).unwrap();
        fs::write(&path, produced).unwrap();
        return;
    }
    let checked_in = fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert_eq!(
        String::from_utf8_lossy(produced),
        String::from_utf8_lossy(&checked_in),
        "{name} differs from the golden fixture"
    );
}

fn files(golden: &Golden) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "request-fingerprint.v1.json",
            canonical::to_jcs(&golden.fingerprint).unwrap(),
        ),
        (
            "request-fingerprint.v1.digest",
            golden.fingerprint_digest.to_string().into_bytes(),
        ),
        (
            "policy-decision.v1.json",
            canonical::to_jcs(&golden.decision).unwrap(),
        ),
        (
            "policy-decision.v1.jws",
            golden.decision_jws.clone().into_bytes(),
        ),
        (
            "receipt.v1.json",
            canonical::to_jcs(&golden.receipt).unwrap(),
        ),
        ("receipt.v1.jws", golden.receipt_jws.clone().into_bytes()),
        ("receipt-bundle.v1.json", golden.bundle_json.clone()),
        (
            "checkpoint.note",
            golden.checkpoint_note.clone().into_bytes(),
        ),
        ("jwks.json", golden.jwks_json.clone()),
    ]
}

#[test]
fn objects_are_produced_byte_for_byte() {
    let golden = golden();
    for (name, produced) in files(&golden) {
        check_or_bless(name, &produced);
    }
}

#[test]
fn producing_twice_gives_identical_bytes() {
    let first = files(&golden());
    let second = files(&golden());
    assert_eq!(first, second);
}

fn validator(schema_file: &str) -> jsonschema::Validator {
    struct LocalSchemas;
    impl jsonschema::Retrieve for LocalSchemas {
        fn retrieve(
            &self,
            uri: &jsonschema::Uri<String>,
        ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
            let name = uri
                .as_str()
                .strip_prefix("https://schemas.trustos.dev/kernel/")
                .ok_or_else(|| format!("no local schema for {uri}"))?;
            let text = fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("schemas")
                    .join(name),
            )?;
            Ok(serde_json::from_slice(&text)?)
        }
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(schema_file);
    let schema: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    jsonschema::draft202012::meta::validate(&schema)
        .unwrap_or_else(|err| panic!("{schema_file} is not a valid 2020-12 schema: {err}"));
    jsonschema::options()
        .with_retriever(LocalSchemas)
        .build(&schema)
        .unwrap_or_else(|err| panic!("{schema_file}: {err}"))
}

fn assert_valid(schema_file: &str, instance: &Value) {
    let validator = validator(schema_file);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|err| format!("{} at {}", err, err.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{schema_file}: {errors:#?}");
}

fn read_golden(name: &str) -> Value {
    serde_json::from_slice(&fs::read(golden_dir().join(name)).unwrap()).unwrap()
}

#[test]
fn every_fixture_validates_against_its_schema() {
    assert_valid(
        "request-fingerprint.v1.schema.json",
        &read_golden("request-fingerprint.v1.json"),
    );
    assert_valid(
        "policy-decision.v1.schema.json",
        &read_golden("policy-decision.v1.json"),
    );
    assert_valid("receipt.v1.schema.json", &read_golden("receipt.v1.json"));
    assert_valid(
        "receipt-bundle.v1.schema.json",
        &read_golden("receipt-bundle.v1.json"),
    );
}

#[test]
fn schemas_refuse_what_the_types_refuse() {
    let mut receipt = read_golden("receipt.v1.json");
    receipt["logIndex"] = Value::from(9_007_199_254_740_992_u64);
    assert!(!validator("receipt.v1.schema.json").is_valid(&receipt));
    let mut decision = read_golden("policy-decision.v1.json");
    decision["reservations"][0]["amount"] = Value::from(1_000_000);
    assert!(!validator("policy-decision.v1.schema.json").is_valid(&decision));
    decision["reservations"][0]["amount"] = Value::from("01000000");
    assert!(!validator("policy-decision.v1.schema.json").is_valid(&decision));
    let mut fingerprint = read_golden("request-fingerprint.v1.json");
    fingerprint["unexpected"] = Value::from(true);
    assert!(!validator("request-fingerprint.v1.schema.json").is_valid(&fingerprint));
}

#[test]
fn fixtures_verify_with_the_kernel() {
    let golden = golden();
    let keys = TrustedKeys::from_jwks_json(&golden.jwks_json).unwrap();
    let verifier = Verifier::new(keys.clone());
    let decision = verifier
        .verify_decision(&golden.decision_jws, &golden.fingerprint_digest, golden.now)
        .unwrap();
    assert_eq!(decision.decision(), &golden.decision);
    let receipt = verifier.verify_receipt(&golden.receipt_jws).unwrap();
    assert_eq!(receipt.receipt, golden.receipt);
    let bundle = ReceiptBundle::from_json(&golden.bundle_json).unwrap();
    let verified = bundle.verify(&keys).unwrap();
    assert_eq!(verified.receipt, golden.receipt);
    assert_eq!(verified.tree_size, golden.tree_size);
}
