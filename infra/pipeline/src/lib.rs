//! The tally pipeline stack, built from `tally-constructs`.
//!
//! ```
//! use tally_pipeline::{synth_json, PipelineOptions, Stage};
//!
//! let template = synth_json(&Stage::from_branch("feature/ÜBER_new--thing"), &PipelineOptions::default()).unwrap();
//! assert!(template.ends_with("}\n"));
//! ```
//!
//! Synthesis is pure and deterministic: no AWS call, no built binaries (function code is named by
//! template parameters the deploy step fills), and the same inputs give the same bytes.

use serde_json::Value;
use tally_constructs::budgets::{Budget, BudgetProps};
use tally_constructs::cloudwatch::{Alarm, AlarmProps, Comparison, Statistic};
use tally_constructs::dynamodb::{AttributeType, Table, TableProps};
pub use tally_constructs::dynamodb::{AutoScaling, Billing as TableBilling, CapacityRange};
use tally_constructs::dynamodb_items::ItemAction;
use tally_constructs::ec2::{
    EndpointAllow, GatewayEndpoint, GatewayEndpointProps, GatewayService, Ingress,
    InterfaceEndpoint, InterfaceEndpointProps, SecurityGroup, SecurityGroupProps, Vpc, VpcProps,
};
use tally_constructs::edge::{Edge, EdgeProps, OriginSecret};
use tally_constructs::elasticache::{
    ServerlessCache, ServerlessCacheProps, User, UserGroup, UserGroupProps, UserProps,
};
use tally_constructs::event_source::{
    EventSourceMapping, KinesisProps, KinesisSource, StartingPosition,
};
use tally_constructs::events::{ScheduleProps, ScheduleRule};
use tally_constructs::kinesis::{
    Stream, StreamConsumer, StreamConsumerProps, StreamMode, StreamProps,
};
use tally_constructs::lambda::{
    Code, Cors, Function, FunctionProps, FunctionUrl, FunctionUrlProps, Logging, UrlAuth,
};
use tally_constructs::s3::{Bucket, BucketProps, LifecycleRule, StorageClass};
use tally_constructs::secrets::{Secret, SecretProps};
use tally_constructs::sns::{Topic, TopicProps};
use tally_constructs::sqs::{Queue, QueueProps};
use tally_constructs::{Expr, Parameter, Scope};
use tally_domain::ingest::ORIGIN_HEADER;

pub use tally_constructs::{NameKind, Stack, Stage};

/// Everything that can go wrong while synthesizing the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The options or the app break a rule (each problem names its construct path).
    #[error(transparent)]
    Invalid(#[from] tally_constructs::Error),
}

/// The six functions: package `tally-<name>`, code-key parameter `<Name>CodeKey`.
pub const FUNCTIONS: [&str; 6] = [
    "collect",
    "realtime",
    "deferred",
    "query",
    "compactor",
    "scaler",
];

/// Template parameter: the bucket that holds the function zips.
pub const ASSETS_BUCKET_PARAMETER: &str = "AssetsBucket";

/// The functions invoked per request or per batch (billions of invocations a month at scale): their logs are
/// JSON without Lambda's per-invocation `START`/`END`/`REPORT` lines, which would otherwise be most of their
/// log bytes (docs/plan.md, "CloudWatch"). The others keep plain text with those lines for debugging.
pub const PER_INVOCATION_QUIET: [&str; 3] = ["collect", "realtime", "deferred"];

fn logging_for(package: &str) -> Logging {
    if PER_INVOCATION_QUIET.contains(&package) {
        Logging::json_without_platform_lines()
    } else {
        Logging::text()
    }
}
/// Template parameter holding the S3 key of `function`'s zip: `collect` → `CollectCodeKey`.
pub fn code_key_parameter(function: &str) -> String {
    let mut chars = function.chars();
    let first = chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string())
        .unwrap_or_default();
    format!("{first}{}CodeKey", chars.as_str())
}

/// Template parameter holding the S3 object version of `function`'s zip (the deploy step pins the version it
/// verified): `collect` → `CollectCodeVersion`.
pub fn code_version_parameter(function: &str) -> String {
    code_key_parameter(function).replace("CodeKey", "CodeVersion")
}

/// Environment variables the functions read (the cross-team contract).
pub mod env {
    /// collect, scaler: the events stream's name.
    pub const STREAM_NAME: &str = "TALLY_STREAM_NAME";
    /// query, compactor: the metrics table's name (the deferred lane writes only the cache).
    pub const METRICS_TABLE: &str = "TALLY_METRICS_TABLE";
    /// deferred, compactor: the archive bucket's name (the compactor reads it to repair a cache that lost
    /// its data).
    pub const ARCHIVE_BUCKET: &str = "TALLY_ARCHIVE_BUCKET";
    /// query: ARN of the secret that holds the bearer token.
    pub const QUERY_TOKEN_SECRET_ARN: &str = "TALLY_QUERY_TOKEN_SECRET_ARN";
    /// deferred: `exclude` when the stack option `exclude_unsigned` leaves unsigned events out of the settled
    /// counts (absent: they are counted, without money).
    pub const SETTLED_UNSIGNED: &str = "TALLY_SETTLED_UNSIGNED";
    /// collect: ARN of the collect keys secret (key id → secret: post keys and pixel signing keys).
    pub const COLLECT_KEYS_SECRET_ARN: &str = "TALLY_COLLECT_KEYS_SECRET_ARN";
    /// collect, with the edge only: ARN of the origin secret CloudFront sends in
    /// [`tally_domain::ingest::ORIGIN_HEADER`]; set, collect refuses requests without it.
    pub const COLLECT_ORIGIN_SECRET_ARN: &str = "TALLY_COLLECT_ORIGIN_SECRET_ARN";
    /// compactor: days a campaign index row lives after the campaign's last event (`campaign_index_days`).
    pub const CAMPAIGN_INDEX_DAYS: &str = "TALLY_CAMPAIGN_INDEX_DAYS";
    /// scaler: the shard floor.
    pub const MIN_SHARDS: &str = "TALLY_MIN_SHARDS";
    /// scaler: the shard ceiling.
    pub const MAX_SHARDS: &str = "TALLY_MAX_SHARDS";
    /// every function: the tracing filter.
    pub const RUST_LOG: &str = "RUST_LOG";
    /// realtime, deferred, query: the counter cache's `host:port`
    /// (`Fn::Join [":", [CounterCache.Endpoint.Address, CounterCache.Endpoint.Port]]`).
    pub const CACHE_ENDPOINT: &str = "TALLY_CACHE_ENDPOINT";
    /// realtime, deferred, query: `true` (ElastiCache Serverless is TLS-only).
    pub const CACHE_TLS: &str = "TALLY_CACHE_TLS";
    /// realtime, deferred, query: `iam` (a signed token for the cache name and user).
    pub const CACHE_AUTH: &str = "TALLY_CACHE_AUTH";
    /// realtime, deferred, query: the ElastiCache user id the functions log in as.
    pub const CACHE_USER: &str = "TALLY_CACHE_USER";
    /// realtime, deferred, query: the cache's name (the IAM token is signed for it).
    pub const CACHE_NAME: &str = "TALLY_CACHE_NAME";
    /// realtime, deferred, query: how long an event id's claim lasts, seconds (`dedup_window_secs`).
    pub const DEDUP_WINDOW_SECS: &str = "TALLY_DEDUP_WINDOW_SECS";
}

