//! An executable model of the counter store: the Valkey commands the functions issue, in memory, with
//! Valkey's semantics where they matter for exactness.
//!
//! * one keyspace; a key holds a string, a hash or a set, and the wrong command on it is a `WRONGTYPE` error;
//! * expiry in milliseconds, as Valkey decides it: a key with an expiry time `t` exists while `now <= t`;
//! * `SET key value NX GET EX secs` ([`MemoryStore::set_nx_get`]): returns the old value when the key exists
//!   (and changes nothing, its expiry included), sets it otherwise and returns nil;
//! * the apply script ([`MemoryStore::apply_atomic`]): one hash slot for all its keys (`CROSSSLOT` otherwise,
//!   as in cluster mode), the argument layout of [`crate::exactly_once::ApplyPlan::script_args`], and all or
//!   nothing.
//!
//! Time is an input ([`MemoryStore::advance_ms`]); nothing reads a clock. The property tests run every
//! interleaving of deliveries, retries and crashes against this model; a conformance test of the real script
//! against a real `valkey-server` belongs with the code that ships the script, checking it agrees with
//! [`MemoryStore::apply_atomic`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::exactly_once::{
    plan_apply, ApplyPlan, Batch, ClaimRequest, DedupWindow, PlanError, Position, PositionError,
    StepReply, Tally,
};
use crate::hll::Hll;
use crate::store_keys::{
    hash_slot, mark_key, parse_counter_field, parse_counter_key, parse_user_field, StoreLane,
};

/// An error the store answers with (the model's version of Valkey's error replies).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("WRONGTYPE key {key} holds another kind of value")]
    WrongType { key: String },
    #[error("CROSSSLOT keys in request don't hash to the same slot: {first} (slot {first_slot}) and {other} (slot {other_slot})")]
    CrossSlot {
        first: String,
        first_slot: u16,
        other: String,
        other_slot: u16,
    },
    #[error("apply script: bad arguments: {0}")]
    BadArgs(String),
    #[error("apply script: increment would overflow the field {field} of {key}")]
    Overflow { key: String, field: String },
}

/// Why [`MemoryStore::process`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Mark(#[from] PositionError),
    #[error("the mark of shard {shard} kept moving: {attempts} conflicting attempts")]
    Contention { shard: String, attempts: u32 },
}

/// What the apply script answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScriptReply {
    Applied,
    /// The stored mark (`None`: no mark) differed from the expected one; nothing changed.
    Conflict(Option<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Value {
    Str(String),
    Hash(BTreeMap<String, i64>),
    Set(BTreeSet<String>),
}

/// Commands served, by kind (what the store would bill).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommandCounts {
    pub set_nx_get: u64,
    pub get: u64,
    pub scripts: u64,
    pub conflicts: u64,
}

/// The in-memory counter store.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    now_ms: u64,
    values: HashMap<String, Value>,
    /// Absolute expiry times, ms.
    expiry: HashMap<String, u64>,
    pub commands: CommandCounts,
}

