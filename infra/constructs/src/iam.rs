//! IAM: one role per function, whose inline policy is derived by grants.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::iam_policy::Statement;
use crate::naming::Name;

/// Properties of a [`Role`].
#[derive(Debug, Clone)]
pub struct RoleProps {
    /// The service that assumes the role, e.g. `lambda.amazonaws.com`.
    pub assumed_by: &'static str,
    /// Physical name; `None` lets CloudFormation choose one.
    pub role_name: Option<Name>,
}

/// An IAM role (`AWS::IAM::Role`) with an inline least-privilege policy.
#[derive(Debug, Clone)]
pub struct Role {
    node: Node,
}

impl Role {
    /// Creates the role at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: RoleProps) -> Role {
        let scope = scope.child(id);
        let mut properties = Map::new();
        properties.insert(
            "AssumeRolePolicyDocument".into(),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": props.assumed_by },
                    "Action": "sts:AssumeRole",
                }],
            }),
        );
        if let Some(name) = &props.role_name {
            name.check(&scope, crate::NameKind::Role);
            properties.insert("RoleName".into(), scope.resolve(&name.to_expr()));
        }
        Role {
            node: scope.add_resource("Resource", "AWS::IAM::Role", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The role's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }

    /// The role's name (`Ref`).
    pub fn name(&self) -> Expr {
        self.node.reference()
    }
}

/// Something that can be granted permissions: it has a role.
pub trait Grantee {
    /// The role that receives the statements.
    fn grant_role(&self) -> &Role;
}

impl Grantee for Role {
    fn grant_role(&self) -> &Role {
        self
    }
}

/// Adds `actions` on `resources` (all of `owner`'s stack) to `grantee`'s role. A grant across
/// stacks is a violation at the grantee's path.
pub(crate) fn grant(
    grantee: &dyn Grantee,
    owner: &Node,
    actions: &[&'static str],
    resources: &[Expr],
) {
    let role = grantee.grant_role().node();
    if !role.stack().same_as(owner.stack()) {
        role.violation(format!(
            "is granted access to `{}`, a construct of another stack; grants only work within one stack",
            owner.path()
        ));
        return;
    }
    let resources = resources.iter().map(Expr::to_json).collect();
    role.add_statement(Statement::new(actions, resources));
}

/// [`grant`], allowed only under `condition` (an IAM `Condition` block).
pub(crate) fn grant_with_condition(
    grantee: &dyn Grantee,
    owner: &Node,
    actions: &[&'static str],
    resources: &[Expr],
    condition: serde_json::Value,
) {
    let role = grantee.grant_role().node();
    if !role.stack().same_as(owner.stack()) {
        role.violation(format!(
            "is granted access to `{}`, a construct of another stack; grants only work within one stack",
            owner.path()
        ));
        return;
    }
    let resources = resources.iter().map(Expr::to_json).collect();
    role.add_statement(Statement::new(actions, resources).with_condition(condition));
}

/// Adds `actions` on every resource to `grantee`'s role. Only for actions AWS cannot scope to a
/// resource (such as `cloudwatch:GetMetricStatistics`); everything else goes through [`grant`].
pub(crate) fn grant_unscoped(grantee: &dyn Grantee, actions: &[&'static str]) {
    grantee
        .grant_role()
        .node()
        .add_statement(Statement::new(actions, vec![serde_json::json!("*")]));
}
