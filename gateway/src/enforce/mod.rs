//! The enforcement authority: everything the daemon decides for a relay.
//!
//! One [`Enforcer`] per daemon owns the signing key, the store, the active profile, the tool
//! pins and the held calls. A relay (the stdio shim over the control socket, or the HTTP front
//! in-process) hands it each `tools/call` and gets a [`Verdict`]:
//!
//! 1. **pins**: a tool never listed, or whose definition changed or appeared after the first
//!    listing, is refused until an operator approves it;
//! 2. **classify**: the profile's routes give the risk class; an upstream's
//!    `destructiveHint: true` can raise a low route (refused, `TOOL_RISK_RAISED`), never lower;
//!    unclassified is high;
//! 3. low risk passes untouched, with no decision and no log entry;
//! 4. high and paid: fingerprint → policy (with the store's budget totals) → signed
//!    `PolicyDecision.v1` committed atomically with its reservations and log entry → if allowed,
//!    consumed durably before the relay forwards it;
//! 5. a challenge is held until the profile's quorum of approvers signs approvals, an approver
//!    rejects, or the hold times out (a signed deny);
//! 6. the relay reports how the call ended and gets a signed `Receipt.v1` with its log index.
//!
//! Every error on a high-risk path is a refusal (fail closed).

pub mod circle;
pub mod inventory;
pub mod pay;
pub mod pins;
pub mod reconcile_order;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use trustos_kernel::canonical::Digest;
use trustos_kernel::jws::{self, TYP_DECISION, TYP_RECEIPT};
use trustos_kernel::keys::{GatewayKey, PublicKey, TrustedKeys};
use trustos_kernel::objects::{
    Amount, DecisionType, ExecutionStatus, Mode, Outcome, PaymentTerms, PolicyDecision, Receipt,
    ReceiptType, RequestFingerprint, Route, SafeIndex, Settlement,
};
use trustos_kernel::timestamp::Timestamp;

use crate::approval::{Approval, Verdict as ApprovalVerdict};
use crate::policy::engine::{Call, Evaluation, Intent, PaymentFacts, decide_with_store};
use crate::policy::profile::Risk;
use crate::policy::{self, ActiveProfile, Compiled, Reload};
use crate::store::redb_store::RedbStore;
use crate::store::{
    AwaitedPayment, AwaitedSettlement, BudgetSettlement, CommitError, DecisionCommit, LateOutcome,
    LateReceiptCommit, ReceiptCommit, Store, StoreError,
};
use pins::{PinCheck, Pins};

/// One reason a call was refused or held, with what to change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Stable reason code.
    pub code: String,
    /// What the operator can change.
    pub remediation: String,
}

impl Reason {
    /// The reason with its documented remediation.
    pub fn new(code: &str) -> Self {
        Self {
            code: code.to_owned(),
            remediation: policy::reasons::remediation(code).to_owned(),
        }
    }
}

/// A `tools/call` to decide.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ToolCall {
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Session, when the transport has one.
    #[serde(default)]
    pub session: Option<String>,
    /// Server name (as configured).
    pub server: String,
    /// Tool name, exactly as called.
    pub tool: String,
    /// The call's arguments (an object; `{}` when absent). For an HTTP lane request: the
    /// headers that matter and the body, as [`crate::http_lane`] builds them.
    pub arguments: Value,
    /// An HTTP lane request: what is called (`server` is the lane, `tool` the method and path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTarget>,
    /// Payment terms a rail adapter will sign, bound into the fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<CallPayment>,
}

/// The target of an HTTP lane request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpTarget {
    /// Upper-case method.
    pub method: String,
    /// The normalized absolute URL (the one normalization, shared with routing).
    pub url: String,
    /// Lower-case host, as routes match it.
    pub host: String,
    /// Normalized path, as routes match it.
    pub path: String,
}

/// Payment terms of a call, with the asset as the profile names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallPayment {
    /// Exactly what reaches the rail.
    pub terms: PaymentTerms,
    /// The profile's name of the asset (`usdc`), for amounts and budgets.
    pub asset_symbol: String,
    /// The rail adapter that pays it (`x402`, `circle`).
    #[serde(default)]
    pub rail: String,
}

impl ToolCall {
    /// The call as the policy classifies it.
    pub fn policy_call(&self) -> Call {
        match &self.http {
            Some(target) => Call::Http {
                method: target.method.clone(),
                host: target.host.clone(),
                path: target.path.clone(),
            },
            None => Call::Mcp {
                server: self.server.clone(),
                tool: self.tool.clone(),
            },
        }
    }

    /// The route a fingerprint names.
    pub fn route(&self) -> Route {
        match &self.http {
            Some(target) => Route::Http {
                method: target.method.clone(),
                url: target.url.clone(),
            },
            None => Route::Mcp {
                server: self.server.clone(),
                tool: self.tool.clone(),
            },
        }
    }

    /// The request fingerprint with `terms`.
    pub fn fingerprint(
        &self,
        terms: Option<PaymentTerms>,
    ) -> Result<RequestFingerprint, trustos_kernel::canonical::CanonicalError> {
        RequestFingerprint::new(
            &self.tenant,
            &self.agent,
            self.route(),
            &self.arguments,
            terms,
        )
    }

    /// Explicit payment facts for the policy (x402 terms), if the call has them.
    fn payment_facts(&self) -> Option<PaymentFacts> {
        let payment = self.payment.as_ref()?;
        Some(PaymentFacts {
            amount: payment.terms.amount.to_u128()?,
            asset: payment.asset_symbol.clone(),
            payee: payment.terms.pay_to.clone(),
            network: payment.terms.network.clone(),
        })
    }
}

