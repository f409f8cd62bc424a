//! The stream encoding: round trips, packing, and corrupt input.

use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::partition::partition_key;
use tally_domain::wire::{
    crc32c, encode_record, event_count, pack, unpack, WireError, MAX_RECORD_BYTES, VERSION,
};

use crate::fixtures::{event, NOW};

fn minimal(id: &str) -> Event {
    Event {
        placement_id: None,
        user_id: None,
        client_ts_ms: None,
        cost_micros: 0,
        country: None,
        device: DeviceClass::Unknown,
        user_agent: None,
        ..event(id)
    }
}

#[test]
fn round_trips() {
    let conversion = Event {
        kind: EventKind::Conversion,
        value_micros: 1_000_000_000_000,
        cost_micros: 100_000_000,
        ..event("c1")
    };
    let cases: Vec<Vec<Event>> = vec![
        vec![event("e1")],
        vec![minimal("m1")],
        vec![conversion.clone(), minimal("m2"), event("e3")],
        vec![
            Event {
                received_ms: 0,
                client_ts_ms: Some(-300_000),
                ..event("epoch")
            },
            Event {
                received_ms: i64::MAX,
                client_ts_ms: Some(i64::MAX),
                ..event("end")
            },
        ],
        vec![
            Event {
                received_ms: i64::MIN,
                client_ts_ms: None,
                ..event("neg")
            },
            Event {
                received_ms: i64::MAX,
                client_ts_ms: None,
                ..event("pos")
            },
        ],
        (0..500)
            .map(|i| Event {
                ad_id: format!("ad-{}", i % 7),
                ..event(&format!("ev-{i}"))
            })
            .collect(),
    ];
    for events in cases {
        let data = encode_record(&events);
        assert_eq!(unpack(&data).as_ref(), Ok(&events));
        assert_eq!(event_count(&data), Ok(events.len()));
    }
    for kind in EventKind::ALL {
        for device in DeviceClass::ALL {
            let e = Event {
                kind,
                device,
                value_micros: u64::from(kind == EventKind::Conversion),
                ..event("k")
            };
            assert_eq!(
                unpack(&encode_record(std::slice::from_ref(&e))),
                Ok(vec![e])
            );
        }
    }
}

#[test]
fn compact() {
    // A typical impression: strings shared within a record cost one byte after their first use.
    let events: Vec<Event> = (0..200)
        .map(|i| event(&format!("01HZX8G2{i:018}")))
        .collect();
    let data = encode_record(&events);
    let json_bytes: usize = events
        .iter()
        .map(|e| {
            serde_json::to_vec(&tally_domain::event::RawEvent::from(e))
                .map(|v| v.len())
                .unwrap_or(0)
        })
        .sum();
    let per_event = data.len() as f64 / events.len() as f64;
    assert!(per_event < 45.0, "{per_event} bytes per event");
    assert!(
        data.len() * 6 < json_bytes,
        "{} bytes packed vs {json_bytes} as JSON",
        data.len()
    );
}

#[test]
fn packing_groups_by_partition_key_and_respects_the_size_limit() {
    // 5,000 events of one campaign with long, unique user agents: many records per key.
    let events: Vec<Event> = (0..5_000)
        .map(|i| Event {
            user_agent: Some(format!("agent {i} {}", "x".repeat(300))),
            ..event(&format!("id-{i}"))
        })
        .collect();
    let records = pack(&events);
    let mut seen = 0;
    let mut keys = std::collections::BTreeSet::new();
    for r in &records {
        assert!(r.data.len() <= MAX_RECORD_BYTES, "{} bytes", r.data.len());
        assert!(r.data.len() + r.partition_key.len() <= 25_000);
        let decoded = unpack(&r.data).expect("unpacks");
        for e in &decoded {
            assert_eq!(partition_key(e), r.partition_key);
        }
        seen += decoded.len();
        keys.insert(r.partition_key.clone());
    }
    assert_eq!(seen, events.len());
    assert_eq!(keys.len(), 16, "one campaign spreads over 16 keys");
    // Records are well filled: fewer than 1.3x the minimum number.
    let total: usize = records.iter().map(|r| r.data.len()).sum();
    assert!(
        records.len() * MAX_RECORD_BYTES < total * 13 / 10 + 16 * MAX_RECORD_BYTES,
        "{} records for {total} bytes",
        records.len()
    );

    // Order within a key is kept, and all events come back.
    let mut back: Vec<Event> = records
        .iter()
        .flat_map(|r| unpack(&r.data).expect("unpacks"))
        .collect();
    for key in &keys {
        let original: Vec<&Event> = events.iter().filter(|e| &partition_key(e) == key).collect();
        let decoded: Vec<&Event> = back.iter().filter(|e| &partition_key(e) == key).collect();
        assert_eq!(original, decoded);
    }
    back.sort_by(|a, b| a.id.cmp(&b.id));
    let mut sorted = events.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(back, sorted);

    assert_eq!(pack(&[]), vec![]);
}

