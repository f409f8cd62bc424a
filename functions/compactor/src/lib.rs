//! The compactor: a scheduled function that folds closed minutes of the counter store into DynamoDB.
//!
//! [`Compactor::process`] reads the watermark, asks `tally_domain::compact::plan_run` which minutes are closed
//! (per lane, after the grace periods), reads each of them from Valkey — both lanes, summed over every shard
//! ([`CounterStore::compact_minute`]) — writes one item per (campaign, minute) ([`MetricsWriter::put_item`]:
//! the full state, so a retry or a second compactor writes the same item), and only then moves the watermark
//! forward ([`MetricsWriter::advance_watermark`]). Before it moves, the hours and days whose last minute the
//! run made settled-final get their roll-up items (`ch#`/`cd#`, [`tally_domain::compact::roll_up`] of the
//! finer items, unique-user sketches merged). A crash anywhere leaves the watermark where it was and the
//! next run does the same minutes again. [`handler`] is the Lambda edge (an EventBridge schedule event; the
//! clock, not the event's time, decides what is closed).
//!
//! Next to the items, each run keeps what the query API's overview and sorted campaign table read instead of
//! every campaign ([`tally_domain::totals`]): an all-campaigns item per minute (rolled up into hours and days
//! like a campaign's) and a row per (day, campaign) of the day's realtime counts.
//!
//! With a [`ProgressReader`] ([`Compactor::with_progress`], always in the deployed function) a run closes a
//! minute only when every shard of the lane has applied what was received before its end, read from the
//! shards' fence marks and the stream after them, not only after the grace period
//! ([`tally_domain::compact::lane_progress`]; docs/counter-store.md, "Lane progress").
//!
//! With a [`Repair`] ([`Compactor::with_repair`], always in the deployed function) every run first checks the
//! cache's epoch; after a loss, the minutes up to the repair bound are recomputed from the deferred lane's
//! archive instead of Valkey ([`repair`]), and a run that read Valkey confirms the epoch before it writes.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::LambdaEvent;
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_aws::lane_progress::ProgressReader;
use tally_aws::metrics_write::MetricsWriter;
use tally_aws::store::CounterStore;
use tally_domain::compact::{
    closing_buckets, lane_progress, plan_run, roll_up, CompactPolicy, LaneProgress, PolicyError,
    ShardProgress, Span, Watermark, FOLDED_TTL_SECS, RECEIVE_TO_ARRIVAL_MAX_MS,
};
use tally_domain::compact_repair::{archive_span, plan_repair, RepairPlan};
use tally_domain::store_keys::StoreLane;
use tally_domain::totals::{aggregate_minutes, day_increments, ALL_CAMPAIGNS};

pub mod repair;
pub use repair::Repair;

/// Items written at once.
const PUTS_IN_FLIGHT: usize = 16;

/// A lane's progress from what [`ProgressReader`] read of its shards.
fn progress_of(shards: &[(String, ShardProgress)]) -> Option<i64> {
    let readings: Vec<ShardProgress> = shards.iter().map(|(_, p)| *p).collect();
    lane_progress(&readings, RECEIVE_TO_ARRIVAL_MAX_MS)
}

