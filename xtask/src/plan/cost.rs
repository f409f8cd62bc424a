//! The cost model: usage per service from the profile, the template and the simulated shard counts, then
//! list prices. Every assumption that is not a price or a template setting is a named constant here and is
//! listed in `docs/plan.md`.

use std::collections::{BTreeMap, HashMap};

use super::counters::Rows;
use super::lanes::{self, LaneKind, Model};
use super::prices::Prices;
use super::stack::{Capacity, FunctionModel, StackModel, TableBilling};
use tally_traffic::Profile;

/// Hours in the billing month AWS uses.
pub const HOURS_PER_MONTH: f64 = 730.0;
pub const MINUTES_PER_MONTH: f64 = HOURS_PER_MONTH * 60.0;
const GB: f64 = 1024.0 * 1024.0 * 1024.0;

// ---- model assumptions (docs/plan.md); the lanes' timings are in `lanes.rs` ----
/// collect: ms per event on top of the warm invocation and the PutRecords round trip.
pub const COLLECT_MS_PER_EVENT: f64 = 0.005;
/// query: ms and read units per request.
pub const QUERY_MS: f64 = 40.0;
pub const QUERY_RRU: f64 = 20.0;
/// scaler: ms per run and metrics requested from CloudWatch per run.
pub const SCALER_MS: f64 = 150.0;
pub const SCALER_METRICS: f64 = 4.0;
/// S3 Standard-IA and Glacier Instant Retrieval bill every object as at least 128 KB.
pub const COLD_MIN_OBJECT_BYTES: f64 = 128.0 * 1024.0;
/// Months an archive is kept when no lifecycle rule expires it (for a steady-state figure).
pub const ARCHIVE_MONTHS_WITHOUT_EXPIRY: f64 = 12.0;
/// EMF metrics each stream-consuming function publishes (latency, batch size).
pub const EMF_METRICS_PER_LANE: f64 = 2.0;
/// Long-polling SQS mappings: Lambda's 5 pollers, one 20 s receive each.
pub const SQS_POLLS_PER_MINUTE: f64 = 15.0;
/// Secrets Manager calls: one per cold start, about one in this many query invocations.
pub const QUERY_INVOCATIONS_PER_COLD_START: f64 = 100.0;
/// Naive design: one event per record, one 1-WRU write per event, the default mapping (batch 100, polled).
pub const NAIVE_BATCH_SIZE: u32 = 100;
pub const NAIVE_MS_PER_WRITE: f64 = 0.5;
/// DynamoDB auto scaling: how long capacity stays up after demand falls (scale-in waits for 15 minutes of
/// low utilisation; scale-out follows within a couple of minutes, burst capacity covering the gap). The
/// target utilisation and the bounds come from the template (or, for an on-demand template's alternative,
/// the pipeline's default, [`alternative_capacity`]).
pub const DYNAMODB_SCALE_IN_MINUTES: usize = 15;
/// Bytes through an interface endpoint per API call made through it (request, response, TLS records).
/// Assumption; tally's interface endpoints carry query's Secrets Manager calls and the compactor's reads of
/// single records of the stream (a record of up to a few KB).
pub const INTERFACE_ENDPOINT_BYTES_PER_CALL: f64 = 4096.0;
/// DynamoDB's limit per item (and per partition): 1,000 write units per second.
pub const DYNAMODB_ITEM_WCU_PER_SEC: f64 = 1000.0;

/// One priced line of a monthly bill.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub service: &'static str,
    pub item: String,
    pub quantity: f64,
    pub unit: &'static str,
    pub usd: f64,
}

/// A monthly bill.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Bill {
    pub lines: Vec<Line>,
    /// Events per month the bill carries.
    pub events: f64,
    /// Whether the bill's DynamoDB lines are provisioned capacity (the template's table is `PROVISIONED`)
    /// rather than request units. The naive design's are always request units.
    pub dynamodb_provisioned: bool,
    /// The table's throughput priced both ways (USD a month): on-demand request units, and provisioned
    /// capacity-unit-hours held by auto scaling (the template's bounds and target, or the pipeline's
    /// default ones for an on-demand template). One of them is the bill's DynamoDB lines.
    pub dynamodb_on_demand_usd: f64,
    pub dynamodb_provisioned_usd: f64,
    /// Write and read units the table consumes in a month (whichever way it pays).
    pub dynamodb_write_units: f64,
    pub dynamodb_read_units: f64,
    /// Minutes of the profile's period in which the demand exceeds the capacity auto scaling may hold
    /// (its maximum): those requests are throttled (0 on-demand).
    pub dynamodb_short_minutes: usize,
    /// Peak write units per second the table takes (the minute of the period with most).
    pub dynamodb_peak_wcu_per_sec: f64,
    /// The counter cache at its busiest minute: ECPU per second and bytes stored (0 without a cache).
    pub cache_peak_ecpu_per_sec: f64,
    pub cache_peak_stored_bytes: f64,
}

impl Bill {
    pub(super) fn add(
        &mut self,
        service: &'static str,
        item: impl Into<String>,
        quantity: f64,
        unit: &'static str,
        usd: f64,
    ) {
        self.lines.push(Line {
            service,
            item: item.into(),
            quantity,
            unit,
            usd,
        });
    }

    pub fn total(&self) -> f64 {
        self.lines.iter().map(|l| l.usd).sum()
    }

    pub fn by_service(&self) -> BTreeMap<&'static str, f64> {
        let mut out = BTreeMap::new();
        for l in &self.lines {
            *out.entry(l.service).or_insert(0.0) += l.usd;
        }
        out
    }

    pub fn service(&self, name: &str) -> f64 {
        self.lines
            .iter()
            .filter(|l| l.service == name)
            .map(|l| l.usd)
            .sum()
    }

    /// USD per billion events.
    pub fn per_billion(&self) -> f64 {
        if self.events > 0.0 {
            self.total() / self.events * 1e9
        } else {
            0.0
        }
    }
}

// ---- prices × quantities, one function per service (pinned by the unit tests) ----

pub fn kinesis_provisioned(
    p: &Prices,
    shard_hours: f64,
    put_units: f64,
    ext_shard_hours: f64,
) -> [f64; 3] {
    let k = &p.kinesis;
    [
        shard_hours * k.shard_hour,
        put_units / 1e6 * k.put_payload_units_per_million,
        ext_shard_hours * k.extended_retention_shard_hour,
    ]
}

