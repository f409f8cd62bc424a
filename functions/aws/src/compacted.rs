//! Compacted minutes in the metrics table: one item per (campaign, minute) with every ad and both lanes, and
//! the compactor's watermark. The decisions are `tally_domain::compact`'s; this module only moves bytes.
//!
//! # Layout (next to the rows of [`crate::metrics`], under keys that cannot collide with them)
//!
//! * Minute items: `pk = "cm#{campaign_id}"`, `sk = "{minute}"` (unix minutes, zero-padded to 10 digits, so
//!   a `BETWEEN` on `sk` is a range of minutes). Attributes `ads` (B, [`encode_ads`]: every ad's six
//!   counters for the realtime lane and the settled lane) and `sf` (BOOL: the settled counts are final).
//!   Today's counter rows are `c#{campaign_id}`; campaign ids never contain `#`, so `cm#…` is never one of
//!   them.
//! * The watermark: `pk = "compactor"`, `sk = "watermark"`, attributes `rt` and `st` (N, the last minute
//!   compacted with final realtime / settled counts; absent: none yet). Written with a condition on the
//!   values read, so it only moves forward ([`crate::metrics_write::MetricsWriter::advance_watermark`]).
//!
//! * All-campaigns items: the items of the pseudo-campaign `*` (`cm#*`, `ch#*`, `cd#*`; campaign ids never
//!   contain `*`), one ad `all` summed over every campaign, sketches merged
//!   ([`tally_domain::totals::aggregate_minutes`]); read like any campaign's.
//! * Day rows per campaign: `pk = "dt#{day}"` (the day's first unix minute, 10 digits), `sk = "{campaign_id}"`,
//!   the realtime lane's six counters (N, named as the cache's fields: `imp`, `view`, `click`, `conv`,
//!   `spend`, `value`) through the minute in `m` (N). Updated by an `ADD` per (campaign, minute) conditioned
//!   on `m` being earlier ([`crate::metrics_write::MetricsWriter::add_day_totals`]); listed by
//!   [`CompactedTable::day_totals`] (the query API's campaign table sorted by spend or impressions).
//!
//! Items are written with a plain `PutItem` of the full state: writing one twice (a retry, two compactors)
//! leaves the same item. The day rows are the exception (an `ADD`), made idempotent by their minute.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use tally_contract::metrics_table::{key_condition, PARTITION_KEY, SORT_KEY};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::BTreeMap;

use tally_domain::compact::{
    decode_ads, settled_reads, split_at_seam, CompactedItem, Span, Watermark,
};
use tally_domain::exactly_once::Tally;
use tally_domain::hll::Hll;
use tally_domain::store_keys::StoreLane;

use crate::cache_read::SettledKept;
use crate::store::CounterStore;
use crate::Error;

/// One campaign's minute items for the readers of one answer: both lanes' counts live in the same items, so
/// an answer that needs both (the query API's series and ads tables) reads each item once. Minutes inside the
/// shared range come from one `Query` of the whole range, made by whichever reader asks first (the other waits
/// for it); any other range, or another campaign, is read on its own.
#[derive(Debug)]
pub struct MinuteItems<'a> {
    table: &'a CompactedTable,
    campaign_id: &'a str,
    shared: Option<RangeInclusive<i64>>,
    read: tokio::sync::OnceCell<Vec<CompactedItem>>,
}

