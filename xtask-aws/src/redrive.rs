//! `cargo xtask redrive` — a lane's on-failure queue worked off: every message (AWS's failure document of a
//! discarded range) is read, the range's records fetched back from the stream while it still holds them, each
//! decoded by the lanes' decoder and judged (`tally_domain::redrive::plan_range`), the ones the lane did not
//! count replayed through its claims and atomic step under the redrive fence (`CounterStore::replay`), and the
//! message deleted only when every record of its range was replayed or counted by the lane. What cannot be
//! replayed (undecodable, trimmed) is printed and its message stays. `docs/redrive.md` explains the rules.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use tally_aws::cache_auth::StoreSource;
use tally_aws::redrive::Replayed;
use tally_aws::store::{CacheEnv, CounterStore};
use tally_aws::stream_read::fetch_range;
use tally_contract::outputs;
use tally_deferred::Deferred;
use tally_domain::exactly_once::{DedupWindow, Position};
use tally_domain::redrive::{plan_range, FailureDoc, Fetched, Missing, Verdict};
use tally_domain::store_keys::StoreLane;
use tally_domain::wire;
use tally_pipeline::Stage;

use crate::flags::{Redrive, RedriveLane, RedriveTarget};
use crate::stage;

/// How long a received message stays invisible to others while this run works on it; messages that stay on
/// the queue are made visible again at the end of the run.
const VISIBILITY_SECS: i32 = 300;

