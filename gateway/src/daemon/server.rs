//! `trustos serve`: the daemon. Owns the store, the signing key, the active profile and the held
//! calls; answers relays on the control socket; serves `/mcp/NAME` over HTTP when configured;
//! reloads the profile when its file changes (keeping the last good one on error).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use trustos_adapters::AttemptRecord;

use super::protocol::{
    ControlError, Envelope, MAX_CONTROL_MESSAGE, Request, Response, SOCKET_FILE, Status,
};
use crate::config::GatewayConfig;
use crate::enforce::circle::CirclePayer;
use crate::enforce::pay::Payer;
use crate::enforce::{self, Enforcer, Settings};
use crate::home::Home;
use crate::mcp::lines::{Line, read_line};
use crate::policy::{ActiveProfile, Reload};
use crate::store::Store;
use crate::store::payment_ledger::ATTEMPT_KIND;

/// Why the daemon could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Setup failed (home, key, configuration, profile, store).
    #[error("{0}")]
    Setup(String),
    /// Another daemon already answers on the socket.
    #[error("a Trust OS daemon already runs for {0} (its socket answers)")]
    AlreadyRunning(String),
    /// I/O on the socket or listener.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn setup<E: std::fmt::Display>(context: &str) -> impl Fn(E) -> DaemonError + '_ {
    move |err| DaemonError::Setup(format!("{context}: {err}"))
}

/// File holding the daemon's process id, next to its socket.
pub const PID_FILE: &str = "trustos.pid";

/// Path of the control socket of a home.
pub fn socket_path(home: &Home) -> PathBuf {
    home.root().join(SOCKET_FILE)
}

/// A running daemon's shared state.
pub struct Daemon {
    /// The decision authority.
    pub enforcer: Arc<Enforcer>,
    /// The configuration it started with.
    pub config: GatewayConfig,
    /// Its home.
    pub home: Home,
    /// Address of the HTTP front, once bound.
    pub listen: Option<String>,
}

/// Opens everything the daemon owns: configuration, key, store, profile, approvers.
pub async fn open(home: &Home) -> Result<Daemon, DaemonError> {
    crate::home::ensure_initialized(home).map_err(setup("initializing the home"))?;
    let config = GatewayConfig::load(home.root()).map_err(setup("gateway.toml"))?;
    let key = Arc::new(home.load_key().map_err(setup("gateway key"))?);
    let profile_path = config.profile_path(home.root());
    let profile = ActiveProfile::load(&profile_path).map_err(|issues| {
        let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
        DaemonError::Setup(format!(
            "profile {} is invalid:\n{}",
            profile_path.display(),
            lines.join("\n")
        ))
    })?;
    let approvers = config
        .approver_keys(home.root())
        .map_err(setup("approvers"))?;
    let settings = Settings {
        decision_ttl: Duration::from_secs(config.gateway.decision_ttl_seconds),
        hold_timeout: Duration::from_secs(config.gateway.hold_timeout_seconds),
    };
    // The rails before the store: a rail that cannot be set up (a secret missing) leaves the
    // store untouched, free for the next opener.
    let x402 = match &config.x402 {
        Some(x402) => {
            let payer = Payer::from_config(x402, config.circle.as_ref(), home.root())
                .map_err(setup("[x402]"))?;
            tracing::info!(payer = %payer.address(), "x402 payer ready");
            Some(payer)
        }
        None => None,
    };
    let circle = match &config.circle {
        Some(circle) => {
            let payer = CirclePayer::from_config(circle, home.root()).map_err(setup("[circle]"))?;
            tracing::info!(
                wallet = payer.wallet_id(),
                environment = %payer.environment(),
                "Circle rail ready"
            );
            Some(payer)
        }
        None => None,
    };
    let store = Arc::new(
        home.open_store(Arc::clone(&key), true)
            .await
            .map_err(setup("store"))?,
    );
    let mut enforcer = Enforcer::new(key, store, profile, approvers, settings);
    if let Some(payer) = x402 {
        enforcer = enforcer.with_payer(payer);
    }
    if let Some(payer) = circle {
        enforcer = enforcer.with_circle(payer);
    }
    let enforcer = Arc::new(enforcer);
    Ok(Daemon {
        enforcer,
        config,
        home: home.clone(),
        listen: None,
    })
}

