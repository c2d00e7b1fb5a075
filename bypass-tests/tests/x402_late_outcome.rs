//! A late x402 outcome gets its own receipt, end to end with real components: a `trustos serve`
//! daemon whose home is set up as `trustos quickstart` writes it (`[servers.demo]` = `trustos
//! demo-tool-server`, a paid `get_forecast`; `[x402] key_file` = a 0600 payer key; a bearer
//! token), the x402 facilitator and chain emulator
//! (`trustos_adapters::testkit::x402::X402Emulator`) that the tool server settles with, and an
//! MCP client of `/mcp/demo` over Streamable HTTP that holds no wallet (the gateway pays).
//!
//! What is checked, against what the emulated chain actually settled:
//! - a paid call with no fault is answered, receipted `completed` naming its transaction, and
//!   settled once;
//! - a paid call whose settlement lands on chain but whose answer is lost
//!   (`Fault::SettleThenDrop`) reaches the agent as an error with an `unknown` receipt and no
//!   settlement, while the chain holds a second settlement (money moved);
//! - `trustos payments --json` without `[x402.rpc]` cannot learn the outcome: exit 1, the
//!   attempt `unknown`;
//! - with `[x402.rpc]` pointing at the emulated chain, `trustos payments --json` (asking the
//!   restarted daemon, or, in the second test, run with no daemon at all) finds the
//!   authorization used on chain: exit 0, the attempt `settled` with the transaction hash, and
//!   nothing is paid again; run twice, it adds nothing;
//! - the log then holds, for the lost call's decision, exactly two receipts: the `unknown` one
//!   the agent got, then a late `completed` one whose settlement names the x402 transaction,
//!   the network, the asset and the price, and which composes the first (`sha256:` of its
//!   compact JWS); the first call's decision keeps exactly its one `completed` receipt. Every
//!   bundle `trustos log prove` hands out verifies offline with `trustos verify`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use bypass_tests::serve::{Listening, init_home};
use bypass_tests::x402::{NETWORK, Profile, Route, token_entry};
use bypass_tests::{TempDir, trustos_bin};
use serde_json::{Value, json};
use trustos_adapters::testkit::x402::{EmulatorConfig, Fault, Settlement, X402Emulator};

/// The agent's bearer token.
const TOKEN: &str = "late-outcome-token-3b9e";
/// The tenant and agent the token speaks for (the quickstart's).
const TENANT: &str = "quickstart";
const AGENT: &str = "demo-agent";
/// `get_forecast`'s price in USDC base units (the quickstart's, 0.01 USDC).
const PRICE: &str = "10000";
/// The address the demo tool server is paid at (the quickstart's).
const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// Circle's USDC on Base Sepolia, the emulated chain's token (the demo tool server's asset).
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The gateway's payer key (a throwaway; the emulated chain funds every address).
const PAYER_KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";
/// The MCP protocol version the client speaks.
const PROTOCOL: &str = "2025-06-18";
/// How long any exchange or command may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The agent's profile: `get_forecast` of `demo` is a paid route (the price comes from the
/// tool's own payment request), USDC from 1 to 0.10 USDC a call and 1 USDC a day (room for both
/// calls), Base Sepolia only.
fn profile() -> String {
    Profile {
        amount_min: Some("1".into()),
        amount_max: "100000".into(),
        budget_id: "demo-daily".into(),
        ..Profile::new(
            "late-outcome",
            "A demo agent that buys forecasts from an x402-priced MCP tool.",
            (TENANT, AGENT),
            vec![Route::mcp("demo-forecast", "paid", "demo", "get_forecast")],
        )
    }
    .toml()
}

/// A TOML basic string (JSON's escaping is valid TOML for it).
fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// `gateway.toml` as `trustos quickstart` writes it (without its operator): the demo paid tool
/// server settling with `facilitator`, the agent's token, and the payer key file.
fn gateway_toml(facilitator: &str) -> String {
    let command = [
        trustos_bin().unwrap().display().to_string(),
        "demo-tool-server".to_owned(),
        "--facilitator".to_owned(),
        facilitator.to_owned(),
        "--pay-to".to_owned(),
        PAYEE.to_owned(),
        "--price".to_owned(),
        PRICE.to_owned(),
    ];
    let command: Vec<String> = command.iter().map(|part| quoted(part)).collect();
    format!(
        "[gateway]\n\
         profile = \"profiles/default/profile.toml\"\n\
         tenant = \"{TENANT}\"\n\
         agent = \"{AGENT}\"\n\
         decision_ttl_seconds = 60\n\
         hold_timeout_seconds = 60\n\
         call_timeout_seconds = 30\n\n\
         [servers.demo]\n\
         command = [{}]\n\
         {}\n\
         [x402]\n\
         key_file = \"keys/x402.key\"\n",
        command.join(", "),
        token_entry(TOKEN, TENANT, AGENT, Some(&["demo"])),
    )
}

