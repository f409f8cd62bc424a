//! The metrics table's campaign index, read.
//!
//! * Campaign index rows: `pk = "campaigns"`, `sk = "{campaign_id}"`, `first_seen_ms`, `last_seen_ms`,
//!   `expires_at` (N; unix seconds, the table's TTL attribute: the index window after the last event),
//!   written by the compactor ([`crate::metrics_write::MetricsWriter::touch_campaigns`]) and listed by the
//!   query API and the compactor ([`MetricsTable::campaigns_at`], which skips rows already expired: DynamoDB
//!   deletes them lazily, up to days later).
//! * [`Resolution`]: the query API's steps.
//!
//! The record positions the lanes decode batches into are [`crate::fence`]'s.
//!
//! The per-row counter layout (`c#{campaign}` rows per lane, resolution and ad, fenced per row) that used to
//! live here is gone: the lanes apply their batches to the counter cache ([`crate::store`]) and the compactor
//! writes the compacted minute, hour and day items ([`crate::compacted`]).

use std::collections::HashMap;
use tally_contract::metrics_table::{key_condition, SORT_KEY, TTL_ATTRIBUTE};

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;

use tally_domain::compact::campaign_index_row_live;

use crate::error::{corrupt_row, dynamo_error};
use crate::Error;

/// Partition key of the campaign index rows.
pub const CAMPAIGNS_PK: &str = "campaigns";

/// A step of the query API's series (minute, hour, day).
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
}

/// One row of the campaign index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignEntry {
    pub campaign_id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// The metrics table's campaign index.
#[derive(Clone, Debug)]
pub struct MetricsTable {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl MetricsTable {
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> MetricsTable {
        MetricsTable {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Every index row still stored, ordered by id: expired ones too, until DynamoDB deletes them.
    pub async fn campaigns(&self) -> Result<Vec<CampaignEntry>, Error> {
        self.campaigns_at(i64::MIN).await
    }

    /// The campaigns whose index row has not expired at `now_ms` (seen within the index window), ordered by
    /// id. What the query API lists and the compactor rolls up.
    pub async fn campaigns_at(&self, now_ms: i64) -> Result<Vec<CampaignEntry>, Error> {
        let items = self.query_all(CAMPAIGNS_PK, None).await?;
        items
            .iter()
            .filter(|item| campaign_index_row_live(expires_at(item), now_ms))
            .map(|item| {
                let sk = string_attr(item, SORT_KEY).unwrap_or_default();
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
                None => request.key_condition_expression(key_condition(false)),
                Some((lo, hi)) => request
                    .key_condition_expression(key_condition(true))
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

fn parse_number(value: &AttributeValue) -> Result<u64, String> {
    match value {
        AttributeValue::N(n) => n
            .parse()
            .map_err(|_| format!("{n:?} is not a whole number")),
        _ => Err("not a number".to_owned()),
    }
}

/// The row's `expires_at` (unix seconds), when it has a numeric one.
fn expires_at(item: &HashMap<String, AttributeValue>) -> Option<i64> {
    match item.get(TTL_ATTRIBUTE) {
        Some(AttributeValue::N(n)) => n.parse().ok(),
        _ => None,
    }
}

fn string_attr(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(s)) => Some(s.clone()),
        _ => None,
    }
}
