//! Bypass attempts against a running gateway. The oracle is the recording upstream: whatever the
//! test sends, a high-risk tool runs only with a decision the gateway signed for exactly that
//! call, once. Every bypass anyone thinks of becomes a case here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bypass_tests::gateway::{Gateway, SERVER, TEST_PROFILE, TIMEOUT, call, result_text};
use bypass_tests::{Recorder, StdioPeer};
use serde_json::{Value, json};
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::objects::{Amount, PaymentTerms, RequestFingerprint, Route};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

const UPSTREAM: &str = env!("CARGO_BIN_EXE_trustos-recording-upstream");
const PROTOCOL: &str = "2025-06-18";
const SILENCE: Duration = Duration::from_millis(300);

fn upstream() -> &'static Path {
    Path::new(UPSTREAM)
}

fn shim(gateway: &Gateway, recorder: &Recorder, agent: &str) -> StdioPeer {
    gateway
        .shim(SERVER, agent, upstream(), recorder, None, PROTOCOL)
        .unwrap()
}

fn now() -> Timestamp {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_unix_millis(u64::try_from(millis).unwrap()).unwrap()
}

fn send(peer: &mut StdioPeer, message: &Value) -> Value {
    let id = message["id"].clone();
    peer.send_json(message).unwrap();
    peer.recv_matching(&id, TIMEOUT).unwrap()
}

fn send_raw(peer: &mut StdioPeer, id: Value, line: &[u8]) -> Value {
    peer.send_raw(line).unwrap();
    peer.send_raw(b"\n").unwrap();
    peer.recv_matching(&id, TIMEOUT).unwrap()
}

