//! The counter rows a batch writes and what DynamoDB charges for them, following
//! `functions/aws/src/metrics.rs` and `functions/realtime` / `functions/deferred`:
//!
//! * a batch of one shard is aggregated into a real `tally_domain::rollup::Rollup`, expanded like
//!   `metrics::rows` into one row per (campaign, ad or total, minute / hour / day bucket) of the lane;
//! * a row whose counters carry users (a sketch) is a read-modify-write: a consistent `GetItem` (charged on
//!   the whole item, projections do not reduce it), then an `UpdateItem` conditioned on `ver` and the shard's
//!   mark, charged on the larger of the item before and after; a row without users is one conditional
//!   `UpdateItem` with no read;
//! * a concurrent write by another shard between the read and the write fails the condition (charged on the
//!   existing item, AWS's rule) and costs a re-read and another attempt;
//! * the realtime lane also updates one campaign-index row per distinct campaign (conditional, no read).
//!
//! Item sizes come from `tally_billing::dynamodb::item_size` on items shaped like the ones `metrics.rs`
//! writes: key, the six counters, `ver`, `expires_at` (minute and hour rows), one `hw_<shard id>` fence mark
//! per shard that wrote the row, and the `users` sketch as `tally_domain::hll::Hll::to_bytes` encodes it for
//! the users the row has seen (sparse, or dense beyond 1,024 registers).
//!
//! Batches are Monte Carlo samples: events of one shard, drawn from the campaigns whose partition keys
//! (`<campaign>#<bucket>`, 16 buckets) route to that shard by the real MD5 hash-key rule.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};
use tally_domain::hll::Hll;
use tally_domain::partition::{partition_key_of, BUCKETS};
use tally_domain::rollup::{Counters, Rollup};
use tally_traffic::Profile;

use super::traffic::{self, campaign_id, shard_of, Zipf};

/// Campaigns whose 16 partition keys are routed exactly (MD5); beyond, the tail is sampled by rejection.
pub const EXACT_CAMPAIGNS: usize = 4096;
/// Sequence numbers as Kinesis writes them (and the local cloud): 56 digits, stored in a fence mark as a
/// 3-digit length + the digits, under `hw_shardId-` + 12 digits.
pub const SEQUENCE_DIGITS: usize = 56;
/// Read-modify-write attempts before the writer gives up (`metrics::MAX_CONFLICTS`).
pub const MAX_CONFLICTS: f64 = 12.0;
/// Events sampled per lane evaluation (batches × batch size), bounding the Monte Carlo's work.
pub const SAMPLE_EVENTS: usize = 3_000;
/// Batches sampled per lane evaluation, at least and at most.
pub const MIN_BATCHES: usize = 3;
pub const MAX_BATCHES: usize = 12;

/// An id whose `partition::bucket` is `b`, for each bucket: partition keys are then built by the real
/// `partition_key_of`.
fn bucket_ids() -> [String; BUCKETS as usize] {
    let mut out: [Option<String>; BUCKETS as usize] = Default::default();
    let mut i = 0u64;
    while out.iter().any(Option::is_none) {
        let id = format!("id-{i}");
        let b = tally_domain::partition::bucket(&id) as usize;
        if out[b].is_none() {
            out[b] = Some(id);
        }
        i += 1;
    }
    out.map(|id| id.unwrap_or_default())
}

/// The 16 shards of a campaign's 16 partition keys.
fn campaign_shards(rank: usize, shards: u32, ids: &[String]) -> [u32; BUCKETS as usize] {
    let c = campaign_id(rank);
    let mut out = [0u32; BUCKETS as usize];
    for (b, id) in ids.iter().enumerate() {
        out[b] = shard_of(&partition_key_of(&c, id), shards);
    }
    out
}

/// Where the profile's campaigns land on a stream of `shards` shards.
#[derive(Debug, Clone)]
pub struct Routing {
    pub shards: u32,
    zipf: Zipf,
    ids: [String; BUCKETS as usize],
    /// Per exactly routed campaign, the shard of each bucket.
    exact: Vec<[u32; BUCKETS as usize]>,
    /// Per shard, the cumulative weight of the exactly routed campaigns (share × buckets here / 16).
    cdf: Vec<Vec<f64>>,
    /// Per shard, the weight of the tail campaigns (ranks ≥ EXACT_CAMPAIGNS).
    tail: Vec<f64>,
}

