//! EventBridge schedule rules (`AWS::Events::Rule`) that invoke a function.

use serde_json::{json, Map};

use crate::core::{Node, Scope};
use crate::expr::Expr;
use crate::lambda::Function;
use crate::naming::{Name, NameKind};

/// Properties of a [`ScheduleRule`].
#[derive(Debug, Clone)]
pub struct ScheduleProps {
    /// Physical name.
    pub name: Option<Name>,
    /// `rate(N unit)` or `cron(…)`.
    pub schedule: String,
    /// The function to invoke.
    pub target: Function,
}

/// A rule that invokes a function on a schedule (with the permission EventBridge needs).
#[derive(Debug, Clone)]
pub struct ScheduleRule {
    node: Node,
}

/// Whether `expr` is a valid EventBridge schedule expression (`rate(1 minute)`,
/// `rate(5 minutes)`, `cron(0/15 * * * ? *)`).
pub fn valid_schedule(expr: &str) -> bool {
    if let Some(inner) = expr.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        let Some((n, unit)) = inner.split_once(' ') else {
            return false;
        };
        let Ok(n) = n.parse::<u32>() else {
            return false;
        };
        if n == 0 || n.to_string().len() != inner.split(' ').next().map_or(0, str::len) {
            return false;
        }
        let singular = matches!(unit, "minute" | "hour" | "day");
        let plural = matches!(unit, "minutes" | "hours" | "days");
        return (n == 1 && singular) || (n > 1 && plural);
    }
    if let Some(inner) = expr.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        return inner.split(' ').filter(|f| !f.is_empty()).count() == 6
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " */,-?#L".contains(c));
    }
    false
}

impl ScheduleRule {
    /// Creates the rule at `scope/id`.
    pub fn new(scope: &Scope, id: &str, props: ScheduleProps) -> ScheduleRule {
        let scope = scope.child(id);
        let mut properties = Map::new();
        if let Some(name) = &props.name {
            name.check(&scope, NameKind::Rule);
            properties.insert("Name".into(), scope.resolve(&name.to_expr()));
        }
        if !valid_schedule(&props.schedule) {
            scope.violation(format!(
                "schedule `{}` is not an EventBridge schedule expression: use `rate(5 minutes)` or `cron(m h dom mon dow y)`",
                props.schedule.escape_debug()
            ));
        }
        properties.insert("ScheduleExpression".into(), json!(props.schedule));
        properties.insert("State".into(), json!("ENABLED"));
        properties.insert(
            "Targets".into(),
            json!([{ "Arn": scope.resolve(&props.target.arn()), "Id": "Target0" }]),
        );
        let node = scope.add_resource("Resource", "AWS::Events::Rule", properties);
        props.target.allow_invoke(
            &scope,
            "Permission",
            "events.amazonaws.com",
            &node.attribute("Arn"),
        );
        ScheduleRule { node }
    }

    /// The resource handle.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The rule's ARN.
    pub fn arn(&self) -> Expr {
        self.node.attribute("Arn")
    }
}

#[cfg(test)]
mod tests {
    use super::valid_schedule;

    fn check(expr: &str, ok: bool) {
        assert_eq!(valid_schedule(expr), ok, "{expr:?}");
    }

    #[test]
    fn schedules() {
        check("rate(1 minute)", true);
        check("rate(15 minutes)", true);
        check("rate(1 minutes)", false);
        check("rate(2 minute)", false);
        check("rate(0 minutes)", false);
        check("rate(-1 minutes)", false);
        check("rate(01 minutes)", false);
        check("rate(5 weeks)", false);
        check("rate(5minutes)", false);
        check("rate 5 minutes", false);
        check("cron(0/15 * * * ? *)", true);
        check("cron(0 12 * * ?)", false);
        check("cron(0 12 * * ? *); rm -rf", false);
        check("", false);
    }
}
