//! `scaler` — keeps the provisioned events stream's shard count fitted to its load.
//!
//! Triggered by the stream's CloudWatch alarms (through SNS) or an EventBridge schedule; whatever the
//! trigger, one run does the same ([`Scaler::run_at`]):
//!
//! 1. `DescribeStreamSummary`: the open shard count, whether the stream is `UPDATING`, and its mode (an
//!    on-demand stream is left alone: Kinesis scales it).
//! 2. CloudWatch `GetMetricStatistics`, one-minute periods over the last [`LOOKBACK_MINUTES`]:
//!    `IncomingBytes`, `IncomingRecords`, `WriteProvisionedThroughputExceeded` (sums) and
//!    `GetRecords.IteratorAgeMilliseconds` (maximum). A minute without a datapoint is a minute of zeros.
//! 3. The call history: the times of this scaler's own `UpdateShardCount` calls are kept in the stream's tag
//!    [`CALLS_TAG`] (space-separated unix seconds of the last 24 h). Tags live with the stream, survive
//!    cold starts and need no table; a lost tag only makes the scaler try a call that Kinesis refuses
//!    (`LimitExceededException`), which is answered as "keep".
//! 4. [`tally_domain::scaling::decide`] (pure) decides; a `Scale` decision becomes `UpdateShardCount`
//!    (`UNIFORM_SCALING`) and the call time is appended to the tag.
//!
//! Configuration: `TALLY_STREAM_NAME`, `TALLY_MIN_SHARDS`, `TALLY_MAX_SHARDS` ([`Config::from_lookup`]).

use anyhow::{bail, Context};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_kinesis::types::{ScalingType, StreamMode, StreamStatus};
use serde_json::{json, Value};
use tally_contract::env;
use tally_domain::scaling::{
    decide, Bounds, Decision, Input, KeepReason, LoadSample, Policy, CALL_WINDOW_SECS,
};

/// The stream tag holding the scaler's recent `UpdateShardCount` calls.
pub const CALLS_TAG: &str = "tally:scaler-calls";
/// Minutes of metrics read per run (the scale-down span is 30 minutes, plus slack).
pub const LOOKBACK_MINUTES: i64 = 35;
const PERIOD_SECS: i64 = 60;

/// Stores one metric's value of a period into its sample.
type SetField = fn(&mut LoadSample, f64);

/// What the function is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub stream: String,
    pub bounds: Bounds,
}

impl Config {
    /// Reads `TALLY_STREAM_NAME`, `TALLY_MIN_SHARDS` and `TALLY_MAX_SHARDS` through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Config> {
        let stream = lookup(env::STREAM_NAME)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .with_context(|| {
                format!(
                    "{} is not set: it names the events stream to scale",
                    env::STREAM_NAME
                )
            })?;
        let count = |name: &str| -> anyhow::Result<u32> {
            let value = lookup(name)
                .with_context(|| format!("{name} is not set: give a shard count such as 1"))?;
            value
                .trim()
                .parse()
                .with_context(|| format!("{name} is {value:?}: expected a whole number of shards"))
        };
        let bounds = Bounds::new(count(env::MIN_SHARDS)?, count(env::MAX_SHARDS)?)?;
        Ok(Config { stream, bounds })
    }
}

/// What started a run, for the logs.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// An alarm notification: the alarm's name and new state, when the message is an alarm.
    Alarm {
        alarm: Option<String>,
        state: Option<String>,
    },
    /// An EventBridge schedule (or any EventBridge event).
    Schedule { rule: Option<String> },
}

