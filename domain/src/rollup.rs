//! Aggregation: counters per (campaign, ad, minute) and per (campaign, minute).
//!
//! A [`Rollup`] is a commutative monoid: [`Rollup::merge`] is associative and commutative, the empty rollup is
//! its identity, and aggregating a concatenation of event slices equals merging their rollups (property tests
//! in `tests/it/laws.rs`). That is what lets the consumers aggregate per batch, per shard or per window in any
//! order and still arrive at the same numbers.
//!
//! The minute is the server receive time (`received_ms`), not the client's clock: client clocks are not
//! trusted, and a receive time is known for every event.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use crate::event::{Event, EventKind};
use crate::hll::{hash64, Hll};

/// What is counted for one key. Sums saturate instead of overflowing (so merging stays associative).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub impressions: u64,
    pub viewable: u64,
    pub clicks: u64,
    pub conversions: u64,
    /// Sum of `cost_micros`.
    pub spend_micros: u64,
    /// Sum of `value_micros` (conversions only).
    pub value_micros: u64,
    /// Distinct `user_id`s (events without a user id are not in it).
    pub users: Hll,
}

impl Counters {
    /// Adds one event.
    pub fn add(&mut self, e: &Event) {
        let user = e.user_id.as_deref().map(|u| hash64(u.as_bytes()));
        self.add_hashed(e, user);
    }

    /// [`Counters::add`] with the user id already hashed by [`hash64`] (an event is counted under two keys).
    fn add_hashed(&mut self, e: &Event, user_hash: Option<u64>) {
        let slot = match e.kind {
            EventKind::Impression => &mut self.impressions,
            EventKind::ViewableImpression => &mut self.viewable,
            EventKind::Click => &mut self.clicks,
            EventKind::Conversion => &mut self.conversions,
        };
        *slot = slot.saturating_add(1);
        self.spend_micros = self.spend_micros.saturating_add(e.cost_micros);
        self.value_micros = self.value_micros.saturating_add(e.value_micros);
        if let Some(h) = user_hash {
            self.users.insert_hash(h);
        }
    }

    pub fn merge(&mut self, other: &Counters) {
        self.impressions = self.impressions.saturating_add(other.impressions);
        self.viewable = self.viewable.saturating_add(other.viewable);
        self.clicks = self.clicks.saturating_add(other.clicks);
        self.conversions = self.conversions.saturating_add(other.conversions);
        self.spend_micros = self.spend_micros.saturating_add(other.spend_micros);
        self.value_micros = self.value_micros.saturating_add(other.value_micros);
        self.users.merge(&other.users);
    }

    /// All events counted.
    pub fn events(&self) -> u64 {
        self.impressions
            .saturating_add(self.viewable)
            .saturating_add(self.clicks)
            .saturating_add(self.conversions)
    }
}

/// A rollup key. Orders by campaign, then minute, then ad (the campaign total, `None`, first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupKey {
    pub campaign_id: String,
    /// `None` is the campaign total over all its ads.
    pub ad_id: Option<String>,
    /// Unix minutes: `received_ms` divided by 60,000, rounded down.
    pub minute: i64,
}

impl RollupKey {
    fn view(&self) -> KeyView<'_> {
        KeyView {
            campaign_id: &self.campaign_id,
            minute: self.minute,
            ad_id: self.ad_id.as_deref(),
        }
    }
}

/// A borrowed key, so that looking up an existing key allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KeyView<'a> {
    campaign_id: &'a str,
    minute: i64,
    ad_id: Option<&'a str>,
}

/// What a [`RollupKey`] borrows as, so a `HashMap<RollupKey, _>` can be searched with a [`KeyView`].
trait AsKeyView {
    fn key_view(&self) -> KeyView<'_>;
}

impl AsKeyView for RollupKey {
    fn key_view(&self) -> KeyView<'_> {
        self.view()
    }
}

impl AsKeyView for KeyView<'_> {
    fn key_view(&self) -> KeyView<'_> {
        *self
    }
}