impl<'a> MinuteItems<'a> {
    /// Items of `campaign_id` whose minutes fall in `shared` are read once, together.
    pub fn shared(
        table: &'a CompactedTable,
        campaign_id: &'a str,
        shared: Option<RangeInclusive<i64>>,
    ) -> MinuteItems<'a> {
        MinuteItems {
            table,
            campaign_id,
            shared,
            read: tokio::sync::OnceCell::new(),
        }
    }

    /// Every read goes to the table on its own.
    pub fn unshared(table: &'a CompactedTable, campaign_id: &'a str) -> MinuteItems<'a> {
        MinuteItems::shared(table, campaign_id, None)
    }

    pub fn table(&self) -> &'a CompactedTable {
        self.table
    }

    /// `campaign_id`'s items of minutes `from..=to`, in minute order (as [`CompactedTable::items`]).
    pub async fn items(
        &self,
        campaign_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<CompactedItem>, Error> {
        let within = |range: &RangeInclusive<i64>| {
            from <= to && range.contains(&from) && range.contains(&to)
        };
        match &self.shared {
            Some(range) if campaign_id == self.campaign_id && within(range) => {
                let all = self
                    .read
                    .get_or_try_init(|| {
                        self.table
                            .items(self.campaign_id, *range.start(), *range.end())
                    })
                    .await?;
                Ok(all
                    .iter()
                    .filter(|item| (from..=to).contains(&item.minute))
                    .cloned()
                    .collect())
            }
            _ => self.table.items(campaign_id, from, to).await,
        }
    }
}

/// The minutes both lanes' readers would take from minute items, when they overlap or touch: the range
/// [`MinuteItems::shared`] reads once. `realtime` is the realtime series' minutes (`read_series`), the settled
/// read is described by its resolution and buckets (`read_settled`).
pub fn shared_minute_range(
    watermark: &Watermark,
    realtime: Option<RangeInclusive<i64>>,
    settled: (Span, i64, i64),
) -> Option<RangeInclusive<i64>> {
    let (res, first, last) = settled;
    let rt = realtime
        .and_then(|r| split_at_seam(watermark, StoreLane::Realtime, *r.start(), *r.end()).0)?;
    let st = settled_reads(res, first, last, watermark.settled)
        .into_iter()
        .find(|read| read.span == Span::Minute)
        .and_then(|read| split_at_seam(watermark, StoreLane::Settled, read.from, read.to).0)?;
    let touch = *rt.start() <= st.end() + 1 && *st.start() <= rt.end() + 1;
    touch.then(|| (*rt.start()).min(*st.start())..=(*rt.end()).max(*st.end()))
}

/// A campaign's series of a lane, minutes `from..=to`, per (ad, minute), as readers serve it: minutes at or
/// before the lane's watermark from the compacted items (through `items`, which may share the read with the
/// other lane's reader), later ones from Valkey summed over the lane's shards
/// (`tally_domain::compact::split_at_seam`). Cells without counts are absent.
pub async fn read_series(
    items: &MinuteItems<'_>,
    store: &CounterStore,
    watermark: &Watermark,
    lane: StoreLane,
    campaign_id: &str,
    from: i64,
    to: i64,
) -> Result<BTreeMap<(String, i64), Tally>, Error> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let (compacted, live) = split_at_seam(watermark, lane, from, to);
    // The two sides of the seam at once: a series' latency is one read, not two in a row.
    let items = async {
        match compacted {
            Some(minutes) => {
                items
                    .items(campaign_id, *minutes.start(), *minutes.end())
                    .await
            }
            None => Ok(Vec::new()),
        }
    };
    let cached = async {
        let Some(minutes) = live else {
            return Ok(Vec::new());
        };
        let shards = store.shards(lane).await?;
        let shards = &shards;
        // The minutes at once (each one HGETALL per shard): a day without compaction is 1,440 minutes.
        // The futures collected first: a stream holding a closure that borrows trips the Send check of the
        // callers' runtimes (a higher-ranked lifetime).
        let reads: Vec<_> = minutes
            .map(|minute| async move {
                let ads = store
                    .read_campaign_minute(lane, shards, campaign_id, minute)
                    .await?;
                Ok::<_, Error>((minute, ads))
            })
            .collect();
        stream::iter(reads)
            .buffer_unordered(16)
            .try_collect::<Vec<(i64, BTreeMap<String, Tally>)>>()
            .await
    };
    let (read_items, read) = tokio::try_join!(items, cached)?;
    let mut out = BTreeMap::new();
    for item in read_items {
        for (ad, t) in item.lane(lane) {
            out.insert((ad.to_owned(), item.minute), t);
        }
    }
    for (minute, ads) in read {
        for (ad, t) in ads {
            out.insert((ad, minute), t);
        }
    }
    Ok(out)
}

