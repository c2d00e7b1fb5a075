//! `trustos onboard HOST` and `trustos audit hosts` end to end, against checked-in host configs
//! written as a new user would have them (`tests/fixtures/hosts/<host>/`, laid out as a
//! filesystem: `home/user/…` is `$HOME`, `project/` the project directory).
//!
//! For every host: the audit fails (exit 1) → `--dry-run` prints a diff and writes nothing →
//! onboard → the audit passes (exit 0) → onboarding again changes nothing → `--undo` restores
//! the original byte for byte → the audit fails again. Then the bad inputs, the payment
//! credential warning, `--undo` refusing to drop edits made after onboarding (unless `--force`),
//! and `$CODEX_HOME`. Each test works in its own copy under `CARGO_TARGET_TMPDIR`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_trustos");
const HOME: &str = "/home/user";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts")
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh root: the fixture of `host` (if any) copied, plus `project/` and a Trust OS home.
fn root(test: &str, host: Option<&str>) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "onboard-{test}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(root.join("project")).unwrap();
    fs::create_dir_all(root.join("home/user")).unwrap();
    if let Some(host) = host {
        copy_dir(&fixtures().join(host), &root);
    }
    root
}

fn run(root: &Path, home: &str, args: &[&str]) -> Output {
    run_with(root, home, None, args)
}

/// Runs `trustos` with `HOME` and, when given, `CODEX_HOME` set on the child only (the test
/// process's own environment is never changed).
fn run_with(root: &Path, home: &str, codex_home: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .current_dir(root.join("project"))
        .env("HOME", home)
        .env_remove("TRUSTOS_HOME")
        .env_remove("CODEX_HOME");
    if let Some(codex_home) = codex_home {
        command.env("CODEX_HOME", codex_home);
    }
    command.output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn audit(root: &Path) -> Output {
    run(
        root,
        HOME,
        &["audit", "hosts", "--root", root.to_str().unwrap()],
    )
}

fn trustos_home(root: &Path) -> String {
    root.join("trustos").display().to_string()
}

/// Onboards `host` through `files` (each with `--config`, or none: found under `$HOME` and the
/// project) and checks the whole round trip. Returns the onboarded texts.
fn round_trip(host: &str, files: &[&str], use_config: bool) -> Vec<String> {
    let root = root(host, Some(host));
    let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
    let originals: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    let home = trustos_home(&root);
    let user_home = root.join("home/user").display().to_string();

    let before = audit(&root);
    assert_eq!(before.status.code(), Some(1), "{}", text(&before));
    let listed = String::from_utf8_lossy(&before.stdout);
    assert!(listed.contains("BYPASS"), "{listed}");
    assert!(listed.contains(host), "{listed}");

    let onboard = |extra: &[&str]| -> Vec<Output> {
        if use_config {
            paths
                .iter()
                .map(|path| {
                    let mut args = vec!["onboard", host, "--config", path.to_str().unwrap()];
                    args.extend(["--home", home.as_str()]);
                    args.extend(extra);
                    run(&root, &user_home, &args)
                })
                .collect()
        } else {
            let mut args = vec!["onboard", host, "--home", home.as_str()];
            args.extend(extra);
            vec![run(&root, &user_home, &args)]
        }
    };

    // --dry-run: a diff, nothing written.
    for output in onboard(&["--dry-run"]) {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(out.contains("@@ -"), "{out}");
        assert!(out.contains("+") && out.contains("trustos"), "{out}");
    }
    for (path, original) in paths.iter().zip(&originals) {
        assert_eq!(
            &fs::read(path).unwrap(),
            original,
            "dry run wrote {}",
            path.display()
        );
    }
    assert!(!Path::new(&home).join("gateway.toml").exists());

    // Onboard.
    for output in onboard(&[]) {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    let onboarded: Vec<Vec<u8>> = paths.iter().map(|p| fs::read(p).unwrap()).collect();
    for ((path, original), now) in paths.iter().zip(&originals).zip(&onboarded) {
        assert_ne!(original, now, "{} unchanged", path.display());
        let mut backup = path.as_os_str().to_owned();
        backup.push(".trustos-backup");
        assert_eq!(&fs::read(&backup).unwrap(), original);
        let now = String::from_utf8(now.clone()).unwrap();
        assert!(
            now.contains(&format!("\"--home\", \"{home}\"")) || now.contains("/mcp/"),
            "{now}"
        );
    }
    let after = audit(&root);
    assert_eq!(after.status.code(), Some(0), "{}", text(&after));
    assert!(!String::from_utf8_lossy(&after.stdout).contains("BYPASS"));
    let gateway = fs::read(Path::new(&home).join("gateway.toml")).ok();

    // Again: nothing changes.
    for output in onboard(&[]) {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("ONBOARD_ALREADY_WRAPPED"),
            "{}",
            text(&output)
        );
    }
    for (path, now) in paths.iter().zip(&onboarded) {
        assert_eq!(
            &fs::read(path).unwrap(),
            now,
            "second run changed {}",
            path.display()
        );
    }
    assert_eq!(
        fs::read(Path::new(&home).join("gateway.toml")).ok(),
        gateway
    );

    // Undo: byte for byte.
    for output in onboard(&["--undo"]) {
        assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    }
    for (path, original) in paths.iter().zip(&originals) {
        assert_eq!(
            &fs::read(path).unwrap(),
            original,
            "undo of {}",
            path.display()
        );
    }
    let again = audit(&root);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));

    onboarded
        .into_iter()
        .map(|bytes| String::from_utf8(bytes).unwrap())
        .collect()
}

