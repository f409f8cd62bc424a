//! What the compactor keeps so that the dashboard's overview and its campaign table need not read every
//! campaign: pure decisions (the I/O is `tally_aws::metrics_write` and `tally_aws::compacted`).
//!
//! * **All campaigns** ([`ALL_CAMPAIGNS`]): per compacted minute one more item, under a pseudo-campaign id
//!   that no campaign can have (`*` is outside the id alphabet), holding one ad ([`ALL_ADS`]) with both lanes'
//!   counts summed over every campaign of the minute and the union of their unique-user sketches
//!   ([`aggregate_minutes`]). It is an ordinary item: written as a whole (a retry writes the same item),
//!   rolled up into hour and day items like a campaign's, read by the same readers.
//! * **Today per campaign** ([`day_increments`]): per (UTC day, campaign) one small row of the campaign's
//!   realtime counts through the realtime watermark, so the campaign table can be sorted by spend or
//!   impressions with one read of the day's rows instead of one read per campaign. The row is updated with
//!   an `ADD` of one (campaign, minute) at a time, conditioned on the row's last minute being earlier
//!   ([`Increment::minute`]), so a retried run adds nothing twice.

use std::collections::BTreeMap;

use crate::compact::{AdCounts, CompactedItem};
use crate::exactly_once::Tally;
use crate::hll::Hll;

/// The pseudo-campaign of the all-campaigns items (`*`: never a campaign id, whose alphabet is
/// `[A-Za-z0-9._:-]`).
pub const ALL_CAMPAIGNS: &str = "*";
/// The one ad of an all-campaigns item.
pub const ALL_ADS: &str = "all";
/// Minutes in a UTC day.
pub const DAY_MINUTES: i64 = 1440;

/// The all-campaigns item of every minute among `items` (compacted minute items of one run): both lanes
/// summed over the minute's campaigns and ads, the sketches merged; `settled_final` as the minute's items
/// (the run compacts a minute with one flag). Minutes without counts have none. In minute order.
pub fn aggregate_minutes(items: &[CompactedItem]) -> Vec<CompactedItem> {
    let mut minutes: BTreeMap<i64, (AdCounts, Hll, bool)> = BTreeMap::new();
    for item in items.iter().filter(|i| i.campaign_id != ALL_CAMPAIGNS) {
        let (sum, users, settled_final) =
            minutes
                .entry(item.minute)
                .or_insert((AdCounts::default(), Hll::new(), true));
        for c in item.ads.values() {
            sum.realtime.merge(&c.realtime);
            sum.settled.merge(&c.settled);
        }
        users.merge(&item.campaign_users());
        *settled_final &= item.settled_final;
    }
    minutes
        .into_iter()
        .filter(|(_, (sum, _, _))| !(sum.realtime.is_zero() && sum.settled.is_zero()))
        .map(|(minute, (sum, users, settled_final))| {
            let mut ads = BTreeMap::new();
            ads.insert(ALL_ADS.to_owned(), sum);
            let mut per_ad = BTreeMap::new();
            if !users.is_empty() {
                per_ad.insert(ALL_ADS.to_owned(), users);
            }
            CompactedItem {
                campaign_id: ALL_CAMPAIGNS.to_owned(),
                minute,
                settled_final,
                ads,
                users: per_ad,
            }
        })
        .collect()
}

/// One (campaign, minute)'s realtime counts to add to the campaign's row of the minute's day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Increment {
    /// The first minute of the UTC day.
    pub day: i64,
    pub campaign_id: String,
    /// The minute added: the row takes it only if its last minute is earlier, and then records it.
    pub minute: i64,
    pub realtime: Tally,
}

