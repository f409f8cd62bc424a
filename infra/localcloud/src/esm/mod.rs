//! Event source mappings with AWS's semantics: Kinesis (shared iterator or enhanced fan-out) and SQS.
//!
//! A mapping is a source (a shard reader) feeding a sink (a function invocation), with the rules of
//! `AWS::Lambda::EventSourceMapping` in between: batch size, batching window, starting position,
//! parallelization factor, bisect on error, bounded retries, maximum record age, on-failure destination,
//! partial batch responses and tumbling windows. Checkpoints (the last sequence number fully handled, per
//! shard) are files under the state directory, written durably behind the shard reader after each resolved
//! batch ([`checkpoint`]), so that a restart resumes after them: records after the checkpoint on disk are
//! delivered again (at least once, as in AWS; after a `kill -9` that can be the last batch or two handled).

mod checkpoint;
pub mod event;
mod kinesis;
mod sqs;

use std::path::PathBuf;
use std::time::Duration;

pub use kinesis::{KinesisMapping, MappingStats};
pub(crate) use sqs::local_call;
pub use sqs::SqsMapping;

/// `StartingPosition` of a stream mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartingPosition {
    TrimHorizon,
    Latest,
    /// `StartingPositionTimestamp`, milliseconds since the epoch.
    AtTimestamp(i64),
}

/// The declared properties of a mapping (`AWS::Lambda::EventSourceMapping`), validated against AWS's ranges.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    /// A stable id (the template's logical id): names the checkpoint directory.
    pub id: String,
    /// `EventSourceArn`: a stream, a stream consumer (enhanced fan-out) or a queue.
    pub source_arn: String,
    pub batch_size: usize,
    pub batching_window: Duration,
    pub starting_position: StartingPosition,
    pub parallelization_factor: usize,
    pub bisect_on_error: bool,
    /// `None` = retry until the records expire (AWS's -1).
    pub max_retries: Option<u32>,
    /// `None` = no age limit (AWS's -1).
    pub max_record_age: Option<Duration>,
    /// `DestinationConfig.OnFailure.Destination`: an SQS queue ARN.
    pub on_failure: Option<String>,
    /// `FunctionResponseTypes: [ReportBatchItemFailures]`.
    pub report_batch_item_failures: bool,
    /// `TumblingWindowInSeconds` (0 = none).
    pub tumbling_window: Duration,
    pub enabled: bool,
}

impl MappingConfig {
    /// A mapping with AWS's defaults for a stream (batch 100, no window, TRIM_HORIZON, retries until expiry).
    pub fn new(id: impl Into<String>, source_arn: impl Into<String>) -> MappingConfig {
        MappingConfig {
            id: id.into(),
            source_arn: source_arn.into(),
            batch_size: 100,
            batching_window: Duration::ZERO,
            starting_position: StartingPosition::TrimHorizon,
            parallelization_factor: 1,
            bisect_on_error: false,
            max_retries: None,
            max_record_age: None,
            on_failure: None,
            report_batch_item_failures: false,
            tumbling_window: Duration::ZERO,
            enabled: true,
        }
    }

    /// Checks the properties against AWS's documented ranges; the message names the property and the range.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.id;
        let sqs = self.source_arn.starts_with("arn:aws:sqs:");
        let max_batch = if sqs && self.batching_window.is_zero() {
            10
        } else {
            10_000
        };
        if !(1..=max_batch).contains(&self.batch_size) {
            return Err(format!(
                "mapping {id}: BatchSize {} is out of range 1..={max_batch}",
                self.batch_size
            ));
        }
        if self.batching_window > Duration::from_secs(300) {
            return Err(format!(
                "mapping {id}: MaximumBatchingWindowInSeconds {} is out of range 0..=300",
                self.batching_window.as_secs()
            ));
        }
        if !(1..=10).contains(&self.parallelization_factor) {
            return Err(format!(
                "mapping {id}: ParallelizationFactor {} is out of range 1..=10",
                self.parallelization_factor
            ));
        }
        if self.max_retries.is_some_and(|n| n > 10_000) {
            return Err(format!(
                "mapping {id}: MaximumRetryAttempts is out of range -1..=10000"
            ));
        }
        if let Some(age) = self.max_record_age {
            if !(60..=604_800).contains(&age.as_secs()) {
                return Err(format!(
                    "mapping {id}: MaximumRecordAgeInSeconds {} is out of range: use -1 or 60..=604800",
                    age.as_secs()
                ));
            }
        }
        if self.tumbling_window > Duration::from_secs(900) {
            return Err(format!(
                "mapping {id}: TumblingWindowInSeconds {} is out of range 0..=900",
                self.tumbling_window.as_secs()
            ));
        }
        if let Some(destination) = &self.on_failure {
            if !destination.starts_with("arn:aws:sqs:") {
                return Err(format!(
                    "mapping {id}: on-failure destination {destination} is not an SQS queue ARN; the local cloud delivers on-failure records to SQS queues"
                ));
            }
        }
        Ok(())
    }
}

