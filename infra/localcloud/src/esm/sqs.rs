//! SQS for mappings: on-failure delivery, and SQS event source mappings (receive, invoke, delete).
//!
//! Both talk to the local endpoint through its wire protocol in process (`aws::handle`), exactly as a
//! client would, so they need nothing from the SQS implementation beyond its public operations.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Request;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::event::{batch_outcome, BatchOutcome};
use super::{queue_name, MappingConfig, MappingStats, RuntimeOptions};
use crate::lambda::{lock, Function};
use tally_localcloud_aws::aws::{now_ms, LocalAws};
use tally_localcloud_aws::meter::MappingId;

/// Calls one SQS operation on the local endpoint; `Err` carries AWS's error code and message.
pub(crate) async fn call(
    aws: &Arc<LocalAws>,
    operation: &str,
    input: Value,
) -> Result<Value, String> {
    local_call(aws, &format!("AmazonSQS.{operation}"), input).await
}

/// Calls one operation of a JSON-protocol service (`X-Amz-Target`) on the local endpoint, in process.
pub(crate) async fn local_call(
    aws: &Arc<LocalAws>,
    target: &str,
    input: Value,
) -> Result<Value, String> {
    let content_type = if target.starts_with("Kinesis_") {
        "application/x-amz-json-1.1"
    } else {
        "application/x-amz-json-1.0"
    };
    let request = Request::builder()
        .method("POST")
        .uri("/")
        .header("x-amz-target", target)
        .header("content-type", content_type)
        .body(Bytes::from(input.to_string()))
        .map_err(|error| error.to_string())?;
    let response = tally_localcloud_aws::aws::handle(aws, request).await;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(format!(
            "{target} failed ({status}): {}",
            String::from_utf8_lossy(&body)
        ))
    }
}

async fn queue_url(aws: &Arc<LocalAws>, arn: &str) -> Result<String, String> {
    let name = queue_name(arn).ok_or_else(|| format!("{arn} is not an SQS queue ARN"))?;
    let found = call(aws, "GetQueueUrl", json!({ "QueueName": name })).await?;
    found
        .get("QueueUrl")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("GetQueueUrl answered no QueueUrl for {name}"))
}

/// Sends one message to the queue with this ARN.
pub(crate) async fn send(aws: &Arc<LocalAws>, arn: &str, body: &str) -> Result<(), String> {
    let url = queue_url(aws, arn).await?;
    call(
        aws,
        "SendMessage",
        json!({ "QueueUrl": url, "MessageBody": body }),
    )
    .await
    .map(|_| ())
}

/// A running SQS mapping: long-polls the queue, invokes with up to `BatchSize` messages, deletes what
/// succeeded (all, or all but the reported failures); failed messages return after their visibility timeout
/// and go to the queue's dead-letter queue per its redrive policy.
#[derive(Debug)]
pub struct SqsMapping {
    stop: watch::Sender<bool>,
    stats: Arc<Mutex<MappingStats>>,
    task: JoinHandle<()>,
}

impl SqsMapping {
    pub fn start(
        config: MappingConfig,
        function: Function,
        aws: Arc<LocalAws>,
        options: RuntimeOptions,
    ) -> Result<SqsMapping, String> {
        config.validate()?;
        if queue_name(&config.source_arn).is_none() {
            return Err(format!(
                "mapping {}: {} is not an SQS queue ARN",
                config.id, config.source_arn
            ));
        }
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Mutex::new(MappingStats::default()));
        let task = tokio::spawn(run(config, function, aws, options, stats.clone(), stop_rx));
        Ok(SqsMapping { stop, stats, task })
    }

    pub fn stats(&self) -> MappingStats {
        lock(&self.stats).clone()
    }

    pub fn stop(&self) {
        self.stop.send_replace(true);
        self.task.abort();
    }
}

