//! Throttling: a loopback endpoint speaking Kinesis' `PutRecords` (awsJson1.1) that fails records the way
//! Kinesis does under load (per record, `ProvisionedThroughputExceededException`), driven through the real SDK.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tally_aws::kinesis::RetryPolicy;
use tally_collect::Collector;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{body_json, header, kinesis_client, url_request};

/// Which records the endpoint throttles.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Records whose partition key starts with `hot#`, every time.
    HotCampaign,
    /// Every record of the first `n` requests.
    FirstRequests(usize),
}

/// The fake endpoint: its address, the requests it saw and the partition keys it accepted.
struct Endpoint {
    url: String,
    requests: Arc<AtomicUsize>,
    written: Arc<Mutex<Vec<String>>>,
}

async fn endpoint(rule: Rule) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(Mutex::new(Vec::new()));
    let (r, w) = (requests.clone(), written.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (r, w) = (r.clone(), w.clone());
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut results = Vec::new();
                    let mut failed = 0;
                    for record in request["Records"].as_array().into_iter().flatten() {
                        let key = record["PartitionKey"].as_str().unwrap_or("").to_owned();
                        let throttle = match rule {
                            Rule::HotCampaign => key.starts_with("hot#"),
                            Rule::FirstRequests(k) => n < k,
                        };
                        if throttle {
                            failed += 1;
                            results.push(
                                json!({"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded for shard shardId-000000000000"}),
                            );
                        } else {
                            w.lock().expect("lock").push(key);
                            results.push(json!({"SequenceNumber": format!("{}", 1000 + n), "ShardId": "shardId-000000000000"}));
                        }
                    }
                    let answer =
                        json!({"FailedRecordCount": failed, "Records": results}).to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nx-amzn-requestid: r{n}\r\n\r\n",
                        answer.len()
                    );
                    if write.write_all(head.as_bytes()).await.is_err()
                        || write.write_all(answer.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Endpoint {
        url,
        requests,
        written,
    }
}

fn quick_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        base_delay: Duration::from_millis(2),
        max_delay: Duration::from_millis(10),
    }
}

fn post(events: &Value) -> lambda_http::Request {
    let body = events.to_string();
    url_request(
        "POST",
        "/v1/events",
        &[("content-type", "application/json")],
        Some(body.as_bytes()),
    )
}

#[tokio::test]
async fn records_throttled_once_are_resent_and_accepted() {
    let fake = endpoint(Rule::FirstRequests(2)).await;
    let collector =
        Collector::new(kinesis_client(&fake.url).await, "events").with_retry(quick_retries(4));
    let events = json!([
        {"id": "a-1", "kind": "impression", "campaign_id": "summer", "ad_id": "x"},
        {"id": "a-2", "kind": "impression", "campaign_id": "winter", "ad_id": "y"}
    ]);
    let response = collector.handle(post(&events)).await;
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.body());
    assert_eq!(body_json(&response)["accepted"], 2);
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        3,
        "two throttled rounds, then the write"
    );
    assert_eq!(fake.written.lock().expect("lock").len(), 2);
}

#[tokio::test]
async fn records_still_throttled_get_503_and_are_not_reported_accepted() {
    let fake = endpoint(Rule::HotCampaign).await;
    let collector =
        Collector::new(kinesis_client(&fake.url).await, "events").with_retry(quick_retries(3));
    let events = json!([
        {"id": "h-1", "kind": "impression", "campaign_id": "hot", "ad_id": "x"},
        {"id": "c-1", "kind": "impression", "campaign_id": "cool", "ad_id": "x"},
        {"id": "h-2", "kind": "click", "campaign_id": "hot", "ad_id": "x"},
        {"id": "bad", "kind": "click", "campaign_id": "cool"}
    ]);
    let response = collector.handle(post(&events)).await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(header(&response, "retry-after"), "1");
    let doc = body_json(&response);
    assert_eq!(doc["accepted"], 1, "{doc}");
    assert_eq!(doc["ids"], json!(["c-1"]), "{doc}");
    let mut unwritten: Vec<&str> = doc["unwritten_ids"]
        .as_array()
        .expect("unwritten")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    unwritten.sort();
    assert_eq!(unwritten, ["h-1", "h-2"], "{doc}");
    assert_eq!(
        doc["errors"][0]["index"], 3,
        "invalid events are still reported: {doc}"
    );
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("ProvisionedThroughputExceeded")),
        "{doc}"
    );
    let written = fake.written.lock().expect("lock").clone();
    assert!(
        written.iter().all(|k| k.starts_with("cool#")),
        "{written:?}"
    );
    assert_eq!(written.len(), 1);
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        3,
        "bounded: exactly the policy's rounds"
    );
}
