//! The metrics table's campaign index, and the record positions the lanes decode batches into.
//!
//! * Campaign index rows: `pk = "campaigns"`, `sk = "{campaign_id}"`, `first_seen_ms`, `last_seen_ms` (N),
//!   written by the compactor ([`MetricsTable::touch_campaigns`]) and listed by the query API
//!   ([`MetricsTable::campaigns`]).
//! * [`Fence`] and [`ShardBatch`]: a decoded batch's events with the position of their record ([`crate::batch`]).
//! * [`Resolution`]: the query API's steps.
//!
//! The per-row counter layout (`c#{campaign}` rows per lane, resolution and ad, fenced per row) that used to
//! live here is gone: the lanes apply their batches to the counter cache ([`crate::store`]) and the compactor
//! writes the compacted minute, hour and day items ([`crate::compacted`]).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::stream::{self, StreamExt};
use tally_domain::event::Event;

use crate::Error;

/// Partition key of the campaign index rows.
pub const CAMPAIGNS_PK: &str = "campaigns";
/// Index writes in flight at once.
const CONCURRENCY: usize = 16;

/// A step of the query API's series (minute, hour, day).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    Minute,
    Hour,
    Day,
}

impl Resolution {
    /// All three; every batch writes each of them.
    pub const ALL: [Resolution; 3] = [Resolution::Minute, Resolution::Hour, Resolution::Day];

    /// `m`, `h` or `d`, as in the sort key.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "m",
            Resolution::Hour => "h",
            Resolution::Day => "d",
        }
    }

    /// The inverse of [`Resolution::as_str`].
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "m" => Some(Resolution::Minute),
            "h" => Some(Resolution::Hour),
            "d" => Some(Resolution::Day),
            _ => None,
        }
    }

    /// The bucket length in minutes.
    pub fn minutes(self) -> i64 {
        match self {
            Resolution::Minute => 1,
            Resolution::Hour => 60,
            Resolution::Day => 1440,
        }
    }

    /// The start (unix minutes) of the bucket holding `minute`.
    pub fn bucket(self, minute: i64) -> i64 {
        minute - minute.rem_euclid(self.minutes())
    }
}

/// The position of a batch in its shard: the shard id and the last sequence number of the applied records.
///
/// Sequence numbers are decimal strings of any length (AWS: up to 129 digits, about 56 in practice). They are
/// stored as three digits of length followed by the digits, so comparing the stored strings compares the
/// numbers, without padding every mark to the longest possible width (row size is write cost).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fence {
    shard_id: String,
    mark: String,
}

impl Fence {
    /// Validates both parts: the shard id is 1..=128 characters of `[A-Za-z0-9_.-]` (Kinesis' rule), the
    /// sequence number a canonical decimal number (no sign, no leading zero) of at most 999 digits.
    pub fn new(shard_id: &str, sequence_number: &str) -> Result<Fence, Error> {
        let shard_rule = if shard_id.is_empty() {
            Some("empty")
        } else if shard_id.len() > 128 {
            Some("longer than 128 characters")
        } else if !shard_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            Some("only letters, digits, '_', '.' and '-' are allowed")
        } else {
            None
        };
        if let Some(rule) = shard_rule {
            return Err(Error::InvalidShardId {
                value: shard_id.to_owned(),
                rule,
            });
        }
        let seq_rule = if sequence_number.is_empty() {
            Some("empty")
        } else if !sequence_number.bytes().all(|b| b.is_ascii_digit()) {
            Some("only decimal digits are allowed")
        } else if sequence_number.len() > 1 && sequence_number.starts_with('0') {
            Some("leading zeros are not allowed")
        } else if sequence_number.len() > 999 {
            Some("longer than 999 digits")
        } else {
            None
        };
        if let Some(rule) = seq_rule {
            return Err(Error::InvalidSequenceNumber {
                value: sequence_number.to_owned(),
                rule,
            });
        }
        Ok(Fence {
            shard_id: shard_id.to_owned(),
            mark: format!("{:03}{sequence_number}", sequence_number.len()),
        })
    }

    /// The shard this fence belongs to.
    pub fn shard_id(&self) -> &str {
        &self.shard_id
    }

    /// The stored form of the sequence number (length-prefixed, ordered as strings).
    pub fn mark(&self) -> &str {
        &self.mark
    }

    /// The sequence number as Kinesis wrote it.
    pub fn sequence_number(&self) -> &str {
        &self.mark[3..]
    }

    /// The name of this shard's fencing attribute on a counter row.
    pub fn attribute(&self) -> String {
        format!("hw_{}", self.shard_id)
    }
}

/// The first and last record of a batch: the row marks below `first` have seen none of it, those at or past
/// `last` all of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FenceRange {
    pub first: Fence,
    pub last: Fence,
}

/// The events of one batch of one shard, each with the position of its record: what [`MetricsTable::apply_batch`]
/// needs to count every record exactly once per row, whatever an earlier delivery already applied.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ShardBatch {
    /// Record positions, strictly increasing, all of one shard.
    records: Vec<Fence>,
    /// Each event with the index of its record.
    events: Vec<(usize, Event)>,
}

