//! The compactor's repair of a cache that lost its data: the epoch check at the start of every run, the
//! record of it next to the watermark, and the minutes recomputed from the deferred lane's archive. The
//! decisions are `tally_domain::compact_repair`'s; this module moves bytes.
//!
//! * The epoch lives in the cache under [`EPOCH_KEY`] and in the metrics table in the row `pk = compactor`,
//!   `sk = epoch` (attributes `epoch`, S, and `rp`, N: the repair bound, a minute), next to the watermark row.
//!   The row is written with a condition on the values read, so two compactors cannot both move it.
//! * The archive is read through `tally_domain::archive::decode_text` (the module of the writer's format), per
//!   UTC hour prefix (`tally_domain::archive::hour_prefix`): `ListObjectsV2` and `GetObject` under `events/` only,
//!   the grant the template gives the compactor.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use tally_contract::metrics_table::{PARTITION_KEY, SORT_KEY};

use aws_sdk_dynamodb::types::AttributeValue;
use tally_aws::store::CounterStore;
use tally_domain::compact::CompactedItem;
use tally_domain::compact_repair::{
    after_check, archive_hours, check_epoch, check_epoch_value, epoch_value, parse_archive_line,
    RepairFold, RepairState, EPOCH_KEY,
};
use tally_domain::exactly_once::Position;

use crate::CompactorError;

/// Partition and sort key of the epoch row.
pub const EPOCH_PK: &str = "compactor";
pub const EPOCH_SK: &str = "epoch";

/// Archive objects read at once.
const GETS_IN_FLIGHT: usize = 8;

/// Where the repair reads and records.
#[derive(Clone, Debug)]
pub struct Repair {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    window_secs: u64,
}

/// The epoch check of a run: what is recorded now, and the epoch the cache holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub state: RepairState,
    pub epoch: String,
    /// Whether this run noticed a loss.
    pub lost: bool,
}

