//! The stack's options: everything about the pipeline that is not the stage (tally.toml fills them through
//! `cargo xtask`), with their defaults.

use crate::{AutoScaling, CapacityRange, TableBilling};

/// How the events stream gets its capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCapacity {
    /// Shards, scaled between `min_shards` and `max_shards` by the scaler function (alarms + schedule).
    /// At steady volume a fraction of on-demand's price.
    Provisioned {
        /// Shards at creation.
        initial_shards: u32,
        /// The scaler's floor.
        min_shards: u32,
        /// The scaler's ceiling.
        max_shards: u32,
    },
    /// AWS scales; no scaler, no scaling alarms.
    OnDemand,
}

/// How the critical (realtime) lane reads the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticalLane {
    /// An enhanced fan-out consumer: records pushed in ≈ 70 ms, its own 2 MB/s per shard
    /// (costs a consumer-shard-hour and per GB retrieved).
    EnhancedFanOut,
    /// The shared iterator, polled about once a second: cheaper for small users, p50 ≈ 0.6 s.
    SharedIterator,
}

/// Settings of one stream-reading lane (its function and its mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneOptions {
    /// Records per invocation (1..=10000).
    pub batch_size: u32,
    /// Wait to fill a batch (0..=300 s).
    pub batching_window_secs: u32,
    /// Concurrent batches per shard (1..=10; the realtime lane must stay at 1).
    pub parallelization_factor: u32,
    /// Retries of a failed batch before it goes to the on-failure queue (0..=10000).
    pub max_retry_attempts: i32,
    /// Records older than this go to the on-failure queue (60..=604800 s).
    pub max_record_age_secs: i32,
    /// Function memory (128..=10240 MB).
    pub memory_mb: u32,
    /// Function timeout (1..=900 s).
    pub timeout_secs: u32,
    /// Reserved concurrency, or the account's shared pool.
    pub reserved_concurrency: Option<u32>,
}

/// Everything about the stack that is not the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    /// Stream capacity mode.
    pub stream: StreamCapacity,
    /// How the realtime lane reads.
    pub critical_lane: CriticalLane,
    /// Stream retention (24..=8760 h): how long a lagging deferred lane can fall behind.
    pub retention_hours: u32,
    /// The realtime lane.
    pub realtime: LaneOptions,
    /// The deferred lane.
    pub deferred: LaneOptions,
    /// Retention of every function's logs, in days.
    pub log_retention_days: u32,
    /// Delete archived events after so many days (`None`: keep).
    pub archive_expiration_days: Option<u32>,
    /// Who is mailed when an operational alarm fires.
    pub alert_email: Option<String>,
    /// `RUST_LOG` of every function.
    pub rust_log: String,
    /// Keep the stream, the metrics table, the archive bucket, the token secret and the collect keys when the stack is
    /// deleted or they are replaced (for production; previews leave nothing behind).
    pub retain_data: bool,
    /// How long an event id's claim lasts in the counter cache (60..=86400 s): a resend within it is
    /// counted once.
    pub dedup_window_secs: u32,
    /// Leave unsigned events (no valid post key or pixel signature: `docs/events.md`, "Trust and money") out
    /// of the settled counts; they still count in the realtime lane and are archived. Default: counted (they
    /// never carry money either way).
    pub exclude_unsigned: bool,
    /// Days a campaign stays in the campaign index (what `GET /v1/campaigns` lists) after its last event
    /// (1..=3650; default [`tally_domain::compact::DEFAULT_CAMPAIGN_INDEX_DAYS`], 35: longer than the
    /// dashboard's `30d` range). Its data stays readable by id after it leaves the list.
    pub campaign_index_days: u32,
    /// The counter cache's storage ceiling, GB (1..=5000): bounds the storage part of its bill.
    pub cache_max_storage_gb: u32,
    /// The counter cache's ECPU/s ceiling (1,000..=15,000,000): bounds the request part of its bill;
    /// requests above it are throttled.
    pub cache_max_ecpu_per_second: u32,
    /// How the metrics table pays for throughput: provisioned with auto scaling (the default, see
    /// [`DEFAULT_TABLE_SCALING`]) or on-demand.
    pub table_billing: TableBilling,
    /// collect's reserved concurrency: its ceiling (a flood is throttled at it instead of taking the
    /// account's whole pool) and its guarantee (the stream lanes and query cannot starve it). `cargo xtask`
    /// sizes it from the stage's traffic profile (tally.toml `profile`) with headroom; see
    /// [`DEFAULT_COLLECT_RESERVED_CONCURRENCY`].
    pub collect_reserved_concurrency: u32,
    /// query's reserved concurrency: a flood of requests (401s included) stops at it.
    pub query_reserved_concurrency: u32,
    /// The account's Lambda concurrency quota in the region (1,000 unless raised): the functions' reserved
    /// concurrency together must leave the 100 AWS keeps unreserved.
    pub account_concurrency: u32,
    /// A monthly cost budget (whole USD) notifying the alerts topic (and [`Self::budget_email`]) at 80 % of
    /// actual cost and at a forecast above the limit. `None`: no budget.
    pub budget_monthly_usd: Option<u32>,
    /// Also e-mailed by the budget (the alerts topic mails `alert_email` anyway).
    pub budget_email: Option<String>,
    /// The optional edge in front of collect: CloudFront with a WAF rate-based rule. `None`: collect's
    /// Function URL only.
    pub edge: Option<EdgeOptions>,
}

