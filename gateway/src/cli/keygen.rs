//! `trustos keygen`: create a gateway signing key pair on disk.

use std::path::Path;

use super::{EXIT_OK, EXIT_USAGE};
use crate::keyfile;

pub fn run(out: &Path, json: bool) -> u8 {
    let written = keyfile::generate().and_then(|key| {
        let paths = keyfile::write_key_pair(out, &key)?;
        Ok((key, paths))
    });
    match written {
        Ok((key, (private_path, public_path))) => {
            if json {
                let report = serde_json::json!({
                    "kid": key.kid(),
                    "privateKey": private_path,
                    "publicJwk": public_path,
                });
                out!("{report}");
            } else {
                out!(
                    "created key {} ({} mode 0600, {})",
                    key.kid(),
                    private_path.display(),
                    public_path.display()
                );
            }
            EXIT_OK
        }
        Err(err) => {
            eprintln!("trustos keygen: {err}");
            EXIT_USAGE
        }
    }
}