impl Repair {
    /// `table`: the metrics table (the epoch row); `bucket`: the archive; `window_secs`: the dedup window
    /// (how far before the repaired minutes the archive is read).
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        s3: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        window_secs: u64,
    ) -> Repair {
        Repair {
            dynamodb,
            table: table.into(),
            s3,
            bucket: bucket.into(),
            window_secs,
        }
    }

    /// Reads the recorded state, makes sure the cache holds an epoch (a new random one when it has none),
    /// decides, and records what changed (a conditional write: a concurrent compactor that recorded first
    /// fails this run, and the next one goes on from what it recorded).
    pub async fn check(
        &self,
        store: &CounterStore,
        now_ms: i64,
    ) -> Result<Checked, CompactorError> {
        let state = self.state().await?;
        let fresh = epoch_value(fastrand::u128(..));
        let reply = store.set_if_missing(EPOCH_KEY, &fresh).await?;
        let check = check_epoch(state.epoch.as_deref(), reply.as_deref());
        let epoch = reply.unwrap_or(fresh);
        let lost = check == tally_domain::compact_repair::EpochCheck::Lost;
        let Some(next) = after_check(&state, check, &epoch, now_ms) else {
            return Ok(Checked { state, epoch, lost });
        };
        if lost {
            tracing::warn!(
                message = "the cache lost its data: minutes up to the repair bound are taken from the archive",
                recorded_epoch = state.epoch.as_deref(),
                cache_epoch = %epoch,
                repair_to = next.repair_to,
            );
        }
        self.record(&state, &next).await?;
        Ok(Checked {
            state: next,
            epoch,
            lost,
        })
    }

    /// Whether the cache still holds `epoch` (after a run read its minutes, before it writes them): a cache
    /// that lost its data during the run fails the run, and the next one repairs.
    pub async fn confirm(&self, store: &CounterStore, epoch: &str) -> Result<(), CompactorError> {
        match store.get(EPOCH_KEY).await? {
            Some(e) if e == epoch => Ok(()),
            found => Err(CompactorError::CacheLost {
                expected: epoch.to_owned(),
                found,
            }),
        }
    }

    /// The recorded state (strongly consistent); the default when none is recorded yet.
    pub async fn state(&self) -> Result<RepairState, CompactorError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .consistent_read(true)
            .key(PARTITION_KEY, AttributeValue::S(EPOCH_PK.to_owned()))
            .key(SORT_KEY, AttributeValue::S(EPOCH_SK.to_owned()))
            .send()
            .await
            .map_err(|e| self.dynamo("GetItem", e))?;
        let Some(item) = out.item() else {
            return Ok(RepairState::default());
        };
        let corrupt = |rule: String| CompactorError::CorruptEpochRow {
            table: self.table.clone(),
            rule,
        };
        let epoch = match item.get("epoch") {
            None => None,
            Some(AttributeValue::S(s)) => {
                check_epoch_value(s).map_err(|e| corrupt(e.to_string()))?;
                Some(s.clone())
            }
            Some(_) => return Err(corrupt("epoch: not a string".to_owned())),
        };
        let repair_to = match item.get("rp") {
            None => None,
            Some(AttributeValue::N(n)) => Some(
                n.parse::<i64>()
                    .map_err(|_| corrupt(format!("rp: {n:?} is not a minute")))?,
            ),
            Some(_) => return Err(corrupt("rp: not a number".to_owned())),
        };
        Ok(RepairState { epoch, repair_to })
    }

    /// Writes `to` if the row still holds `read`.
    async fn record(&self, read: &RepairState, to: &RepairState) -> Result<(), CompactorError> {
        let mut put = self
            .dynamodb
            .put_item()
            .table_name(&self.table)
            .item(PARTITION_KEY, AttributeValue::S(EPOCH_PK.to_owned()))
            .item(SORT_KEY, AttributeValue::S(EPOCH_SK.to_owned()))
            .expression_attribute_names("#e", "epoch")
            .expression_attribute_names("#r", "rp");
        if let Some(e) = &to.epoch {
            put = put.item("epoch", AttributeValue::S(e.clone()));
        }
        if let Some(r) = to.repair_to {
            put = put.item("rp", AttributeValue::N(r.to_string()));
        }
        let mut conditions = Vec::new();
        match &read.epoch {
            Some(e) => {
                conditions.push("#e = :e");
                put = put.expression_attribute_values(":e", AttributeValue::S(e.clone()));
            }
            None => conditions.push("attribute_not_exists(#e)"),
        }
        match read.repair_to {
            Some(r) => {
                conditions.push("#r = :r");
                put = put.expression_attribute_values(":r", AttributeValue::N(r.to_string()));
            }
            None => conditions.push("attribute_not_exists(#r)"),
        }
        match put
            .condition_expression(conditions.join(" AND "))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(CompactorError::EpochRace {
                    table: self.table.clone(),
                })
            }
            Err(err) => Err(self.dynamo("PutItem", err)),
        }
    }

    /// The dedup window: how far before the repaired minutes the archive is read.
    pub fn window_secs(&self) -> u64 {
        self.window_secs
    }

    /// The items of `minutes` from the archive: every object of the hours from the dedup window before them
    /// to 15 s after their end (`archive_hours`), each line counted once per id as the lanes count it; and per
    /// shard the last record read (how far the deferred lane has archived it, `RepairFold::archived`).
    pub async fn items(
        &self,
        minutes: RangeInclusive<i64>,
    ) -> Result<(Vec<CompactedItem>, BTreeMap<String, Position>), CompactorError> {
        use futures_util::stream::{self, StreamExt, TryStreamExt};
        let mut fold = RepairFold::new(minutes.clone());
        let mut objects = 0;
        for hour in archive_hours(&minutes, self.window_secs) {
            let keys = self.list(&tally_domain::archive::hour_prefix(hour)).await?;
            objects += keys.len();
            let mut bodies = stream::iter(keys.into_iter().map(|key| self.get(key)))
                .buffer_unordered(GETS_IN_FLIGHT);
            while let Some((key, text)) = bodies.try_next().await? {
                for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
                    let event =
                        parse_archive_line(line, i + 1).map_err(|e| CompactorError::Archive {
                            bucket: self.bucket.clone(),
                            key: key.clone(),
                            message: e.to_string(),
                        })?;
                    fold.add(event, i);
                }
            }
        }
        let items = fold.items();
        tracing::info!(
            message = "minutes recomputed from the archive",
            first = minutes.start(),
            last = minutes.end(),
            objects,
            ids = fold.ids(),
            items = items.len(),
        );
        Ok((items, fold.archived().clone()))
    }

    /// Every key under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, CompactorError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.s3_error(prefix, e))?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_owned()),
                _ => return Ok(keys),
            }
        }
    }

    /// One object's NDJSON text.
    async fn get(&self, key: String) -> Result<(String, String), CompactorError> {
        let out = self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.s3_error(&key, e))?;
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| CompactorError::Archive {
                bucket: self.bucket.clone(),
                key: key.clone(),
                message: format!("reading the body: {e}"),
            })?
            .into_bytes();
        if !tally_domain::archive::is_object_key(&key) {
            return Err(CompactorError::Archive {
                bucket: self.bucket.clone(),
                key: key.clone(),
                message: "not a name the deferred lane writes (events/…/<shard>-<first>-<last>.ndjson.gz)"
                    .to_owned(),
            });
        }
        let text =
            tally_domain::archive::decode_text(&body).map_err(|e| CompactorError::Archive {
                bucket: self.bucket.clone(),
                key: key.clone(),
                message: format!("not gzip NDJSON in UTF-8: {e}"),
            })?;
        Ok((key, text))
    }

    fn s3_error<E>(&self, key: &str, err: aws_sdk_s3::error::SdkError<E>) -> CompactorError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        CompactorError::Archive {
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
        }
    }

    fn dynamo<E>(
        &self,
        op: &'static str,
        err: aws_sdk_dynamodb::error::SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
    ) -> CompactorError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        CompactorError::Table {
            table: self.table.clone(),
            op,
            message: match err.as_service_error() {
                Some(e) => format!(
                    "{}: {}",
                    e.code().unwrap_or("error"),
                    e.message().unwrap_or("no message")
                ),
                None => aws_sdk_dynamodb::error::DisplayErrorContext(&err).to_string(),
            },
        }
    }
}

/// Per campaign, the first and last millisecond of its minutes among `items` (the campaign index's spans).
pub fn spans(items: &[CompactedItem]) -> BTreeMap<String, (i64, i64)> {
    let mut seen: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for item in items {
        let (first, last) = (item.minute * 60_000, item.minute * 60_000 + 59_999);
        let span = seen
            .entry(item.campaign_id.clone())
            .or_insert((first, last));
        span.0 = span.0.min(first);
        span.1 = span.1.max(last);
    }
    seen
}
