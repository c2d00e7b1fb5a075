//! The `Store` conformance suite: what every backend must do, tried against each backend.
//!
//! The generic checks (`check_*`) take any `Store`; each backend runs all of them through one
//! `#[tokio::test]` per check (today: redb). They try to break the store the way production
//! would: 64 concurrent consumers of one decision, 64 concurrent reservations against a budget
//! that fits 10, a writer process killed with SIGKILL at random points 20 times, idempotency
//! replays and conflicts, and budget windows rolling over at UTC midnight under an injected
//! clock. The redb-specific section then feeds it damaged, foreign, newer and full disks.
//!
//! Run alone with `cargo test -p trustos --test store_conformance`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redb::StorageBackend;
use trustos::store::redb_store::RedbStore;
use trustos::store::*;
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::merkle::{self, MemoryTree};
use trustos_kernel::objects::*;
use trustos_kernel::timestamp::Timestamp;

const ORIGIN: &str = "trustos.test/conformance";

fn key() -> Arc<GatewayKey> {
    Arc::new(GatewayKey::from_seed(&[0x5e; 32]))
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("store-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A signed decision with one reservation per `(budget key, window, amount)`, deterministic in
/// its id and clock so a crashed writer's acknowledged bytes can be rebuilt by the checker.
struct Made {
    commit: DecisionCommit,
    fingerprint: Digest,
}

fn decision(
    id: &str,
    issued_at: Timestamp,
    outcome: Outcome,
    charges: &[(&str, BudgetWindow, u128, u128)],
) -> Made {
    let fingerprint = Digest::of(id.as_bytes());
    let reservations = charges
        .iter()
        .map(|(budget_key, window, amount, _)| {
            let (window_start, window_end) = window.bounds(issued_at);
            BudgetReservation {
                budget_key: (*budget_key).into(),
                asset: "usdc".into(),
                amount: Amount::from(*amount),
                window_start,
                window_end,
            }
        })
        .collect();
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: id.into(),
        fingerprint,
        outcome,
        reason_codes: vec![],
        policy_ids: vec!["conformance".into()],
        profile_fingerprint: Digest::of(b"profile"),
        reservations,
        issued_at,
        expires_at: issued_at.checked_add_millis(60_000).unwrap(),
        mode: Mode::Hard,
    };
    let signed = jws::sign(&key(), TYP_DECISION, &decision).unwrap();
    Made {
        commit: DecisionCommit {
            consume: false,
            awaiting: None,
            decision,
            signed,
            charges: charges
                .iter()
                .map(|(budget_key, window, amount, limit)| BudgetCharge {
                    budget_key: (*budget_key).into(),
                    window: *window,
                    amount: *amount,
                    limit: *limit,
                })
                .collect(),
        },
        fingerprint,
    }
}

fn receipt_builder(decision_id: &str, fingerprint: Digest, now: Timestamp) -> EntryBuilder {
    let decision_id = decision_id.to_owned();
    Box::new(move |index| {
        let receipt = Receipt {
            object_type: ReceiptType::V1,
            receipt_id: format!("rcpt-{decision_id}"),
            decision_id,
            fingerprint,
            status: ExecutionStatus::Completed,
            result_digest: None,
            settlement: None,
            started_at: now,
            completed_at: now,
            log_index: SafeIndex::new(index).map_err(|err| err.to_string())?,
            composes: vec![],
        };
        jws::sign(&key(), TYP_RECEIPT, &receipt)
            .map(String::into_bytes)
            .map_err(|err| err.to_string())
    })
}

/// Every entry is present without gaps, nothing lies beyond the size, and the stored root equals
/// a recomputation from the entries. Returns the entries.
async fn check_log_integrity<S: Store>(store: &S) -> Vec<Vec<u8>> {
    let size = store.log_size().await.unwrap();
    let mut tree = MemoryTree::new();
    let mut entries = Vec::new();
    for index in 0..size {
        let entry = store
            .log_entry(index)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("log entry {index} of {size} is missing"));
        tree.append(&entry);
        entries.push(entry);
    }
    assert_eq!(
        store.log_entry(size).await.unwrap(),
        None,
        "entry past the end"
    );
    assert_eq!(
        store.log_root(size).await.unwrap(),
        tree.root(),
        "stored root differs"
    );
    entries
}

// ---------------------------------------------------------------------------------------------
// Generic checks.

async fn check_consume_race<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let made = decision("race-consume", now, Outcome::Allow, &[]);
    store.commit_decision(made.commit).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .consume_decision("race-consume", &made.fingerprint, now)
                .await
                .unwrap()
        }));
    }
    let mut consumed = 0;
    for task in tasks {
        match task.await.unwrap() {
            ConsumeOutcome::Consumed => consumed += 1,
            ConsumeOutcome::AlreadyUsed => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(consumed, 1, "exactly one of 64 racers may consume");
    assert_eq!(
        store
            .consume_decision("race-consume", &made.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::AlreadyUsed
    );
}

async fn check_budget_race<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let mut tasks = Vec::new();
    for racer in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let made = decision(
                &format!("race-budget-{racer}"),
                now,
                Outcome::Allow,
                &[("agent:racer", BudgetWindow::Day, 100, 1_000)],
            );
            let result = store.commit_decision(made.commit).await;
            // The total never exceeds the limit, at any point a racer looks.
            let usage = store
                .budget_usage("agent:racer", BudgetWindow::Day, now)
                .await
                .unwrap();
            assert!(usage.reserved + usage.captured <= 1_000, "{usage:?}");
            result
        }));
    }
    let mut committed = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => committed += 1,
            Err(CommitError::BudgetExceeded { spent, limit, .. }) => {
                assert_eq!(limit, 1_000);
                assert!(spent + 100 > limit, "refused although {spent} + 100 fits");
            }
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(committed, 10, "exactly 10 reservations of 100 fit in 1000");
    let usage = store
        .budget_usage("agent:racer", BudgetWindow::Day, now)
        .await
        .unwrap();
    assert_eq!(
        usage,
        BudgetUsage {
            reserved: 1_000,
            captured: 0
        }
    );
    // A refused decision left no trace: only the 10 are in the log.
    assert_eq!(check_log_integrity(&*store).await.len(), 10);
}

