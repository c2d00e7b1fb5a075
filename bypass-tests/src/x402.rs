//! x402 setup shared by the paid suites (the HTTP lane and MCP): where the gateway's payer key
//! comes from, the `gateway.toml` text that turns the rail on and admits agents by token, a
//! profile for paid routes, `trustos payments`, and reading receipts: a JWS payload, offline
//! verification, and every receipt in a home's log with its bundle verified.
//!
//! The payer key is Hardhat account #0 (`TEST_PAYER_KEY` of
//! `adapters/tests/support/reference.rs`), set only in the daemon's environment under
//! [`KEY_ENV`]: the agent, the shim and the upstream never see it.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::gateway::TIMEOUT;
use crate::trustos_bin;

/// The variable holding the gateway's payer key (only the daemon gets it).
pub const KEY_ENV: &str = "TRUSTOS_TEST_X402_KEY";

/// The CAIP-2 network every paid suite pays on (Base Sepolia).
pub const NETWORK: &str = "eip155:84532";

/// `[x402]` with the payer key read from [`KEY_ENV`], then `extra` (whole lines, e.g.
/// `"answer_timeout_seconds = 3\n"`).
pub fn x402_table(extra: &str) -> String {
    format!("[x402]\nkey_env = \"{KEY_ENV}\"\n{extra}")
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// A `[[tokens]]` entry admitting `token` (stored as its SHA-256) as `tenant`/`agent`, limited
/// to `servers` when given.
pub fn token_entry(token: &str, tenant: &str, agent: &str, servers: Option<&[&str]>) -> String {
    let mut entry = format!(
        "\n[[tokens]]\ntoken_sha256 = \"sha256:{}\"\ntenant = {}\nagent = {}\n",
        sha256_hex(token.as_bytes()),
        quoted(tenant),
        quoted(agent),
    );
    if let Some(servers) = servers {
        let list: Vec<String> = servers.iter().map(|s| quoted(s)).collect();
        let _ = writeln!(entry, "servers = [{}]", list.join(", "));
    }
    entry
}

/// A TOML basic string (JSON's escaping is valid TOML for it).
fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// One `[[routes]]` entry of a [`Profile`].
#[derive(Clone, Debug)]
pub struct Route {
    id: String,
    risk: String,
    /// `http = { … }` or `mcp = { … }`.
    selector: String,
}

impl Route {
    /// An HTTP route: `method path` on `127.0.0.1` (every test API listens there).
    pub fn http(id: &str, risk: &str, method: &str, path: &str) -> Self {
        Self {
            id: id.to_owned(),
            risk: risk.to_owned(),
            selector: format!(
                "http = {{ host = \"127.0.0.1\", path = {}, methods = [{}] }}",
                quoted(path),
                quoted(method)
            ),
        }
    }

    /// An MCP route: `tool` of `server`.
    pub fn mcp(id: &str, risk: &str, server: &str, tool: &str) -> Self {
        Self {
            id: id.to_owned(),
            risk: risk.to_owned(),
            selector: format!(
                "mcp = {{ server = {}, tool = {} }}",
                quoted(server),
                quoted(tool)
            ),
        }
    }
}

/// A profile for one agent buying from paid routes in USDC, every mode hard and unknown agents
/// denied: what a user writes for an x402 API or tool. Change a field (struct update syntax)
/// to try a policy edit.
#[derive(Clone, Debug)]
pub struct Profile {
    /// `[profile] name`.
    pub name: String,
    /// `[profile] description`.
    pub description: String,
    /// The one `[[subjects]]` entry: tenant and agent.
    pub subject: (String, String),
    /// The `[[routes]]`, in order.
    pub routes: Vec<Route>,
    /// `[[amounts]] min` for USDC, when set.
    pub amount_min: Option<String>,
    /// `[[amounts]] max` for USDC, in base units.
    pub amount_max: String,
    /// The id of the agent's daily USDC budget.
    pub budget_id: String,
    /// Its limit, in base units.
    pub budget: String,
    /// Lines under `[payees]` after `first_time = "allow"` (an allow or deny list).
    pub payees: String,
    /// Lines under `[networks]`.
    pub networks: String,
}

impl Profile {
    /// A profile named `name` for `tenant`/`agent` with `routes`: USDC up to `amount_max` a
    /// payment and 1 USDC a day, any payee, Base Sepolia only.
    pub fn new(name: &str, description: &str, subject: (&str, &str), routes: Vec<Route>) -> Self {
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            subject: (subject.0.to_owned(), subject.1.to_owned()),
            routes,
            amount_min: None,
            amount_max: "50000".to_owned(),
            budget_id: "agent-daily".to_owned(),
            budget: "1000000".to_owned(),
            payees: String::new(),
            networks: format!("allow = [\"{NETWORK}\"]"),
        }
    }

    /// The profile's TOML.
    pub fn toml(&self) -> String {
        let mut toml = format!(
            "[profile]\nname = {}\ndescription = {}\n\n\
             [defaults]\nunknown_agent = \"deny\"\nmode = {{ low = \"hard\", high = \"hard\", paid = \"hard\" }}\n\n\
             [[subjects]]\ntenant = {}\nagent = {}\n",
            quoted(&self.name),
            quoted(&self.description),
            quoted(&self.subject.0),
            quoted(&self.subject.1),
        );
        for route in &self.routes {
            let _ = write!(
                toml,
                "\n[[routes]]\nid = {}\nrisk = {}\n{}\n",
                quoted(&route.id),
                quoted(&route.risk),
                route.selector
            );
        }
        toml.push_str("\n[[amounts]]\nasset = \"usdc\"\n");
        if let Some(min) = &self.amount_min {
            let _ = writeln!(toml, "min = {}", quoted(min));
        }
        let _ = write!(
            toml,
            "max = {}\n\n\
             [[budgets]]\nid = {}\nscope = \"agent\"\nwindow = \"day\"\nasset = \"usdc\"\nlimit = {}\n\n\
             [payees]\nfirst_time = \"allow\"\n{}\n\n\
             [assets]\nallow = [\"usdc\"]\n\n\
             [networks]\n{}\n",
            quoted(&self.amount_max),
            quoted(&self.budget_id),
            quoted(&self.budget),
            self.payees,
            self.networks,
        );
        toml
    }
}

