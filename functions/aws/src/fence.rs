//! The record positions the lanes decode batches into: [`Fence`] (a record's shard and sequence number, with
//! a mark that orders like the number) and [`ShardBatch`] (a decoded batch's events with the position of their
//! record, [`crate::batch`]).

use tally_domain::event::Event;

use crate::Error;

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

/// The events of one batch of one shard, each with the position of its record: what a lane
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
