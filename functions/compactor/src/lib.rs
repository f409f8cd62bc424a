//! The compactor: a scheduled function that folds closed minutes of the counter store into DynamoDB.
//!
//! [`Compactor::process`] reads the watermark, asks `tally_domain::compact::plan_run` which minutes are closed
//! (per lane, after the grace periods), reads each of them from Valkey — both lanes, summed over every shard
//! ([`CounterStore::compact_minute`]) — writes one item per (campaign, minute) ([`CompactedTable::put_item`]:
//! the full state, so a retry or a second compactor writes the same item), and only then moves the watermark
//! forward ([`CompactedTable::advance_watermark`]). A crash anywhere leaves the watermark where it was and the
//! next run does the same minutes again. [`handler`] is the Lambda edge (an EventBridge schedule event; the
//! clock, not the event's time, decides what is closed).

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::LambdaEvent;
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_domain::compact::{plan_run, CompactPolicy, LaneProgress, PolicyError, Watermark};

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
    /// Items written.
    pub items: usize,
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
        let to = self.table.advance_watermark(from, plan.watermark).await?;
        Ok(Outcome {
            from,
            to,
            minutes: plan.jobs.len(),
            settled_final: plan.jobs.iter().filter(|j| j.settled_final).count(),
            items,
        })
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
        realtime_watermark = ?outcome.to.realtime,
        settled_watermark = ?outcome.to.settled,
    );
    Ok(serde_json::json!({
        "minutes": outcome.minutes,
        "settled_final": outcome.settled_final,
        "items": outcome.items,
        "realtime_watermark": outcome.to.realtime,
        "settled_watermark": outcome.to.settled,
    }))
}
