//! The counter cache (ElastiCache Serverless for Valkey) and the compactor: what the cache lanes send per batch
//! and what it costs in ECPU, what the cache stores, how long a batch waits on it, and what the compactor writes
//! to DynamoDB. Details: `docs/plan.md` ("The counter cache").
//!
//! A batch of a cache lane, as `tally_aws::store` runs it (docs/counter-store.md): one `SET <claim> <record> NX
//! GET EX <window>` per distinct event id and the shard's mark `GET`, all in flight at once (one round trip);
//! then one `EVALSHA` of the apply script, which runs `GET` + `SET` of the mark, one `HINCRBY` per (campaign,
//! minute, ad, non-zero counter), and for a *new* hash only (its first field absent before the step) one
//! `SADD` to its minute's set and one `EXPIRE … NX`, plus one `EXPIRE` per set that listed a new hash. Whether
//! a hash is new is priced by [`NewHashes`]: the chance that no event reached its first field since its minute
//! began, from the profile's campaign, ad and kind mix on the batch's shard.
//! The claims, the mark and the script's keys and arguments are built by the real code
//! (`tally_domain::exactly_once::{Batch, plan_apply, ApplyPlan::script_keys, ApplyPlan::script_args}`), so their
//! sizes are exact; their ECPU follow `tally_billing::elasticache`: a simple request 1 per KB transferred (at
//! least 1), the script `max(its commands, its KB)` (the commands inside a script count one each, as the local
//! meter counts them).

use std::collections::HashMap;

use serde_json::{json, Map};
use tally_billing::elasticache::request_ecpu;
use tally_domain::event::Event;
use tally_domain::exactly_once::{plan_apply, Batch, Position, MAX_REQUEST_ARGS};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::{mark_key, Counter, StoreLane};
use tally_traffic::Profile;

use super::counters::{sketch_bytes, Routing};
use super::traffic::{self, Zipf};

/// (p50, p99) ms of one round trip between a function and the cache in the same VPC and zone. Assumption: AWS
/// describes ElastiCache Serverless reads as sub-millisecond at p50 (about 0.5 ms in the same zone) and
/// low single-digit milliseconds at p99; to be replaced by a measurement on AWS.
pub const CACHE_RTT_MS: (f64, f64) = (0.5, 2.0);
/// Claims in flight at once (`tally_aws::store`: up to 1,024), so a batch's claims take one round trip per
/// 1,024 claims (the mark's `GET` rides along with the first).
pub const CLAIMS_IN_FLIGHT: f64 = 1024.0;
/// Server time of one simple command, ms (docs/counter-store.md "What a batch costs": 1.6–2.3 µs a claim on
/// valkey-server). Commands of one batch are served one after another (most land on one node at a time).
pub const SERVER_MS_PER_COMMAND: f64 = 0.002;
/// The dedup window when the template gives none (`TALLY_DEDUP_WINDOW_SECS`; tally's default).
pub const DEFAULT_DEDUP_WINDOW_SECS: f64 = 3600.0;
/// Bytes one claim holds in the cache (`used_memory` per claim: key `dedup:<22 base64url>`, value `<shard
/// number>!<32 base-62 digits>`, its expiry and table entries), measured on valkey-server by the test
/// `a_claim_holds_about_this_many_bytes` (pinned within 20 %; 114.9 bytes, against 180 with the former
/// `dedup:{<32 hex>}` key and `shardId-…:<56 digits>` value).
pub const CLAIM_BYTES: f64 = 115.0;
/// Bytes of one counter hash or index set in the cache besides its fields (key name `{rt:shardId-…}:c#<campaign>#
/// <minute>`, dictionary entry, expiry, listpack header): measured on valkey-server by
/// `hash_fields_hold_about_this_many_bytes` (109–110; pinned within 20 %).
pub const HASH_KEY_BYTES: f64 = 110.0;
/// Bytes of one hash field (`<ad>#<counter>` or `<ad>#u<register>` and its value) or set member: measured by the
/// same test (17.2 a field, listpack and hash-table hashes together; pinned within 20 %; 24 was assumed before).
pub const HASH_FIELD_BYTES: f64 = 18.0;
/// How long counter hashes and index sets stay in the cache: until the compactor writes their minute's
/// settled-final item (the minute, the settled grace of `CompactPolicy::default`, and the next run a minute
/// later), then [`tally_domain::compact::FOLDED_TTL_SECS`] (the compactor lets the minute go: `EXPIRE … LT`),
/// not the lanes' whole TTL (`COUNTER_TTL_SECS`, three hours).
pub fn counter_held_secs() -> f64 {
    let grace_ms = tally_domain::compact::CompactPolicy::default().settled_grace_ms;
    (60_000 + grace_ms + 60_000) as f64 / 1000.0 + tally_domain::compact::FOLDED_TTL_SECS as f64
}
/// The counter TTL the lanes pass to the script (`EXPIRE … NX` on each new hash when non-zero).
pub const COUNTER_TTL_SECS: u64 = tally_domain::compact::COUNTER_TTL_SECS;
/// DynamoDB round trip and writes in flight of the compactor (as the lanes' table writes).
pub const COMPACTOR_PUTS_IN_FLIGHT: f64 = 16.0;
/// Bytes of a compacted item's name part (key, watermark fields) — `ASSUMED_COMPACT_*` stand in for the real
/// encoder (`tally_domain::compact`) until it lands: about 30 bytes of name, then per ad its id and both lanes'
/// six counters (small varints, 2 bytes each).
pub const ASSUMED_COMPACT_NAME_BYTES: usize = 30;
pub const ASSUMED_COMPACT_BYTES_PER_NUMBER: usize = 2;
/// Commands the script runs per unique-user register pair: `HGET`, and `HSET` when the rank is higher
/// (counted always: an upper bound).
pub const REGISTER_COMMANDS: f64 = 2.0;
/// A realistic sequence number: 56 digits, as Kinesis writes them.
const SEQUENCE: &str = "49650000000000000000000000000000000000000000000000000000";
const _: () = assert!(SEQUENCE.len() == 56);

/// Bytes of a command (or an array reply) in RESP: `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument.
pub fn resp_bytes<S: AsRef<str>>(args: &[S]) -> usize {
    let bulk = |s: &str| 1 + s.len().to_string().len() + 2 + s.len() + 2;
    1 + args.len().to_string().len() + 2 + args.iter().map(|a| bulk(a.as_ref())).sum::<usize>()
}

/// Bytes of a bulk-string reply (`$-1\r\n` for nil).
pub fn bulk_reply_bytes(value: Option<&str>) -> usize {
    match value {
        None => 5,
        Some(v) => resp_bytes(&[v]) - 4,
    }
}

