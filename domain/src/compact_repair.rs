//! Repair of a counter store that lost its data, as pure decisions: how the compactor notices the loss, which
//! minutes it then recomputes from the deferred lane's archive instead of Valkey, and how an archive's lines
//! become the same compacted items the fast path writes.
//!
//! **Detection.** The compactor keeps a random *epoch* in the cache ([`EPOCH_KEY`], created with `SET … NX
//! GET` when missing) and records it next to its watermark. A cache that comes back without the key, or with
//! another one, lost its data since the recorded run ([`check_epoch`]). The compactor then records the new
//! epoch and a *repair bound* ([`after_check`]): the minute of the run that noticed. Every event of a minute
//! after it was received after the loss, so the cache holds all of it; minutes up to it may have lost
//! increments (and claims and fence marks) and are taken from the archive.
//!
//! **Repair.** While the settled watermark is below the repair bound, a run compacts the minutes after the
//! settled watermark from the archive, up to the bound and only as far as the settled lane has closed them
//! ([`plan_repair`]): the archive is written by the deferred lane right after it settles a batch, so a minute
//! the settled lane has closed (its grace period, or its published progress) is in the archive too. Both
//! lanes' counts come from the archive and are final, so both watermarks move to the last repaired minute.
//! Meanwhile the realtime watermark waits: readers take those minutes from Valkey, which holds only what
//! arrived after the loss.
//!
//! **Counting from the archive** ([`RepairFold`]). The archive holds every occurrence of every event, with its
//! record (shard, sequence number) and verdict. Per id, the lanes count one occurrence: the first of its id in
//! the record that claimed it first. The fold takes, per id, the earliest occurrence by (receive time,
//! record, position in the object) — the record whose claim came first when the copies were received apart
//! (a resend after a timeout or a `503` always comes later) — and counts it in the realtime lane, and in
//! the settled lane when its verdict is valid (`keep` is asked after the claim, as in the lanes). Occurrences
//! received up to the dedup window before the repaired minutes are read too, only so that a resend inside
//! the minutes of an id first seen before them is not counted.
//!
//! The argument is in `docs/counter-store.md` ("When the cache loses its data").

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use crate::compact::{
    last_closed_minute, CompactPolicy, CompactedItem, LaneProgress, PolicyError, Watermark,
    RECEIVE_TO_ARRIVAL_MAX_MS,
};
use crate::event::{check_id, Event, EventKind, MAX_COST_MICROS, MAX_VALUE_MICROS};
use crate::exactly_once::{preview, Position, Tally};
use crate::rollup::minute_of;

/// The cache key holding the compactor's epoch. Under the realtime lane's `{rt}` tag (a key of its own slot,
/// next to `{rt}:shards`), so the functions' cache user, whose access string allows `{rt}:*`, may read it.
pub const EPOCH_KEY: &str = "{rt}:epoch";

/// What the cache's epoch says about its data since the recorded run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochCheck {
    /// The cache holds the recorded epoch: it kept its data.
    Intact,
    /// No epoch recorded yet (the first run, or the first after an upgrade): record the cache's. Nothing is
    /// known about earlier losses, so nothing is repaired.
    Unrecorded,
    /// The cache had no epoch (the run just created one) or another one: it lost its data since the recorded
    /// run.
    Lost,
}

/// `recorded`: the epoch stored next to the watermark; `in_cache`: the reply of `SET <EPOCH_KEY> <new> NX GET`
/// (`None`: the key was missing and now holds the new value).
pub fn check_epoch(recorded: Option<&str>, in_cache: Option<&str>) -> EpochCheck {
    match (recorded, in_cache) {
        (None, _) => EpochCheck::Unrecorded,
        (Some(r), Some(c)) if r == c => EpochCheck::Intact,
        (Some(_), _) => EpochCheck::Lost,
    }
}

/// An epoch as the compactor writes it: 32 lowercase hexadecimal digits.
pub fn check_epoch_value(value: &str) -> Result<(), RepairError> {
    if value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else {
        Err(RepairError::Epoch {
            value: preview(value),
        })
    }
}

