//! Pure comparison of two CloudFormation templates (and their parameter values).
//!
//! CloudFormation's change set is the authority on what a deploy does, but it does not always say *why*
//! (no `Replacement`, no `Details` on some endpoints, nothing at all for a parameter-only change). This module
//! derives the same picture from the templates themselves: which resources are added, removed, modified (and
//! which properties), and which modifications replace the resource, from a table of replacement-causing
//! properties taken from the CloudFormation resource reference ("Update requires: Replacement").

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::Error;

/// What happens to one resource, as far as the templates tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDiff {
    pub logical_id: String,
    pub resource_type: String,
    pub kind: DiffKind,
    /// Changed property paths (`Code.S3Key`), sorted; empty for added and removed resources.
    pub properties: Vec<String>,
    /// Parameters whose new value changes this resource (`CollectCodeKey`).
    pub parameters: Vec<String>,
    /// IAM policy statements granted (`+ Allow kinesis:PutRecords on …`) or taken away (`- …`) by the change.
    pub statements: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DiffKind {
    Added,
    Modified,
    Replaced,
    Removed,
}

/// Parses a template and checks the shape this crate relies on: an object with a `Resources` object whose
/// entries each have a string `Type`.
pub fn parse(text: &str) -> Result<Value, Error> {
    let template: Value = serde_json::from_str(text)
        .map_err(|error| Error::Template(format!("not valid json: {error}")))?;
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return Err(Error::Template(
            "no `Resources` object at the top level".to_owned(),
        ));
    };
    for (id, resource) in resources {
        if resource.get("Type").and_then(Value::as_str).is_none() {
            return Err(Error::Template(format!(
                "resource `{id}` has no string `Type`"
            )));
        }
    }
    Ok(template)
}

