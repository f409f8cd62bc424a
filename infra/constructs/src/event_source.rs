//! Event source mappings (`AWS::Lambda::EventSourceMapping`) from Kinesis and SQS, with every
//! parameter checked against AWS's ranges at synth.
//!
//! Kinesis and SQS mappings have their own props types, so a Kinesis-only parameter cannot be set
//! on an SQS mapping at all:
//!
//! ```compile_fail
//! use tally_constructs::event_source::SqsProps;
//! let props = SqsProps { bisect_batch_on_function_error: true, ..SqsProps::default() };
//! ```
//!
//! ```compile_fail
//! use tally_constructs::event_source::SqsProps;
//! let props = SqsProps { parallelization_factor: 2, ..SqsProps::default() };
//! ```

use std::ops::RangeInclusive;

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::iam::grant;
use crate::kinesis::{Stream, StreamConsumer};
use crate::lambda::Function;
use crate::sqs::Queue;

/// Where a Kinesis mapping starts reading when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record kept.
    TrimHorizon,
    /// Only new records.
    Latest,
    /// From a time (Unix seconds).
    AtTimestamp(u64),
}

/// What a Kinesis mapping reads from.
#[derive(Debug, Clone)]
pub enum KinesisSource {
    /// The shared iterator: polled about once a second per shard, 2 MB/s shared by all readers.
    Stream(Stream),
    /// An enhanced fan-out consumer: pushed, its own 2 MB/s per shard.
    Consumer(StreamConsumer),
}

