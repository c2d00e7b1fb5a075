//! `GET /healthz`: whether this daemon can decide calls right now, for a load balancer or a
//! Kubernetes readiness / liveness probe.
//!
//! Unauthenticated (a probe has no bearer token) and without a body. The same `Origin` check as
//! every other route runs first (a foreign browser page gets 403); only `GET` and `HEAD` are
//! served (405 otherwise), and a request that carries a body is refused (400): the route reads
//! nothing from the caller.
//!
//! The check is a cheap read of the store (the audit log's size) under a deadline. Healthy:
//! 200 `{"status":"ok","kid":"<gateway key id>","generation":N}` — the key id is the public
//! RFC 7638 thumbprint receipts carry, `generation` changes whenever the profile or a tool pin
//! does. Unhealthy: 503 `{"status":"unavailable","reason":"<code>","kid":…,"generation":N}`
//! with one of the [`Unhealthy`] codes. The cause's detail (paths, storage errors) goes to the
//! daemon's log only; the answer never carries secrets, paths or error text.

use std::future::Future;
use std::time::Duration;

use hyper::header::{CONTENT_LENGTH, HeaderMap, HeaderValue, TRANSFER_ENCODING};
use hyper::{Method, StatusCode};
use serde_json::json;

use crate::store::StoreError;

/// The path of the health route.
pub(super) const PATH: &str = "/healthz";

/// Methods the health route answers.
pub(super) const ALLOW: &str = "GET, HEAD";

/// How long the store's read may take before the daemon counts as unhealthy.
pub(super) const STORE_DEADLINE: Duration = Duration::from_secs(2);

/// Why the daemon is not healthy; each maps to a stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Unhealthy {
    /// The store's writer stopped or the store was shut down.
    #[error("HEALTH_STORE_CLOSED")]
    Closed,
    /// The store could not be read (I/O, corruption, a full disk).
    #[error("HEALTH_STORE_ERROR")]
    Failed,
    /// The store did not answer within [`STORE_DEADLINE`].
    #[error("HEALTH_STORE_TIMEOUT")]
    TimedOut,
}

impl Unhealthy {
    /// The reason code carried in the answer.
    pub(super) fn code(self) -> &'static str {
        match self {
            Self::Closed => "HEALTH_STORE_CLOSED",
            Self::Failed => "HEALTH_STORE_ERROR",
            Self::TimedOut => "HEALTH_STORE_TIMEOUT",
        }
    }
}

/// Why a request to the health route is refused before any check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// Not `GET` or `HEAD`.
    Method,
    /// The request carries a body.
    Body,
}

/// Checks the method and that no body was sent (the `Origin` check is the front's own).
pub(super) fn admit(method: &Method, headers: &HeaderMap) -> Result<(), Refused> {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Err(Refused::Method);
    }
    let declared = headers.get(CONTENT_LENGTH).map(|value| {
        value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
    });
    match declared {
        None if headers.contains_key(TRANSFER_ENCODING) => Err(Refused::Body),
        None | Some(Some(0)) => Ok(()),
        Some(_) => Err(Refused::Body),
    }
}

/// Runs the store probe under `deadline`: `Ok` when it answered, else why not.
pub(super) async fn check<F>(probe: F, deadline: Duration) -> Result<(), Unhealthy>
where
    F: Future<Output = Result<u64, StoreError>>,
{
    match tokio::time::timeout(deadline, probe).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => {
            tracing::warn!(%err, "health check: the store could not be read");
            Err(match err {
                StoreError::Unavailable(_) | StoreError::Locked { .. } => Unhealthy::Closed,
                _ => Unhealthy::Failed,
            })
        }
        Err(_) => {
            tracing::warn!(
                deadline_ms = deadline.as_millis(),
                "health check: the store did not answer in time"
            );
            Err(Unhealthy::TimedOut)
        }
    }
}

/// The status and JSON body answering a check's outcome.
pub(super) fn answer(
    outcome: Result<(), Unhealthy>,
    kid: &str,
    generation: u64,
) -> (StatusCode, String) {
    match outcome {
        Ok(()) => (
            StatusCode::OK,
            json!({"status": "ok", "kid": kid, "generation": generation}).to_string(),
        ),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({
                "status": "unavailable",
                "reason": why.code(),
                "kid": kid,
                "generation": generation,
            })
            .to_string(),
        ),
    }
}

/// `Cache-Control` of every health answer: a probe must never see a cached one.
pub(super) fn cache_control() -> HeaderValue {
    HeaderValue::from_static("no-store")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::path::PathBuf;

    #[test]
    fn only_bodiless_get_and_head_are_admitted() {
        let none = HeaderMap::new();
        assert_eq!(admit(&Method::GET, &none), Ok(()));
        assert_eq!(admit(&Method::HEAD, &none), Ok(()));
        assert_eq!(admit(&Method::POST, &none), Err(Refused::Method));
        assert_eq!(admit(&Method::DELETE, &none), Err(Refused::Method));

        let mut zero = HeaderMap::new();
        zero.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(admit(&Method::GET, &zero), Ok(()));
        let mut some = HeaderMap::new();
        some.insert(CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(admit(&Method::GET, &some), Err(Refused::Body));
        let mut junk = HeaderMap::new();
        junk.insert(CONTENT_LENGTH, HeaderValue::from_static("x"));
        assert_eq!(admit(&Method::GET, &junk), Err(Refused::Body));
        let mut chunked = HeaderMap::new();
        chunked.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(admit(&Method::GET, &chunked), Err(Refused::Body));
    }

    #[tokio::test]
    async fn store_outcomes_map_to_reason_codes() {
        let deadline = Duration::from_millis(50);
        assert_eq!(check(async { Ok(3) }, deadline).await, Ok(()));
        let closed = async { Err(StoreError::Unavailable("writer stopped".into())) };
        assert_eq!(check(closed, deadline).await, Err(Unhealthy::Closed));
        let broken = async {
            Err(StoreError::Io {
                path: PathBuf::from("/secret/place/trustos.redb"),
                detail: "EIO".into(),
            })
        };
        assert_eq!(check(broken, deadline).await, Err(Unhealthy::Failed));
        let stuck = std::future::pending::<Result<u64, StoreError>>();
        assert_eq!(check(stuck, deadline).await, Err(Unhealthy::TimedOut));
    }

    #[test]
    fn answers_carry_the_key_id_and_generation_and_no_detail() {
        let (status, body) = answer(Ok(()), "kid-1", 4);
        assert_eq!(status, StatusCode::OK);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            json!({"status": "ok", "kid": "kid-1", "generation": 4})
        );

        let (status, body) = answer(Err(Unhealthy::Failed), "kid-1", 4);
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "unavailable");
        assert_eq!(body["reason"], "HEALTH_STORE_ERROR");
        assert_eq!(body.as_object().map(|o| o.len()), Some(4));
        assert_eq!(Unhealthy::TimedOut.to_string(), Unhealthy::TimedOut.code());
    }
}
