//! Reading a profile file: TOML syntax, the JSON Schema, the typed shape, then the rules a schema
//! cannot express — every problem located by file, line, column and field.
//!
//! All problems are collected (not just the first), so an operator fixes a file in one pass.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use toml::de::{DeTable, DeValue};

use super::glob;
use super::profile::{Profile, Risk, RouteRule, WindowKind};

/// The profile JSON Schema, compiled into the binary.
pub const PROFILE_SCHEMA: &str = include_str!("../../../policies/profile.schema.json");

/// One located problem in a profile (or one of its Cedar files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field, as a dotted TOML path (`routes[2].mcp.tool`), or empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}:{}:{}: ",
            self.file.display(),
            self.line,
            self.column
        )?;
        if !self.field.is_empty() {
            write!(formatter, "{}: ", self.field)?;
        }
        formatter.write_str(&self.message)
    }
}

/// A profile that passed every check, with the Cedar files it names.
#[derive(Clone, Debug)]
pub struct LoadedProfile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The profile.
    pub profile: Profile,
    /// Custom Cedar policy files: (file name as written, text).
    pub cedar_files: Vec<(String, String)>,
}

/// Line and column of byte offsets in a text.
pub struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    /// Indexes the line starts of `text`.
    pub fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(at, _)| at + 1));
        Self { starts }
    }

    /// 1-based (line, column) of a byte offset.
    pub fn locate(&self, offset: usize) -> (usize, usize) {
        let line = self.starts.partition_point(|start| *start <= offset);
        let start = self
            .starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        (line.max(1), offset.saturating_sub(start) + 1)
    }
}

/// Where each JSON Pointer of the document starts in the text.
struct Spans {
    by_pointer: BTreeMap<String, Range<usize>>,
}

impl Spans {
    fn of(table: &DeTable<'_>, whole: Range<usize>) -> Self {
        let mut by_pointer = BTreeMap::new();
        by_pointer.insert(String::new(), whole);
        walk_table(table, "", &mut by_pointer);
        Self { by_pointer }
    }

    /// The span of `pointer`, or of its nearest ancestor that has one.
    fn find(&self, pointer: &str) -> Range<usize> {
        let mut pointer = pointer.to_owned();
        loop {
            if let Some(span) = self.by_pointer.get(&pointer) {
                return span.clone();
            }
            match pointer.rfind('/') {
                Some(cut) => pointer.truncate(cut),
                None => return 0..0,
            }
        }
    }
}

fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn walk_table(table: &DeTable<'_>, prefix: &str, out: &mut BTreeMap<String, Range<usize>>) {
    for (key, value) in table {
        let pointer = format!("{prefix}/{}", escape_token(key.get_ref()));
        // Point at the key: that is the line an operator looks for.
        out.insert(pointer.clone(), key.span());
        walk_value(value.get_ref(), &pointer, out);
    }
}

fn walk_value(value: &DeValue<'_>, pointer: &str, out: &mut BTreeMap<String, Range<usize>>) {
    match value {
        DeValue::Table(table) => walk_table(table, pointer, out),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let item_pointer = format!("{pointer}/{index}");
                out.insert(item_pointer.clone(), item.span());
                walk_value(item.get_ref(), &item_pointer, out);
            }
        }
        _ => {}
    }
}

/// `/routes/2/mcp/tool` → `routes[2].mcp.tool`.
pub fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if token.bytes().all(|byte| byte.is_ascii_digit()) && !token.is_empty() {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

struct Located<'a> {
    file: &'a Path,
    lines: Lines,
    spans: Spans,
    issues: Vec<Issue>,
}

impl Located<'_> {
    fn at(&mut self, pointer: &str, message: impl Into<String>) {
        let span = self.spans.find(pointer);
        let (line, column) = self.lines.locate(span.start);
        self.issues.push(Issue {
            file: self.file.to_owned(),
            line,
            column,
            field: dotted(pointer),
            message: message.into(),
        });
    }
}