/// Attempts of [`MemoryStore::process`] before it gives up on a moving mark.
const MAX_CONFLICTS: u32 = 8;

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The store's clock, ms.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Lets time pass; keys whose expiry time is now in the past disappear.
    pub fn advance_ms(&mut self, ms: u64) {
        self.now_ms = self.now_ms.saturating_add(ms);
        let now = self.now_ms;
        let gone: Vec<String> = self
            .expiry
            .iter()
            .filter(|(_, &t)| now > t)
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.expiry.remove(&k);
            self.values.remove(&k);
        }
    }

    /// Loses everything (a cache node restarted without its data).
    pub fn flush(&mut self) {
        self.values.clear();
        self.expiry.clear();
    }

    /// `SET key value NX GET EX secs`.
    pub fn set_nx_get(
        &mut self,
        key: &str,
        value: &str,
        ex_secs: u64,
    ) -> Result<Option<String>, StoreError> {
        self.commands.set_nx_get += 1;
        match self.values.get(key) {
            Some(Value::Str(old)) => Ok(Some(old.clone())),
            Some(_) => Err(StoreError::WrongType {
                key: key.to_owned(),
            }),
            None => {
                self.values
                    .insert(key.to_owned(), Value::Str(value.to_owned()));
                self.expiry.insert(
                    key.to_owned(),
                    self.now_ms.saturating_add(ex_secs.saturating_mul(1000)),
                );
                Ok(None)
            }
        }
    }

    /// The claims of a batch, pipelined: one `SET … NX GET EX <window>` per request, replies in order.
    pub fn claim_many(
        &mut self,
        claims: &[ClaimRequest],
        window: DedupWindow,
    ) -> Result<Vec<Option<String>>, StoreError> {
        claims
            .iter()
            .map(|c| self.set_nx_get(&c.key, &c.value, window.secs()))
            .collect()
    }

    /// `GET key`.
    pub fn get(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.commands.get += 1;
        self.peek(key)
    }

    /// `GET` without counting a command (for assertions).
    pub fn peek(&self, key: &str) -> Result<Option<String>, StoreError> {
        match self.values.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s.clone())),
            Some(_) => Err(StoreError::WrongType {
                key: key.to_owned(),
            }),
        }
    }

    /// Writes a raw string (for tests that plant hostile values).
    pub fn set(&mut self, key: &str, value: &str) {
        self.values
            .insert(key.to_owned(), Value::Str(value.to_owned()));
        self.expiry.remove(key);
    }

    /// The stored mark of a shard, read and validated.
    pub fn read_mark(
        &mut self,
        lane: StoreLane,
        shard: &str,
    ) -> Result<Option<Position>, ProcessError> {
        match self.get(&mark_key(lane, shard))? {
            None => Ok(None),
            Some(m) => Ok(Some(Position::from_mark(shard, &m)?)),
        }
    }

    /// The apply script, `EVALSHA <apply> <keys> <args>`, with the layout of
    /// [`ApplyPlan::script_args`]. All or nothing: every argument and key type is checked before the first
    /// write.
    pub fn apply_atomic(
        &mut self,
        keys: &[String],
        args: &[String],
    ) -> Result<ScriptReply, StoreError> {
        self.commands.scripts += 1;
        let bad = |m: String| StoreError::BadArgs(m);
        let Some(mark_key) = keys.first() else {
            return Err(bad("no keys".to_owned()));
        };
        let slot = hash_slot(mark_key.as_bytes());
        for k in keys {
            let s = hash_slot(k.as_bytes());
            if s != slot {
                return Err(StoreError::CrossSlot {
                    first: mark_key.clone(),
                    first_slot: slot,
                    other: k.clone(),
                    other_slot: s,
                });
            }
        }
        let mut at = 0usize;
        let mut next = |what: &str| -> Result<&String, StoreError> {
            let v = args.get(at).ok_or_else(|| {
                StoreError::BadArgs(format!("missing {what} at ARGV[{}]", at + 1))
            })?;
            at += 1;
            Ok(v)
        };
        let expected = next("expected mark")?.clone();
        let new_mark = next("new mark")?.clone();
        let num = |v: &String, what: &str| -> Result<u64, StoreError> {
            v.parse::<u64>().map_err(|_| {
                StoreError::BadArgs(format!("{what} {v:?} is not a non-negative integer"))
            })
        };
        let ttl = num(next("ttl")?, "ttl")?;
        let hashes = usize::try_from(num(next("hash count")?, "hash count")?)
            .map_err(|_| bad("hash count too large".to_owned()))?;
        let sets = usize::try_from(num(next("set count")?, "set count")?)
            .map_err(|_| bad("set count too large".to_owned()))?;
        if keys.len() != 1 + hashes + sets {
            return Err(bad(format!(
                "{} keys for 1 mark + {hashes} hashes + {sets} sets",
                keys.len()
            )));
        }
        if new_mark.is_empty() {
            return Err(bad("empty new mark".to_owned()));
        }
        let mut incr: Vec<(usize, String, i64)> = Vec::new();
        let mut raise: Vec<(usize, String, i64)> = Vec::new();
        for h in 0..hashes {
            let n = num(next("field count")?, "field count")?;
            for _ in 0..n {
                let field = next("field")?.clone();
                let by = next("increment")?;
                let by = by
                    .parse::<i64>()
                    .map_err(|_| bad(format!("increment {by:?} is not a 64-bit integer")))?;
                incr.push((1 + h, field, by));
            }
            let m = num(next("register count")?, "register count")?;
            for _ in 0..m {
                let field = next("register field")?.clone();
                let rank = num(next("rank")?, "rank")?;
                let rank = i64::try_from(rank).map_err(|_| bad("rank too large".to_owned()))?;
                raise.push((1 + h, field, rank));
            }
        }
        // Per hash, in KEYS order: its index set and the member it adds there when it is new (the sets list
        // the campaigns of their hashes in KEYS order, so the pairing is by position, as in the script).
        let mut listed: Vec<(usize, String)> = Vec::with_capacity(hashes);
        for s in 0..sets {
            let n = num(next("member count")?, "member count")?;
            if n == 0 {
                return Err(bad(format!("member count of set {} is 0", s + 1)));
            }
            for _ in 0..n {
                listed.push((1 + hashes + s, next("member")?.clone()));
            }
        }
        if at != args.len() {
            return Err(bad(format!("{} arguments left over", args.len() - at)));
        }
        if listed.len() != hashes {
            return Err(bad(format!(
                "the sets list {} hashes of {hashes}",
                listed.len()
            )));
        }
        // Check types, then the mark.
        for (i, k) in keys.iter().enumerate() {
            let ok = match (self.values.get(k), i) {
                (None, _) => true,
                (Some(Value::Str(_)), 0) => true,
                (Some(Value::Hash(_)), i) => (1..=hashes).contains(&i),
                (Some(Value::Set(_)), i) => i > hashes,
                _ => false,
            };
            if !ok {
                return Err(StoreError::WrongType { key: k.clone() });
            }
        }
        let current = self.peek(mark_key)?;
        if current.as_deref().unwrap_or("") != expected {
            self.commands.conflicts += 1;
            return Ok(ScriptReply::Conflict(current));
        }
        // Overflow check before the first write (HINCRBY refuses an overflowing increment). A hash is new when
        // its first field was 0 (absent) before its HINCRBY, or it has no field.
        let mut sums: HashMap<(usize, &str), i64> = HashMap::new();
        let mut new = vec![true; 1 + hashes];
        let mut first_seen = vec![false; 1 + hashes];
        for (k, field, by) in &incr {
            let base = match sums.get(&(*k, field.as_str())) {
                Some(v) => *v,
                None => match self.values.get(&keys[*k]) {
                    Some(Value::Hash(h)) => h.get(field).copied().unwrap_or(0),
                    _ => 0,
                },
            };
            if !first_seen[*k] {
                first_seen[*k] = true;
                new[*k] = base == 0;
            }
            let sum = base.checked_add(*by).ok_or_else(|| StoreError::Overflow {
                key: keys[*k].clone(),
                field: field.clone(),
            })?;
            sums.insert((*k, field.as_str()), sum);
        }
        for ((k, field), v) in sums {
            // Types were checked above: an existing key here is a hash.
            if let Value::Hash(h) = self
                .values
                .entry(keys[k].clone())
                .or_insert_with(|| Value::Hash(BTreeMap::new()))
            {
                h.insert(field.to_owned(), v);
            }
        }
        // Registers keep the higher rank (HGET, then HSET when higher): a maximum, idempotent.
        for (k, field, rank) in raise {
            if let Value::Hash(h) = self
                .values
                .entry(keys[k].clone())
                .or_insert_with(|| Value::Hash(BTreeMap::new()))
            {
                let slot = h.entry(field).or_insert(0);
                *slot = (*slot).max(rank);
            }
        }
        // New hashes: their TTL (EXPIRE NX), their campaign in the minute's set, the set's TTL moved to now +
        // TTL (a plain EXPIRE).
        let at = self.now_ms.saturating_add(ttl.saturating_mul(1000));
        for (h, (set, member)) in listed.into_iter().enumerate() {
            let k = 1 + h;
            if !new[k] {
                continue;
            }
            if ttl > 0 && self.values.contains_key(&keys[k]) {
                self.expiry.entry(keys[k].clone()).or_insert(at);
            }
            if let Value::Set(s) = self
                .values
                .entry(keys[set].clone())
                .or_insert_with(|| Value::Set(BTreeSet::new()))
            {
                s.insert(member);
            }
            if ttl > 0 {
                self.expiry.insert(keys[set].clone(), at);
            }
        }
        self.values.insert(mark_key.clone(), Value::Str(new_mark));
        self.expiry.remove(mark_key);
        Ok(ScriptReply::Applied)
    }

    /// Runs a plan's step and reads the reply.
    pub fn step(&mut self, plan: &ApplyPlan, ttl_secs: u64) -> Result<StepReply, ProcessError> {
        let reply = self.apply_atomic(&plan.script_keys(), &plan.script_args(ttl_secs))?;
        Ok(match reply {
            ScriptReply::Applied => plan.read_reply(true, None)?,
            ScriptReply::Conflict(current) => plan.read_reply(false, current.as_deref())?,
        })
    }

    /// The whole sequence a function runs for one batch, uninterrupted: claims (pipelined with the mark
    /// read), plan, atomic step; on a conflict, plan again against the returned mark. The reference for the
    /// functions' I/O code; returns the plan that was applied.
    pub fn process(
        &mut self,
        lane: StoreLane,
        batch: &Batch,
        window: DedupWindow,
        ttl_secs: u64,
        mut keep: impl FnMut(&crate::event::Event) -> bool,
    ) -> Result<ApplyPlan, ProcessError> {
        let replies = self.claim_many(batch.claims(), window)?;
        let Some(shard) = batch.shard() else {
            return Ok(plan_apply(lane, batch, &replies, None, &mut keep)?);
        };
        let mut mark = self.read_mark(lane, shard)?;
        for _ in 0..MAX_CONFLICTS {
            let plan = plan_apply(lane, batch, &replies, mark.as_ref(), &mut keep)?;
            if plan.is_noop() {
                return Ok(plan);
            }
            match self.step(&plan, ttl_secs)? {
                StepReply::Applied => return Ok(plan),
                StepReply::Conflict { current } => mark = current,
            }
        }
        Err(ProcessError::Contention {
            shard: shard.to_owned(),
            attempts: MAX_CONFLICTS,
        })
    }

    /// The counters of a lane summed over every shard, per (campaign, ad, minute): what a reader gets.
    /// Fields the layout does not know are ignored (and counted in the second value).
    pub fn counters(&self, lane: StoreLane) -> (BTreeMap<(String, String, i64), Tally>, usize) {
        let mut out: BTreeMap<(String, String, i64), Tally> = BTreeMap::new();
        let mut unknown = 0;
        for (key, value) in &self.values {
            let Some((l, _shard, campaign, minute)) = parse_counter_key(key) else {
                continue;
            };
            let (true, Value::Hash(h)) = (l == lane, value) else {
                continue;
            };
            for (field, v) in h {
                if parse_user_field(field).is_some() {
                    continue;
                }
                let (Some((ad, counter)), Ok(v)) = (parse_counter_field(field), u64::try_from(*v))
                else {
                    unknown += 1;
                    continue;
                };
                let t = out
                    .entry((campaign.to_owned(), ad.to_owned(), minute))
                    .or_default();
                t.set(counter, t.get(counter).saturating_add(v));
            }
        }
        (out, unknown)
    }

    /// The unique-user sketches of a lane per (campaign, ad, minute), merged over every shard's registers:
    /// what a reader gets. Register fields with a rank the sketch cannot hold are ignored.
    pub fn users(&self, lane: StoreLane) -> BTreeMap<(String, String, i64), Hll> {
        let mut out: BTreeMap<(String, String, i64), Hll> = BTreeMap::new();
        for (key, value) in &self.values {
            let Some((l, _shard, campaign, minute)) = parse_counter_key(key) else {
                continue;
            };
            let (true, Value::Hash(h)) = (l == lane, value) else {
                continue;
            };
            for (field, v) in h {
                let (Some((ad, register)), Ok(rank)) = (parse_user_field(field), u8::try_from(*v))
                else {
                    continue;
                };
                let sketch = out
                    .entry((campaign.to_owned(), ad.to_owned(), minute))
                    .or_default();
                let _ = sketch.raise(register, rank);
            }
        }
        out
    }

    /// Members of a set key (empty when absent).
    pub fn members(&self, key: &str) -> BTreeSet<String> {
        match self.values.get(key) {
            Some(Value::Set(s)) => s.clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether a key exists.
    pub fn exists(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Sums a per-key map of tallies field by field (test and tool helper).
pub fn total(tallies: &BTreeMap<(String, String, i64), Tally>) -> Tally {
    let mut t = Tally::default();
    for v in tallies.values() {
        t.merge(v);
    }
    t
}
