//! EventBridge schedules: every enabled scheduled `AWS::Events::Rule` fires its function targets at the
//! expression's times, with the event EventBridge sends, invoked asynchronously as Lambda does it.
//!
//! A [`RuleRunner`] is one rule: a task that sleeps until the next fire time of its [`Schedule`] on the
//! [`ScheduleClock`] (real UTC time, optionally sped up for tests and load tests), then hands one event per
//! target to a delivery task. Delivery is Lambda's asynchronous invocation: the same invocation path as the
//! Function URLs and the mappings ([`Function::invoke`], metered alike); an error is retried twice, one and
//! then two minutes later (scaled by the speed-up), and then logged and dropped.

pub mod expr;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;

pub use expr::{Cron, Schedule};

use crate::lambda::{lock, Function, InvokeFailure};
use crate::template::{RuleDecl, TargetDecl, TargetInput};

/// The delays before Lambda's two retries of a failed asynchronous invocation (real time).
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

/// The largest `--schedule-speedup`.
pub const MAX_SPEEDUP: u32 = 100_000;

/// The schedules' clock: UTC from the local cloud's start, running `speedup` times faster than real time
/// (1 = real time, the default; a local-only knob so that tests need not wait real minutes).
#[derive(Debug, Clone, Copy)]
pub struct ScheduleClock {
    real_start: Instant,
    start_ms: i64,
    speedup: u32,
}

impl ScheduleClock {
    /// A clock that reads the current UTC time now and runs `speedup` (at least 1) times faster from here.
    pub fn start(speedup: u32) -> ScheduleClock {
        let start_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        ScheduleClock {
            real_start: Instant::now(),
            start_ms,
            speedup: speedup.clamp(1, MAX_SPEEDUP),
        }
    }

    /// The schedule time now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        let elapsed = self.real_start.elapsed().as_millis() as i64;
        self.start_ms + elapsed * i64::from(self.speedup)
    }

    /// The schedule time at which the clock started.
    pub fn start_ms(&self) -> i64 {
        self.start_ms
    }

    /// The real time to wait for `schedule` time to pass.
    pub fn real(&self, schedule: Duration) -> Duration {
        schedule / self.speedup
    }

    /// Waits until the schedule time `at_ms`; false if `stop` came first.
    async fn sleep_until(&self, at_ms: i64, stop: &mut watch::Receiver<bool>) -> bool {
        let wait = Duration::from_millis((at_ms - self.now_ms()).max(0) as u64);
        self.sleep(wait, stop).await
    }

    /// Waits `schedule` time; false if `stop` came first.
    async fn sleep(&self, schedule: Duration, stop: &mut watch::Receiver<bool>) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(self.real(schedule)) => !*stop.borrow(),
            _ = crate::lambda::http::stopped(stop) => false,
        }
    }
}

/// The next fire time strictly after `after_ms`: a rate counts whole periods from `start_ms` (the rule's
/// creation), a cron expression matches minutes (UTC). `None`: never again.
pub fn next_fire(schedule: &Schedule, start_ms: i64, after_ms: i64) -> Option<i64> {
    match schedule {
        Schedule::Rate(period) => {
            let period = period.as_millis() as i64;
            let periods = (after_ms - start_ms).div_euclid(period) + 1;
            Some(start_ms + periods.max(1) * period)
        }
        Schedule::Cron(cron) => cron.next_after(after_ms),
    }
}

/// Where the events come from: the account and region of the local cloud.
#[derive(Debug, Clone)]
pub struct EventSource {
    pub account: String,
    pub region: String,
}

/// The event EventBridge sends for a scheduled rule (`aws_lambda_events::cloudwatch_events`'s shape):
/// `time` is the scheduled time (whole seconds), `id` a UUID derived from the rule and the time.
pub fn scheduled_event(source: &EventSource, rule_arn: &str, time_ms: i64) -> Value {
    use md5::Digest;
    let digest = hex::encode(md5::Md5::digest(format!("{rule_arn}@{time_ms}").as_bytes()));
    let id = format!(
        "{}-{}-4{}-8{}-{}",
        &digest[..8],
        &digest[8..12],
        &digest[13..16],
        &digest[17..20],
        &digest[20..32]
    );
    json!({
        "version": "0",
        "id": id,
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": source.account,
        "time": tally_domain::calendar::iso_seconds(time_ms.div_euclid(1000)),
        "region": source.region,
        "resources": [rule_arn],
        "detail": {},
    })
}

/// What a target receives for `event`: the event, its `Input`, or the part its `InputPath` selects.
pub fn target_payload(input: &TargetInput, event: &Value) -> String {
    match input {
        TargetInput::Event => event.to_string(),
        TargetInput::Constant(text) => text.clone(),
        TargetInput::Path(keys) => keys
            .iter()
            .try_fold(event, |value, key| value.get(key))
            .unwrap_or(&Value::Null)
            .to_string(),
    }
}