pub fn kinesis_efo(p: &Prices, on_demand: bool, consumer_shard_hours: f64, gb: f64) -> [f64; 2] {
    let k = &p.kinesis;
    if on_demand {
        [0.0, gb * k.on_demand_efo_gb]
    } else {
        [
            consumer_shard_hours * k.efo_consumer_shard_hour,
            gb * k.efo_gb,
        ]
    }
}

pub fn kinesis_on_demand(p: &Prices, stream_hours: f64, gb_in: f64, gb_out: f64) -> [f64; 3] {
    let k = &p.kinesis;
    [
        stream_hours * k.on_demand_stream_hour,
        gb_in * k.on_demand_gb_in,
        gb_out * k.on_demand_gb_out,
    ]
}

pub fn lambda(p: &Prices, requests: f64, gb_seconds: f64, arm64: bool) -> [f64; 2] {
    let rate = if arm64 {
        p.lambda.arm64_gb_second
    } else {
        p.lambda.x86_64_gb_second
    };
    [
        requests / 1e6 * p.lambda.requests_per_million,
        gb_seconds * rate,
    ]
}

pub fn dynamodb(p: &Prices, wru: f64, rru: f64) -> [f64; 2] {
    let d = &p.dynamodb;
    [
        wru / 1e6 * d.write_request_units_per_million,
        rru / 1e6 * d.read_request_units_per_million,
    ]
}

pub fn s3(p: &Prices, puts: f64, gb_months: f64) -> [f64; 2] {
    [
        puts / 1e3 * p.s3.put_per_thousand,
        gb_months * p.s3.storage_gb_month,
    ]
}

/// A month of provisioned DynamoDB capacity: write and read capacity-unit-hours.
pub fn dynamodb_provisioned(p: &Prices, wcu_hours: f64, rcu_hours: f64) -> f64 {
    wcu_hours * p.dynamodb.provisioned_wcu_hour + rcu_hours * p.dynamodb.provisioned_rcu_hour
}

/// The price of a GB-month in an S3 storage class (as lifecycle rules name them).
pub fn s3_class_gb_month(p: &Prices, class: &str) -> f64 {
    match class {
        "STANDARD_IA" => p.s3.standard_ia_gb_month,
        "GLACIER_IR" => p.s3.glacier_ir_gb_month,
        "GLACIER" => p.s3.glacier_flexible_gb_month,
        _ => p.s3.storage_gb_month,
    }
}

/// The price of 1,000 lifecycle transitions into `class`.
pub fn s3_transition_per_thousand(p: &Prices, class: &str) -> f64 {
    match class {
        "STANDARD_IA" => p.s3.transition_ia_per_thousand,
        _ => p.s3.transition_glacier_per_thousand,
    }
}

pub fn sqs(p: &Prices, requests: f64) -> f64 {
    requests / 1e6 * p.sqs.requests_per_million
}

pub fn cloudwatch(
    p: &Prices,
    log_gb: f64,
    log_gb_months: f64,
    metrics: f64,
    alarms: f64,
    metrics_requested: f64,
) -> [f64; 4] {
    let c = &p.cloudwatch;
    [
        log_gb * c.logs_ingestion_gb + log_gb_months * c.logs_storage_gb_month,
        metrics * c.metric_month,
        alarms * c.alarm_month,
        metrics_requested / 1e3 * c.get_metric_data_per_thousand,
    ]
}

/// ElastiCache Serverless (Valkey): ECPU and GB-hours (the 100 MB minimum applied by the caller).
pub fn elasticache(p: &Prices, ecpu: f64, gb_hours: f64) -> [f64; 2] {
    [
        ecpu / 1e6 * p.elasticache.valkey_ecpu_per_million,
        gb_hours * p.elasticache.valkey_gb_hour,
    ]
}

/// Interface endpoints: AZ-hours and GB processed.
pub fn interface_endpoints(p: &Prices, az_hours: f64, gb: f64) -> [f64; 2] {
    [
        az_hours * p.vpc.interface_endpoint_az_hour,
        gb * p.vpc.interface_endpoint_gb,
    ]
}

pub fn secrets_manager(p: &Prices, secrets: f64, calls: f64) -> f64 {
    secrets * p.secrets_manager.secret_month
        + calls / 1e4 * p.secrets_manager.api_calls_per_ten_thousand
}

// ---- usage ----

/// Which design a bill is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    Tally,
    /// tally with the critical lane writing minute rows only, and the deferred lane writing the hour and
    /// day rows of both lanes (a what-if the report prices).
    TallyMinuteRows,
    Naive,
}

/// What a lane's function is, from its environment.
pub fn lane_kind(f: &FunctionModel) -> LaneKind {
    let has = |var: &str| f.env.iter().any(|e| e == var);
    let archives = has(tally_contract::env::ARCHIVE_BUCKET);
    let cache = has(tally_contract::env::CACHE_ENDPOINT);
    LaneKind {
        // A cache lane that also has the table writes its settled rows there (the deferred lane: the rows
        // carry the unique-user sketches); the realtime lane with the cache has no table.
        writes: has(tally_contract::env::METRICS_TABLE) && (!cache || archives),
        archives,
        realtime: !archives,
        cache_window_secs: cache.then(|| {
            f.dedup_window_secs
                .unwrap_or(super::cache::DEFAULT_DEDUP_WINDOW_SECS as u32)
        }),
    }
}

/// Usage accumulated over the simulated period, per function and per service.
#[derive(Debug, Default)]
struct Usage {
    requests: BTreeMap<String, f64>,
    gb_seconds: BTreeMap<String, f64>,
    wru: f64,
    rru: f64,
    s3_puts: f64,
    archive_bytes: f64,
    log_bytes: f64,
    sqs_requests: f64,
    metrics_requested: f64,
    secret_calls: f64,
    /// The compactor's calls to the stream (the lanes' progress), through the Kinesis interface endpoint.
    stream_calls: f64,
    /// Write and read units per second, per minute of the period (auto scaling follows them).
    wcu_per_sec: Vec<f64>,
    rcu_per_sec: Vec<f64>,
    /// The counter cache: ECPU (per minute, per second), claims made per second and counter hashes, fields
    /// and index-set members created per minute.
    ecpu: f64,
    ecpu_per_sec: Vec<f64>,
    claims_per_sec: Vec<f64>,
    cache_hashes: Vec<f64>,
    cache_fields: Vec<f64>,
    /// The compactor's write units.
    compactor_wru: f64,
}

