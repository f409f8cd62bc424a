//! A stream's in-memory state and its operations: shards, the record index, consumers, reads, writes and resharding.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest, Md5};
use tokio::sync::watch;

use super::replay::Entry;
use super::wire::{check_name, invalid};
use super::{
    DAY_MS, MAX_GET_RECORDS_BYTES, RESHARDS_PER_DAY, SHARD_BYTES_PER_SECOND,
    SHARD_RECORDS_PER_SECOND,
};
use crate::aws::{now_ms, AwsError, ACCOUNT_ID};
use crate::store::{lock, Log};

/// One stream: its shards, records and consumers.
#[derive(Debug)]
pub struct Stream {
    pub(super) name: String,
    pub(super) arn: String,
    pub(super) created_ms: i64,
    pub(super) on_demand: bool,
    pub(super) log: Option<Log>,
    pub(super) retention_ms: i64,
    pub(super) clock_skew: Arc<AtomicI64>,
    pub(super) state: Mutex<StreamState>,
}

#[derive(Debug)]
pub(super) struct StreamState {
    pub(super) shards: Vec<Shard>,
    pub(super) consumers: Vec<Consumer>,
    pub(super) reshards_ms: Vec<i64>,
    /// A stream without a log: its PutRecords batches (partition key, data), by number.
    pub(super) batches: BTreeMap<u64, Arc<Batch>>,
    pub(super) next_batch: u64,
}

/// The records of one PutRecord(s) call: (partition key, data), in slot order.
pub(super) type Batch = Vec<(String, Bytes)>;

/// Where one kept record is: its batch (the log offset of its Put entry, or the number of an in-memory batch)
/// and its slot in it, with its arrival time (for the trim and `AT_TIMESTAMP`). 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordRef {
    pub(super) arrival_ms: i64,
    pub(super) batch: u64,
    pub(super) slot: u32,
}

#[derive(Debug)]
pub(super) struct Shard {
    pub(super) index: u32,
    pub(super) parents: Vec<u32>,
    pub(super) start: u128,
    pub(super) end: u128,
    pub(super) closed: bool,
    /// The position of `records[0]`: the records before it were trimmed.
    pub(super) base: u64,
    /// The records kept, in position order.
    pub(super) records: VecDeque<RecordRef>,
    /// Positions below `visible` are durable and readable.
    pub(super) visible: u64,
    /// Write tokens (records, bytes) and when they were last refilled.
    pub(super) tokens: (f64, f64, i64),
    pub(super) signal: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
pub(super) struct Consumer {
    pub(super) name: String,
    pub(super) arn: String,
    pub(super) created_ms: i64,
}

/// A sequence number: the shard it belongs to and its place in that shard. Printed as 56 decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber {
    pub(super) shard: u32,
    pub(super) position: u64,
}

impl SequenceNumber {
    /// Parses the 56-digit form; `None` for anything else.
    pub fn parse(text: &str) -> Option<SequenceNumber> {
        if text.len() != 56 || !text.bytes().all(|b| b.is_ascii_digit()) || !text.starts_with("49")
        {
            return None;
        }
        let shard = text[15..21].parse().ok()?;
        let position = text[21..].parse().ok()?;
        Some(SequenceNumber { shard, position })
    }
}

impl std::fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // "49" and 13 digits of constant prefix keep the AWS look; the shard and position make it unique.
        write!(
            f,
            "4961000000000{:02}{:06}{:035}",
            0, self.shard, self.position
        )
    }
}

/// A record as stored and as handed to event source mappings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub sequence_number: SequenceNumber,
    pub partition_key: String,
    pub data: Bytes,
    /// `ApproximateArrivalTimestamp`, milliseconds since the epoch.
    pub arrival_ms: i64,
}

/// Where to start reading a shard (the shard iterator types).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    TrimHorizon,
    Latest,
    AtSequence(String),
    AfterSequence(String),
    /// Milliseconds since the epoch: the first record that arrived at or after it.
    AtTimestamp(i64),
}

