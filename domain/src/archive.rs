//! The event archive's format: one gzip NDJSON object per batch and hour of receive time, as pure functions.
//! The deferred lane writes with [`objects`]; whatever reads the archive (a repair, Athena-style queries)
//! reads with [`decode_object`], so the format lives in one place.
//!
//! **Why gzip JSON lines.** The archive is for people and query engines as much as for tally: Athena and S3
//! Select read gzip-compressed JSON lines natively (by the `.gz` suffix; S3 Select takes `GZIP` or `BZIP2` for
//! JSON, not zstd), `zcat | jq` reads an object by hand, and gzip's ratio on these lines is what the archive's
//! storage is priced with (`cargo xtask plan` measures it with [`bytes_per_event`] on the profile's sampled
//! events). The gzip header's time stays zero, so a batch always gives the same bytes (a redelivered batch
//! rewrites nothing: objects are written with `If-None-Match: *`).

use std::collections::BTreeMap;
use std::io::{Read, Write};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::{Deserialize, Serialize};

use crate::calendar::{civil_from_days, DAY_MS};
use crate::enrich::Enriched;

/// One archived event: its fields, what enrichment found, and where it was in the stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchiveLine {
    pub id: String,
    pub kind: String,
    pub campaign_id: String,
    pub ad_id: String,
    pub placement_id: Option<String>,
    pub user_id: Option<String>,
    pub client_ts_ms: Option<i64>,
    pub received_ms: i64,
    pub cost_micros: u64,
    pub value_micros: u64,
    pub country: Option<String>,
    /// The device class the client reported.
    pub reported_device: String,
    pub user_agent: Option<String>,
    /// Who vouched for the event (`authenticated`, `signed`, `unsigned`: [`crate::event::Trust`]); lines
    /// written before trust was recorded read as `authenticated`, as collect then took every event's money.
    #[serde(default = "authenticated")]
    pub trust: String,
    /// The device class enrichment settled on.
    pub device: String,
    pub browser: String,
    pub os: String,
    /// Counts in the settled lane.
    pub valid: bool,
    pub invalid_reason: Option<String>,
    pub shard_id: String,
    pub sequence_number: String,
}

impl ArchiveLine {
    /// The line of enriched event `e`, read from record `sequence` of `shard`.
    pub fn new(e: &Enriched<'_>, shard: &str, sequence: &str) -> ArchiveLine {
        let ev = e.event;
        ArchiveLine {
            id: ev.id.clone(),
            kind: ev.kind.as_str().to_owned(),
            campaign_id: ev.campaign_id.clone(),
            ad_id: ev.ad_id.clone(),
            placement_id: ev.placement_id.clone(),
            user_id: ev.user_id.clone(),
            client_ts_ms: ev.client_ts_ms,
            received_ms: ev.received_ms,
            cost_micros: ev.cost_micros,
            value_micros: ev.value_micros,
            country: ev.country.clone(),
            reported_device: ev.device.as_str().to_owned(),
            user_agent: ev.user_agent.clone(),
            trust: ev.trust.as_str().to_owned(),
            device: e.device.as_str().to_owned(),
            browser: e.browser.as_str().to_owned(),
            os: e.os.as_str().to_owned(),
            valid: e.is_valid(),
            invalid_reason: e.invalid.map(|r| r.as_str().to_owned()),
            shard_id: shard.to_owned(),
            sequence_number: sequence.to_owned(),
        }
    }

    /// The JSON line (no newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

fn authenticated() -> String {
    crate::event::Trust::Authenticated.as_str().to_owned()
}

/// Why an archive object could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("archive object is not gzip text: {0} (objects are gzip NDJSON written by the deferred lane)")]
    NotGzip(String),
    #[error("archive object line {line}: {message} (each line is one event as tally_domain::archive::ArchiveLine)")]
    Line { line: usize, message: String },
}

/// The object body of `lines`: NDJSON, gzip-compressed.
pub fn encode_object(lines: &[ArchiveLine]) -> Vec<u8> {
    let mut text = Vec::new();
    for line in lines {
        text.extend_from_slice(line.to_json().as_bytes());
        text.push(b'\n');
    }
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(&text);
    encoder.finish().unwrap_or_default()
}

/// The NDJSON text of an object body (gunzipped); the compactor's repair reads lines from it with its own,
/// stricter parser.
pub fn decode_text(body: &[u8]) -> Result<String, ArchiveError> {
    let mut text = String::new();
    GzDecoder::new(body)
        .read_to_string(&mut text)
        .map_err(|e| ArchiveError::NotGzip(e.to_string()))?;
    Ok(text)
}

/// The lines of an object body; an error names what is wrong (not gzip, or which line does not parse).
pub fn decode_object(body: &[u8]) -> Result<Vec<ArchiveLine>, ArchiveError> {
    let text = decode_text(body)?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| ArchiveError::Line {
                line: i + 1,
                message: e.to_string(),
            })
        })
        .collect()
}

/// The key prefix every archive object is under: the deferred lane may write only there, the compactor's repair
/// read only there (the roles' S3 grants are scoped to it, `infra/pipeline`).
pub const EVENTS_PREFIX: &str = "events/";

