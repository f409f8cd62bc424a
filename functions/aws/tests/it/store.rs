//! Conformance of the counter store's I/O against a real `valkey-server` run as a one-node cluster
//! (`tally_testkit::Valkey`): the apply script against its reference `MemoryStore::apply_atomic`, the claim
//! command against `MemoryStore::set_nx_get`, cross-slot refusal, and random deliveries (duplicate ids,
//! retries, crashes between claim and apply, concurrent duplicate invocations) ending with exact counts; and a
//! connection that broke when the server restarted, replaced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tally_aws::cache_auth::StoreSource;
use tally_aws::store::{CacheAuth, CacheEnv, CounterStore, StoreConfig};
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::exactly_once::{
    plan_apply, ApplyPlan, Batch, DedupWindow, Position, Tally, MAX_REQUEST_ARGS,
};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::{claim_key, counter_key, mark_key, shards_key, StoreLane};
use tally_domain::store_model::{MemoryStore, ScriptReply, StoreError};
use tally_testkit::{Reply, Valkey};

const NOW: i64 = 1_795_698_000_000;
const LANE: StoreLane = StoreLane::Realtime;

fn event(id: &str, n: usize) -> Event {
    let kind = EventKind::ALL[n % 4];
    Event {
        id: id.to_owned(),
        kind,
        campaign_id: format!("c{}", n % 3),
        ad_id: format!("a{}", n % 2),
        placement_id: None,
        user_id: None,
        client_ts_ms: None,
        received_ms: NOW + ((n % 2) as i64) * 60_000,
        cost_micros: 10 * n as u64 + 1,
        value_micros: if kind == EventKind::Conversion {
            1_000 + n as u64
        } else {
            0
        },
        country: None,
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: None,
    }
}

fn shard_id(shard: usize) -> String {
    format!("shardId-{shard:012}")
}

/// Sequence numbers cross a digit-count boundary so the marks' numeric order is exercised.
fn position(shard: usize, record: usize) -> Position {
    Position::new(&shard_id(shard), &(95 + 3 * record).to_string()).expect("valid position")
}

/// Records `from..to` of a shard, record `r` holding the events with the given ids.
fn batch(shard: usize, records: &[Vec<u8>], from: usize, to: usize) -> Batch {
    let mut b = Batch::new();
    for (r, ids) in records.iter().enumerate().take(to).skip(from) {
        let events = ids
            .iter()
            .map(|id| event(&format!("e{id}"), usize::from(*id)))
            .collect();
        b.push_record(position(shard, r), events)
            .expect("records in order");
    }
    b
}

fn config(server: &Valkey) -> StoreConfig {
    StoreConfig {
        nodes: vec![server.url()],
        credentials: None,
        window: DedupWindow::default(),
        counter_ttl_secs: 0,
        timeout: Duration::from_secs(5),
    }
}

