//! The Streamable HTTP front (`trustos serve --listen`, `/mcp/NAME`) against the recording
//! upstream: authentication, origin and header checks refuse before anything is relayed, a
//! session relays low-risk calls and refuses unclassified ones, batches and 2026-07-28 requests
//! whose headers disagree with their body never reach the tool server.
//!
//! The client is a tiny HTTP/1.1 helper over `std::net::TcpStream` (one request per
//! connection, `Connection: close`), so the test sees exactly what the front sends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bypass_tests::{Recorder, TempDir, trustos_bin};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const UPSTREAM: &str = env!("CARGO_BIN_EXE_trustos-recording-upstream");
const TOKEN: &str = "test-token-3f1c9a";
const OTHER_TOKEN: &str = "other-token-77b2";
const LIMITED_TOKEN: &str = "limited-token-0d4e";
const TIMEOUT: Duration = Duration::from_secs(30);
const ACCEPT: &str = "application/json, text/event-stream";

fn sha256(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// A running `trustos serve` with the recording upstream as `[servers.rec]`.
struct Gateway {
    _dir: TempDir,
    child: Child,
    addr: String,
    recorder: Recorder,
    path: String,
}

impl Gateway {
    fn start(label: &str) -> Self {
        Self::start_with(label, "", "rec")
    }

    /// As [`Self::start`], with more `gateway.toml` text, posting to `/mcp/SERVER`.
    fn start_with(label: &str, extra_config: &str, server: &str) -> Self {
        let dir = TempDir::new(label).unwrap();
        let home = dir.join("home");
        let bin = trustos_bin().unwrap();
        let init = Command::new(&bin)
            .args(["init", "--home"])
            .arg(&home)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "trustos init failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let recorder = Recorder::in_dir(dir.path());
        let mut config = std::fs::read_to_string(home.join("gateway.toml")).unwrap();
        config.push_str(&format!(
            "\n[servers.rec]\ncommand = [{upstream}]\nenv = {{ TRUSTOS_RECORD_FILE = {record} }}\n\n\
             [[tokens]]\ntoken_sha256 = \"{t1}\"\ntenant = \"local\"\nagent = \"agent\"\n\n\
             [[tokens]]\ntoken_sha256 = \"{t2}\"\ntenant = \"local\"\nagent = \"agent\"\n\n\
             [[tokens]]\ntoken_sha256 = \"{t3}\"\ntenant = \"local\"\nagent = \"agent\"\nservers = [\"elsewhere\"]\n",
            upstream = Value::String(UPSTREAM.to_owned()),
            record = Value::String(recorder.path().display().to_string()),
            t1 = sha256(TOKEN),
            t2 = sha256(OTHER_TOKEN),
            t3 = sha256(LIMITED_TOKEN),
        ));
        config.push_str(extra_config);
        std::fs::write(home.join("gateway.toml"), config).unwrap();

        let mut child = Command::new(&bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--home"])
            .arg(&home)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (lines, ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[trustos serve] {line}");
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + TIMEOUT;
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = ready
                .recv_timeout(left)
                .expect("trustos serve did not report ready");
            if let Some(rest) = line.split(" and http://").nth(1)
                && line.contains("ready on")
            {
                break rest.trim_end_matches("/mcp/NAME").to_owned();
            }
        };
        Self {
            _dir: dir,
            child,
            addr,
            recorder,
            path: format!("/mcp/{server}"),
        }
    }

    fn post(&self, session: Option<&str>, headers: &[(&str, &str)], body: &Value) -> Reply {
        self.post_raw(session, headers, &body.to_string())
    }

    fn post_raw(&self, session: Option<&str>, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut all = vec![
            ("Authorization", format!("Bearer {TOKEN}")),
            ("Content-Type", "application/json".to_owned()),
            ("Accept", ACCEPT.to_owned()),
        ];
        if let Some(session) = session {
            all.push(("Mcp-Session-Id", session.to_owned()));
        }
        for (name, value) in headers {
            all.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            all.push((name, (*value).to_owned()));
        }
        let all: Vec<(&str, &str)> = all.iter().map(|(n, v)| (*n, v.as_str())).collect();
        http(&self.addr, "POST", &self.path, &all, body.as_bytes())
    }

    /// Opens a session with `initialize` (and `notifications/initialized`); its id.
    fn initialize(&self, version: &str) -> String {
        let reply = self.post(
            None,
            &[],
            &json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
                "protocolVersion": version, "capabilities": {},
                "clientInfo": {"name": "http-front-test", "version": "0"}}}),
        );
        assert_eq!(reply.status, 200, "initialize: {}", reply.body);
        assert_eq!(reply.json()["result"]["protocolVersion"], version);
        let session = reply.header("mcp-session-id").expect("no Mcp-Session-Id");
        assert!(
            session.starts_with("mcp_") && session.len() == 36,
            "{session}"
        );
        let initialized = self.post(
            Some(&session),
            &[("MCP-Protocol-Version", version)],
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        );
        assert_eq!(initialized.status, 202, "{}", initialized.body);
        assert!(initialized.body.is_empty());
        session
    }

    fn call(&self, session: &str, id: u64, tool: &str, arguments: Value) -> Reply {
        self.post(
            Some(session),
            &[("MCP-Protocol-Version", "2025-06-18")],
            &json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                "params": {"name": tool, "arguments": arguments}}),
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        bypass_tests::serve::terminate(&mut self.child);
    }
}