/// A settled cell: the counts and the unique users of one ad in one bucket.
pub type SettledCell = (Tally, Hll);

/// A campaign's settled series at resolution `res`, buckets `first..=last` (bucket starts), per (ad, bucket):
/// closed hours and days from their roll-up items, the rest from minute items up to the settled watermark and
/// from Valkey after it (`tally_domain::compact::settled_reads`), sketches merged; live minutes before
/// `live_from` are not read (the cache holds a minute for the counters' TTL only). Cells without counts are
/// absent. With `kept`, live minutes read before at the lane's current version are not read again
/// ([`SettledKept`]). Minute items come through `items` (which may share the read with the realtime reader),
/// hour and day items from its table.
#[allow(clippy::too_many_arguments)]
pub async fn read_settled(
    items: &MinuteItems<'_>,
    store: &CounterStore,
    watermark: &Watermark,
    campaign_id: &str,
    res: Span,
    first: i64,
    last: i64,
    live_from: i64,
    kept: Option<&SettledKept>,
) -> Result<BTreeMap<(String, i64), SettledCell>, Error> {
    let mut out: BTreeMap<(String, i64), SettledCell> = BTreeMap::new();
    let mut add = |ad: &str, minute: i64, t: &Tally, users: Option<&Hll>| {
        if t.is_zero() {
            return;
        }
        let cell = out.entry((ad.to_owned(), res.bucket(minute))).or_default();
        cell.0.merge(t);
        if let Some(h) = users {
            cell.1.merge(h);
        }
    };
    for read in settled_reads(res, first, last, watermark.settled) {
        let (items_from, items_to, live) = match read.span {
            Span::Minute => {
                match split_at_seam(watermark, StoreLane::Settled, read.from, read.to) {
                    (Some(c), live) => (*c.start(), *c.end(), live),
                    (None, live) => (1, 0, live),
                }
            }
            _ => (read.from, read.to, None),
        };
        let span_items = match read.span {
            Span::Minute => items.items(campaign_id, items_from, items_to).await?,
            span => {
                items
                    .table()
                    .span_items(span, campaign_id, items_from, items_to)
                    .await?
            }
        };
        for item in span_items {
            for (ad, c) in &item.ads {
                add(ad, item.minute, &c.settled, item.users.get(ad));
            }
        }
        if let Some(minutes) = live.map(|m| (*m.start()).max(live_from)..=*m.end()) {
            use futures_util::stream::{self, StreamExt, TryStreamExt};
            let shards = store.shards(StoreLane::Settled).await?;
            let shards = &shards;
            // With `kept`, the lane's version, read before the hashes (see SettledKept).
            let kept = match kept {
                Some(kept) => Some((kept, store.settled_version(shards).await?)),
                None => None,
            };
            let kept = kept.as_ref();
            let reads: Vec<_> = minutes
                .map(|minute| async move {
                    let hit = kept.and_then(|(kept, v)| kept.get(v, campaign_id, minute));
                    if let Some(sums) = hit {
                        return Ok((minute, sums));
                    }
                    let sums = store
                        .read_campaign_minute_users(StoreLane::Settled, shards, campaign_id, minute)
                        .await?;
                    if let Some((kept, v)) = kept {
                        kept.keep(v, campaign_id, minute, &sums);
                    }
                    Ok::<_, Error>((minute, sums))
                })
                .collect();
            let read: Vec<(i64, crate::cache_read::AdSums)> = stream::iter(reads)
                .buffer_unordered(16)
                .try_collect()
                .await?;
            for (minute, (ads, users)) in read {
                for (ad, t) in &ads {
                    add(ad, minute, t, users.get(ad));
                }
            }
        }
    }
    Ok(out)
}

/// Partition key prefix of the minute items.
pub const ITEM_PK_PREFIX: &str = "cm#";
/// Partition and sort key of the watermark row.
pub const WATERMARK_PK: &str = "compactor";
pub const WATERMARK_SK: &str = "watermark";
/// Largest minute the sort key holds (10 digits).
const MAX_MINUTE: i64 = 9_999_999_999;

