//! CloudWatch alarms (`AWS::CloudWatch::Alarm`).

use serde_json::{json, Map, Value};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::iam::{grant_unscoped, Grantee};
use crate::naming::{Name, NameKind};
use crate::sns::Topic;

/// Statistic of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    /// `Sum`.
    Sum,
    /// `Average`.
    Average,
    /// `Maximum`.
    Maximum,
    /// `Minimum`.
    Minimum,
    /// `SampleCount`.
    SampleCount,
}

/// How the metric is compared with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `GreaterThanThreshold`.
    GreaterThan,
    /// `GreaterThanOrEqualToThreshold`.
    GreaterThanOrEqual,
    /// `LessThanThreshold`.
    LessThan,
    /// `LessThanOrEqualToThreshold`.
    LessThanOrEqual,
}

/// Properties of an [`Alarm`].
#[derive(Debug, Clone)]
pub struct AlarmProps {
    /// Physical name.
    pub name: Option<Name>,
    /// What it means and what to do.
    pub description: String,
    /// Metric namespace, e.g. `AWS/Lambda`.
    pub namespace: String,
    /// Metric name, e.g. `Errors`.
    pub metric: String,
    /// Dimensions.
    pub dimensions: Vec<(String, Expr)>,
    /// Statistic.
    pub statistic: Statistic,
    /// Period: 10, 30 or a multiple of 60 seconds.
    pub period_secs: u32,
    /// Periods evaluated (period × periods ≤ one day).
    pub evaluation_periods: u32,
    /// Breaching periods needed among them (≤ evaluation_periods).
    pub datapoints_to_alarm: u32,
    /// Threshold.
    pub threshold: f64,
    /// Comparison.
    pub comparison: Comparison,
    /// Topics notified when the alarm fires.
    pub actions: Vec<Topic>,
}

/// A CloudWatch alarm on one metric. Missing data is treated as not breaching.
#[derive(Debug, Clone)]
pub struct Alarm {
    node: Node,
}

impl Alarm {
    /// Creates the alarm at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: AlarmProps) -> Alarm {
        let scope = scope.child(id);
        let p = &props;
        let mut properties = Map::new();
        if let Some(name) = &p.name {
            name.check(&scope, NameKind::Alarm);
            properties.insert("AlarmName".into(), scope.resolve(&name.to_expr()));
        }
        if p.description.len() > 1024 {
            scope.violation("description is longer than 1024 characters (AlarmDescription)");
        }
        properties.insert("AlarmDescription".into(), json!(p.description));
        if p.namespace.is_empty() || p.metric.is_empty() {
            scope.violation("namespace and metric must not be empty");
        }
        properties.insert("Namespace".into(), json!(p.namespace));
        properties.insert("MetricName".into(), json!(p.metric));
        if p.dimensions.len() > 30 {
            scope.violation("more than 30 dimensions");
        }
        let dimensions: Vec<Value> = p
            .dimensions
            .iter()
            .map(|(name, value)| json!({ "Name": name, "Value": scope.resolve(value) }))
            .collect();
        if !dimensions.is_empty() {
            properties.insert("Dimensions".into(), json!(dimensions));
        }
        let statistic = match p.statistic {
            Statistic::Sum => "Sum",
            Statistic::Average => "Average",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
            Statistic::SampleCount => "SampleCount",
        };
        properties.insert("Statistic".into(), json!(statistic));
        if !(p.period_secs == 10
            || p.period_secs == 30
            || (p.period_secs >= 60 && p.period_secs.rem_euclid(60) == 0))
        {
            scope.violation(format!(
                "period_secs {} must be 10, 30 or a multiple of 60",
                p.period_secs
            ));
        }
        properties.insert("Period".into(), json!(p.period_secs));
        if p.evaluation_periods == 0
            || u64::from(p.evaluation_periods) * u64::from(p.period_secs) > 86_400
        {
            scope.violation(format!(
                "evaluation_periods {} × period_secs {} must be at least one period and at most 86400 seconds",
                p.evaluation_periods, p.period_secs
            ));
        }
        properties.insert("EvaluationPeriods".into(), json!(p.evaluation_periods));
        if p.datapoints_to_alarm == 0 || p.datapoints_to_alarm > p.evaluation_periods {
            scope.violation(format!(
                "datapoints_to_alarm {} must be within 1..=evaluation_periods ({})",
                p.datapoints_to_alarm, p.evaluation_periods
            ));
        }
        properties.insert("DatapointsToAlarm".into(), json!(p.datapoints_to_alarm));
        if !p.threshold.is_finite() {
            scope.violation("threshold must be a finite number");
        }
        properties.insert(
            "Threshold".into(),
            json!(if p.threshold.is_finite() {
                p.threshold
            } else {
                0.0
            }),
        );
        let comparison = match p.comparison {
            Comparison::GreaterThan => "GreaterThanThreshold",
            Comparison::GreaterThanOrEqual => "GreaterThanOrEqualToThreshold",
            Comparison::LessThan => "LessThanThreshold",
            Comparison::LessThanOrEqual => "LessThanOrEqualToThreshold",
        };
        properties.insert("ComparisonOperator".into(), json!(comparison));
        properties.insert("TreatMissingData".into(), json!("notBreaching"));
        if !p.actions.is_empty() {
            let actions: Vec<Value> = p.actions.iter().map(|t| scope.resolve(&t.arn())).collect();
            properties.insert("AlarmActions".into(), json!(actions));
        }
        Alarm {
            node: scope.add_resource("Resource", "AWS::CloudWatch::Alarm", properties),
        }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The alarm's ARN (`Fn::GetAtt Arn`).
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }
}

/// `cloudwatch:GetMetricStatistics`: reading metrics (a scaler's input). CloudWatch has no
/// resource-level permissions for metric reads, so this is the one grant whose resource is `*`.
pub fn grant_metric_reads(grantee: &dyn Grantee) {
    grant_unscoped(grantee, &["cloudwatch:GetMetricStatistics"]);
}
