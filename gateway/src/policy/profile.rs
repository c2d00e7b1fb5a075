//! The profile: what an operator writes (TOML) to say which calls an agent may make.
//!
//! The shape here, `policies/profile.schema.json` and the starter packs under `policies/` are one
//! contract; `load` checks a file against the schema first (for located errors), then reads it
//! into these types (unknown fields refused), then checks what a schema cannot say.

use serde::{Deserialize, Serialize};
/// Enforcement mode (`shadow`, `soft`, `hard`): the kernel's, as signed in decisions.
pub use trustos_kernel::objects::Mode;

/// A whole profile file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Name and description.
    pub profile: Meta,
    /// Defaults for unknown agents and enforcement modes.
    #[serde(default)]
    pub defaults: Defaults,
    /// The agents this profile knows.
    #[serde(default)]
    pub subjects: Vec<Subject>,
    /// How calls are classified.
    #[serde(default)]
    pub routes: Vec<RouteRule>,
    /// Per-call amount bounds, per asset.
    #[serde(default)]
    pub amounts: Vec<AmountBounds>,
    /// Spending budgets.
    #[serde(default)]
    pub budgets: Vec<Budget>,
    /// Call-rate limits.
    #[serde(default)]
    pub velocity: Vec<Velocity>,
    /// Payee lists and first-time payees.
    #[serde(default)]
    pub payees: Payees,
    /// Asset allow and deny lists.
    #[serde(default)]
    pub assets: AllowDeny,
    /// Network (CAIP-2) allow and deny lists.
    #[serde(default)]
    pub networks: AllowDeny,
    /// When calls may happen (UTC).
    #[serde(default)]
    pub schedule: Option<Schedule>,
    /// When a human must approve, and who.
    #[serde(default)]
    pub challenge: Option<Challenge>,
    /// Extra Cedar policy files, relative to the profile.
    #[serde(default)]
    pub cedar: Vec<String>,
}

/// Name and description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// Profile name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

/// What happens to unknown agents, and how each risk class is enforced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Outcome for agents not listed in `subjects`.
    #[serde(default)]
    pub unknown_agent: UnknownAgent,
    /// Enforcement mode per risk class.
    #[serde(default)]
    pub mode: Modes,
}

/// Outcome for an agent the profile does not list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownAgent {
    /// Refuse its high-risk calls.
    #[default]
    Deny,
    /// Hold them for a human.
    Challenge,
}

/// Enforcement mode per risk class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Modes {
    /// Low-risk calls.
    #[serde(default = "hard")]
    pub low: Mode,
    /// High-risk calls.
    #[serde(default = "hard")]
    pub high: Mode,
    /// Paid calls.
    #[serde(default = "hard")]
    pub paid: Mode,
}

fn hard() -> Mode {
    Mode::Hard
}

impl Default for Modes {
    fn default() -> Self {
        Self {
            low: Mode::Hard,
            high: Mode::Hard,
            paid: Mode::Hard,
        }
    }
}

/// An agent the profile knows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// Tenant.
    pub tenant: String,
    /// Agent id.
    pub agent: String,
    /// Session globs it may act in (empty: any).
    #[serde(default)]
    pub sessions: Vec<String>,
}

/// Risk class of a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Passes untouched.
    Low,
    /// Decided and receipted.
    High,
    /// Moves money: decided, budgeted, receipted.
    Paid,
}

impl Risk {
    /// The TOML / Cedar name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::High => "high",
            Self::Paid => "paid",
        }
    }
}

/// One classified route: an MCP tool or an HTTP endpoint pattern.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Stable id, used in reason codes and policy ids.
    pub id: String,
    /// MCP server and tool globs.
    #[serde(default)]
    pub mcp: Option<McpPattern>,
    /// HTTP host and path globs.
    #[serde(default)]
    pub http: Option<HttpPattern>,
    /// Risk class.
    pub risk: Risk,
    /// Agents allowed to make these calls (empty: every listed subject).
    #[serde(default)]
    pub agents: Vec<String>,
    /// Where a tool that moves money through its arguments keeps the terms.
    #[serde(default)]
    pub payment: Option<PaymentPointers>,
}

/// MCP server and tool globs (`*` matches any run of characters).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpPattern {
    /// Server name glob.
    pub server: String,
    /// Tool name glob.
    pub tool: String,
}

/// HTTP host and path globs, and methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpPattern {
    /// Host glob.
    pub host: String,
    /// Path glob, starting with `/`.
    pub path: String,
    /// Upper-case methods (empty: any).
    #[serde(default)]
    pub methods: Vec<String>,
}

