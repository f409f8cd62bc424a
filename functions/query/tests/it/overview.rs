//! The overview (`GET /v1/overview`) and the campaign table's orders by today's spend and impressions, its
//! search and its paging, over what the pipeline wrote (the real compactor keeping the all-campaigns items
//! and the day rows).

use serde_json::Value;
use tally_query::{Auth, Query};

use crate::support::{
    event, filled_world, filled_world_with, text, url_request, ShardRecords, NOW_MS,
};

async fn get_at(query: &Query, path: &str, now_ms: i64) -> (u16, Value) {
    let response = query
        .handle_at(url_request("GET", path, &[], None), now_ms)
        .await;
    let status = response.status().as_u16();
    let body = text(&response);
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(u64::MAX)
}

/// Four more campaigns on shard 2 at now-5 min (compacted), spends 9000, 3000, 10000, 1 micros.
pub fn four_campaigns() -> Vec<ShardRecords> {
    vec![(
        2,
        vec![vec![
            event("a1", "impression", "alpha", "x", Some("u1"), 5, 9000),
            event("b1", "impression", "beta", "x", Some("u2"), 5, 1000),
            event("b2", "impression", "beta", "x", Some("u3"), 5, 1000),
            event("b3", "impression", "beta", "x", Some("u4"), 5, 1000),
            event("g1", "impression", "gamma", "x", None, 5, 5000),
            event("g2", "impression", "gamma", "x", None, 5, 5000),
            event("d1", "impression", "delta", "x", None, 5, 1),
        ]],
    )]
}

#[tokio::test]
async fn the_overview_sums_every_campaign_and_states_the_lags() {
    let world = filled_world().await;
    let query = world.query(Auth::Off).await;
    let (status, doc) = get_at(&query, "/v1/overview", NOW_MS).await;
    assert_eq!(status, 200, "{doc}");
    // Today: summer's 5 impressions (3 compacted at now-5, 2 live at now-2), 1 click, 1 conversion, spend
    // 11,000 micros; winter's impression is yesterday's. Equal to the campaigns' rows summed.
    let rt = &doc["today"]["realtime"];
    assert_eq!(
        (
            n(&rt["impressions"]),
            n(&rt["clicks"]),
            n(&rt["conversions"])
        ),
        (5, 1, 1),
        "{doc}"
    );
    assert_eq!(n(&rt["spend_micros"]), 11_000);
    assert_eq!(n(&rt["conversion_value_micros"]), 25_000_000);
    assert_eq!(rt["ctr"].as_f64(), Some(0.2));
    let (_, list) = get_at(&query, "/v1/campaigns", NOW_MS).await;
    let mut summed = 0;
    for c in list["campaigns"].as_array().expect("campaigns") {
        summed += n(&c["today"]["realtime"]["impressions"]);
    }
    assert_eq!(summed, 5);
    assert_eq!(doc["last_hour"]["counts"]["realtime"]["impressions"], 5);
    // The settled lane has closed nothing of today yet (its watermark is 13:19): no final settled counts.
    assert_eq!(doc["today"]["settled"]["impressions"], 0);
    assert_eq!(doc["watermark"]["realtime"], "2026-11-26T13:27:00Z");
    assert_eq!(doc["watermark"]["settled"], "2026-11-26T13:19:00Z");
    // 13:30:45 is 2 min 45 s after the end of 13:27 and 10 min 45 s after the end of 13:19.
    assert_eq!(doc["lag_ms"]["realtime"], 165_000);
    assert_eq!(doc["lag_ms"]["settled"], 645_000);
    assert_eq!(doc["events_per_minute"].as_array().map(Vec::len), Some(60));
    // At 13:29:45 the last whole minute is 13:28: 2 impressions and a conversion, 3 events in 60 s.
    let (_, earlier) = get_at(&query, "/v1/overview", NOW_MS - 60_000).await;
    assert_eq!(
        earlier["events_per_second"].as_f64(),
        Some(0.05),
        "{earlier}"
    );
    assert_eq!(doc["events_per_second"].as_f64(), Some(0.0));

    // Fifteen minutes later the compactor has made 13:25 settled-final: s1 and s3 (user a) are settled.
    let later = NOW_MS + 15 * 60_000;
    world.compact(later, 60).await;
    let (_, doc) = get_at(&query, "/v1/overview", later).await;
    let st = &doc["today"]["settled"];
    assert_eq!(
        (
            n(&st["impressions"]),
            n(&st["spend_micros"]),
            n(&st["unique_users"])
        ),
        (2, 4_000, 1),
        "{doc}"
    );
    assert_eq!(doc["today"]["realtime"]["impressions"], 5, "{doc}");
    assert_eq!(
        doc["today"]["realtime"]["unique_users"], 1,
        "the settled estimate"
    );
    // Parameters are refused by name.
    let (status, problem) = get_at(&query, "/v1/overview?limit=3", NOW_MS).await;
    assert_eq!(status, 400);
    assert_eq!(problem["param"], "limit", "{problem}");
}

