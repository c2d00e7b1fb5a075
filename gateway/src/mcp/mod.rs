//! The MCP relay: raw JSON-RPC in, raw JSON-RPC out, with the gateway deciding high-risk calls.
//!
//! - [`era`]: protocol revisions and what each allows.
//! - [`message`]: raw JSON-RPC messages: strict reading, exact bytes, `_meta` insertion.
//! - [`lines`]: newline-delimited framing with a size bound.
//! - [`relay`]: one host connection to one upstream, with the gateway deciding `tools/call`.
//! - [`stdio`]: `trustos mcp`, the shim a host launches.
//! - [`sse`]: Server-Sent Events framing for Streamable HTTP responses.
//! - [`http_pump`]: a relay's upstream outbox POSTed to a Streamable HTTP server.
//! - [`http_upstream`]: a Streamable HTTP MCP server as the upstream.

pub mod era;
pub mod http_pump;
pub mod http_upstream;
pub mod lines;
pub mod message;
pub mod relay;
pub mod sse;
pub mod stdio;