impl ShardBatch {
    pub fn new() -> ShardBatch {
        ShardBatch::default()
    }

    /// Appends a record's events. The record must follow the previous one in the same shard.
    pub fn push_record(&mut self, position: Fence, events: Vec<Event>) -> Result<(), Error> {
        if let Some(last) = self.records.last() {
            if last.shard_id() != position.shard_id() {
                return Err(Error::MalformedBatch {
                    index: self.records.len(),
                    rule: format!(
                        "record of shard {} in a batch of shard {}",
                        position.shard_id(),
                        last.shard_id()
                    ),
                });
            }
            if last.mark() >= position.mark() {
                return Err(Error::MalformedBatch {
                    index: self.records.len(),
                    rule: "sequence numbers are not increasing".to_owned(),
                });
            }
        }
        let index = self.records.len();
        self.records.push(position);
        self.events.extend(events.into_iter().map(|e| (index, e)));
        Ok(())
    }

    /// The first and last record; `None` for an empty batch.
    pub fn range(&self) -> Option<FenceRange> {
        Some(FenceRange {
            first: self.records.first()?.clone(),
            last: self.records.last()?.clone(),
        })
    }

    /// Records in the batch.
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// The events, in record order.
    pub fn events(&self) -> impl Iterator<Item = &Event> {
        self.events.iter().map(|(_, e)| e)
    }

    /// Events in the batch.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The events with the position of their record, in record order.
    pub fn positioned(&self) -> impl Iterator<Item = (&Fence, &Event)> {
        self.events
            .iter()
            .map(|(record, e)| (&self.records[*record], e))
    }

    /// The same records with only the events `keep` accepts, asked in order (the settled lane drops invalid
    /// traffic; the record positions stay, so the fences are the same).
    pub fn filter(&self, mut keep: impl FnMut(&Event) -> bool) -> ShardBatch {
        ShardBatch {
            records: self.records.clone(),
            events: self
                .events
                .iter()
                .filter(|(_, e)| keep(e))
                .cloned()
                .collect(),
        }
    }
}

/// One row of the campaign index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignEntry {
    pub campaign_id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// The metrics table's campaign index.
#[derive(Clone, Debug)]
pub struct MetricsTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl MetricsTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> MetricsTable {
        MetricsTable {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Records that campaigns were seen: `seen` maps a campaign id to the (first, last) receive time of its
    /// events in this batch. `first_seen_ms` is set once; `last_seen_ms` only moves forward.
    pub async fn touch_campaigns(&self, seen: &BTreeMap<String, (i64, i64)>) -> Result<(), Error> {
        let results: Vec<Result<(), Error>> = stream::iter(seen)
            .map(|(campaign_id, &(first, last))| async move {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", AttributeValue::S(CAMPAIGNS_PK.to_owned()))
                    .key("sk", AttributeValue::S(campaign_id.clone()))
                    .update_expression("SET first_seen_ms = if_not_exists(first_seen_ms, :first), last_seen_ms = :last")
                    .condition_expression("attribute_not_exists(last_seen_ms) OR last_seen_ms < :last")
                    .expression_attribute_values(":first", AttributeValue::N(first.to_string()))
                    .expression_attribute_values(":last", AttributeValue::N(last.to_string()))
                    .send()
                    .await;
                match result {
                    Ok(_) => Ok(()),
                    // Already seen later than this batch: nothing to move.
                    Err(err) if err.as_service_error().is_some_and(|e| e.is_conditional_check_failed_exception()) => {
                        Ok(())
                    }
                    Err(err) => Err(self.dynamo_error("UpdateItem", err)),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Every campaign ever seen, ordered by id.
    pub async fn campaigns(&self) -> Result<Vec<CampaignEntry>, Error> {
        let items = self.query_all(CAMPAIGNS_PK, None).await?;
        items
            .iter()
            .map(|item| {
                let sk = string_attr(item, "sk").unwrap_or_default();
                let field = |name: &str| {
                    item.get(name)
                        .ok_or_else(|| format!("{name}: missing"))
                        .and_then(|v| parse_number(v).map_err(|rule| format!("{name}: {rule}")))
                        .and_then(|n| i64::try_from(n).map_err(|_| format!("{name}: out of range")))
                };
                let entry = field("first_seen_ms").and_then(|first_seen_ms| {
                    Ok(CampaignEntry {
                        campaign_id: sk.clone(),
                        first_seen_ms,
                        last_seen_ms: field("last_seen_ms")?,
                    })
                });
                entry.map_err(|rule| self.corrupt(CAMPAIGNS_PK, &sk, rule))
            })
            .collect()
    }

    async fn query_all(
        &self,
        pk: &str,
        between: Option<(String, String)>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, Error> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .set_exclusive_start_key(start.take());
            request = match &between {
                None => request.key_condition_expression("pk = :pk"),
                Some((lo, hi)) => request
                    .key_condition_expression("pk = :pk AND sk BETWEEN :lo AND :hi")
                    .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                    .expression_attribute_values(":hi", AttributeValue::S(hi.clone())),
            };
            let output = request
                .send()
                .await
                .map_err(|err| self.dynamo_error("Query", err))?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    fn dynamo_error<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        dynamo_error(&self.table, op, err)
    }

    fn corrupt(&self, pk: &str, sk: &str, rule: String) -> Error {
        corrupt_row(&self.table, pk, sk, rule)
    }
}

/// A failed DynamoDB call on `table` as [`Error::Dynamo`] (retryable when throttled, timed out or a 5xx).
pub(crate) fn dynamo_error<E>(
    table: &str,
    op: &'static str,
    err: SdkError<E, HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    Error::Dynamo {
        op,
        table: table.to_owned(),
        retryable: is_retryable(&err),
        message: sdk_message(&err),
    }
}

/// An item of `table` that does not follow the layout.
pub(crate) fn corrupt_row(table: &str, pk: &str, sk: &str, rule: String) -> Error {
    Error::CorruptRow {
        table: table.to_owned(),
        pk: pk.to_owned(),
        sk: sk.to_owned(),
        rule,
    }
}

/// A readable one-line description of an SDK error: the service's code and message when there is one.
pub(crate) fn sdk_message<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(service) => format!(
            "{}: {}",
            service.code().unwrap_or("unknown error"),
            service.message().unwrap_or("no message")
        ),
        None => format!("{}", DisplayErrorContext(err)),
    }
}

/// Throttling, server errors, timeouts and connection failures are worth retrying; the rest is not.
pub(crate) fn is_retryable<E>(err: &SdkError<E, HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or_default();
            code.contains("Throttl")
                || code.contains("ThroughputExceeded")
                || code.contains("LimitExceeded")
                || code.contains("InternalServer")
                || code.contains("InternalFailure")
                || code.contains("ServiceUnavailable")
                || service.raw().status().is_server_error()
        }
        _ => false,
    }
}

fn parse_number(value: &AttributeValue) -> Result<u64, String> {
    match value {
        AttributeValue::N(n) => n
            .parse()
            .map_err(|_| format!("{n:?} is not a whole number")),
        _ => Err("not a number".to_owned()),
    }
}

fn string_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_fence(shard: &str, seq: &str, expect: Result<&str, &str>) {
        let got = Fence::new(shard, seq)
            .map(|f| f.mark().to_owned())
            .map_err(|e| e.to_string());
        assert_eq!(
            got.as_deref().map_err(String::as_str),
            expect,
            "{shard} {seq}"
        );
    }

