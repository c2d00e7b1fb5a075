//! The control-socket client: how a stdio shim, `trustos approve` and `trustos routes` talk to
//! the daemon. One connection carries many requests at once (matched by id). When the daemon is
//! not running, [`ControlClient::connect_or_start`] starts `trustos serve` in the background and
//! waits for its socket; when the connection breaks, the next request reconnects once (and
//! every request in flight fails: the relay refuses those calls, fail closed).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, oneshot};
use trustos_kernel::canonical::Digest;
use trustos_kernel::timestamp::Timestamp;

use super::protocol::{ControlError, Envelope, Event, MAX_CONTROL_MESSAGE, Request, Response};
use crate::enforce::pins::Observed;
use crate::enforce::{
    ApprovalOutcome, Authority, CallEnd, EnforceError, IssuedReceipt, ToolCall, Verdict,
};
use crate::home::Home;
use crate::mcp::lines::{Line, read_line};

type Waiters = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

struct Connection {
    write: OwnedWriteHalf,
    waiters: Waiters,
    alive: Arc<AtomicBool>,
}

/// Where a low-risk pass applies: tenant, agent, server, tool.
type PassKey = (String, String, String, String);

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A client of the daemon's control socket.
pub struct ControlClient {
    home: Home,
    socket: PathBuf,
    autostart: bool,
    next_id: AtomicU64,
    connection: Mutex<Option<Connection>>,
    /// The daemon's generation as last announced on the live connection (0: unknown).
    generation: Arc<AtomicU64>,
    /// Low-risk passes by call target, with the generation they were decided at.
    passes: std::sync::Mutex<HashMap<PassKey, u64>>,
}

/// How long to wait for a daemon that was just started.
const START_TIMEOUT: Duration = Duration::from_secs(20);

impl ControlClient {
    /// A client for the daemon of `home` (connects on first use).
    pub fn new(home: &Home, autostart: bool) -> Self {
        Self {
            home: home.clone(),
            socket: super::server::socket_path(home),
            autostart,
            next_id: AtomicU64::new(1),
            connection: Mutex::new(None),
            generation: Arc::new(AtomicU64::new(0)),
            passes: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Connects, starting the daemon first when none answers and autostart is on.
    pub async fn connect_or_start(&self) -> Result<(), ControlError> {
        let mut connection = self.connection.lock().await;
        if !connection
            .as_ref()
            .is_some_and(|open| open.alive.load(Ordering::Acquire))
        {
            *connection = Some(self.open().await?);
        }
        Ok(())
    }

    async fn open(&self) -> Result<Connection, ControlError> {
        match UnixStream::connect(&self.socket).await {
            Ok(stream) => return Ok(self.attach(stream)),
            Err(err) if !self.autostart => {
                return Err(ControlError::new(
                    "GATEWAY_UNAVAILABLE",
                    format!(
                        "no Trust OS daemon answers on {} ({err}); start one with `trustos serve`",
                        self.socket.display()
                    ),
                ));
            }
            Err(_) => {}
        }
        self.start_daemon()?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(stream) = UnixStream::connect(&self.socket).await {
                return Ok(self.attach(stream));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ControlError::new(
                    "GATEWAY_UNAVAILABLE",
                    format!(
                        "started `trustos serve` but {} did not answer within {}s; see {}",
                        self.socket.display(),
                        START_TIMEOUT.as_secs(),
                        self.log_path().display()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self.home.root().join("logs").join("daemon.log")
    }

    /// Starts `trustos serve` detached from this process (its own process group, output to
    /// `$TRUSTOS_HOME/logs/daemon.log`). A second daemon started by a racing shim finds the
    /// socket answering (or the store locked) and exits.
    fn start_daemon(&self) -> Result<(), ControlError> {
        let unavailable =
            |err: std::io::Error| ControlError::new("GATEWAY_UNAVAILABLE", err.to_string());
        let exe = std::env::current_exe().map_err(unavailable)?;
        let logs = self.home.root().join("logs");
        std::fs::create_dir_all(&logs).map_err(unavailable)?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(unavailable)?;
        let log_err = log.try_clone().map_err(unavailable)?;
        use std::os::unix::process::CommandExt;
        std::process::Command::new(exe)
            .arg("serve")
            .arg("--home")
            .arg(self.home.root())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0)
            .spawn()
            .map_err(unavailable)?;
        Ok(())
    }

    fn attach(&self, stream: UnixStream) -> Connection {
        let (read, write) = stream.into_split();
        let generation = Arc::clone(&self.generation);
        generation.store(0, Ordering::Release);
        // Another connection may be another daemon: nothing decided before carries over.
        self.passes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
        let waiters: Waiters = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let reader_alive = Arc::clone(&alive);
        let reader_waiters = Arc::clone(&waiters);
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            while let Ok(Line::Complete(line)) = read_line(&mut reader, MAX_CONTROL_MESSAGE).await {
                if let Ok(event) = serde_json::from_slice::<Event>(&line) {
                    if event.id == 0 && event.event == "generation" {
                        generation.store(event.generation, Ordering::Release);
                    }
                    continue;
                }
                let Ok(response) = serde_json::from_slice::<Response>(&line) else {
                    continue;
                };
                let waiter = reader_waiters
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&response.id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(response);
                }
            }
            // Connection gone: every waiter's sender drops, so each request fails.
            reader_alive.store(false, Ordering::Release);
            generation.store(0, Ordering::Release);
            reader_waiters
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clear();
        });
        Connection {
            write,
            waiters,
            alive,
        }
    }

    /// Sends one request and waits for its answer.
    pub async fn call(&self, request: Request) -> Result<Value, ControlError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&Envelope { id, request })
            .map_err(|err| ControlError::new("CONTROL_ENCODING", err.to_string()))?;
        line.push(b'\n');
        let receiver = {
            let mut connection = self.connection.lock().await;
            let mut attempts = 0;
            loop {
                attempts += 1;
                let open = match connection.as_mut() {
                    Some(open) if open.alive.load(Ordering::Acquire) => open,
                    _ => connection.insert(self.open().await?),
                };
                let (sender, receiver) = oneshot::channel();
                lock(&open.waiters).insert(id, sender);
                // The reader marks the connection dead before it drops the waiters: a
                // connection that is alive after the insert answers or fails this waiter.
                let written = if open.alive.load(Ordering::Acquire) {
                    open.write.write_all(&line).await
                } else {
                    Err(std::io::ErrorKind::BrokenPipe.into())
                };
                match written {
                    Ok(()) => break receiver,
                    Err(err) => {
                        lock(&open.waiters).remove(&id);
                        *connection = None;
                        if attempts >= 2 {
                            return Err(ControlError::new("GATEWAY_UNAVAILABLE", err.to_string()));
                        }
                    }
                }
            }
        };
        let response = receiver.await.map_err(|_| {
            ControlError::new(
                "GATEWAY_UNAVAILABLE",
                "the Trust OS daemon went away before answering",
            )
        })?;
        if let Some(error) = response.error {
            // A broken daemon connection is reopened by the next call.
            return Err(error);
        }
        response
            .ok
            .ok_or_else(|| ControlError::new("CONTROL_INVALID", "empty response"))
    }

    /// Sends one request and reads its answer as `T`.
    pub async fn call_as<T: DeserializeOwned>(&self, request: Request) -> Result<T, ControlError> {
        let value = self.call(request).await?;
        serde_json::from_value(value)
            .map_err(|err| ControlError::new("CONTROL_INVALID", err.to_string()))
    }
}

