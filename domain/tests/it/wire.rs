//! The stream encoding: round trips, packing, and corrupt input.

use tally_domain::event::{DeviceClass, Event, EventKind, Trust};
use tally_domain::ingest::MAX_EVENTS_PER_BODY;
use tally_domain::partition::partition_key_of;
use tally_domain::wire::{
    crc32c, encode_record, event_count, pack, pack_request, pack_request_within, unpack,
    StreamRecord, WireError, MAX_EVENTS_PER_RECORD, MAX_RECORD_BYTES, VERSION,
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
        trust: Trust::Authenticated,
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
        // Every trust, with and without money, on every device code.
        vec![
            Event {
                trust: Trust::Signed,
                ..conversion.clone()
            },
            Event {
                trust: Trust::Unsigned,
                cost_micros: 0,
                device: DeviceClass::Ctv,
                ..event("u1")
            },
            Event {
                trust: Trust::Unsigned,
                ..minimal("u2")
            },
            Event {
                trust: Trust::Signed,
                device: DeviceClass::Ctv,
                ..event("s1")
            },
        ],
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

/// The events of `records`, in record order.
fn unpacked(records: &[StreamRecord]) -> Vec<Event> {
    records
        .iter()
        .flat_map(|r| unpack(&r.data).expect("unpacks"))
        .collect()
}

const KEY: &str = "0123456789abcdef0123456789abcdef";

#[test]
fn a_request_is_one_record_whatever_its_campaigns() {
    // 25 events over 25 campaigns (the former per-event keys made that 25 records).
    let events: Vec<Event> = (0..25)
        .map(|i| Event {
            campaign_id: format!("cmp-{i}"),
            ..event(&format!("id-{i}"))
        })
        .collect();
    let records = pack_request(&events, KEY);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].partition_key, KEY);
    assert_eq!(unpack(&records[0].data), Ok(events.clone()));

    // The largest body collect takes (1,000 events) of the largest events the rules allow: four records of at
    // most MAX_EVENTS_PER_RECORD events (the counter store's request limit, not the bytes, decides).
    let big: Vec<Event> = (0..MAX_EVENTS_PER_BODY).map(|i| hostile(i, 0)).collect();
    let records = pack_request(&big, &"k".repeat(256));
    assert_eq!(records.len(), 4);
    let bytes: usize = records.iter().map(|r| r.data.len()).sum();
    assert!(
        (900_000..1_000_000).contains(&bytes),
        "about 0.95 MB in all (docs/stream-encoding.md): {bytes}"
    );
    assert_eq!(unpacked(&records), big);

    assert_eq!(pack_request(&[], KEY), vec![]);
}

/// An event with every field at its longest (64-character ids, 128-character user, 512-byte user agent),
/// unique strings so that nothing is shared, and a receive time `skew` ms after `NOW`.
fn hostile(i: usize, skew: i64) -> Event {
    let pad =
        |prefix: &str, len: usize| format!("{prefix}{i:08}{}", "x".repeat(len - prefix.len() - 8));
    Event {
        kind: EventKind::Conversion,
        campaign_id: pad("c", 64),
        ad_id: pad("a", 64),
        placement_id: Some(pad("p", 64)),
        user_id: Some(pad("u", 128)),
        client_ts_ms: Some(NOW - 7 * 24 * 3_600_000 + skew),
        received_ms: NOW + skew,
        cost_micros: 100_000_000,
        value_micros: 1_000_000_000_000,
        country: Some("DE".to_owned()),
        trust: Trust::Authenticated,
        user_agent: Some(pad("Mozilla ", 512)),
        ..event(&pad("i", 64))
    }
}

