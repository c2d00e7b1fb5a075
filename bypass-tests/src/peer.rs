//! [`StdioPeer`]: a child process spoken to in newline-delimited JSON-RPC over its stdin and
//! stdout, the way an MCP host talks to a stdio server (here: to `trustos mcp`, or directly to
//! an upstream).
//!
//! Two threads per peer do the blocking I/O: one writes queued byte strings to the child's
//! stdin, one splits its stdout into lines. Every wait on either has a timeout, so a peer that
//! hangs fails the test instead of hanging it. The child is put in its own process group and
//! the whole group is killed when the peer is dropped, so a gateway's own upstream child goes
//! too.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Default timeout of the convenience calls that take none ([`StdioPeer::initialize`]) and of
/// each write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The JSON-RPC id [`StdioPeer::initialize`] uses for its `initialize` request.
pub const INITIALIZE_ID: i64 = 0;

/// One event from the stdout reader thread.
#[derive(Debug)]
enum ReadEvent {
    /// One line, without its terminating `\n` (a `\r` before it is kept).
    Line(Vec<u8>),
    /// Stdout reached end of file.
    Eof,
    /// Reading stdout failed.
    Failed(String),
}

/// One write for the stdin writer thread, with where to report how it went.
#[derive(Debug)]
struct WriteJob {
    bytes: Vec<u8>,
    done: Sender<Result<(), String>>,
}

/// A line set aside by [`StdioPeer::recv_matching`], kept raw and parsed.
#[derive(Debug, Clone)]
struct Pending {
    raw: Vec<u8>,
    json: Value,
}

/// A running child process driven over stdin/stdout with newline-delimited JSON-RPC.
///
/// ```no_run
/// # fn main() -> Result<(), String> {
/// use std::process::Command;
/// use std::time::Duration;
/// use bypass_tests::StdioPeer;
///
/// let mut cmd = Command::new("trustos");
/// cmd.args(["mcp", "--server", "demo", "--", "some-server"]).env("TRUSTOS_HOME", "/tmp/h");
/// let mut peer = StdioPeer::spawn(cmd)?;
/// peer.initialize("2025-06-18")?;
/// let listed = peer.request(1, "tools/list", serde_json::json!({}), Duration::from_secs(10))?;
/// # let _ = listed; Ok(()) }
/// ```
#[derive(Debug)]
pub struct StdioPeer {
    label: String,
    child: Child,
    writer: Option<Sender<WriteJob>>,
    lines: Receiver<ReadEvent>,
    pending: VecDeque<Pending>,
    stdout_closed: bool,
    write_timeout: Duration,
}

impl StdioPeer {
    /// Spawns `cmd` with piped stdin and stdout, in a new process group. Arguments,
    /// environment, working directory and stderr are whatever the caller set on `cmd`
    /// (stderr is inherited unless set, e.g. `cmd.stderr(File::create(log)?)`).
    ///
    /// # Errors
    ///
    /// When the process cannot be started.
    pub fn spawn(mut cmd: Command) -> Result<Self, String> {
        let label = cmd.get_program().to_string_lossy().into_owned();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt as _;
            cmd.process_group(0);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {label}: {e}"))?;
        let (stdin, stdout) = match (child.stdin.take(), child.stdout.take()) {
            (Some(stdin), Some(stdout)) => (stdin, stdout),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{label}: stdin/stdout were not piped"));
            }
        };

        let (line_tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("stdout:{label}"))
            .spawn(move || read_lines(stdout, &line_tx))
            .map_err(|e| format!("cannot start reader thread: {e}"))?;

        let (writer, jobs) = mpsc::channel::<WriteJob>();
        std::thread::Builder::new()
            .name(format!("stdin:{label}"))
            .spawn(move || write_jobs(stdin, &jobs))
            .map_err(|e| format!("cannot start writer thread: {e}"))?;

