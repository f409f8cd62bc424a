//! SQS queues (`AWS::SQS::Queue`), encrypted, with an optional dead-letter queue.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::iam::{grant, Grantee};
use crate::naming::{Name, NameKind};

/// Redrive of a queue's messages to a dead-letter queue.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The dead-letter queue.
    pub queue: Queue,
    /// Receives before a message moves, 1..=1000.
    pub max_receive_count: u32,
}

/// Properties of a [`Queue`].
#[derive(Debug, Clone)]
pub struct QueueProps {
    /// Physical name (without `.fifo`); `None` lets CloudFormation choose.
    pub name: Option<Name>,
    /// FIFO queue (the name gets `.fifo`).
    pub fifo: bool,
    /// `MessageRetentionPeriod` 60..=1209600 seconds.
    pub retention_secs: u32,
    /// `VisibilityTimeout` 0..=43200 seconds.
    pub visibility_timeout_secs: u32,
    /// Where messages go after too many receives.
    pub dead_letter: Option<DeadLetter>,
}

impl Default for QueueProps {
    fn default() -> QueueProps {
        QueueProps {
            name: None,
            fifo: false,
            retention_secs: 345_600,
            visibility_timeout_secs: 30,
            dead_letter: None,
        }
    }
}

/// An SQS queue, encrypted at rest with SQS-managed keys (SSE-SQS).
#[derive(Debug, Clone)]
pub struct Queue {
    node: Node,
    fifo: bool,
}

impl Queue {
    /// Creates the queue at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: QueueProps) -> Queue {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            let full = if props.fifo {
                name.to_expr().with_suffix(".fifo")
            } else {
                name.to_expr()
            };
            let longest = name.render_longest();
            let extra = if props.fifo { 5 } else { 0 };
            if !NameKind::Queue.is_valid(&longest)
                || longest.len() + extra > NameKind::Queue.max_len()
            {
                scope.violation(format!(
                    "queue name `{longest}` is invalid: at most 80 characters (with `.fifo`) of [A-Za-z0-9_-]"
                ));
            }
            properties.insert("QueueName".into(), scope.resolve(&full));
        }
        if props.fifo {
            properties.insert("FifoQueue".into(), json!(true));
        }
        if !(60..=1_209_600).contains(&props.retention_secs) {
            scope.violation(format!(
                "retention_secs {} is outside 60..=1209600 (SQS MessageRetentionPeriod)",
                props.retention_secs
            ));
        }
        properties.insert("MessageRetentionPeriod".into(), json!(props.retention_secs));
        if props.visibility_timeout_secs > 43_200 {
            scope.violation(format!(
                "visibility_timeout_secs {} is outside 0..=43200 (SQS VisibilityTimeout)",
                props.visibility_timeout_secs
            ));
        }
        properties.insert(
            "VisibilityTimeout".into(),
            json!(props.visibility_timeout_secs),
        );
        properties.insert("SqsManagedSseEnabled".into(), json!(true));
        if let Some(dead_letter) = &props.dead_letter {
            if !(1..=1000).contains(&dead_letter.max_receive_count) {
                scope.violation(format!(
                    "dead_letter max_receive_count {} is outside 1..=1000 (SQS maxReceiveCount)",
                    dead_letter.max_receive_count
                ));
            }
            if dead_letter.queue.fifo != props.fifo {
                scope
                    .violation("a dead-letter queue must be FIFO exactly when its source queue is");
            }
            properties.insert(
                "RedrivePolicy".into(),
                json!({
                    "deadLetterTargetArn": scope.resolve(&dead_letter.queue.arn()),
                    "maxReceiveCount": dead_letter.max_receive_count,
                }),
            );
        }
        let node = scope.add_resource("Resource", "AWS::SQS::Queue", properties);
        // SSE-SQS needs no key policy and no kms grants for senders; checkov only counts KMS keys.
        node.skip_check("CKV_AWS_27", "encrypted at rest with SSE-SQS (SqsManagedSseEnabled), which checkov does not recognise");
        Queue {
            node,
            fifo: props.fifo,
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Whether this is a FIFO queue.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    /// The queue's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }

    /// The queue's name (`Fn::GetAtt QueueName`).
    pub fn name(&self) -> Expr {
        self.node.attribute("QueueName")
    }

    /// The queue's URL (`Ref`).
    pub fn url(&self) -> Expr {
        self.node.reference()
    }

    /// `SendMessage`.
    pub fn grant_send(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &[
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:SendMessage",
            ],
            &[self.arn()],
        );
    }

    /// What a consumer (or an SQS event source mapping) needs.
    pub fn grant_consume(&self, grantee: &dyn Grantee) {
        grant(
            grantee,
            &self.node,
            &[
                "sqs:ChangeMessageVisibility",
                "sqs:DeleteMessage",
                "sqs:GetQueueAttributes",
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
            ],
            &[self.arn()],
        );
    }
}
