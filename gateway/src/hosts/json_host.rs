//! The JSON hosts (all but Codex): read their server entries and rewrite them by splicing bytes.
//!
//! Only the values that change are replaced (`command`, the start of `args`, `url` /
//! `serverUrl`, `type: "sse"`), and new members are written in the file's own style (its
//! newline, the indentation of the neighbouring key, one-line arrays when the original was one
//! line). Everything else — other keys, their order, comments, CRLF, escapes, unicode — keeps its
//! bytes.

use std::ops::Range;
use std::path::Path;

use super::jsonspan::{self, Member, Node, quote, splice};
use super::{Host, HostError, Plan, Rewrite, ServerEntry, TRUSTOS_COMMAND, Transport};

/// A server entry with the nodes it was read from.
struct Located<'a> {
    entry: ServerEntry,
    node: &'a Node,
}

fn invalid(path: &Path, message: impl Into<String>) -> HostError {
    HostError::ConfigInvalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Reads every server entry of a JSON host file.
pub fn read(host: Host, path: &Path, text: &str) -> Result<Vec<ServerEntry>, HostError> {
    let doc = jsonspan::parse(text).map_err(|err| invalid(path, err.to_string()))?;
    Ok(locate(host, path, &doc)?
        .into_iter()
        .map(|located| located.entry)
        .collect())
}

fn locate<'a>(host: Host, path: &Path, doc: &'a Node) -> Result<Vec<Located<'a>>, HostError> {
    if doc.members().is_none() {
        return Err(invalid(path, "the file must hold a JSON object"));
    }
    let mut found = Vec::new();
    for server_path in host.server_paths(path) {
        let mut maps: Vec<(Option<String>, &Node)> = vec![(None, doc)];
        for (depth, key) in server_path.iter().enumerate() {
            let mut next = Vec::new();
            for (scope, node) in maps {
                let Some(members) = node.members() else {
                    return Err(invalid(
                        path,
                        format!("`{}` must be an object", server_path[..depth].join(".")),
                    ));
                };
                if *key == "*" {
                    for member in members {
                        let scope = format!("{}.{}", server_path[..depth].join("."), member.key);
                        next.push((Some(scope), &member.value));
                    }
                } else if let Some(child) = node.get(key) {
                    next.push((scope, child));
                }
            }
            maps = next;
        }
        for (scope, map) in maps {
            let Some(members) = map.members() else {
                return Err(invalid(
                    path,
                    format!("`{}` must be an object of servers", server_path.join(".")),
                ));
            };
            for member in members {
                found.push(Located {
                    entry: entry(host, path, member, scope.clone())?,
                    node: &member.value,
                });
            }
        }
    }
    Ok(found)
}

