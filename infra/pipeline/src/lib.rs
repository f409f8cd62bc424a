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

//!
//! The stack is composed of construct modules, each a function (or constructor) with its own props that adds
//! its resources and returns typed handles for the others: `ingest` (the events stream and
//! collect), `storage` (table, bucket, secrets), `counter_store` (VPC and cache), `critical` (the realtime
//! lane), `deferred`, `query`, `compaction`, `monitoring` (alerts and alarms), `scaling` (the shard scaler)
//! and `defences` (concurrency, budget, edge). The order they are called in is the template's order.

use serde_json::Value;
pub use tally_constructs::dynamodb::{AutoScaling, Billing as TableBilling, CapacityRange};

pub use tally_constructs::{NameKind, Stack, Stage};

mod compaction;
mod context;
mod counter_store;
mod critical;
mod defences;
mod deferred;
mod ingest;
mod lane;
mod monitoring;
mod options;
mod query;
mod scaling;
mod storage;

pub use options::{
    CriticalLane, EdgeOptions, LaneOptions, PipelineOptions, StreamCapacity,
    DEFAULT_ACCOUNT_CONCURRENCY, DEFAULT_COLLECT_RESERVED_CONCURRENCY,
    DEFAULT_QUERY_RESERVED_CONCURRENCY, DEFAULT_TABLE_SCALING, UNRESERVED_MINIMUM,
};

use context::Context;
use tally_constructs::Expr;

/// Everything that can go wrong while synthesizing the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The options or the app break a rule (each problem names its construct path).
    #[error(transparent)]
    Invalid(#[from] tally_constructs::Error),
}

/// The six functions: the contract's (`tally-contract`), re-exported.
pub use tally_contract::FUNCTIONS;

/// Template parameter: the bucket that holds the function zips.
pub const ASSETS_BUCKET_PARAMETER: &str = tally_contract::parameters::ASSETS_BUCKET;

/// The functions invoked per request or per batch (billions of invocations a month at scale): their logs are
/// JSON without Lambda's per-invocation `START`/`END`/`REPORT` lines, which would otherwise be most of their
/// log bytes (docs/plan.md, "CloudWatch"). The others keep plain text with those lines for debugging.
pub const PER_INVOCATION_QUIET: [&str; 3] = ["collect", "realtime", "deferred"];

/// The code parameters' names: the contract's (`tally-contract`), re-exported.
pub use tally_contract::parameters::{code_key_parameter, code_version_parameter};

/// Environment variables the functions read: the contract's (`tally-contract`), re-exported.
pub use tally_contract::env;

/// Where the deferred lane archives events in the archive bucket (`events/dt=…/hour=…/…`): the only part
/// the deferred lane may write and the compactor may read.
pub const ARCHIVE_EVENTS_PREFIX: &str = tally_domain::archive::EVENTS_PREFIX;

/// The collect keys secret's name ends with this (the local cloud's load test finds its key by it).
pub const COLLECT_KEYS_SECRET_SUFFIX: &str = tally_contract::secrets::COLLECT_KEYS_SUFFIX;
/// The collect origin secret's name ends with this (with the edge only; the local cloud's clients find it by it).
pub const COLLECT_ORIGIN_SECRET_SUFFIX: &str = tally_contract::secrets::COLLECT_ORIGIN_SUFFIX;
/// The key id the stack generates in the collect keys secret; add your own with `PutSecretValue`.
pub const COLLECT_DEFAULT_KEY_ID: &str = tally_contract::secrets::COLLECT_DEFAULT_KEY_ID;

/// Logical id of the counter cache (the functions' contract and the local cloud name it).
pub const COUNTER_CACHE: &str = tally_contract::COUNTER_CACHE;

/// What the functions' cache user may do: the counter store's keys (`domain/src/store_keys.rs`: the
/// lanes' `{rt…`/`{st…` keys and the `dedup:` claims) and the command categories of its reads, writes
/// and scripts; nothing `@dangerous` (no `FLUSHALL`, `KEYS`, `CONFIG`…), no pub/sub channels.
pub const CACHE_ACCESS_STRING: &str =
    "on ~{rt:* ~{rt}:* ~{st:* ~{st}:* ~dedup:* -@all +@read +@write +@keyspace +@scripting +@connection -@dangerous";

/// Names of the template's outputs: the contract's (`tally-contract`), re-exported.
pub use tally_contract::outputs;

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
    build(&Context::new(&stack, stage, options));
    stack
}

