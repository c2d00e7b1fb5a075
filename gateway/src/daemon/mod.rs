//! The daemon (`trustos serve`) and how other processes reach it.
//!
//! - [`protocol`]: the control protocol on the unix socket.
//! - [`server`]: the daemon itself.
//! - [`client`]: the socket client used by shims and operator commands; starts the daemon on
//!   demand.

pub mod client;
pub mod protocol;
pub mod server;
