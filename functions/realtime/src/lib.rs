//! The critical lane: one invocation per Kinesis batch (enhanced fan-out, batching window 0).
//!
//! [`Realtime::process`] decodes the batch up to its first undecodable record ([`tally_aws::batch`]),
//! aggregates it in memory (a `Rollup`: one row write per counter row per batch, not per event), applies it to
//! the realtime lane exactly once ([`MetricsTable::apply_batch`] under the fence of the decodable records), records the
//! campaigns in the index, and reports the undecodable record in `batchItemFailures`. [`handler`] is the
//! Lambda edge: it prints the embedded-metric line and turns errors into a failed invocation, which Lambda
//! retries (bisecting) — safe, because applying is idempotent per fence.

use std::collections::BTreeMap;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use tally_aws::batch;
use tally_aws::emf::BatchMetrics;
use tally_aws::metrics::{ApplyReport, Lane, MetricsTable};
use tally_domain::event::Event;

/// The function's state, built once per cold start.
#[derive(Clone, Debug)]
pub struct Realtime {
    table: MetricsTable,
}

/// What one invocation did.
#[derive(Debug)]
pub struct Outcome {
    /// The partial-batch response for Lambda.
    pub response: KinesisEventResponse,
    /// Rows applied and rows skipped as already applied.
    pub report: ApplyReport,
    /// The embedded-metric-format line for this batch.
    pub metrics: String,
}

impl Realtime {
    pub fn new(table: MetricsTable) -> Realtime {
        Realtime { table }
    }

    /// Processes one batch (see the crate docs). `now_ms` is read once the counters are applied.
    pub async fn process(
        &self,
        event: &KinesisEvent,
        now_ms: impl Fn() -> i64,
    ) -> Result<Outcome, tally_aws::Error> {
        let decoded = batch::decode(event)?;
        let report = self
            .table
            .apply_batch(Lane::Realtime, &decoded.batch)
            .await?;
        if !decoded.batch.is_empty() {
            self.table
                .touch_campaigns(&campaigns_seen(decoded.batch.events()))
                .await?;
        }
        let now = now_ms();
        let metrics = BatchMetrics {
            function: "realtime",
            now_ms: now,
            records: decoded.records,
            events: decoded.batch.len(),
            failed_records: decoded.records - decoded.applied_records,
            latencies_ms: decoded
                .batch
                .events()
                .map(|e| now.saturating_sub(e.received_ms))
                .collect(),
        }
        .to_line();
        tracing::info!(
            message = "batch applied",
            records = decoded.records,
            events = decoded.batch.len(),
            rows_applied = report.applied,
            rows_skipped = report.skipped,
            failed_at = decoded.failure.as_ref().map(|(seq, _)| seq.as_str()),
        );
        Ok(Outcome {
            response: decoded.response(),
            report,
            metrics,
        })
    }
}

/// The Lambda handler: [`Realtime::process`], the metric line on stdout, errors logged and returned so that
/// Lambda retries the batch.
pub async fn handler(
    state: &Realtime,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let outcome = state.process(&event.payload, batch::unix_ms).await;
    batch::respond(outcome.map(|o| (o.response, o.metrics)))
}

/// Per campaign: the first and last receive time among `events`.
pub fn campaigns_seen<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> BTreeMap<String, (i64, i64)> {
    let mut seen: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for e in events {
        seen.entry(e.campaign_id.clone())
            .and_modify(|(first, last)| {
                *first = (*first).min(e.received_ms);
                *last = (*last).max(e.received_ms);
            })
            .or_insert((e.received_ms, e.received_ms));
    }
    seen
}
