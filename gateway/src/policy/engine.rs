//! Deciding one call: classify it, gather its facts and the store's aggregates into a Cedar
//! request, ask Cedar, and turn the answer into an outcome with reason codes.
//!
//! Fail closed: a call no route classifies is denied (`TOOL_UNCLASSIFIED`), and any Cedar
//! evaluation error is a deny (`POLICY_EVALUATION_ERROR`) even though Cedar itself would skip
//! the erroring `forbid`.

use std::collections::{BTreeMap, BTreeSet};

use cedar_policy::{Authorizer, Context, Decision, Request, RestrictedExpression};
use serde_json::Value;
use trustos_kernel::canonical::Digest;
use trustos_kernel::objects::{Amount, BudgetReservation, Outcome};
use trustos_kernel::timestamp::Timestamp;

use super::compile::{CedarNames, Compiled};
use super::glob;
use super::profile::{BudgetScope, Mode, Risk, RouteRule, VelocityScope, WindowKind};
use crate::store::{BudgetCharge, BudgetWindow, Store, StoreError};

/// Id of the route entity for calls no profile route matches.
pub const UNCLASSIFIED_ROUTE: &str = "(unclassified)";

/// What is being called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// An MCP `tools/call`.
    Mcp {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
    },
    /// An HTTP request.
    Http {
        /// Upper-case method.
        method: String,
        /// Lower-case host.
        host: String,
        /// Normalized path.
        path: String,
    },
}

/// Money terms of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentFacts {
    /// Amount in base units.
    pub amount: u128,
    /// Asset.
    pub asset: String,
    /// Payee.
    pub payee: String,
    /// CAIP-2 network.
    pub network: String,
}

/// One call to decide.
#[derive(Clone, Debug)]
pub struct Intent {
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Session, when the transport has one.
    pub session: Option<String>,
    /// The call.
    pub call: Call,
    /// Its arguments (MCP) or body (HTTP), already read strictly.
    pub arguments: Value,
    /// Explicit payment terms (x402), which take precedence over the route's pointers.
    pub payment: Option<PaymentFacts>,
}

/// The store's aggregates for this call, keyed by budget and velocity id.
#[derive(Clone, Debug, Default)]
pub struct State {
    /// Reserved plus captured in each budget's window, for this call's budget key.
    pub spent: BTreeMap<String, u128>,
    /// Calls already in each velocity window, for this call's key.
    pub calls: BTreeMap<String, u64>,
    /// Payees this agent has paid before.
    pub known_payees: BTreeSet<String>,
}

/// A budget amount the decision would reserve, for the store's atomic commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Charge {
    /// Budget id in the profile.
    pub budget_id: String,
    /// Store key: the budget id and whose spending it counts.
    pub budget_key: String,
    /// Window.
    pub window: BudgetWindow,
    /// Asset.
    pub asset: String,
    /// Amount.
    pub amount: u128,
    /// Limit.
    pub limit: u128,
}

/// The decision for one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evaluation {
    /// What the policy decided.
    pub outcome: Outcome,
    /// The enforcement mode of the call's risk class.
    pub mode: Mode,
    /// What the gateway enforces: the outcome, except `allow` in shadow mode.
    pub enforced: Outcome,
    /// Reason codes, sorted.
    pub reasons: Vec<String>,
    /// Ids of the policies that determined the outcome, sorted.
    pub policies: Vec<String>,
    /// The route that classified the call.
    pub route: Option<String>,
    /// Its risk class (`high` when unclassified).
    pub risk: Risk,
    /// The payment facts used.
    pub payment: Option<PaymentFacts>,
    /// Budget amounts to reserve when the outcome is allow.
    pub charges: Vec<Charge>,
    /// SHA-256 of the compiled profile that decided.
    pub profile_fingerprint: Digest,
}

