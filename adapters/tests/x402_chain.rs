//! The x402 facilitator and chain emulator (`testkit::x402`), the chain reader, and on-chain
//! reconciliation of x402 attempts (`x402::chain::reconcile_on_chain`).
//!
//! - The facilitator refuses a bad signature, a wrong amount, an expired authorization and a
//!   reused nonce, and settles a payload signed by `X402Adapter` for a real verified decision.
//! - A settlement whose answer is lost (`SettleThenDrop`) is found on chain by its nonce and
//!   recorded settled with its transaction hash; resubmitting the same bytes settles nothing more.
//! - An authorization never submitted reconciles to `Resubmit`, then `Expired` while the chain's
//!   head is not past `validBefore` + margin, then `Failed` once it is.
//! - `ChainReader` refuses a node of another chain and a malformed JSON-RPC answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/decisions.rs"]
mod decisions;

use alloy_primitives::{B256, U256};
use decisions::{Decider, after, now};
use serde_json::json;
use trustos_adapters::ledger::MemoryLedger;
use trustos_adapters::testkit::x402::{EmulatorConfig, Fault, X402Emulator};
use trustos_adapters::x402::assets::AssetRegistry;
use trustos_adapters::x402::chain::{ChainReader, ChainReaderOptions, reconcile_on_chain};
use trustos_adapters::x402::evm::{
    EvmSigner, TokenDomain, TransferAuthorization, checksum, nonce_for_decision, parse_address,
    signature_hex,
};
use trustos_adapters::x402::wire::{encode_header_json, payment_required_from_http};
use trustos_adapters::x402::{X402Adapter, X402Payment};
use trustos_adapters::{Adapter, Allowances, AttemptState, Reconciliation, SettlementReport};
use trustos_kernel::timestamp::Timestamp;

/// Public Hardhat account #0 (never fund it).
const PAYER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const RESOURCE: &str = "https://api.example.com/premium-data";
const TIMEOUT: u64 = 60;

fn requirement(amount: &str) -> String {
    format!(
        r#"{{"scheme":"exact","network":"eip155:84532","amount":"{amount}","asset":"{USDC}","payTo":"{PAY_TO}","maxTimeoutSeconds":{TIMEOUT},"extra":{{"name":"USDC","version":"2"}}}}"#
    )
}

fn adapter() -> X402Adapter {
    X402Adapter::new(
        EvmSigner::from_hex(PAYER_KEY).unwrap(),
        AssetRegistry::with_defaults(vec![]),
    )
}

fn allowances() -> Allowances {
    Allowances {
        schemes: vec!["exact".to_owned()],
        assets: vec!["usdc".to_owned()],
        max_timeout_seconds: 300,
        ..Allowances::default()
    }
}

