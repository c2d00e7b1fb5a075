//! Compiling a profile to Cedar: a schema, a fixed policy library, one generated policy per
//! budget and velocity limit, the profile's limits as entity attributes, and the custom policies
//! validated strictly against the same schema.
//!
//! Cedar semantics give the rest: deny overrides, default deny. A challenge is a `forbid`
//! annotated `@challenge("true")`; every `forbid` names its reason code in `@reason`.

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{
    Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet,
    RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde_json::json;
use trustos_kernel::canonical::Digest;

use super::load::{Issue, LoadedProfile};
use super::profile::{FirstTime, Profile, UnknownAgent, WindowKind};
use super::reasons;

/// The fixed part of the Cedar schema; `{BUDGETS}` and `{VELOCITY}` become record types.
const SCHEMA_TEMPLATE: &str = r#"
entity Tenant;
entity Agent in [Tenant];
entity Route = { risk: String, anyAgent: Bool, agents: Set<Agent> };
entity Asset = { hasMin: Bool, min: Long, hasMax: Bool, max: Long };
entity Budget = { limit: Long };
entity Velocity = { maxCalls: Long };
entity Limits = {
  assetAllowAll: Bool, assetAllow: Set<String>, assetDeny: Set<String>,
  networkAllowAll: Bool, networkAllow: Set<String>, networkDeny: Set<String>,
  payeeAllowAll: Bool, payeeAllow: Set<String>, payeeDeny: Set<String>,
  hasHours: Bool, overnight: Bool, fromMinute: Long, untilMinute: Long,
  hasWeekdays: Bool, weekdays: Set<Long>,
  hasValidFrom: Bool, validFromDay: Long, hasValidUntil: Bool, validUntilDay: Long,
  hasChallengeAbove: Bool, challengeAbove: Long
};
action call appliesTo {
  principal: [Agent],
  resource: [Route],
  context: {
    known: Bool, sessionAllowed: Bool,
    payment: Bool, amount: Long, asset: String, payee: String, network: String, payeeKnown: Bool,
    minuteOfDay: Long, weekday: Long, day: Long,
    tenant: String, agent: String, server: String, tool: String, method: String, host: String, path: String,
    assetConfigured: Bool, assetLimits: Asset,
    budgets: {BUDGETS},
    velocity: {VELOCITY}
  }
};
"#;

/// A library policy: id, reason code, whether it challenges, Cedar text (without annotations).
type LibraryPolicy = (&'static str, &'static str, bool, &'static str);

/// The fixed policy library. Apart from the low-risk permit, these are evaluated for high and
/// paid routes only (see [`Compiled::guarded`]).
const LIBRARY: &[LibraryPolicy] = &[
    (
        "trustos.permit.low-risk",
        "ROUTE_LOW_RISK",
        false,
        r#"permit (principal, action == Action::"call", resource) when { resource.risk == "low" };"#,
    ),
    (
        "trustos.permit.known-agent",
        "WITHIN_POLICY",
        false,
        r#"permit (principal, action == Action::"call", resource) when { context.known && (resource.anyAgent || resource.agents.contains(principal)) };"#,
    ),
    (
        "trustos.agent.not-on-route",
        "AGENT_NOT_ALLOWED_ON_ROUTE",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { !(resource.anyAgent || resource.agents.contains(principal)) };"#,
    ),
    (
        "trustos.agent.session",
        "SESSION_NOT_ALLOWED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.known && !context.sessionAllowed };"#,
    ),
    (
        "trustos.payment.missing",
        "PAYMENT_TERMS_MISSING",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { resource.risk == "paid" && !context.payment };"#,
    ),
    (
        "trustos.amount.minimum",
        "AMOUNT_BELOW_MINIMUM",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && context.assetConfigured && context.assetLimits.hasMin && context.amount < context.assetLimits.min };"#,
    ),
    (
        "trustos.amount.maximum",
        "AMOUNT_ABOVE_MAXIMUM",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && context.assetConfigured && context.assetLimits.hasMax && context.amount > context.assetLimits.max };"#,
    ),
    (
        "trustos.asset.denied",
        "ASSET_DENIED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && Limits::"profile".assetDeny.contains(context.asset) };"#,
    ),
    (
        "trustos.asset.not-allowed",
        "ASSET_NOT_ALLOWED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && !Limits::"profile".assetAllowAll && !Limits::"profile".assetAllow.contains(context.asset) };"#,
    ),
    (
        "trustos.network.denied",
        "NETWORK_DENIED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && Limits::"profile".networkDeny.contains(context.network) };"#,
    ),
    (
        "trustos.network.not-allowed",
        "NETWORK_NOT_ALLOWED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && !Limits::"profile".networkAllowAll && !Limits::"profile".networkAllow.contains(context.network) };"#,
    ),
    (
        "trustos.payee.denied",
        "PAYEE_DENIED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && Limits::"profile".payeeDeny.contains(context.payee) };"#,
    ),
    (
        "trustos.payee.not-allowed",
        "PAYEE_NOT_ALLOWED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && !Limits::"profile".payeeAllowAll && !Limits::"profile".payeeAllow.contains(context.payee) };"#,
    ),
    (
        "trustos.schedule.hours",
        "OUTSIDE_HOURS",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { Limits::"profile".hasHours && (if Limits::"profile".overnight then (context.minuteOfDay < Limits::"profile".fromMinute && context.minuteOfDay >= Limits::"profile".untilMinute) else (context.minuteOfDay < Limits::"profile".fromMinute || context.minuteOfDay >= Limits::"profile".untilMinute)) };"#,
    ),
    (
        "trustos.schedule.weekday",
        "WEEKDAY_NOT_ALLOWED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { Limits::"profile".hasWeekdays && !Limits::"profile".weekdays.contains(context.weekday) };"#,
    ),
    (
        "trustos.schedule.not-yet-valid",
        "PROFILE_NOT_YET_VALID",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { Limits::"profile".hasValidFrom && context.day < Limits::"profile".validFromDay };"#,
    ),
    (
        "trustos.schedule.expired",
        "PROFILE_EXPIRED",
        false,
        r#"forbid (principal, action == Action::"call", resource) when { Limits::"profile".hasValidUntil && context.day > Limits::"profile".validUntilDay };"#,
    ),
    (
        "trustos.challenge.amount",
        "AMOUNT_NEEDS_APPROVAL",
        true,
        r#"forbid (principal, action == Action::"call", resource) when { context.payment && Limits::"profile".hasChallengeAbove && context.amount > Limits::"profile".challengeAbove };"#,
    ),
];

