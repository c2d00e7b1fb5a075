//! The x402 adapter: chooses an offer the profile allows, and signs an `exact` EVM
//! authorization for exactly the terms a verified decision binds, once per decision.
//!
//! Every term that reaches the chain is bound by the decision's fingerprint or derived from the
//! signed decision itself:
//! - `to`, `value`, the token (verifying contract), the chain id and the payer are
//!   [`PaymentTerms`] fields; the offer's other members (EIP-712 name and version in `extra`,
//!   `maxTimeoutSeconds`) are bound through `offerDigest`;
//! - the nonce is derived from the decision id ([`nonce_for_decision`]), so one decision can
//!   produce at most one settlement on chain, however often it is retried;
//! - `validAfter` is ten minutes before the decision was issued (clock skew, as the reference
//!   client does) and `validBefore` is the decision's issue time plus the offer's
//!   `maxTimeoutSeconds` (capped by the profile).
//!
//! Who signs is a [`PaymentSigner`]: the gateway's own key ([`X402Adapter::new`]) or a remote
//! signer such as a Circle developer-controlled wallet ([`X402Adapter::with_signer`]). The
//! payload is the same for the same payer key and decision, whoever signs.
//!
//! **When the attempt is recorded.** With the local key, the signature is made in memory and the
//! attempt (with the whole payload) is recorded before the payload is returned: nothing exists
//! outside the gateway before the record. A remote signer holds a signature as soon as it
//! answers, so for it the attempt is recorded *before* the signer is asked, in state `unknown`
//! with no payload (one record per decision: a concurrent or later authorization of the same
//! decision finds it and never asks for a second signature). Then:
//! - the signer answers a signature that checks → the record becomes `authorized` with the
//!   payload (and the nonce is claimed in the replay set), as with the local key;
//! - the signer fails and no signature can exist ([`PaymentSigner::signature_may_exist`] false:
//!   the signer refused before signing) → the record becomes `failed`, with the signer's reason
//!   code in its detail;
//! - the signer fails in a way that leaves a signature possibly in someone's hands (its answer
//!   was lost, or it answered a signature that is refused: wrong key, malformed, high `s`, which
//!   may mean the real one went elsewhere) → the record stays `unknown`, without a payload, the
//!   reason code in its detail;
//! - the gateway stops in between → the record stays `unknown` without a payload.
//!
//! Either way no payload left the gateway, the error is returned, and the decision can never be
//! used again (the record exists). [`Adapter::reconcile`] answers an `unknown` or `authorized`
//! record without a payload as [`Reconciliation::Expired`]: the gateway has nothing to resubmit,
//! and only the chain can tell whether a signature it never held was used (the chain reader's
//! reconciliation asks by payer and nonce, which the record's replay key names).

use std::sync::Arc;

use alloy_primitives::{U256, keccak256};
use serde_json::Value;
use trustos_kernel::canonical::Digest;
use trustos_kernel::objects::{Amount, PaymentTerms, RequestFingerprint};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::VerifiedDecision;

use super::assets::{AssetRegistry, KnownAsset};
use super::evm::{
    self, Address, EvmSigner, TokenDomain, TransferAuthorization, checksum, nonce_for_decision,
    parse_address,
};
use super::networks;
use super::signer::PaymentSigner;
use super::wire::{
    self, ExactEvmAuthorization, ExactEvmPayload, PaymentIdentifierSupport, PaymentRequired,
    Requirement, X402Version,
};
use crate::ledger::{AttemptRecord, AttemptState, PaymentLedger};
use crate::{
    Adapter, AdapterError, Allowances, Reconciliation, SettlementReport, check_bound,
    create_attempt_once, record_report,
};

/// The rail name in receipts and ledger records.
pub const RAIL: &str = "x402";

/// How long before the decision an authorization is already valid (clock skew).
const VALID_AFTER_SKEW_SECONDS: u64 = 600;

/// The x402 adapter: the payer's signer and the assets it may pay in.
pub struct X402Adapter {
    signer: Arc<dyn PaymentSigner>,
    assets: AssetRegistry,
}

