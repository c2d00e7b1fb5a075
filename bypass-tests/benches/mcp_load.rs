//! Load harness for the MCP relay: the latency `trustos mcp` adds to one `tools/call`, measured
//! against the same upstream called directly, the highest sustained call rate, and the daemon's
//! resident memory.
//!
//! Run with `cargo bench -p bypass-tests --bench mcp_load`. The `trustos` binary is taken from
//! `target/release` as is (built there when missing, see [`bypass_tests::trustos_bin`]): run
//! `cargo build --release -p trustos` first when the gateway changed, or set `TRUSTOS_BIN`.
//!
//! Setup: a fresh home (`trustos init --home H`) whose starter profile gets one more route,
//! `deploy` on server `rec` at high risk (`echo` is low risk in the starter profile); the
//! profile is validated with `trustos profile validate`. The harness starts the daemon itself
//! (`trustos serve --home H`, so it knows its pid), waits for its control socket, then opens
//! two connections that each `initialize` (protocol `2025-06-18`), send
//! `notifications/initialized` and list the tools once:
//!
//! - *direct*: `trustos-recording-upstream` (this crate's rmcp tool server, recording nothing:
//!   `TRUSTOS_RECORD_FILE` is left unset);
//! - *gateway*: `trustos mcp --home H --server rec -- trustos-recording-upstream`.
//!
//! Paths measured, each checked on every response: *passthrough* is `echo` (low risk: no
//! decision, no receipt; the upstream must report `decision: absent`); *enforced* is `deploy`
//! (high risk, allowed: signed decision, durable commit and consume, forwarded with the decision
//! in `params._meta`, the result carrying a signed receipt in `result._meta`). Any JSON-RPC
//! error, tool error, wrong marker or missing response counts as an error; the harness panics
//! at the end (after printing and writing the results) when there was any.
//!
//! Phases, after a warm-up:
//!
//! 1. *Open loop* at `MCP_LOAD_RATE` calls/s (default 500): sends are scheduled on a fixed
//!    clock by a sender thread and each latency runs from the *scheduled* send time to the
//!    moment the reader thread saw the response line, so a stall delays every call behind it
//!    instead of hiding them (no coordinated omission). Direct and gateway, for `echo` and
//!    `deploy`; added latency = gateway − direct, per percentile. The four take turns in
//!    2-second slices (each slice drains before the next starts; each round starts with the
//!    next path), so that whatever else the machine does falls on all four alike.
//! 2. *Closed loop* with 1, 8 and 32 calls in flight on one connection (each response triggers
//!    the next call): completed calls per second, direct (`echo`), passthrough and enforced;
//!    then enforced calls over [`SPREAD_CONNECTIONS`] shims with one in flight on each.
//! 3. Daemon `VmRSS` (and `VmHWM`) from `/proc/<pid>/status`: just started, idle after the
//!    warm-up and idle after the load (the target is judged on the last two), and the size of
//!    its store file.
//! 4. Where the time goes: the daemon's share timed directly over its control socket
//!    ([`ControlProbe`]), and the raw cost of a 4 KiB write + `fdatasync` in the home's file
//!    system, to put the enforced path's durable commits in context.
//!
//! `MCP_LOAD_SECONDS` (default 10) sets the length of every phase (`MCP_LOAD_SECONDS=2` for a
//! quick run of about a minute) and `MCP_LOAD_RATE` the open-loop rate. The machine is shared
//! with whatever else runs: the load average at start and the machine-wide CPU and I/O stall
//! (PSI) during the open loop are reported beside the figures. Results are printed as a table
//! and written as JSON to `<target>/mcp_load.json`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::FileExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use bypass_tests::{TempDir, target_dir, trustos_bin};
use serde_json::{Value, json};

/// The upstream tool server (this crate's binary; cargo builds it for the bench).
const UPSTREAM: &str = env!("CARGO_BIN_EXE_trustos-recording-upstream");
/// The server name routes use for the upstream.
const SERVER: &str = "rec";
/// The protocol version every connection negotiates.
const PROTOCOL: &str = "2025-06-18";
/// The route appended to the starter profile: `deploy` on [`SERVER`] is high risk.
const DEPLOY_ROUTE: &str = "\n[[routes]]\nid = \"bench-deploy\"\nrisk = \"high\"\n\
    mcp = { server = \"rec\", tool = \"deploy\" }\n";
