//! `trustos mcp`: the stdio shim a host launches in place of an MCP server.

use std::sync::Arc;

use super::EXIT_USAGE;
use crate::config::{GatewayConfig, valid_server_name};
use crate::daemon::client::ControlClient;
use crate::home::Home;
use crate::mcp::relay::RelayIdentity;
use crate::mcp::stdio::{self, Upstream};

/// What the shim was asked to relay.
pub struct ShimArgs {
    /// Server name (as routes name it).
    pub server: String,
    /// Agent (default: `gateway.agent` of gateway.toml).
    pub agent: Option<String>,
    /// Tenant (default: `gateway.tenant`).
    pub tenant: Option<String>,
    /// Streamable HTTP upstream.
    pub url: Option<String>,
    /// Stdio upstream command.
    pub command: Vec<String>,
}

/// Runs the shim; its exit code is the upstream's.
pub fn run(home: &Home, args: ShimArgs) -> u8 {
    if !valid_server_name(&args.server) {
        eprintln!(
            "trustos mcp: --server {:?}: use letters, digits, '-', '_' and '.'",
            args.server
        );
        return EXIT_USAGE;
    }
    let upstream = match (args.url, args.command.is_empty()) {
        (Some(url), true) => Upstream::Url(url),
        (None, false) => Upstream::Command(args.command),
        _ => {
            eprintln!(
                "trustos mcp: give either `--url URL` or `-- COMMAND ARGS…`, not both or neither"
            );
            return EXIT_USAGE;
        }
    };
    if let Err(err) = crate::home::ensure_initialized(home) {
        eprintln!("trustos mcp: {err}");
        return EXIT_USAGE;
    }
    let config = match GatewayConfig::load(home.root()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("trustos mcp: {err}");
            return EXIT_USAGE;
        }
    };
    let identity = RelayIdentity {
        server: args.server,
        tenant: args.tenant.unwrap_or(config.gateway.tenant),
        agent: args.agent.unwrap_or(config.gateway.agent),
        session: None,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trustos mcp: cannot start the runtime: {err}");
            return EXIT_USAGE;
        }
    };
    runtime.block_on(async {
        let client = Arc::new(ControlClient::new(home, true));
        // Start (or reach) the daemon now; if it cannot be reached, every tools/call is
        // refused (fail closed) and each one tries again.
        if let Err(err) = client.connect_or_start().await {
            eprintln!("trustos mcp: {err}; tool calls will be refused until the daemon answers");
        }
        match stdio::run(identity, client, upstream).await {
            Ok(code) => code,
            Err(err) => {
                eprintln!("trustos mcp: {err}");
                EXIT_USAGE
            }
        }
    })
}