impl Drop for SqsMapping {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run(
    config: MappingConfig,
    function: Function,
    aws: Arc<LocalAws>,
    options: RuntimeOptions,
    stats: Arc<Mutex<MappingStats>>,
    mut stop: watch::Receiver<bool>,
) {
    let url = loop {
        match queue_url(&aws, &config.source_arn).await {
            Ok(url) => break url,
            Err(error) => {
                tracing::warn!(message = "sqs mapping waits for its queue", mapping = %config.id, %error);
                tokio::select! {
                    _ = tokio::time::sleep(options.idle_poll) => {}
                    _ = crate::lambda::http::stopped(&mut stop) => return,
                }
            }
        }
    };
    loop {
        let mut messages: Vec<Value> = Vec::new();
        let started = std::time::Instant::now();
        // Gather up to BatchSize messages within the batching window (receives take at most 10 each).
        loop {
            let want = (config.batch_size - messages.len()).min(10);
            let wait = if messages.is_empty() { 1 } else { 0 };
            let received = tokio::select! {
                received = call(&aws, "ReceiveMessage", json!({
                    "QueueUrl": url, "MaxNumberOfMessages": want, "WaitTimeSeconds": wait,
                    "AttributeNames": ["All"], "MessageAttributeNames": ["All"],
                })) => received,
                _ = crate::lambda::http::stopped(&mut stop) => return,
            };
            let got = match received {
                Ok(value) => value
                    .get("Messages")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                Err(error) => {
                    tracing::warn!(message = "sqs receive failed", mapping = %config.id, %error);
                    tokio::time::sleep(options.idle_poll).await;
                    Vec::new()
                }
            };
            let empty = got.is_empty();
            messages.extend(got);
            if messages.len() >= config.batch_size
                || started.elapsed() >= config.batching_window
                || (empty && !messages.is_empty())
            {
                break;
            }
            if messages.is_empty() && empty {
                continue;
            }
        }
        if messages.is_empty() {
            continue;
        }
        let event = json!({ "Records": messages.iter().map(|m| sqs_record(m, &config.source_arn, &aws.region)).collect::<Vec<_>>() });
        lock(&stats).invocations += 1;
        let ids: Vec<String> = messages
            .iter()
            .filter_map(|m| m.get("MessageId")?.as_str().map(str::to_owned))
            .collect();
        let (start_ms, started) = (now_ms(), std::time::Instant::now());
        let outcome = function.invoke(event.to_string()).await;
        let queue = queue_name(&config.source_arn).unwrap_or_default();
        aws.meter.mapping_invocation(
            &MappingId {
                id: &config.id,
                function: &function.spec().name,
                source: queue,
                kind: "sqs",
            },
            queue,
            messages.len() as u64,
            start_ms,
            started.elapsed().as_millis() as u64,
        );
        let delete: Vec<&Value> = match outcome {
            Ok(response) if config.report_batch_item_failures => {
                match batch_outcome(&response, &ids) {
                    BatchOutcome::Success => messages.iter().collect(),
                    BatchOutcome::Failed(failed) => messages
                        .iter()
                        .filter(|m| {
                            !m.get("MessageId")
                                .and_then(Value::as_str)
                                .is_some_and(|id| failed.iter().any(|f| f == id))
                        })
                        .collect(),
                    BatchOutcome::Malformed(_) => Vec::new(),
                }
            }
            Ok(_) => messages.iter().collect(),
            Err(failure) => {
                tracing::warn!(message = "sqs batch failed; messages return after their visibility timeout", mapping = %config.id, %failure);
                Vec::new()
            }
        };
        lock(&stats).records_ok += delete.len() as u64;
        if delete.is_empty() {
            continue;
        }
        let entries: Vec<Value> = delete
            .iter()
            .enumerate()
            .map(|(i, m)| json!({ "Id": i.to_string(), "ReceiptHandle": m.get("ReceiptHandle").cloned().unwrap_or(Value::Null) }))
            .collect();
        for chunk in entries.chunks(10) {
            if let Err(error) = call(
                &aws,
                "DeleteMessageBatch",
                json!({ "QueueUrl": url, "Entries": chunk }),
            )
            .await
            {
                tracing::error!(message = "sqs delete failed; the messages will be delivered again", %error);
            }
        }
    }
}

/// One message as Lambda delivers it (`aws_lambda_events::sqs::SqsMessage`).
fn sqs_record(message: &Value, queue_arn: &str, region: &str) -> Value {
    let text = |name: &str| message.get(name).cloned().unwrap_or(Value::Null);
    json!({
        "messageId": text("MessageId"),
        "receiptHandle": text("ReceiptHandle"),
        "body": text("Body"),
        "attributes": message.get("Attributes").cloned().unwrap_or(json!({})),
        "messageAttributes": message.get("MessageAttributes").cloned().unwrap_or(json!({})),
        "md5OfBody": text("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    })
}