/// Calls in flight per closed-loop level.
const LEVELS: [usize; 3] = [1, 8, 32];
/// Connections of the spread enforced phase (one call in flight on each).
const SPREAD_CONNECTIONS: usize = 8;
/// Longest wait for any one response before the call counts as lost.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Warm-up per connection and tool (closed loop, 8 in flight).
const WARM_UP: Duration = Duration::from_secs(2);
/// Open-loop phases run in slices of this length, taking turns.
const OPEN_SLICE: Duration = Duration::from_secs(2);
/// Pause before each idle memory reading.
const SETTLE: Duration = Duration::from_secs(1);
/// Rounds of the control-socket probe.
const PROBE_SAMPLES: u64 = 1000;
/// Raw `fdatasync` samples.
const FSYNC_SAMPLES: usize = 500;
/// Target of issue 5: p99 latency a passthrough call may add, in ms.
const TARGET_PASS_P99_MS: f64 = 0.3;
/// Target of issue 5: p99 latency an enforced call may add, in ms.
const TARGET_ENFORCED_P99_MS: f64 = 3.0;
/// Target of issue 5: the daemon's resident memory at idle, in MiB.
const TARGET_RSS_MB: f64 = 40.0;

/// The two tools under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tool {
    /// Low risk: passes the gateway untouched.
    Echo,
    /// High risk, allowed: decided, committed, signed and receipted.
    Deploy,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Echo => "echo",
            Tool::Deploy => "deploy",
        }
    }

    /// One `tools/call` line (with its `\n`); the arguments differ per call.
    fn call_line(self, id: u64) -> Vec<u8> {
        let params = match self {
            Tool::Echo => format!(r#"{{"name":"echo","arguments":{{"message":"bench {id}"}}}}"#),
            Tool::Deploy => format!(
                r#"{{"name":"deploy","arguments":{{"service":"api","version":"1.0.{id}"}}}}"#
            ),
        };
        format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#)
            .into_bytes()
            .into_iter()
            .chain([b'\n'])
            .collect()
    }
}

/// What a correct response looks like on one connection.
#[derive(Clone, Copy, Debug)]
struct Expect {
    tool: Tool,
    /// The upstream saw `io.trustos/decision` in `params._meta`.
    decision: bool,
    /// The result carries `io.trustos/receipt` in `result._meta`.
    receipt: bool,
}

/// Checks one `tools/call` response and returns its id.
fn check(line: &[u8], expect: Expect) -> Result<u64, String> {
    let value: Value = serde_json::from_slice(line)
        .map_err(|e| format!("not JSON ({e}): {}", String::from_utf8_lossy(line)))?;
    let id = value["id"]
        .as_u64()
        .ok_or_else(|| format!("no numeric id: {value}"))?;
    let result = value
        .get("result")
        .ok_or_else(|| format!("id {id}: not a result: {value}"))?;
    if result["isError"].as_bool() == Some(true) {
        return Err(format!("id {id}: tool error: {result}"));
    }
    let texts: Vec<&str> = result["content"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["text"].as_str()).collect())
        .unwrap_or_default();
    let first = match expect.tool {
        Tool::Echo => "echo: ",
        Tool::Deploy => "deployed ",
    };
    let marker = if expect.decision {
        "decision: present"
    } else {
        "decision: absent"
    };
    if !(texts.first().is_some_and(|t| t.starts_with(first)) && texts.get(1) == Some(&marker)) {
        return Err(format!("id {id}: unexpected content {texts:?}"));
    }
    let receipt = result
        .pointer("/_meta/io.trustos~1receipt")
        .is_some_and(Value::is_string);
    if receipt != expect.receipt {
        return Err(format!(
            "id {id}: receipt {} (expected {})",
            if receipt { "present" } else { "absent" },
            if expect.receipt { "present" } else { "absent" }
        ));
    }
    Ok(id)
}

/// A line from a child's stdout and the instant the reader thread got it.
struct Arrival {
    at: Instant,
    line: Vec<u8>,
}

/// A child spoken to in newline-delimited JSON-RPC, with a reader thread that timestamps each
/// line as soon as it is read. The child runs in its own process group, killed on drop.
struct Conn {
    label: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<Arrival>,
    next_id: u64,
}

