//! The Circle adapter: direct transfers (USDC and any other token the operator configures) from a
//! Circle developer-controlled wallet, executed only for a verified decision, once per decision.
//!
//! **What is bound.** A [`CircleTransferIntent`] becomes [`PaymentTerms`] with scheme
//! [`SCHEME`] (`circle-transfer`), the intent's CAIP-2 `network`, its `asset`, `amount`,
//! `destination` as `payTo`, `resource`, and the source `wallet_id` as `payer`. The intent's
//! `asset` is the token's **symbol as the profile names it** (`usdc`), the same name
//! [`Allowances::assets`] and [`Allowances::max_amount`] use: Circle addresses a token by its
//! `tokenId`, not by a contract address. The two remaining fields that reach Circle, `tokenId`
//! and the token's `decimals` (which turn base units into Circle's decimal string), are not in
//! [`PaymentTerms`]; they are derived again at authorization from the bound network and asset
//! through the operator's [`CircleToken`] list, and an intent whose `token_id` or `decimals`
//! differ is refused. So a decision for 1000 base units of `usdc` cannot be turned into a transfer
//! of another token or of 1000 whole tokens. The fee level is the adapter's own configuration
//! (it changes the gas the wallet pays, not what the payee gets).
//!
//! **Once per decision.** [`Adapter::authorize`] writes the attempt (rail `circle`, state
//! authorized, idempotency key [`idempotency_key_for`] of the decision id, the transfer body
//! without any ciphertext) with the ledger's compare-and-set *before* calling Circle; a second
//! call for the same decision finds the record and gets [`AdapterError::AlreadyAuthorized`]
//! without anything being sent. The transfer carries `refId` = the decision id so that
//! reconciliation can find it even when its answer was lost.
//!
//! **Unknown outcomes.** A timeout, transport error, `429`/`5xx` after the client's retries, or a
//! malformed success answer marks the attempt unknown and fails with code
//! [`CODE_OUTCOME_UNKNOWN`]; the adapter never calls Circle again for that decision on its own.
//! A `4xx` marks it failed, after one `refId` look-up shows that no earlier attempt of the
//! client's retry loop created a transaction (a lost answer followed by a refused retry). A `409`
//! (the idempotency key already used with another body) is treated as unknown: something was
//! created under this decision's key.
//!
//! **Reconciliation.** [`Adapter::reconcile`] asks Circle: by transaction id when the record has
//! one, else by `refId`. A transaction found updates the record (`COMPLETE` → settled;
//! `FAILED`/`DENIED`/`CANCELLED` → failed; any other state → unchanged state), always with the
//! Circle transaction id as reference — the reference receipts name (DESIGN.md), and the one
//! Circle answers to — and the `txHash`, once there is one, in the detail) and answers
//! [`Reconciliation::Known`]. None found answers [`Reconciliation::Resubmit`] until the record's
//! `valid_before` ([`RESUBMIT_HORIZON_SECONDS`] after authorization), then
//! [`Reconciliation::Expired`]. For Circle, unlike x402, resubmitting does not send stored bytes:
//! it calls `create_transfer` again with the **same idempotency key and body** and a **fresh
//! entity secret ciphertext** (Circle refuses a reused one), which Circle dedupes — if the first
//! request did create a transaction, Circle answers with it and creates nothing.
//! [`CircleAdapter::resubmit`] does exactly that.
//!
//! **Reason codes and [`AdapterError`].** Refusals of [`Adapter::prepare`] are
//! [`AdapterError::NoAcceptableOffer`] with one `CIRCLE_…` code (see [`all_reason_codes`]).
//! Errors of a Circle call are [`AdapterError::Rail`] with a `CIRCLE_…` code
//! ([`CODE_OUTCOME_UNKNOWN`], [`CODE_TRANSFER_REFUSED`], [`CODE_LOOKUP_FAILED`]) and the client's
//! own code at the start of the message.

use serde_json::{Value, json};
use trustos_kernel::objects::{Amount, PaymentTerms, RequestFingerprint};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::VerifiedDecision;

