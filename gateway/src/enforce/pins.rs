//! Tool pins: the SHA-256 of each tool definition an upstream lists, recorded on first sight.
//!
//! The first `tools/list` of a server is trusted (trust on first use) and pinned. After that,
//! a definition that changes (a "rug pull": new description, schema or annotations) or a tool
//! that appears is recorded as pending and every call to it is refused until an operator
//! approves the new definition. A tool never listed is refused too. Pins live in the store as
//! versioned records (`tool-pin`, id `SERVER/TOOL`), written with compare-and-set, and are
//! cached in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use trustos_kernel::canonical::Digest;
use trustos_kernel::timestamp::Timestamp;

use super::EnforceError;
use crate::store::redb_store::RedbStore;
use crate::store::{CasOutcome, Store};

/// Record kind of pins in the store.
pub const PIN_KIND: &str = "tool-pin";

/// State of a pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinStatus {
    /// The pinned definition is in force.
    Approved,
    /// The tool changed after it was pinned; waiting for an operator.
    Changed,
    /// The tool appeared after the first listing; waiting for an operator.
    New,
}

/// One pinned tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PinRecord {
    /// Server name.
    pub server: String,
    /// Tool name.
    pub tool: String,
    /// Status.
    pub status: PinStatus,
    /// SHA-256 (JCS) of the approved definition; `None` for a new tool not yet approved.
    pub sha256: Option<Digest>,
    /// The approved definition.
    pub definition: Option<Value>,
    /// SHA-256 of the definition waiting for approval.
    pub pending_sha256: Option<Digest>,
    /// The definition waiting for approval.
    pub pending_definition: Option<Value>,
    /// First seen.
    pub first_seen: Timestamp,
    /// Last changed (pinned, changed or approved).
    pub updated_at: Timestamp,
}

impl PinRecord {
    /// Whether the approved definition declares `destructiveHint: true`.
    pub fn destructive(&self) -> bool {
        self.definition
            .as_ref()
            .and_then(|d| d.pointer("/annotations/destructiveHint"))
            .and_then(Value::as_bool)
            == Some(true)
    }
}

/// What a call may do, as far as pins go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinCheck {
    /// Listed and approved; `destructive` when it declares `destructiveHint: true`.
    Approved {
        /// The definition declares itself destructive.
        destructive: bool,
    },
    /// Never listed by the upstream.
    NotListed,
    /// Its definition changed and is not approved yet.
    Changed,
    /// It appeared after the first listing and is not approved yet.
    New,
}

/// What one `tools/list` entry did to the pins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    /// Tool name.
    pub tool: String,
    /// Its status after this listing.
    pub status: PinStatus,
    /// Whether this listing changed the record.
    pub changed: bool,
}

/// Pins by server, then tool, each with its record version.
type PinCache = HashMap<String, BTreeMap<String, (u64, PinRecord)>>;

/// The pins, cached over the store.
pub struct Pins {
    store: Arc<RedbStore>,
    cache: Mutex<Option<PinCache>>,
    /// Servers whose first listing is still arriving page by page (`nextCursor`).
    first_listing: Mutex<std::collections::HashSet<String>>,
    /// Serializes writers so compare-and-set conflicts only come from other processes.
    write: tokio::sync::Mutex<()>,
}

fn record_id(server: &str, tool: &str) -> String {
    format!("{server}/{tool}")
}

impl Pins {
    /// Pins over a store.
    pub fn new(store: Arc<RedbStore>) -> Self {
        Self {
            store,
            cache: Mutex::new(None),
            first_listing: Mutex::new(std::collections::HashSet::new()),
            write: tokio::sync::Mutex::new(()),
        }
    }

    async fn load(&self) -> Result<(), EnforceError> {
        if self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_some()
        {
            return Ok(());
        }
        let mut all: PinCache = HashMap::new();
        for (_, record) in self.store.list_records(PIN_KIND).await? {
            let pin: PinRecord = serde_json::from_slice(&record.body)
                .map_err(|err| EnforceError::Internal(format!("corrupt tool pin: {err}")))?;
            all.entry(pin.server.clone())
                .or_default()
                .insert(pin.tool.clone(), (record.version, pin));
        }
        *self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(all);
        Ok(())
    }

    fn with_cache<T>(&self, read: impl FnOnce(&mut PinCache) -> T) -> T {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        read(cache.get_or_insert_with(HashMap::new))
    }

    /// What a call to `server`/`tool` may do.
    pub async fn check(&self, server: &str, tool: &str) -> Result<PinCheck, EnforceError> {
        self.load().await?;
        Ok(self.with_cache(
            |cache| match cache.get(server).and_then(|tools| tools.get(tool)) {
                None => PinCheck::NotListed,
                Some((_, pin)) => match pin.status {
                    PinStatus::Approved => PinCheck::Approved {
                        destructive: pin.destructive(),
                    },
                    PinStatus::Changed => PinCheck::Changed,
                    PinStatus::New => PinCheck::New,
                },
            },
        ))
    }

    /// Every pin, by server then tool.
    pub async fn all(&self) -> Result<Vec<PinRecord>, EnforceError> {
        self.load().await?;
        Ok(self.with_cache(|cache| {
            let mut pins: Vec<PinRecord> = cache
                .values()
                .flat_map(|tools| tools.values().map(|(_, pin)| pin.clone()))
                .collect();
            pins.sort_by(|a, b| (&a.server, &a.tool).cmp(&(&b.server, &b.tool)));
            pins
        }))
    }

