//! `destroy`: empty the stack's buckets, delete the stack, wait, and verify that nothing of the stage is left.
//!
//! Verification does not trust the delete: every stateful or named resource the stack held (from
//! `ListStackResources`, taken before the delete) and every physical name the stage's template declares is
//! looked up again through its own service, and whatever still answers is reported.
//!
//! Resources the template retains (`DeletionPolicy: Retain`, as `retain_data = true` sets on the stream, the
//! table, the archive bucket and the secret) are left alone: their buckets are not emptied, CloudFormation
//! keeps them, and the outcome names them. The deployed template decides (it is what CloudFormation acts on),
//! together with the local one: a resource either marks retained is kept.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use serde_json::Value;

use crate::aws::{code, err};
use crate::deploy::Confirm;
use crate::progress::{recent_events, Output, Progress};
use crate::stack::{self, status_kind, StatusKind};
use crate::{template, Clients, Error};

/// A named resource whose absence `destroy` verifies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Named {
    Bucket(String),
    Stream(String),
    Table(String),
    Queue(String),
    LogGroup(String),
}

impl fmt::Display for Named {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Named::Bucket(n) => write!(f, "bucket {n}"),
            Named::Stream(n) => write!(f, "stream {n}"),
            Named::Table(n) => write!(f, "table {n}"),
            Named::Queue(n) => write!(f, "queue {n}"),
            Named::LogGroup(n) => write!(f, "log group {n}"),
        }
    }
}

impl Named {
    /// From a resource type and its physical id (as `ListStackResources` reports it).
    pub fn from_physical(ty: &str, physical_id: &str) -> Option<Named> {
        if physical_id.is_empty() {
            return None;
        }
        Some(match ty {
            "AWS::S3::Bucket" => Named::Bucket(physical_id.to_owned()),
            "AWS::Kinesis::Stream" => Named::Stream(physical_id.to_owned()),
            "AWS::DynamoDB::Table" => Named::Table(physical_id.to_owned()),
            // The physical id of a queue is its URL; the name is the last path segment.
            "AWS::SQS::Queue" => Named::Queue(
                physical_id
                    .rsplit('/')
                    .next()
                    .unwrap_or(physical_id)
                    .to_owned(),
            ),
            "AWS::Logs::LogGroup" => Named::LogGroup(physical_id.to_owned()),
            _ => return None,
        })
    }

