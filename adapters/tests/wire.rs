//! Wire-format tests for `trustos_adapters::x402::wire`: the spec's own examples decode and
//! re-encode byte for byte, offered requirements are echoed verbatim, and every malformed input
//! is refused with its own reason code.

#![allow(clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Value, json};
use trustos_adapters::x402::wire::{
    self, ExactEvmAuthorization, ExactEvmPayload, PaymentIdentifierSupport, PaymentRequired,
    Requirement, SettlementResponse, WireError, X402Version, decode_header_json,
    encode_header_json, payment_identifier_extension, payment_payload_json,
    payment_required_from_http, payment_required_from_mcp_result, refuse_agent_payment_headers,
    refuse_agent_payment_meta, settlement_from_http, settlement_from_mcp_result,
};
use trustos_kernel::strict_json;

/// `PAYMENT-REQUIRED` example of transports-v2/http.md.
const SPEC_V2_PAYMENT_REQUIRED: &str = "eyJ4NDAyVmVyc2lvbiI6MiwiZXJyb3IiOiJQQVlNRU5ULVNJR05BVFVSRSBoZWFkZXIgaXMgcmVxdWlyZWQiLCJyZXNvdXJjZSI6eyJ1cmwiOiJodHRwczovL2FwaS5leGFtcGxlLmNvbS9wcmVtaXVtLWRhdGEiLCJkZXNjcmlwdGlvbiI6IkFjY2VzcyB0byBwcmVtaXVtIG1hcmtldCBkYXRhIiwibWltZVR5cGUiOiJhcHBsaWNhdGlvbi9qc29uIn0sImFjY2VwdHMiOlt7InNjaGVtZSI6ImV4YWN0IiwibmV0d29yayI6ImVpcDE1NTo4NDUzMiIsImFtb3VudCI6IjEwMDAwIiwiYXNzZXQiOiIweDAzNkNiRDUzODQyYzU0MjY2MzRlNzkyOTU0MWVDMjMxOGYzZENGN2UiLCJwYXlUbyI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsIm1heFRpbWVvdXRTZWNvbmRzIjo2MCwiZXh0cmEiOnsibmFtZSI6IlVTREMiLCJ2ZXJzaW9uIjoiMiJ9fV19";
/// `PAYMENT-SIGNATURE` example of transports-v2/http.md.
const SPEC_V2_PAYMENT_SIGNATURE: &str = "eyJ4NDAyVmVyc2lvbiI6MiwicmVzb3VyY2UiOnsidXJsIjoiaHR0cHM6Ly9hcGkuZXhhbXBsZS5jb20vcHJlbWl1bS1kYXRhIiwiZGVzY3JpcHRpb24iOiJBY2Nlc3MgdG8gcHJlbWl1bSBtYXJrZXQgZGF0YSIsIm1pbWVUeXBlIjoiYXBwbGljYXRpb24vanNvbiJ9LCJhY2NlcHRlZCI6eyJzY2hlbWUiOiJleGFjdCIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJhbW91bnQiOiIxMDAwMCIsImFzc2V0IjoiMHgwMzZDYkQ1Mzg0MmM1NDI2NjM0ZTc5Mjk1NDFlQzIzMThmM2RDRjdlIiwicGF5VG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJtYXhUaW1lb3V0U2Vjb25kcyI6NjAsImV4dHJhIjp7Im5hbWUiOiJVU0RDIiwidmVyc2lvbiI6IjIifX0sInBheWxvYWQiOnsic2lnbmF0dXJlIjoiMHgyZDZhNzU4OGQ2YWNjYTUwNWNiZjBkOWE0YTIyN2UwYzUyYzZjMzQwMDhjOGU4OTg2YTEyODMyNTk3NjQxNzM2MDhhMmNlNjQ5NjY0MmUzNzdkNmRhOGRiYmY1ODM2ZTliZDE1MDkyZjllY2FiMDVkZWQzZDYyOTNhZjE0OGI1NzFjIiwiYXV0aG9yaXphdGlvbiI6eyJmcm9tIjoiMHg4NTdiMDY1MTlFOTFlM0E1NDUzODc5MWJEYmIwRTIyMzczZTM2YjY2IiwidG8iOiIweDIwOTY5M0JjNmFmYzBDNTMyOGJBMzZGYUYwM0M1MTRFRjMxMjI4N0MiLCJ2YWx1ZSI6IjEwMDAwIiwidmFsaWRBZnRlciI6IjE3NDA2NzIwODkiLCJ2YWxpZEJlZm9yZSI6IjE3NDA2NzIxNTQiLCJub25jZSI6IjB4ZjM3NDY2MTNjMmQ5MjBiNWZkYWJjMDg1NmYyYWViMmQ0Zjg4ZWU2MDM3YjhjYzVkMDRhNzFhNDQ2MmYxMzQ4MCJ9fX0=";
/// `PAYMENT-RESPONSE` success example of transports-v2/http.md.
const SPEC_V2_PAYMENT_RESPONSE_OK: &str = "eyJzdWNjZXNzIjp0cnVlLCJ0cmFuc2FjdGlvbiI6IjB4MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWYxMjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2RlZiIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";
/// `PAYMENT-RESPONSE` failure example of transports-v2/http.md.
const SPEC_V2_PAYMENT_RESPONSE_FAILED: &str = "eyJzdWNjZXNzIjpmYWxzZSwiZXJyb3JSZWFzb24iOiJpbnN1ZmZpY2llbnRfZnVuZHMiLCJ0cmFuc2FjdGlvbiI6IiIsIm5ldHdvcmsiOiJlaXAxNTU6ODQ1MzIiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";
/// `X-PAYMENT` example of transports-v1/http.md.
const SPEC_V1_X_PAYMENT: &str = "eyJ4NDAyVmVyc2lvbiI6MSwic2NoZW1lIjoiZXhhY3QiLCJuZXR3b3JrIjoiYmFzZS1zZXBvbGlhIiwicGF5bG9hZCI6eyJzaWduYXR1cmUiOiIweDJkNmE3NTg4ZDZhY2NhNTA1Y2JmMGQ5YTRhMjI3ZTBjNTJjNmMzNDAwOGM4ZTg5ODZhMTI4MzI1OTc2NDE3MzYwOGEyY2U2NDk2NjQyZTM3N2Q2ZGE4ZGJiZjU4MzZlOWJkMTUwOTJmOWVjYWIwNWRlZDNkNjI5M2FmMTQ4YjU3MWMiLCJhdXRob3JpemF0aW9uIjp7ImZyb20iOiIweDg1N2IwNjUxOUU5MWUzQTU0NTM4NzkxYkRiYjBFMjIzNzNlMzZiNjYiLCJ0byI6IjB4MjA5NjkzQmM2YWZjMEM1MzI4YkEzNkZhRjAzQzUxNEVGMzEyMjg3QyIsInZhbHVlIjoiMTAwMDAiLCJ2YWxpZEFmdGVyIjoiMTc0MDY3MjA4OSIsInZhbGlkQmVmb3JlIjoiMTc0MDY3MjE1NCIsIm5vbmNlIjoiMHhmMzc0NjYxM2MyZDkyMGI1ZmRhYmMwODU2ZjJhZWIyZDRmODhlZTYwMzdiOGNjNWQwNGE3MWE0NDYyZjEzNDgwIn19fQ==";
/// `X-PAYMENT-RESPONSE` success example of transports-v1/http.md.
const SPEC_V1_X_PAYMENT_RESPONSE_OK: &str = "eyJzdWNjZXNzIjp0cnVlLCJ0cmFuc2FjdGlvbiI6IjB4MTIzNDU2Nzg5MGFiY2RlZjEyMzQ1Njc4OTBhYmNkZWYxMjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2RlZiIsIm5ldHdvcmsiOiJiYXNlLXNlcG9saWEiLCJwYXllciI6IjB4ODU3YjA2NTE5RTkxZTNBNTQ1Mzg3OTFiRGJiMEUyMjM3M2UzNmI2NiJ9";

