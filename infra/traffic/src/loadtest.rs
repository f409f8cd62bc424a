//! `cargo xtask loadtest`: drives a traffic profile's requests through collect at a flat rate, as real clients
//! send them (batched POSTs and pixels over several kept connections; on `503` only the `unwritten_ids` are
//! resent, after `Retry-After`; a request without an answer or with another `5xx` is resent whole), measures
//! freshness (collect's acknowledgement → the query API counts the event), checks that every acknowledged event
//! is counted exactly once per campaign, ad and kind in the realtime and in the settled lane, and reads the
//! meter: what AWS would have billed for the measured window, per event.
//!
//! [`Resend`] makes the clients misbehave the way real ones do, with the same event ids: a fraction of the
//! acknowledged POSTs is sent again whole (a client whose acknowledgement was lost to a timeout), and a fraction
//! of the POST bodies holds one of its events twice. The truth the counts are checked against is the set of
//! distinct acknowledged ids.
//!
//! Phases: warm-up (a few requests, until the realtime lane shows them: every function has served) → meter
//! reset → the measured window (`duration` at `rate`) → the realtime counts complete → the settled counts
//! complete (the deferred lane batches for up to its batching window) → meter snapshot → the report.
//!
//! The load test is a client of a running local cloud, over HTTP only: collect and query through their Function
//! URLs, and, when it is given the local AWS endpoint, the meter (`POST /_tally/meter/reset` after the warm-up,
//! `GET /_tally/meter` at the end) and the stream's open shards (Kinesis `ListStreams`, `DescribeStreamSummary`;
//! the local endpoint accepts unsigned requests).
//!
//! Freshness is measured on a probe campaign (the profile's largest, which carries real traffic;
//! `probe_campaigns`): polling every campaign would cost the query API thousands of reads per poll. The
//! exact-count check reads every campaign once through `GET /v1/campaigns`, page by page (plus a retry while a
//! lane is still catching up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tally_domain::ages::Ages;
use tally_domain::event::Event;
use tokio::sync::mpsc;

use crate::generate::PIXEL_USER_AGENT;
pub use crate::http_client::{request, Connection, Response};
use crate::machine::{cpu_times, Processes};
use crate::{Generator, Profile, RequestKind};

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub collect_url: String,
    pub query_url: String,
    /// Events per second (flat), at the profile's mix.
    pub rate: f64,
    pub duration: Duration,
    pub profile: Profile,
    /// The profile's file as given, `None` for the shipped default.
    pub profile_file: Option<String>,
    /// Seed of the generator.
    pub seed: u64,
    /// Concurrent client connections.
    pub connections: usize,
    /// The local cloud's AWS endpoint (`http://127.0.0.1:PORT`), for its meter and its stream's shard count
    /// (`None`: no `metered` section).
    pub aws_endpoint: Option<String>,
    /// The collect key `(key id, secret)` the clients post and sign pixels with (the local cloud's collect keys
    /// secret, [`crate::endpoints::Endpoints::collect_key`]); without one, collect drops the money of every
    /// event.
    pub key: Option<(String, String)>,
    /// With the edge (`edge = true`), the collect origin secret: sent in every request as CloudFront would,
    /// since collect refuses requests without it (the local cloud has no CloudFront).
    pub origin: Option<String>,
    /// How long to wait, after the sending ends, for the settled lane (its batching window and a margin).
    pub settle_timeout: Duration,
    /// Client resends of ids already sent.
    pub resend: Resend,
}

/// How often clients send ids again (each a fraction, 0 to 1).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resend {
    /// Of the POSTs collect acknowledged whole, the fraction sent again whole, as a client that timed out
    /// before the acknowledgement arrived does.
    pub acked: f64,
    /// Of the POST bodies, the fraction that holds one of its events twice.
    pub in_body: f64,
}

impl Resend {
    /// Checks both fractions.
    pub fn new(acked: f64, in_body: f64) -> Result<Resend, String> {
        for (name, v) in [("acked", acked), ("in_body", in_body)] {
            if !(0.0..=1.0).contains(&v) {
                return Err(format!(
                    "resend fraction {name} = {v} is out of range: give 0 to 1"
                ));
            }
        }
        Ok(Resend { acked, in_body })
    }
}

/// A duration as the load test's flags take it: `30`, `30s` or `2m`, above 0 and at most a day.
pub fn duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.strip_suffix('m') {
        Some(n) => (n, 60.0),
        None => (text.strip_suffix('s').unwrap_or(text), 1.0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30s or 2m"))?;
    if !(value > 0.0 && value * unit <= 86_400.0) {
        return Err(format!(
            "duration {text:?} must be above 0 and at most a day"
        ));
    }
    Ok(Duration::from_secs_f64(value * unit))
}

/// Whether the request whose first id is `id` is picked, for a fraction `p` (deterministic per id, so a run
/// is reproducible).
fn picked(id: &str, p: f64, salt: u64) -> bool {
    if p <= 0.0 {
        return false;
    }
    // FNV-1a of the id and the salt.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 1_000_000) as f64 / 1_000_000.0 < p
}

/// Resends of one event batch before the client gives up (a real SDK would keep them queued).
const MAX_ATTEMPTS: u32 = 8;
/// Requests the warm-up sends before the meter is reset.
const WARMUP_REQUESTS: usize = 4;
/// Poll period of the freshness probes.
const PROBE_PERIOD: Duration = Duration::from_millis(5);
/// A realtime lane whose counts do not move for this long is not catching up any more.
const REALTIME_STALL: Duration = Duration::from_secs(30);
/// The longest wait for a lane to catch up after the sending, however much progress it makes.
const MAX_CATCH_UP: Duration = Duration::from_secs(15 * 60);

/// One acknowledged send to a probe campaign: when, and the running total of probe events acknowledged.
#[derive(Debug, Clone, Copy)]
struct Ack {
    at: Instant,
    cumulative: u64,
}

type Counts = BTreeMap<(String, String), u64>;
/// Per (campaign, ad, kind).
type AdCounts = BTreeMap<(String, String, String), u64>;

/// What the client learnt, shared by its connections.
#[derive(Debug, Default)]
struct Tally {
    /// Distinct events acknowledged, per (campaign, kind).
    acked: Mutex<Counts>,
    /// The same, per (campaign, ad, kind).
    acked_ads: Mutex<AdCounts>,
    /// Every id acknowledged (an id acknowledged again is not a new event).
    acked_ids: Mutex<std::collections::HashSet<String>>,
    /// Acknowledged POSTs sent again whole, and their events.
    resent_acked_requests: AtomicU64,
    resent_acked_events: AtomicU64,
    /// POST bodies holding one event twice.
    repeated_in_body: AtomicU64,
    probe_acks: Mutex<Vec<Ack>>,
    probe_total: AtomicU64,
    /// Acknowledged after the meter reset.
    metered_events: AtomicU64,
    metering: AtomicBool,
    requests: AtomicU64,
    posts: AtomicU64,
    pixels: AtomicU64,
    retries_503: AtomicU64,
    /// Requests whose outcome was unknown (no answer, or a `5xx` other than `503`), resent whole (not counted
    /// when the attempts ran out: those events are `failed_events`).
    resent_unknown: AtomicU64,
    resent_events: AtomicU64,
    rejected_events: AtomicU64,
    failed_events: AtomicU64,
    errors: Mutex<Vec<String>>,
    /// The collect key `(key id, secret)` the clients post and sign pixels with (from the local cloud's
    /// collect keys secret); without one, collect would drop the money of every event.
    key: Option<(String, String)>,
    /// With the edge (`edge = true`), the collect origin secret: sent in every request as CloudFront would,
    /// since collect refuses requests without it (the local cloud has no CloudFront).
    origin: Option<String>,
}

impl Tally {
    /// An empty tally whose clients post with the options' collect key and origin secret.
    fn for_options(options: &LoadOptions) -> Tally {
        Tally {
            key: options.key.clone(),
            origin: options.origin.clone(),
            ..Tally::default()
        }
    }
}

/// The value in `mutex`, even when a thread panicked holding it (the counters stay usable).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `headers` and, with the edge, the origin header CloudFront would add.
fn with_origin<'a>(
    tally: &'a Tally,
    mut headers: Vec<(&'a str, &'a str)>,
) -> Vec<(&'a str, &'a str)> {
    if let Some(secret) = &tally.origin {
        headers.push((tally_domain::ingest::ORIGIN_HEADER, secret.as_str()));
    }
    headers
}

