//! `trustos quickstart`: from nothing to an offline-verified receipt with your own gateway key.
//!
//! Walks one sample paid MCP call through everything this release has: it fingerprints the
//! exact request, signs an allow decision that reserves the call's price from a daily budget,
//! commits it atomically in the store (`$TRUSTOS_HOME/data`) with its audit-log entry, turns it
//! into a `VerifiedDecision` and consumes it exactly once as an adapter would, signs the receipt
//! with its own log index while capturing the reservation, signs a checkpoint, and verifies the
//! resulting bundle offline from the files it wrote. Every object is real and made with the key in
//! `$TRUSTOS_HOME/keys`; the policy engine and the proxy that make such decisions for a live agent
//! arrive with the following releases.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::objects::*;
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

use super::{EXIT_OK, EXIT_USAGE};
use crate::home::Home;
use crate::store::redb_store::RedbStore;
use crate::store::{
    BudgetCharge, BudgetSettlement, BudgetWindow, CommitError, ConsumeOutcome, DecisionCommit,
    EntryBuilder, ReceiptCommit, Store,
};

/// How long the sample decision stays usable.
const DECISION_TTL_MILLIS: u64 = 60_000;
/// USDC on Base Sepolia.
const USDC_BASE_SEPOLIA: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The sample call's price: 0.01 USDC in base units.
const PRICE: u128 = 10_000;
/// The sample agent's daily budget: 1 USDC.
const DAILY_LIMIT: u128 = 1_000_000;
/// The budget the sample call counts against.
const BUDGET: &str = "agent:demo-agent";

pub fn run(home: &Home) -> u8 {
    let walked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))
        .and_then(|runtime| runtime.block_on(walk(home)));
    match walked {
        Ok(()) => EXIT_OK,
        Err(err) => {
            eprintln!("trustos quickstart: {err}");
            EXIT_USAGE
        }
    }
}

fn now() -> Result<Timestamp, String> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|err| format!("system clock is before 1970: {err}"))?
        .as_millis();
    u64::try_from(millis)
        .ok()
        .and_then(|millis| Timestamp::from_unix_millis(millis).ok())
        .ok_or_else(|| "system clock is beyond 9999".to_owned())
}

fn random_id(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| format!("no randomness: {err}"))?;
    Ok(bytes
        .iter()
        .fold(prefix.to_owned(), |id, byte| id + &format!("{byte:02x}")))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|err| format!("{}: {err}", path.display()))
}

fn text<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

async fn walk(home: &Home) -> Result<(), String> {
    let (key, created) = home.load_or_create_key().map_err(text)?;
    let key = Arc::new(key);
    let out = home.root().join("quickstart");
    fs::create_dir_all(&out).map_err(|err| format!("{}: {err}", out.display()))?;
    out!("Trust OS quickstart: one paid tool call through the trust kernel and the store\n");
    out!(
        "  key       {} (kid {}, {})",
        home.key_path().display(),
        key.kid(),
        if created { "created" } else { "reused" }
    );
    let store = home
        .open_store(Arc::clone(&key), true)
        .await
        .map_err(text)?;
    out!(
        "  store     {} (log {})",
        store.path().display(),
        store.origin()
    );
    let walked = walk_with_store(&store, &key, &out).await;
    store.close().await.map_err(text)?;
    walked
}

