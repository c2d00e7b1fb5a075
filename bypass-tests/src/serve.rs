//! `trustos serve --listen 127.0.0.1:0`: a daemon with its HTTP front (`/mcp/NAME`,
//! `/http/NAME`) on a free port, for tests that speak HTTP to the gateway. Its stderr is echoed
//! (prefixed `[trustos serve]`) and kept line by line, so a test can wait for what it logs.
//!
//! Dropping it sends SIGTERM (the daemon cleans up), then kills it after 5 s.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use crate::gateway::TIMEOUT;
use crate::{TempDir, trustos_bin};

/// `trustos init` of a fresh home `DIR/home`; its path.
///
/// # Errors
///
/// When `trustos init` cannot run or fails.
pub fn init_home(dir: &TempDir) -> Result<PathBuf, String> {
    let home = dir.join("home");
    let mut cmd = Command::new(trustos_bin()?);
    cmd.args(["init", "--home"]).arg(&home);
    let init = crate::output_with_timeout(cmd, TIMEOUT)?;
    if !init.status.success() {
        return Err(format!(
            "trustos init: {}",
            String::from_utf8_lossy(&init.stderr)
        ));
    }
    Ok(home)
}

/// A running `trustos serve --listen`.
pub struct Listening {
    child: Child,
    addr: String,
    lines: Mutex<mpsc::Receiver<String>>,
}

impl Listening {
    /// Starts the daemon of `home` with `env` added to its environment and waits until it
    /// reports where it listens.
    ///
    /// # Errors
    ///
    /// When it cannot start or reports no address within [`TIMEOUT`] (it is then killed).
    pub fn start(home: &Path, env: &[(&str, &str)]) -> Result<Self, String> {
        Self::start_on(home, "127.0.0.1:0", env)
    }

    /// [`Listening::start`] on `listen` (`127.0.0.1:PORT`), for a test that must name the
    /// front's address before the daemon starts (a webhook sender configured first).
    ///
    /// # Errors
    ///
    /// As [`Listening::start`].
    pub fn start_on(home: &Path, listen: &str, env: &[(&str, &str)]) -> Result<Self, String> {
        let mut child = Command::new(trustos_bin()?)
            .args(["serve", "--listen", listen, "--home"])
            .arg(home)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("trustos serve: {e}"))?;
        let (send, lines) = mpsc::channel();
        if let Some(stderr) = child.stderr.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[trustos serve] {line}");
                    let _ = send.send(line);
                }
            });
        }
        let mut listening = Self {
            child,
            addr: String::new(),
            lines: Mutex::new(lines),
        };
        // "… ready on <socket> and http://127.0.0.1:PORT/mcp/NAME"
        let deadline = Instant::now() + TIMEOUT;
        let addr = loop {
            let Some(line) = listening.next_line(deadline) else {
                return Err("trustos serve did not report ready".into());
            };
            if let Some(rest) = line.split(" and http://").nth(1)
                && line.contains("ready on")
            {
                break rest.trim_end_matches("/mcp/NAME").to_owned();
            }
        };
        listening.addr = addr;
        Ok(listening)
    }

    /// `127.0.0.1:PORT` of the HTTP front.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The daemon's stderr lines not read yet, to wait on with `recv_timeout`.
    pub fn lines(&self) -> MutexGuard<'_, mpsc::Receiver<String>> {
        self.lines.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Kills the daemon with SIGKILL, as a crash would: nothing of it runs after this returns.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The next stderr line, waiting until `deadline` at most.
    pub fn next_line(&self, deadline: Instant) -> Option<String> {
        self.lines()
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .ok()
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// Stops a daemon: SIGTERM first, so it stops its upstreams and removes its socket; SIGKILL
/// after five seconds.
pub fn terminate(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
