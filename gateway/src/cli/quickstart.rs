//! `trustos quickstart`: from nothing to an offline-verified receipt, over the real path.
//!
//! With no setup it creates a throwaway `$TRUSTOS_HOME` in the temp directory (or uses `--home
//! DIR`, which must be new or empty): a gateway key, the embedded quickstart profile (with its
//! Cedar rule holding deployments), a throwaway x402 payer key (0600), an operator key listed
//! under `[approvers]`, a bearer token, and a `gateway.toml` naming the demo paid tool server
//! (`trustos demo-tool-server`, see [`super::demo_tool_server`]) as `[servers.demo]`.
//!
//! It then starts, in this process, a local x402 facilitator and chain (the adapters' emulator)
//! and the daemon with its Streamable HTTP front on `127.0.0.1:0`; the daemon starts the tool
//! server as its child. As an MCP client of `/mcp/demo` with the bearer token it makes three
//! calls: a paid `get_forecast` (probed, decided, paid once through x402, settled by the
//! facilitator, receipted), a second one over the daily budget (denied with a `BUDGET_…` code
//! and its remediation, never paid), and a `deploy` that the profile holds until the quickstart
//! approves it with the operator key (then forwarded and receipted). It prints what happened,
//! then verifies the first receipt offline: its signature with the gateway's JWKS, and its
//! Merkle inclusion proof under a signed checkpoint (the bundle `trustos verify` reads).
//!
//! Everything it started stops when it ends, also on Ctrl-C or SIGTERM: the HTTP front is
//! aborted, the runtime's tasks are dropped (the tool server is killed with them), the
//! facilitator stops, and the throwaway home is removed unless `--keep` or `--home` was given.
//! Exit 0 when all three outcomes were as expected and the receipt verified, 1 when an outcome
//! differed, 2 on setup errors, 130 when interrupted.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use trustos_adapters::testkit::x402::{EmulatorConfig, X402Emulator};
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::objects::{Receipt, SafeIndex};
use trustos_kernel::verify::Verifier;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::approval::{Approval, ApprovalType, Verdict as ApprovalVerdict};
use crate::daemon::server::{self, Daemon};
use crate::enforce::{self, ApprovalOutcome, Verdict};
use crate::home::Home;
use crate::keyfile;
use crate::mcp::message::{META_DECISION, META_RECEIPT};
use crate::store::Store as _;

/// The built-in quickstart profile.
const QUICKSTART_PROFILE: &str = include_str!("quickstart.profile.toml");
/// The profile's Cedar rule: deployments are held for an operator.
const DEPLOY_CEDAR: &str = "// Deployments wait for an operator: a challenge, not a deny.\n\
@reason(\"CUSTOM_DEPLOY_NEEDS_APPROVAL\")\n\
@challenge(\"true\")\n\
forbid (principal, action == Action::\"call\", resource)\n\
when { context.server == \"demo\" && context.tool == \"deploy\" };\n";
/// `get_forecast`'s price: 0.01 USDC in base units.
const PRICE: u64 = 10_000;
/// The address the demo tool server is paid at.
const PAYEE: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// Circle's USDC on Base Sepolia (the emulated chain's token).
pub const DEMO_ASSET: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";
/// The network the demo tool server prices on.
pub const DEMO_NETWORK: &str = "eip155:84532";
/// The tenant and agent the bearer token speaks for.
const TENANT: &str = "quickstart";
const AGENT: &str = "demo-agent";
/// The MCP protocol version the quickstart's client speaks.
const PROTOCOL: &str = "2025-06-18";
/// Longest wait for one HTTP exchange with the gateway.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the held call to show up.
const HOLD_WAIT: Duration = Duration::from_secs(20);
/// Exit code after Ctrl-C or SIGTERM (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// `trustos quickstart`'s options.
#[derive(Clone, Debug)]
pub struct QuickstartArgs {
    /// Use this directory (new or empty) as the home and keep it.
    pub home: Option<PathBuf>,
    /// Keep the throwaway home.
    pub keep: bool,
    /// Wait this long with the deploy call held before approving it (hidden; lets a test or a
    /// demo look at, or interrupt, a run with everything started).
    pub pause_before_approval: Option<Duration>,
}