const UNKNOWN_AGENT: &str =
    r#"forbid (principal, action == Action::"call", resource) when { !context.known };"#;
const FIRST_TIME_PAYEE: &str = r#"forbid (principal, action == Action::"call", resource) when { context.payment && !context.payeeKnown };"#;

/// The entity type names and the action a request is built from.
pub struct CedarNames {
    /// `Agent`.
    pub agent: EntityTypeName,
    /// `Route`.
    pub route: EntityTypeName,
    /// `Asset`.
    pub asset: EntityTypeName,
    /// `Action::"call"`.
    pub call: EntityUid,
}

impl CedarNames {
    fn parse() -> Result<Self, String> {
        let name = |text: &str| EntityTypeName::from_str(text).map_err(|err| err.to_string());
        Ok(Self {
            agent: name("Agent")?,
            route: name("Route")?,
            asset: name("Asset")?,
            call: uid("Action", "call")?,
        })
    }

    /// The uid of an entity of type `type_name` with id `id`.
    pub fn uid(type_name: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
    }
}

/// A profile compiled to Cedar, ready to evaluate.
pub struct Compiled {
    /// The checked profile.
    pub profile: Profile,
    /// The Cedar schema text.
    pub schema_text: String,
    /// The schema.
    pub schema: Schema,
    /// Every policy (validated together).
    pub policies: PolicySet,
    /// What decides low-risk calls: the low-risk permit and the custom policies.
    pub low_risk: PolicySet,
    /// What decides high and paid calls: everything but the low-risk permit.
    pub guarded: PolicySet,
    /// Policy id → (reason code, challenges).
    pub annotations: BTreeMap<String, (String, bool)>,
    /// Limits as entities.
    pub entities: Entities,
    /// Entity type names and the action, parsed once for every decision to reuse.
    pub names: CedarNames,
    /// SHA-256 of the canonical compiled profile.
    pub fingerprint: Digest,
}

