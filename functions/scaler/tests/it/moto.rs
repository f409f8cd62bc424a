//! Runs against `moto_server` (Kinesis): the test publishes the stream's CloudWatch metrics as Kinesis would
//! (to [`FakeCloudWatch`], since moto does not speak the SDK's CBOR protocol for CloudWatch), the scaler reads
//! them, decides and changes the shard count with `UpdateShardCount`.

use serde_json::{json, Value};
use tally_domain::scaling::{Bounds, Decision, KeepReason, ScaleReason};
use tally_scaler::{Config, Scaler, CALLS_TAG};
use tally_testkit::Moto;

use crate::cloudwatch::FakeCloudWatch;

const STREAM: &str = "events";

struct Setup {
    _moto: Moto,
    kinesis: aws_sdk_kinesis::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    metrics: FakeCloudWatch,
    now: i64,
}

async fn setup(shards: i32) -> Setup {
    let moto = Moto::start();
    let metrics = FakeCloudWatch::start().await;
    let kinesis =
        aws_sdk_kinesis::Client::new(&tally_aws_testing::sdk_config(&moto.endpoint()).await);
    kinesis
        .create_stream()
        .stream_name(STREAM)
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    let cloudwatch =
        aws_sdk_cloudwatch::Client::new(&tally_aws_testing::sdk_config(&metrics.url).await);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    Setup {
        _moto: moto,
        kinesis,
        cloudwatch,
        metrics,
        now,
    }
}

impl Setup {
    fn scaler(&self, floor: u32, ceiling: u32) -> Scaler {
        let config = Config {
            stream: STREAM.to_owned(),
            bounds: Bounds::new(floor, ceiling).expect("bounds"),
        };
        Scaler::new(self.kinesis.clone(), self.cloudwatch.clone(), config)
    }

    /// Publishes `value` for `metric` in each of the last `minutes` complete minutes.
    async fn publish(&self, metric: &str, value: f64, minutes: i64) {
        let end = self.now - self.now.rem_euclid(60);
        for m in 1..=minutes {
            self.metrics.publish(metric, end - m * 60 + 10, value);
        }
    }

    async fn open_shards(&self) -> i32 {
        let summary = self
            .kinesis
            .describe_stream_summary()
            .stream_name(STREAM)
            .send()
            .await
            .expect("describe");
        summary
            .stream_description_summary()
            .expect("summary")
            .open_shard_count()
    }

    async fn calls_tag(&self) -> Option<String> {
        let tags = self
            .kinesis
            .list_tags_for_stream()
            .stream_name(STREAM)
            .send()
            .await
            .expect("tags");
        tags.tags()
            .iter()
            .find(|t| t.key() == CALLS_TAG)
            .and_then(|t| t.value().map(str::to_owned))
    }
}

#[tokio::test]
async fn high_load_adds_shards_and_records_the_call() {
    let s = setup(2).await;
    // 1,800 records/s and 0.9 MiB/s for the last 6 minutes: 1.8 shards of demand on 2 shards (90 %).
    s.publish("IncomingRecords", 1800.0 * 60.0, 6).await;
    s.publish("IncomingBytes", 0.9 * 1_048_576.0 * 60.0, 6)
        .await;
    let outcome = s.scaler(1, 16).run_at(s.now).await.expect("run");
    assert!(
        matches!(
            outcome.decision,
            Decision::Scale {
                from: 2,
                to: 3,
                reason: ScaleReason::HighLoad { .. }
            }
        ),
        "{outcome:?}"
    );
    assert!(outcome.called);
    assert_eq!(s.open_shards().await, 3);
    assert_eq!(s.calls_tag().await, Some(s.now.to_string()));

    // The requests were what CloudWatch expects: the stream's dimension, one-minute periods, 35 minutes.
    let requests = s.metrics.requests.lock().expect("lock").clone();
    let names: Vec<&str> = requests
        .iter()
        .filter_map(|r| r["body"]["MetricName"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "IncomingBytes",
            "IncomingRecords",
            "WriteProvisionedThroughputExceeded",
            "GetRecords.IteratorAgeMilliseconds"
        ]
    );
    for r in &requests {
        assert_eq!(r["body"]["Namespace"], "AWS/Kinesis");
        assert_eq!(
            r["body"]["Dimensions"],
            json!([{"Name": "StreamName", "Value": STREAM}])
        );
        assert_eq!(r["body"]["Period"], 60);
        let span = r["body"]["EndTime"]["$time"].as_f64().unwrap_or(0.0)
            - r["body"]["StartTime"]["$time"].as_f64().unwrap_or(0.0);
        assert_eq!(span, 35.0 * 60.0, "{r}");
    }
    assert_eq!(requests[3]["body"]["Statistics"], json!(["Maximum"]));
}

