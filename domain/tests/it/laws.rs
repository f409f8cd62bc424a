//! Property tests: the algebra of rollups and sketches, round trips, and decoders that never panic.

use proptest::prelude::*;
use tally_domain::event::{Event, RawEvent};
use tally_domain::hll::Hll;
use tally_domain::ingest::{decode_body, decode_pixel};
use tally_domain::rollup::Rollup;
use tally_domain::wire::{encode_record, pack_request, pack_request_within, unpack};

use crate::fixtures::{any_event, NOW};

fn events(max: usize) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::vec(any_event(), 0..max)
}

fn merged(a: &Rollup, b: &Rollup) -> Rollup {
    let mut m = a.clone();
    m.merge(b);
    m
}

fn hll_of(items: &[u32]) -> Hll {
    let mut h = Hll::new();
    for i in items {
        h.insert(&i.to_le_bytes());
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn rollup_merge_is_associative(a in events(30), b in events(30), c in events(30)) {
        let (a, b, c): (Rollup, Rollup, Rollup) = (a.iter().collect(), b.iter().collect(), c.iter().collect());
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
    }

    #[test]
    fn rollup_merge_is_commutative_with_identity(a in events(40), b in events(40)) {
        let (a, b): (Rollup, Rollup) = (a.iter().collect(), b.iter().collect());
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        prop_assert_eq!(merged(&a, &Rollup::new()), a.clone());
        prop_assert_eq!(merged(&Rollup::new(), &a), a);
    }

    #[test]
    fn aggregating_a_concatenation_is_merging_the_aggregates(a in events(40), b in events(40)) {
        let whole: Rollup = a.iter().chain(b.iter()).collect();
        let parts = merged(&a.iter().collect(), &b.iter().collect());
        prop_assert_eq!(whole, parts);
    }

    #[test]
    fn hll_merge_laws(a in prop::collection::vec(any::<u32>(), 0..2000), b in prop::collection::vec(any::<u32>(), 0..2000), c in prop::collection::vec(any::<u32>(), 0..50)) {
        let (ha, hb, hc) = (hll_of(&a), hll_of(&b), hll_of(&c));
        let m = |x: &Hll, y: &Hll| { let mut z = x.clone(); z.merge(y); z };
        prop_assert_eq!(m(&m(&ha, &hb), &hc), m(&ha, &m(&hb, &hc)));
        prop_assert_eq!(m(&ha, &hb), m(&hb, &ha));
        prop_assert_eq!(m(&ha, &ha), ha.clone());
        let all: Vec<u32> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(m(&ha, &hb), hll_of(&all));
        let bytes = ha.to_bytes();
        prop_assert_eq!(Hll::from_bytes(&bytes), Ok(ha));
    }

    #[test]
    fn encoding_round_trips(events in events(60)) {
        if !events.is_empty() {
            prop_assert_eq!(unpack(&encode_record(&events)), Ok(events.clone()));
        }
        let mut back: Vec<Event> = Vec::new();
        for r in pack_request(&events, "k") {
            back.extend(unpack(&r.data).map_err(|e| TestCaseError::fail(e.to_string()))?);
        }
        prop_assert_eq!(&back, &events);
        // Rollups do not depend on how events were packed.
        prop_assert_eq!(back.iter().collect::<Rollup>(), events.iter().collect::<Rollup>());
    }

    #[test]
    fn packing_keeps_every_event_once_in_order_in_the_fewest_records(
        events in events(80),
        repeats in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        same_time in any::<bool>(),
        limit in 0usize..12_000,
        key_len in 1usize..=256,
    ) {
        // Ids repeated within the request (a client resending inside one body), and sometimes one receive time.
        let mut events = events;
        if !events.is_empty() {
            for r in repeats {
                let copy = events[r.index(events.len())].clone();
                events.push(copy);
            }
        }
        if same_time {
            for e in &mut events {
                let delta = e.client_ts_ms.map(|ts| ts - e.received_ms);
                e.received_ms = NOW;
                e.client_ts_ms = delta.map(|d| NOW + d);
            }
        }
        let key = "k".repeat(key_len);
        let records = pack_request_within(&events, &key, limit);
        let mut back: Vec<Event> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            prop_assert_eq!(&r.partition_key, &key);
            let run = unpack(&r.data).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(!run.is_empty());
            let size = r.data.len() + key.len();
            // Within the limit, unless one event alone does not fit.
            prop_assert!(size <= limit || run.len() == 1, "record {} is {} bytes over {}", i, size, limit);
            // Full: the next event would not have fitted (so, with one receive time, no fewer records exist).
            if let Some(next) = events.get(back.len() + run.len()) {
                let mut grown = run.clone();
                grown.push(next.clone());
                prop_assert!(encode_record(&grown).len() + key.len() > limit, "record {} could take the next event", i);
            }
            back.extend(run);
        }
        prop_assert_eq!(back, events);
    }

    #[test]
    fn validation_round_trips(e in any_event()) {
        let again = RawEvent::from(&e).validate(e.received_ms, &mut || unreachable!());
        prop_assert_eq!(again, Ok(e));
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = unpack(&bytes);
        let _ = Hll::from_bytes(&bytes);
        let _ = decode_body(&bytes, None);
        let _ = decode_body(&bytes, Some("application/x-ndjson"));
        let text = String::from_utf8_lossy(&bytes);
        let _ = decode_pixel(&text);
    }

    #[test]
    fn mutated_records_never_panic(events in events(8), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        prop_assume!(!events.is_empty());
        let mut data = encode_record(&events);
        for (i, x) in flips {
            let at = i.index(data.len());
            data[at] ^= x | 1;
        }
        // Detected (checksum) or, when resealed, rejected or decoded, but never a panic.
        prop_assert!(unpack(&data).is_err());
        let n = data.len() - 4;
        let crc = tally_domain::wire::crc32c(&data[..n]);
        data[n..].copy_from_slice(&crc.to_le_bytes());
        let _ = unpack(&data);
    }

    #[test]
    fn json_like_bodies_never_panic(body in "[\\[\\]{}\":,0-9a-z_\\- \n]{0,300}") {
        let _ = decode_body(body.as_bytes(), None);
        let _ = decode_body(body.as_bytes(), Some("text/plain"));
        if let Ok(items) = decode_body(body.as_bytes(), Some("application/json")) {
            for raw in items.into_iter().flatten() {
                let _ = raw.validate(NOW, &mut || "gen".to_owned());
            }
        }
    }
}
