//! The agent hosts Trust OS knows, where each keeps its MCP servers, and what each supports.
//!
//! Paths (`~` is the user's home, `.` the project directory) — see `host-configs/<host>.md`:
//!
//! | host | files | servers at |
//! |---|---|---|
//! | claude-desktop | `~/Library/Application Support/Claude/claude_desktop_config.json` (macOS), `~/.config/Claude/claude_desktop_config.json` (Linux), `~/AppData/Roaming/Claude/claude_desktop_config.json` (Windows) | `mcpServers` |
//! | claude-code | `./.mcp.json`, `~/.claude.json` | `mcpServers`, and `projects.<path>.mcpServers` in `~/.claude.json` |
//! | cursor | `~/.cursor/mcp.json`, `./.cursor/mcp.json` | `mcpServers` |
//! | codex | `~/.codex/config.toml`, `./.codex/config.toml` | `[mcp_servers.NAME]` |
//! | openclaw | `~/.openclaw/openclaw.json` | `mcp.servers` |
//! | vscode | `./.vscode/mcp.json`, the user profile's `mcp.json` | `servers` |
//! | windsurf | `~/.codeium/windsurf/mcp_config.json` | `mcpServers` (`serverUrl` for URLs) |

use std::path::{Path, PathBuf};

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

    /// The host's config files that could exist, user-level under `home` and project-level
    /// under `project`, most specific first.
    pub fn candidates(self, home: &Path, project: &Path) -> Vec<PathBuf> {
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
                at(home, &[".codex", "config.toml"]),
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