/// Every line of `before` that does not mention a changed value is still in `after`.
fn keeps_lines(before: &str, after: &str, changed: &[&str]) {
    for line in before.split_inclusive('\n') {
        if changed.iter().any(|c| line.contains(c)) {
            continue;
        }
        assert!(after.contains(line), "lost line {line:?} in:\n{after}");
    }
}

fn fixture_text(host: &str, file: &str) -> String {
    fs::read_to_string(fixtures().join(host).join(file)).unwrap()
}

#[test]
fn claude_desktop_round_trip() {
    let file = "home/user/Library/Application Support/Claude/claude_desktop_config.json";
    let [now] = &round_trip("claude-desktop", &[file], true)[..] else {
        panic!()
    };
    keeps_lines(
        &fixture_text("claude-desktop", file),
        now,
        &["\"command\"", "\"args\": [\"mcp-weather\"", "\"url\""],
    );
    // No HTTP in Claude Desktop's file: the URL server goes through the shim's --url.
    assert!(
        now.contains("\"--url\", \"https://notes.example.com/mcp\""),
        "{now}"
    );
    assert!(
        now.contains("\"--\",\n        \"npx\",\n        \"-y\""),
        "{now}"
    );
    assert!(now.contains("\"WEATHER_API_KEY\": \"wk_3f9a1c\""));
}

#[test]
fn claude_code_round_trip_finds_project_and_user_files() {
    let files = ["project/.mcp.json", "home/user/.claude.json"];
    let texts = round_trip("claude-code", &files, false);
    assert!(
        texts[0].contains("\"url\": \"http://127.0.0.1:8790/mcp/sentry\""),
        "{}",
        texts[0]
    );
    assert!(texts[0].contains("\"headers\": {\"Authorization\": \"Bearer tos_"));
    // Per-project servers in ~/.claude.json are onboarded too.
    assert!(
        texts[1].contains("\"--server\", \"postgres\", \"--\", \"docker\", \"run\""),
        "{}",
        texts[1]
    );
    keeps_lines(
        &fixture_text("claude-code", files[1]),
        &texts[1],
        &["\"command\"", "\"args\": [\"run\""],
    );
}