/// One request to make: its events and how many times they were tried already.
#[derive(Debug)]
struct Job {
    kind: RequestKind,
    events: Vec<Event>,
    attempt: u32,
}

/// Runs the load and returns the report (the `--json` object). Fails when the load cannot even start.
pub async fn run(options: LoadOptions) -> Result<Value, String> {
    check_user_pool(&options.profile, options.rate)?;
    let start_ms = now_ms();
    let mut generator = Generator::new(&options.profile, options.seed)
        .with_id_prefix(&format!("lt{}", start_ms / 1000));
    let probes = probe_campaigns();
    let tally = Arc::new(Tally::for_options(&options));
    let (jobs, pending) = start_clients(&options, &tally, &probes);

    // Warm-up: a few requests, then wait until the realtime lane counts them (every function has served).
    let warm = Instant::now();
    let mut sent = 0u64;
    for _ in 0..WARMUP_REQUESTS {
        let request = generator.next_request(now_ms());
        sent += request.events.len() as u64;
        submit(&jobs, &pending, request.kind, request.events);
    }
    wait_idle(&pending, Duration::from_secs(60)).await;
    let warmup_events: u64 = lock(&tally.acked).values().sum();
    if warmup_events == 0 {
        return Err(format!(
            "collect acknowledged none of the {sent} warm-up events: {}",
            lock(&tally.errors).first().cloned().unwrap_or_default()
        ));
    }
    let warm_counted = Instant::now();
    while warm_counted.elapsed() < Duration::from_secs(60) {
        if let Ok(counts) = all_counts(&options.query_url).await {
            if total(&counts.realtime) >= warmup_events {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let warmup_s = warm.elapsed().as_secs_f64();

    // The measured window.
    let aws = options.aws_endpoint.as_deref();
    let mut shards = open_shards(aws).await;
    if let Some(aws) = aws {
        meter(aws, "POST", RESET_PATH).await?;
    }
    tally.metering.store(true, Ordering::SeqCst);
    let metered_from = Instant::now();
    let (cpu_from, processes_from) = (cpu_times(), Processes::now());
    let visible: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(poll_probes(
        options.query_url.clone(),
        probes.clone(),
        start_ms,
        visible.clone(),
        stop.clone(),
    ));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut window_sent = 0u64;
    while started.elapsed() < options.duration {
        tick.tick().await;
        let owed = (options.rate * started.elapsed().as_secs_f64()) as u64;
        while window_sent < owed {
            let mut request = generator.next_request(now_ms());
            window_sent += request.events.len() as u64;
            if request.kind == RequestKind::Post
                && request
                    .events
                    .first()
                    .is_some_and(|e| picked(&e.id, options.resend.in_body, 2))
            {
                // One event of the body twice (collect acknowledges the id twice; it is one event).
                let again = request.events[request.events.len() / 2].clone();
                request.events.push(again);
                tally.repeated_in_body.fetch_add(1, Ordering::Relaxed);
            }
            submit(&jobs, &pending, request.kind, request.events);
        }
    }
    sent += window_sent;
    let send_s = started.elapsed().as_secs_f64();
    let cpu_busy = cpu_from
        .zip(cpu_times())
        .and_then(|((b0, t0), (b1, t1))| (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64));
    let by_program = Processes::now().since(&processes_from);
    // In flight and resends: bounded by the attempts and their Retry-After.
    wait_idle(&pending, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    // From the first request of the window to the last answer (more than `send_s` when collect fell behind).
    let sent_s = elapsed.as_secs_f64();
    let acked = lock(&tally.acked).clone();
    let acknowledged = total(&acked);
    let window_acknowledged = tally.metered_events.load(Ordering::SeqCst);

    // Realtime complete: the probes first (cheap), then every campaign. A lane that is behind is waited for
    // as long as it makes progress (a debug build or a slow machine falls behind without losing anything).
    let probe_target = tally.probe_total.load(Ordering::SeqCst);
    let mut last_change = (Instant::now(), 0);
    let cap = Instant::now() + MAX_CATCH_UP;
    loop {
        let seen = lock(&visible).last().map_or(0, |(_, n)| *n);
        if seen >= probe_target || Instant::now() > cap {
            break;
        }
        if seen != last_change.1 {
            last_change = (Instant::now(), seen);
        } else if last_change.0.elapsed() > REALTIME_STALL {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut probe_query_ms = poller.await.unwrap_or_default();
    probe_query_ms.sort_by(f64::total_cmp);
    let realtime = wait_counts(
        &options.query_url,
        &acked,
        Lane::Realtime,
        REALTIME_STALL,
        cap,
    )
    .await;
    let realtime_done_s = started.elapsed().as_secs_f64();
    // Settled complete: the deferred lane waits up to its batching window to fill a batch, so a stall shorter
    // than that window is no stall.
    let settled = wait_counts(
        &options.query_url,
        &acked,
        Lane::Settled,
        options.settle_timeout,
        Instant::now() + MAX_CATCH_UP,
    )
    .await;
    let settled_done_s = started.elapsed().as_secs_f64();
    let acked_ads = lock(&tally.acked_ads).clone();
    let per_ad = ad_counts(&options.query_url, &acked_ads, start_ms).await;
    shards = shards.max(open_shards(aws).await);
    let metered = match aws {
        Some(aws) => {
            let snapshot = meter(aws, "GET", METER_PATH).await?;
            Some(metered(
                &snapshot,
                window_acknowledged,
                metered_from.elapsed().as_secs_f64(),
                window_acknowledged as f64 / sent_s,
                shards,
                warmup_events,
            ))
        }
        None => None,
    };

    let (rt_lost, rt_dup, rt_counted) = compare(&acked, &realtime.counts);
    let (st_lost, st_dup, st_counted) = compare(&acked, &settled.counts);
    let (mut lost, mut duplicated) = combine(&acked, &realtime.counts, &settled.counts);
    let per_ad_report = match &per_ad {
        Ok(ads) => {
            // Per ad is the finer check: an event counted under the wrong ad shows only here.
            let (ad_lost, ad_dup) = combine(&ads.acked, &ads.realtime, &ads.settled);
            lost = lost.max(ad_lost);
            duplicated = duplicated.max(ad_dup);
            json!({"campaigns": ads.campaigns, "cells": ads.acked.len(), "lost": ad_lost, "duplicated": ad_dup})
        }
        Err(error) => json!({"error": error}),
    };
    let samples = freshness_ms(&lock(&tally.probe_acks), &lock(&visible));
    let mut freshness: Vec<f64> = samples.iter().map(|(_, ms)| *ms).collect();
    freshness.sort_by(f64::total_cmp);
    let pick = |q: f64| quantile(&freshness, q);
    let p = &options.profile;
    let load = |a: &AtomicU64| a.load(Ordering::SeqCst);
    let mut report = json!({
        "events_sent": sent,
        "events_acknowledged": acknowledged,
        "events_counted": rt_counted,
        "lost": lost,
        "duplicated": duplicated,
        "rate_target": options.rate,
        "rate_achieved": round1(window_acknowledged as f64 / sent_s),
        "freshness_ms": {"p50": round1(pick(0.5)), "p90": round1(pick(0.9)), "p99": round1(pick(0.99)), "max": round1(pick(1.0)),
                         "samples": freshness.len(), "probes": probes,
                         "probe_query_ms": {"p50": round1(quantile(&probe_query_ms, 0.5)), "p99": round1(quantile(&probe_query_ms, 0.99))},
                         "probe_period_ms": PROBE_PERIOD.as_millis() as u64,
                         "by_second": freshness_by_second(&samples, started)},
        "duration_s": round1(elapsed.as_secs_f64()),
        "per_ad": per_ad_report,
        "lanes_checked": {
            "realtime": {"counted": rt_counted, "lost": rt_lost, "duplicated": rt_dup, "complete": realtime.complete,
                         "complete_after_s": round1(realtime_done_s - send_s)},
            "settled": {"counted": st_counted, "lost": st_lost, "duplicated": st_dup, "complete": settled.complete,
                        "complete_after_s": round1(settled_done_s - send_s)},
        },
        "profile": {
            "name": p.name, "file": options.profile_file, "campaigns": p.campaigns, "campaign_skew": p.campaign_skew,
            "ads_per_campaign": p.ads_per_campaign, "users": p.users, "events_per_request": p.events_per_request,
            "event_bytes": p.event_bytes,
            "kinds": {"impression": p.kinds[0], "viewable": p.kinds[1], "click": p.kinds[2], "conversion": p.kinds[3]},
            "seed": options.seed,
        },
        "client": {
            "requests": load(&tally.requests), "posts": load(&tally.posts), "pixels": load(&tally.pixels),
            "retries_503": load(&tally.retries_503), "resent_unknown": load(&tally.resent_unknown), "resent_events": load(&tally.resent_events),
            "resent_acked_requests": load(&tally.resent_acked_requests),
            "resent_acked_events": load(&tally.resent_acked_events),
            "repeated_in_body": load(&tally.repeated_in_body),
            "resend_fractions": {"acked": options.resend.acked, "in_body": options.resend.in_body},
            "rejected_events": load(&tally.rejected_events), "failed_events": load(&tally.failed_events),
            "connections": options.connections, "warmup_s": round1(warmup_s),
            "errors": lock(&tally.errors).iter().take(5).cloned().collect::<Vec<_>>(),
        },
    });
    if let Some(metered) = metered {
        // Where the freshness goes: the realtime lane's part (stream arrival → counted in the cache), the
        // rest being the query and the probe's polling.
        report["freshness_ms"]["realtime_lane_ms"] =
            metered["lanes"]["realtime"]["record_age_ms"].clone();
        report["metered"] = metered;
    }
    report["machine"] = json!({
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu_busy_while_sending": cpu_busy.map_or(Value::Null, |b| json!((b * 1000.0).round() / 1000.0)),
        "send_s": round1(send_s),
        // The programs that took the most CPU while sending (seconds; every process of the machine, so a
        // build running beside the test shows here too).
        "cpu_s_while_sending": by_program
            .iter()
            .take(12)
            .map(|(name, s)| (name.clone(), json!(round1(*s))))
            .collect::<serde_json::Map<String, Value>>(),
    });
    Ok(report)
}

/// Refuses a rate the user pool is too small for: the deferred lane flags a user with more than 600 events,
/// 20 clicks or 10 conversions in a minute as invalid traffic, and the check expects all traffic valid.
fn check_user_pool(profile: &Profile, rate: f64) -> Result<(), String> {
    let per_user_minute = rate * 60.0 / f64::from(profile.users);
    let limits = tally_domain::enrich::RateLimits::default();
    for (what, share, limit) in [
        ("events", 1.0, limits.events_per_minute),
        ("clicks", profile.kinds[2], limits.clicks_per_minute),
        (
            "conversions",
            profile.kinds[3],
            limits.conversions_per_minute,
        ),
    ] {
        let mean = per_user_minute * share;
        // A tenth of the limit on average keeps a Poisson count over the limit below one in a billion.
        if mean > f64::from(limit) / 10.0 {
            return Err(format!(
                "users = {} is too small for {rate} events/s: a user would send {mean:.1} {what} a minute on average, \
                 and the deferred lane counts more than {limit} a minute as invalid traffic; raise `users` in the profile",
                profile.users
            ));
        }
    }
    Ok(())
}

/// The campaigns measured for freshness: the largest one. Each probe's series is read back to back (every
/// [`PROBE_PERIOD`] after the last answer), and with two (the daily-curve profile's two largest; up to three
/// until 2026-12-07) the probes were the query API's whole load — 4,814 reads in the 60 s run, against the
/// profile's 50,000 a day — and query took 9.8 of the machine's 120 CPU-seconds at 10,000 events/s, from the
/// pipeline it measured (one probe: 3,700 reads, 6.2 CPU-seconds; README, Measurements, twelfth session). The
/// largest campaign is in almost every request (a sixth of the events at that profile's skew): one probe kept
/// 23,748 samples of the run against 23,989.
fn probe_campaigns() -> Vec<String> {
    vec![Generator::campaign_id(0)]
}

/// Requests submitted and not yet finished (resends included).
type Pending = Arc<AtomicU64>;

fn submit(
    jobs: &mpsc::UnboundedSender<Job>,
    pending: &Pending,
    kind: RequestKind,
    events: Vec<Event>,
) {
    pending.fetch_add(1, Ordering::SeqCst);
    if jobs
        .send(Job {
            kind,
            events,
            attempt: 0,
        })
        .is_err()
    {
        pending.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn wait_idle(pending: &Pending, limit: Duration) {
    let since = Instant::now();
    while pending.load(Ordering::SeqCst) > 0 && since.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The pixel query of `event`, signed with `key` for an hour when there is one (`docs/events.md`, "Signed
/// pixels"), as is otherwise.
fn signed_pixel_query(event: &Event, key: Option<&(String, String)>) -> String {
    let query = crate::generate::pixel_query(event);
    let Some((id, secret)) = key else {
        return query;
    };
    let params: Vec<(&str, &str)> = query
        .split('&')
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    let exp = u64::try_from(now_ms() / 1000).unwrap_or(0) + 3600;
    tally_domain::signing::sign_pixel(&params, id, secret, exp).unwrap_or(query)
}

/// Starts the client connections; they run until the returned sender is dropped.
fn start_clients(
    options: &LoadOptions,
    tally: &Arc<Tally>,
    probes: &[String],
) -> (mpsc::UnboundedSender<Job>, Pending) {
    let (tx, rx) = mpsc::unbounded_channel::<Job>();
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let pending: Pending = Arc::default();
    for _ in 0..options.connections.max(1) {
        let (rx, tx, tally, pending) = (rx.clone(), tx.clone(), tally.clone(), pending.clone());
        let probes = probes.to_vec();
        // Each client keeps its connection, as an ad server does.
        let mut collect = Connection::new(&options.collect_url);
        let resend = options.resend;
        tokio::spawn(async move {
            loop {
                let job = rx.lock().await.recv().await;
                let Some(job) = job else { break };
                if let Some((delay, resend)) =
                    send(&mut collect, job, &tally, &probes, resend).await
                {
                    // Resend later without holding this connection.
                    let (tx, pending) = (tx.clone(), pending.clone());
                    pending.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        if tx.send(resend).is_err() {
                            pending.fetch_sub(1, Ordering::SeqCst);
                        }
                    });
                }
                pending.fetch_sub(1, Ordering::SeqCst);
            }
        });
    }
    (tx, pending)
}

/// Sends one request and records what collect acknowledged; returns what to resend and when.
async fn send(
    collect: &mut Connection,
    job: Job,
    tally: &Tally,
    probes: &[String],
    resend: Resend,
) -> Option<(Duration, Job)> {
    tally.requests.fetch_add(1, Ordering::Relaxed);
    let Job {
        kind,
        events,
        attempt,
    } = job;
    if attempt > 0 {
        tally
            .resent_events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
    }
    let outcome = match kind {
        RequestKind::Pixel => {
            tally.pixels.fetch_add(1, Ordering::Relaxed);
            let path = match events.as_slice() {
                [event] => format!("/p.gif?{}", signed_pixel_query(event, tally.key.as_ref())),
                _ => String::new(),
            };
            collect
                .request(
                    "GET",
                    &path,
                    "",
                    &with_origin(tally, vec![("User-Agent", PIXEL_USER_AGENT)]),
                )
                .await
        }
        RequestKind::Post => {
            tally.posts.fetch_add(1, Ordering::Relaxed);
            let body = crate::generate::json_body(&events);
            let authorization = tally
                .key
                .as_ref()
                .map(|(id, secret)| format!("Bearer {id}:{secret}"));
            let mut headers = vec![("Content-Type", "application/json")];
            headers.extend(authorization.as_deref().map(|a| ("Authorization", a)));
            collect
                .request("POST", "/v1/events", &body, &with_origin(tally, headers))
                .await
        }
    };
    let retry = |events: Vec<Event>, delay: Duration| {
        (attempt + 1 < MAX_ATTEMPTS).then_some((
            delay,
            Job {
                kind,
                events,
                attempt: attempt + 1,
            },
        ))
    };
    // Nothing is known about the request (no answer, or a server error other than collect's own `503`, such as
    // the gateway's `502` when collect timed out after writing some of it): resend all of it, as a real client
    // does; the ids make it idempotent, so what was written is counted once.
    let unknown = |error: String, events: Vec<Event>| {
        note_error(tally, error);
        let n = events.len() as u64;
        let again = retry(events, Duration::from_secs(1));
        match again {
            Some(_) => tally.resent_unknown.fetch_add(1, Ordering::Relaxed),
            None => tally.failed_events.fetch_add(n, Ordering::Relaxed),
        };
        again
    };
    let response = match outcome {
        Ok(response) => response,
        Err(error) => return unknown(format!("collect: {error}"), events),
    };
    if response.status >= 500 && response.status != 503 {
        let error = format!("collect answered {}: {}", response.status, response.body);
        return unknown(error, events);
    }
    // A pixel answers 200 whatever happened to the write; a POST says which ids were written.
    let (written, unwritten): (Vec<Event>, Vec<Event>) = match (kind, response.status) {
        (RequestKind::Pixel, 200) => (events, Vec::new()),
        (RequestKind::Post, 202 | 400 | 503) => {
            let doc: Value = serde_json::from_str(&response.body).unwrap_or_default();
            let ids = |key: &str| -> std::collections::HashSet<String> {
                doc[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            };
            let (ok, again) = (ids("ids"), ids("unwritten_ids"));
            let mut written = Vec::new();
            let mut unwritten = Vec::new();
            for e in events {
                if ok.contains(&e.id) {
                    written.push(e);
                } else if response.status == 503 && again.contains(&e.id) {
                    unwritten.push(e);
                } else {
                    tally.rejected_events.fetch_add(1, Ordering::Relaxed);
                }
            }
            if response.status == 400 {
                note_error(tally, format!("collect answered 400: {}", response.body));
            }
            (written, unwritten)
        }
        (_, status) => {
            note_error(
                tally,
                format!("collect answered {status}: {}", response.body),
            );
            tally
                .failed_events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
            (Vec::new(), Vec::new())
        }
    };
    let all_written = response.status == 202 && unwritten.is_empty();
    let again_whole = (kind == RequestKind::Post
        && all_written
        && attempt == 0
        && written
            .first()
            .is_some_and(|e| picked(&e.id, resend.acked, 1)))
    .then(|| written.clone());
    acknowledge(tally, &written, probes);
    if let Some(events) = again_whole {
        // The acknowledgement "was lost": the whole batch again, same ids, a moment later.
        tally.resent_acked_requests.fetch_add(1, Ordering::Relaxed);
        tally
            .resent_acked_events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        return Some((
            Duration::from_millis(200),
            Job {
                kind,
                events,
                attempt: attempt + 1,
            },
        ));
    }
    if unwritten.is_empty() {
        return None;
    }
    tally.retries_503.fetch_add(1, Ordering::Relaxed);
    let delay = Duration::from_secs(response.retry_after.unwrap_or(1).min(30));
    let n = unwritten.len() as u64;
    let again = retry(unwritten, delay);
    if again.is_none() {
        tally.failed_events.fetch_add(n, Ordering::Relaxed);
    }
    again
}

fn acknowledge(tally: &Tally, written: &[Event], probes: &[String]) {
    if written.is_empty() {
        return;
    }
    let at = Instant::now();
    let mut ids = lock(&tally.acked_ids);
    let mut acked = lock(&tally.acked);
    let mut acked_ads = lock(&tally.acked_ads);
    let (mut probe_events, mut new) = (0, 0u64);
    for e in written {
        if !ids.insert(e.id.clone()) {
            continue;
        }
        new += 1;
        let kind = e.kind.as_str().to_owned();
        *acked
            .entry((e.campaign_id.clone(), kind.clone()))
            .or_insert(0) += 1;
        *acked_ads
            .entry((e.campaign_id.clone(), e.ad_id.clone(), kind))
            .or_insert(0) += 1;
        probe_events += u64::from(probes.contains(&e.campaign_id));
    }
    if tally.metering.load(Ordering::SeqCst) {
        tally.metered_events.fetch_add(new, Ordering::SeqCst);
    }
    if probe_events > 0 {
        let cumulative = tally.probe_total.fetch_add(probe_events, Ordering::SeqCst) + probe_events;
        lock(&tally.probe_acks).push(Ack { at, cumulative });
    }
}

fn note_error(tally: &Tally, error: String) {
    let mut errors = lock(&tally.errors);
    if errors.len() < 20 {
        errors.push(error);
    }
}

/// Polls the probe campaigns' realtime totals until `stop`: the probes are read concurrently, and a sample is
/// stamped when the last answer arrived (the counts were read at or before then, so freshness is never
/// under-stated; the query's own time is part of it and is reported as `probe_query_ms`).
async fn poll_probes(
    query: String,
    probes: Vec<String>,
    from_ms: i64,
    visible: Arc<Mutex<Vec<(Instant, u64)>>>,
    stop: Arc<AtomicBool>,
) -> Vec<f64> {
    let mut query_ms = Vec::new();
    // One kept connection per probe, as a dashboard polling the API holds.
    let mut connections: Vec<Connection> = probes.iter().map(|_| Connection::new(&query)).collect();
    while !stop.load(Ordering::SeqCst) {
        let asked = Instant::now();
        let asks: Vec<_> = probes
            .iter()
            .zip(connections.drain(..))
            .map(|(probe, mut connection)| {
                // Per minute from the run's first minute: the run's events only, and the fewest reads (a day
                // step would read every minute of the day so far).
                let path = format!("/v1/campaigns/{probe}/series?step=1m&from={from_ms}");
                tokio::spawn(async move {
                    let answer = connection.request("GET", &path, "", &[]).await;
                    (connection, answer)
                })
            })
            .collect();
        let mut answers = Vec::with_capacity(asks.len());
        for ask in asks {
            match ask.await {
                Ok((connection, answer)) => {
                    connections.push(connection);
                    answers.push(answer);
                }
                Err(error) => {
                    connections.push(Connection::new(&query));
                    answers.push(Err(std::io::Error::other(error.to_string())));
                }
            }
        }
        let answered = Instant::now();
        let mut sum = 0;
        let mut ok = true;
        for answer in answers {
            match answer {
                Ok(r) if r.status == 200 => {
                    let doc: Value = serde_json::from_str(&r.body).unwrap_or_default();
                    for point in doc["points"].as_array().into_iter().flatten() {
                        sum += kinds_total(&point["realtime"]);
                    }
                }
                // 404 until the campaign's first event is counted.
                Ok(r) if r.status == 404 => {}
                _ => ok = false,
            }
        }
        if ok {
            lock(&visible).push((answered, sum));
            query_ms.push(answered.duration_since(asked).as_secs_f64() * 1000.0);
        }
        tokio::time::sleep(PROBE_PERIOD).await;
    }
    query_ms
}

/// The `q` quantile of sorted samples (nearest rank); NaN when there are none.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

fn kinds_total(counters: &Value) -> u64 {
    ["impressions", "viewable", "clicks", "conversions"]
        .iter()
        .map(|k| counters[*k].as_u64().unwrap_or(0))
        .sum()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Realtime,
    Settled,
}

/// Every campaign's counts of today, per lane, with money.
#[derive(Debug, Default)]
struct AllCounts {
    realtime: Counts,
    settled: Counts,
}

#[derive(Debug, Default)]
struct LaneCounts {
    counts: Counts,
    complete: bool,
}

/// Reads `/v1/campaigns` until the lane's counts equal `acked`, until they stop changing for `stall`, or until
/// `cap`; returns the last reading.
async fn wait_counts(
    query: &str,
    acked: &Counts,
    lane: Lane,
    stall: Duration,
    cap: Instant,
) -> LaneCounts {
    let mut last = LaneCounts::default();
    let mut changed = (Instant::now(), u64::MAX);
    loop {
        if let Ok(all) = all_counts(query).await {
            let counts = match lane {
                Lane::Realtime => all.realtime,
                Lane::Settled => all.settled,
            };
            let complete = counts.len() == acked.iter().filter(|(_, n)| **n > 0).count()
                && acked
                    .iter()
                    .all(|(key, n)| counts.get(key).copied().unwrap_or(0) == *n);
            let seen = total(&counts);
            if seen != changed.1 {
                changed = (Instant::now(), seen);
            }
            last = LaneCounts { counts, complete };
            if complete {
                return last;
            }
        }
        if Instant::now() >= cap || changed.0.elapsed() > stall {
            return last;
        }
        // Every poll reads every campaign: not more often than this.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// Lost and duplicated events per (campaign, kind) over both lanes: an event missing from either lane is lost
/// once, one counted twice in either lane is duplicated once.
fn combine(acked: &Counts, realtime: &Counts, settled: &Counts) -> (u64, u64) {
    let (mut lost, mut duplicated) = (0, 0);
    let keys: std::collections::BTreeSet<&(String, String)> = acked
        .keys()
        .chain(realtime.keys())
        .chain(settled.keys())
        .collect();
    for key in keys {
        let want = acked.get(key).copied().unwrap_or(0);
        let (rt, st) = (
            realtime.get(key).copied().unwrap_or(0),
            settled.get(key).copied().unwrap_or(0),
        );
        lost += want.saturating_sub(rt).max(want.saturating_sub(st));
        duplicated += rt.saturating_sub(want).max(st.saturating_sub(want));
    }
    (lost, duplicated)
}

/// `(lost, duplicated, counted)` of `counts` against `acked`, per campaign and kind.
fn compare(acked: &Counts, counts: &Counts) -> (u64, u64, u64) {
    let (mut lost, mut duplicated) = (0, 0);
    for (key, want) in acked {
        let got = counts.get(key).copied().unwrap_or(0);
        lost += want.saturating_sub(got);
        duplicated += got.saturating_sub(*want);
    }
    for (key, got) in counts {
        if !acked.contains_key(key) {
            duplicated += got;
        }
    }
    (lost, duplicated, total(counts))
}

fn total(counts: &Counts) -> u64 {
    counts.values().sum()
}

/// Campaigns per page read by [`all_counts`]: a page's totals answer well inside query's timeout.
const COUNTS_PAGE: usize = 100;

/// Every campaign's today counts, realtime and settled, per (campaign, kind): every page of `/v1/campaigns`.
async fn all_counts(query: &str) -> Result<AllCounts, String> {
    let mut out = AllCounts::default();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/campaigns?limit={COUNTS_PAGE}&cursor={c}"),
            None => format!("/v1/campaigns?limit={COUNTS_PAGE}"),
        };
        let r = request(query, "GET", &path, "", &[])
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("query answered {} to {path}: {}", r.status, r.body));
        }
        let doc: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
        add_counts(&mut out, &doc);
        match doc["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return Ok(out),
        }
    }
}

/// Adds one `/v1/campaigns` page's counts to `out`.
fn add_counts(out: &mut AllCounts, doc: &Value) {
    for campaign in doc["campaigns"].as_array().into_iter().flatten() {
        let id = campaign["campaign_id"].as_str().unwrap_or_default();
        for (lane, counts) in [
            ("realtime", &mut out.realtime),
            ("settled", &mut out.settled),
        ] {
            let c = &campaign["today"][lane];
            for (field, kind) in KIND_FIELDS {
                let n = c[field].as_u64().unwrap_or(0);
                if n > 0 {
                    counts.insert((id.to_owned(), kind.to_owned()), n);
                }
            }
        }
    }
}

/// The per-ad check's readings: every (campaign, ad, kind) acknowledged, and what each lane counts for it.
#[derive(Debug, Default)]
struct AdReadings {
    campaigns: usize,
    /// Keyed `(campaign, "ad/kind")` so that [`combine`] compares them.
    acked: Counts,
    realtime: Counts,
    settled: Counts,
}

/// Reads `/v1/campaigns/{id}/ads?from=` for every campaign acknowledged (`from`: the run's start).
async fn ad_counts(query: &str, acked: &AdCounts, from_ms: i64) -> Result<AdReadings, String> {
    let mut out = AdReadings::default();
    let mut campaigns: Vec<&str> = acked.keys().map(|(c, _, _)| c.as_str()).collect();
    campaigns.dedup();
    out.campaigns = campaigns.len();
    for ((campaign, ad, kind), n) in acked {
        out.acked
            .insert((campaign.clone(), format!("{ad}/{kind}")), *n);
    }
    let from = from_ms.div_euclid(60_000) * 60_000;
    for campaign in campaigns {
        let path = format!("/v1/campaigns/{campaign}/ads?from={from}");
        let r = request(query, "GET", &path, "", &[])
            .await
            .map_err(|e| format!("{path}: {e}"))?;
        if r.status != 200 {
            return Err(format!("{path}: query answered {}: {}", r.status, r.body));
        }
        let doc: Value = serde_json::from_str(&r.body).map_err(|e| format!("{path}: {e}"))?;
        for ad in doc["ads"].as_array().into_iter().flatten() {
            let id = ad["ad_id"].as_str().unwrap_or_default();
            for (lane, counts) in [
                ("realtime", &mut out.realtime),
                ("settled", &mut out.settled),
            ] {
                for (field, kind) in KIND_FIELDS {
                    let n = ad[lane][field].as_u64().unwrap_or(0);
                    if n > 0 {
                        counts.insert((campaign.to_owned(), format!("{id}/{kind}")), n);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The query API's counter fields and the event kinds they count.
const KIND_FIELDS: [(&str, &str); 4] = [
    ("impressions", "impression"),
    ("viewable", "viewable"),
    ("clicks", "click"),
    ("conversions", "conversion"),
];

/// The meter's paths on the local AWS endpoint (`infra/localcloud-aws/src/meter.rs`): `GET` answers the snapshot,
/// `POST` to the reset path zeroes it and answers the fresh one.
pub const METER_PATH: &str = "/_tally/meter";
pub const RESET_PATH: &str = "/_tally/meter/reset";

/// `method path` on the meter of the local AWS endpoint `aws`: the snapshot it answers, as JSON.
async fn meter(aws: &str, method: &str, path: &str) -> Result<Value, String> {
    let r = request(aws, method, path, "", &[])
        .await
        .map_err(|e| format!("the meter ({method} {path}): {e}"))?;
    if r.status != 200 {
        return Err(format!(
            "the meter answered {} to {method} {path}: {}",
            r.status, r.body
        ));
    }
    serde_json::from_str(&r.body).map_err(|e| format!("the meter's {path} is not JSON: {e}"))
}

/// One Kinesis call (JSON 1.1, unsigned: the local endpoint accepts it) on the AWS endpoint `aws`.
async fn kinesis(aws: &str, operation: &str, input: &Value) -> Option<Value> {
    let target = format!("Kinesis_20131202.{operation}");
    let headers = [
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", target.as_str()),
    ];
    let r = request(aws, "POST", "/", &input.to_string(), &headers)
        .await
        .ok()?;
    (r.status == 200)
        .then(|| serde_json::from_str(&r.body).ok())
        .flatten()
}

/// Open shards of the local cloud's streams (the most of any stream; 0 without an endpoint or a stream).
async fn open_shards(aws: Option<&str>) -> u64 {
    let Some(aws) = aws else { return 0 };
    let Some(list) = kinesis(aws, "ListStreams", &json!({})).await else {
        return 0;
    };
    let mut most = 0;
    for name in list["StreamNames"].as_array().into_iter().flatten() {
        let summary = kinesis(aws, "DescribeStreamSummary", &json!({"StreamName": name})).await;
        if let Some(open) =
            summary.and_then(|s| s["StreamDescriptionSummary"]["OpenShardCount"].as_u64())
        {
            most = most.max(open);
        }
    }
    most
}

/// The role of a function: its name's last `-` segment (`tally-dev-realtime` → `realtime`).
pub fn role(function: &str) -> &str {
    function.rsplit('-').next().unwrap_or(function)
}

fn per(n: f64, events: f64) -> f64 {
    if events > 0.0 {
        n / events
    } else {
        0.0
    }
}

fn num(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// The `metered` section (documented in `docs/local-cloud.md`) from a meter snapshot as JSON, `events`
/// acknowledged in the window of `window_s` seconds. `send_rate` is the events per second acknowledged while
/// the load was sent (the window also holds the lanes' catch-up): time-based prices (shard-hours) are per
/// event at that rate.
pub fn metered(
    snapshot: &Value,
    events: u64,
    window_s: f64,
    send_rate: f64,
    shards: u64,
    warmup_events: u64,
) -> Value {
    let ev = events as f64;

    // Kinesis: every stream (the pipeline has one).
    const KINESIS: [&str; 7] = [
        "records",
        "bytes",
        "put_payload_units",
        "on_demand_kb",
        "put_requests",
        "throttled_records",
        "efo_bytes",
    ];
    let mut k: BTreeMap<&str, f64> = KINESIS.iter().map(|key| (*key, 0.0)).collect();
    for (_, stream) in snapshot["kinesis"]["streams"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for key in KINESIS {
            *k.entry(key).or_default() += num(&stream[key]);
        }
    }
    let records = k.get("records").copied().unwrap_or(0.0);
    let mut kinesis = json!({});
    for (key, value) in &k {
        kinesis[*key] = json!(*value as u64);
    }
    kinesis["events_per_record"] = json!(per(ev, records));
    kinesis["records_per_event"] = json!(per(records, ev));
    kinesis["put_units_per_event"] =
        json!(per(k.get("put_payload_units").copied().unwrap_or(0.0), ev));

    // DynamoDB: per caller role; what no caller accounts for is `other`.
    let mut lanes: BTreeMap<&str, [f64; 3]> = ["realtime", "deferred", "query", "other"]
        .into_iter()
        .map(|l| (l, [0.0; 3]))
        .collect();
    let mut totals = [0.0; 3];
    for (_, table) in snapshot["dynamodb"]["tables"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let table_units = [
            num(&table["write_units"]),
            num(&table["read_units"]),
            num(&table["failed_conditional_writes"]),
        ];
        let mut attributed = [0.0; 3];
        for (caller, c) in table["callers"].as_object().into_iter().flatten() {
            let lane = match role(caller) {
                r @ ("realtime" | "deferred" | "query") => r,
                _ => "other",
            };
            let units = [
                num(&c["write_units"]),
                num(&c["read_units"]),
                num(&c["failed_conditional_writes"]),
            ];
            let slot = lanes.entry(lane).or_default();
            for i in 0..3 {
                slot[i] += units[i];
                attributed[i] += units[i];
            }
        }
        let other = lanes.entry("other").or_default();
        for i in 0..3 {
            other[i] += (table_units[i] - attributed[i]).max(0.0);
            totals[i] += table_units[i];
        }
    }
    let lane_json = |u: &[f64; 3]| {
        json!({"write_units": u[0], "read_units": u[1], "write_units_per_event": per(u[0], ev),
               "read_units_per_event": per(u[1], ev), "failed_conditional_writes": u[2] as u64})
    };
    let pipeline: [f64; 3] = {
        let (r, d) = (lanes["realtime"], lanes["deferred"]);
        [r[0] + d[0], r[1] + d[1], r[2] + d[2]]
    };
    let by_lane: serde_json::Map<String, Value> = lanes
        .iter()
        .map(|(lane, u)| ((*lane).to_owned(), lane_json(u)))
        .collect();
    let dynamodb = json!({
        "write_units": pipeline[0], "read_units": pipeline[1],
        "write_units_per_event": per(pipeline[0], ev), "read_units_per_event": per(pipeline[1], ev),
        "failed_conditional_writes": pipeline[2] as u64,
        "all_callers": {"write_units": totals[0], "read_units": totals[1]},
        "by_lane": by_lane,
    });

    // Lambda, per role.
    let mut by_function = serde_json::Map::new();
    for (name, f) in snapshot["lambda"]["functions"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let (invocations, gb_seconds) = (num(&f["invocations"]), num(&f["gb_seconds"]));
        by_function.insert(
            role(name).to_owned(),
            json!({"invocations": invocations as u64, "errors": num(&f["errors"]) as u64,
                   "billed_ms": num(&f["billed_ms"]) as u64, "memory_mb": num(&f["memory_mb"]) as u64,
                   "gb_seconds": gb_seconds, "invocations_per_event": per(invocations, ev),
                   "gb_seconds_per_event": per(gb_seconds, ev),
                   "log_bytes": num(&f["log_bytes"]) as u64,
                   "log_bytes_per_event": per(num(&f["log_bytes"]), ev)}),
        );
    }

    // Stream lanes: the mappings of the realtime and deferred functions.
    let events_per_record = per(ev, records);
    let mut stream_lanes = serde_json::Map::new();
    for (_, m) in snapshot["mappings"].as_object().into_iter().flatten() {
        let function = m["function"].as_str().unwrap_or_default();
        let lane = role(function);
        if !matches!(lane, "realtime" | "deferred") {
            continue;
        }
        let (invocations, recs) = (num(&m["invocations"]), num(&m["records"]));
        let (mut weighted, mut weights, mut busy) = (0.0, 0.0, 0.0);
        for (_, shard) in m["shards"].as_object().into_iter().flatten() {
            let n = num(&shard["invocations"]);
            if num(&shard["cycle_ms"]) > 0.0 {
                weighted += num(&shard["cycle_ms"]) * n;
                weights += n;
            }
            busy += num(&shard["busy_ms"]);
        }
        let ages = Ages::of(&m["record_age_ms"]);
        let age = |q: f64| ages.quantile(q).map_or(Value::Null, |ms| json!(ms));
        stream_lanes.insert(
            lane.to_owned(),
            json!({"kind": m["kind"], "invocations": invocations as u64, "records": recs as u64,
                   "events_per_invocation": per(recs, invocations) * events_per_record,
                   "records_per_invocation": per(recs, invocations),
                   "cycle_ms": per(weighted, weights), "busy_ms_per_invocation": per(busy, invocations),
                   "record_age_ms": {"p50": age(0.5), "p90": age(0.9), "p99": age(0.99), "max": age(1.0),
                                     "records": ages.count()}}),
        );
    }

    // S3.
    let mut s = [0.0; 3];
    for (_, b) in snapshot["s3"]["buckets"].as_object().into_iter().flatten() {
        s[0] += num(&b["class_a_requests"]);
        s[1] += num(&b["class_b_requests"]);
        s[2] += num(&b["bytes_in"]);
    }
    // ElastiCache: every cache (the pipeline has one), summed; each cache's own figures kept under `caches`.
    let mut c = [0.0; 6];
    let mut lanes = 0.0;
    let mut caches = serde_json::Map::new();
    for (name, cache) in snapshot["elasticache"]["caches"]
        .as_object()
        .into_iter()
        .flatten()
    {
        c[0] += num(&cache["ecpu"]);
        c[1] += num(&cache["total_commands"]);
        c[2] += num(&cache["bytes_in"]);
        c[3] += num(&cache["bytes_out"]);
        c[4] += num(&cache["stored_bytes"]);
        c[5] += num(&cache["storage_gb_hours"]);
        for (command, stats) in cache["commands"].as_object().into_iter().flatten() {
            if lane_command(command) {
                lanes += num(&stats["calls"]);
            }
        }
        caches.insert(
            name.clone(),
            json!({"ecpu": num(&cache["ecpu"]), "commands": cache["commands"].clone()}),
        );
    }
    let elasticache = json!({"ecpu": c[0], "ecpu_per_event": per(c[0], ev), "commands": c[1] as u64,
        "commands_per_event": per(c[1], ev), "bytes_in": c[2] as u64, "bytes_out": c[3] as u64,
        "stored_bytes": c[4] as u64, "storage_gb_hours": c[5],
        "lanes_commands": lanes as u64, "lanes_commands_per_event": per(lanes, ev), "caches": caches});
    json!({
        "events": events,
        "window_s": (window_s * 10.0).round() / 10.0,
        "events_per_sec": (send_rate * 10.0).round() / 10.0,
        "shards": shards,
        "warmup_events": warmup_events,
        "kinesis": kinesis,
        "dynamodb": dynamodb,
        "lambda": {"by_function": by_function},
        "lanes": stream_lanes,
        "elasticache": elasticache,
        "s3": {"class_a_requests": s[0] as u64, "class_b_requests": s[1] as u64, "bytes_in": s[2] as u64,
               "class_a_per_event": per(s[0], ev), "bytes_per_event": per(s[2], ev)},
    })
}

/// Whether a cache command is the lanes' (claims, the mark, the apply script and what it runs — counters,
/// index sets, expiries, the settled lane's unique-user registers (`HGET`, `HSET`) — and shard registration)
/// rather than a reader's (`SMEMBERS`, `HGETALL` and `MGET`: the compactor and the query function, whose
/// polling is the load test's own traffic) or the client's housekeeping. Every lane command is under 1 KB, so it is one
/// ECPU.
pub fn lane_command(command: &str) -> bool {
    matches!(
        command,
        "set" | "get" | "evalsha" | "eval" | "hincrby" | "hget" | "hset" | "sadd" | "expire"
    )
}

fn round1(x: f64) -> Value {
    if x.is_finite() {
        json!((x * 10.0).round() / 10.0)
    } else {
        Value::Null
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// For each acknowledgement of probe events, the time until the probes' realtime total first reached the total
/// acknowledged by then (a send acknowledged out of order is measured against the running total, a close
/// upper bound).
fn freshness_ms(acks: &[Ack], visible: &[(Instant, u64)]) -> Vec<(Instant, f64)> {
    let mut acks = acks.to_vec();
    acks.sort_by_key(|a| a.at);
    acks.iter()
        .filter_map(|ack| {
            visible
                .iter()
                .find(|(at, n)| *at >= ack.at && *n >= ack.cumulative)
                .map(|(at, _)| (ack.at, at.duration_since(ack.at).as_secs_f64() * 1000.0))
        })
        .collect()
}

/// The freshness samples per second of the run (by the acknowledgement's time since `started`): the samples,
/// their median and their maximum. Where in the run the tail is — a burst that repeats shows as a period.
fn freshness_by_second(samples: &[(Instant, f64)], started: Instant) -> Vec<Value> {
    let mut seconds: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for (at, ms) in samples {
        let second = at.saturating_duration_since(started).as_secs();
        seconds.entry(second).or_default().push(*ms);
    }
    seconds
        .into_iter()
        .map(|(second, mut ms)| {
            ms.sort_by(f64::total_cmp);
            json!({"s": second, "n": ms.len(), "p50": round1(quantile(&ms, 0.5)), "max": round1(quantile(&ms, 1.0))})
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn freshness_is_paired_with_the_first_answer_that_counts_the_event_and_grouped_by_second() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let acks = [
            Ack {
                at: at(1_500),
                cumulative: 2,
            },
            Ack {
                at: at(100),
                cumulative: 1,
            },
            Ack {
                at: at(1_900),
                cumulative: 3,
            },
            // Never seen: no sample.
            Ack {
                at: at(2_500),
                cumulative: 9,
            },
        ];
        // An answer before an acknowledgement never counts for it, even with the count reached.
        let visible = [(at(50), 5), (at(120), 1), (at(1_600), 2), (at(2_400), 3)];
        let samples = freshness_ms(&acks, &visible);
        let ms: Vec<f64> = samples.iter().map(|(_, ms)| ms.round()).collect();
        assert_eq!(ms, [20.0, 100.0, 500.0]);
        let by = freshness_by_second(&samples, t0);
        assert_eq!(
            by,
            [
                json!({"s": 0, "n": 1, "p50": 20.0, "max": 20.0}),
                json!({"s": 1, "n": 2, "p50": 500.0, "max": 500.0}),
            ]
        );
    }

    #[test]
    fn every_command_the_apply_script_runs_is_a_lane_command() {
        // The script is the lanes' main cost: a command it runs that the meter files under readers would make
        // `plan --check` compare the model with too small a measurement.
        let script = include_str!("../../../functions/aws/src/apply.lua");
        let called: Vec<&str> = script
            .split("redis.call('")
            .skip(1)
            .filter_map(|rest| rest.split('\'').next())
            .collect();
        assert!(called.len() >= 5, "{called:?}");
        for command in called {
            assert!(
                lane_command(&command.to_ascii_lowercase()),
                "apply.lua runs {command}, which the meter does not count as the lanes'"
            );
        }
        assert!(!lane_command("hgetall") && !lane_command("smembers") && !lane_command("mget"));
    }

    use tokio::net::TcpListener;

    /// When the server received a POST, and its event ids.
    type Received = (Instant, Vec<String>);

    /// Reads one HTTP request (head and `Content-Length` body) from a connection.
    async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if body.len() >= len || n == 0 {
                    return body.to_owned();
                }
            }
            if n == 0 {
                return String::new();
            }
        }
    }

    fn options(collect_url: String) -> LoadOptions {
        LoadOptions {
            collect_url,
            query_url: String::new(),
            rate: 100.0,
            duration: Duration::from_secs(1),
            profile: Profile::parse(crate::DEFAULT_PROFILE).expect("default profile"),
            profile_file: None,
            seed: 1,
            connections: 2,
            aws_endpoint: None,
            key: None,
            origin: None,
            settle_timeout: Duration::from_secs(1),
            resend: Resend::default(),
        }
    }

    /// A fake collect on 127.0.0.1 serving `rounds` POSTs: it records each body's ids and answers what
    /// `answer(round, ids)` says (status line, extra headers, JSON body). Returns its URL, the bodies and the
    /// server task.
    async fn fake_collect(
        rounds: usize,
        answer: impl Fn(usize, &[String]) -> (&'static str, &'static str, Value) + Send + 'static,
    ) -> (
        String,
        Arc<Mutex<Vec<Received>>>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let bodies: Arc<Mutex<Vec<Received>>> = Arc::default();
        let server = {
            let bodies = bodies.clone();
            tokio::spawn(async move {
                for round in 0..rounds {
                    let (mut stream, _) = listener.accept().await.expect("accept");
                    let body = read_request(&mut stream).await;
                    let doc: Value = serde_json::from_str(&body).expect("a JSON body");
                    let ids: Vec<String> = doc
                        .as_array()
                        .expect("an array")
                        .iter()
                        .map(|e| e["id"].as_str().expect("id").to_owned())
                        .collect();
                    lock(&bodies).push((Instant::now(), ids.clone()));
                    let (status, extra, doc) = answer(round, &ids);
                    let doc = doc.to_string();
                    let response = format!(
                        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{doc}",
                        doc.len()
                    );
                    stream.write_all(response.as_bytes()).await.expect("write");
                }
            })
        };
        (url, bodies, server)
    }

    /// Sends one generated request (25 events) through the clients and waits until they are idle and the fake
    /// collect served all its rounds; returns the tally and the request's ids.
    async fn send_one(
        options: &LoadOptions,
        server: tokio::task::JoinHandle<()>,
    ) -> (Arc<Tally>, Vec<String>) {
        let tally = Arc::new(Tally::for_options(options));
        let (jobs, pending) = start_clients(options, &tally, &[]);
        let request = Generator::new(&options.profile, 9).next_request(now_ms());
        let all: Vec<String> = request.events.iter().map(|e| e.id.clone()).collect();
        assert_eq!(all.len(), 25);
        submit(&jobs, &pending, request.kind, request.events);
        wait_idle(&pending, Duration::from_secs(10)).await;
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("the fake collect was not sent all its rounds")
            .expect("server");
        (tally, all)
    }

    /// An acknowledgement "lost to a timeout": the client sends the same batch again whole, and the truth counts
    /// each id once.
    #[tokio::test]
    async fn resends_an_acknowledged_batch_whole_and_counts_it_once() {
        let (url, bodies, server) =
            fake_collect(2, |_, ids| ("202 Accepted", "", json!({"ids": ids}))).await;
        let mut options = options(url);
        options.resend = Resend::new(1.0, 0.0).expect("fractions");
        let (tally, all) = send_one(&options, server).await;
        let bodies = lock(&bodies).clone();
        assert_eq!(bodies.len(), 2, "sent, then sent again once (not forever)");
        assert_eq!(bodies[0].1, all);
        assert_eq!(bodies[1].1, all, "the same ids");
        assert_eq!(total(&lock(&tally.acked)), 25, "each id once");
        assert_eq!(tally.resent_acked_requests.load(Ordering::SeqCst), 1);
        assert_eq!(tally.resent_acked_events.load(Ordering::SeqCst), 25);
    }

    #[test]
    fn resend_fractions_are_checked_and_picking_is_deterministic() {
        assert!(Resend::new(1.5, 0.0).is_err());
        assert!(Resend::new(0.0, -0.1).is_err());
        assert!(Resend::new(f64::NAN, 0.0).is_err());
        let ids: Vec<String> = (0..20_000).map(|i| format!("lt-{i}")).collect();
        let share = ids.iter().filter(|id| picked(id, 0.05, 1)).count() as f64 / ids.len() as f64;
        assert!((0.04..0.06).contains(&share), "{share}");
        assert!(ids
            .iter()
            .all(|id| picked(id, 0.05, 1) == picked(id, 0.05, 1)));
        assert!(!ids.iter().any(|id| picked(id, 0.0, 1)));
        assert!(ids.iter().all(|id| picked(id, 1.0, 1)));
    }

    /// A `503` with `unwritten_ids`: the client resends exactly those events, after `Retry-After`, and counts
    /// the written ones once.
    #[tokio::test]
    async fn resends_only_the_unwritten_ids_after_retry_after() {
        let (url, bodies, server) = fake_collect(2, |round, ids| {
            if round == 0 {
                let (ok, again) = ids.split_at(ids.len() / 2);
                (
                    "503 Service Unavailable",
                    "Retry-After: 1\r\n",
                    json!({"ids": ok, "unwritten_ids": again}),
                )
            } else {
                ("202 Accepted", "", json!({"ids": ids}))
            }
        })
        .await;
        let options = options(url);
        let (tally, all) = send_one(&options, server).await;
        let bodies = lock(&bodies).clone();
        assert_eq!(bodies.len(), 2);
        assert_eq!(bodies[0].1, all);
        assert_eq!(bodies[1].1, all[12..].to_vec(), "only the unwritten ids");
        assert!(bodies[1].0.duration_since(bodies[0].0) >= Duration::from_millis(950));
        assert_eq!(total(&lock(&tally.acked)), 25);
        assert_eq!(tally.retries_503.load(Ordering::SeqCst), 1);
        assert_eq!(tally.resent_events.load(Ordering::SeqCst), 13);
        assert_eq!(tally.requests.load(Ordering::SeqCst), 2);
    }

    /// A gateway `502` (collect timed out, perhaps after writing the batch): the client resends the batch
    /// whole with the same ids and counts them once; before, they were written but never acknowledged, and the
    /// count check called them duplicates.
    #[tokio::test]
    async fn resends_the_whole_batch_after_a_server_error_other_than_503() {
        let (url, bodies, server) = fake_collect(2, |round, ids| {
            if round == 0 {
                (
                    "502 Bad Gateway",
                    "",
                    json!({"Message": "Internal Server Error"}),
                )
            } else {
                ("202 Accepted", "", json!({"ids": ids}))
            }
        })
        .await;
        let options = options(url);
        let (tally, all) = send_one(&options, server).await;
        let bodies = lock(&bodies).clone();
        assert_eq!(bodies.len(), 2, "sent, then once more");
        assert_eq!(bodies[1].1, all, "the whole batch, the same ids");
        assert_eq!(total(&lock(&tally.acked)), 25);
        assert_eq!(tally.resent_unknown.load(Ordering::SeqCst), 1);
        assert_eq!(tally.failed_events.load(Ordering::SeqCst), 0);
        assert_eq!(tally.retries_503.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn metered_attributes_dynamodb_by_caller_role() {
        let snapshot = json!({
            "kinesis": {"streams": {"s": {"records": 500, "bytes": 150000, "put_payload_units": 500,
                                          "put_requests": 40, "throttled_records": 0, "efo_bytes": 150000}}},
            "dynamodb": {"tables": {"metrics": {"write_units": 100.0, "read_units": 30.0, "failed_conditional_writes": 2,
                "callers": {"tally-lt-realtime": {"write_units": 60.0, "read_units": 10.0, "failed_conditional_writes": 2},
                            "tally-lt-deferred": {"write_units": 30.0, "read_units": 0.0},
                            "tally-lt-query": {"write_units": 0.0, "read_units": 20.0}}}}},
            "lambda": {"functions": {"tally-lt-collect": {"invocations": 40, "gb_seconds": 2.0, "memory_mb": 256, "log_bytes": 250}}},
            "mappings": {"u": {"function": "tally-lt-realtime", "kind": "enhanced-fan-out", "invocations": 10, "records": 500,
                               "shards": {"a": {"invocations": 6, "cycle_ms": 100.0, "busy_ms": 300},
                                          "b": {"invocations": 4, "cycle_ms": 50.0, "busy_ms": 200}}}},
            "s3": {"buckets": {}},
        });
        let m = metered(&snapshot, 1000, 10.0, 100.0, 2, 0);
        assert_eq!(m["events_per_sec"], 100.0);
        assert_eq!(m["kinesis"]["on_demand_kb"], 0);
        assert_eq!(m["kinesis"]["events_per_record"], 2.0);
        assert_eq!(m["kinesis"]["put_units_per_event"], 0.5);
        assert_eq!(m["dynamodb"]["write_units"], 90.0, "realtime + deferred");
        assert_eq!(m["dynamodb"]["read_units"], 10.0, "query left out");
        assert_eq!(m["dynamodb"]["by_lane"]["query"]["read_units"], 20.0);
        assert_eq!(m["dynamodb"]["by_lane"]["other"]["write_units"], 10.0);
        assert_eq!(m["dynamodb"]["failed_conditional_writes"], 2);
        assert_eq!(
            m["lambda"]["by_function"]["collect"]["invocations_per_event"],
            0.04
        );
        assert_eq!(
            m["lambda"]["by_function"]["collect"]["log_bytes_per_event"],
            0.25
        );
        let lane = &m["lanes"]["realtime"];
        assert_eq!(lane["records_per_invocation"], 50.0);
        assert_eq!(lane["events_per_invocation"], 100.0);
        assert_eq!(lane["cycle_ms"], 80.0, "weighted by invocations");
        assert_eq!(lane["busy_ms_per_invocation"], 50.0);
    }

    #[test]
    fn record_ages_are_read_from_the_snapshots_buckets() {
        // As the meter writes them: each bucket's upper bound (ms) as a key, its count as the value.
        let ages = Ages::of(&json!({"3": 2, "5": 1, "250": 1, "4400": 1}));
        assert_eq!(ages.count(), 5);
        assert_eq!(ages.quantile(0.0), Some(3));
        assert_eq!(ages.quantile(0.5), Some(5));
        assert_eq!(ages.quantile(0.75), Some(250));
        assert_eq!(ages.quantile(1.0), Some(4_400), "numeric order, not text");
        assert_eq!(Ages::of(&Value::Null).quantile(0.5), None);
    }

    #[test]
    fn durations_take_seconds_or_minutes() {
        assert_eq!(duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("0s").is_err());
        assert!(duration("2d").expect_err("no days").contains("30s or 2m"));
        assert!(duration("25h").is_err());
    }

    #[test]
    fn lost_and_duplicated_combine_the_lanes_per_key() {
        let key = |c: &str| (c.to_owned(), "click".to_owned());
        let acked = Counts::from([(key("a"), 10), (key("b"), 5)]);
        let realtime = Counts::from([(key("a"), 8), (key("b"), 6)]);
        let settled = Counts::from([(key("a"), 9), (key("b"), 5), (key("c"), 1)]);
        // a: 2 missing from realtime (1 from settled) → 2; b: 1 extra in realtime; c: never sent → 1 extra.
        assert_eq!(combine(&acked, &realtime, &settled), (2, 2));
        assert_eq!(compare(&acked, &realtime), (2, 1, 14));
        assert_eq!(combine(&acked, &acked, &acked), (0, 0));
    }

    #[test]
    fn small_user_pools_are_refused() {
        let mut p = Profile::parse(crate::DEFAULT_PROFILE).expect("default profile");
        assert!(check_user_pool(&p, 2000.0).is_ok());
        p.users = 100;
        let err = check_user_pool(&p, 2000.0).expect_err("too few users");
        assert!(err.contains("users = 100 is too small"), "{err}");
    }
}
