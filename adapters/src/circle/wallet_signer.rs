//! A Circle developer-controlled wallet as the x402 payer: [`CircleWalletSigner`], a
//! [`PaymentSigner`] that has Circle sign the EIP-3009 `TransferWithAuthorization` with the
//! wallet's key (`POST /v1/w3s/developer/sign/typedData`, [`CircleClient::sign_typed_data`]).
//!
//! The x402 adapter builds the same authorization whoever signs; this signer turns it into
//! EIP-712 typed data ([`transfer_typed_data`]): `types` with the four-field `EIP712Domain`
//! (`name`, `version`, `chainId`, `verifyingContract`) and EIP-3009's
//! `TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,uint256
//! validBefore,bytes32 nonce)`, `primaryType`, the token's `domain`, and the `message` with
//! `uint256` values as decimal strings and the nonce as `0x` + 64 hex digits. A wallet whose key
//! is the local key's therefore yields the same signature bytes and the same PaymentPayload.
//!
//! Circle's answer is never trusted: the signature must be 65 bytes (`v` 0/1 or 27/28,
//! normalized to 27/28), low `s`, and must **recover to the configured wallet address** over the
//! digest the adapter computes itself ([`TransferAuthorization::signing_digest`]). A wrong wallet
//! id, a wallet of another address, or a tampered answer never produces a payload.
//!
//! Reason codes (as [`AdapterError::Rail`]), and whether a signature may exist afterwards
//! ([`PaymentSigner::signature_may_exist`], which decides whether the x402 adapter records the
//! attempt `failed` or `unknown`):
//! - [`CODE_SIGN_FAILED`]: Circle refused before signing (a `4xx`: unknown wallet, bad request,
//!   refused key or ciphertext), or the request could not be made; Circle's scrubbed message
//!   follows. Nothing was signed.
//! - [`CODE_SIGN_OUTCOME_UNKNOWN`]: no usable answer (transport error, timeout, `429`/`5xx` after
//!   the retries, a success answer without a signature): Circle may have signed.
//! - [`CODE_SIGNATURE_INVALID`]: Circle answered something that is not the wallet's signature of
//!   exactly this message (wrong key, malformed, high `s`). Counted as "may exist": a tampered
//!   answer means the real one may be elsewhere.
//!
//! Messages never contain the API key, the entity secret or a ciphertext.
//!
//! Sources: <https://developers.circle.com/api-reference/wallets/developer-controlled-wallets/sign-typed-data>,
//! <https://eips.ethereum.org/EIPS/eip-712>, <https://eips.ethereum.org/EIPS/eip-3009>.

use std::fmt;
use std::sync::Arc;

use alloy_primitives::hex;
use serde_json::json;

use super::client::{CircleClient, CircleError};
use crate::AdapterError;
use crate::x402::evm::{Address, EvmError, TokenDomain, TransferAuthorization, checksum};
use crate::x402::signer::{PaymentSigner, check_remote_signature};

/// [`PaymentSigner::kind`] of a Circle wallet.
pub const KIND_CIRCLE_WALLET: &str = "circle-wallet";

/// Circle refused before signing (unknown wallet, bad request, refused credentials), or the
/// request could not be made: nothing was signed.
pub const CODE_SIGN_FAILED: &str = "CIRCLE_SIGN_FAILED";

/// No usable answer from Circle (transport, timeout, `429`/`5xx` after retries, a success without
/// a signature): Circle may have signed.
pub const CODE_SIGN_OUTCOME_UNKNOWN: &str = "CIRCLE_SIGN_OUTCOME_UNKNOWN";

/// Circle answered a signature that is not the wallet's signature of exactly this message.
pub const CODE_SIGNATURE_INVALID: &str = "CIRCLE_SIGNATURE_INVALID";

/// The `memo` sent with each signing request (shown in Circle's console).
const MEMO: &str = "Trust OS x402 payment authorization (EIP-3009)";

/// The EIP-712 typed data of an EIP-3009 authorization under a token's domain, as the compact
/// JSON text Circle's `data` field takes.
pub fn transfer_typed_data(domain: &TokenDomain, authorization: &TransferAuthorization) -> String {
    json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TransferWithAuthorization": [
                {"name": "from", "type": "address"},
                {"name": "to", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "validAfter", "type": "uint256"},
                {"name": "validBefore", "type": "uint256"},
                {"name": "nonce", "type": "bytes32"},
            ],
        },
        "primaryType": "TransferWithAuthorization",
        "domain": {
            "name": domain.name,
            "version": domain.version,
            "chainId": domain.chain_id,
            "verifyingContract": checksum(&domain.verifying_contract),
        },
        "message": {
            "from": checksum(&authorization.from),
            "to": checksum(&authorization.to),
            "value": authorization.value.to_string(),
            "validAfter": authorization.valid_after.to_string(),
            "validBefore": authorization.valid_before.to_string(),
            "nonce": authorization.nonce.to_string(),
        },
    })
    .to_string()
}