/// Why the quickstart stopped.
#[derive(Debug, thiserror::Error)]
enum QuickstartError {
    /// The home, a key or a file could not be made.
    #[error("setup: {0}")]
    Setup(String),
    /// The daemon, the front or the facilitator could not start.
    #[error("could not start {0}")]
    Start(String),
    /// The gateway could not be reached or answered something unreadable.
    #[error("talking to the gateway: {0}")]
    Protocol(String),
    /// A call ended otherwise than the quickstart shows.
    #[error("{0}")]
    Unexpected(String),
    /// The receipt did not verify.
    #[error("the receipt did not verify offline: {0}")]
    Verify(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

impl QuickstartError {
    fn exit_code(&self) -> u8 {
        match self {
            Self::Unexpected(_) | Self::Verify(_) => EXIT_INVALID,
            Self::Interrupted => EXIT_INTERRUPTED,
            Self::Setup(_) | Self::Start(_) | Self::Protocol(_) => EXIT_USAGE,
        }
    }
}

fn setup<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> QuickstartError {
    move |err| QuickstartError::Setup(format!("{what}: {err}"))
}

/// The home directory, removed when dropped unless kept.
struct HomeDir {
    path: PathBuf,
    remove: bool,
}

impl Drop for HomeDir {
    fn drop(&mut self) {
        if self.remove
            && let Err(err) = fs::remove_dir_all(&self.path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!(
                "trustos quickstart: could not remove {}: {err}",
                self.path.display()
            );
        }
    }
}

/// Aborts a task when dropped (the HTTP front).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the quickstart and returns the exit code.
pub fn run(args: QuickstartArgs) -> u8 {
    let started = Instant::now();
    let home_dir = match prepare_home(&args) {
        Ok(home_dir) => home_dir,
        Err(err) => {
            eprintln!("trustos quickstart: {err}");
            return err.exit_code();
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trustos quickstart: cannot start the runtime: {err}");
            return EXIT_USAGE;
        }
    };
    let kept = !home_dir.remove;
    let outcome = runtime.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|err| QuickstartError::Start(format!("signal handling: {err}")))?;
        tokio::select! {
            walked = walk(&home_dir.path, kept, started, args.pause_before_approval) => walked,
            _ = tokio::signal::ctrl_c() => Err(QuickstartError::Interrupted),
            _ = terminate.recv() => Err(QuickstartError::Interrupted),
        }
    });
    // Dropping the runtime drops every task still holding a child: the tool server is killed
    // (kill_on_drop) before the home it ran in is removed.
    drop(runtime);
    let code = match outcome {
        Ok(()) => EXIT_OK,
        Err(QuickstartError::Interrupted) => {
            eprintln!("\ntrustos quickstart: interrupted; stopped everything it started");
            EXIT_INTERRUPTED
        }
        Err(err) => {
            eprintln!("trustos quickstart: {err}");
            err.exit_code()
        }
    };
    if home_dir.remove {
        drop(home_dir);
    } else if code != EXIT_INTERRUPTED {
        out!("(the home is kept: {})", home_dir.path.display());
    }
    code
}

