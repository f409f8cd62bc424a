use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use tally_aws::metrics::{rows, Fence, Lane, MetricsTable, Resolution, RowOutcome, ShardBatch};
use tally_aws::Error;
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::rollup::{Counters, Rollup};
use tally_testkit::Moto;

use tally_aws_testing::{Answer, Faults, Proxy};

use crate::{sdk, sdk_at};

/// 2025-11-26 11:00 UTC in unix minutes.
const T0: i64 = 29_402_580;

async fn table(moto: &Moto) -> MetricsTable {
    table_at(&moto.endpoint()).await
}

/// Creates the table through `endpoint` and returns a writer that talks through it.
async fn table_at(endpoint: &str) -> MetricsTable {
    let client = aws_sdk_dynamodb::Client::new(&sdk_at(endpoint).await);
    tally_aws_testing::create_metrics_table(&client, "metrics").await;
    MetricsTable::new(client, "metrics").with_concurrency(4)
}

/// Event `i` of a deterministic mix: 3 campaigns, 4 ads, 90 minutes (crossing an hour), 50 users, every kind.
fn event(i: u64) -> Event {
    let kind = match i % 7 {
        0..=3 => EventKind::Impression,
        4 => EventKind::ViewableImpression,
        5 => EventKind::Click,
        _ => EventKind::Conversion,
    };
    Event {
        id: format!("e{i}"),
        kind,
        campaign_id: format!("camp-{}", i % 3),
        ad_id: format!("ad-{}", i % 4),
        placement_id: None,
        user_id: (!i.is_multiple_of(5)).then(|| format!("user-{}", i % 50)),
        client_ts_ms: None,
        received_ms: (T0 + (i as i64 * 7) % 90) * 60_000 + 123,
        cost_micros: if kind == EventKind::Impression {
            1_500
        } else {
            0
        },
        value_micros: if kind == EventKind::Conversion {
            2_000_000
        } else {
            0
        },
        country: Some("DE".to_owned()),
        device: DeviceClass::Desktop,
        user_agent: None,
    }
}

/// Records `seqs` of `shard`, record `k` holding event `k` (and event `k + 1000` when `k` is even, so that
/// records hold one or two events).
fn batch(shard: &str, seqs: std::ops::Range<u64>) -> ShardBatch {
    let mut b = ShardBatch::new();
    for k in seqs {
        let events = if k % 2 == 0 {
            vec![event(k), event(k + 1000)]
        } else {
            vec![event(k)]
        };
        b.push_record(Fence::new(shard, &k.to_string()).expect("fence"), events)
            .expect("record");
    }
    b
}

/// The events of `seqs` as [`batch`] lays them out, aggregated.
fn rollup_of(seqs: std::ops::Range<u64>) -> Rollup {
    batch("s", seqs).rollup()
}

/// Everything in the table for `lane`, per row key, as the readers see it.
async fn snapshot(table: &MetricsTable, lane: Lane) -> BTreeMap<String, Counters> {
    let mut out = BTreeMap::new();
    for c in 0..3 {
        let campaign = format!("camp-{c}");
        for res in Resolution::ALL {
            let series = table
                .series(&campaign, lane, res, T0 - 1440, T0 + 1440)
                .await
                .expect("series");
            let ads = table
                .ads(&campaign, lane, res, T0 - 1440, T0 + 1440)
                .await
                .expect("ads");
            for row in series.into_iter().chain(ads) {
                out.insert(format!("{}/{}", row.key.pk(), row.key.sk()), row.counters);
            }
        }
    }
    out
}

/// What the table must hold after `rollup` was applied exactly once.
fn expected(lane: Lane, rollup: &Rollup) -> BTreeMap<String, Counters> {
    rows(lane, rollup)
        .into_iter()
        .map(|row| (format!("{}/{}", row.key.pk(), row.key.sk()), row.counters))
        .collect()
}

fn assert_exact(got: &BTreeMap<String, Counters>, want: &BTreeMap<String, Counters>) {
    assert_eq!(got.len(), want.len(), "row count");
    for (key, counters) in want {
        assert_eq!(got.get(key), Some(counters), "row {key}");
    }
}