impl<'a> Borrow<dyn AsKeyView + 'a> for RollupKey {
    fn borrow(&self) -> &(dyn AsKeyView + 'a) {
        self
    }
}

impl PartialEq for dyn AsKeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key_view() == other.key_view()
    }
}

impl Eq for dyn AsKeyView + '_ {}

impl Hash for dyn AsKeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key_view().hash(state);
    }
}

impl Hash for RollupKey {
    /// Must agree with the hash of `dyn AsKeyView` (the `Borrow` contract).
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.view().hash(state);
    }
}

impl PartialOrd for dyn AsKeyView + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn AsKeyView + '_ {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_view().cmp(&other.key_view())
    }
}

impl PartialOrd for RollupKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for RollupKey {
    /// Must agree with the order of `dyn AsKeyView` (the `Borrow` contract).
    fn cmp(&self, other: &Self) -> Ordering {
        self.view().cmp(&other.view())
    }
}

/// The unix minute of a unix millisecond timestamp.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// Counters per (campaign, ad, minute) and per (campaign, minute).
///
/// A hash map (with std's randomly keyed hasher, so client-chosen ids cannot force collisions): one hash and
/// usually one comparison per lookup, where an ordered map needs a dozen string comparisons. Iteration sorts.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Rollup {
    map: HashMap<RollupKey, Counters>,
}

impl std::fmt::Debug for Rollup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Rollup {
    pub fn new() -> Self {
        Rollup::default()
    }

    /// Counts one event under its ad's key and its campaign's total.
    pub fn add(&mut self, e: &Event) {
        let minute = minute_of(e.received_ms);
        let user = e.user_id.as_deref().map(|u| hash64(u.as_bytes()));
        self.update(&e.campaign_id, Some(&e.ad_id), minute, |c| {
            c.add_hashed(e, user)
        });
        self.update(&e.campaign_id, None, minute, |c| c.add_hashed(e, user));
    }

    /// Counts every event of a slice.
    pub fn extend<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for e in events {
            self.add(e);
        }
    }

    /// Applies `f` to the counters of a key, creating them when absent. One lookup, allocation-free, when the
    /// key exists (the common case within a batch).
    fn update(
        &mut self,
        campaign_id: &str,
        ad_id: Option<&str>,
        minute: i64,
        f: impl FnOnce(&mut Counters),
    ) {
        let view = KeyView {
            campaign_id,
            minute,
            ad_id,
        };
        if let Some(c) = self.map.get_mut(&view as &dyn AsKeyView) {
            f(c);
            return;
        }
        let mut c = Counters::default();
        f(&mut c);
        self.map.insert(
            RollupKey {
                campaign_id: campaign_id.to_owned(),
                ad_id: ad_id.map(str::to_owned),
                minute,
            },
            c,
        );
    }

    /// Adds every counter of `other` into this rollup.
    pub fn merge(&mut self, other: &Rollup) {
        for (k, c) in &other.map {
            self.update(&k.campaign_id, k.ad_id.as_deref(), k.minute, |mine| {
                mine.merge(c)
            });
        }
    }

    /// Keys in order: by campaign, minute, then ad (the campaign total first). Sorts on each call.
    pub fn iter(&self) -> impl Iterator<Item = (&RollupKey, &Counters)> {
        let mut entries: Vec<(&RollupKey, &Counters)> = self.map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.into_iter()
    }

    /// The counters of one key, if any event was counted under it.
    pub fn get(&self, campaign_id: &str, ad_id: Option<&str>, minute: i64) -> Option<&Counters> {
        let view = KeyView {
            campaign_id,
            minute,
            ad_id,
        };
        self.map.get(&view as &dyn AsKeyView)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl<'a> FromIterator<&'a Event> for Rollup {
    fn from_iter<I: IntoIterator<Item = &'a Event>>(iter: I) -> Self {
        let mut r = Rollup::new();
        r.extend(iter);
        r
    }
}