/// The home: `--home` (new or empty, kept) or a fresh directory in the temp directory.
fn prepare_home(args: &QuickstartArgs) -> Result<HomeDir, QuickstartError> {
    let (path, remove) = match &args.home {
        Some(path) => {
            let busy = match fs::read_dir(path) {
                Ok(mut entries) => entries.next().is_some(),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
                Err(err) => return Err(setup(path.display())(err)),
            };
            if busy {
                return Err(QuickstartError::Setup(format!(
                    "{} is not empty: give --home a new or empty directory (the quickstart \
                     writes its own keys, profile and gateway.toml there)",
                    path.display()
                )));
            }
            (path.clone(), false)
        }
        None => {
            let name = enforce::random_id("trustos-quickstart-").map_err(setup("randomness"))?;
            (std::env::temp_dir().join(name), !args.keep)
        }
    };
    fs::DirBuilder::new()
        .recursive(true)
        .create(&path)
        .map_err(setup(path.display()))?;
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o700)).map_err(setup(path.display()))?;
    Ok(HomeDir { path, remove })
}

/// Writes `bytes` to a new file of mode `mode`.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), QuickstartError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(setup(parent.display()))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(setup(path.display()))?;
    file.write_all(bytes).map_err(setup(path.display()))
}

/// A TOML basic string (JSON's escaping is valid TOML for it).
fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

fn random_bytes<const N: usize>() -> Result<[u8; N], QuickstartError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(setup("randomness"))?;
    Ok(bytes)
}

/// What [`write_home`] made that the walk needs.
struct Written {
    token: String,
    operator_key: PathBuf,
}

/// Writes the gateway key, the profile, the payer key, the token, `gateway.toml` and the
/// operator key.
fn write_home(home: &Home, facilitator: &str) -> Result<Written, QuickstartError> {
    let root = home.root();
    home.load_or_create_key().map_err(setup("gateway key"))?;
    let profile_dir = root.join("profiles").join("quickstart");
    write_file(
        &profile_dir.join("profile.toml"),
        QUICKSTART_PROFILE.as_bytes(),
        0o644,
    )?;
    write_file(
        &profile_dir.join("deploy.cedar"),
        DEPLOY_CEDAR.as_bytes(),
        0o644,
    )?;
    // A throwaway payer: the emulated chain funds every address.
    let payer = random_bytes::<32>()?;
    write_file(
        &root.join("keys").join("x402.key"),
        format!("{}\n", hex(&payer)).as_bytes(),
        0o600,
    )?;
    let token = format!("qs_{}", hex(&random_bytes::<24>()?));
    let exe = std::env::current_exe().map_err(setup("the trustos executable"))?;
    let command = [
        exe.display().to_string(),
        "demo-tool-server".to_owned(),
        "--facilitator".to_owned(),
        facilitator.to_owned(),
        "--pay-to".to_owned(),
        PAYEE.to_owned(),
        "--price".to_owned(),
        PRICE.to_string(),
    ];
    let command: Vec<String> = command.iter().map(|part| quoted(part)).collect();
    let config = format!(
        "# Written by `trustos quickstart`. Paths are relative to this directory.\n\n\
         [gateway]\n\
         profile = \"profiles/quickstart/profile.toml\"\n\
         tenant = \"{TENANT}\"\n\
         agent = \"{AGENT}\"\n\
         decision_ttl_seconds = 60\n\
         hold_timeout_seconds = 60\n\
         call_timeout_seconds = 30\n\n\
         # Operators who may approve held calls (the profile's [challenge] names them).\n\
         [approvers]\n\
         operator = \"operator/{jwk}\"\n\n\
         # The demo paid tool server, served as /mcp/demo.\n\
         [servers.demo]\n\
         command = [{command}]\n\n\
         # The quickstart's bearer token (only its SHA-256 is stored).\n\
         [[tokens]]\n\
         token_sha256 = \"{digest}\"\n\
         tenant = \"{TENANT}\"\n\
         agent = \"{AGENT}\"\n\
         servers = [\"demo\"]\n\n\
         # The gateway's x402 payer (a throwaway key; the emulated chain funds it).\n\
         [x402]\n\
         key_file = \"keys/x402.key\"\n",
        jwk = keyfile::PUBLIC_JWK_FILE,
        command = command.join(", "),
        digest = Digest::of(token.as_bytes()),
    );
    write_file(
        &root.join(crate::config::CONFIG_FILE),
        config.as_bytes(),
        0o600,
    )?;
    // The operator key (and whatever else `trustos init` makes that is still missing).
    crate::home::ensure_initialized(home).map_err(setup("the home"))?;
    Ok(Written {
        token,
        operator_key: root.join("operator").join(keyfile::PRIVATE_KEY_FILE),
    })
}