/// A payment signed by the adapter for a real verified decision issued `issued_at`, for the
/// offer `requirement(amount)`; the decision id and the payment.
async fn pay(
    adapter: &X402Adapter,
    ledger: &MemoryLedger,
    amount: &str,
    issued_at: Timestamp,
) -> (String, X402Payment) {
    let offer = requirement(amount);
    let required =
        format!(r#"{{"x402Version":2,"resource":{{"url":"{RESOURCE}"}},"accepts":[{offer}]}}"#);
    let header = encode_header_json(required.as_bytes());
    let required = payment_required_from_http(Some(header.as_bytes()), b"").unwrap();
    let terms = adapter.prepare(&required, &allowances()).unwrap();
    let (fingerprint, decision) =
        Decider::new().allow_terms(adapter, &terms, "GET", RESOURCE, issued_at);
    let payment = adapter
        .authorize(ledger, &decision, &fingerprint, &terms, issued_at)
        .await
        .unwrap();
    (decision.decision_id().to_owned(), payment)
}

/// A v2 payload for `requirement(amount)` signed directly, with `edit` applied to the
/// authorization before signing (a well-signed wrong payload).
fn signed_payload(amount: &str, edit: impl FnOnce(&mut TransferAuthorization)) -> String {
    let signer = EvmSigner::from_hex(PAYER_KEY).unwrap();
    let now_s = now().unix_millis() / 1000;
    let mut authorization = TransferAuthorization {
        from: signer.address(),
        to: parse_address(PAY_TO).unwrap(),
        value: U256::from_str_radix(amount, 10).unwrap(),
        valid_after: U256::from(now_s - 600),
        valid_before: U256::from(now_s + TIMEOUT),
        nonce: B256::from(rand_nonce()),
    };
    edit(&mut authorization);
    let domain = TokenDomain {
        name: "USDC".into(),
        version: "2".into(),
        chain_id: 84_532,
        verifying_contract: parse_address(USDC).unwrap(),
    };
    let signature = signer.sign_transfer(&domain, &authorization).unwrap();
    json!({
        "x402Version": 2,
        "resource": {"url": RESOURCE},
        "accepted": serde_json::from_str::<serde_json::Value>(&requirement(amount)).unwrap(),
        "payload": {
            "signature": signature_hex(&signature),
            "authorization": {
                "from": checksum(&authorization.from),
                "to": checksum(&authorization.to),
                "value": authorization.value.to_string(),
                "validAfter": authorization.valid_after.to_string(),
                "validBefore": authorization.valid_before.to_string(),
                "nonce": authorization.nonce.to_string(),
            }
        }
    })
    .to_string()
}

fn rand_nonce() -> [u8; 32] {
    nonce_for_decision(&decisions::unique_decision_id()).0
}

fn reader(emulator: &X402Emulator) -> ChainReader {
    ChainReader::new(
        [(emulator.network().to_owned(), emulator.rpc_url())],
        ChainReaderOptions::default(),
    )
    .unwrap()
}

fn emulator() -> X402Emulator {
    X402Emulator::start(EmulatorConfig::default()).unwrap()
}

#[tokio::test]
async fn facilitator_refuses_bad_payloads_with_the_reference_reasons() {
    let emulator = emulator();
    let offer = requirement("1000");

    // Bad signature: a valid payload whose signature is replaced by one over other terms.
    let good: serde_json::Value = serde_json::from_str(&signed_payload("1000", |_| {})).unwrap();
    let other: serde_json::Value =
        serde_json::from_str(&signed_payload("1000", |a| a.value = U256::from(1u8))).unwrap();
    let mut forged = good.clone();
    forged["payload"]["signature"] = other["payload"]["signature"].clone();
    for answer in [
        emulator.verify(&forged.to_string(), &offer).await.unwrap(),
        emulator.settle(&forged.to_string(), &offer).await.unwrap(),
    ] {
        assert!(!answer.success);
        assert_eq!(
            answer.error_reason.as_deref(),
            Some("invalid_exact_evm_signature")
        );
    }

    // Wrong amount, well signed.
    let short = signed_payload("1000", |a| a.value = U256::from(999u16));
    let answer = emulator.settle(&short, &offer).await.unwrap();
    assert_eq!(
        answer.error_reason.as_deref(),
        Some("invalid_exact_evm_payload_authorization_value_mismatch")
    );

    // Expired, well signed.
    let now_s = now().unix_millis() / 1000;
    let expired = signed_payload("1000", |a| a.valid_before = U256::from(now_s - 1));
    let answer = emulator.settle(&expired, &offer).await.unwrap();
    assert_eq!(
        answer.error_reason.as_deref(),
        Some("invalid_exact_evm_payload_authorization_valid_before")
    );

    // Not yet valid.
    let early = signed_payload("1000", |a| a.valid_after = U256::from(now_s + 100));
    let answer = emulator.verify(&early, &offer).await.unwrap();
    assert_eq!(
        answer.error_reason.as_deref(),
        Some("invalid_exact_evm_payload_authorization_valid_after")
    );

    // Accepted other than the requirements.
    let answer = emulator
        .settle(&good.to_string(), &requirement("2000"))
        .await
        .unwrap();
    assert_eq!(
        answer.error_reason.as_deref(),
        Some("invalid_payment_requirements")
    );

    // Insufficient balance.
    let payer = EvmSigner::from_hex(PAYER_KEY).unwrap().address();
    let usdc = parse_address(USDC).unwrap();
    emulator.set_balance(usdc, payer, U256::from(10u8));
    let answer = emulator.verify(&good.to_string(), &offer).await.unwrap();
    assert_eq!(
        answer.error_reason.as_deref(),
        Some("invalid_exact_evm_insufficient_balance")
    );
    emulator.set_balance(usdc, payer, U256::from(5000u16));

    // Good, then the same nonce again.
    let answer = emulator.settle(&good.to_string(), &offer).await.unwrap();
    assert!(answer.success, "{:?}", answer.body);
    assert_eq!(answer.network, "eip155:84532");
    assert_eq!(answer.transaction.len(), 66);
    for answer in [
        emulator.verify(&good.to_string(), &offer).await.unwrap(),
        emulator.settle(&good.to_string(), &offer).await.unwrap(),
    ] {
        assert!(!answer.success);
        assert_eq!(
            answer.error_reason.as_deref(),
            Some("invalid_exact_evm_nonce_already_used")
        );
    }
    assert_eq!(emulator.settlements().len(), 1);
    assert_eq!(emulator.balance(usdc, payer), U256::from(4000u16));
}

#[tokio::test]
async fn supported_lists_the_chain() {
    let emulator = emulator();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<hyper::body::Bytes>>();
    let uri: hyper::Uri = format!("{}/supported", emulator.base_url())
        .parse()
        .unwrap();
    let response = client.get(uri).await.unwrap();
    use http_body_util::BodyExt as _;
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        body["kinds"]
            .as_array()
            .unwrap()
            .contains(&json!({"x402Version": 2, "scheme": "exact", "network": "eip155:84532"}))
    );
}

