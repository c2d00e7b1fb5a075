//! Simulation: run a pack's cases (intent + store state + clock) through the engine and compare
//! with what each case expects. Output is deterministic: the same bytes for the same profile and
//! cases on any machine, timezone or locale.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use trustos_kernel::objects::Outcome;
use trustos_kernel::timestamp::Timestamp;

use super::compile::Compiled;
use super::engine::{Call, Evaluation, Intent, PaymentFacts, State};
use super::load::{Issue, Lines};
use super::reasons;

/// A cases file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// The cases, in order.
    #[serde(rename = "case", default)]
    pub cases: Vec<Case>,
}

/// One simulated call.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Unique name.
    pub name: String,
    /// The clock, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub at: String,
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Session.
    #[serde(default)]
    pub session: Option<String>,
    /// The call.
    pub call: CaseCall,
    /// Explicit payment terms.
    #[serde(default)]
    pub payment: Option<CasePayment>,
    /// What the store reports.
    #[serde(default)]
    pub state: CaseState,
    /// What should come out.
    pub expect: Expect,
}

/// The call of a case.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseCall {
    /// An MCP call.
    #[serde(default)]
    pub mcp: Option<CaseMcp>,
    /// An HTTP call.
    #[serde(default)]
    pub http: Option<CaseHttp>,
    /// Arguments or body.
    #[serde(default)]
    pub arguments: Option<Value>,
}

/// An MCP call.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseMcp {
    /// Server.
    pub server: String,
    /// Tool.
    pub tool: String,
}

/// An HTTP call.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseHttp {
    /// Method.
    pub method: String,
    /// Host.
    pub host: String,
    /// Path.
    pub path: String,
}

/// Explicit payment terms.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasePayment {
    /// Amount, base units.
    pub amount: String,
    /// Asset.
    pub asset: String,
    /// Payee.
    pub payee: String,
    /// Network.
    pub network: String,
}

/// What the store reports for the case.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseState {
    /// Budget id → spent in its window (base units).
    #[serde(default)]
    pub spent: BTreeMap<String, String>,
    /// Velocity id → calls in its window.
    #[serde(default)]
    pub calls: BTreeMap<String, u64>,
    /// Payees paid before.
    #[serde(default)]
    pub known_payees: Vec<String>,
}

/// The expected decision.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `allow`, `deny` or `challenge`.
    pub outcome: Outcome,
    /// The exact reason codes, when given.
    #[serde(default)]
    pub reasons: Option<Vec<String>>,
}

/// The result of one case.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// Case name.
    pub name: String,
    /// Whether it matched its expectation.
    pub pass: bool,
    /// What differed.
    pub mismatch: Option<String>,
    /// Outcome.
    pub outcome: Outcome,
    /// Mode.
    pub mode: String,
    /// Enforced outcome.
    pub enforced: Outcome,
    /// Reasons.
    pub reasons: Vec<String>,
    /// Determining policies.
    pub policies: Vec<String>,
    /// Route.
    pub route: Option<String>,
}

/// Reads a cases file; problems are located.
pub fn load_cases(path: &Path) -> Result<CasesFile, Vec<Issue>> {
    let located = |line: usize, column: usize, message: String| {
        vec![Issue {
            file: path.to_owned(),
            line,
            column,
            field: String::new(),
            message,
        }]
    };
    let text = std::fs::read_to_string(path)
        .map_err(|err| located(1, 1, format!("cannot read the cases: {err}")))?;
    let cases: CasesFile = toml::from_str(&text).map_err(|err| {
        let (line, column) = Lines::new(&text).locate(err.span().map_or(0, |span| span.start));
        located(line, column, err.message().trim().to_owned())
    })?;
    let mut names = BTreeSet::new();
    for case in &cases.cases {
        if !names.insert(case.name.as_str()) {
            return Err(located(1, 1, format!("case {:?} appears twice", case.name)));
        }
    }
    Ok(cases)
}

impl Case {
    /// The engine's inputs for this case: the call, the store state, the clock.
    pub fn inputs(&self) -> Result<(Intent, State, Timestamp), String> {
        inputs(self)
    }
}

fn inputs(case: &Case) -> Result<(Intent, State, Timestamp), String> {
    let at: Timestamp = case.at.parse().map_err(|err| format!("at: {err}"))?;
    let call = match (&case.call.mcp, &case.call.http) {
        (Some(mcp), None) => Call::Mcp {
            server: mcp.server.clone(),
            tool: mcp.tool.clone(),
        },
        (None, Some(http)) => Call::Http {
            method: http.method.clone(),
            host: http.host.clone(),
            path: http.path.clone(),
        },
        _ => return Err("call needs exactly one of mcp or http".into()),
    };
    let payment = match &case.payment {
        None => None,
        Some(payment) => Some(PaymentFacts {
            amount: payment
                .amount
                .parse()
                .map_err(|_| format!("payment.amount {:?} is not base units", payment.amount))?,
            asset: payment.asset.clone(),
            payee: payment.payee.clone(),
            network: payment.network.clone(),
        }),
    };
    let mut spent = BTreeMap::new();
    for (id, amount) in &case.state.spent {
        let amount = amount
            .parse()
            .map_err(|_| format!("state.spent.{id} {amount:?} is not base units"))?;
        spent.insert(id.clone(), amount);
    }
    Ok((
        Intent {
            tenant: case.tenant.clone(),
            agent: case.agent.clone(),
            session: case.session.clone(),
            call,
            arguments: case.call.arguments.clone().unwrap_or(json!({})),
            payment,
        },
        State {
            spent,
            calls: case.state.calls.clone(),
            known_payees: case.state.known_payees.iter().cloned().collect(),
        },
        at,
    ))
}

