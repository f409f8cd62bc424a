//! The Kinesis batch plumbing shared by `realtime` and `deferred`: decode the records of one invocation into
//! events, find the fence of what may be applied, and build the partial-batch response.
//!
//! # Every decodable record is applied; undecodable ones are reported
//!
//! When record *k* cannot be decoded, every other record of the invocation is applied and *k* (the lowest
//! undecodable record) is reported in `batchItemFailures`. Lambda checkpoints just before *k* and delivers *k*
//! and everything after it again; when the retries run out, that whole remainder goes to the on-failure
//! destination (as metadata, without the records). Applying only the records before *k* would therefore lose
//! every valid record after a poison record in the same batch. Applying them is exactly-once safe: decoding is
//! deterministic, so *k* never contributes events, and the fencing invariant becomes *a row's mark for a shard
//! covers exactly the decodable records of that shard up to the mark*; the redelivery of *k* and what follows is
//! at or below every row mark the first delivery set, so it adds nothing (see `crate::fence`). What the
//! redelivery can still do is archive the records after *k* a second time under another object name (the
//! deferred lane); every archived line carries its event id, shard and sequence number for de-duplication.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use tally_domain::exactly_once::{self, Position};
use tally_domain::wire;

use crate::emf;
use crate::fence::{Fence, ShardBatch};
use crate::Error;

/// A decoded invocation.
#[derive(Debug, Default)]
pub struct DecodedBatch {
    /// The decodable records with their events.
    pub batch: ShardBatch,
    /// The same records as the counter store takes them: positions, events and the claims they need.
    pub store: exactly_once::Batch,
    /// Records in the invocation.
    pub records: usize,
    /// Records that decoded (and are applied).
    pub applied_records: usize,
    /// The first (lowest) record that could not be decoded: its sequence number and why.
    pub failure: Option<(String, String)>,
}

impl DecodedBatch {
    /// The response for Lambda: the first undecodable record, or an empty list (all processed).
    pub fn response(&self) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        if let Some((sequence_number, _)) = &self.failure {
            let mut failure = KinesisBatchItemFailure::default();
            failure.item_identifier = Some(sequence_number.clone());
            response.batch_item_failures.push(failure);
        }
        response
    }
}

/// A lane's embedded-metric window, shared by the invocations of one instance (`tally_domain::emf::Window`):
/// one line per [`emf::WINDOW_BATCHES`] batches or [`emf::WINDOW_MS`], not one per batch.
#[derive(Debug)]
pub struct MetricsWindow(std::sync::Mutex<emf::Window>);

impl MetricsWindow {
    /// An empty window of `function` (`realtime`, `deferred`).
    pub fn new(function: &'static str) -> MetricsWindow {
        MetricsWindow(std::sync::Mutex::new(emf::Window::new(function)))
    }

    /// Adds a batch; the line to write when the window is due.
    pub fn push(&self, batch: &emf::BatchMetrics) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(batch)
    }
}

/// The end of an invocation at the Lambda edge: on success the batch's metrics join the instance's window
/// (whose line goes to stdout when due) and the response goes to Lambda; an error is logged and returned, so
/// that Lambda retries the batch (bisecting it) — safe, because applying is idempotent per record.
pub fn respond<E>(
    result: Result<(KinesisEventResponse, emf::BatchMetrics), E>,
    window: &MetricsWindow,
) -> Result<KinesisEventResponse, Box<dyn std::error::Error + Send + Sync>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok((response, metrics)) => {
            if let Some(line) = window.push(&metrics) {
                println!("{line}");
            }
            Ok(response)
        }
        Err(error) => {
            tracing::error!(message = "batch failed; lambda will retry it", %error);
            Err(Box::new(error))
        }
    }
}

