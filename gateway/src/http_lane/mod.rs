//! The HTTP lane: `trustos serve` as a reverse proxy from `/http/NAME/…` to a configured upstream
//! base URL, where paid (x402) and high-risk requests are decided and fingerprinted.
//!
//! - [`url`]: the one URL normalization used both to route a request and to fingerprint it, and
//!   the join of an upstream base with the path the agent sent.
//! - [`client`]: the upstream HTTP client (http and https, rustls with the `ring` provider).

pub mod client;
pub mod lane;
pub mod url;
