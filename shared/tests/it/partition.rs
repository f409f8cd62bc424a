//! Partition keys: stable, spread, and a function of the event alone.

use std::collections::BTreeMap;

use tally_domain::event::Event;
use tally_domain::partition::{bucket, partition_key, partition_key_of, BUCKETS};

use crate::fixtures::event;

#[track_caller]
fn check(campaign: &str, id: &str, expect: &str) {
    assert_eq!(partition_key_of(campaign, id), expect);
    let e = Event {
        campaign_id: campaign.to_owned(),
        ..event(id)
    };
    assert_eq!(partition_key(&e), expect);
}

#[test]
fn keys_are_stable() {
    // Pinned: a change here moves live traffic between shards and breaks per-shard deduplication.
    check("cmp-1", "ev-1", "cmp-1#0");
    check("cmp-1", "ev-2", "cmp-1#3");
    check("c", "a", "c#e");
    check(
        &"c".repeat(64),
        &"e".repeat(64),
        &format!("{}#f", "c".repeat(64)),
    );
}

#[test]
fn one_campaign_spreads_evenly() {
    let mut counts = BTreeMap::new();
    let n = 160_000;
    for i in 0..n {
        *counts
            .entry(bucket(&format!("{i:08x}-event")))
            .or_insert(0u32) += 1;
    }
    assert_eq!(counts.len() as u64, BUCKETS);
    let expected = n as f64 / BUCKETS as f64;
    for (b, c) in counts {
        let dev = (f64::from(c) - expected).abs() / expected;
        assert!(dev < 0.03, "bucket {b}: {c} of {n} events ({dev:.3} off)");
    }
}

#[test]
fn keys_fit_kinesis() {
    let e = Event {
        campaign_id: "c".repeat(64),
        ..event(&"e".repeat(64))
    };
    let key = partition_key(&e);
    assert!(key.len() <= 256 && key.len() == 66);
    assert!(key.is_ascii());
}