impl crate::Run for Redrive {
    fn run(self) -> anyhow::Result<()> {
        let stage = stage::resolve(self.stage.as_deref())?;
        let mode = match (self.dry_run, self.yes) {
            (true, _) => Mode::Look,
            (false, true) => Mode::Replay,
            (false, false) if std::io::stdin().is_terminal() => Mode::Ask,
            (false, false) => bail!("redrive changes the lane's counters: pass --yes to replay, or --dry-run to only look"),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("while starting the async runtime")?;
        runtime.block_on(async {
            let target = Target::connect(&stage, &self.target, self.lane)
                .await
                .with_context(|| format!("while finding stage {}", stage.label()))?;
            let lane = self.lane;
            if mode == Mode::Ask {
                let looked = target.pass(lane, false).await?;
                if looked.to_replay == 0
                    || !ask(&format!(
                        "replay {} records and delete the settled messages? [y/N] ",
                        looked.to_replay
                    ))?
                {
                    println!("nothing replayed");
                    return Ok(());
                }
            }
            target.pass(lane, mode != Mode::Look).await.map(|_| ())
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Look,
    Ask,
    Replay,
}

fn ask(question: &str) -> anyhow::Result<bool> {
    print!("{question}");
    std::io::stdout()
        .flush()
        .context("while writing the question")?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("while reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// The stage's queue, stream and counter store.
struct Target {
    sqs: aws_sdk_sqs::Client,
    kinesis: aws_sdk_kinesis::Client,
    queue_url: String,
    stream: String,
    cache: CacheEnv,
    sdk: aws_config::SdkConfig,
    archive_bucket: String,
}

/// A local cloud's endpoints file (`tally-localcloud --endpoints-file`).
struct Endpoints {
    aws_endpoint: String,
    cache: std::net::SocketAddr,
    outputs: BTreeMap<String, String>,
}

fn read_endpoints(path: &Path) -> anyhow::Result<Endpoints> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "while reading {}: is `cargo xtask dev` running for this stage? (it writes the file once the local cloud is ready)",
            path.display()
        )
    })?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a local cloud's endpoints file", path.display()))?;
    let aws_endpoint = doc["aws_endpoint"]
        .as_str()
        .with_context(|| format!("{} has no aws_endpoint", path.display()))?
        .to_owned();
    let caches = doc["caches"].as_object().cloned().unwrap_or_default();
    let [(_, addr)] =
        <[_; 1]>::try_from(caches.into_iter().collect::<Vec<_>>()).map_err(|all| {
            anyhow::anyhow!(
                "{} names {} caches; redrive knows the stack's one counter cache",
                path.display(),
                all.len()
            )
        })?;
    let cache = addr
        .as_str()
        .and_then(|a| a.parse().ok())
        .with_context(|| {
            format!(
                "{}: the cache address {addr} is not host:port",
                path.display()
            )
        })?;
    let outputs = doc["outputs"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Endpoints {
        aws_endpoint,
        cache,
        outputs,
    })
}

fn output(outputs: &BTreeMap<String, String>, name: &str) -> anyhow::Result<String> {
    outputs
        .get(name)
        .cloned()
        .with_context(|| format!("the stack has no output {name}: deploy the current template"))
}

fn queue_output(lane: RedriveLane) -> &'static str {
    match lane {
        RedriveLane::Realtime => outputs::REALTIME_FAILURES_URL,
        RedriveLane::Deferred => outputs::DEFERRED_FAILURES_URL,
    }
}

impl Target {
    async fn connect(
        stage: &Stage,
        target: &RedriveTarget,
        lane: RedriveLane,
    ) -> anyhow::Result<Target> {
        let endpoints_file = match target {
            RedriveTarget::Aws => return Target::on_aws(stage, lane).await,
            RedriveTarget::Dev => xtask::dev_endpoints_file(stage),
            RedriveTarget::EndpointsFile(path) => path.clone(),
        };
        let local = read_endpoints(&endpoints_file)?;
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&local.aws_endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "redrive",
                "local",
                None,
                None,
                "local cloud",
            ))
            .load()
            .await;
        let mut cache = CacheEnv::plain(local.cache);
        let window = crate::stack_options(stage)?.dedup_window_secs;
        cache.window = DedupWindow::from_secs(u64::from(window))
            .map_err(|e| anyhow::anyhow!("the stack option dedup_window_secs: {e}"))?;
        Ok(Target {
            sqs: aws_sdk_sqs::Client::new(&sdk),
            kinesis: aws_sdk_kinesis::Client::new(&sdk),
            queue_url: output(&local.outputs, queue_output(lane))?,
            stream: output(&local.outputs, outputs::STREAM_NAME)?,
            archive_bucket: output(&local.outputs, outputs::ARCHIVE_BUCKET)?,
            cache,
            sdk,
        })
    }

    /// The deployed stack: its outputs, and the cache settings of the lane's function (the environment the
    /// lane itself connects with; the cache answers only inside the stack's VPC).
    async fn on_aws(stage: &Stage, lane: RedriveLane) -> anyhow::Result<Target> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let clients = tally_deploy::Clients::from_config(&sdk)?;
        let stack = stage.stack_name();
        let info = tally_deploy::describe(&clients, &stack)
            .await?
            .with_context(|| format!("there is no stack {stack}: deploy it first"))?;
        let outputs: BTreeMap<String, String> = info.outputs.into_iter().collect();
        let function = lane_function(&clients, &stack, lane).await?;
        let config = aws_sdk_lambda::Client::new(&sdk)
            .get_function_configuration()
            .function_name(&function)
            .send()
            .await
            .map_err(|e| aws_error(&format!("lambda GetFunctionConfiguration of {function}"), e))?;
        let vars = config
            .environment()
            .and_then(|e| e.variables())
            .cloned()
            .unwrap_or_default();
        let cache = CacheEnv::from_lookup(|name| vars.get(name).cloned())
            .with_context(|| format!("while reading the cache settings of function {function}"))?;
        Ok(Target {
            sqs: clients.sqs.clone(),
            kinesis: clients.kinesis.clone(),
            queue_url: output(&outputs, queue_output(lane))?,
            stream: output(&outputs, outputs::STREAM_NAME)?,
            archive_bucket: output(&outputs, outputs::ARCHIVE_BUCKET)?,
            cache,
            sdk,
        })
    }

    /// The lane's replay path: the counter store for the realtime lane, the deferred lane's library (store,
    /// archive) for the deferred lane.
    async fn replayer(&self, lane: RedriveLane) -> anyhow::Result<Replayer> {
        let endpoint = self.cache.node_url();
        let source = StoreSource::connect(
            self.cache.clone(),
            tally_aws::config::DEFAULT_COUNTER_TTL_SECS,
            Duration::from_secs(10),
            Some(self.sdk.clone()),
        )
        .await
        .with_context(|| format!("while connecting to the counter store at {endpoint} (on AWS it answers only inside the stack's VPC: run redrive from there)"))?;
        Ok(match lane {
            RedriveLane::Realtime => Replayer::Realtime(source.get().await?),
            RedriveLane::Deferred => Replayer::Deferred(Box::new(Deferred::new(
                source,
                tally_aws::config::s3(&self.sdk),
                &self.archive_bucket,
            ))),
        })
    }

    /// One pass over the queue: every message received once. `replay`: replay and delete; else only report.
    async fn pass(&self, lane: RedriveLane, replay: bool) -> anyhow::Result<Summary> {
        let replayer = if replay {
            Some(self.replayer(lane).await?)
        } else {
            None
        };
        let mut summary = Summary::default();
        let mut seen = HashSet::new();
        let mut kept = Vec::new();
        loop {
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(VISIBILITY_SECS)
                .send()
                .await
                .map_err(|e| {
                    aws_error(&format!("sqs ReceiveMessage from {}", self.queue_url), e)
                })?;
            let messages = received.messages();
            if messages.is_empty() {
                break;
            }
            for (i, message) in messages.iter().enumerate() {
                let (Some(id), Some(handle)) = (message.message_id(), message.receipt_handle())
                else {
                    continue;
                };
                if !seen.insert(id.to_owned()) {
                    continue;
                }
                summary.messages += 1;
                println!("message {id}");
                let handled = self
                    .handle(
                        message.body().unwrap_or_default(),
                        replayer.as_ref(),
                        &mut summary,
                    )
                    .await;
                let settled = match handled {
                    Ok(settled) => settled,
                    Err(error) => {
                        // This message and the rest of the page go back to the queue before the error is told.
                        kept.extend(
                            messages[i..]
                                .iter()
                                .filter_map(|m| m.receipt_handle().map(str::to_owned)),
                        );
                        let released = self.release(kept).await;
                        return Err(error.context(format!(
                            "while redriving message {id} (the messages not deleted are on the queue again{})",
                            released.err().map_or_else(String::new, |e| format!(", except: {e:#}"))
                        )));
                    }
                };
                if settled && replay {
                    self.sqs
                        .delete_message()
                        .queue_url(&self.queue_url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .map_err(|e| aws_error("sqs DeleteMessage", e))?;
                    summary.deleted += 1;
                    println!("  → deleted: every record of the range is counted once");
                } else {
                    kept.push(handle.to_owned());
                    if replay {
                        println!("  → kept on the queue (see above); run redrive again once the cause is fixed");
                    }
                }
            }
        }
        self.release(kept).await?;
        println!("{}", summary.line(lane, replay));
        Ok(summary)
    }

    /// Makes the messages this run keeps visible again at once: for the alarm, the next run and the operator's
    /// own tools.
    async fn release(&self, handles: Vec<String>) -> anyhow::Result<()> {
        for handle in handles {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(|e| aws_error("sqs ChangeMessageVisibility", e))?;
        }
        Ok(())
    }

    /// One message: its document, its records, their verdicts, the replays. Whether the message is settled.
    async fn handle(
        &self,
        body: &str,
        replayer: Option<&Replayer>,
        summary: &mut Summary,
    ) -> anyhow::Result<bool> {
        let doc = match FailureDoc::parse(body) {
            Ok(doc) => doc,
            Err(error) => {
                summary.unreadable += 1;
                println!("  not a failure document, left on the queue: {error}");
                return Ok(false);
            }
        };
        println!("  {}", describe(&doc));
        if let Some(arn) = &doc.stream_arn {
            if !arn.ends_with(&format!("/{}", self.stream)) {
                println!("  the range is of stream {arn}, not of this stage's stream {}: left on the queue", self.stream);
                summary.unreadable += 1;
                return Ok(false);
            }
        }
        let fetched = fetch_range(
            &self.kinesis,
            &self.stream,
            &doc.shard_id,
            &doc.start,
            &doc.end,
        )
        .await;
        let data: BTreeMap<String, Vec<u8>> = fetched.iter().flatten().cloned().collect();
        let decoded: Vec<Fetched> = fetched
            .as_deref()
            .unwrap_or_default()
            .iter()
            .map(|(sequence, data)| Fetched {
                sequence: sequence.clone(),
                decoded: wire::unpack(data)
                    .map(|e| e.len())
                    .map_err(|e| e.to_string()),
            })
            .collect();
        let plan = plan_range(
            &doc,
            fetched
                .as_ref()
                .map(|_| decoded.as_slice())
                .map_err(Clone::clone),
        );
        for (sequence, verdict) in &plan.records {
            summary.records += 1;
            let line = match verdict {
                Verdict::Replay { events } => match replayer {
                    None => {
                        summary.to_replay += 1;
                        format!("not counted by the lane, {events} events: would replay")
                    }
                    Some(replayer) => {
                        let events = wire::unpack(&data[sequence]).map_err(|e| {
                            anyhow::anyhow!("record {sequence} decoded a moment ago: {e}")
                        })?;
                        let position = Position::new(&doc.shard_id, sequence)?;
                        replayer.replay(&position, events, summary).await?
                    }
                },
                Verdict::CountedByLane => {
                    summary.counted_by_lane += 1;
                    "not replayed: counted by the lane when it was delivered (the range's first record was the one that failed)".to_owned()
                }
                Verdict::Uncertain => {
                    summary.uncertain += 1;
                    format!("not replayed: discarded for {}, the lane may have counted it; the message stays for you to decide", doc.condition)
                }
                Verdict::Undecodable(why) => {
                    summary.undecodable += 1;
                    format!("does not decode: {why}")
                }
            };
            println!("  {sequence}  {line}");
        }
        if let Some(missing) = &plan.missing {
            summary.missing_ranges += 1;
            println!("  {}", missing_line(&doc, missing));
        }
        // Replays went through (an error returned above), so the plan's rule decides.
        Ok(plan.settles_message())
    }
}

