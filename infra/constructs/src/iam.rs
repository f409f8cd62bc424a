//! IAM: one role per function, whose inline policy is derived by grants.

use serde_json::{json, Map, Value};

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
    condition: Value,
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

/// Whether a [`PolicyStatement`] allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// The condition operators a [`PolicyStatement`] may use (the ones the IAM policy test evaluates).
pub const CONDITION_OPERATORS: [&str; 7] = [
    "StringEquals",
    "StringNotEquals",
    "StringLike",
    "StringNotLike",
    "ArnEquals",
    "ArnLike",
    "Bool",
];

/// One condition of a statement: `operator` on `key` against any of `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub operator: &'static str,
    pub key: &'static str,
    pub values: Vec<Expr>,
}

/// A hand-written policy statement, for the policies grants cannot derive: deploy roles, permissions
/// boundaries. `not_action` turns `Action` into `NotAction` (every action except these).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyStatement {
    pub sid: String,
    pub effect: Effect,
    pub actions: Vec<String>,
    pub not_action: bool,
    pub resources: Vec<Expr>,
    pub conditions: Vec<Condition>,
}

impl PolicyStatement {
    /// `Allow` of `actions` on `resources`.
    pub fn allow(sid: &str, actions: &[&str], resources: Vec<Expr>) -> PolicyStatement {
        PolicyStatement::new(sid, Effect::Allow, actions, resources)
    }

    /// `Deny` of `actions` on `resources`.
    pub fn deny(sid: &str, actions: &[&str], resources: Vec<Expr>) -> PolicyStatement {
        PolicyStatement::new(sid, Effect::Deny, actions, resources)
    }

    fn new(sid: &str, effect: Effect, actions: &[&str], resources: Vec<Expr>) -> PolicyStatement {
        PolicyStatement {
            sid: sid.to_owned(),
            effect,
            actions: actions.iter().map(|a| (*a).to_owned()).collect(),
            not_action: false,
            resources,
            conditions: Vec::new(),
        }
    }

    /// Every action except the listed ones (`NotAction`).
    pub fn except_actions(mut self) -> PolicyStatement {
        self.not_action = true;
        self
    }

    /// Adds a condition: `operator` on `key`, matching any of `values`.
    pub fn when(
        mut self,
        operator: &'static str,
        key: &'static str,
        values: Vec<Expr>,
    ) -> PolicyStatement {
        self.conditions.push(Condition {
            operator,
            key,
            values,
        });
        self
    }

