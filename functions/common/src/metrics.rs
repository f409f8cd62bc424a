//! The metrics table: its layout, the exactly-once writer and the readers.
//!
//! # Layout
//!
//! * Counter rows: `pk = "c#{campaign_id}"`, `sk = "{lane}#{res}#{bucket}#{ad}"` — lane `rt` (realtime) or `st`
//!   (settled), res `m` / `h` / `d`, bucket = the bucket's start in unix minutes zero-padded to 10 digits, ad =
//!   the ad id or `*` for the campaign total. Attributes `impressions`, `viewable`, `clicks`, `conversions`,
//!   `spend_micros`, `value_micros` (N), `users` (B, [`Hll::to_bytes`]), `expires_at` (N, unix seconds: minute
//!   rows 8 days after the bucket, hour rows 100 days, day rows never).
//! * Fencing attributes on counter rows (see [`MetricsTable::apply`]): `ver` (N, bumped by every write) and one
//!   `hw_{shardId}` (S) per source shard: the position of the last batch of that shard applied to the row,
//!   encoded by [`Fence`] so that string order is numeric order.
//! * Campaign index rows: `pk = "campaigns"`, `sk = "{campaign_id}"`, `first_seen_ms`, `last_seen_ms` (N).
//!
//! # Exactly once
//!
//! A batch of one shard ([`ShardBatch`]: events with the position of their record) is applied as independent
//! row updates. Each counter row keeps, per source shard, the mark of the last record of that shard applied to
//! it, and this invariant: *the row holds exactly the events of that shard's records up to its mark* (records
//! the mapping discarded to the on-failure queue aside). An update compares the row's mark with the batch:
//!
//! * mark below the first record: the row has seen none of the batch; add the batch's counters;
//! * mark at or past the last record: the row has seen all of it (a retry, a redelivery); skip;
//! * mark inside the batch: an earlier delivery applied a prefix (a bisected retry, a batch cut elsewhere);
//!   add the counters of the records after the mark only;
//!
//! and sets the mark to the batch's last record, conditioned on the mark (and `ver`) it decided on, so a
//! concurrent writer forces a re-read. Rows are independent, so a crash half-way leaves some rows done and the
//! retry completes the others. This needs each shard's records in order — `ParallelizationFactor` 1 on the
//! mappings — and callers whose skipped records never contribute events on a later delivery either (undecodable
//! records: decoding is deterministic, [`crate::batch`]). The argument is in ARCHITECTURE.md.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::stream::{self, StreamExt};
use tally_domain::event::Event;
use tally_domain::hll::Hll;
use tally_domain::rollup::{minute_of, Counters, Rollup};

use crate::Error;

/// Partition key of the campaign index rows.
pub const CAMPAIGNS_PK: &str = "campaigns";
/// The `ad` part of the sort key of a campaign-total row.
pub const TOTAL_AD: &str = "*";
/// Row writes in flight at once per [`MetricsTable::apply`].
pub const DEFAULT_CONCURRENCY: usize = 16;
/// Read-modify-write attempts on one row before [`Error::Contention`].
const MAX_CONFLICTS: u32 = 12;
const COUNTER_ATTRS: [&str; 6] = [
    "impressions",
    "viewable",
    "clicks",
    "conversions",
    "spend_micros",
    "value_micros",
];

/// Which lane a counter row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Counted by `realtime` as events arrive.
    Realtime,
    /// Counted by `deferred`, invalid traffic removed.
    Settled,
}

impl Lane {
    /// `rt` or `st`, as in the sort key.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Realtime => "rt",
            Lane::Settled => "st",
        }
    }

    /// The inverse of [`Lane::as_str`].
    pub fn parse(s: &str) -> Option<Lane> {
        match s {
            "rt" => Some(Lane::Realtime),
            "st" => Some(Lane::Settled),
            _ => None,
        }
    }
}

/// The time resolution of a counter row.
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

    /// How long rows of this resolution live after their bucket starts; `None` for ever.
    pub fn retention(self) -> Option<Duration> {
        match self {
            Resolution::Minute => Some(Duration::from_secs(8 * 86_400)),
            Resolution::Hour => Some(Duration::from_secs(100 * 86_400)),
            Resolution::Day => None,
        }
    }
}

