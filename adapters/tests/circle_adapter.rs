//! The Circle adapter (`circle::adapter`) against the in-process W3S emulator: nothing moves
//! without a verified decision binding exactly the transfer, one transfer per decision under
//! concurrency, a lost answer becomes an unknown attempt that reconciliation settles by `refId`,
//! refusals and denials end failed, and a resubmission reuses the idempotency key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/decisions.rs"]
mod decisions;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use decisions::{Decider, after, now};
use trustos_adapters::circle::adapter::{
    CircleAdapter, CircleToken, CircleTransferIntent, RAIL, RESUBMIT_HORIZON_SECONDS,
};
use trustos_adapters::circle::client::{CircleClient, ClientOptions, idempotency_key_for};
use trustos_adapters::circle::{ApiKey, EntitySecret, TransactionState};
use trustos_adapters::ledger::MemoryLedger;
use trustos_adapters::testkit::circle::{CircleEmulator, EmulatorConfig, Fault};
use trustos_adapters::{
    Adapter, AdapterError, Allowances, AttemptState, PaymentLedger, Reconciliation,
};

const WALLET: &str = "ce714f5b-0d8e-4062-9454-61aa1154869b";
const TOKEN: &str = "7adb2b7d-c9cd-5164-b2d4-b73b088274dc";
const NETWORK: &str = "eip155:84532";
const DESTINATION: &str = "0xca9142d0b9804ef5e239d3bc1c7aa0d1c74e7350";
const DENIED_DESTINATION: &str = "0x00000000000000000000000000000000000000de";
const URL: &str = "https://api.example.com/report";

fn adapter_with(emulator: &CircleEmulator, max_retries: u32) -> CircleAdapter {
    let client = CircleClient::new(
        emulator.base_url(),
        ApiKey::parse(emulator.api_key()).unwrap(),
        EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap(),
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            max_retries,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            expected_environment: None,
        },
    )
    .unwrap();
    CircleAdapter::new(
        client,
        vec![CircleToken {
            network: NETWORK.into(),
            asset: "usdc".into(),
            token_id: TOKEN.into(),
            decimals: 6,
        }],
    )
}

fn allowances() -> Allowances {
    Allowances {
        schemes: vec!["circle-transfer".into()],
        assets: vec!["usdc".into()],
        max_amount: vec![("usdc".into(), 10_000_000)],
        denied_payees: vec!["0x1111111111111111111111111111111111111111".into()],
        max_timeout_seconds: 300,
        ..Allowances::default()
    }
}

fn intent(destination: &str, amount: u128) -> CircleTransferIntent {
    CircleTransferIntent {
        wallet_id: WALLET.into(),
        token_id: TOKEN.into(),
        network: NETWORK.into(),
        asset: "usdc".into(),
        destination: destination.into(),
        amount,
        decimals: 6,
        resource: URL.into(),
    }
}

