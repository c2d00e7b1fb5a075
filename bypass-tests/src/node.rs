//! The third-party MCP parts the suite drives, installed from npm with exact versions:
//! `@modelcontextprotocol/server-everything` (the reference tool server) and
//! `@modelcontextprotocol/inspector` (the reference client, used through its CLI).
//!
//! `bypass-tests/node/package.json` pins them and `package-lock.json` pins everything under
//! them. [`node_packages`] copies both into `<target>/bypass-node/` and runs `npm ci` there,
//! once per build tree: a marker file holds the SHA-256 of the two files and of `node
//! --version`, and the install is redone only when it is missing or differs. Concurrent test
//! processes serialize on a lock file next to the directory. Needs `node` and `npm` on `PATH`
//! and the npm registry (nothing else from the network).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::command::run_with_timeout;
use crate::locate::target_dir;
use crate::lock::SetupLock;

/// `bypass-tests/node/package.json`.
const PACKAGE_JSON: &[u8] = include_bytes!("../node/package.json");
/// `bypass-tests/node/package-lock.json`.
const PACKAGE_LOCK: &[u8] = include_bytes!("../node/package-lock.json");

/// The longest an `npm ci` may take, and the age at which another process's lock is stale.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// The installed packages' entry points (absolute paths).
#[derive(Debug, Clone)]
pub struct NodePackages {
    /// The install directory, `<target>/bypass-node`.
    pub dir: PathBuf,
    /// `@modelcontextprotocol/server-everything`'s `dist/index.js`: run as
    /// `node <it> stdio` or `PORT=<port> node <it> streamableHttp` (endpoint
    /// `http://127.0.0.1:<port>/mcp`, default port 3001).
    pub server_everything: PathBuf,
    /// The inspector CLI proper, `@modelcontextprotocol/inspector-cli`'s `build/index.js`:
    /// `node <it> <command> <args…> --method tools/list`, or
    /// `node <it> <url> --transport http --method tools/call --tool-name echo --tool-arg message=hi`.
    pub inspector_cli: PathBuf,
    /// The `mcp-inspector` launcher that `npx @modelcontextprotocol/inspector --cli …` runs
    /// (`@modelcontextprotocol/inspector`'s `cli/build/cli.js`); with `--cli` it spawns
    /// [`Self::inspector_cli`] with the same arguments.
    pub inspector_launcher: PathBuf,
}

impl NodePackages {
    /// `node <server-everything> stdio`.
    pub fn server_everything_stdio(&self) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(&self.server_everything).arg("stdio");
        cmd
    }

    /// `PORT=<port> node <server-everything> streamableHttp`, serving
    /// `http://127.0.0.1:<port>/mcp`.
    pub fn server_everything_http(&self, port: u16) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(&self.server_everything)
            .arg("streamableHttp")
            .env("PORT", port.to_string());
        cmd
    }

    /// `node <inspector-cli>`; append the target (a command and its arguments, or a URL) and
    /// the `--method …` options.
    pub fn inspector_cli(&self) -> Command {
        let mut cmd = Command::new("node");
        cmd.arg(&self.inspector_cli);
        cmd
    }
}

/// Installs the pinned npm packages (once per build tree; see the module docs) and returns
/// their entry points. The result is computed once per process.
///
/// # Errors
///
/// When the lock cannot be taken, `npm ci` fails (the error includes its log's tail), or an
/// entry point is missing afterwards.
pub fn node_packages() -> Result<NodePackages, String> {
    static INSTALLED: OnceLock<Result<NodePackages, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| install(&target_dir().join("bypass-node")))
        .clone()
}

/// Installs into `dir` unless its marker says it is current.
fn install(dir: &Path) -> Result<NodePackages, String> {
    let packages = NodePackages {
        dir: dir.to_path_buf(),
        server_everything: dir
            .join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
        inspector_cli: dir.join("node_modules/@modelcontextprotocol/inspector-cli/build/index.js"),
        inspector_launcher: dir
            .join("node_modules/@modelcontextprotocol/inspector/cli/build/cli.js"),
    };
    let expected = marker_contents()?;
    let marker = dir.join(".trustos-installed");
    let current = || {
        std::fs::read_to_string(&marker).is_ok_and(|m| m == expected)
            && packages.server_everything.is_file()
            && packages.inspector_cli.is_file()
            && packages.inspector_launcher.is_file()
    };
    if current() {
        return Ok(packages);
    }
    let lock_path = dir.with_file_name("bypass-node.lock");
    let _lock = SetupLock::acquire(&lock_path, INSTALL_TIMEOUT, INSTALL_TIMEOUT)?;
    if current() {
        return Ok(packages);
    }

    let _ = std::fs::remove_file(&marker);
    match std::fs::remove_dir_all(dir.join("node_modules")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot clear {}/node_modules: {e}", dir.display())),
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write(&dir.join("package.json"), PACKAGE_JSON)?;
    write(&dir.join("package-lock.json"), PACKAGE_LOCK)?;

    let log_path = dir.join("npm-ci.log");
    let log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("cannot reopen {}: {e}", log_path.display()))?;
    let mut cmd = Command::new(if cfg!(windows) { "npm.cmd" } else { "npm" });
    cmd.args(["ci", "--no-audit", "--no-fund", "--ignore-scripts=false"])
        .current_dir(dir)
        .env("npm_config_update_notifier", "false")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    eprintln!("bypass-tests: npm ci in {}", dir.display());
    let status = run_with_timeout(cmd, INSTALL_TIMEOUT)?;
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "npm ci in {} failed ({status}); last lines of {}:\n{}",
            dir.display(),
            log_path.display(),
            tail.join("\n")
        ));
    }
    for entry in [
        &packages.server_everything,
        &packages.inspector_cli,
        &packages.inspector_launcher,
    ] {
        if !entry.is_file() {
            return Err(format!(
                "npm ci succeeded but {} is missing",
                entry.display()
            ));
        }
    }
    write(&marker, expected.as_bytes())?;
    Ok(packages)
}

/// The marker's expected contents: SHA-256 over the two npm files and `node --version`.
fn marker_contents() -> Result<String, String> {
    let output = Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `node --version` (is Node.js on PATH?): {e}"))?;
    if !output.status.success() {
        return Err(format!("`node --version` failed: {}", output.status));
    }
    let mut hash = Sha256::new();
    for part in [PACKAGE_JSON, PACKAGE_LOCK, &output.stdout] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    let digest = hash.finalize();
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `bytes` to `path`.
fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
