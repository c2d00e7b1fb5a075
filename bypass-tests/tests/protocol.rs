//! Protocol behaviour through the relay with real upstreams: each era's rules (batches enforced
//! element by element in 2025-03-26, stateless requests in 2026-07-28), progress tokens and the
//! decision sharing `_meta`, and a stdio host in front of a Streamable HTTP upstream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bypass_tests::gateway::{Gateway, SERVER, TIMEOUT, call, result_text};
use bypass_tests::{Recorder, StdioPeer, node_packages, trustos_bin};
use serde_json::{Value, json};

const UPSTREAM: &str = env!("CARGO_BIN_EXE_trustos-recording-upstream");

fn codes(response: &Value) -> Vec<String> {
    if let Some(reason) = response["error"]["data"]["reason"].as_str() {
        return vec![reason.to_owned()];
    }
    response["result"]["_meta"]["io.trustos/reasons"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn batches_in_2025_03_26_are_enforced_element_by_element() {
    let gateway = Gateway::start("batch-2025-03-26").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = gateway
        .shim(
            SERVER,
            "agent",
            Path::new(UPSTREAM),
            &recorder,
            None,
            "2025-03-26",
        )
        .unwrap();
    let batch = json!([
        call(1, "echo", json!({"message": "one"})),
        call(2, "deploy", json!({"service": "api", "version": "7"})),
        call(3, "delete_database", json!({"name": "prod", "extra": "x"})),
        call(4, "DEPLOY", json!({"service": "api", "version": "7"})),
        {"jsonrpc": "2.0", "method": "notifications/progress",
         "params": {"progressToken": "t", "progress": 1}}
    ]);
    peer.send_json(&batch).unwrap();
    let answer = peer.recv_json(TIMEOUT).unwrap();
    let answers = answer
        .as_array()
        .unwrap_or_else(|| panic!("not a batch answer: {answer}"));
    assert_eq!(answers.len(), 4, "{answer}");
    let by_id = |id: i64| answers.iter().find(|a| a["id"] == id).unwrap().clone();
    assert!(result_text(&by_id(1)).contains("echo: one"));
    assert!(
        by_id(2)["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );
    assert!(
        by_id(3)["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );
    assert_eq!(codes(&by_id(4)), ["TOOL_NOT_LISTED"]);
    std::thread::sleep(Duration::from_millis(300));
    let names = recorder.tool_call_names();
    assert!(names.contains(&"deploy".to_owned()) && !names.contains(&"DEPLOY".to_owned()));
    // Each element reached the upstream as its own message, never as the batch.
    assert!(recorder.lines().iter().all(|line| !line.starts_with('[')));
}

#[test]
fn stateless_2026_07_28_requests_are_enforced_without_a_handshake() {
    let gateway = Gateway::start("era-2026").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = StdioPeer::spawn(
        gateway
            .shim_command(SERVER, "agent", Path::new(UPSTREAM), &recorder, None)
            .unwrap(),
    )
    .unwrap();
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    let listed = peer
        .request(1, "tools/list", json!({"_meta": meta.clone()}), TIMEOUT)
        .unwrap();
    assert!(listed["result"]["tools"].is_array(), "{listed}");
    let mut deploy = call(2, "deploy", json!({"service": "api", "version": "8"}));
    deploy["params"]["_meta"] = meta.clone();
    peer.send_json(&deploy).unwrap();
    let answer = peer.recv_matching(&json!(2), TIMEOUT).unwrap();
    assert!(
        answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );
    // The decision joined the client's own _meta; the version stayed.
    let recorded = recorder.tool_calls();
    let forwarded = recorded
        .iter()
        .find(|c| c["params"]["name"] == "deploy")
        .unwrap();
    assert_eq!(
        forwarded["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
        "2026-07-28"
    );
    assert!(forwarded["params"]["_meta"]["io.trustos/decision"].is_string());
    // A batch is refused in this era too.
    peer.send_json(&json!([deploy])).unwrap();
    let refused = peer.recv_matching(&Value::Null, TIMEOUT).unwrap();
    assert_eq!(codes(&refused), ["MCP_BATCH_NOT_ALLOWED"]);
}

#[test]
fn progress_tokens_and_the_decision_share_meta_on_a_high_risk_call() {
    let node = node_packages().unwrap();
    let gateway = Gateway::fresh("progress").unwrap();
    let mut cmd = std::process::Command::new(trustos_bin().unwrap());
    cmd.args(["mcp", "--server", "everything", "--home"])
        .arg(gateway.home())
        .arg("node")
        .arg(&node.server_everything)
        .arg("stdio")
        .stderr(Stdio::null());
    let mut peer = StdioPeer::spawn(cmd).unwrap();
    peer.initialize("2025-11-25").unwrap();
    peer.request("list", "tools/list", json!({}), TIMEOUT)
        .unwrap();
    // trigger-long-running-operation is high risk in the starter profile.
    let message = json!({"jsonrpc": "2.0", "id": "long", "method": "tools/call", "params": {
        "name": "trigger-long-running-operation",
        "arguments": {"duration": 1, "steps": 3},
        "_meta": {"progressToken": "p-1"}}});
    peer.send_json(&message).unwrap();
    let answer = peer.recv_matching(&json!("long"), TIMEOUT).unwrap();
    assert!(
        answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );
    let progress: Vec<Value> = peer
        .take_pending()
        .into_iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "no progress notifications arrived");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-1")
    );
    drop(gateway);
}

#[test]
fn a_stdio_host_reaches_a_streamable_http_upstream_through_the_shim() {
    let node = node_packages().unwrap();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut server = node.server_everything_http(port);
    server.stdout(Stdio::null()).stderr(Stdio::null());
    let mut server = server.spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let gateway = Gateway::fresh("http-upstream").unwrap();
    let mut cmd = std::process::Command::new(trustos_bin().unwrap());
    cmd.args([
        "mcp",
        "--server",
        "everything",
        "--url",
        &format!("http://127.0.0.1:{port}/mcp"),
    ])
    .arg("--home")
    .arg(gateway.home())
    .stderr(Stdio::null());
    let mut peer = StdioPeer::spawn(cmd).unwrap();
    peer.initialize("2025-11-25").unwrap();
    let listed = peer
        .request("list", "tools/list", json!({}), TIMEOUT)
        .unwrap();
    assert!(
        listed["result"]["tools"].as_array().unwrap().len() >= 10,
        "{listed}"
    );
    let echo = peer
        .request(
            1,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "via http"}}),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(result_text(&echo), "Echo: via http");
    let sum = peer
        .request(
            2,
            "tools/call",
            json!({"name": "get-sum", "arguments": {"a": 5, "b": 6}}),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(result_text(&sum), "The sum of 5 and 6 is 11.", "{sum}");
    assert!(
        sum["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{sum}"
    );
    let unclassified = peer
        .request(
            3,
            "tools/call",
            json!({"name": "gzip-file-as-resource", "arguments": {}}),
            TIMEOUT,
        )
        .unwrap();
    assert_eq!(codes(&unclassified), ["TOOL_UNCLASSIFIED"]);
    drop(peer);
    let _ = server.kill();
    let _ = server.wait();
}
