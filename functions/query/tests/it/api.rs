//! The JSON API over rows written by `tally_aws::metrics`: values, zero-filling, 400s, 404s, methods.

use serde_json::{json, Value};
use tally_query::{Auth, Query};

use crate::support::{body_json, filled_table, header, text, url_request, NOW_MS, TABLE};

async fn get(query: &Query, path: &str) -> (u16, Value) {
    let response = query
        .handle_at(url_request("GET", path, &[], None), NOW_MS)
        .await;
    let status = response.status().as_u16();
    let body = text(&response);
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

#[tokio::test]
async fn reads_back_what_the_writer_wrote() {
    let (_moto, config) = filled_table().await;
    let query = Query::new(aws_sdk_dynamodb::Client::new(&config), TABLE, Auth::Off);

    // Campaigns with today's totals (winter's only event was yesterday).
    let (status, doc) = get(&query, "/v1/campaigns").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["day"], "2026-11-26T00:00:00Z");
    let campaigns = doc["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 2);
    let summer = &campaigns[0];
    assert_eq!(summer["campaign_id"], "summer");
    assert_eq!(summer["last_seen"], "2026-11-26T13:28:45Z");
    let today = &summer["today"]["realtime"];
    assert_eq!(
        (
            today["impressions"].clone(),
            today["clicks"].clone(),
            today["conversions"].clone()
        ),
        (json!(5), json!(1), json!(1))
    );
    assert_eq!(today["spend_micros"], 11_000);
    assert_eq!(today["conversion_value_micros"], 25_000_000);
    assert_eq!(today["unique_users"], 2);
    assert_eq!(today["ctr"], 0.2);
    assert_eq!(summer["today"]["settled"]["impressions"], 2);
    assert_eq!(campaigns[1]["campaign_id"], "winter");
    assert_eq!(campaigns[1]["today"]["realtime"]["impressions"], 0);
    assert_eq!(campaigns[1]["today"]["realtime"]["ctr"], Value::Null);

    // The default series: the last 60 minutes, zero-filled, one point per minute.
    let (status, doc) = get(&query, "/v1/campaigns/summer/series").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(
        (doc["step"].clone(), doc["from"].clone(), doc["to"].clone()),
        (
            json!("1m"),
            json!("2026-11-26T12:31:00Z"),
            json!("2026-11-26T13:30:00Z")
        )
    );
    let points = doc["points"].as_array().expect("points");
    assert_eq!(points.len(), 60);
    let at = |t: &str| {
        points
            .iter()
            .find(|p| p["t"] == t)
            .unwrap_or_else(|| panic!("no point {t}"))
    };
    assert_eq!(at("2026-11-26T13:25:00Z")["realtime"]["impressions"], 3);
    assert_eq!(at("2026-11-26T13:25:00Z")["realtime"]["clicks"], 1);
    assert_eq!(at("2026-11-26T13:25:00Z")["settled"]["impressions"], 2);
    assert_eq!(at("2026-11-26T13:28:00Z")["realtime"]["impressions"], 2);
    assert_eq!(at("2026-11-26T13:28:00Z")["realtime"]["conversions"], 1);
    assert_eq!(at("2026-11-26T13:29:00Z")["realtime"]["impressions"], 0);
    let total: u64 = points
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 5);

    // Hours and days.
    let (_, doc) = get(
        &query,
        "/v1/campaigns/summer/series?step=1h&from=2026-11-26T12:00:00Z&to=2026-11-26T13:59:59Z",
    )
    .await;
    let hours: Vec<u64> = doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(hours, [0, 5], "{doc}");
    let (_, doc) = get(
        &query,
        "/v1/campaigns/winter/series?step=1d&from=2026-11-24T00:00:00Z&to=2026-11-26T13:00:00Z",
    )
    .await;
    let days: Vec<u64> = doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().unwrap_or(99))
        .collect();
    assert_eq!(days, [0, 1, 0], "{doc}");

    // Per-ad breakdown of today.
    let (status, doc) = get(&query, "/v1/campaigns/summer/ads").await;
    assert_eq!(status, 200, "{doc}");
    let ads: Vec<(String, u64, u64)> = doc["ads"]
        .as_array()
        .expect("ads")
        .iter()
        .map(|a| {
            (
                a["ad_id"].as_str().unwrap_or("").to_owned(),
                a["realtime"]["impressions"].as_u64().unwrap_or(99),
                a["settled"]["impressions"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        ads,
        [("banner".to_owned(), 2, 1), ("video".to_owned(), 3, 1)]
    );
}

/// One request against the filled table: status, and the problem's `param` (or the body's `type`).
async fn check(query: &Query, method: &str, path: &str, status: u16, expect: &str) {
    let response = query
        .handle_at(url_request(method, path, &[], None), NOW_MS)
        .await;
    let doc = body_json(&response);
    assert_eq!(response.status().as_u16(), status, "{method} {path}: {doc}");
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json",
        "{method} {path}"
    );
    let got = doc
        .get("param")
        .or_else(|| doc.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    assert!(
        got.contains(expect),
        "{method} {path}: expected {expect:?}, got {doc}"
    );
}

#[tokio::test]
async fn bad_requests_are_precise() {
    let (_moto, config) = filled_table().await;
    let q = Query::new(aws_sdk_dynamodb::Client::new(&config), TABLE, Auth::Off);
    let q = &q;
    check(q, "GET", "/v1/campaigns/summer/series?step=5m", 400, "step").await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?step=1m&step=1h",
        400,
        "step",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?from=yesterday",
        400,
        "from",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?to=2026-11-26T13:00:00%2B02:00",
        400,
        "to",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?from=2026-11-20T00:00:00Z",
        400,
        "to",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?from=2026-11-26T14:00:00Z&to=2026-11-26T13:00:00Z",
        400,
        "from",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?from=1&to=9999999999999999",
        400,
        "to",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?limit=10",
        400,
        "limit",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series?from=%E0%A4%A",
        400,
        "from",
    )
    .await;
    check(q, "GET", "/v1/campaigns/summer/ads?step=1h", 400, "step").await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/ads?from=2020-01-01T00:00:00Z",
        400,
        "to",
    )
    .await;
    check(q, "GET", "/v1/campaigns?from=1", 400, "from").await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer'%20OR%201=1--/series",
        400,
        "campaign_id",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/%3Cscript%3E/ads",
        400,
        "campaign_id",
    )
    .await;
    check(
        q,
        "GET",
        &format!("/v1/campaigns/{}/series", "x".repeat(65)),
        400,
        "campaign_id",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/autumn/series",
        404,
        "unknown-campaign",
    )
    .await;
    check(
        q,
        "GET",
        "/v1/campaigns/autumn/ads",
        404,
        "unknown-campaign",
    )
    .await;
    check(q, "GET", "/v1/campaigns/summer", 404, "not-found").await;
    check(
        q,
        "GET",
        "/v1/campaigns/summer/series/extra",
        404,
        "not-found",
    )
    .await;
    check(q, "GET", "/v2/campaigns", 404, "not-found").await;
    check(q, "GET", "/../../etc/passwd", 404, "not-found").await;
    check(q, "POST", "/v1/campaigns", 405, "method-not-allowed").await;
    check(
        q,
        "DELETE",
        "/v1/campaigns/summer/series",
        405,
        "method-not-allowed",
    )
    .await;
    check(q, "PUT", "/", 405, "method-not-allowed").await;
    check(q, "GET", "/login", 405, "method-not-allowed").await;
}

#[tokio::test]
async fn an_unreachable_table_is_503_not_a_crash() {
    let closed = tally_testkit::free_loopback_addr();
    let config = crate::support::sdk_config(&format!("http://{closed}")).await;
    let q = Query::new(aws_sdk_dynamodb::Client::new(&config), TABLE, Auth::Off);
    let response = q
        .handle_at(url_request("GET", "/v1/campaigns", &[], None), NOW_MS)
        .await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(header(&response, "retry-after"), "1");
}
