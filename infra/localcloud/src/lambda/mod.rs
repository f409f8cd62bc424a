//! The local Lambda service: the Runtime API and a warm process pool per function.
//!
//! [`Function::start`] serves one function. [`Function::invoke`] queues an invocation; an idle instance takes it
//! through `GET /2018-06-01/runtime/invocation/next` (a long poll that never answers 204), and the instance's
//! `/response` or `/error` completes it. Every instance is its own process with its own Runtime API listener,
//! so the pool always knows which process holds which invocation: when a process exits while it holds one, the
//! invocation fails with [`InvokeFailure::Crashed`] and a new instance takes the next one; when the deadline
//! passes, the process is killed and the invocation fails with [`InvokeFailure::Timeout`].

pub(crate) mod http;
pub mod logs;
mod process;
mod runtime_api;

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{oneshot, watch, Notify};

pub use process::LogSink;

use tally_localcloud_aws::meter::Meter;

/// The largest synchronous invocation payload and response Lambda accepts (6 MB).
pub const MAX_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// What one function is, as the template declares it (resolved to local values).
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionSpec {
    /// `FunctionName` (the physical name).
    pub name: String,
    /// The host build of the function's binary.
    pub executable: PathBuf,
    /// `MemorySize` in MB (Lambda's default 128).
    pub memory_mb: u32,
    /// `Timeout` (Lambda's default 3 s).
    pub timeout: Duration,
    /// `ReservedConcurrentExecutions`: the most instances at once; `None` = the local default.
    pub reserved_concurrency: Option<u32>,
    /// `Environment.Variables` plus what the local cloud adds (endpoint, credentials).
    pub env: BTreeMap<String, String>,
    pub region: String,
    /// `LoggingConfig`: which lines Lambda would send to CloudWatch Logs (and the meter counts).
    pub logging: logs::LogConfig,
    /// Batch work nobody waits on (a mapping with a batching window, a schedule): its processes run at
    /// [`BACKGROUND_NICE`]. On AWS every instance has its own CPU share; on one machine the deferred lane's
    /// large batches would otherwise take the realtime lane's CPU and show as its latency.
    pub background: bool,
}

/// The nice value of a background function's processes.
pub const BACKGROUND_NICE: u8 = 10;

impl FunctionSpec {
    /// A spec with Lambda's defaults (128 MB, 3 s, no reserved concurrency, us-east-1).
    pub fn new(name: impl Into<String>, executable: impl Into<PathBuf>) -> FunctionSpec {
        FunctionSpec {
            name: name.into(),
            executable: executable.into(),
            memory_mb: 128,
            timeout: Duration::from_secs(3),
            reserved_concurrency: None,
            env: BTreeMap::new(),
            region: "us-east-1".to_owned(),
            logging: logs::LogConfig::default(),
            background: false,
        }
    }

    pub fn arn(&self) -> String {
        format!(
            "arn:aws:lambda:{}:{}:function:{}",
            self.region,
            tally_localcloud_aws::aws::ACCOUNT_ID,
            self.name
        )
    }

    /// Instances at most: the reserved concurrency, else a local cap that keeps a laptop responsive.
    pub fn max_instances(&self) -> usize {
        self.reserved_concurrency
            .map_or(DEFAULT_MAX_INSTANCES, |n| n as usize)
    }
}

/// The local stand-in for the account's unreserved concurrency: a laptop has a few cores, not a thousand.
pub const DEFAULT_MAX_INSTANCES: usize = 8;

/// Why an invocation did not produce a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeFailure {
    /// The function reported an error through `/error` (`errorType`, `errorMessage`).
    Function { error_type: String, message: String },
    /// The deadline passed; the instance was killed.
    Timeout { after: Duration },
    /// The instance process exited while it held the invocation.
    Crashed { status: String },
    /// The instance failed to initialise (`/init/error`, or it exited before asking for work).
    Init { message: String },
    /// The response was larger than [`MAX_PAYLOAD_BYTES`].
    ResponseTooLarge,
    /// The payload was larger than [`MAX_PAYLOAD_BYTES`].
    PayloadTooLarge,
    /// Reserved concurrency is 0: the function is throttled.
    Throttled,
    /// The local cloud is shutting down.
    Shutdown,
}

impl fmt::Display for InvokeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvokeFailure::Function {
                error_type,
                message,
            } => write!(f, "function error {error_type}: {message}"),
            InvokeFailure::Timeout { after } => {
                write!(f, "task timed out after {:.2} seconds", after.as_secs_f64())
            }
            InvokeFailure::Crashed { status } => {
                write!(f, "runtime exited while handling the invocation ({status})")
            }
            InvokeFailure::Init { message } => write!(f, "init error: {message}"),
            InvokeFailure::ResponseTooLarge => {
                write!(f, "response payload larger than {MAX_PAYLOAD_BYTES} bytes")
            }
            InvokeFailure::PayloadTooLarge => {
                write!(f, "request payload larger than {MAX_PAYLOAD_BYTES} bytes")
            }
            InvokeFailure::Throttled => write!(f, "rate exceeded: reserved concurrency is 0"),
            InvokeFailure::Shutdown => write!(f, "the local cloud is shutting down"),
        }
    }
}

