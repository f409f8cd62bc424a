//! Kinesis Data Streams, awsJson1.1, and the in-process API that event source mappings read from.
//!
//! # Wire operations
//! CreateStream, PutRecord, PutRecords, GetShardIterator (TRIM_HORIZON, LATEST, AT_SEQUENCE_NUMBER,
//! AFTER_SEQUENCE_NUMBER, AT_TIMESTAMP), GetRecords, ListShards, DescribeStream, DescribeStreamSummary,
//! UpdateShardCount (UNIFORM_SCALING), RegisterStreamConsumer, DescribeStreamConsumer, ListStreamConsumers,
//! DeregisterStreamConsumer. Anything else answers `UnknownOperationException`.
//!
//! As in AWS: partition keys (1–256 characters) are hashed with MD5 into a 128-bit hash key that picks the
//! shard (or `ExplicitHashKey`); sequence numbers are 56-digit decimal strings, increasing within a shard;
//! PutRecords takes at most 500 records and fails per record; each shard takes at most 1,000 records and
//! 1 MiB per second (a token bucket of one second), beyond which records fail with
//! `ProvisionedThroughputExceededException`; UpdateShardCount closes every open shard (its
//! `EndingSequenceNumber` set) and opens children covering the hash space uniformly, each naming the parents
//! its range overlaps, at most ×2 / ÷2 per call and 10 calls per rolling 24 hours.
//!
//! Records are kept for the retention period, 24 hours (AWS's default; `RetentionPeriodHours` is not read):
//! older ones are trimmed from the front of their shard. `TRIM_HORIZON` starts at the oldest record kept,
//! and an `AT_SEQUENCE_NUMBER` / `AFTER_SEQUENCE_NUMBER` iterator whose record was trimmed starts there too
//! (as in AWS, reading resumes at the trim horizon; the records in between are lost). Sequence numbers keep
//! counting across the trim.
//!
//! Local simplifications (documented, deliberate): streams and consumers are `ACTIVE` at once (AWS passes
//! through `CREATING` / `UPDATING`); read limits (5 GetRecords/s, 2 MB/s per shard) are not enforced; shard
//! iterators expire after 5 minutes as in AWS; closed shards stay listed after their records expired.
//!
//! # Storage
//! A persisted stream keeps its records' partition keys and data in its log only: memory holds an index of
//! 24 bytes per record kept (arrival time, the log offset of the PutRecords entry that holds it, its slot in
//! that entry), and GetRecords reads the entries it needs back by offset ([`crate::store::Log::read_at`]).
//! Reopening streams the log entry by entry into that index, trimming as it goes; when at least a fifth of
//! the records in the log are past retention, the log is rewritten without them (a `base` entry records
//! where each shard's positions resume), so disk space is reclaimed at restart. A stream without a state
//! directory (tests) keeps its PutRecords batches in memory until every record of a batch is trimmed.
//!
//! Metering ([`crate::meter`]): PutRecord(s) count the records written (bytes, PUT payload units, on-demand KB)
//! and those refused by the write limit; GetRecords counts the call and the bytes returned.
//!
//! # In-process API (for event source mappings)
//! ```ignore
//! let stream = aws.kinesis.stream("tally-dev-events")?;          // by name or ARN
//! for shard in stream.shards() { shard.id; shard.parents; shard.closed; }   // lineage, oldest first
//! let mut cursor = stream.cursor(&shard.id, &Position::TrimHorizon)?;  // or AfterSequence(checkpoint)
//! let mut changed = stream.subscribe(&shard.id)?;                  // tokio watch, bumps on append and close
//! loop {
//!     let batch = stream.read(&cursor, 100)?;                      // durable records only
//!     cursor = batch.next.clone();
//!     if batch.records.is_empty() {
//!         if batch.end_of_shard { break }                          // closed and drained: go to children
//!         changed.changed().await?;                                // push: wakes within microseconds
//!     }
//! }
//! ```
//! A record is readable (and its shard's watch bumped) only once it is durable, that is when the PutRecord(s)
//! that wrote it is acknowledged: a mapping never processes a record that a crash could take back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::input::{opt_array, opt_f64, opt_i64, opt_str, req_str};
use super::{epoch_seconds, now_ms, AwsError, LocalAws, ACCOUNT_ID};
use crate::meter::Meter;
use crate::store::{lock, resource_dirs, sync_dir, Log};

const MAX_PUT_RECORDS: usize = 500;
const MAX_RECORD_BYTES: usize = 1024 * 1024;
const MAX_PUT_RECORDS_BYTES: usize = 5 * 1024 * 1024;
const MAX_GET_RECORDS_BYTES: usize = 10 * 1024 * 1024;
const SHARD_RECORDS_PER_SECOND: f64 = 1000.0;
const SHARD_BYTES_PER_SECOND: f64 = 1024.0 * 1024.0;
const ITERATOR_LIFETIME_MS: i64 = 5 * 60 * 1000;
const RESHARDS_PER_DAY: usize = 10;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// How long records are kept: AWS's default retention period.
const RETENTION_MS: i64 = DAY_MS;

/// Dispatches one Kinesis operation.
pub(crate) fn call(aws: &LocalAws, operation: &str, input: Value) -> Result<Value, AwsError> {
    let k = &aws.kinesis;
    match operation {
        "CreateStream" => k.create_stream(&input),
        "PutRecord" => k.put_record(&input, &aws.meter),
        "PutRecords" => k.put_records(&input, &aws.meter),
        "GetShardIterator" => k.get_shard_iterator(&input),
        "GetRecords" => k.get_records(&input, &aws.meter),
        "ListShards" => k.list_shards(&input),
        "DescribeStream" => k.describe_stream(&input),
        "DescribeStreamSummary" => k.describe_stream_summary(&input),
        "UpdateShardCount" => k.update_shard_count(&input),
        "RegisterStreamConsumer" => k.register_consumer(&input),
        "DescribeStreamConsumer" => k.describe_consumer(&input),
        "ListStreamConsumers" => k.list_consumers(&input),
        "DeregisterStreamConsumer" => k.deregister_consumer(&input),
        "ListStreams" => k.list_streams(),
        other => Err(AwsError::unsupported("Kinesis", other)),
    }
}