#[tokio::test]
async fn applying_twice_counts_once() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let b = batch("shardId-000000000000", 1..301);
    let n = rows(Lane::Realtime, &b.rollup()).len();
    let first = table.apply_batch(Lane::Realtime, &b).await.expect("apply");
    assert_eq!((first.applied, first.skipped), (n, 0));
    let again = table.apply_batch(Lane::Realtime, &b).await.expect("again");
    assert_eq!((again.applied, again.skipped), (0, n));
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &b.rollup()),
    );
    // The other lane is untouched.
    assert!(snapshot(&table, Lane::Settled).await.is_empty());
    // The single-record form: a rollup as the content of the record at one position.
    let f = Fence::new("shardId-000000000009", "77").expect("fence");
    let once = table
        .apply(Lane::Settled, &f, &b.rollup())
        .await
        .expect("apply");
    assert_eq!(once.applied, n);
    let twice = table
        .apply(Lane::Settled, &f, &b.rollup())
        .await
        .expect("again");
    let older = Fence::new("shardId-000000000009", "76").expect("fence");
    let stale = table
        .apply(Lane::Settled, &older, &b.rollup())
        .await
        .expect("older");
    assert_eq!((twice.applied, stale.applied), (0, 0));
    assert_exact(
        &snapshot(&table, Lane::Settled).await,
        &expected(Lane::Settled, &b.rollup()),
    );
}

#[tokio::test]
async fn a_crash_half_way_is_completed_by_the_retry() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let b = batch("shardId-000000000001", 1..201);
    let range = b.range().expect("range");
    let all = rows(Lane::Realtime, &b.rollup());
    // The first invocation dies after a third of the rows.
    let crashed = table
        .apply_rows(&b, &range, &all[..all.len() / 3])
        .await
        .expect("partial");
    assert_eq!(crashed.applied, all.len() / 3);
    let retry = table.apply_batch(Lane::Realtime, &b).await.expect("retry");
    assert_eq!(
        (retry.applied, retry.skipped),
        (all.len() - all.len() / 3, all.len() / 3)
    );
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &b.rollup()),
    );
}

#[tokio::test]
async fn bisected_and_overlapping_redeliveries_are_exact() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let shard = "shardId-000000000002";
    let full = batch(shard, 1..121);
    let all = rows(Lane::Settled, &full.rollup());
    // The full batch reached every other row, then the function failed.
    let reached: Vec<_> = all.iter().step_by(2).cloned().collect();
    table
        .apply_rows(&full, &full.range().expect("range"), &reached)
        .await
        .expect("partial");
    // Lambda bisects: first half, then second half.
    table
        .apply_batch(Lane::Settled, &batch(shard, 1..61))
        .await
        .expect("first half");
    table
        .apply_batch(Lane::Settled, &batch(shard, 61..121))
        .await
        .expect("second half");
    assert_exact(
        &snapshot(&table, Lane::Settled).await,
        &expected(Lane::Settled, &full.rollup()),
    );
    // At-least-once delivery: older batches, the full batch again, and a batch cut elsewhere, all change
    // nothing — rows whose mark stopped inside a batch (touched only by its first half) included.
    for (from, to) in [(1, 31), (1, 121), (40, 100), (90, 121)] {
        let again = table
            .apply_batch(Lane::Settled, &batch(shard, from..to))
            .await
            .expect("redelivery");
        assert_eq!(again.applied, 0, "records {from}..{to}");
    }
    assert_exact(
        &snapshot(&table, Lane::Settled).await,
        &expected(Lane::Settled, &full.rollup()),
    );
    // The next batch overlaps the end of what was applied: only its new records count.
    let next = table
        .apply_batch(Lane::Settled, &batch(shard, 100..161))
        .await
        .expect("overlap");
    assert!(next.partial > 0, "{next:?}");
    assert_exact(
        &snapshot(&table, Lane::Settled).await,
        &expected(Lane::Settled, &rollup_of(1..161)),
    );
}

#[tokio::test]
async fn shards_writing_the_same_rows_concurrently_lose_nothing() {
    let moto = Moto::start();
    // moto's conditional writes are not atomic against concurrent requests; the proxy makes each request
    // atomic, as DynamoDB makes each single-item write, while our read-modify-writes still interleave.
    let proxy = Proxy::start(&moto.endpoint());
    let table = table_at(&proxy.endpoint()).await.with_concurrency(16);
    // Shard s holds records s*60 .. s*60+60; each applies two batches in order, with a duplicate delivery
    // of the first in between; shards run concurrently and collide on the campaign rows, so the
    // read-modify-writes lose races and must re-read.
    let tasks = (0..4u64).map(|s| {
        let table = table.clone();
        let shard = format!("shardId-00000000000{s}");
        async move {
            let (start, mid, end) = (s * 60 + 1, s * 60 + 31, s * 60 + 61);
            table
                .apply_batch(Lane::Realtime, &batch(&shard, start..mid))
                .await?;
            table
                .apply_batch(Lane::Realtime, &batch(&shard, start..mid))
                .await?;
            table
                .apply_batch(Lane::Realtime, &batch(&shard, mid..end))
                .await
        }
    });
    for result in futures_util::future::join_all(tasks).await {
        result.expect("apply");
    }
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &rollup_of(1..241)),
    );
    assert!(
        proxy.log().iter().any(|op| op == "UpdateItem"),
        "the writes went through the proxy"
    );
}

