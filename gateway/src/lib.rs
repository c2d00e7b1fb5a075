//! Trust OS gateway: the `trustos` command line and the pieces behind it.
//!
//! - [`approval`]: signed operator approvals of held calls.
//! - [`cli`]: argument parsing and one module per command.
//! - [`config`]: the daemon configuration file, `gateway.toml`.
//! - [`daemon`]: `trustos serve` and its control socket.
//! - [`front`]: the Streamable HTTP front (`/mcp/NAME`).
//! - [`enforce`]: the daemon's decision authority: pins, classification, decisions, holds, receipts.
//! - [`http_lane`]: the HTTP reverse-proxy lane (`/http/NAME`): URL normalization, upstream client.
//! - [`home`]: the `$TRUSTOS_HOME` layout.
//! - [`hosts`]: agent hosts' MCP config files (`trustos onboard`, `trustos audit hosts`).
//! - [`keyfile`]: gateway keys on disk.
//! - [`mcp`]: the MCP relay, its protocol eras and upstream transports.
//! - [`policy`]: profiles, their compilation to Cedar, and decisions.
//! - [`store`]: the durable state that protects money, behind the domain-level `Store` trait.

pub mod approval;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod enforce;
pub mod front;
pub mod home;
pub mod hosts;
pub mod http_lane;
pub mod keyfile;
pub mod mcp;
pub mod policy;
pub mod store;
