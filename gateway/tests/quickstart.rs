//! `trustos quickstart` end to end, as a newcomer runs it: the built binary, no setup, its own
//! temp directory (`TMPDIR`, so the throwaway home lands where the test can see it).
//!
//! Checked: exit 0 well within 60 s; the output tells the three outcomes (a paid call paid once
//! through x402 with a receipt, a call denied with a `BUDGET_…` code and its remediation, a
//! deploy held then approved with the operator key and receipted) and ends with "receipt
//! verified offline" and the commands to try next; afterwards the throwaway home is gone and no
//! process it started remains. A run interrupted with SIGINT while everything is up (the deploy
//! held, the tool server running) also removes the home and leaves nothing running.
//!
//! "Nothing running" is checked through the environment: every process the quickstart starts
//! inherits its `TMPDIR`, a directory unique to the test, so any process whose
//! `/proc/PID/environ` names it was started by that run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_trustos");
/// The bound for a built binary.
const LIMIT: Duration = Duration::from_secs(60);

/// A directory unique to one test, used as the quickstart's `TMPDIR`.
fn tmpdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("quickstart-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quickstart(tmp: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("quickstart")
        .args(extra)
        .env("TMPDIR", tmp)
        .env_remove("TRUSTOS_HOME")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Processes (other than `except`) whose environment holds `TMPDIR=<tmp>`.
fn started_by(tmp: &Path, except: Option<u32>) -> Vec<(u32, String)> {
    let marker = format!("TMPDIR={}", tmp.display());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if Some(pid) == except {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ
            .split(|b| *b == 0)
            .any(|var| var == marker.as_bytes())
        {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // A zombie has exited; only its parent's wait is missing.
            if state
                .rsplit(") ")
                .next()
                .is_some_and(|s| s.starts_with('Z'))
            {
                continue;
            }
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Waits up to 5 s for every process the run started to be gone.
#[track_caller]
fn assert_nothing_left(tmp: &Path) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = started_by(tmp, None);
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still running: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[track_caller]
fn assert_home_removed(tmp: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left in the temp directory: {left:?}");
}

/// Waits for `child` at most `limit`; kills it and fails past that.
fn wait_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("trustos quickstart did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn quickstart_pays_denies_holds_verifies_and_leaves_nothing_behind() {
    let tmp = tmpdir("run");
    let started = Instant::now();
    let mut child = quickstart(&tmp, &[]).spawn().unwrap();
    let status = wait_within(&mut child, LIMIT);
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(elapsed < LIMIT, "{elapsed:?}");

    // 1. Paid once through x402, answered, receipted.
    assert!(
        stdout.contains("paid 0.01 USDC") && stdout.contains("through x402, once"),
        "{stdout}"
    );
    assert!(stdout.contains("answered: Forecast for Lisbon"), "{stdout}");
    assert!(stdout.contains("transaction 0x"), "{stdout}");
    // 2. Denied with a budget code and its remediation, never paid.
    let denied = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("BUDGET_"))
        .unwrap_or_else(|| panic!("no BUDGET_ reason: {stdout}"));
    let (_, remediation) = denied.split_once(": ").unwrap();
    assert!(!remediation.trim().is_empty(), "{denied}");
    assert!(stdout.contains("nothing was paid"), "{stdout}");
    // 3. Held, approved with the operator key, forwarded and receipted.
    assert!(stdout.contains("held: decision dec_"), "{stdout}");
    assert!(
        stdout.contains("approved with the operator key"),
        "{stdout}"
    );
    assert!(
        stdout.contains("forwarded and answered: deployed forecast-api@1.4.2"),
        "{stdout}"
    );
    let receipted = stdout
        .lines()
        .filter(|line| line.trim_start().starts_with("receipt rcpt_"))
        .count();
    assert_eq!(receipted, 2, "{stdout}");
    // The offline check, with the inclusion proof, and what to try next.
    assert!(stdout.contains("Merkle inclusion proof"), "{stdout}");
    assert!(stdout.contains("receipt verified offline"), "{stdout}");
    for next in ["trustos onboard", "trustos audit hosts", "trustos verify"] {
        assert!(stdout.contains(next), "{next}: {stdout}");
    }

    assert_home_removed(&tmp);
    assert_nothing_left(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn quickstart_interrupted_with_sigint_stops_everything_and_removes_its_home() {
    let tmp = tmpdir("sigint");
    let mut child = quickstart(&tmp, &["--pause-before-approval", "30000"])
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (lines, seen) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = lines.send(line);
        }
    });
    // Everything is up once the deploy is held: the daemon, the front, the facilitator and
    // the tool server.
    let deadline = Instant::now() + LIMIT;
    let mut output = Vec::new();
    loop {
        let line = seen
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the deploy was never held: {output:#?}"));
        let held = line.contains("held: decision");
        output.push(line);
        if held {
            break;
        }
    }
    let running = started_by(&tmp, Some(pid));
    assert!(
        running
            .iter()
            .any(|(_, cmd)| cmd.contains("demo-tool-server")),
        "the tool server should be running: {running:?}"
    );
    let home = std::fs::read_dir(&tmp).unwrap().count();
    assert_eq!(home, 1, "the throwaway home should exist while running");

    let kill = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_within(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130), "{output:#?}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        !output
            .iter()
            .any(|l| l.contains("receipt verified offline")),
        "{output:#?}"
    );

    assert_home_removed(&tmp);
    assert_nothing_left(&tmp);
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn quickstart_refuses_a_home_that_is_not_empty() {
    let tmp = tmpdir("busy");
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join("gateway.toml"), "# mine\n").unwrap();
    let out = quickstart(&tmp, &["--home", home.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(home.join("gateway.toml")).unwrap(),
        "# mine\n"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