/// All streams of the local endpoint.
#[derive(Debug)]
pub struct Kinesis {
    region: String,
    dir: Option<PathBuf>,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    /// Added to the wall clock (tests move time to see records expire).
    clock_skew: Arc<AtomicI64>,
}

/// One stream: its shards, records and consumers.
#[derive(Debug)]
pub struct Stream {
    name: String,
    arn: String,
    created_ms: i64,
    on_demand: bool,
    log: Option<Log>,
    retention_ms: i64,
    clock_skew: Arc<AtomicI64>,
    state: Mutex<StreamState>,
}

#[derive(Debug)]
struct StreamState {
    shards: Vec<Shard>,
    consumers: Vec<Consumer>,
    reshards_ms: Vec<i64>,
    /// A stream without a log: its PutRecords batches (partition key, data), by number.
    batches: BTreeMap<u64, Arc<Batch>>,
    next_batch: u64,
}

/// The records of one PutRecord(s) call: (partition key, data), in slot order.
type Batch = Vec<(String, Bytes)>;

/// Where one kept record is: its batch (the log offset of its Put entry, or the number of an in-memory batch)
/// and its slot in it, with its arrival time (for the trim and `AT_TIMESTAMP`). 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RecordRef {
    arrival_ms: i64,
    batch: u64,
    slot: u32,
}

#[derive(Debug)]
struct Shard {
    index: u32,
    parents: Vec<u32>,
    start: u128,
    end: u128,
    closed: bool,
    /// The position of `records[0]`: the records before it were trimmed.
    base: u64,
    /// The records kept, in position order.
    records: VecDeque<RecordRef>,
    /// Positions below `visible` are durable and readable.
    visible: u64,
    /// Write tokens (records, bytes) and when they were last refilled.
    tokens: (f64, f64, i64),
    signal: watch::Sender<u64>,
}

#[derive(Debug, Clone)]
struct Consumer {
    name: String,
    arn: String,
    created_ms: i64,
}

/// A sequence number: the shard it belongs to and its place in that shard. Printed as 56 decimal digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SequenceNumber {
    shard: u32,
    position: u64,
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
    index: u32,
    /// The position of the next record to read.
    next: u64,
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

/// One log entry of a stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Entry {
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

/// Stream and consumer names: `[a-zA-Z0-9_.-]{1,128}`.
fn check_name(name: &str, member: &str) -> Result<(), AwsError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        return Ok(());
    }
    Err(AwsError::validation(format!(
        "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"
    )))
}

pub fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

fn parse_shard_id(id: &str) -> Option<u32> {
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
fn uniform_ranges(count: u32) -> Vec<(u128, u128)> {
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

fn not_found(kind: &str, name: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("{kind} {name} under account {ACCOUNT_ID} not found."),
    )
}

fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidArgumentException", message)
}

impl Kinesis {
    pub(crate) fn new(region: &str, dir: Option<PathBuf>) -> Kinesis {
        Kinesis {
            region: region.to_owned(),
            dir,
            streams: RwLock::new(BTreeMap::new()),
            clock_skew: Arc::default(),
        }
    }

    /// Reloads every stream persisted under `dir`.
    pub(crate) fn open(region: &str, dir: &Path) -> Result<Kinesis, AwsError> {
        let kinesis = Kinesis::new(region, Some(dir.to_owned()));
        for stream_dir in resource_dirs(dir).map_err(|e| AwsError::storage(dir, e))? {
            let Some(name) = stream_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let path = stream_dir.join("log");
            match kinesis.reopen(name, &path)? {
                Some(stream) => {
                    write_lock(&kinesis.streams).insert(name.to_owned(), Arc::new(stream));
                }
                None => {
                    tracing::warn!(message = "skipping stream directory without a create entry", path = %path.display())
                }
            }
        }
        Ok(kinesis)
    }

    /// Tests: moves this endpoint's Kinesis clock (arrival times, the retention trim) by `by_ms`.
    #[doc(hidden)]
    pub fn shift_clock(&self, by_ms: i64) {
        self.clock_skew.fetch_add(by_ms, Ordering::Relaxed);
    }

    fn now(&self) -> i64 {
        now_ms() + self.clock_skew.load(Ordering::Relaxed)
    }

