//! The two secrets the Circle rail holds: the API key that authenticates every request, and the
//! entity secret that authorizes wallet operations (sent only as a fresh RSA ciphertext, see
//! [`super::ciphertext`]).
//!
//! **API key.** Circle's keys have the shape `PREFIX:ID:SECRET`, and "all three parts are required
//! to make a successful request"; the prefix names the environment: `TEST_API_KEY` for testnet
//! (the sandbox) and `LIVE_API_KEY` for mainnet. The key is sent whole as
//! `Authorization: Bearer PREFIX:ID:SECRET`.
//! Sources: <https://developers.circle.com/w3s/web3-services-api-client-keys-auth>,
//! <https://developers.circle.com/w3s/docs/web3-services-api-keys-authentication>,
//! <https://developers.circle.com/api-reference/wallets/common/get-notification-signature>.
//!
//! Only prefixed keys are accepted. Circle also mentions API keys given as "base64-encoded
//! strings" (<https://docs.arc.network/arc/tutorials/transfer-usdc-or-eurc>); such a key does not
//! say which environment it belongs to, so it is refused rather than guessed.
//!
//! The docs show ids and secrets as 32 lower-case hex digits but one of their own examples has a
//! non-hex letter in the secret, so neither part is held to hex: each must be non-empty printable
//! ASCII without `:` (nothing that could break out of an HTTP header).
//!
//! **Entity secret.** "A randomly generated 32-byte key", written as 64 hex digits
//! (`openssl rand -hex 32`). Sources:
//! <https://developers.circle.com/wallets/dev-controlled/entity-secret-management>,
//! <https://developers.circle.com/wallets/dev-controlled/register-entity-secret>.
//!
//! Both are read from text, a file or an environment variable. A file must not be readable or
//! writable by group or others (mode `0o600` or stricter, checked on the open handle). Neither
//! value ever appears in `Debug`, `Display` or an error: errors name the file or variable and say
//! what is wrong with its shape, never what it holds. Secret bytes are zeroized on drop, and so is
//! every intermediate copy read from a file or the environment.

use std::fmt;
use std::io::Read;
use std::path::Path;

use zeroize::{Zeroize, Zeroizing};

/// Largest secret file read, in bytes; a key or secret is far smaller.
const MAX_SECRET_FILE_LEN: u64 = 4096;

/// The Circle environment an API key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircleEnvironment {
    /// Testnet: the sandbox, keys prefixed `TEST_API_KEY`.
    Testnet,
    /// Mainnet: real money, keys prefixed `LIVE_API_KEY`.
    Mainnet,
}

impl CircleEnvironment {
    /// The API key prefix of this environment.
    pub fn api_key_prefix(self) -> &'static str {
        match self {
            Self::Testnet => "TEST_API_KEY",
            Self::Mainnet => "LIVE_API_KEY",
        }
    }

    /// Lower-case name (`testnet`, `mainnet`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Testnet => "testnet",
            Self::Mainnet => "mainnet",
        }
    }
}

