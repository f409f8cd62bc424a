//! `cargo xtask plan --sweep`: the profile's shape scaled to mean rates from 1,000 to 1,000,000 events per
//! second, each rate priced by [`super::plan`] (so the sweep inherits the cost model), and for each rate the
//! first AWS limit every part of the stack meets at the peak minute, with what to raise. Every quota below
//! is AWS's default for a new account in us-east-1, with the documentation page it comes from; they are
//! listed in `docs/plan.md` ("Where it stops scaling").
//!
//! The limit arithmetic is in small pure functions (tested by hand-computed cases); [`Row::from_report`]
//! is the one place that reads a [`Report`].

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use super::prices::Prices;
use super::render::escape;
use super::Report;
use tally_domain::partition::BUCKETS;
use tally_domain::scaling;
use tally_traffic::Profile;

/// The mean rates swept, events per second (log-spaced, 1-2-5).
pub const RATES: [f64; 10] = [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];

// ---- AWS default quotas (us-east-1) ----

/// Kinesis shards per account and Region: 20,000 in us-east-1, us-west-2 and eu-west-1 (1,000 or 6,000
/// elsewhere). https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html
pub const KINESIS_ACCOUNT_SHARDS: f64 = 20_000.0;
/// Kinesis shards per stream that `UpdateShardCount` can reach by default (10,000).
/// https://docs.aws.amazon.com/kinesis/latest/APIReference/API_UpdateShardCount.html
pub const KINESIS_STREAM_SHARDS: f64 = scaling::MAX_SHARDS_PER_STREAM as f64;
/// Per-shard write limits, 1 MiB/s and 1,000 records/s, in both capacity modes; one partition key always
/// maps to one shard. https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html
pub const SHARD_WRITE_RECORDS_PER_SEC: f64 = scaling::SHARD_WRITE_RECORDS_PER_SEC;
pub const SHARD_WRITE_BYTES_PER_SEC: f64 = scaling::SHARD_WRITE_BYTES_PER_SEC;
/// `UpdateShardCount` calls per stream in a rolling 24 hours, each at most ×2 (API_UpdateShardCount).
pub const UPDATE_SHARD_COUNT_CALLS: usize = scaling::MAX_CALLS_PER_DAY;
/// On-demand streams in us-east-1 scale up to 10 GB/s of writes (4 MB/s at creation).
/// https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html
pub const ON_DEMAND_WRITE_BYTES_PER_SEC: f64 = 10.0 * 1024.0 * 1024.0 * 1024.0;
/// Enhanced fan-out consumers registered per stream.
/// https://docs.aws.amazon.com/kinesis/latest/APIReference/API_RegisterStreamConsumer.html
pub const EFO_CONSUMERS_PER_STREAM: f64 = 20.0;
/// Lambda concurrent executions per account and Region. https://docs.aws.amazon.com/lambda/latest/dg/limits.html
pub const LAMBDA_CONCURRENCY: f64 = 1_000.0;
/// DynamoDB: one partition (so one item) serves at most 1,000 write units and 3,000 read units per second.
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/warm-throughput-scenarios.html
pub const DDB_PARTITION_WCU: f64 = 1_000.0;
pub const DDB_PARTITION_RCU: f64 = 3_000.0;
/// DynamoDB table-level throughput quota, read and write, both capacity modes: 40,000 units per second.
/// https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/on-demand-capacity-mode-max-throughput.html
pub const DDB_TABLE_UNITS: f64 = 40_000.0;

// ---- model of the hot row (docs/plan.md "Where it stops scaling") ----

/// Write units of one write of a campaign day-total row (a dense 3 KB HyperLogLog and the fence marks):
/// 4, as the cost model prices day rows.
pub const DAY_ROW_WCU: f64 = 4.0;
/// Read units of the read before that write (strongly consistent, ≤ 4 KB).
pub const DAY_ROW_RCU: f64 = 1.0;

/// A part of the stack whose limits are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    Kinesis,
    FanOut,
    Lambda,
    DynamoDB,
    Cache,
    Scaler,
}

pub const PARTS: [Part; 6] = [
    Part::Kinesis,
    Part::FanOut,
    Part::Lambda,
    Part::DynamoDB,
    Part::Cache,
    Part::Scaler,
];

/// ElastiCache Serverless's own maximums per cache (the `CacheUsageLimits` ceilings: 5,000 GB of data,
/// 15,000,000 ECPU per second), as the CDK documents them:
/// https://docs.aws.amazon.com/cdk/api/v2/docs/@aws-cdk_aws-elasticache-alpha.CacheUsageLimitsProperty.html
pub const CACHE_MAX_STORAGE_GB: f64 = 5000.0;
pub const CACHE_MAX_ECPU_PER_SEC: f64 = 15_000_000.0;

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Kinesis => "Kinesis",
            Part::FanOut => "fan-out",
            Part::Lambda => "Lambda",
            Part::DynamoDB => "DynamoDB",
            Part::Cache => "cache",
            Part::Scaler => "scaler",
        }
    }
}

