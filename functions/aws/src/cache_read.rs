//! Reading closed minutes out of the counter store (Valkey) for the compactor and the readers.
//!
//! A minute of a lane is spread over the lane's shards: per shard, the index set `{<lane>:<shard>}:i#<minute>`
//! names the campaigns with counters in it, and each campaign's hash `{<lane>:<shard>}:c#<campaign>#<minute>`
//! holds `<ad>#<counter>` fields. [`CounterStore::read_minute`] reads them (`SMEMBERS`, then one `HGETALL` per
//! campaign, all shards at once) and sums them with `tally_domain::compact::fold_hash`;
//! [`CounterStore::compact_minute`] makes both lanes of a minute into compacted items. The shards are the
//! members of `{<lane>}:shards` ([`CounterStore::register_shard`]).

use std::collections::{BTreeMap, BTreeSet};

use futures_util::stream::{self, StreamExt, TryStreamExt};
use tally_domain::compact::{fold_hash, fold_users, CompactedItem, MinuteJob};
use tally_domain::event::check_id;
use tally_domain::exactly_once::{check_shard_id, Tally};
use tally_domain::hll::Hll;
use tally_domain::store_keys::{counter_key, index_key, mark_key, shards_key, StoreLane};

use crate::store::CounterStore;
use crate::Error;

/// Per campaign, per ad: one lane's counts of one minute, summed over shards.
pub type MinuteCounts = BTreeMap<String, BTreeMap<String, Tally>>;

/// Per campaign, per ad: one lane's unique-user sketches of one minute, merged over shards (settled lane).
pub type MinuteUsers = BTreeMap<String, BTreeMap<String, Hll>>;

/// Per ad: counts and unique-user sketches.
pub type AdSums = (BTreeMap<String, Tally>, BTreeMap<String, Hll>);

/// A campaign's counts per (ad, minute) over a range, and its unique-user sketch over it.
pub type CampaignRange = (BTreeMap<(String, i64), Tally>, Hll);

/// A hash's fields and values as read.
type Fields = Vec<(String, String)>;

/// A counter hash as read: (campaign, key, fields and values).
type HashRead = (String, String, Vec<(String, String)>);

/// Reads in flight at once.
const READS_IN_FLIGHT: usize = 64;

/// The settled lane's open minutes as one reader read them, per (campaign, minute), kept while nothing in the
/// lane can have changed: the version is the lane's shards, each shard's fence mark and the cache's epoch
/// ([`CounterStore::settled_version`]). Every write to a settled counter hash is an apply step that moves its
/// shard's mark in the same atomic step, and a cache that lost its data has lost the epoch too, so an equal
/// version means equal hashes. The version is read before the hashes: a step landing in between is seen by
/// the next read as a new version (the kept sums are then dropped, never served as older than they are).
///
/// Why: the settled lane moves every batching window (30 s by default), while a dashboard, or the load test's
/// freshness probes, read the same open minutes many times a second; each read was an `HGETALL` of every
/// shard's hash with its sketch registers (thousands of fields), parsed and folded into sketches.
#[derive(Debug, Default)]
pub struct SettledKept {
    kept: std::sync::Mutex<KeptMinutes>,
}

#[derive(Debug, Default)]
struct KeptMinutes {
    version: SettledVersion,
    minutes: std::collections::HashMap<(String, i64), AdSums>,
}

/// The version [`SettledKept`] checks: (shard, its mark) for every shard of the settled lane, then the epoch.
pub type SettledVersion = Vec<(String, Option<String>)>;

/// Minutes kept at most; beyond, the next new minute starts the set again.
const MAX_KEPT_MINUTES: usize = 10_000;

impl SettledKept {
    /// The sums kept for (campaign, minute) at `version`.
    pub fn get(&self, version: &SettledVersion, campaign_id: &str, minute: i64) -> Option<AdSums> {
        let kept = self.kept.lock().ok()?;
        if kept.version != *version {
            return None;
        }
        kept.minutes.get(&(campaign_id.to_owned(), minute)).cloned()
    }

    /// Keeps `sums`, read after `version` was: kept sums of another version are dropped first.
    pub fn keep(&self, version: &SettledVersion, campaign_id: &str, minute: i64, sums: &AdSums) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        if kept.version != *version || kept.minutes.len() >= MAX_KEPT_MINUTES {
            kept.minutes.clear();
            kept.version = version.clone();
        }
        kept.minutes
            .insert((campaign_id.to_owned(), minute), sums.clone());
    }
}

