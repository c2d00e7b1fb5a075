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

mod jwks;
mod keygen;
mod log;
mod profile;
mod quickstart;
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

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Walk one paid tool call through the trust kernel to an offline-verified receipt.
    #[command(after_help = "Example:\n  trustos quickstart\n\n\
        Uses (or creates) the gateway key in $TRUSTOS_HOME/keys (default ~/.trustos) and writes \
        decision.jws, receipt.jws, bundle.json and jwks.json to $TRUSTOS_HOME/quickstart.")]
    Quickstart {
        /// State directory (default: $TRUSTOS_HOME, else ~/.trustos).
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
    },
    /// Write, check and exercise policy profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Read the audit log: signed checkpoints and inclusion proofs.
    #[command(subcommand)]
    Log(LogCommand),
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
        Command::Quickstart { home } => match Home::resolve(home) {
            Ok(home) => quickstart::run(&home),
            Err(err) => usage("quickstart", &err),
        },
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
    };
    ExitCode::from(code)
}

fn usage(command: &str, err: &dyn std::fmt::Display) -> u8 {
    eprintln!("trustos {command}: {err}");
    EXIT_USAGE
}
