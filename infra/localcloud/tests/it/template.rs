//! The template loader: the real synthesized pipeline, intrinsics one case a line, hostile templates.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tally_localcloud::esm::StartingPosition;
use tally_localcloud::template::{load, LocalContext, Resources};

fn ctx() -> LocalContext {
    LocalContext {
        stack_name: "tally-dev".into(),
        region: "us-east-1".into(),
        account: "123456789012".into(),
        endpoint: "http://127.0.0.1:4566".into(),
        parameters: BTreeMap::from([("CollectCodeKey".to_owned(), "/bin/collect".to_owned())]),
        function_urls: BTreeMap::new(),
        cache_ports: BTreeMap::new(),
    }
}

#[test]
fn the_synthesized_pipeline_loads_and_every_resource_is_accounted_for() {
    let stage = tally_pipeline::Stage::from_branch("dev");
    let template =
        tally_pipeline::synth_value(&stage, &tally_pipeline::PipelineOptions::default()).unwrap();
    let resources = load(&template, &ctx()).unwrap();
    let total = template["Resources"].as_object().unwrap().len();
    let placed = resources.streams.len()
        + resources.consumers.len()
        + resources.tables.len()
        + resources.queues.len()
        + resources.buckets.len()
        + resources.functions.len()
        + resources.urls.len()
        + resources.mappings.len()
        + resources.rules.len()
        + resources.caches.len()
        + resources.secrets.len()
        + resources.skipped.len();
    assert_eq!(placed, total, "a resource was silently dropped");
    assert_eq!(
        resources.caches.len(),
        1,
        "the counter cache runs as a valkey-server"
    );
    assert_eq!(resources.functions.len(), 6);
    assert_eq!(resources.urls.len(), 2);
    assert_eq!(resources.mappings.len(), 2);
    let collect = resources
        .functions
        .iter()
        .find(|f| f.code_parameter.as_deref() == Some("CollectCodeKey"))
        .unwrap();
    assert_eq!(collect.code, "/bin/collect");
    assert_eq!(collect.env["TALLY_STREAM_NAME"], resources.streams[0].name);
    let realtime = resources
        .mappings
        .iter()
        .find(|m| m.config.source_arn.contains("/consumer/"))
        .expect("the critical lane reads a consumer");
    assert_eq!(realtime.config.source_arn, resources.consumers[0].arn);
    assert_eq!(realtime.config.parallelization_factor, 1);
    assert!(realtime.config.report_batch_item_failures);
    assert!(realtime
        .config
        .on_failure
        .as_deref()
        .unwrap()
        .starts_with("arn:aws:sqs:us-east-1:123456789012:"));
    assert_eq!(
        realtime.config.starting_position,
        StartingPosition::TrimHorizon
    );
    // The secrets are created locally, with generated values: the collect keys as a JSON map.
    assert!(!resources
        .skipped
        .iter()
        .any(|s| s.kind == "AWS::SecretsManager::Secret"));
    let keys = resources
        .secrets
        .iter()
        .find(|s| s.name.ends_with(tally_pipeline::COLLECT_KEYS_SECRET_SUFFIX))
        .expect("the collect keys secret");
    assert_eq!(
        keys.generate.template_key,
        Some((
            "{}".to_owned(),
            tally_pipeline::COLLECT_DEFAULT_KEY_ID.to_owned()
        ))
    );
    assert_eq!(
        tally_pipeline::COLLECT_KEYS_SECRET_SUFFIX,
        tally_localcloud_aws::aws::secretsmanager::COLLECT_KEYS_SUFFIX,
        "the load test finds the key by this suffix"
    );
    for kind in [
        "AWS::CloudWatch::Alarm",
        "AWS::SNS::Topic",
        "AWS::IAM::Role",
    ] {
        assert!(
            resources.skipped.iter().any(|s| s.kind == kind),
            "{kind} not reported"
        );
    }
    assert!(resources
        .skipped_report()
        .contains("no CloudWatch metrics locally"));
    // The metrics table on provisioned capacity: created with its throughput, auto scaling inert.
    assert_eq!(resources.tables.len(), 1);
    assert_eq!(resources.tables[0].create["BillingMode"], "PROVISIONED");
    assert_eq!(
        resources.tables[0].create["ProvisionedThroughput"],
        json!({ "ReadCapacityUnits": 3, "WriteCapacityUnits": 3 })
    );
    for kind in [
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
    ] {
        let inert: Vec<_> = resources
            .skipped
            .iter()
            .filter(|s| s.kind == kind)
            .collect();
        assert_eq!(inert.len(), 2, "{kind}: one per dimension");
        assert!(
            inert
                .iter()
                .all(|s| s.reason.starts_with("no auto scaling locally")),
            "{inert:?}"
        );
    }
    // The scaler's schedule fires locally.
    let scaler_rule = resources
        .rules
        .iter()
        .find(|r| r.expression == "rate(5 minutes)")
        .expect("the scaler's schedule rule");
    assert!(scaler_rule.enabled);
    assert!(scaler_rule
        .arn
        .starts_with("arn:aws:events:us-east-1:123456789012:rule/"));
    assert_eq!(scaler_rule.targets.len(), 1);
    assert!(resources
        .functions
        .iter()
        .any(|f| f.name == scaler_rule.targets[0].function));
    assert!(!resources
        .skipped
        .iter()
        .any(|s| s.kind == "AWS::Events::Rule"));
    assert!(
        resources.outputs.values().all(|v| !v.contains("Fn::")),
        "{:?}",
        resources.outputs
    );
}

