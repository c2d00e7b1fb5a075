//! The x402 `exact` scheme on EVM: an EIP-3009 `TransferWithAuthorization` message, hashed with
//! EIP-712 and signed with the gateway's secp256k1 payer key.
//!
//! The payer signs `keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ hashStruct(message))`, where the
//! domain is the token's own EIP-712 domain (its `name()`, `version()`, chain id and address; the
//! x402 payment requirements carry name and version in `extra`). A facilitator then calls
//! `transferWithAuthorization(from, to, value, validAfter, validBefore, nonce, v, r, s)` on the
//! token, which moves exactly `value` from `from` to `to` once, inside the validity window.
//!
//! Signatures are 65 bytes `r ‖ s ‖ v`, with `v` ∈ {27, 28} and `s` in the lower half of the curve
//! order (EIP-2; OpenZeppelin's `ECDSA` and USDC's `SignatureChecker` reject high `s`). Signing is
//! RFC 6979 deterministic, so one key and one message always give the same bytes. Verification
//! ([`recover_signer`]) is equally strict: it refuses anything a token contract would refuse,
//! and refuses malleated (high-`s`) twins with their own reason code.
//!
//! Hashing is done by `alloy-sol-types` (`sol!` + [`SolStruct::eip712_signing_hash`]); ECDSA by
//! `k256`. Nothing here does I/O.

use std::fmt;

use alloy_primitives::{Keccak256, hex};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain};
use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use k256::elliptic_curve::zeroize::Zeroize;

pub use alloy_primitives::{Address, B256, U256};

/// The EIP-712 type of the EIP-3009 message, exactly as hashed into its type hash.
pub const TRANSFER_WITH_AUTHORIZATION_TYPE: &str = "TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce)";

/// Domain-separation prefix of [`nonce_for_decision`] (NUL-terminated so that no decision id can
/// extend it).
const NONCE_DOMAIN: &[u8] = b"trustos/x402-exact-nonce/v1\0";

/// Length of an `r ‖ s ‖ v` signature.
const SIGNATURE_LEN: usize = 65;

/// The Solidity shape of the message; `alloy-sol-types` derives its EIP-712 encoding.
mod sol_types {
    #![allow(missing_docs)]

    alloy_sol_types::sol! {
        /// EIP-3009 `TransferWithAuthorization`.
        struct TransferWithAuthorization {
            address from;
            address to;
            uint256 value;
            uint256 validAfter;
            uint256 validBefore;
            bytes32 nonce;
        }
    }
}

/// EIP-712 domain of an EIP-3009 token.
///
/// `name` and `version` must be the token contract's own (`name()` and the EIP-712 version; for
/// USDC they differ by chain, e.g. `"USDC"` on Base Sepolia and `"USD Coin"` on Base), otherwise
/// the contract computes another digest and the signature recovers to a stranger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenDomain {
    /// The token's EIP-712 name.
    pub name: String,
    /// The token's EIP-712 version.
    pub version: String,
    /// EIP-155 chain id of the chain the token lives on.
    pub chain_id: u64,
    /// The token contract address.
    pub verifying_contract: Address,
}

impl TokenDomain {
    /// The domain as `alloy-sol-types` models it.
    fn eip712_domain(&self) -> Eip712Domain {
        eip712_domain! {
            name: self.name.clone(),
            version: self.version.clone(),
            chain_id: self.chain_id,
            verifying_contract: self.verifying_contract,
        }
    }

    /// The EIP-712 domain separator: `hashStruct(EIP712Domain{name, version, chainId,
    /// verifyingContract})`, equal to the token's `DOMAIN_SEPARATOR()`.
    pub fn separator(&self) -> B256 {
        self.eip712_domain().separator()
    }
}