/// A place in one shard: the next record to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCursor {
    pub shard_id: String,
    pub(super) index: u32,
    /// The position of the next record to read.
    pub(super) next: u64,
}

/// What [`Stream::read`] found.
#[derive(Debug, Clone)]
pub struct ReadBatch {
    pub records: Vec<Record>,
    /// Where the next read continues.
    pub next: ShardCursor,
    /// 0 when the batch reaches the newest durable record, else how old the next unread record is.
    pub millis_behind_latest: i64,
    /// The shard is closed and every record has been read: continue with its children.
    pub end_of_shard: bool,
}

impl ReadBatch {
    /// Bytes of the records read: data plus partition keys, as Kinesis counts record size.
    pub fn bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|r| (r.data.len() + r.partition_key.len()) as u64)
            .sum()
    }
}

/// A shard as listed, with its lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// Every parent shard whose hash range overlaps this one (the wire shows the first two as
    /// `ParentShardId` / `AdjacentParentShardId`). Read parents to their end before a child.
    pub parents: Vec<String>,
    pub starting_hash_key: u128,
    pub ending_hash_key: u128,
    pub starting_sequence_number: String,
    /// Set when the shard is closed (resharded away).
    pub ending_sequence_number: Option<String>,
    pub closed: bool,
    /// Durable records in the shard still kept (not trimmed by the retention period).
    pub records: usize,
}

/// A registered enhanced fan-out consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerInfo {
    pub name: String,
    pub arn: String,
    pub created_ms: i64,
}

pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