impl std::fmt::Debug for X402Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X402Adapter")
            .field("payer", &checksum(&self.signer.address()))
            .finish_non_exhaustive()
    }
}

/// One offer chosen from a payment request, checked against the profile.
#[derive(Clone, Debug)]
pub struct X402Terms {
    /// The whole request (its `resource` and `extensions` are echoed).
    pub required: PaymentRequired,
    /// Index of the chosen offer in `accepts`.
    pub index: usize,
    /// CAIP-2 network.
    pub network: String,
    /// EVM chain id.
    pub chain_id: u64,
    /// The token.
    pub asset: KnownAsset,
    /// Payee.
    pub pay_to: Address,
    /// Amount in base units.
    pub amount: u128,
    /// Seconds the authorization stays valid after the decision is issued.
    pub timeout_seconds: u64,
    /// The resource paid for.
    pub resource: String,
    /// SHA-256 of the JCS form of the chosen offer.
    pub offer_digest: Digest,
}

impl X402Terms {
    /// The chosen offer, with its original bytes.
    pub fn requirement(&self) -> &Requirement {
        &self.required.accepts[self.index]
    }
}

/// A signed payment, ready for the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X402Payment {
    /// Protocol version of the request it answers.
    pub version: X402Version,
    /// The PaymentPayload, compact JSON.
    pub payload_json: String,
    /// The `payment-identifier` id, when the server supports the extension.
    pub payment_id: Option<String>,
    /// Unix seconds after which the authorization cannot settle.
    pub valid_before: u64,
}

impl X402Payment {
    /// The HTTP request header that carries it: `PAYMENT-SIGNATURE` (v2) or `X-PAYMENT` (v1).
    pub fn header_name(&self) -> &'static str {
        match self.version {
            X402Version::V1 => wire::HEADER_X_PAYMENT,
            X402Version::V2 => wire::HEADER_PAYMENT_SIGNATURE,
        }
    }

    /// The header's value: standard padded base64 of the payload.
    pub fn header_value(&self) -> String {
        wire::encode_header_json(self.payload_json.as_bytes())
    }

    /// The payload as the MCP transport's `_meta["x402/payment"]` value.
    pub fn mcp_meta(&self) -> Result<Value, AdapterError> {
        serde_json::from_str(&self.payload_json)
            .map_err(|err| AdapterError::Internal(err.to_string()))
    }
}

impl X402Adapter {
    /// An adapter paying from the gateway's own key `signer` in the `assets` it knows.
    pub fn new(signer: EvmSigner, assets: AssetRegistry) -> Self {
        Self::with_signer(Arc::new(signer), assets)
    }

    /// An adapter paying from `signer`'s address (any [`PaymentSigner`], e.g. a Circle
    /// developer-controlled wallet) in the `assets` it knows.
    pub fn with_signer(signer: Arc<dyn PaymentSigner>, assets: AssetRegistry) -> Self {
        Self { signer, assets }
    }

