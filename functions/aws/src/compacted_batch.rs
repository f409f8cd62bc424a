//! Batched reads of compacted items (`BatchGetItem`): the dashboard's page of campaigns reads its items in a
//! handful of calls instead of one `Query` per campaign. Apart from [`crate::compacted`] so that a function that
//! reads no pages (the compactor) reaches no `dynamodb:BatchGetItem`: the least-privilege test
//! (`infra/pipeline/tests/it/least_privilege.rs`) derives each role's actions from the modules its code names.

use std::collections::HashMap;
use tally_contract::metrics_table::{PARTITION_KEY, SORT_KEY};

use aws_sdk_dynamodb::types::AttributeValue;
use tally_domain::compact::{CompactedItem, Span};

use crate::compacted::{span_pk, CompactedTable};
use crate::Error;

/// Keys per `BatchGetItem` (DynamoDB's limit).
pub const BATCH_GET_KEYS: usize = 100;
/// `BatchGetItem`s in flight at once in [`items_at`].
const BATCH_GETS_IN_FLIGHT: usize = 4;
/// Rounds of a `BatchGetItem` (the first and the re-asks of unprocessed keys).
const BATCH_GET_ROUNDS: u32 = 6;

/// The items of `cells` ((span, campaign, first minute of the span)) that exist, in no particular order:
/// `BatchGetItem`s of at most [`BATCH_GET_KEYS`] keys, strongly consistent, a few at once, keys the table
/// left unprocessed asked again. A bucket without an item (no counts in either lane) is absent. This is how
/// a page of campaigns has its items read in a handful of calls instead of one `Query` per campaign.
pub async fn items_at(
    table: &CompactedTable,
    cells: &[(Span, String, i64)],
) -> Result<Vec<CompactedItem>, Error> {
    use futures_util::stream::{self, StreamExt, TryStreamExt};
    let mut keys = Vec::with_capacity(cells.len());
    for (span, campaign, minute) in cells {
        if span.bucket(*minute) != *minute {
            return Err(Error::InvalidQuery(format!(
                "minute {minute} is not the first minute of a {span:?} span"
            )));
        }
        keys.push((span_pk(*span, campaign), table.sk(*minute)?));
    }
    keys.sort();
    keys.dedup();
    // pk → (span, campaign), to parse what comes back.
    let owners: HashMap<String, (Span, String)> = cells
        .iter()
        .map(|(span, campaign, _)| (span_pk(*span, campaign), (*span, campaign.clone())))
        .collect();
    let owners = &owners;
    let chunks: Vec<Vec<(String, String)>> =
        keys.chunks(BATCH_GET_KEYS).map(<[_]>::to_vec).collect();
    let reads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| async move {
            let mut out = Vec::new();
            for item in batch_get(table, chunk).await? {
                let pk = match item.get(PARTITION_KEY) {
                    Some(AttributeValue::S(s)) => s.clone(),
                    _ => return Err(table.corrupt("?", "?", "no string partition key".to_owned())),
                };
                let Some((span, campaign)) = owners.get(&pk) else {
                    return Err(table.corrupt(&pk, "?", "a key that was not asked for".to_owned()));
                };
                out.push(table.parse_item(*span, campaign, &item)?);
            }
            Ok::<_, Error>(out)
        })
        .collect();
    let read: Vec<Vec<CompactedItem>> = stream::iter(reads)
        .buffer_unordered(BATCH_GETS_IN_FLIGHT)
        .try_collect()
        .await?;
    Ok(read.into_iter().flatten().collect())
}

/// One `BatchGetItem` of `keys` ((pk, sk), at most [`BATCH_GET_KEYS`]), asking again for the keys the table
/// leaves unprocessed (throttling, the 16 MB answer limit) after a short pause, at most
/// [`BATCH_GET_ROUNDS`] times.
async fn batch_get(
    table: &CompactedTable,
    keys: Vec<(String, String)>,
) -> Result<Vec<HashMap<String, AttributeValue>>, Error> {
    use aws_sdk_dynamodb::types::KeysAndAttributes;
    let mut pending: Vec<HashMap<String, AttributeValue>> = keys
        .into_iter()
        .map(|(pk, sk)| {
            HashMap::from([
                (PARTITION_KEY.to_owned(), AttributeValue::S(pk)),
                (SORT_KEY.to_owned(), AttributeValue::S(sk)),
            ])
        })
        .collect();
    let mut out = Vec::new();
    for round in 0..BATCH_GET_ROUNDS {
        if pending.is_empty() {
            return Ok(out);
        }
        if round > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(50 << round.min(5))).await;
        }
        let request = KeysAndAttributes::builder()
            .set_keys(Some(std::mem::take(&mut pending)))
            .consistent_read(true)
            .build()
            .map_err(|e| Error::InvalidQuery(format!("BatchGetItem keys: {e}")))?;
        let answer = table
            .client
            .batch_get_item()
            .request_items(&table.table, request)
            .send()
            .await
            .map_err(|e| table.dynamo_error("BatchGetItem", e))?;
        if let Some(items) = answer.responses().and_then(|r| r.get(&table.table)) {
            out.extend(items.iter().cloned());
        }
        if let Some(left) = answer.unprocessed_keys().and_then(|u| u.get(&table.table)) {
            pending = left.keys().to_vec();
        }
    }
    if pending.is_empty() {
        Ok(out)
    } else {
        Err(Error::Dynamo {
            op: "BatchGetItem",
            table: table.table.clone(),
            message: format!(
                "{} keys left unprocessed after {BATCH_GET_ROUNDS} rounds (throttled); retry shortly",
                pending.len()
            ),
            retryable: true,
        })
    }
}