/// The reason codes a refusal carries (tool error `_meta` or JSON-RPC error `data`).
fn reasons(response: &Value) -> Vec<String> {
    if let Some(reason) = response["error"]["data"]["reason"].as_str() {
        return vec![reason.to_owned()];
    }
    response["result"]["_meta"]["io.trustos/reasons"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn assert_refused(response: &Value, code: &str) {
    assert!(
        reasons(response).iter().any(|r| r == code),
        "expected {code}, got {response}"
    );
    if response.get("result").is_some() {
        assert_eq!(response["result"]["isError"], true, "{response}");
        assert!(response["result"]["_meta"]["io.trustos/receipt"].is_null());
    }
}

/// Recorded `tools/call`s of `tool` (by the recorder's lenient readings).
fn recorded_calls(recorder: &Recorder, tool: &str) -> Vec<Value> {
    recorder
        .tool_calls()
        .into_iter()
        .filter(|c| c["params"]["name"] == tool)
        .collect()
}

/// Checks, as an upstream would with the kernel, that a recorded call carries a decision the
/// gateway signed for exactly these arguments.
fn assert_verifiable(gateway: &Gateway, recorded: &Value, agent: &str) -> String {
    let jws = recorded["params"]["_meta"]["io.trustos/decision"]
        .as_str()
        .unwrap_or_else(|| panic!("no decision on {recorded}"));
    let jwks = std::fs::read(gateway.jwks_file().unwrap()).unwrap();
    let keys = TrustedKeys::from_jwks_json(&jwks).unwrap();
    let tool = recorded["params"]["name"].as_str().unwrap();
    let arguments = &recorded["params"]["arguments"];
    // A paid route binds the payment terms it read from the arguments (the profile's pointers).
    let terms = (tool == "transfer").then(|| PaymentTerms {
        scheme: "exact".into(),
        network: arguments["network"].as_str().unwrap().into(),
        asset: arguments["asset"].as_str().unwrap().into(),
        amount: Amount::from(
            arguments["amount"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap(),
        ),
        pay_to: arguments["payee"].as_str().unwrap().into(),
        resource: format!("mcp://{SERVER}/{tool}"),
        payer: None,
        offer_digest: None,
    });
    let fingerprint = RequestFingerprint::new(
        "local",
        agent,
        Route::Mcp {
            server: SERVER.into(),
            tool: tool.into(),
        },
        arguments,
        terms,
    )
    .unwrap()
    .digest()
    .unwrap();
    let verified = Verifier::new(keys)
        .verify_decision(jws, &fingerprint, now())
        .unwrap_or_else(|err| panic!("decision does not verify for the recorded call: {err}"));
    verified.decision_id().to_owned()
}

#[test]
fn an_allowed_high_risk_call_carries_a_verifiable_decision_and_returns_a_receipt() {
    let gateway = Gateway::start("allowed").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");

    let response = send(
        &mut peer,
        &call(1, "deploy", json!({"service": "api", "version": "1.2.3"})),
    );
    assert!(result_text(&response).contains("deploy"), "{response}");
    let receipt = response["result"]["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {response}"));
    let recorded = recorded_calls(&recorder, "deploy");
    assert_eq!(recorded.len(), 1);
    assert!(result_text(&response).contains("decision: present"));
    let decision_id = assert_verifiable(&gateway, &recorded[0], "agent");

    // The receipt verifies offline with only the public keys, and names the decision.
    let receipt_file = gateway.scratch("receipt.jws");
    std::fs::write(&receipt_file, receipt).unwrap();
    let jwks = gateway.jwks_file().unwrap();
    let verify = gateway
        .trustos_plain(&[
            "verify",
            receipt_file.to_str().unwrap(),
            "--jwks",
            jwks.to_str().unwrap(),
            "--json",
        ])
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert!(report.to_string().contains(&decision_id), "{report}");

    // Low risk passes untouched: no decision added, no receipt.
    let echo = send(&mut peer, &call(2, "echo", json!({"message": "hi"})));
    assert!(result_text(&echo).contains("decision: absent"), "{echo}");
    assert!(echo["result"]["_meta"]["io.trustos/receipt"].is_null());
    let recorded_echo = recorded_calls(&recorder, "echo");
    assert_eq!(recorded_echo.len(), 1);
    assert!(recorded_echo[0]["params"]["_meta"].is_null());
}

#[test]
fn every_high_risk_route_refuses_every_bypass() {
    let gateway = Gateway::start("every-route").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");
    // A real decision to replay: from one allowed call.
    send(
        &mut peer,
        &call("seed", "deploy", json!({"service": "api", "version": "1"})),
    );
    let real = recorded_calls(&recorder, "deploy")[0]["params"]["_meta"]["io.trustos/decision"]
        .as_str()
        .unwrap()
        .to_owned();

    let inventory = gateway.routes().unwrap();
    let high: Vec<String> = inventory["routes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["server"] == SERVER && r["risk"] != "low")
        .map(|r| r["tool"].as_str().unwrap().to_owned())
        .collect();
    assert!(high.len() >= 3, "inventory: {inventory}");

    let mut n = 0;
    let mut id = || {
        n += 1;
        json!(format!("b{n}"))
    };
    for tool in &high {
        let arguments = match tool.as_str() {
            "transfer" => {
                json!({"amount": "10", "asset": "usdc", "payee": "0xabc", "network": "eip155:8453"})
            }
            "delete_database" => json!({"name": "prod"}),
            _ => json!({"service": "api", "version": "2"}),
        };
        // Forged, replayed, expired or foreign decisions in _meta: only the gateway writes them.
        for forged in [
            real.clone(),
            "eyJhbGciOiJub25lIn0.e30.".to_owned(),
            String::new(),
        ] {
            let mut message = call(id(), tool, arguments.clone());
            message["params"]["_meta"] = json!({"io.trustos/decision": forged});
            assert_refused(&send(&mut peer, &message), "MCP_META_FORGED");
        }
        let mut message = call(id(), tool, arguments.clone());
        message["params"]["_meta"] = json!({"io.trustos/receipt": "x"});
        assert_refused(&send(&mut peer, &message), "MCP_META_FORGED");

        // Wrapped in a batch (forbidden in 2025-06-18).
        let batch = json!([call(id(), tool, arguments.clone())]);
        peer.send_json(&batch).unwrap();
        let answer = peer.recv_matching(&Value::Null, TIMEOUT).unwrap();
        assert_refused(&answer, "MCP_BATCH_NOT_ALLOWED");

        // Sent as a notification: no id, so no answer, and never forwarded.
        let mut notification = call(0, tool, arguments.clone());
        notification.as_object_mut().unwrap().remove("id");
        peer.send_json(&notification).unwrap();
        peer.expect_silence(SILENCE).unwrap();

        // Duplicate keys: the name, the arguments, the method.
        let dup_id = id();
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{dup_id},"method":"tools/call","params":{{"name":"echo","name":"{tool}","arguments":{{}}}}}}"#
        );
        assert_refused(
            &send_raw(&mut peer, dup_id, line.as_bytes()),
            "JSON_DUPLICATE_KEY",
        );
        let dup_id = id();
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{dup_id},"method":"tools/list","method":"tools/call","params":{{"name":"{tool}","arguments":{arguments}}}}}"#
        );
        assert_refused(
            &send_raw(&mut peer, dup_id, line.as_bytes()),
            "JSON_DUPLICATE_KEY",
        );

        // Case and Unicode variants of the name are other tools, never listed.
        let mut chars = tool.chars();
        let first = chars.next().unwrap();
        let variants = [
            tool.to_uppercase(),
            format!("{}{}", first.to_uppercase(), chars.as_str()),
            format!("{tool}\u{200b}"),
            format!("{tool} "),
            format!(" {tool}"),
            format!(
                "{}{}",
                char::from_u32(first as u32 - 0x61 + 0xFF41).unwrap(),
                &tool[1..]
            ),
            tool.replace('e', "\u{0435}"),
            format!("{SERVER}/{tool}"),
        ];
        for variant in variants {
            if variant == *tool {
                continue;
            }
            let answer = send(&mut peer, &call(id(), &variant, arguments.clone()));
            assert_refused(&answer, "TOOL_NOT_LISTED");
        }

        // Method spelled otherwise.
        for method in [
            "Tools/Call",
            "tools/call ",
            "TOOLS/CALL",
            "tools/call\u{0}",
            "tools.call",
        ] {
            let message = json!({"jsonrpc": "2.0", "id": id(), "method": method,
                                 "params": {"name": tool, "arguments": arguments.clone()}});
            assert_refused(&send(&mut peer, &message), "MCP_METHOD_UNKNOWN");
        }

        // Malformed params and ambiguous bytes.
        let message = json!({"jsonrpc": "2.0", "id": id(), "method": "tools/call",
                             "params": [tool, arguments.clone()]});
        assert_refused(&send(&mut peer, &message), "MCP_INVALID_PARAMS");
        let bom_id = id();
        let mut line = vec![0xEF, 0xBB, 0xBF];
        line.extend_from_slice(
            call(bom_id.clone(), tool, arguments.clone())
                .to_string()
                .as_bytes(),
        );
        assert_refused(&send_raw(&mut peer, bom_id, &line), "JSON_BOM");
        let big_id = id();
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":{big_id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{"amount":9007199254740993}}}}}}"#
        );
        assert_refused(
            &send_raw(&mut peer, big_id, line.as_bytes()),
            "JSON_INTEGER_OUT_OF_RANGE",
        );
    }
    // Give anything mistakenly forwarded time to arrive, then consult the oracle.
    std::thread::sleep(SILENCE);
    for tool in &high {
        let calls = recorded_calls(&recorder, tool);
        let expected = usize::from(tool == "deploy");
        assert_eq!(
            calls.len(),
            expected,
            "{tool} reached the upstream: {calls:?}"
        );
    }
    let unparseable = recorder.unparseable_lines();
    assert!(
        unparseable.is_empty(),
        "the upstream received unparseable bytes: {unparseable:?}"
    );
}