/// A fresh valkey-server, a runtime, and the store connected to it.
fn started() -> (Valkey, tokio::runtime::Runtime, CounterStore) {
    let server = Valkey::start();
    let rt = runtime();
    let store = rt
        .block_on(CounterStore::connect(&config(&server)))
        .expect("connect");
    (server, rt, store)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

use tally_aws_testing::{
    valkey as cmd, valkey_counters as server_counters, valkey_strings as strings,
};

fn server_get(server: &Valkey, key: &str) -> Option<String> {
    match cmd(server, &["GET", key]) {
        Reply::Bulk(v) => v,
        other => panic!("GET {key}: {other:?}"),
    }
}

fn ttl(server: &Valkey, key: &str) -> i64 {
    match cmd(server, &["TTL", key]) {
        Reply::Integer(t) => t,
        other => panic!("TTL {key}: {other:?}"),
    }
}

/// (a) The same plans through the real script and through `MemoryStore::apply_atomic`: same replies
/// (applied, conflict on a stale mark, conflict with no mark), same counters, index sets, marks and expiries.
#[test]
fn store_script_agrees_with_the_model() {
    let (server, rt, store) = started();
    let mut model = MemoryStore::new();
    let window = DedupWindow::default();
    let records: Vec<Vec<u8>> = vec![vec![1, 2, 2, 3], vec![4, 1], vec![5, 6, 7], vec![8, 9, 4]];
    // (shard, from, to, counter ttl): a fresh batch, a redelivery of a prefix plus more (apply after the
    // mark), another shard, then a shard whose counters expire, twice (the second step finds some of its
    // hashes already there: they keep the TTL they were given). A deployment's TTL does not change, so no
    // step expires keys an earlier step left without one.
    let steps = [
        (0, 0, 2, 0),
        (0, 0, 3, 0),
        (1, 0, 4, 0),
        (2, 0, 2, 7_200),
        (2, 0, 4, 7_200),
    ];
    for (i, &(shard, from, to, ttl_secs)) in steps.iter().enumerate() {
        let b = batch(shard, &records, from, to);
        let replies = rt.block_on(store.claim(b.claims())).expect("claims");
        assert_eq!(
            replies,
            model.claim_many(b.claims(), window).expect("model claims"),
            "step {i}: claim replies"
        );
        let mark = model.read_mark(LANE, &shard_id(shard)).expect("mark");
        let plan = plan_apply(LANE, &b, &replies, mark.as_ref(), |_| true).expect("plan");
        let (keys, args) = (plan.script_keys(), plan.script_args(ttl_secs));
        // A stale plan first: the mark it expects is not the stored one (nothing changes, both say so).
        let mut stale = args.clone();
        stale[0] = position(shard, 40).mark();
        let real = rt.block_on(store.apply_raw(&keys, &stale)).expect("stale");
        assert_eq!(
            real,
            model.apply_atomic(&keys, &stale).expect("model stale"),
            "step {i}: stale"
        );
        assert!(
            matches!(real, ScriptReply::Conflict(_)),
            "step {i}: {real:?}"
        );
        let real = rt.block_on(store.apply_raw(&keys, &args)).expect("apply");
        assert_eq!(
            real,
            model.apply_atomic(&keys, &args).expect("model"),
            "step {i}"
        );
        assert_eq!(real, ScriptReply::Applied, "step {i}");
        // The same step again: now a conflict naming the new mark, on both.
        let again = rt.block_on(store.apply_raw(&keys, &args)).expect("again");
        assert_eq!(
            again,
            model.apply_atomic(&keys, &args).expect("model again")
        );
        assert_eq!(
            again,
            ScriptReply::Conflict(plan.new_mark.as_ref().map(Position::mark))
        );
        for key in &keys[1..] {
            let t = ttl(&server, key);
            if ttl_secs == 0 {
                assert_eq!(t, -1, "step {i}: {key} has no expiry");
            } else {
                assert!(
                    (ttl_secs as i64 - 5..=ttl_secs as i64).contains(&t),
                    "{key}: TTL {t}"
                );
            }
        }
        assert_eq!(ttl(&server, &keys[0]), -1, "the mark never expires");
    }
    let (model_counters, unknown) = model.counters(LANE);
    assert_eq!(unknown, 0);
    assert!(!model_counters.is_empty());
    assert_eq!(server_counters(&server, LANE), model_counters);
    for shard in 0..2 {
        let key = mark_key(LANE, &shard_id(shard));
        assert_eq!(server_get(&server, &key), model.peek(&key).expect("mark"));
    }
    for minute in [minute_of(NOW), minute_of(NOW + 60_000)] {
        for shard in 0..2 {
            let key = tally_domain::store_keys::index_key(LANE, &shard_id(shard), minute);
            let mut members = strings(cmd(&server, &["SMEMBERS", &key]));
            members.sort();
            assert_eq!(
                members,
                model.members(&key).into_iter().collect::<Vec<_>>(),
                "{key}"
            );
        }
    }
    // A no-op plan (everything applied) makes no script call at all; `process` says so.
    let b = batch(2, &records, 0, 4);
    let done = rt
        .block_on(store.process(LANE, &b, |_| true))
        .expect("process");
    assert!(done.plans.iter().all(ApplyPlan::is_noop));
    assert_eq!(done.script_calls, 0);
    // Bad arguments are refused before anything is written, by both.
    let keys = vec![mark_key(LANE, "s"), counter_key(LANE, "s", "c", 1)];
    let args: Vec<String> = ["", "003100", "0", "0", "0"].map(String::from).to_vec();
    let real = rt.block_on(store.apply_raw(&keys, &args));
    assert!(matches!(
        model.apply_atomic(&keys, &args),
        Err(StoreError::BadArgs(_))
    ));
    let message = real.expect_err("key count mismatch").to_string();
    assert!(message.contains("keys do not match"), "{message}");
    assert_eq!(server_get(&server, &keys[0]), None);
    // Sets that list more hashes than there are: refused before the hash's increment, not after it.
    let set = tally_domain::store_keys::index_key(LANE, "s", 1);
    let keys = vec![mark_key(LANE, "s"), counter_key(LANE, "s", "c", 1), set];
    let args: Vec<String> = [
        "", "003100", "0", "1", "1", "1", "a#imp", "1", "0", "2", "c", "d",
    ]
    .map(String::from)
    .to_vec();
    let real = rt.block_on(store.apply_raw(&keys, &args));
    assert!(matches!(
        model.apply_atomic(&keys, &args),
        Err(StoreError::BadArgs(_))
    ));
    let message = real.expect_err("sets list 2 hashes of 1").to_string();
    assert!(message.contains("the sets list 2 hashes of 1"), "{message}");
    assert_eq!(cmd(&server, &["EXISTS", &keys[1]]), Reply::Integer(0));
    assert_eq!(server_get(&server, &keys[0]), None);
}

/// (a') The settled lane's unique-user registers: the real script keeps the highest rank per register field
/// as the model does, whatever the order and the replays of the batches; the registers equal the sketch of
/// the counted valid events' users.
#[test]
fn store_registers_keep_the_highest_rank() {
    const ST: StoreLane = StoreLane::Settled;
    let (server, rt, store) = started();
    // Ranks raised, never lowered, directly through the script.
    let keys = vec![
        mark_key(ST, "s"),
        counter_key(ST, "s", "c", 1),
        tally_domain::store_keys::index_key(ST, "s", 1),
    ];
    let raise = |mark: &str, next: &str, rank: &str| -> Vec<String> {
        [
            mark, next, "0", "1", "1", "1", "a#imp", "1", "2", "a#u7", rank, "a#u9", "1", "1", "c",
        ]
        .map(String::from)
        .to_vec()
    };
    let mut model = MemoryStore::new();
    for (mark, next, rank) in [
        ("", "0011", "5"),
        ("0011", "0012", "3"),
        ("0012", "0013", "9"),
    ] {
        let args = raise(mark, next, rank);
        let real = rt.block_on(store.apply_raw(&keys, &args)).expect("apply");
        assert_eq!(real, model.apply_atomic(&keys, &args).expect("model"));
        assert_eq!(real, ScriptReply::Applied);
    }
    assert_eq!(
        cmd(&server, &["HGET", &keys[1], "a#u7"]),
        Reply::Bulk(Some("9".into()))
    );
    assert_eq!(
        tally_aws_testing::valkey_users(&server, ST),
        model.users(ST),
        "the same registers as the model"
    );

    // Batches with users, delivered out of order, with replays and an overlapping redelivery.
    let with_user = |id: &str, n: usize| Event {
        user_id: Some(format!("user-{}", n % 11)),
        ..event(id, n)
    };
    let records: Vec<Vec<u8>> = (0..6u8).map(|r| (r * 7..r * 7 + 9).collect()).collect();
    let batch_of = |shard: usize, from: usize, to: usize| {
        let mut b = Batch::new();
        for (r, ids) in records.iter().enumerate().take(to).skip(from) {
            let events = ids
                .iter()
                .map(|id| with_user(&format!("e{id}"), usize::from(*id)))
                .collect();
            b.push_record(position(shard, r), events).expect("in order");
        }
        b
    };
    let valid = |e: &Event| e.kind != EventKind::Click;
    let deliveries = [
        (1, 0, 3),
        (0, 0, 2),
        (0, 0, 2),
        (1, 0, 6),
        (0, 1, 6),
        (1, 2, 4),
        (0, 0, 6),
    ];
    let server2 = Valkey::start();
    let store2 = rt
        .block_on(CounterStore::connect(&config(&server2)))
        .expect("connect");
    for (shard, from, to) in deliveries {
        rt.block_on(store2.process(ST, &batch_of(shard, from, to), valid))
            .expect("process");
    }
    // The same batches once each, in the other order, on a fresh server: the same registers.
    let server3 = Valkey::start();
    let store3 = rt
        .block_on(CounterStore::connect(&config(&server3)))
        .expect("connect");
    for (shard, from, to) in [(0, 0, 6), (1, 0, 6)] {
        rt.block_on(store3.process(ST, &batch_of(shard, from, to), valid))
            .expect("process");
    }
    let users = tally_aws_testing::valkey_users(&server2, ST);
    assert_eq!(users, tally_aws_testing::valkey_users(&server3, ST));
    // The oracle: each id's first occurrence (shard 0 claims first in the second order; ids repeat across
    // records, so whichever record owns an id, its content is the same), valid ones, per (campaign, ad, minute).
    let mut want: BTreeMap<(String, String, i64), tally_domain::hll::Hll> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for id in records.iter().flatten() {
        let e = with_user(&format!("e{id}"), usize::from(*id));
        if seen.insert(*id) && valid(&e) {
            want.entry((
                e.campaign_id.clone(),
                e.ad_id.clone(),
                minute_of(e.received_ms),
            ))
            .or_default()
            .insert(e.user_id.as_deref().unwrap_or("").as_bytes());
        }
    }
    assert!(!want.is_empty());
    assert_eq!(users, want);
    assert!(
        tally_aws_testing::valkey_users(&server2, LANE).is_empty(),
        "realtime keeps none"
    );
}

/// (b) A script over keys of two slots fails with CROSSSLOT on the one-node cluster, as on AWS.
#[test]
fn store_cross_slot_script_is_refused() {
    let (server, rt, store) = started();
    let keys = vec![
        mark_key(LANE, "shard-a"),
        counter_key(LANE, "shard-b", "c", 1),
    ];
    let args: Vec<String> = ["", "003100", "0", "1", "0", "1", "a#imp", "1", "0"]
        .map(String::from)
        .to_vec();
    let error = rt
        .block_on(store.apply_raw(&keys, &args))
        .expect_err("cross-slot keys");
    assert!(error.to_string().contains("CROSSSLOT"), "{error}");
    // The refusal is the server's, not a check in the client.
    let mut raw = vec!["EVAL", tally_aws::store::APPLY_SCRIPT, "2"];
    raw.extend(keys.iter().chain(&args).map(String::as_str));
    match cmd(&server, &raw) {
        Reply::Error(e) => assert!(e.starts_with("CROSSSLOT"), "{e}"),
        other => panic!("cross-slot EVAL answered {other:?}"),
    }
    assert!(!error.is_retryable(), "a cross-slot script never succeeds");
    assert!(matches!(
        MemoryStore::new().apply_atomic(&keys, &args),
        Err(StoreError::CrossSlot { .. })
    ));
    assert_eq!(server_get(&server, &keys[0]), None, "nothing written");
}

/// (c) `SET … NX GET EX` as `MemoryStore::set_nx_get` assumes: nil and set when free; the old value, nothing
/// changed (its expiry included) when taken; gone after the expiry; WRONGTYPE on a key of another type.
#[test]
fn store_claims_behave_as_the_model_assumes() {
    let (server, rt, store) = started();
    let mut b = Batch::new();
    b.push_record(position(0, 0), vec![event("x", 1), event("y", 2)])
        .expect("record");
    let mut other = Batch::new();
    other
        .push_record(position(1, 5), vec![event("x", 1)])
        .expect("record");
    assert_eq!(
        rt.block_on(store.claim(b.claims())).expect("claim"),
        vec![None, None]
    );
    let key = claim_key("x");
    let t = ttl(&server, &key);
    assert!(
        (3_595..=3_600).contains(&t),
        "claim TTL {t}, want the window (3600)"
    );
    cmd(&server, &["EXPIRE", &key, "1000"]);
    assert_eq!(
        rt.block_on(store.claim(other.claims())).expect("claim"),
        vec![Some(position(0, 0).claim_value())],
        "a taken claim answers its owner"
    );
    assert_eq!(
        server_get(&server, &key),
        Some(position(0, 0).claim_value())
    );
    let t = ttl(&server, &key);
    assert!(
        (995..=1_000).contains(&t),
        "a failed claim left the expiry alone: TTL {t}"
    );
    // Expiry: a claim made with EX 1 is gone after it, and the id can be claimed again.
    let short = claim_key("short");
    let set = |value: &str| match cmd(&server, &["SET", &short, value, "NX", "GET", "EX", "1"]) {
        Reply::Bulk(v) => v,
        other => panic!("SET NX GET: {other:?}"),
    };
    assert_eq!(set("s:1"), None);
    assert_eq!(set("s:2"), Some("s:1".to_owned()));
    std::thread::sleep(Duration::from_millis(2_100));
    assert_eq!(set("s:3"), None, "expired claim is free again");
    // The model's WRONGTYPE on a claim key holding a hash is the server's too.
    assert_eq!(
        cmd(&server, &["HSET", &claim_key("z"), "f", "1"]),
        Reply::Integer(1)
    );
    let mut z = Batch::new();
    z.push_record(position(0, 1), vec![event("z", 3)])
        .expect("record");
    let error = rt
        .block_on(store.claim(z.claims()))
        .expect_err("wrong type");
    assert!(error.to_string().contains("WRONGTYPE"), "{error}");
}

/// The rollup of the distinct ids of a stream: what exact counting gives, without looking at the store.
fn oracle(streams: &[Vec<Vec<u8>>]) -> BTreeMap<(String, String, i64), Tally> {
    let mut ids: Vec<u8> = streams.iter().flatten().flatten().copied().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out: BTreeMap<(String, String, i64), Tally> = BTreeMap::new();
    for id in ids {
        let e = event(&format!("e{id}"), usize::from(id));
        out.entry((
            e.campaign_id.clone(),
            e.ad_id.clone(),
            minute_of(e.received_ms),
        ))
        .or_default()
        .add(&e);
    }
    out
}

#[derive(Clone, Debug)]
enum Delivery {
    /// A batch from `back` records before the checkpoint (a retry or stale redelivery), of `size` records;
    /// `crash`: the function dies after its claims, before the atomic step.
    Batch {
        shard: usize,
        back: usize,
        size: usize,
        crash: bool,
    },
    /// Two invocations of the same batch at once (a duplicate invocation): one applies, one conflicts.
    Twice { shard: usize, size: usize },
}

fn deliveries() -> impl Strategy<Value = Vec<Delivery>> {
    let one = prop_oneof![
        4 => (0..2usize, 0..3usize, 1..4usize, any::<bool>())
            .prop_map(|(shard, back, size, crash)| Delivery::Batch { shard, back, size, crash }),
        1 => (0..2usize, 1..4usize).prop_map(|(shard, size)| Delivery::Twice { shard, size }),
    ];
    prop::collection::vec(one, 1..12)
}

/// Two shards, up to 6 records each, up to 5 events a record, ids from a pool of 10: ids repeat within a
/// record, across records and across shards; every copy of an id carries the same content.
fn streams() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    prop::collection::vec(
        prop::collection::vec(prop::collection::vec(0..10u8, 0..5), 1..6),
        2..=2,
    )
}

