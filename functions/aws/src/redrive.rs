//! Redrive's I/O in a lane: one record replayed through the lane's exactly-once path (the records of a
//! discarded range are read back from the stream by [`crate::stream_read`], which only `cargo xtask redrive`
//! uses). The decisions are `tally_domain::redrive`'s (which records, when a message may go)
//! and `tally_domain::exactly_once`'s (which occurrences count).
//!
//! [`CounterStore::replay`] is [`CounterStore::process`] for one record with the redrive fence in place of the
//! shard's mark: the same claims (`<shard>:<seq>` of the record, so an id the record already claimed reads
//! `Ours` and an id another record holds is a duplicate), the same plan, the same atomic script; its first key
//! is [`redrive_key`] instead of the shard's mark, expected empty. The script sets it to the record's mark
//! together with the increments, so a second replay conflicts and changes nothing.

use tally_domain::event::Event;
use tally_domain::exactly_once::{plan_apply, ApplyStats, Batch, Position};
use tally_domain::redrive::redrive_key;
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
