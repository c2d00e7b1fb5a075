//! One relayed connection of the HTTP front: a [`Relay`], its upstream (a child process speaking
//! stdio, or a Streamable HTTP server), and the [`Router`] that hands the relay's answers to the
//! POSTs waiting for them. A handshake-era session owns one; in 2026-07-28 one is kept per token
//! and server.
//!
//! Tasks: the router drains the relay's host-bound outbox; for a child, a writer feeds its stdin,
//! a reader feeds its stdout to the relay, and a supervisor kills it on [`Conn::close`] (or when
//! the connection is dropped); for an HTTP upstream, a sender POSTs each message and feeds what
//! comes back to the relay (the pattern of `trustos mcp --url`). When the child's output ends,
//! the relay answers what is still in flight and the connection is forgotten.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::BufReader;
use tokio::sync::{mpsc, oneshot, watch};

use super::router::{Answer, DONE, Router, START, WaitGuard};
use crate::config::ServerConfig;
use crate::enforce::Authority;
use crate::mcp::era::Era;
use crate::mcp::http_pump::{Outgoing, post_one};
use crate::mcp::http_upstream::HttpUpstream;
use crate::mcp::lines::write_lines;
use crate::mcp::relay::{Relay, RelayIdentity};
use crate::mcp::stdio::{ChildUpstream, spawn_upstream};

/// Messages buffered in each direction.
const OUTBOX_CAPACITY: usize = 1024;
/// How long closing an HTTP upstream's session may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Called once when a child upstream's output ends, with the relay it served.
pub(super) type OnClosed = Box<dyn FnOnce(&Arc<Relay>) + Send>;

/// A relay with its upstream and router.
pub(super) struct Conn {
    /// The relay.
    pub relay: Arc<Relay>,
    /// Routes the relay's host-bound messages.
    pub router: Arc<Router>,
    /// The `token_sha256` of the token that opened it.
    pub owner: String,
    /// Serializes feeding bodies to the relay (see the router's markers).
    feed: tokio::sync::Mutex<()>,
    /// A sender into the relay's host-bound outbox, for the router's markers.
    to_client: mpsc::Sender<String>,
    /// Set to `true` to stop the upstream; dropping it stops it too.
    shutdown: watch::Sender<bool>,
    /// The HTTP upstream, whose session [`Conn::close`] ends.
    http: Option<Arc<HttpUpstream>>,
    last_used: Mutex<Instant>,
}

/// Resolves once `shutdown` is set or its sender is gone.
async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

impl Conn {
    /// Starts `server` for `identity`: spawns the child (in `home`, with the server's `env`
    /// added) or prepares the HTTP upstream, and the tasks around the relay.
    pub(super) fn start(
        server: &ServerConfig,
        identity: RelayIdentity,
        owner: String,
        authority: Arc<dyn Authority>,
        home: &Path,
        on_closed: OnClosed,
    ) -> Result<Arc<Self>, String> {
        let (to_client, client_outbox) = mpsc::channel::<String>(OUTBOX_CAPACITY);
        let (to_upstream, upstream_outbox) = mpsc::channel::<String>(OUTBOX_CAPACITY);
        let (shutdown, _) = watch::channel(false);
        let relay = Relay::new(identity, authority, to_client.clone(), to_upstream);
        let http = match &server.url {
            Some(url) => {
                let headers = server.resolved_headers(|name| std::env::var(name).ok())?;
                let upstream =
                    Arc::new(HttpUpstream::new(url, headers).map_err(|err| err.to_string())?);
                tokio::spawn(send_http(
                    Arc::clone(&relay),
                    Arc::clone(&upstream),
                    upstream_outbox,
                    shutdown.subscribe(),
                ));
                Some(upstream)
            }
            None => {
                start_child(server, home, &relay, upstream_outbox, &shutdown, on_closed)?;
                None
            }
        };
        let router = Arc::new(Router::default());
        tokio::spawn(Arc::clone(&router).run(client_outbox));
        Ok(Arc::new(Self {
            relay,
            router,
            owner,
            feed: tokio::sync::Mutex::new(()),
            to_client,
            shutdown,
            http,
            last_used: Mutex::new(Instant::now()),
        }))
    }

