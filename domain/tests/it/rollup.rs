//! Rollups: what is counted under which key.

use tally_domain::event::{Event, EventKind};
use tally_domain::rollup::{minute_of, Counters, Rollup};

use crate::fixtures::{event, NOW};

#[test]
fn counts_per_ad_and_per_campaign_minute() {
    let minute = minute_of(NOW);
    let events = [
        event("1"),
        Event {
            kind: EventKind::ViewableImpression,
            cost_micros: 0,
            ..event("2")
        },
        Event {
            kind: EventKind::Click,
            ad_id: "ad-2".into(),
            cost_micros: 300_000,
            user_id: Some("u-7".into()),
            ..event("3")
        },
        Event {
            kind: EventKind::Conversion,
            value_micros: 42_000_000,
            user_id: None,
            ..event("4")
        },
        Event {
            received_ms: NOW + 60_000,
            ..event("5")
        },
        Event {
            campaign_id: "cmp-2".into(),
            ..event("6")
        },
    ];
    let r: Rollup = events.iter().collect();
    let render = |c: &Counters| {
        format!(
            "imp={} view={} clk={} conv={} spend={} value={} users={}",
            c.impressions,
            c.viewable,
            c.clicks,
            c.conversions,
            c.spend_micros,
            c.value_micros,
            c.users.estimate()
        )
    };
    let rows: Vec<String> = r
        .iter()
        .map(|(k, c)| {
            format!(
                "{} {} {} {}",
                k.campaign_id,
                k.minute - minute,
                k.ad_id.as_deref().unwrap_or("*"),
                render(c)
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            "cmp-1 0 * imp=1 view=1 clk=1 conv=1 spend=305000 value=42000000 users=2",
            "cmp-1 0 ad-1 imp=1 view=1 clk=0 conv=1 spend=5000 value=42000000 users=1",
            "cmp-1 0 ad-2 imp=0 view=0 clk=1 conv=0 spend=300000 value=0 users=1",
            "cmp-1 1 * imp=1 view=0 clk=0 conv=0 spend=2500 value=0 users=1",
            "cmp-1 1 ad-1 imp=1 view=0 clk=0 conv=0 spend=2500 value=0 users=1",
            "cmp-2 0 * imp=1 view=0 clk=0 conv=0 spend=2500 value=0 users=1",
            "cmp-2 0 ad-1 imp=1 view=0 clk=0 conv=0 spend=2500 value=0 users=1",
        ]
    );
    assert_eq!(r.len(), 7);
    assert_eq!(r.get("cmp-1", None, minute).map(Counters::events), Some(4));
    assert_eq!(r.get("cmp-1", Some("ad-9"), minute), None);
}

#[test]
fn minutes_round_down_also_before_1970() {
    for (ms, minute) in [
        (0, 0),
        (59_999, 0),
        (60_000, 1),
        (-1, -1),
        (-60_000, -1),
        (-60_001, -2),
        (i64::MIN, i64::MIN / 60_000 - 1),
    ] {
        assert_eq!(minute_of(ms), minute, "{ms}");
    }
}

#[test]
fn sums_saturate() {
    let mut a = Counters {
        spend_micros: u64::MAX - 1,
        impressions: u64::MAX,
        ..Counters::default()
    };
    a.merge(&Counters {
        spend_micros: 5,
        impressions: 1,
        ..Counters::default()
    });
    assert_eq!((a.spend_micros, a.impressions), (u64::MAX, u64::MAX));
}
