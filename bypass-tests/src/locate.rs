//! Where the binaries under test are: the cargo target directory, this crate's recording
//! upstream, and the gateway's `trustos` binary (built on demand).
//!
//! An integration test binary runs from `<target>/<profile>/deps/`, so the profile directory
//! holding the workspace's binaries is two levels above [`std::env::current_exe`]. Integration
//! tests of this crate cannot use `CARGO_BIN_EXE_trustos` (that only names binaries of the
//! crate under test), hence [`trustos_bin`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::command::run_with_timeout;
use crate::lock::SetupLock;

/// The workspace root (the parent of this crate's manifest directory).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The directory of the running test binary's profile (`<target>/debug`, `<target>/release`,
/// …), found from [`std::env::current_exe`].
///
/// # Errors
///
/// When the current executable's path is unknown or not inside a cargo target directory.
pub fn profile_dir() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let parent = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent", exe.display()))?;
    // Test and example binaries live in `<profile>/deps` and `<profile>/examples`.
    let dir = match parent.file_name().and_then(|n| n.to_str()) {
        Some("deps" | "examples") => parent.parent().unwrap_or(parent),
        _ => parent,
    };
    Ok(dir.to_path_buf())
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set (relative values are taken from
/// the workspace root), else the directory above [`profile_dir`] when it is a cargo target
/// directory (it holds `CACHEDIR.TAG`), else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    if let Some(target) = profile_dir()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|t| t.join("CACHEDIR.TAG").is_file())
    {
        return target;
    }
    workspace_root().join("target")
}

/// The `trustos-recording-upstream` binary of this crate, next to the running test binary.
/// In this crate's integration tests prefer `env!("CARGO_BIN_EXE_trustos-recording-upstream")`,
/// which cargo guarantees is built.
pub fn recording_upstream_bin() -> PathBuf {
    let name = format!("trustos-recording-upstream{}", std::env::consts::EXE_SUFFIX);
    profile_dir()
        .unwrap_or_else(|_| target_dir().join("debug"))
        .join(name)
}

/// The gateway's `trustos` binary for the running profile.
///
/// `TRUSTOS_BIN` overrides it. Otherwise it is `<profile_dir>/trustos`, built when missing
/// with `cargo build -p trustos --bin trustos` (same profile and target directory), once,
/// under a lock shared by concurrent test processes. An existing binary is used as is: run
/// `cargo build -p trustos` before the suite when the gateway changed (`cargo test
/// --workspace` builds it anyway).
///
/// # Errors
///
/// When the profile directory is unknown, the build fails, or it does not produce the binary.
pub fn trustos_bin() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("TRUSTOS_BIN").filter(|b| !b.is_empty()) {
        return Ok(PathBuf::from(bin));
    }
    let profile_dir = profile_dir()?;
    let bin = profile_dir.join(format!("trustos{}", std::env::consts::EXE_SUFFIX));
    if bin.is_file() {
        return Ok(bin);
    }
    let _lock = SetupLock::acquire(
        &target_dir().join("bypass-build-trustos.lock"),
        Duration::from_secs(40 * 60),
        Duration::from_secs(40 * 60),
    )?;
    if bin.is_file() {
        return Ok(bin);
    }
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args([
        "build",
        "-p",
        "trustos",
        "--bin",
        "trustos",
        "--manifest-path",
    ])
    .arg(workspace_root().join("Cargo.toml"))
    .env("CARGO_TARGET_DIR", target_dir())
    .stdin(Stdio::null())
    .stdout(Stdio::inherit())
    .stderr(Stdio::inherit());
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => {}
        Some("release") => {
            cmd.arg("--release");
        }
        Some(other) => {
            cmd.args(["--profile", other]);
        }
    }
    eprintln!("bypass-tests: building {} ({cmd:?})", bin.display());
    let status = run_with_timeout(cmd, Duration::from_secs(30 * 60))?;
    if !status.success() {
        return Err(format!("cargo build -p trustos failed: {status}"));
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "cargo build succeeded but {} is missing",
            bin.display()
        ))
    }
}
