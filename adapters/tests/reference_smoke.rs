//! The reference harness itself (`tests/support/reference.rs`, `tests/reference/`): the
//! reference facilitator rejects a bad payload for the right reason and accepts a good one,
//! the reference middleware asks for payment and settles a paid request, and the fault modes
//! produce what adapter tests will rely on. If these fail, no other reference-based test
//! means anything.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/reference.rs"]
mod reference;

use std::time::Duration;

use reference::{
    BASE_SEPOLIA_USDC, DEFAULT_PAY_TO, FACILITATOR_ADDRESS, Facilitator, PaidApi,
    TEST_PAYER_ADDRESS, decode_header_json, http_request, reference_sign, reference_verify,
};
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The `PaymentPayload` example of the x402 v2 specification (§5.2.1): a real signature by an
/// unknown key, for an authorization whose `validBefore` (1740672154) is long past.
fn spec_example() -> (Value, Value) {
    let requirements = json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "10000",
        "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
        "maxTimeoutSeconds": 60,
        "extra": { "name": "USDC", "version": "2" }
    });
    let payload = json!({
        "x402Version": 2,
        "resource": {
            "url": "https://api.example.com/premium-data",
            "description": "Access to premium market data",
            "mimeType": "application/json"
        },
        "accepted": requirements,
        "payload": {
            "signature": "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c",
            "authorization": {
                "from": "0x857b06519E91e3A54538791bDbb0E22373e36b66",
                "to": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
                "value": "10000",
                "validAfter": "1740672089",
                "validBefore": "1740672154",
                "nonce": "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
            }
        },
        "extensions": {}
    });
    (payload, requirements)
}

fn case(payload: &Value, requirements: &Value) -> Value {
    json!({ "paymentPayload": payload, "paymentRequirements": requirements })
}

fn get(url: &str, headers: &[(&str, &str)]) -> reference::HttpResponse {
    http_request("GET", url, headers, None, TIMEOUT).unwrap()
}

fn post_json(
    url: &str,
    body: &Value,
    timeout: Duration,
) -> Result<reference::HttpResponse, String> {
    let bytes = body.to_string();
    http_request(
        "POST",
        url,
        &[("Content-Type", "application/json")],
        Some(bytes.as_bytes()),
        timeout,
    )
}

/// The decoded `PAYMENT-REQUIRED` of an unpaid `GET <api>/weather`.
fn weather_payment_required(api: &PaidApi) -> Value {
    let response = get(&format!("{}/weather", api.url), &[]);
    assert_eq!(
        response.status,
        402,
        "{}\n{}",
        response.text(),
        api.stderr()
    );
    decode_header_json(
        response
            .header("PAYMENT-REQUIRED")
            .expect("PAYMENT-REQUIRED header"),
    )
    .unwrap()
}

/// A payment for `/weather` signed by the reference client with the test key.
fn signed_weather_payment(api: &PaidApi) -> Value {
    let required = weather_payment_required(api);
    reference_sign(&json!({ "paymentRequired": required })).unwrap()
}

#[test]
fn reference_rejects_the_spec_example_for_its_time_window() {
    let (payload, requirements) = spec_example();
    let results = reference_verify(&[case(&payload, &requirements)]).unwrap();
    let result = &results[0];
    assert_eq!(result["isValid"], false, "{result}");
    // The signature is genuine (the check before the time window passes) and the balance is
    // stubbed, so what fails is validBefore, long past.
    assert_eq!(
        result["invalidReason"], "invalid_exact_evm_payload_authorization_valid_before",
        "{result}"
    );
    assert_eq!(
        result["payer"],
        "0x857b06519E91e3A54538791bDbb0E22373e36b66"
    );
}

#[test]
fn reference_accepts_a_good_payload_and_rejects_altered_ones() {
    let requirements = json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "1000",
        "asset": BASE_SEPOLIA_USDC,
        "payTo": DEFAULT_PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": { "name": "USDC", "version": "2" }
    });
    let signed = reference_sign(&json!({ "paymentRequirements": requirements })).unwrap();
    assert_eq!(signed["address"], TEST_PAYER_ADDRESS);
    let good = signed["paymentPayload"].clone();

    // Same authorization, one field changed after signing: the signature no longer matches.
    let mut more = good.clone();
    more["payload"]["authorization"]["value"] = json!("1001");
    let more_requirements = {
        let mut r = requirements.clone();
        r["amount"] = json!("1001");
        r
    };
    // Well signed, but for a different amount than required.
    let underpaid = reference_sign(&json!({
        "paymentRequirements": requirements,
        "authorization": { "value": "999" }
    }))
    .unwrap()["paymentPayload"]
        .clone();
    // Well signed, but under the wrong EIP-712 domain name.
    let wrong_domain = reference_sign(&json!({
        "paymentRequirements": requirements,
        "domain": { "name": "USD Coin" }
    }))
    .unwrap()["paymentPayload"]
        .clone();

    let results = reference_verify(&[
        case(&good, &requirements),
        case(&more, &more_requirements),
        case(&underpaid, &requirements),
        case(&wrong_domain, &requirements),
        json!({ "paymentPayload": good, "paymentRequirements": requirements, "action": "settle" }),
        case(&good, &requirements),
    ])
    .unwrap();
    assert_eq!(results[0]["isValid"], true, "{}", results[0]);
    assert_eq!(results[0]["payer"], TEST_PAYER_ADDRESS);
    assert_eq!(results[1]["isValid"], false, "{}", results[1]);
    assert_eq!(results[1]["invalidReason"], "invalid_exact_evm_signature");
    assert_eq!(
        results[2]["invalidReason"], "invalid_exact_evm_payload_authorization_value_mismatch",
        "{}",
        results[2]
    );
    assert_eq!(
        results[3]["invalidReason"], "invalid_exact_evm_signature",
        "{}",
        results[3]
    );
    assert_eq!(results[4]["success"], true, "{}", results[4]);
    // Once settled, the nonce is spent: the simulated transfer reverts.
    assert_eq!(
        results[5]["invalidReason"], "invalid_exact_evm_nonce_already_used",
        "{}",
        results[5]
    );
}

