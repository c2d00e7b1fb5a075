//! RFC 8785 (JCS) canonical JSON and the SHA-256 digests taken over it.
//!
//! Every fingerprint and every signed payload is the JCS form of a JSON value, so the same object
//! has exactly one byte representation on every machine. Canonicalization itself is done by
//! `serde_json_canonicalizer`, which passes the RFC's reference vectors (see
//! `kernel/tests/jcs_vectors.rs`); this module adds the checks Trust OS needs around it: integers
//! stay inside ±(2^53 − 1) (invariant 5) and digests have one textual form, `sha256:<64 hex>`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::strict_json::{self, MAX_SAFE_INTEGER, StrictJsonError};

/// Why a value could not be put in canonical form.
#[derive(Debug, thiserror::Error)]
pub enum CanonicalError {
    /// The value could not be represented as JSON.
    #[error("value cannot be represented as JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The value holds an integer that JSON consumers cannot all read exactly.
    #[error("integer {number} at {pointer:?} is outside ±(2^53-1)")]
    UnsafeInteger {
        /// JSON Pointer of the number.
        pointer: String,
        /// The number.
        number: String,
    },
    /// The canonicalizer refused the value.
    #[error("JCS canonicalization failed: {0}")]
    Jcs(String),
}

/// Why a byte string is not the canonical form of its own value.
#[derive(Debug, thiserror::Error)]
pub enum NotCanonical {
    /// The bytes are not strict JSON.
    #[error(transparent)]
    Json(#[from] StrictJsonError),
    /// The bytes are strict JSON but not in RFC 8785 form (reordered keys, whitespace, escapes…).
    #[error("JSON is not in RFC 8785 canonical form")]
    Differs,
    /// The value could not be canonicalized.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

/// RFC 8785 canonical bytes of any serializable value.
pub fn to_jcs<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalError> {
    let value = serde_json::to_value(value).map_err(CanonicalError::NotJson)?;
    value_to_jcs(&value)
}

/// RFC 8785 canonical bytes of a JSON value.
pub fn value_to_jcs(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    check_safe_integers(value, &mut String::new())?;
    serde_json_canonicalizer::to_vec(value).map_err(|err| CanonicalError::Jcs(err.to_string()))
}

/// Reads `bytes` strictly and checks they are exactly the canonical form of the value they hold.
pub fn parse_canonical(bytes: &[u8]) -> Result<Value, NotCanonical> {
    let value = strict_json::parse(bytes)?;
    if value_to_jcs(&value)? != bytes {
        return Err(NotCanonical::Differs);
    }
    Ok(value)
}

fn check_safe_integers(value: &Value, pointer: &mut String) -> Result<(), CanonicalError> {
    match value {
        Value::Number(number) => {
            let unsafe_integer = match (number.as_u64(), number.as_i64(), number.as_f64()) {
                (Some(unsigned), _, _) => unsigned > MAX_SAFE_INTEGER,
                (None, Some(signed), _) => signed.unsigned_abs() > MAX_SAFE_INTEGER,
                (None, None, Some(float)) => {
                    float.fract() == 0.0 && float.abs() > MAX_SAFE_INTEGER as f64
                }
                (None, None, None) => true,
            };
            if unsafe_integer {
                return Err(CanonicalError::UnsafeInteger {
                    pointer: pointer.clone(),
                    number: number.to_string(),
                });
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let mark = pointer.len();
                pointer.push('/');
                pointer.push_str(&index.to_string());
                check_safe_integers(item, pointer)?;
                pointer.truncate(mark);
            }
        }
        Value::Object(object) => {
            for (key, item) in object {
                let mark = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                check_safe_integers(item, pointer)?;
                pointer.truncate(mark);
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
    Ok(())
}

/// A SHA-256 digest, written `sha256:` followed by 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Text prefix naming the algorithm.
    pub const PREFIX: &'static str = "sha256:";

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// SHA-256 of the RFC 8785 form of `value`.
    pub fn of_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Self, CanonicalError> {
        Ok(Self::of(&to_jcs(value)?))
    }

    /// SHA-256 of the RFC 8785 form of a JSON value.
    pub fn of_canonical_value(value: &Value) -> Result<Self, CanonicalError> {
        Ok(Self::of(&value_to_jcs(value)?))
    }

    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(Self::PREFIX)?;
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a digest: expected \"sha256:\" and 64 lowercase hex digits")]
pub struct DigestParseError;

impl FromStr for Digest {
    type Err = DigestParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let hex = text.strip_prefix(Self::PREFIX).ok_or(DigestParseError)?;
        if hex.len() != 64 {
            return Err(DigestParseError);
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            *byte = (lower_hex_value(pair[0])? << 4) | lower_hex_value(pair[1])?;
        }
        Ok(Self(bytes))
    }
}

fn lower_hex_value(digit: u8) -> Result<u8, DigestParseError> {
    match digit {
        b'0'..=b'9' => Ok(digit - b'0'),
        b'a'..=b'f' => Ok(digit - b'a' + 10),
        _ => Err(DigestParseError),
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_strips_whitespace() {
        let bytes =
            value_to_jcs(&json!({"b": [1, 2.5, "é"], "a": {"z": null, "y": true}})).unwrap();
        assert_eq!(
            bytes,
            r#"{"a":{"y":true,"z":null},"b":[1,2.5,"é"]}"#.as_bytes()
        );
    }

    #[test]
    fn refuses_integers_beyond_the_safe_range() {
        let err = value_to_jcs(&json!({"a": [u64::MAX]})).unwrap_err();
        assert!(
            matches!(err, CanonicalError::UnsafeInteger { ref pointer, .. } if pointer == "/a/0")
        );
        assert!(value_to_jcs(&json!(MAX_SAFE_INTEGER)).is_ok());
        assert!(value_to_jcs(&json!(-(MAX_SAFE_INTEGER as i64))).is_ok());
        assert!(value_to_jcs(&json!(1e300)).is_err());
    }

    #[test]
    fn parse_canonical_refuses_reordered_or_spaced_bytes() {
        assert!(parse_canonical(br#"{"a":1,"b":2}"#).is_ok());
        assert!(matches!(
            parse_canonical(br#"{"b":2,"a":1}"#),
            Err(NotCanonical::Differs)
        ));
        assert!(matches!(
            parse_canonical(br#"{"a": 1}"#),
            Err(NotCanonical::Differs)
        ));
        assert!(matches!(
            parse_canonical(br#"{"a":"\u0041"}"#),
            Err(NotCanonical::Differs)
        ));
        assert!(matches!(
            parse_canonical(br#"{"a":1,"a":1}"#),
            Err(NotCanonical::Json(_))
        ));
    }

    #[test]
    fn digest_text_round_trips_and_is_strict() {
        let digest = Digest::of(b"abc");
        let text = digest.to_string();
        assert_eq!(
            text,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(text.parse::<Digest>().unwrap(), digest);
        assert!(text.to_uppercase().parse::<Digest>().is_err());
        assert!(
            text.replace("sha256:", "sha512:")
                .parse::<Digest>()
                .is_err()
        );
        assert!(text[..70].parse::<Digest>().is_err());
        assert!(format!("{text}0").parse::<Digest>().is_err());
    }
}