fn replay_line(replayed: Replayed, summary: &mut Summary) -> String {
    match replayed {
        Replayed::Applied(stats) => {
            summary.replayed += 1;
            summary.events_counted += stats.counted;
            format!(
                "replayed: {} events counted, {} duplicates (their ids were counted from another record), {} repeats within the record",
                stats.counted, stats.duplicates, stats.repeats
            )
        }
        Replayed::AlreadyReplayed => {
            summary.already_replayed += 1;
            "replayed by an earlier redrive: nothing counted now".to_owned()
        }
    }
}

/// How a lane replays a record: through its own library.
enum Replayer {
    /// The realtime lane writes the counter store only; it counts every event.
    Realtime(CounterStore),
    /// The deferred lane: settled counters and registers, archive (`Deferred::redrive_record`).
    Deferred(Box<Deferred>),
}

impl Replayer {
    /// Replays one record; the line to print.
    async fn replay(
        &self,
        position: &Position,
        events: Vec<tally_domain::event::Event>,
        summary: &mut Summary,
    ) -> anyhow::Result<String> {
        match self {
            Replayer::Realtime(store) => {
                let replay = store
                    .replay(StoreLane::Realtime, position, events, |_| true)
                    .await?;
                Ok(replay_line(replay.outcome, summary))
            }
            Replayer::Deferred(deferred) => {
                let done = deferred.redrive_record(position, events).await?;
                let line = replay_line(done.store, summary);
                Ok(format!("{line}; archived as {}", done.archived.join(", ")))
            }
        }
    }
}

