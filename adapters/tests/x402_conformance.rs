//! Conformance of the x402 adapter (`X402Adapter`): what it signs is judged by the reference
//! x402 implementation, and the adapter contract (DESIGN.md invariant 1, "no money without a
//! verified decision") is tried from every side.
//!
//! - Reference conformance: a matrix of offers (v2 on Base Sepolia and Base, v1, odd raw JSON
//!   with unknown members, the payment-identifier extension, a first offer that cannot be paid)
//!   goes through prepare → real verified decision → authorize with a real `EvmSigner`, and
//!   every payload is verified by the reference facilitator (`reference_verify`), checked for a
//!   strict low-`s` signature that recovers to the payer, and for an `accepted` that is the
//!   offered text byte for byte.
//! - The contract: terms other than the decided ones, expired decisions, a second use, a
//!   hundred concurrent uses, distinct nonces per decision, reconciliation and final reports.
//! - Bad offers: each is refused by `prepare` with its own reason code, before anything is
//!   signed or recorded.
//! - End to end: the reference paid API (express middleware) and facilitator settle exactly one
//!   payment for one decision, and refuse its replay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/decisions.rs"]
mod decisions;
#[path = "support/reference.rs"]
mod reference;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::hex;
use decisions::{Decider, after, http_request, now};
use reference::{
    BASE_SEPOLIA_USDC, DEFAULT_PAY_TO, Facilitator, PaidApi, TEST_PAYER_ADDRESS, TEST_PAYER_KEY,
    reference_verify,
};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use trustos_adapters::ledger::MemoryLedger;
use trustos_adapters::x402::assets::AssetRegistry;
use trustos_adapters::x402::evm::{
    Address, EvmSigner, TokenDomain, TransferAuthorization, U256, checksum, nonce_for_decision,
    parse_address, recover_signer,
};
use trustos_adapters::x402::wire::{
    self, PaymentIdentifierSupport, PaymentRequired, X402Version, decode_header_json,
    encode_header_json, payment_required_from_http, settlement_from_http,
};
use trustos_adapters::x402::{X402Adapter, X402Payment, X402Terms, report_of};
use trustos_adapters::{
    Adapter, AdapterError, Allowances, AttemptState, Reconciliation, SettlementReport,
};
use trustos_kernel::canonical::Digest;
use trustos_kernel::objects::RequestFingerprint;
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::VerifiedDecision;

/// USDC on Base (`eip155:8453`); EIP-712 domain `USD Coin` / `2`.
const BASE_USDC: &str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
/// Hardhat account #2: a second payee.
const OTHER_PAY_TO: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
/// The resource the offers of the matrix pay for.
const RESOURCE_URL: &str = "https://api.example.com/premium-data";
/// The v2 `resource` of the matrix, as sent.
const RESOURCE_JSON: &str = r#"{"url":"https://api.example.com/premium-data","description":"Premium data","mimeType":"application/json"}"#;
/// A Solana offer: a network the adapter does not know.
const SOLANA_OFFER: &str = r#"{"scheme":"exact","network":"solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp","amount":"1000","asset":"EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v","payTo":"2wKupLR9q6wXYppw8Gr2NvWxKBUqm4PPJKkQfoxHDBg4","maxTimeoutSeconds":60}"#;
/// secp256k1 n / 2: the largest `s` EIP-2 (and USDC's ECRecover) accepts.
const SECP256K1_HALF_N: &str = "0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0";
/// Seconds an authorization is valid before its decision was issued (clock skew).
const VALID_AFTER_SKEW: u64 = 600;
/// Deadline of one HTTP exchange with the reference servers.
const HTTP_TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Helpers

/// The adapter paying from Hardhat #0 (funded by the reference stub chain by default) in the
/// default assets.
fn adapter() -> X402Adapter {
    let signer = EvmSigner::from_hex(TEST_PAYER_KEY).unwrap();
    assert_eq!(checksum(&signer.address()), TEST_PAYER_ADDRESS);
    X402Adapter::new(signer, AssetRegistry::with_defaults(vec![]))
}

/// What the tests' profile allows: `exact`, any known network, USDC up to 1 USDC a call,
/// authorizations valid at most 300 s.
fn allowances() -> Allowances {
    Allowances {
        schemes: vec!["exact".to_owned()],
        networks: vec![],
        assets: vec!["usdc".to_owned()],
        max_amount: vec![("usdc".to_owned(), 1_000_000)],
        max_timeout_seconds: 300,
        ..Allowances::default()
    }
}

/// A v2 `exact` offer of USDC: [`Offer::sepolia`] or [`Offer::base`], other fields changed with
/// struct update syntax.
#[derive(Clone, Copy)]
struct Offer<'a> {
    network: &'a str,
    asset: &'a str,
    amount: &'a str,
    pay_to: &'a str,
    timeout: u64,
    /// The EIP-712 domain's name and version, as `extra`.
    domain: (&'a str, &'a str),
}

impl<'a> Offer<'a> {
    /// `amount` USDC base units on Base Sepolia to the default payee, valid 60 s.
    fn sepolia(amount: &'a str) -> Self {
        Self {
            network: "eip155:84532",
            asset: BASE_SEPOLIA_USDC,
            amount,
            pay_to: DEFAULT_PAY_TO,
            timeout: 60,
            domain: ("USDC", "2"),
        }
    }

    /// `amount` USDC base units on Base to the default payee, valid 60 s.
    fn base(amount: &'a str) -> Self {
        Self {
            network: "eip155:8453",
            asset: BASE_USDC,
            domain: ("USD Coin", "2"),
            ..Self::sepolia(amount)
        }
    }

    /// The offer's JSON, compact, keys in spec order.
    fn json(&self) -> String {
        let Self {
            network,
            asset,
            amount,
            pay_to,
            timeout,
            domain: (name, version),
        } = self;
        format!(
            r#"{{"scheme":"exact","network":"{network}","amount":"{amount}","asset":"{asset}","payTo":"{pay_to}","maxTimeoutSeconds":{timeout},"extra":{{"name":"{name}","version":"{version}"}}}}"#
        )
    }
}