#[tokio::test]
async fn throttled_writes_double_the_shards() {
    let s = setup(2).await;
    s.publish("IncomingRecords", 300.0 * 60.0, 6).await;
    s.publish("WriteProvisionedThroughputExceeded", 200.0 * 60.0, 6)
        .await;
    let outcome = s.scaler(1, 16).run_at(s.now).await.expect("run");
    assert!(
        matches!(outcome.decision, Decision::Scale { from: 2, to: 4, .. }),
        "{outcome:?}"
    );
    assert_eq!(s.open_shards().await, 4);
}

#[tokio::test]
async fn quiet_streams_shrink_and_the_floor_holds() {
    let s = setup(4).await;
    // Nothing written for 35 minutes: no datapoints at all, which is zero load.
    let outcome = s.scaler(1, 16).run_at(s.now).await.expect("run");
    assert!(
        matches!(
            outcome.decision,
            Decision::Scale {
                from: 4,
                to: 2,
                reason: ScaleReason::SustainedLowLoad { .. }
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(s.open_shards().await, 2);

    let s = setup(2).await;
    let outcome = s.scaler(2, 16).run_at(s.now).await.expect("run");
    assert!(
        matches!(outcome.decision, Decision::Keep(KeepReason::AtFloor { .. })),
        "{outcome:?}"
    );
    assert!(!outcome.called);
    assert_eq!(s.open_shards().await, 2);
    assert_eq!(s.calls_tag().await, None);
}

#[tokio::test]
async fn below_the_floor_scales_up_whatever_the_load() {
    let s = setup(1).await;
    let outcome = s.scaler(2, 16).run_at(s.now).await.expect("run");
    assert!(
        matches!(
            outcome.decision,
            Decision::Scale {
                from: 1,
                to: 2,
                reason: ScaleReason::BelowFloor { floor: 2 }
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(s.open_shards().await, 2);
}

#[tokio::test]
async fn ten_calls_in_a_day_stop_the_scaler() {
    let s = setup(2).await;
    let calls: Vec<String> = (1..=10).map(|i| (s.now - i * 3000).to_string()).collect();
    s.kinesis
        .add_tags_to_stream()
        .stream_name(STREAM)
        .tags(CALLS_TAG, calls.join(" "))
        .send()
        .await
        .expect("tag");
    s.publish("IncomingRecords", 1900.0 * 60.0, 6).await;
    let outcome = s.scaler(1, 16).run_at(s.now).await.expect("run");
    assert!(
        matches!(
            outcome.decision,
            Decision::Keep(KeepReason::CallLimit { .. })
        ),
        "{outcome:?}"
    );
    assert!(!outcome.called);
    assert_eq!(s.open_shards().await, 2);

    // Calls older than 24 h no longer count, and are dropped from the tag on the next call.
    let old: Vec<String> = (0..10)
        .map(|i| (s.now - 86_400 - i * 60).to_string())
        .collect();
    s.kinesis
        .add_tags_to_stream()
        .stream_name(STREAM)
        .tags(CALLS_TAG, old.join(" "))
        .send()
        .await
        .expect("tag");
    let outcome = s.scaler(1, 16).run_at(s.now).await.expect("run");
    assert!(outcome.called, "{outcome:?}");
    assert_eq!(s.calls_tag().await, Some(s.now.to_string()));
}

#[tokio::test]
async fn the_handler_runs_on_an_alarm_and_answers_its_outcome() {
    let s = setup(2).await;
    s.publish("IncomingRecords", 1800.0 * 60.0, 6).await;
    let payload: Value =
        serde_json::from_str(include_str!("fixtures/sns-alarm.json")).expect("fixture");
    let answer = s
        .scaler(1, 16)
        .handle(&payload, s.now)
        .await
        .expect("handled");
    assert_eq!(answer["open_shards"], 2);
    assert_eq!(answer["target_shards"], 3);
    assert_eq!(answer["called"], true);
    assert!(
        answer["decision"]
            .as_str()
            .is_some_and(|d| d.starts_with("scale 2 -> 3")),
        "{answer}"
    );

    let garbage = serde_json::json!({"hello": "world"});
    let error = s
        .scaler(1, 16)
        .handle(&garbage, s.now)
        .await
        .expect_err("not a trigger");
    assert!(
        format!("{error:#}").contains("SNS alarm notification or an EventBridge scheduled event")
    );
    assert_eq!(
        s.open_shards().await,
        3,
        "a rejected payload changes nothing"
    );
}

#[tokio::test]
async fn a_missing_stream_is_a_clear_error() {
    let s = setup(1).await;
    let config = Config {
        stream: "nope".to_owned(),
        bounds: Bounds::new(1, 4).expect("bounds"),
    };
    let scaler = Scaler::new(s.kinesis.clone(), s.cloudwatch.clone(), config);
    let error = scaler.run_at(s.now).await.expect_err("no such stream");
    assert!(
        format!("{error:#}").contains("while describing stream nope"),
        "{error:#}"
    );
}
