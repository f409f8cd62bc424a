//! Lambda: functions (with their role and log group), Function URLs and invoke permissions.

use serde_json::{json, Map, Value};

use crate::core::{Node, Scope};
use crate::ec2::Placement;
use crate::expr::Expr;
use crate::iam::{grant, grant_unscoped, Grantee, Role, RoleProps};
use crate::iam_policy::Statement;
use crate::naming::{Name, NameKind};

/// Where the function's code is.
#[derive(Debug, Clone)]
pub enum Code {
    /// A zip in S3 (usually template parameters filled by the deploy step).
    S3 {
        /// Bucket name.
        bucket: Expr,
        /// Object key.
        key: Expr,
        /// Object version (`S3ObjectVersion`): pins the exact bytes in a versioned bucket, so that a later
        /// write under the same key cannot change what the function runs.
        version: Option<Expr>,
    },
}

impl Code {
    /// A zip at `bucket`/`key` (whatever version is current when CloudFormation reads it).
    pub fn s3(bucket: Expr, key: Expr) -> Code {
        Code::S3 {
            bucket,
            key,
            version: None,
        }
    }

    /// A zip at `bucket`/`key`, pinned to object `version`.
    pub fn s3_version(bucket: Expr, key: Expr, version: Expr) -> Code {
        Code::S3 {
            bucket,
            key,
            version: Some(version),
        }
    }
}

/// Instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Architecture {
    /// Graviton: about 20 % cheaper per GB-second.
    #[default]
    Arm64,
    /// x86-64.
    X86_64,
}

/// Log retention values CloudWatch Logs accepts, in days.
pub const LOG_RETENTION_DAYS: [u32; 22] = [
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922,
    3288, 3653,
];

/// How Lambda sends the function's logs to CloudWatch Logs (`LoggingConfig`, "advanced logging controls").
///
/// With [`LogFormat::Json`] Lambda filters by level: application lines are JSON objects whose `level` key
/// names their level (a line without one counts as `INFO`, so an embedded-metric line is `INFO`), and the
/// system lines Lambda writes itself (`platform.start`, `platform.report`: one start and one report per
/// invocation) are `INFO`, so [`SystemLogLevel::Warn`] drops them. Levels need the JSON format (CloudFormation
/// rejects them with `Text`); a synth error says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Logging {
    /// `LogFormat`.
    pub format: LogFormat,
    /// `ApplicationLogLevel`: the most detailed application level sent; `None` = Lambda's default (`INFO`
    /// with JSON).
    pub application_level: Option<ApplicationLogLevel>,
    /// `SystemLogLevel`: the most detailed system level sent; `None` = Lambda's default (`INFO` with JSON).
    pub system_level: Option<SystemLogLevel>,
}

impl Logging {
    /// Plain text, no filtering: every line, and Lambda's `START`/`END`/`REPORT` lines per invocation.
    pub fn text() -> Logging {
        Logging::default()
    }

    /// JSON with the application's `INFO` lines (embedded metrics included) and only Lambda's own warnings:
    /// no per-invocation platform lines. For functions invoked so often that those lines are a cost.
    pub fn json_without_platform_lines() -> Logging {
        Logging {
            format: LogFormat::Json,
            application_level: Some(ApplicationLogLevel::Info),
            system_level: Some(SystemLogLevel::Warn),
        }
    }

    /// The `LoggingConfig` properties besides `LogGroup`; errors name the setting and what to do.
    fn properties(&self) -> Result<Map<String, Value>, String> {
        let mut config = Map::new();
        let format = match self.format {
            LogFormat::Text => "Text",
            LogFormat::Json => "JSON",
        };
        config.insert("LogFormat".into(), json!(format));
        if self.format == LogFormat::Text
            && (self.application_level.is_some() || self.system_level.is_some())
        {
            return Err("logging: application_level and system_level filter JSON logs only; set format LogFormat::Json or leave the levels unset".into());
        }
        if let Some(level) = self.application_level {
            config.insert("ApplicationLogLevel".into(), json!(level.as_str()));
        }
        if let Some(level) = self.system_level {
            config.insert("SystemLogLevel".into(), json!(level.as_str()));
        }
        Ok(config)
    }
}

