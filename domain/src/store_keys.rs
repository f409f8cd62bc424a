//! The key layout of the counter store (Valkey in cluster mode), as pure functions.
//!
//! ElastiCache Serverless runs Valkey in cluster mode only: a `MULTI`/`EXEC` or a script may touch only keys of
//! one hash slot, and a script must name every key it touches in `KEYS`. The slot of a key is the CRC16
//! (XMODEM) of its *hash tag* — the bytes between the first `{` and the first `}` after it, when that is not
//! empty — or of the whole key otherwise, modulo 16,384 ([`hash_slot`]). The layout uses that:
//!
//! | key | type | slot | what |
//! |---|---|---|---|
//! | `{rt:<shard>}:mark` | string | the shard's | the fence mark: the last applied record of the shard, as [`Position::mark`] |
//! | `{rt:<shard>}:c#<campaign>#<minute>` | hash | the shard's | counters of one campaign and minute from this shard: field `<ad>#<counter>` per ad and [`Counter`]; in the settled lane also the unique-user sketch's registers, field `<ad>#u<register>` ([`user_field`]) holding the register's highest rank |
//! | `{rt:<shard>}:i#<minute>` | set | the shard's | the campaigns with counters in that minute from this shard (what the compactor folds) |
//! | `{rt}:shards` | set | its own | every shard that ever wrote to the lane (where the readers look) |
//! | `dedup:<md5(id) base64url>` | string | spread | the claim on an event id: [`Position::claim_value`] of the record that claimed it |
//!
//! The settled lane uses the same shapes under `st` instead of `rt`; both lanes share the claims (one event id,
//! one winning record, see `docs/counter-store.md`). Everything the atomic step of a batch touches (mark,
//! counter hashes, index sets) carries the tag `{<lane>:<shard>}`, so it is one slot by construction. Claims are
//! spread over all slots by the hash of the event id and are pipelined, never part of the atomic step.
//!
//! Separators are chosen outside the characters of the parts: shard ids are `[A-Za-z0-9_.-]`, campaign and ad
//! ids `[A-Za-z0-9._:-]` ([`crate::event::check_id`]), so `#` splits a key unambiguously and no part can contain
//! a brace that would move the hash tag.
//!
//! [`Position::mark`]: crate::exactly_once::Position::mark
//! [`Position::claim_value`]: crate::exactly_once::Position::claim_value

use md5::{Digest, Md5};

/// Hash slots of a Valkey / Redis cluster.
pub const SLOTS: u16 = 16_384;

/// Prefix of the claim keys.
pub const CLAIM_PREFIX: &str = "dedup:";

/// Which lane's counters a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreLane {
    /// Every deduplicated event, applied by the realtime function.
    Realtime,
    /// The valid subset, applied by the deferred function.
    Settled,
}

impl StoreLane {
    pub const ALL: [StoreLane; 2] = [StoreLane::Realtime, StoreLane::Settled];

    /// The lane's short name in keys: `rt` or `st`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoreLane::Realtime => "rt",
            StoreLane::Settled => "st",
        }
    }
}

/// One counter of a (campaign, ad, minute): a hash field `<ad>#<counter>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Impressions,
    Viewable,
    Clicks,
    Conversions,
    SpendMicros,
    ValueMicros,
}

impl Counter {
    pub const ALL: [Counter; 6] = [
        Counter::Impressions,
        Counter::Viewable,
        Counter::Clicks,
        Counter::Conversions,
        Counter::SpendMicros,
        Counter::ValueMicros,
    ];

    /// The field suffix (short: field names are stored once per ad and minute).
    pub fn as_str(self) -> &'static str {
        match self {
            Counter::Impressions => "imp",
            Counter::Viewable => "view",
            Counter::Clicks => "click",
            Counter::Conversions => "conv",
            Counter::SpendMicros => "spend",
            Counter::ValueMicros => "value",
        }
    }

    pub fn parse(s: &str) -> Option<Counter> {
        Counter::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// CRC16 with the XMODEM parameters (polynomial 0x1021, initial value 0, no reflection, no final xor): the
/// checksum Valkey / Redis cluster hashes keys with.
pub fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of a key that decides its slot: the bytes between the first `{` and the next `}` when there is
/// at least one byte between them, otherwise the whole key.
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        let rest = &key[open + 1..];
        if let Some(close) = rest.iter().position(|&b| b == b'}') {
            if close > 0 {
                return &rest[..close];
            }
        }
    }
    key
}

/// The cluster hash slot of a key, `0..SLOTS`.
pub fn hash_slot(key: &[u8]) -> u16 {
    crc16_xmodem(hash_tag(key)) % SLOTS
}

/// `{<lane>:<shard>}`: the hash tag of everything one shard's atomic step touches.
pub fn shard_tag(lane: StoreLane, shard: &str) -> String {
    format!("{{{}:{shard}}}", lane.as_str())
}