/// `trustos payments --home HOME --json` (asks the running daemon): its exit code and the
/// attempts it lists.
///
/// # Errors
///
/// When it cannot run, times out, or prints no JSON array.
pub fn payments(home: &Path) -> Result<(i32, Vec<Value>), String> {
    let mut cmd = Command::new(trustos_bin()?);
    cmd.args(["payments", "--json", "--home"]).arg(home);
    let out = crate::output_with_timeout(cmd, TIMEOUT)?;
    let listed: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        format!(
            "trustos payments --json printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    match listed {
        Value::Array(attempts) => Ok((out.status.code().unwrap_or(-1), attempts)),
        other => Err(format!("trustos payments --json: not an array: {other}")),
    }
}

/// `trustos verify` of the compact JWS `jws` with the JWKS `trustos jwks` makes of `home`'s
/// gateway key, as anyone verifying a receipt offline would: the exit code and everything it
/// printed. `scratch` is a directory for the two files it writes.
///
/// # Errors
///
/// When `trustos jwks` or `trustos verify` cannot run, or the files cannot be written.
pub fn verify_offline(home: &Path, scratch: &Path, jws: &str) -> Result<(i32, String), String> {
    let bin = trustos_bin()?;
    let mut jwks = Command::new(&bin);
    jwks.args(["jwks", "--key"])
        .arg(home.join("keys/gateway.key.pem"));
    let jwks = crate::output_with_timeout(jwks, TIMEOUT)?;
    if !jwks.status.success() {
        return Err(format!(
            "trustos jwks failed: {}",
            String::from_utf8_lossy(&jwks.stderr)
        ));
    }
    let jwks_path = scratch.join("jwks.json");
    std::fs::write(&jwks_path, &jwks.stdout)
        .map_err(|e| format!("{}: {e}", jwks_path.display()))?;
    let jws_path = scratch.join("object.jws");
    std::fs::write(&jws_path, jws).map_err(|e| format!("{}: {e}", jws_path.display()))?;
    let mut verify = Command::new(&bin);
    verify
        .arg("verify")
        .arg(&jws_path)
        .arg("--jwks")
        .arg(&jwks_path);
    let out = crate::output_with_timeout(verify, TIMEOUT)?;
    Ok((
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The payload of a compact JWS (its middle part, base64url without padding), as JSON.
///
/// # Errors
///
/// When `jws` has no payload part, or it is not base64url of JSON.
pub fn jws_payload(jws: &str) -> Result<Value, String> {
    let payload = jws
        .split('.')
        .nth(1)
        .ok_or_else(|| format!("not a compact JWS: {jws}"))?;
    let mut bits: u32 = 0;
    let mut count = 0;
    let mut bytes = Vec::with_capacity(payload.len() * 3 / 4);
    for c in payload.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return Err(format!("not base64url: {:?}", char::from(c))),
        };
        bits = ((bits << 6) | u32::from(value)) & 0xffff;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push(((bits >> count) & 0xff) as u8);
        }
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("JWS payload is not JSON: {e}"))
}

