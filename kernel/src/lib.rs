//! Trust OS trust kernel: everything a third party needs to verify Trust OS objects offline.
//!
//! The kernel is pure: no I/O, no async runtime, no clock of its own (callers pass the time).
//!
//! - [`strict_json`] reads untrusted JSON that will be fingerprinted or signed, rejecting input that
//!   two parsers could read differently (duplicate keys, invalid UTF-8, lone surrogates, a BOM,
//!   trailing bytes, unsafe integers).
//! - [`canonical`] produces RFC 8785 (JCS) bytes and SHA-256 digests of them.
//! - [`objects`] defines the signed protocol objects: `RequestFingerprint.v1`, `PolicyDecision.v1`,
//!   `Receipt.v1`, and the receipt bundle.
//! - [`keys`] holds Ed25519 gateway keys, RFC 7638 thumbprints and JWKS.
//! - [`jws`] signs and verifies compact JWS whose payload is JCS bytes.
//! - [`verify`] builds [`verify::VerifiedDecision`], the only key that unlocks money movement.
//! - [`merkle`] is RFC 6962 / RFC 9162 Merkle tree math; [`checkpoint`] is C2SP checkpoints as
//!   signed notes.
//! - [`bundle`] verifies a receipt together with its inclusion proof and signed checkpoint.

pub mod bundle;
pub mod canonical;
pub mod checkpoint;
pub mod jws;
pub mod keys;
pub mod merkle;
pub mod objects;
pub mod strict_json;
pub mod timestamp;
pub mod verify;
