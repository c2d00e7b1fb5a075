//! `trustos adapters conformance --json` as an operator runs it: every check of every adapter is
//! listed and passes, and the exit code says so. The kill-and-restart check here kills real
//! worker processes with SIGKILL.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_matrix_lists_every_check_for_x402_and_circle_all_passing() {
    let output = Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(["adapters", "conformance", "--json"])
        .output()
        .expect("trustos runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let matrix: Value = serde_json::from_str(&stdout).expect("JSON matrix");
    assert_eq!(matrix["passed"], true);
    let checks: Vec<&str> = matrix["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|check| check["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        checks,
        [
            "decision_required",
            "terms_bound",
            "concurrent_retries",
            "crash_recovery",
            "unknown_not_repaid",
            "receipt_reference"
        ]
    );
    let adapters = matrix["adapters"].as_array().expect("adapters");
    let names: Vec<&str> = adapters
        .iter()
        .map(|adapter| adapter["adapter"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["x402", "circle"]);
    for adapter in adapters {
        let results = adapter["checks"].as_array().expect("results");
        assert_eq!(results.len(), checks.len());
        for (result, id) in results.iter().zip(&checks) {
            assert_eq!(result["check"], *id);
            assert_eq!(result["passed"], true, "{}: {result}", adapter["adapter"]);
        }
        let crash = &results[3]["detail"];
        assert!(
            crash
                .as_str()
                .is_some_and(|detail| detail.contains("SIGKILL")
                    && detail.contains("0 doubled, 0 unrecorded")),
            "{crash}"
        );
    }
}

#[test]
fn one_adapter_can_be_chosen_and_a_bad_name_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(["adapters", "conformance", "--adapter", "circle"])
        .output()
        .expect("trustos runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("circle") && !stdout.contains("x402/"),
        "{stdout}"
    );
    assert!(stdout.contains("every check passed"), "{stdout}");

    let bad = Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(["adapters", "conformance", "--adapter", "paypal"])
        .output()
        .expect("trustos runs");
    assert_eq!(bad.status.code(), Some(2));
}