#[test]
fn facilitator_lists_exact_on_base_sepolia() {
    let facilitator = Facilitator::start().unwrap();
    let response = get(&format!("{}/supported", facilitator.url), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let supported = response.json().unwrap();
    let kinds = supported["kinds"].as_array().unwrap();
    for (version, network) in [(2, "eip155:84532"), (2, "eip155:8453"), (1, "base-sepolia")] {
        assert!(
            kinds.iter().any(|k| k["x402Version"] == version
                && k["scheme"] == "exact"
                && k["network"] == network),
            "no exact v{version} on {network}: {supported}"
        );
    }
    assert_eq!(supported["signers"]["eip155:*"][0], FACILITATOR_ADDRESS);
}

#[test]
fn paid_api_asks_then_settles_through_the_reference_middleware() {
    let facilitator = Facilitator::start().unwrap();
    let api = PaidApi::start(&facilitator.url).unwrap();

    let free = get(&format!("{}/free", api.url), &[]);
    assert_eq!(free.status, 200, "{}", free.text());

    // Unpaid: 402 with the requirements in PAYMENT-REQUIRED.
    let required = weather_payment_required(&api);
    assert_eq!(required["x402Version"], 2, "{required}");
    let accepts = required["accepts"].as_array().unwrap();
    assert_eq!(accepts.len(), 1, "{required}");
    let accepted = &accepts[0];
    assert_eq!(accepted["scheme"], "exact");
    assert_eq!(accepted["network"], "eip155:84532");
    assert_eq!(accepted["amount"], "1000");
    assert_eq!(accepted["asset"], BASE_SEPOLIA_USDC);
    assert_eq!(accepted["payTo"], DEFAULT_PAY_TO);
    assert_eq!(accepted["extra"], json!({ "name": "USDC", "version": "2" }));

    // The reference client pays; the facilitator says valid.
    let signed = reference_sign(&json!({ "paymentRequired": required })).unwrap();
    let payload = signed["paymentPayload"].clone();
    let header = signed["header"].as_str().unwrap().to_string();
    let verdict = post_json(
        &format!("{}/verify", facilitator.url),
        &json!({ "x402Version": 2, "paymentPayload": payload, "paymentRequirements": accepted }),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(verdict.status, 200, "{}", verdict.text());
    assert_eq!(
        verdict.json().unwrap()["isValid"],
        true,
        "{}",
        verdict.text()
    );
    assert!(facilitator.settled().is_empty(), "verify must not settle");

    // Paid: 200, the handler's body, and PAYMENT-RESPONSE with the settlement.
    let paid = get(
        &format!("{}/weather", api.url),
        &[("PAYMENT-SIGNATURE", &header)],
    );
    assert_eq!(paid.status, 200, "{}\n{}", paid.text(), api.stderr());
    assert_eq!(paid.json().unwrap()["report"]["weather"], "sunny");
    let receipt =
        decode_header_json(paid.header("PAYMENT-RESPONSE").expect("PAYMENT-RESPONSE")).unwrap();
    assert_eq!(receipt["success"], true, "{receipt}");
    assert_eq!(receipt["network"], "eip155:84532");
    assert_eq!(receipt["payer"], TEST_PAYER_ADDRESS);

    let settled = facilitator.settled();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(settled[0]["paymentPayload"], payload);
    assert_eq!(settled[0]["paymentRequirements"], *accepted);
    assert_eq!(settled[0]["transaction"], receipt["transaction"]);
    let tx = settled[0]["transaction"].as_str().unwrap();
    assert!(tx.len() == 66 && tx.starts_with("0x"), "{tx}");

    // The same payment again: refused (nonce spent), nothing more settled.
    let replay = get(
        &format!("{}/weather", api.url),
        &[("PAYMENT-SIGNATURE", &header)],
    );
    assert_eq!(replay.status, 402, "{}", replay.text());
    let again = decode_header_json(replay.header("PAYMENT-REQUIRED").unwrap()).unwrap();
    assert_eq!(
        again["error"], "invalid_exact_evm_nonce_already_used",
        "{again}"
    );
    assert_eq!(facilitator.settled().len(), 1);
}

#[test]
fn report_route_advertises_payment_identifier_and_digests_the_body() {
    let facilitator = Facilitator::start().unwrap();
    let api = PaidApi::start(&facilitator.url).unwrap();
    let body = br#"{"title":"q3","rows":[1,2,3]}"#;
    let unpaid = http_request(
        "POST",
        &format!("{}/report", api.url),
        &[("Content-Type", "application/json")],
        Some(body),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(unpaid.status, 402, "{}", unpaid.text());
    let required = decode_header_json(unpaid.header("PAYMENT-REQUIRED").unwrap()).unwrap();
    assert_eq!(required["accepts"][0]["amount"], "10000", "{required}");
    assert_eq!(
        required["extensions"]["payment-identifier"]["info"]["required"], false,
        "{required}"
    );

    let signed = reference_sign(&json!({ "paymentRequired": required })).unwrap();
    let paid = http_request(
        "POST",
        &format!("{}/report", api.url),
        &[
            ("Content-Type", "application/json"),
            ("PAYMENT-SIGNATURE", signed["header"].as_str().unwrap()),
        ],
        Some(body),
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(paid.status, 200, "{}\n{}", paid.text(), api.stderr());
    let echoed = paid.json().unwrap();
    assert_eq!(echoed["length"], body.len());
    assert_eq!(echoed["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(facilitator.settled().len(), 1);
}

#[test]
fn settle_fault_modes() {
    let facilitator = Facilitator::start().unwrap();
    let api = PaidApi::start(&facilitator.url).unwrap();

    // fail: the settlement reverts; the middleware answers 402 with a failed PAYMENT-RESPONSE.
    facilitator.set_settle_mode("fail").unwrap();
    let signed = signed_weather_payment(&api);
    let header = signed["header"].as_str().unwrap();
    let failed = get(
        &format!("{}/weather", api.url),
        &[("PAYMENT-SIGNATURE", header)],
    );
    assert_eq!(failed.status, 402, "{}", failed.text());
    let receipt =
        decode_header_json(failed.header("PAYMENT-RESPONSE").expect("PAYMENT-RESPONSE")).unwrap();
    assert_eq!(receipt["success"], false, "{receipt}");
    assert_eq!(
        receipt["errorReason"], "invalid_exact_evm_transaction_failed",
        "{receipt}"
    );
    assert!(facilitator.settled().is_empty());

    // Back to ok: the very same authorization (its nonce was never spent) now settles.
    facilitator.set_settle_mode("ok").unwrap();
    let paid = get(
        &format!("{}/weather", api.url),
        &[("PAYMENT-SIGNATURE", header)],
    );
    assert_eq!(paid.status, 200, "{}", paid.text());
    assert_eq!(facilitator.settled().len(), 1);

    // hang: /settle never answers and nothing moves.
    facilitator.set_settle_mode("hang").unwrap();
    let next = signed_weather_payment(&api);
    let request = json!({
        "x402Version": 2,
        "paymentPayload": next["paymentPayload"],
        "paymentRequirements": next["paymentPayload"]["accepted"],
    });
    let hung = post_json(
        &format!("{}/settle", facilitator.url),
        &request,
        Duration::from_millis(700),
    );
    assert!(hung.is_err(), "{hung:?}");
    assert_eq!(facilitator.settled().len(), 1);

    // hang-after-settle: the money moves, the answer never comes.
    facilitator.set_settle_mode("hang-after-settle").unwrap();
    let hung = post_json(
        &format!("{}/settle", facilitator.url),
        &request,
        Duration::from_millis(700),
    );
    assert!(hung.is_err(), "{hung:?}");
    let settled = facilitator.settled();
    assert_eq!(settled.len(), 2, "{settled:?}");
    assert_eq!(settled[1]["paymentPayload"], next["paymentPayload"]);

    // error: HTTP 500 from the facilitator.
    facilitator.set_settle_mode("error").unwrap();
    let error = post_json(&format!("{}/settle", facilitator.url), &request, TIMEOUT).unwrap();
    assert_eq!(error.status, 500, "{}", error.text());
    assert!(facilitator.set_settle_mode("sometimes").is_err());
}

#[test]
fn header_codec_round_trips() {
    for input in ["", "f", "fo", "foo", "foob", "fooba", "foobar"] {
        let encoded = reference::base64_encode(input.as_bytes());
        assert_eq!(
            reference::base64_decode(&encoded).unwrap(),
            input.as_bytes()
        );
    }
    assert_eq!(reference::base64_encode(b"foobar"), "Zm9vYmFy");
    assert_eq!(reference::base64_encode(b"fo"), "Zm8=");
    assert!(reference::base64_decode("Zm9v!").is_err());
}
