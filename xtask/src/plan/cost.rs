//! The cost model: usage per service from the profile, the template and the simulated shard counts, then
//! list prices. Every assumption that is not a price or a template setting is a named constant here and is
//! listed in `docs/plan.md`.

use std::collections::BTreeMap;

use super::prices::Prices;
use super::stack::{FunctionModel, KinesisMapping, StackModel};
use tally_traffic::Profile;

/// Hours in the billing month AWS uses.
pub const HOURS_PER_MONTH: f64 = 730.0;
pub const MINUTES_PER_MONTH: f64 = HOURS_PER_MONTH * 60.0;
const GB: f64 = 1024.0 * 1024.0 * 1024.0;
/// A PUT payload unit (provisioned mode).
pub const PUT_UNIT_BYTES: f64 = 25.0 * 1024.0;

// ---- model assumptions (docs/plan.md) ----
/// Header bytes of a packed record (magic, version, count, base time, checksum).
pub const RECORD_OVERHEAD_BYTES: f64 = 16.0;
/// collect: ms per request (validation, encoding, one PutRecords round trip).
pub const COLLECT_MS: f64 = 15.0;
/// Stream consumers: fixed ms per invocation, ms per event, ms per table row written (16 in flight).
pub const LANE_BASE_MS: f64 = 10.0;
pub const LANE_MS_PER_EVENT: f64 = 0.002;
pub const DEFERRED_MS_PER_EVENT: f64 = 0.02;
pub const MS_PER_ROW: f64 = 0.5;
/// The archive write of a deferred invocation (one S3 PUT).
pub const ARCHIVE_PUT_MS: f64 = 30.0;
/// query: ms and read units per request.
pub const QUERY_MS: f64 = 40.0;
pub const QUERY_RRU: f64 = 20.0;
/// scaler: ms per run and metrics requested from CloudWatch per run.
pub const SCALER_MS: f64 = 150.0;
pub const SCALER_METRICS: f64 = 4.0;
/// Lambda invocation cadence per shard: enhanced fan-out pushes as records arrive, one invocation at a time
/// per shard (capped by this many per second); the shared iterator is polled about once a second.
pub const EFO_MAX_INVOCATIONS_PER_SHARD_SEC: f64 = 20.0;
pub const POLL_INVOCATIONS_PER_SHARD_SEC: f64 = 1.0;
/// Counter rows per distinct key per batch: minute, hour and day rows, of 1, 2 and 4 write units (the
/// day rows carry a dense 3 KB HyperLogLog), each read once before its conditional write (1 read unit).
pub const WRU_PER_KEY: f64 = 7.0;
pub const RRU_PER_KEY: f64 = 3.0;
/// Campaign index row: one write unit per distinct campaign per batch.
pub const WRU_PER_CAMPAIGN_INDEX: f64 = 1.0;
/// Archived bytes per stream byte: enriched NDJSON is ~3× the stream encoding, gzip shrinks it ~8×.
pub const ARCHIVE_BYTES_PER_STREAM_BYTE: f64 = 0.4;
/// Log bytes per invocation: the platform's START/END/REPORT lines plus one info line.
pub const LOG_BYTES_PER_INVOCATION: f64 = 600.0;
/// EMF metrics each stream-consuming function publishes (latency, batch size).
pub const EMF_METRICS_PER_LANE: f64 = 2.0;
/// Long-polling SQS mappings: Lambda's 5 pollers, one 20 s receive each.
pub const SQS_POLLS_PER_MINUTE: f64 = 15.0;
/// Secrets Manager calls: one per cold start, about one in this many query invocations.
pub const QUERY_INVOCATIONS_PER_COLD_START: f64 = 100.0;
/// Naive design: one event per record, one 1-WRU write per event, the default mapping (batch 100, polled).
pub const NAIVE_BATCH_SIZE: u32 = 100;
pub const NAIVE_MS_PER_WRITE: f64 = 0.5;

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
}