impl CounterStore {
    /// The shards that ever wrote to a lane (`SMEMBERS {<lane>}:shards`), sorted. A member that is not a
    /// shard id is an error naming it: it would name keys in another slot.
    pub async fn shards(&self, lane: StoreLane) -> Result<Vec<String>, Error> {
        let key = shards_key(lane);
        let members: BTreeSet<String> = redis::cmd("SMEMBERS")
            .arg(&key)
            .query_async(&mut self.connection())
            .await
            .map_err(|e| self.failed("read shards", e))?;
        for m in &members {
            check_shard_id(m).map_err(|e| Error::CorruptStore {
                key: key.clone(),
                rule: e.to_string(),
            })?;
        }
        Ok(members.into_iter().collect())
    }

    /// The settled lane's version for [`SettledKept`]: each of `shards` with its fence mark (as stored), and the
    /// cache epoch (`tally_domain::compact_repair::EPOCH_KEY`), read at once. Each key is read with an `MGET` of
    /// one key (the keys are in different slots), not `GET`: the load test's meter tells the lanes' commands
    /// from readers' by name, and `GET` is the lanes' mark read (`tally_traffic::loadtest::lane_command`).
    pub async fn settled_version(&self, shards: &[String]) -> Result<SettledVersion, Error> {
        let epoch = tally_domain::compact_repair::EPOCH_KEY.to_owned();
        let keys = shards
            .iter()
            .map(|shard| (shard.clone(), mark_key(StoreLane::Settled, shard)))
            .chain(std::iter::once((String::new(), epoch)));
        let reads = keys.map(|(name, key)| async move {
            let value: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&key)
                .query_async(&mut self.connection())
                .await
                .map_err(|e| self.failed("read the settled lane's version", e))?;
            Ok::<_, Error>((name, value.into_iter().next().flatten()))
        });
        futures_util::future::try_join_all(reads).await
    }

    /// One minute of a lane summed over `shards`: per campaign, per ad, the counts and the sketches.
    pub async fn read_minute(
        &self,
        lane: StoreLane,
        shards: &[String],
        minute: i64,
    ) -> Result<(MinuteCounts, MinuteUsers), Error> {
        let (counts, users, _) = self.read_minute_keys(lane, shards, minute).await?;
        Ok((counts, users))
    }

    /// [`CounterStore::read_minute`], and the keys it read: every shard's index set, every hash listed.
    async fn read_minute_keys(
        &self,
        lane: StoreLane,
        shards: &[String],
        minute: i64,
    ) -> Result<(MinuteCounts, MinuteUsers, Vec<String>), Error> {
        // The campaigns of every shard, then every (shard, campaign) hash.
        let indexes = self.indexes(lane, shards, minute..=minute).await?;
        let mut keys: Vec<String> = indexes
            .iter()
            .map(|(shard, _, _)| index_key(lane, shard, minute))
            .collect();
        let hashes = indexes.iter().flat_map(|(shard, _, campaigns)| {
            campaigns
                .iter()
                .map(move |c| (c.clone(), counter_key(lane, shard, c, minute)))
        });
        let read: Vec<HashRead> = stream::iter(hashes.map(|(campaign, key)| {
            let mut conn = self.connection();
            async move {
                let fields: Vec<(String, String)> = redis::cmd("HGETALL")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.failed("read counters", e))?;
                Ok::<_, Error>((campaign, key, fields))
            }
        }))
        .buffer_unordered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
        let mut out = MinuteCounts::new();
        let mut users = MinuteUsers::new();
        for (campaign, key, fields) in read {
            let view = || fields.iter().map(|(f, v)| (f.as_str(), v.as_str()));
            let corrupt = |e: tally_domain::compact::CompactError| Error::CorruptStore {
                key: key.clone(),
                rule: e.to_string(),
            };
            fold_hash(out.entry(campaign.clone()).or_default(), view()).map_err(corrupt)?;
            fold_users(users.entry(campaign).or_default(), view()).map_err(corrupt)?;
            keys.push(key);
        }
        out.retain(|_, ads| {
            ads.retain(|_, t| !t.is_zero());
            !ads.is_empty()
        });
        users.retain(|_, ads| !ads.is_empty());
        Ok((out, users, keys))
    }

    /// Lets a compacted minute go: `keys` (what [`CounterStore::compact_minute`] read: every shard's index set of
    /// the minute in both lanes and every hash it lists) get `EXPIRE key ttl_secs LT` (a shorter expiry, never a
    /// longer one; a key without one gets it). Called by the compactor once the minute's settled-final item is
    /// written. Returns the keys given the expiry.
    pub async fn let_go(&self, keys: Vec<String>, ttl_secs: u64) -> Result<usize, Error> {
        let n = keys.len();
        stream::iter(keys.into_iter().map(|key| {
            let mut conn = self.connection();
            async move {
                let _: i64 = redis::cmd("EXPIRE")
                    .arg(&key)
                    .arg(ttl_secs)
                    .arg("LT")
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.failed("let a compacted minute go", e))?;
                Ok::<_, Error>(())
            }
        }))
        .buffer_unordered(READS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await?;
        Ok(n)
    }

    /// The index sets (`SMEMBERS {<lane>:<shard>}:i#<minute>`) of every shard and minute: (shard, minute,
    /// campaigns), every member checked to be a campaign id.
    async fn indexes(
        &self,
        lane: StoreLane,
        shards: &[String],
        minutes: std::ops::RangeInclusive<i64>,
    ) -> Result<Vec<(String, i64, BTreeSet<String>)>, Error> {
        // Owned (shard, minute) pairs: a closure over borrowed ones trips the compiler's Send check in callers.
        let keys: Vec<(String, i64)> = minutes
            .flat_map(|minute| shards.iter().map(move |shard| (shard.clone(), minute)))
            .collect();
        stream::iter(keys.into_iter().map(|(shard, minute)| {
            let mut conn = self.connection();
            let key = index_key(lane, &shard, minute);
            async move {
                let campaigns: BTreeSet<String> = redis::cmd("SMEMBERS")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.failed("read index", e))?;
                for c in &campaigns {
                    check_id("campaign_id", c).map_err(|e| Error::CorruptStore {
                        key: key.clone(),
                        rule: format!("member is not a campaign id: {e}"),
                    })?;
                }
                Ok::<_, Error>((shard, minute, campaigns))
            }
        }))
        .buffer_unordered(READS_IN_FLIGHT)
        .try_collect()
        .await
    }

    /// The counts of every campaign in `only` (of every campaign when `None`) in a lane's minutes `from..=to`,
    /// per (ad, minute), summed over shards: the index sets say which hashes exist, and only those are read
    /// (one `SMEMBERS` per shard and minute, one `HGETALL` per existing (shard, campaign, minute) asked for).
    pub async fn read_range(
        &self,
        lane: StoreLane,
        from: i64,
        to: i64,
        only: Option<&BTreeSet<String>>,
    ) -> Result<BTreeMap<String, BTreeMap<(String, i64), Tally>>, Error> {
        Ok(self
            .read_range_users(lane, from, to, only)
            .await?
            .into_iter()
            .map(|(campaign, (series, _))| (campaign, series))
            .collect())
    }

    /// [`CounterStore::read_range`] with each campaign's unique-user sketch over the range (its ads' and
    /// minutes' registers merged; empty in the realtime lane, which keeps none). Campaigns without counts are
    /// absent.
    pub async fn read_range_users(
        &self,
        lane: StoreLane,
        from: i64,
        to: i64,
        only: Option<&BTreeSet<String>>,
    ) -> Result<BTreeMap<String, CampaignRange>, Error> {
        let mut out: BTreeMap<String, CampaignRange> = BTreeMap::new();
        if from > to {
            return Ok(out);
        }
        let shards = self.shards(lane).await?;
        let mut cells: Vec<(String, i64, String)> = Vec::new();
        for (shard, minute, campaigns) in self.indexes(lane, &shards, from..=to).await? {
            for campaign in campaigns {
                if only.is_some_and(|only| !only.contains(&campaign)) {
                    continue;
                }
                let key = counter_key(lane, &shard, &campaign, minute);
                cells.push((campaign, minute, key));
            }
        }
        let reads: Vec<_> = cells
            .into_iter()
            .map(|(campaign, minute, key)| {
                let mut conn = self.connection();
                async move {
                    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| self.failed("read counters", e))?;
                    Ok::<_, Error>((campaign, minute, key, fields))
                }
            })
            .collect();
        let read: Vec<(String, i64, String, Fields)> = stream::iter(reads)
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        for (campaign, minute, key, fields) in read {
            let view = || fields.iter().map(|(f, v)| (f.as_str(), v.as_str()));
            let corrupt = |e: tally_domain::compact::CompactError| Error::CorruptStore {
                key: key.clone(),
                rule: e.to_string(),
            };
            let mut ads = BTreeMap::new();
            fold_hash(&mut ads, view()).map_err(corrupt)?;
            let mut users = BTreeMap::new();
            fold_users(&mut users, view()).map_err(corrupt)?;
            let (series, sketch) = out.entry(campaign).or_default();
            for (ad, t) in ads {
                if !t.is_zero() {
                    series.entry((ad, minute)).or_default().merge(&t);
                }
            }
            for h in users.values() {
                sketch.merge(h);
            }
        }
        out.retain(|_, (series, _)| !series.is_empty());
        Ok(out)
    }

    /// The campaigns with counters in a lane's minutes `from..=to` (any shard): id → (first, last) minute.
    pub async fn campaigns_in(
        &self,
        lane: StoreLane,
        from: i64,
        to: i64,
    ) -> Result<BTreeMap<String, (i64, i64)>, Error> {
        let shards = self.shards(lane).await?;
        let mut out: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        if from > to {
            return Ok(out);
        }
        for (_, minute, campaigns) in self.indexes(lane, &shards, from..=to).await? {
            for c in campaigns {
                let seen = out.entry(c).or_insert((minute, minute));
                seen.0 = seen.0.min(minute);
                seen.1 = seen.1.max(minute);
            }
        }
        Ok(out)
    }

    /// One campaign's minute of a lane summed over `shards`, per ad (`HGETALL` of its hash on every shard).
    pub async fn read_campaign_minute(
        &self,
        lane: StoreLane,
        shards: &[String],
        campaign_id: &str,
        minute: i64,
    ) -> Result<BTreeMap<String, Tally>, Error> {
        Ok(self
            .read_campaign_minute_users(lane, shards, campaign_id, minute)
            .await?
            .0)
    }

    /// [`CounterStore::read_campaign_minute`] with the ads' unique-user sketches (settled lane).
    pub async fn read_campaign_minute_users(
        &self,
        lane: StoreLane,
        shards: &[String],
        campaign_id: &str,
        minute: i64,
    ) -> Result<AdSums, Error> {
        let reads: Vec<_> = shards
            .iter()
            .map(|shard| {
                let mut conn = self.connection();
                let key = counter_key(lane, shard, campaign_id, minute);
                async move {
                    let fields: Vec<(String, String)> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| self.failed("read counters", e))?;
                    Ok::<_, Error>((key, fields))
                }
            })
            .collect();
        let read: Vec<(String, Vec<(String, String)>)> = stream::iter(reads)
            .buffer_unordered(READS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut ads = BTreeMap::new();
        let mut users = BTreeMap::new();
        for (key, fields) in read {
            let view = || fields.iter().map(|(f, v)| (f.as_str(), v.as_str()));
            let corrupt = |e: tally_domain::compact::CompactError| Error::CorruptStore {
                key: key.clone(),
                rule: e.to_string(),
            };
            fold_hash(&mut ads, view()).map_err(corrupt)?;
            fold_users(&mut users, view()).map_err(corrupt)?;
        }
        ads.retain(|_, t: &mut Tally| !t.is_zero());
        Ok((ads, users))
    }

    /// The compacted items of one minute: both lanes read over their shards, one item per campaign with
    /// counts in either lane; with the keys read (for [`CounterStore::let_go`]).
    pub async fn compact_minute(&self, job: MinuteJob) -> Result<CompactedMinute, Error> {
        let (rt_shards, st_shards) = tokio::try_join!(
            self.shards(StoreLane::Realtime),
            self.shards(StoreLane::Settled)
        )?;
        let ((rt, _, mut keys), (st, st_users, st_keys)) = tokio::try_join!(
            self.read_minute_keys(StoreLane::Realtime, &rt_shards, job.minute),
            self.read_minute_keys(StoreLane::Settled, &st_shards, job.minute)
        )?;
        keys.extend(st_keys);
        let empty = BTreeMap::new();
        let no_users = BTreeMap::new();
        let campaigns: BTreeSet<&String> = rt.keys().chain(st.keys()).collect();
        let items = campaigns
            .into_iter()
            .map(|c| {
                CompactedItem::from_lanes(
                    c,
                    job.minute,
                    rt.get(c).unwrap_or(&empty),
                    st.get(c).unwrap_or(&empty),
                    job.settled_final,
                )
                .with_users(st_users.get(c).unwrap_or(&no_users).clone())
            })
            .collect();
        Ok(CompactedMinute { items, keys })
    }
}

/// What [`CounterStore::compact_minute`] made of a minute, and the cache keys it read.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactedMinute {
    pub items: Vec<CompactedItem>,
    pub keys: Vec<String>,
}
