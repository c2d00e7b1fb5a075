//! `trustos payments` end to end: attempts written through the store's real `PaymentLedger`
//! are listed without a daemon and through one (whose store is then locked), filtered by state,
//! with exit 1 while any outcome is unknown, and the signed authorization only in `--json
//! --with-authorization`. Also `trustos routes` rows for the profile's HTTP routes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use trustos::home::Home;
use trustos_adapters::{AttemptRecord, AttemptState, PaymentLedger};

/// A signature that must never reach the table or `--json` without the flag.
const SIGNATURE: &str = "0x5ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e75ec7e71b";

fn trustos(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(args)
        .arg("--home")
        .arg(home)
        .env_remove("TRUSTOS_HOME")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("payments-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir.join("home")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn attempt(decision_id: &str, valid_before: u64) -> AttemptRecord {
    AttemptRecord {
        rail: "x402".into(),
        decision_id: decision_id.into(),
        state: AttemptState::Authorized,
        idempotency_key: format!("idem-{decision_id}"),
        replay_key: format!("eip155:84532/0x036c/0xpayer/{decision_id}"),
        valid_before,
        authorization: format!(
            "{{\"x402Version\":2,\"payload\":{{\"signature\":\"{SIGNATURE}\",\"nonce\":\"{decision_id}\"}}}}"
        ),
        reference: None,
        detail: None,
    }
}

/// Writes each record through the store's `PaymentLedger` (created authorized, then moved to
/// its state as the adapter does), the store closed afterwards.
fn write_attempts(home: &Path, records: &[AttemptRecord]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let home = Home::resolve(Some(home.to_owned())).unwrap();
        let key = Arc::new(home.load_key().unwrap());
        let store = home.open_store(key, true).await.unwrap();
        for record in records {
            let mut created = record.clone();
            created.state = AttemptState::Authorized;
            created.reference = None;
            created.detail = None;
            // Rewriting a decision (the reconciliation below) finds its attempt: never a second.
            store.create_attempt(&created).await.unwrap();
            if created != *record {
                store.update_attempt(record).await.unwrap();
            }
        }
        store.close().await.unwrap();
    });
}

/// A home made by `trustos init` holding five attempts: settled, failed, unknown and still
/// valid, unknown and expired, authorized and still valid.
fn home_with_attempts(name: &str) -> (PathBuf, Vec<AttemptRecord>) {
    let home = scratch(name);
    let init = trustos(&home, &["init"]);
    assert_eq!(init.status.code(), Some(0), "{init:?}");
    let now = unix_now();
    let mut settled = attempt("dec_settled", now - 600);
    settled.state = AttemptState::Settled;
    settled.reference =
        Some("0xfeedc0ffee00000000000000000000000000000000000000000000000000beef".into());
    let mut failed = attempt("dec_failed", now - 1200);
    failed.state = AttemptState::Failed;
    failed.detail = Some("insufficient_funds".into());
    let mut resubmit = attempt("dec_unknown_valid", now + 3600);
    resubmit.state = AttemptState::Unknown;
    resubmit.detail = Some("no answer within 60s".into());
    let mut expired = attempt("dec_unknown_expired", now - 3600);
    expired.state = AttemptState::Unknown;
    expired.detail = Some("second 402".into());
    let in_flight = attempt("dec_authorized", now + 7200);
    let records = vec![settled, failed, resubmit, expired, in_flight];
    write_attempts(&home, &records);
    (home, records)
}

fn ids(json: &Value) -> Vec<String> {
    json.as_array()
        .unwrap()
        .iter()
        .map(|row| row["decisionId"].as_str().unwrap().to_owned())
        .collect()
}

fn line_of<'a>(table: &'a str, decision_id: &str) -> &'a str {
    table
        .lines()
        .find(|line| line.starts_with(&format!("{decision_id} ")))
        .unwrap_or_else(|| panic!("no row {decision_id} in\n{table}"))
}

fn utc(seconds: u64) -> String {
    trustos_kernel::timestamp::Timestamp::from_unix_millis(seconds * 1000)
        .unwrap()
        .to_string()
}

/// Without a daemon, a rail whose secrets this shell does not have cannot be asked: the
/// command says so on stderr and still lists what is recorded, exit 1 for the unknown ones.
#[test]
fn without_a_daemon_an_unusable_rail_config_lists_what_is_recorded() {
    let (home, records) = home_with_attempts("offline-unusable");
    let mut config = fs::read_to_string(home.join("gateway.toml")).unwrap();
    config.push_str(
        "\n[circle]\napi_key_env = \"TRUSTOS_TEST_UNSET_CIRCLE_KEY\"\n\
         entity_secret_env = \"TRUSTOS_TEST_UNSET_CIRCLE_SECRET\"\nenvironment = \"testnet\"\n\
         wallet_id = \"w-1\"\n\n[[circle.tokens]]\nnetwork = \"eip155:84532\"\nasset = \"usdc\"\n\
         token_id = \"t-1\"\ndecimals = 6\n",
    );
    fs::write(home.join("gateway.toml"), config).unwrap();
    let listed = trustos(&home, &["payments", "--json"]);
    assert_eq!(listed.status.code(), Some(1), "{listed:?}");
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(stderr.contains("not reconciled"), "{stderr}");
    assert!(stderr.contains("TRUSTOS_TEST_UNSET_CIRCLE_KEY"), "{stderr}");
    let rows: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), records.len());
}