/// Unpacks `data` and renders the error (or `ok`).
#[track_caller]
fn check(data: &[u8], expect: &str) {
    let got = match unpack(data) {
        Ok(v) => format!("ok {}", v.len()),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expect);
}

/// Replaces the trailing checksum so that a deliberate change reaches the decoder's other checks.
fn reseal(mut data: Vec<u8>) -> Vec<u8> {
    let n = data.len() - 4;
    let crc = crc32c(&data[..n]);
    data[n..].copy_from_slice(&crc.to_le_bytes());
    data
}

#[test]
fn corrupt_records() {
    let good = encode_record(&[event("e1"), event("e2")]);
    check(&good, "ok 2");
    check(&[], "record is 0 bytes, too short to be a tally record");
    check(b"TL", "record is 2 bytes, too short to be a tally record");
    check(
        b"{\"kind\":\"click\"}",
        "record does not start with the tally magic bytes (is it from another producer?)",
    );
    check(
        &[0xF3, 0x89, 0x9A, 0xC2, 0, 0, 0, 0, 0, 0, 0, 0],
        "record does not start with the tally magic bytes (is it from another producer?)",
    );
    let mut v2 = good.clone();
    v2[3] = VERSION + 1;
    check(
        &v2,
        "record format version 2 is not supported (this build reads version 1)",
    );
    // Every single-bit flip is detected.
    for byte in 0..good.len() {
        for bit in 0..8 {
            let mut bad = good.clone();
            bad[byte] ^= 1 << bit;
            assert!(
                unpack(&bad).is_err(),
                "flip of bit {bit} in byte {byte} went unnoticed"
            );
        }
    }
    // Every truncation is detected.
    for n in 0..good.len() {
        assert!(
            unpack(&good[..n]).is_err(),
            "truncation to {n} bytes went unnoticed"
        );
    }
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(matches!(unpack(&bad), Err(WireError::Checksum { .. })));

    // Well-sealed but structurally wrong records.
    let mut count = good.clone();
    count[4] = 3;
    check(&reseal(count), "corrupt record at byte 128: truncated");
    let mut count = good.clone();
    count[4] = 0xff;
    count[5] = 0xff;
    check(
        &reseal(count),
        "corrupt record at byte 12: event count larger than the record can hold",
    );
    let mut zero = good.clone();
    zero[4] = 0;
    check(
        &reseal(zero),
        "corrupt record at byte 12: bytes after the last event",
    );
    // Layout: magic+version 0..4, count 4..6, base timestamp varint 6..12, first event from 12 (flags, kind).
    let mut flags = good.clone();
    flags[12] |= 0x80;
    check(
        &reseal(flags),
        "corrupt record at byte 13: reserved flag bit set",
    );
    let mut kind = good.clone();
    kind[13] = 0b111;
    check(
        &reseal(kind),
        "corrupt record at byte 14: unknown event kind code",
    );
    let mut device = good.clone();
    device[13] = 7 << 3;
    check(
        &reseal(device),
        "corrupt record at byte 14: unknown device class code",
    );
    let mut extra = good[..good.len() - 4].to_vec();
    extra.push(0);
    extra.extend_from_slice(&[0; 4]);
    check(
        &reseal(extra),
        "corrupt record at byte 128: bytes after the last event",
    );
}

#[test]
fn decoded_events_are_revalidated() {
    // A producer bug (or another producer) writing an event that breaks a field rule is caught on read.
    let bad = Event {
        campaign_id: "has space".to_owned(),
        ..event("e1")
    };
    check(
        &encode_record(&[event("e0"), bad]),
        r#"invalid event 1 in record: campaign_id: character " " not allowed, use only A-Z a-z 0-9 . _ : -"#,
    );
    let bad = Event {
        kind: EventKind::Click,
        value_micros: 5,
        ..event("e1")
    };
    check(&encode_record(&[bad]), "invalid event 0 in record: value_micros: only allowed on conversion events, not on click events");
    let bad = Event {
        client_ts_ms: Some(NOW + 10 * 60_000),
        ..event("e1")
    };
    assert!(matches!(
        unpack(&encode_record(&[bad])),
        Err(WireError::InvalidEvent { index: 0, .. })
    ));
}

#[test]
fn crc_known_answer() {
    // The CRC-32C check value from the catalogue of parametrised CRC algorithms.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc32c(b""), 0);
}
