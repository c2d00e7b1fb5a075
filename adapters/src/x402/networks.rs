//! EVM network identifiers used by x402: CAIP-2 (`eip155:<chain id>`, x402 v2) and the short
//! network names of x402 v1 (`"base"`, `"base-sepolia"`, …).
//!
//! The v1 names and their chain ids are taken from `EVM_NETWORK_CHAIN_ID_MAP` in
//! `typescript/packages/mechanisms/evm/src/v1/index.ts` of coinbase/x402 (commit
//! `dd927a26cfefc98c24b3ec38b3a8f204dad0c60d`), which supersedes the shorter
//! `EvmNetworkToChainId` of the legacy package (`typescript/packages/legacy/x402/src/types/shared/network.ts`).
//! Every chain id appears once, so the mapping is a bijection and both directions are total over
//! the table.
//!
//! CAIP-2 parsing is strict: the namespace must be exactly `eip155` and the reference a decimal
//! chain id without sign, leading zeros or surrounding whitespace, greater than zero and fitting
//! in a `u64`. One chain therefore has exactly one accepted CAIP-2 spelling, so two identifiers
//! that name the same chain are always equal as strings.

/// x402 v1 EVM network names and their EIP-155 chain ids, in the order of the x402 source.
const V1_EVM_NETWORKS: &[(&str, u64)] = &[
    ("ethereum", 1),
    ("sepolia", 11_155_111),
    ("abstract", 2741),
    ("abstract-testnet", 11_124),
    ("base-sepolia", 84_532),
    ("base", 8453),
    ("avalanche-fuji", 43_113),
    ("avalanche", 43_114),
    ("iotex", 4689),
    ("sei", 1329),
    ("sei-testnet", 1328),
    ("polygon", 137),
    ("polygon-amoy", 80_002),
    ("peaq", 3338),
    ("story", 1514),
    ("educhain", 41_923),
    ("skale-base-sepolia", 324_705_682),
    ("megaeth", 4326),
    ("monad", 143),
    ("stable", 988),
    ("stable-testnet", 2201),
];

/// The CAIP-2 namespace prefix of EVM chains.
const EIP155_PREFIX: &str = "eip155:";

/// The EIP-155 chain id named by `network`: either a CAIP-2 identifier `eip155:<chain id>`
/// (any positive chain id, written in canonical decimal) or one of the x402 v1 EVM network names.
///
/// Returns `None` for anything else, including non-canonical CAIP-2 spellings (`eip155:084532`,
/// `eip155:+1`, `EIP155:1`), chain id 0, and names of other ecosystems (`solana`).
pub fn evm_chain_id(network: &str) -> Option<u64> {
    match network.strip_prefix(EIP155_PREFIX) {
        Some(reference) => parse_chain_id(reference),
        None => v1_chain_id(network),
    }
}

/// The CAIP-2 identifier (`eip155:<chain id>`) of an x402 v1 EVM network name, or `None` when the
/// name is not one of them.
pub fn v1_name_to_caip2(name: &str) -> Option<String> {
    v1_chain_id(name).map(|chain_id| format!("{EIP155_PREFIX}{chain_id}"))
}

/// The x402 v1 network name of a canonical CAIP-2 EVM identifier, or `None` when the identifier is
/// malformed or its chain has no v1 name.
pub fn caip2_to_v1_name(caip2: &str) -> Option<&'static str> {
    let chain_id = parse_chain_id(caip2.strip_prefix(EIP155_PREFIX)?)?;
    V1_EVM_NETWORKS
        .iter()
        .find(|(_, id)| *id == chain_id)
        .map(|(name, _)| *name)
}

/// The chain id of a v1 network name.
fn v1_chain_id(name: &str) -> Option<u64> {
    V1_EVM_NETWORKS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, chain_id)| *chain_id)
}

/// Parses a CAIP-2 `eip155` reference: ASCII decimal digits only, no leading zero, nonzero, fits
/// in a `u64`.
fn parse_chain_id(reference: &str) -> Option<u64> {
    if reference.is_empty()
        || reference.starts_with('0')
        || !reference.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    reference.parse::<u64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_names_resolve_to_their_chain_ids() {
        let expected = [
            ("base", 8453),
            ("base-sepolia", 84_532),
            ("avalanche", 43_114),
            ("avalanche-fuji", 43_113),
            ("polygon", 137),
            ("polygon-amoy", 80_002),
            ("sei", 1329),
            ("sei-testnet", 1328),
            ("iotex", 4689),
            ("peaq", 3338),
            ("ethereum", 1),
            ("sepolia", 11_155_111),
            ("skale-base-sepolia", 324_705_682),
        ];
        for (name, chain_id) in expected {
            assert_eq!(evm_chain_id(name), Some(chain_id), "{name}");
        }
    }

    #[test]
    fn caip2_identifiers_resolve() {
        assert_eq!(evm_chain_id("eip155:8453"), Some(8453));
        assert_eq!(evm_chain_id("eip155:84532"), Some(84_532));
        assert_eq!(evm_chain_id("eip155:1"), Some(1));
        // Chains without a v1 name are still valid CAIP-2 identifiers.
        assert_eq!(evm_chain_id("eip155:42161"), Some(42_161));
        assert_eq!(evm_chain_id("eip155:18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn non_canonical_or_foreign_identifiers_are_refused() {
        for bad in [
            "",
            "eip155:",
            "eip155:0",
            "eip155:08453",
            "eip155:+8453",
            "eip155:-1",
            "eip155: 8453",
            "eip155:8453 ",
            "eip155:8453\n",
            "eip155:0x2105",
            "eip155:18446744073709551616",
            "eip155:8453:1",
            "EIP155:8453",
            "eip155 :8453",
            "Base",
            " base",
            "base ",
            "solana",
            "solana:5eykt4UsFv8P8NJdTREpY1vzqKqZKvdp",
            "8453",
        ] {
            assert_eq!(evm_chain_id(bad), None, "{bad:?}");
            assert_eq!(caip2_to_v1_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn v1_and_caip2_round_trip() {
        for (name, chain_id) in V1_EVM_NETWORKS {
            let caip2 = v1_name_to_caip2(name);
            assert_eq!(
                caip2.as_deref(),
                Some(format!("eip155:{chain_id}").as_str())
            );
            assert_eq!(caip2.as_deref().and_then(caip2_to_v1_name), Some(*name));
            assert_eq!(caip2.as_deref().and_then(evm_chain_id), Some(*chain_id));
        }
    }

    #[test]
    fn table_is_a_bijection() {
        for (index, (name, chain_id)) in V1_EVM_NETWORKS.iter().enumerate() {
            for (other_name, other_id) in &V1_EVM_NETWORKS[index + 1..] {
                assert_ne!(name, other_name);
                assert_ne!(chain_id, other_id);
            }
        }
    }

    #[test]
    fn unknown_names_and_chains_have_no_mapping() {
        assert_eq!(v1_name_to_caip2("eip155:8453"), None);
        assert_eq!(v1_name_to_caip2("arbitrum"), None);
        assert_eq!(v1_name_to_caip2("solana-devnet"), None);
        assert_eq!(caip2_to_v1_name("eip155:42161"), None);
        assert_eq!(caip2_to_v1_name("base"), None);
        assert_eq!(caip2_to_v1_name("eip155:8453"), Some("base"));
        assert_eq!(caip2_to_v1_name("eip155:84532"), Some("base-sepolia"));
    }
}