#[test]
fn huge_requests_split_into_the_fewest_records_under_the_limit() {
    // 3,000 of the largest events: about 2.8 MB, more than Kinesis takes in one record. Bytes alone would
    // need 3 records; the events per record (MAX_EVENTS_PER_RECORD: a valid event encodes to at most about
    // 1 KB, so 256 of them never reach the byte limit) need 12.
    let events: Vec<Event> = (0..3_000).map(|i| hostile(i, 0)).collect();
    let key = "k".repeat(256);
    let records = pack_request(&events, &key);
    let total: usize = records.iter().map(|r| r.data.len()).sum();
    assert_eq!(
        records.len(),
        total
            .div_ceil(MAX_RECORD_BYTES - 256)
            .max(events.len().div_ceil(MAX_EVENTS_PER_RECORD))
    );
    for r in &records {
        assert!(r.data.len() + r.partition_key.len() <= MAX_RECORD_BYTES);
        assert!(event_count(&r.data).is_ok_and(|n| n <= MAX_EVENTS_PER_RECORD));
        assert_eq!(r.partition_key, key);
    }
    assert_eq!(unpacked(&records), events, "every event once, in order");

    // 70,000 of the smallest events: records of MAX_EVENTS_PER_RECORD (the 16-bit count is far off).
    let tiny: Vec<Event> = (0..70_000)
        .map(|i| Event {
            campaign_id: "c".to_owned(),
            ad_id: "a".to_owned(),
            ..minimal(&format!("{i}"))
        })
        .collect();
    let records = pack_request(&tiny, KEY);
    assert_eq!(
        records
            .iter()
            .map(|r| event_count(&r.data))
            .collect::<Vec<_>>(),
        [vec![Ok(MAX_EVENTS_PER_RECORD); 273], vec![Ok(112)]].concat()
    );
    assert_eq!(unpacked(&records), tiny);

    // A limit below one event: one event per record, never an empty record.
    let few: Vec<Event> = (0..3).map(|i| hostile(i, 0)).collect();
    let records = pack_request_within(&few, KEY, 10);
    assert_eq!(records.len(), 3);
    assert_eq!(unpacked(&records), few);
}

#[test]
fn trust_bits_are_checked() {
    // kind/device byte of an impression on desktop: trust in bits 6-7.
    let unsigned = Event {
        trust: Trust::Unsigned,
        cost_micros: 0,
        device: DeviceClass::Desktop,
        ..minimal("e1")
    };
    let good = encode_record(std::slice::from_ref(&unsigned));
    let kd = 4 + 2 + 6 + 1; // magic+version, count, base_ms (6 bytes for NOW), flags
    assert_eq!(good[kd], 0b1000_1000, "{good:02x?}");
    assert_eq!(unpack(&good), Ok(vec![unsigned]));
    // Trust code 3 does not exist.
    let mut bad = good.clone();
    bad[kd] |= 0b1100_0000;
    check(
        &reseal(bad),
        "corrupt record at byte 14: unknown trust code",
    );
    // A version 1 record has no trust bits: set, they are a corrupt device code.
    let mut v1 = good.clone();
    v1[3] = 1;
    check(
        &reseal(v1),
        "corrupt record at byte 14: unknown device class code",
    );
    // Money on an unsigned event is refused on the way out: a forged record cannot carry it.
    let mut forged = encode_record(&[Event {
        trust: Trust::Authenticated,
        ..event("f1")
    }]);
    forged[kd] |= 0b1000_0000;
    check(
        &reseal(forged),
        "invalid event 0 in record: cost_micros: money on an unsigned event; money is only taken from authenticated posts and signed pixels",
    );
}

#[test]
fn old_records_still_decode() {
    // What `collect` wrote before one record per request (the former `pack`: per-event keys, one campaign and
    // bucket per record): the same format, version 1, read by the same decoder.
    let events: Vec<Event> = (0..40)
        .map(|i| Event {
            campaign_id: format!("cmp-{}", i % 3),
            ..event(&format!("old-{i}"))
        })
        .collect();
    let old = pack(&events);
    assert!(old.len() > 3, "{} records", old.len());
    let mut back = Vec::new();
    for r in &old {
        assert_eq!(r.data[3], VERSION);
        let run = unpack(&r.data).expect("an old record decodes");
        assert!(run
            .iter()
            .all(|e| partition_key_of(&e.campaign_id, &e.id) == r.partition_key));
        back.extend(run);
    }
    back.sort_by(|a, b| a.id.cmp(&b.id));
    let mut sorted = events.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(back, sorted);
    assert_eq!(VERSION, 2);
    assert_eq!(
        pack_request(&events, KEY)[0].data,
        encode_record(&events),
        "the layout is unchanged"
    );
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
        "record format version 3 is not supported (this build reads versions 1 to 2)",
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
