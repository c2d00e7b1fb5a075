//! The x402 rail in the conformance suite: [`X402Rail`] is the gateway's side (the real
//! [`X402Adapter`] with a local payer key, and a [`ChainReader`] over Ethereum JSON-RPC);
//! [`X402UnderTest`] adds the emulated facilitator and chain ([`crate::testkit::x402`]) whose
//! settlements are the movements of money, keyed by their EIP-3009 nonce (derived from the
//! decision id, so the nonce is the rail's idempotency key).
//!
//! Executing a payment is what a resource server does with the gateway's `PAYMENT-SIGNATURE`:
//! `POST /settle` to its facilitator. Reconciliation is [`reconcile_on_chain`]: the chain says
//! whether the nonce was used; if not, and the authorization is still valid, the very same bytes
//! are submitted again (no new signature), which the chain can accept at most once.

use std::time::Duration;

use serde_json::Value;
use trustos_kernel::objects::{Amount, Settlement};

use super::{Movement, PaymentCase, Rail, RailSpec, RailUnderTest, internal, now};
use crate::ledger::{AttemptRecord, PaymentLedger};
use crate::testkit::x402::{EmulatorConfig, EmulatorError, Fault, X402Emulator, settle};
use crate::x402::assets::AssetRegistry;
use crate::x402::chain::{ChainReader, ChainReaderOptions, reconcile_on_chain};
use crate::x402::evm::{EvmSigner, nonce_for_decision};
use crate::x402::wire::{PaymentRequired, encode_header_json, payment_required_from_http};
use crate::x402::{X402Adapter, X402Payment};
use crate::{Adapter, AdapterError, Allowances, Reconciliation, SettlementReport};

/// The network the suite pays on (Base Sepolia).
const NETWORK: &str = "eip155:84532";
/// Circle's USDC on Base Sepolia.
const USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The payee.
const PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// Another payee, never bound by a decision for the first.
const OTHER_PAY_TO: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";
/// The payer: public Hardhat account #0 (a test key; it only ever pays the emulator).
const PAYER_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// How many reconcile-and-resubmit rounds recovery makes before giving up.
const RECOVERY_ROUNDS: usize = 3;

/// The gateway's side of the x402 rail.
pub struct X402Rail {
    adapter: X402Adapter,
    facilitator: String,
    reader: ChainReader,
}

impl std::fmt::Debug for X402Rail {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("X402Rail")
            .field("adapter", &self.adapter)
            .field("facilitator", &self.facilitator)
            .finish_non_exhaustive()
    }
}

impl X402Rail {
    /// The rail `spec` describes (a [`RailSpec::X402`]).
    pub fn connect(spec: &RailSpec) -> Result<Self, AdapterError> {
        let RailSpec::X402 {
            base_url,
            payer_key_hex,
        } = spec
        else {
            return Err(internal("not an x402 rail spec"));
        };
        let signer = EvmSigner::from_hex(payer_key_hex)?;
        let options = ChainReaderOptions {
            request_timeout: Duration::from_secs(5),
            ..ChainReaderOptions::default()
        };
        let reader = ChainReader::new([(NETWORK.to_owned(), format!("{base_url}/rpc"))], options)
            .map_err(internal)?;
        Ok(Self {
            adapter: X402Adapter::new(signer, AssetRegistry::with_defaults(Vec::new())),
            facilitator: base_url.clone(),
            reader,
        })
    }

    fn required(case: &PaymentCase, pay_to: &str) -> Result<PaymentRequired, AdapterError> {
        let offer = requirement(case.amount, pay_to);
        let required = format!(
            r#"{{"x402Version":2,"resource":{{"url":"{}"}},"accepts":[{offer}]}}"#,
            case.resource()
        );
        let header = encode_header_json(required.as_bytes());
        Ok(payment_required_from_http(Some(header.as_bytes()), b"")?)
    }

    /// Submits a payload to the facilitator, as the resource server would, and reads its word.
    async fn submit(&self, payload_json: &str) -> SettlementReport {
        let accepted = serde_json::from_str::<Value>(payload_json)
            .ok()
            .and_then(|payload| payload.get("accepted").map(Value::to_string));
        let Some(accepted) = accepted else {
            return SettlementReport::Unknown {
                detail: "payload without `accepted`".to_owned(),
            };
        };
        match settle(&self.facilitator, payload_json, &accepted).await {
            Ok(answer) if answer.status == 200 && answer.success => {
                if answer.transaction.is_empty() {
                    SettlementReport::Unknown {
                        detail: "success without a transaction".to_owned(),
                    }
                } else {
                    SettlementReport::Settled {
                        reference: answer.transaction,
                        network: answer.network,
                    }
                }
            }
            // The facilitator's explicit refusal: nothing settled.
            Ok(answer) if answer.status == 200 || answer.status == 400 => {
                SettlementReport::Failed {
                    reason: answer
                        .error_reason
                        .unwrap_or_else(|| "settlement refused".to_owned()),
                }
            }
            Ok(answer) => SettlementReport::Unknown {
                detail: format!("facilitator answered {}", answer.status),
            },
            Err(error) => SettlementReport::Unknown {
                detail: error.to_string(),
            },
        }
    }
}

