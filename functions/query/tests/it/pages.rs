//! The overview and the campaign view in headless Chromium, driven through the DevTools protocol against the
//! real handler over what the pipeline wrote, at a fixed clock and signed in with a session: the drill-down,
//! realtime next to settled with hand-made invalid traffic (the difference in numbers), the per-ad table, the
//! range switch (its points at a known clock), keyboard operation, both pages under their CSP, sign-out; and
//! at 10,000 campaigns a refresh costs two API calls and the table is quick. The numbers against the API
//! through sorting, paging, search and live updates, and the README's screenshots, are the local cloud's
//! dashboard test (`infra/localcloud/tests/it/dashboard.rs`, over demo traffic).

use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tally_query::{Auth, Query};

use crate::browser::{serve_logged, RequestLog, RECORD_VIOLATIONS, TOKEN};
use crate::overview::four_campaigns;
use crate::support::{
    event, filled_local_world_with, filled_world_with, text, url_request, ShardRecords, NOW_MS,
};
use tally_testkit::cdp::Browser;

/// The API's answer to `path` at the tests' clock.
async fn api(query: &Query, path: &str) -> Value {
    let response = query
        .handle_at(
            url_request(
                "GET",
                path,
                &[("authorization", &format!("Bearer {TOKEN}"))],
                None,
            ),
            NOW_MS,
        )
        .await;
    assert_eq!(
        response.status().as_u16(),
        200,
        "{path}: {}",
        text(&response)
    );
    serde_json::from_str(&text(&response)).expect("json")
}

/// The page's finished refreshes.
const READY: &str = "Number(document.body && document.body.dataset.ready || 0)";

/// The campaign ids of the table's visible rows, in order.
async fn table_ids(b: &mut Browser) -> Vec<String> {
    let ids = b
        .eval("[...document.querySelectorAll('#rows tr[data-campaign]')].filter(r => !r.hidden).map(r => r.dataset.campaign)")
        .await;
    serde_json::from_value(ids).unwrap_or_default()
}