fn refused(err: ControlError) -> EnforceError {
    EnforceError::Internal(format!("{} ({})", err.message, err.code))
}

#[async_trait::async_trait]
impl Authority for ControlClient {
    async fn decide(&self, call: ToolCall) -> Result<Verdict, EnforceError> {
        // A low-risk pass is reused while the daemon's generation stands (no profile reload,
        // no pin change, same live connection): no round trip for low-risk traffic.
        let key = (
            call.tenant.clone(),
            call.agent.clone(),
            call.server.clone(),
            call.tool.clone(),
        );
        let current = self.generation.load(Ordering::Acquire);
        let cached = self
            .passes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .copied();
        if current != 0 && cached == Some(current) {
            return Ok(Verdict::Pass {
                route: None,
                cacheable_at: Some(current),
            });
        }
        let verdict: Verdict = self
            .call_as(Request::Decide {
                call: Box::new(call),
            })
            .await
            .map_err(refused)?;
        let mut passes = self
            .passes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &verdict {
            Verdict::Pass {
                cacheable_at: Some(generation),
                ..
            } => {
                passes.retain(|_, at| *at == *generation);
                passes.insert(key, *generation);
            }
            _ => {
                passes.remove(&key);
            }
        }
        Ok(verdict)
    }

    async fn await_hold(&self, decision_id: &str) -> Result<Verdict, EnforceError> {
        self.call_as(Request::AwaitHold {
            decision_id: decision_id.to_owned(),
        })
        .await
        .map_err(refused)
    }

    async fn finish(
        &self,
        decision_id: &str,
        end: CallEnd,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<IssuedReceipt, EnforceError> {
        self.call_as(Request::Finish {
            decision_id: decision_id.to_owned(),
            end,
            result_digest,
            started_at,
        })
        .await
        .map_err(refused)
    }

    async fn pay(
        &self,
        call: ToolCall,
        result: Value,
    ) -> Result<crate::enforce::pay::PaymentVerdict, EnforceError> {
        self.call_as(Request::Pay {
            call: Box::new(call),
            result,
        })
        .await
        .map_err(refused)
    }

    async fn conclude_payment(
        &self,
        decision_id: &str,
        outcome: crate::enforce::pay::PaidOutcome,
        served: bool,
        result_digest: Option<Digest>,
        started_at: Timestamp,
    ) -> Result<crate::enforce::pay::ConcludedPayment, EnforceError> {
        self.call_as(Request::ConcludePayment {
            decision_id: decision_id.to_owned(),
            outcome,
            served,
            result_digest,
            started_at,
        })
        .await
        .map_err(refused)
    }

    async fn host_answer(
        &self,
        decision_id: &str,
        approve: bool,
    ) -> Result<ApprovalOutcome, EnforceError> {
        self.call_as(Request::HostAnswer {
            decision_id: decision_id.to_owned(),
            approve,
        })
        .await
        .map_err(refused)
    }

    async fn cancel_hold(&self, decision_id: &str) -> Result<(), EnforceError> {
        self.call(Request::CancelHold {
            decision_id: decision_id.to_owned(),
        })
        .await
        .map(|_| ())
        .map_err(refused)
    }

    async fn observe_tools(
        &self,
        server: &str,
        tools: &[Value],
        more: bool,
    ) -> Result<Vec<Observed>, EnforceError> {
        self.call_as(Request::ObserveTools {
            server: server.to_owned(),
            tools: tools.to_vec(),
            more,
        })
        .await
        .map_err(refused)
    }
}