type Reply = oneshot::Sender<Result<Bytes, InvokeFailure>>;

struct Pending {
    payload: Bytes,
    reply: Reply,
}

/// A running function: its queue of invocations and its pool of instances.
#[derive(Clone)]
pub struct Function {
    inner: Arc<Inner>,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.inner.spec.name)
            .finish_non_exhaustive()
    }
}

struct Inner {
    spec: FunctionSpec,
    queue: Mutex<VecDeque<Pending>>,
    work: Notify,
    pool: Mutex<Pool>,
    log: process::FunctionLog,
    next_id: AtomicU64,
    shutdown: watch::Sender<bool>,
    stats: Mutex<Stats>,
    meter: Arc<Meter>,
}

#[derive(Default)]
struct Pool {
    /// Live instances (spawned, not yet exited).
    live: usize,
    /// Instances waiting in `/next`.
    idle: usize,
    /// Instances spawned that have not asked for work yet.
    starting: usize,
    /// Instances that answered an invocation and are about to ask for the next (warm, soon idle).
    returning: usize,
    /// Kill switches of the live instances.
    kills: BTreeMap<u64, Arc<Notify>>,
}

/// Counters of a function, for tests and the dev console.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub instances_started: u64,
    pub invocations: u64,
    pub crashes: u64,
    pub timeouts: u64,
    /// Process start → first `/next`, of every instance, in microseconds.
    pub cold_starts_us: Vec<u64>,
    /// The most instances alive at once.
    pub peak_instances: usize,
}

impl Function {
    /// Starts serving `spec`. Instances are spawned on demand (the first invocation pays the cold start) and kept
    /// warm until [`Function::shutdown`].
    ///
    /// Its invocations are metered by a meter of its own (see [`Function::meter`]); the local cloud uses
    /// [`Function::start_metered`] to share its meter.
    pub fn start(spec: FunctionSpec, logs: &LogSink) -> Function {
        Function::start_metered(spec, logs, Arc::new(Meter::new()))
    }

    /// Starts serving `spec`, metering every invocation (hand-out to outcome) into `meter`.
    pub fn start_metered(spec: FunctionSpec, logs: &LogSink, meter: Arc<Meter>) -> Function {
        let log = logs.for_function(&spec.name, spec.logging, spec.memory_mb, meter.clone());
        let (shutdown, _) = watch::channel(false);
        Function {
            inner: Arc::new(Inner {
                spec,
                queue: Mutex::new(VecDeque::new()),
                work: Notify::new(),
                pool: Mutex::new(Pool::default()),
                log,
                next_id: AtomicU64::new(1),
                shutdown,
                stats: Mutex::new(Stats::default()),
                meter,
            }),
        }
    }

    pub fn spec(&self) -> &FunctionSpec {
        &self.inner.spec
    }

    pub fn stats(&self) -> Stats {
        lock(&self.inner.stats).clone()
    }

