//! The protocol objects Trust OS fingerprints and signs: `RequestFingerprint.v1`,
//! `PolicyDecision.v1` and `Receipt.v1`.
//!
//! Each object names its own type in a `type` member, rejects unknown members, and has a JSON
//! Schema under `kernel/schemas/`. Amounts are strings of integer base units (invariant 5); times
//! are [`Timestamp`]s; digests are [`Digest`]s. The JSON member names are the wire contract:
//! renaming a field here is a breaking protocol change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::canonical::{CanonicalError, Digest};
use crate::strict_json::MAX_SAFE_INTEGER;
use crate::timestamp::Timestamp;

/// The `type` member of a `RequestFingerprint.v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FingerprintType {
    /// Version 1.
    #[default]
    #[serde(rename = "RequestFingerprint.v1")]
    V1,
}

/// The `type` member of a `PolicyDecision.v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionType {
    /// Version 1.
    #[default]
    #[serde(rename = "PolicyDecision.v1")]
    V1,
}

/// The `type` member of a `Receipt.v1`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReceiptType {
    /// Version 1.
    #[default]
    #[serde(rename = "Receipt.v1")]
    V1,
}

/// A non-negative integer amount in an asset's base units (USDC has 6 decimals: `"1500000"` is
/// 1.50 USDC), written as decimal digits without leading zeros, at most 78 digits (uint256).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(String);

/// Why a string is not an [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("amount {0:?} is not a string of integer base units (digits, no sign, no leading zero)")]
pub struct AmountError(String);

impl Amount {
    /// The amount's digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The amount as a `u128`, or `None` when it is larger (uint256 amounts exist on EVM).
    pub fn to_u128(&self) -> Option<u128> {
        self.0.parse().ok()
    }
}

impl From<u128> for Amount {
    fn from(value: u128) -> Self {
        Self(value.to_string())
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits_only = !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit());
        let leading_zero = text.len() > 1 && text.starts_with('0');
        if !digits_only || leading_zero || text.len() > 78 {
            return Err(AmountError(text.to_owned()));
        }
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Amount({})", self.0)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A log index or other counter that must stay a safe JSON integer (≤ 2^53 − 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct SafeIndex(u64);

/// Why a number is not a [`SafeIndex`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("index {0} exceeds 2^53-1")]
pub struct SafeIndexError(u64);

impl SafeIndex {
    /// Wraps `value` if it is at most 2^53 − 1.
    pub fn new(value: u64) -> Result<Self, SafeIndexError> {
        if value > MAX_SAFE_INTEGER {
            return Err(SafeIndexError(value));
        }
        Ok(Self(value))
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for SafeIndex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::new(u64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// What is being called: an MCP tool or an HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "lowercase", deny_unknown_fields)]
pub enum Route {
    /// `tools/call` of `tool` on the MCP server the gateway knows as `server`.
    Mcp {
        /// Server name in the gateway's configuration.
        server: String,
        /// Tool name exactly as called.
        tool: String,
    },
    /// An HTTP request.
    Http {
        /// Upper-case method.
        method: String,
        /// Normalized absolute URL.
        url: String,
    },
}

/// Payment terms bound into a fingerprint: exactly what may reach the chain or the rail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PaymentTerms {
    /// Payment scheme, e.g. x402 `exact`, or `circle-transfer`.
    pub scheme: String,
    /// CAIP-2 network, e.g. `eip155:8453`.
    pub network: String,
    /// Asset identifier (token contract address on EVM).
    pub asset: String,
    /// Amount in base units.
    pub amount: Amount,
    /// Payee address.
    pub pay_to: String,
    /// The resource paid for.
    pub resource: String,
    /// The paying account (the gateway's wallet address), when the rail signs for a payer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
    /// SHA-256 of the JCS form of the rail's own offer the payment answers (the x402
    /// requirement copied into `accepted`), so every term of it that reaches the rail is bound:
    /// EIP-712 domain name and version, `maxTimeoutSeconds`, `extra`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_digest: Option<Digest>,
}

/// `RequestFingerprint.v1`: the exact request a decision is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestFingerprint {
    /// Always `RequestFingerprint.v1`.
    #[serde(rename = "type")]
    pub object_type: FingerprintType,
    /// Tenant the caller belongs to.
    pub tenant: String,
    /// Agent making the call.
    pub agent: String,
    /// What is called.
    pub route: Route,
    /// SHA-256 of the JCS form of the tool arguments or the request body.
    pub arguments_digest: Digest,
    /// Payment terms, when the call moves money.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<PaymentTerms>,
}

impl RequestFingerprint {
    /// The fingerprint of a call with these JSON arguments (already read strictly).
    pub fn new(
        tenant: impl Into<String>,
        agent: impl Into<String>,
        route: Route,
        arguments: &Value,
        payment: Option<PaymentTerms>,
    ) -> Result<Self, CanonicalError> {
        Ok(Self {
            object_type: FingerprintType::V1,
            tenant: tenant.into(),
            agent: agent.into(),
            route,
            arguments_digest: Digest::of_canonical_value(arguments)?,
            payment,
        })
    }

    /// SHA-256 over the JCS bytes of this object: the value decisions and receipts carry.
    pub fn digest(&self) -> Result<Digest, CanonicalError> {
        Digest::of_canonical(self)
    }
}

/// What the policy engine decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Forward the call.
    Allow,
    /// Refuse the call.
    Deny,
    /// Hold the call for a human approver.
    Challenge,
}

impl Outcome {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Challenge => "challenge",
        }
    }
}