impl Evaluation {
    /// The signed form of the charges: one reservation per budget, with its window's bounds at
    /// `issued_at`.
    pub fn reservations(&self, issued_at: Timestamp) -> Vec<BudgetReservation> {
        self.charges
            .iter()
            .map(|charge| {
                let (window_start, window_end) = charge.window.bounds(issued_at);
                BudgetReservation {
                    budget_key: charge.budget_key.clone(),
                    asset: charge.asset.clone(),
                    amount: Amount::from(charge.amount),
                    window_start,
                    window_end,
                }
            })
            .collect()
    }

    /// The charges as the store's atomic commit takes them.
    pub fn budget_charges(&self) -> Vec<BudgetCharge> {
        self.charges
            .iter()
            .map(|charge| BudgetCharge {
                budget_key: charge.budget_key.clone(),
                window: charge.window,
                amount: charge.amount,
                limit: charge.limit,
            })
            .collect()
    }
}

/// Decides `intent` with the store's budget totals: a first pass finds the budgets the call
/// counts against (with nothing spent, every applicable budget shows up as a charge, unless
/// another rule already denies and the totals cannot change the outcome), the store reports
/// what each has spent, the second pass decides with that.
pub async fn decide_with_store<S: Store + ?Sized>(
    compiled: &Compiled,
    store: &S,
    intent: &Intent,
    at: Timestamp,
) -> Result<Evaluation, StoreError> {
    let probe = compiled.evaluate(intent, &State::default(), at);
    let mut state = State::default();
    for charge in &probe.charges {
        let usage = store
            .budget_usage(&charge.budget_key, charge.window, at)
            .await?;
        state.spent.insert(
            charge.budget_id.clone(),
            usage.reserved.saturating_add(usage.captured),
        );
    }
    Ok(compiled.evaluate(intent, &state, at))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn day_number(date: &str) -> Option<i64> {
    let mut parts = date.split('-');
    let year = parts.next()?.parse().ok()?;
    let month = parts.next()?.parse().ok()?;
    let day = parts.next()?.parse().ok()?;
    let stamp = Timestamp::from_utc_date(year, month, day).ok()?;
    i64::try_from(stamp.unix_millis() / 86_400_000).ok()
}

/// The store window of a profile window.
pub fn store_window(window: WindowKind, rolling_seconds: Option<u64>) -> BudgetWindow {
    match window {
        WindowKind::Hour => BudgetWindow::Hour,
        WindowKind::Day => BudgetWindow::Day,
        WindowKind::Month => BudgetWindow::Month,
        WindowKind::Rolling => BudgetWindow::Rolling {
            millis: rolling_seconds.unwrap_or(0).saturating_mul(1000),
        },
    }
}

fn classify<'p>(routes: &'p [RouteRule], call: &Call) -> Option<&'p RouteRule> {
    routes
        .iter()
        .find(|route| match (call, &route.mcp, &route.http) {
            (Call::Mcp { server, tool }, Some(pattern), _) => {
                glob::matches(&pattern.server, server) && glob::matches(&pattern.tool, tool)
            }
            (Call::Http { method, host, path }, _, Some(pattern)) => {
                (pattern.methods.is_empty() || pattern.methods.contains(method))
                    && glob::matches(&pattern.host, host)
                    && glob::matches(&pattern.path, path)
            }
            _ => false,
        })
}

