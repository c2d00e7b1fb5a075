//! The Circle W3S HTTP client (`circle::client`) against the in-process emulator: transfers end
//! to end, a fresh ciphertext on every attempt, retries with the same idempotency key after a
//! `500` and after a lost answer, conflicts and wrong keys not retried, timeouts, and no secret in
//! any error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use trustos_adapters::circle::client::{
    CIRCLE_API_BASE_URL, CircleClient, CircleError, ClientOptions, FeeLevel, TransferRequest,
    idempotency_key_for,
};
use trustos_adapters::circle::{ApiKey, CircleEnvironment, EntitySecret, TransactionState};
use trustos_adapters::testkit::circle::{CircleEmulator, EmulatorConfig, Fault};

const WALLET: &str = "ce714f5b-0d8e-4062-9454-61aa1154869b";
const TOKEN: &str = "7adb2b7d-c9cd-5164-b2d4-b73b088274dc";
const DESTINATION: &str = "0xca9142d0b9804ef5e239d3bc1c7aa0d1c74e7350";
const WRONG_KEY: &str = "TEST_API_KEY:0f1e2d3c4b5a69788796a5b4c3d2e1f0:wrongsecretwrongsecret0000";

/// Fast retries, a short timeout.
fn fast_options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        max_retries: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        expected_environment: None,
    }
}

/// A client of `emulator` with `api_key`.
fn client_with(emulator: &CircleEmulator, api_key: &str, options: ClientOptions) -> CircleClient {
    CircleClient::new(
        emulator.base_url(),
        ApiKey::parse(api_key).unwrap(),
        EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap(),
        options,
    )
    .unwrap()
}

/// A client of `emulator` with its key and [`fast_options`].
fn client(emulator: &CircleEmulator) -> CircleClient {
    client_with(emulator, emulator.api_key(), fast_options())
}

/// A USDC transfer for `decision`.
fn transfer(decision: &str, amount_base_units: u128) -> TransferRequest {
    TransferRequest {
        idempotency_key: idempotency_key_for(decision),
        wallet_id: WALLET.into(),
        token_id: TOKEN.into(),
        decimals: 6,
        amount_base_units,
        destination_address: DESTINATION.into(),
        fee_level: FeeLevel::Medium,
        ref_id: Some(format!("decision-{decision}")),
    }
}

/// Asserts that no secret of `emulator`'s configuration, and nothing shaped like a ciphertext,
/// appears in the `Display` or `Debug` of `error`.
fn assert_no_secrets(emulator: &CircleEmulator, error: &CircleError) {
    let api_secret = emulator.api_key().rsplit(':').next().unwrap();
    let wrong_secret = WRONG_KEY.rsplit(':').next().unwrap();
    for text in [
        error.to_string(),
        format!("{error:?}"),
        format!("{error:#?}"),
    ] {
        for secret in [
            emulator.api_key(),
            api_secret,
            wrong_secret,
            emulator.entity_secret_hex(),
        ] {
            assert!(!text.contains(secret), "secret in {text}");
        }
        // A ciphertext is 684 base64 characters; no long base64 run may appear.
        let longest_run = text
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run < 64, "base64-like run in {text}");
    }
}

#[tokio::test]
async fn a_transfer_is_created_and_completes() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let client = client(&emulator);
    assert_eq!(client.environment(), CircleEnvironment::Testnet);
    assert_eq!(
        &*client.entity_public_key().await.unwrap(),
        emulator.entity_public_key_pem()
    );

    let created = client
        .create_transfer(&transfer("dec-complete", 1_500))
        .await
        .unwrap();
    assert_eq!(created.state, TransactionState::Initiated);
    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].id, created.id);
    assert_eq!(transfers[0].amounts, ["0.0015"]);
    assert_eq!(
        transfers[0].idempotency_key,
        idempotency_key_for("dec-complete")
    );

    let before = client.get_transaction(&created.id).await.unwrap();
    assert_eq!(before.state, TransactionState::Initiated);
    assert_eq!(before.tx_hash, None);

    assert_eq!(
        emulator.advance(&created.id),
        Some(TransactionState::Queued)
    );
    assert_eq!(
        client.get_transaction(&created.id).await.unwrap().state,
        TransactionState::Queued
    );
    assert_eq!(
        emulator.advance_to(&created.id, TransactionState::Complete),
        Some(TransactionState::Complete)
    );
    let after = client.get_transaction(&created.id).await.unwrap();
    assert_eq!(after.id, created.id);
    assert_eq!(after.state, TransactionState::Complete);
    assert!(after.state.moved_money());
    assert!(after.tx_hash.is_some());
    assert_eq!(after.amount_base_units(6), Ok(1_500));
    assert_eq!(after.destination_address.as_deref(), Some(DESTINATION));

    let found = client
        .find_by_ref_id("decision-dec-complete")
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0], after);
    assert!(
        client
            .find_by_ref_id("decision-other")
            .await
            .unwrap()
            .is_empty()
    );

    let missing = client.get_transaction("no-such-id").await.unwrap_err();
    assert_eq!(missing.reason_code(), "CIRCLE_API_ERROR");
    assert!(matches!(missing, CircleError::Api { status: 404, .. }));
    assert_no_secrets(&emulator, &missing);
}