/// Where the deferred lane archives events in the archive bucket (`events/dt=…/hour=…/…`): the only part
/// the deferred lane may write and the compactor may read.
pub const ARCHIVE_EVENTS_PREFIX: &str = tally_domain::archive::EVENTS_PREFIX;

/// What query calls on the metrics table (`tally_aws::metrics`, `tally_aws::compacted`,
/// `tally_aws::compacted_batch` — the page of campaigns' items by key — and its own index lookup): reads only.
/// `tests/it/least_privilege.rs` derives the same list from the code.
const QUERY_TABLE_ACTIONS: [ItemAction; 3] = [
    ItemAction::GetItem,
    ItemAction::Query,
    ItemAction::BatchGetItem,
];

/// What the compactor calls on the metrics table: the readers' actions and `tally_aws::metrics_write`'s puts
/// (items, watermark, repair epoch) and updates (campaign index).
const COMPACTOR_TABLE_ACTIONS: [ItemAction; 4] = [
    ItemAction::GetItem,
    ItemAction::Query,
    ItemAction::PutItem,
    ItemAction::UpdateItem,
];

/// The collect keys secret's name ends with this (the local cloud's load test finds its key by it).
pub const COLLECT_KEYS_SECRET_SUFFIX: &str = "collect-keys";
/// The collect origin secret's name ends with this (with the edge only; the local cloud's clients find it by it).
pub const COLLECT_ORIGIN_SECRET_SUFFIX: &str = "collect-origin";
/// The key id the stack generates in the collect keys secret; add your own with `PutSecretValue`.
pub const COLLECT_DEFAULT_KEY_ID: &str = "default";

/// Logical id of the counter cache (the functions' contract and the local cloud name it).
pub const COUNTER_CACHE: &str = "CounterCache";

/// What the functions' cache user may do: the counter store's keys (`domain/src/store_keys.rs`: the
/// lanes' `{rt…`/`{st…` keys and the `dedup:` claims) and the command categories of its reads, writes
/// and scripts; nothing `@dangerous` (no `FLUSHALL`, `KEYS`, `CONFIG`…), no pub/sub channels.
pub const CACHE_ACCESS_STRING: &str =
    "on ~{rt:* ~{rt}:* ~{st:* ~{st}:* ~dedup:* -@all +@read +@write +@keyspace +@scripting +@connection -@dangerous";

/// Names of the template's outputs.
pub mod outputs {
    /// The collect Function URL.
    pub const COLLECT_URL: &str = "CollectUrl";
    /// The query Function URL (API and dashboard).
    pub const QUERY_URL: &str = "QueryUrl";
    /// The events stream's name.
    pub const STREAM_NAME: &str = "StreamName";
    /// The metrics table's name.
    pub const METRICS_TABLE: &str = "MetricsTableName";
    /// The archive bucket's name.
    pub const ARCHIVE_BUCKET: &str = "ArchiveBucketName";
    /// ARN of the query token secret.
    pub const QUERY_TOKEN_SECRET_ARN: &str = "QueryTokenSecretArn";
    /// ARN of the collect keys secret.
    pub const COLLECT_KEYS_SECRET_ARN: &str = "CollectKeysSecretArn";
    /// With the edge: ARN of the origin secret (what CloudFront adds to every request it forwards to collect).
    pub const COLLECT_ORIGIN_SECRET_ARN: &str = "CollectOriginSecretArn";
    /// URL of the realtime lane's on-failure queue.
    pub const REALTIME_FAILURES_URL: &str = "RealtimeFailuresQueueUrl";
    /// URL of the deferred lane's on-failure queue.
    pub const DEFERRED_FAILURES_URL: &str = "DeferredFailuresQueueUrl";
    /// Host name of the counter cache's endpoint.
    pub const CACHE_ADDRESS: &str = "CacheEndpointAddress";
    /// Port of the counter cache's endpoint.
    pub const CACHE_PORT: &str = "CacheEndpointPort";
    /// The counter cache's name.
    pub const CACHE_NAME: &str = "CacheName";
    /// With the edge: the CloudFront URL in front of collect (rate limited per client address).
    pub const EDGE_URL: &str = "EdgeUrl";
}

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

/// The pipeline's CloudFormation template as pretty JSON with a trailing newline.
pub fn synth_json(stage: &Stage, options: &PipelineOptions) -> Result<String, SynthError> {
    Ok(stack(stage, options).synth_string()?)
}

/// The pipeline's CloudFormation template.
pub fn synth_value(stage: &Stage, options: &PipelineOptions) -> Result<Value, SynthError> {
    Ok(stack(stage, options).synth()?)
}

