//! The template loader: a synthesized CloudFormation template turned into the local [`Resources`] it declares.
//!
//! Every intrinsic is resolved to local values ([`LocalContext`]): names stay as the template gives them,
//! ARNs use the local account and region, queue URLs point at the local endpoint, Function URLs at their
//! local listeners. Every resource lands in [`Resources`] or in [`Resources::skipped`] with the reason, by logical id:
//! nothing is ignored silently.

mod resolve;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

pub use resolve::LocalContext;
use resolve::Resolver;

use crate::esm::{MappingConfig, StartingPosition};
use crate::schedule::Schedule;
use crate::Error;

/// The local resources a template declares, with intrinsics resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    pub streams: Vec<StreamDecl>,
    pub consumers: Vec<ConsumerDecl>,
    pub tables: Vec<TableDecl>,
    pub queues: Vec<QueueDecl>,
    pub buckets: Vec<BucketDecl>,
    pub secrets: Vec<SecretDecl>,
    pub functions: Vec<FunctionDecl>,
    pub urls: Vec<UrlDecl>,
    pub mappings: Vec<MappingDecl>,
    pub caches: Vec<CacheDecl>,
    /// `AWS::Events::Rule`s with a `ScheduleExpression` (enabled or not: a disabled rule is validated, never fired).
    pub rules: Vec<RuleDecl>,
    /// Resources the local cloud does not run, with the reason.
    pub skipped: Vec<Skipped>,
    /// `Outputs`, resolved.
    pub outputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamDecl {
    pub id: String,
    pub name: String,
    /// `ShardCount` (provisioned), `None` for on-demand.
    pub shards: Option<u32>,
    pub on_demand: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConsumerDecl {
    pub id: String,
    pub name: String,
    pub stream_arn: String,
    /// The ARN the template's references resolve to.
    pub arn: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableDecl {
    pub id: String,
    pub name: String,
    /// The DynamoDB `CreateTable` request for it.
    pub create: Value,
    /// `TimeToLiveSpecification.AttributeName` when enabled.
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueDecl {
    pub id: String,
    pub name: String,
    /// SQS `CreateQueue` attributes (strings, `RedrivePolicy` as JSON text).
    pub attributes: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BucketDecl {
    pub id: String,
    pub name: String,
}

/// An `AWS::SecretsManager::Secret` with a generated value (`tally_localcloud_aws::aws::secretsmanager`).
#[derive(Debug, Clone, PartialEq)]
pub struct SecretDecl {
    pub id: String,
    /// `Name` (the `Ref` is its ARN).
    pub name: String,
    pub generate: tally_localcloud_aws::aws::secretsmanager::Generate,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FunctionDecl {
    pub id: String,
    pub name: String,
    /// `Code.S3Key`, resolved: the local cloud is given the host binary's path through the code-key
    /// parameter.
    pub code: String,
    /// The template parameter `Code.S3Key` refers to, if any (`CollectCodeKey`).
    pub code_parameter: Option<String>,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub reserved_concurrency: Option<u32>,
    pub env: BTreeMap<String, String>,
    /// `LoggingConfig` (format and level filters).
    pub logging: crate::lambda::logs::LogConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UrlDecl {
    pub id: String,
    /// The target function's name.
    pub function: String,
    pub auth_type: String,
    pub cors: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MappingDecl {
    pub id: String,
    /// The function's name.
    pub function: String,
    pub config: MappingConfig,
}

/// An `AWS::ElastiCache::ServerlessCache`: one local `valkey-server` (`tally_localcloud_aws::cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDecl {
    /// The logical id (letters and digits only: it names the cache's directory).
    pub id: String,
    /// `ServerlessCacheName` (its `Ref`).
    pub name: String,
    /// `Engine`: `valkey` or `redis` (both run on the same server locally).
    pub engine: String,
}

/// A scheduled `AWS::Events::Rule`, its expression parsed (`crate::schedule`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleDecl {
    pub id: String,
    /// The rule's ARN: the event's `resources`.
    pub arn: String,
    /// `ScheduleExpression` as written.
    pub expression: String,
    pub schedule: Schedule,
    /// `State` is `ENABLED` (the default).
    pub enabled: bool,
    pub targets: Vec<TargetDecl>,
}

/// One target of a scheduled rule: a function of the template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetDecl {
    /// The target's `Id`.
    pub id: String,
    /// The function's name.
    pub function: String,
    pub input: TargetInput,
}

/// What a target receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetInput {
    /// The scheduled event itself.
    Event,
    /// `Input`: this JSON text, as given.
    Constant(String),
    /// `InputPath`: the part of the event at these keys (`$.detail` = `["detail"]`; `$` = the event).
    Path(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub id: String,
    pub kind: String,
    pub reason: String,
}

/// Resource types with no local effect, and why that is harmless.
const NO_LOCAL_EFFECT: &[(&str, &str)] = &[
    ("AWS::IAM::Role", "IAM is not enforced locally"),
    ("AWS::IAM::Policy", "IAM is not enforced locally"),
    ("AWS::Lambda::Permission", "IAM is not enforced locally"),
    ("AWS::S3::BucketPolicy", "IAM is not enforced locally"),
    ("AWS::SQS::QueuePolicy", "IAM is not enforced locally"),
    (
        "AWS::Logs::LogGroup",
        "function logs go to the terminal and to <state>/logs/<function>.log",
    ),
    (
        "AWS::EC2::VPC",
        "no network locally: everything listens on 127.0.0.1 (a function's VpcConfig is ignored)",
    ),
    (
        "AWS::EC2::Subnet",
        "no network locally: everything listens on 127.0.0.1",
    ),
    (
        "AWS::EC2::RouteTable",
        "no network locally: everything listens on 127.0.0.1",
    ),
    (
        "AWS::EC2::SubnetRouteTableAssociation",
        "no network locally: everything listens on 127.0.0.1",
    ),
    (
        "AWS::EC2::SecurityGroup",
        "no network locally: any local process reaches any local port",
    ),
    (
        "AWS::EC2::SecurityGroupIngress",
        "no network locally: any local process reaches any local port",
    ),
    (
        "AWS::EC2::SecurityGroupEgress",
        "no network locally: any local process reaches any local port",
    ),
    (
        "AWS::EC2::VPCEndpoint",
        "no network locally: functions reach the local endpoint directly",
    ),
    (
        "AWS::ElastiCache::User",
        "the local cache has no authentication (functions get TALLY_CACHE_AUTH=none)",
    ),
    (
        "AWS::ElastiCache::UserGroup",
        "the local cache has no authentication (functions get TALLY_CACHE_AUTH=none)",
    ),
];

/// Resource types the local cloud accepts as inert (nothing runs), and what that means.
const INERT: &[(&str, &str)] = &[
    (
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "no auto scaling locally: the local table never throttles, so it keeps the template's ProvisionedThroughput (DescribeTable reports it)",
    ),
    (
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "no auto scaling locally: the local table never throttles, so there is nothing to track",
    ),
    (
        "AWS::CloudFront::Distribution",
        "no edge locally: clients call the collect Function URL on the local listener (its Outputs URL is a placeholder host); collect still requires the origin header, so a local client sends the collect origin secret (in the local Secrets Manager) itself: the {{resolve:secretsmanager:...}} in the distribution is not resolved",
    ),
    (
        "AWS::WAFv2::WebACL",
        "no edge locally: nothing is rate limited per address (the local cloud's own guards still apply)",
    ),
    (
        "AWS::Budgets::Budget",
        "no billing locally: the meter (GET /_local/meter) says what AWS would bill",
    ),
];

/// Resource types the local cloud cannot run, and what that means.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "AWS::CloudWatch::Alarm",
        "no CloudWatch metrics locally: the alarm never fires",
    ),
    ("AWS::SNS::Topic", "no SNS locally: nothing is published"),
    (
        "AWS::SNS::TopicPolicy",
        "no SNS locally: nothing is published",
    ),
    (
        "AWS::SNS::Subscription",
        "no SNS locally: nothing is delivered",
    ),
];

/// A secret of the template: its name and `GenerateSecretString` (a `SecretString` in the template is refused:
/// tally's stacks never put a secret value there).
fn secret(id: &str, props: &Value) -> Result<SecretDecl, Error> {
    let name = props
        .get("Name")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::template(id, "a secret needs a Name locally"))?;
    let generate = props.get("GenerateSecretString").ok_or_else(|| {
        Error::template(
            id,
            "only secrets with GenerateSecretString are supported locally",
        )
    })?;
    let length = match generate.get("PasswordLength") {
        None => 32,
        Some(n) => u32_in(
            &format!("{id}.Properties.GenerateSecretString.PasswordLength"),
            n,
            1,
            4096,
        )? as usize,
    };
    let text = |key: &str| generate.get(key).and_then(Value::as_str).map(str::to_owned);
    let template_key = match (text("SecretStringTemplate"), text("GenerateStringKey")) {
        (Some(template), Some(key)) => Some((template, key)),
        (None, None) => None,
        _ => {
            return Err(Error::template(
                id,
                "SecretStringTemplate and GenerateStringKey go together",
            ))
        }
    };
    Ok(SecretDecl {
        id: id.to_owned(),
        name: name.to_owned(),
        generate: tally_localcloud_aws::aws::secretsmanager::Generate {
            length,
            template_key,
        },
    })
}

/// Loads `template` for the local cloud.
pub fn load(template: &Value, ctx: &LocalContext) -> Result<Resources, Error> {
    let resolver = Resolver::new(template, ctx)?;
    let mut resources = Resources::default();
    for (id, resource) in resolver.resources {
        let kind = resource
            .get("Type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::template(id, "resource has no Type"))?;
        if resource.get("Condition").is_some() {
            return Err(Error::template(
                id,
                "conditional resources are not supported by the local cloud",
            ));
        }
        let props = match resource.get("Properties") {
            Some(props) => resolver.resolve(&format!("{id}.Properties"), props)?,
            None => json!({}),
        };
        let exposed = &resolver.exposed[id];
        let at = |name: &str| format!("{id}.Properties.{name}");
        match kind {
            "AWS::Kinesis::Stream" => {
                let on_demand = props
                    .pointer("/StreamModeDetails/StreamMode")
                    .and_then(Value::as_str)
                    == Some("ON_DEMAND");
                let shards = match props.get("ShardCount") {
                    Some(count) => Some(u32_in(&at("ShardCount"), count, 1, 500)?),
                    None if on_demand => None,
                    None => Some(1),
                };
                resources.streams.push(StreamDecl {
                    id: id.clone(),
                    name: exposed.reference.clone(),
                    shards,
                    on_demand,
                });
            }
            "AWS::Kinesis::StreamConsumer" => resources.consumers.push(ConsumerDecl {
                id: id.clone(),
                name: exposed.attributes["ConsumerName"].clone(),
                stream_arn: exposed.attributes["StreamARN"].clone(),
                arn: exposed.reference.clone(),
            }),
            "AWS::DynamoDB::Table" => {
                let mut create = Map::new();
                create.insert("TableName".into(), json!(exposed.reference));
                for key in [
                    "AttributeDefinitions",
                    "KeySchema",
                    "BillingMode",
                    "ProvisionedThroughput",
                    "GlobalSecondaryIndexes",
                    "LocalSecondaryIndexes",
                ] {
                    if let Some(value) = props.get(key) {
                        create.insert(key.into(), value.clone());
                    }
                }
                let ttl = props
                    .get("TimeToLiveSpecification")
                    .filter(|t| t.get("Enabled").and_then(Value::as_bool).unwrap_or(false))
                    .and_then(|t| t.get("AttributeName"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                resources.tables.push(TableDecl {
                    id: id.clone(),
                    name: exposed.reference.clone(),
                    create: Value::Object(create),
                    ttl_attribute: ttl,
                });
            }
            "AWS::SQS::Queue" => {
                let mut attributes = Map::new();
                for key in [
                    "VisibilityTimeout",
                    "MessageRetentionPeriod",
                    "DelaySeconds",
                    "MaximumMessageSize",
                    "ReceiveMessageWaitTimeSeconds",
                ] {
                    if let Some(value) = props.get(key) {
                        attributes.insert(key.into(), json!(scalar_text(value)));
                    }
                }
                if let Some(redrive) = props.get("RedrivePolicy") {
                    let text = match redrive {
                        Value::String(text) => text.clone(),
                        other => other.to_string(),
                    };
                    attributes.insert("RedrivePolicy".into(), json!(text));
                }
                resources.queues.push(QueueDecl {
                    id: id.clone(),
                    name: exposed.attributes["QueueName"].clone(),
                    attributes,
                });
            }
            "AWS::S3::Bucket" => resources.buckets.push(BucketDecl {
                id: id.clone(),
                name: exposed.reference.clone(),
            }),
            "AWS::SecretsManager::Secret" => resources.secrets.push(secret(id, &props)?),
            "AWS::Lambda::Function" => {
                resources.functions
                    .push(function(id, resource, &props, &exposed.reference)?)
            }
            "AWS::Lambda::Url" => {
                let target = props
                    .get("TargetFunctionArn")
                    .and_then(Value::as_str)
                    .ok_or_else(|| Error::template(&at("TargetFunctionArn"), "missing"))?;
                resources.urls.push(UrlDecl {
                    id: id.clone(),
                    function: function_name(target),
                    auth_type: props
                        .get("AuthType")
                        .and_then(Value::as_str)
                        .unwrap_or("NONE")
                        .to_owned(),
                    cors: props.get("Cors").cloned(),
                });
            }
            "AWS::Lambda::EventSourceMapping" => resources.mappings.push(mapping(id, &props)?),
            "AWS::ElastiCache::ServerlessCache" => resources.caches.push(cache(id, &props)?),
            "AWS::Events::Rule" => match rule(id, &props, &exposed.attributes["Arn"])? {
                Some(rule) => resources.rules.push(rule),
                None => resources.skipped.push(Skipped {
                    id: id.clone(),
                    kind: kind.to_owned(),
                    reason: "no event bus locally: an event pattern rule matches nothing (schedule rules fire)".to_owned(),
                }),
            },
            other => {
                let known = NO_LOCAL_EFFECT
                    .iter()
                    .chain(INERT)
                    .chain(NOT_RUN)
                    .find(|(kind, _)| *kind == other);
                let reason = match known {
                    Some((_, reason)) => (*reason).to_owned(),
                    None => format!("resource type {other} is not supported by the local cloud: it does not exist locally"),
                };
                resources.skipped.push(Skipped {
                    id: id.clone(),
                    kind: other.to_owned(),
                    reason,
                });
            }
        }
    }
    if let Some(outputs) = template.get("Outputs").and_then(Value::as_object) {
        for (name, output) in outputs {
            if let Some(value) = output.get("Value") {
                let resolved = resolver.string(&format!("Outputs.{name}"), value)?;
                resources.outputs.insert(name.clone(), resolved);
            }
        }
    }
    for mapping in &resources.mappings {
        if !resources
            .functions
            .iter()
            .any(|f| f.name == mapping.function)
        {
            return Err(Error::template(
                &mapping.id,
                format!(
                    "FunctionName {} is not a function of this template",
                    mapping.function
                ),
            ));
        }
    }
    for rule in &resources.rules {
        for (i, target) in rule.targets.iter().enumerate() {
            if !resources
                .functions
                .iter()
                .any(|f| f.name == target.function)
            {
                return Err(Error::template(
                    &format!("{}.Properties.Targets[{i}].Arn", rule.id),
                    format!(
                        "names the function {}, which is not a function of this template; the local cloud fires schedules at the template's functions",
                        target.function
                    ),
                ));
            }
        }
    }
    for url in &resources.urls {
        if !resources.functions.iter().any(|f| f.name == url.function) {
            return Err(Error::template(
                &url.id,
                format!(
                    "TargetFunctionArn names {}, which is not a function of this template",
                    url.function
                ),
            ));
        }
    }
    Ok(resources)
}

impl Resources {
    /// Types of resources not run, `logical id (type): reason` one per line, for the start-up report.
    pub fn skipped_report(&self) -> String {
        self.skipped
            .iter()
            .map(|s| format!("  {} ({}): {}\n", s.id, s.kind, s.reason))
            .collect()
    }
}

/// The function name in a function name, name:alias, or ARN.
fn function_name(name_or_arn: &str) -> String {
    match name_or_arn.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest).to_owned(),
        None => name_or_arn
            .split(':')
            .next()
            .unwrap_or(name_or_arn)
            .to_owned(),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// An integer property in `min..=max` (CloudFormation also accepts numbers as strings).
fn int_in(at: &str, value: &Value, min: i64, max: i64) -> Result<i64, Error> {
    let n = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| Error::template(at, format!("expected an integer, found {value}")))?;
    if !(min..=max).contains(&n) {
        return Err(Error::template(
            at,
            format!("{n} is out of range {min}..={max}"),
        ));
    }
    Ok(n)
}

fn u32_in(at: &str, value: &Value, min: u32, max: u32) -> Result<u32, Error> {
    int_in(at, value, i64::from(min), i64::from(max)).map(|n| n as u32)
}

fn function(id: &str, raw: &Value, props: &Value, name: &str) -> Result<FunctionDecl, Error> {
    let at = |key: &str| format!("{id}.Properties.{key}");
    let code = props
        .pointer("/Code/S3Key")
        .or_else(|| props.pointer("/Code/ZipFile"))
        .and_then(Value::as_str)
        .ok_or_else(|| Error::template(&at("Code"), "the local cloud runs functions whose Code has an S3Key (the host binary is given through its parameter)"))?
        .to_owned();
    let code_parameter = raw
        .pointer("/Properties/Code/S3Key/Ref")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let memory_mb = match props.get("MemorySize") {
        Some(value) => u32_in(&at("MemorySize"), value, 128, 10_240)?,
        None => 128,
    };
    let timeout = match props.get("Timeout") {
        Some(value) => Duration::from_secs(u64::from(u32_in(&at("Timeout"), value, 1, 900)?)),
        None => Duration::from_secs(3),
    };
    let reserved_concurrency = props
        .get("ReservedConcurrentExecutions")
        .map(|value| u32_in(&at("ReservedConcurrentExecutions"), value, 0, 1000))
        .transpose()?;
    let mut env = BTreeMap::new();
    if let Some(variables) = props.pointer("/Environment/Variables") {
        let variables = variables
            .as_object()
            .ok_or_else(|| Error::template(&at("Environment.Variables"), "not an object"))?;
        for (key, value) in variables {
            env.insert(key.clone(), scalar_text(value));
        }
    }
    let logging = crate::lambda::logs::LogConfig::from_properties(props.get("LoggingConfig"))
        .map_err(|message| Error::template(&at("LoggingConfig"), message))?;
    Ok(FunctionDecl {
        id: id.to_owned(),
        name: name.to_owned(),
        code,
        code_parameter,
        memory_mb,
        timeout,
        reserved_concurrency,
        env,
        logging,
    })
}

fn cache(id: &str, props: &Value) -> Result<CacheDecl, Error> {
    tally_localcloud_aws::cache::check_logical_id(id)
        .map_err(|message| Error::template(id, message))?;
    let at = |key: &str| format!("{id}.Properties.{key}");
    let name = props
        .get("ServerlessCacheName")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Error::template(
                &at("ServerlessCacheName"),
                "missing (CloudFormation requires it)",
            )
        })?;
    tally_localcloud_aws::cache::check_cache_name(name)
        .map_err(|message| Error::template(&at("ServerlessCacheName"), message))?;
    let engine = props
        .get("Engine")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::template(&at("Engine"), "missing (CloudFormation requires it)"))?;
    if !matches!(engine, "valkey" | "redis") {
        return Err(Error::template(
            &at("Engine"),
            format!("{engine:?} does not run locally: the local cloud runs `valkey` (or `redis`) caches"),
        ));
    }
    Ok(CacheDecl {
        id: id.to_owned(),
        name: name.to_owned(),
        engine: engine.to_owned(),
    })
}