/// The edge in front of collect (`edge = true` in tally.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgeOptions {
    /// Requests one client address may send in five minutes before WAF blocks it (10..=2,000,000,000).
    pub requests_per_five_minutes: u32,
}

impl Default for EdgeOptions {
    /// 30,000 per five minutes: 100 requests/s per address, far above a browser's pixels and room for an
    /// ad server posting batches; raise it for a few large senders behind one address.
    fn default() -> EdgeOptions {
        EdgeOptions {
            requests_per_five_minutes: 30_000,
        }
    }
}

/// collect's reserved concurrency without a traffic profile: 100, above the daily-curve profile's peak
/// need (about 40 concurrent executions, ×2 headroom = 81: `cargo xtask plan --profile
/// xtask/profiles/daily-curve-network.toml` prints it under "defences").
pub const DEFAULT_COLLECT_RESERVED_CONCURRENCY: u32 = 100;
/// query's reserved concurrency: dashboards and API clients need a few.
pub const DEFAULT_QUERY_RESERVED_CONCURRENCY: u32 = 10;
/// Lambda's default concurrency quota per account and region.
pub const DEFAULT_ACCOUNT_CONCURRENCY: u32 = 1000;
/// Concurrency AWS keeps unreserved in every account (reservations may not take it).
pub const UNRESERVED_MINIMUM: u32 = 100;

/// The metrics table's default capacity: provisioned, auto scaled between 3 and 4,000 units each way at
/// 70 % target utilisation. The compactor writes once a minute and query reads on request: for each shipped
/// traffic profile the capacity-hours auto scaling holds cost less than on-demand's request units
/// (docs/plan.md, "DynamoDB capacity", with the figures). The floor is what the smallest profile needs: at
/// 5 units each way the steady small publisher's table would cost more than on-demand.
pub const DEFAULT_TABLE_SCALING: AutoScaling = AutoScaling {
    write: CapacityRange { min: 3, max: 4_000 },
    read: CapacityRange { min: 3, max: 4_000 },
    target_utilization_percent: 70,
};

impl Default for PipelineOptions {
    fn default() -> PipelineOptions {
        PipelineOptions {
            stream: StreamCapacity::Provisioned {
                initial_shards: 2,
                min_shards: 1,
                max_shards: 16,
            },
            critical_lane: CriticalLane::EnhancedFanOut,
            retention_hours: 24,
            realtime: LaneOptions {
                batch_size: 500,
                batching_window_secs: 0,
                parallelization_factor: 1,
                max_retry_attempts: 3,
                max_record_age_secs: 3600,
                memory_mb: 256,
                timeout_secs: 30,
                reserved_concurrency: Some(16),
            },
            deferred: LaneOptions {
                batch_size: 2000,
                batching_window_secs: 30,
                parallelization_factor: 1,
                max_retry_attempts: 5,
                max_record_age_secs: 86_400,
                memory_mb: 512,
                timeout_secs: 120,
                reserved_concurrency: None,
            },
            log_retention_days: 30,
            archive_expiration_days: Some(400),
            alert_email: None,
            rust_log: "info".to_owned(),
            retain_data: false,
            dedup_window_secs: 3600,
            exclude_unsigned: false,
            campaign_index_days: tally_domain::compact::DEFAULT_CAMPAIGN_INDEX_DAYS,
            cache_max_storage_gb: 1,
            cache_max_ecpu_per_second: 100_000,
            table_billing: TableBilling::Provisioned(DEFAULT_TABLE_SCALING),
            collect_reserved_concurrency: DEFAULT_COLLECT_RESERVED_CONCURRENCY,
            query_reserved_concurrency: DEFAULT_QUERY_RESERVED_CONCURRENCY,
            account_concurrency: DEFAULT_ACCOUNT_CONCURRENCY,
            budget_monthly_usd: None,
            budget_email: None,
            edge: None,
        }
    }
}

impl PipelineOptions {
    /// The defaults with an on-demand stream (no scaler).
    pub fn on_demand() -> PipelineOptions {
        PipelineOptions {
            stream: StreamCapacity::OnDemand,
            ..PipelineOptions::default()
        }
    }
}
