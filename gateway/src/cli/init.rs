//! `trustos init`: create `$TRUSTOS_HOME` with a gateway key, an operator key, `gateway.toml`
//! and the starter profile. Never overwrites; running it again reports what is already there.

use super::{EXIT_OK, EXIT_USAGE};
use crate::home::{self, Home};

/// Creates what is missing and prints what it did (as JSON with `json`).
pub fn run(home: &Home, json: bool) -> u8 {
    let report = match home::ensure_initialized(home) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("trustos init: {err}");
            return EXIT_USAGE;
        }
    };
    let kid = home
        .load_key()
        .map(|key| key.kid().to_owned())
        .unwrap_or_default();
    if json {
        let value = serde_json::json!({
            "home": home.root(),
            "kid": kid,
            "created": report.created,
            "kept": report.kept,
        });
        out!("{value}");
        return EXIT_OK;
    }
    out!(
        "Trust OS home {} (gateway key {kid})",
        home.root().display()
    );
    for path in &report.created {
        out!("  created {}", path.display());
    }
    for path in &report.kept {
        out!("  kept    {}", path.display());
    }
    out!(
        "\nNext: put `trustos mcp --server NAME -- <your server command>` in your host's MCP \
         config in place of the server command; the daemon starts on the first call. Edit {} to \
         classify your tools.",
        home.root().join("profiles/default/profile.toml").display()
    );
    EXIT_OK
}
