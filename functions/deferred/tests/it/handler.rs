use std::collections::BTreeMap;
use std::io::Read;

use aws_lambda_events::event::kinesis::KinesisEvent;
use lambda_runtime::{Context, LambdaEvent};
use tally_aws::cache_auth::StoreSource;
use tally_aws::store::CacheEnv;
use tally_deferred::{handler, Deferred};
use tally_domain::enrich::{enrich_batch, RateLimits};
use tally_domain::event::Event;
use tally_domain::exactly_once::Tally;
use tally_domain::hll::Hll;
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::StoreLane;
use tally_domain::wire;
use tally_testkit::{Moto, Valkey};

use crate::fixture;

const BUCKET: &str = "tally-archive";

struct Env {
    _moto: Moto,
    cache: Valkey,
    state: Deferred,
    s3: aws_sdk_s3::Client,
}

async fn env(create_bucket: bool) -> Env {
    let moto = Moto::start();
    let config = tally_aws_testing::sdk_config(&moto.endpoint()).await;
    let s3 = tally_aws::config::s3(&config);
    if create_bucket {
        s3.create_bucket()
            .bucket(BUCKET)
            .send()
            .await
            .expect("create bucket");
    }
    let cache = Valkey::start();
    let state = Deferred::new(store(&cache).await, s3.clone(), BUCKET);
    Env {
        _moto: moto,
        cache,
        state,
        s3,
    }
}

async fn store(cache: &Valkey) -> StoreSource {
    StoreSource::connect(
        CacheEnv::plain(cache.addr()),
        0,
        std::time::Duration::from_secs(5),
        None,
    )
    .await
    .expect("connect to the cache")
}

async fn invoke(state: &Deferred, payload: &KinesisEvent) -> Result<serde_json::Value, String> {
    handler(state, LambdaEvent::new(payload.clone(), Context::default()))
        .await
        .map(|response| serde_json::to_value(response).expect("response serializes"))
        .map_err(|error| error.to_string())
}

fn no_failures() -> Result<serde_json::Value, String> {
    Ok(serde_json::json!({"batchItemFailures": []}))
}

fn events_of(batch: &KinesisEvent, range: impl IntoIterator<Item = usize>) -> Vec<Event> {
    range
        .into_iter()
        .flat_map(|i| wire::unpack(&batch.records[i].kinesis.data).expect("unpack"))
        .collect()
}

/// What the settled lane holds: counters and unique-user sketches per (campaign, ad, minute).
type Settled = (
    BTreeMap<(String, String, i64), Tally>,
    BTreeMap<(String, String, i64), Hll>,
);

/// What the valid ones of `events` must settle: each distinct id once, its users in the sketch of its
/// (campaign, ad, minute).
fn expected_settled(events: &[Event]) -> Settled {
    let valid: Vec<Event> = enrich_batch(events, &RateLimits::default())
        .iter()
        .filter(|e| e.is_valid())
        .map(|e| e.event.clone())
        .collect();
    let mut users: BTreeMap<(String, String, i64), Hll> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for e in &valid {
        if let (true, Some(u)) = (seen.insert(e.id.clone()), &e.user_id) {
            users
                .entry((
                    e.campaign_id.clone(),
                    e.ad_id.clone(),
                    minute_of(e.received_ms),
                ))
                .or_default()
                .insert(u.as_bytes());
        }
    }
    (tally_aws_testing::distinct_tallies(&valid), users)
}

/// The settled lane in the cache.
fn snapshot(cache: &Valkey) -> Settled {
    (
        tally_aws_testing::valkey_counters(cache, StoreLane::Settled),
        tally_aws_testing::valkey_users(cache, StoreLane::Settled),
    )
}

fn assert_settled(got: &Settled, want: &Settled) {
    assert!(
        !want.0.is_empty() && !want.1.is_empty(),
        "a meaningful expectation"
    );
    assert_eq!(got.0, want.0, "settled counters");
    assert_eq!(got.1, want.1, "unique-user registers");
}

