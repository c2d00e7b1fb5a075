//! The adapter conformance suite (to be written).
