//! What the stack contains: the resources of the bird's-eye view in ARCHITECTURE.md with the settings each lane needs, the
//! cross-team contract (parameters, environment, outputs), and least-privilege roles.

use serde_json::{json, Value};
use tally_pipeline::{
    code_key_parameter, code_version_parameter, CriticalLane, PipelineOptions, FUNCTIONS,
};

use super::{find, of_type, resources, template, template_with};

fn count(template: &Value, ty: &str) -> usize {
    of_type(template, ty).len()
}

#[test]
fn resource_inventory() {
    let t = template("main");
    for (ty, n) in [
        ("AWS::Kinesis::Stream", 1),
        ("AWS::Kinesis::StreamConsumer", 1),
        ("AWS::Lambda::Function", 6),
        ("AWS::IAM::Role", 6),
        ("AWS::Logs::LogGroup", 6),
        ("AWS::Lambda::EventSourceMapping", 2),
        ("AWS::Lambda::Url", 2),
        ("AWS::SQS::Queue", 2),
        ("AWS::DynamoDB::Table", 1),
        ("AWS::S3::Bucket", 1),
        ("AWS::S3::BucketPolicy", 1),
        ("AWS::SecretsManager::Secret", 2),
        ("AWS::SNS::Topic", 2),
        ("AWS::SNS::Subscription", 1),
        ("AWS::Events::Rule", 2),
        ("AWS::EC2::VPC", 1),
        ("AWS::EC2::Subnet", 2),
        ("AWS::EC2::RouteTable", 2),
        ("AWS::EC2::SecurityGroup", 3),
        ("AWS::EC2::VPCEndpoint", 4),
        ("AWS::EC2::InternetGateway", 0),
        ("AWS::EC2::NatGateway", 0),
        ("AWS::ElastiCache::ServerlessCache", 1),
        ("AWS::ElastiCache::User", 1),
        ("AWS::ElastiCache::UserGroup", 1),
    ] {
        assert_eq!(count(&t, ty), n, "{ty}");
    }
    assert!(count(&t, "AWS::CloudWatch::Alarm") >= 9);
}

/// The compactor reads the lanes' progress by arrival in the stream, and counts minutes by collect's receive
/// time: collect must write a request's records within `RECEIVE_TO_ARRIVAL_MAX_MS` of receiving it (its
/// function timeout, plus 5 s for the clocks to differ), or a minute could close before a record of it arrives.
#[test]
fn collect_writes_within_the_arrival_bound() {
    let t = template("main");
    let (_, collect) = find(&t, "AWS::Lambda::Function", "Collect");
    let timeout_ms = collect["Properties"]["Timeout"].as_i64().expect("Timeout") * 1000;
    assert!(
        timeout_ms + 5_000 <= tally_domain::compact::RECEIVE_TO_ARRIVAL_MAX_MS,
        "collect's timeout {timeout_ms} ms"
    );
}

#[test]
fn parameters_name_every_function_zip() {
    let t = template("main");
    let mut expect = vec!["AssetsBucket".to_owned()];
    expect.extend(
        FUNCTIONS
            .iter()
            .flat_map(|f| [code_key_parameter(f), code_version_parameter(f)]),
    );
    let names: Vec<String> = t["Parameters"]
        .as_object()
        .expect("parameters")
        .keys()
        .cloned()
        .collect();
    assert_eq!(names, expect);
    assert_eq!(code_key_parameter("realtime"), "RealtimeCodeKey");
    assert_eq!(code_version_parameter("realtime"), "RealtimeCodeVersion");
    for (id, function) in of_type(&t, "AWS::Lambda::Function") {
        let code = &function["Properties"]["Code"];
        assert_eq!(code["S3Bucket"], json!({"Ref": "AssetsBucket"}), "{id}");
        let key = code["S3Key"]["Ref"].as_str().expect("S3Key is a parameter");
        assert!(
            id.starts_with(key.trim_end_matches("CodeKey")),
            "{id} uses {key}"
        );
        // The deploy step pins the object version it verified.
        assert_eq!(
            code["S3ObjectVersion"],
            json!({"Ref": key.replace("CodeKey", "CodeVersion")}),
            "{id}"
        );
    }
}