#[tokio::test]
async fn an_adapter_payment_settles_once_with_both_logs() {
    let emulator = emulator();
    let ledger = MemoryLedger::new();
    let adapter = adapter();
    let (decision_id, payment) = pay(&adapter, &ledger, "1000", now()).await;
    let answer = emulator
        .settle(&payment.payload_json, &requirement("1000"))
        .await
        .unwrap();
    assert!(answer.success, "{:?}", answer.body);
    let nonce = nonce_for_decision(&decision_id);
    let settled = emulator.settlements_for_nonce(nonce);
    assert_eq!(settled.len(), 1);
    assert_eq!(settled[0].tx_hash, answer.transaction);
    assert_eq!(settled[0].payer, adapter.payer());
    assert_eq!(settled[0].value, U256::from(1000u16));

    // The chain reader finds it by nonce.
    let used = reader(&emulator)
        .authorization_used(
            "eip155:84532",
            parse_address(USDC).unwrap(),
            adapter.payer(),
            nonce.0,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.tx_hash, answer.transaction);
    assert_eq!(used.block_number, settled[0].block_number);

    // And the adapter's report of the answer, then reconciliation, agree.
    let report = SettlementReport::Settled {
        reference: answer.transaction.clone(),
        network: answer.network.clone(),
    };
    adapter
        .report(&ledger, &decision_id, &report)
        .await
        .unwrap();
    match reconcile_on_chain(&adapter, &ledger, &reader(&emulator), &decision_id, now())
        .await
        .unwrap()
    {
        Reconciliation::Known(record) => {
            assert_eq!(record.state, AttemptState::Settled);
            assert_eq!(
                record.reference.as_deref(),
                Some(answer.transaction.as_str())
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_lost_settle_answer_is_found_on_chain_and_never_settles_twice() {
    let emulator = emulator();
    let ledger = MemoryLedger::new();
    let adapter = adapter();
    let (decision_id, payment) = pay(&adapter, &ledger, "1000", now()).await;
    let nonce = nonce_for_decision(&decision_id);

    emulator.push_fault(Fault::SettleThenDrop);
    let lost = emulator
        .settle(&payment.payload_json, &requirement("1000"))
        .await;
    assert!(lost.is_err(), "the answer must be lost: {lost:?}");
    let settled = emulator.settlements_for_nonce(nonce);
    assert_eq!(settled.len(), 1);
    assert!(!settled[0].answered);
    adapter
        .report(
            &ledger,
            &decision_id,
            &SettlementReport::Unknown {
                detail: "no answer".into(),
            },
        )
        .await
        .unwrap();

    // Resubmitting the very same bytes does not move money again.
    let again = emulator
        .settle(&payment.payload_json, &requirement("1000"))
        .await
        .unwrap();
    assert!(!again.success);
    assert_eq!(
        again.error_reason.as_deref(),
        Some("invalid_exact_evm_nonce_already_used")
    );
    assert_eq!(emulator.settlements_for_nonce(nonce).len(), 1);

    // The chain says where it went.
    match reconcile_on_chain(&adapter, &ledger, &reader(&emulator), &decision_id, now())
        .await
        .unwrap()
    {
        Reconciliation::Known(record) => {
            assert_eq!(record.state, AttemptState::Settled);
            assert_eq!(
                record.reference.as_deref(),
                Some(settled[0].tx_hash.as_str())
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(emulator.settlements().len(), 1);
}

#[tokio::test]
async fn a_server_error_settles_nothing_and_reconciles_to_resubmit() {
    let emulator = emulator();
    let ledger = MemoryLedger::new();
    let adapter = adapter();
    let (decision_id, payment) = pay(&adapter, &ledger, "1000", now()).await;
    emulator.push_fault(Fault::ServerError);
    let answer = emulator
        .settle(&payment.payload_json, &requirement("1000"))
        .await
        .unwrap();
    assert_eq!(answer.status, 500);
    assert!(emulator.settlements().is_empty());
    match reconcile_on_chain(&adapter, &ledger, &reader(&emulator), &decision_id, now())
        .await
        .unwrap()
    {
        Reconciliation::Resubmit(record) => {
            assert_eq!(record.authorization, payment.payload_json);
            let answer = emulator
                .settle(&record.authorization, &requirement("1000"))
                .await
                .unwrap();
            assert!(answer.success);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(emulator.settlements().len(), 1);
}

#[tokio::test]
async fn an_unsubmitted_authorization_resubmits_then_fails_once_the_chain_is_past_it() {
    let emulator = emulator();
    let ledger = MemoryLedger::new();
    let adapter = adapter();
    let issued = now();
    let (decision_id, payment) = pay(&adapter, &ledger, "1000", issued).await;
    let reader = reader(&emulator);

    match reconcile_on_chain(&adapter, &ledger, &reader, &decision_id, issued)
        .await
        .unwrap()
    {
        Reconciliation::Resubmit(record) => assert_eq!(record.authorization, payment.payload_json),
        other => panic!("{other:?}"),
    }

    // Past validBefore by the caller's clock, but not by margin: still unknown.
    let just_after = after(issued, TIMEOUT + 1);
    assert!(matches!(
        reconcile_on_chain(&adapter, &ledger, &reader, &decision_id, just_after)
            .await
            .unwrap(),
        Reconciliation::Expired(_)
    ));

    // Past the margin by the caller's clock, but the chain's head is not: still unknown.
    let later = after(issued, TIMEOUT + 120);
    assert!(matches!(
        reconcile_on_chain(&adapter, &ledger, &reader, &decision_id, later)
            .await
            .unwrap(),
        Reconciliation::Expired(_)
    ));

    // The chain moves past validBefore + margin: it can never settle.
    emulator.set_clock_offset(i64::try_from(TIMEOUT).unwrap() + 120);
    match reconcile_on_chain(&adapter, &ledger, &reader, &decision_id, later)
        .await
        .unwrap()
    {
        Reconciliation::Known(record) => {
            assert_eq!(record.state, AttemptState::Failed);
            assert_eq!(
                record.detail.as_deref(),
                Some("authorization expired unused")
            );
        }
        other => panic!("{other:?}"),
    }
    // And the facilitator agrees the bytes are dead.
    let answer = emulator
        .settle(&payment.payload_json, &requirement("1000"))
        .await
        .unwrap();
    assert_eq!(
        answer.error_reason.as_deref(),
        Some("invalid_exact_evm_payload_authorization_valid_before")
    );
    assert!(emulator.settlements().is_empty());
}

#[tokio::test]
async fn no_attempt_reconciles_to_no_attempt() {
    let emulator = emulator();
    let ledger = MemoryLedger::new();
    assert_eq!(
        reconcile_on_chain(
            &adapter(),
            &ledger,
            &reader(&emulator),
            "dec_unknown",
            now()
        )
        .await
        .unwrap(),
        Reconciliation::NoAttempt
    );
}

#[tokio::test]
async fn chain_reader_refuses_another_chain_and_malformed_answers() {
    let emulator = emulator();
    let payer = EvmSigner::from_hex(PAYER_KEY).unwrap().address();
    let usdc = parse_address(USDC).unwrap();

    let mainnet = ChainReader::new(
        [("eip155:8453", emulator.rpc_url())],
        ChainReaderOptions::default(),
    )
    .unwrap();
    let error = mainnet
        .authorization_used("eip155:8453", usdc, payer, [7; 32])
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "X402_CHAIN_MISMATCH");

    let reader = reader(&emulator);
    emulator.push_fault(Fault::RpcMalformed);
    let error = reader
        .authorization_used("eip155:84532", usdc, payer, [7; 32])
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "X402_CHAIN_ANSWER_INVALID");

    emulator.push_fault(Fault::RpcServerError);
    let error = reader
        .authorization_used("eip155:84532", usdc, payer, [7; 32])
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "X402_CHAIN_UNAVAILABLE");

    let impatient = ChainReader::new(
        [("eip155:84532", emulator.rpc_url())],
        ChainReaderOptions {
            request_timeout: std::time::Duration::from_millis(200),
            ..ChainReaderOptions::default()
        },
    )
    .unwrap();
    emulator.push_fault(Fault::RpcDelay(std::time::Duration::from_secs(2)));
    let error = impatient.chain_id("eip155:84532").await.unwrap_err();
    assert_eq!(error.reason_code(), "X402_CHAIN_TIMEOUT");

    // Unused nonce: nothing found.
    assert_eq!(
        reader
            .authorization_used("eip155:84532", usdc, payer, [7; 32])
            .await
            .unwrap(),
        None
    );
    let error = reader
        .authorization_used("eip155:1", usdc, payer, [7; 32])
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "X402_CHAIN_NETWORK_UNKNOWN");

    let error = ChainReader::new(
        [("eip155:84532", "http://node.example:8545")],
        ChainReaderOptions::default(),
    )
    .unwrap_err();
    assert_eq!(error.reason_code(), "X402_CHAIN_CONFIG_INVALID");
    assert!(!error.to_string().contains("node.example"));
}
