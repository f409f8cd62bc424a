//! Kinesis event source mappings: one reader task per shard, parents before children.

use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::checkpoint::{Checkpoint, Checkpoints, Writer};
use super::event::{self, BatchOutcome, Condition, KinesisSource};
use super::{MappingConfig, RuntimeOptions, StartingPosition};
use crate::lambda::{lock, Function, InvokeFailure};
use tally_localcloud_aws::aws::kinesis::{Position, Record, Stream};
use tally_localcloud_aws::aws::{now_ms, LocalAws};
use tally_localcloud_aws::meter::MappingId;

/// Counters of one mapping, for tests and the dev console.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingStats {
    pub invocations: u64,
    /// Records whose batch succeeded.
    pub records_ok: u64,
    /// Records discarded to the on-failure destination (or dropped, without one).
    pub records_discarded: u64,
    pub bisections: u64,
    pub retries: u64,
    pub destination_errors: u64,
}

/// A running Kinesis mapping.
#[derive(Debug)]
pub struct KinesisMapping {
    stop: watch::Sender<bool>,
    /// Writes the checkpoint files behind the readers; flushed when the mapping stops.
    checkpoints: Option<Arc<Writer>>,
    stats: Arc<Mutex<MappingStats>>,
    supervisor: JoinHandle<()>,
}

impl KinesisMapping {
    /// Starts the mapping: validates `config`, finds the stream (or the consumer's stream), and reads every
    /// shard from its checkpoint (or the starting position).
    pub fn start(
        config: MappingConfig,
        function: Function,
        aws: Arc<LocalAws>,
        options: RuntimeOptions,
    ) -> Result<KinesisMapping, String> {
        config.validate()?;
        let stream = aws.kinesis.stream(&config.source_arn).map_err(|error| {
            format!(
                "mapping {}: event source {} is not a local stream: {error}",
                config.id, config.source_arn
            )
        })?;
        let push = config.source_arn.contains("/consumer/");
        if push {
            let known = stream
                .consumers()
                .iter()
                .any(|c| c.arn == config.source_arn);
            if !known {
                return Err(format!(
                    "mapping {}: stream consumer {} is not registered on stream {}",
                    config.id,
                    config.source_arn,
                    stream.name()
                ));
            }
        }
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Mutex::new(MappingStats::default()));
        let shared = Arc::new(Shared {
            checkpoints: Checkpoints::new(
                options
                    .state_dir
                    .as_ref()
                    .map(|d| d.join("esm").join(&config.id)),
            ),
            source_role: format!(
                "arn:aws:iam::{}:role/{}-role",
                tally_localcloud_aws::aws::ACCOUNT_ID,
                function.spec().name
            ),
            config,
            function,
            aws,
            stream,
            push,
            options,
            stats: stats.clone(),
            stop: stop_rx,
            done: Mutex::new(HashSet::new()),
        });
        let checkpoints = shared.checkpoints.writer();
        let supervisor = tokio::spawn(supervise(shared));
        Ok(KinesisMapping {
            stop,
            checkpoints,
            stats,
            supervisor,
        })
    }

    pub fn stats(&self) -> MappingStats {
        lock(&self.stats).clone()
    }

    /// Stops reading; an invocation in flight is abandoned (its records are delivered again after a restart,
    /// since they are after the checkpoint). Returns once the checkpoints saved so far are on disk.
    pub fn stop(&self) {
        self.stop.send_replace(true);
        self.supervisor.abort();
        if let Some(writer) = &self.checkpoints {
            if let Err(error) = writer.flush() {
                tracing::error!(message = "checkpoints not written at stop", %error);
            }
        }
    }
}

impl Drop for KinesisMapping {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Shared {
    config: MappingConfig,
    function: Function,
    aws: Arc<LocalAws>,
    stream: Arc<Stream>,
    push: bool,
    options: RuntimeOptions,
    stats: Arc<Mutex<MappingStats>>,
    stop: watch::Receiver<bool>,
    checkpoints: Checkpoints,
    source_role: String,
    /// Shards read to their end.
    done: Mutex<HashSet<String>>,
}

impl Shared {
    /// When an invocation starts: the wall clock (for the cycle) and a monotonic one (for its duration).
    fn start_invocation(&self) -> (i64, Instant) {
        (now_ms(), Instant::now())
    }