impl fmt::Display for CircleEnvironment {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A Circle API key, `PREFIX:ID:SECRET`.
///
/// `Debug` and `Display` show the prefix and the id, never the secret. Not `Clone`: share it
/// behind a reference or an `Arc` so that one copy exists.
pub struct ApiKey {
    environment: CircleEnvironment,
    id: String,
    secret: Zeroizing<String>,
}

impl ApiKey {
    /// Parses `PREFIX:ID:SECRET` (surrounding ASCII whitespace, such as a file's final newline,
    /// is ignored).
    ///
    /// Refuses with [`SecretError::ApiKeyMalformed`] an unknown prefix, a number of parts other
    /// than three, and an empty part or one with a character outside printable ASCII.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let mut parts = text.split(':');
        let (Some(prefix), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::ApiKeyMalformed {
                reason: "expected three parts PREFIX:ID:SECRET",
            });
        };
        let environment = match prefix {
            "TEST_API_KEY" => CircleEnvironment::Testnet,
            "LIVE_API_KEY" => CircleEnvironment::Mainnet,
            _ => {
                return Err(SecretError::ApiKeyMalformed {
                    reason: "prefix must be TEST_API_KEY or LIVE_API_KEY",
                });
            }
        };
        if !is_key_part(id) {
            return Err(SecretError::ApiKeyMalformed {
                reason: "the id must be non-empty printable ASCII",
            });
        }
        if !is_key_part(secret) {
            return Err(SecretError::ApiKeyMalformed {
                reason: "the secret must be non-empty printable ASCII",
            });
        }
        Ok(Self {
            environment,
            id: id.to_owned(),
            secret: Zeroizing::new(secret.to_owned()),
        })
    }

    /// Reads a key from a file that only its owner can read (see the module docs).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = read_secret_file(path)?;
        Self::parse(&text).map_err(|error| error.with_origin(format!("file {}", path.display())))
    }

    /// Reads a key from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, SecretError> {
        let text = read_secret_env(name)?;
        Self::parse(&text)
            .map_err(|error| error.with_origin(format!("environment variable {name}")))
    }

    /// The environment the key's prefix names.
    pub fn environment(&self) -> CircleEnvironment {
        self.environment
    }

    /// The key's id (its middle part; not secret).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Refuses the key with [`SecretError::ApiKeyWrongEnvironment`] unless it belongs to
    /// `expected`: a gateway configured for testnet never sends a live key, and the reverse.
    pub fn expect_environment(&self, expected: CircleEnvironment) -> Result<(), SecretError> {
        if self.environment == expected {
            Ok(())
        } else {
            Err(SecretError::ApiKeyWrongEnvironment {
                expected,
                found: self.environment,
            })
        }
    }

    /// The `Authorization` header value, `Bearer PREFIX:ID:SECRET`.
    ///
    /// The result contains the secret: put it on the request and drop it, never log it.
    pub fn authorization_header(&self) -> String {
        format!(
            "Bearer {}:{}:{}",
            self.environment.api_key_prefix(),
            self.id,
            self.secret.as_str()
        )
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ApiKey")
            .field("prefix", &self.environment.api_key_prefix())
            .field("id", &self.id)
            .field("secret", &format_args!("<redacted>"))
            .finish()
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}:{}:<redacted>",
            self.environment.api_key_prefix(),
            self.id
        )
    }
}

/// A key part: non-empty, printable ASCII (`!`..=`~`), no `:`.
fn is_key_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b':')
}

/// Length of the entity secret in bytes.
pub const ENTITY_SECRET_LEN: usize = 32;

/// The 32-byte entity secret. Zeroized on drop; `Debug` is redacted; not `Clone`.
pub struct EntitySecret {
    bytes: [u8; ENTITY_SECRET_LEN],
}

impl EntitySecret {
    /// Parses exactly 64 hexadecimal digits (either case; surrounding ASCII whitespace ignored,
    /// no `0x` prefix).
    ///
    /// Refuses any other character with [`SecretError::EntitySecretMalformed`], and any other
    /// number of digits with [`SecretError::EntitySecretLength`].
    pub fn from_hex(text: &str) -> Result<Self, SecretError> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        if !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(SecretError::EntitySecretMalformed);
        }
        if text.len() != 2 * ENTITY_SECRET_LEN {
            return Err(SecretError::EntitySecretLength { digits: text.len() });
        }
        let mut bytes = [0u8; ENTITY_SECRET_LEN];
        for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
            *byte = (hex_value(pair[0]) << 4) | hex_value(pair[1]);
        }
        Ok(Self { bytes })
    }

    /// Reads the secret from a file that only its owner can read (see the module docs).
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = read_secret_file(path)?;
        Self::from_hex(&text).map_err(|error| error.with_origin(format!("file {}", path.display())))
    }

    /// Reads the secret from the environment variable `name`.
    pub fn from_env(name: &str) -> Result<Self, SecretError> {
        let text = read_secret_env(name)?;
        Self::from_hex(&text)
            .map_err(|error| error.with_origin(format!("environment variable {name}")))
    }

    /// The raw secret, for the ciphertext only.
    pub(crate) fn as_bytes(&self) -> &[u8; ENTITY_SECRET_LEN] {
        &self.bytes
    }
}

