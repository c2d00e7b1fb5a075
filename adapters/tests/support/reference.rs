//! Test support: the reference x402 TypeScript implementation, installed from npm and driven
//! from Rust tests, so our payloads are judged by the reference code, not by our own reading
//! of the spec.
//!
//! The node project is `adapters/tests/reference/` (see its README): `package.json` pins
//! `@x402/core`, `@x402/evm`, `@x402/express`, `@x402/extensions`, `express` and `viem`
//! exactly and `package-lock.json` pins everything under them. [`reference_dir`] copies the
//! two files and the scripts into `<target>/x402-reference/` and runs `npm ci` there, once per
//! build tree: a marker file holds a hash of the two npm files and of `node --version`, and the
//! install is redone only when it is missing or differs. Concurrent test processes serialize
//! on a lock file next to the directory. Needs `node` (20+) and `npm` on `PATH` and the npm
//! registry (nothing else from the network).
//!
//! What it offers:
//! - [`reference_verify`]: the reference facilitator's verdict on payloads (`verify.mjs`).
//! - [`reference_sign`]: a signed payload from the public Hardhat #0 key (`sign-for-test.mjs`),
//!   made by the reference client from a `PaymentRequired`, or from explicit fields.
//! - [`Facilitator`]: the reference facilitator over HTTP (`facilitator.mjs`), with settlement
//!   fault modes and a log of settled payments.
//! - [`PaidApi`]: a paid API behind the reference express middleware (`paid-api.mjs`).
//! - [`http_request`], [`base64_decode`], [`base64_encode`], [`decode_header_json`]: a
//!   plain HTTP/1.1 client on `std::net::TcpStream` and the header codecs, for tests.
//!
//! Processes are killed when their handle drops. Their stderr (and stdout after the
//! `LISTENING` line) goes to a file under `<target>/x402-reference/runs/`; the file is removed
//! on a clean drop, and kept and its tail printed when the drop happens during a panic, so a
//! failing test shows what the node side said.
//!
//! Include it with `#[path = "<relative path>/adapters/tests/support/reference.rs"] mod
//! reference;`. It uses only `std` and `serde_json`.

#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Hardhat account #0's private key: publicly known, for tests only. `sign-for-test.mjs`
/// signs with it unless told otherwise.
pub const TEST_PAYER_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// The address of [`TEST_PAYER_KEY`].
pub const TEST_PAYER_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// The facilitator's settling address, listed under `signers` in `/supported` (Hardhat #1).
pub const FACILITATOR_ADDRESS: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// The paid API's default `payTo`.
pub const DEFAULT_PAY_TO: &str = "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
/// USDC on Base Sepolia (`eip155:84532`); EIP-712 domain name `USDC`, version `2`.
pub const BASE_SEPOLIA_USDC: &str = "0x036CbD53842c5426634e7929541eC2318f3dCF7e";

const PACKAGE_JSON: &str = include_str!("../reference/package.json");
const PACKAGE_LOCK: &str = include_str!("../reference/package-lock.json");
/// The scripts, copied next to `node_modules` so their imports resolve there.
const SCRIPTS: &[(&str, &str)] = &[
    (
        "facilitator-core.mjs",
        include_str!("../reference/facilitator-core.mjs"),
    ),
    ("verify.mjs", include_str!("../reference/verify.mjs")),
    (
        "facilitator.mjs",
        include_str!("../reference/facilitator.mjs"),
    ),
    ("paid-api.mjs", include_str!("../reference/paid-api.mjs")),
    (
        "sign-for-test.mjs",
        include_str!("../reference/sign-for-test.mjs"),
    ),
];
/// Files whose presence shows the install is complete.
const INSTALLED_ENTRIES: &[&str] = &[
    "node_modules/@x402/core/package.json",
    "node_modules/@x402/evm/package.json",
    "node_modules/@x402/express/package.json",
    "node_modules/@x402/extensions/package.json",
    "node_modules/express/package.json",
    "node_modules/viem/package.json",
];

