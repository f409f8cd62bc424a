//! The lanes' progress against a real stream (`moto_server`'s Kinesis) and a real `valkey-server`: a lane that
//! lags past its grace period holds its minutes open until it has applied them, then they close with every
//! count (docs/counter-store.md, "Lane progress"). Without the progress the first run below compacts the
//! minute with the realtime lane's second record missing, and the item is never corrected.

use aws_sdk_kinesis::primitives::Blob;
use tally_aws::lane_progress::ProgressReader;
use tally_compactor::Compactor;
use tally_domain::compact::{CompactPolicy, ShardProgress, MINUTE_MS};
use tally_domain::event::Event;
use tally_domain::exactly_once::{Batch, Position};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::StoreLane;

use super::{event, series, setup, setup_on, source, Aws, Truth};
use tally_testkit::LocalAwsEndpoint;

/// Puts one record into the stream; its position.
async fn put(kinesis: &aws_sdk_kinesis::Client, key: &str) -> Position {
    let out = kinesis
        .put_record()
        .stream_name("events")
        .partition_key(key)
        .data(Blob::new(b"{}".to_vec()))
        .send()
        .await
        .expect("PutRecord");
    Position::new(out.shard_id(), out.sequence_number()).expect("position")
}

async fn apply(s: &super::Setup, lane: StoreLane, position: &Position, e: &Event) {
    let mut batch = Batch::new();
    batch
        .push_record(position.clone(), vec![e.clone()])
        .expect("one record");
    s.store
        .process(lane, &batch, |_: &Event| true)
        .await
        .expect("applies");
}

#[tokio::test]
async fn a_lane_behind_past_its_grace_holds_its_minutes_open_until_it_has_applied_them() {
    lane_behind(setup().await).await;
}

/// The same against the local cloud's own Kinesis (the stream the compactor reads in `cargo xtask dev` and the
/// end-to-end tests): the iterators, `MillisBehindLatest` and arrival times the reader relies on.
#[tokio::test]
async fn the_local_clouds_stream_answers_the_progress_reads_as_moto_does() {
    lane_behind(setup_on(Aws::Local(LocalAwsEndpoint::start())).await).await;
}

/// What both scenarios start from: a Kinesis client of `s`'s endpoint, the stream `events` with `shards`
/// shards, the wall clock now and `n` events received now.
struct Stream {
    kinesis: aws_sdk_kinesis::Client,
    now: i64,
    events: Vec<Event>,
}