        Ok(Self {
            label,
            child,
            writer: Some(writer),
            lines,
            pending: VecDeque::new(),
            stdout_closed: false,
            write_timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sets how long one write may block (a child that stops reading its stdin fills the pipe).
    pub fn set_write_timeout(&mut self, timeout: Duration) {
        self.write_timeout = timeout;
    }

    /// Writes `bytes` to the child's stdin exactly as given (no newline added).
    ///
    /// # Errors
    ///
    /// When stdin was closed, the write fails (e.g. the child exited), or it blocks longer
    /// than the write timeout.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), String> {
        let writer = self
            .writer
            .as_ref()
            .ok_or_else(|| format!("{}: stdin already closed", self.label))?;
        let (done, result) = mpsc::channel();
        writer
            .send(WriteJob {
                bytes: bytes.to_vec(),
                done,
            })
            .map_err(|_| format!("{}: stdin writer has stopped", self.label))?;
        match result.recv_timeout(self.write_timeout) {
            Ok(outcome) => outcome.map_err(|e| format!("{}: writing stdin: {e}", self.label)),
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{}: writing stdin blocked for {:?}",
                self.label, self.write_timeout
            )),
            Err(RecvTimeoutError::Disconnected) => {
                Err(format!("{}: stdin writer has stopped", self.label))
            }
        }
    }

    /// Writes `line` followed by `\n`.
    ///
    /// # Errors
    ///
    /// As [`Self::send_raw`].
    pub fn send_line(&mut self, line: &str) -> Result<(), String> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_raw(&bytes)
    }

    /// Serializes `message` compactly and writes it as one line.
    ///
    /// # Errors
    ///
    /// As [`Self::send_raw`].
    pub fn send_json(&mut self, message: &Value) -> Result<(), String> {
        let text = serde_json::to_string(message).map_err(|e| format!("serializing: {e}"))?;
        self.send_line(&text)
    }

    /// Sends a JSON-RPC notification (`params` omitted when `Value::Null`).
    ///
    /// # Errors
    ///
    /// As [`Self::send_raw`].
    pub fn notify(&mut self, method: &str, params: Value) -> Result<(), String> {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send_json(&message)
    }

    /// Closes the child's stdin (after the writes already queued), as a host does on exit.
    pub fn close_stdin(&mut self) {
        self.writer = None;
    }

    /// The next line from the child's stdout, raw, without its `\n`. Lines set aside by
    /// [`Self::recv_matching`] come first.
    ///
    /// # Errors
    ///
    /// On timeout, when stdout is closed, or when reading fails.
    pub fn recv_line(&mut self, timeout: Duration) -> Result<Vec<u8>, String> {
        if let Some(pending) = self.pending.pop_front() {
            return Ok(pending.raw);
        }
        self.recv_wire(Instant::now() + timeout)
    }

    /// The next message from the child's stdout, parsed. Messages set aside by
    /// [`Self::recv_matching`] come first.
    ///
    /// # Errors
    ///
    /// On timeout, when stdout is closed, or when the line is not JSON (the error quotes it).
    pub fn recv_json(&mut self, timeout: Duration) -> Result<Value, String> {
        if let Some(pending) = self.pending.pop_front() {
            return Ok(pending.json);
        }
        let line = self.recv_wire(Instant::now() + timeout)?;
        self.parse(&line)
    }

    /// The response (a message with `result` or `error` and no `method`) whose `id` equals
    /// `id`. Other messages that arrive first (notifications, server requests, other
    /// responses) are set aside, in order, for [`Self::recv_json`] and [`Self::take_pending`].
    ///
    /// # Errors
    ///
    /// On timeout, when stdout is closed, or when a line is not JSON.
    pub fn recv_matching(&mut self, id: &Value, timeout: Duration) -> Result<Value, String> {
        let earlier = self
            .pending
            .iter()
            .position(|p| is_response_to(&p.json, id));
        if let Some(found) = earlier.and_then(|index| self.pending.remove(index)) {
            return Ok(found.json);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let raw = self
                .recv_wire(deadline)
                .map_err(|e| format!("waiting for the response to id {id}: {e}"))?;
            let json = self.parse(&raw)?;
            if is_response_to(&json, id) {
                return Ok(json);
            }
            self.pending.push_back(Pending { raw, json });
        }
    }

    /// The messages set aside by [`Self::recv_matching`] so far, oldest first; clears them.
    pub fn take_pending(&mut self) -> Vec<Value> {
        self.pending.drain(..).map(|p| p.json).collect()
    }

    /// Sends a JSON-RPC request (`params` omitted when `Value::Null`) and waits for the
    /// response with the same id. Returns the whole response, `error` responses included.
    ///
    /// # Errors
    ///
    /// As [`Self::send_raw`] and [`Self::recv_matching`].
    pub fn request(
        &mut self,
        id: impl Into<Value>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, String> {
        let id = id.into();
        let mut message = json!({"jsonrpc": "2.0", "id": id.clone(), "method": method});
        if !params.is_null() {
            message["params"] = params;
        }
        self.send_json(&message)?;
        self.recv_matching(&id, timeout)
    }

    /// Sends `initialize` (id [`INITIALIZE_ID`], empty client capabilities) for
    /// `protocol_version`, waits up to [`DEFAULT_TIMEOUT`] for its result, then sends
    /// `notifications/initialized`. Returns the `result` object.
    ///
    /// # Errors
    ///
    /// When the exchange fails or the response is a JSON-RPC error.
    pub fn initialize(&mut self, protocol_version: &str) -> Result<Value, String> {
        let params = json!({
            "protocolVersion": protocol_version,
            "capabilities": {},
            "clientInfo": {"name": "trustos-bypass-tests", "version": env!("CARGO_PKG_VERSION")},
        });
        let response = self.request(INITIALIZE_ID, "initialize", params, DEFAULT_TIMEOUT)?;
        let result = response
            .get("result")
            .cloned()
            .ok_or_else(|| format!("{}: initialize failed: {response}", self.label))?;
        self.notify("notifications/initialized", Value::Null)?;
        Ok(result)
    }

    /// Succeeds when nothing arrives on stdout for `duration` (stdout closing counts as
    /// silence); fails with the line that did arrive.
    ///
    /// # Errors
    ///
    /// When a line arrives, or a message set aside earlier is still pending.
    pub fn expect_silence(&mut self, duration: Duration) -> Result<(), String> {
        if let Some(pending) = self.pending.front() {
            return Err(format!(
                "{}: a message is pending: {}",
                self.label, pending.json
            ));
        }
        match self.recv_wire(Instant::now() + duration) {
            Ok(line) => Err(format!(
                "{}: expected silence, got: {}",
                self.label,
                String::from_utf8_lossy(&line)
            )),
            Err(_) => Ok(()),
        }
    }

    /// The child's exit status if it has exited.
    ///
    /// # Errors
    ///
    /// When the status cannot be queried.
    pub fn try_exit_status(&mut self) -> Result<Option<ExitStatus>, String> {
        self.child
            .try_wait()
            .map_err(|e| format!("{}: {e}", self.label))
    }

    /// Waits up to `timeout` for the child to exit.
    ///
    /// # Errors
    ///
    /// On timeout (the child keeps running) or when the status cannot be queried.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!("{}: still running after {timeout:?}", self.label));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the child's process group (SIGKILL) and reaps the child.
    pub fn kill(&mut self) {
        self.writer = None;
        #[cfg(unix)]
        {
            // The group id is the child's pid (spawned with `process_group(0)`).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Receives the next line from the reader thread, by `deadline`.
    fn recv_wire(&mut self, deadline: Instant) -> Result<Vec<u8>, String> {
        if self.stdout_closed {
            return Err(format!("{}: stdout is closed", self.label));
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        match self.lines.recv_timeout(timeout) {
            Ok(ReadEvent::Line(line)) => Ok(line),
            Ok(ReadEvent::Eof) | Err(RecvTimeoutError::Disconnected) => {
                self.stdout_closed = true;
                Err(format!("{}: stdout is closed", self.label))
            }
            Ok(ReadEvent::Failed(e)) => {
                self.stdout_closed = true;
                Err(format!("{}: reading stdout: {e}", self.label))
            }
            Err(RecvTimeoutError::Timeout) => Err(format!(
                "{}: timed out: nothing on stdout within the timeout",
                self.label
            )),
        }
    }

    fn parse(&self, line: &[u8]) -> Result<Value, String> {
        serde_json::from_slice(line).map_err(|e| {
            format!(
                "{}: stdout line is not JSON ({e}): {}",
                self.label,
                String::from_utf8_lossy(line)
            )
        })
    }
}

impl Drop for StdioPeer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `message` is the response to the request with id `id`.
fn is_response_to(message: &Value, id: &Value) -> bool {
    message.get("method").is_none()
        && message.get("id") == Some(id)
        && (message.get("result").is_some() || message.get("error").is_some())
}

/// The stdout reader thread: one event per line, then `Eof` or `Failed`.
fn read_lines(stdout: std::process::ChildStdout, tx: &Sender<ReadEvent>) {
    let mut reader = BufReader::new(stdout);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => {
                let _ = tx.send(ReadEvent::Eof);
                return;
            }
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                if tx.send(ReadEvent::Line(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(ReadEvent::Failed(e.to_string()));
                return;
            }
        }
    }
}

/// The stdin writer thread: performs each queued write and reports how it went; dropping the
/// sender closes the child's stdin.
fn write_jobs(mut stdin: ChildStdin, jobs: &Receiver<WriteJob>) {
    while let Ok(job) = jobs.recv() {
        let outcome = stdin
            .write_all(&job.bytes)
            .and_then(|()| stdin.flush())
            .map_err(|e| e.to_string());
        let failed = outcome.is_err();
        let _ = job.done.send(outcome);
        if failed {
            return;
        }
    }
}