use super::amount::{from_decimal, to_decimal};
use super::client::{
    CircleClient, CircleError, FeeLevel, Transaction, TransferCreated, TransferRequest,
    idempotency_key_for,
};
use super::state::TransactionState;
use crate::ledger::{AttemptRecord, AttemptState, PaymentLedger};
use crate::{
    Adapter, AdapterError, Allowances, Reconciliation, SettlementReport, check_bound,
    create_attempt_once, record_report,
};

/// The rail name in receipts and ledger records.
pub const RAIL: &str = "circle";

/// The payment scheme in [`PaymentTerms`].
pub const SCHEME: &str = "circle-transfer";

/// How long after authorization a transfer whose creation is not found at Circle may still be
/// resubmitted (24 hours). Circle transfers carry no expiry of their own and Circle does not
/// document how long it keeps idempotency keys; after this horizon a missing transfer is
/// [`Reconciliation::Expired`] and left to an operator rather than sent a day late.
pub const RESUBMIT_HORIZON_SECONDS: u64 = 24 * 60 * 60;

/// Error-message code: the transfer may or may not have been created; the attempt is unknown.
pub const CODE_OUTCOME_UNKNOWN: &str = "CIRCLE_OUTCOME_UNKNOWN";
/// Error-message code: Circle refused the transfer (`4xx`); the attempt failed.
pub const CODE_TRANSFER_REFUSED: &str = "CIRCLE_TRANSFER_REFUSED";
/// Error-message code: reconciliation could not ask Circle; the record is unchanged.
pub const CODE_LOOKUP_FAILED: &str = "CIRCLE_LOOKUP_FAILED";

/// Every reason code of this adapter, and of the Circle wallet as x402 payer
/// ([`super::wallet_signer`]).
pub fn all_reason_codes() -> &'static [&'static str] {
    &[
        "CIRCLE_SCHEME_NOT_ALLOWED",
        "CIRCLE_NETWORK_NOT_ALLOWED",
        "CIRCLE_ASSET_UNKNOWN",
        "CIRCLE_ASSET_NOT_ALLOWED",
        "CIRCLE_TOKEN_MISMATCH",
        "CIRCLE_WALLET_MISSING",
        "CIRCLE_PAYTO_INVALID",
        "CIRCLE_PAYTO_DENIED",
        "CIRCLE_PAYTO_NOT_ALLOWED",
        "CIRCLE_AMOUNT_ZERO",
        "CIRCLE_AMOUNT_ABOVE_POLICY",
        "CIRCLE_RESOURCE_MISSING",
        CODE_OUTCOME_UNKNOWN,
        CODE_TRANSFER_REFUSED,
        CODE_LOOKUP_FAILED,
        super::wallet_signer::CODE_SIGN_FAILED,
        super::wallet_signer::CODE_SIGN_OUTCOME_UNKNOWN,
        super::wallet_signer::CODE_SIGNATURE_INVALID,
    ]
}

/// A token the operator lets the adapter send: the profile's name for it on a network, and the
/// Circle token id and decimals that name stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircleToken {
    /// CAIP-2 network (`eip155:84532`).
    pub network: String,
    /// The symbol as the profile names it (`usdc`).
    pub asset: String,
    /// Circle's `tokenId`.
    pub token_id: String,
    /// The token's decimals (6 for USDC).
    pub decimals: u8,
}

/// A transfer an agent asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircleTransferIntent {
    /// The source developer-controlled wallet's id.
    pub wallet_id: String,
    /// Circle's `tokenId` (must be the configured one for `network` and `asset`).
    pub token_id: String,
    /// CAIP-2 network.
    pub network: String,
    /// The token's symbol as the profile names it (`usdc`), not a contract address.
    pub asset: String,
    /// The recipient address.
    pub destination: String,
    /// Amount in integer base units.
    pub amount: u128,
    /// The token's decimals (must be the configured ones).
    pub decimals: u8,
    /// The resource paid for.
    pub resource: String,
}

/// An intent checked against the profile: the same fields, to bind and execute.
pub type CircleTerms = CircleTransferIntent;

/// The Circle adapter: a W3S client and the tokens it may send.
#[derive(Debug)]
pub struct CircleAdapter {
    client: CircleClient,
    tokens: Vec<CircleToken>,
    fee_level: FeeLevel,
}