/// Formats USDC base units (6 decimals) as `0.01 USDC`.
fn usdc(base_units: u128) -> String {
    let whole = base_units / 1_000_000;
    let fraction = format!("{:06}", base_units % 1_000_000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{whole} USDC")
    } else {
        format!("{whole}.{fraction} USDC")
    }
}

async fn walk(
    root: &Path,
    kept: bool,
    started: Instant,
    pause: Option<Duration>,
) -> Result<(), QuickstartError> {
    let home = Home::resolve(Some(root.to_owned())).map_err(setup("the home"))?;
    out!(
        "Trust OS quickstart: an agent's three calls to a paid MCP tool server, through the gateway\n"
    );
    let facilitator = X402Emulator::start(EmulatorConfig::default())
        .map_err(|err| QuickstartError::Start(format!("the local facilitator: {err}")))?;
    let written = write_home(&home, facilitator.base_url())?;
    let daemon = server::open(&home)
        .await
        .map_err(|err| QuickstartError::Start(format!("the daemon: {err}")))?;
    let (bound, front) = crate::front::serve(
        Arc::clone(&daemon.enforcer),
        daemon.config.clone(),
        home.clone(),
        "127.0.0.1:0",
    )
    .await
    .map_err(|err| QuickstartError::Start(format!("the HTTP front: {err}")))?;
    let front = AbortOnDrop(front);
    out!(
        "  home         {} ({})",
        root.display(),
        if kept {
            "kept"
        } else {
            "throwaway: removed at the end; --keep keeps it"
        }
    );
    out!(
        "  gateway      http://{bound}/mcp/demo, key {}, profile {}",
        daemon.enforcer.key().kid(),
        daemon.enforcer.profile().fingerprint
    );
    out!(
        "  facilitator  {} (local x402 facilitator and emulated Base Sepolia)",
        facilitator.base_url()
    );
    out!(
        "  tool server  `trustos demo-tool-server`: get_forecast ({} via x402), deploy",
        usdc(u128::from(PRICE))
    );
    out!("  agent        {AGENT}, by bearer token; it holds no wallet\n");

    let client = McpClient::connect(bound.to_string(), written.token.clone()).await?;
    let paid_receipt = paid_call(&client, &facilitator).await?;
    denied_call(&client, &facilitator).await?;
    held_call(&client, &daemon, &written.operator_key, pause).await?;
    drop(front);
    verify_offline(&home, &daemon, &paid_receipt, kept).await?;
    drop(facilitator);
    out!(
        "\nDone in {:.1} s. Try next:",
        started.elapsed().as_secs_f64()
    );
    out!("  trustos onboard claude-code   # route your agent host's MCP servers through Trust OS");
    out!("  trustos audit hosts           # list the MCP servers that still bypass it");
    if kept {
        let dir = root.join("quickstart");
        out!(
            "  trustos verify {} --jwks {}",
            dir.join("bundle.json").display(),
            dir.join("jwks.json").display()
        );
    } else {
        out!(
            "  trustos verify bundle.json --jwks jwks.json   # after `trustos quickstart --keep`: \
             both are in HOME/quickstart/"
        );
    }
    Ok(())
}

/// A tool call's answer as the agent reads it.
struct ToolAnswer {
    result: Value,
}

impl ToolAnswer {
    fn is_error(&self) -> bool {
        self.result["isError"] == true
    }