impl Usage {
    fn invoke(&mut self, f: &FunctionModel, per_sec: f64, ms: f64) {
        let n = per_sec * 60.0;
        *self.requests.entry(f.name.clone()).or_default() += n;
        let billed_ms = tally_billing::lambda::billed_ms((ms * 1000.0).ceil().max(0.0) as u64);
        *self.gb_seconds.entry(f.name.clone()).or_default() +=
            n * tally_billing::lambda::gb_seconds(billed_ms, f.memory_mb);
        if let Some(format) = f.platform_log {
            self.log_bytes += n * tally_billing::lambda::platform_bytes(
                format,
                (ms * 1000.0).max(0.0) as u64,
                f.memory_mb,
            ) as f64;
        }
    }
}

/// A stream lane's embedded-metric log bytes per second (`super::logs`): its window lines, one instance per
/// shard.
pub fn lane_metric_log_bytes_per_sec(
    f: &FunctionModel,
    e: &lanes::LaneEval,
    invocations_per_sec: f64,
    instances: f64,
) -> f64 {
    let function = if lane_kind(f).archives {
        "deferred"
    } else {
        "realtime"
    };
    super::logs::window_lines_per_sec(invocations_per_sec, instances)
        * super::logs::window_line_bytes(
            function,
            e.records_per_invocation,
            e.events_per_invocation,
            e.cycle_ms,
        )
}

/// The scheduled function that compacts the cache into the table (`TALLY_CACHE_ENDPOINT` and
/// `TALLY_METRICS_TABLE`, on a schedule), if any.
pub fn compactor_function(stack: &StackModel) -> Option<FunctionModel> {
    stack
        .functions
        .values()
        .find(|f| {
            f.scheduled_per_minute > 0.0
                && f.env
                    .iter()
                    .any(|e| e == tally_contract::env::CACHE_ENDPOINT)
                && f.env
                    .iter()
                    .any(|e| e == tally_contract::env::METRICS_TABLE)
        })
        .cloned()
}

/// Bytes the cache holds in each minute of the period: the claims made in the last `window_secs` (the
/// period wraps around) and the counter hashes and index sets created in the last
/// [`super::cache::counter_held_secs`] (at steady state, the period's mean creations × the minutes held).
fn cache_stored_bytes(u: &Usage, window_secs: f64) -> Vec<f64> {
    let n = u.claims_per_sec.len();
    if n == 0 || window_secs <= 0.0 {
        return vec![0.0; n];
    }
    let held = super::cache::counter_held_secs() / 60.0;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n as f64;
    let (hashes, fields) = (mean(&u.cache_hashes) * held, mean(&u.cache_fields) * held);
    let w = ((window_secs / 60.0).round() as usize).max(1);
    (0..n)
        .map(|m| {
            let claims: f64 = (0..w)
                .map(|back| u.claims_per_sec[(m + n * w - back) % n] * 60.0)
                .sum();
            super::cache::stored_bytes(claims / window_secs, window_secs, hashes, fields, 0.0)
        })
        .collect()
}

/// Capacity units an auto-scaled table holds each minute for `demand` units per second: demand over the
/// target utilisation, held for the scale-in delay after demand falls, within the bounds.
pub fn auto_scaled(demand: &[f64], cap: &Capacity) -> Vec<f64> {
    (0..demand.len())
        .map(|t| {
            let from = t.saturating_sub(DYNAMODB_SCALE_IN_MINUTES);
            let peak = demand[from..=t].iter().copied().fold(0.0, f64::max);
            (peak / cap.target_utilization)
                .ceil()
                .clamp(cap.min.max(1.0), cap.max.max(cap.min).max(1.0))
        })
        .collect()
}

/// The capacity an on-demand template's table would get on provisioned capacity: the pipeline's default
/// auto scaling (`tally_pipeline::DEFAULT_TABLE_SCALING`).
pub fn alternative_capacity() -> (Capacity, Capacity) {
    let d = tally_pipeline::DEFAULT_TABLE_SCALING;
    let cap = |r: tally_pipeline::CapacityRange| Capacity {
        min: f64::from(r.min),
        max: f64::from(r.max),
        target_utilization: f64::from(d.target_utilization_percent) / 100.0,
    };
    (cap(d.write), cap(d.read))
}

/// The on-demand table's lines: request units, the compactor's writes on a line of their own.
fn dynamodb_request_lines(b: &mut Bill, prices: &Prices, u: &Usage, month_factor: f64) {
    let [w, r] = dynamodb(prices, u.wru * month_factor, u.rru * month_factor);
    b.add(
        "DynamoDB",
        "write request units",
        u.wru * month_factor,
        "WRU",
        w,
    );
    b.add(
        "DynamoDB",
        "read request units",
        u.rru * month_factor,
        "RRU",
        r,
    );
    if u.compactor_wru > 0.0 {
        let wru = u.compactor_wru * month_factor;
        let [w, _] = dynamodb(prices, wru, 0.0);
        b.add("DynamoDB", "write request units (compactor)", wru, "WRU", w);
    }
}

/// Minutes in which `demand` exceeds the `capacity` held.
pub fn short_minutes(demand: &[f64], capacity: &[f64]) -> usize {
    demand.iter().zip(capacity).filter(|(d, c)| *d > *c).count()
}