/// The fence mark of a shard: `{<lane>:<shard>}:mark`.
pub fn mark_key(lane: StoreLane, shard: &str) -> String {
    format!("{}:mark", shard_tag(lane, shard))
}

/// The counter hash of one campaign and minute from one shard: `{<lane>:<shard>}:c#<campaign>#<minute>`.
pub fn counter_key(lane: StoreLane, shard: &str, campaign_id: &str, minute: i64) -> String {
    format!("{}:c#{campaign_id}#{minute}", shard_tag(lane, shard))
}

/// A field of a counter hash: `<ad>#<counter>`.
pub fn counter_field(ad_id: &str, counter: Counter) -> String {
    format!("{ad_id}#{}", counter.as_str())
}

/// Splits a counter field back into the ad and the counter; `None` for anything else.
pub fn parse_counter_field(field: &str) -> Option<(&str, Counter)> {
    let (ad, counter) = field.rsplit_once('#')?;
    if ad.is_empty() || ad.contains('#') {
        return None;
    }
    Some((ad, Counter::parse(counter)?))
}

/// A register of an ad's unique-user sketch in a counter hash (settled lane): `<ad>#u<register>`, the register
/// index in decimal (`0..4096`, [`crate::hll::REGISTERS`]), holding the highest rank seen (`1..=53`).
pub fn user_field(ad_id: &str, register: u16) -> String {
    format!("{ad_id}#u{register}")
}

/// Splits a register field back into the ad and the register index; `None` for anything else (a counter
/// field, an index out of range, a non-canonical number).
pub fn parse_user_field(field: &str) -> Option<(&str, u16)> {
    let (ad, register) = field.rsplit_once('#')?;
    if ad.is_empty() || ad.contains('#') {
        return None;
    }
    let digits = register.strip_prefix('u')?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    let index: u16 = digits.parse().ok()?;
    (usize::from(index) < crate::hll::REGISTERS).then_some((ad, index))
}

/// Reads a counter key back: (lane, shard, campaign, minute); `None` for any other key.
pub fn parse_counter_key(key: &str) -> Option<(StoreLane, &str, &str, i64)> {
    let rest = key.strip_prefix('{')?;
    let (tag, rest) = rest.split_once('}')?;
    let (lane, shard) = tag.split_once(':')?;
    let lane = StoreLane::ALL.into_iter().find(|l| l.as_str() == lane)?;
    let (campaign, minute) = rest.strip_prefix(":c#")?.split_once('#')?;
    if shard.is_empty() || campaign.is_empty() || minute.contains('#') {
        return None;
    }
    Some((lane, shard, campaign, minute.parse().ok()?))
}

/// The set of campaigns with counters in a minute from one shard: `{<lane>:<shard>}:i#<minute>`.
pub fn index_key(lane: StoreLane, shard: &str, minute: i64) -> String {
    format!("{}:i#{minute}", shard_tag(lane, shard))
}

/// The set of shards that ever wrote to a lane: `{<lane>}:shards`.
pub fn shards_key(lane: StoreLane) -> String {
    format!("{{{}}}:shards", lane.as_str())
}

