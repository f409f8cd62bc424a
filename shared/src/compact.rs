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
use crate::store_keys::{parse_counter_field, Counter, StoreLane};
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

/// DynamoDB's item size limit is 400 KB; the encoder refuses items above this (room for keys and attributes).
pub const MAX_ADS_BYTES: usize = 390 * 1024;

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

/// One compacted (campaign, minute): every ad, both lanes summed over their shards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactedItem {
    pub campaign_id: String,
    pub minute: i64,
    /// Whether the settled counts are final (the settled lane had closed the minute when it was compacted).
    pub settled_final: bool,
    /// Per ad; ads with all-zero counts in both lanes are left out.
    pub ads: BTreeMap<String, AdCounts>,
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
        }
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
    #[error("counter field {field:?} is not <ad>#<counter>")]
    Field { field: String },
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
pub fn fold_hash<'a>(
    into: &mut BTreeMap<String, Tally>,
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), CompactError> {
    for (field, value) in fields {
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

// The encoding of an item's ads: one binary attribute, per ad in ad order
//
//   varint(len(ad)) ad-bytes  6 × varint(realtime counter)  6 × varint(zigzag(realtime − settled, mod 2⁶⁴))
//
// counters in `Counter::ALL` order, LEB128 varints (7 bits a byte). The settled counts are the valid subset of
// the realtime ones, so their difference is small (zero for clean traffic: one byte per counter); the
// wrapping difference makes any pair of values encodable. Measured against the alternatives in the tests.

/// Version byte of the encoding (first byte of the blob).
pub const ADS_ENCODING: u8 = 1;

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

/// Decodes the `ads` attribute back into per-ad counts. Refuses an unknown version, truncated or overlong
/// numbers, ad ids that are not ids, ads out of order or repeated, and trailing bytes.
pub fn decode_ads(bytes: &[u8]) -> Result<BTreeMap<String, AdCounts>, CompactError> {
    let bad = |m: String| CompactError::Decode(m);
    let wire = |e: WireError| CompactError::Decode(e.to_string());
    match bytes.first() {
        Some(&ADS_ENCODING) => {}
        Some(v) => {
            return Err(bad(format!(
                "unknown encoding version {v}, expected {ADS_ENCODING}"
            )))
        }
        None => return Err(bad("empty, expected at least the version byte".to_owned())),
    }
    let mut r = Reader::new(bytes);
    r.byte().map_err(wire)?;
    let mut ads: BTreeMap<String, AdCounts> = BTreeMap::new();
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
        ads.insert(ad.to_owned(), c);
    }
    Ok(ads)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: i64 = 29_928_300; // a minute in 2026

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
            Err("counter field \"a1#nope\" is not <ad>#<counter>"),
        );
        check_fold(
            &[("a{1}#imp", "1")],
            Err("counter field \"a{1}#imp\" is not <ad>#<counter>"),
        );
        check_fold(
            &[("#imp", "1")],
            Err("counter field \"#imp\" is not <ad>#<counter>"),
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
            assert_eq!(decode_ads(&bytes).expect("decodes"), it.ads, "{n} ads");
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
            it.ads
        );
    }

    fn check_decode(bytes: &[u8], want: &str) {
        let err = decode_ads(bytes).expect_err("refused").to_string();
        assert!(err.contains(want), "{bytes:?}: {err}");
    }

    #[test]
    fn hostile_blobs_are_refused() {
        check_decode(&[], "empty");
        check_decode(&[2], "unknown encoding version 2");
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
