//! Redriving a lane's on-failure queue, as pure decisions: what AWS's failure document says, which records of
//! its range the lane did not count, whether a queue message may go, and the fence that makes a replay count
//! once.
//!
//! # What the lane did with a discarded range
//!
//! An event source mapping sends a document per discarded range (`KinesisBatchInfo`: shard, first and last
//! sequence number, arrival times, batch size; never the records). Both lanes' mappings bisect a batch on a
//! function error and take partial batch responses, so a range gets there in one of these ways:
//!
//! * **The function answered with a partial batch failure**: it applied every record it could decode and
//!   reported the first one it could not; Lambda retried from that record until the retries ran out and
//!   discarded the rest of the batch. The range's *first* record was not counted; every later record that
//!   decoded was counted by the lane when it was delivered.
//! * **The function failed** (the cache unreachable, a timeout, a crash): the batch was halved until the
//!   failing part was one record, which was retried and discarded alone. Its range is that one record, not
//!   counted: the lanes' atomic step is their last fallible act.
//! * **The records grew too old** (`RecordAgeExceeded`) before a retry: the range is what was left of a batch,
//!   its first record not counted; whether later ones were depends on how the earlier attempt ended.
//!
//! So [`plan_range`] replays the range's first record; later records are counted by the lane after
//! `RetryAttemptsExhausted`, and *uncertain* otherwise (reported, the message stays for the operator). The
//! `responseContext.functionError` field does not tell the cases apart (the local cloud, like Lambda, sets it
//! for partial failures too); it is shown, not used.
//!
//! Decoding is deterministic per build: a later record that does not decode now did not decode then either,
//! and is reported. A later record that did not decode when delivered but decodes after a fix cannot be told
//! from a counted one: it is reported as counted by the lane (see `docs/redrive.md`).
//!
//! # The redrive fence
//!
//! The lane's own fence (`{<lane>:<shard>}:mark`) has moved past a discarded range, so a replay through it would
//! count nothing. A replayed record uses the same claims and the same atomic step, with a fence of its own:
//! [`redrive_key`] in the shard's hash slot, set by the step to the record's mark. Absent: not replayed yet;
//! present: replayed already, the step changes nothing. So a redrive that is run again, or two at once, or one
//! that crashed between claims and step, counts each record once.

use crate::exactly_once::{check_sequence_number, check_shard_id, preview, PositionError};
use crate::store_keys::{shard_tag, StoreLane};

/// Why an on-failure message could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DocError {
    #[error("not a JSON document ({0}); the on-failure queue holds AWS's failure records only")]
    Json(String),
    #[error("{field} is missing or not a string: not a Kinesis on-failure record (expected KinesisBatchInfo with shardId, startSequenceNumber, endSequenceNumber)")]
    Missing { field: &'static str },
    #[error(transparent)]
    Position(#[from] PositionError),
    #[error("startSequenceNumber {start} is after endSequenceNumber {end}")]
    Reversed { start: String, end: String },
}

/// An on-failure document of a Kinesis event source mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureDoc {
    pub shard_id: String,
    pub start: String,
    pub end: String,
    /// `batchSize`: records in the range, when given.
    pub batch_size: Option<u64>,
    pub stream_arn: Option<String>,
    pub first_arrival: Option<String>,
    pub last_arrival: Option<String>,
    /// `requestContext.condition`: `RetryAttemptsExhausted`, `RecordAgeExceeded`, …
    pub condition: String,
    pub invoke_count: Option<u64>,
    /// `responseContext.functionError` (e.g. `Unhandled`), for display.
    pub function_error: Option<String>,
}