/// What can fail in the compactor.
#[derive(Debug, thiserror::Error)]
pub enum CompactorError {
    #[error(transparent)]
    Aws(#[from] tally_aws::Error),
    #[error("invalid compaction policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("the cache lost its data during this run (its epoch is {found:?}, expected {expected:?}): nothing was written; the next run repairs the minutes from the archive")]
    CacheLost {
        expected: String,
        found: Option<String>,
    },
    #[error("another compactor recorded the cache's epoch in table {table} at the same time: this run stops, the next one goes on from what it recorded")]
    EpochRace { table: String },
    #[error("the epoch row (pk compactor, sk epoch) of table {table} is corrupt: {rule}")]
    CorruptEpochRow { table: String, rule: String },
    #[error("{op} on table {table} failed: {message}")]
    Table {
        table: String,
        op: &'static str,
        message: String,
    },
    #[error("reading the archive s3://{bucket}/{key} failed: {message}")]
    Archive {
        bucket: String,
        key: String,
        message: String,
    },
}

/// The function's state, built once per cold start.
#[derive(Debug)]
pub struct Compactor {
    store: StoreSource,
    table: CompactedTable,
    index: tally_aws::metrics::MetricsTable,
    writer: MetricsWriter,
    policy: CompactPolicy,
    repair: Option<Repair>,
    progress: Option<ProgressReader>,
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
    /// Of `minutes`, those recomputed from the archive (a repair after the cache lost its data).
    pub repaired: usize,
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
            writer: MetricsWriter::of(&table),
            table,
            policy,
            repair: None,
            progress: None,
        })
    }

    /// Campaign index rows expire `days` after their campaign's last event (the stack option
    /// `campaign_index_days`; the default is [`tally_domain::compact::DEFAULT_CAMPAIGN_INDEX_DAYS`]).
    pub fn with_campaign_index_days(mut self, days: u32) -> Compactor {
        self.writer = self.writer.with_campaign_index_days(days);
        self
    }

    /// Checks the cache's epoch on every run and repairs from the archive after a loss.
    pub fn with_repair(mut self, repair: Repair) -> Compactor {
        self.repair = Some(repair);
        self
    }

    /// Reads how far the lanes have got before every run: a lane that lags past its grace period holds its
    /// minutes open until it has applied them.
    pub fn with_progress(mut self, progress: ProgressReader) -> Compactor {
        self.progress = Some(progress);
        self
    }

    /// The lanes' progress at `now_ms` (the default, unknown, without a reader).
    async fn progress(
        &self,
        store: &CounterStore,
        now_ms: i64,
    ) -> Result<LaneProgress, CompactorError> {
        let Some(reader) = &self.progress else {
            return Ok(LaneProgress::default());
        };
        let mut lanes = [None, None];
        for (i, lane) in StoreLane::ALL.into_iter().enumerate() {
            let shards = reader.lane(store, lane, now_ms).await?;
            lanes[i] = progress_of(&shards);
            tracing::debug!(
                message = "lane progress",
                lane = lane.as_str(),
                progress_ms = lanes[i],
                shards = ?shards
            );
        }
        Ok(LaneProgress {
            realtime_ms: lanes[0],
            settled_ms: lanes[1],
        })
    }

    /// One run at `now_ms` (see the crate docs).
    pub async fn process(&self, now_ms: i64) -> Result<Outcome, CompactorError> {
        let from = self.table.watermark().await?;
        let store = self.store.get().await?;
        let checked = match &self.repair {
            Some(repair) => Some(repair.check(&store, now_ms).await?),
            None => None,
        };
        let progress = self.progress(&store, now_ms).await?;
        if let (Some(repair), Some(checked)) = (&self.repair, &checked) {
            let pending = plan_repair(
                now_ms,
                &self.policy,
                progress,
                from,
                checked.state.repair_to,
            )?;
            if let Some(plan) = pending {
                let replan = |settled_ms| {
                    let progress = LaneProgress {
                        settled_ms,
                        ..progress
                    };
                    plan_repair(
                        now_ms,
                        &self.policy,
                        progress,
                        from,
                        checked.state.repair_to,
                    )
                };
                return self
                    .repair_run(repair, plan, from, now_ms, progress.settled_ms, replan)
                    .await;
            }
        }
        let plan = plan_run(now_ms, &self.policy, progress, from)?;
        let (mut items, mut folded) = (Vec::new(), Vec::new());
        for job in &plan.jobs {
            let minute = store.compact_minute(*job).await?;
            items.extend(minute.items);
            if job.settled_final {
                folded.extend(minute.keys);
            }
        }
        // What was read is the cache's data only if the cache still holds the epoch of the check.
        if let (Some(repair), Some(checked)) = (&self.repair, &checked) {
            repair.confirm(&store, &checked.epoch).await?;
        }
        self.write(&items).await?;
        self.write_totals(&items, from.realtime).await?;
        // The settled-final minutes are in DynamoDB for good: their keys need not wait for the TTL.
        store.let_go(folded, FOLDED_TTL_SECS).await?;
        let first_final = plan.jobs.iter().find(|j| j.settled_final).map(|j| j.minute);
        let rollups = self
            .roll_up_closed(from, plan.watermark, first_final)
            .await?;
        let to = self.writer.advance_watermark(from, plan.watermark).await?;
        Ok(Outcome {
            from,
            to,
            minutes: plan.jobs.len(),
            settled_final: plan.jobs.iter().filter(|j| j.settled_final).count(),
            items: items.len(),
            repaired: 0,
            rollups,
        })
    }

    /// A run that recomputes minutes from the archive (or waits for the settled lane to close the next one).
    ///
    /// The cache's marks went with its data, so with a [`ProgressReader`] the run asks the stream how far the
    /// deferred lane has *archived* every shard (after the last archived record the read found, or since the
    /// read span began for a shard without one) and plans again with that as the settled lane's progress
    /// (`replan`, `plan_repair` given it; `settled_ms` is the progress the plan had): only the minutes that
    /// archive is complete for are repaired (docs/counter-store.md, "Lane progress"), the others wait for a
    /// later run.
    async fn repair_run(
        &self,
        repair: &Repair,
        plan: RepairPlan,
        from: Watermark,
        now_ms: i64,
        settled_ms: Option<i64>,
        replan: impl Fn(Option<i64>) -> Result<Option<RepairPlan>, PolicyError>,
    ) -> Result<Outcome, CompactorError> {
        let idle = Outcome {
            from,
            to: from,
            minutes: 0,
            settled_final: 0,
            items: 0,
            repaired: 0,
            rollups: 0,
        };
        let Some(minutes) = plan.minutes else {
            return Ok(idle);
        };
        let (mut items, archived) = repair.items(minutes.clone()).await?;
        let (mut watermark, mut last) = (plan.watermark, *minutes.end());
        if let Some(reader) = &self.progress {
            let span = archive_span(&minutes, repair.window_secs());
            let since = span.start().saturating_add(RECEIVE_TO_ARRIVAL_MAX_MS);
            let shards = reader.archive(&archived, since, now_ms).await;
            // The earlier of the lane's progress and the archive's (either may be unknown).
            let archived_ms = [settled_ms, progress_of(&shards)]
                .into_iter()
                .flatten()
                .min();
            // More progress known can only end the plan earlier: its minutes are a prefix of these.
            let Some(plan) = replan(archived_ms)? else {
                return Ok(idle);
            };
            let Some(complete) = plan.minutes else {
                tracing::info!(
                    message = "the archive is not complete for the first repaired minute yet: the repair waits",
                    first = minutes.start(),
                    shards = ?shards
                );
                return Ok(idle);
            };
            if complete.end() < minutes.end() {
                tracing::info!(
                    message = "the archive is not complete for every repaired minute yet: the later ones wait",
                    first = minutes.start(),
                    last = minutes.end(),
                    archived_through = complete.end(),
                    shards = ?shards
                );
            }
            (watermark, last) = (plan.watermark, *complete.end());
            items.retain(|item| complete.contains(&item.minute));
        }
        self.write(&items).await?;
        self.write_totals(&items, from.realtime).await?;
        let rollups = self
            .roll_up_closed(from, watermark, Some(*minutes.start()))
            .await?;
        let to = self.writer.advance_watermark(from, watermark).await?;
        let n = usize::try_from(last - minutes.start() + 1).unwrap_or(0);
        Ok(Outcome {
            from,
            to,
            minutes: n,
            settled_final: n,
            items: items.len(),
            repaired: n,
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
        to: Watermark,
        first_final: Option<i64>,
    ) -> Result<usize, CompactorError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};

        let (Some(now), Some(done)) = (
            to.settled,
            from.settled.or_else(|| first_final.map(|m| m - 1)),
        ) else {
            return Ok(0);
        };
        let buckets = closing_buckets(done, now);
        if buckets.is_empty() {
            return Ok(0);
        }
        // The campaigns whose index row is live as the bucket closes (an expired one has no event in it).
        let campaigns = self.index.campaigns_at((now + 1) * 60_000).await?;
        let mut written = 0;
        for (span, bucket) in buckets {
            let finer = if span == Span::Day {
                Span::Hour
            } else {
                Span::Minute
            };
            let (start_ms, end_ms) = (bucket * 60_000, (bucket + span.minutes()) * 60_000 - 1);
            // Every campaign seen in the bucket, and the all-campaigns pseudo-campaign.
            let active: Vec<&str> = campaigns
                .iter()
                .filter(|c| c.first_seen_ms <= end_ms && c.last_seen_ms >= start_ms)
                .map(|c| c.campaign_id.as_str())
                .chain([ALL_CAMPAIGNS])
                .collect();
            let rolled: Vec<usize> = stream::iter(active.into_iter().map(|campaign| async move {
                let items = self
                    .table
                    .span_items(finer, campaign, bucket, bucket + span.minutes() - 1)
                    .await?;
                match roll_up(span, campaign, bucket, &items) {
                    Some(item) => {
                        self.writer.put_span_item(span, &item).await?;
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

    /// Writes what the overview and the sorted campaign table read instead of every campaign
    /// ([`tally_domain::totals`]): the all-campaigns item of each minute of `items` (a put of the full state)
    /// and the campaigns' day rows (the realtime-new minutes, after `realtime_before`). Before the watermark
    /// moves, like the items: a crash repeats them, and neither counts twice.
    async fn write_totals(
        &self,
        items: &[tally_domain::compact::CompactedItem],
        realtime_before: Option<i64>,
    ) -> Result<(), CompactorError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let all = aggregate_minutes(items);
        stream::iter(all.iter().map(|item| self.writer.put_item(item)))
            .buffer_unordered(PUTS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        self.writer
            .add_day_totals(&day_increments(items, realtime_before))
            .await?;
        Ok(())
    }

    /// Writes the items, then lists their campaigns in the campaign index (the query API's list) before the
    /// watermark moves past them (readers list the open minutes' campaigns from the cache).
    async fn write(
        &self,
        items: &[tally_domain::compact::CompactedItem],
    ) -> Result<(), CompactorError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        stream::iter(items.iter().map(|item| self.writer.put_item(item)))
            .buffer_unordered(PUTS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        self.writer.touch_campaigns(&repair::spans(items)).await?;
        Ok(())
    }
}

/// Environment variables that shorten the grace periods (the local cloud's tests: a minute closes seconds
/// after it ends instead of minutes). Unset: [`CompactPolicy::default`].
pub mod env {
    /// Seconds after its end a minute's realtime counts are final (default 120).
    pub const REALTIME_GRACE_SECS: &str = tally_contract::env::COMPACT_REALTIME_GRACE_SECS;
    /// Seconds after its end a minute's settled counts are final (default 600; at least the realtime grace).
    pub const SETTLED_GRACE_SECS: &str = tally_contract::env::COMPACT_SETTLED_GRACE_SECS;
    /// Days a campaign stays in the campaign index after its last event (default 35; 1..=3650).
    pub const CAMPAIGN_INDEX_DAYS: &str = tally_contract::env::CAMPAIGN_INDEX_DAYS;
}

/// The campaign index window the environment (read through `get`) asks for: [`env::CAMPAIGN_INDEX_DAYS`], or
/// [`tally_domain::compact::DEFAULT_CAMPAIGN_INDEX_DAYS`] when unset. An error names the variable, the value
/// and the rule.
pub fn campaign_index_days_from(get: impl Fn(&str) -> Option<String>) -> Result<u32, String> {
    use tally_domain::compact::{CAMPAIGN_INDEX_DAYS, DEFAULT_CAMPAIGN_INDEX_DAYS};
    let Some(value) = get(env::CAMPAIGN_INDEX_DAYS) else {
        return Ok(DEFAULT_CAMPAIGN_INDEX_DAYS);
    };
    value
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|d| CAMPAIGN_INDEX_DAYS.contains(d))
        .ok_or_else(|| {
            format!(
                "{}={:?} is not a whole number of days from {} to {}; unset it for the default ({DEFAULT_CAMPAIGN_INDEX_DAYS})",
                env::CAMPAIGN_INDEX_DAYS,
                value.chars().take(64).collect::<String>(),
                CAMPAIGN_INDEX_DAYS.start(),
                CAMPAIGN_INDEX_DAYS.end()
            )
        })
}

/// The compaction policy the environment (read through `get`) asks for: the default with the grace periods
/// of [`env`] when set. An error names the variable, the value and the rule.
pub fn policy_from(get: impl Fn(&str) -> Option<String>) -> Result<CompactPolicy, String> {
    let mut policy = CompactPolicy::default();
    for (name, slot) in [
        (env::REALTIME_GRACE_SECS, &mut policy.realtime_grace_ms),
        (env::SETTLED_GRACE_SECS, &mut policy.settled_grace_ms),
    ] {
        let Some(value) = get(name) else { continue };
        let secs = value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|s| (0..=86_400).contains(s))
            .ok_or_else(|| {
                format!(
                    "{name}={:?} is not a whole number of seconds from 0 to 86400; unset it for the default",
                    value.chars().take(64).collect::<String>()
                )
            })?;
        *slot = secs * 1_000;
    }
    policy.check().map_err(|e| {
        format!(
            "{} / {}: {e}",
            env::REALTIME_GRACE_SECS,
            env::SETTLED_GRACE_SECS
        )
    })?;
    Ok(policy)
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
        repaired = outcome.repaired,
        rollups = outcome.rollups,
        realtime_watermark = ?outcome.to.realtime,
        settled_watermark = ?outcome.to.settled,
    );
    Ok(serde_json::json!({
        "minutes": outcome.minutes,
        "settled_final": outcome.settled_final,
        "items": outcome.items,
        "repaired": outcome.repaired,
        "rollups": outcome.rollups,
        "realtime_watermark": outcome.to.realtime,
        "settled_watermark": outcome.to.settled,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_campaign_index_window_comes_from_the_environment() {
        let with = |value: Option<&str>| {
            campaign_index_days_from(move |name| {
                assert_eq!(name, env::CAMPAIGN_INDEX_DAYS);
                value.map(str::to_owned)
            })
        };
        assert_eq!(with(None), Ok(35));
        assert_eq!(with(Some(" 90 ")), Ok(90));
        for bad in ["0", "3651", "-1", "a week"] {
            let error = with(Some(bad)).expect_err(bad);
            assert!(
                error.starts_with(&format!("TALLY_CAMPAIGN_INDEX_DAYS=\"{bad}\" is not a whole number of days from 1 to 3650")),
                "{error}"
            );
        }
    }

    #[test]
    fn grace_periods_come_from_the_environment_or_are_refused() {
        let of = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            policy_from(move |name| {
                pairs
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            })
        };
        assert_eq!(of(&[]), Ok(CompactPolicy::default()));
        let p = of(&[
            (env::REALTIME_GRACE_SECS, "2"),
            (env::SETTLED_GRACE_SECS, " 5 "),
        ])
        .expect("valid");
        assert_eq!((p.realtime_grace_ms, p.settled_grace_ms), (2_000, 5_000));
        for (pairs, want) in [
            (
                vec![(env::REALTIME_GRACE_SECS, "-1")],
                "TALLY_COMPACT_REALTIME_GRACE_SECS=\"-1\" is not a whole number",
            ),
            (
                vec![(env::SETTLED_GRACE_SECS, "1e3")],
                "TALLY_COMPACT_SETTLED_GRACE_SECS=\"1e3\"",
            ),
            (vec![(env::SETTLED_GRACE_SECS, "86401")], "from 0 to 86400"),
            (
                vec![
                    (env::REALTIME_GRACE_SECS, "60"),
                    (env::SETTLED_GRACE_SECS, "30"),
                ],
                "at least the realtime grace",
            ),
        ] {
            let err = of(&pairs).expect_err("refused");
            assert!(err.contains(want), "{err}");
        }
    }
}
