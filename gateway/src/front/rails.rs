//! The rails' own endpoints on the HTTP front, for money the gateway moves itself:
//!
//! - `POST /rails/circle/transfers`: an agent asks for a Circle transfer. Origin and bearer
//!   token as for `/mcp/NAME` (the token's tenant and agent are the caller; a token limited to
//!   `servers` must list `circle`). The body is strict JSON (no duplicate keys), at most 64 KiB,
//!   exactly `{"destination", "amount", "asset", "network", "resource"}`, all strings, `amount`
//!   in integer base units of the token (`"1500000"` is 1.5 USDC). The transfer is decided and
//!   executed by [`Enforcer::circle_transfer`] in its own task (a client that goes away does not
//!   cancel a transfer half way). Answers, all `application/json`:
//!   - `200` `{"decisionId", "status": "completed", "state": "COMPLETE", "transactionId",
//!     "txHash", "receipt", "logIndex", "settlement", "reasons": []}`;
//!   - `502` the same shape with `"status": "failed"` (`FAILED`, `DENIED`, `CANCELLED`: nothing
//!     moved, the budget reservation released) and a `CIRCLE_TRANSFER_*` reason;
//!   - `504` the same shape with `"status": "unknown"`: no final state within
//!     `answer_timeout_seconds`; the budget stays reserved, and an equal request is refused
//!     (`409`, `CIRCLE_TRANSFER_IN_DOUBT`) until the outcome is known;
//!   - refusals in the HTTP lane's shape `{"error", "reasons": [{"code", "remediation"}],
//!     "decisionId", "decision", "receipt"}`: `400` a bad body (`CIRCLE_REQUEST_*`,
//!     `CIRCLE_AMOUNT_*`, `JSON_*`), `401` no or an unknown token, `403` the policy or the
//!     adapter refused (a signed deny), `404` no `[circle]`, `405`, `409` in doubt, `413` too
//!     large, `415` not JSON, `502` Circle refused to create it, `503` the gateway could not go
//!     on.
//! - `POST /webhooks/circle`: Circle's notifications, authenticated by signature only (no bearer
//!   token): [`Enforcer::circle_webhook`]. At most 64 KiB. `200` once processed, a duplicate or a
//!   test ping; `401` a missing, unknown or bad signature or key id (nothing recorded); `400` a
//!   body that is not a notification; `503` when Circle's key or the ledger cannot be reached
//!   (Circle retries). Answers `{"code", "message"}`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_LENGTH, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{Body, Endpoint, Front, checks, json_response};
use crate::config::CIRCLE_SERVER;
use crate::enforce::circle::{Executed, RefusalKind, TransferAsk, TransferStatus, TransferVerdict};
use crate::enforce::{Reason, ToolCall};

/// Path of the transfer endpoint.
pub(super) const TRANSFERS_PATH: &str = "/rails/circle/transfers";
/// Path of the webhook endpoint.
pub(super) const WEBHOOK_PATH: &str = "/webhooks/circle";
/// Largest body of either endpoint.
const MAX_RAIL_BODY: usize = 64 * 1024;
/// How long a client may take to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// The tool name of a Circle transfer in routes and fingerprints.
const TRANSFER_TOOL: &str = "transfer";
/// The fields of a transfer request, all required.
const FIELDS: [&str; 5] = ["destination", "amount", "asset", "network", "resource"];

impl Front {
    /// `POST /rails/circle/transfers`.
    pub(super) async fn circle_transfer(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Response<Body> {
        if request.method() != Method::POST {
            return only_post();
        }
        let token = match self.admit(request.headers(), CIRCLE_SERVER, Endpoint::Rail) {
            Ok(token) => token,
            Err(response) => return *response,
        };
        let (tenant, agent) = (token.tenant.clone(), token.agent.clone());
        if !checks::is_json_body(request.headers()) {
            return lane_refusal(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "HTTP_UNSUPPORTED_MEDIA_TYPE",
                "the body must be Content-Type: application/json",
            );
        }
        let body = match read_limited(request).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let (arguments, ask) = match parse_transfer(&body) {
            Ok(parsed) => parsed,
            Err((code, message)) => return lane_refusal(StatusCode::BAD_REQUEST, code, &message),
        };
        let call = ToolCall {
            tenant,
            agent,
            session: None,
            server: CIRCLE_SERVER.to_owned(),
            tool: TRANSFER_TOOL.to_owned(),
            arguments,
            http: None,
            payment: None,
        };
        // In its own task: a transfer, once started, is concluded and receipted even when the
        // client goes away.
        let enforcer = Arc::clone(&self.enforcer);
        let task = tokio::spawn(async move { enforcer.circle_transfer(call, &ask).await });
        match task.await {
            Ok(Ok(verdict)) => transfer_response(verdict),
            Ok(Err(err)) => {
                tracing::error!(error = %err, "a Circle transfer could not be decided");
                lane_refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "GATEWAY_UNAVAILABLE",
                    "the gateway could not decide this transfer",
                )
            }
            Err(err) => {
                tracing::error!(error = %err, "a Circle transfer task failed");
                lane_refusal(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "GATEWAY_UNAVAILABLE",
                    "the gateway failed while handling this transfer",
                )
            }
        }
    }