impl CircleAdapter {
    /// An adapter sending through `client` in the `tokens` configured, at fee level `MEDIUM`.
    pub fn new(client: CircleClient, tokens: Vec<CircleToken>) -> Self {
        Self {
            client,
            tokens,
            fee_level: FeeLevel::Medium,
        }
    }

    /// The same adapter with another fee level.
    pub fn with_fee_level(mut self, fee_level: FeeLevel) -> Self {
        self.fee_level = fee_level;
        self
    }

    /// The client.
    pub fn client(&self) -> &CircleClient {
        &self.client
    }

    fn token(&self, network: &str, asset: &str) -> Option<&CircleToken> {
        self.tokens
            .iter()
            .find(|token| token.network == network && token.asset == asset)
    }

    fn token_by_id(&self, token_id: &str) -> Option<&CircleToken> {
        self.tokens.iter().find(|token| token.token_id == token_id)
    }

    fn check_intent(
        &self,
        intent: &CircleTransferIntent,
        allowances: &Allowances,
    ) -> Result<CircleTerms, &'static str> {
        if !allowances.schemes.iter().any(|scheme| scheme == SCHEME) {
            return Err("CIRCLE_SCHEME_NOT_ALLOWED");
        }
        let network = &intent.network;
        if allowances.denied_networks.contains(network)
            || (!allowances.networks.is_empty() && !allowances.networks.contains(network))
        {
            return Err("CIRCLE_NETWORK_NOT_ALLOWED");
        }
        let token = self
            .token(network, &intent.asset)
            .ok_or("CIRCLE_ASSET_UNKNOWN")?;
        if allowances.denied_assets.contains(&token.asset)
            || (!allowances.assets.is_empty() && !allowances.assets.contains(&token.asset))
        {
            return Err("CIRCLE_ASSET_NOT_ALLOWED");
        }
        if token.token_id != intent.token_id || token.decimals != intent.decimals {
            return Err("CIRCLE_TOKEN_MISMATCH");
        }
        if !is_plain_text(&intent.wallet_id) {
            return Err("CIRCLE_WALLET_MISSING");
        }
        let destination = &intent.destination;
        if !is_plain_text(destination) {
            return Err("CIRCLE_PAYTO_INVALID");
        }
        // Deny entries match case-insensitively (over-refusing is safe); allow entries too for
        // hex (EVM) addresses, and exactly otherwise (base58 addresses are case-sensitive).
        if allowances
            .denied_payees
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(destination))
        {
            return Err("CIRCLE_PAYTO_DENIED");
        }
        let hex = destination.starts_with("0x") || destination.starts_with("0X");
        let allowed = |listed: &String| {
            if hex {
                listed.eq_ignore_ascii_case(destination)
            } else {
                listed == destination
            }
        };
        if !allowances.allowed_payees.is_empty() && !allowances.allowed_payees.iter().any(allowed) {
            return Err("CIRCLE_PAYTO_NOT_ALLOWED");
        }
        if intent.amount == 0 {
            return Err("CIRCLE_AMOUNT_ZERO");
        }
        let max = allowances
            .max_amount
            .iter()
            .find(|(symbol, _)| *symbol == token.asset)
            .map(|(_, max)| *max);
        if max.is_some_and(|max| intent.amount > max) {
            return Err("CIRCLE_AMOUNT_ABOVE_POLICY");
        }
        if intent.resource.is_empty() {
            return Err("CIRCLE_RESOURCE_MISSING");
        }
        Ok(intent.clone())
    }

    /// The transfer request for `terms` and `decision_id`, with the token re-derived from the
    /// bound network and asset.
    fn transfer_request(
        &self,
        terms: &CircleTerms,
        decision_id: &str,
    ) -> Result<TransferRequest, AdapterError> {
        let token = self
            .token(&terms.network, &terms.asset)
            .ok_or(AdapterError::TermsMismatch)?;
        if token.token_id != terms.token_id || token.decimals != terms.decimals {
            return Err(AdapterError::TermsMismatch);
        }
        if terms.amount == 0 || !is_plain_text(&terms.destination) {
            return Err(AdapterError::TermsMismatch);
        }
        Ok(TransferRequest {
            idempotency_key: idempotency_key_for(decision_id),
            wallet_id: terms.wallet_id.clone(),
            token_id: token.token_id.clone(),
            decimals: token.decimals,
            amount_base_units: terms.amount,
            destination_address: terms.destination.clone(),
            fee_level: self.fee_level,
            ref_id: Some(decision_id.to_owned()),
        })
    }

    /// Sends `transfer` for `record` and records what came of it.
    async fn send(
        &self,
        ledger: &dyn PaymentLedger,
        mut record: AttemptRecord,
        transfer: &TransferRequest,
    ) -> Result<TransferCreated, AdapterError> {
        match self.client.create_transfer(transfer).await {
            Ok(created) => {
                // An idempotent replay can answer with a transaction that is already final:
                // record it with its txHash, the reference reconciliation would find too.
                let found = if created.state.is_final() {
                    self.client.get_transaction(&created.id).await.ok()
                } else {
                    None
                };
                match found {
                    Some(transaction) => record_transaction(&mut record, &transaction),
                    None => apply_state(&mut record, created.state, None, &created.id),
                }
                ledger.update_attempt(&record).await?;
                Ok(created)
            }
            Err(error) if is_refusal(&error) => {
                // A refused last attempt may follow a lost answer of an earlier one.
                let found = self
                    .client
                    .find_by_ref_id(&record.decision_id)
                    .await
                    .map(|found| first_matching(found, &record));
                match found {
                    Ok(None) => {
                        record.state = AttemptState::Failed;
                        record.detail = Some(format!(
                            "{CODE_TRANSFER_REFUSED}: {}: {error}",
                            error.reason_code()
                        ));
                        ledger.update_attempt(&record).await?;
                        Err(AdapterError::Rail {
                            code: CODE_TRANSFER_REFUSED,
                            message: format!("{}: {error}", error.reason_code()),
                        })
                    }
                    Ok(Some(transaction)) => {
                        record_transaction(&mut record, &transaction);
                        ledger.update_attempt(&record).await?;
                        Ok(TransferCreated {
                            id: transaction.id,
                            state: transaction.state,
                        })
                    }
                    Err(_) => mark_unknown(ledger, record, &error).await,
                }
            }
            Err(error) => mark_unknown(ledger, record, &error).await,
        }
    }

    /// Resubmits the transfer of an attempt that [`Adapter::reconcile`] answered
    /// [`Reconciliation::Resubmit`] for: the stored body again, with the same idempotency key
    /// and a fresh ciphertext, so Circle creates it at most once. Refused (with
    /// [`AdapterError::AlreadyAuthorized`]) when the attempt is final or already has a Circle
    /// reference, and after its `valid_before`.
    pub async fn resubmit(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
        now: Timestamp,
    ) -> Result<TransferCreated, AdapterError> {
        let record = ledger
            .load_attempt(RAIL, decision_id)
            .await?
            .ok_or_else(|| AdapterError::Internal(format!("no attempt for {decision_id}")))?;
        let open = matches!(
            record.state,
            AttemptState::Authorized | AttemptState::Unknown
        );
        if !open || record.reference.is_some() || now.unix_millis() / 1000 >= record.valid_before {
            return Err(AdapterError::AlreadyAuthorized {
                decision_id: decision_id.to_owned(),
                state: record.state.as_str(),
            });
        }
        let transfer = self.stored_transfer(&record)?;
        self.send(ledger, record, &transfer).await
    }

    /// The transfer request stored in `record.authorization`.
    fn stored_transfer(&self, record: &AttemptRecord) -> Result<TransferRequest, AdapterError> {
        let bad = || AdapterError::Internal("stored Circle transfer is malformed".to_owned());
        let body: Value = serde_json::from_str(&record.authorization).map_err(|_| bad())?;
        let text = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_owned);
        let token_id = text("tokenId").ok_or_else(bad)?;
        let token = self.token_by_id(&token_id).ok_or_else(bad)?;
        let amount = body
            .pointer("/amounts/0")
            .and_then(Value::as_str)
            .ok_or_else(bad)?;
        let fee_level = match text("feeLevel").as_deref() {
            Some("LOW") => FeeLevel::Low,
            Some("MEDIUM") => FeeLevel::Medium,
            Some("HIGH") => FeeLevel::High,
            _ => return Err(bad()),
        };
        let idempotency_key = text("idempotencyKey").ok_or_else(bad)?;
        if idempotency_key != record.idempotency_key {
            return Err(bad());
        }
        Ok(TransferRequest {
            idempotency_key,
            wallet_id: text("walletId").ok_or_else(bad)?,
            token_id,
            decimals: token.decimals,
            amount_base_units: from_decimal(amount, token.decimals).map_err(|_| bad())?,
            destination_address: text("destinationAddress").ok_or_else(bad)?,
            fee_level,
            ref_id: text("refId"),
        })
    }
}

