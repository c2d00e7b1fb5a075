//! Reading the chain for x402 reconciliation (to be written).
