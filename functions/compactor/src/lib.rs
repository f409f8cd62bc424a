//! The compactor: a scheduled function that folds closed minutes of the counter store into DynamoDB.
//!
//! [`Compactor::process`] reads the watermark, asks `tally_domain::compact::plan_run` which minutes are closed
//! (per lane, after the grace periods), reads each of them from Valkey — both lanes, summed over every shard
//! ([`CounterStore::compact_minute`]) — writes one item per (campaign, minute) ([`CompactedTable::put_item`]:
//! the full state, so a retry or a second compactor writes the same item), and only then moves the watermark
//! forward ([`CompactedTable::advance_watermark`]). Before it moves, the hours and days whose last minute the
//! run made settled-final get their roll-up items (`ch#`/`cd#`, [`tally_domain::compact::roll_up`] of the
//! finer items, unique-user sketches merged). A crash anywhere leaves the watermark where it was and the
//! next run does the same minutes again. [`handler`] is the Lambda edge (an EventBridge schedule event; the
//! clock, not the event's time, decides what is closed).

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::LambdaEvent;
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_domain::compact::{
    closing_buckets, plan_run, roll_up, CompactPolicy, LaneProgress, PolicyError, RunPlan, Span,
    Watermark,
};

/// Items written at once.
const PUTS_IN_FLIGHT: usize = 16;

/// What can fail in the compactor.
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error(transparent)]
    Aws(#[from] tally_aws::Error),
    #[error("invalid compaction policy: {0}")]
    Policy(#[from] PolicyError),
}

/// The function's state, built once per cold start.
#[derive(Debug)]
pub struct Compactor {
    store: StoreSource,
    table: CompactedTable,
    index: tally_aws::metrics::MetricsTable,
    policy: CompactPolicy,
}

/// What one run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The watermark read before the run.
    pub from: Watermark,
    /// The watermark stored after it.
    pub to: Watermark,
    /// Minutes compacted (with final settled counts).
    pub minutes: usize,
    pub settled_final: usize,
    /// Minute items written.
    pub items: usize,
    /// Hour and day items written (the roll-ups of the hours and days the settled lane closed in this run).
    pub rollups: usize,
}

impl Compactor {
    pub fn new(
        store: StoreSource,
        table: CompactedTable,
        policy: CompactPolicy,
    ) -> Result<Compactor, CompactorError> {
        policy.check()?;
        Ok(Compactor {
            store,
            index: table.metrics(),
            table,
            policy,
        })
    }

    /// One run at `now_ms` (see the crate docs).
    pub async fn process(&self, now_ms: i64) -> Result<Outcome, CompactorError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};

        let from = self.table.watermark().await?;
        let plan = plan_run(now_ms, &self.policy, LaneProgress::default(), from)?;
        let mut items = 0;
        let store = self.store.get().await?;
        let mut seen: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
        for job in &plan.jobs {
            let minute_items = store.compact_minute(*job).await?;
            items += minute_items.len();
            stream::iter(minute_items.iter().map(|item| self.table.put_item(item)))
                .buffer_unordered(PUTS_IN_FLIGHT)
                .try_collect::<Vec<()>>()
                .await?;
            for item in &minute_items {
                let (first, last) = (item.minute * 60_000, item.minute * 60_000 + 59_999);
                let span = seen
                    .entry(item.campaign_id.clone())
                    .or_insert((first, last));
                span.0 = span.0.min(first);
                span.1 = span.1.max(last);
            }
        }
        // The campaign index (the query API's list): every campaign of a compacted minute, before the
        // watermark moves past it (readers list the open minutes' campaigns from the cache).
        self.index.touch_campaigns(&seen).await?;
        let rollups = self.roll_up_closed(from, &plan).await?;
        let to = self.table.advance_watermark(from, plan.watermark).await?;
        Ok(Outcome {
            from,
            to,
            minutes: plan.jobs.len(),
            settled_final: plan.jobs.iter().filter(|j| j.settled_final).count(),
            items,
            rollups,
        })
    }

    /// Writes the hour and day items of the buckets whose last minute the run makes settled-final
    /// (`tally_domain::compact::closing_buckets`), each summed from the finer items already written (minute
    /// items for an hour, hour items for a day) of every campaign the index has seen in the bucket. Before the
    /// watermark moves: a crash leaves the watermark where it was and the next run writes them again (the same
    /// items). Returns the items written.
    async fn roll_up_closed(
        &self,
        from: Watermark,
        plan: &RunPlan,
    ) -> Result<usize, CompactorError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};

        let (Some(now), Some(done)) = (
            plan.watermark.settled,
            from.settled.or_else(|| {
                plan.jobs
                    .iter()
                    .find(|j| j.settled_final)
                    .map(|j| j.minute - 1)
            }),
        ) else {
            return Ok(0);
        };
        let buckets = closing_buckets(done, now);
        if buckets.is_empty() {
            return Ok(0);
        }
        let campaigns = self.index.campaigns().await?;
        let mut written = 0;
        for (span, bucket) in buckets {
            let finer = if span == Span::Day {
                Span::Hour
            } else {
                Span::Minute
            };
            let (start_ms, end_ms) = (bucket * 60_000, (bucket + span.minutes()) * 60_000 - 1);
            let active: Vec<&str> = campaigns
                .iter()
                .filter(|c| c.first_seen_ms <= end_ms && c.last_seen_ms >= start_ms)
                .map(|c| c.campaign_id.as_str())
                .collect();
            let rolled: Vec<usize> = stream::iter(active.into_iter().map(|campaign| async move {
                let items = self
                    .table
                    .span_items(finer, campaign, bucket, bucket + span.minutes() - 1)
                    .await?;
                match roll_up(span, campaign, bucket, &items) {
                    Some(item) => {
                        self.table.put_span_item(span, &item).await?;
                        Ok::<_, tally_aws::Error>(1)
                    }
                    None => Ok(0),
                }
            }))
            .buffer_unordered(PUTS_IN_FLIGHT)
            .try_collect()
            .await?;
            written += rolled.iter().sum::<usize>();
        }
        Ok(written)
    }
}

/// The Lambda edge: one run per schedule event. A failed run fails the invocation (the next scheduled run
/// repeats the same minutes: nothing is lost, nothing counted twice).
pub async fn handler(
    state: &Compactor,
    _event: LambdaEvent<CloudWatchEvent>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let outcome = state
        .process(tally_aws::batch::unix_ms())
        .await
        .inspect_err(|error| {
            tracing::error!(message = "compaction failed", %error);
        })?;
    tracing::info!(
        message = "compacted",
        minutes = outcome.minutes,
        settled_final = outcome.settled_final,
        items = outcome.items,
        rollups = outcome.rollups,
        realtime_watermark = ?outcome.to.realtime,
        settled_watermark = ?outcome.to.settled,
    );
    Ok(serde_json::json!({
        "minutes": outcome.minutes,
        "settled_final": outcome.settled_final,
        "items": outcome.items,
        "rollups": outcome.rollups,
        "realtime_watermark": outcome.to.realtime,
        "settled_watermark": outcome.to.settled,
    }))
}
