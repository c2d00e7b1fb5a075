//! Who signs an x402 authorization (to be written).
