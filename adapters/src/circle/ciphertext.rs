//! The entity secret ciphertext: the form in which the entity secret travels, as the
//! `entitySecretCiphertext` field of every request that creates wallets or moves money.
//!
//! Circle's recipe: encrypt the 32 raw bytes of the entity secret (not its hex text) with the
//! entity's RSA public key (`GET /v1/w3s/config/entity/publicKey`, a PEM string) using RSA-OAEP
//! with SHA-256 as both the OAEP hash and the MGF1 hash and an empty label, then base64-encode the
//! result (standard alphabet, padded). OAEP is randomized, so every call gives a new ciphertext.
//! The docs say the ciphertext "must be re-encrypted (rotated) whenever an API requires it", and
//! Circle's SDKs make a fresh one for every request: do the same, never reuse one. With Circle's
//! 4096-bit key the ciphertext is 512 bytes, 684 base64 characters.
//!
//! Sources:
//! <https://developers.circle.com/wallets/dev-controlled/entity-secret-management>,
//! <https://developers.circle.com/wallets/dev-controlled/register-entity-secret>,
//! <https://learn.circle.com/quickstarts/cctp/encrypt-entity-secret> (base64, 684 characters),
//! <https://developers.circle.com/api-reference/wallets/programmable-wallets/get-public-key>,
//! and Circle's sample repository `circlefin/w3s-entity-secret-sample-code` (README: "RSA-OAEP
//! (with SHA-256 for both the OAEP hash and MGF1)", over the 32-byte secret).
//!
//! The docs do not pin the PEM label of the public key, so both `PUBLIC KEY` (SPKI) and
//! `RSA PUBLIC KEY` (PKCS#1) are read, and the DER inside is tried as SPKI then as PKCS#1 whatever
//! the label says. Keys under 2048 bits are refused; the `rsa` crate refuses moduli above 8192
//! bits and bad exponents. Randomness comes from the operating system (`getrandom`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::pkcs8::DecodePublicKey as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{Oaep, PublicKey};
use sha2::Sha256;

use super::secrets::EntitySecret;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: u32 = 2048;

/// Encrypts the entity secret for one request: RSA-OAEP-SHA-256 (MGF1-SHA-256, empty label) under
/// the entity public key given as PEM, base64 (standard, padded). A fresh ciphertext every call.
pub fn entity_secret_ciphertext(
    secret: &EntitySecret,
    public_key_pem: &str,
) -> Result<String, CiphertextError> {
    let key = parse_public_key(public_key_pem)?;
    let mut rng = getrandom::SysRng;
    let ciphertext = key
        .encrypt(&mut rng, Oaep::<Sha256>::new(), secret.as_bytes())
        .map_err(|_| CiphertextError::EncryptionFailed)?;
    Ok(STANDARD.encode(ciphertext))
}

/// Reads an RSA public key from PEM (SPKI or PKCS#1 under either label) and checks its size.
fn parse_public_key(pem: &str) -> Result<PublicKey, CiphertextError> {
    let der = pem_body(pem)?;
    let key = PublicKey::from_public_key_der(&der)
        .or_else(|_| PublicKey::from_pkcs1_der(&der))
        .map_err(|_| CiphertextError::PublicKeyInvalid {
            reason: "not an RSA public key (SPKI or PKCS#1 DER)",
        })?;
    let bits = key.n().bit_width_vartime();
    if bits < MIN_RSA_BITS {
        return Err(CiphertextError::PublicKeyTooSmall { bits });
    }
    Ok(key)
}

/// The DER inside one PEM block labelled `PUBLIC KEY` or `RSA PUBLIC KEY`.
fn pem_body(pem: &str) -> Result<Vec<u8>, CiphertextError> {
    let invalid = |reason| CiphertextError::PublicKeyInvalid { reason };
    let text = pem.trim();
    let (label, rest) = text
        .strip_prefix("-----BEGIN ")
        .and_then(|rest| rest.split_once("-----"))
        .ok_or(invalid("missing PEM BEGIN line"))?;
    if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
        return Err(invalid("PEM label must be PUBLIC KEY or RSA PUBLIC KEY"));
    }
    let end = format!("-----END {label}-----");
    let body = rest
        .strip_suffix(end.as_str())
        .ok_or(invalid("missing or mismatched PEM END line"))?;
    let compact: String = body
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r' | ' ' | '\t'))
        .collect();
    if compact.is_empty() {
        return Err(invalid("empty PEM body"));
    }
    STANDARD
        .decode(compact.as_bytes())
        .map_err(|_| invalid("PEM body is not base64"))
}

/// Why no ciphertext was made. No variant carries the secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CiphertextError {
    /// The entity public key is not a PEM RSA public key.
    #[error("Circle entity public key is invalid: {reason}")]
    PublicKeyInvalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// The entity public key's modulus is shorter than [`MIN_RSA_BITS`].
    #[error("Circle entity public key has {bits} bits; at least 2048 are required")]
    PublicKeyTooSmall {
        /// The modulus length.
        bits: u32,
    },
    /// The RSA operation or the random number generator failed.
    #[error("encrypting the entity secret failed")]
    EncryptionFailed,
}

