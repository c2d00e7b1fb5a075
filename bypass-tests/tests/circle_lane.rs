//! The Circle lane end to end: a real `trustos serve` with `[circle]` pointing at the W3S
//! emulator (`trustos_adapters::testkit::circle::CircleEmulator`), whose webhooks go to the
//! gateway's `/webhooks/circle`. The agent is a plain HTTP client with a bearer token that asks
//! `POST /rails/circle/transfers`; it never holds Circle's credentials.
//!
//! What is checked, against what the emulator actually created:
//! - a transfer completes (webhooks drive it) and its receipt verifies offline with
//!   `trustos verify` and names the Circle transaction; `trustos payments` lists it settled;
//! - `FAILED` and `DENIED` transfers are receipted failed and release the budget: a later
//!   transfer that fits the budget only if they were released passes;
//! - a transfer that reaches no final state in time is answered `unknown` (504), and retrying
//!   the same request never creates a second transfer; once Circle completes it, a late webhook
//!   records it, `trustos payments` shows it settled, and the log holds exactly one late
//!   receipt for the decision: `completed`, naming the Circle transaction, composing the
//!   `unknown` one, provable and verifiable offline; a transfer left `unknown` that Circle
//!   later fails gets a late `failed` receipt and its budget back; without webhooks, across a
//!   restart, `trustos payments` receipts the late outcome once; with nobody running it, the
//!   daemon asks Circle itself every `reconcile_interval_seconds`; a lost creation answer
//!   (`TimeoutAfterCreate`) still makes one transfer only;
//! - webhooks: a forged signature and an unknown key id are refused (401) and change nothing; a
//!   replayed notification is acknowledged and not processed twice;
//! - refusals with their codes, nothing sent to Circle: an amount with decimals, an amount over
//!   the profile's cap, unknown fields, no token;
//! - without webhooks, a transfer already final when created is answered from the gateway's
//!   first look at it (polls a minute apart, a five-second answer timeout);
//! - startup refuses a wrong-environment API key and a short entity secret with clear messages
//!   that never show the secret.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bypass_tests::serve::{Listening, init_home};
use bypass_tests::x402::{Profile, Route, token_entry};
use bypass_tests::{TempDir, trustos_bin};
use serde_json::{Value, json};
use trustos_adapters::circle::TransactionState;
use trustos_adapters::testkit::circle::{CircleEmulator, DEFAULT_WALLET_ID, EmulatorConfig, Fault};

/// The agent's bearer token.
const TOKEN: &str = "circle-lane-token-7c1f";
/// The variables holding the gateway's Circle secrets (only the daemon gets them).
const KEY_ENV: &str = "TRUSTOS_TEST_CIRCLE_API_KEY";
const SECRET_ENV: &str = "TRUSTOS_TEST_CIRCLE_ENTITY_SECRET";
/// Base Sepolia, as the profile allows it.
const NETWORK: &str = "eip155:84532";
/// A payee whose transfers complete.
const PAYEE: &str = "0x1111111111111111111111111111111111111111";
/// A payee whose transfers end FAILED.
const FAILING: &str = "0x2222222222222222222222222222222222222222";
/// A payee whose transfers end DENIED.
const DENIED: &str = "0x3333333333333333333333333333333333333333";
/// How long any exchange may take.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A free port on 127.0.0.1 (released for the daemon to bind).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The agent's profile: the Circle transfer tool is a paid route, USDC up to 50000 base units
/// a transfer and `budget` a day.
fn profile(budget: &str) -> Profile {
    Profile {
        budget: budget.to_owned(),
        ..Profile::new(
            "circle-lane",
            "An agent that pays suppliers through the gateway's Circle wallet.",
            ("acme", "buyer-bot"),
            vec![Route::mcp("circle-transfer", "paid", "circle", "transfer")],
        )
    }
}

