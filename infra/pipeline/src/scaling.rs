//! Shard scaling (provisioned streams only): the scaler function, woken by the stream's write-throttle alarm
//! through a topic and by a five-minute schedule, keeps the shard count between the floor and the ceiling.

use tally_constructs::cloudwatch::Statistic;
use tally_constructs::events::{ScheduleProps, ScheduleRule};
use tally_constructs::kinesis::Stream;
use tally_constructs::sns::{Topic, TopicProps};
use tally_constructs::Expr;

use crate::context::{AlarmSpec, Context, FunctionSpec, ENV_PLAIN, LOGS_KEY, SHARED_POOL};
use crate::{env, NameKind};

/// The scaler's bounds and what it scales.
pub(crate) struct ScalingProps<'a> {
    /// The shard floor.
    pub(crate) min_shards: u32,
    /// The shard ceiling.
    pub(crate) max_shards: u32,
    pub(crate) events: &'a Stream,
    /// Where the scaling alarms also go.
    pub(crate) alerts: &'a Topic,
}

/// Adds the scaler, its grants, its trigger topic and schedule, and the alarms on throttled writes and on
/// the scaler's own errors. Returns the topic that wakes the scaler (an alarm that should add shards publishes
/// to it).
pub(crate) fn scaler(cx: &Context<'_>, props: ScalingProps<'_>) -> Topic {
    let root = &cx.root;
    let events = props.events;
    let scaler = cx.function(FunctionSpec {
        id: "Scaler",
        package: "scaler",
        lane: None,
        env: vec![
            (env::STREAM_NAME, events.name()),
            (env::MIN_SHARDS, Expr::text(props.min_shards.to_string())),
            (env::MAX_SHARDS, Expr::text(props.max_shards.to_string())),
        ],
        store: None,
    });
    events.grant_scale(&scaler);
    tally_constructs::cloudwatch::grant_metric_reads(&scaler);
    scaler.node().skip_check(
        "CKV_AWS_116",
        "invoked by SNS and EventBridge, which retry; the next schedule tick re-decides anyway",
    );
    scaler.node().skip_check("CKV_AWS_115", SHARED_POOL);
    scaler.node().skip_check("CKV_AWS_173", ENV_PLAIN);
    scaler.log_group().skip_check("CKV_AWS_158", LOGS_KEY);
    let trigger = Topic::new(
        root,
        "ScalingTrigger",
        TopicProps {
            name: Some(cx.name(NameKind::Topic, "scaling")),
            display_name: None,
        },
    );
    trigger.node().skip_check("CKV_AWS_26", "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key; messages hold alarm states only");
    trigger.subscribe_function(root, "ScalerSubscription", &scaler);
    ScheduleRule::new(
        root,
        "ScalerSchedule",
        ScheduleProps {
            name: Some(cx.name(NameKind::Rule, "scaler")),
            schedule: "rate(5 minutes)".into(),
            target: scaler.clone(),
        },
    );
    cx.alarm(AlarmSpec {
        id: "StreamWriteThrottled",
        suffix: "stream-write-throttled",
        description: "tally events stream refuses writes: the scaler adds shards",
        metric: (
            "AWS/Kinesis",
            "WriteProvisionedThroughputExceeded",
            vec![("StreamName", events.name())],
        ),
        rule: (Statistic::Sum, 60, 1, 0.0),
        actions: vec![trigger.clone(), props.alerts.clone()],
    });
    cx.alarm(AlarmSpec {
        id: "ScalerErrors",
        suffix: "scaler-errors",
        description: "tally scaler function errors: shard count is not managed",
        metric: (
            "AWS/Lambda",
            "Errors",
            vec![("FunctionName", scaler.name())],
        ),
        rule: (Statistic::Sum, 300, 1, 0.0),
        actions: vec![props.alerts.clone()],
    });
    trigger
}

#[cfg(test)]
mod tests {
    use super::{scaler, ScalingProps};
    use crate::ingest::{events_stream, EventsProps};
    use crate::monitoring::alerts_topic;
    use crate::testing::{env_names, find, role_actions, template_of, types_of};
    use crate::{env, PipelineOptions, StreamCapacity};

    #[test]
    fn scales_the_stream_between_its_bounds() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            let events = events_stream(
                cx,
                EventsProps {
                    capacity: StreamCapacity::Provisioned {
                        initial_shards: 2,
                        min_shards: 1,
                        max_shards: 8,
                    },
                    retention_hours: 24,
                },
            );
            let alerts = alerts_topic(cx, None);
            scaler(
                cx,
                ScalingProps {
                    min_shards: 1,
                    max_shards: 8,
                    events: &events,
                    alerts: &alerts,
                },
            );
        });
        let actions = role_actions(&t, "Scaler");
        assert!(actions.contains("kinesis:UpdateShardCount"), "{actions:?}");
        assert!(
            actions.contains("cloudwatch:GetMetricStatistics"),
            "{actions:?}"
        );
        assert!(
            !actions.iter().any(|a| a.starts_with("kinesis:Put")),
            "{actions:?}"
        );
        assert_eq!(
            env_names(&t, "Scaler"),
            [
                env::STREAM_NAME,
                env::MIN_SHARDS,
                env::MAX_SHARDS,
                env::RUST_LOG
            ]
        );
        let function = find(&t, "AWS::Lambda::Function", "Scaler");
        assert_eq!(
            function["Properties"]["Environment"]["Variables"][env::MAX_SHARDS],
            "8"
        );
        assert_eq!(types_of(&t, &["ScalingTrigger"]), ["AWS::SNS::Topic"]);
        let rule = find(&t, "AWS::Events::Rule", "ScalerSchedule");
        assert_eq!(rule["Properties"]["ScheduleExpression"], "rate(5 minutes)");
        let alarm = find(&t, "AWS::CloudWatch::Alarm", "StreamWriteThrottled");
        assert_eq!(
            alarm["Properties"]["AlarmActions"].as_array().map(Vec::len),
            Some(2)
        );
    }
}
