//! Trust OS bypass regression suite: the harness.
//!
//! The suite attacks a running gateway from the host side and checks, at the tool server, what
//! got through. The parts:
//!
//! - [`StdioPeer`] ([`peer`]): a child process spoken to in newline-delimited JSON-RPC, the
//!   way an MCP host speaks to `trustos mcp` (or to an upstream directly). Every wait has a
//!   timeout; the child's process group is killed on drop.
//! - `trustos-recording-upstream` (`src/bin/recording_upstream.rs`): a real rmcp tool server
//!   that records every raw line it receives, the oracle; [`Recorder`] ([`record`]) reads the
//!   record and finds tool calls under every reading a lenient parser could take.
//! - [`node_packages`] ([`node`]): the reference server (`server-everything`) and client
//!   (the inspector CLI) from npm, pinned in `bypass-tests/node/`, installed once per build
//!   tree.
//! - [`trustos_bin`] and [`recording_upstream_bin`] ([`locate`]): where the binaries are.
//! - [`gateway::Gateway`]: a real gateway (home, test profile, daemon) and its shims.
//! - [`serve::Listening`]: `trustos serve --listen` on a free port, for the HTTP front.
//! - [`x402`]: the payer key's variable, `[x402]` and `[[tokens]]` text, a profile builder for
//!   paid routes, and `trustos payments`.
//! - [`canned::CannedApi`]: a tiny HTTP API with canned answers that reports what reached it.
//! - [`TempDir`] ([`scratch`]): a scratch directory removed on drop.
//! - [`output_with_timeout`] and [`run_with_timeout`] ([`command`]): run a helper process
//!   (the inspector CLI, npm, cargo) with a deadline.
//!
//! Errors are `String`s naming what failed: this crate is test support, and a test reports
//! them with `unwrap()` (allowed in tests by `clippy.toml`). The library itself neither
//! unwraps nor expects; the only panics are the `assert_*` helpers and reading a record file
//! that exists but cannot be read.

pub mod canned;
pub mod command;
pub mod gateway;
pub mod locate;
pub mod lock;
pub mod node;
pub mod peer;
pub mod record;
pub mod scratch;
pub mod serve;
pub mod x402;

pub use command::{output_with_timeout, run_with_timeout};
pub use locate::{recording_upstream_bin, target_dir, trustos_bin};
pub use node::{NodePackages, node_packages};
pub use peer::StdioPeer;
pub use record::Recorder;
pub use scratch::TempDir;
