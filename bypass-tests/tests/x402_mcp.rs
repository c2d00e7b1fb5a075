//! x402 over the MCP transport end to end, as a host uses it: `trustos mcp --server rec --
//! trustos-recording-upstream` (variant `paid`: an x402-priced tool `premium_search` that
//! follows `specs/transports-v2/mcp.md` and settles through the reference x402 facilitator, see
//! `adapters/tests/reference/README.md`), a daemon holding the gateway's payer key (Hardhat
//! #0, in `TRUSTOS_TEST_X402_KEY`, set only in the daemon's environment), and a profile that
//! routes `premium_search` as risk `paid` without payment pointers (the price comes from the
//! tool's own payment request) and `ping` as low risk. The host never holds a wallet.
//!
//! What is checked, against what the upstream recorded (every raw line it received) and what
//! the facilitator actually settled:
//! - a paid call returns the search result with a receipt that `trustos verify` accepts
//!   offline, naming the settled transaction; the upstream got exactly the unpaid probe and
//!   one paid retry (same request id, the gateway's decision and a payment from the gateway's
//!   payer for exactly the price); exactly one settlement; the host gets one answer;
//! - the agent's own `_meta["x402/payment"]` is refused before anything reaches the upstream;
//! - an offer above the profile's `[[amounts]]` cap is refused after the probe, never paid;
//! - a settlement that fails is receipted as failed and never paid a second time;
//! - `ping` (low risk) passes untouched;
//! - two paid calls in flight at once are each paid exactly once;
//! - an upstream posing as the gateway (its own `_meta["io.trustos/receipt"]`) never replaces
//!   the gateway's receipt.
//!
//! Each test starts its own facilitator, gateway home and daemon.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../adapters/tests/support/reference.rs"]
mod reference;

use std::path::Path;
use std::time::Duration;

use bypass_tests::gateway::{Gateway, SERVER, TIMEOUT, call, reasons, result_text};
use bypass_tests::x402::{KEY_ENV, Profile, Route, x402_table};
use bypass_tests::{Recorder, StdioPeer};
use reference::{
    BASE_SEPOLIA_USDC, DEFAULT_PAY_TO, Facilitator, TEST_PAYER_ADDRESS, TEST_PAYER_KEY,
    reference_sign,
};
use serde_json::{Value, json};

const UPSTREAM: &str = env!("CARGO_BIN_EXE_trustos-recording-upstream");
const PROTOCOL: &str = "2025-06-18";
/// How long the host waits to be sure nothing more arrives.
const SILENCE: Duration = Duration::from_millis(500);
/// The variable telling the paid upstream where the facilitator is.
const FACILITATOR_ENV: &str = "TRUSTOS_TEST_FACILITATOR";
/// What `premium_search` costs, in USDC base units.
const PRICE: &str = "2000";
/// The agent the shim speaks for.
const AGENT: &str = "agent";

/// The profile a user would write for the paid tool server: `premium_search` paid, without
/// payment pointers (the price comes from the tool's payment request), `ping` low risk, and USDC
/// payments of 1 to `amount_max` base units.
fn profile(amount_max: &str) -> Profile {
    Profile {
        amount_min: Some("1".into()),
        amount_max: amount_max.into(),
        budget_id: "daily".into(),
        ..Profile::new(
            "x402-mcp",
            "An agent that buys premium searches from an x402-priced MCP tool.",
            ("local", AGENT),
            vec![
                Route::mcp("rec-premium-search", "paid", SERVER, "premium_search"),
                Route::mcp("rec-ping", "low", SERVER, "ping"),
            ],
        )
    }
}

/// The facilitator, a gateway whose daemon holds the payer key, and a host's shim in front of
/// the paid recording upstream (initialized, tools listed and so pinned).
struct Setup {
    facilitator: Facilitator,
    gateway: Gateway,
    recorder: Recorder,
    peer: StdioPeer,
}

impl Setup {
    fn start(label: &str, amount_max: &str) -> Self {
        Self::start_variant(label, amount_max, "paid")
    }

    /// As [`Self::start`], with another variant of the recording upstream.
    fn start_variant(label: &str, amount_max: &str, variant: &str) -> Self {
        Self::start_full(label, amount_max, variant, "")
    }