/// The batch work runs at a lower CPU priority locally: the deferred lane (30 s batching window), the
/// compactor and the scaler (schedules); collect and query (URLs) and the realtime lane (no window) do not.
#[test]
fn batch_functions_run_in_the_background() {
    let stage = tally_pipeline::Stage::from_branch("dev");
    let template =
        tally_pipeline::synth_value(&stage, &tally_pipeline::PipelineOptions::default()).unwrap();
    let resources = load(&template, &ctx()).unwrap();
    let background = tally_localcloud::cloud::background_functions(&resources);
    let names: Vec<&str> = background.iter().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "tally-dev-compactor",
            "tally-dev-deferred",
            "tally-dev-scaler"
        ]
    );
}

#[test]
fn the_edge_and_the_budget_load_as_inert() {
    let options = tally_pipeline::PipelineOptions {
        budget_monthly_usd: Some(100),
        edge: Some(tally_pipeline::EdgeOptions::default()),
        ..tally_pipeline::PipelineOptions::default()
    };
    let template =
        tally_pipeline::synth_value(&tally_pipeline::Stage::from_branch("dev"), &options)
            .expect("synth with the edge and a budget");
    // As the running cloud does: every Function URL has its local listener's URL before the load.
    let mut ctx = ctx();
    for (id, resource) in template["Resources"].as_object().expect("resources") {
        if resource["Type"] == "AWS::Lambda::Url" {
            ctx.function_urls.insert(
                id.clone(),
                format!("http://127.0.0.1:9{}/", ctx.function_urls.len()),
            );
        }
    }
    let resources = load(&template, &ctx).expect("the local cloud loads the edge template");
    for (kind, reason) in [
        ("AWS::CloudFront::Distribution", "no edge locally"),
        ("AWS::WAFv2::WebACL", "no edge locally"),
        ("AWS::Budgets::Budget", "no billing locally"),
        ("AWS::SNS::TopicPolicy", "no SNS locally"),
    ] {
        let skipped: Vec<_> = resources
            .skipped
            .iter()
            .filter(|s| s.kind == kind)
            .collect();
        assert_eq!(skipped.len(), 1, "{kind}: {skipped:?}");
        assert!(skipped[0].reason.starts_with(reason), "{skipped:?}");
    }
    // The edge's URL is a host that never resolves; collect keeps its local URL.
    let edge = &resources.outputs["EdgeUrl"];
    assert!(
        edge.starts_with("https://edge-") && edge.ends_with(".edge.invalid/"),
        "{edge}"
    );
    assert_eq!(resources.urls.len(), 2);
    // collect still checks the origin header: it is given the local origin secret, which the local cloud
    // generates like any other (a local client reads it and sends it, as CloudFront would).
    let origin = resources
        .secrets
        .iter()
        .find(|s| {
            s.name
                .ends_with(tally_pipeline::COLLECT_ORIGIN_SECRET_SUFFIX)
        })
        .expect("the origin secret is created locally");
    let collect = resources
        .functions
        .iter()
        .find(|f| f.name.ends_with("-collect"))
        .expect("collect");
    let arn = &collect.env["TALLY_COLLECT_ORIGIN_SECRET_ARN"];
    assert!(
        arn.starts_with("arn:aws:secretsmanager:") && arn.contains(&origin.name),
        "{arn} names {}",
        origin.name
    );
    assert_eq!(resources.outputs["CollectOriginSecretArn"], *arn);
}

