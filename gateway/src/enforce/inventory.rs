//! The route inventory: every server and tool configured or seen, its risk class, why, where it
//! is enforced and its pinned hash (`trustos routes`).
//!
//! MCP rows come from the tool pins (what upstreams listed), the profile's MCP routes no upstream
//! has listed yet, and configured servers with nothing seen. HTTP rows come from the profile's
//! HTTP routes, one row each, under the `[http.NAME]` lanes whose base URL host the route's host
//! glob matches, and from lanes no route matches (their requests are unclassified: high).

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
    /// Server name; for an HTTP route, the names of the `[http.NAME]` lanes it applies to
    /// (comma-separated), or `-` when no lane's host matches.
    pub server: String,
    /// Tool name, or the profile's tool glob for routes no upstream has listed yet; for an HTTP
    /// route, `METHODS host path` (methods comma-separated, `*` for any).
    pub tool: String,
    /// Risk class in force.
    pub risk: Risk,
    /// Why: `route:<id>`, `annotation:destructiveHint`, `default:unclassified`, or
    /// `config:invalid-url` (an `[http.NAME]` lane whose `url` does not parse).
    pub why: String,
    /// Where it is enforced: `passthrough` (low), `decision` (high), `decision+budget` (paid),
    /// `x402` (an HTTP route priced by the API's 402, without payment pointers), or `refused`
    /// (pin pending or not listed).
    pub enforcement: String,
    /// Pin status (`approved`, `changed`, `new`), `unlisted`, or `-` for HTTP routes (an HTTP API
    /// lists nothing to pin; its routes are the profile's).
    pub pin: String,
    /// Pinned SHA-256 of the approved definition.
    pub sha256: Option<String>,
    /// SHA-256 of a definition waiting for approval.
    pub pending_sha256: Option<String>,
    /// How the server is reached: `stdio`, `http`, or `shim` (seen through `trustos mcp`) for
    /// MCP; `http-lane` for an HTTP API behind `/http/NAME/…`.
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

/// Transport of HTTP lane rows.
const HTTP_LANE: &str = "http-lane";

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
    let mut routes: Vec<RouteEntry> = rows.into_values().collect();
    routes.extend(http_rows(compiled, config));
    // Stable: HTTP routes with the same server and tool keep the profile's order.
    routes.sort_by(|a, b| (&a.server, &a.tool).cmp(&(&b.server, &b.tool)));
    Inventory {
        profile_fingerprint: compiled.fingerprint.to_string(),
        routes,
    }
}

/// The lanes of `config` by name, with the host of each base URL (`None` when the URL does not
/// normalize: the daemon refuses such a lane, so it serves nothing).
fn lane_hosts(config: &GatewayConfig) -> Vec<(&str, Option<String>)> {
    config
        .http
        .iter()
        .map(|(name, lane)| {
            let host = crate::http_lane::url::normalize(&lane.url)
                .ok()
                .map(|url| url.host);
            (name.as_str(), host)
        })
        .collect()
}

