//! `cargo xtask redrive` end to end in the local cloud: the real synthesized stack and function binaries, the
//! xtask binary against the cloud's endpoints file.
//!
//! The failure: neither lane's function can reach its cache (`TALLY_CACHE_ENDPOINT` points at a closed port),
//! so every invocation fails; each mapping halves a batch down to single records, retries each and sends one
//! document per record to its lane's on-failure queue. That is a transient cause an operator can switch off: the
//! fix is restarting the cloud with the lanes' real settings. Then, per lane: `--dry-run` shows the records and
//! changes nothing; `--yes` replays them and the counts are the distinct event ids, once (realtime counters;
//! settled counters in the cache, archive objects); the same documents again count nothing (the redrive
//! fences); a document whose range the stream no longer holds is reported and stays on the queue.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tally_aws::store::{CounterStore, StoreConfig};
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::exactly_once::DedupWindow;
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::{Counter, StoreLane};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::esm::RuntimeOptions;
use tally_pipeline::{code_key_parameter, outputs, PipelineOptions, Stage, FUNCTIONS};

use crate::plan::{root, scratch, stderr, stdout, xtask};

const STAGE: &str = "redrive-it";

/// The function binaries, built as `cargo xtask dev` builds them, in this test binary's profile directory.
fn build_functions() -> PathBuf {
    let bin = std::env::current_exe()
        .expect("test binary")
        .parent()
        .and_then(Path::parent)
        .expect("profile directory")
        .to_path_buf();
    let mut build = std::process::Command::new(std::env::var_os("CARGO").unwrap_or("cargo".into()));
    build.current_dir(root()).args(["build", "--bins"]);
    for name in FUNCTIONS {
        build.args(["-p", &format!("tally-{name}")]);
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "building the functions failed: {status}");
    bin
}

/// The stack of `STAGE`; with `broken_cache`, both lanes' cache endpoint is a closed port.
fn options(state: &Path, bin: &Path, broken_cache: bool) -> CloudOptions {
    let mut pipeline = PipelineOptions::default();
    pipeline.deferred.batching_window_secs = 1;
    let stage = Stage::new(STAGE);
    let template = tally_pipeline::synth_value(&stage, &pipeline).expect("synth");
    let mut parameters: BTreeMap<String, String> = FUNCTIONS
        .iter()
        .map(|name| {
            let path = bin.join(format!("tally-{name}"));
            (code_key_parameter(name), path.display().to_string())
        })
        .collect();
    parameters.insert("AssetsBucket".into(), "local-assets".into());
    let mut function_env = BTreeMap::new();
    if broken_cache {
        for lane in ["realtime", "deferred"] {
            function_env.insert(
                code_key_parameter(lane),
                BTreeMap::from([("TALLY_CACHE_ENDPOINT".to_owned(), "127.0.0.1:1".to_owned())]),
            );
        }
    }
    CloudOptions {
        template,
        stack_name: stage.stack_name(),
        state_dir: state.to_path_buf(),
        durability: Default::default(),
        parameters,
        endpoint_port: 0,
        url_port_base: 0,
        function_env,
        skip_unbuilt: false,
        terminal_logs: false,
        mappings: RuntimeOptions::default(),
        schedule_speedup: 1,
    }
}

/// A running cloud, shut down when dropped (also when the test fails).
struct Running(LocalCloud);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl Running {
    fn output(&self, name: &str) -> String {
        self.0.resources.outputs[name].clone()
    }

    async fn sdk(&self) -> aws_config::SdkConfig {
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&self.0.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load()
            .await
    }
}

fn click(id: &str, received_ms: i64) -> Event {
    Event {
        id: id.to_owned(),
        kind: EventKind::Click,
        campaign_id: "redrive-c".into(),
        ad_id: "ad1".into(),
        placement_id: None,
        user_id: None,
        client_ts_ms: None,
        received_ms,
        cost_micros: 0,
        value_micros: 0,
        country: None,
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: None,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Writes one record holding `ids` (all on one shard: one partition key); its sequence number.
async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, ids: &[&str], at: i64) -> String {
    let events: Vec<Event> = ids.iter().map(|id| click(id, at)).collect();
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key("redrive")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            tally_domain::wire::encode_record(&events),
        ))
        .send()
        .await
        .expect("put record")
        .sequence_number()
        .to_owned()
}