/// What one batch of a cache lane sends and costs, averaged over the sampled batches.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CacheBatch {
    pub events: f64,
    /// `SET … NX GET EX` commands (one per distinct id).
    pub claims: f64,
    /// Bytes of the claims and their replies.
    pub claim_bytes: f64,
    /// (campaign, minute) hashes, their fields (`HINCRBY`s) and index-set members (`SADD`s).
    pub hashes: f64,
    pub fields: f64,
    pub members: f64,
    /// Unique-user register pairs the script max-merges (settled lane: one per distinct (campaign, minute,
    /// ad, register) of the batch's counted events with a user, as `plan_apply` pre-merges them).
    pub registers: f64,
    /// Commands the script runs, itself included (EVALSHA, GET, SET, HINCRBY, SADD, EXPIRE, and per register
    /// HGET plus at most one HSET).
    pub script_commands: f64,
    /// The `EVALSHA` request and its reply.
    pub script_bytes: f64,
    /// ECPU: claims, the mark's `GET`, the script.
    pub claim_ecpu: f64,
    pub mark_ecpu: f64,
    pub script_ecpu: f64,
    /// Runs the batch is applied in (`Batch::split_for_requests`: one script request of at most 3,999
    /// arguments each), each with its claims, mark read and script.
    pub runs: f64,
    pub batches: usize,
}

impl CacheBatch {
    pub fn ecpu(&self) -> f64 {
        self.claim_ecpu + self.mark_ecpu + self.script_ecpu
    }

    /// Commands the server executes for the batch (claims, mark, script and its inner commands).
    pub fn commands(&self) -> f64 {
        self.claims + self.runs.max(1.0) + self.script_commands
    }

    /// Time on the cache, ms at (p50, p99) round trips: the claims with the mark, then the script, plus the
    /// server's time for every command.
    pub fn wait_ms(&self, rtt_ms: f64) -> f64 {
        if self.events <= 0.0 {
            return 0.0;
        }
        let runs = self.runs.max(1.0);
        let trips = (self.claims / CLAIMS_IN_FLIGHT).ceil().max(runs) + runs;
        trips * rtt_ms + self.commands() * SERVER_MS_PER_COMMAND
    }
}

/// ECPU of an `EVALSHA`: one per command it runs (itself included), or its KB when larger.
pub fn script_ecpu(commands: f64, bytes: f64) -> f64 {
    commands.max(bytes / tally_billing::elasticache::BYTES_PER_ECPU as f64)
}

/// What decides whether the script finds a hash new (and so lists it and gives it its TTL): the chance that no
/// event of the hash's minute reached its first field before the step, from the rate of events into that field
/// on the batch's shard — the lane's events per second there × the campaign's share of the shard
/// ([`Routing::share_on`]) × 1 / ads per campaign (ads are drawn uniformly) × the share of the kinds that make
/// the counter (spend: impressions and clicks; value: conversions) — over the time since the minute began, or
/// since the traffic began when that is later (`plan --check`: the load test's store starts empty).
#[derive(Debug, Clone, Copy)]
pub struct NewHashes<'a> {
    pub profile: &'a Profile,
    pub routing: &'a Routing,
    pub shard: u32,
    /// Events per second of the lane on the shard.
    pub events_per_sec: f64,
    /// When the traffic began (ms); `None`: long before (a steady day).
    pub traffic_from_ms: Option<i64>,
}

impl NewHashes<'_> {
    /// The chance that field `counter` of some ad of campaign `campaign` got no event between the start of
    /// `minute` (or of the traffic) and `at_ms`. A campaign id the sampler did not make counts as new.
    pub fn absent(&self, campaign: &str, counter: Counter, minute: i64, at_ms: i64) -> f64 {
        let Some(rank) = campaign
            .strip_prefix("cmp-")
            .and_then(|r| r.parse::<usize>().ok())
        else {
            return 1.0;
        };
        let k = &self.profile.kinds;
        let kinds = match counter {
            Counter::Impressions => k[0],
            Counter::Viewable => k[1],
            Counter::Clicks => k[2],
            Counter::Conversions => k[3],
            Counter::SpendMicros => k[0] + k[2],
            Counter::ValueMicros => k[3],
        };
        let per_ms = self.events_per_sec / 1000.0 * self.routing.share_on(rank, self.shard) * kinds
            / f64::from(self.profile.ads_per_campaign.max(1));
        let from = (minute * 60_000).max(self.traffic_from_ms.unwrap_or(i64::MIN));
        let elapsed = (at_ms - from).max(0) as f64;
        (-per_ms * elapsed).exp()
    }
}

/// The commands of one batch as the real code builds them: `events` of one shard in records of
/// `events_per_record`; `lane` Realtime makes fresh claims (nil replies), Settled reads the claims the realtime
/// lane made for the same records (`Ours`: the claim value comes back). `new_hashes`: how likely each hash is new
/// (`None`: every hash is, an upper bound).
pub fn batch_cost(
    events: Vec<Event>,
    events_per_record: usize,
    lane: StoreLane,
    window_secs: u64,
    ttl_secs: u64,
    new_hashes: Option<&NewHashes>,
) -> CacheBatch {
    let shard = "shardId-000000000000";
    let mut batch = Batch::new();
    let per = events_per_record.max(1);
    let mut seq: u64 = 0;
    let mut iter = events.into_iter().peekable();
    while iter.peek().is_some() {
        let record: Vec<_> = iter.by_ref().take(per).collect();
        seq += 1;
        // After the mark (SEQUENCE): the same 56 digits, the last ones counting up.
        let sequence = format!("{}{seq:020}", &SEQUENCE[..SEQUENCE.len() - 20]);
        let Ok(position) = Position::new(shard, &sequence) else {
            break;
        };
        if batch.push_record(position, record).is_err() {
            break;
        }
    }
    let mut out = CacheBatch {
        events: batch.len() as f64,
        batches: 1,
        ..CacheBatch::default()
    };
    for run in batch.split_for_requests(lane, MAX_REQUEST_ARGS) {
        add_run_cost(&mut out, &run, lane, window_secs, ttl_secs, new_hashes);
    }
    out
}

/// Per hash of `plan` (by its (campaign, minute)), the chance the script finds it new: 1 without `new_hashes`
/// or when it has no field, else [`NewHashes::absent`] of its first field (the script's order: ads by id, then
/// [`Counter::ALL`]) at the run's first event of that minute.
fn new_chances(
    plan: &tally_domain::exactly_once::ApplyPlan,
    run: &Batch,
    new_hashes: Option<&NewHashes>,
) -> Vec<(i64, f64)> {
    let mut first_ms: HashMap<(&str, i64), i64> = HashMap::new();
    for (_, e) in run.events() {
        let at = first_ms
            .entry((e.campaign_id.as_str(), minute_of(e.received_ms)))
            .or_insert(e.received_ms);
        *at = (*at).min(e.received_ms);
    }
    plan.increments
        .iter()
        .map(|((campaign, minute), ads)| {
            let first = ads
                .values()
                .find_map(|t| Counter::ALL.into_iter().find(|c| t.get(*c) > 0));
            let p = match (first, new_hashes) {
                (Some(counter), Some(n)) => {
                    let at = first_ms
                        .get(&(campaign.as_str(), *minute))
                        .copied()
                        .unwrap_or(minute * 60_000);
                    n.absent(campaign, counter, *minute, at)
                }
                _ => 1.0,
            };
            (*minute, p)
        })
        .collect()
}

