//! Tool pins over a real store: trust on first listing (across all its pages), then every
//! changed or new definition waits for an operator, and the pins survive a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use trustos::enforce::pins::{PinCheck, PinStatus, Pins};
use trustos::store::redb_store::RedbStore;
use trustos_kernel::keys::GatewayKey;
use trustos_kernel::timestamp::Timestamp;

fn scratch() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pins-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn open(dir: &std::path::Path) -> Arc<RedbStore> {
    let key = Arc::new(GatewayKey::from_seed(&[7; 32]));
    Arc::new(RedbStore::open(&dir.join("trustos.redb"), key, "pins.test/log").unwrap())
}

fn tool(name: &str, description: &str) -> Value {
    json!({"name": name, "description": description, "inputSchema": {"type": "object"}})
}

fn now() -> Timestamp {
    "2026-11-24T10:00:00.000Z".parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn first_listing_is_trusted_across_pages_then_changes_wait_for_approval() {
    let dir = scratch();
    let store = open(&dir);
    let pins = Pins::new(Arc::clone(&store));
    assert_eq!(pins.check("s", "a").await.unwrap(), PinCheck::NotListed);

    // The first listing arrives in two pages: both are pinned as approved.
    pins.observe("s", &[tool("a", "A")], true, now())
        .await
        .unwrap();
    pins.observe("s", &[tool("b", "B")], false, now())
        .await
        .unwrap();
    assert!(matches!(
        pins.check("s", "a").await.unwrap(),
        PinCheck::Approved { .. }
    ));
    assert!(matches!(
        pins.check("s", "b").await.unwrap(),
        PinCheck::Approved { .. }
    ));

    // After it: a changed definition and a new tool wait.
    let seen = pins
        .observe(
            "s",
            &[tool("a", "A, but different"), tool("c", "C")],
            false,
            now(),
        )
        .await
        .unwrap();
    assert_eq!(seen[0].status, PinStatus::Changed);
    assert_eq!(seen[1].status, PinStatus::New);
    assert_eq!(pins.check("s", "a").await.unwrap(), PinCheck::Changed);
    assert_eq!(pins.check("s", "c").await.unwrap(), PinCheck::New);

    // The original definition again clears the pending change; approving takes the new one.
    pins.observe("s", &[tool("a", "A")], false, now())
        .await
        .unwrap();
    assert!(matches!(
        pins.check("s", "a").await.unwrap(),
        PinCheck::Approved { .. }
    ));
    let approved = pins.approve("s", "c", None, now()).await.unwrap();
    assert!(matches!(
        pins.check("s", "c").await.unwrap(),
        PinCheck::Approved { .. }
    ));
    assert!(
        pins.approve("s", "c", None, now()).await.is_err(),
        "nothing pending"
    );
    assert!(
        pins.approve("s", "zz", None, now()).await.is_err(),
        "never listed"
    );

    // A destructive annotation is kept with the approved definition.
    let mut destructive = tool("d", "D");
    destructive["annotations"] = json!({"destructiveHint": true});
    pins.observe("s2", &[destructive], false, now())
        .await
        .unwrap();
    assert_eq!(
        pins.check("s2", "d").await.unwrap(),
        PinCheck::Approved { destructive: true }
    );

    // Pins are durable: a new store on the same file sees them.
    let all = pins.all().await.unwrap();
    drop(pins);
    let Ok(store) = Arc::try_unwrap(store) else {
        panic!("the store is still shared")
    };
    store.close().await.unwrap();
    let reopened = Pins::new(open(&dir));
    assert_eq!(reopened.all().await.unwrap(), all);
    let c = all.iter().find(|p| p.tool == "c").unwrap();
    assert_eq!(c.sha256, Some(approved));
}

#[tokio::test(flavor = "multi_thread")]
async fn approving_names_the_definition_it_approves() {
    let pins = Pins::new(open(&scratch()));
    pins.observe("s", &[tool("a", "A")], false, now())
        .await
        .unwrap();
    pins.observe("s", &[tool("a", "A2")], false, now())
        .await
        .unwrap();
    let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
        .parse()
        .unwrap();
    assert!(pins.approve("s", "a", Some(&wrong), now()).await.is_err());
    assert_eq!(pins.check("s", "a").await.unwrap(), PinCheck::Changed);
}