/// What the relay must do with a call.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    /// Low risk (or shadow mode): forward the call untouched, no receipt.
    Pass {
        /// The route that classified it.
        route: Option<String>,
        /// For a low-risk pass: the generation it was decided at. A relay may reuse it for the
        /// same call target until the daemon announces another generation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cacheable_at: Option<u64>,
    },
    /// Allowed and consumed: forward with the decision in `params._meta`.
    Forward {
        /// Decision id.
        decision_id: String,
        /// The signed decision (compact JWS).
        decision: String,
    },
    /// Refused: answer the agent with these reasons; nothing is forwarded.
    Refuse {
        /// Decision id, when a decision was signed and logged.
        decision_id: Option<String>,
        /// The signed deny decision, when there is one.
        decision: Option<String>,
        /// Why.
        reasons: Vec<Reason>,
    },
    /// Held for approval: wait with [`Enforcer::await_hold`].
    Hold {
        /// The challenge decision's id.
        decision_id: String,
        /// The signed challenge decision.
        decision: String,
        /// Why it is held.
        reasons: Vec<Reason>,
        /// Who may approve.
        approvers: Vec<String>,
        /// How many must.
        quorum: u32,
        /// Milliseconds until it times out into a deny.
        timeout_ms: u64,
    },
}

impl Verdict {
    fn refuse(decision: Option<(String, String)>, codes: &[&str]) -> Self {
        let (decision_id, decision) = decision.unzip();
        Verdict::Refuse {
            decision_id,
            decision,
            reasons: codes.iter().map(|code| Reason::new(code)).collect(),
        }
    }
}

/// How a forwarded call ended, for its receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEnd {
    /// A result without `isError`.
    Completed,
    /// A result with `isError: true`.
    ToolError,
    /// A JSON-RPC error response.
    ProtocolError,
    /// No answer (the upstream died or timed out): money may have moved.
    Unknown,
    /// Decided and consumed, but never forwarded (the host cancelled it meanwhile).
    NotForwarded,
}

/// A receipt, signed and logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedReceipt {
    /// The compact JWS.
    pub receipt: String,
    /// Its log index.
    pub log_index: u64,
}

/// What an approval did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ApprovalOutcome {
    /// Counted; more approvals are needed.
    Counted {
        /// Approvals so far.
        approvals: Vec<String>,
        /// Needed.
        quorum: u32,
    },
    /// The quorum is met: the call goes ahead (or the re-decision refused it).
    Resolved {
        /// What the held call became.
        verdict: Verdict,
    },
    /// Not counted.
    Refused {
        /// Stable reason code.
        code: String,
        /// Why.
        message: String,
    },
}

/// The daemon could not decide (the relay refuses the call: fail closed).
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Anything else that stops a decision.
    #[error("{0}")]
    Internal(String),
}

fn internal<E: std::fmt::Display>(err: E) -> EnforceError {
    EnforceError::Internal(err.to_string())
}

/// Time now, in the kernel's representation.
pub fn now() -> Result<Timestamp, EnforceError> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(internal)?
        .as_millis();
    u64::try_from(millis)
        .ok()
        .and_then(|millis| Timestamp::from_unix_millis(millis).ok())
        .ok_or_else(|| EnforceError::Internal("system clock out of range".into()))
}

/// How many resolved holds' verdicts are kept for relays that start waiting late.
const RESOLVED_HOLDS_KEPT: usize = 256;

/// How long a waiter waits for a hold another resolver took (one durable write, normally).
const HOLD_RESOLUTION_WAIT: Duration = Duration::from_secs(30);

/// An id for this run of the daemon: random, or the process id and start time when the system
/// has no randomness to give (unique either way for one machine's store).
fn run_id() -> String {
    random_id("run_").unwrap_or_else(|_| {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos());
        format!("run_{}_{started}", std::process::id())
    })
}

/// A random id with a prefix: 128 bits of randomness in hex.
pub fn random_id(prefix: &str) -> Result<String, EnforceError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(internal)?;
    Ok(bytes
        .iter()
        .fold(prefix.to_owned(), |id, byte| id + &format!("{byte:02x}")))
}

/// The approver name an MCP elicitation answered by the host's user counts as.
pub const HOST_APPROVER: &str = "host";

/// A held call, as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldCall {
    /// The challenge decision's id.
    pub decision_id: String,
    /// Its request fingerprint (an approval names it).
    pub fingerprint: Digest,
    /// Tenant.
    pub tenant: String,
    /// Agent that made the call.
    pub agent: String,
    /// Server.
    pub server: String,
    /// Tool.
    pub tool: String,
    /// Arguments.
    pub arguments: Value,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// How many must.
    pub quorum: u32,
    /// Who has.
    pub approvals: Vec<String>,
    /// When it times out into a deny.
    pub deadline: Timestamp,
}

/// A call waiting for approval.
struct Hold {
    call: ToolCall,
    fingerprint: Digest,
    approvers: Vec<String>,
    quorum: u32,
    approvals: BTreeSet<String>,
    resolved: watch::Sender<Option<Verdict>>,
    deadline: Timestamp,
}

/// A hold as the enforcer keeps it.
///
/// A hold being resolved (its deny or approved decision is being written) stays in the map
/// until its verdict is published, so a relay that starts waiting meanwhile subscribes to the
/// verdict instead of finding no hold; and no second resolver can take it.
enum HoldSlot {
    /// Waiting for approvals, a cancel or its deadline.
    Open(Box<Hold>),
    /// Taken by one resolver; the verdict follows on this channel.
    Resolving(watch::Sender<Option<Verdict>>),
}

/// Settings of an enforcer.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long an allow decision stays usable.
    pub decision_ttl: Duration,
    /// How long a hold waits for approval.
    pub hold_timeout: Duration,
}

/// The daemon's decision authority. See the module documentation.
pub struct Enforcer {
    key: Arc<GatewayKey>,
    store: Arc<RedbStore>,
    profile: Mutex<ActiveProfile>,
    current: RwLock<Arc<Compiled>>,
    approvers: BTreeMap<String, PublicKey>,
    settings: Settings,
    pins: Pins,
    holds: Mutex<HashMap<String, HoldSlot>>,
    /// Verdicts of resolved holds, newest last (at most [`RESOLVED_HOLDS_KEPT`]): a relay
    /// whose wait starts only after the resolution (a host that answered an elicitation at
    /// once) takes its verdict here, once, instead of finding no hold.
    resolved_holds: Mutex<VecDeque<(String, Verdict)>>,
    forwarded: Mutex<HashMap<String, Digest>>,
    /// Which open attempts reconcile rounds asked about last (see [`reconcile_order`]).
    reconcile_order: Mutex<reconcile_order::ReconcileOrder>,
    /// This run of the daemon (unique per start): the rail payments it starts are its own
    /// until receipted (see `LateReceiptCommit::owner`).
    run_id: String,
    generation: watch::Sender<u64>,
    payer: Option<pay::Payer>,
    circle: Option<circle::CirclePayer>,
}