/// Binds the control socket: refuses when a live daemon answers, replaces a stale file.
pub async fn bind_socket(path: &Path) -> Result<UnixListener, DaemonError> {
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(DaemonError::AlreadyRunning(path.display().to_string()));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Runs the daemon until SIGINT or SIGTERM.
pub async fn run(home: &Home, listen: Option<String>) -> Result<(), DaemonError> {
    let mut daemon = open(home).await?;
    let socket = socket_path(home);
    let listener = bind_socket(&socket).await?;
    let pid_file = home.root().join(PID_FILE);
    std::fs::write(&pid_file, format!("{}\n", std::process::id()))?;
    let listen = listen.or_else(|| daemon.config.gateway.listen.clone());
    let mut http = None;
    if let Some(address) = listen {
        let (bound, task) = crate::front::serve(
            Arc::clone(&daemon.enforcer),
            daemon.config.clone(),
            home.clone(),
            &address,
        )
        .await
        .map_err(setup("HTTP front"))?;
        tracing::info!(%bound, "HTTP front listening");
        daemon.listen = Some(bound.to_string());
        http = Some(task);
    }
    let daemon = Arc::new(daemon);
    // Watching and signals are in place before "ready": an edit or a SIGHUP right after it is
    // never missed.
    let profile_path = daemon.config.profile_path(home.root());
    let initial = profile_stamp(&profile_path);
    log_reload(daemon.enforcer.reload_profile());
    let reload = tokio::spawn(watch_profile(
        Arc::clone(&daemon.enforcer),
        profile_path,
        initial,
    ));
    let expire = tokio::spawn(release_expired(Arc::clone(&daemon.enforcer)));
    let reconcile = tokio::spawn(reconcile_periodically(
        Arc::clone(&daemon.enforcer),
        daemon.config.gateway.reconcile_interval_seconds,
    ));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tracing::info!(
        socket = %socket.display(),
        kid = daemon.enforcer.key().kid(),
        profile = %daemon.enforcer.profile().fingerprint,
        "Trust OS daemon ready"
    );
    eprintln!(
        "trustos serve: ready on {}{}",
        socket.display(),
        daemon
            .listen
            .as_ref()
            .map(|a| format!(" and http://{a}/mcp/NAME"))
            .unwrap_or_default()
    );

    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let daemon = Arc::clone(&daemon);
                    tokio::spawn(async move {
                        if let Err(err) = serve_connection(daemon, stream).await {
                            tracing::debug!(%err, "control connection ended");
                        }
                    });
                }
                Err(err) => tracing::warn!(%err, "accept failed"),
            },
            _ = hangup.recv() => log_reload(daemon.enforcer.reload_profile()),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    reload.abort();
    expire.abort();
    reconcile.abort();
    if let Some(task) = http {
        task.abort();
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&pid_file);
    eprintln!("trustos serve: stopped");
    Ok(())
}

fn log_reload(reload: Reload) {
    match reload {
        Reload::Updated { previous, current } => {
            tracing::info!(%previous, %current, "profile reloaded");
            eprintln!("trustos serve: profile reloaded ({previous} -> {current})");
        }
        Reload::Unchanged => {}
        Reload::KeptLastGood { current, issues } => {
            let lines: Vec<String> = issues.iter().map(ToString::to_string).collect();
            eprintln!(
                "trustos serve: the profile file is invalid; keeping {current} in force:\n{}",
                lines.join("\n")
            );
        }
    }
}

/// The length and modification time of the profile file.
fn profile_stamp(path: &Path) -> Option<(u64, SystemTime)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?))
}

/// Reloads the profile whenever its file's length or modification time changes from `last`.
async fn watch_profile(
    enforcer: Arc<Enforcer>,
    path: PathBuf,
    mut last: Option<(u64, SystemTime)>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let now = profile_stamp(&path);
        if now != last {
            last = now;
            log_reload(enforcer.reload_profile());
        }
    }
}