fn pointer_text(arguments: &Value, pointer: Option<&String>) -> Option<String> {
    match arguments.pointer(pointer?)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Payment facts from explicit terms, else from the route's pointers.
fn payment_facts(route: Option<&RouteRule>, intent: &Intent) -> Option<PaymentFacts> {
    if let Some(payment) = &intent.payment {
        return Some(PaymentFacts {
            payee: normalize_payee(&payment.payee),
            ..payment.clone()
        });
    }
    let pointers = route?.payment.as_ref()?;
    let amount_text = pointer_text(&intent.arguments, Some(&pointers.amount))?;
    // Integer base units only: digits, no sign, no fraction, no exponent.
    if amount_text.is_empty() || !amount_text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let amount = amount_text.parse().ok()?;
    Some(PaymentFacts {
        amount,
        asset: pointer_text(&intent.arguments, pointers.asset.as_ref())
            .or_else(|| pointers.default_asset.clone())
            .unwrap_or_default(),
        payee: normalize_payee(
            &pointer_text(&intent.arguments, pointers.payee.as_ref()).unwrap_or_default(),
        ),
        network: pointer_text(&intent.arguments, pointers.network.as_ref())
            .or_else(|| pointers.default_network.clone())
            .unwrap_or_default(),
    })
}

/// The one spelling of a payee that profiles and calls are compared in: an EVM address
/// (`0x` and 40 hex digits) in lower case, so that an EIP-55 checksummed or upper-case spelling
/// of a denied address is still denied; anything else exactly as written.
pub fn normalize_payee(payee: &str) -> String {
    let hex = payee
        .strip_prefix("0x")
        .or_else(|| payee.strip_prefix("0X"));
    match hex {
        Some(digits) if digits.len() == 40 && digits.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("0x{}", digits.to_ascii_lowercase())
        }
        _ => payee.to_owned(),
    }
}

fn to_long(value: u128) -> Option<i64> {
    i64::try_from(value).ok()
}

impl Compiled {
    /// The route that classifies `call` (the first match), if any.
    pub fn classify(&self, call: &Call) -> Option<&RouteRule> {
        classify(&self.profile.routes, call)
    }

    /// Decides `intent` at `now` given the store's `state`.
    pub fn evaluate(&self, intent: &Intent, state: &State, now: Timestamp) -> Evaluation {
        self.evaluate_checked(intent, state, now, false)
    }

