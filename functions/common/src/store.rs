//! The counter store's I/O: a batch of one shard applied to Valkey (ElastiCache Serverless in cluster mode, a
//! local `valkey-server` run as a one-node cluster), exactly once by event id.
//!
//! Every decision is `tally_domain::exactly_once`'s; this module only moves bytes, in the order
//! `docs/counter-store.md` ("What a batch does") gives and `MemoryStore::process` models:
//!
//! 1. the claims (`SET <dedup key> <shard>:<seq> NX GET EX <window>`, one per distinct id) and the mark read
//!    (`GET {<lane>:<shard>}:mark`), all sent at once. Claims live in many slots and the cluster client
//!    refuses a pipeline that spans slots, so each is its own command; the client routes each to its slot's
//!    node and writes the commands for one node back to back on that node's one connection (a pipeline on the
//!    wire; one round trip per node);
//! 2. `plan_apply`;
//! 3. the atomic step: `EVALSHA` of [`APPLY_SCRIPT`] (`EVAL` when the node does not have it cached yet) with
//!    `ApplyPlan::script_keys` / `script_args`; on a conflict (another invocation moved the mark) plan again
//!    against the mark the script returned, at most [`MAX_ATTEMPTS`] times.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};
use tally_domain::event::Event;
use tally_domain::exactly_once::{
    plan_apply, ApplyPlan, Batch, ClaimRequest, DedupWindow, Position, StepReply,
};
use tally_domain::store_keys::{mark_key, shards_key, StoreLane};
use tally_domain::store_model::ScriptReply;

use crate::Error;

/// The atomic step (check the mark, add the increments, move the mark), as Lua. Names every key in `KEYS`.
pub const APPLY_SCRIPT: &str = include_str!("apply.lua");

/// Script calls per batch before giving up on a mark that keeps moving (as `MemoryStore::process`).
pub const MAX_ATTEMPTS: u32 = 8;

/// Commands in flight at once while claiming (each node's share goes out back to back on its connection).
const CLAIMS_IN_FLIGHT: usize = 1_024;

/// How to reach the store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Seed nodes: `redis://host:port` locally, `rediss://host:port` (TLS, rustls) on AWS.
    pub nodes: Vec<String>,
    /// ElastiCache user and its password or IAM token; `None` locally.
    pub credentials: Option<(String, String)>,
    /// How long claims live.
    pub window: DedupWindow,
    /// Expiry of counter and index keys, seconds (0: none).
    pub counter_ttl_secs: u64,
    /// Limit on connecting and on each reply.
    pub timeout: Duration,
}

/// A connection to the counter store (cheap to clone: one multiplexed connection per node underneath).
#[derive(Clone)]
pub struct CounterStore {
    conn: ClusterConnection,
    script: Arc<redis::Script>,
    window: DedupWindow,
    counter_ttl_secs: u64,
}

impl std::fmt::Debug for CounterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterStore")
            .field("script", &self.script.get_hash())
            .field("window", &self.window)
            .field("counter_ttl_secs", &self.counter_ttl_secs)
            .finish_non_exhaustive()
    }
}

/// What [`CounterStore::process`] did for a batch.
#[derive(Clone, Debug)]
pub struct Processed {
    /// The plan that was applied (or found to be a no-op).
    pub plan: ApplyPlan,
    /// Script calls made (0 for a no-op, more than 1 after conflicts).
    pub script_calls: u32,
}

pub(crate) fn store_error(op: &'static str, e: RedisError) -> Error {
    let retryable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_cluster_error()
        || matches!(
            e.code(),
            Some("TRYAGAIN" | "CLUSTERDOWN" | "LOADING" | "BUSY" | "MASTERDOWN")
        );
    // The server's error code (CROSSSLOT, WRONGTYPE, NOSCRIPT, …) as the server spells it, for the log.
    let message = match e.code() {
        Some(code) => format!("{code}: {e}"),
        None => e.to_string(),
    };
    Error::Store {
        op,
        message,
        retryable,
    }
}

pub(crate) fn reply_error(op: &'static str, what: String) -> Error {
    Error::Store {
        op,
        message: what,
        retryable: false,
    }
}

/// A string reply or nil.
pub(crate) fn opt_string(op: &'static str, v: Value) -> Result<Option<String>, Error> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => String::from_utf8(b)
            .map(Some)
            .map_err(|_| reply_error(op, "a reply that is not UTF-8".to_owned())),
        Value::SimpleString(s) => Ok(Some(s)),
        Value::Okay => Ok(Some("OK".to_owned())),
        other => Err(reply_error(op, format!("unexpected reply {other:?}"))),
    }
}