/// JSON Pointers (RFC 6901) into a call's arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentPointers {
    /// The amount, in base units (a string or a safe integer).
    pub amount: String,
    /// The asset, when the arguments carry it.
    #[serde(default)]
    pub asset: Option<String>,
    /// The payee.
    #[serde(default)]
    pub payee: Option<String>,
    /// The network, when the arguments carry it.
    #[serde(default)]
    pub network: Option<String>,
    /// Asset to assume when the arguments do not name one.
    #[serde(default)]
    pub default_asset: Option<String>,
    /// Network to assume when the arguments do not name one.
    #[serde(default)]
    pub default_network: Option<String>,
}

/// Bounds on one call's amount of one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountBounds {
    /// Asset.
    pub asset: String,
    /// Smallest amount, base units.
    #[serde(default)]
    pub min: Option<String>,
    /// Largest amount, base units.
    #[serde(default)]
    pub max: Option<String>,
}

/// Whose spending a budget counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetScope {
    /// Each agent separately.
    Agent,
    /// Each tenant, all its agents together.
    Tenant,
    /// Each payee, all agents together.
    Payee,
}

/// The span a budget or velocity limit covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// UTC clock hour.
    Hour,
    /// UTC calendar day.
    Day,
    /// UTC calendar month.
    Month,
    /// The last `rolling_seconds`.
    Rolling,
}

/// A spending budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Stable id.
    pub id: String,
    /// Whose spending it counts.
    pub scope: BudgetScope,
    /// Window.
    pub window: WindowKind,
    /// Length of a rolling window.
    #[serde(default)]
    pub rolling_seconds: Option<u64>,
    /// Asset counted.
    pub asset: String,
    /// Most that may be spent in the window, base units.
    pub limit: String,
}

/// What a velocity limit counts calls per.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VelocityScope {
    /// Calls per agent and route.
    Tool,
    /// Calls per agent and payee.
    Payee,
}

/// A call-rate limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Velocity {
    /// Stable id.
    pub id: String,
    /// What calls are counted per.
    pub per: VelocityScope,
    /// Window.
    pub window: WindowKind,
    /// Length of a rolling window.
    #[serde(default)]
    pub rolling_seconds: Option<u64>,
    /// Most calls in the window.
    pub max_calls: u64,
}

/// Payee lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payees {
    /// Only these payees (absent: any not denied).
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Never these payees.
    #[serde(default)]
    pub deny: Vec<String>,
    /// What to do the first time an agent pays a payee.
    #[serde(default)]
    pub first_time: FirstTime,
}

/// Outcome for a payee never paid before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FirstTime {
    /// No special treatment.
    Allow,
    /// Hold for a human.
    #[default]
    Challenge,
    /// Refuse.
    Deny,
}

/// An allow list (absent: anything not denied) and a deny list.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowDeny {
    /// Only these.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
    /// Never these.
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Day of the week.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Mon,
    /// Tuesday.
    Tue,
    /// Wednesday.
    Wed,
    /// Thursday.
    Thu,
    /// Friday.
    Fri,
    /// Saturday.
    Sat,
    /// Sunday.
    Sun,
}

impl Weekday {
    /// 1 (Monday) to 7 (Sunday), ISO 8601.
    pub fn iso_number(self) -> i64 {
        match self {
            Self::Mon => 1,
            Self::Tue => 2,
            Self::Wed => 3,
            Self::Thu => 4,
            Self::Fri => 5,
            Self::Sat => 6,
            Self::Sun => 7,
        }
    }
}

/// When high-risk calls may happen, in UTC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Start of the daily window, `HH:MM` (inclusive).
    #[serde(default)]
    pub from: Option<String>,
    /// End of the daily window, `HH:MM` (exclusive); may be before `from` (overnight).
    #[serde(default)]
    pub until: Option<String>,
    /// Days allowed (absent: every day).
    #[serde(default)]
    pub weekdays: Option<Vec<Weekday>>,
    /// First valid date, `YYYY-MM-DD`.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// Last valid date, `YYYY-MM-DD` (inclusive).
    #[serde(default)]
    pub valid_until: Option<String>,
}

/// When a human must approve, and who.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Challenge {
    /// Amounts above this (base units, of any asset) need approval.
    #[serde(default)]
    pub above: Option<String>,
    /// Approvers.
    pub approvers: Vec<String>,
    /// Approvals needed (the initiator never counts).
    pub quorum: u32,
}
