//! Held calls against the enforcer itself: a relay's wait may start at any moment relative to
//! the approval, rejection or cancel that resolves the hold, and it must always get the
//! resolution's verdict, never `HOLD_UNKNOWN` (the stdio shim elicits and waits in two tasks, so
//! a host that answers at once races the wait).
//!
//! The tests run on a current-thread runtime: a resolver task is polled until it waits on the
//! store's writer thread, which is exactly the window where its decision is being written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use trustos::daemon::server;
use trustos::enforce::{ApprovalOutcome, Enforcer, HOST_APPROVER, ToolCall, Verdict};
use trustos::home::Home;

/// One paid route, held above 1 USDC; only the host's user approves.
const PROFILE: &str = r#"
[profile]
name = "holds"
description = "One paid route, held above 1 USDC, approved by the host's user."

[defaults]
unknown_agent = "deny"
mode = { low = "hard", high = "hard", paid = "hard" }

[[subjects]]
tenant = "local"
agent = "agent"

[[routes]]
id = "rec-transfer"
risk = "paid"
mcp = { server = "rec", tool = "transfer" }
payment = { amount = "/amount", asset = "/asset", payee = "/payee", network = "/network" }

[[amounts]]
asset = "usdc"
min = "1"
max = "5000000"

[[budgets]]
id = "daily"
scope = "agent"
window = "day"
asset = "usdc"
limit = "9000000"

[payees]
first_time = "allow"

[challenge]
above = "1000000"
approvers = ["host"]
quorum = 1
"#;

fn home(name: &str) -> PathBuf {
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("holds-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let home = dir.join("home");
    let init = Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(["init", "--json", "--home"])
        .arg(&home)
        .env_remove("TRUSTOS_HOME")
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    fs::write(home.join("profiles/default/profile.toml"), PROFILE).unwrap();
    home
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An enforcer over a fresh home that has seen the upstream list its `transfer` tool.
async fn enforcer(name: &str) -> Arc<Enforcer> {
    let home = Home::resolve(Some(home(name))).unwrap();
    let enforcer = server::open(&home).await.unwrap().enforcer;
    let transfer = json!({"name": "transfer", "inputSchema": {"type": "object"}});
    enforcer
        .observe_tools("rec", &[transfer], false)
        .await
        .unwrap();
    enforcer
}

/// A 2 USDC transfer: held for the host's approval.
async fn held(enforcer: &Enforcer) -> String {
    let call = ToolCall {
        tenant: "local".into(),
        agent: "agent".into(),
        session: None,
        server: "rec".into(),
        tool: "transfer".into(),
        arguments: json!({"amount": "2000000", "asset": "usdc", "payee": "0xabc",
                          "network": "eip155:8453"}),
        http: None,
        payment: None,
    };
    match enforcer.decide(call).await.unwrap() {
        Verdict::Hold {
            decision_id,
            approvers,
            ..
        } => {
            assert_eq!(approvers, [HOST_APPROVER]);
            decision_id
        }
        other => panic!("expected a hold, got {other:?}"),
    }
}

/// Spawns a resolver and polls it until it waits for its decision's durable write: the hold is
/// taken, its verdict not yet published.
async fn resolving<T: Send + 'static>(
    resolver: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let task = tokio::spawn(resolver);
    tokio::task::yield_now().await;
    assert!(
        !task.is_finished(),
        "the resolver should be waiting on the store"
    );
    task
}

fn codes(verdict: &Verdict) -> Vec<String> {
    match verdict {
        Verdict::Refuse { reasons, .. } => reasons.iter().map(|r| r.code.clone()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_wait_that_starts_while_the_approval_is_written_gets_its_verdict() {
    runtime().block_on(async {
        let enforcer = enforcer("approve").await;
        let decision_id = held(&enforcer).await;
        let answering = resolving({
            let (enforcer, decision_id) = (Arc::clone(&enforcer), decision_id.clone());
            async move { enforcer.host_answer(&decision_id, true).await.unwrap() }
        })
        .await;
        assert!(
            enforcer.held().is_empty(),
            "a hold being resolved is not listed"
        );
        // A second answer meanwhile finds the hold taken.
        match enforcer.host_answer(&decision_id, false).await.unwrap() {
            ApprovalOutcome::Refused { code, .. } => assert_eq!(code, "HOLD_UNKNOWN"),
            other => panic!("a second resolver was counted: {other:?}"),
        }
        let waited = enforcer.await_hold(&decision_id).await.unwrap();
        assert!(matches!(waited, Verdict::Forward { .. }), "{waited:?}");
        let ApprovalOutcome::Resolved { verdict } = answering.await.unwrap() else {
            panic!("the approval did not resolve the hold");
        };
        assert_eq!(waited, verdict);
    });
}

#[test]
fn a_wait_that_starts_while_a_rejection_is_written_gets_the_rejection() {
    runtime().block_on(async {
        let enforcer = enforcer("reject").await;
        let decision_id = held(&enforcer).await;
        let answering = resolving({
            let (enforcer, decision_id) = (Arc::clone(&enforcer), decision_id.clone());
            async move { enforcer.host_answer(&decision_id, false).await.unwrap() }
        })
        .await;
        let waited = enforcer.await_hold(&decision_id).await.unwrap();
        assert_eq!(codes(&waited), ["APPROVAL_REJECTED"]);
        assert!(matches!(
            answering.await.unwrap(),
            ApprovalOutcome::Resolved { verdict } if verdict == waited
        ));
    });
}

#[test]
fn a_wait_that_starts_while_a_cancel_is_written_gets_the_cancel() {
    runtime().block_on(async {
        let enforcer = enforcer("cancel").await;
        let decision_id = held(&enforcer).await;
        let cancelling = resolving({
            let (enforcer, decision_id) = (Arc::clone(&enforcer), decision_id.clone());
            async move { enforcer.cancel_hold(&decision_id).await.unwrap() }
        })
        .await;
        // The host's late approval cannot overturn the cancel being written.
        match enforcer.host_answer(&decision_id, true).await.unwrap() {
            ApprovalOutcome::Refused { code, .. } => assert_eq!(code, "HOLD_UNKNOWN"),
            other => panic!("an approval overturned a cancel: {other:?}"),
        }
        let waited = enforcer.await_hold(&decision_id).await.unwrap();
        assert_eq!(codes(&waited), ["HOLD_CANCELLED"]);
        cancelling.await.unwrap();
    });
}

#[test]
fn a_wait_that_starts_after_the_resolution_gets_the_verdict_once() {
    runtime().block_on(async {
        let enforcer = enforcer("late").await;
        let decision_id = held(&enforcer).await;
        let ApprovalOutcome::Resolved { verdict } =
            enforcer.host_answer(&decision_id, true).await.unwrap()
        else {
            panic!("the approval did not resolve the hold");
        };
        assert!(matches!(verdict, Verdict::Forward { .. }), "{verdict:?}");
        assert_eq!(enforcer.await_hold(&decision_id).await.unwrap(), verdict);
        // Kept once: a second wait on the same id finds nothing.
        let again = enforcer.await_hold(&decision_id).await.unwrap();
        assert_eq!(codes(&again), ["HOLD_UNKNOWN"]);
    });
}
