//! Requests, clients for a loopback `moto_server`, and a metrics table with known contents.

use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use tally_aws::metrics::{Fence, Lane, MetricsTable};
use tally_domain::event::{Event, RawEvent};
use tally_domain::rollup::Rollup;
use tally_testkit::Moto;

pub const TABLE: &str = "metrics";

/// 2026-11-26T13:30:45Z: "now" in these tests.
pub const NOW_MS: i64 = 1_795_699_845_000;

pub use tally_aws_testing::sdk_config;

/// A Function URL event (payload format 2.0), decoded by `lambda_http` as in production.
pub fn url_request(
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let headers: serde_json::Map<String, Value> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    let event = json!({
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": query, "headers": headers,
        "requestContext": {
            "accountId": "anonymous", "apiId": "q", "domainName": "q.lambda-url.us-east-1.on.aws", "domainPrefix": "q",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "198.51.100.1", "userAgent": "test"},
            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "26/Nov/2026:13:30:45 +0000",
            "timeEpoch": NOW_MS
        },
        "body": body, "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).expect("function url event")
}

pub fn text(response: &Response<Body>) -> String {
    match response.body() {
        Body::Text(text) => text.clone(),
        Body::Empty => String::new(),
        other => format!("{other:?}"),
    }
}

pub fn body_json(response: &Response<Body>) -> Value {
    let text = text(response);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not json ({e}): {text}"))
}

pub fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A validated event at `minute_offset` minutes before [`NOW_MS`].
pub fn event(
    id: &str,
    kind: &str,
    campaign: &str,
    ad: &str,
    user: Option<&str>,
    minute_offset: i64,
    cost: u64,
) -> Event {
    let raw = RawEvent {
        id: Some(id.to_owned()),
        kind: Some(kind.to_owned()),
        campaign_id: Some(campaign.to_owned()),
        ad_id: Some(ad.to_owned()),
        user_id: user.map(str::to_owned),
        cost_micros: Some(cost),
        value_micros: (kind == "conversion").then_some(25_000_000),
        ..RawEvent::default()
    };
    raw.validate(NOW_MS - minute_offset * 60_000, &mut || {
        unreachable!("ids are given")
    })
    .expect("valid event")
}

/// The fixed traffic of these tests:
/// * `summer`: 3 impressions (users a, b, a) and 1 click at now-5 min on ads `banner` and `video`,
///   2 impressions at now-2 min, 1 conversion at now-2 min; settled lane: 2 impressions at now-5 min.
/// * `winter`: 1 impression yesterday (25 hours ago).
pub fn traffic() -> (Vec<Event>, Vec<Event>) {
    let realtime = vec![
        event("s1", "impression", "summer", "banner", Some("a"), 5, 1000),
        event("s2", "impression", "summer", "banner", Some("b"), 5, 1000),
        event("s3", "impression", "summer", "video", Some("a"), 5, 3000),
        event("s4", "click", "summer", "banner", Some("a"), 5, 0),
        event("s5", "impression", "summer", "video", None, 2, 3000),
        event("s6", "impression", "summer", "video", None, 2, 3000),
        event("s7", "conversion", "summer", "banner", Some("b"), 2, 0),
        event("w1", "impression", "winter", "sky", Some("z"), 25 * 60, 500),
    ];
    let settled = vec![
        event("s1", "impression", "summer", "banner", Some("a"), 5, 1000),
        event("s3", "impression", "summer", "video", Some("a"), 5, 3000),
    ];
    (realtime, settled)
}

/// moto with the metrics table, written by `tally_aws::metrics`' writer with [`traffic`].
pub async fn filled_table() -> (Moto, aws_config::SdkConfig) {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint()).await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    tally_aws_testing::create_metrics_table(&client, TABLE).await;
    let table = MetricsTable::new(client, TABLE);
    let (realtime, settled) = traffic();
    for (lane, events, seq) in [
        (Lane::Realtime, &realtime, "100"),
        (Lane::Settled, &settled, "200"),
    ] {
        let mut rollup = Rollup::new();
        for e in events {
            rollup.add(e);
        }
        let fence = Fence::new("shardId-000000000000", seq).expect("fence");
        table.apply(lane, &fence, &rollup).await.expect("apply");
    }
    let mut seen = std::collections::BTreeMap::new();
    for e in &realtime {
        let entry = seen
            .entry(e.campaign_id.clone())
            .or_insert((e.received_ms, e.received_ms));
        entry.0 = entry.0.min(e.received_ms);
        entry.1 = entry.1.max(e.received_ms);
    }
    table.touch_campaigns(&seen).await.expect("touch campaigns");
    (moto, config)
}
