//! The edge's origin check on the whole stack: a template with `edge = true` loads its distribution inert, and
//! the real collect binary, given the origin secret's ARN, refuses requests without the secret (`403`, nothing
//! written to the stream) and takes them with it — what a local client (the load test) sends as CloudFront
//! would.

use std::collections::BTreeMap;

use tally_localcloud::cloud::LocalCloud;
use tally_pipeline::{code_key_parameter, PipelineOptions, Stage, FUNCTIONS};

use crate::e2e::{options, Running};
use crate::support::TempDir;
use crate::trust::call;

/// Builds the collect binary only (the other functions are skipped when not built) and returns its directory.
fn build_collect() -> std::path::PathBuf {
    crate::support::cargo_build_bins(&["tally-collect"])
}

/// Records written to the events stream so far.
fn records(cloud: &Running) -> u64 {
    let stream = &cloud.0.resources.streams[0].name;
    cloud
        .0
        .aws
        .meter
        .snapshot()
        .kinesis
        .streams
        .get(stream)
        .map_or(0, |s| s.records)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_the_edge_collect_takes_only_requests_carrying_the_origin_secret() {
    let bin = build_collect();
    let dir = TempDir::new("edge");
    let mut cloud_options = options(&dir.0.join("state"), &bin);
    let pipeline = PipelineOptions {
        edge: Some(tally_pipeline::EdgeOptions::default()),
        ..PipelineOptions::default()
    };
    cloud_options.template =
        tally_pipeline::synth_value(&Stage::from_branch("e2e"), &pipeline).expect("synth");
    cloud_options.skip_unbuilt = true;
    // Only collect runs: the others point at binaries that do not exist, and are skipped.
    cloud_options.parameters = FUNCTIONS
        .iter()
        .map(|name| {
            let file = match *name {
                "collect" => "tally-collect".to_owned(),
                other => format!("not-built-for-this-test-{other}"),
            };
            (
                code_key_parameter(name),
                bin.join(file).display().to_string(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    cloud_options
        .parameters
        .insert("AssetsBucket".into(), "local-assets".into());
    let cloud = Running(LocalCloud::start(cloud_options).await.expect("start"));
    let collect = cloud.output("CollectUrl");
    let secret = cloud
        .0
        .aws
        .secretsmanager
        .collect_origin_secret()
        .expect("the stack's origin secret");
    let body = r#"[{"id":"edge-1","kind":"impression","campaign_id":"edge","ad_id":"ad-1"}]"#;
    let post = |origin: Option<&str>| {
        let mut headers = vec![("content-type", "application/json")];
        headers.extend(origin.map(|o| ("x-tally-origin", o)));
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let collect = collect.clone();
        async move {
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            call(&collect, "POST", "/v1/events", &headers, body).await
        }
    };

    let (status, text) = post(None).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("not-through-edge"), "{text}");
    let (status, text) = post(Some("not-the-secret-0123456789abcdef")).await;
    assert_eq!(status, 403, "{text}");
    assert!(!text.contains(&secret), "{text}");
    let (status, _) = call(
        &collect,
        "GET",
        "/p.gif?c=edge&a=ad-1&e=impression",
        &[],
        "",
    )
    .await;
    assert_eq!(status, 403, "a pixel past the edge is refused too");
    assert_eq!(records(&cloud), 0, "nothing refused was written");

    let (status, text) = post(Some(&secret)).await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(
        records(&cloud),
        1,
        "the request through the edge was written"
    );
}