/// Resolves `value` as a property of a one-queue template and compares with `expect` (`Err` text: a part
/// of the error message).
fn check(value: Value, expect: Result<&str, &str>) {
    let template = json!({
        "Parameters": {"Stage": {"Type": "String", "Default": "dev"}, "CollectCodeKey": {"Type": "String"}},
        "Resources": {
            "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "q1"}},
            "S": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": {"Fn::Sub": "events-${Stage}"}, "ShardCount": 1}},
            "F": {"Type": "AWS::Lambda::Function", "Properties": {
                "FunctionName": "f", "Code": {"S3Bucket": "b", "S3Key": {"Ref": "CollectCodeKey"}},
                "Environment": {"Variables": {"X": value}}}},
        }
    });
    match (load(&template, &ctx()), expect) {
        (Ok(resources), Ok(expect)) => assert_eq!(resources.functions[0].env["X"], expect),
        (Err(error), Err(expect)) => {
            assert!(error.to_string().contains(expect), "{error} lacks {expect}")
        }
        (got, expect) => panic!("expected {expect:?}, got {got:?}"),
    }
}

#[test]
fn intrinsics() {
    check(json!("plain"), Ok("plain"));
    check(json!(7), Ok("7"));
    check(json!({"Ref": "Stage"}), Ok("dev"));
    check(json!({"Ref": "CollectCodeKey"}), Ok("/bin/collect"));
    check(json!({"Ref": "AWS::Region"}), Ok("us-east-1"));
    check(json!({"Ref": "AWS::AccountId"}), Ok("123456789012"));
    check(json!({"Ref": "AWS::StackName"}), Ok("tally-dev"));
    check(
        json!({"Ref": "Q"}),
        Ok("http://127.0.0.1:4566/123456789012/q1"),
    );
    check(json!({"Ref": "S"}), Ok("events-dev"));
    check(
        json!({"Fn::Select": [2, {"Fn::Split": ["/", "https://abc.lambda-url.us-east-1.on.aws/"]}]}),
        Ok("abc.lambda-url.us-east-1.on.aws"),
    );
    check(
        json!({"Fn::Select": [1, {"Fn::Split": [":", {"Fn::GetAtt": ["Q", "Arn"]}]}]}),
        Ok("aws"),
    );
    check(
        json!({"Fn::Split": ["", "a"]}),
        Err("Fn::Split takes [separator, string]"),
    );
    check(
        json!({"Fn::GetAtt": ["Q", "Arn"]}),
        Ok("arn:aws:sqs:us-east-1:123456789012:q1"),
    );
    check(
        json!({"Fn::GetAtt": "S.Arn"}),
        Ok("arn:aws:kinesis:us-east-1:123456789012:stream/events-dev"),
    );
    check(
        json!({"Fn::GetAtt": ["F", "Arn"]}),
        Ok("arn:aws:lambda:us-east-1:123456789012:function:f"),
    );
    check(
        json!({"Fn::Sub": "${AWS::Region}-${Stage}-${Q.QueueName}"}),
        Ok("us-east-1-dev-q1"),
    );
    check(
        json!({"Fn::Sub": ["${A}/${B}", {"A": "x", "B": {"Ref": "Stage"}}]}),
        Ok("x/dev"),
    );
    check(
        json!({"Fn::Sub": "${!Literal} ${Stage}"}),
        Ok("${Literal} dev"),
    );
    check(json!({"Fn::Sub": "no vars"}), Ok("no vars"));
    check(
        json!({"Fn::Join": ["-", ["a", {"Ref": "Stage"}, "c"]]}),
        Ok("a-dev-c"),
    );
    check(json!({"Fn::Join": ["", []]}), Ok(""));
    check(
        json!({"Ref": "Nope"}),
        Err("Ref to Nope, which is neither a parameter nor a resource"),
    );
    check(json!({"Ref": 3}), Err("Ref takes a name"));
    check(
        json!({"Fn::GetAtt": ["Q", "Colour"]}),
        Err("Fn::GetAtt Q.Colour: the local cloud knows Arn, QueueName, QueueUrl"),
    );
    check(
        json!({"Fn::GetAtt": ["Ghost", "Arn"]}),
        Err("Ghost, which is not a resource"),
    );
    check(
        json!({"Fn::GetAtt": "nodot"}),
        Err("Fn::GetAtt takes [resource, attribute]"),
    );
    check(json!({"Fn::Sub": "${Stage"}), Err("unclosed ${"));
    check(json!({"Fn::Sub": 5}), Err("Fn::Sub takes a string"));
    check(json!({"Fn::Join": ["-", "notalist"]}), Err("not a list"));
    check(
        json!({"Fn::Join": "x"}),
        Err("Fn::Join takes [separator, [values]]"),
    );
    check(
        json!({"Fn::If": ["C", "a", "b"]}),
        Err("intrinsic Fn::If is not supported by the local cloud"),
    );
    check(json!({"Fn::Select": [0, ["a"]]}), Ok("a"));
    check(
        json!({"Fn::Select": ["1", ["a", {"Ref": "Stage"}]]}),
        Ok("dev"),
    );
    check(
        json!({"Fn::Select": [1, {"Fn::GetAZs": ""}]}),
        Ok("us-east-1b"),
    );
    check(
        json!({"Fn::Select": [0, {"Fn::GetAZs": {"Ref": "AWS::Region"}}]}),
        Ok("us-east-1a"),
    );
    check(
        json!({"Fn::Select": [3, {"Fn::GetAZs": ""}]}),
        Err("Fn::Select index 3 is out of range for a list of 3"),
    );
    check(
        json!({"Fn::Select": [-1, ["a"]]}),
        Err("Fn::Select's index must be a whole number"),
    );
    check(
        json!({"Fn::Select": ["1e3", ["a"]]}),
        Err("Fn::Select's index must be a whole number"),
    );
    check(
        json!({"Fn::Select": [0, "a"]}),
        Err("Fn::Select takes [index, [values]]"),
    );
    check(
        json!({"Fn::GetAZs": "eu-west-1"}),
        Err("Fn::GetAZs takes \"\" or the stack's region us-east-1"),
    );
    check(
        json!({"Fn::Join": ["-", [{"a": 1}]]}),
        Err("Fn::Join value is not a string"),
    );
}