fn mapping(id: &str, props: &Value) -> Result<MappingDecl, Error> {
    let at = |key: &str| format!("{id}.Properties.{key}");
    let text = |key: &str| props.get(key).and_then(Value::as_str);
    let function = function_name(
        text("FunctionName").ok_or_else(|| Error::template(&at("FunctionName"), "missing"))?,
    );
    let source = text("EventSourceArn").ok_or_else(|| {
        Error::template(
            &at("EventSourceArn"),
            "missing (only stream and queue sources run locally)",
        )
    })?;
    let mut config = MappingConfig::new(id, source);
    let sqs = source.starts_with("arn:aws:sqs:");
    config.batch_size = match props.get("BatchSize") {
        Some(value) => int_in(&at("BatchSize"), value, 1, 10_000)? as usize,
        None if sqs => 10,
        None => 100,
    };
    if let Some(value) = props.get("MaximumBatchingWindowInSeconds") {
        config.batching_window =
            Duration::from_secs(
                int_in(&at("MaximumBatchingWindowInSeconds"), value, 0, 300)? as u64,
            );
    }
    if !sqs {
        config.starting_position = match text("StartingPosition") {
            Some("TRIM_HORIZON") => StartingPosition::TrimHorizon,
            Some("LATEST") => StartingPosition::Latest,
            Some("AT_TIMESTAMP") => {
                let seconds = props
                    .get("StartingPositionTimestamp")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| Error::template(&at("StartingPositionTimestamp"), "AT_TIMESTAMP needs StartingPositionTimestamp (seconds)"))?;
                StartingPosition::AtTimestamp((seconds * 1000.0) as i64)
            }
            other => {
                return Err(Error::template(
                    &at("StartingPosition"),
                    format!("{other:?} is not TRIM_HORIZON, LATEST or AT_TIMESTAMP (required for stream sources)"),
                ))
            }
        };
    }
    if let Some(value) = props.get("ParallelizationFactor") {
        config.parallelization_factor =
            int_in(&at("ParallelizationFactor"), value, 1, 10)? as usize;
    }
    config.bisect_on_error = props
        .get("BisectBatchOnFunctionError")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(value) = props.get("MaximumRetryAttempts") {
        let n = int_in(&at("MaximumRetryAttempts"), value, -1, 10_000)?;
        config.max_retries = (n >= 0).then_some(n as u32);
    }
    if let Some(value) = props.get("MaximumRecordAgeInSeconds") {
        let n = int_in(&at("MaximumRecordAgeInSeconds"), value, -1, 604_800)?;
        if n != -1 && n < 60 {
            return Err(Error::template(
                &at("MaximumRecordAgeInSeconds"),
                format!("{n} is out of range: use -1 or 60..=604800"),
            ));
        }
        config.max_record_age = (n > 0).then(|| Duration::from_secs(n as u64));
    }
    config.on_failure = props
        .pointer("/DestinationConfig/OnFailure/Destination")
        .and_then(Value::as_str)
        .map(str::to_owned);
    config.report_batch_item_failures = props
        .get("FunctionResponseTypes")
        .and_then(Value::as_array)
        .is_some_and(|types| types.iter().any(|t| t == "ReportBatchItemFailures"));
    if let Some(value) = props.get("TumblingWindowInSeconds") {
        config.tumbling_window =
            Duration::from_secs(int_in(&at("TumblingWindowInSeconds"), value, 0, 900)? as u64);
    }
    config.enabled = props
        .get("Enabled")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    config
        .validate()
        .map_err(|message| Error::template(id, message))?;
    Ok(MappingDecl {
        id: id.to_owned(),
        function,
        config,
    })
}