#[tokio::test]
async fn throttled_writes_fail_the_apply_and_the_retry_completes_it() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint());
    let table = table_at(&proxy.endpoint()).await;
    let b = batch("shardId-000000000000", 4000..4200);
    // DynamoDB starts throttling after ten row writes, and keeps on past the SDK's own retries.
    proxy.fail(Faults {
        operation: "UpdateItem".into(),
        after: 10,
        answer: Answer::dynamodb_throttled(),
    });
    let err = table
        .apply_batch(Lane::Realtime, &b)
        .await
        .expect_err("throttled");
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string()
            .contains("ProvisionedThroughputExceededException"),
        "{err}"
    );
    assert!(proxy.log().iter().any(|op| op == "!UpdateItem"));
    // A 500 from the service is retryable too.
    proxy.fail(Faults {
        operation: "GetItem".into(),
        after: 0,
        answer: Answer::internal_error(),
    });
    let err = table
        .apply_batch(Lane::Realtime, &b)
        .await
        .expect_err("500");
    assert!(err.is_retryable(), "{err}");
    proxy.heal();
    let retry = table.apply_batch(Lane::Realtime, &b).await.expect("retry");
    assert!(retry.skipped >= 10 && retry.applied > 0, "{retry:?}");
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &b.rollup()),
    );
}

#[tokio::test]
async fn rows_without_users_take_the_single_write_path() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint());
    let table = table_at(&proxy.endpoint()).await;
    let mut b = ShardBatch::new();
    for k in 1..51 {
        let mut e = event(k);
        e.user_id = None;
        b.push_record(
            Fence::new("shardId-000000000000", &k.to_string()).expect("fence"),
            vec![e],
        )
        .expect("record");
    }
    let range = b.range().expect("range");
    let all = rows(Lane::Realtime, &b.rollup());
    let before = proxy.log().len();
    for row in &all {
        assert_eq!(
            table.apply_row(&b, &range, row).await.expect("apply"),
            RowOutcome::Applied
        );
    }
    assert_eq!(
        proxy.log()[before..]
            .iter()
            .filter(|op| *op == "GetItem")
            .count(),
        0,
        "no reads on first apply"
    );
    for row in &all {
        assert_eq!(
            table.apply_row(&b, &range, row).await.expect("again"),
            RowOutcome::AlreadyApplied
        );
    }
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &b.rollup()),
    );
}

