use std::collections::BTreeMap;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Context, LambdaEvent};
use tally_aws::metrics::{rows, Lane, MetricsTable, Resolution};
use tally_aws_testing::{Answer, Faults, Proxy};
use tally_domain::event::Event;
use tally_domain::rollup::{Counters, Rollup};
use tally_domain::wire;
use tally_realtime::{handler, Realtime};
use tally_testkit::Moto;

use crate::fixture;

async fn table_at(endpoint: &str) -> MetricsTable {
    let client = aws_sdk_dynamodb::Client::new(&tally_aws_testing::sdk_config(endpoint).await);
    tally_aws_testing::create_metrics_table(&client, "metrics").await;
    MetricsTable::new(client, "metrics")
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

/// Every realtime row of the fixture's campaigns, as the readers see them.
async fn snapshot(table: &MetricsTable) -> BTreeMap<String, Counters> {
    let mut out = BTreeMap::new();
    let minute = fixture::T0_MS / 60_000;
    for campaign in ["spring-0", "spring-1"] {
        for res in Resolution::ALL {
            let series = table
                .series(campaign, Lane::Realtime, res, minute - 1440, minute + 1440)
                .await
                .expect("series");
            let ads = table
                .ads(campaign, Lane::Realtime, res, minute - 1440, minute + 1440)
                .await
                .expect("ads");
            for row in series.into_iter().chain(ads) {
                out.insert(format!("{}/{}", row.key.pk(), row.key.sk()), row.counters);
            }
        }
    }
    out
}

/// The rows `events` must produce when each is counted exactly once.
fn expected(events: &[Event]) -> BTreeMap<String, Counters> {
    let mut rollup = Rollup::new();
    for e in events {
        rollup.add(e);
    }
    rows(Lane::Realtime, &rollup)
        .into_iter()
        .map(|r| (format!("{}/{}", r.key.pk(), r.key.sk()), r.counters))
        .collect()
}

/// Equal row sets, reporting the first difference only.
fn assert_rows(got: &BTreeMap<String, Counters>, want: &BTreeMap<String, Counters>) {
    for (key, counters) in want {
        assert_eq!(got.get(key), Some(counters), "row {key}");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "rows: {:?}",
        got.keys()
            .filter(|k| !want.contains_key(*k))
            .collect::<Vec<_>>()
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

#[tokio::test]
async fn a_batch_and_its_duplicate_delivery_count_once() {
    let moto = Moto::start();
    let state = Realtime::new(table_at(&moto.endpoint()).await);
    let batch = fixture::load();
    assert_eq!(invoke(&state, &batch).await, no_failures());
    assert_eq!(
        invoke(&state, &batch).await,
        no_failures(),
        "the duplicate is acknowledged"
    );
    let table = table_at_existing(&moto).await;
    assert_rows(&snapshot(&table).await, &expected(&fixture::events()));
    let campaigns: Vec<_> = table
        .campaigns()
        .await
        .expect("index")
        .into_iter()
        .map(|c| c.campaign_id)
        .collect();
    assert_eq!(campaigns, ["spring-0", "spring-1"]);
}

async fn table_at_existing(moto: &Moto) -> MetricsTable {
    let config = tally_aws_testing::sdk_config(&moto.endpoint()).await;
    MetricsTable::new(aws_sdk_dynamodb::Client::new(&config), "metrics")
}

#[tokio::test]
async fn a_poison_record_is_reported_and_every_other_record_is_applied() {
    let moto = Moto::start();
    let table = table_at(&moto.endpoint()).await;
    let state = Realtime::new(table.clone());
    let mut batch = fixture::load();
    let n = batch.records.len();
    assert!(n >= 4, "the fixture needs at least four records, has {n}");
    corrupt(&mut batch, 2);
    let seq2 = batch.records[2].kinesis.sequence_number.clone();
    let all_but_2: Vec<usize> = (0..n).filter(|&i| i != 2).collect();
    assert_eq!(invoke(&state, &batch).await, failure_at(&seq2));
    assert_rows(
        &snapshot(&table).await,
        &expected(&events_of(&batch, all_but_2.clone())),
    );
    // Lambda redelivers from the failed record (until its retries run out, then the remainder goes to the
    // on-failure queue): still poison, and the records after it are not counted twice.
    assert_eq!(invoke(&state, &from(&batch, 2)).await, failure_at(&seq2));
    assert_rows(
        &snapshot(&table).await,
        &expected(&events_of(&batch, all_but_2.clone())),
    );
    // After the poison record is discarded the shard moves on; a redelivery of the rest changes nothing.
    assert_eq!(invoke(&state, &from(&batch, 3)).await, no_failures());
    assert_rows(
        &snapshot(&table).await,
        &expected(&events_of(&batch, all_but_2)),
    );
}

#[tokio::test]
async fn mixed_batches_and_malformed_invocations() {
    let moto = Moto::start();
    let table = table_at(&moto.endpoint()).await;
    let state = Realtime::new(table.clone());
    let mut batch = fixture::load();
    // Two poison records: the others are applied, the lowest poison record is reported.
    corrupt(&mut batch, 0);
    corrupt(&mut batch, 3);
    let seq0 = batch.records[0].kinesis.sequence_number.clone();
    assert_eq!(invoke(&state, &batch).await, failure_at(&seq0));
    let others: Vec<usize> = (0..batch.records.len())
        .filter(|&i| i != 0 && i != 3)
        .collect();
    assert_rows(
        &snapshot(&table).await,
        &expected(&events_of(&batch, others)),
    );
    // An empty batch is a success that changes nothing.
    assert_eq!(
        invoke(&state, &KinesisEvent::default()).await,
        no_failures()
    );
    // An invocation Lambda would never send fails as a whole, with the reason, and applies nothing.
    let before = snapshot(&table).await;
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
        snapshot(&table).await == before,
        "a malformed invocation changed the table"
    );
    // Malformed JSON never reaches the handler: the event type refuses it.
    assert!(
        serde_json::from_str::<KinesisEvent>(r#"{"Records": [{"kinesis": {"data": "%%%"}}]}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<KinesisEvent>(r#"{"Records": 7}"#).is_err());
}

#[tokio::test]
async fn throttled_writes_fail_the_invocation_and_the_retry_is_exact() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint());
    let table = table_at(&proxy.endpoint()).await;
    let state = Realtime::new(table.clone());
    let batch = fixture::load();
    proxy.fail(Faults {
        operation: "UpdateItem".into(),
        after: 25,
        answer: Answer::dynamodb_throttled(),
    });
    let err = invoke(&state, &batch).await.expect_err("throttled");
    assert!(
        err.contains("ProvisionedThroughputExceededException"),
        "{err}"
    );
    proxy.heal();
    // Lambda bisects on a function error: first half, then second half, then the whole batch once more.
    let half = batch.records.len() / 2;
    let mut first = batch.clone();
    first.records.truncate(half);
    assert_eq!(invoke(&state, &first).await, no_failures());
    assert_eq!(invoke(&state, &from(&batch, half)).await, no_failures());
    assert_eq!(invoke(&state, &batch).await, no_failures());
    assert_rows(&snapshot(&table).await, &expected(&fixture::events()));
}

#[tokio::test]
async fn metrics_line_reports_latency_and_batch_size() {
    let moto = Moto::start();
    let state = Realtime::new(table_at(&moto.endpoint()).await);
    let mut batch = fixture::load();
    let n = batch.records.len();
    corrupt(&mut batch, n - 1);
    let now = fixture::T0_MS + 300_000;
    let outcome = state.process(&batch, || now).await.expect("process");
    let line: serde_json::Value = serde_json::from_str(&outcome.metrics).expect("emf json");
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
    assert!(outcome.report.applied > 0 && outcome.report.skipped == 0);
}

#[tokio::test]
async fn one_write_per_counter_row_per_batch_not_per_event() {
    let moto = Moto::start();
    let proxy = Proxy::start(&moto.endpoint());
    let state = Realtime::new(table_at(&proxy.endpoint()).await);
    let batch = fixture::load();
    let events = fixture::events();
    let rows_expected = expected(&events).len();
    let before = proxy.log().len();
    assert_eq!(invoke(&state, &batch).await, no_failures());
    let log = proxy.log()[before..].to_vec();
    let writes = log.iter().filter(|op| *op == "UpdateItem").count();
    let reads = log.iter().filter(|op| *op == "GetItem").count();
    // Every counter row once, plus the two campaigns' index rows; reads only for rows with a sketch to merge.
    assert_eq!(
        writes,
        rows_expected + 2,
        "{} events in {} records",
        events.len(),
        batch.records.len()
    );
    assert!(
        reads <= rows_expected,
        "{reads} reads for {rows_expected} rows"
    );
    eprintln!(
        "measured: {} events, {} records -> {} row writes + 2 index writes, {} reads (naive: {} writes)",
        events.len(),
        batch.records.len(),
        rows_expected,
        reads,
        events.len() * 6
    );
}