fn ids_of(list: &Value) -> Vec<String> {
    list["campaigns"]
        .as_array()
        .expect("campaigns")
        .iter()
        .map(|c| c["campaign_id"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A campaign's hand-made traffic: impressions, clicks and conversions over the
/// last hour on three ads, some of it invalid (the settled lane drops it).
fn demo_traffic() -> (Vec<ShardRecords>, Vec<String>) {
    let mut events = Vec::new();
    let mut valid = Vec::new();
    for i in 0..180u64 {
        let minute = 59 - (i % 57) as i64;
        let ad = ["hero", "sidebar", "video"][(i % 3) as usize];
        let id = format!("demo{i}");
        let kind = if i % 9 == 0 {
            "click"
        } else if i % 31 == 0 {
            "conversion"
        } else {
            "impression"
        };
        events.push(event(
            &id,
            kind,
            "spring-sale",
            ad,
            Some(&format!("u{}", i % 40)),
            minute,
            2_000 + 10 * i,
        ));
        if i % 7 != 0 {
            valid.push(id);
        }
    }
    (vec![(3, vec![events])], valid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_and_the_campaign_view_show_the_apis_numbers() {
    let (mut extra, valid) = demo_traffic();
    extra.extend(four_campaigns());
    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
    let world = filled_world_with(extra, &valid, 26 * 60).await;
    let query = world.query(Auth::Token(TOKEN.to_owned())).await;
    let log = RequestLog::default();
    let base = serve_logged(
        world.query(Auth::Token(TOKEN.to_owned())).await,
        Arc::new(AtomicI64::new(NOW_MS)),
        log.clone(),
    )
    .await;
    let profile = std::env::temp_dir().join(format!("tally-pages-{}", std::process::id()));
    let mut b = Browser::start(&profile).await;
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({"source": RECORD_VIOLATIONS}),
    )
    .await;
    b.navigate(&format!("{base}/?token={TOKEN}")).await;
    assert!(
        b.wait_for(&format!("{READY} >= 1")).await,
        "the overview drew"
    );

    // The overview's table has the hand-made campaign (its numbers, the sorting, paging and search against
    // the API are the local cloud's dashboard test's).
    assert!(
        b.wait_for("!!document.querySelector('#rows tr[data-campaign=\"spring-sale\"] a')")
            .await,
        "spring-sale is listed: {:?}",
        table_ids(&mut b).await
    );
    assert_eq!(
        b.eval("window.__violations").await,
        json!([]),
        "the overview's own script and style run under its policy"
    );

    // Drill-down: the campaign's link opens its view; realtime and settled side by side, their difference.
    b.eval("document.querySelector('#rows tr[data-campaign=\"spring-sale\"] a').click(); true")
        .await;
    assert!(
        b.wait_for(&format!(
            "location.pathname === '/campaigns/spring-sale' && {READY} >= 1"
        ))
        .await,
        "the campaign view"
    );
    let series = api(&query, "/v1/campaigns/spring-sale/series?step=1m").await;
    let points = series["points"].as_array().expect("points");
    let total = |lane: &str, field: &str| -> u64 {
        points
            .iter()
            .map(|p| p[lane][field].as_u64().unwrap_or(0))
            .sum()
    };
    let (rt, st) = (
        total("realtime", "impressions"),
        total("settled", "impressions"),
    );
    assert!(rt > st && st > 0, "invalid traffic removed: {rt} vs {st}");
    for (col, want) in [
        ("realtime", rt as i64),
        ("settled", st as i64),
        ("difference", rt as i64 - st as i64),
    ] {
        assert_eq!(
            b.eval(&format!(
                "Number(document.querySelector('tr[data-metric=\"impressions\"] td[data-col=\"{col}\"]').dataset.value)"
            ))
            .await,
            json!(want),
            "{col}"
        );
    }
    assert_eq!(
        b.eval("document.getElementById('chart').dataset.points")
            .await,
        "60"
    );
    let ads = api(
        &query,
        &format!(
            "/v1/campaigns/spring-sale/ads?from={}",
            series["from"].as_str().unwrap_or("")
        ),
    )
    .await;
    for ad in ads["ads"].as_array().expect("ads") {
        let id = ad["ad_id"].as_str().unwrap_or("");
        assert_eq!(
            b.eval(&format!(
                "Number(document.querySelector('tr[data-ad=\"{id}\"] td[data-col=\"impressions\"]').dataset.value)"
            ))
            .await,
            ad["realtime"]["impressions"],
            "ad {id}"
        );
    }
    assert_eq!(
        b.eval("window.__violations").await,
        json!([]),
        "the campaign view's own script and style run under its policy"
    );
    // The range buttons work from the keyboard: Tab focus, then Enter.
    b.eval("document.querySelector('button[data-range=\"today\"]').focus(); true")
        .await;
    for kind in ["keyDown", "keyUp"] {
        b.call(
            "Input.dispatchKeyEvent",
            json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
        )
        .await;
    }
    assert!(
        b.wait_for("document.body.dataset.range === 'today'").await,
        "Enter on the focused button switched the range"
    );

    // The range switch: today per hour (00:00 to 13:00), then 30 days per day; the address keeps it.
    for (button, range, points) in [("today", "today", 14), ("30d", "30d", 30)] {
        b.eval(&format!(
            "document.querySelector('button[data-range=\"{button}\"]').click(); true"
        ))
        .await;
        assert!(
            b.wait_for(&format!(
                "document.body.dataset.range === '{range}' && document.getElementById('chart').dataset.points === '{points}'"
            ))
            .await,
            "{range}: {points} points"
        );
        assert_eq!(b.eval("location.search").await, format!("?range={range}"));
    }
    let day = api(
        &query,
        "/v1/campaigns/spring-sale/series?step=1h&from=today",
    )
    .await;
    let day_rt: u64 = day["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| p["realtime"]["impressions"].as_u64().unwrap_or(0))
        .sum();
    b.navigate(&format!("{base}/campaigns/spring-sale?range=today"))
        .await;
    assert!(b.wait_for(&format!("{READY} >= 1")).await);
    assert_eq!(
        b.eval("Number(document.querySelector('tr[data-metric=\"impressions\"] td[data-col=\"realtime\"]').dataset.value)")
            .await,
        json!(day_rt)
    );
    // Signed out, the campaign view is the login form too.
    b.eval("document.querySelector('form[action=\"/logout\"]').submit(); true")
        .await;
    assert!(
        b.wait_for("!!document.querySelector('form[action=\"/login\"]')")
            .await
    );
    b.navigate(&format!("{base}/campaigns/spring-sale")).await;
    assert!(
        b.wait_for("!!document.querySelector('form[action=\"/login\"]')")
            .await
    );
    drop(log);
}

/// 10,000 campaigns, one impression each (campaign `c{i}` spends `i` micros), compacted.
fn ten_thousand() -> Vec<ShardRecords> {
    (0..4u32)
        .map(|shard| {
            let events = (0..2_500u64)
                .map(|j| {
                    let i = u64::from(shard) * 2_500 + j;
                    event(
                        &format!("t{i}"),
                        "impression",
                        &format!("c{i:05}"),
                        "a",
                        None,
                        5,
                        i,
                    )
                })
                .collect();
            (shard + 10, vec![events])
        })
        .collect()
}

/// Waits (up to `secs` seconds) until `expression` is `true` in the page (a loaded machine can be slow).
async fn wait_long(b: &mut Browser, expression: &str, secs: u64) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if b.eval(expression).await == json!(true) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_campaigns_cost_two_api_calls_per_refresh() {
    let started = Instant::now();
    let world = filled_local_world_with(ten_thousand(), &[], 30).await;
    eprintln!("seeded 10,001 campaigns in {:?}", started.elapsed());
    let query = world.query(Auth::Token(TOKEN.to_owned())).await;
    let timed = Instant::now();
    let page = api(&query, "/v1/campaigns?order=spend&limit=20").await;
    let took = timed.elapsed();
    let timed = Instant::now();
    let overview = api(&query, "/v1/overview").await;
    eprintln!(
        "over 10,001 campaigns on the local endpoint: GET /v1/campaigns?order=spend&limit=20 {took:?}; GET /v1/overview {:?}",
        timed.elapsed()
    );
    assert_eq!(overview["today"]["realtime"]["impressions"], 10_005);
    assert_eq!(
        page["matched"], 10_001,
        "10,000 and summer (winter, yesterday, is older than the lookback)"
    );
    let want: Vec<String> = (0..20).map(|i| format!("c{:05}", 9_999 - i)).collect();
    assert_eq!(ids_of(&page), want, "by spend: c09999 spent the most");
    // The rows' figures (from batched item reads, not per campaign) are each campaign's day.
    for (i, row) in page["campaigns"]
        .as_array()
        .expect("rows")
        .iter()
        .enumerate()
    {
        let spend = 9_999 - i as u64;
        assert_eq!(row["today"]["realtime"]["spend_micros"], spend, "{row}");
        assert_eq!(row["today"]["realtime"]["impressions"], 1, "{row}");
        assert_eq!(row["sort_key"], spend, "{row}");
        let hours = row["today_hourly"]["impressions"]
            .as_array()
            .expect("hours");
        assert_eq!(hours.len(), 14, "00:00 to 13:00: {row}");
        assert_eq!(hours[13], 1, "the impression at 13:25: {row}");
    }
    let log = RequestLog::default();
    // The server shares the instance (and what it keeps) with the calls above, as one warm Lambda would.
    let base = serve_logged(query.clone(), Arc::new(AtomicI64::new(NOW_MS)), log.clone()).await;
    let profile = std::env::temp_dir().join(format!("tally-10k-{}", std::process::id()));
    let mut b = Browser::start(&profile).await;
    b.navigate(&format!("{base}/?token={TOKEN}")).await;
    assert!(
        wait_long(&mut b, &format!("{READY} >= 2"), 60).await,
        "two refreshes: {}",
        b.eval("document.getElementById('status').textContent")
            .await
    );
    assert_eq!(table_ids(&mut b).await, want);
    // Paging: the next 20 by spend.
    b.eval("document.getElementById('next').click(); true")
        .await;
    assert!(
        wait_long(
            &mut b,
            "document.getElementById('page').textContent === 'campaigns 21–40 of 10001'",
            60
        )
        .await,
        "{}",
        b.eval("document.getElementById('page').textContent").await
    );
    let second: Vec<String> = (20..40).map(|i| format!("c{:05}", 9_999 - i)).collect();
    assert_eq!(table_ids(&mut b).await, second);
    assert_eq!(b.eval("location.search").await, "?page=2");
    // Back: page 1 again, from the address.
    b.eval("history.back(); true").await;
    assert!(
        wait_long(
            &mut b,
            "location.search === '' && document.getElementById('page').textContent === 'campaigns 1–20 of 10001'",
            60
        )
        .await,
        "{}",
        b.eval("document.getElementById('page').textContent").await
    );
    assert_eq!(table_ids(&mut b).await, want);
    // Search among 10,000: c0999x.
    b.eval("const s = document.getElementById('search'); s.value = 'c0999'; s.dispatchEvent(new Event('input')); true")
        .await;
    assert!(
        wait_long(
            &mut b,
            "document.getElementById('matched').dataset.value === '10'",
            60
        )
        .await,
        "{}",
        b.eval("document.getElementById('matched').textContent")
            .await
    );
    assert_eq!(table_ids(&mut b).await[0], "c09999");
    // Every call the page made: one overview and one table page per refresh, nothing per campaign. Refreshes
    // are the finished ones, plus at most one the timer started and one each click, Back or search superseded.
    let ready = b.eval(READY).await.as_u64().unwrap_or(0);
    let calls: Vec<String> = log.lock().map(|l| l.clone()).unwrap_or_default();
    let api_calls: Vec<&String> = calls.iter().filter(|c| c.starts_with("/v1/")).collect();
    let overviews = api_calls
        .iter()
        .filter(|c| c.as_str() == "/v1/overview")
        .count();
    let tables = api_calls
        .iter()
        .filter(|c| c.starts_with("/v1/campaigns?"))
        .count();
    eprintln!("{ready} refreshes, API calls: {api_calls:?}");
    assert_eq!(overviews + tables, api_calls.len(), "{api_calls:?}");
    assert_eq!(overviews, tables, "{api_calls:?}");
    assert!(
        api_calls.len() as u64 <= 2 * (ready + 4) && ready >= 5,
        "{ready} refreshes, {} calls: {api_calls:?}",
        api_calls.len()
    );
}