/// Partition key prefix of the day rows.
pub const DAY_TOTALS_PK_PREFIX: &str = "dt#";
/// The day rows' attribute holding the last minute added.
pub const DAY_TOTALS_MINUTE: &str = "m";

/// The partition key of the day rows of the UTC day starting at `day` (unix minutes).
pub fn day_totals_pk(day: i64) -> Result<String, Error> {
    Ok(format!("{DAY_TOTALS_PK_PREFIX}{}", checked_sk(day)?))
}

/// The partition key of a campaign's minute items.
pub fn item_pk(campaign_id: &str) -> String {
    span_pk(Span::Minute, campaign_id)
}

/// The partition key of a campaign's items of a span: `cm#`, `ch#` or `cd#`, then the campaign id.
pub fn span_pk(span: Span, campaign_id: &str) -> String {
    format!("{}{campaign_id}", span.prefix())
}

/// The sort key of a minute; `None` outside `0..=9_999_999_999`.
pub fn item_sk(minute: i64) -> Option<String> {
    (0..=MAX_MINUTE)
        .contains(&minute)
        .then(|| format!("{minute:010}"))
}

/// [`item_sk`], or the error naming the minute out of range.
pub(crate) fn checked_sk(minute: i64) -> Result<String, Error> {
    item_sk(minute).ok_or_else(|| {
        Error::InvalidQuery(format!(
            "minute {minute} is outside 0..={MAX_MINUTE} (unix minutes)"
        ))
    })
}

/// The compacted items and the watermark in the metrics table, read (the writes are
/// [`crate::metrics_write`]'s, the compactor's alone).
#[derive(Clone, Debug)]
pub struct CompactedTable {
    pub(crate) client: aws_sdk_dynamodb::Client,
    pub(crate) table: String,
}

