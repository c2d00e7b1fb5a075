//! Paying for a call through the x402 rail: the one path both the HTTP lane and the MCP relay
//! take when an upstream asks for money.
//!
//! 1. [`Enforcer::authorize_payment`]: choose an offer the profile allows, decide the call with
//!    those terms bound into its fingerprint (holds are waited out; budgets reserve), verify the
//!    signed allow into a `VerifiedDecision`, and have the adapter sign exactly those terms.
//!    The adapter records the attempt and claims its nonce before the signature leaves.
//! 2. The relay or the lane retries once with the payment, and reads the settlement.
//! 3. [`Enforcer::conclude_payment`]: record the outcome with the adapter, and receipt the call
//!    with the rail's reference when money moved. An unknown outcome is never paid twice.
//!
//! The payer key lives only in the daemon: a stdio shim asks over the control socket.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::store::LateOutcome;
use crate::store::Store as _;
use serde::{Deserialize, Serialize};
use serde_json::json;
use trustos_adapters::circle::wallet_signer::CircleWalletSigner;
use trustos_adapters::x402::assets::{AssetRegistry, KnownAsset};
use trustos_adapters::x402::chain::{ChainReader, ChainReaderOptions, reconcile_on_chain};
use trustos_adapters::x402::evm::{EvmSigner, checksum, parse_address};
use trustos_adapters::x402::signer::PaymentSigner;
use trustos_adapters::x402::wire::PaymentRequired;
use trustos_adapters::x402::{X402Adapter, X402Terms};
use trustos_adapters::{
    Adapter, AdapterError, Allowances, AttemptRecord, AttemptState, Reconciliation,
    SettlementReport,
};
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::objects::{Amount, Settlement};
use trustos_kernel::timestamp::Timestamp;
use trustos_kernel::verify::Verifier;

use super::circle::circle_client;
use super::{
    CallEnd, CallPayment, EnforceError, Enforcer, IssuedReceipt, Reason, ToolCall, Verdict, now,
};
use crate::config::{CircleConfig, X402Config, X402SignerKind};
use crate::policy::Compiled;

