//! The JSON API over what the pipeline wrote: realtime counts from the compacted items up to the compactor's
//! watermark and from valkey after it, settled counts from the table's rows; values, zero-filling, the seam,
//! campaigns known only from the cache, old history, 400s, 404s, methods, and a cache holding garbage.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tally_domain::event::Event;
use tally_domain::exactly_once::Tally;
use tally_domain::store_keys::{index_key, shards_key, StoreLane};
use tally_query::{Auth, Query, REALTIME_HISTORY_MINUTES, WATERMARK_MAX_AGE_MS};

use crate::support::{
    body_json, event, filled_world, filled_world_with, header, shard, text, truth, url_request,
    ShardRecords, World, COMPACTED_TO, NOW_MINUTE, NOW_MS, TABLE,
};

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

/// The realtime impressions of each point of a series.
async fn realtime_impressions(query: &Query, path: &str) -> Vec<u64> {
    let (status, doc) = get(query, path).await;
    assert_eq!(status, 200, "{path}: {doc}");
    doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().unwrap_or(99))
        .collect()
}

/// (ad, realtime impressions, settled impressions) of each ad of a breakdown.
async fn ad_impressions(query: &Query, path: &str) -> Vec<(String, u64, u64)> {
    let (status, doc) = get(query, path).await;
    assert_eq!(status, 200, "{path}: {doc}");
    doc["ads"]
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
        .collect()
}

#[tokio::test]
async fn reads_back_what_the_pipeline_wrote() {
    let world = filled_world().await;
    let query = world.query(Auth::Off).await;

    // Campaigns with today's totals (winter's only event was yesterday).
    let (status, doc) = get(&query, "/v1/campaigns").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["day"], "2026-11-26T00:00:00Z");
    let campaigns = doc["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 2);
    let summer = &campaigns[0];
    assert_eq!(summer["campaign_id"], "summer");
    // Minutes, not events: the index has the compacted minutes (13:25, to its end), the cache the open ones.
    assert_eq!(summer["first_seen"], "2026-11-26T13:25:00Z");
    assert_eq!(summer["last_seen"], "2026-11-26T13:28:00Z");
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
    // The realtime lane keeps no sketches: its users are the settled lane's (s1 and s3, both user a).
    assert_eq!(today["unique_users"], 1);
    assert_eq!(today["ctr"], 0.2);
    assert_eq!(summer["today"]["settled"]["impressions"], 2);
    assert_eq!(campaigns[1]["campaign_id"], "winter");
    assert_eq!(campaigns[1]["first_seen"], "2026-11-25T12:30:00Z");
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
    assert_eq!(at("2026-11-26T13:25:00Z")["realtime"]["unique_users"], 1);
    assert_eq!(at("2026-11-26T13:28:00Z")["realtime"]["impressions"], 2);
    assert_eq!(at("2026-11-26T13:28:00Z")["realtime"]["conversions"], 1);
    // s1 resent on shard 1 and s4 resent in a later record of shard 0 (both stamped 13:28) count once.
    assert_eq!(at("2026-11-26T13:28:00Z")["realtime"]["clicks"], 0);
    assert_eq!(at("2026-11-26T13:28:00Z")["realtime"]["unique_users"], 0);
    assert_eq!(at("2026-11-26T13:29:00Z")["realtime"]["impressions"], 0);
    let total: u64 = points
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 5);

    // Hours and days.
    assert_eq!(
        realtime_impressions(
            &query,
            "/v1/campaigns/summer/series?step=1h&from=2026-11-26T12:00:00Z&to=2026-11-26T13:59:59Z"
        )
        .await,
        [0, 5]
    );
    assert_eq!(
        realtime_impressions(
            &query,
            "/v1/campaigns/winter/series?step=1d&from=2026-11-24T00:00:00Z&to=2026-11-26T13:00:00Z"
        )
        .await,
        [0, 1, 0]
    );

    // Per-ad breakdown of today.
    let ads = ad_impressions(&query, "/v1/campaigns/summer/ads").await;
    assert_eq!(
        ads,
        [("banner".to_owned(), 2, 1), ("video".to_owned(), 3, 1)]
    );
}