/// Adds one run's claims, mark read and script (as `tally_aws::store` sends them) to `out`.
fn add_run_cost(
    out: &mut CacheBatch,
    run: &Batch,
    lane: StoreLane,
    window_secs: u64,
    ttl_secs: u64,
    new_hashes: Option<&NewHashes>,
) {
    let shard = "shardId-000000000000";
    let window = window_secs.to_string();
    out.runs += 1.0;
    let mut replies = Vec::with_capacity(run.claims().len());
    for claim in run.claims() {
        let request = resp_bytes(&["SET", &claim.key, &claim.value, "NX", "GET", "EX", &window]);
        let reply = match lane {
            StoreLane::Realtime => None,
            StoreLane::Settled => Some(claim.value.clone()),
        };
        let bytes = request + bulk_reply_bytes(reply.as_deref());
        out.claims += 1.0;
        out.claim_bytes += bytes as f64;
        out.claim_ecpu += request_ecpu(bytes as u64);
        replies.push(reply);
    }
    // The mark: a GET of the shard's mark key, answered with the previous batch's mark.
    let previous = Position::new(shard, SEQUENCE).ok();
    let mark = previous.as_ref().map(Position::mark);
    out.mark_ecpu += request_ecpu(
        (resp_bytes(&["GET", &mark_key(lane, shard)]) + bulk_reply_bytes(mark.as_deref())) as u64,
    );
    let Ok(plan) = plan_apply(lane, run, &replies, previous.as_ref(), |_| true) else {
        return;
    };
    if plan.is_noop() {
        return;
    }
    let keys = plan.script_keys();
    let args = plan.script_args(ttl_secs);
    let hashes = plan.increments.len() as f64;
    let fields: f64 = plan
        .increments
        .values()
        .flat_map(|ads| ads.values())
        .map(|t| Counter::ALL.iter().filter(|c| t.get(**c) > 0).count() as f64)
        .sum();
    let registers: f64 = plan
        .users
        .values()
        .flat_map(|ads| ads.values())
        .map(|r| r.len() as f64)
        .sum();
    // New hashes: a SADD and an EXPIRE NX each; a set that listed one: its EXPIRE.
    let chances = new_chances(&plan, run, new_hashes);
    let new: f64 = chances.iter().map(|(_, p)| p).sum();
    let mut none_new: HashMap<i64, f64> = HashMap::new();
    for (minute, p) in &chances {
        *none_new.entry(*minute).or_insert(1.0) *= 1.0 - p;
    }
    let sets_expired: f64 = none_new.values().map(|q| 1.0 - q).sum();
    let expires = if ttl_secs > 0 {
        new + sets_expired
    } else {
        0.0
    };
    // Each register: HGET, then HSET when the rank is higher — counted as both (an upper bound: a register
    // already at or above the rank takes only the HGET).
    let commands = 1.0 + 2.0 + fields + new + expires + REGISTER_COMMANDS * registers;
    let sha = "0".repeat(40);
    let numkeys = keys.len().to_string();
    let mut command: Vec<&str> = vec!["EVALSHA", &sha, &numkeys];
    command.extend(keys.iter().map(String::as_str));
    command.extend(args.iter().map(String::as_str));
    // Reply `{1}`: `*1\r\n:1\r\n`.
    let bytes = (resp_bytes(&command) + 8) as f64;
    out.hashes += hashes;
    out.fields += fields;
    out.members += new;
    out.registers += registers;
    out.script_commands += commands;
    out.script_bytes += bytes;
    out.script_ecpu += script_ecpu(commands, bytes);
}

/// Largest batch [`sample`] runs through the real planner (larger ones are scaled from one this size).
pub const SAMPLE_CAP: usize = 5_000;

/// Samples batches of `events` events of one shard spanning `span_secs` (as `counters::sample` does for the
/// table lanes) and prices them with [`batch_cost`].
/// `history_secs`: seconds of traffic before the sampled batches (`plan --check`: the load test's; each batch
/// at a uniform time in it); `None`: a steady day.
#[allow(clippy::too_many_arguments)]
pub fn sample(
    profile: &Profile,
    routing: &Routing,
    events: f64,
    span_secs: f64,
    events_per_record: f64,
    lane: StoreLane,
    window_secs: u64,
    seed: u64,
    history_secs: Option<f64>,
) -> CacheBatch {
    let rate = Rate {
        events_per_sec: events / span_secs.max(1e-9),
        history_secs,
    };
    sample_at(
        profile,
        routing,
        events,
        span_secs,
        events_per_record,
        lane,
        window_secs,
        seed,
        rate,
    )
}

