//! Compaction of closed minutes, as pure decisions: which minutes a run compacts, what a compacted item holds
//! and how it is encoded, how the watermark moves, and where a reader takes each minute from.
//!
//! The counter store keeps open minutes in Valkey, per lane and shard ([`crate::store_keys`]). The compactor
//! folds a closed minute of one campaign — every ad, both lanes, summed over the lanes' shards — into one
//! [`CompactedItem`] and writes it to DynamoDB as a whole (a put of the full state, never an `ADD`), so writing
//! it again (a retry, two compactors at once) leaves the same item. A [`Watermark`] says how far compaction
//! has got, per lane; it only moves forward ([`Watermark::advance`], a conditional write on the I/O side).
//! Readers take minutes at or before the watermark from the items and later minutes from Valkey
//! ([`source_of`], [`split_at_seam`]); both sides hold the same sums, so the series is the truth either way.
//!
//! Two lanes close at different times. The realtime lane lags by seconds; the deferred lane by its batching
//! window (30–60 s) and more while it retries. So a run compacts a minute twice at most: once when the
//! realtime lane has closed it (realtime counts final, settled counts as far as the deferred lane got:
//! `settled_final = false`), and once more when the settled lane has closed it too (`settled_final = true`).
//! Each lane has its own watermark; `settled <= realtime` always. [`plan_run`] makes those decisions from
//! the clock, the grace periods and — when the lanes publish it — their progress.
//!
//! The argument why the seam is exact, and what a cache that lost its data means for it, is in
//! `docs/counter-store.md` ("Compaction and the seam").

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use crate::event::check_id;
use crate::exactly_once::{preview, Tally};
use crate::hll::{Hll, HIGHEST_RANK};
use crate::store_keys::{parse_counter_field, parse_user_field, Counter, StoreLane};
use crate::wire::{put_varint, unzigzag, zigzag, Reader, WireError};

/// Milliseconds in a minute.
pub const MINUTE_MS: i64 = 60_000;

/// How long the lanes' counter hashes and index sets live in the cache (the script's `EXPIRE … NX`): three hours.
/// They only need to outlive compaction (the realtime grace of 2 minutes, the settled one of 10) plus an outage
/// of the compactor; a longer TTL is paid for as cache storage (at the daily-curve profile two days of counters
/// were ~49 GB, three hours ~3 GB; `docs/plan.md`). A compactor down for longer loses those minutes' realtime
/// counts: expiry is not a loss the cache's epoch shows, so the archive-based repair (`crate::compact_repair`)
/// does not run for it; the compactor's error alarm fires first.
pub const COUNTER_TTL_SECS: u64 = 3 * 3_600;

/// How long a minute's counter hashes and index sets stay once the compactor has written the minute's
/// settled-final item (`EXPIRE … LT`: never lengthened): half an hour. Nothing reads them after that (readers take
/// the minute from DynamoDB, the repair reads the archive); they are kept for a compactor run that read the
/// minute before this one let it go and is still writing — no Lambda invocation lives longer than 15 minutes —
/// and for an operator's re-compaction soon after. Instead of the whole [`COUNTER_TTL_SECS`], so the cache holds
/// about the settled grace plus this, not three hours, of counters (`docs/counter-store.md`, "Letting go").
pub const FOLDED_TTL_SECS: u64 = 30 * 60;

/// DynamoDB's item size limit is 400 KB; the encoder refuses items above this (room for keys and attributes).
pub const MAX_ADS_BYTES: usize = 390 * 1024;

/// Days a campaign stays in the campaign index after its last event, by default: 35, longer than the
/// dashboard's widest range (`30d`), so every campaign with data in that range is listed, with five days for a
/// late compaction or a clock that differs.
pub const DEFAULT_CAMPAIGN_INDEX_DAYS: u32 = 35;
/// The campaign index window's bounds, days (a day at least: a shorter one would drop campaigns seen today).
pub const CAMPAIGN_INDEX_DAYS: RangeInclusive<u32> = 1..=3650;

/// The campaign index row's `expires_at` (unix seconds, the table's TTL attribute) for a campaign last seen at
/// `last_seen_ms`: `days` after it.
pub fn campaign_index_expires_at(last_seen_ms: i64, days: u32) -> i64 {
    last_seen_ms.div_euclid(1000) + i64::from(days) * 86_400
}

/// Whether an index row is listed at `now_ms`: not when its `expires_at` (unix seconds) has passed, even while
/// DynamoDB has not deleted it yet (it deletes expired items lazily, up to days later). A row without one
/// (written before the index expired) is listed.
pub fn campaign_index_row_live(expires_at: Option<i64>, now_ms: i64) -> bool {
    expires_at.is_none_or(|at| at.saturating_mul(1000) > now_ms)
}

/// When minutes close and how much one run may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactPolicy {
    /// A minute's realtime counts are final this long after the minute ends (covers the realtime lane's lag:
    /// batching, retries, a cold start).
    pub realtime_grace_ms: i64,
    /// A minute's settled counts are final this long after the minute ends (covers the deferred lane's lag:
    /// its batching window and retries). At least `realtime_grace_ms`.
    pub settled_grace_ms: i64,
    /// Minutes a run compacts at most per lane (a backlog is worked off over several runs).
    pub max_minutes_per_run: i64,
    /// Without a watermark (the first run), how many closed minutes back to start: the counters' TTL.
    pub first_run_minutes: i64,
}

impl Default for CompactPolicy {
    fn default() -> Self {
        CompactPolicy {
            realtime_grace_ms: 2 * MINUTE_MS,
            settled_grace_ms: 10 * MINUTE_MS,
            max_minutes_per_run: 60,
            first_run_minutes: 60,
        }
    }
}

/// Why a policy was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("compaction grace periods must not be negative: realtime {realtime_ms} ms, settled {settled_ms} ms")]
    NegativeGrace { realtime_ms: i64, settled_ms: i64 },
    #[error("the settled grace ({settled_ms} ms) must be at least the realtime grace ({realtime_ms} ms): the deferred lane never leads the realtime lane")]
    SettledBeforeRealtime { realtime_ms: i64, settled_ms: i64 },
    #[error("a run must compact at least one minute and look back at least one: got {per_run} per run, {first_run} on the first run")]
    NoMinutes { per_run: i64, first_run: i64 },
}

impl CompactPolicy {
    pub fn check(&self) -> Result<(), PolicyError> {
        let (realtime_ms, settled_ms) = (self.realtime_grace_ms, self.settled_grace_ms);
        if realtime_ms < 0 || settled_ms < 0 {
            return Err(PolicyError::NegativeGrace {
                realtime_ms,
                settled_ms,
            });
        }
        if settled_ms < realtime_ms {
            return Err(PolicyError::SettledBeforeRealtime {
                realtime_ms,
                settled_ms,
            });
        }
        if self.max_minutes_per_run < 1 || self.first_run_minutes < 1 {
            return Err(PolicyError::NoMinutes {
                per_run: self.max_minutes_per_run,
                first_run: self.first_run_minutes,
            });
        }
        Ok(())
    }
}