fn schema_validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let schema: Value = serde_json::from_str(PROFILE_SCHEMA)
                .map_err(|err| format!("the built-in profile schema is not JSON: {err}"))?;
            jsonschema::draft202012::new(&schema)
                .map_err(|err| format!("the built-in profile schema is invalid: {err}"))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Reads and checks the profile at `path` and the Cedar files it names.
pub fn load(path: &Path) -> Result<LoadedProfile, Vec<Issue>> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        vec![Issue {
            file: path.to_owned(),
            line: 1,
            column: 1,
            field: String::new(),
            message: format!("cannot read the profile: {err}"),
        }]
    })?;
    let profile = parse(path, &text)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut cedar_files = Vec::new();
    let mut issues = Vec::new();
    for (index, name) in profile.cedar.iter().enumerate() {
        match std::fs::read_to_string(base.join(name)) {
            Ok(text) => cedar_files.push((name.clone(), text)),
            Err(err) => issues.push(locate_in(
                path,
                &text,
                &format!("/cedar/{index}"),
                format!(
                    "cannot read Cedar file {}: {err}",
                    base.join(name).display()
                ),
            )),
        }
    }
    if !issues.is_empty() {
        return Err(issues);
    }
    Ok(LoadedProfile {
        path: path.to_owned(),
        profile,
        cedar_files,
    })
}

/// Locates one message at a pointer of a profile text.
pub fn locate_in(file: &Path, text: &str, pointer: &str, message: String) -> Issue {
    let spans = match DeTable::parse(text) {
        Ok(table) => {
            let whole = table.span();
            Spans::of(table.get_ref(), whole)
        }
        Err(_) => Spans {
            by_pointer: BTreeMap::new(),
        },
    };
    let mut located = Located {
        file,
        lines: Lines::new(text),
        spans,
        issues: Vec::new(),
    };
    located.at(pointer, message);
    located.issues.remove(0)
}

/// Checks a profile text; `file` only names it in issues.
pub fn parse(file: &Path, text: &str) -> Result<Profile, Vec<Issue>> {
    let lines = Lines::new(text);
    let table = match DeTable::parse(text) {
        Ok(table) => table,
        Err(err) => {
            let (line, column) = lines.locate(err.span().map_or(0, |span| span.start));
            return Err(vec![Issue {
                file: file.to_owned(),
                line,
                column,
                field: String::new(),
                message: format!("TOML syntax: {}", err.message().trim()),
            }]);
        }
    };
    let spans = Spans::of(table.get_ref(), table.span());
    let mut located = Located {
        file,
        lines,
        spans,
        issues: Vec::new(),
    };
    let json: Value = match toml::from_str(text) {
        Ok(json) => json,
        Err(err) => {
            located.at("", format!("TOML: {}", err.message().trim()));
            return Err(located.issues);
        }
    };
    match schema_validator() {
        Ok(validator) => {
            let mut errors: Vec<(String, String)> = validator
                .iter_errors(&json)
                .flat_map(|err| schema_issue(&err))
                .collect();
            errors.sort();
            errors.dedup();
            for (pointer, message) in errors {
                located.at(&pointer, message);
            }
        }
        Err(message) => located.at("", message),
    }
    if !located.issues.is_empty() {
        located
            .issues
            .sort_by_key(|issue| (issue.line, issue.column));
        return Err(located.issues);
    }
    let profile: Profile = match serde_json::from_value(json) {
        Ok(profile) => profile,
        Err(err) => {
            located.at("", format!("profile shape: {err}"));
            return Err(located.issues);
        }
    };
    check_rules(&profile, &mut located);
    if located.issues.is_empty() {
        Ok(profile)
    } else {
        located
            .issues
            .sort_by_key(|issue| (issue.line, issue.column));
        Err(located.issues)
    }
}