    /// As [`evaluate`](Self::evaluate); with `check_request`, the Cedar request is also
    /// validated against the profile's schema (tests do this for every simulation case; the hot
    /// path builds requests that conform by construction).
    pub fn evaluate_checked(
        &self,
        intent: &Intent,
        state: &State,
        now: Timestamp,
        check_request: bool,
    ) -> Evaluation {
        let profile = &self.profile;
        let route = classify(&profile.routes, &intent.call);
        let risk = route.map_or(Risk::High, |route| route.risk);
        let mode = match risk {
            Risk::Low => profile.defaults.mode.low,
            Risk::High => profile.defaults.mode.high,
            Risk::Paid => profile.defaults.mode.paid,
        };
        let mut payment = payment_facts(route, intent);
        // An amount Cedar cannot hold is no usable amount.
        if payment
            .as_ref()
            .is_some_and(|p| to_long(p.amount).is_none())
        {
            payment = None;
        }
        let finish = |outcome: Outcome, reasons: Vec<String>, policies: Vec<String>, charges| {
            let enforced = if mode == Mode::Shadow {
                Outcome::Allow
            } else {
                outcome
            };
            Evaluation {
                outcome,
                mode,
                enforced,
                reasons,
                policies,
                route: route.map(|route| route.id.clone()),
                risk,
                payment: payment.clone(),
                charges,
                profile_fingerprint: self.fingerprint,
            }
        };
        let Some(route) = route else {
            return finish(
                Outcome::Deny,
                vec!["TOOL_UNCLASSIFIED".into()],
                vec!["trustos.route.unclassified".into()],
                Vec::new(),
            );
        };

        let subject = profile
            .subjects
            .iter()
            .find(|s| s.tenant == intent.tenant && s.agent == intent.agent);
        let session_allowed = subject.is_none_or(|subject| {
            subject.sessions.is_empty()
                || intent.session.as_deref().is_some_and(|session| {
                    subject.sessions.iter().any(|g| glob::matches(g, session))
                })
        });

        // Budgets and velocity that apply to this call, with the store keys they count under.
        let mut charges = Vec::new();
        let mut budgets = Vec::new();
        for budget in &profile.budgets {
            let applies = payment.as_ref().is_some_and(|p| p.asset == budget.asset);
            let spent = state.spent.get(&budget.id).copied().unwrap_or(0);
            if applies && let Some(p) = &payment {
                let whose = match budget.scope {
                    BudgetScope::Agent => format!("agent:{}/{}", intent.tenant, intent.agent),
                    BudgetScope::Tenant => format!("tenant:{}", intent.tenant),
                    BudgetScope::Payee => format!("payee:{}", p.payee),
                };
                charges.push(Charge {
                    budget_id: budget.id.clone(),
                    budget_key: format!("{}@{whose}", budget.id),
                    window: store_window(budget.window, budget.rolling_seconds),
                    asset: budget.asset.clone(),
                    amount: p.amount,
                    limit: budget.limit.parse().unwrap_or(0),
                });
            }
            // A spent total Cedar cannot hold is over every limit: fail closed by saturating.
            let spent = to_long(spent).unwrap_or(i64::MAX);
            budgets.push((
                budget.id.clone(),
                RestrictedExpression::new_record([
                    (
                        "applies".to_owned(),
                        RestrictedExpression::new_bool(applies),
                    ),
                    ("spent".to_owned(), RestrictedExpression::new_long(spent)),
                ]),
            ));
        }
        let mut velocity = Vec::new();
        for limit in &profile.velocity {
            let applies = match limit.per {
                VelocityScope::Tool => true,
                VelocityScope::Payee => payment.is_some(),
            };
            let calls = state.calls.get(&limit.id).copied().unwrap_or(0);
            velocity.push((
                limit.id.clone(),
                RestrictedExpression::new_record([
                    (
                        "applies".to_owned(),
                        RestrictedExpression::new_bool(applies),
                    ),
                    (
                        "calls".to_owned(),
                        RestrictedExpression::new_long(i64::try_from(calls).unwrap_or(i64::MAX)),
                    ),
                ]),
            ));
        }

        let millis = now.unix_millis();
        let days = millis / 86_400_000;
        let minute_of_day = (millis % 86_400_000) / 60_000;
        // 1970-01-01 was a Thursday (ISO 4).
        let weekday = (days + 3) % 7 + 1;
        let (server, tool, method, host, path) = match &intent.call {
            Call::Mcp { server, tool } => (
                server.clone(),
                tool.clone(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Call::Http { method, host, path } => (
                String::new(),
                String::new(),
                method.clone(),
                host.clone(),
                path.clone(),
            ),
        };
        let facts = payment.clone().unwrap_or(PaymentFacts {
            amount: 0,
            asset: String::new(),
            payee: String::new(),
            network: String::new(),
        });
        let asset_configured = profile
            .amounts
            .iter()
            .any(|bounds| bounds.asset == facts.asset);
        let text = |value: String| RestrictedExpression::new_string(value);
        let number =
            |value: u64| RestrictedExpression::new_long(i64::try_from(value).unwrap_or(i64::MAX));
        let names = &self.names;
        let principal = CedarNames::uid(&names.agent, &intent.agent);
        let action = names.call.clone();
        let resource = CedarNames::uid(&names.route, &route.id);
        let asset_uid = CedarNames::uid(&names.asset, &facts.asset);
        let record = |fields: Vec<(String, Result<RestrictedExpression, _>)>| {
            fields
                .into_iter()
                .map(|(id, record)| record.map(|record| (id, record)))
                .collect::<Result<Vec<_>, _>>()
                .and_then(RestrictedExpression::new_record)
        };
        let request = record(budgets)
            .and_then(|budgets| record(velocity).map(|velocity| (budgets, velocity)))
            .map_err(|err| err.to_string())
            .and_then(|(budgets, velocity)| {
                Context::from_pairs([
                    (
                        "known".to_owned(),
                        RestrictedExpression::new_bool(subject.is_some()),
                    ),
                    (
                        "sessionAllowed".to_owned(),
                        RestrictedExpression::new_bool(session_allowed),
                    ),
                    (
                        "payment".to_owned(),
                        RestrictedExpression::new_bool(payment.is_some()),
                    ),
                    (
                        "amount".to_owned(),
                        RestrictedExpression::new_long(to_long(facts.amount).unwrap_or(0)),
                    ),
                    ("asset".to_owned(), text(facts.asset.clone())),
                    ("payee".to_owned(), text(facts.payee.clone())),
                    ("network".to_owned(), text(facts.network.clone())),
                    (
                        "payeeKnown".to_owned(),
                        RestrictedExpression::new_bool(
                            state.known_payees.contains(&facts.payee)
                                || state
                                    .known_payees
                                    .iter()
                                    .any(|known| normalize_payee(known) == facts.payee),
                        ),
                    ),
                    ("minuteOfDay".to_owned(), number(minute_of_day)),
                    ("weekday".to_owned(), number(weekday)),
                    ("day".to_owned(), number(days)),
                    ("tenant".to_owned(), text(intent.tenant.clone())),
                    ("agent".to_owned(), text(intent.agent.clone())),
                    ("server".to_owned(), text(server)),
                    ("tool".to_owned(), text(tool)),
                    ("method".to_owned(), text(method)),
                    ("host".to_owned(), text(host)),
                    ("path".to_owned(), text(path)),
                    (
                        "assetConfigured".to_owned(),
                        RestrictedExpression::new_bool(asset_configured),
                    ),
                    (
                        "assetLimits".to_owned(),
                        RestrictedExpression::new_entity_uid(asset_uid),
                    ),
                    ("budgets".to_owned(), budgets),
                    ("velocity".to_owned(), velocity),
                ])
                .map_err(|err| err.to_string())
            })
            .and_then(|context| {
                let schema = check_request.then_some(&self.schema);
                Request::new(principal, action, resource, context, schema)
                    .map_err(|err| err.to_string())
            });
        let Ok(request) = request else {
            return finish(
                Outcome::Deny,
                vec!["POLICY_EVALUATION_ERROR".into()],
                Vec::new(),
                Vec::new(),
            );
        };
        let policies = if risk == Risk::Low {
            &self.low_risk
        } else {
            &self.guarded
        };
        let response = Authorizer::new().is_authorized(&request, policies, &self.entities);
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        let errored: Vec<String> = response
            .diagnostics()
            .errors()
            .map(|err| match err {
                cedar_policy::AuthorizationError::PolicyEvaluationError(err) => {
                    err.policy_id().to_string()
                }
            })
            .collect();
        if !errored.is_empty() {
            // Cedar skips a forbid whose evaluation errors; Trust OS denies instead.
            policies.extend(errored);
            policies.sort();
            policies.dedup();
            return finish(
                Outcome::Deny,
                vec!["POLICY_EVALUATION_ERROR".into()],
                policies,
                Vec::new(),
            );
        }
        policies.sort();
        let mut reasons: Vec<String> = policies
            .iter()
            .map(|id| {
                self.annotations
                    .get(id)
                    .map_or_else(|| "NOT_PERMITTED".to_owned(), |(reason, _)| reason.clone())
            })
            .collect();
        reasons.sort();
        reasons.dedup();
        match response.decision() {
            Decision::Allow => finish(Outcome::Allow, reasons, policies, charges),
            Decision::Deny if policies.is_empty() => finish(
                Outcome::Deny,
                vec!["NOT_PERMITTED".into()],
                Vec::new(),
                Vec::new(),
            ),
            Decision::Deny => {
                let only_challenges = policies.iter().all(|id| {
                    self.annotations
                        .get(id)
                        .is_some_and(|(_, challenge)| *challenge)
                });
                let outcome = if only_challenges {
                    Outcome::Challenge
                } else {
                    Outcome::Deny
                };
                let charges = if outcome == Outcome::Challenge {
                    charges
                } else {
                    Vec::new()
                };
                finish(outcome, reasons, policies, charges)
            }
        }
    }
}