/// Wall-clock unix milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Decodes `event`'s records in order; records that do not decode are skipped and the first of them kept as the
/// failure to report.
///
/// Errors (the whole invocation is malformed, Lambda never sends such a batch): a record without a usable
/// `eventID` (`shardId-…:sequence`), records of different shards, or sequence numbers that are not canonical
/// decimal numbers or not increasing.
pub fn decode(event: &KinesisEvent) -> Result<DecodedBatch, Error> {
    let mut batch = DecodedBatch {
        records: event.records.len(),
        ..DecodedBatch::default()
    };
    let mut structure = ShardBatch::new();
    for (index, record) in event.records.iter().enumerate() {
        let fence = record_fence(index, record)?;
        // The structure of the whole invocation is checked, also past a decoding failure.
        structure
            .push_record(fence.clone(), Vec::new())
            .map_err(|error| match error {
                Error::MalformedBatch { rule, .. } => Error::MalformedBatch { index, rule },
                other => other,
            })?;
        match wire::unpack(&record.kinesis.data.0) {
            Ok(events) => {
                let position =
                    Position::new(fence.shard_id(), fence.sequence_number()).map_err(|error| {
                        Error::MalformedBatch {
                            index,
                            rule: error.to_string(),
                        }
                    })?;
                batch
                    .store
                    .push_record(position, events.clone())
                    .map_err(|error| Error::MalformedBatch {
                        index,
                        rule: error.to_string(),
                    })?;
                batch.batch.push_record(fence, events)?;
                batch.applied_records += 1;
            }
            Err(error) => {
                tracing::warn!(
                    message = "undecodable record; applying the others and reporting it",
                    sequence_number = %record.kinesis.sequence_number,
                    %error
                );
                if batch.failure.is_none() {
                    batch.failure =
                        Some((record.kinesis.sequence_number.clone(), error.to_string()));
                }
            }
        }
    }
    Ok(batch)
}