/// The JSON of a v2 offer of `amount` USDC base units on Base Sepolia to the default payee.
fn sepolia_offer(amount: &str) -> String {
    Offer::sepolia(amount).json()
}

/// The JSON of a v2 `PaymentRequired` offering `offers`, with `extensions` when given.
fn v2_json(offers: &[&str], extensions: Option<&str>) -> String {
    let mut json = format!(
        r#"{{"x402Version":2,"error":"PAYMENT-SIGNATURE header is required","resource":{RESOURCE_JSON},"accepts":[{}]"#,
        offers.join(",")
    );
    if let Some(extensions) = extensions {
        json.push_str(r#","extensions":"#);
        json.push_str(extensions);
    }
    json.push('}');
    json
}

/// The payment request carried by a `PAYMENT-REQUIRED` header whose JSON is `json`.
fn v2(json: &str) -> PaymentRequired {
    let header = encode_header_json(json.as_bytes());
    payment_required_from_http(Some(header.as_bytes()), b"").unwrap()
}

/// The EIP-712 domain of USDC on `network`, written out independently of the registry.
fn usdc_domain(network: &str) -> TokenDomain {
    let (name, chain_id, contract) = match network {
        "eip155:84532" => ("USDC", 84_532, BASE_SEPOLIA_USDC),
        "eip155:8453" => ("USD Coin", 8453, BASE_USDC),
        other => panic!("no USDC domain written out for {other}"),
    };
    TokenDomain {
        name: name.to_owned(),
        version: "2".to_owned(),
        chain_id,
        verifying_contract: parse_address(contract).unwrap(),
    }
}

/// `prepare` that must succeed.
fn prepare(adapter: &X402Adapter, required: &PaymentRequired) -> X402Terms {
    adapter
        .prepare(required, &allowances())
        .unwrap_or_else(|err| panic!("prepare refused ({}): {err}", err.reason_code()))
}

/// Prepared terms of a v2 request offering only `offer` (JSON).
fn offer_terms(adapter: &X402Adapter, offer: &str) -> X402Terms {
    prepare(adapter, &v2(&v2_json(&[offer], None)))
}

/// Prepared terms of a Base Sepolia offer of `amount`.
fn sepolia_terms(adapter: &X402Adapter, amount: &str) -> X402Terms {
    offer_terms(adapter, &sepolia_offer(amount))
}

/// The reason code of a refusal, panicking on success.
#[track_caller]
fn code_of<T: std::fmt::Debug>(result: Result<T, AdapterError>) -> &'static str {
    match result {
        Ok(value) => panic!("expected a refusal, got {value:?}"),
        Err(err) => err.reason_code(),
    }
}

/// Unix seconds of a timestamp.
fn seconds(at: Timestamp) -> u64 {
    at.unix_millis() / 1000
}

/// The top-level members of a JSON object, each with its original text.
fn raw_members(json: &str) -> BTreeMap<String, Box<RawValue>> {
    serde_json::from_str(json).unwrap()
}

/// A verified allow decision, issued now, for a request paying prepared terms, and an empty
/// ledger to authorize into.
struct Decided {
    adapter: X402Adapter,
    ledger: MemoryLedger,
    terms: X402Terms,
    issued: Timestamp,
    fingerprint: RequestFingerprint,
    decision: VerifiedDecision,
}

impl Decided {
    /// An allow for `method url` paying `terms`.
    fn new(adapter: X402Adapter, terms: X402Terms, method: &str, url: &str) -> Self {
        let issued = now();
        let (fingerprint, decision) =
            Decider::new().allow_terms(&adapter, &terms, method, url, issued);
        Self {
            adapter,
            ledger: MemoryLedger::new(),
            terms,
            issued,
            fingerprint,
            decision,
        }
    }

    /// An allow for `GET` [`RESOURCE_URL`] paying 10000 on Base Sepolia.
    fn sepolia() -> Self {
        let adapter = adapter();
        let terms = sepolia_terms(&adapter, "10000");
        Self::new(adapter, terms, "GET", RESOURCE_URL)
    }

    /// `authorize` of `terms` with `decision` for `fingerprint`, into this ledger at `at`.
    async fn authorize_with(
        &self,
        decision: &VerifiedDecision,
        fingerprint: &RequestFingerprint,
        terms: &X402Terms,
        at: Timestamp,
    ) -> Result<X402Payment, AdapterError> {
        self.adapter
            .authorize(&self.ledger, decision, fingerprint, terms, at)
            .await
    }

    /// `authorize` of the decided terms with the decision, at `at`.
    async fn authorize_at(&self, at: Timestamp) -> Result<X402Payment, AdapterError> {
        self.authorize_with(&self.decision, &self.fingerprint, &self.terms, at)
            .await
    }

    /// `authorize` at the decision's issue time, which must succeed.
    async fn authorize(&self) -> X402Payment {
        self.authorize_at(self.issued)
            .await
            .unwrap_or_else(|err| panic!("authorize refused ({}): {err}", err.reason_code()))
    }

    /// The decision's id.
    fn id(&self) -> &str {
        self.decision.decision_id()
    }

    /// Asserts the ledger holds exactly one attempt, and that it recorded `authorization`.
    #[track_caller]
    fn assert_one_attempt(&self, authorization: &str) {
        let attempts = self.ledger.attempts();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].authorization, authorization);
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Reference conformance

/// One row of the conformance matrix.
struct Case {
    label: &'static str,
    required: PaymentRequired,
    /// The offered requirements' exact texts, in order.
    offers: Vec<String>,
    /// Which offer the adapter must choose.
    chosen: usize,
    version: X402Version,
    /// The CAIP-2 network bound into the decision.
    network: &'static str,
    domain: TokenDomain,
    pay_to: &'static str,
    amount: u128,
    /// The validity the authorization must get, in seconds after the decision.
    timeout: u64,
    /// `Some(required)` when the server advertises payment-identifier.
    payment_identifier: Option<bool>,
}

