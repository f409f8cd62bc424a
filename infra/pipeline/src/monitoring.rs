//! Monitoring: the alerts topic and the operational alarms (errors, throttles, lanes' discarded records and
//! lag) that tell operators about it.

use tally_constructs::cloudwatch::Statistic;
use tally_constructs::lambda::Function;
use tally_constructs::sns::{Topic, TopicProps};
use tally_constructs::sqs::Queue;

use crate::context::{AlarmSpec, Context};
use crate::NameKind;

/// Adds the alerts topic, with `email` subscribed.
pub(crate) fn alerts_topic(cx: &Context<'_>, email: Option<&str>) -> Topic {
    let alerts = Topic::new(
        &cx.root,
        "Alerts",
        TopicProps {
            name: Some(cx.name(NameKind::Topic, "alerts")),
            display_name: Some("tally alerts".into()),
        },
    );
    alerts.node().skip_check("CKV_AWS_26", "CloudWatch alarms cannot publish to a topic encrypted with the AWS-managed key; messages hold alarm states only");
    if let Some(email) = email {
        alerts.subscribe_email(&cx.root, "AlertsEmail", email);
    }
    alerts
}

/// What the operational alarms watch.
pub(crate) struct Watched<'a> {
    pub(crate) collect: &'a Function,
    pub(crate) realtime: &'a Function,
    pub(crate) deferred: &'a Function,
    pub(crate) query: &'a Function,
    pub(crate) compactor: &'a Function,
    pub(crate) realtime_failures: &'a Queue,
    pub(crate) deferred_failures: &'a Queue,
    /// Where every alarm goes.
    pub(crate) alerts: &'a Topic,
}

/// Adds an alarm per function error, the hot functions' throttles, a lane's discarded records and the
/// realtime lane's lag.
pub(crate) fn operational_alarms(cx: &Context<'_>, w: &Watched<'_>) {
    let alerts = w.alerts;
    for (id, suffix, function, what) in [
        ("CollectErrors", "collect-errors", w.collect, "collect"),
        ("RealtimeErrors", "realtime-errors", w.realtime, "realtime"),
        ("DeferredErrors", "deferred-errors", w.deferred, "deferred"),
        ("QueryErrors", "query-errors", w.query, "query"),
        (
            "CompactorErrors",
            "compactor-errors",
            w.compactor,
            "compactor",
        ),
    ] {
        cx.alarm(AlarmSpec {
            id,
            suffix,
            description: &format!("tally {what} function errors: see its log group"),
            metric: (
                "AWS/Lambda",
                "Errors",
                vec![("FunctionName", function.name())],
            ),
            rule: (Statistic::Sum, 60, 5, 0.0),
            actions: vec![alerts.clone()],
        });
    }
    for (id, suffix, function, what) in [
        (
            "CollectThrottles",
            "collect-throttles",
            w.collect,
            "collect",
        ),
        (
            "RealtimeThrottles",
            "realtime-throttles",
            w.realtime,
            "realtime",
        ),
    ] {
        cx.alarm(AlarmSpec {
            id,
            suffix,
            description: &format!(
                "tally {what} function throttled: raise its concurrency or the account quota"
            ),
            metric: (
                "AWS/Lambda",
                "Throttles",
                vec![("FunctionName", function.name())],
            ),
            rule: (Statistic::Sum, 60, 1, 0.0),
            actions: vec![alerts.clone()],
        });
    }
    // A discarded range waits on a lane's on-failure queue: its events are not counted until it is
    // redriven (`cargo xtask redrive`, README "Operations").
    for (id, suffix, queue, lane) in [
        (
            "RealtimeFailuresWaiting",
            "realtime-failures-waiting",
            w.realtime_failures,
            "realtime",
        ),
        (
            "DeferredFailuresWaiting",
            "deferred-failures-waiting",
            w.deferred_failures,
            "deferred",
        ),
    ] {
        cx.alarm(AlarmSpec {
            id,
            suffix,
            description: &format!(
                "tally {lane} lane discarded records to its on-failure queue; they are not counted: run cargo xtask redrive --lane {lane}"
            ),
            metric: (
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                vec![("QueueName", queue.name())],
            ),
            rule: (Statistic::Maximum, 300, 1, 0.0),
            actions: vec![alerts.clone()],
        });
    }
    cx.alarm(AlarmSpec {
        id: "RealtimeIteratorAge",
        suffix: "realtime-iterator-age",
        description:
            "tally realtime lane is behind by more than 1 s: campaign numbers are not fresh",
        metric: (
            "AWS/Lambda",
            "IteratorAge",
            vec![("FunctionName", w.realtime.name())],
        ),
        rule: (Statistic::Maximum, 60, 3, 1000.0),
        actions: vec![alerts.clone()],
    });
}

/// Adds the deferred lane's lag alarm: to `actions` (the alerts topic, and the scaling trigger with a
/// provisioned stream: lag is a reason to add shards).
pub(crate) fn deferred_lag_alarm(cx: &Context<'_>, deferred: &Function, actions: Vec<Topic>) {
    cx.alarm(AlarmSpec {
        id: "DeferredIteratorAge",
        suffix: "deferred-iterator-age",
        description:
            "tally deferred lane is more than 15 minutes behind: add shards or deferred capacity",
        metric: (
            "AWS/Lambda",
            "IteratorAge",
            vec![("FunctionName", deferred.name())],
        ),
        rule: (Statistic::Maximum, 300, 3, 900_000.0),
        actions,
    });
}

#[cfg(test)]
mod tests {
    use super::{alerts_topic, deferred_lag_alarm};
    use crate::testing::{find, template_of, types_of};
    use crate::PipelineOptions;

    #[test]
    fn alerts_mail_the_operator_when_asked() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            alerts_topic(cx, None);
        });
        assert_eq!(types_of(&t, &["Alerts"]), ["AWS::SNS::Topic"]);
        let t = template_of(&PipelineOptions::default(), |cx| {
            alerts_topic(cx, Some("ops@example.com"));
        });
        assert_eq!(
            types_of(&t, &["Alerts"]),
            ["AWS::SNS::Topic", "AWS::SNS::Subscription"]
        );
    }

    #[test]
    fn the_deferred_lag_goes_to_every_action() {
        let t = template_of(&PipelineOptions::default(), |cx| {
            let alerts = alerts_topic(cx, None);
            let function = cx.function(crate::context::FunctionSpec {
                id: "Deferred",
                package: "deferred",
                lane: None,
                env: vec![],
                store: None,
            });
            deferred_lag_alarm(cx, &function, vec![alerts.clone(), alerts]);
        });
        let alarm = find(&t, "AWS::CloudWatch::Alarm", "DeferredIteratorAge");
        assert_eq!(alarm["Properties"]["Threshold"], 900_000.0);
        assert_eq!(
            alarm["Properties"]["AlarmActions"].as_array().map(Vec::len),
            Some(2)
        );
    }
}
