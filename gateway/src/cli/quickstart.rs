//! `trustos quickstart`: from nothing to an offline-verified receipt with your own gateway key.
//!
//! This release ships the trust kernel, so the quickstart walks a sample paid MCP call through
//! the kernel's part of the path: it fingerprints the exact request, signs an allow decision,
//! turns it into a `VerifiedDecision` exactly as an adapter would, signs the receipt, appends both
//! to a Merkle log, signs a checkpoint, and verifies the resulting bundle offline. Every object is
//! real and made with the key in `$TRUSTOS_HOME/keys`; the policy engine and proxy that will make
//! such decisions for a live agent arrive with the following releases.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::checkpoint::Checkpoint;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::merkle::MemoryTree;
use trustos_kernel::objects::*;
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

use super::{EXIT_OK, EXIT_USAGE};
use crate::keyfile;

/// How long the sample decision stays usable.
const DECISION_TTL_MILLIS: u64 = 60_000;

pub fn run(home: &Path) -> u8 {
    match walk(home) {
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

fn load_or_create_key(home: &Path) -> Result<(GatewayKey, PathBuf, bool), String> {
    let dir = home.join("keys");
    let path = dir.join(keyfile::PRIVATE_KEY_FILE);
    if path.exists() {
        let key = keyfile::read_private_key(&path).map_err(|err| err.to_string())?;
        return Ok((key, path, false));
    }
    let key = keyfile::generate().map_err(|err| err.to_string())?;
    keyfile::write_key_pair(&dir, &key).map_err(|err| err.to_string())?;
    Ok((key, path, true))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|err| format!("{}: {err}", path.display()))
}

fn walk(home: &Path) -> Result<(), String> {
    let (key, key_path, created) = load_or_create_key(home)?;
    let out = home.join("quickstart");
    fs::create_dir_all(&out).map_err(|err| format!("{}: {err}", out.display()))?;
    out!("Trust OS quickstart: one paid tool call through the trust kernel\n");
    out!(
        "  key       {} (kid {}, {})",
        key_path.display(),
        key.kid(),
        if created { "created" } else { "reused" }
    );

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
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            amount: Amount::from(10_000),
            pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
            resource: "mcp://paid-search/search".into(),
        }),
    )
    .map_err(|err| err.to_string())?;
    let fingerprint = request.digest().map_err(|err| err.to_string())?;
    out!("  request   paid-search/search, 0.01 USDC on Base Sepolia -> {fingerprint}");

    // 2. A signed allow decision bound to that fingerprint.
    let issued_at = now()?;
    let expires_at = issued_at
        .checked_add_millis(DECISION_TTL_MILLIS)
        .ok_or("clock out of range")?;
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: random_id("dec_")?,
        fingerprint,
        outcome: Outcome::Allow,
        reason_codes: vec!["WITHIN_POLICY".into()],
        policy_ids: vec!["quickstart.allow-sample".into()],
        profile_fingerprint: Digest::of_canonical(&json!({"profile": "quickstart"}))
            .map_err(|err| err.to_string())?,
        reservations: vec![],
        issued_at,
        expires_at,
        mode: Mode::Hard,
    };
    let decision_jws = jws::sign(&key, TYP_DECISION, &decision).map_err(|err| err.to_string())?;
    write(
        &out.join("decision.jws"),
        format!("{decision_jws}\n").as_bytes(),
    )?;
    out!(
        "  decision  allow {} (expires {}) -> decision.jws",
        decision.decision_id,
        expires_at
    );

    // 3. What an adapter does before money moves: recompute the fingerprint, verify.
    let keys = TrustedKeys::new([key.public().clone()]);
    let verified = Verifier::new(keys.clone())
        .verify_decision(
            &decision_jws,
            &request.digest().map_err(|err| err.to_string())?,
            now()?,
        )
        .map_err(|err| format!("decision did not verify: {err}"))?;
    out!(
        "  verified  VerifiedDecision {} for the exact request, key {}",
        verified.decision_id(),
        verified.kid()
    );

    // 4. Receipt, log, checkpoint, bundle.
    let mut log = MemoryTree::new();
    log.append(decision_jws.as_bytes());
    let started_at = now()?;
    let receipt = Receipt {
        object_type: ReceiptType::V1,
        receipt_id: random_id("rcpt_")?,
        decision_id: decision.decision_id.clone(),
        fingerprint,
        status: ExecutionStatus::Completed,
        result_digest: Some(
            Digest::of_canonical(&json!({"content": [{"type": "text", "text": "sample result"}]}))
                .map_err(|err| err.to_string())?,
        ),
        settlement: None,
        started_at,
        completed_at: now()?,
        log_index: SafeIndex::new(log.size()).map_err(|err| err.to_string())?,
        composes: vec![],
    };
    let receipt_jws = jws::sign(&key, TYP_RECEIPT, &receipt).map_err(|err| err.to_string())?;
    let leaf_index = log.append(receipt_jws.as_bytes());
    write(
        &out.join("receipt.jws"),
        format!("{receipt_jws}\n").as_bytes(),
    )?;
    out!(
        "  receipt   {} at log index {leaf_index} -> receipt.jws",
        receipt.receipt_id
    );
    let origin = format!("trustos.local/{}", key.kid());
    let signed_checkpoint = Checkpoint::new(origin.clone(), log.size(), log.root())
        .sign(&origin, key.signing_key())
        .map_err(|err| err.to_string())?;
    let proof = log
        .inclusion_proof(leaf_index)
        .map_err(|err| err.to_string())?;
    let bundle = ReceiptBundle::new(
        receipt_jws,
        receipt.log_index,
        SafeIndex::new(log.size()).map_err(|err| err.to_string())?,
        &proof,
        signed_checkpoint,
    );
    write(&out.join("bundle.json"), &bundle.to_json_pretty())?;
    let mut jwks = serde_json::to_vec_pretty(&keys.to_jwks()).map_err(|err| err.to_string())?;
    jwks.push(b'\n');
    write(&out.join("jwks.json"), &jwks)?;
    out!(
        "  logged    checkpoint of {} entries signed for {origin} -> bundle.json",
        log.size()
    );

    // 5. Offline verification of the bundle, from the files just written.
    let written = fs::read(out.join("bundle.json")).map_err(|err| err.to_string())?;
    let published = TrustedKeys::from_jwks_json(&jwks).map_err(|err| err.to_string())?;
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
    Ok(())
}