/// Locks a mutex, recovering from a panicked holder (state here stays consistent per call).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Enforcer {
    /// An enforcer over an open store, a loaded profile and the approvers' keys.
    pub fn new(
        key: Arc<GatewayKey>,
        store: Arc<RedbStore>,
        profile: ActiveProfile,
        approvers: BTreeMap<String, PublicKey>,
        settings: Settings,
    ) -> Self {
        let current = profile.current();
        Self {
            pins: Pins::new(Arc::clone(&store)),
            key,
            store,
            profile: Mutex::new(profile),
            current: RwLock::new(current),
            approvers,
            settings,
            holds: Mutex::new(HashMap::new()),
            resolved_holds: Mutex::new(VecDeque::new()),
            forwarded: Mutex::new(HashMap::new()),
            reconcile_order: Mutex::default(),
            run_id: run_id(),
            generation: watch::Sender::new(1),
            payer: None,
            circle: None,
        }
    }

    /// The same enforcer, paying x402 requests with `payer`.
    pub fn with_payer(mut self, payer: pay::Payer) -> Self {
        self.payer = Some(payer);
        self
    }

    /// The x402 payer, when `gateway.toml` configures one.
    pub fn payer(&self) -> Option<&pay::Payer> {
        self.payer.as_ref()
    }

    /// The same enforcer, sending Circle transfers with `circle`.
    pub fn with_circle(mut self, circle: circle::CirclePayer) -> Self {
        self.circle = Some(circle);
        self
    }

    /// The Circle rail, when `gateway.toml` configures `[circle]`.
    pub fn circle(&self) -> Option<&circle::CirclePayer> {
        self.circle.as_ref()
    }

    /// The gateway's signing key.
    pub fn key(&self) -> &Arc<GatewayKey> {
        &self.key
    }

    /// The store.
    pub fn store(&self) -> &Arc<RedbStore> {
        &self.store
    }

    /// The profile in force.
    pub fn profile(&self) -> Arc<Compiled> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Changes whenever the profile or a pin changes (relays may cache verdicts per generation).
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Announces every new generation.
    pub fn watch_generation(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    fn bump_generation(&self) {
        self.generation.send_modify(|generation| *generation += 1);
    }

    /// The tool pins.
    pub fn pins(&self) -> &Pins {
        &self.pins
    }

    /// Re-reads the profile file; a bad file keeps the last good profile.
    pub fn reload_profile(&self) -> Reload {
        let reload = lock(&self.profile).reload();
        if let Reload::Updated { .. } = reload {
            let fresh = lock(&self.profile).current();
            *self
                .current
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
            self.bump_generation();
        }
        reload
    }

    /// Records a `tools/list` result's tools; see [`Pins::observe`].
    pub async fn observe_tools(
        &self,
        server: &str,
        tools: &[Value],
        more: bool,
    ) -> Result<Vec<pins::Observed>, EnforceError> {
        let observed = self.pins.observe(server, tools, more, now()?).await?;
        if observed.iter().any(|o| o.changed) {
            self.bump_generation();
        }
        Ok(observed)
    }

    /// Approves the pending definition of a tool (an operator action).
    pub async fn approve_tool(
        &self,
        server: &str,
        tool: &str,
        sha256: Option<&Digest>,
    ) -> Result<Digest, EnforceError> {
        let approved = self.pins.approve(server, tool, sha256, now()?).await?;
        self.bump_generation();
        Ok(approved)
    }

    /// Decides one `tools/call`. Errors are refusals for the relay (fail closed).
    pub async fn decide(&self, call: ToolCall) -> Result<Verdict, EnforceError> {
        self.decide_call(call, false).await
    }

    /// [`Enforcer::decide`]; `rail`: the gateway itself executes the call through a rail adapter
    /// (a Circle transfer), so there is no upstream tool listing to pin. Only in-process callers
    /// can say so.
    async fn decide_call(&self, call: ToolCall, rail: bool) -> Result<Verdict, EnforceError> {
        // Read first: a change during this decision makes the stamp stale, never too new.
        let generation = self.generation();
        let compiled = self.profile();
        let policy_call = call.policy_call();
        let route = compiled.classify(&policy_call);
        let route_risk = route.map_or(Risk::High, |route| route.risk);
        let route_id = route.map(|route| route.id.clone());

        // 1. Pins: what the upstream listed, and whether an operator accepted it. An HTTP API
        // lists nothing; its routes are the profile's.
        let pin = match call.http {
            _ if rail => PinCheck::Approved { destructive: false },
            Some(_) => PinCheck::Approved { destructive: false },
            None => self.pins.check(&call.server, &call.tool).await?,
        };
        let refusal = match &pin {
            PinCheck::Approved { .. } => None,
            PinCheck::NotListed => Some("TOOL_NOT_LISTED"),
            PinCheck::Changed => Some("TOOL_DEFINITION_CHANGED"),
            PinCheck::New => Some("TOOL_NEW_UNAPPROVED"),
        };
        let destructive = matches!(pin, PinCheck::Approved { destructive: true });
        if let Some(code) = refusal {
            return self.refuse_logged(&call, &compiled, route_risk, code).await;
        }

        // A tool or API priced by x402 (a paid route without argument pointers): the unpaid
        // call only learns the price. Paying is decided with the offered terms, by
        // `authorize_payment`.
        // Every other rule (who may call the route, when) still applies to the unpaid call.
        if route_risk == Risk::Paid
            && call.payment.is_none()
            && route.is_some_and(|route| route.payment.is_none())
        {
            let intent = Intent {
                tenant: call.tenant.clone(),
                agent: call.agent.clone(),
                session: call.session.clone(),
                call: policy_call,
                arguments: call.arguments.clone(),
                payment: None,
            };
            let evaluation = self.evaluate(&compiled, &intent, now()?).await?;
            let blocking = evaluation
                .reasons
                .iter()
                .find(|code| code.as_str() != "PAYMENT_TERMS_MISSING");
            if let Some(code) = blocking
                && evaluation.enforced == Outcome::Deny
            {
                return self.refuse_logged(&call, &compiled, route_risk, code).await;
            }
            return Ok(Verdict::Pass {
                route: route_id,
                cacheable_at: None,
            });
        }

        // 2. Classification: annotations can only raise. A call that pays is never low.
        if route_risk == Risk::Low && call.payment.is_none() {
            if destructive {
                return self
                    .refuse_logged(&call, &compiled, Risk::High, "TOOL_RISK_RAISED")
                    .await;
            }
            return Ok(Verdict::Pass {
                route: route_id,
                cacheable_at: Some(generation),
            });
        }

        // 3. High and paid: decide with the store's totals.
        let intent = Intent {
            tenant: call.tenant.clone(),
            agent: call.agent.clone(),
            session: call.session.clone(),
            call: policy_call,
            arguments: call.arguments.clone(),
            payment: call.payment_facts(),
        };
        let issued_at = now()?;
        let evaluation = self.evaluate(&compiled, &intent, issued_at).await?;
        let fingerprint = fingerprint_of(&call, &evaluation)?;
        let (decision, signed) = self.sign(
            &fingerprint,
            evaluation.outcome,
            evaluation.reasons.clone(),
            evaluation.policies.clone(),
            &evaluation,
            issued_at,
        )?;
        let allowed = evaluation.outcome == Outcome::Allow;
        // An allow the gateway forwards itself is consumed in the same durable write.
        let forwarding = allowed && evaluation.enforced == Outcome::Allow;
        match self
            .commit(
                &decision,
                &signed,
                &evaluation,
                (allowed, forwarding),
                call.payment.as_ref(),
            )
            .await
        {
            Ok(()) => {}
            Err(CommitError::BudgetExceeded { .. }) => {
                // Another call took the budget between the decision and its commit.
                return self
                    .refuse_logged(&call, &compiled, route_risk, "BUDGET_CONTENDED")
                    .await;
            }
            Err(err) => return Err(internal(err)),
        }
        let pair = (decision.decision_id.clone(), signed.clone());
        match evaluation.enforced {
            Outcome::Allow if allowed => Ok(self.forwarding(&decision, &fingerprint, signed)),
            // Shadow mode: the decision is logged, the call passes as if low risk.
            Outcome::Allow => Ok(Verdict::Pass {
                route: route_id,
                cacheable_at: None,
            }),
            Outcome::Deny => Ok(Verdict::Refuse {
                decision_id: Some(pair.0),
                decision: Some(pair.1),
                reasons: evaluation.reasons.iter().map(|c| Reason::new(c)).collect(),
            }),
            Outcome::Challenge => self.hold(call, &compiled, decision, signed, &evaluation),
        }
    }

    async fn evaluate(
        &self,
        compiled: &Compiled,
        intent: &Intent,
        at: Timestamp,
    ) -> Result<Evaluation, EnforceError> {
        Ok(decide_with_store(compiled, &*self.store, intent, at).await?)
    }

    fn sign(
        &self,
        fingerprint: &Digest,
        outcome: Outcome,
        reasons: Vec<String>,
        policies: Vec<String>,
        evaluation: &Evaluation,
        issued_at: Timestamp,
    ) -> Result<(PolicyDecision, String), EnforceError> {
        let ttl = u64::try_from(self.settings.decision_ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_at = issued_at
            .checked_add_millis(ttl)
            .ok_or_else(|| EnforceError::Internal("clock out of range".into()))?;
        let reservations = if outcome == Outcome::Allow {
            evaluation.reservations(issued_at)
        } else {
            Vec::new()
        };
        let decision = PolicyDecision {
            object_type: DecisionType::V1,
            decision_id: random_id("dec_")?,
            fingerprint: *fingerprint,
            outcome,
            reason_codes: reasons,
            policy_ids: policies,
            profile_fingerprint: evaluation.profile_fingerprint,
            reservations,
            issued_at,
            expires_at,
            mode: evaluation.mode,
        };
        let signed = jws::sign(&self.key, TYP_DECISION, &decision).map_err(internal)?;
        Ok((decision, signed))
    }

    async fn commit(
        &self,
        decision: &PolicyDecision,
        signed: &str,
        evaluation: &Evaluation,
        (allowed, consume): (bool, bool),
        payment: Option<&CallPayment>,
    ) -> Result<(), CommitError> {
        let charges = if allowed {
            evaluation.budget_charges()
        } else {
            Vec::new()
        };
        // A rail payment starting now awaits its outcome until a receipt closes it.
        let awaiting = payment
            .filter(|payment| allowed && consume && !payment.rail.is_empty())
            .map(|payment| AwaitedPayment {
                settlement: AwaitedSettlement {
                    rail: payment.rail.clone(),
                    network: payment.terms.network.clone(),
                    asset: payment.terms.asset.clone(),
                    amount: payment.terms.amount.clone(),
                },
                owner: self.run_id.clone(),
            });
        self.store
            .commit_decision(DecisionCommit {
                decision: decision.clone(),
                signed: signed.to_owned(),
                charges,
                consume,
                awaiting,
            })
            .await
            .map(|_| ())
    }

    /// The verdict for an allow committed and consumed in one write: the relay forwards it,
    /// and only it can receipt it, once.
    fn forwarding(
        &self,
        decision: &PolicyDecision,
        fingerprint: &Digest,
        signed: String,
    ) -> Verdict {
        lock(&self.forwarded).insert(decision.decision_id.clone(), *fingerprint);
        Verdict::Forward {
            decision_id: decision.decision_id.clone(),
            decision: signed,
        }
    }

    /// Signs and logs a deny decided outside the policy (the HTTP lane's refusals: an agent's
    /// own payment, a forged header, an offer the profile cannot pay).
    pub async fn refuse_call(&self, call: &ToolCall, code: &str) -> Result<Verdict, EnforceError> {
        let compiled = self.profile();
        self.refuse_logged(call, &compiled, Risk::High, code).await
    }

    /// Signs and logs a deny that the relay layer decided (pins, raised risk, contention).
    async fn refuse_logged(
        &self,
        call: &ToolCall,
        compiled: &Compiled,
        risk: Risk,
        code: &str,
    ) -> Result<Verdict, EnforceError> {
        let issued_at = now()?;
        let terms = call.payment.as_ref().map(|payment| payment.terms.clone());
        let fingerprint = call
            .fingerprint(terms)
            .and_then(|request| request.digest())
            .map_err(internal)?;
        let profile = &compiled.profile.defaults.mode;
        let mode = match risk {
            Risk::Low => profile.low,
            Risk::High => profile.high,
            Risk::Paid => profile.paid,
        };
        let evaluation = Evaluation {
            outcome: Outcome::Deny,
            mode: if mode == Mode::Shadow {
                Mode::Hard
            } else {
                mode
            },
            enforced: Outcome::Deny,
            reasons: vec![code.to_owned()],
            policies: vec![format!("trustos.relay.{}", code.to_ascii_lowercase())],
            route: None,
            risk,
            payment: None,
            charges: Vec::new(),
            profile_fingerprint: compiled.fingerprint,
        };
        let (decision, signed) = self.sign(
            &fingerprint,
            Outcome::Deny,
            evaluation.reasons.clone(),
            evaluation.policies.clone(),
            &evaluation,
            issued_at,
        )?;
        self.commit(&decision, &signed, &evaluation, (false, false), None)
            .await
            .map_err(internal)?;
        Ok(Verdict::refuse(
            Some((decision.decision_id, signed)),
            &[code],
        ))
    }

    fn hold(
        &self,
        call: ToolCall,
        compiled: &Compiled,
        decision: PolicyDecision,
        signed: String,
        evaluation: &Evaluation,
    ) -> Result<Verdict, EnforceError> {
        let (approvers, quorum) = compiled
            .profile
            .challenge
            .as_ref()
            .map(|c| (c.approvers.clone(), c.quorum))
            .unwrap_or_default();
        let timeout_ms = u64::try_from(self.settings.hold_timeout.as_millis()).unwrap_or(u64::MAX);
        let deadline = decision
            .issued_at
            .checked_add_millis(timeout_ms)
            .ok_or_else(|| EnforceError::Internal("clock out of range".into()))?;
        let (resolved, _) = watch::channel(None);
        lock(&self.holds).insert(
            decision.decision_id.clone(),
            HoldSlot::Open(Box::new(Hold {
                call,
                fingerprint: decision.fingerprint,
                approvers: approvers.clone(),
                quorum,
                approvals: BTreeSet::new(),
                resolved,
                deadline,
            })),
        );
        Ok(Verdict::Hold {
            decision_id: decision.decision_id,
            decision: signed,
            reasons: evaluation.reasons.iter().map(|c| Reason::new(c)).collect(),
            approvers,
            quorum,
            timeout_ms,
        })
    }

    /// Waits until a held call is approved, rejected or timed out.
    pub async fn await_hold(&self, decision_id: &str) -> Result<Verdict, EnforceError> {
        let (mut receiver, deadline) = {
            let holds = lock(&self.holds);
            match holds.get(decision_id) {
                Some(HoldSlot::Open(hold)) => (hold.resolved.subscribe(), Some(hold.deadline)),
                Some(HoldSlot::Resolving(verdict)) => (verdict.subscribe(), None),
                None => {
                    drop(holds);
                    return Ok(self.take_resolved(decision_id));
                }
            }
        };
        if let Some(deadline) = deadline {
            let wait = deadline.unix_millis().saturating_sub(now()?.unix_millis());
            if let Some(verdict) = settled_within(&mut receiver, Duration::from_millis(wait)).await
            {
                return Ok(verdict);
            }
            // Timed out: a signed, logged deny, once.
            if let Some(hold) = self.take_for_resolution(decision_id) {
                let verdict = self
                    .refuse_logged(&hold.call, &self.profile(), Risk::High, "APPROVAL_TIMEOUT")
                    .await;
                return self.conclude_hold(decision_id, &hold, verdict);
            }
        }
        // Another resolver took it: its verdict follows after one durable write.
        Ok(settled_within(&mut receiver, HOLD_RESOLUTION_WAIT)
            .await
            .unwrap_or_else(|| Verdict::refuse(None, &["APPROVAL_TIMEOUT"])))
    }

    /// The verdict of a hold resolved before its waiter arrived, taken once; else
    /// `HOLD_UNKNOWN`.
    fn take_resolved(&self, decision_id: &str) -> Verdict {
        let mut resolved = lock(&self.resolved_holds);
        resolved
            .iter()
            .position(|(id, _)| id == decision_id)
            .and_then(|at| resolved.remove(at))
            .map_or_else(|| Verdict::refuse(None, &["HOLD_UNKNOWN"]), |(_, v)| v)
    }

    /// Takes an open hold for resolution: waiters keep finding it (see [`HoldSlot`]) and no
    /// other resolver can take it. `None` when it is unknown or already being resolved.
    fn take_for_resolution(&self, decision_id: &str) -> Option<Box<Hold>> {
        let mut holds = lock(&self.holds);
        let slot = holds.get_mut(decision_id)?;
        let HoldSlot::Open(hold) = slot else {
            return None;
        };
        let verdict = hold.resolved.clone();
        match std::mem::replace(slot, HoldSlot::Resolving(verdict)) {
            HoldSlot::Open(hold) => Some(hold),
            HoldSlot::Resolving(_) => None,
        }
    }

    /// Publishes a taken hold's verdict to every waiter, keeps it for late ones, then drops
    /// the hold. A resolution that failed (the store refused the write) is published as
    /// `GATEWAY_UNAVAILABLE`, so no waiter hangs and nothing runs.
    fn conclude_hold(
        &self,
        decision_id: &str,
        hold: &Hold,
        verdict: Result<Verdict, EnforceError>,
    ) -> Result<Verdict, EnforceError> {
        let published = verdict.as_ref().map_or_else(
            |_| Verdict::refuse(None, &["GATEWAY_UNAVAILABLE"]),
            Clone::clone,
        );
        hold.resolved.send_replace(Some(published.clone()));
        {
            let mut resolved = lock(&self.resolved_holds);
            if resolved.len() >= RESOLVED_HOLDS_KEPT {
                resolved.pop_front();
            }
            resolved.push_back((decision_id.to_owned(), published));
        }
        lock(&self.holds).remove(decision_id);
        verdict
    }

    /// Drops a held call the host cancelled: a signed, logged deny; approvals find nothing.
    pub async fn cancel_hold(&self, decision_id: &str) -> Result<(), EnforceError> {
        if let Some(hold) = self.take_for_resolution(decision_id) {
            let verdict = self
                .refuse_logged(&hold.call, &self.profile(), Risk::High, "HOLD_CANCELLED")
                .await;
            self.conclude_hold(decision_id, &hold, verdict)?;
        }
        Ok(())
    }

    /// The calls now held for approval.
    pub fn held(&self) -> Vec<HeldCall> {
        let holds = lock(&self.holds);
        let mut held: Vec<HeldCall> = holds
            .iter()
            .filter_map(|(id, slot)| match slot {
                HoldSlot::Open(hold) => Some((id, hold)),
                HoldSlot::Resolving(_) => None,
            })
            .map(|(id, hold)| HeldCall {
                decision_id: id.clone(),
                fingerprint: hold.fingerprint,
                tenant: hold.call.tenant.clone(),
                agent: hold.call.agent.clone(),
                server: hold.call.server.clone(),
                tool: hold.call.tool.clone(),
                arguments: hold.call.arguments.clone(),
                approvers: hold.approvers.clone(),
                quorum: hold.quorum,
                approvals: hold.approvals.iter().cloned().collect(),
                deadline: hold.deadline,
            })
            .collect();
        held.sort_by(|a, b| a.decision_id.cmp(&b.decision_id));
        held
    }

    /// Counts a signed operator approval (or rejection) of a held call.
    pub async fn approve(&self, approval_jws: &str) -> Result<ApprovalOutcome, EnforceError> {
        let refused = |code: &str, message: String| {
            Ok(ApprovalOutcome::Refused {
                code: code.to_owned(),
                message,
            })
        };
        let keys = TrustedKeys::new(self.approvers.values().cloned());
        let (approval, kid) = match Approval::verify(approval_jws, &keys) {
            Ok(found) => found,
            Err(err) => {
                return refused(
                    "APPROVAL_INVALID",
                    format!("{err} (is the key listed under [approvers] in gateway.toml?)"),
                );
            }
        };
        let Some(name) = self
            .approvers
            .iter()
            .find(|(_, key)| key.kid() == kid)
            .map(|(name, _)| name.clone())
        else {
            return refused("APPROVAL_INVALID", "unknown approver key".into());
        };
        self.count_approval(
            &approval.decision_id,
            &name,
            Some(&approval.fingerprint),
            approval.verdict,
        )
        .await
    }

    /// The host's user answered an MCP elicitation about a held call. It counts as the
    /// approval (or rejection) of the approver named [`HOST_APPROVER`], only when the profile's
    /// `[challenge]` lists that name.
    pub async fn host_answer(
        &self,
        decision_id: &str,
        approve: bool,
    ) -> Result<ApprovalOutcome, EnforceError> {
        let verdict = if approve {
            ApprovalVerdict::Approve
        } else {
            ApprovalVerdict::Reject
        };
        self.count_approval(decision_id, HOST_APPROVER, None, verdict)
            .await
    }

    async fn count_approval(
        &self,
        decision_id: &str,
        name: &str,
        fingerprint: Option<&Digest>,
        verdict: ApprovalVerdict,
    ) -> Result<ApprovalOutcome, EnforceError> {
        let refused = |code: &str, message: String| {
            Ok(ApprovalOutcome::Refused {
                code: code.to_owned(),
                message,
            })
        };
        let name = name.to_owned();
        let approval = (decision_id.to_owned(), verdict);
        let reached = {
            let mut holds = lock(&self.holds);
            let hold = match holds.get_mut(&approval.0) {
                Some(HoldSlot::Open(hold)) => hold,
                Some(HoldSlot::Resolving(_)) => {
                    return refused("HOLD_UNKNOWN", "the hold was resolved meanwhile".into());
                }
                None => {
                    return refused(
                        "HOLD_UNKNOWN",
                        format!("no call is held under {}", approval.0),
                    );
                }
            };
            if fingerprint.is_some_and(|fingerprint| *fingerprint != hold.fingerprint) {
                return refused(
                    "APPROVAL_FINGERPRINT_MISMATCH",
                    "the approval names another request".into(),
                );
            }
            if !hold.approvers.contains(&name) {
                return refused(
                    "APPROVER_NOT_LISTED",
                    format!("{name} is not an approver of the profile's [challenge]"),
                );
            }
            if name == hold.call.agent {
                return refused(
                    "APPROVER_IS_INITIATOR",
                    "the agent that made the call never counts toward its own approval".into(),
                );
            }
            if approval.1 == ApprovalVerdict::Reject {
                None
            } else {
                hold.approvals.insert(name);
                if (hold.approvals.len() as u64) < u64::from(hold.quorum.max(1)) {
                    return Ok(ApprovalOutcome::Counted {
                        approvals: hold.approvals.iter().cloned().collect(),
                        quorum: hold.quorum,
                    });
                }
                Some(hold.approvals.iter().cloned().collect::<Vec<_>>())
            }
        };
        let Some(hold) = self.take_for_resolution(&approval.0) else {
            return refused("HOLD_UNKNOWN", "the hold was resolved meanwhile".into());
        };
        let verdict = match reached {
            None => {
                self.refuse_logged(&hold.call, &self.profile(), Risk::High, "APPROVAL_REJECTED")
                    .await
            }
            Some(names) => self.decide_approved(&hold, &names).await,
        };
        let verdict = self.conclude_hold(&approval.0, &hold, verdict)?;
        Ok(ApprovalOutcome::Resolved { verdict })
    }

    /// Re-decides an approved call: budgets and every deny rule still apply; only the challenge
    /// is lifted.
    async fn decide_approved(
        &self,
        hold: &Hold,
        names: &[String],
    ) -> Result<Verdict, EnforceError> {
        let compiled = self.profile();
        let call = &hold.call;
        let intent = Intent {
            tenant: call.tenant.clone(),
            agent: call.agent.clone(),
            session: call.session.clone(),
            call: call.policy_call(),
            arguments: call.arguments.clone(),
            payment: call.payment_facts(),
        };
        let issued_at = now()?;
        let evaluation = self.evaluate(&compiled, &intent, issued_at).await?;
        let fingerprint = fingerprint_of(call, &evaluation)?;
        if fingerprint != hold.fingerprint || evaluation.outcome == Outcome::Deny {
            let codes: Vec<&str> = if fingerprint != hold.fingerprint {
                vec!["APPROVAL_FINGERPRINT_MISMATCH"]
            } else {
                evaluation.reasons.iter().map(String::as_str).collect()
            };
            return self
                .refuse_logged(
                    call,
                    &compiled,
                    evaluation.risk,
                    codes.first().copied().unwrap_or("NOT_PERMITTED"),
                )
                .await;
        }
        let mut policies = evaluation.policies.clone();
        policies.extend(names.iter().map(|name| format!("trustos.approval.{name}")));
        let (decision, signed) = self.sign(
            &fingerprint,
            Outcome::Allow,
            vec!["APPROVED".to_owned()],
            policies,
            &evaluation,
            issued_at,
        )?;
        match self
            .commit(
                &decision,
                &signed,
                &evaluation,
                (true, true),
                hold.call.payment.as_ref(),
            )
            .await
        {
            Ok(()) => {}
            Err(CommitError::BudgetExceeded { .. }) => {
                return self
                    .refuse_logged(call, &compiled, evaluation.risk, "BUDGET_CONTENDED")
                    .await;
            }
            Err(err) => return Err(internal(err)),
        }
        Ok(self.forwarding(&decision, &fingerprint, signed))
    }

    /// Signs and logs the receipt of a forwarded call, settling its reservations.
    pub async fn finish(
        &self,
        decision_id: &str,
        end: CallEnd,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<IssuedReceipt, EnforceError> {
        self.finish_paid(decision_id, end, result_digest, started_at, None)
            .await
    }

    /// [`Enforcer::finish`] for a call a rail adapter paid: the receipt names the rail's
    /// reference when money moved. An `unknown` receipt leaves a rail payment's outcome open
    /// (the reservation kept), so reconciliation receipts it later
    /// ([`Enforcer::receipt_late_outcome`]); any other receipt closes it.
    pub async fn finish_paid(
        &self,
        decision_id: &str,
        end: CallEnd,
        result_digest: Option<Digest>,
        started_at: Timestamp,
        settlement: Option<Settlement>,
    ) -> Result<IssuedReceipt, EnforceError> {
        let (status, budget) = match end {
            CallEnd::Completed => (ExecutionStatus::Completed, BudgetSettlement::Capture),
            // The tool ran and said it failed: whether money moved is for reconciliation.
            CallEnd::ToolError => (ExecutionStatus::Failed, BudgetSettlement::Keep),
            CallEnd::ProtocolError => (ExecutionStatus::Failed, BudgetSettlement::Release),
            CallEnd::Unknown => (ExecutionStatus::Unknown, BudgetSettlement::Keep),
            CallEnd::NotForwarded => (ExecutionStatus::Denied, BudgetSettlement::Release),
        };
        let fingerprint = self
            .decision_fingerprint(decision_id)
            .await?
            .ok_or_else(|| EnforceError::Internal(format!("no decision {decision_id}")))?;
        let receipt_id = random_id("rcpt_")?;
        let completed_at = now()?;
        let key = Arc::clone(&self.key);
        let decision = decision_id.to_owned();
        let build: crate::store::EntryBuilder = Box::new(move |index| {
            let receipt = Receipt {
                object_type: ReceiptType::V1,
                receipt_id,
                decision_id: decision,
                fingerprint,
                status,
                result_digest,
                settlement,
                started_at,
                completed_at,
                log_index: SafeIndex::new(index).map_err(|err| err.to_string())?,
                composes: vec![],
            };
            jws::sign(&key, TYP_RECEIPT, &receipt)
                .map(String::into_bytes)
                .map_err(|err| err.to_string())
        });
        let (log_index, bytes) = self
            .store
            .commit_receipt(ReceiptCommit {
                decision_id: decision_id.to_owned(),
                settlement: budget,
                build,
                outcome_open: end == CallEnd::Unknown,
            })
            .await?;
        Ok(IssuedReceipt {
            receipt: String::from_utf8(bytes).map_err(internal)?,
            log_index,
        })
    }

    /// Receipts how a rail payment whose receipt left it open ended, once reconciliation (a
    /// late webhook, Circle, the chain) knows: a second `Receipt.v1` for the same decision,
    /// `completed` with the rail's reference (the reservation captured) or `failed` (released),
    /// composing the open receipt. At most one per decision, however many paths learn the
    /// outcome; `None` when there is nothing to receipt.
    pub async fn receipt_late_outcome(
        &self,
        decision_id: &str,
        outcome: LateOutcome,
        result_digest: Option<Digest>,
    ) -> Result<Option<IssuedReceipt>, EnforceError> {
        let receipt_id = random_id("rcpt_")?;
        let completed_at = now()?;
        let key = Arc::clone(&self.key);
        let decision = decision_id.to_owned();
        let status = match outcome {
            LateOutcome::Settled { .. } => ExecutionStatus::Completed,
            LateOutcome::Failed | LateOutcome::Abandoned => ExecutionStatus::Failed,
        };
        let build: crate::store::LateEntryBuilder = Box::new(move |entry| {
            let receipt = Receipt {
                object_type: ReceiptType::V1,
                receipt_id,
                decision_id: decision,
                fingerprint: entry.fingerprint,
                status,
                result_digest,
                settlement: entry.settlement,
                started_at: entry.forwarded_at.unwrap_or(completed_at),
                completed_at,
                log_index: SafeIndex::new(entry.index).map_err(|err| err.to_string())?,
                composes: entry.open_receipt.into_iter().collect(),
            };
            jws::sign(&key, TYP_RECEIPT, &receipt)
                .map(String::into_bytes)
                .map_err(|err| err.to_string())
        });
        let committed = self
            .store
            .commit_late_receipt(LateReceiptCommit {
                decision_id: decision_id.to_owned(),
                outcome,
                owner: self.run_id.clone(),
                build,
            })
            .await?;
        let Some((log_index, bytes)) = committed else {
            return Ok(None);
        };
        tracing::info!(%decision_id, log_index, ?status, "receipted a late payment outcome");
        Ok(Some(IssuedReceipt {
            receipt: String::from_utf8(bytes).map_err(internal)?,
            log_index,
        }))
    }

    async fn decision_fingerprint(
        &self,
        decision_id: &str,
    ) -> Result<Option<Digest>, EnforceError> {
        // Only decisions this daemon forwarded get receipts, once each: the relay cannot name a
        // fingerprint of its own.
        Ok(lock(&self.forwarded).remove(decision_id))
    }
}

/// The verdict a hold settles on, if it settles within `wait`.
async fn settled_within(
    receiver: &mut watch::Receiver<Option<Verdict>>,
    wait: Duration,
) -> Option<Verdict> {
    match tokio::time::timeout(wait, receiver.wait_for(Option::is_some)).await {
        Ok(Ok(verdict)) => verdict.clone(),
        _ => None,
    }
}

/// The request fingerprint of a call as the policy saw it (payment terms included when found).
fn fingerprint_of(call: &ToolCall, evaluation: &Evaluation) -> Result<Digest, EnforceError> {
    // Terms a rail adapter will sign are bound exactly; else the terms the policy read from the
    // arguments.
    if let Some(payment) = &call.payment {
        return call
            .fingerprint(Some(payment.terms.clone()))
            .and_then(|request| request.digest())
            .map_err(internal);
    }
    let terms = evaluation.payment.as_ref().map(|payment| PaymentTerms {
        scheme: "exact".into(),
        network: payment.network.clone(),
        asset: payment.asset.clone(),
        amount: Amount::from(payment.amount),
        pay_to: payment.payee.clone(),
        resource: format!("mcp://{}/{}", call.server, call.tool),
        payer: None,
        offer_digest: None,
    });
    call.fingerprint(terms)
        .and_then(|request| request.digest())
        .map_err(internal)
}

/// What a relay needs from the gateway: the daemon's [`Enforcer`] in-process, or the control
/// socket client in a stdio shim. Every error is a refusal for the relay (fail closed).
#[async_trait::async_trait]
pub trait Authority: Send + Sync + 'static {
    /// Decides one `tools/call`.
    async fn decide(&self, call: ToolCall) -> Result<Verdict, EnforceError>;
    /// Waits for a held call to resolve.
    async fn await_hold(&self, decision_id: &str) -> Result<Verdict, EnforceError>;
    /// Receipts a forwarded call.
    async fn finish(
        &self,
        decision_id: &str,
        end: CallEnd,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<IssuedReceipt, EnforceError>;
    /// Records a `tools/list` result (`more`: it has a `nextCursor`).
    async fn observe_tools(
        &self,
        server: &str,
        tools: &[Value],
        more: bool,
    ) -> Result<Vec<pins::Observed>, EnforceError>;
    /// Drops a held call the host cancelled.
    async fn cancel_hold(&self, decision_id: &str) -> Result<(), EnforceError>;
    /// The host's user answered an elicitation about a held call.
    async fn host_answer(
        &self,
        decision_id: &str,
        approve: bool,
    ) -> Result<ApprovalOutcome, EnforceError>;
    /// An MCP tool answered `call` with an x402 payment request (`result`, the tool result):
    /// decide and sign the payment ([`Enforcer::authorize_payment`]).
    async fn pay(&self, call: ToolCall, result: Value)
    -> Result<pay::PaymentVerdict, EnforceError>;
    /// Records how a paid retry ended and receipts it ([`Enforcer::conclude_payment`]).
    async fn conclude_payment(
        &self,
        decision_id: &str,
        outcome: pay::PaidOutcome,
        served: bool,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<pay::ConcludedPayment, EnforceError>;
}

#[async_trait::async_trait]
impl Authority for Enforcer {
    async fn decide(&self, call: ToolCall) -> Result<Verdict, EnforceError> {
        Enforcer::decide(self, call).await
    }
    async fn await_hold(&self, decision_id: &str) -> Result<Verdict, EnforceError> {
        Enforcer::await_hold(self, decision_id).await
    }
    async fn finish(
        &self,
        decision_id: &str,
        end: CallEnd,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<IssuedReceipt, EnforceError> {
        Enforcer::finish(self, decision_id, end, result_digest, started_at).await
    }
    async fn observe_tools(
        &self,
        server: &str,
        tools: &[Value],
        more: bool,
    ) -> Result<Vec<pins::Observed>, EnforceError> {
        Enforcer::observe_tools(self, server, tools, more).await
    }
    async fn cancel_hold(&self, decision_id: &str) -> Result<(), EnforceError> {
        Enforcer::cancel_hold(self, decision_id).await
    }
    async fn host_answer(
        &self,
        decision_id: &str,
        approve: bool,
    ) -> Result<ApprovalOutcome, EnforceError> {
        Enforcer::host_answer(self, decision_id, approve).await
    }
    async fn pay(
        &self,
        call: ToolCall,
        result: Value,
    ) -> Result<pay::PaymentVerdict, EnforceError> {
        Enforcer::authorize_mcp_payment(self, call, &result).await
    }
    async fn conclude_payment(
        &self,
        decision_id: &str,
        outcome: pay::PaidOutcome,
        served: bool,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<pay::ConcludedPayment, EnforceError> {
        Enforcer::conclude_payment(
            self,
            decision_id,
            outcome,
            served,
            result_digest,
            started_at,
        )
        .await
    }
}