/// The shard's event rate of the whole batch (the scaled samples below keep it) and the traffic's history.
#[derive(Debug, Clone, Copy)]
struct Rate {
    events_per_sec: f64,
    history_secs: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
fn sample_at(
    profile: &Profile,
    routing: &Routing,
    events: f64,
    span_secs: f64,
    events_per_record: f64,
    lane: StoreLane,
    window_secs: u64,
    seed: u64,
    rate: Rate,
) -> CacheBatch {
    // A batch beyond SAMPLE_CAP events (the deferred lane at high rates: up to 250,000) is sampled at the cap
    // over the same span and scaled: per-event parts (claims) by the events, per-cell parts (the script's
    // hashes, fields and commands) by the routing's expected (campaign, ad) pairs at each size — running the
    // real planner on a quarter of a million events per sampled batch made `--sweep` take tens of minutes.
    let n = events.round().max(1.0) as usize;
    if n > SAMPLE_CAP {
        // At the batch's density (SAMPLE_CAP events over the same share of its span): when that is already
        // applied in several runs (one request of at most 3,999 arguments each), the whole batch is runs of
        // the same kind, and everything scales with the events.
        let per_event = events / SAMPLE_CAP as f64;
        let dense = sample_at(
            profile,
            routing,
            SAMPLE_CAP as f64,
            span_secs / per_event,
            events_per_record,
            lane,
            window_secs,
            seed,
            rate,
        );
        if dense.runs >= 2.0 {
            return CacheBatch {
                events: dense.events * per_event,
                claims: dense.claims * per_event,
                claim_bytes: dense.claim_bytes * per_event,
                hashes: dense.hashes * per_event,
                fields: dense.fields * per_event,
                members: dense.members * per_event,
                registers: dense.registers * per_event,
                script_commands: dense.script_commands * per_event,
                script_bytes: dense.script_bytes * per_event,
                claim_ecpu: dense.claim_ecpu * per_event,
                mark_ecpu: dense.mark_ecpu * per_event,
                script_ecpu: dense.script_ecpu * per_event,
                runs: dense.runs * per_event,
                ..dense
            };
        }
        let small = sample_at(
            profile,
            routing,
            SAMPLE_CAP as f64,
            span_secs,
            events_per_record,
            lane,
            window_secs,
            seed,
            rate,
        );
        let pairs = |k: f64| {
            (0..routing.shards.min(4))
                .map(|s| routing.expected_keys(s, k, profile.ads_per_campaign).1)
                .sum::<f64>()
        };
        let per_cell = pairs(events) / pairs(SAMPLE_CAP as f64).max(1e-9);
        return CacheBatch {
            events: small.events * per_event,
            claims: small.claims * per_event,
            claim_bytes: small.claim_bytes * per_event,
            claim_ecpu: small.claim_ecpu * per_event,
            hashes: small.hashes * per_cell,
            fields: small.fields * per_cell,
            members: small.members * per_cell,
            // Registers grow with the events (distinct users) until a (campaign, minute, ad) saturates its
            // 4,096 registers: scaling by the events is an upper bound.
            registers: small.registers * per_event,
            script_commands: small.script_commands * per_cell
                + REGISTER_COMMANDS * small.registers * (per_event - per_cell),
            script_bytes: small.script_bytes * per_cell,
            script_ecpu: small.script_ecpu * per_cell,
            ..small
        };
    }
    let batches = (super::counters::SAMPLE_EVENTS / n)
        .clamp(super::counters::MIN_BATCHES, super::counters::MAX_BATCHES);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut sum = CacheBatch::default();
    let mut id = 0u64;
    for b in 0..batches {
        let s = (b as u32) % routing.shards;
        if routing.shard_share(s) <= 0.0 {
            continue;
        }
        let start_ms = super::counters::batch_start_ms(&mut rng);
        let step_ms = span_secs * 1000.0 / n as f64;
        let batch: Vec<_> = (0..n)
            .map(|i| {
                let rank = routing.draw(&mut rng, s);
                id += 1;
                let at = start_ms + (i as f64 * step_ms) as i64;
                traffic::event(
                    &mut rng,
                    profile,
                    rank,
                    format!("evt-{seed}-{id}"),
                    at,
                    false,
                )
            })
            .collect();
        let new_hashes = NewHashes {
            profile,
            routing,
            shard: s,
            events_per_sec: rate.events_per_sec,
            traffic_from_ms: rate
                .history_secs
                .map(|h| start_ms - (rng.f64() * h * 1000.0) as i64),
        };
        let c = batch_cost(
            batch,
            events_per_record.round().max(1.0) as usize,
            lane,
            window_secs,
            COUNTER_TTL_SECS,
            Some(&new_hashes),
        );
        sum.events += c.events;
        sum.claims += c.claims;
        sum.claim_bytes += c.claim_bytes;
        sum.hashes += c.hashes;
        sum.fields += c.fields;
        sum.members += c.members;
        sum.registers += c.registers;
        sum.script_commands += c.script_commands;
        sum.script_bytes += c.script_bytes;
        sum.claim_ecpu += c.claim_ecpu;
        sum.mark_ecpu += c.mark_ecpu;
        sum.script_ecpu += c.script_ecpu;
        sum.runs += c.runs;
        sum.batches += 1;
    }
    let k = sum.batches.max(1) as f64;
    CacheBatch {
        events: sum.events / k,
        claims: sum.claims / k,
        claim_bytes: sum.claim_bytes / k,
        hashes: sum.hashes / k,
        fields: sum.fields / k,
        members: sum.members / k,
        registers: sum.registers / k,
        script_commands: sum.script_commands / k,
        script_bytes: sum.script_bytes / k,
        claim_ecpu: sum.claim_ecpu / k,
        mark_ecpu: sum.mark_ecpu / k,
        script_ecpu: sum.script_ecpu / k,
        runs: sum.runs / k,
        batches: sum.batches,
    }
}

/// Expected non-zero counters of a (campaign, ad, minute) that saw `events` events (Poisson), of the six: one
/// per kind present, spend when an impression or a click is, value when a conversion is.
pub fn expected_fields(kinds: &[f64; 4], events: f64) -> f64 {
    let present = |q: f64| 1.0 - (-events * q).exp();
    kinds.iter().map(|&q| present(q)).sum::<f64>()
        + present(kinds[0] + kinds[2])
        + present(kinds[3])
}

/// A compacted (campaign, minute) item as the compactor would write it. ASSUMPTION, to be replaced by the real
/// encoder `tally_domain::compact` when it lands: key and name ≈ 30 bytes, then per ad its id and the six
/// counters of both lanes (realtime and settled) as small numbers.
pub fn assumed_compacted_item_bytes(ads: usize) -> u64 {
    // Asked for every campaign of every simulated minute, with a handful of distinct `ads`: remembered.
    thread_local! {
        static KNOWN: std::cell::RefCell<HashMap<usize, u64>> = std::cell::RefCell::default();
    }
    if let Some(bytes) = KNOWN.with(|known| known.borrow().get(&ads).copied()) {
        return bytes;
    }
    let bytes = compacted_item_bytes_of(ads);
    KNOWN.with(|known| known.borrow_mut().insert(ads, bytes));
    bytes
}

/// [`assumed_compacted_item_bytes`], computed.
fn compacted_item_bytes_of(ads: usize) -> u64 {
    let mut item = Map::new();
    item.insert(
        tally_contract::metrics_table::PARTITION_KEY.into(),
        json!({ "S": "cm#cmp-000123" }),
    );
    item.insert(
        tally_contract::metrics_table::SORT_KEY.into(),
        json!({ "N": "29408640" }),
    );
    let name = ASSUMED_COMPACT_NAME_BYTES.saturating_sub(
        tally_billing::dynamodb::item_size(&item) as usize + 1, // + the counters' attribute name
    );
    let mut body = name;
    for a in 0..ads {
        body += format!("ad-{a}").len() + 2 * 6 * ASSUMED_COMPACT_BYTES_PER_NUMBER;
    }
    // Binary is counted by its raw length; the text stands for `body` bytes.
    item.insert("c".into(), json!({ "S": "x".repeat(body) }));
    tally_billing::dynamodb::item_size(&item)
}

/// Bytes of a compacted item (minute, hour or day: `tally_domain::compact`'s encoding 2) with `ads` ads that
/// each saw `users_per_ad` distinct users in the item's span: the counters as [`assumed_compacted_item_bytes`],
/// then per ad the sketch's length and the real `tally_domain::hll` sketch (sparse for a few users, 3 KB dense
/// for many).
pub fn item_bytes(ads: usize, users_per_ad: f64, cache: &mut HashMap<u64, usize>) -> u64 {
    let sketch = if users_per_ad >= 0.5 {
        1 + sketch_bytes(users_per_ad, cache) as u64
    } else {
        1
    };
    assumed_compacted_item_bytes(ads) + ads as u64 * sketch
}

/// What the compactor does in one minute at `events_per_sec`, with `hashes` (lane, shard, campaign) hashes and
/// `shards` open shards per lane, over `lanes` cache lanes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompactorMinute {
    /// Campaigns with events in the minute: one PutItem each.
    pub campaigns: f64,
    pub minute_wru: f64,
    /// The hour and day items, per minute: each active campaign's hour item once an hour, its day item once a
    /// day (written when the settled lane closes them).
    pub hour_wru: f64,
    /// Read units of the roll-ups, per minute: an hour item reads the hour's minute items, a day item the
    /// day's hour items (strongly consistent `Query`s).
    pub rollup_rru: f64,
    /// Of `minute_wru`: the day rows (one `ADD` per active campaign); of `minute_wru` and `hour_wru`: the
    /// all-campaigns items (minute, hour, day).
    pub day_row_wru: f64,
    pub all_campaigns_wru: f64,
    /// ECPU of the reads: SMEMBERS per (lane, shard), HGETALL per (lane, shard, campaign); the lanes'
    /// progress (per lane the shard set and each shard's mark).
    pub ecpu: f64,
    /// Calls to the stream for the lanes' progress (`GetShardIterator` and `GetRecords` per lane and shard),
    /// through the Kinesis interface endpoint.
    pub stream_calls: f64,
    /// The function's duration, ms.
    pub duration_ms: f64,
}

