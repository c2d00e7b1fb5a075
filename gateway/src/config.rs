//! `gateway.toml`: what a daemon serves and who may talk to it.
//!
//! Read strictly (unknown keys are errors, each located by its TOML path). Paths are relative
//! to `$TRUSTOS_HOME`. Bearer tokens are stored as SHA-256 digests, never in the clear.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::PublicKey;

use crate::keyfile;

/// File name of the configuration inside the home.
pub const CONFIG_FILE: &str = "gateway.toml";

/// The whole `gateway.toml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Daemon settings.
    #[serde(default)]
    pub gateway: Settings,
    /// Upstream MCP servers the HTTP front serves as `/mcp/NAME`.
    #[serde(default)]
    pub servers: BTreeMap<String, ServerConfig>,
    /// Bearer tokens for the HTTP front.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Operator public keys by approver name (the names a profile's `[challenge]` lists).
    #[serde(default)]
    pub approvers: BTreeMap<String, PathBuf>,
    /// HTTP APIs the gateway reverse-proxies as `/http/NAME/…`.
    #[serde(default)]
    pub http: BTreeMap<String, HttpUpstreamConfig>,
    /// The x402 rail: the gateway's payer key and the assets it pays in.
    #[serde(default)]
    pub x402: Option<X402Config>,
    /// The Circle rail: W3S credentials, the source wallet and the tokens it may send.
    #[serde(default)]
    pub circle: Option<CircleConfig>,
}

/// The Circle rail's settings (`[circle]`). The API key comes from exactly one of
/// `api_key_file` / `api_key_env`, the entity secret from exactly one of `entity_secret_file` /
/// `entity_secret_env`; files must be readable by their owner only. Neither secret is ever
/// logged: this table holds only where they are.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircleConfig {
    /// W3S API base URL (default `https://api.circle.com`; `http://` only to a loopback host).
    #[serde(default = "default_circle_base_url")]
    pub base_url: String,
    /// A file holding the API key (`TEST_API_KEY:ID:SECRET`), relative to the home (mode 0600).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// The name of an environment variable holding the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// A file holding the entity secret (64 hex digits), relative to the home (mode 0600).
    #[serde(default)]
    pub entity_secret_file: Option<PathBuf>,
    /// The name of an environment variable holding the entity secret.
    #[serde(default)]
    pub entity_secret_env: Option<String>,
    /// When set, the API key's prefix must belong to this environment.
    #[serde(default)]
    pub environment: Option<CircleEnvironmentName>,
    /// The developer-controlled wallet transfers are sent from.
    pub wallet_id: String,
    /// That wallet's address (shown to operators; not sent to Circle).
    #[serde(default)]
    pub wallet_address: Option<String>,
    /// Circle's fee level for transfers (default `MEDIUM`).
    #[serde(default)]
    pub fee_level: CircleFeeLevel,
    /// How long a transfer request waits for a final state before it is answered `unknown`
    /// (default 60).
    #[serde(default = "default_circle_answer")]
    pub answer_timeout_seconds: u64,
    /// How often a waiting transfer asks Circle for its state, in milliseconds (default 2000);
    /// webhooks wake it sooner.
    #[serde(default = "default_circle_poll")]
    pub poll_interval_ms: u64,
    /// The tokens the wallet may send, by network and the profile's name for them.
    #[serde(default)]
    pub tokens: Vec<CircleTokenConfig>,
}

/// `[circle].environment`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CircleEnvironmentName {
    /// Circle's sandbox (`TEST_API_KEY:` keys).
    Testnet,
    /// Real money (`LIVE_API_KEY:` keys).
    Mainnet,
}

/// `[circle].fee_level`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CircleFeeLevel {
    /// `LOW`.
    Low,
    /// `MEDIUM`.
    #[default]
    Medium,
    /// `HIGH`.
    High,
}

/// One `[[circle.tokens]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CircleTokenConfig {
    /// CAIP-2 network (`eip155:84532`).
    pub network: String,
    /// The profile's name for the token (`usdc`).
    pub asset: String,
    /// Circle's `tokenId`.
    pub token_id: String,
    /// The token's decimals (6 for USDC).
    pub decimals: u8,
}

