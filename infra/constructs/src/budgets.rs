//! A monthly cost budget (`AWS::Budgets::Budget`) that notifies an SNS topic and e-mail addresses when the
//! month's actual cost passes a share of the limit and when the forecast passes the limit.
//!
//! A budget watches the whole account's cost (a budget filtered to one stack's tag needs the tag activated
//! as a cost allocation tag first, which CloudFormation cannot do). The first two budgets of an account are
//! free, each further one costs $0.02 a day.

use serde_json::{json, Map, Value};

use crate::core::{Node, Scope};
use crate::sns::Topic;

/// Properties of a [`Budget`].
#[derive(Debug, Clone)]
pub struct BudgetProps {
    /// Monthly limit, whole USD (≥ 1).
    pub monthly_usd: u32,
    /// Percent of the limit the month's actual cost may reach before the first notification (1..=100).
    pub actual_percent: u32,
    /// Who is told: a topic (SNS) and e-mail addresses (at most 10).
    pub topic: Option<Topic>,
    /// E-mail subscribers.
    pub emails: Vec<String>,
}

/// A monthly cost budget with notifications.
#[derive(Debug, Clone)]
pub struct Budget {
    node: Node,
}

impl Budget {
    /// Creates the budget at `scope/id`; with a topic, also the topic policy that lets Budgets publish.
    pub fn new(scope: &Scope, id: &str, props: BudgetProps) -> Budget {
        let scope = scope.child(id);
        if props.monthly_usd == 0 {
            scope.violation("monthly_usd is 0: a budget needs a limit of at least 1 USD");
        }
        if !(1..=100).contains(&props.actual_percent) {
            scope.violation(format!(
                "actual_percent {} is outside 1..=100",
                props.actual_percent
            ));
        }
        if props.topic.is_none() && props.emails.is_empty() {
            scope.violation("a budget notification needs a topic or an e-mail subscriber");
        }
        if props.emails.len() > 10 {
            scope.violation("at most 10 e-mail subscribers per budget notification");
        }
        for email in &props.emails {
            if email.contains(['\n', '\r']) || !email.contains('@') {
                scope.violation(format!(
                    "`{}` is not an e-mail address (user@domain.tld)",
                    email.escape_debug()
                ));
            }
        }
        let mut subscribers: Vec<Value> = Vec::new();
        if let Some(topic) = &props.topic {
            subscribers.push(json!({
                "SubscriptionType": "SNS",
                "Address": scope.resolve(&topic.arn()),
            }));
        }
        subscribers.extend(
            props
                .emails
                .iter()
                .map(|e| json!({ "SubscriptionType": "EMAIL", "Address": e })),
        );
        let notify = |kind: &str, percent: u32| {
            json!({
                "Notification": {
                    "NotificationType": kind,
                    "ComparisonOperator": "GREATER_THAN",
                    "Threshold": percent,
                    "ThresholdType": "PERCENTAGE",
                },
                "Subscribers": subscribers,
            })
        };
        let mut properties = Map::new();
        properties.insert(
            "Budget".into(),
            json!({
                "BudgetType": "COST",
                "TimeUnit": "MONTHLY",
                "BudgetLimit": { "Amount": props.monthly_usd, "Unit": "USD" },
            }),
        );
        properties.insert(
            "NotificationsWithSubscribers".into(),
            json!([
                notify("ACTUAL", props.actual_percent),
                notify("FORECASTED", 100)
            ]),
        );
        let node = scope.add_resource("Resource", "AWS::Budgets::Budget", properties);
        if let Some(topic) = &props.topic {
            topic.allow_publish_from(&scope, "TopicPolicy", "budgets.amazonaws.com");
        }
        Budget { node }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }
}
