//! Compaction's I/O against a real `valkey-server` and `moto_server`: closed minutes read over shards and both
//! lanes, items written and read back, the watermark moving only forward against a concurrent compactor, and
//! hostile values in the cache and the table refused with what was wrong.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use tally_aws::compacted::{item_pk, CompactedTable};
use tally_aws::compacted_batch::{items_at, BATCH_GET_KEYS};
use tally_aws::metrics_write::MetricsWriter;
use tally_aws::store::{CounterStore, StoreConfig};
use tally_aws::Error;
use tally_domain::compact::{CompactedItem, MinuteJob, Span, Watermark};
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::exactly_once::{Batch, DedupWindow, Position, Tally};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::{counter_key, index_key, StoreLane};
use tally_testkit::{Moto, Valkey};

use crate::sdk;

const NOW: i64 = 1_795_698_000_000;

fn event(i: usize) -> Event {
    let kind = EventKind::ALL[i % 4];
    Event {
        id: format!("e{i}"),
        kind,
        campaign_id: format!("c{}", i % 3),
        ad_id: format!("a{}", i % 5),
        placement_id: None,
        user_id: None,
        client_ts_ms: None,
        received_ms: NOW + ((i % 2) as i64) * 60_000,
        cost_micros: 10 * i as u64 + 1,
        value_micros: if kind == EventKind::Conversion {
            1_000
        } else {
            0
        },
        country: None,
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: None,
    }
}

fn valid(e: &Event) -> bool {
    !e.cost_micros.is_multiple_of(3)
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

/// Applies events `0..n` to both lanes over three shards (some ids on two shards, a redelivery), registering
/// the shards; returns the truth per lane: (campaign, ad, minute) → tally of the distinct ids.
pub async fn fill(store: &CounterStore, n: usize) -> [BTreeMap<(String, String, i64), Tally>; 2] {
    let mut truth: [BTreeMap<(String, String, i64), Tally>; 2] = Default::default();
    for shard in 0..3 {
        let id = format!("shardId-{shard:012}");
        let mut batch = Batch::new();
        for r in 0..4 {
            // Shard s holds events i with i % 3 == s, plus every fifth event again (a resend).
            let events: Vec<Event> = (0..n)
                .filter(|i| i % 4 == r && (i % 3 == shard || i % 5 == 0))
                .map(event)
                .collect();
            let position = Position::new(&id, &(100 + r).to_string()).expect("position");
            batch.push_record(position, events).expect("in order");
        }
        for lane in StoreLane::ALL {
            store.register_shard(lane, &id).await.expect("register");
            let keep = |e: &Event| lane == StoreLane::Realtime || valid(e);
            store.process(lane, &batch, keep).await.expect("applies");
            store
                .process(lane, &batch, keep)
                .await
                .expect("redelivery is fenced");
        }
    }
    for e in (0..n).map(event) {
        for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
            if lane == StoreLane::Realtime || valid(&e) {
                truth[l]
                    .entry((
                        e.campaign_id.clone(),
                        e.ad_id.clone(),
                        minute_of(e.received_ms),
                    ))
                    .or_default()
                    .add(&e);
            }
        }
    }
    truth
}

pub async fn table(moto: &Moto) -> CompactedTable {
    let client = aws_sdk_dynamodb::Client::new(&sdk(moto).await);
    tally_aws_testing::create_metrics_table(&client, "metrics").await;
    CompactedTable::new(client, "metrics")
}

fn lane_cells(items: &[CompactedItem], lane: StoreLane) -> BTreeMap<(String, String, i64), Tally> {
    items
        .iter()
        .flat_map(|i| {
            i.lane(lane)
                .into_iter()
                .map(move |(ad, t)| ((i.campaign_id.clone(), ad.to_owned(), i.minute), t))
        })
        .collect()
}

