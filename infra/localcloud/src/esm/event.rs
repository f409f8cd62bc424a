//! The documents of event source mappings: the events a function receives, how its response is read, and
//! the on-failure record.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};

use tally_localcloud_aws::aws::kinesis::Record;

pub use tally_domain::calendar::iso_ms;

/// Where a Kinesis batch comes from.
#[derive(Debug, Clone)]
pub struct KinesisSource {
    pub stream_arn: String,
    pub shard_id: String,
    pub region: String,
    pub role_arn: String,
}

/// One Kinesis record as Lambda delivers it (`aws_lambda_events::kinesis::KinesisEventRecord`).
pub fn kinesis_record(source: &KinesisSource, record: &Record) -> Value {
    json!({
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record.partition_key,
            "sequenceNumber": record.sequence_number.to_string(),
            "data": STANDARD.encode(&record.data),
            "approximateArrivalTimestamp": record.arrival_ms as f64 / 1000.0,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": format!("{}:{}", source.shard_id, record.sequence_number),
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": source.role_arn,
        "awsRegion": source.region,
        "eventSourceARN": source.stream_arn,
    })
}

/// A Kinesis event: `{"Records": [...]}`.
pub fn kinesis_event(source: &KinesisSource, records: &[Record]) -> Value {
    json!({ "Records": records.iter().map(|r| kinesis_record(source, r)).collect::<Vec<_>>() })
}

/// A tumbling-window Kinesis event: the records plus the window, the state and the final-invoke flags.
pub fn kinesis_window_event(
    source: &KinesisSource,
    records: &[Record],
    window: (i64, i64),
    state: &Value,
    is_final: bool,
) -> Value {
    let mut event = kinesis_event(source, records);
    event["window"] = json!({ "start": iso_ms(window.0), "end": iso_ms(window.1) });
    event["state"] = state.clone();
    event["shardId"] = json!(source.shard_id);
    event["eventSourceARN"] = json!(source.stream_arn);
    event["isFinalInvokeForWindow"] = json!(is_final);
    event["isWindowTerminatedEarly"] = json!(false);
    event
}

/// What a function's answer to a batch means under `ReportBatchItemFailures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every record succeeded (no response, `null`, or an empty `batchItemFailures`).
    Success,
    /// These item identifiers failed (as returned; each is one of the batch's ids).
    Failed(Vec<String>),
    /// The response cannot be read as a batch response: the whole batch failed (AWS's rule).
    Malformed(String),
}

/// Reads a function response under `ReportBatchItemFailures`. `ids` are the batch's item identifiers
/// (sequence numbers or message ids). Per AWS: an empty list or a null list is success; an item identifier
/// that is null, empty, not a string or not in the batch makes the whole response malformed.
pub fn batch_outcome(response: &[u8], ids: &[String]) -> BatchOutcome {
    if response.iter().all(u8::is_ascii_whitespace) {
        return BatchOutcome::Success;
    }
    let value: Value = match serde_json::from_slice(response) {
        Ok(value) => value,
        Err(error) => return BatchOutcome::Malformed(format!("response is not JSON: {error}")),
    };
    let failures = match &value {
        Value::Null => return BatchOutcome::Success,
        Value::Object(map) => match map.get("batchItemFailures") {
            None | Some(Value::Null) => return BatchOutcome::Success,
            Some(Value::Array(items)) => items,
            Some(other) => {
                return BatchOutcome::Malformed(format!("batchItemFailures is not a list: {other}"))
            }
        },
        // A response that is not an object carries no failures (AWS treats it as success).
        _ => return BatchOutcome::Success,
    };
    let mut failed = Vec::with_capacity(failures.len());
    for item in failures {
        match item.get("itemIdentifier") {
            Some(Value::String(id)) if !id.is_empty() && ids.contains(id) => {
                failed.push(id.clone())
            }
            Some(Value::String(id)) if id.is_empty() => {
                return BatchOutcome::Malformed("an itemIdentifier is empty".to_owned())
            }
            Some(Value::String(id)) => {
                return BatchOutcome::Malformed(format!("itemIdentifier {id} is not in the batch"))
            }
            other => {
                return BatchOutcome::Malformed(format!(
                    "an itemIdentifier is missing or not a string: {other:?}"
                ))
            }
        }
    }
    if failed.is_empty() {
        BatchOutcome::Success
    } else {
        BatchOutcome::Failed(failed)
    }
}

