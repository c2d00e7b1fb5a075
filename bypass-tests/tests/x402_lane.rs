//! The x402 HTTP lane end to end, as a new user meets it: `trustos init`, a `gateway.toml` with
//! `[http.paid]` pointing at a paid API nobody here wrote (the reference `@x402/express`
//! middleware in front of the reference facilitator with an offline stub chain, see
//! `adapters/tests/reference/README.md`), the gateway's own payer key in an environment
//! variable, a bearer token, and a profile that classifies the API's paths. The agent is a plain
//! HTTP client that never holds a wallet.
//!
//! What is checked, against what the facilitator actually settled:
//! - a paid `GET /weather` and `POST /report` come back 200 with a `Trust-Receipt` that
//!   `trustos verify` accepts offline and a `Trust-Settlement`; exactly one settlement each,
//!   from the gateway's payer to the API's `payTo` for the advertised price, with a signature
//!   that recovers to the payer and the nonce derived from the decision; `/report` reaches the
//!   API byte for byte and carries the gateway's `payment-identifier`; `GET /free` (low risk)
//!   passes with no receipt; a high-risk path is decided and receipted;
//! - refusals, each with its reason code and no settlement: the agent's own payment headers (a
//!   valid payment from the reference client), a forged `Trust-*` header, headers servers route
//!   by (`X-Original-URL`, `X-HTTP-Method-Override`, …), path escapes and other spellings of a
//!   path, a JSON body with a duplicate key, an unknown lane, a missing or foreign token, an
//!   unlisted agent, an unclassified path, profile edits (amount cap, payee deny and allow
//!   lists, networks), a settlement that fails (502; the retry is a new decision with a new
//!   nonce) or hangs (504 with an `unknown` receipt, also when the money moved), and a daily
//!   budget that stops the third payment, also under concurrent requests;
//! - a malicious or broken paid API (`[http.evil]`, canned answers): a `PAYMENT-REQUIRED` in
//!   the URL-safe alphabet, unpadded, not JSON or with a duplicate key, a v1 body under a v2
//!   header, an amount that is not an integer string, an unknown scheme, network or token, a
//!   token's EIP-712 name that is not its own: each a signed deny with its reason code, and no
//!   payment header ever reaches the API nor any attempt the ledger (`trustos payments`);
//!   a paid retry answered with 402 again is signed once, never twice, and stays `unknown`;
//! - the Circle/x402 lane: with `[x402] signer = "circle"` a Circle developer-controlled wallet
//!   (the W3S emulator's) signs the authorization, the gateway holds no payer key, and the
//!   reference facilitator settles exactly one payment from the wallet's address;
//! - the answer's `Trust-*` headers come only from the gateway, never from the upstream, and
//!   the agent's gateway token never reaches the upstream.
//!
//! Each test starts its own facilitator, paid API and `trustos serve --listen 127.0.0.1:0`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../adapters/tests/support/reference.rs"]
mod reference;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use bypass_tests::canned::{self, CannedApi};
use bypass_tests::serve::{Listening, init_home};
use bypass_tests::x402::{KEY_ENV, Profile, Route, sha256_hex, token_entry, x402_table};
use bypass_tests::{TempDir, trustos_bin};
use reference::{
    BASE_SEPOLIA_USDC, DEFAULT_PAY_TO, Facilitator, HttpResponse, PaidApi, TEST_PAYER_ADDRESS,
    TEST_PAYER_KEY, base64_encode, decode_header_json, http_request, reference_sign,
};
use serde_json::{Value, json};
use trustos_adapters::testkit::circle::{CircleEmulator, EmulatorConfig as CircleEmulatorConfig};
use trustos_adapters::x402::evm::{
    B256, TokenDomain, TransferAuthorization, U256, checksum, nonce_for_decision, parse_address,
    recover_signer,
};

/// The agent's bearer token.
const TOKEN: &str = "lane-token-5b7e1d";
/// A token that may reach only another API.
const LIMITED_TOKEN: &str = "limited-token-93a0";
/// A token for an agent the profile does not list.
const STRANGER_TOKEN: &str = "stranger-token-41c2";
/// An `Authorization` value for [`Lane::request`] that sends no token at all.
const NO_TOKEN: &str = "<none>";
/// How long any one exchange may take.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The price of `GET /weather`, in USDC base units.
const WEATHER_PRICE: &str = "1000";
/// The price of `POST /report`.
const REPORT_PRICE: &str = "10000";

/// The profile a new user would write for the paid API on `127.0.0.1`, plus `GET /evil/*` of
/// the canned APIs, paid too. Tests change its amount cap, budget, payees and networks.
fn lane_profile() -> Profile {
    Profile::new(
        "x402-lane",
        "An agent that buys weather and reports from a paid API through the x402 lane.",
        ("acme", "research-bot"),
        vec![
            Route::http("weather", "paid", "GET", "/weather"),
            Route::http("report", "paid", "POST", "/report"),
            Route::http("free", "low", "GET", "/free"),
            Route::http("admin", "high", "POST", "/admin/*"),
            Route::http("evil", "paid", "GET", "/evil/*"),
        ],
    )
}

/// The reference facilitator, the paid API in front of it, and `trustos serve` with
/// `[http.paid]` pointing at the API.
struct Lane {
    /// First, so the daemon stops before its home is removed.
    server: Listening,
    facilitator: Facilitator,
    api: PaidApi,
    dir: TempDir,
    home: PathBuf,
}

impl Lane {
    /// Everything up, with `profile` and extra `[x402]` / `gateway.toml` text.
    fn start(label: &str, profile: &Profile, x402_extra: &str, config_extra: &str) -> Self {
        Self::start_with(
            label,
            profile,
            &x402_table(x402_extra),
            config_extra,
            &[(KEY_ENV, TEST_PAYER_KEY)],
        )
    }