/// An epoch from 128 random bits.
pub fn epoch_value(bits: u128) -> String {
    format!("{bits:032x}")
}

/// What the compactor records next to its watermark about the cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairState {
    /// The cache's epoch at the last run (`None`: none recorded yet).
    pub epoch: Option<String>,
    /// The last minute that may have lost increments in a loss the compactor noticed (`None`: none noticed).
    pub repair_to: Option<i64>,
}

/// The state to record after a check at `now_ms` that found `cache_epoch` in the cache (the value there now,
/// whoever created it); `None` when nothing changes. A loss extends the repair bound to the minute of `now_ms`
/// (a loss noticed while an earlier one is still being repaired extends it further).
pub fn after_check(
    state: &RepairState,
    check: EpochCheck,
    cache_epoch: &str,
    now_ms: i64,
) -> Option<RepairState> {
    match check {
        EpochCheck::Intact => None,
        EpochCheck::Unrecorded => Some(RepairState {
            epoch: Some(cache_epoch.to_owned()),
            repair_to: state.repair_to,
        }),
        EpochCheck::Lost => Some(RepairState {
            epoch: Some(cache_epoch.to_owned()),
            repair_to: state.repair_to.max(Some(minute_of(now_ms))),
        }),
    }
}

/// A run that repairs: the minutes it recomputes from the archive (`None`: the settled lane has not closed the
/// next one yet, the run waits) and the watermark to store after them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepairPlan {
    pub minutes: Option<RangeInclusive<i64>>,
    pub watermark: Watermark,
}

/// Whether a run repairs, and what. `None` when no repair is pending (no bound, or the settled watermark has
/// reached it): the run compacts from Valkey as usual. Otherwise the minutes after the settled watermark (on
/// the first run, where `plan_run` would start), up to the bound, the settled close and at most
/// `max_minutes_per_run`; both watermarks move to the last of them (the realtime one never back).
pub fn plan_repair(
    now_ms: i64,
    policy: &CompactPolicy,
    progress: LaneProgress,
    watermark: Watermark,
    repair_to: Option<i64>,
) -> Result<Option<RepairPlan>, PolicyError> {
    policy.check()?;
    let Some(bound) = repair_to else {
        return Ok(None);
    };
    if watermark.settled >= Some(bound) {
        return Ok(None);
    }
    let rt_closed = last_closed_minute(now_ms, policy.realtime_grace_ms, progress.realtime_ms);
    let st_closed = last_closed_minute(now_ms, policy.settled_grace_ms, progress.settled_ms);
    let start = rt_closed - policy.first_run_minutes + 1;
    let from = match (watermark.settled, watermark.realtime) {
        (Some(s), _) => s + 1,
        (None, Some(r)) => start.min(r + 1),
        (None, None) => start.min(bound),
    };
    let to = bound
        .min(st_closed)
        .min(from.saturating_add(policy.max_minutes_per_run - 1));
    if to < from {
        return Ok(Some(RepairPlan {
            minutes: None,
            watermark,
        }));
    }
    Ok(Some(RepairPlan {
        minutes: Some(from..=to),
        watermark: Watermark {
            realtime: watermark.realtime.max(Some(to)),
            settled: Some(to),
        },
    }))
}

/// The archive's time range a repair of `minutes` reads: from `window_secs` before the first minute (ids
/// first seen then are not counted again) to the end of the last. Milliseconds, inclusive.
pub fn archive_span(minutes: &RangeInclusive<i64>, window_secs: u64) -> RangeInclusive<i64> {
    let window_ms = i64::try_from(window_secs.saturating_mul(1_000)).unwrap_or(i64::MAX);
    let from = minutes
        .start()
        .saturating_mul(60_000)
        .saturating_sub(window_ms);
    let to = minutes.end().saturating_add(1).saturating_mul(60_000) - 1;
    from..=to
}

