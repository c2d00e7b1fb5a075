//! The HTTP client stack every rail client uses (Circle's W3S API, EVM JSON-RPC nodes): hyper's
//! pooled client over rustls (ring) with the webpki roots, HTTP/1.1, `http://` allowed only
//! where each caller's URL check lets it through (loopback), bodies sent whole.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::{ClientConfig, RootCertStore};

/// The client type.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client whose TCP connects give up after `connect_timeout`; the error says what failed.
pub(crate) fn https_client(connect_timeout: Duration) -> Result<HttpClient, String> {
    let roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS configuration: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Why an [`exchange`] failed.
#[derive(Debug)]
pub(crate) enum ExchangeError {
    /// Connect, TLS, or the request/response exchange itself; the whole error chain.
    Transport(String),
    /// The body could not be read whole (or exceeded the limit).
    Body(String),
    /// No whole answer within the timeout.
    Timeout,
}

/// Sends `request` and reads the whole answer, at most `limit` body bytes, within `timeout`.
pub(crate) async fn exchange(
    http: &HttpClient,
    request: hyper::Request<Full<Bytes>>,
    limit: usize,
    timeout: Duration,
) -> Result<(hyper::StatusCode, Bytes), ExchangeError> {
    use http_body_util::{BodyExt as _, Limited};
    let exchange = async {
        let response = http
            .request(request)
            .await
            .map_err(|error| ExchangeError::Transport(error_chain(&error)))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), limit)
            .collect()
            .await
            .map_err(|error| ExchangeError::Body(format!("reading the response body: {error}")))?
            .to_bytes();
        Ok((status, bytes))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| ExchangeError::Timeout)?
}

/// `error` and every source under it, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut reason = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        reason.push_str(": ");
        reason.push_str(&inner.to_string());
        source = inner.source();
    }
    reason
}