/// The shard (from `eventID`, `shardId-…:sequence`) and sequence number of a record.
fn record_fence(index: usize, record: &KinesisEventRecord) -> Result<Fence, Error> {
    let malformed = |rule: String| Error::MalformedBatch { index, rule };
    let event_id = record
        .event_id
        .as_deref()
        .ok_or_else(|| malformed("eventID is missing".to_owned()))?;
    let (shard, sequence) = event_id.split_once(':').ok_or_else(|| {
        malformed(format!(
            "eventID {event_id:?} is not shardId:sequenceNumber"
        ))
    })?;
    if sequence != record.kinesis.sequence_number {
        return Err(malformed(format!(
            "eventID {event_id:?} does not end with the record's sequence number {:?}",
            record.kinesis.sequence_number
        )));
    }
    Fence::new(shard, sequence).map_err(|error| malformed(error.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_domain::event::{DeviceClass, Event, EventKind};

    fn event(i: usize) -> Event {
        Event {
            id: format!("e{i}"),
            kind: EventKind::Click,
            campaign_id: "c".into(),
            ad_id: "a".into(),
            placement_id: None,
            user_id: None,
            client_ts_ms: None,
            received_ms: 1_700_000_000_000,
            cost_micros: 0,
            value_micros: 0,
            country: None,
            device: DeviceClass::Unknown,
            trust: tally_domain::event::Trust::Authenticated,
            user_agent: None,
        }
    }

    /// A batch from a compact spec: one word per record, `ok` (two events), `bad` (not our wire format),
    /// `empty` (zero bytes); `@shard` and `#seq` override the defaults (shard 0, sequence 100 + index).
    fn batch(spec: &str) -> KinesisEvent {
        let mut out = KinesisEvent::default();
        for (i, word) in spec.split_whitespace().enumerate() {
            let kind = word.split(['@', '#']).next().unwrap_or_default();
            let shard = word
                .split_once('@')
                .map_or("shardId-000000000000", |(_, s)| {
                    s.split('#').next().unwrap_or("")
                });
            let seq = word
                .split_once('#')
                .map_or((100 + i).to_string(), |(_, s)| s.to_owned());
            let data = match kind {
                "ok" => wire::encode_record(&[event(2 * i), event(2 * i + 1)]),
                "empty" => Vec::new(),
                _ => b"\x00garbage".to_vec(),
            };
            let mut record = KinesisEventRecord::default();
            record.event_id = Some(format!("{shard}:{seq}"));
            record.kinesis.sequence_number = seq;
            record.kinesis.partition_key = "pk".into();
            *record.kinesis.data = data;
            out.records.push(record);
        }
        out
    }

    /// Expect: (events, last applied seq, applied records, failed seq) or the error message.
    /// (events, last applied sequence number, applied records, failed sequence number).
    type Expect<'a> = (usize, Option<&'a str>, usize, Option<&'a str>);

    fn check(spec: &str, expect: Result<Expect<'_>, &str>) {
        let got = decode(&batch(spec)).map(|b| {
            (
                b.batch.len(),
                b.batch.range().map(|r| r.last.sequence_number().to_owned()),
                b.applied_records,
                b.failure.as_ref().map(|(s, _)| s.clone()),
            )
        });
        let got = got
            .as_ref()
            .map(|(n, f, a, x)| (*n, f.as_deref(), *a, x.as_deref()))
            .map_err(ToString::to_string);
        assert_eq!(got, expect.map_err(str::to_owned), "{spec}");
    }

    #[test]
    fn poison_records_are_skipped_and_the_first_reported() {
        check("", Ok((0, None, 0, None)));
        check("ok", Ok((2, Some("100"), 1, None)));
        check("ok ok ok", Ok((6, Some("102"), 3, None)));
        check("ok ok bad ok", Ok((6, Some("103"), 3, Some("102"))));
        check("bad ok ok", Ok((4, Some("102"), 2, Some("100"))));
        check("ok bad bad", Ok((2, Some("100"), 1, Some("101"))));
        check("ok bad ok bad ok", Ok((6, Some("104"), 3, Some("101"))));
        check("ok empty ok", Ok((4, Some("102"), 2, Some("101"))));
        check("bad", Ok((0, None, 0, Some("100"))));
        check(
            "ok#5 ok#49590338271490256608559692538361571095921575989136588898",
            Ok((
                4,
                Some("49590338271490256608559692538361571095921575989136588898"),
                2,
                None,
            )),
        );
    }

    #[test]
    fn malformed_batches() {
        check("ok ok@shardId-000000000001", Err("malformed kinesis batch at record 1: record of shard shardId-000000000001 in a batch of shard shardId-000000000000"));
        check(
            "ok#7 ok#7",
            Err("malformed kinesis batch at record 1: sequence numbers are not increasing"),
        );
        check(
            "ok#9 ok#10 ok#8",
            Err("malformed kinesis batch at record 2: sequence numbers are not increasing"),
        );
        check("ok#x1", Err("malformed kinesis batch at record 0: invalid kinesis sequence number \"x1\": only decimal digits are allowed"));
        check("ok@bad/shard", Err("malformed kinesis batch at record 0: invalid kinesis shard id \"bad/shard\": only letters, digits, '_', '.' and '-' are allowed"));
        // Structure is checked past a decoding failure too.
        check("bad ok@other", Err("malformed kinesis batch at record 1: record of shard other in a batch of shard shardId-000000000000"));
        let mut no_id = batch("ok");
        no_id.records[0].event_id = None;
        assert_eq!(
            decode(&no_id).map(|_| ()).map_err(|e| e.to_string()),
            Err("malformed kinesis batch at record 0: eventID is missing".to_owned())
        );
        let mut mismatch = batch("ok");
        mismatch.records[0].event_id = Some("shardId-000000000000:99".into());
        assert_eq!(decode(&mismatch).map(|_| ()).map_err(|e| e.to_string()), Err("malformed kinesis batch at record 0: eventID \"shardId-000000000000:99\" does not end with the record's sequence number \"100\"".to_owned()));
        let mut colonless = batch("ok");
        colonless.records[0].event_id = Some("shardId-000000000000".into());
        assert_eq!(decode(&colonless).map(|_| ()).map_err(|e| e.to_string()), Err("malformed kinesis batch at record 0: eventID \"shardId-000000000000\" is not shardId:sequenceNumber".to_owned()));
    }

    #[test]
    fn responses() {
        let ok = decode(&batch("ok ok"))
            .map(|b| b.response())
            .map(|r| serde_json::to_value(r).ok());
        assert_eq!(
            ok.ok().flatten(),
            Some(serde_json::json!({"batchItemFailures": []}))
        );
        let failed = decode(&batch("ok bad ok"))
            .map(|b| b.response())
            .map(|r| serde_json::to_value(r).ok());
        assert_eq!(
            failed.ok().flatten(),
            Some(serde_json::json!({"batchItemFailures": [{"itemIdentifier": "101"}]}))
        );
    }
}