    /// Replays one stream's log into its index (trimming past the retention period as it goes), rewriting
    /// the log when much of it has expired. `None` when the log does not start with the stream's creation.
    fn reopen(&self, name: &str, path: &Path) -> Result<Option<Stream>, AwsError> {
        let horizon = self.now() - RETENTION_MS;
        let mut replay = Replay::default();
        let log = Log::open_with(path, |offset, payload| {
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
            compact(path, &mut state).map_err(|e| AwsError::storage(path, e))?
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

    fn make_stream(
        &self,
        name: &str,
        created_ms: i64,
        on_demand: bool,
        log: Option<Log>,
        state: StreamState,
    ) -> Stream {
        Stream {
            name: name.to_owned(),
            arn: format!("arn:aws:kinesis:{}:{ACCOUNT_ID}:stream/{name}", self.region),
            created_ms,
            on_demand,
            log,
            retention_ms: RETENTION_MS,
            clock_skew: self.clock_skew.clone(),
            state: Mutex::new(state),
        }
    }

    /// The stream with this name or ARN.
    pub fn stream(&self, name_or_arn: &str) -> Result<Arc<Stream>, AwsError> {
        let name = match name_or_arn.strip_prefix("arn:") {
            Some(_) => name_or_arn
                .split_once(":stream/")
                .map(|(_, rest)| rest.split('/').next().unwrap_or(rest))
                .ok_or_else(|| invalid(format!("{name_or_arn} is not a Kinesis stream ARN")))?,
            None => name_or_arn,
        };
        read_lock(&self.streams)
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("Stream", name))
    }

    /// Every stream, by name.
    pub fn streams(&self) -> Vec<Arc<Stream>> {
        read_lock(&self.streams).values().cloned().collect()
    }

    /// Creates a stream (the template loader and tests). `shards` 1–500 for provisioned streams; on-demand
    /// streams start with 4 shards, as in AWS.
    pub fn create(
        &self,
        name: &str,
        shards: Option<u32>,
        on_demand: bool,
    ) -> Result<Arc<Stream>, AwsError> {
        check_name(name, "streamName")?;
        let shards = match (shards, on_demand) {
            (Some(n), _) if (1..=500).contains(&n) => n,
            (Some(n), _) => {
                return Err(invalid(format!(
                    "ShardCount {n} is out of range: use 1 to 500 shards per stream"
                )))
            }
            (None, true) => 4,
            (None, false) => {
                return Err(invalid(
                    "ShardCount is required for a PROVISIONED stream (or use ON_DEMAND mode)",
                ))
            }
        };
        let mut streams = write_lock(&self.streams);
        if streams.contains_key(name) {
            return Err(AwsError::client(
                "ResourceInUseException",
                format!("Stream {name} under account {ACCOUNT_ID} already exists."),
            ));
        }
        let created_ms = self.now();
        let log = match &self.dir {
            Some(dir) => {
                let path = dir.join(name).join("log");
                let (log, _) = Log::open(&path).map_err(|e| AwsError::storage(&path, e))?;
                let entry = serde_json::to_vec(&Entry::Create {
                    shards,
                    created_ms,
                    on_demand,
                })
                .map_err(|e| AwsError::internal(e.to_string()))?;
                log.append(&entry)
                    .map_err(|e| AwsError::storage(&path, e))?;
                Some(log)
            }
            None => None,
        };
        let state = StreamState::new(shards, created_ms);
        let stream = Arc::new(self.make_stream(name, created_ms, on_demand, log, state));
        streams.insert(name.to_owned(), stream.clone());
        Ok(stream)
    }

    fn stream_of(&self, input: &Value) -> Result<Arc<Stream>, AwsError> {
        match (opt_str(input, "StreamARN")?, opt_str(input, "StreamName")?) {
            (Some(arn), _) => self.stream(arn),
            (None, Some(name)) => self.stream(name),
            (None, None) => Err(invalid("either StreamName or StreamARN must be given")),
        }
    }

    fn create_stream(&self, input: &Value) -> Result<Value, AwsError> {
        let name = req_str(input, "StreamName")?;
        let on_demand = match input
            .pointer("/StreamModeDetails/StreamMode")
            .and_then(Value::as_str)
        {
            None | Some("PROVISIONED") => false,
            Some("ON_DEMAND") => true,
            Some(other) => {
                return Err(invalid(format!(
                    "StreamMode {other} is not PROVISIONED or ON_DEMAND"
                )))
            }
        };
        let shards = opt_i64(input, "ShardCount")?
            .map(|n| {
                u32::try_from(n)
                    .map_err(|_| invalid(format!("ShardCount {n} is out of range: use 1 to 500")))
            })
            .transpose()?;
        self.create(name, shards, on_demand)?;
        Ok(json!({}))
    }

    fn put_record(&self, input: &Value, meter: &Meter) -> Result<Value, AwsError> {
        let stream = self.stream_of(input)?;
        let record = parse_put(input, "")?;
        let sizes = [record.size()];
        let mut results = stream.put(vec![record])?;
        meter_put(meter, &stream.name, &sizes, &results);
        match results.pop() {
            Some(Ok((shard, seq))) => {
                Ok(json!({"ShardId": shard, "SequenceNumber": seq.to_string()}))
            }
            Some(Err(error)) => Err(error),
            None => Err(AwsError::internal("no result for the record")),
        }
    }

    fn put_records(&self, input: &Value, meter: &Meter) -> Result<Value, AwsError> {
        let stream = self.stream_of(input)?;
        let records =
            opt_array(input, "Records")?.ok_or_else(|| super::input::missing("Records"))?;
        if records.is_empty() || records.len() > MAX_PUT_RECORDS {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value with {} records at 'records' failed to satisfy constraint: Member must have length less than or equal to 500 and greater than or equal to 1",
                records.len()
            )));
        }
        let mut parsed = Vec::with_capacity(records.len());
        let mut total = 0;
        for (i, record) in records.iter().enumerate() {
            let record = parse_put(record, &format!("records.{}.member.", i + 1))?;
            total += record.data.len() + record.partition_key.len();
            parsed.push(record);
        }
        if total > MAX_PUT_RECORDS_BYTES {
            return Err(invalid(format!(
                "Records size exceeds 5 MB limit: the request holds {total} bytes of data and partition keys; send fewer records per call"
            )));
        }
        let sizes: Vec<u64> = parsed.iter().map(PutInput::size).collect();
        let results = stream.put(parsed)?;
        meter_put(meter, &stream.name, &sizes, &results);
        let failed = results.iter().filter(|r| r.is_err()).count();
        let records: Vec<Value> = results
            .into_iter()
            .map(|result| match result {
                Ok((shard, seq)) => json!({"SequenceNumber": seq.to_string(), "ShardId": shard}),
                Err(error) => json!({"ErrorCode": error.code, "ErrorMessage": error.message}),
            })
            .collect();
        Ok(json!({"FailedRecordCount": failed, "Records": records}))
    }

    fn get_shard_iterator(&self, input: &Value) -> Result<Value, AwsError> {
        let stream = self.stream_of(input)?;
        let shard = req_str(input, "ShardId")?;
        let kind = req_str(input, "ShardIteratorType")?;
        let sequence = || {
            opt_str(input, "StartingSequenceNumber")?
                .map(str::to_owned)
                .ok_or_else(|| {
                    invalid(format!(
                        "StartingSequenceNumber is required for ShardIteratorType {kind}"
                    ))
                })
        };
        let position = match kind {
            "TRIM_HORIZON" => Position::TrimHorizon,
            "LATEST" => Position::Latest,
            "AT_SEQUENCE_NUMBER" => Position::AtSequence(sequence()?),
            "AFTER_SEQUENCE_NUMBER" => Position::AfterSequence(sequence()?),
            "AT_TIMESTAMP" => {
                let seconds = opt_f64(input, "Timestamp")?
                    .ok_or_else(|| invalid("Timestamp is required for ShardIteratorType AT_TIMESTAMP"))?;
                Position::AtTimestamp((seconds * 1000.0).round() as i64)
            }
            other => {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'shardIteratorType' failed to satisfy constraint: Member must satisfy enum value set: [AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER, TRIM_HORIZON, LATEST, AT_TIMESTAMP]"
                )))
            }
        };
        let cursor = stream.cursor(shard, &position)?;
        Ok(json!({"ShardIterator": encode_iterator(&stream.name, &cursor, now_ms())}))
    }

    fn get_records(&self, input: &Value, meter: &Meter) -> Result<Value, AwsError> {
        let iterator = req_str(input, "ShardIterator")?;
        let limit = match opt_i64(input, "Limit")? {
            None => 10_000,
            Some(n @ 1..=10_000) => n as usize,
            Some(n) => {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 10000"
                )))
            }
        };
        let (stream_name, cursor, issued_ms) = decode_iterator(iterator)?;
        if now_ms() - issued_ms > ITERATOR_LIFETIME_MS {
            return Err(AwsError::client(
                "ExpiredIteratorException",
                format!("Iterator expired. The iterator was created at time {issued_ms} while right now it is {}; get a new iterator with GetShardIterator", now_ms()),
            ));
        }
        let stream = self.stream(&stream_name)?;
        let batch = stream.read(&cursor, limit)?;
        meter.kinesis_get_records(&stream.name, batch.bytes());
        let records: Vec<Value> = batch.records.iter().map(record_json).collect();
        let mut out = json!({
            "Records": records,
            "MillisBehindLatest": batch.millis_behind_latest,
        });
        if batch.end_of_shard {
            out["NextShardIterator"] = Value::Null;
            let children: Vec<Value> = stream
                .children(cursor.index)
                .into_iter()
                .map(|child| {
                    json!({
                        "ShardId": child.id,
                        "ParentShards": child.parents,
                        "HashKeyRange": {
                            "StartingHashKey": child.starting_hash_key.to_string(),
                            "EndingHashKey": child.ending_hash_key.to_string(),
                        },
                    })
                })
                .collect();
            out["ChildShards"] = json!(children);
        } else {
            out["NextShardIterator"] = json!(encode_iterator(&stream.name, &batch.next, now_ms()));
        }
        Ok(out)
    }

    fn list_shards(&self, input: &Value) -> Result<Value, AwsError> {
        let (stream, offset) = match opt_str(input, "NextToken")? {
            Some(token) => {
                if input.get("StreamName").is_some() {
                    return Err(invalid(
                        "NextToken and StreamName cannot be provided together",
                    ));
                }
                let (name, offset) = decode_token(token)?;
                (self.stream(&name)?, offset)
            }
            None => (self.stream_of(input)?, 0),
        };
        let max = match opt_i64(input, "MaxResults")? {
            None => 1000,
            Some(n @ 1..=10_000) => n as usize,
            Some(n) => {
                return Err(invalid(format!(
                    "MaxResults {n} is out of range: use 1 to 10000"
                )))
            }
        };
        let mut shards = stream.shards();
        if let Some(after) = opt_str(input, "ExclusiveStartShardId")? {
            shards.retain(|s| s.id.as_str() > after);
        }
        if let Some(filter) = input.get("ShardFilter") {
            match filter.get("Type").and_then(Value::as_str) {
                Some("AT_LATEST") => shards.retain(|s| !s.closed),
                Some("AFTER_SHARD_ID") => {
                    let after = filter
                        .get("ShardId")
                        .and_then(Value::as_str)
                        .ok_or_else(|| invalid("ShardFilter AFTER_SHARD_ID needs ShardId"))?;
                    shards.retain(|s| s.id.as_str() > after);
                }
                // Without retention trimming every shard is still at or after the trim horizon.
                Some(
                    "AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_TIMESTAMP" | "FROM_TIMESTAMP",
                ) => {}
                other => return Err(invalid(format!("ShardFilter Type {other:?} is not valid"))),
            }
        }
        let page: Vec<Value> = shards
            .iter()
            .skip(offset)
            .take(max)
            .map(shard_json)
            .collect();
        let mut out = json!({"Shards": page});
        if offset + max < shards.len() {
            out["NextToken"] = json!(encode_token(&stream.name, offset + max));
        }
        Ok(out)
    }

    fn describe_stream(&self, input: &Value) -> Result<Value, AwsError> {
        let stream = self.stream_of(input)?;
        let limit = opt_i64(input, "Limit")?.unwrap_or(100).clamp(1, 10_000) as usize;
        let mut shards = stream.shards();
        if let Some(after) = opt_str(input, "ExclusiveStartShardId")? {
            shards.retain(|s| s.id.as_str() > after);
        }
        let more = shards.len() > limit;
        let page: Vec<Value> = shards.iter().take(limit).map(shard_json).collect();
        Ok(json!({"StreamDescription": {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": stream.mode()},
            "Shards": page,
            "HasMoreShards": more,
            "RetentionPeriodHours": stream.retention_ms / 3_600_000,
            "StreamCreationTimestamp": epoch_seconds(stream.created_ms),
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
        }}))
    }

    fn describe_stream_summary(&self, input: &Value) -> Result<Value, AwsError> {
        let stream = self.stream_of(input)?;
        let state = lock(&stream.state);
        let open = state.shards.iter().filter(|s| !s.closed).count();
        Ok(json!({"StreamDescriptionSummary": {
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": {"StreamMode": stream.mode()},
            "RetentionPeriodHours": stream.retention_ms / 3_600_000,
            "StreamCreationTimestamp": epoch_seconds(stream.created_ms),
            "EnhancedMonitoring": [{"ShardLevelMetrics": []}],
            "EncryptionType": "NONE",
            "OpenShardCount": open,
            "ConsumerCount": state.consumers.len(),
        }}))
    }

    fn update_shard_count(&self, input: &Value) -> Result<Value, AwsError> {
        let stream = self.stream_of(input)?;
        let target = opt_i64(input, "TargetShardCount")?
            .ok_or_else(|| super::input::missing("TargetShardCount"))?;
        match req_str(input, "ScalingType")? {
            "UNIFORM_SCALING" => {}
            other => {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value '{other}' at 'scalingType' failed to satisfy constraint: Member must satisfy enum value set: [UNIFORM_SCALING]"
                )))
            }
        }
        let target = u32::try_from(target)
            .ok()
            .filter(|t| (1..=10_000).contains(t))
            .ok_or_else(|| {
                AwsError::validation(format!(
                    "TargetShardCount {target} must be between 1 and 10000"
                ))
            })?;
        let current = stream.reshard(target)?;
        Ok(json!({
            "StreamName": stream.name,
            "StreamARN": stream.arn,
            "CurrentShardCount": current,
            "TargetShardCount": target,
        }))
    }

    fn register_consumer(&self, input: &Value) -> Result<Value, AwsError> {
        let stream = self.stream(req_str(input, "StreamARN")?)?;
        let name = req_str(input, "ConsumerName")?;
        let consumer = stream.register_consumer(name)?;
        Ok(json!({"Consumer": {
            "ConsumerName": consumer.name,
            "ConsumerARN": consumer.arn,
            "ConsumerStatus": "ACTIVE",
            "ConsumerCreationTimestamp": epoch_seconds(consumer.created_ms),
        }}))
    }

    fn find_consumer(&self, input: &Value) -> Result<(Arc<Stream>, ConsumerInfo), AwsError> {
        if let Some(arn) = opt_str(input, "ConsumerARN")? {
            let stream = self.stream(arn)?;
            let found = stream.consumers().into_iter().find(|c| c.arn == arn);
            return found
                .map(|c| (stream, c))
                .ok_or_else(|| not_found("Consumer", arn));
        }
        let stream = self.stream(
            opt_str(input, "StreamARN")?
                .ok_or_else(|| invalid("either ConsumerARN or StreamARN and ConsumerName"))?,
        )?;
        let name = req_str(input, "ConsumerName")?;
        let found = stream.consumers().into_iter().find(|c| c.name == name);
        found
            .map(|c| (stream, c))
            .ok_or_else(|| not_found("Consumer", name))
    }

    fn describe_consumer(&self, input: &Value) -> Result<Value, AwsError> {
        let (stream, consumer) = self.find_consumer(input)?;
        Ok(json!({"ConsumerDescription": {
            "ConsumerName": consumer.name,
            "ConsumerARN": consumer.arn,
            "ConsumerStatus": "ACTIVE",
            "ConsumerCreationTimestamp": epoch_seconds(consumer.created_ms),
            "StreamARN": stream.arn,
        }}))
    }

    fn deregister_consumer(&self, input: &Value) -> Result<Value, AwsError> {
        let (stream, consumer) = self.find_consumer(input)?;
        stream.deregister_consumer(&consumer.name)?;
        Ok(json!({}))
    }

    fn list_consumers(&self, input: &Value) -> Result<Value, AwsError> {
        let stream = self.stream(req_str(input, "StreamARN")?)?;
        let consumers: Vec<Value> = stream
            .consumers()
            .into_iter()
            .map(|c| {
                json!({
                    "ConsumerName": c.name,
                    "ConsumerARN": c.arn,
                    "ConsumerStatus": "ACTIVE",
                    "ConsumerCreationTimestamp": epoch_seconds(c.created_ms),
                })
            })
            .collect();
        Ok(json!({"Consumers": consumers}))
    }

    fn list_streams(&self) -> Result<Value, AwsError> {
        let streams = self.streams();
        let names: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
        let summaries: Vec<Value> = streams
            .iter()
            .map(|s| {
                json!({
                    "StreamName": s.name, "StreamARN": s.arn, "StreamStatus": "ACTIVE",
                    "StreamModeDetails": {"StreamMode": s.mode()},
                    "StreamCreationTimestamp": epoch_seconds(s.created_ms),
                })
            })
            .collect();
        Ok(json!({"StreamNames": names, "HasMoreStreams": false, "StreamSummaries": summaries}))
    }
}