#[tokio::test]
async fn every_attempt_carries_a_fresh_ciphertext() {
    // The emulator answers 156004 to a ciphertext it has seen: each of these calls, the
    // idempotent replays included, succeeds only with a new one.
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let client = client(&emulator);
    let first = client.create_transfer(&transfer("a", 1)).await.unwrap();
    let second = client.create_transfer(&transfer("b", 2)).await.unwrap();
    assert_ne!(first.id, second.id);
    for _ in 0..3 {
        let replay = client.create_transfer(&transfer("a", 1)).await.unwrap();
        assert_eq!(replay.id, first.id);
    }
    // A lost answer spends the first ciphertext; the retry needs another.
    emulator.set_fault(Fault::TimeoutAfterCreate);
    client.create_transfer(&transfer("c", 3)).await.unwrap();
    assert_eq!(emulator.transfers().len(), 3);
}

#[tokio::test]
async fn a_server_error_is_retried_with_the_same_key() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let client = client(&emulator);
    emulator.set_fault(Fault::ServerError);
    emulator.set_fault(Fault::ServerError);
    let created = client
        .create_transfer(&transfer("dec-500", 10))
        .await
        .unwrap();
    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].id, created.id);
    assert_eq!(transfers[0].idempotency_key, idempotency_key_for("dec-500"));

    // Without retries the 500 surfaces, retryable, and nothing is created.
    let no_retry = client_with(
        &emulator,
        emulator.api_key(),
        ClientOptions {
            max_retries: 0,
            ..fast_options()
        },
    );
    emulator.set_fault(Fault::ServerError);
    let error = no_retry
        .create_transfer(&transfer("dec-500-b", 10))
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_API_ERROR");
    assert!(matches!(error, CircleError::Api { status: 500, .. }));
    assert!(error.is_retryable());
    assert_no_secrets(&emulator, &error);
    assert_eq!(emulator.transfers().len(), 1);

    // Retries run out: the last error is returned.
    emulator.set_fault(Fault::ServerError);
    emulator.set_fault(Fault::ServerError);
    let one_retry = client_with(
        &emulator,
        emulator.api_key(),
        ClientOptions {
            max_retries: 1,
            ..fast_options()
        },
    );
    let error = one_retry
        .create_transfer(&transfer("dec-500-c", 10))
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_API_ERROR");
    assert_eq!(emulator.transfers().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_is_retried_and_returns_the_same_transaction() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let client = client(&emulator);
    emulator.set_fault(Fault::TimeoutAfterCreate);
    let created = client
        .create_transfer(&transfer("dec-timeout", 42))
        .await
        .unwrap();
    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert!(!transfers[0].answered, "the first attempt was not answered");
    assert_eq!(transfers[0].id, created.id);

    // Without retries the lost answer is a transport error.
    let no_retry = client_with(
        &emulator,
        emulator.api_key(),
        ClientOptions {
            max_retries: 0,
            ..fast_options()
        },
    );
    emulator.set_fault(Fault::TimeoutAfterCreate);
    let error = no_retry
        .create_transfer(&transfer("dec-timeout-b", 42))
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_HTTP");
    assert!(error.is_retryable());
    assert_no_secrets(&emulator, &error);
    // A later call (a restart, say) with the same decision finds the transfer made then.
    let again = client
        .create_transfer(&transfer("dec-timeout-b", 42))
        .await
        .unwrap();
    assert_eq!(emulator.transfers().len(), 2);
    assert_eq!(emulator.transfers()[1].id, again.id);
}

/// A client whose retries would take seconds: a fast answer proves no retry happened.
fn slow_retry_options() -> ClientOptions {
    ClientOptions {
        initial_backoff: Duration::from_secs(3),
        max_backoff: Duration::from_secs(3),
        ..fast_options()
    }
}

#[tokio::test]
async fn an_idempotency_conflict_is_not_retried() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let client = client_with(&emulator, emulator.api_key(), slow_retry_options());
    client
        .create_transfer(&transfer("dec-conflict", 1_000))
        .await
        .unwrap();
    let started = Instant::now();
    let error = client
        .create_transfer(&transfer("dec-conflict", 2_000))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "not retried");
    assert_eq!(error.reason_code(), "CIRCLE_IDEMPOTENCY_CONFLICT");
    assert!(!error.is_retryable());
    assert_no_secrets(&emulator, &error);
    assert_eq!(emulator.transfers().len(), 1);
    assert_eq!(emulator.transfers()[0].amounts, ["0.001"]);
}

