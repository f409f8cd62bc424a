//! Authenticated tracking against `moto_server` (Kinesis and Secrets Manager): keys on posts, signed pixels,
//! money only from trusted events, and a rotation of the keys secret.

use std::time::Duration;

use lambda_http::http::StatusCode;
use serde_json::{json, Value};
use tally_collect::keys::Keys;
use tally_collect::Collector;
use tally_domain::event::{Event, Trust};
use tally_domain::signing::sign_pixel;
use tally_testkit::Moto;

use crate::support::{body_json, header, kinesis_client, now_ms, url_request};

const KEY_A: &str = "secret-a-0123456789abcdefghij";
const KEY_B: &str = "secret-b-0123456789abcdefghij";
const KEY_C: &str = "secret-c-0123456789abcdefghij";

struct Setup {
    _moto: Moto,
    kinesis: aws_sdk_kinesis::Client,
    secrets: aws_sdk_secretsmanager::Client,
    arn: String,
}

/// moto with a one-shard stream `events` and the keys secret `collect-keys` holding `keys`.
async fn setup(keys: Value) -> Setup {
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
        .name("collect-keys")
        .secret_string(keys.to_string())
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
    fn collector(&self, ttl: Duration) -> Collector {
        Collector::new(self.kinesis.clone(), "events")
            .with_keys(Keys::from_secret(self.secrets.clone(), self.arn.clone()).with_ttl(ttl))
    }

    async fn rotate(&self, keys: Value) {
        self.secrets
            .put_secret_value()
            .secret_id(&self.arn)
            .secret_string(keys.to_string())
            .send()
            .await
            .expect("put secret value");
    }

    /// Every event in the stream, in order.
    async fn events(&self) -> Vec<Event> {
        let shard = "shardId-000000000000";
        let iterator = self
            .kinesis
            .get_shard_iterator()
            .stream_name("events")
            .shard_id(shard)
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
            .collect()
    }
}

/// A conversion and a click, each naming money (forged, unless the post is authenticated).
fn money_body(prefix: &str) -> String {
    json!([
        {"id": format!("{prefix}-1"), "kind": "conversion", "campaign_id": "cmp-1", "ad_id": "ad-1",
         "cost_micros": 100_000_000, "value_micros": 1_000_000_000_000_u64},
        {"id": format!("{prefix}-2"), "kind": "click", "campaign_id": "cmp-1", "ad_id": "ad-1", "cost_micros": 2_500}
    ])
    .to_string()
}

async fn post(
    collector: &Collector,
    authorization: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut headers = vec![
        ("content-type", "application/json"),
        ("user-agent", "adserver/2.1"),
    ];
    if let Some(a) = authorization {
        headers.push(("authorization", a));
    }
    let response = collector
        .handle(url_request(
            "POST",
            "/v1/events",
            &headers,
            Some(body.as_bytes()),
        ))
        .await;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(
            header(&response, "www-authenticate"),
            "Bearer realm=\"tally-collect\""
        );
    }
    (status, body_json(&response))
}

async fn pixel(collector: &Collector, query: &str) {
    let response = collector
        .handle(url_request(
            "GET",
            &format!("/p.gif?{query}"),
            &[("user-agent", "Mozilla/5.0 Chrome/131")],
            None,
        ))
        .await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "a pixel always answers the GIF"
    );
}

fn money(events: &[Event], trust: Trust) -> (usize, u64) {
    let of: Vec<&Event> = events.iter().filter(|e| e.trust == trust).collect();
    (
        of.len(),
        of.iter().map(|e| e.cost_micros + e.value_micros).sum(),
    )
}

