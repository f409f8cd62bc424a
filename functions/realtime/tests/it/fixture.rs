//! The Kinesis event fixture: a batch in exactly the shape Lambda delivers it, whose records hold
//! [`events`] packed by `tally_domain::wire::pack`. `fixtures/kinesis-batch.json` is generated from this
//! code and checked by the test below (`UPDATE_FIXTURES=1 cargo test -p tally-realtime` rewrites it).

use aws_lambda_events::event::kinesis::KinesisEvent;
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::wire;

pub const SHARD: &str = "shardId-000000000006";
/// 2025-11-26T13:58:00Z: the batch crosses into the next hour.
pub const T0_MS: i64 = 1_764_165_480_000;

/// 240 events: 2 campaigns, 3 ads each, 40 users, every kind, over 4 minutes.
pub fn events() -> Vec<Event> {
    (0..240u64)
        .map(|i| {
            let kind = match i % 10 {
                0..=5 => EventKind::Impression,
                6 | 7 => EventKind::ViewableImpression,
                8 => EventKind::Click,
                _ => EventKind::Conversion,
            };
            Event {
                id: format!("ev-{i:04}"),
                kind,
                campaign_id: format!("spring-{}", i % 2),
                ad_id: format!("creative-{}", i % 3),
                placement_id: Some(format!("site-{}", i % 4)),
                user_id: (!i.is_multiple_of(6)).then(|| format!("u{}", i % 40)),
                client_ts_ms: None,
                received_ms: T0_MS + i64::try_from(i).unwrap_or(0) * 1_000,
                cost_micros: if kind == EventKind::Impression {
                    2_500
                } else {
                    0
                },
                value_micros: if kind == EventKind::Conversion {
                    9_990_000
                } else {
                    0
                },
                country: Some("FR".to_owned()),
                device: DeviceClass::Mobile,
                trust: tally_domain::event::Trust::Authenticated,
                user_agent: None,
            }
        })
        .collect()
}

/// The events packed into records (30 at a time, as collect packs each request), wrapped as Lambda delivers
/// them.
pub fn generate() -> KinesisEvent {
    let records = events()
        .chunks(30)
        .flat_map(wire::pack)
        .map(|r| (r.partition_key, r.data))
        .collect();
    tally_aws_testing::kinesis_event("realtime", SHARD, records, T0_MS + 4_000)
}

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/kinesis-batch.json")
}

/// The committed fixture, parsed.
pub fn load() -> KinesisEvent {
    let text = std::fs::read_to_string(path()).expect("read the fixture");
    serde_json::from_str(&text).expect("the fixture is a KinesisEvent")
}

#[test]
fn fixture_is_current_round_trips_and_holds_the_events() {
    tally_aws_testing::check_fixture(&path(), &generate());
    let parsed = load();
    assert!(parsed.records.len() > 4, "several records");
    let mut got: Vec<Event> = parsed
        .records
        .iter()
        .flat_map(|r| wire::unpack(&r.kinesis.data).expect("unpack"))
        .collect();
    let mut want = events();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
}