impl Bill {
    fn add(
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

pub fn secrets_manager(p: &Prices, secrets: f64, calls: f64) -> f64 {
    secrets * p.secrets_manager.secret_month
        + calls / 1e4 * p.secrets_manager.api_calls_per_ten_thousand
}

// ---- usage ----

/// Expected distinct campaigns and (campaign, ad) pairs in a batch of `n` events, campaigns Zipf-skewed,
/// ads uniform within a campaign. Tabulated on a log grid once, interpolated after.
#[derive(Debug, Clone)]
pub struct Distinct {
    grid: Vec<(f64, f64, f64)>,
}

impl Distinct {
    pub fn new(campaigns: u32, ads: u32, skew: f64) -> Distinct {
        let weights: Vec<f64> = (1..=campaigns)
            .map(|k| 1.0 / f64::from(k).powf(skew))
            .collect();
        let sum: f64 = weights.iter().sum();
        let probs: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        let ads = f64::from(ads);
        let mut grid = Vec::new();
        let mut n = 1.0f64;
        while n <= 1e9 {
            let (mut c, mut pairs) = (0.0, 0.0);
            for &p in &probs {
                c += 1.0 - (1.0 - p).powf(n);
                pairs += ads * (1.0 - (1.0 - p / ads).powf(n));
            }
            grid.push((n, c, pairs));
            n *= 1.5;
        }
        Distinct { grid }
    }

    /// (campaigns, pairs) in a batch of `n` events.
    pub fn at(&self, n: f64) -> (f64, f64) {
        if n <= 0.0 {
            return (0.0, 0.0);
        }
        let i = self.grid.partition_point(|g| g.0 <= n);
        match (
            i.checked_sub(1).and_then(|j| self.grid.get(j)),
            self.grid.get(i),
        ) {
            (Some(a), Some(b)) => {
                let t = (n.ln() - a.0.ln()) / (b.0.ln() - a.0.ln());
                (a.1 + (b.1 - a.1) * t, a.2 + (b.2 - a.2) * t)
            }
            (Some(a), None) => (a.1, a.2),
            (None, _) => (n.min(1.0), n.min(1.0)),
        }
    }
}

/// Events packed into one record: what one request brings, up to what fits in `MAX_RECORD_BYTES`.
pub fn events_per_record(profile: &Profile) -> f64 {
    let fit = ((tally_domain::wire::MAX_RECORD_BYTES as f64 - RECORD_OVERHEAD_BYTES)
        / f64::from(profile.event_bytes))
    .floor()
    .max(1.0);
    profile.events_per_request.min(fit).max(1.0)
}

/// Invocations per second of one mapping on one shard receiving `records` records per second.
pub fn invocations_per_shard_sec(
    records: f64,
    batch_size: u32,
    window_secs: u32,
    efo: bool,
) -> f64 {
    if records <= 0.0 {
        return 0.0;
    }
    let cadence = if window_secs > 0 {
        1.0 / f64::from(window_secs)
    } else if efo {
        EFO_MAX_INVOCATIONS_PER_SHARD_SEC
    } else {
        POLL_INVOCATIONS_PER_SHARD_SEC
    };
    records
        .min(cadence)
        .max(records / f64::from(batch_size.max(1)))
}

/// Invocations per second of mapping `m` on one shard, when an invocation of a batch of `r` records takes
/// `duration(r)` ms: a shard's batches run one after the other (times the parallelization factor), so
/// while one runs the next batch grows. Found by fixed-point iteration from the cadence alone.
pub fn lane_invocations(records: f64, m: &KinesisMapping, duration: impl Fn(f64) -> f64) -> f64 {
    let mut inv = invocations_per_shard_sec(records, m.batch_size, m.window_secs, m.efo);
    for _ in 0..30 {
        if inv <= 0.0 {
            return 0.0;
        }
        let busy_cap =
            1000.0 / duration(records / inv).max(1.0) * f64::from(m.parallelization.max(1));
        let next =
            invocations_per_shard_sec(records, m.batch_size, m.window_secs, m.efo).min(busy_cap);
        let next = next.max(records / f64::from(m.batch_size.max(1)));
        if (next - inv).abs() < 1e-9 * inv {
            return next;
        }
        // Damped: halfway, so the iteration settles instead of oscillating.
        inv = (inv + next) / 2.0;
    }
    inv
}

/// Which design a bill is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    Tally,
    /// tally with the critical lane writing minute rows only, and the deferred lane writing the hour and
    /// day rows of both lanes (a what-if the report prices).
    TallyMinuteRows,
    Naive,
}

/// Counter rows, write units and read units per distinct key per batch of a lane.
fn rows_per_key(design: Design, critical: bool) -> (f64, f64, f64) {
    match (design, critical) {
        (Design::TallyMinuteRows, true) => (1.0, 1.0, 1.0),
        // Settled minute/hour/day rows plus the realtime hour (2 WU) and day (4 WU) rows.
        (Design::TallyMinuteRows, false) => (5.0, WRU_PER_KEY + 6.0, RRU_PER_KEY + 2.0),
        _ => (3.0, WRU_PER_KEY, RRU_PER_KEY),
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
}

impl Usage {
    fn invoke(&mut self, f: &FunctionModel, per_sec: f64, ms: f64) {
        let n = per_sec * 60.0;
        *self.requests.entry(f.name.clone()).or_default() += n;
        let billed_ms = ms.ceil().max(1.0);
        *self.gb_seconds.entry(f.name.clone()).or_default() +=
            n * billed_ms / 1000.0 * f64::from(f.memory_mb) / 1024.0;
        self.log_bytes += n * LOG_BYTES_PER_INVOCATION;
    }
}

/// The monthly bill of `design` for `profile` on `stack`, with `shards[m]` open shards in minute `m` of the
/// profile's period (from the scaler simulation; ignored in on-demand mode).
pub fn bill(
    design: Design,
    profile: &Profile,
    stack: &StackModel,
    shards: &[u32],
    on_demand: bool,
    prices: &Prices,
) -> Bill {
    let distinct = Distinct::new(
        profile.campaigns,
        profile.ads_per_campaign,
        profile.campaign_skew,
    );
    let epr = match design {
        Design::Tally | Design::TallyMinuteRows => events_per_record(profile),
        Design::Naive => 1.0,
    };
    let record_bytes = match design {
        Design::Tally | Design::TallyMinuteRows => {
            epr * f64::from(profile.event_bytes) + RECORD_OVERHEAD_BYTES
        }
        Design::Naive => f64::from(profile.event_bytes),
    };
    let put_units_per_record = (record_bytes / PUT_UNIT_BYTES).ceil().max(1.0);
    let kb_per_record = (record_bytes / 1024.0).ceil().max(1.0);
    let od_shards = on_demand_shards(profile, epr, record_bytes);
    let month_factor = MINUTES_PER_MONTH / profile.events_per_sec.len().max(1) as f64;

    let mut u = Usage::default();
    let (mut shard_minutes, mut records_total, mut bytes_total) = (0.0, 0.0, 0.0);
    let mut events_total = 0.0;
    let writer = stack
        .functions_with_env("TALLY_STREAM_NAME")
        .find(|f| f.has_url)
        .cloned();
    let query = stack
        .functions
        .values()
        .find(|f| f.has_url && !f.env.iter().any(|e| e == "TALLY_STREAM_NAME"))
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
    };
    for (minute, &eps) in profile.events_per_sec.iter().enumerate() {
        let open = if on_demand {
            od_shards
        } else {
            f64::from(shards.get(minute).copied().unwrap_or(1).max(1))
        };
        shard_minutes += open;
        events_total += eps * 60.0;
        let records = eps / epr;
        records_total += records * 60.0;
        bytes_total += records * record_bytes * 60.0;
        if let Some(f) = &writer {
            u.invoke(
                f,
                eps / profile.events_per_request,
                COLLECT_MS + 0.005 * profile.events_per_request,
            );
        }
        if let Some(f) = &query {
            u.invoke(f, profile.query_requests_per_day / 86_400.0, QUERY_MS);
            u.rru += profile.query_requests_per_day / 1440.0 * QUERY_RRU;
            u.secret_calls +=
                profile.query_requests_per_day / 1440.0 / QUERY_INVOCATIONS_PER_COLD_START;
        }
        let per_shard = records / open;
        match design {
            Design::Tally | Design::TallyMinuteRows => {
                for m in &stack.kinesis_mappings {
                    let Some(f) = stack.functions.get(&m.function) else {
                        continue;
                    };
                    lane(
                        &mut u,
                        design,
                        f,
                        m,
                        per_shard,
                        open,
                        epr,
                        record_bytes,
                        &distinct,
                    );
                }
            }
            Design::Naive => {
                let inv = invocations_per_shard_sec(per_shard, NAIVE_BATCH_SIZE, 0, false);
                if inv > 0.0 {
                    let events = per_shard / inv;
                    u.invoke(
                        &naive_consumer,
                        inv * open,
                        LANE_BASE_MS + events * NAIVE_MS_PER_WRITE,
                    );
                    u.wru += eps * 60.0;
                }
            }
        }
        for f in stack
            .functions
            .values()
            .filter(|f| f.scheduled_per_minute > 0.0)
        {
            u.invoke(f, f.scheduled_per_minute / 60.0, SCALER_MS);
            u.metrics_requested += f.scheduled_per_minute * SCALER_METRICS;
        }
        u.sqs_requests += f64::from(stack.sqs_mappings) * SQS_POLLS_PER_MINUTE;
    }

    let mut b = Bill {
        lines: Vec::new(),
        events: events_total * month_factor,
    };
    let shard_hours = shard_minutes / 60.0 * month_factor;
    let gb_written = bytes_total * month_factor / GB;
    let efo_consumers = match design {
        Design::Tally | Design::TallyMinuteRows => f64::from(stack.consumers),
        Design::Naive => 0.0,
    };
    if on_demand {
        let stream_hours = HOURS_PER_MONTH;
        let gb_in = records_total * kb_per_record * 1024.0 * month_factor / GB;
        let shared_readers = match design {
            Design::Tally | Design::TallyMinuteRows => {
                stack.kinesis_mappings.iter().filter(|m| !m.efo).count() as f64
            }
            Design::Naive => 1.0,
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
    if u.s3_puts > 0.0 {
        let monthly_gb = u.archive_bytes * month_factor / GB;
        let months_kept = stack
            .archive_expiration_days
            .map_or(12.0, |d| f64::from(d) / 30.4);
        let gb_months = monthly_gb * months_kept;
        let [puts, storage] = s3(prices, u.s3_puts * month_factor, gb_months);
        b.add(
            "S3",
            "archive PUTs",
            u.s3_puts * month_factor,
            "requests",
            puts,
        );
        b.add(
            "S3",
            format!("archive storage at steady state ({months_kept:.1} months kept)"),
            gb_months,
            "GB-month",
            storage,
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
    let lanes = match design {
        Design::Tally | Design::TallyMinuteRows => stack.kinesis_mappings.len() as f64,
        Design::Naive => 1.0,
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

/// One stream-consuming mapping for one minute.
#[allow(clippy::too_many_arguments)]
fn lane(
    u: &mut Usage,
    design: Design,
    f: &FunctionModel,
    m: &KinesisMapping,
    per_shard: f64,
    shards: f64,
    epr: f64,
    record_bytes: f64,
    distinct: &Distinct,
) {
    let writes = f.env.iter().any(|e| e == "TALLY_METRICS_TABLE");
    let archives = f.env.iter().any(|e| e == "TALLY_ARCHIVE_BUCKET");
    let critical = m.efo || (m.window_secs == 0 && !archives);
    let (rows, wru_per_key, rru_per_key) = rows_per_key(design, critical);
    // A campaign's events land on at most `partition::BUCKETS` shards, so with more shards than that one
    // shard sees only that share of the campaigns: its batch of n events holds the keys a batch of n / f
    // events of the whole stream would hold, times f.
    let share = (tally_domain::partition::BUCKETS as f64 / shards).min(1.0);
    let keys = |records: f64| {
        if writes {
            let (c, p) = distinct.at(records * epr / share);
            (c * share, p * share)
        } else {
            (0.0, 0.0)
        }
    };
    let duration = |records: f64| {
        let (campaigns, pairs) = keys(records);
        let per_event = if archives {
            DEFERRED_MS_PER_EVENT
        } else {
            LANE_MS_PER_EVENT
        };
        LANE_BASE_MS
            + records * epr * per_event
            + (campaigns + pairs) * rows * MS_PER_ROW
            + if archives { ARCHIVE_PUT_MS } else { 0.0 }
    };
    let inv = lane_invocations(per_shard, m, duration);
    if inv <= 0.0 {
        return;
    }
    let records = per_shard / inv;
    let (campaigns, pairs) = keys(records);
    let ms = duration(records);
    let total_inv = inv * shards;
    u.invoke(f, total_inv, ms);
    let n = total_inv * 60.0;
    u.wru += n * ((campaigns + pairs) * wru_per_key + campaigns * WRU_PER_CAMPAIGN_INDEX);
    u.rru += n * (campaigns + pairs) * rru_per_key;
    if archives {
        u.s3_puts += n;
        u.archive_bytes += n * records * record_bytes * ARCHIVE_BYTES_PER_STREAM_BYTE;
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

    #[track_caller]
    fn check_invocations(records: f64, batch: u32, window: u32, efo: bool, expect: f64) {
        close(
            invocations_per_shard_sec(records, batch, window, efo),
            expect,
        );
    }

    #[test]
    fn invocation_cadence() {
        check_invocations(0.0, 100, 0, true, 0.0);
        check_invocations(5.0, 100, 0, true, 5.0); // EFO: every record pushed at once
        check_invocations(500.0, 100, 0, true, 20.0); // capped by the cadence
        check_invocations(5_000.0, 100, 0, true, 50.0); // full batches
        check_invocations(500.0, 100, 0, false, 5.0); // polled once a second: full batches
        check_invocations(50.0, 100, 0, false, 1.0);
        check_invocations(50.0, 2000, 30, false, 1.0 / 30.0); // batching window
        check_invocations(1000.0, 2000, 30, false, 0.5); // batch fills before the window
    }

    #[test]
    fn counter_rows_per_key() {
        for (design, critical, expect) in [
            (Design::Tally, true, (3.0, 7.0, 3.0)),
            (Design::Tally, false, (3.0, 7.0, 3.0)),
            (Design::TallyMinuteRows, true, (1.0, 1.0, 1.0)),
            (Design::TallyMinuteRows, false, (5.0, 13.0, 5.0)),
        ] {
            assert_eq!(
                rows_per_key(design, critical),
                expect,
                "{design:?} critical {critical}"
            );
        }
    }

    #[test]
    fn distinct_keys() {
        let d = Distinct::new(100, 10, 0.0);
        let (c, p) = d.at(1.0);
        close(c, 1.0);
        close(p, 1.0);
        let (c, p) = d.at(1e6);
        assert!(
            (c - 100.0).abs() < 0.01 && (p - 1000.0).abs() < 0.1,
            "{c} {p}"
        );
        // Uniform, 100 events over 100 campaigns: 100 × (1 - 0.99^100) ≈ 63.4.
        let (c, _) = d.at(100.0);
        assert!((c - 63.4).abs() < 1.5, "{c}");
        // Skew concentrates events on few campaigns: fewer distinct keys.
        let skewed = Distinct::new(100, 10, 1.2);
        assert!(skewed.at(100.0).0 < c);
    }

    #[test]
    fn packing() {
        let mut p = Profile::flat(1000.0, 200).expect("profile");
        p.events_per_request = 1.0;
        close(events_per_record(&p), 1.0);
        p.events_per_request = 50.0;
        close(events_per_record(&p), 50.0);
        p.events_per_request = 1000.0;
        // 24 KiB - 16 bytes of header / 200 bytes = 122 events.
        close(events_per_record(&p), 122.0);
    }

    #[test]
    fn whole_bill_by_hand() {
        // 1,000 events/s of 200 bytes, 10 per request → 100 records/s of 2,016 bytes, 2 shards all month.
        let p = Profile::flat(1000.0, 200).expect("profile");
        let stack =
            super::super::stack::read(&super::super::stack::tests::fixture()).expect("stack");
        let b = bill(
            Design::Tally,
            &p,
            &stack,
            &vec![2; p.events_per_sec.len()],
            false,
            &prices(),
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
            100.0 * 3600.0 * 730.0 / 1e6 * 0.014,
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
            );
            b.lines
                .iter()
                .find(|l| l.item == "write request units")
                .map(|l| l.quantity)
                .expect("wru")
                / b.events
        };
        let (few, many) = (wru_per_event(10, 2), wru_per_event(5000, 10));
        assert!(many > few * 3.0, "{many} vs {few} WRU per event");
    }
}