/// The monthly bill of `design` for `profile` on `stack`, with `shards[m]` open shards in minute `m` of the
/// profile's period (from the scaler simulation; ignored in on-demand mode). `model` holds the packing and
/// the lane model (and caches their evaluations across bills).
pub fn bill(
    design: Design,
    profile: &Profile,
    stack: &StackModel,
    shards: &[u32],
    on_demand: bool,
    prices: &Prices,
    model: &mut Model,
) -> Bill {
    let tally = design != Design::Naive;
    let (epr, record_bytes, put_units_per_record, kb_per_record) = if tally {
        let p = &model.packing;
        (
            p.events_per_record.max(1.0),
            p.bytes_per_record,
            p.put_units_per_record,
            p.on_demand_kb_per_record,
        )
    } else {
        let bytes = f64::from(profile.event_bytes);
        (
            1.0,
            bytes,
            tally_billing::kinesis::put_payload_units(bytes as u64) as f64,
            tally_billing::kinesis::on_demand_kb(bytes as u64) as f64,
        )
    };
    let od_shards = on_demand_shards(profile, epr, record_bytes);
    let minutes = profile.events_per_sec.len().max(1);
    let month_factor = MINUTES_PER_MONTH / minutes as f64;

    let mut u = Usage {
        wcu_per_sec: vec![0.0; minutes],
        rcu_per_sec: vec![0.0; minutes],
        ecpu_per_sec: vec![0.0; minutes],
        claims_per_sec: vec![0.0; minutes],
        cache_hashes: vec![0.0; minutes],
        cache_fields: vec![0.0; minutes],
        ..Usage::default()
    };
    let compactor = compactor_function(stack);
    let zipf = super::traffic::Zipf::new(profile.campaigns, profile.campaign_skew);
    let mut sketches = HashMap::new();
    let mut window_secs = 0.0f64;
    let (mut shard_minutes, mut records_total, mut bytes_total) = (0.0, 0.0, 0.0);
    let mut events_total = 0.0;
    let writer = stack
        .functions_with_env(tally_contract::env::STREAM_NAME)
        .find(|f| f.has_url)
        .cloned();
    let query = stack
        .functions
        .values()
        .find(|f| f.has_url && !f.env.iter().any(|e| e == tally_contract::env::STREAM_NAME))
        .cloned();
    let naive_consumer = FunctionModel {
        name: "naive consumer".to_owned(),
        memory_mb: 256,
        timeout_secs: 30,
        arm64: true,
        env: vec![],
        has_url: false,
        scheduled_per_minute: 0.0,
        log_retention_days: None,
        dedup_window_secs: None,
        // Lambda's default logging: text with START/END/REPORT per invocation.
        platform_log: Some(tally_billing::lambda::LogFormat::Text),
    };
    let mut object_bytes = 0.0;
    for (minute, &eps) in profile.events_per_sec.iter().enumerate() {
        let open_shards = if on_demand {
            od_shards as u32
        } else {
            shards.get(minute).copied().unwrap_or(1).max(1)
        };
        let open = f64::from(open_shards);
        shard_minutes += open;
        events_total += eps * 60.0;
        let records = eps / epr;
        records_total += records * 60.0;
        bytes_total += records * record_bytes * 60.0;
        if let Some(f) = &writer {
            u.invoke(
                f,
                eps / profile.events_per_request,
                lanes::COLLECT_MS.0
                    + lanes::PUT_RECORDS_MS.0
                    + COLLECT_MS_PER_EVENT * profile.events_per_request,
            );
        }
        if let Some(f) = &query {
            u.invoke(f, profile.query_requests_per_day / 86_400.0, QUERY_MS);
            u.rru += profile.query_requests_per_day / 1440.0 * QUERY_RRU;
            u.rcu_per_sec[minute] += profile.query_requests_per_day / 86_400.0 * QUERY_RRU;
            u.secret_calls +=
                profile.query_requests_per_day / 1440.0 / QUERY_INVOCATIONS_PER_COLD_START;
        }
        if tally {
            for m in &stack.kinesis_mappings {
                let Some(f) = stack.functions.get(&m.function) else {
                    continue;
                };
                let kind = lane_kind(f);
                let critical = m.efo || (m.window_secs == 0 && !kind.archives);
                let rows = match (design, critical) {
                    (Design::TallyMinuteRows, true) => Rows::MinuteOnly,
                    (Design::TallyMinuteRows, false) => Rows::AllPlusRealtimeHourDay,
                    _ => Rows::All,
                };
                let e = model.lane(&f.name, kind, m, open_shards, eps, rows);
                let inv = e.invocations_per_shard_sec * open;
                if inv <= 0.0 {
                    continue;
                }
                u.invoke(f, inv, e.duration_ms);
                u.log_bytes += 60.0 * lane_metric_log_bytes_per_sec(f, &e, inv, open);
                u.wru += inv * 60.0 * e.units.write_units;
                u.rru += inv * 60.0 * e.units.read_units;
                u.wcu_per_sec[minute] += inv * e.units.write_units;
                u.rcu_per_sec[minute] += inv * e.units.read_units;
                if let Some(window) = kind.cache_window_secs {
                    u.ecpu += inv * 60.0 * e.cache.ecpu();
                    u.ecpu_per_sec[minute] += inv * e.cache.ecpu();
                    // Both lanes claim the same ids: the first lane's claims are the ones stored.
                    u.claims_per_sec[minute] = u.claims_per_sec[minute].max(inv * e.cache.claims);
                    window_secs = window_secs.max(f64::from(window));
                    let (hashes, pairs) = model.minute_keys(open_shards, eps);
                    let per_pair = if pairs > 0.0 { eps * 60.0 / pairs } else { 0.0 };
                    u.cache_hashes[minute] += hashes + open;
                    // The settled lane's register fields: every pair a batch sends, as if none were
                    // already in the hash (an upper bound on the fields created).
                    u.cache_fields[minute] += pairs
                        * super::cache::expected_fields(&profile.kinds, per_pair)
                        + hashes
                        + inv * 60.0 * e.cache.registers;
                }
                if kind.archives {
                    let puts = inv * 60.0 * e.s3_puts_per_invocation;
                    let bytes = eps * 60.0 * model.packing.archive_bytes_per_event;
                    u.s3_puts += puts;
                    u.archive_bytes += bytes;
                    object_bytes += puts * (bytes / puts).max(COLD_MIN_OBJECT_BYTES);
                }
            }
        } else {
            let per_shard = records / open;
            if per_shard > 0.0 {
                // Polled about once a second, up to the batch size.
                let batch = per_shard.clamp(1.0, f64::from(NAIVE_BATCH_SIZE));
                let inv = per_shard / batch * open;
                u.invoke(
                    &naive_consumer,
                    inv,
                    lanes::FUNCTION_BASE_MS.0 + batch * NAIVE_MS_PER_WRITE,
                );
                u.wru += eps * 60.0;
                u.wcu_per_sec[minute] += eps;
            }
        }
        for f in stack
            .functions
            .values()
            .filter(|f| f.scheduled_per_minute > 0.0)
        {
            if compactor.as_ref().is_some_and(|c| c.name == f.name) {
                continue;
            }
            u.invoke(f, f.scheduled_per_minute / 60.0, SCALER_MS);
            u.metrics_requested += f.scheduled_per_minute * SCALER_METRICS;
        }
        if let (Some(f), true) = (&compactor, tally) {
            let lanes = stack
                .kinesis_mappings
                .iter()
                .filter_map(|m| stack.functions.get(&m.function))
                .filter(|f| lane_kind(f).cache_window_secs.is_some())
                .count() as f64;
            let (hashes, pairs) = model.minute_keys(open_shards, eps);
            let per_pair = if pairs > 0.0 { eps * 60.0 / pairs } else { 0.0 };
            let fields_per_hash = if hashes > 0.0 {
                pairs * super::cache::expected_fields(&profile.kinds, per_pair) / hashes
            } else {
                0.0
            };
            let c = super::cache::compactor_minute(
                profile,
                &zipf,
                eps,
                open,
                hashes,
                fields_per_hash,
                lanes,
                &mut sketches,
            );
            u.invoke(f, f.scheduled_per_minute / 60.0, c.duration_ms);
            u.compactor_wru += c.minute_wru + c.hour_wru;
            u.wcu_per_sec[minute] += (c.minute_wru + c.hour_wru) / 60.0;
            u.rru += c.rollup_rru;
            u.rcu_per_sec[minute] += c.rollup_rru / 60.0;
            u.ecpu += c.ecpu;
            u.ecpu_per_sec[minute] += c.ecpu / 60.0;
            u.stream_calls += f.scheduled_per_minute * c.stream_calls;
        }
        u.sqs_requests += f64::from(stack.sqs_mappings) * SQS_POLLS_PER_MINUTE;
    }

    let provisioned = match stack.table_billing {
        TableBilling::Provisioned { write, read } if tally => Some((write, read)),
        _ => None,
    };
    let (write_cap, read_cap) = provisioned.unwrap_or_else(alternative_capacity);
    let wcu_cap = auto_scaled(&u.wcu_per_sec, &write_cap);
    let rcu_cap = auto_scaled(&u.rcu_per_sec, &read_cap);
    let hours = |cap: &[f64]| cap.iter().sum::<f64>() / 60.0 * month_factor;
    let (wcu_hours, rcu_hours) = (hours(&wcu_cap), hours(&rcu_cap));
    let (wru, rru) = (
        (u.wru + u.compactor_wru) * month_factor,
        u.rru * month_factor,
    );
    let mut b = Bill {
        lines: Vec::new(),
        events: events_total * month_factor,
        dynamodb_provisioned: provisioned.is_some(),
        dynamodb_on_demand_usd: dynamodb(prices, wru, rru).iter().sum(),
        dynamodb_provisioned_usd: dynamodb_provisioned(prices, wcu_hours, rcu_hours),
        dynamodb_write_units: wru,
        dynamodb_read_units: rru,
        dynamodb_short_minutes: if provisioned.is_some() {
            short_minutes(&u.wcu_per_sec, &wcu_cap).max(short_minutes(&u.rcu_per_sec, &rcu_cap))
        } else {
            0
        },
        dynamodb_peak_wcu_per_sec: u.wcu_per_sec.iter().copied().fold(0.0, f64::max),
        cache_peak_ecpu_per_sec: u.ecpu_per_sec.iter().copied().fold(0.0, f64::max),
        cache_peak_stored_bytes: 0.0,
    };
    let stored = cache_stored_bytes(&u, window_secs);
    b.cache_peak_stored_bytes = stored.iter().copied().fold(0.0, f64::max);
    let shard_hours = shard_minutes / 60.0 * month_factor;
    let gb_written = bytes_total * month_factor / GB;
    let efo_consumers = if tally {
        f64::from(stack.consumers)
    } else {
        0.0
    };
    if on_demand {
        let stream_hours = HOURS_PER_MONTH;
        let gb_in = records_total * kb_per_record * 1024.0 * month_factor / GB;
        let shared_readers = if tally {
            stack.kinesis_mappings.iter().filter(|m| !m.efo).count() as f64
        } else {
            1.0
        };
        let [hours, data_in, data_out] =
            kinesis_on_demand(prices, stream_hours, gb_in, gb_written * shared_readers);
        b.add(
            "Kinesis",
            "on-demand stream-hours",
            stream_hours,
            "stream-h",
            hours,
        );
        b.add(
            "Kinesis",
            "on-demand data in (1 KB rounding)",
            gb_in,
            "GB",
            data_in,
        );
        b.add(
            "Kinesis",
            "on-demand retrieval (shared iterator)",
            gb_written * shared_readers,
            "GB",
            data_out,
        );
        if efo_consumers > 0.0 {
            let [_, efo_gb] = kinesis_efo(prices, true, 0.0, gb_written * efo_consumers);
            b.add(
                "Kinesis",
                "on-demand enhanced fan-out retrieval",
                gb_written * efo_consumers,
                "GB",
                efo_gb,
            );
        }
    } else {
        let put_units = records_total * put_units_per_record * month_factor;
        let ext = if stack.stream.retention_hours > 24 {
            shard_hours
        } else {
            0.0
        };
        let [sh, put, ext_usd] = kinesis_provisioned(prices, shard_hours, put_units, ext);
        b.add("Kinesis", "shard-hours", shard_hours, "shard-h", sh);
        b.add(
            "Kinesis",
            "PUT payload units (25 KB)",
            put_units,
            "units",
            put,
        );
        if ext > 0.0 {
            b.add("Kinesis", "extended retention", ext, "shard-h", ext_usd);
        }
        if efo_consumers > 0.0 {
            let [csh, gb] = kinesis_efo(
                prices,
                false,
                shard_hours * efo_consumers,
                gb_written * efo_consumers,
            );
            b.add(
                "Kinesis",
                "enhanced fan-out consumer-shard-hours",
                shard_hours * efo_consumers,
                "shard-h",
                csh,
            );
            b.add(
                "Kinesis",
                "enhanced fan-out retrieval",
                gb_written * efo_consumers,
                "GB",
                gb,
            );
        }
    }
    let mut arm: BTreeMap<String, bool> = stack
        .functions
        .values()
        .map(|f| (f.name.clone(), f.arm64))
        .collect();
    arm.insert(naive_consumer.name.clone(), true);
    for (name, requests) in &u.requests {
        let requests = requests * month_factor;
        let gbs = u.gb_seconds.get(name).copied().unwrap_or(0.0) * month_factor;
        let [req_usd, gbs_usd] = lambda(
            prices,
            requests,
            gbs,
            arm.get(name).copied().unwrap_or(false),
        );
        b.add(
            "Lambda",
            format!("{name}: requests"),
            requests,
            "requests",
            req_usd,
        );
        b.add("Lambda", format!("{name}: compute"), gbs, "GB-s", gbs_usd);
    }
    if provisioned.is_some() {
        let bounds = |c: &Capacity| {
            format!(
                "auto scaled {:.0}..{:.0} at {:.0} %",
                c.min,
                c.max,
                c.target_utilization * 100.0
            )
        };
        b.add(
            "DynamoDB",
            format!("write capacity ({})", bounds(&write_cap)),
            wcu_hours,
            "WCU-h",
            wcu_hours * prices.dynamodb.provisioned_wcu_hour,
        );
        b.add(
            "DynamoDB",
            format!("read capacity ({})", bounds(&read_cap)),
            rcu_hours,
            "RCU-h",
            rcu_hours * prices.dynamodb.provisioned_rcu_hour,
        );
    } else {
        dynamodb_request_lines(&mut b, prices, &u, month_factor);
    }
    if tally && stack.cache.is_some() && u.ecpu > 0.0 {
        let ecpu = u.ecpu * month_factor;
        // The hourly average, at least 100 MB: per minute of the period, then a month of them.
        let min = tally_billing::elasticache::MIN_STORAGE_BYTES as f64;
        let gb_hours = stored.iter().map(|b| b.max(min)).sum::<f64>() / GB / 60.0 * month_factor;
        let [e, g] = elasticache(prices, ecpu, gb_hours);
        b.add(
            "ElastiCache",
            "ECPU (claims, marks, scripts, compactor reads)",
            ecpu,
            "ECPU",
            e,
        );
        b.add(
            "ElastiCache",
            "data stored (claims for the dedup window, counters; 100 MB minimum)",
            gb_hours,
            "GB-h",
            g,
        );
    }
    if tally {
        for ep in &stack.interface_endpoints {
            let az_hours = f64::from(ep.azs) * HOURS_PER_MONTH;
            let calls = match ep.service.as_str() {
                "secretsmanager" => u.secret_calls * month_factor,
                "kinesis-streams" => u.stream_calls * month_factor,
                _ => 0.0,
            };
            let gb = calls * INTERFACE_ENDPOINT_BYTES_PER_CALL / GB;
            let [h, d] = interface_endpoints(prices, az_hours, gb);
            b.add(
                "VPC",
                format!("interface endpoint {} ({} AZ): hours", ep.service, ep.azs),
                az_hours,
                "AZ-h",
                h,
            );
            b.add(
                "VPC",
                format!("interface endpoint {}: data processed", ep.service),
                gb,
                "GB",
                d,
            );
        }
    }
    if u.s3_puts > 0.0 {
        archive_lines(
            &mut b,
            prices,
            stack,
            u.s3_puts * month_factor,
            u.archive_bytes * month_factor / GB,
            object_bytes * month_factor / GB,
        );
    }
    if u.sqs_requests > 0.0 {
        b.add(
            "SQS",
            "failure-queue polling",
            u.sqs_requests * month_factor,
            "requests",
            sqs(prices, u.sqs_requests * month_factor),
        );
    }
    let log_gb = u.log_bytes * month_factor / GB;
    let retention_months = stack
        .functions
        .values()
        .filter_map(|f| f.log_retention_days)
        .max()
        .map_or(1.0, |d| f64::from(d) / 30.4);
    let lanes = if tally {
        stack.kinesis_mappings.len() as f64
    } else {
        1.0
    };
    let [logs, metrics, alarms, gmd] = cloudwatch(
        prices,
        log_gb,
        log_gb * retention_months,
        lanes * EMF_METRICS_PER_LANE,
        f64::from(stack.alarms),
        u.metrics_requested * month_factor,
    );
    b.add(
        "CloudWatch",
        "logs (ingestion + storage)",
        log_gb,
        "GB",
        logs,
    );
    b.add(
        "CloudWatch",
        "custom metrics (EMF)",
        lanes * EMF_METRICS_PER_LANE,
        "metrics",
        metrics,
    );
    b.add(
        "CloudWatch",
        "alarms",
        f64::from(stack.alarms),
        "alarms",
        alarms,
    );
    if u.metrics_requested > 0.0 {
        b.add(
            "CloudWatch",
            "GetMetricData (scaler)",
            u.metrics_requested * month_factor,
            "metrics",
            gmd,
        );
    }
    if stack.secrets > 0 {
        let calls = u.secret_calls * month_factor;
        b.add(
            "Secrets Manager",
            "secrets + API calls",
            f64::from(stack.secrets),
            "secrets",
            secrets_manager(prices, f64::from(stack.secrets), calls),
        );
    }
    b
}

