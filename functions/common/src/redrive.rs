//! Redrive's I/O: the records of a discarded range read back from the stream, and one record replayed through a
//! lane's exactly-once path. The decisions are `tally_domain::redrive`'s (which records, when a message may go)
//! and `tally_domain::exactly_once`'s (which occurrences count).
//!
//! [`CounterStore::replay`] is [`CounterStore::process`] for one record with the redrive fence in place of the
//! shard's mark: the same claims (`<shard>:<seq>` of the record, so an id the record already claimed reads
//! `Ours` and an id another record holds is a duplicate), the same plan, the same atomic script; its first key
//! is [`redrive_key`] instead of the shard's mark, expected empty. The script sets it to the record's mark
//! together with the increments, so a second replay conflicts and changes nothing.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardIteratorType;
use tally_domain::event::Event;
use tally_domain::exactly_once::{plan_apply, ApplyStats, Batch, Position};
use tally_domain::redrive::{redrive_key, seq_lt};
use tally_domain::store_keys::StoreLane;
use tally_domain::store_model::ScriptReply;

use crate::store::{reply_error, CounterStore};
use crate::Error;

/// What a replay of one record did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replayed {
    /// Applied now: `stats.counted` events counted (the others: duplicates, repeats, filtered).
    Applied(ApplyStats),
    /// The record's redrive fence was set already: replayed before, nothing counted now.
    AlreadyReplayed,
}

/// [`CounterStore::replay`]'s answer: what the step did, and the claims' replies (in `Batch::claims` order of
/// the record alone) for `exactly_once::owned_occurrences`, which a lane with fencing of its own (the deferred
/// lane's table rows) asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    pub outcome: Replayed,
    pub replies: Vec<Option<String>>,
}

impl CounterStore {
    /// Replays one record (its position and decoded events) into `lane` through the claims and the atomic
    /// step, fenced by the record's redrive key. `keep` is the lane's filter, as in [`CounterStore::process`].
    pub async fn replay(
        &self,
        lane: StoreLane,
        position: &Position,
        events: Vec<Event>,
        keep: impl FnMut(&Event) -> bool,
    ) -> Result<Replay, Error> {
        let mut batch = Batch::new();
        batch
            .push_record(position.clone(), events)
            .map_err(|e| reply_error("replay", format!("cannot replay {position}: {e}")))?;
        let (replies, ()) = tokio::try_join!(
            self.claim(batch.claims()),
            self.register_shard(lane, position.shard())
        )?;
        // No mark: the redrive fence is per record, and absent until the record is replayed.
        let plan = plan_apply(lane, &batch, &replies, None, keep)
            .map_err(|e| reply_error("plan", format!("cannot plan the replay: {e}")))?;
        let mut keys = plan.script_keys();
        keys[0] = redrive_key(lane, position.shard(), position.sequence());
        let outcome = match self
            .apply_raw(&keys, &plan.script_args(self.counter_ttl_secs()))
            .await?
        {
            ScriptReply::Applied => Replayed::Applied(plan.stats),
            ScriptReply::Conflict(_) => Replayed::AlreadyReplayed,
        };
        Ok(Replay { outcome, replies })
    }
}

/// The records of `shard` of the stream named `stream` from `start` up to `end` (sequence numbers), in order, as `(sequence, data)`: one
/// `GetShardIterator` at `start`, then `GetRecords` until a record past `end`, the end of the shard, or an
/// empty page at the tip. `Err` carries the service's words when there is no iterator (the shard or the
/// sequence number is gone); a trimmed start shows as a first record after `start`.
pub async fn fetch_range(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    start: &str,
    end: &str,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(start)
        .send()
        .await
        .map_err(service_words)?;
    let mut next = iterator.shard_iterator().map(str::to_owned);
    let mut out = Vec::new();
    while let Some(it) = next.take() {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1_000)
            .send()
            .await
            .map_err(service_words)?;
        for record in page.records() {
            let sequence = record.sequence_number();
            if seq_lt(end, sequence) {
                return Ok(out);
            }
            out.push((sequence.to_owned(), record.data().as_ref().to_vec()));
        }
        let at_tip = page.records().is_empty() && page.millis_behind_latest().unwrap_or(0) == 0;
        if !at_tip {
            next = page.next_shard_iterator().map(str::to_owned);
        }
    }
    Ok(out)
}

/// The service's code and message of a failed call, or the SDK's account of it when the answer had none.
fn service_words<E: ProvideErrorMetadata + std::error::Error + 'static>(e: E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_owned(),
        _ => aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
    }
}