/// Properties of a Kinesis mapping; defaults are AWS's defaults.
#[derive(Debug, Clone)]
pub struct KinesisProps {
    /// `BatchSize` 1..=10000.
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds` 0..=300.
    pub max_batching_window_secs: u32,
    /// `StartingPosition`.
    pub starting_position: StartingPosition,
    /// `ParallelizationFactor` 1..=10.
    pub parallelization_factor: u32,
    /// `BisectBatchOnFunctionError`.
    pub bisect_batch_on_function_error: bool,
    /// `MaximumRetryAttempts`: -1 (until the record expires) or 0..=10000.
    pub max_retry_attempts: i32,
    /// `MaximumRecordAgeInSeconds`: -1 (no limit) or 60..=604800.
    pub max_record_age_secs: i32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `DestinationConfig.OnFailure`: a queue that receives the failed batch's metadata.
    pub on_failure: Option<Queue>,
    /// `TumblingWindowInSeconds` 0..=900.
    pub tumbling_window_secs: u32,
    /// `Enabled`.
    pub enabled: bool,
}

impl Default for KinesisProps {
    fn default() -> KinesisProps {
        KinesisProps {
            batch_size: 100,
            max_batching_window_secs: 0,
            starting_position: StartingPosition::TrimHorizon,
            parallelization_factor: 1,
            bisect_batch_on_function_error: false,
            max_retry_attempts: -1,
            max_record_age_secs: -1,
            report_batch_item_failures: false,
            on_failure: None,
            tumbling_window_secs: 0,
            enabled: true,
        }
    }
}

/// Properties of an SQS mapping; defaults are AWS's defaults.
#[derive(Debug, Clone)]
pub struct SqsProps {
    /// `BatchSize`: 1..=10000 (1..=10 for FIFO queues); above 10 needs a batching window.
    pub batch_size: u32,
    /// `MaximumBatchingWindowInSeconds` 0..=300.
    pub max_batching_window_secs: u32,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `ScalingConfig.MaximumConcurrency` 2..=1000.
    pub max_concurrency: Option<u32>,
    /// `Enabled`.
    pub enabled: bool,
}

impl Default for SqsProps {
    fn default() -> SqsProps {
        SqsProps {
            batch_size: 10,
            max_batching_window_secs: 0,
            report_batch_item_failures: false,
            max_concurrency: None,
            enabled: true,
        }
    }
}

/// A mapping that invokes a function with batches from a stream or queue. Creating it grants the
/// function's role what the mapping needs to read the source and to write to the failure queue.
#[derive(Debug, Clone)]
pub struct EventSourceMapping {
    node: Node,
}

/// `(setting, value, allowed ranges, the rule as AWS states it)`.
type RangeRule<'a> = (&'a str, i64, &'a [RangeInclusive<i64>], &'a str);

/// Reports every setting whose value is in none of its allowed ranges.
fn check_ranges(scope: &Scope, rules: &[RangeRule<'_>]) {
    for (name, value, allowed, rule) in rules {
        if !allowed.iter().any(|range| range.contains(value)) {
            scope.violation(format!("{name} {value} is outside {rule}"));
        }
    }
}

impl EventSourceMapping {
    /// Invokes `function` with batches from `source`.
    pub fn kinesis(
        scope: &Scope,
        id: &str,
        function: &Function,
        source: &KinesisSource,
        props: KinesisProps,
    ) -> EventSourceMapping {
        let scope = scope.child(id);
        let p = &props;
        check_ranges(
            &scope,
            &[
                (
                    "batch_size",
                    p.batch_size.into(),
                    &[1..=10_000],
                    "1..=10000 (Kinesis BatchSize)",
                ),
                (
                    "max_batching_window_secs",
                    p.max_batching_window_secs.into(),
                    &[0..=300],
                    "0..=300 (MaximumBatchingWindowInSeconds)",
                ),
                (
                    "parallelization_factor",
                    p.parallelization_factor.into(),
                    &[1..=10],
                    "1..=10 (ParallelizationFactor)",
                ),
                (
                    "max_retry_attempts",
                    p.max_retry_attempts.into(),
                    &[-1..=10_000],
                    "-1 (infinite) or 0..=10000 (MaximumRetryAttempts)",
                ),
                (
                    "max_record_age_secs",
                    p.max_record_age_secs.into(),
                    &[-1..=-1, 60..=604_800],
                    "-1 (no limit) or 60..=604800 (MaximumRecordAgeInSeconds)",
                ),
                (
                    "tumbling_window_secs",
                    p.tumbling_window_secs.into(),
                    &[0..=900],
                    "0..=900 (TumblingWindowInSeconds)",
                ),
            ],
        );
        if let StartingPosition::AtTimestamp(0) = p.starting_position {
            scope.violation("starting_position AtTimestamp(0) is not a time; give Unix seconds");
        }
        if p.bisect_batch_on_function_error
            && p.max_retry_attempts == -1
            && p.max_record_age_secs == -1
        {
            scope.violation(
                "bisect_batch_on_function_error with unbounded retries and record age retries a poison record until it expires; bound max_retry_attempts or max_record_age_secs",
            );
        }

        let arn = match source {
            KinesisSource::Stream(stream) => {
                stream.grant_read(function);
                stream.arn()
            }
            KinesisSource::Consumer(consumer) => {
                consumer.grant_read(function);
                consumer.arn()
            }
        };
        let mut properties = Map::new();
        properties.insert("FunctionName".into(), scope.resolve(&function.name()));
        properties.insert("EventSourceArn".into(), scope.resolve(&arn));
        properties.insert("BatchSize".into(), json!(p.batch_size));
        properties.insert(
            "MaximumBatchingWindowInSeconds".into(),
            json!(p.max_batching_window_secs),
        );
        match p.starting_position {
            StartingPosition::TrimHorizon => {
                properties.insert("StartingPosition".into(), json!("TRIM_HORIZON"));
            }
            StartingPosition::Latest => {
                properties.insert("StartingPosition".into(), json!("LATEST"));
            }
            StartingPosition::AtTimestamp(at) => {
                properties.insert("StartingPosition".into(), json!("AT_TIMESTAMP"));
                properties.insert("StartingPositionTimestamp".into(), json!(at));
            }
        }
        properties.insert(
            "ParallelizationFactor".into(),
            json!(p.parallelization_factor),
        );
        properties.insert(
            "BisectBatchOnFunctionError".into(),
            json!(p.bisect_batch_on_function_error),
        );
        properties.insert("MaximumRetryAttempts".into(), json!(p.max_retry_attempts));
        properties.insert(
            "MaximumRecordAgeInSeconds".into(),
            json!(p.max_record_age_secs),
        );
        if p.report_batch_item_failures {
            properties.insert(
                "FunctionResponseTypes".into(),
                json!(["ReportBatchItemFailures"]),
            );
        }
        if let Some(queue) = &p.on_failure {
            grant(function, queue.node(), &["sqs:SendMessage"], &[queue.arn()]);
            properties.insert(
                "DestinationConfig".into(),
                json!({ "OnFailure": { "Destination": scope.resolve(&queue.arn()) } }),
            );
        }
        if p.tumbling_window_secs > 0 {
            properties.insert(
                "TumblingWindowInSeconds".into(),
                json!(p.tumbling_window_secs),
            );
        }
        properties.insert("Enabled".into(), json!(p.enabled));
        let node = scope.add_resource("Resource", "AWS::Lambda::EventSourceMapping", properties);
        EventSourceMapping { node }
    }

    /// Invokes `function` with batches from `queue`.
    pub fn sqs(
        scope: &Scope,
        id: &str,
        function: &Function,
        queue: &Queue,
        props: SqsProps,
    ) -> EventSourceMapping {
        let scope = scope.child(id);
        let p = &props;
        let (max_batch, batch_rule) = if queue.is_fifo() {
            (10, "1..=10 (SQS BatchSize for a FIFO queue)")
        } else {
            (10_000, "1..=10000 (SQS BatchSize)")
        };
        let concurrency = p.max_concurrency.map_or(2, i64::from);
        check_ranges(
            &scope,
            &[
                (
                    "batch_size",
                    p.batch_size.into(),
                    &[1..=max_batch],
                    batch_rule,
                ),
                (
                    "max_batching_window_secs",
                    p.max_batching_window_secs.into(),
                    &[0..=300],
                    "0..=300 (MaximumBatchingWindowInSeconds)",
                ),
                (
                    "max_concurrency",
                    concurrency,
                    &[2..=1000],
                    "2..=1000 (ScalingConfig.MaximumConcurrency)",
                ),
            ],
        );
        if p.batch_size > 10 && p.max_batching_window_secs == 0 {
            scope.violation(format!(
                "batch_size {} above 10 needs max_batching_window_secs of at least 1 (SQS mapping rule)",
                p.batch_size
            ));
        }
        queue.grant_consume(function);
        let mut properties = Map::new();
        properties.insert("FunctionName".into(), scope.resolve(&function.name()));
        properties.insert("EventSourceArn".into(), scope.resolve(&queue.arn()));
        properties.insert("BatchSize".into(), json!(p.batch_size));
        properties.insert(
            "MaximumBatchingWindowInSeconds".into(),
            json!(p.max_batching_window_secs),
        );
        if p.report_batch_item_failures {
            properties.insert(
                "FunctionResponseTypes".into(),
                json!(["ReportBatchItemFailures"]),
            );
        }
        if let Some(max) = p.max_concurrency {
            properties.insert("ScalingConfig".into(), json!({ "MaximumConcurrency": max }));
        }
        properties.insert("Enabled".into(), json!(p.enabled));
        let node = scope.add_resource("Resource", "AWS::Lambda::EventSourceMapping", properties);
        EventSourceMapping { node }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The mapping's id (`Ref`: its UUID).
    pub fn id(&self) -> crate::Expr {
        self.node.reference()
    }
}