/// How far the lanes have applied their shards, when they say so: every event received before this time (ms)
/// is applied in every shard of the lane. `None`: unknown, the grace period alone decides.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaneProgress {
    pub realtime_ms: Option<i64>,
    pub settled_ms: Option<i64>,
}

/// What the compactor read of one shard of a lane: where the stream stands after the shard's fence mark (the
/// last record the lane applied; docs/counter-store.md, "Lane progress").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShardProgress {
    /// The first record after the mark arrived in the stream at `arrived_ms`: it and every later record of the
    /// shard are not applied yet, every earlier one is.
    Behind { arrived_ms: i64 },
    /// Nothing after the mark when the read started at `read_ms` (the iterator was at the shard's tip, or the
    /// shard is closed and the mark is its last record): every record that arrived before then is applied.
    CaughtUp { read_ms: i64 },
    /// Not known (no mark: the lane never applied the shard since the cache last lost its data; or the read
    /// failed): the shard holds nothing back, the grace period alone decides for it.
    Unknown,
}

/// How long after collect received an event its record can still arrive in the stream: collect stamps the
/// receive time its minute is counted by, then writes the request's records before it answers, within its
/// function timeout (10 s; the pipeline's test `collect_writes_within_the_arrival_bound` keeps it below this)
/// — plus 5 s for the clocks of collect's host and the stream's to differ.
pub const RECEIVE_TO_ARRIVAL_MAX_MS: i64 = 15_000;

/// A lane's progress from its shards' readings: every event *received* before the returned time is applied in
/// every shard read — the earliest of the shards' times (the first unapplied record's arrival, or the read's
/// start when a shard is caught up) less `receive_to_arrival_ms` (an event received earlier can arrive later,
/// [`RECEIVE_TO_ARRIVAL_MAX_MS`]). `None` when no shard is known: the grace period alone decides, as before the
/// lanes' progress was read. Unknown shards never hold the lane back; the clock still closes every minute only
/// after its grace ([`last_closed_minute`]), so progress can only make the compactor wait longer.
pub fn lane_progress(shards: &[ShardProgress], receive_to_arrival_ms: i64) -> Option<i64> {
    shards
        .iter()
        .filter_map(|shard| match *shard {
            ShardProgress::Behind { arrived_ms } => Some(arrived_ms),
            ShardProgress::CaughtUp { read_ms } => Some(read_ms),
            ShardProgress::Unknown => None,
        })
        .min()
        .map(|ms| ms.saturating_sub(receive_to_arrival_ms.max(0)))
}

/// The last minute closed for a lane at `now_ms`: the minute must have ended `grace_ms` ago, and before the
/// lane's progress if known. `minute` ends at `(minute + 1) * MINUTE_MS`; it is closed when
/// `now_ms > end + grace_ms` and `progress_ms >= end`.
pub fn last_closed_minute(now_ms: i64, grace_ms: i64, progress_ms: Option<i64>) -> i64 {
    // Largest m with (m + 1) * MINUTE_MS + grace < now, i.e. (m + 1) * MINUTE_MS <= now - grace - 1.
    let by_clock = (now_ms.saturating_sub(grace_ms).saturating_sub(1)).div_euclid(MINUTE_MS) - 1;
    match progress_ms {
        // Largest m with (m + 1) * MINUTE_MS <= progress.
        Some(p) => by_clock.min(p.div_euclid(MINUTE_MS) - 1),
        None => by_clock,
    }
}

/// How far compaction has got: every minute at or before `realtime` has an item with final realtime counts,
/// every minute at or before `settled` one with final settled counts too. `settled <= realtime`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Watermark {
    pub realtime: Option<i64>,
    pub settled: Option<i64>,
}

/// Why a watermark was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WatermarkError {
    #[error("watermark moves back: from {from:?} to {to:?}; a watermark only moves forward")]
    Backwards { from: Watermark, to: Watermark },
    #[error("settled watermark {settled:?} is ahead of the realtime one {realtime:?}: settled items are written after realtime ones")]
    SettledAhead {
        realtime: Option<i64>,
        settled: Option<i64>,
    },
}

impl Watermark {
    /// The lane's watermark.
    pub fn of(&self, lane: StoreLane) -> Option<i64> {
        match lane {
            StoreLane::Realtime => self.realtime,
            StoreLane::Settled => self.settled,
        }
    }

    pub fn check(&self) -> Result<(), WatermarkError> {
        if self.settled > self.realtime {
            return Err(WatermarkError::SettledAhead {
                realtime: self.realtime,
                settled: self.settled,
            });
        }
        Ok(())
    }

    /// Whether moving from `self` to `to` is allowed: neither lane moves back, `to` is consistent. The
    /// conditional write on the I/O side enforces the same against the stored row (`to` is written only if
    /// the stored watermark is still `self`).
    pub fn advance(&self, to: Watermark) -> Result<Watermark, WatermarkError> {
        to.check()?;
        if to.realtime < self.realtime || to.settled < self.settled {
            return Err(WatermarkError::Backwards { from: *self, to });
        }
        Ok(to)
    }
}

/// A minute a run compacts, and whether its settled counts are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinuteJob {
    pub minute: i64,
    pub settled_final: bool,
}

/// What one compactor run does: the minutes to compact, in order, then the watermark to store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunPlan {
    pub jobs: Vec<MinuteJob>,
    pub watermark: Watermark,
}

/// The decision of a run.
///
/// Realtime: minutes after `watermark.realtime` up to the last closed one for the realtime lane (at most
/// `max_minutes_per_run`). Settled: minutes after `watermark.settled` up to the last closed one for the
/// settled lane and never past the new realtime watermark. A minute in both sets is compacted once, with
/// `settled_final = true`. So every item is written at most twice: when the realtime lane closes it and when
/// the settled lane does (once if both happen in one run). The first run (no watermark) starts
/// `first_run_minutes` before the realtime close.
pub fn plan_run(
    now_ms: i64,
    policy: &CompactPolicy,
    progress: LaneProgress,
    watermark: Watermark,
) -> Result<RunPlan, PolicyError> {
    policy.check()?;
    let rt_closed = last_closed_minute(now_ms, policy.realtime_grace_ms, progress.realtime_ms);
    let st_closed = last_closed_minute(now_ms, policy.settled_grace_ms, progress.settled_ms);
    let start = rt_closed - policy.first_run_minutes + 1;
    let rt_from = watermark.realtime.map_or(start, |w| w + 1);
    let rt_to = rt_closed.min(rt_from + policy.max_minutes_per_run - 1);
    let new_rt = if rt_to >= rt_from {
        Some(rt_to).max(watermark.realtime)
    } else {
        watermark.realtime
    };
    let st_from = watermark.settled.map_or(start.min(rt_from), |w| w + 1);
    let st_to = st_closed
        .min(st_from + policy.max_minutes_per_run - 1)
        .min(new_rt.unwrap_or(i64::MIN));
    let new_st = if st_to >= st_from {
        Some(st_to).max(watermark.settled)
    } else {
        watermark.settled
    };
    let mut jobs: BTreeMap<i64, bool> = BTreeMap::new();
    for m in rt_from..=rt_to {
        jobs.insert(m, false);
    }
    for m in st_from..=st_to {
        jobs.insert(m, true);
    }
    Ok(RunPlan {
        jobs: jobs
            .into_iter()
            .map(|(minute, settled_final)| MinuteJob {
                minute,
                settled_final,
            })
            .collect(),
        watermark: Watermark {
            realtime: new_rt,
            settled: new_st,
        },
    })
}

