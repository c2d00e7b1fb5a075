//! Compact JWS (RFC 7515) with Ed25519 (RFC 8037) over RFC 8785 canonical payloads.
//!
//! Every Trust OS signature is a compact JWS whose protected header is
//! `{"alg":"EdDSA","kid":<RFC 7638 thumbprint>,"typ":<object type>}` and whose payload is the JCS
//! bytes of the object (invariant 6), so any JOSE library holding the JWKS can check it.
//!
//! Verification is strict and fails closed, each refusal with its own [`JwsError`]: it accepts
//! `alg` `EdDSA` or `Ed25519` only (never `none`), requires a known `kid`, verifies with
//! `verify_strict` (no small-order keys, no malleable signatures), and then requires the payload
//! to be strict JSON already in canonical form, so one decision has exactly one signed encoding.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signature;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::canonical::{self, CanonicalError, NotCanonical};
use crate::keys::{GatewayKey, TrustedKeys};
use crate::strict_json::{self, StrictJsonError};

/// Largest compact JWS accepted, in bytes.
pub const MAX_JWS_LEN: usize = 1 << 20;

/// `typ` of a signed `PolicyDecision.v1`.
pub const TYP_DECISION: &str = "trustos-decision.v1+jws";
/// `typ` of a signed `Receipt.v1`.
pub const TYP_RECEIPT: &str = "trustos-receipt.v1+jws";

/// Why a compact JWS was refused. Each variant has a stable [`reason_code`](Self::reason_code).
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// Longer than [`MAX_JWS_LEN`].
    #[error("JWS is {0} bytes, more than the {MAX_JWS_LEN} accepted")]
    TooLarge(usize),
    /// Not three dot-separated parts.
    #[error("JWS is malformed: expected three dot-separated parts, found {0}")]
    Malformed(usize),
    /// A part is not unpadded base64url.
    #[error("JWS {part} is not unpadded base64url")]
    Base64 {
        /// `header`, `payload` or `signature`.
        part: &'static str,
    },
    /// The protected header is not strict JSON.
    #[error("JWS header is not strict JSON: {0}")]
    HeaderJson(#[source] StrictJsonError),
    /// The protected header is not an object with the members Trust OS uses.
    #[error("JWS header is invalid: {0}")]
    Header(String),
    /// `alg` is `none`.
    #[error("JWS alg \"none\" is never accepted")]
    AlgNone,
    /// `alg` is neither `EdDSA` nor `Ed25519`.
    #[error("JWS alg {0:?} is not accepted (only EdDSA / Ed25519)")]
    UnsupportedAlg(String),
    /// `typ` is not the one expected.
    #[error("JWS typ is {found:?}, expected {expected:?}")]
    WrongTyp {
        /// The expected type.
        expected: String,
        /// The type found.
        found: String,
    },
    /// The signature is not 64 bytes.
    #[error("JWS signature is {0} bytes, an Ed25519 signature is 64")]
    SignatureLength(usize),
    /// No trusted key has this `kid`.
    #[error("JWS is signed by key {0:?}, which is not trusted")]
    UnknownKid(String),
    /// The signature does not verify under the named key.
    #[error("JWS signature does not verify under key {0:?}")]
    BadSignature(String),
    /// The payload is not strict JSON.
    #[error("JWS payload is not strict JSON: {0}")]
    PayloadJson(#[source] StrictJsonError),
    /// The payload is strict JSON but not in RFC 8785 canonical form.
    #[error("JWS payload is not RFC 8785 canonical JSON")]
    NonCanonicalPayload,
    /// The payload could not be canonicalized (unsafe integer).
    #[error("JWS payload cannot be canonicalized: {0}")]
    Canonical(#[from] CanonicalError),
}

impl JwsError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "JWS_TOO_LARGE",
            Self::Malformed(_) => "JWS_MALFORMED",
            Self::Base64 { .. } => "JWS_BAD_BASE64",
            Self::HeaderJson(_) => "JWS_HEADER_NOT_JSON",
            Self::Header(_) => "JWS_HEADER_INVALID",
            Self::AlgNone => "JWS_ALG_NONE",
            Self::UnsupportedAlg(_) => "JWS_ALG_UNSUPPORTED",
            Self::WrongTyp { .. } => "JWS_WRONG_TYP",
            Self::SignatureLength(_) => "JWS_SIGNATURE_LENGTH",
            Self::UnknownKid(_) => "JWS_UNKNOWN_KID",
            Self::BadSignature(_) => "JWS_BAD_SIGNATURE",
            Self::PayloadJson(_) => "JWS_PAYLOAD_NOT_JSON",
            Self::NonCanonicalPayload => "JWS_PAYLOAD_NOT_CANONICAL",
            Self::Canonical(_) => "JWS_PAYLOAD_UNSAFE_INTEGER",
        }
    }
}

