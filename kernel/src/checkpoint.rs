//! C2SP transparency-log checkpoints (`c2sp.org/tlog-checkpoint`) signed as C2SP signed notes
//! (`c2sp.org/signed-note`) with Ed25519, interoperable with Go's `golang.org/x/mod/sumdb/note`.
//!
//! A checkpoint body is
//!
//! ```text
//! <origin>\n<tree size, decimal>\n<base64 root hash>\n[<extension line>\n]*
//! ```
//!
//! and a signed note is the note text (ending in a newline), a blank line, then one or more
//! signature lines `— <key name> <base64(4-byte key id || signature)>\n` (U+2014 em dash). For
//! Ed25519 the key id is the first four bytes, big-endian, of
//! `SHA-256(key name || 0x0A || 0x01 || 32-byte public key)` and the signature is over the note
//! text bytes. Verifier keys travel as `<name>+<8 hex key id>+<base64(0x01 || public key)>`.
//!
//! Verification ([`open_note`]) follows the signed-note rules: signatures from unknown keys are
//! ignored, every signature from a known key must verify (`verify_strict`), and at least one must.
//! Parsing is strict everywhere: anything two implementations could read differently is refused.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Signature type byte of Ed25519 signed-note keys.
pub const ED25519_SIGNATURE_TYPE: u8 = 0x01;

/// Most signature lines [`open_note`] reads; notes with more are refused before any signature is
/// checked. The signed-note spec requires accepting at least 16; Go's note package caps at 100.
pub const MAX_SIGNATURES: usize = 100;

/// Prefix of every signature line: em dash and space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Why a checkpoint, a signed note or a verifier key was refused. Each variant has a stable
/// [`reason_code`](Self::reason_code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint body is not three or more newline-terminated lines.
    #[error("checkpoint is malformed: {0}")]
    MalformedCheckpoint(&'static str),
    /// The origin line is empty or contains a control character.
    #[error("checkpoint origin must be non-empty and free of control characters")]
    InvalidOrigin,
    /// The tree size line is not a canonical decimal `u64` (digits only, no leading zero).
    #[error("checkpoint tree size is not a canonical decimal number")]
    InvalidTreeSize,
    /// The root hash line is not the canonical standard base64 of 32 bytes.
    #[error("checkpoint root hash is not the base64 of 32 bytes")]
    InvalidRootHash,
    /// An extension line is empty or contains a control character.
    #[error("checkpoint extension lines must be non-empty and free of control characters")]
    InvalidExtension,
    /// The checkpoint verified, but is for another log than the one expected.
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    OriginMismatch {
        /// The origin the caller expected.
        expected: String,
        /// The origin in the checkpoint.
        found: String,
    },
    /// The signed note does not follow the signed-note format.
    #[error("signed note is malformed: {0}")]
    MalformedNote(&'static str),
    /// The note carries no signature lines at all.
    #[error("note has no signatures")]
    NoSignatures,
    /// The note carries more than [`MAX_SIGNATURES`] signature lines.
    #[error("note has more than {MAX_SIGNATURES} signature lines")]
    TooManySignatures,
    /// No signature line is from a known key (name and key id both matching).
    #[error("note is not signed by any known key")]
    UnknownKey,
    /// A signature from a known key does not verify; the whole note is refused.
    #[error("signature by known key {key_name}+{key_id:08x} does not verify")]
    InvalidSignature {
        /// Name of the key.
        key_name: String,
        /// Key id of the key.
        key_id: u32,
    },
    /// Two different known keys share a key name and key id, so a signature cannot be attributed.
    #[error("two different known keys are named {key_name}+{key_id:08x}")]
    AmbiguousKey {
        /// The shared key name.
        key_name: String,
        /// The shared key id.
        key_id: u32,
    },
    /// A key name is empty or contains whitespace, `+` or a control character.
    #[error("key name must be non-empty, without whitespace, '+' or control characters")]
    InvalidKeyName,
    /// A verifier key string is not `<name>+<8 lowercase hex>+<base64>`.
    #[error("verifier key is malformed: {0}")]
    MalformedVerifierKey(&'static str),
    /// A verifier key string's key id is not the one its name and public key imply.
    #[error("verifier key id does not match its name and public key")]
    VerifierKeyIdMismatch,
    /// A verifier key string is for a signature type other than Ed25519.
    #[error("verifier key has unsupported signature type 0x{0:02x}")]
    UnsupportedKeyType(u8),
    /// The public key is not a valid Ed25519 point, or is a weak (small-order) key.
    #[error("verifier public key is not a usable Ed25519 key")]
    InvalidPublicKey,
}

impl CheckpointError {
    /// Stable machine-readable reason code.
    #[must_use]
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::MalformedCheckpoint(_) => "CHECKPOINT_MALFORMED",
            Self::InvalidOrigin => "CHECKPOINT_BAD_ORIGIN",
            Self::InvalidTreeSize => "CHECKPOINT_BAD_TREE_SIZE",
            Self::InvalidRootHash => "CHECKPOINT_BAD_ROOT_HASH",
            Self::InvalidExtension => "CHECKPOINT_BAD_EXTENSION",
            Self::OriginMismatch { .. } => "CHECKPOINT_ORIGIN_MISMATCH",
            Self::MalformedNote(_) => "NOTE_MALFORMED",
            Self::NoSignatures => "NOTE_NO_SIGNATURES",
            Self::TooManySignatures => "NOTE_TOO_MANY_SIGNATURES",
            Self::UnknownKey => "NOTE_UNKNOWN_KEY",
            Self::InvalidSignature { .. } => "NOTE_BAD_SIGNATURE",
            Self::AmbiguousKey { .. } => "NOTE_AMBIGUOUS_KEY",
            Self::InvalidKeyName => "NOTE_BAD_KEY_NAME",
            Self::MalformedVerifierKey(_) => "VKEY_MALFORMED",
            Self::VerifierKeyIdMismatch => "VKEY_ID_MISMATCH",
            Self::UnsupportedKeyType(_) => "VKEY_UNSUPPORTED_TYPE",
            Self::InvalidPublicKey => "VKEY_INVALID_KEY",
        }
    }
}