/// One limit at one rate: what the peak minute asks of it against what it allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    pub part: Part,
    /// Short name, e.g. "hot key records".
    pub name: String,
    pub demand: f64,
    pub limit: f64,
    pub unit: &'static str,
    /// What to raise (or change) when it is met; says when it is a hard limit or a stack setting.
    pub raise: &'static str,
}

impl Limit {
    pub fn ratio(&self) -> f64 {
        if self.limit > 0.0 {
            self.demand / self.limit
        } else {
            f64::INFINITY
        }
    }

    pub fn met(&self) -> bool {
        self.demand > self.limit
    }
}

/// One swept rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub mean_events_per_sec: f64,
    pub peak_events_per_sec: f64,
    pub tally_per_billion: f64,
    pub naive_per_billion: f64,
    /// Shards the peak minute needs at the scaler's target utilisation (not capped by the scaler's bounds).
    pub peak_shards: f64,
    pub hot_key_records_per_sec: f64,
    pub hot_row_wcu_per_sec: f64,
    pub limits: Vec<Limit>,
}

impl Row {
    /// The first limit `part` meets at this rate: of those met, the one furthest over (it was met at the
    /// lowest rate), or `None`.
    pub fn first(&self, part: Part) -> Option<&Limit> {
        self.limits
            .iter()
            .filter(|l| l.part == part && l.met())
            .max_by(|a, b| a.ratio().total_cmp(&b.ratio()))
    }
}

// ---- pure limit arithmetic ----

/// Share of all events that go to the largest campaign when `campaigns` campaigns have Zipf(`skew`)
/// sizes: 1 / Σ k^-skew.
pub fn top_campaign_share(campaigns: u32, skew: f64) -> f64 {
    let sum: f64 = (1..=campaigns.max(1))
        .map(|k| f64::from(k).powf(-skew))
        .sum();
    1.0 / sum
}

/// Events per packed record on one partition key that receives `key_share` of all events, when requests
/// carry `events_per_request` events and `wire::pack` packs a request's events per key (at most `fit`
/// events fit a record): the key's events in a request over the chance the request has any.
pub fn key_events_per_record(events_per_request: f64, key_share: f64, fit: f64) -> f64 {
    let n = events_per_request.max(1.0);
    let p = key_share.clamp(0.0, 1.0);
    if p <= 0.0 {
        return 1.0;
    }
    let with_any = 1.0 - (1.0 - p).powf(n);
    (n * p / with_any).clamp(1.0, fit.max(1.0))
}

/// Records and bytes per second written with the hottest partition key at `events_per_sec`: the top
/// campaign's traffic split over [`BUCKETS`] keys. A key maps to one shard whatever the shard count.
pub fn hot_key(
    events_per_sec: f64,
    top_share: f64,
    events_per_request: f64,
    event_bytes: f64,
    fit: f64,
) -> (f64, f64) {
    let key_share = top_share / BUCKETS as f64;
    let epr = key_events_per_record(events_per_request, key_share, fit);
    let records = events_per_sec * key_share / epr;
    let bytes = records * (epr * event_bytes + tally_domain::wire::FRAME_BYTES as f64);
    (records, bytes)
}

/// Expected distinct shards among `shards` that `keys` keys hash onto (uniform hashing, as MD5 of the
/// partition key is): how many shards hold one campaign.
pub fn shards_holding(shards: f64, keys: f64) -> f64 {
    let s = shards.max(1.0);
    s * (1.0 - (1.0 - 1.0 / s).powf(keys))
}

/// `UpdateShardCount` calls (each at most ×2) from `from` shards to `to`.
pub fn climb_calls(from: f64, to: f64) -> usize {
    if to <= from || from <= 0.0 {
        return 0;
    }
    (to / from).log2().ceil() as usize
}

/// Concurrent executions of a function taking `ms` per invocation at `per_sec` invocations per second.
pub fn concurrency(per_sec: f64, ms: f64) -> f64 {
    per_sec * ms / 1000.0
}

// ---- from a plan report ----

/// The template's `ReservedConcurrentExecutions` of function `logical_id`, if set.
fn reserved(template: &Value, logical_id: &str) -> Option<f64> {
    let v = template
        .get("Resources")?
        .get(logical_id)?
        .get("Properties")?
        .get("ReservedConcurrentExecutions")?;
    v.as_f64().or_else(|| v.as_str()?.parse().ok())
}

/// Sum of a bill's lines in `unit` per second (period mean).
/// Seconds in the billing month.
const MONTH_SECS: f64 = super::cost::HOURS_PER_MONTH * 3600.0;

fn per_sec(r: &Report, service: &str, pred: impl Fn(&super::cost::Line) -> bool) -> f64 {
    let seconds = super::cost::HOURS_PER_MONTH * 3600.0;
    r.tally
        .lines
        .iter()
        .filter(|l| l.service == service && pred(l))
        .map(|l| l.quantity)
        .sum::<f64>()
        / seconds
}

