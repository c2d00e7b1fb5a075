//! A Circle developer-controlled wallet as the x402 payer (`circle::wallet_signer`), against the
//! in-process W3S emulator (`testkit::circle`):
//!
//! - the PaymentPayload signed through Circle equals, byte for byte, the one the local key of
//!   the same wallet signs for the same decision and terms, and the reference facilitator
//!   accepts it;
//! - a signature by another key (a wrong answer, or a wallet id of another address) is refused:
//!   no payload, the attempt stays `unknown` without a payload (a valid signature may be in
//!   other hands: only the chain can tell, and reconciliation says so), and the decision never
//!   gets a second signature; so does a lost answer;
//! - an unknown wallet id is a clear `CIRCLE_SIGN_FAILED`, and the attempt ends `failed`
//!   (Circle refused before signing);
//! - every sign request carries a fresh entity secret ciphertext, retries included (the
//!   emulator refuses a reused one);
//! - secrets never appear in errors or `Debug`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/decisions.rs"]
mod decisions;
#[path = "support/reference.rs"]
mod reference;

use std::sync::Arc;
use std::time::Duration;

use decisions::{Decider, now};
use serde_json::{Value, json};
use trustos_adapters::circle::client::{CircleClient, CircleError, ClientOptions};
use trustos_adapters::circle::wallet_signer::{
    CODE_SIGN_FAILED, CODE_SIGN_OUTCOME_UNKNOWN, CODE_SIGNATURE_INVALID, CircleWalletSigner,
    KIND_CIRCLE_WALLET, transfer_typed_data,
};
use trustos_adapters::circle::{ApiKey, EntitySecret};
use trustos_adapters::ledger::MemoryLedger;
use trustos_adapters::testkit::circle::{
    CODE_PARAMETER_INVALID, CircleEmulator, DEFAULT_WALLET_KEY_HEX, EmulatorConfig, Fault,
    OTHER_SIGNING_KEY_HEX,
};
use trustos_adapters::x402::assets::AssetRegistry;
use trustos_adapters::x402::evm::{
    Address, EvmSigner, TokenDomain, TransferAuthorization, U256, checksum, nonce_for_decision,
    parse_address, recover_signer,
};
use trustos_adapters::x402::signer::PaymentSigner;
use trustos_adapters::x402::wire::{
    PaymentRequired, encode_header_json, payment_required_from_http,
};
use trustos_adapters::x402::{X402Adapter, X402Payment, X402Terms};
use trustos_adapters::{
    Adapter, AdapterError, Allowances, AttemptState, PaymentLedger, Reconciliation,
};
use trustos_kernel::objects::RequestFingerprint;
use trustos_kernel::verify::VerifiedDecision;

const RESOURCE_URL: &str = "https://api.example.com/premium-data";
const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const UNKNOWN_WALLET: &str = "00000000-0000-4000-8000-00000000dead";

// ---------------------------------------------------------------------------------------------
// Helpers

fn emulator() -> CircleEmulator {
    CircleEmulator::start(EmulatorConfig::default()).expect("emulator starts")
}

