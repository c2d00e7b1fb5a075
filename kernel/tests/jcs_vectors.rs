//! RFC 8785 reference vectors: every `input/X.json` canonicalizes to exactly `output/X.json`.
//!
//! The vectors are copied from the RFC author's reference test data; see
//! `kernel/tests/vectors/jcs/SOURCE.md`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use trustos_kernel::canonical;
use trustos_kernel::strict_json::{self, StrictJsonError};

fn vectors() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/jcs");
    let mut names: Vec<String> = fs::read_dir(root.join("input"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 6, "expected the six reference vectors");
    names
        .into_iter()
        .map(|name| {
            let input = fs::read(root.join("input").join(&name)).unwrap();
            let output = fs::read(root.join("output").join(&name)).unwrap();
            (name, input, output)
        })
        .collect()
}

/// The canonicalizer the kernel uses reproduces all six outputs byte for byte.
#[test]
fn every_reference_vector_canonicalizes_byte_for_byte() {
    for (name, input, expected) in vectors() {
        let value: serde_json::Value = serde_json::from_slice(&input).unwrap();
        let canonical = serde_json_canonicalizer::to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&canonical),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
    }
}

/// The kernel's own path (strict reader, safe-integer check, JCS) gives the same bytes, except
/// where a vector holds an integer beyond 2^53, which Trust OS refuses by design (invariant 5).
#[test]
fn the_strict_kernel_path_agrees_or_refuses_unsafe_integers() {
    for (name, input, expected) in vectors() {
        match strict_json::parse(&input) {
            Ok(value) => {
                assert_eq!(canonical::value_to_jcs(&value).unwrap(), expected, "{name}");
                // The canonical form reads back as canonical.
                let reread = canonical::parse_canonical(&expected).unwrap();
                assert_eq!(canonical::value_to_jcs(&reread).unwrap(), expected);
            }
            Err(StrictJsonError::IntegerOutOfRange { pointer, number }) => {
                assert_eq!(name, "values.json", "{name}: {pointer} {number}");
                assert_eq!((pointer.as_str(), number.as_str()), ("/numbers/1", "1e+30"));
            }
            Err(err) => panic!("{name}: {err}"),
        }
    }
}
