//! Kernel hot paths: JCS + SHA-256 of a 1 KiB object, JWS sign and verify of a decision, and
//! Merkle append and inclusion proof at 1M leaves. Run with `cargo bench -p trustos-kernel`;
//! results are recorded in BENCHMARKS.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};
use trustos_kernel::merkle::{self, MemoryTree};
use trustos_kernel::objects::*;
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

/// A tool-call argument object of about 1 KiB once canonical.
fn one_kib_object() -> Value {
    let mut object = serde_json::Map::new();
    for index in 0..18 {
        object.insert(
            format!("field_{index:02}"),
            json!({"text": "lorem ipsum dolor", "n": index * 1000, "ok": index % 2 == 0}),
        );
    }
    let value = Value::Object(object);
    let len = trustos_kernel::canonical::value_to_jcs(&value).map(|bytes| bytes.len());
    assert!(matches!(len, Ok(900..=1200)), "object is {len:?} bytes");
    value
}

fn decision(fingerprint: Digest) -> PolicyDecision {
    let at = |millis| Timestamp::from_unix_millis(millis).unwrap_or_else(|err| panic!("{err}"));
    PolicyDecision {
        object_type: DecisionType::V1,
        decision_id: "dec_01JHBENCH00000000000000001".into(),
        fingerprint,
        outcome: Outcome::Allow,
        reason_codes: vec!["WITHIN_POLICY".into()],
        policy_ids: vec!["trustos.budget.daily".into()],
        profile_fingerprint: Digest::of(b"profile"),
        reservations: vec![],
        issued_at: at(1_768_478_400_000),
        expires_at: at(1_768_478_460_000),
        mode: Mode::Hard,
    }
}

fn canonical_json(c: &mut Criterion) {
    let value = one_kib_object();
    c.bench_function("jcs_sha256_1kib", |b| {
        b.iter(|| Digest::of_canonical_value(black_box(&value)))
    });
    c.bench_function("fingerprint_1kib_arguments", |b| {
        b.iter(|| {
            RequestFingerprint::new(
                "acme",
                "research-bot",
                Route::Mcp {
                    server: "paid-search".into(),
                    tool: "search".into(),
                },
                black_box(&value),
                None,
            )
            .and_then(|fingerprint| fingerprint.digest())
        })
    });
}

fn signatures(c: &mut Criterion) {
    let key = GatewayKey::from_seed(&[3; 32]);
    let fingerprint = Digest::of(b"request");
    let decision = decision(fingerprint);
    c.bench_function("jws_sign_decision", |b| {
        b.iter(|| jws::sign(&key, TYP_DECISION, black_box(&decision)))
    });
    let signed = jws::sign(&key, TYP_DECISION, &decision).unwrap_or_default();
    let verifier = Verifier::new(TrustedKeys::new([key.public().clone()]));
    let now = decision.issued_at;
    c.bench_function("jws_verify_decision", |b| {
        b.iter(|| verifier.verify_decision(black_box(&signed), &fingerprint, now))
    });
}

fn merkle_log(c: &mut Criterion) {
    const LEAVES: u64 = 1_000_000;
    let mut tree = MemoryTree::new();
    for index in 0..LEAVES {
        tree.append(&index.to_be_bytes());
    }
    let root = tree.root();
    let mut index = 0u64;
    c.bench_function("merkle_inclusion_proof_1m", |b| {
        b.iter(|| {
            // Walk the whole tree with a stride coprime to its size.
            index = (index + 7_919) % LEAVES;
            tree.inclusion_proof(black_box(index))
        })
    });
    let proof = tree.inclusion_proof(123_456).unwrap_or_default();
    let leaf = merkle::leaf_hash(&123_456u64.to_be_bytes());
    c.bench_function("merkle_verify_inclusion_1m", |b| {
        b.iter(|| merkle::verify_inclusion(&leaf, 123_456, LEAVES, black_box(&proof), &root))
    });
    // Appends grow the tree past 1M; a few hundred thousand extra leaves do not change its depth.
    c.bench_function("merkle_append_at_1m", |b| {
        b.iter(|| tree.append(black_box(b"one more receipt")))
    });
}

criterion_group!(benches, canonical_json, signatures, merkle_log);
criterion_main!(benches);
