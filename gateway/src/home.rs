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
    /// A file or directory could not be written.
    #[error("{0}")]
    Io(String),
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

/// The starter profile `trustos init` writes.
pub const STARTER_PROFILE: &str = include_str!("cli/starter.profile.toml");

/// What [`ensure_initialized`] created (paths), for the user to see.
#[derive(Debug, Default)]
pub struct Initialized {
    /// Files and directories created now.
    pub created: Vec<PathBuf>,
    /// Files that were already there and were left untouched.
    pub kept: Vec<PathBuf>,
}

fn write_new(path: &Path, text: &str, report: &mut Initialized) -> Result<(), HomeError> {
    if path.exists() {
        report.kept.push(path.to_owned());
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|err| HomeError::Io(format!("{}: {err}", parent.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|err| HomeError::Io(format!("{}: {err}", path.display())))?;
    report.created.push(path.to_owned());
    Ok(())
}

/// The `gateway.toml` that `trustos init` writes.
fn starter_config() -> String {
    "# Trust OS gateway configuration. Paths are relative to this directory.\n\
     # `trustos serve` reads it at start (restart the daemon after editing it).\n\n\
     [gateway]\n\
     profile = \"profiles/default/profile.toml\"\n\
     # Tenant and agent of calls through `trustos mcp` (override per host with --agent).\n\
     tenant = \"local\"\n\
     agent = \"agent\"\n\
     # Serve /mcp/NAME over Streamable HTTP for hosts that speak HTTP:\n\
     # listen = \"127.0.0.1:8790\"\n\
     decision_ttl_seconds = 60\n\
     hold_timeout_seconds = 300\n\
     # How often the daemon asks Circle and the chain how payments left `unknown` ended (0: off).\n\
     reconcile_interval_seconds = 60\n\n\
     # Operators who may approve held calls, by the names the profile's [challenge] lists.\n\
     [approvers]\n\
     operator = \"operator/gateway.jwk.json\"\n\n\
     # Upstream servers for the HTTP front (stdio shims name their command themselves):\n\
     # [servers.everything]\n\
     # command = [\"npx\", \"-y\", \"@modelcontextprotocol/server-everything\"]\n\n\
     # Bearer tokens of the HTTP front (store the SHA-256, never the token):\n\
     # [[tokens]]\n\
     # token_sha256 = \"sha256:...\"\n\
     # tenant = \"local\"\n\
     # agent = \"agent\"\n\n\
     # HTTP APIs the gateway fronts as /http/NAME/... (paid ones are paid through [x402]):\n\
     # [http.weather]\n\
     # url = \"https://api.example.com/v1\"\n\n\
     # The x402 payer: a secp256k1 key the agent never sees (64 hex digits, file mode 0600),\n\
     # from a file here or an environment variable of the daemon:\n\
     # [x402]\n\
     # key_file = \"keys/x402.key\"\n\
     # key_env = \"TRUSTOS_X402_KEY\"\n\
     # max_timeout_seconds = 300\n"
        .to_owned()
}

/// Creates whatever of the home is missing: the directory (0700), the gateway key, an operator
/// key for approvals, `gateway.toml` and the starter profile. Never overwrites.
pub fn ensure_initialized(home: &Home) -> Result<Initialized, HomeError> {
    let mut report = Initialized::default();
    let root = home.root();
    if !root.exists() {
        std::fs::create_dir_all(root)
            .map_err(|err| HomeError::Io(format!("{}: {err}", root.display())))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| HomeError::Io(format!("{}: {err}", root.display())))?;
        report.created.push(root.to_owned());
    }
    let (_, created) = home.load_or_create_key()?;
    if created {
        report.created.push(home.key_path());
    } else {
        report.kept.push(home.key_path());
    }
    let operator_dir = root.join("operator");
    let operator_key = operator_dir.join(keyfile::PRIVATE_KEY_FILE);
    if operator_key.exists() {
        report.kept.push(operator_key);
    } else {
        let key = keyfile::generate()?;
        keyfile::write_key_pair(&operator_dir, &key)?;
        report.created.push(operator_key);
    }
    write_new(
        &root.join(crate::config::CONFIG_FILE),
        &starter_config(),
        &mut report,
    )?;
    write_new(
        &root.join("profiles").join("default").join("profile.toml"),
        STARTER_PROFILE,
        &mut report,
    )?;
    Ok(report)
}