    /// The kind of signer payments are signed by (`local-key`, `circle-wallet`).
    pub fn signer_kind(&self) -> &'static str {
        self.signer.kind()
    }

    /// The address payments come from.
    pub fn payer(&self) -> Address {
        self.signer.address()
    }

    /// Checks one offer; the reason code when it cannot be paid.
    fn check_offer(
        &self,
        required: &PaymentRequired,
        index: usize,
        allowances: &Allowances,
    ) -> Result<X402Terms, &'static str> {
        let offer = &required.accepts[index];
        if offer.scheme != "exact" || !allowances.schemes.iter().any(|s| s == &offer.scheme) {
            return Err("X402_SCHEME_UNSUPPORTED");
        }
        let network = match required.version {
            X402Version::V2 => offer.network.clone(),
            X402Version::V1 => {
                networks::v1_name_to_caip2(&offer.network).ok_or("X402_NETWORK_UNKNOWN")?
            }
        };
        let chain_id = networks::evm_chain_id(&network).ok_or("X402_NETWORK_UNKNOWN")?;
        if allowances.denied_networks.contains(&network)
            || (!allowances.networks.is_empty() && !allowances.networks.contains(&network))
        {
            return Err("X402_NETWORK_NOT_ALLOWED");
        }
        let address = parse_address(&offer.asset).map_err(|_| "X402_ASSET_INVALID")?;
        let asset = self
            .assets
            .find(&network, &address)
            .ok_or("X402_ASSET_UNKNOWN")?
            .clone();
        if allowances.denied_assets.contains(&asset.symbol)
            || (!allowances.assets.is_empty() && !allowances.assets.contains(&asset.symbol))
        {
            return Err("X402_ASSET_NOT_ALLOWED");
        }
        if let Some(extra) = &offer.extra {
            let named = |key: &str| extra.get(key).and_then(Value::as_str);
            // The exact scheme's other transfer methods (permit2, erc7710) sign other messages:
            // the gateway signs EIP-3009 only, and never one the server did not ask for.
            if extra
                .get("assetTransferMethod")
                .is_some_and(|method| method.as_str() != Some("eip3009"))
            {
                return Err("X402_SCHEME_UNSUPPORTED");
            }
            let name_ok = named("name").is_none_or(|name| name == asset.eip712_name);
            let version_ok = named("version").is_none_or(|v| v == asset.eip712_version);
            if !name_ok || !version_ok {
                return Err("X402_ASSET_DOMAIN_MISMATCH");
            }
        }
        let pay_to = parse_address(&offer.pay_to).map_err(|_| "X402_PAYTO_INVALID")?;
        // Case-insensitive, as `Allowances` documents: a listed spelling in mixed case that is
        // not its EIP-55 checksum must still match (a deny entry must never be skipped).
        let same = |listed: &String| {
            parse_address(&listed.to_ascii_lowercase()).is_ok_and(|a| a == pay_to)
        };
        if allowances.denied_payees.iter().any(same) {
            return Err("X402_PAYTO_DENIED");
        }
        if !allowances.allowed_payees.is_empty() && !allowances.allowed_payees.iter().any(same) {
            return Err("X402_PAYTO_NOT_ALLOWED");
        }
        let amount: u128 = offer.amount.parse().map_err(|_| "X402_AMOUNT_TOO_LARGE")?;
        if amount == 0 {
            return Err("X402_AMOUNT_ZERO");
        }
        let max = allowances
            .max_amount
            .iter()
            .find(|(symbol, _)| *symbol == asset.symbol)
            .map(|(_, max)| *max);
        if max.is_some_and(|max| amount > max) {
            return Err("X402_AMOUNT_ABOVE_POLICY");
        }
        if offer.max_timeout_seconds == 0 {
            return Err("X402_TIMEOUT_INVALID");
        }
        let timeout_seconds = offer
            .max_timeout_seconds
            .min(allowances.max_timeout_seconds.max(1));
        let resource = match required.version {
            X402Version::V2 => required.resource_url.clone(),
            X402Version::V1 => offer.resource.clone(),
        }
        .ok_or("X402_RESOURCE_MISSING")?;
        let offer_value = trustos_kernel::strict_json::parse(offer.raw().get().as_bytes())
            .map_err(|_| "X402_REQUIREMENT_MALFORMED")?;
        let offer_digest =
            Digest::of_canonical_value(&offer_value).map_err(|_| "X402_REQUIREMENT_MALFORMED")?;
        Ok(X402Terms {
            required: required.clone(),
            index,
            network,
            chain_id,
            asset,
            pay_to,
            amount,
            timeout_seconds,
            resource,
            offer_digest,
        })
    }

    fn payment_id(decision_id: &str) -> String {
        let mut material = b"trustos/x402-payment-id/v1\0".to_vec();
        material.extend_from_slice(decision_id.as_bytes());
        let digest = keccak256(material);
        format!("pay_{}", alloy_primitives::hex::encode(&digest[..16]))
    }

    fn replay_key(&self, terms: &X402Terms, nonce: &alloy_primitives::B256) -> String {
        format!(
            "{}:{}:{}:{}",
            terms.network,
            checksum(&terms.asset.address).to_ascii_lowercase(),
            checksum(&self.signer.address()).to_ascii_lowercase(),
            nonce
        )
    }
}