/// The v1 402 body example of transports-v1/http.md, as printed there.
const SPEC_V1_BODY: &str = r#"{
  "x402Version": 1,
  "error": "Payment required to access this resource",
  "accepts": [
    {
      "scheme": "exact",
      "network": "base-sepolia",
      "maxAmountRequired": "10000",
      "asset": "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
      "payTo": "0x209693Bc6afc0C5328bA36FaF03C514EF312287C",
      "resource": "https://api.example.com/premium-data",
      "description": "Access to premium market data",
      "mimeType": "application/json",
      "outputSchema": null,
      "maxTimeoutSeconds": 60,
      "extra": {
        "name": "USDC",
        "version": "2"
      }
    }
  ]
}"#;

const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
const SPEC_PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const SPEC_PAYER: &str = "0x857b06519E91e3A54538791bDbb0E22373e36b66";
const SPEC_TX: &str = "0x1234567890abcdef1234567890abcdef1234567890abcdef1234567890abcdef";

/// The offer of the v2 examples, compact, as the spec's header carries it.
const SPEC_V2_OFFER: &str = r#"{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}"#;
/// The ResourceInfo of the v2 HTTP examples, compact.
const SPEC_V2_RESOURCE: &str = r#"{"url":"https://api.example.com/premium-data","description":"Access to premium market data","mimeType":"application/json"}"#;

/// A well-formed v2 offer used as the base of the malformed-input cases.
const GOOD_OFFER: &str = r#"{"scheme":"exact","network":"eip155:84532","amount":"10000","asset":"0xA","payTo":"0xB","maxTimeoutSeconds":60}"#;

/// The payment of the spec examples (signature and EIP-3009 authorization).
fn spec_payload() -> ExactEvmPayload {
    ExactEvmPayload {
        signature: "0x2d6a7588d6acca505cbf0d9a4a227e0c52c6c34008c8e8986a1283259764173608a2ce6496642e377d6da8dbbf5836e9bd15092f9ecab05ded3d6293af148b571c".to_owned(),
        authorization: ExactEvmAuthorization {
            from: SPEC_PAYER.to_owned(),
            to: SPEC_PAY_TO.to_owned(),
            value: "10000".to_owned(),
            valid_after: "1740672089".to_owned(),
            valid_before: "1740672154".to_owned(),
            nonce: "0xf3746613c2d920b5fdabc0856f2aeb2d4f88ee6037b8cc5d04a71a4462f13480"
                .to_owned(),
        },
    }
}

/// Asserts that `result` is the error with reason code `code`, and that `code` is listed.
#[track_caller]
fn expect_code<T: std::fmt::Debug>(result: Result<T, WireError>, code: &str) {
    expect_case_code("", result, code);
}

/// [`expect_code`] for one case of a table, named by `case` in any failure.
#[track_caller]
fn expect_case_code<T: std::fmt::Debug>(case: &str, result: Result<T, WireError>, code: &str) {
    match result {
        Ok(value) => panic!("{case}: expected {code}, got Ok({value:?})"),
        Err(err) => {
            assert_eq!(err.reason_code(), code, "{case}: error: {err}");
            assert!(!err.to_string().is_empty());
        }
    }
    assert!(
        wire::all_reason_codes().contains(&code),
        "{code} is missing from all_reason_codes()"
    );
}

/// The payment request carried by a v2 header whose JSON is `json`.
fn from_v2_header(json: &str) -> Result<PaymentRequired, WireError> {
    let header = encode_header_json(json.as_bytes());
    payment_required_from_http(Some(header.as_bytes()), b"{}")
}

/// A v2 payment request offering exactly `offer` (JSON text).
fn v2_with_offer(offer: &str) -> String {
    format!(
        r#"{{"x402Version":2,"resource":{{"url":"https://api.example.com/x"}},"accepts":[{offer}]}}"#
    )
}

/// A v1 body offering exactly `offer` (JSON text).
fn v1_with_offer(offer: &str) -> String {
    format!(r#"{{"x402Version":1,"error":"pay","accepts":[{offer}]}}"#)
}

/// [`GOOD_OFFER`] with `field` replaced by the JSON text `value` (or removed when `None`).
fn offer_with(field: &str, value: Option<&str>) -> String {
    let mut offer: serde_json::Map<String, Value> =
        serde_json::from_str(GOOD_OFFER).expect("GOOD_OFFER is JSON");
    match value {
        Some(text) => {
            offer.insert(field.to_owned(), serde_json::from_str(text).expect("JSON"));
        }
        None => {
            offer.remove(field);
        }
    }
    Value::Object(offer).to_string()
}

/// Asserts `required` is a v2 request saying `error` about `resource_url`.
#[track_caller]
fn assert_request(required: &PaymentRequired, error: &str, resource_url: &str) {
    assert_eq!(required.version, X402Version::V2);
    assert_eq!(required.error.as_deref(), Some(error));
    assert_eq!(required.resource_url.as_deref(), Some(resource_url));
}

/// Asserts `offer` is the spec examples' offer (on `network`, as the version names it).
#[track_caller]
fn assert_spec_offer(offer: &Requirement, network: &str) {
    assert_eq!(offer.scheme, "exact");
    assert_eq!(offer.network, network);
    assert_eq!(offer.amount, "10000");
    assert_eq!(offer.asset, USDC_BASE_SEPOLIA);
    assert_eq!(offer.pay_to, SPEC_PAY_TO);
    assert_eq!(offer.max_timeout_seconds, 60);
    assert_eq!(offer.extra, Some(json!({"name": "USDC", "version": "2"})));
}

fn strict(json: &str) -> Value {
    strict_json::parse(json.as_bytes()).expect("strict JSON")
}

// ---------------------------------------------------------------------------------------------
// The spec's own examples
// ---------------------------------------------------------------------------------------------

#[test]
fn spec_v2_payment_required_header_decodes() {
    let required = payment_required_from_http(Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()), b"{}")
        .expect("spec example parses");
    assert_eq!(required.version.number(), 2);
    assert_request(
        &required,
        "PAYMENT-SIGNATURE header is required",
        "https://api.example.com/premium-data",
    );
    assert_eq!(
        required.resource.as_ref().map(|raw| raw.get()),
        Some(SPEC_V2_RESOURCE)
    );
    assert_eq!(required.extensions, None);
    assert_eq!(
        required.payment_identifier(),
        PaymentIdentifierSupport::NotOffered
    );
    assert_eq!(required.accepts.len(), 1);
    let offer = &required.accepts[0];
    assert_spec_offer(offer, "eip155:84532");
    assert_eq!(offer.resource, None);
    assert_eq!(offer.raw().get(), SPEC_V2_OFFER);
}

#[test]
fn spec_v2_payment_signature_header_decodes() {
    let json = decode_header_json(SPEC_V2_PAYMENT_SIGNATURE.as_bytes()).expect("base64");
    let value = strict_json::parse(&json).expect("strict JSON");
    assert_eq!(value["x402Version"], 2);
    assert_eq!(
        value["resource"]["url"],
        "https://api.example.com/premium-data"
    );
    assert_eq!(value["accepted"], strict(SPEC_V2_OFFER));
    let payload: ExactEvmPayload =
        serde_json::from_value(value["payload"].clone()).expect("exact EVM payload");
    assert_eq!(payload, spec_payload());
}

