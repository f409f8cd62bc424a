//! The deferred lane's fixture: traffic with people, crawlers, automation and one user clicking faster than a
//! person can, across an hour boundary. `fixtures/kinesis-batch.json` is generated from this code and checked
//! by the test below (`UPDATE_FIXTURES=1 cargo test -p tally-deferred` rewrites it).

use aws_lambda_events::event::kinesis::KinesisEvent;
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::wire;

pub const SHARD: &str = "shardId-000000000003";
/// 2025-11-26T13:58:00Z.
pub const T0_MS: i64 = 1_764_165_480_000;

pub const PEOPLE: [&str; 3] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36",
];
pub const CRAWLER: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
pub const SCRIPT: &str = "python-requests/2.32.3";

/// 200 events over four minutes (13:58–14:01): people on three browsers, every tenth event from a crawler,
/// every fourteenth from a script, and 25 clicks of user `clicker` within the minute 13:59.
pub fn events() -> Vec<Event> {
    let mut out: Vec<Event> = (0..175u64)
        .map(|i| {
            let ua = if i % 10 == 3 {
                CRAWLER
            } else if i % 14 == 5 {
                SCRIPT
            } else {
                PEOPLE[usize::try_from(i % 3).unwrap_or(0)]
            };
            event(
                i,
                if i % 9 == 4 {
                    EventKind::Click
                } else {
                    EventKind::Impression
                },
                &format!("u{}", i % 30),
                T0_MS + i64::try_from(i).unwrap_or(0) * 1_371,
                ua,
            )
        })
        .collect();
    for k in 0..25 {
        out.push(event(
            1_000 + k,
            EventKind::Click,
            "clicker",
            T0_MS + 60_000 + i64::try_from(k).unwrap_or(0) * 2_000,
            PEOPLE[1],
        ));
    }
    out.sort_by_key(|e| e.received_ms);
    out
}

fn event(i: u64, kind: EventKind, user: &str, received_ms: i64, ua: &str) -> Event {
    Event {
        id: format!("d-{i:05}"),
        kind,
        campaign_id: format!("autumn-{}", i % 2),
        ad_id: format!("banner-{}", i % 3),
        placement_id: None,
        user_id: Some(user.to_owned()),
        client_ts_ms: Some(received_ms - 150),
        received_ms,
        cost_micros: if kind == EventKind::Impression {
            1_200
        } else {
            0
        },
        value_micros: 0,
        country: Some("NL".to_owned()),
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: Some(ua.to_owned()),
    }
}

/// The events packed 25 at a time, wrapped as Lambda delivers them.
pub fn generate() -> KinesisEvent {
    let records = events()
        .chunks(25)
        .flat_map(wire::pack)
        .map(|r| (r.partition_key, r.data))
        .collect();
    tally_aws_testing::kinesis_event("deferred", SHARD, records, T0_MS + 30_000)
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
    let mut got: Vec<Event> = load()
        .records
        .iter()
        .flat_map(|r| wire::unpack(&r.kinesis.data).expect("unpack"))
        .collect();
    let mut want = events();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert!(
        got == want,
        "the fixture's records hold other events than events()"
    );
}
