//! The embedded policy engine: profiles (TOML), their compilation to Cedar, and decisions.
//!
//! - [`profile`]: the profile format; [`load`]: reading and checking it, with located errors.
//! - [`compile`]: the Cedar schema, policy library and entities a profile becomes, and the
//!   profile fingerprint.
//! - [`engine`]: deciding one call (allow, deny, challenge) with reason codes ([`reasons`]).
//! - [`simulate`]: running a pack's cases.
//! - [`glob`]: route patterns.

pub mod compile;
pub mod engine;
pub mod glob;
pub mod load;
pub mod packs;
pub mod profile;
pub mod reasons;
pub mod simulate;

use std::path::Path;

pub use compile::Compiled;
pub use load::Issue;

/// Loads, checks and compiles the profile at `path`.
pub fn open(path: &Path) -> Result<Compiled, Vec<Issue>> {
    let loaded = load::load(path)?;
    compile::compile(&loaded)
}

/// The profile a gateway enforces, reloaded on change; a profile that fails validation is never
/// swapped in: the last good one stays active.
pub struct ActiveProfile {
    path: std::path::PathBuf,
    current: std::sync::Arc<Compiled>,
}

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The new profile is active.
    Updated {
        /// Fingerprint before.
        previous: trustos_kernel::canonical::Digest,
        /// Fingerprint now.
        current: trustos_kernel::canonical::Digest,
    },
    /// The file compiles to the profile already active.
    Unchanged,
    /// The file is invalid; the last good profile stays active.
    KeptLastGood {
        /// The active fingerprint.
        current: trustos_kernel::canonical::Digest,
        /// Why the file was refused.
        issues: Vec<Issue>,
    },
}

impl ActiveProfile {
    /// Loads the profile at `path`; it must be valid to start with.
    pub fn load(path: &Path) -> Result<Self, Vec<Issue>> {
        Ok(Self {
            path: path.to_owned(),
            current: std::sync::Arc::new(open(path)?),
        })
    }

    /// The profile in force.
    pub fn current(&self) -> std::sync::Arc<Compiled> {
        std::sync::Arc::clone(&self.current)
    }

    /// Re-reads the file; swaps only when it is valid.
    pub fn reload(&mut self) -> Reload {
        match open(&self.path) {
            Ok(compiled) if compiled.fingerprint == self.current.fingerprint => Reload::Unchanged,
            Ok(compiled) => {
                let previous = self.current.fingerprint;
                self.current = std::sync::Arc::new(compiled);
                Reload::Updated {
                    previous,
                    current: self.current.fingerprint,
                }
            }
            Err(issues) => Reload::KeptLastGood {
                current: self.current.fingerprint,
                issues,
            },
        }
    }
}
