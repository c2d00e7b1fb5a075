//! `trustos quickstart`: from nothing to an offline-verified receipt with your own gateway key.
//!
//! Walks one sample paid MCP call through everything this release has: the embedded default
//! profile (written to `$TRUSTOS_HOME/profiles/quickstart/` to be edited) decides it with the
//! store's budget totals; the signed decision is committed atomically with its reservation and
//! audit-log entry; it becomes a `VerifiedDecision` and is consumed exactly once, as an adapter
//! would; the receipt is signed with its own log index while capturing the reservation; a signed
//! checkpoint and an inclusion proof make a bundle that is verified offline from the files
//! written. Exit 0 when verified, 1 when the profile denies or holds the call (its reasons and
//! remediation are printed), 2 on errors. The proxy that does this for a live agent arrives with
//! the following release.

use std::fs;
use std::path::{Path, PathBuf};
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

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::home::Home;
use crate::policy::engine::{Call, Intent, decide_with_store};
use crate::policy::{self, Compiled};
use crate::store::redb_store::RedbStore;
use crate::store::{
    BudgetSettlement, CommitError, ConsumeOutcome, DecisionCommit, EntryBuilder, ReceiptCommit,
    Store,
};

/// How long the sample decision stays usable.
const DECISION_TTL_MILLIS: u64 = 60_000;
/// The sample call's price: 0.01 USDC in base units.
const PRICE: u128 = 10_000;
/// The sample payee.
const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// The built-in quickstart profile.
const QUICKSTART_PROFILE: &str = include_str!("quickstart.profile.toml");

pub fn run(home: &Home) -> u8 {
    let walked = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))
        .and_then(|runtime| runtime.block_on(walk(home)));
    match walked {
        Ok(Walked::Verified) => EXIT_OK,
        Ok(Walked::Refused) => EXIT_INVALID,
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

async fn walk(home: &Home) -> Result<Walked, String> {
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
    let walked = walk_with_store(home, &store, &key, &out).await;
    store.close().await.map_err(text)?;
    walked
}

/// Reads the quickstart profile from the home, writing the built-in one there the first time.
fn quickstart_profile(home: &Home) -> Result<(PathBuf, Compiled), String> {
    let dir = home.root().join("profiles").join("quickstart");
    let path = dir.join("profile.toml");
    if !path.exists() {
        fs::create_dir_all(&dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        write(&path, QUICKSTART_PROFILE.as_bytes())?;
    }
    let compiled = policy::open(&path).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        format!(
            "the quickstart profile is invalid (fix it or delete it to get the original back):\n{}",
            lines.join("\n")
        )
    })?;
    Ok((path, compiled))
}

/// How the walk ended.
enum Walked {
    /// Allowed, paid (in the sample), receipted and verified.
    Verified,
    /// The profile denied or held the call; its decision is logged.
    Refused,
}

async fn walk_with_store(
    home: &Home,
    store: &RedbStore,
    key: &Arc<GatewayKey>,
    out: &Path,
) -> Result<Walked, String> {
    // 1. The profile (the embedded default, kept in the home so it can be edited).
    let (profile_path, compiled) = quickstart_profile(home)?;
    out!(
        "  profile   {} ({})",
        profile_path.display(),
        compiled.fingerprint
    );

    // 2. The call: a paid MCP tool whose arguments carry its price.
    let arguments = json!({
        "query": "x402 adoption",
        "maxResults": 5,
        "price": {"amount": PRICE.to_string(), "asset": "usdc", "network": "eip155:84532", "payTo": PAYEE},
    });
    let intent = Intent {
        tenant: "quickstart".into(),
        agent: "demo-agent".into(),
        session: None,
        call: Call::Mcp {
            server: "paid-search".into(),
            tool: "search".into(),
        },
        arguments: arguments.clone(),
        payment: None,
    };
    let issued_at = now()?;
    let evaluation = decide_with_store(&compiled, store, &intent, issued_at)
        .await
        .map_err(text)?;
    let payment = evaluation
        .payment
        .clone()
        .ok_or("the profile found no price in the call")?;
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
            network: payment.network.clone(),
            asset: payment.asset.clone(),
            amount: Amount::from(payment.amount),
            pay_to: payment.payee.clone(),
            resource: "mcp://paid-search/search".into(),
            payer: None,
            offer_digest: None,
        }),
    )
    .map_err(text)?;
    let fingerprint = request.digest().map_err(text)?;
    out!("  request   paid-search/search, 0.01 USDC on Base Sepolia -> {fingerprint}");

    // 3. The policy's decision, signed, committed atomically with its budget reservations and
    //    its log entry (the store re-checks every budget).
    let expires_at = issued_at
        .checked_add_millis(DECISION_TTL_MILLIS)
        .ok_or("clock out of range")?;
    let allowed = evaluation.outcome == Outcome::Allow;
    let reservations = if allowed {
        evaluation.reservations(issued_at)
    } else {
        Vec::new()
    };
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: random_id("dec_")?,
        fingerprint,
        outcome: evaluation.outcome,
        reason_codes: evaluation.reasons.clone(),
        policy_ids: evaluation.policies.clone(),
        profile_fingerprint: evaluation.profile_fingerprint,
        reservations,
        issued_at,
        expires_at,
        mode: evaluation.mode,
    };
    let signed = jws::sign(key, TYP_DECISION, &decision).map_err(text)?;
    let commit = DecisionCommit {
        consume: false,
        decision: decision.clone(),
        signed: signed.clone(),
        charges: if allowed {
            evaluation.budget_charges()
        } else {
            Vec::new()
        },
    };
    let decision_index = match store.commit_decision(commit).await {
        Ok(index) => index,
        Err(CommitError::BudgetExceeded {
            budget_key, spent, ..
        }) => {
            return Err(format!(
                "the store refused the reservation: {budget_key} has {spent} spent (another \
                 call took the budget between the decision and its commit); run it again"
            ));
        }
        Err(err) => return Err(err.to_string()),
    };
    if !allowed {
        write(&out.join("decision.jws"), format!("{signed}\n").as_bytes())?;
        out!(
            "  decision  {} {} at log index {decision_index} -> decision.jws",
            decision.outcome.as_str(),
            decision.decision_id
        );
        for reason in &decision.reason_codes {
            out!("    {reason}: {}", policy::reasons::remediation(reason));
        }
        out!(
            "\nThe profile {} this call, so nothing was paid: that is the gateway working. Edit {} \
             (or wait for the budget window) and run the quickstart again.",
            if decision.outcome == Outcome::Challenge {
                "holds"
            } else {
                "denies"
            },
            profile_path.display()
        );
        return Ok(Walked::Refused);
    }
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
    // The builder runs on the store's writer thread: it shares the key, never copies it.
    let receipt_key = Arc::clone(key);
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
    let mut spent = Vec::new();
    for charge in &evaluation.charges {
        let usage = store
            .budget_usage(&charge.budget_key, charge.window, issued_at)
            .await
            .map_err(text)?;
        spent.push(format!(
            "{} {} of {} captured",
            charge.budget_id, usage.captured, charge.limit
        ));
    }
    out!(
        "  receipt   at log index {receipt_index} -> receipt.jws; budgets: {}",
        spent.join(", ")
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
    Ok(Walked::Verified)
}
