//! What the cost model needs from a CloudFormation template, read generically from standard resource
//! properties (never from tally's logical ids): the stream, its consumers, the functions, their mappings,
//! schedules, Function URLs, alarms, secrets, queues and bucket lifecycles.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use serde_json::Value;

/// Kinesis capacity mode of the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    Provisioned { shards: u32 },
    OnDemand,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StreamModel {
    pub mode: Mode,
    pub retention_hours: u32,
}

/// How a function is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionModel {
    /// The package's short name (`collect` from the `CollectCodeKey` parameter), or the logical id.
    pub name: String,
    pub memory_mb: u32,
    pub timeout_secs: u32,
    pub arm64: bool,
    pub env: Vec<String>,
    pub has_url: bool,
    /// Invocations per minute from schedule rules.
    pub scheduled_per_minute: f64,
    pub log_retention_days: Option<u32>,
    /// `TALLY_DEDUP_WINDOW_SECS` when the template gives it literally (claims live this long).
    pub dedup_window_secs: Option<u32>,
    /// The format of Lambda's per-invocation system lines (`LoggingConfig.LogFormat`), `None` when
    /// `SystemLogLevel: WARN` drops them.
    pub platform_log: Option<tally_billing::lambda::LogFormat>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KinesisMapping {
    /// Key into [`StackModel::functions`].
    pub function: String,
    pub batch_size: u32,
    pub window_secs: u32,
    pub parallelization: u32,
    /// Reads through an enhanced fan-out consumer.
    pub efo: bool,
    pub starting_position: String,
}

/// One capacity dimension of a provisioned table: auto scaling's bounds (units per second) and target
/// utilisation (a fraction). A dimension without a target-tracking policy is fixed at its
/// `ProvisionedThroughput`: `min = max` = that, target 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Capacity {
    pub min: f64,
    pub max: f64,
    pub target_utilization: f64,
}

/// How the metrics table pays for throughput (`BillingMode`, and its auto scaling).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TableBilling {
    OnDemand,
    Provisioned { write: Capacity, read: Capacity },
}

/// A bucket's lifecycle rule: storage-class transitions (days, class) and expiration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Lifecycle {
    pub transitions: Vec<(u32, String)>,
    pub expiration_days: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StackModel {
    pub stream: StreamModel,
    pub consumers: u32,
    /// By logical id.
    pub functions: BTreeMap<String, FunctionModel>,
    pub kinesis_mappings: Vec<KinesisMapping>,
    pub sqs_mappings: u32,
    pub queues: u32,
    pub alarms: u32,
    pub secrets: u32,
    pub tables: u32,
    /// The table's billing (on-demand when the template has no table).
    pub table_billing: TableBilling,
    /// Expiration of archived objects, days (the shortest enabled rule of any bucket), if any.
    pub archive_expiration_days: Option<u32>,
    /// The archive's lifecycle: transitions and expiration of the enabled rule with the most transitions.
    pub archive_lifecycle: Lifecycle,
    /// The scaler's `TALLY_MIN_SHARDS` / `TALLY_MAX_SHARDS`, if a function has them.
    pub scaler_bounds: Option<(u32, u32)>,
    /// The `AWS::ElastiCache::ServerlessCache` (at most one).
    pub cache: Option<CacheModel>,
    /// `AWS::EC2::VPCEndpoint`s of type Interface (billed per AZ-hour and per GB).
    pub interface_endpoints: Vec<InterfaceEndpoint>,
    /// Gateway endpoints (free; counted for the report).
    pub gateway_endpoints: u32,
    /// What bounds the bill: reserved concurrency, budgets, the edge.
    pub defences: DefenceModel,
}

/// The template's cost defences, read from standard properties.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DefenceModel {
    /// `ReservedConcurrentExecutions` by function logical id (functions that set it).
    pub reserved: BTreeMap<String, u32>,
    /// Monthly limits (USD) of the `AWS::Budgets::Budget`s.
    pub budgets: Vec<f64>,
    /// `AWS::CloudFront::Distribution`s.
    pub distributions: u32,
    /// `AWS::WAFv2::WebACL`s and their rules.
    pub web_acls: u32,
    pub waf_rules: u32,
    /// The smallest rate-based limit of any web ACL rule (requests per address per evaluation window).
    pub rate_limit: Option<(u32, u32)>,
}

/// A serverless cache's usage limits (`CacheUsageLimits`): `None` where the template sets none.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheModel {
    pub logical_id: String,
    /// `DataStorage.Maximum`, GB.
    pub max_storage_gb: Option<f64>,
    /// `ECPUPerSecond.Maximum`.
    pub max_ecpu_per_sec: Option<f64>,
}

/// An interface endpoint: the service it reaches and the Availability Zones (subnets) it sits in.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceEndpoint {
    pub logical_id: String,
    /// The service's short name (`secretsmanager` from `com.amazonaws.${AWS::Region}.secretsmanager`).
    pub service: String,
    /// One network interface per subnet, each in its own zone: billed per zone.
    pub azs: u32,
}

impl StackModel {
    /// Functions whose environment names `var`.
    pub fn functions_with_env<'a>(
        &'a self,
        var: &'a str,
    ) -> impl Iterator<Item = &'a FunctionModel> + 'a {
        self.functions
            .values()
            .filter(move |f| f.env.iter().any(|e| e == var))
    }
}

/// The logical id a `Ref` / `Fn::GetAtt` / `Fn::Sub` of one resource points at.
fn target(v: &Value) -> Option<&str> {
    if let Some(id) = v.get("Ref").and_then(Value::as_str) {
        return Some(id);
    }
    match v.get("Fn::GetAtt")? {
        Value::Array(parts) => parts.first().and_then(Value::as_str),
        Value::String(s) => s.split('.').next(),
        _ => None,
    }
}

/// A number property that may be written as a JSON number or a string of digits.
/// The format of the system lines Lambda writes per invocation under `LoggingConfig`, or `None` when
/// `SystemLogLevel` is `WARN` with JSON (Lambda's default is text with the lines).
fn platform_log(config: Option<&Value>) -> Option<tally_billing::lambda::LogFormat> {
    use tally_billing::lambda::LogFormat;
    let text = |key: &str| config.and_then(|c| c.get(key)).and_then(Value::as_str);
    match (text("LogFormat"), text("SystemLogLevel")) {
        (Some("JSON"), Some("WARN")) => None,
        (Some("JSON"), _) => Some(LogFormat::Json),
        _ => Some(LogFormat::Text),
    }
}