/// The claim key of an event id: `dedup:` and the MD5 of the id in unpadded base64url (22 characters).
///
/// Hashed so that every claim key has the same size whatever the id (memory is what the window costs), and so
/// that client-chosen ids spread over the slots like random ones (no hash tag: the alphabet has no braces, so
/// the slot is the whole key's). 128 bits make an accidental collision — two ids sharing a claim, the second
/// dropped as a duplicate — negligible (about 10⁻²³ for 72 million ids in a window); a deliberate one needs an
/// MD5 second preimage of someone else's id. Base64 rather than hex: 28 bytes instead of 40, which the server
/// stores in a smaller allocation (docs/counter-store.md, "What the claims cost").
pub fn claim_key(event_id: &str) -> String {
    let digest = Md5::digest(event_id.as_bytes());
    let mut key = String::with_capacity(CLAIM_PREFIX.len() + 22);
    key.push_str(CLAIM_PREFIX);
    // Three bytes make four characters; the last byte alone makes two.
    for chunk in digest.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            key.push(char::from(BASE64URL[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    key
}

/// The base64url alphabet (RFC 4648 §5).
const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_the_published_check_value() {
        // The CRC catalogue's check value of CRC-16/XMODEM, also the cluster specification's test vector.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(crc16_xmodem(b""), 0);
    }

    #[test]
    fn slots_match_the_published_examples() {
        // `CLUSTER KEYSLOT` examples from the Redis / Valkey / Dragonfly command documentation.
        for (key, slot) in [
            ("somekey", 11058),
            ("foo{hash_tag}", 2515),
            ("bar{hash_tag}", 2515),
            ("{user1}.following", 8106),
            ("foo", 12182),
            ("123456789", 0x31C3), // below 16,384: its own slot
        ] {
            assert_eq!(hash_slot(key.as_bytes()), slot, "{key}");
        }
    }

    #[test]
    fn hash_tag_rules() {
        for (key, tag) in [
            ("{user1000}.following", "user1000"),
            ("{user1000}.followers", "user1000"),
            ("foo{}{bar}", "foo{}{bar}"),
            ("foo{{bar}}zap", "{bar"),
            ("foo{bar}{zap}", "bar"),
            ("no tag", "no tag"),
            ("open{only", "open{only"),
            ("close}only{", "close}only{"),
            ("}{x}", "x"),
            ("{", "{"),
            ("{}", "{}"),
            ("", ""),
        ] {
            assert_eq!(hash_tag(key.as_bytes()), tag.as_bytes(), "{key}");
        }
    }

    #[test]
    fn shard_keys_share_the_shard_slot() {
        for lane in StoreLane::ALL {
            let shard = "shardId-000000000007";
            let slot = hash_slot(shard_tag(lane, shard).as_bytes());
            assert_eq!(
                slot,
                crc16_xmodem(format!("{}:{shard}", lane.as_str()).as_bytes()) % SLOTS
            );
            for key in [
                mark_key(lane, shard),
                counter_key(lane, shard, "cmp:1.a-b_c", 29_928_300),
                counter_key(lane, shard, "c", -1),
                index_key(lane, shard, 29_928_300),
            ] {
                assert_eq!(hash_slot(key.as_bytes()), slot, "{key}");
            }
        }
        assert_eq!(
            mark_key(StoreLane::Realtime, "shardId-000000000007"),
            "{rt:shardId-000000000007}:mark"
        );
        assert_eq!(
            counter_key(StoreLane::Settled, "s-1", "cmp-1", 29_928_300),
            "{st:s-1}:c#cmp-1#29928300"
        );
        assert_eq!(index_key(StoreLane::Realtime, "s", 5), "{rt:s}:i#5");
        assert_eq!(shards_key(StoreLane::Settled), "{st}:shards");
    }

    #[test]
    fn claim_keys() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e (RFC 1321's test suite).
        // MD5 in base64url without padding (`openssl dgst -md5 -binary | base64 | tr '+/' '-_'`).
        assert_eq!(claim_key(""), "dedup:1B2M2Y8AsgTpgAmY7PhCfg");
        assert_eq!(claim_key("abc"), "dedup:kAFQmDzST7DWlj99KOF_cg");
        let key = claim_key("evt-1");
        assert_eq!(key.len(), 28);
        assert_eq!(
            hash_tag(key.as_bytes()),
            key.as_bytes(),
            "no hash tag: the whole key"
        );
        assert_ne!(claim_key("evt-1"), claim_key("evt-2"));
        // Claims spread: 4,096 ids land in many distinct slots.
        let slots: std::collections::BTreeSet<u16> = (0..4096)
            .map(|i| hash_slot(claim_key(&format!("evt-{i}")).as_bytes()))
            .collect();
        assert!(slots.len() > 3_000, "{} distinct slots", slots.len());
    }

    #[test]
    fn counter_keys_round_trip() {
        for lane in StoreLane::ALL {
            let key = counter_key(lane, "shardId-1", "cmp:1", -7);
            assert_eq!(
                parse_counter_key(&key),
                Some((lane, "shardId-1", "cmp:1", -7))
            );
        }
        for bad in [
            "",
            "{rt:s}:mark",
            "{xx:s}:c#c#1",
            "{rt:}:c#c#1",
            "{rt:s}:c##1",
            "{rt:s}:c#c#",
            "{rt:s}:c#c#1#2",
            "{rt:s}:c#c#x",
            "rt:s:c#c#1",
        ] {
            assert_eq!(parse_counter_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn user_fields_round_trip() {
        for r in [0u16, 7, 4095] {
            let f = user_field("ad:1.x", r);
            assert_eq!(parse_user_field(&f), Some(("ad:1.x", r)));
            assert_eq!(parse_counter_field(&f), None, "{f}");
        }
        for bad in [
            "ad#u4096", "ad#u", "ad#u01", "ad#u-1", "ad#u+1", "#u1", "a#b#u1", "ad#imp", "ad#x1",
            "ad#u1 ",
        ] {
            assert_eq!(parse_user_field(bad), None, "{bad}");
        }
        for c in Counter::ALL {
            assert_eq!(parse_user_field(&counter_field("ad", c)), None);
        }
    }

    #[test]
    fn counter_fields_round_trip() {
        for c in Counter::ALL {
            let f = counter_field("ad:1.x", c);
            assert_eq!(parse_counter_field(&f), Some(("ad:1.x", c)));
        }
        for bad in ["", "#imp", "ad#", "ad#nope", "a#b#imp", "imp"] {
            assert_eq!(parse_counter_field(bad), None, "{bad}");
        }
    }
}