/// Composes the construct modules; what one returns, the next uses.
fn build(cx: &Context<'_>) {
    let o = cx.options;
    let events = ingest::events_stream(
        cx,
        ingest::EventsProps {
            capacity: o.stream,
            retention_hours: o.retention_hours,
        },
    );
    let storage = storage::Storage::new(
        cx,
        storage::StorageProps {
            table_billing: o.table_billing,
            archive_expiration_days: o.archive_expiration_days,
            origin_secret: o.edge.is_some(),
        },
    );
    if o.retain_data {
        events.node().retain();
        storage.retain();
    }
    let store = counter_store::CounterStore::new(
        cx,
        &counter_store::CounterStoreProps {
            metrics: &storage.metrics,
            archive: &storage.archive,
            token: &storage.token,
            events: &events,
        },
    );
    let collect = ingest::collect(
        cx,
        ingest::CollectProps {
            events: &events,
            keys: &storage.collect_keys,
            origin_secret: storage.origin_secret.as_ref(),
        },
    );
    let realtime = critical::realtime_lane(
        cx,
        critical::CriticalProps {
            lane: &o.realtime,
            read: o.critical_lane,
            capacity: o.stream,
            events: &events,
            store: &store,
        },
    );
    let deferred = deferred::deferred_lane(
        cx,
        deferred::DeferredProps {
            lane: &o.deferred,
            exclude_unsigned: o.exclude_unsigned,
            events: &events,
            archive: &storage.archive,
            store: &store,
        },
    );
    let query = query::query(
        cx,
        query::QueryProps {
            metrics: &storage.metrics,
            token: &storage.token,
            store: &store,
        },
    );
    let compactor = compaction::compactor(
        cx,
        compaction::CompactionProps {
            campaign_index_days: o.campaign_index_days,
            metrics: &storage.metrics,
            archive: &storage.archive,
            store: &store,
            events: &events,
        },
    );

    let alerts = monitoring::alerts_topic(cx, o.alert_email.as_deref());
    monitoring::operational_alarms(
        cx,
        &monitoring::Watched {
            collect: &collect.function,
            realtime: &realtime.function,
            deferred: &deferred.function,
            query: &query.function,
            compactor: &compactor,
            realtime_failures: &realtime.failures,
            deferred_failures: &deferred.failures,
            alerts: &alerts,
        },
    );
    // Lag of the deferred lane wakes the scaler too (provisioned streams only).
    let mut lag_actions = Vec::new();
    if let StreamCapacity::Provisioned {
        min_shards,
        max_shards,
        ..
    } = o.stream
    {
        let trigger = scaling::scaler(
            cx,
            scaling::ScalingProps {
                min_shards,
                max_shards,
                events: &events,
                alerts: &alerts,
            },
        );
        lag_actions.push(trigger);
    }
    lag_actions.push(alerts.clone());
    monitoring::deferred_lag_alarm(cx, &deferred.function, lag_actions);

    defences::check_reserved_total(&cx.root.child("Concurrency"), o);
    defences::bounded_cost(
        cx,
        defences::BoundedCostProps {
            budget_monthly_usd: o.budget_monthly_usd,
            budget_email: o.budget_email.as_deref(),
            edge: o.edge,
            collect_url: &collect.url,
            origin_secret: storage.origin_secret.as_ref(),
            alerts: &alerts,
        },
    );

    // Outputs.
    let out =
        |name: &str, description: &str, value: &Expr| cx.stack.output(name, description, value);
    out(
        outputs::COLLECT_URL,
        "collect endpoint (pixel GET, JSON POST, sendBeacon)",
        &collect.url.url(),
    );
    out(
        outputs::QUERY_URL,
        "query API and dashboard",
        &query.url.url(),
    );
    out(outputs::STREAM_NAME, "events stream", &events.name());
    out(
        outputs::METRICS_TABLE,
        "metrics table",
        &storage.metrics.name(),
    );
    out(
        outputs::ARCHIVE_BUCKET,
        "archive bucket",
        &storage.archive.name(),
    );
    out(
        outputs::QUERY_TOKEN_SECRET_ARN,
        "secret holding the query bearer token",
        &storage.token.arn(),
    );
    out(
        outputs::COLLECT_KEYS_SECRET_ARN,
        "secret holding the collect keys (key id to secret)",
        &storage.collect_keys.arn(),
    );
    out(
        outputs::REALTIME_FAILURES_URL,
        "on-failure queue of the realtime lane",
        &realtime.failures.url(),
    );
    out(
        outputs::DEFERRED_FAILURES_URL,
        "on-failure queue of the deferred lane",
        &deferred.failures.url(),
    );
    out(
        outputs::CACHE_ADDRESS,
        "counter cache endpoint host (TLS, IAM auth; reachable only from the stack's VPC)",
        &store.cache.endpoint_address(),
    );
    out(
        outputs::CACHE_PORT,
        "counter cache endpoint port",
        &store.cache.endpoint_port(),
    );
    out(
        outputs::CACHE_NAME,
        "counter cache name",
        &store.cache.name(),
    );
}