/// The increments of a run's `items` to the campaigns' day rows: the minutes after `realtime_before` (the
/// realtime watermark before the run; a minute at or before it is in the rows already, and the run only
/// writes its settled counts again), one per (campaign, minute) with realtime counts, per campaign in minute
/// order (the row's condition needs them in order).
pub fn day_increments(items: &[CompactedItem], realtime_before: Option<i64>) -> Vec<Increment> {
    let mut out: Vec<Increment> = items
        .iter()
        .filter(|i| i.campaign_id != ALL_CAMPAIGNS)
        .filter(|i| realtime_before.is_none_or(|w| i.minute > w))
        .filter_map(|item| {
            let mut realtime = Tally::default();
            for c in item.ads.values() {
                realtime.merge(&c.realtime);
            }
            (!realtime.is_zero()).then(|| Increment {
                day: day_of(item.minute),
                campaign_id: item.campaign_id.clone(),
                minute: item.minute,
                realtime,
            })
        })
        .collect();
    out.sort_by(|a, b| (&a.campaign_id, a.minute).cmp(&(&b.campaign_id, b.minute)));
    out
}

/// The first minute of the UTC day holding `minute`.
pub fn day_of(minute: i64) -> i64 {
    minute - minute.rem_euclid(DAY_MINUTES)
}

/// How the campaign table can be sorted by a total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RankBy {
    Spend,
    Impressions,
}

impl RankBy {
    /// The ranked value of a campaign's day counts.
    pub fn key(self, t: &Tally) -> u64 {
        match self {
            RankBy::Spend => t.spend_micros,
            RankBy::Impressions => t.impressions,
        }
    }
}

/// Whether a campaign id matches a search: the text as a case-insensitive substring (a prefix is one).
pub fn matches_search(campaign_id: &str, search: &str) -> bool {
    campaign_id
        .to_ascii_lowercase()
        .contains(&search.to_ascii_lowercase())
}

/// Where the overview reads the all-campaigns counts of minutes `first..=now` (today, or the last hour with
/// it: `first` is the earlier of the day's start and an hour back), given the watermark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverviewReads {
    /// Hour items of the hours starting in `from..=to` (hours the settled lane has closed: rolled up).
    pub hours: Option<(i64, i64)>,
    /// The first minute today's total takes from minutes (minute items or the cache): earlier ones are in
    /// the hour items.
    pub today_minutes_from: i64,
    /// Minute items of `from..=to` (up to the realtime watermark).
    pub minutes: Option<(i64, i64)>,
    /// The counter store's open minutes `from..=to` (after the realtime watermark), every campaign.
    pub live: Option<(i64, i64)>,
}