impl Conn {
    fn spawn(label: &'static str, mut cmd: Command) -> Self {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label}: {e}"));
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("read:{label}"))
            .spawn(move || {
                let mut reader = BufReader::with_capacity(1 << 16, stdout);
                loop {
                    let mut line = Vec::with_capacity(2048);
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let at = Instant::now();
                            if sender.send(Arrival { at, line }).is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .unwrap();
        Self {
            label,
            child,
            stdin: Some(stdin),
            lines,
            next_id: 1,
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: writing stdin: {e}", self.label));
    }

    fn recv(&self, timeout: Duration) -> Option<Arrival> {
        // A timeout or a closed stdout both mean: no answer.
        self.lines.recv_timeout(timeout).ok()
    }

    /// One request and its response (setup only; not timed).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(format!("{message}\n").as_bytes());
        loop {
            let arrival = self
                .recv(RESPONSE_TIMEOUT)
                .unwrap_or_else(|| panic!("{}: no answer to {method}", self.label));
            let value: Value = serde_json::from_slice(&arrival.line).unwrap();
            if value["id"].as_u64() == Some(id) {
                return value;
            }
        }
    }

    /// `initialize`, `notifications/initialized`, `tools/list` (the gateway pins the tools).
    fn handshake(&mut self) {
        let init = self.request(
            "initialize",
            json!({
                "protocolVersion": PROTOCOL,
                "capabilities": {},
                "clientInfo": {"name": "trustos-mcp-load", "version": env!("CARGO_PKG_VERSION")},
            }),
        );
        assert_eq!(
            init["result"]["protocolVersion"], PROTOCOL,
            "{}: {init}",
            self.label
        );
        self.send(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n");
        let listed = self.request("tools/list", json!({}));
        let names: Vec<&str> = listed["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{}: tools/list: {listed}", self.label))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            names.contains(&"echo") && names.contains(&"deploy"),
            "{}: listed {names:?}",
            self.label
        );
    }

    /// One checked call (setup only); returns the response.
    fn call_once(&mut self, expect: Expect) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&expect.tool.call_line(id));
        let arrival = self
            .recv(RESPONSE_TIMEOUT)
            .unwrap_or_else(|| panic!("{}: no answer to {}", self.label, expect.tool.name()));
        if let Err(err) = check(&arrival.line, expect) {
            panic!("{}: {err}", self.label);
        }
        serde_json::from_slice(&arrival.line).unwrap()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // Closing stdin lets a shim stop its upstream; then the group goes.
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The latencies and errors of one phase.
#[derive(Default)]
struct Phase {
    /// Latency of each correct response, in nanoseconds, sorted.
    nanos: Vec<u64>,
    /// Calls sent.
    sent: usize,
    /// Wrong or missing responses.
    errors: usize,
    /// The first error, for the report.
    first_error: Option<String>,
    /// Completed calls per second over the phase (closed loop).
    rate: f64,
    /// Worst lateness of a scheduled send (open loop), in nanoseconds.
    max_send_lag: u64,
}

impl Phase {
    fn error(&mut self, err: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(err);
        }
    }

    /// Adds another slice of the same phase.
    fn absorb(&mut self, other: Phase) {
        self.nanos.extend(other.nanos);
        self.sent += other.sent;
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.rate = other.rate;
        self.max_send_lag = self.max_send_lag.max(other.max_send_lag);
    }

    fn finish(mut self) -> Self {
        self.nanos.sort_unstable();
        if self.sent == 0 {
            self.sent = self.nanos.len();
        }
        self
    }

    /// Nearest-rank percentile in milliseconds.
    fn ms(&self, fraction: f64) -> f64 {
        if self.nanos.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((self.nanos.len() as f64 * fraction).ceil() as usize).clamp(1, self.nanos.len());
        self.nanos[rank - 1] as f64 / 1e6
    }

    fn summary(&self) -> Value {
        json!({
            "calls": self.sent,
            "ok": self.nanos.len(),
            "errors": self.errors,
            "first_error": self.first_error,
            "p50_ms": self.ms(0.50),
            "p99_ms": self.ms(0.99),
            "p999_ms": self.ms(0.999),
            "max_ms": self.ms(1.0),
            "calls_per_s": self.rate,
            "max_send_lag_ms": self.max_send_lag as f64 / 1e6,
        })
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Open loop: `rate` calls/s for `length`, latency from each call's scheduled send time.
fn open_loop(conn: &mut Conn, expect: Expect, rate: f64, length: Duration) -> Phase {
    let count = (rate * length.as_secs_f64()).round().max(1.0) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let base = conn.next_id;
    conn.next_id += count as u64;
    let lines: Vec<Vec<u8>> = (0..count as u64)
        .map(|k| expect.tool.call_line(base + k))
        .collect();
    let start = Instant::now() + Duration::from_millis(20);
    let scheduled = |k: usize| start + interval * u32::try_from(k).unwrap();
    let mut phase = Phase {
        sent: count,
        ..Phase::default()
    };
    let mut stdin = conn.stdin.take().unwrap();
    let label = conn.label;
    let (stdin, max_lag) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| {
            // Best effort: a small timer slack makes the schedule tighter.
            let _ = std::fs::write("/proc/thread-self/timerslack_ns", "1000");
            let mut max_lag = 0u64;
            for (k, line) in lines.iter().enumerate() {
                let due = scheduled(k);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                max_lag = max_lag.max(nanos(Instant::now().saturating_duration_since(due)));
                stdin
                    .write_all(line)
                    .unwrap_or_else(|e| panic!("{label}: writing stdin: {e}"));
            }
            (stdin, max_lag)
        });
        let mut seen = vec![false; count];
        let mut received = 0;
        while received < count {
            let Some(arrival) = conn.recv(RESPONSE_TIMEOUT + length) else {
                phase.error(format!("{} responses missing", count - received));
                phase.errors += count - received - 1;
                break;
            };
            match check(&arrival.line, expect) {
                Ok(id) if (base..base + count as u64).contains(&id) => {
                    let k = (id - base) as usize;
                    if seen[k] {
                        phase.error(format!("id {id} answered twice"));
                        continue;
                    }
                    seen[k] = true;
                    received += 1;
                    phase
                        .nanos
                        .push(nanos(arrival.at.saturating_duration_since(scheduled(k))));
                }
                Ok(id) => phase.error(format!("unexpected id {id}")),
                Err(err) => {
                    received += 1;
                    phase.error(err);
                }
            }
        }
        sender.join().unwrap()
    });
    conn.stdin = Some(stdin);
    phase.max_send_lag = max_lag;
    phase.rate = count as f64 / length.as_secs_f64();
    phase.finish()
}

