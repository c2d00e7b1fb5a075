//! The `trustos` binary end to end: `verify` on the checked-in fixtures and their tampered twins,
//! `keygen` and `jwks`, exit codes (0 valid, 1 invalid, 2 usage) and `--json` output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn trustos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `trustos` with `TRUSTOS_HOME` set to `home`.
fn trustos_at(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(args)
        .env("TRUSTOS_HOME", home)
        .output()
        .unwrap()
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_fixture_receipt_verifies() {
    let output = trustos(&[
        "verify",
        &fixture("receipt.jws"),
        "--jwks",
        &fixture("jwks.json"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let line = stdout(&output);
    assert!(
        line.starts_with("valid: Receipt.v1 rcpt_01JHGOLDEN0000000000000001"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
}

#[test]
fn the_fixture_bundle_and_decision_verify() {
    let output = trustos(&[
        "verify",
        &fixture("bundle.json"),
        "--jwks",
        &fixture("jwks.json"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(
        stdout(&output).contains("included at index 6 of 10"),
        "{}",
        stdout(&output)
    );
    let output = trustos(&[
        "verify",
        &fixture("decision.jws"),
        "--jwks",
        &fixture("jwks.json"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(stdout(&output).contains("outcome allow"));
}

#[test]
fn changing_any_single_byte_of_the_receipt_payload_is_rejected() {
    let jws = fs::read_to_string(fixture("receipt.jws")).unwrap();
    let jws = jws.trim_end();
    let start = jws.find('.').unwrap() + 1;
    let end = jws.rfind('.').unwrap();
    let dir = scratch("bytes");
    let path = dir.join("receipt.jws");
    let path = path.to_str().unwrap();
    for position in start..end {
        let mut bytes = jws.as_bytes().to_vec();
        // Every position gets a different replacement, cycling through printable ASCII.
        let replacement = b'!' + ((position * 7) % 94) as u8;
        bytes[position] = if bytes[position] == replacement {
            b'~'
        } else {
            replacement
        };
        fs::write(path, &bytes).unwrap();
        let output = trustos(&["verify", path, "--jwks", &fixture("jwks.json")]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "byte {position} changed to {:?}: {}",
            bytes[position] as char,
            stdout(&output)
        );
        assert!(stdout(&output).starts_with("invalid: "));
    }
}

#[test]
fn each_tampered_twin_is_rejected_with_its_own_reason() {
    let cases = [
        ("receipt.tampered-payload.jws", "JWS_BAD_SIGNATURE"),
        ("receipt.truncated-signature.jws", "JWS_SIGNATURE_LENGTH"),
        ("receipt.wrong-key.jws", "JWS_UNKNOWN_KID"),
        ("receipt.duplicate-key.jws", "JWS_PAYLOAD_NOT_JSON"),
        ("receipt.reordered.jws", "JWS_PAYLOAD_NOT_CANONICAL"),
        ("receipt.alg-none.jws", "JWS_ALG_NONE"),
        ("receipt.malformed.jws", "JWS_MALFORMED"),
        ("bundle.tampered-proof.json", "PROOF_ROOT_MISMATCH"),
        ("bundle.other-tree-size.json", "PROOF_TREE_SIZE_MISMATCH"),
        ("bundle.unknown-checkpoint-key.json", "NOTE_UNKNOWN_KEY"),
        ("bundle.tampered-root.json", "PROOF_ROOT_MISMATCH"),
        ("bundle.wrong-index.json", "PROOF_INDEX_MISMATCH"),
    ];
    for (name, reason_code) in cases {
        let output = trustos(&["verify", &fixture(name), "--jwks", &fixture("jwks.json")]);
        assert_eq!(output.status.code(), Some(1), "{name}: {output:?}");
        let line = stdout(&output);
        assert!(
            line.starts_with(&format!("invalid: {reason_code}: ")),
            "{name}: expected {reason_code}, got {line}"
        );
        let json = trustos(&[
            "verify",
            &fixture(name),
            "--jwks",
            &fixture("jwks.json"),
            "--json",
        ]);
        assert_eq!(json.status.code(), Some(1));
        let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(report["valid"], false);
        assert_eq!(report["reasonCode"], reason_code, "{name}");
    }
}

#[test]
fn json_output_carries_the_verified_object() {
    let output = trustos(&[
        "verify",
        &fixture("bundle.json"),
        "--jwks",
        &fixture("jwks.json"),
        "--json",
    ]);
    assert_eq!(output.status.code(), Some(0));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["kind"], "bundle");
    assert_eq!(report["receipt"]["logIndex"], 6);
    assert_eq!(report["log"]["treeSize"], 10);
    assert_eq!(report["log"]["origin"], "trustos.example/log");
}

#[test]
fn decision_checks_at_a_time_and_for_a_fingerprint() {
    let decision = fixture("decision.jws");
    let jwks = fixture("jwks.json");
    let ok = trustos(&[
        "verify",
        &decision,
        "--jwks",
        &jwks,
        "--at",
        "2026-01-15T12:00:30.000Z",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    let late = trustos(&[
        "verify",
        &decision,
        "--jwks",
        &jwks,
        "--at",
        "2026-01-15T12:01:00.000Z",
    ]);
    assert_eq!(late.status.code(), Some(1));
    assert!(stdout(&late).starts_with("invalid: DECISION_EXPIRED: "));
    let other = format!("sha256:{}", "0".repeat(64));
    let mismatch = trustos(&[
        "verify",
        &decision,
        "--jwks",
        &jwks,
        "--fingerprint",
        &other,
    ]);
    assert_eq!(mismatch.status.code(), Some(1));
    assert!(stdout(&mismatch).starts_with("invalid: FINGERPRINT_MISMATCH: "));
    let receipt_at = trustos(&[
        "verify",
        &fixture("receipt.jws"),
        "--jwks",
        &jwks,
        "--at",
        "2026-01-15T12:00:30.000Z",
    ]);
    assert_eq!(receipt_at.status.code(), Some(2));
}

#[test]
fn a_bundle_can_be_pinned_to_its_log() {
    let bundle = fixture("bundle.json");
    let jwks = fixture("jwks.json");
    let pinned = trustos(&[
        "verify",
        &bundle,
        "--jwks",
        &jwks,
        "--origin",
        "trustos.example/log",
    ]);
    assert_eq!(pinned.status.code(), Some(0), "{pinned:?}");
    let other = trustos(&[
        "verify",
        &bundle,
        "--jwks",
        &jwks,
        "--origin",
        "trustos.example/other",
    ]);
    assert_eq!(other.status.code(), Some(1));
    assert!(stdout(&other).starts_with("invalid: CHECKPOINT_ORIGIN_MISMATCH: "));
}

#[test]
fn usage_errors_exit_2() {
    let jwks = fixture("jwks.json");
    let receipt = fixture("receipt.jws");
    let decision = fixture("decision.jws");
    let cases: [&[&str]; 7] = [
        &["verify"],
        &["verify", "/nonexistent/receipt.jws", "--jwks", &jwks],
        &["verify", &receipt, "--jwks", "/nonexistent/jwks.json"],
        // A JWKS that is not a JWKS is a configuration error, not an invalid receipt.
        &["verify", &receipt, "--jwks", &receipt],
        &["verify", &decision, "--jwks", &jwks, "--at", "yesterday"],
        &[
            "verify",
            &receipt,
            "--jwks",
            &jwks,
            "--origin",
            "trustos.example/log",
        ],
        &["no-such-command"],
    ];
    for args in cases {
        assert_eq!(trustos(args).status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn keygen_writes_a_private_key_and_jwks_publishes_it() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = scratch("keygen");
    let keys = dir.join("keys");
    let output = trustos(&["keygen", "--out", keys.to_str().unwrap(), "--json"]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let kid = report["kid"].as_str().unwrap().to_owned();
    let pem_path = keys.join("gateway.key.pem");
    let pem = fs::read_to_string(&pem_path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert_eq!(
        fs::metadata(&pem_path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let jwks = trustos(&["jwks", "--key", pem_path.to_str().unwrap()]);
    assert_eq!(jwks.status.code(), Some(0));
    let jwks: serde_json::Value = serde_json::from_slice(&jwks.stdout).unwrap();
    assert_eq!(jwks["keys"][0]["kid"], kid.as_str());
    assert_eq!(jwks["keys"][0]["kty"], "OKP");
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
    // The published JWK is the same key.
    let from_jwk = trustos(&[
        "jwks",
        "--key",
        keys.join("gateway.jwk.json").to_str().unwrap(),
    ]);
    let from_jwk: serde_json::Value = serde_json::from_slice(&from_jwk.stdout).unwrap();
    assert_eq!(from_jwk, jwks);

    // A second keygen into the same place never overwrites the key.
    let again = trustos(&["keygen", "--out", keys.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(fs::read_to_string(&pem_path).unwrap(), pem);
    assert_eq!(
        trustos(&["jwks", "--key", "/nonexistent.pem"])
            .status
            .code(),
        Some(2)
    );
}

/// `trustos quickstart --home DIR`: the real path (daemon, facilitator, paid tool server) in
/// a home that is kept, so what it wrote can be checked afterwards.
fn quickstart_in(home: &Path) -> Output {
    trustos(&["quickstart", "--home", home.to_str().unwrap()])
}

#[test]
fn quickstart_ends_in_a_bundle_that_verifies_offline() {
    let home = scratch("quickstart").join("home");
    let first = quickstart_in(&home);
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert!(stdout(&first).contains("receipt verified offline"));
    let out = home.join("quickstart");
    let jwks = out.join("jwks.json");
    let output = trustos(&[
        "verify",
        out.join("bundle.json").to_str().unwrap(),
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    // The home is never reused: a second run refuses it and changes nothing in it.
    let bundle = fs::read(out.join("bundle.json")).unwrap();
    let second = quickstart_in(&home);
    assert_eq!(second.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&second.stderr).contains("not empty"));
    assert_eq!(fs::read(out.join("bundle.json")).unwrap(), bundle);
    // Someone else's JWKS does not verify this gateway's bundle.
    let output = trustos(&[
        "verify",
        out.join("bundle.json").to_str().unwrap(),
        "--jwks",
        &fixture("jwks.json"),
    ]);
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn log_prove_prints_a_bundle_that_verifies_and_refuses_non_receipts() {
    let home = scratch("log");
    let with_home = |args: &[&str]| trustos_at(&home, args);
    // Before any data exists, the log commands say what to do.
    let empty = with_home(&["log", "checkpoint"]);
    assert_eq!(empty.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("trustos quickstart"));

    fs::remove_dir_all(&home).unwrap();
    assert_eq!(quickstart_in(&home).status.code(), Some(0));
    // The paid call's decision (0) and receipt (1), the denied decision, the held deploy's
    // challenge and approved decisions, and its receipt.
    let checkpoint = with_home(&["log", "checkpoint", "--json"]);
    assert_eq!(checkpoint.status.code(), Some(0), "{checkpoint:?}");
    let report: serde_json::Value = serde_json::from_slice(&checkpoint.stdout).unwrap();
    assert_eq!(report["treeSize"], 6);

    let bundle = with_home(&["log", "prove", "--index", "1"]);
    assert_eq!(bundle.status.code(), Some(0), "{bundle:?}");
    let bundle_path = home.join("proved.json");
    fs::write(&bundle_path, &bundle.stdout).unwrap();
    let jwks = home.join("quickstart/jwks.json");
    let verified = trustos(&[
        "verify",
        bundle_path.to_str().unwrap(),
        "--jwks",
        jwks.to_str().unwrap(),
    ]);
    assert_eq!(verified.status.code(), Some(0), "{verified:?}");
    assert!(stdout(&verified).contains("included at index 1 of 6"));

    // Index 0 is the decision; index 6 does not exist.
    let decision = with_home(&["log", "prove", "--index", "0"]);
    assert_eq!(decision.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&decision.stderr).contains("not a receipt"));
    assert_eq!(
        with_home(&["log", "prove", "--index", "6"]).status.code(),
        Some(2)
    );
}

#[test]
fn a_second_process_cannot_open_the_data_directory() {
    let home = scratch("second").join("home");
    let first = quickstart_in(&home);
    assert_eq!(first.status.code(), Some(0));
    let key = std::sync::Arc::new(
        trustos::keyfile::read_private_key(&home.join("keys/gateway.key.pem")).unwrap(),
    );
    let database = home.join("data/trustos.redb");
    let held = trustos::store::redb_store::RedbStore::open(&database, key, "ignored").unwrap();
    let blocked = trustos_at(&home, &["log", "checkpoint"]);
    assert_eq!(blocked.status.code(), Some(2));
    let message = String::from_utf8_lossy(&blocked.stderr);
    assert!(message.contains("open in another process"), "{message}");
    assert!(
        message.contains(&database.display().to_string()),
        "{message}"
    );
    drop(held);
}

#[test]
fn quickstart_leaves_an_editable_profile_in_the_home() {
    let home = scratch("quickstart-profile").join("home");
    assert_eq!(quickstart_in(&home).status.code(), Some(0));
    let profile = home.join("profiles/quickstart/profile.toml");
    let original = fs::read_to_string(&profile).unwrap();
    // The kept profile (and its Cedar rule beside it) is what the gateway enforced, and what
    // `trustos routes` reads: the paid forecast is budgeted, the deploy decided.
    let validated = trustos(&["profile", "validate", profile.to_str().unwrap()]);
    assert_eq!(validated.status.code(), Some(0), "{validated:?}");
    let routes = trustos_at(&home, &["routes", "--json"]);
    assert_eq!(routes.status.code(), Some(0), "{routes:?}");
    let listed = stdout(&routes);
    assert!(
        listed.contains("get_forecast") && listed.contains("deploy"),
        "{listed}"
    );
    // An edit that breaks it is refused with its line, never used.
    fs::write(
        &profile,
        original.replace("limit = \"15000\"", "limit = 12"),
    )
    .unwrap();
    let invalid = trustos(&["profile", "validate", profile.to_str().unwrap()]);
    assert_eq!(invalid.status.code(), Some(1));
    let message = format!(
        "{}{}",
        stdout(&invalid),
        String::from_utf8_lossy(&invalid.stderr)
    );
    assert!(message.contains("profile.toml:"), "{message}");
    assert!(message.contains("budgets[0].limit"), "{message}");
}