/// `LoggingConfig.LogFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Plain text (Lambda's default).
    #[default]
    Text,
    /// Structured JSON; needed for level filtering.
    Json,
}

/// `LoggingConfig.ApplicationLogLevel`, most detailed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ApplicationLogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

impl ApplicationLogLevel {
    /// The CloudFormation value.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplicationLogLevel::Trace => "TRACE",
            ApplicationLogLevel::Debug => "DEBUG",
            ApplicationLogLevel::Info => "INFO",
            ApplicationLogLevel::Warn => "WARN",
            ApplicationLogLevel::Error => "ERROR",
            ApplicationLogLevel::Fatal => "FATAL",
        }
    }
}

/// `LoggingConfig.SystemLogLevel`, most detailed first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SystemLogLevel {
    Debug,
    Info,
    Warn,
}

impl SystemLogLevel {
    /// The CloudFormation value.
    pub fn as_str(self) -> &'static str {
        match self {
            SystemLogLevel::Debug => "DEBUG",
            SystemLogLevel::Info => "INFO",
            SystemLogLevel::Warn => "WARN",
        }
    }
}

/// Properties of a [`Function`]. The runtime is always `provided.al2023` with handler `bootstrap`.
#[derive(Debug, Clone)]
pub struct FunctionProps {
    /// The code; a function without code is a synth error.
    pub code: Option<Code>,
    /// Physical name; `None` lets CloudFormation choose.
    pub function_name: Option<Name>,
    /// Physical name of the function's role; `None` lets CloudFormation choose.
    pub role_name: Option<Name>,
    /// Instruction set (arm64 by default).
    pub architecture: Architecture,
    /// 128..=10240 MB.
    pub memory_mb: u32,
    /// 1..=900 seconds.
    pub timeout_secs: u32,
    /// Environment variables (`[A-Za-z][A-Za-z0-9_]*`, not Lambda's reserved ones).
    pub environment: Vec<(String, Expr)>,
    /// Reserved concurrency; `None` for the account's unreserved pool.
    pub reserved_concurrency: Option<u32>,
    /// Retention of the function's log group (one of [`LOG_RETENTION_DAYS`]).
    pub log_retention_days: u32,
    /// Log format and level filters (`LoggingConfig`); plain text unless set.
    pub logging: Logging,
    /// Free text.
    pub description: Option<String>,
    /// Subnets and security groups when the function runs in a VPC (`VpcConfig`); the role then gets
    /// the network-interface actions Lambda needs. A function in a VPC without NAT reaches only the VPC
    /// and the services with an endpoint in it.
    pub vpc: Option<Placement>,
}

/// What Lambda does with the role of a function in a VPC: the actions of the managed policy
/// `AWSLambdaVPCAccessExecutionRole` without its log actions (the function's own log group grant covers
/// those). The writes are scoped to EC2 resources of the stack's account and region
/// ([`VPC_ACCESS_WRITES`]); the `Describe*` reads cannot be scoped to a resource ([`VPC_ACCESS_READS`]).
pub const VPC_ACCESS_WRITES: [&str; 4] = [
    "ec2:AssignPrivateIpAddresses",
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:UnassignPrivateIpAddresses",
];
/// See [`VPC_ACCESS_WRITES`].
pub const VPC_ACCESS_READS: [&str; 2] = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"];

impl Default for FunctionProps {
    fn default() -> FunctionProps {
        FunctionProps {
            code: None,
            function_name: None,
            role_name: None,
            architecture: Architecture::Arm64,
            memory_mb: 128,
            timeout_secs: 3,
            environment: Vec::new(),
            reserved_concurrency: None,
            log_retention_days: 30,
            logging: Logging::text(),
            description: None,
            vpc: None,
        }
    }
}

