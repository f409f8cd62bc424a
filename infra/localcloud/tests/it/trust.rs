//! Authenticated tracking on the whole stack: the template's collect keys secret, served by the local Secrets
//! Manager and read by the real collect binary; forged money (unsigned posts, tampered, expired and badly
//! signed pixels) never reaches either lane's counters, trusted money is counted exactly.

use std::time::Duration;

use serde_json::{json, Value};
use tally_domain::signing::sign_pixel;
use tally_localcloud::cloud::LocalCloud;

use crate::e2e::{build_functions, now_ms, options, poll, Running};
use crate::support::TempDir;

const BROWSER: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// One HTTP/1.1 request over a plain socket: (status, body as lossy text). `url` is `http://host:port/`; the
/// `Host` header is that `host:port` unless `headers` give another.
pub(crate) async fn call(
    url: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<String>,
) -> (u16, String) {
    let body: String = body.into();
    use std::io::{Read, Write};
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut request = format!("{method} {path} HTTP/1.1\r\n");
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request.push_str(&format!("Host: {addr}\r\n"));
    }
    request.push_str(&format!(
        "Connection: close\r\nContent-Length: {}\r\n",
        body.len()
    ));
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(&addr).unwrap();
        // A server may answer (and close) before reading all of an oversized body: read what it said.
        let _ = stream.write_all(request.as_bytes());
        let mut response = Vec::new();
        let _ = stream.read_to_end(&mut response);
        let response = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, body.to_owned())
    })
    .await
    .unwrap()
}

/// `GET /p.gif?query` with a browser's agent; the status (the body is the GIF).
pub(crate) async fn get_pixel(collect: &str, query: &str) -> u16 {
    call(
        collect,
        "GET",
        &format!("/p.gif?{query}"),
        &[("User-Agent", BROWSER)],
        "",
    )
    .await
    .0
}

/// The campaign's today counters of `lane` once its impressions reach `impressions`.
async fn today(query: &str, campaign: &str, lane: &str, impressions: u64) -> Option<Value> {
    let (status, body) = call(query, "GET", "/v1/campaigns?limit=500", &[], "").await;
    if status != 200 {
        return None;
    }
    let doc: Value = serde_json::from_str(&body).ok()?;
    let c = doc["campaigns"]
        .as_array()?
        .iter()
        .find(|c| c["campaign_id"] == campaign)?;
    let counters = c["today"][lane].clone();
    (counters["impressions"].as_u64() == Some(impressions)).then_some(counters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_money_is_never_counted_and_trusted_money_is_exact() {
    let bin = build_functions();
    let dir = TempDir::new("trust");
    let cloud = Running(
        LocalCloud::start(options(&dir.0.join("state"), &bin))
            .await
            .unwrap(),
    );
    let (collect, query) = (cloud.output("CollectUrl"), cloud.output("QueryUrl"));
    let (kid, secret) = cloud
        .0
        .aws
        .secretsmanager
        .collect_key()
        .expect("the stack's generated collect key");
    assert_eq!(kid, "default");
    let campaign = format!("trust-{}", now_ms());
    let post = |events: Value, authorization: Option<String>| {
        let (collect, body) = (collect.clone(), events.to_string());
        async move {
            let mut headers = vec![("content-type", "application/json".to_owned())];
            headers.extend(authorization.map(|a| ("authorization", a)));
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            call(&collect, "POST", "/v1/events", &headers, &body).await
        }
    };
    let ev = |id: &str, kind: &str, cost: u64, value: u64| json!({"id": id, "kind": kind, "campaign_id": campaign, "ad_id": "ad-1", "cost_micros": cost, "value_micros": value});

    // Authenticated: money kept (1,000 + 2,000 spend, 50,000 value).
    let (status, body) = post(
        json!([
            ev("a-1", "click", 1_000, 0),
            ev("a-2", "conversion", 2_000, 50_000)
        ]),
        Some(format!("Bearer {kid}:{secret}")),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains(r#""trust":"authenticated""#), "{body}");
    // Unsigned: counted, money forged and dropped.
    let (status, body) = post(
        json!([
            ev("u-1", "click", 100_000_000, 0),
            ev("u-2", "conversion", 100_000_000, 1_000_000_000_000)
        ]),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(body.contains(r#""money_dropped":2"#), "{body}");
    // A wrong key: refused whole.
    let (status, body) = post(
        json!([ev("w-1", "click", 5, 0)]),
        Some(format!("Bearer {kid}:not-the-secret-0123456789")),
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // Pixels: one signed (2,500 spend), the rest counted without their money.
    let now = u64::try_from(now_ms() / 1000).unwrap();
    let pixel = |id: &str, m: &str, kid: &str, key: &str, exp: u64| {
        sign_pixel(
            &[
                ("i", id),
                ("e", "impression"),
                ("c", campaign.as_str()),
                ("a", "ad-1"),
                ("m", m),
            ],
            kid,
            key,
            exp,
        )
        .unwrap()
    };
    let queries = [
        pixel("p-signed", "2500", &kid, &secret, now + 600),
        pixel("p-tampered", "1", &kid, &secret, now + 600).replace("m=1&", "m=100000000&"),
        pixel("p-expired", "2500", &kid, &secret, now - 600),
        pixel(
            "p-bad-key",
            "2500",
            &kid,
            "0123456789abcdef-wrong",
            now + 600,
        ),
        format!("i=p-plain&e=impression&c={campaign}&a=ad-1&m=2500"),
    ];
    for q in &queries {
        assert_eq!(
            get_pixel(&collect, q).await,
            200,
            "a pixel always answers the GIF"
        );
    }

    let expect = json!({"impressions": 5, "clicks": 2, "conversions": 2, "spend_micros": 5_500, "conversion_value_micros": 50_000});
    for lane in ["realtime", "settled"] {
        let counters = poll(Duration::from_secs(90), || {
            today(&query, &campaign, lane, 5)
        })
        .await
        .unwrap_or_else(|| panic!("{lane}: the campaign's 5 impressions were not counted"));
        let got: serde_json::Map<String, Value> = expect
            .as_object()
            .unwrap()
            .keys()
            .map(|k| (k.clone(), counters[k].clone()))
            .collect();
        assert_eq!(Value::Object(got), expect, "{lane}: {counters}");
    }
}