/// A status and a body.
struct Reply {
    status: u16,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    fn codes(&self) -> Vec<String> {
        self.json()["reasons"]
            .as_array()
            .map(|reasons| {
                reasons
                    .iter()
                    .filter_map(|r| r["code"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 exchange (`Connection: close`).
fn http(addr: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status");
    Reply {
        status,
        body: raw[split + 4..].to_vec(),
    }
}

/// The emulator, and `trustos serve` with `[circle]` pointing at it.
struct Lane {
    /// First, so the daemon stops before its home is removed.
    server: Listening,
    emulator: CircleEmulator,
    dir: TempDir,
    home: PathBuf,
}

impl Lane {
    fn start(label: &str, budget: &str, circle_extra: &str) -> Self {
        Self::start_with(label, &profile(budget).toml(), circle_extra)
    }

    /// [`Lane::start`] with the profile's TOML given.
    fn start_with(label: &str, profile_toml: &str, circle_extra: &str) -> Self {
        Self::start_emulating(label, profile_toml, circle_extra, true, false)
    }

    /// [`Lane::start_with`], with webhooks sent to the gateway or not, and transfers completed
    /// by the emulator at creation or not.
    fn start_emulating(
        label: &str,
        profile_toml: &str,
        circle_extra: &str,
        webhooks: bool,
        auto_complete: bool,
    ) -> Self {
        let port = free_port();
        let emulator = CircleEmulator::start(EmulatorConfig {
            webhook_url: webhooks.then(|| format!("http://127.0.0.1:{port}/webhooks/circle")),
            fail_destinations: HashSet::from([FAILING.to_owned()]),
            deny_destinations: HashSet::from([DENIED.to_owned()]),
            auto_complete,
            ..EmulatorConfig::default()
        })
        .unwrap();
        let dir = TempDir::new(label).unwrap();
        let home = init_home(&dir).unwrap();
        std::fs::write(home.join("profiles/default/profile.toml"), profile_toml).unwrap();
        let mut config = std::fs::read_to_string(home.join("gateway.toml")).unwrap();
        config.push_str(&circle_table(&emulator, circle_extra));
        config.push_str(&token_entry(TOKEN, "acme", "buyer-bot", None));
        std::fs::write(home.join("gateway.toml"), config).unwrap();
        let server = serve(&home, &format!("127.0.0.1:{port}"), &emulator);
        Self {
            server,
            emulator,
            dir,
            home,
        }
    }

    fn transfer_with(&self, headers: &[(&str, &str)], body: &Value) -> Reply {
        http(
            self.server.addr(),
            "/rails/circle/transfers",
            headers,
            body.to_string().as_bytes(),
        )
    }

    /// Asks for `amount` to `payee`, with the agent's token.
    fn transfer(&self, payee: &str, amount: &str) -> Reply {
        let bearer = format!("Bearer {TOKEN}");
        self.transfer_with(
            &[
                ("Authorization", &bearer),
                ("Content-Type", "application/json"),
            ],
            &body(payee, amount),
        )
    }

    /// Sends `amount` to `payee` on a thread, and drives the emulator: every transaction one
    /// state on every 100 ms until the request is answered.
    fn transfer_driven(&self, payee: &str, amount: &str) -> Reply {
        std::thread::scope(|scope| {
            let request = scope.spawn(|| self.transfer(payee, amount));
            while !request.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
                self.emulator.tick();
            }
            request.join().unwrap()
        })
    }

    fn webhook(&self, body: &[u8], key_id: &str, signature: &str) -> Reply {
        http(
            self.server.addr(),
            "/webhooks/circle",
            &[
                ("Content-Type", "application/json"),
                ("X-Circle-Key-Id", key_id),
                ("X-Circle-Signature", signature),
            ],
            body,
        )
    }

    /// `trustos verify` of a receipt with the gateway's JWKS: exit code and output.
    fn verify(&self, jws: &str) -> (i32, String) {
        bypass_tests::x402::verify_offline(&self.home, self.dir.path(), jws).unwrap()
    }

    fn payments(&self) -> (i32, Vec<Value>) {
        bypass_tests::x402::payments(&self.home).unwrap()
    }

    /// Stops the daemon and starts it again on the same home and address.
    fn restart(self) -> Self {
        self.restart_after(|_| {})
    }

    /// Sets `[gateway] reconcile_interval_seconds` (from whatever it was) and restarts.
    fn reconciling_every(self, seconds: u64) -> Self {
        let path = self.home.join("gateway.toml");
        let config = std::fs::read_to_string(&path).unwrap();
        let (before, rest) = config.split_once("reconcile_interval_seconds = ").unwrap();
        let (_, after) = rest.split_once('\n').unwrap();
        std::fs::write(
            &path,
            format!("{before}reconcile_interval_seconds = {seconds}\n{after}"),
        )
        .unwrap();
        self.restart()
    }

    /// Stops the daemon, first doing `stop` to it (`Listening::kill`: a crash), and starts it
    /// again on the same home and address.
    fn restart_after(self, stop: impl FnOnce(&mut Listening)) -> Self {
        let Self {
            mut server,
            emulator,
            dir,
            home,
        } = self;
        let addr = server.addr().to_owned();
        stop(&mut server);
        drop(server);
        let server = serve(&home, &addr, &emulator);
        Self {
            server,
            emulator,
            dir,
            home,
        }
    }

    /// Stops the daemon and checks the log for the call `answer` answered `unknown`: its
    /// receipt, then a late `failed` one naming no settlement and composing it.
    fn stop_and_check_late_failure(self, answer: &Value) {
        let unknown_jws = answer["receipt"].as_str().unwrap().to_owned();
        let receipts = self.stop_and_read_receipts(answer["decisionId"].as_str().unwrap());
        assert_eq!(receipts.len(), 2, "{receipts:?}");
        assert_eq!(receipts[0].1, unknown_jws);
        let late = &receipts[1].2;
        assert_eq!(late["status"], "failed", "{late}");
        assert!(late.get("settlement").is_none_or(Value::is_null), "{late}");
        assert_eq!(late["composes"], json!([digest_of(&unknown_jws)]));
    }

    /// Stops the daemon (the log commands open the store themselves) and returns the receipts
    /// in the log for `decision_id`: each entry's index, compact JWS and payload, in log order.
    /// Every bundle `trustos log prove` hands out is verified offline with `trustos verify`.
    fn stop_and_read_receipts(self, decision_id: &str) -> Vec<(u64, String, Value)> {
        let Self {
            server, dir, home, ..
        } = self;
        drop(server);
        bypass_tests::x402::logged_receipts(&home, dir.path())
            .unwrap()
            .into_iter()
            .filter(|receipt| receipt.payload["decisionId"] == decision_id)
            .map(|receipt| (receipt.index, receipt.jws, receipt.payload))
            .collect()
    }
}

/// `sha256:` and the hex SHA-256 of `text`, as receipts name the receipts they compose.
fn digest_of(text: &str) -> String {
    trustos_kernel::canonical::Digest::of(text.as_bytes()).to_string()
}

/// `trustos serve` of `home` on `addr`, with the emulator's secrets in its environment only.
fn serve(home: &std::path::Path, addr: &str, emulator: &CircleEmulator) -> Listening {
    Listening::start_on(
        home,
        addr,
        &[
            (KEY_ENV, emulator.api_key()),
            (SECRET_ENV, emulator.entity_secret_hex()),
        ],
    )
    .unwrap()
}

/// `[circle]` for the emulator: secrets from the environment, testnet, the emulator's wallet,
/// USDC on Base Sepolia, then `extra` lines.
fn circle_table(emulator: &CircleEmulator, extra: &str) -> String {
    let poll = if extra.contains("poll_interval_ms") {
        ""
    } else {
        "poll_interval_ms = 200\n"
    };
    format!(
        "\n[circle]\nbase_url = \"{}\"\napi_key_env = \"{KEY_ENV}\"\nentity_secret_env = \"{SECRET_ENV}\"\n\
         environment = \"testnet\"\nwallet_id = \"{DEFAULT_WALLET_ID}\"\nanswer_timeout_seconds = 5\n\
         {poll}{extra}\n\
         [[circle.tokens]]\nnetwork = \"{NETWORK}\"\nasset = \"usdc\"\n\
         token_id = \"5797fbd6-3795-519d-84ca-ec4c5f80c3b1\"\ndecimals = 6\n",
        emulator.base_url()
    )
}

fn body(payee: &str, amount: &str) -> Value {
    json!({
        "destination": payee,
        "amount": amount,
        "asset": "usdc",
        "network": NETWORK,
        "resource": "https://supplier.example/invoices/42",
    })
}

/// The payload of a compact JWS.
fn jws_payload(jws: &str) -> Value {
    bypass_tests::x402::jws_payload(jws).unwrap()
}

#[test]
fn a_transfer_completes_with_a_receipt_that_verifies_offline_and_names_the_transaction() {
    let lane = Lane::start("circle-complete", "1000000", "");
    let reply = lane.transfer_driven(PAYEE, "1500");
    let answer = reply.json();
    assert_eq!(reply.status, 200, "{answer}");
    assert_eq!(answer["status"], "completed");
    assert_eq!(answer["state"], "COMPLETE");
    let transfers = lane.emulator.transfers();
    assert_eq!(transfers.len(), 1);
    let created = &transfers[0];
    assert_eq!(answer["transactionId"], created.id.as_str());
    assert_eq!(answer["txHash"].as_str(), created.tx_hash.as_deref());
    assert_eq!(created.ref_id.as_deref(), answer["decisionId"].as_str());
    assert_eq!(created.amounts, ["0.0015"]);
    assert_eq!(created.destination_address, PAYEE);

    let receipt = answer["receipt"].as_str().unwrap();
    let (code, out) = lane.verify(receipt);
    assert_eq!(code, 0, "{out}");
    let payload = jws_payload(receipt);
    assert_eq!(payload["status"], "completed", "{payload}");
    assert_eq!(payload["settlement"]["rail"], "circle");
    assert_eq!(payload["settlement"]["reference"], created.id.as_str());
    assert_eq!(payload["settlement"]["amount"], "1500");
    assert_eq!(payload["decisionId"], answer["decisionId"]);

    let (code, attempts) = lane.payments();
    assert_eq!(code, 0, "{attempts:?}");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["rail"], "circle");
    assert_eq!(attempts[0]["state"], "settled");
}

/// Without webhooks (no subscription, or an endpoint Circle cannot reach) a transfer that is
/// final by the time it is created is still answered at once: the gateway looks right after
/// creating it. Its polls are a minute apart here and the answer timeout five seconds, so only
/// that first look can have seen the COMPLETE state.
#[test]
fn without_webhooks_a_transfer_already_final_is_seen_by_the_first_poll() {
    let lane = Lane::start_emulating(
        "circle-no-webhooks",
        &profile("1000000").toml(),
        "poll_interval_ms = 60000",
        false,
        true,
    );
    let reply = lane.transfer(PAYEE, "2500");
    let answer = reply.json();
    assert_eq!(reply.status, 200, "{answer}");
    assert_eq!(answer["state"], "COMPLETE");
    assert_eq!(lane.emulator.transfers().len(), 1);
}

#[test]
fn failed_and_denied_transfers_release_the_budget() {
    // 50000 a day: the third 20000 fits only if the failed and denied ones were released.
    let lane = Lane::start("circle-release", "50000", "");
    let failed = lane.transfer_driven(FAILING, "20000");
    assert_eq!(failed.status, 502, "{}", failed.json());
    assert_eq!(failed.json()["status"], "failed");
    assert_eq!(failed.codes(), ["CIRCLE_TRANSFER_FAILED"]);
    let (code, out) = lane.verify(failed.json()["receipt"].as_str().unwrap());
    assert_eq!(code, 0, "{out}");

    let denied = lane.transfer_driven(DENIED, "20000");
    assert_eq!(denied.status, 502, "{}", denied.json());
    assert_eq!(denied.codes(), ["CIRCLE_TRANSFER_DENIED"]);

    let first = lane.transfer_driven(PAYEE, "20000");
    assert_eq!(first.status, 200, "{}", first.json());
    let second = lane.transfer_driven(PAYEE, "20000");
    assert_eq!(second.status, 200, "{}", second.json());
    // Now 40000 are spent: 20000 more is over the budget, refused before Circle is asked.
    let over = lane.transfer_driven(PAYEE, "20000");
    assert_eq!(over.status, 403, "{}", over.json());
    assert_eq!(lane.emulator.transfers().len(), 4);

    let (_, attempts) = lane.payments();
    let states: Vec<&str> = attempts
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.iter().filter(|s| **s == "failed").count(), 2);
    assert_eq!(states.iter().filter(|s| **s == "settled").count(), 2);
}

#[test]
fn no_final_state_in_time_is_unknown_and_a_retry_never_sends_a_second_transfer() {
    let lane = Lane::start("circle-unknown", "1000000", "");
    let started = Instant::now();
    let reply = lane.transfer(PAYEE, "3000");
    assert_eq!(reply.status, 504, "{}", reply.json());
    assert!(started.elapsed() >= Duration::from_secs(4));
    let answer = reply.json();
    assert_eq!(answer["status"], "unknown");
    assert_eq!(answer["state"], "INITIATED");
    assert_eq!(reply.codes(), ["CIRCLE_TRANSFER_PENDING"]);
    let payload = jws_payload(answer["receipt"].as_str().unwrap());
    assert_eq!(payload["status"], "unknown");
    assert!(payload.get("settlement").is_none_or(Value::is_null));

    // The agent retries the same request: refused, nothing new at Circle.
    let retry = lane.transfer(PAYEE, "3000");
    assert_eq!(retry.status, 409, "{}", retry.json());
    assert_eq!(retry.codes(), ["CIRCLE_TRANSFER_IN_DOUBT"]);
    assert_eq!(lane.emulator.transfers().len(), 1);
    let (code, attempts) = lane.payments();
    assert_eq!(code, 1, "an open attempt: {attempts:?}");
    assert_eq!(attempts[0]["reconcile"], "pending");

    // Circle completes it later: the late webhook records it.
    let id = answer["transactionId"].as_str().unwrap();
    lane.emulator.advance_to(id, TransactionState::Complete);
    lane.emulator.flush_webhooks();
    let (code, attempts) = lane.payments();
    assert_eq!(code, 0, "{attempts:?}");
    assert_eq!(attempts[0]["state"], "settled");
    // Known now: an equal transfer is a new payment.
    let again = lane.transfer_driven(PAYEE, "3000");
    assert_eq!(again.status, 200, "{}", again.json());
    assert_eq!(lane.emulator.transfers().len(), 2);
    // The webhook, `trustos payments` (twice) and the in-doubt check all learned the outcome;
    // a redelivered webhook is acknowledged without effect.
    let (code, _) = lane.payments();
    assert_eq!(code, 0);

    // Exactly two receipts for the decision: the `unknown` one, then the late `completed`
    // one naming the transaction and composing the first.
    let unknown_jws = answer["receipt"].as_str().unwrap().to_owned();
    let decision_id = answer["decisionId"].as_str().unwrap().to_owned();
    let receipts = lane.stop_and_read_receipts(&decision_id);
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    assert_eq!(receipts[0].1, unknown_jws);
    let late = &receipts[1].2;
    assert_eq!(late["status"], "completed", "{late}");
    assert_eq!(late["settlement"]["rail"], "circle");
    assert_eq!(late["settlement"]["reference"], id);
    assert_eq!(late["settlement"]["amount"], "3000");
    assert_eq!(late["settlement"]["network"], NETWORK);
    assert_eq!(late["fingerprint"], payload["fingerprint"]);
    assert_eq!(late["composes"], json!([digest_of(&unknown_jws)]));
    // Started when the decision was consumed (just before the first receipt's start), ended
    // after it (RFC 3339 instants of one format: text order is time order).
    let instant = |receipt: &Value, name: &str| receipt[name].as_str().unwrap().to_owned();
    assert!(instant(late, "startedAt") <= instant(&payload, "startedAt"));
    assert!(instant(late, "completedAt") >= instant(&payload, "completedAt"));
    assert_ne!(late["receiptId"], payload["receiptId"]);
}

/// Without webhooks, across a restart: the transfer left `unknown` completes at Circle while the
/// gateway is down; after the restart, `trustos payments` asks Circle, records it settled and
/// receipts it late, once (asking again adds nothing).
#[test]
fn after_a_restart_trustos_payments_receipts_the_late_outcome() {
    let lane = Lane::start_emulating(
        "circle-late-restart",
        &profile("1000000").toml(),
        "",
        false,
        false,
    );
    let reply = lane.transfer(PAYEE, "4000");
    assert_eq!(reply.status, 504, "{}", reply.json());
    let answer = reply.json();
    let id = answer["transactionId"].as_str().unwrap().to_owned();
    let lane = lane.restart();
    lane.emulator.advance_to(&id, TransactionState::Complete);
    for _ in 0..2 {
        let (code, attempts) = lane.payments();
        assert_eq!(code, 0, "{attempts:?}");
        assert_eq!(attempts[0]["state"], "settled");
    }
    let receipts = lane.stop_and_read_receipts(answer["decisionId"].as_str().unwrap());
    assert_eq!(receipts.len(), 2, "{receipts:?}");
    assert_eq!(receipts[0].2["status"], "unknown");
    assert_eq!(receipts[1].2["status"], "completed");
    assert_eq!(receipts[1].2["settlement"]["reference"], id.as_str());
}

/// The gateway killed (SIGKILL) while it waits for Circle to finish a transfer: the call never
/// got its receipt. After the restart, once Circle completes it, `trustos payments` records it
/// settled and receipts it: one receipt for the decision, `completed`, naming the transaction,
/// composing nothing (there was no earlier receipt).
#[test]
fn a_transfer_cut_off_by_a_crash_is_receipted_after_the_restart() {
    let lane = Lane::start_emulating("circle-crash", &profile("1000000").toml(), "", false, false);
    let addr = lane.server.addr().to_owned();
    let bearer = format!("Bearer {TOKEN}");
    let asked = body(PAYEE, "4500").to_string();
    // The agent's request, on its own connection: it never gets an answer.
    let agent = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(&addr).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let head = format!(
            "POST /rails/circle/transfers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Authorization: {bearer}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{asked}",
            asked.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        answer
    });
    let deadline = Instant::now() + TIMEOUT;
    while lane.emulator.transfers().is_empty() {
        assert!(Instant::now() < deadline, "the transfer was never created");
        std::thread::sleep(Duration::from_millis(20));
    }
    let lane = lane.restart_after(Listening::kill);
    let answer = agent.join().unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).contains("receipt"),
        "the call was answered before the crash: {}",
        String::from_utf8_lossy(&answer)
    );
    let transfers = lane.emulator.transfers();
    assert_eq!(transfers.len(), 1);
    let id = transfers[0].id.clone();
    let decision_id = transfers[0].ref_id.clone().unwrap();