/// A Circle developer-controlled EVM wallet that signs x402 authorizations.
pub struct CircleWalletSigner {
    client: Arc<CircleClient>,
    wallet_id: String,
    address: Address,
}

impl CircleWalletSigner {
    /// The wallet `wallet_id` (Circle's id) whose address is `address`: every signature must
    /// recover to `address`, so a wallet id that names another wallet signs nothing usable.
    pub fn new(client: Arc<CircleClient>, wallet_id: impl Into<String>, address: Address) -> Self {
        Self {
            client,
            wallet_id: wallet_id.into(),
            address,
        }
    }

    /// Circle's wallet id.
    pub fn wallet_id(&self) -> &str {
        &self.wallet_id
    }
}

impl fmt::Debug for CircleWalletSigner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CircleWalletSigner")
            .field("wallet_id", &self.wallet_id)
            .field("address", &format_args!("{}", checksum(&self.address)))
            .field("client", &self.client)
            .finish()
    }
}

/// An [`AdapterError::Rail`] with `code`.
fn rail(code: &'static str, message: String) -> AdapterError {
    AdapterError::Rail { code, message }
}

#[async_trait::async_trait]
impl PaymentSigner for CircleWalletSigner {
    fn address(&self) -> Address {
        self.address
    }

    fn kind(&self) -> &'static str {
        KIND_CIRCLE_WALLET
    }

    fn is_remote(&self) -> bool {
        true
    }

    async fn sign_transfer(
        &self,
        domain: &TokenDomain,
        authorization: &TransferAuthorization,
    ) -> Result<[u8; 65], AdapterError> {
        if authorization.from != self.address {
            return Err(EvmError::SignerNotPayer.into());
        }
        let typed_data = transfer_typed_data(domain, authorization);
        let answer = self
            .client
            .sign_typed_data(&self.wallet_id, &typed_data, Some(MEMO))
            .await
            .map_err(|error| {
                let code = match error {
                    CircleError::ResponseMalformed { .. } => CODE_SIGN_OUTCOME_UNKNOWN,
                    _ if error.is_retryable() => CODE_SIGN_OUTCOME_UNKNOWN,
                    _ => CODE_SIGN_FAILED,
                };
                rail(
                    code,
                    format!(
                        "Circle wallet {} gave no signature ({}): {error}",
                        self.wallet_id,
                        error.reason_code()
                    ),
                )
            })?;
        let digits = answer.strip_prefix("0x").unwrap_or(&answer);
        let mut bytes = [0u8; 65];
        if digits.len() != 130 || hex::decode_to_slice(digits, &mut bytes).is_err() {
            return Err(rail(
                CODE_SIGNATURE_INVALID,
                format!(
                    "Circle wallet {} answered a signature that is not 65 bytes of hex",
                    self.wallet_id
                ),
            ));
        }
        let digest = authorization.signing_digest(domain);
        check_remote_signature(&digest, &bytes, self.address).map_err(|error| {
            rail(
                CODE_SIGNATURE_INVALID,
                format!(
                    "Circle wallet {} answered a signature that is refused: {error}",
                    self.wallet_id
                ),
            )
        })
    }

    fn signature_may_exist(&self, error: &AdapterError) -> bool {
        // Only a refusal before signing (or before asking) proves that nothing was signed.
        !matches!(
            error,
            AdapterError::Rail {
                code: CODE_SIGN_FAILED,
                ..
            } | AdapterError::Evm(EvmError::SignerNotPayer)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::x402::evm::{U256, nonce_for_decision, parse_address};
    use serde_json::Value;

    #[test]
    fn typed_data_is_the_eip3009_message() {
        let domain = TokenDomain {
            name: "USD Coin".into(),
            version: "2".into(),
            chain_id: 8453,
            verifying_contract: parse_address("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913")
                .unwrap(),
        };
        let authorization = TransferAuthorization {
            from: parse_address("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266").unwrap(),
            to: parse_address("0x209693Bc6afc0C5328bA36FaF03C514EF312287C").unwrap(),
            value: U256::from(u128::MAX),
            valid_after: U256::from(1u64),
            valid_before: U256::from(4_102_444_800u64),
            nonce: nonce_for_decision("dec_typed"),
        };
        let text = transfer_typed_data(&domain, &authorization);
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(value["primaryType"], "TransferWithAuthorization");
        assert_eq!(value["domain"]["chainId"], 8453);
        assert_eq!(value["domain"]["name"], "USD Coin");
        assert_eq!(
            value["message"]["value"],
            "340282366920938463463374607431768211455"
        );
        assert_eq!(
            value["message"]["nonce"],
            nonce_for_decision("dec_typed").to_string()
        );
        let fields: Vec<String> = value["types"]["TransferWithAuthorization"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f["type"].as_str().unwrap(),
                    f["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            format!("TransferWithAuthorization({})", fields.join(",")),
            crate::x402::evm::TRANSFER_WITH_AUTHORIZATION_TYPE
        );
    }
}