/// Names of the parameters the template declares.
pub fn declared_parameters(template: &Value) -> BTreeSet<String> {
    template
        .get("Parameters")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Compares the deployed template and values with the new ones. `old` is `None` for a stack that does not exist.
pub fn diff(
    old: Option<(&Value, &BTreeMap<String, String>)>,
    new: (&Value, &BTreeMap<String, String>),
) -> Vec<ResourceDiff> {
    let empty = serde_json::Map::new();
    let no_params = BTreeMap::new();
    let (old_template, old_params) = match old {
        Some((t, p)) => (Some(t), p),
        None => (None, &no_params),
    };
    let old_resources = old_template
        .and_then(|t| t.get("Resources"))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let new_resources = new
        .0
        .get("Resources")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let changed_params: BTreeSet<&str> = new
        .1
        .iter()
        .filter(|(k, v)| old_params.get(*k) != Some(*v))
        .map(|(k, _)| k.as_str())
        .chain(
            old_params
                .keys()
                .filter(|k| !new.1.contains_key(*k))
                .map(String::as_str),
        )
        .collect();

    let mut out = Vec::new();
    for (id, resource) in new_resources {
        let ty = type_of(resource);
        let Some(before) = old_resources.get(id) else {
            out.push(ResourceDiff::new(id, ty, DiffKind::Added));
            continue;
        };
        if type_of(before) != ty {
            let mut d = ResourceDiff::new(id, ty, DiffKind::Replaced);
            d.properties.push("Type".to_owned());
            out.push(d);
            continue;
        }
        let mut properties = BTreeSet::new();
        let null = Value::Null;
        changed_paths(
            "",
            before.get("Properties").unwrap_or(&null),
            resource.get("Properties").unwrap_or(&null),
            &mut properties,
        );
        for attribute in [
            "DeletionPolicy",
            "UpdateReplacePolicy",
            "DependsOn",
            "Condition",
        ] {
            if before.get(attribute) != resource.get(attribute) {
                properties.insert(attribute.to_owned());
            }
        }
        let mut parameters = BTreeSet::new();
        if let Some(props) = resource.get("Properties") {
            parameter_uses("", props, &changed_params, &mut |path, param| {
                properties.insert(path);
                parameters.insert(param.to_owned());
            });
        }
        if properties.is_empty() {
            continue;
        }
        let replaced = properties.iter().any(|p| causes_replacement(ty, p));
        let mut d = ResourceDiff::new(
            id,
            ty,
            if replaced {
                DiffKind::Replaced
            } else {
                DiffKind::Modified
            },
        );
        d.properties = properties.into_iter().collect();
        d.parameters = parameters.into_iter().collect();
        out.push(d);
    }
    for (id, resource) in old_resources {
        if !new_resources.contains_key(id) {
            out.push(ResourceDiff::new(id, type_of(resource), DiffKind::Removed));
        }
    }
    for d in &mut out {
        let before = statements(old_resources.get(&d.logical_id));
        let after = statements(new_resources.get(&d.logical_id));
        d.statements = after
            .difference(&before)
            .map(|s| format!("+ {s}"))
            .chain(before.difference(&after).map(|s| format!("- {s}")))
            .collect();
    }
    out.sort_by(|a, b| (a.kind, &a.logical_id).cmp(&(b.kind, &b.logical_id)));
    out
}

/// Every IAM policy statement inside a resource (`Policies`, `PolicyDocument`, …), one line each:
/// `Allow kinesis:PutRecord,kinesis:PutRecords on {"Fn::GetAtt":["Events","Arn"]}`.
fn statements(resource: Option<&Value>) -> BTreeSet<String> {
    fn walk(value: &Value, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                if let Some(statement) = map.get("Statement") {
                    let list = match statement {
                        Value::Array(items) => items.iter().collect(),
                        other => vec![other],
                    };
                    for s in list {
                        let field = |key: &str| match s.get(key) {
                            Some(Value::String(v)) => v.clone(),
                            Some(Value::Array(items)) => items
                                .iter()
                                .map(|i| {
                                    i.as_str()
                                        .map(str::to_owned)
                                        .unwrap_or_else(|| i.to_string())
                                })
                                .collect::<Vec<_>>()
                                .join(","),
                            Some(other) => other.to_string(),
                            None => String::new(),
                        };
                        let mut line = format!("{} {}", field("Effect"), field("Action"));
                        if s.get("Resource").is_some() {
                            line += &format!(" on {}", field("Resource"));
                        }
                        if s.get("Principal").is_some() {
                            line += &format!(" for {}", field("Principal"));
                        }
                        out.insert(line);
                    }
                }
                map.values()
                    .filter(|_| !map.contains_key("Statement"))
                    .for_each(|v| walk(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    if let Some(props) = resource.and_then(|r| r.get("Properties")) {
        walk(props, &mut out);
    }
    out
}

impl ResourceDiff {
    fn new(id: &str, ty: &str, kind: DiffKind) -> ResourceDiff {
        ResourceDiff {
            logical_id: id.to_owned(),
            resource_type: ty.to_owned(),
            kind,
            properties: Vec::new(),
            parameters: Vec::new(),
            statements: Vec::new(),
        }
    }
}

fn type_of(resource: &Value) -> &str {
    resource.get("Type").and_then(Value::as_str).unwrap_or("")
}

/// Leaf paths where `a` and `b` differ. Objects are walked; arrays and scalars compare whole.
fn changed_paths(prefix: &str, a: &Value, b: &Value, out: &mut BTreeSet<String>) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) if !is_intrinsic(a) && !is_intrinsic(b) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            let null = Value::Null;
            for key in keys {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                changed_paths(
                    &path,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => {
            out.insert(if prefix.is_empty() {
                "Properties".to_owned()
            } else {
                prefix.to_owned()
            });
        }
        _ => {}
    }
}

/// `{"Ref": …}`, `{"Fn::GetAtt": …}`, `{"Fn::Sub": …}` …: a value, not a nested property object.
fn is_intrinsic(map: &serde_json::Map<String, Value>) -> bool {
    map.len() == 1
        && map
            .keys()
            .all(|k| k == "Ref" || k == "Condition" || k.starts_with("Fn::"))
}

/// Calls `found(path, parameter)` for every place in `value` that reads one of `params`
/// (`{"Ref": "P"}` or `${P}` inside `Fn::Sub`).
fn parameter_uses(
    prefix: &str,
    value: &Value,
    params: &BTreeSet<&str>,
    found: &mut dyn FnMut(String, &str),
) {
    let here = || {
        if prefix.is_empty() {
            "Properties".to_owned()
        } else {
            prefix.to_owned()
        }
    };
    match value {
        Value::Object(map) => {
            if let Some(Value::String(name)) = map.get("Ref") {
                if params.contains(name.as_str()) {
                    found(here(), name);
                }
                return;
            }
            if let Some(sub) = map.get("Fn::Sub") {
                let text = match sub {
                    Value::String(s) => Some(s.as_str()),
                    Value::Array(parts) => parts.first().and_then(Value::as_str),
                    _ => None,
                };
                if let Some(text) = text {
                    for p in params {
                        if text.contains(&format!("${{{p}}}")) {
                            found(here(), p);
                        }
                    }
                }
            }
            let intrinsic = is_intrinsic(map);
            for (key, inner) in map {
                let path = if intrinsic {
                    here()
                } else if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                parameter_uses(&path, inner, params, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                parameter_uses(&here(), item, params, found);
            }
        }
        _ => {}
    }
}

/// Whether changing `property` (a path, compared by its first segment) of a resource of type `ty` replaces the
/// resource. From the CloudFormation resource reference; unknown types are treated as not replaced here, and the
/// change set (when it carries `Replacement`) has the last word.
pub fn causes_replacement(ty: &str, property: &str) -> bool {
    if property == "Type" {
        return true;
    }
    let top = property.split('.').next().unwrap_or(property);
    let replacing: &[&str] = match ty {
        "AWS::Kinesis::Stream" => &["Name"],
        "AWS::Kinesis::StreamConsumer" => &["ConsumerName", "StreamARN"],
        "AWS::DynamoDB::Table" => &["TableName", "KeySchema"],
        "AWS::S3::Bucket" => &["BucketName"],
        "AWS::SQS::Queue" => &["QueueName", "FifoQueue"],
        "AWS::Lambda::Function" => &["FunctionName"],
        "AWS::Lambda::EventSourceMapping" => &[
            "EventSourceArn",
            "StartingPosition",
            "StartingPositionTimestamp",
        ],
        "AWS::Lambda::Url" => &["TargetFunctionArn", "Qualifier"],
        "AWS::Lambda::Permission" => &[
            "Action",
            "FunctionName",
            "Principal",
            "SourceArn",
            "SourceAccount",
            "FunctionUrlAuthType",
            "EventSourceToken",
            "PrincipalOrgID",
        ],
        "AWS::Lambda::EventInvokeConfig" => &["FunctionName", "Qualifier"],
        "AWS::IAM::Role" => &["RoleName", "Path"],
        "AWS::Logs::LogGroup" => &["LogGroupName"],
        "AWS::SecretsManager::Secret" => &["Name"],
        "AWS::SNS::Topic" => &["TopicName", "FifoTopic"],
        "AWS::SNS::Subscription" => &["Endpoint", "Protocol", "TopicArn"],
        "AWS::CloudWatch::Alarm" => &["AlarmName"],
        _ => &[],
    };
    replacing.contains(&top)
}

/// The `DeletionPolicy` / `UpdateReplacePolicy` values that keep a resource (and its data) when CloudFormation
/// deletes or replaces it.
const KEEPING_POLICIES: [&str; 3] = ["Retain", "RetainExceptOnCreate", "Snapshot"];

/// Whether `resource` keeps its data when the stack deletes it (`DeletionPolicy: Retain`).
pub fn is_retained(resource: &Value) -> bool {
    matches!(
        resource.get("DeletionPolicy").and_then(Value::as_str),
        Some("Retain" | "RetainExceptOnCreate")
    )
}

/// Logical ids of the resources `template` retains on stack deletion.
pub fn retained(template: &Value) -> BTreeSet<String> {
    template
        .get("Resources")
        .and_then(Value::as_object)
        .map(|resources| {
            resources
                .iter()
                .filter(|(_, r)| is_retained(r))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Resources of `old` whose `DeletionPolicy` or `UpdateReplacePolicy` kept them and no longer does in `new`
/// (changed to `Delete`, or removed, which means `Delete`), one line each:
/// `Events (AWS::Kinesis::Stream): DeletionPolicy Retain → Delete`. A resource removed from the template is not
/// listed here: CloudFormation removes it under its *old* policy, which keeps it.
pub fn retention_lost(old: &Value, new: &Value) -> Vec<String> {
    let empty = serde_json::Map::new();
    let resources = |t: &Value| t.get("Resources").and_then(Value::as_object).cloned();
    let old_resources = resources(old).unwrap_or_else(|| empty.clone());
    let new_resources = resources(new).unwrap_or(empty);
    let mut out = Vec::new();
    for (id, before) in &old_resources {
        let Some(after) = new_resources.get(id) else {
            continue;
        };
        for attribute in ["DeletionPolicy", "UpdateReplacePolicy"] {
            let was = before.get(attribute).and_then(Value::as_str);
            let now = after.get(attribute).and_then(Value::as_str);
            let keeps = |p: Option<&str>| p.is_some_and(|p| KEEPING_POLICIES.contains(&p));
            if keeps(was) && !keeps(now) {
                out.push(format!(
                    "{id} ({}): {attribute} {} → {}",
                    type_of(after),
                    was.unwrap_or_default(),
                    now.unwrap_or("Delete (removed)")
                ));
            }
        }
    }
    out
}

/// Resource types whose replacement or removal loses data: the stream, the metrics table, the archive bucket.
pub fn is_stateful(ty: &str) -> bool {
    matches!(
        ty,
        "AWS::Kinesis::Stream" | "AWS::DynamoDB::Table" | "AWS::S3::Bucket"
    )
}

/// Resource types and properties that change who may do what.
pub fn touches_iam(ty: &str, properties: &[String]) -> bool {
    ty.starts_with("AWS::IAM::")
        || ty == "AWS::Lambda::Permission"
        || ty.ends_with("Policy")
        || properties.iter().any(|p| {
            let top = p.split('.').next().unwrap_or(p);
            matches!(
                top,
                "Policies"
                    | "PolicyDocument"
                    | "AssumeRolePolicyDocument"
                    | "ManagedPolicyArns"
                    | "Role"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// Renders the diff as one line per resource: `kind id [props] (params)`.
    fn check(
        old: Value,
        old_p: &[(&str, &str)],
        new: Value,
        new_p: &[(&str, &str)],
        expect: &[&str],
    ) {
        let (op, np) = (params(old_p), params(new_p));
        let got: Vec<String> = diff(Some((&old, &op)), (&new, &np))
            .iter()
            .map(|d| {
                let mut line = format!("{:?} {}", d.kind, d.logical_id);
                if !d.properties.is_empty() {
                    line += &format!(" [{}]", d.properties.join(","));
                }
                if !d.parameters.is_empty() {
                    line += &format!(" ({})", d.parameters.join(","));
                }
                line
            })
            .collect();
        assert_eq!(got, expect);
    }

    fn t(resources: Value) -> Value {
        json!({ "Resources": resources })
    }

    #[test]
    fn identical_templates_have_no_diff() {
        let a = t(json!({"S": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "s"}}}));
        check(a.clone(), &[("P", "1")], a, &[("P", "1")], &[]);
    }

    #[test]
    fn added_removed_modified_replaced() {
        check(
            t(json!({
                "Gone": {"Type": "AWS::SQS::Queue"},
                "S": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "a", "RetentionPeriodHours": 24}},
                "T": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "a", "RetentionPeriodHours": 24}}
            })),
            &[],
            t(json!({
                "New": {"Type": "AWS::SQS::Queue"},
                "S": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "a", "RetentionPeriodHours": 48}},
                "T": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "b", "RetentionPeriodHours": 24}}
            })),
            &[],
            &[
                "Added New",
                "Modified S [RetentionPeriodHours]",
                "Replaced T [Name]",
                "Removed Gone",
            ],
        );
    }

    #[test]
    fn nested_paths_and_type_change() {
        check(
            t(json!({
                "F": {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": {"A": "1", "B": "2"}}}},
                "X": {"Type": "AWS::SQS::Queue"}
            })),
            &[],
            t(json!({
                "F": {"Type": "AWS::Lambda::Function", "Properties": {"Environment": {"Variables": {"A": "1", "C": "2"}}}},
                "X": {"Type": "AWS::SNS::Topic"}
            })),
            &[],
            &[
                "Modified F [Environment.Variables.B,Environment.Variables.C]",
                "Replaced X [Type]",
            ],
        );
    }

    #[test]
    fn parameter_only_change_finds_the_resources_that_read_it() {
        let template = t(json!({
            "Collect": {"Type": "AWS::Lambda::Function", "Properties": {
                "Code": {"S3Bucket": {"Ref": "AssetsBucket"}, "S3Key": {"Ref": "CollectCodeKey"}}}},
            "Query": {"Type": "AWS::Lambda::Function", "Properties": {
                "Code": {"S3Bucket": {"Ref": "AssetsBucket"}, "S3Key": {"Ref": "QueryCodeKey"}}}},
            "Sub": {"Type": "AWS::SSM::Parameter", "Properties": {"Value": {"Fn::Sub": "key ${QueryCodeKey}"}}}
        }));
        check(
            template.clone(),
            &[
                ("AssetsBucket", "b"),
                ("CollectCodeKey", "k1"),
                ("QueryCodeKey", "q"),
            ],
            template,
            &[
                ("AssetsBucket", "b"),
                ("CollectCodeKey", "k2"),
                ("QueryCodeKey", "q"),
            ],
            &["Modified Collect [Code.S3Key] (CollectCodeKey)"],
        );
    }

    #[test]
    fn fn_sub_parameter_and_intrinsic_values_compare_whole() {
        let template = |arn: &str| {
            t(json!({
                "Sub": {"Type": "AWS::SSM::Parameter", "Properties": {"Value": {"Fn::Sub": "key ${QueryCodeKey}"}}},
                "M": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {"EventSourceArn": {"Fn::GetAtt": [arn, "Arn"]}}}
            }))
        };
        check(
            template("A"),
            &[("QueryCodeKey", "q1")],
            template("B"),
            &[("QueryCodeKey", "q2")],
            &[
                "Modified Sub [Value] (QueryCodeKey)",
                "Replaced M [EventSourceArn]",
            ],
        );
    }

    #[test]
    fn policy_statements_granted_and_taken_away() {
        let role = |actions: Value| {
            t(json!({"Role": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                    "Principal": {"Service": "lambda.amazonaws.com"}}]},
                "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [
                    {"Effect": "Allow", "Action": actions, "Resource": {"Fn::GetAtt": ["Events", "Arn"]}}]}}]}}}))
        };
        let old = role(json!(["kinesis:GetRecords"]));
        let new = role(json!(["kinesis:GetRecords", "kinesis:PutRecords"]));
        let none = BTreeMap::new();
        let got = diff(Some((&old, &none)), (&new, &none));
        assert_eq!(
            got[0].statements,
            [
                r#"+ Allow kinesis:GetRecords,kinesis:PutRecords on {"Fn::GetAtt":["Events","Arn"]}"#,
                r#"- Allow kinesis:GetRecords on {"Fn::GetAtt":["Events","Arn"]}"#,
            ]
        );
        let added = diff(None, (&new, &none));
        assert_eq!(
            added[0].statements.len(),
            2,
            "a new role grants its trust and its policy: {:?}",
            added[0].statements
        );
        assert!(
            added[0]
                .statements
                .iter()
                .any(|s| s.contains(r#"for {"Service":"lambda.amazonaws.com"}"#)),
            "{:?}",
            added[0].statements
        );
    }

    #[test]
    fn deletion_policy_counts_as_a_change() {
        check(
            t(json!({"B": {"Type": "AWS::S3::Bucket"}})),
            &[],
            t(json!({"B": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"}})),
            &[],
            &["Modified B [DeletionPolicy]"],
        );
    }

    #[test]
    fn retention_lost_when_a_policy_stops_keeping() {
        let old = t(json!({
            "Events": {"Type": "AWS::Kinesis::Stream", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"},
            "Table": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"},
            "Gone": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
            "Kept": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain"},
            "Plain": {"Type": "AWS::SQS::Queue"}
        }));
        let new = t(json!({
            "Events": {"Type": "AWS::Kinesis::Stream"},
            "Table": {"Type": "AWS::DynamoDB::Table", "DeletionPolicy": "Delete", "UpdateReplacePolicy": "Snapshot"},
            "Kept": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "RetainExceptOnCreate"},
            "Plain": {"Type": "AWS::SQS::Queue", "DeletionPolicy": "Retain"}
        }));
        assert_eq!(
            retention_lost(&old, &new),
            [
                "Events (AWS::Kinesis::Stream): DeletionPolicy Retain → Delete (removed)",
                "Events (AWS::Kinesis::Stream): UpdateReplacePolicy Retain → Delete (removed)",
                "Table (AWS::DynamoDB::Table): DeletionPolicy Retain → Delete",
            ]
        );
        assert!(retention_lost(&new, &new).is_empty());
        let ids: Vec<String> = retained(&old).into_iter().collect();
        assert_eq!(ids, ["Events", "Gone", "Kept", "Table"]);
        assert!(retained(&json!({})).is_empty());
    }

    #[test]
    fn new_stack_is_all_added() {
        let new = t(json!({"A": {"Type": "AWS::SQS::Queue"}, "B": {"Type": "AWS::S3::Bucket"}}));
        let got = diff(None, (&new, &BTreeMap::new()));
        assert_eq!(
            got.iter().map(|d| d.kind).collect::<Vec<_>>(),
            [DiffKind::Added, DiffKind::Added]
        );
    }

    #[test]
    fn replacement_table() {
        let cases = [
            ("AWS::Kinesis::Stream", "Name", true),
            ("AWS::Kinesis::Stream", "ShardCount", false),
            ("AWS::DynamoDB::Table", "KeySchema", true),
            ("AWS::DynamoDB::Table", "BillingMode", false),
            ("AWS::S3::Bucket", "BucketName", true),
            ("AWS::S3::Bucket", "LifecycleConfiguration.Rules", false),
            ("AWS::Lambda::Function", "Code.S3Key", false),
            ("AWS::Lambda::EventSourceMapping", "StartingPosition", true),
            ("AWS::Lambda::EventSourceMapping", "BatchSize", false),
            ("AWS::Unknown::Thing", "Anything", false),
            ("AWS::Unknown::Thing", "Type", true),
        ];
        for (ty, prop, expect) in cases {
            assert_eq!(causes_replacement(ty, prop), expect, "{ty} {prop}");
        }
    }

    #[test]
    fn iam_detection() {
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(touches_iam("AWS::IAM::Role", &[]));
        assert!(touches_iam("AWS::Lambda::Permission", &[]));
        assert!(touches_iam("AWS::SQS::QueuePolicy", &[]));
        assert!(touches_iam("AWS::Lambda::Function", &s(&["Role"])));
        assert!(!touches_iam("AWS::Lambda::Function", &s(&["Code.S3Key"])));
    }

    #[test]
    fn parse_rejects_malformed_templates() {
        let check_err = |text: &str, expect: &str| {
            let error = parse(text).expect_err(text).to_string();
            assert!(error.contains(expect), "{text}: {error}");
        };
        check_err("", "not valid json");
        check_err("[]", "no `Resources`");
        check_err(r#"{"Resources": []}"#, "no `Resources`");
        check_err(
            r#"{"Resources": {"A": {}}}"#,
            "resource `A` has no string `Type`",
        );
        check_err(r#"{"Resources": {"A": {"Type": 3}}}"#, "resource `A`");
        assert!(parse(r#"{"Resources": {}}"#).is_ok());
    }
}