/// A scheduled rule, or `None` for an event pattern rule (nothing matches it locally).
fn rule(id: &str, props: &Value, arn: &str) -> Result<Option<RuleDecl>, Error> {
    let at = |key: &str| format!("{id}.Properties.{key}");
    let Some(expression) = props.get("ScheduleExpression") else {
        if props.get("EventPattern").is_some() {
            return Ok(None);
        }
        return Err(Error::template(
            id,
            "a rule needs a ScheduleExpression or an EventPattern (CloudFormation refuses it)",
        ));
    };
    let expression = expression.as_str().ok_or_else(|| {
        Error::template(
            &at("ScheduleExpression"),
            format!("{expression} is not a string"),
        )
    })?;
    let schedule = Schedule::parse(expression)
        .map_err(|message| Error::template(&at("ScheduleExpression"), message))?;
    let enabled = match props.get("State").map(|s| s.as_str()) {
        None | Some(Some("ENABLED")) => true,
        Some(Some("DISABLED")) => false,
        Some(other) => {
            return Err(Error::template(
                &at("State"),
                format!("{other:?} is not a schedule rule's state: use ENABLED or DISABLED"),
            ))
        }
    };
    if let Some(bus) = props.get("EventBusName") {
        if bus.as_str() != Some("default") {
            return Err(Error::template(
                &at("EventBusName"),
                format!("{bus}: schedule rules run on the default event bus only"),
            ));
        }
    }
    let targets = match props.get("Targets") {
        None => Vec::new(),
        Some(Value::Array(targets)) if targets.len() <= 5 => targets
            .iter()
            .enumerate()
            .map(|(i, target)| rule_target(&at(&format!("Targets[{i}]")), target))
            .collect::<Result<_, _>>()?,
        Some(Value::Array(_)) => {
            return Err(Error::template(
                &at("Targets"),
                "a rule has at most 5 targets",
            ))
        }
        Some(other) => {
            return Err(Error::template(
                &at("Targets"),
                format!("{other} is not a list of targets"),
            ))
        }
    };
    Ok(Some(RuleDecl {
        id: id.to_owned(),
        arn: arn.to_owned(),
        expression: expression.to_owned(),
        schedule,
        enabled,
        targets,
    }))
}