#[test]
fn cursor_round_trip_keeps_crlf_and_unicode() {
    let file = "home/user/.cursor/mcp.json";
    let [now] = &round_trip("cursor", &[file], true)[..] else {
        panic!()
    };
    let before = fixture_text("cursor", file);
    assert!(
        !now.replace("\r\n", "").contains('\n'),
        "a bare LF crept in"
    );
    keeps_lines(
        &before,
        now,
        &["\"command\"", "\"args\": [\"-y\"", "\"url\""],
    );
    assert!(now.contains("\"b\\u00fcro-dateien\": {"));
    assert!(now.contains("/Users/zoë/Projekte ✓"));
    assert!(
        now.contains("\"--\",\r\n                \"docker\",\r\n                \"run\""),
        "{now:?}"
    );
}

#[test]
fn codex_round_trip_keeps_comments() {
    let file = "home/user/.codex/config.toml";
    let [now] = &round_trip("codex", &[file], true)[..] else {
        panic!()
    };
    keeps_lines(
        &fixture_text("codex", file),
        now,
        &["command =", "\"run\", \"-i\"", "args = [\"-y\"", "url ="],
    );
    assert!(
        now.contains("url = \"http://127.0.0.1:8790/mcp/docs\" # no auth needed"),
        "{now}"
    );
    assert!(
        now.contains("http_headers = { Authorization = \"Bearer tos_"),
        "{now}"
    );
}

#[test]
fn openclaw_round_trip_accepts_json5_comments() {
    let file = "home/user/.openclaw/openclaw.json";
    let [now] = &round_trip("openclaw", &[file], true)[..] else {
        panic!()
    };
    keeps_lines(
        &fixture_text("openclaw", file),
        now,
        &["\"command\"", "\"args\""],
    );
}

#[test]
fn vscode_round_trip() {
    let file = "project/.vscode/mcp.json";
    let [now] = &round_trip("vscode", &[file], true)[..] else {
        panic!()
    };
    keeps_lines(
        &fixture_text("vscode", file),
        now,
        &["\"command\"", "\"args\"", "\"url\""],
    );
    assert!(
        now.contains("\t\t\t\"headers\": {\"Authorization\""),
        "{now}"
    );
}

#[test]
fn windsurf_round_trip_uses_server_url() {
    let file = "home/user/.codeium/windsurf/mcp_config.json";
    let [now] = &round_trip("windsurf", &[file], true)[..] else {
        panic!()
    };
    keeps_lines(
        &fixture_text("windsurf", file),
        now,
        &["\"command\"", "\"args\"", "\"serverUrl\""],
    );
    assert!(
        now.contains("\"serverUrl\": \"http://127.0.0.1:8790/mcp/deepwiki\""),
        "{now}"
    );
}