fn is_control(c: char) -> bool {
    u32::from(c) < 0x20
}

/// Key names: non-empty, no Unicode whitespace, no `+`, no control characters.
fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || is_control(c))
}

/// Signed notes may contain no control characters other than newline.
fn has_forbidden_control(text: &str) -> bool {
    text.chars().any(|c| is_control(c) && c != '\n')
}

/// A line of a checkpoint: non-empty, no newline or other control character.
fn is_valid_line(line: &str) -> bool {
    !line.is_empty() && !line.chars().any(is_control)
}

/// The signed-note key id of an Ed25519 key:
/// `SHA-256(key name || 0x0A || 0x01 || public key)[..4]` read big-endian.
#[must_use]
pub fn key_id(key_name: &str, key: &VerifyingKey) -> u32 {
    key_id_of_encoded(key_name, &[ED25519_SIGNATURE_TYPE], key.as_bytes())
}

/// Key id over a name and an encoded key given in two parts (type byte(s), key bytes).
fn key_id_of_encoded(key_name: &str, type_part: &[u8], key_part: &[u8]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(key_name.as_bytes());
    hasher.update([b'\n']);
    hasher.update(type_part);
    hasher.update(key_part);
    let digest = hasher.finalize();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest[..4]);
    u32::from_be_bytes(id)
}

/// A key trusted to sign notes: its key name and its Ed25519 public key.
///
/// Implemented for `(String, VerifyingKey)`, `(&str, VerifyingKey)` and [`NoteVerifier`], so
/// [`open_note`] accepts a slice of any of them.
pub trait KnownKey {
    /// The key name signature lines must carry.
    fn key_name(&self) -> &str;
    /// The Ed25519 public key.
    fn verifying_key(&self) -> &VerifyingKey;
}

impl KnownKey for (String, VerifyingKey) {
    fn key_name(&self) -> &str {
        &self.0
    }
    fn verifying_key(&self) -> &VerifyingKey {
        &self.1
    }
}

impl KnownKey for (&str, VerifyingKey) {
    fn key_name(&self) -> &str {
        self.0
    }
    fn verifying_key(&self) -> &VerifyingKey {
        &self.1
    }
}