/// Where a reader takes a minute of a lane from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The compacted item (DynamoDB).
    Compacted,
    /// The live counters (Valkey), summed over the lane's shards.
    Live,
}

/// The seam rule: minutes at or before the lane's watermark come from the compacted items, later ones from
/// Valkey.
pub fn source_of(watermark: &Watermark, lane: StoreLane, minute: i64) -> Source {
    match watermark.of(lane) {
        Some(w) if minute <= w => Source::Compacted,
        _ => Source::Live,
    }
}

/// A series `from..=to` of a lane split at the seam: (minutes from the items, minutes from Valkey); either
/// may be empty (`None`).
pub fn split_at_seam(
    watermark: &Watermark,
    lane: StoreLane,
    from: i64,
    to: i64,
) -> (Option<RangeInclusive<i64>>, Option<RangeInclusive<i64>>) {
    if from > to {
        return (None, None);
    }
    match watermark.of(lane) {
        None => (None, Some(from..=to)),
        Some(w) if w < from => (None, Some(from..=to)),
        Some(w) if w >= to => (Some(from..=to), None),
        Some(w) => (Some(from..=w), Some(w + 1..=to)),
    }
}

/// Both lanes' counts of one ad in one minute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AdCounts {
    pub realtime: Tally,
    pub settled: Tally,
}

impl AdCounts {
    pub fn lane(&self, lane: StoreLane) -> &Tally {
        match lane {
            StoreLane::Realtime => &self.realtime,
            StoreLane::Settled => &self.settled,
        }
    }
}

/// One compacted (campaign, minute) — or (campaign, hour), (campaign, day) for the roll-ups ([`Span`],
/// [`roll_up`]): every ad, both lanes summed over their shards, and the settled lane's unique-user sketch per ad.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactedItem {
    pub campaign_id: String,
    /// The first minute of the item's span (the minute itself for a minute item).
    pub minute: i64,
    /// Whether the settled counts are final (the settled lane had closed the minute when it was compacted).
    pub settled_final: bool,
    /// Per ad; ads with all-zero counts in both lanes are left out.
    pub ads: BTreeMap<String, AdCounts>,
    /// Per ad, the settled lane's unique users (merged over its shards' registers); ads without users are
    /// left out. The campaign's users are the union of its ads' (an event has one ad).
    pub users: BTreeMap<String, Hll>,
}

impl CompactedItem {
    /// Builds the item from both lanes' per-ad sums.
    pub fn from_lanes(
        campaign_id: &str,
        minute: i64,
        realtime: &BTreeMap<String, Tally>,
        settled: &BTreeMap<String, Tally>,
        settled_final: bool,
    ) -> CompactedItem {
        let mut ads: BTreeMap<String, AdCounts> = BTreeMap::new();
        for (ad, t) in realtime.iter().filter(|(_, t)| !t.is_zero()) {
            ads.entry(ad.clone()).or_default().realtime = *t;
        }
        for (ad, t) in settled.iter().filter(|(_, t)| !t.is_zero()) {
            ads.entry(ad.clone()).or_default().settled = *t;
        }
        CompactedItem {
            campaign_id: campaign_id.to_owned(),
            minute,
            settled_final,
            ads,
            users: BTreeMap::new(),
        }
    }

    /// The item with the settled lane's per-ad sketches (empty ones left out).
    pub fn with_users(mut self, users: BTreeMap<String, Hll>) -> CompactedItem {
        self.users = users.into_iter().filter(|(_, h)| !h.is_empty()).collect();
        self
    }

    /// The campaign's unique users: the union of its ads' sketches.
    pub fn campaign_users(&self) -> Hll {
        let mut all = Hll::new();
        for h in self.users.values() {
            all.merge(h);
        }
        all
    }

    /// The lane's per-ad counts.
    pub fn lane(&self, lane: StoreLane) -> BTreeMap<&str, Tally> {
        self.ads
            .iter()
            .map(|(ad, c)| (ad.as_str(), *c.lane(lane)))
            .filter(|(_, t)| !t.is_zero())
            .collect()
    }
}

/// Why a Valkey counter hash or an encoded item could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompactError {
    #[error("counter field {field:?} is not <ad>#<counter> or <ad>#u<register>")]
    Field { field: String },
    #[error("register field {field:?} holds {value:?}, not a rank from 1 to {HIGHEST_RANK}")]
    Rank { field: String, value: String },
    #[error("counter field {field:?} holds {value:?}, not a non-negative integer")]
    Value { field: String, value: String },
    #[error("encoded ads: {0}")]
    Decode(String),
    #[error("the item of campaign {campaign} minute {minute} would be {bytes} bytes of ads, more than the {MAX_ADS_BYTES} a DynamoDB item can hold")]
    TooLarge {
        campaign: String,
        minute: i64,
        bytes: usize,
    },
}

/// Folds one counter hash (`HGETALL {<lane>:<shard>}:c#<campaign>#<minute>`) into `into`, per ad. Refuses a
/// field the layout never writes or a value that is not a non-negative integer: the counters are ours, and
/// compacting a guess would make it permanent.
///
/// Register fields (`<ad>#u<register>`, the settled lane's sketches) are left to [`fold_users`].
pub fn fold_hash<'a>(
    into: &mut BTreeMap<String, Tally>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), CompactError> {
    for (field, value) in fields {
        if parse_user_field(field).is_some_and(|(ad, _)| check_id("ad_id", ad).is_ok()) {
            continue;
        }
        let (ad, counter) = parse_counter_field(field)
            .filter(|(ad, _)| check_id("ad_id", ad).is_ok())
            .ok_or_else(|| CompactError::Field {
                field: preview(field),
            })?;
        let v: u64 = value
            .parse()
            .ok()
            .filter(|_| !value.starts_with('+'))
            .ok_or_else(|| CompactError::Value {
                field: preview(field),
                value: preview(value),
            })?;
        let t = match into.get_mut(ad) {
            Some(t) => t,
            None => into.entry(ad.to_owned()).or_default(),
        };
        t.set(counter, t.get(counter).saturating_add(v));
    }
    Ok(())
}

/// Folds the register fields of one counter hash into per-ad sketches (register-wise maximum, so the order
/// of shards and hashes does not matter). Counter fields are [`fold_hash`]'s and skipped here; a register
/// field whose value is not a rank the sketch can hold is refused.
pub fn fold_users<'a>(
    into: &mut BTreeMap<String, Hll>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), CompactError> {
    for (field, value) in fields {
        let Some((ad, register)) =
            parse_user_field(field).filter(|(ad, _)| check_id("ad_id", ad).is_ok())
        else {
            continue;
        };
        let rank_error = || CompactError::Rank {
            field: preview(field),
            value: preview(value),
        };
        let rank: u8 = value
            .parse()
            .ok()
            .filter(|_| canonical_decimal(value))
            .ok_or_else(rank_error)?;
        let sketch = match into.get_mut(ad) {
            Some(h) => h,
            None => into.entry(ad.to_owned()).or_default(),
        };
        sketch.raise(register, rank).map_err(|_| rank_error())?;
    }
    Ok(())
}