    /// The meter this function's invocations are counted in.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.inner.meter
    }

    /// Starts `n` instances now (bounded by the concurrency limit), so that the first invocations are warm.
    pub fn prewarm(&self, n: usize) {
        for _ in 0..n {
            let mut pool = lock(&self.inner.pool);
            if pool.live >= self.inner.spec.max_instances() {
                break;
            }
            pool.live += 1;
            pool.starting += 1;
            drop(pool);
            self.spawn_instance();
        }
    }

    /// Invokes the function synchronously (`RequestResponse`) and waits for its response.
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Result<Bytes, InvokeFailure> {
        let payload = payload.into();
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(InvokeFailure::PayloadTooLarge);
        }
        if *self.inner.shutdown.borrow() {
            return Err(InvokeFailure::Shutdown);
        }
        if self.inner.spec.max_instances() == 0 {
            return Err(InvokeFailure::Throttled);
        }
        lock(&self.inner.stats).invocations += 1;
        let (reply, answer) = oneshot::channel();
        lock(&self.inner.queue).push_back(Pending { payload, reply });
        self.inner.work.notify_one();
        self.scale_up();
        answer.await.unwrap_or(Err(InvokeFailure::Shutdown))
    }

    /// Kills every instance and fails what is queued.
    pub fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let kills: Vec<_> = lock(&self.inner.pool).kills.values().cloned().collect();
        for kill in kills {
            kill.notify_one();
        }
        for pending in lock(&self.inner.queue).drain(..) {
            let _ = pending.reply.send(Err(InvokeFailure::Shutdown));
        }
    }

    /// Spawns instances while queued work outnumbers the instances that will take it (idle or starting) and
    /// the concurrency limit allows.
    fn scale_up(&self) {
        loop {
            let queued = lock(&self.inner.queue).len();
            let mut pool = lock(&self.inner.pool);
            if queued <= pool.idle + pool.starting + pool.returning
                || pool.live >= self.inner.spec.max_instances()
            {
                return;
            }
            pool.live += 1;
            pool.starting += 1;
            drop(pool);
            self.spawn_instance();
        }
    }

    fn spawn_instance(&self) {
        let function = self.clone();
        tokio::spawn(async move { function.run_instance().await });
    }

    async fn run_instance(self) {
        let inner = &self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        lock(&inner.pool).kills.insert(id, kill.clone());
        let outcome = self.instance_lifetime(id, &kill).await;
        let mut pool = lock(&inner.pool);
        pool.live -= 1;
        pool.kills.remove(&id);
        drop(pool);
        if let Err(message) = outcome {
            inner
                .log
                .line(&format!("instance {id} could not start: {message}"));
            // Fail one queued invocation, as Lambda fails the invocation whose cold start failed; this also
            // bounds a crash loop by the queue's length.
            if let Some(pending) = lock(&inner.queue).pop_front() {
                let _ = pending.reply.send(Err(InvokeFailure::Init { message }));
            }
        }
        if !*inner.shutdown.borrow() {
            self.scale_up();
        }
    }

    /// Runs one instance until its process exits. `Err` = it never became ready (init failure).
    async fn instance_lifetime(&self, id: u64, kill: &Arc<Notify>) -> Result<(), String> {
        let inner = &self.inner;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|error| format!("cannot bind a runtime API port: {error}"))?;
        let addr = listener.local_addr().map_err(|error| error.to_string())?;
        let state = Arc::new(runtime_api::InstanceState::new(
            self.clone(),
            id,
            kill.clone(),
        ));
        let (stop_api, stop_rx) = watch::channel(false);
        let handler_state = state.clone();
        tokio::spawn(http::serve(
            listener,
            move |request| runtime_api::handle(handler_state.clone(), request),
            stop_rx,
        ));

        let env = self.instance_env(id, &addr.to_string());
        let started = Instant::now();
        state.set_started(started);
        let mut child = match process::spawn(
            &inner.spec.executable,
            inner.spec.memory_mb,
            if inner.spec.background {
                BACKGROUND_NICE
            } else {
                0
            },
            &env,
            &inner.log,
        ) {
            Ok(child) => child,
            Err(error) => {
                stop_api.send_replace(true);
                return Err(format!(
                    "cannot start {}: {error}",
                    inner.spec.executable.display()
                ));
            }
        };
        {
            let mut stats = lock(&inner.stats);
            stats.instances_started += 1;
            let live = lock(&inner.pool).live;
            stats.peak_instances = stats.peak_instances.max(live);
        }
        let status = tokio::select! {
            status = child.wait() => status,
            _ = kill.notified() => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        stop_api.send_replace(true);
        let status = process::describe_exit(status);
        let exit = state.exited(&status);
        match exit {
            runtime_api::Exit::HeldInvocation => {
                lock(&inner.stats).crashes += 1;
                inner.log.line(&format!(
                    "instance {id} exited while handling an invocation ({status})"
                ));
                Ok(())
            }
            runtime_api::Exit::NeverReady(init_error) => {
                if *inner.shutdown.borrow() {
                    return Ok(());
                }
                Err(init_error.unwrap_or(status))
            }
            runtime_api::Exit::Idle => Ok(()),
        }
    }

    /// The environment of one instance: what `lambda_runtime` requires, Lambda's reserved variables, then the
    /// function's own variables (which cannot override the reserved ones, as in Lambda).
    fn instance_env(&self, id: u64, runtime_api: &str) -> BTreeMap<String, String> {
        let spec = &self.inner.spec;
        let mut env = spec.env.clone();
        let day = utc_date(SystemTime::now());
        let reserved = [
            ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_owned()),
            ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                spec.memory_mb.to_string(),
            ),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", spec.name),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("{day}/[$LATEST]{id:032x}"),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            ("AWS_REGION", spec.region.clone()),
            ("AWS_DEFAULT_REGION", spec.region.clone()),
            ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
            ("LAMBDA_TASK_ROOT", parent_dir(&spec.executable)),
            ("LAMBDA_RUNTIME_DIR", parent_dir(&spec.executable)),
            ("_HANDLER", "bootstrap".to_owned()),
            ("TZ", ":UTC".to_owned()),
        ];
        for (key, value) in reserved.into_iter().chain(self.inner.log.runtime_env()) {
            env.insert(key.to_owned(), value);
        }
        env
    }
}

fn parent_dir(path: &std::path::Path) -> String {
    path.parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// `YYYY/MM/DD` of a time, in UTC (the date part of a Lambda log stream name).
fn utc_date(time: SystemTime) -> String {
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    crate::esm::event::iso_ms(ms)[..10].replace('-', "/")
}

/// Locks a mutex, recovering the data if a holder panicked (the state stays usable; nothing here is left
/// half-updated across a panic point).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        let check = |secs: u64, expect: &str| {
            assert_eq!(
                utc_date(UNIX_EPOCH + Duration::from_secs(secs)),
                expect,
                "{secs}"
            );
        };
        check(0, "1970/01/01");
        check(86_399, "1970/01/01");
        check(951_782_400, "2000/02/29");
        check(1_709_164_800, "2024/02/29");
        check(1_798_675_200, "2026/12/31");
    }
}