/// Releases the reservations of decisions that expired unused.
async fn release_expired(enforcer: Arc<Enforcer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        if let Ok(now) = enforce::now()
            && let Err(err) = enforcer.store().release_expired(now).await
        {
            tracing::warn!(%err, "releasing expired reservations failed");
        }
    }
}

/// Asks the rails about payments whose outcome is open, every `interval_seconds` (the first
/// time one interval after the start), and receipts what it learns. Each round is bounded
/// (see [`Enforcer::reconcile_payments`]); 0 turns it off.
async fn reconcile_periodically(enforcer: Arc<Enforcer>, interval_seconds: u64) {
    if interval_seconds == 0 {
        return;
    }
    let every = Duration::from_secs(interval_seconds);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        enforcer.reconcile_payments().await;
    }
}

/// Only the user who owns the socket may talk to it.
fn peer_allowed(stream: &UnixStream, socket: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(owner) = std::fs::metadata(socket).map(|meta| meta.uid()) else {
        return false;
    };
    stream.peer_cred().is_ok_and(|cred| cred.uid() == owner)
}

async fn serve_connection(daemon: Arc<Daemon>, stream: UnixStream) -> std::io::Result<()> {
    if !peer_allowed(&stream, &socket_path(&daemon.home)) {
        tracing::warn!("refused a control connection from another user");
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let (responses, mut outgoing) = mpsc::channel::<Vec<u8>>(64);
    let writer = tokio::spawn(async move {
        while let Some(mut line) = outgoing.recv().await {
            line.push(b'\n');
            if write.write_all(&line).await.is_err() {
                break;
            }
        }
    });
    // Announce the generation now and on every change: shims reuse low-risk verdicts only
    // within one generation.
    let mut generations = daemon.enforcer.watch_generation();
    let announcer = {
        let responses = responses.clone();
        tokio::spawn(async move {
            loop {
                let generation = *generations.borrow_and_update();
                let event = super::protocol::Event {
                    id: 0,
                    event: "generation".into(),
                    generation,
                };
                let Ok(line) = serde_json::to_vec(&event) else {
                    break;
                };
                if responses.send(line).await.is_err() || generations.changed().await.is_err() {
                    break;
                }
            }
        })
    };
    let mut reader = BufReader::new(read);
    loop {
        let line = match read_line(&mut reader, MAX_CONTROL_MESSAGE).await? {
            Line::Complete(line) => line,
            Line::TooLong(_) => {
                let _ = responses
                    .send(encode(&Response {
                        id: 0,
                        ok: None,
                        error: Some(ControlError::new("CONTROL_TOO_LARGE", "message too large")),
                    }))
                    .await;
                continue;
            }
            Line::Eof => break,
        };
        let envelope: Envelope = match trustos_kernel::strict_json::from_slice(&line) {
            Ok(envelope) => envelope,
            Err(err) => {
                let _ = responses
                    .send(encode(&Response {
                        id: 0,
                        ok: None,
                        error: Some(ControlError::new("CONTROL_INVALID", err.to_string())),
                    }))
                    .await;
                continue;
            }
        };
        let daemon = Arc::clone(&daemon);
        let responses = responses.clone();
        tokio::spawn(async move {
            let id = envelope.id;
            let response = match handle(&daemon, envelope.request).await {
                Ok(ok) => Response {
                    id,
                    ok: Some(ok),
                    error: None,
                },
                Err(error) => Response {
                    id,
                    ok: None,
                    error: Some(error),
                },
            };
            let _ = responses.send(encode(&response)).await;
        });
    }
    announcer.abort();
    drop(responses);
    let _ = writer.await;
    Ok(())
}

fn encode(response: &Response) -> Vec<u8> {
    serde_json::to_vec(response).unwrap_or_else(|_| {
        br#"{"id":0,"error":{"code":"CONTROL_ENCODING","message":"unencodable response"}}"#.to_vec()
    })
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ControlError> {
    serde_json::to_value(value)
        .map_err(|err| ControlError::new("CONTROL_ENCODING", err.to_string()))
}

/// Every payment attempt recorded in `store` (records of kind
/// [`ATTEMPT_KIND`](crate::store::payment_ledger::ATTEMPT_KIND)), by id. A record that does not
/// read as an [`AttemptRecord`] fails the whole listing (`PAYMENT_LEDGER_UNREADABLE`): an
/// attempt whose money may have moved is never silently left out. `trustos payments` reads a
/// stopped daemon's store with it too.
pub async fn payment_attempts<S: Store + ?Sized>(
    store: &S,
) -> Result<Vec<AttemptRecord>, ControlError> {
    let unreadable = |message: String| ControlError::new("PAYMENT_LEDGER_UNREADABLE", message);
    store
        .list_records(ATTEMPT_KIND)
        .await
        .map_err(|err| unreadable(err.to_string()))?
        .into_iter()
        .map(|(id, record)| {
            serde_json::from_slice::<AttemptRecord>(&record.body)
                .map_err(|err| unreadable(format!("payment attempt {id}: {err}")))
        })
        .collect()
}

fn enforce_error(err: enforce::EnforceError) -> ControlError {
    ControlError::new("GATEWAY_ERROR", err.to_string())
}

async fn handle(daemon: &Daemon, request: Request) -> Result<Value, ControlError> {
    let enforcer = &daemon.enforcer;
    match request {
        Request::Decide { call } => to_value(&enforcer.decide(*call).await.map_err(enforce_error)?),
        Request::AwaitHold { decision_id } => to_value(
            &enforcer
                .await_hold(&decision_id)
                .await
                .map_err(enforce_error)?,
        ),
        Request::Finish {
            decision_id,
            end,
            result_digest,
            started_at,
        } => to_value(
            &enforcer
                .finish(&decision_id, end, result_digest, started_at)
                .await
                .map_err(enforce_error)?,
        ),
        Request::Pay { call, result } => to_value(
            &enforcer
                .authorize_mcp_payment(*call, &result)
                .await
                .map_err(enforce_error)?,
        ),
        Request::ConcludePayment {
            decision_id,
            outcome,
            served,
            result_digest,
            started_at,
        } => to_value(
            &enforcer
                .conclude_payment(&decision_id, outcome, served, result_digest, started_at)
                .await
                .map_err(enforce_error)?,
        ),
        Request::CancelHold { decision_id } => {
            enforcer
                .cancel_hold(&decision_id)
                .await
                .map_err(enforce_error)?;
            Ok(Value::Null)
        }
        Request::ObserveTools {
            server,
            tools,
            more,
        } => to_value(
            &enforcer
                .observe_tools(&server, &tools, more)
                .await
                .map_err(enforce_error)?,
        ),
        Request::Approve { approval } => {
            to_value(&enforcer.approve(&approval).await.map_err(enforce_error)?)
        }
        Request::HostAnswer {
            decision_id,
            approve,
        } => to_value(
            &enforcer
                .host_answer(&decision_id, approve)
                .await
                .map_err(enforce_error)?,
        ),
        Request::ApproveTool {
            server,
            tool,
            sha256,
        } => to_value(
            &enforcer
                .approve_tool(&server, &tool, sha256.as_ref())
                .await
                .map_err(|err| ControlError::new("TOOL_APPROVAL_REFUSED", err.to_string()))?
                .to_string(),
        ),
        Request::Routes => {
            let pins = enforcer.pins().all().await.map_err(enforce_error)?;
            to_value(&enforce::inventory::build(
                &enforcer.profile(),
                &daemon.config,
                &pins,
            ))
        }
        Request::Payments => {
            enforcer.reconcile_payments().await;
            to_value(&payment_attempts(enforcer.store().as_ref()).await?)
        }
        Request::Status => to_value(&Status {
            pid: std::process::id(),
            kid: enforcer.key().kid().to_owned(),
            profile_fingerprint: enforcer.profile().fingerprint,
            generation: enforcer.generation(),
            held: enforcer.held(),
            listen: daemon.listen.clone(),
        }),
    }
}