    /// [`Lane::start`] with the whole `[x402]` text and the daemon's environment given.
    fn start_with(
        label: &str,
        profile: &Profile,
        x402: &str,
        config_extra: &str,
        env: &[(&str, &str)],
    ) -> Self {
        let facilitator = Facilitator::start().unwrap();
        let api = PaidApi::start(&facilitator.url).unwrap();
        let dir = TempDir::new(label).unwrap();
        let home = init_home(&dir).unwrap();
        std::fs::write(home.join("profiles/default/profile.toml"), profile.toml()).unwrap();
        let mut config = std::fs::read_to_string(home.join("gateway.toml")).unwrap();
        config.push_str(&format!("\n[http.paid]\nurl = \"{}\"\n\n{}", api.url, x402));
        config.push_str(&token_entry(TOKEN, "acme", "research-bot", None));
        config.push_str(&token_entry(
            LIMITED_TOKEN,
            "acme",
            "research-bot",
            Some(&["elsewhere"]),
        ));
        config.push_str(&token_entry(STRANGER_TOKEN, "acme", "stranger", None));
        config.push_str(config_extra);
        std::fs::write(home.join("gateway.toml"), config).unwrap();
        let server = Listening::start(&home, env).unwrap();
        Self {
            server,
            facilitator,
            api,
            dir,
            home,
        }
    }

    /// A request to the gateway at `path`, with the agent's token unless `headers` names an
    /// `Authorization` of its own ([`NO_TOKEN`] to send none).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> HttpResponse {
        let bearer = format!("Bearer {TOKEN}");
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            all.push(("Authorization", &bearer));
        }
        all.extend(headers.iter().filter(|(_, v)| *v != NO_TOKEN));
        http_request(
            method,
            &format!("http://{}{path}", self.server.addr()),
            &all,
            body,
            TIMEOUT,
        )
        .unwrap()
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
        self.request("GET", path, headers, None)
    }

    fn settled(&self) -> Vec<Value> {
        self.facilitator.settled()
    }

    /// Asserts `reply` is a 200 the gateway paid `price` for, the facilitator's `count`-th
    /// settlement so far, as [`assert_paid`] checks it; returns that settlement.
    #[track_caller]
    fn assert_pays(&self, reply: &HttpResponse, price: &str, count: usize) -> Value {
        assert_eq!(reply.status, 200, "{}\n{}", reply.text(), self.api.stderr());
        let settled = self.settled();
        assert_eq!(settled.len(), count, "{settled:?}");
        assert_paid(self, reply, &settled[count - 1], price);
        settled[count - 1].clone()
    }

    /// `trustos payments --json`, answered by the daemon: its exit code and the attempts.
    fn payments(&self) -> (i32, Vec<Value>) {
        bypass_tests::x402::payments(&self.home).unwrap()
    }

    /// Replaces the profile and waits until the daemon enforces it (its fingerprint, from
    /// `trustos profile fingerprint`, shows up in a "profile reloaded" line). The file is
    /// rewritten (with another comment, same fingerprint) when no reload comes within 2 s: the
    /// daemon takes its file watcher's baseline only after it prints "ready", so an edit made
    /// right after start can go unseen.
    fn edit_profile(&self, profile: &Profile) {
        let path = self.home.join("profiles/default/profile.toml");
        let lines = self.server.lines();
        let deadline = Instant::now() + TIMEOUT;
        let mut expected = None;
        for attempt in 0.. {
            // Written aside and renamed in place, so the watcher never reads half a file.
            let aside = path.with_extension("toml.new");
            std::fs::write(&aside, format!("{}\n# edit {attempt}\n", profile.toml())).unwrap();
            std::fs::rename(&aside, &path).unwrap();
            let expected = expected.get_or_insert_with(|| {
                let out = Command::new(trustos_bin().unwrap())
                    .args(["profile", "fingerprint"])
                    .arg(&path)
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{out:?}");
                format!("-> {})", String::from_utf8_lossy(&out.stdout).trim())
            });
            let until = (Instant::now() + Duration::from_secs(2)).min(deadline);
            while let Ok(line) = lines.recv_timeout(until.saturating_duration_since(Instant::now()))
            {
                assert!(!line.contains("is invalid"), "the edited profile: {line}");
                if line.contains("profile reloaded") && line.contains(expected.as_str()) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not reload the profile"
            );
        }
    }

    /// `trustos verify` on a compact JWS, with the gateway's JWKS from `trustos jwks`: the exit
    /// code and stdout.
    fn verify(&self, jws: &str) -> (i32, String) {
        bypass_tests::x402::verify_offline(&self.home, self.dir.path(), jws).unwrap()
    }
}

/// The payload of a compact JWS.
fn jws_payload(jws: &str) -> Value {
    bypass_tests::x402::jws_payload(jws).unwrap()
}

/// The reason codes of a refusal: the lane's `{"reasons": [{code}]}` or the front's JSON-RPC
/// `{"error": {"data": {"reason"}}}`.
fn reasons(reply: &HttpResponse) -> Vec<String> {
    let body = reply
        .json()
        .unwrap_or_else(|e| panic!("{} {e}", reply.status));
    if let Some(list) = body["reasons"].as_array() {
        return list
            .iter()
            .map(|r| r["code"].as_str().unwrap_or_default().to_owned())
            .collect();
    }
    body["error"]["data"]["reason"]
        .as_str()
        .map(|r| vec![r.to_owned()])
        .unwrap_or_default()
}

/// Asserts a refusal: `status`, `code` among its reasons, and no `Trust-Settlement`.
#[track_caller]
fn assert_refused(reply: &HttpResponse, status: u16, code: &str) {
    assert_eq!(reply.status, status, "wanted {code}: {}", reply.text());
    let codes = reasons(reply);
    assert!(
        codes.iter().any(|c| c == code),
        "wanted {code}, got {codes:?}: {}",
        reply.text()
    );
    assert!(reply.header("trust-settlement").is_none(), "{reply:?}");
}