#[test]
fn spec_v2_payment_signature_is_reproduced_byte_for_byte() {
    let required = payment_required_from_http(Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()), b"")
        .expect("spec example parses");
    let json = payment_payload_json(&required, &required.accepts[0], &spec_payload(), None)
        .expect("payload");
    let spec_json = decode_header_json(SPEC_V2_PAYMENT_SIGNATURE.as_bytes()).expect("base64");
    assert_eq!(json.as_bytes(), spec_json.as_slice());
    assert_eq!(
        encode_header_json(json.as_bytes()),
        SPEC_V2_PAYMENT_SIGNATURE
    );
}

#[test]
fn spec_v2_payment_response_headers_decode() {
    let ok = settlement_from_http(Some(SPEC_V2_PAYMENT_RESPONSE_OK.as_bytes()), None)
        .expect("parses")
        .expect("present");
    assert_eq!(
        ok,
        SettlementResponse {
            success: true,
            error_reason: None,
            payer: Some(SPEC_PAYER.to_owned()),
            transaction: SPEC_TX.to_owned(),
            network: "eip155:84532".to_owned(),
            amount: None,
            extensions: None,
        }
    );
    let failed = settlement_from_http(Some(SPEC_V2_PAYMENT_RESPONSE_FAILED.as_bytes()), None)
        .expect("parses")
        .expect("present");
    assert!(!failed.success);
    assert_eq!(failed.error_reason.as_deref(), Some("insufficient_funds"));
    assert_eq!(failed.transaction, "");
    assert_eq!(failed.network, "eip155:84532");
    assert_eq!(failed.payer.as_deref(), Some(SPEC_PAYER));
}

#[test]
fn spec_v1_body_parses_and_x_payment_is_reproduced() {
    let required =
        payment_required_from_http(None, SPEC_V1_BODY.as_bytes()).expect("spec v1 body parses");
    assert_eq!(required.version, X402Version::V1);
    assert_eq!(required.version.number(), 1);
    assert_eq!(
        required.error.as_deref(),
        Some("Payment required to access this resource")
    );
    assert!(required.resource.is_none());
    assert_eq!(required.resource_url, None);
    assert_eq!(required.extensions, None);
    assert_eq!(
        required.payment_identifier(),
        PaymentIdentifierSupport::NotOffered
    );
    let offer = &required.accepts[0];
    assert_spec_offer(offer, "base-sepolia");
    assert_eq!(
        offer.resource.as_deref(),
        Some("https://api.example.com/premium-data")
    );
    // The raw text is the offer as printed, indentation included.
    assert!(
        offer
            .raw()
            .get()
            .starts_with("{\n      \"scheme\": \"exact\",")
    );
    assert!(offer.raw().get().ends_with("}\n    }"));

    let json = payment_payload_json(&required, offer, &spec_payload(), None).expect("payload");
    let spec_json = decode_header_json(SPEC_V1_X_PAYMENT.as_bytes()).expect("base64");
    assert_eq!(json.as_bytes(), spec_json.as_slice());
    assert_eq!(encode_header_json(json.as_bytes()), SPEC_V1_X_PAYMENT);
}

#[test]
fn spec_v1_x_payment_response_decodes() {
    let ok = settlement_from_http(None, Some(SPEC_V1_X_PAYMENT_RESPONSE_OK.as_bytes()))
        .expect("parses")
        .expect("present");
    assert!(ok.success);
    assert_eq!(ok.network, "base-sepolia");
    assert_eq!(ok.transaction, SPEC_TX);
    assert_eq!(ok.payer.as_deref(), Some(SPEC_PAYER));
}

// ---------------------------------------------------------------------------------------------
// `accepted` and `resource` are echoed verbatim
// ---------------------------------------------------------------------------------------------

#[test]
fn accepted_and_resource_are_the_original_bytes() {
    let resource = r#"{ "mimeType" :"application/json",  "url":"https://api.example.com/x?q=1", "tags":[1, 2.50, null] }"#;
    let first = GOOD_OFFER;
    let chosen = "{\n\t\"extra\" : {\"version\":\"2\",\"name\":\"USD Coin\", \"unused\": null},\n  \"maxTimeoutSeconds\":300,\"payTo\":\"0xB\",\"asset\":\"0xA\",\n  \"amount\":\"1\",\"network\":\"eip155:8453\",\"scheme\":\"exact\",\n  \"futureField\": {\"nested\": [true, false, 1.5e3, \"\\u00e9\\/\"]}, \"description\": null\n}";
    let json = format!(
        r#"{{ "accepts" : [ {first} , {chosen} ], "x402Version" : 2, "resource" : {resource}, "somethingNew": {{}} }}"#
    );
    let required = from_v2_header(&json).expect("parses");
    assert_eq!(required.accepts.len(), 2);
    let offer = &required.accepts[1];
    assert_eq!(offer.raw().get(), chosen);
    assert_eq!(offer.amount, "1");
    assert_eq!(offer.network, "eip155:8453");
    assert_eq!(offer.max_timeout_seconds, 300);
    assert_eq!(
        offer.extra,
        Some(json!({"version": "2", "name": "USD Coin", "unused": null}))
    );
    assert_eq!(
        required.resource_url.as_deref(),
        Some("https://api.example.com/x?q=1")
    );

    let payload = spec_payload();
    let out = payment_payload_json(&required, offer, &payload, None).expect("payload");
    let payload_json = serde_json::to_string(&payload).expect("serializes");
    assert_eq!(
        out,
        format!(
            r#"{{"x402Version":2,"resource":{resource},"accepted":{chosen},"payload":{payload_json}}}"#
        )
    );
    // And it is strict JSON whose `accepted` is the chosen offer, unknown fields included.
    let value = strict(&out);
    assert_eq!(value["accepted"]["futureField"]["nested"][3], "é/");
    assert_eq!(value["accepted"]["description"], Value::Null);
    assert_eq!(value["accepted"], strict(chosen));
    assert_eq!(value["resource"], strict(resource));
}

