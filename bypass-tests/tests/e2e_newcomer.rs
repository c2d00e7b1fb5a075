//! The newcomer's path, end to end, with real parts only: `trustos init`, `trustos mcp` in a
//! Claude-style MCP config in front of `@modelcontextprotocol/server-everything`, driven by
//! `@modelcontextprotocol/inspector` in `--cli` mode (both from npm, pinned). A low-risk call
//! passes; a paid call is allowed and its receipt verifies with `trustos verify`; a call above
//! the approval threshold is held until `trustos approve`; an over-budget call is denied with a
//! reason the agent can read. The daemon is started on demand by the first shim.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use bypass_tests::gateway::Gateway;
use bypass_tests::{NodePackages, node_packages, output_with_timeout, trustos_bin};
use serde_json::{Value, json};

const INSPECTOR_TIMEOUT: Duration = Duration::from_secs(90);

/// `mcp-inspector --cli --config CONFIG --server everything --method tools/call …`
fn inspector(node: &NodePackages, config: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("node");
    cmd.arg(&node.inspector_launcher)
        .arg("--cli")
        .arg("--config")
        .arg(config)
        .arg("--server")
        .arg("everything")
        .args(args);
    cmd
}

fn run_json(cmd: Command) -> Value {
    let out = output_with_timeout(cmd, INSPECTOR_TIMEOUT).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|err| panic!("{err}: {stdout}"))
}

fn call_sum(node: &NodePackages, config: &std::path::Path, a: u32) -> Command {
    inspector(
        node,
        config,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            &format!("a={a}"),
            "--tool-arg",
            "b=1",
        ],
    )
}

fn text_of(result: &Value) -> String {
    result["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content: {result}"))
        .iter()
        .filter_map(|c| c["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_newcomer_guards_server_everything_from_a_claude_style_config() {
    let node = node_packages().unwrap();
    let gateway = Gateway::fresh("e2e").unwrap();
    let config = gateway.scratch("claude_desktop_config.json");
    let servers = json!({"mcpServers": {"everything": {
        "command": trustos_bin().unwrap(),
        "args": ["mcp", "--server", "everything", "--home", gateway.home(),
                 "node", node.server_everything, "stdio"],
    }}});
    std::fs::write(&config, serde_json::to_vec_pretty(&servers).unwrap()).unwrap();

    // The host lists the tools (the gateway pins them), then calls a low-risk one.
    let listed = run_json(inspector(&node, &config, &["--method", "tools/list"]));
    assert!(listed["tools"].as_array().unwrap().len() >= 10, "{listed}");
    let echo = run_json(inspector(
        &node,
        &config,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "echo",
            "--tool-arg",
            "message=hello",
        ],
    ));
    assert_eq!(text_of(&echo), "Echo: hello");
    assert!(echo["_meta"]["io.trustos/receipt"].is_null(), "{echo}");

    // A paid call within policy: allowed, run, receipted; the receipt verifies offline.
    let paid = run_json(call_sum(&node, &config, 100));
    assert_eq!(text_of(&paid), "The sum of 100 and 1 is 101.", "{paid}");
    let receipt = paid["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {paid}"));
    let receipt_file = gateway.scratch("receipt.jws");
    std::fs::write(&receipt_file, receipt).unwrap();
    let jwks = gateway.jwks_file().unwrap();
    let verified = gateway
        .trustos_plain(&[
            "verify",
            receipt_file.to_str().unwrap(),
            "--jwks",
            jwks.to_str().unwrap(),
        ])
        .unwrap();
    assert!(
        verified.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verified.stdout),
        String::from_utf8_lossy(&verified.stderr)
    );

    // Above the approval threshold: held until the operator approves with their own key.
    let held = std::thread::spawn({
        let cmd = call_sum(&node, &config, 600);
        move || run_json(cmd)
    });
    let decision = gateway.wait_for_hold().unwrap();
    let operator_key = gateway.home().join("operator/gateway.key.pem");
    let approved = gateway
        .trustos(&[
            "approve",
            &decision,
            "--key",
            operator_key.to_str().unwrap(),
        ])
        .unwrap();
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let held = held.join().unwrap();
    assert_eq!(text_of(&held), "The sum of 600 and 1 is 601.", "{held}");
    assert!(held["_meta"]["io.trustos/receipt"].is_string(), "{held}");

    // 100 + 600 spent of the 1000 daily budget: 400 more is denied, with what to change.
    let denied = run_json(call_sum(&node, &config, 400));
    assert_eq!(denied["isError"], true, "{denied}");
    let text = text_of(&denied);
    assert!(text.contains("BUDGET_DAILY_EXCEEDED"), "{text}");
    assert!(text.contains("raise the daily budget"), "{text}");
    // The tool never ran: its answer ("The sum of 400 and 1 is 401.") is nowhere.
    assert!(!text.contains("The sum of"), "{text}");

    // The route inventory shows what the gateway saw and how it treats each tool.
    let routes = gateway.trustos(&["routes", "--json"]).unwrap();
    let routes: Value = serde_json::from_slice(&routes.stdout).unwrap();
    let sum = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["server"] == "everything" && r["tool"] == "get-sum")
        .unwrap()
        .clone();
    assert_eq!(sum["risk"], "paid");
    assert_eq!(sum["pin"], "approved");
    drop(gateway);
}
