//! A real gateway for a test: a fresh `$TRUSTOS_HOME` made by `trustos init`, a test profile
//! that classifies every tool of the recording upstream, a `trustos serve` daemon, and
//! `trustos mcp` shims in front of the recording upstream (the oracle).
//!
//! Dropping the gateway stops its daemon, including one a shim started on demand (the daemon
//! writes its pid to `$TRUSTOS_HOME/trustos.pid`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Recorder, StdioPeer, TempDir, trustos_bin};

/// Server name the shims use for the recording upstream.
pub const SERVER: &str = "rec";

/// The profile every bypass test runs under: each tool of the recording upstream classified.
pub const TEST_PROFILE: &str = r#"
[profile]
name = "bypass"
description = "Bypass suite: every tool of the recording upstream, classified."

[defaults]
unknown_agent = "deny"
mode = { low = "hard", high = "hard", paid = "hard" }

[[subjects]]
tenant = "local"
agent = "agent"

[[subjects]]
tenant = "local"
agent = "alice"

[[routes]]
id = "rec-echo"
risk = "low"
mcp = { server = "rec", tool = "echo" }

[[routes]]
id = "rec-read-balance"
risk = "low"
mcp = { server = "rec", tool = "read_balance" }

[[routes]]
id = "rec-deploy"
risk = "high"
mcp = { server = "rec", tool = "deploy" }

[[routes]]
id = "rec-delete-database"
risk = "high"
mcp = { server = "rec", tool = "delete_database" }

[[routes]]
id = "rec-transfer"
risk = "paid"
mcp = { server = "rec", tool = "transfer" }
payment = { amount = "/amount", asset = "/asset", payee = "/payee", network = "/network" }

[[routes]]
id = "raised-delete"
risk = "low"
mcp = { server = "raised", tool = "delete_database" }

[[routes]]
id = "raised-echo"
risk = "low"
mcp = { server = "raised", tool = "echo" }

[[amounts]]
asset = "usdc"
min = "1"
max = "5000000"

[[budgets]]
id = "daily"
scope = "agent"
window = "day"
asset = "usdc"
limit = "3000000"

[payees]
first_time = "allow"

[challenge]
above = "1000000"
approvers = ["operator", "alice"]
quorum = 1
"#;

/// A gateway home with its daemon.
pub struct Gateway {
    dir: TempDir,
    home: PathBuf,
    daemon: Option<Child>,
    /// Environment the daemon is started with besides the test's own (e.g. a payer key).
    daemon_env: Vec<(String, String)>,
}

/// How long gateway operations may take in tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

impl Gateway {
    /// A fresh home (`trustos init`) with [`TEST_PROFILE`] and an approver `alice` besides the
    /// generated `operator`; the daemon is started and answering.
    ///
    /// # Errors
    ///
    /// When any step fails.
    pub fn start(label: &str) -> Result<Self, String> {
        Self::start_with(label, TEST_PROFILE, 20)
    }

    /// As [`Self::start`] with another profile and hold timeout.
    ///
    /// # Errors
    ///
    /// When any step fails.
    pub fn start_with(
        label: &str,
        profile: &str,
        hold_timeout_seconds: u64,
    ) -> Result<Self, String> {
        Self::start_configured(label, profile, hold_timeout_seconds, "", &[])
    }