impl Row {
    /// Limits at the peak minute of `r` (a plan of the scaled profile on `template`).
    pub fn from_report(r: &Report, template: &Value) -> Row {
        let p = &r.profile;
        let (mean, peak) = (p.mean_events_per_sec(), p.peak_events_per_sec());
        let peak_factor = if mean > 0.0 { peak / mean } else { 1.0 };
        let shards = f64::from(r.sim.peak_needs.max(1));
        let mut limits = Vec::new();
        let mut add = |part, name: &str, demand: f64, limit: f64, unit, raise| {
            limits.push(Limit {
                part,
                name: name.to_owned(),
                demand,
                limit,
                unit,
                raise,
            })
        };

        // Kinesis: the hottest key, the shard counts, the climb from the floor.
        let fit = ((tally_domain::wire::MAX_RECORD_BYTES as f64
            - tally_domain::wire::FRAME_BYTES as f64)
            / f64::from(p.event_bytes))
        .floor();
        let top = top_campaign_share(p.campaigns, p.campaign_skew);
        let (key_records, key_bytes) = hot_key(
            peak,
            top,
            p.events_per_request,
            f64::from(p.event_bytes),
            fit,
        );
        const HOT_KEY: &str = "hard limit per shard, more shards do not split a key: spread a campaign over more keys (tally_domain::partition::BUCKETS, a code change)";
        add(
            Part::Kinesis,
            "hot key records",
            key_records,
            SHARD_WRITE_RECORDS_PER_SEC,
            "records/s",
            HOT_KEY,
        );
        add(
            Part::Kinesis,
            "hot key bytes",
            key_bytes,
            SHARD_WRITE_BYTES_PER_SEC,
            "B/s",
            HOT_KEY,
        );
        if r.on_demand {
            add(
                Part::Kinesis,
                "on-demand write",
                peak / r.events_per_record * r.record_bytes,
                ON_DEMAND_WRITE_BYTES_PER_SEC,
                "B/s",
                "on-demand write throughput per stream (10 GB/s in us-east-1): support ticket",
            );
        } else {
            add(
                Part::Kinesis,
                "shards/stream",
                shards,
                KINESIS_STREAM_SHARDS,
                "shards",
                "shards per stream via UpdateShardCount: Service Quotas request",
            );
            add(
                Part::Kinesis,
                "shards/account",
                shards,
                KINESIS_ACCOUNT_SHARDS,
                "shards",
                "Kinesis shards per Region (account): Service Quotas request",
            );
            let floor = f64::from(r.sim.bounds.0.max(1));
            add(
                Part::Kinesis,
                "reshard calls",
                climb_calls(floor, shards) as f64,
                UPDATE_SHARD_COUNT_CALLS as f64,
                "calls/24h",
                "×2 per call, 10 calls per 24 h (hard): raise min_shards (tally.toml) so the climb to the peak fits",
            );
        }

        // Enhanced fan-out consumers: tally registers its own.
        add(
            Part::FanOut,
            "EFO consumers",
            f64::from(r.stack.consumers),
            EFO_CONSUMERS_PER_STREAM,
            "consumers",
            "hard limit of 20 registered consumers per stream",
        );

        // Lambda: one concurrent invocation per shard and parallelization per stream lane, collect's requests
        // in flight; reserved concurrency comes out of the account's pool.
        let mut unreserved = 0.0;
        let mut reserved_total = 0.0;
        for m in &r.stack.kinesis_mappings {
            let need = shards * f64::from(m.parallelization.max(1));
            let lane = r
                .stack
                .functions
                .get(&m.function)
                .map_or(m.function.as_str(), |f| f.name.as_str());
            match reserved(template, &m.function) {
                Some(cap) => {
                    reserved_total += cap;
                    add(
                        Part::Lambda,
                        &format!("{lane} reserved"),
                        need,
                        cap,
                        "concurrent",
                        "the lane's reserved concurrency (PipelineOptions realtime/deferred reserved_concurrency, infra/pipeline; synth requires it >= max_shards)",
                    );
                }
                None => unreserved += need,
            }
        }
        // collect's requests in flight at the peak (the same figure tally.toml's `profile` sizes it from): within
        // its reserved concurrency when it has one, else out of the shared pool; query's reservation is taken too.
        let collect_need = super::defences::collect_peak_concurrency(p);
        for (id, f) in r.stack.functions.iter().filter(|(_, f)| f.has_url) {
            let collect = f.env.iter().any(|e| e == tally_contract::env::STREAM_NAME);
            match (reserved(template, id), collect) {
                (Some(cap), true) => {
                    reserved_total += cap;
                    add(
                        Part::Lambda,
                        "collect reserved",
                        collect_need,
                        cap,
                        "concurrent",
                        "collect's reserved concurrency, a stack option: collect_reserved_concurrency or profile (tally.toml), within account_concurrency",
                    );
                }
                (Some(cap), false) => reserved_total += cap,
                (None, true) => unreserved += collect_need,
                (None, false) => {}
            }
        }
        add(
            Part::Lambda,
            "account concurrency",
            unreserved + reserved_total,
            LAMBDA_CONCURRENCY,
            "concurrent",
            "Lambda concurrent executions per Region: Service Quotas request",
        );

        // DynamoDB: the top campaign's day-total row gets a read-modify-write from every batch of every shard
        // holding the campaign, in every lane; and the table's total throughput.
        let mean_shards = r.sim.mean_shards().max(1.0);
        let batches_per_shard: f64 = r
            .stack
            .kinesis_mappings
            .iter()
            .filter_map(|m| r.stack.functions.get(&m.function))
            .map(|f| {
                let item = format!("{}: requests", f.name);
                per_sec(r, "Lambda", |l| l.item == item) / mean_shards
            })
            .sum();
        let holding = shards_holding(shards, BUCKETS as f64);
        let hot_row_wcu = batches_per_shard * holding * DAY_ROW_WCU;
        const HOT_ROW: &str = "hard limit per item: the campaign day-total row takes a read-modify-write per batch per shard; split or defer it (counter layout: docs/counter-store.md)";
        add(
            Part::DynamoDB,
            "hot item WCU",
            hot_row_wcu,
            DDB_PARTITION_WCU,
            "WCU/s",
            HOT_ROW,
        );
        add(
            Part::DynamoDB,
            "hot item RCU",
            batches_per_shard * holding * DAY_ROW_RCU,
            DDB_PARTITION_RCU,
            "RCU/s",
            HOT_ROW,
        );
        // On provisioned capacity the ceiling is auto scaling's maximum (a stack option) when it is lower.
        let (wcu_max, rcu_max) = match r.stack.table_billing {
            super::stack::TableBilling::Provisioned { write, read } => (write.max, read.max),
            super::stack::TableBilling::OnDemand => (f64::INFINITY, f64::INFINITY),
        };
        for (name, units, max, unit, quota, raise_max) in [
            ("table WCU", r.tally.dynamodb_write_units, wcu_max, "WCU/s", "table-level write throughput (40,000/s): Service Quotas request", "auto scaling's maximum, a stack option: raise table_max_write_capacity (tally.toml)"),
            ("table RCU", r.tally.dynamodb_read_units, rcu_max, "RCU/s", "table-level read throughput (40,000/s): Service Quotas request", "auto scaling's maximum, a stack option: raise table_max_read_capacity (tally.toml)"),
        ] {
            let demand = units / MONTH_SECS * peak_factor;
            if max < DDB_TABLE_UNITS {
                add(Part::DynamoDB, name, demand, max, unit, raise_max);
            } else {
                add(Part::DynamoDB, name, demand, DDB_TABLE_UNITS, unit, quota);
            }
        }

        // The counter cache: its configured usage limits (stack options) and ElastiCache Serverless's maximums.
        if let Some(cache) = &r.stack.cache {
            let ecpu = r.tally.cache_peak_ecpu_per_sec;
            let gb = r.tally.cache_peak_stored_bytes / (1u64 << 30) as f64;
            if let Some(max) = cache.max_ecpu_per_sec {
                add(
                    Part::Cache,
                    "ECPUPerSecond.Maximum",
                    ecpu,
                    max,
                    "ECPU/s",
                    "stack option (cache_max_ecpu_per_second, the cache's CacheUsageLimits): raise it; beyond it the cache throttles",
                );
            }
            if let Some(max) = cache.max_storage_gb {
                add(
                    Part::Cache,
                    "DataStorage.Maximum",
                    gb,
                    max,
                    "GB",
                    "stack option (cache_max_storage_gb): raise it, or shorten the dedup window (claims are most of it); beyond it writes fail",
                );
            }
            add(
                Part::Cache,
                "ECPU/s per serverless cache",
                ecpu,
                CACHE_MAX_ECPU_PER_SEC,
                "ECPU/s",
                "ElastiCache Serverless maximum per cache: split the counters over caches",
            );
            add(
                Part::Cache,
                "storage per serverless cache",
                gb,
                CACHE_MAX_STORAGE_GB,
                "GB",
                "ElastiCache Serverless maximum per cache: shorten the dedup window or split over caches",
            );
        }

        // The scaler's own ceiling: a stack option, not an AWS quota.
        if let (false, Some((_, max))) = (r.on_demand, r.stack.scaler_bounds) {
            add(
                Part::Scaler,
                "max_shards",
                shards,
                f64::from(max),
                "shards",
                "stack option, not an AWS quota: max_shards in tally.toml (TALLY_MAX_SHARDS), with the realtime lane's reserved concurrency",
            );
        }

        Row {
            mean_events_per_sec: mean,
            peak_events_per_sec: peak,
            tally_per_billion: r.tally.per_billion(),
            naive_per_billion: r.naive.per_billion(),
            peak_shards: shards,
            hot_key_records_per_sec: key_records,
            hot_row_wcu_per_sec: hot_row_wcu,
            limits,
        }
    }
}

