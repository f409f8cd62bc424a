//! Schedules through the local cloud, with real function processes: a sped-up `rate(1 minute)` fires
//! repeatedly with EventBridge's event, `Input` reaches its target as given, a disabled rule never fires, a
//! failing target is tried three times then dropped, and stopping the local cloud stops the schedules.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::esm::RuntimeOptions;

use crate::lambda::testfn;
use crate::support::{batches, until, TempDir};

/// 600 × real time: a minute lasts 100 ms, Lambda's retry delays 100 and 200 ms.
const SPEEDUP: u32 = 600;

fn options(dir: &TempDir, rules: Value, env: &[(&str, &str)]) -> CloudOptions {
    let log = dir.0.join("events.jsonl").display().to_string();
    let mut resources = json!({
        "App": {"Type": "AWS::Lambda::Function", "Properties": {
            "FunctionName": "app", "Code": {"S3Bucket": "assets", "S3Key": {"Ref": "AppCodeKey"}}, "Timeout": 5,
            "Environment": {"Variables": {"TESTFN_LOG": log}}}},
    });
    for (id, rule) in rules.as_object().unwrap() {
        resources[id] = json!({"Type": "AWS::Events::Rule", "Properties": rule});
    }
    CloudOptions {
        template: json!({"Parameters": {"AppCodeKey": {"Type": "String"}}, "Resources": resources}),
        stack_name: "sched".into(),
        state_dir: dir.0.join("state"),
        durability: Default::default(),
        parameters: BTreeMap::from([("AppCodeKey".to_owned(), testfn().to_owned())]),
        endpoint_port: 0,
        url_port_base: 0,
        function_env: BTreeMap::from([(
            "app".to_owned(),
            env.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )]),
        terminal_logs: false,
        skip_unbuilt: false,
        mappings: RuntimeOptions::default(),
        schedule_speedup: SPEEDUP,
    }
}

fn app() -> Value {
    json!({"Fn::GetAtt": ["App", "Arn"]})
}

/// The logged events that are scheduled events (not constant inputs).
fn scheduled(log: &std::path::Path) -> Vec<Value> {
    batches(log)
        .into_iter()
        .map(|line| line["event"].clone())
        .filter(|event| event["source"] == "aws.events")
        .collect()
}

