//! Throttling: a loopback endpoint speaking Kinesis' `PutRecords` (awsJson1.1) that fails records the way
//! Kinesis does under load (per record, `ProvisionedThroughputExceededException`), driven through the real SDK.
//! It decodes every record it gets with the real `wire::unpack`, so the tests know which events each written
//! and each failed record held.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tally_aws::kinesis::RetryPolicy;
use tally_collect::Collector;
use tally_domain::event::Event;
use tally_domain::wire::unpack;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{base64, body_json, header, kinesis_client, unbase64, url_request};

/// Which records the endpoint throttles.
#[derive(Clone, Copy, Debug)]
enum Rule {
    /// Records holding an event of campaign `hot`, every time.
    HotCampaign,
    /// Every record of the first `n` requests.
    FirstRequests(usize),
    /// The whole request, as IAM refuses it (HTTP 400 `AccessDeniedException`, ARNs in the message).
    Denied,
}

/// A record as the endpoint saw it: its partition key and events.
type Seen = (String, Vec<Event>);

/// The fake endpoint: its address, the requests it saw, the records it accepted and the distinct records it
/// throttled (a record throttled on every attempt is listed once).
struct Endpoint {
    url: String,
    requests: Arc<AtomicUsize>,
    written: Arc<Mutex<Vec<Seen>>>,
    throttled: Arc<Mutex<Vec<Seen>>>,
}

impl Endpoint {
    fn written(&self) -> Vec<Seen> {
        self.written.lock().expect("lock").clone()
    }

    fn throttled(&self) -> Vec<Seen> {
        self.throttled.lock().expect("lock").clone()
    }
}

fn ids_of(records: &[Seen]) -> Vec<String> {
    records
        .iter()
        .flat_map(|(_, events)| events.iter().map(|e| e.id.clone()))
        .collect()
}

async fn endpoint(rule: Rule) -> Endpoint {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(Mutex::new(Vec::new()));
    let throttled = Arc::new(Mutex::new(Vec::new()));
    let (r, w, t) = (requests.clone(), written.clone(), throttled.clone());
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (r, w, t) = (r.clone(), w.clone(), t.clone());
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
                    if matches!(rule, Rule::Denied) {
                        let answer = json!({"__type": "AccessDeniedException", "message": DENIED})
                            .to_string();
                        let head = format!(
                            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/x-amz-json-1.1\r\ncontent-length: {}\r\nx-amzn-requestid: r{n}\r\n\r\n",
                            answer.len()
                        );
                        if write.write_all(head.as_bytes()).await.is_err()
                            || write.write_all(answer.as_bytes()).await.is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let mut results = Vec::new();
                    let mut failed = 0;
                    for record in request["Records"].as_array().into_iter().flatten() {
                        let key = record["PartitionKey"].as_str().unwrap_or("").to_owned();
                        let data = record["Data"].as_str().unwrap_or("");
                        let events = unbase64(data)
                            .and_then(|bytes| unpack(&bytes).ok())
                            .unwrap_or_default();
                        let throttle = match rule {
                            Rule::HotCampaign => events.iter().any(|e| e.campaign_id == "hot"),
                            Rule::FirstRequests(k) => n < k,
                            Rule::Denied => unreachable!("answered above"),
                        };
                        if throttle {
                            failed += 1;
                            let mut t = t.lock().expect("lock");
                            if !t.iter().any(|(k, e)| *k == key && *e == events) {
                                t.push((key, events));
                            }
                            results.push(
                                json!({"ErrorCode": "ProvisionedThroughputExceededException",
                                "ErrorMessage": "Rate exceeded for shard shardId-000000000000 in stream events under account 123456789012."}),
                            );
                        } else {
                            w.lock().expect("lock").push((key, events));
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
        throttled,
    }
}

/// What IAM says when a role may not write the stream: an account id and two ARNs.
const DENIED: &str = "User: arn:aws:sts::123456789012:assumed-role/tally-main-collect/fn is not authorized to perform: kinesis:PutRecords on resource: arn:aws:kinesis:us-east-1:123456789012:stream/tally-main-events";

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
    let written = fake.written();
    assert_eq!(written.len(), 1, "one request, one record: {written:?}");
    assert_eq!(ids_of(&written), ["a-1", "a-2"]);
}

#[tokio::test]
async fn a_request_whose_record_stays_throttled_gets_503_naming_all_its_events() {
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
    // The three valid events are one record, and that record was throttled: none of them is accepted.
    assert_eq!(doc["accepted"], 0, "{doc}");
    assert_eq!(doc["ids"], json!([]), "{doc}");
    assert_eq!(doc["unwritten_ids"], json!(["h-1", "c-1", "h-2"]), "{doc}");
    assert_eq!(
        doc["errors"][0]["index"], 3,
        "invalid events are still reported: {doc}"
    );
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("throttled after 3 attempts")),
        "{doc}"
    );
    // Kinesis' message names the account: it stays in the log, never in an answer.
    assert!(!doc.to_string().contains("123456789012"), "{doc}");
    assert!(fake.written().is_empty());
    assert_eq!(ids_of(&fake.throttled()), ["h-1", "c-1", "h-2"]);
    assert_eq!(
        fake.requests.load(Ordering::SeqCst),
        3,
        "bounded: exactly the policy's rounds"
    );
}

