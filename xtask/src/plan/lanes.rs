//! The stream lanes' cadence: how often each mapping invokes its function on a shard, how big the batch is,
//! how long an invocation takes, and what its table writes cost. The same timings feed the freshness budget
//! ([`super::latency`]), so the cost model and the budget cannot contradict each other.
//!
//! * **Enhanced fan-out, window 0** (the critical lane): one invocation per shard at a time; records are
//!   pushed as they arrive, so the next batch is what arrived while the previous invocation ran:
//!   `cycle = DISPATCH_MS + duration(batch)` and `batch = rate × cycle` (at least one record, at most
//!   `BatchSize`), solved as a fixed point.
//! * **Batching window W** (or a shared iterator, polled about once a second): an invocation when the batch is
//!   full or the window elapsed: `cycle = max(W, duration)`, `batch = min(BatchSize, rate × cycle)`.
//! * **duration** = function base + per event + table writes: per 16 rows in flight (`metrics::
//!   DEFAULT_CONCURRENCY`) one round trip per request (a read and a write for a row with a sketch), then the
//!   campaign index (realtime), then the archive PUT (deferred).
//!
//! `--check` replaces the rate, the shard count and each lane's cycle by measured values ([`Overrides`]).

use std::collections::HashMap;

use super::cache::{self, CacheBatch, CACHE_RTT_MS};
use super::counters::{self, BatchSpec, BatchUnits, Routing, Rows};
use super::stack::KinesisMapping;
use super::traffic::Packing;
use tally_domain::store_keys::StoreLane;
use tally_traffic::Profile;

/// (p50, p99) ms of one DynamoDB request round trip (AWS: single-digit milliseconds).
pub const DYNAMODB_MS: (f64, f64) = (5.0, 20.0);
/// (p50, p99) ms of the lane function's fixed work per invocation (decode, set-up).
pub const FUNCTION_BASE_MS: (f64, f64) = (1.0, 5.0);
/// ms of work per event: the critical lane decodes and aggregates; the deferred lane also enriches.
pub const MS_PER_EVENT: f64 = 0.002;
pub const DEFERRED_MS_PER_EVENT: f64 = 0.02;
/// ms of one archive PUT to S3 (one per hour of receive time in a batch).
pub const ARCHIVE_PUT_MS: f64 = 30.0;
/// Rows written at once per invocation (`metrics::DEFAULT_CONCURRENCY`).
pub const ROW_CONCURRENCY: f64 = 16.0;
/// ms between an invocation's end and the next one's start on the same shard (records already pushed).
pub const DISPATCH_MS: f64 = 5.0;
/// A shared iterator is polled about once a second.
pub const POLL_INTERVAL_SECS: f64 = 1.0;
/// (p50, p99) ms: collect's warm invocation and its PutRecords round trip (also collect's billed duration).
pub const COLLECT_MS: (f64, f64) = (5.0, 20.0);
pub const PUT_RECORDS_MS: (f64, f64) = (10.0, 30.0);
/// (p50, p99) ms from PutRecords to the consumer: enhanced fan-out push, shared-iterator polling.
pub const EFO_PUSH_MS: (f64, f64) = (49.0, 109.0);
pub const POLL_MS: (f64, f64) = (630.0, 1600.0);

/// Shards whose expected key counts are averaged for the timing's fixed point.
const KEY_SHARDS: u32 = 4;

/// Measured values that replace the model's (`plan --check`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Open shards, instead of the scaler simulation's.
    pub shards: Option<u32>,
    /// Cycle per lane (function package name → ms between invocations on a shard).
    pub cycle_ms: HashMap<String, f64>,
    /// How long the table has held traffic (a load test starts empty): caps the age of the rows a batch
    /// writes; `None` = a steady day, rows as old as their bucket.
    pub history_secs: Option<f64>,
}

/// What a lane's function is, from its environment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneKind {
    /// Writes counter rows.
    pub writes: bool,
    /// Archives to S3 (the deferred lane).
    pub archives: bool,
    /// Realtime rows and the campaign index (not archiving).
    pub realtime: bool,
    /// Applies to the counter cache (`TALLY_CACHE_ENDPOINT`) with this dedup window, seconds: claims, the
    /// mark, the script (`super::cache`); no table rows.
    pub cache_window_secs: Option<u32>,
}

