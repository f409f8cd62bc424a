//! What a deploy will do: the change set's changes merged with the template diff, and how to show it.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use aws_sdk_cloudformation::types::{Change, ChangeAction, Replacement, RequiresRecreation};

use crate::template::{self, DiffKind, ResourceDiff};

/// One resource's change, as a deploy would make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChange {
    pub logical_id: String,
    pub resource_type: String,
    pub action: Action,
    /// Changed properties (`Code.S3Key`), from the template diff and the change set's details.
    pub properties: Vec<String>,
    /// Parameters behind the change.
    pub parameters: Vec<String>,
    /// IAM statements granted (`+ …`) or taken away (`- …`).
    pub statements: Vec<String>,
    /// Whether the change set listed this resource (moto lists no parameter-only changes; AWS does).
    pub in_change_set: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    Add,
    Modify,
    /// Modified, and CloudFormation may or may not replace it (`Replacement: Conditional`).
    MaybeReplace,
    Replace,
    Remove,
}

/// The whole plan of a deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeployPlan {
    pub changes: Vec<PlannedChange>,
    /// Parameters whose value changes: name → (old, new); `None` when absent.
    pub parameters: BTreeMap<String, (Option<String>, Option<String>)>,
}

/// A change set's change as this crate uses it: the SDK's `ResourceChange`, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeSetEntry {
    pub logical_id: String,
    pub resource_type: String,
    pub action: Action,
    pub properties: Vec<String>,
}

impl ChangeSetEntry {
    /// From `DescribeChangeSet`'s `Changes`. `Replacement` decides replace vs modify when present; a detail with
    /// `RequiresRecreation: Always` counts as a replacement too.
    pub fn from_sdk(change: &Change) -> Option<ChangeSetEntry> {
        let rc = change.resource_change()?;
        let logical_id = rc.logical_resource_id()?.to_owned();
        let resource_type = rc.resource_type().unwrap_or_default().to_owned();
        let recreate_always = rc.details().iter().any(|d| {
            d.target().and_then(|t| t.requires_recreation()) == Some(&RequiresRecreation::Always)
        });
        let action = match rc.action()? {
            ChangeAction::Add | ChangeAction::Import => Action::Add,
            ChangeAction::Remove => Action::Remove,
            ChangeAction::Modify | ChangeAction::Dynamic => match rc.replacement() {
                Some(Replacement::True) => Action::Replace,
                Some(Replacement::Conditional) => Action::MaybeReplace,
                _ if recreate_always => Action::Replace,
                _ => Action::Modify,
            },
            _ => Action::Modify,
        };
        let mut properties: Vec<String> = rc
            .details()
            .iter()
            .filter_map(|d| d.target())
            .filter_map(|t| match (t.name(), t.path()) {
                (Some(name), _) => Some(name.to_owned()),
                (None, Some(path)) => {
                    Some(path.trim_start_matches("/Properties/").replace('/', "."))
                }
                _ => None,
            })
            .collect();
        properties.sort();
        properties.dedup();
        Some(ChangeSetEntry {
            logical_id,
            resource_type,
            action,
            properties,
        })
    }
}

impl DeployPlan {
    /// Merges the template diff with the change set (either may be empty). The stronger action wins:
    /// a replacement found by either side is a replacement.
    pub fn merge(diff: &[ResourceDiff], change_set: &[ChangeSetEntry]) -> DeployPlan {
        let mut by_id: BTreeMap<String, PlannedChange> = BTreeMap::new();
        for d in diff {
            let action = match d.kind {
                DiffKind::Added => Action::Add,
                DiffKind::Modified => Action::Modify,
                DiffKind::Replaced => Action::Replace,
                DiffKind::Removed => Action::Remove,
            };
            by_id.insert(
                d.logical_id.clone(),
                PlannedChange {
                    logical_id: d.logical_id.clone(),
                    resource_type: d.resource_type.clone(),
                    action,
                    properties: d.properties.clone(),
                    parameters: d.parameters.clone(),
                    statements: d.statements.clone(),
                    in_change_set: false,
                },
            );
        }
        for c in change_set {
            let entry = by_id
                .entry(c.logical_id.clone())
                .or_insert_with(|| PlannedChange {
                    logical_id: c.logical_id.clone(),
                    resource_type: c.resource_type.clone(),
                    action: c.action,
                    properties: Vec::new(),
                    parameters: Vec::new(),
                    statements: Vec::new(),
                    in_change_set: true,
                });
            entry.in_change_set = true;
            entry.action = entry.action.max(c.action);
            for p in &c.properties {
                if !entry.properties.contains(p) {
                    entry.properties.push(p.clone());
                }
            }
            entry.properties.sort();
        }
        let mut changes: Vec<PlannedChange> = by_id.into_values().collect();
        changes.sort_by(|a, b| (a.action, &a.logical_id).cmp(&(b.action, &b.logical_id)));
        DeployPlan {
            changes,
            parameters: BTreeMap::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.parameters.is_empty()
    }

    /// Replacements and removals of the stream, the table or a bucket: data would be lost.
    pub fn destructive(&self) -> Vec<&PlannedChange> {
        self.changes
            .iter()
            .filter(|c| template::is_stateful(&c.resource_type))
            .filter(|c| {
                matches!(
                    c.action,
                    Action::Replace | Action::MaybeReplace | Action::Remove
                )
            })
            .collect()
    }

    pub fn iam_changes(&self) -> Vec<&PlannedChange> {
        self.changes
            .iter()
            .filter(|c| {
                template::touches_iam(&c.resource_type, &c.properties) || !c.statements.is_empty()
            })
            .collect()
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Action::Add => "add",
            Action::Modify => "modify",
            Action::MaybeReplace => "may replace",
            Action::Replace => "REPLACE",
            Action::Remove => "REMOVE",
        })
    }
}