#[async_trait::async_trait]
impl Adapter for X402Adapter {
    type Request = PaymentRequired;
    type Terms = X402Terms;
    type Authorization = X402Payment;

    fn rail(&self) -> &'static str {
        RAIL
    }

    fn prepare(
        &self,
        request: &PaymentRequired,
        allowances: &Allowances,
    ) -> Result<X402Terms, AdapterError> {
        let mut refused = Vec::new();
        for index in 0..request.accepts.len() {
            match self.check_offer(request, index, allowances) {
                Ok(terms) => return Ok(terms),
                Err(code) => refused.push((index, code)),
            }
        }
        Err(AdapterError::NoAcceptableOffer(refused))
    }

    fn bound_terms(&self, terms: &X402Terms) -> Result<PaymentTerms, AdapterError> {
        Ok(PaymentTerms {
            scheme: "exact".to_owned(),
            network: terms.network.clone(),
            asset: checksum(&terms.asset.address),
            amount: Amount::from(terms.amount),
            pay_to: checksum(&terms.pay_to),
            resource: terms.resource.clone(),
            payer: Some(checksum(&self.signer.address())),
            offer_digest: Some(terms.offer_digest),
        })
    }

    async fn authorize(
        &self,
        ledger: &dyn PaymentLedger,
        decision: &VerifiedDecision,
        request: &RequestFingerprint,
        terms: &X402Terms,
        now: Timestamp,
    ) -> Result<X402Payment, AdapterError> {
        check_bound(decision, request, self.bound_terms(terms)?, now)?;

        let decision_id = decision.decision_id();
        let issued = decision.decision().issued_at.unix_millis() / 1000;
        let valid_before = issued.saturating_add(terms.timeout_seconds);
        let nonce = nonce_for_decision(decision_id);
        let authorization = TransferAuthorization {
            from: self.signer.address(),
            to: terms.pay_to,
            value: U256::from(terms.amount),
            valid_after: U256::from(issued.saturating_sub(VALID_AFTER_SKEW_SECONDS)),
            valid_before: U256::from(valid_before),
            nonce,
        };
        // The chain id and the token's domain are derived again from the bound network and
        // contract, never taken from the (public, editable) terms.
        let chain_id = networks::evm_chain_id(&terms.network).ok_or(AdapterError::TermsMismatch)?;
        let asset = self
            .assets
            .find(&terms.network, &terms.asset.address)
            .ok_or(AdapterError::TermsMismatch)?;
        let domain = TokenDomain {
            name: asset.eip712_name.clone(),
            version: asset.eip712_version.clone(),
            chain_id,
            verifying_contract: asset.address,
        };
        let payment_id = match terms.required.payment_identifier() {
            PaymentIdentifierSupport::NotOffered => None,
            PaymentIdentifierSupport::Optional | PaymentIdentifierSupport::Required => {
                Some(Self::payment_id(decision_id))
            }
        };
        let replay_key = self.replay_key(terms, &nonce);
        let mut record = AttemptRecord {
            rail: RAIL.to_owned(),
            decision_id: decision_id.to_owned(),
            state: AttemptState::Authorized,
            idempotency_key: payment_id
                .clone()
                .unwrap_or_else(|| Self::payment_id(decision_id)),
            replay_key: replay_key.clone(),
            valid_before,
            authorization: String::new(),
            reference: None,
            detail: None,
        };

        if !self.signer.is_remote() {
            // In memory: nothing exists outside the gateway until the record below is durable.
            let signature = self.signer.sign_transfer(&domain, &authorization).await?;
            record.authorization =
                payload_json(terms, &authorization, &signature, payment_id.as_deref())?;
            // Durable before the signature leaves: one attempt per decision, then one use per
            // nonce. In this order: of concurrent retries of one decision only the one that
            // created the attempt claims the nonce. (Submitted together, a refused duplicate
            // could take the nonce first and leave the decision's own attempt unpayable.)
            create_attempt_once(ledger, &record).await?;
            let claimed = ledger
                .claim_replay_key(RAIL, &replay_key, valid_before, now)
                .await;
            return finish(ledger, record, claimed?, terms, payment_id).await;
        }

        // A remote signer: a signature may exist outside the gateway as soon as it is asked, so
        // the attempt is recorded first (see the module docs), without a payload.
        record.state = AttemptState::Unknown;
        record.detail = Some(format!(
            "signature requested from the {} signer; no payload has left the gateway",
            self.signer.kind()
        ));
        create_attempt_once(ledger, &record).await?;
        // A payload that cannot be built after a signature was made is recorded as the
        // signer's failures are (the signature exists: `signature_may_exist` says so for any
        // error that is not the signer's own refusal).
        let signed = match self.signer.sign_transfer(&domain, &authorization).await {
            Ok(signature) => payload_json(terms, &authorization, &signature, payment_id.as_deref()),
            Err(error) => Err(error),
        };
        let payload = match signed {
            Ok(payload) => payload,
            Err(error) => {
                let kind = self.signer.kind();
                let code = error.reason_code();
                if self.signer.signature_may_exist(&error) {
                    record.state = AttemptState::Unknown;
                    record.detail = Some(format!(
                        "the {kind} signer failed ({code}) after it was asked: a signature may \
                         exist outside the gateway, but no payload left the gateway; only the \
                         chain can tell"
                    ));
                } else {
                    record.state = AttemptState::Failed;
                    record.detail = Some(format!(
                        "the {kind} signer refused ({code}) before signing; no payload left the \
                         gateway"
                    ));
                }
                ledger.update_attempt(&record).await?;
                return Err(error);
            }
        };
        record.state = AttemptState::Authorized;
        record.detail = None;
        record.authorization = payload;
        let (updated, claimed) = tokio::join!(
            ledger.update_attempt(&record),
            ledger.claim_replay_key(RAIL, &replay_key, valid_before, now)
        );
        updated?;
        finish(ledger, record, claimed?, terms, payment_id).await
    }

    async fn report(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
        report: &SettlementReport,
    ) -> Result<AttemptRecord, AdapterError> {
        record_report(ledger, RAIL, decision_id, report).await
    }

    async fn reconcile(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
        now: Timestamp,
    ) -> Result<Reconciliation, AdapterError> {
        let Some(record) = ledger.load_attempt(RAIL, decision_id).await? else {
            return Ok(Reconciliation::NoAttempt);
        };
        Ok(match record.state {
            AttemptState::Settled | AttemptState::Failed => Reconciliation::Known(record),
            // A remote signer was asked and no payload was recorded: the gateway has nothing to
            // resubmit, only the chain can tell (see the module docs).
            AttemptState::Authorized | AttemptState::Unknown if record.authorization.is_empty() => {
                Reconciliation::Expired(record)
            }
            AttemptState::Authorized | AttemptState::Unknown => {
                if now.unix_millis() / 1000 < record.valid_before {
                    Reconciliation::Resubmit(record)
                } else {
                    Reconciliation::Expired(record)
                }
            }
        })
    }
}

