//! Requests that never reach Kinesis: routing, CORS, the pixel's answer, and hostile or malformed bodies.

use std::time::Duration;

use lambda_http::Body;
use tally_aws::kinesis::RetryPolicy;
use tally_collect::{Collector, PIXEL_GIF};

use crate::support::{body_json, fixture, header, kinesis_client, now_ms, url_request};

/// A collector whose stream endpoint is a closed loopback port: any write attempt fails fast.
async fn offline_collector() -> Collector {
    let closed = tally_testkit::free_loopback_addr();
    let client = kinesis_client(&format!("http://{closed}")).await;
    let retry = RetryPolicy {
        max_attempts: 1,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(1),
    };
    Collector::new(client, "events").with_retry(retry)
}

/// Sends one request; checks the status and that the body (text) contains each of `expect`.
async fn check(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    status: u16,
    expect: &[&str],
) {
    let collector = offline_collector().await;
    let response = collector
        .handle(url_request(method, path, headers, body))
        .await;
    let text = match response.body() {
        Body::Text(text) => text.clone(),
        Body::Binary(bytes) => format!("<{} bytes>", bytes.len()),
        Body::Empty => String::new(),
        _ => String::from("<other>"),
    };
    assert_eq!(
        response.status().as_u16(),
        status,
        "{method} {path}: {text}"
    );
    for needle in expect {
        assert!(
            text.contains(needle),
            "{method} {path}: expected {needle:?} in {text}"
        );
    }
    assert_eq!(
        header(&response, "access-control-allow-origin"),
        "*",
        "{method} {path}: cors header"
    );
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

#[tokio::test]
async fn routes_and_methods() {
    check(
        "GET",
        "/",
        &[],
        None,
        404,
        &["not-found", "POST /v1/events"],
    )
    .await;
    check("GET", "/../../etc/passwd", &[], None, 404, &["not-found"]).await;
    check("GET", "/v1/events", &[], None, 405, &["POST, OPTIONS"]).await;
    check(
        "DELETE",
        "/v1/events",
        &[],
        None,
        405,
        &["method-not-allowed"],
    )
    .await;
    check(
        "PUT",
        "/p.gif",
        &[],
        Some(b"x"),
        405,
        &["GET, HEAD, OPTIONS"],
    )
    .await;
    check("GET", "/p.gif/", &[], None, 404, &[]).await;
    check("GET", "/V1/EVENTS", &[], None, 404, &[]).await;
}

#[tokio::test]
async fn preflight_allows_any_publisher() {
    let collector = offline_collector().await;
    let request = url_request(
        "OPTIONS",
        "/v1/events",
        &[
            ("origin", "https://news.example"),
            ("access-control-request-method", "POST"),
        ],
        None,
    );
    let response = collector.handle(request).await;
    assert_eq!(response.status().as_u16(), 204);
    assert_eq!(header(&response, "access-control-allow-origin"), "*");
    assert!(header(&response, "access-control-allow-methods").contains("POST"));
    assert_eq!(
        header(&response, "access-control-allow-headers"),
        "content-type"
    );
    assert_eq!(header(&response, "access-control-max-age"), "86400");
}

#[tokio::test]
async fn bodies_that_cannot_be_read() {
    check(
        "POST",
        "/v1/events",
        JSON,
        None,
        400,
        &["empty-body", "\"accepted\":0"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(b"   \n"),
        400,
        &["empty-body"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(b"[{\"kind\":"),
        400,
        &["malformed-body"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(b"not json at all"),
        400,
        &["malformed-body"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(b"\xff\xfe[{}]\xc3\x28"),
        400,
        &["malformed-body"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(b"42"),
        400,
        &["malformed-body"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        &[("content-type", "application/xml")],
        Some(b"<e/>"),
        400,
        &["content type"],
    )
    .await;
    check(
        "POST",
        "/v1/events",
        &[("content-type", "multipart/form-data; boundary=x")],
        Some(b"--x"),
        400,
        &["malformed-body"],
    )
    .await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let huge = vec![b' '; tally_domain::ingest::MAX_BODY_BYTES + 1];
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(&huge),
        413,
        &["body-too-large", "1048577"],
    )
    .await;
    let event = r#"{"kind":"impression","campaign_id":"c","ad_id":"a"}"#;
    let many = format!(
        "[{}]",
        vec![event; tally_domain::ingest::MAX_EVENTS_PER_BODY + 1].join(",")
    );
    check(
        "POST",
        "/v1/events",
        JSON,
        Some(many.as_bytes()),
        413,
        &["too-many-events", "1000"],
    )
    .await;
}

#[tokio::test]
async fn invalid_events_are_named_by_index_field_and_rule() {
    let body = br#"[
        {"kind":"impression","campaign_id":"","ad_id":"a"},
        {"kind":"teleport","campaign_id":"c","ad_id":"a"},
        {"kind":"click","campaign_id":"c<script>alert(1)</script>","ad_id":"a"},
        {"kind":"click","campaign_id":"c","ad_id":"a","cost_micros":-5},
        {"kind":"click","campaign_id":"c","ad_id":"a","shoe_size":44},
        {"kind":"click","campaign_id":"c'; DROP TABLE metrics;--","ad_id":"a"},
        {"kind":"impression","campaign_id":"c","ad_id":"a","client_ts_ms":1}
    ]"#;
    let collector = offline_collector().await;
    let response = collector
        .handle(url_request("POST", "/v1/events", JSON, Some(body)))
        .await;
    assert_eq!(response.status().as_u16(), 400);
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json"
    );
    let doc = body_json(&response);
    assert_eq!(doc["type"], "https://tally.invalid/problems/invalid-events");
    assert_eq!(doc["status"], 400);
    assert_eq!(doc["accepted"], 0);
    let errors: Vec<(u64, String)> = doc["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["index"].as_u64().expect("index"),
                e["field"].as_str().expect("field").to_owned(),
            )
        })
        .collect();
    let expect: Vec<(u64, String)> = [
        (0, "campaign_id"),
        (1, "kind"),
        (2, "campaign_id"),
        (3, "cost_micros"),
        (4, "event"),
        (5, "campaign_id"),
        (6, "client_ts_ms"),
    ]
    .into_iter()
    .map(|(i, f)| (i, f.to_owned()))
    .collect();
    assert_eq!(errors, expect, "{doc}");
    for e in doc["errors"].as_array().expect("errors") {
        assert!(
            !e["rule"].as_str().unwrap_or("").is_empty(),
            "every error names its rule: {e}"
        );
    }
}

#[tokio::test]
async fn invalid_pixels_still_get_the_gif_and_are_counted() {
    let collector = offline_collector().await;
    for query in [
        "",
        "c=summer&a=banner",
        "c=summer&a=banner&e=explode",
        "c=%3Cscript%3E&a=banner&e=impression",
        "c=summer&a=banner&e=impression&m=abc",
        "c=summer&c=winter&a=banner&e=impression",
        "c=summer&a=banner&e=impression&%ZZ=1",
        "c=summer&a=banner&e=impression&zzz=1",
    ] {
        let before = collector.rejected_pixels();
        let response = collector
            .handle(url_request("GET", &format!("/p.gif?{query}"), &[], None))
            .await;
        assert_eq!(response.status().as_u16(), 200, "{query}");
        assert_eq!(header(&response, "content-type"), "image/gif", "{query}");
        assert!(
            header(&response, "cache-control").contains("no-store"),
            "{query}"
        );
        assert_eq!(header(&response, "pragma"), "no-cache", "{query}");
        assert!(
            matches!(response.body(), Body::Binary(b) if b[..] == PIXEL_GIF[..]),
            "{query}"
        );
        assert_eq!(
            collector.rejected_pixels(),
            before + 1,
            "{query} must count as rejected"
        );
    }
    let long = format!("/p.gif?c={}&a=b&e=impression", "x".repeat(20_000));
    let response = collector.handle(url_request("GET", &long, &[], None)).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(collector.rejected_pixels(), 9);
}

#[tokio::test]
async fn a_valid_pixel_whose_write_fails_still_gets_the_gif() {
    let collector = offline_collector().await;
    let response = collector.handle(fixture("url-pixel.json")).await;
    assert_eq!(response.status().as_u16(), 200);
    assert!(matches!(response.body(), Body::Binary(b) if b[..] == PIXEL_GIF[..]));
    assert_eq!(collector.rejected_pixels(), 0);
}

#[tokio::test]
async fn valid_events_that_cannot_be_written_are_never_reported_accepted() {
    let collector = offline_collector().await;
    let response = collector
        .handle_at(fixture("url-post-beacon.json"), now_ms())
        .await;
    let doc = body_json(&response);
    assert!(response.status().is_server_error(), "{doc}");
    assert_eq!(doc["accepted"], 0, "{doc}");
    assert_eq!(doc["ids"], serde_json::json!([]), "{doc}");
    assert_eq!(
        doc["unwritten_ids"],
        serde_json::json!(["ev-1", "ev-2"]),
        "{doc}"
    );
}

#[test]
fn the_pixel_is_a_1x1_transparent_gif() {
    assert_eq!(&PIXEL_GIF[..6], b"GIF89a");
    assert_eq!(&PIXEL_GIF[6..10], &[1, 0, 1, 0], "1×1");
    let gce = PIXEL_GIF
        .windows(3)
        .position(|w| w == [0x21, 0xf9, 4])
        .expect("graphic control extension");
    assert_eq!(PIXEL_GIF[gce + 3] & 1, 1, "transparency flag");
    assert_eq!(PIXEL_GIF[gce + 6], 0, "transparent colour index");
    assert_eq!(PIXEL_GIF.last(), Some(&0x3b));
}