/// The pattern of amounts in the schema, to explain it in words.
const AMOUNT_PATTERN: &str = "^(0|[1-9][0-9]{0,18})$";

/// One schema error as (pointer, message), pointing at the offending key where the schema's
/// own error points at its parent, and saying what an amount must be in words.
fn schema_issue(err: &jsonschema::ValidationError<'_>) -> Vec<(String, String)> {
    let pointer = err.instance_path().to_string();
    match err.kind() {
        jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|key| {
                (
                    format!("{pointer}/{}", escape_token(key)),
                    format!("unknown field {key:?}"),
                )
            })
            .collect(),
        jsonschema::error::ValidationErrorKind::Pattern { pattern }
            if pattern == AMOUNT_PATTERN =>
        {
            vec![(
                pointer,
                format!(
                    "{} is not an amount: write integer base units as a string of digits (no sign, no fraction, no leading zero), at most 2^63-1",
                    err.instance()
                ),
            )]
        }
        _ => vec![(pointer, err.to_string())],
    }
}

/// Characters an MCP tool or server name may contain.
fn mcp_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | '*')
}

/// Characters a (lower-case) host name may contain.
fn host_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | ':' | '*')
}

fn amount(text: &Option<String>) -> Option<i64> {
    text.as_deref().and_then(|text| text.parse().ok())
}

fn check_rules(profile: &Profile, located: &mut Located<'_>) {
    check_unique_ids(profile, located);
    let subjects: BTreeSet<&str> = profile.subjects.iter().map(|s| s.agent.as_str()).collect();
    let mut seen_subjects = BTreeSet::new();
    for (index, subject) in profile.subjects.iter().enumerate() {
        if !seen_subjects.insert((&subject.tenant, &subject.agent)) {
            located.at(
                &format!("/subjects/{index}"),
                "this tenant and agent are listed twice",
            );
        }
    }
    for (index, route) in profile.routes.iter().enumerate() {
        check_route(index, route, &subjects, located);
    }
    for (later, route) in profile.routes.iter().enumerate() {
        for earlier in &profile.routes[..later] {
            if earlier.risk != route.risk && routes_overlap(earlier, route) {
                located.at(
                    &format!("/routes/{later}"),
                    format!(
                        "route {:?} ({}) overlaps route {:?} ({}): a call could match both with different risk classes",
                        route.id,
                        route.risk.as_str(),
                        earlier.id,
                        earlier.risk.as_str()
                    ),
                );
            }
        }
    }
    for (index, bounds) in profile.amounts.iter().enumerate() {
        for (field, value) in [("min", &bounds.min), ("max", &bounds.max)] {
            if value.is_some() && amount(value).is_none() {
                located.at(
                    &format!("/amounts/{index}/{field}"),
                    "amount is above 2^63-1",
                );
            }
        }
        if let (Some(min), Some(max)) = (amount(&bounds.min), amount(&bounds.max))
            && min > max
        {
            located.at(
                &format!("/amounts/{index}"),
                format!("min {min} is above max {max}"),
            );
        }
    }
    for (index, budget) in profile.budgets.iter().enumerate() {
        let pointer = format!("/budgets/{index}");
        if amount(&Some(budget.limit.clone())).is_none() {
            located.at(&format!("{pointer}/limit"), "amount is above 2^63-1");
        }
        check_window(&pointer, budget.window, budget.rolling_seconds, located);
    }
    for (index, velocity) in profile.velocity.iter().enumerate() {
        check_window(
            &format!("/velocity/{index}"),
            velocity.window,
            velocity.rolling_seconds,
            located,
        );
    }
    if let Some(challenge) = &profile.challenge {
        if challenge.quorum as usize > challenge.approvers.len() {
            located.at(
                "/challenge/quorum",
                format!(
                    "quorum {} is more than the {} approvers",
                    challenge.quorum,
                    challenge.approvers.len()
                ),
            );
        }
        if challenge.above.is_some() && amount(&challenge.above).is_none() {
            located.at("/challenge/above", "amount is above 2^63-1");
        }
    }
    if let Some(schedule) = &profile.schedule {
        if schedule.from.is_some() != schedule.until.is_some() {
            located.at("/schedule", "from and until go together");
        }
        if schedule.from.is_some() && schedule.from == schedule.until {
            located.at(
                "/schedule/until",
                "until equals from: the window would be empty",
            );
        }
        for (field, date) in [
            ("valid_from", &schedule.valid_from),
            ("valid_until", &schedule.valid_until),
        ] {
            if let Some(date) = date
                && super::engine::day_number(date).is_none()
            {
                located.at(
                    &format!("/schedule/{field}"),
                    format!("{date} is not a calendar date"),
                );
            }
        }
        if let (Some(from), Some(until)) = (&schedule.valid_from, &schedule.valid_until)
            && from > until
        {
            located.at("/schedule/valid_until", "valid_until is before valid_from");
        }
    }
}

