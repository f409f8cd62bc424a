//! Event source mappings, one test per AWS rule, with the test function logging every batch it receives.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_localcloud::esm::{KinesisMapping, MappingConfig, RuntimeOptions, StartingPosition};
use tally_localcloud::lambda::{Function, FunctionSpec, LogSink};
use tally_localcloud_aws::aws::LocalAws;

use crate::lambda::testfn;
use crate::support::{batch_data, batches, create_queue, drain, put, until, TempDir};

const WAIT: Duration = Duration::from_secs(10);

struct Setup {
    aws: Arc<LocalAws>,
    function: Function,
    dir: TempDir,
    stream_arn: String,
}

impl Setup {
    fn new(tag: &str) -> Setup {
        let aws = LocalAws::ephemeral();
        let stream = aws.kinesis.create("events", Some(1), false).unwrap();
        let dir = TempDir::new(tag);
        let mut spec = FunctionSpec::new(format!("fn-{tag}"), testfn());
        spec.env.insert(
            "TESTFN_LOG".into(),
            dir.0.join("batches.jsonl").display().to_string(),
        );
        let function = Function::start(spec, &LogSink::discard());
        Setup {
            stream_arn: stream.arn().to_owned(),
            aws,
            function,
            dir,
        }
    }

    fn log(&self) -> std::path::PathBuf {
        self.dir.0.join("batches.jsonl")
    }

    fn config(&self) -> MappingConfig {
        MappingConfig::new("Mapping", self.stream_arn.clone())
    }

    fn options(&self) -> RuntimeOptions {
        RuntimeOptions {
            state_dir: Some(self.dir.0.join("state")),
            idle_poll: Duration::from_millis(50),
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        }
    }

    fn start(&self, config: MappingConfig) -> KinesisMapping {
        KinesisMapping::start(
            config,
            self.function.clone(),
            self.aws.clone(),
            self.options(),
        )
        .unwrap()
    }