    /// Feeds one POST body to the relay and registers the POST as waiting for the answers to
    /// the requests `ids`. `Err` names an id another POST still waits for (nothing is fed).
    /// Run it in its own task: a relay must not be interrupted half way through a message.
    pub(super) async fn feed(
        &self,
        body: &[u8],
        ids: Vec<Value>,
    ) -> Result<(WaitGuard, oneshot::Receiver<Answer>), Value> {
        self.touch();
        let _feeding = self.feed.lock().await;
        let (guard, answer) = self.router.register(ids)?;
        let seq = guard.seq();
        let _ = self.to_client.send(format!("{START}{seq}")).await;
        self.relay.from_client(body).await;
        let _ = self.to_client.send(format!("{DONE}{seq}")).await;
        Ok((guard, answer))
    }

    /// Marks the connection as just used.
    pub(super) fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// How long the connection has been idle (zero while a POST waits or a GET stream is open).
    pub(super) fn idle(&self) -> Duration {
        if self.router.busy() {
            return Duration::ZERO;
        }
        self.last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .elapsed()
    }

    /// Ends the connection: the child is killed (its reader then answers what is in flight),
    /// or the HTTP upstream's tasks stop, its requests in flight are answered with errors, and
    /// its session is ended with DELETE.
    pub(super) async fn close(&self) {
        self.shutdown.send_replace(true);
        if let Some(upstream) = &self.http {
            self.relay.upstream_closed().await;
            match tokio::time::timeout(CLOSE_TIMEOUT, upstream.close()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::debug!(%err, "ending the upstream session failed"),
                Err(_) => tracing::debug!("ending the upstream session timed out"),
            }
        }
    }
}

fn start_child(
    server: &ServerConfig,
    home: &Path,
    relay: &Arc<Relay>,
    upstream_outbox: mpsc::Receiver<String>,
    shutdown: &watch::Sender<bool>,
    on_closed: OnClosed,
) -> Result<(), String> {
    if server.command.is_empty() {
        return Err("the server has neither `command` nor `url`".into());
    }
    let ChildUpstream {
        mut child,
        input: child_in,
        output: child_out,
    } = spawn_upstream(&server.command, &server.env, Some(home))?;
    tokio::spawn(write_lines(child_in, upstream_outbox));
    let stop = shutdown.subscribe();
    tokio::spawn(async move {
        tokio::select! {
            status = child.wait() => tracing::debug!(?status, "upstream exited"),
            () = stopped(stop) => {
                let _ = child.kill().await;
            }
        }
    });
    let reader_relay = Arc::clone(relay);
    tokio::spawn(async move {
        Arc::clone(&reader_relay)
            .pump_upstream_lines(BufReader::new(child_out))
            .await;
        on_closed(&reader_relay);
    });
    Ok(())
}

/// POSTs each message of the relay's upstream outbox, feeding what comes back to the relay.
/// `initialize` completes before anything else goes out (it brings the session id); after a
/// successful one, the server's GET stream (if it offers one) is read too.
async fn send_http(
    relay: Arc<Relay>,
    upstream: Arc<HttpUpstream>,
    mut outbox: mpsc::Receiver<String>,
    shutdown: watch::Receiver<bool>,
) {
    let sending = async {
        while let Some(text) = outbox.recv().await {
            let outgoing = Outgoing::of(&text);
            let is_initialize = outgoing.is_initialize();
            let post = post_one(Arc::clone(&relay), Arc::clone(&upstream), text, outgoing);
            if is_initialize {
                post.await;
                if relay.era().is_some_and(Era::has_handshake) {
                    upstream.set_protocol_version(relay.era());
                    tokio::spawn(listen_http(
                        Arc::clone(&relay),
                        Arc::clone(&upstream),
                        shutdown.clone(),
                    ));
                }
            } else {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = post => {}
                        () = stopped(stop) => {}
                    }
                });
            }
        }
    };
    tokio::select! {
        () = sending => {}
        () = stopped(shutdown.clone()) => {}
    }
}

/// Reads the upstream's GET stream of server-initiated messages into the relay.
async fn listen_http(
    relay: Arc<Relay>,
    upstream: Arc<HttpUpstream>,
    shutdown: watch::Receiver<bool>,
) {
    let listening = async {
        match upstream.open_listen_stream().await {
            Ok(Some(mut messages)) => {
                while let Some(Ok(bytes)) = messages.recv().await {
                    relay.from_upstream(&bytes).await;
                }
            }
            Ok(None) => {}
            Err(err) => tracing::debug!(%err, "the upstream's GET stream is unavailable"),
        }
    };
    tokio::select! {
        () = listening => {}
        () = stopped(shutdown) => {}
    }
}
