//! Attempts to get an allow out of the policy engine that it must not give (invariant 3: fail
//! closed), and checks of what a decision carries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::json;
use trustos::policy::engine::{Call, Intent, PaymentFacts, State};
use trustos::policy::{self, Compiled};
use trustos_kernel::objects::Outcome;
use trustos_kernel::timestamp::Timestamp;

const PROFILE: &str = r#"
[profile]
name = "engine-test"

[defaults.mode]
low = "hard"
high = "hard"
paid = "shadow"

[[subjects]]
tenant = "acme"
agent = "bot"

[[routes]]
id = "search"
risk = "paid"
mcp = { server = "paid", tool = "search" }
payment = { amount = "/price", payee = "/to", default_asset = "usdc", default_network = "eip155:8453" }

[[routes]]
id = "read"
risk = "low"
mcp = { server = "fs", tool = "read_*" }

[[routes]]
id = "deploy"
risk = "high"
mcp = { server = "ops", tool = "deploy" }

[[budgets]]
id = "daily"
scope = "agent"
window = "day"
asset = "usdc"
limit = "1000"

[payees]
first_time = "allow"
"#;

fn write_profile(name: &str, profile: &str, cedar: Option<&str>) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("engine-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut text = profile.to_owned();
    if let Some(cedar) = cedar {
        std::fs::write(dir.join("extra.cedar"), cedar).unwrap();
        text = text.replace("[profile]\n", "cedar = [\"extra.cedar\"]\n\n[profile]\n");
    }
    let path = dir.join("profile.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn compiled(name: &str, cedar: Option<&str>) -> Compiled {
    policy::open(&write_profile(name, PROFILE, cedar)).unwrap_or_else(|issues| {
        panic!(
            "{}",
            issues
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    })
}

fn now() -> Timestamp {
    "2026-01-15T12:00:00.000Z".parse().unwrap()
}

fn call(server: &str, tool: &str, arguments: serde_json::Value) -> Intent {
    Intent {
        tenant: "acme".into(),
        agent: "bot".into(),
        session: None,
        call: Call::Mcp {
            server: server.into(),
            tool: tool.into(),
        },
        arguments,
        payment: None,
    }
}

#[test]
fn unclassified_calls_are_denied_whatever_else_is_true() {
    let engine = compiled("unclassified", None);
    let evaluation = engine.evaluate(
        &call("fs", "write_file", json!({})),
        &State::default(),
        now(),
    );
    assert_eq!(evaluation.outcome, Outcome::Deny);
    assert_eq!(evaluation.reasons, ["TOOL_UNCLASSIFIED"]);
    assert_eq!(evaluation.route, None);
    // A similar-looking server name does not match either.
    let evaluation = engine.evaluate(
        &call("fs2", "read_file", json!({})),
        &State::default(),
        now(),
    );
    assert_eq!(evaluation.reasons, ["TOOL_UNCLASSIFIED"]);
    let evaluation = engine.evaluate(
        &call("fs", "read_file", json!({})),
        &State::default(),
        now(),
    );
    assert_eq!(
        (evaluation.outcome, evaluation.reasons),
        (Outcome::Allow, vec!["ROUTE_LOW_RISK".to_owned()])
    );
}

#[test]
fn a_cedar_evaluation_error_is_a_deny_not_a_skipped_forbid() {
    // This forbid overflows for any positive amount; Cedar alone would skip it and allow.
    let engine = compiled(
        "eval-error",
        Some(
            "@reason(\"CUSTOM_OVERFLOW\")\nforbid (principal, action == Action::\"call\", resource)\nwhen { context.payment && context.amount + 9223372036854775807 > 0 };\n",
        ),
    );
    let evaluation = engine.evaluate(
        &call("paid", "search", json!({"price": "10", "to": "0xabc"})),
        &State::default(),
        now(),
    );
    assert_eq!(evaluation.outcome, Outcome::Deny);
    assert_eq!(evaluation.reasons, ["POLICY_EVALUATION_ERROR"]);
    assert!(
        evaluation
            .policies
            .iter()
            .any(|id| id.starts_with("custom.")),
        "{:?}",
        evaluation.policies
    );
}

#[test]
fn payment_terms_that_cannot_be_read_are_a_deny() {
    let engine = compiled("terms", None);
    for arguments in [
        json!({}),
        json!({"price": "-5", "to": "0xabc"}),
        json!({"price": "1.5", "to": "0xabc"}),
        json!({"price": "1e3", "to": "0xabc"}),
        json!({"price": 1.5, "to": "0xabc"}),
        json!({"price": "9223372036854775808", "to": "0xabc"}),
        json!({"price": ["10"], "to": "0xabc"}),
    ] {
        let evaluation = engine.evaluate(
            &call("paid", "search", arguments.clone()),
            &State::default(),
            now(),
        );
        assert_eq!(evaluation.outcome, Outcome::Deny, "{arguments}");
        assert_eq!(evaluation.reasons, ["PAYMENT_TERMS_MISSING"], "{arguments}");
    }
}

#[test]
fn budgets_are_checked_with_the_amount_and_reported_as_charges() {
    let engine = compiled("budget", None);
    let intent = call("paid", "search", json!({"price": "400", "to": "0xabc"}));
    let mut state = State::default();
    state.spent.insert("daily".into(), 600);
    let evaluation = engine.evaluate(&intent, &state, now());
    assert_eq!(
        evaluation.outcome,
        Outcome::Allow,
        "{:?}",
        evaluation.reasons
    );
    assert_eq!(evaluation.charges.len(), 1);
    assert_eq!(evaluation.charges[0].budget_key, "daily@agent:acme/bot");
    assert_eq!(
        (evaluation.charges[0].amount, evaluation.charges[0].limit),
        (400, 1000)
    );
    state.spent.insert("daily".into(), 601);
    let evaluation = engine.evaluate(&intent, &state, now());
    assert_eq!(evaluation.outcome, Outcome::Deny);
    assert_eq!(evaluation.reasons, ["BUDGET_DAILY_EXCEEDED"]);
    assert!(evaluation.charges.is_empty());
    // A spent total beyond what Cedar holds saturates: still over the limit.
    state.spent.insert("daily".into(), u128::MAX);
    assert_eq!(
        engine.evaluate(&intent, &state, now()).outcome,
        Outcome::Deny
    );
}

#[test]
fn shadow_mode_decides_but_does_not_block_and_other_classes_stay_hard() {
    let engine = compiled("shadow", None);
    let mut state = State::default();
    state.spent.insert("daily".into(), 1000);
    let evaluation = engine.evaluate(
        &call("paid", "search", json!({"price": "1", "to": "0xabc"})),
        &state,
        now(),
    );
    assert_eq!(evaluation.outcome, Outcome::Deny);
    assert_eq!(evaluation.enforced, Outcome::Allow);
    let mut stranger = call("ops", "deploy", json!({}));
    stranger.agent = "stranger".into();
    let evaluation = engine.evaluate(&stranger, &State::default(), now());
    assert_eq!(
        (evaluation.outcome, evaluation.enforced),
        (Outcome::Deny, Outcome::Deny)
    );
    assert_eq!(evaluation.reasons, ["AGENT_UNKNOWN"]);
}

#[test]
fn explicit_payment_terms_override_the_arguments() {
    let engine = compiled("explicit", None);
    let mut intent = call("paid", "search", json!({"price": "1", "to": "0xabc"}));
    intent.payment = Some(PaymentFacts {
        amount: 5000,
        asset: "usdc".into(),
        payee: "0xabc".into(),
        network: "eip155:8453".into(),
    });
    let evaluation = engine.evaluate(&intent, &State::default(), now());
    assert_eq!(evaluation.reasons, ["BUDGET_DAILY_EXCEEDED"]);
    assert_eq!(evaluation.payment.unwrap().amount, 5000);
}

#[test]
fn the_same_inputs_give_the_same_decision() {
    let engine = compiled("deterministic", None);
    let intent = call("paid", "search", json!({"price": "10", "to": "0xabc"}));
    let first = engine.evaluate(&intent, &State::default(), now());
    for _ in 0..100 {
        assert_eq!(engine.evaluate(&intent, &State::default(), now()), first);
    }
    assert_eq!(first.profile_fingerprint, engine.fingerprint);
}

#[test]
fn an_invalid_profile_never_replaces_the_last_good_one() {
    let path = write_profile("reload", PROFILE, None);
    let mut active = policy::ActiveProfile::load(&path).unwrap();
    let good = active.current().fingerprint;
    assert!(matches!(active.reload(), policy::Reload::Unchanged));
    std::fs::write(
        &path,
        PROFILE.replace("limit = \"1000\"", "limit = \"-1000\""),
    )
    .unwrap();
    match active.reload() {
        policy::Reload::KeptLastGood { current, issues } => {
            assert_eq!(current, good);
            assert!(
                issues.iter().any(|issue| issue.field == "budgets[0].limit"),
                "{issues:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(active.current().fingerprint, good);
    // The last good profile still decides.
    let evaluation = active.current().evaluate(
        &call("paid", "search", json!({"price": "10", "to": "0xabc"})),
        &State::default(),
        now(),
    );
    assert_eq!(evaluation.profile_fingerprint, good);
    std::fs::write(
        &path,
        PROFILE.replace("limit = \"1000\"", "limit = \"2000\""),
    )
    .unwrap();
    assert!(
        matches!(active.reload(), policy::Reload::Updated { previous, .. } if previous == good)
    );
    assert_ne!(active.current().fingerprint, good);
}