/// The compactor's minute (see [`CompactorMinute`]). `fields_per_hash`: fields of a hash (its HGETALL's
/// reply, the settled lane's register fields included).
#[allow(clippy::too_many_arguments)]
pub fn compactor_minute(
    profile: &Profile,
    zipf: &Zipf,
    events_per_sec: f64,
    shards: f64,
    hashes_per_lane: f64,
    fields_per_hash: f64,
    lanes: f64,
    sketches: &mut HashMap<u64, usize>,
) -> CompactorMinute {
    if events_per_sec <= 0.0 {
        return CompactorMinute::default();
    }
    let users = f64::from(traffic::users(profile));
    let distinct = |events: f64| users * (1.0 - (-events / users).exp());
    let ads = profile.ads_per_campaign.max(1) as usize;
    let mut out = CompactorMinute::default();
    for k in 0..zipf.len() {
        let per_min = events_per_sec * 60.0 * zipf.share(k);
        let active = 1.0 - (-per_min).exp();
        if active < 1e-12 {
            continue;
        }
        let seen =
            |events: f64| (ads as f64 * (1.0 - (-events / ads as f64).exp())).ceil() as usize;
        let per_ad = |events: f64| distinct(events / ads as f64);
        out.campaigns += active;
        let minute_bytes = item_bytes(seen(per_min).max(1), per_ad(per_min), sketches);
        out.minute_wru += active * tally_billing::dynamodb::write_units(minute_bytes);
        let (hour, day) = (per_min * 60.0, per_min * 1440.0);
        let hour_bytes = item_bytes(seen(hour).max(1), per_ad(hour), sketches);
        let day_bytes = item_bytes(seen(day).max(1), per_ad(day), sketches);
        let active_hour = 1.0 - (-hour).exp();
        let active_day = 1.0 - (-day).exp();
        out.hour_wru += active_hour * tally_billing::dynamodb::write_units(hour_bytes) / 60.0
            + active_day * tally_billing::dynamodb::write_units(day_bytes) / 1440.0;
        let minute_items = (60.0 * active * minute_bytes as f64).ceil() as u64;
        let hour_items = (24.0 * active_hour * hour_bytes as f64).ceil() as u64;
        out.rollup_rru += active_hour * tally_billing::dynamodb::read_units(minute_items, true)
            / 60.0
            + active_day * tally_billing::dynamodb::read_units(hour_items, true) / 1440.0;
    }
    // What the overview and the sorted campaign table read (`tally_domain::totals`): per active campaign and
    // minute the day row's `ADD` (an `UpdateItem` of well under 1 KB: one write unit); per minute one
    // all-campaigns item (ad `all`, every user of the minute in its sketch), rolled up like a campaign's.
    out.day_row_wru = out.campaigns;
    let per_min = events_per_sec * 60.0;
    let mut all = |events: f64| {
        tally_billing::dynamodb::write_units(item_bytes(1, distinct(events), sketches))
    };
    let (all_minute, all_rollups) = (
        all(per_min),
        all(per_min * 60.0) / 60.0 + all(per_min * 1440.0) / 1440.0,
    );
    out.all_campaigns_wru = all_minute + all_rollups;
    out.minute_wru += out.day_row_wru + all_minute;
    out.hour_wru += all_rollups;
    // Reads: the index set of each (lane, shard), then each hash; every reply priced by its KB.
    let key = "{rt:shardId-000000000000}:c#cmp-000123#29408640";
    let members = hashes_per_lane / shards.max(1.0);
    let smembers = resp_bytes(&["SMEMBERS", "{rt:shardId-000000000000}:i#29408640"]) as f64
        + 16.0
        + members * 14.0;
    let hgetall = resp_bytes(&["HGETALL", key]) as f64 + 16.0 + fields_per_hash * 2.0 * 16.0;
    // Letting the minute go once settled-final: an `EXPIRE … LT` per index set and per hash it read (simple
    // commands under 1 KB: 1 ECPU each).
    let let_go = shards + hashes_per_lane;
    // The lanes' progress (`tally_aws::lane_progress`): per lane `SMEMBERS {<lane>}:shards` and a `GET` of each
    // shard's mark (1 ECPU each), then two calls to the stream per shard.
    let progress = 1.0 + shards;
    out.ecpu = lanes
        * (shards * request_ecpu(smembers as u64)
            + hashes_per_lane * request_ecpu(hgetall as u64)
            + let_go
            + progress);
    out.stream_calls = lanes * shards * 2.0;
    let reads = lanes * (shards + hashes_per_lane + progress);
    let puts = out.campaigns * 3.0 + 1.0;
    // The stream calls are made one after the other; each is an AWS API round trip like a DynamoDB call's.
    out.duration_ms = super::lanes::FUNCTION_BASE_MS.0
        + (reads / CLAIMS_IN_FLIGHT).ceil() * CACHE_RTT_MS.0
        + reads * SERVER_MS_PER_COMMAND
        + (puts / COMPACTOR_PUTS_IN_FLIGHT).ceil() * super::lanes::DYNAMODB_MS.0
        + out.stream_calls * super::lanes::DYNAMODB_MS.0;
    out
}