    async fn wait_records(&self, n: usize) -> Vec<Vec<String>> {
        let log = self.log();
        until(WAIT, || {
            batch_data(&log).iter().map(Vec::len).sum::<usize>() >= n
        })
        .await;
        batch_data(&log)
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_size_bounds_each_invocation_and_keeps_order() {
    let s = Setup::new("batchsize");
    put(
        &s.aws,
        "events",
        &[
            ("k", "1"),
            ("k", "2"),
            ("k", "3"),
            ("k", "4"),
            ("k", "5"),
            ("k", "6"),
            ("k", "7"),
        ],
    )
    .await;
    let mut config = s.config();
    config.batch_size = 3;
    let _mapping = s.start(config);
    let got = s.wait_records(7).await;
    assert_eq!(
        got,
        vec![
            strings(&["1", "2", "3"]),
            strings(&["4", "5", "6"]),
            strings(&["7"])
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batching_window_gathers_records_until_it_closes() {
    let s = Setup::new("window");
    let mut config = s.config();
    config.batching_window = Duration::from_secs(1);
    let _mapping = s.start(config);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    put(&s.aws, "events", &[("k", "a")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    put(&s.aws, "events", &[("k", "b"), ("k", "c")]).await;
    let got = s.wait_records(3).await;
    assert_eq!(got, vec![strings(&["a", "b", "c"])]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "window closed early: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_positions() {
    let check = |position: StartingPosition, expect: &'static [&'static str]| async move {
        let s = Setup::new("startpos");
        put(&s.aws, "events", &[("k", "old1"), ("k", "old2")]).await;
        let mut config = s.config();
        config.starting_position = position;
        let _mapping = s.start(config);
        tokio::time::sleep(Duration::from_millis(300)).await;
        put(&s.aws, "events", &[("k", "new1")]).await;
        let got: Vec<String> = s.wait_records(expect.len()).await.concat();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(got, strings(expect), "{position:?}");
    };
    check(StartingPosition::TrimHorizon, &["old1", "old2", "new1"]).await;
    check(StartingPosition::Latest, &["new1"]).await;
    check(StartingPosition::AtTimestamp(i64::MAX / 2), &[]).await;
    check(StartingPosition::AtTimestamp(0), &["old1", "old2", "new1"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_batch_response_retries_from_the_lowest_failure() {
    let s = Setup::new("partial");
    put(
        &s.aws,
        "events",
        &[
            ("k", "a"),
            ("k", "fail-once"),
            ("k", "b"),
            ("k", "fail-again"),
        ],
    )
    .await;
    let mut config = s.config();
    config.report_batch_item_failures = true;
    config.max_retries = Some(1);
    let _mapping = s.start(config);
    let log = s.log();
    until(WAIT, || batch_data(&log).len() >= 3).await;
    let got = batch_data(&log);
    // Whole batch; then from the lowest failed sequence number on; then, retries exhausted, from the next
    // failure... which is the same remaining records, so the second attempt's remainder is discarded.
    assert_eq!(got[0], strings(&["a", "fail-once", "b", "fail-again"]));
    assert_eq!(got[1], strings(&["fail-once", "b", "fail-again"]));
    assert_eq!(got.len(), 2, "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_batch_response_fails_the_whole_batch() {
    let s = Setup::new("malformed");
    put(
        &s.aws,
        "events",
        &[("k", "a"), ("k", "malformed"), ("k", "b")],
    )
    .await;
    let mut config = s.config();
    config.report_batch_item_failures = true;
    config.max_retries = Some(2);
    let mapping = s.start(config);
    let log = s.log();
    until(WAIT, || batch_data(&log).len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = batch_data(&log);
    assert_eq!(
        got,
        vec![strings(&["a", "malformed", "b"]); 3],
        "every retry is the whole batch"
    );
    assert_eq!(mapping.stats().records_discarded, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisect_isolates_the_poison_record_and_sends_its_metadata_on_failure() {
    let s = Setup::new("bisect");
    let (url, queue_arn) = create_queue(&s.aws, "failures").await;
    let seqs = put(
        &s.aws,
        "events",
        &[("k", "a"), ("k", "b"), ("k", "error"), ("k", "c")],
    )
    .await;
    let mut config = s.config();
    config.bisect_on_error = true;
    config.max_retries = Some(0);
    config.on_failure = Some(queue_arn);
    let mapping = s.start(config);
    assert!(
        until(WAIT, || mapping.stats().records_discarded == 1).await,
        "{:?}",
        mapping.stats()
    );
    let log = s.log();
    // After the poison record is discarded, the rest of its half is delivered.
    until(WAIT, || {
        batch_data(&log).iter().any(|b| b == &strings(&["c"]))
    })
    .await;
    let got = batch_data(&log);
    assert_eq!(got[0], strings(&["a", "b", "error", "c"]));
    let delivered: Vec<String> = got
        .iter()
        .filter(|b| b.len() == 1 || !b.contains(&"error".to_owned()))
        .flatten()
        .cloned()
        .collect();
    for ok in ["a", "b", "c"] {
        assert!(
            delivered.contains(&ok.to_owned()),
            "{ok} not delivered alone or in a clean half: {got:?}"
        );
    }
    let failures = drain(&s.aws, &url).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let info = &failures[0]["KinesisBatchInfo"];
    assert_eq!(info["startSequenceNumber"], seqs[2]);
    assert_eq!(info["endSequenceNumber"], seqs[2]);
    assert_eq!(info["batchSize"], 1);
    assert_eq!(info["shardId"], "shardId-000000000000");
    assert_eq!(info["streamArn"], s.stream_arn.as_str());
    assert_eq!(
        failures[0]["requestContext"]["condition"],
        "RetryAttemptsExhausted"
    );
    assert!(failures[0]["requestContext"]["functionArn"]
        .as_str()
        .unwrap()
        .ends_with(":function:fn-bisect"));
    assert!(info["approximateArrivalOfFirstRecord"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert!(
        failures[0].get("Records").is_none(),
        "the failure record carries metadata, not records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_then_the_batch_goes_to_the_destination_and_the_shard_moves_on() {
    let s = Setup::new("retries");
    let (url, queue_arn) = create_queue(&s.aws, "failures").await;
    put(&s.aws, "events", &[("k", "error")]).await;
    let mut config = s.config();
    config.max_retries = Some(2);
    config.on_failure = Some(queue_arn);
    let mapping = s.start(config);
    assert!(until(WAIT, || mapping.stats().records_discarded == 1).await);
    put(&s.aws, "events", &[("k", "after")]).await;
    let got = s.wait_records(4).await;
    assert_eq!(
        got,
        vec![
            strings(&["error"]),
            strings(&["error"]),
            strings(&["error"]),
            strings(&["after"])
        ]
    );
    let failures = drain(&s.aws, &url).await;
    assert_eq!(failures[0]["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(mapping.stats().retries, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelization_factor_keeps_order_per_partition_key() {
    let s = Setup::new("parallel");
    let mut records = Vec::new();
    for n in 0..8 {
        for key in ["k1", "k2", "k3", "k4", "k5", "k6"] {
            records.push((key, format!("{key}:{n}:sleep:30")));
        }
    }
    let refs: Vec<(&str, &str)> = records.iter().map(|(k, d)| (*k, d.as_str())).collect();
    put(&s.aws, "events", &refs).await;
    let mut config = s.config();
    config.batch_size = 4;
    config.parallelization_factor = 3;
    let _mapping = s.start(config);
    s.wait_records(48).await;
    let all: Vec<String> = batch_data(&s.log()).concat();
    assert_eq!(all.len(), 48, "every record once");
    for key in ["k1", "k2", "k3", "k4", "k5", "k6"] {
        let order: Vec<&str> = all
            .iter()
            .filter(|d| d.starts_with(&format!("{key}:")))
            .map(|d| d.split(':').nth(1).unwrap())
            .collect();
        assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7"], "{key}");
    }
    let pids: std::collections::HashSet<u64> = batches(&s.log())
        .iter()
        .map(|b| b["pid"].as_u64().unwrap())
        .collect();
    assert!(pids.len() > 1, "lanes ran one after the other");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_after_the_checkpoint() {
    let s = Setup::new("restart");
    put(&s.aws, "events", &[("k", "1"), ("k", "2")]).await;
    let mapping = s.start(s.config());
    s.wait_records(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    mapping.stop();
    drop(mapping);
    put(&s.aws, "events", &[("k", "3")]).await;
    let _again = s.start(s.config());
    let got: Vec<String> = s.wait_records(3).await.concat();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        got,
        strings(&["1", "2", "3"]),
        "acknowledged records replayed or lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enhanced_fan_out_pushes_without_polling() {
    let s = Setup::new("efo");
    let consumer = call_register(&s).await;
    let mut options = s.options();
    options.idle_poll = Duration::from_secs(30);
    let mut config = s.config();
    config.source_arn = consumer;
    let _mapping =
        KinesisMapping::start(config, s.function.clone(), s.aws.clone(), options).unwrap();
    s.function.invoke(json!({}).to_string()).await.unwrap(); // warm
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    put(&s.aws, "events", &[("k", "pushed")]).await;
    s.wait_records(1).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "push took {:?}",
        started.elapsed()
    );
}

async fn call_register(s: &Setup) -> String {
    let out = crate::support::call(
        &s.aws,
        "Kinesis_20131202.RegisterStreamConsumer",
        json!({"StreamARN": s.stream_arn, "ConsumerName": "realtime"}),
    )
    .await;
    out["Consumer"]["ConsumerARN"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tumbling_window_carries_state_and_ends_with_a_final_invoke() {
    let s = Setup::new("tumbling");
    let mut config = s.config();
    config.tumbling_window = Duration::from_secs(1);
    let _mapping = s.start(config);
    // Align to the start of a window so all three records fall in one.
    let ms = tally_localcloud_aws::aws::now_ms();
    tokio::time::sleep(Duration::from_millis((1000 - ms % 1000 + 50) as u64)).await;
    put(&s.aws, "events", &[("k", "a")]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    put(&s.aws, "events", &[("k", "b"), ("k", "c")]).await;
    let log = s.log();
    assert!(
        until(WAIT, || batches(&log)
            .iter()
            .any(|b| b["isFinalInvokeForWindow"] == true))
        .await
    );
    let all = batches(&log);
    let last = all.last().unwrap();
    assert_eq!(last["isFinalInvokeForWindow"], true);
    assert_eq!(last["state"], json!({"count": 3}), "{all:?}");
    assert_eq!(last["records"], json!([]));
    let window = &all[0]["window"];
    assert!(
        window["start"].as_str().unwrap().ends_with(".000Z"),
        "{window}"
    );
    assert_eq!(all[0]["state"], json!({}));
    let _: &Value = last;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_mapping_deletes_successes_and_leaves_reported_failures_to_redrive() {
    let s = Setup::new("sqs");
    let (dlq_url, dlq_arn) = create_queue(&s.aws, "jobs-dlq").await;
    let url = crate::support::call(
        &s.aws,
        "AmazonSQS.CreateQueue",
        json!({"QueueName": "jobs", "Attributes": {"VisibilityTimeout": "1",
               "RedrivePolicy": json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}).to_string()}}),
    )
    .await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    for body in ["ok-1", "fail-always", "ok-2"] {
        crate::support::call(
            &s.aws,
            "AmazonSQS.SendMessage",
            json!({"QueueUrl": url, "MessageBody": body}),
        )
        .await;
    }
    let mut config = MappingConfig::new("Jobs", "arn:aws:sqs:us-east-1:123456789012:jobs");
    config.batch_size = 10;
    config.report_batch_item_failures = true;
    let mapping = tally_localcloud::esm::SqsMapping::start(
        config,
        s.function.clone(),
        s.aws.clone(),
        s.options(),
    )
    .unwrap();
    let log = s.log();
    // The failed message comes back after its visibility timeout, then moves to the DLQ after 2 receives.
    assert!(
        until(Duration::from_secs(15), || batch_data(&log)
            .concat()
            .iter()
            .filter(|d| *d == "fail-always")
            .count()
            >= 2)
        .await
    );
    let dead = {
        let mut dead = Vec::new();
        for _ in 0..40 {
            dead = drain(&s.aws, &dlq_url).await;
            if !dead.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        dead
    };
    mapping.stop();
    let all = batch_data(&log).concat();
    assert_eq!(
        all.iter().filter(|d| d.starts_with("ok-")).count(),
        2,
        "successes delivered once: {all:?}"
    );
    assert_eq!(
        dead,
        vec![json!("fail-always")],
        "only the reported failure is redriven"
    );
    let left = drain(&s.aws, &url).await;
    assert!(left.is_empty(), "successes were not deleted: {left:?}");
    let records = &batches(&log)[0];
    assert_eq!(
        records["records"].as_array().unwrap().len(),
        3,
        "one batch of three messages"
    );
}
