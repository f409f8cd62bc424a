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

use std::collections::BTreeMap;
use std::io::Write;

use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use flate2::write::GzEncoder;
use flate2::Compression;
use lambda_runtime::LambdaEvent;
use serde_json::json;
use tally_aws::batch;
use tally_aws::cache_auth::StoreSource;
use tally_aws::emf::BatchMetrics;
use tally_aws::metrics::Fence;
use tally_domain::enrich::{enrich_batch, Enriched, RateLimits};
use tally_domain::event::Event;
use tally_domain::exactly_once::ApplyStats;
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
    /// The embedded-metric-format line.
    pub metrics: String,
}

impl Deferred {
    pub fn new(store: StoreSource, s3: aws_sdk_s3::Client, bucket: impl Into<String>) -> Deferred {
        Deferred {
            store,
            s3,
            bucket: bucket.into(),
            limits: RateLimits::default(),
        }
    }

    /// Replaces the per-user rate limits of the invalid-traffic verdict.
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
        let enriched = enrich_batch(&events, &self.limits);
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
        }
        .to_line();
        tracing::info!(
            message = "batch settled and archived",
            records = decoded.records,
            events = events.len(),
            invalid,
            counted = processed.plan.stats.counted,
            duplicates = processed.plan.stats.duplicates,
            repeats = processed.plan.stats.repeats,
            objects = archived.len(),
            failed_at = decoded.failure.as_ref().map(|(seq, _)| seq.as_str()),
        );
        Ok(Outcome {
            response: decoded.response(),
            stats: processed.plan.stats,
            invalid,
            archived,
            metrics,
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

/// The Lambda handler: [`Deferred::process`], the metric line on stdout, errors logged and returned so that
/// Lambda retries the batch.
pub async fn handler(
    state: &Deferred,
    event: LambdaEvent<KinesisEvent>,
) -> Result<KinesisEventResponse, lambda_runtime::Error> {
    let outcome = state.process(&event.payload, batch::unix_ms).await;
    batch::respond(outcome.map(|o| (o.response, o.metrics)))
}

/// The archive objects of a batch: per hour of receive time, the gzip NDJSON of its events in record order,
/// under `events/dt=YYYY-MM-DD/hour=HH/{shard}-{first}-{last}.ndjson.gz`. `positions[i]` is the record of
/// `enriched[i]`. Deterministic: the same batch gives the same names and bytes.
pub fn archive_objects(
    first: &Fence,
    last: &Fence,
    positions: &[&Fence],
    enriched: &[Enriched<'_>],
) -> Vec<(String, Vec<u8>)> {
    let mut hours: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (position, e) in positions.iter().zip(enriched) {
        let lines = hours
            .entry(hour_partition(e.event.received_ms))
            .or_default();
        lines.extend_from_slice(ndjson_line(e, position).as_bytes());
        lines.push(b'\n');
    }
    let name = format!(
        "{}-{}-{}",
        first.shard_id(),
        first.sequence_number(),
        last.sequence_number()
    );
    hours
        .into_iter()
        .map(|(partition, lines)| (format!("events/{partition}/{name}.ndjson.gz"), gzip(&lines)))
        .collect()
}

/// One archive line: the event's fields, what enrichment found, and where the event was in the stream.
pub fn ndjson_line(e: &Enriched<'_>, position: &Fence) -> String {
    let ev = e.event;
    json!({
        "id": ev.id,
        "kind": ev.kind.as_str(),
        "campaign_id": ev.campaign_id,
        "ad_id": ev.ad_id,
        "placement_id": ev.placement_id,
        "user_id": ev.user_id,
        "client_ts_ms": ev.client_ts_ms,
        "received_ms": ev.received_ms,
        "cost_micros": ev.cost_micros,
        "value_micros": ev.value_micros,
        "country": ev.country,
        "reported_device": ev.device.as_str(),
        "user_agent": ev.user_agent,
        "device": e.device.as_str(),
        "browser": e.browser.as_str(),
        "os": e.os.as_str(),
        "valid": e.is_valid(),
        "invalid_reason": e.invalid.map(|r| r.as_str()),
        "shard_id": position.shard_id(),
        "sequence_number": position.sequence_number(),
    })
    .to_string()
}

/// `dt=YYYY-MM-DD/hour=HH` of a unix-ms timestamp, UTC.
pub fn hour_partition(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let hour = ms.rem_euclid(86_400_000) / 3_600_000;
    let (y, m, d) = civil_from_days(days);
    format!("dt={y:04}-{m:02}-{d:02}/hour={hour:02}")
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the usual era arithmetic: 400-year eras
/// of 146,097 days, years starting in March so that the leap day comes last).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    // The gzip header's time stays zero, so the same lines always give the same bytes.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// An S3 client from the SDK configuration; path-style addressing when a custom endpoint is set (the local
/// cloud and test servers do not resolve `bucket.host` names).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let path_style = config.endpoint_url().is_some();
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(config)
            .force_path_style(path_style)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ms: i64, expect: &str) {
        assert_eq!(hour_partition(ms), expect, "{ms}");
    }

    #[test]
    fn hour_partitions() {
        check(0, "dt=1970-01-01/hour=00");
        check(1_764_165_480_000, "dt=2025-11-26/hour=13");
        check(1_764_165_480_000 + 120_000, "dt=2025-11-26/hour=14");
        check(951_782_400_000, "dt=2000-02-29/hour=00");
        check(951_868_799_999, "dt=2000-02-29/hour=23");
        check(4_107_542_400_000, "dt=2100-03-01/hour=00");
        check(-1, "dt=1969-12-31/hour=23");
        check(253_402_300_799_000, "dt=9999-12-31/hour=23");
    }

    #[test]
    fn gzip_is_deterministic_and_round_trips() {
        use std::io::Read;
        let a = gzip(b"{\"id\":\"e1\"}\n");
        assert_eq!(a, gzip(b"{\"id\":\"e1\"}\n"));
        let mut out = String::new();
        flate2::read::GzDecoder::new(&a[..])
            .read_to_string(&mut out)
            .expect("gunzip");
        assert_eq!(out, "{\"id\":\"e1\"}\n");
    }
}