impl Case {
    /// A v2 request offering only `offer`: the adapter must sign exactly its terms.
    fn offering(label: &'static str, offer: Offer<'static>) -> Self {
        let json = offer.json();
        Self {
            label,
            required: v2(&v2_json(&[&json], None)),
            offers: vec![json],
            chosen: 0,
            version: X402Version::V2,
            network: offer.network,
            domain: usdc_domain(offer.network),
            pay_to: offer.pay_to,
            amount: offer.amount.parse().unwrap(),
            timeout: offer.timeout,
            payment_identifier: None,
        }
    }
}

/// The v1 offer of the v1 case (the example of transports-v1/http.md), as the 402 body carries
/// it.
const V1_OFFER: &str = r#"{"scheme":"exact","network":"base-sepolia","maxAmountRequired":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","resource":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json","outputSchema":null,"maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}"#;

/// An offer with members the adapter does not model, unusual spacing, key order, escapes and
/// lower-case addresses.
const ODD_OFFER: &str = r#"{ "payTo" :"0x209693bc6afc0c5328ba36faf03c514ef312287c" ,"extra":{"version":"2", "name":"USDC","tier":{"gold":[1,2.5,true,null]}},
  "maxTimeoutSeconds":90,"asset":"0x036cbd53842c5426634e7929541ec2318f3dcf7e","amount":"777",
  "network":"eip155:84532","x-vendor":"\u00e9t\u00e9 \ud83c\udf1e \"q\"","scheme":"exact","description":"odd"}"#;

fn matrix() -> Vec<Case> {
    let mut cases = vec![
        Case::offering("v2 exact on eip155:84532", Offer::sepolia("10000")),
        Case::offering(
            "v2 exact on eip155:8453",
            Offer {
                pay_to: OTHER_PAY_TO,
                timeout: 120,
                ..Offer::base("2500")
            },
        ),
    ];

    // The terms of the v2 offer of 10000 on Base Sepolia, offered as v1 in a 402 body.
    let body = format!(
        "{{\n  \"x402Version\": 1,\n  \"error\": \"X-PAYMENT header is required\",\n  \"accepts\": [\n    {V1_OFFER}\n  ]\n}}"
    );
    cases.push(Case {
        required: payment_required_from_http(None, body.as_bytes()).unwrap(),
        offers: vec![V1_OFFER.to_owned()],
        version: X402Version::V1,
        ..Case::offering("v1 exact on base-sepolia", Offer::sepolia("10000"))
    });

    // The whole header hand-written: odd spacing and key order around the offer too.
    let odd_header = format!(
        "{{ \"accepts\" : [ {ODD_OFFER} ] ,\n \"resource\":{RESOURCE_JSON}, \"x402Version\":2 , \"error\":\"pay up\"}}"
    );
    cases.push(Case {
        required: v2(&odd_header),
        offers: vec![ODD_OFFER.to_owned()],
        ..Case::offering(
            "v2 offer with unknown members, odd spacing and key order",
            Offer {
                timeout: 90,
                ..Offer::sepolia("777")
            },
        )
    });

    for required_flag in [true, false] {
        let case = Case::offering(
            if required_flag {
                "v2 with payment-identifier required"
            } else {
                "v2 with payment-identifier optional"
            },
            Offer::sepolia("3000"),
        );
        let extensions = format!(
            r#"{{"payment-identifier":{{"info":{{"required":{required_flag}}},"schema":{{"type":"object","properties":{{"required":{{"type":"boolean"}},"id":{{"type":"string","minLength":16,"maxLength":128}}}},"required":["required"]}}}},"vendor-ext":{{"info":{{"tag":"keep-me"}}}}}}"#
        );
        cases.push(Case {
            required: v2(&v2_json(&[&case.offers[0]], Some(&extensions))),
            payment_identifier: Some(required_flag),
            ..case
        });
    }

    let acceptable = sepolia_offer("4200");
    let also_acceptable = sepolia_offer("4300");
    cases.push(Case {
        required: v2(&v2_json(
            &[SOLANA_OFFER, &acceptable, &also_acceptable],
            None,
        )),
        offers: vec![SOLANA_OFFER.to_owned(), acceptable, also_acceptable],
        chosen: 1,
        ..Case::offering(
            "first offer on an unknown network, second acceptable",
            Offer::sepolia("4200"),
        )
    });
    cases
}

