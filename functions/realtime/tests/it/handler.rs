//! The handler against a real `valkey-server` (one-node cluster, `tally_testkit::Valkey`): exactly once by
//! event id through duplicate deliveries, poison records, bisected retries, a failing store, and resent ids.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Context, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::store::CacheEnv;
use tally_aws_testing::{distinct_tallies, valkey, valkey_counters};
use tally_domain::event::Event;
use tally_domain::exactly_once::Tally;
use tally_domain::store_keys::{mark_key, StoreLane};
use tally_domain::wire;
use tally_realtime::{handler, Realtime};
use tally_testkit::{Reply, Valkey};

use crate::fixture;

type Counts = BTreeMap<(String, String, i64), Tally>;

async fn realtime(server: &Valkey) -> Realtime {
    let store = StoreSource::connect(
        CacheEnv::plain(server.addr()),
        0,
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("connect");
    Realtime::new(store)
}

/// Calls the handler as the Lambda runtime does; the response as JSON.
async fn invoke(state: &Realtime, payload: &KinesisEvent) -> Result<serde_json::Value, String> {
    handler(state, LambdaEvent::new(payload.clone(), Context::default()))
        .await
        .map(|response| serde_json::to_value(response).expect("response serializes"))
        .map_err(|error| error.to_string())
}

fn no_failures() -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({"batchItemFailures": []}))
}

fn failure_at(seq: &str) -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({"batchItemFailures": [{"itemIdentifier": seq}]}))
}

/// The events held by records `range` of `batch`.
fn events_of(batch: &KinesisEvent, range: impl IntoIterator<Item = usize>) -> Vec<Event> {
    range
        .into_iter()
        .flat_map(|i| wire::unpack(&batch.records[i].kinesis.data).expect("unpack"))
        .collect()
}

fn counts(server: &Valkey) -> Counts {
    valkey_counters(server, StoreLane::Realtime)
}

#[track_caller]
fn assert_counts(got: &Counts, want: &Counts) {
    for (key, tally) in want {
        assert_eq!(got.get(key), Some(tally), "cell {key:?}");
    }
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "cells nothing should have counted: {extra:?}"
    );
}

fn corrupt(batch: &mut KinesisEvent, index: usize) {
    *batch.records[index].kinesis.data = b"\xF3\x89\x9A\xC2 not ours".to_vec();
}

/// A redelivery as Lambda makes it after a partial failure: the records from `from` on.
fn from(batch: &KinesisEvent, from: usize) -> KinesisEvent {
    let mut out = batch.clone();
    out.records.drain(..from);
    out
}

/// `batch` followed by `extra` records of the same shard (later sequence numbers).
fn append(batch: &KinesisEvent, extra: Vec<Vec<u8>>) -> KinesisEvent {
    let mut out = batch.clone();
    let n = out.records.len();
    for (i, data) in extra.into_iter().enumerate() {
        let mut record = out.records[0].clone();
        let seq = tally_aws_testing::sequence_number(n + i);
        record.event_id = Some(format!("{}:{seq}", fixture::SHARD));
        record.kinesis.sequence_number = seq;
        *record.kinesis.data = data;
        out.records.push(record);
    }
    out
}

#[tokio::test]
async fn a_batch_and_its_duplicate_delivery_count_once() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let batch = fixture::load();
    assert_eq!(invoke(&state, &batch).await, no_failures());
    assert_eq!(
        invoke(&state, &batch).await,
        no_failures(),
        "the duplicate is acknowledged"
    );
    assert_counts(&counts(&server), &distinct_tallies(&fixture::events()));
    // The mark is the batch's last record.
    let last = &batch
        .records
        .last()
        .expect("records")
        .kinesis
        .sequence_number;
    let mark = valkey(
        &server,
        &["GET", &mark_key(StoreLane::Realtime, fixture::SHARD)],
    );
    let Reply::Bulk(Some(mark)) = mark else {
        panic!("no mark: {mark:?}")
    };
    assert!(mark.ends_with(last.as_str()), "{mark} vs {last}");
}