#[test]
fn calls_before_initialize_never_reach_the_upstream() {
    let gateway = Gateway::start("before-init").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = StdioPeer::spawn(
        gateway
            .shim_command(SERVER, "agent", upstream(), &recorder, None)
            .unwrap(),
    )
    .unwrap();
    let answer = send(
        &mut peer,
        &call(1, "deploy", json!({"service": "a", "version": "1"})),
    );
    assert_refused(&answer, "MCP_NOT_INITIALIZED");
    let answer = send(
        &mut peer,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    );
    assert_refused(&answer, "MCP_NOT_INITIALIZED");
    std::thread::sleep(SILENCE);
    assert!(recorder.lines().is_empty(), "{:?}", recorder.lines());
    // A second initialize on the same connection is refused too.
    peer.initialize(PROTOCOL).unwrap();
    let again = json!({"jsonrpc": "2.0", "id": 3, "method": "initialize",
                       "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                                  "clientInfo": {"name": "x", "version": "1"}}});
    assert_refused(&send(&mut peer, &again), "MCP_ALREADY_INITIALIZED");
}

#[test]
fn a_tool_missing_from_tools_list_is_refused() {
    let gateway = Gateway::start("unlisted").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    // Initialize but never list: nothing is pinned for this server yet.
    let mut peer = StdioPeer::spawn(
        gateway
            .shim_command(SERVER, "agent", upstream(), &recorder, None)
            .unwrap(),
    )
    .unwrap();
    peer.initialize(PROTOCOL).unwrap();
    assert_refused(
        &send(
            &mut peer,
            &call(1, "deploy", json!({"service": "a", "version": "1"})),
        ),
        "TOOL_NOT_LISTED",
    );
    assert_refused(
        &send(&mut peer, &call(2, "echo", json!({"message": "x"}))),
        "TOOL_NOT_LISTED",
    );
    peer.request(3, "tools/list", json!({}), TIMEOUT).unwrap();
    assert_refused(
        &send(
            &mut peer,
            &call(4, "exfiltrate", json!({"data": "secrets"})),
        ),
        "TOOL_NOT_LISTED",
    );
    std::thread::sleep(SILENCE);
    assert!(recorder.tool_calls().is_empty());
}

#[test]
fn a_changed_tool_definition_is_refused_until_an_operator_approves_it() {
    let gateway = Gateway::start("rugpull").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut original = shim(&gateway, &recorder, "agent");
    // A low-risk pass the first shim may reuse...
    let echo = send(&mut original, &call(1, "echo", json!({"message": "x"})));
    assert!(result_text(&echo).contains("echo: x"));
    let mut changed = gateway
        .shim(
            SERVER,
            "agent",
            upstream(),
            &recorder,
            Some("rugpull"),
            PROTOCOL,
        )
        .unwrap();
    assert_refused(
        &send(&mut changed, &call(1, "echo", json!({"message": "x"}))),
        "TOOL_DEFINITION_CHANGED",
    );
    // ...is dropped as soon as any shim sees the server change: pins are per server.
    assert_refused(
        &send(&mut original, &call(2, "echo", json!({"message": "x"}))),
        "TOOL_DEFINITION_CHANGED",
    );
    let routes = gateway.routes().unwrap();
    let echo = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["server"] == SERVER && r["tool"] == "echo")
        .unwrap()
        .clone();
    assert_eq!(echo["pin"], "changed", "{echo}");
    assert_eq!(echo["enforcement"], "refused");
    assert_ne!(echo["sha256"], echo["pending_sha256"]);
    assert_eq!(recorded_calls(&recorder, "echo").len(), 1);

    let approved = gateway.trustos(&["approve", "--tool", "rec/echo"]).unwrap();
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let answer = send(&mut changed, &call(2, "echo", json!({"message": "y"})));
    assert!(result_text(&answer).contains("echo: y"), "{answer}");
}

#[test]
fn a_tool_that_appears_after_the_first_listing_is_refused() {
    let gateway = Gateway::start("new-tool").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    drop(shim(&gateway, &recorder, "agent"));
    let mut extra = gateway
        .shim(
            SERVER,
            "agent",
            upstream(),
            &recorder,
            Some("extra"),
            PROTOCOL,
        )
        .unwrap();
    assert_refused(
        &send(&mut extra, &call(1, "exfiltrate", json!({"data": "x"}))),
        "TOOL_NEW_UNAPPROVED",
    );
    std::thread::sleep(SILENCE);
    assert!(recorded_calls(&recorder, "exfiltrate").is_empty());
}

#[test]
fn annotations_raise_risk_and_never_lower_it() {
    let gateway = Gateway::start("raised").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    // The profile calls delete_database on `raised` low risk; the upstream says destructive.
    let mut peer = gateway
        .shim("raised", "agent", upstream(), &recorder, None, PROTOCOL)
        .unwrap();
    assert_refused(
        &send(
            &mut peer,
            &call(1, "delete_database", json!({"name": "prod"})),
        ),
        "TOOL_RISK_RAISED",
    );
    let echo = send(&mut peer, &call(2, "echo", json!({"message": "ok"})));
    assert!(result_text(&echo).contains("echo: ok"));
    std::thread::sleep(SILENCE);
    assert!(recorded_calls(&recorder, "delete_database").is_empty());
}

#[test]
fn unknown_agents_and_unclassified_tools_are_denied_with_reasons() {
    let gateway = Gateway::start("unknown-agent").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut mallory = shim(&gateway, &recorder, "mallory");
    let answer = send(
        &mut mallory,
        &call(1, "deploy", json!({"service": "a", "version": "1"})),
    );
    assert_refused(&answer, "AGENT_UNKNOWN");
    // The agent reads why, with what to change, never the bare word "denied".
    assert!(
        result_text(&answer).contains("AGENT_UNKNOWN: Add the agent"),
        "{answer}"
    );
    assert!(answer["result"]["_meta"]["io.trustos/decision"].is_string());
    std::thread::sleep(SILENCE);
    assert!(recorder.tool_calls().is_empty());
}

#[test]
fn over_budget_calls_are_denied_and_budgets_are_shared_across_shims() {
    let gateway = Gateway::start("budget").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut first = shim(&gateway, &recorder, "agent");
    let mut second = shim(&gateway, &recorder, "agent");
    let pay = |id: u32| {
        call(
            id,
            "transfer",
            json!({"amount": "1000000", "asset": "usdc", "payee": "0xabc", "network": "eip155:8453"}),
        )
    };
    // Three of the 3,000,000 daily budget through two shims, then the fourth is denied.
    for n in 1..=3 {
        let peer = if n == 2 { &mut second } else { &mut first };
        let answer = send(peer, &pay(n));
        assert!(
            answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
            "{answer}"
        );
    }
    let denied = send(&mut second, &pay(4));
    assert_refused(&denied, "BUDGET_DAILY_EXCEEDED");
    assert!(
        result_text(&denied).contains("BUDGET_DAILY_EXCEEDED: "),
        "{denied}"
    );
    std::thread::sleep(SILENCE);
    let paid = recorded_calls(&recorder, "transfer");
    assert_eq!(paid.len(), 3);
    let mut ids: Vec<String> = paid
        .iter()
        .map(|c| assert_verifiable(&gateway, c, "agent"))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "a decision was used twice");
}

