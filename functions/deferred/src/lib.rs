//! The deferred lane: big batches from the shared iterator, the expensive and non-urgent work.
//!
//! [`Deferred::process`] decodes every record it can ([`tally_aws::batch`]; undecodable ones are reported),
//! enriches the events ([`tally_domain::enrich`]: device, browser, OS, invalid-traffic verdict), and settles the
//! *valid* events exactly once by event id in the counter store's settled lane
//! ([`tally_aws::store::CounterStore::process`] on `st`): the same claims as the realtime lane (so both lanes
//! count the same occurrence of every id, reading `Ours` for the record the realtime lane claimed), the shard's
//! fence and one atomic step that adds the counters and max-merges the unique-user sketch registers. The
//! compactor folds both into the compacted minute, hour and day items; the function writes nothing to
//! DynamoDB.
//!
//! Then it archives every enriched event to S3 as gzip NDJSON, one object per hour of receive time:
//! `events/dt=YYYY-MM-DD/hour=HH/{shard}-{first seq}-{last seq}.ndjson.gz` (every occurrence, duplicates
//! included: the archive is the record of what arrived).
//!
//! Settling comes before archiving: a failed archive write fails the invocation and the retry finds the
//! counters already settled. Objects are written with `If-None-Match: *`, so a redelivered batch leaves the
//! object it wrote the first time as it is. A bisected retry writes objects under the names of its halves;
//! events that an earlier attempt had archived under the full batch's name are then archived twice. Every line
//! carries the event id, shard and sequence number, so queries deduplicate (see ARCHITECTURE.md).

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use lambda_runtime::LambdaEvent;
use std::collections::HashMap;

use tally_aws::batch;
use tally_aws::cache_auth::StoreSource;
use tally_aws::emf::BatchMetrics;
use tally_aws::fence::Fence;
use tally_aws::redrive::Replayed;
use tally_domain::archive;
use tally_domain::enrich::{enrich_batch, exclude_unsigned, Enriched, RateLimits};
use tally_domain::event::Event;
use tally_domain::exactly_once::{ApplyStats, Position};
use tally_domain::store_keys::StoreLane;

/// What can fail in the deferred lane.
#[derive(Debug, thiserror::Error)]
pub enum DeferredError {
    #[error(transparent)]
    Aws(#[from] tally_aws::Error),
    #[error("archiving s3://{bucket}/{key} failed: {message}")]
    Archive {
        bucket: String,
        key: String,
        message: String,
    },
}

/// The function's state, built once per cold start.
#[derive(Debug)]
pub struct Deferred {
    store: StoreSource,
    s3: aws_sdk_s3::Client,
    bucket: String,
    limits: RateLimits,
    exclude_unsigned: bool,
    window: batch::MetricsWindow,
}

/// What one invocation did.
#[derive(Debug)]
pub struct Outcome {
    /// The partial-batch response for Lambda.
    pub response: KinesisEventResponse,
    /// What the counter store's settled lane did with every event (counted, duplicates, filtered, …).
    pub stats: ApplyStats,
    /// Events found to be invalid traffic.
    pub invalid: usize,
    /// Archive object keys of this batch (written now or found already written).
    pub archived: Vec<String>,
    /// This batch's embedded metrics (written with the instance's window, `tally_domain::emf`).
    pub metrics: BatchMetrics,
}

impl Deferred {
    pub fn new(store: StoreSource, s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Deferred {
        Deferred {
            store,
            s3,
            bucket: bucket.into(),
            limits: RateLimits::default(),
            exclude_unsigned: false,
            window: batch::MetricsWindow::new("deferred"),
        }
    }

    /// Replaces the per-user rate limits of the invalid-traffic verdict.
    /// Leaves unsigned events out of the settled counts (they are still archived, with
    /// `invalid_reason: "unsigned"`): the stack option `exclude_unsigned`, `TALLY_SETTLED_UNSIGNED=exclude`.
    pub fn excluding_unsigned(mut self, exclude: bool) -> Deferred {
        self.exclude_unsigned = exclude;
        self
    }

    /// The batch enriched, and unsigned events marked when the stack excludes them.
    fn enrich<'a>(&self, events: &'a [Event]) -> Vec<Enriched<'a>> {
        let mut enriched = enrich_batch(events, &self.limits);
        if self.exclude_unsigned {
            exclude_unsigned(&mut enriched);
        }
        enriched
    }

