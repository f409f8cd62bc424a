//! What every construct module of the stack shares: the stack, its stage and options, and how a tally
//! function, a failure queue and an alarm are made here.

use tally_constructs::cloudwatch::{Alarm, AlarmProps, Comparison, Statistic};
use tally_constructs::lambda::{Code, Function, FunctionProps, Logging};
use tally_constructs::sns::Topic;
use tally_constructs::sqs::{Queue, QueueProps};
use tally_constructs::{Expr, Parameter, Scope};

use crate::counter_store::CounterStore;
use crate::{
    code_key_parameter, code_version_parameter, env, LaneOptions, NameKind, PipelineOptions, Stack,
    Stage, ASSETS_BUCKET_PARAMETER, PER_INVOCATION_QUIET,
};

/// checkov's findings that are design decisions: the reasons shared by several functions.
pub(crate) const NO_VPC: &str = "outside the VPC by design: it uses no cache and reaches only AWS public endpoints over TLS with IAM auth";
pub(crate) const ENV_PLAIN: &str =
    "environment holds only resource names and a secret's ARN, no secret values";
pub(crate) const NO_DLQ_STREAM: &str =
    "stream-triggered: failed batches go to the mapping's on-failure SQS queue, not a function DLQ";
pub(crate) const NO_DLQ_SYNC: &str =
    "invoked synchronously (Function URL): the caller gets the error, nothing to dead-letter";
pub(crate) const LOGS_KEY: &str =
    "CloudWatch Logs encrypts at rest with its own keys; logs hold no event payloads or secrets";
pub(crate) const SHARED_POOL: &str =
    "uses the account's unreserved pool; reserving here would starve the critical lane";

/// The stack being built, its stage and options, and the assets bucket parameter every function's code
/// comes from. Every construct module adds its resources through one.
pub(crate) struct Context<'a> {
    pub(crate) stack: &'a Stack,
    pub(crate) root: Scope,
    pub(crate) stage: &'a Stage,
    pub(crate) options: &'a PipelineOptions,
    assets: Parameter,
}

/// How one tally function is made: see [`Context::function`].
pub(crate) struct FunctionSpec<'a> {
    /// Logical id (`Collect`).
    pub(crate) id: &'a str,
    /// Package `tally-<package>`, which also names the function, its role and its code parameters.
    pub(crate) package: &'a str,
    /// A stream lane's settings (memory, timeout, reserved concurrency); `None`: 256 MB, 10 s.
    pub(crate) lane: Option<&'a LaneOptions>,
    /// The function's own environment (the contract's `env::*` names).
    pub(crate) env: Vec<(&'a str, Expr)>,
    /// With the counter store: in the VPC, with the cache's environment and `elasticache:Connect`.
    pub(crate) store: Option<&'a CounterStore>,
}