async fn walk_with_store(store: &RedbStore, key: &GatewayKey, out: &Path) -> Result<(), String> {
    // 1. The exact request: a paid MCP tool call with its x402 payment terms.
    let arguments = json!({"query": "x402 adoption", "maxResults": 5});
    let request = RequestFingerprint::new(
        "quickstart",
        "demo-agent",
        Route::Mcp {
            server: "paid-search".into(),
            tool: "search".into(),
        },
        &arguments,
        Some(PaymentTerms {
            scheme: "exact".into(),
            network: "eip155:84532".into(),
            asset: USDC_BASE_SEPOLIA.into(),
            amount: Amount::from(PRICE),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            resource: "mcp://paid-search/search".into(),
        }),
    )
    .map_err(text)?;
    let fingerprint = request.digest().map_err(text)?;
    out!("  request   paid-search/search, 0.01 USDC on Base Sepolia -> {fingerprint}");

    // 2. A signed allow decision bound to that fingerprint, reserving its price from a daily
    //    budget of 1 USDC, committed atomically with its log entry.
    let issued_at = now()?;
    let expires_at = issued_at
        .checked_add_millis(DECISION_TTL_MILLIS)
        .ok_or("clock out of range")?;
    let window = BudgetWindow::Day;
    let (window_start, window_end) = window.bounds(issued_at);
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: random_id("dec_")?,
        fingerprint,
        outcome: Outcome::Allow,
        reason_codes: vec!["WITHIN_POLICY".into()],
        policy_ids: vec!["quickstart.daily-budget".into()],
        profile_fingerprint: Digest::of_canonical(&json!({"profile": "quickstart"}))
            .map_err(text)?,
        reservations: vec![BudgetReservation {
            budget_key: BUDGET.into(),
            asset: USDC_BASE_SEPOLIA.into(),
            amount: Amount::from(PRICE),
            window_start,
            window_end,
        }],
        issued_at,
        expires_at,
        mode: Mode::Hard,
    };
    let signed = jws::sign(key, TYP_DECISION, &decision).map_err(text)?;
    let commit = DecisionCommit {
        decision: decision.clone(),
        signed: signed.clone(),
        charges: vec![BudgetCharge {
            budget_key: BUDGET.into(),
            window,
            amount: PRICE,
            limit: DAILY_LIMIT,
        }],
    };
    let decision_index = match store.commit_decision(commit).await {
        Ok(index) => index,
        Err(CommitError::BudgetExceeded { spent, .. }) => {
            return Err(format!(
                "today's quickstart budget is spent ({spent} of {DAILY_LIMIT} base units): \
                 the store refused to reserve more, which is the point; try again tomorrow (UTC) \
                 or with another --home"
            ));
        }
        Err(err) => return Err(err.to_string()),
    };
    write(&out.join("decision.jws"), format!("{signed}\n").as_bytes())?;
    out!(
        "  decision  allow {} (expires {}) at log index {decision_index} -> decision.jws",
        decision.decision_id,
        expires_at
    );

    // 3. What an adapter does before money moves: recompute the fingerprint, verify, and
    //    consume the decision exactly once, durably.
    let keys = TrustedKeys::new([key.public().clone()]);
    let verified = Verifier::new(keys.clone())
        .verify_decision(&signed, &request.digest().map_err(text)?, now()?)
        .map_err(|err| format!("decision did not verify: {err}"))?;
    let consumed = store
        .consume_decision(verified.decision_id(), verified.fingerprint(), now()?)
        .await
        .map_err(text)?;
    if consumed != ConsumeOutcome::Consumed {
        return Err(format!("decision could not be consumed: {consumed:?}"));
    }
    let again = store
        .consume_decision(verified.decision_id(), verified.fingerprint(), now()?)
        .await
        .map_err(text)?;
    out!(
        "  verified  VerifiedDecision for the exact request; consumed once (a second use: {again:?})"
    );

    // 4. The receipt, signed with its own log index, capturing the reservation atomically.
    let started_at = now()?;
    let completed_at = now()?;
    let receipt_id = random_id("rcpt_")?;
    let result_digest =
        Digest::of_canonical(&json!({"content": [{"type": "text", "text": "sample result"}]}))
            .map_err(text)?;
    let receipt_key = GatewayKey::from_signing_key(key.signing_key().clone());
    let decision_id = decision.decision_id.clone();
    let build: EntryBuilder = Box::new(move |index| {
        let receipt = Receipt {
            object_type: ReceiptType::V1,
            receipt_id,
            decision_id,
            fingerprint,
            status: ExecutionStatus::Completed,
            result_digest: Some(result_digest),
            settlement: None,
            started_at,
            completed_at,
            log_index: SafeIndex::new(index).map_err(text)?,
            composes: vec![],
        };
        jws::sign(&receipt_key, TYP_RECEIPT, &receipt)
            .map(String::into_bytes)
            .map_err(text)
    });
    let (receipt_index, receipt_bytes) = store
        .commit_receipt(ReceiptCommit {
            decision_id: decision.decision_id.clone(),
            settlement: BudgetSettlement::Capture,
            build,
        })
        .await
        .map_err(text)?;
    let receipt_jws = String::from_utf8(receipt_bytes).map_err(text)?;
    write(
        &out.join("receipt.jws"),
        format!("{receipt_jws}\n").as_bytes(),
    )?;
    let usage = store
        .budget_usage(BUDGET, window, issued_at)
        .await
        .map_err(text)?;
    out!(
        "  receipt   at log index {receipt_index} -> receipt.jws; budget {BUDGET} today: {} of {DAILY_LIMIT} captured",
        usage.captured
    );

    // 5. A signed checkpoint and an inclusion proof: the bundle anyone can check offline.
    let checkpoint = store.checkpoint().await.map_err(text)?;
    let proof = store
        .inclusion_proof(receipt_index, checkpoint.checkpoint.size)
        .await
        .map_err(text)?;
    let bundle = ReceiptBundle::new(
        receipt_jws,
        SafeIndex::new(receipt_index).map_err(text)?,
        SafeIndex::new(checkpoint.checkpoint.size).map_err(text)?,
        &proof,
        checkpoint.note,
    );
    write(&out.join("bundle.json"), &bundle.to_json_pretty())?;
    let mut jwks = serde_json::to_vec_pretty(&keys.to_jwks()).map_err(text)?;
    jwks.push(b'\n');
    write(&out.join("jwks.json"), &jwks)?;
    out!(
        "  logged    checkpoint of {} entries signed for {} -> bundle.json",
        checkpoint.checkpoint.size,
        checkpoint.checkpoint.origin
    );

    // 6. Offline verification of the bundle, from the files just written.
    let written = fs::read(out.join("bundle.json")).map_err(text)?;
    let published = TrustedKeys::from_jwks_json(&jwks).map_err(text)?;
    let checked = ReceiptBundle::from_json(&written)
        .and_then(|bundle| bundle.verify(&published))
        .map_err(|err| format!("bundle did not verify: {err} ({})", err.reason_code()))?;
    out!(
        "  checked   receipt {} included at index {} of {} under a signed checkpoint\n",
        checked.receipt.receipt_id,
        checked.leaf_index,
        checked.tree_size
    );
    out!("Verify it yourself, offline, with only the public keys:");
    out!(
        "  trustos verify {} --jwks {}",
        out.join("bundle.json").display(),
        out.join("jwks.json").display()
    );
    out!("  trustos log prove --index {receipt_index}    # the same proof, fresh from the log");
    Ok(())
}