fn describe(doc: &FailureDoc) -> String {
    let size = doc
        .batch_size
        .map_or_else(String::new, |n| format!(", {n} records"));
    let arrived = match (&doc.first_arrival, &doc.last_arrival) {
        (Some(first), Some(last)) => format!(", arrived {first} … {last}"),
        _ => String::new(),
    };
    let invoked = doc
        .invoke_count
        .map_or_else(String::new, |n| format!(" after {n} invocations"));
    let error = doc
        .function_error
        .as_ref()
        .map_or_else(String::new, |e| format!(" (function error: {e})"));
    format!(
        "{} {} … {}{size}{arrived}; {}{invoked}{error}",
        doc.shard_id, doc.start, doc.end, doc.condition
    )
}

fn missing_line(doc: &FailureDoc, missing: &Missing) -> String {
    match missing {
        Missing::Trimmed { before: None } => format!(
            "past retention: the stream no longer holds any record of {} … {}; they cannot be replayed (the message stays: delete it yourself once you have recorded the loss)",
            doc.start, doc.end
        ),
        Missing::Trimmed { before: Some(first) } => format!(
            "past retention: the records from {} up to before {first} are no longer in the stream; they cannot be replayed (the message stays)",
            doc.start
        ),
        Missing::Unreadable(why) => format!(
            "the stream gives no iterator for the range ({why}): past retention or the shard is gone; the message stays"
        ),
        Missing::Short { found, batch_size } => format!(
            "the stream gives {found} of the range's {batch_size} records; the message stays"
        ),
    }
}

