//! The load test through the real local cloud: a small profile's traffic (pixels and POST batches) for a few
//! seconds, exact counts in both lanes, and the `metered` section filled from the meter. The load test
//! (`tally_traffic::loadtest`) is a client of the cloud: it reaches the meter and the stream's shards over HTTP,
//! on the cloud's AWS endpoint.

use std::time::Duration;

use tally_localcloud::cloud::LocalCloud;
use tally_traffic::loadtest::{run, LoadOptions, Resend};
use tally_traffic::Profile;

use crate::e2e::{build_functions, options, Running};
use crate::support::TempDir;

const PROFILE: &str = r#"
name = "small mixed"
event_bytes = 250
events_per_request = 1.5
campaigns = 50
ads_per_campaign = 3
campaign_skew = 1.0
users = 20000

[kinds]
impression = 0.70
viewable = 0.25
click = 0.04
conversion = 0.01

[traffic]
period = "day"
points = [{ at = "00:00", events_per_sec = 300 }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_load_is_counted_exactly_in_both_lanes_and_metered() {
    let bin = build_functions();
    let dir = TempDir::new("loadtest");
    let cloud = Running(
        LocalCloud::start(options(&dir.0.join("state"), &bin))
            .await
            .unwrap(),
    );
    let report = run(LoadOptions {
        collect_url: cloud.output("CollectUrl"),
        query_url: cloud.output("QueryUrl"),
        rate: 300.0,
        duration: Duration::from_secs(5),
        profile: Profile::parse(PROFILE).unwrap(),
        profile_file: None,
        seed: 11,
        connections: 4,
        aws_endpoint: Some(cloud.0.endpoint.clone()),
        key: cloud.0.aws.secretsmanager.collect_key(),
        origin: cloud.0.aws.secretsmanager.collect_origin_secret(),
        // The test's stack batches the deferred lane for 1 s.
        settle_timeout: Duration::from_secs(30),
        // Clients that resend: whole acknowledged batches (a lost acknowledgement) and an event twice in one
        // body; the counts must still be exact per campaign, ad and kind.
        resend: Resend::new(0.1, 0.1).unwrap(),
    })
    .await
    .unwrap();
    let text = serde_json::to_string_pretty(&report).unwrap();
    assert_eq!(report["lost"], 0, "{text}");
    assert_eq!(report["duplicated"], 0, "{text}");
    assert!(
        report["events_acknowledged"].as_u64().unwrap() >= 1400,
        "{text}"
    );
    for lane in ["realtime", "settled"] {
        assert_eq!(
            report["lanes_checked"][lane]["complete"], true,
            "{lane}: {text}"
        );
    }
    let client = &report["client"];
    assert!(
        client["resent_acked_events"].as_u64().unwrap() > 0,
        "{text}"
    );
    assert!(client["repeated_in_body"].as_u64().unwrap() > 0, "{text}");
    assert_eq!(report["per_ad"]["lost"], 0, "{text}");
    assert_eq!(report["per_ad"]["duplicated"], 0, "{text}");
    assert!(client["pixels"].as_u64().unwrap() > 0, "{text}");
    assert!(client["posts"].as_u64().unwrap() > 0, "{text}");
    assert!(
        report["freshness_ms"]["samples"].as_u64().unwrap() > 0,
        "{text}"
    );
    assert!(
        report["freshness_ms"]["p50"].as_f64().unwrap() > 0.0,
        "{text}"
    );
    // Per second of the sending, every sample once.
    let by_second = report["freshness_ms"]["by_second"].as_array().unwrap();
    assert_eq!(
        by_second
            .iter()
            .map(|s| s["n"].as_u64().unwrap())
            .sum::<u64>(),
        report["freshness_ms"]["samples"].as_u64().unwrap(),
        "{text}"
    );
    let metered = &report["metered"];
    assert!(metered["events"].as_u64().unwrap() >= 1400, "{text}");
    assert!(metered["window_s"].as_f64().unwrap() >= 5.0, "{text}");
    assert_eq!(metered["shards"], 2, "{text}");
    {
        assert!(
            metered["kinesis"]["events_per_record"].as_f64().unwrap() > 0.0,
            "{text}"
        );
        assert!(
            metered["kinesis"]["put_units_per_event"].as_f64().unwrap() > 0.0,
            "{text}"
        );
        let by_lane = &metered["dynamodb"]["by_lane"];
        // The realtime lane writes the cache only; of the lanes, only the compactor writes the table.
        assert_eq!(
            by_lane["realtime"]["write_units"].as_f64().unwrap(),
            0.0,
            "{text}"
        );
        assert!(
            metered["elasticache"]["ecpu_per_event"].as_f64().unwrap() > 0.5,
            "{text}"
        );
        // The deferred lane writes no table rows (unique users are cache registers; the compactor
        // writes history): what it writes durably is the archive in S3.
        assert_eq!(
            by_lane["deferred"]["write_units"].as_f64().unwrap(),
            0.0,
            "{text}"
        );
        assert!(
            metered["s3"]["class_a_requests"].as_u64().unwrap() > 0
                && metered["s3"]["bytes_in"].as_u64().unwrap() > 0,
            "the deferred lane archives the raw events: {text}"
        );
        assert!(
            by_lane["query"]["read_units"].as_f64().unwrap() > 0.0,
            "{text}"
        );
        assert!(
            metered["lambda"]["by_function"]["collect"]["invocations"]
                .as_u64()
                .unwrap()
                > 0,
            "{text}"
        );
        assert!(
            metered["lanes"]["realtime"]["cycle_ms"].as_f64().unwrap() > 0.0,
            "{text}"
        );
        assert!(
            metered["lanes"]["realtime"]["events_per_invocation"]
                .as_f64()
                .unwrap()
                > 0.0,
            "{text}"
        );
    }
}
