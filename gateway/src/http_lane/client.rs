//! The upstream HTTP client: one hyper client for `http://` and `https://` upstreams, used by the
//! HTTP lane and by Streamable HTTP MCP upstreams.
//!
//! TLS is rustls with the `ring` crypto provider (aws-lc-rs would add a C and assembly build to
//! every compile), TLS 1.3 and 1.2. Server certificates are verified against the Mozilla root
//! set compiled in by `webpki-roots`, never the host's trust store, so what is trusted does not
//! depend on the machine; an operator adds a private CA (and tests add theirs) with an extra
//! PEM file of roots ([`build_client`]). The provider is passed explicitly, so no process-wide
//! rustls default is needed or installed.
//!
//! HTTP/1.1 only: the TLS handshake offers no ALPN, and servers answer HTTP/1.1. Connecting
//! over TCP is bounded by [`CONNECT_TIMEOUT`]; the TLS handshake and the wait for response
//! headers are bounded by the caller, around [`hyper_util::client::legacy::Client::request`].

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::{self, PemObject};
use rustls::{ClientConfig, RootCertStore};

/// The upstream client: http and https, HTTP/1.1, request bodies sent whole.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Bound on establishing the TCP connection to an upstream (each address tried).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The extra roots file could not be read.
    #[error("cannot read the extra TLS roots file {path}: {source}")]
    RootsUnreadable {
        /// The file named.
        path: PathBuf,
        /// Why reading it failed.
        #[source]
        source: io::Error,
    },
    /// The extra roots file is not PEM, or a certificate block in it is damaged.
    #[error("the extra TLS roots file {path} is not valid PEM: {source}")]
    RootsNotPem {
        /// The file named.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: pem::Error,
    },
    /// The extra roots file holds no `CERTIFICATE` block.
    #[error("the extra TLS roots file {path} holds no certificate")]
    RootsEmpty {
        /// The file named.
        path: PathBuf,
    },
    /// A certificate in the extra roots file cannot serve as a trust anchor.
    #[error(
        "certificate {index} of the extra TLS roots file {path} is not usable as a root: {source}"
    )]
    RootUnusable {
        /// The file named.
        path: PathBuf,
        /// Which certificate, counting from 1.
        index: usize,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// rustls refused the configuration (the crypto provider lacks the protocol versions).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// Builds the upstream client: TCP connect bounded by [`CONNECT_TIMEOUT`], `http://` in clear,
/// `https://` over rustls (ring), trusting the `webpki-roots` set plus every certificate in
/// `extra_roots_pem` when given (a PEM file of one or more `CERTIFICATE` blocks; other blocks
/// are ignored).
pub fn build_client(extra_roots_pem: Option<&Path>) -> Result<UpstreamClient, ClientError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = extra_roots_pem {
        for (index, certificate) in read_roots(path)?.into_iter().enumerate() {
            roots
                .add(certificate)
                .map_err(|source| ClientError::RootUnusable {
                    path: path.to_owned(),
                    index: index + 1,
                    source,
                })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut tcp = HttpConnector::new();
    // The scheme is the TLS layer's business: it lets http:// through and wraps https://.
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// Every `CERTIFICATE` block of the PEM file at `path`.
fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let text = std::fs::read(path).map_err(|source| ClientError::RootsUnreadable {
        path: path.to_owned(),
        source,
    })?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ClientError::RootsNotPem {
            path: path.to_owned(),
            source,
        })?;
    if certificates.is_empty() {
        return Err(ClientError::RootsEmpty {
            path: path.to_owned(),
        });
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::error::Error as StdError;
    use std::net::SocketAddr;

    use http_body_util::BodyExt;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::{Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::net::TcpListener;
    use tokio_rustls::TlsAcceptor;

    use super::*;

    /// A self-signed certificate for `localhost`: its PEM, and a TLS server using it on
    /// 127.0.0.1 that answers every request with 200 "hello over tls".
    async fn tls_server() -> (String, SocketAddr) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert_pem = certified.cert.pem();
        let cert_der = certified.cert.der().clone();
        let key_der = PrivateKeyDer::try_from(certified.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to serve.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(|_: Request<Incoming>| async {
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                            b"hello over tls",
                        ))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        (cert_pem, addr)
    }

    fn get(url: &str) -> Request<Full<Bytes>> {
        Request::get(url).body(Full::new(Bytes::new())).unwrap()
    }

    /// The rustls error somewhere in a client error's causes (hyper-rustls wraps it in
    /// `io::Error`s, whose `source` skips what they wrap, so look inside each of them too).
    fn rustls_cause(error: &(dyn StdError + 'static)) -> Option<rustls::Error> {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found.clone());
        }
        let wrapped = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref);
        if let Some(found) = wrapped.and_then(|inner| rustls_cause(inner)) {
            return Some(found);
        }
        error.source().and_then(rustls_cause)
    }

    #[tokio::test]
    async fn tls_needs_a_trusted_root() {
        let (cert_pem, addr) = tls_server().await;
        let url = format!("https://localhost:{}/", addr.port());

        let default_roots = build_client(None).unwrap();
        let error = default_roots.request(get(&url)).await.unwrap_err();
        assert!(error.is_connect(), "{error:?}");
        assert_eq!(
            rustls_cause(&error),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            )),
            "{error:?}"
        );

        let dir = std::env::temp_dir().join(format!("trustos-tls-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let roots = dir.join("roots.pem");
        std::fs::write(&roots, &cert_pem).unwrap();
        let trusting = build_client(Some(&roots)).unwrap();
        let response = trusting.request(get(&url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from_static(b"hello over tls"));

        // The name is checked too: the certificate is for localhost, not 127.0.0.1.
        let by_ip = format!("https://127.0.0.1:{}/", addr.port());
        let error = trusting.request(get(&by_ip)).await.unwrap_err();
        assert!(
            matches!(
                rustls_cause(&error),
                Some(rustls::Error::InvalidCertificate(_))
            ),
            "{error:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn plain_http_goes_through_the_same_client() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"plain"))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
        let client = build_client(None).unwrap();
        let response = client
            .request(get(&format!("http://127.0.0.1:{}/", addr.port())))
            .await
            .unwrap();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body, Bytes::from_static(b"plain"));
    }

    #[test]
    fn bad_roots_files_are_refused() {
        let dir = std::env::temp_dir().join(format!("trustos-bad-roots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();

        let missing = dir.join("missing.pem");
        assert!(matches!(
            build_client(Some(&missing)),
            Err(ClientError::RootsUnreadable { .. })
        ));

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no pem here\n").unwrap();
        assert!(matches!(
            build_client(Some(&empty)),
            Err(ClientError::RootsEmpty { .. })
        ));

        let damaged = dir.join("damaged.pem");
        std::fs::write(
            &damaged,
            "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            build_client(Some(&damaged)),
            Err(ClientError::RootsNotPem { .. })
        ));

        let garbage = dir.join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(matches!(
            build_client(Some(&garbage)),
            Err(ClientError::RootUnusable { index: 1, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
