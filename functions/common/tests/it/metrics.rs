use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use tally_aws::metrics::{rows, Fence, Lane, MetricsTable, Resolution, RowOutcome};
use tally_aws::Error;
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::rollup::{Counters, Rollup};
use tally_testkit::Moto;

use tally_aws_testing::{Answer, Faults, Proxy};

use crate::{sdk, sdk_at};

/// 2026-11-26 13:00 UTC in unix minutes.
const T0: i64 = 29_402_580;

async fn table(moto: &Moto) -> MetricsTable {
    table_at(&moto.endpoint()).await
}

/// Creates the table through `endpoint` and returns a writer that talks through it.
async fn table_at(endpoint: &str) -> MetricsTable {
    let config = sdk_at(endpoint).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let name = "metrics";
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key")
    };
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attr")
    };
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .send()
        .await
        .expect("create table");
    MetricsTable::new(client, name).with_concurrency(4)
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
        user_id: (i % 5 != 0).then(|| format!("user-{}", i % 50)),
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

fn rollup(range: std::ops::Range<u64>) -> Rollup {
    let mut r = Rollup::new();
    for i in range {
        r.add(&event(i));
    }
    r
}

fn fence(shard: &str, seq: u64) -> Fence {
    Fence::new(shard, &seq.to_string()).expect("fence")
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
    let batch = rollup(0..300);
    let n = rows(Lane::Realtime, &batch).len();
    let first = table
        .apply(Lane::Realtime, &fence("shardId-000000000000", 300), &batch)
        .await
        .expect("apply");
    assert_eq!((first.applied, first.skipped), (n, 0));
    let again = table
        .apply(Lane::Realtime, &fence("shardId-000000000000", 300), &batch)
        .await
        .expect("again");
    assert_eq!((again.applied, again.skipped), (0, n));
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &batch),
    );
    // The other lane is untouched.
    assert!(snapshot(&table, Lane::Settled).await.is_empty());
}

#[tokio::test]
async fn a_crash_half_way_is_completed_by_the_retry() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let batch = rollup(0..200);
    let all = rows(Lane::Realtime, &batch);
    let f = fence("shardId-000000000001", 200);
    // The first invocation dies after a third of the rows.
    let crashed = table
        .apply_rows(&f, &all[..all.len() / 3])
        .await
        .expect("partial");
    assert_eq!(crashed.applied, all.len() / 3);
    let retry = table
        .apply(Lane::Realtime, &f, &batch)
        .await
        .expect("retry");
    assert_eq!(
        (retry.applied, retry.skipped),
        (all.len() - all.len() / 3, all.len() / 3)
    );
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &batch),
    );
}

#[tokio::test]
async fn bisected_retries_after_a_partial_apply_are_exact() {
    let moto = Moto::start();
    let table = table(&moto).await;
    // Records 1..=120 of one shard; event i is record i's content.
    let full = rollup(1..121);
    let all = rows(Lane::Settled, &full);
    let shard = "shardId-000000000002";
    // The full batch reached every other row, then the function failed.
    let reached: Vec<_> = all.iter().step_by(2).cloned().collect();
    table
        .apply_rows(&fence(shard, 120), &reached)
        .await
        .expect("partial");
    // Lambda bisects: first half (records 1..=60), then second half (61..=120), then a quarter again.
    table
        .apply(Lane::Settled, &fence(shard, 60), &rollup(1..61))
        .await
        .expect("first half");
    table
        .apply(Lane::Settled, &fence(shard, 120), &rollup(61..121))
        .await
        .expect("second half");
    let stale = table
        .apply(Lane::Settled, &fence(shard, 30), &rollup(1..31))
        .await
        .expect("stale");
    assert_eq!(
        stale.applied, 0,
        "a batch older than every mark changes nothing"
    );
    assert_exact(
        &snapshot(&table, Lane::Settled).await,
        &expected(Lane::Settled, &full),
    );
}

#[tokio::test]
async fn shards_writing_the_same_rows_concurrently_lose_nothing() {
    let moto = Moto::start();
    // moto's conditional writes are not atomic against concurrent requests; the proxy makes each request
    // atomic, as DynamoDB makes each single-item write, while our read-modify-writes still interleave.
    let proxy = Proxy::start(&moto.endpoint());
    let table = table_at(&proxy.endpoint()).await.with_concurrency(16);
    let shards: Vec<(String, std::ops::Range<u64>)> = (0..4)
        .map(|s| (format!("shardId-00000000000{s}"), s * 60..s * 60 + 60))
        .collect();
    // Each shard applies two batches in order; shards run concurrently and collide on the campaign rows,
    // so the sketch read-modify-write loses races and must retry.
    let tasks = shards.iter().map(|(shard, range)| {
        let table = table.clone();
        let (shard, range) = (shard.clone(), range.clone());
        async move {
            let mid = range.start + 30;
            table
                .apply(
                    Lane::Realtime,
                    &fence(&shard, mid),
                    &rollup(range.start..mid),
                )
                .await?;
            // A redelivery of the first batch in between changes nothing.
            table
                .apply(
                    Lane::Realtime,
                    &fence(&shard, mid),
                    &rollup(range.start..mid),
                )
                .await?;
            table
                .apply(
                    Lane::Realtime,
                    &fence(&shard, range.end),
                    &rollup(mid..range.end),
                )
                .await
        }
    });
    for result in futures_util::future::join_all(tasks).await {
        result.expect("apply");
    }
    let total = rollup(0..240);
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &total),
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
    let batch = rollup(0..200);
    let f = fence("shardId-000000000000", 4242);
    // DynamoDB starts throttling after ten row writes, and keeps on past the SDK's own retries.
    proxy.fail(Faults {
        operation: "UpdateItem".into(),
        after: 10,
        answer: Answer::dynamodb_throttled(),
    });
    let err = table
        .apply(Lane::Realtime, &f, &batch)
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
        .apply(Lane::Realtime, &f, &batch)
        .await
        .expect_err("500");
    assert!(err.is_retryable(), "{err}");
    proxy.heal();
    let retry = table
        .apply(Lane::Realtime, &f, &batch)
        .await
        .expect("retry");
    assert!(retry.skipped >= 10 && retry.applied > 0, "{retry:?}");
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &batch),
    );
}

#[tokio::test]
async fn rows_without_users_take_the_single_write_path() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let mut batch = Rollup::new();
    for i in 0..50 {
        let mut e = event(i);
        e.user_id = None;
        batch.add(&e);
    }
    let all = rows(Lane::Realtime, &batch);
    let f = fence("shardId-000000000000", 9);
    for row in &all {
        assert_eq!(
            table.apply_row(&f, row).await.expect("apply"),
            RowOutcome::Applied
        );
        assert_eq!(
            table.apply_row(&f, row).await.expect("again"),
            RowOutcome::AlreadyApplied
        );
        assert_eq!(
            table
                .apply_row(&fence("shardId-000000000000", 8), row)
                .await
                .expect("older"),
            RowOutcome::AlreadyApplied
        );
    }
    assert_exact(
        &snapshot(&table, Lane::Realtime).await,
        &expected(Lane::Realtime, &batch),
    );
}

#[tokio::test]
async fn readers_and_the_campaign_index() {
    let moto = Moto::start();
    let table = table(&moto).await;
    let batch = rollup(0..90);
    table
        .apply(Lane::Realtime, &fence("s-1", 1), &batch)
        .await
        .expect("apply");
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
    let batch = rollup(0..10);
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
        .apply_row(&fence("s", 1), &row)
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
        .apply(Lane::Realtime, &fence("s", 1), &batch)
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