#[tokio::test]
async fn money_is_only_taken_from_authenticated_posts() {
    let s = setup(json!({"adserver-1": KEY_A})).await;
    let collector = s.collector(Duration::from_secs(60));
    let (status, doc) = post(
        &collector,
        Some(&format!("Bearer adserver-1:{KEY_A}")),
        &money_body("auth"),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(doc["trust"], "authenticated");
    assert_eq!(doc["money_dropped"], 0);
    let (status, doc) = post(&collector, None, &money_body("anon")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{doc}");
    assert_eq!(
        (doc["trust"].as_str(), doc["money_dropped"].as_u64()),
        (Some("unsigned"), Some(2))
    );

    let events = s.events().await;
    assert_eq!(
        money(&events, Trust::Authenticated),
        (2, 100_000_000 + 1_000_000_000_000 + 2_500)
    );
    assert_eq!(
        money(&events, Trust::Unsigned),
        (2, 0),
        "forged money is never written"
    );
    // Unsigned posts take the request's User-Agent for the invalid-traffic check; an authenticated ad server's
    // own agent is not the browser's, so its events keep what they say (here: none).
    let agents: Vec<(Trust, Option<&str>)> = events
        .iter()
        .map(|e| (e.trust, e.user_agent.as_deref()))
        .collect();
    assert_eq!(
        agents,
        [
            (Trust::Authenticated, None),
            (Trust::Authenticated, None),
            (Trust::Unsigned, Some("adserver/2.1")),
            (Trust::Unsigned, Some("adserver/2.1")),
        ]
    );
}

#[tokio::test]
async fn bad_keys_are_refused_whole_with_what_to_send() {
    let s = setup(json!({"adserver-1": KEY_A})).await;
    let collector = s.collector(Duration::from_secs(60));
    for (authorization, reason) in [
        (
            format!("Bearer adserver-1:{KEY_B}"),
            "wrong secret for key id \"adserver-1\"",
        ),
        (
            format!("Bearer adserver-9:{KEY_A}"),
            "unknown key id \"adserver-9\"",
        ),
        (
            format!("Bearer {KEY_A}"),
            "the Authorization header is not \"Bearer <key id>:<secret>\"",
        ),
        (
            format!("Basic {KEY_A}"),
            "the Authorization header is not \"Bearer <key id>:<secret>\"",
        ),
    ] {
        let (status, doc) = post(&collector, Some(&authorization), &money_body("bad")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization}: {doc}");
        assert_eq!(doc["accepted"], 0);
        let detail = doc["detail"].as_str().expect("detail");
        assert!(detail.starts_with(reason), "{detail}");
        assert!(
            detail.contains("Authorization: Bearer <key id>:<secret>"),
            "{detail}"
        );
        assert!(
            !detail.contains(KEY_A) && !detail.contains(KEY_B),
            "never echoes a secret: {detail}"
        );
    }
    assert!(
        s.events().await.is_empty(),
        "nothing of a refused post is written"
    );
}

/// A click pixel's parameters, naming 2,500 micros.
fn click_params(id: &str) -> Vec<(&str, &str)> {
    vec![
        ("i", id),
        ("e", "click"),
        ("c", "cmp-1"),
        ("a", "ad-1"),
        ("m", "2500"),
    ]
}

#[tokio::test]
async fn signed_pixels_keep_their_money_others_count_without_it() {
    let s = setup(json!({"pub-1": KEY_A})).await;
    let collector = s.collector(Duration::from_secs(60));
    let exp = u64::try_from(now_ms() / 1000).expect("now") + 300;
    let signed = |id: &str, kid: &str, key: &str, exp: u64| {
        sign_pixel(&click_params(id), kid, key, exp).expect("signs")
    };

    pixel(
        &collector,
        &format!("{}&cb=991", signed("good", "pub-1", KEY_A, exp)),
    )
    .await;
    pixel(
        &collector,
        &signed("forged", "pub-1", KEY_A, exp).replace("m=2500", "m=100000000"),
    )
    .await;
    pixel(&collector, &signed("expired", "pub-1", KEY_A, exp - 600)).await;
    pixel(&collector, &signed("wrong-kid", "pub-2", KEY_A, exp)).await;
    pixel(&collector, &signed("wrong-key", "pub-1", KEY_B, exp)).await;
    pixel(
        &collector,
        &format!("{}&m=7", signed("repeated", "pub-1", KEY_A, exp)),
    )
    .await;
    pixel(&collector, "i=plain&e=click&c=cmp-1&a=ad-1&m=2500").await;
    assert_eq!(
        collector.unsigned_pixels(),
        4,
        "failed signatures are counted (a plain pixel is not a failure, a repeated field is an invalid pixel)"
    );
    assert_eq!(
        collector.rejected_pixels(),
        1,
        "a repeated m is an invalid pixel, as before"
    );

    let events = s.events().await;
    let trust: Vec<(&str, Trust, u64)> = events
        .iter()
        .map(|e| (e.id.as_str(), e.trust, e.cost_micros))
        .collect();
    assert_eq!(
        trust,
        [
            ("good", Trust::Signed, 2500),
            ("forged", Trust::Unsigned, 0),
            ("expired", Trust::Unsigned, 0),
            ("wrong-kid", Trust::Unsigned, 0),
            ("wrong-key", Trust::Unsigned, 0),
            ("plain", Trust::Unsigned, 0),
        ],
        "every valid pixel counts; only the signed one keeps its money"
    );
}

#[tokio::test]
async fn a_rotation_takes_effect_within_the_ttl_and_the_previous_key_works_until_the_next() {
    let s = setup(json!({"adserver-1": KEY_A})).await;
    let ttl = Duration::from_millis(300);
    let collector = s.collector(ttl);
    let auth = |key: &str| format!("Bearer adserver-1:{key}");
    let status = |r: (StatusCode, Value)| r.0;
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_A)), &money_body("r1")).await),
        StatusCode::ACCEPTED
    );

    s.rotate(json!({"adserver-1": KEY_B})).await;
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_B)), &money_body("r2")).await),
        StatusCode::UNAUTHORIZED,
        "the cached keys are used until the TTL ends"
    );
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_B)), &money_body("r3")).await),
        StatusCode::ACCEPTED,
        "current"
    );
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_A)), &money_body("r4")).await),
        StatusCode::ACCEPTED,
        "previous"
    );

    s.rotate(json!({"adserver-1": KEY_C})).await;
    tokio::time::sleep(ttl + Duration::from_millis(50)).await;
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_A)), &money_body("r5")).await),
        StatusCode::UNAUTHORIZED,
        "dropped"
    );
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_B)), &money_body("r6")).await),
        StatusCode::ACCEPTED,
        "now previous"
    );
    assert_eq!(
        status(post(&collector, Some(&auth(KEY_C)), &money_body("r7")).await),
        StatusCode::ACCEPTED,
        "now current"
    );
}