/// Digits only, no sign, no leading zero (what the script writes).
fn canonical_decimal(value: &str) -> bool {
    !value.is_empty()
        && value.bytes().all(|b| b.is_ascii_digit())
        && (value.len() == 1 || !value.starts_with('0'))
}

/// What a compacted item covers: a minute (`cm#`), an hour (`ch#`) or a day (`cd#`, UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Span {
    Minute,
    Hour,
    Day,
}

impl Span {
    pub const ALL: [Span; 3] = [Span::Minute, Span::Hour, Span::Day];

    /// Minutes in the span.
    pub fn minutes(self) -> i64 {
        match self {
            Span::Minute => 1,
            Span::Hour => 60,
            Span::Day => 1440,
        }
    }

    /// The first minute of the span holding `minute`.
    pub fn bucket(self, minute: i64) -> i64 {
        minute - minute.rem_euclid(self.minutes())
    }

    /// The partition key prefix of the span's items (`cm#<campaign>`, `ch#…`, `cd#…`).
    pub fn prefix(self) -> &'static str {
        match self {
            Span::Minute => "cm#",
            Span::Hour => "ch#",
            Span::Day => "cd#",
        }
    }

    /// The last bucket of this span that ends at or before `minute` (closed when `minute` is the settled
    /// watermark).
    pub fn last_closed_bucket(self, minute: i64) -> i64 {
        self.bucket(minute + 1) - self.minutes()
    }
}

/// The hour and day items a compactor run writes: the buckets whose last minute became settled-final in the
/// run, i.e. lies in `(done, now]` (`done`: the settled watermark before the run, or the minute before its
/// first settled job on a first run; `now`: the settled watermark after it). Hours before days, each in order.
/// Written before the watermark moves, so every hour or day ending at or before the settled watermark has its
/// item (or had no counts) — the roll-ups' version of C3.
pub fn closing_buckets(done: i64, now: i64) -> Vec<(Span, i64)> {
    let mut out = Vec::new();
    for span in [Span::Hour, Span::Day] {
        let mut b = span.last_closed_bucket(done) + span.minutes();
        while b + span.minutes() - 1 <= now {
            out.push((span, b));
            b += span.minutes();
        }
    }
    out
}

/// The item of `span` starting at `bucket`, summed from the campaign's finer items (minute items for an
/// hour, hour items for a day — any items inside the bucket): both lanes' counts added, sketches merged.
/// Items outside the bucket are ignored. Settled counts are final when every summed item's are. `None`
/// when no item falls inside.
pub fn roll_up(
    span: Span,
    campaign_id: &str,
    bucket: i64,
    items: &[CompactedItem],
) -> Option<CompactedItem> {
    let inside: Vec<&CompactedItem> = items
        .iter()
        .filter(|i| span.bucket(i.minute) == bucket && i.campaign_id == campaign_id)
        .collect();
    if inside.is_empty() {
        return None;
    }
    let mut ads: BTreeMap<String, AdCounts> = BTreeMap::new();
    let mut users: BTreeMap<String, Hll> = BTreeMap::new();
    for item in &inside {
        for (ad, c) in &item.ads {
            let sum = ads.entry(ad.clone()).or_default();
            sum.realtime.merge(&c.realtime);
            sum.settled.merge(&c.settled);
        }
        for (ad, h) in &item.users {
            users.entry(ad.clone()).or_default().merge(h);
        }
    }
    Some(CompactedItem {
        campaign_id: campaign_id.to_owned(),
        minute: bucket,
        settled_final: inside.iter().all(|i| i.settled_final),
        ads,
        users,
    })
}

/// One read of a settled series: items of `span` for buckets `from..=to` (bucket starts), or for
/// [`Span::Minute`] the minutes `from..=to` through the seam ([`split_at_seam`]: items, then Valkey).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanRead {
    pub span: Span,
    pub from: i64,
    pub to: i64,
}

/// How a reader covers the settled buckets `first..=last` of `res` (bucket starts): closed buckets (ending
/// at or before the settled watermark) from their own items; of an open day, its closed hours from hour
/// items; everything after from minutes. Every minute of the range is covered exactly once.
pub fn settled_reads(res: Span, first: i64, last: i64, settled: Option<i64>) -> Vec<SpanRead> {
    let end = last + res.minutes() - 1;
    let mut reads = Vec::new();
    if first > last {
        return reads;
    }
    let mut next = first;
    if let Some(st) = settled {
        let spans: &[Span] = match res {
            Span::Minute => &[],
            Span::Hour => &[Span::Hour],
            Span::Day => &[Span::Day, Span::Hour],
        };
        for &span in spans {
            let closed = span.last_closed_bucket(st).min(span.bucket(end));
            if next <= closed {
                reads.push(SpanRead {
                    span,
                    from: next,
                    to: closed,
                });
                next = closed + span.minutes();
            }
        }
    }
    if next <= end {
        reads.push(SpanRead {
            span: Span::Minute,
            from: next,
            to: end,
        });
    }
    reads
}

// The encoding of an item's ads: one binary attribute, per ad in ad order
//
//   varint(len(ad)) ad-bytes  6 × varint(realtime counter)  6 × varint(zigzag(realtime − settled, mod 2⁶⁴))
//
// counters in `Counter::ALL` order, LEB128 varints (7 bits a byte). The settled counts are the valid subset of
// the realtime ones, so their difference is small (zero for clean traffic: one byte per counter); the
// wrapping difference makes any pair of values encodable. Measured against the alternatives in the tests.
// Version 2 adds, after each ad's counters, `varint(len) sketch` — the ad's settled unique users as
// `Hll::to_bytes` (sparse below 1,025 set registers: about 3 bytes a register; dense 3,074 bytes), length 0
// for none. Version 1 blobs (no sketches) are still read.

/// Version byte of the encoding (first byte of the blob).
pub const ADS_ENCODING: u8 = 2;
/// The version without sketches, still read.
pub const ADS_ENCODING_V1: u8 = 1;

/// Encodes the item's ads (the `ads` attribute).
pub fn encode_ads(item: &CompactedItem) -> Result<Vec<u8>, CompactError> {
    let mut out = vec![ADS_ENCODING];
    for (ad, c) in &item.ads {
        put_varint(&mut out, ad.len() as u64);
        out.extend_from_slice(ad.as_bytes());
        for counter in Counter::ALL {
            put_varint(&mut out, c.realtime.get(counter));
        }
        for counter in Counter::ALL {
            let diff = c.realtime.get(counter).wrapping_sub(c.settled.get(counter)) as i64;
            put_varint(&mut out, zigzag(diff));
        }
        match item.users.get(ad).filter(|h| !h.is_empty()) {
            Some(h) => {
                let sketch = h.to_bytes();
                put_varint(&mut out, sketch.len() as u64);
                out.extend_from_slice(&sketch);
            }
            None => put_varint(&mut out, 0),
        }
    }
    if out.len() > MAX_ADS_BYTES {
        return Err(CompactError::TooLarge {
            campaign: item.campaign_id.clone(),
            minute: item.minute,
            bytes: out.len(),
        });
    }
    Ok(out)
}