/// The longest an `npm ci` may take, and the age at which another process's lock is stale.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// The longest a server may take to print `LISTENING <port>`.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a one-shot script (verify, sign) may run.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// The deadline of the harness's own control requests.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs the reference packages (once per build tree) and the scripts, and returns the
/// directory holding them: `<target>/x402-reference`. Computed once per process.
///
/// # Errors
///
/// When `node` is missing, the lock cannot be taken, `npm ci` fails (the error includes its
/// log's tail), or a file cannot be written.
pub fn reference_dir() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install(&target_dir().join("x402-reference")))
        .clone()
}

/// Runs the reference facilitator's `verify` on each case (`{"paymentPayload", "paymentRequirements"}`,
/// optionally `"action": "settle"` to settle instead; cases share one stub chain, in order)
/// and returns one result per case: the reference's `VerifyResponse` (`isValid`,
/// `invalidReason`, `invalidMessage`, `payer`) or `SettleResponse`, or `{"error": …}` when the
/// reference threw (no scheme for the network, …).
///
/// # Errors
///
/// When the install fails, node cannot run the script, or its output is not one result per case.
pub fn reference_verify(cases: &[Value]) -> Result<Vec<Value>, String> {
    let input = json!({ "cases": cases });
    let output = run_script("verify.mjs", &input)?;
    let results = output
        .get("results")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("verify.mjs printed no results array: {output}"))?;
    if results.len() != cases.len() {
        return Err(format!(
            "verify.mjs returned {} results for {} cases: {output}",
            results.len(),
            cases.len()
        ));
    }
    Ok(results.clone())
}

/// Signs a payment with the test key (see `sign-for-test.mjs`): `request` is
/// `{"paymentRequired": <decoded PAYMENT-REQUIRED>}` (the reference client signs
/// `accepts[0]`) or `{"paymentRequirements": …, "authorization": {overrides}, "domain":
/// {overrides}, "resource": …, "extensions": …}` (signed directly, for well-signed wrong
/// payloads), optionally with `"privateKey"`. Returns `{"paymentPayload", "header" (base64 for
/// `PAYMENT-SIGNATURE`), "address"}`.
///
/// # Errors
///
/// When the install fails or the script fails.
pub fn reference_sign(request: &Value) -> Result<Value, String> {
    run_script("sign-for-test.mjs", request)
}

/// The reference facilitator (`facilitator.mjs`) on `127.0.0.1`, killed on drop.
#[derive(Debug)]
pub struct Facilitator {
    /// `http://127.0.0.1:<port>`, serving `POST /verify`, `POST /settle`, `GET /supported`.
    pub url: String,
    /// The JSON-lines file of settled payments (see [`Facilitator::settled`]).
    pub log: PathBuf,
    server: Server,
}

impl Facilitator {
    /// Starts a facilitator with a fresh stub chain, settling normally.
    ///
    /// # Errors
    ///
    /// When the install fails or the server does not come up (the error includes its stderr).
    pub fn start() -> Result<Self, String> {
        let dir = reference_dir()?;
        let name = unique_name("facilitator");
        let log = runs_dir(&dir)?.join(format!("{name}.settled.jsonl"));
        File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let server = Server::spawn(
            &dir,
            "facilitator.mjs",
            &name,
            &[("FACILITATOR_LOG", log.as_os_str())],
        )?;
        Ok(Self {
            url: format!("http://127.0.0.1:{}", server.port),
            log,
            server,
        })
    }

    /// Sets how the following `/settle` requests behave: `"ok"` (settle), `"fail"` (the
    /// settlement transaction reverts: `success: false`, nothing moves), `"error"` (HTTP 500),
    /// `"hang"` (never answer, nothing moves), `"hang-after-settle"` (money moves and is
    /// recorded, but never answer).
    ///
    /// # Errors
    ///
    /// When the control request fails or the mode is unknown.
    pub fn set_settle_mode(&self, mode: &str) -> Result<(), String> {
        self.control(&json!({ "settle": mode }))
    }