    pub fn with_limits(mut self, limits: RateLimits) -> Deferred {
        self.limits = limits;
        self
    }

    /// Processes one batch (see the crate docs).
    pub async fn process(
        &self,
        event: &KinesisEvent,
        now_ms: impl Fn() -> i64,
    ) -> Result<Outcome, DeferredError> {
        let decoded = batch::decode(event)?;
        let events: Vec<Event> = decoded.batch.events().cloned().collect();
        let enriched = self.enrich(&events);
        let valid: Vec<bool> = enriched.iter().map(Enriched::is_valid).collect();
        // The store's batch holds the same events in the same order: its filter asks by address.
        let valid_events: std::collections::HashSet<*const Event> = decoded
            .store
            .events()
            .zip(&valid)
            .filter(|(_, v)| **v)
            .map(|((_, e), _)| e as *const Event)
            .collect();
        let processed = self
            .store
            .get()
            .await?
            .process(StoreLane::Settled, &decoded.store, |e| {
                valid_events.contains(&(e as *const Event))
            })
            .await?;
        let mut archived = Vec::new();
        if let Some(range) = decoded.batch.range() {
            let positions: Vec<&Fence> = decoded.batch.positioned().map(|(f, _)| f).collect();
            for (key, body) in archive_objects(&range.first, &range.last, &positions, &enriched) {
                self.put_once(&key, body).await?;
                archived.push(key);
            }
        }
        let now = now_ms();
        let invalid = valid.iter().filter(|v| !**v).count();
        let metrics = BatchMetrics {
            function: "deferred",
            now_ms: now,
            records: decoded.records,
            events: events.len(),
            failed_records: decoded.records - decoded.applied_records,
            latencies_ms: events
                .iter()
                .map(|e| now.saturating_sub(e.received_ms))
                .collect(),
        };
        tracing::debug!(
            message = "batch settled and archived",
            records = decoded.records,
            events = events.len(),
            invalid,
            counted = processed.stats.counted,
            duplicates = processed.stats.duplicates,
            repeats = processed.stats.repeats,
            objects = archived.len(),
            failed_at = decoded.failure.as_ref().map(|(seq, _)| seq.as_str()),
        );
        Ok(Outcome {
            response: decoded.response(),
            stats: processed.stats,
            invalid,
            archived,
            metrics,
        })
    }

    /// Replays one record the lane's mapping discarded (`cargo xtask redrive`, `docs/redrive.md`): the same
    /// enrichment and the same two writes as [`Deferred::process`], each fenced for the record itself, since
    /// the lane's own fences have moved past it:
    ///
    /// 1. the counter store's settled lane (counters and unique-user registers) through
    ///    [`tally_aws::store::CounterStore::replay`] (the lane's claims, plan and script under the record's
    ///    redrive key);
    /// 2. the archive, written once (`If-None-Match: *`) under the record's own name.
    ///
    /// Every step is idempotent on its own, so a replay that failed half-way is completed by the next one.
    pub async fn redrive_record(
        &self,
        position: &Position,
        events: Vec<Event>,
    ) -> Result<RedriveOutcome, DeferredError> {
        let enriched = self.enrich(&events);
        // The store asks only about the first occurrence of an id in the record: its verdict is the id's.
        let mut verdicts: HashMap<&str, bool> = HashMap::new();
        for e in &enriched {
            verdicts.entry(e.event.id.as_str()).or_insert(e.is_valid());
        }
        let replay = self
            .store
            .get()
            .await?
            .replay(StoreLane::Settled, position, events.clone(), |e| {
                verdicts.get(e.id.as_str()).copied().unwrap_or(false)
            })
            .await?;
        let at = Fence::new(position.shard(), position.sequence())?;
        let positions = vec![&at; enriched.len()];
        let mut archived = Vec::new();
        for (key, body) in archive_objects(&at, &at, &positions, &enriched) {
            self.put_once(&key, body).await?;
            archived.push(key);
        }
        Ok(RedriveOutcome {
            store: replay.outcome,
            archived,
        })
    }

