//! Redrive's I/O: a record replayed through the claims and the atomic step under its own fence, against a real
//! `valkey-server`; a discarded range read back from a stream on `moto_server`.

use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use tally_aws::redrive::Replayed;
use tally_aws::store::{CounterStore, StoreConfig};
use tally_aws::stream_read::fetch_range;
use tally_aws_testing::valkey_counters;
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::exactly_once::{Batch, DedupWindow, Position};
use tally_domain::redrive::redrive_key;
use tally_domain::store_keys::StoreLane;
use tally_testkit::{Moto, Valkey};

const NOW: i64 = 1_795_698_000_000;

fn click(id: &str) -> Event {
    Event {
        id: id.to_owned(),
        kind: EventKind::Click,
        campaign_id: "c1".into(),
        ad_id: "a1".into(),
        placement_id: None,
        user_id: None,
        client_ts_ms: None,
        received_ms: NOW,
        cost_micros: 0,
        value_micros: 0,
        country: None,
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: None,
    }
}

fn record(seq: u32) -> Position {
    Position::new("shardId-000000000000", &seq.to_string()).expect("position")
}

fn clicks(ids: &[&str]) -> Vec<Event> {
    ids.iter().map(|id| click(id)).collect()
}

/// Clicks counted in `lane` (one campaign, ad and minute in these tests).
fn counted(server: &Valkey, lane: StoreLane) -> u64 {
    valkey_counters(server, lane)
        .values()
        .map(|t| t.get(tally_domain::store_keys::Counter::Clicks))
        .sum()
}

#[test]
fn redrive_replay_counts_a_skipped_record_once_per_lane() {
    let server = Valkey::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let store = rt
        .block_on(CounterStore::connect(&StoreConfig {
            nodes: vec![server.url()],
            credentials: None,
            window: DedupWindow::default(),
            counter_ttl_secs: 0,
            timeout: Duration::from_secs(5),
        }))
        .expect("connect");
    let lane = StoreLane::Realtime;
    // The lane applied records 100, 101 and 103; 102 was discarded (poison, or its invocation failed).
    let mut applied = Batch::new();
    applied
        .push_record(record(100), clicks(&["a", "b"]))
        .expect("100");
    applied
        .push_record(record(101), clicks(&["c"]))
        .expect("101");
    applied
        .push_record(record(103), clicks(&["f"]))
        .expect("103");
    rt.block_on(store.process(lane, &applied, |_| true))
        .expect("lane");
    assert_eq!(counted(&server, lane), 4);

    // Through the lane's own fence the skipped record counts nothing: the mark is past it.
    let mut skipped = Batch::new();
    skipped
        .push_record(record(102), clicks(&["d", "e", "a"]))
        .expect("102");
    let through_mark = rt
        .block_on(store.process(lane, &skipped, |_| true))
        .expect("fenced");
    assert_eq!(through_mark.stats.counted, 0);
    assert_eq!(through_mark.stats.already_applied, 3);

    // Replayed: d and e count (their claims name the record: the fenced attempt above made them, as a crashed attempt would), a is a
    // duplicate of record 100.
    let replay = |lane| {
        rt.block_on(store.replay(lane, &record(102), clicks(&["d", "e", "a"]), |_| true))
            .map(|r| r.outcome)
    };
    let Replayed::Applied(stats) = replay(lane).expect("replay") else {
        panic!("the first replay applies");
    };
    assert_eq!((stats.counted, stats.duplicates, stats.retried), (2, 1, 2));
    assert_eq!(counted(&server, lane), 6);
    assert_eq!(
        tally_aws_testing::valkey(
            &server,
            &["GET", &redrive_key(lane, "shardId-000000000000", "102")]
        ),
        tally_testkit::Reply::Bulk(Some(record(102).mark()))
    );
    // Again: the redrive fence is set, nothing more counts.
    assert_eq!(replay(lane).expect("again"), Replayed::AlreadyReplayed);
    assert_eq!(counted(&server, lane), 6);
    // The lane's mark did not move.
    let mark = rt
        .block_on(store.read_mark(lane, "shardId-000000000000"))
        .expect("mark");
    assert_eq!(mark, Some(record(103)));

    // The settled lane has its own fence: the realtime replay's claims read `Ours` there and count.
    let Replayed::Applied(settled) = replay(StoreLane::Settled).expect("settled") else {
        panic!("the settled lane's first replay applies");
    };
    assert_eq!((settled.counted, settled.retried), (2, 2));
    assert_eq!(
        replay(StoreLane::Settled).expect("again"),
        Replayed::AlreadyReplayed
    );
    assert_eq!(counted(&server, StoreLane::Settled), 2);
    assert_eq!(counted(&server, lane), 6);
}

#[tokio::test]
async fn redrive_fetches_a_range_back_from_the_stream() {
    let moto = Moto::start();
    let kinesis = aws_sdk_kinesis::Client::new(&crate::sdk(&moto).await);
    kinesis
        .create_stream()
        .stream_name("events")
        .shard_count(1)
        .send()
        .await
        .expect("create stream");
    let mut seqs = Vec::new();
    for i in 0..6 {
        let put = kinesis
            .put_record()
            .stream_name("events")
            .partition_key("k")
            .data(Blob::new(format!("record {i}")))
            .send()
            .await
            .expect("put");
        seqs.push(put.sequence_number().to_owned());
    }
    let got = fetch_range(
        &kinesis,
        "events",
        "shardId-000000000000",
        &seqs[1],
        &seqs[3],
    )
    .await
    .expect("fetch");
    let got: Vec<(&str, &[u8])> = got
        .iter()
        .map(|(s, d)| (s.as_str(), d.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (seqs[1].as_str(), &b"record 1"[..]),
            (seqs[2].as_str(), &b"record 2"[..]),
            (seqs[3].as_str(), &b"record 3"[..]),
        ]
    );
    // Up to the tip when the range's end is later than anything written.
    let tail = fetch_range(
        &kinesis,
        "events",
        "shardId-000000000000",
        &seqs[4],
        &format!("9{}", seqs[5]),
    )
    .await
    .expect("tail");
    assert_eq!(tail.len(), 2);
    let err = fetch_range(
        &kinesis,
        "events",
        "shardId-000000000009",
        &seqs[0],
        &seqs[1],
    )
    .await
    .expect_err("no such shard");
    assert!(
        err.contains("ResourceNotFound") || err.contains("shard"),
        "{err}"
    );
}
