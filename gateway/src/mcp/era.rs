//! MCP protocol eras: which revision a connection speaks, and what that revision allows.
//!
//! The relay supports the revisions below. Before 2025-06-18 a JSON-RPC batch was allowed;
//! 2025-06-18 removed batching. 2026-07-28 removed the `initialize` handshake and sessions: each
//! request carries its version in `_meta["io.modelcontextprotocol/protocolVersion"]`, and
//! Streamable HTTP requests carry `Mcp-Method` / `Mcp-Name` headers that must match the body.

use std::fmt;

/// `_meta` key that carries the protocol version on every 2026-07-28 request.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// A protocol revision the relay speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Era {
    /// 2025-03-26: sessions, `initialize`, JSON-RPC batches allowed.
    V2025_03_26,
    /// 2025-06-18: sessions, `initialize`, no batches.
    V2025_06_18,
    /// 2025-11-25: as 2025-06-18, plus URL elicitation and tasks.
    V2025_11_25,
    /// 2026-07-28: stateless, no `initialize`, no sessions, no batches.
    V2026_07_28,
}

impl Era {
    /// Every supported era, oldest first.
    pub const ALL: [Era; 4] = [
        Era::V2025_03_26,
        Era::V2025_06_18,
        Era::V2025_11_25,
        Era::V2026_07_28,
    ];

    /// The newest era.
    pub const LATEST: Era = Era::V2026_07_28;

    /// Reads a `protocolVersion` string; `None` when the relay does not speak it.
    pub fn parse(version: &str) -> Option<Era> {
        Era::ALL.into_iter().find(|era| era.as_str() == version)
    }

    /// The revision's date string, as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Era::V2025_03_26 => "2025-03-26",
            Era::V2025_06_18 => "2025-06-18",
            Era::V2025_11_25 => "2025-11-25",
            Era::V2026_07_28 => "2026-07-28",
        }
    }

    /// Whether a JSON-RPC batch (a top-level array) is allowed.
    pub fn allows_batches(self) -> bool {
        self == Era::V2025_03_26
    }

    /// Whether the era opens with `initialize` and keeps a session.
    pub fn has_handshake(self) -> bool {
        self != Era::V2026_07_28
    }

    /// Whether Streamable HTTP POSTs carry `Mcp-Method` and `Mcp-Name` headers.
    pub fn has_method_headers(self) -> bool {
        self == Era::V2026_07_28
    }
}

impl fmt::Display for Era {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_era_and_nothing_else() {
        for era in Era::ALL {
            assert_eq!(Era::parse(era.as_str()), Some(era));
        }
        assert_eq!(Era::parse("2024-11-05"), None);
        assert_eq!(Era::parse("2025-06-18 "), None);
    }

    #[test]
    fn only_the_oldest_era_allows_batches() {
        let allowing: Vec<Era> = Era::ALL
            .into_iter()
            .filter(|e| e.allows_batches())
            .collect();
        assert_eq!(allowing, vec![Era::V2025_03_26]);
        assert!(!Era::V2026_07_28.has_handshake());
        assert!(Era::V2025_11_25.has_handshake());
    }
}