/// Marks `record` unknown after `error` and answers the error.
async fn mark_unknown(
    ledger: &dyn PaymentLedger,
    mut record: AttemptRecord,
    error: &CircleError,
) -> Result<TransferCreated, AdapterError> {
    let message = format!("{}: {error}", error.reason_code());
    record.state = AttemptState::Unknown;
    record.detail = Some(format!("{CODE_OUTCOME_UNKNOWN}: {message}"));
    ledger.update_attempt(&record).await?;
    Err(AdapterError::Rail {
        code: CODE_OUTCOME_UNKNOWN,
        message,
    })
}

/// Non-empty, no surrounding whitespace, no control characters.
fn is_plain_text(text: &str) -> bool {
    !text.is_empty() && text.trim() == text && !text.chars().any(char::is_control)
}

/// Whether Circle definitely refused the request (nothing created by this attempt).
fn is_refusal(error: &CircleError) -> bool {
    match error {
        CircleError::Unauthorized { .. } | CircleError::CiphertextReused => true,
        CircleError::Api { status, .. } => (400..500).contains(status) && *status != 429,
        CircleError::Config { .. } | CircleError::ApiKey(_) | CircleError::Ciphertext(_) => true,
        _ => false,
    }
}

/// The transfer body Circle sees, without the entity secret ciphertext (never stored).
fn transfer_json(transfer: &TransferRequest) -> String {
    json!({
        "idempotencyKey": transfer.idempotency_key,
        "walletId": transfer.wallet_id,
        "tokenId": transfer.token_id,
        "destinationAddress": transfer.destination_address,
        "amounts": [to_decimal(transfer.amount_base_units, transfer.decimals)],
        "feeLevel": transfer.fee_level.as_str(),
        "refId": transfer.ref_id,
    })
    .to_string()
}

