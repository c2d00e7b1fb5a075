//! Tokens the x402 adapter knows: which contract on which network is which asset, and its
//! EIP-712 domain. A profile names assets by symbol (`usdc`); an offer names a contract
//! address. An offer whose contract is not known here (or in `gateway.toml`) is refused, so a
//! server cannot pass off a worthless token, or a costly one, as the asset a budget counts.

use super::evm::{Address, parse_address};

/// One EIP-3009 token on one network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownAsset {
    /// CAIP-2 network.
    pub network: String,
    /// Token contract.
    pub address: Address,
    /// The profile's name for it (lower case), e.g. `usdc`.
    pub symbol: String,
    /// EIP-712 domain name the contract signs under.
    pub eip712_name: String,
    /// EIP-712 domain version.
    pub eip712_version: String,
}

/// Circle's USDC deployments, from Circle's published contract addresses
/// (developers.circle.com, "USDC contract addresses"), with their EIP-712 domains.
const USDC: &[(&str, &str, &str)] = &[
    (
        "eip155:8453",
        "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        "USD Coin",
    ),
    (
        "eip155:84532",
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "USDC",
    ),
    (
        "eip155:1",
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "USD Coin",
    ),
    (
        "eip155:11155111",
        "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238",
        "USDC",
    ),
    (
        "eip155:137",
        "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
        "USD Coin",
    ),
    (
        "eip155:80002",
        "0x41E94Eb019C0762f9Bfcf9Fb1E58725BfB0e7582",
        "USDC",
    ),
    (
        "eip155:43114",
        "0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E",
        "USD Coin",
    ),
    (
        "eip155:43113",
        "0x5425890298aed601595a70AB815c96711a31Bc65",
        "USD Coin",
    ),
];

/// The assets the adapter accepts offers in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssetRegistry {
    assets: Vec<KnownAsset>,
}

impl AssetRegistry {
    /// Circle's USDC on the networks above, plus `extra` (from `gateway.toml`).
    pub fn with_defaults(extra: Vec<KnownAsset>) -> Self {
        let mut assets: Vec<KnownAsset> = USDC
            .iter()
            .filter_map(|(network, address, name)| {
                Some(KnownAsset {
                    network: (*network).to_owned(),
                    address: parse_address(address).ok()?,
                    symbol: "usdc".to_owned(),
                    eip712_name: (*name).to_owned(),
                    eip712_version: "2".to_owned(),
                })
            })
            .collect();
        assets.extend(extra);
        Self { assets }
    }

    /// The asset at `address` on `network`.
    pub fn find(&self, network: &str, address: &Address) -> Option<&KnownAsset> {
        self.assets
            .iter()
            .find(|asset| asset.network == network && asset.address == *address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_address_parses_with_its_checksum() {
        let registry = AssetRegistry::with_defaults(vec![]);
        assert_eq!(registry.assets.len(), USDC.len());
    }

    #[test]
    fn base_sepolia_usdc_is_known_and_other_contracts_are_not() {
        let registry = AssetRegistry::with_defaults(vec![]);
        let usdc = parse_address("0x036CbD53842c5426634e7929541eC2318f3dCF7e").unwrap();
        let found = registry.find("eip155:84532", &usdc).unwrap();
        assert_eq!(found.symbol, "usdc");
        assert_eq!(found.eip712_name, "USDC");
        assert!(registry.find("eip155:8453", &usdc).is_none());
    }
}