/// Checks one settled payment against the gateway's answer: payer, payee, amount, the
/// transaction in the receipt and in `Trust-Settlement`, the nonce derived from the decision,
/// and the EIP-712 signature recovering to the payer. Returns the receipt's payload.
#[track_caller]
fn assert_paid(lane: &Lane, reply: &HttpResponse, settled: &Value, price: &str) -> Value {
    let payload = &settled["paymentPayload"];
    let authorization = &payload["payload"]["authorization"];
    assert_eq!(settled["payer"], TEST_PAYER_ADDRESS, "{settled}");
    assert_eq!(authorization["from"], TEST_PAYER_ADDRESS, "{settled}");
    assert_eq!(authorization["to"], DEFAULT_PAY_TO, "{settled}");
    assert_eq!(authorization["value"], price, "{settled}");
    assert_eq!(settled["paymentRequirements"]["amount"], price);
    assert_eq!(settled["network"], "eip155:84532");
    let transaction = settled["transaction"].as_str().unwrap();

    // The receipt: verifiable offline, completed, naming the transaction.
    let receipt = reply.header("trust-receipt").expect("no Trust-Receipt");
    let (code, out) = lane.verify(receipt);
    assert_eq!(code, 0, "trustos verify refused the receipt: {out}");
    let body = jws_payload(receipt);
    assert_eq!(body["type"], "Receipt.v1", "{body}");
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["settlement"]["reference"], transaction, "{body}");
    assert_eq!(body["settlement"]["rail"], "x402", "{body}");
    assert_eq!(body["settlement"]["amount"], price, "{body}");
    assert_eq!(body["settlement"]["asset"], BASE_SEPOLIA_USDC, "{body}");
    let decision_id = reply.header("trust-decision-id").expect("no decision id");
    assert_eq!(body["decisionId"], decision_id);

    let settlement: Value = serde_json::from_str(
        reply
            .header("trust-settlement")
            .expect("no Trust-Settlement"),
    )
    .unwrap();
    assert_eq!(settlement["transaction"], transaction, "{settlement}");
    assert_eq!(settlement["amount"], price);
    assert_eq!(settlement["payTo"], DEFAULT_PAY_TO);
    assert_eq!(settlement["network"], "eip155:84532");

    // One decision, one nonce: the authorization's nonce is the decision's.
    assert_eq!(
        authorization["nonce"].as_str().unwrap(),
        nonce_for_decision(decision_id).to_string(),
        "{settled}"
    );
    // The signature recovers to the payer under the token's EIP-712 domain.
    let number = |key: &str| {
        authorization[key]
            .as_str()
            .unwrap()
            .parse::<U256>()
            .unwrap()
    };
    let message = TransferAuthorization {
        from: parse_address(authorization["from"].as_str().unwrap()).unwrap(),
        to: parse_address(authorization["to"].as_str().unwrap()).unwrap(),
        value: number("value"),
        valid_after: number("validAfter"),
        valid_before: number("validBefore"),
        nonce: authorization["nonce"]
            .as_str()
            .unwrap()
            .parse::<B256>()
            .unwrap(),
    };
    let domain = TokenDomain {
        name: "USDC".into(),
        version: "2".into(),
        chain_id: 84532,
        verifying_contract: parse_address(BASE_SEPOLIA_USDC).unwrap(),
    };
    let signature = payload["payload"]["signature"].as_str().unwrap();
    let bytes: Vec<u8> = (2..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&signature[i..i + 2], 16).unwrap())
        .collect();
    let signer = recover_signer(&message.signing_digest(&domain), &bytes).unwrap();
    assert_eq!(signer, parse_address(TEST_PAYER_ADDRESS).unwrap());
    body
}