    #[test]
    fn fences() {
        check_fence("shardId-000000000000", "0", Ok("0010"));
        check_fence("shardId-000000000000", "7", Ok("0017"));
        check_fence(
            "shardId-000000000000",
            "49590338271490256608559692538361571095921575989136588898",
            Ok("05649590338271490256608559692538361571095921575989136588898"),
        );
        check_fence("s", "12", Ok("00212"));
        check_fence("", "1", Err("invalid kinesis shard id \"\": empty"));
        check_fence("shard#1", "1", Err("invalid kinesis shard id \"shard#1\": only letters, digits, '_', '.' and '-' are allowed"));
        check_fence(
            &"s".repeat(129),
            "1",
            Err(&format!(
                "invalid kinesis shard id \"{}\": longer than 128 characters",
                "s".repeat(129)
            )),
        );
        check_fence("s", "", Err("invalid kinesis sequence number \"\": empty"));
        check_fence(
            "s",
            "-1",
            Err("invalid kinesis sequence number \"-1\": only decimal digits are allowed"),
        );
        check_fence(
            "s",
            "1e5",
            Err("invalid kinesis sequence number \"1e5\": only decimal digits are allowed"),
        );
        check_fence(
            "s",
            " 1",
            Err("invalid kinesis sequence number \" 1\": only decimal digits are allowed"),
        );
        check_fence(
            "s",
            "007",
            Err("invalid kinesis sequence number \"007\": leading zeros are not allowed"),
        );
        check_fence(
            "s",
            &"9".repeat(1000),
            Err(&format!(
                "invalid kinesis sequence number \"{}\": longer than 999 digits",
                "9".repeat(1000)
            )),
        );
    }

    #[test]
    fn fence_marks_order_like_numbers() {
        let seqs = [
            "0",
            "1",
            "2",
            "9",
            "10",
            "11",
            "99",
            "100",
            "101",
            "999",
            "1000",
            "49590338271490256608559692538361571095921575989136588898",
            "49590338271490256608559692538361571095921575989136588899",
        ];
        for (i, a) in seqs.iter().enumerate() {
            for (j, b) in seqs.iter().enumerate() {
                let (fa, fb) = (
                    Fence::new("s", a).unwrap_or_else(|e| panic!("{e}")),
                    Fence::new("s", b).unwrap_or_else(|e| panic!("{e}")),
                );
                assert_eq!(fa.mark().cmp(fb.mark()), i.cmp(&j), "{a} vs {b}");
                assert_eq!(fa.sequence_number(), *a);
            }
        }
    }
}