    /// The rules a statement must follow; each broken one is a violation at `scope`.
    fn check(&self, scope: &Scope) {
        let at = |rule: String| scope.violation(format!("policy statement `{}`: {rule}", self.sid));
        if self.sid.is_empty() || !self.sid.chars().all(|c| c.is_ascii_alphanumeric()) {
            at("the Sid must be non-empty and alphanumeric".to_owned());
        }
        if self.actions.is_empty() || self.resources.is_empty() {
            at("needs at least one action and one resource".to_owned());
        }
        for action in &self.actions {
            let valid = action == "*"
                || action.split_once(':').is_some_and(|(service, name)| {
                    !service.is_empty()
                        && service
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                        && !name.is_empty()
                        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '*')
                });
            if !valid {
                at(format!(
                    "action `{action}` is not `service:Action` (wildcards `*` allowed)"
                ));
            }
        }
        let everything = (self.actions.iter().any(|a| a == "*") && !self.not_action)
            && self
                .resources
                .iter()
                .any(|r| r.as_text().as_deref() == Some("*"));
        if self.effect == Effect::Allow && everything && self.conditions.is_empty() {
            at("allows every action on every resource; list the actions".to_owned());
        }
        for condition in &self.conditions {
            if !CONDITION_OPERATORS.contains(&condition.operator) {
                at(format!(
                    "condition operator `{}` is not one of {CONDITION_OPERATORS:?}",
                    condition.operator
                ));
            }
            if condition.values.is_empty() {
                at(format!("condition on `{}` has no value", condition.key));
            }
        }
    }

    /// The statement's JSON, references resolved in `scope`.
    fn render(&self, scope: &Scope) -> Value {
        let one_or_many = |values: Vec<Value>| match <[Value; 1]>::try_from(values) {
            Ok([one]) => one,
            Err(many) => Value::Array(many),
        };
        let mut out = Map::new();
        out.insert("Sid".into(), json!(self.sid));
        let effect = match self.effect {
            Effect::Allow => "Allow",
            Effect::Deny => "Deny",
        };
        out.insert("Effect".into(), json!(effect));
        let actions = one_or_many(self.actions.iter().map(|a| json!(a)).collect());
        let action_key = if self.not_action {
            "NotAction"
        } else {
            "Action"
        };
        out.insert(action_key.into(), actions);
        let resources = one_or_many(self.resources.iter().map(|r| scope.resolve(r)).collect());
        out.insert("Resource".into(), resources);
        if !self.conditions.is_empty() {
            let mut operators = Map::new();
            for condition in &self.conditions {
                let values =
                    one_or_many(condition.values.iter().map(|v| scope.resolve(v)).collect());
                let entry = operators
                    .entry(condition.operator.to_owned())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(keys) = entry {
                    keys.insert(condition.key.to_owned(), values);
                }
            }
            out.insert("Condition".into(), Value::Object(operators));
        }
        Value::Object(out)
    }
}

/// The policy document of `statements`, checked (unique Sids, valid actions and operators) and resolved in
/// `scope`.
pub fn policy_document(scope: &Scope, statements: &[PolicyStatement]) -> Value {
    let mut sids = std::collections::HashSet::new();
    for statement in statements {
        statement.check(scope);
        if !sids.insert(statement.sid.as_str()) {
            scope.violation(format!(
                "policy statement Sid `{}` is used twice",
                statement.sid
            ));
        }
    }
    if statements.is_empty() {
        scope.violation("a policy document needs at least one statement");
    }
    let rendered: Vec<Value> = statements.iter().map(|s| s.render(scope)).collect();
    json!({ "Version": "2012-10-17", "Statement": rendered })
}

/// Properties of a [`ManagedPolicy`].
#[derive(Debug, Clone)]
pub struct ManagedPolicyProps {
    /// Physical name (`ManagedPolicyName`); needed when other stacks refer to the policy by ARN.
    pub name: Option<Expr>,
    pub description: String,
    pub statements: Vec<PolicyStatement>,
}

/// A customer managed policy (`AWS::IAM::ManagedPolicy`), e.g. a permissions boundary.
#[derive(Debug, Clone)]
pub struct ManagedPolicy {
    node: Node,
}

