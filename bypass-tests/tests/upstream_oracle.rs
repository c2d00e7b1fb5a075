//! The scaffolding works without a gateway: the recording upstream answers like an MCP server
//! and records exactly what it received, and the pinned npm client and server talk to each
//! other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bypass_tests::{Recorder, StdioPeer, TempDir, node_packages, output_with_timeout};
use serde_json::{Value, json};

const UPSTREAM: &str = env!("CARGO_BIN_EXE_trustos-recording-upstream");
const TIMEOUT: Duration = Duration::from_secs(20);

/// The texts of a `tools/call` response's content items.
fn texts(response: &Value) -> Vec<String> {
    response["result"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content in {response}"))
        .iter()
        .map(|item| item["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn start(recorder: &Recorder, variant: Option<&str>) -> StdioPeer {
    StdioPeer::spawn(recorder.upstream_command(UPSTREAM, variant)).unwrap()
}

#[test]
fn upstream_answers_and_records_every_byte() {
    let dir = TempDir::new("oracle").unwrap();
    let recorder = Recorder::in_dir(dir.path());
    let mut peer = start(&recorder, None);

    let init = peer.initialize("2025-06-18").unwrap();
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert_eq!(init["serverInfo"]["name"], "trustos-recording-upstream");

    let listed = peer.request(1, "tools/list", json!({}), TIMEOUT).unwrap();
    let tools = listed["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "delete_database",
            "deploy",
            "echo",
            "read_balance",
            "transfer"
        ]
    );
    let delete = tools
        .iter()
        .find(|t| t["name"] == "delete_database")
        .unwrap();
    assert_eq!(delete["annotations"]["destructiveHint"], true);
    let transfer = tools.iter().find(|t| t["name"] == "transfer").unwrap();
    assert_eq!(
        transfer["inputSchema"]["properties"]["amount"]["type"],
        "string"
    );

    let echoed = peer
        .request(
            2,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "hi"}}),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(texts(&echoed), ["echo: hi", "decision: absent"]);

    // Unusual spacing, key order and an escaped slash, sent as raw bytes.
    let odd = "{ \"params\" :{\"arguments\":{\"message\":\"a\\/b  c\"},\"name\":\"echo\",\"_meta\":{\"io.trustos/decision\":\"x\"}} ,\"method\":\"tools/call\",\t\"id\":\"s-3\",\"jsonrpc\":\"2.0\"}";
    peer.send_line(odd).unwrap();
    let answered = peer.recv_matching(&json!("s-3"), TIMEOUT).unwrap();
    assert_eq!(texts(&answered), ["echo: a/b  c", "decision: present"]);

    let deleted = peer
        .request(
            4,
            "tools/call",
            json!({"name": "delete_database", "arguments": {"name": "prod"}}),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(texts(&deleted), ["deleted prod", "decision: absent"]);

    // The record holds exactly the bytes sent, one line each, in order.
    let lines = recorder.wait_for_lines(6, TIMEOUT).unwrap();
    let sent: Vec<Vec<u8>> = [
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "trustos-bypass-tests", "version": env!("CARGO_PKG_VERSION")},
        }})
        .to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).to_string(),
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "hi"}}})
        .to_string(),
        odd.to_owned(),
        json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call",
            "params": {"name": "delete_database", "arguments": {"name": "prod"}}})
        .to_string(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect();
    assert_eq!(lines, sent);
    assert_eq!(recorder.tool_calls().len(), 3);
    assert_eq!(recorder.tool_calls()[1]["id"], "s-3");
    recorder.assert_no_tool_call_named("deploy");
    recorder.assert_no_tool_call_named("transfer");
    assert!(recorder.unparseable_lines().is_empty());

    // Garbage is recorded too, and the server keeps serving.
    peer.send_raw(b"not json \xff\r\n").unwrap();
    let pinged = peer.request(5, "ping", Value::Null, TIMEOUT).unwrap();
    assert_eq!(pinged["result"], json!({}));
    let lines = recorder.wait_for_lines(8, TIMEOUT).unwrap();
    assert_eq!(lines[6], b"not json \xff\r");
    assert_eq!(recorder.unparseable_lines().len(), 1);

    peer.close_stdin();
    assert!(peer.wait_exit(TIMEOUT).unwrap().success());
}

#[test]
fn upstream_speaks_2025_11_25_and_variants() {
    let dir = TempDir::new("oracle").unwrap();

    let recorder = Recorder::in_dir(dir.path());
    let mut plain = start(&recorder, None);
    assert_eq!(
        plain.initialize("2025-11-25").unwrap()["protocolVersion"],
        "2025-11-25"
    );
    let plain_tools = plain.request(1, "tools/list", json!({}), TIMEOUT).unwrap();

    let recorder = Recorder::new(dir.join("rugpull.jsonl"));
    let mut rugpull = start(&recorder, Some("rugpull"));
    rugpull.initialize("2025-06-18").unwrap();
    let rugpull_tools = rugpull
        .request(1, "tools/list", json!({}), TIMEOUT)
        .unwrap();
    let description = |tools: &Value| {
        tools["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "echo")
            .unwrap()["description"]
            .clone()
    };
    assert_ne!(description(&plain_tools), description(&rugpull_tools));

    let recorder = Recorder::new(dir.join("extra.jsonl"));
    let mut extra = start(&recorder, Some("extra"));
    extra.initialize("2025-06-18").unwrap();
    let extra_tools = extra.request(1, "tools/list", json!({}), TIMEOUT).unwrap();
    assert_eq!(extra_tools["result"]["tools"].as_array().unwrap().len(), 6);
    let stored = extra
        .request(
            2,
            "tools/call",
            json!({"name": "exfiltrate", "arguments": {"data": "abc"}}),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(texts(&stored), ["stored 3 bytes", "decision: absent"]);
    assert_eq!(recorder.tool_call_names(), ["exfiltrate"]);
}

#[test]
fn inspector_cli_lists_server_everything_tools_over_stdio() {
    let node = node_packages().unwrap();
    let mut cmd = node.inspector_cli();
    cmd.arg("node")
        .arg(&node.server_everything)
        .args(["stdio", "--method", "tools/list"]);
    let output = output_with_timeout(cmd, Duration::from_secs(60)).unwrap();
    assert!(
        output.status.success(),
        "inspector CLI failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "tools: {names:?}");
}