    /// Writes an archive object unless it exists (`If-None-Match: *`).
    async fn put_once(&self, key: &str, body: Vec<u8>) -> Result<(), DeferredError> {
        let result = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/x-ndjson")
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Written by an earlier delivery of this batch: the same name holds the same records.
            Err(err)
                if err
                    .raw_response()
                    .is_some_and(|r| r.status().as_u16() == 412) =>
            {
                tracing::info!(message = "archive object already written", key);
                Ok(())
            }
            Err(err) => Err(DeferredError::Archive {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                message: match err.as_service_error() {
                    Some(e) => format!(
                        "{}: {}",
                        e.code().unwrap_or("error"),
                        e.message().unwrap_or("no message")
                    ),
                    None => aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
                },
            }),
        }
    }
}

/// What [`Deferred::redrive_record`] did.
#[derive(Debug)]
pub struct RedriveOutcome {
    /// The counter store's settled lane: counted now, or replayed before.
    pub store: Replayed,
    /// Archive object keys of the record (written now or found already written).
    pub archived: Vec<String>,
}

/// The shard id under which a replayed record's settled rows are fenced: `<shard>.redrive.<sequence>`, a
/// shard of its own per record (within Kinesis' shard id rule: at most 20 + 9 + 56 characters for AWS's ids).
pub fn redrive_shard(position: &Position) -> String {
    format!("{}.redrive.{}", position.shard(), position.sequence())
}

/// The Lambda handler: [`Deferred::process`], the metric line on stdout, errors logged and returned so that
/// Lambda retries the batch.
pub async fn handler(
    state: &Deferred,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let outcome = state.process(&event.payload, batch::unix_ms).await;
    batch::respond(outcome.map(|o| (o.response, o.metrics)), &state.window)
}

/// The archive objects of a batch (`tally_domain::archive::objects`: per hour of receive time, the gzip NDJSON
/// of its events in record order, under `events/dt=YYYY-MM-DD/hour=HH/{shard}-{first}-{last}.ndjson.gz`).
/// `positions[i]` is the record of `enriched[i]`. Deterministic: the same batch gives the same names and bytes.
pub fn archive_objects(
    first: &Fence,
    last: &Fence,
    positions: &[&Fence],
    enriched: &[Enriched<'_>],
) -> Vec<(String, Vec<u8>)> {
    archive::objects(
        first.shard_id(),
        first.sequence_number(),
        last.sequence_number(),
        positions.iter().map(|p| p.sequence_number()).zip(enriched),
    )
}

/// One archive line (`tally_domain::archive::ArchiveLine`): the event's fields, what enrichment found, and
/// where the event was in the stream.
pub fn ndjson_line(e: &Enriched<'_>, position: &Fence) -> String {
    archive::ArchiveLine::new(e, position.shard_id(), position.sequence_number()).to_json()
}

pub use tally_domain::archive::{hour_partition, hour_prefix};

/// The environment variable of the stack option `exclude_unsigned`: `exclude` leaves unsigned events out of
/// the settled counts, `count` (or unset) counts them (without money, which they never carry).
pub const SETTLED_UNSIGNED_ENV: &str = tally_contract::env::SETTLED_UNSIGNED;

/// Whether [`SETTLED_UNSIGNED_ENV`]'s value excludes unsigned events; anything but `count`, `exclude` or unset
/// is an error naming the variable.
pub fn settled_unsigned_from_env(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("") | Some("count") => Ok(false),
        Some("exclude") => Ok(true),
        Some(other) => Err(format!(
            "{SETTLED_UNSIGNED_ENV}={other:?}: expected count or exclude (the stack option exclude_unsigned)"
        )),
    }
}