/// A web ACL: one more ACL, its rules, and the smallest rate-based limit among them.
fn read_web_acl(d: &mut DefenceModel, props: &Value, path: &str) -> anyhow::Result<()> {
    d.web_acls += 1;
    let rules = props
        .get("Rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    d.waf_rules += rules.len() as u32;
    for (i, rule) in rules.iter().enumerate() {
        if let Some(rate) = rule.pointer("/Statement/RateBasedStatement") {
            let at = format!("{path}.Rules[{i}].Statement.RateBasedStatement");
            let limit = number(rate, "Limit", 0, &at)?;
            let window = number(rate, "EvaluationWindowSec", 300, &at)?;
            if d.rate_limit.is_none_or(|(l, _)| limit < l) {
                d.rate_limit = Some((limit, window));
            }
        }
    }
    Ok(())
}

fn number(props: &Value, key: &str, default: u32, path: &str) -> anyhow::Result<u32> {
    match props.get(key) {
        None => Ok(default),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .with_context(|| format!("{path}.{key}: {n} is not a whole number >= 0")),
        Some(Value::String(s)) => {
            s.parse().with_context(|| format!("{path}.{key}: {s:?} is not a whole number >= 0"))
        }
        Some(other) => bail!(
            "{path}.{key}: {other} is not a literal number; plan reads literal values only (synth with the numbers filled in)"
        ),
    }
}

fn env_number(
    env: &serde_json::Map<String, Value>,
    key: &str,
    path: &str,
) -> anyhow::Result<Option<u32>> {
    match env.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .with_context(|| format!("{path}: {key}={s:?} is not a whole number")),
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .with_context(|| format!("{path}: {key}={n} is not a whole number")),
        Some(other) => bail!("{path}: {key} is {other}, expected a literal number"),
    }
}

/// `rate(5 minutes)` → 0.2 per minute; `cron(...)` is taken as once a minute at most (an upper bound).
fn schedule_per_minute(expr: &str) -> anyhow::Result<f64> {
    let Some(inner) = expr.strip_prefix("rate(").and_then(|s| s.strip_suffix(')')) else {
        if expr.starts_with("cron(") {
            return Ok(1.0);
        }
        bail!("ScheduleExpression {expr:?}: expected rate(N unit) or cron(...)");
    };
    let (n, unit) = inner
        .trim()
        .split_once(' ')
        .with_context(|| format!("ScheduleExpression {expr:?}"))?;
    let n: f64 = n
        .parse()
        .with_context(|| format!("ScheduleExpression {expr:?}: {n:?} is not a number"))?;
    if n <= 0.0 {
        bail!("ScheduleExpression {expr:?}: the rate must be positive");
    }
    let minutes = match unit.trim_end_matches('s') {
        "minute" => n,
        "hour" => n * 60.0,
        "day" => n * 1440.0,
        other => bail!("ScheduleExpression {expr:?}: unknown unit {other:?}"),
    };
    Ok(1.0 / minutes)
}