/// The pipeline stack, not yet synthesized (problems are reported by [`Stack::synth`]).
pub fn stack(stage: &Stage, options: &PipelineOptions) -> Stack {
    let stack = Stack::new(&stage.stack_name());
    stack.set_description(&format!(
        "tally: real-time ad-event analytics on Kinesis and Lambda (stage {})",
        stage.label()
    ));
    Pipeline::new(&stack, stage, options).build();
    stack
}

struct Pipeline<'a> {
    stack: &'a Stack,
    root: Scope,
    stage: &'a Stage,
    options: &'a PipelineOptions,
    assets: Parameter,
}

const NO_VPC: &str = "outside the VPC by design: it uses no cache and reaches only AWS public endpoints over TLS with IAM auth";
const ENV_PLAIN: &str =
    "environment holds only resource names and a secret's ARN, no secret values";
const NO_DLQ_STREAM: &str =
    "stream-triggered: failed batches go to the mapping's on-failure SQS queue, not a function DLQ";
const NO_DLQ_SYNC: &str =
    "invoked synchronously (Function URL): the caller gets the error, nothing to dead-letter";
const LOGS_KEY: &str =
    "CloudWatch Logs encrypts at rest with its own keys; logs hold no event payloads or secrets";
const SHARED_POOL: &str =
    "uses the account's unreserved pool; reserving here would starve the critical lane";