    /// As [`Self::start_variant`], with more `[x402]` settings.
    fn start_full(label: &str, amount_max: &str, variant: &str, x402_extra: &str) -> Self {
        let facilitator = Facilitator::start().unwrap();
        let gateway = Gateway::start_configured(
            label,
            &profile(amount_max).toml(),
            20,
            &x402_table(x402_extra),
            &[(KEY_ENV, TEST_PAYER_KEY)],
        )
        .unwrap();
        let recorder = Recorder::in_dir(&gateway.scratch(""));
        let mut cmd = gateway
            .shim_command(SERVER, AGENT, Path::new(UPSTREAM), &recorder, Some(variant))
            .unwrap();
        // The upstream needs the facilitator; the shim and the upstream never see the key.
        cmd.env(FACILITATOR_ENV, &facilitator.url)
            .env_remove(KEY_ENV);
        let mut peer = StdioPeer::spawn(cmd).unwrap();
        peer.initialize(PROTOCOL).unwrap();
        let listed = peer
            .request("list", "tools/list", json!({}), TIMEOUT)
            .unwrap();
        let names: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("tools/list: {listed}"))
            .iter()
            .filter_map(|tool| tool["name"].as_str())
            .collect();
        assert!(
            names.contains(&"premium_search") && names.contains(&"ping"),
            "{names:?}"
        );
        Self {
            facilitator,
            gateway,
            recorder,
            peer,
        }
    }

    /// Sends `message` and returns the answer with its id.
    fn send(&mut self, message: &Value) -> Value {
        let id = message["id"].clone();
        self.peer.send_json(message).unwrap();
        self.peer.recv_matching(&id, TIMEOUT).unwrap()
    }

    /// Asserts the host gets nothing more: no second answer, no stray message.
    fn assert_no_more_answers(&mut self) {
        let stray = self.peer.take_pending();
        assert!(stray.is_empty(), "unexpected messages: {stray:?}");
        self.peer.expect_silence(SILENCE).unwrap();
    }

    /// The recorded `tools/call`s of `tool`, in arrival order.
    fn recorded(&self, tool: &str) -> Vec<Value> {
        self.recorder
            .tool_calls()
            .into_iter()
            .filter(|c| c["params"]["name"] == tool)
            .collect()
    }

    /// Asserts the upstream got exactly the unpaid probe of the host's call `id` and then one
    /// paid retry of it; returns the recorded calls and the retry's payment.
    #[track_caller]
    fn assert_probe_then_paid_retry(&self, id: &Value) -> (Vec<Value>, Value) {
        let recorded = self.recorded("premium_search");
        assert_eq!(recorded.len(), 2, "{recorded:?}");
        assert_unpaid_probe(&recorded[0], id);
        let payment = assert_paid_retry(&recorded[1], id);
        (recorded, payment)
    }

    /// `trustos verify --json` on a compact JWS (written to `name`): the exit code and the
    /// report.
    fn verify(&self, jws: &str, name: &str) -> (i32, Value) {
        self.gateway.verify_json(jws, name).unwrap()
    }

    /// Verifies a receipt offline and returns its payload.
    fn verified_receipt(&self, jws: &str) -> Value {
        let (code, report) = self.verify(jws, "receipt.jws");
        assert_eq!(code, 0, "trustos verify: {report}");
        assert_eq!(report["valid"], true, "{report}");
        assert_eq!(report["kind"], "receipt", "{report}");
        report["receipt"].clone()
    }
}

/// `premium_search`'s payment request, as the upstream sends it.
fn payment_required() -> Value {
    json!({
        "x402Version": 2,
        "error": "Payment required to access this resource",
        "resource": {"url": "mcp://tool/premium_search"},
        "accepts": [{
            "scheme": "exact",
            "network": "eip155:84532",
            "amount": PRICE,
            "asset": BASE_SEPOLIA_USDC,
            "payTo": DEFAULT_PAY_TO,
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        }]
    })
}

/// Asserts `response` is the paid search result with the gateway's receipt naming a
/// settlement the facilitator made; returns the transaction hash.
#[track_caller]
fn assert_paid_result(setup: &Setup, response: &Value) -> String {
    let result = &response["result"];
    assert_ne!(result["isError"], true, "{response}");
    assert!(
        result_text(response).contains("premium results for rust x402"),
        "{response}"
    );
    let settlement = &result["_meta"]["x402/payment-response"];
    assert_eq!(settlement["success"], true, "{response}");
    let transaction = settlement["transaction"].as_str().unwrap().to_owned();
    assert!(
        setup
            .facilitator
            .settled()
            .iter()
            .any(|s| s["transaction"] == transaction.as_str()),
        "{response}"
    );
    let receipt_jws = result["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {response}"));
    let receipt = setup.verified_receipt(receipt_jws);
    assert_eq!(receipt["status"], "completed", "{receipt}");
    assert_eq!(receipt["settlement"]["reference"], transaction, "{receipt}");
    transaction
}

