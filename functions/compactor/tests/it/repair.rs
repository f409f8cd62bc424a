//! The repair of a cache that lost its data, against a real `valkey-server` and `moto_server` (DynamoDB and
//! S3): both lanes applied over three shards and archived as the deferred lane archives (its own
//! `archive_objects`), the cache flushed before compaction, a redelivery and resends applied to the emptied
//! cache, then runs at chosen times: the loss noticed, the repair waiting for the settled lane, the minutes
//! recomputed from the archive, every series exact again.

use std::time::Duration;

use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_aws::fence::Fence;
use tally_aws::store::{CacheEnv, CounterStore, StoreConfig};
use tally_compactor::{Compactor, CompactorError, Repair};
use tally_domain::compact::{CompactPolicy, Watermark, MINUTE_MS};
use tally_domain::compact_repair::EPOCH_KEY;
use tally_domain::enrich::{enrich_batch, RateLimits};
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::exactly_once::{Batch, DedupWindow, Position};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::StoreLane;
use tally_testkit::{Moto, Valkey};

use super::NOW;

const BUCKET: &str = "archive";

fn event(i: usize) -> Event {
    let kind = EventKind::ALL[i % 4];
    Event {
        id: format!("r{i}"),
        kind,
        campaign_id: format!("c{}", (i / 2) % 2),
        ad_id: format!("a{}", i % 3),
        placement_id: None,
        user_id: None,
        client_ts_ms: None,
        received_ms: NOW + ((i % 2) as i64) * MINUTE_MS + 7,
        cost_micros: 10 * i as u64 + 1,
        value_micros: if kind == EventKind::Conversion {
            1_000
        } else {
            0
        },
        country: None,
        device: DeviceClass::Unknown,
        // One in five is a crawler: invalid, realtime only.
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: i
            .is_multiple_of(5)
            .then(|| "Googlebot/2.1 (+http://www.google.com/bot.html)".to_owned()),
    }
}

fn valid(e: &Event) -> bool {
    e.user_agent.is_none()
}

use super::Truth;

struct Setup {
    server: Valkey,
    moto: Moto,
    store: CounterStore,
    table: CompactedTable,
    s3: aws_sdk_s3::Client,
    compactor: Compactor,
    repair: Repair,
}