impl<K: KnownKey + ?Sized> KnownKey for &K {
    fn key_name(&self) -> &str {
        (**self).key_name()
    }
    fn verifying_key(&self) -> &VerifyingKey {
        (**self).verifying_key()
    }
}

/// A named Ed25519 note verifier key, convertible to and from the verifier key string format
/// `<name>+<8 hex key id>+<base64(0x01 || public key)>` of Go's note package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl NoteVerifier {
    /// A verifier for `key` under `name`.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidKeyName`], or [`CheckpointError::InvalidPublicKey`] for a weak
    /// (small-order) key, which could never produce a signature `verify_strict` accepts.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, CheckpointError> {
        if !is_valid_key_name(name) {
            return Err(CheckpointError::InvalidKeyName);
        }
        if key.is_weak() {
            return Err(CheckpointError::InvalidPublicKey);
        }
        Ok(Self {
            name: name.to_owned(),
            key_id: key_id(name, &key),
            key,
        })
    }

    /// Parses a verifier key string `<name>+<8 lowercase hex key id>+<base64(0x01 || key)>`.
    ///
    /// # Errors
    /// [`CheckpointError::MalformedVerifierKey`], [`CheckpointError::InvalidKeyName`],
    /// [`CheckpointError::VerifierKeyIdMismatch`], [`CheckpointError::UnsupportedKeyType`] or
    /// [`CheckpointError::InvalidPublicKey`].
    pub fn from_vkey(vkey: &str) -> Result<Self, CheckpointError> {
        let (name, rest) = vkey
            .split_once('+')
            .ok_or(CheckpointError::MalformedVerifierKey(
                "missing '+' separators",
            ))?;
        let (id_hex, key_b64) =
            rest.split_once('+')
                .ok_or(CheckpointError::MalformedVerifierKey(
                    "missing '+' separators",
                ))?;
        if !is_valid_key_name(name) {
            return Err(CheckpointError::InvalidKeyName);
        }
        if id_hex.len() != 8
            || !id_hex
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(CheckpointError::MalformedVerifierKey(
                "key id must be 8 lowercase hex digits",
            ));
        }
        let claimed_id = u32::from_str_radix(id_hex, 16)
            .map_err(|_| CheckpointError::MalformedVerifierKey("key id is not hexadecimal"))?;
        let encoded = STANDARD
            .decode(key_b64)
            .map_err(|_| CheckpointError::MalformedVerifierKey("key is not standard base64"))?;
        let Some((&key_type, key_bytes)) = encoded.split_first() else {
            return Err(CheckpointError::MalformedVerifierKey("key is empty"));
        };
        // The id commits to the whole encoded key, so check it before interpreting the type.
        if key_id_of_encoded(name, &[key_type], key_bytes) != claimed_id {
            return Err(CheckpointError::VerifierKeyIdMismatch);
        }
        if key_type != ED25519_SIGNATURE_TYPE {
            return Err(CheckpointError::UnsupportedKeyType(key_type));
        }
        let key_bytes: &[u8; 32] = key_bytes.try_into().map_err(|_| {
            CheckpointError::MalformedVerifierKey("Ed25519 public key must be 32 bytes")
        })?;
        let key =
            VerifyingKey::from_bytes(key_bytes).map_err(|_| CheckpointError::InvalidPublicKey)?;
        Self::new(name, key)
    }

    /// The verifier key string `<name>+<key id as 8 lowercase hex>+<base64(0x01 || key)>`.
    #[must_use]
    pub fn to_vkey(&self) -> String {
        let mut encoded = Vec::with_capacity(33);
        encoded.push(ED25519_SIGNATURE_TYPE);
        encoded.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(encoded)
        )
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The signed-note key id.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The Ed25519 public key.
    #[must_use]
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl KnownKey for NoteVerifier {
    fn key_name(&self) -> &str {
        &self.name
    }
    fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }
}

impl FromStr for NoteVerifier {
    type Err = CheckpointError;

    fn from_str(vkey: &str) -> Result<Self, CheckpointError> {
        Self::from_vkey(vkey)
    }
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name on the line.
    pub key_name: String,
    /// Key id on the line.
    pub key_id: u32,
    /// Signature bytes after the key id.
    pub signature: Vec<u8>,
}

