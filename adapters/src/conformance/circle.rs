//! The Circle rail in the conformance suite: [`CircleRail`] is the gateway's side (the real
//! [`CircleAdapter`] and [`CircleClient`] over HTTP), [`CircleUnderTest`] adds the W3S emulator
//! ([`crate::testkit::circle`]) whose transactions are the movements of money, keyed by their
//! `idempotencyKey`.
//!
//! Executing a transfer means what the gateway does after `authorize` created it: follow the
//! transaction (by polling here) until a final state. The emulator's states advance on a
//! background ticker, as Circle's do over time. Reconciliation asks Circle by transaction id or
//! `refId` and, when nothing was created, resubmits under the same idempotency key
//! ([`CircleAdapter::resubmit`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use trustos_kernel::objects::{Amount, Settlement};

use super::{Movement, PaymentCase, Rail, RailSpec, RailUnderTest, internal, now, reconcile_then};
use crate::circle::adapter::{CircleAdapter, CircleToken, CircleTransferIntent, SCHEME};
use crate::circle::client::{CircleClient, ClientOptions, TransferCreated, idempotency_key_for};
use crate::circle::{ApiKey, EntitySecret};
use crate::ledger::{AttemptRecord, AttemptState, PaymentLedger};
use crate::testkit::circle::{CircleEmulator, EmulatorConfig, EmulatorError, Fault};
use crate::{Adapter, AdapterError, Allowances, SettlementReport};

/// The network the suite's transfers are on.
const NETWORK: &str = "eip155:84532";
/// Circle's token id for USDC there, as the emulator accepts any id.
const TOKEN_ID: &str = "bdf128b4-827b-5267-8f9e-243694989b5f";
/// The source wallet.
const WALLET_ID: &str = "c0nf0rma-nce0-4000-8000-000000000001";
/// The payee.
const DESTINATION: &str = "0x1111111111111111111111111111111111111111";
/// Another payee, never bound by a decision for the first.
const OTHER_DESTINATION: &str = "0x2222222222222222222222222222222222222222";
/// How long executing or reconciling waits for a final state.
const FINAL_STATE_WAIT: Duration = Duration::from_secs(10);
/// How often it asks.
const POLL_EVERY: Duration = Duration::from_millis(3);
/// Client retries of one request (each fault is queued this many times plus one).
const MAX_RETRIES: u32 = 2;

/// The gateway's side of the Circle rail.
#[derive(Debug)]
pub struct CircleRail {
    adapter: CircleAdapter,
}

impl CircleRail {
    /// The rail `spec` describes (a [`RailSpec::Circle`]).
    pub fn connect(spec: &RailSpec) -> Result<Self, AdapterError> {
        let RailSpec::Circle {
            base_url,
            api_key,
            entity_secret_hex,
        } = spec
        else {
            return Err(internal("not a Circle rail spec"));
        };
        let options = ClientOptions {
            request_timeout: Duration::from_secs(5),
            max_retries: MAX_RETRIES,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            expected_environment: None,
        };
        let client = CircleClient::new(
            base_url,
            ApiKey::parse(api_key).map_err(internal)?,
            EntitySecret::from_hex(entity_secret_hex).map_err(internal)?,
            options,
        )
        .map_err(internal)?;
        let token = CircleToken {
            network: NETWORK.to_owned(),
            asset: "usdc".to_owned(),
            token_id: TOKEN_ID.to_owned(),
            decimals: 6,
        };
        Ok(Self {
            adapter: CircleAdapter::new(client, vec![token]),
        })
    }

    fn intent(case: &PaymentCase, destination: &str) -> CircleTransferIntent {
        CircleTransferIntent {
            wallet_id: WALLET_ID.to_owned(),
            token_id: TOKEN_ID.to_owned(),
            network: NETWORK.to_owned(),
            asset: "usdc".to_owned(),
            destination: destination.to_owned(),
            amount: case.amount,
            decimals: 6,
            resource: case.resource(),
        }
    }

