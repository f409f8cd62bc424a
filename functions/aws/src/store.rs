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
//!
//! A batch whose script would exceed ElastiCache Serverless' 3,999 arguments a request is applied in runs of
//! whole records (`Batch::split_for_requests`), each its own claims, plan and step: as if the mapping had
//! delivered smaller batches. That also keeps any one script short (the deferred lane's 2,000-record batch was
//! one script holding the node for most of a second, and every realtime batch waited behind it).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt, TryStreamExt};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, Value};
use tally_domain::event::Event;
use tally_domain::exactly_once::{
    plan_apply, ApplyPlan, ApplyStats, Batch, ClaimRequest, DedupWindow, Position, StepReply,
    MAX_REQUEST_ARGS,
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

/// Environment variables of a function that uses the counter store (set by the template; the local cloud
/// substitutes `TALLY_CACHE_TLS=false` and `TALLY_CACHE_AUTH=none`).
pub mod env {
    pub use tally_contract::env::{
        CACHE_AUTH as AUTH, CACHE_ENDPOINT as ENDPOINT, CACHE_NAME as NAME, CACHE_TLS as TLS,
        CACHE_USER as USER, DEDUP_WINDOW_SECS,
    };
}

/// How a function authenticates to the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheAuth {
    /// No authentication (the local cloud's server).
    None,
    /// An ElastiCache user authenticated with an IAM token signed for the cache.
    Iam { user: String, cache_name: String },
}

/// The counter store's settings as the environment gives them, before connecting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheEnv {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub auth: CacheAuth,
    pub window: DedupWindow,
}

impl CacheEnv {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<CacheEnv, Error> {
        CacheEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `get` (the environment in [`CacheEnv::from_env`]). Every value is
    /// checked: an error names the variable, quotes (at most 64 bytes of) the value and says what is expected.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<CacheEnv, Error> {
        let required = |name: &'static str, hint: &'static str| match get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
            _ => Err(Error::MissingEnv { name, hint }),
        };
        let invalid = |name: &'static str, value: &str, rule: String| {
            let mut end = value.len().min(64);
            while !value.is_char_boundary(end) {
                end -= 1;
            }
            Error::InvalidEnv {
                name,
                value: value[..end].to_owned(),
                rule,
            }
        };
        let endpoint = required(env::ENDPOINT, "the cache endpoint as host:port")?;
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| invalid(env::ENDPOINT, &endpoint, "expected host:port".to_owned()))?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !host_ok {
            return Err(invalid(
                env::ENDPOINT,
                &endpoint,
                "the host must be a DNS name or an IPv4 address (letters, digits, '.', '-')"
                    .to_owned(),
            ));
        }
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => p,
            _ => {
                return Err(invalid(
                    env::ENDPOINT,
                    &endpoint,
                    "the port must be a number from 1 to 65535".to_owned(),
                ))
            }
        };
        let tls =
            match required(env::TLS, "true (ElastiCache) or false (the local cloud)")?.as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(invalid(
                        env::TLS,
                        other,
                        "expected true or false".to_owned(),
                    ))
                }
            };
        let auth =
            match required(env::AUTH, "iam (ElastiCache) or none (the local cloud)")?.as_str() {
                "none" => CacheAuth::None,
                "iam" => CacheAuth::Iam {
                    user: required(
                        env::USER,
                        "the ElastiCache user id the function connects as",
                    )?,
                    cache_name: required(
                        env::NAME,
                        "the cache's name (the IAM token is signed for it)",
                    )?,
                },
                other => return Err(invalid(env::AUTH, other, "expected iam or none".to_owned())),
            };
        let window = match get(env::DEDUP_WINDOW_SECS) {
            None => DedupWindow::default(),
            Some(v) if v.trim().is_empty() => DedupWindow::default(),
            Some(v) => {
                let secs = v.trim().parse::<u64>().map_err(|_| {
                    invalid(
                        env::DEDUP_WINDOW_SECS,
                        &v,
                        "expected a whole number of seconds".to_owned(),
                    )
                })?;
                DedupWindow::from_secs(secs)
                    .map_err(|e| invalid(env::DEDUP_WINDOW_SECS, &v, e.to_string()))?
            }
        };
        Ok(CacheEnv {
            host: host.to_owned(),
            port,
            tls,
            auth,
            window,
        })
    }

    /// A server at `addr` without TLS or authentication (the local cloud's, a test's), default window.
    pub fn plain(addr: std::net::SocketAddr) -> CacheEnv {
        CacheEnv {
            host: addr.ip().to_string(),
            port: addr.port(),
            tls: false,
            auth: CacheAuth::None,
            window: DedupWindow::default(),
        }
    }

    /// The seed node's URL: `rediss://` with TLS, `redis://` without.
    pub fn node_url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