impl Routing {
    pub fn new(profile: &Profile, shards: u32) -> Routing {
        let zipf = Zipf::new(profile.campaigns, profile.campaign_skew);
        let ids = bucket_ids();
        let shards = shards.max(1);
        let exact: Vec<[u32; 16]> = (0..zipf.len().min(EXACT_CAMPAIGNS))
            .map(|rank| campaign_shards(rank, shards, &ids))
            .collect();
        let mut cdf = vec![Vec::with_capacity(exact.len()); shards as usize];
        let mut sums = vec![0.0; shards as usize];
        for (rank, routes) in exact.iter().enumerate() {
            let share = zipf.share(rank) / BUCKETS as f64;
            for &s in routes {
                sums[s as usize] += share;
            }
            for (s, c) in cdf.iter_mut().enumerate() {
                c.push(sums[s]);
            }
        }
        let tail_share: f64 = (exact.len()..zipf.len()).map(|k| zipf.share(k)).sum();
        let tail = vec![tail_share / f64::from(shards); shards as usize];
        Routing {
            shards,
            zipf,
            ids,
            exact,
            cdf,
            tail,
        }
    }

    /// The share of all events that land on shard `s`.
    pub fn shard_share(&self, s: u32) -> f64 {
        self.cdf[s as usize].last().copied().unwrap_or(0.0) + self.tail[s as usize]
    }

    /// The share of shard `s`'s events that are campaign `rank`'s (its Zipf share times the part of its 16
    /// buckets routed to `s`, over the shard's share).
    pub fn share_on(&self, rank: usize, s: u32) -> f64 {
        let on = self
            .campaign_routes(rank)
            .iter()
            .filter(|&&shard| shard == s)
            .count() as f64;
        self.zipf.share(rank) * on / BUCKETS as f64 / self.shard_share(s).max(1e-300)
    }

    /// The shards of campaign `rank`'s buckets.
    pub fn campaign_routes(&self, rank: usize) -> [u32; 16] {
        match self.exact.get(rank) {
            Some(r) => *r,
            None => campaign_shards(rank, self.shards, &self.ids),
        }
    }

    /// A campaign rank drawn from the events of shard `s`.
    pub(crate) fn draw(&self, rng: &mut fastrand::Rng, s: u32) -> usize {
        let cdf = &self.cdf[s as usize];
        let head = cdf.last().copied().unwrap_or(0.0);
        let u = rng.f64() * (head + self.tail[s as usize]);
        if u < head {
            return cdf.partition_point(|&c| c <= u).min(cdf.len() - 1);
        }
        // The tail: a rank beyond the exact ones and a bucket, until the key routes to `s`.
        loop {
            let rank = self.zipf.rank(rng.f64());
            if rank < self.exact.len() {
                continue;
            }
            let b = rng.usize(0..BUCKETS as usize);
            if shard_of(
                &partition_key_of(&campaign_id(rank), &self.ids[b]),
                self.shards,
            ) == s
            {
                return rank;
            }
        }
    }

    /// Expected distinct campaigns and (campaign, ad) pairs in a batch of `n` events of shard `s` (the
    /// analytic expectation; the Monte Carlo below counts the real rows).
    pub fn expected_keys(&self, s: u32, n: f64, ads: u32) -> (f64, f64) {
        let cdf = &self.cdf[s as usize];
        let total = self.shard_share(s).max(1e-300);
        let ads = f64::from(ads.max(1));
        let (mut c, mut p) = (0.0, 0.0);
        let mut prev = 0.0;
        for &cum in cdf {
            let q = (cum - prev) / total;
            prev = cum;
            if q > 0.0 {
                c += 1.0 - (1.0 - q).powf(n);
                p += ads * (1.0 - (1.0 - q / ads).powf(n));
            }
        }
        // Tail campaigns: nearly every tail event is a new campaign.
        let tail = n * self.tail[s as usize] / total;
        (c + tail, p + tail)
    }
}

/// Which rows a lane writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rows {
    /// Minute, hour and day rows (today's layout).
    All,
    /// Minute rows only (a what-if).
    MinuteOnly,
    /// Settled rows plus the realtime lane's hour and day rows (the other half of the what-if).
    AllPlusRealtimeHourDay,
}