/// Closed loop: `inflight` calls outstanding for `length`; each response triggers the next.
fn closed_loop(conn: &mut Conn, expect: Expect, inflight: usize, length: Duration) -> Phase {
    let mut phase = Phase::default();
    let mut sent_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let start = Instant::now();
    let end = start + length;
    for _ in 0..inflight {
        let id = conn.next_id;
        conn.next_id += 1;
        sent_at.insert(id, Instant::now());
        conn.send(&expect.tool.call_line(id));
        phase.sent += 1;
    }
    let mut last = start;
    while !sent_at.is_empty() {
        let Some(arrival) = conn.recv(RESPONSE_TIMEOUT) else {
            phase.error(format!("{} responses missing", sent_at.len()));
            phase.errors += sent_at.len() - 1;
            break;
        };
        last = arrival.at;
        match check(&arrival.line, expect) {
            Ok(id) => match sent_at.remove(&id) {
                Some(sent) => phase
                    .nanos
                    .push(nanos(arrival.at.saturating_duration_since(sent))),
                None => phase.error(format!("unexpected id {id}")),
            },
            Err(err) => {
                // Still one call fewer in flight: find the id leniently.
                if let Some(id) = serde_json::from_slice::<Value>(&arrival.line)
                    .ok()
                    .and_then(|v| v["id"].as_u64())
                {
                    sent_at.remove(&id);
                }
                phase.error(err);
            }
        }
        if Instant::now() < end {
            let id = conn.next_id;
            conn.next_id += 1;
            sent_at.insert(id, Instant::now());
            conn.send(&expect.tool.call_line(id));
            phase.sent += 1;
        }
    }
    let elapsed = last.saturating_duration_since(start).as_secs_f64();
    phase.rate = if elapsed > 0.0 {
        phase.nanos.len() as f64 / elapsed
    } else {
        0.0
    };
    phase.finish()
}