/// The archive's hour partitions (their starts, unix ms) a repair of `minutes` reads: every hour of its span
/// ([`archive_span`]) and of the [`RECEIVE_TO_ARRIVAL_MAX_MS`] after it. The last archived record of a shard
/// the read finds is where the repair asks the stream how far the archive is complete (docs/counter-store.md,
/// "Lane progress"); a record received in those 15 s can arrive before any record of the next minute, and if
/// the read missed it, archived in the next hour's partition, the stream would answer with it, too early for
/// the span's last minute, at every run: a repair ending on an hour's last minute would wait for good.
pub fn archive_hours(minutes: &RangeInclusive<i64>, window_secs: u64) -> Vec<i64> {
    let span = archive_span(minutes, window_secs);
    hours_of(&(*span.start()..=span.end().saturating_add(RECEIVE_TO_ARRIVAL_MAX_MS)))
}

/// The start (unix ms) of every UTC hour that overlaps `span`, in order: the archive's partitions to read.
pub fn hours_of(span: &RangeInclusive<i64>) -> Vec<i64> {
    const HOUR_MS: i64 = 3_600_000;
    let first = span.start().div_euclid(HOUR_MS);
    let last = span.end().div_euclid(HOUR_MS);
    (first..=last).map(|h| h * HOUR_MS).collect()
}

/// Why a repair could not go on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RepairError {
    #[error("the recorded cache epoch {value:?} is not 32 lowercase hexadecimal digits: the compactor writes nothing else; delete the attribute to record the cache's epoch again")]
    Epoch { value: String },
    #[error("archive line {line}: {rule}")]
    Line { line: usize, rule: String },
}

/// One archived occurrence, as far as counting needs it.
#[derive(Clone, Debug, PartialEq)]
pub struct ArchivedEvent {
    /// The event (fields counting does not read are left empty).
    pub event: Event,
    /// The deferred lane's verdict.
    pub valid: bool,
    /// The record that held it.
    pub position: Position,
}

#[derive(serde::Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    campaign_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    ad_id: std::borrow::Cow<'a, str>,
    received_ms: i64,
    cost_micros: u64,
    value_micros: u64,
    valid: bool,
    #[serde(borrow)]
    shard_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sequence_number: std::borrow::Cow<'a, str>,
}

/// Reads one archive line (the deferred lane's `ndjson_line`; other fields are ignored). `line` is its
/// 1-based number, for the error. Refuses what the deferred lane never writes: a missing field, an id or
/// position that is not one, an unknown kind, money above the field limits.
pub fn parse_archive_line(text: &str, line: usize) -> Result<ArchivedEvent, RepairError> {
    let bad = |rule: String| RepairError::Line { line, rule };
    let l: Line<'_> = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    for (field, v) in [
        ("id", &l.id),
        ("campaign_id", &l.campaign_id),
        ("ad_id", &l.ad_id),
    ] {
        check_id(field, v).map_err(|e| bad(e.to_string()))?;
    }
    let kind = EventKind::parse(&l.kind)
        .ok_or_else(|| bad(format!("kind {:?} is not an event kind", preview(&l.kind))))?;
    if l.cost_micros > MAX_COST_MICROS || l.value_micros > MAX_VALUE_MICROS {
        return Err(bad(format!(
            "cost_micros {} or value_micros {} above the limits ({MAX_COST_MICROS}, {MAX_VALUE_MICROS})",
            l.cost_micros, l.value_micros
        )));
    }
    let position =
        Position::new(&l.shard_id, &l.sequence_number).map_err(|e| bad(e.to_string()))?;
    Ok(ArchivedEvent {
        event: Event {
            id: l.id.into_owned(),
            kind,
            campaign_id: l.campaign_id.into_owned(),
            ad_id: l.ad_id.into_owned(),
            placement_id: None,
            user_id: None,
            client_ts_ms: None,
            received_ms: l.received_ms,
            cost_micros: l.cost_micros,
            value_micros: l.value_micros,
            country: None,
            device: crate::event::DeviceClass::Unknown,
            trust: crate::event::Trust::Authenticated,
            user_agent: None,
        },
        valid: l.valid,
        position,
    })
}