fn load_err(template: Value) -> String {
    match load(&template, &ctx()) {
        Ok(resources) => panic!("loaded: {resources:?}"),
        Err(error) => error.to_string(),
    }
}

fn one(kind: &str, props: Value) -> Value {
    json!({"Resources": {"R": {"Type": kind, "Properties": props}}})
}

#[test]
fn hostile_templates_are_refused_with_the_logical_id() {
    let check = |template: Value, expect: &str| {
        let message = load_err(template);
        assert!(message.contains(expect), "{message} lacks {expect}");
    };
    check(json!({}), "the template has no Resources object");
    check(json!({"Resources": []}), "no Resources object");
    check(
        json!({"Resources": {"R": {}}}),
        "template R: resource has no Type",
    );
    check(
        json!({"Resources": {"R": {"Type": "AWS::SQS::Queue", "Condition": "C"}}}),
        "conditional resources",
    );
    check(
        json!({"Parameters": 3, "Resources": {}}),
        "Parameters is not an object",
    );
    let function = |props: Value| {
        let mut base = json!({"FunctionName": "f", "Code": {"S3Key": "/bin/f"}});
        base.as_object_mut()
            .unwrap()
            .extend(props.as_object().unwrap().clone());
        one("AWS::Lambda::Function", base)
    };
    check(
        function(json!({"MemorySize": 64})),
        "R.Properties.MemorySize: 64 is out of range 128..=10240",
    );
    check(
        function(json!({"Timeout": "abc"})),
        "R.Properties.Timeout: expected an integer",
    );
    check(
        function(json!({"Timeout": 901})),
        "901 is out of range 1..=900",
    );
    check(
        function(json!({"ReservedConcurrentExecutions": -1})),
        "ReservedConcurrentExecutions",
    );
    check(
        function(json!({"Environment": {"Variables": [1]}})),
        "Environment.Variables: not an object",
    );
    check(
        one("AWS::Lambda::Function", json!({"Code": {"ImageUri": "x"}})),
        "R.Properties.Code",
    );
    check(
        one("AWS::Kinesis::Stream", json!({"ShardCount": 0})),
        "R.Properties.ShardCount: 0 is out of range 1..=500",
    );
    let mapping = |props: Value| {
        let mut base = json!({"FunctionName": "f", "EventSourceArn": "arn:aws:kinesis:us-east-1:123456789012:stream/s", "StartingPosition": "LATEST"});
        base.as_object_mut()
            .unwrap()
            .extend(props.as_object().unwrap().clone());
        json!({"Resources": {"R": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": base},
                              "F": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "f", "Code": {"S3Key": "/bin/f"}}}}})
    };
    check(
        mapping(json!({"BatchSize": 0})),
        "R.Properties.BatchSize: 0 is out of range 1..=10000",
    );
    check(
        mapping(json!({"BatchSize": "many"})),
        "BatchSize: expected an integer",
    );
    check(
        mapping(json!({"StartingPosition": "NOW"})),
        "is not TRIM_HORIZON, LATEST or AT_TIMESTAMP",
    );
    check(
        mapping(json!({"StartingPosition": null})),
        "StartingPosition",
    );
    check(
        mapping(json!({"StartingPosition": "AT_TIMESTAMP"})),
        "needs StartingPositionTimestamp",
    );
    check(
        mapping(json!({"ParallelizationFactor": 11})),
        "ParallelizationFactor: 11 is out of range 1..=10",
    );
    check(
        mapping(json!({"MaximumRetryAttempts": -2})),
        "MaximumRetryAttempts: -2 is out of range -1..=10000",
    );
    check(
        mapping(json!({"MaximumRecordAgeInSeconds": 30})),
        "MaximumRecordAgeInSeconds: 30 is out of range: use -1 or 60..=604800",
    );
    check(
        mapping(json!({"TumblingWindowInSeconds": 901})),
        "TumblingWindowInSeconds",
    );
    check(
        mapping(json!({"MaximumBatchingWindowInSeconds": 301})),
        "MaximumBatchingWindowInSeconds",
    );
    check(
        mapping(json!({"FunctionName": "other"})),
        "FunctionName other is not a function of this template",
    );
    check(mapping(json!({"EventSourceArn": null})), "EventSourceArn");
    check(
        mapping(
            json!({"DestinationConfig": {"OnFailure": {"Destination": "arn:aws:sns:us-east-1:1:t"}}}),
        ),
        "not an SQS queue ARN",
    );
    check(
        json!({"Resources": {"U": {"Type": "AWS::Lambda::Url", "Properties": {"TargetFunctionArn": "arn:aws:lambda:us-east-1:1:function:ghost"}}}}),
        "ghost, which is not a function",
    );
}