/// The identity of one counter row.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RowKey {
    pub campaign_id: String,
    pub lane: Lane,
    pub res: Resolution,
    /// Start of the bucket, unix minutes (a multiple of `res.minutes()`).
    pub bucket: i64,
    /// `None` for the campaign total.
    pub ad_id: Option<String>,
}

impl RowKey {
    /// `c#{campaign_id}`.
    pub fn pk(&self) -> String {
        campaign_pk(&self.campaign_id)
    }

    /// `{lane}#{res}#{bucket:010}#{ad or *}`.
    pub fn sk(&self) -> String {
        format!(
            "{}#{}#{:010}#{}",
            self.lane.as_str(),
            self.res.as_str(),
            self.bucket,
            self.ad_id.as_deref().unwrap_or(TOTAL_AD)
        )
    }

    /// Parses a sort key of a campaign's counter row; `None` when it does not follow the layout.
    pub fn parse(campaign_id: &str, sk: &str) -> Option<RowKey> {
        let mut parts = sk.splitn(4, '#');
        let lane = Lane::parse(parts.next()?)?;
        let res = Resolution::parse(parts.next()?)?;
        let bucket_str = parts.next()?;
        if bucket_str.len() != 10 || !bucket_str.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let bucket: i64 = bucket_str.parse().ok()?;
        let ad = parts.next()?;
        if ad.is_empty() {
            return None;
        }
        let ad_id = (ad != TOTAL_AD).then(|| ad.to_owned());
        Some(RowKey {
            campaign_id: campaign_id.to_owned(),
            lane,
            res,
            bucket,
            ad_id,
        })
    }

    /// Whether event `e` is counted in this row (whatever the lane).
    pub fn counts(&self, e: &Event) -> bool {
        e.campaign_id == self.campaign_id
            && self.ad_id.as_deref().is_none_or(|ad| ad == e.ad_id)
            && self.res.bucket(minute_of(e.received_ms)) == self.bucket
    }

    /// `expires_at` for this row, unix seconds; `None` for rows kept for ever.
    pub fn expires_at(&self) -> Option<i64> {
        let keep = i64::try_from(self.res.retention()?.as_secs()).ok()?;
        Some(self.bucket.saturating_mul(60).saturating_add(keep))
    }
}

fn campaign_pk(campaign_id: &str) -> String {
    format!("c#{campaign_id}")
}

/// Counters to add to one row.
#[derive(Clone, Debug, PartialEq)]
pub struct RowUpdate {
    pub key: RowKey,
    pub counters: Counters,
}

/// Expands a rollup into the rows of one lane: each (campaign, ad, minute) entry lands in its minute, hour and
/// day bucket, and entries sharing a bucket are merged, so each row is written once per batch.
pub fn rows(lane: Lane, rollup: &Rollup) -> Vec<RowUpdate> {
    let mut out: BTreeMap<RowKey, Counters> = BTreeMap::new();
    for (key, counters) in rollup.iter() {
        for res in Resolution::ALL {
            let row = RowKey {
                campaign_id: key.campaign_id.clone(),
                lane,
                res,
                bucket: res.bucket(key.minute),
                ad_id: key.ad_id.clone(),
            };
            out.entry(row).or_default().merge(counters);
        }
    }
    out.into_iter()
        .map(|(key, counters)| RowUpdate { key, counters })
        .collect()
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

    /// The whole batch aggregated.
    pub fn rollup(&self) -> Rollup {
        let mut rollup = Rollup::new();
        for e in self.events() {
            rollup.add(e);
        }
        rollup
    }

    /// The counters `key` gets from the records after `mark` (a stored row mark).
    pub fn counters_after(&self, key: &RowKey, mark: &str) -> Counters {
        let mut counters = Counters::default();
        for (record, e) in &self.events {
            if self.records[*record].mark() > mark && key.counts(e) {
                counters.add(e);
            }
        }
        counters
    }
}

