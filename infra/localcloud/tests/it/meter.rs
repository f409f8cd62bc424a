//! The meter: what the local cloud counts as AWS would bill it, read through its HTTP endpoint and its file, with
//! the real SDK clients and real function processes producing the traffic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use serde_json::{json, Value};
use tally_localcloud::esm::{KinesisMapping, MappingConfig, RuntimeOptions};
use tally_localcloud::lambda::{Function, FunctionSpec, InvokeFailure, LogSink};
use tally_localcloud_aws::aws::LocalAws;
use tally_localcloud_aws::meter::{Meter, Snapshot};

use crate::lambda::testfn;
use crate::support::{batch_data, put, until, TempDir};

/// The local endpoint on a real loopback socket, stopped on drop.
struct Served {
    aws: Arc<LocalAws>,
    endpoint: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(aws: Arc<LocalAws>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let served = aws.clone();
    let server = tokio::spawn(async move {
        let _ = tally_localcloud_aws::aws::serve(listener, served).await;
    });
    Served {
        aws,
        endpoint,
        server,
    }
}

/// SDK configuration for the endpoint, without retries: a throttled call is seen once, as sent.
async fn sdk(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .test_credentials()
        .retry_config(RetryConfig::disabled())
        .load()
        .await
}

fn entry(key: &str, data_bytes: usize) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(vec![b'x'; data_bytes]))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_puts_throttles_and_reads_are_metered() {
    let served = serve(LocalAws::ephemeral()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk(&served.endpoint).await);
    for name in ["metered", "throttled"] {
        kinesis
            .create_stream()
            .stream_name(name)
            .shard_count(1)
            .send()
            .await
            .unwrap();
    }
    // 2-byte keys: 100 + 2 bytes (1 PUT unit, 1 KB), exactly 25 KB (1 unit, 25 KB), 25 KB + 2 (2 units, 26 KB).
    let sizes = [100 + 2, 25 * 1024, 25 * 1024 + 2];
    let out = kinesis
        .put_records()
        .stream_name("metered")
        .records(entry("k1", 100))
        .records(entry("k2", 25 * 1024 - 2))
        .records(entry("k3", 25 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(0));

    // A shard takes 1 MiB a second: of five 300 KiB records in one call the fourth and fifth are refused.
    let out = kinesis
        .put_records()
        .stream_name("throttled")
        .set_records(Some(
            (0..5)
                .map(|i| entry(&format!("p{i}"), 300 * 1024))
                .collect(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(out.failed_record_count(), Some(2));
    // A record of 1 MiB of data plus its key never fits a shard's second: the whole call is throttled.
    let refused = kinesis
        .put_record()
        .stream_name("throttled")
        .partition_key("big")
        .data(Blob::new(vec![b'y'; 1024 * 1024]))
        .send()
        .await;
    let error = refused.unwrap_err().into_service_error();
    assert!(
        error.is_provisioned_throughput_exceeded_exception(),
        "{error:?}"
    );

    let shard = kinesis
        .list_shards()
        .stream_name("metered")
        .send()
        .await
        .unwrap()
        .shards()[0]
        .shard_id()
        .to_owned();
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name("metered")
        .shard_id(shard)
        .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator()
        .unwrap()
        .to_owned();
    let got = kinesis
        .get_records()
        .shard_iterator(iterator)
        .send()
        .await
        .unwrap();
    assert_eq!(got.records().len(), 3);

    let snapshot = served.aws.meter.snapshot();
    let metered = &snapshot.kinesis.streams["metered"];
    assert_eq!(metered.put_requests, 1);
    assert_eq!(metered.records, 3);
    assert_eq!(metered.bytes, sizes.iter().sum::<u64>());
    assert_eq!(metered.put_payload_units, 1 + 1 + 2);
    assert_eq!(metered.on_demand_kb, 1 + 25 + 26);
    assert_eq!(
        (metered.throttled_requests, metered.throttled_records),
        (0, 0)
    );
    assert_eq!(metered.get_records_requests, 1);
    assert_eq!(metered.get_records_bytes, sizes.iter().sum::<u64>());
    let throttled = &snapshot.kinesis.streams["throttled"];
    assert_eq!(throttled.put_requests, 2);
    assert_eq!(throttled.records, 3);
    assert_eq!(throttled.bytes, 3 * (300 * 1024 + 2));
    assert_eq!(throttled.throttled_records, 2 + 1);
    assert_eq!(
        throttled.throttled_requests, 1,
        "only the call with every record refused"
    );
    println!(
        "kinesis meter: {}",
        serde_json::to_string(&snapshot.kinesis).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_invocations_are_billed_from_hand_out_to_outcome() {
    let meter = Arc::new(Meter::new());
    let mut spec = FunctionSpec::new("metered-fn", testfn());
    spec.memory_mb = 256;
    spec.timeout = Duration::from_secs(5);
    let function = Function::start_metered(spec, &LogSink::discard(), meter.clone());
    let mut wall_ms = 0;
    for _ in 0..3 {
        let started = Instant::now();
        function
            .invoke(json!({"action": "sleep", "ms": 60}).to_string())
            .await
            .unwrap();
        wall_ms += started.elapsed().as_millis() as u64;
    }
    let error = function
        .invoke(json!({"action": "error"}).to_string())
        .await
        .unwrap_err();
    assert!(matches!(error, InvokeFailure::Function { .. }), "{error:?}");
    let crash = function
        .invoke(json!({"action": "crash"}).to_string())
        .await
        .unwrap_err();
    assert!(matches!(crash, InvokeFailure::Crashed { .. }), "{crash:?}");

    let snapshot = meter.snapshot();
    let f = &snapshot.lambda.functions["metered-fn"];
    assert_eq!(f.invocations, 5);
    assert_eq!(f.errors, 2, "the /error and the crash");
    assert_eq!(f.memory_mb, 256);
    assert!(
        f.billed_ms >= 3 * 60,
        "billed {} ms for three 60 ms sleeps",
        f.billed_ms
    );
    // The three sleeps are billed within the wall time the caller saw; the error and the crash add a little.
    assert!(
        f.billed_ms <= wall_ms + 1_000,
        "billed {} ms, the sleeps took {wall_ms} ms",
        f.billed_ms
    );
    let expect = f.billed_ms as f64 * 256.0 / 1024.0 / 1000.0;
    assert!(
        (f.gb_seconds - expect).abs() < 1e-9,
        "{} GB-s vs {expect}",
        f.gb_seconds
    );
    function.shutdown();
}

/// Log bytes as CloudWatch Logs would ingest them under the function's `LoggingConfig`: plain text sends
/// every line and Lambda's START/END/REPORT; JSON with `SystemLogLevel: WARN` drops those and the lines more
/// detailed than `ApplicationLogLevel` (a line without a `level` counts as INFO).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_bytes_follow_the_logging_config() {
    use tally_localcloud::lambda::logs::LogConfig;
    let lines = [
        r#"{"_aws":{"Timestamp":1},"Function":"x","BatchEvents":[3]}"#,
        r#"{"level":"DEBUG","fields":{"message":"batch applied"}}"#,
        r#"{"level":"WARN","fields":{"message":"slow"}}"#,
    ];
    let payload = json!({"action": "print", "lines": lines}).to_string();
    let run = |name: &'static str, logging: LogConfig| {
        let payload = payload.clone();
        async move {
            let meter = Arc::new(Meter::new());
            let mut spec = FunctionSpec::new(name, testfn());
            spec.logging = logging;
            let function = Function::start_metered(spec, &LogSink::discard(), meter.clone());
            for _ in 0..2 {
                function.invoke(payload.clone()).await.unwrap();
            }
            // Lines are read from the process's pipe as they come: wait for them (bounded).
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut f = meter.snapshot().lambda.functions[name].clone();
            while Instant::now() < deadline {
                f = meter.snapshot().lambda.functions[name].clone();
                let expected = if logging.json { 4 } else { 2 * (3 + 3) };
                if f.log_events >= expected {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            function.shutdown();
            f
        }
    };
    let quiet = LogConfig::from_properties(Some(&json!({
        "LogFormat": "JSON", "ApplicationLogLevel": "INFO", "SystemLogLevel": "WARN"
    })))
    .unwrap();
    let f = run("quiet-fn", quiet).await;
    assert_eq!(f.log_events, 4, "the metric and the warning, twice: {f:?}");
    assert_eq!(f.log_bytes, 2 * (lines[0].len() + lines[2].len()) as u64);

    let f = run("text-fn", LogConfig::default()).await;
    assert_eq!(
        f.log_events, 12,
        "three lines and START, END, REPORT, twice: {f:?}"
    );
    let app: u64 = 2 * lines.iter().map(|l| l.len() as u64).sum::<u64>();
    let platform = f.log_bytes - app;
    // START (70 bytes with the 36-character id) and END (51) are fixed; REPORT (about 140) varies with the
    // duration's digits.
    assert!(
        (2 * (70 + 51 + 130)..=2 * (70 + 51 + 150)).contains(&platform),
        "{platform} bytes of platform lines"
    );
}

struct MappingSetup {
    aws: Arc<LocalAws>,
    function: Function,
    dir: TempDir,
}

impl MappingSetup {
    fn new(tag: &str) -> MappingSetup {
        let aws = LocalAws::ephemeral();
        aws.kinesis.create("events", Some(1), false).unwrap();
        let dir = TempDir::new(tag);
        let mut spec = FunctionSpec::new(format!("fn-{tag}"), testfn());
        spec.env.insert(
            "TESTFN_LOG".into(),
            dir.0.join("batches.jsonl").display().to_string(),
        );
        let function = Function::start_metered(spec, &LogSink::discard(), aws.meter.clone());
        MappingSetup { aws, function, dir }
    }

    fn start(&self, source_arn: String) -> KinesisMapping {
        let mut config = MappingConfig::new("Lane", source_arn);
        config.batch_size = 3;
        KinesisMapping::start(
            config,
            self.function.clone(),
            self.aws.clone(),
            RuntimeOptions {
                state_dir: Some(self.dir.0.join("state")),
                idle_poll: Duration::from_millis(50),
                backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(50),
            },
        )
        .unwrap()
    }

    async fn wait_records(&self, n: usize) {
        let log = self.dir.0.join("batches.jsonl");
        let done = until(Duration::from_secs(10), || {
            batch_data(&log).iter().map(Vec::len).sum::<usize>() >= n
        })
        .await;
        assert!(done, "the mapping delivered {:?}", batch_data(&log));
        // The meter records an invocation when its outcome is back; the log line is written just before.
        let meter = self.aws.meter.clone();
        until(Duration::from_secs(5), || {
            meter
                .snapshot()
                .mappings
                .get("Lane")
                .is_some_and(|m| m.records as usize >= n)
        })
        .await;
    }
}

/// Seven records, each making the function sleep 40 ms: batches of 3, 3 and 1.
const RECORDS: [(&str, &str); 7] = [("k", "sleep:40"); 7];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_iterator_mapping_meters_invocations_and_the_cycle_per_shard() {
    let s = MappingSetup::new("meter-shared");
    put(&s.aws, "events", &RECORDS).await;
    let arn = s.aws.kinesis.stream("events").unwrap().arn().to_owned();
    let _mapping = s.start(arn);
    s.wait_records(7).await;

    let snapshot = s.aws.meter.snapshot();
    let m = &snapshot.mappings["Lane"];
    assert_eq!(
        (m.function.as_str(), m.source.as_str(), m.kind.as_str()),
        ("fn-meter-shared", "events", "shared-iterator")
    );
    assert_eq!((m.invocations, m.records), (3, 7));
    let shard = &m.shards["shardId-000000000000"];
    assert_eq!((shard.invocations, shard.records), (3, 7));
    // One invocation at a time per shard: each starts after the one before has slept its records.
    assert!(
        shard.last_start_ms - shard.first_start_ms >= 2 * 40,
        "{shard:?}"
    );
    let cycle = (shard.last_start_ms - shard.first_start_ms) as f64 / 2.0;
    assert!((shard.cycle_ms - cycle).abs() < 1e-9, "{shard:?}");
    assert!(shard.busy_ms >= 7 * 40, "{shard:?}");
    assert!(
        shard.busy_ms as i64 >= shard.last_start_ms - shard.first_start_ms,
        "busy covers the gaps between starts: {shard:?}"
    );
    // Every record's age at its batch's success: all 7 were put at once, so the first batch's records waited
    // at least one record's sleep, and the last batch's ended after all 7 sleeps.
    assert_eq!(m.record_age_ms.count(), 7, "{:?}", m.record_age_ms);
    assert!(
        m.record_age_ms.quantile(0.0).unwrap() >= 40,
        "{:?}",
        m.record_age_ms
    );
    assert!(
        m.record_age_ms.quantile(1.0).unwrap() >= 7 * 40,
        "{:?}",
        m.record_age_ms
    );
    let f = &snapshot.lambda.functions["fn-meter-shared"];
    assert_eq!(f.invocations, 3);
    assert!(f.billed_ms >= 7 * 40, "{f:?}");
    assert!(
        f.billed_ms <= shard.busy_ms + 3,
        "billed inside the mapping's view of the invocations: {f:?} {shard:?}"
    );
    let stream = &snapshot.kinesis.streams["events"];
    assert!(stream.get_records_requests >= 3, "{stream:?}");
    assert_eq!(stream.get_records_bytes, 7 * (8 + 1));
    assert_eq!((stream.efo_records, stream.efo_bytes), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enhanced_fan_out_mapping_meters_what_it_delivers() {
    let s = MappingSetup::new("meter-efo");
    let stream = s.aws.kinesis.stream("events").unwrap();
    let consumer = stream.register_consumer("lane").unwrap();
    let _mapping = s.start(consumer.arn);
    tokio::time::sleep(Duration::from_millis(200)).await;
    put(&s.aws, "events", &RECORDS).await;
    s.wait_records(7).await;

    let snapshot = s.aws.meter.snapshot();
    let m = &snapshot.mappings["Lane"];
    assert_eq!(m.kind, "enhanced-fan-out");
    assert_eq!(m.records, 7);
    let shard = &m.shards["shardId-000000000000"];
    assert_eq!(shard.records, 7);
    assert_eq!(shard.invocations, m.invocations);
    let stream = &snapshot.kinesis.streams["events"];
    assert_eq!(stream.efo_records, 7);
    assert_eq!(stream.efo_bytes, 7 * (8 + 1));
    assert_eq!(stream.get_records_requests, 0, "pushed, never polled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_requests_by_class_and_bytes_stored_as_a_level() {
    let dir = TempDir::new("meter-s3");
    let served = serve(LocalAws::open(&dir.0).unwrap()).await;
    let s3 = aws_sdk_s3::Client::new(&sdk(&served.endpoint).await);
    let object = |bytes: usize| aws_sdk_s3::primitives::ByteStream::from(vec![b'z'; bytes]);
    s3.create_bucket().bucket("archive").send().await.unwrap();
    for (key, bytes) in [("a", 1000), ("b", 500), ("a", 300)] {
        s3.put_object()
            .bucket("archive")
            .key(key)
            .body(object(bytes))
            .send()
            .await
            .unwrap();
    }
    let level = |aws: &LocalAws| {
        let b = &aws.meter.snapshot().s3.buckets["archive"];
        (b.bytes_stored, b.objects)
    };
    assert_eq!(level(&served.aws), (800, 2), "a replaced: 300 + 500");
    let listed = s3.list_objects_v2().bucket("archive").send().await.unwrap();
    assert_eq!(listed.key_count(), Some(2));
    let body = s3
        .get_object()
        .bucket("archive")
        .key("a")
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(body.len(), 300);
    s3.head_object()
        .bucket("archive")
        .key("b")
        .send()
        .await
        .unwrap();
    s3.delete_object()
        .bucket("archive")
        .key("a")
        .send()
        .await
        .unwrap();
    assert_eq!(level(&served.aws), (500, 1));
    // Not implemented locally: a 501, which AWS would not bill either.
    let _ = s3.get_bucket_versioning().bucket("archive").send().await;

    let snapshot = served.aws.meter.snapshot();
    let b = &snapshot.s3.buckets["archive"];
    assert_eq!(
        b.class_a_requests,
        1 + 3 + 1,
        "CreateBucket, 3 PutObject, ListObjectsV2: {b:?}"
    );
    assert_eq!(b.class_b_requests, 2, "GetObject, HeadObject: {b:?}");
    assert_eq!(b.free_requests, 1, "DeleteObject: {b:?}");
    assert_eq!(b.bytes_in, 1800);

    // A reset keeps what is stored; a reopened state starts from it.
    served.aws.meter.reset();
    let b = &served.aws.meter.snapshot().s3.buckets["archive"];
    assert_eq!((b.class_a_requests, b.bytes_in), (0, 0));
    assert_eq!((b.bytes_stored, b.objects), (500, 1));
    drop(served);
    let reopened = LocalAws::open(&dir.0).unwrap();
    assert_eq!(level(&reopened), (500, 1));
}

/// One HTTP/1.1 request on a fresh connection: status and parsed JSON body.
async fn http(endpoint: &str, method: &str, path: &str) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = endpoint.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8(answer).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_is_served_reset_over_http_and_written_to_the_state_dir() {
    let served = serve(LocalAws::ephemeral()).await;
    let kinesis = aws_sdk_kinesis::Client::new(&sdk(&served.endpoint).await);
    kinesis
        .create_stream()
        .stream_name("s")
        .shard_count(1)
        .send()
        .await
        .unwrap();
    kinesis
        .put_records()
        .stream_name("s")
        .records(entry("k", 10))
        .send()
        .await
        .unwrap();

    let (status, body) = http(&served.endpoint, "GET", "/_tally/meter").await;
    assert_eq!(status, 200, "{body}");
    let snapshot: Snapshot = serde_json::from_value(body.clone()).unwrap();
    assert_eq!(snapshot.version, 1);
    assert_eq!(snapshot.kinesis.streams["s"].records, 1);
    assert!(snapshot.at_ms >= snapshot.since_ms);
    println!("GET /_tally/meter: {body}");

    let (status, body) = http(&served.endpoint, "POST", "/_tally/meter/reset").await;
    assert_eq!(status, 200, "{body}");
    let fresh: Snapshot = serde_json::from_value(body).unwrap();
    assert!(fresh.kinesis.streams.is_empty());
    assert!(fresh.since_ms >= snapshot.since_ms);
    let (_, body) = http(&served.endpoint, "GET", "/_tally/meter").await;
    assert_eq!(body["kinesis"]["streams"], json!({}));

    let (status, body) = http(&served.endpoint, "DELETE", "/_tally/meter").await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(body["error"], "MethodNotAllowed");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("GET /_tally/meter"),
        "{body}"
    );
    let (status, _) = http(&served.endpoint, "GET", "/_tally/meter/reset").await;
    assert_eq!(status, 405);
    // Other paths under `_` are S3's, which refuses such a bucket name.
    let (status, _) = http(&served.endpoint, "PUT", "/_tally").await;
    assert_eq!(status, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_cloud_meters_its_functions_and_writes_meter_json() {
    use std::collections::BTreeMap;
    use tally_localcloud::cloud::{CloudOptions, LocalCloud};
    let dir = TempDir::new("meter-cloud");
    let log = dir.0.join("batches.jsonl");
    let template = json!({
        "Parameters": {"AppCodeKey": {"Type": "String"}},
        "Resources": {
            "Events": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "events", "ShardCount": 1}},
            "App": {"Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": "app", "Code": {"S3Bucket": "assets", "S3Key": {"Ref": "AppCodeKey"}},
                "MemorySize": 512, "Timeout": 5,
                "Environment": {"Variables": {"TESTFN_LOG": log.display().to_string()}}}},
            "Lane": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "FunctionName": {"Ref": "App"}, "EventSourceArn": {"Fn::GetAtt": ["Events", "Arn"]},
                "StartingPosition": "TRIM_HORIZON", "BatchSize": 10}},
        },
    });
    let cloud = LocalCloud::start(CloudOptions {
        template,
        stack_name: "meter".into(),
        state_dir: dir.0.join("state"),
        durability: Default::default(),
        parameters: BTreeMap::from([("AppCodeKey".to_owned(), testfn().to_owned())]),
        endpoint_port: 0,
        url_port_base: 0,
        function_env: BTreeMap::new(),
        terminal_logs: false,
        skip_unbuilt: false,
        mappings: RuntimeOptions {
            idle_poll: Duration::from_millis(50),
            ..RuntimeOptions::default()
        },
        schedule_speedup: 1,
    })
    .await
    .unwrap();
    let meter_url = cloud.endpoints()["meter"].as_str().unwrap().to_owned();
    assert_eq!(meter_url, format!("{}/_tally/meter", cloud.endpoint));
    assert_eq!(cloud.meter_file, dir.0.join("state").join("meter.json"));

    let kinesis = aws_sdk_kinesis::Client::new(&sdk(&cloud.endpoint).await);
    kinesis
        .put_records()
        .stream_name("events")
        .records(entry("a", 10))
        .records(entry("b", 20))
        .send()
        .await
        .unwrap();
    let file = cloud.meter_file.clone();
    let read = |path: &std::path::Path| -> Option<Snapshot> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    };
    let written = until(Duration::from_secs(10), || {
        read(&file).is_some_and(|s| {
            s.mappings.get("Lane").is_some_and(|m| m.records == 2)
                && s.lambda
                    .functions
                    .get("app")
                    .is_some_and(|f| f.billed_ms > 0)
        })
    })
    .await;
    assert!(
        written,
        "meter.json never showed the mapping's invocation: {:?} (batches {:?})",
        read(&file),
        batch_data(&log)
    );
    let (status, body) = http(&cloud.endpoint, "GET", "/_tally/meter").await;
    assert_eq!(status, 200);
    assert_eq!(body["lambda"]["functions"]["app"]["memory_mb"], 512);
    assert_eq!(body["kinesis"]["streams"]["events"]["records"], 2);
    assert_eq!(body["mappings"]["Lane"]["kind"], "shared-iterator");
    println!("GET {meter_url}: {body}");

    cloud.shutdown();
    let last = read(&file).unwrap();
    assert_eq!(last.kinesis.streams["events"].put_requests, 1);
    assert!(!file.with_extension("json.tmp").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sqs_mapping_meters_its_invocations_per_queue() {
    let s = MappingSetup::new("meter-sqs");
    let (url, arn) = crate::support::create_queue(&s.aws, "jobs").await;
    for body in ["one", "two", "three"] {
        crate::support::call(
            &s.aws,
            "AmazonSQS.SendMessage",
            json!({"QueueUrl": url, "MessageBody": body}),
        )
        .await;
    }
    let mut config = MappingConfig::new("Jobs", arn);
    config.batch_size = 10;
    let _mapping = tally_localcloud::esm::SqsMapping::start(
        config,
        s.function.clone(),
        s.aws.clone(),
        RuntimeOptions {
            idle_poll: Duration::from_millis(50),
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    let meter = s.aws.meter.clone();
    let done = until(Duration::from_secs(10), || {
        meter
            .snapshot()
            .mappings
            .get("Jobs")
            .is_some_and(|m| m.records >= 3)
    })
    .await;
    let snapshot = meter.snapshot();
    assert!(done, "{:?}", snapshot.mappings);
    let m = &snapshot.mappings["Jobs"];
    assert_eq!(
        (m.function.as_str(), m.source.as_str(), m.kind.as_str()),
        ("fn-meter-sqs", "jobs", "sqs")
    );
    assert_eq!(m.records, 3);
    let queue = &m.shards["jobs"];
    assert_eq!((queue.invocations, queue.records), (m.invocations, 3));
    assert_eq!(
        snapshot.lambda.functions["fn-meter-sqs"].invocations,
        m.invocations
    );
}

/// A provisioned table (the metrics table's default) reports the throughput it was created with; the
/// local table never throttles, so the numbers are reported, not enforced. DynamoDB's rules on the
/// combination are kept: no throughput with PAY_PER_REQUEST, at least 1 unit each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_tables_report_their_throughput() {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput,
        ScalarAttributeType,
    };
    let served = serve(LocalAws::ephemeral()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk(&served.endpoint).await);
    let create = |name: &str, mode: BillingMode, throughput: Option<(i64, i64)>| {
        dynamodb
            .create_table()
            .table_name(name)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .unwrap(),
            )
            .billing_mode(mode)
            .set_provisioned_throughput(throughput.map(|(read, write)| {
                ProvisionedThroughput::builder()
                    .read_capacity_units(read)
                    .write_capacity_units(write)
                    .build()
                    .unwrap()
            }))
            .send()
    };
    create("capacity", BillingMode::Provisioned, Some((3, 5)))
        .await
        .unwrap();
    let table = dynamodb
        .describe_table()
        .table_name("capacity")
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let throughput = table.provisioned_throughput.unwrap();
    assert_eq!(
        (
            throughput.read_capacity_units,
            throughput.write_capacity_units
        ),
        (Some(3), Some(5))
    );
    assert_eq!(
        table.billing_mode_summary.unwrap().billing_mode,
        Some(BillingMode::Provisioned)
    );
    for (name, mode, throughput, says) in [
        (
            "both",
            BillingMode::PayPerRequest,
            Some((3, 5)),
            "can be specified when BillingMode is PAY_PER_REQUEST",
        ),
        (
            "zero",
            BillingMode::Provisioned,
            Some((0, 5)),
            "ReadCapacityUnits must be at least 1",
        ),
    ] {
        let error = create(name, mode, throughput).await.unwrap_err();
        let text = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&error));
        assert!(
            text.contains("ValidationException") && text.contains(says),
            "{name}: {text}"
        );
    }
    served.server.abort();
}