#[tokio::test]
async fn compacted_minutes_round_trip() {
    let server = Valkey::start();
    let moto = Moto::start();
    let store = CounterStore::connect(&config(&server))
        .await
        .expect("connect");
    let table = table(&moto).await;
    let writer = MetricsWriter::of(&table);
    let truth = fill(&store, 200).await;
    assert_eq!(
        store.shards(StoreLane::Settled).await.expect("shards"),
        [
            "shardId-000000000000",
            "shardId-000000000001",
            "shardId-000000000002"
        ]
    );
    let m0 = minute_of(NOW);
    let mut items = Vec::new();
    for minute in [m0 - 1, m0, m0 + 1, m0 + 2] {
        let job = MinuteJob {
            minute,
            settled_final: true,
        };
        let got = store.compact_minute(job).await.expect("reads").items;
        for item in &got {
            writer.put_item(item).await.expect("put");
            writer
                .put_item(item)
                .await
                .expect("a second put is the same");
        }
        items.extend(got);
    }
    assert_eq!(items.len(), 6, "3 campaigns × 2 minutes");
    for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
        assert_eq!(
            lane_cells(&items, lane),
            truth[l],
            "{lane:?} from the cache"
        );
    }
    let mut back = Vec::new();
    for c in ["c0", "c1", "c2"] {
        back.extend(table.items(c, m0 - 10, m0 + 10).await.expect("query"));
    }
    items.sort_by(|a, b| (&a.campaign_id, a.minute).cmp(&(&b.campaign_id, b.minute)));
    assert_eq!(back, items, "read back from the table");
    // The same items by key, in batches: more keys than one BatchGetItem takes, most of them without an item
    // (a campaign that never was, minutes without counts), asked twice.
    let mut cells: Vec<(Span, String, i64)> = Vec::new();
    for c in ["c0", "c1", "c2", "c9"] {
        for minute in m0 - 60..=m0 + 10 {
            cells.push((Span::Minute, c.to_owned(), minute));
        }
    }
    cells.push((Span::Minute, "c0".to_owned(), m0));
    assert!(cells.len() > 2 * BATCH_GET_KEYS);
    let mut got = items_at(&table, &cells).await.expect("batch get");
    got.sort_by(|a, b| (&a.campaign_id, a.minute).cmp(&(&b.campaign_id, b.minute)));
    assert_eq!(got, items, "read back by key");
    assert_eq!(items_at(&table, &[]).await.expect("no keys"), []);
    // A minute that does not start its span names no item: refused, saying why.
    let hour = m0 - m0.rem_euclid(60);
    let refused = items_at(&table, &[(Span::Hour, "c0".to_owned(), hour + 1)])
        .await
        .expect_err("not an hour's first minute");
    assert!(
        refused
            .to_string()
            .contains("not the first minute of a Hour span"),
        "{refused}"
    );
    assert_eq!(
        table.items("c0", m0 + 1, m0).await.expect("empty range"),
        []
    );
    assert_eq!(table.items("c0", -5, -1).await.expect("before 1970"), []);
}

#[tokio::test]
async fn the_watermark_only_moves_forward() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let writer = MetricsWriter::of(&table);
    let w = |r: i64, s: i64| Watermark {
        realtime: Some(r),
        settled: Some(s),
    };
    assert_eq!(table.watermark().await.expect("read"), Watermark::default());
    let first = Watermark {
        realtime: Some(10),
        settled: None,
    };
    assert_eq!(
        writer
            .advance_watermark(Watermark::default(), first)
            .await
            .expect("first"),
        first
    );
    assert_eq!(
        writer
            .advance_watermark(first, w(12, 9))
            .await
            .expect("advance"),
        w(12, 9)
    );
    // A compactor that read the old watermark and compacted less: the stored one stays.
    assert_eq!(
        writer
            .advance_watermark(first, w(11, 8))
            .await
            .expect("stale"),
        w(12, 9)
    );
    // One that read the old watermark and got further in one lane: the lane-wise later of both.
    assert_eq!(
        writer
            .advance_watermark(first, w(11, 11))
            .await
            .expect("merge"),
        w(12, 11)
    );
    assert_eq!(table.watermark().await.expect("read"), w(12, 11));
    let err = writer
        .advance_watermark(w(12, 11), w(12, 10))
        .await
        .expect_err("backwards");
    assert!(err.to_string().contains("only moves forward"), "{err}");
    let err = writer
        .advance_watermark(w(12, 11), w(12, 13))
        .await
        .expect_err("settled ahead");
    assert!(err.to_string().contains("ahead of the realtime"), "{err}");
}