pub(super) fn parse_shard_id(id: &str) -> Option<u32> {
    let digits = id.strip_prefix("shardId-")?;
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// MD5 of the partition key as a 128-bit big-endian integer: the key's place in the hash space.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// `count` ranges covering the 128-bit hash space evenly, as AWS lays out a new stream's shards.
pub(super) fn uniform_ranges(count: u32) -> Vec<(u128, u128)> {
    let n = u128::from(count.max(1));
    let (q, r) = (u128::MAX / n, u128::MAX % n);
    let start = |i: u128| q * i + (r + 1) * i / n;
    (0..n)
        .map(|i| {
            (
                start(i),
                if i + 1 == n {
                    u128::MAX
                } else {
                    start(i + 1) - 1
                },
            )
        })
        .collect()
}

/// One record of a put: written (shard id, sequence number) or refused.
pub(super) type PutOutcome = Result<(String, SequenceNumber), AwsError>;
/// A record to put, validated.
pub(super) struct PutInput {
    pub(super) partition_key: String,
    pub(super) hash: u128,
    pub(super) data: Bytes,
}

impl PutInput {
    /// What Kinesis bills and limits: data plus partition key bytes.
    pub(super) fn size(&self) -> u64 {
        (self.data.len() + self.partition_key.len()) as u64
    }
}

impl Shard {
    pub(super) fn new(index: u32, parents: Vec<u32>, start: u128, end: u128, now: i64) -> Shard {
        Shard {
            index,
            parents,
            start,
            end,
            closed: false,
            base: 0,
            records: VecDeque::new(),
            visible: 0,
            tokens: (SHARD_RECORDS_PER_SECOND, SHARD_BYTES_PER_SECOND, now),
            signal: watch::channel(0).0,
        }
    }

    pub(super) fn info(&self) -> ShardInfo {
        ShardInfo {
            id: shard_id(self.index),
            parents: self.parents.iter().map(|p| shard_id(*p)).collect(),
            starting_hash_key: self.start,
            ending_hash_key: self.end,
            starting_sequence_number: SequenceNumber {
                shard: self.index,
                position: 0,
            }
            .to_string(),
            ending_sequence_number: self.closed.then(|| {
                SequenceNumber {
                    shard: self.index,
                    position: self.end().saturating_sub(1),
                }
                .to_string()
            }),
            closed: self.closed,
            records: self.visible.saturating_sub(self.base) as usize,
        }
    }

    /// The position the next record appended gets.
    pub(super) fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    /// The kept record at `position`, if any.
    pub(super) fn at(&self, position: u64) -> Option<&RecordRef> {
        let offset = usize::try_from(position.checked_sub(self.base)?).ok()?;
        self.records.get(offset)
    }

    /// Drops the records that arrived before `horizon` from the front; returns how many.
    pub(super) fn trim(&mut self, horizon: i64) -> usize {
        let mut trimmed = 0;
        while self.records.front().is_some_and(|r| r.arrival_ms < horizon) {
            self.records.pop_front();
            self.base += 1;
            trimmed += 1;
        }
        self.visible = self.visible.max(self.base);
        if trimmed > 0 && self.records.len() < self.records.capacity() / 4 {
            // Give back what a burst of records took, once they expired.
            self.records.shrink_to(self.records.len() * 2);
        }
        trimmed
    }

    /// Takes write capacity for one record of `bytes`, refilling the bucket for the time passed.
    pub(super) fn take(&mut self, bytes: usize, now: i64) -> bool {
        let (records, volume, at) = &mut self.tokens;
        let elapsed = (now - *at).max(0) as f64 / 1000.0;
        *records = (*records + elapsed * SHARD_RECORDS_PER_SECOND).min(SHARD_RECORDS_PER_SECOND);
        *volume = (*volume + elapsed * SHARD_BYTES_PER_SECOND).min(SHARD_BYTES_PER_SECOND);
        *at = now;
        if *records >= 1.0 && *volume >= bytes as f64 {
            *records -= 1.0;
            *volume -= bytes as f64;
            true
        } else {
            false
        }
    }
}

impl StreamState {
    pub(super) fn new(shards: u32, created_ms: i64) -> StreamState {
        let shards = uniform_ranges(shards)
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| Shard::new(i as u32, Vec::new(), start, end, created_ms))
            .collect();
        StreamState {
            shards,
            consumers: Vec::new(),
            reshards_ms: Vec::new(),
            batches: BTreeMap::new(),
            next_batch: 0,
        }
    }

    pub(super) fn open_shard_for(&self, hash: u128) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| !s.closed && s.start <= hash && hash <= s.end)
    }

    pub(super) fn shard_mut(&mut self, index: u32) -> Option<&mut Shard> {
        self.shards.iter_mut().find(|s| s.index == index)
    }

    /// Appends a record to the shard at `shard` (its place in `shards`); returns its sequence number.
    pub(super) fn append(&mut self, shard: usize, record: RecordRef) -> SequenceNumber {
        let shard = &mut self.shards[shard];
        let sequence_number = SequenceNumber {
            shard: shard.index,
            position: shard.end(),
        };
        shard.records.push_back(record);
        sequence_number
    }

    /// Trims every shard to records that arrived at or after `horizon`, and forgets in-memory batches no
    /// kept record points into; returns how many records were trimmed.
    pub(super) fn trim(&mut self, horizon: i64) -> usize {
        let trimmed = self.shards.iter_mut().map(|s| s.trim(horizon)).sum();
        if trimmed > 0 && !self.batches.is_empty() {
            let oldest = self
                .shards
                .iter()
                .filter_map(|s| s.records.front().map(|r| r.batch))
                .min()
                .unwrap_or(self.next_batch);
            self.batches = self.batches.split_off(&oldest);
        }
        trimmed
    }

    /// Bytes of memory the kept records take: the index, and in-memory batches.
    pub(super) fn resident_bytes(&self) -> usize {
        let index: usize = self
            .shards
            .iter()
            .map(|s| s.records.capacity() * size_of::<RecordRef>())
            .sum();
        let batches: usize = self
            .batches
            .values()
            .flat_map(|b| b.iter())
            .map(|(key, data)| key.len() + data.len())
            .sum();
        index + batches
    }

    pub(super) fn reshard(&mut self, target: u32, now: i64) {
        let open: Vec<(u32, u128, u128)> = self
            .shards
            .iter()
            .filter(|s| !s.closed)
            .map(|s| (s.index, s.start, s.end))
            .collect();
        for shard in self.shards.iter_mut().filter(|s| !s.closed) {
            shard.closed = true;
            shard.signal.send_modify(|v| *v += 1);
        }
        let first = self.shards.len() as u32;
        for (i, (start, end)) in uniform_ranges(target).into_iter().enumerate() {
            let parents = open
                .iter()
                .filter(|(_, s, e)| *s <= end && start <= *e)
                .map(|(index, _, _)| *index)
                .collect();
            self.shards
                .push(Shard::new(first + i as u32, parents, start, end, now));
        }
        self.reshards_ms.push(now);
    }
}

