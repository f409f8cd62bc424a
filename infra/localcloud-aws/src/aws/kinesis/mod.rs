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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use serde_json::{json, Value};

use super::input::{opt_array, opt_f64, opt_i64, opt_str, req_str};
use super::{epoch_seconds, now_ms, AwsError, LocalAws, ACCOUNT_ID};
use crate::meter::Meter;
use crate::store::{lock, resource_dirs, Durability, Log};

mod replay;
mod state;
mod wire;

use replay::Entry;
pub use state::{
    hash_key, shard_id, ConsumerInfo, Position, ReadBatch, Record, SequenceNumber, ShardCursor,
    ShardInfo, Stream,
};
use state::{read_lock, write_lock, PutInput, PutOutcome, StreamState};
use wire::{
    check_name, decode_iterator, decode_token, encode_iterator, encode_token, invalid, not_found,
    parse_put, record_json, shard_json,
};

const MAX_PUT_RECORDS: usize = 500;
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
    /// When the streams' logs reach the disk (with a `dir`).
    durability: Durability,
    streams: RwLock<BTreeMap<String, Arc<Stream>>>,
    /// Added to the wall clock (tests move time to see records expire).
    clock_skew: Arc<AtomicI64>,
}

impl Kinesis {
    pub(crate) fn new(region: &str, dir: Option<PathBuf>) -> Kinesis {
        Kinesis {
            region: region.to_owned(),
            dir,
            durability: Durability::default(),
            streams: RwLock::new(BTreeMap::new()),
            clock_skew: Arc::default(),
        }
    }

    /// Reloads every stream persisted under `dir`.
    pub(crate) fn open(
        region: &str,
        dir: &Path,
        durability: Durability,
    ) -> Result<Kinesis, AwsError> {
        let mut kinesis = Kinesis::new(region, Some(dir.to_owned()));
        kinesis.durability = durability;
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
                let (log, _) =
                    Log::open(&path, self.durability).map_err(|e| AwsError::storage(&path, e))?;
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

#[cfg(test)]
mod tests {
    use super::state::*;
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use bytes::Bytes;

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
        let kinesis = Kinesis::open("us-east-1", &dir, Durability::default()).expect("open");
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
        let kinesis = Kinesis::open("us-east-1", &dir, Durability::default()).expect("reopen");
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
        let kinesis =
            Kinesis::open("us-east-1", &dir, Durability::default()).expect("reopen again");
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
        let kinesis = Kinesis::open("us-east-1", &dir, Durability::default()).expect("open");
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
        let kinesis = Kinesis::open("us-east-1", &dir, Durability::default()).expect("reopen");
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