/// What one pass did.
#[derive(Debug, Default)]
struct Summary {
    messages: usize,
    deleted: usize,
    unreadable: usize,
    records: usize,
    to_replay: usize,
    replayed: usize,
    already_replayed: usize,
    events_counted: usize,
    counted_by_lane: usize,
    uncertain: usize,
    undecodable: usize,
    missing_ranges: usize,
}

impl Summary {
    fn line(&self, lane: RedriveLane, replay: bool) -> String {
        let lane = match lane {
            RedriveLane::Realtime => "realtime",
            RedriveLane::Deferred => "deferred",
        };
        let done = if replay {
            format!(
                "{} replayed ({} events counted), {} replayed before",
                self.replayed, self.events_counted, self.already_replayed
            )
        } else {
            format!("{} to replay", self.to_replay)
        };
        format!(
            "redrive {lane}: {} messages ({} deleted, {} kept, {} unreadable); {} records: {done}, {} counted by the lane, {} uncertain, {} undecodable; {} ranges past retention",
            self.messages,
            self.deleted,
            self.messages - self.deleted,
            self.unreadable,
            self.records,
            self.counted_by_lane,
            self.uncertain,
            self.undecodable,
            self.missing_ranges
        )
    }
}

/// The physical name of the lane's function in `stack`.
async fn lane_function(
    clients: &tally_deploy::Clients,
    stack: &str,
    lane: RedriveLane,
) -> anyhow::Result<String> {
    let prefix = match lane {
        RedriveLane::Realtime => "Realtime",
        RedriveLane::Deferred => "Deferred",
    };
    let resources = clients
        .cfn
        .describe_stack_resources()
        .stack_name(stack)
        .send()
        .await
        .map_err(|e| {
            aws_error(
                &format!("cloudformation DescribeStackResources of {stack}"),
                e,
            )
        })?;
    resources
        .stack_resources()
        .iter()
        .find(|r| {
            r.resource_type() == Some("AWS::Lambda::Function")
                && r.logical_resource_id()
                    .is_some_and(|id| id.starts_with(prefix))
        })
        .and_then(|r| r.physical_resource_id().map(str::to_owned))
        .with_context(|| format!("stack {stack} has no {prefix} function"))
}

/// An AWS call's failure: what was called, then the SDK's full account of it.
fn aws_error(call: &str, error: impl std::error::Error + 'static) -> anyhow::Error {
    anyhow::anyhow!(
        "{call}: {}",
        aws_sdk_sqs::error::DisplayErrorContext(&error)
    )
}