#[test]
fn unknown_resource_types_are_reported_not_ignored() {
    let resources: Resources = load(&json!({"Resources": {"Odd": {"Type": "AWS::EC2::Instance"}, "Alarm1": {"Type": "AWS::CloudWatch::Alarm"}}}), &ctx()).unwrap();
    assert_eq!(resources.skipped.len(), 2);
    let report = resources.skipped_report();
    assert!(report.contains("Odd (AWS::EC2::Instance): resource type AWS::EC2::Instance is not supported by the local cloud"), "{report}");
    assert!(
        report.contains("Alarm1 (AWS::CloudWatch::Alarm)"),
        "{report}"
    );
}

/// A template with function `F` and a rule `Tick` with `props`.
fn with_rule(props: Value) -> Value {
    json!({"Resources": {
        "F": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "f", "Code": {"S3Bucket": "b", "S3Key": "/bin/f"}}},
        "Tick": {"Type": "AWS::Events::Rule", "Properties": props},
    }})
}

fn target() -> Value {
    json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T0"})
}

#[test]
fn schedule_rules_load_with_their_targets() {
    let resources = load(
        &with_rule(json!({"Name": "tick", "ScheduleExpression": "cron(0/5 * * * ? *)",
            "Targets": [target(), {"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T1", "Input": "{\"action\": \"compact\"}"},
                        {"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T2", "InputPath": "$.detail"}]})),
        &ctx(),
    )
    .unwrap();
    let rule = &resources.rules[0];
    assert_eq!(rule.id, "Tick");
    assert_eq!(rule.arn, "arn:aws:events:us-east-1:123456789012:rule/tick");
    assert!(rule.enabled);
    let inputs: Vec<_> = rule
        .targets
        .iter()
        .map(|t| (t.function.as_str(), &t.input))
        .collect();
    use tally_localcloud::template::TargetInput;
    assert_eq!(
        inputs,
        [
            ("f", &TargetInput::Event),
            (
                "f",
                &TargetInput::Constant("{\"action\": \"compact\"}".into())
            ),
            ("f", &TargetInput::Path(vec!["detail".into()])),
        ]
    );
    let disabled = load(
        &with_rule(json!({"ScheduleExpression": "rate(1 day)", "State": "DISABLED", "Targets": [target()]})),
        &ctx(),
    )
    .unwrap();
    assert!(!disabled.rules[0].enabled);
    // An event pattern rule has no bus to match locally: reported, not run.
    let pattern = load(
        &with_rule(json!({"EventPattern": {"source": ["aws.s3"]}})),
        &ctx(),
    )
    .unwrap();
    assert!(pattern.rules.is_empty());
    assert!(pattern
        .skipped_report()
        .contains("Tick (AWS::Events::Rule): no event bus locally"));
}

