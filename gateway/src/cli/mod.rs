//! Command-line interface: argument definitions and dispatch to one module per command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::home::Home;

/// Prints a line on standard output, ignoring a closed pipe (`trustos verify … | head -1`) instead
/// of panicking the way `println!` does.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

mod adapters;
mod approve;
mod audit;
mod demo_tool_server;
mod init;
mod jwks;
mod keygen;
mod log;
mod mcp;
mod onboard;
mod payments;
mod profile;
mod quickstart;
mod routes;
mod serve;
mod verify;

/// Exit code for success, a valid object, or an allow decision.
pub const EXIT_OK: u8 = 0;
/// Exit code for an invalid object or a deny.
pub const EXIT_INVALID: u8 = 1;
/// Exit code for a usage or configuration error.
pub const EXIT_USAGE: u8 = 2;

/// Trust OS: the enforcement gateway for AI agents' paid and high-risk actions.
#[derive(Debug, Parser)]
#[command(name = "trustos", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `trustos adapters …`.
#[derive(Debug, Subcommand)]
enum AdaptersCommand {
    /// Run the adapter conformance suite against every rail's emulator and print the matrix.
    #[command(after_help = "Examples:\n  trustos adapters conformance\n  \
        trustos adapters conformance --json --adapter circle\n\n\
        Checks, for x402 and Circle alike: nothing moves without a verified decision; terms that \
        differ from the decision are refused; 100 concurrent retries of one decision pay once; \
        the gateway killed (SIGKILL) around the rail call 20 times loses and doubles nothing \
        after a restart; an unknown outcome is never paid twice; every completed payment gets a \
        receipt naming the rail's reference. Runs against in-process emulators of each rail; \
        nothing leaves the machine. Exit 0 all passed, 1 a check failed, 2 setup error.")]
    Conformance {
        /// Print the matrix as JSON.
        #[arg(long)]
        json: bool,
        /// Only this adapter (repeatable; default: all).
        #[arg(long = "adapter", value_name = "NAME", value_enum)]
        adapters: Vec<adapters::AdapterName>,
    },
    /// One payment in a process the conformance suite kills (internal).
    #[command(hide = true)]
    ConformanceWorker {
        /// The worker's directory (store and rail description).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The payment case, JSON.
        #[arg(long, value_name = "JSON")]
        case: String,
    },
}