#[tokio::test]
async fn resent_ids_in_later_records_count_once() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let batch = fixture::load();
    let events = fixture::events();
    // A client resends 30 events after a timeout (a new request: a new record), and one body holds the same
    // event twice: neither is counted again.
    let resend = wire::encode_record(&events[..30]);
    let twice = wire::encode_record(&[events[40].clone(), events[40].clone()]);
    let with_resends = append(&batch, vec![resend, twice]);
    assert_eq!(invoke(&state, &with_resends).await, no_failures());
    assert_counts(&counts(&server), &distinct_tallies(&events));
    // The same resend in a later batch (after the checkpoint): still once.
    let later = append(&with_resends, vec![wire::encode_record(&events[100..130])]);
    assert_eq!(
        invoke(&state, &from(&later, later.records.len() - 1)).await,
        no_failures()
    );
    assert_counts(&counts(&server), &distinct_tallies(&events));
}

#[tokio::test]
async fn a_poison_record_is_reported_and_every_other_record_is_applied() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let mut batch = fixture::load();
    let n = batch.records.len();
    assert!(n >= 4, "the fixture needs at least four records, has {n}");
    corrupt(&mut batch, 2);
    let seq2 = batch.records[2].kinesis.sequence_number.clone();
    let all_but_2: Vec<usize> = (0..n).filter(|&i| i != 2).collect();
    let want = distinct_tallies(&events_of(&batch, all_but_2));
    assert_eq!(invoke(&state, &batch).await, failure_at(&seq2));
    assert_counts(&counts(&server), &want);
    // Lambda redelivers from the failed record: still poison, and the records after it are not counted twice.
    assert_eq!(invoke(&state, &from(&batch, 2)).await, failure_at(&seq2));
    assert_counts(&counts(&server), &want);
    // After the poison record is discarded the shard moves on; a redelivery of the rest changes nothing.
    assert_eq!(invoke(&state, &from(&batch, 3)).await, no_failures());
    assert_counts(&counts(&server), &want);
}

#[tokio::test]
async fn mixed_batches_and_malformed_invocations() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let mut batch = fixture::load();
    // Two poison records: the others are applied, the lowest poison record is reported.
    corrupt(&mut batch, 0);
    corrupt(&mut batch, 3);
    let seq0 = batch.records[0].kinesis.sequence_number.clone();
    assert_eq!(invoke(&state, &batch).await, failure_at(&seq0));
    let others: Vec<usize> = (0..batch.records.len())
        .filter(|&i| i != 0 && i != 3)
        .collect();
    assert_counts(
        &counts(&server),
        &distinct_tallies(&events_of(&batch, others)),
    );
    // An empty batch is a success that changes nothing.
    let before = counts(&server);
    assert_eq!(
        invoke(&state, &KinesisEvent::default()).await,
        no_failures()
    );
    // An invocation Lambda would never send fails as a whole, with the reason, and applies nothing.
    let mut mixed_shards = fixture::load();
    mixed_shards.records[1].event_id = Some(format!(
        "shardId-000000000007:{}",
        mixed_shards.records[1].kinesis.sequence_number
    ));
    let err = invoke(&state, &mixed_shards)
        .await
        .expect_err("mixed shards");
    assert_eq!(err, "malformed kinesis batch at record 1: record of shard shardId-000000000007 in a batch of shard shardId-000000000006");
    let mut bad_seq = fixture::load();
    bad_seq.records[0].kinesis.sequence_number = "12ab".into();
    let err = invoke(&state, &bad_seq).await.expect_err("bad sequence");
    assert!(
        err.starts_with("malformed kinesis batch at record 0: eventID"),
        "{err}"
    );
    assert!(
        counts(&server) == before,
        "a malformed invocation changed the counters"
    );
    // Malformed JSON never reaches the handler: the event type refuses it.
    assert!(
        serde_json::from_str::<KinesisEvent>(r#"{"Records": [{"kinesis": {"data": "%%%"}}]}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<KinesisEvent>(r#"{"Records": 7}"#).is_err());
}

#[tokio::test]
async fn a_failing_store_fails_the_invocation_and_the_bisected_retries_are_exact() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let batch = fixture::load();
    // Something else holds the shard's mark key with another type: the step fails, nothing is counted, and
    // the error names the server's code.
    let mark = mark_key(StoreLane::Realtime, fixture::SHARD);
    valkey(&server, &["HSET", &mark, "x", "1"]);
    let err = invoke(&state, &batch).await.expect_err("wrong type");
    assert!(err.contains("WRONGTYPE"), "{err}");
    assert!(counts(&server).is_empty(), "nothing counted");
    valkey(&server, &["DEL", &mark]);
    // Lambda bisects on a function error: first half, then second half, then the whole batch once more. The
    // claims of the failed attempt are this batch's own records: they still count, once.
    let half = batch.records.len() / 2;
    let mut first = batch.clone();
    first.records.truncate(half);
    assert_eq!(invoke(&state, &first).await, no_failures());
    assert_eq!(invoke(&state, &from(&batch, half)).await, no_failures());
    assert_eq!(invoke(&state, &batch).await, no_failures());
    assert_counts(&counts(&server), &distinct_tallies(&fixture::events()));
}