impl CiphertextError {
    /// Stable machine-readable reason code. A key that is too small is an invalid key.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::PublicKeyInvalid { .. } | Self::PublicKeyTooSmall { .. } => {
                "CIRCLE_PUBLIC_KEY_INVALID"
            }
            Self::EncryptionFailed => "CIRCLE_CIPHERTEXT_FAILED",
        }
    }

    /// Every reason code this module can return.
    pub fn all_reason_codes() -> &'static [&'static str] {
        &["CIRCLE_PUBLIC_KEY_INVALID", "CIRCLE_CIPHERTEXT_FAILED"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::PrivateKey;
    use rsa::pkcs8::DecodePrivateKey as _;

    const PRIVATE_4096: &str = include_str!("../../tests/vectors/circle/rsa4096-private.pem");
    const PUBLIC_4096: &str = include_str!("../../tests/vectors/circle/rsa4096-public.pem");
    const PUBLIC_4096_PKCS1: &str =
        include_str!("../../tests/vectors/circle/rsa4096-public-pkcs1.pem");
    const PUBLIC_1024: &str = include_str!("../../tests/vectors/circle/rsa1024-public.pem");
    const EC_PUBLIC: &str = include_str!("../../tests/vectors/circle/p256-public.pem");
    const ENTITY_HEX: &str = "7ae43b03d7e48795cbf39ddad2f58dc8e186eb3d2dab3a5ec5bb3b33946639a4";

    fn decrypt(ciphertext_b64: &str) -> Vec<u8> {
        let key = PrivateKey::from_pkcs8_pem(PRIVATE_4096).unwrap();
        let bytes = STANDARD.decode(ciphertext_b64).unwrap();
        key.decrypt(Oaep::<Sha256>::new(), &bytes).unwrap()
    }

    #[test]
    fn ciphertext_decrypts_to_the_raw_secret_and_is_fresh() {
        let secret = EntitySecret::from_hex(ENTITY_HEX).unwrap();
        let first = entity_secret_ciphertext(&secret, PUBLIC_4096).unwrap();
        let second = entity_secret_ciphertext(&secret, PUBLIC_4096).unwrap();
        assert_eq!(first.len(), 684);
        assert_ne!(first, second);
        assert_eq!(decrypt(&first), secret.as_bytes());
        assert_eq!(decrypt(&second), secret.as_bytes());
    }

    #[test]
    fn openssl_oaep_sha256_ciphertext_matches_these_parameters() {
        // Made by `openssl pkeyutl -encrypt` with rsa_oaep_md:sha256 and rsa_mgf1_md:sha256
        // (tests/vectors/circle/SOURCE.md): the parameters this module encrypts with.
        let openssl = include_str!("../../tests/vectors/circle/openssl-oaep-sha256.b64").trim();
        assert_eq!(
            decrypt(openssl),
            EntitySecret::from_hex(ENTITY_HEX).unwrap().as_bytes()
        );
        // The MGF1 hash matters: the same OAEP hash with MGF1 over another hash does not decrypt it.
        let key = PrivateKey::from_pkcs8_pem(PRIVATE_4096).unwrap();
        let bytes = STANDARD.decode(openssl).unwrap();
        assert!(
            key.decrypt(Oaep::<Sha256, sha2::Sha224>::new_with_mgf_hash(), &bytes)
                .is_err()
        );
    }

    #[test]
    fn pkcs1_encoding_is_read_too() {
        let secret = EntitySecret::from_hex(ENTITY_HEX).unwrap();
        let ciphertext = entity_secret_ciphertext(&secret, PUBLIC_4096_PKCS1).unwrap();
        assert_eq!(decrypt(&ciphertext), secret.as_bytes());
        // The same DER under the other label is still read.
        let relabelled = PUBLIC_4096.replace("PUBLIC KEY", "RSA PUBLIC KEY");
        let ciphertext = entity_secret_ciphertext(&secret, &relabelled).unwrap();
        assert_eq!(decrypt(&ciphertext), secret.as_bytes());
    }

    #[test]
    fn bad_keys_are_refused() {
        let secret = EntitySecret::from_hex(ENTITY_HEX).unwrap();
        let truncated = {
            let mut lines: Vec<&str> = PUBLIC_4096.lines().collect();
            lines.remove(3);
            lines.join("\n")
        };
        for bad in [
            "",
            "not a key",
            EC_PUBLIC,
            PUBLIC_1024,
            PRIVATE_4096,
            &PUBLIC_4096.replace("-----END PUBLIC KEY-----", ""),
            &PUBLIC_4096.replace("-----END PUBLIC KEY-----", "-----END RSA PUBLIC KEY-----"),
            &truncated,
            "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----",
        ] {
            let error = entity_secret_ciphertext(&secret, bad).unwrap_err();
            assert_eq!(error.reason_code(), "CIRCLE_PUBLIC_KEY_INVALID", "{bad}");
        }
        assert_eq!(
            entity_secret_ciphertext(&secret, PUBLIC_1024).unwrap_err(),
            CiphertextError::PublicKeyTooSmall { bits: 1024 }
        );
    }
}