    /// The physical names a template declares (`BucketName`, `Name`, `TableName`, `QueueName`,
    /// `LogGroupName`): plain strings, and `Fn::Sub` strings whose only variables are the account and region.
    /// Resources the template retains are left out: they outlive the stack.
    pub fn from_template(template: &Value, account: &str, region: &str) -> BTreeSet<Named> {
        let mut out = BTreeSet::new();
        let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
            return out;
        };
        for resource in resources.values().filter(|r| !template::is_retained(r)) {
            let ty = resource.get("Type").and_then(Value::as_str).unwrap_or("");
            let prop = |key: &str| {
                let value = resource.get("Properties").and_then(|p| p.get(key))?;
                match value {
                    Value::String(s) => Some(s.clone()),
                    Value::Object(o) if o.len() == 1 => {
                        let text = o.get("Fn::Sub")?.as_str()?;
                        let resolved = text
                            .replace("${AWS::AccountId}", account)
                            .replace("${AWS::Region}", region)
                            .replace("${AWS::Partition}", "aws");
                        (!resolved.contains("${")).then_some(resolved)
                    }
                    _ => None,
                }
            };
            let named = match ty {
                "AWS::S3::Bucket" => prop("BucketName").map(Named::Bucket),
                "AWS::Kinesis::Stream" => prop("Name").map(Named::Stream),
                "AWS::DynamoDB::Table" => prop("TableName").map(Named::Table),
                "AWS::SQS::Queue" => prop("QueueName").map(Named::Queue),
                "AWS::Logs::LogGroup" => prop("LogGroupName").map(Named::LogGroup),
                _ => None,
            };
            out.extend(named);
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct DestroyRequest {
    pub stack_name: String,
    /// Only a stack tagged with this project is deleted.
    pub project: String,
    /// The stage's synthesized template: the names it declares ([`Named::from_template`]) are verified gone,
    /// even when the stack itself is already gone.
    pub template: Value,
    pub confirm: Confirm,
    pub output: Output,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestroyOutcome {
    /// No stack and nothing of the stage left.
    NothingToDelete,
    /// Deleted and verified gone, except what the template retains.
    Destroyed {
        objects_deleted: usize,
        verified: usize,
        /// What was left because the template retains it, one line each (`bucket tally-x-archive-… (Archive)`).
        retained: Vec<String>,
        elapsed: Duration,
    },
}

pub async fn destroy(clients: &Clients, req: &DestroyRequest) -> Result<DestroyOutcome, Error> {
    let started = Instant::now();
    let stack = &req.stack_name;
    let account = crate::assets::account_id(clients).await?;
    let mut expected = Named::from_template(&req.template, &account, &clients.region);
    let Some(info) = stack::describe(clients, stack).await? else {
        let remaining = remaining(clients, &expected).await?;
        if remaining.is_empty() {
            return Ok(DestroyOutcome::NothingToDelete);
        }
        return Err(leftovers(stack, &remaining));
    };
    match &info.tags {
        Some(tags) if tags.project == req.project => {}
        Some(tags) => {
            return Err(Error::StackState {
                stack: stack.clone(),
                status: info.status.clone(),
                hint: format!(
                    "it belongs to project `{}`, not `{}`; it is left alone",
                    tags.project, req.project
                ),
            })
        }
        None => {
            return Err(Error::StackState {
                stack: stack.clone(),
                status: info.status.clone(),
                hint: "it has no tally:project tag, so tally did not deploy it; it is left alone"
                    .to_owned(),
            })
        }
    }
    let go = match req.confirm {
        Confirm::Yes => true,
        Confirm::Ask => crate::deploy::ask(&format!("delete stack {stack} and all its data?")),
        Confirm::Refuse => false,
    };
    if !go {
        return Err(Error::StackState {
            stack: stack.clone(),
            status: info.status,
            hint: "destroy deletes every resource of the stage with its data; re-run with --yes to confirm".to_owned(),
        });
    }

    let resources = match stack_resources(clients, stack).await {
        Ok(r) => r,
        // A stack broken mid-create may not list its resources; the stage's names are still verified below.
        Err(e) => {
            req.output.line(&format!(
                "cannot list the resources of {stack} ({e}); verifying the stage's names only"
            ));
            Vec::new()
        }
    };
    let keep = retained_ids(clients, req).await;
    let (buckets, retained) = sort_resources(&resources, &keep, &mut expected);
    for line in &retained {
        req.output
            .line(&format!("keeping {line}: the template retains it"));
    }
    let mut objects_deleted = 0;
    for bucket in &buckets {
        let n = empty_bucket(clients, bucket).await?;
        req.output.line(&format!(
            "emptied bucket {bucket}: {n} object versions and delete markers"
        ));
        objects_deleted += n;
    }

    // Delete by stack id and wait; then look the name up again, since an endpoint may hold two stacks of one
    // name (a create retried on a stack that never finished).
    let mut current = info;
    for _round in 0..3 {
        delete_and_wait(clients, req, &current.id).await?;
        match stack::describe(clients, stack).await? {
            None => break,
            Some(next) if next.tags.as_ref().is_some_and(|t| t.project == req.project) => {
                current = next
            }
            Some(next) => {
                return Err(Error::StackState {
                    stack: stack.clone(),
                    status: next.status,
                    hint: "deleted ours, but a stack of the same name and another project exists"
                        .to_owned(),
                })
            }
        }
    }
    if let Some(still) = stack::describe(clients, stack).await? {
        return Err(Error::StackState {
            stack: stack.clone(),
            status: still.status,
            hint: "still there after three deletes; delete it in the CloudFormation console"
                .to_owned(),
        });
    }
    let remaining = remaining(clients, &expected).await?;
    if !remaining.is_empty() {
        return Err(leftovers(stack, &remaining));
    }
    Ok(DestroyOutcome::Destroyed {
        objects_deleted,
        verified: expected.len(),
        retained,
        elapsed: started.elapsed(),
    })
}

/// Logical ids the deployed template or the local one retains. A deployed template that cannot be read counts
/// for nothing; the local one still does.
async fn retained_ids(clients: &Clients, req: &DestroyRequest) -> BTreeSet<String> {
    let mut keep = template::retained(&req.template);
    match stack::deployed_template(clients, &req.stack_name).await {
        Ok(deployed) => keep.extend(template::retained(&deployed)),
        Err(e) => req.output.line(&format!(
            "cannot read the deployed template of {} ({e}); keeping what the local template retains",
            req.stack_name
        )),
    }
    keep
}

/// Splits the stack's resources into the buckets to empty and the lines naming what is kept; adds every named
/// resource that goes to `expected` and takes every kept one out of it.
fn sort_resources(
    resources: &[(String, String, String)],
    keep: &BTreeSet<String>,
    expected: &mut BTreeSet<Named>,
) -> (Vec<String>, Vec<String>) {
    let (mut buckets, mut retained) = (Vec::new(), Vec::new());
    for (logical, ty, physical) in resources {
        let named = Named::from_physical(ty, physical);
        if keep.contains(logical) {
            retained.push(match &named {
                Some(n) => format!("{n} ({logical})"),
                None => format!("{ty} {physical} ({logical})"),
            });
            if let Some(n) = named {
                expected.remove(&n);
            }
            continue;
        }
        if let Some(named) = named {
            if let Named::Bucket(b) = &named {
                buckets.push(b.clone());
            }
            expected.insert(named);
        }
    }
    (buckets, retained)
}

/// Deletes one stack (by id) and follows it until it is gone; a failed delete names what failed.
async fn delete_and_wait(clients: &Clients, req: &DestroyRequest, id: &str) -> Result<(), Error> {
    let stack = &req.stack_name;
    let history = recent_events(clients, id, &|_| false)
        .await
        .unwrap_or_default();
    let mut progress = Progress::new(history.into_iter().map(|e| e.id));
    clients
        .cfn
        .delete_stack()
        .stack_name(id)
        .send()
        .await
        .map_err(err("DeleteStack"))?;
    let deadline = Instant::now() + req.timeout;
    loop {
        let fresh = recent_events(clients, id, &|id| progress.has_seen(id))
            .await
            .unwrap_or_default();
        let fresh = progress.apply(fresh);
        progress.show(req.output, stack, &fresh);
        let now = stack::describe(clients, id).await?;
        match now {
            None => return Ok(()),
            Some(s) if status_kind(&s.status) == StatusKind::InProgress => {}
            Some(s) => {
                let (resource, reason) = match progress.first_failure() {
                    Some(e) => (e.logical_id.clone(), e.reason.clone().unwrap_or_default()),
                    None => (
                        "the stack".to_owned(),
                        s.status_reason.clone().unwrap_or_default(),
                    ),
                };
                return Err(Error::StackState {
                    stack: stack.clone(),
                    status: s.status,
                    hint: format!("deleting {resource} failed: {reason}; fix it by hand and run destroy again"),
                });
            }
        }
        if Instant::now() > deadline {
            return Err(Error::Timeout {
                stack: stack.clone(),
                status: "DELETE_IN_PROGRESS".into(),
                seconds: req.timeout.as_secs(),
            });
        }
        tokio::time::sleep(clients.poll).await;
    }
}

fn leftovers(stack: &str, remaining: &[Named]) -> Error {
    let lines: Vec<String> = remaining.iter().map(|n| format!("  {n}")).collect();
    Error::Leftovers {
        stack: stack.to_owned(),
        remaining: lines.join("\n"),
    }
}

/// `(logical id, type, physical id)` of every resource of the stack.
async fn stack_resources(
    clients: &Clients,
    stack: &str,
) -> Result<Vec<(String, String, String)>, Error> {
    let mut out = Vec::new();
    let mut token = None;
    loop {
        let resp = clients
            .cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(token)
            .send()
            .await
            .map_err(err("ListStackResources"))?;
        for r in resp.stack_resource_summaries() {
            // Rows without a logical id are not resources (some endpoints list skipped types so).
            if let Some(logical) = r.logical_resource_id().filter(|id| !id.is_empty()) {
                out.push((
                    logical.to_owned(),
                    r.resource_type().unwrap_or_default().to_owned(),
                    r.physical_resource_id().unwrap_or_default().to_owned(),
                ));
            }
        }
        token = resp.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Deletes every object version and delete marker; returns how many. A missing bucket is empty.
pub(crate) async fn empty_bucket(clients: &Clients, bucket: &str) -> Result<usize, Error> {
    let mut deleted = 0;
    loop {
        let resp = match clients
            .s3
            .list_object_versions()
            .bucket(bucket)
            .max_keys(1000)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) if code(&e) == Some("NoSuchBucket") => return Ok(deleted),
            Err(e) => return Err(err("ListObjectVersions")(e)),
        };
        let mut ids = Vec::new();
        for v in resp.versions() {
            ids.push((
                v.key().unwrap_or_default().to_owned(),
                v.version_id().map(str::to_owned),
            ));
        }
        for m in resp.delete_markers() {
            ids.push((
                m.key().unwrap_or_default().to_owned(),
                m.version_id().map(str::to_owned),
            ));
        }
        if ids.is_empty() {
            return Ok(deleted);
        }
        let objects = ids
            .iter()
            .map(|(key, version)| {
                ObjectIdentifier::builder()
                    .key(key)
                    .set_version_id(version.clone())
                    .build()
                    .map_err(|e| Error::Aws {
                        operation: "DeleteObjects",
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let delete = Delete::builder()
            .set_objects(Some(objects))
            .quiet(true)
            .build()
            .map_err(|e| Error::Aws {
                operation: "DeleteObjects",
                message: e.to_string(),
            })?;
        let out = clients
            .s3
            .delete_objects()
            .bucket(bucket)
            .delete(delete)
            .send()
            .await
            .map_err(err("DeleteObjects"))?;
        if let Some(first) = out.errors().first() {
            return Err(Error::Aws {
                operation: "DeleteObjects",
                message: format!(
                    "{} of {} objects in bucket {bucket} could not be deleted, first {}: {}",
                    out.errors().len(),
                    ids.len(),
                    first.key().unwrap_or_default(),
                    first.message().unwrap_or_default()
                ),
            });
        }
        deleted += ids.len();
    }
}

/// The resources among `expected` that still exist.
pub(crate) async fn remaining(
    clients: &Clients,
    expected: &BTreeSet<Named>,
) -> Result<Vec<Named>, Error> {
    let mut out = Vec::new();
    for named in expected {
        if exists(clients, named).await? {
            out.push(named.clone());
        }
    }
    Ok(out)
}

async fn exists(clients: &Clients, named: &Named) -> Result<bool, Error> {
    Ok(match named {
        Named::Bucket(name) => match clients.s3.head_bucket().bucket(name).send().await {
            Ok(_) => true,
            Err(e) if e.raw_response().map(|r| r.status().as_u16()) == Some(404) => false,
            Err(e) => return Err(err("HeadBucket")(e)),
        },
        Named::Stream(name) => match clients
            .kinesis
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
        {
            Ok(out) => out
                .stream_description_summary()
                .is_some_and(|s| s.stream_status().as_str() != "DELETING"),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => false,
            Err(e) => return Err(err("DescribeStreamSummary")(e)),
        },
        Named::Table(name) => match clients
            .dynamodb
            .describe_table()
            .table_name(name)
            .send()
            .await
        {
            Ok(out) => out
                .table()
                .and_then(|t| t.table_status())
                .is_some_and(|s| s.as_str() != "DELETING"),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => false,
            Err(e) => return Err(err("DescribeTable")(e)),
        },
        Named::Queue(name) => match clients.sqs.get_queue_url().queue_name(name).send().await {
            Ok(_) => true,
            Err(e)
                if code(&e).is_some_and(|c| {
                    c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
                }) =>
            {
                false
            }
            Err(e) => return Err(err("GetQueueUrl")(e)),
        },
        Named::LogGroup(name) => {
            let out = clients
                .logs
                .describe_log_groups()
                .log_group_name_prefix(name)
                .send()
                .await
                .map_err(err("DescribeLogGroups"))?;
            out.log_groups()
                .iter()
                .any(|g| g.log_group_name() == Some(name.as_str()))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn physical_ids() {
        let check = |ty: &str, id: &str, expect: Option<Named>| {
            assert_eq!(Named::from_physical(ty, id), expect, "{ty} {id}")
        };
        check("AWS::S3::Bucket", "b", Some(Named::Bucket("b".into())));
        check(
            "AWS::SQS::Queue",
            "https://sqs.us-east-1.amazonaws.com/123456789012/q-1",
            Some(Named::Queue("q-1".into())),
        );
        check("AWS::Kinesis::Stream", "s", Some(Named::Stream("s".into())));
        check("AWS::DynamoDB::Table", "t", Some(Named::Table("t".into())));
        check(
            "AWS::Logs::LogGroup",
            "/aws/lambda/f",
            Some(Named::LogGroup("/aws/lambda/f".into())),
        );
        check("AWS::Lambda::Function", "f", None);
        check("AWS::S3::Bucket", "", None);
    }

    #[test]
    fn names_declared_by_a_template() {
        let template = json!({"Resources": {
            "A": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": "tally-x-archive"}},
            "B": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Sub": "x-${AWS::AccountId}-${AWS::Region}"}}},
            "B2": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": {"Fn::Sub": "x-${Other}"}}},
            "C": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "tally-x-failures"}},
            "D": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/aws/lambda/tally-x-collect"}},
            "E": {"Type": "AWS::Kinesis::Stream", "Properties": {"Name": "tally-x-events"}},
            "F": {"Type": "AWS::DynamoDB::Table", "Properties": {"TableName": "tally-x-metrics"}},
            "G": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "tally-x-collect"}}
        }});
        let got: Vec<String> = Named::from_template(&template, "123456789012", "eu-west-1")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "bucket tally-x-archive",
                "bucket x-123456789012-eu-west-1",
                "stream tally-x-events",
                "table tally-x-metrics",
                "queue tally-x-failures",
                "log group /aws/lambda/tally-x-collect",
            ]
        );
        assert!(Named::from_template(&json!([]), "1", "r").is_empty());
        let retained = json!({"Resources": {
            "A": {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "Properties": {"BucketName": "kept"}},
            "C": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "gone"}}
        }});
        let got: Vec<String> = Named::from_template(&retained, "1", "r")
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            ["queue gone"],
            "a retained bucket is not expected gone"
        );
    }

    #[test]
    fn retained_resources_are_kept_and_named() {
        let row = |l: &str, t: &str, p: &str| (l.to_owned(), t.to_owned(), p.to_owned());
        let resources = [
            row("Archive", "AWS::S3::Bucket", "tally-x-archive"),
            row("Scratch", "AWS::S3::Bucket", "tally-x-scratch"),
            row("Token", "AWS::SecretsManager::Secret", "arn:secret"),
            row("Events", "AWS::Kinesis::Stream", "tally-x-events"),
        ];
        let keep: BTreeSet<String> = ["Archive", "Token", "Events"].map(str::to_owned).into();
        // The local template declared the stream's name as going (it did not retain it); the deployed one does.
        let mut expected: BTreeSet<Named> = [Named::Stream("tally-x-events".into())].into();
        let (buckets, retained) = sort_resources(&resources, &keep, &mut expected);
        assert_eq!(
            buckets,
            ["tally-x-scratch"],
            "only the bucket that goes is emptied"
        );
        assert_eq!(
            retained,
            [
                "bucket tally-x-archive (Archive)",
                "AWS::SecretsManager::Secret arn:secret (Token)",
                "stream tally-x-events (Events)",
            ]
        );
        assert_eq!(
            expected.into_iter().collect::<Vec<_>>(),
            [Named::Bucket("tally-x-scratch".into())]
        );
    }
}