#[tokio::test]
async fn metrics_line_reports_latency_and_batch_size() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let mut batch = fixture::load();
    let n = batch.records.len();
    corrupt(&mut batch, n - 1);
    let now = fixture::T0_MS + 300_000;
    let outcome = state.process(&batch, || now).await.expect("process");
    let line: serde_json::Value =
        serde_json::from_str(&outcome.metrics.to_line()).expect("emf json");
    assert_eq!(line["BatchRecords"], n);
    assert_eq!(line["FailedRecords"], 1);
    let events = events_of(&batch, 0..n - 1);
    assert_eq!(line["BatchEvents"], events.len());
    let latencies = line["ReceiveToAppliedMs"].as_array().expect("values");
    let max = events
        .iter()
        .map(|e| now - e.received_ms)
        .max()
        .expect("events");
    assert_eq!(
        latencies.last().and_then(serde_json::Value::as_i64),
        Some(max)
    );
    assert_eq!(outcome.stats.counted, events.len());
    assert_eq!(outcome.script_calls, 1);
    // The same batch again: fenced, no script call, nothing counted.
    let again = state.process(&batch, || now).await.expect("process");
    assert_eq!((again.stats.counted, again.script_calls), (0, 0));
    assert_eq!(again.stats.already_applied, events.len());
}

/// `INFO commandstats` calls per command.
fn calls(server: &Valkey) -> BTreeMap<String, u64> {
    server
        .info("commandstats")
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.strip_prefix("cmdstat_")?;
            let calls = v.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn one_claim_per_event_and_one_atomic_step_per_batch() {
    let server = Valkey::start();
    let state = realtime(&server).await;
    let batch = fixture::load();
    let events = fixture::events();
    valkey(&server, &["CONFIG", "RESETSTAT"]);
    assert_eq!(invoke(&state, &batch).await, no_failures());
    let c = calls(&server);
    let get = |name: &str| c.get(name).copied().unwrap_or(0);
    // One claim per distinct id, one mark read, one script call (EVAL the first time: the node had not
    // cached it; the failed EVALSHA is counted as a call too).
    assert_eq!(
        get("set"),
        events.len() as u64 + 1,
        "the claims and the script's mark: {c:?}"
    );
    assert_eq!(
        get("get"),
        1 + 1,
        "the mark, by us and by the script: {c:?}"
    );
    assert_eq!(get("eval") + get("evalsha"), 2, "{c:?}");
    let increments = get("hincrby");
    eprintln!(
        "measured: {} events, {} records -> {} claims, 1 mark read, 1 script ({} HINCRBY, {} SADD inside); a row write per event and counter would be {}",
        events.len(),
        batch.records.len(),
        get("set"),
        increments,
        get("sadd"),
        events.len() * 6
    );
    assert!(increments > 0 && increments < events.len() as u64, "{c:?}");
}