/// Runs a `trustos` subcommand to completion, panicking with its output on failure.
fn trustos(bin: &Path, args: &[&str]) -> String {
    let output = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run trustos {args:?}: {e}"));
    assert!(
        output.status.success(),
        "trustos {args:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The daemon, started by the harness (so its pid is known) and stopped with SIGTERM on drop.
struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(bin: &Path, home: &Path) -> Self {
        let log = File::create(home.join("serve.log")).unwrap();
        let child = Command::new(bin)
            .args(["serve", "--home"])
            .arg(home)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut daemon = Self { child };
        let socket = home.join("trustos.sock");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                let log = std::fs::read_to_string(home.join("serve.log")).unwrap_or_default();
                panic!("trustos serve exited ({status}):\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "the daemon's socket did not answer"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `VmRSS` and `VmHWM` in MiB.
    fn memory(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse::<f64>().ok())
                .map_or(f64::NAN, |kib| kib / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raw 4 KiB `write` + `fdatasync` latency (p50, p99 in ms) in `dir`.
fn fsync_cost(dir: &Path) -> (f64, f64) {
    let path = dir.join("fsync-probe");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let page = vec![0x5a_u8; 4096];
    let mut phase = Phase::default();
    for round in 0..FSYNC_SAMPLES as u64 {
        let started = Instant::now();
        file.write_all_at(&page, (round % 16) * 4096).unwrap();
        file.sync_data().unwrap();
        phase.nanos.push(nanos(started.elapsed()));
    }
    drop(file);
    let _ = std::fs::remove_file(path);
    let phase = phase.finish();
    (phase.ms(0.50), phase.ms(0.99))
}

/// The daemon's share of a call, timed over its control socket (`H/trustos.sock`) with the
/// requests a shim sends, one at a time: `decide` of a passthrough call, `decide` of an
/// enforced call (policy, signature, durable commit and consume), and `finish` (signed receipt,
/// durable commit). A probe, not part of the targets: the control protocol is internal, so a
/// mismatch is reported and skipped, never fatal.
struct ControlProbe {
    write: std::os::unix::net::UnixStream,
    read: BufReader<std::os::unix::net::UnixStream>,
    next_id: u64,
}

impl ControlProbe {
    fn connect(socket: &Path) -> Result<Self, String> {
        let write = std::os::unix::net::UnixStream::connect(socket)
            .map_err(|e| format!("connect {}: {e}", socket.display()))?;
        write
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let read = BufReader::new(write.try_clone().map_err(|e| e.to_string())?);
        Ok(Self {
            write,
            read,
            next_id: 1,
        })
    }

    /// One request (`op` and its fields); returns its `ok` value and the round trip.
    fn call(&mut self, mut request: Value) -> Result<(Value, u64), String> {
        let id = self.next_id;
        self.next_id += 1;
        request["id"] = json!(id);
        let mut line = request.to_string().into_bytes();
        line.push(b'\n');
        let started = Instant::now();
        self.write
            .write_all(&line)
            .map_err(|e| format!("control write: {e}"))?;
        // The daemon also announces its generation unasked (id 0): skip those.
        let value: Value = loop {
            let mut answer = Vec::new();
            self.read
                .read_until(b'\n', &mut answer)
                .map_err(|e| format!("control read: {e}"))?;
            let value: Value = serde_json::from_slice(&answer)
                .map_err(|e| format!("control answer is not JSON ({e})"))?;
            if value["id"] != 0 || value.get("event").is_none() {
                break value;
            }
        };
        let took = nanos(started.elapsed());
        if value["id"].as_u64() != Some(id) {
            return Err(format!("control answer to another id: {value}"));
        }
        match value.get("ok") {
            Some(ok) => Ok((ok.clone(), took)),
            None => Err(format!("control error: {value}")),
        }
    }

    fn decide(&mut self, tool: Tool, n: u64) -> Result<(Value, u64), String> {
        let arguments = match tool {
            Tool::Echo => json!({"message": format!("probe {n}")}),
            Tool::Deploy => json!({"service": "api", "version": format!("2.0.{n}")}),
        };
        self.call(json!({"op": "decide", "call": {
            "tenant": "local", "agent": "agent", "server": SERVER,
            "tool": tool.name(), "arguments": arguments,
        }}))
    }

    /// `samples` rounds of each request; p50/p99 in ms per request kind.
    fn run(&mut self, samples: u64) -> Result<BTreeMap<&'static str, Phase>, String> {
        let mut out: BTreeMap<&'static str, Phase> = BTreeMap::new();
        for n in 0..samples {
            let (verdict, took) = self.decide(Tool::Echo, n)?;
            if verdict["verdict"] != "pass" {
                return Err(format!("echo was not passed: {verdict}"));
            }
            out.entry("decide_passthrough")
                .or_default()
                .nanos
                .push(took);
        }
        for n in 0..samples {
            let (verdict, took) = self.decide(Tool::Deploy, n)?;
            let decision_id = verdict["decision_id"]
                .as_str()
                .filter(|_| verdict["verdict"] == "forward")
                .ok_or_else(|| format!("deploy was not forwarded: {verdict}"))?
                .to_owned();
            out.entry("decide_enforced").or_default().nanos.push(took);
            let (receipt, took) = self.call(json!({
                "op": "finish", "decision_id": decision_id, "end": "completed",
                "result_digest": null, "started_at": rfc3339_now(),
            }))?;
            if !receipt["receipt"].is_string() {
                return Err(format!("finish gave no receipt: {receipt}"));
            }
            out.entry("finish_enforced").or_default().nanos.push(took);
        }
        Ok(out.into_iter().map(|(k, p)| (k, p.finish())).collect())
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), the kernel's timestamp format.
fn rfc3339_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let secs = since.as_secs();
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        since.subsec_millis()
    )
}

/// Pressure-stall totals (`some`, microseconds) for CPU and I/O from `/proc/pressure`, when the
/// kernel has them: how long some task waited for a CPU or for the disk, machine-wide.
fn pressure() -> Option<(u64, u64)> {
    let some_total = |resource: &str| -> Option<u64> {
        let text = std::fs::read_to_string(format!("/proc/pressure/{resource}")).ok()?;
        let line = text.lines().find(|l| l.starts_with("some"))?;
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("total="))?
            .parse()
            .ok()
    };
    Some((some_total("cpu")?, some_total("io")?))
}

/// The share of `wall` during which some task waited for a CPU and for the disk, in percent,
/// between two [`pressure`] readings.
fn pressure_share(before: Option<(u64, u64)>, after: Option<(u64, u64)>, wall: Duration) -> Value {
    match (before, after) {
        (Some((cpu0, io0)), Some((cpu1, io1))) => {
            let micros = wall.as_secs_f64() * 1e6;
            json!({
                "cpu_some_pct": cpu1.saturating_sub(cpu0) as f64 / micros * 100.0,
                "io_some_pct": io1.saturating_sub(io0) as f64 / micros * 100.0,
            })
        }
        _ => Value::Null,
    }
}

/// Total size of the files under `dir`, in MiB.
fn size_mib(dir: &Path) -> f64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum::<u64>()
        })
        .unwrap_or(0) as f64
        / (1024.0 * 1024.0)
}