#[tokio::test]
async fn hostile_values_are_refused() {
    let server = Valkey::start();
    let moto = Moto::start();
    let store = CounterStore::connect(&config(&server))
        .await
        .expect("connect");
    let table = table(&moto).await;
    let m = minute_of(NOW);
    let shard = "shardId-000000000000";
    let cmd = |args: &[&str]| server.command(args).expect("command");
    cmd(&["SADD", "{rt}:shards", shard]);
    let job = MinuteJob {
        minute: m,
        settled_final: false,
    };
    let bad = |e: Error| e.to_string();
    // A field the layout never writes.
    let key = counter_key(StoreLane::Realtime, shard, "c1", m);
    cmd(&["SADD", &index_key(StoreLane::Realtime, shard, m), "c1"]);
    cmd(&["HSET", &key, "a1#imp", "3", "a1#bogus", "1"]);
    let err = bad(store.compact_minute(job).await.expect_err("bad field"));
    assert!(err.contains(&key) && err.contains("a1#bogus"), "{err}");
    // A negative counter.
    cmd(&["HDEL", &key, "a1#bogus"]);
    cmd(&["HSET", &key, "a1#click", "-2"]);
    let err = bad(store.compact_minute(job).await.expect_err("negative"));
    assert!(err.contains("\"-2\""), "{err}");
    cmd(&["HDEL", &key, "a1#click"]);
    // An index member that is not a campaign id (it would move the hash tag).
    cmd(&["SADD", &index_key(StoreLane::Realtime, shard, m), "c}2"]);
    let err = bad(store.compact_minute(job).await.expect_err("bad member"));
    assert!(err.contains("not a campaign id"), "{err}");
    cmd(&["SREM", &index_key(StoreLane::Realtime, shard, m), "c}2"]);
    // A shard that is not a shard id; the wrong type under a key.
    cmd(&["SADD", "{st}:shards", "shard:x"]);
    let err = bad(store.compact_minute(job).await.expect_err("bad shard"));
    assert!(err.contains("{st}:shards"), "{err}");
    cmd(&["DEL", "{st}:shards"]);
    cmd(&["SET", "{st}:shards", "x"]);
    let err = bad(store.compact_minute(job).await.expect_err("wrong type"));
    assert!(err.contains("WRONGTYPE"), "{err}");
    cmd(&["DEL", "{st}:shards"]);
    let items = store.compact_minute(job).await.expect("clean again").items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].ads["a1"].realtime.impressions, 3);

    // A corrupt item in the table.
    let client = aws_sdk_dynamodb::Client::new(&sdk(&moto).await);
    for (sk, ads, want) in [
        (
            "0029928300",
            AttributeValue::B(Blob::new(vec![7])),
            "unknown encoding version 7",
        ),
        (
            "0029928301",
            AttributeValue::S("x".into()),
            "ads: missing or not binary",
        ),
        (
            "29928302",
            AttributeValue::B(Blob::new(vec![1])),
            "not a 10-digit minute",
        ),
    ] {
        client
            .put_item()
            .table_name("metrics")
            .item("pk", AttributeValue::S(item_pk("cx")))
            .item("sk", AttributeValue::S(sk.into()))
            .item("ads", ads)
            .item("sf", AttributeValue::Bool(true))
            .send()
            .await
            .expect("plant");
        let err = table
            .items("cx", 0, 9_999_999_999)
            .await
            .expect_err("corrupt");
        assert!(err.to_string().contains(want), "{err}");
        client
            .delete_item()
            .table_name("metrics")
            .key("pk", AttributeValue::S(item_pk("cx")))
            .key("sk", AttributeValue::S(sk.into()))
            .send()
            .await
            .expect("remove");
    }
    client
        .put_item()
        .table_name("metrics")
        .item("pk", AttributeValue::S("compactor".into()))
        .item("sk", AttributeValue::S("watermark".into()))
        .item("rt", AttributeValue::N("3".into()))
        .item("st", AttributeValue::N("4".into()))
        .send()
        .await
        .expect("plant");
    let err = table.watermark().await.expect_err("settled ahead");
    assert!(err.to_string().contains("compactor/watermark"), "{err}");
}

/// On provisioned capacity a burst beyond what the table holds (the compactor writes a minute's items at
/// once) is answered with `ProvisionedThroughputExceededException`. The SDK retries it (both attempts of the
/// test configuration are throttled here), then the compactor's writes and the reads query makes through
/// this table report it as retryable: the run fails before the watermark moves and the next run writes
/// the same items again; nothing is half-done.
#[tokio::test]
async fn a_throttled_table_is_a_retryable_error_and_heals() {
    use tally_aws_testing::{Answer, Faults, Proxy};
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint());
    let client = aws_sdk_dynamodb::Client::new(&crate::sdk_at(&proxy.endpoint()).await);
    tally_aws_testing::create_metrics_table(&client, "metrics").await;
    let table = CompactedTable::new(client, "metrics");
    let minute = minute_of(NOW);
    let mut tally = Tally::default();
    tally.add(&event(1));
    let lane: BTreeMap<String, Tally> = [("a1".to_owned(), tally)].into_iter().collect();
    let item = CompactedItem::from_lanes("c1", minute, &lane, &lane, true);
    let throttle = |operation: &str| {
        proxy.fail(Faults {
            operation: operation.to_owned(),
            after: 0,
            answer: Answer::dynamodb_throttled(),
        })
    };
    let check = |what: &str, err: Error| {
        assert!(err.is_retryable(), "{what}: {err}");
        assert!(
            err.to_string()
                .contains("ProvisionedThroughputExceededException"),
            "{what} names the cause: {err}"
        );
    };

    throttle("PutItem");
    check(
        "put_item",
        MetricsWriter::of(&table)
            .put_item(&item)
            .await
            .expect_err("throttled"),
    );
    let throttled =
        |log: Vec<String>, op: &str| log.iter().filter(|l| **l == format!("!{op}")).count();
    assert_eq!(throttled(proxy.log(), "PutItem"), 2, "the SDK retried once");
    let to = Watermark {
        realtime: Some(minute),
        settled: Some(minute),
    };
    check(
        "advance_watermark",
        MetricsWriter::of(&table)
            .advance_watermark(Watermark::default(), to)
            .await
            .expect_err("throttled"),
    );
    throttle("Query");
    check(
        "items",
        table
            .items("c1", minute, minute)
            .await
            .expect_err("throttled"),
    );

    proxy.heal();
    MetricsWriter::of(&table)
        .put_item(&item)
        .await
        .expect("healed: the write goes through");
    MetricsWriter::of(&table)
        .advance_watermark(Watermark::default(), to)
        .await
        .expect("healed: the watermark moves");
    let read = table
        .items("c1", minute, minute)
        .await
        .expect("healed: reads");
    assert_eq!(read, vec![item]);
}