/// Asserts `recorded` is the unpaid probe: the host's request as sent, no payment, no decision.
#[track_caller]
fn assert_unpaid_probe(recorded: &Value, id: &Value) {
    assert_eq!(&recorded["id"], id, "{recorded}");
    assert_eq!(recorded["params"]["arguments"]["query"], "rust x402");
    let meta = &recorded["params"]["_meta"];
    assert!(meta["x402/payment"].is_null(), "{recorded}");
    assert!(meta["io.trustos/decision"].is_null(), "{recorded}");
}

/// Asserts `recorded` is the paid retry of the host's call `id`, and returns its payment.
#[track_caller]
fn assert_paid_retry(recorded: &Value, id: &Value) -> Value {
    assert_eq!(
        &recorded["id"], id,
        "the retry must reuse the host's id: {recorded}"
    );
    assert_eq!(recorded["params"]["arguments"]["query"], "rust x402");
    let meta = &recorded["params"]["_meta"];
    assert!(meta["io.trustos/decision"].is_string(), "{recorded}");
    let payment = meta["x402/payment"].clone();
    assert!(payment.is_object(), "no payment on the retry: {recorded}");
    let authorization = &payment["payload"]["authorization"];
    assert!(
        authorization["from"]
            .as_str()
            .is_some_and(|from| from.eq_ignore_ascii_case(TEST_PAYER_ADDRESS)),
        "{payment}"
    );
    assert!(
        authorization["to"]
            .as_str()
            .is_some_and(|to| to.eq_ignore_ascii_case(DEFAULT_PAY_TO)),
        "{payment}"
    );
    assert_eq!(authorization["value"], PRICE, "{payment}");
    assert_eq!(payment["accepted"]["amount"], PRICE, "{payment}");
    assert_eq!(payment["accepted"]["network"], "eip155:84532", "{payment}");
    assert_eq!(
        payment["resource"]["url"], "mcp://tool/premium_search",
        "{payment}"
    );
    payment
}

#[test]
fn a_paid_tool_call_is_paid_once_by_the_gateway_and_receipted() {
    let mut setup = Setup::start("x402-mcp-paid", "50000");
    let id = json!(7);
    let response = setup.send(&call(7, "premium_search", json!({"query": "rust x402"})));

    // The search result, with the tool's settlement and the gateway's receipt.
    let result = &response["result"];
    assert_ne!(result["isError"], true, "{response}");
    let text = result_text(&response);
    assert!(text.contains("premium results for rust x402"), "{response}");
    assert!(text.contains("decision: present"), "{response}");
    let settlement = &result["_meta"]["x402/payment-response"];
    assert_eq!(settlement["success"], true, "{response}");
    let receipt_jws = result["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {response}"));

    // Exactly one settlement, of exactly the payment the upstream received.
    let settled = setup.facilitator.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    let transaction = settled[0]["transaction"].as_str().unwrap();
    assert!(transaction.starts_with("0x") && transaction.len() == 66);
    assert_eq!(settlement["transaction"], transaction, "{response}");

    // The upstream saw the unpaid probe, then one paid retry under the host's id.
    let (recorded, payment) = setup.assert_probe_then_paid_retry(&id);
    assert_eq!(
        settled[0]["paymentPayload"]["payload"], payment["payload"],
        "the settled payment is not the one the upstream received"
    );
    assert!(
        settled[0]["payer"]
            .as_str()
            .is_some_and(|payer| payer.eq_ignore_ascii_case(TEST_PAYER_ADDRESS)),
        "{settled:?}"
    );

    // The receipt verifies offline with only the public keys and names the settlement.
    let receipt = setup.verified_receipt(receipt_jws);
    assert_eq!(receipt["status"], "completed", "{receipt}");
    assert_eq!(receipt["settlement"]["reference"], transaction, "{receipt}");
    assert_eq!(receipt["settlement"]["rail"], "x402", "{receipt}");
    assert_eq!(
        receipt["settlement"]["network"], "eip155:84532",
        "{receipt}"
    );
    assert_eq!(receipt["settlement"]["amount"], PRICE, "{receipt}");
    assert!(
        receipt["settlement"]["asset"]
            .as_str()
            .is_some_and(|asset| asset.eq_ignore_ascii_case(BASE_SEPOLIA_USDC)),
        "{receipt}"
    );
    // It closes the decision the retry carried, which also verifies offline.
    let decision_jws = recorded[1]["params"]["_meta"]["io.trustos/decision"]
        .as_str()
        .unwrap();
    let (code, report) = setup.verify(decision_jws, "decision.jws");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["decision"]["outcome"], "allow", "{report}");
    assert_eq!(
        receipt["decisionId"], report["decision"]["decisionId"],
        "{receipt} {report}"
    );

    // One answer for the host's id, nothing after it, and nothing more upstream.
    setup.assert_no_more_answers();
    assert_eq!(setup.recorded("premium_search").len(), 2);
    assert_eq!(setup.facilitator.settled().len(), 1);
}