/// The EIP-3009 message: move `value` (in the token's smallest unit) from `from` to `to`, valid
/// strictly after `valid_after` and strictly before `valid_before` (Unix seconds), usable once
/// per `nonce`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferAuthorization {
    /// The payer; the signature must recover to it.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// Amount in the token's base units.
    pub value: U256,
    /// The authorization is valid only after this Unix time (exclusive).
    pub valid_after: U256,
    /// The authorization is valid only before this Unix time (exclusive).
    pub valid_before: U256,
    /// Unique per payer and token; the contract refuses a nonce it has seen.
    pub nonce: B256,
}

impl TransferAuthorization {
    /// The message in its `sol!` form.
    fn to_sol(&self) -> sol_types::TransferWithAuthorization {
        sol_types::TransferWithAuthorization {
            from: self.from,
            to: self.to,
            value: self.value,
            validAfter: self.valid_after,
            validBefore: self.valid_before,
            nonce: self.nonce,
        }
    }

    /// EIP-712 `hashStruct` of the message: `keccak256(typeHash ‖ encodeData)`.
    pub fn struct_hash(&self) -> B256 {
        self.to_sol().eip712_hash_struct()
    }

    /// The digest the payer signs: `keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖ structHash)`.
    pub fn signing_digest(&self, domain: &TokenDomain) -> B256 {
        self.to_sol().eip712_signing_hash(&domain.eip712_domain())
    }
}

/// The EIP-3009 nonce for one Trust OS decision:
/// `keccak256("trustos/x402-exact-nonce/v1\0" ‖ decision_id)`.
///
/// Why derive it rather than draw it at random: an EIP-3009 token records every
/// `(from, nonce)` it has executed (`authorizationState`) and refuses a second authorization with
/// the same nonce. Binding the nonce to the decision id means that every signature ever produced
/// for one decision — a retry after a timeout, a re-sign after a crash, a duplicated request —
/// carries the same nonce, so at most one of them can settle on chain, whatever the terms of the
/// others. One decision → one nonce → at most one settlement: the chain itself backs up the
/// store's single-use record. The prefix separates these nonces from any other use of keccak256
/// over the same bytes.
pub fn nonce_for_decision(decision_id: &str) -> B256 {
    let mut hasher = Keccak256::new();
    hasher.update(NONCE_DOMAIN);
    hasher.update(decision_id.as_bytes());
    hasher.finalize()
}

/// The gateway's secp256k1 payer key.
///
/// `Debug` prints only the address; the secret scalar is wiped when the key is dropped
/// (`k256`'s `SigningKey` zeroizes on drop).
pub struct EvmSigner {
    /// The secret key.
    key: SigningKey,
    /// Its Ethereum address, computed once.
    address: Address,
}