/// The sweep: `profile`'s shape at every rate of [`RATES`], planned on `template`.
pub fn sweep(
    stage: &str,
    profile: &Profile,
    prices: &Prices,
    template: &Value,
) -> anyhow::Result<Vec<Row>> {
    RATES
        .iter()
        .map(|&rate| {
            let scaled = profile.scaled_to_mean(rate)?;
            let report = super::plan(stage, scaled, prices.clone(), template)
                .with_context(|| format!("while planning {rate} events/s"))?;
            Ok(Row::from_report(&report, template))
        })
        .collect()
}

/// For each limit, the first row where it is met.
pub fn first_met(rows: &[Row]) -> Vec<(usize, &Limit)> {
    let mut seen: Vec<(Part, &str)> = Vec::new();
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        for l in row.limits.iter().filter(|l| l.met()) {
            if !seen.contains(&(l.part, l.name.as_str())) {
                seen.push((l.part, l.name.as_str()));
                out.push((i, l));
            }
        }
    }
    out
}

// ---- rendering ----

fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn usd(v: f64) -> String {
    if !v.is_finite() {
        "n/a".to_owned()
    } else if v >= 100.0 {
        format!("${}", thousands(v))
    } else {
        format!("${v:.2}")
    }
}

fn amount(v: f64, unit: &str) -> String {
    if unit == "B/s" {
        format!("{:.2} MiB/s", v / 1_048_576.0)
    } else if v < 10.0 && v.fract() != 0.0 {
        format!("{v:.1} {unit}")
    } else {
        format!("{} {unit}", thousands(v))
    }
}