/// (d) Random deliveries through the real server end with every distinct id counted exactly once.
#[test]
fn store_random_deliveries_count_each_id_once() {
    let (server, rt, store) = started();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&(streams(), deliveries()), |(streams, deliveries)| {
            cmd(&server, &["FLUSHALL"]);
            let mut checkpoint = [0usize; 2];
            let run = |shard: usize, from: usize, to: usize| {
                let b = batch(shard, &streams[shard], from, to);
                rt.block_on(store.process(LANE, &b, |_| true))
                    .expect("process");
            };
            for d in &deliveries {
                match *d {
                    Delivery::Batch {
                        shard,
                        back,
                        size,
                        crash,
                    } => {
                        let from = checkpoint[shard].saturating_sub(back);
                        let to = (from + size).min(streams[shard].len());
                        if from >= to {
                            continue;
                        }
                        if crash {
                            let b = batch(shard, &streams[shard], from, to);
                            rt.block_on(store.claim(b.claims())).expect("claims");
                        } else {
                            run(shard, from, to);
                            checkpoint[shard] = checkpoint[shard].max(to);
                        }
                    }
                    Delivery::Twice { shard, size } => {
                        let from = checkpoint[shard];
                        let to = (from + size).min(streams[shard].len());
                        if from >= to {
                            continue;
                        }
                        let b = batch(shard, &streams[shard], from, to);
                        let (x, y) = rt.block_on(async {
                            tokio::join!(
                                store.process(LANE, &b, |_| true),
                                store.process(LANE, &b, |_| true)
                            )
                        });
                        let calls =
                            x.expect("first").script_calls + y.expect("second").script_calls;
                        prop_assert!((1..=3).contains(&calls), "{calls} script calls");
                        checkpoint[shard] = to;
                    }
                }
            }
            // Lambda redelivers whatever is not checkpointed.
            for shard in 0..2 {
                run(shard, checkpoint[shard], streams[shard].len());
            }
            prop_assert_eq!(server_counters(&server, LANE), oracle(&streams));
            Ok(())
        })
        .expect("exact counts");
}

