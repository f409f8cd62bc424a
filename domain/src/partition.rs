//! Which Kinesis partition key a record is written with, and which shard a key lands on.
//!
//! `collect` writes each request's events as one record ([`crate::wire::pack_request`]) under one key per request,
//! drawn from [`RequestKeys`]: 32 hex digits of MD5(secret ‖ counter), with a 128-bit secret from the operating
//! system's randomness per process and a per-process counter. Kinesis hashes the key with MD5 onto a shard
//! ([`shard_of`]), so:
//!
//! * **Records spread uniformly over the shards.** Every key is distinct and looks random, so MD5 of it is
//!   uniform over the hash-key space and each of `n` shards gets 1/n of the records whatever the traffic mix
//!   (tested: chi-square over 2 and 16 shards in `domain/tests/it/partition.rs`).
//! * **A client cannot steer its records onto one shard.** The key depends on nothing the client sends (not its
//!   ids, campaigns, body or timing): it is a keyed hash of a counter under a secret the client never sees, and
//!   clients never see keys either (neither in answers nor anywhere else they can read). To pin its records to
//!   one shard an attacker would have to predict MD5 outputs under an unknown 128-bit key. A key derived from
//!   the request (campaign, ids) would let a client choose ids whose records all hash to one shard and
//!   saturate it (1,000 records/s, 1 MiB/s) for everyone; a plain counter would be predictable from a cold
//!   start. The keyed hash costs one MD5 of 24 bytes per request (about a tenth of a microsecond).
//! * **No hot key.** One key carries one request (at most 1 MiB), so no campaign, however large, concentrates on
//!   a shard; per-shard limits become a question of total throughput only.
//!
//! What this gives up: a campaign now lands on every shard, and a resent event may land on another shard than
//! its first copy. Neither matters to the counter store, which deduplicates by event id across shards
//! (`docs/counter-store.md`). The counter rows of today's DynamoDB layout (`functions/aws/src/metrics.rs`)
//! are written per (campaign, shard) and get more writers per campaign.
//!
//! [`BUCKETS`], [`bucket`] and [`partition_key_of`] are the per-event keys `collect` wrote before
//! (`<campaign>#<hash(id) mod 16>`); nothing in the pipeline uses them any more. They stay for the planner's
//! model of the DynamoDB lane (`xtask/src/plan/counters.rs`), which still routes campaigns by them.
//!
//! The strategy is documented for users in `docs/stream-encoding.md`.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};

use md5::{Digest, Md5};

use crate::hll::hash64;

/// Characters of a key from [`RequestKeys`]: 128 bits as hex.
pub const REQUEST_KEY_LEN: usize = 32;

/// Partition keys for requests: unpredictable, distinct, uniform under MD5 (see the module documentation).
/// Thread-safe; one per process.
pub struct RequestKeys {
    secret: [u8; 16],
    next: AtomicU64,
}

impl std::fmt::Debug for RequestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is what makes keys unpredictable: never printed.
        f.debug_struct("RequestKeys")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl RequestKeys {
    /// Keys under a secret from the operating system's randomness (through `std`'s `RandomState`, whose
    /// SipHash keys are drawn from it once per thread).
    pub fn random() -> RequestKeys {
        let state = RandomState::new();
        let (a, b) = (state.hash_one(0u8), state.hash_one(1u8));
        let mut secret = [0u8; 16];
        secret[..8].copy_from_slice(&a.to_le_bytes());
        secret[8..].copy_from_slice(&b.to_le_bytes());
        RequestKeys::with_secret(secret)
    }

    /// Keys under a given secret: the same sequence every time (tests, the planner).
    pub fn with_secret(secret: [u8; 16]) -> RequestKeys {
        RequestKeys {
            secret,
            next: AtomicU64::new(0),
        }
    }

    /// The next key: [`REQUEST_KEY_LEN`] lowercase hex digits, never repeated by this generator.
    pub fn next_key(&self) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let digest = Md5::new()
            .chain_update(self.secret)
            .chain_update(n.to_le_bytes())
            .finalize();
        let mut key = String::with_capacity(REQUEST_KEY_LEN);
        for b in digest {
            for nibble in [b >> 4, b & 0xf] {
                key.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
            }
        }
        key
    }
}

/// MD5 of a partition key as a 128-bit big-endian number: its place in Kinesis' hash-key space.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// The shard (0-based) of `shards` evenly split hash-key ranges that holds `partition_key`: Kinesis' routing
/// for a stream whose shards split the hash space evenly (as `CreateStream` and `UpdateShardCount` make them).
pub fn shard_of(partition_key: &str, shards: u32) -> u32 {
    let n = u128::from(shards.max(1));
    let (q, r) = (u128::MAX / n, u128::MAX % n);
    let start = |i: u128| q * i + (r + 1) * i / n;
    let h = hash_key(partition_key);
    // The last range whose start is at or below h.
    let (mut lo, mut hi) = (0u128, n - 1);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if start(mid) <= h {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo as u32
}

/// How many partition keys one campaign was spread over by the former per-event keys.
pub const BUCKETS: u64 = 16;

/// The bucket of an event id under the former per-event keys, `0..BUCKETS`.
pub fn bucket(event_id: &str) -> u64 {
    hash64(event_id.as_bytes()) % BUCKETS
}

/// The former per-event key `<campaign_id>#<bucket in hex>` (kept for the planner's DynamoDB model only).
pub fn partition_key_of(campaign_id: &str, event_id: &str) -> String {
    let mut key = String::with_capacity(campaign_id.len() + 2);
    key.push_str(campaign_id);
    key.push('#');
    let b = bucket(event_id) as u8;
    key.push(char::from(if b < 10 { b'0' + b } else { b'a' + b - 10 }));
    key
}