impl FailureDoc {
    /// Reads a message body. Shard id and sequence numbers are validated like the lanes' positions.
    pub fn parse(body: &str) -> Result<FailureDoc, DocError> {
        let doc: serde_json::Value =
            serde_json::from_str(body).map_err(|e| DocError::Json(e.to_string()))?;
        let info = &doc["KinesisBatchInfo"];
        let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
        let required = |field: &'static str| {
            text(&info[field]).ok_or(DocError::Missing {
                field: match field {
                    "shardId" => "KinesisBatchInfo.shardId",
                    "startSequenceNumber" => "KinesisBatchInfo.startSequenceNumber",
                    _ => "KinesisBatchInfo.endSequenceNumber",
                },
            })
        };
        let (shard_id, start, end) = (
            required("shardId")?,
            required("startSequenceNumber")?,
            required("endSequenceNumber")?,
        );
        check_shard_id(&shard_id)?;
        check_sequence_number(&start)?;
        check_sequence_number(&end)?;
        if seq_lt(&end, &start) {
            return Err(DocError::Reversed { start, end });
        }
        Ok(FailureDoc {
            shard_id,
            start,
            end,
            batch_size: info["batchSize"].as_u64(),
            stream_arn: text(&info["streamArn"]),
            first_arrival: text(&info["approximateArrivalOfFirstRecord"]),
            last_arrival: text(&info["approximateArrivalOfLastRecord"]),
            condition: text(&doc["requestContext"]["condition"])
                .map_or_else(|| "unknown condition".to_owned(), |c| preview(&c)),
            invoke_count: doc["requestContext"]["approximateInvokeCount"].as_u64(),
            function_error: doc["responseContext"]["functionError"]
                .as_str()
                .map(preview),
        })
    }

    /// Whether `sequence` lies in the document's range.
    pub fn contains(&self, sequence: &str) -> bool {
        !seq_lt(sequence, &self.start) && !seq_lt(&self.end, sequence)
    }
}

/// `a < b` for canonical decimal sequence numbers of any length.
pub fn seq_lt(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

/// A record of the range as read back from the stream and decoded by the lane's decoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fetched {
    pub sequence: String,
    /// Events it holds, or why it does not decode.
    pub decoded: Result<usize, String>,
}

/// What the stream no longer gives of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// Records from the range's start up to (not including) this sequence number, or the whole range when
    /// `None`: trimmed (past the stream's retention).
    Trimmed { before: Option<String> },
    /// No iterator for the range (the shard or the sequence number is no longer there): the service's words.
    Unreadable(String),
    /// Fewer records than `batchSize` between the first and the last found.
    Short { found: usize, batch_size: u64 },
}

/// What to do with one record of a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The lane did not count it and it decodes now: replay it (`events` events).
    Replay { events: usize },
    /// Not the range's first record, and the retries ran out: the lane answered with a partial failure at the
    /// first record and counted this one when it was delivered; replaying it would count it twice.
    CountedByLane,
    /// Not the range's first record of a range discarded for another reason (`RecordAgeExceeded`): the lane
    /// may or may not have counted it; reported, never replayed (the message stays).
    Uncertain,
    /// It does not decode (the decoder's words): fix the cause, then redrive again.
    Undecodable(String),
}

/// The plan for one document: a verdict per record found, and what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangePlan {
    pub records: Vec<(String, Verdict)>,
    pub missing: Option<Missing>,
}

impl RangePlan {
    /// Records to replay.
    pub fn replays(&self) -> impl Iterator<Item = &str> {
        self.records
            .iter()
            .filter(|(_, v)| matches!(v, Verdict::Replay { .. }))
            .map(|(s, _)| s.as_str())
    }

    /// Whether the message may be deleted once the replays succeeded: every record of the range found, and each
    /// either replayed or counted by the lane. Undecodable, uncertain or missing records keep it (and the
    /// alarm) there.
    pub fn settles_message(&self) -> bool {
        self.missing.is_none()
            && self
                .records
                .iter()
                .all(|(_, v)| matches!(v, Verdict::Replay { .. } | Verdict::CountedByLane))
    }
}