impl CompactedTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> CompactedTable {
        CompactedTable {
            client,
            table: table.into(),
        }
    }

    /// The same table as [`crate::metrics::MetricsTable`] (its campaign index, its settled rows).
    pub fn metrics(&self) -> crate::metrics::MetricsTable {
        crate::metrics::MetricsTable::new(self.client.clone(), self.table.clone())
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The client (for [`crate::metrics_write`]'s writer of the same table).
    pub(crate) fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    /// A campaign's items for minutes `from..=to`, in minute order (minutes without an item are absent: no
    /// counts in either lane). Strongly consistent.
    pub async fn items(
        &self,
        campaign_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<CompactedItem>, Error> {
        self.span_items(Span::Minute, campaign_id, from, to).await
    }

    /// A campaign's items of a span whose first minute is in `from..=to`, in order. Strongly consistent.
    pub async fn span_items(
        &self,
        span: Span,
        campaign_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<CompactedItem>, Error> {
        let mut out = Vec::new();
        if from > to || to < 0 || from > MAX_MINUTE {
            return Ok(out);
        }
        let pk = span_pk(span, campaign_id);
        let (lo, hi) = (self.sk(from.max(0))?, self.sk(to.min(MAX_MINUTE))?);
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression(key_condition(true))
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .expression_attribute_values(":lo", AttributeValue::S(lo.clone()))
                .expression_attribute_values(":hi", AttributeValue::S(hi.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.dynamo_error("Query", e))?;
            for item in page.items() {
                out.push(self.parse_item(span, campaign_id, item)?);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    pub(crate) fn parse_item(
        &self,
        span: Span,
        campaign_id: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<CompactedItem, Error> {
        let pk = span_pk(span, campaign_id);
        let sk = match item.get(SORT_KEY) {
            Some(AttributeValue::S(s)) => s.clone(),
            _ => return Err(self.corrupt(&pk, "?", "no string sort key".to_owned())),
        };
        let minute = sk
            .parse::<i64>()
            .ok()
            .filter(|m| item_sk(*m).as_deref() == Some(sk.as_str()))
            .ok_or_else(|| {
                self.corrupt(&pk, &sk, "sort key is not a 10-digit minute".to_owned())
            })?;
        if span.bucket(minute) != minute {
            return Err(self.corrupt(
                &pk,
                &sk,
                format!("sort key is not the first minute of a {span:?} span"),
            ));
        }
        let (ads, users) = match item.get("ads") {
            Some(AttributeValue::B(b)) => {
                decode_ads(b.as_ref()).map_err(|e| self.corrupt(&pk, &sk, e.to_string()))?
            }
            _ => return Err(self.corrupt(&pk, &sk, "ads: missing or not binary".to_owned())),
        };
        let settled_final = match item.get("sf") {
            Some(AttributeValue::Bool(b)) => *b,
            _ => return Err(self.corrupt(&pk, &sk, "sf: missing or not a boolean".to_owned())),
        };
        Ok(CompactedItem {
            campaign_id: campaign_id.to_owned(),
            minute,
            settled_final,
            ads,
            users,
        })
    }

    /// Every campaign's realtime counts of the UTC day starting at `day` through the realtime watermark (the
    /// day rows: one `Query` of a partition, a few hundred KB at 10,000 campaigns), by campaign id.
    pub async fn day_totals(&self, day: i64) -> Result<BTreeMap<String, Tally>, Error> {
        use tally_domain::store_keys::Counter;
        let pk = day_totals_pk(day)?;
        let mut out = BTreeMap::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(key_condition(false))
                .expression_attribute_values(":pk", AttributeValue::S(pk.clone()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.dynamo_error("Query", e))?;
            for item in page.items() {
                let sk = match item.get(SORT_KEY) {
                    Some(AttributeValue::S(s)) => s.clone(),
                    _ => return Err(self.corrupt(&pk, "?", "no string sort key".to_owned())),
                };
                let mut t = Tally::default();
                for c in Counter::ALL {
                    let v = match item.get(c.as_str()) {
                        Some(AttributeValue::N(n)) => n.parse::<u64>().map_err(|_| {
                            self.corrupt(&pk, &sk, format!("{}: {n:?} is not a count", c.as_str()))
                        })?,
                        None => 0,
                        Some(_) => {
                            return Err(self.corrupt(
                                &pk,
                                &sk,
                                format!("{}: not a number", c.as_str()),
                            ))
                        }
                    };
                    t.set(c, v);
                }
                out.insert(sk, t);
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// The stored watermark (strongly consistent); the default when none is stored yet.
    pub async fn watermark(&self) -> Result<Watermark, Error> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key(PARTITION_KEY, AttributeValue::S(WATERMARK_PK.to_owned()))
            .key(SORT_KEY, AttributeValue::S(WATERMARK_SK.to_owned()))
            .send()
            .await
            .map_err(|e| self.dynamo_error("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(Watermark::default());
        };
        let lane = |name: &str| -> Result<Option<i64>, Error> {
            match item.get(name) {
                None => Ok(None),
                Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| {
                    self.corrupt(
                        WATERMARK_PK,
                        WATERMARK_SK,
                        format!("{name}: {n:?} is not a minute"),
                    )
                }),
                Some(_) => {
                    Err(self.corrupt(WATERMARK_PK, WATERMARK_SK, format!("{name}: not a number")))
                }
            }
        };
        let w = Watermark {
            realtime: lane("rt")?,
            settled: lane("st")?,
        };
        w.check()
            .map_err(|e| self.corrupt(WATERMARK_PK, WATERMARK_SK, e.to_string()))?;
        Ok(w)
    }

    pub(crate) fn sk(&self, minute: i64) -> Result<String, Error> {
        checked_sk(minute)
    }

    pub(crate) fn dynamo_error<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        crate::error::dynamo_error(&self.table, op, err)
    }

    pub(crate) fn corrupt(&self, pk: &str, sk: &str, rule: String) -> Error {
        crate::error::corrupt_row(&self.table, pk, sk, rule)
    }
}
