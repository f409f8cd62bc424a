//! Which Kinesis partition key an event is written with.
//!
//! The key is `<campaign_id>#<bucket>`, where the bucket (`0`..`f`) is a stable hash of the event id modulo
//! [`BUCKETS`]. Kinesis hashes the key with MD5 onto a shard, so:
//!
//! * one huge campaign is spread over up to [`BUCKETS`] hash-key ranges, so over up to 16 shards, instead of
//!   becoming one hot shard;
//! * a campaign still lands on few shards, so each consumer sees few campaigns and its per-batch rollups (one
//!   metrics write per campaign, ad and minute) stay small; a purely random key would put every campaign on
//!   every shard and multiply the metrics writes by the shard count;
//! * the key depends on the event alone: a client that retries an event sends it to the same shard, where the
//!   consumer's per-shard deduplication sees it again;
//! * events with the same key can share one packed record ([`crate::wire::pack`]).
//!
//! The strategy is documented for users in `docs/stream-encoding.md`.

use crate::event::Event;
use crate::hll::hash64;

/// How many partition keys one campaign is spread over.
pub const BUCKETS: u64 = 16;

/// The bucket of an event id, `0..BUCKETS`. Stable across versions and platforms.
pub fn bucket(event_id: &str) -> u64 {
    hash64(event_id.as_bytes()) % BUCKETS
}

/// `<campaign_id>#<bucket in hex>`; at most 66 characters, well within Kinesis' 256.
/// `#` cannot occur in a campaign id, so the key is unambiguous.
pub fn partition_key(event: &Event) -> String {
    partition_key_of(&event.campaign_id, &event.id)
}

/// [`partition_key`] from the two fields it depends on.
pub fn partition_key_of(campaign_id: &str, event_id: &str) -> String {
    let mut key = String::with_capacity(campaign_id.len() + 2);
    key.push_str(campaign_id);
    key.push('#');
    let b = bucket(event_id) as u8;
    key.push(char::from(if b < 10 { b'0' + b } else { b'a' + b - 10 }));
    key
}
