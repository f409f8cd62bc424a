//! SNS topics (`AWS::SNS::Topic`) and their subscriptions.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::lambda::Function;
use crate::naming::{Name, NameKind};

/// Properties of a [`Topic`].
#[derive(Debug, Clone, Default)]
pub struct TopicProps {
    /// Physical name; `None` lets CloudFormation choose.
    pub name: Option<Name>,
    /// Display name (≤ 100 characters).
    pub display_name: Option<String>,
}

/// An SNS topic.
#[derive(Debug, Clone)]
pub struct Topic {
    node: Node,
}

impl Topic {
    /// Creates the topic at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: TopicProps) -> Topic {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            name.check(&scope, NameKind::Topic);
            properties.insert("TopicName".into(), scope.resolve(&name.to_expr()));
        }
        if let Some(display) = &props.display_name {
            if display.chars().count() > 100 {
                scope.violation("display_name is longer than 100 characters (SNS DisplayName)");
            }
            properties.insert("DisplayName".into(), json!(display));
        }
        Topic {
            node: scope.add_resource("Resource", "AWS::SNS::Topic", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The topic's ARN (`Ref`).
    pub fn arn(&self) -> Expr {
        self.node.reference()
    }

    /// Subscribes `function` (and lets SNS invoke it for this topic only).
    pub fn subscribe_function(&self, scope: &Scope, id: &str, function: &Function) -> Node {
        let scope = scope.child(id);
        function.allow_invoke(&scope, "Permission", "sns.amazonaws.com", &self.arn());
        let mut properties = Map::new();
        properties.insert("Protocol".into(), json!("lambda"));
        properties.insert("Endpoint".into(), scope.resolve(&function.arn()));
        properties.insert("TopicArn".into(), scope.resolve(&self.arn()));
        scope.add_resource("Resource", "AWS::SNS::Subscription", properties)
    }

    /// Lets AWS service `service` (`budgets.amazonaws.com`) publish to this topic on behalf of this account
    /// only (`aws:SourceAccount`): an `AWS::SNS::TopicPolicy`.
    pub fn allow_publish_from(&self, scope: &Scope, id: &str, service: &str) -> Node {
        let scope = scope.child(id);
        let mut properties = Map::new();
        properties.insert("Topics".into(), json!([scope.resolve(&self.arn())]));
        properties.insert(
            "PolicyDocument".into(),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": { "Service": service },
                    "Action": "sns:Publish",
                    "Resource": scope.resolve(&self.arn()),
                    "Condition": {
                        "StringEquals": {
                            "aws:SourceAccount": scope.resolve(&Expr::account_id())
                        }
                    },
                }],
            }),
        );
        scope.add_resource("Resource", "AWS::SNS::TopicPolicy", properties)
    }

    /// Subscribes an e-mail address (the owner confirms by mail).
    pub fn subscribe_email(&self, scope: &Scope, id: &str, address: &str) -> Node {
        let scope = scope.child(id);
        let plausible = address.split_once('@').is_some_and(|(user, domain)| {
            !user.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        }) && !address.chars().any(|c| c.is_whitespace() || c.is_control());
        if !plausible {
            scope.violation(format!(
                "`{}` is not an e-mail address (user@domain.tld)",
                address.escape_debug()
            ));
        }
        let mut properties = Map::new();
        properties.insert("Protocol".into(), json!("email"));
        properties.insert("Endpoint".into(), json!(address));
        properties.insert("TopicArn".into(), scope.resolve(&self.arn()));
        scope.add_resource("Resource", "AWS::SNS::Subscription", properties)
    }
}