/// Signs `payload` (its JCS bytes) as a compact JWS of type `typ`.
pub fn sign<T: Serialize + ?Sized>(
    key: &GatewayKey,
    typ: &str,
    payload: &T,
) -> Result<String, CanonicalError> {
    let payload = canonical::to_jcs(payload)?;
    Ok(sign_canonical_bytes(key, typ, &payload))
}

/// Signs bytes that the caller guarantees are already canonical JSON.
fn sign_canonical_bytes(key: &GatewayKey, typ: &str, payload: &[u8]) -> String {
    let header = serde_json::json!({"alg": "EdDSA", "kid": key.kid(), "typ": typ});
    // A header of three strings always canonicalizes.
    let header = serde_json_canonicalizer::to_string(&header).unwrap_or_default();
    let mut jws = String::with_capacity(
        (header.len() + payload.len()) * 4 / 3 + 100, // base64 growth and the signature
    );
    URL_SAFE_NO_PAD.encode_string(header.as_bytes(), &mut jws);
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
    let signature = key.sign(jws.as_bytes());
    jws.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut jws);
    jws
}

/// Signs arbitrary payload bytes without checking them. Only for tests that must produce JWS a
/// correct signer never would (non-canonical or duplicate-key payloads).
#[doc(hidden)]
pub fn sign_raw_payload_for_tests(key: &GatewayKey, typ: &str, payload: &[u8]) -> String {
    sign_canonical_bytes(key, typ, payload)
}

/// A JWS whose signature verified under a trusted key and whose payload is canonical.
#[derive(Debug)]
pub struct VerifiedJws {
    /// Key id of the signing key.
    pub kid: String,
    /// The `typ` header.
    pub typ: String,
    /// The payload bytes (canonical JSON).
    pub payload_bytes: Vec<u8>,
    /// The payload, read strictly.
    pub payload: Value,
}

/// Verifies a compact JWS against the trusted keys; `expected_typ`, when given, must match.
pub fn verify(
    jws: &str,
    keys: &TrustedKeys,
    expected_typ: Option<&str>,
) -> Result<VerifiedJws, JwsError> {
    if jws.len() > MAX_JWS_LEN {
        return Err(JwsError::TooLarge(jws.len()));
    }
    let parts: Vec<&str> = jws.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(JwsError::Malformed(parts.len()));
    };
    let decode = |part: &'static str, text: &str| {
        URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| JwsError::Base64 { part })
    };
    let header_bytes = decode("header", header_b64)?;
    let payload_bytes = decode("payload", payload_b64)?;
    let signature_bytes = decode("signature", signature_b64)?;

    let header = strict_json::parse(&header_bytes).map_err(JwsError::HeaderJson)?;
    let Value::Object(header) = header else {
        return Err(JwsError::Header("not a JSON object".into()));
    };
    let (kid, typ) = check_header(&header)?;
    if let Some(expected) = expected_typ
        && typ != expected
    {
        return Err(JwsError::WrongTyp {
            expected: expected.to_owned(),
            found: typ,
        });
    }

    let signature: [u8; 64] = signature_bytes
        .as_slice()
        .try_into()
        .map_err(|_| JwsError::SignatureLength(signature_bytes.len()))?;
    let key = keys
        .get(&kid)
        .ok_or_else(|| JwsError::UnknownKid(kid.clone()))?;
    let signing_input = &jws[..header_b64.len() + 1 + payload_b64.len()];
    key.verifying_key()
        .verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
        .map_err(|_| JwsError::BadSignature(kid.clone()))?;

    let payload = canonical::parse_canonical(&payload_bytes).map_err(|err| match err {
        NotCanonical::Json(err) => JwsError::PayloadJson(err),
        NotCanonical::Differs => JwsError::NonCanonicalPayload,
        NotCanonical::Canonical(err) => JwsError::Canonical(err),
    })?;
    Ok(VerifiedJws {
        kid,
        typ,
        payload_bytes,
        payload,
    })
}