/// The reads of the overview for minutes `first..=now`: the hours the settled lane has closed that start
/// at or after `day` from their hour items; from the first open hour (or `first`, if earlier) the minute
/// items up to the realtime watermark; then the open minutes from the cache, at most `live_minutes` back.
pub fn overview_reads(
    day: i64,
    first: i64,
    now: i64,
    watermark: &crate::compact::Watermark,
    live_minutes: i64,
) -> OverviewReads {
    let span = |from: i64, to: i64| (from <= to).then_some((from, to));
    // The first minute of the first hour not rolled up: the hour of the minute after the settled watermark.
    let open_hour = watermark
        .settled
        .map_or(day, |s| crate::compact::Span::Hour.bucket(s + 1))
        .clamp(day, now + 1);
    let hours = span(day, open_hour - 60);
    let minutes_from = open_hour.min(first);
    let (minutes, live_from) = match watermark.realtime {
        Some(rt) => (span(minutes_from, rt.min(now)), (rt + 1).max(minutes_from)),
        None => (None, minutes_from),
    };
    OverviewReads {
        today_minutes_from: open_hour,
        hours,
        minutes,
        live: span(live_from.max(now - live_minutes), now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(impressions: u64, spend: u64) -> Tally {
        Tally {
            impressions,
            spend_micros: spend,
            ..Tally::default()
        }
    }

    fn item(campaign: &str, minute: i64, rt: Tally, st: Tally, users: &[&str]) -> CompactedItem {
        let mut ads = BTreeMap::new();
        ads.insert(
            "ad".to_owned(),
            AdCounts {
                realtime: rt,
                settled: st,
            },
        );
        let mut h = Hll::new();
        for u in users {
            h.insert(u.as_bytes());
        }
        let mut per_ad = BTreeMap::new();
        per_ad.insert("ad".to_owned(), h);
        CompactedItem {
            campaign_id: campaign.to_owned(),
            minute,
            settled_final: false,
            ads,
            users: BTreeMap::new(),
        }
        .with_users(per_ad)
    }

    #[test]
    fn the_all_campaigns_item_sums_every_campaign_of_a_minute() {
        let items = [
            item("a", 10, tally(3, 30), tally(2, 20), &["u1", "u2"]),
            item("b", 10, tally(1, 5), tally(1, 5), &["u2", "u3"]),
            item("a", 11, tally(4, 0), Tally::default(), &[]),
        ];
        let all = aggregate_minutes(&items);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].campaign_id, ALL_CAMPAIGNS);
        assert_eq!(all[0].minute, 10);
        assert_eq!(all[0].ads[ALL_ADS].realtime, tally(4, 35));
        assert_eq!(all[0].ads[ALL_ADS].settled, tally(3, 25));
        assert_eq!(all[0].campaign_users().estimate(), 3, "u1, u2, u3 once");
        assert_eq!(all[1].ads[ALL_ADS].realtime, tally(4, 0));
        assert!(all[1].users.is_empty());
        // The same items give the same aggregate (a retried run writes the same item).
        assert_eq!(aggregate_minutes(&items), all);
    }

    #[test]
    fn increments_skip_minutes_already_in_the_rows_and_come_in_minute_order() {
        let day = 20_000 * DAY_MINUTES;
        let items = [
            item("b", day + 5, tally(1, 1), Tally::default(), &[]),
            item("a", day + 6, tally(2, 2), Tally::default(), &[]),
            item("a", day + 4, tally(9, 9), Tally::default(), &[]),
            item("a", day - 1, tally(7, 7), Tally::default(), &[]),
            item("c", day + 6, Tally::default(), tally(1, 1), &[]),
        ];
        let inc = day_increments(&items, Some(day - 1));
        let got: Vec<(&str, i64, i64)> = inc
            .iter()
            .map(|i| (i.campaign_id.as_str(), i.day, i.minute))
            .collect();
        assert_eq!(
            got,
            vec![
                ("a", day, day + 4),
                ("a", day, day + 6),
                ("b", day, day + 5)
            ],
            "realtime-new minutes only, settled-only items skipped"
        );
        let all = day_increments(&items, None);
        assert_eq!(
            (all[0].day, all[0].minute),
            (day - DAY_MINUTES, day - 1),
            "yesterday's row"
        );
    }

    #[test]
    fn ranking_keys_are_the_days_spend_or_impressions() {
        assert_eq!(RankBy::Spend.key(&tally(3, 700)), 700);
        assert_eq!(RankBy::Impressions.key(&tally(3, 700)), 3);
    }

    #[test]
    fn the_overview_reads_closed_hours_then_minutes_then_the_cache() {
        use crate::compact::Watermark;
        let day = 20_000 * DAY_MINUTES;
        let now = day + 13 * 60 + 30; // 13:30
        let wm = Watermark {
            realtime: Some(now - 3),
            settled: Some(now - 11), // 13:19: hours up to 12:00 closed
        };
        let r = overview_reads(day, now - 59, now, &wm, 180);
        assert_eq!(r.hours, Some((day, day + 12 * 60)), "00:00..=12:00 hours");
        assert_eq!(r.today_minutes_from, day + 13 * 60);
        assert_eq!(
            r.minutes,
            Some((now - 59, now - 3)),
            "12:31 on: the last hour's minutes"
        );
        assert_eq!(r.live, Some((now - 2, now)));
        // Early in the day nothing is rolled up yet; no watermark: everything from the cache.
        let early = day + 5;
        let wm = Watermark {
            realtime: Some(early - 3),
            settled: Some(early - 11),
        };
        let r = overview_reads(day, early - 59, early, &wm, 180);
        assert_eq!(r.hours, None);
        assert_eq!(r.minutes, Some((early - 59, early - 3)));
        let none = overview_reads(day, now - 59, now, &Watermark::default(), 180);
        assert_eq!((none.hours, none.minutes), (None, None));
        assert_eq!(
            none.live,
            Some((now - 180, now)),
            "at most the counters' TTL back"
        );
    }

    #[test]
    fn search_is_a_case_insensitive_substring() {
        assert!(matches_search("Summer-Sale", "summer"));
        assert!(matches_search("c102", "10"));
        assert!(!matches_search("c102", "x"));
    }
}
