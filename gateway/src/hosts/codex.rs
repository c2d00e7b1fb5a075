//! Codex's `config.toml`: `[mcp_servers.NAME]` tables with `command`, `args`, `env` (stdio) or
//! `url` (Streamable HTTP, with `bearer_token_env_var` / `http_headers`). Edited with `toml_edit`
//! so comments, key order and formatting outside the changed values survive.

use std::path::Path;

use toml_edit::{Array, DocumentMut, InlineTable, Item, TableLike, Value};

use super::{HostError, Plan, Rewrite, ServerEntry, TRUSTOS_COMMAND, Transport};

fn invalid(path: &Path, message: impl Into<String>) -> HostError {
    HostError::ConfigInvalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn parse(path: &Path, text: &str) -> Result<DocumentMut, HostError> {
    text.parse::<DocumentMut>()
        .map_err(|err| invalid(path, err.to_string().trim_end().replace('\n', " ")))
}

/// Reads every `[mcp_servers.NAME]`.
pub fn read(path: &Path, text: &str) -> Result<Vec<ServerEntry>, HostError> {
    let doc = parse(path, text)?;
    let Some(servers) = doc.get("mcp_servers") else {
        return Ok(Vec::new());
    };
    let servers = servers
        .as_table_like()
        .ok_or_else(|| invalid(path, "`mcp_servers` must be a table"))?;
    servers
        .iter()
        .map(|(name, item)| {
            let table = item
                .as_table_like()
                .ok_or_else(|| invalid(path, format!("mcp_servers.{name} must be a table")))?;
            entry(path, name, table)
        })
        .collect()
}

fn entry(path: &Path, name: &str, table: &dyn TableLike) -> Result<ServerEntry, HostError> {
    let string = |key: &str| -> Result<Option<String>, HostError> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => item
                .as_str()
                .map(|s| Some(s.to_owned()))
                .ok_or_else(|| invalid(path, format!("mcp_servers.{name}.{key} must be a string"))),
        }
    };
    let command = string("command")?;
    let url = string("url")?;
    let args = match table.get("args") {
        None => Vec::new(),
        Some(item) => item
            .as_array()
            .and_then(|array| {
                array
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("mcp_servers.{name}.args must be an array of strings"),
                )
            })?,
    };
    let pairs = |key: &str| -> Vec<(String, String)> {
        table
            .get(key)
            .and_then(Item::as_table_like)
            .map(|t| {
                t.iter()
                    .map(|(k, v)| (k.to_owned(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let env = pairs("env");
    let mut headers: Vec<(String, bool)> = Vec::new();
    let mut header_values: Vec<(String, Option<String>)> = Vec::new();
    for (name, value) in pairs("http_headers") {
        headers.push((name.clone(), true));
        header_values.push((name, Some(value)));
    }
    for (name, variable) in pairs("env_http_headers") {
        headers.push((name.clone(), false));
        header_values.push((name, Some(format!("${{env:{variable}}}"))));
    }
    if table.contains_key("bearer_token") {
        headers.push(("bearer_token".to_owned(), true));
        header_values.push(("Authorization".to_owned(), None));
    }
    if let Some(variable) = table.get("bearer_token_env_var").and_then(Item::as_str) {
        headers.push(("bearer_token_env_var".to_owned(), false));
        header_values.push((
            "Authorization".to_owned(),
            Some(format!("Bearer ${{env:{variable}}}")),
        ));
    }
    let transport = match (&command, &url) {
        (Some(_), _) => Some(Transport::Stdio),
        (None, Some(_)) => Some(Transport::Http),
        (None, None) => None,
    };
    Ok(ServerEntry {
        name: name.to_owned(),
        scope: None,
        transport,
        command,
        args,
        env,
        url,
        headers,
        header_values,
    })
}

/// Replaces the value of `key`, keeping the spacing and comments around it.
fn set_keeping_decor(table: &mut dyn TableLike, key: &str, value: &str) {
    if let Some(item) = table.get_mut(key)
        && let Some(old) = item.as_value_mut()
    {
        let decor = old.decor().clone();
        let mut new = Value::from(value);
        *new.decor_mut() = decor;
        *old = new;
    }
}

/// Rewrites every server to run through the gateway (Codex speaks Streamable HTTP: URL servers
/// go to `/mcp/NAME` with an `http_headers` bearer token).
pub fn rewrite(path: &Path, text: &str, plan: &Plan) -> Result<Rewrite, HostError> {
    let entries = read(path, text)?;
    let mut doc = parse(path, text)?;
    let mut out = Rewrite::default();
    for entry in &entries {
        if entry.through_gateway().is_some() {
            out.already.push(entry.name.clone());
            continue;
        }
        let name = entry.gateway_name();
        let Some(table) = doc
            .get_mut("mcp_servers")
            .and_then(Item::as_table_like_mut)
            .and_then(|servers| servers.get_mut(&entry.name))
            .and_then(Item::as_table_like_mut)
        else {
            continue;
        };
        match entry.transport {
            None => {
                return Err(HostError::ServerIncomplete {
                    path: path.display().to_string(),
                    name: entry.name.clone(),
                });
            }
            Some(Transport::Stdio) => {
                let command = entry.command.clone().unwrap_or_default();
                let mut prefix = plan.shim_args(&name);
                prefix.push("--".to_owned());
                prefix.push(command.clone());
                set_keeping_decor(table, "command", TRUSTOS_COMMAND);
                match table.get_mut("args").and_then(Item::as_array_mut) {
                    Some(array) => prepend(array, &prefix),
                    None => {
                        let array: Array = prefix.iter().map(String::as_str).collect();
                        table.insert("args", Item::Value(Value::Array(array)));
                    }
                }
                out.changed.push(format!(
                    "{}: stdio → trustos mcp --server {name} -- {command}",
                    entry.name
                ));
            }
            Some(Transport::Http) => {
                let moved = super::json_host::check_headers(path, entry, true)?;
                let url = entry.url.clone().unwrap_or_default();
                let gateway_url = plan.gateway_url(&name);
                set_keeping_decor(table, "url", &gateway_url);
                // The upstream's own auth moves into gateway.toml with the URL.
                for key in ["env_http_headers", "bearer_token_env_var"] {
                    table.remove(key);
                }
                let mut headers = InlineTable::new();
                headers.insert(
                    "Authorization",
                    Value::from(format!("Bearer {}", plan.token)),
                );
                table.insert("http_headers", Item::Value(Value::InlineTable(headers)));
                out.gateway_servers.push((name.clone(), url.clone(), moved));
                out.changed
                    .push(format!("{}: {url} → {gateway_url}", entry.name));
            }
        }
    }
    out.text = if out.changed.is_empty() {
        text.to_owned()
    } else {
        doc.to_string()
    };
    Ok(out)
}

/// Inserts `items` before the array's first element, laid out like the array was.
fn prepend(array: &mut Array, items: &[String]) {
    let first_prefix = array
        .get(0)
        .and_then(|v| v.decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or("")
        .to_owned();
    let later_prefix = match array
        .get(1)
        .and_then(|v| v.decor().prefix())
        .and_then(|p| p.as_str())
    {
        Some(prefix) => prefix.to_owned(),
        None if first_prefix.contains('\n') => first_prefix.clone(),
        None => " ".to_owned(),
    };
    let had = array.len();
    for (index, item) in items.iter().enumerate() {
        let mut value = Value::from(item.as_str());
        let prefix = if index == 0 {
            &first_prefix
        } else {
            &later_prefix
        };
        value.decor_mut().set_prefix(prefix.as_str());
        value.decor_mut().set_suffix("");
        array.insert_formatted(index, value);
    }
    if had > 0
        && let Some(original_first) = array.get_mut(items.len())
    {
        original_first.decor_mut().set_prefix(later_prefix.as_str());
    }
}