impl fmt::Display for DeployPlan {
    /// One line per resource, then the parameters, then the IAM and data-loss callouts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        let sign = |a: Action| match a {
            Action::Add => '+',
            Action::Modify => '~',
            Action::MaybeReplace | Action::Replace => '!',
            Action::Remove => '-',
        };
        for c in &self.changes {
            let mut line = format!(
                "{} {:<11} {} ({})",
                sign(c.action),
                c.action,
                c.logical_id,
                c.resource_type
            );
            if !c.properties.is_empty() {
                let _ = write!(line, ": {}", c.properties.join(", "));
            }
            if !c.parameters.is_empty() {
                let _ = write!(line, " [parameter {}]", c.parameters.join(", "));
            }
            writeln!(f, "{line}")?;
            for statement in &c.statements {
                writeln!(f, "      {statement}")?;
            }
        }
        for (name, (old, new)) in &self.parameters {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
            writeln!(f, "  parameter {name}: {} -> {}", show(old), show(new))?;
        }
        let iam = self.iam_changes();
        if !iam.is_empty() {
            let ids: Vec<&str> = iam.iter().map(|c| c.logical_id.as_str()).collect();
            writeln!(
                f,
                "IAM changes (review who may do what): {}",
                ids.join(", ")
            )?;
        }
        let destructive = self.destructive();
        if !destructive.is_empty() {
            let ids: Vec<String> = destructive
                .iter()
                .map(|c| format!("{} {}", c.action, c.logical_id))
                .collect();
            writeln!(
                f,
                "DATA LOSS: {} (stateful: its data does not survive)",
                ids.join(", ")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::types::{
        ResourceAttribute, ResourceChange, ResourceChangeDetail, ResourceTargetDefinition,
    };

    /// A change as AWS records it in `DescribeChangeSet` (values from real responses).
    fn recorded(
        id: &str,
        ty: &str,
        action: ChangeAction,
        replacement: Option<Replacement>,
        details: &[(&str, RequiresRecreation)],
    ) -> Change {
        let mut rc = ResourceChange::builder()
            .logical_resource_id(id)
            .resource_type(ty)
            .action(action)
            .set_replacement(replacement)
            .scope(ResourceAttribute::Properties);
        for (name, recreation) in details {
            rc = rc.details(
                ResourceChangeDetail::builder()
                    .target(
                        ResourceTargetDefinition::builder()
                            .attribute(ResourceAttribute::Properties)
                            .name(*name)
                            .requires_recreation(recreation.clone())
                            .build(),
                    )
                    .build(),
            );
        }
        Change::builder().resource_change(rc.build()).build()
    }

    fn check(change: Change, expect: Option<(&str, Action, &[&str])>) {
        let got = ChangeSetEntry::from_sdk(&change);
        let got = got
            .as_ref()
            .map(|e| (e.logical_id.as_str(), e.action, e.properties.clone()));
        let expect =
            expect.map(|(id, a, p)| (id, a, p.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()));
        assert_eq!(got, expect);
    }

    #[test]
    fn change_set_entries() {
        use ChangeAction as A;
        use RequiresRecreation as R;
        check(
            recorded(
                "Events",
                "AWS::Kinesis::Stream",
                A::Modify,
                Some(Replacement::True),
                &[("Name", R::Always)],
            ),
            Some(("Events", Action::Replace, &["Name"])),
        );
        check(
            recorded(
                "Fn",
                "AWS::Lambda::Function",
                A::Modify,
                Some(Replacement::False),
                &[("Code", R::Never)],
            ),
            Some(("Fn", Action::Modify, &["Code"])),
        );
        check(
            recorded(
                "T",
                "AWS::DynamoDB::Table",
                A::Modify,
                Some(Replacement::Conditional),
                &[("KeySchema", R::Conditionally)],
            ),
            Some(("T", Action::MaybeReplace, &["KeySchema"])),
        );
        // moto: no Replacement and no Details; the action stays a modification.
        check(
            recorded("Q", "AWS::SQS::Queue", A::Modify, None, &[]),
            Some(("Q", Action::Modify, &[])),
        );
        // No Replacement, but a detail that always recreates.
        check(
            recorded(
                "Q",
                "AWS::SQS::Queue",
                A::Modify,
                None,
                &[("QueueName", R::Always)],
            ),
            Some(("Q", Action::Replace, &["QueueName"])),
        );
        check(
            recorded("N", "AWS::SQS::Queue", A::Add, None, &[]),
            Some(("N", Action::Add, &[])),
        );
        check(
            recorded("O", "AWS::SQS::Queue", A::Remove, None, &[]),
            Some(("O", Action::Remove, &[])),
        );
        check(Change::builder().build(), None);
    }

    fn diff(id: &str, ty: &str, kind: DiffKind, props: &[&str]) -> ResourceDiff {
        ResourceDiff {
            logical_id: id.to_owned(),
            resource_type: ty.to_owned(),
            kind,
            properties: props.iter().map(|s| (*s).to_owned()).collect(),
            parameters: Vec::new(),
            statements: Vec::new(),
        }
    }

    fn entry(id: &str, ty: &str, action: Action) -> ChangeSetEntry {
        ChangeSetEntry {
            logical_id: id.to_owned(),
            resource_type: ty.to_owned(),
            action,
            properties: Vec::new(),
        }
    }

    #[test]
    fn merge_takes_the_stronger_action_from_either_side() {
        let plan = DeployPlan::merge(
            &[
                diff(
                    "Table",
                    "AWS::DynamoDB::Table",
                    DiffKind::Replaced,
                    &["TableName"],
                ),
                diff(
                    "Fn",
                    "AWS::Lambda::Function",
                    DiffKind::Modified,
                    &["Code.S3Key"],
                ),
            ],
            &[
                entry("Table", "AWS::DynamoDB::Table", Action::Modify),
                entry("Events", "AWS::Kinesis::Stream", Action::Replace),
                entry("Role", "AWS::IAM::Role", Action::Modify),
            ],
        );
        let got: Vec<(&str, Action, bool)> = plan
            .changes
            .iter()
            .map(|c| (c.logical_id.as_str(), c.action, c.in_change_set))
            .collect();
        assert_eq!(
            got,
            [
                ("Fn", Action::Modify, false),
                ("Role", Action::Modify, true),
                ("Events", Action::Replace, true),
                ("Table", Action::Replace, true),
            ]
        );
        let destructive: Vec<&str> = plan
            .destructive()
            .iter()
            .map(|c| c.logical_id.as_str())
            .collect();
        assert_eq!(destructive, ["Events", "Table"]);
        let iam: Vec<&str> = plan
            .iam_changes()
            .iter()
            .map(|c| c.logical_id.as_str())
            .collect();
        assert_eq!(iam, ["Role"]);
        let text = plan.to_string();
        assert!(
            text.contains("! REPLACE     Table (AWS::DynamoDB::Table): TableName"),
            "{text}"
        );
        assert!(
            text.contains("IAM changes (review who may do what): Role"),
            "{text}"
        );
        assert!(
            text.contains("DATA LOSS: REPLACE Events, REPLACE Table"),
            "{text}"
        );
    }

    #[test]
    fn removing_a_bucket_is_destructive_adding_one_is_not() {
        let plan = DeployPlan::merge(
            &[
                diff("Old", "AWS::S3::Bucket", DiffKind::Removed, &[]),
                diff("New", "AWS::S3::Bucket", DiffKind::Added, &[]),
                diff("Q", "AWS::SQS::Queue", DiffKind::Removed, &[]),
            ],
            &[],
        );
        let destructive: Vec<&str> = plan
            .destructive()
            .iter()
            .map(|c| c.logical_id.as_str())
            .collect();
        assert_eq!(destructive, ["Old"]);
    }

    #[test]
    fn empty_plan_says_so() {
        assert_eq!(DeployPlan::default().to_string(), "no changes\n");
    }
}
