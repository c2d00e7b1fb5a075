//! Agent hosts and their MCP configuration files: where each host keeps its servers, how to read
//! them, and how `trustos onboard` rewrites them to run through the gateway (used by
//! `trustos onboard` and `trustos audit hosts`).
//!
//! - [`registry`]: the known hosts, their config files on macOS, Linux and Windows, and where in
//!   each file the servers live.
//! - [`jsonspan`]: a span-recording JSON scanner; JSON files are edited by splicing bytes.
//! - [`json_host`]: reading and rewriting the JSON hosts' server entries.
//! - [`codex`]: reading and rewriting Codex's `config.toml` with `toml_edit`.
//! - [`credentials`]: payment credentials handed to a tool server in its `env`.
//! - [`gateway_toml`]: adding `[servers.NAME]` and a `[[tokens]]` entry to `gateway.toml`.
//! - [`files`]: atomic writes, backups, the record of what onboarding wrote (so `--undo` can
//!   tell whether the file was edited since) and a unified diff.

pub mod codex;
pub mod credentials;
pub mod files;
pub mod gateway_toml;
pub mod json_host;
pub mod jsonspan;
pub mod registry;

use std::path::{Path, PathBuf};

pub use registry::Host;

/// How a host reaches a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The host launches a command and speaks MCP over its stdin/stdout.
    Stdio,
    /// The host connects to a URL (Streamable HTTP or SSE).
    Http,
}

impl Transport {
    /// `stdio` or `http`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdio => "stdio",
            Self::Http => "http",
        }
    }
}

/// One MCP server entry as a host config declares it.
#[derive(Clone, Debug)]
pub struct ServerEntry {
    /// The entry's name (its key in the host config).
    pub name: String,
    /// Where in the file it sits beyond the usual place (`projects./path` for `~/.claude.json`).
    pub scope: Option<String>,
    /// Its transport; `None` when it has neither a command nor a URL.
    pub transport: Option<Transport>,
    /// The command of a stdio server.
    pub command: Option<String>,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its environment, in file order.
    pub env: Vec<(String, String)>,
    /// The URL of an HTTP server.
    pub url: Option<String>,
    /// Names of headers (or auth settings) it sends to its URL, with whether the value is written
    /// in the file (not an environment reference).
    pub headers: Vec<(String, bool)>,
    /// The same headers as the gateway's `[servers.NAME] headers` would carry them: the header
    /// name and its value, environment references as `${env:NAME}`; `None` for a value the
    /// gateway cannot take over (a host-specific reference such as VS Code's `${input:…}`).
    pub header_values: Vec<(String, Option<String>)>,
}

/// A URL server moving behind the gateway: its name there, its upstream URL and the headers it
/// sent (environment references kept as `${env:NAME}`).
pub type GatewayServer = (String, String, Vec<(String, String)>);

/// The command name the wrapped entries run.
pub const TRUSTOS_COMMAND: &str = "trustos";

impl ServerEntry {
    /// Whether the entry already runs through the gateway, and how.
    pub fn through_gateway(&self) -> Option<&'static str> {
        if let Some(command) = &self.command {
            let base = Path::new(command)
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or(command);
            let base = base.strip_suffix(".exe").unwrap_or(base);
            if base == TRUSTOS_COMMAND && self.args.first().map(String::as_str) == Some("mcp") {
                return Some("runs through the stdio shim `trustos mcp`");
            }
            return None;
        }
        if let Some(url) = &self.url
            && is_gateway_url(url)
        {
            return Some("connects to the gateway's /mcp/NAME on this machine");
        }
        None
    }

    /// Why it does not go through the gateway.
    pub fn bypass_reason(&self) -> String {
        match (&self.command, &self.url) {
            (Some(command), _) => format!("launches `{command}` directly"),
            (None, Some(url)) => format!("connects to {url} directly"),
            (None, None) => "has neither a command nor a url".to_owned(),
        }
    }

    /// The name to use as the gateway's server name: the entry's, with characters the gateway
    /// does not accept in names replaced by `-`.
    pub fn gateway_name(&self) -> String {
        let mut name: String = self
            .name
            .chars()
            .map(|ch| {
                if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' || ch == '.' {
                    ch
                } else {
                    '-'
                }
            })
            .take(64)
            .collect();
        if name.is_empty() {
            name.push_str("server");
        }
        name
    }
}

/// Whether `url` is a gateway's `/mcp/NAME` on a loopback address.
pub fn is_gateway_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    matches!(host, "127.0.0.1" | "localhost" | "[::1]") && path.starts_with("/mcp/")
}

/// What `onboard` needs to rewrite entries.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The gateway's HTTP base (`http://127.0.0.1:8790`).
    pub gateway_base: String,
    /// The bearer token the host presents at `/mcp/NAME`.
    pub token: String,
    /// `--home DIR` to pass to the shim, when the home is not the default.
    pub home_arg: Option<String>,
}

impl Plan {
    /// The shim's arguments before the upstream (`mcp [--home DIR] --server NAME`).
    pub fn shim_args(&self, name: &str) -> Vec<String> {
        let mut args = vec!["mcp".to_owned()];
        if let Some(home) = &self.home_arg {
            args.push("--home".to_owned());
            args.push(home.clone());
        }
        args.push("--server".to_owned());
        args.push(name.to_owned());
        args
    }