/// One lane evaluation's question.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    /// Events per batch of one shard.
    pub events: f64,
    /// Seconds the batch's events span (events / the shard's event rate).
    pub span_secs: f64,
    /// Seconds between two batches of one shard (conflicts: how often other shards write the same row).
    pub cycle_secs: f64,
    /// Events per second on the whole stream (how fast a row grows between batches).
    pub stream_events_per_sec: f64,
    /// A read-modify-write's exposure to other writers, seconds (read + write round trips).
    pub conflict_window_secs: f64,
    pub rows: Rows,
    /// The realtime lane (campaign index rows).
    pub realtime: bool,
    /// The table's history (`plan --check`: a load test's metered window): a batch at a uniform time inside it
    /// writes rows no older than that time. `None`: a steady day.
    pub history_secs: Option<f64>,
}

/// What one batch costs in DynamoDB, averaged over the sampled batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BatchUnits {
    pub events: f64,
    pub campaigns: f64,
    /// Counter rows written (each once, plus retries).
    pub rows: f64,
    /// Of them, rows carrying a sketch (read-modify-write).
    pub sketch_rows: f64,
    pub write_units: f64,
    pub read_units: f64,
    pub failed_conditional_writes: f64,
    /// Write units charged for the failed conditional writes (included in `write_units`).
    pub failed_write_units: f64,
    /// Campaign-index updates (realtime lane; included in `write_units`).
    pub index_writes: f64,
    /// Mean item size of the rows written, bytes (after the write).
    pub mean_item_bytes: f64,
    /// Batches sampled.
    pub batches: usize,
}

/// Bytes of `users` distinct users in a sketch, as `Hll::to_bytes` encodes them.
pub fn sketch_bytes(users: f64, cache: &mut HashMap<u64, usize>) -> usize {
    // Dense for sure well beyond SPARSE_MAX registers: a fixed size, no need to insert them all.
    let d = users.round().clamp(0.0, 20_000.0) as u64;
    // A log grid keeps the cache small.
    let key = if d < 64 {
        d
    } else {
        (f64::from(u32::try_from(d).unwrap_or(u32::MAX)).ln() * 40.0).round() as u64 + 1_000_000
    };
    *cache.entry(key).or_insert_with(|| {
        let mut h = Hll::new();
        let mut rng = fastrand::Rng::with_seed(d);
        for _ in 0..d {
            h.insert_hash(rng.u64(..));
        }
        h.to_bytes().len()
    })
}

/// Mean money per event of the generator's kinds: (spend micros, value micros).
fn money_per_event(kinds: &[f64; 4]) -> (f64, f64) {
    (
        kinds[0] * 6_250.0 + kinds[2] * 1_550_000.0,
        kinds[3] * 127_500_000.0,
    )
}

/// The DynamoDB item of a counter row as `metrics.rs` leaves it.
#[allow(clippy::too_many_arguments)]
pub fn counter_item(
    pk: &str,
    sk: &str,
    counts: [f64; 4],
    money: (f64, f64),
    ver: f64,
    marks: usize,
    expires: bool,
    sketch: usize,
) -> Map<String, Value> {
    let mut item = Map::new();
    item.insert(
        tally_contract::metrics_table::PARTITION_KEY.into(),
        json!({ "S": pk }),
    );
    item.insert(
        tally_contract::metrics_table::SORT_KEY.into(),
        json!({ "S": sk }),
    );
    let num = |v: f64| json!({ "N": format!("{}", v.round().max(1.0) as u64) });
    for (name, v) in ["impressions", "viewable", "clicks", "conversions"]
        .iter()
        .zip(counts)
    {
        if v >= 0.5 {
            item.insert((*name).into(), num(v));
        }
    }
    if money.0 >= 0.5 {
        item.insert("spend_micros".into(), num(money.0));
    }
    if money.1 >= 0.5 {
        item.insert("value_micros".into(), num(money.1));
    }
    item.insert("ver".into(), num(ver));
    let mark = format!("{:03}{}", SEQUENCE_DIGITS, "4".repeat(SEQUENCE_DIGITS));
    for i in 0..marks {
        item.insert(format!("hw_shardId-{i:012}"), json!({ "S": mark.clone() }));
    }
    if expires {
        item.insert(
            tally_contract::metrics_table::TTL_ATTRIBUTE.into(),
            json!({ "N": "1765000000" }),
        );
    }
    if sketch > 0 {
        // DynamoDB JSON carries binary as base64; item_size counts the raw bytes.
        item.insert("users".into(), json!({ "B": base64_of_len(sketch) }));
    }
    item
}