impl<'a> Pipeline<'a> {
    fn new(stack: &'a Stack, stage: &'a Stage, options: &'a PipelineOptions) -> Pipeline<'a> {
        let assets = stack.string_parameter(
            ASSETS_BUCKET_PARAMETER,
            "S3 bucket that holds the function zips (filled by deploy)",
        );
        Pipeline {
            stack,
            root: stack.root(),
            stage,
            options,
            assets,
        }
    }

    fn name(&self, kind: NameKind, suffix: &str) -> tally_constructs::Name {
        self.stage.name(kind, suffix)
    }

    /// The function `id` running package `tally-<package>`; with `store`, placed in the VPC with the
    /// cache's environment and `elasticache:Connect` (what one more cache user, such as a compactor,
    /// needs is this one call).
    fn function(
        &self,
        id: &str,
        package: &str,
        lane: Option<&LaneOptions>,
        env: Vec<(&str, Expr)>,
        store: Option<&CounterStore>,
    ) -> Function {
        let key = self.stack.string_parameter(
            &code_key_parameter(package),
            &format!("S3 key of the tally-{package} zip (content hash, filled by deploy)"),
        );
        let version = self.stack.string_parameter(
            &code_version_parameter(package),
            &format!(
                "S3 object version of the tally-{package} zip (verified and pinned by deploy)"
            ),
        );
        let mut environment: Vec<(String, Expr)> =
            env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(store) = store {
            environment.extend(store.environment(self.options));
        }
        environment.push((
            env::RUST_LOG.to_owned(),
            Expr::text(self.options.rust_log.clone()),
        ));
        let (memory_mb, timeout_secs, reserved_concurrency) = match lane {
            Some(lane) => (lane.memory_mb, lane.timeout_secs, lane.reserved_concurrency),
            None => (256, 10, url_reserved_concurrency(package, self.options)),
        };
        let function = Function::new(
            &self.root,
            id,
            FunctionProps {
                code: Some(Code::s3_version(
                    self.assets.value(),
                    key.value(),
                    version.value(),
                )),
                function_name: Some(self.name(NameKind::Function, package)),
                role_name: Some(self.name(NameKind::Role, package)),
                memory_mb,
                timeout_secs,
                environment,
                reserved_concurrency,
                log_retention_days: self.options.log_retention_days,
                logging: logging_for(package),
                description: Some(format!("tally {package} ({})", self.stage.label())),
                vpc: store.map(|s| s.vpc.placement(&[&s.functions])),
                ..FunctionProps::default()
            },
        );
        // The boundary `cargo xtask bootstrap` creates: the execution role may only create roles that carry it.
        function
            .role()
            .set_permissions_boundary(&tally_constructs::naming::function_boundary_arn());
        match store {
            Some(store) => store.cache.grant_connect(&function, &store.user),
            None => function.node().skip_check("CKV_AWS_117", NO_VPC),
        }
        function
    }

    /// The network and the counter cache: a private-only VPC in two zones, the functions' security
    /// group, the cache reachable only from it, gateway endpoints for the table and the bucket, and an
    /// interface endpoint for the query token's secret (query reads it at cold start; the only AWS API a
    /// function in the VPC calls that has no gateway endpoint).
    fn counter_store(&self, metrics: &Table, archive: &Bucket, token: &Secret) -> CounterStore {
        let o = self.options;
        let root = &self.root;
        let scope = root.child("CounterStore");
        // The functions refuse a window the counter store does not accept: so does synth.
        if let Err(e) =
            tally_domain::exactly_once::DedupWindow::from_secs(u64::from(o.dedup_window_secs))
        {
            scope.violation(format!("dedup_window_secs: {e}"));
        }
        let vpc = Vpc::new(
            root,
            "Network",
            VpcProps {
                cidr_block: "10.40.0.0/16".into(),
                zones: 2,
            },
        );
        let functions = SecurityGroup::new(
            root,
            "FunctionsSecurityGroup",
            &vpc,
            SecurityGroupProps {
                description: "tally functions that use the counter cache".into(),
                ingress: vec![],
            },
        );
        let cache_group = SecurityGroup::new(
            root,
            "CacheSecurityGroup",
            &vpc,
            SecurityGroupProps {
                description: "tally counter cache: Valkey from the functions only".into(),
                ingress: vec![Ingress {
                    from: functions.clone(),
                    ports: (6379, 6380),
                    description: "Valkey (6379) and replica reads (6380) from the tally functions"
                        .into(),
                }],
            },
        );
        GatewayEndpoint::new(
            root,
            "DynamoDbEndpoint",
            &vpc,
            GatewayEndpointProps {
                service: GatewayService::DynamoDb,
                // What the roles of the functions in the VPC hold on the table, nothing more.
                allow: vec![EndpointAllow {
                    actions: table_actions(&[&QUERY_TABLE_ACTIONS, &COMPACTOR_TABLE_ACTIONS]),
                    resources: vec![metrics.arn()],
                }],
            },
        );
        GatewayEndpoint::new(
            root,
            "S3Endpoint",
            &vpc,
            GatewayEndpointProps {
                service: GatewayService::S3,
                // The deferred lane's puts and the compactor's reads, under `events/` only.
                allow: vec![
                    EndpointAllow {
                        actions: vec!["s3:GetObject", "s3:PutObject"],
                        resources: vec![archive
                            .arn()
                            .with_suffix(&format!("/{ARCHIVE_EVENTS_PREFIX}*"))],
                    },
                    EndpointAllow {
                        actions: vec!["s3:ListBucket"],
                        resources: vec![archive.arn()],
                    },
                ],
            },
        );
        // Interface endpoints are billed per zone-hour (about $0.01 in us-east-1, so ~$14.60 a month
        // for two zones) plus per GB: one only for a service a function in the VPC calls.
        let endpoint_group = SecurityGroup::new(
            root,
            "EndpointSecurityGroup",
            &vpc,
            SecurityGroupProps {
                description: "tally interface endpoints: HTTPS from the functions only".into(),
                ingress: vec![Ingress {
                    from: functions.clone(),
                    ports: (443, 443),
                    description: "AWS API calls (HTTPS) from the tally functions".into(),
                }],
            },
        );
        InterfaceEndpoint::new(
            root,
            "SecretsManagerEndpoint",
            &vpc,
            InterfaceEndpointProps {
                service: "secretsmanager",
                security_group: endpoint_group,
                allow: vec![token.endpoint_allow()],
            },
        );
        let user = User::new(
            root,
            "CacheUser",
            UserProps {
                user_id: self.name(NameKind::Cache, "functions"),
                access_string: CACHE_ACCESS_STRING.into(),
            },
        );
        let users = UserGroup::new(
            root,
            "CacheUsers",
            UserGroupProps {
                group_id: self.name(NameKind::Cache, "functions"),
                users: vec![user.clone()],
            },
        );
        let cache = ServerlessCache::new(
            root,
            COUNTER_CACHE,
            ServerlessCacheProps {
                name: self.name(NameKind::Cache, "counters"),
                description: Some(format!(
                    "tally counter store ({}): open minutes, fence marks, event-id claims",
                    self.stage.label()
                )),
                max_storage_gb: o.cache_max_storage_gb,
                max_ecpu_per_second: o.cache_max_ecpu_per_second,
                vpc: vpc.clone(),
                security_groups: vec![cache_group],
                kms_key_id: None,
                snapshot_retention_days: 0,
                user_group: Some(users),
            },
        );
        CounterStore {
            vpc,
            functions,
            cache,
            user,
        }
    }

    fn failure_queue(&self, id: &str, suffix: &str) -> Queue {
        Queue::new(
            &self.root,
            id,
            QueueProps {
                name: Some(self.name(NameKind::Queue, suffix)),
                retention_secs: 1_209_600,
                ..QueueProps::default()
            },
        )
    }

    fn alarm(
        &self,
        id: &str,
        suffix: &str,
        description: &str,
        metric: (&str, &str, Vec<(&str, Expr)>),
        rule: (Statistic, u32, u32, f64),
        actions: Vec<Topic>,
    ) {
        let (namespace, name, dimensions) = metric;
        let (statistic, period_secs, evaluation_periods, threshold) = rule;
        Alarm::new(
            &self.root,
            id,
            AlarmProps {
                name: Some(self.name(NameKind::Alarm, suffix)),
                description: description.to_owned(),
                namespace: namespace.to_owned(),
                metric: name.to_owned(),
                dimensions: dimensions
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                statistic,
                period_secs,
                evaluation_periods,
                datapoints_to_alarm: evaluation_periods,
                threshold,
                comparison: Comparison::GreaterThan,
                actions,
            },
        );
    }

    fn build(&self) {
        let o = self.options;
        let root = &self.root;

        // Storage: the stream, the metrics table, the archive bucket.
        let mode = match o.stream {
            StreamCapacity::Provisioned {
                initial_shards,
                min_shards,
                max_shards,
            } => {
                let scope = root.child("Capacity");
                if min_shards == 0
                    || min_shards > max_shards
                    || !(min_shards..=max_shards).contains(&initial_shards)
                {
                    scope.violation(format!(
                        "shards must satisfy 1 <= min_shards ({min_shards}) <= initial_shards ({initial_shards}) <= max_shards ({max_shards})"
                    ));
                }
                if max_shards > 500 {
                    scope.violation(format!("max_shards {max_shards} is above Kinesis' default quota of 500 shards per account"));
                }
                StreamMode::Provisioned {
                    shards: initial_shards,
                }
            }
            StreamCapacity::OnDemand => StreamMode::OnDemand,
        };
        let events = Stream::new(
            root,
            "Events",
            StreamProps {
                name: Some(self.name(NameKind::Stream, "events")),
                mode,
                retention_hours: o.retention_hours,
                encrypted: true,
            },
        );
        let metrics = Table::new(
            root,
            "Metrics",
            TableProps {
                name: Some(self.name(NameKind::Table, "metrics")),
                partition_key: ("pk".into(), AttributeType::String),
                sort_key: Some(("sk".into(), AttributeType::String)),
                ttl_attribute: Some("expires_at".into()),
                point_in_time_recovery: true,
                billing: o.table_billing,
            },
        );
        metrics.node().skip_check("CKV_AWS_119", "encrypted with the AWS-managed key; a customer key adds cost and key administration for counters");
        let archive = Bucket::new(
            root,
            "Archive",
            BucketProps {
                name: Some(self.name(NameKind::Bucket, "archive")),
                versioned: true,
                lifecycle: vec![LifecycleRule {
                    id: "archive-tiering".into(),
                    prefix: None,
                    // Straight to Glacier Instant Retrieval after 30 days, without a Standard-IA stop: per
                    // month on daily-curve (`cargo xtask plan`), IA's 60 days cost $16 of storage and $6.6 of
                    // transitions against about $5 in Glacier IR; reads after 30 days (audits, not repair,
                    // which reads recent hours) pay Glacier IR's retrieval either way (docs/plan.md, "S3").
                    transitions: vec![(30, StorageClass::GlacierInstantRetrieval)],
                    expiration_days: o.archive_expiration_days,
                    noncurrent_expiration_days: Some(7),
                    abort_incomplete_multipart_days: Some(1),
                }],
            },
        );
        archive.node().skip_check("CKV_AWS_18", "access logs would need a second bucket per stage; objects are written only by the deferred function's role");
        let token = Secret::new(
            root,
            "QueryToken",
            SecretProps {
                name: Some(self.name(NameKind::Secret, "query-token")),
                description: "bearer token of the tally query API and dashboard".into(),
                length: 48,
            },
        );
        token.node().skip_check(
            "CKV_AWS_149",
            "encrypted with the AWS-managed key; only the query role may read it",
        );

        let collect_keys = Secret::new_json(
            root,
            "CollectKeys",
            SecretProps {
                name: Some(self.name(NameKind::Secret, COLLECT_KEYS_SECRET_SUFFIX)),
                description: "collect keys: key id to secret, for server-to-server posts and signed pixels (docs/events.md)".into(),
                length: 40,
            },
            COLLECT_DEFAULT_KEY_ID,
        );
        collect_keys.node().skip_check(
            "CKV_AWS_149",
            "encrypted with the AWS-managed key; only the collect role may read it",
        );

        // With the edge, what CloudFront adds to every request it forwards and collect checks.
        let origin_secret = o.edge.map(|_| {
            let secret = Secret::new(
                root,
                "CollectOrigin",
                SecretProps {
                    name: Some(self.name(NameKind::Secret, COLLECT_ORIGIN_SECRET_SUFFIX)),
                    description: format!(
                        "collect origin secret: CloudFront sends it in {ORIGIN_HEADER}, collect refuses requests without it"
                    ),
                    length: 48,
                },
            );
            secret.node().skip_check(
                "CKV_AWS_149",
                "encrypted with the AWS-managed key; only the collect role may read it (CloudFormation reads it for the distribution)",
            );
            secret
        });

        if o.retain_data {
            for node in [
                events.node(),
                metrics.node(),
                archive.node(),
                token.node(),
                collect_keys.node(),
            ] {
                node.retain();
            }
        }

        // The network and the counter cache (realtime, deferred and query use it).
        let store = self.counter_store(&metrics, &archive, &token);

        // collect: the public tracking endpoint.
        let collect = self.function(
            "Collect",
            "collect",
            None,
            [
                (env::STREAM_NAME, events.name()),
                (env::COLLECT_KEYS_SECRET_ARN, collect_keys.arn()),
            ]
            .into_iter()
            .chain(
                origin_secret
                    .as_ref()
                    .map(|secret| (env::COLLECT_ORIGIN_SECRET_ARN, secret.arn())),
            )
            .collect(),
            None,
        );
        events.grant_write(&collect);
        collect_keys.grant_read(&collect);
        if let Some(secret) = &origin_secret {
            secret.grant_read(&collect);
        }
        let collect_url = FunctionUrl::new(
            root,
            "CollectFunctionUrl",
            &collect,
            FunctionUrlProps {
                auth: UrlAuth::None,
                cors: Some(Cors {
                    allow_origins: vec!["*".into()],
                    allow_methods: vec!["GET".into(), "POST".into()],
                    allow_headers: vec!["content-type".into()],
                    max_age_secs: 86_400,
                }),
            },
        );
        collect_url.node().skip_check(
            "CKV_AWS_258",
            "public by design: browsers and ad servers send tracking events without credentials",
        );

        // realtime: the critical lane; it writes the cache only (the compactor writes the table).
        let realtime = self.function(
            "Realtime",
            "realtime",
            Some(&o.realtime),
            vec![],
            Some(&store),
        );
        let realtime_failures = self.failure_queue("RealtimeFailures", "realtime-failures");
        let source = match o.critical_lane {
            CriticalLane::EnhancedFanOut => KinesisSource::Consumer(StreamConsumer::new(
                root,
                "RealtimeConsumer",
                &events,
                StreamConsumerProps {
                    name: self.name(NameKind::Consumer, "realtime"),
                },
            )),
            CriticalLane::SharedIterator => KinesisSource::Stream(events.clone()),
        };
        let realtime_scope = root.child("RealtimeLane");
        if let (StreamCapacity::Provisioned { max_shards, .. }, Some(reserved)) =
            (o.stream, o.realtime.reserved_concurrency)
        {
            if reserved < max_shards {
                realtime_scope.violation(format!(
                    "realtime reserved_concurrency {reserved} is below max_shards {max_shards}: the lane needs one concurrent invocation per shard"
                ));
            }
        }
        require_one_batch_per_shard(&realtime_scope, "realtime", &o.realtime);
        EventSourceMapping::kinesis(
            &realtime_scope,
            "Mapping",
            &realtime,
            &source,
            lane_mapping(&o.realtime, &realtime_failures),
        );

        // deferred: the later, better lane.
        let deferred = self.function(
            "Deferred",
            "deferred",
            Some(&o.deferred),
            [(env::ARCHIVE_BUCKET, archive.name())]
                .into_iter()
                .chain(
                    o.exclude_unsigned
                        .then(|| (env::SETTLED_UNSIGNED, Expr::text("exclude"))),
                )
                .collect(),
            Some(&store),
        );
        // It only ever writes new archive objects (`PutObject` with `If-None-Match`), under `events/`.
        archive.grant_put_prefix(&deferred, ARCHIVE_EVENTS_PREFIX);
        let deferred_failures = self.failure_queue("DeferredFailures", "deferred-failures");
        let deferred_scope = root.child("DeferredLane");
        require_one_batch_per_shard(&deferred_scope, "deferred", &o.deferred);
        EventSourceMapping::kinesis(
            &deferred_scope,
            "Mapping",
            &deferred,
            &KinesisSource::Stream(events.clone()),
            lane_mapping(&o.deferred, &deferred_failures),
        );

        // query: API and dashboard behind a bearer token.
        let query = self.function(
            "Query",
            "query",
            None,
            vec![
                (env::METRICS_TABLE, metrics.name()),
                (env::QUERY_TOKEN_SECRET_ARN, token.arn()),
            ],
            Some(&store),
        );
        // Exactly what the code calls (infra/pipeline/tests/it/least_privilege.rs derives it).
        metrics.grant_items(&query, &QUERY_TABLE_ACTIONS);
        token.grant_read(&query);
        let query_url = FunctionUrl::new(
            root,
            "QueryFunctionUrl",
            &query,
            FunctionUrlProps {
                auth: UrlAuth::None,
                cors: Some(Cors {
                    allow_origins: vec!["*".into()],
                    allow_methods: vec!["GET".into()],
                    allow_headers: vec!["authorization".into()],
                    max_age_secs: 3600,
                }),
            },
        );
        query_url.node().skip_check("CKV_AWS_258", "the query function checks a bearer token kept in Secrets Manager; the dashboard needs a plain URL");

        // compactor: every minute, folds closed minutes of the cache into one item per (campaign, minute);
        // after the cache lost its data, recomputes them from the archive (read only, its events only).
        let compactor = self.function(
            "Compactor",
            "compactor",
            None,
            vec![
                (env::METRICS_TABLE, metrics.name()),
                (env::ARCHIVE_BUCKET, archive.name()),
                (
                    env::CAMPAIGN_INDEX_DAYS,
                    Expr::text(o.campaign_index_days.to_string()),
                ),
            ],
            Some(&store),
        );
        if !tally_domain::compact::CAMPAIGN_INDEX_DAYS.contains(&o.campaign_index_days) {
            root.child("Compactor").violation(format!(
                "campaign_index_days {} is outside {}..={}",
                o.campaign_index_days,
                tally_domain::compact::CAMPAIGN_INDEX_DAYS.start(),
                tally_domain::compact::CAMPAIGN_INDEX_DAYS.end()
            ));
        }
        metrics.grant_items(&compactor, &COMPACTOR_TABLE_ACTIONS);
        archive.grant_read_prefix(&compactor, ARCHIVE_EVENTS_PREFIX);
        compactor.node().skip_check("CKV_AWS_116", "invoked by EventBridge, which retries; the next minute's run compacts whatever a failed run left");
        compactor.node().skip_check("CKV_AWS_115", SHARED_POOL);
        compactor.node().skip_check("CKV_AWS_173", ENV_PLAIN);
        compactor.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
        ScheduleRule::new(
            root,
            "CompactorSchedule",
            ScheduleProps {
                name: Some(self.name(NameKind::Rule, "compactor")),
                schedule: "rate(1 minute)".into(),
                target: compactor.clone(),
            },
        );

        // Alarms: operators are told about errors, throttles and lag.
        let alerts = Topic::new(
            root,
            "Alerts",
            TopicProps {
                name: Some(self.name(NameKind::Topic, "alerts")),
                display_name: Some("tally alerts".into()),
            },
        );
        alerts.node().skip_check("CKV_AWS_26", "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key; messages hold alarm states only");
        if let Some(email) = &o.alert_email {
            alerts.subscribe_email(root, "AlertsEmail", email);
        }
        for (id, suffix, function, what) in [
            ("CollectErrors", "collect-errors", &collect, "collect"),
            ("RealtimeErrors", "realtime-errors", &realtime, "realtime"),
            ("DeferredErrors", "deferred-errors", &deferred, "deferred"),
            ("QueryErrors", "query-errors", &query, "query"),
            (
                "CompactorErrors",
                "compactor-errors",
                &compactor,
                "compactor",
            ),
        ] {
            self.alarm(
                id,
                suffix,
                &format!("tally {what} function errors: see its log group"),
                (
                    "AWS/Lambda",
                    "Errors",
                    vec![("FunctionName", function.name())],
                ),
                (Statistic::Sum, 60, 5, 0.0),
                vec![alerts.clone()],
            );
        }
        for (id, suffix, function, what) in [
            ("CollectThrottles", "collect-throttles", &collect, "collect"),
            (
                "RealtimeThrottles",
                "realtime-throttles",
                &realtime,
                "realtime",
            ),
        ] {
            self.alarm(
                id,
                suffix,
                &format!(
                    "tally {what} function throttled: raise its concurrency or the account quota"
                ),
                (
                    "AWS/Lambda",
                    "Throttles",
                    vec![("FunctionName", function.name())],
                ),
                (Statistic::Sum, 60, 1, 0.0),
                vec![alerts.clone()],
            );
        }
        // A discarded range waits on a lane's on-failure queue: its events are not counted until it is
        // redriven (`cargo xtask redrive`, README "Operations").
        for (id, suffix, queue, lane) in [
            (
                "RealtimeFailuresWaiting",
                "realtime-failures-waiting",
                &realtime_failures,
                "realtime",
            ),
            (
                "DeferredFailuresWaiting",
                "deferred-failures-waiting",
                &deferred_failures,
                "deferred",
            ),
        ] {
            self.alarm(
                id,
                suffix,
                &format!(
                    "tally {lane} lane discarded records to its on-failure queue; they are not counted: run cargo xtask redrive --lane {lane}"
                ),
                (
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    vec![("QueueName", queue.name())],
                ),
                (Statistic::Maximum, 300, 1, 0.0),
                vec![alerts.clone()],
            );
        }
        self.alarm(
            "RealtimeIteratorAge",
            "realtime-iterator-age",
            "tally realtime lane is behind by more than 1 s: campaign numbers are not fresh",
            (
                "AWS/Lambda",
                "IteratorAge",
                vec![("FunctionName", realtime.name())],
            ),
            (Statistic::Maximum, 60, 3, 1000.0),
            vec![alerts.clone()],
        );

        // Shard scaling (provisioned streams only).
        let mut scaling_actions = Vec::new();
        if let StreamCapacity::Provisioned {
            min_shards,
            max_shards,
            ..
        } = o.stream
        {
            let scaler = self.function(
                "Scaler",
                "scaler",
                None,
                vec![
                    (env::STREAM_NAME, events.name()),
                    (env::MIN_SHARDS, Expr::text(min_shards.to_string())),
                    (env::MAX_SHARDS, Expr::text(max_shards.to_string())),
                ],
                None,
            );
            events.grant_scale(&scaler);
            tally_constructs::cloudwatch::grant_metric_reads(&scaler);
            scaler.node().skip_check("CKV_AWS_116", "invoked by SNS and EventBridge, which retry; the next schedule tick re-decides anyway");
            scaler.node().skip_check("CKV_AWS_115", SHARED_POOL);
            scaler.node().skip_check("CKV_AWS_173", ENV_PLAIN);
            scaler.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
            let trigger = Topic::new(
                root,
                "ScalingTrigger",
                TopicProps {
                    name: Some(self.name(NameKind::Topic, "scaling")),
                    display_name: None,
                },
            );
            trigger.node().skip_check("CKV_AWS_26", "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key; messages hold alarm states only");
            trigger.subscribe_function(root, "ScalerSubscription", &scaler);
            ScheduleRule::new(
                root,
                "ScalerSchedule",
                ScheduleProps {
                    name: Some(self.name(NameKind::Rule, "scaler")),
                    schedule: "rate(5 minutes)".into(),
                    target: scaler.clone(),
                },
            );
            self.alarm(
                "StreamWriteThrottled",
                "stream-write-throttled",
                "tally events stream refuses writes: the scaler adds shards",
                (
                    "AWS/Kinesis",
                    "WriteProvisionedThroughputExceeded",
                    vec![("StreamName", events.name())],
                ),
                (Statistic::Sum, 60, 1, 0.0),
                vec![trigger.clone(), alerts.clone()],
            );
            self.alarm(
                "ScalerErrors",
                "scaler-errors",
                "tally scaler function errors: shard count is not managed",
                (
                    "AWS/Lambda",
                    "Errors",
                    vec![("FunctionName", scaler.name())],
                ),
                (Statistic::Sum, 300, 1, 0.0),
                vec![alerts.clone()],
            );
            scaling_actions.push(trigger);
        }
        scaling_actions.push(alerts.clone());
        self.alarm(
            "DeferredIteratorAge",
            "deferred-iterator-age",
            "tally deferred lane is more than 15 minutes behind: add shards or deferred capacity",
            (
                "AWS/Lambda",
                "IteratorAge",
                vec![("FunctionName", deferred.name())],
            ),
            (Statistic::Maximum, 300, 3, 900_000.0),
            scaling_actions,
        );

        // checkov findings that are design decisions, with their reasons.
        for (function, dlq) in [
            (&collect, NO_DLQ_SYNC),
            (&realtime, NO_DLQ_STREAM),
            (&deferred, NO_DLQ_STREAM),
            (&query, NO_DLQ_SYNC),
        ] {
            function.node().skip_check("CKV_AWS_116", dlq);
            function.node().skip_check("CKV_AWS_173", ENV_PLAIN);
            function.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
        }
        for (function, lane) in [(&realtime, &o.realtime), (&deferred, &o.deferred)] {
            if lane.reserved_concurrency.is_none() {
                function.node().skip_check("CKV_AWS_115", SHARED_POOL);
            }
        }
        check_reserved_total(&root.child("Concurrency"), o);
        self.bounded_cost(&collect_url, origin_secret.as_ref(), &alerts);

        // Outputs.
        self.stack.output(
            outputs::COLLECT_URL,
            "collect endpoint (pixel GET, JSON POST, sendBeacon)",
            &collect_url.url(),
        );
        self.stack.output(
            outputs::QUERY_URL,
            "query API and dashboard",
            &query_url.url(),
        );
        self.stack
            .output(outputs::STREAM_NAME, "events stream", &events.name());
        self.stack
            .output(outputs::METRICS_TABLE, "metrics table", &metrics.name());
        self.stack
            .output(outputs::ARCHIVE_BUCKET, "archive bucket", &archive.name());
        self.stack.output(
            outputs::QUERY_TOKEN_SECRET_ARN,
            "secret holding the query bearer token",
            &token.arn(),
        );
        self.stack.output(
            outputs::COLLECT_KEYS_SECRET_ARN,
            "secret holding the collect keys (key id to secret)",
            &collect_keys.arn(),
        );
        self.stack.output(
            outputs::REALTIME_FAILURES_URL,
            "on-failure queue of the realtime lane",
            &realtime_failures.url(),
        );
        self.stack.output(
            outputs::DEFERRED_FAILURES_URL,
            "on-failure queue of the deferred lane",
            &deferred_failures.url(),
        );
        self.stack.output(
            outputs::CACHE_ADDRESS,
            "counter cache endpoint host (TLS, IAM auth; reachable only from the stack's VPC)",
            &store.cache.endpoint_address(),
        );
        self.stack.output(
            outputs::CACHE_PORT,
            "counter cache endpoint port",
            &store.cache.endpoint_port(),
        );
        self.stack.output(
            outputs::CACHE_NAME,
            "counter cache name",
            &store.cache.name(),
        );
    }
}

impl Pipeline<'_> {
    /// The optional defences that cost money: the budget and the edge (stack options).
    fn bounded_cost(
        &self,
        collect_url: &FunctionUrl,
        origin_secret: Option<&Secret>,
        alerts: &Topic,
    ) {
        let o = self.options;
        if let Some(monthly_usd) = o.budget_monthly_usd {
            Budget::new(
                &self.root,
                "CostBudget",
                BudgetProps {
                    monthly_usd,
                    actual_percent: 80,
                    topic: Some(alerts.clone()),
                    emails: o.budget_email.iter().cloned().collect(),
                },
            );
        }
        if let Some(edge) = o.edge {
            let edge = Edge::new(
                &self.root,
                "CollectEdge",
                collect_url,
                EdgeProps {
                    requests_per_five_minutes: edge.requests_per_five_minutes,
                    comment: format!("tally collect ({})", self.stage.label())
                        .chars()
                        .take(128)
                        .collect(),
                    origin_secret: origin_secret.map(|secret| OriginSecret {
                        header: ORIGIN_HEADER.to_owned(),
                        secret_id: secret.arn(),
                    }),
                },
            );
            edge.web_acl().skip_check("CKV_AWS_192", "collect is Rust, no Log4j: the Known Bad Inputs rule group would add a rule fee and per-request inspection for nothing");
            let distribution = edge.distribution();
            distribution.skip_check("CKV_AWS_174", "the default *.cloudfront.net certificate; a custom domain with its ACM certificate (TLS 1.2 minimum) is the operator's choice");
            distribution.skip_check("CKV_AWS_86", "no access logs: collect logs its own requests and the web ACL samples blocked ones");
            distribution.skip_check(
                "CKV_AWS_310",
                "one origin by design: the collect Function URL is the only place the events go",
            );
            distribution.skip_check(
                "CKV_AWS_305",
                "no default root object: an API, not a web site",
            );
            if let Some(secret) = origin_secret {
                self.stack.output(
                    outputs::COLLECT_ORIGIN_SECRET_ARN,
                    "secret CloudFront adds to collect's requests (collect refuses requests without it)",
                    &secret.arn(),
                );
            }
            self.stack.output(
                outputs::EDGE_URL,
                "collect behind CloudFront and a per-address WAF rate limit (send tracking here)",
                &edge.url(),
            );
        }
    }
}