async fn check_decision_lifecycle<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let allow = decision(
        "life-allow",
        now,
        Outcome::Allow,
        &[
            ("agent:life", BudgetWindow::Day, 40, 100),
            ("tenant:acme", BudgetWindow::Month, 40, 1_000),
        ],
    );
    let index = store.commit_decision(allow.commit.clone()).await.unwrap();
    assert_eq!(
        store.log_entry(index).await.unwrap().unwrap(),
        allow.commit.signed.as_bytes()
    );
    assert!(matches!(
        store.commit_decision(allow.commit.clone()).await,
        Err(CommitError::DuplicateDecision(_))
    ));
    let other = Digest::of(b"another request");
    let consume = |id: &'static str, fingerprint: Digest, when: Timestamp| {
        let store = Arc::clone(&store);
        async move {
            store
                .consume_decision(id, &fingerprint, when)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        consume("life-missing", other, now).await,
        ConsumeOutcome::Unknown
    );
    assert_eq!(
        consume("life-allow", other, now).await,
        ConsumeOutcome::FingerprintMismatch
    );
    let expired = now.checked_add_millis(60_000).unwrap();
    assert_eq!(
        consume("life-allow", allow.fingerprint, expired).await,
        ConsumeOutcome::Expired
    );
    assert_eq!(
        consume("life-allow", allow.fingerprint, now).await,
        ConsumeOutcome::Consumed
    );
    let deny = decision("life-deny", now, Outcome::Deny, &[]);
    store.commit_decision(deny.commit).await.unwrap();
    assert_eq!(
        consume("life-deny", deny.fingerprint, now).await,
        ConsumeOutcome::NotAllowed
    );

    // Receipts settle reservations atomically and carry their own log index.
    let (receipt_index, bytes) = store
        .commit_receipt(ReceiptCommit {
            decision_id: "life-allow".into(),
            settlement: BudgetSettlement::Capture,
            build: receipt_builder("life-allow", allow.fingerprint, now),
            outcome_open: false,
        })
        .await
        .unwrap();
    let verifier =
        trustos_kernel::verify::Verifier::new(TrustedKeys::new([key().public().clone()]));
    let receipt = verifier
        .verify_receipt(std::str::from_utf8(&bytes).unwrap())
        .unwrap()
        .receipt;
    assert_eq!(receipt.log_index.get(), receipt_index);
    assert_eq!(
        store.log_entry(receipt_index).await.unwrap().unwrap(),
        bytes
    );
    let usage = store
        .budget_usage("agent:life", BudgetWindow::Day, now)
        .await
        .unwrap();
    assert_eq!(
        usage,
        BudgetUsage {
            reserved: 0,
            captured: 40
        }
    );
    assert_eq!(
        store
            .budget_usage("tenant:acme", BudgetWindow::Month, now)
            .await
            .unwrap(),
        BudgetUsage {
            reserved: 0,
            captured: 40
        }
    );
    assert_eq!(
        store.release("life-allow").await.unwrap(),
        SettleOutcome::AlreadyCaptured
    );
    assert_eq!(
        store.capture("life-allow").await.unwrap(),
        SettleOutcome::AlreadySettled
    );
    assert_eq!(
        store.capture("life-none").await.unwrap(),
        SettleOutcome::Unknown
    );

    // A receipt that cannot be built is refused and appends nothing.
    let size = store.log_size().await.unwrap();
    let refused = store
        .commit_receipt(ReceiptCommit {
            decision_id: "life-deny".into(),
            settlement: BudgetSettlement::Keep,
            build: Box::new(|_| Err("signer unavailable".into())),
            outcome_open: false,
        })
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(store.log_size().await.unwrap(), size);

    // A charge that does not match what was signed is refused, and leaves nothing.
    let mut forged = decision(
        "life-forged",
        now,
        Outcome::Allow,
        &[("agent:life", BudgetWindow::Day, 1, 100)],
    );
    forged.commit.charges[0].amount = 0;
    let size = store.log_size().await.unwrap();
    assert!(matches!(
        store.commit_decision(forged.commit).await,
        Err(CommitError::Inconsistent(_))
    ));
    assert_eq!(store.log_size().await.unwrap(), size);
    assert_eq!(
        consume("life-forged", Digest::of(b"life-forged"), now).await,
        ConsumeOutcome::Unknown
    );
    check_log_integrity(&*store).await;
}

fn late_builder(decision_id: &str, status: ExecutionStatus, now: Timestamp) -> LateEntryBuilder {
    let decision_id = decision_id.to_owned();
    Box::new(move |entry: LateEntry| {
        let receipt = Receipt {
            object_type: ReceiptType::V1,
            receipt_id: format!("rcpt-late-{decision_id}"),
            decision_id,
            fingerprint: entry.fingerprint,
            status,
            result_digest: None,
            settlement: entry.settlement,
            started_at: entry.forwarded_at.unwrap_or(now),
            completed_at: now,
            log_index: SafeIndex::new(entry.index).map_err(|err| err.to_string())?,
            composes: entry.open_receipt.into_iter().collect(),
        };
        jws::sign(&key(), TYP_RECEIPT, &receipt)
            .map(String::into_bytes)
            .map_err(|err| err.to_string())
    })
}

/// The daemon run that started the payments, and the one that asks after a restart.
const RUN_A: &str = "run-a";
const RUN_B: &str = "run-b";

/// A paid allow committed and consumed by [`RUN_A`], 30 reserved on `budget_key`.
async fn paying<S: Store>(store: &S, id: &str, budget_key: &str, now: Timestamp) -> Made {
    let mut made = decision(
        id,
        now,
        Outcome::Allow,
        &[(budget_key, BudgetWindow::Day, 30, 100)],
    );
    made.commit.consume = true;
    made.commit.awaiting = Some(AwaitedPayment {
        settlement: AwaitedSettlement {
            rail: "circle".into(),
            network: "eip155:84532".into(),
            asset: "usdc".into(),
            amount: Amount::from(30u128),
        },
        owner: RUN_A.into(),
    });
    store.commit_decision(made.commit.clone()).await.unwrap();
    made
}

