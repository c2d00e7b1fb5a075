//! `trustos routes`: the route inventory — every server and tool configured or seen, and every
//! HTTP route of the profile under its `[http.NAME]` lanes — its risk class, why, its enforcement
//! point and its pinned hash. Asks the running daemon; without one, reads the home directly.

use std::sync::Arc;

use super::{EXIT_OK, EXIT_USAGE};
use crate::config::GatewayConfig;
use crate::daemon::client::ControlClient;
use crate::daemon::protocol::Request;
use crate::enforce::inventory::{self, Inventory, RouteEntry};
use crate::enforce::pins::Pins;
use crate::home::Home;

/// Prints the inventory (JSON with `json`).
pub fn run(home: &Home, json: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trustos routes: {err}");
            return EXIT_USAGE;
        }
    };
    let inventory = match runtime.block_on(load(home)) {
        Ok(inventory) => inventory,
        Err(err) => {
            eprintln!("trustos routes: {err}");
            return EXIT_USAGE;
        }
    };
    if json {
        match serde_json::to_string_pretty(&inventory) {
            Ok(text) => out!("{text}"),
            Err(err) => {
                eprintln!("trustos routes: {err}");
                return EXIT_USAGE;
            }
        }
        return EXIT_OK;
    }
    out!("profile {}", inventory.profile_fingerprint);
    // HTTP rows (`METHODS host path`, lanes joined by commas) can be long: the first two
    // columns are as wide as their widest cell.
    let width = |header: &str, cell: fn(&RouteEntry) -> &str, least: usize| {
        inventory
            .routes
            .iter()
            .map(|route| cell(route).chars().count())
            .chain([header.len(), least])
            .max()
            .unwrap_or(least)
    };
    let server_width = width("SERVER", |route| &route.server, 16);
    let tool_width = width("TOOL", |route| &route.tool, 32);
    out!(
        "{:<server_width$} {:<tool_width$} {:<5} {:<16} {:<30} {:<9} sha256",
        "SERVER",
        "TOOL",
        "RISK",
        "ENFORCEMENT",
        "WHY",
        "PIN"
    );
    for route in &inventory.routes {
        out!(
            "{:<server_width$} {:<tool_width$} {:<5} {:<16} {:<30} {:<9} {}",
            route.server,
            route.tool,
            route.risk.as_str(),
            route.enforcement,
            route.why,
            route.pin,
            route.sha256.as_deref().unwrap_or("-")
        );
    }
    EXIT_OK
}

async fn load(home: &Home) -> Result<Inventory, String> {
    let client = ControlClient::new(home, false);
    match client.call_as::<Inventory>(Request::Routes).await {
        Ok(inventory) => return Ok(inventory),
        Err(err) if err.code != "GATEWAY_UNAVAILABLE" => return Err(err.to_string()),
        Err(_) => {}
    }
    // No daemon: read the profile and the pins from the home.
    let config = GatewayConfig::load(home.root()).map_err(|err| err.to_string())?;
    let profile_path = config.profile_path(home.root());
    let compiled = crate::policy::open(&profile_path).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        format!("{}:\n{}", profile_path.display(), lines.join("\n"))
    })?;
    let pins = if home.database_path().exists() {
        let key = Arc::new(home.load_key().map_err(|err| err.to_string())?);
        let store = Arc::new(
            home.open_store(key, false)
                .await
                .map_err(|err| err.to_string())?,
        );
        let pins = Pins::new(Arc::clone(&store))
            .all()
            .await
            .map_err(|err| err.to_string())?;
        if let Ok(store) = Arc::try_unwrap(store) {
            let _ = store.close().await;
        }
        pins
    } else {
        Vec::new()
    };
    Ok(inventory::build(&compiled, &config, &pins))
}