fn check_unique_ids(profile: &Profile, located: &mut Located<'_>) {
    let groups: [(&str, Vec<&str>); 3] = [
        (
            "routes",
            profile.routes.iter().map(|r| r.id.as_str()).collect(),
        ),
        (
            "budgets",
            profile.budgets.iter().map(|b| b.id.as_str()).collect(),
        ),
        (
            "velocity",
            profile.velocity.iter().map(|v| v.id.as_str()).collect(),
        ),
    ];
    for (group, ids) in groups {
        let mut seen = BTreeSet::new();
        for (index, id) in ids.iter().enumerate() {
            if !seen.insert(*id) {
                located.at(
                    &format!("/{group}/{index}/id"),
                    format!("id {id:?} is used twice"),
                );
            }
        }
    }
}

fn check_route(
    index: usize,
    route: &RouteRule,
    subjects: &BTreeSet<&str>,
    located: &mut Located<'_>,
) {
    let pointer = format!("/routes/{index}");
    if let Some(mcp) = &route.mcp {
        for (field, pattern) in [("server", &mcp.server), ("tool", &mcp.tool)] {
            if !pattern.chars().all(mcp_name_char) {
                located.at(
                    &format!("{pointer}/mcp/{field}"),
                    format!("glob {pattern:?} matches no MCP name (names use A-Z a-z 0-9 _ - . /)"),
                );
            }
        }
    }
    if let Some(http) = &route.http {
        if !http.host.chars().all(host_char) {
            located.at(
                &format!("{pointer}/http/host"),
                format!(
                    "glob {:?} matches no host name (lower-case letters, digits, . - :)",
                    http.host
                ),
            );
        }
        if http
            .path
            .chars()
            .any(|c| c.is_whitespace() || c == '?' || c == '#')
        {
            located.at(
                &format!("{pointer}/http/path"),
                format!(
                    "glob {:?} matches no normalized path (no spaces, query or fragment)",
                    http.path
                ),
            );
        }
    }
    for (position, agent) in route.agents.iter().enumerate() {
        if !subjects.contains(agent.as_str()) {
            located.at(
                &format!("{pointer}/agents/{position}"),
                format!("agent {agent:?} is not in [[subjects]], so this entry matches nobody"),
            );
        }
    }
    if route.payment.is_some() && route.risk != Risk::Paid {
        located.at(
            &format!("{pointer}/payment"),
            "payment pointers only apply to routes with risk = \"paid\"",
        );
    }
}

fn routes_overlap(left: &RouteRule, right: &RouteRule) -> bool {
    match ((&left.mcp, &left.http), (&right.mcp, &right.http)) {
        ((Some(a), _), (Some(b), _)) => {
            glob::overlap(&a.server, &b.server) && glob::overlap(&a.tool, &b.tool)
        }
        ((_, Some(a)), (_, Some(b))) => {
            let methods = a.methods.is_empty()
                || b.methods.is_empty()
                || a.methods.iter().any(|method| b.methods.contains(method));
            methods && glob::overlap(&a.host, &b.host) && glob::overlap(&a.path, &b.path)
        }
        _ => false,
    }
}

