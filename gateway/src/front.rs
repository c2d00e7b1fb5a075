//! The Streamable HTTP front: `trustos serve` exposes `/mcp/NAME` for hosts that speak HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::GatewayConfig;
use crate::enforce::Enforcer;
use crate::home::Home;

/// Binds `address` and serves `/mcp/NAME` for every configured server.
pub async fn serve(
    enforcer: Arc<Enforcer>,
    config: GatewayConfig,
    home: Home,
    address: &str,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), String> {
    let _ = (enforcer, config, home);
    Err(format!("the HTTP front is not built yet ({address})"))
}