impl EvmSigner {
    /// Reads a payer key written as 64 hexadecimal digits, optionally prefixed with `0x`;
    /// surrounding whitespace (such as a key file's trailing newline) is ignored.
    ///
    /// The error never contains the input or any part of it.
    pub fn from_hex(secret: &str) -> Result<Self, EvmError> {
        let trimmed = secret.trim();
        let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
        if digits.len() != 64 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(EvmError::SignerKeyInvalid {
                reason: "expected 64 hexadecimal digits, optionally prefixed with 0x",
            });
        }
        let mut scalar = [0u8; 32];
        let key = match hex::decode_to_slice(digits, &mut scalar) {
            Ok(()) => SigningKey::from_slice(&scalar).map_err(|_| EvmError::SignerKeyInvalid {
                reason: "not a valid secp256k1 secret (zero or not below the curve order)",
            }),
            Err(_) => Err(EvmError::SignerKeyInvalid {
                reason: "expected 64 hexadecimal digits, optionally prefixed with 0x",
            }),
        };
        scalar.zeroize();
        let key = key?;
        let address = address_of(key.verifying_key()).ok_or(EvmError::SignerKeyInvalid {
            reason: "public key has no uncompressed encoding",
        })?;
        Ok(Self { key, address })
    }

    /// The payer's Ethereum address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte digest: RFC 6979 deterministic ECDSA, `s` normalized to the low half,
    /// returned as `r ‖ s ‖ v` with `v` ∈ {27, 28}.
    ///
    /// The signature is recovered before it is returned; a signature that does not recover to
    /// [`Self::address`] (a fault, or the negligible x-reduced recovery id that `v` cannot
    /// express) is refused with [`EvmError::SigningFailed`].
    pub fn sign_digest(&self, digest: &B256) -> Result<[u8; 65], EvmError> {
        let (signature, recovery_id) = self.key.sign_prehash_recoverable(digest.as_slice());
        let (signature, recovery_id) = low_s(signature, recovery_id);
        if recovery_id.is_x_reduced() {
            return Err(EvmError::SigningFailed);
        }
        let mut out = [0u8; SIGNATURE_LEN];
        out[..64].copy_from_slice(&signature.to_bytes());
        out[64] = 27 + u8::from(recovery_id.is_y_odd());
        match recover_signer(digest, &out) {
            Ok(recovered) if recovered == self.address => Ok(out),
            _ => Err(EvmError::SigningFailed),
        }
    }

    /// Signs an EIP-3009 authorization under the token's domain (the x402 `payload.signature`).
    ///
    /// Refuses with [`EvmError::SignerNotPayer`] when `auth.from` is not this key's address: such
    /// a signature could never settle.
    pub fn sign_transfer(
        &self,
        domain: &TokenDomain,
        auth: &TransferAuthorization,
    ) -> Result<[u8; 65], EvmError> {
        if auth.from != self.address {
            return Err(EvmError::SignerNotPayer);
        }
        self.sign_digest(&auth.signing_digest(domain))
    }
}

impl fmt::Debug for EvmSigner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("EvmSigner")
            .field("address", &format_args!("{}", checksum(&self.address)))
            .finish()
    }
}

/// Normalizes `s` to the lower half of the curve order; negating `s` mirrors the nonce point, so
/// the y-parity bit of the recovery id flips with it.
fn low_s(signature: Signature, recovery_id: RecoveryId) -> (Signature, RecoveryId) {
    if bool::from(signature.s().is_high()) {
        (
            signature.normalize_s(),
            RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced()),
        )
    } else {
        (signature, recovery_id)
    }
}

/// Ethereum address of a public key: the last 20 bytes of keccak256 over its 64-byte
/// uncompressed encoding without the `0x04` tag.
fn address_of(key: &VerifyingKey) -> Option<Address> {
    let point = key.to_sec1_point(false);
    match point.as_bytes() {
        [0x04, raw @ ..] if raw.len() == 64 => Some(Address::from_raw_public_key(raw)),
        _ => None,
    }
}

/// The address whose key produced `signature` (65 bytes `r ‖ s ‖ v`) over `digest`.
///
/// Refuses, as an EIP-3009 token would: any length other than 65, `v` other than 27 or 28, `r`
/// or `s` zero or not below the curve order ([`EvmError::SignatureMalformed`]), `s` in the upper
/// half ([`EvmError::SignatureHighS`]), and signatures that name no point
/// ([`EvmError::SignatureUnrecoverable`]). Callers compare the result with the expected signer.
pub fn recover_signer(digest: &B256, signature: &[u8]) -> Result<Address, EvmError> {
    let Ok(bytes) = <&[u8; SIGNATURE_LEN]>::try_from(signature) else {
        return Err(EvmError::SignatureMalformed {
            reason: "signature must be 65 bytes",
        });
    };
    let (rs, v) = (&bytes[..64], bytes[64]);
    let y_odd = match v {
        27 => false,
        28 => true,
        _ => {
            return Err(EvmError::SignatureMalformed {
                reason: "v must be 27 or 28",
            });
        }
    };
    let parsed = Signature::from_slice(rs).map_err(|_| EvmError::SignatureMalformed {
        reason: "r and s must be nonzero and below the curve order",
    })?;
    if bool::from(parsed.s().is_high()) {
        return Err(EvmError::SignatureHighS);
    }
    let key = VerifyingKey::recover_from_prehash(
        digest.as_slice(),
        &parsed,
        RecoveryId::new(y_odd, false),
    )
    .map_err(|_| EvmError::SignatureUnrecoverable)?;
    address_of(&key).ok_or(EvmError::SignatureUnrecoverable)
}

