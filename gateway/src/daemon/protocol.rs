//! The control protocol between relays (stdio shims, `trustos approve`, `trustos routes`,
//! `trustos payments`) and the daemon: newline-delimited JSON over the unix socket
//! `$TRUSTOS_HOME/trustos.sock`.
//!
//! Each request carries an `id` chosen by the client; each response echoes it, so one
//! connection carries many calls at once (a held call does not block the others).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use trustos_kernel::canonical::Digest;
use trustos_kernel::timestamp::Timestamp;

use crate::enforce::{CallEnd, ToolCall};

/// File name of the control socket inside the home.
pub const SOCKET_FILE: &str = "trustos.sock";

/// Largest control message, in bytes (a `tools/list` of a large server fits).
pub const MAX_CONTROL_MESSAGE: usize = 32 * 1024 * 1024;

/// One request with its id.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    /// Client-chosen id, echoed in the response.
    pub id: u64,
    /// The request.
    #[serde(flatten)]
    pub request: Request,
}

/// What a client asks.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Decide a `tools/call` (→ `Verdict`).
    Decide {
        /// The call.
        call: Box<ToolCall>,
    },
    /// Wait for a held call to resolve (→ `Verdict`).
    AwaitHold {
        /// The challenge decision id.
        decision_id: String,
    },
    /// Receipt of a forwarded call (→ `IssuedReceipt`).
    Finish {
        /// The allow decision id.
        decision_id: String,
        /// How the call ended.
        end: CallEnd,
        /// SHA-256 (JCS) of the result, when there is one.
        result_digest: Option<Digest>,
        /// When the call was forwarded.
        started_at: Timestamp,
    },
    /// An MCP tool asked for an x402 payment: decide and sign it (→ `PaymentVerdict`).
    Pay {
        /// The unpaid call.
        call: Box<ToolCall>,
        /// The tool result carrying the payment request.
        result: serde_json::Value,
    },
    /// Record how a paid retry ended and receipt it (→ `ConcludedPayment`).
    ConcludePayment {
        /// The payment's allow decision id.
        decision_id: String,
        /// What the settlement said.
        outcome: crate::enforce::pay::PaidOutcome,
        /// Whether the upstream served the call.
        served: bool,
        /// SHA-256 (JCS) of the result, when there is one.
        result_digest: Option<Digest>,
        /// When the paid retry was sent.
        started_at: Timestamp,
    },
    /// Drop a held call the host cancelled (→ null).
    CancelHold {
        /// The challenge decision id.
        decision_id: String,
    },
    /// Record a `tools/list` result (→ list of `Observed`).
    ObserveTools {
        /// Server name.
        server: String,
        /// The `tools` array.
        tools: Vec<Value>,
        /// The result has a `nextCursor`.
        #[serde(default)]
        more: bool,
    },
    /// Count a signed operator approval (→ `ApprovalOutcome`).
    Approve {
        /// The compact JWS of an `Approval.v1`.
        approval: String,
    },
    /// The host's user answered an elicitation about a held call (→ `ApprovalOutcome`).
    HostAnswer {
        /// The challenge decision id.
        decision_id: String,
        /// Accepted and approved.
        approve: bool,
    },
    /// Approve a pending tool definition (→ its SHA-256).
    ApproveTool {
        /// Server name.
        server: String,
        /// Tool name.
        tool: String,
        /// Only approve this definition.
        sha256: Option<Digest>,
    },
    /// The route inventory (→ `Inventory`).
    Routes,
    /// Every payment attempt in the ledger, signed authorizations included (→ list of
    /// `trustos_adapters::AttemptRecord`, by id). Read only; `trustos payments` asks it because
    /// the store is locked while the daemon runs.
    Payments,
    /// Daemon status (→ `Status`).
    Status,
}

/// The daemon's answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The result on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<Value>,
    /// The error otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ControlError>,
}

/// A message the daemon sends unasked, with id 0: `{"id":0,"event":"generation",
/// "generation":N}` when a connection opens and whenever the profile or a pin changes, so a
/// shim drops the low-risk verdicts it reuses.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// Always 0.
    pub id: u64,
    /// `generation`.
    pub event: String,
    /// The daemon's generation now.
    pub generation: u64,
}

/// A failed control request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ControlError {
    /// Stable reason code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ControlError {
    /// An error with a code.
    pub fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// What `status` reports.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    /// Daemon process id.
    pub pid: u32,
    /// Gateway key id.
    pub kid: String,
    /// Active profile's fingerprint.
    pub profile_fingerprint: Digest,
    /// Verdict-cache generation.
    pub generation: u64,
    /// Calls held for approval.
    pub held: Vec<crate::enforce::HeldCall>,
    /// HTTP front address, when listening.
    pub listen: Option<String>,
}
