//! Mistakes in the options are synth errors that name the construct path and the rule.

use tally_pipeline::{synth_json, CriticalLane, PipelineOptions, Stage, StreamCapacity};

fn check(change: impl FnOnce(&mut PipelineOptions), expect: &str) {
    let mut options = PipelineOptions::default();
    change(&mut options);
    match synth_json(&Stage::new("main"), &options) {
        Ok(_) => panic!("expected a synth error containing {expect:?}"),
        Err(error) => {
            let text = error.to_string();
            assert!(
                text.contains(expect),
                "error\n{text}\ndoes not contain\n{expect}"
            );
        }
    }
}

#[test]
fn lane_settings_outside_aws_ranges() {
    check(|o| o.realtime.batch_size = 20_000, "tally-main/RealtimeLane/Mapping: batch_size 20000 is outside 1..=10000 (Kinesis BatchSize)");
    check(
        |o| o.deferred.batch_size = 0,
        "tally-main/DeferredLane/Mapping: batch_size 0 is outside 1..=10000",
    );
    check(
        |o| o.deferred.batching_window_secs = 301,
        "tally-main/DeferredLane/Mapping: max_batching_window_secs 301 is outside 0..=300",
    );
    check(
        |o| o.deferred.parallelization_factor = 11,
        "tally-main/DeferredLane/Mapping: parallelization_factor 11 is outside 1..=10",
    );
    check(
        |o| o.deferred.max_retry_attempts = -2,
        "max_retry_attempts -2 is outside -1 (infinite) or 0..=10000",
    );
    check(
        |o| o.deferred.max_retry_attempts = 10_001,
        "max_retry_attempts 10001 is outside",
    );
    check(
        |o| o.deferred.max_record_age_secs = 59,
        "max_record_age_secs 59 is outside -1 (no limit) or 60..=604800",
    );
    check(
        |o| o.deferred.max_record_age_secs = 604_801,
        "max_record_age_secs 604801 is outside",
    );
    check(
        |o| o.realtime.memory_mb = 64,
        "tally-main/Realtime: memory_mb 64 is outside 128..=10240",
    );
    check(
        |o| o.realtime.timeout_secs = 901,
        "tally-main/Realtime: timeout_secs 901 is outside 1..=900",
    );
    check(
        |o| o.log_retention_days = 8,
        "log_retention_days 8 is not one CloudWatch Logs accepts",
    );
    check(
        |o| o.retention_hours = 23,
        "tally-main/Events: retention_hours 23 is outside 24..=8760",
    );
}

#[test]
fn both_lanes_keep_one_batch_per_shard() {
    check(
        |o| o.deferred.parallelization_factor = 3,
        "tally-main/DeferredLane: deferred parallelization_factor must be 1, not 3: the exactly-once fencing is per shard",
    );
    check(
        |o| o.realtime.parallelization_factor = 2,
        "tally-main/RealtimeLane: realtime parallelization_factor must be 1, not 2: the exactly-once fencing is per shard",
    );
    check(
        |o| {
            o.realtime.parallelization_factor = 2;
            o.critical_lane = CriticalLane::SharedIterator;
        },
        "realtime parallelization_factor must be 1",
    );
}

#[test]
fn poison_records_must_be_bounded() {
    check(
        |o| {
            o.realtime.max_retry_attempts = -1;
            o.realtime.max_record_age_secs = -1;
        },
        "tally-main/RealtimeLane/Mapping: bisect_batch_on_function_error with unbounded retries and record age",
    );
}

#[test]
fn shard_bounds() {
    let provisioned = |initial_shards, min_shards, max_shards| StreamCapacity::Provisioned {
        initial_shards,
        min_shards,
        max_shards,
    };
    check(|o| o.stream = provisioned(1, 2, 4), "tally-main/Capacity: shards must satisfy 1 <= min_shards (2) <= initial_shards (1) <= max_shards (4)");
    check(|o| o.stream = provisioned(0, 0, 4), "min_shards (0)");
    check(
        |o| o.stream = provisioned(5, 1, 4),
        "initial_shards (5) <= max_shards (4)",
    );
    check(
        |o| o.stream = provisioned(1, 1, 501),
        "max_shards 501 is above Kinesis' default quota of 500",
    );
    check(
        |o| o.stream = provisioned(1, 1, 32),
        "tally-main/RealtimeLane: realtime reserved_concurrency 16 is below max_shards 32: the lane needs one concurrent invocation per shard",
    );
}

