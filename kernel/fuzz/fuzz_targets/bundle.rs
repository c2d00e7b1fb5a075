//! Fuzz target `bundle`: arbitrary bytes into `trustos_kernel::bundle::ReceiptBundle::from_json`
//! and, when that reads, `ReceiptBundle::verify`.
//!
//! The trusted keys are the fixed fuzzing key `GatewayKey::from_seed(&[7; 32])` and the kernel's
//! golden test key (seed `SHA-256("trustos golden test key v1")`, see
//! `kernel/tests/common/mod.rs`), so the checked-in seed bundles verify completely and mutations
//! start from the deepest paths. Beyond "never panics":
//!
//! - every refusal has a non-empty reason code;
//! - a bundle that reads survives a round trip through `to_json_pretty` and `from_json` unchanged;
//! - a bundle that verifies reports the proof's leaf index and tree size, the leaf lies inside
//!   the tree, and the same bundle after the round trip verifies too.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::{GatewayKey, TrustedKeys};

static KEYS: LazyLock<TrustedKeys> = LazyLock::new(|| {
    let fuzz_key = GatewayKey::from_seed(&[7; 32]);
    let golden_key = GatewayKey::from_seed(Digest::of(b"trustos golden test key v1").as_bytes());
    TrustedKeys::new([fuzz_key.public().clone(), golden_key.public().clone()])
});

fuzz_target!(|data: &[u8]| {
    let bundle = match ReceiptBundle::from_json(data) {
        Ok(bundle) => bundle,
        Err(err) => {
            assert!(!err.reason_code().is_empty(), "empty reason code: {err:?}");
            return;
        }
    };
    let pretty = bundle.to_json_pretty();
    let reread = ReceiptBundle::from_json(&pretty).unwrap_or_else(|err| {
        panic!(
            "to_json_pretty output does not read back: {err}\n{}",
            String::from_utf8_lossy(&pretty)
        )
    });
    assert_eq!(reread, bundle, "bundle changed in a JSON round trip");

    match bundle.verify(&KEYS) {
        Err(err) => assert!(!err.reason_code().is_empty(), "empty reason code: {err:?}"),
        Ok(verified) => {
            assert_eq!(verified.leaf_index, bundle.inclusion_proof.leaf_index.get());
            assert_eq!(verified.tree_size, bundle.inclusion_proof.tree_size.get());
            assert!(
                verified.leaf_index < verified.tree_size,
                "verified leaf {} outside tree of size {}",
                verified.leaf_index,
                verified.tree_size
            );
            assert_eq!(verified.receipt.log_index.get(), verified.leaf_index);
            if let Err(err) = reread.verify(&KEYS) {
                panic!("round-tripped bundle no longer verifies: {err:?}");
            }
        }
    }
});
