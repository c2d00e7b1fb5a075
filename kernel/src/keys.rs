//! Ed25519 gateway keys, their RFC 7638 thumbprints, and the JWKS that carries the public halves.
//!
//! A key's `kid` is always its RFC 7638 JWK thumbprint (SHA-256 over the canonical
//! `{"crv":"Ed25519","kty":"OKP","x":…}` members, base64url without padding), so anyone can
//! recompute it from the public key alone and a JWKS cannot rename a key.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::canonical::Digest;
use crate::strict_json::{self, StrictDecodeError};

/// A gateway signing key and its key id.
pub struct GatewayKey {
    signing: SigningKey,
    public: PublicKey,
}

impl GatewayKey {
    /// The key for a 32-byte Ed25519 seed (the RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    /// Wraps an `ed25519-dalek` signing key.
    pub fn from_signing_key(signing: SigningKey) -> Self {
        let public = PublicKey::new(signing.verifying_key());
        Self { signing, public }
    }

    /// The RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        self.public.kid()
    }

    /// The public half.
    pub fn public(&self) -> &PublicKey {
        &self.public
    }

    /// The underlying signing key, for encoding it (PKCS#8) or signing notes.
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }
}

impl std::fmt::Debug for GatewayKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GatewayKey")
            .field("kid", &self.kid())
            .field("private", &"<redacted>")
            .finish()
    }
}

/// An Ed25519 public key with its RFC 7638 thumbprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    kid: String,
}

impl PublicKey {
    /// Wraps a verifying key and computes its thumbprint.
    pub fn new(key: VerifyingKey) -> Self {
        let kid = thumbprint(&key);
        Self { key, kid }
    }

    /// The RFC 7638 thumbprint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// The public JWK (`kty` OKP, `crv` Ed25519, `alg` EdDSA, `use` sig).
    pub fn to_jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(self.key.as_bytes()),
            kid: Some(self.kid.clone()),
            alg: Some("EdDSA".into()),
            key_use: Some("sig".into()),
        }
    }
}

/// RFC 7638 thumbprint of an Ed25519 public key (RFC 8037 §2 member set).
pub fn thumbprint(key: &VerifyingKey) -> String {
    let members = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(key.as_bytes())
    );
    URL_SAFE_NO_PAD.encode(Digest::of(members.as_bytes()).as_bytes())
}

/// A public JSON Web Key for Ed25519 (RFC 8037).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// Key type; must be `OKP`.
    pub kty: String,
    /// Curve; must be `Ed25519`.
    pub crv: String,
    /// The 32-byte public key, base64url without padding.
    pub x: String,
    /// Key id; when present it must equal the RFC 7638 thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Algorithm; when present it must be `EdDSA` or `Ed25519`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// Intended use; when present it must be `sig`.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub key_use: Option<String>,
}

/// A JWK Set (RFC 7517 §5).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys.
    pub keys: Vec<Jwk>,
}

/// Why a JWK or JWKS was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The JWKS is not strict JSON of the JWKS shape.
    #[error("JWKS is not valid: {0}")]
    Json(#[from] StrictDecodeError),
    /// A key is not an Ed25519 OKP key.
    #[error("key {index} is not an Ed25519 key (kty {kty:?}, crv {crv:?})")]
    NotEd25519 {
        /// Position in the set.
        index: usize,
        /// Its `kty`.
        kty: String,
        /// Its `crv`.
        crv: String,
    },
    /// A key's `alg` or `use` says it is not for EdDSA signatures.
    #[error("key {index} is not for EdDSA signatures")]
    NotForSignatures {
        /// Position in the set.
        index: usize,
    },
    /// A key's `x` is not 32 bytes of base64url, or not a point on the curve.
    #[error("key {index} has an invalid public key: {reason}")]
    InvalidPoint {
        /// Position in the set.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A key's `kid` is not its RFC 7638 thumbprint.
    #[error("key {index} has kid {kid:?} but its RFC 7638 thumbprint is {thumbprint:?}")]
    KidMismatch {
        /// Position in the set.
        index: usize,
        /// The stated key id.
        kid: String,
        /// The computed thumbprint.
        thumbprint: String,
    },
    /// The set holds no keys.
    #[error("JWKS holds no keys")]
    Empty,
}

impl KeyError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::Json(_) => "JWKS_MALFORMED",
            Self::NotEd25519 { .. } => "JWK_NOT_ED25519",
            Self::NotForSignatures { .. } => "JWK_NOT_FOR_SIGNATURES",
            Self::InvalidPoint { .. } => "JWK_INVALID_KEY",
            Self::KidMismatch { .. } => "JWK_KID_MISMATCH",
            Self::Empty => "JWKS_EMPTY",
        }
    }
}

/// The public keys a verifier trusts, by key id.
#[derive(Clone, Debug, Default)]
pub struct TrustedKeys {
    by_kid: BTreeMap<String, PublicKey>,
}