/// The local payer key of `[x402]`: from `key_file` (owner-only) or `key_env`.
fn local_signer(config: &X402Config, home: &Path) -> Result<EvmSigner, PayerError> {
    let secret = match (&config.key_file, &config.key_env) {
        (Some(file), None) => {
            let path = home.join(file);
            let mode = std::fs::metadata(&path)
                .map_err(|err| PayerError(format!("[x402] key_file {}: {err}", path.display())))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(PayerError(format!(
                    "[x402] key_file {} can be read by other users (mode {:o}): chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
            std::fs::read_to_string(&path)
                .map_err(|err| PayerError(format!("[x402] key_file {}: {err}", path.display())))?
        }
        (None, Some(variable)) => std::env::var(variable).map_err(|_| {
            PayerError(format!(
                "[x402] key_env: the variable {variable} is not set"
            ))
        })?,
        _ => {
            return Err(PayerError(
                "[x402] needs exactly one of key_file or key_env".into(),
            ));
        }
    };
    // The error names the source and the reason code, never the secret.
    EvmSigner::from_hex(&secret)
        .map_err(|err| PayerError(format!("[x402] payer key: {}", err.reason_code())))
}

/// The gateway's x402 payer: the adapter (with the key) and the profile-independent limits.
pub struct Payer {
    adapter: X402Adapter,
    /// Where reconciliation asks the chain, when `[x402] rpc` names endpoints.
    chain: Option<ChainReader>,
    max_timeout_seconds: u64,
    answer_timeout_ms: u64,
    /// Terms of payments authorized and not yet concluded, by decision id.
    open: Mutex<HashMap<String, X402Terms>>,
}

impl std::fmt::Debug for Payer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Payer")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

/// Why the payer could not be set up. Never contains the key.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PayerError(String);

impl Payer {
    /// The payer `gateway.toml`'s `[x402]` describes; the key comes from the file or the
    /// environment variable it names.
    pub fn from_config(
        config: &X402Config,
        circle: Option<&CircleConfig>,
        home: &Path,
    ) -> Result<Self, PayerError> {
        let signer: Arc<dyn PaymentSigner> = match config.signer {
            X402SignerKind::Key => Arc::new(local_signer(config, home)?),
            X402SignerKind::Circle => {
                let (Some(circle), Some(wallet_id), Some(address)) = (
                    circle,
                    &config.circle_wallet_id,
                    &config.circle_wallet_address,
                ) else {
                    return Err(PayerError(
                        "[x402] signer = \"circle\" needs [circle], circle_wallet_id and circle_wallet_address".into(),
                    ));
                };
                let address = parse_address(address)
                    .map_err(|err| PayerError(format!("[x402] circle_wallet_address: {err}")))?;
                let client =
                    circle_client(circle, home).map_err(|err| PayerError(err.to_string()))?;
                Arc::new(CircleWalletSigner::new(
                    Arc::new(client),
                    wallet_id.clone(),
                    address,
                ))
            }
        };
        let extra = config
            .assets
            .iter()
            .map(|asset| {
                Ok(KnownAsset {
                    network: asset.network.clone(),
                    address: parse_address(&asset.address).map_err(|err| {
                        PayerError(format!("[x402] asset {}: {err}", asset.address))
                    })?,
                    symbol: asset.symbol.to_ascii_lowercase(),
                    eip712_name: asset.eip712_name.clone(),
                    eip712_version: asset.eip712_version.clone(),
                })
            })
            .collect::<Result<Vec<_>, PayerError>>()?;
        let payer = Self::new(
            X402Adapter::with_signer(signer, AssetRegistry::with_defaults(extra)),
            config.max_timeout_seconds,
            config.answer_timeout_seconds.max(1).saturating_mul(1000),
        );
        if config.rpc.is_empty() {
            return Ok(payer);
        }
        let chain = ChainReader::new(
            config
                .rpc
                .iter()
                .map(|(network, url)| (network.clone(), url.clone())),
            ChainReaderOptions::default(),
        )
        .map_err(|err| PayerError(format!("[x402] rpc: {err} ({})", err.reason_code())))?;
        Ok(payer.with_chain(chain))
    }

    /// A payer over `adapter`: authorizations valid at most `max_timeout_seconds`, paid
    /// retries answered within `answer_timeout_ms` or their outcome is unknown.
    pub fn new(adapter: X402Adapter, max_timeout_seconds: u64, answer_timeout_ms: u64) -> Self {
        Self {
            adapter,
            chain: None,
            max_timeout_seconds,
            answer_timeout_ms,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// The same payer, asking `chain` about authorizations in doubt.
    pub fn with_chain(mut self, chain: ChainReader) -> Self {
        self.chain = Some(chain);
        self
    }

    /// The address payments come from (EIP-55).
    pub fn address(&self) -> String {
        checksum(&self.adapter.payer())
    }
}

/// What the daemon answers a request to pay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum PaymentVerdict {
    /// Decided, verified and signed: retry once with this payment.
    Pay {
        /// The allow decision's id.
        decision_id: String,
        /// The signed allow decision (compact JWS).
        decision: String,
        /// The PaymentPayload, compact JSON (MCP `_meta["x402/payment"]`).
        payload: String,
        /// The HTTP header that carries it (`PAYMENT-SIGNATURE` or `X-PAYMENT`).
        header_name: String,
        /// Its value (standard padded base64 of the payload).
        header_value: String,
        /// How long to wait for the paid retry's answer before its outcome is unknown.
        answer_timeout_ms: u64,
    },
    /// Not paid.
    Refuse {
        /// The decision id, when a decision was signed and logged.
        decision_id: Option<String>,
        /// The signed deny decision, when there is one.
        decision: Option<String>,
        /// Why.
        reasons: Vec<Reason>,
        /// The receipt, when the decision was consumed and closed (a failed authorization).
        receipt: Option<IssuedReceipt>,
    },
}

/// How a paid retry ended, as the lane or the relay read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PaidOutcome {
    /// The rail reported the money moved.
    Settled {
        /// Transaction hash.
        reference: String,
        /// CAIP-2 network.
        network: String,
    },
    /// The rail reported nothing moved.
    Failed {
        /// Its reason.
        reason: String,
    },
    /// Not known: no answer, an unreadable settlement, or a second request for payment.
    Unknown {
        /// What is known.
        detail: String,
    },
}

impl From<SettlementReport> for PaidOutcome {
    fn from(report: SettlementReport) -> Self {
        match report {
            SettlementReport::Settled { reference, network } => {
                Self::Settled { reference, network }
            }
            SettlementReport::Failed { reason } => Self::Failed { reason },
            SettlementReport::Unknown { detail } => Self::Unknown { detail },
        }
    }
}

impl From<PaidOutcome> for SettlementReport {
    fn from(outcome: PaidOutcome) -> Self {
        match outcome {
            PaidOutcome::Settled { reference, network } => Self::Settled { reference, network },
            PaidOutcome::Failed { reason } => Self::Failed { reason },
            PaidOutcome::Unknown { detail } => Self::Unknown { detail },
        }
    }
}

/// A concluded payment: its receipt and, when money moved, the settlement it names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConcludedPayment {
    /// The signed receipt.
    pub receipt: IssuedReceipt,
    /// Where money moved, when it did.
    pub settlement: Option<Settlement>,
    /// The payee (EIP-55).
    pub pay_to: String,
}

/// What the active profile lets the adapter choose among offers.
pub fn allowances_of(compiled: &Compiled, max_timeout_seconds: u64) -> Allowances {
    let profile = &compiled.profile;
    Allowances {
        schemes: vec!["exact".to_owned()],
        networks: profile.networks.allow.clone().unwrap_or_default(),
        denied_networks: profile.networks.deny.clone(),
        assets: profile.assets.allow.clone().unwrap_or_default(),
        denied_assets: profile.assets.deny.clone(),
        max_amount: profile
            .amounts
            .iter()
            .filter_map(|bounds| {
                let max = bounds.max.as_ref()?.parse().ok()?;
                Some((bounds.asset.clone(), max))
            })
            .collect(),
        denied_payees: profile.payees.deny.clone(),
        allowed_payees: profile.payees.allow.clone().unwrap_or_default(),
        max_timeout_seconds,
    }
}

fn refuse_with(verdict: Verdict) -> PaymentVerdict {
    match verdict {
        Verdict::Refuse {
            decision_id,
            decision,
            reasons,
        } => PaymentVerdict::Refuse {
            decision_id,
            decision,
            reasons,
            receipt: None,
        },
        _ => PaymentVerdict::Refuse {
            decision_id: None,
            decision: None,
            reasons: vec![Reason::new("PAYMENT_NOT_ALLOWED")],
            receipt: None,
        },
    }
}

impl Enforcer {
    /// Decides and signs a payment for `call` answering `required`. See the module docs.
    pub async fn authorize_payment(
        &self,
        mut call: ToolCall,
        required: &PaymentRequired,
    ) -> Result<PaymentVerdict, EnforceError> {
        let Some(payer) = self.payer() else {
            return Ok(refuse_with(
                self.refuse_call(&call, "X402_NOT_CONFIGURED").await?,
            ));
        };
        let allowances = allowances_of(&self.profile(), payer.max_timeout_seconds);
        let terms = match payer.adapter.prepare(required, &allowances) {
            Ok(terms) => terms,
            Err(err) => {
                return Ok(refuse_with(
                    self.refuse_call(&call, err.reason_code()).await?,
                ));
            }
        };
        let bound = payer
            .adapter
            .bound_terms(&terms)
            .map_err(|err| EnforceError::Internal(err.to_string()))?;
        call.payment = Some(CallPayment {
            terms: bound.clone(),
            asset_symbol: terms.asset.symbol.clone(),
            rail: payer.adapter.rail().to_owned(),
        });

        let (decision_id, jws) = match self.decide_payment(&call, false).await? {
            Ok(allowed) => allowed,
            Err(refused) => return Ok(refuse_with(refused)),
        };

        let started_at = now()?;
        match self.sign_payment(payer, &call, &terms, &jws).await {
            Ok(payment) => {
                lock_open(payer).insert(decision_id.clone(), terms);
                Ok(PaymentVerdict::Pay {
                    decision_id,
                    decision: jws,
                    header_name: payment.header_name().to_owned(),
                    header_value: payment.header_value(),
                    payload: payment.payload_json,
                    answer_timeout_ms: payer.answer_timeout_ms,
                })
            }
            Err(err) => {
                // Nothing left the gateway: the decision is closed and its reservation released.
                let receipt = self
                    .finish(&decision_id, CallEnd::NotForwarded, None, started_at)
                    .await?;
                Ok(PaymentVerdict::Refuse {
                    decision_id: Some(decision_id),
                    decision: None,
                    reasons: vec![Reason::new(err.reason_code())],
                    receipt: Some(receipt),
                })
            }
        }
    }

    /// [`Enforcer::authorize_payment`] for an MCP tool result carrying a payment request.
    pub async fn authorize_mcp_payment(
        &self,
        call: ToolCall,
        result: &serde_json::Value,
    ) -> Result<PaymentVerdict, EnforceError> {
        match trustos_adapters::x402::wire::payment_required_from_mcp_result(result) {
            Ok(Some(required)) => self.authorize_payment(call, &required).await,
            Ok(None) => Ok(refuse_with(
                self.refuse_call(&call, "X402_NO_REQUIREMENTS").await?,
            )),
            Err(err) => Ok(refuse_with(
                self.refuse_call(&call, err.reason_code()).await?,
            )),
        }
    }

    /// Verifies the allow into a `VerifiedDecision` for exactly these terms, then signs.
    async fn sign_payment(
        &self,
        payer: &Payer,
        call: &ToolCall,
        terms: &X402Terms,
        jws: &str,
    ) -> Result<trustos_adapters::x402::X402Payment, AdapterError> {
        self.verify_and_authorize(&payer.adapter, call, terms, jws)
            .await
    }

    /// Verifies the signed allow `jws` into a `VerifiedDecision` for exactly `call` paying
    /// `terms` (the fingerprint recomputed with the adapter's bound terms), then has `adapter`
    /// authorize: the one way from a decision to money, for every rail.
    pub(crate) async fn verify_and_authorize<A: Adapter>(
        &self,
        adapter: &A,
        call: &ToolCall,
        terms: &A::Terms,
        jws: &str,
    ) -> Result<A::Authorization, AdapterError> {
        let internal = |err: &dyn std::fmt::Display| AdapterError::Internal(err.to_string());
        let at = now().map_err(|err| internal(&err))?;
        let request = call.fingerprint(None).map_err(|err| internal(&err))?;
        let mut bound = request.clone();
        bound.payment = Some(adapter.bound_terms(terms)?);
        let expected = bound.digest().map_err(|err| internal(&err))?;
        let verifier = Verifier::new(TrustedKeys::new([self.key().public().clone()]));
        let verified = verifier
            .verify_decision(jws, &expected, at)
            .map_err(|err| AdapterError::DecisionNotInForce(err.reason_code().to_owned()))?;
        adapter
            .authorize(&**self.store(), &verified, &request, terms, at)
            .await
    }

    /// Records how a paid retry ended and receipts the call. `served` is whether the upstream
    /// answered with a success (a result, or a 2xx); `result_digest` binds that answer.
    pub async fn conclude_payment(
        &self,
        decision_id: &str,
        outcome: PaidOutcome,
        served: bool,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<ConcludedPayment, EnforceError> {
        let payer = self
            .payer()
            .ok_or_else(|| EnforceError::Internal("no x402 payer".into()))?;
        let terms = lock_open(payer).remove(decision_id);
        let report = SettlementReport::from(outcome.clone());
        let settlement = match (&outcome, &terms) {
            (PaidOutcome::Settled { reference, network }, Some(terms)) => Some(Settlement {
                rail: payer.adapter.rail().to_owned(),
                reference: reference.clone(),
                network: network.clone(),
                asset: checksum(&terms.asset.address),
                amount: Amount::from(terms.amount),
            }),
            _ => None,
        };
        let end = match &outcome {
            PaidOutcome::Settled { .. } => CallEnd::Completed,
            // A signed authorization can still settle until validBefore: keep the budget. Its
            // `failed` receipt closes the outcome (only `unknown` awaits a late receipt).
            PaidOutcome::Failed { .. } => CallEnd::ToolError,
            // Served without a readable settlement: the spend is counted.
            PaidOutcome::Unknown { .. } if served => CallEnd::Completed,
            PaidOutcome::Unknown { .. } => CallEnd::Unknown,
        };
        let receipt = self
            .record_and_receipt(
                &payer.adapter,
                decision_id,
                &report,
                end,
                result_digest,
                started_at,
                settlement.clone(),
            )
            .await?;
        tracing::info!(%decision_id, ?outcome, "x402 payment concluded");
        Ok(ConcludedPayment {
            receipt,
            settlement,
            pay_to: terms.map(|t| checksum(&t.pay_to)).unwrap_or_default(),
        })
    }
}

impl Enforcer {
    /// Decides a call that will move money, waiting out holds: the allow's decision id and
    /// signed decision, or the verdict that refuses it. A shadow-mode pass is refused
    /// (`PAYMENT_NOT_ALLOWED`): money never moves without an allow. `rail`: the gateway itself
    /// executes the call through a rail adapter (see `decide_call`).
    pub(crate) async fn decide_payment(
        &self,
        call: &ToolCall,
        rail: bool,
    ) -> Result<Result<(String, String), Verdict>, EnforceError> {
        let mut verdict = self.decide_call(call.clone(), rail).await?;
        while let Verdict::Hold { decision_id, .. } = &verdict {
            tracing::info!(%decision_id, server = %call.server, "payment held for approval");
            verdict = self.await_hold(decision_id).await?;
        }
        Ok(match verdict {
            Verdict::Forward {
                decision_id,
                decision,
            } => Ok((decision_id, decision)),
            Verdict::Pass { .. } => Err(self.refuse_call(call, "PAYMENT_NOT_ALLOWED").await?),
            refused => Err(refused),
        })
    }
}

/// How long a reconcile round (the daemon's, or before `trustos payments` lists) may take in
/// all, per rail.
pub(crate) const RECONCILE_BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

impl Enforcer {
    /// The open attempts of `rail` in the order a reconcile round asks about them: never asked
    /// first, then asked longest ago (see [`super::reconcile_order`]).
    pub(crate) async fn attempts_to_reconcile(
        &self,
        rail: &str,
    ) -> Result<Vec<trustos_adapters::AttemptRecord>, EnforceError> {
        let mut attempts = self.open_attempts(rail).await?;
        super::lock(&self.reconcile_order).order(rail, &mut attempts);
        Ok(attempts)
    }

    /// Notes that a reconcile round is asking the rail about `decision_id` now.
    pub(crate) fn asking_about(&self, rail: &str, decision_id: &str) {
        super::lock(&self.reconcile_order).asked(rail, decision_id);
    }

    /// Every attempt of `rail` in the ledger whose outcome is open (`authorized` or `unknown`).
    pub(crate) async fn open_attempts(
        &self,
        rail: &str,
    ) -> Result<Vec<trustos_adapters::AttemptRecord>, EnforceError> {
        let records = self
            .store()
            .list_records(crate::store::payment_ledger::ATTEMPT_KIND)
            .await
            .map_err(|err| EnforceError::Internal(err.to_string()))?;
        Ok(records
            .into_iter()
            .filter_map(|(_, record)| {
                serde_json::from_slice::<trustos_adapters::AttemptRecord>(&record.body).ok()
            })
            .filter(|attempt| {
                attempt.rail == rail
                    && matches!(
                        attempt.state,
                        trustos_adapters::AttemptState::Authorized
                            | trustos_adapters::AttemptState::Unknown
                    )
            })
            .collect())
    }

    /// Asks the chain (`[x402] rpc`) about every open x402 attempt, those asked about longest
    /// ago first, and records what it says: an authorization used on chain is settled with its
    /// transaction hash; one expired unused (the chain's clock past `validBefore`) failed. Never
    /// signs or submits anything. Within [`RECONCILE_BUDGET`]; without `[x402] rpc`, does
    /// nothing.
    pub async fn reconcile_x402_attempts(&self) {
        let Some((payer, chain)) = self
            .payer()
            .and_then(|payer| payer.chain.as_ref().map(|chain| (payer, chain)))
        else {
            return;
        };
        let work = async {
            let attempts = match self
                .attempts_to_reconcile(trustos_adapters::x402::RAIL)
                .await
            {
                Ok(attempts) => attempts,
                Err(err) => {
                    tracing::warn!(error = %err, "could not list x402 attempts to reconcile");
                    return;
                }
            };
            for attempt in attempts {
                let Ok(at) = now() else { return };
                let decision_id = &attempt.decision_id;
                self.asking_about(trustos_adapters::x402::RAIL, decision_id);
                match reconcile_on_chain(&payer.adapter, &**self.store(), chain, decision_id, at)
                    .await
                {
                    Ok(Reconciliation::Known(record)) => self.receipt_concluded(&record).await,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(%decision_id, error = %err, "could not reconcile an x402 attempt on chain");
                    }
                }
            }
        };
        if tokio::time::timeout(RECONCILE_BUDGET, work).await.is_err() {
            tracing::warn!("reconciling x402 attempts took too long; listing what is recorded");
        }
    }

    /// Receipts the outcome of an attempt that reconciliation found concluded, when the
    /// call's receipt left it open ([`Enforcer::receipt_late_outcome`]: at most once). Failures
    /// are logged: the ledger keeps the outcome, and the next reconciliation tries again.
    pub(crate) async fn receipt_concluded(&self, record: &AttemptRecord) {
        let outcome = match (record.state, &record.reference) {
            (AttemptState::Settled, Some(reference)) => LateOutcome::Settled {
                reference: reference.clone(),
            },
            (AttemptState::Failed, _) => LateOutcome::Failed,
            _ => return,
        };
        let digest_input = json!({
            "rail": record.rail,
            "state": record.state.as_str(),
            "reference": record.reference,
            "detail": record.detail,
        });
        let result_digest = Digest::of_canonical_value(&digest_input).ok();
        let decision_id = &record.decision_id;
        if let Err(err) = self
            .receipt_late_outcome(decision_id, outcome, result_digest)
            .await
        {
            tracing::error!(%decision_id, error = %err, "could not receipt a late payment outcome");
        }
    }

    /// What `trustos payments` has done before it lists (by the daemon, or by the command
    /// itself when none runs): Circle and the chain asked about open attempts, and the outcomes
    /// learned receipted.
    pub async fn reconcile_payments(&self) {
        tokio::join!(
            self.reconcile_circle_attempts(),
            self.reconcile_x402_attempts()
        );
        self.receipt_awaited_outcomes().await;
    }

    /// Receipts every payment left open whose attempt the ledger now records concluded but
    /// that has no late receipt yet: one whose outcome was recorded by a process that stopped
    /// before receipting it, or whose late receipt failed. A payment whose run ended before it
    /// recorded any attempt never reached the rail: it is receipted `failed` and its
    /// reservation released ([`LateOutcome::Abandoned`]). Failures are logged.
    pub async fn receipt_awaited_outcomes(&self) {
        let awaiting = match self.store().awaiting_outcomes().await {
            Ok(awaiting) => awaiting,
            Err(err) => {
                tracing::warn!(error = %err, "could not list payments awaiting their outcome");
                return;
            }
        };
        for (decision_id, rail) in awaiting {
            match trustos_adapters::PaymentLedger::load_attempt(
                &**self.store(),
                &rail,
                &decision_id,
            )
            .await
            {
                Ok(Some(record)) => self.receipt_concluded(&record).await,
                // The attempt is recorded before the rail is asked: none means nothing was
                // sent. The store refuses this for a payment of this run still in flight.
                Ok(None) => {
                    if let Err(err) = self
                        .receipt_late_outcome(&decision_id, LateOutcome::Abandoned, None)
                        .await
                    {
                        tracing::error!(%decision_id, error = %err, "could not receipt an abandoned payment");
                    }
                }
                Err(err) => {
                    tracing::warn!(%decision_id, error = %err, "could not read a payment attempt");
                }
            }
        }
    }

    /// Records how a rail's payment of `decision_id` ended and receipts the call. The ledger
    /// update and the receipt are independent writes: submitted together, the store's group
    /// commit makes them durable in one sync. A ledger failure is logged (the receipt still
    /// says what happened; reconciliation finds the attempt). `settlement`: what the receipt
    /// names when money moved; an `unknown` end leaves the outcome open (see
    /// [`Enforcer::finish_paid`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record_and_receipt<A: Adapter>(
        &self,
        adapter: &A,
        decision_id: &str,
        report: &SettlementReport,
        end: CallEnd,
        result_digest: Option<Digest>,
        started_at: Timestamp,
        settlement: Option<Settlement>,
    ) -> Result<IssuedReceipt, EnforceError> {
        let (recorded, receipt) = tokio::join!(
            adapter.report(&**self.store(), decision_id, report),
            self.finish_paid(decision_id, end, result_digest, started_at, settlement)
        );
        if let Err(err) = recorded {
            tracing::error!(
                %decision_id,
                rail = adapter.rail(),
                error = %err,
                "could not record a payment's outcome"
            );
        }
        receipt
    }
}

fn lock_open(payer: &Payer) -> std::sync::MutexGuard<'_, HashMap<String, X402Terms>> {
    payer
        .open
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HARDHAT_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

    fn config(file: &str) -> X402Config {
        X402Config {
            key_file: Some(file.into()),
            max_timeout_seconds: 300,
            answer_timeout_seconds: 60,
            ..X402Config::default()
        }
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_and_errors_never_show_the_key() {
        let dir = std::env::temp_dir().join(format!("trustos-payer-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x402.key");
        std::fs::write(&path, HARDHAT_0).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let open = Payer::from_config(&config("x402.key"), None, &dir)
            .unwrap_err()
            .to_string();
        assert!(open.contains("chmod 600"), "{open}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let payer = Payer::from_config(&config("x402.key"), None, &dir).unwrap();
        assert_eq!(
            payer.address(),
            "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
        );
        assert!(!format!("{payer:?}").contains("ac0974bec39a17e36"));
        std::fs::write(&path, "0xnot-a-key-ac0974bec39a17e36ba4").unwrap();
        let bad = Payer::from_config(&config("x402.key"), None, &dir)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("X402_SIGNER_KEY_INVALID"), "{bad}");
        assert!(!bad.contains("ac0974bec39a17e36ba4"), "{bad}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
