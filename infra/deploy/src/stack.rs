//! Reading a stack's state: status, tags, parameters, outputs, deployed template.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::types::{Stack, TemplateStage};
use serde_json::Value;

use crate::aws::{code, err};
use crate::{Clients, Error, StackTags};

/// What this crate needs to know about a deployed stack.
#[derive(Debug, Clone)]
pub struct StackInfo {
    pub name: String,
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub tags: Option<StackTags>,
    pub parameters: BTreeMap<String, String>,
    /// `(key, value)` in the order CloudFormation lists them.
    pub outputs: Vec<(String, String)>,
    pub created: Option<SystemTime>,
    pub last_updated: Option<SystemTime>,
}

impl StackInfo {
    pub(crate) fn from_sdk(stack: &Stack) -> StackInfo {
        StackInfo {
            name: stack.stack_name().unwrap_or_default().to_owned(),
            id: stack.stack_id().unwrap_or_default().to_owned(),
            status: stack
                .stack_status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            status_reason: stack.stack_status_reason().map(str::to_owned),
            tags: StackTags::from_sdk(stack.tags()),
            parameters: stack
                .parameters()
                .iter()
                .filter_map(|p| {
                    Some((
                        p.parameter_key()?.to_owned(),
                        p.parameter_value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
            outputs: stack
                .outputs()
                .iter()
                .filter_map(|o| {
                    Some((
                        o.output_key()?.to_owned(),
                        o.output_value().unwrap_or_default().to_owned(),
                    ))
                })
                .collect(),
            created: stack.creation_time().and_then(to_system_time),
            last_updated: stack.last_updated_time().and_then(to_system_time),
        }
    }
}

pub(crate) fn to_system_time(
    t: &aws_sdk_cloudformation::primitives::DateTime,
) -> Option<SystemTime> {
    let secs = u64::try_from(t.secs()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(u64::from(t.subsec_nanos())))
}

/// The stack by name, or `None` when there is none (never created, or deleted).
pub async fn describe(clients: &Clients, name: &str) -> Result<Option<StackInfo>, Error> {
    match clients.cfn.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out
            .stacks()
            .first()
            .map(StackInfo::from_sdk)
            .filter(|s| s.status != "DELETE_COMPLETE")),
        Err(error) if is_missing(&error) => Ok(None),
        Err(error) => Err(err("DescribeStacks")(error)),
    }
}

/// CloudFormation answers a `ValidationError` "Stack with id X does not exist" for an unknown stack.
fn is_missing<E: aws_sdk_cloudformation::error::ProvideErrorMetadata>(error: &E) -> bool {
    code(error) == Some("ValidationError")
        && error
            .message()
            .is_some_and(|m| m.contains("does not exist"))
}

/// The template as it was last deployed (the original text, parsed).
pub(crate) async fn deployed_template(clients: &Clients, name: &str) -> Result<Value, Error> {
    let out = clients
        .cfn
        .get_template()
        .stack_name(name)
        .template_stage(TemplateStage::Original)
        .send()
        .await
        .map_err(err("GetTemplate"))?;
    let body = out.template_body().unwrap_or("{}");
    serde_json::from_str(body)
        .map_err(|e| Error::Template(format!("deployed template of `{name}` is not json: {e}")))
}

/// Where a stack status leaves a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    InProgress,
    /// Created or updated, usable.
    Ok,
    /// An update failed and was rolled back: the stack is usable at its previous state.
    RolledBack,
    /// The first create failed (`ROLLBACK_COMPLETE`) or something could not be cleaned up: only a delete helps.
    Broken,
    Deleted,
}

pub fn status_kind(status: &str) -> StatusKind {
    match status {
        "CREATE_COMPLETE" | "UPDATE_COMPLETE" | "IMPORT_COMPLETE" => StatusKind::Ok,
        "UPDATE_ROLLBACK_COMPLETE" | "IMPORT_ROLLBACK_COMPLETE" => StatusKind::RolledBack,
        "DELETE_COMPLETE" => StatusKind::Deleted,
        s if s.ends_with("_IN_PROGRESS") => StatusKind::InProgress,
        _ => StatusKind::Broken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_kinds() {
        let check =
            |status: &str, expect: StatusKind| assert_eq!(status_kind(status), expect, "{status}");
        check("CREATE_COMPLETE", StatusKind::Ok);
        check("UPDATE_COMPLETE", StatusKind::Ok);
        check("UPDATE_ROLLBACK_COMPLETE", StatusKind::RolledBack);
        check("ROLLBACK_COMPLETE", StatusKind::Broken);
        check("ROLLBACK_FAILED", StatusKind::Broken);
        check("CREATE_FAILED", StatusKind::Broken);
        check("DELETE_FAILED", StatusKind::Broken);
        check("UPDATE_ROLLBACK_FAILED", StatusKind::Broken);
        check("CREATE_IN_PROGRESS", StatusKind::InProgress);
        check("REVIEW_IN_PROGRESS", StatusKind::InProgress);
        check(
            "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
            StatusKind::InProgress,
        );
        check("DELETE_COMPLETE", StatusKind::Deleted);
        check("SOMETHING_NEW", StatusKind::Broken);
    }
}