/// Variables that Lambda sets itself and rejects in a function's configuration.
const RESERVED_ENV: [&str; 16] = [
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
];

/// A Lambda function with its own role (least privilege, filled by grants) and log group.
#[derive(Debug, Clone)]
pub struct Function {
    node: Node,
    role: Role,
    log_group: Node,
    memory_mb: u32,
}

impl Function {
    /// Creates the function, its role (`id/Role`) and its log group (`id/LogGroup`) at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: FunctionProps) -> Function {
        let scope = scope.child(id);
        let role = Role::new(
            &scope,
            "Role",
            RoleProps {
                assumed_by: "lambda.amazonaws.com",
                role_name: props.role_name.clone(),
            },
        );

        let function_name = props.function_name.as_ref().map(|name| {
            name.check(&scope, NameKind::Function);
            name.to_expr()
        });
        let mut log_props = Map::new();
        if let Some(name) = &function_name {
            log_props.insert(
                "LogGroupName".into(),
                scope.resolve(&Expr::concat([Expr::text("/aws/lambda/"), name.clone()])),
            );
        }
        if !LOG_RETENTION_DAYS.contains(&props.log_retention_days) {
            scope.violation(format!(
                "log_retention_days {} is not one CloudWatch Logs accepts ({LOG_RETENTION_DAYS:?})",
                props.log_retention_days
            ));
        }
        log_props.insert("RetentionInDays".into(), json!(props.log_retention_days));
        let log_group = scope.add_resource("LogGroup", "AWS::Logs::LogGroup", log_props);
        grant(
            &role,
            &log_group,
            &["logs:CreateLogStream", "logs:PutLogEvents"],
            &[log_group.attribute("Arn")],
        );