/// One HTTP response.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "HTTP {} not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// A Streamable HTTP MCP client of `/mcp/demo` with the agent's token, as the quickstart's:
/// one request per connection.
struct McpClient {
    addr: String,
    session: String,
}

impl McpClient {
    /// `initialize`, `notifications/initialized`, and `tools/list` (which pins the tools).
    fn connect(addr: &str) -> Self {
        let mut client = Self {
            addr: addr.to_owned(),
            session: String::new(),
        };
        let reply = client.post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "x402-late-outcome", "version": "1"}}}));
        let answer = reply.json();
        assert_eq!(reply.status, 200, "initialize: {answer}");
        assert!(answer.get("result").is_some(), "initialize: {answer}");
        client.session = reply
            .header("mcp-session-id")
            .expect("a session id")
            .to_owned();
        let initialized =
            client.post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert_eq!(initialized.status, 202);
        let listed = client
            .post(&json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}))
            .json();
        let names: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tool| tool["name"].as_str())
            .collect();
        assert!(names.contains(&"get_forecast"), "{listed}");
        client
    }

    /// `tools/call` of `get_forecast` for `city`: the JSON-RPC `result`.
    fn forecast(&self, id: u64, city: &str) -> Value {
        let answer = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": "get_forecast", "arguments": {"city": city}}}))
            .json();
        assert_eq!(answer["id"], id, "{answer}");
        answer
            .get("result")
            .unwrap_or_else(|| panic!("no result: {answer}"))
            .clone()
    }

    fn post(&self, body: &Value) -> Reply {
        let body = body.to_string();
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let mut request = format!(
            "POST /mcp/demo HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !self.session.is_empty() {
            request.push_str(&format!(
                "Mcp-Session-Id: {}\r\nMCP-Protocol-Version: {PROTOCOL}\r\n",
                self.session
            ));
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("no end of headers");
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .expect("no status");
        let headers = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let mut reply = Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        };
        if reply
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            reply.body = dechunk(&reply.body);
        } else if let Some(length) = reply
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            reply.body.truncate(length);
        }
        reply
    }
}

/// The payload of a compact JWS.
fn jws_payload(jws: &str) -> Value {
    bypass_tests::x402::jws_payload(jws).unwrap()
}

/// `sha256:` and the hex SHA-256 of `text`, as receipts name the receipts they compose.
fn digest_of(text: &str) -> String {
    trustos_kernel::canonical::Digest::of(text.as_bytes()).to_string()
}

/// The gateway's receipt of a tool result (`_meta["io.trustos/receipt"]`): its JWS and payload.
fn receipt_of(result: &Value) -> (String, Value) {
    let jws = result["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {result}"))
        .to_owned();
    let payload = jws_payload(&jws);
    (jws, payload)
}

/// The emulator, a quickstart-shaped home, and its daemon (when running).
struct Lane {
    /// First, so the daemon stops before its home is removed.
    server: Option<Listening>,
    emulator: X402Emulator,
    dir: TempDir,
    home: PathBuf,
}

impl Lane {
    fn start(label: &str) -> Self {
        let emulator = X402Emulator::start(EmulatorConfig::default()).unwrap();
        assert_eq!(emulator.network(), NETWORK);
        let dir = TempDir::new(label).unwrap();
        let home = init_home(&dir).unwrap();
        std::fs::write(home.join("profiles/default/profile.toml"), profile()).unwrap();
        let mut key = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(home.join("keys/x402.key"))
            .unwrap();
        key.write_all(format!("{PAYER_KEY}\n").as_bytes()).unwrap();
        std::fs::write(home.join("gateway.toml"), gateway_toml(emulator.base_url())).unwrap();
        let mut lane = Self {
            server: None,
            emulator,
            dir,
            home,
        };
        lane.start_daemon();
        lane
    }

    fn start_daemon(&mut self) {
        assert!(self.server.is_none());
        self.server = Some(Listening::start(&self.home, &[]).unwrap());
    }

    /// Stops the daemon (SIGTERM; the store is released when it has exited).
    fn stop_daemon(&mut self) {
        drop(self.server.take().expect("a running daemon"));
    }

    fn client(&self) -> McpClient {
        McpClient::connect(self.server.as_ref().expect("a running daemon").addr())
    }