/// Checks the protected header; returns its `kid` and `typ`.
fn check_header(header: &Map<String, Value>) -> Result<(String, String), JwsError> {
    if let Some(name) = header
        .keys()
        .find(|name| !matches!(name.as_str(), "alg" | "kid" | "typ"))
    {
        // `crit`, `b64`, `jku`, `x5u`, `jwk`…: each changes how the JWS must be read or where
        // its key comes from; Trust OS signs none of them, so none is accepted.
        return Err(JwsError::Header(format!("unexpected member {name:?}")));
    }
    let text = |name: &str| match header.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(_) => Err(JwsError::Header(format!("{name} is not a string"))),
        None => Err(JwsError::Header(format!("{name} is missing"))),
    };
    match text("alg")?.as_str() {
        "EdDSA" | "Ed25519" => {}
        alg if alg.eq_ignore_ascii_case("none") => return Err(JwsError::AlgNone),
        alg => return Err(JwsError::UnsupportedAlg(alg.to_owned())),
    }
    Ok((text("kid")?, text("typ")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> GatewayKey {
        GatewayKey::from_seed(&[1; 32])
    }

    fn trusted() -> TrustedKeys {
        TrustedKeys::new([key().public().clone()])
    }

    fn code(jws: &str) -> &'static str {
        verify(jws, &trusted(), None).unwrap_err().reason_code()
    }

    fn with_header(header: &str, payload: &[u8]) -> String {
        signed_by(&key(), header, payload)
    }

    fn signed_by(key: &GatewayKey, header: &str, payload: &[u8]) -> String {
        let mut jws = URL_SAFE_NO_PAD.encode(header);
        jws.push('.');
        jws.push_str(&URL_SAFE_NO_PAD.encode(payload));
        let signature = key.sign(jws.as_bytes());
        format!("{jws}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    #[test]
    fn signs_canonical_payload_and_verifies() {
        let jws = sign(&key(), TYP_RECEIPT, &json!({"b": 1, "a": "x"})).unwrap();
        let verified = verify(&jws, &trusted(), Some(TYP_RECEIPT)).unwrap();
        assert_eq!(verified.payload_bytes, br#"{"a":"x","b":1}"#);
        assert_eq!(verified.kid, key().kid());
        let header = URL_SAFE_NO_PAD
            .decode(jws.split('.').next().unwrap())
            .unwrap();
        assert_eq!(
            String::from_utf8(header).unwrap(),
            format!(
                r#"{{"alg":"EdDSA","kid":"{}","typ":"{TYP_RECEIPT}"}}"#,
                key().kid()
            )
        );
    }

    #[test]
    fn alg_ed25519_is_accepted_none_and_others_are_not() {
        let kid = key().kid().to_owned();
        let header = |alg: &str| format!(r#"{{"alg":"{alg}","kid":"{kid}","typ":"t"}}"#);
        assert!(verify(&with_header(&header("Ed25519"), b"{}"), &trusted(), None).is_ok());
        assert_eq!(code(&with_header(&header("none"), b"{}")), "JWS_ALG_NONE");
        assert_eq!(code(&with_header(&header("None"), b"{}")), "JWS_ALG_NONE");
        for alg in ["HS256", "ES256", "RS256", "eddsa"] {
            assert_eq!(
                code(&with_header(&header(alg), b"{}")),
                "JWS_ALG_UNSUPPORTED"
            );
        }
    }

    #[test]
    fn header_members_are_checked() {
        let kid = key().kid().to_owned();
        let crit =
            format!(r#"{{"alg":"EdDSA","b64":false,"crit":["b64"],"kid":"{kid}","typ":"t"}}"#);
        assert_eq!(code(&with_header(&crit, b"{}")), "JWS_HEADER_INVALID");
        let no_kid = r#"{"alg":"EdDSA","typ":"t"}"#;
        assert_eq!(code(&with_header(no_kid, b"{}")), "JWS_HEADER_INVALID");
        let dup = format!(r#"{{"alg":"EdDSA","alg":"none","kid":"{kid}","typ":"t"}}"#);
        assert_eq!(code(&with_header(&dup, b"{}")), "JWS_HEADER_NOT_JSON");
        let array = "[]";
        assert_eq!(code(&with_header(array, b"{}")), "JWS_HEADER_INVALID");
        let jws = sign(&key(), TYP_DECISION, &json!({})).unwrap();
        assert_eq!(
            verify(&jws, &trusted(), Some(TYP_RECEIPT))
                .unwrap_err()
                .reason_code(),
            "JWS_WRONG_TYP"
        );
    }

    #[test]
    fn structural_damage_is_refused() {
        let jws = sign(&key(), TYP_RECEIPT, &json!({"a": 1})).unwrap();
        assert_eq!(code("abc"), "JWS_MALFORMED");
        assert_eq!(code(&format!("{jws}.x")), "JWS_MALFORMED");
        assert_eq!(code(&format!("{jws}=")), "JWS_BAD_BASE64");
        let (head, signature) = jws.rsplit_once('.').unwrap();
        assert_eq!(
            code(&format!("{head}.{}", &signature[..40])),
            "JWS_SIGNATURE_LENGTH"
        );
        assert_eq!(code(&format!("{head}.")), "JWS_SIGNATURE_LENGTH");
        assert_eq!(code(&"a".repeat(MAX_JWS_LEN + 1)), "JWS_TOO_LARGE");
    }

    #[test]
    fn wrong_key_and_tampering_are_refused() {
        let other = GatewayKey::from_seed(&[2; 32]);
        let jws = sign(&other, TYP_RECEIPT, &json!({"a": 1})).unwrap();
        assert_eq!(code(&jws), "JWS_UNKNOWN_KID");
        // A header naming the trusted kid over another key's signature.
        let trusted_kid = format!(r#"{{"alg":"EdDSA","kid":"{}","typ":"t"}}"#, key().kid());
        assert_eq!(
            code(&signed_by(&other, &trusted_kid, b"{}")),
            "JWS_BAD_SIGNATURE"
        );
        let good = sign(&key(), TYP_RECEIPT, &json!({"amount": "1"})).unwrap();
        let tampered_payload = URL_SAFE_NO_PAD.encode(br#"{"amount":"9"}"#);
        let parts: Vec<&str> = good.split('.').collect();
        assert_eq!(
            code(&format!("{}.{tampered_payload}.{}", parts[0], parts[2])),
            "JWS_BAD_SIGNATURE"
        );
    }

    #[test]
    fn signed_but_ambiguous_payloads_are_refused() {
        let key = key();
        let reordered = sign_raw_payload_for_tests(&key, "t", br#"{"b":1,"a":2}"#);
        assert_eq!(code(&reordered), "JWS_PAYLOAD_NOT_CANONICAL");
        let spaced = sign_raw_payload_for_tests(&key, "t", br#"{"a": 2}"#);
        assert_eq!(code(&spaced), "JWS_PAYLOAD_NOT_CANONICAL");
        let duplicate = sign_raw_payload_for_tests(&key, "t", br#"{"a":1,"a":2}"#);
        assert_eq!(code(&duplicate), "JWS_PAYLOAD_NOT_JSON");
        let big = sign_raw_payload_for_tests(&key, "t", br#"{"a":9007199254740993}"#);
        assert_eq!(code(&big), "JWS_PAYLOAD_NOT_JSON");
    }
}
