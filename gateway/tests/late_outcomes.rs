//! Payments whose run ended before the rail was asked, against the enforcer itself.
//!
//! A rail payment's decision is committed (budget reserved, awaiting its outcome) before the
//! adapter records its attempt, and the attempt is recorded before the rail is asked. A daemon
//! killed between the two leaves a payment with no attempt: nothing was sent, so reconciliation
//! receipts it `failed` and releases its reservation. One with an attempt is left to the rail's
//! answer, however long it takes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use trustos::daemon::server;
use trustos::enforce::now;
use trustos::home::Home;
use trustos::store::{
    AwaitedPayment, AwaitedSettlement, BudgetCharge, BudgetUsage, BudgetWindow, DecisionCommit,
    Store as _,
};
use trustos_adapters::{AttemptRecord, AttemptState, PaymentLedger as _};
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::objects::{
    Amount, BudgetReservation, DecisionType, ExecutionStatus, Mode, Outcome, PolicyDecision,
};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

/// The run that made the payments below: over by the time the test's enforcer opens the home.
const GONE_RUN: &str = "run_gone";

fn home(name: &str) -> Home {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("late-outcomes-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let root = dir.join("home");
    let init = Command::new(env!("CARGO_BIN_EXE_trustos"))
        .args(["init", "--home"])
        .arg(&root)
        .env_remove("TRUSTOS_HOME")
        .output()
        .unwrap();
    assert!(init.status.success(), "{init:?}");
    Home::resolve(Some(root)).unwrap()
}

/// An allowed x402 payment of 30 base units, consumed and awaiting its outcome, made by
/// [`GONE_RUN`] and signed with the home's key.
fn paying(
    key: &GatewayKey,
    decision_id: &str,
    budget_key: &str,
    issued_at: Timestamp,
) -> DecisionCommit {
    let (window_start, window_end) = BudgetWindow::Day.bounds(issued_at);
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: decision_id.into(),
        fingerprint: Digest::of(decision_id.as_bytes()),
        outcome: Outcome::Allow,
        reason_codes: vec![],
        policy_ids: vec!["late-outcomes".into()],
        profile_fingerprint: Digest::of(b"profile"),
        reservations: vec![BudgetReservation {
            budget_key: budget_key.into(),
            asset: "usdc".into(),
            amount: Amount::from(30u128),
            window_start,
            window_end,
        }],
        issued_at,
        expires_at: issued_at.checked_add_millis(60_000).unwrap(),
        mode: Mode::Hard,
    };
    let signed = jws::sign(key, TYP_DECISION, &decision).unwrap();
    DecisionCommit {
        decision,
        signed,
        charges: vec![BudgetCharge {
            budget_key: budget_key.into(),
            window: BudgetWindow::Day,
            amount: 30,
            limit: 100,
        }],
        consume: true,
        awaiting: Some(AwaitedPayment {
            settlement: AwaitedSettlement {
                rail: "x402".into(),
                network: "eip155:84532".into(),
                asset: "usdc".into(),
                amount: Amount::from(30u128),
            },
            owner: GONE_RUN.into(),
        }),
    }
}

#[tokio::test]
async fn a_payment_cut_off_before_it_asked_its_rail_is_receipted_failed_and_released() {
    let home = home("abandoned");
    let key = Arc::new(home.load_key().unwrap());
    let issued_at = now().unwrap();

    // What the killed run left: two consumed payments; only the second recorded its attempt
    // (and so may have reached the rail).
    {
        let store = home.open_store(Arc::clone(&key), true).await.unwrap();
        for (id, budget_key) in [("dec_never_sent", "agent:a"), ("dec_sent", "agent:b")] {
            store
                .commit_decision(paying(&key, id, budget_key, issued_at))
                .await
                .unwrap();
        }
        store
            .create_attempt(&AttemptRecord {
                rail: "x402".into(),
                decision_id: "dec_sent".into(),
                state: AttemptState::Authorized,
                idempotency_key: "idem-dec_sent".into(),
                replay_key: "eip155:84532/0x036c/0xpayer/dec_sent".into(),
                valid_before: issued_at.unix_millis() / 1000 + 3600,
                authorization: "{}".into(),
                reference: None,
                detail: None,
            })
            .await
            .unwrap();
        store.close().await.unwrap();
    }

    // The next run opens the home and reconciles.
    let enforcer = server::open(&home).await.unwrap().enforcer;
    let store = enforcer.store();
    let size = store.log_size().await.unwrap();
    enforcer.reconcile_payments().await;

    // Exactly one receipt: the payment never sent, `failed`, naming no settlement and composing
    // nothing, verified with the gateway's key; its reservation released.
    assert_eq!(store.log_size().await.unwrap(), size + 1);
    let bytes = store.log_entry(size).await.unwrap().unwrap();
    let verifier = Verifier::new(TrustedKeys::new([key.public().clone()]));
    let receipt = verifier
        .verify_receipt(std::str::from_utf8(&bytes).unwrap())
        .unwrap()
        .receipt;
    assert_eq!(receipt.decision_id, "dec_never_sent");
    assert_eq!(receipt.status, ExecutionStatus::Failed);
    assert!(receipt.settlement.is_none());
    assert!(receipt.composes.is_empty());
    assert_eq!(receipt.log_index.get(), size);
    let usage = |budget_key: &'static str| {
        let store = Arc::clone(store);
        async move {
            store
                .budget_usage(budget_key, BudgetWindow::Day, issued_at)
                .await
                .unwrap()
        }
    };
    assert_eq!(usage("agent:a").await, BudgetUsage::default());
    // The one whose attempt exists keeps its reservation and awaits the rail's answer.
    assert_eq!(
        usage("agent:b").await,
        BudgetUsage {
            reserved: 30,
            captured: 0
        }
    );
    assert_eq!(
        store.awaiting_outcomes().await.unwrap(),
        [("dec_sent".to_owned(), "x402".to_owned())]
    );

    // Reconciling again adds nothing.
    enforcer.reconcile_payments().await;
    assert_eq!(store.log_size().await.unwrap(), size + 1);
}