/// A signature as x402 carries it: `0x` followed by 130 lower-case hexadecimal digits.
pub fn signature_hex(sig: &[u8; 65]) -> String {
    hex::encode_prefixed(sig)
}

/// Reads an address written as `0x` and 40 hexadecimal digits.
///
/// All-lower-case and all-upper-case digits are accepted as they are; mixed case is an EIP-55
/// checksum and must be a correct one ([`EvmError::AddressChecksum`] otherwise), so a mistyped
/// checksummed address is caught rather than paid. No whitespace is trimmed.
pub fn parse_address(text: &str) -> Result<Address, EvmError> {
    let digits = text.strip_prefix("0x").ok_or(EvmError::AddressInvalid {
        reason: "address must start with 0x",
    })?;
    if digits.len() != 40 || !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(EvmError::AddressInvalid {
            reason: "address must have exactly 40 hexadecimal digits after 0x",
        });
    }
    let mixed_case = digits.bytes().any(|byte| byte.is_ascii_lowercase())
        && digits.bytes().any(|byte| byte.is_ascii_uppercase());
    if mixed_case {
        return Address::parse_checksummed(text, None).map_err(|_| EvmError::AddressChecksum);
    }
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(digits, &mut bytes).map_err(|_| EvmError::AddressInvalid {
        reason: "address must have exactly 40 hexadecimal digits after 0x",
    })?;
    Ok(Address::from(bytes))
}

/// The EIP-55 mixed-case checksum spelling of an address (`0x` + 40 digits).
pub fn checksum(address: &Address) -> String {
    address.to_checksum(None)
}

/// Why an EVM key, signature or address was refused. No variant carries secret material or
/// echoes its input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvmError {
    /// The payer key is not 64 hex digits or not a valid secp256k1 secret.
    #[error("EVM signer key is invalid: {reason}")]
    SignerKeyInvalid {
        /// What is wrong (never the key itself).
        reason: &'static str,
    },
    /// Asked to sign an authorization whose `from` is not the signer's address.
    #[error("authorization payer is not the signer's address")]
    SignerNotPayer,
    /// Signing produced no usable signature (fault, or an unrepresentable recovery id).
    #[error("EVM signing failed")]
    SigningFailed,
    /// The signature is not 65 bytes, its `v` is not 27/28, or `r`/`s` is out of range.
    #[error("signature is malformed: {reason}")]
    SignatureMalformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// `s` is in the upper half of the curve order (a malleated twin of a valid signature).
    #[error("signature has a high s value (not EIP-2 canonical)")]
    SignatureHighS,
    /// No public key can be recovered from the signature.
    #[error("no public key recovers from the signature")]
    SignatureUnrecoverable,
    /// The text is not `0x` followed by 40 hexadecimal digits.
    #[error("address is invalid: {reason}")]
    AddressInvalid {
        /// What is wrong.
        reason: &'static str,
    },
    /// The address is mixed case but not a valid EIP-55 checksum.
    #[error("address has an invalid EIP-55 checksum")]
    AddressChecksum,
}