fn default_circle_base_url() -> String {
    "https://api.circle.com".into()
}
fn default_circle_answer() -> u64 {
    60
}
fn default_circle_poll() -> u64 {
    2000
}

/// The server name of Circle transfers (`POST /rails/circle/transfers`) in routes and
/// fingerprints: the tool `transfer` of the server `circle`.
pub const CIRCLE_SERVER: &str = "circle";

impl CircleConfig {
    /// Checks what the type cannot: one source per secret, a wallet, sane timings and tokens.
    /// Errors name the field.
    fn check(&self) -> Result<(), String> {
        if self.api_key_file.is_some() == self.api_key_env.is_some() {
            return Err("[circle] needs exactly one of `api_key_file` or `api_key_env`".into());
        }
        if self.entity_secret_file.is_some() == self.entity_secret_env.is_some() {
            return Err(
                "[circle] needs exactly one of `entity_secret_file` or `entity_secret_env`".into(),
            );
        }
        if !(self.base_url.starts_with("https://") || self.base_url.starts_with("http://")) {
            return Err("[circle].base_url must be an https:// URL".into());
        }
        if self.wallet_id.trim().is_empty() || self.wallet_id.trim() != self.wallet_id {
            return Err("[circle].wallet_id must be the wallet's id, without spaces".into());
        }
        if self.answer_timeout_seconds == 0 || self.answer_timeout_seconds > 3600 {
            return Err("[circle].answer_timeout_seconds must be between 1 and 3600".into());
        }
        if !(50..=60_000).contains(&self.poll_interval_ms) {
            return Err("[circle].poll_interval_ms must be between 50 and 60000".into());
        }
        if self.tokens.is_empty() {
            return Err(
                "[circle] lists no [[circle.tokens]]: add network, asset, token_id and decimals of each token the wallet may send".into(),
            );
        }
        for (index, token) in self.tokens.iter().enumerate() {
            let field = |name: &str| format!("circle.tokens[{index}].{name}");
            if !token.network.contains(':') {
                return Err(format!(
                    "{} must be a CAIP-2 network (eip155:84532)",
                    field("network")
                ));
            }
            if token.asset.is_empty() || token.asset != token.asset.to_ascii_lowercase() {
                return Err(format!(
                    "{} must be the profile's lower-case name of the token (usdc)",
                    field("asset")
                ));
            }
            if token.token_id.trim().is_empty() {
                return Err(format!("{} must not be empty", field("token_id")));
            }
            if token.decimals > 36 {
                return Err(format!("{} must be at most 36", field("decimals")));
            }
            let twin = self.tokens[..index]
                .iter()
                .any(|other| other.network == token.network && other.asset == token.asset);
            if twin {
                return Err(format!(
                    "{}: {} on {} is listed twice",
                    field("asset"),
                    token.asset,
                    token.network
                ));
            }
        }
        Ok(())
    }
}

/// One HTTP API behind `/http/NAME/…`.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpUpstreamConfig {
    /// Base URL (`https://api.example.com/v1`); the agent's path after `/http/NAME` is joined
    /// under it and can never leave it.
    pub url: String,
    /// Request headers, besides `Content-Type`, whose values a decision binds (lower case).
    #[serde(default)]
    pub fingerprint_headers: Vec<String>,
    /// A PEM file of extra trusted roots (a private CA), relative to the home.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// The x402 rail's settings. The payer key is read from exactly one of `key_file` or
