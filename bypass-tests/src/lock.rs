//! A cross-process lock made of a file created with `create_new`, for one-time setup (npm
//! install, building the gateway) shared by concurrently running test processes.
//!
//! The workspace's minimum Rust (1.88) predates `std::fs::File::lock`, so the lock is the
//! existence of the file: whoever creates it holds the lock, and removing it releases it. A
//! holder that died without removing it (killed test run) is detected by the file's age: a
//! lock older than the stale limit is removed and taken over.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// A held lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct SetupLock {
    path: PathBuf,
}

impl SetupLock {
    /// Takes the lock at `path`, waiting at most `wait` for another holder to release it. A
    /// lock file older than `stale_after` is considered abandoned and removed.
    ///
    /// # Errors
    ///
    /// When the lock's directory cannot be created, the file cannot be created for a reason
    /// other than existing, or `wait` runs out.
    pub fn acquire(path: &Path, wait: Duration, stale_after: Duration) -> Result<Self, String> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let deadline = Instant::now() + wait;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut file) => {
                    // Who holds it, for a human looking at a stuck run; failure to write is harmless.
                    let _ = writeln!(file, "pid {}", std::process::id());
                    return Ok(Self {
                        path: path.to_path_buf(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if is_stale(path, stale_after) {
                        // Another waiter may remove it at the same moment; either way, retry.
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

/// Whether the lock file at `path` was last modified more than `stale_after` ago.
fn is_stale(path: &Path, stale_after: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age > stale_after)
}
