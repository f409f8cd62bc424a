//! The local cloud as a whole: a template's resources brought to life on one machine.
//!
//! [`LocalCloud::start`] opens the persisted services under the state directory, serves the AWS endpoint,
//! binds a listener per Function URL, loads the template with those local values, creates what it declares
//! (idempotently: a restart finds its streams, tables, queues and buckets as they were), starts the
//! functions, the Function URLs and the event source mappings (which resume from their checkpoints).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::esm::{local_call, KinesisMapping, RuntimeOptions, SqsMapping};
use crate::lambda::{Function, FunctionSpec, LogSink};
use crate::schedule::{EventSource, RuleRunner, ScheduleClock};
use crate::template::{self, LocalContext, Resources, Skipped};
use crate::Error;
use tally_localcloud_aws::aws::LocalAws;
use tally_localcloud_aws::cache::CacheServer;
use tally_localcloud_aws::store::Durability;

/// How to run a template locally.
#[derive(Debug, Clone)]
pub struct CloudOptions {
    pub template: Value,
    pub stack_name: String,
    /// Everything persistent lives here: `aws/` (services), `esm/` (checkpoints), `cache/` (each cache's
    /// `valkey-server` data), `logs/`.
    pub state_dir: PathBuf,
    /// When acknowledged writes reach the disk (the services' logs and the caches' append-only files): about
    /// once a second by default; either way a `kill -9` loses nothing acknowledged.
    pub durability: Durability,
    /// Template parameters; each function's code-key parameter holds the path of its host binary.
    pub parameters: BTreeMap<String, String>,
    /// Port of the AWS endpoint (0 = any free port).
    pub endpoint_port: u16,
    /// First port of the Function URLs, in template order (0 = any free ports).
    pub url_port_base: u16,
    /// Extra environment per function, keyed by function name or by its code-key parameter
    /// (`QueryCodeKey` → `TALLY_QUERY_AUTH=off`).
    pub function_env: BTreeMap<String, BTreeMap<String, String>>,
    /// A function whose binary does not exist is reported in [`Resources::skipped`] (with its URLs and mappings)
    /// instead of failing the start: `cargo xtask dev` while a function crate is not written yet.
    pub skip_unbuilt: bool,
    /// Echo function logs to the terminal (they always go to `<state>/logs`).
    pub terminal_logs: bool,
    pub mappings: RuntimeOptions,
    /// How many times faster than real time the schedules' clock runs (1 = real time). A local-only knob: with
    /// 60, `rate(1 minute)` fires every second and Lambda's retry delays shrink alike.
    pub schedule_speedup: u32,
}

/// A running local cloud; [`LocalCloud::shutdown`] stops it (state stays on disk).
#[derive(Debug)]
pub struct LocalCloud {
    pub aws: Arc<LocalAws>,
    pub endpoint: String,
    pub resources: Resources,
    /// Local URL of each Function URL, by logical id.
    pub urls: BTreeMap<String, String>,
    pub functions: BTreeMap<String, Function>,
    pub kinesis_mappings: BTreeMap<String, KinesisMapping>,
    pub sqs_mappings: BTreeMap<String, SqsMapping>,
    /// The running caches (one `valkey-server` each), by logical id; stopped by [`LocalCloud::shutdown`] or
    /// when dropped, and by themselves when this process dies.
    pub caches: BTreeMap<String, CacheServer>,
    /// The enabled schedule rules that fire, by logical id.
    pub schedules: BTreeMap<String, RuleRunner>,
    /// `<state>/meter.json`: the meter's snapshot, rewritten about once a second and at shutdown.
    pub meter_file: PathBuf,
    stop: watch::Sender<bool>,
}

async fn bind(port: u16, what: &str) -> Result<TcpListener, Error> {
    TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|error| {
            Error::start(
                what,
                format!(
                    "cannot listen on 127.0.0.1:{port} ({error}); free the port or choose another"
                ),
            )
        })
}

