//! Who signs an x402 authorization: the [`PaymentSigner`] trait, its in-process implementation
//! for the gateway's own secp256k1 key ([`EvmSigner`]), and the check every remote signer's
//! answer must pass before it may become a payment ([`check_remote_signature`]).
//!
//! A signer signs one EIP-3009 `TransferWithAuthorization` under a token's EIP-712 domain and
//! answers the 65-byte `r ‖ s ‖ v` signature (`v` ∈ {27, 28}, low `s`) that x402 carries. The
//! hashing is [`TransferAuthorization::signing_digest`] in every case, so whoever signs, the
//! [`super::X402Adapter`] produces the same PaymentPayload for the same key and decision.
//!
//! Signers differ in one way the adapter cares about: whether signing happens in this process
//! ([`PaymentSigner::is_remote`] false: nothing exists outside the gateway until the adapter
//! hands the payload out) or elsewhere (a custody service such as a Circle developer-controlled
//! wallet, `crate::circle::wallet_signer`): then a signature may exist outside the gateway as
//! soon as the request is sent, so the adapter records the attempt before asking (see
//! [`super::adapter`]).

use alloy_primitives::B256;

use super::evm::{
    Address, EvmError, EvmSigner, TokenDomain, TransferAuthorization, checksum, recover_signer,
};
use crate::AdapterError;

/// [`PaymentSigner::kind`] of the gateway's own key.
pub const KIND_LOCAL_KEY: &str = "local-key";

/// Signs EIP-3009 authorizations for one payer address.
#[async_trait::async_trait]
pub trait PaymentSigner: Send + Sync {
    /// The payer: every authorization this signer signs has this `from`, and every signature it
    /// answers recovers to it.
    fn address(&self) -> Address;

    /// A short stable name of the kind of signer (`local-key`, `circle-wallet`), for records
    /// and logs.
    fn kind(&self) -> &'static str;

    /// Whether signing happens outside this process (a signature may then exist before the
    /// adapter has recorded anything, so the adapter records first).
    fn is_remote(&self) -> bool;

    /// Signs `authorization` under `domain`: 65 bytes `r ‖ s ‖ v`, `v` ∈ {27, 28}, low `s`,
    /// recovering to [`Self::address`] over `authorization.signing_digest(domain)`.
    ///
    /// Refuses an authorization whose `from` is not [`Self::address`]. Errors never carry
    /// secret material.
    async fn sign_transfer(
        &self,
        domain: &TokenDomain,
        authorization: &TransferAuthorization,
    ) -> Result<[u8; 65], AdapterError>;

    /// Whether, after [`Self::sign_transfer`] failed with `error` (or succeeded and the payload
    /// could not be built), a valid signature of the authorization may exist outside the
    /// gateway: `false` only when the signer provably signed nothing (it refused before
    /// signing). The adapter then records the attempt `failed`, else `unknown`.
    fn signature_may_exist(&self, error: &AdapterError) -> bool;
}

#[async_trait::async_trait]
impl PaymentSigner for EvmSigner {
    fn address(&self) -> Address {
        EvmSigner::address(self)
    }

    fn kind(&self) -> &'static str {
        KIND_LOCAL_KEY
    }

    fn is_remote(&self) -> bool {
        false
    }

    async fn sign_transfer(
        &self,
        domain: &TokenDomain,
        authorization: &TransferAuthorization,
    ) -> Result<[u8; 65], AdapterError> {
        Ok(EvmSigner::sign_transfer(self, domain, authorization)?)
    }

    /// In memory: a signature this key made and the adapter dropped exists nowhere.
    fn signature_may_exist(&self, _error: &AdapterError) -> bool {
        false
    }
}

/// Why a remote signer's answer was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoteSignatureError {
    /// Not a 65-byte signature with `v` ∈ {0, 1, 27, 28}, `r` and `s` in range and `s` low.
    #[error("the signature is not usable: {0}")]
    Unusable(#[from] EvmError),
    /// A valid signature, but by another key than the payer's.
    #[error("the signature recovers to {recovered}, not to the payer {expected}")]
    WrongSigner {
        /// EIP-55 address the signature recovers to.
        recovered: String,
        /// EIP-55 address of the payer.
        expected: String,
    },
}