    fn text(&self) -> String {
        self.result["content"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn meta_str(&self, key: &str) -> Option<&str> {
        self.result["_meta"][key].as_str()
    }
}

/// Reads a signed object's payload (its signature is checked offline at the end).
fn payload_of(jws: &str) -> Option<Value> {
    use base64_payload::decode;
    let payload = jws.split('.').nth(1)?;
    serde_json::from_slice(&decode(payload)?).ok()
}

/// The base64url (no padding) decoding the JWS payload needs.
mod base64_payload {
    /// Decodes unpadded base64url; `None` on any other character.
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let mut buffer = 0u32;
        let mut bits = 0u32;
        for byte in text.bytes() {
            let value = match byte {
                b'A'..=b'Z' => byte - b'A',
                b'a'..=b'z' => byte - b'a' + 26,
                b'0'..=b'9' => byte - b'0' + 52,
                b'-' => 62,
                b'_' => 63,
                _ => return None,
            };
            buffer = (buffer << 6) | u32::from(value);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push(u8::try_from((buffer >> bits) & 0xff).ok()?);
            }
        }
        Some(out)
    }
}

/// Call 1: paid once through x402, answered, receipted. Returns the receipt (compact JWS).
async fn paid_call(
    client: &McpClient,
    facilitator: &X402Emulator,
) -> Result<String, QuickstartError> {
    out!("1. An allowed paid call: get_forecast {{\"city\": \"Lisbon\"}}");
    let answer = client
        .call(1, "get_forecast", json!({"city": "Lisbon"}))
        .await?;
    let receipt_jws = answer
        .meta_str(META_RECEIPT)
        .filter(|_| !answer.is_error())
        .ok_or_else(|| {
            QuickstartError::Unexpected(format!(
                "the paid call was not answered with a receipt: {}",
                answer.text()
            ))
        })?
        .to_owned();
    let receipt: Receipt = payload_of(&receipt_jws)
        .and_then(|payload| serde_json::from_value(payload).ok())
        .ok_or_else(|| QuickstartError::Protocol("the receipt is unreadable".into()))?;
    let settlement = receipt.settlement.as_ref().ok_or_else(|| {
        QuickstartError::Unexpected("the paid call's receipt names no settlement".into())
    })?;
    let amount: u128 = settlement.amount.to_string().parse().unwrap_or_default();
    let settlements = facilitator.settlements();
    if settlements.len() != 1 {
        return Err(QuickstartError::Unexpected(format!(
            "the facilitator settled {} payments for one paid call",
            settlements.len()
        )));
    }
    out!(
        "   allowed: decision {}; the gateway paid {} to {PAYEE} through x402, once",
        receipt.decision_id,
        usdc(amount)
    );
    out!(
        "   settled by the facilitator on {}: transaction {}",
        settlement.network,
        settlement.reference
    );
    out!("   answered: {}", answer.text());
    out!(
        "   receipt {} (log index {})\n",
        receipt.receipt_id,
        receipt.log_index.get()
    );
    Ok(receipt_jws)
}