fn unix_ms(iso: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 { iso[range].parse().unwrap() };
    let days = tally_domain::calendar::days_from_civil(
        field(0..4),
        field(5..7) as u32,
        field(8..10) as u32,
    );
    ((days * 24 + field(11..13)) * 60 + field(14..16)) * 60_000 + field(17..19) * 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_rule_fires_its_targets_with_the_scheduled_event_and_a_disabled_rule_never_fires() {
    let dir = TempDir::new("sched-rate");
    let log = dir.0.join("events.jsonl");
    let rules = json!({
        "Tick": {"Name": "tick", "ScheduleExpression": "rate(1 minute)", "Targets": [
            {"Arn": app(), "Id": "Event"},
            {"Arn": app(), "Id": "Constant", "Input": "{\"log\": true, \"tag\": \"constant\"}"}]},
        "Off": {"ScheduleExpression": "rate(1 minute)", "State": "DISABLED",
            "Targets": [{"Arn": app(), "Id": "Off", "Input": "{\"log\": true, \"tag\": \"disabled\"}"}]},
    });
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let cloud = LocalCloud::start(options(&dir, rules, &[])).await.unwrap();
    assert_eq!(cloud.schedules.keys().collect::<Vec<_>>(), ["Tick"]);
    assert!(cloud
        .resources
        .skipped_report()
        .contains("Off (AWS::Events::Rule): State is DISABLED: rate(1 minute) never fires"));
    // Six fires, and both targets of each delivered: a busy machine can still be delivering the last fire's
    // second target when the first target's sixth event is logged.
    let runner = cloud.schedules["Tick"].clone();
    assert!(
        until(Duration::from_secs(20), || scheduled(&log).len() >= 6
            && runner.stats().delivered >= 12)
        .await,
        "fired {} times, {:?}",
        scheduled(&log).len(),
        runner.stats()
    );
    cloud.shutdown();

    let mut events = scheduled(&log);
    events.sort_by_key(|e| e["time"].as_str().unwrap().to_owned());
    let arn = "arn:aws:events:us-east-1:123456789012:rule/tick";
    for event in &events {
        let id = event["id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "{event}");
        assert_eq!(
            event,
            &json!({"version": "0", "id": id, "detail-type": "Scheduled Event", "source": "aws.events",
                    "account": "123456789012", "time": event["time"], "region": "us-east-1",
                    "resources": [arn], "detail": {}})
        );
    }
    // One event per fire, a schedule minute apart, from the start (sped up: the first is a minute of schedule
    // time after the start, not before).
    let times: Vec<i64> = events
        .iter()
        .map(|e| unix_ms(e["time"].as_str().unwrap()))
        .collect();
    assert!(
        times[0] >= started_ms / 1000 * 1000 + 59_000,
        "{times:?} vs {started_ms}"
    );
    for pair in times.windows(2) {
        assert_eq!(pair[1] - pair[0], 60_000, "{times:?}");
    }
    let ids: std::collections::BTreeSet<String> =
        events.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids.len(), events.len());
    // The constant input reaches its target as given; the disabled rule's never does.
    let constants: Vec<Value> = batches(&log)
        .into_iter()
        .map(|line| line["event"].clone())
        .filter(|event| event.get("tag").is_some())
        .collect();
    assert!(!constants.is_empty());
    assert!(constants
        .iter()
        .all(|e| e == &json!({"log": true, "tag": "constant"})));
    // Metered as the function's invocations, like the other invocation paths.
    let stats = cloud.schedules["Tick"].stats();
    let metered = cloud.aws.meter.snapshot().lambda.functions["app"].invocations;
    assert!(
        metered >= stats.delivered && stats.delivered >= 12,
        "{metered} {stats:?}"
    );
    assert_eq!(stats.dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_target_is_retried_twice_then_dropped_and_stopping_stops_the_schedules() {
    let dir = TempDir::new("sched-fail");
    let log = dir.0.join("events.jsonl");
    // Every 5 minutes (500 ms here): a fire's three attempts (0, +100, +300 ms) end before the next fire.
    let rules = json!({"Tick": {"ScheduleExpression": "rate(5 minutes)", "Targets": [{"Arn": app(), "Id": "T"}]}});
    let cloud = LocalCloud::start(options(&dir, rules, &[("TESTFN_SCHEDULED", "error")]))
        .await
        .unwrap();
    let runner = cloud.schedules["Tick"].clone();
    assert!(
        until(Duration::from_secs(30), || runner.stats().dropped >= 3).await,
        "{:?}",
        runner.stats()
    );
    cloud.shutdown();
    let stats = runner.stats();
    assert_eq!(stats.delivered, 0);
    let mut attempts: BTreeMap<String, usize> = BTreeMap::new();
    for event in scheduled(&log) {
        *attempts
            .entry(event["id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    // Each dropped event was tried exactly three times (the first attempt and two retries), never more.
    assert!(attempts.values().all(|n| *n <= 3), "{attempts:?}");
    let dropped = attempts.values().filter(|n| **n == 3).count() as u64;
    assert!(dropped >= stats.dropped, "{attempts:?} {stats:?}");
    assert!(stats.retries >= 2 * stats.dropped, "{stats:?}");
    let errors = cloud.aws.meter.snapshot().lambda.functions["app"].errors;
    assert!(errors >= 3 * stats.dropped, "{errors} {stats:?}");

    // Stopped: no fire and no retry afterwards (five periods of the schedule).
    let (lines, fired) = (batches(&log).len(), runner.stats().fired);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(batches(&log).len(), lines);
    assert_eq!(runner.stats().fired, fired);
}