/// The reserved concurrency of a function behind a URL (collect, query), from the options.
fn url_reserved_concurrency(package: &str, options: &PipelineOptions) -> Option<u32> {
    match package {
        "collect" => Some(options.collect_reserved_concurrency),
        "query" => Some(options.query_reserved_concurrency),
        _ => None,
    }
}

/// Every function's reserved concurrency, and that together they leave AWS's unreserved minimum.
fn check_reserved_total(scope: &Scope, o: &PipelineOptions) {
    for (name, n) in [
        (
            "collect_reserved_concurrency",
            o.collect_reserved_concurrency,
        ),
        ("query_reserved_concurrency", o.query_reserved_concurrency),
    ] {
        if n == 0 {
            scope.violation(format!(
                "{name} is 0: the function would be throttled on every request (give at least 1)"
            ));
        }
    }
    let reserved: u64 = [
        Some(o.collect_reserved_concurrency),
        Some(o.query_reserved_concurrency),
        o.realtime.reserved_concurrency,
        o.deferred.reserved_concurrency,
    ]
    .into_iter()
    .flatten()
    .map(u64::from)
    .sum();
    let allowed = u64::from(o.account_concurrency).saturating_sub(u64::from(UNRESERVED_MINIMUM));
    if reserved > allowed {
        scope.violation(format!(
            "the functions reserve {reserved} concurrent executions, above the {allowed} an account_concurrency of {} allows (AWS keeps {UNRESERVED_MINIMUM} unreserved): lower collect_reserved_concurrency or raise the quota and account_concurrency",
            o.account_concurrency
        ));
    }
}