/// The archive objects of one batch of `shard` from record `first` to `last`: per hour of receive time, the
/// lines of its events in record order, under `events/dt=YYYY-MM-DD/hour=HH/{shard}-{first}-{last}.ndjson.gz`.
/// `events` are (sequence number, enriched event) in record order. Deterministic: the same batch gives the same
/// names and bytes.
pub fn objects<'a>(
    shard: &str,
    first: &str,
    last: &str,
    events: impl IntoIterator<Item = (&'a str, &'a Enriched<'a>)>,
) -> Vec<(String, Vec<u8>)> {
    let mut hours: BTreeMap<String, Vec<ArchiveLine>> = BTreeMap::new();
    for (sequence, e) in events {
        hours
            .entry(hour_partition(e.event.received_ms))
            .or_default()
            .push(ArchiveLine::new(e, shard, sequence));
    }
    hours
        .into_iter()
        .map(|(partition, lines)| {
            (
                format!("{EVENTS_PREFIX}{partition}/{shard}-{first}-{last}.ndjson.gz"),
                encode_object(&lines),
            )
        })
        .collect()
}

/// Stored bytes per event when `enriched` (events of one shard, in order) are archived in objects of
/// `per_object` events: what `cargo xtask plan` prices the archive with.
pub fn bytes_per_event(enriched: &[Enriched<'_>], per_object: usize) -> f64 {
    if enriched.is_empty() {
        return 0.0;
    }
    let sequence = "49590338271490256608559692538361571095921575989136588898";
    let bytes: usize = enriched
        .chunks(per_object.max(1))
        .map(|chunk| {
            let lines: Vec<ArchiveLine> = chunk
                .iter()
                .map(|e| ArchiveLine::new(e, "shardId-000000000000", sequence))
                .collect();
            encode_object(&lines).len()
        })
        .sum();
    bytes as f64 / enriched.len() as f64
}

/// `dt=YYYY-MM-DD/hour=HH` of a unix-ms timestamp, UTC.
pub fn hour_partition(ms: i64) -> String {
    let days = ms.div_euclid(DAY_MS);
    let hour = ms.rem_euclid(DAY_MS) / 3_600_000;
    let (y, m, d) = civil_from_days(days);
    format!("dt={y:04}-{m:02}-{d:02}/hour={hour:02}")
}

/// The key prefix of the archive objects of the UTC hour that holds `ms`: `events/dt=YYYY-MM-DD/hour=HH/`.
pub fn hour_prefix(ms: i64) -> String {
    format!("{EVENTS_PREFIX}{}/", hour_partition(ms))
}

/// Whether `key` is a name [`objects`] gives (`…/<shard>-<first>-<last>.ndjson.gz`).
pub fn is_object_key(key: &str) -> bool {
    key.starts_with(EVENTS_PREFIX) && key.ends_with(".ndjson.gz")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::{enrich_batch, RateLimits};
    use crate::event::{DeviceClass, Event, EventKind};

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

    fn event(id: &str, received_ms: i64) -> Event {
        Event {
            id: id.to_owned(),
            kind: EventKind::Click,
            campaign_id: "cmp-1".to_owned(),
            ad_id: "ad-1".to_owned(),
            placement_id: None,
            user_id: Some("u1".to_owned()),
            client_ts_ms: Some(received_ms - 5),
            received_ms,
            cost_micros: 1_500,
            value_micros: 0,
            country: Some("DE".to_owned()),
            device: DeviceClass::Unknown,
            trust: crate::event::Trust::Authenticated,
            user_agent: Some("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)".to_owned()),
        }
    }

    #[test]
    fn objects_round_trip_per_hour_and_are_deterministic() {
        let hour = 3_600_000;
        let events = vec![
            event("a", 10 * hour - 1),
            event("b", 10 * hour),
            event("c", 10 * hour + 1),
        ];
        let enriched = enrich_batch(&events, &RateLimits::default());
        let seqs = ["7", "8", "9"];
        let made = || {
            objects(
                "shardId-000000000001",
                "7",
                "9",
                seqs.iter().copied().zip(&enriched),
            )
        };
        let out = made();
        assert_eq!(out, made(), "the same batch gives the same names and bytes");
        let keys: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "events/dt=1970-01-01/hour=09/shardId-000000000001-7-9.ndjson.gz",
                "events/dt=1970-01-01/hour=10/shardId-000000000001-7-9.ndjson.gz"
            ]
        );
        let lines = decode_object(&out[1].1).expect("decode");
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            ArchiveLine::new(&enriched[1], "shardId-000000000001", "8")
        );
        assert_eq!(
            (lines[1].id.as_str(), lines[1].sequence_number.as_str()),
            ("c", "9")
        );
        assert_eq!(lines[0].kind, "click");
        assert_eq!(lines[0].device, "mobile");
    }

    #[test]
    fn bad_objects_are_named() {
        assert!(matches!(
            decode_object(b"not gzip"),
            Err(ArchiveError::NotGzip(_))
        ));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(b"{\"id\":1}\n").expect("write");
        let body = encoder.finish().expect("gzip");
        let error = decode_object(&body).expect_err("not a line");
        assert!(
            error.to_string().starts_with("archive object line 1: "),
            "{error}"
        );
    }

    #[test]
    fn gzip_shrinks_similar_lines() {
        let events: Vec<Event> = (0..2_000)
            .map(|i| event(&format!("evt-{i:08}"), 1_000 + i))
            .collect();
        let enriched = enrich_batch(&events, &RateLimits::default());
        let raw = ArchiveLine::new(&enriched[0], "shardId-000000000000", "1")
            .to_json()
            .len() as f64;
        let per_event = bytes_per_event(&enriched, 1_000);
        assert!(
            per_event < raw / 5.0,
            "{per_event} bytes per event against {raw} raw"
        );
    }
}