#[test]
fn url_servers_move_into_gateway_toml() {
    let root = root("gateway-toml", Some("cursor"));
    let file = root.join("home/user/.cursor/mcp.json");
    let home = trustos_home(&root);
    let output = run(
        &root,
        HOME,
        &[
            "onboard",
            "cursor",
            "--config",
            file.to_str().unwrap(),
            "--home",
            &home,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let gateway = fs::read_to_string(Path::new(&home).join("gateway.toml")).unwrap();
    assert!(
        gateway.contains("[servers.linear]\nurl = \"https://mcp.linear.app/mcp\""),
        "{gateway}"
    );
    assert!(gateway.contains("listen = \"127.0.0.1:8790\""), "{gateway}");
    assert!(gateway.contains("token_sha256 = \"sha256:"), "{gateway}");
    // The token the host presents is only in the host's file, never in gateway.toml.
    let host = fs::read_to_string(&file).unwrap();
    let token = host
        .split("Bearer ")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert!(!gateway.contains(token));
}

fn write(root: &Path, rel: &str, content: &str) -> PathBuf {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, content).unwrap();
    path
}

fn onboard_file(root: &Path, host: &str, path: &Path) -> Output {
    let home = trustos_home(root);
    run(
        root,
        HOME,
        &[
            "onboard",
            host,
            "--config",
            path.to_str().unwrap(),
            "--home",
            &home,
        ],
    )
}

#[test]
fn bad_inputs_are_refused_with_codes_and_nothing_is_written() {
    let root = root("bad", None);
    let cases: [(&str, &str, &str, &str); 7] = [
        (
            "cursor",
            "a.json",
            "{\"mcpServers\": {\"x\": {\"command\": \"npx\",}",
            "ONBOARD_CONFIG_INVALID",
        ),
        (
            "codex",
            "c.toml",
            "[mcp_servers.x]\ncommand = \"npx\"\ncommand = \"y\"\n",
            "ONBOARD_CONFIG_INVALID",
        ),
        (
            "cursor",
            "b.json",
            "{\"mcpServers\": {\"x\": {\"args\": [\"-y\"]}}}",
            "ONBOARD_SERVER_INCOMPLETE",
        ),
        (
            "cursor",
            "d.json",
            "{\"mcpServers\": {\"x\": {\"url\": \"https://a/mcp\", \"headers\": {\"Authorization\": \"Bearer sk_live_1\"}}}}",
            "ONBOARD_SECRET_INLINE",
        ),
        (
            "vscode",
            "e.json",
            "{\"servers\": {\"x\": {\"type\": \"http\", \"url\": \"https://a/mcp\", \"headers\": {\"Authorization\": \"Bearer ${input:token}\"}}}}",
            "ONBOARD_UPSTREAM_HEADERS",
        ),
        (
            "claude-desktop",
            "g.json",
            "{\"mcpServers\": {\"x\": {\"url\": \"https://a/mcp\", \"headers\": {\"X-Team\": \"core\"}}}}",
            "ONBOARD_UPSTREAM_HEADERS",
        ),
        (
            "vscode",
            "f.json",
            "{\"servers\": [1, 2]}",
            "ONBOARD_CONFIG_INVALID",
        ),
    ];
    for (host, name, content, code) in cases {
        let path = write(&root, name, content);
        let output = onboard_file(&root, host, &path);
        assert_eq!(output.status.code(), Some(1), "{name}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(code),
            "{name}: {}",
            text(&output)
        );
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            content,
            "{name} was changed"
        );
        assert!(!root.join(format!("{name}.trustos-backup")).exists());
    }
    assert!(
        !Path::new(&trustos_home(&root))
            .join("gateway.toml")
            .exists()
    );

    // An entry already wrapped: recognized, left alone, exit 0.
    let wrapped = "{\n  \"mcpServers\": {\n    \"x\": {\"command\": \"trustos\", \"args\": [\"mcp\", \"--server\", \"x\", \"--\", \"npx\"]}\n  }\n}\n";
    let path = write(&root, "wrapped.json", wrapped);
    let output = onboard_file(&root, "cursor", &path);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ONBOARD_ALREADY_WRAPPED"));
    assert_eq!(fs::read_to_string(&path).unwrap(), wrapped);

    // Undo without a backup.
    let output = run(
        &root,
        HOME,
        &[
            "onboard",
            "cursor",
            "--undo",
            "--config",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ONBOARD_NO_BACKUP"));

    // No config anywhere: a usage error.
    let output = run(
        &root,
        &root.join("home/user").display().to_string(),
        &["onboard", "windsurf"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ONBOARD_NO_CONFIG"));
    // An unknown host: a usage error.
    assert_eq!(
        run(&root, HOME, &["onboard", "notepad"]).status.code(),
        Some(2)
    );
}

#[cfg(unix)]
#[test]
fn a_read_only_file_is_left_untouched() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = root("readonly", None);
    let content = "{\"mcpServers\": {\"x\": {\"command\": \"npx\"}}}";
    let path = write(&root, "ro.json", content);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o444)).unwrap();
    let output = onboard_file(&root, "cursor", &path);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("ONBOARD_READ_ONLY"),
        "{}",
        text(&output)
    );
    assert_eq!(fs::read_to_string(&path).unwrap(), content);
    assert!(!root.join("ro.json.trustos-backup").exists());
}