#[test]
fn chosen_requirement_must_be_offered() {
    let one = from_v2_header(&v2_with_offer(GOOD_OFFER)).expect("parses");
    let other =
        from_v2_header(&v2_with_offer(&offer_with("amount", Some(r#""20000""#)))).expect("parses");
    expect_code(
        payment_payload_json(&one, &other.accepts[0], &spec_payload(), None),
        "X402_REQUIREMENT_NOT_OFFERED",
    );
}

// ---------------------------------------------------------------------------------------------
// MCP transport
// ---------------------------------------------------------------------------------------------

/// The `resource` of the spec's MCP examples (transports-v2/mcp.md).
fn spec_mcp_resource() -> Value {
    json!({
        "url": "mcp://tool/financial_analysis",
        "description": "Advanced financial analysis tool",
        "mimeType": "application/json"
    })
}

/// The offer of the spec's MCP examples.
fn spec_mcp_offer() -> Value {
    json!({
        "scheme": "exact",
        "network": "eip155:84532",
        "amount": "10000",
        "asset": USDC_BASE_SEPOLIA,
        "payTo": SPEC_PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"name": "USDC", "version": "2"}
    })
}

/// The spec's payment required tool result (transports-v2/mcp.md), the `result` member.
fn spec_mcp_result() -> Value {
    json!({
        "isError": true,
        "structuredContent": {
            "x402Version": 2,
            "error": "Payment required to access this resource",
            "resource": spec_mcp_resource(),
            "accepts": [spec_mcp_offer()]
        },
        "content": [{
            "type": "text",
            "text": "{\"x402Version\":2,\"error\":\"Payment required to access this resource\",\"resource\":{\"url\":\"mcp://tool/financial_analysis\",\"description\":\"Advanced financial analysis tool\",\"mimeType\":\"application/json\"},\"accepts\":[{\"scheme\":\"exact\",\"network\":\"eip155:84532\",\"amount\":\"10000\",\"asset\":\"0x036CbD53842c5426634e7929541eC2318f3dCF7e\",\"payTo\":\"0x209693Bc6afc0C5328bA36FaF03C514EF312287C\",\"maxTimeoutSeconds\":60,\"extra\":{\"name\":\"USDC\",\"version\":\"2\"}}]}"
        }]
    })
}

#[test]
fn mcp_structured_content_is_read_and_payment_matches_spec_meta() {
    let result = spec_mcp_result();
    let required = payment_required_from_mcp_result(&result)
        .expect("parses")
        .expect("is a payment request");
    assert_request(
        &required,
        "Payment required to access this resource",
        "mcp://tool/financial_analysis",
    );
    let offer = &required.accepts[0];
    assert_eq!(offer.amount, "10000");
    assert_eq!(offer.network, "eip155:84532");
    assert_eq!(
        serde_json::from_str::<Value>(offer.raw().get()).expect("JSON"),
        result["structuredContent"]["accepts"][0]
    );

    // The retry's `_meta["x402/payment"]` of the spec, as a value.
    let spec_meta_payment = json!({
        "x402Version": 2,
        "resource": spec_mcp_resource(),
        "accepted": spec_mcp_offer(),
        "payload": serde_json::to_value(spec_payload()).expect("serializes")
    });
    let json = payment_payload_json(&required, offer, &spec_payload(), None).expect("payload");
    assert_eq!(strict(&json), spec_meta_payment);
}

#[test]
fn mcp_content_text_fallback_keeps_original_bytes() {
    let offer = r#"{"scheme":"exact", "network":"eip155:84532","amount":"10000","asset":"0xA","payTo":"0xB","maxTimeoutSeconds":60, "zeta":[1,2]}"#;
    let text =
        format!(r#"{{"x402Version":2,"resource":{{"url":"mcp://tool/t"}},"accepts":[ {offer} ]}}"#);
    for structured in [None, Some(json!({"note": "not the payment request"}))] {
        let mut result = json!({"isError": true, "content": [{"type": "text", "text": text}]});
        if let Some(structured) = structured {
            result["structuredContent"] = structured;
        }
        let required = payment_required_from_mcp_result(&result)
            .expect("parses")
            .expect("is a payment request");
        assert_eq!(required.accepts[0].raw().get(), offer);
        assert_eq!(
            required.resource.as_ref().map(|r| r.get()),
            Some(r#"{"url":"mcp://tool/t"}"#)
        );
    }
}

#[test]
fn mcp_results_that_are_not_payment_requests() {
    let mut not_error = spec_mcp_result();
    not_error["isError"] = json!(false);
    assert!(
        payment_required_from_mcp_result(&not_error)
            .expect("ok")
            .is_none()
    );
    let mut string_true = spec_mcp_result();
    string_true["isError"] = json!("true");
    assert!(
        payment_required_from_mcp_result(&string_true)
            .expect("ok")
            .is_none()
    );
    let mut no_flag = spec_mcp_result();
    no_flag.as_object_mut().expect("object").remove("isError");
    assert!(
        payment_required_from_mcp_result(&no_flag)
            .expect("ok")
            .is_none()
    );

    for result in [
        json!({"isError": true, "content": [{"type": "text", "text": "Tool failed: timeout"}]}),
        json!({"isError": true, "content": [{"type": "text", "text": "{\"message\":\"x\"}"}]}),
        json!({"isError": true, "content": [{"type": "text", "text": "{\"x402Version\":2}"}]}),
        json!({"isError": true, "content": []}),
        json!({"isError": true, "content": [{"type": "image", "data": "", "mimeType": "image/png"}]}),
        json!({"isError": true}),
        json!("not an object"),
    ] {
        assert!(
            payment_required_from_mcp_result(&result)
                .expect("ok")
                .is_none(),
            "{result}"
        );
    }
}

#[test]
fn mcp_claimed_but_malformed_payment_requests_are_errors() {
    let mut empty = spec_mcp_result();
    empty["structuredContent"]["accepts"] = json!([]);
    expect_code(
        payment_required_from_mcp_result(&empty),
        "X402_NO_REQUIREMENTS",
    );

    let mut bad_amount = spec_mcp_result();
    bad_amount["structuredContent"]["accepts"][0]["amount"] = json!("1.5");
    expect_code(
        payment_required_from_mcp_result(&bad_amount),
        "X402_AMOUNT_NOT_INTEGER",
    );

    let duplicate = json!({"isError": true, "content": [{"type": "text",
        "text": v2_with_offer(GOOD_OFFER).replacen("\"x402Version\":2", "\"x402Version\":1,\"x402Version\":2", 1)}]});
    expect_code(
        payment_required_from_mcp_result(&duplicate),
        "X402_JSON_DUPLICATE_KEY",
    );

    let v3 = json!({"isError": true, "content": [{"type": "text",
        "text": v2_with_offer(GOOD_OFFER).replace("\"x402Version\":2", "\"x402Version\":3")}]});
    expect_code(
        payment_required_from_mcp_result(&v3),
        "X402_VERSION_UNSUPPORTED",
    );
}

#[test]
fn mcp_v1_payment_request_is_read() {
    let result = json!({"isError": true, "structuredContent": strict(SPEC_V1_BODY)});
    let required = payment_required_from_mcp_result(&result)
        .expect("parses")
        .expect("is a payment request");
    assert_eq!(required.version, X402Version::V1);
    assert_eq!(required.accepts[0].network, "base-sepolia");
}

#[test]
fn mcp_settlement_is_read_from_result_meta() {
    let result = json!({
        "content": [{"type": "text", "text": "Financial analysis for AAPL"}],
        "_meta": {"x402/payment-response": {
            "success": true,
            "transaction": SPEC_TX,
            "network": "eip155:84532",
            "payer": SPEC_PAYER
        }}
    });
    let settlement = settlement_from_mcp_result(&result)
        .expect("parses")
        .expect("present");
    assert!(settlement.success);
    assert_eq!(settlement.transaction, SPEC_TX);
    assert_eq!(settlement.payer.as_deref(), Some(SPEC_PAYER));

    assert_eq!(
        settlement_from_mcp_result(&json!({"content": []})).expect("ok"),
        None
    );
    assert_eq!(
        settlement_from_mcp_result(&json!({"_meta": {"progressToken": 1}})).expect("ok"),
        None
    );
    expect_code(
        settlement_from_mcp_result(
            &json!({"_meta": {"x402/payment-response": {"success": "yes", "transaction": "", "network": "n"}}}),
        ),
        "X402_SETTLEMENT_MALFORMED",
    );
    expect_code(
        settlement_from_mcp_result(&json!({"_meta": {"x402/payment-response": "ok"}})),
        "X402_SETTLEMENT_MALFORMED",
    );
}

// ---------------------------------------------------------------------------------------------
// Header encoding
// ---------------------------------------------------------------------------------------------

#[test]
fn header_base64_defects_have_their_own_codes() {
    // A valid header containing '/', then written with the URL-safe alphabet.
    let json = v2_with_offer(GOOD_OFFER).replace("https://api.example.com/x", "https://a/???");
    let standard = encode_header_json(json.as_bytes());
    assert!(standard.contains('/'));
    assert!(from_v2_header(&json).is_ok());
    for url_safe in [standard.replace('/', "_"), standard.replace('/', "-")] {
        expect_code(
            decode_header_json(url_safe.as_bytes()),
            "X402_HEADER_URL_SAFE_BASE64",
        );
        expect_code(
            payment_required_from_http(Some(url_safe.as_bytes()), b""),
            "X402_HEADER_URL_SAFE_BASE64",
        );
    }

    // Unpadded: the spec's PAYMENT-SIGNATURE ends in one `=`; a 2-byte value in two.
    assert!(SPEC_V2_PAYMENT_SIGNATURE.ends_with("fX0="));
    let unpadded = SPEC_V2_PAYMENT_SIGNATURE.trim_end_matches('=');
    expect_code(
        decode_header_json(unpadded.as_bytes()),
        "X402_HEADER_BASE64_UNPADDED",
    );
    expect_code(decode_header_json(b"e30"), "X402_HEADER_BASE64_UNPADDED");
    assert_eq!(decode_header_json(b"e30=").expect("padded"), b"{}");

    let middle = SPEC_V2_PAYMENT_REQUIRED.len() / 2;
    for spaced in [
        format!(
            "{} {}",
            &SPEC_V2_PAYMENT_REQUIRED[..middle],
            &SPEC_V2_PAYMENT_REQUIRED[middle..]
        ),
        format!(" {SPEC_V2_PAYMENT_REQUIRED}"),
        format!("{SPEC_V2_PAYMENT_REQUIRED}\r\n"),
        format!(
            "{}\t{}",
            &SPEC_V2_PAYMENT_REQUIRED[..4],
            &SPEC_V2_PAYMENT_REQUIRED[4..]
        ),
    ] {
        expect_code(
            decode_header_json(spaced.as_bytes()),
            "X402_HEADER_WHITESPACE",
        );
    }

    // Non-canonical: bits beyond the data in the last symbol.
    let trailing = "X402_HEADER_BASE64_TRAILING_BITS";
    let other = "X402_HEADER_BASE64";
    for (bad, code) in [
        ("e31=", trailing),
        ("AB==", trailing),
        ("e3*=", other),
        ("e3=0", other),
        ("AAAAA", other),
        ("A===", other),
        ("e30==", other),
        ("é30=", other),
        ("", "X402_HEADER_EMPTY"),
    ] {
        expect_case_code(bad, decode_header_json(bad.as_bytes()), code);
    }
}

#[test]
fn header_size_is_bounded() {
    let too_long = vec![b'A'; wire::MAX_HEADER_BASE64_BYTES + 4];
    expect_code(decode_header_json(&too_long), "X402_HEADER_TOO_LARGE");
    // Within the text bound, but decoding to one byte more than allowed.
    let over = encode_header_json(&vec![b' '; wire::MAX_HEADER_JSON_BYTES + 1]);
    assert!(over.len() <= wire::MAX_HEADER_BASE64_BYTES);
    expect_code(decode_header_json(over.as_bytes()), "X402_HEADER_TOO_LARGE");
    let at_limit = vec![b' '; wire::MAX_HEADER_JSON_BYTES];
    assert_eq!(
        decode_header_json(encode_header_json(&at_limit).as_bytes()).expect("at the limit"),
        at_limit
    );
}

#[test]
fn header_round_trips_of_spec_json() {
    for header in [
        SPEC_V2_PAYMENT_REQUIRED,
        SPEC_V2_PAYMENT_SIGNATURE,
        SPEC_V2_PAYMENT_RESPONSE_OK,
        SPEC_V2_PAYMENT_RESPONSE_FAILED,
        SPEC_V1_X_PAYMENT,
        SPEC_V1_X_PAYMENT_RESPONSE_OK,
    ] {
        let json = decode_header_json(header.as_bytes()).expect("decodes");
        assert!(strict_json::parse(&json).is_ok());
        assert_eq!(encode_header_json(&json), header);
    }
}

proptest! {
    #[test]
    fn header_round_trip(bytes in proptest::collection::vec(any::<u8>(), 1..2048)) {
        let encoded = encode_header_json(&bytes);
        prop_assert!(encoded.len().is_multiple_of(4));
        prop_assert_eq!(decode_header_json(encoded.as_bytes()).ok(), Some(bytes));
    }

    #[test]
    fn unpadded_encodings_are_refused(bytes in proptest::collection::vec(any::<u8>(), 1..512)) {
        prop_assume!(!bytes.len().is_multiple_of(3));
        let encoded = encode_header_json(&bytes);
        let unpadded = encoded.trim_end_matches('=');
        let code = decode_header_json(unpadded.as_bytes()).map_err(|e| e.reason_code());
        prop_assert_eq!(code, Err("X402_HEADER_BASE64_UNPADDED"));
    }
}

// ---------------------------------------------------------------------------------------------
// Malformed payment requests
// ---------------------------------------------------------------------------------------------

#[test]
fn non_json_and_ambiguous_json_are_refused() {
    expect_code(from_v2_header("not json"), "X402_MALFORMED_JSON");
    expect_code(
        from_v2_header(&format!("{} x", v2_with_offer(GOOD_OFFER))),
        "X402_MALFORMED_JSON",
    );
    expect_code(
        from_v2_header(&format!("\u{feff}{}", v2_with_offer(GOOD_OFFER))),
        "X402_MALFORMED_JSON",
    );
    let top_duplicate = v2_with_offer(GOOD_OFFER).replacen(
        "\"x402Version\":2",
        "\"x402Version\":2,\"x402Version\":2",
        1,
    );
    expect_code(from_v2_header(&top_duplicate), "X402_JSON_DUPLICATE_KEY");
    let nested_duplicate = v2_with_offer(&GOOD_OFFER.replace(
        "\"amount\":\"10000\"",
        "\"amount\":\"10000\",\"amount\":\"1\"",
    ));
    expect_code(from_v2_header(&nested_duplicate), "X402_JSON_DUPLICATE_KEY");
    let huge = v2_with_offer(&offer_with("maxTimeoutSeconds", Some("9007199254740993")));
    expect_code(from_v2_header(&huge), "X402_JSON_INTEGER_OUT_OF_RANGE");
    expect_code(payment_required_from_http(None, b""), "X402_MALFORMED_JSON");
    expect_code(
        payment_required_from_http(None, b"<html>402</html>"),
        "X402_MALFORMED_JSON",
    );
}

#[test]
fn versions_are_checked() {
    let v2 = v2_with_offer(GOOD_OFFER);
    for version in ["3", "\"2\"", "2.5"] {
        let other = v2.replace("\"x402Version\":2", &format!("\"x402Version\":{version}"));
        expect_case_code(version, from_v2_header(&other), "X402_VERSION_UNSUPPORTED");
    }
    expect_code(
        from_v2_header(&v2.replace("\"x402Version\":2,", "")),
        "X402_VERSION_MISSING",
    );
    // A v1 object in the v2 header.
    expect_code(from_v2_header(SPEC_V1_BODY), "X402_VERSION_CONFLICT");
    // A v2 header with a body claiming v1.
    expect_code(
        payment_required_from_http(
            Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()),
            SPEC_V1_BODY.as_bytes(),
        ),
        "X402_VERSION_CONFLICT",
    );
    expect_code(
        payment_required_from_http(
            Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()),
            br#"{"x402Version":1}"#,
        ),
        "X402_VERSION_CONFLICT",
    );
    // A body that hides a version claim behind a duplicate key is refused too.
    expect_code(
        payment_required_from_http(
            Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()),
            br#"{"x402Version":1,"x402Version":2}"#,
        ),
        "X402_JSON_DUPLICATE_KEY",
    );
    // Bodies that are the server's own business are ignored.
    for body in [
        &b""[..],
        b"  \n",
        b"{}",
        b"<html>Payment Required</html>",
        b"{\"data\":{\"a\":1,\"a\":2}}",
        b"{\"x402Version\":2,\"accepts\":[]}",
    ] {
        assert!(
            payment_required_from_http(Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()), body).is_ok(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // v2 travels in the header only.
    expect_code(
        payment_required_from_http(None, v2.as_bytes()),
        "X402_V2_REQUIRES_HEADER",
    );
    expect_code(
        payment_required_from_http(None, br#"{"error":"pay"}"#),
        "X402_VERSION_MISSING",
    );
}

#[test]
fn payment_request_envelope_is_checked() {
    let cases: [(String, &str); 9] = [
        (r#"[1,2]"#.to_owned(), "X402_PAYMENT_REQUIRED_MALFORMED"),
        (
            r#"{"x402Version":2,"resource":{"url":"u"}}"#.to_owned(),
            "X402_PAYMENT_REQUIRED_MALFORMED",
        ),
        (
            r#"{"x402Version":2,"resource":{"url":"u"},"accepts":{}}"#.to_owned(),
            "X402_PAYMENT_REQUIRED_MALFORMED",
        ),
        (
            v2_with_offer(GOOD_OFFER).replacen("{", r#"{"error":402,"#, 1),
            "X402_PAYMENT_REQUIRED_MALFORMED",
        ),
        (
            format!(r#"{{"x402Version":2,"accepts":[{GOOD_OFFER}]}}"#),
            "X402_RESOURCE_MALFORMED",
        ),
        (
            format!(r#"{{"x402Version":2,"resource":"u","accepts":[{GOOD_OFFER}]}}"#),
            "X402_RESOURCE_MALFORMED",
        ),
        (
            format!(r#"{{"x402Version":2,"resource":{{"url":7}},"accepts":[{GOOD_OFFER}]}}"#),
            "X402_RESOURCE_MALFORMED",
        ),
        (
            format!(
                r#"{{"x402Version":2,"resource":{{"description":"d"}},"accepts":[{GOOD_OFFER}]}}"#
            ),
            "X402_RESOURCE_MALFORMED",
        ),
        (
            format!(
                r#"{{"x402Version":2,"resource":{{"url":"u"}},"accepts":[{GOOD_OFFER}],"extensions":[]}}"#
            ),
            "X402_EXTENSIONS_MALFORMED",
        ),
    ];
    for (json, code) in cases {
        expect_code(from_v2_header(&json), code);
    }
    // Optional fields may be null.
    let nulls = format!(
        r#"{{"x402Version":2,"error":null,"resource":{{"url":"u","description":null}},"accepts":[{GOOD_OFFER}],"extensions":null}}"#
    );
    let required = from_v2_header(&nulls).expect("nulls are absent");
    assert_eq!(required.error, None);
    assert_eq!(required.extensions, None);
}

#[test]
fn accepts_must_be_non_empty_and_bounded() {
    expect_code(
        from_v2_header(r#"{"x402Version":2,"resource":{"url":"u"},"accepts":[]}"#),
        "X402_NO_REQUIREMENTS",
    );
    expect_code(
        payment_required_from_http(None, br#"{"x402Version":1,"error":"e","accepts":[]}"#),
        "X402_NO_REQUIREMENTS",
    );
    let offers = |n: usize| vec![GOOD_OFFER; n].join(",");
    let at_limit = from_v2_header(&v2_with_offer(&offers(wire::MAX_REQUIREMENTS))).expect("64");
    assert_eq!(at_limit.accepts.len(), wire::MAX_REQUIREMENTS);
    expect_code(
        from_v2_header(&v2_with_offer(&offers(wire::MAX_REQUIREMENTS + 1))),
        "X402_TOO_MANY_REQUIREMENTS",
    );
}

#[test]
fn amounts_must_be_integer_strings() {
    for bad in [
        r#""1.5""#,
        r#""-1""#,
        r#""01""#,
        r#""""#,
        r#""1e3""#,
        r#"" 1""#,
        r#""0x10""#,
    ] {
        expect_code(
            from_v2_header(&v2_with_offer(&offer_with("amount", Some(bad)))),
            "X402_AMOUNT_NOT_INTEGER",
        );
    }
    for not_string in ["1000", "1.5", "null", "[\"1\"]"] {
        expect_code(
            from_v2_header(&v2_with_offer(&offer_with("amount", Some(not_string)))),
            "X402_AMOUNT_NOT_STRING",
        );
    }
    let over_u256 =
        r#""115792089237316195423570985008687907853269984665640564039457584007913129639936""#;
    expect_code(
        from_v2_header(&v2_with_offer(&offer_with("amount", Some(over_u256)))),
        "X402_AMOUNT_OUT_OF_RANGE",
    );
    // Zero and the largest uint256 are well-formed (whether to pay them is policy).
    for good in [
        "0",
        "115792089237316195423570985008687907853269984665640564039457584007913129639935",
    ] {
        let required = from_v2_header(&v2_with_offer(&offer_with(
            "amount",
            Some(&format!("\"{good}\"")),
        )))
        .expect("well-formed");
        assert_eq!(required.accepts[0].amount, good);
    }
    // v1 checks maxAmountRequired the same way.
    let v1_offer = strict(SPEC_V1_BODY)["accepts"][0].to_string();
    expect_code(
        payment_required_from_http(
            None,
            v1_with_offer(&v1_offer.replace(
                r#""maxAmountRequired":"10000""#,
                r#""maxAmountRequired":"01""#,
            ))
            .as_bytes(),
        ),
        "X402_AMOUNT_NOT_INTEGER",
    );
    expect_code(
        payment_required_from_http(
            None,
            v1_with_offer(&v1_offer.replace(
                r#""maxAmountRequired":"10000""#,
                r#""maxAmountRequired":10000"#,
            ))
            .as_bytes(),
        ),
        "X402_AMOUNT_NOT_STRING",
    );
}

#[test]
fn requirement_fields_are_type_checked() {
    let cases: Vec<(String, &str)> = vec![
        ("1".to_owned(), "not a JSON object"),
        (offer_with("payTo", None), "payTo"),
        (offer_with("scheme", Some("1")), "scheme"),
        (offer_with("network", Some("null")), "network"),
        (offer_with("asset", None), "asset"),
        (offer_with("amount", None), "amount"),
        (offer_with("maxTimeoutSeconds", None), "maxTimeoutSeconds"),
        (
            offer_with("maxTimeoutSeconds", Some("-1")),
            "maxTimeoutSeconds",
        ),
        (
            offer_with("maxTimeoutSeconds", Some("1.5")),
            "maxTimeoutSeconds",
        ),
        (
            offer_with("maxTimeoutSeconds", Some(r#""60""#)),
            "maxTimeoutSeconds",
        ),
        (offer_with("extra", Some(r#""USDC""#)), "extra"),
        // A v1 field name in a v2 offer is not the v2 amount.
        (
            GOOD_OFFER.replace(r#""amount":"10000""#, r#""maxAmountRequired":"10000""#),
            "amount",
        ),
    ];
    for (offer, mentions) in cases {
        let err = from_v2_header(&v2_with_offer(&offer)).expect_err(&offer);
        assert_eq!(
            err.reason_code(),
            "X402_REQUIREMENT_MALFORMED",
            "{offer}: {err}"
        );
        assert!(err.to_string().contains(mentions), "{err}");
    }
    // The index of the bad offer is reported.
    let err = from_v2_header(&v2_with_offer(&format!(
        "{GOOD_OFFER},{}",
        offer_with("payTo", None)
    )))
    .expect_err("second offer is bad");
    assert!(err.to_string().contains("accepts[1]"), "{err}");

    // v1 requires resource and description as strings.
    let v1_offer = strict(SPEC_V1_BODY)["accepts"][0].clone();
    for (field, value) in [
        ("resource", None),
        ("description", None),
        ("resource", Some(json!({"url": "u"}))),
        ("mimeType", Some(json!(1))),
        ("outputSchema", Some(json!("schema"))),
    ] {
        let mut offer = v1_offer.clone();
        let object = offer.as_object_mut().expect("object");
        match value {
            Some(value) => {
                object.insert(field.to_owned(), value);
            }
            None => {
                object.remove(field);
            }
        }
        expect_code(
            payment_required_from_http(None, v1_with_offer(&offer.to_string()).as_bytes()),
            "X402_REQUIREMENT_MALFORMED",
        );
    }
}

#[test]
fn body_size_is_bounded() {
    let mut body = SPEC_V1_BODY.as_bytes().to_vec();
    body.resize(wire::MAX_BODY_JSON_BYTES + 1, b' ');
    expect_code(
        payment_required_from_http(None, &body),
        "X402_BODY_TOO_LARGE",
    );
}

// ---------------------------------------------------------------------------------------------
// Settlement headers
// ---------------------------------------------------------------------------------------------

#[test]
fn settlement_headers() {
    assert_eq!(settlement_from_http(None, None).expect("ok"), None);
    expect_code(
        settlement_from_http(
            Some(SPEC_V2_PAYMENT_RESPONSE_OK.as_bytes()),
            Some(SPEC_V1_X_PAYMENT_RESPONSE_OK.as_bytes()),
        ),
        "X402_SETTLEMENT_CONFLICT",
    );
    let header = |json: &str| encode_header_json(json.as_bytes());
    for bad in [
        r#"{"transaction":"","network":"n"}"#,
        r#"{"success":"true","transaction":"","network":"n"}"#,
        r#"{"success":true,"network":"n"}"#,
        r#"{"success":true,"transaction":1,"network":"n"}"#,
        r#"{"success":true,"transaction":"0x1"}"#,
        r#"{"success":true,"transaction":"0x1","network":"n","payer":5}"#,
        r#"{"success":true,"transaction":"0x1","network":"n","amount":"1.5"}"#,
        r#"{"success":true,"transaction":"0x1","network":"n","amount":100}"#,
        r#"{"success":true,"transaction":"0x1","network":"n","extensions":[]}"#,
        r#"[]"#,
    ] {
        expect_code(
            settlement_from_http(Some(header(bad).as_bytes()), None),
            "X402_SETTLEMENT_MALFORMED",
        );
    }
    expect_code(
        settlement_from_http(
            Some(
                header(r#"{"success":true,"success":false,"transaction":"","network":"n"}"#)
                    .as_bytes(),
            ),
            None,
        ),
        "X402_JSON_DUPLICATE_KEY",
    );
    expect_code(
        settlement_from_http(None, Some(b"eyJzdWNjZXNzIjp0cnVlfQ")),
        "X402_HEADER_BASE64_UNPADDED",
    );
    let full = settlement_from_http(
        Some(
            header(r#"{"success":true,"transaction":"0x1","network":"eip155:8453","amount":"10000","extensions":{"k":{}},"errorReason":null}"#)
                .as_bytes(),
        ),
        None,
    )
    .expect("parses")
    .expect("present");
    assert_eq!(full.amount.as_deref(), Some("10000"));
    assert_eq!(full.extensions, Some(json!({"k": {}})));
    assert_eq!(full.error_reason, None);
    assert_eq!(full.payer, None);
}

// ---------------------------------------------------------------------------------------------
// Agent requests carry no payment
// ---------------------------------------------------------------------------------------------

#[test]
fn agent_payment_headers_are_refused() {
    for names in [
        vec!["content-type", "payment-signature"],
        vec!["x-payment"],
        vec!["payment-signature", "x-payment"],
        vec!["X-PAYMENT"],
    ] {
        expect_code(refuse_agent_payment_headers(names), "X402_AGENT_PAYMENT");
    }
    refuse_agent_payment_headers([
        "content-type",
        "authorization",
        "payment-required",
        "x-payment-response",
    ])
    .expect("no payment");
    refuse_agent_payment_headers(std::iter::empty()).expect("no headers");
}

#[test]
fn agent_payment_meta_is_refused() {
    let meta = json!({"progressToken": 1, "x402/payment": {"x402Version": 2}});
    expect_code(refuse_agent_payment_meta(Some(&meta)), "X402_AGENT_PAYMENT");
    expect_code(
        refuse_agent_payment_meta(Some(&json!({"x402/payment": null}))),
        "X402_AGENT_PAYMENT",
    );
    refuse_agent_payment_meta(Some(&json!({"progressToken": 1}))).expect("no payment");
    refuse_agent_payment_meta(Some(&json!({"x402/payment-response": {}}))).expect("not a payment");
    refuse_agent_payment_meta(None).expect("no meta");
}

// ---------------------------------------------------------------------------------------------
// payment-identifier extension
// ---------------------------------------------------------------------------------------------

/// The client echo of extensions/payment_identifier.md.
const SPEC_ECHO: &str = r#"{
    "payment-identifier": {
      "schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
          "required": { "type": "boolean" },
          "id": { "type": "string", "minLength": 16, "maxLength": 128 }
        },
        "required": ["required"]
      },
      "info": {
        "required": false,
        "id": "pay_7d5d747be160e280504c099d984bcfe0"
      }
    }
  }"#;

/// The server declaration of extensions/payment_identifier.md, with `required` as given: the
/// schema the client echoes ([`SPEC_ECHO`]), no id.
fn declaration(required: bool) -> Value {
    let schema = strict(SPEC_ECHO)["payment-identifier"]["schema"].clone();
    json!({"payment-identifier": {"info": {"required": required}, "schema": schema}})
}

fn with_extensions(extensions: &Value) -> PaymentRequired {
    let json = format!(
        r#"{{"x402Version":2,"resource":{{"url":"u"}},"accepts":[{GOOD_OFFER}],"extensions":{extensions}}}"#
    );
    from_v2_header(&json).expect("parses")
}

#[test]
fn payment_identifier_support_is_detected() {
    assert_eq!(
        with_extensions(&declaration(false)).payment_identifier(),
        PaymentIdentifierSupport::Optional
    );
    assert_eq!(
        with_extensions(&declaration(true)).payment_identifier(),
        PaymentIdentifierSupport::Required
    );
    assert_eq!(
        with_extensions(&json!({"bazaar": {"info": {}}})).payment_identifier(),
        PaymentIdentifierSupport::NotOffered
    );
    assert_eq!(
        with_extensions(&json!({"payment-identifier": {"schema": {}}})).payment_identifier(),
        PaymentIdentifierSupport::Optional
    );
}

#[test]
fn payment_identifier_echo_matches_spec() {
    let id = "pay_7d5d747be160e280504c099d984bcfe0";
    assert_eq!(
        payment_identifier_extension(id).expect("valid"),
        strict(SPEC_ECHO)
    );
    let required = with_extensions(&declaration(false));
    let echo = required
        .extensions_echo(Some(id))
        .expect("echo")
        .expect("extensions");
    assert_eq!(echo, strict(SPEC_ECHO));

    let out = payment_payload_json(
        &required,
        &required.accepts[0],
        &spec_payload(),
        Some(&echo),
    )
    .expect("payload");
    let value = strict(&out);
    assert_eq!(value["extensions"]["payment-identifier"]["info"]["id"], id);
    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert!(out.starts_with(r#"{"x402Version":2,"resource":"#));
    assert!(out.contains(r#","payload":{"signature":"#));
    assert!(keys.contains(&"extensions"));
    let extensions_at = out.find(r#","extensions":"#).expect("extensions");
    assert!(extensions_at > out.find(r#","payload":"#).expect("payload"));
}

#[test]
fn payment_identifier_echo_keeps_server_info_and_other_extensions() {
    let mut declared = declaration(true);
    declared["bazaar"] = json!({"info": {"x": 1}});
    let required = with_extensions(&declared);
    let echo = required
        .extensions_echo(Some("0123456789abcdef"))
        .expect("echo")
        .expect("extensions");
    assert_eq!(
        echo["payment-identifier"]["info"],
        json!({"required": true, "id": "0123456789abcdef"})
    );
    assert_eq!(
        echo["payment-identifier"]["schema"],
        declared["payment-identifier"]["schema"]
    );
    assert_eq!(echo["bazaar"], declared["bazaar"]);

    // Not advertised: the id is not appended.
    let plain = with_extensions(&json!({"bazaar": {"info": {}}}));
    assert_eq!(
        plain
            .extensions_echo(Some("0123456789abcdef"))
            .expect("echo"),
        Some(json!({"bazaar": {"info": {}}}))
    );
    let none = from_v2_header(&v2_with_offer(GOOD_OFFER)).expect("parses");
    assert_eq!(
        none.extensions_echo(Some("0123456789abcdef"))
            .expect("echo"),
        None
    );

    // The server's info cannot be overwritten.
    let mut with_id = declaration(false);
    with_id["payment-identifier"]["info"]["id"] = json!("server_chosen_id_0001");
    expect_code(
        with_extensions(&with_id).extensions_echo(Some("0123456789abcdef")),
        "X402_EXTENSIONS_MALFORMED",
    );
}

#[test]
fn required_payment_identifier_must_be_sent() {
    let required = with_extensions(&declaration(true));
    expect_code(required.extensions_echo(None), "X402_PAYMENT_ID_MISSING");
    let with_id = |id: Value| {
        let mut echo = declaration(true);
        echo["payment-identifier"]["info"]["id"] = id;
        echo
    };
    for (case, echo, code) in [
        ("no echo", None, "X402_PAYMENT_ID_MISSING"),
        (
            "the declaration, no id",
            Some(declaration(true)),
            "X402_PAYMENT_ID_MISSING",
        ),
        (
            "a short id",
            Some(with_id(json!("short"))),
            "X402_PAYMENT_ID_INVALID",
        ),
        (
            "a numeric id",
            Some(with_id(json!(1234567890123456_u64))),
            "X402_PAYMENT_ID_INVALID",
        ),
        ("an array", Some(json!([])), "X402_EXTENSIONS_MALFORMED"),
    ] {
        let paid = payment_payload_json(
            &required,
            &required.accepts[0],
            &spec_payload(),
            echo.as_ref(),
        );
        expect_case_code(case, paid, code);
    }
    let echo = required
        .extensions_echo(Some("pay_0123456789abcdef"))
        .expect("echo");
    payment_payload_json(
        &required,
        &required.accepts[0],
        &spec_payload(),
        echo.as_ref(),
    )
    .expect("with the id");
}

#[test]
fn v1_payments_carry_no_extensions() {
    let required = payment_required_from_http(None, SPEC_V1_BODY.as_bytes()).expect("parses");
    assert_eq!(
        required
            .extensions_echo(Some("0123456789abcdef"))
            .expect("echo"),
        None
    );
    expect_code(
        payment_payload_json(
            &required,
            &required.accepts[0],
            &spec_payload(),
            Some(&json!({})),
        ),
        "X402_EXTENSIONS_ON_V1",
    );
}

#[test]
fn payment_id_format() {
    for good in [
        "0123456789abcdef",
        "pay_7d5d747be160e280504c099d984bcfe0",
        "A-B_C-D_E-F_G-H_",
        &"x".repeat(128),
    ] {
        payment_identifier_extension(good).expect(good);
    }
    for bad in [
        "",
        "0123456789abcde",
        "pay_abc!@#defghijklmn",
        "pay_7d5d747be160 e280",
        "pay_ünïcode_01234567",
        "pay.7d5d747be160e280",
        &"x".repeat(129),
    ] {
        expect_code(payment_identifier_extension(bad), "X402_PAYMENT_ID_INVALID");
    }
}

// ---------------------------------------------------------------------------------------------
// Round trip and code list
// ---------------------------------------------------------------------------------------------

#[test]
fn payload_header_round_trip() {
    let required =
        payment_required_from_http(Some(SPEC_V2_PAYMENT_REQUIRED.as_bytes()), b"").expect("parses");
    let json = payment_payload_json(&required, &required.accepts[0], &spec_payload(), None)
        .expect("payload");
    let header = encode_header_json(json.as_bytes());
    assert_eq!(
        decode_header_json(header.as_bytes()).expect("decodes"),
        json.as_bytes()
    );

    // A payment request we encode ourselves reads back the same.
    let again = payment_required_from_http(
        Some(
            encode_header_json(
                &decode_header_json(SPEC_V2_PAYMENT_REQUIRED.as_bytes()).expect("decodes"),
            )
            .as_bytes(),
        ),
        b"",
    )
    .expect("parses");
    assert_eq!(
        again.accepts[0].raw().get(),
        required.accepts[0].raw().get()
    );
}

#[test]
fn header_names_and_meta_keys() {
    assert_eq!(wire::HEADER_PAYMENT_REQUIRED, "payment-required");
    assert_eq!(wire::HEADER_PAYMENT_SIGNATURE, "payment-signature");
    assert_eq!(wire::HEADER_PAYMENT_RESPONSE, "payment-response");
    assert_eq!(wire::HEADER_X_PAYMENT, "x-payment");
    assert_eq!(wire::HEADER_X_PAYMENT_RESPONSE, "x-payment-response");
    assert_eq!(wire::MCP_META_PAYMENT, "x402/payment");
    assert_eq!(wire::MCP_META_PAYMENT_RESPONSE, "x402/payment-response");
    assert_eq!(X402Version::from_number(1), Some(X402Version::V1));
    assert_eq!(X402Version::from_number(3), None);
}

#[test]
fn reason_codes_are_listed_once_and_documented() {
    let codes = wire::all_reason_codes();
    let unique: std::collections::BTreeSet<_> = codes.iter().collect();
    assert_eq!(unique.len(), codes.len());
    let source = include_str!("../src/x402/wire.rs");
    for code in codes {
        assert!(code.starts_with("X402_"));
        assert!(
            source.contains(&format!("| `{code}` |")),
            "{code} is not in the module's reason code table"
        );
    }
}