/// An HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// Sends one HTTP/1.1 request and reads the whole response (`Connection: close`).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    } else if let Some(length) = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
    {
        body.truncate(length);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}

/// Reads only the status line and headers of a streaming response.
fn http_head(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "connection closed early"
        );
        raw.push(byte[0]);
    }
    parse_response(&raw)
}

fn error_reason(reply: &Reply) -> String {
    reply.json()["error"]["data"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn result_text(reply: &Reply) -> String {
    reply.json()["result"]["content"]
        .as_array()
        .unwrap_or_else(|| panic!("no content in {}", reply.body))
        .iter()
        .filter_map(|item| item["text"].as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn refuses_before_relaying_without_auth_or_from_foreign_origins() {
    let gateway = Gateway::start("front-auth");
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"}}})
    .to_string();
    let json_headers = [("Content-Type", "application/json"), ("Accept", ACCEPT)];

    let anonymous = http(
        &gateway.addr,
        "POST",
        "/mcp/rec",
        &json_headers,
        init.as_bytes(),
    );
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    assert!(
        anonymous
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer")
    );
    let fix = anonymous.json()["error"]["data"]["remediation"].to_string();
    assert!(
        fix.contains("[[tokens]]") && fix.contains("token_sha256"),
        "{fix}"
    );

    let wrong = gateway.post_raw(None, &[("Authorization", "Bearer nope")], &init);
    assert_eq!(wrong.status, 401);

    let foreign = gateway.post_raw(None, &[("Origin", "http://evil.example")], &init);
    assert_eq!(foreign.status, 403, "{}", foreign.body);
    let rebinding = gateway.post_raw(
        None,
        &[("Origin", "http://localhost.evil.example:80")],
        &init,
    );
    assert_eq!(rebinding.status, 403);

    let limited = gateway.post_raw(
        None,
        &[("Authorization", &format!("Bearer {LIMITED_TOKEN}"))],
        &init,
    );
    assert_eq!(limited.status, 403, "{}", limited.body);

    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    assert_eq!(
        http(&gateway.addr, "POST", "/mcp/nope", &auth, b"{}").status,
        404
    );
    assert_eq!(
        http(&gateway.addr, "POST", "/elsewhere", &auth, b"{}").status,
        404
    );
    assert_eq!(
        http(&gateway.addr, "PUT", "/mcp/rec", &auth, b"{}").status,
        405
    );

    let version = gateway.post_raw(None, &[("MCP-Protocol-Version", "2024-01-01")], &init);
    assert_eq!(version.status, 400);
    let text = gateway.post_raw(None, &[("Content-Type", "text/plain")], &init);
    assert_eq!(text.status, 415);
    let html = gateway.post_raw(None, &[("Accept", "text/html")], &init);
    assert_eq!(html.status, 406);
    let no_session = gateway.post(
        None,
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(no_session.status, 400, "{}", no_session.body);

    // Nothing above started the upstream.
    assert!(
        gateway.recorder.lines().is_empty(),
        "{:?}",
        gateway.recorder.lines()
    );

    // An allowed origin (any port) gets through.
    let local = gateway.post_raw(None, &[("Origin", "http://localhost:6274")], &init);
    assert_eq!(local.status, 200, "{}", local.body);
}

#[test]
fn a_session_relays_low_risk_calls_and_refuses_unclassified_ones() {
    let gateway = Gateway::start("front-session");
    let session = gateway.initialize("2025-06-18");

    let listed = gateway.post(
        Some(&session),
        &[],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.header("content-type").unwrap(), "application/json");
    assert_eq!(listed.json()["id"], 1);
    assert_eq!(
        listed.json()["result"]["tools"].as_array().unwrap().len(),
        5
    );

    let echoed = gateway.call(&session, 2, "echo", json!({"message": "over http"}));
    assert_eq!(echoed.status, 200, "{}", echoed.body);
    assert!(
        result_text(&echoed).contains("echo: over http"),
        "{}",
        echoed.body
    );
    assert_eq!(gateway.recorder.tool_call_names(), ["echo"]);

    let deleted = gateway.call(&session, 3, "delete_database", json!({"name": "prod"}));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.json()["result"]["isError"], true);
    assert!(
        result_text(&deleted).contains("TOOL_UNCLASSIFIED"),
        "{}",
        deleted.body
    );
    gateway
        .recorder
        .assert_no_tool_call_named("delete_database");

    // The session belongs to the token that opened it.
    let stolen = gateway.post(
        Some(&session),
        &[("Authorization", &format!("Bearer {OTHER_TOKEN}"))],
        &json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"}),
    );
    assert_eq!(stolen.status, 404, "{}", stolen.body);
    let unknown = gateway.post(
        Some("mcp_00000000000000000000000000000000"),
        &[],
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
    );
    assert_eq!(unknown.status, 404);

    // The GET stream of server messages.
    let bearer = format!("Bearer {TOKEN}");
    let stream = http_head(
        &gateway.addr,
        "GET",
        "/mcp/rec",
        &[
            ("Authorization", &bearer),
            ("Accept", "text/event-stream"),
            ("Mcp-Session-Id", &session),
        ],
    );
    assert_eq!(stream.status, 200);
    assert_eq!(stream.header("content-type").unwrap(), "text/event-stream");

    let auth = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", session.as_str()),
    ];
    assert_eq!(
        http(&gateway.addr, "DELETE", "/mcp/rec", &auth, b"").status,
        204
    );
    assert_eq!(
        http(&gateway.addr, "DELETE", "/mcp/rec", &auth, b"").status,
        404
    );
    let after = gateway.call(&session, 6, "echo", json!({"message": "late"}));
    assert_eq!(after.status, 404);
    assert_eq!(gateway.recorder.tool_call_names(), ["echo"]);
}

#[test]
fn batches_are_refused_and_never_relayed() {
    let gateway = Gateway::start("front-batch");
    let session = gateway.initialize("2025-06-18");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 10, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"message": "a"}}},
        {"jsonrpc": "2.0", "id": 11, "method": "tools/call",
            "params": {"name": "delete_database", "arguments": {"name": "prod"}}}
    ]);
    let reply = gateway.post(Some(&session), &[], &batch);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["error"]["code"], -32600, "{answer}");
    assert_eq!(error_reason(&reply), "MCP_BATCH_NOT_ALLOWED");
    assert!(
        gateway.recorder.tool_calls().is_empty(),
        "{:?}",
        gateway.recorder.lines()
    );

    // The session still works afterwards (tools are callable once listed).
    let listed = gateway.post(
        Some(&session),
        &[],
        &json!({"jsonrpc": "2.0", "id": 12, "method": "tools/list"}),
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    let echoed = gateway.call(&session, 13, "echo", json!({"message": "after"}));
    assert!(
        result_text(&echoed).contains("echo: after"),
        "{}",
        echoed.body
    );
}

