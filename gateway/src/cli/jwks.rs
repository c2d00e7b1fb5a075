//! `trustos jwks`: print the JWKS of one or more gateway keys.

use std::path::PathBuf;

use trustos_kernel::keys::TrustedKeys;

use super::{EXIT_OK, EXIT_USAGE};
use crate::keyfile;

pub fn run(paths: &[PathBuf]) -> u8 {
    let keys = match paths
        .iter()
        .map(|path| keyfile::read_public_key(path))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(keys) => keys,
        Err(err) => {
            eprintln!("trustos jwks: {err}");
            return EXIT_USAGE;
        }
    };
    let jwks = TrustedKeys::new(keys).to_jwks();
    match serde_json::to_string_pretty(&jwks) {
        Ok(text) => {
            out!("{text}");
            EXIT_OK
        }
        Err(err) => {
            eprintln!("trustos jwks: {err}");
            EXIT_USAGE
        }
    }
}
