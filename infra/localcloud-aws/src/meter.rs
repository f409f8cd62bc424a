//! The meter: what the local cloud would have been billed for on AWS, counted per request as it serves it.
//!
//! Every service records into one [`Meter`] (owned by [`crate::aws::LocalAws`], shared with the Lambda pools and
//! the event source mappings). The units follow AWS's published billing rules, computed by
//! `tally_billing` (one place for the rules, also used by `cargo xtask plan`); the meter only adds them up.
//!
//! A [`Snapshot`] is the whole reading as JSON: served at `GET /_tally/meter` on the local AWS port, written to
//! `meter.json` under the state directory while the cloud runs, and cleared by `POST /_tally/meter/reset`
//! (the load test resets it after its warm-up, so set-up traffic is not counted).
//!
//! **Snapshot format** (version 1; every count since `since_ms`; maps are keyed by the resource's name):
//!
//! ```text
//! { "version": 1, "since_ms", "at_ms",
//!   "dynamodb": { "tables": { NAME: DynamoDbTable } },
//!   "kinesis":  { "streams": { NAME: KinesisStream } },
//!   "lambda":   { "functions": { NAME: LambdaFunction } },
//!   "mappings": { ID: Mapping },                   // event source mappings (by logical id), per-shard cycles
//!   "s3":       { "buckets": { NAME: S3Bucket } },
//!   "elasticache": { "caches": { NAME: ElastiCacheCache } } }
//! ```
//!
//! The `elasticache` section was added within version 1 (a reader of an older snapshot finds it empty). Unlike
//! the others it is not counted per request: each snapshot probes every cache's server (`INFO commandstats
//! stats memory`, a blocking loopback call) and reports the difference from the probe taken at the last reset,
//! the meter's own probes taken out.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
// The type of the snapshot's `record_age_ms` (`tally_domain::ages`, which the load test reads it back with),
// re-exported so the snapshot's public API keeps naming it `meter::Ages`.
pub use tally_domain::ages::Ages;

use crate::cache::Counters;

/// Version of the snapshot format; bump it when a field changes meaning.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The meter of one local cloud.
#[derive(Debug)]
pub struct Meter {
    readings: Mutex<Snapshot>,
    /// The caches probed at each snapshot, by name.
    caches: Mutex<BTreeMap<String, CacheProbe>>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter::new()
    }
}

/// Everything metered since `since_ms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub since_ms: i64,
    pub at_ms: i64,
    pub dynamodb: DynamoDb,
    pub kinesis: Kinesis,
    pub lambda: Lambda,
    pub mappings: BTreeMap<String, Mapping>,
    pub s3: S3,
    #[serde(default)]
    pub elasticache: ElastiCache,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ElastiCache {
    pub caches: BTreeMap<String, ElastiCacheCache>,
}

/// One serverless cache since the last reset, from its server's counters (`INFO`), in AWS's units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ElastiCacheCache {
    /// `127.0.0.1:PORT`.
    pub endpoint: String,
    /// Per command (`set`, `evalsha`, `hincrby`, `cluster|slots`): calls and microseconds of server CPU.
    /// Commands a script runs are counted here one each, as the server counts them; the meter's own `INFO`
    /// probes are not.
    pub commands: BTreeMap<String, CacheCommand>,
    /// The sum of `commands`' calls.
    pub total_commands: u64,
    /// Bytes the clients sent and received (`total_net_input_bytes`, `total_net_output_bytes`), the meter's
    /// probes taken out.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// `tally_billing::elasticache::ecpu_from_totals(total_commands, bytes_in + bytes_out)`: a lower bound of
    /// AWS's per-request rule (docs/local-cloud.md).
    pub ecpu: f64,
    /// Data stored now (`used_memory_dataset`), and what AWS bills for it (at least 100 MB).
    pub stored_bytes: u64,
    pub billed_stored_bytes: u64,
    /// The billed storage summed over the time between probes, in GB-hours.
    pub storage_gb_hours: f64,
    /// Why the last probe failed (the counts are then those of the last probe that answered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheCommand {
    pub calls: u64,
    pub usec: u64,
}

