//! Proves the Circle W3S emulator (`support/circle_emulator.rs`) itself, with a plain HTTP/1.1
//! client on `std::net::TcpStream` and a small webhook listener: the public key endpoints and
//! auth, fresh and reused entity secret ciphertexts, idempotency, amount validation, state
//! progression, signed and de-duplicable webhooks, and the injectable faults.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};
use trustos_adapters::circle::EntitySecret;
use trustos_adapters::circle::TransactionState;
use trustos_adapters::circle::ciphertext::entity_secret_ciphertext;
use trustos_adapters::circle::webhook::{
    Delivery, NotificationDeduper, NotificationKey, verify_notification,
};
use trustos_adapters::testkit::circle::{
    CODE_CIPHERTEXT_INVALID, CODE_CIPHERTEXT_REUSED, CODE_IDEMPOTENCY_CONFLICT,
    CODE_PARAMETER_INVALID, CircleEmulator, EmulatorConfig, Fault,
};

const KEY_A: &str = "7d3a1f0e-2b4c-4d5e-8f60-718293a4b5c6";
const KEY_B: &str = "0b1c2d3e-4f50-4617-8283-94a5b6c7d8e9";
const DESTINATION: &str = "0xca9142d0b9804ef5e239d3bc1c7aa0d1c74e7350";

/// A plain HTTP/1.1 request; `Err` when the connection closes without a response.
fn http(
    emulator: &CircleEmulator,
    method: &str,
    path: &str,
    api_key: Option<&str>,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let authority = emulator.base_url().trim_start_matches("http://");
    let mut stream = TcpStream::connect(authority)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = body.map(|value| value.to_string()).unwrap_or_default();
    let auth = api_key
        .map(|key| format!("Authorization: Bearer {key}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no HTTP response")
    })?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status code");
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A fresh ciphertext of the emulator's entity secret, made by the production code.
fn fresh_ciphertext(emulator: &CircleEmulator) -> String {
    let secret = EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap();
    entity_secret_ciphertext(&secret, emulator.entity_public_key_pem()).unwrap()
}

/// A transfer request body.
fn transfer_body(key: &str, ciphertext: &str, amount: &str, destination: &str) -> Value {
    json!({
        "idempotencyKey": key,
        "entitySecretCiphertext": ciphertext,
        "walletId": "ce714f5b-0d8e-4062-9454-61aa1154869b",
        "tokenId": "7adb2b7d-c9cd-5164-b2d4-b73b088274dc",
        "destinationAddress": destination,
        "amounts": [amount],
        "feeLevel": "MEDIUM",
        "refId": format!("ref-{key}"),
    })
}

/// POSTs a transfer with a fresh ciphertext.
fn post_transfer(
    emulator: &CircleEmulator,
    key: &str,
    amount: &str,
    destination: &str,
) -> std::io::Result<(u16, Value)> {
    let body = transfer_body(key, &fresh_ciphertext(emulator), amount, destination);
    http(
        emulator,
        "POST",
        "/v1/w3s/developer/transactions/transfer",
        Some(emulator.api_key()),
        Some(&body),
    )
}

/// A notification as received by the listener.
struct Received {
    signature: String,
    key_id: String,
    body: Vec<u8>,
}

/// A webhook listener answering `200` to every POST; returns its URL and what it receives.
fn webhook_listener() -> (String, mpsc::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/circle/webhook", listener.local_addr().unwrap());
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let (mut signature, mut key_id, mut length) = (String::new(), String::new(), 0);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.trim_end().split_once(':') {
                    let value = value.trim().to_owned();
                    match name.to_ascii_lowercase().as_str() {
                        "x-circle-signature" => signature = value,
                        "x-circle-key-id" => key_id = value,
                        "content-length" => length = value.parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = sender.send(Received {
                signature,
                key_id,
                body,
            });
        }
    });
    (url, receiver)
}