/// Why records went to the on-failure destination (`requestContext.condition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    RetryAttemptsExhausted,
    RecordAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::RetryAttemptsExhausted => "RetryAttemptsExhausted",
            Condition::RecordAgeExceeded => "RecordAgeExceeded",
        }
    }
}

/// The invocation record Lambda sends to a Kinesis mapping's on-failure destination: metadata of the
/// discarded batch (shard, first and last sequence numbers, arrival times), never the records themselves;
/// the records are read back from the stream with these sequence numbers.
#[allow(clippy::too_many_arguments)]
pub fn kinesis_failure_record(
    source: &KinesisSource,
    records: &[Record],
    request_id: &str,
    function_arn: &str,
    condition: Condition,
    invoke_count: u32,
    function_error: Option<&str>,
    now_ms: i64,
) -> Value {
    let (Some(first), Some(last)) = (records.first(), records.last()) else {
        return Value::Null;
    };
    let mut response_context = json!({ "statusCode": 200, "executedVersion": "$LATEST" });
    if let Some(error) = function_error {
        response_context["functionError"] = json!(error);
    }
    json!({
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_arn,
            "condition": condition.as_str(),
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": iso_ms(now_ms),
        "KinesisBatchInfo": {
            "shardId": source.shard_id,
            "startSequenceNumber": first.sequence_number.to_string(),
            "endSequenceNumber": last.sequence_number.to_string(),
            "approximateArrivalOfFirstRecord": iso_ms(first.arrival_ms),
            "approximateArrivalOfLastRecord": iso_ms(last.arrival_ms),
            "batchSize": records.len(),
            "streamArn": source.stream_arn,
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn iso_times() {
        let check = |ms: i64, expect: &str| assert_eq!(iso_ms(ms), expect, "{ms}");
        check(0, "1970-01-01T00:00:00.000Z");
        check(1_573_691_884_835, "2019-11-14T00:38:04.835Z");
        check(951_782_400_001, "2000-02-29T00:00:00.001Z");
        check(-1, "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn batch_responses() {
        let ids: Vec<String> = ["100", "200", "300"].map(String::from).to_vec();
        let check = |response: &str, expect: BatchOutcome| {
            let got = batch_outcome(response.as_bytes(), &ids);
            match (&got, &expect) {
                (BatchOutcome::Malformed(_), BatchOutcome::Malformed(_)) => {}
                _ => assert_eq!(got, expect, "{response}"),
            }
        };
        let malformed = || BatchOutcome::Malformed(String::new());
        check("", BatchOutcome::Success);
        check("null", BatchOutcome::Success);
        check("{}", BatchOutcome::Success);
        check(r#"{"batchItemFailures":[]}"#, BatchOutcome::Success);
        check(r#"{"batchItemFailures":null}"#, BatchOutcome::Success);
        check(r#""ok""#, BatchOutcome::Success);
        check(
            r#"{"batchItemFailures":[{"itemIdentifier":"200"}]}"#,
            BatchOutcome::Failed(vec!["200".into()]),
        );
        check(
            r#"{"batchItemFailures":[{"itemIdentifier":"300"},{"itemIdentifier":"100"}]}"#,
            BatchOutcome::Failed(vec!["300".into(), "100".into()]),
        );
        check(
            r#"{"batchItemFailures":[{"itemIdentifier":""}]}"#,
            malformed(),
        );
        check(
            r#"{"batchItemFailures":[{"itemIdentifier":null}]}"#,
            malformed(),
        );
        check(
            r#"{"batchItemFailures":[{"itemIdentifier":200}]}"#,
            malformed(),
        );
        check(
            r#"{"batchItemFailures":[{"itemIdentifier":"999"}]}"#,
            malformed(),
        );
        check(r#"{"batchItemFailures":[{}]}"#, malformed());
        check(r#"{"batchItemFailures":"200"}"#, malformed());
        check(r#"{"batchItemFailures":[{"itemIdentifier":"1"#, malformed());
        check("\u{0}garbage", malformed());
    }
}