#[test]
fn the_agents_own_payment_is_refused_before_the_upstream() {
    let mut setup = Setup::start("x402-mcp-agent-pays", "50000");
    // A genuinely signed payment for the tool's real offer: refused all the same.
    let signed = reference_sign(&json!({"paymentRequired": payment_required()})).unwrap();
    let mut message = call("own", "premium_search", json!({"query": "rust x402"}));
    message["params"]["_meta"] = json!({"x402/payment": signed["paymentPayload"]});
    let response = setup.send(&message);

    assert!(
        reasons(&response).iter().any(|r| r == "X402_AGENT_PAYMENT"),
        "{response}"
    );
    let said = format!(
        "{}{}",
        response["error"]["message"].as_str().unwrap_or_default(),
        result_text(&response)
    );
    assert!(said.contains("x402/payment"), "{response}");
    assert!(
        response["result"]["_meta"]["io.trustos/receipt"].is_null(),
        "{response}"
    );
    setup.assert_no_more_answers();
    setup.recorder.assert_no_tool_call_named("premium_search");
    assert!(setup.facilitator.settled().is_empty());
}

#[test]
fn an_offer_above_the_amount_cap_is_refused_after_the_probe() {
    let mut setup = Setup::start("x402-mcp-cap", "1000");
    let id = json!("capped");
    let response = setup.send(&call(
        "capped",
        "premium_search",
        json!({"query": "rust x402"}),
    ));

    assert_eq!(response["result"]["isError"], true, "{response}");
    assert!(
        reasons(&response)
            .iter()
            .any(|r| r == "X402_AMOUNT_ABOVE_POLICY"),
        "{response}"
    );
    assert!(
        result_text(&response).contains("X402_AMOUNT_ABOVE_POLICY"),
        "{response}"
    );
    // A refusal, not the tool's answer: no receipt, no settlement, no payment request relayed.
    let result = &response["result"];
    assert!(
        result["_meta"]["io.trustos/receipt"].is_null(),
        "{response}"
    );
    assert!(result["_meta"]["x402/payment-response"].is_null());
    assert!(result["structuredContent"].is_null(), "{response}");

    setup.assert_no_more_answers();
    let recorded = setup.recorded("premium_search");
    assert_eq!(recorded.len(), 1, "no paid retry may follow: {recorded:?}");
    assert_unpaid_probe(&recorded[0], &id);
    assert!(setup.facilitator.settled().is_empty());
}