#[test]
fn public_keys_and_authentication() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let (status, body) = http(
        &emulator,
        "GET",
        "/v1/w3s/config/entity/publicKey",
        Some(emulator.api_key()),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["publicKey"], emulator.entity_public_key_pem());

    for key in [None, Some("TEST_API_KEY:wrong:key")] {
        let (status, body) = http(
            &emulator,
            "GET",
            "/v1/w3s/config/entity/publicKey",
            key,
            None,
        )
        .unwrap();
        assert_eq!(status, 401);
        assert!(
            body["code"].is_i64() && body["message"].is_string(),
            "{body}"
        );
    }

    let path = format!(
        "/v2/notifications/publicKey/{}",
        emulator.notification_key_id()
    );
    let (status, body) = http(&emulator, "GET", &path, Some(emulator.api_key()), None).unwrap();
    assert_eq!(status, 200);
    let data = &body["data"];
    assert_eq!(data["id"], emulator.notification_key_id());
    assert_eq!(data["algorithm"], "ECDSA_SHA_256");
    assert_eq!(data["publicKey"], emulator.notification_public_key_b64());
    assert!(data["createDate"].as_str().unwrap().ends_with('Z'));
    NotificationKey::from_response(
        data["algorithm"].as_str().unwrap(),
        data["publicKey"].as_str().unwrap(),
    )
    .unwrap();
}

#[test]
fn fresh_ciphertext_succeeds_and_reused_or_wrong_ones_are_refused() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let ciphertext = fresh_ciphertext(&emulator);
    let path = "/v1/w3s/developer/transactions/transfer";
    let key = Some(emulator.api_key());
    let first = transfer_body(KEY_A, &ciphertext, "1.5", DESTINATION);
    let (status, body) = http(&emulator, "POST", path, key, Some(&first)).unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["state"], "INITIATED");
    let id = body["data"]["id"].as_str().unwrap().to_owned();

    // The same ciphertext on another request: 156004, nothing created.
    let reused = transfer_body(KEY_B, &ciphertext, "1.5", DESTINATION);
    let (status, body) = http(&emulator, "POST", path, key, Some(&reused)).unwrap();
    assert_eq!(
        (status, body["code"].as_i64()),
        (400, Some(CODE_CIPHERTEXT_REUSED))
    );

    // A ciphertext of another secret, and one that is not a ciphertext at all.
    let other = EntitySecret::from_hex(&"11".repeat(32)).unwrap();
    let wrong = entity_secret_ciphertext(&other, emulator.entity_public_key_pem()).unwrap();
    for bad in [wrong.as_str(), "bm90IGEgY2lwaGVydGV4dA=="] {
        let body = transfer_body(KEY_B, bad, "1.5", DESTINATION);
        let (status, body) = http(&emulator, "POST", path, key, Some(&body)).unwrap();
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(CODE_CIPHERTEXT_INVALID))
        );
    }

    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].id, id);
    assert_eq!(transfers[0].amounts, ["1.5"]);
    assert!(transfers[0].answered);

    let (status, body) = http(
        &emulator,
        "GET",
        &format!("/v1/w3s/transactions/{id}"),
        key,
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["transaction"]["id"], id.as_str());
    assert_eq!(body["data"]["transaction"]["amounts"], json!(["1.5"]));
}

#[test]
fn idempotency_same_body_same_transaction_other_body_conflict() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let (status, first) = post_transfer(&emulator, KEY_A, "2", DESTINATION).unwrap();
    assert_eq!(status, 201);
    // Same key and body, fresh ciphertext (as every request needs): the same transaction.
    let (status, again) = post_transfer(&emulator, KEY_A, "2", DESTINATION).unwrap();
    assert_eq!(status, 200);
    assert_eq!(again["data"]["id"], first["data"]["id"]);
    // Same key, another amount: conflict.
    let (status, body) = post_transfer(&emulator, KEY_A, "3", DESTINATION).unwrap();
    assert_eq!(
        (status, body["code"].as_i64()),
        (409, Some(CODE_IDEMPOTENCY_CONFLICT))
    );
    assert_eq!(emulator.transfers().len(), 1);
}