    /// Sets `address`'s balance (base units) of every token on the stub chain; the default is
    /// 10^12.
    ///
    /// # Errors
    ///
    /// When the control request fails.
    pub fn set_balance(&self, address: &str, amount: &str) -> Result<(), String> {
        self.control(&json!({ "balances": { address: amount } }))
    }

    /// The payments settled so far, oldest first: `{paymentPayload, paymentRequirements,
    /// transaction, network, payer, settledAt}` each. A record is written before the `/settle`
    /// answer is sent.
    pub fn settled(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// What the process has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.server.output()
    }

    fn control(&self, body: &Value) -> Result<(), String> {
        let bytes = body.to_string();
        let response = http_request(
            "POST",
            &format!("{}/control", self.url),
            &[("Content-Type", "application/json")],
            Some(bytes.as_bytes()),
            CONTROL_TIMEOUT,
        )?;
        if response.status != 200 {
            return Err(format!(
                "facilitator /control {body} answered {}: {}",
                response.status,
                response.text()
            ));
        }
        Ok(())
    }
}

impl Drop for Facilitator {
    fn drop(&mut self) {
        // The server field is dropped (killed) after this.
        if std::thread::panicking() {
            eprintln!(
                "x402 reference facilitator settled log: {}",
                self.log.display()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A paid API behind the reference express middleware (`paid-api.mjs`) on `127.0.0.1`,
/// killed on drop: `GET /weather` ($0.001 = 1000 base units), `POST /report` ($0.01, echoes
/// the SHA-256 of the body bytes, advertises `payment-identifier`), `GET /free`.
#[derive(Debug)]
pub struct PaidApi {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    server: Server,
}

impl PaidApi {
    /// Starts the API against the facilitator at `facilitator_url`, paying to [`DEFAULT_PAY_TO`].
    ///
    /// # Errors
    ///
    /// When the install fails or the server does not come up (the error includes its stderr).
    pub fn start(facilitator_url: &str) -> Result<Self, String> {
        Self::start_with_env(facilitator_url, &[])
    }

    /// As [`PaidApi::start`], with extra environment: `PAY_TO`, `FACILITATOR_TIMEOUT_MS`
    /// (the reference facilitator client's deadline, default 90000).
    ///
    /// # Errors
    ///
    /// As [`PaidApi::start`].
    pub fn start_with_env(facilitator_url: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let dir = reference_dir()?;
        let mut vars: Vec<(&str, &OsStr)> = vec![("FACILITATOR_URL", OsStr::new(facilitator_url))];
        vars.extend(env.iter().map(|(k, v)| (*k, OsStr::new(*v))));
        let server = Server::spawn(&dir, "paid-api.mjs", &unique_name("paid-api"), &vars)?;
        Ok(Self {
            url: format!("http://127.0.0.1:{}", server.port),
            server,
        })
    }

    /// What the process has written to stderr (and stdout after `LISTENING`) so far.
    pub fn stderr(&self) -> String {
        self.server.output()
    }
}

/// A response read by [`http_request`].
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// The header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Errors
    ///
    /// When it is not JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body)
            .map_err(|e| format!("body is not JSON ({e}): {}", self.text()))
    }
}

/// One HTTP/1.1 request over a fresh `TcpStream` (`Connection: close`), to `url`
/// (`http://host:port/path?query`), with `headers` and an optional body (sent with
/// `Content-Length`). Fails when the whole exchange takes longer than `timeout`.
///
/// # Errors
///
/// When the URL is not `http://`, the connection or I/O fails, the deadline passes, or the
/// response cannot be parsed.
pub fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<HttpResponse, String> {
    let deadline = Instant::now() + timeout;
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("no address for {authority}"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {authority}: {e}"))?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(|e| format!("set_write_timeout: {e}"))?;

    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    } else if matches!(method, "POST" | "PUT" | "PATCH") {
        request.push_str("Content-Length: 0\r\n");
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream
        .write_all(&bytes)
        .map_err(|e| format!("{method} {url}: write failed: {e}"))?;

    let mut raw = Vec::new();
    let mut buf = [0_u8; 16 * 1024];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!(
                "{method} {url}: no complete response within {timeout:?}"
            ));
        }
        stream
            .set_read_timeout(Some(remaining))
            .map_err(|e| format!("set_read_timeout: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "{method} {url}: no complete response within {timeout:?}"
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{method} {url}: read failed: {e}")),
        }
    }
    parse_response(&raw).map_err(|e| format!("{method} {url}: {e}"))
}

/// Parses a complete HTTP/1.1 response (read to EOF).
fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no header end in {} bytes", raw.len()))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("header not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body.
fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunk size line")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4), as x402 headers use.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(
                    BASE64_ALPHABET[((n >> (18 - 6 * i)) & 63) as usize],
                ));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional; whitespace not allowed).