fn held_transfer(peer: &mut StdioPeer, id: u32) {
    peer.send_json(&call(
        id,
        "transfer",
        json!({"amount": "2000000", "asset": "usdc", "payee": "0xabc", "network": "eip155:8453"}),
    ))
    .unwrap();
}

#[test]
fn a_held_call_runs_once_an_approver_signs_and_the_initiator_never_counts() {
    let gateway = Gateway::start("approve").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    // alice is both an agent and an approver: her own call needs someone else.
    let mut peer = shim(&gateway, &recorder, "alice");
    held_transfer(&mut peer, 1);
    let decision = gateway.wait_for_hold().unwrap();
    let alice_key = gateway.path_str("alice/gateway.key.pem");
    let by_alice = gateway
        .trustos(&["approve", &decision, "--key", &alice_key])
        .unwrap();
    assert_eq!(by_alice.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&by_alice.stderr).contains("APPROVER_IS_INITIATOR"));
    // A key that is no approver's.
    let stranger = gateway
        .trustos_plain(&["keygen", "--out", &gateway.path_str("stranger")])
        .unwrap();
    assert!(stranger.status.success());
    let by_stranger = gateway
        .trustos(&[
            "approve",
            &decision,
            "--key",
            &gateway.path_str("stranger/gateway.key.pem"),
        ])
        .unwrap();
    assert_eq!(by_stranger.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&by_stranger.stderr).contains("APPROVAL_INVALID"));
    peer.expect_silence(SILENCE).unwrap();
    assert!(recorded_calls(&recorder, "transfer").is_empty());

    let operator_key = gateway.path_str("operator/gateway.key.pem");
    let approved = gateway
        .trustos(&["approve", &decision, "--key", &operator_key])
        .unwrap();
    assert!(
        approved.status.success(),
        "{}",
        String::from_utf8_lossy(&approved.stderr)
    );
    let answer = peer.recv_matching(&json!(1), TIMEOUT).unwrap();
    assert!(
        answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );
    let paid = recorded_calls(&recorder, "transfer");
    assert_eq!(paid.len(), 1);
    assert_verifiable(&gateway, &paid[0], "alice");
    // Approving again finds nothing held.
    let again = gateway
        .trustos(&["approve", &decision, "--key", &operator_key])
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
}