#[tokio::test]
async fn unreadable_keys_refuse_keyed_posts_with_a_retry_and_no_aws_text() {
    let s = setup(json!({"adserver-1": KEY_A})).await;
    let collector = Collector::new(s.kinesis.clone(), "events").with_keys(Keys::from_secret(
        s.secrets.clone(),
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf",
    ));
    let (status, doc) = post(
        &collector,
        Some(&format!("Bearer adserver-1:{KEY_A}")),
        &money_body("k"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{doc}");
    let text = doc.to_string();
    assert!(
        !text.contains("123456789012") && !text.contains("arn:"),
        "{text}"
    );
    // Without a key, the post does not need the keys.
    let (status, doc) = post(&collector, None, &money_body("anon")).await;
    assert_eq!(
        (status, doc["trust"].as_str()),
        (StatusCode::ACCEPTED, Some("unsigned"))
    );
    // A signed pixel cannot be checked: counted unsigned.
    let exp = u64::try_from(now_ms() / 1000).expect("now") + 300;
    let query = sign_pixel(
        &[
            ("i", "px"),
            ("e", "click"),
            ("c", "cmp-1"),
            ("a", "ad-1"),
            ("m", "5"),
        ],
        "adserver-1",
        KEY_A,
        exp,
    )
    .expect("signs");
    pixel(&collector, &query).await;
    let events = s.events().await;
    assert_eq!(money(&events, Trust::Unsigned), (3, 0));
}
