//! Fuzz target `jws`: compact JWS verification (`trustos_kernel::jws::verify`) against one fixed
//! trusted key, `GatewayKey::from_seed(&[7; 32])`.
//!
//! The first byte picks the mode:
//!
//! - `!` (0x21), **signing mode**: the remaining bytes are signed as a payload with
//!   `jws::sign_raw_payload_for_tests(&key, "t", payload)`. Then `verify` must return `Ok` exactly
//!   when `canonical::parse_canonical(payload)` is `Ok`; when it does, the verified payload is the
//!   signed bytes and the `kid`/`typ` are the ones signed; when it does not, the refusal is the
//!   payload reason code matching the `parse_canonical` error. Verifying the same token while
//!   expecting another `typ` is always refused as `JWS_WRONG_TYP`.
//! - anything else, **raw mode**: the whole input (as lossy UTF-8) is handed to `verify`. It must
//!   never panic and every refusal has a non-empty reason code. Forgery check: a token that
//!   verifies must be byte for byte the token the fixed key itself produces for that `typ` and
//!   payload (Ed25519 signing is deterministic), so mutation can at best replay a seed signed by
//!   the key, never make a new or altered token verify. Its payload must be its own JCS form.

#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trustos_kernel::canonical::{self, NotCanonical};
use trustos_kernel::jws::{self, MAX_JWS_LEN};
use trustos_kernel::keys::{GatewayKey, TrustedKeys};

/// First byte selecting signing mode.
const SIGN_MODE: u8 = b'!';
/// `typ` used in signing mode.
const TYP: &str = "t";

static KEY: LazyLock<GatewayKey> = LazyLock::new(|| GatewayKey::from_seed(&[7; 32]));
static KEYS: LazyLock<TrustedKeys> = LazyLock::new(|| TrustedKeys::new([KEY.public().clone()]));

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((&SIGN_MODE, payload)) => signing_mode(payload),
        _ => raw_mode(data),
    }
});

fn signing_mode(payload: &[u8]) {
    let token = jws::sign_raw_payload_for_tests(&KEY, TYP, payload);
    if token.len() > MAX_JWS_LEN {
        return;
    }
    let verified = jws::verify(&token, &KEYS, Some(TYP));
    match (verified, canonical::parse_canonical(payload)) {
        (Ok(verified), Ok(value)) => {
            assert_eq!(verified.payload_bytes, payload, "verified payload differs");
            assert_eq!(verified.payload, value, "verified payload value differs");
            assert_eq!(verified.kid, KEY.kid());
            assert_eq!(verified.typ, TYP);
        }
        (Err(err), Err(not_canonical)) => {
            let expected = match not_canonical {
                NotCanonical::Json(_) => "JWS_PAYLOAD_NOT_JSON",
                NotCanonical::Differs => "JWS_PAYLOAD_NOT_CANONICAL",
                NotCanonical::Canonical(_) => "JWS_PAYLOAD_UNSAFE_INTEGER",
            };
            assert_eq!(err.reason_code(), expected, "refused as {err:?}");
        }
        (Ok(verified), Err(err)) => {
            panic!("verify accepted payload {verified:?} that parse_canonical refuses: {err}")
        }
        (Err(err), Ok(value)) => {
            panic!("verify refused canonical payload {value}: {err:?}")
        }
    }
    let wrong_typ =
        jws::verify(&token, &KEYS, Some("not-t")).expect_err("token verified under the wrong typ");
    assert_eq!(wrong_typ.reason_code(), "JWS_WRONG_TYP");
}

fn raw_mode(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match jws::verify(&text, &KEYS, None) {
        Err(err) => assert!(!err.reason_code().is_empty(), "empty reason code: {err:?}"),
        Ok(verified) => {
            let genuine =
                jws::sign_raw_payload_for_tests(&KEY, &verified.typ, &verified.payload_bytes);
            assert_eq!(
                text, genuine,
                "a token the key never produced verified (forgery or malleability)"
            );
            assert_eq!(verified.kid, KEY.kid());
            let jcs = canonical::value_to_jcs(&verified.payload)
                .unwrap_or_else(|err| panic!("verified payload does not canonicalize: {err}"));
            assert_eq!(
                jcs, verified.payload_bytes,
                "verified payload is not its own JCS"
            );
        }
    }
}