fn late(decision_id: &str, outcome: LateOutcome, owner: &str, now: Timestamp) -> LateReceiptCommit {
    let status = match outcome {
        LateOutcome::Settled { .. } => ExecutionStatus::Completed,
        LateOutcome::Failed | LateOutcome::Abandoned => ExecutionStatus::Failed,
    };
    LateReceiptCommit {
        decision_id: decision_id.into(),
        outcome,
        owner: owner.into(),
        build: late_builder(decision_id, status, now),
    }
}

fn settled(reference: &str) -> LateOutcome {
    LateOutcome::Settled {
        reference: reference.into(),
    }
}

/// A paid allow awaits its outcome from its commit until a receipt closes it. A late outcome
/// is receipted once, however many callers race to receipt it: after a receipt that left it
/// open (`unknown`), or when the run that started it never receipted it (cut off mid-call); a
/// payment still in flight in the asking run is left alone. The late receipt captures or
/// releases the kept reservation in the same unit, names the awaited settlement with the rail's
/// reference, and composes the open receipt when there was one. A builder failure appends
/// nothing and leaves it open.
async fn check_late_receipts<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let later = at("2026-03-01T10:05:00.000Z");
    let usage = |budget_key: &'static str| {
        let store = Arc::clone(&store);
        async move {
            store
                .budget_usage(budget_key, BudgetWindow::Day, now)
                .await
                .unwrap()
        }
    };
    let pending = |ids: &[&str]| {
        ids.iter()
            .map(|id| ((*id).to_owned(), "circle".to_owned()))
            .collect::<Vec<_>>()
    };

    let mut open_receipts = Vec::new();
    for (id, budget_key) in [
        ("late-settled", "agent:late-s"),
        ("late-failed", "agent:late-f"),
    ] {
        let made = paying(&*store, id, budget_key, now).await;
        // In flight in the run that started it: not for a late receipt.
        let size = store.log_size().await.unwrap();
        let in_flight = store
            .commit_late_receipt(late(id, settled("tx-early"), RUN_A, later))
            .await
            .unwrap();
        assert!(in_flight.is_none());
        assert_eq!(store.log_size().await.unwrap(), size);
        // Its receipt leaves it open.
        let (_, bytes) = store
            .commit_receipt(ReceiptCommit {
                decision_id: id.into(),
                settlement: BudgetSettlement::Keep,
                build: receipt_builder(id, made.fingerprint, now),
                outcome_open: true,
            })
            .await
            .unwrap();
        open_receipts.push((made.fingerprint, bytes));
    }
    assert_eq!(
        usage("agent:late-s").await,
        BudgetUsage {
            reserved: 30,
            captured: 0
        }
    );

    // Receipts that close the outcome: captured, and kept but not left open (a failure the
    // rail reported). Nothing to receipt late for either; neither awaits any more.
    for (id, settlement) in [
        ("late-captured", BudgetSettlement::Capture),
        ("late-kept", BudgetSettlement::Keep),
    ] {
        let made = paying(&*store, id, "agent:late-c", now).await;
        store
            .commit_receipt(ReceiptCommit {
                decision_id: id.into(),
                settlement,
                build: receipt_builder(id, made.fingerprint, now),
                outcome_open: false,
            })
            .await
            .unwrap();
        let size = store.log_size().await.unwrap();
        let nothing = store
            .commit_late_receipt(late(id, LateOutcome::Failed, RUN_B, later))
            .await
            .unwrap();
        assert!(nothing.is_none(), "{id}");
        assert_eq!(store.log_size().await.unwrap(), size);
    }
    // A decision no rail pays never awaits anything.
    let plain = decision("late-plain", now, Outcome::Allow, &[]);
    store.commit_decision(plain.commit).await.unwrap();
    let nothing = store
        .commit_late_receipt(late("late-plain", LateOutcome::Failed, RUN_B, later))
        .await
        .unwrap();
    assert!(nothing.is_none());
    let missing = store
        .commit_late_receipt(late("late-missing", LateOutcome::Failed, RUN_B, later))
        .await;
    assert!(
        matches!(missing, Err(StoreError::Invalid(_))),
        "{missing:?}"
    );

    // Cut off mid-call: consumed by run A, never receipted; run B receipts it, composing
    // nothing (there is nothing to compose).
    let orphan = paying(&*store, "late-orphan", "agent:late-o", now).await;
    assert_eq!(
        store.awaiting_outcomes().await.unwrap(),
        pending(&["late-failed", "late-orphan", "late-settled"])
    );
    let (_, bytes) = store
        .commit_late_receipt(late("late-orphan", settled("tx-orphan"), RUN_B, later))
        .await
        .unwrap()
        .unwrap();
    let verifier =
        trustos_kernel::verify::Verifier::new(TrustedKeys::new([key().public().clone()]));
    let receipt = verifier
        .verify_receipt(std::str::from_utf8(&bytes).unwrap())
        .unwrap()
        .receipt;
    assert_eq!(receipt.fingerprint, orphan.fingerprint);
    assert!(receipt.composes.is_empty());
    assert_eq!(receipt.settlement.unwrap().reference, "tx-orphan");
    assert_eq!(
        usage("agent:late-o").await,
        BudgetUsage {
            reserved: 0,
            captured: 30
        }
    );

    // Abandoned (the run ended before it asked the rail): never for a payment in flight in
    // the asking run, never after a receipt left the outcome open (the rail was asked); a
    // payment another run never receipted is receipted `failed`, composing nothing, with its
    // reservation released.
    paying(&*store, "late-abandoned", "agent:late-a", now).await;
    let size = store.log_size().await.unwrap();
    for (id, owner) in [("late-abandoned", RUN_A), ("late-settled", RUN_B)] {
        let refused = store
            .commit_late_receipt(late(id, LateOutcome::Abandoned, owner, later))
            .await
            .unwrap();
        assert!(refused.is_none(), "{id} by {owner}");
    }
    assert_eq!(store.log_size().await.unwrap(), size);
    assert_eq!(usage("agent:late-a").await.reserved, 30);
    let (_, bytes) = store
        .commit_late_receipt(late("late-abandoned", LateOutcome::Abandoned, RUN_B, later))
        .await
        .unwrap()
        .unwrap();
    let receipt = verifier
        .verify_receipt(std::str::from_utf8(&bytes).unwrap())
        .unwrap()
        .receipt;
    assert_eq!(receipt.status, ExecutionStatus::Failed);
    assert!(receipt.settlement.is_none());
    assert!(receipt.composes.is_empty());
    assert_eq!(usage("agent:late-a").await, BudgetUsage::default());
    assert_eq!(
        store.awaiting_outcomes().await.unwrap(),
        pending(&["late-failed", "late-settled"])
    );

    // A builder failure appends nothing and settles nothing: the outcome stays open.
    let size = store.log_size().await.unwrap();
    let failed = store
        .commit_late_receipt(LateReceiptCommit {
            decision_id: "late-settled".into(),
            outcome: settled("tx-1"),
            owner: RUN_B.into(),
            build: Box::new(|_| Err("signer unavailable".into())),
        })
        .await;
    assert!(matches!(failed, Err(StoreError::Invalid(_))), "{failed:?}");
    assert_eq!(store.log_size().await.unwrap(), size);
    assert_eq!(usage("agent:late-s").await.reserved, 30);

    // 16 racing callers (webhook, reconciliation, in-doubt check…), even of the run that left
    // it open: exactly one receipt.
    let racers: Vec<_> = (0..16)
        .map(|racer| {
            let store = Arc::clone(&store);
            let owner = if racer % 2 == 0 { RUN_A } else { RUN_B };
            tokio::spawn(async move {
                store
                    .commit_late_receipt(late("late-settled", settled("tx-1"), owner, later))
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut committed = Vec::new();
    for racer in racers {
        if let Some(receipt) = racer.await.unwrap() {
            committed.push(receipt);
        }
    }
    assert_eq!(committed.len(), 1);
    assert_eq!(store.log_size().await.unwrap(), size + 1);
    assert_eq!(
        store.awaiting_outcomes().await.unwrap(),
        pending(&["late-failed"])
    );
    let (index, bytes) = committed.remove(0);
    assert_eq!(index, size);
    let late_receipt = verifier
        .verify_receipt(std::str::from_utf8(&bytes).unwrap())
        .unwrap()
        .receipt;
    assert_eq!(late_receipt.log_index.get(), index);
    assert_eq!(late_receipt.fingerprint, open_receipts[0].0);
    assert_eq!(
        late_receipt.started_at, now,
        "started when the decision was consumed"
    );
    assert_eq!(late_receipt.composes, vec![Digest::of(&open_receipts[0].1)]);
    let settlement = late_receipt.settlement.unwrap();
    assert_eq!(settlement.reference, "tx-1");
    assert_eq!(settlement.rail, "circle");
    assert_eq!(settlement.network, "eip155:84532");
    assert_eq!(settlement.asset, "usdc");
    assert_eq!(settlement.amount, Amount::from(30u128));
    assert_eq!(
        usage("agent:late-s").await,
        BudgetUsage {
            reserved: 0,
            captured: 30
        }
    );

    // A failure releases the reservation and names no settlement.
    let released = store
        .commit_late_receipt(late("late-failed", LateOutcome::Failed, RUN_A, later))
        .await
        .unwrap()
        .unwrap();
    let late_receipt = verifier
        .verify_receipt(std::str::from_utf8(&released.1).unwrap())
        .unwrap()
        .receipt;
    assert!(late_receipt.settlement.is_none());
    assert_eq!(late_receipt.composes, vec![Digest::of(&open_receipts[1].1)]);
    assert_eq!(usage("agent:late-f").await, BudgetUsage::default());
    // And never twice.
    let again = store
        .commit_late_receipt(late("late-failed", settled("tx-2"), RUN_B, later))
        .await
        .unwrap();
    assert!(again.is_none());
    assert_eq!(store.log_size().await.unwrap(), size + 2);
    assert!(store.awaiting_outcomes().await.unwrap().is_empty());
    check_log_integrity(&*store).await;
}

async fn check_unused_reservations_expire<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let budget = [("agent:expiry", BudgetWindow::Day, 60, 100)];
    let unused = decision("expiry-unused", now, Outcome::Allow, &budget);
    store.commit_decision(unused.commit).await.unwrap();
    // While it holds 60, another 60 does not fit.
    let second = decision("expiry-second", now, Outcome::Allow, &budget);
    assert!(matches!(
        store.commit_decision(second.commit).await,
        Err(CommitError::BudgetExceeded { spent: 60, .. })
    ));
    // A consumed decision keeps its reservation past expiry (money may have moved).
    let later = now.checked_add_millis(1_000).unwrap();
    let small = [("agent:expiry", BudgetWindow::Day, 40, 100)];
    let used = decision("expiry-used", later, Outcome::Allow, &small);
    store.commit_decision(used.commit).await.unwrap();
    assert_eq!(
        store
            .consume_decision("expiry-used", &used.fingerprint, later)
            .await
            .unwrap(),
        ConsumeOutcome::Consumed
    );
    let after_expiry = now.checked_add_millis(120_000).unwrap();
    assert_eq!(store.release_expired(after_expiry).await.unwrap(), 1);
    assert_eq!(
        store
            .budget_usage("agent:expiry", BudgetWindow::Day, now)
            .await
            .unwrap(),
        BudgetUsage {
            reserved: 40,
            captured: 0
        }
    );
    assert_eq!(store.release_expired(after_expiry).await.unwrap(), 0);
}

async fn check_window_rollover<S: Store>(store: Arc<S>) {
    // Fixed daily window: full at 23:59:59.999, empty again at 00:00:00.000 UTC.
    let before = at("2026-03-01T23:59:59.999Z");
    let midnight = at("2026-03-02T00:00:00.000Z");
    let day = [("agent:roll", BudgetWindow::Day, 100, 100)];
    store
        .commit_decision(decision("roll-1", before, Outcome::Allow, &day).commit)
        .await
        .unwrap();
    assert!(matches!(
        store
            .commit_decision(decision("roll-2", before, Outcome::Allow, &day).commit)
            .await,
        Err(CommitError::BudgetExceeded { .. })
    ));
    store
        .commit_decision(decision("roll-3", midnight, Outcome::Allow, &day).commit)
        .await
        .unwrap();
    assert_eq!(
        store
            .budget_usage("agent:roll", BudgetWindow::Day, before)
            .await
            .unwrap()
            .reserved,
        100
    );
    assert_eq!(
        store
            .budget_usage("agent:roll", BudgetWindow::Day, midnight)
            .await
            .unwrap()
            .reserved,
        100
    );
    // Monthly window across the month boundary at midnight UTC.
    let month = [("tenant:roll", BudgetWindow::Month, 500, 500)];
    store
        .commit_decision(
            decision(
                "roll-m1",
                at("2026-03-31T23:59:59.999Z"),
                Outcome::Allow,
                &month,
            )
            .commit,
        )
        .await
        .unwrap();
    store
        .commit_decision(
            decision(
                "roll-m2",
                at("2026-04-01T00:00:00.000Z"),
                Outcome::Allow,
                &month,
            )
            .commit,
        )
        .await
        .unwrap();
    // Rolling hour: the charge at 23:30 still counts at 00:29:59.999 and not at 00:30. It is
    // consumed, so its reservation outlives the decision's own expiry.
    let hour = BudgetWindow::Rolling { millis: 3_600_000 };
    let rolling = [("payee:roll", hour, 70, 100)];
    let first_at = at("2026-03-01T23:30:00.000Z");
    let first = decision("roll-r1", first_at, Outcome::Allow, &rolling);
    store.commit_decision(first.commit).await.unwrap();
    assert_eq!(
        store
            .consume_decision("roll-r1", &first.fingerprint, first_at)
            .await
            .unwrap(),
        ConsumeOutcome::Consumed
    );
    let refused = store
        .commit_decision(
            decision(
                "roll-r2",
                at("2026-03-02T00:29:59.999Z"),
                Outcome::Allow,
                &rolling,
            )
            .commit,
        )
        .await;
    assert!(
        matches!(refused, Err(CommitError::BudgetExceeded { spent: 70, .. })),
        "{refused:?}"
    );
    store
        .commit_decision(
            decision(
                "roll-r3",
                at("2026-03-02T00:30:00.000Z"),
                Outcome::Allow,
                &rolling,
            )
            .commit,
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .budget_usage("payee:roll", hour, at("2026-03-02T00:30:00.000Z"))
            .await
            .unwrap()
            .reserved,
        70
    );
}

async fn check_idempotency<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let request = Digest::of(b"request A");
    let other = Digest::of(b"request B");
    let ttl = 24 * 3_600_000;
    assert_eq!(
        store
            .begin_idempotent("idem-1", &request, ttl, now)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    // A concurrent duplicate is in flight; the same key for other content is a mismatch.
    assert_eq!(
        store
            .begin_idempotent("idem-1", &request, ttl, now)
            .await
            .unwrap(),
        IdempotencyBegin::InFlight
    );
    assert_eq!(
        store
            .begin_idempotent("idem-1", &other, ttl, now)
            .await
            .unwrap(),
        IdempotencyBegin::Mismatch
    );
    let response = b"{\"result\":  [1, 2.50, \"\\u00e9\"]}\n\x00\xff".to_vec();
    assert!(
        store
            .complete_idempotent("idem-1", &other, response.clone())
            .await
            .is_err()
    );
    store
        .complete_idempotent("idem-1", &request, response.clone())
        .await
        .unwrap();
    assert!(
        store
            .complete_idempotent("idem-1", &request, b"again".to_vec())
            .await
            .is_err()
    );
    // Replays return the stored bytes exactly, from many concurrent callers.
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .begin_idempotent("idem-1", &request, ttl, now)
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        assert_eq!(
            task.await.unwrap(),
            IdempotencyBegin::Replay(response.clone())
        );
    }
    assert_eq!(
        store
            .begin_idempotent("idem-1", &other, ttl, now)
            .await
            .unwrap(),
        IdempotencyBegin::Mismatch
    );
    // 64 concurrent first uses of one key: exactly one starts.
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .begin_idempotent("idem-2", &request, ttl, now)
                .await
                .unwrap()
        }));
    }
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            IdempotencyBegin::Started => started += 1,
            IdempotencyBegin::InFlight => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(started, 1);
    // An abandoned request can be retried; an expired key starts afresh.
    store.abandon_idempotent("idem-2", &request).await.unwrap();
    assert_eq!(
        store
            .begin_idempotent("idem-2", &request, ttl, now)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
    let expired = now.checked_add_millis(ttl).unwrap();
    assert_eq!(
        store
            .begin_idempotent("idem-1", &other, ttl, expired)
            .await
            .unwrap(),
        IdempotencyBegin::Started
    );
}

