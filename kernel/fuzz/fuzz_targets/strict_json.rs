//! Fuzz target `strict_json`: arbitrary bytes into `trustos_kernel::strict_json::parse`.
//!
//! Beyond "never panics", every input checks these properties:
//!
//! - an error always has a non-empty reason code; input starting with a UTF-8 BOM is always
//!   refused as `JSON_BOM`, and other input that is not UTF-8 as `JSON_INVALID_UTF8`;
//! - whatever the strict reader accepts, plain `serde_json` reads as the very same value (strict
//!   is a subset of lenient, never a different reading);
//! - an accepted value always canonicalizes (`canonical::value_to_jcs`), and its JCS bytes are
//!   accepted by `canonical::parse_canonical` and canonicalize again to the same bytes
//!   (idempotence).

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use trustos_kernel::{canonical, strict_json};

const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

fuzz_target!(|data: &[u8]| {
    let value = match strict_json::parse(data) {
        Ok(value) => value,
        Err(err) => {
            let code = err.reason_code();
            assert!(!code.is_empty(), "empty reason code for {err:?}");
            if data.starts_with(BOM) {
                assert_eq!(code, "JSON_BOM", "BOM input refused as {err:?}");
            } else if std::str::from_utf8(data).is_err() {
                assert_eq!(
                    code, "JSON_INVALID_UTF8",
                    "non-UTF-8 input refused as {err:?}"
                );
            }
            return;
        }
    };
    assert!(!data.starts_with(BOM), "input with a BOM was accepted");

    let lenient: Value = serde_json::from_slice(data)
        .unwrap_or_else(|err| panic!("strict reader accepted what serde_json refuses: {err}"));
    assert_eq!(lenient, value, "strict and lenient readings differ");

    let jcs = canonical::value_to_jcs(&value)
        .unwrap_or_else(|err| panic!("accepted value {value} does not canonicalize: {err}"));
    let reread = canonical::parse_canonical(&jcs).unwrap_or_else(|err| {
        panic!(
            "JCS bytes {:?} of an accepted value are not canonical: {err}",
            String::from_utf8_lossy(&jcs)
        )
    });
    let again = canonical::value_to_jcs(&reread)
        .unwrap_or_else(|err| panic!("re-read JCS value does not canonicalize: {err}"));
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&jcs),
        "canonicalization is not idempotent"
    );
});
