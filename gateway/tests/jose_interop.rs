//! Third-party verification: the fixture receipt verifies with an off-the-shelf JOSE library
//! (Python `joserfc`), with no Trust OS code, and its tampered twin does not.
//!
//! The test installs `joserfc` itself into a virtual environment under Cargo's test scratch
//! directory (PyPI), so it needs only `python3` with `venv` and `pip`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const JOSERFC: &str = "joserfc==1.8.0";

fn python_with_joserfc() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("jose-venv");
    let python = venv.join("bin/python");
    let has_joserfc = |python: &Path| {
        Command::new(python)
            .args(["-c", "import joserfc"])
            .status()
            .is_ok_and(|status| status.success())
    };
    if !has_joserfc(&python) {
        let created = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for the JOSE interoperability test");
        assert!(created.success(), "python3 -m venv failed");
        let installed = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                JOSERFC,
            ])
            .status()
            .unwrap();
        assert!(installed.success(), "pip install {JOSERFC} failed");
    }
    assert!(has_joserfc(&python));
    python
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn joserfc_verifies_the_receipt_and_rejects_its_tampered_twin() {
    let python = python_with_joserfc();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/verify_with_joserfc.py");

    let output = Command::new(&python)
        .arg(&script)
        .arg(fixture("jwks.json"))
        .arg(fixture("receipt.jws"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let verified: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verified["header"]["alg"], "EdDSA");
    assert_eq!(verified["header"]["typ"], "trustos-receipt.v1+jws");
    assert_eq!(verified["payload"]["type"], "Receipt.v1");
    assert_eq!(
        verified["payload"]["receiptId"],
        "rcpt_01JHGOLDEN0000000000000001"
    );

    // The payload joserfc returns is the one the kernel verified.
    let jwks = std::fs::read(fixture("jwks.json")).unwrap();
    let keys = trustos_kernel::keys::TrustedKeys::from_jwks_json(&jwks).unwrap();
    let jws = std::fs::read_to_string(fixture("receipt.jws")).unwrap();
    let ours = trustos_kernel::verify::Verifier::new(keys)
        .verify_receipt(jws.trim_end())
        .unwrap();
    assert_eq!(
        verified["payload"],
        serde_json::to_value(&ours.receipt).unwrap()
    );

    for twin in [
        "receipt.tampered-payload.jws",
        "receipt.wrong-key.jws",
        "receipt.alg-none.jws",
    ] {
        let output = Command::new(&python)
            .arg(&script)
            .arg(fixture("jwks.json"))
            .arg(fixture(twin))
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{twin}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stdout).starts_with("rejected: "));
    }
}