/// The newest transaction of `found` that is this attempt's transfer: its `refId`, wallet,
/// destination and amounts equal the stored request (a `refId` alone is caller-chosen text).
fn first_matching(found: Vec<Transaction>, record: &AttemptRecord) -> Option<Transaction> {
    let stored: Value = serde_json::from_str(&record.authorization).ok()?;
    let text = |name: &str| stored.get(name).and_then(Value::as_str);
    let amounts: Vec<String> = stored
        .get("amounts")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(|amount| amount.as_str().map(str::to_owned))
        .collect();
    found.into_iter().find(|transaction| {
        transaction.ref_id.as_deref() == Some(record.decision_id.as_str())
            && transaction
                .wallet_id
                .as_deref()
                .is_none_or(|wallet| Some(wallet) == text("walletId"))
            && transaction
                .destination_address
                .as_deref()
                .zip(text("destinationAddress"))
                .is_some_and(|(found, stored)| found.eq_ignore_ascii_case(stored))
            && transaction.amounts == amounts
    })
}

/// Moves `record` to what Circle's `state` means.
fn apply_state(
    record: &mut AttemptRecord,
    state: TransactionState,
    tx_hash: Option<&str>,
    id: &str,
) {
    if state.moved_money() {
        record.state = AttemptState::Settled;
        record.reference = Some(id.to_owned());
        record.detail = Some(match tx_hash {
            Some(hash) => format!("circle transaction {id} {} txHash {hash}", state.as_str()),
            None => format!("circle transaction {id} {}", state.as_str()),
        });
    } else if state.is_final() {
        record.state = AttemptState::Failed;
        record.reference = Some(id.to_owned());
        record.detail = Some(format!("circle transaction {id} {}", state.as_str()));
    } else {
        record.reference = Some(id.to_owned());
        record.detail = Some(format!("circle transaction {id} {}", state.as_str()));
    }
}