    /// Records a `tools/list` result's `tools` array for `server`; `more` when the result has
    /// a `nextCursor` (the first listing of a server spans all its pages).
    pub async fn observe(
        &self,
        server: &str,
        tools: &[Value],
        more: bool,
        now: Timestamp,
    ) -> Result<Vec<Observed>, EnforceError> {
        self.load().await?;
        let _writer = self.write.lock().await;
        let first_listing = {
            let mut paging = self
                .first_listing
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let first = paging.contains(server)
                || self.with_cache(|cache| cache.get(server).is_none_or(BTreeMap::is_empty));
            if first && more {
                paging.insert(server.to_owned());
            } else {
                paging.remove(server);
            }
            first
        };
        let mut observed = Vec::new();
        for definition in tools {
            let Some(tool) = definition.get("name").and_then(Value::as_str) else {
                continue;
            };
            let digest = Digest::of_canonical_value(definition)
                .map_err(|err| EnforceError::Internal(format!("tool {tool}: {err}")))?;
            let existing = self
                .with_cache(|cache| cache.get(server).and_then(|tools| tools.get(tool)).cloned());
            let updated = match existing {
                None if first_listing => Some((
                    (),
                    PinRecord {
                        server: server.to_owned(),
                        tool: tool.to_owned(),
                        status: PinStatus::Approved,
                        sha256: Some(digest),
                        definition: Some(definition.clone()),
                        pending_sha256: None,
                        pending_definition: None,
                        first_seen: now,
                        updated_at: now,
                    },
                )),
                None => Some((
                    (),
                    PinRecord {
                        server: server.to_owned(),
                        tool: tool.to_owned(),
                        status: PinStatus::New,
                        sha256: None,
                        definition: None,
                        pending_sha256: Some(digest),
                        pending_definition: Some(definition.clone()),
                        first_seen: now,
                        updated_at: now,
                    },
                )),
                Some((_, pin)) if pin.sha256 == Some(digest) => {
                    // Back to the approved definition: nothing pending any more.
                    (pin.status != PinStatus::Approved || pin.pending_sha256.is_some()).then(|| {
                        let mut pin = pin.clone();
                        pin.status = PinStatus::Approved;
                        pin.pending_sha256 = None;
                        pin.pending_definition = None;
                        pin.updated_at = now;
                        ((), pin)
                    })
                }
                Some((_, pin)) if pin.pending_sha256 == Some(digest) => None,
                Some((_, pin)) => {
                    let mut pin = pin.clone();
                    pin.status = if pin.sha256.is_some() {
                        PinStatus::Changed
                    } else {
                        PinStatus::New
                    };
                    pin.pending_sha256 = Some(digest);
                    pin.pending_definition = Some(definition.clone());
                    pin.updated_at = now;
                    Some(((), pin))
                }
            };
            let status = match &updated {
                Some((_, pin)) => pin.status,
                None => self.with_cache(|cache| {
                    cache
                        .get(server)
                        .and_then(|tools| tools.get(tool))
                        .map_or(PinStatus::New, |(_, pin)| pin.status)
                }),
            };
            let changed = updated.is_some();
            if let Some((_, pin)) = updated {
                self.save(pin).await?;
            }
            observed.push(Observed {
                tool: tool.to_owned(),
                status,
                changed,
            });
        }
        Ok(observed)
    }

    /// Approves the pending definition of a tool (optionally only if it has `expected` hash).
    pub async fn approve(
        &self,
        server: &str,
        tool: &str,
        expected: Option<&Digest>,
        now: Timestamp,
    ) -> Result<Digest, EnforceError> {
        self.load().await?;
        let _writer = self.write.lock().await;
        let Some((_, mut pin)) =
            self.with_cache(|cache| cache.get(server).and_then(|tools| tools.get(tool)).cloned())
        else {
            return Err(EnforceError::Internal(format!(
                "no tool {server}/{tool} has been listed"
            )));
        };
        let Some(pending) = pin.pending_sha256 else {
            return Err(EnforceError::Internal(format!(
                "{server}/{tool} has nothing waiting for approval"
            )));
        };
        if expected.is_some_and(|expected| *expected != pending) {
            return Err(EnforceError::Internal(format!(
                "{server}/{tool} is waiting with {pending}, not the definition you named"
            )));
        }
        pin.sha256 = Some(pending);
        pin.definition = pin.pending_definition.take();
        pin.pending_sha256 = None;
        pin.status = PinStatus::Approved;
        pin.updated_at = now;
        self.save(pin).await?;
        Ok(pending)
    }

    async fn save(&self, pin: PinRecord) -> Result<(), EnforceError> {
        let id = record_id(&pin.server, &pin.tool);
        let version = self.with_cache(|cache| {
            cache
                .get(&pin.server)
                .and_then(|tools| tools.get(&pin.tool))
                .map(|(version, _)| *version)
        });
        let body =
            serde_json::to_vec(&pin).map_err(|err| EnforceError::Internal(err.to_string()))?;
        match self
            .store
            .compare_and_set(PIN_KIND, &id, version, body)
            .await?
        {
            CasOutcome::Stored(version) => {
                self.with_cache(|cache| {
                    cache
                        .entry(pin.server.clone())
                        .or_default()
                        .insert(pin.tool.clone(), (version, pin));
                });
                Ok(())
            }
            CasOutcome::Conflict(_) => {
                // Someone else wrote it: forget the cache, the next read reloads.
                *self
                    .cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                Err(EnforceError::Internal(format!(
                    "tool pin {id} changed concurrently; list the tools again"
                )))
            }
        }
    }
}
