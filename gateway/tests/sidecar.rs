//! The sidecar image, tested without a container engine: the command line the `Dockerfile`
//! runs (`ENTRYPOINT` + `CMD`, with its `ENV TRUSTOS_HOME`) is run directly with the built
//! binary against a home prepared the way `deploy/kubernetes` prepares it (the ConfigMap's
//! `gateway.toml`, payment secrets copied to mode 0400, the `trustos init` init container), and
//! `/healthz` is probed the way the manifest's probes do (same path, the port the image exposes).
//!
//! What this cannot show: that the image builds, that distroless runs the binary, and that a
//! cluster mounts volumes and runs probes as described. Only the listen port differs from the
//! image (0 instead of 8790, so that parallel tests never collide); the address stays 0.0.0.0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(30);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    fs::read_to_string(repo(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The JSON array (exec form) of the last `INSTRUCTION [...]` line of the Dockerfile.
fn exec_form(dockerfile: &str, instruction: &str) -> Vec<String> {
    let line = dockerfile
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(instruction)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {instruction} in the Dockerfile"));
    serde_json::from_str(line.trim())
        .unwrap_or_else(|err| panic!("{instruction} is not in exec form ({err}): {line}"))
}

/// The value of the last `ENV NAME=value` of the Dockerfile.
fn env_value(dockerfile: &str, name: &str) -> String {
    dockerfile
        .lines()
        .rev()
        .find_map(|line| {
            line.strip_prefix("ENV ")?
                .trim()
                .strip_prefix(name)?
                .strip_prefix('=')
        })
        .unwrap_or_else(|| panic!("no ENV {name}= in the Dockerfile"))
        .trim()
        .to_owned()
}