/// Counters of one rule, for tests and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleStats {
    /// Fire times reached (each hands one event to every target).
    pub fired: u64,
    /// Invocations that succeeded (first attempt or a retry).
    pub delivered: u64,
    /// Retries after a failed invocation.
    pub retries: u64,
    /// Events dropped after the last retry failed.
    pub dropped: u64,
}

/// One running rule; it stops with the local cloud's stop signal.
#[derive(Debug, Clone)]
pub struct RuleRunner {
    stats: Arc<Mutex<RuleStats>>,
}

impl RuleRunner {
    /// Starts firing `rule` at `targets` (each with its running function) until `stop`.
    pub fn start(
        rule: RuleDecl,
        targets: Vec<(TargetDecl, Function)>,
        source: EventSource,
        clock: ScheduleClock,
        stop: watch::Receiver<bool>,
    ) -> RuleRunner {
        let stats = Arc::new(Mutex::new(RuleStats::default()));
        let runner = RuleRunner {
            stats: stats.clone(),
        };
        tokio::spawn(fire_loop(rule, targets, source, clock, stop, stats));
        runner
    }

    pub fn stats(&self) -> RuleStats {
        lock(&self.stats).clone()
    }
}

async fn fire_loop(
    rule: RuleDecl,
    targets: Vec<(TargetDecl, Function)>,
    source: EventSource,
    clock: ScheduleClock,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RuleStats>>,
) {
    let mut after = clock.start_ms();
    loop {
        let Some(at) = next_fire(&rule.schedule, clock.start_ms(), after) else {
            tracing::info!(message = "schedule fires no more", rule = %rule.id, expression = %rule.expression);
            return;
        };
        if !clock.sleep_until(at, &mut stop).await {
            return;
        }
        lock(&stats).fired += 1;
        let event = scheduled_event(&source, &rule.arn, at);
        for (target, function) in &targets {
            tokio::spawn(deliver(
                rule.id.clone(),
                target.id.clone(),
                function.clone(),
                target_payload(&target.input, &event),
                clock,
                stop.clone(),
                stats.clone(),
            ));
        }
        after = at;
    }
}

/// Lambda's asynchronous invocation: the first attempt and two retries, then the event is dropped.
async fn deliver(
    rule: String,
    target: String,
    function: Function,
    payload: String,
    clock: ScheduleClock,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Mutex<RuleStats>>,
) {
    let name = function.spec().name.clone();
    for attempt in 0..=RETRY_DELAYS.len() {
        let error = match function.invoke(payload.clone()).await {
            Ok(_) => {
                lock(&stats).delivered += 1;
                return;
            }
            Err(InvokeFailure::Shutdown) => return,
            Err(error) => error,
        };
        let Some(delay) = RETRY_DELAYS.get(attempt) else {
            lock(&stats).dropped += 1;
            tracing::warn!(message = "scheduled event dropped after 2 retries", %rule, %target, function = %name, %error);
            return;
        };
        tracing::warn!(message = "scheduled invocation failed; Lambda retries it", %rule, %target, function = %name, attempt = attempt + 1, retry_in_s = delay.as_secs(), %error);
        if !clock.sleep(*delay, &mut stop).await {
            return;
        }
        lock(&stats).retries += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_periods_from_the_start() {
        let every_minute = Schedule::parse("rate(1 minute)").unwrap();
        let check = |after: i64, expect: i64| {
            assert_eq!(
                next_fire(&every_minute, 1_000, after),
                Some(expect),
                "{after}"
            );
        };
        check(1_000, 61_000);
        check(60_999, 61_000);
        check(61_000, 121_000);
        check(-5_000, 61_000);
    }

    #[test]
    fn the_scheduled_event_has_eventbridges_shape() {
        let source = EventSource {
            account: "123456789012".into(),
            region: "us-east-1".into(),
        };
        let arn = "arn:aws:events:us-east-1:123456789012:rule/tick";
        let event = scheduled_event(&source, arn, 1_444_323_186_500);
        let id = event["id"].as_str().unwrap().to_owned();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_eq!(
            event,
            json!({"version": "0", "id": id, "detail-type": "Scheduled Event", "source": "aws.events",
                   "account": "123456789012", "time": "2015-10-08T16:53:06Z", "region": "us-east-1",
                   "resources": [arn], "detail": {}})
        );
        assert_ne!(scheduled_event(&source, arn, 1_444_323_246_500)["id"], id);
        // It is the event aws_lambda_events reads.
        let typed: aws_lambda_events::event::cloudwatch_events::CloudWatchEvent =
            serde_json::from_value(event.clone()).unwrap();
        assert_eq!(typed.source.as_deref(), Some("aws.events"));
        assert_eq!(
            target_payload(&TargetInput::Path(vec!["resources".into()]), &event),
            json!([arn]).to_string()
        );
        assert_eq!(
            target_payload(&TargetInput::Path(vec![]), &event),
            event.to_string()
        );
        assert_eq!(
            target_payload(&TargetInput::Path(vec!["nope".into()]), &event),
            "null"
        );
        assert_eq!(
            target_payload(&TargetInput::Constant("{\"a\": 1}".into()), &event),
            "{\"a\": 1}"
        );
    }
}
