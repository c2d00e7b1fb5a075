//! Property tests: the fingerprint changes whenever anything that will run changes (tool name,
//! any argument, tenant, agent, any payment term), and never changes with JSON spelling (key
//! order, whitespace, escapes).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trustos_kernel::objects::{PaymentTerms, RequestFingerprint, Route};
use trustos_kernel::strict_json;

fn safe_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        "[a-zA-Z0-9 é😀\\\\\"]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn arguments() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map("[a-z]{1,8}", safe_json(), 1..6)
        .prop_map(|map| map.into_iter().collect())
}

fn fingerprint(
    tenant: &str,
    agent: &str,
    tool: &str,
    args: &Map<String, Value>,
    payment: Option<PaymentTerms>,
) -> RequestFingerprint {
    RequestFingerprint::new(
        tenant,
        agent,
        Route::Mcp {
            server: "paid-search".into(),
            tool: tool.into(),
        },
        &Value::Object(args.clone()),
        payment,
    )
    .unwrap()
}

/// A value different from `value` (never equal, whatever its type).
fn different(value: &Value) -> Value {
    match value {
        Value::String(text) => Value::String(format!("{text}x")),
        _ => json!("changed"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn changing_any_argument_changes_the_fingerprint(args in arguments(), pick in any::<prop::sample::Index>()) {
        let base = fingerprint("acme", "bot", "search", &args, None).digest().unwrap();
        let key = args.keys().nth(pick.index(args.len())).unwrap().clone();
        let mut changed = args.clone();
        changed.insert(key.clone(), different(&args[&key]));
        prop_assert_ne!(base, fingerprint("acme", "bot", "search", &changed, None).digest().unwrap());
        let mut removed = args.clone();
        removed.remove(&key);
        prop_assert_ne!(base, fingerprint("acme", "bot", "search", &removed, None).digest().unwrap());
        let mut added = args.clone();
        added.insert(format!("{key}_extra"), Value::Null);
        prop_assert_ne!(base, fingerprint("acme", "bot", "search", &added, None).digest().unwrap());
    }

    #[test]
    fn changing_tool_tenant_or_agent_changes_the_fingerprint(
        args in arguments(),
        tenant in "[a-z]{1,8}", agent in "[a-z]{1,8}", tool in "[a-z_]{1,8}",
    ) {
        let base = fingerprint(&tenant, &agent, &tool, &args, None).digest().unwrap();
        prop_assert_ne!(base, fingerprint(&format!("{tenant}x"), &agent, &tool, &args, None).digest().unwrap());
        prop_assert_ne!(base, fingerprint(&tenant, &format!("{agent}x"), &tool, &args, None).digest().unwrap());
        prop_assert_ne!(base, fingerprint(&tenant, &agent, &format!("{tool}x"), &args, None).digest().unwrap());
        // Swapping tenant and agent is a different request too.
        if tenant != agent {
            prop_assert_ne!(base, fingerprint(&agent, &tenant, &tool, &args, None).digest().unwrap());
        }
    }

    #[test]
    fn changing_any_payment_term_changes_the_fingerprint(args in arguments(), amount in 0u128..u128::MAX, which in 0usize..6) {
        let mut terms = common::payment_terms();
        terms.amount = amount.into();
        let base = fingerprint("acme", "bot", "search", &args, Some(terms.clone())).digest().unwrap();
        prop_assert_ne!(base, fingerprint("acme", "bot", "search", &args, None).digest().unwrap());
        let mut changed = terms;
        match which {
            0 => changed.scheme.push('x'),
            1 => changed.network = "eip155:8453".into(),
            2 => changed.asset.push('0'),
            3 => changed.amount = (amount + 1).into(),
            4 => changed.pay_to = changed.pay_to.to_lowercase() + "0",
            _ => changed.resource.push('/'),
        }
        prop_assert_ne!(base, fingerprint("acme", "bot", "search", &args, Some(changed)).digest().unwrap());
    }

    #[test]
    fn json_spelling_does_not_change_the_fingerprint(args in arguments()) {
        let value = Value::Object(args.clone());
        // Reversed key order, indentation and escaped non-ASCII characters: same value.
        let mut reversed = String::from("{\n");
        for (index, (key, item)) in args.iter().rev().enumerate() {
            if index > 0 { reversed.push_str(",\n"); }
            reversed.push_str(&format!("  {} : {}", serde_json::to_string(key).unwrap(), escape_non_ascii(&serde_json::to_string_pretty(item).unwrap())));
        }
        reversed.push_str("\n}");
        let reread = strict_json::parse(reversed.as_bytes()).unwrap();
        prop_assert_eq!(&reread, &value);
        let a = fingerprint("acme", "bot", "search", &args, None).digest().unwrap();
        let b = RequestFingerprint::new("acme", "bot", Route::Mcp { server: "paid-search".into(), tool: "search".into() }, &reread, None).unwrap().digest().unwrap();
        prop_assert_eq!(a, b);
    }
}

fn escape_non_ascii(json: &str) -> String {
    let mut out = String::new();
    for character in json.chars() {
        if character.is_ascii() {
            out.push(character);
        } else {
            let mut units = [0u16; 2];
            for unit in character.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

#[test]
fn the_golden_fingerprint_is_stable() {
    let golden = common::golden();
    assert_eq!(
        golden.fingerprint.digest().unwrap(),
        golden.fingerprint_digest
    );
}