#[test]
fn without_a_daemon_the_store_is_read_and_unknown_outcomes_exit_1() {
    let (home, records) = home_with_attempts("offline");

    let listed = trustos(&home, &["payments"]);
    assert_eq!(listed.status.code(), Some(1), "{listed:?}");
    let table = stdout(&listed);
    assert!(!table.contains(SIGNATURE), "{table}");
    assert!(!table.contains("x402Version"), "{table}");
    let settled = line_of(&table, "dec_settled");
    assert!(settled.contains(" settled "), "{settled}");
    assert!(settled.contains(" known "), "{settled}");
    assert!(
        settled.contains(records[0].reference.as_deref().unwrap()),
        "{settled}"
    );
    assert!(settled.contains("idem-dec_settled"), "{settled}");
    assert!(settled.contains(&utc(records[0].valid_before)), "{settled}");
    let failed = line_of(&table, "dec_failed");
    assert!(failed.contains(" failed ") && failed.contains("insufficient_funds"));
    let resubmit = line_of(&table, "dec_unknown_valid");
    assert!(resubmit.contains(" unknown ") && resubmit.contains(" resubmit "));
    let expired = line_of(&table, "dec_unknown_expired");
    assert!(expired.contains(" unknown ") && expired.contains(" expired "));
    let in_flight = line_of(&table, "dec_authorized");
    assert!(in_flight.contains(" authorized ") && in_flight.contains(" resubmit "));
    // Newest validity first.
    let order: Vec<usize> = [
        "dec_authorized",
        "dec_unknown_valid",
        "dec_settled",
        "dec_failed",
        "dec_unknown_expired",
    ]
    .iter()
    .map(|id| table.find(&format!("{id} ")).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{table}");
    let stderr = String::from_utf8_lossy(&listed.stderr);
    assert!(
        stderr.contains("2 attempt(s) with an unknown outcome"),
        "{stderr}"
    );

    // --state filters (and the exit code follows what is listed).
    let unknown = trustos(&home, &["payments", "--state", "unknown", "--json"]);
    assert_eq!(unknown.status.code(), Some(1));
    let unknown: Value = serde_json::from_slice(&unknown.stdout).unwrap();
    assert_eq!(ids(&unknown), ["dec_unknown_valid", "dec_unknown_expired"]);
    let reconcile: Vec<&str> = unknown
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["reconcile"].as_str().unwrap())
        .collect();
    assert_eq!(reconcile, ["resubmit", "expired"]);
    let settled = trustos(&home, &["payments", "--state", "settled"]);
    assert_eq!(settled.status.code(), Some(0));
    let table = stdout(&settled);
    assert!(
        table.contains("dec_settled ") && !table.contains("dec_failed"),
        "{table}"
    );

    // --json: every attempt, camelCase, no authorization unless asked for.
    let json = trustos(&home, &["payments", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    assert!(!stdout(&json).contains(SIGNATURE));
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 5);
    let row = &json[0];
    assert_eq!(row["decisionId"], "dec_authorized");
    assert_eq!(row["rail"], "x402");
    assert_eq!(row["state"], "authorized");
    assert_eq!(row["idempotencyKey"], "idem-dec_authorized");
    assert_eq!(row["validBefore"], records[4].valid_before);
    assert_eq!(row["validBeforeUtc"], utc(records[4].valid_before));
    assert!(row["replayKey"].is_string());
    assert!(row.get("authorization").is_none(), "{row}");
    assert!(row.get("decision_id").is_none(), "{row}");

    let with = trustos(&home, &["payments", "--json", "--with-authorization"]);
    assert_eq!(with.status.code(), Some(1));
    let with: Value = serde_json::from_slice(&with.stdout).unwrap();
    for row in with.as_array().unwrap() {
        let record = records
            .iter()
            .find(|r| r.decision_id == row["decisionId"].as_str().unwrap())
            .unwrap();
        // The exact bytes recorded, for a resubmission.
        assert_eq!(row["authorization"], record.authorization.as_str());
    }

    // Once the unknown outcomes are reconciled, exit 0.
    let mut reconciled = records[2].clone();
    reconciled.state = AttemptState::Settled;
    reconciled.reference = Some("0xabc".into());
    let mut lost = records[3].clone();
    lost.state = AttemptState::Failed;
    lost.detail = Some("nonce unused on chain".into());
    write_attempts(&home, &[reconciled, lost]);
    let after = trustos(&home, &["payments"]);
    assert_eq!(after.status.code(), Some(0), "{after:?}");
    assert!(line_of(&stdout(&after), "dec_unknown_valid").contains("0xabc"));
}

#[test]
fn usage_errors_exit_2_and_an_empty_home_lists_nothing() {
    let home = scratch("usage");
    // A mistyped home is an error, not an empty ledger.
    assert_eq!(
        trustos(&home, &["payments"]).status.code(),
        Some(2),
        "no home yet"
    );
    assert_eq!(trustos(&home, &["init"]).status.code(), Some(0));
    let empty = trustos(&home, &["payments"]);
    assert_eq!(empty.status.code(), Some(0), "{empty:?}");
    assert!(stdout(&empty).contains("no payment attempts"));
    let empty = trustos(&home, &["payments", "--json"]);
    assert_eq!(empty.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&empty.stdout).unwrap(),
        serde_json::json!([])
    );
    // The signed payload never goes into the table.
    assert_eq!(
        trustos(&home, &["payments", "--with-authorization"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        trustos(&home, &["payments", "--state", "pending"])
            .status
            .code(),
        Some(2)
    );
}

/// `trustos serve` for a home, stopped (by its own handle) when dropped.
struct Daemon(Child);

impl Daemon {
    fn start(home: &Path) -> Self {
        let log = fs::File::create(home.with_file_name("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_trustos"))
            .args(["serve", "--home"])
            .arg(home)
            .env_remove("TRUSTOS_HOME")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Self(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(home.join("trustos.sock")).is_err() {
            assert!(
                Instant::now() < deadline,
                "no daemon answered:\n{}",
                fs::read_to_string(home.with_file_name("daemon.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_running_daemon_answers_with_the_same_list() {
    let (home, _) = home_with_attempts("daemon");
    let offline = trustos(&home, &["payments", "--json", "--with-authorization"]);
    assert_eq!(offline.status.code(), Some(1));
    let offline: Value = serde_json::from_slice(&offline.stdout).unwrap();

    let _daemon = Daemon::start(&home);
    // The daemon holds the store: reading it directly is refused, so these answers came over
    // the control socket.
    let key =
        Arc::new(trustos::keyfile::read_private_key(&home.join("keys/gateway.key.pem")).unwrap());
    assert!(
        trustos::store::redb_store::RedbStore::open(&home.join("data/trustos.redb"), key, "x")
            .is_err()
    );
    let online = trustos(&home, &["payments", "--json", "--with-authorization"]);
    assert_eq!(online.status.code(), Some(1), "{online:?}");
    let online: Value = serde_json::from_slice(&online.stdout).unwrap();
    assert_eq!(online, offline);

    let table = trustos(&home, &["payments", "--state", "unknown"]);
    assert_eq!(table.status.code(), Some(1));
    let table = stdout(&table);
    assert!(table.contains("dec_unknown_valid ") && table.contains("dec_unknown_expired "));
    assert!(
        !table.contains("dec_settled") && !table.contains(SIGNATURE),
        "{table}"
    );
    let settled = trustos(&home, &["payments", "--state", "settled", "--json"]);
    assert_eq!(settled.status.code(), Some(0));
    let settled: Value = serde_json::from_slice(&settled.stdout).unwrap();
    assert_eq!(ids(&settled), ["dec_settled"]);
    assert!(settled[0].get("authorization").is_none());
}

const HTTP_PROFILE: &str = r#"
[profile]
name = "http-routes"
description = "HTTP routes in the inventory."

[defaults]
unknown_agent = "deny"
mode = { low = "hard", high = "hard", paid = "hard" }

[[subjects]]
tenant = "local"
agent = "agent"

[[routes]]
id = "echo"
risk = "low"
mcp = { server = "everything", tool = "echo" }

[[routes]]
id = "forecast"
risk = "paid"
http = { host = "api.weather.example", path = "/v1/forecast*", methods = ["GET"] }

[[routes]]
id = "deploy"
risk = "high"
http = { host = "deploy.internal.example", path = "/v1/deployments*", methods = ["POST"] }
"#;

#[test]
fn routes_lists_each_http_route_under_its_lane() {
    let home = scratch("routes-http");
    assert_eq!(trustos(&home, &["init"]).status.code(), Some(0));
    fs::write(home.join("profiles/default/profile.toml"), HTTP_PROFILE).unwrap();
    let mut config = fs::read_to_string(home.join("gateway.toml")).unwrap();
    config.push_str("\n[http.weather]\nurl = \"https://api.weather.example/v1\"\n");
    fs::write(home.join("gateway.toml"), config).unwrap();

    let json = trustos(&home, &["routes", "--json"]);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    let rows = json["routes"].as_array().unwrap();
    let forecast = rows
        .iter()
        .find(|row| row["why"] == "route:forecast")
        .unwrap();
    assert_eq!(forecast["server"], "weather");
    assert_eq!(forecast["tool"], "GET api.weather.example /v1/forecast*");
    assert_eq!(forecast["risk"], "paid");
    assert_eq!(forecast["enforcement"], "x402");
    assert_eq!(forecast["transport"], "http-lane");
    let deploy = rows
        .iter()
        .find(|row| row["why"] == "route:deploy")
        .unwrap();
    assert_eq!(deploy["server"], "-");
    assert_eq!(deploy["enforcement"], "decision");
    // The MCP route is still there, as before.
    let echo = rows.iter().find(|row| row["why"] == "route:echo").unwrap();
    assert_eq!(echo["enforcement"], "refused");
    assert_eq!(echo["pin"], "unlisted");

    let table = trustos(&home, &["routes"]);
    assert_eq!(table.status.code(), Some(0));
    let table = stdout(&table);
    let line = table
        .lines()
        .find(|line| line.contains("route:forecast"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells[..9],
        [
            "weather",
            "GET",
            "api.weather.example",
            "/v1/forecast*",
            "paid",
            "x402",
            "route:forecast",
            "-",
            "-"
        ],
        "{table}"
    );
}

/// With `[x402] rpc`, the daemon asks the chain before listing: an attempt whose answer was
/// lost after the facilitator settled it is found by its payer and nonce (`AuthorizationUsed`)
/// and listed settled with the transaction hash; the exit code is 0 again. The chain is the
/// emulated one (`trustos_adapters::testkit::x402`), spoken to over Ethereum JSON-RPC.
#[test]
fn with_an_rpc_endpoint_a_lost_answer_is_found_on_chain() {
    lost_answer_found_on_chain("rpc", true);
}

/// The same without a daemon: `trustos payments` opens the home with the daemon's
/// configuration and asks the chain itself.
#[test]
fn without_a_daemon_payments_asks_the_chain_itself() {
    lost_answer_found_on_chain("rpc-offline", false);
}

fn lost_answer_found_on_chain(name: &str, via_daemon: bool) {
    use trustos_adapters::conformance::x402::X402UnderTest;
    use trustos_adapters::conformance::{KernelGate, PaymentCase, RailUnderTest, pay_once};

    let home = scratch(name);
    assert_eq!(trustos(&home, &["init"]).status.code(), Some(0));
    let rail = X402UnderTest::start().unwrap();
    let case = PaymentCase::fresh(name, 1_500).unwrap();

    // The gateway paid, the facilitator settled on chain, the answer never came back.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let resolved = Home::resolve(Some(home.clone())).unwrap();
        let key = Arc::new(resolved.load_key().unwrap());
        let store = resolved.open_store(key, true).await.unwrap();
        rail.lose_next_answer();
        let record = pay_once(rail.rail(), &KernelGate::new(), &store, &case)
            .await
            .unwrap();
        assert_eq!(record.state, AttemptState::Unknown);
        store.close().await.unwrap();
    });
    let settled = rail.movements();
    assert_eq!(settled.len(), 1);

    let offline = trustos(&home, &["payments", "--json"]);
    assert_eq!(
        offline.status.code(),
        Some(1),
        "unknown before the chain is asked"
    );

    // The payer key the attempt was signed with, and the chain's endpoint.
    let key_path = home.join("keys/x402.key");
    fs::write(
        &key_path,
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    )
    .unwrap();
    fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut config = fs::read_to_string(home.join("gateway.toml")).unwrap();
    config.push_str(&format!(
        "\n[x402]\nkey_file = \"keys/x402.key\"\n\n[x402.rpc]\n\"eip155:84532\" = \"{}/rpc\"\n",
        rail.emulator().base_url()
    ));
    fs::write(home.join("gateway.toml"), config).unwrap();

    let _daemon = via_daemon.then(|| Daemon::start(&home));
    let online = trustos(&home, &["payments", "--json"]);
    assert!(
        !String::from_utf8_lossy(&online.stderr).contains("not reconciled"),
        "{online:?}"
    );
    assert_eq!(online.status.code(), Some(0), "{online:?}");
    let rows: Value = serde_json::from_slice(&online.stdout).unwrap();
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["decisionId"], case.decision_id.as_str());
    assert_eq!(row["state"], "settled");
    assert_eq!(row["reference"], settled[0].reference.as_str());
    assert_eq!(rail.movements().len(), 1, "asking the chain moves nothing");
}
