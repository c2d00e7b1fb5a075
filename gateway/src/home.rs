//! `$TRUSTOS_HOME`: where a gateway keeps its key, its data and its configuration.
//!
//! Layout: `keys/gateway.key.pem` (PKCS#8, 0600) and `keys/gateway.jwk.json`, `data/trustos.redb`
//! (the store), and later `gateway.toml` and `profiles/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use trustos_kernel::keys::GatewayKey;

use crate::keyfile;
use crate::store::StoreError;
use crate::store::redb_store::{DATABASE_FILE, RedbStore};

/// A Trust OS home directory.
#[derive(Clone, Debug)]
pub struct Home {
    root: PathBuf,
}

/// Why a home directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    /// Neither `--home`, `TRUSTOS_HOME` nor `HOME` is set.
    #[error("no home directory: set TRUSTOS_HOME or HOME, or pass --home DIR")]
    Unset,
    /// The gateway key is missing or unreadable.
    #[error("{0} (run `trustos quickstart` or `trustos keygen --out <home>/keys` first)")]
    Key(#[from] keyfile::KeyFileError),
    /// There is no database yet.
    #[error("{0}: no Trust OS data yet (run `trustos quickstart` first)")]
    NoData(String),
    /// The store refused to open.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Home {
    /// `explicit`, else `$TRUSTOS_HOME`, else `~/.trustos`.
    pub fn resolve(explicit: Option<PathBuf>) -> Result<Self, HomeError> {
        explicit
            .or_else(|| {
                std::env::var_os("TRUSTOS_HOME")
                    .filter(|home| !home.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".trustos")))
            .map(|root| Self { root })
            .ok_or(HomeError::Unset)
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the gateway key pair.
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// The gateway's private key file.
    pub fn key_path(&self) -> PathBuf {
        self.keys_dir().join(keyfile::PRIVATE_KEY_FILE)
    }

    /// The store's database file.
    pub fn database_path(&self) -> PathBuf {
        self.root.join("data").join(DATABASE_FILE)
    }

    /// Reads the gateway key.
    pub fn load_key(&self) -> Result<GatewayKey, HomeError> {
        Ok(keyfile::read_private_key(&self.key_path())?)
    }

    /// Reads the gateway key, creating it first if there is none. Returns whether it was created.
    pub fn load_or_create_key(&self) -> Result<(GatewayKey, bool), HomeError> {
        if self.key_path().exists() {
            return Ok((self.load_key()?, false));
        }
        let key = keyfile::generate()?;
        keyfile::write_key_pair(&self.keys_dir(), &key)?;
        Ok((key, true))
    }

    /// Opens the store (off the async threads), creating it when `create` is set. New logs are
    /// named after the key.
    pub async fn open_store(
        &self,
        key: Arc<GatewayKey>,
        create: bool,
    ) -> Result<RedbStore, HomeError> {
        let path = self.database_path();
        if !create && !path.exists() {
            return Err(HomeError::NoData(path.display().to_string()));
        }
        let origin = default_origin(&key);
        Ok(RedbStore::open_async(path, key, origin).await?)
    }
}

/// Log origin of a new store: `trustos.local/<key id>`.
pub fn default_origin(key: &GatewayKey) -> String {
    format!("trustos.local/{}", key.kid())
}
