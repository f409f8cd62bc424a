//! The origin check against `moto_server` (Kinesis and Secrets Manager): behind the edge, a request without the
//! origin header or with a wrong value is refused (`403`) and nothing reaches the stream; with the secret it is
//! taken; a rotation keeps the previous value working; without an origin secret nothing is required.

use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use tally_collect::origin::{Origin, ORIGIN_HEADER, ORIGIN_SECRET_TTL_MS};
use tally_collect::Collector;
use tally_domain::event::Event;
use tally_testkit::Moto;

use crate::support::{body_json, header, kinesis_client, now_ms, url_request};

const SECRET_A: &str = "OriginSecretA0123456789abcdefghij";
const SECRET_B: &str = "OriginSecretB0123456789abcdefghij";
const SECRET_C: &str = "OriginSecretC0123456789abcdefghij";

struct Setup {
    _moto: Moto,
    kinesis: aws_sdk_kinesis::Client,
    secrets: aws_sdk_secretsmanager::Client,
    arn: String,
}

/// moto with a one-shard stream `events` and the origin secret holding `value`.
async fn setup(value: &str) -> Setup {
    let moto = Moto::start();
    let config = tally_aws_testing::sdk_config(&moto.endpoint()).await;
    let kinesis = kinesis_client(&moto.endpoint()).await;
    kinesis
        .create_stream()
        .stream_name("events")
        .shard_count(1)
        .send()
        .await
        .expect("create stream");
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let arn = secrets
        .create_secret()
        .name("collect-origin")
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("arn")
        .to_owned();
    Setup {
        _moto: moto,
        kinesis,
        secrets,
        arn,
    }
}

impl Setup {
    async fn collector(&self, arn: Option<&str>, now_ms: i64) -> Collector {
        let origin = Origin::load(arn, &self.secrets, now_ms)
            .await
            .expect("the origin secret is read");
        Collector::new(self.kinesis.clone(), "events").with_origin(origin)
    }

    async fn rotate(&self, value: &str) {
        self.secrets
            .put_secret_value()
            .secret_id(&self.arn)
            .secret_string(value)
            .send()
            .await
            .expect("put secret value");
    }

    /// The ids of every event in the stream, in order.
    async fn ids(&self) -> Vec<String> {
        let iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_name("events")
            .shard_id("shardId-000000000000")
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let records = self
            .kinesis
            .get_records()
            .shard_iterator(iterator.shard_iterator().expect("iterator"))
            .send()
            .await
            .expect("get records");
        records
            .records()
            .iter()
            .flat_map(|r| tally_domain::wire::unpack(r.data().as_ref()).expect("tally record"))
            .map(|e: Event| e.id)
            .collect()
    }
}

/// Posts one impression with id `id`, carrying `origin` in the origin header when given.
async fn post(
    collector: &Collector,
    origin: Option<&str>,
    id: &str,
    now_ms: i64,
) -> (StatusCode, Value) {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(value) = origin {
        headers.push((ORIGIN_HEADER, value));
    }
    let body = json!([{"id": id, "kind": "impression", "campaign_id": "cmp-1", "ad_id": "ad-1"}]);
    let response = collector
        .handle_at(
            url_request(
                "POST",
                "/v1/events",
                &headers,
                Some(body.to_string().as_bytes()),
            ),
            now_ms,
        )
        .await;
    (response.status(), body_json(&response))
}

/// A refusal names the header and what to do, and never echoes the value sent or the secret.
fn assert_refused(status: StatusCode, doc: &Value, sent: Option<&str>, says: &str) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{doc}");
    assert_eq!(
        doc["type"], "https://tally.invalid/problems/not-through-edge",
        "{doc}"
    );
    assert_eq!(doc["accepted"], 0, "{doc}");
    let text = doc.to_string();
    assert!(text.contains(says), "{says:?} in {text}");
    assert!(text.contains("EdgeUrl"), "{text}");
    for secret in [SECRET_A, SECRET_B, SECRET_C].into_iter().chain(sent) {
        assert!(
            !text.contains(secret),
            "the answer carries a secret: {text}"
        );
    }
}

