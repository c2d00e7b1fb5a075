//! `trustos audit hosts`: find every known agent host config on the machine, list every MCP
//! server with whether it goes through the gateway, and exit 1 if any bypasses it — or hands a
//! payment credential to a tool server (named by variable, never by value).
//!
//! User-level configs are looked up under `$HOME`; project-level ones (`.mcp.json`,
//! `.cursor/mcp.json`, `.vscode/mcp.json`, `.codex/config.toml`) in the current directory. With
//! `--root DIR`, `$HOME` is resolved under DIR as if DIR were `/` (`--root /mnt/img` with
//! `HOME=/home/ana` reads `/mnt/img/home/ana/.cursor/mcp.json`); project configs are still read
//! in the current directory. Codex's user config is `$CODEX_HOME/config.toml` when `CODEX_HOME`
//! is set and non-empty (resolved under `--root` too), else `~/.codex/config.toml`.

use std::fs;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::hosts::credentials::payment_credential;
use crate::hosts::registry::UserDirs;
use crate::hosts::{self, Host};

/// One server in the report.
#[derive(Debug, Serialize)]
struct ServerRow {
    host: &'static str,
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    name: String,
    transport: Option<&'static str>,
    gateway: bool,
    why: String,
    credentials: Vec<CredentialRow>,
}

/// A payment credential in a server's env.
#[derive(Debug, Serialize)]
struct CredentialRow {
    variable: String,
    why: &'static str,
}

/// A config file that could not be read.
#[derive(Debug, Serialize)]
struct FileProblem {
    host: &'static str,
    file: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct Report {
    files: Vec<String>,
    servers: Vec<ServerRow>,
    problems: Vec<FileProblem>,
    bypassing: usize,
    credentials: usize,
}

fn under_root(root: &Path, path: &Path) -> PathBuf {
    path.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .fold(root.to_path_buf(), |acc, c| acc.join(c))
}

/// Runs `trustos audit hosts`.
pub fn run(json: bool, root: Option<&Path>) -> u8 {
    let Some(home) = std::env::var_os("HOME").map(PathBuf::from) else {
        eprintln!("trustos audit hosts: HOME is not set");
        return EXIT_USAGE;
    };
    if let Some(root) = root
        && !root.is_dir()
    {
        eprintln!(
            "trustos audit hosts: --root {}: not a directory",
            root.display()
        );
        return EXIT_USAGE;
    }
    let user = UserDirs::from_env(home);
    let user = match root {
        Some(root) => user.map(|dir| under_root(root, dir)),
        None => user,
    };
    let project = match std::env::current_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("trustos audit hosts: current directory: {err}");
            return EXIT_USAGE;
        }
    };
    let mut report = Report {
        files: Vec::new(),
        servers: Vec::new(),
        problems: Vec::new(),
        bypassing: 0,
        credentials: 0,
    };
    let mut seen: Vec<PathBuf> = Vec::new();
    for host in Host::ALL {
        for path in host.candidates(&user, &project) {
            if !path.is_file() || seen.contains(&path) {
                continue;
            }
            seen.push(path.clone());
            let file = path.display().to_string();
            report.files.push(file.clone());
            let entries = fs::read(&path)
                .map_err(|err| err.to_string())
                .and_then(|bytes| String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned()))
                .and_then(|text| {
                    hosts::read_servers(host, &path, &text).map_err(|err| err.to_string())
                });
            let entries = match entries {
                Ok(entries) => entries,
                Err(error) => {
                    report.problems.push(FileProblem {
                        host: host.name(),
                        file,
                        error,
                    });
                    continue;
                }
            };
            for entry in entries {
                let credentials: Vec<CredentialRow> = entry
                    .env
                    .iter()
                    .filter_map(|(variable, value)| {
                        payment_credential(variable, value).map(|why| CredentialRow {
                            variable: variable.clone(),
                            why,
                        })
                    })
                    .collect();
                let (gateway, why) = match entry.through_gateway() {
                    Some(how) => (true, how.to_owned()),
                    None => (false, entry.bypass_reason()),
                };
                if !gateway {
                    report.bypassing += 1;
                }
                report.credentials += credentials.len();
                report.servers.push(ServerRow {
                    host: host.name(),
                    file: file.clone(),
                    scope: entry.scope.clone(),
                    name: entry.name.clone(),
                    transport: entry.transport.map(|t| t.as_str()),
                    gateway,
                    why,
                    credentials,
                });
            }
        }
    }
    let failing = report.bypassing > 0 || report.credentials > 0 || !report.problems.is_empty();
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => out!("{text}"),
            Err(err) => {
                eprintln!("trustos audit hosts: {err}");
                return EXIT_USAGE;
            }
        }
    } else {
        print_text(&report);
    }
    if failing { EXIT_INVALID } else { EXIT_OK }
}

fn print_text(report: &Report) {
    if report.files.is_empty() {
        out!("no agent host config found");
    }
    for row in &report.servers {
        let scope = row
            .scope
            .as_deref()
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        out!(
            "{}  {:<14} {:<24} {:<5} {}{scope}  ({})  {}",
            if row.gateway { "ok    " } else { "BYPASS" },
            row.host,
            row.name,
            row.transport.unwrap_or("?"),
            row.file,
            row.why,
            ""
        );
        for credential in &row.credentials {
            out!(
                "CREDENTIAL {:<14} {:<24} {} gets {} ({}): move it into gateway.toml's [x402]/[circle]",
                row.host,
                row.name,
                row.file,
                credential.variable,
                credential.why
            );
        }
    }
    for problem in &report.problems {
        out!(
            "UNREADABLE {:<14} {}: {}",
            problem.host,
            problem.file,
            problem.error
        );
    }
    out!(
        "{} server(s) in {} file(s): {} bypass the gateway, {} payment credential(s) handed to tool servers{}",
        report.servers.len(),
        report.files.len(),
        report.bypassing,
        report.credentials,
        if report.problems.is_empty() {
            String::new()
        } else {
            format!(", {} unreadable file(s)", report.problems.len())
        }
    );
}