impl Trigger {
    /// Recognises an SNS notification or an EventBridge event; anything else is an error naming both shapes.
    pub fn parse(payload: &Value) -> anyhow::Result<Trigger> {
        if payload.get("Records").is_some() {
            let event: aws_lambda_events::sns::SnsEvent =
                serde_json::from_value(payload.clone())
                    .context("the payload has Records but is not an SNS notification")?;
            let record = event
                .records
                .first()
                .context("the SNS notification has no records")?;
            let alarm: Option<Value> = serde_json::from_str(&record.sns.message).ok();
            let field = |name: &str| {
                alarm
                    .as_ref()
                    .and_then(|a| a.get(name))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            return Ok(Trigger::Alarm {
                alarm: field("AlarmName"),
                state: field("NewStateValue"),
            });
        }
        if payload.get("detail-type").is_some() {
            let event: aws_lambda_events::cloudwatch_events::CloudWatchEvent =
                serde_json::from_value(payload.clone())
                    .context("the payload has detail-type but is not an EventBridge event")?;
            return Ok(Trigger::Schedule {
                rule: event.resources.first().cloned(),
            });
        }
        bail!("the scaler runs on an SNS alarm notification or an EventBridge scheduled event; this payload is neither")
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub open_shards: u32,
    pub decision: Decision,
    /// `UpdateShardCount` was called and accepted.
    pub called: bool,
    /// Why nothing was attempted or a wanted call did not happen (an on-demand stream; Kinesis refused it).
    pub skipped: Option<String>,
}

impl Outcome {
    pub fn to_json(&self) -> Value {
        json!({
            "open_shards": self.open_shards,
            "target_shards": self.decision.target(self.open_shards),
            "decision": self.decision.to_string(),
            "called": self.called,
            "skipped": self.skipped,
        })
    }
}

/// The scaler: its clients and configuration.
#[derive(Debug, Clone)]
pub struct Scaler {
    kinesis: aws_sdk_kinesis::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    config: Config,
    policy: Policy,
}

impl Scaler {
    pub fn new(
        kinesis: aws_sdk_kinesis::Client,
        cloudwatch: aws_sdk_cloudwatch::Client,
        config: Config,
    ) -> Scaler {
        Scaler {
            kinesis,
            cloudwatch,
            config,
            policy: Policy::default(),
        }
    }

    /// Handles one invocation: recognises the trigger, runs, answers the outcome as JSON.
    pub async fn handle(&self, payload: &Value, now: i64) -> anyhow::Result<Value> {
        let trigger = Trigger::parse(payload)?;
        let outcome = self.run_at(now).await?;
        tracing::info!(
            message = "scaler run",
            trigger = ?trigger,
            open_shards = outcome.open_shards,
            decision = %outcome.decision,
            called = outcome.called,
            skipped = outcome.skipped.as_deref().unwrap_or(""),
        );
        Ok(outcome.to_json())
    }

    /// One run at `now` (unix seconds): read, decide, act.
    pub async fn run_at(&self, now: i64) -> anyhow::Result<Outcome> {
        let stream = &self.config.stream;
        let summary = self
            .kinesis
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(aws_sdk_kinesis::Error::from)
            .with_context(|| format!("while describing stream {stream}"))?;
        let summary = summary
            .stream_description_summary()
            .context("DescribeStreamSummary answered no summary")?;
        let open = u32::try_from(summary.open_shard_count())
            .context("the stream reports a negative open shard count")?;
        if summary
            .stream_mode_details()
            .is_some_and(|m| m.stream_mode() == &StreamMode::OnDemand)
        {
            tracing::info!(message = "on-demand stream: Kinesis scales it, nothing to do", stream = %stream);
            let skipped = Some("the stream is on-demand: Kinesis scales it".to_owned());
            return Ok(Outcome {
                open_shards: open,
                decision: Decision::Keep(KeepReason::NoData),
                called: false,
                skipped,
            });
        }
        let updating = summary.stream_status() == &StreamStatus::Updating;
        let samples = self.samples(now).await?;
        let calls = self.calls().await?;
        let input = Input {
            now,
            open_shards: open,
            bounds: self.config.bounds,
            updating,
            samples: &samples,
            calls: &calls,
        };
        let decision = decide(&input, &self.policy).context("while deciding the shard count")?;
        let Decision::Scale { to, .. } = decision else {
            return Ok(Outcome {
                open_shards: open,
                decision,
                called: false,
                skipped: None,
            });
        };
        let target = i32::try_from(to).context("target shard count out of range")?;
        let result = self
            .kinesis
            .update_shard_count()
            .stream_name(stream)
            .target_shard_count(target)
            .scaling_type(ScalingType::UniformScaling)
            .send()
            .await;
        match result {
            Ok(_) => {}
            Err(error) => {
                let service = error.as_service_error();
                if service.is_some_and(|e| {
                    e.is_limit_exceeded_exception() || e.is_resource_in_use_exception()
                }) {
                    let reason = aws_sdk_kinesis::Error::from(error).to_string();
                    tracing::warn!(message = "UpdateShardCount refused", %reason);
                    return Ok(Outcome {
                        open_shards: open,
                        decision,
                        called: false,
                        skipped: Some(reason),
                    });
                }
                return Err(aws_sdk_kinesis::Error::from(error))
                    .with_context(|| format!("while calling UpdateShardCount({to}) on {stream}"));
            }
        }
        let mut kept: Vec<i64> = calls
            .into_iter()
            .filter(|&t| t > now - CALL_WINDOW_SECS)
            .collect();
        kept.push(now);
        let value = kept
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        // The call happened: a failure to record it is logged, not retried (a retry would call again).
        if let Err(error) = self
            .kinesis
            .add_tags_to_stream()
            .stream_name(stream)
            .tags(CALLS_TAG, value)
            .send()
            .await
        {
            tracing::error!(message = "UpdateShardCount not recorded in the stream tag", error = %aws_sdk_kinesis::Error::from(error));
        }
        Ok(Outcome {
            open_shards: open,
            decision,
            called: true,
            skipped: None,
        })
    }

    /// One sample per minute of the last [`LOOKBACK_MINUTES`] complete minutes; missing minutes are zeros.
    async fn samples(&self, now: i64) -> anyhow::Result<Vec<LoadSample>> {
        let end = now - now.rem_euclid(PERIOD_SECS);
        let start = end - LOOKBACK_MINUTES * PERIOD_SECS;
        let mut samples: Vec<LoadSample> = (0..LOOKBACK_MINUTES)
            .map(|i| LoadSample {
                at: start + i * PERIOD_SECS,
                ..LoadSample::default()
            })
            .collect();
        let metrics: [(&str, Statistic, SetField); 4] = [
            ("IncomingBytes", Statistic::Sum, |s, v| {
                s.incoming_bytes_per_sec = v / PERIOD_SECS as f64
            }),
            ("IncomingRecords", Statistic::Sum, |s, v| {
                s.incoming_records_per_sec = v / PERIOD_SECS as f64
            }),
            (
                "WriteProvisionedThroughputExceeded",
                Statistic::Sum,
                |s, v| s.throttled_records_per_sec = v / PERIOD_SECS as f64,
            ),
            (
                "GetRecords.IteratorAgeMilliseconds",
                Statistic::Maximum,
                |s, v| s.iterator_age_ms = v,
            ),
        ];
        for (name, statistic, set) in metrics {
            let output = self
                .cloudwatch
                .get_metric_statistics()
                .namespace("AWS/Kinesis")
                .metric_name(name)
                .dimensions(
                    Dimension::builder()
                        .name("StreamName")
                        .value(&self.config.stream)
                        .build(),
                )
                .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(start))
                .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(end))
                .period(PERIOD_SECS as i32)
                .statistics(statistic.clone())
                .send()
                .await
                .map_err(aws_sdk_cloudwatch::Error::from)
                .with_context(|| format!("while reading {name} of {}", self.config.stream))?;
            for point in output.datapoints() {
                let (Some(at), Some(value)) = (point.timestamp(), value_of(point, &statistic))
                else {
                    continue;
                };
                let index = (at.secs() - start).div_euclid(PERIOD_SECS);
                if let Some(sample) = usize::try_from(index).ok().and_then(|i| samples.get_mut(i)) {
                    // A value CloudWatch should never give (negative, NaN) is dropped, not trusted.
                    if value.is_finite() && value >= 0.0 {
                        set(sample, value);
                    }
                }
            }
        }
        Ok(samples)
    }