/// One record of a put: written (shard id, sequence number) or refused.
type PutOutcome = Result<(String, SequenceNumber), AwsError>;

/// Meters one put: the records written, and those refused by their shard's write limit (other refusals, such
/// as a missing open shard, are the endpoint's failures and not billed).
fn meter_put(meter: &Meter, stream: &str, sizes: &[u64], results: &[PutOutcome]) {
    let accepted: Vec<u64> = sizes
        .iter()
        .zip(results)
        .filter(|(_, r)| r.is_ok())
        .map(|(size, _)| *size)
        .collect();
    let throttled = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code == "ProvisionedThroughputExceededException"))
        .count() as u64;
    meter.kinesis_put(stream, &accepted, throttled);
}

/// A record to put, validated.
struct PutInput {
    partition_key: String,
    hash: u128,
    data: Bytes,
}

impl PutInput {
    /// What Kinesis bills and limits: data plus partition key bytes.
    fn size(&self) -> u64 {
        (self.data.len() + self.partition_key.len()) as u64
    }
}

fn parse_put(input: &Value, at: &str) -> Result<PutInput, AwsError> {
    let partition_key = req_str(input, "PartitionKey")?;
    let chars = partition_key.chars().count();
    if !(1..=256).contains(&chars) {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{partition_key}' at '{at}partitionKey' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    let data = STANDARD.decode(req_str(input, "Data")?).map_err(|e| {
        AwsError::client(
            "SerializationException",
            format!("Data at '{at}data' is not base64: {e}"),
        )
    })?;
    if data.len() > MAX_RECORD_BYTES {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at '{at}data' failed to satisfy constraint: Member must have length less than or equal to 1048576 (got {} bytes)",
            data.len()
        )));
    }
    let hash = match opt_str(input, "ExplicitHashKey")? {
        Some(text) => text
            .parse::<u128>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                invalid(format!(
                    "ExplicitHashKey {text} must be a decimal integer from 0 to 2^128 - 1"
                ))
            })?,
        None => hash_key(partition_key),
    };
    Ok(PutInput {
        partition_key: partition_key.to_owned(),
        hash,
        data: Bytes::from(data),
    })
}