    lane.emulator.advance_to(&id, TransactionState::Complete);
    for _ in 0..2 {
        let (code, attempts) = lane.payments();
        assert_eq!(code, 0, "{attempts:?}");
        assert_eq!(attempts[0]["state"], "settled");
    }
    assert_eq!(lane.emulator.transfers().len(), 1, "nothing was sent again");
    let receipts = lane.stop_and_read_receipts(&decision_id);
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    let receipt = &receipts[0].2;
    assert_eq!(receipt["status"], "completed", "{receipt}");
    assert_eq!(receipt["settlement"]["rail"], "circle");
    assert_eq!(receipt["settlement"]["reference"], id.as_str());
    assert_eq!(receipt["settlement"]["amount"], "4500");
    assert_eq!(receipt["composes"], json!([]));
}

/// A transfer left `unknown` keeps its budget reservation; when Circle later fails it, the late
/// webhook receipts it `failed` and gives the budget back.
#[test]
fn a_late_failure_is_receipted_and_releases_the_budget() {
    const OTHER: &str = "0x4444444444444444444444444444444444444444";
    // 5000 a day: a second 3000 fits only once the first is released.
    let lane = Lane::start("circle-late-failure", "5000", "");
    let reply = lane.transfer(FAILING, "3000");
    assert_eq!(reply.status, 504, "{}", reply.json());
    let answer = reply.json();
    assert_eq!(answer["status"], "unknown");

    let over = lane.transfer_driven(OTHER, "3000");
    assert_eq!(over.status, 403, "still reserved: {}", over.json());
    assert_eq!(over.codes(), ["BUDGET_DAILY_EXCEEDED"]);

    let id = answer["transactionId"].as_str().unwrap();
    assert_eq!(
        lane.emulator.advance_to(id, TransactionState::Failed),
        Some(TransactionState::Failed)
    );
    lane.emulator.flush_webhooks();
    let fits = lane.transfer_driven(OTHER, "3000");
    assert_eq!(fits.status, 200, "released: {}", fits.json());
    assert_eq!(lane.emulator.transfers().len(), 2);

    lane.stop_and_check_late_failure(&answer);
}