impl EvmError {
    /// Stable machine-readable reason code.
    pub fn reason_code(&self) -> &'static str {
        match self {
            Self::SignerKeyInvalid { .. } => "X402_SIGNER_KEY_INVALID",
            Self::SignerNotPayer => "X402_SIGNER_NOT_PAYER",
            Self::SigningFailed => "X402_SIGNING_FAILED",
            Self::SignatureMalformed { .. } => "X402_SIGNATURE_MALFORMED",
            Self::SignatureHighS => "X402_SIGNATURE_HIGH_S",
            Self::SignatureUnrecoverable => "X402_SIGNATURE_UNRECOVERABLE",
            Self::AddressInvalid { .. } => "X402_ADDRESS_INVALID",
            Self::AddressChecksum => "X402_ADDRESS_CHECKSUM",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Public Hardhat account #0 (never fund it).
    const HARDHAT_0_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const HARDHAT_0_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    fn signer() -> EvmSigner {
        EvmSigner::from_hex(HARDHAT_0_KEY).unwrap()
    }

    fn sample() -> (TokenDomain, TransferAuthorization) {
        let domain = TokenDomain {
            name: "USDC".into(),
            version: "2".into(),
            chain_id: 84_532,
            verifying_contract: parse_address("0x036CbD53842c5426634e7929541eC2318f3dCF7e")
                .unwrap(),
        };
        let auth = TransferAuthorization {
            from: parse_address(HARDHAT_0_ADDRESS).unwrap(),
            to: parse_address("0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap(),
            value: U256::from(10_000u64),
            valid_after: U256::ZERO,
            valid_before: U256::from(4_102_444_800u64),
            nonce: nonce_for_decision("dec_example"),
        };
        (domain, auth)
    }

    #[test]
    fn type_string_matches_the_sol_struct() {
        assert_eq!(
            sol_types::TransferWithAuthorization::eip712_encode_type(),
            TRANSFER_WITH_AUTHORIZATION_TYPE
        );
        // The well-known EIP-3009 type hash (USDC's TRANSFER_WITH_AUTHORIZATION_TYPEHASH).
        assert_eq!(
            alloy_primitives::keccak256(TRANSFER_WITH_AUTHORIZATION_TYPE),
            "0x7c7c6cdb67a18743f49ec6fa9b35f50d52ed05cbed4cc592e13b44501c1a2267"
                .parse::<B256>()
                .unwrap()
        );
    }

    #[test]
    fn digest_is_eip191_prefixed_domain_and_struct_hash() {
        let (domain, auth) = sample();
        let mut preimage = vec![0x19, 0x01];
        preimage.extend_from_slice(domain.separator().as_slice());
        preimage.extend_from_slice(auth.struct_hash().as_slice());
        assert_eq!(
            auth.signing_digest(&domain),
            alloy_primitives::keccak256(&preimage)
        );
    }

    #[test]
    fn key_parsing_accepts_prefix_and_whitespace() {
        let plain = signer();
        assert_eq!(checksum(&plain.address()), HARDHAT_0_ADDRESS);
        for spelling in [
            format!("0x{HARDHAT_0_KEY}"),
            format!("{HARDHAT_0_KEY}\n"),
            format!("  0x{HARDHAT_0_KEY}\r\n"),
            HARDHAT_0_KEY.to_uppercase(),
        ] {
            assert_eq!(
                EvmSigner::from_hex(&spelling).unwrap().address(),
                plain.address()
            );
        }
    }

    #[test]
    fn key_errors_never_echo_the_input() {
        let secret_looking = "deadbeefcafe";
        let zero = "0".repeat(64);
        // secp256k1 order n: not a valid secret.
        let order = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";
        let cases = [
            String::new(),
            secret_looking.to_string(),
            format!("{HARDHAT_0_KEY}00"),
            format!("0x0x{}", &HARDHAT_0_KEY[4..]),
            format!("{}zz", &HARDHAT_0_KEY[..62]),
            format!("{} {}", &HARDHAT_0_KEY[..32], &HARDHAT_0_KEY[32..]),
            format!("0X{HARDHAT_0_KEY}"),
            zero,
            order.to_string(),
        ];
        for case in cases {
            let error = EvmSigner::from_hex(&case).unwrap_err();
            assert_eq!(error.reason_code(), "X402_SIGNER_KEY_INVALID");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains(&HARDHAT_0_KEY[..16]), "{shown}");
            assert!(!shown.contains(secret_looking), "{shown}");
            assert!(!shown.contains("fffffffffffff"), "{shown}");
        }
    }

    #[test]
    fn debug_shows_only_the_address() {
        let shown = format!("{:?}", signer());
        assert_eq!(
            shown,
            format!("EvmSigner {{ address: {HARDHAT_0_ADDRESS} }}")
        );
        assert!(!shown.contains(&HARDHAT_0_KEY[..8]));
    }

    #[test]
    fn signatures_are_deterministic_low_s_and_recover() {
        let signer = signer();
        let (domain, auth) = sample();
        let first = signer.sign_transfer(&domain, &auth).unwrap();
        let second = signer.sign_transfer(&domain, &auth).unwrap();
        assert_eq!(first, second);
        assert!(first[64] == 27 || first[64] == 28);
        let digest = auth.signing_digest(&domain);
        assert_eq!(recover_signer(&digest, &first).unwrap(), signer.address());
        let hex = signature_hex(&first);
        assert_eq!(hex.len(), 132);
        assert!(hex.starts_with("0x"));
        assert_eq!(hex, hex.to_lowercase());
    }

    #[test]
    fn many_digests_sign_low_s_and_recover() {
        let signer = signer();
        for index in 0..64u32 {
            let digest = nonce_for_decision(&format!("digest-{index}"));
            let signature = signer.sign_digest(&digest).unwrap();
            let s = Signature::from_slice(&signature[..64]).unwrap();
            assert!(!bool::from(s.s().is_high()));
            assert_eq!(
                recover_signer(&digest, &signature).unwrap(),
                signer.address()
            );
        }
    }

    #[test]
    fn low_s_normalization_flips_the_recovery_id() {
        let signer = signer();
        let digest = B256::repeat_byte(3);
        let (signature, recovery_id) = signer.key.sign_prehash_recoverable(digest.as_slice());
        let high = Signature::from_scalars(signature.r().to_bytes(), (-*signature.s()).to_bytes())
            .unwrap();
        let flipped = RecoveryId::new(!recovery_id.is_y_odd(), recovery_id.is_x_reduced());
        assert!(bool::from(high.s().is_high()));
        // The high twin with the flipped id recovers the same key...
        assert_eq!(
            VerifyingKey::recover_from_prehash(digest.as_slice(), &high, flipped).unwrap(),
            *signer.key.verifying_key()
        );
        // ...and normalizing it gives back the low-s signature and the original id.
        assert_eq!(low_s(high, flipped), (signature, recovery_id));
        assert_eq!(low_s(signature, recovery_id), (signature, recovery_id));
    }

    #[test]
    fn signing_for_another_payer_is_refused() {
        let (domain, mut auth) = sample();
        auth.from = Address::repeat_byte(0x11);
        assert_eq!(
            signer().sign_transfer(&domain, &auth).unwrap_err(),
            EvmError::SignerNotPayer
        );
    }

    #[test]
    fn malformed_signatures_are_refused() {
        let signer = signer();
        let digest = B256::repeat_byte(7);
        let good = signer.sign_digest(&digest).unwrap();
        for length in [0usize, 1, 64, 66, 130] {
            let mut bytes = good.to_vec();
            bytes.resize(length, 0);
            assert_eq!(
                recover_signer(&digest, &bytes).unwrap_err().reason_code(),
                "X402_SIGNATURE_MALFORMED",
                "length {length}"
            );
        }
        for v in [0u8, 1, 26, 29, 35, 255] {
            let mut bytes = good;
            bytes[64] = v;
            assert_eq!(
                recover_signer(&digest, &bytes).unwrap_err().reason_code(),
                "X402_SIGNATURE_MALFORMED",
                "v {v}"
            );
        }
        let mut zero_r = good;
        zero_r[..32].fill(0);
        assert_eq!(
            recover_signer(&digest, &zero_r).unwrap_err().reason_code(),
            "X402_SIGNATURE_MALFORMED"
        );
        let mut zero_s = good;
        zero_s[32..64].fill(0);
        assert_eq!(
            recover_signer(&digest, &zero_s).unwrap_err().reason_code(),
            "X402_SIGNATURE_MALFORMED"
        );
        let mut huge_s = good;
        huge_s[32..64].fill(0xff);
        assert_eq!(
            recover_signer(&digest, &huge_s).unwrap_err().reason_code(),
            "X402_SIGNATURE_MALFORMED"
        );
    }

    #[test]
    fn high_s_twin_is_refused() {
        let signer = signer();
        let digest = B256::repeat_byte(9);
        let good = signer.sign_digest(&digest).unwrap();
        let parsed = Signature::from_slice(&good[..64]).unwrap();
        let high_s = -*parsed.s();
        let twin = Signature::from_scalars(parsed.r().to_bytes(), high_s.to_bytes()).unwrap();
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&twin.to_bytes());
        bytes[64] = if good[64] == 27 { 28 } else { 27 };
        assert_eq!(
            recover_signer(&digest, &bytes).unwrap_err(),
            EvmError::SignatureHighS
        );
    }