/// Realtime clicks of the test's campaign in the minutes around `at`, read from the cloud's cache.
async fn realtime_clicks(cloud: &Running, at: i64) -> u64 {
    cache_clicks(cloud, StoreLane::Realtime, at).await
}

/// Settled clicks of the test's campaign (the cache's settled lane, where the deferred lane writes).
async fn settled_clicks(cloud: &Running, at: i64) -> u64 {
    cache_clicks(cloud, StoreLane::Settled, at).await
}

/// Clicks of the test's campaign in `lane` in the minutes around `at`, summed over the lane's shards.
async fn cache_clicks(cloud: &Running, lane: StoreLane, at: i64) -> u64 {
    let cache = cloud.0.caches.values().next().expect("one cache").addr();
    let store = CounterStore::connect(&StoreConfig {
        nodes: vec![format!("redis://{cache}")],
        credentials: None,
        window: DedupWindow::default(),
        counter_ttl_secs: 0,
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("connect to the cache");
    let shards = store.shards(lane).await.expect("shards");
    let mut clicks = 0;
    for minute in minute_of(at) - 1..=minute_of(at) + 1 {
        let (counts, _users) = store
            .read_minute(lane, &shards, minute)
            .await
            .expect("read minute");
        clicks += counts
            .get("redrive-c")
            .into_iter()
            .flat_map(|ads| ads.values())
            .map(|t| t.get(Counter::Clicks))
            .sum::<u64>();
    }
    clicks
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue: &str) -> usize {
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await
        .expect("queue attributes");
    let map = attributes.attributes().cloned().unwrap_or_default();
    let n = |name: aws_sdk_sqs::types::QueueAttributeName| {
        map.get(&name)
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0)
    };
    n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        + n(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// Puts `bodies` on the queue (documents a test saved, to redrive them again).
async fn send_all(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    bodies: impl IntoIterator<Item = String>,
) {
    for body in bodies {
        sqs.send_message()
            .queue_url(queue)
            .message_body(body)
            .send()
            .await
            .expect("send");
    }
}

/// The bodies on the queue, left visible.
async fn bodies(sqs: &aws_sdk_sqs::Client, queue: &str) -> Vec<String> {
    let got = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .visibility_timeout(0)
        .send()
        .await
        .expect("receive");
    got.messages()
        .iter()
        .filter_map(|m| m.body().map(str::to_owned))
        .collect()
}

async fn until(limit: Duration, mut check: impl AsyncFnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Runs `xtask redrive --lane <lane> --stage STAGE --endpoints-file FILE <extra>`; its stdout.
fn redrive(lane: &str, endpoints: &Path, extra: &[&str]) -> String {
    let file = endpoints.display().to_string();
    let mut args = vec![
        "redrive",
        "--lane",
        lane,
        "--stage",
        STAGE,
        "--endpoints-file",
        &file,
    ];
    args.extend_from_slice(extra);
    let out = xtask(&args);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "redrive {extra:?} failed:\n{text}\n{}",
        stderr(&out)
    );
    println!("redrive {extra:?}:\n{text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redrive_replays_a_failed_range_once_and_reports_what_the_stream_lost() {
    let bin = build_functions();
    let dir = scratch("redrive");
    let state = dir.join("state");

    // The lanes cannot reach their cache: three records end up on each on-failure queue, one document each.
    let cloud = Running(
        LocalCloud::start(options(&state, &bin, true))
            .await
            .expect("start"),
    );
    let sdk = cloud.sdk().await;
    let (kinesis, sqs) = (
        aws_sdk_kinesis::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    let (stream, queue, deferred_queue) = (
        cloud.output(outputs::STREAM_NAME),
        cloud.output(outputs::REALTIME_FAILURES_URL),
        cloud.output(outputs::DEFERRED_FAILURES_URL),
    );
    let at = now_ms();
    // e1 twice: once in the first record, again in the second (a resend), which must not count it again.
    for ids in [&["e1", "e2"][..], &["e3", "e1"], &["e4"]] {
        put(&kinesis, &stream, ids, at).await;
    }
    assert!(
        until(Duration::from_secs(90), async || queue_depth(&sqs, &queue)
            .await
            >= 3)
        .await,
        "the three records never reached the realtime on-failure queue ({} there)",
        queue_depth(&sqs, &queue).await
    );
    assert!(
        until(Duration::from_secs(90), async || queue_depth(
            &sqs,
            &deferred_queue
        )
        .await
            >= 3)
        .await,
        "the three records never reached the deferred on-failure queue ({} there)",
        queue_depth(&sqs, &deferred_queue).await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    for q in [&queue, &deferred_queue] {
        assert_eq!(
            queue_depth(&sqs, q).await,
            3,
            "one document per record (bisected)"
        );
    }

    // The fix: the lane's real cache settings. The lane goes on after the discarded records.
    drop(cloud);
    let cloud = Running(
        LocalCloud::start(options(&state, &bin, false))
            .await
            .expect("restart"),
    );
    let sdk = cloud.sdk().await;
    let (kinesis, sqs) = (
        aws_sdk_kinesis::Client::new(&sdk),
        aws_sdk_sqs::Client::new(&sdk),
    );
    put(&kinesis, &stream, &["e5"], at).await;
    assert!(
        until(Duration::from_secs(30), async || realtime_clicks(
            &cloud, at
        )
        .await
            == 1)
        .await,
        "the lane did not count the new record alone: {} clicks",
        realtime_clicks(&cloud, at).await
    );
    assert!(
        until(Duration::from_secs(30), async || settled_clicks(&cloud, at)
            .await
            == 1)
        .await,
        "the deferred lane did not settle the new record alone: {:?}",
        settled_clicks(&cloud, at).await
    );
    let endpoints = dir.join("endpoints.json");
    std::fs::write(&endpoints, cloud.0.endpoints().to_string()).expect("endpoints file");
    let documents = bodies(&sqs, &queue).await;
    assert_eq!(documents.len(), 3, "{documents:?}");

    // Looking changes nothing.
    let looked = redrive("realtime", &endpoints, &["--dry-run"]);
    assert_eq!(looked.matches("would replay").count(), 3, "{looked}");
    assert!(looked.contains("3 messages (0 deleted, 3 kept"), "{looked}");
    assert_eq!(realtime_clicks(&cloud, at).await, 1);
    assert_eq!(queue_depth(&sqs, &queue).await, 3);

    // Replayed: e1..e4 counted once each (the second e1 is a duplicate); the messages are gone.
    let replayed = redrive("realtime", &endpoints, &["--yes"]);
    assert!(
        replayed.contains("3 messages (3 deleted, 0 kept"),
        "{replayed}"
    );
    assert!(
        replayed.contains("3 replayed (4 events counted)"),
        "{replayed}"
    );
    assert!(replayed.contains("1 duplicates"), "{replayed}");
    assert_eq!(realtime_clicks(&cloud, at).await, 5);
    assert_eq!(queue_depth(&sqs, &queue).await, 0);

    // The same documents again, and one whose range the stream no longer holds: the local cloud keeps every
    // record, so it names sequence numbers of this shard below its first record, as trimmed records would be
    // (same shard and position digits, a smaller constant prefix).
    let first: serde_json::Value = serde_json::from_str(&documents[0]).expect("a document");
    let (gone_start, gone_end) = (
        format!("4960{}", "0".repeat(52)),
        format!("4960{}1", "0".repeat(51)),
    );
    let mut lost = first.clone();
    lost["KinesisBatchInfo"]["startSequenceNumber"] = gone_start.clone().into();
    lost["KinesisBatchInfo"]["endSequenceNumber"] = gone_end.clone().into();
    send_all(
        &sqs,
        &queue,
        documents.iter().cloned().chain([lost.to_string()]),
    )
    .await;
    let again = redrive("realtime", &endpoints, &["--yes"]);
    assert_eq!(
        again.matches("replayed by an earlier redrive").count(),
        3,
        "{again}"
    );
    assert!(
        again.contains(&format!(
            "past retention: the stream no longer holds any record of {gone_start} … {gone_end}"
        )),
        "{again}"
    );
    assert!(again.contains("4 messages (3 deleted, 1 kept"), "{again}");
    assert!(
        again.contains("0 replayed (0 events counted), 3 replayed before"),
        "{again}"
    );
    assert!(again.contains("1 ranges past retention"), "{again}");
    assert_eq!(realtime_clicks(&cloud, at).await, 5);
    assert_eq!(
        queue_depth(&sqs, &queue).await,
        1,
        "the lost range stays on the queue"
    );

    // The deferred lane, the same way: settled counters in the cache, archive objects.
    let deferred_documents = bodies(&sqs, &deferred_queue).await;
    assert_eq!(deferred_documents.len(), 3, "{deferred_documents:?}");
    let looked = redrive("deferred", &endpoints, &["--dry-run"]);
    assert_eq!(looked.matches("would replay").count(), 3, "{looked}");
    assert_eq!(settled_clicks(&cloud, at).await, 1);
    let replayed = redrive("deferred", &endpoints, &["--yes"]);
    assert!(
        replayed.contains("3 messages (3 deleted, 0 kept"),
        "{replayed}"
    );
    assert!(
        replayed.contains("3 replayed (4 events counted)"),
        "{replayed}"
    );
    assert_eq!(
        replayed.matches("archived as events/dt=").count(),
        3,
        "{replayed}"
    );
    assert_eq!(settled_clicks(&cloud, at).await, 5);
    send_all(&sqs, &deferred_queue, deferred_documents).await;
    let again = redrive("deferred", &endpoints, &["--yes"]);
    assert_eq!(
        again.matches("replayed by an earlier redrive").count(),
        3,
        "{again}"
    );
    assert_eq!(settled_clicks(&cloud, at).await, 5);
    assert_eq!(queue_depth(&sqs, &deferred_queue).await, 0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad setups are named with what to do, before anything is read or written.
#[test]
fn redrive_says_what_is_wrong() {
    let dir = scratch("redrive-errors");
    let fails = |file: &Path, extra: &[&str], want: &str| {
        let file = file.display().to_string();
        let mut args = vec![
            "redrive",
            "--lane",
            "realtime",
            "--stage",
            STAGE,
            "--endpoints-file",
            &file,
        ];
        args.extend_from_slice(extra);
        let out = xtask(&args);
        let err = stderr(&out);
        assert!(
            !out.status.success(),
            "{args:?} succeeded: {}",
            stdout(&out)
        );
        assert!(err.contains(want), "{args:?}: `{err}` lacks `{want}`");
    };
    let missing = dir.join("missing.json");
    fails(
        &missing,
        &[],
        "redrive changes the lane's counters: pass --yes to replay, or --dry-run to only look",
    );
    fails(
        &missing,
        &["--yes"],
        "is `cargo xtask dev` running for this stage?",
    );
    let write = |name: &str, doc: serde_json::Value| {
        let path = dir.join(name);
        std::fs::write(&path, doc.to_string()).expect("write");
        path
    };
    let two = write(
        "two.json",
        serde_json::json!({"aws_endpoint": "http://127.0.0.1:1",
                           "caches": {"A": "127.0.0.1:1", "B": "127.0.0.1:2"}, "outputs": {}}),
    );
    fails(&two, &["--dry-run"], "names 2 caches");
    let bare = write(
        "bare.json",
        serde_json::json!({"aws_endpoint": "http://127.0.0.1:1",
                           "caches": {"A": "127.0.0.1:1"}, "outputs": {}}),
    );
    fails(
        &bare,
        &["--dry-run"],
        "the stack has no output RealtimeFailuresQueueUrl",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