#[test]
fn rejected_cancelled_and_timed_out_holds_never_run() {
    let gateway = Gateway::start_with("holds", TEST_PROFILE, 3).unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");
    let operator_key = gateway.path_str("operator/gateway.key.pem");

    held_transfer(&mut peer, 1);
    let decision = gateway.wait_for_hold().unwrap();
    let rejected = gateway
        .trustos(&["approve", &decision, "--key", &operator_key, "--reject"])
        .unwrap();
    assert_eq!(rejected.status.code(), Some(1));
    assert_refused(
        &peer.recv_matching(&json!(1), TIMEOUT).unwrap(),
        "APPROVAL_REJECTED",
    );

    held_transfer(&mut peer, 2);
    let decision = gateway.wait_for_hold().unwrap();
    peer.notify(
        "notifications/cancelled",
        json!({"requestId": 2, "reason": "changed my mind"}),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = gateway
        .trustos(&["approve", &decision, "--key", &operator_key])
        .unwrap();

    // Same id again while nothing is in flight under it: fine; then it times out.
    held_transfer(&mut peer, 3);
    // A second request with an id still in flight is refused.
    assert_refused(
        &send(&mut peer, &call(3, "echo", json!({"message": "dup"}))),
        "MCP_DUPLICATE_ID",
    );
    assert_refused(
        &peer.recv_matching(&json!(3), TIMEOUT).unwrap(),
        "APPROVAL_TIMEOUT",
    );

    std::thread::sleep(SILENCE);
    assert!(recorded_calls(&recorder, "transfer").is_empty());
}

#[test]
fn the_daemon_killed_mid_call_fails_closed() {
    let mut gateway = Gateway::start("killed").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");
    held_transfer(&mut peer, 1);
    gateway.wait_for_hold().unwrap();
    gateway.kill_daemon();
    let answer = peer.recv_matching(&json!(1), TIMEOUT).unwrap();
    assert_refused(&answer, "GATEWAY_UNAVAILABLE");
    std::thread::sleep(SILENCE);
    assert!(recorded_calls(&recorder, "transfer").is_empty());

    // The next call starts a daemon again on demand and is decided afresh.
    let answer = send(
        &mut peer,
        &call(2, "deploy", json!({"service": "a", "version": "9"})),
    );
    assert!(
        answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}\n{}",
        gateway.daemon_log()
    );
    let deployed = recorded_calls(&recorder, "deploy");
    assert_eq!(deployed.len(), 1);
    assert_verifiable(&gateway, &deployed[0], "agent");
}