async fn check_nonces_and_records<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let until = now.checked_add_millis(1_000).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .reserve_nonce("eip155:8453/usdc/0xpayer", "0x01", until, now)
                .await
                .unwrap()
        }));
    }
    let mut fresh = 0;
    for task in tasks {
        if task.await.unwrap() == NonceOutcome::Fresh {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(
        store
            .reserve_nonce("another-scope", "0x01", until, now)
            .await
            .unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        store
            .reserve_nonce("eip155:8453/usdc/0xpayer", "0x01", until, until)
            .await
            .unwrap(),
        NonceOutcome::Fresh
    );

    assert_eq!(store.load_record("dispute", "d1").await.unwrap(), None);
    assert_eq!(
        store
            .compare_and_set("dispute", "d1", Some(1), b"x".to_vec())
            .await
            .unwrap(),
        CasOutcome::Conflict(None)
    );
    assert_eq!(
        store
            .compare_and_set("dispute", "d1", None, b"opened".to_vec())
            .await
            .unwrap(),
        CasOutcome::Stored(1)
    );
    // Racing writers on version 1: exactly one wins.
    let mut tasks = Vec::new();
    for writer in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .compare_and_set(
                    "dispute",
                    "d1",
                    Some(1),
                    format!("by {writer}").into_bytes(),
                )
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            CasOutcome::Stored(2) => won += 1,
            CasOutcome::Conflict(Some(2)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(
        store
            .load_record("dispute", "d1")
            .await
            .unwrap()
            .unwrap()
            .version,
        2
    );

    // Listing one kind returns its records by id and nothing of the kinds around it.
    for (kind, id) in [
        ("dispute", "d0"),
        ("disputes", "x"),
        ("dispat", "y"),
        ("tool-pin", "a/b"),
    ] {
        assert!(matches!(
            store
                .compare_and_set(kind, id, None, id.as_bytes().to_vec())
                .await
                .unwrap(),
            CasOutcome::Stored(1)
        ));
    }
    let listed = store.list_records("dispute").await.unwrap();
    let ids: Vec<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["d0", "d1"]);
    assert_eq!(listed[1].1.version, 2);
    assert_eq!(listed[0].1.body, b"d0");
    assert!(store.list_records("nothing").await.unwrap().is_empty());
}

/// A decision committed with `consume` is already used, and its reservation is never released
/// as "expired unused": the gateway forwarded it.
async fn check_commit_and_consume<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    let day = BudgetWindow::Day;
    let mut made = decision(
        "forwarded",
        now,
        Outcome::Allow,
        &[("b@agent", day, 40, 100)],
    );
    made.commit.consume = true;
    store.commit_decision(made.commit).await.unwrap();
    assert_eq!(
        store
            .consume_decision("forwarded", &made.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::AlreadyUsed
    );
    let later = now.checked_add_millis(3_600_000).unwrap();
    store.release_expired(later).await.unwrap();
    let usage = store.budget_usage("b@agent", day, now).await.unwrap();
    assert_eq!(
        usage.reserved, 40,
        "a consumed reservation was released as unused"
    );
    // A deny committed with `consume` is not consumable either way.
    let mut denied = decision("denied", now, Outcome::Deny, &[]);
    denied.commit.consume = true;
    store.commit_decision(denied.commit).await.unwrap();
    assert_eq!(
        store
            .consume_decision("denied", &denied.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::NotAllowed
    );
}

async fn check_log_proofs<S: Store>(store: Arc<S>) {
    let now = at("2026-03-01T10:00:00.000Z");
    for index in 0..37 {
        store
            .commit_decision(decision(&format!("proof-{index}"), now, Outcome::Deny, &[]).commit)
            .await
            .unwrap();
    }
    let entries = check_log_integrity(&*store).await;
    let size = entries.len() as u64;
    let root = store.log_root(size).await.unwrap();
    for (index, entry) in entries.iter().enumerate() {
        let index = index as u64;
        for tree_size in [index + 1, size] {
            let proof = store.inclusion_proof(index, tree_size).await.unwrap();
            let tree_root = store.log_root(tree_size).await.unwrap();
            merkle::verify_inclusion(
                &merkle::leaf_hash(entry),
                index,
                tree_size,
                &proof,
                &tree_root,
            )
            .unwrap();
        }
    }
    for old in 1..size {
        let proof = store.consistency_proof(old, size).await.unwrap();
        let old_root = store.log_root(old).await.unwrap();
        merkle::verify_consistency(old, size, &old_root, &root, &proof).unwrap();
    }
    assert!(store.inclusion_proof(size, size).await.is_err());
    assert!(store.inclusion_proof(0, size + 1).await.is_err());
    let checkpoint = store.checkpoint().await.unwrap();
    assert_eq!(checkpoint.checkpoint.size, size);
    assert_eq!(checkpoint.checkpoint.root, root);
    let verifier = (ORIGIN.to_owned(), *key().public().verifying_key());
    trustos_kernel::checkpoint::open_checkpoint(&checkpoint.note, ORIGIN, &[verifier]).unwrap();
}

// ---------------------------------------------------------------------------------------------
// The redb backend runs every check.

fn open_redb(dir: &Path) -> RedbStore {
    RedbStore::open(&dir.join("trustos.redb"), key(), ORIGIN).unwrap()
}

macro_rules! redb_checks {
    ($($name:ident => $check:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let store = Arc::new(open_redb(&scratch(stringify!($name))));
            $check(store).await;
        }
    )*};
}

redb_checks! {
    redb_consume_race => check_consume_race,
    redb_budget_race => check_budget_race,
    redb_decision_lifecycle => check_decision_lifecycle,
    redb_unused_reservations_expire => check_unused_reservations_expire,
    redb_window_rollover => check_window_rollover,
    redb_idempotency => check_idempotency,
    redb_nonces_and_records => check_nonces_and_records,
    redb_log_proofs => check_log_proofs,
    redb_commit_and_consume => check_commit_and_consume,
    redb_late_receipts => check_late_receipts,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_writer_survives_a_panicking_receipt_builder() {
    let store = open_redb(&scratch("panic"));
    let now = at("2026-03-01T10:00:00.000Z");
    let made = decision(
        "panic-1",
        now,
        Outcome::Allow,
        &[("agent:p", BudgetWindow::Day, 5, 10)],
    );
    store.commit_decision(made.commit).await.unwrap();
    let size = store.log_size().await.unwrap();
    let failed = store
        .commit_receipt(ReceiptCommit {
            decision_id: "panic-1".into(),
            settlement: BudgetSettlement::Capture,
            build: Box::new(|_| panic!("a builder bug")),
            outcome_open: false,
        })
        .await;
    assert!(failed.is_err());
    // Nothing of the batch was written, and the writer still serves.
    assert_eq!(store.log_size().await.unwrap(), size);
    assert_eq!(
        store
            .budget_usage("agent:p", BudgetWindow::Day, now)
            .await
            .unwrap(),
        BudgetUsage {
            reserved: 5,
            captured: 0
        }
    );
    assert_eq!(
        store
            .consume_decision("panic-1", &made.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::Consumed
    );
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_state_survives_a_clean_restart() {
    let dir = scratch("restart");
    let store = open_redb(&dir);
    let now = at("2026-03-01T10:00:00.000Z");
    let made = decision(
        "restart-1",
        now,
        Outcome::Allow,
        &[("agent:r", BudgetWindow::Day, 5, 10)],
    );
    store.commit_decision(made.commit).await.unwrap();
    assert_eq!(
        store
            .consume_decision("restart-1", &made.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::Consumed
    );
    store.close().await.unwrap();
    let store = open_redb(&dir);
    assert_eq!(
        store
            .consume_decision("restart-1", &made.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::AlreadyUsed
    );
    assert_eq!(
        store
            .budget_usage("agent:r", BudgetWindow::Day, now)
            .await
            .unwrap()
            .reserved,
        5
    );
    assert_eq!(store.origin(), ORIGIN);
    check_log_integrity(&store).await;
    // The database is private to the gateway's user.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("trustos.redb")), 0o600);
}

// ---------------------------------------------------------------------------------------------
// Crash: a child process commits in a loop and is killed with SIGKILL at random points.

const CHILD_DIR: &str = "TRUSTOS_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "TRUSTOS_CRASH_CHILD_ROUND";
const CHILD_TASKS: usize = 8;
const CRASH_ROUNDS: usize = 20;
const BUDGET_LIMIT: u128 = 1_000_000_000;

fn crash_now() -> Timestamp {
    at("2026-05-05T05:05:05.005Z")
}

fn crash_decision(id: &str) -> Made {
    decision(
        id,
        crash_now(),
        Outcome::Allow,
        &[("agent:crash", BudgetWindow::Month, 1, BUDGET_LIMIT)],
    )
}

/// The child half: runs only when the parent starts this binary with `CHILD_DIR` set. Prints one
/// line per acknowledged operation, each ending in " ." so a line cut by the kill is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of redb_survives_sigkill_at_random_points; not a test by itself"]
async fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let round: usize = std::env::var(CHILD_ROUND).unwrap().parse().unwrap();
    let store = Arc::new(open_redb(Path::new(&dir)));
    // The test harness has printed "test crash_child ... " without a newline: start a line.
    say("");
    say("ready .");
    let mut tasks = Vec::new();
    for task in 0..CHILD_TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            for step in 0.. {
                let id = format!("r{round}-t{task}-{step}");
                let made = crash_decision(&id);
                let index = store.commit_decision(made.commit).await.unwrap();
                say(&format!("D {id} {index} ."));
                let consumed = store
                    .consume_decision(&id, &made.fingerprint, crash_now())
                    .await
                    .unwrap();
                assert_eq!(consumed, ConsumeOutcome::Consumed);
                say(&format!("C {id} ."));
                if step % 3 == 0 {
                    let (index, bytes) = store
                        .commit_receipt(ReceiptCommit {
                            decision_id: id.clone(),
                            settlement: BudgetSettlement::Capture,
                            build: receipt_builder(&id, made.fingerprint, crash_now()),
                            outcome_open: false,
                        })
                        .await
                        .unwrap();
                    say(&format!("R {id} {index} {} .", Digest::of(&bytes)));
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Prints one line for the parent. If the parent is gone (its end of the pipe is closed), the
/// child stops at once instead of writing into the store forever.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(0);
    }
}

/// Tiny deterministic PRNG for kill delays (xorshift64*); the seed is printed on failure.
struct Random(u64);
impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }
}

#[derive(Default)]
struct Acknowledged {
    decisions: Vec<(String, u64)>,
    consumed: Vec<String>,
    receipts: Vec<(String, u64, String)>,
}

/// Kills the child however the parent leaves (a failed assertion included).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_child(dir: &Path, round: usize, kill_after: Duration) -> Acknowledged {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR, dir)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let ready = Arc::new(AtomicBool::new(false));
    let reader = {
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || {
            let mut acknowledged = Acknowledged::default();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let Some(line) = line.strip_suffix(" .") else {
                    continue;
                };
                let words: Vec<&str> = line.split(' ').collect();
                match words.as_slice() {
                    ["ready"] => ready.store(true, Ordering::SeqCst),
                    ["D", id, index] => acknowledged
                        .decisions
                        .push(((*id).to_owned(), index.parse().unwrap())),
                    ["C", id] => acknowledged.consumed.push((*id).to_owned()),
                    ["R", id, index, digest] => acknowledged.receipts.push((
                        (*id).to_owned(),
                        index.parse().unwrap(),
                        (*digest).to_owned(),
                    )),
                    _ => {}
                }
            }
            acknowledged
        })
    };
    let started = std::time::Instant::now();
    while !ready.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(ready.load(Ordering::SeqCst), "child never opened the store");
    std::thread::sleep(kill_after);
    child.0.kill().unwrap(); // SIGKILL on Unix
    child.0.wait().unwrap();
    reader.join().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_survives_sigkill_at_random_points() {
    let dir = scratch("crash");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut random = Random(seed);
    let mut total_acknowledged = 0usize;
    for round in 0..CRASH_ROUNDS {
        let kill_after = Duration::from_millis(20 + random.below(300));
        let acknowledged = run_child(&dir, round, kill_after);
        total_acknowledged += acknowledged.decisions.len();
        eprintln!(
            "round {round}: killed after {kill_after:?}: {} decisions, {} consumes, {} receipts acknowledged",
            acknowledged.decisions.len(),
            acknowledged.consumed.len(),
            acknowledged.receipts.len()
        );

        let store = open_redb(&dir);
        let context = format!("seed {seed}, round {round}, killed after {kill_after:?}");
        let entries = check_log_integrity(&store).await;
        for (id, index) in &acknowledged.decisions {
            let expected = crash_decision(id).commit.signed;
            assert_eq!(
                entries.get(*index as usize).map(Vec::as_slice),
                Some(expected.as_bytes()),
                "{context}: acknowledged decision {id} is not at log index {index}"
            );
        }
        for id in &acknowledged.consumed {
            let fingerprint = Digest::of(id.as_bytes());
            assert_eq!(
                store
                    .consume_decision(id, &fingerprint, crash_now())
                    .await
                    .unwrap(),
                ConsumeOutcome::AlreadyUsed,
                "{context}: acknowledged consume of {id} was lost"
            );
        }
        for (id, index, digest) in &acknowledged.receipts {
            let entry = entries.get(*index as usize).unwrap_or_else(|| {
                panic!("{context}: acknowledged receipt for {id} at {index} is missing")
            });
            assert_eq!(
                &Digest::of(entry).to_string(),
                digest,
                "{context}: receipt {id}"
            );
        }
        // Nothing half-written: the budget equals what the log says was decided and captured.
        let mut decided = 0u128;
        let mut receipted = 0u128;
        for entry in &entries {
            let header = std::str::from_utf8(entry)
                .unwrap()
                .split('.')
                .next()
                .unwrap();
            let header = String::from_utf8(base64_url_decode(header)).unwrap();
            if header.contains(TYP_DECISION) {
                decided += 1;
            } else if header.contains(TYP_RECEIPT) {
                receipted += 1;
            }
        }
        let usage = store
            .budget_usage("agent:crash", BudgetWindow::Month, crash_now())
            .await
            .unwrap();
        assert_eq!(
            (usage.reserved + usage.captured, usage.captured),
            (decided, receipted),
            "{context}: budget totals disagree with the log"
        );
        store.close().await.unwrap();
    }
    assert!(
        total_acknowledged >= CRASH_ROUNDS,
        "the children acknowledged only {total_acknowledged} decisions: the test proved little"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn base64_url_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Bad input: damaged, foreign, newer and full disks, and a second process.

fn open_error(path: &Path) -> StoreError {
    match RedbStore::open(path, key(), ORIGIN) {
        Ok(_) => panic!("{} opened", path.display()),
        Err(err) => err,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_refuses_foreign_files_and_never_overwrites_them() {
    let dir = scratch("foreign");
    let text = dir.join("notes.redb");
    std::fs::write(&text, b"these are not the bytes you are looking for\n").unwrap();
    let err = open_error(&text);
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
    assert!(
        err.to_string().contains(&text.display().to_string()),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&text).unwrap(),
        b"these are not the bytes you are looking for\n"
    );
    let empty = dir.join("empty.redb");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(open_error(&empty), StoreError::Foreign { .. }));

    // A redb database of someone else's.
    let other = dir.join("other.redb");
    {
        let db = redb::Database::create(&other).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, u64>::new("theirs"))
            .unwrap()
            .insert("x", 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = open_error(&other);
    assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_refuses_a_newer_schema() {
    let dir = scratch("newer");
    let path = dir.join("trustos.redb");
    open_redb(&dir).close().await.unwrap();
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
            .unwrap()
            .insert("schema_version", 2u64.to_be_bytes().as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = open_error(&path);
    assert!(
        matches!(
            err,
            StoreError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade trustos"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_reports_corruption_instead_of_resetting() {
    let dir = scratch("corrupt");
    let path = dir.join("trustos.redb");
    let store = open_redb(&dir);
    let now = at("2026-03-01T10:00:00.000Z");
    for index in 0..50 {
        store
            .commit_decision(decision(&format!("c-{index}"), now, Outcome::Deny, &[]).commit)
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let original = std::fs::read(&path).unwrap();
    // Damage the file header, then the middle of the file: neither may open as a fresh store.
    for offset in [0usize, 9, original.len() / 2] {
        let mut damaged = original.clone();
        for byte in damaged.iter_mut().skip(offset).take(64) {
            *byte ^= 0xA5;
        }
        std::fs::write(&path, &damaged).unwrap();
        match RedbStore::open(&path, key(), ORIGIN) {
            Err(err) => {
                eprintln!("offset {offset}: refused: {err}");
                assert!(
                    matches!(
                        err,
                        StoreError::Corrupt { .. }
                            | StoreError::Foreign { .. }
                            | StoreError::Io { .. }
                    ),
                    "offset {offset}: {err}"
                );
                assert!(err.to_string().contains(&path.display().to_string()));
            }
            Ok(store) => {
                // redb may recover from a damaged region it does not need; then every entry
                // must still be there and add up.
                eprintln!("offset {offset}: opened; checking every entry");
                assert_eq!(store.log_size().await.unwrap(), 50, "offset {offset}");
                check_log_integrity(&store).await;
                store.close().await.unwrap();
            }
        }
        // Never reset: the damaged bytes are still what is on disk if it was refused.
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_refuses_a_second_opener() {
    let dir = scratch("locked");
    let store = open_redb(&dir);
    let err = open_error(&dir.join("trustos.redb"));
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("another process"), "{err}");
    store.close().await.unwrap();
    open_redb(&dir).close().await.unwrap();
}

/// A file backend that starts failing writes with ENOSPC when told to.
#[derive(Debug)]
struct FillableDisk {
    inner: redb::backends::FileBackend,
    full: Arc<AtomicBool>,
    failed_writes: Arc<AtomicUsize>,
}

impl FillableDisk {
    fn check(&self) -> Result<(), std::io::Error> {
        if self.full.load(Ordering::SeqCst) {
            self.failed_writes.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}

impl StorageBackend for FillableDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<(), redb::BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(
        &self,
        start: std::ops::Bound<u64>,
        end: std::ops::Bound<u64>,
    ) -> Result<bool, redb::BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redb_full_disk_acknowledges_nothing_it_did_not_write() {
    let dir = scratch("full");
    let path = dir.join("trustos.redb");
    let full = Arc::new(AtomicBool::new(false));
    let failed_writes = Arc::new(AtomicUsize::new(0));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    let backend = FillableDisk {
        inner: redb::backends::FileBackend::new(file).unwrap(),
        full: Arc::clone(&full),
        failed_writes: Arc::clone(&failed_writes),
    };
    let store = RedbStore::open_with_backend(backend, &path, key(), ORIGIN).unwrap();
    let now = at("2026-03-01T10:00:00.000Z");
    let kept = decision(
        "full-kept",
        now,
        Outcome::Allow,
        &[("agent:full", BudgetWindow::Day, 7, 100)],
    );
    store.commit_decision(kept.commit).await.unwrap();

    full.store(true, Ordering::SeqCst);
    let lost = decision(
        "full-lost",
        now,
        Outcome::Allow,
        &[("agent:full", BudgetWindow::Day, 9, 100)],
    );
    let err = store.commit_decision(lost.commit).await.unwrap_err();
    assert!(
        failed_writes.load(Ordering::SeqCst) > 0,
        "the disk was never written"
    );
    let message = err.to_string();
    assert!(
        matches!(
            err,
            CommitError::Store(StoreError::DiskFull { .. } | StoreError::Io { .. })
        ),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        store
            .consume_decision("full-kept", &kept.fingerprint, now)
            .await
            .is_err(),
        "a consume on a full disk was acknowledged"
    );
    store.close().await.unwrap();

    // Space is back: what was acknowledged is there, what failed is not, nothing is half-done.
    let store = open_redb(&dir);
    let entries = check_log_integrity(&store).await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        store
            .consume_decision("full-lost", &lost.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::Unknown
    );
    assert_eq!(
        store
            .budget_usage("agent:full", BudgetWindow::Day, now)
            .await
            .unwrap()
            .reserved,
        7
    );
    assert_eq!(
        store
            .consume_decision("full-kept", &kept.fingerprint, now)
            .await
            .unwrap(),
        ConsumeOutcome::Consumed
    );
    store.close().await.unwrap();
}