/// How the local cloud runs mappings (not part of the template).
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where checkpoints are kept; `None` = in memory only.
    pub state_dir: Option<PathBuf>,
    /// How often a shared-iterator mapping polls an idle shard (AWS: about once a second). Enhanced fan-out
    /// mappings are pushed to and do not poll.
    pub idle_poll: Duration,
    /// The first retry's delay; doubled per attempt up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> RuntimeOptions {
        RuntimeOptions {
            state_dir: None,
            idle_poll: Duration::from_secs(1),
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// The SQS queue URL of a queue ARN, as the local endpoint names queues.
pub(crate) fn queue_name(arn: &str) -> Option<&str> {
    let name = arn.strip_prefix("arn:aws:sqs:")?.rsplit(':').next()?;
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_property_and_range() {
        let check = |edit: fn(&mut MappingConfig), expect: &str| {
            let mut config =
                MappingConfig::new("M", "arn:aws:kinesis:us-east-1:123456789012:stream/s");
            edit(&mut config);
            match config.validate() {
                Ok(()) => assert_eq!(expect, "", "expected an error"),
                Err(message) => assert!(
                    !expect.is_empty() && message.contains(expect),
                    "{message} lacks {expect}"
                ),
            }
        };
        check(|_| {}, "");
        check(
            |c| c.batch_size = 0,
            "BatchSize 0 is out of range 1..=10000",
        );
        check(|c| c.batch_size = 10_001, "BatchSize 10001");
        check(
            |c| c.batching_window = Duration::from_secs(301),
            "MaximumBatchingWindowInSeconds 301",
        );
        check(
            |c| c.parallelization_factor = 11,
            "ParallelizationFactor 11",
        );
        check(|c| c.parallelization_factor = 0, "ParallelizationFactor 0");
        check(|c| c.max_retries = Some(10_001), "MaximumRetryAttempts");
        check(
            |c| c.max_record_age = Some(Duration::from_secs(59)),
            "MaximumRecordAgeInSeconds 59",
        );
        check(
            |c| c.max_record_age = Some(Duration::from_secs(604_801)),
            "MaximumRecordAgeInSeconds 604801",
        );
        check(
            |c| c.tumbling_window = Duration::from_secs(901),
            "TumblingWindowInSeconds 901",
        );
        check(
            |c| c.on_failure = Some("arn:aws:sns:us-east-1:1:t".into()),
            "not an SQS queue ARN",
        );
        check(
            |c| {
                c.source_arn = "arn:aws:sqs:us-east-1:1:q".into();
                c.batch_size = 11
            },
            "BatchSize 11 is out of range 1..=10",
        );
        check(
            |c| {
                c.source_arn = "arn:aws:sqs:us-east-1:1:q".into();
                c.batch_size = 11;
                c.batching_window = Duration::from_secs(1)
            },
            "",
        );
    }

    #[test]
    fn queue_names() {
        assert_eq!(
            queue_name("arn:aws:sqs:us-east-1:123456789012:tally-dlq"),
            Some("tally-dlq")
        );
        assert_eq!(queue_name("arn:aws:sqs:us-east-1:123456789012:"), None);
        assert_eq!(queue_name("arn:aws:sns:us-east-1:123456789012:t"), None);
    }
}
