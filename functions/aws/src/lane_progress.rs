//! How far the lanes have got, read for the compactor (docs/counter-store.md, "Lane progress"): per shard of a
//! lane, its fence mark in the cache (the last record the lane applied) and the first record of the stream
//! after it — `GetShardIterator AFTER_SEQUENCE_NUMBER <mark>`, then `GetRecords` with `Limit` 1. The decision
//! is `tally_domain::compact::lane_progress`; this module only reads.
//!
//! After the cache lost its data the marks are gone with it; a repair asks instead how far the deferred lane has
//! *archived* each shard ([`ProgressReader::archive`]): the last archived record of every shard of the stream
//! (`ListShards`), or, for a shard with none in the read span, the first record since the span began
//! (`AT_TIMESTAMP`).
//!
//! A shard gone from the stream (a closed shard past its retention) is caught up: nothing can arrive in it. A
//! read that fails otherwise (throttling, a corrupt mark) makes that shard [`ShardProgress::Unknown`], logged:
//! the grace period alone decides for it, as before the progress was read, and compaction goes on. The shards are the lane's `{<lane>}:shards` set; a shard the lane never
//! applied since the cache last lost its data has no mark and is unknown too.

use std::collections::BTreeMap;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::ShardIteratorType;
use tally_domain::compact::ShardProgress;
use tally_domain::exactly_once::Position;
use tally_domain::store_keys::StoreLane;

use crate::store::CounterStore;
use crate::Error;

/// Empty pages followed before a shard counts as unknown: `GetRecords` may answer an empty page before the tip
/// (`MillisBehindLatest` > 0) where a shard has a gap.
const MAX_PAGES: usize = 4;

/// Where a shard's read starts.
#[derive(Clone, Copy, Debug)]
enum Start<'a> {
    /// After this sequence number (a mark, the last archived record).
    After(&'a str),
    /// At this arrival time, ms.
    At(i64),
}

/// Reads the stream the lanes consume.
#[derive(Clone, Debug)]
pub struct ProgressReader {
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
}

impl ProgressReader {
    pub fn new(kinesis: aws_sdk_kinesis::Client, stream: impl Into<String>) -> ProgressReader {
        ProgressReader {
            kinesis,
            stream: stream.into(),
        }
    }

    /// Every shard of `lane` that the cache lists, with what was read of it. `read_ms` is the run's clock,
    /// taken before any read: a shard caught up is caught up at least as of then. Only the cache failing is
    /// an error (the run cannot compact without it anyway).
    pub async fn lane(
        &self,
        store: &CounterStore,
        lane: StoreLane,
        read_ms: i64,
    ) -> Result<Vec<(String, ShardProgress)>, Error> {
        let mut out = Vec::new();
        for shard in store.shards(lane).await? {
            let progress = match store.read_mark(lane, &shard).await {
                Ok(Some(mark)) => {
                    self.first_or_unknown(&shard, Start::After(mark.sequence()), read_ms)
                        .await
                }
                Ok(None) => ShardProgress::Unknown,
                Err(Error::CorruptStore { key, rule }) => {
                    tracing::warn!(
                        message = "corrupt fence mark: the grace period alone closes this shard's minutes",
                        key,
                        rule
                    );
                    ShardProgress::Unknown
                }
                Err(other) => return Err(other),
            };
            out.push((shard, progress));
        }
        Ok(out)
    }

    /// How far the archive has every shard of the stream: after `archived`'s record for the shards it names,
    /// from `since_ms` (arrival) for the others. `since_ms` should be later than the arrival of any record
    /// received before the span the archive was read for (the span's start plus
    /// `tally_domain::compact::RECEIVE_TO_ARRIVAL_MAX_MS`), so a shard's records from before the span do not
    /// count as unarchived. If the stream's shards cannot be listed, the archived shards alone are read
    /// (logged).
    pub async fn archive(
        &self,
        archived: &BTreeMap<String, Position>,
        since_ms: i64,
        read_ms: i64,
    ) -> Vec<(String, ShardProgress)> {
        let shards = match self.shards().await {
            Ok(shards) => shards,
            Err(message) => {
                tracing::warn!(
                    message = "could not list the stream's shards: only the shards in the archive are read",
                    error = message
                );
                archived.keys().cloned().collect()
            }
        };
        let mut out = Vec::new();
        for shard in shards {
            let start = match archived.get(&shard) {
                Some(position) => Start::After(position.sequence()),
                None => Start::At(since_ms),
            };
            let progress = self.first_or_unknown(&shard, start, read_ms).await;
            out.push((shard, progress));
        }
        out
    }

    /// Every shard of the stream, open or closed (`ListShards`, all pages).
    async fn shards(&self) -> Result<Vec<String>, String> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // A page after the first names the token only (`ListShards` refuses both).
            let stream = token.is_none().then(|| self.stream.clone());
            let page = self
                .kinesis
                .list_shards()
                .set_stream_name(stream)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())?;
            out.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
            match page.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// [`ProgressReader::first`], a failed read logged and unknown.
    async fn first_or_unknown(&self, shard: &str, start: Start<'_>, read_ms: i64) -> ShardProgress {
        self.first(shard, start, read_ms)
            .await
            .unwrap_or_else(|message| {
                tracing::warn!(
                    message = "could not read the stream: the grace period alone closes this shard's minutes",
                    shard,
                    from = ?start,
                    error = message
                );
                ShardProgress::Unknown
            })
    }

    /// The first record of `shard` from `start`: its arrival, or caught up.
    async fn first(
        &self,
        shard: &str,
        start: Start<'_>,
        read_ms: i64,
    ) -> Result<ShardProgress, String> {
        let (kind, sequence, timestamp) = match start {
            Start::After(sequence) => (
                ShardIteratorType::AfterSequenceNumber,
                Some(sequence.to_owned()),
                None,
            ),
            Start::At(ms) => (
                ShardIteratorType::AtTimestamp,
                None,
                Some(DateTime::from_millis(ms)),
            ),
        };
        let iterator = match self
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(shard)
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence)
            .set_timestamp(timestamp)
            .send()
            .await
        {
            Ok(out) => out,
            // A closed shard past the stream's retention is gone (the lanes' shard sets keep it): nothing can
            // arrive in it any more.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                tracing::debug!(
                    message = "the shard is gone from the stream: caught up",
                    shard
                );
                return Ok(ShardProgress::CaughtUp { read_ms });
            }
            Err(e) => return Err(aws_sdk_kinesis::error::DisplayErrorContext(e).to_string()),
        };
        let mut next = iterator.shard_iterator().map(str::to_owned);
        for _ in 0..MAX_PAGES {
            // No iterator: the shard is closed and the mark is its last record.
            let Some(it) = next.take() else {
                return Ok(ShardProgress::CaughtUp { read_ms });
            };
            let page = self
                .kinesis
                .get_records()
                .shard_iterator(it)
                .limit(1)
                .send()
                .await
                .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(e).to_string())?;
            if let Some(record) = page.records().first() {
                let arrived = record
                    .approximate_arrival_timestamp()
                    .and_then(|t| t.to_millis().ok())
                    .ok_or("a record without an ApproximateArrivalTimestamp")?;
                return Ok(ShardProgress::Behind {
                    arrived_ms: arrived,
                });
            }
            if page.millis_behind_latest() == Some(0) {
                return Ok(ShardProgress::CaughtUp { read_ms });
            }
            next = page.next_shard_iterator().map(str::to_owned);
        }
        Err(format!(
            "{MAX_PAGES} empty pages without reaching the tip of the shard"
        ))
    }
}