#[test]
fn stateless_requests_whose_headers_disagree_with_the_body_are_refused() {
    let gateway = Gateway::start("front-stateless");
    let call = |name: &str| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": name, "arguments": {"name": "prod"},
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28"}}})
    };
    let v = ("MCP-Protocol-Version", "2026-07-28");
    let mismatched = gateway.post(
        None,
        &[v, ("Mcp-Method", "tools/call"), ("Mcp-Name", "echo")],
        &call("delete_database"),
    );
    assert_eq!(mismatched.status, 400, "{}", mismatched.body);
    assert_eq!(mismatched.json()["error"]["code"], -32020);
    assert_eq!(mismatched.json()["id"], 1);

    let missing = gateway.post(
        None,
        &[v, ("Mcp-Method", "tools/call")],
        &call("delete_database"),
    );
    assert_eq!(missing.status, 400);
    assert_eq!(missing.json()["error"]["code"], -32020);

    let method = gateway.post(
        None,
        &[
            v,
            ("Mcp-Method", "tools/list"),
            ("Mcp-Name", "delete_database"),
        ],
        &call("delete_database"),
    );
    assert_eq!(method.status, 400);
    assert_eq!(method.json()["error"]["code"], -32020);

    // The body says 2026-07-28 but the MCP-Protocol-Version header is missing.
    let no_version = gateway.post(
        None,
        &[
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "delete_database"),
        ],
        &call("delete_database"),
    );
    assert_eq!(no_version.status, 400, "{}", no_version.body);
    assert_eq!(no_version.json()["error"]["code"], -32020);

    // Base64-encoded Mcp-Name that decodes to another tool.
    let encoded = gateway.post(
        None,
        &[
            v,
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?ZWNobw==?="),
        ],
        &call("delete_database"),
    );
    assert_eq!(encoded.status, 400);
    assert_eq!(encoded.json()["error"]["code"], -32020);

    // No GET stream and no sessions in 2026-07-28.
    let bearer = format!("Bearer {TOKEN}");
    let get = http(
        &gateway.addr,
        "GET",
        "/mcp/rec",
        &[
            ("Authorization", &bearer),
            ("Accept", "text/event-stream"),
            v,
        ],
        b"",
    );
    assert_eq!(get.status, 405);

    assert!(
        gateway.recorder.lines().is_empty(),
        "{:?}",
        gateway.recorder.lines()
    );
}