/// Checks one authorized payment against its case, independently of the adapter's own types.
fn check_payment(case: &Case, decision: &VerifiedDecision, payment: &X402Payment, payer: Address) {
    let label = case.label;
    let issued = seconds(decision.decision().issued_at);

    // The header form carries exactly the payload.
    let expected_header = match case.version {
        X402Version::V1 => "x-payment",
        X402Version::V2 => "payment-signature",
    };
    assert_eq!(payment.header_name(), expected_header, "{label}");
    assert_eq!(
        decode_header_json(payment.header_value().as_bytes()).unwrap(),
        payment.payload_json.as_bytes(),
        "{label}"
    );
    assert_eq!(
        payment.mcp_meta().unwrap(),
        serde_json::from_str::<Value>(&payment.payload_json).unwrap(),
        "{label}"
    );

    let members = raw_members(&payment.payload_json);
    let payload: Value = serde_json::from_str(&payment.payload_json).unwrap();
    match case.version {
        X402Version::V2 => {
            assert_eq!(payload["x402Version"], 2, "{label}");
            // `accepted` is the chosen offer's text, byte for byte.
            let accepted = members.get("accepted").expect("accepted").get();
            assert_eq!(accepted, case.offers[case.chosen], "{label}");
            assert!(
                case.offers.iter().any(|o| o == accepted),
                "{label}: accepted is not an offered text"
            );
            assert!(payment.payload_json.contains(&case.offers[case.chosen]));
            let resource = members.get("resource").expect("resource").get();
            assert!(
                resource == RESOURCE_JSON,
                "{label}: resource {resource} is not the offered text"
            );
        }
        X402Version::V1 => {
            assert_eq!(payload["x402Version"], 1, "{label}");
            assert_eq!(payload["scheme"], "exact", "{label}");
            assert_eq!(payload["network"], "base-sepolia", "{label}");
            let keys: Vec<&str> = members.keys().map(String::as_str).collect();
            assert_eq!(
                keys,
                ["network", "payload", "scheme", "x402Version"],
                "{label}"
            );
        }
    }

    // The authorization: exactly the decided terms, the decision's nonce and validity window.
    let auth = &payload["payload"]["authorization"];
    assert_eq!(auth["from"], TEST_PAYER_ADDRESS, "{label}");
    assert_eq!(auth["to"], case.pay_to, "{label}");
    assert_eq!(auth["value"], case.amount.to_string(), "{label}");
    assert_eq!(
        auth["nonce"],
        nonce_for_decision(decision.decision_id()).to_string(),
        "{label}"
    );
    assert_eq!(
        auth["validAfter"],
        (issued - VALID_AFTER_SKEW).to_string(),
        "{label}"
    );
    assert_eq!(
        auth["validBefore"],
        (issued + case.timeout).to_string(),
        "{label}"
    );
    assert_eq!(payment.valid_before, issued + case.timeout, "{label}");

    // A strict signature: 0x + 130 lower-case hex digits, v 27/28, low s.
    let signature = payload["payload"]["signature"].as_str().unwrap();
    assert_eq!(signature.len(), 132, "{label}: {signature}");
    assert!(signature.starts_with("0x"), "{label}");
    assert!(
        signature[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{label}: {signature}"
    );
    let bytes = hex::decode(&signature[2..]).unwrap();
    assert!(
        bytes[64] == 27 || bytes[64] == 28,
        "{label}: v {}",
        bytes[64]
    );
    let s = U256::from_be_slice(&bytes[32..64]);
    assert!(s != U256::ZERO, "{label}");
    assert!(
        s <= SECP256K1_HALF_N.parse::<U256>().unwrap(),
        "{label}: high s"
    );

    // It recovers to the payer under the token's real domain.
    let message = TransferAuthorization {
        from: parse_address(auth["from"].as_str().unwrap()).unwrap(),
        to: parse_address(auth["to"].as_str().unwrap()).unwrap(),
        value: auth["value"].as_str().unwrap().parse().unwrap(),
        valid_after: auth["validAfter"].as_str().unwrap().parse().unwrap(),
        valid_before: auth["validBefore"].as_str().unwrap().parse().unwrap(),
        nonce: auth["nonce"].as_str().unwrap().parse().unwrap(),
    };
    let digest = message.signing_digest(&case.domain);
    assert_eq!(recover_signer(&digest, &bytes).unwrap(), payer, "{label}");

    // payment-identifier: our id, echoed next to the server's declaration.
    match case.payment_identifier {
        None => {
            assert!(payment.payment_id.is_none(), "{label}");
            assert!(payload.get("extensions").is_none(), "{label}: {payload}");
        }
        Some(required) => {
            let id = payment.payment_id.as_deref().expect("a payment id");
            assert!(id.starts_with("pay_") && id.len() >= 16, "{label}: {id}");
            let ext = &payload["extensions"]["payment-identifier"];
            assert_eq!(ext["info"]["id"], id, "{label}");
            assert_eq!(ext["info"]["required"], required, "{label}");
            assert_eq!(ext["schema"]["required"], json!(["required"]), "{label}");
            assert_eq!(
                payload["extensions"]["vendor-ext"],
                json!({"info": {"tag": "keep-me"}}),
                "{label}"
            );
        }
    }
}

#[tokio::test]
async fn every_offer_of_the_matrix_is_signed_as_the_reference_verifies() {
    let mut reference_cases = Vec::new();
    let cases = matrix();
    for case in &cases {
        let adapter = adapter();
        let terms = prepare(&adapter, &case.required);
        assert_eq!(terms.index, case.chosen, "{}", case.label);

        // What the decision binds.
        let bound = adapter.bound_terms(&terms).unwrap();
        assert_eq!(bound.scheme, "exact", "{}", case.label);
        assert_eq!(bound.network, case.network, "{}", case.label);
        assert_eq!(bound.asset, checksum(&case.domain.verifying_contract));
        assert_eq!(bound.amount.to_u128(), Some(case.amount), "{}", case.label);
        assert_eq!(bound.pay_to, case.pay_to, "{}", case.label);
        assert_eq!(bound.resource, RESOURCE_URL, "{}", case.label);
        assert_eq!(bound.payer.as_deref(), Some(TEST_PAYER_ADDRESS));
        let offered: Value = serde_json::from_str(&case.offers[case.chosen]).unwrap();
        assert_eq!(
            bound.offer_digest,
            Some(Digest::of_canonical_value(&offered).unwrap()),
            "{}",
            case.label
        );

        let decided = Decided::new(adapter, terms, "GET", RESOURCE_URL);
        let payment = decided
            .authorize_at(decided.issued)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", case.label));
        check_payment(case, &decided.decision, &payment, decided.adapter.payer());

        // Recorded before it left: one attempt holding exactly these bytes.
        let attempts = decided.ledger.attempts();
        assert_eq!(attempts.len(), 1, "{}", case.label);
        assert_eq!(attempts[0].decision_id, decided.id());
        assert_eq!(attempts[0].state, AttemptState::Authorized);
        assert_eq!(attempts[0].authorization, payment.payload_json);
        assert_eq!(attempts[0].valid_before, payment.valid_before);
        if let Some(id) = &payment.payment_id {
            assert_eq!(&attempts[0].idempotency_key, id);
        }

        reference_cases.push(json!({
            "paymentPayload": serde_json::from_str::<Value>(&payment.payload_json).unwrap(),
            "paymentRequirements": offered,
        }));
    }

    let results = reference_verify(&reference_cases).unwrap();
    for (case, result) in cases.iter().zip(&results) {
        assert_eq!(result["isValid"], true, "{}: {result}", case.label);
        assert_eq!(
            result["payer"], TEST_PAYER_ADDRESS,
            "{}: {result}",
            case.label
        );
    }
}

/// The reference really judges: a payload of ours with one authorized field changed fails.
#[tokio::test]
async fn the_reference_refuses_a_tampered_payload_of_ours() {
    let o = sepolia_offer("10000");
    let payment = Decided::sepolia().authorize().await;
    let good: Value = serde_json::from_str(&payment.payload_json).unwrap();
    let mut tampered = good.clone();
    tampered["payload"]["authorization"]["to"] = json!(OTHER_PAY_TO);
    let mut other_requirements: Value = serde_json::from_str(&o).unwrap();
    other_requirements["payTo"] = json!(OTHER_PAY_TO);
    tampered["accepted"] = other_requirements.clone();
    let offered: Value = serde_json::from_str(&o).unwrap();
    let results = reference_verify(&[
        json!({ "paymentPayload": good, "paymentRequirements": offered }),
        json!({ "paymentPayload": tampered, "paymentRequirements": other_requirements }),
    ])
    .unwrap();
    assert_eq!(results[0]["isValid"], true, "{}", results[0]);
    assert_eq!(results[1]["isValid"], false, "{}", results[1]);
    assert_eq!(
        results[1]["invalidReason"], "invalid_exact_evm_signature",
        "{}",
        results[1]
    );
}

// ---------------------------------------------------------------------------------------------
// 2. The contract

/// A decision for `decided` is used with `used`: refused as a terms mismatch, nothing
/// recorded; the same decision with `decided` then authorizes (so the refusal was about the
/// terms, and it consumed nothing). `what` names the difference.
async fn assert_terms_mismatch(what: &str, decided: &X402Terms, used: &X402Terms) {
    let decided = Decided::new(adapter(), decided.clone(), "GET", RESOURCE_URL);
    let refused = decided
        .authorize_with(
            &decided.decision,
            &decided.fingerprint,
            used,
            decided.issued,
        )
        .await;
    assert_eq!(code_of(refused), "PAYMENT_TERMS_MISMATCH", "{what}");
    let attempts = decided.ledger.attempts();
    assert!(attempts.is_empty(), "{what}: {attempts:?}");
    decided.authorize().await;
    assert_eq!(decided.ledger.attempts().len(), 1, "{what}");
}

#[tokio::test]
async fn another_amount_pay_to_or_network_than_decided_is_refused() {
    let adapter = adapter();
    let decided = sepolia_terms(&adapter, "10000");
    for (what, used) in [
        ("amount", Offer::sepolia("10001")),
        (
            "payTo",
            Offer {
                pay_to: OTHER_PAY_TO,
                ..Offer::sepolia("10000")
            },
        ),
        ("network", Offer::base("10000")),
    ] {
        assert_terms_mismatch(what, &decided, &offer_terms(&adapter, &used.json())).await;
    }
}

#[tokio::test]
async fn another_offer_with_the_same_payment_fields_is_refused() {
    // Same scheme, network, asset, amount and payee: only the offer digest tells them apart.
    let adapter = adapter();
    let longer = Offer {
        timeout: 61,
        ..Offer::sepolia("10000")
    };
    let decided = sepolia_terms(&adapter, "10000");
    let used = offer_terms(&adapter, &longer.json());
    assert_eq!(
        adapter.bound_terms(&decided).unwrap().amount,
        adapter.bound_terms(&used).unwrap().amount
    );
    assert_ne!(decided.offer_digest, used.offer_digest);
    assert_terms_mismatch("maxTimeoutSeconds", &decided, &used).await;

    let extra_member =
        sepolia_offer("10000").replacen(r#""extra":{"#, r#""extra":{"memo":"x","#, 1);
    let used = offer_terms(&adapter, &extra_member);
    assert_terms_mismatch("a member in extra", &decided, &used).await;
}

#[tokio::test]
async fn a_decision_for_another_request_pays_nothing() {
    let adapter = adapter();
    let decider = Decider::new();
    let ledger = MemoryLedger::new();
    let terms = sepolia_terms(&adapter, "10000");
    let bound = adapter.bound_terms(&terms).unwrap();
    // A decision for the call without payment.
    let unpaid = http_request("GET", RESOURCE_URL, None);
    let unpaid_decision = decider.allow(&unpaid);
    let at = unpaid_decision.decision().issued_at;
    let paid = http_request("GET", RESOURCE_URL, Some(bound.clone()));
    // A decision for the paid call, to another URL.
    let (_, decision) = decider.allow_terms(&adapter, &terms, "GET", RESOURCE_URL, at);
    let elsewhere = http_request("GET", "https://api.example.com/other", Some(bound));
    for (what, decision, fingerprint) in [
        ("the unpaid call's decision", &unpaid_decision, &unpaid),
        // Not with the paid fingerprint either: the decision binds the unpaid one.
        ("the unpaid call's decision, paid", &unpaid_decision, &paid),
        ("a decision for another URL", &decision, &elsewhere),
    ] {
        let refused = adapter
            .authorize(&ledger, decision, fingerprint, &terms, at)
            .await;
        assert_eq!(code_of(refused), "PAYMENT_TERMS_MISMATCH", "{what}");
        assert!(ledger.attempts().is_empty(), "{what}");
    }
}

#[tokio::test]
async fn a_decision_out_of_force_pays_nothing() {
    let decided = Decided::sepolia();
    let expires = decided.decision.decision().expires_at;
    for at in [
        expires,
        after(expires, 1),
        decided.issued.checked_sub_millis(1).unwrap(),
    ] {
        assert_eq!(
            code_of(decided.authorize_at(at).await),
            "PAYMENT_DECISION_NOT_IN_FORCE",
            "at {at}"
        );
    }
    assert!(decided.ledger.attempts().is_empty());
    // The last instant in force still works.
    let last = expires.checked_sub_millis(1).unwrap();
    decided.authorize_at(last).await.unwrap();
}

#[tokio::test]
async fn a_decision_authorizes_once() {
    let decided = Decided::sepolia();
    let first = decided.authorize().await;
    let second = decided.authorize_at(after(decided.issued, 1)).await;
    match &second {
        Err(AdapterError::AlreadyAuthorized { decision_id, state }) => {
            assert_eq!(decision_id, decided.id());
            assert_eq!(*state, "authorized");
        }
        other => panic!("expected AlreadyAuthorized, got {other:?}"),
    }
    assert_eq!(code_of(second), "PAYMENT_ALREADY_AUTHORIZED");
    decided.assert_one_attempt(&first.payload_json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_hundred_concurrent_uses_of_one_decision_authorize_once() {
    const TASKS: usize = 100;
    let decided = Arc::new(Decided::sepolia());
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (decided, barrier) = (decided.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                decided.authorize_at(decided.issued).await
            })
        })
        .collect();
    let mut paid = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(payment) => paid.push(payment),
            Err(err) => {
                assert_eq!(err.reason_code(), "PAYMENT_ALREADY_AUTHORIZED", "{err}");
                refused += 1;
            }
        }
    }
    assert_eq!(paid.len(), 1);
    assert_eq!(refused, TASKS - 1);
    decided.assert_one_attempt(&paid[0].payload_json);
}