/// A signed note whose signatures were checked by [`open_note`]. Only `open_note` creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote {
    text: String,
    verified: Vec<NoteSignature>,
    unverified: Vec<NoteSignature>,
}

impl OpenedNote {
    /// The note text, including its final newline.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// One verified signature per known key that signed, in order of appearance.
    #[must_use]
    pub fn verified(&self) -> &[NoteSignature] {
        &self.verified
    }

    /// Signatures from unknown keys (ignored for trust), identical lines listed once.
    #[must_use]
    pub fn unverified(&self) -> &[NoteSignature] {
        &self.unverified
    }

    /// The note text, including its final newline.
    #[must_use]
    pub fn into_text(self) -> String {
        self.text
    }
}

/// A signature line split into its parts.
struct SignatureLine<'a> {
    line: &'a str,
    key_name: &'a str,
    key_id: u32,
    signature: Vec<u8>,
}

/// A signed note split into text and signature lines; nothing verified yet.
struct ParsedNote<'a> {
    text: &'a str,
    lines: Vec<SignatureLine<'a>>,
}

fn parse_note(signed: &str) -> Result<ParsedNote<'_>, CheckpointError> {
    if has_forbidden_control(signed) {
        return Err(CheckpointError::MalformedNote(
            "contains a control character other than newline",
        ));
    }
    // The text is separated from the signatures by the last blank line.
    let Some(split) = signed.rfind("\n\n") else {
        return Err(if signed.ends_with('\n') {
            CheckpointError::NoSignatures
        } else {
            CheckpointError::MalformedNote("no blank line before the signatures")
        });
    };
    let text = &signed[..=split];
    let block = &signed[split + 2..];
    if block.is_empty() {
        return Err(CheckpointError::NoSignatures);
    }
    let Some(block) = block.strip_suffix('\n') else {
        return Err(CheckpointError::MalformedNote(
            "signature lines must end with a newline",
        ));
    };
    let mut lines = Vec::new();
    for line in block.split('\n') {
        if lines.len() == MAX_SIGNATURES {
            return Err(CheckpointError::TooManySignatures);
        }
        lines.push(parse_signature_line(line)?);
    }
    Ok(ParsedNote { text, lines })
}

fn parse_signature_line(line: &str) -> Result<SignatureLine<'_>, CheckpointError> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(CheckpointError::MalformedNote(
            "signature line does not start with an em dash and a space",
        ))?;
    let (key_name, encoded) = rest.split_once(' ').ok_or(CheckpointError::MalformedNote(
        "signature line has no space between key name and signature",
    ))?;
    if !is_valid_key_name(key_name) {
        return Err(CheckpointError::MalformedNote(
            "signature line has an invalid key name",
        ));
    }
    let raw = STANDARD
        .decode(encoded)
        .map_err(|_| CheckpointError::MalformedNote("signature is not standard base64"))?;
    if raw.len() < 5 {
        return Err(CheckpointError::MalformedNote(
            "signature is shorter than a key id and one byte",
        ));
    }
    let (id, signature) = raw.split_at(4);
    let mut id_bytes = [0u8; 4];
    id_bytes.copy_from_slice(id);
    Ok(SignatureLine {
        line,
        key_name,
        key_id: u32::from_be_bytes(id_bytes),
        signature: signature.to_vec(),
    })
}

/// The text of a signed note, **unverified**: only the format is checked (exactly as
/// [`open_note`] checks it). Use it to decide which keys to verify with, never to trust content.
///
/// # Errors
/// [`CheckpointError::MalformedNote`], [`CheckpointError::NoSignatures`] or
/// [`CheckpointError::TooManySignatures`].
pub fn note_text(signed: &str) -> Result<&str, CheckpointError> {
    parse_note(signed).map(|note| note.text)
}