/// One row per HTTP route of the profile, then one per lane that no route's host matches.
fn http_rows(compiled: &Compiled, config: &GatewayConfig) -> Vec<RouteEntry> {
    let lanes = lane_hosts(config);
    let mut matched = vec![false; lanes.len()];
    let mut rows = Vec::new();
    for route in &compiled.profile.routes {
        let Some(pattern) = &route.http else { continue };
        let mut names = Vec::new();
        for (index, (name, host)) in lanes.iter().enumerate() {
            if host
                .as_deref()
                .is_some_and(|host| crate::policy::glob::matches(&pattern.host, host))
            {
                names.push(*name);
                matched[index] = true;
            }
        }
        let server = if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(",")
        };
        let methods = if pattern.methods.is_empty() {
            "*".to_owned()
        } else {
            pattern.methods.join(",")
        };
        let enforcement = match route.risk {
            Risk::Low => "passthrough",
            Risk::High => "decision",
            Risk::Paid if route.payment.is_none() => "x402",
            Risk::Paid => "decision+budget",
        };
        rows.push(RouteEntry {
            server,
            tool: format!("{methods} {} {}", pattern.host, pattern.path),
            risk: route.risk,
            why: format!("route:{}", route.id),
            enforcement: enforcement.to_owned(),
            pin: "-".to_owned(),
            sha256: None,
            pending_sha256: None,
            transport: HTTP_LANE.to_owned(),
        });
    }
    // Lanes no route covers: every request to them is unclassified, so high. A lane whose URL
    // does not parse serves nothing (the daemon refuses to start with it).
    for ((name, host), matched) in lanes.iter().zip(matched) {
        if matched {
            continue;
        }
        let (why, enforcement) = match host {
            Some(_) => ("default:unclassified", "decision"),
            None => ("config:invalid-url", "refused"),
        };
        rows.push(RouteEntry {
            server: (*name).to_owned(),
            tool: format!("* {} *", host.as_deref().unwrap_or("-")),
            risk: Risk::High,
            why: why.to_owned(),
            enforcement: enforcement.to_owned(),
            pin: "-".to_owned(),
            sha256: None,
            pending_sha256: None,
            transport: HTTP_LANE.to_owned(),
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::path::Path;

    use super::*;
    use crate::config::HttpUpstreamConfig;
    use crate::policy::{compile, load};

    const PROFILE: &str = r#"
[profile]
name = "inventory"
description = "Inventory rows for MCP and HTTP routes."

[defaults]
unknown_agent = "deny"
mode = { low = "hard", high = "hard", paid = "hard" }

[[subjects]]
tenant = "local"
agent = "agent"

[[routes]]
id = "echo"
risk = "low"
mcp = { server = "everything", tool = "echo" }

[[routes]]
id = "forecast"
risk = "paid"
http = { host = "api.weather.example", path = "/v1/forecast*", methods = ["GET", "POST"] }

[[routes]]
id = "weather-health"
risk = "low"
http = { host = "api.weather.example", path = "/health" }

[[routes]]
id = "invoices"
risk = "paid"
http = { host = "*.billing.example", path = "/v2/invoices", methods = ["POST"] }
payment = { amount = "/amount", payee = "/payee", default_asset = "usdc", default_network = "base" }

[[routes]]
id = "deploy"
risk = "high"
http = { host = "deploy.internal.example", path = "/v1/deployments*", methods = ["POST"] }

[[amounts]]
asset = "usdc"
max = "5000000"
"#;

    fn compiled() -> Compiled {
        let path = Path::new("inventory.toml");
        let profile = load::parse(path, PROFILE).unwrap();
        compile::compile(&load::LoadedProfile {
            path: path.to_owned(),
            profile,
            cedar_files: Vec::new(),
        })
        .unwrap()
    }

    fn config(lanes: &[(&str, &str)]) -> GatewayConfig {
        let mut config = GatewayConfig::default();
        for (name, url) in lanes {
            config.http.insert(
                (*name).to_owned(),
                HttpUpstreamConfig {
                    url: (*url).to_owned(),
                    ..HttpUpstreamConfig::default()
                },
            );
        }
        config
    }

    fn row<'a>(inventory: &'a Inventory, why: &str) -> &'a RouteEntry {
        inventory
            .routes
            .iter()
            .find(|row| row.why == why)
            .unwrap_or_else(|| panic!("no row {why} in {:#?}", inventory.routes))
    }

    #[test]
    fn each_http_route_is_one_row_under_the_lanes_whose_host_it_matches() {
        let inventory = build(
            &compiled(),
            &config(&[
                ("weather", "https://api.weather.example/v1"),
                ("billing-eu", "https://eu.billing.example"),
                ("billing-us", "https://us.billing.example:8443/api"),
            ]),
            &[],
        );
        let http: Vec<&RouteEntry> = inventory
            .routes
            .iter()
            .filter(|row| row.transport == "http-lane")
            .collect();
        assert_eq!(http.len(), 4, "{http:#?}");

        let forecast = row(&inventory, "route:forecast");
        assert_eq!(forecast.server, "weather");
        assert_eq!(forecast.tool, "GET,POST api.weather.example /v1/forecast*");
        assert_eq!(forecast.risk, Risk::Paid);
        assert_eq!(forecast.enforcement, "x402");
        assert_eq!(forecast.pin, "-");
        assert_eq!(forecast.sha256, None);

        let health = row(&inventory, "route:weather-health");
        assert_eq!(health.server, "weather");
        assert_eq!(health.tool, "* api.weather.example /health");
        assert_eq!(health.enforcement, "passthrough");

        let invoices = row(&inventory, "route:invoices");
        assert_eq!(invoices.server, "billing-eu,billing-us");
        assert_eq!(invoices.tool, "POST *.billing.example /v2/invoices");
        assert_eq!(invoices.enforcement, "decision+budget");

        let deploy = row(&inventory, "route:deploy");
        assert_eq!(deploy.server, "-", "no lane's host matches");
        assert_eq!(deploy.risk, Risk::High);
        assert_eq!(deploy.enforcement, "decision");
        assert_eq!(deploy.transport, "http-lane");
    }

    #[test]
    fn mcp_rows_are_unchanged_by_http_routes_and_rows_stay_sorted() {
        let inventory = build(
            &compiled(),
            &config(&[("weather", "https://api.weather.example/v1")]),
            &[],
        );
        let echo = row(&inventory, "route:echo");
        assert_eq!(echo.server, "everything");
        assert_eq!(echo.tool, "echo");
        assert_eq!(echo.enforcement, "refused");
        assert_eq!(echo.pin, "unlisted");
        assert_eq!(echo.transport, "shim");
        let keys: Vec<(&str, &str)> = inventory
            .routes
            .iter()
            .map(|row| (row.server.as_str(), row.tool.as_str()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
    }

    #[test]
    fn a_lane_no_route_covers_is_unclassified_and_a_broken_one_refused() {
        let inventory = build(
            &compiled(),
            &config(&[
                ("weather", "https://api.weather.example/v1"),
                ("search", "https://search.example/api"),
                ("broken", "https://user@bad.example/"),
            ]),
            &[],
        );
        let search = inventory
            .routes
            .iter()
            .find(|row| row.server == "search")
            .unwrap();
        assert_eq!(search.tool, "* search.example *");
        assert_eq!(search.risk, Risk::High);
        assert_eq!(search.why, "default:unclassified");
        assert_eq!(search.enforcement, "decision");
        let broken = inventory
            .routes
            .iter()
            .find(|row| row.server == "broken")
            .unwrap();
        assert_eq!(broken.why, "config:invalid-url");
        assert_eq!(broken.enforcement, "refused");
        // The weather lane is covered by its routes: no catch-all row.
        assert!(
            !inventory
                .routes
                .iter()
                .any(|row| row.server == "weather" && row.why == "default:unclassified")
        );
    }

    #[test]
    fn without_lanes_http_routes_still_appear() {
        let inventory = build(&compiled(), &GatewayConfig::default(), &[]);
        let http: Vec<&RouteEntry> = inventory
            .routes
            .iter()
            .filter(|row| row.transport == "http-lane")
            .collect();
        assert_eq!(http.len(), 4);
        assert!(http.iter().all(|row| row.server == "-"));
    }
}