#[test]
fn payment_credentials_are_named_never_shown() {
    let root = root("credentials", None);
    let key = format!("0x{}", "4c".repeat(32));
    let content = format!(
        "{{\n  \"mcpServers\": {{\n    \"payer\": {{\n      \"command\": \"npx\",\n      \"args\": [\"x402-mcp\"],\n      \"env\": {{\n        \"WALLET_PRIVATE_KEY\": \"{key}\",\n        \"CIRCLE_API_KEY\": \"TEST_API_KEY:abc:def\",\n        \"LOG\": \"debug\"\n      }}\n    }}\n  }}\n}}\n"
    );
    let path = write(&root, "home/user/.cursor/mcp.json", &content);

    let output = audit(&root);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let report = text(&output);
    assert!(
        report.contains("WALLET_PRIVATE_KEY") && report.contains("CIRCLE_API_KEY"),
        "{report}"
    );
    assert!(
        !report.contains(&key) && !report.contains("TEST_API_KEY:abc"),
        "{report}"
    );
    assert!(!report.contains("LOG ("));

    let output = onboard_file(&root, "cursor", &path);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ONBOARD_PAYMENT_CREDENTIAL"), "{stderr}");
    assert!(
        stderr.contains("WALLET_PRIVATE_KEY") && stderr.contains("[x402] key_env"),
        "{stderr}"
    );
    assert!(
        stderr.contains("CIRCLE_API_KEY") && stderr.contains("[circle] api_key_env"),
        "{stderr}"
    );
    assert!(!stderr.contains(&key) && !stderr.contains("TEST_API_KEY:abc"));
    // The env is left as it was (onboard never moves secrets by itself)…
    assert!(fs::read_to_string(&path).unwrap().contains(&key));
    // …so the audit still fails: the server is wrapped but holds a payment credential.
    let output = run(
        &root,
        HOME,
        &["audit", "hosts", "--json", "--root", root.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["bypassing"], 0);
    assert_eq!(json["credentials"], 2);
    assert_eq!(json["servers"][0]["gateway"], true);
    assert_eq!(
        json["servers"][0]["credentials"][0]["variable"],
        "WALLET_PRIVATE_KEY"
    );
}

#[test]
fn audit_usage_errors_and_an_empty_machine() {
    let root = root("audit-empty", None);
    let output = audit(&root);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("no agent host config found"));
    let missing = root.join("nope");
    let output = run(
        &root,
        HOME,
        &["audit", "hosts", "--root", missing.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert_eq!(
        run(&root, HOME, &["audit", "hosts", "--bogus"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn gateway_toml_conflicts_and_errors_write_nothing() {
    let root = root("gateway-conflict", Some("cursor"));
    let file = root.join("home/user/.cursor/mcp.json");
    let original = fs::read(&file).unwrap();
    let home = Path::new(&trustos_home(&root)).to_path_buf();
    fs::create_dir_all(&home).unwrap();
    let taken = "[servers.linear]\nurl = \"https://elsewhere.example/mcp\"\n";
    fs::write(home.join("gateway.toml"), taken).unwrap();
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ONBOARD_SERVER_CONFLICT"));
    assert_eq!(fs::read(&file).unwrap(), original);
    assert_eq!(
        fs::read_to_string(home.join("gateway.toml")).unwrap(),
        taken
    );

    fs::write(home.join("gateway.toml"), "[gateway]\nlisten_addr = 1\n").unwrap();
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("ONBOARD_GATEWAY_CONFIG"));
    assert_eq!(fs::read(&file).unwrap(), original);
}

#[test]
fn audit_reports_an_unreadable_config() {
    let root = root("audit-unreadable", None);
    write(
        &root,
        "home/user/.codeium/windsurf/mcp_config.json",
        "{\"mcpServers\": {",
    );
    let output = audit(&root);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("UNREADABLE"),
        "{}",
        text(&output)
    );
}

/// A URL server's own headers move into `gateway.toml` with its URL, environment references
/// kept as `${env:NAME}` (the daemon resolves them), so nothing is lost and no secret is copied:
/// Cursor's `headers` and Codex's `bearer_token_env_var` / `env_http_headers` / `http_headers`.
#[test]
fn url_servers_headers_move_into_gateway_toml() {
    let root = root("headers", None);
    let cursor = write(
        &root,
        "cursor.json",
        "{\n  \"mcpServers\": {\n    \"docs\": {\n      \"url\": \"https://docs.example/mcp\",\n      \"headers\": {\"Authorization\": \"Bearer ${env:DOCS_TOKEN}\", \"X-Team\": \"core\"}\n    }\n  }\n}\n",
    );
    let onboarded = onboard_file(&root, "cursor", &cursor);
    assert_eq!(onboarded.status.code(), Some(0), "{}", text(&onboarded));
    let host_text = fs::read_to_string(&cursor).unwrap();
    assert!(!host_text.contains("DOCS_TOKEN"), "{host_text}");
    assert!(!host_text.contains("docs.example"), "{host_text}");

    let codex = write(
        &root,
        "config.toml",
        "# my codex\n[mcp_servers.issues]\nurl = \"https://issues.example/mcp\"\nbearer_token_env_var = \"ISSUES_TOKEN\"\nenv_http_headers = { \"X-Org\" = \"ORG_ID\" }\n",
    );
    let onboarded = onboard_file(&root, "codex", &codex);
    assert_eq!(onboarded.status.code(), Some(0), "{}", text(&onboarded));
    let host_text = fs::read_to_string(&codex).unwrap();
    assert!(host_text.starts_with("# my codex\n"), "{host_text}");
    assert!(
        !host_text.contains("ISSUES_TOKEN") && !host_text.contains("ORG_ID"),
        "{host_text}"
    );

    let gateway: toml::Table =
        fs::read_to_string(Path::new(&trustos_home(&root)).join("gateway.toml"))
            .unwrap()
            .parse()
            .unwrap();
    let servers = gateway["servers"].as_table().unwrap();
    let docs = servers["docs"].as_table().unwrap();
    assert_eq!(docs["url"].as_str(), Some("https://docs.example/mcp"));
    assert_eq!(
        docs["headers"]["Authorization"].as_str(),
        Some("Bearer ${env:DOCS_TOKEN}")
    );
    assert_eq!(docs["headers"]["X-Team"].as_str(), Some("core"));
    let issues = servers["issues"].as_table().unwrap();
    assert_eq!(
        issues["headers"]["Authorization"].as_str(),
        Some("Bearer ${env:ISSUES_TOKEN}")
    );
    assert_eq!(issues["headers"]["X-Org"].as_str(), Some("${env:ORG_ID}"));

    // `--undo` gives the host files back byte for byte; the gateway keeps serving the upstreams.
    for (host, path) in [("cursor", &cursor), ("codex", &codex)] {
        let home = trustos_home(&root);
        let undo = run(
            &root,
            HOME,
            &[
                "onboard",
                host,
                "--undo",
                "--config",
                path.to_str().unwrap(),
                "--home",
                &home,
            ],
        );
        assert_eq!(undo.status.code(), Some(0), "{}", text(&undo));
    }
    assert!(
        fs::read_to_string(&cursor)
            .unwrap()
            .contains("${env:DOCS_TOKEN}")
    );
    assert!(fs::read_to_string(&codex).unwrap().contains("ISSUES_TOKEN"));
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn undo_file(root: &Path, host: &str, path: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "onboard",
        host,
        "--undo",
        "--config",
        path.to_str().unwrap(),
    ];
    args.extend(extra);
    run(root, HOME, &args)
}

/// A file edited after onboarding: `--undo` (and `--undo --dry-run`) refuse with exit 1 and
/// write nothing; `--force` without `--undo` is a usage error; `--undo --force` restores the
/// original byte for byte.
#[test]
fn undo_refuses_to_drop_later_edits_unless_forced() {
    let root = root("undo-edited", Some("cursor"));
    let file = root.join("home/user/.cursor/mcp.json");
    let backup = sibling(&file, ".trustos-backup");
    let record = sibling(&file, ".trustos-written");
    let original = fs::read(&file).unwrap();
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let onboarded = fs::read(&file).unwrap();
    assert_ne!(onboarded, original);
    assert!(
        fs::read_to_string(&record).unwrap().starts_with("sha256:"),
        "no record of what onboard wrote"
    );

    // The user edits the onboarded file.
    let mut edited = onboarded.clone();
    edited.extend_from_slice(b"\r\n");
    fs::write(&file, &edited).unwrap();

    let output = undo_file(&root, "cursor", &file, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ONBOARD_EDITED_AFTER_ONBOARD"), "{stderr}");
    assert!(stderr.contains(file.to_str().unwrap()), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(fs::read(&file).unwrap(), edited, "a refused undo wrote");
    assert_eq!(fs::read(&backup).unwrap(), original, "the backup moved");
    assert!(record.exists());

    // The dry run shows what undo would restore, and that it would refuse.
    let output = undo_file(&root, "cursor", &file, &["--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("(restored)") && stdout.contains("@@ -"),
        "{stdout}"
    );
    assert!(stdout.contains("would refuse"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("ONBOARD_EDITED_AFTER_ONBOARD"),
        "{}",
        text(&output)
    );
    assert_eq!(fs::read(&file).unwrap(), edited);
    assert_eq!(fs::read(&backup).unwrap(), original);

    // --force alone is a usage error and writes nothing.
    let output = onboard_file_with(&root, "cursor", &file, &["--force"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--undo"),
        "{}",
        text(&output)
    );
    assert_eq!(fs::read(&file).unwrap(), edited);

    // --undo --force: the original, byte for byte; backup and record gone.
    let output = undo_file(&root, "cursor", &file, &["--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(fs::read(&file).unwrap(), original);
    assert!(!backup.exists());
    assert!(!record.exists());
}

fn onboard_file_with(root: &Path, host: &str, path: &Path, extra: &[&str]) -> Output {
    let home = trustos_home(root);
    let mut args = vec![
        "onboard",
        host,
        "--config",
        path.to_str().unwrap(),
        "--home",
        &home,
    ];
    args.extend(extra);
    run(root, HOME, &args)
}

/// An unchanged file undoes without `--force` and without a warning; `--undo --dry-run` shows
/// the restore and writes nothing; a backup from before records existed undoes with a warning.
#[test]
fn undo_of_an_unchanged_file_and_of_an_old_backup() {
    let root = root("undo-unchanged", Some("cursor"));
    let file = root.join("home/user/.cursor/mcp.json");
    let record = sibling(&file, ".trustos-written");
    let original = fs::read(&file).unwrap();
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let onboarded = fs::read(&file).unwrap();

    let output = undo_file(&root, "cursor", &file, &["--dry-run"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("would restore it from"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with('-') && line.contains("\"command\": \"trustos\"")),
        "{stdout}"
    );
    assert_eq!(fs::read(&file).unwrap(), onboarded, "the dry run wrote");

    let output = undo_file(&root, "cursor", &file, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(output.stderr.is_empty(), "{}", text(&output));
    assert_eq!(fs::read(&file).unwrap(), original);
    assert!(!record.exists());

    // A backup made by a version without the record: undo cannot tell, warns, restores.
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    fs::remove_file(&record).unwrap();
    fs::write(&file, b"{\"mcpServers\": {}}\n").unwrap();
    let output = undo_file(&root, "cursor", &file, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("cannot be detected"),
        "{}",
        text(&output)
    );
    assert_eq!(fs::read(&file).unwrap(), original);
}

/// Onboarding again after an edit keeps the first backup, which lacks the edit: the record says
/// so and undo asks for `--force` even though the file is what onboard last wrote.
#[test]
fn undo_after_onboarding_an_edited_file_again_needs_force() {
    let root = root("undo-reonboard", None);
    let first = "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"npx\"}\n  }\n}\n";
    let file = write(&root, "mcp.json", first);
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let edited = fs::read_to_string(&file)
        .unwrap()
        .replace("\n  }\n}", ",\n    \"b\": {\"command\": \"uvx\"}\n  }\n}");
    fs::write(&file, &edited).unwrap();
    let output = onboard_file(&root, "cursor", &file);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("will ask for --force"),
        "{}",
        text(&output)
    );
    let again = fs::read(&file).unwrap();
    assert!(String::from_utf8_lossy(&again).contains("\"uvx\""));

    let output = undo_file(&root, "cursor", &file, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("ONBOARD_EDITED_AFTER_ONBOARD"),
        "{}",
        text(&output)
    );
    assert_eq!(fs::read(&file).unwrap(), again);
    let output = undo_file(&root, "cursor", &file, &["--force"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(fs::read_to_string(&file).unwrap(), first);
}

/// `$CODEX_HOME/config.toml` is Codex's user config when `CODEX_HOME` is set and non-empty:
/// the audit reads it (under `--root` too) instead of `~/.codex/config.toml`, onboard finds and
/// rewrites it, and `--config` still wins.
#[test]
fn codex_home_is_honoured_by_audit_and_onboard() {
    let root = root("codex-home", None);
    let user_home = root.join("home/user").display().to_string();
    let codex_home = root.join("codex-home");
    let config = write(
        &root,
        "codex-home/config.toml",
        &fixture_text("codex", "home/user/.codex/config.toml"),
    );
    let original = fs::read(&config).unwrap();
    let decoy_text = "[mcp_servers.decoy]\ncommand = \"npx\"\n";
    let decoy = write(&root, "home/user/.codex/config.toml", decoy_text);
    let codex_home_arg = codex_home.to_str().unwrap();

    // Audit, no --root: $CODEX_HOME is read, ~/.codex is not.
    let output = run_with(
        &root,
        &user_home,
        Some(codex_home_arg),
        &["audit", "hosts", "--json"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["files"], serde_json::json!([config.to_str().unwrap()]));
    assert!(!text(&output).contains("decoy"), "{}", text(&output));
    // Empty CODEX_HOME: the default again.
    let output = run_with(&root, &user_home, Some(""), &["audit", "hosts"]);
    assert!(text(&output).contains("decoy"), "{}", text(&output));
    assert!(!text(&output).contains("github"), "{}", text(&output));
    // --root: $CODEX_HOME resolved under the root, like $HOME.
    let output = run_with(
        &root,
        HOME,
        Some("/codex-home"),
        &["audit", "hosts", "--root", root.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains(config.to_str().unwrap()),
        "{}",
        text(&output)
    );
    assert!(!text(&output).contains("decoy"), "{}", text(&output));

    // Onboard finds $CODEX_HOME/config.toml and leaves ~/.codex alone.
    let home = trustos_home(&root);
    let output = run_with(
        &root,
        &user_home,
        Some(codex_home_arg),
        &["onboard", "codex", "--home", &home],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let onboarded = fs::read_to_string(&config).unwrap();
    assert!(onboarded.contains("command = \"trustos\""), "{onboarded}");
    assert_eq!(
        fs::read(sibling(&config, ".trustos-backup")).unwrap(),
        original
    );
    assert_eq!(fs::read_to_string(&decoy).unwrap(), decoy_text);
    let output = run_with(&root, &user_home, Some(codex_home_arg), &["audit", "hosts"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));

    // --config wins over $CODEX_HOME.
    let output = run_with(
        &root,
        &user_home,
        Some(codex_home_arg),
        &[
            "onboard",
            "codex",
            "--config",
            decoy.to_str().unwrap(),
            "--home",
            &home,
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_ne!(fs::read_to_string(&decoy).unwrap(), decoy_text);

    // A CODEX_HOME without a config: onboard says where it looked.
    let empty = root.join("empty-codex-home");
    fs::create_dir_all(&empty).unwrap();
    let output = run_with(
        &root,
        &user_home,
        Some(empty.to_str().unwrap()),
        &["onboard", "codex"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    assert!(
        text(&output).contains(empty.join("config.toml").to_str().unwrap()),
        "{}",
        text(&output)
    );
}