/// Signs `text` (which must end with a newline) with `key` under `key_name` and returns the
/// signed note: the text, a blank line and one signature line.
///
/// # Errors
/// [`CheckpointError::InvalidKeyName`], or [`CheckpointError::MalformedNote`] if the text does not
/// end with a newline or contains a control character other than newline.
pub fn sign_note(text: &str, key_name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
    if !is_valid_key_name(key_name) {
        return Err(CheckpointError::InvalidKeyName);
    }
    if !text.ends_with('\n') {
        return Err(CheckpointError::MalformedNote(
            "note text must end with a newline",
        ));
    }
    if has_forbidden_control(text) {
        return Err(CheckpointError::MalformedNote(
            "contains a control character other than newline",
        ));
    }
    let signature = key.sign(text.as_bytes());
    let mut raw = Vec::with_capacity(4 + 64);
    raw.extend_from_slice(&key_id(key_name, &key.verifying_key()).to_be_bytes());
    raw.extend_from_slice(&signature.to_bytes());
    Ok(format!(
        "{text}\n{SIGNATURE_PREFIX}{key_name} {}\n",
        STANDARD.encode(raw)
    ))
}

/// The known key with this name and key id, if any; identical duplicate entries are fine.
fn resolve_key<'k>(
    known: &[(&str, u32, &'k VerifyingKey)],
    key_name: &str,
    key_id: u32,
) -> Result<Option<&'k VerifyingKey>, CheckpointError> {
    let mut candidates = known
        .iter()
        .filter(|(name, id, _)| *name == key_name && *id == key_id)
        .map(|(_, _, key)| *key);
    let Some(key) = candidates.next() else {
        return Ok(None);
    };
    if candidates.any(|other| other != key) {
        return Err(CheckpointError::AmbiguousKey {
            key_name: key_name.to_owned(),
            key_id,
        });
    }
    Ok(Some(key))
}

/// Opens a signed note: checks its format and its signatures against `known` keys.
///
/// A signature line is from a known key when both its key name and key id match one. Lines from
/// unknown keys are ignored (kept in [`OpenedNote::unverified`]); every line from a known key must
/// verify under `verify_strict`, and at least one must be present.
///
/// # Errors
/// [`CheckpointError::MalformedNote`], [`CheckpointError::NoSignatures`],
/// [`CheckpointError::TooManySignatures`], [`CheckpointError::AmbiguousKey`],
/// [`CheckpointError::InvalidSignature`] (a known key's signature fails: the whole note is
/// refused) or [`CheckpointError::UnknownKey`] (no line is from a known key).
pub fn open_note<K: KnownKey>(signed: &str, known: &[K]) -> Result<OpenedNote, CheckpointError> {
    let note = parse_note(signed)?;
    let known: Vec<(&str, u32, &VerifyingKey)> = known
        .iter()
        .map(|k| {
            let key = k.verifying_key();
            (k.key_name(), key_id(k.key_name(), key), key)
        })
        .collect();

    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut verified_lines: Vec<&str> = Vec::new();
    let mut unverified: Vec<NoteSignature> = Vec::new();
    let mut unverified_lines: Vec<&str> = Vec::new();
    for line in note.lines {
        let Some(key) = resolve_key(&known, line.key_name, line.key_id)? else {
            if !unverified_lines.contains(&line.line) {
                unverified_lines.push(line.line);
                unverified.push(NoteSignature {
                    key_name: line.key_name.to_owned(),
                    key_id: line.key_id,
                    signature: line.signature,
                });
            }
            continue;
        };
        if verified_lines.contains(&line.line) {
            continue;
        }
        let invalid = || CheckpointError::InvalidSignature {
            key_name: line.key_name.to_owned(),
            key_id: line.key_id,
        };
        let bytes: &[u8; 64] = line
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| invalid())?;
        key.verify_strict(note.text.as_bytes(), &Signature::from_bytes(bytes))
            .map_err(|_| invalid())?;
        verified_lines.push(line.line);
        if !verified
            .iter()
            .any(|s| s.key_name == line.key_name && s.key_id == line.key_id)
        {
            verified.push(NoteSignature {
                key_name: line.key_name.to_owned(),
                key_id: line.key_id,
                signature: line.signature,
            });
        }
    }
    if verified.is_empty() {
        return Err(CheckpointError::UnknownKey);
    }
    Ok(OpenedNote {
        text: note.text.to_owned(),
        verified,
        unverified,
    })
}