impl Drop for EntitySecret {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl fmt::Debug for EntitySecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("EntitySecret(<redacted>)")
    }
}

/// Value of one hexadecimal digit already checked with `is_ascii_hexdigit`.
fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// Reads a whole secret file, refusing one that group or others may read or write.
fn read_secret_file(path: &Path) -> Result<Zeroizing<String>, SecretError> {
    let unreadable = |reason: String| SecretError::FileUnreadable {
        path: path.display().to_string(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|error| unreadable(error.kind().to_string()))?;
    let metadata = file
        .metadata()
        .map_err(|error| unreadable(error.kind().to_string()))?;
    if !metadata.is_file() {
        return Err(unreadable("not a regular file".into()));
    }
    check_private_mode(path, &metadata)?;
    if metadata.len() > MAX_SECRET_FILE_LEN {
        return Err(unreadable(format!(
            "larger than {MAX_SECRET_FILE_LEN} bytes"
        )));
    }
    let mut raw = Zeroizing::new(Vec::with_capacity(64));
    file.take(MAX_SECRET_FILE_LEN + 1)
        .read_to_end(&mut raw)
        .map_err(|error| unreadable(error.kind().to_string()))?;
    if raw.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(unreadable(format!(
            "larger than {MAX_SECRET_FILE_LEN} bytes"
        )));
    }
    match std::str::from_utf8(&raw) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(unreadable("not UTF-8 text".into())),
    }
}

/// Refuses a file whose mode grants group or others any permission.
#[cfg(unix)]
fn check_private_mode(path: &Path, metadata: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        Ok(())
    } else {
        Err(SecretError::FilePermissions {
            path: path.display().to_string(),
            mode,
        })
    }
}

/// No Unix mode bits to check on this platform.
#[cfg(not(unix))]
fn check_private_mode(_path: &Path, _metadata: &std::fs::Metadata) -> Result<(), SecretError> {
    Ok(())
}

/// Reads an environment variable holding a secret.
fn read_secret_env(name: &str) -> Result<Zeroizing<String>, SecretError> {
    match std::env::var(name) {
        Ok(value) => Ok(Zeroizing::new(value)),
        Err(std::env::VarError::NotPresent) => Err(SecretError::EnvMissing {
            name: name.to_owned(),
            reason: "not set",
        }),
        Err(std::env::VarError::NotUnicode(mut raw)) => {
            // Wipe what can be wiped of the copy before it is dropped.
            raw.clear();
            Err(SecretError::EnvMissing {
                name: name.to_owned(),
                reason: "not valid Unicode",
            })
        }
    }
}