/// `trustos audit …`.
#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Every MCP server of every agent host on this machine: through the gateway or not.
    #[command(
        after_help = "Examples:\n  trustos audit hosts\n  trustos audit hosts --json\n  \
        trustos audit hosts --root /mnt/backup\n\n\
        Reads the known configs of claude-desktop, claude-code, cursor, codex, openclaw, vscode \
        and windsurf: user-level under $HOME (Codex's under $CODEX_HOME when set; with --root \
        DIR, both resolved under DIR as if DIR were /), project-level in the current \
        directory. A tool server given a payment credential in its env (a wallet key, seed \
        phrase, Circle or x402 key) is reported by variable name, never by value. Exit 0 all through the gateway, 1 any server bypasses \
        it, holds a payment credential, or a config is unreadable, 2 usage error."
    )]
    Hosts {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Resolve $HOME under this directory, as if it were /.
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Put Trust OS in front of every MCP server of an agent host (rewrites its config).
    #[command(
        after_help = "Examples:\n  trustos onboard cursor --dry-run\n  trustos onboard cursor\n  \
        trustos onboard codex --config ~/.codex/config.toml\n  trustos onboard cursor --undo\n\n\
        Stdio servers become `trustos mcp --server NAME -- <their command>`; URL servers go to \
        the gateway's /mcp/NAME (the upstream URL moves to gateway.toml's [servers.NAME], with a \
        bearer token for the host under [[tokens]]), or, for claude-desktop, to `trustos mcp \
        --server NAME --url URL`. Everything else in the file keeps its bytes. The original is \
        kept as <file>.trustos-backup; --undo puts it back byte for byte, but refuses \
        (ONBOARD_EDITED_AFTER_ONBOARD, nothing written) if the file was edited after onboarding \
        unless --force is given (the edits are then lost); --undo --dry-run shows what it would \
        restore. Codex's user config is $CODEX_HOME/config.toml when CODEX_HOME is set. Running \
        it twice changes nothing. Exit 0 done (or nothing to do), 1 the host config cannot be \
        onboarded or restored (ONBOARD_* code, nothing written), 2 usage or gateway.toml error."
    )]
    Onboard {
        /// The host.
        #[arg(value_name = "HOST", value_enum)]
        host: crate::hosts::Host,
        /// Print the diff, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Restore the config from its backup.
        #[arg(long)]
        undo: bool,
        /// With --undo: restore the original even if the file was edited after onboarding
        /// (those edits are lost).
        #[arg(long, requires = "undo")]
        force: bool,
        /// This config file instead of the host's known locations.
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
    /// Audits of this machine: agent hosts whose tool servers bypass the gateway.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Payment rail adapters: the conformance suite.
    Adapters {
        #[command(subcommand)]
        command: AdaptersCommand,
    },
    /// Create a new Ed25519 gateway signing key.
    #[command(after_help = "Example:\n  trustos keygen --out ~/.trustos/keys\n\n\
        Writes gateway.key.pem (PKCS#8, mode 0600) and gateway.jwk.json (public JWK) and prints \
        the key id (its RFC 7638 thumbprint). Never overwrites an existing key.")]
    Keygen {
        /// Directory to write the key pair into (created with mode 0700 if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the JWKS (public keys) for one or more gateway keys.
    #[command(
        after_help = "Example:\n  trustos jwks --key ~/.trustos/keys/gateway.key.pem > jwks.json\n\n\
        Each --key may be a PKCS#8 private key PEM, an SPKI public key PEM, or a public JWK."
    )]
    Jwks {
        /// Key files to publish.
        #[arg(long = "key", value_name = "PEM", required = true, num_args = 1..)]
        keys: Vec<PathBuf>,
    },
    /// Three real calls through the gateway to a paid MCP tool server, and a receipt verified
    /// offline.
    #[command(
        after_help = "Examples:\n  trustos quickstart\n  trustos quickstart --keep\n\n\
        In a throwaway home (or --home DIR, new or empty, kept) it starts a local x402 \
        facilitator, the daemon with its HTTP front, and a demo paid MCP tool server, then as an \
        agent makes a paid call (paid once through x402, receipted), a call over the budget \
        (denied) and a deploy held for an operator (approved with the operator key), and \
        verifies the paid call's receipt offline. Everything it started stops when it ends, \
        also on Ctrl-C. Exit 0 all as expected, 1 an outcome differed, 2 setup error, 130 \
        interrupted."
    )]
    Quickstart {
        /// Use this directory (new or empty) as the home, and keep it.
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Keep the throwaway home (its keys, profile, log and receipt bundle).
        #[arg(long)]
        keep: bool,
        /// Milliseconds to wait, the deploy call held, before approving it (for tests).
        #[arg(long, hide = true, value_name = "MS")]
        pause_before_approval: Option<u64>,
    },
    /// The quickstart's demo paid MCP tool server, on stdio (internal).
    #[command(hide = true)]
    DemoToolServer {
        /// The x402 facilitator's base URL.
        #[arg(long, value_name = "URL")]
        facilitator: String,
        /// The address payments go to.
        #[arg(long, value_name = "ADDR")]
        pay_to: String,
        /// `get_forecast`'s price, in USDC base units.
        #[arg(long, value_name = "BASE_UNITS", default_value_t = 10_000)]
        price: u64,
        /// CAIP-2 network of the offer.
        #[arg(long, value_name = "CAIP2", default_value = quickstart::DEMO_NETWORK)]
        network: String,
        /// Token contract of the offer.
        #[arg(long, value_name = "ADDR", default_value = quickstart::DEMO_ASSET)]
        asset: String,
    },
    /// Write, check and exercise policy profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Read the audit log: signed checkpoints and inclusion proofs.
    #[command(subcommand)]
    Log(LogCommand),
    /// Create $TRUSTOS_HOME: gateway key, operator key, gateway.toml and a starter profile.
    #[command(
        after_help = "Example:\n  trustos init\n  TRUSTOS_HOME=/srv/trustos trustos init --json\n\n\
        Never overwrites: running it again lists what is already there."
    )]
    Init {
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Print what was created as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run the daemon: decisions, store, profile reloads, the control socket and the HTTP front.
    #[command(
        after_help = "Example:\n  trustos serve\n  trustos serve --listen 127.0.0.1:8790\n\n\
        Listens on $TRUSTOS_HOME/trustos.sock (mode 0600) for shims and operator commands, and on \
        --listen (or gateway.toml's `listen`) for hosts that speak Streamable HTTP at /mcp/NAME. \
        Reloads the profile when its file changes and keeps the last good one if it is invalid. \
        `trustos mcp` starts it on demand; logs then go to $TRUSTOS_HOME/logs/daemon.log \
        (TRUSTOS_LOG=info for more)."
    )]
    Serve {
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// HTTP address for /mcp/NAME (port 0 picks one; the address is printed).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    /// The stdio shim: put it in a host's MCP config in place of the server command.
    #[command(
        after_help = "Examples (the part after `--` is the server command you had):\n  \
        trustos mcp --server everything -- npx -y @modelcontextprotocol/server-everything\n  \
        trustos mcp --server github --agent code-bot -- docker run -i ghcr.io/github/github-mcp-server\n  \
        trustos mcp --server remote --url http://127.0.0.1:3001/mcp\n\n\
        Claude Desktop / Claude Code config:\n  \
        {\"mcpServers\": {\"everything\": {\"command\": \"trustos\", \"args\": [\"mcp\", \"--server\", \
        \"everything\", \"--\", \"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]}}}\n\n\
        The `--` is optional (some hosts and tools treat it specially): `trustos mcp --server \
        everything npx -y @modelcontextprotocol/server-everything` is the same.\n\n\
        Every tools/call is classified by the profile; high-risk calls are decided, signed and \
        receipted by the daemon (started on demand). Low-risk calls pass untouched."
    )]
    Mcp {
        /// The server's name, as the profile's routes name it.
        #[arg(long, value_name = "NAME")]
        server: String,
        /// The agent this host speaks for (default: gateway.toml's `agent`).
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// The tenant (default: gateway.toml's `tenant`).
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
        /// A Streamable HTTP upstream instead of a command.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// The upstream server command and its arguments (everything after the first word that
        /// is not a `trustos mcp` option; `--` before it is optional).
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND"
        )]
        command: Vec<String>,
    },
    /// The route inventory: every server and tool, and every HTTP route, its risk class, why,
    /// where it is enforced, and its pinned hash.
    #[command(
        after_help = "Example:\n  trustos routes\n  trustos routes --json | jq '.routes[] | select(.risk != \"low\")'"
    )]
    Routes {
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The payment attempts: state, transaction hash, validity, and what reconciliation would do.
    #[command(
        after_help = "Examples:\n  trustos payments\n  trustos payments --state unknown\n  \
        trustos payments --json | jq '.[] | select(.reconcile == \"resubmit\")'\n  \
        trustos payments --json --with-authorization\n\n\
        One row per paid decision, newest validity first. RECONCILE: `known` (settled or failed), \
        `resubmit` (authorized or unknown, and the authorization still valid: send the same bytes \
        again, never a new signature), `expired` (authorized or unknown, and past its validity: \
        only the chain can tell). The signed authorization is printed only with --json --with-authorization. \
        Asks the running daemon; without one, reads the store. Exit 0, 1 when any listed attempt's \
        outcome is unknown, 2 usage or configuration error."
    )]
    Payments {
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Print a JSON array (camelCase keys).
        #[arg(long)]
        json: bool,
        /// Only attempts in this state.
        #[arg(long, value_name = "STATE", value_enum)]
        state: Option<payments::StateFilter>,
        /// With --json: include each attempt's signed authorization (the exact payload sent).
        #[arg(long, requires = "json")]
        with_authorization: bool,
    },
    /// Approve (or reject) a held call with an operator key; list held calls; accept a changed tool.
    #[command(after_help = "Examples:\n  trustos approve --list\n  \
        trustos approve dec_3f… --key ~/.trustos/operator/gateway.key.pem\n  \
        trustos approve dec_3f… --key alice.pem --reject\n  \
        trustos approve --tool everything/echo\n\n\
        The key must be listed under [approvers] in gateway.toml by a name the profile's \
        [challenge] approvers include; the agent that made the call never counts. Exit 0 counted \
        or approved, 1 refused, 2 usage error or no daemon.")]
    Approve {
        /// The held call's decision id.
        #[arg(value_name = "DECISION_ID", required_unless_present_any = ["list", "tool"])]
        decision_id: Option<String>,
        /// Operator private key (PKCS#8 PEM).
        #[arg(long, value_name = "OPERATOR_KEY", required_unless_present_any = ["list", "tool"])]
        key: Option<PathBuf>,
        /// Reject the call instead.
        #[arg(long)]
        reject: bool,
        /// List the held calls.
        #[arg(long, conflicts_with_all = ["decision_id", "tool"])]
        list: bool,
        /// Accept the pending definition of SERVER/TOOL.
        #[arg(long, value_name = "SERVER/TOOL", conflicts_with = "decision_id")]
        tool: Option<String>,
        /// With --tool: only if the pending definition has this SHA-256.
        #[arg(long, value_name = "DIGEST", requires = "tool")]
        sha256: Option<String>,
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a signed decision, a signed receipt, or a receipt bundle, offline.
    #[command(
        after_help = "Examples:\n  trustos verify receipt.jws --jwks jwks.json\n  \
        trustos verify bundle.json --jwks jwks.json --json\n  \
        trustos verify decision.jws --jwks jwks.json --at 2026-01-15T12:00:30.000Z \\\n      \
        --fingerprint sha256:…\n\n\
        Exit 0 valid, 1 invalid (the reason is printed with a stable code), 2 usage error."
    )]
    Verify(verify::VerifyArgs),
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Write a starter profile from a pack.
    #[command(
        after_help = "Example:\n  trustos profile init --pack saas-agent --out ./my-profile\n\n\
        Packs: coding-agent, saas-agent, treasury-agent, observer. Default --out: \
        $TRUSTOS_HOME/profiles/<pack>. Never overwrites."
    )]
    Init {
        /// Pack name.
        #[arg(long, value_name = "NAME")]
        pack: String,
        /// Directory to write into.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Check a profile: exit 0, or 1 with every problem located by file, line and field.
    #[command(after_help = "Example:\n  trustos profile validate policies/saas-agent/profile.toml")]
    Validate {
        /// The profile.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run simulation cases through the profile: exit 1 if any case's expectation differs.
    #[command(
        after_help = "Example:\n  trustos profile simulate policies/saas-agent/profile.toml \\\n      \
        --cases policies/saas-agent/cases.toml"
    )]
    Simulate {
        /// The profile.
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// The cases file.
        #[arg(long, value_name = "CASES")]
        cases: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the profile fingerprint (SHA-256 of the canonical compiled profile).
    #[command(
        after_help = "Example:\n  trustos profile fingerprint policies/saas-agent/profile.toml"
    )]
    Fingerprint {
        /// The profile.
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum LogCommand {
    /// Sign and print a C2SP checkpoint of the whole log.
    #[command(after_help = "Example:\n  trustos log checkpoint\n\n\
        Prints the signed note: origin, tree size, root hash, and the gateway's signature.")]
    Checkpoint {
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Print origin, size, root and note as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a receipt bundle (receipt, inclusion proof, signed checkpoint) for one log entry.
    #[command(
        after_help = "Example:\n  trustos log prove --index 1 > bundle.json\n  \
        trustos verify bundle.json --jwks ~/.trustos/quickstart/jwks.json"
    )]
    Prove {
        /// Log index of the receipt.
        #[arg(long, value_name = "N")]
        index: u64,
        /// Prove against the tree of this many entries (default: the whole log).
        #[arg(long, value_name = "M")]
        size: Option<u64>,
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
}

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Keygen { out, json } => keygen::run(&out, json),
        Command::Jwks { keys } => jwks::run(&keys),
        Command::Onboard {
            host,
            dry_run,
            undo,
            force,
            config,
            home,
        } => onboard::run(onboard::OnboardArgs {
            host,
            dry_run,
            undo,
            force,
            config,
            home,
        }),
        Command::Audit {
            command: AuditCommand::Hosts { json, root },
        } => audit::run(json, root.as_deref()),
        Command::Quickstart {
            home,
            keep,
            pause_before_approval,
        } => quickstart::run(quickstart::QuickstartArgs {
            home,
            keep,
            pause_before_approval: pause_before_approval.map(std::time::Duration::from_millis),
        }),
        Command::DemoToolServer {
            facilitator,
            pay_to,
            price,
            network,
            asset,
        } => demo_tool_server::run(demo_tool_server::DemoToolArgs {
            facilitator,
            pay_to,
            price,
            network,
            asset,
        }),
        Command::Profile(ProfileCommand::Init { pack, out }) => {
            let out = match out {
                Some(out) => Ok(out),
                None => Home::resolve(None).map(|home| home.root().join("profiles").join(&pack)),
            };
            match out {
                Ok(out) => profile::init(&pack, &out),
                Err(err) => usage("profile init", &err),
            }
        }
        Command::Profile(ProfileCommand::Validate { path, json }) => profile::validate(&path, json),
        Command::Profile(ProfileCommand::Simulate { path, cases, json }) => {
            profile::simulate_cases(&path, &cases, json)
        }
        Command::Profile(ProfileCommand::Fingerprint { path }) => profile::fingerprint(&path),
        Command::Log(LogCommand::Checkpoint { home, json }) => match Home::resolve(home) {
            Ok(home) => log::checkpoint(&home, json),
            Err(err) => usage("log checkpoint", &err),
        },
        Command::Log(LogCommand::Prove { index, size, home }) => match Home::resolve(home) {
            Ok(home) => log::prove(&home, index, size),
            Err(err) => usage("log prove", &err),
        },
        Command::Verify(args) => verify::run(&args),
        Command::Init { home, json } => with_home("init", home, |home| init::run(home, json)),
        Command::Serve { home, listen } => {
            init_logging(true);
            with_home("serve", home, |home| serve::run(home, listen))
        }
        Command::Mcp {
            server,
            agent,
            tenant,
            url,
            home,
            command,
        } => {
            init_logging(false);
            with_home("mcp", home, |home| {
                mcp::run(
                    home,
                    mcp::ShimArgs {
                        server,
                        agent,
                        tenant,
                        url,
                        command,
                    },
                )
            })
        }
        Command::Adapters { command } => match command {
            AdaptersCommand::Conformance { json, adapters } => {
                adapters::run_conformance(adapters::ConformanceArgs { json, adapters })
            }
            AdaptersCommand::ConformanceWorker { dir, case } => adapters::run_worker(&dir, &case),
        },
        Command::Routes { home, json } => with_home("routes", home, |home| routes::run(home, json)),
        Command::Payments {
            home,
            json,
            state,
            with_authorization,
        } => with_home("payments", home, |home| {
            payments::run(
                home,
                payments::PaymentsArgs {
                    json,
                    state,
                    with_authorization,
                },
            )
        }),
        Command::Approve {
            decision_id,
            key,
            reject,
            list,
            tool,
            sha256,
            home,
            json,
        } => with_home("approve", home, |home| {
            let action = match (list, tool, decision_id, key) {
                (true, _, _, _) => approve::ApproveAction::List,
                (_, Some(tool), _, _) => approve::ApproveAction::Tool { tool, sha256 },
                (_, None, Some(decision_id), Some(key)) => approve::ApproveAction::Decision {
                    decision_id,
                    key,
                    reject,
                },
                _ => return usage("approve", &"give DECISION_ID --key KEY, --list, or --tool"),
            };
            approve::run(home, action, json)
        }),
    };
    ExitCode::from(code)
}

fn with_home(command: &str, home: Option<PathBuf>, run: impl FnOnce(&Home) -> u8) -> u8 {
    match Home::resolve(home) {
        Ok(home) => run(&home),
        Err(err) => usage(command, &err),
    }
}

/// Diagnostics on stderr (stdout may be a protocol); `TRUSTOS_LOG` filters (default: `info`
/// for the daemon, `warn` for the shim).
fn init_logging(daemon: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRUSTOS_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(if daemon { "info" } else { "warn" })
    });
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(filter)
        .try_init();
}

fn usage(command: &str, err: &dyn std::fmt::Display) -> u8 {
    eprintln!("trustos {command}: {err}");
    EXIT_USAGE
}