#[tokio::test]
async fn a_wrong_api_key_is_unauthorized() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let client = client_with(&emulator, WRONG_KEY, slow_retry_options());
    let started = Instant::now();
    let errors = [
        client.entity_public_key().await.unwrap_err(),
        client
            .create_transfer(&transfer("dec-401", 1))
            .await
            .unwrap_err(),
        client.get_transaction("anything").await.unwrap_err(),
        client.find_by_ref_id("anything").await.unwrap_err(),
    ];
    assert!(started.elapsed() < Duration::from_secs(2), "not retried");
    for error in &errors {
        assert_eq!(error.reason_code(), "CIRCLE_UNAUTHORIZED");
        assert!(matches!(error, CircleError::Unauthorized { status: 401 }));
        assert_no_secrets(&emulator, error);
    }
    assert!(emulator.transfers().is_empty());
}

#[tokio::test]
async fn a_silent_server_times_out_and_a_closed_port_is_a_transport_error() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    // Accepted by the kernel's backlog, never answered.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = CircleClient::new(
        &format!("http://{}", silent.local_addr().unwrap()),
        ApiKey::parse(emulator.api_key()).unwrap(),
        EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap(),
        ClientOptions {
            request_timeout: Duration::from_millis(150),
            max_retries: 1,
            ..fast_options()
        },
    )
    .unwrap();
    let error = client.entity_public_key().await.unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_TIMEOUT");
    assert!(error.is_retryable());
    assert_no_secrets(&emulator, &error);

    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let client = CircleClient::new(
        &format!("http://{closed_port}/"),
        ApiKey::parse(emulator.api_key()).unwrap(),
        EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap(),
        fast_options(),
    )
    .unwrap();
    let error = client.get_transaction("x").await.unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_HTTP");
    assert_no_secrets(&emulator, &error);
    drop(silent);
}

#[test]
fn construction_checks_the_url_and_the_environment() {
    let emulator = CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts");
    let build = |base_url: &str, options: ClientOptions| {
        CircleClient::new(
            base_url,
            ApiKey::parse(emulator.api_key()).unwrap(),
            EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap(),
            options,
        )
    };
    // A testnet key against api.circle.com is fine: the key decides the environment.
    let client = build(CIRCLE_API_BASE_URL, ClientOptions::default()).unwrap();
    assert_eq!(client.environment(), CircleEnvironment::Testnet);
    assert_eq!(client.base_url(), "https://api.circle.com");
    let debug = format!("{client:?}");
    assert!(!debug.contains(emulator.api_key().rsplit(':').next().unwrap()));
    assert!(!debug.contains(emulator.entity_secret_hex()));

    let pinned = |environment| ClientOptions {
        expected_environment: Some(environment),
        ..ClientOptions::default()
    };
    assert!(build(CIRCLE_API_BASE_URL, pinned(CircleEnvironment::Testnet)).is_ok());
    let error = build(CIRCLE_API_BASE_URL, pinned(CircleEnvironment::Mainnet)).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_API_KEY_WRONG_ENVIRONMENT");
    assert_no_secrets(&emulator, &error);

    // The key never travels in clear beyond loopback.
    let error = build("http://api.circle.com", ClientOptions::default()).unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_CLIENT_CONFIG");
    assert_no_secrets(&emulator, &error);
}

#[test]
fn idempotency_keys_are_deterministic_uuids() {
    let key = idempotency_key_for("decision-1");
    assert_eq!(key, idempotency_key_for("decision-1"));
    assert_ne!(key, idempotency_key_for("decision-2"));
    assert_ne!(key, idempotency_key_for("decision-1 "));
    assert_ne!(idempotency_key_for(""), idempotency_key_for("\0"));
    for id in [
        "decision-1",
        "",
        "01J9Z3-ÿ-long-decision-id",
        &"x".repeat(1000),
    ] {
        let key = idempotency_key_for(id);
        assert_eq!(key.len(), 36, "{key}");
        for (index, c) in key.chars().enumerate() {
            if matches!(index, 8 | 13 | 18 | 23) {
                assert_eq!(c, '-', "{key}");
            } else {
                assert!(c.is_ascii_hexdigit() && !c.is_ascii_uppercase(), "{key}");
            }
        }
        // Version 4 format (what Circle asks for), RFC 4122 variant.
        assert_eq!(&key[14..15], "4", "{key}");
        assert!(matches!(&key[19..20], "8" | "9" | "a" | "b"), "{key}");
    }
    // Pinned (computed independently from the documented derivation): changing it would make
    // a retry after an upgrade pay twice.
    assert_eq!(
        idempotency_key_for("decision-1"),
        "329435f5-6330-4e77-9952-22418e95de1b"
    );
}