#[tokio::test]
async fn two_decisions_sign_two_nonces() {
    let decided = Decided::sepolia();
    let (fingerprint, again) = Decider::new().allow_terms(
        &decided.adapter,
        &decided.terms,
        "GET",
        RESOURCE_URL,
        decided.issued,
    );
    let mut nonces = Vec::new();
    for (fingerprint, decision) in [
        (&decided.fingerprint, &decided.decision),
        (&fingerprint, &again),
    ] {
        let payment = decided
            .authorize_with(decision, fingerprint, &decided.terms, decided.issued)
            .await
            .unwrap();
        let payload: Value = serde_json::from_str(&payment.payload_json).unwrap();
        let nonce = payload["payload"]["authorization"]["nonce"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            nonce,
            nonce_for_decision(decision.decision_id()).to_string()
        );
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1]);
    let attempts = decided.ledger.attempts();
    assert_eq!(attempts.len(), 2);
    assert_ne!(attempts[0].replay_key, attempts[1].replay_key);
}

#[tokio::test]
async fn an_unknown_outcome_is_resubmitted_with_the_same_bytes_until_it_expires() {
    let decided = Decided::sepolia();
    let (adapter, ledger, id) = (&decided.adapter, &decided.ledger, decided.id());
    assert_eq!(
        adapter.reconcile(ledger, id, decided.issued).await.unwrap(),
        Reconciliation::NoAttempt
    );
    let payment = decided.authorize().await;
    let recorded = adapter
        .report(
            ledger,
            id,
            &SettlementReport::Unknown {
                detail: "timed out".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(recorded.state, AttemptState::Unknown);

    let valid_before = payment.valid_before;
    let still_valid = Timestamp::from_unix_millis((valid_before - 1) * 1000).unwrap();
    match adapter.reconcile(ledger, id, still_valid).await.unwrap() {
        Reconciliation::Resubmit(record) => {
            assert_eq!(record.state, AttemptState::Unknown);
            assert_eq!(record.authorization, payment.payload_json);
            assert_eq!(record.valid_before, valid_before);
        }
        other => panic!("expected Resubmit, got {other:?}"),
    }
    // Reconciling signs nothing: still one attempt, still the same bytes, and no second
    // authorization for the decision.
    decided.assert_one_attempt(&payment.payload_json);
    let again = decided.authorize_at(decided.issued).await;
    assert!(
        matches!(
            &again,
            Err(AdapterError::AlreadyAuthorized {
                state: "unknown",
                ..
            })
        ),
        "{again:?}"
    );

    let expired = Timestamp::from_unix_millis(valid_before * 1000).unwrap();
    match adapter.reconcile(ledger, id, expired).await.unwrap() {
        Reconciliation::Expired(record) => {
            assert_eq!(record.authorization, payment.payload_json);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
}

#[tokio::test]
async fn a_settled_payment_stays_settled() {
    let decided = Decided::sepolia();
    let (adapter, ledger, id) = (&decided.adapter, &decided.ledger, decided.id());
    decided.authorize().await;
    let tx = format!("0x{}", "ab".repeat(32));
    let settled = adapter
        .report(
            ledger,
            id,
            &SettlementReport::Settled {
                reference: tx.clone(),
                network: "eip155:84532".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(settled.state, AttemptState::Settled);
    assert_eq!(settled.reference.as_deref(), Some(tx.as_str()));
    for later in [
        SettlementReport::Unknown {
            detail: "late timeout".to_owned(),
        },
        SettlementReport::Failed {
            reason: "late failure".to_owned(),
        },
    ] {
        let record = adapter.report(ledger, id, &later).await.unwrap();
        assert_eq!(record.state, AttemptState::Settled, "after {later:?}");
        assert_eq!(record.reference.as_deref(), Some(tx.as_str()));
    }
    let stored = ledger.attempts();
    assert_eq!(stored[0].state, AttemptState::Settled);
    assert_eq!(stored[0].reference.as_deref(), Some(tx.as_str()));
    match adapter.reconcile(ledger, id, decided.issued).await.unwrap() {
        Reconciliation::Known(record) => assert_eq!(record.state, AttemptState::Settled),
        other => panic!("expected Known, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Bad offers

/// `prepare` of a v2 request offering `offers` under `allowances`: refused with one code per
/// offer; returns the overall reason code. Nothing is signed or recorded.
#[track_caller]
fn refused(offers: &[&str], allowances: &Allowances) -> (&'static str, Vec<(usize, &'static str)>) {
    let adapter = adapter();
    let ledger = MemoryLedger::new();
    let required = v2(&v2_json(offers, None));
    let result = adapter.prepare(&required, allowances);
    assert!(ledger.attempts().is_empty());
    match result {
        Err(err @ AdapterError::NoAcceptableOffer(_)) => {
            let code = err.reason_code();
            let AdapterError::NoAcceptableOffer(per_offer) = err else {
                unreachable!()
            };
            assert_eq!(per_offer.len(), offers.len(), "{per_offer:?}");
            (code, per_offer)
        }
        Err(other) => panic!("expected NoAcceptableOffer, got {other}"),
        Ok(terms) => panic!("expected a refusal, got offer {}", terms.index),
    }
}

/// The reason code for a single refused offer.
#[track_caller]
fn refused_one(offer: &str, allowances: &Allowances) -> &'static str {
    let (code, per_offer) = refused(&[offer], allowances);
    assert_eq!(per_offer, vec![(0, code)]);
    code
}

#[test]
fn an_unknown_scheme_is_refused() {
    let upto = sepolia_offer("1000").replace(r#""scheme":"exact""#, r#""scheme":"upto""#);
    assert_eq!(refused_one(&upto, &allowances()), "X402_SCHEME_UNSUPPORTED");
    // `exact` itself is refused when the profile allows no scheme.
    let none = Allowances {
        schemes: vec![],
        ..allowances()
    };
    assert_eq!(
        refused_one(&sepolia_offer("1000"), &none),
        "X402_SCHEME_UNSUPPORTED"
    );
}

#[test]
fn an_unknown_network_is_refused() {
    assert_eq!(
        refused_one(SOLANA_OFFER, &allowances()),
        "X402_NETWORK_UNKNOWN"
    );
    let bad_caip2 = sepolia_offer("1000").replace("eip155:84532", "eip155:084532");
    assert_eq!(
        refused_one(&bad_caip2, &allowances()),
        "X402_NETWORK_UNKNOWN"
    );
    // v1: a network name x402 does not list.
    let body = format!(
        r#"{{"x402Version":1,"error":"pay","accepts":[{}]}}"#,
        V1_OFFER.replace("base-sepolia", "arbitrum-one")
    );
    let required = payment_required_from_http(None, body.as_bytes()).unwrap();
    assert_eq!(
        code_of(adapter().prepare(&required, &allowances())),
        "X402_NETWORK_UNKNOWN"
    );
}

#[test]
fn an_asset_not_in_the_registry_is_refused() {
    let stranger = sepolia_offer("1000").replace(
        BASE_SEPOLIA_USDC,
        "0x1111111111111111111111111111111111111111",
    );
    assert_eq!(refused_one(&stranger, &allowances()), "X402_ASSET_UNKNOWN");
    // Base's USDC contract offered on Base Sepolia: right token, wrong chain.
    let wrong_chain = sepolia_offer("1000").replace(BASE_SEPOLIA_USDC, BASE_USDC);
    assert_eq!(
        refused_one(&wrong_chain, &allowances()),
        "X402_ASSET_UNKNOWN"
    );
}

#[test]
fn a_network_or_asset_the_profile_does_not_allow_is_refused() {
    let listing = |list: fn(&mut Allowances)| {
        let mut allowed = allowances();
        list(&mut allowed);
        allowed
    };
    let network = "X402_NETWORK_NOT_ALLOWED";
    let asset = "X402_ASSET_NOT_ALLOWED";
    for (allowed, code) in [
        (
            listing(|a| a.networks = vec!["eip155:8453".into()]),
            network,
        ),
        (
            listing(|a| a.denied_networks = vec!["eip155:84532".into()]),
            network,
        ),
        (listing(|a| a.assets = vec!["eurc".into()]), asset),
        (listing(|a| a.denied_assets = vec!["usdc".into()]), asset),
    ] {
        let refused = refused_one(&sepolia_offer("1000"), &allowed);
        assert_eq!(refused, code, "{allowed:?}");
    }
}

#[test]
fn an_amount_above_the_profile_maximum_is_refused() {
    assert_eq!(
        refused_one(&sepolia_offer("1000001"), &allowances()),
        "X402_AMOUNT_ABOVE_POLICY"
    );
    // Far beyond u128 too.
    assert_eq!(
        refused(&[&sepolia_offer(&"9".repeat(60))], &allowances()).0,
        "X402_AMOUNT_TOO_LARGE"
    );
    // The maximum itself is allowed.
    let terms = sepolia_terms(&adapter(), "1000000");
    assert_eq!(terms.amount, 1_000_000);
}

#[test]
fn a_zero_amount_is_refused() {
    assert_eq!(
        refused_one(&sepolia_offer("0"), &allowances()),
        "X402_AMOUNT_ZERO"
    );
}

#[test]
fn a_denied_payee_is_refused_whatever_its_letter_case() {
    let lower = DEFAULT_PAY_TO.to_ascii_lowercase();
    let upper = format!("0x{}", DEFAULT_PAY_TO[2..].to_ascii_uppercase());
    // Mixed case that is not the EIP-55 checksum.
    let mixed: String = lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i > 1 && i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    assert_ne!(mixed, DEFAULT_PAY_TO);
    for listed in [DEFAULT_PAY_TO.to_owned(), lower.clone(), upper, mixed] {
        let denied = Allowances {
            denied_payees: vec![listed.clone()],
            ..allowances()
        };
        assert_eq!(
            refused_one(&sepolia_offer("1000"), &denied),
            "X402_PAYTO_DENIED",
            "deny list entry {listed}"
        );
    }
    // The offer may spell the payee in lower case too.
    let offered_lower = sepolia_offer("1000").replace(DEFAULT_PAY_TO, &lower);
    let denied = Allowances {
        denied_payees: vec![DEFAULT_PAY_TO.to_owned()],
        ..allowances()
    };
    assert_eq!(refused_one(&offered_lower, &denied), "X402_PAYTO_DENIED");
}

#[test]
fn a_payee_off_the_allow_list_is_refused() {
    let only_other = Allowances {
        allowed_payees: vec![OTHER_PAY_TO.to_owned()],
        ..allowances()
    };
    assert_eq!(
        refused_one(&sepolia_offer("1000"), &only_other),
        "X402_PAYTO_NOT_ALLOWED"
    );
    // Listed in another letter case, it is allowed.
    let listed = Allowances {
        allowed_payees: vec![DEFAULT_PAY_TO.to_ascii_lowercase()],
        ..allowances()
    };
    adapter()
        .prepare(&v2(&v2_json(&[&sepolia_offer("1000")], None)), &listed)
        .unwrap();
}

#[test]
fn an_eip712_domain_other_than_the_tokens_is_refused() {
    for (what, offer) in [
        (
            "name",
            Offer {
                domain: ("USD Coin", "2"),
                ..Offer::sepolia("1000")
            },
        ),
        (
            "version",
            Offer {
                domain: ("USDC", "1"),
                ..Offer::sepolia("1000")
            },
        ),
        // On Base the token's name is "USD Coin": "USDC" is the mismatch there.
        (
            "name on Base",
            Offer {
                domain: ("USDC", "2"),
                ..Offer::base("1000")
            },
        ),
    ] {
        assert_eq!(
            refused_one(&offer.json(), &allowances()),
            "X402_ASSET_DOMAIN_MISMATCH",
            "{what}"
        );
    }
}

#[test]
fn several_unacceptable_offers_are_refused_together() {
    let zero = sepolia_offer("0");
    let upto = sepolia_offer("1000").replace(r#""scheme":"exact""#, r#""scheme":"upto""#);
    let (code, per_offer) = refused(&[SOLANA_OFFER, &zero, &upto], &allowances());
    assert_eq!(code, "X402_NO_ACCEPTABLE_REQUIREMENT");
    assert_eq!(
        per_offer,
        vec![
            (0, "X402_NETWORK_UNKNOWN"),
            (1, "X402_AMOUNT_ZERO"),
            (2, "X402_SCHEME_UNSUPPORTED"),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// 4. End to end against the reference paid API

/// Unpaid request → 402 → the payment request it carries.
fn payment_required_of(response: &reference::HttpResponse) -> PaymentRequired {
    assert_eq!(response.status, 402, "{}", response.text());
    payment_required_from_http(
        response
            .header(wire::HEADER_PAYMENT_REQUIRED)
            .map(str::as_bytes),
        &response.body,
    )
    .unwrap()
}

/// The settlement of a paid response.
fn settlement_of(response: &reference::HttpResponse) -> wire::SettlementResponse {
    settlement_from_http(
        response
            .header(wire::HEADER_PAYMENT_RESPONSE)
            .map(str::as_bytes),
        response
            .header(wire::HEADER_X_PAYMENT_RESPONSE)
            .map(str::as_bytes),
    )
    .unwrap()
    .expect("a settlement response")
}

#[tokio::test]
async fn a_paid_get_settles_once_and_its_replay_is_refused() {
    let facilitator = Facilitator::start().unwrap();
    let api = PaidApi::start(&facilitator.url).unwrap();
    let url = format!("{}/weather", api.url);
    let send = |headers: &[(&str, &str)]| {
        reference::http_request("GET", &url, headers, None, HTTP_TIMEOUT).unwrap()
    };

    let required = payment_required_of(&send(&[]));
    assert_eq!(required.version, X402Version::V2);
    let adapter = adapter();
    let terms = prepare(&adapter, &required);
    assert_eq!(terms.amount, 1000);
    assert_eq!(terms.network, "eip155:84532");

    let decided = Decided::new(adapter, terms, "GET", &url);
    let payment = decided.authorize().await;
    let header = payment.header_value();
    let paid = send(&[(payment.header_name(), &header)]);
    assert_eq!(paid.status, 200, "{}\n{}", paid.text(), api.stderr());
    assert_eq!(paid.json().unwrap()["report"]["weather"], "sunny");

    let settlement = settlement_of(&paid);
    assert!(settlement.success, "{settlement:?}");
    assert_eq!(settlement.network, "eip155:84532");
    assert_eq!(settlement.payer.as_deref(), Some(TEST_PAYER_ADDRESS));
    let tx = &settlement.transaction;
    assert!(
        tx.len() == 66 && tx.starts_with("0x") && tx[2..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{tx}"
    );
    let record = decided
        .adapter
        .report(&decided.ledger, decided.id(), &report_of(Some(&settlement)))
        .await
        .unwrap();
    assert_eq!(record.state, AttemptState::Settled);
    assert_eq!(record.reference.as_deref(), Some(tx.as_str()));

    let ours: Value = serde_json::from_str(&payment.payload_json).unwrap();
    let settled = facilitator.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(
        settled[0]["paymentPayload"]["payload"]["authorization"],
        ours["payload"]["authorization"]
    );
    assert_eq!(
        settled[0]["paymentPayload"]["payload"]["signature"],
        ours["payload"]["signature"]
    );
    assert_eq!(settled[0]["transaction"], tx.as_str());

    // The same header again: refused, and nothing more moves.
    let replay = send(&[(payment.header_name(), &header)]);
    assert_eq!(replay.status, 402, "{}", replay.text());
    assert_eq!(facilitator.settled().len(), 1);
}

#[tokio::test]
async fn a_paid_post_carries_our_payment_identifier() {
    let facilitator = Facilitator::start().unwrap();
    let api = PaidApi::start(&facilitator.url).unwrap();
    let url = format!("{}/report", api.url);
    let body = br#"{"title":"q3","rows":[1,2,3]}"#;
    let json_type = ("Content-Type", "application/json");

    let unpaid =
        reference::http_request("POST", &url, &[json_type], Some(body), HTTP_TIMEOUT).unwrap();
    let required = payment_required_of(&unpaid);
    assert_eq!(
        required.payment_identifier(),
        PaymentIdentifierSupport::Optional
    );
    let adapter = adapter();
    let terms = prepare(&adapter, &required);
    assert_eq!(terms.amount, 10_000);

    let decided = Decided::new(adapter, terms, "POST", &url);
    let payment = decided.authorize().await;
    let id = payment.payment_id.clone().expect("a payment id");
    assert!(id.starts_with("pay_"), "{id}");
    let ours: Value = serde_json::from_str(&payment.payload_json).unwrap();
    assert_eq!(ours["extensions"]["payment-identifier"]["info"]["id"], id);
    assert_eq!(decided.ledger.attempts()[0].idempotency_key, id);

    let header = payment.header_value();
    let paid = reference::http_request(
        "POST",
        &url,
        &[json_type, (payment.header_name(), &header)],
        Some(body),
        HTTP_TIMEOUT,
    )
    .unwrap();
    assert_eq!(paid.status, 200, "{}\n{}", paid.text(), api.stderr());
    let echoed = paid.json().unwrap();
    assert_eq!(echoed["sha256"], hex::encode(Digest::of(body).as_bytes()));
    assert!(settlement_of(&paid).success);

    let settled = facilitator.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(
        settled[0]["paymentPayload"]["extensions"]["payment-identifier"]["info"]["id"], id,
        "{}",
        settled[0]
    );
    assert_eq!(
        settled[0]["paymentPayload"]["payload"]["authorization"],
        ours["payload"]["authorization"]
    );
}
