//! End to end: the real synthesized stack with the real function binaries. Valid, invalid and poison events, a
//! realtime instance killed with SIGKILL mid-batch, the whole local cloud restarted once on its state
//! directory; then exact counts through the query API, the poison record's metadata in the realtime on-failure
//! queue, and archive objects in the archive bucket.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_localcloud::cloud::{CloudOptions, LocalCloud};
use tally_localcloud::esm::RuntimeOptions;
use tally_pipeline::{code_key_parameter, PipelineOptions, Stage, FUNCTIONS};

use crate::cloud::http;
use crate::support::{cargo_build_bins, TempDir};

pub(crate) type Counts = BTreeMap<(String, String), u64>;

pub(crate) const CAMPAIGNS: [&str; 3] = ["e2e-big", "e2e-mid", "e2e-small"];

/// Builds the five function binaries (as `cargo xtask dev` does) and returns the directory that holds them:
/// the profile directory of this test binary, so `--release` and `CARGO_TARGET_DIR` are followed.
pub(crate) fn build_functions() -> PathBuf {
    let packages: Vec<String> = FUNCTIONS
        .iter()
        .map(|name| format!("tally-{name}"))
        .collect();
    let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
    cargo_build_bins(&packages)
}

/// The real pipeline, with a 1 s deferred batching window so the archive is written within the test.
pub(crate) fn options(state: &Path, bin: &Path) -> CloudOptions {
    let mut pipeline = PipelineOptions::default();
    pipeline.deferred.batching_window_secs = 1;
    let stage = Stage::from_branch("e2e");
    let template = tally_pipeline::synth_value(&stage, &pipeline).unwrap();
    let mut parameters: BTreeMap<String, String> = FUNCTIONS
        .iter()
        .map(|name| {
            let path = bin.join(format!("tally-{name}"));
            (code_key_parameter(name), path.display().to_string())
        })
        .collect();
    parameters.insert("AssetsBucket".into(), "local-assets".into());
    CloudOptions {
        template,
        stack_name: stage.stack_name(),
        state_dir: state.to_path_buf(),
        durability: Default::default(),
        parameters,
        endpoint_port: 0,
        url_port_base: 0,
        function_env: BTreeMap::from([(
            code_key_parameter("query"),
            BTreeMap::from([("TALLY_QUERY_AUTH".to_owned(), "off".to_owned())]),
        )]),
        skip_unbuilt: false,
        terminal_logs: false,
        mappings: RuntimeOptions::default(),
        schedule_speedup: 1,
    }
}

/// A running cloud that is shut down when dropped, also when the test fails.
pub(crate) struct Running(pub(crate) LocalCloud);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

impl Running {
    pub(crate) fn output(&self, name: &str) -> String {
        self.0.resources.outputs[name].clone()
    }

    fn function(&self, package: &str) -> &tally_localcloud::lambda::Function {
        self.0
            .functions
            .values()
            .find(|f| f.spec().executable.ends_with(package))
            .unwrap()
    }
}

pub(crate) async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .load()
        .await
}

/// POSTs `events` to collect: (status, the ids collect says it wrote).
pub(crate) async fn post(collect: &str, events: &[Value]) -> (u16, Vec<String>) {
    let (collect, body) = (collect.to_owned(), Value::from(events.to_vec()).to_string());
    let (status, _, answer) = tokio::task::spawn_blocking(move || {
        http(
            &collect,
            "POST",
            "/v1/events",
            &[("content-type", "application/json")],
            &body,
        )
    })
    .await
    .unwrap();
    let ids = serde_json::from_str::<Value>(&answer)
        .ok()
        .and_then(|a| a.get("ids").and_then(Value::as_array).cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|id| id.as_str().map(str::to_owned))
        .collect();
    (status, ids)
}