#[test]
fn a_new_user_pays_for_weather_and_reports_through_the_lane() {
    let lane = Lane::start("x402-happy", &lane_profile(), "", "");

    // 1. GET /weather: paid by the gateway, answered, receipted.
    let weather = lane.get("/http/paid/weather", &[]);
    let settled = lane.assert_pays(&weather, WEATHER_PRICE, 1);
    assert_eq!(
        weather.json().unwrap(),
        json!({"report": {"weather": "sunny", "temperature": 70}})
    );
    assert!(
        settled["paymentPayload"]["extensions"]
            .get("payment-identifier")
            .is_none(),
        "/weather does not advertise payment-identifier: {settled}"
    );

    // 2. POST /report: the exact body bytes reach the API, paid once, with our payment id.
    let body = br#"{"title":"q3","rows":[1,2,3]}"#;
    let report = lane.request(
        "POST",
        "/http/paid/report",
        &[("Content-Type", "application/json")],
        Some(body),
    );
    let settled = lane.assert_pays(&report, REPORT_PRICE, 2);
    let echoed = report.json().unwrap();
    assert_eq!(echoed["sha256"], sha256_hex(body), "{echoed}");
    assert_eq!(echoed["length"], body.len());
    let id = settled["paymentPayload"]["extensions"]["payment-identifier"]["info"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no payment-identifier id in {settled}"));
    assert!(
        id.len() == 36 && id.starts_with("pay_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_ne!(
        weather.header("trust-decision-id"),
        report.header("trust-decision-id")
    );

    // 3. GET /free: low risk passes untouched, no decision, no receipt.
    let free = lane.get("/http/paid/free", &[]);
    assert_eq!(free.status, 200, "{}", free.text());
    assert_eq!(free.json().unwrap(), json!({"free": true}));
    for header in ["trust-receipt", "trust-settlement", "trust-decision-id"] {
        assert!(free.header(header).is_none(), "{header}: {free:?}");
    }

    // A high-risk path is decided and receipted (the API has no such path: 404, failed).
    let admin = lane.request("POST", "/http/paid/admin/reset", &[], Some(b""));
    assert_eq!(admin.status, 404, "{}", admin.text());
    let receipt = admin.header("trust-receipt").expect("high risk: a receipt");
    assert_eq!(lane.verify(receipt).0, 0);
    assert_eq!(jws_payload(receipt)["status"], "failed");
    assert!(admin.header("trust-settlement").is_none());

    // A path that normalizes to a paid one is paid like it.
    let dotted = lane.get("/http/paid/free/../weather", &[]);
    lane.assert_pays(&dotted, WEATHER_PRICE, 3);
}

/// The Circle/x402 lane: `[x402] signer = "circle"` — a Circle developer-controlled wallet
/// (the W3S emulator's, whose key is the test payer's) signs the authorization; the gateway
/// holds no payer key. The reference facilitator settles exactly one payment from the wallet.
#[test]
fn a_circle_wallet_signs_the_payment_and_the_reference_facilitator_settles_it() {
    let circle = CircleEmulator::start(CircleEmulatorConfig::default()).unwrap();
    let (wallet_id, wallet) = circle.default_wallet().unwrap();
    let x402 = format!(
        "[x402]\nsigner = \"circle\"\ncircle_wallet_id = \"{wallet_id}\"\n\
         circle_wallet_address = \"{}\"\n\n\
         [circle]\nbase_url = \"{}\"\napi_key_env = \"CIRCLE_KEY\"\n\
         entity_secret_env = \"CIRCLE_SECRET\"\nenvironment = \"testnet\"\nwallet_id = \"{wallet_id}\"\n\
         [[circle.tokens]]\nnetwork = \"eip155:84532\"\nasset = \"usdc\"\n\
         token_id = \"5797fbd6-3795-519d-84ca-ec4c5f80c3b1\"\ndecimals = 6\n",
        checksum(&wallet),
        circle.base_url()
    );
    let lane = Lane::start_with(
        "x402-circle-signer",
        &lane_profile(),
        &x402,
        "",
        &[
            ("CIRCLE_KEY", circle.api_key()),
            ("CIRCLE_SECRET", circle.entity_secret_hex()),
        ],
    );
    assert_eq!(checksum(&wallet), TEST_PAYER_ADDRESS);

    let weather = lane.get("/http/paid/weather", &[]);
    let settled = lane.assert_pays(&weather, WEATHER_PRICE, 1);
    assert_eq!(
        settled["paymentPayload"]["payload"]["authorization"]["from"]
            .as_str()
            .map(str::to_ascii_lowercase),
        Some(TEST_PAYER_ADDRESS.to_ascii_lowercase())
    );
    assert_eq!(
        circle.typed_data_signatures().len(),
        1,
        "one signature asked of Circle"
    );

    // Circle refuses to sign (every ciphertext is single-use; a wallet that cannot sign):
    // nothing is paid, the call is refused with the rail's code.
    drop(circle);
    let refused = lane.get("/http/paid/weather", &[]);
    assert_ne!(refused.status, 200, "{}", refused.text());
    assert_eq!(lane.settled().len(), 1, "no second settlement");
}

#[test]
fn bad_input_is_refused_and_pays_nothing() {
    // A second API, ours, that records each request head it gets and answers with forged
    // Trust-* headers.
    let rogue = CannedApi::start(|_| {
        canned::response(
            "200 OK",
            &[
                ("Content-Type", "application/json"),
                ("Trust-Receipt", "forged.receipt.jws"),
                ("Trust-Decision-Id", "dec_forged"),
                (
                    "Trust-Settlement",
                    r#"{"rail":"x402","transaction":"0xforged"}"#,
                ),
            ],
            br#"{"free":true}"#,
        )
    })
    .unwrap();
    let lane = Lane::start(
        "x402-refusals",
        &lane_profile(),
        "",
        &format!("\n[http.rogue]\nurl = \"{}\"\n", rogue.url()),
    );

    // The agent's own payment, a valid one the API would settle, straight from the reference
    // client.
    let unpaid = http_request(
        "GET",
        &format!("{}/weather", lane.api.url),
        &[],
        None,
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(unpaid.status, 402);
    let required = decode_header_json(unpaid.header("PAYMENT-REQUIRED").unwrap()).unwrap();
    let own = reference_sign(&json!({ "paymentRequired": required })).unwrap();
    let own = own["header"].as_str().unwrap();
    for headers in [
        vec![("PAYMENT-SIGNATURE", own)],
        vec![("X-PAYMENT", own)],
        vec![("payment-signature", own), ("x-payment", own)],
    ] {
        let reply = lane.get("/http/paid/weather", &headers);
        assert_refused(&reply, 403, "X402_AGENT_PAYMENT");
        // A signed, logged deny.
        let decision = reply.json().unwrap()["decision"]
            .as_str()
            .expect("a signed deny")
            .to_owned();
        assert_eq!(lane.verify(&decision).0, 0);
        assert_eq!(jws_payload(&decision)["outcome"], "deny");
    }
    // Not even on a free path.
    let free_paid = lane.get("/http/paid/free", &[("X-Payment", own)]);
    assert_refused(&free_paid, 403, "X402_AGENT_PAYMENT");

    // Posing as the gateway.
    for header in ["Trust-Decision", "trust-receipt", "Trust-Settlement"] {
        let forged = lane.get(
            "/http/paid/weather",
            &[(header, "eyJhbGciOiJFZERTQSJ9.e30.AA")],
        );
        assert_refused(&forged, 403, "HTTP_TRUST_HEADER_FORGED");
    }

    // Paths that would leave the API's base, or hide a separator or a dot-segment.
    for (path, code) in [
        ("/http/paid/../x", "HTTP_URL_ESCAPES_BASE"),
        ("/http/paid/free/../../x", "HTTP_URL_ESCAPES_BASE"),
        ("/http/paid/%2e%2e/x", "HTTP_URL_ENCODED_DOT_SEGMENT"),
        ("/http/paid/.%2E/weather", "HTTP_URL_ENCODED_DOT_SEGMENT"),
        ("/http/paid/a%2Fb", "HTTP_URL_ENCODED_SEPARATOR"),
        ("/http/paid/a%252Fb", "HTTP_URL_ENCODED_SEPARATOR"),
        ("/http/paid/a%5Cweather", "HTTP_URL_ENCODED_SEPARATOR"),
    ] {
        let reply = lane.get(path, &[]);
        assert_refused(&reply, 400, code);
    }

    // Who may reach what.
    assert_refused(&lane.get("/http/nope/weather", &[]), 404, "HTTP_NOT_FOUND");
    assert_refused(&lane.get("/http/", &[]), 404, "HTTP_NOT_FOUND");
    let anonymous = lane.get("/http/paid/weather", &[("Authorization", NO_TOKEN)]);
    assert_refused(&anonymous, 401, "HTTP_UNAUTHORIZED");
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    // Without a token, whether a lane exists is not told.
    let probing = lane.get("/http/nope/weather", &[("Authorization", NO_TOKEN)]);
    assert_refused(&probing, 401, "HTTP_UNAUTHORIZED");
    let wrong = lane.get("/http/paid/weather", &[("Authorization", "Bearer nope")]);
    assert_refused(&wrong, 401, "HTTP_UNAUTHORIZED");
    let limited_bearer = format!("Bearer {LIMITED_TOKEN}");
    let limited = lane.get("/http/paid/weather", &[("Authorization", &limited_bearer)]);
    assert_refused(&limited, 403, "HTTP_TOKEN_NOT_ALLOWED");
    let foreign = lane.get("/http/paid/weather", &[("Origin", "http://evil.example")]);
    assert_refused(&foreign, 403, "HTTP_ORIGIN_NOT_ALLOWED");
    // An agent the profile does not list: the gateway pays nothing for it.
    let stranger_bearer = format!("Bearer {STRANGER_TOKEN}");
    let stranger = lane.get("/http/paid/weather", &[("Authorization", &stranger_bearer)]);
    assert_refused(&stranger, 403, "AGENT_UNKNOWN");

    // Unclassified: the same API, a path and a method no route names.
    assert_refused(
        &lane.get("/http/paid/unlisted", &[]),
        403,
        "TOOL_UNCLASSIFIED",
    );
    let put = lane.request("PUT", "/http/paid/free", &[], Some(b"{}"));
    assert_refused(&put, 403, "TOOL_UNCLASSIFIED");
    // Spellings the API's router would take for /weather (Express matches case-insensitively
    // and ignores a trailing slash) are other paths to the profile: refused, never sent.
    for path in [
        "/http/paid/Weather",
        "/http/paid/weather/",
        "/http/paid//weather",
    ] {
        assert_refused(&lane.get(path, &[]), 403, "TOOL_UNCLASSIFIED");
    }

    // A JSON body two parsers could read differently is refused before anything is sent.
    let duplicate = lane.request(
        "POST",
        "/http/paid/report",
        &[("Content-Type", "application/json")],
        Some(br#"{"title":"q3","title":"q4"}"#),
    );
    assert_refused(&duplicate, 400, "HTTP_BODY_INVALID_JSON");

    assert!(
        lane.settled().is_empty(),
        "a refusal paid: {:?}",
        lane.settled()
    );

    // Headers some servers route by instead of the request line: a low-risk GET /free must
    // not become a POST /admin/reset upstream. Nothing of it reaches the API.
    for (name, value) in [
        ("X-Original-URL", "/admin/reset"),
        ("X-Rewrite-URL", "/admin/reset"),
        ("X-HTTP-Method-Override", "DELETE"),
        ("X-HTTP-Method", "DELETE"),
        ("X-Method-Override", "DELETE"),
    ] {
        let reply = lane.get("/http/rogue/free", &[(name, value)]);
        assert_refused(&reply, 400, "HTTP_ROUTING_OVERRIDE");
    }
    assert_eq!(
        rogue.received(),
        Vec::<String>::new(),
        "an override reached the API"
    );

    // The agent sees Trust-* headers only from the gateway: a low-risk answer carries none.
    let free = lane.get("/http/rogue/free", &[("X-Trace", "t1")]);
    assert_eq!(free.status, 200, "{}", free.text());
    assert_eq!(free.json().unwrap(), json!({"free": true}));
    for header in ["trust-receipt", "trust-settlement", "trust-decision-id"] {
        assert!(free.header(header).is_none(), "{header}: {free:?}");
    }
    // What the API got: the path decided, the agent's own headers, not its gateway token.
    let head = rogue.next(TIMEOUT).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /free http/1.1\r\n"), "{head}");
    assert!(head.contains("x-trace: t1\r\n"), "{head}");
    assert!(!head.contains("authorization"), "{head}");
    assert!(!head.contains(&TOKEN.to_ascii_lowercase()), "{head}");

    // And the lane still pays after all that.
    let paid = lane.get("/http/paid/weather", &[]);
    assert_eq!(paid.status, 200, "{}", paid.text());
    assert_eq!(lane.settled().len(), 1);
}

#[test]
fn profile_edits_refuse_offers_outside_the_policy() {
    let good = lane_profile();
    let lane = Lane::start("x402-profile", &good, "", "");
    let pay_to_lower = DEFAULT_PAY_TO.to_ascii_lowercase();
    let cases = [
        (
            Profile {
                amount_max: "999".into(),
                ..good.clone()
            },
            "X402_AMOUNT_ABOVE_POLICY",
        ),
        (
            Profile {
                payees: format!("deny = [\"{pay_to_lower}\"]"),
                ..good.clone()
            },
            "X402_PAYTO_DENIED",
        ),
        (
            Profile {
                payees: "allow = [\"0x0000000000000000000000000000000000000001\"]".into(),
                ..good.clone()
            },
            "X402_PAYTO_NOT_ALLOWED",
        ),
        (
            Profile {
                networks: r#"allow = ["eip155:8453"]"#.into(),
                ..good.clone()
            },
            "X402_NETWORK_NOT_ALLOWED",
        ),
        (
            Profile {
                networks: r#"deny = ["eip155:84532"]"#.into(),
                ..good.clone()
            },
            "X402_NETWORK_NOT_ALLOWED",
        ),
    ];
    for (profile, code) in cases {
        lane.edit_profile(&profile);
        let reply = lane.get("/http/paid/weather", &[]);
        assert_refused(&reply, 403, code);
        assert!(
            lane.settled().is_empty(),
            "{code}: paid anyway: {:?}",
            lane.settled()
        );
    }
    // Back to the good profile: the very same request pays, so the edits were the reason.
    lane.edit_profile(&good);
    let paid = lane.get("/http/paid/weather", &[]);
    lane.assert_pays(&paid, WEATHER_PRICE, 1);
}

#[test]
fn a_failed_or_hung_settlement_is_never_paid_twice() {
    let lane = Lane::start(
        "x402-faults",
        &lane_profile(),
        "answer_timeout_seconds = 3\n",
        "",
    );

    // The settlement reverts: the API answers 402 again after payment.
    lane.facilitator.set_settle_mode("fail").unwrap();
    let failed = lane.get("/http/paid/weather", &[]);
    assert_refused(&failed, 502, "X402_PAYMENT_REJECTED");
    assert!(lane.settled().is_empty(), "{:?}", lane.settled());
    let body = failed.json().unwrap();
    let first = body["decisionId"]
        .as_str()
        .expect("a decision id")
        .to_owned();
    let receipt = body["receipt"].as_str().expect("a receipt");
    assert_eq!(lane.verify(receipt).0, 0);
    assert_eq!(jws_payload(receipt)["status"], "failed", "{body}");
    assert!(jws_payload(receipt).get("settlement").is_none());

    // The agent retries: a new decision, a new authorization (new nonce), paid once.
    lane.facilitator.set_settle_mode("ok").unwrap();
    let retried = lane.get("/http/paid/weather", &[]);
    let settled = lane.assert_pays(&retried, WEATHER_PRICE, 1);
    let second = retried.header("trust-decision-id").unwrap();
    assert_ne!(first, second);
    assert_ne!(
        settled["paymentPayload"]["payload"]["authorization"]["nonce"]
            .as_str()
            .unwrap(),
        nonce_for_decision(&first).to_string(),
        "the first authorization was re-sent"
    );

    // The settlement hangs: after answer_timeout_seconds the outcome is unknown, receipted.
    lane.facilitator.set_settle_mode("hang").unwrap();
    let started = Instant::now();
    let hung = lane.get("/http/paid/weather", &[]);
    let waited = started.elapsed();
    assert_refused(&hung, 504, "X402_OUTCOME_UNKNOWN");
    assert!(
        waited >= Duration::from_millis(2500) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    let receipt = hung.header("trust-receipt").expect("an unknown receipt");
    assert_eq!(hung.json().unwrap()["receipt"], receipt);
    assert_eq!(lane.verify(receipt).0, 0);
    let receipt = jws_payload(receipt);
    assert_eq!(receipt["status"], "unknown", "{receipt}");
    assert!(receipt.get("settlement").is_none());
    assert_eq!(lane.settled().len(), 1, "{:?}", lane.settled());

    // The money moves but the answer never comes: unknown too, and paid exactly once.
    lane.facilitator
        .set_settle_mode("hang-after-settle")
        .unwrap();
    let moved = lane.get("/http/paid/weather", &[]);
    assert_refused(&moved, 504, "X402_OUTCOME_UNKNOWN");
    let receipt = jws_payload(moved.header("trust-receipt").expect("an unknown receipt"));
    assert_eq!(receipt["status"], "unknown", "{receipt}");
    let settled = lane.settled();
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert_eq!(
        settled[1]["paymentPayload"]["payload"]["authorization"]["nonce"]
            .as_str()
            .unwrap(),
        nonce_for_decision(receipt["decisionId"].as_str().unwrap()).to_string()
    );
}

#[test]
fn a_daily_budget_stops_the_third_payment() {
    let lane = Lane::start(
        "x402-budget",
        &Profile {
            budget: "2500".into(),
            ..lane_profile()
        },
        "",
        "",
    );
    for n in 1..=2 {
        let paid = lane.get("/http/paid/weather", &[]);
        assert_eq!(paid.status, 200, "payment {n}: {}", paid.text());
        assert_eq!(lane.settled().len(), n);
    }
    let third = lane.get("/http/paid/weather", &[]);
    assert_refused(&third, 403, "BUDGET_DAILY_EXCEEDED");
    let decision = third.json().unwrap()["decision"]
        .as_str()
        .expect("a signed deny")
        .to_owned();
    assert_eq!(jws_payload(&decision)["outcome"], "deny");
    assert_eq!(lane.settled().len(), 2, "{:?}", lane.settled());
    // Nor do other spellings of the same path get around it.
    for path in ["/http/paid/free/../weather", "/http/paid/%77eather"] {
        assert_refused(&lane.get(path, &[]), 403, "BUDGET_DAILY_EXCEEDED");
    }
    assert_eq!(lane.settled().len(), 2);
    // The free path still passes.
    assert_eq!(lane.get("/http/paid/free", &[]).status, 200);

    // Raised to 5500 (3500 left): of six agents' requests at once, exactly three pay.
    lane.edit_profile(&Profile {
        budget: "5500".into(),
        ..lane_profile()
    });
    let replies: Vec<HttpResponse> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| lane.get("/http/paid/weather", &[])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let paid = replies.iter().filter(|r| r.status == 200).count();
    for reply in replies.iter().filter(|r| r.status != 200) {
        assert_eq!(reply.status, 403, "{}", reply.text());
        let codes = reasons(reply);
        assert!(
            codes
                .iter()
                .any(|c| c == "BUDGET_DAILY_EXCEEDED" || c == "BUDGET_CONTENDED"),
            "{codes:?}"
        );
    }
    assert_eq!(paid, 3, "{replies:?}");
    assert_eq!(lane.settled().len(), 5, "{:?}", lane.settled());
}

// ---------------------------------------------------------------------------------------------
// A malicious or broken paid API behind `[http.evil]`

/// What the canned API asks for `GET /evil/*`, in USDC base units.
const EVIL_PRICE: &str = "1000";
/// A payee the canned API slips in next to the advertised one.
const ATTACKER: &str = "0x1111111111111111111111111111111111111111";

/// `[http.evil]` pointing at `url`.
fn evil_lane(url: &str) -> String {
    format!("\n[http.evil]\nurl = \"{url}\"\n")
}

/// The canned API's offer before it is spoiled: [`EVIL_PRICE`] of USDC on Base Sepolia to the
/// default payee, an offer the profile allows.
fn evil_offer() -> Value {
    json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": EVIL_PRICE,
        "asset": BASE_SEPOLIA_USDC,
        "payTo": DEFAULT_PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    })
}

/// The JSON text of a v2 payment request offering `offer`, with `error` as its message.
fn payment_required_text(offer: &Value, error: &str) -> String {
    json!({
        "x402Version": 2,
        "error": error,
        "resource": {"url": "http://evil.example/evil"},
        "accepts": [offer],
    })
    .to_string()
}

/// A `PAYMENT-REQUIRED` value (standard padded base64) offering [`evil_offer`] after `spoil`.
fn spoiled(spoil: impl FnOnce(&mut Value)) -> String {
    let mut offer = evil_offer();
    spoil(&mut offer);
    base64_encode(payment_required_text(&offer, "Payment required").as_bytes())
}

/// A 402 with `PAYMENT-REQUIRED: header` when given, and `body`; never a `PAYMENT-RESPONSE`.
fn evil_402(header: Option<&str>, body: &str) -> Vec<u8> {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(header.map(|value| ("PAYMENT-REQUIRED", value)));
    canned::response("402 Payment Required", &headers, body.as_bytes())
}

/// One way the canned API gets the payment request wrong.
struct EvilCase {
    /// `GET /evil/NAME` gets this answer.
    name: &'static str,
    /// `PAYMENT-REQUIRED`, when sent.
    header: String,
    /// The 402's body.
    body: String,
    /// The lane's answer: 502 when the request cannot be read, 403 when it asks for what the
    /// gateway does not pay.
    status: u16,
    code: &'static str,
}

fn evil_cases() -> Vec<EvilCase> {
    let valid = |error: &str| payment_required_text(&evil_offer(), error);
    // Six `?` in a row always hold a `???` on a base64 quantum boundary: "Pz8/".
    let standard = base64_encode(valid("Pay?????? up").as_bytes());
    assert!(standard.contains('/'), "{standard}");
    // A message length that leaves the encoding padded, then its padding cut.
    let padded = (0..3)
        .map(|n| base64_encode(valid(&format!("Payment required{}", "!".repeat(n))).as_bytes()))
        .find(|header| header.ends_with('='))
        .unwrap();
    let text = valid("Payment required");
    let advertised = format!("\"payTo\":\"{DEFAULT_PAY_TO}\"");
    let duplicate = text.replacen(
        &advertised,
        &format!("{advertised},\"payTo\":\"{ATTACKER}\""),
        1,
    );
    assert_ne!(duplicate, text);
    let v1_body = json!({
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": [{
            "scheme": "exact",
            "network": "base-sepolia",
            "maxAmountRequired": EVIL_PRICE,
            "asset": BASE_SEPOLIA_USDC,
            "payTo": ATTACKER,
            "resource": "http://evil.example/evil",
            "maxTimeoutSeconds": 60,
            "extra": {"name": "USDC", "version": "2"}
        }]
    });
    let case = |name, header, body: &str, status, code| EvilCase {
        name,
        header,
        body: body.to_owned(),
        status,
        code,
    };
    vec![
        case(
            "url-safe",
            standard.replace('/', "_").replace('+', "-"),
            "{}",
            502,
            "X402_HEADER_URL_SAFE_BASE64",
        ),
        case(
            "unpadded",
            padded.trim_end_matches('=').to_owned(),
            "{}",
            502,
            "X402_HEADER_BASE64_UNPADDED",
        ),
        case(
            "not-json",
            base64_encode(b"Payment Required: send 0.001 USDC"),
            "{}",
            502,
            "X402_MALFORMED_JSON",
        ),
        case(
            "duplicate-key",
            base64_encode(duplicate.as_bytes()),
            "{}",
            502,
            "X402_JSON_DUPLICATE_KEY",
        ),
        case(
            "v1-body",
            base64_encode(text.as_bytes()),
            &v1_body.to_string(),
            502,
            "X402_VERSION_CONFLICT",
        ),
        case(
            "fractional-amount",
            spoiled(|offer| offer["amount"] = json!("1.5")),
            "{}",
            502,
            "X402_AMOUNT_NOT_INTEGER",
        ),
        case(
            "numeric-amount",
            spoiled(|offer| offer["amount"] = json!(1000)),
            "{}",
            502,
            "X402_AMOUNT_NOT_STRING",
        ),
        case(
            "upto",
            spoiled(|offer| offer["scheme"] = json!("upto")),
            "{}",
            403,
            "X402_SCHEME_UNSUPPORTED",
        ),
        case(
            "solana",
            spoiled(|offer| {
                offer["network"] = json!("solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp");
                offer["asset"] = json!("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v");
                offer["payTo"] = json!("2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4");
            }),
            "{}",
            403,
            "X402_NETWORK_UNKNOWN",
        ),
        case(
            // Base's USDC contract offered on Base Sepolia: no token the registry knows there.
            "unknown-token",
            spoiled(|offer| offer["asset"] = json!("0x833589fcd6edb6e08f4c7c32d4f71b54bda02913")),
            "{}",
            403,
            "X402_ASSET_UNKNOWN",
        ),
        case(
            // A second PAYMENT-REQUIRED header (the canned API writes header values as given:
            // the line break starts another header line) naming the attacker as payee.
            "repeated-header",
            format!(
                "{}\r\nPAYMENT-REQUIRED: {}",
                base64_encode(text.as_bytes()),
                base64_encode(text.replace(DEFAULT_PAY_TO, ATTACKER).as_bytes())
            ),
            "{}",
            502,
            "X402_HEADER_REPEATED",
        ),
        case(
            // Base mainnet's EIP-712 name for the Base Sepolia token.
            "domain-name",
            spoiled(|offer| offer["extra"]["name"] = json!("USD Coin")),
            "{}",
            403,
            "X402_ASSET_DOMAIN_MISMATCH",
        ),
    ]
}

/// Asserts `heads` (what the canned API received for one request) is exactly the unpaid
/// request to `path`: no payment header left the gateway.
#[track_caller]
fn assert_only_the_probe(case: &str, heads: &[String], path: &str) {
    assert_eq!(heads.len(), 1, "{case}: {heads:?}");
    assert!(
        heads[0].starts_with(&format!("GET {path} HTTP/1.1\r\n")),
        "{case}: {}",
        heads[0]
    );
    for name in ["PAYMENT-SIGNATURE", "X-PAYMENT"] {
        assert_eq!(canned::header(&heads[0], name), None, "{case}: {name} sent");
    }
}

#[test]
fn a_malicious_paid_api_is_refused_before_anything_is_signed() {
    let cases = evil_cases();
    let answers: std::collections::HashMap<String, Vec<u8>> = cases
        .iter()
        .map(|c| {
            let answer = evil_402(Some(&c.header), &c.body);
            (format!("/evil/{}", c.name), answer)
        })
        .collect();
    let evil = CannedApi::start(move |head| {
        // A paid request would be served: the API takes whatever it is sent.
        if canned::header(head, "PAYMENT-SIGNATURE").is_some()
            || canned::header(head, "X-PAYMENT").is_some()
        {
            return canned::response("200 OK", &[], br#"{"paid":true}"#);
        }
        answers
            .get(canned::request_target(head))
            .cloned()
            .unwrap_or_else(|| canned::response("404 Not Found", &[], b""))
    })
    .unwrap();
    let lane = Lane::start("x402-evil", &lane_profile(), "", &evil_lane(evil.url()));

    for case in &cases {
        let name = case.name;
        let reply = lane.get(&format!("/http/evil/evil/{name}"), &[]);
        assert_refused(&reply, case.status, case.code);
        // A signed, logged deny.
        let decision = reply.json().unwrap()["decision"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no signed deny: {}", reply.text()))
            .to_owned();
        assert_eq!(lane.verify(&decision).0, 0, "{name}");
        assert_eq!(jws_payload(&decision)["outcome"], "deny", "{name}");
        // Nothing but the unpaid request reached the API, and nothing was recorded as paid.
        assert_only_the_probe(name, &evil.received(), &format!("/evil/{name}"));
        let (code, attempts) = lane.payments();
        assert_eq!(code, 0, "{name}: {attempts:?}");
        assert!(attempts.is_empty(), "{name}: {attempts:?}");
    }
    // Nor does anything reach it late.
    assert_eq!(evil.next(Duration::from_millis(300)), None);
    assert!(lane.settled().is_empty(), "{:?}", lane.settled());
}

#[test]
fn a_paid_retry_answered_with_402_again_is_signed_once_and_stays_unknown() {
    // An API that takes the payment header and answers 402 again, with no PAYMENT-RESPONSE:
    // the money may have moved, and the offer is still there to tempt a second payment.
    let header = base64_encode(payment_required_text(&evil_offer(), "Payment required").as_bytes());
    let evil = CannedApi::start(move |_| evil_402(Some(&header), "{}")).unwrap();
    let lane = Lane::start("x402-evil-402", &lane_profile(), "", &evil_lane(evil.url()));

    let reply = lane.get("/http/evil/evil/again", &[]);
    assert_refused(&reply, 502, "X402_PAYMENT_REJECTED");
    let body = reply.json().unwrap();
    let decision_id = body["decisionId"].as_str().expect("a decision id");
    let receipt = body["receipt"].as_str().expect("a receipt");
    assert_eq!(reply.header("trust-receipt"), Some(receipt));
    assert_eq!(lane.verify(receipt).0, 0);
    let receipt = jws_payload(receipt);
    assert_eq!(receipt["status"], "unknown", "{receipt}");
    assert_eq!(receipt["decisionId"], decision_id, "{receipt}");
    assert!(receipt.get("settlement").is_none(), "{receipt}");

    // The API got the unpaid request, then exactly one payment: the gateway's, for this
    // decision and the advertised terms.
    let heads = evil.received();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert_only_the_probe("probe", &heads[..1], "/evil/again");
    let signed: Vec<&str> = heads
        .iter()
        .filter_map(|head| canned::header(head, "PAYMENT-SIGNATURE"))
        .collect();
    assert_eq!(signed.len(), 1, "{heads:?}");
    assert_eq!(canned::header(&heads[1], "X-PAYMENT"), None, "{}", heads[1]);
    let payment = decode_header_json(signed[0]).unwrap();
    let authorization = &payment["payload"]["authorization"];
    assert_eq!(authorization["from"], TEST_PAYER_ADDRESS, "{payment}");
    assert_eq!(authorization["to"], DEFAULT_PAY_TO, "{payment}");
    assert_eq!(authorization["value"], EVIL_PRICE, "{payment}");
    assert_eq!(
        authorization["nonce"],
        nonce_for_decision(decision_id).to_string(),
        "{payment}"
    );

    // The ledger has the attempt in limbo, and says so with exit code 1.
    let (code, attempts) = lane.payments();
    assert_eq!(code, 1, "{attempts:?}");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["decisionId"], decision_id, "{attempts:?}");
    assert_eq!(attempts[0]["rail"], "x402", "{attempts:?}");
    assert_eq!(attempts[0]["state"], "unknown", "{attempts:?}");
    assert_eq!(attempts[0]["reconcile"], "resubmit", "{attempts:?}");
    // No second payment comes later either.
    assert_eq!(evil.next(Duration::from_millis(300)), None);
    assert!(lane.settled().is_empty(), "{:?}", lane.settled());
}
