//! Grants derive exactly the actions on exactly the resources.

use serde_json::{json, Value};
use tally_constructs::dynamodb_items::ItemAction;
use tally_constructs::kinesis::{Stream, StreamProps};
use tally_constructs::s3::{Bucket, BucketProps};
use tally_constructs::secrets::{Secret, SecretProps};
use tally_constructs::sqs::{Queue, QueueProps};
use tally_constructs::Stack;

use super::{function, synth, table};

/// The policy statements of the role of function `id`, without its own log statement.
fn statements(template: &Value, id: &str) -> Vec<Value> {
    let resources = template["Resources"].as_object().expect("resources");
    let function = resources
        .iter()
        .find(|(k, v)| k.starts_with(id) && v["Type"] == "AWS::Lambda::Function")
        .expect("function")
        .1;
    let role = function["Properties"]["Role"]["Fn::GetAtt"][0]
        .as_str()
        .expect("role ref");
    let all = resources[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    all.into_iter()
        .filter(|s| !s["Action"].to_string().contains("logs:"))
        .collect()
}

fn check(
    grant: impl FnOnce(&Stack, &tally_constructs::lambda::Function) -> String,
    expect: impl FnOnce(&str) -> Value,
) {
    let stack = Stack::new("app");
    let f = function(&stack, &stack.root(), "Fn");
    let target = grant(&stack, &f);
    let template = synth(&stack);
    assert_eq!(Value::Array(statements(&template, "Fn")), expect(&target));
}

#[test]
fn stream_grants() {
    check(
        |s, f| {
            let events = Stream::new(&s.root(), "Events", StreamProps::default());
            events.grant_write(f);
            events.node().logical_id().to_owned()
        },
        |id| json!([{"Effect": "Allow", "Action": "kinesis:PutRecords", "Resource": {"Fn::GetAtt": [id, "Arn"]}}]),
    );
}

#[test]
fn table_grants_merge_into_one_statement() {
    check(
        |s, f| {
            let t = table(s);
            t.grant_items(f, &[ItemAction::GetItem, ItemAction::Query]);
            t.grant_items(f, &[ItemAction::PutItem, ItemAction::GetItem]);
            t.node().logical_id().to_owned()
        },
        |id| {
            json!([{"Effect": "Allow", "Action": [
                "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"
            ], "Resource": {"Fn::GetAtt": [id, "Arn"]}}])
        },
    );
}

/// A table grants only the item actions tally's functions call: reading a whole table (`Scan`), deleting
/// items or batched writes (which skip conditions) cannot be granted at all; batched reads by key can.
#[test]
fn table_actions_are_only_what_the_pipeline_calls() {
    let iam: Vec<&str> = ItemAction::ALL.iter().map(|a| a.iam()).collect();
    assert_eq!(
        iam,
        [
            "dynamodb:GetItem",
            "dynamodb:Query",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem"
        ]
    );
    for forbidden in [
        "Scan",
        "DeleteItem",
        "BatchWrite",
        "Transact",
        "DescribeTable",
    ] {
        assert!(
            iam.iter().all(|a| !a.contains(forbidden)),
            "{forbidden} must not be grantable: {iam:?}"
        );
    }
}

#[test]
fn table_item_grants_are_exactly_the_actions_named() {
    check(
        |s, f| {
            let t = table(s);
            t.grant_items(
                f,
                &[ItemAction::Query, ItemAction::GetItem, ItemAction::Query],
            );
            t.node().logical_id().to_owned()
        },
        |id| {
            json!([{"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:Query"],
                "Resource": {"Fn::GetAtt": [id, "Arn"]}}])
        },
    );
}

#[test]
fn bucket_put_prefix_grants_put_under_the_prefix_only() {
    check(
        |s, f| {
            let b = Bucket::new(&s.root(), "B", BucketProps::default());
            b.grant_put_prefix(f, "events/");
            b.node().logical_id().to_owned()
        },
        |id| json!([{"Effect": "Allow", "Action": "s3:PutObject", "Resource": {"Fn::Sub": format!("${{{id}.Arn}}/events/*")}}]),
    );
}

#[test]
fn bucket_grants_split_objects_and_bucket() {
    check(
        |s, f| {
            let b = Bucket::new(&s.root(), "B", BucketProps::default());
            b.grant_write(f);
            b.node().logical_id().to_owned()
        },
        |id| json!([{"Effect": "Allow", "Action": ["s3:AbortMultipartUpload", "s3:PutObject"], "Resource": {"Fn::Sub": format!("${{{id}.Arn}}/*")}}]),
    );
    check(
        |s, f| {
            let b = Bucket::new(&s.root(), "B", BucketProps::default());
            b.grant_read(f);
            b.node().logical_id().to_owned()
        },
        |id| {
            json!([
                {"Effect": "Allow", "Action": "s3:GetObject", "Resource": {"Fn::Sub": format!("${{{id}.Arn}}/*")}},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": {"Fn::GetAtt": [id, "Arn"]}},
            ])
        },
    );
}

#[test]
fn queue_and_secret_grants() {
    check(
        |s, f| {
            let q = Queue::new(&s.root(), "Q", QueueProps::default());
            q.grant_send(f);
            q.node().logical_id().to_owned()
        },
        |id| json!([{"Effect": "Allow", "Action": ["sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sqs:SendMessage"], "Resource": {"Fn::GetAtt": [id, "Arn"]}}]),
    );
    check(
        |s, f| {
            let secret = Secret::new(
                &s.root(),
                "S",
                SecretProps {
                    name: None,
                    description: "d".into(),
                    length: 32,
                },
            );
            secret.grant_read(f);
            secret.node().logical_id().to_owned()
        },
        |id| json!([{"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": {"Ref": id}}]),
    );
}

#[test]
fn a_function_without_grants_may_only_log() {
    let stack = Stack::new("app");
    function(&stack, &stack.root(), "Fn");
    let template = synth(&stack);
    assert_eq!(statements(&template, "Fn"), Vec::<Value>::new());
    let text = template.to_string();
    assert!(text.contains("logs:PutLogEvents"));
}