/// What the meter keeps per cache between probes.
#[derive(Debug)]
struct CacheProbe {
    addr: std::net::SocketAddr,
    /// The counters at the last reset.
    baseline: Counters,
    /// Bytes of the meter's probes since the baseline that the server has counted: every request (a request is
    /// counted when it is read, before its reply), every reply but the last.
    probe_in: u64,
    probe_out: u64,
    last_reply: u64,
    last_ms: i64,
    reading: ElastiCacheCache,
}

/// The meter's command, left out of the counts.
const PROBE_COMMAND: &str = "info";

/// A cache's usage between `baseline` and `now`, the probes' own traffic taken out. A counter below its
/// baseline means the server restarted since: it is then counted from zero.
fn cache_usage(
    baseline: &Counters,
    now: &Counters,
    probe_in: u64,
    probe_out: u64,
) -> ElastiCacheCache {
    let restarted = now.net_input_bytes < baseline.net_input_bytes
        || now.net_output_bytes < baseline.net_output_bytes;
    let zero = Counters::default();
    let base = if restarted { &zero } else { baseline };
    let mut usage = ElastiCacheCache::default();
    for (name, &(calls, usec)) in &now.commands {
        if name == PROBE_COMMAND {
            continue;
        }
        let (calls0, usec0) = base.commands.get(name).copied().unwrap_or_default();
        let calls = calls.saturating_sub(calls0);
        if calls > 0 {
            usage.total_commands += calls;
            usage.commands.insert(
                name.clone(),
                CacheCommand {
                    calls,
                    usec: usec.saturating_sub(usec0),
                },
            );
        }
    }
    usage.bytes_in = now
        .net_input_bytes
        .saturating_sub(base.net_input_bytes)
        .saturating_sub(probe_in);
    usage.bytes_out = now
        .net_output_bytes
        .saturating_sub(base.net_output_bytes)
        .saturating_sub(probe_out);
    usage.ecpu = tally_billing::elasticache::ecpu_from_totals(
        usage.total_commands,
        usage.bytes_in + usage.bytes_out,
    );
    usage.stored_bytes = now.dataset_bytes;
    usage.billed_stored_bytes = tally_billing::elasticache::billed_storage_bytes(now.dataset_bytes);
    usage
}

impl CacheProbe {
    /// A probe whose baseline is the server's counters now.
    fn new(addr: std::net::SocketAddr, name: &str) -> CacheProbe {
        let mut probe = CacheProbe {
            addr,
            baseline: Counters::default(),
            probe_in: 0,
            probe_out: 0,
            last_reply: 0,
            last_ms: crate::aws::now_ms(),
            reading: ElastiCacheCache {
                endpoint: addr.to_string(),
                ..ElastiCacheCache::default()
            },
        };
        probe.rebase(name);
        probe
    }

    /// Takes the counters now as the baseline.
    fn rebase(&mut self, name: &str) {
        self.last_ms = crate::aws::now_ms();
        self.reading = ElastiCacheCache {
            endpoint: self.addr.to_string(),
            ..ElastiCacheCache::default()
        };
        match Counters::probe(self.addr) {
            Ok((counters, _, received)) => {
                self.baseline = counters;
                self.probe_in = 0;
                // This probe's reply is counted by the server after the counters it carries.
                self.probe_out = 0;
                self.last_reply = received;
            }
            Err(error) => {
                tracing::warn!(message = "cannot read the cache's counters", cache = %name, %error);
                self.reading.error = Some(error);
            }
        }
    }