fn emulator() -> CircleEmulator {
    CircleEmulator::start(EmulatorConfig {
        deny_destinations: HashSet::from([DENIED_DESTINATION.to_owned()]),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts")
}

#[test]
fn prepare_applies_the_profile() {
    let emulator = emulator();
    let adapter = adapter_with(&emulator, 0);
    let allowances = allowances();
    assert!(
        adapter
            .prepare(&intent(DESTINATION, 1_500), &allowances)
            .is_ok()
    );
    let refused = |intent: CircleTransferIntent, allowances: &Allowances| {
        adapter
            .prepare(&intent, allowances)
            .unwrap_err()
            .reason_code()
    };
    assert_eq!(
        refused(intent(DESTINATION, 10_000_001), &allowances),
        "CIRCLE_AMOUNT_ABOVE_POLICY"
    );
    assert_eq!(
        refused(intent(DESTINATION, 0), &allowances),
        "CIRCLE_AMOUNT_ZERO"
    );
    assert_eq!(
        refused(
            intent("0x1111111111111111111111111111111111111111", 1),
            &allowances
        ),
        "CIRCLE_PAYTO_DENIED"
    );
    assert_eq!(
        refused(intent(" 0xab", 1), &allowances),
        "CIRCLE_PAYTO_INVALID"
    );
    let mut other_network = intent(DESTINATION, 1);
    other_network.network = "eip155:8453".into();
    assert_eq!(refused(other_network, &allowances), "CIRCLE_ASSET_UNKNOWN");
    let mut wrong_decimals = intent(DESTINATION, 1);
    wrong_decimals.decimals = 0;
    assert_eq!(
        refused(wrong_decimals, &allowances),
        "CIRCLE_TOKEN_MISMATCH"
    );
    let only_others = Allowances {
        allowed_payees: vec!["0x2222222222222222222222222222222222222222".into()],
        ..allowances.clone()
    };
    assert_eq!(
        refused(intent(DESTINATION, 1), &only_others),
        "CIRCLE_PAYTO_NOT_ALLOWED"
    );
    let upper = Allowances {
        allowed_payees: vec![DESTINATION.to_ascii_uppercase().replacen("0X", "0x", 1)],
        ..allowances.clone()
    };
    assert!(adapter.prepare(&intent(DESTINATION, 1), &upper).is_ok());
    let no_scheme = Allowances {
        schemes: vec!["exact".into()],
        ..allowances
    };
    assert_eq!(
        refused(intent(DESTINATION, 1), &no_scheme),
        "CIRCLE_SCHEME_NOT_ALLOWED"
    );
}

#[test]
fn bound_terms_name_the_transfer() {
    let emulator = emulator();
    let adapter = adapter_with(&emulator, 0);
    let bound = adapter.bound_terms(&intent(DESTINATION, 1_500)).unwrap();
    assert_eq!(bound.scheme, "circle-transfer");
    assert_eq!(bound.network, NETWORK);
    assert_eq!(bound.asset, "usdc");
    assert_eq!(bound.amount.to_string(), "1500");
    assert_eq!(bound.pay_to, DESTINATION);
    assert_eq!(bound.resource, URL);
    assert_eq!(bound.payer.as_deref(), Some(WALLET));
    assert_eq!(bound.offer_digest, None);
}

#[tokio::test]
async fn nothing_moves_for_other_terms_than_the_decision_binds() {
    let emulator = emulator();
    let adapter = adapter_with(&emulator, 0);
    let ledger = MemoryLedger::new();
    let terms = adapter
        .prepare(&intent(DESTINATION, 1_500), &allowances())
        .unwrap();
    let (fingerprint, decision) = Decider::new().allow_terms(&adapter, &terms, "POST", URL, now());

    let mut more = terms.clone();
    more.amount = 1_501;
    let mut elsewhere = terms.clone();
    elsewhere.destination = "0x2222222222222222222222222222222222222222".into();
    let mut other_wallet = terms.clone();
    other_wallet.wallet_id = "another-wallet".into();
    for tampered in [more, elsewhere, other_wallet] {
        let error = adapter
            .authorize(&ledger, &decision, &fingerprint, &tampered, now())
            .await
            .unwrap_err();
        assert_eq!(error.reason_code(), "PAYMENT_TERMS_MISMATCH");
    }
    // tokenId and decimals are not in the fingerprint: they are re-derived from the bound
    // network and asset, and a difference is refused.
    let mut other_token = terms.clone();
    other_token.token_id = "00000000-0000-4000-8000-000000000000".into();
    let mut whole_tokens = terms.clone();
    whole_tokens.decimals = 0;
    for tampered in [other_token, whole_tokens] {
        let error = adapter
            .authorize(&ledger, &decision, &fingerprint, &tampered, now())
            .await
            .unwrap_err();
        assert_eq!(error.reason_code(), "PAYMENT_TERMS_MISMATCH");
    }
    // An expired decision moves nothing either.
    let error = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, after(now(), 3600))
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "PAYMENT_DECISION_NOT_IN_FORCE");
    assert!(emulator.transfers().is_empty());
    assert!(ledger.attempts().is_empty());

    // The exact terms go through, once.
    let created = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, now())
        .await
        .unwrap();
    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].id, created.id);
    assert_eq!(transfers[0].amounts, ["0.0015"]);
    assert_eq!(transfers[0].destination_address, DESTINATION);
    assert_eq!(transfers[0].ref_id.as_deref(), Some(decision.decision_id()));
    assert_eq!(
        transfers[0].idempotency_key,
        idempotency_key_for(decision.decision_id())
    );
    let record = ledger
        .load_attempt(RAIL, decision.decision_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, AttemptState::Authorized);
    assert_eq!(record.reference.as_deref(), Some(created.id.as_str()));
    assert_eq!(record.replay_key, record.idempotency_key);
    // The stored body has no ciphertext.
    assert!(!record.authorization.contains("entitySecretCiphertext"));
    assert!(!record.authorization.contains(emulator.entity_secret_hex()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn fifty_concurrent_authorizations_make_one_transfer() {
    let emulator = emulator();
    let adapter = Arc::new(adapter_with(&emulator, 0));
    let ledger = Arc::new(MemoryLedger::new());
    let terms = Arc::new(
        adapter
            .prepare(&intent(DESTINATION, 2_000), &allowances())
            .unwrap(),
    );
    let (fingerprint, decision) =
        Decider::new().allow_terms(adapter.as_ref(), terms.as_ref(), "POST", URL, now());
    let (fingerprint, decision) = (Arc::new(fingerprint), Arc::new(decision));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (adapter, ledger, terms, fingerprint, decision) = (
                Arc::clone(&adapter),
                Arc::clone(&ledger),
                Arc::clone(&terms),
                Arc::clone(&fingerprint),
                Arc::clone(&decision),
            );
            tokio::spawn(async move {
                adapter
                    .authorize(ledger.as_ref(), &decision, &fingerprint, &terms, now())
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(error) => assert!(
                matches!(error, AdapterError::AlreadyAuthorized { .. }),
                "{error}"
            ),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(emulator.transfers().len(), 1);
    assert_eq!(ledger.attempts().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_is_unknown_then_reconciled_by_ref_id() {
    let emulator = emulator();
    let adapter = adapter_with(&emulator, 0);
    let ledger = MemoryLedger::new();
    let terms = adapter
        .prepare(&intent(DESTINATION, 42), &allowances())
        .unwrap();
    let (fingerprint, decision) = Decider::new().allow_terms(&adapter, &terms, "POST", URL, now());
    let id = decision.decision_id().to_owned();

    emulator.set_fault(Fault::TimeoutAfterCreate);
    let error = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, now())
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_OUTCOME_UNKNOWN");
    assert_eq!(emulator.transfers().len(), 1);
    let record = ledger.load_attempt(RAIL, &id).await.unwrap().unwrap();
    assert_eq!(record.state, AttemptState::Unknown);
    assert_eq!(record.reference, None);

    // Reconciliation finds the transfer by refId and records its id.
    let transfer_id = emulator.transfers()[0].id.clone();
    let Reconciliation::Known(found) = adapter.reconcile(&ledger, &id, now()).await.unwrap() else {
        panic!("expected Known");
    };
    assert_eq!(found.state, AttemptState::Unknown);
    assert_eq!(found.reference.as_deref(), Some(transfer_id.as_str()));
    assert_eq!(
        ledger.load_attempt(RAIL, &id).await.unwrap().unwrap(),
        found
    );

    assert_eq!(
        emulator.advance_to(&transfer_id, TransactionState::Complete),
        Some(TransactionState::Complete)
    );
    let Reconciliation::Known(settled) = adapter.reconcile(&ledger, &id, now()).await.unwrap()
    else {
        panic!("expected Known");
    };
    assert_eq!(settled.state, AttemptState::Settled);
    let tx_hash = emulator.transfer(&transfer_id).unwrap().tx_hash.unwrap();
    assert_eq!(settled.reference.as_deref(), Some(transfer_id.as_str()));
    assert!(
        settled
            .detail
            .as_deref()
            .is_some_and(|d| d.ends_with(&format!("txHash {tx_hash}"))),
        "{settled:?}"
    );

    // The decision never authorizes again.
    let error = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, now())
        .await
        .unwrap_err();
    assert!(matches!(error, AdapterError::AlreadyAuthorized { .. }));
    assert_eq!(emulator.transfers().len(), 1);
    // Final states do not go back.
    let report = trustos_adapters::SettlementReport::Failed {
        reason: "late".into(),
    };
    assert_eq!(
        adapter.report(&ledger, &id, &report).await.unwrap().state,
        AttemptState::Settled
    );
}

#[tokio::test]
async fn a_denied_transfer_reconciles_failed() {
    let emulator = emulator();
    let adapter = adapter_with(&emulator, 0);
    let ledger = MemoryLedger::new();
    let terms = adapter
        .prepare(&intent(DENIED_DESTINATION, 7), &allowances())
        .unwrap();
    let (fingerprint, decision) = Decider::new().allow_terms(&adapter, &terms, "POST", URL, now());
    let id = decision.decision_id().to_owned();
    let created = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, now())
        .await
        .unwrap();
    assert_eq!(
        emulator.advance(&created.id),
        Some(TransactionState::Denied)
    );
    let Reconciliation::Known(record) = adapter.reconcile(&ledger, &id, now()).await.unwrap()
    else {
        panic!("expected Known");
    };
    assert_eq!(record.state, AttemptState::Failed);
    assert_eq!(record.reference.as_deref(), Some(created.id.as_str()));
    assert!(record.detail.unwrap().contains("DENIED"));
}

#[tokio::test]
async fn nothing_created_means_resubmit_with_the_same_key() {
    let emulator = emulator();
    let adapter = adapter_with(&emulator, 0);
    let ledger = MemoryLedger::new();
    let terms = adapter
        .prepare(&intent(DESTINATION, 9), &allowances())
        .unwrap();
    let (fingerprint, decision) = Decider::new().allow_terms(&adapter, &terms, "POST", URL, now());
    let id = decision.decision_id().to_owned();
    assert!(matches!(
        adapter.reconcile(&ledger, "no-such-decision", now()).await,
        Ok(Reconciliation::NoAttempt)
    ));

    emulator.set_fault(Fault::ServerError);
    let error = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, now())
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_OUTCOME_UNKNOWN");
    assert!(emulator.transfers().is_empty());

    let reconciled = adapter.reconcile(&ledger, &id, now()).await.unwrap();
    assert!(matches!(reconciled, Reconciliation::Resubmit(_)));
    let late = after(now(), RESUBMIT_HORIZON_SECONDS + 60);
    assert!(matches!(
        adapter.reconcile(&ledger, &id, late).await.unwrap(),
        Reconciliation::Expired(_)
    ));
    assert!(adapter.resubmit(&ledger, &id, late).await.is_err());

    let created = adapter.resubmit(&ledger, &id, now()).await.unwrap();
    let transfers = emulator.transfers();
    assert_eq!(transfers.len(), 1);
    assert_eq!(transfers[0].id, created.id);
    assert_eq!(transfers[0].idempotency_key, idempotency_key_for(&id));
    assert_eq!(transfers[0].amounts, ["0.000009"]);
    // Once a reference is known there is nothing to resubmit.
    assert!(adapter.resubmit(&ledger, &id, now()).await.is_err());
    assert_eq!(emulator.transfers().len(), 1);
}

#[tokio::test]
async fn a_refused_transfer_is_failed() {
    let emulator = emulator();
    // A token configured with 7 decimals makes an amount Circle refuses (400: more fractional
    // digits than USDC has): nothing is created, and the refId look-up confirms it.
    let client = CircleClient::new(
        emulator.base_url(),
        ApiKey::parse(emulator.api_key()).unwrap(),
        EntitySecret::from_hex(emulator.entity_secret_hex()).unwrap(),
        ClientOptions {
            max_retries: 0,
            ..ClientOptions::default()
        },
    )
    .unwrap();
    let adapter = CircleAdapter::new(
        client,
        vec![CircleToken {
            network: NETWORK.into(),
            asset: "usdc".into(),
            token_id: TOKEN.into(),
            decimals: 7,
        }],
    );
    let ledger = MemoryLedger::new();
    let mut intent = intent(DESTINATION, 9);
    intent.decimals = 7;
    let terms = adapter.prepare(&intent, &allowances()).unwrap();
    let (fingerprint, decision) = Decider::new().allow_terms(&adapter, &terms, "POST", URL, now());
    let error = adapter
        .authorize(&ledger, &decision, &fingerprint, &terms, now())
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_TRANSFER_REFUSED");
    assert!(emulator.transfers().is_empty());
    let record = ledger
        .load_attempt(RAIL, decision.decision_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.state, AttemptState::Failed);
    assert!(matches!(
        adapter
            .reconcile(&ledger, decision.decision_id(), now())
            .await
            .unwrap(),
        Reconciliation::Known(_)
    ));
}