    #[test]
    fn addresses_parse_strictly() {
        let expected = HARDHAT_0_ADDRESS.to_lowercase();
        let lower = parse_address(&expected).unwrap();
        let upper = parse_address(&format!("0x{}", expected[2..].to_uppercase())).unwrap();
        let mixed = parse_address(HARDHAT_0_ADDRESS).unwrap();
        assert_eq!(lower, upper);
        assert_eq!(lower, mixed);
        assert_eq!(checksum(&lower), HARDHAT_0_ADDRESS);

        // One letter's case flipped: the checksum no longer holds.
        let broken = HARDHAT_0_ADDRESS.replacen("Fd", "fd", 1);
        assert_eq!(
            parse_address(&broken).unwrap_err().reason_code(),
            "X402_ADDRESS_CHECKSUM"
        );
        for bad in [
            "",
            "0x",
            "f39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "0Xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb9226",
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb922666",
            "0xg39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            " 0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266\n",
            "0x0xf39fd6e51aad88f6f4ce6ab8827279cfffb922",
        ] {
            assert_eq!(
                parse_address(bad).unwrap_err().reason_code(),
                "X402_ADDRESS_INVALID",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn eip55_reference_vectors() {
        // From the EIP-55 specification.
        for spelling in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let address = parse_address(spelling).unwrap();
            assert_eq!(checksum(&address), spelling);
        }
    }

    #[test]
    fn nonces_are_per_decision_and_domain_separated() {
        let first = nonce_for_decision("dec_1");
        assert_eq!(first, nonce_for_decision("dec_1"));
        assert_ne!(first, nonce_for_decision("dec_2"));
        assert_ne!(first, alloy_primitives::keccak256("dec_1"));
        assert_eq!(
            first,
            alloy_primitives::keccak256(b"trustos/x402-exact-nonce/v1\0dec_1")
        );
    }

    #[test]
    fn reason_codes_are_distinct_and_prefixed() {
        let errors = [
            EvmError::SignerKeyInvalid { reason: "" },
            EvmError::SignerNotPayer,
            EvmError::SigningFailed,
            EvmError::SignatureMalformed { reason: "" },
            EvmError::SignatureHighS,
            EvmError::SignatureUnrecoverable,
            EvmError::AddressInvalid { reason: "" },
            EvmError::AddressChecksum,
        ];
        let mut codes: Vec<_> = errors.iter().map(EvmError::reason_code).collect();
        assert!(codes.iter().all(|code| code.starts_with("X402_")));
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }
}
