//! Trust OS gateway: the `trustos` command line and the pieces behind it.
//!
//! - [`cli`]: argument parsing and one module per command.
//! - [`home`]: the `$TRUSTOS_HOME` layout.
//! - [`keyfile`]: gateway keys on disk.
//! - [`policy`]: profiles, their compilation to Cedar, and decisions.
//! - [`store`]: the durable state that protects money, behind the domain-level `Store` trait.

pub mod cli;
pub mod home;
pub mod keyfile;
pub mod policy;
pub mod store;