/// Decides every record of `doc`'s range. `fetched` is what the stream gave from the range's start on, in
/// order (records outside the range are ignored); `Err` when no iterator could be had.
pub fn plan_range(doc: &FailureDoc, fetched: Result<&[Fetched], String>) -> RangePlan {
    let fetched = match fetched {
        Ok(f) => f,
        Err(why) => {
            return RangePlan {
                records: Vec::new(),
                missing: Some(Missing::Unreadable(why)),
            }
        }
    };
    let in_range: Vec<&Fetched> = fetched
        .iter()
        .filter(|f| doc.contains(&f.sequence))
        .collect();
    let records = in_range
        .iter()
        .map(|f| {
            let first = f.sequence == doc.start;
            let verdict = match &f.decoded {
                Err(why) => Verdict::Undecodable(why.clone()),
                Ok(events) if first => Verdict::Replay { events: *events },
                Ok(_) if doc.condition == "RetryAttemptsExhausted" => Verdict::CountedByLane,
                Ok(_) => Verdict::Uncertain,
            };
            (f.sequence.clone(), verdict)
        })
        .collect();
    let missing = match in_range.first() {
        None => Some(Missing::Trimmed { before: None }),
        Some(first) if first.sequence != doc.start => Some(Missing::Trimmed {
            before: Some(first.sequence.clone()),
        }),
        Some(_) => match doc.batch_size {
            Some(n) if (in_range.len() as u64) < n => Some(Missing::Short {
                found: in_range.len(),
                batch_size: n,
            }),
            _ => None,
        },
    };
    RangePlan { records, missing }
}