pub(crate) fn event(serial: u64, campaign: &str, kind: &str) -> Value {
    json!({"id": format!("e2e-{serial}"), "kind": kind, "campaign_id": campaign, "ad_id": "ad1",
           "user_id": format!("u{}", serial % 97), "client_ts_ms": now_ms()})
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends one batch of valid events and adds what collect wrote to `acked`.
pub(crate) async fn send_valid(collect: &str, serial: &mut u64, n: u64, acked: &Mutex<Counts>) {
    let events: Vec<Value> = (0..n)
        .map(|_| {
            *serial += 1;
            // Very different campaign sizes; one click in seven, in every campaign.
            let campaign = CAMPAIGNS[match *serial % 10 {
                0..=6 => 0,
                7 | 8 => 1,
                _ => 2,
            }];
            let kind = if matches!(*serial % 7, 3) {
                "click"
            } else {
                "impression"
            };
            event(*serial, campaign, kind)
        })
        .collect();
    let (status, ids) = post(collect, &events).await;
    assert!(matches!(status, 202 | 503), "collect answered {status}");
    let mut acked = acked.lock().unwrap();
    for e in events
        .iter()
        .filter(|e| ids.iter().any(|id| e["id"] == *id))
    {
        let key = (
            e["campaign_id"].as_str().unwrap().to_owned(),
            e["kind"].as_str().unwrap().to_owned(),
        );
        *acked.entry(key).or_insert(0) += 1;
    }
}

/// One valid impression as the stream holds it (for records written straight to the stream), counted in `acked`.
fn valid_event(serial: &mut u64, acked: &Mutex<Counts>) -> tally_domain::event::Event {
    use tally_domain::event::{DeviceClass, Event, EventKind};
    *serial += 1;
    *acked
        .lock()
        .unwrap()
        .entry((CAMPAIGNS[0].to_owned(), "impression".to_owned()))
        .or_insert(0) += 1;
    Event {
        id: format!("e2e-direct-{serial}"),
        kind: EventKind::Impression,
        campaign_id: CAMPAIGNS[0].to_owned(),
        ad_id: "ad1".to_owned(),
        placement_id: None,
        user_id: Some(format!("u{}", *serial % 97)),
        client_ts_ms: None,
        received_ms: now_ms(),
        cost_micros: 0,
        value_micros: 0,
        country: None,
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: None,
    }
}

/// Today's counts of the test's campaigns in `lane` (`realtime`, `settled`) through the query API, per
/// (campaign, kind).
pub(crate) async fn counted(query: &str, lane: &str) -> Option<Counts> {
    let query = query.to_owned();
    let (status, _, body) =
        tokio::task::spawn_blocking(move || http(&query, "GET", "/v1/campaigns", &[], ""))
            .await
            .ok()?;
    if status != 200 {
        return None;
    }
    let doc: Value = serde_json::from_str(&body).ok()?;
    let mut out = Counts::new();
    for campaign in doc["campaigns"].as_array()? {
        let id = campaign["campaign_id"].as_str().unwrap_or_default();
        if !CAMPAIGNS.contains(&id) {
            continue;
        }
        let counters = &campaign["today"][lane];
        for (kind, field) in [("impression", "impressions"), ("click", "clicks")] {
            let n = counters[field].as_u64().unwrap_or(0);
            if n > 0 {
                out.insert((id.to_owned(), kind.to_owned()), n);
            }
        }
    }
    Some(out)
}

/// The pids of the instances of the function binary `package` that belong to the cloud at `endpoint`.
fn instance_pids(package: &str, endpoint: &str) -> Vec<u32> {
    let marker = format!("AWS_ENDPOINT_URL={endpoint}\0");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            exe.to_string_lossy().contains(&format!("/{package}"))
                && String::from_utf8_lossy(&environ).contains(&marker)
        })
        .collect()
}

/// Polls `check` until it answers `Some`, at most `limit`.
pub(crate) async fn poll<T, F: std::future::Future<Output = Option<T>>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether sequence number `a` is at most `b` (decimal strings of up to 56 digits).
fn seq_le(a: &str, b: &str) -> bool {
    (a.len(), a) <= (b.len(), b)
}

