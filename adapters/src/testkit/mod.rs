//! In-process emulators of the payment rails, following each rail's documented contract, with
//! injectable faults: for the adapters' tests and for `trustos adapters conformance`.
//!
//! Compiled only with the `testkit` feature; no payment path depends on it.

pub mod circle;
pub mod x402;
