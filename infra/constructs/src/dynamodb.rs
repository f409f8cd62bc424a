//! DynamoDB tables (`AWS::DynamoDB::Table`): on-demand or provisioned with auto scaling, TTL,
//! point-in-time recovery, encrypted.
//!
//! Provisioned capacity is always auto scaled: per dimension (write, read) an
//! `AWS::ApplicationAutoScaling::ScalableTarget` (`table/<name>`, between the given minimum and maximum)
//! and a target-tracking `AWS::ApplicationAutoScaling::ScalingPolicy` on DynamoDB's predefined
//! utilisation metric. The targets name no `RoleARN`: Application Auto Scaling then uses (and creates on
//! first use) its service-linked role for DynamoDB, `AWSServiceRoleForApplicationAutoScaling_DynamoDBTable`,
//! so the stack needs no IAM role of its own for it.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
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

/// Bounds of one auto-scaled capacity dimension, in capacity units per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapacityRange {
    /// The floor auto scaling never goes below (≥ 1); also the table's capacity at creation.
    pub min: u32,
    /// The ceiling (≥ `min`, ≤ [`MAX_CAPACITY_UNITS`]).
    pub max: u32,
}

/// Provisioned capacity, scaled by Application Auto Scaling to keep consumed / provisioned at the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoScaling {
    /// Write capacity units.
    pub write: CapacityRange,
    /// Read capacity units.
    pub read: CapacityRange,
    /// Target utilisation, percent ([`TARGET_UTILIZATION_RANGE`]): 70 leaves 30 % headroom for a burst
    /// before scale-out follows.
    pub target_utilization_percent: u32,
}

/// How a table pays for throughput.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    /// `PAY_PER_REQUEST`: per request unit, no capacity to manage.
    OnDemand,
    /// `PROVISIONED` with auto scaling: per capacity-unit-hour held.
    Provisioned(AutoScaling),
}

/// Target utilisations Application Auto Scaling accepts for DynamoDB, percent.
pub const TARGET_UTILIZATION_RANGE: (u32, u32) = (20, 90);
/// Largest capacity per dimension a table may scale to here: DynamoDB's default per-table quota
/// (40,000 read and 40,000 write units in us-east-1; raise the quota before raising this).
pub const MAX_CAPACITY_UNITS: u32 = 40_000;

/// Properties of a [`Table`].
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
    /// On-demand or provisioned with auto scaling.
    pub billing: Billing,
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
        match props.billing {
            Billing::OnDemand => {
                properties.insert("BillingMode".into(), json!("PAY_PER_REQUEST"));
            }
            Billing::Provisioned(scaling) => {
                check_scaling(&scope, &scaling);
                properties.insert("BillingMode".into(), json!("PROVISIONED"));
                properties.insert(
                    "ProvisionedThroughput".into(),
                    json!({
                        "ReadCapacityUnits": scaling.read.min,
                        "WriteCapacityUnits": scaling.write.min,
                    }),
                );
            }
        }
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
        let node = scope.add_resource("Resource", "AWS::DynamoDB::Table", properties);
        if let Billing::Provisioned(scaling) = props.billing {
            let resource_id = Expr::concat([Expr::text("table/"), node.reference()]);
            for dimension in [Dimension::Write, Dimension::Read] {
                dimension.add(&scope, &resource_id, &scaling);
            }
        }
        Table { node }
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
}

/// The rules AWS would reject at deploy time (or that defeat the point of scaling), checked at synth.
fn check_scaling(scope: &Scope, scaling: &AutoScaling) {
    for (what, range) in [("write", scaling.write), ("read", scaling.read)] {
        if range.min < 1 {
            scope.violation(format!(
                "{what} capacity minimum is 0: a provisioned table needs at least 1 unit; give min >= 1"
            ));
        }
        if range.min > range.max {
            scope.violation(format!(
                "{what} capacity minimum {} is above its maximum {}; give min <= max",
                range.min, range.max
            ));
        }
        if range.max > MAX_CAPACITY_UNITS {
            scope.violation(format!(
                "{what} capacity maximum {} is above DynamoDB's default per-table quota of {MAX_CAPACITY_UNITS} units; lower it (or raise the quota first)",
                range.max
            ));
        }
    }
    let (low, high) = TARGET_UTILIZATION_RANGE;
    let target = scaling.target_utilization_percent;
    if !(low..=high).contains(&target) {
        scope.violation(format!(
            "target utilization {target} % is outside {low}..={high} % (Application Auto Scaling's range for DynamoDB); 70 is usual"
        ));
    }
}

/// One auto-scaled capacity dimension of a table.
#[derive(Debug, Clone, Copy)]
enum Dimension {
    Write,
    Read,
}