/// How a decision is enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Decide and log, never block.
    Shadow,
    /// Block, with operator override.
    Soft,
    /// Block.
    Hard,
}

/// The budget amount a decision reserved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BudgetReservation {
    /// Budget the amount is counted against (e.g. `agent:research-bot/day`).
    pub budget_key: String,
    /// Asset of the amount.
    pub asset: String,
    /// Amount reserved, in base units.
    pub amount: Amount,
    /// Start of the budget window the reservation falls in.
    pub window_start: Timestamp,
    /// End (exclusive) of that window.
    pub window_end: Timestamp,
}

/// `PolicyDecision.v1`: the signed answer of the policy engine for one fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDecision {
    /// Always `PolicyDecision.v1`.
    #[serde(rename = "type")]
    pub object_type: DecisionType,
    /// Unique id; single use is recorded under it.
    pub decision_id: String,
    /// Digest of the `RequestFingerprint.v1` decided.
    pub fingerprint: Digest,
    /// The outcome.
    pub outcome: Outcome,
    /// Stable reason codes explaining the outcome.
    pub reason_codes: Vec<String>,
    /// Ids of the policies that determined the outcome.
    pub policy_ids: Vec<String>,
    /// SHA-256 of the canonical compiled profile.
    pub profile_fingerprint: Digest,
    /// Budget amounts reserved for the call, one per budget it counts against (agent, tenant,
    /// payee…); empty when it spends nothing. All were reserved atomically with the decision.
    pub reservations: Vec<BudgetReservation>,
    /// When the decision was made.
    pub issued_at: Timestamp,
    /// After this instant the decision can no longer be used.
    pub expires_at: Timestamp,
    /// Enforcement mode in force.
    pub mode: Mode,
}

/// How the decided call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionStatus {
    /// The call ran and returned a result.
    Completed,
    /// The call ran and failed.
    Failed,
    /// The call was not forwarded.
    Denied,
    /// The outcome is not known (timeout after forwarding); reconciliation settles it.
    Unknown,
}

impl ExecutionStatus {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Unknown => "unknown",
        }
    }
}

/// Where money moved, when it did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settlement {
    /// The rail: `x402` or `circle`.
    pub rail: String,
    /// The rail's reference: transaction hash (x402) or Circle transaction id.
    pub reference: String,
    /// CAIP-2 network.
    pub network: String,
    /// Asset moved.
    pub asset: String,
    /// Amount moved, in base units.
    pub amount: Amount,
}

/// `Receipt.v1`: the signed record of how a decided call ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Receipt {
    /// Always `Receipt.v1`.
    #[serde(rename = "type")]
    pub object_type: ReceiptType,
    /// Unique id.
    pub receipt_id: String,
    /// The decision this receipt closes.
    pub decision_id: String,
    /// Digest of the `RequestFingerprint.v1` that was decided and executed.
    pub fingerprint: Digest,
    /// How the call ended.
    pub status: ExecutionStatus,
    /// SHA-256 of the JCS form of the result, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_digest: Option<Digest>,
    /// Settlement reference, when money moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Settlement>,
    /// When the call was forwarded (or refused).
    pub started_at: Timestamp,
    /// When its result came back.
    pub completed_at: Timestamp,
    /// Index of this receipt's leaf in the gateway's Merkle log.
    pub log_index: SafeIndex,
    /// SHA-256 digests of the compact JWS of earlier receipts this one composes (sub-agent chains).
    pub composes: Vec<Digest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn amounts_are_integer_strings() {
        for good in ["0", "1", "1500000", &"9".repeat(78)] {
            assert!(good.parse::<Amount>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "01",
            "-1",
            "+1",
            "1.5",
            "1e6",
            " 1",
            "١",
            &"9".repeat(79),
        ] {
            assert!(bad.parse::<Amount>().is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Amount>(json!(1500000)).is_err());
        assert_eq!(
            "340282366920938463463374607431768211455"
                .parse::<Amount>()
                .unwrap()
                .to_u128(),
            Some(u128::MAX)
        );
    }

    #[test]
    fn unknown_members_and_wrong_types_are_refused() {
        let route = json!({"transport": "mcp", "server": "s", "tool": "t", "extra": 1});
        assert!(serde_json::from_value::<Route>(route).is_err());
        let route = json!({"transport": "ftp", "server": "s", "tool": "t"});
        assert!(serde_json::from_value::<Route>(route).is_err());
        let fingerprint = json!({
            "type": "Receipt.v1", "tenant": "t", "agent": "a",
            "route": {"transport": "mcp", "server": "s", "tool": "t"},
            "argumentsDigest": Digest::of(b"").to_string()
        });
        assert!(serde_json::from_value::<RequestFingerprint>(fingerprint).is_err());
    }

    #[test]
    fn log_index_stays_a_safe_integer() {
        assert!(SafeIndex::new(MAX_SAFE_INTEGER).is_ok());
        assert!(SafeIndex::new(MAX_SAFE_INTEGER + 1).is_err());
        assert!(serde_json::from_value::<SafeIndex>(json!(MAX_SAFE_INTEGER + 1)).is_err());
    }
}