#[test]
fn malformed_schedule_rules_are_refused_at_deploy_with_the_logical_id() {
    let check = |props: Value, expect: &str| {
        let message = load_err(with_rule(props));
        assert!(message.contains(expect), "{message} lacks {expect}");
    };
    let expression = |text: &str, expect: &str| {
        check(
            json!({"ScheduleExpression": text, "Targets": [target()]}),
            expect,
        );
    };
    expression(
        "rate(0 minutes)",
        "template Tick.Properties.ScheduleExpression: rate value must be positive",
    );
    expression(
        "rate(1 minutes)",
        "Tick.Properties.ScheduleExpression: rate(1 minutes): the unit must be singular",
    );
    expression("rate(2 minute)", "Tick.Properties.ScheduleExpression");
    expression(
        "cron(0 12 * * ?)",
        "Tick.Properties.ScheduleExpression: cron(0 12 * * ?) has 5 fields",
    );
    expression(
        "cron(0 12 ? * ? *)",
        "Tick.Properties.ScheduleExpression: day-of-month and day-of-week are both `?`",
    );
    expression(
        "cron(0 25 * * ? *)",
        "Tick.Properties.ScheduleExpression: hours value 25 is out of range 0-23",
    );
    expression(
        "every minute",
        "Tick.Properties.ScheduleExpression: \"every minute\" is neither",
    );
    check(
        json!({"ScheduleExpression": 5}),
        "Tick.Properties.ScheduleExpression: 5 is not a string",
    );
    check(
        json!({"Targets": [target()]}),
        "template Tick: a rule needs a ScheduleExpression or an EventPattern",
    );
    check(
        json!({"ScheduleExpression": "rate(1 day)", "State": "PAUSED"}),
        "Tick.Properties.State: Some(\"PAUSED\") is not a schedule rule's state",
    );
    check(
        json!({"ScheduleExpression": "rate(1 day)", "EventBusName": "custom"}),
        "Tick.Properties.EventBusName",
    );
    check(
        json!({"ScheduleExpression": "rate(1 day)", "Targets": {}}),
        "Tick.Properties.Targets: {} is not a list",
    );
    check(
        json!({"ScheduleExpression": "rate(1 day)", "Targets": vec![target(); 6]}),
        "at most 5 targets",
    );
    let with_target = |t: Value, expect: &str| {
        check(
            json!({"ScheduleExpression": "rate(1 day)", "Targets": [t]}),
            expect,
        );
    };
    with_target(json!({"Arn": "arn:aws:sqs:us-east-1:123456789012:q", "Id": "Q"}), "Tick.Properties.Targets[0].Arn: arn:aws:sqs:us-east-1:123456789012:q is not a Lambda function");
    with_target(json!({"Arn": "arn:aws:lambda:us-east-1:123456789012:function:elsewhere", "Id": "E"}), "Tick.Properties.Targets[0].Arn: names the function elsewhere, which is not a function of this template");
    with_target(
        json!({"Id": "T"}),
        "Tick.Properties.Targets[0]: a target needs Arn and Id",
    );
    with_target(
        json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T", "Input": "{not json"}),
        "Tick.Properties.Targets[0].Input: is not valid JSON text",
    );
    with_target(
        json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T", "Input": "{}", "InputPath": "$"}),
        "Input and InputPath exclude each other",
    );
    with_target(json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T", "InputPath": "$.a[0]"}), "Tick.Properties.Targets[0].InputPath: \"$.a[0]\": the local cloud runs InputPath `$` or `$.key.key`");
    with_target(
        json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T", "InputTransformer": {}}),
        "Tick.Properties.Targets[0].InputTransformer: is not run by the local cloud",
    );
    with_target(
        json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T", "DeadLetterConfig": {"Arn": "x"}}),
        "Targets[0].DeadLetterConfig: is not run by the local cloud",
    );
    with_target(
        json!({"Arn": {"Fn::GetAtt": ["F", "Arn"]}, "Id": "T", "EcsParameters": {}}),
        "Targets[0].EcsParameters: is not run by the local cloud",
    );
}
