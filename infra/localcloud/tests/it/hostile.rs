//! Hostile traffic against the running local cloud (the real stack, the real function binaries, query's
//! bearer token on): forged money, unsigned and badly signed pixels, a flood of 401s to query, a flood of fresh
//! campaign ids, deep and huge payloads to collect, query and the local AWS endpoint, cross-origin and
//! forged-`Host` requests to the endpoint. Then: nothing crashed (every listener still answers), collect
//! answered no 5xx, the authenticated and signed traffic is counted exactly in both lanes, forged money is
//! never counted, and the local cloud's memory stayed bounded.
//!
//! The parts are tested one by one elsewhere (the loopback guard and the endpoint's limits in the conformance
//! suite's `hostile`, money and signatures in `trust`); this is them all at once, at volume, on one process.

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use tally_domain::signing::sign_pixel;
use tally_localcloud::cloud::LocalCloud;

use crate::e2e::{build_functions, now_ms, options, poll, Running};
use crate::support::TempDir;
use crate::trust::{call, get_pixel};

/// How much the local cloud's resident memory (this test process hosts it) may grow over the hostile phase.
/// The huge bodies are refused before they are read whole or read once and dropped; without the limits, one
/// 16 MiB body held per request in flight, or a shard log read whole, would pass it.
const RSS_GROWTH_BOUND_KIB: u64 = 128 * 1024;
/// Requests in flight at once in each flood.
const PARALLEL: usize = 8;

/// This process's resident set size, KiB (`VmRSS` of `/proc/self/status`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Runs `n` requests made by `make(i)`, [`PARALLEL`] at a time: their (status, body).
async fn flood<F>(n: usize, make: impl Fn(usize) -> F) -> Vec<(u16, String)>
where
    F: Future<Output = (u16, String)> + Send + 'static,
{
    let mut out = Vec::with_capacity(n);
    let mut running = tokio::task::JoinSet::new();
    for i in 0..n {
        if running.len() >= PARALLEL {
            out.push(running.join_next().await.unwrap().unwrap());
        }
        running.spawn(make(i));
    }
    while let Some(done) = running.join_next().await {
        out.push(done.unwrap());
    }
    out
}

/// Statuses of `answers` with how often each came.
fn tally(answers: &[(u16, String)]) -> std::collections::BTreeMap<u16, usize> {
    let mut by = std::collections::BTreeMap::new();
    for (status, _) in answers {
        *by.entry(*status).or_insert(0) += 1;
    }
    by
}

