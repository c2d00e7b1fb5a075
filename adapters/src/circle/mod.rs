//! The Circle rail: Developer-Controlled Wallets of Circle's Web3 Services (W3S) API.
//!
//! What exists so far are the self-contained, security-critical building blocks; none of them
//! does I/O except reading a secret from a file or the environment:
//!
//! - [`secrets`]: the API key (`TEST_API_KEY:…` / `LIVE_API_KEY:…`, its environment and its
//!   `Authorization` header) and the 32-byte entity secret, loaded from text, an owner-only file
//!   or an environment variable, redacted everywhere and zeroized on drop.
//! - [`ciphertext`]: the per-request entity secret ciphertext (RSA-OAEP-SHA-256, base64).
//! - [`webhook`]: verification of a notification's `X-Circle-Signature` (ECDSA P-256 / SHA-256
//!   over the raw body) and a bounded de-duplicator by `notificationId`.
//! - [`amount`]: exact conversion between integer base units and Circle's decimal amount strings.
//! - [`state`]: Circle's transaction states, which are final, which moved money, and the
//!   monotone order that keeps a late webhook from moving a transaction backwards.
//! - [`client`]: the W3S HTTP client (hyper + rustls): the entity public key, transfers with a
//!   deterministic idempotency key and a fresh ciphertext per attempt, retries of transport
//!   errors, timeouts and `5xx`, and transaction look-ups by id and by `refId`.
//! - [`adapter`]: [`adapter::CircleAdapter`], the [`crate::Adapter`] of this rail: direct
//!   transfers from a developer-controlled wallet, only for a verified decision binding exactly
//!   the transfer, recorded before Circle is called, once per decision, reconciled by `refId`.
//!
//! Still to come, with the Circle issue: wallet and notification-public-key calls in the client,
//! and webhook-driven settlement reports.
//! (An emulator of the W3S API for tests lives in `crate::testkit::circle`, feature `testkit`.)
//!
//! Reason codes of this rail start with `CIRCLE_`; each module lists its own with
//! `all_reason_codes()`.
//!
//! Sources (Circle developer docs):
//! <https://developers.circle.com/w3s/web3-services-api-client-keys-auth>,
//! <https://developers.circle.com/wallets/dev-controlled/entity-secret-management>,
//! <https://developers.circle.com/wallets/dev-controlled/register-entity-secret>,
//! <https://developers.circle.com/api-reference/verify-webhook-signatures>,
//! <https://developers.circle.com/api-reference/wallets/common/get-notification-signature>,
//! <https://developers.circle.com/api-reference/wallets/transaction-states-and-errors>.

pub mod adapter;
pub mod amount;
pub mod ciphertext;
pub mod client;
pub mod secrets;
pub mod state;
pub mod wallet_signer;
pub mod webhook;

pub use secrets::{ApiKey, CircleEnvironment, EntitySecret};
pub use state::TransactionState;