#[test]
fn amounts_and_required_fields_are_validated() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    for amount in ["1.1234567", "-1", "0", "1e3", "", " 1", "1."] {
        let (status, body) = post_transfer(&emulator, KEY_A, amount, DESTINATION).unwrap();
        assert_eq!(
            (status, body["code"].as_i64()),
            (400, Some(CODE_PARAMETER_INVALID)),
            "{amount:?}"
        );
    }
    let (status, _) = post_transfer(&emulator, "not-a-uuid", "1", DESTINATION).unwrap();
    assert_eq!(status, 400);
    let mut body = transfer_body(KEY_A, &fresh_ciphertext(&emulator), "1", DESTINATION);
    body.as_object_mut().unwrap().remove("destinationAddress");
    let (status, _) = http(
        &emulator,
        "POST",
        "/v1/w3s/developer/transactions/transfer",
        Some(emulator.api_key()),
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(emulator.transfers().is_empty());
    let (status, body) = post_transfer(&emulator, KEY_A, "0.000001", DESTINATION).unwrap();
    assert_eq!(status, 201, "{body}");
}

#[test]
fn states_advance_to_complete_failed_or_denied() {
    let config = EmulatorConfig {
        fail_destinations: HashSet::from(["0xfa11".to_owned()]),
        deny_destinations: HashSet::from(["0xde11".to_owned()]),
        ..EmulatorConfig::default()
    };
    let emulator = CircleEmulator::start(config).expect("emulator starts");
    let (_, ok) = post_transfer(&emulator, KEY_A, "1", DESTINATION).unwrap();
    let ok = ok["data"]["id"].as_str().unwrap().to_owned();
    let get = |id: &str| {
        let path = format!("/v1/w3s/transactions/{id}");
        let (status, body) = http(&emulator, "GET", &path, Some(emulator.api_key()), None).unwrap();
        assert_eq!(status, 200);
        body["data"]["transaction"].clone()
    };
    assert!(get(&ok)["txHash"].is_null());
    let mut seen = vec![TransactionState::Initiated];
    while let Some(state) = emulator.advance(&ok) {
        if seen.last() == Some(&state) {
            break;
        }
        seen.push(state);
    }
    use TransactionState as S;
    assert_eq!(
        seen,
        [S::Initiated, S::Queued, S::Sent, S::Confirmed, S::Complete]
    );
    let transaction = get(&ok);
    assert_eq!(transaction["state"], "COMPLETE");
    assert!(transaction["txHash"].as_str().unwrap().starts_with("0x"));

    let (_, failed) = post_transfer(&emulator, KEY_B, "1", "0xfa11").unwrap();
    let failed = failed["data"]["id"].as_str().unwrap().to_owned();
    let (_, denied) = post_transfer(
        &emulator,
        "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "1",
        "0xde11",
    )
    .unwrap();
    let denied = denied["data"]["id"].as_str().unwrap().to_owned();
    for _ in 0..5 {
        emulator.tick();
    }
    assert_eq!(get(&failed)["state"], "FAILED");
    assert_eq!(get(&denied)["state"], "DENIED");
    assert_eq!(
        emulator.advance_to(&failed, S::Complete),
        Some(S::Failed),
        "a final state stays"
    );
    assert_eq!(emulator.advance("unknown"), None);
}