/// Checks a signature that came from outside the process, over `digest`, for payer `expected`:
/// 65 bytes, `v` ∈ {0, 1} (normalized to 27/28) or {27, 28}, `r`/`s` in range, `s` in the lower
/// half (a high-`s` signature is refused, not normalized: a signer that answers one is not
/// behaving as documented), and recovering to `expected`. Answers the normalized signature.
pub fn check_remote_signature(
    digest: &B256,
    signature: &[u8],
    expected: Address,
) -> Result<[u8; 65], RemoteSignatureError> {
    let Ok(mut bytes) = <[u8; 65]>::try_from(signature) else {
        return Err(EvmError::SignatureMalformed {
            reason: "signature must be 65 bytes",
        }
        .into());
    };
    bytes[64] = match bytes[64] {
        0 | 27 => 27,
        1 | 28 => 28,
        _ => {
            return Err(EvmError::SignatureMalformed {
                reason: "v must be 0, 1, 27 or 28",
            }
            .into());
        }
    };
    let recovered = recover_signer(digest, &bytes)?;
    if recovered != expected {
        return Err(RemoteSignatureError::WrongSigner {
            recovered: checksum(&recovered),
            expected: checksum(&expected),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x402::evm::{U256, nonce_for_decision, parse_address};

    const HARDHAT_0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const HARDHAT_1: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn sample(from: Address) -> (TokenDomain, TransferAuthorization) {
        let domain = TokenDomain {
            name: "USDC".into(),
            version: "2".into(),
            chain_id: 84_532,
            verifying_contract: parse_address("0x036CbD53842c5426634e7929541eC2318f3dCF7e")
                .unwrap(),
        };
        let authorization = TransferAuthorization {
            from,
            to: parse_address("0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap(),
            value: U256::from(10_000u64),
            valid_after: U256::ZERO,
            valid_before: U256::from(4_102_444_800u64),
            nonce: nonce_for_decision("dec_signer"),
        };
        (domain, authorization)
    }

    #[tokio::test]
    async fn the_local_key_signs_as_it_always_did() {
        let key = EvmSigner::from_hex(HARDHAT_0).unwrap();
        let (domain, authorization) = sample(key.address());
        let direct = key.sign_transfer(&domain, &authorization).unwrap();
        let signer: &dyn PaymentSigner = &key;
        assert_eq!(signer.kind(), KIND_LOCAL_KEY);
        assert!(!signer.is_remote());
        assert_eq!(signer.address(), key.address());
        let via_trait = signer.sign_transfer(&domain, &authorization).await.unwrap();
        assert_eq!(direct, via_trait);

        let (domain, mut other) = sample(key.address());
        other.from = Address::repeat_byte(0x22);
        let refused = signer.sign_transfer(&domain, &other).await.unwrap_err();
        assert_eq!(refused.reason_code(), "X402_SIGNER_NOT_PAYER");
    }

    #[test]
    fn remote_signatures_are_normalized_and_checked() {
        let key = EvmSigner::from_hex(HARDHAT_0).unwrap();
        let (domain, authorization) = sample(key.address());
        let digest = authorization.signing_digest(&domain);
        let good = key.sign_transfer(&domain, &authorization).unwrap();
        assert_eq!(
            check_remote_signature(&digest, &good, key.address()).unwrap(),
            good
        );
        let mut zero_one = good;
        zero_one[64] -= 27;
        assert_eq!(
            check_remote_signature(&digest, &zero_one, key.address()).unwrap(),
            good
        );
        for v in [2u8, 26, 29, 255] {
            let mut bad = good;
            bad[64] = v;
            assert!(matches!(
                check_remote_signature(&digest, &bad, key.address()),
                Err(RemoteSignatureError::Unusable(
                    EvmError::SignatureMalformed { .. }
                ))
            ));
        }
        assert!(check_remote_signature(&digest, &good[..64], key.address()).is_err());

        // The malleated high-s twin of a good signature is refused, not normalized.
        let parsed = k256::ecdsa::Signature::from_slice(&good[..64]).unwrap();
        let twin =
            k256::ecdsa::Signature::from_scalars(parsed.r().to_bytes(), (-*parsed.s()).to_bytes())
                .unwrap();
        let mut high_s = [0u8; 65];
        high_s[..64].copy_from_slice(&twin.to_bytes());
        high_s[64] = if good[64] == 27 { 28 } else { 27 };
        assert_eq!(
            check_remote_signature(&digest, &high_s, key.address()),
            Err(RemoteSignatureError::Unusable(EvmError::SignatureHighS))
        );

        let stranger = EvmSigner::from_hex(HARDHAT_1).unwrap();
        let theirs = stranger.sign_digest(&digest).unwrap();
        assert!(matches!(
            check_remote_signature(&digest, &theirs, key.address()),
            Err(RemoteSignatureError::WrongSigner { .. })
        ));
    }
}