impl LocalCloud {
    pub async fn start(options: CloudOptions) -> Result<LocalCloud, Error> {
        let aws_dir = options.state_dir.join("aws");
        let aws = LocalAws::open_with(&aws_dir, options.durability)
            .map_err(|error| Error::start("the local AWS services", error.to_string()))?;
        let (stop, stop_rx) = watch::channel(false);

        let listener = bind(options.endpoint_port, "the local AWS endpoint").await?;
        let endpoint = format!(
            "http://{}",
            listener
                .local_addr()
                .map_err(|e| Error::start("the endpoint", e.to_string()))?
        );
        {
            let aws = aws.clone();
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                tokio::select! {
                    result = tally_localcloud_aws::aws::serve(listener, aws) => {
                        if let Err(error) = result {
                            tracing::error!(message = "the local AWS endpoint stopped", %error);
                        }
                    }
                    _ = crate::lambda::http::stopped(&mut stop) => {}
                }
            });
        }

        let meter_file = options.state_dir.join(METER_FILE);
        tokio::spawn(write_meter(
            aws.clone(),
            meter_file.clone(),
            stop_rx.clone(),
        ));

        // Function URL listeners first: their addresses are values the template refers to.
        let url_ids = resource_ids(&options.template, "AWS::Lambda::Url");
        let mut url_listeners = BTreeMap::new();
        let mut urls = BTreeMap::new();
        for (i, id) in url_ids.iter().enumerate() {
            let port = if options.url_port_base == 0 {
                0
            } else {
                options.url_port_base + i as u16
            };
            let listener = bind(port, &format!("Function URL {id}")).await?;
            let addr = listener
                .local_addr()
                .map_err(|e| Error::start(id.clone(), e.to_string()))?;
            urls.insert(id.clone(), format!("http://{addr}/"));
            url_listeners.insert(id.clone(), listener);
        }

        // Cache ports too: the template refers to them (`Endpoint.Port`). Ids that could not name a directory
        // get none here; loading the template refuses them.
        let mut cache_ports = BTreeMap::new();
        for id in resource_ids(&options.template, "AWS::ElastiCache::ServerlessCache") {
            if let Ok(dir) = tally_localcloud_aws::cache::cache_dir(&options.state_dir, &id) {
                let port = tokio::task::spawn_blocking(move || {
                    tally_localcloud_aws::cache::choose_port(&dir)
                })
                .await
                .map_err(|e| Error::start(format!("cache {id}"), e.to_string()))??;
                cache_ports.insert(id, port);
            }
        }

        let ctx = LocalContext {
            stack_name: options.stack_name.clone(),
            region: aws.region.clone(),
            account: tally_localcloud_aws::aws::ACCOUNT_ID.to_owned(),
            endpoint: endpoint.clone(),
            parameters: options.parameters.clone(),
            function_urls: urls.clone(),
            cache_ports: cache_ports.clone(),
        };
        let mut resources = template::load(&options.template, &ctx)?;
        create_resources(&aws, &mut resources).await?;
        let caches = start_caches(
            &resources,
            &options.state_dir,
            &cache_ports,
            options.durability,
        )
        .await?;
        for cache in caches.values() {
            aws.meter.watch_cache(&cache.name, cache.addr());
        }

        let logs = LogSink::new(Some(options.state_dir.join("logs")), options.terminal_logs);
        let mut functions = BTreeMap::new();
        let mut unbuilt = Vec::new();
        let background = background_functions(&resources);
        for decl in &resources.functions {
            let executable = PathBuf::from(&decl.code);
            if !executable.is_file() {
                let via = decl
                    .code_parameter
                    .as_deref()
                    .map(|p| format!(" (parameter {p})"))
                    .unwrap_or_default();
                let message = format!(
                    "its code{via} is {}, which is not a host binary; build it with `cargo build -p tally-<name>` and pass its path",
                    decl.code
                );
                if !options.skip_unbuilt {
                    return Err(Error::start(format!("function {}", decl.id), message));
                }
                unbuilt.push(Skipped {
                    id: decl.id.clone(),
                    kind: "AWS::Lambda::Function".into(),
                    reason: message,
                });
                continue;
            }
            let mut spec = FunctionSpec::new(decl.name.clone(), executable);
            spec.memory_mb = decl.memory_mb;
            spec.timeout = decl.timeout;
            spec.reserved_concurrency = decl.reserved_concurrency;
            spec.logging = decl.logging;
            spec.background = background.contains(&decl.name);
            spec.region = aws.region.clone();
            spec.env = decl.env.clone();
            for (key, value) in [
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                // The access key id names the function: the meter attributes its DynamoDB requests to it.
                ("AWS_ACCESS_KEY_ID", decl.name.as_str()),
                ("AWS_SECRET_ACCESS_KEY", "test"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ]
            .into_iter()
            .chain(tally_localcloud_aws::cache::FUNCTION_ENV)
            {
                spec.env.insert(key.to_owned(), value.to_owned());
            }
            for key in std::iter::once(&decl.name).chain(decl.code_parameter.as_ref()) {
                if let Some(extra) = options.function_env.get(key) {
                    spec.env.extend(extra.clone());
                }
            }
            functions.insert(
                decl.name.clone(),
                Function::start_metered(spec, &logs, aws.meter.clone()),
            );
        }

        for decl in &resources.urls {
            let (Some(listener), Some(function)) = (
                url_listeners.remove(&decl.id),
                functions.get(&decl.function),
            ) else {
                unbuilt.push(Skipped {
                    id: decl.id.clone(),
                    kind: "AWS::Lambda::Url".into(),
                    reason: format!("its function {} is not running", decl.function),
                });
                continue;
            };
            if decl.auth_type != "NONE" {
                tracing::warn!(message = "Function URL auth is not enforced locally", url = %decl.id, auth = %decl.auth_type);
            }
            function.prewarm(1);
            tokio::spawn(crate::url::serve_url(
                listener,
                function.clone(),
                decl.cors.clone(),
                stop_rx.clone(),
            ));
        }

        let mut mapping_options = options.mappings.clone();
        mapping_options.state_dir = Some(options.state_dir.clone());
        let mut kinesis_mappings = BTreeMap::new();
        let mut sqs_mappings = BTreeMap::new();
        for decl in &resources.mappings {
            if !decl.config.enabled {
                continue;
            }
            let Some(function) = functions.get(&decl.function) else {
                unbuilt.push(Skipped {
                    id: decl.id.clone(),
                    kind: "AWS::Lambda::EventSourceMapping".into(),
                    reason: format!("its function {} is not running", decl.function),
                });
                continue;
            };
            function.prewarm(1);
            let started = if decl.config.source_arn.starts_with("arn:aws:sqs:") {
                SqsMapping::start(
                    decl.config.clone(),
                    function.clone(),
                    aws.clone(),
                    mapping_options.clone(),
                )
                .map(|m| {
                    sqs_mappings.insert(decl.id.clone(), m);
                })
            } else {
                KinesisMapping::start(
                    decl.config.clone(),
                    function.clone(),
                    aws.clone(),
                    mapping_options.clone(),
                )
                .map(|m| {
                    kinesis_mappings.insert(decl.id.clone(), m);
                })
            };
            started.map_err(|message| Error::start(format!("mapping {}", decl.id), message))?;
        }
        let clock = ScheduleClock::start(options.schedule_speedup);
        let source = EventSource {
            account: tally_localcloud_aws::aws::ACCOUNT_ID.to_owned(),
            region: aws.region.clone(),
        };
        let mut schedules = BTreeMap::new();
        for rule in &resources.rules {
            if !rule.enabled {
                unbuilt.push(Skipped {
                    id: rule.id.clone(),
                    kind: "AWS::Events::Rule".into(),
                    reason: format!("State is DISABLED: {} never fires", rule.expression),
                });
                continue;
            }
            let mut targets = Vec::new();
            for target in &rule.targets {
                match functions.get(&target.function) {
                    Some(function) => targets.push((target.clone(), function.clone())),
                    None => unbuilt.push(Skipped {
                        id: format!("{} target {}", rule.id, target.id),
                        kind: "AWS::Events::Rule".into(),
                        reason: format!("its function {} is not running", target.function),
                    }),
                }
            }
            let runner = RuleRunner::start(
                rule.clone(),
                targets,
                source.clone(),
                clock,
                stop_rx.clone(),
            );
            schedules.insert(rule.id.clone(), runner);
        }
        resources.skipped.extend(unbuilt);
        Ok(LocalCloud {
            aws,
            endpoint,
            resources,
            urls,
            functions,
            kinesis_mappings,
            sqs_mappings,
            caches,
            schedules,
            meter_file,
            stop,
        })
    }

    /// What `--endpoints-file` holds: the AWS endpoint, each Function URL, each cache (`127.0.0.1:PORT` by
    /// logical id), the template's outputs (resolved),
    /// and the well-known ones by role.
    pub fn endpoints(&self) -> Value {
        let output = |name: &str| self.resources.outputs.get(name).cloned();
        json!({
            "aws_endpoint": self.endpoint,
            "meter": format!("{}{}", self.endpoint, tally_localcloud_aws::meter::METER_PATH),
            "collect_url": output(tally_contract::outputs::COLLECT_URL),
            "query_url": output(tally_contract::outputs::QUERY_URL),
            "dashboard_url": output(tally_contract::outputs::QUERY_URL),
            "function_urls": self.urls,
            "caches": self.caches.iter().map(|(id, c)| (id.clone(), c.addr().to_string())).collect::<BTreeMap<_, _>>(),
            "outputs": self.resources.outputs,
        })
    }

    /// Stops schedules, mappings, listeners and function instances. What was acknowledged is already on disk.
    pub fn shutdown(&self) {
        for mapping in self.kinesis_mappings.values() {
            mapping.stop();
        }
        for mapping in self.sqs_mappings.values() {
            mapping.stop();
        }
        self.stop.send_replace(true);
        for function in self.functions.values() {
            function.shutdown();
        }
        // The last reading, after the functions stopped (their last invocations are metered by now).
        if let Err(error) = self.aws.meter.write_file(&self.meter_file) {
            tracing::warn!(message = "cannot write the meter file", path = %self.meter_file.display(), %error);
        }
        // Last: the functions that used the caches are gone. Each server writes its append-only file and exits.
        for cache in self.caches.values() {
            cache.stop();
        }
    }
}