    /// `POST /webhooks/circle`.
    pub(super) async fn circle_webhook(
        self: &Arc<Self>,
        request: Request<Incoming>,
    ) -> Response<Body> {
        if request.method() != Method::POST {
            return only_post();
        }
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let key_id = header("x-circle-key-id");
        let signature = header("x-circle-signature");
        let body = match read_limited(request).await {
            Ok(body) => body,
            Err(response) => return *response,
        };
        let enforcer = Arc::clone(&self.enforcer);
        let task = tokio::spawn(async move {
            enforcer
                .circle_webhook(&body, key_id.as_deref(), signature.as_deref())
                .await
        });
        let answer = match task.await {
            Ok(answer) => answer,
            Err(err) => {
                tracing::error!(error = %err, "a Circle webhook task failed");
                return json_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({"code": "GATEWAY_UNAVAILABLE", "message": "retry"}).to_string(),
                );
            }
        };
        if answer.status != 200 {
            tracing::warn!(
                status = answer.status,
                code = answer.code,
                "refused a Circle webhook"
            );
        }
        let status =
            StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(
            status,
            json!({"code": answer.code, "message": answer.message}).to_string(),
        )
    }
}

/// Reads a body of at most [`MAX_RAIL_BODY`] bytes.
async fn read_limited(request: Request<Incoming>) -> Result<Bytes, Box<Response<Body>>> {
    let too_large = || {
        Box::new(lane_refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "CIRCLE_REQUEST_TOO_LARGE",
            &format!("the body is larger than {MAX_RAIL_BODY} bytes"),
        ))
    };
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_RAIL_BODY as u64) {
        return Err(too_large());
    }
    let read = Limited::new(request.into_body(), MAX_RAIL_BODY).collect();
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Ok(Err(_)) => Err(Box::new(lane_refusal(
            StatusCode::BAD_REQUEST,
            "HTTP_BODY_UNREADABLE",
            "the body could not be read",
        ))),
        Err(_) => Err(Box::new(lane_refusal(
            StatusCode::REQUEST_TIMEOUT,
            "HTTP_BODY_TIMEOUT",
            "the body did not arrive in time",
        ))),
    }
}

/// The call's arguments (the body as parsed) and the transfer it asks for.
fn parse_transfer(body: &[u8]) -> Result<(Value, TransferAsk), (&'static str, String)> {
    let value = trustos_kernel::strict_json::parse(body)
        .map_err(|err| (err.reason_code(), err.to_string()))?;
    let Value::Object(object) = &value else {
        return Err((
            "CIRCLE_REQUEST_INVALID",
            "the body must be a JSON object".to_owned(),
        ));
    };
    if let Some(unknown) = object.keys().find(|key| !FIELDS.contains(&key.as_str())) {
        return Err((
            "CIRCLE_REQUEST_UNKNOWN_FIELD",
            format!(
                "unknown field {unknown:?}; the fields are {}",
                FIELDS.join(", ")
            ),
        ));
    }
    let text = |name: &str| field(object, name);
    let amount_text = match object.get("amount") {
        Some(Value::String(amount)) => amount.clone(),
        Some(Value::Number(_)) => {
            return Err((
                "CIRCLE_AMOUNT_NOT_STRING",
                "amount is a string of integer base units, not a JSON number".to_owned(),
            ));
        }
        Some(_) => {
            return Err((
                "CIRCLE_REQUEST_FIELD_INVALID",
                "amount must be a string".to_owned(),
            ));
        }
        None => {
            return Err((
                "CIRCLE_REQUEST_FIELD_MISSING",
                "amount is required".to_owned(),
            ));
        }
    };
    let amount = parse_base_units(&amount_text)?;
    let ask = TransferAsk {
        destination: text("destination")?,
        amount,
        asset: text("asset")?,
        network: text("network")?,
        resource: text("resource")?,
    };
    Ok((value, ask))
}

/// A required, non-empty string field.
fn field(object: &Map<String, Value>, name: &str) -> Result<String, (&'static str, String)> {
    match object.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(_) => Err((
            "CIRCLE_REQUEST_FIELD_INVALID",
            format!("{name} must be a non-empty string"),
        )),
        None => Err((
            "CIRCLE_REQUEST_FIELD_MISSING",
            format!("{name} is required"),
        )),
    }
}

/// Integer base units: digits only, no sign, fraction, exponent or leading zero; fits u128.
fn parse_base_units(text: &str) -> Result<u128, (&'static str, String)> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err((
            "CIRCLE_AMOUNT_NOT_INTEGER",
            format!(
                "amount {text:?} is not an integer of base units (\"1500000\" is 1.5 USDC; no decimal point, sign or leading zero)"
            ),
        ));
    }
    text.parse().map_err(|_| {
        (
            "CIRCLE_AMOUNT_OUT_OF_RANGE",
            "amount is too large".to_owned(),
        )
    })
}

