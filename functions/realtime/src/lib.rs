//! The critical lane: one invocation per Kinesis batch (enhanced fan-out, batching window 0).
//!
//! [`Realtime::process`] decodes the batch up to its first undecodable record ([`tally_aws::batch`]), applies
//! the decodable records to the counter store exactly once by event id ([`CounterStore::process`] on the
//! realtime lane: claims, fence, one atomic step in the shard's hash slot; `docs/counter-store.md`; the
//! connection keeps its IAM token fresh, [`StoreSource`]), and
//! reports the undecodable record in `batchItemFailures`. Every event counts in this lane (the settled lane
//! filters invalid traffic later); an id already claimed by another record is a duplicate and does not count.
//! [`handler`] is the Lambda edge: it prints the embedded-metric line and turns errors into a failed
//! invocation, which Lambda retries (bisecting) — safe, because claims are idempotent per record and the step is
//! fenced per shard.

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use tally_aws::batch;
use tally_aws::cache_auth::StoreSource;
use tally_aws::emf::BatchMetrics;
use tally_domain::exactly_once::ApplyStats;
use tally_domain::store_keys::StoreLane;

/// The function's state, built once per cold start.
#[derive(Debug)]
pub struct Realtime {
    store: StoreSource,
    window: batch::MetricsWindow,
}

/// What one invocation did.
#[derive(Debug)]
pub struct Outcome {
    /// The partial-batch response for Lambda.
    pub response: KinesisEventResponse,
    /// What happened to every event of the batch (counted, duplicates, already applied, …).
    pub stats: ApplyStats,
    /// Atomic-step calls (0 when the fence said the batch was applied already; more than 1 after conflicts).
    pub script_calls: u32,
    /// This batch's embedded metrics (written with the instance's window, `tally_domain::emf`).
    pub metrics: BatchMetrics,
}

impl Realtime {
    pub fn new(store: StoreSource) -> Realtime {
        Realtime {
            store,
            window: batch::MetricsWindow::new("realtime"),
        }
    }

    /// Processes one batch (see the crate docs). `now_ms` is read once the counters are applied.
    pub async fn process(
        &self,
        event: &KinesisEvent,
        now_ms: impl Fn() -> i64,
    ) -> Result<Outcome, tally_aws::Error> {
        let decoded = batch::decode(event)?;
        let processed = self
            .store
            .get()
            .await?
            .process(StoreLane::Realtime, &decoded.store, |_| true)
            .await?;
        let now = now_ms();
        let stats = processed.stats;
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
        };
        tracing::debug!(
            message = "batch applied",
            records = decoded.records,
            events = stats.events,
            counted = stats.counted,
            duplicates = stats.duplicates,
            repeats = stats.repeats,
            already_applied = stats.already_applied,
            retried = stats.retried,
            unreadable_claims = stats.unreadable_claims,
            script_calls = processed.script_calls,
            failed_at = decoded.failure.as_ref().map(|(seq, _)| seq.as_str()),
        );
        Ok(Outcome {
            response: decoded.response(),
            stats,
            script_calls: processed.script_calls,
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
    batch::respond(outcome.map(|o| (o.response, o.metrics)), &state.window)
}