/// Why a Circle secret was refused. No variant carries or echoes secret material.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The API key is not `TEST_API_KEY:ID:SECRET` or `LIVE_API_KEY:ID:SECRET`.
    #[error("Circle API key is malformed: {reason}")]
    ApiKeyMalformed {
        /// What is wrong with its shape.
        reason: &'static str,
    },
    /// The API key belongs to another environment than the one configured.
    #[error("Circle API key is for {found}, expected {expected}")]
    ApiKeyWrongEnvironment {
        /// The configured environment.
        expected: CircleEnvironment,
        /// The key's environment.
        found: CircleEnvironment,
    },
    /// The entity secret is hex but not 64 digits long.
    #[error("Circle entity secret must be 64 hexadecimal digits, found {digits}")]
    EntitySecretLength {
        /// How many digits were found.
        digits: usize,
    },
    /// The entity secret contains a character that is not a hexadecimal digit.
    #[error("Circle entity secret must contain only hexadecimal digits")]
    EntitySecretMalformed,
    /// The secret file can be read or written by group or others.
    #[error(
        "secret file {path} has mode {mode:03o}; it must not be accessible to group or others (chmod 600)"
    )]
    FilePermissions {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The secret file cannot be opened or read.
    #[error("secret file {path} cannot be read: {reason}")]
    FileUnreadable {
        /// The file.
        path: String,
        /// Why (an I/O error kind, never content).
        reason: String,
    },
    /// The environment variable is unset or not Unicode.
    #[error("environment variable {name} is {reason}")]
    EnvMissing {
        /// The variable's name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A secret read from `origin` was refused.
    #[error("{origin}: {error}")]
    Loaded {
        /// The file or variable it came from.
        origin: String,
        /// Why it was refused.
        error: Box<SecretError>,
    },
}

impl SecretError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::ApiKeyMalformed { .. } => "CIRCLE_API_KEY_MALFORMED",
            Self::ApiKeyWrongEnvironment { .. } => "CIRCLE_API_KEY_WRONG_ENVIRONMENT",
            Self::EntitySecretLength { .. } => "CIRCLE_ENTITY_SECRET_LENGTH",
            Self::EntitySecretMalformed => "CIRCLE_ENTITY_SECRET_MALFORMED",
            Self::FilePermissions { .. } => "CIRCLE_SECRET_FILE_PERMISSIONS",
            Self::FileUnreadable { .. } => "CIRCLE_SECRET_FILE_UNREADABLE",
            Self::EnvMissing { .. } => "CIRCLE_SECRET_ENV_MISSING",
            Self::Loaded { error, .. } => error.reason_code(),
        }
    }

    /// Every reason code this module can return.
    pub fn all_reason_codes() -> &'static [&'static str] {
        &[
            "CIRCLE_API_KEY_MALFORMED",
            "CIRCLE_API_KEY_WRONG_ENVIRONMENT",
            "CIRCLE_ENTITY_SECRET_LENGTH",
            "CIRCLE_ENTITY_SECRET_MALFORMED",
            "CIRCLE_SECRET_FILE_PERMISSIONS",
            "CIRCLE_SECRET_FILE_UNREADABLE",
            "CIRCLE_SECRET_ENV_MISSING",
        ]
    }

    /// Names where the refused value came from.
    fn with_origin(self, origin: String) -> Self {
        Self::Loaded {
            origin,
            error: Box::new(self),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEST_KEY: &str =
        "TEST_API_KEY:ebb3ad72232624921abc4b162148bb84:019ef3358ef9cd6d08fc32c5fe89a68d";
    const SECRET_PART: &str = "019ef3358ef9cd6d08fc32c5fe89a68d";
    const ENTITY_HEX: &str = "7ae43b03d7e48795cbf39ddad2f58dc8e186eb3d2dab3a5ec5bb3b33946639a4";

    #[test]
    fn api_key_parses_environment_and_header() {
        let key = ApiKey::parse(TEST_KEY).unwrap();
        assert_eq!(key.environment(), CircleEnvironment::Testnet);
        assert_eq!(key.id(), "ebb3ad72232624921abc4b162148bb84");
        assert_eq!(key.authorization_header(), format!("Bearer {TEST_KEY}"));

        let live = ApiKey::parse(&TEST_KEY.replace("TEST_", "LIVE_")).unwrap();
        assert_eq!(live.environment(), CircleEnvironment::Mainnet);
        assert!(
            live.authorization_header()
                .starts_with("Bearer LIVE_API_KEY:")
        );

        let trimmed = ApiKey::parse(&format!("  {TEST_KEY}\n")).unwrap();
        assert_eq!(trimmed.authorization_header(), format!("Bearer {TEST_KEY}"));
    }

    #[test]
    fn api_key_never_shows_its_secret() {
        let key = ApiKey::parse(TEST_KEY).unwrap();
        for shown in [format!("{key:?}"), format!("{key:#?}"), key.to_string()] {
            assert!(!shown.contains(SECRET_PART), "{shown}");
            assert!(shown.contains("TEST_API_KEY"), "{shown}");
            assert!(
                shown.contains("ebb3ad72232624921abc4b162148bb84"),
                "{shown}"
            );
        }
    }

    #[test]
    fn api_key_malformed_shapes_are_refused() {
        for bad in [
            "",
            "TEST_API_KEY",
            "TEST_API_KEY:abc",
            "TEST_API_KEY:abc:",
            "TEST_API_KEY::secret",
            "TEST_API_KEY:abc:def:ghi",
            "SANDBOX_API_KEY:abc:def",
            "test_api_key:abc:def",
            "TEST_API_KEY :abc:def",
            "TEST_API_KEY:ab c:def",
            "TEST_API_KEY:abc:de\r\nX-Injected: 1",
            "TEST_API_KEY:abc:dé",
            "Bearer TEST_API_KEY:abc:def",
        ] {
            let error = ApiKey::parse(bad).unwrap_err();
            assert_eq!(error.reason_code(), "CIRCLE_API_KEY_MALFORMED", "{bad:?}");
            assert!(!error.to_string().contains("def"), "{error}");
        }
    }

    #[test]
    fn api_key_environment_is_enforced() {
        let key = ApiKey::parse(TEST_KEY).unwrap();
        key.expect_environment(CircleEnvironment::Testnet).unwrap();
        let error = key
            .expect_environment(CircleEnvironment::Mainnet)
            .unwrap_err();
        assert_eq!(error.reason_code(), "CIRCLE_API_KEY_WRONG_ENVIRONMENT");
        assert_eq!(
            error.to_string(),
            "Circle API key is for testnet, expected mainnet"
        );
    }

    #[test]
    fn entity_secret_parses_exactly_32_bytes() {
        let secret = EntitySecret::from_hex(&format!(" {ENTITY_HEX}\n")).unwrap();
        assert_eq!(secret.as_bytes()[0], 0x7a);
        assert_eq!(secret.as_bytes()[31], 0xa4);
        let upper = EntitySecret::from_hex(&ENTITY_HEX.to_uppercase()).unwrap();
        assert_eq!(upper.as_bytes(), secret.as_bytes());
        assert_eq!(format!("{secret:?}"), "EntitySecret(<redacted>)");
    }

    #[test]
    fn entity_secret_wrong_length_or_digits_are_refused() {
        for (bad, code) in [
            ("", "CIRCLE_ENTITY_SECRET_LENGTH"),
            (&ENTITY_HEX[..62], "CIRCLE_ENTITY_SECRET_LENGTH"),
            (&format!("{ENTITY_HEX}00"), "CIRCLE_ENTITY_SECRET_LENGTH"),
            (
                &format!("0x{}", &ENTITY_HEX[2..]),
                "CIRCLE_ENTITY_SECRET_MALFORMED",
            ),
            (
                &format!("{}g", &ENTITY_HEX[..63]),
                "CIRCLE_ENTITY_SECRET_MALFORMED",
            ),
            (
                &format!("{} {}", &ENTITY_HEX[..32], &ENTITY_HEX[32..]),
                "CIRCLE_ENTITY_SECRET_MALFORMED",
            ),
        ] {
            let error = EntitySecret::from_hex(bad).unwrap_err();
            assert_eq!(error.reason_code(), code, "{bad:?}");
            assert!(!error.to_string().contains(&ENTITY_HEX[..8]), "{error}");
        }
    }

    #[test]
    fn reason_codes_are_distinct_and_prefixed() {
        let errors = [
            SecretError::ApiKeyMalformed { reason: "" },
            SecretError::ApiKeyWrongEnvironment {
                expected: CircleEnvironment::Testnet,
                found: CircleEnvironment::Mainnet,
            },
            SecretError::EntitySecretLength { digits: 0 },
            SecretError::EntitySecretMalformed,
            SecretError::FilePermissions {
                path: String::new(),
                mode: 0,
            },
            SecretError::FileUnreadable {
                path: String::new(),
                reason: String::new(),
            },
            SecretError::EnvMissing {
                name: String::new(),
                reason: "",
            },
        ];
        let mut codes: Vec<_> = errors.iter().map(SecretError::reason_code).collect();
        assert_eq!(codes, SecretError::all_reason_codes());
        assert!(codes.iter().all(|code| code.starts_with("CIRCLE_")));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }
}
