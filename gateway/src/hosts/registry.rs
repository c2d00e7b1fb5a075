//! The agent hosts Trust OS knows, where each keeps its MCP servers, and what each supports.
//!
//! Paths (`~` is the user's home, `.` the project directory) — see `host-configs/<host>.md`:
//!
//! | host | files | servers at |
//! |---|---|---|
//! | claude-desktop | `~/Library/Application Support/Claude/claude_desktop_config.json` (macOS), `~/.config/Claude/claude_desktop_config.json` (Linux), `~/AppData/Roaming/Claude/claude_desktop_config.json` (Windows) | `mcpServers` |
//! | claude-code | `./.mcp.json`, `~/.claude.json` | `mcpServers`, and `projects.<path>.mcpServers` in `~/.claude.json` |
//! | cursor | `~/.cursor/mcp.json`, `./.cursor/mcp.json` | `mcpServers` |
//! | codex | `$CODEX_HOME/config.toml` (`CODEX_HOME` set and non-empty) else `~/.codex/config.toml`, and `./.codex/config.toml` | `[mcp_servers.NAME]` |
//! | openclaw | `~/.openclaw/openclaw.json` | `mcp.servers` |
//! | vscode | `./.vscode/mcp.json`, the user profile's `mcp.json` | `servers` |
//! | windsurf | `~/.codeium/windsurf/mcp_config.json` | `mcpServers` (`serverUrl` for URLs) |

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The environment variable naming Codex's home directory (default `~/.codex`).
pub const CODEX_HOME_VAR: &str = "CODEX_HOME";

/// Where the user-level configs live: the user's home, and what the environment says beyond it.
#[derive(Clone, Debug)]
pub struct UserDirs {
    /// The user's home (`$HOME`).
    pub home: PathBuf,
    /// Codex's home (`$CODEX_HOME`), when set and non-empty; Codex then reads
    /// `$CODEX_HOME/config.toml` instead of `~/.codex/config.toml`.
    pub codex_home: Option<PathBuf>,
}

impl UserDirs {
    /// `home`, with `$CODEX_HOME` given as read from the environment (`None` or empty: unset).
    pub fn new(home: PathBuf, codex_home: Option<OsString>) -> Self {
        Self {
            home,
            codex_home: codex_home.filter(|dir| !dir.is_empty()).map(PathBuf::from),
        }
    }

    /// From this process's environment: `home` and `$CODEX_HOME`.
    pub fn from_env(home: PathBuf) -> Self {
        Self::new(home, std::env::var_os(CODEX_HOME_VAR))
    }

    /// Every directory mapped through `map` (`trustos audit hosts --root` resolves them under
    /// its root).
    pub fn map(&self, map: impl Fn(&Path) -> PathBuf) -> Self {
        Self {
            home: map(&self.home),
            codex_home: self.codex_home.as_deref().map(map),
        }
    }
}

/// A known agent host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Host {
    /// Claude Desktop (stdio only in its JSON config).
    ClaudeDesktop,
    /// Claude Code.
    ClaudeCode,
    /// Cursor.
    Cursor,
    /// OpenAI Codex (CLI, IDE extension, app).
    Codex,
    /// OpenClaw.
    Openclaw,
    /// Visual Studio Code (GitHub Copilot agent mode).
    Vscode,
    /// Windsurf.
    Windsurf,
}

/// Where, inside a JSON file, a host keeps server maps: a path of keys, `*` matching any key.
pub type ServerPath = &'static [&'static str];

impl Host {
    /// Every known host.
    pub const ALL: [Host; 7] = [
        Host::ClaudeDesktop,
        Host::ClaudeCode,
        Host::Cursor,
        Host::Codex,
        Host::Openclaw,
        Host::Vscode,
        Host::Windsurf,
    ];