fn record_transaction(record: &mut AttemptRecord, transaction: &Transaction) {
    apply_state(
        record,
        transaction.state,
        transaction.tx_hash.as_deref(),
        &transaction.id,
    );
    if let (AttemptState::Failed, Some(reason)) = (record.state, &transaction.error_reason) {
        record.detail = Some(format!(
            "circle transaction {} {}: {reason}",
            transaction.id,
            transaction.state.as_str()
        ));
    }
}

#[async_trait::async_trait]
impl Adapter for CircleAdapter {
    type Request = CircleTransferIntent;
    type Terms = CircleTerms;
    type Authorization = TransferCreated;

    fn rail(&self) -> &'static str {
        RAIL
    }

    fn prepare(
        &self,
        request: &CircleTransferIntent,
        allowances: &Allowances,
    ) -> Result<CircleTerms, AdapterError> {
        self.check_intent(request, allowances)
            .map_err(|code| AdapterError::NoAcceptableOffer(vec![(0, code)]))
    }

    fn bound_terms(&self, terms: &CircleTerms) -> Result<PaymentTerms, AdapterError> {
        Ok(PaymentTerms {
            scheme: SCHEME.to_owned(),
            network: terms.network.clone(),
            asset: terms.asset.clone(),
            amount: Amount::from(terms.amount),
            pay_to: terms.destination.clone(),
            resource: terms.resource.clone(),
            payer: Some(terms.wallet_id.clone()),
            offer_digest: None,
        })
    }

    async fn authorize(
        &self,
        ledger: &dyn PaymentLedger,
        decision: &VerifiedDecision,
        request: &RequestFingerprint,
        terms: &CircleTerms,
        now: Timestamp,
    ) -> Result<TransferCreated, AdapterError> {
        check_bound(decision, request, self.bound_terms(terms)?, now)?;
        let decision_id = decision.decision_id();
        let transfer = self.transfer_request(terms, decision_id)?;
        let record = AttemptRecord {
            rail: RAIL.to_owned(),
            decision_id: decision_id.to_owned(),
            state: AttemptState::Authorized,
            idempotency_key: transfer.idempotency_key.clone(),
            replay_key: transfer.idempotency_key.clone(),
            valid_before: (now.unix_millis() / 1000).saturating_add(RESUBMIT_HORIZON_SECONDS),
            authorization: transfer_json(&transfer),
            reference: None,
            detail: None,
        };
        // Durable before anything leaves: one attempt per decision.
        create_attempt_once(ledger, &record).await?;
        self.send(ledger, record, &transfer).await
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
        let Some(mut record) = ledger.load_attempt(RAIL, decision_id).await? else {
            return Ok(Reconciliation::NoAttempt);
        };
        if matches!(record.state, AttemptState::Settled | AttemptState::Failed) {
            return Ok(Reconciliation::Known(record));
        }
        let lookup_failed = |error: CircleError| AdapterError::Rail {
            code: CODE_LOOKUP_FAILED,
            message: format!("{}: {error}", error.reason_code()),
        };
        let found = match &record.reference {
            Some(id) => Some(
                self.client
                    .get_transaction(id)
                    .await
                    .map_err(lookup_failed)?,
            ),
            None => first_matching(
                self.client
                    .find_by_ref_id(decision_id)
                    .await
                    .map_err(lookup_failed)?,
                &record,
            ),
        };
        match found {
            Some(transaction) => {
                record_transaction(&mut record, &transaction);
                ledger.update_attempt(&record).await?;
                Ok(Reconciliation::Known(record))
            }
            None if now.unix_millis() / 1000 < record.valid_before => {
                Ok(Reconciliation::Resubmit(record))
            }
            None => Ok(Reconciliation::Expired(record)),
        }
    }
}