/// Runs every case.
pub fn run(compiled: &Compiled, cases: &CasesFile) -> Vec<CaseResult> {
    run_checked(compiled, cases, false)
}

/// As [`run`], validating every Cedar request against the schema when `check_requests`.
pub fn run_checked(
    compiled: &Compiled,
    cases: &CasesFile,
    check_requests: bool,
) -> Vec<CaseResult> {
    cases
        .cases
        .iter()
        .map(|case| match inputs(case) {
            Ok((intent, state, at)) => {
                let evaluation = compiled.evaluate_checked(&intent, &state, at, check_requests);
                judge(case, evaluation)
            }
            Err(problem) => CaseResult {
                name: case.name.clone(),
                pass: false,
                mismatch: Some(format!("the case is malformed: {problem}")),
                outcome: Outcome::Deny,
                mode: String::new(),
                enforced: Outcome::Deny,
                reasons: Vec::new(),
                policies: Vec::new(),
                route: None,
            },
        })
        .collect()
}

fn judge(case: &Case, evaluation: Evaluation) -> CaseResult {
    let mut mismatch = Vec::new();
    if evaluation.outcome != case.expect.outcome {
        mismatch.push(format!(
            "expected {}, got {}",
            case.expect.outcome.as_str(),
            evaluation.outcome.as_str()
        ));
    }
    if let Some(expected) = &case.expect.reasons {
        let mut expected = expected.clone();
        expected.sort();
        expected.dedup();
        if expected != evaluation.reasons {
            mismatch.push(format!(
                "expected reasons [{}], got [{}]",
                expected.join(", "),
                evaluation.reasons.join(", ")
            ));
        }
    }
    CaseResult {
        name: case.name.clone(),
        pass: mismatch.is_empty(),
        mismatch: (!mismatch.is_empty()).then(|| mismatch.join("; ")),
        outcome: evaluation.outcome,
        mode: serde_json::to_value(evaluation.mode)
            .ok()
            .and_then(|mode| mode.as_str().map(str::to_owned))
            .unwrap_or_default(),
        enforced: evaluation.enforced,
        reasons: evaluation.reasons,
        policies: evaluation.policies,
        route: evaluation.route,
    }
}

/// The text report.
pub fn report_text(profile: &Path, compiled: &Compiled, results: &[CaseResult]) -> String {
    let mut out = format!(
        "profile {} ({}) fingerprint {}\n",
        profile.display(),
        compiled.profile.profile.name,
        compiled.fingerprint
    );
    for result in results {
        out.push_str(&format!(
            "{} {}: {} (mode {}, enforced {}) route {} reasons [{}] policies [{}]\n",
            if result.pass { "PASS" } else { "FAIL" },
            result.name,
            result.outcome.as_str(),
            result.mode,
            result.enforced.as_str(),
            result.route.as_deref().unwrap_or("-"),
            result.reasons.join(", "),
            result.policies.join(", ")
        ));
        if result.outcome != Outcome::Allow {
            for reason in &result.reasons {
                out.push_str(&format!("    {reason}: {}\n", reasons::remediation(reason)));
            }
        }
        if let Some(mismatch) = &result.mismatch {
            out.push_str(&format!("    MISMATCH: {mismatch}\n"));
        }
    }
    let failed = results.iter().filter(|result| !result.pass).count();
    out.push_str(&format!(
        "cases: {} passed, {failed} failed\n",
        results.len() - failed
    ));
    out
}

/// The JSON report.
pub fn report_json(profile: &Path, compiled: &Compiled, results: &[CaseResult]) -> Value {
    let failed = results.iter().filter(|result| !result.pass).count();
    let cases: Vec<Value> = results
        .iter()
        .map(|result| {
            let remediation: Vec<Value> = result
                .reasons
                .iter()
                .map(|reason| json!({"code": reason, "remediation": reasons::remediation(reason)}))
                .collect();
            let mut value = serde_json::to_value(result).unwrap_or(Value::Null);
            value["remediation"] = Value::Array(remediation);
            value
        })
        .collect();
    json!({
        "profile": profile.display().to_string(),
        "name": compiled.profile.profile.name,
        "fingerprint": compiled.fingerprint.to_string(),
        "cases": cases,
        "passed": results.len() - failed,
        "failed": failed,
    })
}