fn client(emulator: &CircleEmulator, max_retries: u32) -> Arc<CircleClient> {
    Arc::new(
        CircleClient::new(
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
        .unwrap(),
    )
}

/// The emulator's default wallet (Hardhat #0) as a signer.
fn circle_signer(emulator: &CircleEmulator, max_retries: u32) -> CircleWalletSigner {
    let (id, address) = emulator.default_wallet().unwrap();
    CircleWalletSigner::new(client(emulator, max_retries), id, address)
}

fn circle_adapter(signer: CircleWalletSigner) -> X402Adapter {
    X402Adapter::with_signer(Arc::new(signer), AssetRegistry::with_defaults(vec![]))
}

/// The local-key adapter with the default wallet's key.
fn local_adapter() -> X402Adapter {
    X402Adapter::new(
        EvmSigner::from_hex(DEFAULT_WALLET_KEY_HEX).unwrap(),
        AssetRegistry::with_defaults(vec![]),
    )
}

fn allowances() -> Allowances {
    Allowances {
        schemes: vec!["exact".to_owned()],
        assets: vec!["usdc".to_owned()],
        max_amount: vec![("usdc".to_owned(), 1_000_000)],
        max_timeout_seconds: 300,
        ..Allowances::default()
    }
}

/// A v2 `exact` USDC offer as JSON.
fn offer(network: &str, asset: &str, name: &str, amount: &str) -> String {
    format!(
        r#"{{"scheme":"exact","network":"{network}","amount":"{amount}","asset":"{asset}","payTo":"{PAY_TO}","maxTimeoutSeconds":60,"extra":{{"name":"{name}","version":"2"}}}}"#
    )
}

fn sepolia_offer(amount: &str) -> String {
    offer("eip155:84532", BASE_SEPOLIA_USDC, "USDC", amount)
}

/// A v2 `PAYMENT-REQUIRED` offering `offer`, with `extensions` when given.
fn required(offer: &str, extensions: Option<&str>) -> PaymentRequired {
    let mut json = format!(
        r#"{{"x402Version":2,"resource":{{"url":"{RESOURCE_URL}","description":"Premium data"}},"accepts":[{offer}]"#
    );
    if let Some(extensions) = extensions {
        json.push_str(r#","extensions":"#);
        json.push_str(extensions);
    }
    json.push('}');
    let header = encode_header_json(json.as_bytes());
    payment_required_from_http(Some(header.as_bytes()), b"").unwrap()
}

fn terms(adapter: &X402Adapter, request: &PaymentRequired) -> X402Terms {
    adapter
        .prepare(request, &allowances())
        .unwrap_or_else(|err| panic!("prepare refused ({}): {err}", err.reason_code()))
}

/// A verified decision, issued now, for `GET` [`RESOURCE_URL`] paying `terms`.
fn decide(adapter: &X402Adapter, terms: &X402Terms) -> (RequestFingerprint, VerifiedDecision) {
    Decider::new().allow_terms(adapter, terms, "GET", RESOURCE_URL, now())
}

async fn authorize(
    adapter: &X402Adapter,
    ledger: &MemoryLedger,
    decision: &VerifiedDecision,
    fingerprint: &RequestFingerprint,
    terms: &X402Terms,
) -> Result<X402Payment, AdapterError> {
    let at = decision.decision().issued_at;
    adapter
        .authorize(ledger, decision, fingerprint, terms, at)
        .await
}

#[track_caller]
fn rail_error(result: Result<X402Payment, AdapterError>) -> (&'static str, String) {
    match result {
        Ok(payment) => panic!("expected a refusal, got {payment:?}"),
        Err(AdapterError::Rail { code, message }) => (code, message),
        Err(other) => panic!("expected a rail error, got {} {other}", other.reason_code()),
    }
}

/// The one attempt of `ledger`, which must be in `state`, without a payload, its detail naming
/// `code`.
#[track_caller]
fn assert_no_payload(ledger: &MemoryLedger, state: AttemptState, code: &str) {
    let attempts = ledger.attempts();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let attempt = &attempts[0];
    assert_eq!(attempt.state, state, "{attempt:?}");
    assert!(attempt.authorization.is_empty(), "{attempt:?}");
    let detail = attempt.detail.as_deref().unwrap_or_default();
    assert!(detail.contains(code), "{detail}");
    assert!(detail.contains("no payload left the gateway"), "{detail}");
}

// ---------------------------------------------------------------------------------------------
// Same payload as the local key

#[tokio::test]
async fn circle_signed_payloads_equal_local_key_payloads_byte_for_byte() {
    let emulator = emulator();
    let (wallet_id, wallet_address) = emulator.default_wallet().unwrap();
    assert_eq!(
        checksum(&wallet_address),
        "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    );
    let circle = circle_adapter(circle_signer(&emulator, 0));
    let local = local_adapter();
    assert_eq!(circle.payer(), local.payer());
    assert_eq!(circle.signer_kind(), KIND_CIRCLE_WALLET);
    assert_eq!(local.signer_kind(), "local-key");

    let requests = [
        required(&sepolia_offer("10000"), None),
        required(&offer("eip155:8453", BASE_USDC, "USD Coin", "250000"), None),
        required(
            &sepolia_offer("1"),
            Some(r#"{"payment-identifier":{"info":{"required":false}}}"#),
        ),
    ];
    let mut payloads = Vec::new();
    for (index, request) in requests.iter().enumerate() {
        let terms = terms(&local, request);
        assert_eq!(
            circle.bound_terms(&terms).unwrap(),
            local.bound_terms(&terms).unwrap()
        );
        let (fingerprint, decision) = decide(&local, &terms);
        let (circle_ledger, local_ledger) = (MemoryLedger::new(), MemoryLedger::new());
        let by_circle = authorize(&circle, &circle_ledger, &decision, &fingerprint, &terms)
            .await
            .unwrap_or_else(|err| panic!("case {index}: {} {err}", err.reason_code()));
        let by_key = authorize(&local, &local_ledger, &decision, &fingerprint, &terms)
            .await
            .unwrap();
        assert_eq!(by_circle, by_key, "case {index}");
        assert_eq!(by_circle.header_value(), by_key.header_value());
        // The ledgers hold the same record: authorized, with the same payload.
        assert_eq!(
            circle_ledger.attempts(),
            local_ledger.attempts(),
            "case {index}"
        );
        assert_eq!(circle_ledger.attempts()[0].state, AttemptState::Authorized);
        payloads.push((by_circle, request.accepts[0].raw().get().to_owned()));
    }

    // One signature per authorization, each by the wallet, with a memo.
    let signed = emulator.typed_data_signatures();
    assert_eq!(signed.len(), requests.len());
    for signature in &signed {
        assert_eq!(signature.wallet_id, wallet_id);
        assert!(!signature.other_key);
        assert!(signature.memo.is_some());
    }
    // Every request used a fresh ciphertext (a reused one would have been refused).
    assert_eq!(emulator.spent_ciphertexts(), requests.len());

    // The reference facilitator accepts a Circle-signed payload.
    let (payment, requirements) = &payloads[0];
    let payload: Value = serde_json::from_str(&payment.payload_json).unwrap();
    let requirements: Value = serde_json::from_str(requirements).unwrap();
    let results = reference::reference_verify(&[
        json!({ "paymentPayload": payload, "paymentRequirements": requirements }),
    ])
    .unwrap();
    assert_eq!(results[0]["isValid"], true, "{}", results[0]);
    assert_eq!(
        results[0]["payer"],
        checksum(&wallet_address),
        "{}",
        results[0]
    );
}

#[tokio::test]
async fn the_signer_alone_answers_the_local_keys_signature() {
    let emulator = emulator();
    let signer = circle_signer(&emulator, 0);
    let key = EvmSigner::from_hex(DEFAULT_WALLET_KEY_HEX).unwrap();
    let domain = TokenDomain {
        name: "USDC".into(),
        version: "2".into(),
        chain_id: 84_532,
        verifying_contract: parse_address(BASE_SEPOLIA_USDC).unwrap(),
    };
    let authorization = TransferAuthorization {
        from: key.address(),
        to: parse_address(PAY_TO).unwrap(),
        value: U256::from(10_000u64),
        valid_after: U256::from(1_700_000_000u64),
        valid_before: U256::from(1_700_000_060u64),
        nonce: nonce_for_decision("dec_signer_alone"),
    };
    let remote = signer.sign_transfer(&domain, &authorization).await.unwrap();
    let local = key.sign_transfer(&domain, &authorization).unwrap();
    assert_eq!(remote, local);
    assert_eq!(
        emulator.typed_data_signatures()[0].digest,
        authorization.signing_digest(&domain)
    );

    // An authorization from another payer is refused before Circle is asked.
    let mut other = authorization.clone();
    other.from = Address::repeat_byte(0x42);
    let refused = signer.sign_transfer(&domain, &other).await.unwrap_err();
    assert_eq!(refused.reason_code(), "X402_SIGNER_NOT_PAYER");
    assert_eq!(emulator.typed_data_signatures().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Wrong keys, unknown wallets

#[tokio::test]
async fn a_signature_by_another_key_is_refused_and_the_decision_is_spent() {
    let emulator = emulator();
    emulator.set_fault(Fault::SignWithOtherKey);
    let adapter = circle_adapter(circle_signer(&emulator, 0));
    let terms = terms(&adapter, &required(&sepolia_offer("10000"), None));
    let (fingerprint, decision) = decide(&adapter, &terms);
    let ledger = MemoryLedger::new();

    let (code, message) =
        rail_error(authorize(&adapter, &ledger, &decision, &fingerprint, &terms).await);
    assert_eq!(code, CODE_SIGNATURE_INVALID);
    let intruder = EvmSigner::from_hex(OTHER_SIGNING_KEY_HEX).unwrap();
    assert!(
        message.contains(&checksum(&intruder.address())),
        "{message}"
    );
    assert_no_payload(&ledger, AttemptState::Unknown, CODE_SIGNATURE_INVALID);
    assert_eq!(emulator.typed_data_signatures().len(), 1);

    // The decision is spent: even with Circle behaving again, no second signature is asked.
    emulator.clear_faults();
    let again = authorize(&adapter, &ledger, &decision, &fingerprint, &terms).await;
    assert!(
        matches!(
            again,
            Err(AdapterError::AlreadyAuthorized {
                state: "unknown",
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(emulator.typed_data_signatures().len(), 1);

    // Reconciliation has nothing to resubmit (no payload) even while the authorization is
    // valid: only the chain can tell.
    let reconciled = adapter
        .reconcile(&ledger, decision.decision_id(), now())
        .await
        .unwrap();
    assert!(
        matches!(
            &reconciled,
            Reconciliation::Expired(record)
                if record.state == AttemptState::Unknown && record.authorization.is_empty()
        ),
        "{reconciled:?}"
    );
}

#[tokio::test]
async fn a_wallet_id_of_another_address_signs_nothing_usable() {
    let emulator = emulator();
    let (wallet_id, _) = emulator.default_wallet().unwrap();
    // Configured as if the wallet were Hardhat #1's: Circle signs with Hardhat #0's key.
    let claimed = EvmSigner::from_hex(OTHER_SIGNING_KEY_HEX)
        .unwrap()
        .address();
    let signer = CircleWalletSigner::new(client(&emulator, 0), wallet_id, claimed);
    let adapter = circle_adapter(signer);
    let terms = terms(&adapter, &required(&sepolia_offer("10000"), None));
    let (fingerprint, decision) = decide(&adapter, &terms);
    let ledger = MemoryLedger::new();
    let (code, _) = rail_error(authorize(&adapter, &ledger, &decision, &fingerprint, &terms).await);
    assert_eq!(code, CODE_SIGNATURE_INVALID);
    assert_no_payload(&ledger, AttemptState::Unknown, CODE_SIGNATURE_INVALID);
}

#[tokio::test]
async fn a_lost_answer_leaves_the_attempt_unknown() {
    let emulator = emulator();
    let adapter = circle_adapter(circle_signer(&emulator, 0));
    let terms = terms(&adapter, &required(&sepolia_offer("10000"), None));
    let (fingerprint, decision) = decide(&adapter, &terms);
    let ledger = MemoryLedger::new();
    emulator.set_fault(Fault::SignServerError);
    let (code, message) =
        rail_error(authorize(&adapter, &ledger, &decision, &fingerprint, &terms).await);
    assert_eq!(code, CODE_SIGN_OUTCOME_UNKNOWN);
    assert!(message.contains("CIRCLE_API_ERROR"), "{message}");
    assert_no_payload(&ledger, AttemptState::Unknown, CODE_SIGN_OUTCOME_UNKNOWN);
    let again = authorize(&adapter, &ledger, &decision, &fingerprint, &terms).await;
    assert!(
        matches!(again, Err(AdapterError::AlreadyAuthorized { .. })),
        "{again:?}"
    );
    assert!(emulator.typed_data_signatures().is_empty());
}

#[tokio::test]
async fn an_unknown_wallet_is_a_clear_error() {
    let emulator = emulator();
    let (_, address) = emulator.default_wallet().unwrap();
    let signer = CircleWalletSigner::new(client(&emulator, 2), UNKNOWN_WALLET, address);
    let adapter = circle_adapter(signer);
    let terms = terms(&adapter, &required(&sepolia_offer("10000"), None));
    let (fingerprint, decision) = decide(&adapter, &terms);
    let ledger = MemoryLedger::new();
    let (code, message) =
        rail_error(authorize(&adapter, &ledger, &decision, &fingerprint, &terms).await);
    assert_eq!(code, CODE_SIGN_FAILED);
    assert!(message.contains(UNKNOWN_WALLET), "{message}");
    assert!(message.contains("Wallet not found"), "{message}");
    assert_no_payload(&ledger, AttemptState::Failed, CODE_SIGN_FAILED);
    assert!(emulator.typed_data_signatures().is_empty());
    // A 404 is final: one request, no retries.
    assert_eq!(emulator.spent_ciphertexts(), 1);
}

// ---------------------------------------------------------------------------------------------
// Ciphertexts, retries, concurrency

#[tokio::test]
async fn every_attempt_carries_a_fresh_ciphertext() {
    let emulator = emulator();
    let client = client(&emulator, 3);
    let (wallet_id, address) = emulator.default_wallet().unwrap();
    let key = EvmSigner::from_hex(DEFAULT_WALLET_KEY_HEX).unwrap();
    let domain = TokenDomain {
        name: "USDC".into(),
        version: "2".into(),
        chain_id: 84_532,
        verifying_contract: parse_address(BASE_SEPOLIA_USDC).unwrap(),
    };
    let mut authorization = TransferAuthorization {
        from: address,
        to: parse_address(PAY_TO).unwrap(),
        value: U256::from(5u64),
        valid_after: U256::ZERO,
        valid_before: U256::from(4_102_444_800u64),
        nonce: nonce_for_decision("dec_fresh_0"),
    };
    // Two failures that spend their ciphertexts, then success: three requests, three
    // ciphertexts, one signature.
    emulator.set_fault(Fault::SignServerError);
    emulator.set_fault(Fault::SignServerError);
    let typed = transfer_typed_data(&domain, &authorization);
    let signature = client
        .sign_typed_data(&wallet_id, &typed, None)
        .await
        .unwrap();
    assert_eq!(emulator.spent_ciphertexts(), 3);
    assert_eq!(emulator.typed_data_signatures().len(), 1);
    let bytes = alloy_primitives::hex::decode(&signature).unwrap();
    assert_eq!(
        recover_signer(&authorization.signing_digest(&domain), &bytes).unwrap(),
        key.address()
    );

    // Many calls, each its own ciphertext.
    for index in 1..=5 {
        authorization.nonce = nonce_for_decision(&format!("dec_fresh_{index}"));
        let typed = transfer_typed_data(&domain, &authorization);
        client
            .sign_typed_data(&wallet_id, &typed, Some("memo"))
            .await
            .unwrap();
    }
    assert_eq!(emulator.spent_ciphertexts(), 8);
    assert_eq!(emulator.typed_data_signatures().len(), 6);

    // Out of retries: the failure is final and nothing is signed.
    let quick = self::client(&emulator, 0);
    emulator.set_fault(Fault::SignServerError);
    let error = quick
        .sign_typed_data(&wallet_id, &typed, None)
        .await
        .unwrap_err();
    assert_eq!(error.reason_code(), "CIRCLE_API_ERROR");
    assert!(matches!(error, CircleError::Api { status: 500, .. }));
    assert_eq!(emulator.typed_data_signatures().len(), 6);
}

#[tokio::test]
async fn typed_data_the_emulator_does_not_sign_is_refused() {
    let emulator = emulator();
    let client = client(&emulator, 0);
    let (wallet_id, _) = emulator.default_wallet().unwrap();
    let circle_example = r#"{"types":{"Data":[{"name":"dummy","type":"string"}],"EIP712Domain":[{"name":"name","type":"string"},{"name":"chainId","type":"uint256"}]},"domain":{"name":"Test","chainId":1337},"primaryType":"Data","message":{"dummy":"dummy"}}"#;
    for data in [circle_example, "not json", "[]"] {
        let error = client
            .sign_typed_data(&wallet_id, data, None)
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                CircleError::Api { status: 400, code: Some(code), .. } if code == CODE_PARAMETER_INVALID
            ),
            "{error:?}"
        );
    }
    assert!(emulator.typed_data_signatures().is_empty());
}

#[tokio::test]
async fn concurrent_authorizations_of_one_decision_sign_once() {
    let emulator = emulator();
    let adapter = Arc::new(circle_adapter(circle_signer(&emulator, 0)));
    let terms = terms(&adapter, &required(&sepolia_offer("10000"), None));
    let (fingerprint, decision) = decide(&adapter, &terms);
    let shared = Arc::new((terms, fingerprint, decision));
    let ledger = Arc::new(MemoryLedger::new());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (adapter, ledger, shared) = (
            Arc::clone(&adapter),
            Arc::clone(&ledger),
            Arc::clone(&shared),
        );
        tasks.push(tokio::spawn(async move {
            let (terms, fingerprint, decision) = &*shared;
            authorize(&adapter, &ledger, decision, fingerprint, terms).await
        }));
    }
    let mut paid = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => paid += 1,
            Err(AdapterError::AlreadyAuthorized { .. }) => {}
            Err(other) => panic!("{} {other}", other.reason_code()),
        }
    }
    assert_eq!(paid, 1);
    assert_eq!(emulator.typed_data_signatures().len(), 1);
    let attempt = ledger
        .load_attempt("x402", shared.2.decision_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(attempt.state, AttemptState::Authorized);
    assert!(!attempt.authorization.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[tokio::test]
async fn secrets_never_appear_in_errors_or_debug() {
    let emulator = emulator();
    let api_key = emulator.api_key().to_owned();
    let api_secret = api_key.rsplit(':').next().unwrap().to_owned();
    let entity_secret = emulator.entity_secret_hex().to_owned();
    let signer = circle_signer(&emulator, 0);
    let (_, address) = emulator.default_wallet().unwrap();
    let unknown = CircleWalletSigner::new(client(&emulator, 0), UNKNOWN_WALLET, address);
    emulator.set_fault(Fault::SignWithOtherKey);

    let mut shown = vec![
        format!("{signer:?}"),
        format!("{:?}", circle_adapter(circle_signer(&emulator, 0))),
    ];
    for signer in [signer, unknown] {
        let adapter = circle_adapter(signer);
        let terms = terms(&adapter, &required(&sepolia_offer("10000"), None));
        let (fingerprint, decision) = decide(&adapter, &terms);
        let ledger = MemoryLedger::new();
        let error = authorize(&adapter, &ledger, &decision, &fingerprint, &terms)
            .await
            .unwrap_err();
        shown.push(format!("{error} {error:?}"));
        shown.push(format!("{:?}", ledger.attempts()));
    }
    for text in &shown {
        assert!(!text.contains(&api_secret), "{text}");
        assert!(!text.contains(&entity_secret), "{text}");
        assert!(!text.contains(DEFAULT_WALLET_KEY_HEX), "{text}");
        assert!(!text.contains(OTHER_SIGNING_KEY_HEX), "{text}");
    }
}