/// The same deliveries through a three-node cluster (claims and shard marks on different nodes, commands
/// routed by slot) and through the model give the same replies and counters.
#[test]
fn store_works_across_a_three_node_cluster() {
    let nodes = Valkey::start_cluster(3);
    let rt = runtime();
    let store = rt
        .block_on(CounterStore::connect(&config(&nodes[0])))
        .expect("connect");
    let mut model = MemoryStore::new();
    let window = DedupWindow::default();
    let streams: Vec<Vec<Vec<u8>>> = (0..4)
        .map(|s| {
            (0..5)
                .map(|r| {
                    (0..6)
                        .map(|i| ((s * 7 + r * 5 + i * 3) % 40) as u8)
                        .collect()
                })
                .collect()
        })
        .collect();
    for (shard, records) in streams.iter().enumerate() {
        for (from, to) in [(0, 3), (1, 5), (0, 5)] {
            let b = batch(shard, records, from, to);
            let real = rt
                .block_on(store.process(LANE, &b, |_| true))
                .expect("process");
            let want = model.process(LANE, &b, window, 0, |_| true).expect("model");
            assert_eq!(real.plans, vec![want], "shard {shard} records {from}..{to}");
        }
    }
    let claims: Vec<String> = streams
        .iter()
        .flatten()
        .flatten()
        .map(|id| claim_key(&format!("e{id}")))
        .collect();
    let mut on_node = [0usize; 3];
    let mut counters: BTreeMap<(String, String, i64), Tally> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let keys = strings(cmd(node, &["KEYS", "*"]));
        on_node[i] = keys.iter().filter(|k| claims.contains(k)).count();
        for (k, t) in server_counters(node, LANE) {
            counters.entry(k).or_default().merge(&t);
        }
    }
    assert!(
        on_node.iter().all(|&n| n > 0),
        "claims on every node: {on_node:?}"
    );
    assert_eq!(counters, model.counters(LANE).0);
    assert_eq!(counters, oracle(&streams));
}