/// A table cell: the first limit the part meets, or "ok".
fn cell(row: &Row, part: Part) -> String {
    match row.first(part) {
        Some(l) => format!("{} {:.1}×", l.name, l.ratio()),
        None => "ok".to_owned(),
    }
}

/// The terminal table.
pub fn table(stage: &str, profile: &Profile, rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "tally plan --sweep — stage {stage}, profile \"{}\": its shape scaled to each mean rate; limits at the peak minute (peak/mean {:.2}); AWS default quotas, us-east-1",
        profile.name,
        profile.peak_events_per_sec() / profile.mean_events_per_sec().max(1e-9)
    );
    let _ = writeln!(
        s,
        "\n{:>10} {:>10} {:>7} {:>11} {:>11}  {}",
        "mean ev/s",
        "peak ev/s",
        "shards",
        "$/1e9 tally",
        "$/1e9 naive",
        PARTS
            .iter()
            .map(|p| format!("{:<24}", p.name()))
            .collect::<String>()
            .trim_end()
    );
    for row in rows {
        let _ = writeln!(
            s,
            "{:>10} {:>10} {:>7} {:>11} {:>11}  {}",
            thousands(row.mean_events_per_sec),
            thousands(row.peak_events_per_sec),
            thousands(row.peak_shards),
            usd(row.tally_per_billion),
            usd(row.naive_per_billion),
            PARTS
                .iter()
                .map(|&p| format!("{:<24}", cell(row, p)))
                .collect::<String>()
                .trim_end()
        );
    }
    let _ = writeln!(
        s,
        "\n(cells: the first limit the part meets and how far over it the peak is; shards = what the peak needs at the scaler's target)"
    );
    let met = first_met(rows);
    let _ = writeln!(s, "\nwhere each limit is first met, and what to raise");
    if met.is_empty() {
        let _ = writeln!(
            s,
            "  none up to {} events/s",
            thousands(RATES[RATES.len() - 1])
        );
    }
    for (n, (i, l)) in met.iter().enumerate() {
        let _ = writeln!(
            s,
            "  {}. at {} events/s (peak {}): {} {} — {} against {}; {}",
            n + 1,
            thousands(rows[*i].mean_events_per_sec),
            thousands(rows[*i].peak_events_per_sec),
            l.part.name(),
            l.name,
            amount(l.demand, l.unit),
            amount(l.limit, l.unit),
            l.raise
        );
    }
    let never: Vec<String> = rows
        .last()
        .map(|last| {
            last.limits
                .iter()
                .filter(|l| !l.met())
                .map(|l| format!("{} {} ({:.0}%)", l.part.name(), l.name, l.ratio() * 100.0))
                .collect()
        })
        .unwrap_or_default();
    if !never.is_empty() {
        let _ = writeln!(
            s,
            "  not met at {} events/s: {}",
            thousands(RATES[RATES.len() - 1]),
            never.join(", ")
        );
    }
    s
}