/// A connection to the counter store (cheap to clone: one multiplexed connection per node underneath).
#[derive(Clone)]
pub struct CounterStore {
    conn: ClusterConnection,
    /// Set when a command failed on the connection itself (I/O, a timeout, a dropped or refused connection):
    /// [`crate::cache_auth::StoreSource`] then connects anew for the next batch (see [`CounterStore::is_broken`]).
    broken: Arc<AtomicBool>,
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
    /// The plans that were applied (or found to be no-ops), one per run of the batch
    /// (`Batch::split_for_requests`; most batches are one run).
    pub plans: Vec<ApplyPlan>,
    /// The runs' figures added up.
    pub stats: ApplyStats,
    /// Script calls made (0 for a no-op, one per run that changed something, more after conflicts).
    pub script_calls: u32,
}

fn store_error(op: &'static str, e: RedisError) -> Error {
    let retryable = is_connection_failure(&e)
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

/// A failure of the connection, not of the command: the server gone, unreachable or not answering in time.
fn is_connection_failure(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal()
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
            broken: Arc::default(),
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
                    .map_err(|e| self.failed("claim", e))?;
                opt_string("claim", v)
            }
        }))
        .buffered(CLAIMS_IN_FLIGHT)
        .try_collect()
        .await
    }

    /// The TTL of counter and index keys, seconds (0: none).
    pub(crate) fn counter_ttl_secs(&self) -> u64 {
        self.counter_ttl_secs
    }

    /// The error of a failed command `op`; one that failed on the connection itself marks this store (and its
    /// clones) broken.
    pub(crate) fn failed(&self, op: &'static str, e: RedisError) -> Error {
        if is_connection_failure(&e) {
            self.broken.store(true, Ordering::Relaxed);
        }
        store_error(op, e)
    }

    /// Whether a command of this store (or a clone) failed on the connection itself since it connected. The
    /// cluster client does not always recover from that: after a node restarted while commands were in flight,
    /// every later command of the same connection timed out (`cargo test -p tally-aws --test it
    /// store_reconnects`), so the next batch must not reuse it.
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// The connection, for the readers in [`crate::cache_read`].
    pub(crate) fn connection(&self) -> ClusterConnection {
        self.conn.clone()
    }

    /// Adds a shard to its lane's set of shards (`SADD {<lane>}:shards <shard>`), where the compactor and
    /// the readers look for shards. Idempotent; [`CounterStore::process`] makes it with every batch's claims.
    pub async fn register_shard(&self, lane: StoreLane, shard: &str) -> Result<(), Error> {
        redis::cmd("SADD")
            .arg(shards_key(lane))
            .arg(shard)
            .query_async::<Value>(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("register shard", e))?;
        Ok(())
    }

    /// `SET <key> <value> NX GET`: the value already there, or `None` when the key was free and now holds
    /// `value` (the compactor's cache epoch, `tally_domain::compact_repair::EPOCH_KEY`).
    pub async fn set_if_missing(&self, key: &str, value: &str) -> Result<Option<String>, Error> {
        let v: Value = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("GET")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("set if missing", e))?;
        opt_string("set if missing", v)
    }

    /// `GET` of a string key.
    pub async fn get(&self, key: &str) -> Result<Option<String>, Error> {
        let v: Value = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(|e| self.failed("get", e))?;
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
                    .map_err(|e| self.failed("apply", e))?
            }
            Err(e) => return Err(self.failed("apply", e)),
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

    /// The whole sequence for one batch of one shard, run by run (`Batch::split_for_requests`: each run's
    /// script fits ElastiCache Serverless' 3,999 arguments, and no script holds the node for long): per run
    /// the claims and mark read together, plan, atomic step, re-plan on conflicts (at most [`MAX_ATTEMPTS`]
    /// script calls). `keep` is the lane's filter; it is asked once about every event of `batch` (the runs
    /// hold copies of the events, so a filter that recognises events by address still works).
    pub async fn process(
        &self,
        lane: StoreLane,
        batch: &Batch,
        mut keep: impl FnMut(&Event) -> bool,
    ) -> Result<Processed, Error> {
        if batch.fits_one_request(lane, MAX_REQUEST_ARGS) {
            // Most batches (every realtime one at the profiles' rates): no copy, the filter on the events.
            let (plan, script_calls) = self.process_run(lane, batch, keep).await?;
            return Ok(Processed {
                stats: plan.stats,
                plans: vec![plan],
                script_calls,
            });
        }
        let runs = batch.split_for_requests(lane, MAX_REQUEST_ARGS);
        let verdicts: Vec<bool> = batch.events().map(|(_, e)| keep(e)).collect();
        let mut done = Processed {
            plans: Vec::with_capacity(runs.len()),
            stats: ApplyStats::default(),
            script_calls: 0,
        };
        let mut offset = 0;
        for run in &runs {
            let kept: HashSet<*const Event> = run
                .events()
                .zip(&verdicts[offset..])
                .filter(|(_, keep)| **keep)
                .map(|((_, e), _)| e as *const Event)
                .collect();
            offset += run.len();
            let (plan, calls) = self
                .process_run(lane, run, |e| kept.contains(&(e as *const Event)))
                .await?;
            done.stats.add(&plan.stats);
            done.script_calls += calls;
            done.plans.push(plan);
        }
        Ok(done)
    }

    /// One run: claims and mark read together, plan, atomic step, re-plan on conflicts. Returns the plan and
    /// the script calls it took.
    async fn process_run(
        &self,
        lane: StoreLane,
        batch: &Batch,
        mut keep: impl FnMut(&Event) -> bool,
    ) -> Result<(ApplyPlan, u32), Error> {
        let plan_error = |e: tally_domain::exactly_once::PlanError| {
            reply_error("plan", format!("cannot plan the batch: {e}"))
        };
        let Some(shard) = batch.shard() else {
            let plan = plan_apply(lane, batch, &[], None, &mut keep).map_err(plan_error)?;
            return Ok((plan, 0));
        };
        let (replies, mut mark) = tokio::try_join!(
            self.claim(batch.claims()),
            self.read_mark(lane, shard),
            // Before any counter of this shard exists, readers and the compactor know the shard: one
            // idempotent SADD per batch, in the same round trip as the claims.
            self.register_shard(lane, shard)
        )
        .map(|(replies, mark, ())| (replies, mark))?;
        for attempt in 0..MAX_ATTEMPTS {
            let plan =
                plan_apply(lane, batch, &replies, mark.as_ref(), &mut keep).map_err(plan_error)?;
            if plan.is_noop() {
                return Ok((plan, attempt));
            }
            match self.step(&plan).await? {
                StepReply::Applied => return Ok((plan, attempt + 1)),
                StepReply::Conflict { current } => mark = current,
            }
        }
        Err(Error::StoreContention {
            shard: shard.to_owned(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> Result<CacheEnv, String> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        CacheEnv::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())
    }

    const LOCAL: [(&str, &str); 3] = [
        (env::ENDPOINT, "127.0.0.1:6379"),
        (env::TLS, "false"),
        (env::AUTH, "none"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars: Vec<_> = LOCAL
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn the_local_cloud_and_aws_settings() {
        let local = lookup(&LOCAL).expect("local");
        assert_eq!(local.node_url(), "redis://127.0.0.1:6379");
        assert_eq!(local.auth, CacheAuth::None);
        assert_eq!(local.window, DedupWindow::default());
        let aws = lookup(&[
            (
                env::ENDPOINT,
                "tally-main-cache-abc123.serverless.use1.cache.amazonaws.com:6379",
            ),
            (env::TLS, "true"),
            (env::AUTH, "iam"),
            (env::USER, "tally-main-functions"),
            (env::NAME, "tally-main-cache"),
            (env::DEDUP_WINDOW_SECS, " 7200 "),
        ])
        .expect("aws");
        assert_eq!(
            aws.node_url(),
            "rediss://tally-main-cache-abc123.serverless.use1.cache.amazonaws.com:6379"
        );
        assert_eq!(
            aws.auth,
            CacheAuth::Iam {
                user: "tally-main-functions".into(),
                cache_name: "tally-main-cache".into()
            }
        );
        assert_eq!(aws.window.secs(), 7200);
    }

    #[test]
    fn hostile_and_malformed_settings() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(env::ENDPOINT, "")],
                "environment variable TALLY_CACHE_ENDPOINT is not set",
            ),
            (&[(env::ENDPOINT, "127.0.0.1")], "expected host:port"),
            (
                &[(env::ENDPOINT, "127.0.0.1:0")],
                "the port must be a number from 1 to 65535",
            ),
            (
                &[(env::ENDPOINT, "127.0.0.1:+80")],
                "the port must be a number",
            ),
            (
                &[(env::ENDPOINT, "127.0.0.1:65536")],
                "the port must be a number",
            ),
            (
                &[(env::ENDPOINT, "user@evil.example:6379")],
                "the host must be a DNS name",
            ),
            (
                &[(env::ENDPOINT, "redis://h:1")],
                "the host must be a DNS name",
            ),
            (&[(env::ENDPOINT, ":6379")], "the host must be a DNS name"),
            (
                &[(env::TLS, "yes")],
                "TALLY_CACHE_TLS=\"yes\" is invalid: expected true or false",
            ),
            (&[(env::AUTH, "password")], "expected iam or none"),
            (
                &[(env::AUTH, "iam")],
                "environment variable TALLY_CACHE_USER is not set",
            ),
            (
                &[(env::DEDUP_WINDOW_SECS, "1h")],
                "expected a whole number of seconds",
            ),
            (
                &[(env::DEDUP_WINDOW_SECS, "60")],
                "dedup window of 60 s is out of range",
            ),
            (
                &[(env::DEDUP_WINDOW_SECS, "-1")],
                "expected a whole number of seconds",
            ),
        ];
        for (extra, want) in cases {
            let err = lookup(&with(extra)).expect_err(want);
            assert!(err.contains(want), "{extra:?}: `{err}` lacks `{want}`");
        }
        // A hostile value is quoted, but at most 64 bytes of it.
        let long = format!("{}:6379", "é".repeat(200));
        let leaked: &'static str = Box::leak(long.into_boxed_str());
        let err = lookup(&with(&[(env::ENDPOINT, leaked)])).expect_err("long");
        assert!(err.len() < 300, "{err}");
    }
}