/// Without webhooks and with nobody running `trustos payments`: the daemon asks Circle about
/// the transfer left `unknown` every `reconcile_interval_seconds`, and the late failure it
/// learns gives the agent its budget back. With the interval at 0 (off), the reservation stays
/// however long one waits; at 1, a transfer refused over budget passes a moment later, and the
/// log holds the late `failed` receipt.
#[test]
fn the_daemon_asks_circle_itself_and_a_late_failure_releases_the_budget() {
    const OTHER: &str = "0x5555555555555555555555555555555555555555";
    let lane = Lane::start_emulating(
        "circle-reconcile",
        &profile("5000").toml(),
        "",
        false,
        false,
    );
    let lane = lane.reconciling_every(0);
    let reply = lane.transfer(FAILING, "3000");
    assert_eq!(reply.status, 504, "{}", reply.json());
    let answer = reply.json();
    assert_eq!(answer["status"], "unknown");
    let id = answer["transactionId"].as_str().unwrap();
    assert_eq!(
        lane.emulator.advance_to(id, TransactionState::Failed),
        Some(TransactionState::Failed)
    );

    // Another payee: no in-doubt check asks Circle on the agent's behalf; only the budget
    // decides. With reconciliation off, nothing frees it.
    std::thread::sleep(Duration::from_secs(3));
    let over = lane.transfer_driven(OTHER, "3000");
    assert_eq!(over.status, 403, "{}", over.json());
    assert_eq!(over.codes(), ["BUDGET_DAILY_EXCEEDED"]);

    let lane = lane.reconciling_every(1);
    let deadline = Instant::now() + TIMEOUT;
    let fits = loop {
        let attempt = lane.transfer_driven(OTHER, "3000");
        if attempt.status != 403 || Instant::now() > deadline {
            break attempt;
        }
        assert_eq!(attempt.codes(), ["BUDGET_DAILY_EXCEEDED"]);
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(fits.status, 200, "released: {}", fits.json());
    assert_eq!(lane.emulator.transfers().len(), 2);

    lane.stop_and_check_late_failure(&answer);
}

#[test]
fn a_lost_creation_answer_still_makes_one_transfer() {
    let lane = Lane::start("circle-lost-answer", "1000000", "");
    lane.emulator.set_fault(Fault::TimeoutAfterCreate);
    let reply = lane.transfer_driven(PAYEE, "2500");
    assert_eq!(reply.status, 200, "{}", reply.json());
    let transfers = lane.emulator.transfers();
    assert_eq!(transfers.len(), 1, "{transfers:?}");
    assert!(!transfers[0].answered);
}

#[test]
fn forged_unknown_key_and_replayed_webhooks_change_nothing() {
    let lane = Lane::start("circle-webhooks", "1000000", "");
    lane.emulator.set_fault(Fault::DropWebhooks);
    // No webhooks reach the gateway and nothing advances: the transfer ends unknown.
    let reply = lane.transfer(PAYEE, "4000");
    assert_eq!(reply.status, 504, "{}", reply.json());
    let id = reply.json()["transactionId"].as_str().unwrap().to_owned();
    lane.emulator.advance_to(&id, TransactionState::Complete);
    let notes = lane.emulator.notifications();
    let complete = notes
        .iter()
        .find(|n| n.transaction_id == id && n.state == TransactionState::Complete)
        .unwrap();
    let key_id = lane.emulator.notification_key_id().to_owned();

    // A forged signature: the genuine one of another body.
    let other = notes
        .iter()
        .find(|n| n.state != TransactionState::Complete)
        .unwrap();
    let forged = lane.webhook(&complete.body, &key_id, &other.signature);
    assert_eq!(forged.status, 401);
    assert_eq!(forged.json()["code"], "CIRCLE_WEBHOOK_SIGNATURE_INVALID");
    // A tampered body under the genuine signature.
    let tampered = String::from_utf8(complete.body.clone())
        .unwrap()
        .replace("COMPLETE", "FAILED");
    let refused = lane.webhook(tampered.as_bytes(), &key_id, &complete.signature);
    assert_eq!(refused.status, 401);
    // An unknown key id.
    let unknown = lane.webhook(
        &complete.body,
        "00000000-0000-4000-8000-000000000000",
        &complete.signature,
    );
    assert_eq!(unknown.status, 401);
    assert_eq!(unknown.json()["code"], "CIRCLE_WEBHOOK_KEY_UNKNOWN");
    // Another invented key id right after: not even looked up at Circle (no amplification).
    let invented = lane.webhook(
        &complete.body,
        "00000000-0000-4000-8000-000000000001",
        &complete.signature,
    );
    assert_eq!(invented.status, 503);
    assert_eq!(invented.json()["code"], "CIRCLE_WEBHOOK_KEY_RATE_LIMITED");
    let malformed = lane.webhook(&complete.body, &key_id, "not base64!");
    assert_eq!(malformed.status, 401);
    assert_eq!(
        malformed.json()["code"],
        "CIRCLE_WEBHOOK_SIGNATURE_MALFORMED"
    );
    let unsigned = http(
        lane.server.addr(),
        "/webhooks/circle",
        &[("Content-Type", "application/json")],
        &complete.body,
    );
    assert_eq!(unsigned.status, 401);

    // The genuine one is processed; its replay is acknowledged and not processed again.
    let genuine = lane.webhook(&complete.body, &key_id, &complete.signature);
    assert_eq!(genuine.status, 200, "{}", genuine.json());
    assert_eq!(genuine.json()["code"], "CIRCLE_WEBHOOK_APPLIED");
    let replay = lane.webhook(&complete.body, &key_id, &complete.signature);
    assert_eq!(replay.status, 200);
    assert_eq!(replay.json()["code"], "CIRCLE_WEBHOOK_DUPLICATE");
    // Had the tampered FAILED been taken, the attempt would be failed for good.
    let (code, attempts) = lane.payments();
    assert_eq!(code, 0, "{attempts:?}");
    assert_eq!(attempts[0]["state"], "settled");
    assert_eq!(lane.emulator.transfers().len(), 1);
}

#[test]
fn bad_requests_are_refused_before_circle_is_asked() {
    let lane = Lane::start("circle-refusals", "1000000", "");
    let bearer = format!("Bearer {TOKEN}");
    let json_headers = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let decimals = lane.transfer(PAYEE, "1.5");
    assert_eq!(decimals.status, 400);
    assert_eq!(decimals.codes(), ["CIRCLE_AMOUNT_NOT_INTEGER"]);
    let number = lane.transfer_with(&json_headers, &json!({"destination": PAYEE, "amount": 15, "asset": "usdc", "network": NETWORK, "resource": "r"}));
    assert_eq!(number.codes(), ["CIRCLE_AMOUNT_NOT_STRING"]);
    let over = lane.transfer(PAYEE, "50001");
    assert_eq!(over.status, 403, "{}", over.json());
    assert_eq!(over.codes(), ["CIRCLE_AMOUNT_ABOVE_POLICY"]);
    assert!(over.json()["decision"].is_string(), "a signed deny");
    let mut extra = body(PAYEE, "100");
    extra["walletId"] = json!("someone-elses-wallet");
    let unknown = lane.transfer_with(&json_headers, &extra);
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.codes(), ["CIRCLE_REQUEST_UNKNOWN_FIELD"]);
    let token = lane.transfer_with(&[("Content-Type", "application/json")], &body(PAYEE, "100"));
    assert_eq!(token.status, 401);
    let wrong = lane.transfer_with(
        &[
            ("Authorization", "Bearer not-a-token"),
            ("Content-Type", "application/json"),
        ],
        &body(PAYEE, "100"),
    );
    assert_eq!(wrong.status, 401);
    let asset = lane.transfer_with(&json_headers, &json!({"destination": PAYEE, "amount": "100", "asset": "eurc", "network": NETWORK, "resource": "r"}));
    assert_eq!(asset.status, 403);
    assert_eq!(asset.codes(), ["CIRCLE_ASSET_UNKNOWN"]);
    assert!(lane.emulator.transfers().is_empty());
    let (code, attempts) = lane.payments();
    assert_eq!((code, attempts.len()), (0, 0));
}