    /// The recorded call times ([`parse_calls`]).
    async fn calls(&self) -> anyhow::Result<Vec<i64>> {
        let output = self
            .kinesis
            .list_tags_for_stream()
            .stream_name(&self.config.stream)
            .send()
            .await
            .map_err(aws_sdk_kinesis::Error::from)
            .with_context(|| format!("while reading the tags of {}", self.config.stream))?;
        let Some(tag) = output.tags().iter().find(|t| t.key() == CALLS_TAG) else {
            return Ok(Vec::new());
        };
        Ok(parse_calls(tag.value().unwrap_or("")))
    }
}

/// Parses the [`CALLS_TAG`] value. Unreadable entries are skipped and logged: a forgotten call can only make
/// the scaler try a call that Kinesis refuses, and refusals are handled.
pub fn parse_calls(value: &str) -> Vec<i64> {
    let mut calls = Vec::new();
    for part in value.split_whitespace() {
        match part.parse::<i64>() {
            Ok(t) if t > 0 => calls.push(t),
            _ => tracing::warn!(message = "unreadable entry in the scaler tag", entry = part),
        }
    }
    calls
}

fn value_of(point: &aws_sdk_cloudwatch::types::Datapoint, statistic: &Statistic) -> Option<f64> {
    match statistic {
        Statistic::Maximum => point.maximum(),
        _ => point.sum(),
    }
}