/// The archive's PUTs, transitions and steady-state storage by class, following the bucket's lifecycle
/// rule: `gb_month` GB written a month, `billed_gb_month` with every object counted as at least 128 KB (the
/// cold classes' minimum object size).
fn archive_lines(
    b: &mut Bill,
    prices: &Prices,
    stack: &StackModel,
    puts: f64,
    gb_month: f64,
    billed_gb_month: f64,
) {
    let [put_usd, _] = s3(prices, puts, 0.0);
    b.add("S3", "archive PUTs", puts, "requests", put_usd);
    let life = &stack.archive_lifecycle;
    let end_days = life
        .expiration_days
        .map_or(ARCHIVE_MONTHS_WITHOUT_EXPIRY * 30.4, f64::from);
    // (from day, class); Standard from day 0.
    let mut stages: Vec<(f64, String)> = vec![(0.0, "STANDARD".to_owned())];
    for (days, class) in &life.transitions {
        if f64::from(*days) < end_days {
            stages.push((f64::from(*days), class.clone()));
        }
    }
    for (i, (from, class)) in stages.iter().enumerate() {
        let to = stages.get(i + 1).map_or(end_days, |s| s.0);
        // Objects written a month, kept `to - from` days in this class: at steady state the class holds
        // that many days' worth of writes.
        let gb = if class == "STANDARD" {
            gb_month
        } else {
            billed_gb_month
        } * (to - from)
            / 30.4;
        let price = s3_class_gb_month(prices, class);
        b.add(
            "S3",
            format!("archive storage, {class} (days {from:.0}–{to:.0})"),
            gb,
            "GB-month",
            gb * price,
        );
        if i > 0 {
            b.add(
                "S3",
                format!("lifecycle transitions to {class}"),
                puts,
                "requests",
                puts / 1e3 * s3_transition_per_thousand(prices, class),
            );
        }
    }
}