    /// Probes the server and updates the reading.
    fn sample(&mut self) -> ElastiCacheCache {
        let now_ms = crate::aws::now_ms();
        match Counters::probe(self.addr) {
            Ok((counters, sent, received)) => {
                self.probe_in += sent;
                self.probe_out += self.last_reply;
                self.last_reply = received;
                let mut usage =
                    cache_usage(&self.baseline, &counters, self.probe_in, self.probe_out);
                usage.endpoint = self.addr.to_string();
                let elapsed = u64::try_from(now_ms - self.last_ms).unwrap_or(0);
                usage.storage_gb_hours = self.reading.storage_gb_hours
                    + tally_billing::elasticache::storage_gb_hours(usage.stored_bytes, elapsed);
                self.last_ms = now_ms;
                self.reading = usage;
            }
            Err(error) => self.reading.error = Some(error),
        }
        self.reading.clone()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamoDb {
    pub tables: BTreeMap<String, DynamoDbTable>,
}

/// One table's capacity units, as AWS would charge them (on-demand request units = capacity units): the totals
/// (flattened into the table's JSON object) and the same counts split by caller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamoDbTable {
    #[serde(flatten)]
    pub totals: DynamoDbUsage,
    /// The same counts split by caller: the access key id of the request's SigV4 signature (the local cloud gives
    /// each function its function name as access key id), `"unknown"` for unsigned requests. At most
    /// [`MAX_CALLERS`] per table; later ones are counted under `"(other)"`.
    #[serde(default)]
    pub callers: BTreeMap<String, DynamoDbUsage>,
}

/// Most callers kept apart per table (a client inventing access keys cannot grow the reading without bound).
pub const MAX_CALLERS: usize = 256;

/// Capacity units and requests: of a table, of one caller on it, or of one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DynamoDbUsage {
    /// Write units charged: successful writes, failed conditional writes, transactional writes doubled.
    pub write_units: f64,
    /// Read units charged: strongly consistent reads at 4 KB per unit, eventually consistent at half.
    pub read_units: f64,
    /// Requests that wrote (or tried to write) an item: one per item of a batch or transaction.
    pub write_requests: u64,
    /// Requests that read: one per item of `GetItem`/`BatchGetItem`, one per `Query`/`Scan` page.
    pub read_requests: u64,
    /// Conditional writes whose condition failed (charged all the same); their units are in `write_units`.
    pub failed_conditional_writes: u64,
    pub failed_conditional_write_units: f64,
    /// Writes inside `TransactWriteItems` (charged at twice the units).
    pub transactional_writes: u64,
}

impl DynamoDbUsage {
    fn add(&mut self, other: &DynamoDbUsage) {
        self.write_units += other.write_units;
        self.read_units += other.read_units;
        self.write_requests += other.write_requests;
        self.read_requests += other.read_requests;
        self.failed_conditional_writes += other.failed_conditional_writes;
        self.failed_conditional_write_units += other.failed_conditional_write_units;
        self.transactional_writes += other.transactional_writes;
    }
}

