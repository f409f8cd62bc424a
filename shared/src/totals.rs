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

/// Campaign ids ordered by `by` of their `totals` (largest first, then by id); campaigns of `known` without
/// a row rank as zero.
pub fn rank<'a>(
    totals: &'a BTreeMap<String, Tally>,
    known: impl IntoIterator<Item = &'a String>,
    by: RankBy,
) -> Vec<(u64, &'a String)> {
    let mut ranked: BTreeMap<&String, u64> = totals.iter().map(|(id, t)| (id, by.key(t))).collect();
    for id in known {
        ranked.entry(id).or_insert(0);
    }
    let mut out: Vec<(u64, &String)> = ranked.into_iter().map(|(id, v)| (v, id)).collect();
    out.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    out
}

/// Whether a campaign id matches a search: the text as a case-insensitive substring (a prefix is one).
pub fn matches_search(campaign_id: &str, search: &str) -> bool {
    campaign_id
        .to_ascii_lowercase()
        .contains(&search.to_ascii_lowercase())
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
    fn ranking_is_largest_first_then_by_id_and_known_campaigns_rank_as_zero() {
        let mut totals = BTreeMap::new();
        totals.insert("b".to_owned(), tally(10, 500));
        totals.insert("a".to_owned(), tally(20, 500));
        totals.insert("c".to_owned(), tally(30, 100));
        let known = ["z".to_owned(), "a".to_owned()];
        let by_spend: Vec<&str> = rank(&totals, &known, RankBy::Spend)
            .into_iter()
            .map(|(_, id)| id.as_str())
            .collect();
        assert_eq!(by_spend, ["a", "b", "c", "z"]);
        let by_imp: Vec<(u64, &str)> = rank(&totals, &known, RankBy::Impressions)
            .into_iter()
            .map(|(v, id)| (v, id.as_str()))
            .collect();
        assert_eq!(by_imp, [(30, "c"), (20, "a"), (10, "b"), (0, "z")]);
    }

    #[test]
    fn search_is_a_case_insensitive_substring() {
        assert!(matches_search("Summer-Sale", "summer"));
        assert!(matches_search("c102", "10"));
        assert!(!matches_search("c102", "x"));
    }
}
