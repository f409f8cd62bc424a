//! Policy statements derived by grants, and the policy document they render to.

use serde_json::{json, Value};

/// One `Allow` statement: exact actions on exact resources, optionally under a condition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub(crate) actions: Vec<&'static str>,
    pub(crate) resources: Vec<Value>,
    /// The statement's `Condition` block, when it has one.
    pub(crate) condition: Option<Value>,
}

impl Statement {
    pub(crate) fn new(actions: &[&'static str], resources: Vec<Value>) -> Statement {
        let mut actions = actions.to_vec();
        actions.sort_unstable();
        actions.dedup();
        Statement {
            actions,
            resources,
            condition: None,
        }
    }

    /// The same statement, allowed only under `condition` (an IAM `Condition` block).
    pub(crate) fn with_condition(mut self, condition: Value) -> Statement {
        self.condition = Some(condition);
        self
    }
}

/// The policy document: statements on the same resources are merged, actions sorted.
pub(crate) fn document(statements: &[Statement]) -> Value {
    let mut merged: Vec<Statement> = Vec::new();
    for statement in statements {
        match merged
            .iter_mut()
            .find(|m| m.resources == statement.resources && m.condition == statement.condition)
        {
            Some(m) => {
                m.actions.extend(statement.actions.iter().copied());
                m.actions.sort_unstable();
                m.actions.dedup();
            }
            None => merged.push(statement.clone()),
        }
    }
    let rendered: Vec<Value> = merged
        .iter()
        .map(|s| {
            let resource = match s.resources.as_slice() {
                [one] => one.clone(),
                many => Value::Array(many.to_vec()),
            };
            let action = match s.actions.as_slice() {
                [one] => json!(one),
                many => json!(many),
            };
            let mut rendered = json!({ "Effect": "Allow", "Action": action, "Resource": resource });
            if let Some(condition) = &s.condition {
                rendered["Condition"] = condition.clone();
            }
            rendered
        })
        .collect();
    json!({ "Version": "2012-10-17", "Statement": rendered })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_statements_on_the_same_resources() {
        let a = Statement::new(&["s3:PutObject", "s3:GetObject"], vec![json!("arn:a")]);
        let b = Statement::new(
            &["s3:GetObject", "s3:AbortMultipartUpload"],
            vec![json!("arn:a")],
        );
        let c = Statement::new(&["s3:ListBucket"], vec![json!("arn:b"), json!("arn:c")]);
        assert_eq!(
            document(&[a, b, c]),
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"], "Resource": "arn:a"},
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": ["arn:b", "arn:c"]},
            ]})
        );
    }

    #[test]
    fn conditional_statements_merge_only_with_the_same_condition() {
        let listed = json!({"StringLike": {"s3:prefix": "events/*"}});
        let a =
            Statement::new(&["s3:ListBucket"], vec![json!("arn:b")]).with_condition(listed.clone());
        let b = Statement::new(&["s3:GetBucketLocation"], vec![json!("arn:b")]);
        let c = Statement::new(&["s3:ListBucketVersions"], vec![json!("arn:b")])
            .with_condition(listed.clone());
        assert_eq!(
            document(&[a, b, c]),
            json!({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions"], "Resource": "arn:b",
                 "Condition": listed},
                {"Effect": "Allow", "Action": "s3:GetBucketLocation", "Resource": "arn:b"},
            ]})
        );
    }
}