async fn stream(s: &super::Setup, shards: i32, n: usize) -> Stream {
    let config = tally_aws_testing::sdk_config(&s._aws.endpoint()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    kinesis
        .create_stream()
        .stream_name("events")
        .shard_count(shards)
        .send()
        .await
        .expect("CreateStream");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let events = (0..n)
        .map(|i| Event {
            received_ms: now,
            ..event(i)
        })
        .collect();
    Stream {
        kinesis,
        now,
        events,
    }
}

async fn lane_behind(s: super::Setup) {
    // Two requests received now, one record each on the one shard.
    let Stream {
        kinesis,
        now,
        events,
    } = stream(&s, 1, 2).await;
    let config = tally_aws_testing::sdk_config(&s._aws.endpoint()).await;
    let m = minute_of(now);
    let first = put(&kinesis, "a").await;
    let second = put(&kinesis, "b").await;
    assert_eq!(first.shard(), second.shard());
    // The settled lane applied both; the realtime lane only the first (it is stuck on the second).
    for (position, e) in [(&first, &events[0]), (&second, &events[1])] {
        apply(&s, StoreLane::Settled, position, e).await;
    }
    apply(&s, StoreLane::Realtime, &first, &events[0]).await;

    let reader = ProgressReader::new(tally_aws::config::kinesis(&config), "events");
    let late = (m + 12) * MINUTE_MS; // past both grace periods (2 and 10 minutes) for minute m
    let realtime = reader
        .lane(&s.store, StoreLane::Realtime, late)
        .await
        .expect("progress");
    let [(shard, ShardProgress::Behind { arrived_ms })] = realtime.as_slice() else {
        panic!("the realtime lane is behind on its one shard: {realtime:?}")
    };
    assert_eq!(shard, first.shard());
    assert!((arrived_ms - now).abs() < 60_000, "{arrived_ms} vs {now}");
    assert_eq!(
        reader
            .lane(&s.store, StoreLane::Settled, late)
            .await
            .expect("progress"),
        [(
            first.shard().to_owned(),
            ShardProgress::CaughtUp { read_ms: late }
        )]
    );
    // A shard the lane's set still lists that the stream no longer has (a closed shard past the retention):
    // nothing can arrive in it, caught up.
    let gone = Position::new("shardId-000000000099", "7").expect("position");
    let shards = tally_domain::store_keys::shards_key(StoreLane::Settled);
    let mark = tally_domain::store_keys::mark_key(StoreLane::Settled, gone.shard());
    s.server
        .command(&["SADD", &shards, gone.shard()])
        .expect("SADD");
    s.server
        .command(&["SET", &mark, &gone.mark()])
        .expect("SET");
    assert_eq!(
        reader
            .lane(&s.store, StoreLane::Settled, late)
            .await
            .expect("progress"),
        [
            (
                first.shard().to_owned(),
                ShardProgress::CaughtUp { read_ms: late }
            ),
            (
                gone.shard().to_owned(),
                ShardProgress::CaughtUp { read_ms: late }
            )
        ]
    );

    let compactor = Compactor::new(
        source(&s.server).await,
        s.table.clone(),
        CompactPolicy::default(),
    )
    .expect("policy")
    .with_progress(reader);
    // The clock alone would close minute m; the realtime lane's progress does not.
    let o = compactor.process(late).await.expect("run");
    assert!(o.to.realtime < Some(m), "{o:?}");
    assert!(o.to.settled <= o.to.realtime, "{o:?}");
    // Readers take minute m live from the cache meanwhile: the first event in realtime, both settled.
    let truth = |realtime: &[&Event]| {
        let mut t = Truth::default();
        for (l, list) in [realtime, &[&events[0], &events[1]][..]]
            .into_iter()
            .enumerate()
        {
            for e in list {
                t[l].entry((e.campaign_id.clone(), e.ad_id.clone(), m))
                    .or_default()
                    .add(e);
            }
        }
        t
    };
    assert_eq!(series(&s, m - 1, m + 1).await, truth(&[&events[0]]));

    // The realtime lane gets past the second record: the next run closes the minute with both events.
    apply(&s, StoreLane::Realtime, &second, &events[1]).await;
    let o = compactor.process(late).await.expect("run");
    assert!(o.to.realtime >= Some(m) && o.to.settled >= Some(m), "{o:?}");
    assert!(o.items > 0, "{o:?}");
    // Minute m now comes from the items, and the cache no longer matters for it.
    s.server.command(&["FLUSHALL"]).expect("flush");
    assert_eq!(
        series(&s, m - 1, m + 1).await,
        truth(&[&events[0], &events[1]])
    );
}

/// Writes `records` (position, event) to the archive as the deferred lane does, one batch (one shard's).
async fn archive(s3: &aws_sdk_s3::Client, records: &[(&Position, &Event)]) {
    use tally_aws::fence::Fence;
    let fences: Vec<Fence> = records
        .iter()
        .map(|(p, _)| Fence::new(p.shard(), p.sequence()).expect("fence"))
        .collect();
    let events: Vec<Event> = records.iter().map(|(_, e)| (*e).clone()).collect();
    let enriched =
        tally_domain::enrich::enrich_batch(&events, &tally_domain::enrich::RateLimits::default());
    let positions: Vec<&Fence> = fences.iter().collect();
    let (first, last) = (&fences[0], &fences[fences.len() - 1]);
    for (key, body) in tally_deferred::archive_objects(first, last, &positions, &enriched) {
        s3.put_object()
            .bucket("archive")
            .key(key)
            .body(body.into())
            .send()
            .await
            .expect("put archive object");
    }
}

/// After a loss the marks are gone with the cache's data; the repair asks the stream how far the deferred lane
/// has *archived* each shard instead, and waits while a record of the repaired minutes is in the stream but not
/// in the archive (the deferred lane stuck on it). Without the progress the repair runs on the clock and
/// writes the minute without that record, for good.
#[tokio::test]
async fn a_repair_waits_until_the_archive_holds_every_record_of_its_minutes() {
    repair_waits(setup().await).await;
}

/// The same on the local cloud's own stream, bucket and table (`ListShards`, `AT_TIMESTAMP` included).
#[tokio::test]
async fn the_local_clouds_stream_answers_the_repairs_reads_as_moto_does() {
    repair_waits(setup_on(Aws::Local(LocalAwsEndpoint::start())).await).await;
}

/// The archive bucket (`archive`), a repair reading it with a dedup window of `window_secs`, and a compactor
/// with `policy` that repairs with it and reads the stream `events`.
struct Repairing {
    s3: aws_sdk_s3::Client,
    repair: tally_compactor::Repair,
    compactor: Compactor,
}

async fn repairing(s: &super::Setup, policy: CompactPolicy, window_secs: u64) -> Repairing {
    let config = tally_aws_testing::sdk_config(&s._aws.endpoint()).await;
    let s3 = tally_aws::config::s3(&config);
    s3.create_bucket()
        .bucket("archive")
        .send()
        .await
        .expect("CreateBucket");
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let repair =
        tally_compactor::Repair::new(dynamodb, "metrics", s3.clone(), "archive", window_secs);
    let compactor = Compactor::new(source(&s.server).await, s.table.clone(), policy)
        .expect("policy")
        .with_repair(repair.clone())
        .with_progress(ProgressReader::new(
            tally_aws::config::kinesis(&config),
            "events",
        ));
    Repairing {
        s3,
        repair,
        compactor,
    }
}

async fn repair_waits(s: super::Setup) {
    let Stream {
        kinesis,
        now,
        events,
    } = stream(&s, 2, 3).await;
    let Repairing {
        s3,
        repair,
        compactor,
    } = repairing(&s, CompactPolicy::default(), 3_600).await;
    let m = minute_of(now);
    // The first run records the cache's epoch.
    compactor.process(now).await.expect("run");
    let mut positions = Vec::new();
    for key in ["a", "b", "c"] {
        positions.push(put(&kinesis, key).await);
    }
    // Both lanes count all three; the deferred lane archives the first two, and is stuck on the third.
    for (position, e) in positions.iter().zip(&events) {
        for lane in StoreLane::ALL {
            apply(&s, lane, position, e).await;
        }
    }
    // (A batch is one shard's: one object each.)
    for i in 0..2 {
        archive(&s3, &[(&positions[i], &events[i])]).await;
    }
    // The cache loses everything; the next run notices.
    s.server.command(&["FLUSHALL"]).expect("flush");
    let noticed = (m + 1) * MINUTE_MS + 1;
    compactor.process(noticed).await.expect("run");
    let bound = repair.state().await.expect("state").repair_to;
    assert_eq!(bound, Some(m + 1));
    // Past the settled grace for the bound the clock would repair every minute up to it; the archive is not
    // complete for minute m: the minutes before it are repaired, m and the bound wait.
    let late = (m + 13) * MINUTE_MS;
    let o = compactor.process(late).await.expect("run");
    // (m - 2 when the records arrived in the first 15 s of m: `RECEIVE_TO_ARRIVAL_MAX_MS`.)
    assert!(
        o.to.settled < Some(m) && o.to.settled >= Some(m - 2) && o.repaired > 0,
        "{o:?}"
    );
    let o = compactor.process(late).await.expect("run");
    assert_eq!((o.repaired, o.to), (0, o.from), "{o:?}");
    // The deferred lane gets past the third record and archives it: the repair runs, with all three.
    archive(&s3, &[(&positions[2], &events[2])]).await;
    let o = compactor.process(late).await.expect("run");
    assert!(o.repaired > 0 && o.to.settled == bound, "{o:?}");
    // Settled: the deferred lane's verdicts, as archived.
    let verdicts =
        tally_domain::enrich::enrich_batch(&events, &tally_domain::enrich::RateLimits::default());
    let mut want = Truth::default();
    for (e, verdict) in events.iter().zip(&verdicts) {
        for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
            if lane == StoreLane::Realtime || verdict.is_valid() {
                want[l]
                    .entry((e.campaign_id.clone(), e.ad_id.clone(), m))
                    .or_default()
                    .add(e);
            }
        }
    }
    assert_eq!(series(&s, m - 1, m + 1).await, want);
}