impl TrustedKeys {
    /// Trusts exactly these keys.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            by_kid: keys.into_iter().map(|key| (key.kid.clone(), key)).collect(),
        }
    }

    /// Reads a JWKS document strictly; every key must be a valid Ed25519 signature key whose
    /// `kid`, if stated, is its thumbprint.
    pub fn from_jwks_json(bytes: &[u8]) -> Result<Self, KeyError> {
        let jwks: Jwks = strict_json::from_slice(bytes)?;
        Self::from_jwks(&jwks)
    }

    /// Checks and trusts every key of a JWKS.
    pub fn from_jwks(jwks: &Jwks) -> Result<Self, KeyError> {
        if jwks.keys.is_empty() {
            return Err(KeyError::Empty);
        }
        let keys = jwks
            .keys
            .iter()
            .enumerate()
            .map(|(index, jwk)| public_key_from_jwk(index, jwk))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(keys))
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&PublicKey> {
        self.by_kid.get(kid)
    }

    /// All trusted keys, ordered by key id.
    pub fn iter(&self) -> impl Iterator<Item = &PublicKey> {
        self.by_kid.values()
    }

    /// The JWKS of these keys.
    pub fn to_jwks(&self) -> Jwks {
        Jwks {
            keys: self.iter().map(PublicKey::to_jwk).collect(),
        }
    }
}

fn public_key_from_jwk(index: usize, jwk: &Jwk) -> Result<PublicKey, KeyError> {
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(KeyError::NotEd25519 {
            index,
            kty: jwk.kty.clone(),
            crv: jwk.crv.clone(),
        });
    }
    let alg_ok = matches!(jwk.alg.as_deref(), None | Some("EdDSA" | "Ed25519"));
    let use_ok = matches!(jwk.key_use.as_deref(), None | Some("sig"));
    if !alg_ok || !use_ok {
        return Err(KeyError::NotForSignatures { index });
    }
    let invalid = |reason: String| KeyError::InvalidPoint { index, reason };
    let raw = URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .map_err(|err| invalid(format!("x is not base64url: {err}")))?;
    let bytes: [u8; 32] = raw
        .try_into()
        .map_err(|raw: Vec<u8>| invalid(format!("x is {} bytes, not 32", raw.len())))?;
    let key = VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid("x is not a point on Ed25519".into()))?;
    if key.is_weak() {
        return Err(invalid("x is a small-order point".into()));
    }
    let public = PublicKey::new(key);
    if let Some(kid) = &jwk.kid
        && kid != public.kid()
    {
        return Err(KeyError::KidMismatch {
            index,
            kid: kid.clone(),
            thumbprint: public.kid.clone(),
        });
    }
    Ok(public)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8037 §A.1–A.3: the example Ed25519 key and its RFC 7638 thumbprint.
    #[test]
    fn rfc8037_example_thumbprint() {
        let seed = URL_SAFE_NO_PAD
            .decode("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
            .unwrap();
        let key = GatewayKey::from_seed(&seed.try_into().unwrap());
        assert_eq!(
            key.public().to_jwk().x,
            "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        );
        assert_eq!(key.kid(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn jwks_round_trip_and_refusals() {
        let key = GatewayKey::from_seed(&[7; 32]);
        let jwks = TrustedKeys::new([key.public().clone()]).to_jwks();
        let text = serde_json::to_vec(&jwks).unwrap();
        let trusted = TrustedKeys::from_jwks_json(&text).unwrap();
        assert!(trusted.get(key.kid()).is_some());

        let mut renamed = jwks.clone();
        renamed.keys[0].kid = Some("someone-else".into());
        assert_eq!(
            TrustedKeys::from_jwks(&renamed).unwrap_err().reason_code(),
            "JWK_KID_MISMATCH"
        );
        let mut rsa = jwks.clone();
        rsa.keys[0].kty = "RSA".into();
        assert_eq!(
            TrustedKeys::from_jwks(&rsa).unwrap_err().reason_code(),
            "JWK_NOT_ED25519"
        );
        let mut short = jwks.clone();
        short.keys[0].x.truncate(20);
        assert_eq!(
            TrustedKeys::from_jwks(&short).unwrap_err().reason_code(),
            "JWK_INVALID_KEY"
        );
        let mut small_order = jwks.clone();
        small_order.keys[0].x = URL_SAFE_NO_PAD.encode([0u8; 32]);
        small_order.keys[0].kid = None;
        assert_eq!(
            TrustedKeys::from_jwks(&small_order)
                .unwrap_err()
                .reason_code(),
            "JWK_INVALID_KEY"
        );
        let mut encryption = jwks;
        encryption.keys[0].key_use = Some("enc".into());
        assert_eq!(
            TrustedKeys::from_jwks(&encryption)
                .unwrap_err()
                .reason_code(),
            "JWK_NOT_FOR_SIGNATURES"
        );
        assert_eq!(
            TrustedKeys::from_jwks_json(br#"{"keys":[]}"#)
                .unwrap_err()
                .reason_code(),
            "JWKS_EMPTY"
        );
        assert_eq!(
            TrustedKeys::from_jwks_json(br#"{"keys":[],"keys":[]}"#)
                .unwrap_err()
                .reason_code(),
            "JWKS_MALFORMED"
        );
    }
}