fn record_json(record: &Record) -> Value {
    json!({
        "SequenceNumber": record.sequence_number.to_string(),
        "ApproximateArrivalTimestamp": epoch_seconds(record.arrival_ms),
        "Data": STANDARD.encode(&record.data),
        "PartitionKey": record.partition_key,
    })
}

fn shard_json(shard: &ShardInfo) -> Value {
    let mut out = json!({
        "ShardId": shard.id,
        "HashKeyRange": {
            "StartingHashKey": shard.starting_hash_key.to_string(),
            "EndingHashKey": shard.ending_hash_key.to_string(),
        },
        "SequenceNumberRange": {"StartingSequenceNumber": shard.starting_sequence_number},
    });
    if let Some(parent) = shard.parents.first() {
        out["ParentShardId"] = json!(parent);
    }
    if let Some(adjacent) = shard.parents.get(1) {
        out["AdjacentParentShardId"] = json!(adjacent);
    }
    if let Some(ending) = &shard.ending_sequence_number {
        out["SequenceNumberRange"]["EndingSequenceNumber"] = json!(ending);
    }
    out
}

fn encode_iterator(stream: &str, cursor: &ShardCursor, issued_ms: i64) -> String {
    STANDARD.encode(format!(
        "tally-it|{stream}|{}|{}|{issued_ms}",
        cursor.index, cursor.next
    ))
}