/// Polls `queue` (at most 30 s) for the on-failure document whose batch holds `sequence` of `shard`.
async fn poison_report(
    sqs: &aws_sdk_sqs::Client,
    queue: &str,
    shard: &str,
    sequence: &str,
) -> Option<Value> {
    poll(Duration::from_secs(30), || async {
        let got = sqs
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages(10)
            .send()
            .await
            .ok()?;
        got.messages().iter().find_map(|m| {
            let doc: Value = serde_json::from_str(m.body()?).ok()?;
            let info = &doc["KinesisBatchInfo"];
            let (start, end) = (
                info["startSequenceNumber"].as_str()?,
                info["endSequenceNumber"].as_str()?,
            );
            (info["shardId"] == shard && seq_le(start, sequence) && seq_le(sequence, end))
                .then_some(doc)
        })
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valid_invalid_poison_kill_and_restart_end_with_exact_counts() {
    let started = Instant::now();
    let bin = build_functions();
    let dir = TempDir::new("e2e");
    let state = dir.0.join("state");
    let cloud = Running(LocalCloud::start(options(&state, &bin)).await.unwrap());
    let collect = cloud.output("CollectUrl");
    let acked: Arc<Mutex<Counts>> = Arc::default();
    let mut serial = 0u64;

    // Valid, invalid (alone: 400, nothing written) and mixed (400, the valid one written and listed).
    send_valid(&collect, &mut serial, 20, &acked).await;
    let (status, ids) = post(&collect, &[event(900_001, CAMPAIGNS[0], "bogus-kind")]).await;
    assert_eq!((status, ids.len()), (400, 0));
    serial += 1;
    let mixed = [
        event(serial, CAMPAIGNS[1], "click"),
        json!({"id": "e2e-no-campaign", "kind": "impression"}),
    ];
    let (status, ids) = post(&collect, &mixed).await;
    assert_eq!((status, ids), (400, vec![format!("e2e-{serial}")]));
    *acked
        .lock()
        .unwrap()
        .entry((CAMPAIGNS[1].to_owned(), "click".to_owned()))
        .or_insert(0) += 1;

    // Traffic while the realtime instance is killed with SIGKILL until a kill lands mid-invocation.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sender = {
        let (collect, acked, stop) = (collect.clone(), acked.clone(), stop.clone());
        let mut serial = 100_000u64;
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                send_valid(&collect, &mut serial, 50, &acked).await;
            }
        })
    };
    let realtime = cloud.function("tally-realtime");
    let kill_deadline = Instant::now() + Duration::from_secs(20);
    let mut kills = 0;
    while realtime.stats().crashes == 0 && Instant::now() < kill_deadline {
        for pid in instance_pids("tally-realtime", &cloud.0.endpoint) {
            let killed = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .unwrap();
            kills += u32::from(killed.success());
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    sender.await.unwrap();
    assert!(
        realtime.stats().crashes >= 1,
        "no kill landed mid-invocation in 20 s ({kills} kills)"
    );

    // A poison record, straight to the stream: not something `wire::unpack` decodes.
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config(&cloud.0.endpoint).await);
    let poison = kinesis
        .put_record()
        .stream_name(cloud.output("StreamName"))
        .partition_key("poison")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            &b"definitely not a tally record"[..],
        ))
        .send()
        .await
        .unwrap();
    let (poison_shard, poison_seq) = (
        poison.shard_id().to_owned(),
        poison.sequence_number().to_owned(),
    );

    // Valid traffic right behind it, on the same shard too: the functions apply every record that decodes and
    // report only the poison record, so these are counted even when their batch is the one that fails and its
    // remainder is finally discarded to the on-failure queue.
    let poison_neighbours = kinesis
        .put_record()
        .stream_name(cloud.output("StreamName"))
        .partition_key("poison")
        .data(aws_sdk_kinesis::primitives::Blob::new(
            tally_domain::wire::encode_record(&[valid_event(&mut serial, &acked)]),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(poison_neighbours.shard_id(), poison_shard);
    send_valid(&collect, &mut serial, 20, &acked).await;

    // Each lane isolates it (bounded retries) and reports it to its on-failure queue.
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&cloud.0.endpoint).await);
    for (lane, queue) in [
        ("realtime", "RealtimeFailuresQueueUrl"),
        ("deferred", "DeferredFailuresQueueUrl"),
    ] {
        let doc = poison_report(&sqs, &cloud.output(queue), &poison_shard, &poison_seq)
            .await
            .unwrap_or_else(|| {
                panic!("the poison record {poison_seq} never reached the {lane} on-failure queue")
            });
        assert_eq!(
            doc["requestContext"]["condition"], "RetryAttemptsExhausted",
            "{lane}: {doc}"
        );
        assert_eq!(
            doc["KinesisBatchInfo"]["startSequenceNumber"], poison_seq,
            "{lane}: {doc}"
        );
        assert!(
            doc.get("Records").is_none(),
            "records are never sent: {doc}"
        );
    }

    // Restart the whole local cloud on the same state directory, then send more.
    drop(cloud);
    let cloud = Running(LocalCloud::start(options(&state, &bin)).await.unwrap());
    let collect = cloud.output("CollectUrl");
    let query = cloud.output("QueryUrl");
    send_valid(&collect, &mut serial, 30, &acked).await;

    // Every acknowledged valid event counted exactly once in the realtime lane, per campaign and kind.
    let want = acked.lock().unwrap().clone();
    let settled = poll(Duration::from_secs(30), || async {
        counted(&query, "realtime").await.filter(|got| *got == want)
    })
    .await;
    if settled.is_none() {
        panic!(
            "counts never matched: acknowledged {want:?}, counted {:?}",
            counted(&query, "realtime").await
        );
    }
    // Nothing more arrives later (no late duplicate from a replay).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counted(&query, "realtime").await.as_ref(), Some(&want));

    // The meter files each DynamoDB request under the function that made it (its access key id is its name):
    // the query function's reads (this test's polling) apart from the lanes'.
    let name_of = |package: &str| {
        cloud
            .0
            .functions
            .iter()
            .find(|(_, f)| f.spec().executable.ends_with(package))
            .map(|(name, _)| name.clone())
            .unwrap()
    };
    let mut callers: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for table in cloud.0.aws.meter.snapshot().dynamodb.tables.values() {
        for (caller, usage) in &table.callers {
            let entry = callers.entry(caller.clone()).or_default();
            entry.0 += usage.write_units;
            entry.1 += usage.read_units;
        }
    }
    // The realtime lane writes the cache only: no table request of its own, and the cache's meter shows its
    // commands.
    assert!(
        !callers.contains_key(&name_of("tally-realtime")),
        "{callers:?}"
    );
    let caches = cloud.0.aws.meter.snapshot().elasticache.caches;
    assert!(
        caches
            .values()
            .any(|c| c.ecpu > 0.0 && c.commands.contains_key("evalsha")),
        "{caches:?}"
    );
    assert!(
        callers
            .get(&name_of("tally-query"))
            .is_some_and(|c| c.1 > 0.0),
        "{callers:?}"
    );
    assert!(
        callers.keys().all(|c| cloud.0.functions.contains_key(c)),
        "every DynamoDB caller is a function: {callers:?}"
    );

    // The deferred lane settles the same counts.
    let settled = poll(Duration::from_secs(30), || async {
        counted(&query, "settled").await.filter(|got| *got == want)
    })
    .await;
    if settled.is_none() {
        panic!(
            "settled counts never matched: acknowledged {want:?}, settled {:?}",
            counted(&query, "settled").await
        );
    }

    // The deferred lane archived the events.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk_config(&cloud.0.endpoint).await)
            .force_path_style(true)
            .build(),
    );
    let bucket = cloud.output("ArchiveBucketName");
    let keys = poll(Duration::from_secs(30), || async {
        let listed = s3
            .list_objects_v2()
            .bucket(&bucket)
            .prefix("events/")
            .send()
            .await
            .ok()?;
        let keys: Vec<String> = listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        (!keys.is_empty()).then_some(keys)
    })
    .await;
    let keys = keys.expect("no archive object in the archive bucket within 30 s");
    assert!(keys.iter().all(|k| k.ends_with(".ndjson.gz")), "{keys:?}");
    eprintln!(
        "e2e: {} events acknowledged, {kills} kills, {} archive objects, {:.1} s",
        want.values().sum::<u64>(),
        keys.len(),
        started.elapsed().as_secs_f64()
    );
}