impl DynamoDbTable {
    /// Adds one request's usage of this table, to the totals and to `caller`'s share.
    pub fn add(&mut self, caller: &str, usage: &DynamoDbUsage) {
        self.totals.add(usage);
        let key = if self.callers.len() >= MAX_CALLERS && !self.callers.contains_key(caller) {
            "(other)"
        } else {
            caller
        };
        self.callers.entry(key.to_owned()).or_default().add(usage);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Kinesis {
    pub streams: BTreeMap<String, KinesisStream>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KinesisStream {
    /// `PutRecord` and `PutRecords` calls.
    pub put_requests: u64,
    /// Records written (accepted).
    pub records: u64,
    /// Bytes of data + partition key written (accepted records).
    pub bytes: u64,
    /// PUT payload units: each accepted record rounded up to 25 KB.
    pub put_payload_units: u64,
    /// Records rounded up to 1 KB, as on-demand bills ingress (in KB).
    pub on_demand_kb: u64,
    /// Calls answered `ProvisionedThroughputExceededException` (PutRecord) or with every record throttled.
    pub throttled_requests: u64,
    /// Records refused for throughput (PutRecords' per-record `ProvisionedThroughputExceededException`).
    pub throttled_records: u64,
    /// `GetRecords` calls and the bytes they returned (shared iterators).
    pub get_records_requests: u64,
    pub get_records_bytes: u64,
    /// Bytes and records delivered to enhanced fan-out consumers.
    pub efo_bytes: u64,
    pub efo_records: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Lambda {
    pub functions: BTreeMap<String, LambdaFunction>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LambdaFunction {
    /// Invocations that an instance took (the Runtime API handed them out), whatever their outcome.
    pub invocations: u64,
    /// Invocations that ended in `/error`, a crash or a timeout.
    pub errors: u64,
    /// Billed duration: each invocation from hand-out to response, rounded up to 1 ms.
    pub billed_ms: u64,
    /// The function's configured memory.
    pub memory_mb: u32,
    /// `billed_ms` × memory, in GB-seconds (1 GB = 1024 MB, as Lambda prices it).
    pub gb_seconds: f64,
    /// Log events Lambda would send to CloudWatch Logs under the function's `LoggingConfig` (its own lines
    /// that pass the level filter, and the per-invocation system lines when enabled), and their bytes
    /// (UTF-8, the ingested size): the runner's `tally_localcloud::lambda::logs`.
    #[serde(default)]
    pub log_events: u64,
    #[serde(default)]
    pub log_bytes: u64,
}

/// One event source mapping: its invocations and, per shard (or queue), its batch cycle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub function: String,
    /// The stream or queue name.
    pub source: String,
    /// `"enhanced-fan-out"`, `"shared-iterator"` or `"sqs"`.
    pub kind: String,
    pub invocations: u64,
    pub records: u64,
    pub shards: BTreeMap<String, ShardCycle>,
    /// How old each record was when the invocation that carried it succeeded: stream arrival (the
    /// `PutRecords` that collect acknowledges after) → the function's success (for the realtime lane, the
    /// counts are in the cache). AWS's `IteratorAge` measures the same lag at hand-out; this one includes the
    /// invocation. Added within version 1 (absent from older snapshots).
    #[serde(default)]
    pub record_age_ms: Ages,
}

/// The invocations of one mapping on one shard: how often a batch starts and how long it takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardCycle {
    pub invocations: u64,
    pub records: u64,
    /// Start of the first and of the last invocation (unix ms).
    pub first_start_ms: i64,
    pub last_start_ms: i64,
    /// Sum of invocation durations (dispatch → outcome).
    pub busy_ms: u64,
    /// Mean time between invocation starts, (last − first) / (invocations − 1); 0 with fewer than two.
    pub cycle_ms: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3 {
    pub buckets: BTreeMap<String, S3Bucket>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct S3Bucket {
    /// PUT, COPY, POST, LIST requests (AWS's first price tier).
    pub class_a_requests: u64,
    /// GET, HEAD and every other request (the second tier).
    pub class_b_requests: u64,
    /// Bytes uploaded.
    pub bytes_in: u64,
    /// Bytes stored now (every version), and the object versions stored.
    pub bytes_stored: u64,
    pub objects: u64,
    /// DELETE requests, which S3 does not charge (counted so that nothing served goes unseen).
    #[serde(default)]
    pub free_requests: u64,
}

/// Who an event source mapping is, as the meter names it.
#[derive(Debug, Clone, Copy)]
pub struct MappingId<'a> {
    /// The mapping's id (the template's logical id).
    pub id: &'a str,
    pub function: &'a str,
    /// The stream or queue name.
    pub source: &'a str,
    /// `"enhanced-fan-out"`, `"shared-iterator"` or `"sqs"`.
    pub kind: &'a str,
}

fn lambda_entry<'s>(s: &'s mut Snapshot, function: &str, memory_mb: u32) -> &'s mut LambdaFunction {
    let m = s.lambda.functions.entry(function.to_owned()).or_default();
    m.memory_mb = memory_mb;
    m
}

fn mapping_entry<'s>(s: &'s mut Snapshot, mapping: &MappingId<'_>) -> &'s mut Mapping {
    s.mappings
        .entry(mapping.id.to_owned())
        .or_insert_with(|| Mapping {
            function: mapping.function.to_owned(),
            source: mapping.source.to_owned(),
            kind: mapping.kind.to_owned(),
            ..Mapping::default()
        })
}

impl Meter {
    pub fn new() -> Meter {
        let now = crate::aws::now_ms();
        Meter {
            readings: Mutex::new(Snapshot {
                version: SNAPSHOT_VERSION,
                since_ms: now,
                at_ms: now,
                ..Snapshot::default()
            }),
            caches: Mutex::new(BTreeMap::new()),
        }
    }

    /// The reading now (every cache probed).
    pub fn snapshot(&self) -> Snapshot {
        let caches = self.sample_caches();
        let mut snapshot = self.lock().clone();
        snapshot.elasticache.caches = caches;
        snapshot.at_ms = crate::aws::now_ms();
        snapshot
    }

    /// Meters the cache `name` served at `addr` from now on (its counters now are its baseline).
    pub fn watch_cache(&self, name: &str, addr: std::net::SocketAddr) {
        let probe = CacheProbe::new(addr, name);
        self.lock_caches().insert(name.to_owned(), probe);
    }

    fn sample_caches(&self) -> BTreeMap<String, ElastiCacheCache> {
        self.lock_caches()
            .iter_mut()
            .map(|(name, probe)| (name.clone(), probe.sample()))
            .collect()
    }

    fn lock_caches(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, CacheProbe>> {
        self.caches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts counting again from zero. What is stored (`S3Bucket::bytes_stored`, `objects`) is a level, not a
    /// count, and is kept. Each cache's counters now become its baseline.
    pub fn reset(&self) {
        for (name, probe) in self.lock_caches().iter_mut() {
            probe.rebase(name);
        }
        let mut readings = self.lock();
        let buckets = std::mem::take(&mut readings.s3.buckets);
        let now = crate::aws::now_ms();
        *readings = Snapshot {
            version: SNAPSHOT_VERSION,
            since_ms: now,
            at_ms: now,
            ..Snapshot::default()
        };
        readings.s3.buckets = buckets
            .into_iter()
            .map(|(name, b)| {
                let kept = S3Bucket {
                    bytes_stored: b.bytes_stored,
                    objects: b.objects,
                    ..S3Bucket::default()
                };
                (name, kept)
            })
            .collect();
    }

    /// Runs `f` on the reading under the meter's lock (the services' recording methods are built on it).
    pub fn record<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        f(&mut self.lock())
    }

    /// Writes the snapshot to `path` atomically: a temporary file next to it, then a rename, so that a reader
    /// never sees half a file.
    pub fn write_file(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_vec_pretty(&self.snapshot())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        text.push(b'\n');
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, &text)?;
        std::fs::rename(&temporary, path)
    }

    /// One `PutRecord` / `PutRecords` call: the sizes (data + partition key) of the records accepted, and how many
    /// were refused for throughput.
    pub fn kinesis_put(&self, stream: &str, accepted: &[u64], throttled: u64) {
        self.record(|s| {
            let m = s.kinesis.streams.entry(stream.to_owned()).or_default();
            m.put_requests += 1;
            m.records += accepted.len() as u64;
            for &bytes in accepted {
                m.bytes += bytes;
                m.put_payload_units += tally_billing::kinesis::put_payload_units(bytes);
                m.on_demand_kb += tally_billing::kinesis::on_demand_kb(bytes);
            }
            m.throttled_records += throttled;
            if throttled > 0 && accepted.is_empty() {
                m.throttled_requests += 1;
            }
        });
    }

    /// One `GetRecords` call (or a shared-iterator mapping's read of a shard) and the bytes it returned.
    pub fn kinesis_get_records(&self, stream: &str, bytes: u64) {
        self.record(|s| {
            let m = s.kinesis.streams.entry(stream.to_owned()).or_default();
            m.get_records_requests += 1;
            m.get_records_bytes += bytes;
        });
    }

    /// Records pushed to an enhanced fan-out consumer.
    pub fn kinesis_efo(&self, stream: &str, records: u64, bytes: u64) {
        self.record(|s| {
            let m = s.kinesis.streams.entry(stream.to_owned()).or_default();
            m.efo_records += records;
            m.efo_bytes += bytes;
        });
    }

    /// An invocation handed to an instance (`/next`).
    pub fn lambda_handed_out(&self, function: &str, memory_mb: u32) {
        self.record(|s| {
            let m = lambda_entry(s, function, memory_mb);
            m.invocations += 1;
        });
    }

    /// An invocation ended after `micros` (hand-out to outcome), in error or not.
    pub fn lambda_ended(&self, function: &str, memory_mb: u32, micros: u64, error: bool) {
        self.record(|s| {
            let m = lambda_entry(s, function, memory_mb);
            m.billed_ms += tally_billing::lambda::billed_ms(micros);
            m.gb_seconds = tally_billing::lambda::gb_seconds(m.billed_ms, m.memory_mb);
            m.errors += u64::from(error);
        });
    }

    /// One log event of `bytes` sent to CloudWatch Logs for `function`.
    pub fn lambda_log(&self, function: &str, memory_mb: u32, bytes: u64) {
        self.record(|s| {
            let m = lambda_entry(s, function, memory_mb);
            m.log_events += 1;
            m.log_bytes += bytes;
        });
    }

    /// Records an event source mapping delivered successfully, with their ages in milliseconds at success
    /// ([`Mapping::record_age_ms`]).
    pub fn mapping_records_done(
        &self,
        mapping: &MappingId<'_>,
        ages_ms: impl IntoIterator<Item = u64>,
    ) {
        self.record(|s| {
            let m = mapping_entry(s, mapping);
            for age in ages_ms {
                m.record_age_ms.add(age);
            }
        });
    }

    /// One invocation by an event source mapping on one shard (or queue): when it started, how many records it
    /// carried and how long it took.
    pub fn mapping_invocation(
        &self,
        mapping: &MappingId<'_>,
        shard: &str,
        records: u64,
        start_ms: i64,
        busy_ms: u64,
    ) {
        self.record(|s| {
            let m = mapping_entry(s, mapping);
            m.invocations += 1;
            m.records += records;
            let c = m.shards.entry(shard.to_owned()).or_default();
            if c.invocations == 0 {
                c.first_start_ms = start_ms;
                c.last_start_ms = start_ms;
            } else {
                // Parallel lanes may end out of order: keep the earliest and the latest start.
                c.first_start_ms = c.first_start_ms.min(start_ms);
                c.last_start_ms = c.last_start_ms.max(start_ms);
            }
            c.invocations += 1;
            c.records += records;
            c.busy_ms += busy_ms;
            c.cycle_ms = if c.invocations > 1 {
                (c.last_start_ms - c.first_start_ms) as f64 / (c.invocations - 1) as f64
            } else {
                0.0
            };
        });
    }

    /// One S3 request on `bucket`, of this tier.
    pub fn s3_request(&self, bucket: &str, class: tally_billing::s3::RequestClass) {
        use tally_billing::s3::RequestClass;
        self.record(|s| {
            let m = s.s3.buckets.entry(bucket.to_owned()).or_default();
            match class {
                RequestClass::A => m.class_a_requests += 1,
                RequestClass::B => m.class_b_requests += 1,
                RequestClass::Free => m.free_requests += 1,
            }
        });
    }

    /// An object of `bytes` stored in `bucket`, replacing one of `replaced` bytes if the key existed (S3 without
    /// versioning keeps only the new one).
    pub fn s3_put(&self, bucket: &str, bytes: u64, replaced: Option<u64>) {
        self.record(|s| {
            let m = s.s3.buckets.entry(bucket.to_owned()).or_default();
            m.bytes_in += bytes;
            m.bytes_stored = (m.bytes_stored + bytes).saturating_sub(replaced.unwrap_or(0));
            if replaced.is_none() {
                m.objects += 1;
            }
        });
    }

    /// What `bucket` stores changed by `bytes` and `objects` (negative for deletes and replaced objects).
    pub fn s3_stored(&self, bucket: &str, bytes: i64, objects: i64) {
        self.record(|s| {
            let m = s.s3.buckets.entry(bucket.to_owned()).or_default();
            m.bytes_stored = m.bytes_stored.saturating_add_signed(bytes);
            m.objects = m.objects.saturating_add_signed(objects);
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Snapshot> {
        // A panic while recording leaves plain counters behind: still a usable reading.
        self.readings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The meter's HTTP paths on the local AWS port.
pub const METER_PATH: &str = "/_tally/meter";
pub const RESET_PATH: &str = "/_tally/meter/reset";

/// Answers a request for [`METER_PATH`] or [`RESET_PATH`]; `None` for any other request (it goes to the
/// services). `GET /_tally/meter` answers the snapshot, `POST /_tally/meter/reset` resets and answers the fresh
/// snapshot; any other method on these paths answers 405 naming the one that works.
///
/// These paths cannot shadow S3: a path-style request's first segment is a bucket name, and S3 bucket names
/// start with a lowercase letter or a digit (the local S3 refuses others with `InvalidBucketName`), never `_`.
/// Virtual-hosted requests (`bucket.localhost`) are left to S3, where `/_tally/meter` is an object key.
pub(crate) fn http(
    meter: &Meter,
    request: &hyper::Request<bytes::Bytes>,
) -> Option<hyper::Response<http_body_util::Full<bytes::Bytes>>> {
    use hyper::{Method, StatusCode};
    let path = request.uri().path();
    if path != METER_PATH && path != RESET_PATH {
        return None;
    }
    let host = request
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host_name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if host_name.ends_with(".localhost") || host_name.ends_with(".amazonaws.com") {
        return None;
    }
    let method = request.method();
    let (status, body) = match (method, path) {
        (&Method::GET, METER_PATH) => (StatusCode::OK, serde_json::to_value(meter.snapshot())),
        (&Method::POST, RESET_PATH) => {
            meter.reset();
            (StatusCode::OK, serde_json::to_value(meter.snapshot()))
        }
        (_, METER_PATH) => (
            StatusCode::METHOD_NOT_ALLOWED,
            Ok(serde_json::json!({
                "error": "MethodNotAllowed",
                "message": format!("{method} {METER_PATH} is not supported: GET {METER_PATH} reads the meter, POST {RESET_PATH} resets it"),
            })),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            Ok(serde_json::json!({
                "error": "MethodNotAllowed",
                "message": format!("{method} {RESET_PATH} is not supported: POST {RESET_PATH} resets the meter, GET {METER_PATH} reads it"),
            })),
        ),
    };
    let body = body.unwrap_or_else(|error| {
        serde_json::json!({"error": "InternalFailure", "message": format!("cannot encode the meter: {error}")})
    });
    let mut response = crate::aws::json_response("application/json", &body);
    *response.status_mut() = status;
    if status == StatusCode::METHOD_NOT_ALLOWED {
        let allow = if path == METER_PATH { "GET" } else { "POST" };
        response.headers_mut().insert(
            hyper::header::ALLOW,
            hyper::header::HeaderValue::from_static(allow),
        );
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counters(commands: &[(&str, u64)], net_in: u64, net_out: u64) -> Counters {
        Counters {
            commands: commands
                .iter()
                .map(|&(name, calls)| (name.to_owned(), (calls, calls * 10)))
                .collect(),
            net_input_bytes: net_in,
            net_output_bytes: net_out,
            dataset_bytes: 7,
        }
    }

    #[test]
    fn cache_usage_is_the_difference_from_the_baseline_without_the_probes() {
        let base = counters(&[("set", 5), ("info", 2)], 1000, 5000);
        let now = counters(
            &[("set", 8), ("get", 1), ("info", 4)],
            1000 + 300 + 60,
            5000 + 20 + 4000,
        );
        let usage = cache_usage(&base, &now, 60, 4000);
        assert_eq!(usage.commands.keys().collect::<Vec<_>>(), ["get", "set"]);
        assert_eq!(usage.commands["set"], CacheCommand { calls: 3, usec: 30 });
        assert_eq!(usage.total_commands, 4);
        assert_eq!((usage.bytes_in, usage.bytes_out), (300, 20));
        assert!((usage.ecpu - 4.0).abs() < 1e-12, "{}", usage.ecpu);
        assert_eq!(usage.stored_bytes, 7);
        assert_eq!(
            usage.billed_stored_bytes,
            tally_billing::elasticache::MIN_STORAGE_BYTES
        );
    }

    #[test]
    fn a_restarted_server_is_counted_from_zero() {
        let base = counters(&[("set", 500)], 100_000, 50_000);
        let now = counters(&[("set", 2)], 4096, 10);
        let usage = cache_usage(&base, &now, 0, 0);
        assert_eq!(usage.total_commands, 2);
        assert_eq!((usage.bytes_in, usage.bytes_out), (4096, 10));
        assert!((usage.ecpu - (4106.0 / 1024.0)).abs() < 1e-12);
    }
}