fn rule_target(at: &str, target: &Value) -> Result<TargetDecl, Error> {
    let target = target
        .as_object()
        .ok_or_else(|| Error::template(at, format!("{target} is not a target object")))?;
    let text = |key: &str| -> Result<&str, Error> {
        target[key]
            .as_str()
            .ok_or_else(|| Error::template(&format!("{at}.{key}"), "is not a string"))
    };
    for key in target.keys() {
        match key.as_str() {
            "Arn" | "Id" | "Input" | "InputPath" | "RoleArn" => {}
            "InputTransformer" | "DeadLetterConfig" | "RetryPolicy" => {
                return Err(Error::template(
                    &format!("{at}.{key}"),
                    "is not run by the local cloud (it runs Input and InputPath; failed invocations are retried twice, then logged and dropped)",
                ))
            }
            other => {
                return Err(Error::template(
                    &format!("{at}.{other}"),
                    "is not run by the local cloud: it fires Lambda function targets only",
                ))
            }
        }
    }
    let (Some(_), Some(_)) = (target.get("Arn"), target.get("Id")) else {
        return Err(Error::template(at, "a target needs Arn and Id"));
    };
    let arn = text("Arn")?;
    if !arn.starts_with("arn:aws:lambda:") || !arn.contains(":function:") {
        return Err(Error::template(
            &format!("{at}.Arn"),
            format!("{arn} is not a Lambda function: the local cloud fires schedules at the template's functions only"),
        ));
    }
    let input = match (target.get("Input"), target.get("InputPath")) {
        (Some(_), Some(_)) => {
            return Err(Error::template(
                at,
                "Input and InputPath exclude each other: give one",
            ))
        }
        (Some(_), None) => {
            let input = text("Input")?;
            serde_json::from_str::<Value>(input).map_err(|error| {
                Error::template(
                    &format!("{at}.Input"),
                    format!("is not valid JSON text ({error})"),
                )
            })?;
            TargetInput::Constant(input.to_owned())
        }
        (None, Some(_)) => {
            TargetInput::Path(input_path(&format!("{at}.InputPath"), text("InputPath")?)?)
        }
        (None, None) => TargetInput::Event,
    };
    Ok(TargetDecl {
        id: text("Id")?.to_owned(),
        function: function_name(arn),
        input,
    })
}

/// `$` or `$.key.key…` (the JSONPath subset the local cloud runs).
fn input_path(at: &str, path: &str) -> Result<Vec<String>, Error> {
    let keys = match path {
        "$" => Vec::new(),
        _ => path
            .strip_prefix("$.")
            .map(|rest| rest.split('.').map(str::to_owned).collect())
            .unwrap_or_default(),
    };
    let simple = |key: &String| {
        !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if (path != "$" && keys.is_empty()) || !keys.iter().all(simple) {
        return Err(Error::template(
            at,
            format!("{path:?}: the local cloud runs InputPath `$` or `$.key.key` (letters, digits, - and _) only"),
        ));
    }
    Ok(keys)
}