    /// Asks Circle about the attempt until it is final (or the wait ends).
    async fn follow(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, AdapterError> {
        let started = Instant::now();
        loop {
            let record = reconcile_then(self, ledger, decision_id, |_| async {
                self.adapter
                    .resubmit(ledger, decision_id, now()?)
                    .await
                    .map(drop)
            })
            .await?;
            let done = record.as_ref().is_none_or(|record| {
                matches!(record.state, AttemptState::Settled | AttemptState::Failed)
            });
            if done || started.elapsed() > FINAL_STATE_WAIT {
                return Ok(record);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }
}

#[async_trait::async_trait]
impl Rail for CircleRail {
    type A = CircleAdapter;

    fn adapter(&self) -> &CircleAdapter {
        &self.adapter
    }

    fn allowances(&self) -> Allowances {
        Allowances {
            schemes: vec![SCHEME.to_owned()],
            max_timeout_seconds: 300,
            ..Allowances::default()
        }
    }

    fn payment_request(&self, case: &PaymentCase) -> Result<CircleTransferIntent, AdapterError> {
        Ok(Self::intent(case, DESTINATION))
    }

    fn other_payee_request(
        &self,
        case: &PaymentCase,
    ) -> Result<CircleTransferIntent, AdapterError> {
        Ok(Self::intent(case, OTHER_DESTINATION))
    }

    async fn execute(&self, _decision_id: &str, created: TransferCreated) -> SettlementReport {
        let started = Instant::now();
        loop {
            match self.adapter.client().get_transaction(&created.id).await {
                Ok(transaction) if transaction.state.moved_money() => {
                    return SettlementReport::Settled {
                        reference: transaction.id,
                        network: NETWORK.to_owned(),
                    };
                }
                Ok(transaction) if transaction.state.is_final() => {
                    return SettlementReport::Failed {
                        reason: format!("circle transaction {}", transaction.state.as_str()),
                    };
                }
                Ok(_) | Err(_) if started.elapsed() < FINAL_STATE_WAIT => {
                    tokio::time::sleep(POLL_EVERY).await;
                }
                Ok(transaction) => {
                    return SettlementReport::Unknown {
                        detail: format!("still {}", transaction.state.as_str()),
                    };
                }
                Err(error) => {
                    return SettlementReport::Unknown {
                        detail: error.reason_code().to_owned(),
                    };
                }
            }
        }
    }

    async fn recover(
        &self,
        ledger: &dyn PaymentLedger,
        decision_id: &str,
    ) -> Result<Option<AttemptRecord>, AdapterError> {
        self.follow(ledger, decision_id).await
    }

    fn settlement(&self, case: &PaymentCase, record: &AttemptRecord) -> Settlement {
        Settlement {
            rail: self.adapter.rail().to_owned(),
            reference: record.reference.clone().unwrap_or_default(),
            network: NETWORK.to_owned(),
            asset: TOKEN_ID.to_owned(),
            amount: Amount::from(case.amount),
        }
    }
}

/// The Circle rail and its emulator, whose states advance on their own.
pub struct CircleUnderTest {
    rail: CircleRail,
    emulator: Arc<CircleEmulator>,
    ticking: Arc<AtomicBool>,
}

impl CircleUnderTest {
    /// Starts an emulator and a rail against it.
    pub fn start() -> Result<Self, EmulatorError> {
        let emulator = Arc::new(CircleEmulator::start(EmulatorConfig::default())?);
        let spec = RailSpec::Circle {
            base_url: emulator.base_url().to_owned(),
            api_key: emulator.api_key().to_owned(),
            entity_secret_hex: emulator.entity_secret_hex().to_owned(),
        };
        let rail = CircleRail::connect(&spec).map_err(|err| EmulatorError::new(err.to_string()))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let (ticker, running) = (Arc::clone(&emulator), Arc::clone(&ticking));
        std::thread::spawn(move || {
            while running.load(Ordering::Relaxed) {
                ticker.tick();
                std::thread::sleep(POLL_EVERY);
            }
        });
        Ok(Self {
            rail,
            emulator,
            ticking,
        })
    }

    /// The emulator.
    pub fn emulator(&self) -> &CircleEmulator {
        &self.emulator
    }
}

impl Drop for CircleUnderTest {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

impl RailUnderTest for CircleUnderTest {
    type Rail = CircleRail;

    fn rail(&self) -> &CircleRail {
        &self.rail
    }

    fn name(&self) -> &'static str {
        crate::circle::adapter::RAIL
    }

    fn key_for(&self, decision_id: &str) -> String {
        idempotency_key_for(decision_id)
    }

    fn movements(&self) -> Vec<Movement> {
        self.emulator
            .transfers()
            .into_iter()
            .map(|transfer| Movement {
                key: transfer.idempotency_key,
                reference: transfer.id,
            })
            .collect()
    }

    fn lose_next_answer(&self) {
        // The transfer is created and its answer lost; the client's retries (replays under the
        // same key, which Circle would answer with the transaction) fail with 5xx.
        self.emulator.set_fault(Fault::TimeoutAfterCreate);
        for _ in 0..MAX_RETRIES {
            self.emulator.set_fault(Fault::ServerError);
        }
    }

    fn fail_next_call(&self) {
        for _ in 0..=MAX_RETRIES {
            self.emulator.set_fault(Fault::ServerError);
        }
    }

    fn clear_faults(&self) {
        self.emulator.clear_faults();
    }

    fn delay_answers(&self, max: Option<Duration>) {
        self.emulator.set_answer_delay(max);
    }

    fn spec(&self) -> RailSpec {
        RailSpec::Circle {
            base_url: self.emulator.base_url().to_owned(),
            api_key: self.emulator.api_key().to_owned(),
            entity_secret_hex: self.emulator.entity_secret_hex().to_owned(),
        }
    }
}