#[tokio::test]
async fn behind_the_edge_only_requests_with_the_origin_secret_are_counted() {
    let s = setup(SECRET_A).await;
    let now = now_ms();
    let collector = s.collector(Some(&s.arn), now).await;

    let (status, doc) = post(&collector, None, "bypass-1", now).await;
    assert_refused(status, &doc, None, "has no x-tally-origin header");
    let wrong = "OriginSecretX0123456789abcdefghij";
    let (status, doc) = post(&collector, Some(wrong), "bypass-2", now).await;
    assert_refused(status, &doc, Some(wrong), "does not match");
    // A prefix of the secret, and the secret with a byte more, are wrong too.
    for near in [
        SECRET_A[..SECRET_A.len() - 1].to_owned(),
        format!("{SECRET_A}x"),
    ] {
        let (status, doc) = post(&collector, Some(&near), "bypass-3", now).await;
        assert_refused(status, &doc, Some(&near), "does not match");
    }
    // The pixel is refused as well (a 403, not the GIF: nothing was counted).
    let pixel = collector
        .handle_at(
            url_request("GET", "/p.gif?c=cmp-1&a=ad-1&e=impression", &[], None),
            now,
        )
        .await;
    assert_eq!(pixel.status(), StatusCode::FORBIDDEN);
    assert_eq!(header(&pixel, "content-type"), "application/problem+json");
    assert_eq!(
        s.ids().await,
        Vec::<String>::new(),
        "nothing refused reached the stream"
    );

    let (status, doc) = post(&collector, Some(SECRET_A), "edge-1", now).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(s.ids().await, ["edge-1"]);
}

#[tokio::test]
async fn a_rotation_keeps_the_previous_origin_secret_until_the_next_one() {
    let s = setup(SECRET_A).await;
    let start = now_ms();
    let collector = s.collector(Some(&s.arn), start).await;
    s.rotate(SECRET_B).await;
    // Within the TTL the cached secret is used: B is not known yet.
    let (status, doc) = post(&collector, Some(SECRET_B), "early-b", start + 1_000).await;
    assert_refused(status, &doc, Some(SECRET_B), "does not match");
    // After it, both the new (CloudFront after the stack update) and the previous (CloudFront before) pass.
    let later = start + ORIGIN_SECRET_TTL_MS + 1;
    for (value, id) in [(SECRET_B, "b"), (SECRET_A, "a")] {
        let (status, doc) = post(&collector, Some(value), id, later).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{id}: {doc}");
    }
    // The next rotation drops A.
    s.rotate(SECRET_C).await;
    let latest = later + ORIGIN_SECRET_TTL_MS + 1;
    let (status, doc) = post(&collector, Some(SECRET_A), "stale-a", latest).await;
    assert_refused(status, &doc, Some(SECRET_A), "does not match");
    for (value, id) in [(SECRET_C, "c"), (SECRET_B, "b2")] {
        let (status, doc) = post(&collector, Some(value), id, latest).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{id}: {doc}");
    }
    assert_eq!(s.ids().await, ["b", "a", "c", "b2"]);
}

#[tokio::test]
async fn without_an_origin_secret_nothing_is_required() {
    let s = setup(SECRET_A).await;
    let now = now_ms();
    for arn in [None, Some(""), Some("  ")] {
        let collector = s.collector(arn, now).await;
        let (status, doc) = post(&collector, None, "open", now).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{arn:?}: {doc}");
    }
}

#[tokio::test]
async fn an_unreadable_origin_secret_fails_the_cold_start_with_its_reason() {
    let s = setup(SECRET_A).await;
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf";
    let error = Origin::load(Some(missing), &s.secrets, now_ms())
        .await
        .expect_err("a missing secret is an error");
    assert!(
        format!("{error:#}").contains("while reading the token secret"),
        "{error:#}"
    );
    s.rotate("short").await;
    let error = Origin::load(Some(&s.arn), &s.secrets, now_ms())
        .await
        .expect_err("a secret too short to be one is an error");
    assert!(
        format!("{error:#}").contains("at least 16 characters"),
        "{error:#}"
    );
}