    /// The host's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeDesktop => "claude-desktop",
            Host::ClaudeCode => "claude-code",
            Host::Cursor => "cursor",
            Host::Codex => "codex",
            Host::Openclaw => "openclaw",
            Host::Vscode => "vscode",
            Host::Windsurf => "windsurf",
        }
    }

    /// Whether the host can connect to a Streamable HTTP server from its config file.
    pub fn speaks_http(self) -> bool {
        self != Host::ClaudeDesktop
    }

    /// The key holding the server map(s), by file.
    pub fn server_paths(self, file: &Path) -> &'static [ServerPath] {
        match self {
            Host::ClaudeCode if file.file_name().is_some_and(|name| name == ".claude.json") => {
                &[&["mcpServers"], &["projects", "*", "mcpServers"]]
            }
            Host::Openclaw => &[&["mcp", "servers"]],
            Host::Vscode => &[&["servers"]],
            Host::Codex => &[&["mcp_servers"]],
            _ => &[&["mcpServers"]],
        }
    }

    /// The key a URL server's address is written under when onboarding adds one.
    pub fn url_keys(self) -> &'static [&'static str] {
        match self {
            Host::Windsurf => &["serverUrl", "url"],
            _ => &["url"],
        }
    }

    /// The host's config files that could exist, user-level under `user` and project-level
    /// under `project`, most specific first.
    pub fn candidates(self, user: &UserDirs, project: &Path) -> Vec<PathBuf> {
        let home = user.home.as_path();
        let at =
            |base: &Path, parts: &[&str]| parts.iter().fold(base.to_path_buf(), |p, s| p.join(s));
        match self {
            Host::ClaudeDesktop => vec![
                at(
                    home,
                    &[
                        "Library",
                        "Application Support",
                        "Claude",
                        "claude_desktop_config.json",
                    ],
                ),
                at(home, &[".config", "Claude", "claude_desktop_config.json"]),
                at(
                    home,
                    &["AppData", "Roaming", "Claude", "claude_desktop_config.json"],
                ),
            ],
            Host::ClaudeCode => vec![at(project, &[".mcp.json"]), at(home, &[".claude.json"])],
            Host::Cursor => vec![
                at(project, &[".cursor", "mcp.json"]),
                at(home, &[".cursor", "mcp.json"]),
            ],
            Host::Codex => vec![
                at(project, &[".codex", "config.toml"]),
                match &user.codex_home {
                    Some(codex_home) => at(codex_home, &["config.toml"]),
                    None => at(home, &[".codex", "config.toml"]),
                },
            ],
            Host::Openclaw => vec![at(home, &[".openclaw", "openclaw.json"])],
            Host::Vscode => vec![
                at(project, &[".vscode", "mcp.json"]),
                at(home, &[".config", "Code", "User", "mcp.json"]),
                at(
                    home,
                    &["Library", "Application Support", "Code", "User", "mcp.json"],
                ),
                at(home, &["AppData", "Roaming", "Code", "User", "mcp.json"]),
            ],
            Host::Windsurf => vec![at(home, &[".codeium", "windsurf", "mcp_config.json"])],
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codex_home_replaces_the_default_when_set_and_not_empty() {
        let project = Path::new("/p");
        let default = UserDirs::new(PathBuf::from("/h"), None);
        assert_eq!(
            Host::Codex.candidates(&default, project),
            [
                PathBuf::from("/p/.codex/config.toml"),
                PathBuf::from("/h/.codex/config.toml")
            ]
        );
        let empty = UserDirs::new(PathBuf::from("/h"), Some(OsString::new()));
        assert_eq!(empty.codex_home, None);
        let set = UserDirs::new(PathBuf::from("/h"), Some(OsString::from("/c")));
        assert_eq!(
            Host::Codex.candidates(&set, project),
            [
                PathBuf::from("/p/.codex/config.toml"),
                PathBuf::from("/c/config.toml")
            ]
        );
        // Other hosts do not look at it.
        assert_eq!(
            Host::Cursor.candidates(&set, project),
            Host::Cursor.candidates(&default, project)
        );
        let mapped = set.map(|dir| Path::new("/root").join(dir.strip_prefix("/").unwrap()));
        assert_eq!(mapped.home, PathBuf::from("/root/h"));
        assert_eq!(mapped.codex_home, Some(PathBuf::from("/root/c")));
    }
}