/// `key_env`; it is never logged.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct X402Config {
    /// A file holding the secp256k1 payer key as 64 hex digits, relative to the home
    /// (mode 0600).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name of an environment variable holding the payer key.
    #[serde(default)]
    pub key_env: Option<String>,
    /// Longest validity of an authorization, in seconds (default 300).
    #[serde(default = "default_x402_timeout")]
    pub max_timeout_seconds: u64,
    /// How long to wait for a paid retry's answer before the outcome is unknown (default 60).
    #[serde(default = "default_x402_answer")]
    pub answer_timeout_seconds: u64,
    /// Tokens besides Circle's USDC.
    #[serde(default)]
    pub assets: Vec<X402AssetConfig>,
    /// Who signs authorizations: `key` (the local key above, the default) or `circle` (a Circle
    /// developer-controlled wallet through `[circle]`'s credentials; no key in the gateway).
    #[serde(default)]
    pub signer: X402SignerKind,
    /// With `signer = "circle"`: the wallet's id.
    #[serde(default)]
    pub circle_wallet_id: Option<String>,
    /// With `signer = "circle"`: the wallet's EVM address (every signature is checked to
    /// recover to it).
    #[serde(default)]
    pub circle_wallet_address: Option<String>,
    /// Ethereum JSON-RPC endpoints by CAIP-2 network (`"eip155:84532" = "https://…"`): where
    /// `trustos payments` asks whether an authorization in doubt was used on chain (its
    /// `AuthorizationUsed` log, by payer and nonce). `https`, or `http` to a loopback address.
    #[serde(default)]
    pub rpc: BTreeMap<String, String>,
}

/// `[x402].signer`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum X402SignerKind {
    /// The local secp256k1 key of `key_file` or `key_env`.
    #[default]
    Key,
    /// A Circle developer-controlled wallet (`POST /v1/w3s/developer/sign/typedData`).
    Circle,
}

/// A token the x402 rail may pay in.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct X402AssetConfig {
    /// CAIP-2 network.
    pub network: String,
    /// Token contract address.
    pub address: String,
    /// The profile's name for it.
    pub symbol: String,
    /// EIP-712 domain name.
    pub eip712_name: String,
    /// EIP-712 domain version.
    pub eip712_version: String,
}

fn default_x402_timeout() -> u64 {
    300
}
fn default_x402_answer() -> u64 {
    60
}

/// Daemon settings.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The profile to enforce, relative to the home.
    #[serde(default = "default_profile")]
    pub profile: PathBuf,
    /// Tenant of calls arriving through stdio shims.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Agent of stdio shims launched without `--agent`.
    #[serde(default = "default_agent")]
    pub agent: String,
    /// Address of the HTTP front (`/mcp/NAME`); absent: no HTTP listener.
    #[serde(default)]
    pub listen: Option<String>,
    /// How long an allow decision stays usable.
    #[serde(default = "default_decision_ttl")]
    pub decision_ttl_seconds: u64,
    /// How long a challenged call waits for approval before it is denied.
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout_seconds: u64,
    /// How long the HTTP front waits for an answer (keep it above `hold_timeout_seconds`).
    #[serde(default = "default_call_timeout")]
    pub call_timeout_seconds: u64,
    /// Browser origins allowed on the HTTP front (requests without `Origin` are allowed).
    #[serde(default = "default_origins")]
    pub allowed_origins: Vec<String>,
    /// Ask the host's user through MCP elicitation when a call needs one approval.
    #[serde(default = "default_true")]
    pub elicitation: bool,
    /// How often the daemon asks the rails (Circle, the chain) about payments whose outcome
    /// is open and receipts what it learns, as `trustos payments` does; 0 turns it off.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            profile: default_profile(),
            tenant: default_tenant(),
            agent: default_agent(),
            listen: None,
            decision_ttl_seconds: default_decision_ttl(),
            hold_timeout_seconds: default_hold_timeout(),
            call_timeout_seconds: default_call_timeout(),
            allowed_origins: default_origins(),
            elicitation: true,
            reconcile_interval_seconds: default_reconcile_interval(),
        }
    }
}

fn default_profile() -> PathBuf {
    PathBuf::from("profiles/default/profile.toml")
}
fn default_tenant() -> String {
    "local".into()
}
fn default_agent() -> String {
    "agent".into()
}
fn default_decision_ttl() -> u64 {
    60
}
fn default_hold_timeout() -> u64 {
    300
}
fn default_reconcile_interval() -> u64 {
    60
}
fn default_call_timeout() -> u64 {
    // Longer than the default hold: a held call resolves (or times out into a deny) first.
    600
}
fn default_origins() -> Vec<String> {
    vec![
        "http://localhost".into(),
        "http://127.0.0.1".into(),
        "https://localhost".into(),
    ]
}
fn default_true() -> bool {
    true
}