/// Every `(path, port)` of the manifest's `httpGet` probes.
fn probes(manifest: &str) -> Vec<(String, u16)> {
    let lines: Vec<&str> = manifest.lines().map(str::trim).collect();
    lines
        .iter()
        .enumerate()
        .filter(|(_, line)| **line == "httpGet:")
        .map(|(i, _)| {
            let field = |name: &str| {
                lines[i + 1..i + 3]
                    .iter()
                    .find_map(|l| l.strip_prefix(name))
                    .unwrap_or_else(|| panic!("an httpGet probe without {name}"))
                    .trim()
                    .to_owned()
            };
            (field("path:"), field("port:").parse().unwrap())
        })
        .collect()
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sidecar-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a secret file with mode 0400, as the manifest's copy step does.
fn secret(dir: &Path, name: &str, value: &str) {
    let path = dir.join(name);
    fs::write(&path, value).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
}

/// One HTTP/1.1 request (`Connection: close`): status and body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw}"));
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Kills the daemon when the test ends, however it ends.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_images_command_serves_healthz_where_the_manifest_probes_it() {
    let dockerfile = read("Dockerfile");
    let manifest = read("deploy/kubernetes/agent-with-trustos.yaml");
    let entrypoint = exec_form(&dockerfile, "ENTRYPOINT");
    let cmd = exec_form(&dockerfile, "CMD");
    assert_eq!(entrypoint, ["trustos"], "the image's entrypoint");
    let home_in_image = env_value(&dockerfile, "TRUSTOS_HOME");
    assert_eq!(home_in_image, "/var/lib/trustos");

    // The listen address of CMD, its port the one the image exposes and the probes use.
    let listen_at = cmd.iter().position(|a| a == "--listen").unwrap() + 1;
    let (host, port) = cmd[listen_at].rsplit_once(':').unwrap();
    assert_eq!(host, "0.0.0.0", "the front must be reachable on the pod IP");
    let exposed = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("EXPOSE "))
        .unwrap()
        .trim();
    assert_eq!(port, exposed);
    let probes = probes(&manifest);
    assert_eq!(probes.len(), 2, "a readiness and a liveness probe");
    for (path, probe_port) in &probes {
        assert_eq!(path, "/healthz");
        assert_eq!(probe_port.to_string(), exposed);
    }
    // The manifest's home: the same TRUSTOS_HOME, gateway.toml from the ConfigMap, the secrets
    // under it, and `trustos init` as the init container.
    assert!(manifest.contains(&format!("value: {home_in_image}")));
    assert!(manifest.contains(&format!("mountPath: {home_in_image}/gateway.toml")));
    assert!(manifest.contains(&format!("mountPath: {home_in_image}/secrets")));
    assert!(manifest.contains(r#"args: ["init"]"#));

    let dir = scratch("healthz");
    let home = dir.join("trustos");
    fs::create_dir_all(home.join("secrets")).unwrap();
    fs::copy(
        repo("deploy/kubernetes/gateway.toml"),
        home.join("gateway.toml"),
    )
    .unwrap();
    let secrets = home.join("secrets");
    secret(&secrets, "x402.key", &"4c".repeat(32));
    secret(&secrets, "circle-api-key", "TEST_API_KEY:sidecar:test");
    secret(&secrets, "circle-entity-secret", &"ab".repeat(32));
    let bin = env!("CARGO_BIN_EXE_trustos");
    let init = Command::new(bin)
        .arg("init")
        .env("TRUSTOS_HOME", &home)
        .output()
        .unwrap();
    assert!(init.status.success(), "trustos init: {init:?}");
    let again = Command::new(bin)
        .args(["init", "--json"])
        .env("TRUSTOS_HOME", &home)
        .output()
        .unwrap();
    assert!(again.status.success(), "trustos init again: {again:?}");
    let report: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        report["created"],
        serde_json::json!([]),
        "init is a no-op the second time"
    );
    let kid = report["kid"].as_str().unwrap().to_owned();

    // ENTRYPOINT + CMD exactly, but port 0 (the daemon prints the port it bound).
    let mut args: Vec<String> = cmd.clone();
    args[listen_at] = format!("{host}:0");
    let mut child = Command::new(bin)
        .args(&args)
        .env("TRUSTOS_HOME", &home)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let daemon = Daemon(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + TIMEOUT;
    let bound = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("trustos serve did not get ready");
        if let Some(rest) = line.split_once(" and http://").map(|(_, rest)| rest) {
            break rest.trim_end_matches("/mcp/NAME").to_owned();
        }
    };
    let bound_port = bound.rsplit_once(':').unwrap().1.to_owned();
    assert!(bound.starts_with("0.0.0.0:"), "{bound}");
    let addr = format!("127.0.0.1:{bound_port}");

    // The probe: 200 with the gateway's key id and the generation.
    let (status, body) = request(&addr, "GET", "/healthz", &[]);
    assert_eq!(status, 200, "{body}");
    let health: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["kid"], kid.as_str());
    assert!(health["generation"].is_u64(), "{health}");
    assert_eq!(health.as_object().unwrap().len(), 3, "{health}");
    for value in [&"4c".repeat(32), "TEST_API_KEY", &"ab".repeat(32)] {
        assert!(!body.contains(value), "a secret in the health answer");
    }

    // The front's other checks still hold on the health route…
    let (status, _) = request(&addr, "POST", "/healthz", &[("Content-Length", "0")]);
    assert_eq!(status, 405);
    let (status, _) = request(
        &addr,
        "GET",
        "/healthz",
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(status, 403);
    let (status, _) = request(
        &addr,
        "GET",
        "/healthz",
        &[("Origin", "http://localhost:3000")],
    );
    assert_eq!(status, 200);
    let (status, _) = request(&addr, "HEAD", "/healthz", &[]);
    assert_eq!(status, 200);
    // …and every other route still needs a token.
    let (status, _) = request(
        &addr,
        "POST",
        "/rails/circle/transfers",
        &[("Content-Length", "0")],
    );
    assert_eq!(status, 401);
    drop(daemon);
    let _ = fs::remove_dir_all(&dir);
}