/// Server-side calls of `name` since the last `CONFIG RESETSTAT` (`INFO commandstats`; a script's inner
/// commands count one each).
fn calls(server: &Valkey, name: &str) -> u64 {
    server
        .info("commandstats")
        .into_iter()
        .find(|(k, _)| k == &format!("cmdstat_{name}"))
        .and_then(|(_, v)| {
            v.split(',')
                .find_map(|kv| kv.strip_prefix("calls="))
                .map(str::to_owned)
        })
        .map_or(0, |v| v.parse().expect("calls"))
}

/// Only a new hash — its first field absent before the step — is given its TTL and listed in its minute's
/// set; a hash whose first field is there already costs its `HINCRBY`s and nothing more. Checked against the
/// model (same replies, counters, sets and TTLs) and by the server's own command counts; then the safety
/// argument: a hash created again after its key vanished (as on expiry) is listed again, and its set's TTL
/// moves up to it, so a set never expires before a hash it lists.
#[test]
fn store_only_new_hashes_are_expired_and_listed() {
    let (server, rt, store) = started();
    let mut model = MemoryStore::new();
    let window = DedupWindow::default();
    const TTL: u64 = 7_200;
    // Event n goes to campaign n % 3, ad n % 2, minute n % 2, kind n % 4: record 0 makes six hashes in two
    // minutes; record 1 repeats record 0's fields exactly (n + 12); record 2 touches the same six hashes with
    // other kinds first (their first fields are new: listed again, harmlessly); record 3 starts (c0, minute 0)
    // again after its key vanished.
    let records: Vec<Vec<u8>> = vec![
        (0..6).collect(),
        (12..18).collect(),
        (6..12).collect(),
        vec![18],
    ];
    let plan_of = |model: &mut MemoryStore, r: usize| {
        let b = batch(0, &records, r, r + 1);
        let replies = rt.block_on(store.claim(b.claims())).expect("claims");
        assert_eq!(
            replies,
            model.claim_many(b.claims(), window).expect("model claims")
        );
        let mark = model.read_mark(LANE, &shard_id(0)).expect("mark");
        plan_apply(LANE, &b, &replies, mark.as_ref(), |_| true).expect("plan")
    };
    let apply = |plan: &ApplyPlan| -> (u64, u64) {
        cmd(&server, &["CONFIG", "RESETSTAT"]);
        let real = rt
            .block_on(store.apply_raw(&plan.script_keys(), &plan.script_args(TTL)))
            .expect("apply");
        assert_eq!(real, ScriptReply::Applied);
        (calls(&server, "sadd"), calls(&server, "expire"))
    };
    let mut step = |r: usize| -> (u64, u64) {
        let plan = plan_of(&mut model, r);
        let counts = apply(&plan);
        let (keys, args) = (plan.script_keys(), plan.script_args(TTL));
        assert_eq!(
            model.apply_atomic(&keys, &args).expect("model"),
            ScriptReply::Applied
        );
        for key in &keys[1..] {
            let t = ttl(&server, key);
            assert!((TTL as i64 - 5..=TTL as i64).contains(&t), "{key}: TTL {t}");
        }
        assert_eq!(server_counters(&server, LANE), model.counters(LANE).0);
        counts
    };
    assert_eq!(
        step(0),
        (6, 6 + 2),
        "fresh: every hash listed, every key expired"
    );
    assert_eq!(
        step(1),
        (0, 0),
        "every first field there: only the increments"
    );
    assert_eq!(
        step(2),
        (6, 6 + 2),
        "first fields new: listed and expired again"
    );
    let index = |m: i64| tally_domain::store_keys::index_key(LANE, &shard_id(0), m);
    let minutes = [minute_of(NOW), minute_of(NOW + 60_000)];
    for m in minutes {
        let mut members = strings(cmd(&server, &["SMEMBERS", &index(m)]));
        members.sort();
        assert_eq!(members, ["c0", "c1", "c2"], "minute {m}");
        assert_eq!(
            members,
            model.members(&index(m)).into_iter().collect::<Vec<_>>()
        );
    }
    // The hash of (c0, minute 0) vanishes, and its set is near its end (as an hour before expiry): the hash
    // made again is new, listed, and its set's TTL moves up to the hash's.
    let hash = counter_key(LANE, &shard_id(0), "c0", minutes[0]);
    cmd(&server, &["DEL", &hash]);
    cmd(&server, &["EXPIRE", &index(minutes[0]), "100"]);
    let plan = plan_of(&mut model, 3);
    assert_eq!(apply(&plan), (1, 2));
    let (hash_ttl, set_ttl) = (ttl(&server, &hash), ttl(&server, &index(minutes[0])));
    assert!(
        set_ttl >= hash_ttl && hash_ttl > TTL as i64 - 5,
        "hash {hash_ttl}, set {set_ttl}"
    );
}

