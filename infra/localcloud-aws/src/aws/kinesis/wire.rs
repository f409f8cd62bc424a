//! Kinesis's wire form: request validation and decoding, records, shards, shard iterators and pagination tokens as
//! JSON, the errors' codes.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};
use tally_domain::wire::MAX_RECORD_BYTES;

use super::state::{hash_key, shard_id, PutInput, Record, ShardCursor, ShardInfo};
use crate::aws::input::{opt_str, req_str};
use crate::aws::{epoch_seconds, AwsError, ACCOUNT_ID};

/// Stream and consumer names: `[a-zA-Z0-9_.-]{1,128}`.
pub(super) fn check_name(name: &str, member: &str) -> Result<(), AwsError> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if valid {
        return Ok(());
    }
    Err(AwsError::validation(format!(
        "1 validation error detected: Value '{name}' at '{member}' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 1 to 128"
    )))
}
pub(super) fn not_found(kind: &str, name: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("{kind} {name} under account {ACCOUNT_ID} not found."),
    )
}

pub(super) fn invalid(message: impl Into<String>) -> AwsError {
    AwsError::client("InvalidArgumentException", message)
}

pub(super) fn parse_put(input: &Value, at: &str) -> Result<PutInput, AwsError> {
    let partition_key = req_str(input, "PartitionKey")?;
    let chars = partition_key.chars().count();
    if !(1..=256).contains(&chars) {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{partition_key}' at '{at}partitionKey' failed to satisfy constraint: Member must have length between 1 and 256"
        )));
    }
    let data = STANDARD.decode(req_str(input, "Data")?).map_err(|e| {
        AwsError::client(
            "SerializationException",
            format!("Data at '{at}data' is not base64: {e}"),
        )
    })?;
    if data.len() > MAX_RECORD_BYTES {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value at '{at}data' failed to satisfy constraint: Member must have length less than or equal to 1048576 (got {} bytes)",
            data.len()
        )));
    }
    let hash = match opt_str(input, "ExplicitHashKey")? {
        Some(text) => text
            .parse::<u128>()
            .ok()
            .filter(|_| text.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                invalid(format!(
                    "ExplicitHashKey {text} must be a decimal integer from 0 to 2^128 - 1"
                ))
            })?,
        None => hash_key(partition_key),
    };
    Ok(PutInput {
        partition_key: partition_key.to_owned(),
        hash,
        data: Bytes::from(data),
    })
}

pub(super) fn record_json(record: &Record) -> Value {
    json!({
        "SequenceNumber": record.sequence_number.to_string(),
        "ApproximateArrivalTimestamp": epoch_seconds(record.arrival_ms),
        "Data": STANDARD.encode(&record.data),
        "PartitionKey": record.partition_key,
    })
}

pub(super) fn shard_json(shard: &ShardInfo) -> Value {
    let mut out = json!({
        "ShardId": shard.id,
        "HashKeyRange": {
            "StartingHashKey": shard.starting_hash_key.to_string(),
            "EndingHashKey": shard.ending_hash_key.to_string(),
        },
        "SequenceNumberRange": {"StartingSequenceNumber": shard.starting_sequence_number},
    });
    if let Some(parent) = shard.parents.first() {
        out["ParentShardId"] = json!(parent);
    }
    if let Some(adjacent) = shard.parents.get(1) {
        out["AdjacentParentShardId"] = json!(adjacent);
    }
    if let Some(ending) = &shard.ending_sequence_number {
        out["SequenceNumberRange"]["EndingSequenceNumber"] = json!(ending);
    }
    out
}

pub(super) fn encode_iterator(stream: &str, cursor: &ShardCursor, issued_ms: i64) -> String {
    STANDARD.encode(format!(
        "tally-it|{stream}|{}|{}|{issued_ms}",
        cursor.index, cursor.next
    ))
}

pub(super) fn decode_iterator(text: &str) -> Result<(String, ShardCursor, i64), AwsError> {
    let bad = || {
        invalid(format!(
            "Invalid ShardIterator: {} is not an iterator this endpoint issued; get one with GetShardIterator",
            text.chars().take(40).collect::<String>()
        ))
    };
    let decoded = STANDARD.decode(text).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let parts: Vec<&str> = decoded.split('|').collect();
    let [magic, stream, index, next, issued] = parts.as_slice() else {
        return Err(bad());
    };
    if *magic != "tally-it" {
        return Err(bad());
    }
    let index: u32 = index.parse().map_err(|_| bad())?;
    let next = next.parse().map_err(|_| bad())?;
    let issued = issued.parse().map_err(|_| bad())?;
    Ok((
        (*stream).to_owned(),
        ShardCursor {
            shard_id: shard_id(index),
            index,
            next,
        },
        issued,
    ))
}

pub(super) fn encode_token(stream: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{stream}|{offset}"))
}

pub(super) fn decode_token(token: &str) -> Result<(String, usize), AwsError> {
    let bad = || {
        invalid(format!(
            "NextToken {token} is not valid; start again without it"
        ))
    };
    let decoded = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (name, offset) = decoded.split_once('|').ok_or_else(bad)?;
    Ok((name.to_owned(), offset.parse().map_err(|_| bad())?))
}
