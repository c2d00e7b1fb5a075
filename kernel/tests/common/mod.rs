//! The golden scenario shared by the kernel's integration tests: one paid MCP call by
//! `research-bot`, decided, executed, receipted and logged, made with a fixed test key and a
//! fixed clock so every byte is reproducible.

#![allow(dead_code)]

use serde_json::json;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::checkpoint::{self, Checkpoint};
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::merkle::MemoryTree;
use trustos_kernel::objects::*;
use trustos_kernel::timestamp::Timestamp;

/// Seed of the golden test key: SHA-256("trustos golden test key v1"). Test use only.
pub fn golden_key() -> GatewayKey {
    GatewayKey::from_seed(Digest::of(b"trustos golden test key v1").as_bytes())
}

pub fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

pub const ORIGIN: &str = "trustos.example/log";

pub struct Golden {
    pub key: GatewayKey,
    pub now: Timestamp,
    pub fingerprint: RequestFingerprint,
    pub fingerprint_digest: Digest,
    pub decision: PolicyDecision,
    pub decision_jws: String,
    pub receipt: Receipt,
    pub receipt_jws: String,
    pub tree_size: u64,
    pub checkpoint_note: String,
    pub bundle_json: Vec<u8>,
    pub jwks_json: Vec<u8>,
}

pub fn payment_terms() -> PaymentTerms {
    PaymentTerms {
        scheme: "exact".into(),
        network: "eip155:84532".into(),
        asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
        amount: "10000".parse().unwrap(),
        pay_to: "0x209693Bc6afc0C5328bA36FaF03C514EF312287C".into(),
        resource: "mcp://paid-search/search".into(),
        payer: None,
        offer_digest: None,
    }
}

pub fn golden() -> Golden {
    let key = golden_key();
    let fingerprint = RequestFingerprint::new(
        "acme",
        "research-bot",
        Route::Mcp {
            server: "paid-search".into(),
            tool: "search".into(),
        },
        &json!({"query": "x402 adoption", "maxResults": 5}),
        Some(payment_terms()),
    )
    .unwrap();
    let fingerprint_digest = fingerprint.digest().unwrap();
    let decision = PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: "dec_01JHGOLDEN0000000000000001".into(),
        fingerprint: fingerprint_digest,
        outcome: Outcome::Allow,
        reason_codes: vec!["WITHIN_POLICY".into()],
        policy_ids: vec![
            "trustos.budget.daily".into(),
            "trustos.payee.allowlist".into(),
        ],
        profile_fingerprint: Digest::of(b"golden profile"),
        reservations: vec![BudgetReservation {
            budget_key: "agent:research-bot/day".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            amount: "10000".parse().unwrap(),
            window_start: at("2026-01-15T00:00:00.000Z"),
            window_end: at("2026-01-16T00:00:00.000Z"),
        }],
        issued_at: at("2026-01-15T12:00:00.000Z"),
        expires_at: at("2026-01-15T12:01:00.000Z"),
        mode: Mode::Hard,
    };
    let decision_jws = jws::sign(&key, TYP_DECISION, &decision).unwrap();

    // The log before the receipt: five earlier entries, then the decision.
    let mut log = MemoryTree::new();
    for index in 0..5 {
        log.append(format!("earlier entry {index}").as_bytes());
    }
    log.append(decision_jws.as_bytes());
    let receipt = Receipt {
        object_type: ReceiptType::V1,
        receipt_id: "rcpt_01JHGOLDEN0000000000000001".into(),
        decision_id: decision.decision_id.clone(),
        fingerprint: fingerprint_digest,
        status: ExecutionStatus::Completed,
        result_digest: Some(
            Digest::of_canonical(&json!({"content": [{"type": "text", "text": "42 results"}]}))
                .unwrap(),
        ),
        settlement: Some(Settlement {
            rail: "x402".into(),
            reference: format!("0x{}", "ab".repeat(32)),
            network: "eip155:84532".into(),
            asset: "0x036CbD53842c5426634e7929541eC2318f3dCF7e".into(),
            amount: "10000".parse().unwrap(),
        }),
        started_at: at("2026-01-15T12:00:00.250Z"),
        completed_at: at("2026-01-15T12:00:01.500Z"),
        log_index: SafeIndex::new(log.size()).unwrap(),
        composes: vec![],
    };
    let receipt_jws = jws::sign(&key, TYP_RECEIPT, &receipt).unwrap();
    let receipt_index = log.append(receipt_jws.as_bytes());
    assert_eq!(receipt_index, receipt.log_index.get());
    // Later entries, so the proof has both left and right siblings.
    for index in 0..3 {
        log.append(format!("later entry {index}").as_bytes());
    }
    let tree_size = log.size();
    let body = Checkpoint {
        origin: ORIGIN.into(),
        size: tree_size,
        root: log.root(),
        extensions: vec![],
    }
    .body();
    let checkpoint_note = checkpoint::sign_note(&body, ORIGIN, key.signing_key()).unwrap();
    let proof = log.inclusion_proof(receipt_index).unwrap();
    let bundle_json = ReceiptBundle::new(
        receipt_jws.clone(),
        receipt.log_index,
        SafeIndex::new(tree_size).unwrap(),
        &proof,
        checkpoint_note.clone(),
    )
    .to_json_pretty();
    let mut jwks_json =
        serde_json::to_vec_pretty(&TrustedKeys::new([key.public().clone()]).to_jwks()).unwrap();
    jwks_json.push(b'\n');
    Golden {
        now: at("2026-01-15T12:00:00.100Z"),
        key,
        fingerprint,
        fingerprint_digest,
        decision,
        decision_jws,
        receipt,
        receipt_jws,
        tree_size,
        checkpoint_note,
        bundle_json,
        jwks_json,
    }
}
