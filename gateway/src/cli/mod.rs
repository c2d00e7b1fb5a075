//! Command-line interface: argument definitions and dispatch to one module per command.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

/// Runs the parsed command line and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let code = match cli.command {
        Command::Keygen { out, json } => keygen::run(&out, json),
        Command::Jwks { keys } => jwks::run(&keys),
        Command::Quickstart { home } => match home.or_else(default_home) {
            Some(home) => quickstart::run(&home),
            None => {
                eprintln!("trustos quickstart: set TRUSTOS_HOME or HOME, or pass --home DIR");
                EXIT_USAGE
            }
        },
        Command::Verify(args) => verify::run(&args),
    };
    ExitCode::from(code)
}

/// `$TRUSTOS_HOME`, else `~/.trustos`.
fn default_home() -> Option<PathBuf> {
    std::env::var_os("TRUSTOS_HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".trustos")))
}