/// Every page's ids of `/v1/campaigns?{params}` with `limit`, and the `matched` count of the first page.
async fn pages(query: &Query, params: &str, limit: usize) -> (Vec<Vec<String>>, u64) {
    let mut out = Vec::new();
    let mut cursor = String::new();
    let mut matched = 0;
    loop {
        let path = format!("/v1/campaigns?limit={limit}{params}{cursor}");
        let (status, doc) = get_at(query, &path, NOW_MS).await;
        assert_eq!(status, 200, "{path}: {doc}");
        if out.is_empty() {
            matched = n(&doc["matched"]);
        }
        out.push(
            doc["campaigns"]
                .as_array()
                .expect("campaigns")
                .iter()
                .map(|c| c["campaign_id"].as_str().unwrap_or("").to_owned())
                .collect(),
        );
        match doc["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return (out, matched),
        }
        assert!(out.len() < 10, "pages do not end: {out:?}");
    }
}

#[tokio::test]
async fn the_campaign_table_sorts_by_spend_or_impressions_and_searches() {
    let world = filled_world_with(four_campaigns(), &[], 26 * 60).await;
    let query = world.query(Auth::Off).await;
    // By today's spend through the realtime watermark (13:27): gamma 10,000, alpha 9,000, summer 5,000
    // (its 6,000 of 13:28 are still open), beta 3,000, delta 1; winter spent yesterday.
    let (by_spend, matched) = pages(&query, "&order=spend", 2).await;
    assert_eq!(
        by_spend,
        [["gamma", "alpha"], ["summer", "beta"], ["delta", "winter"]]
    );
    assert_eq!(matched, 6);
    let (by_impressions, _) = pages(&query, "&order=impressions", 4).await;
    assert_eq!(
        by_impressions,
        [
            vec!["beta", "summer", "gamma", "alpha"],
            vec!["delta", "winter"]
        ],
        "3, 3 (by id), 2, 1, 1, 0"
    );
    let (_, doc) = get_at(&query, "/v1/campaigns?order=spend&limit=1", NOW_MS).await;
    assert_eq!(doc["order"], "spend");
    assert_eq!(doc["sorted_through"], "2026-11-26T13:28:00Z");
    let row = &doc["campaigns"][0];
    assert_eq!(row["sort_key"], 10_000);
    assert_eq!(row["today"]["realtime"]["spend_micros"], 10_000);
    // The sparkline: today's realtime impressions per hour up to 13:00, the 13:00 hour holding gamma's 2.
    let hourly = row["today_hourly"]["impressions"]
        .as_array()
        .expect("hours");
    assert_eq!(hourly.len(), 14);
    assert_eq!(hourly[13], 2);
    assert_eq!(row["today_hourly"]["spend_micros"][13], 10_000);
    // Search: a case-insensitive substring of the id, in any order, paged, counted.
    let (found, matched) = pages(&query, "&q=TA&order=spend", 1).await;
    assert_eq!(found, [["beta"], ["delta"]]);
    assert_eq!(matched, 2);
    let (found, _) = pages(&query, "&q=er", 5).await;
    assert_eq!(found, [["summer", "winter"]]);
    let (found, matched) = pages(&query, "&q=nothing", 5).await;
    assert_eq!(found, vec![Vec::<String>::new()]);
    assert_eq!(matched, 0);
    // Bad values name the parameter and the rule.
    for (path, param, rule) in [
        (
            "/v1/campaigns?order=ctr",
            "order",
            "must be id, recent, spend or impressions",
        ),
        (
            "/v1/campaigns?q=a%20b",
            "q",
            "a search in campaign ids character ' ' not allowed",
        ),
        ("/v1/campaigns?q=x&q=y", "q", "given more than once"),
    ] {
        let (status, problem) = get_at(&query, path, NOW_MS).await;
        assert_eq!(status, 400, "{path}: {problem}");
        assert_eq!(problem["param"], param, "{path}: {problem}");
        assert!(
            problem["rule"].as_str().unwrap_or("").contains(rule),
            "{path}: {problem}"
        );
    }
    // A spend cursor is refused in impressions order.
    let (_, doc) = get_at(&query, "/v1/campaigns?order=spend&limit=1", NOW_MS).await;
    let next = doc["next_cursor"].as_str().expect("a next page");
    let (status, problem) = get_at(
        &query,
        &format!("/v1/campaigns?order=impressions&cursor={next}"),
        NOW_MS,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        problem["rule"]
            .as_str()
            .unwrap_or("")
            .contains("another order"),
        "{problem}"
    );
}

#[tokio::test]
async fn the_campaign_page_takes_only_its_range() {
    let world = filled_world().await;
    let query = world.query(Auth::Off).await;
    for (path, status) in [
        ("/campaigns/summer", 200),
        ("/campaigns/summer?range=today", 200),
        ("/campaigns/summer?range=30d", 200),
        ("/campaigns/summer?range=week", 400),
        ("/campaigns/summer?debug=1", 400),
        ("/campaigns/a%20b", 400),
    ] {
        let response = query
            .handle_at(url_request("GET", path, &[], None), NOW_MS)
            .await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "{path}: {}",
            text(&response)
        );
        if status == 200 {
            assert!(
                text(&response).contains("data-range=\"today\""),
                "the campaign page"
            );
            let csp = response
                .headers()
                .get("content-security-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert!(
                csp.contains("script-src 'sha256-") && !csp.contains("unsafe"),
                "{csp}"
            );
        }
    }
}