/// The meter's file under the state directory.
pub const METER_FILE: &str = "meter.json";

/// Writes the meter's snapshot to `path` about once a second until `stop`.
async fn write_meter(aws: Arc<LocalAws>, path: PathBuf, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::lambda::http::stopped(&mut stop) => return,
        }
        let (meter, at) = (aws.clone(), path.clone());
        let written = tokio::task::spawn_blocking(move || meter.meter.write_file(&at)).await;
        if let Ok(Err(error)) = written {
            tracing::warn!(message = "cannot write the meter file", path = %path.display(), %error);
        }
    }
}

/// The functions whose processes run at a lower CPU priority ([`FunctionSpec::background`]): targets of
/// mappings with a batching window or of schedules, unless something waits on them too (a Function URL, a
/// mapping without a batching window).
pub fn background_functions(resources: &Resources) -> BTreeSet<String> {
    let waited_on: BTreeSet<&str> = resources
        .urls
        .iter()
        .map(|u| u.function.as_str())
        .chain(
            resources
                .mappings
                .iter()
                .filter(|m| m.config.batching_window.is_zero())
                .map(|m| m.function.as_str()),
        )
        .collect();
    resources
        .mappings
        .iter()
        .filter(|m| !m.config.batching_window.is_zero())
        .map(|m| m.function.as_str())
        .chain(
            resources
                .rules
                .iter()
                .flat_map(|r| r.targets.iter().map(|t| t.function.as_str())),
        )
        .filter(|f| !waited_on.contains(f))
        .map(str::to_owned)
        .collect()
}