#[tokio::test]
async fn when_some_records_of_a_request_fail_the_answer_names_exactly_their_events() {
    // Records of at most 600 bytes split this request into several; those holding a `hot` event keep failing.
    let fake = endpoint(Rule::HotCampaign).await;
    let collector = Collector::new(kinesis_client(&fake.url).await, "events")
        .with_retry(quick_retries(3))
        .with_record_limit(600);
    let mut events = Vec::new();
    for (i, campaign) in ["cool", "cool", "hot", "cool", "cool", "cool"]
        .iter()
        .enumerate()
    {
        for j in 0..6 {
            events.push(json!({"id": format!("{campaign}-{i}-{j}"), "kind": "impression",
                "campaign_id": campaign, "ad_id": format!("ad-{i}"), "user_id": format!("user-{i}-{j}-{}", "u".repeat(40))}));
        }
    }
    // The same id twice in one body, in a record that fails and in one that is written: both kept, each
    // reported where it went (nothing is dropped or merged by collect; the counter store deduplicates).
    events.insert(
        14,
        json!({"id": "twice", "kind": "click", "campaign_id": "hot", "ad_id": "x"}),
    );
    events.push(json!({"id": "twice", "kind": "click", "campaign_id": "cool", "ad_id": "x"}));
    let sent: Vec<String> = events
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect();
    let response = collector.handle(post(&json!(events))).await;
    assert_eq!(response.status().as_u16(), 503, "{:?}", response.body());
    let doc = body_json(&response);

    let (written, throttled) = (fake.written(), fake.throttled());
    assert!(
        written.len() >= 2 && !throttled.is_empty(),
        "{written:?} {throttled:?}"
    );
    let key = &written[0].0;
    assert!(
        written.iter().chain(&throttled).all(|(k, _)| k == key),
        "one partition key per request"
    );
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string").to_owned())
            .collect()
    };
    // Exactly the events of the failed records are unwritten, the others accepted, each in body order.
    let (ids, unwritten) = (strings(&doc["ids"]), strings(&doc["unwritten_ids"]));
    let in_order = |subset: &[String]| {
        let mut rest = sent.iter();
        subset.iter().all(|id| rest.any(|s| s == id))
    };
    let mut failed = ids_of(&throttled);
    let mut accepted = ids_of(&written);
    assert!(in_order(&ids) && in_order(&unwritten), "{doc}");
    assert_eq!(doc["accepted"], ids.len());
    for (reported, seen) in [(&ids, &mut accepted), (&unwritten, &mut failed)] {
        let mut reported = reported.clone();
        reported.sort();
        seen.sort();
        assert_eq!(&reported, seen, "{doc}");
    }
    assert_eq!(
        ids.len() + unwritten.len(),
        sent.len(),
        "every event reported once"
    );
    assert!(ids.contains(&"twice".to_owned()) && unwritten.contains(&"twice".to_owned()));
    assert!(
        unwritten.iter().all(|id| !id.starts_with("cool-0")),
        "{doc}"
    );

    // Resending exactly the unwritten ones (a client following the answer) makes a new request with a new key.
    let resend: Vec<&Value> = events
        .iter()
        .filter(|e| e["campaign_id"] != "hot")
        .filter(|e| unwritten.iter().any(|u| e["id"] == json!(u)))
        .collect();
    let again = collector.handle(post(&json!(resend))).await;
    assert_eq!(again.status().as_u16(), 202, "{:?}", again.body());
    let last = fake.written().last().cloned().expect("written");
    assert_ne!(&last.0, key, "a new request, a new key");
}

#[test]
fn base64_round_trips() {
    for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", &[0, 255, 128, 7, 9]] {
        assert_eq!(unbase64(&base64(bytes)).as_deref(), Some(bytes));
    }
    assert_eq!(unbase64("no*pe"), None);
}

#[tokio::test]
async fn a_refused_write_answers_500_without_aws_text() {
    let fake = endpoint(Rule::Denied).await;
    let collector =
        Collector::new(kinesis_client(&fake.url).await, "events").with_retry(quick_retries(3));
    let events = json!([{"id": "d-1", "kind": "impression", "campaign_id": "c", "ad_id": "x"}]);
    let response = collector.handle(post(&events)).await;
    assert_eq!(response.status().as_u16(), 500, "{:?}", response.body());
    let doc = body_json(&response);
    assert_eq!(doc["unwritten_ids"], json!(["d-1"]), "{doc}");
    let text = doc.to_string();
    for secret in ["123456789012", "arn:", "assumed-role", "AccessDenied"] {
        assert!(!text.contains(secret), "{secret} leaked: {doc}");
    }
    assert!(
        doc["detail"]
            .as_str()
            .is_some_and(|d| d.contains("refused the write")),
        "{doc}"
    );
}
