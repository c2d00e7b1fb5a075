//! Whatever a server or an agent sends, the x402 readers answer with a value or a reason code:
//! never a panic, and never a payment request whose offers the adapter could not read again.

use proptest::prelude::*;
use serde_json::{Value, json};
use trustos_adapters::x402::wire;

/// A valid x402 v2 PaymentRequired, as text, to damage.
const GOOD: &str = r#"{"x402Version":2,"error":"pay","resource":{"url":"https://api.example.com/x"},"accepts":[{"scheme":"exact","network":"eip155:84532","amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{"name":"USDC","version":"2"}}]}"#;

fn damaged(cut: usize, splice: &str) -> String {
    let cut = cut % (GOOD.len() + 1);
    let mut text = GOOD[..cut].to_owned();
    text.push_str(splice);
    text.push_str(&GOOD[cut..]);
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_headers_and_bodies_never_panic(
        header in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..512)),
        body in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let _ = wire::payment_required_from_http(header.as_deref(), &body);
        let _ = wire::settlement_from_http(header.as_deref(), Some(&body));
        let _ = wire::decode_header_json(&body);
    }

    #[test]
    fn damaged_payment_requests_are_read_or_refused_with_a_code(
        cut in any::<usize>(),
        splice in prop_oneof![
            Just(String::new()),
            Just("\"".to_owned()),
            Just(",\"amount\":\"1\"".to_owned()),
            Just("{".to_owned()),
            Just("\\u0000".to_owned()),
            Just("9007199254740993".to_owned()),
            "[a-zA-Z0-9_\":,{}\\[\\] .-]{0,12}",
        ],
    ) {
        let text = damaged(cut, &splice);
        let header = wire::encode_header_json(text.as_bytes());
        match wire::payment_required_from_http(Some(header.as_bytes()), b"") {
            Ok(required) => {
                // Anything accepted has offers whose raw text is JSON with the fields read.
                for offer in &required.accepts {
                    let raw: Value = serde_json::from_str(offer.raw().get()).unwrap();
                    prop_assert_eq!(raw["scheme"].as_str(), Some(offer.scheme.as_str()));
                    prop_assert!(offer.amount.bytes().all(|b| b.is_ascii_digit()));
                }
            }
            Err(err) => prop_assert!(err.reason_code().starts_with("X402_"), "{err}"),
        }
        let as_tool_result = json!({"isError": true, "content": [{"type": "text", "text": text}]});
        let _ = wire::payment_required_from_mcp_result(&as_tool_result);
    }
}