/// One upstream MCP server.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Command and arguments of a stdio server.
    #[serde(default)]
    pub command: Vec<String>,
    /// Environment for the stdio server.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// URL of a Streamable HTTP server.
    #[serde(default)]
    pub url: Option<String>,
    /// Headers sent to the URL server on every request (e.g. its `Authorization`). A value may
    /// name environment variables as `${env:NAME}`: resolved from the daemon's environment when
    /// it connects, so a secret need not be written here.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl ServerConfig {
    /// The headers for the URL server, `${env:NAME}` resolved from `lookup`; an error names
    /// the header and the missing variable, never a value.
    pub fn resolved_headers(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<(String, String)>, String> {
        self.headers
            .iter()
            .map(|(name, template)| {
                let mut value = String::new();
                let mut rest = template.as_str();
                while let Some(start) = rest.find("${env:") {
                    value.push_str(&rest[..start]);
                    let after = &rest[start + "${env:".len()..];
                    let end = after
                        .find('}')
                        .ok_or_else(|| format!("header {name}: unclosed ${{env:…}}"))?;
                    let variable = &after[..end];
                    let resolved = lookup(variable).ok_or_else(|| {
                        format!("header {name}: the environment variable {variable} is not set")
                    })?;
                    value.push_str(&resolved);
                    rest = &after[end + 1..];
                }
                value.push_str(rest);
                Ok((name.clone(), value))
            })
            .collect()
    }
}

/// A bearer token of the HTTP front, and whom it speaks for.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// `sha256:<hex>` of the token.
    pub token_sha256: String,
    /// Tenant.
    pub tenant: String,
    /// Agent.
    pub agent: String,
    /// Servers it may reach (empty: all).
    #[serde(default)]
    pub servers: Vec<String>,
}

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid `gateway.toml`.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong, located.
        message: String,
    },
    /// An approver key could not be read.
    #[error("{path}: approver {name}: {source}")]
    ApproverKey {
        /// The file.
        path: String,
        /// The approver.
        name: String,
        /// The cause.
        source: keyfile::KeyFileError,
    },
}

impl GatewayConfig {
    /// Reads `gateway.toml` in `home`; a missing file is the default configuration.
    pub fn load(home: &Path) -> Result<Self, ConfigError> {
        let path = home.join(CONFIG_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks configuration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: GatewayConfig = toml::from_str(text).map_err(|err| err.to_string())?;
        for (name, server) in &config.servers {
            match (server.command.is_empty(), &server.url) {
                (false, None) | (true, Some(_)) => {}
                _ => {
                    return Err(format!(
                        "[servers.{name}] needs exactly one of `command` or `url`"
                    ));
                }
            }
            if !valid_server_name(name) {
                return Err(format!(
                    "[servers.{name}]: server names are letters, digits, '-', '_' and '.'"
                ));
            }
            if !server.headers.is_empty() && server.url.is_none() {
                return Err(format!(
                    "[servers.{name}] headers: only a `url` server sends headers"
                ));
            }
            for header in server.headers.keys() {
                if header.is_empty()
                    || !header
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(format!(
                        "[servers.{name}] headers: {header:?} is not a header name"
                    ));
                }
            }
        }
        for (name, lane) in &config.http {
            if !valid_server_name(name) {
                return Err(format!(
                    "[http.{name}]: names are letters, digits, '-', '_' and '.'"
                ));
            }
            if !(lane.url.starts_with("http://") || lane.url.starts_with("https://")) {
                return Err(format!(
                    "[http.{name}].url must be an http:// or https:// URL"
                ));
            }
        }
        if let Some(x402) = &config.x402 {
            match x402.signer {
                X402SignerKind::Key if x402.key_file.is_some() == x402.key_env.is_some() => {
                    return Err("[x402] needs exactly one of `key_file` or `key_env`".to_owned());
                }
                X402SignerKind::Circle if x402.key_file.is_some() || x402.key_env.is_some() => {
                    return Err(
                        "[x402] signer = \"circle\" signs with a Circle wallet: remove `key_file` / `key_env`"
                            .to_owned(),
                    );
                }
                X402SignerKind::Circle
                    if x402.circle_wallet_id.is_none() || x402.circle_wallet_address.is_none() =>
                {
                    return Err(
                        "[x402] signer = \"circle\" needs `circle_wallet_id` and `circle_wallet_address`"
                            .to_owned(),
                    );
                }
                X402SignerKind::Circle if config.circle.is_none() => {
                    return Err(
                        "[x402] signer = \"circle\" needs a [circle] section for the API key and entity secret"
                            .to_owned(),
                    );
                }
                _ => {}
            }
        }
        if let Some(circle) = &config.circle {
            circle.check()?;
            if config.servers.contains_key(CIRCLE_SERVER) {
                return Err(format!(
                    "[servers.{CIRCLE_SERVER}]: the name is taken by the Circle rail's transfers when [circle] is configured; rename the server"
                ));
            }
        }
        for (index, token) in config.tokens.iter().enumerate() {
            if token.token_sha256.parse::<Digest>().is_err() {
                return Err(format!(
                    "tokens[{index}].token_sha256 must be sha256:<64 hex digits>"
                ));
            }
        }
        Ok(config)
    }

