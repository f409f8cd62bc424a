//! SQS's wire form: the query-protocol error codes and the error response, attribute and message validation, MD5s,
//! messages as JSON.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::HeaderValue;
use hyper::Response;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};

use super::state::Message;
use super::MAX_MESSAGE_BYTES;
use crate::aws::{AwsError, ACCOUNT_ID};

/// Query-protocol error codes and the JSON `__type` names AWS pairs them with.
pub(super) const ERROR_TYPES: &[(&str, &str)] = &[
    (
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
    ),
    ("QueueAlreadyExists", "QueueNameExists"),
    ("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid"),
    (
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "BatchEntryIdsNotDistinct",
    ),
    (
        "AWS.SimpleQueueService.EmptyBatchRequest",
        "EmptyBatchRequest",
    ),
    (
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "TooManyEntriesInBatchRequest",
    ),
    (
        "AWS.SimpleQueueService.BatchRequestTooLong",
        "BatchRequestTooLong",
    ),
    (
        "AWS.SimpleQueueService.InvalidBatchEntryId",
        "InvalidBatchEntryId",
    ),
    (
        "AWS.SimpleQueueService.MessageNotInflight",
        "MessageNotInflight",
    ),
    (
        "AWS.SimpleQueueService.UnsupportedOperation",
        "UnsupportedOperation",
    ),
    ("InvalidAttributeName", "InvalidAttributeName"),
    ("InvalidAttributeValue", "InvalidAttributeValue"),
    ("InvalidMessageContents", "InvalidMessageContents"),
    ("InvalidParameterValue", "InvalidParameterValueException"),
    ("MissingParameter", "MissingRequiredParameterException"),
];

pub(super) fn error(code: &str, message: impl Into<String>) -> AwsError {
    AwsError::client(code, message)
}

/// AWS's JSON error for SQS: `__type` with the JSON name, `x-amzn-query-error` with the query code.
pub(crate) fn error_response(error: &AwsError) -> Response<Full<Bytes>> {
    let name = ERROR_TYPES
        .iter()
        .find(|(code, _)| *code == error.code)
        .map_or(error.code.as_str(), |(_, name)| name);
    let shaped = AwsError {
        code: format!("com.amazonaws.sqs#{name}"),
        ..error.clone()
    };
    let mut response = crate::aws::json_error("application/x-amz-json-1.0", &shaped);
    let fault = if error.status >= 500 {
        "Receiver"
    } else {
        "Sender"
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{};{fault}", error.code)) {
        response.headers_mut().insert("x-amzn-query-error", value);
    }
    response
}

pub(super) fn no_queue() -> AwsError {
    error(
        "AWS.SimpleQueueService.NonExistentQueue",
        "The specified queue does not exist.",
    )
}

/// Validates queue attributes as CreateQueue / SetQueueAttributes take them.
pub(super) fn check_attributes(
    attributes: &Map<String, Value>,
) -> Result<BTreeMap<String, String>, AwsError> {
    let mut out = BTreeMap::new();
    for (name, value) in attributes {
        let text = value.as_str().ok_or_else(|| {
            error(
                "InvalidAttributeValue",
                format!("Invalid value for the parameter {name}: must be a string"),
            )
        })?;
        let range = |low: i64, high: i64| -> Result<(), AwsError> {
            match text.parse::<i64>() {
                Ok(n) if (low..=high).contains(&n) => Ok(()),
                _ => Err(error(
                    "InvalidAttributeValue",
                    format!("Invalid value for the parameter {name}: {text} is not an integer from {low} to {high}"),
                )),
            }
        };
        match name.as_str() {
            "VisibilityTimeout" => range(0, 43_200)?,
            "DelaySeconds" => range(0, 900)?,
            "MessageRetentionPeriod" => range(60, 1_209_600)?,
            "MaximumMessageSize" => range(1024, 262_144)?,
            "ReceiveMessageWaitTimeSeconds" => range(0, 20)?,
            "RedrivePolicy" => {
                redrive(text)?;
            }
            "Policy"
            | "KmsMasterKeyId"
            | "KmsDataKeyReusePeriodSeconds"
            | "SqsManagedSseEnabled"
            | "RedriveAllowPolicy" => {}
            "FifoQueue"
            | "ContentBasedDeduplication"
            | "DeduplicationScope"
            | "FifoThroughputLimit" => {
                return Err(error(
                    "InvalidAttributeName",
                    format!("{name}: FIFO queues are not supported by the tally local cloud"),
                ))
            }
            other => {
                return Err(error(
                    "InvalidAttributeName",
                    format!("Unknown Attribute {other}."),
                ))
            }
        }
        out.insert(name.clone(), text.to_owned());
    }
    Ok(out)
}