fn check_window(
    pointer: &str,
    window: WindowKind,
    rolling: Option<u64>,
    located: &mut Located<'_>,
) {
    match (window, rolling) {
        (WindowKind::Rolling, None) => located.at(
            &format!("{pointer}/window"),
            "a rolling window needs rolling_seconds",
        ),
        (WindowKind::Rolling, Some(_)) => {}
        (_, Some(_)) => located.at(
            &format!("{pointer}/rolling_seconds"),
            "rolling_seconds only applies to window = \"rolling\"",
        ),
        (_, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issues(text: &str) -> Vec<String> {
        parse(Path::new("p.toml"), text)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    const BASE: &str = "[profile]\nname = \"t\"\n\n[[subjects]]\ntenant = \"acme\"\nagent = \"bot\"\n\n[[routes]]\nid = \"search\"\nrisk = \"paid\"\nmcp = { server = \"s\", tool = \"search*\" }\n";

    #[test]
    fn a_valid_profile_loads() {
        parse(Path::new("p.toml"), BASE).unwrap();
    }

    #[test]
    fn wrong_types_and_unknown_fields_name_their_line() {
        let wrong = BASE.replace("risk = \"paid\"", "risk = 3");
        let found = issues(&wrong);
        assert!(
            found
                .iter()
                .any(|issue| issue.starts_with("p.toml:10:1: routes[0].risk: ")),
            "{found:?}"
        );
        let unknown = format!("{BASE}colour = \"red\"\n");
        let found = issues(&unknown);
        assert!(
            found.iter().any(|issue| issue.contains("colour")),
            "{found:?}"
        );
    }

    #[test]
    fn bad_amounts_are_located() {
        for (amount, _) in [
            ("\"-1\"", "negative"),
            ("\"1.5\"", "fractional"),
            ("\"9223372036854775808\"", "above 2^63"),
            ("5", "not a string"),
        ] {
            let text = format!("{BASE}\n[[amounts]]\nasset = \"usdc\"\nmax = {amount}\n");
            let found = issues(&text);
            assert!(
                found.iter().any(|issue| issue.contains("amounts[0].max")),
                "{amount}: {found:?}"
            );
            assert!(
                found.iter().any(|issue| issue.starts_with("p.toml:15:")),
                "{amount}: {found:?}"
            );
        }
    }

    #[test]
    fn overlapping_routes_with_different_risk_are_refused() {
        let text = format!(
            "{BASE}\n[[routes]]\nid = \"web\"\nrisk = \"low\"\nmcp = {{ server = \"*\", tool = \"*web\" }}\n"
        );
        let found = issues(&text);
        assert!(
            found
                .iter()
                .any(|issue| issue.contains("overlaps route \"search\"")),
            "{found:?}"
        );
        let disjoint = format!(
            "{BASE}\n[[routes]]\nid = \"read\"\nrisk = \"low\"\nmcp = {{ server = \"s\", tool = \"read_*\" }}\n"
        );
        parse(Path::new("p.toml"), &disjoint).unwrap();
    }

    #[test]
    fn globs_that_match_nothing_are_refused() {
        let text = BASE.replace("tool = \"search*\"", "tool = \"search tool\"");
        assert!(
            issues(&text)
                .iter()
                .any(|issue| issue.contains("matches no MCP name"))
        );
        let text = format!("{BASE}agents = [\"ghost\"]\n");
        assert!(
            issues(&text)
                .iter()
                .any(|issue| issue.contains("matches nobody"))
        );
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let found = issues("[profile\nname = 1\n");
        assert!(found[0].starts_with("p.toml:1:"), "{found:?}");
    }
}