    /// The profile path, resolved against the home.
    pub fn profile_path(&self, home: &Path) -> PathBuf {
        home.join(&self.gateway.profile)
    }

    /// The token entry for a presented bearer token.
    pub fn token(&self, presented: &str) -> Option<&TokenConfig> {
        let digest = Digest::of(presented.as_bytes()).to_string();
        // Compare digests, not tokens: equal-length strings, no early exit on the secret.
        self.tokens
            .iter()
            .find(|token| constant_time_eq(token.token_sha256.as_bytes(), digest.as_bytes()))
    }

    /// Approver public keys, by name.
    pub fn approver_keys(&self, home: &Path) -> Result<BTreeMap<String, PublicKey>, ConfigError> {
        self.approvers
            .iter()
            .map(|(name, path)| {
                let path = home.join(path);
                keyfile::read_public_key(&path)
                    .map(|key| (name.clone(), key))
                    .map_err(|source| ConfigError::ApproverKey {
                        path: path.display().to_string(),
                        name: name.clone(),
                        source,
                    })
            })
            .collect()
    }
}

/// Whether `name` can name a server (`/mcp/NAME`, route globs).
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strictness() {
        let config = GatewayConfig::parse("").unwrap();
        assert_eq!(config.gateway.decision_ttl_seconds, 60);
        assert!(GatewayConfig::parse("[gateway]\nlisten_addr = \"x\"\n").is_err());
        assert!(GatewayConfig::parse("[servers.a]\n").is_err());
        assert!(GatewayConfig::parse("[servers.a]\ncommand=[\"x\"]\nurl=\"http://h\"\n").is_err());
        assert!(GatewayConfig::parse("[servers.\"a b\"]\ncommand=[\"x\"]\n").is_err());
    }

    fn circle(extra: &str) -> String {
        format!(
            "[circle]\napi_key_env = \"K\"\nentity_secret_env = \"S\"\nwallet_id = \"w-1\"\n{extra}\n\
             [[circle.tokens]]\nnetwork = \"eip155:84532\"\nasset = \"usdc\"\ntoken_id = \"t-1\"\ndecimals = 6\n"
        )
    }

    #[test]
    fn url_servers_carry_headers_with_environment_references_resolved() {
        let config = GatewayConfig::parse(
            "[servers.docs]\nurl = \"https://mcp.example/docs\"\n\
             headers = { Authorization = \"Bearer ${env:DOCS_TOKEN}\", X-Team = \"core\" }\n",
        )
        .unwrap();
        let docs = &config.servers["docs"];
        let lookup = |name: &str| (name == "DOCS_TOKEN").then(|| "s3cret".to_owned());
        assert_eq!(
            docs.resolved_headers(lookup).unwrap(),
            [
                ("Authorization".to_owned(), "Bearer s3cret".to_owned()),
                ("X-Team".to_owned(), "core".to_owned())
            ]
        );
        let missing = docs.resolved_headers(|_| None).unwrap_err();
        assert!(
            missing.contains("DOCS_TOKEN") && missing.contains("Authorization"),
            "{missing}"
        );
        assert!(
            GatewayConfig::parse("[servers.a]\ncommand = [\"x\"]\nheaders = { A = \"b\" }\n")
                .unwrap_err()
                .contains("only a `url` server")
        );
        assert!(
            GatewayConfig::parse(
                "[servers.a]\nurl = \"http://h\"\nheaders = { \"a b\" = \"c\" }\n"
            )
            .is_err()
        );
    }

    #[test]
    fn an_x402_circle_signer_needs_its_wallet_and_the_circle_section_and_no_key() {
        let wallet = "signer = \"circle\"\ncircle_wallet_id = \"w-1\"\n\
                      circle_wallet_address = \"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266\"\n";
        let config = GatewayConfig::parse(&format!("[x402]\n{wallet}\n{}", circle(""))).unwrap();
        assert_eq!(config.x402.unwrap().signer, X402SignerKind::Circle);

        let refusals = [
            (format!("[x402]\n{wallet}"), "needs a [circle] section"),
            (
                format!("[x402]\n{wallet}key_env = \"K\"\n{}", circle("")),
                "remove `key_file` / `key_env`",
            ),
            (
                format!("[x402]\nsigner = \"circle\"\n{}", circle("")),
                "needs `circle_wallet_id` and `circle_wallet_address`",
            ),
            ("[x402]\nsigner = \"hsm\"\n".to_owned(), "signer"),
            (
                "[x402]\n".to_owned(),
                "exactly one of `key_file` or `key_env`",
            ),
        ];
        for (text, says) in refusals {
            let err = GatewayConfig::parse(&text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn circle_defaults_and_field_named_errors() {
        let config = GatewayConfig::parse(&circle("")).unwrap();
        let circle_config = config.circle.unwrap();
        assert_eq!(circle_config.base_url, "https://api.circle.com");
        assert_eq!(circle_config.fee_level, CircleFeeLevel::Medium);
        assert_eq!(circle_config.answer_timeout_seconds, 60);
        assert_eq!(circle_config.environment, None);
        let with = GatewayConfig::parse(&circle("environment = \"mainnet\"\nfee_level = \"HIGH\""))
            .unwrap()
            .circle
            .unwrap();
        assert_eq!(with.environment, Some(CircleEnvironmentName::Mainnet));
        assert_eq!(with.fee_level, CircleFeeLevel::High);
        let both = GatewayConfig::parse(&circle("api_key_file = \"k\"")).unwrap_err();
        assert!(both.contains("api_key_file"), "{both}");
        let env = GatewayConfig::parse(&circle("environment = \"sandbox\"")).unwrap_err();
        assert!(env.contains("environment"), "{env}");
        let poll = GatewayConfig::parse(&circle("poll_interval_ms = 1")).unwrap_err();
        assert!(poll.contains("poll_interval_ms"), "{poll}");
        let unknown = GatewayConfig::parse(&circle("api_key = \"TEST_API_KEY:a:b\"")).unwrap_err();
        assert!(unknown.contains("api_key"), "{unknown}");
        let taken = format!("{}\n[servers.circle]\ncommand = [\"x\"]\n", circle(""));
        assert!(
            GatewayConfig::parse(&taken)
                .unwrap_err()
                .contains("servers.circle")
        );
    }

    #[test]
    fn tokens_match_by_digest() {
        let digest = Digest::of(b"s3cret").to_string();
        let config = GatewayConfig::parse(&format!(
            "[[tokens]]\ntoken_sha256 = \"{digest}\"\ntenant = \"acme\"\nagent = \"bot\"\n"
        ))
        .unwrap();
        assert_eq!(config.token("s3cret").unwrap().agent, "bot");
        assert!(config.token("s3cre").is_none());
        assert!(
            GatewayConfig::parse("[[tokens]]\ntoken_sha256=\"x\"\ntenant=\"a\"\nagent=\"b\"\n")
                .is_err()
        );
    }
}
