//! DynamoDB tables (`AWS::DynamoDB::Table`): on-demand, TTL, point-in-time recovery, encrypted.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::ec2::EndpointAllow;
use crate::expr::Expr;
use crate::iam::{grant, Grantee};
use crate::naming::{Name, NameKind};

/// Type of a key attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    /// `S`.
    String,
    /// `N`.
    Number,
    /// `B`.
    Binary,
}

impl AttributeType {
    fn code(self) -> &'static str {
        match self {
            AttributeType::String => "S",
            AttributeType::Number => "N",
            AttributeType::Binary => "B",
        }
    }
}

/// Properties of a [`Table`]. Billing is always on-demand (`PAY_PER_REQUEST`).
#[derive(Debug, Clone)]
pub struct TableProps {
    /// Physical name; `None` lets CloudFormation choose.
    pub name: Option<Name>,
    /// Partition key.
    pub partition_key: (String, AttributeType),
    /// Sort key.
    pub sort_key: Option<(String, AttributeType)>,
    /// Attribute holding the expiry time (Unix seconds), if items expire.
    pub ttl_attribute: Option<String>,
    /// Point-in-time recovery (continuous backups, 35 days).
    pub point_in_time_recovery: bool,
}

/// A DynamoDB table.
#[derive(Debug, Clone)]
pub struct Table {
    node: Node,
}

fn valid_attribute(name: &str) -> bool {
    (1..=255).contains(&name.len())
}

impl Table {
    /// Creates the table at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: TableProps) -> Table {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            name.check(&scope, NameKind::Table);
            properties.insert("TableName".into(), scope.resolve(&name.to_expr()));
        }
        properties.insert("BillingMode".into(), json!("PAY_PER_REQUEST"));
        let mut definitions = vec![
            json!({ "AttributeName": props.partition_key.0, "AttributeType": props.partition_key.1.code() }),
        ];
        let mut schema = vec![json!({ "AttributeName": props.partition_key.0, "KeyType": "HASH" })];
        let mut keys = vec![&props.partition_key.0];
        if let Some((name, kind)) = &props.sort_key {
            definitions.push(json!({ "AttributeName": name, "AttributeType": kind.code() }));
            schema.push(json!({ "AttributeName": name, "KeyType": "RANGE" }));
            keys.push(name);
            if *name == props.partition_key.0 {
                scope.violation(format!(
                    "sort key `{name}` is also the partition key; use two attributes"
                ));
            }
        }
        for key in keys {
            if !valid_attribute(key) {
                scope.violation(format!(
                    "key attribute name `{}` must be 1..=255 bytes",
                    key.escape_debug()
                ));
            }
        }
        properties.insert("AttributeDefinitions".into(), json!(definitions));
        properties.insert("KeySchema".into(), json!(schema));
        if let Some(ttl) = &props.ttl_attribute {
            if !valid_attribute(ttl) {
                scope.violation(format!(
                    "ttl attribute name `{}` must be 1..=255 bytes",
                    ttl.escape_debug()
                ));
            }
            properties.insert(
                "TimeToLiveSpecification".into(),
                json!({ "AttributeName": ttl, "Enabled": true }),
            );
        }
        if props.point_in_time_recovery {
            properties.insert(
                "PointInTimeRecoverySpecification".into(),
                json!({ "PointInTimeRecoveryEnabled": true }),
            );
        }
        properties.insert("SSESpecification".into(), json!({ "SSEEnabled": true }));
        Table {
            node: scope.add_resource("Resource", "AWS::DynamoDB::Table", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The table's name (`Ref`).
    pub fn name(&self) -> Expr {
        self.node.reference()
    }

    /// The table's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }

    /// Item reads: get, batch get, query, scan, condition checks.
    pub fn grant_read(&self, grantee: &dyn Grantee) {
        grant(grantee, &self.node, &READ, &[self.arn()]);
    }

    /// Item writes: put, update, delete, batch write (transactions use the same actions).
    pub fn grant_write(&self, grantee: &dyn Grantee) {
        grant(grantee, &self.node, &WRITE, &[self.arn()]);
    }

    /// [`Table::grant_read`] and [`Table::grant_write`].
    pub fn grant_read_write(&self, grantee: &dyn Grantee) {
        self.grant_read(grantee);
        self.grant_write(grantee);
    }

    /// What a VPC endpoint lets through for this table: the actions of [`Table::grant_read_write`]
    /// on this table only.
    pub fn endpoint_allow(&self) -> EndpointAllow {
        let mut actions: Vec<&'static str> = READ.iter().chain(WRITE.iter()).copied().collect();
        actions.sort_unstable();
        actions.dedup();
        EndpointAllow {
            actions,
            resources: vec![self.arn()],
        }
    }
}

const READ: [&str; 6] = [
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
];
const WRITE: [&str; 5] = [
    "dynamodb:BatchWriteItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
];
