//! `cargo xtask loadtest`: drives events through collect at a target rate (batched POSTs and single pixels),
//! measures freshness (collect's acknowledgement → the query API counts the event), and checks that every
//! acknowledged event is counted exactly once, per campaign and kind.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::lambda::lock;

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub collect_url: String,
    pub query_url: String,
    /// Events per second.
    pub rate: f64,
    pub duration: Duration,
}

const CAMPAIGNS: usize = 4;
const TICK: Duration = Duration::from_millis(20);

/// One acknowledged send: when, and the running total acknowledged after it.
#[derive(Debug, Clone, Copy)]
struct Ack {
    at: Instant,
    cumulative: u64,
}

/// Runs the load and returns the report (the `--json` object).
pub async fn run(options: LoadOptions) -> Value {
    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let campaigns: Vec<String> = (0..CAMPAIGNS).map(|i| format!("lt{run_id}-c{i}")).collect();
    let acked: Arc<Mutex<BTreeMap<(String, String), u64>>> = Arc::default();
    let acks: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let visible: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));

    let poller = {
        let (query, campaigns, visible, stop) = (
            options.query_url.clone(),
            campaigns.clone(),
            visible.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(counts) = counted(&query, &campaigns).await {
                    lock(&visible).push((Instant::now(), counts.values().sum()));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    let started = Instant::now();
    let mut sent = 0u64;
    let mut owed = 0.0;
    let mut serial = 0u64;
    let mut senders = Vec::new();
    let mut tick = tokio::time::interval(TICK);
    while started.elapsed() < options.duration {
        tick.tick().await;
        owed += options.rate * TICK.as_secs_f64();
        let n = owed as u64;
        owed -= n as f64;
        if n == 0 {
            continue;
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        // One pixel per tick, the rest as one batched POST.
        let mut events = Vec::new();
        for _ in 0..n.saturating_sub(1) {
            serial += 1;
            let campaign = &campaigns[(serial % CAMPAIGNS as u64) as usize];
            let kind = if matches!(serial % 10, 0) {
                "click"
            } else {
                "impression"
            };
            events.push(json!({"id": format!("{run_id}-{serial}"), "kind": kind, "campaign_id": campaign,
                               "ad_id": "ad1", "user_id": format!("u{}", serial % 1000), "client_ts_ms": now_ms}));
        }
        serial += 1;
        let pixel_campaign = campaigns[(serial % CAMPAIGNS as u64) as usize].clone();
        let pixel = format!(
            "/p.gif?c={pixel_campaign}&a=ad1&e=impression&u=u{}",
            serial % 1000
        );
        sent += n;
        let (collect, acked, acks) = (options.collect_url.clone(), acked.clone(), acks.clone());
        senders.push(tokio::spawn(async move {
            let mut ok = Vec::new();
            if !events.is_empty() {
                let body = Value::Array(events.clone()).to_string();
                // 202: all written; 503 (throttled) and 400 (mixed) list the written ones in `ids`.
                if let Ok((_, answer)) = request(&collect, "POST", "/v1/events", &body).await {
                    let written: Vec<String> = serde_json::from_str::<Value>(&answer)
                        .ok()
                        .and_then(|a| a.get("ids").and_then(Value::as_array).cloned())
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|id| id.as_str().map(str::to_owned))
                        .collect();
                    ok.extend(
                        events
                            .iter()
                            .filter(|e| written.iter().any(|w| e["id"] == w.as_str()))
                            .map(|e| {
                                (
                                    e["campaign_id"].as_str().unwrap_or_default().to_owned(),
                                    e["kind"].as_str().unwrap_or_default().to_owned(),
                                )
                            }),
                    );
                }
            }
            if let Ok((200, _)) = request(&collect, "GET", &pixel, "").await {
                ok.push((pixel_campaign, "impression".to_owned()));
            }
            let at = Instant::now();
            let mut acked = lock(&acked);
            for key in ok {
                *acked.entry(key).or_insert(0) += 1;
            }
            let cumulative = acked.values().sum();
            lock(&acks).push(Ack { at, cumulative });
        }));
    }
    for sender in senders {
        let _ = sender.await;
    }
    let elapsed = started.elapsed();
    let acknowledged: u64 = lock(&acked).values().sum();
    // Wait until everything acknowledged is visible (or 15 s pass), then count per campaign and kind.
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(15) {
        if lock(&visible)
            .last()
            .is_some_and(|(_, n)| *n >= acknowledged)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = poller.await;
    let final_counts = per_kind(&options.query_url, &campaigns)
        .await
        .unwrap_or_default();
    let (mut lost, mut duplicated, mut counted_total) = (0u64, 0u64, 0u64);
    let acked = lock(&acked).clone();
    for campaign in &campaigns {
        for kind in ["impression", "click"] {
            let want = acked
                .get(&(campaign.clone(), kind.to_owned()))
                .copied()
                .unwrap_or(0);
            let got = final_counts
                .get(&(campaign.clone(), kind.to_owned()))
                .copied()
                .unwrap_or(0);
            counted_total += got;
            lost += want.saturating_sub(got);
            duplicated += got.saturating_sub(want);
        }
    }
    let mut freshness = freshness_ms(&lock(&acks), &lock(&visible));
    freshness.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        freshness
            .get(((freshness.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    json!({
        "events_sent": sent,
        "events_acknowledged": acknowledged,
        "events_counted": counted_total,
        "lost": lost,
        "duplicated": duplicated,
        "rate_target": options.rate,
        "rate_achieved": (acknowledged as f64 / elapsed.as_secs_f64() * 10.0).round() / 10.0,
        "freshness_ms": {"p50": round1(pick(0.5)), "p90": round1(pick(0.9)), "p99": round1(pick(0.99)), "max": round1(pick(1.0))},
        "duration_s": (elapsed.as_secs_f64() * 10.0).round() / 10.0,
    })
}

fn round1(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 10.0).round() / 10.0)
    } else {
        Value::Null
    }
}

/// For each acknowledgement, the time until the query API's total first reached the total acknowledged by
/// then (a send acknowledged out of order is measured against the running total, a close upper bound).
fn freshness_ms(acks: &[Ack], visible: &[(Instant, u64)]) -> Vec<f64> {
    let mut acks = acks.to_vec();
    acks.sort_by_key(|a| a.at);
    acks.iter()
        .filter_map(|ack| {
            visible
                .iter()
                .find(|(at, n)| *at >= ack.at && *n >= ack.cumulative)
                .map(|(at, _)| at.duration_since(ack.at).as_secs_f64() * 1000.0)
        })
        .collect()
}

async fn counted(query_url: &str, campaigns: &[String]) -> Result<BTreeMap<String, u64>, String> {
    Ok(per_kind(query_url, campaigns).await?.into_iter().fold(
        BTreeMap::new(),
        |mut acc, ((c, _), n)| {
            *acc.entry(c).or_insert(0) += n;
            acc
        },
    ))
}

/// The realtime counts of the run's campaigns, per (campaign, kind).
async fn per_kind(
    query_url: &str,
    campaigns: &[String],
) -> Result<BTreeMap<(String, String), u64>, String> {
    let (status, body) = request(query_url, "GET", "/v1/campaigns", "")
        .await
        .map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("query answered {status}"));
    }
    let doc: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for campaign in doc["campaigns"].as_array().into_iter().flatten() {
        let id = campaign["campaign_id"].as_str().unwrap_or_default();
        if !campaigns.iter().any(|c| c == id) {
            continue;
        }
        let realtime = &campaign["today"]["realtime"];
        out.insert(
            (id.to_owned(), "impression".to_owned()),
            realtime["impressions"].as_u64().unwrap_or(0),
        );
        out.insert(
            (id.to_owned(), "click".to_owned()),
            realtime["clicks"].as_u64().unwrap_or(0),
        );
    }
    Ok(out)
}

/// One HTTP/1.1 request over a fresh loopback connection: status and body.
async fn request(
    base_url: &str,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let addr = base_url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_owned()))
}