async fn setup() -> Setup {
    let server = Valkey::start();
    let moto = Moto::start();
    let store = CounterStore::connect(&StoreConfig {
        nodes: vec![server.url()],
        credentials: None,
        window: DedupWindow::default(),
        counter_ttl_secs: 0,
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("connect");
    let config = tally_aws_testing::sdk_config(&moto.endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    tally_aws_testing::create_metrics_table(&dynamodb, "metrics").await;
    let s3 = tally_aws::config::s3(&config);
    s3.create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    let table = CompactedTable::new(dynamodb.clone(), "metrics");
    let source = StoreSource::connect(
        CacheEnv::plain(server.addr()),
        0,
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("connect");
    let repair = Repair::new(dynamodb, "metrics", s3.clone(), BUCKET, 3_600);
    let compactor = Compactor::new(source, table.clone(), CompactPolicy::default())
        .expect("policy")
        .with_repair(repair.clone());
    Setup {
        server,
        moto,
        store,
        table,
        s3,
        compactor,
        repair,
    }
}

/// Shard `shard`'s batch of events `0..n`: three records, every fourth event also on a second shard.
fn batch_of(shard: usize, n: usize) -> (String, Vec<(Position, Vec<Event>)>) {
    let id = format!("shardId-{shard:012}");
    let records = (0..3)
        .map(|r| {
            let events = (0..n)
                .filter(|i| i % 3 == r && (i % 3 == shard || i % 4 == 0))
                .map(event)
                .collect();
            let position = Position::new(&id, &(200 + r).to_string()).expect("position");
            (position, events)
        })
        .collect();
    (id, records)
}

/// Applies shard `shard`'s batch to `lane`.
async fn apply(store: &CounterStore, lane: StoreLane, shard: usize, n: usize) {
    let (id, records) = batch_of(shard, n);
    let mut batch = Batch::new();
    for (position, events) in records {
        batch.push_record(position, events).expect("in order");
    }
    store.register_shard(lane, &id).await.expect("register");
    let keep = |e: &Event| lane == StoreLane::Realtime || valid(e);
    store.process(lane, &batch, keep).await.expect("applies");
}

/// Writes shard `shard`'s batch to the archive as the deferred lane does.
async fn archive(s3: &aws_sdk_s3::Client, shard: usize, n: usize) {
    let (id, records) = batch_of(shard, n);
    let mut fences = Vec::new();
    let mut events = Vec::new();
    for (position, evs) in &records {
        for e in evs {
            fences.push(Fence::new(&id, position.sequence()).expect("fence"));
            events.push(e.clone());
        }
    }
    let enriched = enrich_batch(&events, &RateLimits::default());
    assert!(enriched
        .iter()
        .zip(&events)
        .all(|(x, e)| x.is_valid() == valid(e)));
    let positions: Vec<&Fence> = fences.iter().collect();
    let (first, last) = (
        Fence::new(&id, records[0].0.sequence()).expect("first"),
        Fence::new(&id, records[2].0.sequence()).expect("last"),
    );
    for (key, body) in tally_deferred::archive_objects(&first, &last, &positions, &enriched) {
        s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put archive object");
    }
}

/// Shard `shard`'s events resent 30 s later as one record of shard 2 (sequence number 300), applied by both
/// lanes and archived.
async fn resend(s: &Setup, shard: usize, n: usize) {
    let events: Vec<Event> = batch_of(shard, n)
        .1
        .into_iter()
        .flat_map(|(_, evs)| evs)
        .map(|mut e| {
            e.received_ms += 30_000;
            e
        })
        .collect();
    let id = format!("shardId-{:012}", 2);
    let position = Position::new(&id, "300").expect("position");
    let mut batch = Batch::new();
    batch
        .push_record(position, events.clone())
        .expect("one record");
    for lane in StoreLane::ALL {
        let keep = |e: &Event| lane == StoreLane::Realtime || valid(e);
        s.store.process(lane, &batch, keep).await.expect("applies");
    }
    let fence = Fence::new(&id, "300").expect("fence");
    let positions: Vec<&Fence> = events.iter().map(|_| &fence).collect();
    let enriched = enrich_batch(&events, &RateLimits::default());
    for (key, body) in tally_deferred::archive_objects(&fence, &fence, &positions, &enriched) {
        s.s3.put_object()
            .bucket(BUCKET)
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put archive object");
    }
}

fn truth(n: usize) -> Truth {
    let mut truth = Truth::default();
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

async fn series(s: &Setup, from: i64, to: i64) -> Truth {
    super::series_of(&s.table, &s.store, from, to).await
}

#[tokio::test]
async fn a_cache_that_lost_its_data_is_repaired_from_the_archive() {
    let s = setup().await;
    let n = 120;
    let m0 = minute_of(NOW);
    let (from, to) = (m0 - 5, m0 + 5);
    let end = (m0 + 2) * MINUTE_MS;

    // Before anything closes: the first run records the cache's epoch.
    let o = s.compactor.process(end + 30_000).await.expect("run");
    assert_eq!((o.items, o.repaired), (0, 0));
    let epoch = s.repair.state().await.expect("state").epoch;
    assert!(epoch.is_some());

    // Both lanes apply and archive every shard's batch; then the cache loses everything.
    for shard in 0..3 {
        for lane in StoreLane::ALL {
            apply(&s.store, lane, shard, n).await;
        }
        archive(&s.s3, shard, n).await;
    }
    assert_eq!(series(&s, from, to).await, truth(n));
    s.server.command(&["FLUSHALL"]).expect("flush");
    // After the loss: shard 0's batch is redelivered to both lanes (its marks are gone, so the emptied cache
    // counts it again), and a client resends shard 1's events 30 s later in a record of shard 2 (their claims
    // are gone too): applied by both lanes and archived like any record.
    for lane in StoreLane::ALL {
        apply(&s.store, lane, 0, n).await;
    }
    resend(&s, 1, n).await;
    let after_loss = series(&s, from, to).await;
    assert_ne!(
        after_loss,
        truth(n),
        "the emptied cache holds part of the counts"
    );

    // The loss is noticed two minutes later; the settled lane has not closed the minutes yet: nothing moves.
    let noticed = end + 2 * MINUTE_MS + 1;
    let o = s.compactor.process(noticed).await.expect("run");
    assert_eq!((o.items, o.to.realtime), (0, o.from.realtime), "{o:?}");
    assert!(o.to.settled < Some(m0), "{o:?}");
    let state = s.repair.state().await.expect("state");
    assert_ne!(state.epoch, epoch, "a new epoch is recorded");
    assert_eq!(state.repair_to, Some(minute_of(noticed)));
    // Meanwhile readers take those minutes from the emptied cache.
    assert_eq!(series(&s, from, to).await, after_loss);

    // Once the settled lane has closed the bound, the minutes come from the archive: exact in both lanes.
    let repaired = (minute_of(noticed) + 1) * MINUTE_MS + 10 * MINUTE_MS + 1;
    let o = s.compactor.process(repaired).await.expect("run");
    assert!(o.repaired > 0 && o.items == 4, "{o:?}");
    assert_eq!(
        o.to,
        Watermark {
            realtime: Some(minute_of(noticed)),
            settled: Some(minute_of(noticed)),
        }
    );
    assert_eq!(series(&s, from, to).await, truth(n));
    let items = s.table.items("c0", from, to).await.expect("items");
    assert!(items.iter().all(|i| i.settled_final), "{items:?}");

    // The repair is done: the next run compacts from the cache again and changes nothing here.
    let o = s
        .compactor
        .process(repaired + MINUTE_MS)
        .await
        .expect("run");
    assert_eq!(o.repaired, 0, "{o:?}");
    assert_eq!(series(&s, from, to).await, truth(n));
}

#[tokio::test]
async fn a_loss_during_a_run_fails_it_and_a_corrupt_epoch_row_is_refused() {
    let s = setup().await;
    let checked = s.repair.check(&s.store, NOW).await.expect("check");
    s.repair
        .confirm(&s.store, &checked.epoch)
        .await
        .expect("still there");
    s.server.command(&["FLUSHALL"]).expect("flush");
    let err = s
        .repair
        .confirm(&s.store, &checked.epoch)
        .await
        .expect_err("lost");
    assert!(
        matches!(err, CompactorError::CacheLost { found: None, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("the next run repairs"), "{err}");
    // The cache key is the one the decision names.
    assert_eq!(s.store.get(EPOCH_KEY).await.expect("get"), None);

    let config = tally_aws_testing::sdk_config(&s.moto.endpoint()).await;
    aws_sdk_dynamodb::Client::new(&config)
        .put_item()
        .table_name("metrics")
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S("compactor".into()),
        )
        .item(
            "sk",
            aws_sdk_dynamodb::types::AttributeValue::S("epoch".into()),
        )
        .item(
            "epoch",
            aws_sdk_dynamodb::types::AttributeValue::S("not-hex".into()),
        )
        .send()
        .await
        .expect("put");
    let err = s
        .compactor
        .process(NOW)
        .await
        .expect_err("corrupt")
        .to_string();
    assert!(
        err.contains("epoch row") && err.contains("32 lowercase hexadecimal digits"),
        "{err}"
    );
}