impl CounterStore {
    /// Connects to the cluster (reads its slot map from a seed node).
    pub async fn connect(config: &StoreConfig) -> Result<CounterStore, Error> {
        let mut builder = ClusterClientBuilder::new(config.nodes.iter().map(String::as_str))
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout);
        if let Some((user, password)) = &config.credentials {
            builder = builder.username(user).password(password);
        }
        let client = builder.build().map_err(|e| store_error("connect", e))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| store_error("connect", e))?;
        Ok(CounterStore {
            conn,
            script: Arc::new(redis::Script::new(APPLY_SCRIPT)),
            window: config.window,
            counter_ttl_secs: config.counter_ttl_secs,
        })
    }

    /// The claims of a batch: one `SET <key> <value> NX GET EX <window>` each, all in flight together;
    /// the replies in the order of `claims` (`None`: the key was free and now holds the claim).
    pub async fn claim(&self, claims: &[ClaimRequest]) -> Result<Vec<Option<String>>, Error> {
        let ex = self.window.secs();
        stream::iter(claims.iter().map(|c| {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(&c.key)
                .arg(&c.value)
                .arg("NX")
                .arg("GET")
                .arg("EX")
                .arg(ex);
            async move {
                let v: Value = cmd
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| store_error("claim", e))?;
                opt_string("claim", v)
            }
        }))
        .buffered(CLAIMS_IN_FLIGHT)
        .try_collect()
        .await
    }

    /// The connection, for the readers in [`crate::cache_read`].
    pub(crate) fn connection(&self) -> ClusterConnection {
        self.conn.clone()
    }

    /// Adds a shard to its lane's set of shards (`SADD {<lane>}:shards <shard>`), where the compactor and
    /// the readers look for shards. Idempotent; a lane calls it once per shard it sees (per cold start).
    pub async fn register_shard(&self, lane: StoreLane, shard: &str) -> Result<(), Error> {
        redis::cmd("SADD")
            .arg(shards_key(lane))
            .arg(shard)
            .query_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(|e| store_error("register shard", e))?;
        Ok(())
    }

    /// `GET` of a string key.
    pub async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let v: Value = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| store_error("get", e))?;
        opt_string("get", v)
    }

    /// The shard's stored mark, read and validated (a corrupt mark fails: it needs an operator).
    pub async fn read_mark(&self, lane: StoreLane, shard: &str) -> Result<Option<Position>, Error> {
        let key = mark_key(lane, shard);
        match self.get(&key).await? {
            None => Ok(None),
            Some(m) => Position::from_mark(shard, &m)
                .map(Some)
                .map_err(|e| Error::CorruptStore {
                    key,
                    rule: e.to_string(),
                }),
        }
    }

    /// The apply script with raw `KEYS` and `ARGV` (`EVALSHA`, then `EVAL` on `NOSCRIPT`).
    pub async fn apply_raw(&self, keys: &[String], args: &[String]) -> Result<ScriptReply, Error> {
        let mut conn = self.conn.clone();
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha
            .arg(self.script.get_hash())
            .arg(keys.len())
            .arg(keys)
            .arg(args);
        let v: Value = match evalsha.query_async(&mut conn).await {
            Ok(v) => v,
            Err(e) if e.code() == Some("NOSCRIPT") => {
                let mut eval = redis::cmd("EVAL");
                eval.arg(APPLY_SCRIPT).arg(keys.len()).arg(keys).arg(args);
                eval.query_async(&mut conn)
                    .await
                    .map_err(|e| store_error("apply", e))?
            }
            Err(e) => return Err(store_error("apply", e)),
        };
        let items = match v {
            Value::Array(items) => items,
            other => return Err(reply_error("apply", format!("unexpected reply {other:?}"))),
        };
        let mut items = items.into_iter();
        match (items.next(), items.next(), items.next()) {
            (Some(Value::Int(1)), None, None) => Ok(ScriptReply::Applied),
            (Some(Value::Int(0)), Some(current), None) => {
                let current = opt_string("apply", current)?.filter(|m| !m.is_empty());
                Ok(ScriptReply::Conflict(current))
            }
            (first, second, _) => Err(reply_error(
                "apply",
                format!("unexpected reply [{first:?}, {second:?}, …]"),
            )),
        }
    }

    /// Runs a plan's atomic step and reads the reply.
    pub async fn step(&self, plan: &ApplyPlan) -> Result<StepReply, Error> {
        let reply = self
            .apply_raw(
                &plan.script_keys(),
                &plan.script_args(self.counter_ttl_secs),
            )
            .await?;
        let read = match reply {
            ScriptReply::Applied => plan.read_reply(true, None),
            ScriptReply::Conflict(current) => plan.read_reply(false, current.as_deref()),
        };
        read.map_err(|e| Error::CorruptStore {
            key: mark_key(plan.lane, &plan.shard),
            rule: e.to_string(),
        })
    }

    /// The whole sequence for one batch of one shard: claims and mark read together, plan, atomic step,
    /// re-plan on conflicts (at most [`MAX_ATTEMPTS`] script calls). `keep` is the lane's filter.
    pub async fn process(
        &self,
        lane: StoreLane,
        batch: &Batch,
        mut keep: impl FnMut(&Event) -> bool,
    ) -> Result<Processed, Error> {
        let plan_error = |e: tally_domain::exactly_once::PlanError| {
            reply_error("plan", format!("cannot plan the batch: {e}"))
        };
        let Some(shard) = batch.shard() else {
            let plan = plan_apply(lane, batch, &[], None, &mut keep).map_err(plan_error)?;
            return Ok(Processed {
                plan,
                script_calls: 0,
            });
        };
        let (replies, mut mark) =
            tokio::try_join!(self.claim(batch.claims()), self.read_mark(lane, shard))?;
        for attempt in 0..MAX_ATTEMPTS {
            let plan =
                plan_apply(lane, batch, &replies, mark.as_ref(), &mut keep).map_err(plan_error)?;
            if plan.is_noop() {
                return Ok(Processed {
                    plan,
                    script_calls: attempt,
                });
            }
            match self.step(&plan).await? {
                StepReply::Applied => {
                    return Ok(Processed {
                        plan,
                        script_calls: attempt + 1,
                    })
                }
                StepReply::Conflict { current } => mark = current,
            }
        }
        Err(Error::StoreContention {
            shard: shard.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }
}