/// The answer for a transfer's verdict.
fn transfer_response(verdict: TransferVerdict) -> Response<Body> {
    match verdict {
        TransferVerdict::Refused {
            decision_id,
            decision,
            reasons,
            receipt,
            kind,
        } => {
            let status = if reasons.iter().any(|r| r.code == "CIRCLE_NOT_CONFIGURED") {
                StatusCode::NOT_FOUND
            } else {
                match kind {
                    RefusalKind::Policy => StatusCode::FORBIDDEN,
                    RefusalKind::InDoubt => StatusCode::CONFLICT,
                    RefusalKind::Rail => StatusCode::BAD_GATEWAY,
                    RefusalKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                }
            };
            let body = json!({
                "error": "transfer refused",
                "reasons": reasons,
                "decisionId": decision_id,
                "decision": decision,
                "receipt": receipt.as_ref().map(|r| &r.receipt),
            });
            json_response(status, body.to_string())
        }
        TransferVerdict::Executed(executed) => executed_response(&executed),
    }
}

fn executed_response(executed: &Executed) -> Response<Body> {
    let (status, error) = match executed.status {
        TransferStatus::Completed => (StatusCode::OK, None),
        TransferStatus::Failed => (StatusCode::BAD_GATEWAY, Some("the transfer failed")),
        TransferStatus::Unknown => (
            StatusCode::GATEWAY_TIMEOUT,
            Some("the transfer's outcome is not known yet"),
        ),
    };
    let settlement = executed.settlement.as_ref().map(|s| {
        json!({
            "rail": s.rail,
            "transaction": s.reference,
            "network": s.network,
            "asset": s.asset,
            "amount": s.amount,
        })
    });
    let body = json!({
        "decisionId": executed.decision_id,
        "status": executed.status,
        "state": executed.state,
        "transactionId": executed.transaction_id,
        "txHash": executed.tx_hash,
        "receipt": executed.receipt.receipt,
        "logIndex": executed.receipt.log_index,
        "settlement": settlement,
        "reasons": executed.reasons,
        "error": error,
    });
    json_response(status, body.to_string())
}

/// A refusal in the HTTP lane's shape, without a decision.
fn lane_refusal(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = json!({
        "error": message,
        "reasons": [Reason::new(code)],
        "decisionId": null,
        "decision": null,
        "receipt": null,
    });
    json_response(status, body.to_string())
}

fn only_post() -> Response<Body> {
    let mut response = lane_refusal(
        StatusCode::METHOD_NOT_ALLOWED,
        "HTTP_METHOD_NOT_ALLOWED",
        "use POST",
    );
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("POST"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(body: &str) -> &'static str {
        parse_transfer(body.as_bytes()).unwrap_err().0
    }

    #[test]
    fn transfer_bodies_are_strict() {
        let good = r#"{"destination":"0xab","amount":"1500000","asset":"usdc","network":"eip155:84532","resource":"r"}"#;
        let (_, ask) = parse_transfer(good.as_bytes()).unwrap();
        assert_eq!(ask.amount, 1_500_000);
        assert_eq!(
            code(
                r#"{"destination":"0xab","amount":"1.5","asset":"usdc","network":"n:1","resource":"r"}"#
            ),
            "CIRCLE_AMOUNT_NOT_INTEGER"
        );
        assert_eq!(
            code(
                r#"{"destination":"0xab","amount":15,"asset":"usdc","network":"n:1","resource":"r"}"#
            ),
            "CIRCLE_AMOUNT_NOT_STRING"
        );
        assert_eq!(
            code(
                r#"{"destination":"0xab","amount":"015","asset":"usdc","network":"n:1","resource":"r"}"#
            ),
            "CIRCLE_AMOUNT_NOT_INTEGER"
        );
        assert_eq!(
            code(
                r#"{"destination":"0xab","amount":"1","asset":"usdc","network":"n:1","resource":"r","walletId":"x"}"#
            ),
            "CIRCLE_REQUEST_UNKNOWN_FIELD"
        );
        assert_eq!(
            code(r#"{"destination":"0xab","amount":"1","asset":"usdc","network":"n:1"}"#),
            "CIRCLE_REQUEST_FIELD_MISSING"
        );
        assert_eq!(
            code(
                r#"{"destination":"0xab","destination":"0xcd","amount":"1","asset":"usdc","network":"n:1","resource":"r"}"#
            ),
            "JSON_DUPLICATE_KEY"
        );
        assert_eq!(
            code(&format!(
                r#"{{"destination":"0xab","amount":"{}0","asset":"usdc","network":"n:1","resource":"r"}}"#,
                u128::MAX
            )),
            "CIRCLE_AMOUNT_OUT_OF_RANGE"
        );
        assert_eq!(code("[]"), "CIRCLE_REQUEST_INVALID");
    }
}