fn decode_iterator(text: &str) -> Result<(String, ShardCursor, i64), AwsError> {
    let bad = || {
        invalid(format!(
            "Invalid ShardIterator: {} is not an iterator this endpoint issued; get one with GetShardIterator",
            text.chars().take(40).collect::<String>()
        ))
    };
    let decoded = STANDARD.decode(text).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let parts: Vec<&str> = decoded.split('|').collect();
    let [magic, stream, index, next, issued] = parts.as_slice() else {
        return Err(bad());
    };
    if *magic != "tally-it" {
        return Err(bad());
    }
    let index: u32 = index.parse().map_err(|_| bad())?;
    let next = next.parse().map_err(|_| bad())?;
    let issued = issued.parse().map_err(|_| bad())?;
    Ok((
        (*stream).to_owned(),
        ShardCursor {
            shard_id: shard_id(index),
            index,
            next,
        },
        issued,
    ))
}

fn encode_token(stream: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{stream}|{offset}"))
}

fn decode_token(token: &str) -> Result<(String, usize), AwsError> {
    let bad = || {
        invalid(format!(
            "NextToken {token} is not valid; start again without it"
        ))
    };
    let decoded = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (name, offset) = decoded.split_once('|').ok_or_else(bad)?;
    Ok((name.to_owned(), offset.parse().map_err(|_| bad())?))
}