/// What the row's mark must be for the conditional write to go ahead.
#[derive(Clone, Copy, Debug)]
enum Guard<'a> {
    /// No mark yet.
    Absent,
    /// No mark, or one below this (the batch's first record).
    Below(&'a str),
    /// Exactly the mark we read.
    Exactly(&'a str),
}

/// Whether `s` is a stored mark: three digits of length, then that many digits.
fn is_mark(s: &str) -> bool {
    s.len() > 3
        && s.bytes().all(|b| b.is_ascii_digit())
        && s[..3].parse::<usize>().is_ok_and(|n| n == s.len() - 3)
}

/// What [`MetricsTable::apply`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Rows this call changed.
    pub applied: usize,
    /// Rows that had already seen this batch (a retry or a redelivery) and were left alone.
    pub skipped: usize,
    /// Of the applied rows, those that had seen a prefix of the batch and got only the rest.
    pub partial: usize,
}

/// What happened to one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOutcome {
    /// The row got the whole batch.
    Applied,
    /// The row had seen a prefix of the batch and got the records after it.
    AppliedRest,
    /// The row had seen all of the batch.
    AlreadyApplied,
}

/// One counter row as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct CounterRow {
    pub key: RowKey,
    pub counters: Counters,
}

/// One row of the campaign index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignEntry {
    pub campaign_id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// The metrics table: writer and readers.
#[derive(Clone, Debug)]
pub struct MetricsTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
    concurrency: usize,
}