fn issue(loaded: &LoadedProfile, file: Option<&str>, line: usize, message: String) -> Issue {
    Issue {
        file: match file {
            Some(name) => loaded
                .path
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(name),
            None => loaded.path.clone(),
        },
        line,
        column: 1,
        field: String::new(),
        message,
    }
}

/// The Cedar name of a budget or velocity record attribute.
fn quoted(id: &str) -> String {
    format!("\"{id}\"")
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|err| err.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

fn amount(text: &Option<String>) -> i64 {
    text.as_deref()
        .and_then(|text| text.parse().ok())
        .unwrap_or(0)
}

/// `HH:MM` → minute of the day.
fn minute_of_day(text: &str) -> i64 {
    let mut parts = text.split(':').map(|part| part.parse::<i64>().unwrap_or(0));
    let hours = parts.next().unwrap_or(0);
    let minutes = parts.next().unwrap_or(0);
    hours * 60 + minutes
}

/// A set of payees in the spelling calls are compared in ([`super::engine::normalize_payee`]).
fn payee_set(values: &[String]) -> RestrictedExpression {
    let normalized: Vec<String> = values
        .iter()
        .map(|payee| super::engine::normalize_payee(payee))
        .collect();
    string_set(&normalized)
}

fn string_set(values: &[String]) -> RestrictedExpression {
    let mut sorted: Vec<&String> = values.iter().collect();
    sorted.sort();
    sorted.dedup();
    RestrictedExpression::new_set(
        sorted
            .into_iter()
            .map(|value| RestrictedExpression::new_string(value.clone())),
    )
}

fn budget_reason(window: WindowKind) -> &'static str {
    match window {
        WindowKind::Hour => "BUDGET_HOURLY_EXCEEDED",
        WindowKind::Day => "BUDGET_DAILY_EXCEEDED",
        WindowKind::Month => "BUDGET_MONTHLY_EXCEEDED",
        WindowKind::Rolling => "BUDGET_ROLLING_EXCEEDED",
    }
}

/// Whether a library policy can ever be satisfied under this profile. Policies that cannot are
/// left out of the compiled set: same decisions, less to evaluate per call.
fn can_fire(profile: &Profile, id: &str) -> bool {
    let schedule = profile.schedule.as_ref();
    match id {
        "trustos.agent.not-on-route" => profile.routes.iter().any(|route| !route.agents.is_empty()),
        "trustos.agent.session" => profile.subjects.iter().any(|s| !s.sessions.is_empty()),
        "trustos.payment.missing" => profile
            .routes
            .iter()
            .any(|r| r.risk == super::profile::Risk::Paid),
        "trustos.amount.minimum" => profile.amounts.iter().any(|bounds| bounds.min.is_some()),
        "trustos.amount.maximum" => profile.amounts.iter().any(|bounds| bounds.max.is_some()),
        "trustos.asset.denied" => !profile.assets.deny.is_empty(),
        "trustos.asset.not-allowed" => profile.assets.allow.is_some(),
        "trustos.network.denied" => !profile.networks.deny.is_empty(),
        "trustos.network.not-allowed" => profile.networks.allow.is_some(),
        "trustos.payee.denied" => !profile.payees.deny.is_empty(),
        "trustos.payee.not-allowed" => profile.payees.allow.is_some(),
        "trustos.schedule.hours" => schedule.is_some_and(|s| s.from.is_some()),
        "trustos.schedule.weekday" => schedule.is_some_and(|s| s.weekdays.is_some()),
        "trustos.schedule.not-yet-valid" => schedule.is_some_and(|s| s.valid_from.is_some()),
        "trustos.schedule.expired" => schedule.is_some_and(|s| s.valid_until.is_some()),
        "trustos.challenge.amount" => profile
            .challenge
            .as_ref()
            .is_some_and(|challenge| challenge.above.is_some()),
        _ => true,
    }
}

