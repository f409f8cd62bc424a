//! The compactor's writes to the metrics table (it is the table's only writer; its repair's epoch row is
//! `tally_compactor::repair`'s): compacted minute, hour and day items and the watermark (layout in
//! [`crate::compacted`]), and the campaign index rows (layout in [`crate::metrics`]). Kept apart from the readers so that a function that only reads (query) does not reach a
//! write: the least-privilege test (`infra/pipeline/tests/it/least_privilege.rs`) derives each role's grants
//! from the modules its crate names.

use std::collections::BTreeMap;
use tally_contract::metrics_table::{PARTITION_KEY, SORT_KEY};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use futures_util::stream::{self, StreamExt};
use tally_domain::compact::{
    campaign_index_expires_at, encode_ads, CompactedItem, Span, Watermark,
    DEFAULT_CAMPAIGN_INDEX_DAYS,
};
use tally_domain::store_keys::Counter;
use tally_domain::totals::Increment;

use crate::compacted::{
    checked_sk, day_totals_pk, span_pk, CompactedTable, DAY_TOTALS_MINUTE, WATERMARK_PK,
    WATERMARK_SK,
};
use crate::metrics::CAMPAIGNS_PK;
use crate::Error;

/// Attempts at moving the watermark against concurrent compactors.
const MAX_ATTEMPTS: u32 = 8;
/// Index writes in flight at once.
const CONCURRENCY: usize = 16;

/// The writer of the metrics table.
#[derive(Clone, Debug)]
pub struct MetricsWriter {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Days an index row lives after its campaign's last event ([`MetricsWriter::touch_campaigns`]).
    campaign_index_days: u32,
    /// Reads the watermark again when another compactor moved it.
    reader: CompactedTable,
}

impl MetricsWriter {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> MetricsWriter {
        let table = table.into();
        MetricsWriter {
            reader: CompactedTable::new(client.clone(), table.clone()),
            client,
            table,
            campaign_index_days: DEFAULT_CAMPAIGN_INDEX_DAYS,
        }
    }

    /// Index rows expire `days` after their campaign's last event instead of
    /// [`DEFAULT_CAMPAIGN_INDEX_DAYS`] (the stack option `campaign_index_days`).
    pub fn with_campaign_index_days(mut self, days: u32) -> MetricsWriter {
        self.campaign_index_days = days;
        self
    }

    /// The writer of the table `reader` reads.
    pub fn of(reader: &CompactedTable) -> MetricsWriter {
        MetricsWriter::new(reader.client().clone(), reader.table())
    }

    /// Writes a minute item (the full state, unconditionally: the same item whatever the number of writes).
    pub async fn put_item(&self, item: &CompactedItem) -> Result<(), Error> {
        self.put_span_item(Span::Minute, item).await
    }

