//! `trustos approve`: answer a held call with a signed approval (or rejection), list held
//! calls, or accept a tool definition that changed upstream.

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};
use crate::approval::{Approval, ApprovalType, Verdict as ApprovalVerdict};
use crate::daemon::client::ControlClient;
use crate::daemon::protocol::{Request, Status};
use crate::enforce::{self, ApprovalOutcome, Verdict};
use crate::home::Home;
use crate::keyfile;

/// What `trustos approve` was asked to do.
pub enum ApproveAction {
    /// List held calls.
    List,
    /// Approve or reject one held call with an operator key.
    Decision {
        /// The challenge decision id.
        decision_id: String,
        /// The operator's private key (PKCS#8 PEM).
        key: std::path::PathBuf,
        /// Reject instead of approve.
        reject: bool,
    },
    /// Accept the pending definition of `SERVER/TOOL`.
    Tool {
        /// `SERVER/TOOL`.
        tool: String,
        /// Only if it has this SHA-256.
        sha256: Option<String>,
    },
}

/// Runs the action against the daemon.
pub fn run(home: &Home, action: ApproveAction, json: bool) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trustos approve: {err}");
            return EXIT_USAGE;
        }
    };
    runtime.block_on(act(home, action, json))
}

async fn act(home: &Home, action: ApproveAction, json: bool) -> u8 {
    let client = ControlClient::new(home, false);
    match action {
        ApproveAction::List => match client.call_as::<Status>(Request::Status).await {
            Ok(status) => {
                if json {
                    out!(
                        "{}",
                        serde_json::to_string(&status.held).unwrap_or_default()
                    );
                } else if status.held.is_empty() {
                    out!("no calls are held");
                } else {
                    for held in &status.held {
                        out!(
                            "{}  {}/{}  agent {}  approvals {}/{} of {:?}  until {}",
                            held.decision_id,
                            held.server,
                            held.tool,
                            held.agent,
                            held.approvals.len(),
                            held.quorum,
                            held.approvers,
                            held.deadline
                        );
                    }
                }
                EXIT_OK
            }
            Err(err) => fail(&err),
        },
        ApproveAction::Tool { tool, sha256 } => {
            let Some((server, tool)) = tool.split_once('/') else {
                eprintln!("trustos approve --tool: name it as SERVER/TOOL");
                return EXIT_USAGE;
            };
            let sha256 = match sha256.map(|s| s.parse()).transpose() {
                Ok(sha256) => sha256,
                Err(err) => {
                    eprintln!("trustos approve --sha256: {err}");
                    return EXIT_USAGE;
                }
            };
            let request = Request::ApproveTool {
                server: server.to_owned(),
                tool: tool.to_owned(),
                sha256,
            };
            match client.call_as::<String>(request).await {
                Ok(digest) => {
                    out!("approved {server}/{tool} at {digest}");
                    EXIT_OK
                }
                Err(err) => fail(&err),
            }
        }
        ApproveAction::Decision {
            decision_id,
            key,
            reject,
        } => {
            let key = match keyfile::read_private_key(&key) {
                Ok(key) => key,
                Err(err) => {
                    eprintln!("trustos approve: {err}");
                    return EXIT_USAGE;
                }
            };
            let status = match client.call_as::<Status>(Request::Status).await {
                Ok(status) => status,
                Err(err) => return fail(&err),
            };
            let Some(held) = status.held.iter().find(|h| h.decision_id == decision_id) else {
                eprintln!(
                    "trustos approve: no call is held under {decision_id} (HOLD_UNKNOWN); \
                     `trustos approve --list` shows the held calls"
                );
                return EXIT_INVALID;
            };
            let approval = Approval {
                object_type: ApprovalType::V1,
                decision_id: decision_id.clone(),
                fingerprint: held.fingerprint,
                verdict: if reject {
                    ApprovalVerdict::Reject
                } else {
                    ApprovalVerdict::Approve
                },
                issued_at: match enforce::now() {
                    Ok(now) => now,
                    Err(err) => {
                        eprintln!("trustos approve: {err}");
                        return EXIT_USAGE;
                    }
                },
            };
            let signed = match approval.sign(&key) {
                Ok(signed) => signed,
                Err(err) => {
                    eprintln!("trustos approve: {err}");
                    return EXIT_USAGE;
                }
            };
            match client
                .call_as::<ApprovalOutcome>(Request::Approve { approval: signed })
                .await
            {
                Ok(outcome) => report(&decision_id, &outcome, json),
                Err(err) => fail(&err),
            }
        }
    }
}

fn report(decision_id: &str, outcome: &ApprovalOutcome, json: bool) -> u8 {
    if json {
        out!("{}", serde_json::to_string(outcome).unwrap_or_default());
    }
    match outcome {
        ApprovalOutcome::Counted { approvals, quorum } => {
            if !json {
                out!(
                    "counted: {decision_id} has {} of {quorum} approvals ({})",
                    approvals.len(),
                    approvals.join(", ")
                );
            }
            EXIT_OK
        }
        ApprovalOutcome::Resolved { verdict } => match verdict {
            Verdict::Forward {
                decision_id: allowed,
                ..
            } => {
                if !json {
                    out!("approved: the call goes ahead under decision {allowed}");
                }
                EXIT_OK
            }
            Verdict::Refuse { reasons, .. } => {
                if !json {
                    out!("refused: the call will not run");
                    for reason in reasons {
                        out!("  {}: {}", reason.code, reason.remediation);
                    }
                }
                EXIT_INVALID
            }
            other => {
                if !json {
                    out!("resolved: {other:?}");
                }
                EXIT_OK
            }
        },
        ApprovalOutcome::Refused { code, message } => {
            eprintln!("trustos approve: {message} ({code})");
            EXIT_INVALID
        }
    }
}

fn fail(err: &crate::daemon::protocol::ControlError) -> u8 {
    eprintln!("trustos approve: {err}");
    EXIT_USAGE
}