#[test]
fn alert_email_must_be_an_address() {
    check(
        |o| o.alert_email = Some("ops".into()),
        "tally-main/AlertsEmail: `ops` is not an e-mail address",
    );
    check(
        |o| o.alert_email = Some("ops@example.com\nBcc: x".into()),
        "is not an e-mail address",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let mut options = PipelineOptions::default();
    options.realtime.batch_size = 20_000;
    options.deferred.batch_size = 20_000;
    let error = synth_json(&Stage::new("main"), &options)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        error.starts_with("the app does not synthesize (2 problems):"),
        "{error}"
    );
}

#[test]
fn cache_and_dedup_settings_outside_their_ranges() {
    check(
        |o| o.dedup_window_secs = 899,
        "tally-main/CounterStore: dedup_window_secs: dedup window of 899 s is out of range: give 900..=604800 seconds",
    );
    check(
        |o| o.dedup_window_secs = 604_801,
        "dedup window of 604801 s is out of range",
    );
    check(
        |o| o.cache_max_storage_gb = 0,
        "tally-main/CounterCache: max_storage_gb 0 is outside 1..=5000",
    );
    check(
        |o| o.cache_max_storage_gb = 5_001,
        "max_storage_gb 5001 is outside 1..=5000",
    );
    check(
        |o| o.cache_max_ecpu_per_second = 999,
        "tally-main/CounterCache: max_ecpu_per_second 999 is outside 1000..=15000000",
    );
    check(
        |o| o.cache_max_ecpu_per_second = 15_000_001,
        "max_ecpu_per_second 15000001 is outside 1000..=15000000",
    );
    for ok in [
        PipelineOptions {
            dedup_window_secs: 900,
            cache_max_storage_gb: 5_000,
            cache_max_ecpu_per_second: 1_000,
            ..PipelineOptions::default()
        },
        PipelineOptions {
            dedup_window_secs: 604_800,
            cache_max_storage_gb: 1,
            cache_max_ecpu_per_second: 15_000_000,
            ..PipelineOptions::default()
        },
    ] {
        if let Err(error) = synth_json(&Stage::new("main"), &ok) {
            panic!("the range ends synthesize: {error}");
        }
    }
}

#[test]
fn table_capacity_outside_its_ranges() {
    use tally_pipeline::{TableBilling, DEFAULT_TABLE_SCALING};
    let with = |change: fn(&mut tally_pipeline::AutoScaling)| {
        move |o: &mut PipelineOptions| {
            let mut scaling = DEFAULT_TABLE_SCALING;
            change(&mut scaling);
            o.table_billing = TableBilling::Provisioned(scaling);
        }
    };
    check(
        with(|s| s.write.min = 0),
        "tally-main/Metrics: write capacity minimum is 0: a provisioned table needs at least 1 unit; give min >= 1",
    );
    check(
        with(|s| s.read.min = 5_000),
        "tally-main/Metrics: read capacity minimum 5000 is above its maximum 4000; give min <= max",
    );
    check(
        with(|s| s.target_utilization_percent = 95),
        "tally-main/Metrics: target utilization 95 % is outside 20..=90 %",
    );
}

#[test]
fn reserved_concurrency_must_fit_the_account() {
    check(
        |o| o.collect_reserved_concurrency = 0,
        "collect_reserved_concurrency is 0: the function would be throttled on every request",
    );
    check(
        |o| o.query_reserved_concurrency = 0,
        "query_reserved_concurrency is 0",
    );
    // 16 (realtime) + 10 (query) + 875 > 1000 - 100.
    check(
        |o| o.collect_reserved_concurrency = 875,
        "tally-main/Concurrency: the functions reserve 901 concurrent executions, above the 900 an account_concurrency of 1000 allows",
    );
    check(
        |o| {
            o.collect_reserved_concurrency = 2000;
            o.account_concurrency = 2000;
        },
        "above the 1900 an account_concurrency of 2000 allows",
    );
}

#[test]
fn budget_and_edge_settings_outside_their_ranges() {
    check(
        |o| o.budget_monthly_usd = Some(0),
        "tally-main/CostBudget: monthly_usd is 0",
    );
    check(
        |o| {
            o.budget_monthly_usd = Some(10);
            o.budget_email = Some("finance".into());
        },
        "`finance` is not an e-mail address",
    );
    check(
        |o| {
            o.edge = Some(tally_pipeline::EdgeOptions {
                requests_per_five_minutes: 5,
            })
        },
        "tally-main/CollectEdge: requests_per_five_minutes 5 is outside WAF's rate-based limit of 10..=2000000000",
    );
}

#[test]
fn campaign_index_window_outside_its_range() {
    for days in [0, 3651] {
        check(
            |o| o.campaign_index_days = days,
            &format!("tally-main/Compactor: campaign_index_days {days} is outside 1..=3650"),
        );
    }
}
