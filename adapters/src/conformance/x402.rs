//! The x402 rail in the conformance suite (waiting for the x402 emulator).