        let mut properties = Map::new();
        if let Some(description) = &props.description {
            properties.insert("Description".into(), json!(description));
        }
        if let Some(name) = &function_name {
            properties.insert("FunctionName".into(), scope.resolve(name));
        }
        match &props.code {
            Some(Code::S3 {
                bucket,
                key,
                version,
            }) => {
                for (what, value) in [("bucket", Some(bucket)), ("key", Some(key)), ("version", version.as_ref())] {
                    if value.and_then(Expr::as_text).is_some_and(|t| t.trim().is_empty()) {
                        scope.violation(format!("code {what} is empty; give the S3 {what} of the function's zip"));
                    }
                }
                let mut code = Map::new();
                code.insert("S3Bucket".into(), scope.resolve(bucket));
                code.insert("S3Key".into(), scope.resolve(key));
                if let Some(version) = version {
                    code.insert("S3ObjectVersion".into(), scope.resolve(version));
                }
                properties.insert("Code".into(), Value::Object(code));
            }
            None => scope.violation(
                "function has no code: set `code` (for example Code::s3 with the deploy step's bucket and key parameters)",
            ),
        }
        properties.insert("Runtime".into(), json!("provided.al2023"));
        properties.insert("Handler".into(), json!("bootstrap"));
        let arch = match props.architecture {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        };
        properties.insert("Architectures".into(), json!([arch]));
        if !(128..=10240).contains(&props.memory_mb) {
            scope.violation(format!(
                "memory_mb {} is outside 128..=10240 (Lambda MemorySize)",
                props.memory_mb
            ));
        }
        properties.insert("MemorySize".into(), json!(props.memory_mb));
        if !(1..=900).contains(&props.timeout_secs) {
            scope.violation(format!(
                "timeout_secs {} is outside 1..=900 (Lambda Timeout)",
                props.timeout_secs
            ));
        }
        properties.insert("Timeout".into(), json!(props.timeout_secs));
        if let Some(reserved) = props.reserved_concurrency {
            if reserved > 10_000 {
                scope.violation(format!(
                    "reserved_concurrency {reserved} is above 10000; it cannot exceed the account's concurrency quota"
                ));
            }
            properties.insert("ReservedConcurrentExecutions".into(), json!(reserved));
        }
        if !props.environment.is_empty() {
            let mut variables = Map::new();
            for (key, value) in &props.environment {
                if !valid_env_key(key) {
                    scope.violation(format!(
                        "environment variable `{}` has an invalid name: use [A-Za-z][A-Za-z0-9_]*",
                        key.escape_debug()
                    ));
                } else if RESERVED_ENV.contains(&key.as_str()) {
                    scope.violation(format!(
                        "environment variable `{key}` is reserved by Lambda; choose another name"
                    ));
                }
                if variables
                    .insert(key.clone(), scope.resolve(value))
                    .is_some()
                {
                    scope.violation(format!("environment variable `{key}` is set twice"));
                }
            }
            properties.insert("Environment".into(), json!({ "Variables": variables }));
        }
        let mut logging = props.logging.properties().unwrap_or_else(|message| {
            scope.violation(message);
            Map::new()
        });
        logging.insert("LogGroup".into(), log_group.reference().to_json());
        properties.insert("LoggingConfig".into(), Value::Object(logging));
        if let Some(vpc) = &props.vpc {
            if vpc.subnet_ids.is_empty() || vpc.subnet_ids.len() > 16 {
                scope.violation(format!(
                    "vpc has {} subnets: give 1..=16 (Lambda VpcConfig), two zones or more for availability",
                    vpc.subnet_ids.len()
                ));
            }
            if vpc.security_group_ids.is_empty() || vpc.security_group_ids.len() > 5 {
                scope.violation(format!(
                    "vpc has {} security groups: give 1..=5 (Lambda VpcConfig)",
                    vpc.security_group_ids.len()
                ));
            }
            let subnets: Vec<Value> = vpc.subnet_ids.iter().map(|s| scope.resolve(s)).collect();
            let groups: Vec<Value> = vpc
                .security_group_ids
                .iter()
                .map(|g| scope.resolve(g))
                .collect();
            properties.insert(
                "VpcConfig".into(),
                json!({ "SubnetIds": subnets, "SecurityGroupIds": groups }),
            );
            grant_unscoped(&role, &VPC_ACCESS_READS);
            let account_ec2 = Expr::concat([
                Expr::text("arn:"),
                Expr::partition(),
                Expr::text(":ec2:"),
                Expr::region(),
                Expr::text(":"),
                Expr::account_id(),
                Expr::text(":*"),
            ]);
            role.node().add_statement(Statement::new(
                &VPC_ACCESS_WRITES,
                vec![account_ec2.to_json()],
            ));
        }
        properties.insert("Role".into(), role.arn().to_json());
        let node = scope.add_resource("Resource", "AWS::Lambda::Function", properties);
        Function {
            node,
            role,
            log_group,
            memory_mb: props.memory_mb,
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The function's role.
    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The function's log group.
    pub fn log_group(&self) -> &Node {
        &self.log_group
    }

    /// Configured memory.
    pub fn memory_mb(&self) -> u32 {
        self.memory_mb
    }

    /// The function's name (`Ref`).
    pub fn name(&self) -> Expr {
        self.node.reference()
    }

    /// The function's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }

    /// Lets `service` (e.g. `events.amazonaws.com`) invoke this function for `source_arn` only.
    pub fn allow_invoke(
        &self,
        scope: &Scope,
        id: &str,
        service: &'static str,
        source_arn: &Expr,
    ) -> Node {
        let scope = scope.child(id);
        let mut properties = Map::new();
        properties.insert("Action".into(), json!("lambda:InvokeFunction"));
        properties.insert("FunctionName".into(), scope.resolve(&self.arn()));
        properties.insert("Principal".into(), json!(service));
        properties.insert("SourceArn".into(), scope.resolve(source_arn));
        scope.add_resource("Resource", "AWS::Lambda::Permission", properties)
    }

    /// `lambda:InvokeFunction` on this function for another role.
    pub fn grant_invoke(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &["lambda:InvokeFunction"],
            &[self.arn()],
        );
    }
}