    /// Adds `[x402.rpc]` for Base Sepolia, pointing at the emulated chain.
    fn configure_rpc(&self) {
        let path = self.home.join("gateway.toml");
        let mut config = std::fs::read_to_string(&path).unwrap();
        config.push_str(&format!(
            "\n[x402.rpc]\n{} = {}\n",
            quoted(NETWORK),
            quoted(&self.emulator.rpc_url())
        ));
        std::fs::write(&path, config).unwrap();
    }

    fn payments(&self) -> (i32, Vec<Value>) {
        bypass_tests::x402::payments(&self.home).unwrap()
    }

    /// Every receipt in the log: each entry's index, compact JWS and payload, in log order.
    /// Every bundle `trustos log prove` hands out is verified offline with `trustos verify`.
    fn read_receipts(&self) -> Vec<(u64, String, Value)> {
        assert!(self.server.is_none(), "stop the daemon first");
        bypass_tests::x402::logged_receipts(&self.home, self.dir.path())
            .unwrap()
            .into_iter()
            .map(|receipt| (receipt.index, receipt.jws, receipt.payload))
            .collect()
    }
}

/// What the two calls left: the first call's receipt, and the lost call's receipt and
/// settlement.
struct Calls {
    first_jws: String,
    first: Value,
    unknown_jws: String,
    unknown: Value,
    moved: Settlement,
}

/// A paid call that settles normally, then one whose settlement answer is lost after the money
/// moved; checks what the agent got and what the chain holds.
fn paid_then_lost(lane: &Lane) -> Calls {
    let client = lane.client();

    // 1. Paid, settled, answered.
    let result = client.forecast(1, "Lisbon");
    assert_ne!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(text.contains("Forecast for Lisbon"), "{result}");
    let (first_jws, first) = receipt_of(&result);
    let settlements = lane.emulator.settlements();
    assert_eq!(settlements.len(), 1, "{settlements:?}");
    assert!(settlements[0].answered);
    assert_eq!(first["status"], "completed", "{first}");
    assert_eq!(first["settlement"]["rail"], "x402", "{first}");
    assert_eq!(
        first["settlement"]["reference"],
        settlements[0].tx_hash.as_str()
    );
    assert_eq!(first["settlement"]["amount"], PRICE, "{first}");
    assert_eq!(first["settlement"]["asset"], USDC, "{first}");

    // 2. The settlement lands on chain, its answer never reaches the tool server.
    lane.emulator.push_fault(Fault::SettleThenDrop);
    let result = client.forecast(2, "Porto");
    assert_eq!(result["isError"], true, "{result}");
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(!text.contains("Forecast for"), "{result}");
    let (unknown_jws, unknown) = receipt_of(&result);
    assert_eq!(unknown["status"], "unknown", "{unknown}");
    assert!(
        unknown.get("settlement").is_none_or(Value::is_null),
        "{unknown}"
    );
    assert_ne!(unknown["decisionId"], first["decisionId"]);
    let settlements = lane.emulator.settlements();
    assert_eq!(settlements.len(), 2, "money moved: {settlements:?}");
    assert!(!settlements[1].answered, "{settlements:?}");
    assert_ne!(settlements[1].tx_hash, settlements[0].tx_hash);
    Calls {
        first_jws,
        first,
        unknown_jws,
        unknown,
        moved: settlements[1].clone(),
    }
}

/// The attempt of `decision_id` among those `trustos payments --json` listed.
fn attempt<'a>(attempts: &'a [Value], decision_id: &Value) -> &'a Value {
    let mine: Vec<&Value> = attempts
        .iter()
        .filter(|a| a["decisionId"] == *decision_id)
        .collect();
    assert_eq!(mine.len(), 1, "{attempts:?}");
    mine[0]
}

/// `trustos payments --json` found the lost call's authorization used on chain: exit 0, both
/// attempts settled with their transaction hashes, nothing paid again.
fn assert_reconciled(lane: &Lane, calls: &Calls, first_tx: &str) {
    let (code, attempts) = lane.payments();
    assert_eq!(code, 0, "{attempts:?}");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    let lost = attempt(&attempts, &calls.unknown["decisionId"]);
    assert_eq!(lost["rail"], "x402", "{lost}");
    assert_eq!(lost["state"], "settled", "{lost}");
    assert_eq!(lost["reference"], calls.moved.tx_hash.as_str(), "{lost}");
    let paid = attempt(&attempts, &calls.first["decisionId"]);
    assert_eq!(paid["state"], "settled", "{paid}");
    assert_eq!(paid["reference"], first_tx, "{paid}");
    assert_eq!(lane.emulator.settlements().len(), 2, "nothing paid again");
}