/// Shards an on-demand stream runs with (for invocation counts): it keeps capacity for twice its peak,
/// starting at 4 MB/s.
pub fn on_demand_shards(profile: &Profile, epr: f64, record_bytes: f64) -> f64 {
    let peak_records = profile.peak_events_per_sec() / epr;
    let peak = tally_domain::scaling::demand_shards(peak_records * record_bytes, peak_records);
    (2.0 * peak).ceil().max(4.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> Prices {
        Prices::shipped().expect("prices")
    }

    #[track_caller]
    fn close(got: f64, expect: f64) {
        assert!(
            (got - expect).abs() < 1e-6 * expect.abs().max(1.0),
            "{got} != {expect}"
        );
    }

    // Hand-computed from xtask/prices/us-east-1.toml, one case per service.

    #[test]
    fn kinesis_arithmetic() {
        // 2 shards for a 730-hour month: 1,460 shard-hours × $0.015 = $21.90.
        // 2.592e9 records of ≤ 25 KB = 2,592 million units × $0.014 = $36.288. No extended retention.
        let [sh, put, ext] = kinesis_provisioned(&prices(), 1460.0, 2.592e9, 0.0);
        close(sh, 21.90);
        close(put, 36.288);
        close(ext, 0.0);
        // One EFO consumer on 2 shards: 1,460 × $0.015 = $21.90; 500 GB × $0.013 = $6.50.
        let [c, g] = kinesis_efo(&prices(), false, 1460.0, 500.0);
        close(c, 21.90);
        close(g, 6.50);
        // On-demand: 730 h × $0.04 = $29.20; 1,000 GB in × $0.08 = $80; 500 GB out × $0.04 = $20.
        let [h, i, o] = kinesis_on_demand(&prices(), 730.0, 1000.0, 500.0);
        close(h, 29.20);
        close(i, 80.0);
        close(o, 20.0);
        let [_, efo] = kinesis_efo(&prices(), true, 0.0, 100.0);
        close(efo, 5.0);
    }

    #[test]
    fn lambda_arithmetic() {
        // 10 M requests × $0.20/M = $2; 1 M GB-s × $0.0000133334 = $13.3334 (arm64), $16.6667 (x86_64).
        let [r, c] = lambda(&prices(), 1e7, 1e6, true);
        close(r, 2.0);
        close(c, 13.3334);
        close(lambda(&prices(), 0.0, 1e6, false)[1], 16.6667);
    }

    #[test]
    fn dynamodb_arithmetic() {
        // 100 M WRU × $0.625/M = $62.50; 40 M RRU × $0.125/M = $5.
        let [w, r] = dynamodb(&prices(), 1e8, 4e7);
        close(w, 62.5);
        close(r, 5.0);
    }

    #[test]
    fn s3_arithmetic() {
        // 2 M PUTs × $0.005/1000 = $10; 1,000 GB-month × $0.023 = $23.
        let [p, s] = s3(&prices(), 2e6, 1000.0);
        close(p, 10.0);
        close(s, 23.0);
    }

    #[test]
    fn sqs_arithmetic() {
        // 657,000 requests × $0.40/M = $0.2628.
        close(sqs(&prices(), 657_000.0), 0.2628);
    }

    #[test]
    fn cloudwatch_arithmetic() {
        // 10 GB logs × $0.50 + 10 GB-month × $0.03 = $5.30; 4 metrics × $0.30 = $1.20;
        // 6 alarms × $0.10 = $0.60; 175,200 metrics requested × $0.01/1000 = $1.752.
        let [logs, metrics, alarms, gmd] = cloudwatch(&prices(), 10.0, 10.0, 4.0, 6.0, 175_200.0);
        close(logs, 5.30);
        close(metrics, 1.20);
        close(alarms, 0.60);
        close(gmd, 1.752);
    }

    #[test]
    fn secrets_arithmetic() {
        // 1 secret × $0.40 + 20,000 calls × $0.05/10,000 = $0.50.
        close(secrets_manager(&prices(), 1.0, 20_000.0), 0.50);
    }

    #[test]
    fn provisioned_capacity_follows_demand_with_the_scale_in_delay() {
        // 70 units/s at 70 % → 100 provisioned; a drop keeps the capacity for 15 minutes.
        let mut demand = vec![70.0; 5];
        demand.extend(vec![7.0; 20]);
        let wide = Capacity {
            min: 1.0,
            max: 40_000.0,
            target_utilization: 0.7,
        };
        let cap = auto_scaled(&demand, &wide);
        assert_eq!(cap[0], 100.0);
        assert_eq!(cap[5 + 14], 100.0);
        assert_eq!(cap[5 + 15], 10.0);
        assert_eq!(short_minutes(&demand, &cap), 0);
        // The bounds: a floor of 20 holds 20 after the drop, a ceiling of 80 holds 80 at the top, and the
        // five minutes of 70 units/s fit under 80 (no throttling); at 50 % they would want 140.
        let narrow = Capacity {
            min: 20.0,
            max: 80.0,
            target_utilization: 0.7,
        };
        let cap = auto_scaled(&demand, &narrow);
        assert_eq!((cap[0], cap[24]), (80.0, 20.0));
        assert_eq!(short_minutes(&demand, &cap), 0);
        let half = Capacity {
            target_utilization: 0.5,
            ..narrow
        };
        assert_eq!(auto_scaled(&demand, &half)[0], 80.0);
        // Demand above the ceiling: throttled minutes.
        let tight = Capacity {
            max: 50.0,
            ..narrow
        };
        assert_eq!(short_minutes(&demand, &auto_scaled(&demand, &tight)), 5);
        // Fixed capacity (no scaling policy): min = max.
        let fixed = Capacity {
            min: 25.0,
            max: 25.0,
            target_utilization: 1.0,
        };
        assert!(auto_scaled(&demand, &fixed).iter().all(|&c| c == 25.0));
        // 730 h of 100 WCU and 10 RCU: 73,000 × $0.00065 + 7,300 × $0.00013 = $47.45 + $0.949.
        close(dynamodb_provisioned(&prices(), 73_000.0, 7_300.0), 48.399);
    }

    #[test]
    fn s3_lifecycle_prices() {
        assert_eq!(s3_class_gb_month(&prices(), "STANDARD_IA"), 0.0125);
        assert_eq!(s3_class_gb_month(&prices(), "GLACIER_IR"), 0.004);
        assert_eq!(s3_class_gb_month(&prices(), "STANDARD"), 0.023);
        assert_eq!(s3_transition_per_thousand(&prices(), "GLACIER_IR"), 0.02);
    }

    fn model(p: &Profile) -> Model {
        let packing = super::super::traffic::packing(p, 2_000);
        Model::new(p, packing, lanes::Overrides::default())
    }

    #[test]
    fn whole_bill_by_hand() {
        // 1,000 events/s of 200 bytes, 10 per request over 1,000 campaigns: `pack` makes nearly one record
        // per event (checked in traffic.rs); 2 shards all month.
        let p = Profile::flat(1000.0, 200).expect("profile");
        let mut m = model(&p);
        let records = 1000.0 / m.packing.events_per_record;
        let stack =
            super::super::stack::read(&super::super::stack::tests::fixture()).expect("stack");
        let b = bill(
            Design::Tally,
            &p,
            &stack,
            &vec![2; p.events_per_sec.len()],
            false,
            &prices(),
            &mut m,
        );
        close(b.events, 1000.0 * 60.0 * MINUTES_PER_MONTH);
        let line = |item: &str| {
            b.lines
                .iter()
                .find(|l| l.item == item)
                .map(|l| l.usd)
                .expect(item)
        };
        close(line("shard-hours"), 2.0 * 730.0 * 0.015);
        close(
            line("PUT payload units (25 KB)"),
            records * m.packing.put_units_per_record * 3600.0 * 730.0 / 1e6 * 0.014,
        );
        close(
            line("enhanced fan-out consumer-shard-hours"),
            2.0 * 730.0 * 0.015,
        );
        close(
            line("collect: requests"),
            100.0 * 3600.0 * 730.0 / 1e6 * 0.20,
        );
        // collect: 100 requests/s × 16 ms (15.05 rounded up) × 0.25 GB.
        close(
            line("collect: compute"),
            100.0 * 3600.0 * 730.0 * 0.016 * 0.25 * 0.0000133334,
        );
        close(line("alarms"), 0.2);
        let naive = bill(
            Design::Naive,
            &p,
            &stack,
            &vec![2; p.events_per_sec.len()],
            false,
            &prices(),
            &mut m,
        );
        // Naive: one WRU per event, one PUT payload unit per event.
        let quantity = |b: &Bill, item: &str| {
            b.lines
                .iter()
                .find(|l| l.item == item)
                .map(|l| l.quantity)
                .expect(item)
        };
        close(quantity(&naive, "write request units"), b.events);
        close(quantity(&naive, "PUT payload units (25 KB)"), b.events);
    }

    #[test]
    fn a_provisioned_table_is_billed_in_capacity_hours() {
        use super::super::stack::{Capacity, TableBilling};
        let p = Profile::flat(1000.0, 200).expect("profile");
        let mut m = model(&p);
        let mut stack =
            super::super::stack::read(&super::super::stack::tests::fixture()).expect("stack");
        assert_eq!(stack.table_billing, TableBilling::OnDemand);
        let shards = vec![2; p.events_per_sec.len()];
        let on_demand = bill(Design::Tally, &p, &stack, &shards, false, &prices(), &mut m);
        assert!(!on_demand.dynamodb_provisioned);
        close(
            on_demand.dynamodb_on_demand_usd,
            on_demand.service("DynamoDB"),
        );
        // Fixed bounds so the hours are known by hand: 50 WCU and 2 RCU all month.
        let fixed = |units: f64| Capacity {
            min: units,
            max: units,
            target_utilization: 0.7,
        };
        stack.table_billing = TableBilling::Provisioned {
            write: fixed(50.0),
            read: fixed(2.0),
        };
        let b = bill(Design::Tally, &p, &stack, &shards, false, &prices(), &mut m);
        assert!(b.dynamodb_provisioned);
        let dynamodb: Vec<_> = b.lines.iter().filter(|l| l.service == "DynamoDB").collect();
        assert_eq!(dynamodb.len(), 2, "{dynamodb:?}");
        assert_eq!(
            dynamodb[0].item,
            "write capacity (auto scaled 50..50 at 70 %)"
        );
        close(dynamodb[0].quantity, 50.0 * 730.0);
        close(dynamodb[0].usd, 50.0 * 730.0 * 0.00065);
        close(dynamodb[1].quantity, 2.0 * 730.0);
        close(dynamodb[1].usd, 2.0 * 730.0 * 0.00013);
        close(b.service("DynamoDB"), 23.725 + 0.1898);
        close(b.dynamodb_provisioned_usd, 23.725 + 0.1898);
        // The other mode is still priced, on the same units.
        close(b.dynamodb_on_demand_usd, on_demand.dynamodb_on_demand_usd);
        close(b.dynamodb_write_units, on_demand.dynamodb_write_units);
        // The row model writes more than 50 units a second: every minute is short of capacity.
        let demand = b.dynamodb_write_units / (730.0 * 3600.0);
        assert!(demand > 50.0, "{demand}");
        assert_eq!(b.dynamodb_short_minutes, p.events_per_sec.len());
        // Everything else is the same bill.
        close(
            b.total() - b.service("DynamoDB"),
            on_demand.total() - on_demand.service("DynamoDB"),
        );
        // The naive design keeps its request units whatever the template says.
        let naive = bill(Design::Naive, &p, &stack, &shards, false, &prices(), &mut m);
        assert!(!naive.dynamodb_provisioned);
        assert!(naive
            .lines
            .iter()
            .any(|l| l.service == "DynamoDB" && l.unit == "WRU"));
    }

    #[test]
    fn table_writes_grow_with_key_cardinality() {
        // The realtime and deferred lanes write each (campaign, ad) of a batch once: few keys, few writes.
        let stack =
            super::super::stack::read(&super::super::stack::tests::fixture()).expect("stack");
        let wru_per_event = |campaigns: u32, ads: u32| {
            let mut p = Profile::flat(5000.0, 200).expect("profile");
            (p.campaigns, p.ads_per_campaign) = (campaigns, ads);
            let b = bill(
                Design::Tally,
                &p,
                &stack,
                &vec![4; p.events_per_sec.len()],
                false,
                &prices(),
                &mut model(&p),
            );
            b.lines
                .iter()
                .find(|l| l.item == "write request units")
                .map(|l| l.quantity)
                .expect("wru")
                / b.events
        };
        let (few, many) = (wru_per_event(10, 2), wru_per_event(5000, 10));
        // ×1.3 (8.4 against 6.5) since a request is one record; it was more than ×2 with the former per-event
        // keys, under which the counter model still routes campaigns (`counters.rs`).
        assert!(many > few * 1.2, "{many} vs {few} WRU per event");
    }
}