/// The campaign ids of every page of `/v1/campaigns?{params}&limit={limit}`, page by page.
async fn pages(query: &Query, params: &str, limit: usize) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/campaigns?limit={limit}{params}{cursor}");
        let (status, doc) = get(query, &path).await;
        assert_eq!(status, 200, "{path}: {doc}");
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
            None => return out,
        }
        assert!(out.len() < 10, "pages do not end: {out:?}");
    }
}

#[tokio::test]
async fn the_campaign_list_is_paged_in_id_or_recent_order() {
    let world = filled_world().await;
    // zebra: last seen a minute ago, after summer (13:28) and winter (yesterday).
    world
        .realtime(
            0,
            5_000,
            vec![vec![event(
                "z1",
                "impression",
                "zebra",
                "hero",
                Some("q"),
                1,
                0,
            )]],
        )
        .await;
    let query = world.query(Auth::Off).await;
    // Id order (the default); the last page has no next_cursor.
    assert_eq!(
        pages(&query, "", 1).await,
        [["summer"], ["winter"], ["zebra"]]
    );
    assert_eq!(
        pages(&query, "", 2).await,
        [vec!["summer", "winter"], vec!["zebra"]]
    );
    assert_eq!(pages(&query, "", 3).await, [["summer", "winter", "zebra"]]);
    // Most recently seen first.
    assert_eq!(
        pages(&query, "&order=recent", 1).await,
        [["zebra"], ["summer"], ["winter"]]
    );
    assert_eq!(
        pages(&query, "&order=recent", 2).await,
        [vec!["zebra", "summer"], vec!["winter"]]
    );
    // A page carries today's totals, as the whole list did.
    let (_, doc) = get(&query, "/v1/campaigns?limit=1&order=id").await;
    assert_eq!(doc["campaigns"][0]["today"]["realtime"]["impressions"], 5);
    assert_eq!(doc["campaigns"][0]["today"]["settled"]["impressions"], 2);
    // A cursor is for the order it was handed out in.
    let next = doc["next_cursor"].as_str().expect("a second page");
    let (status, problem) = get(&query, &format!("/v1/campaigns?order=recent&cursor={next}")).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap_or("").contains("order"),
        "{problem}"
    );
    // A cursor after the last campaign is an empty last page, not an error.
    let after_all: String = "id\nzzz".bytes().map(|b| format!("{b:02x}")).collect();
    let (status, doc) = get(&query, &format!("/v1/campaigns?cursor={after_all}")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["campaigns"], json!([]));
    assert_eq!(doc["next_cursor"], Value::Null);
    // An offset skips ranks (the dashboard's page number): the same pages as the cursors give.
    let ids = |doc: &Value| -> Vec<String> {
        doc["campaigns"]
            .as_array()
            .expect("campaigns")
            .iter()
            .map(|c| c["campaign_id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    let (status, doc) = get(&query, "/v1/campaigns?order=recent&limit=2&offset=1").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(ids(&doc), ["summer", "winter"]);
    assert_eq!(doc["next_cursor"], Value::Null, "the last page");
    assert_eq!(doc["matched"], 3);
    let (_, doc) = get(&query, "/v1/campaigns?limit=1&offset=1").await;
    assert_eq!(ids(&doc), ["winter"]);
    assert!(doc["next_cursor"].is_string(), "zebra follows: {doc}");
    let (status, doc) = get(&query, "/v1/campaigns?offset=3").await;
    assert_eq!((status, doc["campaigns"].clone()), (200, json!([])));
    // Not both: a cursor continues after a campaign, an offset counts ranks.
    let (status, problem) = get(&query, &format!("/v1/campaigns?cursor={next}&offset=1")).await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["param"], "offset", "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or("")
            .contains("not both"),
        "{problem}"
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
    let world = filled_world().await;
    let q = world.query(Auth::Off).await;
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
    for bad in [
        "limit=0",
        "limit=501",
        "limit=-1",
        "limit=ten",
        "limit=1&limit=2",
    ] {
        check(q, "GET", &format!("/v1/campaigns?{bad}"), 400, "limit").await;
    }
    check(q, "GET", "/v1/campaigns?order=newest", 400, "order").await;
    for bad in ["", "zz", "6964", "69640a3c7363726970743e", "%00%00"] {
        check(
            q,
            "GET",
            &format!("/v1/campaigns?cursor={bad}"),
            400,
            "cursor",
        )
        .await;
    }
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
    let valkey = tally_testkit::Valkey::start();
    let q = Query::new(
        aws_sdk_dynamodb::Client::new(&config),
        TABLE,
        crate::support::source(&valkey).await,
        Auth::Off,
    );
    let response = q
        .handle_at(url_request("GET", "/v1/campaigns", &[], None), NOW_MS)
        .await;
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(header(&response, "retry-after"), "1");
}

/// The six sums of a JSON counters object, and of a tally, for exact comparisons.
fn sums(c: &Value) -> [u64; 6] {
    [
        "impressions",
        "viewable",
        "clicks",
        "conversions",
        "spend_micros",
        "conversion_value_micros",
    ]
    .map(|k| c[k].as_u64().unwrap_or_else(|| panic!("{k} in {c}")))
}

fn tally_sums(t: &Tally) -> [u64; 6] {
    [
        t.impressions,
        t.viewable,
        t.clicks,
        t.conversions,
        t.spend_micros,
        t.value_micros,
    ]
}

const KINDS: [&str; 4] = ["impression", "viewable", "click", "conversion"];

/// `spring`: 90 events over minutes 13:16..=13:30 (now-14 … now), three ads, five users, split over shards
/// 0 and 1 in records of ten; every seventh one is resent by the other shard a minute later (capped at now).
/// Returns the records per shard in the order they are applied (shard 0 first).
fn spring() -> Vec<ShardRecords> {
    let mut per_shard: [Vec<Event>; 2] = Default::default();
    for i in 0..90u32 {
        let offset = 14 - i64::from(i % 15);
        let (id, ad, user) = (
            format!("p{i}"),
            format!("a{}", i % 3),
            format!("u{}", i % 5),
        );
        let kind = KINDS[(i % 4) as usize];
        let cost = u64::from(10 * i + 1);
        per_shard[(i % 2) as usize].push(event(
            &id,
            kind,
            "spring",
            &ad,
            Some(&user),
            offset,
            cost,
        ));
        if i % 7 == 0 {
            let resent = event(
                &id,
                kind,
                "spring",
                &ad,
                Some(&user),
                (offset - 1).max(0),
                cost,
            );
            per_shard[((i + 1) % 2) as usize].push(resent);
        }
    }
    per_shard
        .into_iter()
        .enumerate()
        .map(|(n, events)| {
            let records = events.chunks(10).map(<[Event]>::to_vec).collect();
            (n as u32, records)
        })
        .collect()
}

async fn apply_all(world: &World, shards: &[ShardRecords], first_seq: u64) {
    for (n, records) in shards {
        world.realtime(*n, first_seq, records.clone()).await;
    }
}

/// Every minute's realtime sums of `spring`'s series from 13:16 to 13:30, and per ad over the hour.
async fn spring_read(
    query: &Query,
) -> (BTreeMap<i64, [u64; 6]>, BTreeMap<String, [u64; 6]>, Value) {
    let (status, doc) = get(
        query,
        "/v1/campaigns/spring/series?step=1m&from=2026-11-26T13:16:00Z&to=2026-11-26T13:30:00Z",
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let points = doc["points"].as_array().expect("points");
    assert_eq!(points.len(), 15, "{doc}");
    let minutes = points
        .iter()
        .enumerate()
        .map(|(i, p)| (NOW_MINUTE - 14 + i as i64, sums(&p["realtime"])))
        .collect();
    let (status, doc) = get(
        query,
        "/v1/campaigns/spring/ads?from=2026-11-26T13:00:00Z&to=2026-11-26T13:30:45Z",
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let ads = doc["ads"]
        .as_array()
        .expect("ads")
        .iter()
        .map(|a| {
            (
                a["ad_id"].as_str().unwrap_or("").to_owned(),
                sums(&a["realtime"]),
            )
        })
        .collect();
    let (status, campaigns) = get(query, "/v1/campaigns").await;
    assert_eq!(status, 200, "{campaigns}");
    (minutes, ads, campaigns)
}

/// Deletes `spring`'s compacted minutes (up to `COMPACTED_TO`) from valkey on both shards, as their TTL would.
fn delete_compacted_spring_minutes(world: &World) {
    for minute in NOW_MINUTE - 14..=COMPACTED_TO {
        for n in 0..2 {
            world
                .valkey
                .command(&["DEL", &world.counter_key(n, "spring", minute)])
                .expect("DEL");
        }
    }
}

#[tokio::test]
async fn the_seam_between_compacted_and_live_minutes_is_exact() {
    let world = World::start().await;
    let shards = spring();
    apply_all(&world, &shards, 100).await;
    let watermark = world.compact(NOW_MS, 60).await;
    assert_eq!(watermark.realtime, Some(COMPACTED_TO));
    // Minutes 13:16..=13:27 are items in the table, 13:28..=13:30 only in valkey.
    let items = world
        .compacted()
        .items("spring", NOW_MINUTE - 14, NOW_MINUTE)
        .await
        .expect("items");
    assert_eq!(
        items.iter().map(|i| i.minute).collect::<Vec<_>>(),
        (NOW_MINUTE - 14..=COMPACTED_TO).collect::<Vec<_>>()
    );

    // The truth, from the distinct events in the order they were applied.
    let applied: Vec<&Event> = shards
        .iter()
        .flat_map(|(_, r)| r.iter().flatten())
        .collect();
    let truth = truth(applied.iter().copied());
    let mut by_minute: BTreeMap<i64, Tally> = (NOW_MINUTE - 14..=NOW_MINUTE)
        .map(|m| (m, Tally::default()))
        .collect();
    let mut by_ad: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    for ((_, ad, minute), t) in &truth {
        by_minute.entry(*minute).or_default().merge(t);
        by_ad.entry(ad.clone()).or_default().merge(t);
        total.merge(t);
    }
    let distinct = applied
        .iter()
        .map(|e| &e.id)
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!((applied.len(), distinct.len()), (103, 90), "13 resends");
    assert_eq!(total.events(), 90);
    assert!(
        by_minute
            .range(COMPACTED_TO + 1..)
            .any(|(_, t)| !t.is_zero())
            && by_minute.range(..=COMPACTED_TO).any(|(_, t)| !t.is_zero()),
        "counts on both sides of the seam"
    );
    let want_minutes: BTreeMap<i64, [u64; 6]> =
        by_minute.iter().map(|(m, t)| (*m, tally_sums(t))).collect();
    let want_ads: BTreeMap<String, [u64; 6]> = by_ad
        .iter()
        .map(|(a, t)| (a.clone(), tally_sums(t)))
        .collect();

    let query = world.query(Auth::Off).await;
    let (minutes, ads, campaigns) = spring_read(&query).await;
    assert_eq!(minutes, want_minutes);
    assert_eq!(ads, want_ads);
    let spring = &campaigns["campaigns"][0];
    assert_eq!(spring["campaign_id"], "spring", "{campaigns}");
    assert_eq!(sums(&spring["today"]["realtime"]), tally_sums(&total));
    assert_eq!(spring["first_seen"], "2026-11-26T13:16:00Z");
    assert_eq!(spring["last_seen"], "2026-11-26T13:30:00Z");
    let (_, hour) = get(
        &query,
        "/v1/campaigns/spring/series?step=1h&from=2026-11-26T13:00:00Z&to=2026-11-26T13:30:00Z",
    )
    .await;
    assert_eq!(
        sums(&hour["points"][0]["realtime"]),
        tally_sums(&total),
        "{hour}"
    );

    // The compacted minutes come from the table: gone from valkey, they read the same.
    delete_compacted_spring_minutes(&world);
    assert_eq!(spring_read(&query).await.0, want_minutes);

    // The open minutes come from valkey: a new event at 13:29 shows at once; a late one for the compacted
    // 13:20 does not (the seam rule: those minutes are the items').
    world
        .realtime(
            0,
            500,
            vec![vec![
                event("late", "impression", "spring", "a0", None, 10, 7),
                event("new", "click", "spring", "a1", None, 1, 0),
            ]],
        )
        .await;
    let (minutes, _, _) = spring_read(&query).await;
    let mut want = want_minutes.clone();
    want.get_mut(&(NOW_MINUTE - 1)).expect("13:29")[2] += 1;
    assert_eq!(minutes, want);
}

#[tokio::test]
async fn a_campaign_known_only_from_the_cache_is_listed_and_served() {
    // No compactor has run: no watermark, an empty index, every realtime minute is valkey's (at most the
    // counters' three-hour TTL back).
    let world = World::start().await;
    let events = vec![
        event("f1", "impression", "fresh", "hero", Some("x"), 120, 100),
        event("f2", "impression", "fresh", "hero", Some("y"), 3, 100),
        event("f3", "click", "fresh", "hero", Some("y"), 3, 0),
    ];
    world.realtime(0, 7, vec![events]).await;
    assert!(world.metrics().campaigns().await.expect("index").is_empty());
    let query = world.query(Auth::Off).await;

    let (status, doc) = get(&query, "/v1/campaigns").await;
    assert_eq!(status, 200, "{doc}");
    let fresh = &doc["campaigns"][0];
    assert_eq!(doc["campaigns"].as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(fresh["campaign_id"], "fresh");
    assert_eq!(fresh["first_seen"], "2026-11-26T11:30:00Z");
    assert_eq!(fresh["last_seen"], "2026-11-26T13:27:00Z");
    // Today (UTC) holds all three: 11:30 and the two of 13:27.
    assert_eq!(
        sums(&fresh["today"]["realtime"]),
        [2, 0, 1, 0, 200, 0],
        "{fresh}"
    );
    let (status, doc) = get(&query, "/v1/campaigns/fresh/series").await;
    assert_eq!(status, 200, "{doc}");
    let points = doc["points"].as_array().expect("points");
    assert_eq!(points[56]["t"], "2026-11-26T13:27:00Z");
    assert_eq!(sums(&points[56]["realtime"]), [1, 0, 1, 0, 100, 0]);
    assert_eq!(
        realtime_impressions(
            &query,
            "/v1/campaigns/fresh/series?step=1d&from=2026-11-25T00:00:00Z"
        )
        .await,
        [0, 2]
    );
    let (status, doc) = get(&query, "/v1/campaigns/fresh/ads").await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["ads"][0]["ad_id"], "hero");
    assert_eq!(doc["ads"][0]["realtime"]["clicks"], 1);
    // Still a 404 for a campaign in neither.
    assert_eq!(get(&query, "/v1/campaigns/stale/series").await.0, 404);

    // Once the compactor has closed those minutes, the index lists it and the numbers stay.
    world.compact(NOW_MS, 31 * 60).await;
    assert_eq!(world.metrics().campaigns().await.expect("index").len(), 1);
    let (_, again) = get(&query, "/v1/campaigns").await;
    assert_eq!(
        sums(&again["campaigns"][0]["today"]["realtime"]),
        [2, 0, 1, 0, 200, 0],
        "{again}"
    );
}

#[tokio::test]
async fn realtime_history_older_than_two_days_shows_the_settled_counts() {
    let three_days = 3 * 1440;
    assert!(three_days > REALTIME_HISTORY_MINUTES);
    // Three days ago winter had 4 events in the realtime lane, the 2 with users valid (settled).
    let old: Vec<Event> = [
        ("o1", Some("p")),
        ("o2", Some("q")),
        ("o3", None),
        ("o4", None),
    ]
    .into_iter()
    .map(|(id, user)| event(id, "impression", "winter", "tower", user, three_days, 10))
    .collect();
    // Applied by both lanes and compacted (minutes, hours, days) on the compactor's first run.
    let world = filled_world_with(vec![(1, vec![old])], &["o1", "o2"], 4 * 1440).await;
    let query = world.query(Auth::Off).await;

    // Days: 11-23 is older than the history (settled: 2, users p and q); 11-24 starts before it too (no
    // settled counts that day); 11-25 holds yesterday's realtime impression.
    let (status, doc) = get(
        &query,
        "/v1/campaigns/winter/series?step=1d&from=2026-11-22T00:00:00Z&to=2026-11-26T13:00:00Z",
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    let days: Vec<(u64, u64, u64)> = doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["realtime"]["impressions"].as_u64().unwrap_or(99),
                p["realtime"]["unique_users"].as_u64().unwrap_or(99),
                p["settled"]["impressions"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    assert_eq!(
        days,
        [(0, 0, 0), (2, 2, 2), (0, 0, 0), (1, 0, 0), (0, 0, 0)],
        "{doc}"
    );
    // Minutes of that day too.
    assert_eq!(
        realtime_impressions(
            &query,
            "/v1/campaigns/winter/series?from=2026-11-23T13:29:00Z&to=2026-11-23T13:31:00Z"
        )
        .await,
        [0, 2, 0]
    );
    // Per ad over the last four days: tower's old day counts as settled, sky's yesterday as realtime.
    let ads = ad_impressions(&query, "/v1/campaigns/winter/ads?from=2026-11-22T00:00:00Z").await;
    assert_eq!(
        ads,
        [("sky".to_owned(), 1, 0), ("tower".to_owned(), 2, 2)],
        "{doc}"
    );
}

/// A request's status and problem document; panics on anything else.
async fn problem_of(query: &Query, path: &str) -> (u16, Value) {
    let response = query
        .handle_at(url_request("GET", path, &[], None), NOW_MS)
        .await;
    assert_eq!(
        header(&response, "content-type"),
        "application/problem+json",
        "{path}: {}",
        text(&response)
    );
    (response.status().as_u16(), body_json(&response))
}

#[tokio::test]
async fn garbage_in_the_cache_is_a_problem_document_not_a_panic() {
    let world = filled_world().await;
    let query = world.query(Auth::Off).await;
    let live = NOW_MINUTE - 1; // 13:29, after the watermark
    let counters = world.counter_key(0, "summer", live);
    let index = index_key(StoreLane::Realtime, &shard(0), live);
    let shards = shards_key(StoreLane::Realtime);
    // The index names summer in that minute (as the script leaves it), so every path reads the hash.
    world
        .valkey
        .command(&["SADD", &index, "summer"])
        .expect("SADD");
    let all: &[&str] = &[
        "/v1/campaigns",
        "/v1/campaigns/summer/series",
        "/v1/campaigns/summer/ads",
    ];
    let cases: [(&[&str], &str, &[&str]); 5] = [
        // A counter that is not a number.
        (&["HSET", &counters, "banner#imp", "lots"], &counters, all),
        // A field the layout never writes.
        (&["HSET", &counters, "banner#bogus", "1"], &counters, all),
        // A string where the hash should be.
        (&["SET", &counters, "lots"], &counters, all),
        // An index member that is not a campaign id (read to list campaigns, and for one not in the index).
        (
            &["SADD", &index, "lots/of"],
            &index,
            &["/v1/campaigns", "/v1/campaigns/unknown/series"],
        ),
        // A shard set member that is not a shard id.
        (&["SADD", &shards, "{lots}"], &shards, all),
    ];
    for (write, key, paths) in cases {
        world.valkey.command(write).expect("write garbage");
        for path in paths {
            let (status, doc) = problem_of(&query, path).await;
            assert!(status >= 500, "{write:?} then {path}: {status} {doc}");
            assert_eq!(doc["status"], status, "{doc}");
            // The document names neither the key nor what it holds.
            let body = doc.to_string();
            assert!(!body.contains("lots") && !body.contains("{rt"), "{body}");
        }
        if key == shards {
            world
                .valkey
                .command(&["SREM", key, "{lots}"])
                .expect("SREM");
        } else {
            world.valkey.command(&["DEL", key]).expect("DEL");
        }
        for path in paths {
            let want = if path.contains("unknown") { 404 } else { 200 };
            assert_eq!(get(&query, path).await.0, want, "{write:?} cleaned, {path}");
        }
    }
}

/// Corrupt data does not heal by retrying: `500` without `Retry-After` (an unavailable store is `503` with one;
/// this test failed with 503 until `CorruptStore`/`CorruptRow` were told apart).
#[tokio::test]
async fn a_corrupt_cache_key_is_a_500_that_does_not_ask_for_a_retry() {
    let world = filled_world().await;
    let query = world.query(Auth::Off).await;
    let counters = world.counter_key(0, "summer", NOW_MINUTE - 1);
    world
        .valkey
        .command(&["HSET", &counters, "banner#imp", "lots"])
        .expect("HSET");
    let response = query
        .handle_at(
            url_request("GET", "/v1/campaigns/summer/series", &[], None),
            NOW_MS,
        )
        .await;
    let doc = body_json(&response);
    assert_eq!(response.status().as_u16(), 500, "{doc}");
    assert_eq!(header(&response, "retry-after"), "", "{doc}");
    assert!(
        !doc["detail"].as_str().unwrap_or("").contains("retry"),
        "{doc}"
    );
}

/// `spring`'s realtime impressions per minute from 13:16 to 13:30, asked at `now_ms`.
async fn spring_minutes_at(query: &Query, now_ms: i64) -> Vec<u64> {
    let path =
        "/v1/campaigns/spring/series?step=1m&from=2026-11-26T13:16:00Z&to=2026-11-26T13:30:00Z";
    let answer = query
        .handle_at(url_request("GET", path, &[], None), now_ms)
        .await;
    assert_eq!(answer.status(), 200);
    let doc: Value = serde_json::from_str(&text(&answer)).expect("json");
    doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().expect("impressions"))
        .collect()
}

#[tokio::test]
async fn the_watermark_is_kept_for_its_maximum_age_then_read_again() {
    let world = World::start().await;
    apply_all(&world, &spring(), 100).await;
    let kept = world.query(Auth::Off).await;
    let fresh = world.query(Auth::Off).await.with_watermark_max_age_ms(0);
    // No compactor has run: both read every minute from valkey; `kept` keeps "no watermark" from NOW_MS.
    let before = spring_minutes_at(&kept, NOW_MS).await;
    assert_eq!(spring_minutes_at(&fresh, NOW_MS).await, before);
    let compacted = (COMPACTED_TO - (NOW_MINUTE - 14) + 1) as usize;
    assert!(before[..compacted].iter().any(|n| *n > 0), "{before:?}");

    // The compactor moves the watermark, and the compacted minutes leave valkey (as after their TTL): only an
    // instance that reads the watermark again finds them in the table.
    world.compact(NOW_MS, 60).await;
    delete_compacted_spring_minutes(&world);
    assert_eq!(
        spring_minutes_at(&fresh, NOW_MS).await,
        before,
        "read at once"
    );
    let stale = spring_minutes_at(&kept, NOW_MS + WATERMARK_MAX_AGE_MS - 1).await;
    assert!(
        stale[..compacted].iter().all(|n| *n == 0),
        "the kept watermark still sends the compacted minutes to valkey: {stale:?}"
    );
    assert_eq!(stale[compacted..], before[compacted..]);
    assert_eq!(
        spring_minutes_at(&kept, NOW_MS + WATERMARK_MAX_AGE_MS).await,
        before,
        "read again once as old as the maximum age"
    );
}

/// `kept`'s settled impressions at 13:29 on the series.
async fn settled_impressions_1329(query: &Query) -> u64 {
    let (status, doc) = get(
        query,
        "/v1/campaigns/kept/series?step=1m&from=2026-11-26T13:29:00Z&to=2026-11-26T13:29:00Z",
    )
    .await;
    assert_eq!(status, 200, "{doc}");
    doc["points"][0]["settled"]["impressions"]
        .as_u64()
        .unwrap_or_else(|| panic!("{doc}"))
}

#[tokio::test]
async fn settled_open_minutes_are_read_again_only_when_the_lane_moves() {
    use tally_domain::store_keys::{counter_field, counter_key, Counter};
    let world = World::start().await;
    let impression = |id: &str| event(id, "impression", "kept", "a0", Some("u1"), 1, 0);
    world
        .settled(
            0,
            100,
            vec![vec![impression("k1"), impression("k2")]],
            |_| true,
        )
        .await;
    let query = world.query(Auth::Off).await;
    assert_eq!(settled_impressions_1329(&query).await, 2);

    // A write that moves no mark (no apply step writes so) is not seen: the minute is kept.
    let hash = counter_key(StoreLane::Settled, &shard(0), "kept", NOW_MINUTE - 1);
    let field = counter_field("a0", Counter::Impressions);
    world
        .valkey
        .command(&["HINCRBY", &hash, &field, "40"])
        .expect("HINCRBY");
    assert_eq!(settled_impressions_1329(&query).await, 2, "kept");
    // Another instance reads the hash as it is.
    assert_eq!(
        settled_impressions_1329(&world.query(Auth::Off).await).await,
        42
    );

    // The lane moves (a batch on another shard: a mark the kept version does not have): read again.
    world
        .settled(1, 7, vec![vec![impression("k3")]], |_| true)
        .await;
    assert_eq!(settled_impressions_1329(&query).await, 43);

    // The cache epoch changes (a cache that lost its data and got a new epoch): read again.
    world
        .valkey
        .command(&["HINCRBY", &hash, &field, "100"])
        .expect("HINCRBY");
    assert_eq!(settled_impressions_1329(&query).await, 43, "kept");
    world
        .valkey
        .command(&["SET", tally_domain::compact_repair::EPOCH_KEY, "another"])
        .expect("SET");
    assert_eq!(settled_impressions_1329(&query).await, 143);
}

/// Both lanes' counts live in the same minute items: a series answer reads each compacted item once, not once
/// per lane (each read is charged: the read units are the same as one read of the items).
#[tokio::test]
async fn a_series_reads_each_compacted_minute_item_once_for_both_lanes() {
    // Minutes both lanes have closed (12 and 14 minutes back), besides the realtime-only ones.
    let older = vec![(
        0,
        vec![vec![
            event("o1", "impression", "summer", "banner", Some("a"), 12, 1000),
            event("o2", "impression", "summer", "video", Some("b"), 14, 2000),
        ]],
    )];
    let world = crate::support::filled_local_world_with(
        older,
        &["o1", "o2"],
        crate::support::LOOKBACK_MINUTES,
    )
    .await;
    let watermark = world.compacted().watermark().await.expect("the watermark");
    let (Some(rt), Some(st)) = (watermark.realtime, watermark.settled) else {
        panic!("both lanes compacted: {watermark:?}");
    };
    assert!(st < rt, "{watermark:?}");
    // The realtime lane reads items up to its watermark, the settled lane up to its own: one read of both.
    let (from, to) = (NOW_MINUTE - 15, rt);
    let query = world.query(Auth::Off).await;
    let path = format!(
        "/v1/campaigns/summer/series?step=1m&from={}&to={}",
        tally_query::params::format_time(from * 60_000),
        tally_query::params::format_time(to * 60_000),
    );
    // The first answer also reads the watermark, which the instance then keeps.
    let (status, doc) = get(&query, &path).await;
    assert_eq!(status, 200, "{doc}");
    let meter = world.meter().expect("a local endpoint");
    meter.reset();
    let items = world
        .compacted()
        .items("summer", from, to)
        .await
        .expect("the items");
    assert!(
        items.iter().any(|i| i.minute <= st) && items.iter().any(|i| i.minute > st),
        "compacted minutes of both lanes and of the realtime lane only in {from}..={to}: {watermark:?}"
    );
    let one_read = world.read_units();
    meter.reset();
    let (status, again) = get(&query, &path).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again, doc);
    assert_eq!(
        world.read_units(),
        one_read,
        "the series read the compacted minutes more than once"
    );
}