/// Which occurrence of an id comes first: receive time, then record, then place in its object.
type Order = (i64, Position, usize);

/// An occurrence's event and verdict, kept only for ids in the repaired minutes (boxed: most ids are the
/// look-back's, and an `Event` inline would make every entry ~300 bytes larger).
type Kept = Option<Box<(Event, bool)>>;

/// The counting of a repair: feed it every archived occurrence of the span ([`RepairFold::add`], any order,
/// duplicates of whole objects included), then take the items of the repaired minutes
/// ([`RepairFold::items`]).
#[derive(Debug)]
pub struct RepairFold {
    minutes: RangeInclusive<i64>,
    /// Per id, the first occurrence so far; its event only when it falls in the repaired minutes.
    first: HashMap<String, (Order, Kept)>,
    /// Per shard, the last record seen in the archive.
    archived: BTreeMap<String, Position>,
}

impl RepairFold {
    pub fn new(minutes: RangeInclusive<i64>) -> RepairFold {
        RepairFold {
            minutes,
            first: HashMap::new(),
            archived: BTreeMap::new(),
        }
    }

    /// Per shard, the last record the lines read hold: how far the deferred lane has archived it (it archives
    /// a shard's batches in order; what it archived of the read span is everything up to there). The repair
    /// reads the stream after it to know whether the archive is complete for its minutes
    /// (docs/counter-store.md, "Lane progress").
    pub fn archived(&self) -> &BTreeMap<String, Position> {
        &self.archived
    }

    /// One occurrence; `index` is its line's place in its object (lines of a record are in body order).
    pub fn add(&mut self, a: ArchivedEvent, index: usize) {
        match self.archived.get_mut(a.position.shard()) {
            Some(last) if *last >= a.position => {}
            Some(last) => *last = a.position.clone(),
            None => {
                self.archived
                    .insert(a.position.shard().to_owned(), a.position.clone());
            }
        }
        let order = (a.event.received_ms, a.position, index);
        let keep = self.minutes.contains(&minute_of(a.event.received_ms));
        match self.first.get_mut(&a.event.id) {
            Some((o, _)) if *o <= order => {}
            Some(slot) => *slot = (order, keep.then(|| Box::new((a.event, a.valid)))),
            None => {
                let id = a.event.id.clone();
                self.first
                    .insert(id, (order, keep.then(|| Box::new((a.event, a.valid)))));
            }
        }
    }

    /// Distinct ids seen.
    pub fn ids(&self) -> usize {
        self.first.len()
    }