/// One receipt of a home's log.
#[derive(Clone, Debug)]
pub struct LoggedReceipt {
    /// Its log index.
    pub index: u64,
    /// The compact JWS.
    pub jws: String,
    /// Its payload.
    pub payload: Value,
}

/// Every receipt in `home`'s log, in log order, each one's bundle (`trustos log prove`: receipt,
/// inclusion proof, signed checkpoint) verified offline with `trustos verify`. No daemon may
/// run on `home`: the log commands open the store. `scratch` is a directory for the files the
/// verification writes.
///
/// # Errors
///
/// When a command cannot run or fails, or a bundle does not verify.
pub fn logged_receipts(home: &Path, scratch: &Path) -> Result<Vec<LoggedReceipt>, String> {
    let bin = trustos_bin()?;
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(args).arg("--home").arg(home);
        crate::output_with_timeout(cmd, TIMEOUT)
    };
    let checkpoint = run(&["log", "checkpoint", "--json"])?;
    if !checkpoint.status.success() {
        return Err(format!(
            "trustos log checkpoint: {}",
            String::from_utf8_lossy(&checkpoint.stderr)
        ));
    }
    let size = serde_json::from_slice::<Value>(&checkpoint.stdout)
        .map_err(|e| format!("trustos log checkpoint --json: {e}"))?["treeSize"]
        .as_u64()
        .ok_or("trustos log checkpoint --json: no treeSize")?;
    let mut receipts = Vec::new();
    for index in 0..size {
        let proved = run(&["log", "prove", "--index", &index.to_string()])?;
        if !proved.status.success() {
            continue; // a decision: bundles prove receipts only
        }
        let bundle = String::from_utf8(proved.stdout).map_err(|e| e.to_string())?;
        let jws = serde_json::from_str::<Value>(&bundle)
            .map_err(|e| format!("bundle {index}: {e}"))?["receipt"]
            .as_str()
            .ok_or_else(|| format!("bundle {index}: no receipt"))?
            .to_owned();
        let (code, out) = verify_offline(home, scratch, &bundle)?;
        if code != 0 {
            return Err(format!("bundle {index} does not verify: {out}"));
        }
        let payload = jws_payload(&jws)?;
        receipts.push(LoggedReceipt {
            index,
            jws,
            payload,
        });
    }
    Ok(receipts)
}
