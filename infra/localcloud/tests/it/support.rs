//! Helpers: in-process calls to the local endpoint, the test function's batch log, building binaries.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tally_localcloud_aws::aws::LocalAws;

/// Builds the binaries of `packages` (`cargo build --bins -p …`) in this test binary's profile and returns the
/// profile directory that holds them, so `--release` and `CARGO_TARGET_DIR` are followed.
pub fn cargo_build_bins(packages: &[&str]) -> PathBuf {
    let bin = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut build = tally_contract::cargo::command();
    build.current_dir(&root).args(["build", "--bins"]);
    for package in packages {
        build.args(["-p", package]);
    }
    if bin.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building {packages:?} failed: {status}");
    bin
}

/// One call on the local endpoint's wire protocol, without a socket. Panics on an AWS error (test setup).
pub async fn call(aws: &Arc<LocalAws>, target: &str, input: Value) -> Value {
    let (content_type, _) = if target.starts_with("Kinesis") {
        ("application/x-amz-json-1.1", ())
    } else {
        ("application/x-amz-json-1.0", ())
    };
    let request = hyper::Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", target)
        .header("content-type", content_type)
        .body(Bytes::from(input.to_string()))
        .unwrap();
    let response = tally_localcloud_aws::aws::handle(aws, request).await;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        status.is_success(),
        "{target} failed: {status} {}",
        String::from_utf8_lossy(&body)
    );
    serde_json::from_slice(&body).unwrap_or(Value::Null)
}

/// Puts records `(partition key, data)` in order, one PutRecord each (so each gets its own arrival time).
pub async fn put(aws: &Arc<LocalAws>, stream: &str, records: &[(&str, &str)]) -> Vec<String> {
    let mut sequences = Vec::new();
    for (key, data) in records {
        let out = call(
            aws,
            "Kinesis_20131202.PutRecord",
            json!({"StreamName": stream, "PartitionKey": key, "Data": base64_encode(data.as_bytes())}),
        )
        .await;
        sequences.push(out["SequenceNumber"].as_str().unwrap().to_owned());
    }
    sequences
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub async fn create_queue(aws: &Arc<LocalAws>, name: &str) -> (String, String) {
    let url = call(aws, "AmazonSQS.CreateQueue", json!({"QueueName": name})).await["QueueUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    (url, format!("arn:aws:sqs:us-east-1:123456789012:{name}"))
}

/// Receives every message now in the queue (deleting them), bodies parsed as JSON where they are.
pub async fn drain(aws: &Arc<LocalAws>, url: &str) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let got = call(
            aws,
            "AmazonSQS.ReceiveMessage",
            json!({"QueueUrl": url, "MaxNumberOfMessages": 10}),
        )
        .await;
        let Some(messages) = got["Messages"]
            .as_array()
            .filter(|m| !m.is_empty())
            .cloned()
        else {
            return out;
        };
        for message in messages {
            let body = message["Body"].as_str().unwrap_or_default();
            out.push(serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())));
            call(
                aws,
                "AmazonSQS.DeleteMessage",
                json!({"QueueUrl": url, "ReceiptHandle": message["ReceiptHandle"]}),
            )
            .await;
        }
    }
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("tally-lc-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The batches the test function logged: one JSON object per invocation.
pub fn batches(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        // The last line may be half written while the function appends it: read it next time.
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// The data of each logged batch.
pub fn batch_data(log: &Path) -> Vec<Vec<String>> {
    batches(log)
        .iter()
        .filter(|b| b["records"].as_array().is_some_and(|r| !r.is_empty()))
        .map(|b| {
            b["records"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["data"].as_str().unwrap().to_owned())
                .collect()
        })
        .collect()
}

/// Waits until `done` holds, up to `limit`.
pub async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}