    /// Writes an item of a span (`item.minute` is the span's first minute), as [`MetricsWriter::put_item`].
    pub async fn put_span_item(&self, span: Span, item: &CompactedItem) -> Result<(), Error> {
        let sk = checked_sk(item.minute)?;
        let ads = encode_ads(item).map_err(|e| Error::InvalidQuery(e.to_string()))?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                PARTITION_KEY,
                AttributeValue::S(span_pk(span, &item.campaign_id)),
            )
            .item(SORT_KEY, AttributeValue::S(sk))
            .item("ads", AttributeValue::B(Blob::new(ads)))
            .item("sf", AttributeValue::Bool(item.settled_final))
            .send()
            .await
            .map_err(|e| self.dynamo_error("PutItem", e))?;
        Ok(())
    }

    /// Adds each increment to its campaign's row of the day ([`crate::compacted`]'s layout): an `ADD` of the
    /// realtime counts and a `SET` of the minute, conditioned on the row's minute being earlier, so an
    /// increment already added (a retried run) adds nothing. A campaign's increments are applied in order,
    /// one at a time; campaigns at once.
    pub async fn add_day_totals(&self, increments: &[Increment]) -> Result<(), Error> {
        let mut per_campaign: BTreeMap<&str, Vec<&Increment>> = BTreeMap::new();
        for inc in increments {
            per_campaign.entry(&inc.campaign_id).or_default().push(inc);
        }
        let results: Vec<Result<(), Error>> = stream::iter(per_campaign.into_values())
            .map(|incs| async move {
                for inc in incs {
                    self.add_day_total(inc).await?;
                }
                Ok(())
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn add_day_total(&self, inc: &Increment) -> Result<(), Error> {
        let adds: Vec<String> = Counter::ALL
            .iter()
            .map(|c| format!("#{0} :{0}", c.as_str()))
            .collect();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(day_totals_pk(inc.day)?))
            .key(SORT_KEY, AttributeValue::S(inc.campaign_id.clone()))
            .update_expression(format!("SET #m = :m ADD {}", adds.join(", ")))
            .condition_expression("attribute_not_exists(#m) OR #m < :m")
            .expression_attribute_names("#m", DAY_TOTALS_MINUTE)
            .expression_attribute_values(":m", AttributeValue::N(inc.minute.to_string()));
        for c in Counter::ALL {
            // Names through placeholders: `view` and `value` are reserved words.
            update = update.expression_attribute_names(format!("#{}", c.as_str()), c.as_str());
            update = update.expression_attribute_values(
                format!(":{}", c.as_str()),
                AttributeValue::N(inc.realtime.get(c).to_string()),
            );
        }
        match update.send().await {
            Ok(_) => Ok(()),
            // The row holds this minute already (a retried run): nothing to add.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(self.dynamo_error("UpdateItem", err)),
        }
    }

    /// Records that campaigns were seen: `seen` maps a campaign id to the (first, last) receive time of its
    /// events in this batch. `first_seen_ms` is set once; `last_seen_ms` only moves forward, and with it
    /// `expires_at` (the table's TTL attribute): the campaign index window after the last event, so a campaign
    /// that stops leaves the index and one seen again comes back.
    pub async fn touch_campaigns(&self, seen: &BTreeMap<String, (i64, i64)>) -> Result<(), Error> {
        let days = self.campaign_index_days;
        let results: Vec<Result<(), Error>> = stream::iter(seen)
            .map(|(campaign_id, &(first, last))| async move {
                let result = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .key(PARTITION_KEY, AttributeValue::S(CAMPAIGNS_PK.to_owned()))
                    .key(SORT_KEY, AttributeValue::S(campaign_id.clone()))
                    .update_expression("SET first_seen_ms = if_not_exists(first_seen_ms, :first), last_seen_ms = :last, expires_at = :expires")
                    .condition_expression("attribute_not_exists(last_seen_ms) OR last_seen_ms < :last")
                    .expression_attribute_values(":first", AttributeValue::N(first.to_string()))
                    .expression_attribute_values(":last", AttributeValue::N(last.to_string()))
                    .expression_attribute_values(
                        ":expires",
                        AttributeValue::N(campaign_index_expires_at(last, days).to_string()),
                    )
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
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Moves the watermark from `read` (what this compactor read before its run) to `to`, never back: the
    /// write is conditioned on the stored row still being `read`. If another compactor moved it meanwhile,
    /// the stored row is read again and the lane-wise later of the two is written (or nothing, when the
    /// stored one is already at or past `to`). Returns the watermark stored in the end.
    pub async fn advance_watermark(
        &self,
        read: Watermark,
        to: Watermark,
    ) -> Result<Watermark, Error> {
        let invalid = |e: tally_domain::compact::WatermarkError| Error::InvalidQuery(e.to_string());
        let mut current = read;
        let mut target = read.advance(to).map_err(invalid)?;
        for _ in 0..MAX_ATTEMPTS {
            if target == current {
                return Ok(current);
            }
            let mut put = self
                .client
                .put_item()
                .table_name(&self.table)
                .item(PARTITION_KEY, AttributeValue::S(WATERMARK_PK.to_owned()))
                .item(SORT_KEY, AttributeValue::S(WATERMARK_SK.to_owned()));
            for (name, v) in [("rt", target.realtime), ("st", target.settled)] {
                if let Some(v) = v {
                    put = put.item(name, AttributeValue::N(v.to_string()));
                }
            }
            let mut conditions = Vec::new();
            for (name, v) in [("rt", current.realtime), ("st", current.settled)] {
                match v {
                    Some(v) => {
                        conditions.push(format!("#{name} = :{name}"));
                        put = put.expression_attribute_values(
                            format!(":{name}"),
                            AttributeValue::N(v.to_string()),
                        );
                    }
                    None => conditions.push(format!("attribute_not_exists(#{name})")),
                }
                put = put.expression_attribute_names(format!("#{name}"), name);
            }
            match put
                .condition_expression(conditions.join(" AND "))
                .send()
                .await
            {
                Ok(_) => return Ok(target),
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    current = self.reader.watermark().await?;
                    target = Watermark {
                        realtime: current.realtime.max(target.realtime),
                        settled: current.settled.max(target.settled),
                    };
                }
                Err(err) => return Err(self.dynamo_error("PutItem", err)),
            }
        }
        Err(Error::Contention {
            table: self.table.clone(),
            pk: WATERMARK_PK.to_owned(),
            sk: WATERMARK_SK.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn dynamo_error<E>(&self, op: &'static str, err: SdkError<E, HttpResponse>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        crate::error::dynamo_error(&self.table, op, err)
    }
}