impl Dimension {
    /// Construct id prefix: `Write` → `WriteScaling`, `WriteScalingPolicy`.
    fn id(self) -> &'static str {
        match self {
            Dimension::Write => "Write",
            Dimension::Read => "Read",
        }
    }

    fn range(self, scaling: &AutoScaling) -> CapacityRange {
        match self {
            Dimension::Write => scaling.write,
            Dimension::Read => scaling.read,
        }
    }

    fn scalable_dimension(self) -> &'static str {
        match self {
            Dimension::Write => "dynamodb:table:WriteCapacityUnits",
            Dimension::Read => "dynamodb:table:ReadCapacityUnits",
        }
    }

    fn metric(self) -> &'static str {
        match self {
            Dimension::Write => "DynamoDBWriteCapacityUtilization",
            Dimension::Read => "DynamoDBReadCapacityUtilization",
        }
    }

    /// The scalable target (no `RoleARN`: the service-linked role) and its target-tracking policy.
    fn add(self, scope: &Scope, resource_id: &Expr, scaling: &AutoScaling) {
        let range = self.range(scaling);
        let mut target = Map::new();
        target.insert("ServiceNamespace".into(), json!("dynamodb"));
        target.insert("ScalableDimension".into(), json!(self.scalable_dimension()));
        target.insert("ResourceId".into(), scope.resolve(resource_id));
        target.insert("MinCapacity".into(), json!(range.min));
        target.insert("MaxCapacity".into(), json!(range.max));
        let target = scope.add_resource(
            &format!("{}Scaling", self.id()),
            "AWS::ApplicationAutoScaling::ScalableTarget",
            target,
        );
        let mut policy = Map::new();
        policy.insert(
            "PolicyName".into(),
            json!(format!("{}-utilization", self.id().to_lowercase())),
        );
        policy.insert("PolicyType".into(), json!("TargetTrackingScaling"));
        policy.insert("ScalingTargetId".into(), scope.resolve(&target.reference()));
        policy.insert(
            "TargetTrackingScalingPolicyConfiguration".into(),
            json!({
                "PredefinedMetricSpecification": { "PredefinedMetricType": self.metric() },
                "TargetValue": f64::from(scaling.target_utilization_percent),
            }),
        );
        scope.add_resource(
            &format!("{}ScalingPolicy", self.id()),
            "AWS::ApplicationAutoScaling::ScalingPolicy",
            policy,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Stack;
    use serde_json::Value;

    /// The resources of a stack holding one table, by type then by logical id.
    fn synth(billing: Billing) -> Map<String, Value> {
        let stack = Stack::new("app");
        Table::new(
            &stack.root(),
            "Metrics",
            TableProps {
                name: None,
                partition_key: ("pk".into(), AttributeType::String),
                sort_key: None,
                ttl_attribute: None,
                point_in_time_recovery: false,
                billing,
            },
        );
        let template = stack.synth().expect("the table synthesizes");
        template["Resources"]
            .as_object()
            .expect("resources")
            .clone()
    }

    /// The one resource of `type_name` whose logical id starts with `prefix`: (logical id, resource).
    fn one<'a>(
        resources: &'a Map<String, Value>,
        type_name: &str,
        prefix: &str,
    ) -> (&'a str, &'a Value) {
        let found: Vec<_> = resources
            .iter()
            .filter(|(id, r)| r["Type"] == type_name && id.starts_with(prefix))
            .collect();
        assert_eq!(found.len(), 1, "{type_name} {prefix}: {resources:#?}");
        (found[0].0.as_str(), found[0].1)
    }

    #[test]
    fn on_demand_has_no_throughput_and_no_scaling() {
        let resources = synth(Billing::OnDemand);
        assert_eq!(resources.len(), 1);
        let (_, table) = one(&resources, "AWS::DynamoDB::Table", "Metrics");
        assert_eq!(table["Properties"]["BillingMode"], "PAY_PER_REQUEST");
        assert!(table["Properties"].get("ProvisionedThroughput").is_none());
    }

    #[test]
    fn provisioned_emits_throughput_targets_and_policies() {
        let resources = synth(Billing::Provisioned(AutoScaling {
            write: CapacityRange { min: 5, max: 400 },
            read: CapacityRange { min: 3, max: 90 },
            target_utilization_percent: 70,
        }));
        assert_eq!(resources.len(), 5, "the table, two targets, two policies");
        let (table_id, table) = one(&resources, "AWS::DynamoDB::Table", "Metrics");
        assert_eq!(table["Properties"]["BillingMode"], "PROVISIONED");
        assert_eq!(
            table["Properties"]["ProvisionedThroughput"],
            json!({ "ReadCapacityUnits": 3, "WriteCapacityUnits": 5 })
        );
        let target_type = "AWS::ApplicationAutoScaling::ScalableTarget";
        let policy_type = "AWS::ApplicationAutoScaling::ScalingPolicy";
        let (write_id, write) = one(&resources, target_type, "MetricsWriteScaling");
        assert_eq!(
            write["Properties"],
            json!({
                "MaxCapacity": 400,
                "MinCapacity": 5,
                "ResourceId": { "Fn::Sub": format!("table/${{{table_id}}}") },
                "ScalableDimension": "dynamodb:table:WriteCapacityUnits",
                "ServiceNamespace": "dynamodb"
            }),
            "no RoleARN: the service-linked role"
        );
        let (read_id, read) = one(&resources, target_type, "MetricsReadScaling");
        assert_eq!(
            read["Properties"]["ScalableDimension"],
            "dynamodb:table:ReadCapacityUnits"
        );
        assert_eq!(
            (
                &read["Properties"]["MinCapacity"],
                &read["Properties"]["MaxCapacity"]
            ),
            (&json!(3), &json!(90))
        );
        let (_, policy) = one(&resources, policy_type, "MetricsWriteScalingPolicy");
        assert_eq!(
            policy["Properties"],
            json!({
                "PolicyName": "write-utilization",
                "PolicyType": "TargetTrackingScaling",
                "ScalingTargetId": { "Ref": write_id },
                "TargetTrackingScalingPolicyConfiguration": {
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "DynamoDBWriteCapacityUtilization"
                    },
                    "TargetValue": 70.0
                }
            })
        );
        let (_, policy) = one(&resources, policy_type, "MetricsReadScalingPolicy");
        assert_eq!(
            policy["Properties"]["ScalingTargetId"],
            json!({ "Ref": read_id })
        );
        assert_eq!(
            policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
                ["PredefinedMetricSpecification"]["PredefinedMetricType"],
            "DynamoDBReadCapacityUtilization"
        );
    }
}