#[test]
fn webhooks_verify_and_duplicates_are_detected() {
    let (url, received) = webhook_listener();
    let emulator = CircleEmulator::start(EmulatorConfig {
        webhook_url: Some(url),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let key = NotificationKey::from_b64_der(emulator.notification_public_key_b64()).unwrap();
    let mut deduper = NotificationDeduper::new(64);
    let receive = || received.recv_timeout(Duration::from_secs(5)).unwrap();

    let (_, created) = post_transfer(&emulator, KEY_A, "1", DESTINATION).unwrap();
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    emulator.advance_to(&id, TransactionState::Complete);
    emulator.flush_webhooks();
    let mut states = Vec::new();
    for _ in 0..5 {
        let got = receive();
        assert_eq!(got.key_id, emulator.notification_key_id());
        verify_notification(
            &got.body,
            &got.signature,
            emulator.notification_public_key_b64(),
        )
        .unwrap();
        let mut tampered = got.body.clone();
        tampered.push(b' ');
        assert!(key.verify(&tampered, &got.signature).is_err());
        let value: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(value["notificationType"], "transactions.outbound");
        assert_eq!(value["version"], 2);
        assert!(value["subscriptionId"].is_string() && value["timestamp"].is_string());
        assert_eq!(value["notification"]["id"], id.as_str());
        let notification_id = value["notificationId"].as_str().unwrap();
        assert_eq!(
            deduper.observe(notification_id).unwrap(),
            Delivery::FirstSeen
        );
        states.push(value["notification"]["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        states,
        ["INITIATED", "QUEUED", "SENT", "CONFIRMED", "COMPLETE"]
    );

    // Duplicated deliveries: each notification arrives twice; the deduper flags the second.
    emulator.set_fault(Fault::DuplicateWebhooks);
    emulator.advance_to(&id, TransactionState::Complete); // already final: nothing new
    let (_, second) = post_transfer(&emulator, KEY_B, "1", DESTINATION).unwrap();
    let second = second["data"]["id"].as_str().unwrap().to_owned();
    emulator.advance(&second);
    emulator.flush_webhooks();
    let mut deliveries = Vec::new();
    for _ in 0..4 {
        let got = receive();
        key.verify(&got.body, &got.signature).unwrap();
        let value: Value = serde_json::from_slice(&got.body).unwrap();
        deliveries.push(
            deduper
                .observe(value["notificationId"].as_str().unwrap())
                .unwrap(),
        );
    }
    assert_eq!(
        deliveries,
        [
            Delivery::FirstSeen,
            Delivery::Duplicate,
            Delivery::FirstSeen,
            Delivery::Duplicate
        ]
    );

    // Dropped deliveries: recorded and signed, never sent.
    emulator.clear_faults();
    emulator.set_fault(Fault::DropWebhooks);
    emulator.advance(&second);
    emulator.flush_webhooks();
    assert!(received.recv_timeout(Duration::from_millis(200)).is_err());
    let last = emulator.notifications().pop().unwrap();
    assert_eq!((last.copies, last.state), (0, TransactionState::Sent));
    key.verify(&last.body, &last.signature).unwrap();

    let ids: HashSet<_> = emulator
        .notifications()
        .into_iter()
        .map(|n| n.notification_id)
        .collect();
    assert_eq!(ids.len(), emulator.notifications().len(), "ids are unique");
}

#[test]
fn timeout_after_create_leaves_a_transaction_the_client_never_heard_of() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    emulator.set_fault(Fault::TimeoutAfterCreate);
    assert!(post_transfer(&emulator, KEY_A, "4", DESTINATION).is_err());
    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert!(!transfers[0].answered);
    let id = transfers[0].id.clone();

    // Found by listing on refId ...
    let (status, body) = http(
        &emulator,
        "GET",
        &format!("/v1/w3s/transactions?refId=ref-{KEY_A}"),
        Some(emulator.api_key()),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["transactions"][0]["id"], id.as_str());
    // ... and by retrying with the same key and body (and a fresh ciphertext): no second one.
    let (status, body) = post_transfer(&emulator, KEY_A, "4", DESTINATION).unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(emulator.transfers().len(), 1);
}

#[test]
fn server_error_creates_nothing() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    emulator.set_fault(Fault::ServerError);
    let body = transfer_body(KEY_A, &fresh_ciphertext(&emulator), "4", DESTINATION);
    let path = "/v1/w3s/developer/transactions/transfer";
    let (status, _) = http(
        &emulator,
        "POST",
        path,
        Some(emulator.api_key()),
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 500);
    assert!(emulator.transfers().is_empty());
    assert!(emulator.notifications().is_empty());
    // The fault was one-shot and spent nothing: the same request now succeeds.
    let (status, _) = http(
        &emulator,
        "POST",
        path,
        Some(emulator.api_key()),
        Some(&body),
    )
    .unwrap();
    assert_eq!(status, 201);
    assert_eq!(emulator.transfers().len(), 1);
}