impl ManagedPolicy {
    /// Creates the policy at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: ManagedPolicyProps) -> ManagedPolicy {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            properties.insert("ManagedPolicyName".into(), scope.resolve(name));
        }
        properties.insert("Description".into(), json!(props.description));
        properties.insert(
            "PolicyDocument".into(),
            policy_document(&scope, &props.statements),
        );
        ManagedPolicy {
            node: scope.add_resource("Resource", "AWS::IAM::ManagedPolicy", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The policy's ARN (`Ref`).
    pub fn arn(&self) -> Expr {
        self.node.reference()
    }
}

/// An OpenID Connect identity provider (`AWS::IAM::OIDCProvider`), e.g. GitHub Actions'.
#[derive(Debug, Clone)]
pub struct OidcProvider {
    node: Node,
}

impl OidcProvider {
    /// Creates the provider for issuer `url` (`https://…`) and audiences `client_ids` at `scope/id`.
    pub fn new(scope: &Scope, id: &str, url: &str, client_ids: &[&str]) -> OidcProvider {
        let scope = scope.child(id);
        if !url.starts_with("https://") {
            scope.violation(format!("OIDC issuer `{url}` must be an https:// URL"));
        }
        if client_ids.is_empty() {
            scope.violation("an OIDC provider needs at least one client id (audience)");
        }
        let mut properties = Map::new();
        properties.insert("Url".into(), json!(url));
        properties.insert("ClientIdList".into(), json!(client_ids));
        OidcProvider {
            node: scope.add_resource("Resource", "AWS::IAM::OIDCProvider", properties),
        }
    }

    /// The provider's ARN (`Ref`).
    pub fn arn(&self) -> Expr {
        self.node.reference()
    }
}

/// Who may assume a [`TrustedRoleProps`] role.
#[derive(Debug, Clone)]
pub enum Trust {
    /// An AWS service, e.g. `cloudformation.amazonaws.com`.
    Service(&'static str),
    /// Tokens of an OIDC provider (`sts:AssumeRoleWithWebIdentity`) that meet every condition.
    WebIdentity {
        provider: Expr,
        conditions: Vec<Condition>,
    },
}

/// Properties of a role built from hand-written policies ([`Role::trusting`]).
#[derive(Debug, Clone)]
pub struct TrustedRoleProps {
    pub trust: Trust,
    pub description: String,
    /// Inline policy statements (one policy, `permissions`).
    pub statements: Vec<PolicyStatement>,
    /// The permissions boundary (a managed policy ARN).
    pub boundary: Option<Expr>,
    /// Longest session, 3600..=43200 seconds.
    pub max_session_secs: u32,
}

impl Role {
    /// A role with an explicit trust policy, inline statements and an optional permissions boundary (deploy
    /// and execution roles; function roles use [`Role::new`] and grants).
    pub fn trusting(scope: &Scope, id: &str, props: TrustedRoleProps) -> Role {
        let scope = scope.child(id);
        if !(3600..=43200).contains(&props.max_session_secs) {
            scope.violation(format!(
                "max_session_secs {} is outside IAM's 3600..=43200",
                props.max_session_secs
            ));
        }
        let trust = match &props.trust {
            Trust::Service(service) => json!({
                "Effect": "Allow",
                "Principal": { "Service": service },
                "Action": "sts:AssumeRole",
            }),
            Trust::WebIdentity {
                provider,
                conditions,
            } => {
                if conditions.is_empty() {
                    scope.violation("a web identity trust without conditions lets every token of the provider in; add `sub` and `aud` conditions");
                }
                let statement = PolicyStatement {
                    sid: "Trust".into(),
                    effect: Effect::Allow,
                    actions: vec!["sts:AssumeRoleWithWebIdentity".into()],
                    not_action: false,
                    resources: vec![Expr::text("*")],
                    conditions: conditions.clone(),
                };
                let mut rendered = statement.render(&scope);
                if let Value::Object(map) = &mut rendered {
                    map.remove("Resource");
                    map.remove("Sid");
                    map.insert(
                        "Principal".into(),
                        json!({ "Federated": scope.resolve(provider) }),
                    );
                }
                rendered
            }
        };
        let mut properties = Map::new();
        properties.insert(
            "AssumeRolePolicyDocument".into(),
            json!({ "Version": "2012-10-17", "Statement": [trust] }),
        );
        properties.insert("Description".into(), json!(props.description));
        properties.insert("MaxSessionDuration".into(), json!(props.max_session_secs));
        if let Some(boundary) = &props.boundary {
            properties.insert("PermissionsBoundary".into(), scope.resolve(boundary));
        }
        properties.insert(
            "Policies".into(),
            json!([{ "PolicyName": "permissions", "PolicyDocument": policy_document(&scope, &props.statements) }]),
        );
        Role {
            node: scope.add_resource("Resource", "AWS::IAM::Role", properties),
        }
    }

    /// Sets the role's permissions boundary (a managed policy ARN).
    pub fn set_permissions_boundary(&self, boundary: &Expr) {
        self.node.set_property("PermissionsBoundary", boundary);
    }
}