/// Both lanes apply counters with per-shard fencing (`tally_aws::metrics`), which is exact only while a shard has
/// one batch in flight: a `ParallelizationFactor` above 1 would let two batches of one shard race on a row.
fn require_one_batch_per_shard(scope: &Scope, lane: &str, settings: &LaneOptions) {
    if settings.parallelization_factor != 1 {
        scope.violation(format!(
            "{lane} parallelization_factor must be 1, not {}: the exactly-once fencing is per shard and needs one batch in flight per shard",
            settings.parallelization_factor
        ));
    }
}

/// The network and the cache, as the functions that use the cache see them.
struct CounterStore {
    vpc: Vpc,
    functions: SecurityGroup,
    cache: ServerlessCache,
    user: User,
}

impl CounterStore {
    /// The cache's part of the environment (the contract of `env::CACHE_*`).
    fn environment(&self, options: &PipelineOptions) -> Vec<(String, Expr)> {
        [
            (env::CACHE_ENDPOINT, self.cache.endpoint()),
            (env::CACHE_TLS, Expr::text("true")),
            (env::CACHE_AUTH, Expr::text("iam")),
            (env::CACHE_USER, self.user.user_id()),
            (env::CACHE_NAME, self.cache.name()),
            (
                env::DEDUP_WINDOW_SECS,
                Expr::text(options.dedup_window_secs.to_string()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

fn lane_mapping(lane: &LaneOptions, failures: &Queue) -> KinesisProps {
    KinesisProps {
        batch_size: lane.batch_size,
        max_batching_window_secs: lane.batching_window_secs,
        starting_position: StartingPosition::TrimHorizon,
        parallelization_factor: lane.parallelization_factor,
        bisect_batch_on_function_error: true,
        max_retry_attempts: lane.max_retry_attempts,
        max_record_age_secs: lane.max_record_age_secs,
        report_batch_item_failures: true,
        on_failure: Some(failures.clone()),
        tumbling_window_secs: 0,
        enabled: true,
    }
}

/// The IAM actions of `sets` together, each once, sorted.
fn table_actions(sets: &[&[ItemAction]]) -> Vec<&'static str> {
    let mut actions: Vec<&'static str> = sets
        .iter()
        .flat_map(|set| set.iter().map(|a| a.iam()))
        .collect();
    actions.sort_unstable();
    actions.dedup();
    actions
}