#[test]
fn the_profile_reloads_on_change_and_keeps_the_last_good_one() {
    let gateway = Gateway::start("reload").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");
    let profile = gateway.home().join("profiles/default/profile.toml");

    // An invalid edit: the last good profile stays in force.
    std::fs::write(&profile, "this is not a profile").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let answer = send(
        &mut peer,
        &call(1, "deploy", json!({"service": "a", "version": "1"})),
    );
    assert!(
        answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );

    // A valid edit that drops the agent: denied from now on.
    std::fs::write(
        &profile,
        TEST_PROFILE.replace("agent = \"agent\"", "agent = \"someone-else\""),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut n = 2;
    loop {
        let answer = send(
            &mut peer,
            &call(n, "deploy", json!({"service": "a", "version": "1"})),
        );
        if reasons(&answer).iter().any(|r| r == "AGENT_UNKNOWN") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the reload never took effect"
        );
        std::thread::sleep(Duration::from_millis(200));
        n += 1;
    }
    assert!(
        gateway.daemon_log().contains("keeping"),
        "{}",
        gateway.daemon_log()
    );
}

#[test]
fn routes_json_lists_every_route_with_its_class_reason_and_pin() {
    let gateway = Gateway::start("routes").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    drop(shim(&gateway, &recorder, "agent"));
    let routes = gateway.routes().unwrap();
    let rows = routes["routes"].as_array().unwrap();
    let find = |tool: &str| {
        rows.iter()
            .find(|r| r["server"] == SERVER && r["tool"] == tool)
            .unwrap_or_else(|| panic!("{tool} missing from {routes}"))
    };
    assert_eq!(find("echo")["risk"], "low");
    assert_eq!(find("echo")["enforcement"], "passthrough");
    assert_eq!(find("deploy")["risk"], "high");
    assert_eq!(find("deploy")["why"], "route:rec-deploy");
    assert_eq!(find("transfer")["enforcement"], "decision+budget");
    assert!(
        find("deploy")["sha256"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // Routes configured for servers never seen are listed too.
    assert!(
        rows.iter()
            .any(|r| r["server"] == "raised" && r["pin"] == "unlisted")
    );
    // And without a daemon, from the home directly.
    drop(gateway);
}

/// A shim whose host declares the elicitation capability.
fn eliciting_shim(gateway: &Gateway, recorder: &Recorder) -> StdioPeer {
    let mut peer = StdioPeer::spawn(
        gateway
            .shim_command(SERVER, "agent", upstream(), recorder, None)
            .unwrap(),
    )
    .unwrap();
    let init = json!({"jsonrpc": "2.0", "id": "init", "method": "initialize", "params": {
        "protocolVersion": PROTOCOL, "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "eliciting-host", "version": "1"}}});
    assert!(send(&mut peer, &init)["result"].is_object());
    peer.notify("notifications/initialized", Value::Null)
        .unwrap();
    peer.request("list", "tools/list", json!({}), TIMEOUT)
        .unwrap();
    peer
}

#[test]
fn a_held_call_resolves_by_elicitation_when_the_profile_lists_the_host() {
    let profile = TEST_PROFILE
        .replace(
            r#"approvers = ["operator", "alice"]"#,
            r#"approvers = ["operator", "alice", "host"]"#,
        )
        .replace(r#"limit = "3000000""#, r#"limit = "9000000""#);
    let gateway = Gateway::start_with("elicit", &profile, 20).unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = eliciting_shim(&gateway, &recorder);

    for (id, approve) in [(1, true), (2, false)] {
        held_transfer(&mut peer, id);
        let request = peer.recv_json(TIMEOUT).unwrap();
        assert_eq!(request["method"], "elicitation/create", "{request}");
        assert!(
            request["params"]["message"]
                .as_str()
                .unwrap()
                .contains("rec/transfer")
        );
        let answer = json!({"jsonrpc": "2.0", "id": request["id"].clone(),
                            "result": {"action": "accept", "content": {"approve": approve}}});
        peer.send_json(&answer).unwrap();
        let response = peer.recv_matching(&json!(id), TIMEOUT).unwrap();
        if approve {
            assert!(
                response["result"]["_meta"]["io.trustos/receipt"].is_string(),
                "{response}"
            );
        } else {
            assert_refused(&response, "APPROVAL_REJECTED");
        }
    }
    std::thread::sleep(SILENCE);
    // One ran; the host's answers never reached the upstream.
    assert_eq!(recorded_calls(&recorder, "transfer").len(), 1);
    assert!(
        recorder
            .lines()
            .iter()
            .all(|l| !l.contains("io.trustos/elicit"))
    );
}

#[test]
fn the_host_cannot_approve_when_the_profile_does_not_list_it() {
    let gateway = Gateway::start_with("no-elicit", TEST_PROFILE, 2).unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = eliciting_shim(&gateway, &recorder);
    held_transfer(&mut peer, 1);
    // No elicitation is sent; the hold times out into a deny.
    let response = peer.recv_json(TIMEOUT).unwrap();
    assert_refused(&response, "APPROVAL_TIMEOUT");
    assert!(recorded_calls(&recorder, "transfer").is_empty());
}

#[test]
fn a_profile_reload_reclassifies_low_risk_tools_in_running_shims() {
    let gateway = Gateway::start("reclassify").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");
    for id in 1..=3 {
        let echo = send(&mut peer, &call(id, "echo", json!({"message": "low"})));
        assert!(result_text(&echo).contains("decision: absent"), "{echo}");
    }
    // echo becomes high risk: the shim must stop passing it untouched.
    let profile = gateway.home().join("profiles/default/profile.toml");
    let reclassified = TEST_PROFILE.replacen(
        "id = \"rec-echo\"\nrisk = \"low\"",
        "id = \"rec-echo\"\nrisk = \"high\"",
        1,
    );
    assert_ne!(reclassified, TEST_PROFILE);
    std::fs::write(&profile, reclassified).unwrap();
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut id = 10;
    loop {
        let echo = send(&mut peer, &call(id, "echo", json!({"message": "now high"})));
        if echo["result"]["_meta"]["io.trustos/receipt"].is_string() {
            assert!(result_text(&echo).contains("decision: present"), "{echo}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the shim kept passing echo"
        );
        std::thread::sleep(Duration::from_millis(100));
        id += 1;
    }
    // And every echo recorded after the change carries a verifiable decision.
    let last = recorded_calls(&recorder, "echo").pop().unwrap();
    assert_verifiable(&gateway, &last, "agent");
}

#[test]
fn the_upstream_receives_the_bytes_the_host_sent_plus_only_the_decision() {
    let gateway = Gateway::start("exact-bytes").unwrap();
    let recorder = Recorder::in_dir(&gateway.scratch(""));
    let mut peer = shim(&gateway, &recorder, "agent");
    // Odd spacing, key order, escapes and number forms a re-serializer would change.
    let echo = r#"{ "params" : {"arguments":{"message":"caf\u00e9 \/ 1.50e1"} , "name":"echo"},"id":"x1", "method":"tools/call" ,"jsonrpc":"2.0"}"#;
    let answer = send_raw(&mut peer, json!("x1"), echo.as_bytes());
    assert!(
        result_text(&answer).contains("echo: café / 1.50e1"),
        "{answer}"
    );
    let deploy = r#"{"jsonrpc":"2.0","id":"x2","method":"tools/call","params":{ "arguments" : {"version":"1.0","service":"\u0061pi"},"name":"deploy"}}"#;
    let answer = send_raw(&mut peer, json!("x2"), deploy.as_bytes());
    assert!(
        answer["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{answer}"
    );

    let lines = recorder.lines();
    let forwarded_echo = lines.iter().find(|l| l.contains("\"x1\"")).unwrap();
    assert_eq!(forwarded_echo, echo, "a passthrough call was rewritten");
    let forwarded_deploy = lines.iter().find(|l| l.contains("\"x2\"")).unwrap();
    let decision = recorded_calls(&recorder, "deploy")[0]["params"]["_meta"]["io.trustos/decision"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = deploy.replacen(
        "\"params\":{",
        &format!("\"params\":{{\"_meta\":{{\"io.trustos/decision\":\"{decision}\"}},"),
        1,
    );
    assert_eq!(
        forwarded_deploy, &expected,
        "an enforced call changed beyond the inserted decision"
    );
}