/// One lane on one shard at one rate.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LaneEval {
    pub records_per_invocation: f64,
    pub events_per_invocation: f64,
    pub invocations_per_shard_sec: f64,
    pub cycle_ms: f64,
    /// The function's own work per invocation (p50).
    pub function_ms: f64,
    /// Table (and archive) requests per invocation (p50 and p99 round trips).
    pub write_ms: f64,
    pub write_ms_p99: f64,
    /// function + writes: the billed duration's input.
    pub duration_ms: f64,
    pub units: BatchUnits,
    /// A cache lane's commands and ECPU per invocation.
    pub cache: CacheBatch,
    pub s3_puts_per_invocation: f64,
    /// Batches are full (BatchSize) and the lane still takes longer than they take to arrive.
    pub behind: bool,
}

/// The lane model with its caches (routings per shard count, evaluations per rate).
#[derive(Debug)]
pub struct Model {
    pub profile: Profile,
    pub packing: Packing,
    pub overrides: Overrides,
    routings: HashMap<u32, Routing>,
    memo: HashMap<(String, u32, i64, u32, u8), LaneEval>,
    minute_memo: HashMap<(u32, i64), (f64, f64)>,
}

/// Writes time of a batch: waves of 16 rows, `requests` round trips each, then the campaign index.
fn write_ms(rows: f64, requests_per_row: f64, index_rows: f64, rtt: f64) -> f64 {
    let waves = |n: f64| {
        if n > 0.0 {
            (n / ROW_CONCURRENCY).ceil()
        } else {
            0.0
        }
    };
    waves(rows) * requests_per_row * rtt + waves(index_rows) * rtt
}

impl Model {
    pub fn new(profile: &Profile, packing: Packing, overrides: Overrides) -> Model {
        Model {
            profile: profile.clone(),
            packing,
            overrides,
            routings: HashMap::new(),
            memo: HashMap::new(),
            minute_memo: HashMap::new(),
        }
    }

    fn routing(&mut self, shards: u32) -> &Routing {
        let profile = &self.profile;
        self.routings
            .entry(shards.max(1))
            .or_insert_with(|| Routing::new(profile, shards.max(1)))
    }

    /// Expected (campaign) hashes and (campaign, ad) pairs one lane writes in one minute over all `shards`
    /// shards at `events_per_sec` (each shard's distinct keys among its minute of events; rates bucketed 10 %
    /// apart, at most 4 shards evaluated and scaled).
    pub fn minute_keys(&mut self, shards: u32, events_per_sec: f64) -> (f64, f64) {
        if events_per_sec <= 0.0 {
            return (0.0, 0.0);
        }
        let shards = self.overrides.shards.unwrap_or(shards).max(1);
        let bucket = (events_per_sec.ln() / 0.1).round() as i64;
        if let Some(v) = self.minute_memo.get(&(shards, bucket)) {
            return *v;
        }
        let eps = (bucket as f64 * 0.1).exp();
        let ads = self.profile.ads_per_campaign;
        let routing = self.routing(shards).clone();
        let k = shards.min(KEY_SHARDS);
        let (mut c, mut p) = (0.0, 0.0);
        for s in 0..k {
            let n = eps * 60.0 * routing.shard_share(s);
            let (cs, ps) = routing.expected_keys(s, n, ads);
            c += cs;
            p += ps;
        }
        let scale = f64::from(shards) / f64::from(k);
        let v = (c * scale, p * scale);
        self.minute_memo.insert((shards, bucket), v);
        v
    }

    /// Lane `m` (of function `name`) on a stream of `shards` shards carrying `events_per_sec`.
    pub fn lane(
        &mut self,
        name: &str,
        kind: LaneKind,
        m: &KinesisMapping,
        shards: u32,
        events_per_sec: f64,
        rows: Rows,
    ) -> LaneEval {
        if events_per_sec <= 0.0 {
            return LaneEval::default();
        }
        let shards = self.overrides.shards.unwrap_or(shards).max(1);
        // Rates are bucketed 10 % apart (exact under `--check`): the evaluations are cached, a day has few
        // distinct ones.
        let exact = self.overrides.shards.is_some();
        let bucket = if exact {
            events_per_sec.to_bits() as i64
        } else {
            (events_per_sec.ln() / 0.1).round() as i64
        };
        let rows_tag = match rows {
            Rows::All => 0,
            Rows::MinuteOnly => 1,
            Rows::AllPlusRealtimeHourDay => 2,
        };
        let key = (name.to_owned(), shards, bucket, m.window_secs, rows_tag);
        if let Some(e) = self.memo.get(&key) {
            return *e;
        }
        let eps = if exact {
            events_per_sec
        } else {
            (bucket as f64 * 0.1).exp()
        };
        let e = self.evaluate(name, kind, m, shards, eps, rows);
        self.memo.insert(key, e);
        e
    }