/// `trustos mcp --home H --server rec -- trustos-recording-upstream`, logging to `H/shim.log`.
fn shim_command(bin: &Path, home: &Path) -> Command {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.join("shim.log"))
        .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg("mcp")
        .arg("--home")
        .arg(home)
        .args(["--server", SERVER, "--", UPSTREAM])
        .env_remove("TRUSTOS_RECORD_FILE")
        .stderr(log);
    cmd
}

fn env_f64(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|v| *v > 0.0)
        .unwrap_or(default)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter or other flags are ignored.
    let length = Duration::from_secs_f64(env_f64("MCP_LOAD_SECONDS", 10.0));
    let rate = env_f64("MCP_LOAD_RATE", 500.0);
    let bin: PathBuf = trustos_bin().unwrap();
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!(
        "mcp_load: {} ({} cores, {}), {:.0} s per phase, open loop at {rate:.0} calls/s",
        bin.display(),
        cores,
        cpu_model(),
        length.as_secs_f64()
    );

    // Home, profile, daemon.
    let dir = TempDir::new("mcp-load").unwrap();
    let home = dir.join("home");
    let home_arg = home.to_str().unwrap();
    trustos(&bin, &["init", "--home", home_arg]);
    let profile = home.join("profiles/default/profile.toml");
    let mut text = std::fs::read_to_string(&profile).unwrap();
    text.push_str(DEPLOY_ROUTE);
    std::fs::write(&profile, text).unwrap();
    trustos(&bin, &["profile", "validate", profile.to_str().unwrap()]);
    let daemon = Daemon::start(&bin, &home);
    std::thread::sleep(SETTLE);
    let (rss_start, _) = daemon.memory();

    // Connections.
    let mut upstream = Command::new(UPSTREAM);
    upstream
        .env_remove("TRUSTOS_RECORD_FILE")
        .stderr(Stdio::null());
    let mut direct = Conn::spawn("direct", upstream);
    let mut gateway = Conn::spawn("gateway", shim_command(&bin, &home));
    direct.handshake();
    gateway.handshake();

    let plain = |tool| Expect {
        tool,
        decision: false,
        receipt: false,
    };
    let direct_echo = plain(Tool::Echo);
    let direct_deploy = plain(Tool::Deploy);
    let passthrough = plain(Tool::Echo);
    let enforced = Expect {
        tool: Tool::Deploy,
        decision: true,
        receipt: true,
    };
    // Proof that the right paths are measured: a receipt on deploy, none on echo.
    let deployed = gateway.call_once(enforced);
    let receipt = deployed["result"]["_meta"]["io.trustos/receipt"]
        .as_str()
        .unwrap();
    assert_eq!(
        receipt.split('.').count(),
        3,
        "receipt is not a compact JWS"
    );
    let echoed = gateway.call_once(passthrough);
    assert!(echoed["result"]["_meta"]["io.trustos/receipt"].is_null());
    println!("checked: deploy through the gateway carries a signed receipt; echo carries none");

    // Warm-up.
    let mut warm_errors = 0;
    for (through, expect) in [
        (false, direct_echo),
        (false, direct_deploy),
        (true, passthrough),
        (true, enforced),
    ] {
        let conn = if through { &mut gateway } else { &mut direct };
        warm_errors += closed_loop(conn, expect, 8, WARM_UP).errors;
    }
    std::thread::sleep(SETTLE);
    let (rss_idle, _) = daemon.memory();

    // Open loop, in interleaved slices so that background noise hits direct and gateway alike.
    let mut open: BTreeMap<&str, Phase> = BTreeMap::new();
    let slice = OPEN_SLICE.min(length);
    let open_started = (Instant::now(), pressure());
    let paths = [
        ("direct_echo", false, direct_echo),
        ("gateway_echo", true, passthrough),
        ("direct_deploy", false, direct_deploy),
        ("gateway_deploy", true, enforced),
    ];
    let mut done = Duration::ZERO;
    let mut round = 0;
    while done < length {
        let this = slice.min(length - done);
        // Each round starts with the next path, so none always follows the same one.
        for turn in 0..paths.len() {
            let (name, through, expect) = paths[(turn + round) % paths.len()];
            let conn = if through { &mut gateway } else { &mut direct };
            let part = open_loop(conn, expect, rate, this);
            open.entry(name).or_default().absorb(part);
        }
        done += this;
        round += 1;
    }
    let open: BTreeMap<&str, Phase> = open.into_iter().map(|(k, p)| (k, p.finish())).collect();
    let open_pressure = pressure_share(open_started.1, pressure(), open_started.0.elapsed());
    for (name, phase) in &open {
        println!(
            "  open {name:<15} p50 {:.3} ms  p99 {:.3} ms  errors {}",
            phase.ms(0.5),
            phase.ms(0.99),
            phase.errors
        );
    }

    // Closed loop.
    let mut closed: BTreeMap<(&str, usize), Phase> = BTreeMap::new();
    for inflight in LEVELS {
        for (name, through, expect) in [
            ("direct", false, direct_echo),
            ("passthrough", true, passthrough),
            ("enforced", true, enforced),
        ] {
            let conn = if through { &mut gateway } else { &mut direct };
            let phase = closed_loop(conn, expect, inflight, length);
            println!(
                "  closed {name:<12} {inflight:>2} in flight: {:>8.0} calls/s  errors {}",
                phase.rate, phase.errors
            );
            closed.insert((name, inflight), phase);
        }
    }

    // Enforced calls spread over several connections, one in flight on each: what the daemon
    // sustains when calls are not serialized behind one shim.
    let mut shims: Vec<Conn> = (0..SPREAD_CONNECTIONS)
        .map(|_| {
            let mut conn = Conn::spawn("gateway", shim_command(&bin, &home));
            conn.handshake();
            conn
        })
        .collect();
    let parts: Vec<Phase> = std::thread::scope(|scope| {
        let runs: Vec<_> = shims
            .iter_mut()
            .map(|conn| scope.spawn(move || closed_loop(conn, enforced, 1, length)))
            .collect();
        runs.into_iter().map(|run| run.join().unwrap()).collect()
    });
    drop(shims);
    let spread_rate: f64 = parts.iter().map(|p| p.rate).sum();
    let mut spread = Phase::default();
    for part in parts {
        spread.absorb(part);
    }
    spread.rate = spread_rate;
    let spread = spread.finish();
    println!(
        "  closed enforced over {SPREAD_CONNECTIONS} connections, 1 in flight each: {:.0} calls/s  errors {}",
        spread.rate, spread.errors
    );
    std::thread::sleep(SETTLE);
    let (rss_after, rss_peak) = daemon.memory();
    let store_mib = size_mib(&home.join("data"));
    let probe = ControlProbe::connect(&home.join("trustos.sock"))
        .and_then(|mut probe| probe.run(PROBE_SAMPLES));
    let (fsync_p50, fsync_p99) = fsync_cost(&home);

    // Report.
    let pct = [("p50", 0.50), ("p99", 0.99), ("p99.9", 0.999)];
    println!(
        "\nOpen loop at {rate:.0} calls/s, {:.0} s each; latency from scheduled send to response, ms",
        length.as_secs_f64()
    );
    println!("| path | calls | p50 | p99 | p99.9 | max | errors |\n|---|---|---|---|---|---|---|");
    let row = |label: &str, phase: &Phase| {
        println!(
            "| {label} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {} |",
            phase.sent,
            phase.ms(0.5),
            phase.ms(0.99),
            phase.ms(0.999),
            phase.ms(1.0),
            phase.errors
        );
    };
    let added = |gateway: &Phase, direct: &Phase| -> Vec<f64> {
        pct.iter()
            .map(|(_, f)| gateway.ms(*f) - direct.ms(*f))
            .collect()
    };
    let added_pass = added(&open["gateway_echo"], &open["direct_echo"]);
    let added_enf = added(&open["gateway_deploy"], &open["direct_deploy"]);
    row("direct `echo`", &open["direct_echo"]);
    row("gateway `echo` (passthrough)", &open["gateway_echo"]);
    println!(
        "| **added, passthrough** | | **{:.3}** | **{:.3}** | **{:.3}** | | |",
        added_pass[0], added_pass[1], added_pass[2]
    );
    row("direct `deploy`", &open["direct_deploy"]);
    row("gateway `deploy` (enforced)", &open["gateway_deploy"]);
    println!(
        "| **added, enforced** | | **{:.3}** | **{:.3}** | **{:.3}** | | |",
        added_enf[0], added_enf[1], added_enf[2]
    );

    println!("\nClosed loop, one connection, calls/s (p50 / p99 latency in ms)");
    print!("| path |");
    for inflight in LEVELS {
        print!(" {inflight} in flight |");
    }
    println!("\n|---|{}", "---|".repeat(LEVELS.len()));
    for name in ["direct", "passthrough", "enforced"] {
        print!("| {name} |");
        for inflight in LEVELS {
            let phase = &closed[&(name, inflight)];
            print!(
                " {:.0} ({:.2} / {:.2}) |",
                phase.rate,
                phase.ms(0.5),
                phase.ms(0.99)
            );
        }
        println!();
    }
    println!(
        "| enforced, {SPREAD_CONNECTIONS} connections × 1 in flight | {:.0} ({:.2} / {:.2}) | | |",
        spread.rate,
        spread.ms(0.5),
        spread.ms(0.99)
    );
    println!(
        "\nDaemon (pid {}) VmRSS: {rss_start:.1} MiB started, {rss_idle:.1} MiB idle after warm-up, {rss_after:.1} MiB idle \
         after the load (VmHWM {rss_peak:.1} MiB)",
        daemon.pid()
    );
    println!("Store file after the load: {store_mib:.1} MiB");
    match &probe {
        Ok(parts) => {
            println!(
                "Daemon's share, one request at a time over the control socket ({PROBE_SAMPLES} each), ms:"
            );
            for (name, phase) in parts {
                println!(
                    "  {name:<20} p50 {:.3}  p99 {:.3}  p99.9 {:.3}",
                    phase.ms(0.5),
                    phase.ms(0.99),
                    phase.ms(0.999)
                );
            }
        }
        Err(err) => println!("control-socket probe skipped: {err}"),
    }
    println!(
        "Machine-wide stall during the open loop (PSI `some`, % of wall time): CPU {:.1}%, I/O \
         {:.1}%; load average at start: {load}",
        open_pressure["cpu_some_pct"].as_f64().unwrap_or(f64::NAN),
        open_pressure["io_some_pct"].as_f64().unwrap_or(f64::NAN)
    );
    println!("4 KiB write + fdatasync on this disk: p50 {fsync_p50:.3} ms, p99 {fsync_p99:.3} ms");

    let pass_ok = added_pass[1] <= TARGET_PASS_P99_MS;
    let enf_ok = added_enf[1] <= TARGET_ENFORCED_P99_MS;
    let rss_ok = rss_idle.max(rss_after) <= TARGET_RSS_MB;
    println!(
        "\nTargets: passthrough p99 added {:.3} ms ≤ {TARGET_PASS_P99_MS} ms: {}; enforced p99 \
         added {:.3} ms ≤ {TARGET_ENFORCED_P99_MS} ms: {}; daemon RSS {:.1} MiB ≤ \
         {TARGET_RSS_MB} MB: {}",
        added_pass[1],
        met(pass_ok),
        added_enf[1],
        met(enf_ok),
        rss_idle.max(rss_after),
        met(rss_ok)
    );

    let errors = warm_errors
        + open.values().map(|p| p.errors).sum::<usize>()
        + closed.values().map(|p| p.errors).sum::<usize>()
        + spread.errors;
    let added_json =
        |values: &[f64]| json!({"p50_ms": values[0], "p99_ms": values[1], "p999_ms": values[2]});
    let report = json!({
        "machine": {"cores": cores, "cpu": cpu_model(), "load_average_at_start": load},
        "open_loop_pressure": open_pressure,
        "trustos": bin,
        "seconds_per_phase": length.as_secs_f64(),
        "open_loop": {
            "rate_per_s": rate,
            "phases": open.iter().map(|(k, p)| (k.to_string(), p.summary())).collect::<serde_json::Map<_, _>>(),
            "added_passthrough": added_json(&added_pass),
            "added_enforced": added_json(&added_enf),
        },
        "closed_loop": closed
            .iter()
            .map(|((name, inflight), p)| json!({"path": name, "in_flight": inflight, "result": p.summary()}))
            .collect::<Vec<_>>(),
        "closed_loop_spread": {"connections": SPREAD_CONNECTIONS, "in_flight_each": 1, "path": "enforced", "result": spread.summary()},
        "daemon": {
            "pid": daemon.pid(),
            "rss_started_mib": rss_start,
            "rss_idle_after_warmup_mib": rss_idle,
            "rss_idle_after_load_mib": rss_after,
            "hwm_mib": rss_peak,
        },
        "store_mib_after_load": store_mib,
        "control_probe": match &probe {
            Ok(parts) => parts.iter().map(|(k, p)| (k.to_string(), p.summary())).collect::<serde_json::Map<_, _>>().into(),
            Err(err) => json!({"skipped": err}),
        },
        "fsync_4k": {"p50_ms": fsync_p50, "p99_ms": fsync_p99},
        "targets": {
            "passthrough_p99_added_ms": {"target": TARGET_PASS_P99_MS, "value": added_pass[1], "met": pass_ok},
            "enforced_p99_added_ms": {"target": TARGET_ENFORCED_P99_MS, "value": added_enf[1], "met": enf_ok},
            "daemon_rss_idle_mib": {"target": TARGET_RSS_MB, "value": rss_idle.max(rss_after), "met": rss_ok},
        },
        "errors": errors,
    });
    let out = target_dir().join("mcp_load.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("wrote {}", out.display());

    drop(gateway);
    drop(direct);
    drop(daemon);
    assert_eq!(errors, 0, "{errors} calls failed; see {}", out.display());
}