/// What a typical batch costs: 100 records of 25 events (one collect request each), 10 campaigns × 3 ads,
/// ids all distinct. Commands from `INFO commandstats`, bytes from `INFO stats`; ElastiCache Serverless
/// bills about one ECPU per simple command per KB transferred.
///
/// `cargo test -p tally-aws --test it store_cost -- --nocapture | grep measured`
#[test]
fn store_cost_of_a_typical_batch() {
    let (server, rt, store) = started();
    let make = |first: usize| {
        let mut b = Batch::new();
        for r in 0..100 {
            let events = (0..25)
                .map(|i| {
                    let n = (first + r) * 25 + i;
                    Event {
                        campaign_id: format!("campaign-{}", n % 10),
                        ad_id: format!("ad-{}", n % 3),
                        ..event(&format!("{:032x}", n as u128 * 0x9e37_79b9), n)
                    }
                })
                .collect();
            b.push_record(position(0, first + r), events)
                .expect("record");
        }
        b
    };
    // A first batch loads the script (NOSCRIPT, then EVAL); the second is the steady state.
    rt.block_on(store.process(LANE, &make(0), |_| true))
        .expect("first batch");
    cmd(&server, &["CONFIG", "RESETSTAT"]);
    let b = make(100);
    let done = rt
        .block_on(store.process(LANE, &b, |_| true))
        .expect("second batch");
    assert_eq!(done.plans.len(), 1, "a typical batch is one request");
    assert_eq!(done.stats.counted, 2_500);
    let stats: BTreeMap<String, String> = server.info("commandstats").into_iter().collect();
    let calls = |name: &str| -> u64 {
        stats
            .get(&format!("cmdstat_{name}"))
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .map_or(0, |v| v.parse().expect("calls"))
    };
    let usec = |name: &str| -> u64 {
        stats
            .get(&format!("cmdstat_{name}"))
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("usec=")))
            .map_or(0, |v| v.parse().expect("usec"))
    };
    let net: BTreeMap<String, String> = server.info("stats").into_iter().collect();
    let bytes = |k: &str| -> u64 { net[k].parse().expect("bytes") };
    let (set, get, evalsha, eval) = (calls("set"), calls("get"), calls("evalsha"), calls("eval"));
    let (inner_hincrby, inner_sadd, inner_expire) =
        (calls("hincrby"), calls("sadd"), calls("expire"));
    let (bytes_in, bytes_out) = (
        bytes("total_net_input_bytes"),
        bytes("total_net_output_bytes"),
    );
    let script_args: usize = done.plans[0]
        .script_args(0)
        .iter()
        .chain(done.plans[0].script_keys().iter())
        .map(String::len)
        .sum();
    // Claims and the mark read: one ECPU each (< 1 KB each); the script: its request's KB (vCPU time aside).
    let script_kb = (script_args as f64 / 1024.0).max(1.0);
    let ecpu = (set - 1 + get - 1) as f64 + script_kb;
    println!(
        "measured: batch of 100 records, 2500 events, 2500 distinct ids, 30 (campaign, ad) pairs: \
         client commands SET {} + GET {} + EVALSHA {evalsha} + EVAL {eval} = {}; \
         inside the script GET 1, SET 1, HINCRBY {inner_hincrby}, SADD {inner_sadd}, EXPIRE {inner_expire} \
         ({} µs in EVALSHA vs {} µs in all SETs); bytes in {bytes_in}, out {bytes_out} \
         ({:.0} in, {:.0} out per event); script arguments {script_args} bytes; \
         ECPU ≈ {ecpu:.1} per batch = {:.3} per event",
        set - 1,
        get - 1,
        set + get - 2 + evalsha + eval,
        usec("evalsha"),
        usec("set"),
        bytes_in as f64 / 2_500.0,
        bytes_out as f64 / 2_500.0,
        ecpu / 2_500.0,
    );
    // Commands a script runs are counted too: its GET and SET of the mark.
    assert_eq!(
        set,
        2_500 + 1,
        "one claim per distinct id, and the script's SET of the mark"
    );
    assert_eq!(
        get,
        1 + 1,
        "one mark read, and the script's GET of the mark"
    );
    assert_eq!(evalsha + eval, 1, "one script call");
}