/// Bytes the cache holds: the claims of the last `window_secs` at `claims_per_sec`, and `hashes` counter hashes
/// with `fields` fields and index sets with `members` members alive at once.
pub fn stored_bytes(
    claims_per_sec: f64,
    window_secs: f64,
    hashes: f64,
    fields: f64,
    members: f64,
) -> f64 {
    claims_per_sec * window_secs * CLAIM_BYTES
        + hashes * HASH_KEY_BYTES
        + (fields + members) * HASH_FIELD_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `used_memory` of a server, bytes (`INFO memory`).
    fn used_memory(s: &tally_testkit::Valkey) -> f64 {
        s.info("memory")
            .into_iter()
            .find(|(k, _)| k == "used_memory")
            .and_then(|(_, v)| v.parse().ok())
            .expect("used_memory")
    }

    /// 10,000 claims written exactly as `tally_aws::store` makes them (`SET dedup:<22 base64url>
    /// 0!<32 base-62 digits> NX GET EX 3600`) into a real valkey-server: `used_memory` grows by
    /// about [`CLAIM_BYTES`] per claim (pinned within 20 %). 50,000 claims go first: a cluster-mode server keeps
    /// one dictionary (and one expiry dictionary) per hash slot, created when the slot gets its first key — a
    /// fixed cost of at most 16,384 slots (≈ 3 MB a cache), not a per-claim one — so the measured 10,000 land in
    /// slots that mostly exist, as claims do in a cache holding millions.
    #[test]
    fn a_claim_holds_about_this_many_bytes() {
        use std::io::{Read, Write};
        const WARM: usize = 50_000;
        const CLAIMS: usize = 10_000;
        let server = tally_testkit::Valkey::start();
        let claims = |from: usize, n: usize| {
            let mut out = Vec::new();
            for i in from..from + n {
                let key = tally_domain::store_keys::claim_key(&format!("evt-{i}"));
                let sequence = format!("{}{i:020}", &SEQUENCE[..SEQUENCE.len() - 20]);
                let value = Position::new("shardId-000000000000", &sequence)
                    .expect("position")
                    .claim_value();
                assert_eq!((key.len(), value.len()), (28, 34));
                let args = ["SET", &key, &value, "NX", "GET", "EX", "3600"];
                out.extend(format!("*{}\r\n", args.len()).bytes());
                for a in args {
                    out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
                }
            }
            let mut conn = std::net::TcpStream::connect(server.addr()).expect("connect");
            conn.write_all(&out).expect("write");
            // Every reply is nil (`$-1\r\n`): the keys were free.
            let mut replies = vec![0u8; n * 5];
            conn.read_exact(&mut replies).expect("replies");
            assert!(replies.chunks(5).all(|r| r == b"$-1\r\n"));
        };
        claims(0, WARM);
        let before = used_memory(&server);
        claims(WARM, CLAIMS);
        let per_claim = (used_memory(&server) - before) / CLAIMS as f64;
        eprintln!("measured: {per_claim:.1} bytes of used_memory per claim");
        assert!(
            (per_claim / CLAIM_BYTES - 1.0).abs() <= 0.2,
            "{per_claim:.1} bytes per claim against CLAIM_BYTES = {CLAIM_BYTES}"
        );
    }

    /// Counter hashes written as the script writes them into a real valkey-server: `used_memory` per field,
    /// for hashes of a few counter fields (a listpack) and for settled hashes of many register fields (past
    /// `hash-max-listpack-entries`, 128: a hash table). The model's [`HASH_FIELD_BYTES`] is pinned within 20 %
    /// of the larger, and [`HASH_KEY_BYTES`] must cover a hash's own overhead.
    ///
    /// `cargo test -p xtask --lib hash_fields_hold -- --nocapture | grep measured`
    #[test]
    fn hash_fields_hold_about_this_many_bytes() {
        use std::io::{Read, Write};
        let server = tally_testkit::Valkey::start();
        // `hashes` hashes of `fields` fields each, `HSET` one field a command (as HINCRBY/HSET do), every key
        // with its TTL (as EXPIRE … NX gives it).
        let write = |tag: &str, hashes: usize, fields: usize, register: bool| {
            let mut out = Vec::new();
            let mut commands = 0;
            let mut push = |args: &[&str]| {
                out.extend(format!("*{}\r\n", args.len()).bytes());
                for a in args {
                    out.extend(format!("${}\r\n{a}\r\n", a.len()).bytes());
                }
                commands += 1;
            };
            for h in 0..hashes {
                let key = format!("{{st:shardId-000000000003}}:c#cmp-{h:06}#29408640{tag}");
                for f in 0..fields {
                    let (field, value) = if register {
                        (
                            format!("ad-{h}-{}#u{}", f % 5, (f * 37) % 4096),
                            format!("{}", 1 + f % 9),
                        )
                    } else {
                        (
                            format!("ad-{h}-{}#{}", f / 6, ["i", "v", "c", "k", "s", "w"][f % 6]),
                            format!("{}", 1_000 + 7 * f),
                        )
                    };
                    push(&["HSET", &key, &field, &value]);
                }
                push(&["EXPIRE", &key, "10800"]);
            }
            let mut conn = std::net::TcpStream::connect(server.addr()).expect("connect");
            conn.write_all(&out).expect("write");
            let mut replies = Vec::new();
            let mut buf = [0u8; 65536];
            let mut lines = 0;
            while lines < commands {
                let n = conn.read(&mut buf).expect("replies");
                assert!(n > 0, "server closed");
                lines += buf[..n].iter().filter(|b| **b == b'\n').count();
                replies.extend_from_slice(&buf[..n]);
            }
            assert!(
                replies.starts_with(b":1\r\n"),
                "{:?}",
                String::from_utf8_lossy(&replies[..20])
            );
        };
        // Warm the slots' dictionaries first (see `a_claim_holds_about_this_many_bytes`).
        write("w", 20_000, 1, false);
        // Two shapes, Δ = hashes × key + hashes × fields × field each: solved for key and field.
        let mut shapes = Vec::new();
        for (tag, hashes, fields, register) in [("a", 2_000, 12, false), ("b", 200, 400, true)] {
            let before = used_memory(&server);
            write(tag, hashes, fields, register);
            let delta = used_memory(&server) - before;
            shapes.push((hashes as f64, (hashes * fields) as f64, delta));
        }
        let [(h1, f1, d1), (h2, f2, d2)] = [shapes[0], shapes[1]];
        let field = (d2 - d1 * h2 / h1) / (f2 - f1 * h2 / h1);
        let key = (d1 - f1 * field) / h1;
        eprintln!(
            "measured: {key:.1} bytes of used_memory per hash (key, entry, expiry) and {field:.1} per field \
             (2,000 hashes of 12 counter fields: {:.1} a field all in; 200 of 400 register fields: {:.1})",
            d1 / f1,
            d2 / f2
        );
        assert!(
            (field / HASH_FIELD_BYTES - 1.0).abs() <= 0.2,
            "{field:.1} bytes per field against HASH_FIELD_BYTES = {HASH_FIELD_BYTES}"
        );
        assert!(
            (key / HASH_KEY_BYTES - 1.0).abs() <= 0.2,
            "{key:.1} bytes per hash against HASH_KEY_BYTES = {HASH_KEY_BYTES}"
        );
    }

    #[test]
    fn resp_sizes_by_hand() {
        // *1\r\n $4\r\nPING\r\n = 4 + 10.
        assert_eq!(resp_bytes(&["PING"]), 14);
        // *2\r\n $3\r\nGET\r\n $1\r\nk\r\n = 4 + 9 + 7.
        assert_eq!(resp_bytes(&["GET", "k"]), 20);
        assert_eq!(bulk_reply_bytes(None), 5);
        // $3\r\nabc\r\n
        assert_eq!(bulk_reply_bytes(Some("abc")), 9);
    }

    fn event(id: &str, campaign: &str, ad: &str, minute: i64) -> Event {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut p = Profile::flat(1.0, 300).expect("profile");
        p.kinds = [1.0, 0.0, 0.0, 0.0];
        let mut e = traffic::event(&mut rng, &p, 0, id.to_owned(), minute * 60_000, false);
        e.campaign_id = campaign.to_owned();
        e.ad_id = ad.to_owned();
        e
    }

    /// A batch whose script would exceed ElastiCache Serverless' 3,999 arguments is costed as the runs
    /// `tally_aws::store` sends (`Batch::split_for_requests`): each run its claims, mark read and script.
    #[test]
    fn a_batch_too_large_for_one_request_is_costed_run_by_run() {
        let events: Vec<Event> = (0..4_000)
            .map(|i| {
                let mut e = event(&format!("e{i}"), &format!("c{}", i % 1_500), "x", 100);
                e.user_id = Some(format!("u{i}"));
                e
            })
            .collect();
        let whole = batch_cost(events.clone(), 25, StoreLane::Settled, 3600, 60, None);
        assert!(whole.runs >= 3.0, "{whole:?}");
        assert_eq!(whole.claims, 4_000.0, "every id claimed once");
        assert_eq!(whole.mark_ecpu, whole.runs, "one mark read per run");
        // Runs lose the aggregation across them: more hashes than the 1,500 campaigns, each counted again.
        assert!(whole.hashes > 1_500.0, "{whole:?}");
        // A batch that fits one request is one run.
        let small = batch_cost(
            events[..100].to_vec(),
            25,
            StoreLane::Settled,
            3600,
            60,
            None,
        );
        assert_eq!(small.runs, 1.0);
    }

    /// The chance that a hash is new: 1 at its minute's start, falling with the rate into its first field and
    /// the time since; a campaign's share of its shard, its ads and the kinds that make the counter set the
    /// rate; traffic that began after the minute did caps the time.
    #[test]
    fn a_hash_is_new_by_its_first_fields_rate() {
        let mut p = Profile::flat(1000.0, 300).expect("profile");
        p.campaigns = 1;
        p.ads_per_campaign = 4;
        p.kinds = [0.5, 0.0, 0.5, 0.0];
        let routing = Routing::new(&p, 1);
        let n = NewHashes {
            profile: &p,
            routing: &routing,
            shard: 0,
            events_per_sec: 800.0,
            traffic_from_ms: None,
        };
        let c = traffic::campaign_id(0);
        let m = 1_000;
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(
            n.absent(&c, Counter::Impressions, m, m * 60_000),
            1.0
        ));
        // 800/s × 1/4 ads × 1/2 impressions = 100 a second into the field: after 10 ms, e^-1.
        let got = n.absent(&c, Counter::Impressions, m, m * 60_000 + 10);
        assert!(close(got, (-1.0f64).exp()), "{got}");
        // Spend comes with impressions and clicks: twice the rate.
        let got = n.absent(&c, Counter::SpendMicros, m, m * 60_000 + 10);
        assert!(close(got, (-2.0f64).exp()), "{got}");
        // No conversions in the mix: a conversion field is always new.
        assert!(close(
            n.absent(&c, Counter::Conversions, m, m * 60_000 + 30_000),
            1.0
        ));
        // Traffic from 5 ms into the minute: 5 ms of history, not 10.
        let late = NewHashes {
            traffic_from_ms: Some(m * 60_000 + 5),
            ..n
        };
        let got = late.absent(&c, Counter::Impressions, m, m * 60_000 + 10);
        assert!(close(got, (-0.5f64).exp()), "{got}");
        // An id the sampler did not make: new.
        assert!(close(
            n.absent("other", Counter::Impressions, m, m * 60_000 + 10),
            1.0
        ));
    }

    /// Priced with the rates, a steady lane lists and expires far fewer hashes than every hash (the bound
    /// `None` gives): the script's commands fall, the increments do not.
    #[test]
    fn new_hashes_cut_the_script_not_the_increments() {
        let mut p = Profile::flat(10_000.0, 300).expect("profile");
        p.campaigns = 50;
        let routing = Routing::new(&p, 2);
        let with = sample(
            &p,
            &routing,
            250.0,
            0.05,
            25.0,
            StoreLane::Realtime,
            3600,
            7,
            None,
        );
        let mut rng = fastrand::Rng::with_seed(7);
        let events: Vec<Event> = (0..250)
            .map(|i| {
                let rank = routing.draw(&mut rng, 0);
                traffic::event(
                    &mut rng,
                    &p,
                    rank,
                    format!("e{i}"),
                    1_000 * 60_000 + 30_000,
                    false,
                )
            })
            .collect();
        let bound = batch_cost(
            events,
            25,
            StoreLane::Realtime,
            3600,
            COUNTER_TTL_SECS,
            None,
        );
        assert!(
            with.members < 0.5 * with.hashes,
            "mostly old hashes mid-minute at 5,000 events/s a shard: {with:?}"
        );
        assert_eq!(bound.members, bound.hashes, "the bound lists every hash");
        let per_event = |b: &CacheBatch| b.script_commands / b.events;
        assert!(
            per_event(&with) < per_event(&bound),
            "{with:?} vs {bound:?}"
        );
    }

    #[test]
    fn a_batch_by_hand() {
        // Four impressions, two campaigns, one minute, two records of two events; a TTL.
        let events = vec![
            event("a", "c1", "x", 100),
            event("b", "c1", "y", 100),
            event("c", "c2", "x", 100),
            event("d", "c1", "x", 100),
        ];
        let b = batch_cost(events, 2, StoreLane::Realtime, 3600, 60, None);
        assert_eq!((b.events, b.claims), (4.0, 4.0));
        // A claim: *7 (4), SET (9), dedup:<22 base64url> (35), 0!<32 base-62 digits> (41), NX (8), GET (9),
        // EX (8), 3600 (10) = 124 bytes, the nil reply 5: 129 bytes, 1 ECPU.
        assert_eq!(b.claim_bytes, 4.0 * 129.0, "{b:?}");
        assert_eq!(b.claim_ecpu, 4.0);
        assert_eq!(b.mark_ecpu, 1.0);
        // Hashes (c1, m) and (c2, m); fields: c1 x impressions + spend, y the same, c2 x the same = 6; members:
        // one per hash; EXPIRE on 2 hashes and 1 index set; plus EVALSHA, GET, SET.
        assert_eq!((b.hashes, b.fields, b.members), (2.0, 6.0, 2.0));
        assert_eq!(b.script_commands, 3.0 + 6.0 + 2.0 + 3.0);
        assert_eq!(b.script_ecpu, 14.0);
        assert_eq!(b.ecpu(), 4.0 + 1.0 + 14.0);
        // No TTL: no EXPIRE.
        let events = vec![event("a", "c1", "x", 100)];
        let b = batch_cost(events, 1, StoreLane::Realtime, 3600, 0, None);
        assert_eq!(b.script_commands, 3.0 + 2.0 + 1.0);
        // The settled lane reads the realtime lane's claims: bigger replies, same count.
        let events = vec![event("a", "c1", "x", 100)];
        let s = batch_cost(events, 1, StoreLane::Settled, 3600, 0, None);
        // `Ours` returns the 34-byte claim value ($34\r\n…\r\n, 41 bytes) instead of the nil reply (5).
        assert_eq!(s.claim_bytes, b.claim_bytes + 36.0, "{s:?} vs {b:?}");
        assert_eq!(s.claim_ecpu, 1.0);
    }

    #[test]
    fn a_big_script_is_billed_by_its_bytes() {
        assert_eq!(script_ecpu(10.0, 2048.0), 10.0);
        assert_eq!(script_ecpu(10.0, 20.0 * 1024.0), 20.0);
    }

    #[test]
    fn wait_is_round_trips_plus_server_time() {
        let b = CacheBatch {
            events: 2500.0,
            claims: 2500.0,
            script_commands: 120.0,
            ..CacheBatch::default()
        };
        // 3 claim trips + 1 script trip at 0.5 ms, 2,621 commands × 2 µs.
        let expect = 4.0 * 0.5 + 2621.0 * 0.002;
        assert!((b.wait_ms(0.5) - expect).abs() < 1e-9, "{}", b.wait_ms(0.5));
        assert_eq!(CacheBatch::default().wait_ms(0.5), 0.0);
    }

    #[test]
    fn expected_fields_by_hand() {
        // Many events of impressions only: impressions and spend.
        assert!((expected_fields(&[1.0, 0.0, 0.0, 0.0], 1e6) - 2.0).abs() < 1e-9);
        // One event of each kind: six counters.
        assert!((expected_fields(&[0.25; 4], 1e6) - 6.0).abs() < 1e-9);
        assert_eq!(expected_fields(&[0.25; 4], 0.0), 0.0);
    }

    #[test]
    fn compacted_items_by_hand() {
        // ~30 bytes of name, then per ad `ad-N` + 24 bytes.
        assert_eq!(assumed_compacted_item_bytes(1), 30 + 4 + 24);
        assert_eq!(assumed_compacted_item_bytes(10), 30 + 10 * 4 + 10 * 24);
        // Items carry the real sketch per ad: one length byte without users, sparse for a few users, dense
        // (3 KB) for many.
        let mut cache = HashMap::new();
        assert_eq!(
            item_bytes(2, 0.0, &mut cache),
            assumed_compacted_item_bytes(2) + 2
        );
        assert!(item_bytes(1, 10.0, &mut cache) < 120);
        assert!(item_bytes(1, 50_000.0, &mut cache) > 3000);
    }

    #[test]
    fn storage_by_hand() {
        // 1,000 claims/s for an hour, 10 hashes of 4 fields and 1 member each.
        let b = stored_bytes(1000.0, 3600.0, 10.0, 40.0, 10.0);
        assert_eq!(
            b,
            3_600_000.0 * CLAIM_BYTES + 10.0 * HASH_KEY_BYTES + 50.0 * HASH_FIELD_BYTES
        );
    }

    #[test]
    fn compactor_minute_by_hand() {
        // One campaign of one ad, 10 events/s: active every minute, one PutItem of the minute item (its
        // sketch holds the minute's distinct users), an hour item an hour and a day item a day, and their
        // reads of the finer items.
        let mut p = Profile::flat(10.0, 300).expect("profile");
        (p.campaigns, p.ads_per_campaign, p.campaign_skew) = (1, 1, 0.0);
        let zipf = Zipf::new(1, 0.0);
        let mut cache = HashMap::new();
        let c = compactor_minute(&p, &zipf, 10.0, 2.0, 2.0, 4.0, 2.0, &mut cache);
        assert!((c.campaigns - 1.0).abs() < 1e-9);
        let users = f64::from(traffic::users(&p));
        let distinct = |n: f64| users * (1.0 - (-n / users).exp());
        let wu = |n: f64, cache: &mut HashMap<u64, usize>| {
            tally_billing::dynamodb::write_units(item_bytes(1, distinct(n), cache))
        };
        // The campaign's minute item, its day row's ADD (1 unit), and the all-campaigns item (one campaign:
        // the same sketch as the campaign's).
        assert!((c.day_row_wru - 1.0).abs() < 1e-9, "{c:?}");
        assert!(
            (c.minute_wru - 2.0 * wu(600.0, &mut cache) - 1.0).abs() < 1e-9,
            "{c:?}"
        );
        let rollups = wu(36_000.0, &mut cache) / 60.0 + wu(864_000.0, &mut cache) / 1440.0;
        assert!((c.hour_wru - 2.0 * rollups).abs() < 1e-9, "{c:?}");
        assert!(
            (c.all_campaigns_wru - wu(600.0, &mut cache) - rollups).abs() < 1e-9,
            "{c:?}"
        );
        assert!(c.minute_wru >= 1.0 && c.hour_wru < c.minute_wru, "{c:?}");
        assert!(c.rollup_rru > 1.0 / 60.0, "{c:?}");
        // 2 lanes × (2 SMEMBERS + 2 HGETALL), each under 1 KB, then letting the minute go: per lane an EXPIRE
        // per set and hash read (2 + 2); the lanes' progress: per lane the shard set and 2 marks.
        assert_eq!(c.ecpu, 8.0 + 2.0 * 4.0 + 2.0 * 3.0);
        // GetShardIterator and GetRecords per lane and shard.
        assert_eq!(c.stream_calls, 8.0);
        assert_eq!(
            compactor_minute(&p, &zipf, 0.0, 2.0, 2.0, 4.0, 2.0, &mut cache),
            CompactorMinute::default()
        );
    }
}