/// `trustos serve` with `[circle]` text and secrets `env`: its exit status and stderr.
fn serve_fails(label: &str, circle: &str, env: &[(&str, &str)]) -> String {
    let dir = TempDir::new(label).unwrap();
    let home = init_home(&dir).unwrap();
    let mut config = std::fs::read_to_string(home.join("gateway.toml")).unwrap();
    config.push_str(circle);
    std::fs::write(home.join("gateway.toml"), config).unwrap();
    let mut cmd = Command::new(trustos_bin().unwrap());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--home"])
        .arg(&home)
        .envs(env.iter().copied());
    let out = bypass_tests::output_with_timeout(cmd, TIMEOUT).unwrap();
    assert!(!out.status.success(), "trustos serve started");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn startup_refuses_a_wrong_environment_key_and_a_short_entity_secret_without_showing_them() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).unwrap();
    let live_key = "LIVE_API_KEY:0f1e2d3c4b5a69788796a5b4c3d2e1f0:livesecretdonotprint42";
    let out = serve_fails(
        "circle-wrong-env",
        &circle_table(&emulator, "").replace("\"testnet\"", "\"mainnet\""),
        &[
            (KEY_ENV, emulator.api_key()),
            (SECRET_ENV, emulator.entity_secret_hex()),
        ],
    );
    assert!(out.contains("CIRCLE_API_KEY_WRONG_ENVIRONMENT"), "{out}");
    assert!(
        out.contains("[circle]") && out.contains("environment"),
        "{out}"
    );
    assert!(!out.contains("emulatorsecret"), "{out}");
    let out = serve_fails(
        "circle-live-key",
        &circle_table(&emulator, ""),
        &[
            (KEY_ENV, live_key),
            (SECRET_ENV, emulator.entity_secret_hex()),
        ],
    );
    assert!(out.contains("CIRCLE_API_KEY_WRONG_ENVIRONMENT"), "{out}");
    assert!(!out.contains("livesecretdonotprint42"), "{out}");
    let short = &emulator.entity_secret_hex()[..40];
    let out = serve_fails(
        "circle-short-secret",
        &circle_table(&emulator, ""),
        &[(KEY_ENV, emulator.api_key()), (SECRET_ENV, short)],
    );
    assert!(out.contains("CIRCLE_ENTITY_SECRET_LENGTH"), "{out}");
    assert!(out.contains("entity_secret_env"), "{out}");
    assert!(!out.contains(short), "{out}");
}

#[test]
fn shadow_mode_never_moves_money() {
    // Over the daily budget: denied, which shadow mode lets pass; a payment never does.
    let shadow = profile("500")
        .toml()
        .replace("paid = \"hard\"", "paid = \"shadow\"");
    assert!(shadow.contains("paid = \"shadow\""));
    let lane = Lane::start_with("circle-shadow", &shadow, "");
    let reply = lane.transfer(PAYEE, "1000");
    assert_eq!(reply.status, 403, "{}", reply.json());
    assert_eq!(reply.codes(), ["PAYMENT_NOT_ALLOWED"]);
    assert!(lane.emulator.transfers().is_empty());
}
