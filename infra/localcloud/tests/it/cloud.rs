//! A whole template run locally: Function URL, AWS endpoint through the real SDK, a mapping on an
//! enhanced fan-out consumer, and a restart that resumes from the state directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Duration;

use serde_json::{json, Value};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::esm::RuntimeOptions;

use crate::lambda::testfn;
use crate::support::{batch_data, until, TempDir};

fn template(log: &str) -> Value {
    json!({
        "Parameters": {"AppCodeKey": {"Type": "String"}},
        "Resources": {
            "Events": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": {"Fn::Sub": "${AWS::StackName}-events"}, "ShardCount": 2}},
            "Consumer": {"Type": "AWS::Kinesis::StreamConsumer", "Properties": {"ConsumerName": "rt", "StreamARN": {"Fn::GetAtt": ["Events", "Arn"]}}},
            "Failures": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "failures", "VisibilityTimeout": 30}},
            "Table": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "metrics", "BillingMode": "PAY_PER_REQUEST",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": true}}},
            "Archive": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "archive-bucket"}},
            "App": {"Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": "app", "Code": {"S3Bucket": "assets", "S3Key": {"Ref": "AppCodeKey"}}, "MemorySize": 256, "Timeout": 5,
                "Environment": {"Variables": {"TESTFN_LOG": log, "TALLY_STREAM_NAME": {"Ref": "Events"}, "QUEUE": {"Ref": "Failures"}}}}},
            "AppUrl": {"Type": "AWS::Lambda::Url", "Properties": {"AuthType": "NONE", "TargetFunctionArn": {"Fn::GetAtt": ["App", "Arn"]},
                "Cors": {"AllowOrigins": ["*"], "AllowMethods": ["GET", "POST"], "MaxAge": 60}}},
            "Mapping": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                "FunctionName": {"Ref": "App"}, "EventSourceArn": {"Fn::GetAtt": ["Consumer", "ConsumerARN"]},
                "StartingPosition": "TRIM_HORIZON", "BatchSize": 10,
                "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": ["Failures", "Arn"]}}}}},
            "Alarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {}},
        },
        "Outputs": {"AppUrlOut": {"Value": {"Fn::GetAtt": ["AppUrl", "FunctionUrl"]}}, "QueueUrl": {"Value": {"Ref": "Failures"}}},
    })
}

fn options(dir: &TempDir) -> CloudOptions {
    let log = dir.0.join("batches.jsonl").display().to_string();
    CloudOptions {
        template: template(&log),
        stack_name: "it".into(),
        state_dir: dir.0.join("state"),
        durability: Default::default(),
        parameters: BTreeMap::from([("AppCodeKey".to_owned(), testfn().to_owned())]),
        endpoint_port: 0,
        url_port_base: 0,
        function_env: BTreeMap::from([(
            "app".to_owned(),
            BTreeMap::from([("TALLY_QUERY_AUTH".to_owned(), "off".to_owned())]),
        )]),
        terminal_logs: false,
        skip_unbuilt: false,
        mappings: RuntimeOptions::default(),
        schedule_speedup: 1,
    }
}

/// One HTTP/1.1 request over a plain socket: (status, headers, body).
pub(crate) fn http(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

async fn kinesis(endpoint: &str) -> aws_sdk_kinesis::Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await;
    aws_sdk_kinesis::Client::new(&config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_runs_locally_and_a_restart_resumes() {
    let dir = TempDir::new("cloud");
    let log = dir.0.join("batches.jsonl");
    let cloud = LocalCloud::start(options(&dir)).await.unwrap();
    assert_eq!(cloud.resources.skipped.len(), 1, "the alarm is reported");
    let endpoints = cloud.endpoints();
    let url = cloud.urls["AppUrl"].clone();
    assert_eq!(endpoints["outputs"]["AppUrlOut"], url.as_str());
    assert_eq!(
        endpoints["outputs"]["QueueUrl"],
        format!("{}/123456789012/failures", cloud.endpoint)
    );

    // The Function URL: payload 2.0 in, structured response out, CORS added.
    let url2 = url.clone();
    let (status, head, body) = tokio::task::spawn_blocking(move || {
        http(
            &url2,
            "POST",
            "/v1/e?x=1",
            &[
                ("origin", "http://localhost:3000"),
                ("content-type", "application/json"),
                ("cookie", "a=b"),
            ],
            r#"{"n":1}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 201, "{head}\n{body}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(head.contains("set-cookie: a=1"), "{head}");
    let echoed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echoed["path"], "/v1/e");
    assert_eq!(echoed["query"], "x=1");
    assert_eq!(echoed["method"], "POST");
    assert_eq!(echoed["body"], r#"{"n":1}"#);
    assert_eq!(echoed["cookies"], json!(["a=b"]));
    let url3 = url.clone();
    let (status, head, _) = tokio::task::spawn_blocking(move || {
        http(
            &url3,
            "OPTIONS",
            "/",
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "POST"),
            ],
            "",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        head.contains("access-control-allow-methods: get,post"),
        "{head}"
    );
    // A page on another site is refused by the loopback guard, before the function runs.
    let url4 = url.clone();
    let (status, _, body) = tokio::task::spawn_blocking(move || {
        http(
            &url4,
            "POST",
            "/v1/e",
            &[("origin", "https://site.example")],
            r#"{"n":1}"#,
        )
    })
    .await
    .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not a loopback origin"), "{body}");

    // The endpoint through the real SDK, and the mapping on the consumer.
    let client = kinesis(&cloud.endpoint).await;
    for n in 0..4 {
        client
            .put_record()
            .stream_name("it-events")
            .partition_key(format!("key-{n}"))
            .data(aws_sdk_kinesis::primitives::Blob::new(format!("r{n}")))
            .send()
            .await
            .unwrap();
    }
    assert!(
        until(Duration::from_secs(10), || batch_data(&log).concat().len()
            == 4)
        .await,
        "{:?}",
        batch_data(&log)
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    cloud.shutdown();
    drop(cloud);

    // Restart on the same state: the stream, its records and the checkpoints are there.
    let cloud = LocalCloud::start(options(&dir)).await.unwrap();
    let client = kinesis(&cloud.endpoint).await;
    client
        .put_record()
        .stream_name("it-events")
        .partition_key("after")
        .data(aws_sdk_kinesis::primitives::Blob::new("r-after"))
        .send()
        .await
        .unwrap();
    assert!(
        until(Duration::from_secs(10), || batch_data(&log).concat().len()
            >= 5)
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut all = batch_data(&log).concat();
    all.sort();
    assert_eq!(
        all,
        ["r-after", "r0", "r1", "r2", "r3"],
        "replayed or lost across the restart"
    );
    cloud.shutdown();
}
