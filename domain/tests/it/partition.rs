//! Partition keys: one per request, uniform over the shards under Kinesis' MD5 routing, and not a function of
//! anything a client sends.

use std::collections::BTreeSet;

use tally_domain::partition::{
    bucket, hash_key, partition_key_of, shard_of, RequestKeys, BUCKETS, REQUEST_KEY_LEN,
};
use tally_domain::wire::{pack_request, unpack};

use crate::fixtures::event;

/// Pearson's chi-square statistic of `n` keys over `shards` shards by the real routing ([`shard_of`]).
fn chi_square(keys: &RequestKeys, n: usize, shards: u32) -> f64 {
    let mut counts = vec![0u64; shards as usize];
    for _ in 0..n {
        counts[shard_of(&keys.next_key(), shards) as usize] += 1;
    }
    let expected = n as f64 / f64::from(shards);
    counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum()
}

/// Upper 10⁻⁶ (fixed secret) and 10⁻⁹ (random secret) points of chi-square with 1 and 15 degrees of freedom:
/// a fair spread stays below them; a key a client could steer (all records on one shard) scores n·(shards−1).
const CHI2_1E6: [(u32, f64); 2] = [(2, 24.0), (16, 57.0)];
const CHI2_1E9: [(u32, f64); 2] = [(2, 38.0), (16, 76.0)];

#[test]
fn request_keys_spread_uniformly_over_shards() {
    let n = 32_000;
    for (shards, bound) in CHI2_1E6 {
        let keys = RequestKeys::with_secret(*b"tally test key 1");
        let chi2 = chi_square(&keys, n, shards);
        assert!(
            chi2 < bound,
            "{shards} shards: chi-square {chi2:.1} ≥ {bound}"
        );
    }
    for (shards, bound) in CHI2_1E9 {
        let chi2 = chi_square(&RequestKeys::random(), n, shards);
        assert!(
            chi2 < bound,
            "{shards} shards: chi-square {chi2:.1} ≥ {bound}"
        );
    }
}

#[test]
fn a_client_cannot_steer_its_records() {
    // The attacker's best effort: the same body again and again, one campaign, ids of its choice. The records'
    // keys do not depend on it, so its records spread like anyone's.
    let keys = RequestKeys::with_secret(*b"tally test key 2");
    let body: Vec<_> = (0..25).map(|i| event(&format!("pin-{i}"))).collect();
    let mut counts = [0u64; 16];
    let n = 16_000;
    for _ in 0..n {
        for record in pack_request(&body, &keys.next_key()) {
            counts[shard_of(&record.partition_key, 16) as usize] += 1;
        }
    }
    let expected = n as f64 / 16.0;
    let chi2: f64 = counts
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / expected)
        .sum();
    assert!(chi2 < 57.0, "chi-square {chi2:.1}: {counts:?}");
    // And the same request gets a new key each time.
    let a = pack_request(&body, &keys.next_key());
    let b = pack_request(&body, &keys.next_key());
    assert_eq!(a[0].data, b[0].data);
    assert_ne!(a[0].partition_key, b[0].partition_key);
}

#[test]
fn request_keys_are_distinct_hex_and_fit_kinesis() {
    let keys = RequestKeys::with_secret([7; 16]);
    let mut seen = BTreeSet::new();
    for _ in 0..10_000 {
        let key = keys.next_key();
        assert_eq!(key.len(), REQUEST_KEY_LEN);
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{key}"
        );
        assert!(seen.insert(key), "a key repeated");
    }
    // The same secret gives the same sequence (tests, the planner); another secret, or a random one, another.
    let first = |k: RequestKeys| k.next_key();
    assert_eq!(
        first(RequestKeys::with_secret([7; 16])),
        first(RequestKeys::with_secret([7; 16]))
    );
    assert_ne!(
        first(RequestKeys::with_secret([7; 16])),
        first(RequestKeys::with_secret([8; 16]))
    );
    assert_ne!(first(RequestKeys::random()), first(RequestKeys::random()));
    // The secret is never printed.
    let debug = format!("{:?}", RequestKeys::with_secret(*b"do-not-print-me!"));
    assert!(!debug.contains("do-not"), "{debug}");
}

#[test]
fn keys_are_shared_by_the_records_of_a_request() {
    let keys = RequestKeys::with_secret([1; 16]);
    let key = keys.next_key();
    let events: Vec<_> = (0..300).map(|i| event(&format!("e-{i}"))).collect();
    let records = tally_domain::wire::pack_request_within(&events, &key, 2_000);
    assert!(records.len() > 1);
    assert!(records.iter().all(|r| r.partition_key == key));
    let back: Vec<_> = records
        .iter()
        .flat_map(|r| unpack(&r.data).expect("unpacks"))
        .collect();
    assert_eq!(back, events);
}

#[test]
fn routing_follows_the_hash_key_ranges() {
    // One shard holds everything; two shards split at 2^127.
    assert_eq!(shard_of("anything", 1), 0);
    assert_eq!(shard_of("anything", 0), 0, "no shards is read as one");
    for key in ["a", "b", "cmp-000001#3", "0123456789abcdef0123456789abcdef"] {
        let expect = u32::from(hash_key(key) > u128::MAX / 2);
        assert_eq!(shard_of(key, 2), expect, "{key}");
        assert!(shard_of(key, 7) < 7);
    }
    // MD5("a") = 0cc175b9c0f1b6a831c399e269772661 (RFC 1321): the first 16th of the space.
    assert_eq!(hash_key("a"), 0x0cc1_75b9_c0f1_b6a8_31c3_99e2_6977_2661);
    assert_eq!(shard_of("a", 16), 0);
    assert_eq!(shard_of("a", 4), 0);
    // MD5("") = d41d8cd98f00b204e9800998ecf8427e: 0xd4 / 0x100 of the space, shard 13 of 16.
    assert_eq!(shard_of("", 16), 13);
}

#[test]
fn former_per_event_keys_are_stable() {
    // Pinned for the planner's model of the DynamoDB lane (`xtask/src/plan/counters.rs`), which still routes
    // campaigns by them.
    let check = |campaign: &str, id: &str, expect: &str| {
        assert_eq!(partition_key_of(campaign, id), expect);
    };
    check("cmp-1", "ev-1", "cmp-1#0");
    check("cmp-1", "ev-2", "cmp-1#3");
    check("c", "a", "c#e");
    check(
        &"c".repeat(64),
        &"e".repeat(64),
        &format!("{}#f", "c".repeat(64)),
    );
    assert!((0..1000).all(|i| bucket(&format!("{i}")) < BUCKETS));
}