/// Call 2: over the daily budget, denied with its reason and remediation, never paid.
async fn denied_call(
    client: &McpClient,
    facilitator: &X402Emulator,
) -> Result<(), QuickstartError> {
    out!("2. A call over the budget: get_forecast {{\"city\": \"Porto\"}}");
    let answer = client
        .call(2, "get_forecast", json!({"city": "Porto"}))
        .await?;
    let reasons: Vec<(String, String)> = answer.result["_meta"]["io.trustos/reasons"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|reason| {
            Some((
                reason["code"].as_str()?.to_owned(),
                reason["remediation"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect();
    if !answer.is_error() || !reasons.iter().any(|(code, _)| code.starts_with("BUDGET_")) {
        return Err(QuickstartError::Unexpected(format!(
            "the second forecast was not denied for its budget: {}",
            answer.text()
        )));
    }
    let decision_id = answer
        .meta_str(META_DECISION)
        .and_then(payload_of)
        .and_then(|decision| decision["decisionId"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "(none)".to_owned());
    let settlements = facilitator.settlements().len();
    if settlements != 1 {
        return Err(QuickstartError::Unexpected(format!(
            "the denied call was paid: the facilitator shows {settlements} settlements"
        )));
    }
    out!("   denied: decision {decision_id}; nothing was paid (still one settlement on chain)");
    for (code, remediation) in &reasons {
        out!("   {code}: {remediation}");
    }
    out!();
    Ok(())
}

/// Call 3: held for an operator, approved with the operator key, forwarded and receipted.
async fn held_call(
    client: &McpClient,
    daemon: &Daemon,
    operator_key: &Path,
    pause: Option<Duration>,
) -> Result<(), QuickstartError> {
    out!("3. A high-risk call: deploy {{\"service\": \"forecast-api\", \"version\": \"1.4.2\"}}");
    let call = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call(
                    3,
                    "deploy",
                    json!({"service": "forecast-api", "version": "1.4.2"}),
                )
                .await
        })
    };
    let call = AbortOnDropResult(Some(call));
    let deadline = Instant::now() + HOLD_WAIT;
    let held = loop {
        if let Some(held) = daemon
            .enforcer
            .held()
            .into_iter()
            .find(|held| held.server == "demo" && held.tool == "deploy")
        {
            break held;
        }
        if Instant::now() > deadline {
            return Err(QuickstartError::Unexpected(
                "the deploy call was not held for an operator".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    out!(
        "   held: decision {} waits for {} of {:?} (the agent cannot approve itself)",
        held.decision_id,
        held.quorum,
        held.approvers
    );
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    let key = keyfile::read_private_key(operator_key).map_err(setup(operator_key.display()))?;
    let approval = Approval {
        object_type: ApprovalType::V1,
        decision_id: held.decision_id.clone(),
        fingerprint: held.fingerprint,
        verdict: ApprovalVerdict::Approve,
        issued_at: enforce::now().map_err(setup("the clock"))?,
    };
    let signed = approval.sign(&key).map_err(setup("signing the approval"))?;
    let outcome =
        daemon.enforcer.approve(&signed).await.map_err(|err| {
            QuickstartError::Unexpected(format!("the approval was refused: {err}"))
        })?;
    if let ApprovalOutcome::Counted { .. }
    | ApprovalOutcome::Resolved {
        verdict: Verdict::Refuse { .. },
    } = outcome
    {
        return Err(QuickstartError::Unexpected(format!(
            "the approval did not release the call: {outcome:?}"
        )));
    }
    out!(
        "   approved with the operator key {} (`trustos approve {} --key …`)",
        key.kid(),
        held.decision_id
    );
    let answer = call.join().await?;
    let receipt = answer
        .meta_str(META_RECEIPT)
        .filter(|_| !answer.is_error())
        .and_then(payload_of)
        .ok_or_else(|| {
            QuickstartError::Unexpected(format!(
                "the approved call was not answered with a receipt: {}",
                answer.text()
            ))
        })?;
    out!("   forwarded and answered: {}", answer.text());
    out!(
        "   receipt {} (log index {})\n",
        receipt["receiptId"].as_str().unwrap_or("?"),
        receipt["logIndex"]
    );
    Ok(())
}

/// A spawned call, aborted when dropped unawaited.
struct AbortOnDropResult(Option<tokio::task::JoinHandle<Result<ToolAnswer, QuickstartError>>>);

impl AbortOnDropResult {
    async fn join(mut self) -> Result<ToolAnswer, QuickstartError> {
        let Some(handle) = self.0.take() else {
            return Err(QuickstartError::Protocol(
                "the call was already read".into(),
            ));
        };
        handle
            .await
            .map_err(|err| QuickstartError::Protocol(format!("the call's task failed: {err}")))?
    }
}

impl Drop for AbortOnDropResult {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Verifies the paid call's receipt offline: signature with the gateway's JWKS, and inclusion
/// under a signed checkpoint (the bundle written to `HOME/quickstart/`).
async fn verify_offline(
    home: &Home,
    daemon: &Daemon,
    receipt_jws: &str,
    kept: bool,
) -> Result<(), QuickstartError> {
    let store = daemon.enforcer.store();
    let keys = TrustedKeys::new([daemon.enforcer.key().public().clone()]);
    let mut jwks = serde_json::to_vec_pretty(&keys.to_jwks()).map_err(setup("the JWKS"))?;
    jwks.push(b'\n');
    let receipt: Receipt = payload_of(receipt_jws)
        .and_then(|payload| serde_json::from_value(payload).ok())
        .ok_or_else(|| QuickstartError::Verify("the receipt is unreadable".into()))?;
    let index = receipt.log_index.get();
    let checkpoint = store
        .checkpoint()
        .await
        .map_err(|err| QuickstartError::Verify(format!("checkpoint: {err}")))?;
    let proof = store
        .inclusion_proof(index, checkpoint.checkpoint.size)
        .await
        .map_err(|err| QuickstartError::Verify(format!("inclusion proof: {err}")))?;
    let bundle = ReceiptBundle::new(
        receipt_jws.to_owned(),
        receipt.log_index,
        SafeIndex::new(checkpoint.checkpoint.size)
            .map_err(|err| QuickstartError::Verify(err.to_string()))?,
        &proof,
        checkpoint.note,
    );
    let dir = home.root().join("quickstart");
    let bundle_path = dir.join("bundle.json");
    write_file(&bundle_path, &bundle.to_json_pretty(), 0o644)?;
    write_file(&dir.join("jwks.json"), &jwks, 0o644)?;

    // From here on, only the files and the public keys: what anyone holding them can check.
    out!("Checking call 1's receipt offline (only the gateway's public keys, no gateway):");
    let published = TrustedKeys::from_jwks_json(&jwks)
        .map_err(|err| QuickstartError::Verify(err.to_string()))?;
    let signed = Verifier::new(published.clone())
        .verify_receipt(receipt_jws)
        .map_err(|err| QuickstartError::Verify(format!("{err} ({})", err.reason_code())))?;
    out!(
        "   signature valid (kid {}): receipt {} of decision {}, {}",
        signed.kid,
        signed.receipt.receipt_id,
        signed.receipt.decision_id,
        signed
            .receipt
            .settlement
            .as_ref()
            .map_or_else(String::new, |s| format!(
                "settled on {} as {}",
                s.rail, s.reference
            ))
    );
    let written = fs::read(&bundle_path).map_err(setup(bundle_path.display()))?;
    let checked = ReceiptBundle::from_json(&written)
        .and_then(|bundle| bundle.verify(&published))
        .map_err(|err| QuickstartError::Verify(format!("{err} ({})", err.reason_code())))?;
    out!(
        "   Merkle inclusion proof: entry {} of {} under a checkpoint signed for {}",
        checked.leaf_index,
        checked.tree_size,
        checkpoint.checkpoint.origin
    );
    if kept {
        out!("   bundle {}", bundle_path.display());
    }
    out!("receipt verified offline");
    Ok(())
}

/// A Streamable HTTP MCP client of `/mcp/demo`: one request per connection.
#[derive(Clone)]
struct McpClient {
    addr: String,
    token: String,
    session: String,
}

/// One HTTP response.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Result<Value, QuickstartError> {
        serde_json::from_slice(&self.body).map_err(|err| {
            QuickstartError::Protocol(format!(
                "HTTP {} with a body that is not JSON ({err}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            ))
        })
    }
}

impl McpClient {
    /// `initialize`, `notifications/initialized` and `tools/list` (which pins the tools).
    async fn connect(addr: String, token: String) -> Result<Self, QuickstartError> {
        let mut client = Self {
            addr,
            token,
            session: String::new(),
        };
        let reply = client
            .post(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": PROTOCOL, "capabilities": {},
                "clientInfo": {"name": "trustos-quickstart", "version": env!("CARGO_PKG_VERSION")}}}))
            .await?;
        let session = reply.header("mcp-session-id").map(str::to_owned);
        let answer = reply.json()?;
        client.session = match (reply.status, session) {
            (200, Some(session)) if answer.get("result").is_some() => session,
            _ => {
                return Err(QuickstartError::Protocol(format!(
                    "initialize: HTTP {}: {answer}",
                    reply.status
                )));
            }
        };
        let initialized = client
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        if initialized.status != 202 {
            return Err(QuickstartError::Protocol(format!(
                "notifications/initialized: HTTP {}",
                initialized.status
            )));
        }
        let listed = client
            .post(&json!({"jsonrpc": "2.0", "id": "list", "method": "tools/list"}))
            .await?
            .json()?;
        let names: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|tool| tool["name"].as_str())
            .collect();
        if !names.contains(&"get_forecast") || !names.contains(&"deploy") {
            return Err(QuickstartError::Protocol(format!("tools/list: {listed}")));
        }
        Ok(client)
    }

    /// `tools/call` of `tool`: the result.
    async fn call(
        &self,
        id: u64,
        tool: &str,
        arguments: Value,
    ) -> Result<ToolAnswer, QuickstartError> {
        let answer = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}))
            .await?
            .json()?;
        match answer.get("result") {
            Some(result) => Ok(ToolAnswer {
                result: result.clone(),
            }),
            None => Err(QuickstartError::Protocol(format!("{tool}: {answer}"))),
        }
    }

    async fn post(&self, body: &Value) -> Result<Reply, QuickstartError> {
        tokio::time::timeout(HTTP_TIMEOUT, self.post_now(body.to_string()))
            .await
            .map_err(|_| QuickstartError::Protocol(format!("no answer within {HTTP_TIMEOUT:?}")))?
    }

    async fn post_now(&self, body: String) -> Result<Reply, QuickstartError> {
        let io = |err: std::io::Error| QuickstartError::Protocol(format!("{}: {err}", self.addr));
        let mut stream = TcpStream::connect(&self.addr).await.map_err(io)?;
        let mut request = format!(
            "POST /mcp/demo HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\
             Authorization: Bearer {}\r\nContent-Type: application/json\r\n\
             Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
            self.addr,
            self.token,
            body.len()
        );
        if !self.session.is_empty() {
            let _ = write!(
                request,
                "Mcp-Session-Id: {}\r\nMCP-Protocol-Version: {PROTOCOL}\r\n",
                self.session
            );
        }
        request.push_str("\r\n");
        request.push_str(&body);
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(io)?;
        parse_response(&raw)
    }
}

fn parse_response(raw: &[u8]) -> Result<Reply, QuickstartError> {
    let bad = || {
        QuickstartError::Protocol(format!(
            "unreadable HTTP response: {}",
            String::from_utf8_lossy(raw)
        ))
    };
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if reply
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"))
    {
        reply.body = dechunk(&reply.body).ok_or_else(bad)?;
    } else if let Some(length) = reply
        .header("content-length")
        .and_then(|value| value.parse::<usize>().ok())
    {
        reply.body.truncate(length);
    }
    Ok(reply)
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|window| window == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usdc_amounts_read_as_people_write_them() {
        assert_eq!(usdc(10_000), "0.01 USDC");
        assert_eq!(usdc(1_000_000), "1 USDC");
        assert_eq!(usdc(1_500_000), "1.5 USDC");
    }

    #[test]
    fn base64url_payloads_decode() {
        assert_eq!(
            base64_payload::decode("eyJhIjoxfQ"),
            Some(b"{\"a\":1}".to_vec())
        );
        assert_eq!(base64_payload::decode("a+b"), None);
    }

    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(dechunk(b"3\r\nabc\r\n0\r\n\r\n"), Some(b"abc".to_vec()));
    }
}