/// Per-ad counts and per-ad sketches, as decoded.
pub type DecodedAds = (BTreeMap<String, AdCounts>, BTreeMap<String, Hll>);

/// Decodes the `ads` attribute back into per-ad counts (and sketches, version 2). Refuses an unknown version,
/// truncated or overlong numbers, ad ids that are not ids, ads out of order or repeated, sketches that are not
/// sketches, an ad whose sketch is present but has no settled counts, and trailing bytes.
pub fn decode_ads(bytes: &[u8]) -> Result<DecodedAds, CompactError> {
    let bad = |m: String| CompactError::Decode(m);
    let wire = |e: WireError| CompactError::Decode(e.to_string());
    let sketches = match bytes.first() {
        Some(&ADS_ENCODING) => true,
        Some(&ADS_ENCODING_V1) => false,
        Some(v) => {
            return Err(bad(format!(
                "unknown encoding version {v}, expected {ADS_ENCODING_V1} or {ADS_ENCODING}"
            )))
        }
        None => return Err(bad("empty, expected at least the version byte".to_owned())),
    };
    let mut r = Reader::new(bytes);
    r.byte().map_err(wire)?;
    let mut ads: BTreeMap<String, AdCounts> = BTreeMap::new();
    let mut users: BTreeMap<String, Hll> = BTreeMap::new();
    while !r.is_empty() {
        let start = r.position();
        let len = usize::try_from(r.varint().map_err(wire)?).unwrap_or(usize::MAX);
        let ad = r.str(len).map_err(wire)?;
        check_id("ad_id", ad).map_err(|e| bad(format!("ad id at byte {start}: {e}")))?;
        if ads
            .keys()
            .next_back()
            .is_some_and(|last| last.as_str() >= ad)
        {
            return Err(bad(format!(
                "ad {} at byte {start} is out of order or repeated",
                preview(ad)
            )));
        }
        let mut c = AdCounts::default();
        for counter in Counter::ALL {
            c.realtime.set(counter, r.varint().map_err(wire)?);
        }
        for counter in Counter::ALL {
            let diff = unzigzag(r.varint().map_err(wire)?) as u64;
            c.settled
                .set(counter, c.realtime.get(counter).wrapping_sub(diff));
        }
        if sketches {
            let at = r.position();
            let len = usize::try_from(r.varint().map_err(wire)?).unwrap_or(usize::MAX);
            if len > 0 {
                let sketch = r.bytes(len).map_err(wire)?;
                let h = Hll::from_bytes(sketch)
                    .map_err(|e| bad(format!("sketch of ad {} at byte {at}: {e}", preview(ad))))?;
                if c.settled.is_zero() {
                    return Err(bad(format!(
                        "ad {} at byte {start} has unique users but no settled counts",
                        preview(ad)
                    )));
                }
                users.insert(ad.to_owned(), h);
            }
        }
        ads.insert(ad.to_owned(), c);
    }
    Ok((ads, users))
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 29_928_300; // a minute in 2026

    #[test]
    fn a_lane_is_as_far_as_its_slowest_known_shard_less_the_arrival_delay() {
        use ShardProgress::{Behind, CaughtUp, Unknown};
        let end = (M + 1) * MINUTE_MS;
        for (shards, progress) in [
            (vec![], None),
            (vec![Unknown, Unknown], None),
            (vec![CaughtUp { read_ms: end }], Some(end - 15_000)),
            (
                vec![
                    CaughtUp {
                        read_ms: end + 90_000,
                    },
                    Behind {
                        arrived_ms: end + 40_000,
                    },
                    Unknown,
                ],
                Some(end + 25_000),
            ),
            (
                vec![
                    Behind {
                        arrived_ms: end + 20_000,
                    },
                    Behind {
                        arrived_ms: end - 5,
                    },
                ],
                Some(end - 15_005),
            ),
            (
                vec![Behind {
                    arrived_ms: i64::MIN + 1,
                }],
                Some(i64::MIN),
            ),
        ] {
            assert_eq!(
                lane_progress(&shards, RECEIVE_TO_ARRIVAL_MAX_MS),
                progress,
                "{shards:?}"
            );
        }
        // A negative delay is no delay.
        assert_eq!(lane_progress(&[CaughtUp { read_ms: end }], -5), Some(end));
        // A shard behind since before the minute ended holds the minute open however late the clock is; caught
        // up, the grace period decides.
        let now = end + 60 * MINUTE_MS;
        let behind = lane_progress(
            &[Behind {
                arrived_ms: end + 14_999,
            }],
            RECEIVE_TO_ARRIVAL_MAX_MS,
        );
        assert_eq!(last_closed_minute(now, 2 * MINUTE_MS, behind), M - 1);
        let arrived_after = lane_progress(
            &[Behind {
                arrived_ms: end + 15_000,
            }],
            RECEIVE_TO_ARRIVAL_MAX_MS,
        );
        assert_eq!(last_closed_minute(now, 2 * MINUTE_MS, arrived_after), M);
        let caught_up = lane_progress(&[CaughtUp { read_ms: now }], RECEIVE_TO_ARRIVAL_MAX_MS);
        assert_eq!(
            last_closed_minute(end + 2 * MINUTE_MS, 2 * MINUTE_MS, caught_up),
            M - 1
        );
        assert_eq!(
            last_closed_minute(end + 2 * MINUTE_MS + 1, 2 * MINUTE_MS, caught_up),
            M
        );
    }

    #[test]
    fn minutes_close_after_their_end_and_the_grace() {
        let end = (M + 1) * MINUTE_MS;
        for (now, grace, progress, closed) in [
            (end, 0, None, M - 1),
            (end + 1, 0, None, M),
            (end + 2 * MINUTE_MS, 2 * MINUTE_MS, None, M - 1),
            (end + 2 * MINUTE_MS + 1, 2 * MINUTE_MS, None, M),
            (end + 10 * MINUTE_MS, 0, Some(end), M),
            (end + 10 * MINUTE_MS, 0, Some(end - 1), M - 1),
            (end + 1, 0, Some(end + 5 * MINUTE_MS), M),
            (0, 0, None, -2),
        ] {
            assert_eq!(
                last_closed_minute(now, grace, progress),
                closed,
                "now {now} grace {grace} progress {progress:?}"
            );
        }
    }

    #[test]
    fn a_campaign_index_row_lives_its_window_after_the_last_event() {
        let last = 1_795_698_000_123;
        let at = campaign_index_expires_at(last, 35);
        assert_eq!(at, 1_795_698_000 + 35 * 86_400);
        assert!(campaign_index_row_live(Some(at), at * 1000 - 1));
        assert!(!campaign_index_row_live(Some(at), at * 1000));
        assert!(!campaign_index_row_live(Some(at), at * 1000 + 86_400_000));
        assert!(campaign_index_row_live(None, i64::MAX));
        assert!(campaign_index_row_live(Some(i64::MAX), i64::MAX - 1));
        // The default outlasts the dashboard's 30-day range.
        assert!(CAMPAIGN_INDEX_DAYS.contains(&DEFAULT_CAMPAIGN_INDEX_DAYS));
        const { assert!(DEFAULT_CAMPAIGN_INDEX_DAYS > 30) };
    }

    fn policy(rt_min: i64, st_min: i64) -> CompactPolicy {
        CompactPolicy {
            realtime_grace_ms: rt_min * MINUTE_MS,
            settled_grace_ms: st_min * MINUTE_MS,
            max_minutes_per_run: 5,
            first_run_minutes: 3,
        }
    }

    fn jobs(plan: &RunPlan) -> String {
        plan.jobs
            .iter()
            .map(|j| {
                format!(
                    "{}{}",
                    j.minute - M,
                    if j.settled_final { "s" } else { "r" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn check_run(
        now_min: i64,
        wm: (Option<i64>, Option<i64>),
        expect: &str,
        expect_wm: (Option<i64>, Option<i64>),
    ) {
        let rel = |w: Option<i64>| w.map(|w| w + M);
        let plan = plan_run(
            (M + now_min) * MINUTE_MS + 1,
            &policy(1, 3),
            LaneProgress::default(),
            Watermark {
                realtime: rel(wm.0),
                settled: rel(wm.1),
            },
        )
        .expect("valid policy");
        assert_eq!(jobs(&plan), expect, "now {now_min} wm {wm:?}");
        assert_eq!(
            plan.watermark,
            Watermark {
                realtime: rel(expect_wm.0),
                settled: rel(expect_wm.1)
            },
            "now {now_min} wm {wm:?}"
        );
    }

    #[test]
    fn runs_compact_each_minute_at_most_twice() {
        // At now = M+10 (+1 ms): realtime closed through M+8, settled through M+6.
        // First run: three minutes back from the realtime close; settled from the same start.
        check_run(10, (None, None), "6s 7r 8r", (Some(8), Some(6)));
        // Nothing new a moment later.
        check_run(10, (Some(8), Some(6)), "", (Some(8), Some(6)));
        // A minute on: M+9 realtime, M+7 becomes final.
        check_run(11, (Some(8), Some(6)), "7s 9r", (Some(9), Some(7)));
        // A long pause: at most 5 minutes per lane per run.
        check_run(
            30,
            (Some(9), Some(7)),
            "8s 9s 10s 11s 12s 13r 14r",
            (Some(14), Some(12)),
        );
        // Grace equal for both lanes: each minute once, final.
        let plan = plan_run(
            (M + 10) * MINUTE_MS + 1,
            &policy(2, 2),
            LaneProgress::default(),
            Watermark {
                realtime: Some(M + 6),
                settled: Some(M + 6),
            },
        )
        .expect("valid");
        assert_eq!(jobs(&plan), "7s");
        // Progress holds the settled lane back (it lags), not the realtime one.
        let plan = plan_run(
            (M + 10) * MINUTE_MS + 1,
            &policy(1, 1),
            LaneProgress {
                realtime_ms: None,
                settled_ms: Some((M + 7) * MINUTE_MS + 59_999),
            },
            Watermark {
                realtime: Some(M + 5),
                settled: Some(M + 5),
            },
        )
        .expect("valid");
        assert_eq!(jobs(&plan), "6s 7r 8r");
        assert_eq!(plan.watermark.settled, Some(M + 6));
    }

    #[test]
    fn policies_are_checked() {
        let bad = [
            (policy(-1, 3), "must not be negative"),
            (policy(3, 1), "at least the realtime grace"),
            (
                CompactPolicy {
                    max_minutes_per_run: 0,
                    ..CompactPolicy::default()
                },
                "at least one minute",
            ),
        ];
        for (p, want) in bad {
            let err = plan_run(0, &p, LaneProgress::default(), Watermark::default())
                .expect_err("refused")
                .to_string();
            assert!(err.contains(want), "{err}");
        }
        CompactPolicy::default()
            .check()
            .expect("the default is valid");
    }

    #[test]
    fn watermarks_only_move_forward() {
        let w = |r: Option<i64>, s: Option<i64>| Watermark {
            realtime: r,
            settled: s,
        };
        let from = w(Some(10), Some(8));
        assert_eq!(from.advance(w(Some(10), Some(8))), Ok(w(Some(10), Some(8))));
        assert_eq!(from.advance(w(Some(12), Some(9))), Ok(w(Some(12), Some(9))));
        assert!(matches!(
            from.advance(w(Some(9), Some(8))),
            Err(WatermarkError::Backwards { .. })
        ));
        assert!(matches!(
            from.advance(w(Some(12), Some(7))),
            Err(WatermarkError::Backwards { .. })
        ));
        assert!(matches!(
            from.advance(w(None, None)),
            Err(WatermarkError::Backwards { .. })
        ));
        assert!(matches!(
            from.advance(w(Some(12), Some(13))),
            Err(WatermarkError::SettledAhead { .. })
        ));
        assert_eq!(
            Watermark::default().advance(w(Some(1), None)),
            Ok(w(Some(1), None))
        );
    }

    #[test]
    fn the_seam_splits_series() {
        let wm = Watermark {
            realtime: Some(10),
            settled: Some(7),
        };
        let rt = StoreLane::Realtime;
        let st = StoreLane::Settled;
        assert_eq!(split_at_seam(&wm, rt, 5, 15), (Some(5..=10), Some(11..=15)));
        assert_eq!(split_at_seam(&wm, st, 5, 15), (Some(5..=7), Some(8..=15)));
        assert_eq!(split_at_seam(&wm, rt, 11, 15), (None, Some(11..=15)));
        assert_eq!(split_at_seam(&wm, rt, 1, 10), (Some(1..=10), None));
        assert_eq!(split_at_seam(&wm, rt, 10, 10), (Some(10..=10), None));
        assert_eq!(split_at_seam(&wm, rt, 15, 5), (None, None));
        assert_eq!(
            split_at_seam(&Watermark::default(), st, 1, 2),
            (None, Some(1..=2))
        );
        assert_eq!(source_of(&wm, rt, 10), Source::Compacted);
        assert_eq!(source_of(&wm, rt, 11), Source::Live);
        assert_eq!(source_of(&wm, st, 8), Source::Live);
    }

    fn check_fold(fields: &[(&str, &str)], expect: Result<&str, &str>) {
        let mut into = BTreeMap::new();
        let got = fold_hash(&mut into, fields.iter().copied())
            .map(|()| {
                into.iter()
                    .map(|(ad, t)| {
                        format!("{ad}:{}/{}/{}", t.impressions, t.clicks, t.spend_micros)
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .map_err(|e| e.to_string());
        assert_eq!(got.as_deref().map_err(String::as_str), expect, "{fields:?}");
    }

    #[test]
    fn hashes_fold_per_ad() {
        check_fold(&[], Ok(""));
        check_fold(
            &[
                ("a1#imp", "3"),
                ("a1#spend", "1500"),
                ("a2#click", "1"),
                ("a1#imp", "2"),
            ],
            Ok("a1:5/0/1500 a2:0/1/0"),
        );
        check_fold(
            &[("a1#nope", "1")],
            Err("counter field \"a1#nope\" is not <ad>#<counter> or <ad>#u<register>"),
        );
        check_fold(
            &[("a{1}#imp", "1")],
            Err("counter field \"a{1}#imp\" is not <ad>#<counter> or <ad>#u<register>"),
        );
        check_fold(
            &[("#imp", "1")],
            Err("counter field \"#imp\" is not <ad>#<counter> or <ad>#u<register>"),
        );
        check_fold(
            &[("a1#imp", "-1")],
            Err("counter field \"a1#imp\" holds \"-1\", not a non-negative integer"),
        );
        check_fold(
            &[("a1#imp", "+1")],
            Err("counter field \"a1#imp\" holds \"+1\", not a non-negative integer"),
        );
        check_fold(
            &[("a1#imp", "1.5")],
            Err("counter field \"a1#imp\" holds \"1.5\", not a non-negative integer"),
        );
        // Saturates rather than wrapping.
        let mut into = BTreeMap::new();
        fold_hash(
            &mut into,
            [("a#imp", "18446744073709551615"), ("a#imp", "1")],
        )
        .expect("folds");
        assert_eq!(into["a"].impressions, u64::MAX);
    }

    fn tally(base: u64) -> Tally {
        Tally {
            impressions: base,
            viewable: base / 2,
            clicks: base / 50,
            conversions: base / 500,
            spend_micros: base * 1_537,
            value_micros: base * 48_123,
        }
    }

    fn item(ads: usize) -> CompactedItem {
        let rt: BTreeMap<String, Tally> = (0..ads)
            .map(|i| (format!("ad-{i:04}"), tally(1_000 + i as u64)))
            .collect();
        let mut st = rt.clone();
        if let Some(t) = st.values_mut().next() {
            t.impressions -= 3;
            t.spend_micros -= 3 * 1_537;
        }
        CompactedItem::from_lanes("cmp-1", M, &rt, &st, true)
    }

    #[test]
    fn ads_round_trip() {
        for n in [0, 1, 10, 100] {
            let it = item(n);
            let bytes = encode_ads(&it).expect("fits");
            assert_eq!(decode_ads(&bytes).expect("decodes").0, it.ads, "{n} ads");
        }
        // Extremes: settled above realtime, u64::MAX, zeros in one lane.
        let mut rt = BTreeMap::new();
        let mut st = BTreeMap::new();
        rt.insert(
            "a".to_owned(),
            Tally {
                impressions: u64::MAX,
                ..Tally::default()
            },
        );
        st.insert(
            "a".to_owned(),
            Tally {
                impressions: 0,
                clicks: u64::MAX,
                ..Tally::default()
            },
        );
        st.insert("b".to_owned(), tally(7));
        let it = CompactedItem::from_lanes("c", M, &rt, &st, false);
        assert_eq!(
            decode_ads(&encode_ads(&it).expect("fits")).expect("decodes"),
            (it.ads, BTreeMap::new())
        );
    }

    fn sketch(users: std::ops::Range<u32>) -> Hll {
        let mut h = Hll::new();
        for u in users {
            h.insert(format!("user-{u}").as_bytes());
        }
        h
    }

    #[test]
    fn sketches_round_trip_and_version_1_is_still_read() {
        let mut users = BTreeMap::new();
        users.insert("ad-0000".to_owned(), sketch(0..3));
        users.insert("ad-0002".to_owned(), sketch(0..5_000)); // dense
        let it = item(3).with_users(users.clone());
        let bytes = encode_ads(&it).expect("fits");
        assert_eq!(bytes[0], ADS_ENCODING);
        let (ads, back) = decode_ads(&bytes).expect("decodes");
        assert_eq!((ads, back), (it.ads.clone(), users));
        assert_eq!(it.campaign_users().estimate(), sketch(0..5_000).estimate());
        // A version 1 blob: the same counters without the sketch lengths.
        let v1 = {
            let plain = encode_ads(&item(3)).expect("fits");
            let mut r = Reader::new(&plain);
            let mut out = vec![ADS_ENCODING_V1];
            r.byte().expect("version");
            while !r.is_empty() {
                let len = r.varint().expect("len") as usize;
                let ad = r.str(len).expect("ad");
                put_varint(&mut out, len as u64);
                out.extend_from_slice(ad.as_bytes());
                for _ in 0..12 {
                    put_varint(&mut out, r.varint().expect("n"));
                }
                assert_eq!(r.varint().expect("no sketch"), 0);
            }
            out
        };
        assert_eq!(decode_ads(&v1).expect("v1"), (item(3).ads, BTreeMap::new()));
        // A corrupt sketch names the ad.
        let mut broken = encode_ads(
            &item(1).with_users([("ad-0000".to_owned(), sketch(0..3))].into_iter().collect()),
        )
        .expect("fits");
        let at = broken.len() - sketch(0..3).to_bytes().len(); // the sketch's format byte
        broken[at] = 9;
        check_decode(
            &broken,
            "sketch of ad ad-0000 at byte 29: unknown sketch format 9",
        );
        // Users without settled counts cannot be written by the fold.
        let mut rt = BTreeMap::new();
        rt.insert("x".to_owned(), tally(1));
        let orphan = CompactedItem::from_lanes("c", M, &rt, &BTreeMap::new(), true)
            .with_users([("x".to_owned(), sketch(0..1))].into_iter().collect());
        check_decode(
            &encode_ads(&orphan).expect("fits"),
            "has unique users but no settled counts",
        );
    }

    #[test]
    fn register_fields_fold_into_sketches() {
        let mut want = Hll::new();
        let mut fields: Vec<(String, String)> = vec![("banner#imp".into(), "3".into())];
        for u in 0..50u32 {
            let (reg, rank) =
                crate::hll::register_of(crate::hll::hash64(format!("u{u}").as_bytes()));
            want.raise(reg, rank).expect("valid");
            fields.push((
                crate::store_keys::user_field("banner", reg),
                rank.to_string(),
            ));
        }
        want.insert(b"u0");
        let mut users = BTreeMap::new();
        let view = || fields.iter().map(|(f, v)| (f.as_str(), v.as_str()));
        fold_users(&mut users, view()).expect("folds");
        // Twice (another shard with the same registers): a maximum, unchanged.
        fold_users(&mut users, view()).expect("folds");
        assert_eq!(users.get("banner"), Some(&want));
        let mut tallies = BTreeMap::new();
        fold_hash(&mut tallies, view()).expect("counters fold past registers");
        assert_eq!(tallies.get("banner").map(|t| t.impressions), Some(3));
        for (field, value, rule) in [
            ("a#u1", "0", "not a rank from 1 to 53"),
            ("a#u1", "54", "not a rank"),
            ("a#u1", "x", "not a rank"),
            ("a#u1", "+5", "not a rank"),
            ("a#u1", "05", "not a rank"),
        ] {
            let err = fold_users(&mut BTreeMap::new(), [(field, value)])
                .expect_err(rule)
                .to_string();
            assert!(err.contains(rule), "{field}={value}: {err}");
        }
        let err = fold_hash(&mut BTreeMap::new(), [("a#u4096", "1")]).expect_err("bad register");
        assert!(err.to_string().contains("<ad>#u<register>"), "{err}");
    }

    #[test]
    fn spans_and_closing_buckets() {
        let day = 29_928_960; // 2026-11-26T00:00Z in minutes
        assert_eq!(day % 1440, 0);
        assert_eq!(Span::Hour.bucket(day + 61), day + 60);
        assert_eq!(Span::Day.bucket(day + 1439), day);
        assert_eq!(Span::Hour.last_closed_bucket(day + 59), day);
        assert_eq!(Span::Hour.last_closed_bucket(day + 58), day - 60);
        // Nothing closes inside an hour; the hour closes with its last minute; a day with its last hour.
        assert_eq!(closing_buckets(day + 10, day + 58), vec![]);
        assert_eq!(closing_buckets(day + 10, day + 59), vec![(Span::Hour, day)]);
        assert_eq!(closing_buckets(day + 59, day + 59), vec![]);
        assert_eq!(
            closing_buckets(day + 1380, day + 1500),
            vec![
                (Span::Hour, day + 1380),
                (Span::Hour, day + 1440),
                (Span::Day, day)
            ]
        );
        assert_eq!(closing_buckets(day - 1, day + 119).len(), 2);
    }

    #[test]
    fn hours_and_days_roll_up_their_items() {
        let hour = 29_928_960 + 60;
        let mk = |minute: i64, n: u64, users: std::ops::Range<u32>| {
            let mut t = BTreeMap::new();
            t.insert("banner".to_owned(), tally(n));
            CompactedItem::from_lanes("c", minute, &t, &t, true)
                .with_users([("banner".to_owned(), sketch(users))].into_iter().collect())
        };
        let items = vec![
            mk(hour, 1, 0..10),
            mk(hour + 59, 2, 5..20),
            mk(hour + 60, 100, 0..1_000), // the next hour: ignored
        ];
        let h = roll_up(Span::Hour, "c", hour, &items).expect("an hour item");
        assert_eq!(h.minute, hour);
        assert_eq!(h.ads["banner"].realtime, tally(3));
        assert_eq!(h.users["banner"], sketch(0..20));
        assert!(h.settled_final);
        // Any order gives the same item.
        let mut rev = items.clone();
        rev.reverse();
        assert_eq!(roll_up(Span::Hour, "c", hour, &rev), Some(h.clone()));
        assert_eq!(roll_up(Span::Hour, "other", hour, &items), None);
        let d = roll_up(
            Span::Day,
            "c",
            Span::Day.bucket(hour),
            &[h, mk(hour + 60, 100, 0..1_000)],
        )
        .expect("a day item");
        assert_eq!(d.users["banner"], sketch(0..1_000));
        assert_eq!(d.ads["banner"].settled.impressions, 103);
    }

    #[test]
    fn settled_reads_cover_every_minute_once() {
        let day = 29_928_960;
        let st = Some(day + 1440 + 130); // the next day, 02:10
        let r = |span, from, to| SpanRead { span, from, to };
        // Two days: the first from its day item, the second's hours 00 and 01 from hour items, then minutes.
        assert_eq!(
            settled_reads(Span::Day, day, day + 1440, st),
            vec![
                r(Span::Day, day, day),
                r(Span::Hour, day + 1440, day + 1500),
                r(Span::Minute, day + 1560, day + 2879)
            ]
        );
        assert_eq!(
            settled_reads(Span::Hour, day + 1380, day + 1560, st),
            vec![
                r(Span::Hour, day + 1380, day + 1500),
                r(Span::Minute, day + 1560, day + 1619)
            ]
        );
        assert_eq!(
            settled_reads(Span::Minute, day, day + 5, st),
            vec![r(Span::Minute, day, day + 5)]
        );
        assert_eq!(
            settled_reads(Span::Hour, day, day + 60, None),
            vec![r(Span::Minute, day, day + 119)]
        );
        assert_eq!(
            settled_reads(Span::Hour, day, day, Some(day + 59)),
            vec![r(Span::Hour, day, day)]
        );
        // Property: every minute exactly once, in order, for random ranges and watermarks.
        let mut x: u64 = 7;
        for _ in 0..2_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let res = Span::ALL[(x >> 60) as usize % 3];
            let first = res.bucket(day + (x >> 20) as i64 % 5_000);
            let last = first + res.minutes() * ((x >> 40) as i64 % 4);
            let st = (!(x >> 8).is_multiple_of(3)).then(|| day + (x >> 30) as i64 % 9_000);
            let mut next = first;
            for read in settled_reads(res, first, last, st) {
                assert_eq!(read.from, next, "{res:?} {first} {last} {st:?}");
                if read.span != Span::Minute {
                    assert!(read.to + read.span.minutes() - 1 <= st.expect("closed"));
                }
                next = read.to + read.span.minutes();
            }
            assert_eq!(next, last + res.minutes());
        }
    }

    fn check_decode(bytes: &[u8], want: &str) {
        let err = decode_ads(bytes).expect_err("refused").to_string();
        assert!(err.contains(want), "{bytes:?}: {err}");
    }

    #[test]
    fn hostile_blobs_are_refused() {
        check_decode(&[], "empty");
        check_decode(&[3], "unknown encoding version 3");
        check_decode(&[1, 5, b'a'], "truncated");
        check_decode(&[1, 1, b'a', 1, 1], "truncated");
        check_decode(&[1, 1, b'{'], "ad id at byte 1");
        check_decode(&[1, 1, 0xff], "string is not UTF-8");
        check_decode(
            &[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
            ],
            "varint overflows 64 bits",
        );
        check_decode(
            &[
                1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81,
            ],
            "varint overflows 64 bits",
        );
        let one = encode_ads(&item(1)).expect("fits");
        let mut twice = one.clone();
        twice.extend_from_slice(&one[1..]);
        check_decode(&twice, "out of order or repeated");
        let mut trailing = one.clone();
        trailing.push(3);
        check_decode(&trailing, "truncated");
        // A random flip never panics.
        for i in 0..one.len() {
            for bit in 0..8 {
                let mut b = one.clone();
                b[i] ^= 1 << bit;
                let _ = decode_ads(&b);
            }
        }
    }

    #[test]
    fn oversized_items_are_refused() {
        let rt: BTreeMap<String, Tally> = (0..20_000)
            .map(|i| (format!("{i:0>60}"), tally(1_000)))
            .collect();
        let it = CompactedItem::from_lanes("c", M, &rt, &rt, true);
        let err = encode_ads(&it).expect_err("too large").to_string();
        assert!(err.contains("more than the 399360"), "{err}");
    }
}