/// Reads the model from a template.
pub fn read(template: &Value) -> anyhow::Result<StackModel> {
    let resources = template
        .get("Resources")
        .and_then(Value::as_object)
        .context("the template has no `Resources` object")?;
    let kind = |id: &str| {
        resources
            .get(id)
            .and_then(|r| r.get("Type"))
            .and_then(Value::as_str)
    };
    let empty = Value::Object(Default::default());
    let props_of = |r: &Value| {
        r.get("Properties")
            .cloned()
            .unwrap_or_else(|| empty.clone())
    };

    let mut streams = Vec::new();
    let mut model = StackModel {
        stream: StreamModel {
            mode: Mode::OnDemand,
            retention_hours: 24,
        },
        consumers: 0,
        functions: BTreeMap::new(),
        kinesis_mappings: Vec::new(),
        sqs_mappings: 0,
        queues: 0,
        alarms: 0,
        secrets: 0,
        tables: 0,
        table_billing: TableBilling::OnDemand,
        archive_expiration_days: None,
        archive_lifecycle: Lifecycle::default(),
        scaler_bounds: None,
        cache: None,
        interface_endpoints: Vec::new(),
        gateway_endpoints: 0,
        defences: DefenceModel::default(),
    };
    let mut log_retention: BTreeMap<String, u32> = BTreeMap::new();
    // First pass: resources that stand alone.
    for (id, resource) in resources {
        let props = props_of(resource);
        let path = format!("Resources.{id}.Properties");
        match resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "AWS::Kinesis::Stream" => {
                let mode = props
                    .get("StreamModeDetails")
                    .and_then(|d| d.get("StreamMode"))
                    .and_then(Value::as_str)
                    .unwrap_or("PROVISIONED");
                let mode = match mode {
                    "ON_DEMAND" => Mode::OnDemand,
                    "PROVISIONED" => Mode::Provisioned {
                        shards: number(&props, "ShardCount", 1, &path)?.max(1),
                    },
                    other => bail!("{path}.StreamModeDetails.StreamMode: unknown mode {other:?}"),
                };
                let retention_hours = number(&props, "RetentionPeriodHours", 24, &path)?;
                streams.push(StreamModel {
                    mode,
                    retention_hours,
                });
            }
            "AWS::Kinesis::StreamConsumer" => model.consumers += 1,
            "AWS::Lambda::Function" => {
                let env: Vec<String> = props
                    .pointer("/Environment/Variables")
                    .and_then(Value::as_object)
                    .map(|vars| vars.keys().cloned().collect())
                    .unwrap_or_default();
                let mut dedup_window_secs = None;
                if let Some(vars) = props
                    .pointer("/Environment/Variables")
                    .and_then(Value::as_object)
                {
                    dedup_window_secs =
                        env_number(vars, tally_contract::env::DEDUP_WINDOW_SECS, &path)?;
                    let lo = env_number(vars, tally_contract::env::MIN_SHARDS, &path)?;
                    let hi = env_number(vars, tally_contract::env::MAX_SHARDS, &path)?;
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        model.scaler_bounds = Some((lo, hi));
                    }
                }
                let name = props
                    .pointer("/Code/S3Key")
                    .and_then(target)
                    .and_then(|p| p.strip_suffix("CodeKey"))
                    .map(str::to_lowercase)
                    .unwrap_or_else(|| id.clone());
                if props.get("ReservedConcurrentExecutions").is_some() {
                    let n = number(&props, "ReservedConcurrentExecutions", 0, &path)?;
                    model.defences.reserved.insert(id.clone(), n);
                }
                let arm64 = props
                    .get("Architectures")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|v| v == "arm64"));
                model.functions.insert(
                    id.clone(),
                    FunctionModel {
                        name,
                        memory_mb: number(&props, "MemorySize", 128, &path)?,
                        timeout_secs: number(&props, "Timeout", 3, &path)?,
                        arm64,
                        env,
                        has_url: false,
                        scheduled_per_minute: 0.0,
                        log_retention_days: None,
                        dedup_window_secs,
                        platform_log: platform_log(props.get("LoggingConfig")),
                    },
                );
            }
            "AWS::Budgets::Budget" => {
                let amount = props
                    .pointer("/Budget/BudgetLimit/Amount")
                    .and_then(|v| v.as_f64().or_else(|| v.as_str()?.parse().ok()))
                    .with_context(|| {
                        format!("{path}.Budget.BudgetLimit.Amount: plan reads a literal number")
                    })?;
                model.defences.budgets.push(amount);
            }
            "AWS::CloudFront::Distribution" => model.defences.distributions += 1,
            "AWS::WAFv2::WebACL" => read_web_acl(&mut model.defences, &props, &path)?,
            "AWS::ElastiCache::ServerlessCache" => {
                if let Some(other) = &model.cache {
                    bail!(
                        "the template has two serverless caches ({} and {id}); plan models one",
                        other.logical_id
                    );
                }
                let limit = |pointer: &str| -> anyhow::Result<Option<f64>> {
                    match props.pointer(pointer) {
                        None => Ok(None),
                        Some(v) => {
                            let n = v
                                .as_f64()
                                .or_else(|| v.as_str().and_then(|s| s.parse().ok()));
                            match n {
                                Some(n) if n.is_finite() && n > 0.0 => Ok(Some(n)),
                                _ => bail!(
                                    "{path}.CacheUsageLimits{}: {v} is not a literal positive number",
                                    pointer.trim_start_matches("/CacheUsageLimits").replace('/', ".")
                                ),
                            }
                        }
                    }
                };
                if let Some(unit) = props
                    .pointer("/CacheUsageLimits/DataStorage/Unit")
                    .and_then(Value::as_str)
                {
                    if unit != "GB" {
                        bail!(
                            "{path}.CacheUsageLimits.DataStorage.Unit: {unit:?}, expected \"GB\""
                        );
                    }
                }
                model.cache = Some(CacheModel {
                    logical_id: id.clone(),
                    max_storage_gb: limit("/CacheUsageLimits/DataStorage/Maximum")?,
                    max_ecpu_per_sec: limit("/CacheUsageLimits/ECPUPerSecond/Maximum")?,
                });
            }
            "AWS::EC2::VPCEndpoint" => {
                let kind = props
                    .get("VpcEndpointType")
                    .and_then(Value::as_str)
                    .unwrap_or("Gateway");
                match kind {
                    "Gateway" => model.gateway_endpoints += 1,
                    "Interface" => {
                        let subnets = props
                            .get("SubnetIds")
                            .and_then(Value::as_array)
                            .with_context(|| {
                                format!("{path}.SubnetIds: an interface endpoint needs a literal list of subnets (one billed network interface per zone)")
                            })?;
                        if subnets.is_empty() {
                            bail!("{path}.SubnetIds: empty; an interface endpoint sits in at least one subnet");
                        }
                        let service = props
                            .get("ServiceName")
                            .map(|v| match v {
                                Value::String(s) => s.clone(),
                                other => other
                                    .get("Fn::Sub")
                                    .and_then(Value::as_str)
                                    .unwrap_or_default()
                                    .to_owned(),
                            })
                            .unwrap_or_default();
                        let service = service.rsplit('.').next().unwrap_or_default().to_owned();
                        model.interface_endpoints.push(InterfaceEndpoint {
                            logical_id: id.clone(),
                            service,
                            azs: subnets.len() as u32,
                        });
                    }
                    other => bail!(
                        "{path}.VpcEndpointType: {other:?}; plan prices Gateway and Interface endpoints"
                    ),
                }
            }
            "AWS::CloudWatch::Alarm" => model.alarms += 1,
            "AWS::SecretsManager::Secret" => model.secrets += 1,
            "AWS::SQS::Queue" => model.queues += 1,
            "AWS::DynamoDB::Table" => model.tables += 1,
            "AWS::S3::Bucket" => {
                let rules = props
                    .pointer("/LifecycleConfiguration/Rules")
                    .and_then(Value::as_array);
                for rule in rules.into_iter().flatten() {
                    let enabled = rule.get("Status").and_then(Value::as_str) == Some("Enabled");
                    if !enabled {
                        continue;
                    }
                    let mut life = Lifecycle::default();
                    if let Some(days) = rule.get("ExpirationInDays") {
                        let days = number(&serde_json::json!({ "d": days }), "d", 0, &path)?;
                        let shortest = model.archive_expiration_days.map_or(days, |d| d.min(days));
                        model.archive_expiration_days = Some(shortest);
                        life.expiration_days = Some(days);
                    }
                    let transitions = rule.get("Transitions").and_then(Value::as_array);
                    for t in transitions.into_iter().flatten() {
                        let days = number(t, "TransitionInDays", 0, &path)?;
                        let class =
                            t.get("StorageClass")
                                .and_then(Value::as_str)
                                .with_context(|| {
                                    format!("{path}: a lifecycle transition without StorageClass")
                                })?;
                        life.transitions.push((days, class.to_owned()));
                    }
                    if life.transitions.len() >= model.archive_lifecycle.transitions.len() {
                        model.archive_lifecycle = life;
                    }
                }
            }
            "AWS::Logs::LogGroup" => {
                // Function log groups are named `/aws/lambda/<name>`; match them by the function's Ref in
                // a Fn::Sub / Fn::Join, or leave the retention unknown.
                if let Some(days) = props.get("RetentionInDays") {
                    let days = number(&serde_json::json!({ "d": days }), "d", 0, &path)?;
                    let text = props
                        .get("LogGroupName")
                        .map(Value::to_string)
                        .unwrap_or_default();
                    log_retention.insert(text, days);
                }
            }
            _ => {}
        }
    }
    match streams.as_slice() {
        [one] => model.stream = one.clone(),
        [] => bail!(
            "the template has no AWS::Kinesis::Stream; plan models tally's stream-based pipeline"
        ),
        _ => bail!(
            "the template has {} Kinesis streams; plan models one",
            streams.len()
        ),
    }
    // Second pass: resources that point at functions.
    for (id, resource) in resources {
        let props = props_of(resource);
        let path = format!("Resources.{id}.Properties");
        match resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "AWS::Lambda::Url" => {
                if let Some(f) = props.get("TargetFunctionArn").and_then(target) {
                    if let Some(function) = model.functions.get_mut(f) {
                        function.has_url = true;
                    }
                }
            }
            "AWS::Lambda::EventSourceMapping" => {
                let function = props
                    .get("FunctionName")
                    .and_then(target)
                    .filter(|f| model.functions.contains_key(*f))
                    .with_context(|| {
                        format!("{path}.FunctionName: does not refer to a function of the template")
                    })?
                    .to_owned();
                let source = props
                    .get("EventSourceArn")
                    .and_then(target)
                    .with_context(|| {
                        format!("{path}.EventSourceArn: expected a Ref or Fn::GetAtt")
                    })?;
                match kind(source) {
                    Some("AWS::Kinesis::Stream") | Some("AWS::Kinesis::StreamConsumer") => {
                        model.kinesis_mappings.push(KinesisMapping {
                            function,
                            batch_size: number(&props, "BatchSize", 100, &path)?,
                            window_secs: number(
                                &props,
                                "MaximumBatchingWindowInSeconds",
                                0,
                                &path,
                            )?,
                            parallelization: number(&props, "ParallelizationFactor", 1, &path)?
                                .max(1),
                            efo: kind(source) == Some("AWS::Kinesis::StreamConsumer"),
                            starting_position: props
                                .get("StartingPosition")
                                .and_then(Value::as_str)
                                .unwrap_or("LATEST")
                                .to_owned(),
                        });
                    }
                    Some("AWS::SQS::Queue") => model.sqs_mappings += 1,
                    _ => {}
                }
            }
            "AWS::Events::Rule" => {
                let Some(expr) = props.get("ScheduleExpression").and_then(Value::as_str) else {
                    continue;
                };
                let per_minute = schedule_per_minute(expr).with_context(|| path.clone())?;
                let targets = props.get("Targets").and_then(Value::as_array);
                for t in targets.into_iter().flatten() {
                    if let Some(f) = t.get("Arn").and_then(target) {
                        if let Some(function) = model.functions.get_mut(f) {
                            function.scheduled_per_minute += per_minute;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    model.table_billing = table_billing(resources)?;
    for (id, function) in model.functions.iter_mut() {
        function.log_retention_days = log_retention
            .iter()
            .find(|(name, _)| name.contains(&format!("\"{id}\"")))
            .map(|(_, d)| *d);
    }
    Ok(model)
}

/// The billing of the template's DynamoDB table: `BillingMode` (CloudFormation's default is
/// `PROVISIONED`), `ProvisionedThroughput`, and per dimension the `AWS::ApplicationAutoScaling::ScalableTarget`
/// (namespace `dynamodb`, `ResourceId` naming the table) with its `TargetTrackingScaling` policy.
fn table_billing(resources: &serde_json::Map<String, Value>) -> anyhow::Result<TableBilling> {
    let of_type = |t: &'static str| {
        resources
            .iter()
            .filter(move |(_, r)| r.get("Type").and_then(Value::as_str) == Some(t))
    };
    let tables: Vec<_> = of_type("AWS::DynamoDB::Table").collect();
    let (id, table) = match tables.as_slice() {
        [] => return Ok(TableBilling::OnDemand),
        [one] => *one,
        _ if tables.iter().all(|(_, t)| {
            t.pointer("/Properties/BillingMode").and_then(Value::as_str) == Some("PAY_PER_REQUEST")
        }) =>
        {
            return Ok(TableBilling::OnDemand)
        }
        _ => bail!(
            "the template has {} DynamoDB tables, not all on-demand; plan prices the capacity of one table",
            tables.len()
        ),
    };
    let empty = Value::Object(Default::default());
    let props = table.get("Properties").unwrap_or(&empty);
    let path = format!("Resources.{id}.Properties");
    match props.get("BillingMode").and_then(Value::as_str) {
        Some("PAY_PER_REQUEST") => return Ok(TableBilling::OnDemand),
        None | Some("PROVISIONED") => {}
        Some(other) => {
            bail!("{path}.BillingMode: {other:?}, expected PAY_PER_REQUEST or PROVISIONED")
        }
    }
    let throughput = props.get("ProvisionedThroughput").with_context(|| {
        format!("{path}: a PROVISIONED table needs ProvisionedThroughput (or BillingMode PAY_PER_REQUEST)")
    })?;
    let fixed = |key: &str| -> anyhow::Result<Capacity> {
        let units = f64::from(number(
            throughput,
            key,
            0,
            &format!("{path}.ProvisionedThroughput"),
        )?);
        if units < 1.0 {
            bail!("{path}.ProvisionedThroughput.{key}: give at least 1 unit");
        }
        Ok(Capacity {
            min: units,
            max: units,
            target_utilization: 1.0,
        })
    };
    let (mut write, mut read) = (fixed("WriteCapacityUnits")?, fixed("ReadCapacityUnits")?);
    let table_name = props.get("TableName").and_then(Value::as_str);
    for (target_id, target) in of_type("AWS::ApplicationAutoScaling::ScalableTarget") {
        let tp = target.get("Properties").unwrap_or(&empty);
        let tpath = format!("Resources.{target_id}.Properties");
        if tp.get("ServiceNamespace").and_then(Value::as_str) != Some("dynamodb")
            || !names_table(tp.get("ResourceId"), id, table_name)
        {
            continue;
        }
        let dimension = match tp.get("ScalableDimension").and_then(Value::as_str) {
            Some("dynamodb:table:WriteCapacityUnits") => &mut write,
            Some("dynamodb:table:ReadCapacityUnits") => &mut read,
            _ => continue, // an index's dimension: not the table's capacity
        };
        let Some(target_value) = tracking_target(resources, target_id)? else {
            continue; // no policy: the capacity stays where the table has it
        };
        let min = f64::from(number(tp, "MinCapacity", 1, &tpath)?);
        let max = f64::from(number(tp, "MaxCapacity", 0, &tpath)?);
        if min < 1.0 || max < min {
            bail!("{tpath}: MinCapacity {min} and MaxCapacity {max} must satisfy 1 <= min <= max");
        }
        *dimension = Capacity {
            min,
            max,
            target_utilization: target_value / 100.0,
        };
    }
    Ok(TableBilling::Provisioned { write, read })
}

/// Whether a scalable target's `ResourceId` is `table/<the table>`: `Fn::Sub "table/${Id}"`,
/// `Fn::Join ["", ["table/", {"Ref": Id}]]`, or the literal `table/<TableName>`.
fn names_table(resource_id: Option<&Value>, id: &str, table_name: Option<&str>) -> bool {
    let Some(v) = resource_id else { return false };
    if let Some(text) = v.as_str() {
        return table_name.is_some_and(|name| text == format!("table/{name}"));
    }
    if let Some(sub) = v.get("Fn::Sub").and_then(Value::as_str) {
        return sub == format!("table/${{{id}}}");
    }
    if let Some(Value::Array(parts)) = v.get("Fn::Join") {
        if let Some(Value::Array(items)) = parts.get(1) {
            return items.first().and_then(Value::as_str) == Some("table/")
                && items.get(1).and_then(target) == Some(id)
                && items.len() == 2;
        }
    }
    false
}

/// The `TargetValue` (percent) of the target-tracking policy on scalable target `target_id`, if any.
fn tracking_target(
    resources: &serde_json::Map<String, Value>,
    target_id: &str,
) -> anyhow::Result<Option<f64>> {
    for (id, r) in resources {
        if r.get("Type").and_then(Value::as_str)
            != Some("AWS::ApplicationAutoScaling::ScalingPolicy")
        {
            continue;
        }
        let Some(p) = r.get("Properties") else {
            continue;
        };
        if p.get("ScalingTargetId").and_then(target) != Some(target_id)
            || p.get("PolicyType").and_then(Value::as_str) != Some("TargetTrackingScaling")
        {
            continue;
        }
        let value = p
            .pointer("/TargetTrackingScalingPolicyConfiguration/TargetValue")
            .and_then(|v| {
                v.as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });
        return match value {
            Some(v) if (1.0..=100.0).contains(&v) => Ok(Some(v)),
            _ => bail!(
                "Resources.{id}.Properties.TargetTrackingScalingPolicyConfiguration.TargetValue: expected a literal percentage 1..=100"
            ),
        };
    }
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// A hand-written template in the shape of tally's, with standard properties only.
    pub(crate) fn fixture() -> Value {
        json!({
            "Resources": {
                "Events": { "Type": "AWS::Kinesis::Stream", "Properties": {
                    "ShardCount": 2, "StreamModeDetails": { "StreamMode": "PROVISIONED" }, "RetentionPeriodHours": 24 } },
                "Fanout": { "Type": "AWS::Kinesis::StreamConsumer", "Properties": {
                    "StreamARN": { "Fn::GetAtt": ["Events", "Arn"] }, "ConsumerName": "rt" } },
                "Collect": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Code": { "S3Bucket": { "Ref": "AssetsBucket" }, "S3Key": { "Ref": "CollectCodeKey" } },
                    "MemorySize": 256, "Timeout": 10, "Architectures": ["arm64"],
                    "Environment": { "Variables": { "TALLY_STREAM_NAME": { "Ref": "Events" }, "RUST_LOG": "info" } } } },
                "Realtime": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Code": { "S3Key": { "Ref": "RealtimeCodeKey" } }, "MemorySize": 256, "Timeout": 30,
                    "Architectures": ["arm64"], "Environment": { "Variables": { "TALLY_METRICS_TABLE": "t" } } } },
                "Deferred": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Code": { "S3Key": { "Ref": "DeferredCodeKey" } }, "MemorySize": 512, "Timeout": 120,
                    "Architectures": ["arm64"],
                    "Environment": { "Variables": { "TALLY_METRICS_TABLE": "t", "TALLY_ARCHIVE_BUCKET": "b" } } } },
                "Query": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Code": { "S3Key": { "Ref": "QueryCodeKey" } }, "MemorySize": 256, "Timeout": 10,
                    "Architectures": ["arm64"],
                    "Environment": { "Variables": { "TALLY_METRICS_TABLE": "t", "TALLY_QUERY_TOKEN_SECRET_ARN": "s" } } } },
                "Scaler": { "Type": "AWS::Lambda::Function", "Properties": {
                    "Code": { "S3Key": { "Ref": "ScalerCodeKey" } }, "MemorySize": 128, "Timeout": 60,
                    "Architectures": ["arm64"],
                    "Environment": { "Variables": { "TALLY_STREAM_NAME": "e", "TALLY_MIN_SHARDS": "1", "TALLY_MAX_SHARDS": "64" } } } },
                "CollectUrl": { "Type": "AWS::Lambda::Url", "Properties": {
                    "TargetFunctionArn": { "Fn::GetAtt": ["Collect", "Arn"] }, "AuthType": "NONE" } },
                "QueryUrl": { "Type": "AWS::Lambda::Url", "Properties": {
                    "TargetFunctionArn": { "Ref": "Query" }, "AuthType": "NONE" } },
                "RealtimeMapping": { "Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                    "FunctionName": { "Ref": "Realtime" }, "EventSourceArn": { "Fn::GetAtt": ["Fanout", "ConsumerARN"] },
                    "BatchSize": 500, "MaximumBatchingWindowInSeconds": 0, "StartingPosition": "LATEST",
                    "ParallelizationFactor": 1 } },
                "DeferredMapping": { "Type": "AWS::Lambda::EventSourceMapping", "Properties": {
                    "FunctionName": { "Ref": "Deferred" }, "EventSourceArn": { "Fn::GetAtt": ["Events", "Arn"] },
                    "BatchSize": 2000, "MaximumBatchingWindowInSeconds": 30, "StartingPosition": "TRIM_HORIZON" } },
                "Failures": { "Type": "AWS::SQS::Queue", "Properties": {} },
                "Metrics": { "Type": "AWS::DynamoDB::Table", "Properties": { "BillingMode": "PAY_PER_REQUEST" } },
                "Archive": { "Type": "AWS::S3::Bucket", "Properties": { "LifecycleConfiguration": { "Rules": [
                    { "Status": "Enabled", "ExpirationInDays": 400, "Transitions": [
                        { "TransitionInDays": 30, "StorageClass": "STANDARD_IA" },
                        { "TransitionInDays": 90, "StorageClass": "GLACIER_IR" } ] } ] } } },
                "Token": { "Type": "AWS::SecretsManager::Secret", "Properties": {} },
                "AgeAlarm": { "Type": "AWS::CloudWatch::Alarm", "Properties": {} },
                "ErrorAlarm": { "Type": "AWS::CloudWatch::Alarm", "Properties": {} },
                "Every": { "Type": "AWS::Events::Rule", "Properties": {
                    "ScheduleExpression": "rate(1 minute)", "Targets": [ { "Arn": { "Fn::GetAtt": ["Scaler", "Arn"] }, "Id": "s" } ] } }
            }
        })
    }

    /// The fixture with the counter cache (issue 10's design, in the shape of the `h-infra` template): the lanes
    /// apply to `CounterCache` (ECPU and storage limits), a compactor folds closed minutes into the table every
    /// minute, two gateway endpoints and one interface endpoint (Secrets Manager) in two zones.
    pub(crate) fn cache_fixture() -> Value {
        let mut t = fixture();
        let r = &mut t["Resources"];
        let cache_env = json!({
            "TALLY_CACHE_ENDPOINT": { "Fn::Join": [":", [
                { "Fn::GetAtt": ["CounterCache", "Endpoint.Address"] },
                { "Fn::GetAtt": ["CounterCache", "Endpoint.Port"] } ] ] },
            "TALLY_CACHE_TLS": "true", "TALLY_CACHE_AUTH": "iam", "TALLY_CACHE_USER": "u",
            "TALLY_CACHE_NAME": { "Ref": "CounterCache" }, "TALLY_DEDUP_WINDOW_SECS": "3600" });
        for f in ["Realtime", "Deferred", "Query"] {
            let vars = r[f]["Properties"]["Environment"]["Variables"]
                .as_object_mut()
                .expect("vars");
            for (k, v) in cache_env.as_object().expect("env") {
                vars.insert(k.clone(), v.clone());
            }
        }
        r["Compactor"] = json!({ "Type": "AWS::Lambda::Function", "Properties": {
            "Code": { "S3Key": { "Ref": "CompactorCodeKey" } }, "MemorySize": 256, "Timeout": 60,
            "Architectures": ["arm64"], "Environment": { "Variables": cache_env } } });
        r["Compactor"]["Properties"]["Environment"]["Variables"]["TALLY_METRICS_TABLE"] =
            json!("t");
        r["EveryMinute"] = json!({ "Type": "AWS::Events::Rule", "Properties": {
            "ScheduleExpression": "rate(1 minute)",
            "Targets": [ { "Arn": { "Fn::GetAtt": ["Compactor", "Arn"] }, "Id": "c" } ] } });
        r["CounterCache"] = json!({ "Type": "AWS::ElastiCache::ServerlessCache", "Properties": {
            "ServerlessCacheName": "tally-counters", "Engine": "valkey", "MajorEngineVersion": "8",
            "CacheUsageLimits": { "DataStorage": { "Maximum": 10, "Unit": "GB" },
                                  "ECPUPerSecond": { "Maximum": 100000 } },
            "SubnetIds": [ { "Ref": "Private1" }, { "Ref": "Private2" } ] } });
        r["DynamoDbEndpoint"] = json!({ "Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "VpcEndpointType": "Gateway", "ServiceName": { "Fn::Sub": "com.amazonaws.${AWS::Region}.dynamodb" } } });
        r["S3Endpoint"] = json!({ "Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "VpcEndpointType": "Gateway", "ServiceName": { "Fn::Sub": "com.amazonaws.${AWS::Region}.s3" } } });
        r["SecretsEndpoint"] = json!({ "Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "VpcEndpointType": "Interface",
            "ServiceName": { "Fn::Sub": "com.amazonaws.${AWS::Region}.secretsmanager" },
            "SubnetIds": [ { "Ref": "Private1" }, { "Ref": "Private2" } ] } });
        t
    }

    #[test]
    fn reads_the_cache_and_the_endpoints() {
        let m = read(&cache_fixture()).expect("model");
        assert_eq!(
            m.cache,
            Some(CacheModel {
                logical_id: "CounterCache".into(),
                max_storage_gb: Some(10.0),
                max_ecpu_per_sec: Some(100_000.0),
            })
        );
        assert_eq!(m.gateway_endpoints, 2);
        assert_eq!(
            m.interface_endpoints,
            vec![InterfaceEndpoint {
                logical_id: "SecretsEndpoint".into(),
                service: "secretsmanager".into(),
                azs: 2
            }]
        );
        assert_eq!(m.functions["Realtime"].dedup_window_secs, Some(3600));
        assert_eq!(m.functions["Compactor"].name, "compactor");
        assert_eq!(m.functions["Compactor"].scheduled_per_minute, 1.0);
        // Without limits: none.
        let mut t = cache_fixture();
        t["Resources"]["CounterCache"]["Properties"]
            .as_object_mut()
            .expect("props")
            .remove("CacheUsageLimits");
        let m = read(&t).expect("model");
        assert_eq!(m.cache.map(|c| c.max_ecpu_per_sec), Some(None));
        // The plain fixture has neither.
        let m = read(&fixture()).expect("model");
        assert!(m.cache.is_none() && m.interface_endpoints.is_empty());
    }

    #[test]
    fn hostile_cache_and_endpoints() {
        let check = |edit: &dyn Fn(&mut Value), expect: &str| {
            let mut t = cache_fixture();
            edit(&mut t);
            let err = format!("{:#}", read(&t).expect_err("must fail"));
            assert!(err.contains(expect), "expected `{expect}` in `{err}`");
        };
        check(
            &|t| {
                t["Resources"]["CounterCache"]["Properties"]["CacheUsageLimits"]["ECPUPerSecond"]
                    ["Maximum"] = json!({ "Ref": "Max" })
            },
            "CacheUsageLimits.ECPUPerSecond.Maximum: {\"Ref\":\"Max\"} is not a literal positive number",
        );
        check(
            &|t| {
                t["Resources"]["CounterCache"]["Properties"]["CacheUsageLimits"]["DataStorage"]
                    ["Unit"] = json!("TB")
            },
            "DataStorage.Unit: \"TB\", expected \"GB\"",
        );
        check(
            &|t| t["Resources"]["Cache2"] = t["Resources"]["CounterCache"].clone(),
            "two serverless caches",
        );
        check(
            &|t| {
                t["Resources"]["SecretsEndpoint"]["Properties"]
                    .as_object_mut()
                    .expect("props")
                    .remove("SubnetIds");
            },
            "SecretsEndpoint.Properties.SubnetIds: an interface endpoint needs a literal list",
        );
        check(
            &|t| t["Resources"]["SecretsEndpoint"]["Properties"]["SubnetIds"] = json!([]),
            "SubnetIds: empty",
        );
        check(
            &|t| {
                t["Resources"]["SecretsEndpoint"]["Properties"]["VpcEndpointType"] =
                    json!("GatewayLoadBalancer")
            },
            "VpcEndpointType: \"GatewayLoadBalancer\"",
        );
        check(
            &|t| {
                t["Resources"]["Realtime"]["Properties"]["Environment"]["Variables"]
                    ["TALLY_DEDUP_WINDOW_SECS"] = json!("an hour")
            },
            "TALLY_DEDUP_WINDOW_SECS=\"an hour\" is not a whole number",
        );
    }

    #[test]
    fn reads_the_fixture() {
        let m = read(&fixture()).expect("model");
        assert_eq!(
            m.stream,
            StreamModel {
                mode: Mode::Provisioned { shards: 2 },
                retention_hours: 24
            }
        );
        assert_eq!(m.consumers, 1);
        assert_eq!(m.functions.len(), 5);
        assert_eq!(m.functions["Collect"].name, "collect");
        assert!(m.functions["Collect"].has_url && m.functions["Query"].has_url);
        assert!(!m.functions["Realtime"].has_url);
        assert_eq!(m.functions["Scaler"].scheduled_per_minute, 1.0);
        assert_eq!(m.scaler_bounds, Some((1, 64)));
        assert_eq!(m.kinesis_mappings.len(), 2);
        let rt = m
            .kinesis_mappings
            .iter()
            .find(|k| k.function == "Realtime")
            .expect("rt");
        assert!(rt.efo && rt.batch_size == 500 && rt.window_secs == 0);
        let de = m
            .kinesis_mappings
            .iter()
            .find(|k| k.function == "Deferred")
            .expect("de");
        assert!(!de.efo && de.batch_size == 2000 && de.window_secs == 30);
        assert_eq!((m.alarms, m.secrets, m.queues, m.tables), (2, 1, 1, 1));
        assert_eq!(m.archive_expiration_days, Some(400));
        assert_eq!(
            m.archive_lifecycle,
            Lifecycle {
                transitions: vec![(30, "STANDARD_IA".into()), (90, "GLACIER_IR".into())],
                expiration_days: Some(400)
            }
        );
    }

    #[track_caller]
    fn check_err(edit: impl FnOnce(&mut Value), expect: &str) {
        let mut t = fixture();
        edit(&mut t);
        let err = format!("{:#}", read(&t).expect_err("must fail"));
        assert!(err.contains(expect), "expected `{expect}` in `{err}`");
    }

    #[test]
    fn hostile_templates() {
        check_err(|t| *t = json!([]), "no `Resources` object");
        check_err(
            |t| t["Resources"]["Events"]["Type"] = json!("AWS::SNS::Topic"),
            "no AWS::Kinesis::Stream",
        );
        check_err(
            |t| t["Resources"]["Events2"] = t["Resources"]["Events"].clone(),
            "2 Kinesis streams",
        );
        check_err(
            |t| t["Resources"]["Events"]["Properties"]["ShardCount"] = json!({ "Ref": "Shards" }),
            "Resources.Events.Properties.ShardCount: {\"Ref\":\"Shards\"} is not a literal number",
        );
        check_err(
            |t| t["Resources"]["Events"]["Properties"]["ShardCount"] = json!(-3),
            "-3 is not a whole number",
        );
        check_err(
            |t| {
                t["Resources"]["Events"]["Properties"]["StreamModeDetails"]["StreamMode"] =
                    json!("TURBO")
            },
            "unknown mode \"TURBO\"",
        );
        check_err(
            |t| {
                t["Resources"]["RealtimeMapping"]["Properties"]["FunctionName"] =
                    json!({ "Ref": "Nope" })
            },
            "RealtimeMapping.Properties.FunctionName: does not refer to a function",
        );
        check_err(
            |t| {
                t["Resources"]["Scaler"]["Properties"]["Environment"]["Variables"]
                    ["TALLY_MAX_SHARDS"] = json!("many")
            },
            "TALLY_MAX_SHARDS=\"many\" is not a whole number",
        );
        check_err(
            |t| {
                t["Resources"]["Every"]["Properties"]["ScheduleExpression"] =
                    json!("rate(0 minutes)")
            },
            "the rate must be positive",
        );
        check_err(
            |t| t["Resources"]["Every"]["Properties"]["ScheduleExpression"] = json!("every minute"),
            "expected rate(N unit) or cron(...)",
        );
    }

    #[test]
    fn schedules() {
        for (expr, expect) in [
            ("rate(1 minute)", 1.0),
            ("rate(5 minutes)", 0.2),
            ("rate(2 hours)", 1.0 / 120.0),
            ("cron(0 * * * ? *)", 1.0),
        ] {
            assert_eq!(schedule_per_minute(expr).expect(expr), expect, "{expr}");
        }
    }

    #[test]
    fn on_demand_and_defaults() {
        let mut t = fixture();
        t["Resources"]["Events"]["Properties"] =
            json!({ "StreamModeDetails": { "StreamMode": "ON_DEMAND" } });
        t["Resources"]["Collect"]["Properties"] = json!({});
        let m = read(&t).expect("model");
        assert_eq!(m.stream.mode, Mode::OnDemand);
        let c = &m.functions["Collect"];
        assert_eq!(
            (c.memory_mb, c.timeout_secs, c.arm64, c.name.as_str()),
            (128, 3, false, "Collect")
        );
    }

    #[test]
    fn table_billing_from_the_table_and_its_auto_scaling() {
        let mut t = fixture();
        assert_eq!(
            read(&t).expect("reads").table_billing,
            TableBilling::OnDemand
        );
        let r = &mut t["Resources"];
        r["Metrics"]["Properties"] = json!({ "BillingMode": "PROVISIONED",
            "ProvisionedThroughput": { "ReadCapacityUnits": 3, "WriteCapacityUnits": 4 } });
        // Without scaling: fixed at the throughput.
        let fixed = |units| Capacity {
            min: units,
            max: units,
            target_utilization: 1.0,
        };
        assert_eq!(
            read(&t).expect("reads").table_billing,
            TableBilling::Provisioned {
                write: fixed(4.0),
                read: fixed(3.0)
            }
        );
        let r = &mut t["Resources"];
        r["WriteTarget"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "ServiceNamespace": "dynamodb", "ScalableDimension": "dynamodb:table:WriteCapacityUnits",
            "ResourceId": { "Fn::Sub": "table/${Metrics}" }, "MinCapacity": 4, "MaxCapacity": 900 } });
        r["WritePolicy"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
            "PolicyType": "TargetTrackingScaling", "ScalingTargetId": { "Ref": "WriteTarget" },
            "TargetTrackingScalingPolicyConfiguration": { "TargetValue": 70.0 } } });
        r["ReadTarget"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "ServiceNamespace": "dynamodb", "ScalableDimension": "dynamodb:table:ReadCapacityUnits",
            "ResourceId": { "Fn::Join": ["", ["table/", { "Ref": "Metrics" }]] }, "MinCapacity": 3, "MaxCapacity": 50 } });
        r["ReadPolicy"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
            "PolicyType": "TargetTrackingScaling", "ScalingTargetId": { "Ref": "ReadTarget" },
            "TargetTrackingScalingPolicyConfiguration": { "TargetValue": "50" } } });
        // An index's dimension and another namespace are not the table's.
        r["IndexTarget"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
            "ServiceNamespace": "dynamodb", "ScalableDimension": "dynamodb:index:WriteCapacityUnits",
            "ResourceId": { "Fn::Sub": "table/${Metrics}/index/i" }, "MinCapacity": 1, "MaxCapacity": 2 } });
        let got = read(&t).expect("reads").table_billing;
        assert_eq!(
            got,
            TableBilling::Provisioned {
                write: Capacity {
                    min: 4.0,
                    max: 900.0,
                    target_utilization: 0.7
                },
                read: Capacity {
                    min: 3.0,
                    max: 50.0,
                    target_utilization: 0.5
                },
            }
        );
        // The synthesized pipeline's default: 3..4,000 at 70 % each way.
        let pipeline = tally_pipeline::synth_value(
            &tally_pipeline::Stage::new("main"),
            &tally_pipeline::PipelineOptions::default(),
        )
        .expect("synth");
        let wide = Capacity {
            min: 3.0,
            max: 4000.0,
            target_utilization: 0.7,
        };
        assert_eq!(
            read(&pipeline).expect("reads").table_billing,
            TableBilling::Provisioned {
                write: wide,
                read: wide
            }
        );
    }

    #[test]
    fn table_billing_mistakes_name_the_property() {
        let err = |change: &dyn Fn(&mut Value)| {
            let mut t = fixture();
            t["Resources"]["Metrics"]["Properties"] = json!({ "BillingMode": "PROVISIONED",
                "ProvisionedThroughput": { "ReadCapacityUnits": 3, "WriteCapacityUnits": 4 } });
            change(&mut t);
            format!("{:#}", read(&t).expect_err("refused"))
        };
        let e = err(&|t| {
            t["Resources"]["Metrics"]["Properties"] = json!({ "BillingMode": "PROVISIONED" })
        });
        assert!(
            e.contains(
                "Resources.Metrics.Properties: a PROVISIONED table needs ProvisionedThroughput"
            ),
            "{e}"
        );
        let e = err(&|t| {
            t["Resources"]["Metrics"]["Properties"]["ProvisionedThroughput"]["WriteCapacityUnits"] =
                json!({ "Ref": "Units" })
        });
        assert!(
            e.contains("ProvisionedThroughput.WriteCapacityUnits") && e.contains("literal"),
            "{e}"
        );
        let e = err(&|t| {
            t["Resources"]["Other"] = json!({ "Type": "AWS::DynamoDB::Table", "Properties": {} })
        });
        assert!(e.contains("2 DynamoDB tables"), "{e}");
        let e = err(&|t| {
            t["Resources"]["W"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
                "ServiceNamespace": "dynamodb", "ScalableDimension": "dynamodb:table:WriteCapacityUnits",
                "ResourceId": { "Fn::Sub": "table/${Metrics}" }, "MinCapacity": 10, "MaxCapacity": 5 } });
            t["Resources"]["P"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
                "PolicyType": "TargetTrackingScaling", "ScalingTargetId": { "Ref": "W" },
                "TargetTrackingScalingPolicyConfiguration": { "TargetValue": 70 } } });
        });
        assert!(
            e.contains("Resources.W.Properties: MinCapacity 10 and MaxCapacity 5"),
            "{e}"
        );
        let e = err(&|t| {
            t["Resources"]["W"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalableTarget", "Properties": {
                "ServiceNamespace": "dynamodb", "ScalableDimension": "dynamodb:table:WriteCapacityUnits",
                "ResourceId": { "Fn::Sub": "table/${Metrics}" }, "MinCapacity": 1, "MaxCapacity": 5 } });
            t["Resources"]["P"] = json!({ "Type": "AWS::ApplicationAutoScaling::ScalingPolicy", "Properties": {
                "PolicyType": "TargetTrackingScaling", "ScalingTargetId": { "Ref": "W" },
                "TargetTrackingScalingPolicyConfiguration": { "TargetValue": { "Ref": "Target" } } } });
        });
        assert!(
            e.contains(
                "Resources.P.Properties.TargetTrackingScalingPolicyConfiguration.TargetValue"
            ),
            "{e}"
        );
    }
}