#[tokio::test]
async fn readers_and_the_campaign_index() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let b = batch("s-1", 0..90);
    let batch = b.rollup();
    table.apply_batch(Lane::Realtime, &b).await.expect("apply");
    let want = |campaign: &str, res: Resolution| -> Vec<(i64, Counters)> {
        rows(Lane::Realtime, &batch)
            .into_iter()
            .filter(|r| r.key.campaign_id == campaign && r.key.res == res && r.key.ad_id.is_none())
            .map(|r| (r.key.bucket, r.counters))
            .collect()
    };
    for res in Resolution::ALL {
        let got = table
            .series("camp-1", Lane::Realtime, res, T0, T0 + 89)
            .await
            .expect("series");
        let got: Vec<_> = got
            .into_iter()
            .map(|r| (r.key.bucket, r.counters))
            .collect();
        assert_eq!(got, want("camp-1", res), "{res:?}");
    }
    // A narrower range returns only its buckets; an unknown campaign nothing.
    let some = table
        .series(
            "camp-1",
            Lane::Realtime,
            Resolution::Minute,
            T0 + 10,
            T0 + 19,
        )
        .await
        .expect("series");
    assert!(
        some.iter()
            .all(|r| (T0 + 10..=T0 + 19).contains(&r.key.bucket))
            && !some.is_empty()
    );
    assert!(table
        .series("nope", Lane::Realtime, Resolution::Minute, T0, T0 + 89)
        .await
        .expect("nope")
        .is_empty());
    let ads = table
        .ads("camp-2", Lane::Realtime, Resolution::Day, T0, T0)
        .await
        .expect("ads");
    let ad_ids: Vec<_> = ads.iter().filter_map(|r| r.key.ad_id.clone()).collect();
    assert_eq!(ad_ids, ["ad-0", "ad-1", "ad-2", "ad-3"]);
    let day = table
        .day_total("camp-0", Lane::Realtime, T0 + 5)
        .await
        .expect("day")
        .expect("row");
    assert_eq!(
        Some(day),
        want("camp-0", Resolution::Day)
            .into_iter()
            .map(|(_, c)| c)
            .next()
    );
    assert_eq!(
        table
            .day_total("camp-0", Lane::Settled, T0)
            .await
            .expect("day"),
        None
    );
    let err = table
        .series("camp-1", Lane::Realtime, Resolution::Minute, T0, T0 - 1)
        .await
        .expect_err("range");
    assert_eq!(err.to_string(), format!("invalid metrics query: bucket range {T0}..={} must be increasing unix minutes between 0 and 9999999999", T0 - 1));

    let seen = |pairs: &[(&str, i64, i64)]| -> BTreeMap<String, (i64, i64)> {
        pairs
            .iter()
            .map(|(c, f, l)| (c.to_string(), (*f, *l)))
            .collect()
    };
    table
        .touch_campaigns(&seen(&[("camp-1", 100, 200), ("camp-0", 50, 60)]))
        .await
        .expect("touch");
    table
        .touch_campaigns(&seen(&[("camp-1", 150, 300)]))
        .await
        .expect("later");
    table
        .touch_campaigns(&seen(&[("camp-1", 10, 250)]))
        .await
        .expect("older batch redelivered");
    let got: Vec<_> = table
        .campaigns()
        .await
        .expect("campaigns")
        .into_iter()
        .map(|c| (c.campaign_id, c.first_seen_ms, c.last_seen_ms))
        .collect();
    assert_eq!(
        got,
        [
            ("camp-0".to_owned(), 50, 60),
            ("camp-1".to_owned(), 100, 300)
        ]
    );
}

#[tokio::test]
async fn corrupt_rows_and_missing_tables_are_clear_errors() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let config = sdk(&moto).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let b = batch("s", 1..11);
    let range = b.range().expect("range");
    let batch = b.rollup();
    let row = rows(Lane::Realtime, &batch)
        .into_iter()
        .find(|r| !r.counters.users.is_empty())
        .expect("row with users");
    client
        .put_item()
        .table_name("metrics")
        .item("pk", AttributeValue::S(row.key.pk()))
        .item("sk", AttributeValue::S(row.key.sk()))
        .item("users", AttributeValue::B(vec![0xFF, 0x00, 0x13].into()))
        .item("impressions", AttributeValue::N("12".into()))
        .send()
        .await
        .expect("put");
    let err = table
        .apply_row(&b, &range, &row)
        .await
        .expect_err("corrupt");
    assert!(matches!(err, Error::CorruptRow { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "row {}/{} of table metrics is corrupt: users: not a sketch",
            row.key.pk(),
            row.key.sk()
        )),
        "{err}"
    );
    assert!(!err.is_retryable());
    client
        .put_item()
        .table_name("metrics")
        .item("pk", AttributeValue::S("c#camp-0".into()))
        .item("sk", AttributeValue::S("rt#m#0029402580#*".into()))
        .item("clicks", AttributeValue::S("many".into()))
        .send()
        .await
        .expect("put");
    let err = table
        .series("camp-0", Lane::Realtime, Resolution::Minute, T0, T0)
        .await
        .expect_err("corrupt");
    assert_eq!(
        err.to_string(),
        "row c#camp-0/rt#m#0029402580#* of table metrics is corrupt: clicks: not a number"
    );

    let missing = MetricsTable::new(client, "no-such-table");
    let err = missing
        .apply_batch(Lane::Realtime, &b)
        .await
        .expect_err("missing table");
    assert!(err.to_string().starts_with("dynamodb "), "{err}");
    assert!(
        err.to_string().contains("no-such-table") && err.to_string().contains("ResourceNotFound"),
        "{err}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn sdk_config_honours_aws_endpoint_url() {
    let moto = Moto::start();
    let _table = table(&moto).await;
    for (name, value) in moto.env() {
        std::env::set_var(name, value);
    }
    let config = tally_aws::config::sdk_config().await;
    let client = tally_aws::config::dynamodb(&config);
    let tables = client
        .list_tables()
        .send()
        .await
        .expect("list tables through AWS_ENDPOINT_URL");
    assert_eq!(tables.table_names(), ["metrics"]);
}