/// Base64 text of `n` raw bytes (the content does not matter for the size).
fn base64_of_len(n: usize) -> String {
    let mut s = "A".repeat(n.div_ceil(3) * 4);
    match n % 3 {
        1 => s.replace_range(s.len() - 2.., "=="),
        2 => s.replace_range(s.len() - 1.., "="),
        _ => {}
    }
    s
}

/// Resolution buckets as `metrics::Resolution`: minutes per bucket, whether rows expire, sort-key letter.
const RESOLUTIONS: [(i64, bool, &str); 3] = [(1, true, "m"), (60, true, "h"), (1440, false, "d")];

/// When a sampled batch starts: anywhere in the sample's day.
pub(crate) fn batch_start_ms(rng: &mut fastrand::Rng) -> i64 {
    traffic::SAMPLE_MS - traffic::SAMPLE_MS.rem_euclid(86_400_000) + rng.i64(0..86_400_000)
}

/// Samples batches of `spec` on a stream routed by `routing` and charges their rows.
pub fn sample(profile: &Profile, routing: &Routing, spec: &BatchSpec, seed: u64) -> BatchUnits {
    let n = spec.events.round().max(1.0) as usize;
    let batches = (SAMPLE_EVENTS / n).clamp(MIN_BATCHES, MAX_BATCHES);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sketches = HashMap::new();
    // Item sizes by (pk, sk lengths, events on a 5 % log grid, marks, expires, sketch): built once each.
    let mut sizes: HashMap<(usize, usize, i64, usize, bool, bool), u64> = HashMap::new();
    let users = f64::from(traffic::users(profile));
    let money = money_per_event(&profile.kinds);
    let ads = f64::from(profile.ads_per_campaign.max(1));
    let mut out = BatchUnits {
        batches,
        ..BatchUnits::default()
    };
    let mut item_bytes = 0.0;
    for b in 0..batches {
        let s = (b as u32) % routing.shards;
        if routing.shard_share(s) <= 0.0 {
            continue;
        }
        // The batch starts anywhere in the day; its events are spread evenly over its span.
        let start_ms = batch_start_ms(&mut rng);
        let step_ms = spec.span_secs * 1000.0 / n as f64;
        let mut rollup = Rollup::new();
        for i in 0..n {
            let rank = routing.draw(&mut rng, s);
            let at = start_ms + (i as f64 * step_ms) as i64;
            let e = traffic::event(&mut rng, profile, rank, String::new(), at, false);
            rollup.add(&e);
        }
        // Rows as `metrics::rows`: every (campaign, ad, minute) entry lands in its minute, hour and day bucket.
        let mut rows: BTreeMap<(String, Option<String>, usize, i64), Counters> = BTreeMap::new();
        let mut campaigns: BTreeMap<String, ()> = BTreeMap::new();
        for (key, counters) in rollup.iter() {
            campaigns.insert(key.campaign_id.clone(), ());
            for (r, &(minutes, _, _)) in RESOLUTIONS.iter().enumerate() {
                let keep = match spec.rows {
                    Rows::MinuteOnly => r == 0,
                    _ => true,
                };
                if keep {
                    let bucket = key.minute - key.minute.rem_euclid(minutes);
                    rows.entry((key.campaign_id.clone(), key.ad_id.clone(), r, bucket))
                        .or_default()
                        .merge(counters);
                }
            }
        }
        out.events += n as f64;
        out.campaigns += campaigns.len() as f64;
        if spec.realtime {
            // One conditional update per campaign, a ~60-byte item: 1 unit, charged whether it succeeds or not.
            out.index_writes += campaigns.len() as f64;
            out.write_units += campaigns.len() as f64;
        }
        let batch_start_min = start_ms.div_euclid(60_000);
        // Where this batch falls in the table's history (only used when it is bounded).
        let batch_time_in_history = if spec.history_secs.is_some() {
            rng.f64()
        } else {
            1.0
        };
        for ((campaign, ad, r, bucket), counters) in &rows {
            let (minutes, expires, letter) = RESOLUTIONS[r.to_owned()];
            let rank: usize = campaign
                .strip_prefix("cmp-")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let share = routing.zipf.share(rank) / if ad.is_some() { ads } else { 1.0 };
            let rate = spec.stream_events_per_sec * share;
            let age_secs = ((batch_start_min - bucket) as f64 * 60.0
                + (start_ms.rem_euclid(60_000)) as f64 / 1000.0)
                .clamp(0.0, minutes as f64 * 60.0);
            let age_secs = match spec.history_secs {
                Some(history) => age_secs.min(batch_time_in_history * history),
                None => age_secs,
            };
            let before = rate * age_secs;
            let exists = rng.f64() < 1.0 - (-before).exp();
            let delta = counters.events() as f64;
            let routes = routing.campaign_routes(rank);
            // Buckets of the campaign per shard it lands on (at most 16 shards).
            let mut per_shard: Vec<(u32, f64)> = Vec::with_capacity(BUCKETS as usize);
            for &sh in &routes {
                match per_shard.iter_mut().find(|(x, _)| *x == sh) {
                    Some((_, k)) => *k += 1.0,
                    None => per_shard.push((sh, 1.0)),
                }
            }
            // Shards that wrote the row: those whose buckets saw one of its events.
            let seen = |events: f64| -> f64 {
                per_shard
                    .iter()
                    .map(|(_, k)| 1.0 - (1.0 - k / BUCKETS as f64).powf(events))
                    .sum()
            };
            let marks_before = seen(before);
            let mine = per_shard
                .iter()
                .find(|(x, _)| *x == s)
                .map_or(0.0, |(_, k)| k / BUCKETS as f64);
            let marks_after = marks_before + (1.0 - mine).powf(before);
            let writes_per_cycle = seen(rate * spec.cycle_secs);
            let sk = format!(
                "{}#{letter}#0029000000#{}",
                if spec.realtime { "rt" } else { "st" },
                ad.as_deref().unwrap_or("*")
            );
            let pk = format!("c#{campaign}");
            let has_users = !counters.users.is_empty();
            let mut item = |m: f64, marks: f64| {
                let grid = if m < 20.0 {
                    m.round() as i64
                } else {
                    1000 + (m.ln() / 0.05).round() as i64
                };
                let m = if m < 20.0 {
                    m.round()
                } else {
                    ((grid - 1000) as f64 * 0.05).exp()
                };
                let marks_n = marks.round().max(1.0) as usize;
                let key = (pk.len(), sk.len(), grid, marks_n, expires, has_users);
                if let Some(size) = sizes.get(&key) {
                    return *size;
                }
                let d = users * (1.0 - (-m / users).exp());
                let sketch = if has_users {
                    sketch_bytes(d, &mut sketches)
                } else {
                    0
                };
                let counts = [0, 1, 2, 3].map(|i| m * profile.kinds[i]);
                let ver = (m.min(age_secs / spec.cycle_secs.max(1e-3) * marks)).max(1.0);
                let item = counter_item(
                    &pk,
                    &sk,
                    counts,
                    (m * money.0, m * money.1),
                    ver,
                    marks_n,
                    expires,
                    sketch,
                );
                let size = tally_billing::dynamodb::item_size(&item);
                sizes.insert(key, size);
                size
            };
            let m0 = if exists { before.max(1.0) } else { 0.0 };
            let size_before = if exists {
                item(m0, marks_before.max(1.0))
            } else {
                0
            };
            let size_after = item(m0 + delta, if exists { marks_after } else { 1.0 });
            item_bytes += size_after as f64;
            // The what-if's deferred lane writes the realtime hour and day rows too: the same row twice.
            let copies = if spec.rows == Rows::AllPlusRealtimeHourDay && *r > 0 {
                2.0
            } else {
                1.0
            };
            let write = copies * tally_billing::dynamodb::write_units(size_before.max(size_after));
            out.rows += copies;
            out.write_units += write;
            if has_users {
                out.sketch_rows += copies;
                let read = copies * tally_billing::dynamodb::read_units(size_before, true);
                // Other shards writing the row during our read-modify-write window fail our condition.
                let others = (writes_per_cycle - 1.0).max(0.0);
                let window = (spec.conflict_window_secs / spec.cycle_secs.max(1e-3)).min(1.0);
                let p = 1.0 - (1.0 - window).powf(others);
                let failures = (p / (1.0 - p).max(1.0 / MAX_CONFLICTS)).min(MAX_CONFLICTS - 1.0);
                let failures = failures * copies;
                let failed_units =
                    failures * tally_billing::dynamodb::write_units(size_before.max(size_after));
                out.read_units += read + read / copies * failures;
                out.failed_conditional_writes += failures;
                out.failed_write_units += failed_units;
                out.write_units += failed_units;
            }
        }
    }
    let k = batches.max(1) as f64;
    out.mean_item_bytes = item_bytes / out.rows.max(1.0);
    BatchUnits {
        events: out.events / k,
        campaigns: out.campaigns / k,
        rows: out.rows / k,
        sketch_rows: out.sketch_rows / k,
        write_units: out.write_units / k,
        read_units: out.read_units / k,
        failed_conditional_writes: out.failed_conditional_writes / k,
        failed_write_units: out.failed_write_units / k,
        index_writes: out.index_writes / k,
        mean_item_bytes: out.mean_item_bytes,
        batches,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(campaigns: u32, ads: u32) -> Profile {
        let mut p = Profile::flat(1000.0, 300).expect("profile");
        (p.campaigns, p.ads_per_campaign) = (campaigns, ads);
        p
    }

    #[test]
    fn routing_shares_add_up() {
        let p = profile(200, 4);
        let r = Routing::new(&p, 4);
        let total: f64 = (0..4).map(|s| r.shard_share(s)).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
        // One shard: everything.
        assert!((Routing::new(&p, 1).shard_share(0) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn sketches_as_the_encoder_writes_them() {
        let mut cache = HashMap::new();
        // Empty: format + precision + count.
        assert_eq!(sketch_bytes(0.0, &mut cache), 3);
        // Dense: 2 + 3,072 bytes.
        assert_eq!(sketch_bytes(10_000.0, &mut cache), 3074);
        let small = sketch_bytes(10.0, &mut cache);
        assert!((20..=35).contains(&small), "{small}");
    }

    #[test]
    fn item_sizes_follow_the_billing_rules() {
        // pk (2 + 9) + sk (2 + 18) + impressions 1 (11 + 2) + ver 1 (3 + 2) + one mark (23 + 59).
        let item = counter_item(
            "c#cmp-001",
            "rt#m#0029000000#*x",
            [1.0, 0.0, 0.0, 0.0],
            (0.0, 0.0),
            1.0,
            1,
            false,
            0,
        );
        let size = tally_billing::dynamodb::item_size(&item);
        assert_eq!(size, 11 + 20 + 13 + 5 + 82, "{item:?}");
        assert_eq!(base64_of_len(4).len(), 8);
    }

    #[test]
    fn one_event_batches_write_three_rows_per_key_with_a_read_each() {
        let p = profile(50, 3);
        let r = Routing::new(&p, 1);
        let spec = BatchSpec {
            events: 1.0,
            span_secs: 0.0,
            cycle_secs: 0.1,
            stream_events_per_sec: 10.0,
            conflict_window_secs: 0.01,
            rows: Rows::All,
            realtime: true,
            history_secs: None,
        };
        let u = sample(&p, &r, &spec, 1);
        // campaign total + ad, minute/hour/day: 6 rows, each read once; one index write.
        assert_eq!(u.rows, 6.0);
        assert_eq!(u.sketch_rows, 6.0);
        assert_eq!(u.index_writes, 1.0);
        assert_eq!(u.failed_conditional_writes, 0.0, "one shard: no conflicts");
        assert!(u.read_units >= 6.0 && u.write_units >= 7.0, "{u:?}");
        let minute = sample(
            &p,
            &r,
            &BatchSpec {
                rows: Rows::MinuteOnly,
                ..spec
            },
            1,
        );
        assert_eq!(minute.rows, 2.0);
    }

    #[test]
    fn more_shards_more_conflicts_on_hot_rows() {
        let p = profile(5, 1);
        let spec = BatchSpec {
            events: 50.0,
            span_secs: 0.05,
            cycle_secs: 0.05,
            stream_events_per_sec: 20_000.0,
            conflict_window_secs: 0.01,
            rows: Rows::All,
            realtime: true,
            history_secs: None,
        };
        let one = sample(&p, &Routing::new(&p, 1), &spec, 3);
        let eight = sample(&p, &Routing::new(&p, 8), &spec, 3);
        assert_eq!(one.failed_conditional_writes, 0.0);
        assert!(eight.failed_conditional_writes > 1.0, "{eight:?}");
    }
}