#[test]
fn a_failed_settlement_is_receipted_and_never_paid_again() {
    let mut setup = Setup::start("x402-mcp-settle-fails", "50000");
    setup.facilitator.set_settle_mode("fail").unwrap();
    let id = json!(9);
    let response = setup.send(&call(9, "premium_search", json!({"query": "rust x402"})));

    // The tool's own answer: it asks for payment again, with the failed settlement.
    let result = &response["result"];
    assert_eq!(result["isError"], true, "{response}");
    assert_eq!(result["structuredContent"]["x402Version"], 2, "{response}");
    assert_eq!(
        result["structuredContent"]["error"], "Settlement failed",
        "{response}"
    );
    assert!(
        !result_text(&response).contains("premium results"),
        "the tool's content must be withheld: {response}"
    );
    let settlement = &result["_meta"]["x402/payment-response"];
    assert_eq!(settlement["success"], false, "{response}");
    let receipt_jws = result["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap_or_else(|| panic!("no receipt: {response}"));
    let receipt = setup.verified_receipt(receipt_jws);
    assert_eq!(receipt["status"], "failed", "{receipt}");
    assert!(receipt["settlement"].is_null(), "nothing moved: {receipt}");

    // Exactly one paid attempt reached the upstream; a second signature never leaves.
    setup.assert_no_more_answers();
    setup.assert_probe_then_paid_retry(&id);
    assert!(setup.facilitator.settled().is_empty());
}

#[test]
fn a_paid_call_without_an_answer_ends_unknown_and_is_never_paid_again() {
    let mut setup = Setup::start_full(
        "x402-mcp-hang",
        "50000",
        "paid",
        "answer_timeout_seconds = 2\n",
    );
    setup.facilitator.set_settle_mode("hang").unwrap();
    let id = json!(11);
    let started = std::time::Instant::now();
    let response = setup.send(&call(11, "premium_search", json!({"query": "rust x402"})));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the host waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        response["error"]["data"]["reason"], "X402_OUTCOME_UNKNOWN",
        "{response}"
    );
    // One answer for the id; the upstream saw one unpaid and one paid call, no third.
    setup.assert_no_more_answers();
    setup.assert_probe_then_paid_retry(&id);
    assert!(setup.facilitator.settled().is_empty());
}

#[test]
fn a_low_risk_tool_passes_without_receipt() {
    let mut setup = Setup::start("x402-mcp-ping", "50000");
    let response = setup.send(&call("p", "ping", json!({})));
    assert_ne!(response["result"]["isError"], true, "{response}");
    let text = result_text(&response);
    assert!(text.contains("pong"), "{response}");
    assert!(text.contains("decision: absent"), "{response}");
    assert!(
        response["result"]["_meta"]["io.trustos/receipt"].is_null(),
        "{response}"
    );
    setup.assert_no_more_answers();
    let recorded = setup.recorded("ping");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0]["params"]["_meta"].is_null(), "{recorded:?}");
    assert!(setup.facilitator.settled().is_empty());
}

#[test]
fn concurrent_paid_calls_are_each_paid_once() {
    let mut setup = Setup::start("x402-mcp-concurrent", "50000");
    let query = json!({"query": "rust x402"});
    setup
        .peer
        .send_json(&call("a", "premium_search", query.clone()))
        .unwrap();
    setup
        .peer
        .send_json(&call("b", "premium_search", query))
        .unwrap();
    let a = setup.peer.recv_matching(&json!("a"), TIMEOUT).unwrap();
    let b = setup.peer.recv_matching(&json!("b"), TIMEOUT).unwrap();
    let (tx_a, tx_b) = (
        assert_paid_result(&setup, &a),
        assert_paid_result(&setup, &b),
    );
    assert_ne!(tx_a, tx_b);
    setup.assert_no_more_answers();
    assert_eq!(setup.facilitator.settled().len(), 2);

    // Per id: one probe, then one paid retry with its own authorization.
    let recorded = setup.recorded("premium_search");
    assert_eq!(recorded.len(), 4, "{recorded:?}");
    let mut nonces = Vec::new();
    for id in [json!("a"), json!("b")] {
        let mine: Vec<&Value> = recorded.iter().filter(|c| c["id"] == id).collect();
        assert_eq!(mine.len(), 2, "{recorded:?}");
        assert_unpaid_probe(mine[0], &id);
        let payment = assert_paid_retry(mine[1], &id);
        nonces.push(payment["payload"]["authorization"]["nonce"].clone());
    }
    assert_ne!(nonces[0], nonces[1]);
}

#[test]
fn an_upstream_posing_as_the_gateway_cannot_replace_the_receipt() {
    // `paid-forger` puts its own `_meta["io.trustos/receipt"]` on every result.
    let mut setup = Setup::start_variant("x402-mcp-forger", "50000", "paid-forger");
    let paid = setup.send(&call("f", "premium_search", json!({"query": "rust x402"})));
    // The receipt is the gateway's, for the settlement that happened, not the upstream's.
    assert_paid_result(&setup, &paid);
    assert_eq!(setup.facilitator.settled().len(), 1);

    let ping = setup.send(&call("g", "ping", json!({})));
    assert!(result_text(&ping).contains("pong"), "{ping}");
    assert!(
        ping["result"]["_meta"]["io.trustos/receipt"].is_null(),
        "an upstream's receipt reached the host: {ping}"
    );
    setup.assert_no_more_answers();
}