/// A C2SP tlog checkpoint: a log's origin, tree size and root hash, plus optional extension lines.
///
/// Fields are public for convenience; [`Checkpoint::parse`] only returns valid checkpoints, and
/// [`Checkpoint::sign`] refuses invalid ones (see [`Checkpoint::validate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Unique identifier of the log, e.g. `example.com/log42`; non-empty, no control characters.
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root hash of the tree at `size`.
    pub root: Hash,
    /// Opaque extension lines (without their newlines); each non-empty. Not recommended by the
    /// spec, as monitors cannot audit them.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    #[must_use]
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Self {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Checks the origin and extension lines.
    ///
    /// # Errors
    /// [`CheckpointError::InvalidOrigin`] or [`CheckpointError::InvalidExtension`].
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if !is_valid_line(&self.origin) {
            return Err(CheckpointError::InvalidOrigin);
        }
        if !self.extensions.iter().all(|line| is_valid_line(line)) {
            return Err(CheckpointError::InvalidExtension);
        }
        Ok(())
    }

    /// The note text: `<origin>\n<size>\n<base64 root>\n` followed by the extension lines, each
    /// ending in a newline. Only meaningful for a checkpoint that passes [`validate`](Self::validate).
    #[must_use]
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            body.push_str(line);
            body.push('\n');
        }
        body
    }

    /// Parses a checkpoint body (a note text) strictly.
    ///
    /// # Errors
    /// [`CheckpointError::MalformedCheckpoint`] (missing final newline, fewer than three lines),
    /// [`CheckpointError::InvalidOrigin`], [`CheckpointError::InvalidTreeSize`],
    /// [`CheckpointError::InvalidRootHash`] or [`CheckpointError::InvalidExtension`].
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MalformedCheckpoint(
                "does not end with a newline",
            ))?;
        let mut lines = body.split('\n');
        let too_short = CheckpointError::MalformedCheckpoint("fewer than three lines");
        let origin = lines.next().ok_or(too_short.clone())?;
        let size = lines.next().ok_or(too_short.clone())?;
        let root = lines.next().ok_or(too_short)?;
        if !is_valid_line(origin) {
            return Err(CheckpointError::InvalidOrigin);
        }
        let size = parse_tree_size(size).ok_or(CheckpointError::InvalidTreeSize)?;
        let root = parse_root(root).ok_or(CheckpointError::InvalidRootHash)?;
        let extensions = lines
            .map(|line| {
                if is_valid_line(line) {
                    Ok(line.to_owned())
                } else {
                    Err(CheckpointError::InvalidExtension)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the checkpoint body as a signed note with `key` under `key_name` (by convention the
    /// origin).
    ///
    /// # Errors
    /// [`CheckpointError::InvalidOrigin`], [`CheckpointError::InvalidExtension`] or
    /// [`CheckpointError::InvalidKeyName`].
    pub fn sign(&self, key_name: &str, key: &SigningKey) -> Result<String, CheckpointError> {
        self.validate()?;
        sign_note(&self.body(), key_name, key)
    }
}

/// Canonical decimal: digits only, no sign, no leading zero except `0` itself, fits in `u64`.
fn parse_tree_size(line: &str) -> Option<u64> {
    let canonical = !line.is_empty()
        && line.bytes().all(|b| b.is_ascii_digit())
        && (line == "0" || !line.starts_with('0'));
    if canonical { line.parse().ok() } else { None }
}

/// Canonical standard base64 of exactly 32 bytes.
fn parse_root(line: &str) -> Option<Hash> {
    let bytes = STANDARD.decode(line).ok()?;
    let root = Hash::try_from(bytes.as_slice()).ok()?;
    (STANDARD.encode(root) == line).then_some(root)
}

/// Opens a signed checkpoint: verifies the note against `known` keys ([`open_note`]), parses the
/// body strictly, and checks that it is for the log `expected_origin`.
///
/// # Errors
/// Any error of [`open_note`] or [`Checkpoint::parse`], or
/// [`CheckpointError::OriginMismatch`].
pub fn open_checkpoint<K: KnownKey>(
    signed: &str,
    expected_origin: &str,
    known: &[K],
) -> Result<(Checkpoint, OpenedNote), CheckpointError> {
    let note = open_note(signed, known)?;
    let checkpoint = Checkpoint::parse(note.text())?;
    if checkpoint.origin != expected_origin {
        return Err(CheckpointError::OriginMismatch {
            expected: expected_origin.to_owned(),
            found: checkpoint.origin,
        });
    }
    Ok((checkpoint, note))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn tree_size_is_canonical_decimal() {
        assert_eq!(parse_tree_size("0"), Some(0));
        assert_eq!(parse_tree_size("10"), Some(10));
        assert_eq!(parse_tree_size("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "1.0",
            "0x10",
            "١",
            "18446744073709551616",
        ] {
            assert_eq!(parse_tree_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn root_is_canonical_base64_of_32_bytes() {
        let good = STANDARD.encode([0xabu8; 32]);
        assert_eq!(parse_root(&good), Some([0xab; 32]));
        assert_eq!(parse_root(&STANDARD.encode([1u8; 31])), None);
        assert_eq!(parse_root(&STANDARD.encode([1u8; 33])), None);
        assert_eq!(parse_root(good.trim_end_matches('=')), None);
        // Non-zero trailing bits in the last character: not canonical.
        let mut tweaked = good.clone();
        tweaked.replace_range(42..43, "9");
        assert_eq!(parse_root(&tweaked), None);
        assert_eq!(parse_root(&good.replace('q', "-")), None);
    }

    #[test]
    fn key_names() {
        for good in ["a", "example.com/log42", "Señor-1", "PeterNeumann"] {
            assert!(is_valid_key_name(good), "{good:?}");
        }
        for bad in [
            "",
            "a b",
            "a+b",
            "a\tb",
            "a\u{a0}b",
            "a\u{2003}b",
            "a\u{1}b",
            "a\nb",
        ] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn duplicate_known_keys_are_fine_but_ambiguous_ones_are_refused() {
        let k = key(1);
        let signed = sign_note("hello\n", "log", &k).unwrap();
        let known = [("log", k.verifying_key()), ("log", k.verifying_key())];
        let opened = open_note(&signed, &known).unwrap();
        assert_eq!(opened.verified().len(), 1);

        // Two different keys under the same (name, id) need a 32-bit key-id collision to exist;
        // exercise the resolution rule directly on a fabricated table.
        let (a, b) = (key(1).verifying_key(), key(2).verifying_key());
        let table = [("log", 7u32, &a), ("log", 7u32, &a), ("log", 8u32, &b)];
        assert_eq!(resolve_key(&table, "log", 7), Ok(Some(&a)));
        assert_eq!(resolve_key(&table, "log", 9), Ok(None));
        assert_eq!(resolve_key(&table, "other", 7), Ok(None));
        let clash = [("log", 7u32, &a), ("log", 7u32, &b)];
        assert_eq!(
            resolve_key(&clash, "log", 7),
            Err(CheckpointError::AmbiguousKey {
                key_name: "log".into(),
                key_id: 7
            })
        );
    }

    proptest! {
        #[test]
        fn checkpoint_roundtrip(
            origin in "[a-z0-9./-]{1,40}",
            size in any::<u64>(),
            root in any::<[u8; 32]>(),
            extensions in proptest::collection::vec("[ -~]{1,20}", 0..3),
        ) {
            let checkpoint = Checkpoint { origin, size, root, extensions };
            let body = checkpoint.body();
            prop_assert_eq!(Checkpoint::parse(&body).unwrap(), checkpoint.clone());
            let signed = checkpoint.sign(&checkpoint.origin, &key(7)).unwrap();
            let (opened, note) =
                open_checkpoint(&signed, &checkpoint.origin, &[(checkpoint.origin.as_str(), key(7).verifying_key())]).unwrap();
            prop_assert_eq!(opened, checkpoint);
            prop_assert_eq!(note.text(), body.as_str());
        }

        #[test]
        fn parsers_never_panic(
            arbitrary in any::<String>(),
            noteish in "[a\u{2014} +/=A0\n\u{1}]{0,120}",
        ) {
            for input in [&arbitrary, &noteish] {
                let _ = open_note(input, &[("a", key(1).verifying_key())]);
                let _ = note_text(input);
                let _ = Checkpoint::parse(input);
                let _ = NoteVerifier::from_vkey(input);
            }
        }
    }
}