/// The deferred lane's batch at 10,000 events/s (2,000 records of 25 events over 2,000 campaigns, every event
/// with a user) would be one script of ~137,000 arguments: ElastiCache Serverless refuses more than 3,999, and
/// a local `valkey-server` spent ~0.8 s in it while every realtime batch waited. It is applied in runs of whole
/// records, one script each within the limit; the counts and registers equal the model's for the whole batch,
/// and a redelivery of the whole batch counts nothing more.
#[test]
fn store_a_batch_too_large_for_one_request_is_applied_in_runs() {
    let (server, rt, store) = started();
    let mut b = Batch::new();
    for r in 0..2_000 {
        let events = (0..25)
            .map(|i| {
                let n = r * 25 + i;
                Event {
                    campaign_id: format!("campaign-{}", n % 2_000),
                    user_id: Some(format!("user-{n}")),
                    ..event(&format!("{:032x}", n as u128 * 0x9e37_79b9), n)
                }
            })
            .collect();
        b.push_record(position(0, r), events).expect("record");
    }
    let lane = StoreLane::Settled;
    cmd(&server, &["CONFIG", "RESETSTAT"]);
    let done = rt
        .block_on(store.process(lane, &b, |e| e.kind != EventKind::Click))
        .expect("batch");
    assert!(done.plans.len() > 10, "{} runs", done.plans.len());
    for plan in &done.plans {
        assert!(
            plan.request_args() <= MAX_REQUEST_ARGS,
            "{}",
            plan.request_args()
        );
    }
    let stats: BTreeMap<String, String> = server.info("commandstats").into_iter().collect();
    let scripts: u64 = ["evalsha", "eval"]
        .iter()
        .filter_map(|name| stats.get(&format!("cmdstat_{name}")))
        .filter_map(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .map(|v| v.parse::<u64>().expect("calls"))
        .sum();
    // One script per run (the first run's EVALSHA is answered NOSCRIPT and sent again as EVAL).
    assert_eq!(scripts, done.plans.len() as u64 + 1);
    let mut model = MemoryStore::new();
    let expected = model
        .process(lane, &b, DedupWindow::default(), 0, |e| {
            e.kind != EventKind::Click
        })
        .expect("model");
    assert_eq!(done.stats.counted, expected.stats.counted);
    assert_eq!(done.stats.filtered, expected.stats.filtered);
    let again = rt
        .block_on(store.process(lane, &b, |e| e.kind != EventKind::Click))
        .expect("redelivery");
    assert_eq!(again.stats.counted, 0);
    assert_eq!(server_counters(&server, lane), model.counters(lane).0);
    assert_eq!(
        tally_aws_testing::valkey_users(&server, lane),
        model.users(lane),
        "the same registers as the model's whole batch"
    );
}

/// A cache that restarts (a failover, a node replaced) while commands are in flight: the cluster client's
/// connection then times out every later command for good (measured: 15 tries over 7 s, none answered), so
/// the store marks itself broken and `StoreSource::get` connects anew for the next batch. Fails without the
/// reconnect: the source would hand out the dead connection forever.
#[test]
fn store_reconnects_after_the_cache_restarts_under_load() {
    let mut server = Valkey::start();
    let rt = runtime();
    let cache = CacheEnv {
        host: server.addr().ip().to_string(),
        port: server.addr().port(),
        tls: false,
        auth: CacheAuth::None,
        window: DedupWindow::default(),
    };
    let source = Arc::new(
        rt.block_on(StoreSource::connect(cache, 0, Duration::from_secs(1), None))
            .expect("connect"),
    );
    let first = rt.block_on(source.get()).expect("store");
    rt.block_on(first.register_shard(StoreLane::Realtime, "s1"))
        .expect("a command before the restart");
    assert!(!first.is_broken());
    server = rt.block_on(async {
        // Batches keep fifty commands in flight while the server stops and comes back empty.
        let load = {
            let source = source.clone();
            tokio::spawn(async move {
                let until = std::time::Instant::now() + Duration::from_secs(3);
                while std::time::Instant::now() < until {
                    if let Ok(store) = source.get().await {
                        let _ = futures_util::future::join_all(
                            (0..50).map(|_| store.register_shard(StoreLane::Realtime, "s2")),
                        )
                        .await;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let server = tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_millis(200));
            server.restart_empty();
            server
        })
        .await
        .expect("restart");
        load.await.expect("load");
        server
    });
    assert!(
        first.is_broken(),
        "commands that timed out while the server was down did not mark the connection broken"
    );
    // Every batch after the restart gets a store that answers.
    rt.block_on(async {
        for attempt in 0..3 {
            let store = source.get().await.expect("reconnect");
            match store.register_shard(StoreLane::Realtime, "s1").await {
                Ok(()) => return,
                Err(e) => eprintln!("batch {attempt} after the restart: {e}"),
            }
        }
        panic!("three batches after the cache restarted, none could use the store");
    });
    assert_eq!(
        cmd(
            &server,
            &["SISMEMBER", &shards_key(StoreLane::Realtime), "s1"]
        ),
        Reply::Integer(1)
    );
}