impl Shard {
    fn new(index: u32, parents: Vec<u32>, start: u128, end: u128, now: i64) -> Shard {
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

    fn info(&self) -> ShardInfo {
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
    fn end(&self) -> u64 {
        self.base + self.records.len() as u64
    }

    /// The kept record at `position`, if any.
    fn at(&self, position: u64) -> Option<&RecordRef> {
        let offset = usize::try_from(position.checked_sub(self.base)?).ok()?;
        self.records.get(offset)
    }

    /// Drops the records that arrived before `horizon` from the front; returns how many.
    fn trim(&mut self, horizon: i64) -> usize {
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
    fn take(&mut self, bytes: usize, now: i64) -> bool {
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
    fn new(shards: u32, created_ms: i64) -> StreamState {
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

    fn open_shard_for(&self, hash: u128) -> Option<usize> {
        self.shards
            .iter()
            .position(|s| !s.closed && s.start <= hash && hash <= s.end)
    }

    fn shard_mut(&mut self, index: u32) -> Option<&mut Shard> {
        self.shards.iter_mut().find(|s| s.index == index)
    }

    /// Appends a record to the shard at `shard` (its place in `shards`); returns its sequence number.
    fn append(&mut self, shard: usize, record: RecordRef) -> SequenceNumber {
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
    fn trim(&mut self, horizon: i64) -> usize {
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
    fn resident_bytes(&self) -> usize {
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

    fn reshard(&mut self, target: u32, now: i64) {
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

    /// Applies one log entry (at `offset`) to the index.
    fn replay(&mut self, offset: u64, entry: Entry) {
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
struct Replay {
    /// Created at, on demand, the index so far; `None` until the create entry.
    stream: Option<(i64, bool, StreamState)>,
    /// Records dropped as past retention.
    trimmed: usize,
    /// The first entry was not a create: the rest is ignored.
    headless: bool,
}

impl Replay {
    fn entry(&mut self, offset: u64, payload: &[u8], horizon: i64) -> io::Result<()> {
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
fn compact(path: &Path, state: &mut StreamState) -> io::Result<Log> {
    let tmp = path.with_extension("rewrite");
    match std::fs::remove_file(&tmp) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let (out, _) = Log::open(&tmp)?;
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
    Log::open_with(path, |_, _| Ok(()))
}

impl Stream {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn arn(&self) -> &str {
        &self.arn
    }

    fn mode(&self) -> &'static str {
        if self.on_demand {
            "ON_DEMAND"
        } else {
            "PROVISIONED"
        }
    }

    fn write_entry(&self, entry: &Entry) -> Result<Option<u64>, AwsError> {
        super::log_write(self.log.as_ref(), entry)
    }

    fn sync(&self, ticket: Option<u64>) -> Result<(), AwsError> {
        super::log_sync(self.log.as_ref(), ticket)
    }

    fn now(&self) -> i64 {
        now_ms() + self.clock_skew.load(Ordering::Relaxed)
    }

    /// Bytes of memory this stream's kept records take (the index; for a stream without a log, the data).
    pub fn resident_bytes(&self) -> usize {
        lock(&self.state).resident_bytes()
    }

    /// Puts records (in order), each either written (shard id, sequence number) or refused by its shard's
    /// write limit. Returns once the written ones are durable and readable.
    fn put(&self, records: Vec<PutInput>) -> Result<Vec<PutOutcome>, AwsError> {
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
    fn store_batch(
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
    fn load_batch(
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

    fn consumer_arn(&self, consumer: &Consumer) -> String {
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

    fn shard_index(&self, state: &StreamState, shard: &str) -> Result<usize, AwsError> {
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

    fn deregister_consumer(&self, name: &str) -> Result<(), AwsError> {
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

fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_ranges_cover_the_hash_space_without_gaps() {
        for n in [1u32, 2, 3, 4, 5, 7, 10, 500] {
            let ranges = uniform_ranges(n);
            assert_eq!(ranges.len(), n as usize);
            assert_eq!(ranges[0].0, 0);
            assert_eq!(ranges[n as usize - 1].1, u128::MAX);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "n = {n}");
            }
        }
        assert_eq!(uniform_ranges(2)[1].0, 1u128 << 127);
    }

    #[test]
    fn sequence_numbers_round_trip_and_order() {
        fn check(shard: u32, position: u64) {
            let seq = SequenceNumber { shard, position };
            let text = seq.to_string();
            assert_eq!(text.len(), 56, "{text}");
            assert_eq!(SequenceNumber::parse(&text), Some(seq));
        }
        check(0, 0);
        check(7, 1);
        check(999_999, u64::MAX);
        let a = SequenceNumber {
            shard: 1,
            position: 9,
        }
        .to_string();
        let b = SequenceNumber {
            shard: 1,
            position: 10,
        }
        .to_string();
        assert!(a < b, "string order follows numeric order");
    }

    #[test]
    fn malformed_sequence_numbers_are_refused() {
        for text in [
            "",
            "1",
            "abc",
            &"9".repeat(56),
            &format!("49{}", "x".repeat(54)),
            &"4".repeat(57),
        ] {
            assert_eq!(SequenceNumber::parse(text), None, "{text}");
        }
    }

    #[test]
    fn hash_key_is_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
    }

    #[test]
    fn malformed_iterators_are_invalid_argument() {
        for text in [
            "",
            "nope",
            "!!!",
            &STANDARD.encode("tally-it|s|x|0|0"),
            &STANDARD.encode("other|s|0|0|0"),
        ] {
            let error = decode_iterator(text).expect_err(text);
            assert_eq!(error.code, "InvalidArgumentException", "{text}");
        }
    }

    #[test]
    fn write_limit_refills_over_time() {
        let mut shard = Shard::new(0, Vec::new(), 0, u128::MAX, 0);
        assert!((0..1000).all(|_| shard.take(10, 0)));
        assert!(
            !shard.take(10, 0),
            "the 1001st record in the same second is throttled"
        );
        assert!(
            shard.take(10, 2),
            "2 ms later two records' worth has refilled"
        );
        assert!(
            !shard.take(1024 * 1024 + 1, 5000),
            "a record over 1 MiB never fits"
        );
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tally-kinesis-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn records(prefix: &str, n: usize, size: usize) -> Vec<PutInput> {
        (0..n)
            .map(|i| {
                let partition_key = format!("{prefix}-{i}");
                PutInput {
                    hash: hash_key(&partition_key),
                    data: Bytes::from(format!("{partition_key}:{}", "x".repeat(size))),
                    partition_key,
                }
            })
            .collect()
    }

    /// Every durable record of the shard from `position` on, read in pages as a mapping would.
    fn read_all(stream: &Stream, position: &Position) -> Vec<Record> {
        let mut cursor = stream.cursor(&shard_id(0), position).expect("cursor");
        let mut out = Vec::new();
        loop {
            let batch = stream.read(&cursor, 1000).expect("read");
            if batch.records.is_empty() {
                return out;
            }
            cursor = batch.next;
            out.extend(batch.records);
        }
    }

    fn positions(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.sequence_number.position).collect()
    }

    const HOUR_MS: i64 = 3_600_000;

    /// Records older than the retention period are gone for every reader, before and after a restart, and
    /// sequence numbers keep counting across the trim and the rewrite of the log.
    #[test]
    fn records_past_retention_are_trimmed_and_iterators_start_after_them() {
        let dir = temp_dir("retention");
        let kinesis = Kinesis::open("us-east-1", &dir).expect("open");
        let stream = kinesis.create("s", Some(1), false).expect("create");
        kinesis.shift_clock(-25 * HOUR_MS);
        let old = stream.put(records("old", 400, 100)).expect("put old");
        let old_seq = old[3].as_ref().expect("written").1.to_string();
        kinesis.shift_clock(25 * HOUR_MS);
        stream.put(records("new", 5, 100)).expect("put new");
        let kept = read_all(&stream, &Position::TrimHorizon);
        assert_eq!(positions(&kept), (400..405).collect::<Vec<_>>());
        assert_eq!(kept[0].partition_key, "new-0");
        // A trimmed record's sequence number starts at the trim horizon.
        let at_trimmed = read_all(&stream, &Position::AtSequence(old_seq.clone()));
        assert_eq!(positions(&at_trimmed), (400..405).collect::<Vec<_>>());
        assert_eq!(stream.shards()[0].records, 5);
        let log = dir.join("s").join("log");
        let before = std::fs::metadata(&log).expect("log").len();
        drop((stream, kinesis));

        // Reopen: the log is rewritten without the expired records; positions are unchanged.
        let kinesis = Kinesis::open("us-east-1", &dir).expect("reopen");
        let stream = kinesis.stream("s").expect("stream");
        let after = std::fs::metadata(&log).expect("log").len();
        assert!(after * 10 < before, "log {before} -> {after} bytes");
        let kept = read_all(&stream, &Position::TrimHorizon);
        assert_eq!(positions(&kept), (400..405).collect::<Vec<_>>());
        assert_eq!(kept[4].partition_key, "new-4");
        let more = stream
            .put(records("more", 2, 10))
            .expect("put after rewrite");
        assert_eq!(more[0].as_ref().expect("written").1.position, 405);
        drop((stream, kinesis));
        let kinesis = Kinesis::open("us-east-1", &dir).expect("reopen again");
        let stream = kinesis.stream("s").expect("stream");
        let kept = read_all(&stream, &Position::AtSequence(old_seq));
        assert_eq!(positions(&kept), (400..407).collect::<Vec<_>>());
        assert_eq!(kept[6].partition_key, "more-1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without a log the data is in memory: trimmed batches are let go.
    #[test]
    fn in_memory_streams_let_expired_batches_go() {
        let kinesis = Kinesis::new("us-east-1", None);
        let stream = kinesis.create("m", Some(1), false).expect("create");
        kinesis.shift_clock(-25 * HOUR_MS);
        stream.put(records("old", 500, 1000)).expect("put old");
        kinesis.shift_clock(25 * HOUR_MS);
        assert!(stream.resident_bytes() > 500 * 1000);
        stream.put(records("new", 1, 10)).expect("put new");
        assert!(
            stream.resident_bytes() < 10_000,
            "{}",
            stream.resident_bytes()
        );
        let kept = read_all(&stream, &Position::TrimHorizon);
        assert_eq!(positions(&kept), vec![500]);
    }

    /// Opening a long log builds an index of 24 bytes per record instead of loading the records: before,
    /// the whole file was read into memory and every record's data kept there.
    #[test]
    fn a_long_log_is_indexed_not_loaded() {
        let dir = temp_dir("long");
        let kinesis = Kinesis::open("us-east-1", &dir).expect("open");
        let stream = kinesis.create("l", Some(1), false).expect("create");
        let (batches, per_batch, size) = (40, 500, 600);
        for b in 0..batches {
            // One batch per simulated second keeps under the shard's 1 MiB/s write limit.
            kinesis.shift_clock(1000);
            let written = stream
                .put(records(&format!("b{b}"), per_batch, size))
                .expect("put");
            assert!(written.iter().all(Result::is_ok));
        }
        drop((stream, kinesis));
        let log_bytes = std::fs::metadata(dir.join("l").join("log"))
            .expect("log")
            .len() as usize;
        let kinesis = Kinesis::open("us-east-1", &dir).expect("reopen");
        let stream = kinesis.stream("l").expect("stream");
        let resident = stream.resident_bytes();
        let count = batches * per_batch;
        eprintln!("{count} records: log {log_bytes} bytes, index in memory {resident} bytes");
        assert!(log_bytes > count * size, "{log_bytes}");
        assert!(
            resident <= 2 * count * size_of::<RecordRef>() && resident * 20 < log_bytes,
            "{resident} bytes in memory for a {log_bytes}-byte log"
        );
        let all = read_all(&stream, &Position::TrimHorizon);
        assert_eq!(all.len(), count);
        assert_eq!(
            all[count - 1].partition_key,
            format!("b{}-{}", batches - 1, per_batch - 1)
        );
        assert_eq!(all[777].data.len(), "b1-277:".len() + size);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
