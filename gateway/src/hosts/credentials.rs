//! Payment credentials handed to a tool server in its `env`: wallet private keys, seed phrases,
//! Circle API keys and entity secrets, x402 payer keys. A tool server holding them can move
//! money without a decision: the money lane is bypassed even when its calls go through the
//! gateway. Findings name the variable and why, never the value.

/// Why `name=value` looks like a payment credential, if it does.
pub fn payment_credential(name: &str, value: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    let has = |word: &str| upper.contains(word);
    if has("PRIVATE_KEY") || has("PRIVKEY") {
        return Some("a private key");
    }
    if has("MNEMONIC") || has("SEED") {
        return Some("a wallet seed phrase");
    }
    if has("ENTITY_SECRET") {
        return Some("a Circle entity secret");
    }
    if upper.starts_with("CIRCLE_") && (has("KEY") || has("SECRET")) {
        return Some("a Circle API key");
    }
    if upper.starts_with("X402_") && (has("KEY") || has("SECRET")) {
        return Some("an x402 payer key");
    }
    if has("WALLET") && (has("KEY") || has("SECRET")) {
        return Some("a wallet key");
    }
    let value = value.trim();
    if value.starts_with("TEST_API_KEY:") || value.starts_with("LIVE_API_KEY:") {
        return Some("its value is a Circle API key");
    }
    let hex = value.strip_prefix("0x").unwrap_or(value);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some("its value looks like a 32-byte private key (64 hex digits)");
    }
    None
}

/// How to move a credential into the gateway's own configuration.
pub fn remedy(why: &str) -> &'static str {
    if why.contains("Circle") {
        "remove it from the server's env and give it to the gateway instead: [circle] api_key_env / api_key_file and entity_secret_env / entity_secret_file in $TRUSTOS_HOME/gateway.toml (the Circle rail pays only with a verified decision)"
    } else {
        "remove it from the server's env and give it to the gateway instead: [x402] key_env = \"VAR\" or key_file = \"keys/payer.hex\" (mode 0600) in $TRUSTOS_HOME/gateway.toml (the x402 rail pays only with a verified decision)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert!(payment_credential("WALLET_PRIVATE_KEY", "${X}").is_some());
        assert!(payment_credential("CIRCLE_API_KEY", "").is_some());
        assert!(payment_credential("CIRCLE_ENTITY_SECRET", "").is_some());
        assert!(payment_credential("X402_PAYER_KEY", "").is_some());
        assert!(payment_credential("MY_WALLET_KEY", "").is_some());
        assert!(payment_credential("BIP39_MNEMONIC", "").is_some());
        assert!(payment_credential("ANYTHING", "TEST_API_KEY:a:b").is_some());
        assert!(payment_credential("ANYTHING", &format!("0x{}", "ab".repeat(32))).is_some());
        assert!(payment_credential("GITHUB_TOKEN", "ghp_x").is_none());
        assert!(payment_credential("DEBUG", "1").is_none());
    }
}
