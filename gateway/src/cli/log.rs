//! `trustos log checkpoint` and `trustos log prove`: the audit log, read from `$TRUSTOS_HOME/data`.

use std::sync::Arc;

use serde_json::json;
use trustos_kernel::bundle::ReceiptBundle;
use trustos_kernel::canonical::Digest;
use trustos_kernel::checkpoint::Checkpoint;
use trustos_kernel::jws::{self, TYP_RECEIPT};
use trustos_kernel::keys::TrustedKeys;
use trustos_kernel::objects::SafeIndex;

use super::{EXIT_OK, EXIT_USAGE};
use crate::home::Home;
use crate::store::Store;
use crate::store::redb_store::RedbStore;

/// Runs `body` against the home's store on a small runtime, closing the store afterwards.
fn with_store<T>(
    home: &Home,
    body: impl AsyncFnOnce(&RedbStore, &Home) -> Result<T, String>,
) -> Result<T, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    runtime.block_on(async {
        let key = Arc::new(home.load_key().map_err(|err| err.to_string())?);
        let store = home
            .open_store(key, false)
            .await
            .map_err(|err| err.to_string())?;
        let result = body(&store, home).await;
        store.close().await.map_err(|err| err.to_string())?;
        result
    })
}

pub fn checkpoint(home: &Home, as_json: bool) -> u8 {
    let signed = with_store(home, async |store, _| {
        store.checkpoint().await.map_err(|err| err.to_string())
    });
    match signed {
        Ok(signed) => {
            if as_json {
                let report = json!({
                    "origin": signed.checkpoint.origin,
                    "treeSize": signed.checkpoint.size,
                    "root": Digest::from_bytes(signed.checkpoint.root).to_string(),
                    "note": signed.note,
                });
                out!("{report}");
            } else {
                out!("{}", signed.note.trim_end());
            }
            EXIT_OK
        }
        Err(err) => {
            eprintln!("trustos log checkpoint: {err}");
            EXIT_USAGE
        }
    }
}

pub fn prove(home: &Home, index: u64, size: Option<u64>) -> u8 {
    let bundle = with_store(home, async |store, home| {
        let key = home.load_key().map_err(|err| err.to_string())?;
        let log_size = store.log_size().await.map_err(|err| err.to_string())?;
        let tree_size = size.unwrap_or(log_size);
        if index >= tree_size || tree_size > log_size {
            return Err(format!(
                "no entry {index} in a tree of {tree_size} (the log has {log_size} entries)"
            ));
        }
        let entry = store
            .log_entry(index)
            .await
            .map_err(|err| err.to_string())?
            .ok_or_else(|| format!("log entry {index} is missing"))?;
        let entry =
            String::from_utf8(entry).map_err(|_| format!("log entry {index} is not a JWS"))?;
        let keys = TrustedKeys::new([key.public().clone()]);
        let signed = jws::verify(&entry, &keys, None)
            .map_err(|err| format!("log entry {index} does not verify: {err}"))?;
        if signed.typ != TYP_RECEIPT {
            return Err(format!(
                "log entry {index} is a {}, not a receipt; bundles prove receipts",
                signed.typ
            ));
        }
        let proof = store
            .inclusion_proof(index, tree_size)
            .await
            .map_err(|err| err.to_string())?;
        let root = store
            .log_root(tree_size)
            .await
            .map_err(|err| err.to_string())?;
        let note = Checkpoint::new(store.origin(), tree_size, root)
            .sign(store.origin(), key.signing_key())
            .map_err(|err| err.to_string())?;
        let safe = |value: u64| SafeIndex::new(value).map_err(|err| err.to_string());
        let bundle = ReceiptBundle::new(entry, safe(index)?, safe(tree_size)?, &proof, note);
        // Never hand out a bundle that does not verify.
        bundle
            .verify(&keys)
            .map_err(|err| format!("the bundle does not verify: {err}"))?;
        Ok(bundle)
    });
    match bundle {
        Ok(bundle) => {
            out!(
                "{}",
                String::from_utf8_lossy(&bundle.to_json_pretty()).trim_end()
            );
            EXIT_OK
        }
        Err(err) => {
            eprintln!("trustos log prove: {err}");
            EXIT_USAGE
        }
    }
}