/// An alarm above a threshold: see [`Context::alarm`].
pub(crate) struct AlarmSpec<'a> {
    /// Logical id.
    pub(crate) id: &'a str,
    /// The alarm's name after the stage prefix.
    pub(crate) suffix: &'a str,
    pub(crate) description: &'a str,
    /// Namespace, metric and dimensions.
    pub(crate) metric: (&'a str, &'a str, Vec<(&'a str, Expr)>),
    /// Statistic, period (s), evaluation periods (all must breach), threshold.
    pub(crate) rule: (Statistic, u32, u32, f64),
    pub(crate) actions: Vec<Topic>,
}

impl<'a> Context<'a> {
    /// The context of `stack`: adds the assets bucket parameter.
    pub(crate) fn new(
        stack: &'a Stack,
        stage: &'a Stage,
        options: &'a PipelineOptions,
    ) -> Context<'a> {
        let assets = stack.string_parameter(
            ASSETS_BUCKET_PARAMETER,
            "S3 bucket that holds the function zips (filled by deploy)",
        );
        Context {
            stack,
            root: stack.root(),
            stage,
            options,
            assets,
        }
    }

    /// The stage's physical name of a resource of `kind`.
    pub(crate) fn name(&self, kind: NameKind, suffix: &str) -> tally_constructs::Name {
        self.stage.name(kind, suffix)
    }

    /// The function `spec.id` running package `tally-<package>`; with a store, placed in the VPC with the
    /// cache's environment and `elasticache:Connect` (what one more cache user, such as a compactor,
    /// needs is this one call).
    pub(crate) fn function(&self, spec: FunctionSpec<'_>) -> Function {
        let FunctionSpec {
            id,
            package,
            lane,
            env,
            store,
        } = spec;
        let key = self.stack.string_parameter(
            &code_key_parameter(package),
            &format!("S3 key of the tally-{package} zip (content hash, filled by deploy)"),
        );
        let version = self.stack.string_parameter(
            &code_version_parameter(package),
            &format!(
                "S3 object version of the tally-{package} zip (verified and pinned by deploy)"
            ),
        );
        let mut environment: Vec<(String, Expr)> =
            env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        if let Some(store) = store {
            environment.extend(store.environment(self.options));
        }
        environment.push((
            env::RUST_LOG.to_owned(),
            Expr::text(self.options.rust_log.clone()),
        ));
        let (memory_mb, timeout_secs, reserved_concurrency) = match lane {
            Some(lane) => (lane.memory_mb, lane.timeout_secs, lane.reserved_concurrency),
            None => (256, 10, url_reserved_concurrency(package, self.options)),
        };
        let function = Function::new(
            &self.root,
            id,
            FunctionProps {
                code: Some(Code::s3_version(
                    self.assets.value(),
                    key.value(),
                    version.value(),
                )),
                function_name: Some(self.name(NameKind::Function, package)),
                role_name: Some(self.name(NameKind::Role, package)),
                memory_mb,
                timeout_secs,
                environment,
                reserved_concurrency,
                log_retention_days: self.options.log_retention_days,
                logging: logging_for(package),
                description: Some(format!("tally {package} ({})", self.stage.label())),
                vpc: store.map(CounterStore::placement),
                ..FunctionProps::default()
            },
        );
        // The boundary `cargo xtask bootstrap` creates: the execution role may only create roles that carry it.
        function
            .role()
            .set_permissions_boundary(&tally_constructs::naming::function_boundary_arn());
        match store {
            Some(store) => store.grant_connect(&function),
            None => function.node().skip_check("CKV_AWS_117", NO_VPC),
        }
        function
    }

    /// A stream lane's on-failure queue (kept 14 days, the longest SQS allows).
    pub(crate) fn failure_queue(&self, id: &str, suffix: &str) -> Queue {
        Queue::new(
            &self.root,
            id,
            QueueProps {
                name: Some(self.name(NameKind::Queue, suffix)),
                retention_secs: 1_209_600,
                ..QueueProps::default()
            },
        )
    }

    /// An alarm when the metric's statistic is above the threshold in every evaluated period.
    pub(crate) fn alarm(&self, spec: AlarmSpec<'_>) {
        let (namespace, name, dimensions) = spec.metric;
        let (statistic, period_secs, evaluation_periods, threshold) = spec.rule;
        Alarm::new(
            &self.root,
            spec.id,
            AlarmProps {
                name: Some(self.name(NameKind::Alarm, spec.suffix)),
                description: spec.description.to_owned(),
                namespace: namespace.to_owned(),
                metric: name.to_owned(),
                dimensions: dimensions
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect(),
                statistic,
                period_secs,
                evaluation_periods,
                datapoints_to_alarm: evaluation_periods,
                threshold,
                comparison: Comparison::GreaterThan,
                actions: spec.actions,
            },
        );
    }
}

fn logging_for(package: &str) -> Logging {
    if PER_INVOCATION_QUIET.contains(&package) {
        Logging::json_without_platform_lines()
    } else {
        Logging::text()
    }
}

/// The reserved concurrency of a function behind a URL (collect, query), from the options.
fn url_reserved_concurrency(package: &str, options: &PipelineOptions) -> Option<u32> {
    match package {
        "collect" => Some(options.collect_reserved_concurrency),
        "query" => Some(options.query_reserved_concurrency),
        _ => None,
    }
}