impl Stream {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    pub(super) fn mode(&self) -> &'static str {
        if self.on_demand {
            "ON_DEMAND"
        } else {
            "PROVISIONED"
        }
    }

    pub(super) fn write_entry(&self, entry: &Entry) -> Result<Option<u64>, AwsError> {
        crate::aws::log_write(self.log.as_ref(), entry)
    }

    pub(super) fn sync(&self, ticket: Option<u64>) -> Result<(), AwsError> {
        crate::aws::log_sync(self.log.as_ref(), ticket)
    }

    pub(super) fn now(&self) -> i64 {
        now_ms() + self.clock_skew.load(Ordering::Relaxed)
    }

    /// Bytes of memory this stream's kept records take (the index; for a stream without a log, the data).
    pub fn resident_bytes(&self) -> usize {
        lock(&self.state).resident_bytes()
    }

    /// Puts records (in order), each either written (shard id, sequence number) or refused by its shard's
    /// write limit. Returns once the written ones are durable and readable.
    pub(super) fn put(&self, records: Vec<PutInput>) -> Result<Vec<PutOutcome>, AwsError> {
        let now = self.now();
        let mut results = Vec::with_capacity(records.len());
        let mut touched: Vec<(usize, u64)> = Vec::new();
        let ticket = {
            let mut state = lock(&self.state);
            state.trim(now - self.retention_ms);
            // Which shard takes each record (or why none does).
            let mut accepted: Vec<(usize, usize, PutInput)> = Vec::new();
            for record in records {
                let Some(shard) = state.open_shard_for(record.hash) else {
                    results.push(Err(AwsError::internal("no open shard covers the hash key")));
                    continue;
                };
                let size = record.data.len() + record.partition_key.len();
                if !state.shards[shard].take(size, now) {
                    results.push(Err(AwsError::client(
                        "ProvisionedThroughputExceededException",
                        format!(
                            "Rate exceeded for shard {} in stream {} under account {ACCOUNT_ID}.",
                            shard_id(state.shards[shard].index),
                            self.name
                        ),
                    )));
                    continue;
                }
                accepted.push((results.len(), shard, record));
                results.push(Err(AwsError::internal("record not written")));
            }
            if accepted.is_empty() {
                return Ok(results);
            }
            let (ticket, batch) = self.store_batch(&mut state, &accepted, now)?;
            for (slot, (result, shard, _)) in accepted.iter().enumerate() {
                let record = RecordRef {
                    arrival_ms: now,
                    batch,
                    slot: slot as u32,
                };
                let seq = state.append(*shard, record);
                touched.push((*shard, state.shards[*shard].end()));
                results[*result] = Ok((shard_id(seq.shard), seq));
            }
            ticket
        };
        self.sync(ticket)?;
        let mut state = lock(&self.state);
        for (shard, end) in touched {
            let shard = &mut state.shards[shard];
            if shard.visible < end {
                shard.visible = end;
                shard.signal.send_replace(end);
            }
        }
        Ok(results)
    }

    /// Stores the accepted records of one put: as a Put entry of the log (the batch is its offset; the
    /// ticket is to sync on) or, without a log, as an in-memory batch.
    pub(super) fn store_batch(
        &self,
        state: &mut StreamState,
        accepted: &[(usize, usize, PutInput)],
        now: i64,
    ) -> Result<(Option<u64>, u64), AwsError> {
        let Some(log) = &self.log else {
            let batch = state.next_batch;
            state.next_batch += 1;
            let records = accepted
                .iter()
                .map(|(_, _, r)| (r.partition_key.clone(), r.data.clone()))
                .collect();
            state.batches.insert(batch, Arc::new(records));
            return Ok((None, batch));
        };
        let records = accepted
            .iter()
            .map(|(_, shard, r)| {
                (
                    state.shards[*shard].index,
                    r.partition_key.clone(),
                    STANDARD.encode(&r.data),
                    now,
                )
            })
            .collect();
        let bytes = serde_json::to_vec(&Entry::Put { records })
            .map_err(|e| AwsError::internal(e.to_string()))?;
        let (ticket, offset) = log
            .write_at(&bytes)
            .map_err(|e| AwsError::storage(log.path(), e))?;
        Ok((Some(ticket), offset))
    }

    /// The records of one batch: from memory, or read back from the log.
    pub(super) fn load_batch(
        &self,
        batch: u64,
        memory: &BTreeMap<u64, Arc<Batch>>,
    ) -> Result<Arc<Batch>, AwsError> {
        let Some(log) = &self.log else {
            return memory.get(&batch).cloned().ok_or_else(|| {
                AwsError::internal(format!(
                    "stream {} lost its in-memory batch {batch}",
                    self.name
                ))
            });
        };
        let corrupt = |why: String| {
            AwsError::internal(format!(
                "stream log {} has no readable Put entry at offset {batch}: {why}",
                log.path().display()
            ))
        };
        let payload = log
            .read_at(batch)
            .map_err(|e| AwsError::storage(log.path(), e))?;
        let Entry::Put { records } =
            serde_json::from_slice(&payload).map_err(|e| corrupt(e.to_string()))?
        else {
            return Err(corrupt("another kind of entry".to_owned()));
        };
        records
            .into_iter()
            .map(|(_, key, data, _)| {
                let data = STANDARD.decode(data).map_err(|e| corrupt(e.to_string()))?;
                Ok((key, Bytes::from(data)))
            })
            .collect::<Result<Batch, AwsError>>()
            .map(Arc::new)
    }

    /// Every shard, oldest first, with its lineage.
    pub fn shards(&self) -> Vec<ShardInfo> {
        lock(&self.state).shards.iter().map(Shard::info).collect()
    }

    /// The children of a shard (empty while it is open).
    pub fn children(&self, index: u32) -> Vec<ShardInfo> {
        lock(&self.state)
            .shards
            .iter()
            .filter(|s| s.parents.contains(&index))
            .map(Shard::info)
            .collect()
    }

    /// The registered enhanced fan-out consumers.
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        lock(&self.state)
            .consumers
            .iter()
            .map(|c| ConsumerInfo {
                name: c.name.clone(),
                arn: self.consumer_arn(c),
                created_ms: c.created_ms,
            })
            .collect()
    }

    pub(super) fn consumer_arn(&self, consumer: &Consumer) -> String {
        if consumer.arn.is_empty() {
            format!(
                "{}/consumer/{}:{}",
                self.arn,
                consumer.name,
                consumer.created_ms / 1000
            )
        } else {
            consumer.arn.clone()
        }
    }

    pub(super) fn shard_index(&self, state: &StreamState, shard: &str) -> Result<usize, AwsError> {
        parse_shard_id(shard)
            .and_then(|index| state.shards.iter().position(|s| s.index == index))
            .ok_or_else(|| {
                AwsError::client(
                    "ResourceNotFoundException",
                    format!(
                        "Shard {shard} in stream {} under account {ACCOUNT_ID} does not exist",
                        self.name
                    ),
                )
            })
    }

    /// A cursor at `position` in the shard. A sequence number whose record was trimmed starts at the trim
    /// horizon, the oldest record kept (as AWS does).
    pub fn cursor(&self, shard: &str, position: &Position) -> Result<ShardCursor, AwsError> {
        let mut state = lock(&self.state);
        state.trim(self.now() - self.retention_ms);
        let at = self.shard_index(&state, shard)?;
        let shard = &state.shards[at];
        let sequence = |text: &str| {
            SequenceNumber::parse(text).filter(|seq| seq.shard == shard.index).ok_or_else(|| {
                invalid(format!(
                    "StartingSequenceNumber {text} used in GetShardIterator on shard {} in stream {} under account {ACCOUNT_ID} is invalid because it did not come from this stream.",
                    shard_id(shard.index),
                    self.name
                ))
            })
        };
        let next = match position {
            Position::TrimHorizon => shard.base,
            Position::Latest => shard.visible,
            Position::AtSequence(text) => sequence(text)?.position,
            Position::AfterSequence(text) => sequence(text)?.position.saturating_add(1),
            Position::AtTimestamp(ms) => {
                shard.base + shard.records.partition_point(|r| r.arrival_ms < *ms) as u64
            }
        };
        Ok(ShardCursor {
            shard_id: shard_id(shard.index),
            index: shard.index,
            next: next.clamp(shard.base, shard.visible),
        })
    }

    /// Up to `max` durable records from the cursor on (from the trim horizon if the cursor's records were
    /// trimmed). At most `max` records and at most 10 MiB of data (GetRecords' limit; one record always fits).
    pub fn read(&self, cursor: &ShardCursor, max: usize) -> Result<ReadBatch, AwsError> {
        let now = self.now();
        let (start, refs, after, visible, end, closed, memory) = {
            let mut state = lock(&self.state);
            state.trim(now - self.retention_ms);
            let at = self.shard_index(&state, &cursor.shard_id)?;
            let shard = &state.shards[at];
            let start = cursor.next.clamp(shard.base, shard.visible);
            let stop = start.saturating_add(max as u64).min(shard.visible);
            let refs: Vec<RecordRef> = (start..stop).filter_map(|p| shard.at(p).copied()).collect();
            let after = shard
                .at(stop)
                .filter(|_| stop < shard.visible)
                .map(|r| r.arrival_ms);
            let memory: BTreeMap<u64, Arc<Batch>> = refs
                .iter()
                .filter_map(|r| state.batches.get(&r.batch).map(|b| (r.batch, b.clone())))
                .collect();
            (
                start,
                refs,
                after,
                shard.visible,
                shard.end(),
                shard.closed,
                memory,
            )
        };
        // Read the data outside the lock: writers are not held up by a reader's disk reads.
        let mut records = Vec::with_capacity(refs.len());
        let mut bytes = 0;
        let mut loaded: Option<(u64, Arc<Batch>)> = None;
        for (i, r) in refs.iter().enumerate() {
            let batch = match &loaded {
                Some((number, batch)) if *number == r.batch => batch.clone(),
                _ => {
                    let batch = self.load_batch(r.batch, &memory)?;
                    loaded = Some((r.batch, batch.clone()));
                    batch
                }
            };
            let (partition_key, data) = batch.get(r.slot as usize).cloned().ok_or_else(|| {
                AwsError::internal(format!(
                    "stream {} batch {} has no slot {}",
                    self.name, r.batch, r.slot
                ))
            })?;
            bytes += data.len() + partition_key.len();
            if bytes > MAX_GET_RECORDS_BYTES && i > 0 {
                break;
            }
            records.push(Record {
                sequence_number: SequenceNumber {
                    shard: cursor.index,
                    position: start + i as u64,
                },
                partition_key,
                data,
                arrival_ms: r.arrival_ms,
            });
        }
        let next = start + records.len() as u64;
        let next_arrival = refs.get(records.len()).map(|r| r.arrival_ms).or(after);
        let millis_behind_latest = match next_arrival {
            Some(arrival) if next < visible => (now - arrival).max(0),
            _ => 0,
        };
        Ok(ReadBatch {
            records,
            next: ShardCursor {
                next,
                ..cursor.clone()
            },
            millis_behind_latest,
            end_of_shard: closed && next == end,
        })
    }

    /// A watch on the shard: its value changes whenever records become readable or the shard closes.
    pub fn subscribe(&self, shard: &str) -> Result<watch::Receiver<u64>, AwsError> {
        let state = lock(&self.state);
        let at = self.shard_index(&state, shard)?;
        Ok(state.shards[at].signal.subscribe())
    }

    /// UpdateShardCount with UNIFORM_SCALING; returns the open shard count before.
    pub fn reshard(&self, target: u32) -> Result<usize, AwsError> {
        if self.on_demand {
            return Err(AwsError::validation(format!(
                "UpdateShardCount is not supported for stream {} in ON_DEMAND mode; switch it to PROVISIONED first",
                self.name
            )));
        }
        let now = self.now();
        let ticket = {
            let mut state = lock(&self.state);
            let open = state.shards.iter().filter(|s| !s.closed).count();
            let t = target as usize;
            if t == open {
                return Err(invalid(format!(
                    "Stream {} under account {ACCOUNT_ID} already has {open} open shards; TargetShardCount must differ",
                    self.name
                )));
            }
            if t > open * 2 || t * 2 < open {
                return Err(invalid(format!(
                    "UpdateShardCount cannot scale stream {} from {open} to {t} shards: at most double or half the open shard count ({}..={}) per call",
                    self.name,
                    open.div_ceil(2),
                    open * 2
                )));
            }
            state.reshards_ms.retain(|at| now - at < DAY_MS);
            if state.reshards_ms.len() >= RESHARDS_PER_DAY {
                return Err(AwsError::client(
                    "LimitExceededException",
                    format!(
                        "Stream {} under account {ACCOUNT_ID} has already been resharded {RESHARDS_PER_DAY} times in the last 24 hours; try again later",
                        self.name
                    ),
                ));
            }
            let ticket = self.write_entry(&Entry::Reshard { target, at_ms: now })?;
            state.reshard(target, now);
            (ticket, open)
        };
        self.sync(ticket.0)?;
        let open = ticket.1;
        Ok(open)
    }

    /// Registers an enhanced fan-out consumer (RegisterStreamConsumer; the template loader for
    /// `AWS::Kinesis::StreamConsumer`).
    pub fn register_consumer(&self, name: &str) -> Result<ConsumerInfo, AwsError> {
        check_name(name, "consumerName")?;
        let now = now_ms();
        let ticket = {
            let mut state = lock(&self.state);
            if state.consumers.iter().any(|c| c.name == name) {
                return Err(AwsError::client(
                    "ResourceInUseException",
                    format!(
                        "Consumer {name} under stream {} already exists for account {ACCOUNT_ID}.",
                        self.name
                    ),
                ));
            }
            let ticket = self.write_entry(&Entry::Consumer {
                name: name.to_owned(),
                created_ms: now,
            })?;
            state.consumers.push(Consumer {
                name: name.to_owned(),
                arn: String::new(),
                created_ms: now,
            });
            ticket
        };
        self.sync(ticket)?;
        let consumer = Consumer {
            name: name.to_owned(),
            arn: String::new(),
            created_ms: now,
        };
        Ok(ConsumerInfo {
            name: name.to_owned(),
            arn: self.consumer_arn(&consumer),
            created_ms: now,
        })
    }

    pub(super) fn deregister_consumer(&self, name: &str) -> Result<(), AwsError> {
        let ticket = {
            let mut state = lock(&self.state);
            let ticket = self.write_entry(&Entry::Deregister {
                name: name.to_owned(),
            })?;
            state.consumers.retain(|c| c.name != name);
            ticket
        };
        self.sync(ticket)
    }
}

pub(super) fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