/// Compiles a loaded profile; any problem (including Cedar validation) is a located issue.
pub fn compile(loaded: &LoadedProfile) -> Result<Compiled, Vec<Issue>> {
    let profile = &loaded.profile;
    let fail = |message: String| vec![issue(loaded, None, 1, message)];

    // Schema.
    let mut budget_ids: Vec<&str> = profile.budgets.iter().map(|b| b.id.as_str()).collect();
    budget_ids.sort();
    let mut velocity_ids: Vec<&str> = profile.velocity.iter().map(|v| v.id.as_str()).collect();
    velocity_ids.sort();
    let record = |ids: &[&str], fields: &str| {
        let members: Vec<String> = ids
            .iter()
            .map(|id| format!("{}: {{ {fields} }}", quoted(id)))
            .collect();
        format!("{{ {} }}", members.join(", "))
    };
    let schema_text = SCHEMA_TEMPLATE
        .replace(
            "{BUDGETS}",
            &record(&budget_ids, "applies: Bool, spent: Long"),
        )
        .replace(
            "{VELOCITY}",
            &record(&velocity_ids, "applies: Bool, calls: Long"),
        );
    let (schema, _warnings) = Schema::from_cedarschema_str(&schema_text)
        .map_err(|err| fail(format!("internal Cedar schema: {err}")))?;

    // Policies.
    let mut texts: Vec<(String, String)> = Vec::new();
    let mut annotations = BTreeMap::new();
    let mut add = |id: String, reason: &str, challenge: bool, body: String| {
        annotations.insert(id.clone(), (reason.to_owned(), challenge));
        texts.push((id, body));
    };
    for (id, reason, challenge, body) in LIBRARY {
        if can_fire(profile, id) {
            add((*id).to_owned(), reason, *challenge, (*body).to_owned());
        }
    }
    add(
        "trustos.agent.unknown".into(),
        "AGENT_UNKNOWN",
        profile.defaults.unknown_agent == UnknownAgent::Challenge,
        UNKNOWN_AGENT.into(),
    );
    if profile.payees.first_time != FirstTime::Allow {
        add(
            "trustos.payee.first-time".into(),
            "PAYEE_FIRST_TIME",
            profile.payees.first_time == FirstTime::Challenge,
            FIRST_TIME_PAYEE.into(),
        );
    }
    for budget in &profile.budgets {
        let key = quoted(&budget.id);
        add(
            format!("trustos.budget.{}", budget.id),
            budget_reason(budget.window),
            false,
            format!(
                r#"forbid (principal, action == Action::"call", resource) when {{ context.payment && context.budgets[{key}].applies && context.budgets[{key}].spent + context.amount > Budget::{key}.limit }};"#
            ),
        );
    }
    for velocity in &profile.velocity {
        let key = quoted(&velocity.id);
        add(
            format!("trustos.velocity.{}", velocity.id),
            "VELOCITY_EXCEEDED",
            false,
            format!(
                r#"forbid (principal, action == Action::"call", resource) when {{ context.velocity[{key}].applies && context.velocity[{key}].calls + 1 > Velocity::{key}.maxCalls }};"#
            ),
        );
    }
    let mut policies = PolicySet::new();
    for (id, body) in &texts {
        let policy = Policy::parse(Some(PolicyId::new(id)), body)
            .map_err(|err| fail(format!("internal policy {id}: {err}")))?;
        policies
            .add(policy)
            .map_err(|err| fail(format!("internal policy {id}: {err}")))?;
    }
    let mut issues = Vec::new();
    let mut custom_texts = Vec::new();
    for (name, text) in &loaded.cedar_files {
        match PolicySet::from_str(text) {
            Err(err) => issues.push(issue(
                loaded,
                Some(name),
                cedar_line(text, &err),
                format!("Cedar: {err}"),
            )),
            Ok(set) => {
                for (position, policy) in set.policies().enumerate() {
                    let id = format!("custom.{name}.{position}");
                    let effect_forbid = policy.effect() == cedar_policy::Effect::Forbid;
                    let reason = policy.annotation("reason").unwrap_or(if effect_forbid {
                        "CUSTOM_POLICY_DENIED"
                    } else {
                        "WITHIN_POLICY"
                    });
                    if effect_forbid
                        && reason != "CUSTOM_POLICY_DENIED"
                        && !reasons::is_custom_code(reason)
                    {
                        issues.push(issue(
                            loaded,
                            Some(name),
                            policy_line(text, position),
                            format!("@reason({reason:?}) must be CUSTOM_ followed by upper-case letters, digits or _"),
                        ));
                    }
                    let challenge = policy.annotation("challenge") == Some("true");
                    custom_texts.push((id.clone(), policy.to_string()));
                    annotations.insert(id.clone(), (reason.to_owned(), challenge));
                    // Renamed, not re-parsed: validation errors keep pointing into the file.
                    if let Err(err) = policies.add(policy.new_id(PolicyId::new(&id))) {
                        issues.push(issue(
                            loaded,
                            Some(name),
                            policy_line(text, position),
                            format!("Cedar: {err}"),
                        ));
                    }
                }
            }
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    let validation = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    if !validation.validation_passed() {
        let mut found = Vec::new();
        for error in validation.validation_errors() {
            let id = error.policy_id().to_string();
            let file = id
                .strip_prefix("custom.")
                .and_then(|rest| rest.rsplit_once('.'))
                .map(|(name, _)| name.to_owned());
            let line = file
                .as_deref()
                .and_then(|name| loaded.cedar_files.iter().find(|(file, _)| file == name))
                .and_then(|(_, text)| {
                    let offset = miette::Diagnostic::labels(error)?.next()?.offset();
                    Some(line_of(text, offset))
                })
                .unwrap_or(1);
            found.push(issue(
                loaded,
                file.as_deref(),
                line,
                format!("Cedar validation ({id}): {error}"),
            ));
        }
        return Err(found);
    }

    let entities = entities(profile, &schema).map_err(fail)?;
    let mut all_texts = texts;
    all_texts.extend(custom_texts);
    all_texts.sort();
    let fingerprint = fingerprint(profile, &schema_text, &all_texts, &annotations).map_err(fail)?;
    let mut low_risk = PolicySet::new();
    let mut guarded = PolicySet::new();
    for policy in policies.policies() {
        let id = policy.id().to_string();
        let target = if id == "trustos.permit.low-risk" {
            &mut low_risk
        } else if id.starts_with("custom.") {
            low_risk
                .add(policy.clone())
                .map_err(|err| fail(err.to_string()))?;
            &mut guarded
        } else {
            &mut guarded
        };
        target
            .add(policy.clone())
            .map_err(|err| fail(err.to_string()))?;
    }
    Ok(Compiled {
        profile: profile.clone(),
        schema_text,
        schema,
        policies,
        low_risk,
        guarded,
        annotations,
        entities,
        names: CedarNames::parse().map_err(fail)?,
        fingerprint,
    })
}

/// Line of the `position`-th policy of a Cedar file (policies end with `;`).
fn policy_line(text: &str, position: usize) -> usize {
    let mut start = 0;
    for _ in 0..position {
        match text[start..].find(';') {
            Some(end) => start += end + 1,
            None => break,
        }
    }
    let skipped = text[start..].len() - text[start..].trim_start().len();
    line_of(text, start + skipped)
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn cedar_line(text: &str, err: &impl miette::Diagnostic) -> usize {
    err.labels()
        .and_then(|mut labels| labels.next())
        .map(|label| line_of(text, label.offset()))
        .unwrap_or(1)
}

fn entities(profile: &Profile, schema: &Schema) -> Result<Entities, String> {
    let mut list = Vec::new();
    let mut tenants: Vec<&str> = profile.subjects.iter().map(|s| s.tenant.as_str()).collect();
    tenants.sort();
    tenants.dedup();
    for tenant in tenants {
        list.push(Entity::new_no_attrs(
            uid("Tenant", tenant)?,
            Default::default(),
        ));
    }
    for subject in &profile.subjects {
        let parents = [uid("Tenant", &subject.tenant)?].into_iter().collect();
        list.push(Entity::new_no_attrs(uid("Agent", &subject.agent)?, parents));
    }
    for route in &profile.routes {
        let agents = route
            .agents
            .iter()
            .map(|agent| uid("Agent", agent).map(RestrictedExpression::new_entity_uid))
            .collect::<Result<Vec<_>, _>>()?;
        let attrs = [
            (
                "risk".to_owned(),
                RestrictedExpression::new_string(route.risk.as_str().into()),
            ),
            (
                "anyAgent".to_owned(),
                RestrictedExpression::new_bool(route.agents.is_empty()),
            ),
            ("agents".to_owned(), RestrictedExpression::new_set(agents)),
        ];
        list.push(
            Entity::new(
                uid("Route", &route.id)?,
                attrs.into_iter().collect(),
                Default::default(),
            )
            .map_err(|err| err.to_string())?,
        );
    }
    // The route of calls no profile route matches: classified high, so it can never pass.
    list.push(
        Entity::new(
            uid("Route", super::engine::UNCLASSIFIED_ROUTE)?,
            [
                (
                    "risk".to_owned(),
                    RestrictedExpression::new_string("high".into()),
                ),
                ("anyAgent".to_owned(), RestrictedExpression::new_bool(false)),
                ("agents".to_owned(), RestrictedExpression::new_set([])),
            ]
            .into_iter()
            .collect(),
            Default::default(),
        )
        .map_err(|err| err.to_string())?,
    );
    for bounds in &profile.amounts {
        let attrs = [
            (
                "hasMin".to_owned(),
                RestrictedExpression::new_bool(bounds.min.is_some()),
            ),
            (
                "min".to_owned(),
                RestrictedExpression::new_long(amount(&bounds.min)),
            ),
            (
                "hasMax".to_owned(),
                RestrictedExpression::new_bool(bounds.max.is_some()),
            ),
            (
                "max".to_owned(),
                RestrictedExpression::new_long(amount(&bounds.max)),
            ),
        ];
        list.push(
            Entity::new(
                uid("Asset", &bounds.asset)?,
                attrs.into_iter().collect(),
                Default::default(),
            )
            .map_err(|err| err.to_string())?,
        );
    }
    for budget in &profile.budgets {
        let attrs = [(
            "limit".to_owned(),
            RestrictedExpression::new_long(amount(&Some(budget.limit.clone()))),
        )];
        list.push(
            Entity::new(
                uid("Budget", &budget.id)?,
                attrs.into_iter().collect(),
                Default::default(),
            )
            .map_err(|err| err.to_string())?,
        );
    }
    for velocity in &profile.velocity {
        let max_calls = i64::try_from(velocity.max_calls).unwrap_or(i64::MAX);
        let attrs = [(
            "maxCalls".to_owned(),
            RestrictedExpression::new_long(max_calls),
        )];
        list.push(
            Entity::new(
                uid("Velocity", &velocity.id)?,
                attrs.into_iter().collect(),
                Default::default(),
            )
            .map_err(|err| err.to_string())?,
        );
    }
    let schedule = profile
        .schedule
        .clone()
        .unwrap_or(super::profile::Schedule {
            from: None,
            until: None,
            weekdays: None,
            valid_from: None,
            valid_until: None,
        });
    let from = schedule.from.as_deref().map(minute_of_day).unwrap_or(0);
    let until = schedule.until.as_deref().map(minute_of_day).unwrap_or(0);
    let weekdays: Vec<RestrictedExpression> = schedule
        .weekdays
        .iter()
        .flatten()
        .map(|day| RestrictedExpression::new_long(day.iso_number()))
        .collect();
    let day = |date: &Option<String>| {
        date.as_deref()
            .and_then(super::engine::day_number)
            .unwrap_or(0)
    };
    let challenge_above = profile.challenge.as_ref().and_then(|c| c.above.clone());
    let limits: Vec<(String, RestrictedExpression)> = vec![
        (
            "assetAllowAll".into(),
            RestrictedExpression::new_bool(profile.assets.allow.is_none()),
        ),
        (
            "assetAllow".into(),
            string_set(profile.assets.allow.as_deref().unwrap_or_default()),
        ),
        ("assetDeny".into(), string_set(&profile.assets.deny)),
        (
            "networkAllowAll".into(),
            RestrictedExpression::new_bool(profile.networks.allow.is_none()),
        ),
        (
            "networkAllow".into(),
            string_set(profile.networks.allow.as_deref().unwrap_or_default()),
        ),
        ("networkDeny".into(), string_set(&profile.networks.deny)),
        (
            "payeeAllowAll".into(),
            RestrictedExpression::new_bool(profile.payees.allow.is_none()),
        ),
        (
            "payeeAllow".into(),
            payee_set(profile.payees.allow.as_deref().unwrap_or_default()),
        ),
        ("payeeDeny".into(), payee_set(&profile.payees.deny)),
        (
            "hasHours".into(),
            RestrictedExpression::new_bool(schedule.from.is_some()),
        ),
        (
            "overnight".into(),
            RestrictedExpression::new_bool(until < from),
        ),
        ("fromMinute".into(), RestrictedExpression::new_long(from)),
        ("untilMinute".into(), RestrictedExpression::new_long(until)),
        (
            "hasWeekdays".into(),
            RestrictedExpression::new_bool(schedule.weekdays.is_some()),
        ),
        ("weekdays".into(), RestrictedExpression::new_set(weekdays)),
        (
            "hasValidFrom".into(),
            RestrictedExpression::new_bool(schedule.valid_from.is_some()),
        ),
        (
            "validFromDay".into(),
            RestrictedExpression::new_long(day(&schedule.valid_from)),
        ),
        (
            "hasValidUntil".into(),
            RestrictedExpression::new_bool(schedule.valid_until.is_some()),
        ),
        (
            "validUntilDay".into(),
            RestrictedExpression::new_long(day(&schedule.valid_until)),
        ),
        (
            "hasChallengeAbove".into(),
            RestrictedExpression::new_bool(challenge_above.is_some()),
        ),
        (
            "challengeAbove".into(),
            RestrictedExpression::new_long(amount(&challenge_above)),
        ),
    ];
    list.push(
        Entity::new(
            uid("Limits", "profile")?,
            limits.into_iter().collect(),
            Default::default(),
        )
        .map_err(|err| err.to_string())?,
    );
    Entities::from_entities(list, Some(schema)).map_err(|err| err.to_string())
}

/// SHA-256 of the canonical compiled profile: the normalized profile (lists sorted where order
/// carries no meaning), the schema, and every policy with its annotations, sorted by id.
fn fingerprint(
    profile: &Profile,
    schema_text: &str,
    policies: &[(String, String)],
    annotations: &BTreeMap<String, (String, bool)>,
) -> Result<Digest, String> {
    let mut normalized = profile.clone();
    normalized
        .subjects
        .sort_by(|a, b| (&a.tenant, &a.agent).cmp(&(&b.tenant, &b.agent)));
    for subject in &mut normalized.subjects {
        subject.sessions.sort();
    }
    normalized.routes.sort_by(|a, b| a.id.cmp(&b.id));
    for route in &mut normalized.routes {
        route.agents.sort();
        if let Some(http) = &mut route.http {
            http.methods.sort();
        }
    }
    normalized.amounts.sort_by(|a, b| a.asset.cmp(&b.asset));
    normalized.budgets.sort_by(|a, b| a.id.cmp(&b.id));
    normalized.velocity.sort_by(|a, b| a.id.cmp(&b.id));
    for list in [
        &mut normalized.payees.allow,
        &mut normalized.assets.allow,
        &mut normalized.networks.allow,
    ]
    .into_iter()
    .flatten()
    {
        list.sort();
    }
    for list in [
        &mut normalized.payees.deny,
        &mut normalized.assets.deny,
        &mut normalized.networks.deny,
    ] {
        list.sort();
    }
    if let Some(schedule) = &mut normalized.schedule
        && let Some(days) = &mut schedule.weekdays
    {
        days.sort();
    }
    if let Some(challenge) = &mut normalized.challenge {
        challenge.approvers.sort();
    }
    normalized.cedar.clear();
    let policies: Vec<_> = policies
        .iter()
        .map(|(id, text)| {
            let (reason, challenge) = annotations.get(id).cloned().unwrap_or_default();
            json!({"id": id, "text": text, "reason": reason, "challenge": challenge})
        })
        .collect();
    let document = json!({
        "type": "CompiledProfile.v1",
        "profile": normalized,
        "cedarSchema": schema_text,
        "policies": policies,
    });
    Digest::of_canonical(&document).map_err(|err| err.to_string())
}