/// Every archive object: key → its NDJSON lines, parsed.
async fn archive(s3: &aws_sdk_s3::Client) -> BTreeMap<String, Vec<serde_json::Value>> {
    let listed = s3
        .list_objects_v2()
        .bucket(BUCKET)
        .send()
        .await
        .expect("list");
    let mut out = BTreeMap::new();
    for object in listed.contents() {
        let key = object.key().expect("key").to_owned();
        let body = s3
            .get_object()
            .bucket(BUCKET)
            .key(&key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("body");
        let mut text = String::new();
        flate2::read::GzDecoder::new(&body.into_bytes()[..])
            .read_to_string(&mut text)
            .expect("gzip");
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("ndjson line"))
            .collect();
        out.insert(key, lines);
    }
    out
}

fn key(hour: &str, first: usize, last: usize) -> String {
    format!(
        "events/dt=2025-11-26/hour={hour}/{}-{}-{}.ndjson.gz",
        fixture::SHARD,
        tally_aws_testing::sequence_number(first),
        tally_aws_testing::sequence_number(last)
    )
}

#[tokio::test]
async fn settles_valid_traffic_and_archives_per_hour_once() {
    let env = env(true).await;
    let batch = fixture::load();
    let n = batch.records.len();
    assert_eq!(invoke(&env.state, &batch).await, no_failures());
    let events = fixture::events();
    assert_settled(&snapshot(&env.cache), &expected_settled(&events));
    assert!(
        tally_aws_testing::valkey_counters(&env.cache, StoreLane::Realtime).is_empty(),
        "deferred writes the settled lane only"
    );

    let objects = archive(&env.s3).await;
    let keys: Vec<&String> = objects.keys().collect();
    assert_eq!(keys, [&key("13", 0, n - 1), &key("14", 0, n - 1)]);
    let lines: Vec<&serde_json::Value> = objects.values().flatten().collect();
    assert_eq!(lines.len(), events.len(), "every event archived once");
    let reason = |id: &str| {
        lines
            .iter()
            .find(|l| l["id"] == id)
            .map(|l| l["invalid_reason"].clone())
    };
    assert_eq!(reason("d-00003"), Some(serde_json::json!("known_crawler")));
    assert_eq!(reason("d-00005"), Some(serde_json::json!("automation")));
    assert_eq!(
        reason("d-01000"),
        Some(serde_json::json!("impossible_rate"))
    );
    assert_eq!(reason("d-00001"), Some(serde_json::Value::Null));
    let person = lines
        .iter()
        .find(|l| l["id"] == "d-00000")
        .expect("d-00000");
    assert_eq!(
        (&person["device"], &person["browser"], &person["os"]),
        (
            &serde_json::json!("mobile"),
            &serde_json::json!("safari"),
            &serde_json::json!("ios")
        )
    );
    assert_eq!(person["shard_id"], fixture::SHARD);
    assert!(
        lines
            .iter()
            .all(|l| l["received_ms"].as_i64().is_some_and(|ms| {
                let hour = if ms < 1_764_165_600_000 { "13" } else { "14" };
                objects[&key(hour, 0, n - 1)]
                    .iter()
                    .any(|x| x["id"] == l["id"])
            })),
        "every line is in the partition of its receive hour"
    );
    let invalid = lines.iter().filter(|l| l["valid"] == false).count();
    assert!(
        invalid > 25,
        "crawler, script and the clicker are invalid: {invalid}"
    );

    // A duplicate delivery settles nothing more and leaves the archive as it was.
    let before = archive(&env.s3).await;
    assert_eq!(invoke(&env.state, &batch).await, no_failures());
    assert_settled(&snapshot(&env.cache), &expected_settled(&events));
    assert!(
        archive(&env.s3).await == before,
        "archive changed on redelivery"
    );
}

/// `batch` followed by records of the same shard holding `extra` (later sequence numbers).
fn append(batch: &KinesisEvent, extra: Vec<Vec<u8>>) -> KinesisEvent {
    let mut out = batch.clone();
    let n = out.records.len();
    for (i, data) in extra.into_iter().enumerate() {
        let mut record = out.records[0].clone();
        let seq = tally_aws_testing::sequence_number(n + i);
        record.event_id = Some(format!("{}:{seq}", fixture::SHARD));
        record.kinesis.sequence_number = seq;
        *record.kinesis.data = data;
        out.records.push(record);
    }
    out
}