    /// The meter's name for this mapping.
    fn meter_id(&self) -> MappingId<'_> {
        let kind = if self.push {
            "enhanced-fan-out"
        } else {
            "shared-iterator"
        };
        MappingId {
            id: &self.config.id,
            function: &self.function.spec().name,
            source: self.stream.name(),
            kind,
        }
    }

    /// Meters one invocation of `records` on `shard` that started at `started`.
    fn end_invocation(&self, started: (i64, Instant), shard: &str, records: u64) {
        let busy_ms = started.1.elapsed().as_millis() as u64;
        self.aws
            .meter
            .mapping_invocation(&self.meter_id(), shard, records, started.0, busy_ms);
    }

    /// Meters records whose invocation succeeded: their age now (stream arrival → success).
    fn records_done(&self, records: &[Record]) {
        let now = now_ms();
        self.aws.meter.mapping_records_done(
            &self.meter_id(),
            records.iter().map(|r| (now - r.arrival_ms).max(0) as u64),
        );
    }
}

/// Starts a reader per shard once its parents are done; watches for new shards (resharding).
async fn supervise(shared: Arc<Shared>) {
    let mut started: HashSet<String> = HashSet::new();
    let mut readers = Vec::new();
    let mut stop = shared.stop.clone();
    loop {
        for shard in shared.stream.shards() {
            if started.contains(&shard.id) {
                continue;
            }
            if shared.checkpoints.load(&shard.id).end {
                lock(&shared.done).insert(shard.id.clone());
                started.insert(shard.id.clone());
                continue;
            }
            let parents_done = {
                let done = lock(&shared.done);
                shard.parents.iter().all(|p| done.contains(p))
            };
            if parents_done {
                started.insert(shard.id.clone());
                let shared = shared.clone();
                let root = shard.parents.is_empty();
                readers.push(AbortOnDrop(tokio::spawn(async move {
                    if let Err(error) = read_shard(&shared, &shard.id, root).await {
                        tracing::error!(message = "mapping shard reader stopped", mapping = %shared.config.id, shard = %shard.id, %error);
                    }
                })));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = crate::lambda::http::stopped(&mut stop) => return,
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one shard to its end (or forever while it is open).
async fn read_shard(shared: &Arc<Shared>, shard: &str, root: bool) -> Result<(), String> {
    let config = &shared.config;
    let mut checkpoint = shared.checkpoints.load(shard);
    if checkpoint.after.is_none() && checkpoint.at_ms.is_none() && root {
        // First start: fix the starting position now, so that a restart does not move LATEST forward.
        match config.starting_position {
            StartingPosition::TrimHorizon => {}
            StartingPosition::Latest => {
                // LATEST = after the newest record now. Records of the last second are read to find it (a
                // shard takes at most 1,000 records a second); with none, "arrived after a second ago" is
                // the same place.
                let since = now_ms() - 1000;
                let mut cursor = shared
                    .stream
                    .cursor(shard, &Position::AtTimestamp(since))
                    .map_err(|e| e.to_string())?;
                let mut last = None;
                loop {
                    let batch = shared
                        .stream
                        .read(&cursor, 1000)
                        .map_err(|e| e.to_string())?;
                    match batch.records.last() {
                        Some(record) => last = Some(record.sequence_number.to_string()),
                        None => break,
                    }
                    cursor = batch.next;
                }
                match last {
                    Some(seq) => checkpoint.after = Some(seq),
                    None => checkpoint.at_ms = Some(since),
                }
            }
            StartingPosition::AtTimestamp(ms) => checkpoint.at_ms = Some(ms),
        }
        shared.checkpoints.save_now(shard, &checkpoint).await?;
    }
    let position = match (&checkpoint.after, checkpoint.at_ms) {
        (Some(seq), _) => Position::AfterSequence(seq.clone()),
        (None, Some(ms)) => Position::AtTimestamp(ms),
        (None, None) => Position::TrimHorizon,
    };
    let stream = &shared.stream;
    let mut cursor = stream.cursor(shard, &position).map_err(|e| e.to_string())?;
    let mut changed = stream.subscribe(shard).map_err(|e| e.to_string())?;
    let mut stop = shared.stop.clone();
    let source = KinesisSource {
        stream_arn: stream.arn().to_owned(),
        shard_id: shard.to_owned(),
        region: shared.aws.region.clone(),
        role_arn: shared.source_role.clone(),
    };
    let want = config.batch_size * config.parallelization_factor;
    let tumbling = !config.tumbling_window.is_zero();
    loop {
        // Gather a batch: up to `want` records, waiting at most the batching window after the first.
        let mut records: Vec<Record> = Vec::new();
        let mut first_at: Option<Instant> = None;
        let mut end_of_shard;
        loop {
            let batch = stream
                .read(&cursor, want - records.len())
                .map_err(|e| e.to_string())?;
            // Enhanced fan-out pushes records (billed per byte delivered); a shared-iterator mapping polls,
            // one GetRecords call per read.
            if shared.push {
                if !batch.records.is_empty() {
                    shared.aws.meter.kinesis_efo(
                        stream.name(),
                        batch.records.len() as u64,
                        batch.bytes(),
                    );
                }
            } else {
                shared
                    .aws
                    .meter
                    .kinesis_get_records(stream.name(), batch.bytes());
            }
            cursor = batch.next;
            if !batch.records.is_empty() && first_at.is_none() {
                first_at = Some(Instant::now());
            }
            records.extend(batch.records);
            end_of_shard = batch.end_of_shard;
            if records.len() >= want || end_of_shard {
                break;
            }
            let window_left =
                first_at.map(|at| config.batching_window.saturating_sub(at.elapsed()));
            if window_left.is_some_and(|left| left.is_zero()) {
                break;
            }
            if tumbling && records.is_empty() {
                if let Some((_, end, _)) = &checkpoint.window {
                    if now_ms() >= *end {
                        close_window(shared, &source, shard, &mut checkpoint).await?;
                    }
                }
            }
            // Wait: for new records (push), for the poll interval (shared iterator), or the batching window.
            let wait = match window_left {
                Some(left) => left,
                None if shared.push => Duration::from_secs(3600),
                None => shared.options.idle_poll,
            };
            let wait = match (&checkpoint.window, tumbling) {
                (Some((_, end, _)), true) => {
                    wait.min(Duration::from_millis((*end - now_ms()).max(1) as u64))
                }
                _ => wait,
            };
            tokio::select! {
                _ = changed.changed(), if shared.push || first_at.is_some() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = crate::lambda::http::stopped(&mut stop) => return Ok(()),
            }
        }
        if records.is_empty() {
            if end_of_shard {
                if checkpoint.window.is_some() {
                    close_window(shared, &source, shard, &mut checkpoint).await?;
                }
                checkpoint.end = true;
                shared.checkpoints.save_now(shard, &checkpoint).await?;
                lock(&shared.done).insert(shard.to_owned());
                return Ok(());
            }
            continue;
        }
        if tumbling {
            process_windows(shared, &source, shard, records, &mut checkpoint).await?;
        } else if config.parallelization_factor == 1 {
            let handler = Handler {
                shared,
                source: &source,
                window: None,
            };
            handler
                .resolve(records, Some((shard, &mut checkpoint)))
                .await?;
        } else {
            let last = records.last().map(|r| r.sequence_number.to_string());
            process_parallel(shared, &source, records).await;
            checkpoint.after = last;
            checkpoint.at_ms = None;
            shared.checkpoints.save(shard, &checkpoint)?;
        }
    }
}

/// Parallelization factor > 1: records of one partition key stay in order in one lane; lanes run at once.
async fn process_parallel(shared: &Arc<Shared>, source: &KinesisSource, records: Vec<Record>) {
    let factor = shared.config.parallelization_factor;
    let mut lanes: Vec<Vec<Record>> = vec![Vec::new(); factor];
    for record in records {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        record.partition_key.hash(&mut hasher);
        lanes[(hasher.finish() % factor as u64) as usize].push(record);
    }
    let tasks = lanes
        .into_iter()
        .filter(|lane| !lane.is_empty())
        .map(|lane| {
            let shared = shared.clone();
            let source = source.clone();
            tokio::spawn(async move {
                let handler = Handler {
                    shared: &shared,
                    source: &source,
                    window: None,
                };
                for batch in lane.chunks(shared.config.batch_size) {
                    if let Err(error) = handler.resolve(batch.to_vec(), None).await {
                        tracing::error!(message = "mapping lane failed", %error);
                    }
                }
            })
        });
    for task in tasks.collect::<Vec<_>>() {
        let _ = task.await;
    }
}

/// Tumbling windows: records grouped by window of arrival time; the state goes from one invocation to the
/// next within a window; the window's end brings a final invocation (`isFinalInvokeForWindow`).
async fn process_windows(
    shared: &Arc<Shared>,
    source: &KinesisSource,
    shard: &str,
    records: Vec<Record>,
    checkpoint: &mut Checkpoint,
) -> Result<(), String> {
    let span = shared.config.tumbling_window.as_millis() as i64;
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let start = first.arrival_ms.div_euclid(span) * span;
        let run = rest
            .iter()
            .take_while(|r| r.arrival_ms.div_euclid(span) * span == start)
            .count();
        let (now, later) = rest.split_at(run);
        rest = later;
        if checkpoint
            .window
            .as_ref()
            .is_some_and(|(s, _, _)| *s != start)
        {
            close_window(shared, source, shard, checkpoint).await?;
        }
        if checkpoint.window.is_none() {
            checkpoint.window = Some((start, start + span, json!({})));
        }
        let handler = Handler {
            shared,
            source,
            window: checkpoint.window.clone(),
        };
        let state = handler
            .resolve(now.to_vec(), Some((shard, checkpoint)))
            .await?;
        if let (Some(state), Some(window)) = (state, checkpoint.window.as_mut()) {
            window.2 = state;
        }
        shared.checkpoints.save(shard, checkpoint)?;
    }
    Ok(())
}

async fn close_window(
    shared: &Arc<Shared>,
    source: &KinesisSource,
    shard: &str,
    checkpoint: &mut Checkpoint,
) -> Result<(), String> {
    if let Some((start, end, state)) = checkpoint.window.take() {
        let event = event::kinesis_window_event(source, &[], (start, end), &state, true);
        lock(&shared.stats).invocations += 1;
        let metered = shared.start_invocation();
        let outcome = shared.function.invoke(event.to_string()).await;
        shared.end_invocation(metered, &source.shard_id, 0);
        if let Err(failure) = outcome {
            tracing::warn!(message = "final window invocation failed", %failure);
        }
        shared.checkpoints.save(shard, checkpoint)?;
    }
    Ok(())
}

/// Delivers one batch with the retry rules.
struct Handler<'a> {
    shared: &'a Arc<Shared>,
    source: &'a KinesisSource,
    window: Option<(i64, i64, Value)>,
}

enum Attempt {
    Success(Option<Value>),
    /// Records from this index on failed (partial batch response).
    FailedFrom(usize),
    Failed(String),
}

impl Handler<'_> {
    /// Resolves `records`: every record either succeeds or is discarded to the on-failure destination.
    /// With `progress`, the checkpoint advances after each resolved part (the records before the lowest
    /// failure are checkpointed before the rest is retried). Returns the tumbling state of the last success.
    async fn resolve(
        &self,
        records: Vec<Record>,
        mut progress: Option<(&str, &mut Checkpoint)>,
    ) -> Result<Option<Value>, String> {
        let config = &self.shared.config;
        let mut queue: VecDeque<(Vec<Record>, u32)> = VecDeque::from([(records, 0)]);
        let mut state = None;
        while let Some((mut batch, tries)) = queue.pop_front() {
            // Records past their maximum age are discarded before any (re)try.
            if let Some(age) = config.max_record_age {
                let oldest_allowed = now_ms() - age.as_millis() as i64;
                let expired = batch
                    .iter()
                    .take_while(|r| r.arrival_ms < oldest_allowed)
                    .count();
                if expired > 0 {
                    let rest = batch.split_off(expired);
                    self.discard(&batch, Condition::RecordAgeExceeded, tries + 1, None)
                        .await;
                    self.advance(&mut progress, &batch).await?;
                    batch = rest;
                }
            }
            if batch.is_empty() {
                continue;
            }
            if tries > 0 {
                let shift = (tries - 1).min(16);
                let delay = self
                    .shared
                    .options
                    .backoff
                    .saturating_mul(1 << shift)
                    .min(self.shared.options.max_backoff);
                tokio::time::sleep(delay).await;
                lock(&self.shared.stats).retries += 1;
            }
            match self.attempt(&batch).await {
                Attempt::Success(new_state) => {
                    self.shared.records_done(&batch);
                    lock(&self.shared.stats).records_ok += batch.len() as u64;
                    state = new_state;
                    self.advance(&mut progress, &batch).await?;
                }
                Attempt::FailedFrom(index) => {
                    let failed = batch.split_off(index);
                    self.shared.records_done(&batch);
                    lock(&self.shared.stats).records_ok += batch.len() as u64;
                    self.advance(&mut progress, &batch).await?;
                    if config.max_retries.is_some_and(|max| tries >= max) {
                        self.discard(
                            &failed,
                            Condition::RetryAttemptsExhausted,
                            tries + 1,
                            Some("Unhandled"),
                        )
                        .await;
                        self.advance(&mut progress, &failed).await?;
                    } else {
                        queue.push_front((failed, tries + 1));
                    }
                }
                Attempt::Failed(error) => {
                    if config.bisect_on_error && batch.len() > 1 {
                        // Splitting does not count as a retry (AWS).
                        lock(&self.shared.stats).bisections += 1;
                        let second = batch.split_off(batch.len() / 2);
                        queue.push_front((second, tries));
                        queue.push_front((batch, tries));
                    } else if config.max_retries.is_some_and(|max| tries >= max) {
                        self.discard(
                            &batch,
                            Condition::RetryAttemptsExhausted,
                            tries + 1,
                            Some(&error),
                        )
                        .await;
                        self.advance(&mut progress, &batch).await?;
                    } else {
                        queue.push_front((batch, tries + 1));
                    }
                }
            }
        }
        Ok(state)
    }

    async fn advance(
        &self,
        progress: &mut Option<(&str, &mut Checkpoint)>,
        done: &[Record],
    ) -> Result<(), String> {
        let (Some((shard, checkpoint)), Some(last)) = (progress.as_mut(), done.last()) else {
            return Ok(());
        };
        checkpoint.after = Some(last.sequence_number.to_string());
        checkpoint.at_ms = None;
        self.shared.checkpoints.save(shard, checkpoint)
    }

    async fn attempt(&self, batch: &[Record]) -> Attempt {
        let event = match &self.window {
            Some((start, end, state)) => {
                event::kinesis_window_event(self.source, batch, (*start, *end), state, false)
            }
            None => event::kinesis_event(self.source, batch),
        };
        lock(&self.shared.stats).invocations += 1;
        let metered = self.shared.start_invocation();
        let outcome = self.shared.function.invoke(event.to_string()).await;
        self.shared
            .end_invocation(metered, &self.source.shard_id, batch.len() as u64);
        let response: Bytes = match outcome {
            Ok(response) => response,
            Err(failure) => {
                let kind = match failure {
                    InvokeFailure::Function { error_type, .. } => error_type,
                    InvokeFailure::Timeout { .. } => "Sandbox.Timedout".to_owned(),
                    InvokeFailure::Crashed { .. } => "Runtime.ExitError".to_owned(),
                    other => other.to_string(),
                };
                return Attempt::Failed(kind);
            }
        };
        let new_state = self.window.as_ref().map(|_| {
            serde_json::from_slice::<Value>(&response)
                .ok()
                .and_then(|v| v.get("state").cloned())
                .unwrap_or(json!({}))
        });
        if !self.shared.config.report_batch_item_failures {
            return Attempt::Success(new_state);
        }
        let ids: Vec<String> = batch
            .iter()
            .map(|r| r.sequence_number.to_string())
            .collect();
        match event::batch_outcome(&response, &ids) {
            BatchOutcome::Success => Attempt::Success(new_state),
            BatchOutcome::Failed(failed) => {
                // Checkpoint before the lowest failed sequence number.
                let lowest = ids.iter().position(|id| failed.contains(id)).unwrap_or(0);
                Attempt::FailedFrom(lowest)
            }
            BatchOutcome::Malformed(reason) => {
                tracing::warn!(message = "malformed batch response: the whole batch failed", function = %self.shared.function.spec().name, %reason);
                Attempt::Failed("MalformedBatchResponse".to_owned())
            }
        }
    }

    /// Sends the batch's metadata to the on-failure destination (AWS's invocation record), or drops it.
    async fn discard(
        &self,
        records: &[Record],
        condition: Condition,
        invokes: u32,
        error: Option<&str>,
    ) {
        lock(&self.shared.stats).records_discarded += records.len() as u64;
        let Some(destination) = &self.shared.config.on_failure else {
            tracing::warn!(
                message = "records discarded without an on-failure destination",
                count = records.len(),
                condition = condition.as_str()
            );
            return;
        };
        let document = event::kinesis_failure_record(
            self.source,
            records,
            &format!("{}-{}", self.shared.config.id, now_ms()),
            &self.shared.function.spec().arn(),
            condition,
            invokes,
            error,
            now_ms(),
        );
        if let Err(error) =
            super::sqs::send(&self.shared.aws, destination, &document.to_string()).await
        {
            lock(&self.shared.stats).destination_errors += 1;
            tracing::error!(message = "cannot deliver to the on-failure destination", %destination, %error);
        }
    }
}