/// The PaymentPayload JSON of `authorization` signed with `signature`, answering the chosen
/// offer of `terms` (the server's extensions echoed, with `payment_id` where supported).
fn payload_json(
    terms: &X402Terms,
    authorization: &TransferAuthorization,
    signature: &[u8; 65],
    payment_id: Option<&str>,
) -> Result<String, AdapterError> {
    let payload = ExactEvmPayload {
        signature: evm::signature_hex(signature),
        authorization: ExactEvmAuthorization {
            from: checksum(&authorization.from),
            to: checksum(&authorization.to),
            value: authorization.value.to_string(),
            valid_after: authorization.valid_after.to_string(),
            valid_before: authorization.valid_before.to_string(),
            nonce: authorization.nonce.to_string(),
        },
    };
    // Echo the server's extensions, with our id where it supports payment-identifier.
    let extensions = terms.required.extensions_echo(payment_id)?;
    Ok(wire::payment_payload_json(
        &terms.required,
        terms.requirement(),
        &payload,
        extensions.as_ref(),
    )?)
}

/// The end of an authorization whose attempt is recorded with its payload: refused as a replay
/// (and the attempt failed) when the replay set already held the nonce, else the payment.
async fn finish(
    ledger: &dyn PaymentLedger,
    mut record: AttemptRecord,
    claimed: bool,
    terms: &X402Terms,
    payment_id: Option<String>,
) -> Result<X402Payment, AdapterError> {
    if !claimed {
        record.state = AttemptState::Failed;
        record.detail = Some("refused: the replay set already holds this nonce".to_owned());
        ledger.update_attempt(&record).await?;
        return Err(AdapterError::Replay);
    }
    Ok(X402Payment {
        version: terms.required.version,
        payload_json: record.authorization,
        payment_id,
        valid_before: record.valid_before,
    })
}

