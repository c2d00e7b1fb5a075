//! Gateway key files on disk: PKCS#8 PEM private keys (mode 0600), SPKI PEM and JWK public keys.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _};
use ed25519_dalek::{SigningKey, VerifyingKey};
use trustos_kernel::keys::{GatewayKey, Jwk, Jwks, PublicKey, TrustedKeys};
use zeroize::Zeroizing;

/// File name of the private key written by `trustos keygen`.
pub const PRIVATE_KEY_FILE: &str = "gateway.key.pem";
/// File name of the public JWK written by `trustos keygen`.
pub const PUBLIC_JWK_FILE: &str = "gateway.jwk.json";

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file system refused.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds no key Trust OS can use.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Random bytes for a new key could not be had from the OS.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A new gateway key from the operating system's randomness.
pub fn generate() -> Result<GatewayKey, KeyFileError> {
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|err| KeyFileError::Random(err.to_string()))?;
    Ok(GatewayKey::from_seed(&seed))
}

/// Writes `key` into `dir` as a PKCS#8 PEM private key (mode 0600) and a public JWK. Refuses to
/// overwrite an existing private key.
pub fn write_key_pair(dir: &Path, key: &GatewayKey) -> Result<(PathBuf, PathBuf), KeyFileError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error(dir))?;
    let private_path = dir.join(PRIVATE_KEY_FILE);
    let pem = key
        .signing_key()
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|err| KeyFileError::Invalid {
            path: private_path.clone(),
            reason: format!("cannot encode the key as PKCS#8: {err}"),
        })?;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&private_path)
        .map_err(io_error(&private_path))?;
    file.write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_error(&private_path))?;

    let public_path = dir.join(PUBLIC_JWK_FILE);
    let mut jwk =
        serde_json::to_vec_pretty(&key.public().to_jwk()).map_err(|err| KeyFileError::Invalid {
            path: public_path.clone(),
            reason: err.to_string(),
        })?;
    jwk.push(b'\n');
    fs::write(&public_path, jwk).map_err(io_error(&public_path))?;
    Ok((private_path, public_path))
}

/// Reads a PKCS#8 PEM private key.
pub fn read_private_key(path: &Path) -> Result<GatewayKey, KeyFileError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    let signing = SigningKey::from_pkcs8_pem(&text).map_err(|err| KeyFileError::Invalid {
        path: path.to_owned(),
        reason: format!("not a PKCS#8 PEM Ed25519 private key: {err}"),
    })?;
    Ok(GatewayKey::from_signing_key(signing))
}

/// Reads the public key from a PKCS#8 private key PEM, an SPKI public key PEM, or a JWK.
pub fn read_public_key(path: &Path) -> Result<PublicKey, KeyFileError> {
    let text = fs::read_to_string(path).map_err(io_error(path))?;
    let invalid = |reason: String| KeyFileError::Invalid {
        path: path.to_owned(),
        reason,
    };
    if text.contains("-----BEGIN PRIVATE KEY-----") {
        return read_private_key(path).map(|key| key.public().clone());
    }
    if text.contains("-----BEGIN PUBLIC KEY-----") {
        let key = VerifyingKey::from_public_key_pem(&text)
            .map_err(|err| invalid(format!("not an SPKI PEM Ed25519 public key: {err}")))?;
        return Ok(PublicKey::new(key));
    }
    let jwk: Jwk = trustos_kernel::strict_json::from_slice(text.as_bytes())
        .map_err(|err| invalid(format!("not a PEM key or a JWK: {err}")))?;
    let keys = TrustedKeys::from_jwks(&Jwks { keys: vec![jwk] })
        .map_err(|err| invalid(err.to_string()))?;
    keys.iter()
        .next()
        .cloned()
        .ok_or_else(|| invalid("no key".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn key_pair_round_trips_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("trustos-keyfile-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let key = generate().unwrap();
        let (private_path, public_path) = write_key_pair(&dir, &key).unwrap();
        let mode = fs::metadata(&private_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read_private_key(&private_path).unwrap().kid(), key.kid());
        assert_eq!(read_public_key(&private_path).unwrap(), *key.public());
        assert_eq!(read_public_key(&public_path).unwrap(), *key.public());
        // Never overwrites a key.
        let err = write_key_pair(&dir, &generate().unwrap()).unwrap_err();
        assert!(matches!(err, KeyFileError::Io { .. }), "{err}");
        assert_eq!(read_private_key(&private_path).unwrap().kid(), key.kid());
        fs::remove_dir_all(&dir).unwrap();
    }
}