///
/// # Errors
///
/// On a character outside the alphabet or an impossible length.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc = 0_u32;
    let mut bits = 0;
    for c in text.bytes() {
        let v = BASE64_ALPHABET
            .iter()
            .position(|&a| a == c)
            .ok_or_else(|| format!("invalid base64 character {:?}", char::from(c)))?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("invalid base64 length".into());
    }
    Ok(out)
}

/// Decodes an x402 header value (`PAYMENT-REQUIRED`, `PAYMENT-SIGNATURE`, `PAYMENT-RESPONSE`):
/// base64 of JSON.
///
/// # Errors
///
/// When it is not base64 of JSON.
pub fn decode_header_json(value: &str) -> Result<Value, String> {
    let bytes = base64_decode(value.trim())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("header is not base64 JSON: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A node server started from a script, which printed `LISTENING <port>`.
#[derive(Debug)]
struct Server {
    child: Child,
    port: u16,
    /// stderr, and stdout after the first line.
    output_path: PathBuf,
    name: String,
    /// Keep `output_path` after the process is gone (an error message names it).
    keep_output: bool,
}

impl Server {
    fn spawn(dir: &Path, script: &str, name: &str, env: &[(&str, &OsStr)]) -> Result<Self, String> {
        let output_path = runs_dir(dir)?.join(format!("{name}.stderr.log"));
        let stderr = File::create(&output_path)
            .map_err(|e| format!("cannot create {}: {e}", output_path.display()))?;
        let mut cmd = Command::new("node");
        cmd.arg(script)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start node {script} (is Node.js on PATH?): {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("node {script}: no stdout pipe"));
        };
        let (first_line, rest) = mpsc::channel::<std::io::Result<String>>();
        let copy_to = OpenOptions::new().append(true).open(&output_path).ok();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = first_line.send(reader.read_line(&mut line).map(|_| line));
            // Keep draining so the child never blocks on a full pipe.
            let mut sink: Box<dyn std::io::Write> = match copy_to {
                Some(file) => Box::new(file),
                None => Box::new(std::io::sink()),
            };
            let _ = std::io::copy(&mut reader, &mut sink);
        });
        let mut server = Self {
            child,
            port: 0,
            output_path,
            name: name.to_string(),
            keep_output: false,
        };
        let line = match rest.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => return Err(server.fail(&format!("reading its stdout failed: {e}"))),
            Err(_) => {
                return Err(server.fail(&format!("it printed nothing within {STARTUP_TIMEOUT:?}")));
            }
        };
        match line
            .trim()
            .strip_prefix("LISTENING ")
            .and_then(|p| p.parse::<u16>().ok())
        {
            Some(port) => {
                server.port = port;
                Ok(server)
            }
            None => Err(server.fail(&format!(
                "its first line was {:?}, not `LISTENING <port>`",
                line.trim()
            ))),
        }
    }

    /// Stops the process and returns an error naming it and quoting its output.
    fn fail(&mut self, what: &str) -> String {
        self.keep_output = true;
        let _ = self.child.kill();
        let status = self.child.wait().ok();
        format!(
            "node {} did not start: {what} (exit {status:?}); its stderr ({}):\n{}",
            self.name,
            self.output_path.display(),
            tail(&self.output(), 60)
        )
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output_path).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.keep_output {
            return;
        }
        if std::thread::panicking() {
            eprintln!(
                "x402 reference {} output ({}), last lines:\n{}",
                self.name,
                self.output_path.display(),
                tail(&self.output(), 40)
            );
        } else {
            let _ = std::fs::remove_file(&self.output_path);
        }
    }
}