/// A repair whose last minute is an hour's last reads the next hour's archive partition too: a record received
/// in the next hour's first 15 s may be the one after the last the read finds. Without it the stream answers
/// with that record (archived, in the partition the read skipped) at every run, its arrival too early for the
/// minute: the repair waits for good. The minute is in the future here, so that the records' arrival (now)
/// is before its end, as it is when a repair runs at an hour's end.
#[tokio::test]
async fn a_repair_ending_on_an_hours_last_minute_reads_the_next_hours_archive() {
    let s = setup().await;
    let Stream {
        kinesis,
        now,
        events,
    } = stream(&s, 1, 2).await;
    // One run repairs everything from the first watermark to the bound, up to two hours.
    let policy = CompactPolicy {
        max_minutes_per_run: 180,
        ..CompactPolicy::default()
    };
    let Repairing {
        s3,
        repair,
        compactor,
    } = repairing(&s, policy, 60).await;
    compactor.process(now).await.expect("run");
    // The next hour's last minute, after this one.
    let last = minute_of(now) + 1;
    let last = last + (59 - last.rem_euclid(60));
    s.server.command(&["FLUSHALL"]).expect("flush");
    compactor.process(last * MINUTE_MS + 1).await.expect("run");
    assert_eq!(repair.state().await.expect("state").repair_to, Some(last));
    // Two requests, 15 s apart across the hour's end, a record each, both archived (one batch each).
    let at = [last * MINUTE_MS + 50_000, (last + 1) * MINUTE_MS + 5_000];
    let events: Vec<Event> = events
        .into_iter()
        .zip(at)
        .map(|(e, received_ms)| Event { received_ms, ..e })
        .collect();
    for (key, e) in ["a", "b"].into_iter().zip(&events) {
        let position = put(&kinesis, key).await;
        archive(&s3, &[(&position, e)]).await;
    }
    let late = (last + 13) * MINUTE_MS;
    let o = compactor.process(late).await.expect("run");
    assert_eq!(o.to.settled, Some(last), "the repair waits: {o:?}");
    // The minute holds the first request, in both lanes as the deferred lane judged it.
    let verdict = tally_domain::enrich::enrich_batch(
        &events[..1],
        &tally_domain::enrich::RateLimits::default(),
    );
    let mut want = Truth::default();
    for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
        if lane == StoreLane::Realtime || verdict[0].is_valid() {
            want[l]
                .entry((events[0].campaign_id.clone(), events[0].ad_id.clone(), last))
                .or_default()
                .add(&events[0]);
        }
    }
    assert_eq!(series(&s, last - 1, last).await, want);
}