#[tokio::test]
async fn resent_ids_settle_once_in_the_store() {
    let env = env(true).await;
    let batch = fixture::load();
    let n = batch.records.len();
    let events = fixture::events();
    assert_eq!(invoke(&env.state, &batch).await, no_failures());
    let want = expected_settled(&events);
    assert_settled(&snapshot(&env.cache), &want);
    // A client resends 30 events after a timeout (a new record), another body holds one event twice: a later
    // batch of those records settles nothing more, in either place.
    let resends = append(
        &batch,
        vec![
            wire::encode_record(&events[..30]),
            wire::encode_record(&[events[40].clone(), events[40].clone()]),
        ],
    );
    let mut later = resends.clone();
    later.records.drain(..n);
    let outcome = env
        .state
        .process(&later, || fixture::T0_MS)
        .await
        .expect("process");
    assert_eq!(outcome.stats.counted, 0, "{:?}", outcome.stats);
    assert_eq!(outcome.stats.duplicates, 31, "{:?}", outcome.stats);
    assert_eq!(outcome.stats.repeats, 1, "{:?}", outcome.stats);
    assert_settled(&snapshot(&env.cache), &want);
}

#[tokio::test]
async fn a_poison_record_is_reported_and_every_other_record_settles_and_archives() {
    let env = env(true).await;
    let mut batch = fixture::load();
    let n = batch.records.len();
    *batch.records[3].kinesis.data = b"not tally".to_vec();
    let seq3 = batch.records[3].kinesis.sequence_number.clone();
    assert_eq!(
        invoke(&env.state, &batch).await,
        Ok(serde_json::json!({"batchItemFailures": [{"itemIdentifier": seq3}]}))
    );
    let others = events_of(&batch, (0..n).filter(|&i| i != 3));
    assert_settled(&snapshot(&env.cache), &expected_settled(&others));
    let objects = archive(&env.s3).await;
    assert_eq!(objects.values().flatten().count(), others.len());
    // Lambda redelivers from the poison record: nothing settles twice.
    let mut rest = batch.clone();
    rest.records.drain(..3);
    assert_eq!(
        invoke(&env.state, &rest).await,
        Ok(serde_json::json!({"batchItemFailures": [{"itemIdentifier": seq3}]}))
    );
    assert_settled(&snapshot(&env.cache), &expected_settled(&others));
}

#[tokio::test]
async fn a_failed_archive_fails_the_batch_and_the_retry_completes_it() {
    let env = env(false).await;
    let batch = fixture::load();
    let err = invoke(&env.state, &batch).await.expect_err("no bucket");
    assert!(
        err.starts_with(&format!(
            "archiving s3://{BUCKET}/events/dt=2025-11-26/hour=13/"
        )),
        "{err}"
    );
    assert!(err.contains("NoSuchBucket"), "{err}");
    // Settling came first and is not repeated by the retry.
    let events = fixture::events();
    assert_settled(&snapshot(&env.cache), &expected_settled(&events));
    env.s3
        .create_bucket()
        .bucket(BUCKET)
        .send()
        .await
        .expect("create bucket");
    let outcome = env
        .state
        .process(&batch, || fixture::T0_MS + 600_000)
        .await
        .expect("retry");
    assert_eq!(outcome.stats.counted, 0, "{:?}", outcome.stats);
    assert_eq!(outcome.archived.len(), 2);
    assert_settled(&snapshot(&env.cache), &expected_settled(&events));
    assert_eq!(
        archive(&env.s3).await.values().flatten().count(),
        events.len()
    );
    let line: serde_json::Value = serde_json::from_str(&outcome.metrics.to_line()).expect("emf");
    assert_eq!(
        (line["Function"].as_str(), line["BatchEvents"].as_u64()),
        (Some("deferred"), Some(200))
    );
}

