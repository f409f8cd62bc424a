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

use super::{event, series, setup, source, Truth};

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
    let s = setup().await;
    let config = tally_aws_testing::sdk_config(&s._aws.endpoint()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    kinesis
        .create_stream()
        .stream_name("events")
        .shard_count(1)
        .send()
        .await
        .expect("CreateStream");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let m = minute_of(now);
    // Two requests received now, one record each on the one shard.
    let events: Vec<Event> = (0..2)
        .map(|i| Event {
            received_ms: now,
            ..event(i)
        })
        .collect();
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