    /// One item per (campaign, minute) of the repaired minutes with counts, settled counts final, in
    /// (campaign, minute) order.
    pub fn items(&self) -> Vec<CompactedItem> {
        type Lanes = (BTreeMap<String, Tally>, BTreeMap<String, Tally>);
        let mut cells: BTreeMap<(&str, i64), Lanes> = BTreeMap::new();
        for (e, valid) in self.first.values().filter_map(|(_, e)| e.as_deref()) {
            let (rt, st) = cells
                .entry((e.campaign_id.as_str(), minute_of(e.received_ms)))
                .or_default();
            rt.entry(e.ad_id.clone()).or_default().add(e);
            if *valid {
                st.entry(e.ad_id.clone()).or_default().add(e);
            }
        }
        cells
            .into_iter()
            .map(|((campaign, minute), (rt, st))| {
                CompactedItem::from_lanes(campaign, minute, &rt, &st, true)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::MINUTE_MS;

    const M: i64 = 29_928_300; // a minute in 2026

    #[test]
    fn compact_repair_epochs_tell_a_loss() {
        use EpochCheck::*;
        for (recorded, in_cache, want) in [
            (None, None, Unrecorded),
            (None, Some("a"), Unrecorded),
            (Some("a"), Some("a"), Intact),
            (Some("a"), None, Lost),
            (Some("a"), Some("b"), Lost),
        ] {
            assert_eq!(
                check_epoch(recorded, in_cache),
                want,
                "{recorded:?} {in_cache:?}"
            );
        }
        let e = epoch_value(0xabc);
        assert_eq!(e, "00000000000000000000000000000abc");
        check_epoch_value(&e).expect("ours");
        for bad in ["", "ABC", &"0".repeat(31), &"g".repeat(32), &"0".repeat(33)] {
            let err = check_epoch_value(bad).expect_err("refused").to_string();
            assert!(err.contains("32 lowercase hexadecimal digits"), "{err}");
        }
    }

    #[test]
    fn compact_repair_bounds_follow_the_noticing_run() {
        let now = (M + 5) * MINUTE_MS + 30_000;
        let none = RepairState::default();
        let recorded = RepairState {
            epoch: Some("e1".into()),
            repair_to: None,
        };
        assert_eq!(after_check(&recorded, EpochCheck::Intact, "e1", now), None);
        assert_eq!(
            after_check(&none, EpochCheck::Unrecorded, "e2", now),
            Some(RepairState {
                epoch: Some("e2".into()),
                repair_to: None
            })
        );
        assert_eq!(
            after_check(&recorded, EpochCheck::Lost, "e2", now),
            Some(RepairState {
                epoch: Some("e2".into()),
                repair_to: Some(M + 5)
            })
        );
        // A second loss during the repair extends the bound, never shortens it.
        let repairing = RepairState {
            epoch: Some("e2".into()),
            repair_to: Some(M + 9),
        };
        assert_eq!(
            after_check(&repairing, EpochCheck::Lost, "e3", now).and_then(|s| s.repair_to),
            Some(M + 9)
        );
        assert_eq!(
            after_check(&repairing, EpochCheck::Lost, "e3", now + 10 * MINUTE_MS)
                .and_then(|s| s.repair_to),
            Some(M + 15)
        );
    }

    fn policy() -> CompactPolicy {
        CompactPolicy {
            realtime_grace_ms: MINUTE_MS,
            settled_grace_ms: 3 * MINUTE_MS,
            max_minutes_per_run: 5,
            first_run_minutes: 3,
        }
    }

    fn rel(w: Option<i64>) -> Option<i64> {
        w.map(|w| w + M)
    }

    /// (now minute, watermark (rt, st), bound) → minutes or "wait" or "none", watermark after.
    fn check_plan(
        now_min: i64,
        wm: (Option<i64>, Option<i64>),
        bound: Option<i64>,
        want: &str,
        want_wm: (Option<i64>, Option<i64>),
    ) {
        let wm0 = Watermark {
            realtime: rel(wm.0),
            settled: rel(wm.1),
        };
        let plan = plan_repair(
            (M + now_min) * MINUTE_MS + 1,
            &policy(),
            LaneProgress::default(),
            wm0,
            rel(bound),
        )
        .expect("valid policy");
        let got = match &plan {
            None => "none".to_owned(),
            Some(RepairPlan { minutes: None, .. }) => "wait".to_owned(),
            Some(RepairPlan {
                minutes: Some(r), ..
            }) => format!("{}..={}", r.start() - M, r.end() - M),
        };
        assert_eq!(got, want, "now {now_min} wm {wm:?} bound {bound:?}");
        let after = plan.map_or(wm0, |p| p.watermark);
        assert_eq!(
            after,
            Watermark {
                realtime: rel(want_wm.0),
                settled: rel(want_wm.1)
            },
            "now {now_min} wm {wm:?} bound {bound:?}"
        );
    }

    #[test]
    fn compact_repair_plans_wait_for_the_settled_close() {
        // No bound, or the settled watermark at it: no repair.
        check_plan(10, (Some(8), Some(6)), None, "none", (Some(8), Some(6)));
        check_plan(10, (Some(8), Some(6)), Some(6), "none", (Some(8), Some(6)));
        // A loss noticed at M+10 (rt 8, st 6): settled closed through M+6 only, so the run waits.
        check_plan(10, (Some(8), Some(6)), Some(10), "wait", (Some(8), Some(6)));
        // At M+11 the settled lane has closed M+7: repaired from the archive; realtime stays at 8.
        check_plan(
            11,
            (Some(8), Some(6)),
            Some(10),
            "7..=7",
            (Some(8), Some(7)),
        );
        // At M+14: M+8..=10, both watermarks at the bound.
        check_plan(
            14,
            (Some(8), Some(7)),
            Some(10),
            "8..=10",
            (Some(10), Some(10)),
        );
        // Then the repair is done.
        check_plan(
            15,
            (Some(10), Some(10)),
            Some(10),
            "none",
            (Some(10), Some(10)),
        );
        // A long outage: at most five minutes per run.
        check_plan(
            40,
            (Some(8), Some(6)),
            Some(40),
            "7..=11",
            (Some(11), Some(11)),
        );
        // The first run (no watermark) starts where plan_run would: three minutes before the realtime close.
        check_plan(10, (None, None), Some(10), "6..=6", (Some(6), Some(6)));
        check_plan(10, (Some(2), None), Some(10), "3..=6", (Some(6), Some(6)));
    }

    #[test]
    fn compact_repair_reads_the_window_before_the_minutes() {
        let minutes = M..=M + 2;
        let span = archive_span(&minutes, 3_600);
        assert_eq!(*span.start(), M * MINUTE_MS - 3_600_000);
        assert_eq!(*span.end(), (M + 3) * MINUTE_MS - 1);
        let hours = hours_of(&span);
        // M is 2026-11-26 … 05:00 UTC exactly (29_928_300 minutes = 498_805 hours).
        assert_eq!(hours, vec![(M - 60) * MINUTE_MS, M * MINUTE_MS]);
        assert_eq!(hours_of(&(0..=0)), vec![0]);
        assert_eq!(hours_of(&(-1..=0)), vec![-3_600_000, 0]);
        // The read's partitions: the span's, and the next hour's when the span ends on an hour's last minute
        // (a record received in its first 15 s may be the one after the last the read finds).
        assert_eq!(archive_hours(&minutes, 3_600), hours);
        let last = M + 59..=M + 59;
        assert_eq!(
            archive_hours(&last, 0),
            vec![M * MINUTE_MS, (M + 60) * MINUTE_MS]
        );
        assert_eq!(archive_hours(&(M + 58..=M + 58), 0), vec![M * MINUTE_MS]);
    }

    fn line(id: &str, kind: &str, campaign: &str, received: i64, valid: bool, seq: &str) -> String {
        format!(
            r#"{{"id":"{id}","kind":"{kind}","campaign_id":"{campaign}","ad_id":"a1","placement_id":null,"user_id":"u1","client_ts_ms":null,"received_ms":{received},"cost_micros":7,"value_micros":0,"country":null,"reported_device":"unknown","user_agent":null,"device":"unknown","browser":"unknown","os":"unknown","valid":{valid},"invalid_reason":null,"shard_id":"shardId-000000000000","sequence_number":"{seq}"}}"#
        )
    }

    #[test]
    fn compact_repair_archive_lines_are_read_or_refused() {
        let at = M * MINUTE_MS + 5;
        let a = parse_archive_line(&line("e1", "click", "c1", at, true, "42"), 1).expect("reads");
        assert_eq!(
            (
                a.event.id.as_str(),
                a.event.kind,
                a.event.cost_micros,
                a.valid,
                a.position.sequence()
            ),
            ("e1", EventKind::Click, 7, true, "42")
        );
        for (text, want) in [
            ("not json".to_owned(), "archive line 3: expected"),
            (
                line("e 1", "click", "c1", at, true, "42"),
                "archive line 3: id",
            ),
            (
                line("e1", "bogus", "c1", at, true, "42"),
                "kind \"bogus\" is not an event kind",
            ),
            (line("e1", "click", "c{1}", at, true, "42"), "campaign_id"),
            (line("e1", "click", "c1", at, true, "042"), "leading zeros"),
            (
                line("e1", "click", "c1", at, true, "42")
                    .replace("\"cost_micros\":7", "\"cost_micros\":100000001"),
                "above the limits",
            ),
            (r#"{"id":"e1"}"#.to_owned(), "missing field"),
        ] {
            let err = parse_archive_line(&text, 3)
                .expect_err("refused")
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }

    fn fold_of(lines: &[String], minutes: RangeInclusive<i64>) -> RepairFold {
        let mut fold = RepairFold::new(minutes);
        for (i, l) in lines.iter().enumerate() {
            fold.add(parse_archive_line(l, i + 1).expect("line"), i);
        }
        fold
    }

    /// (campaign, minute - M) → (realtime clicks+impressions, settled ones).
    fn counts(fold: &RepairFold) -> Vec<(String, i64, u64, u64)> {
        fold.items()
            .iter()
            .map(|i| {
                let rt: u64 = i.ads.values().map(|c| c.realtime.events()).sum();
                let st: u64 = i.ads.values().map(|c| c.settled.events()).sum();
                (i.campaign_id.clone(), i.minute - M, rt, st)
            })
            .collect()
    }

    #[test]
    fn compact_repair_counts_each_id_once_as_the_lanes_do() {
        let t = |min: i64, ms: i64| (M + min) * MINUTE_MS + ms;
        let lines = vec![
            // Seen before the repaired minutes (the window's look-back): its resend inside them is not counted.
            line("old", "click", "c1", t(-30, 0), true, "1"),
            line("old", "click", "c1", t(1, 0), true, "90"),
            // Twice in one body (one record): once.
            line("twice", "impression", "c1", t(1, 5), true, "91"),
            line("twice", "impression", "c1", t(1, 5), true, "91"),
            // A whole object archived twice (a bisected retry): once.
            line("again", "impression", "c1", t(1, 6), false, "92"),
            line("again", "impression", "c1", t(1, 6), false, "92"),
            // Resent later (another record, another minute): the first copy counts, in its minute.
            line("resent", "impression", "c2", t(1, 7), true, "93"),
            line("resent", "impression", "c2", t(2, 0), true, "95"),
            // Invalid: realtime only.
            line("bot", "click", "c2", t(2, 1), false, "96"),
            // After the repaired minutes: not counted here.
            line("late", "click", "c2", t(3, 0), true, "97"),
        ];
        let want = vec![
            ("c1".to_owned(), 1, 2, 1),
            ("c2".to_owned(), 1, 1, 1),
            ("c2".to_owned(), 2, 1, 0),
        ];
        let fold = fold_of(&lines, M + 1..=M + 2);
        assert_eq!(counts(&fold), want);
        assert_eq!(fold.ids(), 6);
        // How far the archive has the shard, whatever the minutes and the order: its last record (sequence
        // numbers compare as numbers: "97" after "1" and "9").
        let last = |fold: &RepairFold| {
            fold.archived()
                .iter()
                .map(|(s, p)| (s.clone(), p.sequence().to_owned()))
                .collect::<Vec<_>>()
        };
        let shard = "shardId-000000000000".to_owned();
        assert_eq!(last(&fold), [(shard.clone(), "97".to_owned())]);
        // Any order of the lines gives the same counts.
        let mut reversed = lines.clone();
        reversed.reverse();
        assert_eq!(counts(&fold_of(&reversed, M + 1..=M + 2)), want);
        assert_eq!(last(&fold_of(&reversed, M..=M)), [(shard, "97".to_owned())]);
        assert!(fold_of(&[], M..=M).archived().is_empty());
        // Without the look-back, the resend of "old" would count.
        assert_eq!(
            counts(&fold_of(&lines[1..], M + 1..=M + 2))[0],
            ("c1".to_owned(), 1, 3, 2)
        );
        // Items carry final settled counts and every ad's money.
        let items = fold.items();
        assert!(items.iter().all(|i| i.settled_final));
        assert_eq!(items[0].ads["a1"].realtime.spend_micros, 14);
    }
}