#[tokio::test]
async fn a_failing_cache_fails_the_batch_before_anything_is_archived() {
    let env = env(true).await;
    let batch = fixture::load();
    // The settled lane's mark of the shard holds a hash: every read of it is a WRONGTYPE error, as a cache
    // that answers with errors would.
    let mark = tally_domain::store_keys::mark_key(StoreLane::Settled, fixture::SHARD);
    tally_aws_testing::valkey(&env.cache, &["HSET", &mark, "x", "1"]);
    let err = invoke(&env.state, &batch)
        .await
        .expect_err("the cache fails");
    assert!(err.contains("WRONGTYPE"), "{err}");
    assert!(
        archive(&env.s3).await.is_empty(),
        "nothing archived before the counters are settled"
    );
    assert!(tally_aws_testing::valkey_counters(&env.cache, StoreLane::Settled).is_empty());
    tally_aws_testing::valkey(&env.cache, &["DEL", &mark]);
    // Lambda bisects: both halves, then (at-least-once) the whole batch again.
    let half = batch.records.len() / 2;
    let mut first = batch.clone();
    first.records.truncate(half);
    let mut second = batch.clone();
    second.records.drain(..half);
    for part in [&first, &second, &batch] {
        assert_eq!(invoke(&env.state, part).await, no_failures());
    }
    // The rate verdict is scoped to the invocation: each half was judged on its own (the clicker's burst is
    // split across the halves and falls under the limit in one), and the redelivered whole batch changed
    // nothing (the fence).
    let (mut counts, mut users) = expected_settled(&events_of(&batch, 0..half));
    let (more, more_users) = expected_settled(&events_of(&batch, half..batch.records.len()));
    for (key, t) in more {
        counts.entry(key).or_default().merge(&t);
    }
    for (key, h) in more_users {
        users.entry(key).or_default().merge(&h);
    }
    assert_settled(&snapshot(&env.cache), &(counts, users));
}

/// The fixture's batch plus a record of 12 unsigned events (copies with new ids, no money).
fn with_unsigned() -> (KinesisEvent, Vec<Event>, Vec<Event>) {
    let signed = fixture::events();
    let unsigned: Vec<Event> = signed[..12]
        .iter()
        .map(|e| Event {
            id: format!("unsigned-{}", e.id),
            cost_micros: 0,
            value_micros: 0,
            trust: tally_domain::event::Trust::Unsigned,
            ..e.clone()
        })
        .collect();
    let batch = append(&fixture::load(), vec![wire::encode_record(&unsigned)]);
    (batch, signed, unsigned)
}

#[tokio::test]
async fn unsigned_events_settle_unless_the_stack_excludes_them_and_are_archived_with_their_trust() {
    let (batch, signed, unsigned) = with_unsigned();
    let all: Vec<Event> = signed.iter().chain(&unsigned).cloned().collect();
    // Default (`count`): unsigned events settle like the others (they carry no money).
    let counting = env(true).await;
    assert_eq!(invoke(&counting.state, &batch).await, no_failures());
    assert_settled(&snapshot(&counting.cache), &expected_settled(&all));

    // `exclude_unsigned`: they are archived, invalid with reason `unsigned`, and settle nothing.
    let mut excluding = env(true).await;
    excluding.state = excluding.state.excluding_unsigned(true);
    assert_eq!(invoke(&excluding.state, &batch).await, no_failures());
    assert_settled(&snapshot(&excluding.cache), &expected_settled(&signed));
    let lines: Vec<serde_json::Value> = archive(&excluding.s3)
        .await
        .into_values()
        .flatten()
        .collect();
    assert_eq!(lines.len(), all.len());
    let marked: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["trust"] == "unsigned").collect();
    assert_eq!(marked.len(), unsigned.len());
    // Invalid, with reason `unsigned` unless a bot verdict came first (the fixture has a crawler and a script).
    let reasons: Vec<&str> = marked
        .iter()
        .map(|l| {
            assert_eq!(l["valid"], false, "{l}");
            l["invalid_reason"].as_str().unwrap_or("none")
        })
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| **r == "unsigned").count(),
        10,
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"known_crawler") && reasons.contains(&"automation"),
        "{reasons:?}"
    );
    assert!(
        lines
            .iter()
            .filter(|l| l["trust"] == "authenticated")
            .count()
            == signed.len()
    );
}

#[test]
fn the_settled_unsigned_variable_is_checked() {
    use tally_deferred::settled_unsigned_from_env as parse;
    assert_eq!(parse(None), Ok(false));
    assert_eq!(parse(Some("count")), Ok(false));
    assert_eq!(parse(Some("exclude")), Ok(true));
    assert_eq!(
        parse(Some("yes")),
        Err("TALLY_SETTLED_UNSIGNED=\"yes\": expected count or exclude (the stack option exclude_unsigned)".to_owned())
    );
}
