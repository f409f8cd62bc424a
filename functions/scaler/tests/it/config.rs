//! Triggers and configuration: real event fixtures and hostile payloads.

use serde_json::{json, Value};
use tally_scaler::{Config, Trigger};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json fixture")
}

fn check_trigger(payload: Value, expect: Result<Trigger, &str>) {
    let got = Trigger::parse(&payload).map_err(|e| format!("{e:#}"));
    match expect {
        Ok(trigger) => assert_eq!(got, Ok(trigger), "{payload}"),
        Err(needle) => assert!(
            got.as_ref().is_err_and(|e| e.contains(needle)),
            "{payload}: {got:?}"
        ),
    }
}

#[test]
fn triggers() {
    check_trigger(
        fixture("sns-alarm.json"),
        Ok(Trigger::Alarm {
            alarm: Some("tally-main-events-write-load".into()),
            state: Some("ALARM".into()),
        }),
    );
    check_trigger(
        fixture("schedule.json"),
        Ok(Trigger::Schedule {
            rule: Some(
                "arn:aws:events:us-east-1:123456789012:rule/tally-main-scaler-schedule".into(),
            ),
        }),
    );
    let mut not_an_alarm = fixture("sns-alarm.json");
    not_an_alarm["Records"][0]["Sns"]["Message"] = json!("hello <script>");
    check_trigger(
        not_an_alarm,
        Ok(Trigger::Alarm {
            alarm: None,
            state: None,
        }),
    );
    check_trigger(json!({}), Err("neither"));
    check_trigger(json!(null), Err("neither"));
    check_trigger(json!([1, 2]), Err("neither"));
    check_trigger(json!("Scheduled Event"), Err("neither"));
    check_trigger(json!({"Records": []}), Err("no records"));
    check_trigger(json!({"Records": "x"}), Err("not an SNS notification"));
    check_trigger(
        json!({"Records": [{"EventSource": "aws:sqs"}]}),
        Err("not an SNS notification"),
    );
    check_trigger(json!({"detail-type": 5}), Err("not an EventBridge event"));
    check_trigger(
        json!({"detail-type": "Scheduled Event", "time": "yesterday"}),
        Err("not an EventBridge event"),
    );
}

fn check_config(vars: &[(&str, &str)], expect: Result<(&str, u32, u32), &str>) {
    let lookup = |name: &str| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    let got = Config::from_lookup(lookup).map_err(|e| format!("{e:#}"));
    match expect {
        Ok((stream, floor, ceiling)) => {
            let config = got.expect("config");
            assert_eq!(
                (
                    config.stream.as_str(),
                    config.bounds.floor(),
                    config.bounds.ceiling()
                ),
                (stream, floor, ceiling)
            );
        }
        Err(needle) => assert!(
            got.as_ref().is_err_and(|e| e.contains(needle)),
            "{vars:?}: {got:?}"
        ),
    }
}

#[test]
fn configuration() {
    let ok = [
        ("TALLY_STREAM_NAME", "events"),
        ("TALLY_MIN_SHARDS", "1"),
        ("TALLY_MAX_SHARDS", "64"),
    ];
    check_config(&ok, Ok(("events", 1, 64)));
    check_config(
        &[
            ("TALLY_STREAM_NAME", " events\n"),
            ("TALLY_MIN_SHARDS", " 2 "),
            ("TALLY_MAX_SHARDS", "2"),
        ],
        Ok(("events", 2, 2)),
    );
    check_config(
        &[("TALLY_MIN_SHARDS", "1"), ("TALLY_MAX_SHARDS", "4")],
        Err("TALLY_STREAM_NAME is not set"),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "  "),
            ("TALLY_MIN_SHARDS", "1"),
            ("TALLY_MAX_SHARDS", "4"),
        ],
        Err("TALLY_STREAM_NAME is not set"),
    );
    check_config(
        &[("TALLY_STREAM_NAME", "e"), ("TALLY_MAX_SHARDS", "4")],
        Err("TALLY_MIN_SHARDS is not set"),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "e"),
            ("TALLY_MIN_SHARDS", "one"),
            ("TALLY_MAX_SHARDS", "4"),
        ],
        Err("TALLY_MIN_SHARDS is \"one\""),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "e"),
            ("TALLY_MIN_SHARDS", "-1"),
            ("TALLY_MAX_SHARDS", "4"),
        ],
        Err("expected a whole number"),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "e"),
            ("TALLY_MIN_SHARDS", "0"),
            ("TALLY_MAX_SHARDS", "4"),
        ],
        Err("floor must be at least 1"),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "e"),
            ("TALLY_MIN_SHARDS", "8"),
            ("TALLY_MAX_SHARDS", "4"),
        ],
        Err("above the ceiling"),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "e"),
            ("TALLY_MIN_SHARDS", "1"),
            ("TALLY_MAX_SHARDS", "20000"),
        ],
        Err("quota"),
    );
    check_config(
        &[
            ("TALLY_STREAM_NAME", "e"),
            ("TALLY_MIN_SHARDS", "1"),
            ("TALLY_MAX_SHARDS", "99999999999"),
        ],
        Err("expected a whole number"),
    );
}

#[test]
fn call_tags() {
    assert_eq!(tally_scaler::parse_calls(""), Vec::<i64>::new());
    assert_eq!(
        tally_scaler::parse_calls("1795699000 1795699600"),
        [1_795_699_000, 1_795_699_600]
    );
    assert_eq!(
        tally_scaler::parse_calls(" 5  x -3 0 99999999999999999999 7 "),
        [5, 7]
    );
}
