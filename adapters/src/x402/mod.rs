//! The x402 rail: wire formats (v1, v2, MCP transport), the `exact` scheme on EVM, the assets
//! it pays in, and the adapter that ties them to verified decisions.

pub mod adapter;
pub mod assets;
pub mod chain;
pub mod evm;
pub mod networks;
pub mod signer;
pub mod wire;

pub use adapter::{RAIL, X402Adapter, X402Payment, X402Terms, report_of};
