//! The route inventory: every server and tool configured or seen, its risk class, why, where it
//! is enforced and its pinned hash (`trustos routes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::pins::{PinRecord, PinStatus};
use crate::config::GatewayConfig;
use crate::policy::Compiled;
use crate::policy::engine::Call;
use crate::policy::profile::Risk;

/// One row of the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteEntry {
    /// Server name.
    pub server: String,
    /// Tool name, or the profile's tool glob for routes no upstream has listed yet.
    pub tool: String,
    /// Risk class in force.
    pub risk: Risk,
    /// Why: `route:<id>`, `annotation:destructiveHint`, or `default:unclassified`.
    pub why: String,
    /// Where it is enforced: `passthrough` (low), `decision` (high), `decision+budget` (paid),
    /// or `refused` (pin pending or not listed).
    pub enforcement: String,
    /// Pin status (`approved`, `changed`, `new`) or `unlisted`.
    pub pin: String,
    /// Pinned SHA-256 of the approved definition.
    pub sha256: Option<String>,
    /// SHA-256 of a definition waiting for approval.
    pub pending_sha256: Option<String>,
    /// How the server is reached: `stdio`, `http`, or `shim` (seen through `trustos mcp`).
    pub transport: String,
}

/// The whole inventory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Inventory {
    /// Fingerprint of the profile that classified it.
    pub profile_fingerprint: String,
    /// Rows, by server then tool.
    pub routes: Vec<RouteEntry>,
}

/// Builds the inventory from the profile, the configuration and the pins.
pub fn build(compiled: &Compiled, config: &GatewayConfig, pins: &[PinRecord]) -> Inventory {
    let mut rows: BTreeMap<(String, String), RouteEntry> = BTreeMap::new();
    let transport_of = |server: &str| match config.servers.get(server) {
        Some(s) if s.url.is_some() => "http",
        Some(_) => "stdio",
        None => "shim",
    };
    for pin in pins {
        let call = Call::Mcp {
            server: pin.server.clone(),
            tool: pin.tool.clone(),
        };
        let route = compiled.classify(&call);
        let (mut risk, mut why) = match route {
            Some(route) => (route.risk, format!("route:{}", route.id)),
            None => (Risk::High, "default:unclassified".to_owned()),
        };
        if risk == Risk::Low && pin.destructive() {
            risk = Risk::High;
            why = "annotation:destructiveHint".to_owned();
        }
        let enforcement = match (pin.status, risk, why.as_str()) {
            (PinStatus::Changed | PinStatus::New, _, _) => "refused",
            (_, Risk::High, "annotation:destructiveHint") => "refused",
            (_, Risk::Low, _) => "passthrough",
            (_, Risk::High, _) => "decision",
            (_, Risk::Paid, _) => "decision+budget",
        };
        rows.insert(
            (pin.server.clone(), pin.tool.clone()),
            RouteEntry {
                server: pin.server.clone(),
                tool: pin.tool.clone(),
                risk,
                why,
                enforcement: enforcement.to_owned(),
                pin: match pin.status {
                    PinStatus::Approved => "approved",
                    PinStatus::Changed => "changed",
                    PinStatus::New => "new",
                }
                .to_owned(),
                sha256: pin.sha256.map(|d| d.to_string()),
                pending_sha256: pin.pending_sha256.map(|d| d.to_string()),
                transport: transport_of(&pin.server).to_owned(),
            },
        );
    }
    // Routes the profile configures that no upstream has listed yet.
    for route in &compiled.profile.routes {
        let Some(pattern) = &route.mcp else { continue };
        let key = (pattern.server.clone(), pattern.tool.clone());
        let listed = rows.keys().any(|(server, tool)| {
            crate::policy::glob::matches(&pattern.server, server)
                && crate::policy::glob::matches(&pattern.tool, tool)
        });
        if listed || rows.contains_key(&key) {
            continue;
        }
        rows.insert(
            key,
            RouteEntry {
                server: pattern.server.clone(),
                tool: pattern.tool.clone(),
                risk: route.risk,
                why: format!("route:{}", route.id),
                enforcement: "refused".to_owned(),
                pin: "unlisted".to_owned(),
                sha256: None,
                pending_sha256: None,
                transport: transport_of(&pattern.server).to_owned(),
            },
        );
    }
    // Configured servers with nothing seen or routed yet.
    for name in config.servers.keys() {
        if rows.keys().any(|(server, _)| server == name) {
            continue;
        }
        rows.insert(
            (name.clone(), "*".to_owned()),
            RouteEntry {
                server: name.clone(),
                tool: "*".to_owned(),
                risk: Risk::High,
                why: "default:unclassified".to_owned(),
                enforcement: "refused".to_owned(),
                pin: "unlisted".to_owned(),
                sha256: None,
                pending_sha256: None,
                transport: transport_of(name).to_owned(),
            },
        );
    }
    Inventory {
        profile_fingerprint: compiled.fingerprint.to_string(),
        routes: rows.into_values().collect(),
    }
}
