//! A stream's log: its entries, the replay on open (with the retention trim) and the rewrite that drops expired
//! records.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::state::{Consumer, RecordRef, Stream, StreamState};
use super::{Kinesis, RETENTION_MS};
use crate::aws::AwsError;
use crate::store::{sync_dir, Durability, Log};

/// One log entry of a stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Entry {
    Create {
        shards: u32,
        created_ms: i64,
        on_demand: bool,
    },
    Put {
        records: Vec<(u32, String, String, i64)>,
    },
    Reshard {
        target: u32,
        at_ms: i64,
    },
    Consumer {
        name: String,
        created_ms: i64,
    },
    Deregister {
        name: String,
    },
    /// The shard's positions resume at `position` (written when a rewrite dropped the records before it).
    Base {
        shard: u32,
        position: u64,
    },
}

impl Kinesis {
    /// Replays one stream's log into its index (trimming past the retention period as it goes), rewriting
    /// the log when much of it has expired. `None` when the log does not start with the stream's creation.
    pub(super) fn reopen(&self, name: &str, path: &Path) -> Result<Option<Stream>, AwsError> {
        let horizon = self.now() - RETENTION_MS;
        let mut replay = Replay::default();
        let log = Log::open_with(path, self.durability, |offset, payload| {
            replay.entry(offset, &payload, horizon)
        })
        .map_err(|e| AwsError::storage(path, e))?;
        let Some((created_ms, on_demand, mut state)) = replay.stream else {
            return Ok(None);
        };
        for shard in &mut state.shards {
            shard.visible = shard.end();
        }
        let kept: usize = state.shards.iter().map(|s| s.records.len()).sum();
        let log = if replay.trimmed > 0 && replay.trimmed * 4 >= kept {
            drop(log);
            tracing::info!(message = "rewriting a stream log without expired records", path = %path.display(), expired = replay.trimmed, kept);
            compact(path, &mut state, self.durability).map_err(|e| AwsError::storage(path, e))?
        } else {
            log
        };
        Ok(Some(self.make_stream(
            name,
            created_ms,
            on_demand,
            Some(log),
            state,
        )))
    }
}

impl StreamState {
    /// Applies one log entry (at `offset`) to the index.
    pub(super) fn replay(&mut self, offset: u64, entry: Entry) {
        match entry {
            Entry::Create { .. } => {}
            Entry::Put { records } => {
                for (slot, (index, _, _, arrival_ms)) in records.into_iter().enumerate() {
                    if let Some(shard) = self.shards.iter().position(|s| s.index == index) {
                        self.append(
                            shard,
                            RecordRef {
                                arrival_ms,
                                batch: offset,
                                slot: slot as u32,
                            },
                        );
                    }
                }
            }
            Entry::Reshard { target, at_ms } => self.reshard(target, at_ms),
            Entry::Consumer { name, created_ms } => {
                self.consumers.push(Consumer {
                    arn: String::new(),
                    name,
                    created_ms,
                });
            }
            Entry::Deregister { name } => self.consumers.retain(|c| c.name != name),
            Entry::Base { shard, position } => {
                if let Some(shard) = self.shard_mut(shard).filter(|s| s.records.is_empty()) {
                    shard.base = shard.base.max(position);
                    shard.visible = shard.visible.max(shard.base);
                }
            }
        }
    }
}

/// The state of a stream being rebuilt from its log on open.
#[derive(Default)]
pub(super) struct Replay {
    /// Created at, on demand, the index so far; `None` until the create entry.
    pub(super) stream: Option<(i64, bool, StreamState)>,
    /// Records dropped as past retention.
    pub(super) trimmed: usize,
    /// The first entry was not a create: the rest is ignored.
    pub(super) headless: bool,
}

impl Replay {
    pub(super) fn entry(&mut self, offset: u64, payload: &[u8], horizon: i64) -> io::Result<()> {
        if self.headless {
            return Ok(());
        }
        let entry: Entry = serde_json::from_slice(payload).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("corrupt stream log entry at offset {offset}: {e}"),
            )
        })?;
        match (&mut self.stream, entry) {
            (
                None,
                Entry::Create {
                    shards,
                    created_ms,
                    on_demand,
                },
            ) => {
                self.stream = Some((created_ms, on_demand, StreamState::new(shards, created_ms)));
            }
            (None, _) => self.headless = true,
            (Some((_, _, state)), entry) => {
                let put = matches!(entry, Entry::Put { .. });
                state.replay(offset, entry);
                if put {
                    self.trimmed += state.trim(horizon);
                }
            }
        }
        Ok(())
    }
}

/// Rewrites the log at `path` keeping only the records `state` still holds (and every entry that is not a
/// Put), points `state`'s index at the new offsets, and reopens the rewritten log.
pub(super) fn compact(
    path: &Path,
    state: &mut StreamState,
    durability: Durability,
) -> io::Result<Log> {
    let tmp = path.with_extension("rewrite");
    match std::fs::remove_file(&tmp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    // Synced before the rename whatever the durability: the rename replaces the only copy.
    let (out, _) = Log::open(&tmp, Durability::EveryWrite)?;
    let bases: BTreeMap<u32, u64> = state.shards.iter().map(|s| (s.index, s.base)).collect();
    let mut positions: BTreeMap<u32, u64> = BTreeMap::new();
    let mut refilled: BTreeMap<u32, usize> = BTreeMap::new();
    let mut based: BTreeSet<u32> = BTreeSet::new();
    let mut ticket = 0;
    let write_base = |out: &Log, based: &mut BTreeSet<u32>, shard: u32| -> io::Result<u64> {
        based.insert(shard);
        let position = bases.get(&shard).copied().unwrap_or(0);
        out.write(&serde_json::to_vec(&Entry::Base { shard, position })?)
    };
    crate::store::scan(path, |_, payload| {
        let entry: Entry = serde_json::from_slice(&payload)?;
        match entry {
            Entry::Base { shard, position } => {
                let at = positions.entry(shard).or_default();
                *at = (*at).max(position);
            }
            Entry::Put { records } => {
                let mut kept = Vec::new();
                for record in records {
                    let at = positions.entry(record.0).or_default();
                    if *at >= bases.get(&record.0).copied().unwrap_or(0) {
                        kept.push(record);
                    }
                    *at += 1;
                }
                if kept.is_empty() {
                    return Ok(());
                }
                for (shard, ..) in &kept {
                    if !based.contains(shard) {
                        ticket = write_base(&out, &mut based, *shard)?;
                    }
                }
                let shards: Vec<u32> = kept.iter().map(|r| r.0).collect();
                let (written, offset) =
                    out.write_at(&serde_json::to_vec(&Entry::Put { records: kept })?)?;
                ticket = written;
                for (slot, index) in shards.into_iter().enumerate() {
                    let next = refilled.entry(index).or_default();
                    if let Some(record) = state
                        .shard_mut(index)
                        .and_then(|s| s.records.get_mut(*next))
                    {
                        record.batch = offset;
                        record.slot = slot as u32;
                    }
                    *next += 1;
                }
            }
            _ => ticket = out.write(&payload)?,
        }
        Ok(())
    })?;
    for (&shard, &base) in &bases {
        if base > 0 && !based.contains(&shard) {
            ticket = write_base(&out, &mut based, shard)?;
        }
    }
    out.sync(ticket)?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Log::open_with(path, durability, |_, _| Ok(()))
}