/// The logical ids of the template's resources of type `kind`, in template order.
fn resource_ids(template: &Value, kind: &str) -> Vec<String> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .map(|resources| {
            resources
                .iter()
                .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some(kind))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Starts (or restarts on their data) the template's caches on the ports the template was resolved with.
async fn start_caches(
    resources: &Resources,
    state_dir: &std::path::Path,
    ports: &BTreeMap<String, u16>,
    durability: Durability,
) -> Result<BTreeMap<String, CacheServer>, Error> {
    let mut caches = BTreeMap::new();
    for decl in &resources.caches {
        let dir = tally_localcloud_aws::cache::cache_dir(state_dir, &decl.id)?;
        let port = ports.get(&decl.id).copied().ok_or_else(|| {
            Error::start(format!("cache {}", decl.id), "no port was chosen for it")
        })?;
        let (id, name) = (decl.id.clone(), decl.name.clone());
        let cache = tokio::task::spawn_blocking(move || {
            CacheServer::start(&id, &name, &dir, port, durability)
        })
        .await
        .map_err(|e| Error::start(format!("cache {}", decl.id), e.to_string()))??;
        tracing::info!(message = "cache started", cache = %decl.name, addr = %cache.addr());
        caches.insert(decl.id.clone(), cache);
    }
    Ok(caches)
}

/// Creates the template's streams, consumers, tables, queues, buckets and secrets; existing ones are kept. Mappings on a
/// consumer get the consumer's real ARN.
async fn create_resources(aws: &Arc<LocalAws>, resources: &mut Resources) -> Result<(), Error> {
    for stream in &resources.streams {
        if aws.kinesis.stream(&stream.name).is_err() {
            aws.kinesis
                .create(&stream.name, stream.shards, stream.on_demand)
                .map_err(|error| {
                    Error::start(format!("stream {}", stream.id), error.to_string())
                })?;
        }
    }
    for consumer in &resources.consumers {
        let stream = aws.kinesis.stream(&consumer.stream_arn).map_err(|error| {
            Error::start(format!("consumer {}", consumer.id), error.to_string())
        })?;
        let existing = stream
            .consumers()
            .into_iter()
            .find(|c| c.name == consumer.name);
        let arn = match existing {
            Some(found) => found.arn,
            None => {
                let out = local_call(
                    aws,
                    "Kinesis_20131202.RegisterStreamConsumer",
                    json!({"StreamARN": stream.arn(), "ConsumerName": consumer.name}),
                )
                .await
                .map_err(|message| Error::start(format!("consumer {}", consumer.id), message))?;
                out.pointer("/Consumer/ConsumerARN")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            }
        };
        for mapping in &mut resources.mappings {
            if mapping.config.source_arn == consumer.arn {
                mapping.config.source_arn = arn.clone();
            }
        }
    }
    for table in &resources.tables {
        if !aws.dynamodb.table_names().contains(&table.name) {
            aws.dynamodb
                .create_table(&table.create)
                .map_err(|error| Error::start(format!("table {}", table.id), error.to_string()))?;
            if let Some(attribute) = &table.ttl_attribute {
                local_call(
                    aws,
                    "DynamoDB_20120810.UpdateTimeToLive",
                    json!({"TableName": table.name, "TimeToLiveSpecification": {"AttributeName": attribute, "Enabled": true}}),
                )
                .await
                .map_err(|message| Error::start(format!("table {} TTL", table.id), message))?;
            }
        }
    }
    for queue in &resources.queues {
        let input = json!({"QueueName": queue.name, "Attributes": queue.attributes});
        aws.sqs
            .create_queue(&input)
            .map_err(|error| Error::start(format!("queue {}", queue.id), error.to_string()))?;
    }
    for bucket in &resources.buckets {
        aws.s3
            .create_bucket(&bucket.name)
            .map_err(|error| Error::start(format!("bucket {}", bucket.id), error.to_string()))?;
    }
    for secret in &resources.secrets {
        aws.secretsmanager
            .ensure_generated(&secret.name, &secret.generate)
            .map_err(|error| Error::start(format!("secret {}", secret.id), error.to_string()))?;
    }
    Ok(())
}