/// The log: the lost call's decision holds the `unknown` receipt then exactly one late
/// `completed` one composing it; the first call's decision only its own receipt.
fn assert_late_receipt(lane: &Lane, calls: &Calls) {
    let receipts = lane.read_receipts();
    let of = |decision: &Value| -> Vec<&(u64, String, Value)> {
        receipts
            .iter()
            .filter(|(_, _, payload)| payload["decisionId"] == *decision)
            .collect()
    };

    let first = of(&calls.first["decisionId"]);
    assert_eq!(
        first.len(),
        1,
        "no late receipt for a settled call: {first:?}"
    );
    assert_eq!(first[0].1, calls.first_jws);

    let lost = of(&calls.unknown["decisionId"]);
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert_eq!(
        lost[0].1, calls.unknown_jws,
        "the agent's receipt comes first"
    );
    assert!(lost[0].0 < lost[1].0);
    let late = &lost[1].2;
    assert_eq!(late["status"], "completed", "{late}");
    let settlement = &late["settlement"];
    assert_eq!(settlement["rail"], "x402", "{late}");
    assert_eq!(
        settlement["reference"],
        calls.moved.tx_hash.as_str(),
        "{late}"
    );
    assert_eq!(settlement["amount"], PRICE, "{late}");
    assert_eq!(settlement["network"], NETWORK, "{late}");
    assert_eq!(settlement["asset"], USDC, "{late}");
    assert_eq!(settlement["asset"], calls.first["settlement"]["asset"]);
    assert_eq!(late["composes"], json!([digest_of(&calls.unknown_jws)]));
    assert_eq!(late["fingerprint"], calls.unknown["fingerprint"]);
    assert_ne!(late["receiptId"], calls.unknown["receiptId"]);
    // Started when the decision was consumed (before the first receipt's start), ended after
    // it (RFC 3339 instants of one format: text order is time order).
    let instant = |receipt: &Value, name: &str| receipt[name].as_str().unwrap().to_owned();
    assert!(instant(late, "startedAt") <= instant(&calls.unknown, "startedAt"));
    assert!(instant(late, "completedAt") >= instant(&calls.unknown, "completedAt"));
}

/// The daemon runs throughout; restarted once with `[x402.rpc]`, it learns the outcome when
/// `trustos payments` asks it.
#[test]
fn a_lost_settlement_answer_is_receipted_late_once_the_daemon_asks_the_chain() {
    let mut lane = Lane::start("x402-late-daemon");
    let calls = paid_then_lost(&lane);
    let first_tx = lane.emulator.settlements()[0].tx_hash.clone();

    // 3. Without [x402.rpc] nobody can look the authorization up: still unknown.
    let (code, attempts) = lane.payments();
    assert_eq!(code, 1, "an unknown attempt: {attempts:?}");
    let lost = attempt(&attempts, &calls.unknown["decisionId"]);
    assert_eq!(lost["state"], "unknown", "{lost}");
    assert!(lost["reference"].is_null(), "{lost}");
    assert_eq!(
        attempt(&attempts, &calls.first["decisionId"])["state"],
        "settled"
    );

    // With [x402.rpc], the restarted daemon asks the chain when `trustos payments` runs; twice.
    lane.stop_daemon();
    lane.configure_rpc();
    lane.start_daemon();
    assert_reconciled(&lane, &calls, &first_tx);
    assert_reconciled(&lane, &calls, &first_tx);

    // 4. The log.
    lane.stop_daemon();
    assert_late_receipt(&lane, &calls);
}

/// No daemon after the lost answer: `trustos payments` opens the home itself, asks the chain and
/// receipts the late outcome, once.
#[test]
fn without_a_daemon_trustos_payments_receipts_the_late_outcome_itself() {
    let mut lane = Lane::start("x402-late-offline");
    let calls = paid_then_lost(&lane);
    let first_tx = lane.emulator.settlements()[0].tx_hash.clone();
    lane.stop_daemon();

    // No [x402.rpc]: the command opens the store, cannot look the authorization up.
    let (code, attempts) = lane.payments();
    assert_eq!(code, 1, "an unknown attempt: {attempts:?}");
    assert_eq!(
        attempt(&attempts, &calls.unknown["decisionId"])["state"],
        "unknown"
    );

    lane.configure_rpc();
    assert_reconciled(&lane, &calls, &first_tx);
    assert_reconciled(&lane, &calls, &first_tx);
    assert_late_receipt(&lane, &calls);
}