impl MetricsTable {
    /// A handle on `table`, writing at most [`DEFAULT_CONCURRENCY`] rows at once.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> MetricsTable {
        MetricsTable {
            client,
            table: table.into(),
            concurrency: DEFAULT_CONCURRENCY,
        }
    }

    /// Bounds the row writes in flight per apply (at least 1).
    pub fn with_concurrency(mut self, concurrency: usize) -> MetricsTable {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Applies `rollup` to `lane` exactly once as the content of the single record at `fence`: a redelivery of
    /// that record changes nothing. For the records of an invocation use [`MetricsTable::apply_batch`], which
    /// also handles deliveries that overlap an earlier one only in part.
    pub async fn apply(
        &self,
        lane: Lane,
        fence: &Fence,
        rollup: &Rollup,
    ) -> Result<ApplyReport, Error> {
        let range = FenceRange {
            first: fence.clone(),
            last: fence.clone(),
        };
        // With first == last no mark can fall inside the range, so no per-record breakdown is needed.
        self.apply_rows(&ShardBatch::new(), &range, &rows(lane, rollup))
            .await
    }

    /// Applies `batch` to `lane` exactly once (see the module docs). Every row is attempted even when some
    /// fail; the first error is returned after all finished, and any later delivery of the same records — the
    /// same batch, a bisected part of it, or a batch that overlaps it — completes the rest without counting
    /// anything twice.
    pub async fn apply_batch(&self, lane: Lane, batch: &ShardBatch) -> Result<ApplyReport, Error> {
        let Some(range) = batch.range() else {
            return Ok(ApplyReport::default());
        };
        let rows = rows(lane, &batch.rollup());
        self.apply_rows(batch, &range, &rows).await
    }

    /// [`MetricsTable::apply_batch`] on some of the rows [`rows`] expands the batch into (a test can stop
    /// half-way).
    pub async fn apply_rows(
        &self,
        batch: &ShardBatch,
        range: &FenceRange,
        rows: &[RowUpdate],
    ) -> Result<ApplyReport, Error> {
        let outcomes: Vec<Result<RowOutcome, Error>> = stream::iter(rows)
            .map(|row| self.apply_row(batch, range, row))
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        let mut report = ApplyReport::default();
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(RowOutcome::Applied) => report.applied += 1,
                Ok(RowOutcome::AppliedRest) => {
                    report.applied += 1;
                    report.partial += 1;
                }
                Ok(RowOutcome::AlreadyApplied) => report.skipped += 1,
                Err(error) => {
                    tracing::warn!(message = "row update failed", table = %self.table, %error);
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(report),
        }
    }

    /// Applies one row of `batch` under its fence range.
    ///
    /// The common case, a row that has seen none of the batch (its mark is below the batch's first record)
    /// and has no sketch to merge, is one conditional `UpdateItem`. Otherwise: a consistent read of the mark,
    /// `ver` and sketch; nothing to do when the mark is at or past the batch's last record; the counters of
    /// the records after the mark when it falls inside the batch (an earlier delivery applied a prefix); and an
    /// update conditioned on the `ver` and mark read, so that a concurrent writer (another shard, or a
    /// duplicate invocation) makes us re-read, at most [`MAX_CONFLICTS`] times.
    pub async fn apply_row(
        &self,
        batch: &ShardBatch,
        range: &FenceRange,
        row: &RowUpdate,
    ) -> Result<RowOutcome, Error> {
        let pk = row.key.pk();
        let sk = row.key.sk();
        let hw = range.last.attribute();
        if row.counters.users.is_empty() {
            let guard = Guard::Below(range.first.mark());
            if self
                .update(
                    &hw,
                    range.last.mark(),
                    &row.key,
                    &row.counters,
                    None,
                    guard,
                    &pk,
                    &sk,
                )
                .await?
            {
                return Ok(RowOutcome::Applied);
            }
        }
        for attempt in 0..MAX_CONFLICTS {
            let current = self.read_for_update(&hw, &pk, &sk).await?;
            let seen = current.mark.as_deref();
            if seen.is_some_and(|mark| mark >= range.last.mark()) {
                return Ok(RowOutcome::AlreadyApplied);
            }
            let (delta, outcome) = match seen {
                Some(mark) if mark >= range.first.mark() => (
                    batch.counters_after(&row.key, mark),
                    RowOutcome::AppliedRest,
                ),
                _ => (row.counters.clone(), RowOutcome::Applied),
            };
            if delta.events() == 0 {
                return Ok(RowOutcome::AlreadyApplied);
            }
            let mut users = current.users;
            users.merge(&delta.users);
            let guard = match seen {
                Some(mark) => Guard::Exactly(mark),
                None => Guard::Absent,
            };
            let sketch = Some((current.version, &users));
            if self
                .update(
                    &hw,
                    range.last.mark(),
                    &row.key,
                    &delta,
                    sketch,
                    guard,
                    &pk,
                    &sk,
                )
                .await?
            {
                return Ok(outcome);
            }
            tracing::debug!(
                message = "row changed under us, re-reading",
                pk,
                sk,
                attempt
            );
            let backoff = 1 + fastrand::u64(0..(2u64 << attempt.min(6)));
            tokio::time::sleep(Duration::from_millis(backoff)).await;
        }
        Err(Error::Contention {
            table: self.table.clone(),
            pk,
            sk,
            attempts: MAX_CONFLICTS,
        })
    }

    /// The conditional write: `ADD` the counters and `ver`, `SET` the mark (and the merged sketch). `sketch` is
    /// `Some((ver read, merged sketch))` for a read-modify-write. `Ok(false)` when the condition failed.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        hw: &str,
        mark: &str,
        key: &RowKey,
        c: &Counters,
        sketch: Option<(Option<u64>, &Hll)>,
        guard: Guard<'_>,
        pk: &str,
        sk: &str,
    ) -> Result<bool, Error> {
        let values = [
            c.impressions,
            c.viewable,
            c.clicks,
            c.conversions,
            c.spend_micros,
            c.value_micros,
        ];
        let mut adds = vec!["#ver :one".to_owned()];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .expression_attribute_names("#ver", "ver")
            .expression_attribute_names("#hw", hw)
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":mark", AttributeValue::S(mark.to_owned()));
        for (name, value) in COUNTER_ATTRS.iter().zip(values) {
            if value > 0 {
                adds.push(format!("{name} :{name}"));
                request = request.expression_attribute_values(format!(":{name}"), number(value));
            }
        }
        let mut sets = vec!["#hw = :mark".to_owned()];
        if let Some(expires_at) = key.expires_at() {
            sets.push("expires_at = :exp".to_owned());
            request = request
                .expression_attribute_values(":exp", AttributeValue::N(expires_at.to_string()));
        }
        let mut condition = match guard {
            Guard::Absent => "attribute_not_exists(#hw)".to_owned(),
            Guard::Below(first) => {
                request = request
                    .expression_attribute_values(":guard", AttributeValue::S(first.to_owned()));
                "(attribute_not_exists(#hw) OR #hw < :guard)".to_owned()
            }
            Guard::Exactly(seen) => {
                request = request
                    .expression_attribute_values(":guard", AttributeValue::S(seen.to_owned()));
                "#hw = :guard".to_owned()
            }
        };
        if let Some((version, users)) = sketch {
            sets.push("#users = :users".to_owned());
            request = request
                .expression_attribute_names("#users", "users")
                .expression_attribute_values(
                    ":users",
                    AttributeValue::B(Blob::new(users.to_bytes())),
                );
            match version {
                Some(version) => {
                    condition.push_str(" AND #ver = :ver");
                    request = request.expression_attribute_values(":ver", number(version));
                }
                None => condition.push_str(" AND attribute_not_exists(#ver)"),
            }
        }
        let expression = format!("ADD {} SET {}", adds.join(", "), sets.join(", "));
        let result = request
            .update_expression(expression)
            .condition_expression(condition)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(self.dynamo_error("UpdateItem", err)),
        }
    }

    async fn read_for_update(&self, hw: &str, pk: &str, sk: &str) -> Result<Current, Error> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .projection_expression("#ver, #users, #hw")
            .expression_attribute_names("#ver", "ver")
            .expression_attribute_names("#users", "users")
            .expression_attribute_names("#hw", hw)
            .send()
            .await
            .map_err(|err| self.dynamo_error("GetItem", err))?;
        let Some(item) = output.item else {
            return Ok(Current {
                version: None,
                mark: None,
                users: Hll::default(),
            });
        };
        let corrupt = |rule: String| self.corrupt(pk, sk, rule);
        let version = match item.get("ver") {
            None => None,
            Some(value) => {
                Some(parse_number(value).map_err(|rule| corrupt(format!("ver: {rule}")))?)
            }
        };
        let mark = match item.get(hw) {
            None => None,
            Some(AttributeValue::S(mark)) if is_mark(mark) => Some(mark.clone()),
            Some(_) => return Err(corrupt(format!("{hw}: not a sequence mark"))),
        };
        let users = parse_users(item.get("users")).map_err(corrupt)?;
        Ok(Current {
            version,
            mark,
            users,
        })
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
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// The campaign-total rows of `campaign_id` in `lane` at resolution `res` whose buckets start in
    /// `from..=to` (unix minutes; both rounded down to the resolution), oldest first.
    pub async fn series(
        &self,
        campaign_id: &str,
        lane: Lane,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<CounterRow>, Error> {
        let rows = self.range(campaign_id, lane, res, from, to).await?;
        Ok(rows
            .into_iter()
            .filter(|row| row.key.ad_id.is_none())
            .collect())
    }

    /// The per-ad rows of `campaign_id` in `lane` at `res` with buckets in `from..=to`, ordered by bucket then
    /// ad id.
    pub async fn ads(
        &self,
        campaign_id: &str,
        lane: Lane,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<CounterRow>, Error> {
        let rows = self.range(campaign_id, lane, res, from, to).await?;
        Ok(rows
            .into_iter()
            .filter(|row| row.key.ad_id.is_some())
            .collect())
    }

    /// The campaign total of the UTC day holding `minute` (unix minutes), or `None` when nothing was counted.
    pub async fn day_total(
        &self,
        campaign_id: &str,
        lane: Lane,
        minute: i64,
    ) -> Result<Option<Counters>, Error> {
        let key = RowKey {
            campaign_id: campaign_id.to_owned(),
            lane,
            res: Resolution::Day,
            bucket: Resolution::Day.bucket(minute),
            ad_id: None,
        };
        let (pk, sk) = (key.pk(), key.sk());
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.clone()))
            .key("sk", AttributeValue::S(sk.clone()))
            .send()
            .await
            .map_err(|err| self.dynamo_error("GetItem", err))?;
        match output.item {
            None => Ok(None),
            Some(item) => Ok(Some(
                parse_counters(&item).map_err(|rule| self.corrupt(&pk, &sk, rule))?,
            )),
        }
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

    async fn range(
        &self,
        campaign_id: &str,
        lane: Lane,
        res: Resolution,
        from: i64,
        to: i64,
    ) -> Result<Vec<CounterRow>, Error> {
        if from < 0 || to < from || to > 9_999_999_999 {
            return Err(Error::InvalidQuery(format!(
                "bucket range {from}..={to} must be increasing unix minutes between 0 and 9999999999"
            )));
        }
        let (lo, hi) = (res.bucket(from), res.bucket(to));
        let prefix = format!("{}#{}#", lane.as_str(), res.as_str());
        // Every ad id sorts below '~' (ids are [A-Za-z0-9._:-], the total is '*').
        let bounds = (format!("{prefix}{lo:010}#"), format!("{prefix}{hi:010}#~"));
        let pk = campaign_pk(campaign_id);
        let items = self.query_all(&pk, Some(bounds)).await?;
        items
            .iter()
            .map(|item| {
                let sk = string_attr(item, "sk").unwrap_or_default();
                let key = RowKey::parse(campaign_id, &sk).ok_or_else(|| {
                    self.corrupt(&pk, &sk, "sort key does not follow the layout".to_owned())
                })?;
                let counters = parse_counters(item).map_err(|rule| self.corrupt(&pk, &sk, rule))?;
                Ok(CounterRow { key, counters })
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

struct Current {
    version: Option<u64>,
    mark: Option<String>,
    users: Hll,
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

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
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

fn parse_users(value: Option<&AttributeValue>) -> Result<Hll, String> {
    match value {
        None => Ok(Hll::default()),
        Some(AttributeValue::B(bytes)) => Hll::from_bytes(bytes.as_ref())
            .map_err(|error| format!("users: not a sketch ({error})")),
        Some(_) => Err("users: not binary".to_owned()),
    }
}

fn parse_counters(item: &HashMap<String, AttributeValue>) -> Result<Counters, String> {
    let field = |name: &str| match item.get(name) {
        None => Ok(0),
        Some(value) => parse_number(value).map_err(|rule| format!("{name}: {rule}")),
    };
    Ok(Counters {
        impressions: field("impressions")?,
        viewable: field("viewable")?,
        clicks: field("clicks")?,
        conversions: field("conversions")?,
        spend_micros: field("spend_micros")?,
        value_micros: field("value_micros")?,
        users: parse_users(item.get("users"))?,
    })
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

    fn check_key(sk: &str, expect: Option<(&str, &str, i64, Option<&str>)>) {
        let got = RowKey::parse("camp", sk);
        let want = expect.map(|(lane, res, bucket, ad)| RowKey {
            campaign_id: "camp".to_owned(),
            lane: Lane::parse(lane).unwrap_or_else(|| panic!("lane {lane}")),
            res: Resolution::parse(res).unwrap_or_else(|| panic!("res {res}")),
            bucket,
            ad_id: ad.map(str::to_owned),
        });
        assert_eq!(got, want, "{sk}");
        if let Some(key) = got {
            assert_eq!(key.sk(), sk, "round trip");
        }
    }

    #[test]
    fn sort_keys() {
        check_key("rt#m#0029000000#*", Some(("rt", "m", 29_000_000, None)));
        check_key(
            "st#d#0029000160#ad-1",
            Some(("st", "d", 29_000_160, Some("ad-1"))),
        );
        check_key(
            "rt#h#0000000060#a:b.c_d-e",
            Some(("rt", "h", 60, Some("a:b.c_d-e"))),
        );
        check_key("xx#m#0029000000#*", None);
        check_key("rt#w#0029000000#*", None);
        check_key("rt#m#29000000#*", None);
        check_key("rt#m#00290000x0#*", None);
        check_key("rt#m#0029000000#", None);
        check_key("rt#m#0029000000", None);
        check_key("", None);
    }

    #[test]
    fn buckets_and_expiry() {
        assert_eq!(Resolution::Minute.bucket(29_000_123), 29_000_123);
        assert_eq!(Resolution::Hour.bucket(29_000_123), 29_000_100);
        assert_eq!(Resolution::Day.bucket(29_000_123), 28_998_720);
        assert_eq!(Resolution::Hour.bucket(-1), -60);
        let key = |res| RowKey {
            campaign_id: "c".into(),
            lane: Lane::Realtime,
            res,
            bucket: 100,
            ad_id: None,
        };
        assert_eq!(
            key(Resolution::Minute).expires_at(),
            Some(6_000 + 8 * 86_400)
        );
        assert_eq!(
            key(Resolution::Hour).expires_at(),
            Some(6_000 + 100 * 86_400)
        );
        assert_eq!(key(Resolution::Day).expires_at(), None);
    }
}