/// The settlement report of an HTTP or MCP answer to a paid retry.
pub fn report_of(settlement: Option<&wire::SettlementResponse>) -> SettlementReport {
    match settlement {
        Some(s) if s.success && !s.transaction.is_empty() => SettlementReport::Settled {
            reference: s.transaction.clone(),
            network: s.network.clone(),
        },
        Some(s) if s.success => SettlementReport::Unknown {
            detail: "success reported without a transaction".to_owned(),
        },
        Some(s) => SettlementReport::Failed {
            reason: s
                .error_reason
                .clone()
                .unwrap_or_else(|| "settlement failed".to_owned()),
        },
        None => SettlementReport::Unknown {
            detail: "no settlement response".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARDHAT_0: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn offer_with_extra(extra: &str) -> PaymentRequired {
        let json = format!(
            r#"{{"x402Version":2,"resource":{{"url":"https://api.example.com/x"}},"accepts":[{{"scheme":"exact","network":"eip155:84532","amount":"1000","asset":"0x036CbD53842c5426634e7929541eC2318f3dCF7e","payTo":"0x209693Bc6afc0C5328bA36FaF03C514EF312287C","maxTimeoutSeconds":60,"extra":{extra}}}]}}"#
        );
        let header = wire::encode_header_json(json.as_bytes());
        wire::payment_required_from_http(Some(header.as_bytes()), b"").unwrap()
    }

    fn allowances() -> Allowances {
        Allowances {
            schemes: vec!["exact".into()],
            max_timeout_seconds: 300,
            ..Allowances::default()
        }
    }

    #[test]
    fn only_eip3009_transfers_are_signed() {
        let adapter = X402Adapter::new(
            EvmSigner::from_hex(HARDHAT_0).unwrap(),
            AssetRegistry::with_defaults(vec![]),
        );
        for method in ["permit2", "erc7710", "EIP3009"] {
            let extra =
                format!(r#"{{"name":"USDC","version":"2","assetTransferMethod":"{method}"}}"#);
            let refused = adapter.prepare(&offer_with_extra(&extra), &allowances());
            assert_eq!(
                refused.map(|_| ()).unwrap_err().reason_code(),
                "X402_SCHEME_UNSUPPORTED",
                "{method}"
            );
        }
        let explicit = r#"{"name":"USDC","version":"2","assetTransferMethod":"eip3009"}"#;
        assert!(
            adapter
                .prepare(&offer_with_extra(explicit), &allowances())
                .is_ok()
        );
        let implicit = r#"{"name":"USDC","version":"2"}"#;
        assert!(
            adapter
                .prepare(&offer_with_extra(implicit), &allowances())
                .is_ok()
        );
    }
}