    /// As [`Self::start_with`], with `extra_config` appended to `gateway.toml` (whole tables,
    /// e.g. `[x402]`) and `daemon_env` set in the daemon's environment (this start and every
    /// [`Self::start_daemon`] after it).
    ///
    /// # Errors
    ///
    /// When any step fails.
    pub fn start_configured(
        label: &str,
        profile: &str,
        hold_timeout_seconds: u64,
        extra_config: &str,
        daemon_env: &[(&str, &str)],
    ) -> Result<Self, String> {
        let dir = TempDir::new(label)?;
        let home = dir.join("home");
        let mut gateway = Self {
            dir,
            home,
            daemon: None,
            daemon_env: daemon_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let init = gateway.trustos(&["init", "--json"])?;
        if !init.status.success() {
            return Err(format!(
                "trustos init failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        fs::write(gateway.home.join("profiles/default/profile.toml"), profile)
            .map_err(|e| format!("writing the profile: {e}"))?;
        // A second approver, alice, with her own key.
        let keygen = gateway.trustos_plain(&["keygen", "--out", &gateway.path_str("alice")])?;
        if !keygen.status.success() {
            return Err(format!(
                "keygen: {}",
                String::from_utf8_lossy(&keygen.stderr)
            ));
        }
        let config_path = gateway.home.join("gateway.toml");
        let mut config = fs::read_to_string(&config_path).map_err(|e| e.to_string())?;
        config = config.replace(
            "[approvers]\n",
            &format!(
                "[approvers]\nalice = \"{}\"\n",
                gateway.home.join("alice/gateway.jwk.json").display()
            ),
        );
        config = config.replace(
            "hold_timeout_seconds = 300",
            &format!("hold_timeout_seconds = {hold_timeout_seconds}"),
        );
        if !extra_config.is_empty() {
            config.push('\n');
            config.push_str(extra_config);
            config.push('\n');
        }
        fs::write(&config_path, config).map_err(|e| e.to_string())?;
        gateway.start_daemon()?;
        Ok(gateway)
    }

    /// A home exactly as `trustos init` makes it (starter profile, operator key), with no
    /// daemon: the first shim starts one, as for a newcomer.
    ///
    /// # Errors
    ///
    /// When `trustos init` fails.
    pub fn fresh(label: &str) -> Result<Self, String> {
        let dir = TempDir::new(label)?;
        let home = dir.join("home");
        let gateway = Self {
            dir,
            home,
            daemon: None,
            daemon_env: Vec::new(),
        };
        let init = gateway.trustos(&["init"])?;
        if !init.status.success() {
            return Err(format!(
                "trustos init failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        Ok(gateway)
    }

    /// Starts `trustos serve` and waits until its socket answers.
    ///
    /// # Errors
    ///
    /// When it does not come up.
    pub fn start_daemon(&mut self) -> Result<(), String> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .map_err(|e| e.to_string())?;
        let child = Command::new(trustos_bin()?)
            .args(["serve", "--home"])
            .arg(&self.home)
            .envs(self.daemon_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("trustos serve: {e}"))?;
        self.daemon = Some(child);
        self.wait_for_daemon()
    }

    /// Waits until a daemon answers on the socket.
    ///
    /// # Errors
    ///
    /// After [`TIMEOUT`].
    pub fn wait_for_daemon(&self) -> Result<(), String> {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if std::os::unix::net::UnixStream::connect(self.home.join("trustos.sock")).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("no daemon answered; log:\n{}", self.daemon_log()))
    }

    /// SIGKILLs the daemon (the one started here and any started on demand).
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(pid) = fs::read_to_string(self.home.join("trustos.pid")) {
            let _ = Command::new("kill")
                .args(["-9", pid.trim()])
                .stderr(Stdio::null())
                .status();
        }
    }

    /// The daemon's log (started here) and the on-demand daemon's log.
    pub fn daemon_log(&self) -> String {
        let mut log = fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        log.push_str(&fs::read_to_string(self.home.join("logs/daemon.log")).unwrap_or_default());
        log
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// A path in the scratch directory, as a string.
    pub fn path_str(&self, name: &str) -> String {
        self.home.join(name).display().to_string()
    }

    /// Runs `trustos ARGS --home HOME` and returns its output.
    ///
    /// # Errors
    ///
    /// When it cannot run or times out.
    pub fn trustos(&self, args: &[&str]) -> Result<std::process::Output, String> {
        let mut cmd = Command::new(trustos_bin()?);
        cmd.args(args).arg("--home").arg(&self.home);
        crate::output_with_timeout(cmd, TIMEOUT)
    }

    /// Runs `trustos ARGS` (for commands without `--home`, such as `keygen`).
    ///
    /// # Errors
    ///
    /// When it cannot run or times out.
    pub fn trustos_plain(&self, args: &[&str]) -> Result<std::process::Output, String> {
        let mut cmd = Command::new(trustos_bin()?);
        cmd.args(args);
        crate::output_with_timeout(cmd, TIMEOUT)
    }

    /// A command for `trustos mcp --server SERVER --agent AGENT -- <recording upstream>`
    /// recording into `recorder`.
    ///
    /// # Errors
    ///
    /// When the trustos binary cannot be found.
    pub fn shim_command(
        &self,
        server: &str,
        agent: &str,
        upstream: &Path,
        recorder: &Recorder,
        variant: Option<&str>,
    ) -> Result<Command, String> {
        let mut cmd = Command::new(trustos_bin()?);
        cmd.args(["mcp", "--server", server, "--agent", agent, "--home"])
            .arg(&self.home)
            .arg("--")
            .arg(upstream)
            .env("TRUSTOS_RECORD_FILE", recorder.path())
            .stderr(
                fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("shim.log"))
                    .map_err(|e| e.to_string())?,
            );
        match variant {
            Some(variant) => cmd.env("RECORDING_UPSTREAM_VARIANT", variant),
            None => cmd.env_remove("RECORDING_UPSTREAM_VARIANT"),
        };
        Ok(cmd)
    }

    /// A shim in front of the recording upstream, initialized (`protocol`) and with its tools
    /// listed (so they are pinned).
    ///
    /// # Errors
    ///
    /// When any step fails.
    pub fn shim(
        &self,
        server: &str,
        agent: &str,
        upstream: &Path,
        recorder: &Recorder,
        variant: Option<&str>,
        protocol: &str,
    ) -> Result<StdioPeer, String> {
        let mut peer =
            StdioPeer::spawn(self.shim_command(server, agent, upstream, recorder, variant)?)?;
        peer.initialize(protocol)?;
        let listed = peer.request("list", "tools/list", json!({}), TIMEOUT)?;
        if listed.get("result").is_none() {
            return Err(format!("tools/list failed: {listed}"));
        }
        Ok(peer)
    }

    /// The route inventory, from `trustos routes --json`.
    ///
    /// # Errors
    ///
    /// When the command fails or prints invalid JSON.
    pub fn routes(&self) -> Result<Value, String> {
        let out = self.trustos(&["routes", "--json"])?;
        if !out.status.success() {
            return Err(format!("routes: {}", String::from_utf8_lossy(&out.stderr)));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("routes --json: {e}"))
    }

    /// The calls now held, from `trustos approve --list --json`.
    ///
    /// # Errors
    ///
    /// When the command fails.
    pub fn held(&self) -> Result<Vec<Value>, String> {
        let out = self.trustos(&["approve", "--list", "--json"])?;
        if !out.status.success() {
            return Err(format!(
                "approve --list: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("approve --list --json: {e}"))
    }

    /// Waits until a call is held and returns its decision id.
    ///
    /// # Errors
    ///
    /// After [`TIMEOUT`].
    pub fn wait_for_hold(&self) -> Result<String, String> {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            if let Some(id) = self
                .held()?
                .first()
                .and_then(|held| held["decisionId"].as_str())
            {
                return Ok(id.to_owned());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err("no call was held".into())
    }

    /// The gateway's public JWKS (written to the scratch directory), for `trustos verify`.
    ///
    /// # Errors
    ///
    /// When `trustos jwks` fails.
    pub fn jwks_file(&self) -> Result<PathBuf, String> {
        let mut cmd = Command::new(trustos_bin()?);
        cmd.args(["jwks", "--key"])
            .arg(self.home.join("keys/gateway.key.pem"));
        let out = crate::output_with_timeout(cmd, TIMEOUT)?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let path = self.dir.join("jwks.json");
        fs::write(&path, &out.stdout).map_err(|e| e.to_string())?;
        Ok(path)
    }

    /// `trustos verify --json` on a compact JWS, written to `name` in the scratch directory,
    /// with the gateway's JWKS ([`Self::jwks_file`]): the exit code and the report.
    ///
    /// # Errors
    ///
    /// When a step fails or `trustos verify` prints no JSON.
    pub fn verify_json(&self, jws: &str, name: &str) -> Result<(i32, Value), String> {
        let file = self.scratch(name);
        fs::write(&file, jws).map_err(|e| format!("writing {}: {e}", file.display()))?;
        let jwks = self.jwks_file()?;
        let mut cmd = Command::new(trustos_bin()?);
        cmd.arg("verify")
            .arg(&file)
            .arg("--jwks")
            .arg(&jwks)
            .arg("--json");
        let out = crate::output_with_timeout(cmd, TIMEOUT)?;
        let report = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "trustos verify printed no JSON ({e}): {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        Ok((out.status.code().unwrap_or(-1), report))
    }

    /// A file in the scratch directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}

/// The texts of a `tools/call` response's content, joined by newlines.
pub fn result_text(response: &Value) -> String {
    response["result"]["content"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// The reason codes of a refusal: a JSON-RPC error's `data.reason`, or a tool error's
/// `_meta["io.trustos/reasons"]`.
pub fn reasons(response: &Value) -> Vec<String> {
    if let Some(reason) = response["error"]["data"]["reason"].as_str() {
        return vec![reason.to_owned()];
    }
    response["result"]["_meta"]["io.trustos/reasons"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A `tools/call` request.
pub fn call(id: impl Into<Value>, tool: &str, arguments: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.into(), "method": "tools/call",
           "params": {"name": tool, "arguments": arguments}})
}