    fn evaluate(
        &mut self,
        name: &str,
        kind: LaneKind,
        m: &KinesisMapping,
        shards: u32,
        eps: f64,
        rows: Rows,
    ) -> LaneEval {
        let epr = self.packing.events_per_record.max(1.0);
        let ads = self.profile.ads_per_campaign;
        let records = eps / epr / f64::from(shards);
        let batch_cap = f64::from(m.batch_size.max(1));
        let per_event = if kind.archives {
            DEFERRED_MS_PER_EVENT
        } else {
            MS_PER_EVENT
        };
        let wait_secs = if m.window_secs > 0 {
            f64::from(m.window_secs)
        } else if m.efo {
            0.0
        } else {
            POLL_INTERVAL_SECS
        };
        let cycle_override = self.overrides.cycle_ms.get(name).copied();
        let routing = self.routing(shards).clone();
        // The analytic key count drives the timing; the Monte Carlo below charges the real rows.
        let rows_per_key = match rows {
            Rows::MinuteOnly => 1.0,
            Rows::All => 3.0,
            Rows::AllPlusRealtimeHourDay => 5.0,
        };
        let duration = |n_records: f64| {
            let n = n_records * epr;
            let (c, p) = if kind.writes || kind.cache_window_secs.is_some() {
                (0..shards.min(KEY_SHARDS))
                    .map(|s| routing.expected_keys(s, n, ads))
                    .fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
            } else {
                (0.0, 0.0)
            };
            let k = f64::from(shards.min(KEY_SHARDS));
            let (c, p) = (c / k, p / k);
            let index = if kind.realtime { c } else { 0.0 };
            let cache_ms = if kind.cache_window_secs.is_some() {
                // Claims and the mark in one trip per 1,024, the script in one; ~3 commands per (campaign,
                // ad) in the script.
                CacheBatch {
                    events: n,
                    claims: n,
                    script_commands: 3.0 + 3.0 * (c + p),
                    ..CacheBatch::default()
                }
                .wait_ms(CACHE_RTT_MS.0)
            } else {
                0.0
            };
            // The table's rows: a lane without the cache, or the deferred lane's settled rows next to it.
            let table_ms = if kind.writes {
                let index = if kind.cache_window_secs.is_some() {
                    0.0
                } else {
                    index
                };
                write_ms((c + p) * rows_per_key, 2.0, index, DYNAMODB_MS.0)
            } else {
                0.0
            };
            let table = cache_ms + table_ms;
            FUNCTION_BASE_MS.0
                + n * per_event
                + table
                + if kind.archives { ARCHIVE_PUT_MS } else { 0.0 }
        };
        let (batch, cycle_secs) = match cycle_override {
            Some(ms) => {
                let t = ms / 1000.0;
                ((records * t).clamp(1.0, batch_cap), t)
            }
            None => {
                let mut n = 1.0f64;
                let mut t = wait_secs;
                for _ in 0..40 {
                    t = wait_secs.max((DISPATCH_MS + duration(n)) / 1000.0);
                    let next = (records * t).clamp(1.0, batch_cap);
                    if (next - n).abs() < 1e-3 * n {
                        n = next;
                        break;
                    }
                    n = (n + next) / 2.0;
                }
                (n, t)
            }
        };
        let events = batch * epr;
        let spec = BatchSpec {
            events,
            span_secs: batch / records,
            cycle_secs,
            stream_events_per_sec: eps,
            conflict_window_secs: 2.0 * DYNAMODB_MS.0 / 1000.0,
            rows,
            realtime: kind.realtime,
            history_secs: self.overrides.history_secs,
        };
        let units = if kind.writes {
            counters::sample(&self.profile, &routing, &spec, super::traffic::SEED)
        } else {
            BatchUnits::default()
        };
        let cache_batch = match kind.cache_window_secs {
            Some(window) => cache::sample(
                &self.profile,
                &routing,
                events,
                spec.span_secs,
                epr,
                if kind.archives {
                    StoreLane::Settled
                } else {
                    StoreLane::Realtime
                },
                u64::from(window),
                super::traffic::SEED,
                self.overrides.history_secs,
            ),
            None => CacheBatch::default(),
        };
        let s3_puts = if kind.archives {
            1.0 + (spec.span_secs / 3600.0).min(1.0)
        } else {
            0.0
        };
        let counter_rows = units.rows;
        let requests_per_row = if counter_rows > 0.0 {
            (units.rows + units.sketch_rows + 2.0 * units.failed_conditional_writes) / counter_rows
        } else {
            0.0
        };
        let index = units.index_writes;
        let function_ms = FUNCTION_BASE_MS.0 + events * per_event;
        let archive_ms = s3_puts * ARCHIVE_PUT_MS;
        let writes = write_ms(counter_rows, requests_per_row, index, DYNAMODB_MS.0)
            + cache_batch.wait_ms(CACHE_RTT_MS.0)
            + archive_ms;
        let writes_p99 = write_ms(counter_rows, requests_per_row, index, DYNAMODB_MS.1)
            + cache_batch.wait_ms(CACHE_RTT_MS.1)
            + archive_ms;
        let duration_ms = function_ms + writes;
        let cycle_ms = match cycle_override {
            Some(ms) => ms,
            None => (wait_secs * 1000.0).max(DISPATCH_MS + duration_ms),
        };
        LaneEval {
            records_per_invocation: batch,
            events_per_invocation: events,
            invocations_per_shard_sec: records / batch,
            cycle_ms,
            function_ms,
            write_ms: writes,
            write_ms_p99: writes_p99,
            duration_ms,
            units,
            cache: cache_batch,
            s3_puts_per_invocation: s3_puts,
            behind: batch >= batch_cap && duration_ms + DISPATCH_MS > batch_cap / records * 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(efo: bool, window: u32, batch: u32) -> KinesisMapping {
        KinesisMapping {
            function: "F".into(),
            batch_size: batch,
            window_secs: window,
            parallelization: 1,
            efo,
            starting_position: "LATEST".into(),
        }
    }

    fn model(campaigns: u32) -> Model {
        let mut p = Profile::flat(2000.0, 300).expect("profile");
        p.campaigns = campaigns;
        p.events_per_request = 1.0;
        let packing = super::super::traffic::packing(&p, 500);
        Model::new(&p, packing, Overrides::default())
    }

    const REALTIME: LaneKind = LaneKind {
        writes: true,
        archives: false,
        realtime: true,
        cache_window_secs: None,
    };
    const DEFERRED: LaneKind = LaneKind {
        writes: true,
        archives: true,
        realtime: false,
        cache_window_secs: None,
    };

    #[test]
    fn the_critical_batch_is_what_arrives_during_one_invocation() {
        let mut m = model(10);
        m.overrides.shards = Some(2);
        let e = m.lane(
            "realtime",
            REALTIME,
            &mapping(true, 0, 500),
            2,
            400.0,
            Rows::All,
        );
        // 200 records/s per shard, one event each: batch = rate × cycle.
        let arrived = 200.0 * e.cycle_ms / 1000.0;
        assert!(
            (e.records_per_invocation - arrived).abs() < 0.05 * arrived + 1.0,
            "{e:?}"
        );
        assert!(e.cycle_ms < 200.0 && e.cycle_ms > DISPATCH_MS, "{e:?}");
        assert!((e.invocations_per_shard_sec * e.records_per_invocation - 200.0).abs() < 1.0);
        assert!(!e.behind);
        // 100 campaigns at 2,000 events/s: ~800 rows per batch, 2 requests each, 16 in flight: batches fill
        // up to BatchSize and the lane falls behind.
        let mut busy = model(100);
        let e = busy.lane(
            "realtime",
            REALTIME,
            &mapping(true, 0, 500),
            2,
            2000.0,
            Rows::All,
        );
        assert!(e.behind && e.records_per_invocation == 500.0, "{e:?}");
        // The duration is the function plus the writes, and the cycle adds the dispatch.
        assert!((e.duration_ms - e.function_ms - e.write_ms).abs() < 1e-9);
    }

    #[test]
    fn a_window_sets_the_deferred_batch_up_to_the_batch_size() {
        let mut m = model(100);
        let e = m.lane(
            "deferred",
            DEFERRED,
            &mapping(false, 30, 2000),
            2,
            20.0,
            Rows::All,
        );
        // 10 records/s per shard for 30 s.
        assert!((e.records_per_invocation - 300.0).abs() < 7.0, "{e:?}");
        assert!((e.cycle_ms - 30_000.0).abs() < 1.0);
        let full = m.lane(
            "deferred",
            DEFERRED,
            &mapping(false, 30, 2000),
            2,
            2000.0,
            Rows::All,
        );
        assert_eq!(full.records_per_invocation, 2000.0);
    }

    #[test]
    fn measured_cycles_replace_the_model() {
        let mut m = model(100);
        m.overrides.cycle_ms.insert("realtime".into(), 250.0);
        m.overrides.shards = Some(4);
        let e = m.lane(
            "realtime",
            REALTIME,
            &mapping(true, 0, 500),
            1,
            2000.0,
            Rows::All,
        );
        // 500 records/s per shard × 0.25 s.
        assert!((e.records_per_invocation - 125.0).abs() < 3.0, "{e:?}");
        assert_eq!(e.cycle_ms, 250.0);
    }
}