#[test]
fn the_front_relays_to_a_streamable_http_upstream() {
    let node = bypass_tests::node_packages().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = node.server_everything_http(port);
    server.stdout(Stdio::null()).stderr(Stdio::null());
    let mut server = server.spawn().unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "server-everything did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let gateway = Gateway::start_with(
        "front-http-upstream",
        &format!("\n[servers.everything]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
        "everything",
    );
    let session = gateway.initialize("2025-06-18");
    let listed = gateway.post(
        Some(&session),
        &[("MCP-Protocol-Version", "2025-06-18")],
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    );
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.json()["result"]["tools"].as_array().unwrap().len() >= 10);
    let echo = gateway.call(&session, 2, "echo", json!({"message": "over http"}));
    assert_eq!(result_text(&echo), "Echo: over http", "{}", echo.body);
    // get-sum is paid in the starter profile: decided, run upstream, receipted.
    let sum = gateway.call(&session, 3, "get-sum", json!({"a": 2, "b": 3}));
    assert_eq!(
        result_text(&sum),
        "The sum of 2 and 3 is 5.",
        "{}",
        sum.body
    );
    assert!(
        sum.json()["result"]["_meta"]["io.trustos/receipt"].is_string(),
        "{}",
        sum.body
    );
    let refused = gateway.call(&session, 4, "gzip-file-as-resource", json!({}));
    assert!(
        result_text(&refused).contains("TOOL_UNCLASSIFIED"),
        "{}",
        refused.body
    );
    drop(gateway);
    let _ = server.kill();
    let _ = server.wait();
}