    /// The gateway URL of a server.
    pub fn gateway_url(&self, name: &str) -> String {
        format!("{}/mcp/{name}", self.gateway_base)
    }
}

/// What onboarding one file changed.
#[derive(Clone, Debug, Default)]
pub struct Rewrite {
    /// The new text.
    pub text: String,
    /// One line per changed entry.
    pub changed: Vec<String>,
    /// Entries already wrapped (left as they were).
    pub already: Vec<String>,
    /// URL servers now reached through `/mcp/NAME`: (gateway name, upstream URL).
    pub gateway_servers: Vec<GatewayServer>,
}

/// Why a host config could not be read or onboarded. Each has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file is not valid JSON / TOML, or its servers are not where the host keeps them.
    #[error("ONBOARD_CONFIG_INVALID: {path}: {message}; nothing was written")]
    ConfigInvalid {
        /// The file.
        path: String,
        /// What is wrong, located.
        message: String,
    },
    /// A server has neither a command nor a URL.
    #[error(
        "ONBOARD_SERVER_INCOMPLETE: {path}: server {name:?} has neither `command` nor a URL; fix or remove it first; nothing was written"
    )]
    ServerIncomplete {
        /// The file.
        path: String,
        /// The server.
        name: String,
    },
    /// A URL server sends credentials written in the file.
    #[error(
        "ONBOARD_SECRET_INLINE: {path}: server {name:?} sends {header} with a secret written in the file; write it as an environment reference (`${{env:NAME}}`, or the host's own form) and run again: onboarding moves the header into gateway.toml and would copy the secret; nothing was written"
    )]
    SecretInline {
        /// The file.
        path: String,
        /// The server.
        name: String,
        /// The header (or setting) name.
        header: String,
    },
    /// A URL server sends headers the gateway cannot forward.
    #[error(
        "ONBOARD_UPSTREAM_HEADERS: {path}: server {name:?} sends {header} to its URL in a form the gateway cannot take over (this host reaches the gateway through the stdio shim, or the value is a host-specific reference); nothing was written"
    )]
    UpstreamHeaders {
        /// The file.
        path: String,
        /// The server.
        name: String,
        /// The header (or setting) name.
        header: String,
    },
    /// The file (or its directory) cannot be written.
    #[error(
        "ONBOARD_READ_ONLY: {path} is read-only; make it writable and run again; nothing was written"
    )]
    ReadOnly {
        /// The file.
        path: String,
    },
    /// `--undo` without a backup.
    #[error("ONBOARD_NO_BACKUP: {path}: no backup to restore (onboard never changed this file)")]
    NoBackup {
        /// The backup file that is missing.
        path: String,
    },
    /// `--undo` would throw away changes made to the file after onboarding wrote it.
    #[error(
        "ONBOARD_EDITED_AFTER_ONBOARD: {path} {why}; --undo would replace it with {backup} (the original from before onboarding) and lose those changes; pass --force to restore the original anyway; nothing was written"
    )]
    EditedAfterOnboard {
        /// The host config.
        path: String,
        /// Its backup.
        backup: String,
        /// What changed, in words.
        why: &'static str,
    },
    /// The gateway already serves a different upstream under the name.
    #[error(
        "ONBOARD_SERVER_CONFLICT: {gateway}: [servers.{name}] already points at {existing}, not {wanted}; rename one of them; nothing was written"
    )]
    ServerConflict {
        /// gateway.toml.
        gateway: String,
        /// The server name.
        name: String,
        /// Its URL there.
        existing: String,
        /// The URL the host had.
        wanted: String,
    },
    /// gateway.toml is not valid.
    #[error("ONBOARD_GATEWAY_CONFIG: {path}: {message}; nothing was written")]
    GatewayConfig {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Reading or writing failed.
    #[error("ONBOARD_IO: {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        message: String,
    },
}

impl HostError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, err: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            message: err.to_string(),
        }
    }
}

/// Reads the servers of a host config file.
pub fn read_servers(host: Host, path: &Path, text: &str) -> Result<Vec<ServerEntry>, HostError> {
    if host == Host::Codex {
        codex::read(path, text)
    } else {
        json_host::read(host, path, text)
    }
}

/// Rewrites a host config file's servers to run through the gateway.
pub fn rewrite(host: Host, path: &Path, text: &str, plan: &Plan) -> Result<Rewrite, HostError> {
    if host == Host::Codex {
        codex::rewrite(path, text, plan)
    } else {
        json_host::rewrite(host, path, text, plan)
    }
}

/// The backup of a host config: `<file>.trustos-backup`, next to it.
pub fn backup_path(path: &Path) -> PathBuf {
    sibling(path, ".trustos-backup")
}

/// The record of what onboarding last wrote to a host config: `<file>.trustos-written`, next to
/// it, holding the SHA-256 of the bytes written (see [`files::WrittenRecord`]).
pub fn written_path(path: &Path) -> PathBuf {
    sibling(path, ".trustos-written")
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}