impl Grantee for Function {
    fn grant_role(&self) -> &Role {
        &self.role
    }
}

fn valid_env_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// CORS of a Function URL.
#[derive(Debug, Clone)]
pub struct Cors {
    /// Allowed origins (`*` for any publisher site).
    pub allow_origins: Vec<String>,
    /// Allowed methods.
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    pub allow_headers: Vec<String>,
    /// Preflight cache, 0..=86400 seconds.
    pub max_age_secs: u32,
}

/// Who may call a Function URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlAuth {
    /// Anyone; the function authenticates (or not) by itself.
    None,
    /// SigV4-signed requests with `lambda:InvokeFunctionUrl` permission.
    Iam,
}

/// Properties of a [`FunctionUrl`].
#[derive(Debug, Clone)]
pub struct FunctionUrlProps {
    /// Authentication.
    pub auth: UrlAuth,
    /// CORS; `None` for none.
    pub cors: Option<Cors>,
}

/// A Function URL; with [`UrlAuth::None`] also the public invoke permissions it needs.
#[derive(Debug, Clone)]
pub struct FunctionUrl {
    node: Node,
    permissions: Vec<Node>,
}

impl FunctionUrl {
    /// Creates the URL of `function` at `scope/id`.
    pub fn new(
        scope: &Scope,
        id: &str,
        function: &Function,
        props: FunctionUrlProps,
    ) -> FunctionUrl {
        let scope = scope.child(id);
        let mut properties = Map::new();
        let auth = match props.auth {
            UrlAuth::None => "NONE",
            UrlAuth::Iam => "AWS_IAM",
        };
        properties.insert("AuthType".into(), json!(auth));
        properties.insert("TargetFunctionArn".into(), scope.resolve(&function.arn()));
        if let Some(cors) = &props.cors {
            if cors.max_age_secs > 86_400 {
                scope.violation(format!(
                    "cors max_age_secs {} is above 86400",
                    cors.max_age_secs
                ));
            }
            if cors.allow_origins.is_empty() {
                scope.violation("cors allow_origins is empty; list the origins (or `*`)");
            }
            let mut c = Map::new();
            c.insert("AllowOrigins".into(), json!(cors.allow_origins));
            c.insert("AllowMethods".into(), json!(cors.allow_methods));
            if !cors.allow_headers.is_empty() {
                c.insert("AllowHeaders".into(), json!(cors.allow_headers));
            }
            c.insert("MaxAge".into(), json!(cors.max_age_secs));
            properties.insert("Cors".into(), Value::Object(c));
        }
        let node = scope.add_resource("Resource", "AWS::Lambda::Url", properties);
        let mut permissions = Vec::new();
        if props.auth == UrlAuth::None {
            // Since October 2025 a public URL needs both permissions.
            let mut url = Map::new();
            url.insert("Action".into(), json!("lambda:InvokeFunctionUrl"));
            url.insert("FunctionName".into(), scope.resolve(&function.arn()));
            url.insert("FunctionUrlAuthType".into(), json!("NONE"));
            url.insert("Principal".into(), json!("*"));
            permissions.push(scope.add_resource("InvokeUrl", "AWS::Lambda::Permission", url));
            let mut invoke = Map::new();
            invoke.insert("Action".into(), json!("lambda:InvokeFunction"));
            invoke.insert("FunctionName".into(), scope.resolve(&function.arn()));
            invoke.insert("InvokedViaFunctionUrl".into(), json!(true));
            invoke.insert("Principal".into(), json!("*"));
            permissions.push(scope.add_resource("Invoke", "AWS::Lambda::Permission", invoke));
        }
        FunctionUrl { node, permissions }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The permissions created with the URL.
    pub fn permissions(&self) -> &[Node] {
        &self.permissions
    }

    /// The URL (`Fn::GetAtt FunctionUrl`), ending in `/`.
    pub fn url(&self) -> Expr {
        self.node.attribute("FunctionUrl")
    }
}