/// Today's counters of `campaign` in `lane` through the query API with the bearer token, once its
/// impressions reach `impressions`.
async fn today(
    query: &str,
    token: &str,
    campaign: &str,
    lane: &str,
    impressions: u64,
) -> Option<Value> {
    let auth = format!("Bearer {token}");
    let (status, body) = call(
        query,
        "GET",
        "/v1/campaigns?limit=20&order=id",
        &[("Authorization", &auth)],
        "",
    )
    .await;
    if status != 200 {
        return None;
    }
    let doc: Value = serde_json::from_str(&body).ok()?;
    let c = doc["campaigns"]
        .as_array()?
        .iter()
        .find(|c| c["campaign_id"] == campaign)?;
    let counters = c["today"][lane].clone();
    (counters["impressions"].as_u64() >= Some(impressions)).then_some(counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_traffic_crashes_nothing_and_counts_only_trusted_money() {
    let bin = build_functions();
    let dir = TempDir::new("hostile");
    let mut opts = options(&dir.0.join("state"), &bin);
    // query checks its bearer token (the stack's generated secret), as on AWS.
    opts.function_env.clear();
    let cloud = Running(LocalCloud::start(opts).await.unwrap());
    let (collect, query) = (cloud.output("CollectUrl"), cloud.output("QueryUrl"));
    let endpoint = cloud.0.endpoint.clone();
    let (kid, secret) = cloud.0.aws.secretsmanager.collect_key().unwrap();
    let token = cloud
        .0
        .aws
        .secretsmanager
        .current_by_suffix("query-token")
        .expect("the stack's generated query token");
    let stamp = now_ms();
    // Sorted first by id, ahead of the flood's fresh campaigns.
    let campaign = format!("hostile-a-{stamp}");
    let mut collect_answers: Vec<(u16, String)> = Vec::new();

    let post = |events: Value, authorization: Option<String>| {
        let (collect, body) = (collect.clone(), events.to_string());
        async move {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            headers.extend(authorization.map(|a| ("authorization", a)));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(&collect, "POST", "/v1/events", &headers, body).await
        }
    };
    let bearer = format!("Bearer {kid}:{secret}");
    let event = |id: String, kind: &str, cost: u64, value: u64| json!({"id": id, "kind": kind, "campaign_id": campaign, "ad_id": "ad-1", "cost_micros": cost, "value_micros": value});
    // One authenticated post: 3 impressions, a click (1,000 spend), a conversion (2,000 spend, 50,000 value).
    let trusted_post = |i: usize| {
        let events = json!([
            event(format!("t-{i}-1"), "impression", 0, 0),
            event(format!("t-{i}-2"), "impression", 0, 0),
            event(format!("t-{i}-3"), "impression", 0, 0),
            event(format!("t-{i}-4"), "click", 1_000, 0),
            event(format!("t-{i}-5"), "conversion", 2_000, 50_000),
        ]);
        post(events, Some(bearer.clone()))
    };

    // Warm up (instances started), then the baseline of the process's memory.
    collect_answers.extend(flood(10, trusted_post).await);
    let rss_before = rss_kib();

    // Forged money: unauthenticated posts with the largest money fields collect takes.
    collect_answers.extend(
        flood(20, |i| {
            post(
                json!([
                    event(format!("f-{i}-1"), "click", 100_000_000, 0),
                    event(
                        format!("f-{i}-2"),
                        "conversion",
                        100_000_000,
                        1_000_000_000_000
                    ),
                ]),
                None,
            )
        })
        .await,
    );
    // A wrong key: refused whole (401), nothing counted.
    let wrong = flood(10, |i| {
        post(
            json!([event(format!("w-{i}"), "click", 5, 0)]),
            Some(format!("Bearer {kid}:not-the-secret-{i:020}")),
        )
    })
    .await;
    assert_eq!(tally(&wrong), [(401, 10)].into(), "{wrong:?}");
    collect_answers.extend(wrong);

    // Pixels: signed (2,500 spend each), unsigned, signed with a wrong key, expired, tampered.
    let now = u64::try_from(now_ms() / 1000).unwrap();
    let pixel = |id: String, key: &str, exp: u64| {
        sign_pixel(
            &[
                ("i", id.as_str()),
                ("e", "impression"),
                ("c", campaign.as_str()),
                ("a", "ad-1"),
                ("m", "2500"),
            ],
            &kid,
            key,
            exp,
        )
        .unwrap()
    };
    let mut pixels = Vec::new();
    for i in 0..10 {
        pixels.push(pixel(format!("ps-{i}"), &secret, now + 600));
        pixels.push(format!("i=pu-{i}&e=impression&c={campaign}&a=ad-1&m=2500"));
        pixels.push(pixel(
            format!("pb-{i}"),
            "0123456789abcdef-the-wrong-key",
            now + 600,
        ));
        pixels.push(pixel(format!("pe-{i}"), &secret, now - 600));
        pixels.push(pixel(format!("pt-{i}"), &secret, now + 600).replace("m=2500&", "m=99000000&"));
    }
    let pixel_answers = flood(pixels.len(), |i| {
        let (collect, q) = (collect.clone(), pixels[i].clone());
        async move { (get_pixel(&collect, &q).await, String::new()) }
    })
    .await;
    assert_eq!(
        tally(&pixel_answers),
        [(200, 50)].into(),
        "a pixel always answers the GIF"
    );
    collect_answers.extend(pixel_answers);

    // A flood of fresh campaign ids (each a new set of rows in AWS).
    collect_answers.extend(
        flood(200, |i| {
            post(
                json!([{"id": format!("z-{i}"), "kind": "impression", "campaign_id": format!("hostile-z-{stamp}-{i}"), "ad_id": "ad-1"}]),
                None,
            )
        })
        .await,
    );

    // Deep and huge payloads to collect.
    let deep_json = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let huge_events = format!(
        "[{}]",
        vec![r#"{"id":"h","kind":"impression","campaign_id":"h","ad_id":"h"}"#; 60_000].join(",")
    );
    let over_url_limit = "x".repeat(7 * 1024 * 1024);
    let hostile_bodies = [
        deep_json.clone(),
        deep_object,
        huge_events,
        over_url_limit,
        "\u{0}\u{ffff}not json".to_owned(),
    ];
    let mut refused = Vec::new();
    for body in &hostile_bodies {
        let (collect, body) = (collect.clone(), body.clone());
        refused.push(
            call(
                &collect,
                "POST",
                "/v1/events",
                &[("content-type", "application/json")],
                body,
            )
            .await,
        );
    }
    let long_query = format!("/p.gif?{}", "c=x&".repeat(20_000));
    refused.push(call(&collect, "GET", &long_query, &[], "").await);
    for (status, body) in &refused {
        assert!(
            (400..500).contains(status),
            "collect refuses a hostile body with a 4xx: {status} {}",
            &body[..body.len().min(300)]
        );
    }
    collect_answers.extend(refused);

    // A flood of 401s to query: wrong tokens, a forged session cookie, no credentials.
    let denied = flood(300, |i| {
        let query = query.clone();
        async move {
            let (name, value) = match i % 3 {
                0 => ("Authorization", format!("Bearer wrong-token-{i}")),
                1 => ("Cookie", format!("__Host-tally-session=forged.{i}")),
                _ => ("X-Nothing", "1".to_owned()),
            };
            call(&query, "GET", "/v1/campaigns", &[(name, &value)], "").await
        }
    })
    .await;
    assert_eq!(tally(&denied), [(401, 300)].into());
    // Deep and huge to query: a huge cursor and a deep JSON body (query takes none).
    let auth = format!("Bearer {token}");
    let cursor = format!("/v1/campaigns?cursor={}", "A".repeat(100_000));
    for (method, path, body) in [
        ("GET", cursor.as_str(), String::new()),
        ("POST", "/v1/campaigns", deep_json.clone()),
    ] {
        let (status, body) = call(&query, method, path, &[("Authorization", &auth)], body).await;
        assert!(
            (400..500).contains(&status),
            "query refuses {method} {}…: {status} {}",
            &path[..path.len().min(40)],
            &body[..body.len().min(300)]
        );
    }

    // The local AWS endpoint: deep JSON, a declared huge body, a deep expression, a huge XML body, a
    // cross-site origin and a rebinding Host.
    let table = cloud.output("MetricsTableName");
    let bucket = cloud.output("ArchiveBucketName");
    let ddb = |body: String| {
        let endpoint = endpoint.clone();
        async move {
            call(
                &endpoint,
                "POST",
                "/",
                &[
                    ("X-Amz-Target", "DynamoDB_20120810.PutItem"),
                    ("Content-Type", "application/x-amz-json-1.0"),
                ],
                body,
            )
            .await
        }
    };
    let (status, body) = ddb(deep_json.clone()).await;
    assert!(
        status == 400 && body.contains("recursion limit"),
        "{status} {body}"
    );
    let parens = json!({
        "TableName": table,
        "Item": {"pk": {"S": "hostile"}, "sk": {"S": "x"}},
        "ConditionExpression": format!("{}attribute_not_exists(pk){}", "(".repeat(2000), ")".repeat(2000)),
    });
    let (status, body) = ddb(parens.to_string()).await;
    assert!(
        status == 400 && body.contains("ValidationException"),
        "{status} {body}"
    );
    let keys: String = (0..60_000)
        .map(|i| format!("<Object><Key>events/k-{i:08}</Key></Object>"))
        .collect();
    let (status, body) = call(
        &endpoint,
        "POST",
        &format!("/{bucket}?delete"),
        &[("Content-Type", "application/xml")],
        format!("<Delete>{keys}</Delete>"),
    )
    .await;
    assert!(
        status == 400 && body.contains("EntityTooLarge"),
        "{status} {}",
        &body[..body.len().min(300)]
    );
    let list = json!({}).to_string();
    for extra in [
        ("Origin", "https://evil.example"),
        ("Host", "evil.example"),
        ("Origin", "null"),
    ] {
        let (status, body) = call(
            &endpoint,
            "POST",
            "/",
            &[
                ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
                ("Content-Type", "application/x-amz-json-1.0"),
                extra,
            ],
            list.clone(),
        )
        .await;
        assert_eq!(status, 403, "{extra:?}: {body}");
    }
    // Cross-site to collect's URL too (its CORS allows any origin for the browser's sake; the guard does not).
    let (status, _) = call(
        &collect,
        "POST",
        "/v1/events",
        &[("Origin", "https://evil.example"), ("Host", "evil.example")],
        "[]",
    )
    .await;
    assert_eq!(
        status, 403,
        "a rebinding Host is refused by the URL's guard"
    );

    // Everything still answers: more trusted traffic after the storm.
    collect_answers.extend(flood(10, |i| trusted_post(i + 10)).await);
    let rss_after = rss_kib();
    let (status, body) = call(
        &endpoint,
        "POST",
        "/",
        &[
            ("X-Amz-Target", "DynamoDB_20120810.ListTables"),
            ("Content-Type", "application/x-amz-json-1.0"),
        ],
        list,
    )
    .await;
    assert_eq!(status, 200, "the AWS endpoint still answers: {body}");

    // 0 crashes and 0 5xx from collect: every request got an answer below 500.
    let by_status = tally(&collect_answers);
    assert!(
        by_status.keys().all(|s| (200..500).contains(s)),
        "collect answered {by_status:?}"
    );

    // Counts: 20 trusted posts (60 impressions, 20 clicks, 20 conversions, 60,000 spend, 1,000,000 value);
    // 20 forged posts (20 clicks, 20 conversions, no money); 50 pixels (50 impressions, 25,000 spend from
    // the 10 signed ones).
    let expect = json!({"impressions": 110, "clicks": 40, "conversions": 40, "spend_micros": 85_000, "conversion_value_micros": 1_000_000});
    for lane in ["realtime", "settled"] {
        let counters = poll(Duration::from_secs(120), || {
            today(&query, &token, &campaign, lane, 110)
        })
        .await
        .unwrap_or_else(|| panic!("{lane}: the campaign's 110 impressions were not counted"));
        let got: serde_json::Map<String, Value> = expect
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), counters[k].clone()))
            .collect();
        assert_eq!(Value::Object(got), expect, "{lane}: {counters}");
    }
    let growth = rss_after.saturating_sub(rss_before);
    eprintln!(
        "hostile: local cloud RSS {rss_before} KiB before, {rss_after} KiB after the hostile phase (+{growth} KiB, bound {RSS_GROWTH_BOUND_KIB} KiB); collect answered {by_status:?}"
    );
    assert!(
        growth <= RSS_GROWTH_BOUND_KIB,
        "the local cloud grew by {growth} KiB (bound {RSS_GROWTH_BOUND_KIB} KiB)"
    );
}
