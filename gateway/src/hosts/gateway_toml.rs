//! What onboarding adds to `$TRUSTOS_HOME/gateway.toml` for URL servers that hosts now reach at
//! `/mcp/NAME`: `[servers.NAME] url = "<the upstream the host had>"`, one `[[tokens]]` entry
//! for the host's bearer token (stored as its SHA-256, never in the clear), and
//! `[gateway] listen` when the HTTP front was not listening yet. Edited with `toml_edit`: the
//! file's comments and layout stay.

use std::fs;
use std::path::{Path, PathBuf};

use toml_edit::{Array, ArrayOfTables, DocumentMut, Item, Table, value};
use trustos_kernel::canonical::Digest;

use super::HostError;
use crate::config::{CONFIG_FILE, GatewayConfig};

/// The address onboarding gives the HTTP front when `gateway.toml` names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8790";

/// `gateway.toml` of a home, read.
pub struct GatewayToml {
    /// Its path.
    pub path: PathBuf,
    /// Its text (empty when there is none).
    pub text: String,
    config: GatewayConfig,
}

impl GatewayToml {
    /// Reads (and checks) the home's `gateway.toml`; a missing file is an empty one.
    pub fn load(home: &Path) -> Result<Self, HostError> {
        let path = home.join(CONFIG_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => return Err(HostError::io(&path, &err)),
        };
        let config = GatewayConfig::parse(&text).map_err(|message| HostError::GatewayConfig {
            path: path.display().to_string(),
            message,
        })?;
        Ok(Self { path, text, config })
    }

    /// The HTTP base hosts reach the front at (`http://127.0.0.1:8790`).
    pub fn base_url(&self) -> String {
        let listen = self
            .config
            .gateway
            .listen
            .clone()
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:");
        format!("http://{listen}")
    }

    /// The text with `servers` (gateway name, upstream URL, headers) served and `token`
    /// admitted for them; `None` when nothing needs adding.
    pub fn with_servers(
        &self,
        servers: &[super::GatewayServer],
        token: &str,
    ) -> Result<Option<String>, HostError> {
        if servers.is_empty() {
            return Ok(None);
        }
        let invalid = |message: String| HostError::GatewayConfig {
            path: self.path.display().to_string(),
            message,
        };
        let mut doc: DocumentMut = self
            .text
            .parse()
            .map_err(|err: toml_edit::TomlError| invalid(err.to_string()))?;
        if self.config.gateway.listen.is_none() {
            let gateway = doc
                .entry("gateway")
                .or_insert_with(|| Item::Table(Table::new()));
            let Some(gateway) = gateway.as_table_like_mut() else {
                return Err(invalid("[gateway] must be a table".to_owned()));
            };
            gateway.insert("listen", value(DEFAULT_LISTEN));
        }
        let mut names = Array::new();
        for (name, url, headers) in servers {
            if let Some(existing) = self.config.servers.get(name) {
                let existing = existing
                    .url
                    .clone()
                    .unwrap_or_else(|| existing.command.join(" "));
                if &existing == url {
                    names.push(name.as_str());
                    continue;
                }
                return Err(HostError::ServerConflict {
                    gateway: self.path.display().to_string(),
                    name: name.clone(),
                    existing,
                    wanted: url.clone(),
                });
            }
            let table = doc.entry("servers").or_insert_with(|| {
                let mut table = Table::new();
                table.set_implicit(true);
                Item::Table(table)
            });
            let Some(table) = table.as_table_like_mut() else {
                return Err(invalid("`servers` must be a table".to_owned()));
            };
            if let Some(entry) = table.get(name) {
                let existing = entry.get("url").and_then(Item::as_str).unwrap_or("");
                if existing != url {
                    return Err(HostError::ServerConflict {
                        gateway: self.path.display().to_string(),
                        name: name.clone(),
                        existing: existing.to_owned(),
                        wanted: url.clone(),
                    });
                }
                continue;
            }
            let mut server = Table::new();
            server.insert("url", value(url.as_str()));
            if !headers.is_empty() {
                let mut moved = toml_edit::InlineTable::new();
                for (header, header_value) in headers {
                    moved.insert(header, header_value.as_str().into());
                }
                server.insert("headers", value(moved));
            }
            table.insert(name, Item::Table(server));
            names.push(name.as_str());
        }
        let mut entry = Table::new();
        entry.insert(
            "token_sha256",
            value(Digest::of(token.as_bytes()).to_string()),
        );
        entry.insert("tenant", value(self.config.gateway.tenant.as_str()));
        entry.insert("agent", value(self.config.gateway.agent.as_str()));
        entry.insert("servers", value(names));
        match doc
            .entry("tokens")
            .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()))
        {
            Item::ArrayOfTables(tokens) => tokens.push(entry),
            _ => return Err(invalid("`tokens` must be an array of tables".to_owned())),
        }
        let text = doc.to_string();
        GatewayConfig::parse(&text).map_err(invalid)?;
        Ok(Some(text))
    }
}
