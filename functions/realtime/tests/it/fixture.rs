//! The Kinesis event fixture: a batch in exactly the shape Lambda delivers it, whose records hold
//! [`events`] packed by `tally_domain::wire::pack`. `fixtures/kinesis-batch.json` is generated from this
//! code and checked by [`fixture_file_is_current`] (`UPDATE_FIXTURES=1 cargo test -p tally-realtime` rewrites it).

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::wire;

pub const SHARD: &str = "shardId-000000000006";
/// 2026-11-26T13:58:00Z: the batch crosses into the next hour.
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
                user_agent: None,
            }
        })
        .collect()
}

/// The sequence number of record `i` (56 digits, as Kinesis writes them).
pub fn sequence_number(i: usize) -> String {
    format!(
        "4959033827149025660855969253836157109592157598913{:07}",
        1_000_000 + i * 17
    )
}

/// The events packed into records (30 at a time, as collect packs each request), wrapped as Lambda delivers
/// them.
pub fn generate() -> KinesisEvent {
    let mut event = KinesisEvent::default();
    let records = events().chunks(30).flat_map(wire::pack).collect::<Vec<_>>();
    for (i, record) in records.into_iter().enumerate() {
        let mut r = KinesisEventRecord::default();
        let seq = sequence_number(i);
        r.event_id = Some(format!("{SHARD}:{seq}"));
        r.event_name = Some("aws:kinesis:record".into());
        r.event_source = Some("aws:kinesis".into());
        r.event_version = Some("1.0".into());
        r.aws_region = Some("us-east-1".into());
        r.event_source_arn =
            Some("arn:aws:kinesis:us-east-1:123456789012:stream/tally-main-events".into());
        r.invoke_identity_arn = Some("arn:aws:iam::123456789012:role/tally-main-realtime".into());
        r.kinesis.kinesis_schema_version = Some("1.0".into());
        r.kinesis.partition_key = record.partition_key;
        r.kinesis.sequence_number = seq;
        *r.kinesis.data = record.data;
        let arrival = T0_MS + 4_000 + i64::try_from(i).unwrap_or(0);
        r.kinesis.approximate_arrival_timestamp.0 =
            chrono::DateTime::from_timestamp_millis(arrival).unwrap_or_default();
        event.records.push(r);
    }
    event
}

fn path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/kinesis-batch.json")
}

/// The committed fixture, parsed.
pub fn load() -> KinesisEvent {
    let text = std::fs::read_to_string(path()).expect("read the fixture");
    serde_json::from_str(&text).expect("the fixture is a KinesisEvent")
}

/// The JSON Lambda sends: as the event type serializes it, except that Lambda writes the arrival time as a
/// number of seconds (the type writes a string; it reads both).
fn lambda_json(event: &KinesisEvent) -> String {
    let mut value = serde_json::to_value(event).expect("serialize");
    for record in value["Records"].as_array_mut().into_iter().flatten() {
        let ts = &mut record["kinesis"]["approximateArrivalTimestamp"];
        let seconds: f64 = ts
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("arrival time");
        *ts = serde_json::json!(seconds);
    }
    serde_json::to_string_pretty(&value).expect("serialize") + "\n"
}

#[test]
fn fixture_file_is_current() {
    let want = lambda_json(&generate());
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        std::fs::write(path(), &want).expect("write the fixture");
    }
    let got = std::fs::read_to_string(path()).unwrap_or_default();
    assert!(
        got == want,
        "{} is stale: run `UPDATE_FIXTURES=1 cargo test -p tally-realtime`",
        path().display()
    );
}

#[test]
fn fixture_round_trips_and_holds_the_events() {
    let text = std::fs::read_to_string(path()).expect("read the fixture");
    let parsed: KinesisEvent = serde_json::from_str(&text).expect("parse");
    let again: KinesisEvent =
        serde_json::from_str(&serde_json::to_string(&parsed).expect("serialize")).expect("parse");
    assert_eq!(parsed, again);
    // The raw JSON has Lambda's field names and shapes.
    let raw: serde_json::Value = serde_json::from_str(&text).expect("json");
    let first = &raw["Records"][0];
    assert_eq!(first["eventSource"], "aws:kinesis");
    assert!(
        first["kinesis"]["data"].is_string()
            && first["kinesis"]["approximateArrivalTimestamp"].is_number()
    );
    assert!(parsed.records.len() > 1, "several records");
    let decoded: Vec<Event> = parsed
        .records
        .iter()
        .flat_map(|r| wire::unpack(&r.kinesis.data).expect("unpack"))
        .collect();
    let mut want = events();
    let mut got = decoded;
    want.sort_by(|a, b| a.id.cmp(&b.id));
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(got, want);
}