/// Runs `node <script>` with `input` as JSON on stdin and parses its stdout as JSON.
fn run_script(script: &str, input: &Value) -> Result<Value, String> {
    let dir = reference_dir()?;
    let mut child = Command::new("node")
        .arg(script)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start node {script} (is Node.js on PATH?): {e}"))?;
    let stdin = child.stdin.take();
    let bytes = input.to_string().into_bytes();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&bytes);
        }
    });
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let status = wait_or_kill(&mut child, script, SCRIPT_TIMEOUT);
    let _ = writer.join();
    let collect = |r: Option<std::thread::JoinHandle<Vec<u8>>>| {
        r.and_then(|r| r.join().ok()).unwrap_or_default()
    };
    let (stdout, stderr) = (collect(stdout), collect(stderr));
    let stderr = String::from_utf8_lossy(&stderr);
    let status = status.map_err(|e| format!("{e}\nstderr:\n{stderr}"))?;
    if !status.success() {
        return Err(format!(
            "node {script} failed ({status}); stderr:\n{stderr}"
        ));
    }
    serde_json::from_slice(&stdout).map_err(|e| {
        format!(
            "node {script} printed no JSON ({e}): {}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

/// Reads `pipe` to its end on a thread.
fn drain(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for `child` until `timeout`, then kills it.
fn wait_or_kill(child: &mut Child, what: &str, timeout: Duration) -> Result<ExitStatus, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what} did not finish within {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A name unique across processes and within this one.
fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:09}", std::process::id())
}

fn runs_dir(dir: &Path) -> Result<PathBuf, String> {
    let runs = dir.join("runs");
    std::fs::create_dir_all(&runs).map_err(|e| format!("cannot create {}: {e}", runs.display()))?;
    Ok(runs)
}

// ---------------------------------------------------------------------------------------------
// Installation

/// Installs into `dir` unless its marker says it is current, then (re)writes the scripts.
fn install(dir: &Path) -> Result<PathBuf, String> {
    let expected = marker_contents()?;
    let marker = dir.join(".trustos-installed");
    let current = || {
        std::fs::read_to_string(&marker).is_ok_and(|m| m == expected)
            && INSTALLED_ENTRIES.iter().all(|e| dir.join(e).is_file())
    };
    if !current() {
        let lock_path = dir.with_file_name("x402-reference.lock");
        let _lock = SetupLock::acquire(&lock_path, INSTALL_TIMEOUT, INSTALL_TIMEOUT)?;
        if !current() {
            npm_ci(dir, &marker, &expected)?;
        }
    }
    for (name, text) in SCRIPTS {
        write_if_changed(&dir.join(name), text.as_bytes())?;
    }
    Ok(dir.to_path_buf())
}

/// `npm ci` from the committed lock, then the marker.
fn npm_ci(dir: &Path, marker: &Path, expected: &str) -> Result<(), String> {
    let _ = std::fs::remove_file(marker);
    match std::fs::remove_dir_all(dir.join("node_modules")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot clear {}/node_modules: {e}", dir.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_if_changed(&dir.join("package.json"), PACKAGE_JSON.as_bytes())?;
    write_if_changed(&dir.join("package-lock.json"), PACKAGE_LOCK.as_bytes())?;

    let log_path = dir.join("npm-ci.log");
    let log = File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot reopen {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(if cfg!(windows) { "npm.cmd" } else { "npm" });
    cmd.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    eprintln!("x402 reference: npm ci in {}", dir.display());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start npm (is it on PATH?): {e}"))?;
    let status = wait_or_kill(&mut child, "npm ci", INSTALL_TIMEOUT)?;
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(format!(
            "npm ci in {} failed ({status}); last lines of {}:\n{}",
            dir.display(),
            log_path.display(),
            tail(&log, 30)
        ));
    }
    for entry in INSTALLED_ENTRIES {
        if !dir.join(entry).is_file() {
            return Err(format!(
                "npm ci succeeded but {} is missing",
                dir.join(entry).display()
            ));
        }
    }
    std::fs::write(marker, expected).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

/// Writes `bytes` to `path` unless it already holds them, through a temporary file and a
/// rename so a concurrently starting node never reads a half-written script.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", unique_name("w")));
    std::fs::write(&tmp, bytes).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename {} to {}: {e}", tmp.display(), path.display())
    })
}

/// The marker's expected contents: FNV-1a (64-bit) over the two npm files and
/// `node --version`, each length-prefixed, plus the node version in clear for humans.
fn marker_contents() -> Result<String, String> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `node --version` (is Node.js on PATH?): {e}"))?;
    if !output.status.success() {
        return Err(format!("`node --version` failed: {}", output.status));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        PACKAGE_JSON.as_bytes(),
        PACKAGE_LOCK.as_bytes(),
        &output.stdout,
    ] {
        for byte in (part.len() as u64).to_be_bytes().iter().chain(part) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    Ok(format!(
        "{hash:016x} node {}\n",
        String::from_utf8_lossy(&output.stdout).trim()
    ))
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set (relative values are taken from
/// the workspace root), else the directory above the running test binary's profile directory
/// when it is a cargo target directory (it holds `CACHEDIR.TAG`), else `<workspace>/target`.
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let parent = exe.parent()?;
        // Test binaries live in `<target>/<profile>/deps`.
        let profile = match parent.file_name().and_then(|n| n.to_str()) {
            Some("deps" | "examples") => parent.parent()?,
            _ => parent,
        };
        let target = profile.parent()?;
        target
            .join("CACHEDIR.TAG")
            .is_file()
            .then(|| target.to_path_buf())
    });
    from_exe.unwrap_or_else(|| workspace_root().join("target"))
}

/// The workspace root: the nearest ancestor of the including crate's manifest directory that
/// holds `adapters/tests/reference/package.json`.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("adapters/tests/reference/package.json").is_file())
        .unwrap_or_else(|| manifest.parent().unwrap_or(manifest))
        .to_path_buf()
}

/// A cross-process lock made of a file created with `create_new` (the workspace's minimum
/// Rust predates `File::lock`): whoever creates it holds it, removing it releases it, and a
/// lock older than the stale limit (a killed holder) is taken over.
#[derive(Debug)]
struct SetupLock {
    path: PathBuf,
}

impl SetupLock {
    fn acquire(path: &Path, wait: Duration, stale_after: Duration) -> Result<Self, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    let _ = writeln!(file, "pid {}", std::process::id());
                    return Ok(Self {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|m| SystemTime::now().duration_since(m).ok())
                        .is_some_and(|age| age > stale_after);
                    if stale {
                        let _ = std::fs::remove_file(path);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "timed out after {wait:?} waiting for lock {} (remove it if no test run is active)",
                            path.display()
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(format!("cannot create lock {}: {e}", path.display())),
            }
        }
    }
}

impl Drop for SetupLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