/// Every role carries the boundary `cargo xtask bootstrap` creates: the execution role may create no other.
#[test]
fn every_role_carries_the_function_boundary() {
    let t = template("main");
    let roles = of_type(&t, "AWS::IAM::Role");
    assert_eq!(roles.len(), FUNCTIONS.len());
    for (id, role) in roles {
        assert_eq!(
            role["Properties"]["PermissionsBoundary"],
            json!({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/tally-function-boundary-${AWS::Region}"}),
            "{id}"
        );
    }
}

fn check_environment(t: &Value, function: &str, expect: &[&str]) {
    let (_, f) = find(t, "AWS::Lambda::Function", function);
    let vars: Vec<&String> = f["Properties"]["Environment"]["Variables"]
        .as_object()
        .expect("variables")
        .keys()
        .collect();
    assert_eq!(vars, expect, "{function}");
}

#[test]
fn environment_follows_the_contract() {
    let t = template("main");
    let cache = [
        "TALLY_CACHE_ENDPOINT",
        "TALLY_CACHE_TLS",
        "TALLY_CACHE_AUTH",
        "TALLY_CACHE_USER",
        "TALLY_CACHE_NAME",
        "TALLY_DEDUP_WINDOW_SECS",
    ];
    let with_cache = |own: &[&'static str]| -> Vec<&'static str> {
        let mut all = own.to_vec();
        all.extend(cache);
        all.push("RUST_LOG");
        all
    };
    check_environment(
        &t,
        "Collect",
        &[
            "TALLY_STREAM_NAME",
            "TALLY_COLLECT_KEYS_SECRET_ARN",
            "RUST_LOG",
        ],
    );
    check_environment(&t, "Realtime", &with_cache(&[]));
    check_environment(
        &t,
        "Compactor",
        &with_cache(&[
            "TALLY_METRICS_TABLE",
            "TALLY_ARCHIVE_BUCKET",
            "TALLY_CAMPAIGN_INDEX_DAYS",
            "TALLY_STREAM_NAME",
        ]),
    );
    let (_, compactor) = find(&t, "AWS::Lambda::Function", "Compactor");
    assert_eq!(
        compactor["Properties"]["Environment"]["Variables"]["TALLY_CAMPAIGN_INDEX_DAYS"], "35",
        "the campaign index window's default"
    );
    check_environment(&t, "Deferred", &with_cache(&["TALLY_ARCHIVE_BUCKET"]));
    check_environment(
        &t,
        "Query",
        &with_cache(&["TALLY_METRICS_TABLE", "TALLY_QUERY_TOKEN_SECRET_ARN"]),
    );
    check_environment(
        &t,
        "Scaler",
        &[
            "TALLY_STREAM_NAME",
            "TALLY_MIN_SHARDS",
            "TALLY_MAX_SHARDS",
            "RUST_LOG",
        ],
    );
    let (_, query) = find(&t, "AWS::Lambda::Function", "Query");
    assert!(query["Properties"]["Environment"]["Variables"]
        .get("TALLY_QUERY_AUTH")
        .is_none());
}

#[test]
fn cache_environment_has_the_contract_values() {
    let options = PipelineOptions {
        dedup_window_secs: 900,
        ..PipelineOptions::default()
    };
    let t = template_with("main", &options);
    for function in ["Realtime", "Deferred", "Query"] {
        let (_, f) = find(&t, "AWS::Lambda::Function", function);
        let vars = &f["Properties"]["Environment"]["Variables"];
        assert_eq!(
            vars["TALLY_CACHE_ENDPOINT"],
            json!({"Fn::Join": [":", [
                {"Fn::GetAtt": ["CounterCache", "Endpoint.Address"]},
                {"Fn::GetAtt": ["CounterCache", "Endpoint.Port"]},
            ]]}),
            "{function}"
        );
        assert_eq!(vars["TALLY_CACHE_TLS"], "true");
        assert_eq!(vars["TALLY_CACHE_AUTH"], "iam");
        assert_eq!(vars["TALLY_CACHE_USER"], "tally-main-functions");
        assert_eq!(vars["TALLY_CACHE_NAME"], json!({"Ref": "CounterCache"}));
        assert_eq!(vars["TALLY_DEDUP_WINDOW_SECS"], "900");
    }
    let (_, user) = find(&t, "AWS::ElastiCache::User", "CacheUser");
    assert_eq!(user["Properties"]["UserId"], "tally-main-functions");
    assert_eq!(
        resources(&t)["CounterCache"]["Properties"]["ServerlessCacheName"],
        "tally-main-counters"
    );
}

#[test]
fn cache_is_bounded_private_and_iam_only() {
    let options = PipelineOptions {
        cache_max_storage_gb: 3,
        cache_max_ecpu_per_second: 5_000,
        ..PipelineOptions::default()
    };
    let t = template_with("main", &options);
    let cache = &resources(&t)["CounterCache"];
    assert_eq!(cache["Type"], "AWS::ElastiCache::ServerlessCache");
    let p = &cache["Properties"];
    assert_eq!(p["Engine"], "valkey");
    assert_eq!(p["MajorEngineVersion"], "8");
    assert_eq!(
        p["CacheUsageLimits"],
        json!({"DataStorage": {"Maximum": 3, "Unit": "GB"}, "ECPUPerSecond": {"Maximum": 5000}})
    );
    let (group, _) = find(&t, "AWS::ElastiCache::UserGroup", "CacheUsers");
    assert_eq!(p["UserGroupId"], json!({"Ref": group}));
    let (cache_group, sg) = find(&t, "AWS::EC2::SecurityGroup", "CacheSecurityGroup");
    assert_eq!(
        p["SecurityGroupIds"],
        json!([{"Fn::GetAtt": [cache_group, "GroupId"]}])
    );
    let (functions_group, _) = find(&t, "AWS::EC2::SecurityGroup", "FunctionsSecurityGroup");
    let rules = sg["Properties"]["SecurityGroupIngress"]
        .as_array()
        .expect("ingress");
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0]["FromPort"], 6379);
    assert_eq!(rules[0]["ToPort"], 6380);
    assert_eq!(
        rules[0]["SourceSecurityGroupId"],
        json!({"Fn::GetAtt": [functions_group, "GroupId"]})
    );
    let (_, user) = find(&t, "AWS::ElastiCache::User", "CacheUser");
    assert_eq!(
        user["Properties"]["AuthenticationMode"],
        json!({"Type": "iam"})
    );
    let access = user["Properties"]["AccessString"].as_str().expect("access");
    assert!(
        !access.contains("~*") && !access.contains("+@all"),
        "{access}"
    );
    assert!(access.ends_with("-@dangerous"), "{access}");
}

#[test]
fn only_the_cache_users_are_in_the_vpc() {
    let t = template("main");
    let (functions_group, _) = find(&t, "AWS::EC2::SecurityGroup", "FunctionsSecurityGroup");
    for function in ["Realtime", "Deferred", "Query"] {
        let (_, f) = find(&t, "AWS::Lambda::Function", function);
        let config = &f["Properties"]["VpcConfig"];
        assert_eq!(
            config["SecurityGroupIds"],
            json!([{"Fn::GetAtt": [functions_group, "GroupId"]}]),
            "{function}"
        );
        assert_eq!(config["SubnetIds"].as_array().map(Vec::len), Some(2));
    }
    for function in ["Collect", "Scaler"] {
        let (_, f) = find(&t, "AWS::Lambda::Function", function);
        assert!(f["Properties"].get("VpcConfig").is_none(), "{function}");
    }
}

#[test]
fn endpoints_only_for_what_the_vpc_functions_call() {
    let t = template("main");
    let endpoints = of_type(&t, "AWS::EC2::VPCEndpoint");
    let services: Vec<(String, &Value)> = endpoints
        .iter()
        .map(|(_, e)| {
            (
                e["Properties"]["ServiceName"]["Fn::Sub"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
                &e["Properties"]["VpcEndpointType"],
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            (
                "com.amazonaws.${AWS::Region}.dynamodb".to_owned(),
                &json!("Gateway")
            ),
            (
                "com.amazonaws.${AWS::Region}.s3".to_owned(),
                &json!("Gateway")
            ),
            (
                "com.amazonaws.${AWS::Region}.secretsmanager".to_owned(),
                &json!("Interface")
            ),
            (
                "com.amazonaws.${AWS::Region}.kinesis-streams".to_owned(),
                &json!("Interface")
            ),
        ]
    );
    let (metrics, _) = find(&t, "AWS::DynamoDB::Table", "Metrics");
    let (token, _) = find(&t, "AWS::SecretsManager::Secret", "QueryToken");
    let (archive, _) = find(&t, "AWS::S3::Bucket", "Archive");
    let (stream, _) = find(&t, "AWS::Kinesis::Stream", "Events");
    for (prefix, allowed) in [
        (
            "KinesisEndpoint",
            vec![json!({"Fn::GetAtt": [stream, "Arn"]})],
        ),
        (
            "DynamoDbEndpoint",
            vec![json!({"Fn::GetAtt": [metrics, "Arn"]})],
        ),
        ("SecretsManagerEndpoint", vec![json!({"Ref": token})]),
        (
            "S3Endpoint",
            vec![
                json!({"Fn::Sub": format!("${{{archive}.Arn}}/events/*")}),
                json!({"Fn::GetAtt": [archive, "Arn"]}),
            ],
        ),
    ] {
        let (_, e) = find(&t, "AWS::EC2::VPCEndpoint", prefix);
        let resources: Vec<Value> = e["Properties"]["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
            .iter()
            .flat_map(|s| s["Resource"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(resources, allowed, "{prefix}");
    }
}

#[test]
fn functions_are_arm64_provided_al2023() {
    let t = template("main");
    for (id, f) in of_type(&t, "AWS::Lambda::Function") {
        let p = &f["Properties"];
        assert_eq!(p["Runtime"], "provided.al2023", "{id}");
        assert_eq!(p["Handler"], "bootstrap", "{id}");
        assert_eq!(p["Architectures"], json!(["arm64"]), "{id}");
        let log_group = p["LoggingConfig"]["LogGroup"]["Ref"]
            .as_str()
            .expect("own log group");
        assert_eq!(
            resources(&t)[log_group]["Properties"]["RetentionInDays"],
            30
        );
    }
}

/// The functions invoked per request or batch log JSON without Lambda's platform lines (INFO keeps the
/// embedded metrics); the rarely invoked ones keep plain text.
#[test]
fn hot_functions_drop_the_platform_lines() {
    let t = template("main");
    for (id, f) in of_type(&t, "AWS::Lambda::Function") {
        let config = &f["Properties"]["LoggingConfig"];
        let name = f["Properties"]["FunctionName"].to_string();
        let hot = ["collect", "realtime", "deferred"]
            .iter()
            .any(|p| name.contains(&format!("-{p}")));
        if hot {
            assert_eq!(config["LogFormat"], "JSON", "{id}");
            assert_eq!(config["SystemLogLevel"], "WARN", "{id}");
            assert_eq!(config["ApplicationLogLevel"], "INFO", "{id}");
        } else {
            assert_eq!(config["LogFormat"], "Text", "{id}");
        }
    }
}

fn mapping<'t>(t: &'t Value, lane: &str) -> &'t Value {
    &find(t, "AWS::Lambda::EventSourceMapping", lane).1["Properties"]
}

#[test]
fn critical_lane_settings() {
    let t = template("main");
    let m = mapping(&t, "RealtimeLane");
    let (consumer, _) = find(&t, "AWS::Kinesis::StreamConsumer", "RealtimeConsumer");
    assert_eq!(
        m["EventSourceArn"],
        json!({"Fn::GetAtt": [consumer, "ConsumerARN"]})
    );
    assert_eq!(m["MaximumBatchingWindowInSeconds"], 0);
    assert_eq!(m["ParallelizationFactor"], 1);
    assert_eq!(m["BisectBatchOnFunctionError"], true);
    assert_eq!(m["MaximumRetryAttempts"], 3);
    assert_eq!(m["MaximumRecordAgeInSeconds"], 3600);
    assert_eq!(
        m["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    let (queue, _) = find(&t, "AWS::SQS::Queue", "RealtimeFailures");
    assert_eq!(
        m["DestinationConfig"]["OnFailure"]["Destination"],
        json!({"Fn::GetAtt": [queue, "Arn"]})
    );
    let (_, realtime) = find(&t, "AWS::Lambda::Function", "Realtime");
    assert_eq!(realtime["Properties"]["ReservedConcurrentExecutions"], 16);
}

#[test]
fn deferred_lane_settings() {
    let t = template("main");
    let m = mapping(&t, "DeferredLane");
    let (stream, _) = find(&t, "AWS::Kinesis::Stream", "Events");
    assert_eq!(m["EventSourceArn"], json!({"Fn::GetAtt": [stream, "Arn"]}));
    assert_eq!(m["MaximumBatchingWindowInSeconds"], 30);
    assert_eq!(m["BatchSize"], 2000);
    assert_eq!(m["BisectBatchOnFunctionError"], true);
    assert_eq!(
        m["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    let (queue, _) = find(&t, "AWS::SQS::Queue", "DeferredFailures");
    assert_eq!(
        m["DestinationConfig"]["OnFailure"]["Destination"],
        json!({"Fn::GetAtt": [queue, "Arn"]})
    );
}

#[test]
fn critical_lane_without_enhanced_fan_out() {
    let options = PipelineOptions {
        critical_lane: CriticalLane::SharedIterator,
        ..PipelineOptions::default()
    };
    let t = template_with("main", &options);
    assert_eq!(count(&t, "AWS::Kinesis::StreamConsumer"), 0);
    let (stream, _) = find(&t, "AWS::Kinesis::Stream", "Events");
    let m = mapping(&t, "RealtimeLane");
    assert_eq!(m["EventSourceArn"], json!({"Fn::GetAtt": [stream, "Arn"]}));
    assert_eq!(m["MaximumBatchingWindowInSeconds"], 0);
    let statements = statements(&t, "Realtime");
    assert!(!statements
        .iter()
        .any(|(action, _)| action == "kinesis:SubscribeToShard"));
}

#[test]
fn provisioned_stream_with_scaler_by_default() {
    let t = template("main");
    let (_, stream) = find(&t, "AWS::Kinesis::Stream", "Events");
    assert_eq!(
        stream["Properties"]["StreamModeDetails"],
        json!({"StreamMode": "PROVISIONED"})
    );
    assert_eq!(stream["Properties"]["ShardCount"], 2);
    assert_eq!(
        stream["Properties"]["StreamEncryption"]["EncryptionType"],
        "KMS"
    );
    let (topic, _) = find(&t, "AWS::SNS::Topic", "ScalingTrigger");
    let (_, throttled) = find(&t, "AWS::CloudWatch::Alarm", "StreamWriteThrottled");
    assert!(throttled["Properties"]["AlarmActions"]
        .as_array()
        .expect("actions")
        .contains(&json!({"Ref": topic})));
    let (_, schedule) = find(&t, "AWS::Events::Rule", "ScalerSchedule");
    assert_eq!(
        schedule["Properties"]["ScheduleExpression"],
        "rate(5 minutes)"
    );
    let scaler: Vec<String> = statements(&t, "Scaler")
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert!(scaler.contains(&"kinesis:UpdateShardCount".to_owned()));
}

#[test]
fn on_demand_is_one_option_away() {
    let t = template_with("main", &PipelineOptions::on_demand());
    let (_, stream) = find(&t, "AWS::Kinesis::Stream", "Events");
    assert_eq!(
        stream["Properties"]["StreamModeDetails"],
        json!({"StreamMode": "ON_DEMAND"})
    );
    assert!(stream["Properties"].get("ShardCount").is_none());
    assert!(of_type(&t, "AWS::Lambda::Function")
        .iter()
        .all(|(id, _)| !id.starts_with("Scaler")));
    assert!(t["Parameters"].get("ScalerCodeKey").is_none());
    // Only the compactor's schedule is left.
    assert_eq!(count(&t, "AWS::Events::Rule"), 1);
    let (_, rule) = find(&t, "AWS::Events::Rule", "CompactorSchedule");
    assert_eq!(rule["Properties"]["ScheduleExpression"], "rate(1 minute)");
}

#[test]
fn metrics_table_capacity_follows_the_table_billing_option() {
    use tally_pipeline::{TableBilling, DEFAULT_TABLE_SCALING};
    // The default: provisioned, 3..=4,000 units each way at 70 %, one scalable target and one
    // target-tracking policy per dimension on `table/<the table>`.
    let t = template("main");
    let (table_id, table) = find(&t, "AWS::DynamoDB::Table", "Metrics");
    assert_eq!(
        table["Properties"]["ProvisionedThroughput"],
        json!({ "ReadCapacityUnits": 3, "WriteCapacityUnits": 3 })
    );
    let targets = of_type(&t, "AWS::ApplicationAutoScaling::ScalableTarget");
    let mut dimensions: Vec<_> = targets
        .iter()
        .map(|(_, r)| {
            let p = &r["Properties"];
            assert_eq!(p["ServiceNamespace"], "dynamodb");
            assert_eq!(
                p["ResourceId"],
                json!({ "Fn::Sub": format!("table/${{{table_id}}}") })
            );
            assert!(p.get("RoleARN").is_none(), "the service-linked role");
            (
                p["ScalableDimension"]
                    .as_str()
                    .expect("dimension")
                    .to_owned(),
                p["MinCapacity"].clone(),
                p["MaxCapacity"].clone(),
            )
        })
        .collect();
    dimensions.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        dimensions,
        vec![
            (
                "dynamodb:table:ReadCapacityUnits".to_owned(),
                json!(3),
                json!(4000)
            ),
            (
                "dynamodb:table:WriteCapacityUnits".to_owned(),
                json!(3),
                json!(4000)
            ),
        ]
    );
    let policies = of_type(&t, "AWS::ApplicationAutoScaling::ScalingPolicy");
    assert_eq!(policies.len(), 2);
    for (_, policy) in &policies {
        let p = &policy["Properties"];
        assert_eq!(p["PolicyType"], "TargetTrackingScaling");
        assert_eq!(
            p["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
            70.0
        );
        let target = p["ScalingTargetId"]["Ref"].as_str().expect("a Ref");
        assert!(targets.iter().any(|(id, _)| *id == target), "{target}");
    }

    // Bounds from the options; on-demand drops the throughput and the scaling resources.
    let mut scaling = DEFAULT_TABLE_SCALING;
    scaling.write.max = 900;
    scaling.target_utilization_percent = 50;
    let t = template_with(
        "main",
        &PipelineOptions {
            table_billing: TableBilling::Provisioned(scaling),
            ..PipelineOptions::default()
        },
    );
    let (_, write) = find(
        &t,
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "MetricsWriteScaling",
    );
    assert_eq!(write["Properties"]["MaxCapacity"], 900);
    let (_, policy) = find(
        &t,
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "MetricsReadScalingPolicy",
    );
    assert_eq!(
        policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]["TargetValue"],
        50.0
    );
    let t = template_with(
        "main",
        &PipelineOptions {
            table_billing: TableBilling::OnDemand,
            ..PipelineOptions::default()
        },
    );
    let (_, table) = find(&t, "AWS::DynamoDB::Table", "Metrics");
    assert_eq!(table["Properties"]["BillingMode"], "PAY_PER_REQUEST");
    assert!(table["Properties"].get("ProvisionedThroughput").is_none());
    assert!(of_type(&t, "AWS::ApplicationAutoScaling::ScalableTarget").is_empty());
    assert!(of_type(&t, "AWS::ApplicationAutoScaling::ScalingPolicy").is_empty());
}

#[test]
fn storage_settings() {
    let t = template("main");
    let (_, table) = find(&t, "AWS::DynamoDB::Table", "Metrics");
    let p = &table["Properties"];
    assert_eq!(p["BillingMode"], "PROVISIONED");
    assert_eq!(
        p["KeySchema"],
        json!([{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}])
    );
    assert_eq!(
        p["TimeToLiveSpecification"],
        json!({"AttributeName": "expires_at", "Enabled": true})
    );
    assert_eq!(
        p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    let (_, bucket) = find(&t, "AWS::S3::Bucket", "Archive");
    let p = &bucket["Properties"];
    assert_eq!(
        p["PublicAccessBlockConfiguration"]["RestrictPublicBuckets"],
        true
    );
    assert_eq!(
        p["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
            ["ServerSideEncryptionByDefault"]["SSEAlgorithm"],
        "AES256"
    );
    assert!(p["LifecycleConfiguration"]["Rules"]
        .as_array()
        .is_some_and(|r| !r.is_empty()));
    for (id, queue) in of_type(&t, "AWS::SQS::Queue") {
        assert_eq!(queue["Properties"]["SqsManagedSseEnabled"], true, "{id}");
    }
    let (_, secret) = find(&t, "AWS::SecretsManager::Secret", "QueryToken");
    assert!(secret["Properties"]["GenerateSecretString"].is_object());
    assert!(
        secret["Properties"].get("SecretString").is_none(),
        "the token is generated, never in the template"
    );
    // The collect keys: a JSON map of key id to a generated secret, never in the template.
    let (_, keys) = find(&t, "AWS::SecretsManager::Secret", "CollectKeys");
    assert_eq!(
        keys["Properties"]["GenerateSecretString"],
        json!({"PasswordLength": 40, "ExcludePunctuation": true, "IncludeSpace": false,
               "SecretStringTemplate": "{}", "GenerateStringKey": "default"})
    );
    assert!(keys["Properties"].get("SecretString").is_none());
}

#[test]
fn public_urls_with_cors_and_both_permissions() {
    let t = template("main");
    for prefix in ["CollectFunctionUrl", "QueryFunctionUrl"] {
        let (_, url) = find(&t, "AWS::Lambda::Url", prefix);
        assert_eq!(url["Properties"]["AuthType"], "NONE");
        assert_eq!(url["Properties"]["Cors"]["AllowOrigins"], json!(["*"]));
    }
    let permissions = of_type(&t, "AWS::Lambda::Permission");
    let actions: Vec<&Value> = permissions
        .iter()
        .map(|(_, p)| &p["Properties"]["Action"])
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|a| **a == "lambda:InvokeFunctionUrl")
            .count(),
        2
    );
}

#[test]
fn outputs() {
    let t = template("main");
    let names: Vec<&String> = t["Outputs"].as_object().expect("outputs").keys().collect();
    assert_eq!(
        names,
        [
            "CollectUrl",
            "QueryUrl",
            "StreamName",
            "MetricsTableName",
            "ArchiveBucketName",
            "QueryTokenSecretArn",
            "CollectKeysSecretArn",
            "RealtimeFailuresQueueUrl",
            "DeferredFailuresQueueUrl",
            "CacheEndpointAddress",
            "CacheEndpointPort",
            "CacheName"
        ]
    );
}

/// The statements of the role of the function whose logical id starts with `function`, as written.
fn statements_json(t: &Value, function: &str) -> Vec<Value> {
    let (_, f) = find(t, "AWS::Lambda::Function", function);
    let role = f["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .expect("role reference");
    resources(t)[role]["Properties"]["Policies"]
        .as_array()
        .expect("inline policy")
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

/// `(action, resource)` pairs of the role of the function whose logical id starts with `function`.
fn statements(t: &Value, function: &str) -> Vec<(String, Value)> {
    let (_, f) = find(t, "AWS::Lambda::Function", function);
    let role = f["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .expect("role reference");
    let mut pairs = Vec::new();
    for policy in resources(t)[role]["Properties"]["Policies"]
        .as_array()
        .expect("inline policy")
    {
        for statement in policy["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
        {
            assert_eq!(statement["Effect"], "Allow");
            let actions = match &statement["Action"] {
                Value::Array(a) => a.clone(),
                one => vec![one.clone()],
            };
            let resources = match &statement["Resource"] {
                Value::Array(r) => r.clone(),
                one => vec![one.clone()],
            };
            for action in &actions {
                for resource in &resources {
                    pairs.push((
                        action.as_str().expect("action").to_owned(),
                        resource.clone(),
                    ));
                }
            }
        }
    }
    pairs
}

pub(super) fn check_grants(t: &Value, function: &str, expect: &[(&str, &str)]) {
    // Resources are named by the logical id they point at (`Events…`, `Metrics…`, `Archive…/*`).
    let name = |resource: &Value| -> String {
        let text = resource.to_string();
        let is_hash = |h: &str| {
            h.chars()
                .all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c))
        };
        let id = text
            .split(|c: char| !c.is_ascii_alphanumeric())
            .find(|t| t.len() > 8 && t.is_char_boundary(t.len() - 8) && is_hash(&t[t.len() - 8..]))
            .map_or("?", |t| &t[..t.len() - 8]);
        // `…/*` (every object) or `…/<prefix>/*` (the objects under a key prefix).
        let under = text.split_once("*\"").and_then(|(head, _)| {
            let slash = head.rfind(|c: char| !(c.is_ascii_lowercase() || c == '/'))?;
            head[slash + 1..].strip_prefix('/')
        });
        if let Some(prefix) = under {
            format!("{id}/{prefix}*")
        } else {
            id.to_owned()
        }
    };
    let mut actual: Vec<(String, String)> = statements(t, function)
        .iter()
        .map(|(a, r)| (a.clone(), name(r)))
        .collect();
    actual.sort();
    let mut expect: Vec<(String, String)> = expect
        .iter()
        .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
        .collect();
    expect.sort();
    assert_eq!(actual, expect, "grants of {function}");
}

#[test]
fn roles_have_exactly_the_grants_they_need() {
    let t = template("main");
    let logs = |group: &'static str| {
        [
            ("logs:CreateLogStream", group),
            ("logs:PutLogEvents", group),
        ]
    };
    // Network interfaces (writes scoped to the account's EC2 resources, reads unscoped) and the cache.
    let cache = [
        ("ec2:AssignPrivateIpAddresses", "?"),
        ("ec2:CreateNetworkInterface", "?"),
        ("ec2:DeleteNetworkInterface", "?"),
        ("ec2:UnassignPrivateIpAddresses", "?"),
        ("ec2:DescribeNetworkInterfaces", "?"),
        ("ec2:DescribeSubnets", "?"),
        ("elasticache:Connect", "?"),
        ("elasticache:Connect", "CacheUser"),
    ];
    // Which actions each role holds is derived from the code by least_privilege.rs; here, on what.
    let mut collect = vec![
        ("kinesis:PutRecords", "Events"),
        ("secretsmanager:GetSecretValue", "CollectKeys"),
    ];
    collect.extend(logs("CollectLogGroup"));
    check_grants(&t, "Collect", &collect);

    let stream_read = [
        "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary",
        "kinesis:GetRecords",
        "kinesis:GetShardIterator",
        "kinesis:ListShards",
    ];
    let table_rw = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ];
    let mut realtime: Vec<(&str, &str)> = stream_read.iter().map(|a| (*a, "Events")).collect();
    realtime.extend([
        ("kinesis:DescribeStreamConsumer", "RealtimeConsumer"),
        ("kinesis:SubscribeToShard", "RealtimeConsumer"),
    ]);
    // No table: the realtime lane writes the cache only.
    realtime.push(("sqs:SendMessage", "RealtimeFailures"));
    realtime.extend(logs("RealtimeLogGroup"));
    realtime.extend(cache);
    check_grants(&t, "Realtime", &realtime);

    let mut deferred: Vec<(&str, &str)> = stream_read.iter().map(|a| (*a, "Events")).collect();
    // The deferred lane only writes new archive objects, under `events/`: it cannot read the archive.
    deferred.extend([
        ("s3:PutObject", "Archive/events/*"),
        ("sqs:SendMessage", "DeferredFailures"),
    ]);
    // No table: the deferred lane settles into the cache only (the compactor writes the items).
    deferred.extend(logs("DeferredLogGroup"));
    deferred.extend(cache);
    check_grants(&t, "Deferred", &deferred);

    // The compactor reads the archive's events (a repair after the cache lost its data), nothing else of it,
    // and single records of the stream (the lanes' progress).
    let mut compactor: Vec<(&str, &str)> = table_rw.iter().map(|a| (*a, "Metrics")).collect();
    compactor.extend([
        ("kinesis:GetRecords", "Events"),
        ("kinesis:GetShardIterator", "Events"),
        ("kinesis:ListShards", "Events"),
        ("s3:GetObject", "Archive/events/*"),
        ("s3:ListBucket", "Archive"),
    ]);
    compactor.extend(logs("CompactorLogGroup"));
    compactor.extend(cache);
    check_grants(&t, "Compactor", &compactor);
    let listing = statements_json(&t, "Compactor")
        .into_iter()
        .find(|s| s["Action"] == "s3:ListBucket")
        .expect("the compactor lists the archive");
    assert_eq!(
        listing["Condition"],
        json!({"StringLike": {"s3:prefix": "events/*"}}),
        "the compactor lists the archive's events only"
    );

    let mut query: Vec<(&str, &str)> = [
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:BatchGetItem",
    ]
    .iter()
    .map(|a| (*a, "Metrics"))
    .collect();
    query.push(("secretsmanager:GetSecretValue", "QueryToken"));
    query.extend(logs("QueryLogGroup"));
    query.extend(cache);
    check_grants(&t, "Query", &query);

    let mut scaler = vec![
        ("cloudwatch:GetMetricStatistics", "?"),
        ("kinesis:AddTagsToStream", "Events"),
        ("kinesis:DescribeStreamSummary", "Events"),
        ("kinesis:ListTagsForStream", "Events"),
        ("kinesis:UpdateShardCount", "Events"),
    ];
    scaler.extend(logs("ScalerLogGroup"));
    check_grants(&t, "Scaler", &scaler);
}

#[test]
fn no_wildcards_in_any_policy() {
    for options in [PipelineOptions::default(), PipelineOptions::on_demand()] {
        let t = template_with("main", &options);
        for (id, role) in of_type(&t, "AWS::IAM::Role") {
            // The exceptions: CloudWatch metric reads and the network-interface reads of a function
            // in a VPC have no resource-level permissions.
            let unscoped = [
                r#"{"Effect":"Allow","Action":"cloudwatch:GetMetricStatistics","Resource":"*"}"#,
                r#"{"Effect":"Allow","Action":["ec2:DescribeNetworkInterfaces","ec2:DescribeSubnets"],"Resource":"*"}"#,
            ];
            let mut text = role["Properties"]["Policies"].to_string();
            for allowed in unscoped {
                text = text.replace(allowed, "");
            }
            // Network-interface writes: any EC2 resource of the stack's own account and region (Lambda
            // creates the interfaces, so their ids are unknown at synth).
            text = text.replace(
                r#""arn:${AWS::Partition}:ec2:${AWS::Region}:${AWS::AccountId}:*""#,
                "ACCOUNT_EC2",
            );
            assert!(!text.contains("\"*\""), "{id} has a `*` resource: {text}");
            assert!(!text.contains(":*\""), "{id} has a wildcard action: {text}");
        }
    }
}

#[test]
fn weird_branches_synthesize() {
    for stage in [
        "feature/ÜBER_new--thing",
        "dependabot/cargo/aws-sdk-1.2.3",
        "1234-hotfix",
        &"n".repeat(200),
        "",
        "😀",
    ] {
        let t = template(stage);
        assert!(!resources(&t).is_empty(), "{stage:?}");
    }
}

#[test]
fn unsigned_events_leave_the_settled_counts_only_when_asked() {
    let t = template("main");
    let (_, deferred) = find(&t, "AWS::Lambda::Function", "Deferred");
    assert!(deferred["Properties"]["Environment"]["Variables"]
        .get("TALLY_SETTLED_UNSIGNED")
        .is_none());
    let options = PipelineOptions {
        exclude_unsigned: true,
        ..PipelineOptions::default()
    };
    let t = template_with("main", &options);
    let (_, deferred) = find(&t, "AWS::Lambda::Function", "Deferred");
    assert_eq!(
        deferred["Properties"]["Environment"]["Variables"]["TALLY_SETTLED_UNSIGNED"],
        "exclude"
    );
}

#[test]
fn data_is_retained_only_when_asked() {
    let retained = |t: &Value| -> Vec<String> {
        resources(t)
            .iter()
            .filter(|(_, r)| {
                r["DeletionPolicy"] == "Retain" && r["UpdateReplacePolicy"] == "Retain"
            })
            .map(|(_, r)| r["Type"].as_str().unwrap_or("?").to_owned())
            .collect()
    };
    assert!(
        retained(&template("main")).is_empty(),
        "previews leave nothing behind"
    );
    let options = PipelineOptions {
        retain_data: true,
        ..PipelineOptions::default()
    };
    assert_eq!(
        retained(&template_with("production", &options)),
        [
            "AWS::Kinesis::Stream",
            "AWS::DynamoDB::Table",
            "AWS::S3::Bucket",
            "AWS::SecretsManager::Secret",
            "AWS::SecretsManager::Secret"
        ]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Any branch name gives a stack that synthesizes, with every physical name within its limits.
    #[test]
    fn any_branch_synthesizes(branch in proptest::prelude::any::<String>()) {
        let t = template(&branch);
        for (id, resource) in resources(&t) {
            let p = &resource["Properties"];
            for (key, max) in [("FunctionName", 64), ("RoleName", 64), ("QueueName", 80), ("TableName", 255), ("Name", 512)] {
                if let Some(name) = p[key].as_str() {
                    proptest::prop_assert!(name.len() <= max, "{} {} = {:?}", id, key, name);
                }
            }
        }
    }
}

#[test]
fn every_failure_queue_has_a_depth_alarm_to_the_alerts_topic() {
    let t = template("main");
    let (alerts, _) = find(&t, "AWS::SNS::Topic", "Alerts");
    for (alarm, queue) in [
        ("RealtimeFailuresWaiting", "RealtimeFailures"),
        ("DeferredFailuresWaiting", "DeferredFailures"),
    ] {
        let (queue_id, _) = find(&t, "AWS::SQS::Queue", queue);
        let (_, alarm) = find(&t, "AWS::CloudWatch::Alarm", alarm);
        let p = &alarm["Properties"];
        assert_eq!(p["Namespace"], "AWS/SQS", "{alarm}");
        assert_eq!(p["MetricName"], "ApproximateNumberOfMessagesVisible");
        assert_eq!(
            p["Dimensions"],
            json!([{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}])
        );
        assert_eq!(p["ComparisonOperator"], "GreaterThanThreshold");
        assert_eq!(p["Threshold"], 0.0);
        assert_eq!(p["AlarmActions"], json!([{"Ref": alerts}]));
        assert!(
            p["AlarmDescription"]
                .as_str()
                .is_some_and(|d| d.contains("cargo xtask redrive --lane")),
            "{alarm}"
        );
    }
}
