//! An emulated x402 facilitator and its chain (to be written).