/// The offer for `amount` base units of USDC to `pay_to`.
fn requirement(amount: u128, pay_to: &str) -> String {
    format!(
        r#"{{"scheme":"exact","network":"{NETWORK}","amount":"{amount}","asset":"{USDC}","payTo":"{pay_to}","maxTimeoutSeconds":300,"extra":{{"name":"USDC","version":"2"}}}}"#
    )
}

#[async_trait::async_trait]
impl Rail for X402Rail {
    type A = X402Adapter;

    fn adapter(&self) -> &X402Adapter {
        &self.adapter
    }

    fn allowances(&self) -> Allowances {
        Allowances {
            schemes: vec!["exact".to_owned()],
            assets: vec!["usdc".to_owned()],
            max_timeout_seconds: 300,
            ..Allowances::default()
        }
    }

    fn payment_request(&self, case: &PaymentCase) -> Result<PaymentRequired, AdapterError> {
        Self::required(case, PAY_TO)
    }

    fn other_payee_request(&self, case: &PaymentCase) -> Result<PaymentRequired, AdapterError> {
        Self::required(case, OTHER_PAY_TO)
    }

    async fn execute(&self, _decision_id: &str, payment: X402Payment) -> SettlementReport {
        self.submit(&payment.payload_json).await
    }

    async fn recover(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, AdapterError> {
        let mut last = None;
        for _ in 0..RECOVERY_ROUNDS {
            match reconcile_on_chain(&self.adapter, ledger, &self.reader, decision_id, now()?)
                .await?
            {
                Reconciliation::NoAttempt => return Ok(None),
                Reconciliation::Known(record) | Reconciliation::Expired(record) => {
                    return Ok(Some(record));
                }
                Reconciliation::Resubmit(record) => {
                    // The same bytes, never a new signature.
                    let report = self.submit(&record.authorization).await;
                    last = Some(self.adapter.report(ledger, decision_id, &report).await?);
                    if matches!(report, SettlementReport::Settled { .. }) {
                        return Ok(last);
                    }
                }
            }
        }
        Ok(last)
    }

    fn settlement(&self, case: &PaymentCase, record: &AttemptRecord) -> Settlement {
        Settlement {
            rail: self.adapter.rail().to_owned(),
            reference: record.reference.clone().unwrap_or_default(),
            network: NETWORK.to_owned(),
            asset: USDC.to_owned(),
            amount: Amount::from(case.amount),
        }
    }
}

/// The x402 rail and its emulated facilitator and chain.
pub struct X402UnderTest {
    rail: X402Rail,
    emulator: X402Emulator,
}

impl X402UnderTest {
    /// Starts an emulator and a rail against it.
    pub fn start() -> Result<Self, EmulatorError> {
        let emulator = X402Emulator::start(EmulatorConfig::default())?;
        let rail = X402Rail::connect(&RailSpec::X402 {
            base_url: emulator.base_url().to_owned(),
            payer_key_hex: PAYER_KEY.to_owned(),
        })
        .map_err(|err| EmulatorError::new(err.to_string()))?;
        Ok(Self { rail, emulator })
    }

    /// The emulator.
    pub fn emulator(&self) -> &X402Emulator {
        &self.emulator
    }
}

impl RailUnderTest for X402UnderTest {
    type Rail = X402Rail;

    fn rail(&self) -> &X402Rail {
        &self.rail
    }

    fn name(&self) -> &'static str {
        crate::x402::RAIL
    }

    fn key_for(&self, decision_id: &str) -> String {
        nonce_for_decision(decision_id).to_string()
    }

    fn movements(&self) -> Vec<Movement> {
        self.emulator
            .settlements()
            .into_iter()
            .map(|settlement| Movement {
                key: settlement.nonce.to_string(),
                reference: settlement.tx_hash,
            })
            .collect()
    }

    fn lose_next_answer(&self) {
        self.emulator.push_fault(Fault::SettleThenDrop);
    }

    fn fail_next_call(&self) {
        self.emulator.push_fault(Fault::ServerError);
    }

    fn clear_faults(&self) {
        self.emulator.clear_faults();
    }

    fn delay_answers(&self, max: Option<Duration>) {
        self.emulator.set_answer_delay(max);
    }

    fn spec(&self) -> RailSpec {
        RailSpec::X402 {
            base_url: self.emulator.base_url().to_owned(),
            payer_key_hex: PAYER_KEY.to_owned(),
        }
    }
}