/// The rows as a JSON array.
pub fn json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|row| {
                json!({
                    "mean_events_per_sec": row.mean_events_per_sec,
                    "peak_events_per_sec": row.peak_events_per_sec,
                    "tally_per_billion_usd": row.tally_per_billion,
                    "naive_per_billion_usd": row.naive_per_billion,
                    "peak_shards": row.peak_shards,
                    "hot_key_records_per_sec": row.hot_key_records_per_sec,
                    "hot_item_wcu_per_sec": row.hot_row_wcu_per_sec,
                    "first_limit": PARTS.iter().map(|&p| (p.name().to_owned(), match row.first(p) {
                        Some(l) => json!({"limit": l.name, "demand": l.demand, "quota": l.limit, "unit": l.unit, "raise": l.raise}),
                        None => json!("ok"),
                    })).collect::<serde_json::Map<_, _>>(),
                    "limits": row.limits.iter().map(|l| json!({
                        "part": l.part.name(), "limit": l.name, "demand": l.demand, "quota": l.limit,
                        "unit": l.unit, "ratio": l.ratio(), "met": l.met(), "raise": l.raise,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

/// Chart size in CSS pixels (the screenshot test knows them).
pub const CHART_W: f64 = 1100.0;
pub const CHART_H: f64 = 420.0;
const PAD_L: f64 = 80.0;
const PAD_R: f64 = 30.0;
const PAD_T: f64 = 20.0;
const PAD_B: f64 = 50.0;
/// Colours the screenshot test counts.
pub const TALLY_COLOR: &str = "#31a354";
pub const NAIVE_COLOR: &str = "#969696";
pub const MARKER_COLOR: &str = "#d62728";

/// $/billion against the mean rate (log x-axis), tally and naive, a marker where each limit is first met.
fn curve(rows: &[Row]) -> String {
    let (w, h) = (CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B);
    let (lo, hi) = (RATES[0].log10(), RATES[RATES.len() - 1].log10());
    let x = |rate: f64| PAD_L + (rate.max(1.0).log10() - lo) / (hi - lo) * w;
    let finite = |v: f64| if v.is_finite() { v } else { 0.0 };
    let max = rows
        .iter()
        .map(|r| finite(r.tally_per_billion).max(finite(r.naive_per_billion)))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let y = |v: f64| PAD_T + h - finite(v) / max * h;
    let mut svg = format!(
        r##"<svg id="sweep" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}">"##
    );
    let _ = write!(
        svg,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    for k in 0..=4 {
        let v = max / 4.0 * f64::from(k);
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" x2="{:.0}" y1="{:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{:.0}" y="{:.0}" font-size="12" text-anchor="end">{}</text>"##,
            PAD_L + w,
            y(v),
            y(v),
            PAD_L - 6.0,
            y(v) + 4.0,
            usd(v)
        );
    }
    for &rate in &RATES {
        let label = if rate >= 1e6 {
            format!("{:.0}M", rate / 1e6)
        } else {
            format!("{:.0}k", rate / 1e3)
        };
        let _ = write!(
            svg,
            r##"<line x1="{0:.1}" x2="{0:.1}" y1="{PAD_T}" y2="{1:.0}" stroke="#eee"/><text x="{0:.1}" y="{2:.0}" font-size="12" text-anchor="middle">{label}</text>"##,
            x(rate),
            PAD_T + h,
            PAD_T + h + 16.0
        );
    }
    for (class, color, value) in [
        (
            "naive",
            NAIVE_COLOR,
            (|r: &Row| r.naive_per_billion) as fn(&Row) -> f64,
        ),
        ("tally", TALLY_COLOR, |r: &Row| r.tally_per_billion),
    ] {
        let d: String = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { " L" },
                    x(r.mean_events_per_sec),
                    y(value(r))
                )
            })
            .collect();
        let _ = write!(
            svg,
            r##"<path class="{class}" d="{d}" fill="none" stroke="{color}" stroke-width="4"/>"##
        );
    }
    // Markers: one on tally's curve at each rate where limits are first met, labelled with their numbers
    // in the list under the chart.
    let met = first_met(rows);
    for (i, row) in rows.iter().enumerate() {
        let numbers: Vec<String> = met
            .iter()
            .enumerate()
            .filter(|(_, (at, _))| *at == i)
            .map(|(n, _)| (n + 1).to_string())
            .collect();
        if numbers.is_empty() {
            continue;
        }
        let (cx, cy) = (x(row.mean_events_per_sec), y(row.tally_per_billion));
        let _ = write!(
            svg,
            r##"<circle class="limit" cx="{cx:.1}" cy="{cy:.1}" r="8" fill="{MARKER_COLOR}"/><text x="{cx:.1}" y="{:.1}" font-size="13" font-weight="bold" text-anchor="middle" fill="{MARKER_COLOR}">{}</text>"##,
            (cy - 14.0).max(PAD_T + 12.0),
            numbers.join(", ")
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.0}" y="{:.0}" font-size="12" text-anchor="middle">mean events/s (log scale)</text>"##,
        PAD_L + w / 2.0,
        CHART_H - 8.0
    );
    svg.push_str("</svg>");
    svg
}

/// The self-contained page.
pub fn html(stage: &str, profile: &Profile, rows: &[Row]) -> String {
    let mut table_rows = String::new();
    for row in rows {
        let _ = write!(
            table_rows,
            "<tr><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td>{}</tr>",
            thousands(row.mean_events_per_sec),
            thousands(row.peak_events_per_sec),
            thousands(row.peak_shards),
            usd(row.tally_per_billion),
            usd(row.naive_per_billion),
            PARTS
                .iter()
                .map(|&p| format!("<td>{}</td>", escape(&cell(row, p))))
                .collect::<String>()
        );
    }
    let met: String = first_met(rows)
        .iter()
        .map(|(i, l)| {
            format!(
                "<li>at {} events/s (peak {}): <b>{} {}</b> — {} against {}; {}</li>",
                thousands(rows[*i].mean_events_per_sec),
                thousands(rows[*i].peak_events_per_sec),
                l.part.name(),
                escape(&l.name),
                escape(&amount(l.demand, l.unit)),
                escape(&amount(l.limit, l.unit)),
                escape(l.raise)
            )
        })
        .collect();
    let heads: String = PARTS
        .iter()
        .map(|p| format!("<th>{}</th>", p.name()))
        .collect();
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tally plan --sweep — {name}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 20px 40px; color: #222; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 18px 0 6px; }}
.summary {{ color: #555; margin-bottom: 8px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
</style></head><body>
<h1>tally plan --sweep — {name}</h1>
<div class="summary">stage {stage} · the profile's shape scaled to mean rates of 1,000 to 1,000,000 events/s · limits at the peak minute · AWS default quotas, us-east-1</div>
<h2>Cost per billion events</h2>
<p><span style="color:{TALLY_COLOR}">■ tally</span> · <span style="color:{NAIVE_COLOR}">■ naive (one record and one write per event)</span> · <span style="color:{MARKER_COLOR}">● limits first met at that rate (numbered as in the list below)</span></p>
{chart}
<h2>Where each limit is first met</h2><ol>{met}</ol>
<h2>Per rate</h2>
<table><tr><th>mean events/s</th><th>peak events/s</th><th>shards</th><th>$/1e9 tally</th><th>$/1e9 naive</th>{heads}</tr>{table_rows}</table>
</body></html>
"##,
        name = escape(&profile.name),
        stage = escape(stage),
        chart = curve(rows),
    )
}

/// `plan --sweep`: prints the table or the JSON array, writes the page.
pub fn run(
    stage: &str,
    profile: &Profile,
    prices: &Prices,
    template: &Value,
    json_out: bool,
    html_out: Option<&Path>,
) -> anyhow::Result<()> {
    let rows = sweep(stage, profile, prices, template)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json(&rows))?);
    } else {
        print!("{}", table(stage, profile, &rows));
    }
    if let Some(path) = html_out {
        super::write(path, &html(stage, profile, &rows))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(got: f64, want: f64, rel: f64) {
        assert!(
            (got - want).abs() <= rel * want.abs(),
            "{got} is not within {rel} of {want}"
        );
    }

    #[test]
    fn zipf_top_share_by_hand() {
        // Σ k^-1.1 over 1..=2000 = 5.9083 (ζ(1.1) = 10.5844 minus the tail ≈ 10 × 2000.5^-0.1 = 4.677).
        close(top_campaign_share(2000, 1.1), 1.0 / 5.9083, 1e-4);
        close(top_campaign_share(4, 0.0), 0.25, 1e-12);
        close(top_campaign_share(1, 1.1), 1.0, 1e-12);
    }

    #[test]
    fn hot_key_at_100k_events_per_sec() {
        // Zipf 1.1 over 2,000 campaigns: the top campaign has 16.925 % of the traffic, 16,925 events/s at
        // 100,000; over 16 keys, 1,057.8 events/s per key. A 25-event request holds 25 × 0.010578 = 0.2645
        // of them on average and at least one with probability 1 − (1 − 0.010578)^25 = 0.2335, so a record
        // of that key packs 1.133 events: 1,057.8 / 1.1328 = 933.8 records/s of 1.1328 × 300 + 10 bytes (the frame, `wire::FRAME_BYTES`).
        let top = top_campaign_share(2000, 1.1);
        close(100_000.0 * top, 16_925.3, 1e-4);
        close(key_events_per_record(25.0, top / 16.0, 81.0), 1.1328, 1e-3);
        let (records, bytes) = hot_key(100_000.0, top, 25.0, 300.0, 81.0);
        close(records, 933.8, 1e-3);
        close(bytes, 933.8 * (1.1328 * 300.0 + 10.0), 1e-3);
        assert!(
            records < SHARD_WRITE_RECORDS_PER_SEC,
            "just under at the mean"
        );
        // One event per request (pixels): every event is a record.
        let (records, _) = hot_key(100_000.0, top, 1.0, 300.0, 81.0);
        close(records, 1_057.8, 1e-3);
        // A record never packs more than fits.
        assert_eq!(
            key_events_per_record(1000.0, 1.0, 81.0),
            81.0,
            "24 KB / 300 B"
        );
        assert_eq!(key_events_per_record(25.0, 0.0, 81.0), 1.0);
    }

    #[test]
    fn shards_and_calls_by_hand() {
        // 16 keys on 1 shard: 1; on 10 shards: 10 × (1 − 0.9^16) = 8.147; many shards: close to 16.
        close(shards_holding(1.0, 16.0), 1.0, 1e-12);
        close(shards_holding(10.0, 16.0), 8.147, 1e-3);
        assert!(shards_holding(10_000.0, 16.0) > 15.9);
        assert_eq!(climb_calls(1.0, 1.0), 0);
        assert_eq!(climb_calls(1.0, 2.0), 1);
        assert_eq!(climb_calls(1.0, 1024.0), 10);
        assert_eq!(climb_calls(1.0, 1025.0), 11);
        assert_eq!(climb_calls(4.0, 3.0), 0);
        close(concurrency(2_000.0, 15.0), 30.0, 1e-12);
    }

    #[test]
    fn first_limit_is_the_furthest_over() {
        let l = |name: &str, demand| Limit {
            part: Part::Kinesis,
            name: name.to_owned(),
            demand,
            limit: 100.0,
            unit: "x",
            raise: "",
        };
        let row = Row {
            mean_events_per_sec: 1.0,
            peak_events_per_sec: 1.0,
            tally_per_billion: 1.0,
            naive_per_billion: 1.0,
            peak_shards: 1.0,
            hot_key_records_per_sec: 0.0,
            hot_row_wcu_per_sec: 0.0,
            limits: vec![l("a", 150.0), l("b", 300.0), l("c", 50.0)],
        };
        assert_eq!(row.first(Part::Kinesis).map(|l| l.name.as_str()), Some("b"));
        assert_eq!(row.first(Part::Lambda), None);
        assert_eq!(cell(&row, Part::Kinesis), "b 3.0×");
        assert_eq!(cell(&row, Part::DynamoDB), "ok");
    }

    #[test]
    fn on_demand_stream_has_no_shard_quotas_but_a_throughput_one() {
        let mut template = super::super::stack::tests::fixture();
        template["Resources"]["Events"]["Properties"] = json!({
            "StreamModeDetails": { "StreamMode": "ON_DEMAND" }, "RetentionPeriodHours": 24 });
        let scaled = Profile::flat(1.0, 300)
            .expect("profile")
            .scaled_to_mean(100_000.0)
            .expect("scaled");
        let report = super::super::plan("t", scaled, Prices::shipped().expect("prices"), &template)
            .expect("plan");
        assert!(report.on_demand);
        let row = Row::from_report(&report, &template);
        let names: Vec<&str> = row.limits.iter().map(|l| l.name.as_str()).collect();
        assert!(names.contains(&"on-demand write"), "{names:?}");
        for absent in ["shards/stream", "reshard calls", "max_shards"] {
            assert!(!names.contains(&absent), "{absent} in {names:?}");
        }
        // The hottest key binds in on-demand mode too: 100,000 flat events/s, 10 per request, Zipf 1 over
        // 1,000 campaigns: the top campaign has 1/7.485 = 13.4 % of the traffic, 835 events/s per key.
        let hot = row
            .limits
            .iter()
            .find(|l| l.name == "hot key records")
            .expect("hot key");
        let want = hot_key(100_000.0, top_campaign_share(1000, 1.0), 10.0, 300.0, 81.0).0;
        close(hot.demand, want, 1e-9);
        close(top_campaign_share(1000, 1.0), 1.0 / 7.4855, 1e-4);
    }

    /// The sweep through the real `plan` on the test template: the inputs it reads from the report are
    /// there (if the cost model renames its bill lines, this fails instead of the sweep reading zeros).
    #[test]
    fn collect_concurrency_counts_against_its_reservation() {
        let template = tally_pipeline::synth_value(
            &tally_pipeline::Stage::new("main"),
            &tally_pipeline::PipelineOptions::default(),
        )
        .expect("synth");
        // 20,000 events/s in requests of 10: 2,000 requests/s × 50.05 ms = 100.1 concurrent, over the 100.
        let profile = Profile::flat(20_000.0, 300).expect("profile");
        let report =
            super::super::plan("t", profile, Prices::shipped().expect("prices"), &template)
                .expect("plan");
        let row = Row::from_report(&report, &template);
        let limit = row
            .limits
            .iter()
            .find(|l| l.name == "collect reserved")
            .expect("collect's reservation is a limit");
        close(limit.demand, 100.1, 1e-9);
        assert_eq!(limit.limit, 100.0);
        // Reservations come out of the account's pool whatever the traffic: collect 100, query 10, realtime 16.
        let account = row
            .limits
            .iter()
            .find(|l| l.name == "account concurrency")
            .expect("account");
        assert!(account.demand >= 126.0, "{account:?}");
    }

    #[test]
    fn sweep_on_the_fixture() {
        let template = super::super::stack::tests::fixture();
        let profile = Profile::flat(1.0, 300).expect("profile");
        let rows = sweep(
            "t",
            &profile,
            &Prices::shipped().expect("prices"),
            &template,
        )
        .expect("sweep");
        assert_eq!(rows.len(), RATES.len());
        for (row, rate) in rows.iter().zip(RATES) {
            close(row.mean_events_per_sec, rate, 1e-9);
            assert!(row.tally_per_billion > 0.0 && row.naive_per_billion > 0.0);
            let get = |name: &str| {
                row.limits
                    .iter()
                    .find(|l| l.name == name)
                    .unwrap_or_else(|| panic!("{name} missing"))
                    .demand
            };
            assert!(
                get("hot item WCU") > 0.0,
                "batches per shard read from the bill"
            );
            assert!(get("table WCU") > 0.0, "write units read from the bill");
            assert!(get("account concurrency") > 0.0);
        }
        // Shards grow with the rate; the last row needs more than the fixture's ceiling.
        assert!(rows[9].peak_shards > rows[0].peak_shards * 100.0);
        assert!(rows[9].first(Part::Kinesis).is_some() || rows[9].first(Part::Scaler).is_some());
        let met = first_met(&rows);
        assert!(!met.is_empty());
        let text = table("t", &profile, &rows);
        assert!(text.contains("where each limit is first met"), "{text}");
        let v = json(&rows);
        assert_eq!(v.as_array().map(Vec::len), Some(RATES.len()));
        assert!(
            v[0]["first_limit"]["Kinesis"].is_string()
                || v[0]["first_limit"]["Kinesis"].is_object()
        );
        let page = html("t", &profile, &rows);
        assert!(page.contains("<svg id=\"sweep\"") && page.contains("class=\"limit\""));
    }
}