/// The redrive fence of one record: `{<lane>:<shard>}:redriven#<sequence>`, in the shard's hash slot (so the
/// atomic step can take it as its mark key). It holds the record's mark once the record was replayed.
pub fn redrive_key(lane: StoreLane, shard: &str, sequence: &str) -> String {
    format!("{}:redriven#{sequence}", shard_tag(lane, shard))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store_keys::{hash_slot, mark_key};

    fn doc(start: &str, end: &str, function_error: Option<&str>, batch: Option<u64>) -> String {
        let condition = if function_error == Some("aged") {
            "RecordAgeExceeded"
        } else {
            "RetryAttemptsExhausted"
        };
        let mut doc = serde_json::json!({
            "requestContext": {"condition": condition, "approximateInvokeCount": 4},
            "responseContext": {"statusCode": 200},
            "KinesisBatchInfo": {"shardId": "shardId-000000000000", "startSequenceNumber": start,
                                 "endSequenceNumber": end, "streamArn": "arn:aws:kinesis:us-east-1:1:stream/s"}
        });
        if let Some(e) = function_error {
            doc["responseContext"]["functionError"] = e.into();
        }
        if let Some(n) = batch {
            doc["KinesisBatchInfo"]["batchSize"] = n.into();
        }
        doc.to_string()
    }

    fn parse(body: &str) -> Result<FailureDoc, String> {
        FailureDoc::parse(body).map_err(|e| e.to_string())
    }

    #[test]
    fn documents() {
        let d = parse(&doc("100", "105", None, Some(3))).expect("partial");
        assert_eq!((d.start.as_str(), d.end.as_str()), ("100", "105"));
        assert_eq!(
            (d.function_error, d.batch_size, d.invoke_count),
            (None, Some(3), Some(4))
        );
        assert_eq!(d.condition, "RetryAttemptsExhausted");
        let d = parse(&doc("7", "7", Some("Unhandled"), None)).expect("failed");
        assert_eq!(d.function_error.as_deref(), Some("Unhandled"));
        assert!(d.contains("7") && !d.contains("6") && !d.contains("70"));
        let check = |body: &str, want: &str| {
            let got = parse(body).expect_err(want);
            assert!(got.contains(want), "{body}: `{got}` lacks `{want}`");
        };
        check("poison", "not a JSON document");
        check("{}", "KinesisBatchInfo.shardId is missing");
        check(
            &doc("x1", "2", None, None),
            "invalid kinesis sequence number \"x1\"",
        );
        check(
            &doc("9", "10", None, None).replace("shardId-000000000000", "a/b"),
            "invalid kinesis shard id",
        );
        check(
            &doc("10", "9", None, None),
            "startSequenceNumber 10 is after endSequenceNumber 9",
        );
        check(
            &serde_json::json!({"KinesisBatchInfo": {"shardId": "s", "startSequenceNumber": 1}})
                .to_string(),
            "KinesisBatchInfo.startSequenceNumber is missing",
        );
    }

    fn fetched(spec: &str) -> Vec<Fetched> {
        spec.split_whitespace()
            .map(|word| {
                let (seq, what) = word.split_once('=').unwrap_or((word, "2"));
                Fetched {
                    sequence: seq.to_owned(),
                    decoded: what.parse().map_err(|_| what.to_owned()),
                }
            })
            .collect()
    }

    /// `expect`: one word per record `seq:replay|lane|bad`, then `| missing` when something is missing.
    fn check(d: &str, records: &str, expect: &str) {
        let d = FailureDoc::parse(d).expect("doc");
        let f = fetched(records);
        let plan = plan_range(&d, Ok(&f));
        let mut got: Vec<String> = plan
            .records
            .iter()
            .map(|(s, v)| {
                let v = match v {
                    Verdict::Replay { .. } => "replay",
                    Verdict::CountedByLane => "lane",
                    Verdict::Uncertain => "uncertain",
                    Verdict::Undecodable(_) => "bad",
                };
                format!("{s}:{v}")
            })
            .collect();
        if let Some(m) = &plan.missing {
            got.push(format!("| {m:?}"));
        }
        assert_eq!(got.join(" "), expect, "{records}");
        assert_eq!(
            plan.settles_message(),
            !expect.contains("bad") && !expect.contains('|') && !expect.contains("uncertain"),
            "{records}"
        );
    }

    #[test]
    fn verdicts() {
        let partial = doc("100", "104", Some("Unhandled"), None);
        let failed = doc("100", "100", Some("Unhandled"), Some(1));
        // Retries exhausted: the first record was the lane's failure; later ones it decoded were counted then.
        check(&partial, "100 102 104 105", "100:replay 102:lane 104:lane");
        check(
            &partial,
            "100=garbage 102 103=bad",
            "100:bad 102:lane 103:bad",
        );
        // A failed invocation, bisected down to its one record.
        check(&failed, "100 101", "100:replay");
        // Aged out: later records may or may not have been counted.
        check(
            &doc("100", "104", Some("aged"), None),
            "100 102",
            "100:replay 102:uncertain",
        );
        let failed = doc("100", "104", Some("Unhandled"), None);
        // Trimmed: the start is gone, or everything.
        check(&failed, "", "| Trimmed { before: None }");
        check(&failed, "105 106", "| Trimmed { before: None }");
        check(
            &failed,
            "102 104",
            "102:lane 104:lane | Trimmed { before: Some(\"102\") }",
        );
        // Fewer records than batchSize.
        check(
            &doc("100", "104", Some("Unhandled"), Some(3)),
            "100 104",
            "100:replay 104:lane | Short { found: 2, batch_size: 3 }",
        );
        check(
            &doc("100", "104", Some("Unhandled"), Some(2)),
            "100 104",
            "100:replay 104:lane",
        );
        // Long sequence numbers compare as numbers.
        let long = "49590338271490256608559692538361571095921575989136588898";
        check(
            &doc("99", long, Some("Unhandled"), None),
            &format!("99 {long}"),
            &format!("99:replay {long}:lane"),
        );
        let d = FailureDoc::parse(&failed).expect("doc");
        let plan = plan_range(&d, Err("ResourceNotFoundException: shard gone".into()));
        assert_eq!(
            plan.missing,
            Some(Missing::Unreadable(
                "ResourceNotFoundException: shard gone".into()
            ))
        );
        assert!(!plan.settles_message());
    }

    #[test]
    fn the_redrive_fence_lives_in_the_shards_slot() {
        for lane in StoreLane::ALL {
            let key = redrive_key(lane, "shardId-000000000003", "4959");
            assert_eq!(
                hash_slot(key.as_bytes()),
                hash_slot(mark_key(lane, "shardId-000000000003").as_bytes())
            );
            assert_ne!(key, mark_key(lane, "shardId-000000000003"));
        }
        assert_eq!(
            redrive_key(StoreLane::Realtime, "s", "12"),
            "{rt:s}:redriven#12"
        );
    }
}