fn entry(
    host: Host,
    path: &Path,
    member: &Member,
    scope: Option<String>,
) -> Result<ServerEntry, HostError> {
    let node = &member.value;
    if node.members().is_none() {
        return Err(invalid(
            path,
            format!("server {:?} must be an object", member.key),
        ));
    }
    let string = |key: &str| -> Result<Option<String>, HostError> {
        match node.get(key) {
            None => Ok(None),
            Some(value) => value.as_str().map(|s| Some(s.to_owned())).ok_or_else(|| {
                invalid(
                    path,
                    format!("server {:?}: `{key}` must be a string", member.key),
                )
            }),
        }
    };
    let command = string("command")?;
    let url = match url_member(host, node) {
        Some(url) => Some(url.value.as_str().map(str::to_owned).ok_or_else(|| {
            invalid(
                path,
                format!("server {:?}: `{}` must be a string", member.key, url.key),
            )
        })?),
        None => None,
    };
    let args = match node.get("args") {
        None => Vec::new(),
        Some(args) => args
            .elements()
            .and_then(|items| {
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "server {:?}: `args` must be an array of strings",
                        member.key
                    ),
                )
            })?,
    };
    let pairs = |key: &str| -> Vec<(String, String)> {
        node.get(key)
            .and_then(Node::members)
            .map(|members| {
                members
                    .iter()
                    .map(|m| {
                        (
                            m.key.clone(),
                            m.value.as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = pairs("env");
    let raw_headers = pairs("headers");
    let headers = raw_headers
        .iter()
        .map(|(name, value)| (name.clone(), !value.contains("${")))
        .collect();
    let header_values = raw_headers
        .into_iter()
        .map(|(name, value)| {
            let value = gateway_header_value(&value);
            (name, value)
        })
        .collect();
    let transport = match (&command, &url) {
        (Some(_), _) => Some(Transport::Stdio),
        (None, Some(_)) => Some(Transport::Http),
        (None, None) => None,
    };
    Ok(ServerEntry {
        name: member.key.clone(),
        scope,
        transport,
        command,
        args,
        env,
        url,
        headers,
        header_values,
    })
}

/// A host's header value as the gateway's `[servers.NAME] headers` takes it: `${env:NAME}`
/// (VS Code, Cursor) kept, `${NAME}` (Claude Code) written as `${env:NAME}`, literal text kept;
/// `None` for other references (`${input:…}`, `${workspaceFolder}`…) the gateway cannot resolve.
pub fn gateway_header_value(value: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let reference = &after[..end];
        let variable = reference.strip_prefix("env:").unwrap_or(reference);
        if variable.is_empty()
            || !variable
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return None;
        }
        out.push_str("${env:");
        out.push_str(variable);
        out.push('}');
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn url_member(host: Host, node: &Node) -> Option<&Member> {
    host.url_keys()
        .iter()
        .chain(["url", "serverUrl"].iter())
        .find_map(|key| node.member(key))
}

/// Whether a header name carries credentials.
pub fn secret_header(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    ["auth", "token", "key", "secret", "cookie", "password"]
        .iter()
        .any(|word| lower.contains(word))
}

/// Checks that a URL server's headers can move into the gateway's `[servers.NAME] headers`: no
/// secret written in the file (it would be copied), every value in a form the gateway resolves,
/// and a host that reaches the gateway over HTTP (`moves`; through the stdio shim's `--url`
/// there is nowhere to put them). The headers that move.
pub fn check_headers(
    path: &Path,
    entry: &ServerEntry,
    moves: bool,
) -> Result<Vec<(String, String)>, HostError> {
    if let Some((header, _)) = entry
        .headers
        .iter()
        .find(|(name, inline)| *inline && secret_header(name))
    {
        return Err(HostError::SecretInline {
            path: path.display().to_string(),
            name: entry.name.clone(),
            header: header.clone(),
        });
    }
    let refused = |header: &str| HostError::UpstreamHeaders {
        path: path.display().to_string(),
        name: entry.name.clone(),
        header: header.to_owned(),
    };
    if let (false, Some((header, _))) = (moves, entry.header_values.first()) {
        return Err(refused(header));
    }
    entry
        .header_values
        .iter()
        .map(|(name, value)| match value {
            Some(value) => Ok((name.clone(), value.clone())),
            None => Err(refused(name)),
        })
        .collect()
}

/// The whitespace before `pos` on its line, when only whitespace precedes it.
fn line_indent(text: &str, pos: usize) -> Option<&str> {
    let start = text[..pos].rfind('\n').map_or(0, |at| at + 1);
    let indent = &text[start..pos];
    indent
        .chars()
        .all(|ch| ch == ' ' || ch == '\t')
        .then_some(indent)
}

struct Style<'a> {
    text: &'a str,
    newline: &'static str,
}

impl Style<'_> {
    /// Text inserting a new member `"key": value` right after the member ending at `after`, in
    /// the object `object`, laid out like the member starting at `sibling_key`.
    fn new_member(&self, object: &Node, sibling_key: usize, key: &str, value: &str) -> String {
        let multiline = self.text[object.span.clone()].contains('\n');
        match (multiline, line_indent(self.text, sibling_key)) {
            (true, Some(indent)) => format!(",{}{indent}{}: {value}", self.newline, quote(key)),
            _ => format!(", {}: {value}", quote(key)),
        }
    }
}

fn one_line(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// Rewrites every server of a JSON host file to run through the gateway.
pub fn rewrite(host: Host, path: &Path, text: &str, plan: &Plan) -> Result<Rewrite, HostError> {
    let doc = jsonspan::parse(text).map_err(|err| invalid(path, err.to_string()))?;
    let located = locate(host, path, &doc)?;
    let style = Style {
        text,
        newline: if text.contains("\r\n") { "\r\n" } else { "\n" },
    };
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut out = Rewrite::default();
    for Located { entry, node } in &located {
        let label = match &entry.scope {
            Some(scope) => format!("{} ({scope})", entry.name),
            None => entry.name.clone(),
        };
        if entry.through_gateway().is_some() {
            out.already.push(label);
            continue;
        }
        let name = entry.gateway_name();
        match entry.transport {
            None => {
                return Err(HostError::ServerIncomplete {
                    path: path.display().to_string(),
                    name: entry.name.clone(),
                });
            }
            Some(Transport::Stdio) => {
                stdio_edits(&style, node, &name, plan, &mut edits);
                out.changed.push(format!(
                    "{label}: stdio → trustos mcp --server {name} -- {}",
                    entry.command.as_deref().unwrap_or_default()
                ));
            }
            Some(Transport::Http) => {
                let moved = check_headers(path, entry, host.speaks_http())?;
                let url = entry.url.clone().unwrap_or_default();
                let Some(url_member) = url_member(host, node) else {
                    continue;
                };
                if host.speaks_http() {
                    let gateway_url = plan.gateway_url(&name);
                    edits.push((url_member.value.span.clone(), quote(&gateway_url)));
                    let bearer = format!(
                        "{{{}: {}}}",
                        quote("Authorization"),
                        quote(&format!("Bearer {}", plan.token))
                    );
                    match node.member("headers") {
                        Some(headers) => edits.push((headers.value.span.clone(), bearer)),
                        None => edits.push((
                            url_member.value.span.end..url_member.value.span.end,
                            style.new_member(node, url_member.key_span.start, "headers", &bearer),
                        )),
                    }
                    if let Some(kind) = node.member("type")
                        && kind.value.as_str() == Some("sse")
                    {
                        edits.push((kind.value.span.clone(), quote("http")));
                    }
                    out.gateway_servers.push((name.clone(), url.clone(), moved));
                    out.changed.push(format!("{label}: {url} → {gateway_url}"));
                } else {
                    let mut items: Vec<String> =
                        plan.shim_args(&name).iter().map(|a| quote(a)).collect();
                    items.push(quote("--url"));
                    items.push(quote(&url));
                    let multiline = text[node.span.clone()].contains('\n');
                    let between = match line_indent(text, url_member.key_span.start) {
                        Some(indent) if multiline => format!(",{}{indent}", style.newline),
                        _ => ", ".to_owned(),
                    };
                    let replacement = format!(
                        "{}: {}{between}{}: {}",
                        quote("command"),
                        quote(TRUSTOS_COMMAND),
                        quote("args"),
                        one_line(&items)
                    );
                    edits.push((
                        url_member.key_span.start..url_member.value.span.end,
                        replacement,
                    ));
                    if let Some(kind) = node.member("type") {
                        edits.push((kind.value.span.clone(), quote("stdio")));
                    }
                    out.changed.push(format!(
                        "{label}: {url} → trustos mcp --server {name} --url {url}"
                    ));
                }
            }
        }
    }
    out.text = splice(text, edits);
    if !out.changed.is_empty() {
        // The result must read back, every entry through the gateway.
        let again = read(host, path, &out.text)?;
        if let Some(left) = again.iter().find(|entry| entry.through_gateway().is_none()) {
            return Err(invalid(
                path,
                format!("internal: server {:?} was not rewritten", left.name),
            ));
        }
    }
    Ok(out)
}

fn stdio_edits(
    style: &Style<'_>,
    node: &Node,
    name: &str,
    plan: &Plan,
    edits: &mut Vec<(Range<usize>, String)>,
) {
    let text = style.text;
    let Some(command) = node.member("command") else {
        return;
    };
    let mut items: Vec<String> = plan.shim_args(name).iter().map(|a| quote(a)).collect();
    items.push(quote("--"));
    // The original command, as its bytes were written.
    items.push(text[command.value.span.clone()].to_owned());
    edits.push((command.value.span.clone(), quote(TRUSTOS_COMMAND)));
    match node
        .get("args")
        .and_then(|args| args.elements().map(|e| (args, e)))
    {
        Some((args, [])) => edits.push((args.span.clone(), one_line(&items))),
        Some((args, elements)) => {
            let first = &elements[0];
            let between = elements
                .get(1)
                .map(|second| &text[first.span.end..second.span.start])
                .filter(|sep| sep.trim() == ",");
            let multiline = text[args.span.clone()].contains('\n');
            let sep = match (between, multiline, line_indent(text, first.span.start)) {
                (Some(sep), _, _) => sep.to_owned(),
                (None, true, Some(indent)) => format!(",{}{indent}", style.newline),
                _ => ", ".to_owned(),
            };
            let inserted: String = items.iter().map(|item| format!("{item}{sep}")).collect();
            edits.push((first.span.start..first.span.start, inserted));
        }
        None => edits.push((
            command.value.span.end..command.value.span.end,
            style.new_member(node, command.key_span.start, "args", &one_line(&items)),
        )),
    }
}