/// The dead-letter queue name and maxReceiveCount of a RedrivePolicy.
pub(super) fn redrive(text: &str) -> Result<(String, u32), AwsError> {
    let bad = |why: &str| {
        error(
            "InvalidAttributeValue",
            format!("Value {text} for parameter RedrivePolicy is invalid. Reason: {why}"),
        )
    };
    let policy: Value =
        serde_json::from_str(text).map_err(|_| bad("Redrive policy is not a valid JSON map."))?;
    let arn = policy
        .get("deadLetterTargetArn")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad("Redrive policy does not contain mandatory attribute: deadLetterTargetArn.")
        })?;
    let count = match policy.get("maxReceiveCount") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .filter(|n| (1..=1000).contains(n))
    .ok_or_else(|| bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000."))?;
    let name = arn
        .rsplit(':')
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| bad("Invalid deadLetterTargetArn."))?;
    Ok((name.to_owned(), count as u32))
}

pub(super) fn queue_name(url_or_name: &str) -> &str {
    url_or_name
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(url_or_name)
}

pub(super) fn check_body(body: &str) -> Result<(), AwsError> {
    if body.is_empty() {
        return Err(error(
            "MissingParameter",
            "The request must contain the parameter MessageBody.",
        ));
    }
    if body.len() > MAX_MESSAGE_BYTES {
        return Err(error(
            "InvalidParameterValue",
            format!("One or more parameters are invalid. Reason: Message must be shorter than {MAX_MESSAGE_BYTES} bytes."),
        ));
    }
    let allowed = |c: char| matches!(c, '\u{9}' | '\u{a}' | '\u{d}' | '\u{20}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}');
    if let Some(c) = body.chars().find(|c| !allowed(*c)) {
        return Err(error(
            "InvalidMessageContents",
            format!("Invalid characters found. Invalid unicode character value U+{:04X} in the message body.", c as u32),
        ));
    }
    Ok(())
}

pub(super) fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

/// MD5 of message attributes as SQS computes it: sorted names, length-prefixed fields, a transport byte.
pub(super) fn md5_of_attributes(attributes: &Map<String, Value>) -> Option<String> {
    if attributes.is_empty() {
        return None;
    }
    let mut buf = Vec::new();
    let field = |buf: &mut Vec<u8>, bytes: &[u8]| {
        buf.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        buf.extend_from_slice(bytes);
    };
    for (name, value) in attributes {
        let data_type = value
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        field(&mut buf, name.as_bytes());
        field(&mut buf, data_type.as_bytes());
        if let Some(binary) = value.get("BinaryValue").and_then(Value::as_str) {
            buf.push(2);
            let decoded = crate::aws::dynamodb::decode_b64(binary).unwrap_or_default();
            field(&mut buf, &decoded);
        } else {
            buf.push(1);
            field(
                &mut buf,
                value
                    .get("StringValue")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .as_bytes(),
            );
        }
    }
    Some(md5_hex(&buf))
}

pub(super) fn check_message_attributes(attributes: &Map<String, Value>) -> Result<(), AwsError> {
    if attributes.len() > 10 {
        return Err(error(
            "InvalidParameterValue",
            "Number of message attributes cannot exceed 10.",
        ));
    }
    for (name, value) in attributes {
        let t = value
            .get("DataType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let base = t.split('.').next().unwrap_or_default();
        let ok = match base {
            "String" | "Number" => value.get("StringValue").and_then(Value::as_str).is_some(),
            "Binary" => value.get("BinaryValue").and_then(Value::as_str).is_some(),
            _ => false,
        };
        if !ok || name.is_empty() {
            return Err(error(
                "InvalidParameterValue",
                format!("The message attribute '{name}' must have a DataType of String, Number or Binary and a matching value."),
            ));
        }
    }
    Ok(())
}

pub(super) fn message_json(message: &Message, input: &Value) -> Value {
    let mut out = json!({
        "MessageId": message.id,
        "ReceiptHandle": message.receipt,
        "MD5OfBody": md5_hex(message.body.as_bytes()),
        "Body": message.body,
    });
    let names: Vec<&str> = ["AttributeNames", "MessageSystemAttributeNames"]
        .iter()
        .filter_map(|k| input.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let system = [
        ("SenderId", ACCOUNT_ID.to_owned()),
        ("SentTimestamp", message.sent_ms.to_string()),
        ("ApproximateReceiveCount", message.receive_count.to_string()),
        (
            "ApproximateFirstReceiveTimestamp",
            message.first_receive_ms.to_string(),
        ),
    ];
    let attributes: Map<String, Value> = system
        .into_iter()
        .filter(|(k, _)| names.iter().any(|n| *n == "All" || n == k))
        .map(|(k, v)| (k.to_owned(), json!(v)))
        .collect();
    if !attributes.is_empty() {
        out["Attributes"] = Value::Object(attributes);
    }
    let wanted: Vec<&str> = input
        .get("MessageAttributeNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let selected: Map<String, Value> = message
        .attributes
        .iter()
        .filter(|(k, _)| {
            wanted.iter().any(|w| {
                *w == "All"
                    || *w == ".*"
                    || w == k
                    || (w.ends_with(".*") && k.starts_with(&w[..w.len() - 2]))
            })
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(md5) = md5_of_attributes(&selected) {
        out["MD5OfMessageAttributes"] = json!(md5);
        out["MessageAttributes"] = Value::Object(selected);
    }
    out
}