/// What the construct modules' unit tests share: a stack to add to, its template, and readers of it.
#[cfg(test)]
mod testing {
    use std::collections::BTreeSet;

    use serde_json::{Map, Value};

    use crate::context::Context;
    use crate::counter_store::{CounterStore, CounterStoreProps};
    use crate::storage::{Storage, StorageProps};
    use crate::{PipelineOptions, Stack, Stage};
    use tally_constructs::kinesis::Stream;

    /// Runs `add` on a context of a fresh stack of stage `test` with `options`; the template it gives.
    pub(crate) fn template_of(options: &PipelineOptions, add: impl FnOnce(&Context<'_>)) -> Value {
        let stack = Stack::new("tally-test");
        let stage = Stage::new("test");
        add(&Context::new(&stack, &stage, options));
        stack.synth().expect("synthesizes")
    }

    /// The violations `add` reports, as text.
    pub(crate) fn violations_of(
        options: &PipelineOptions,
        add: impl FnOnce(&Context<'_>),
    ) -> String {
        let stack = Stack::new("tally-test");
        let stage = Stage::new("test");
        add(&Context::new(&stack, &stage, options));
        stack.synth().expect_err("refused").to_string()
    }

    /// The events stream as `build` makes it from the stage's options (for tests that need one).
    pub(crate) fn events_of(cx: &Context<'_>) -> Stream {
        crate::ingest::events_stream(
            cx,
            crate::ingest::EventsProps {
                capacity: cx.options.stream,
                retention_hours: cx.options.retention_hours,
            },
        )
    }

    /// Storage and the counter store, which most modules need (`events`: the stream whose single records the
    /// counter store's endpoint lets through).
    pub(crate) fn storage_and_store(cx: &Context<'_>, events: &Stream) -> (Storage, CounterStore) {
        let storage = Storage::new(
            cx,
            StorageProps {
                table_billing: cx.options.table_billing,
                archive_expiration_days: cx.options.archive_expiration_days,
                origin_secret: cx.options.edge.is_some(),
            },
        );
        let store = CounterStore::new(
            cx,
            &CounterStoreProps {
                metrics: &storage.metrics,
                archive: &storage.archive,
                token: &storage.token,
                events,
            },
        );
        (storage, store)
    }

    pub(crate) fn resources(t: &Value) -> &Map<String, Value> {
        t["Resources"].as_object().expect("Resources")
    }

    /// The types of the resources whose logical id starts with one of `prefixes`, in template order.
    pub(crate) fn types_of(t: &Value, prefixes: &[&str]) -> Vec<String> {
        resources(t)
            .iter()
            .filter(|(id, _)| prefixes.iter().any(|p| id.starts_with(p)))
            .map(|(_, r)| r["Type"].as_str().expect("Type").to_owned())
            .collect()
    }

    /// The one resource whose logical id starts with `prefix` and has type `ty`.
    pub(crate) fn find<'t>(t: &'t Value, ty: &str, prefix: &str) -> &'t Value {
        let found: Vec<&Value> = resources(t)
            .iter()
            .filter(|(id, r)| id.starts_with(prefix) && r["Type"] == ty)
            .map(|(_, r)| r)
            .collect();
        assert_eq!(found.len(), 1, "one {ty} {prefix}…");
        found[0]
    }

    /// The IAM actions the role of the function `prefix…` is granted (logs included).
    pub(crate) fn role_actions(t: &Value, prefix: &str) -> BTreeSet<String> {
        let function = find(t, "AWS::Lambda::Function", prefix);
        let role = function["Properties"]["Role"]["Fn::GetAtt"][0]
            .as_str()
            .expect("role reference");
        let mut actions = BTreeSet::new();
        for policy in resources(t)[role]["Properties"]["Policies"]
            .as_array()
            .expect("inline policy")
        {
            for statement in policy["PolicyDocument"]["Statement"]
                .as_array()
                .expect("statements")
            {
                match &statement["Action"] {
                    Value::Array(list) => {
                        actions.extend(list.iter().map(|a| a.as_str().expect("action").to_owned()))
                    }
                    one => {
                        actions.insert(one.as_str().expect("action").to_owned());
                    }
                }
            }
        }
        actions
    }

    /// The environment variable names of the function `prefix…`.
    pub(crate) fn env_names(t: &Value, prefix: &str) -> Vec<String> {
        find(t, "AWS::Lambda::Function", prefix)["Properties"]["Environment"]["Variables"]
            .as_object()
            .expect("variables")
            .keys()
            .cloned()
            .collect()
    }

    /// Whether `actions` hold `action`.
    pub(crate) fn has(actions: &BTreeSet<String>, action: &str) -> bool {
        actions.contains(action)
    }
}
