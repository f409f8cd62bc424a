//! Requests, and a world with known contents put where the pipeline puts them: realtime events applied to a
//! real `valkey-server` through `CounterStore::process` (records with positions, claims, the fence), closed
//! minutes folded into the metrics table (in `moto_server`) by the real compactor; the settled lane applied
//! the same way (the same records, the valid events kept), its closed minutes, hours and days compacted too.

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::CompactedTable;
use tally_aws::metrics::MetricsTable;
use tally_aws::store::{CacheEnv, CounterStore};
use tally_compactor::Compactor;
use tally_domain::compact::{CompactPolicy, Watermark};
use tally_domain::event::{Event, RawEvent};
use tally_domain::exactly_once::{Batch, Position, Tally};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::StoreLane;
use tally_query::{Auth, Query};
use tally_testkit::{LocalAwsEndpoint, Moto, Valkey};

pub const TABLE: &str = "metrics";

/// 2026-11-26T13:30:45Z: "now" in these tests.
pub const NOW_MS: i64 = 1_795_699_845_000;
/// The minute of [`NOW_MS`] (13:30).
pub const NOW_MINUTE: i64 = NOW_MS / 60_000;
/// The last minute the compactor closes at [`NOW_MS`] (the default realtime grace of two minutes): 13:27.
pub const COMPACTED_TO: i64 = NOW_MINUTE - 3;

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

/// Shard `n`'s records (each a list of events), in order.
pub type ShardRecords = (u32, Vec<Vec<Event>>);

/// The shard id of shard `n`.
pub fn shard(n: u32) -> String {
    format!("shardId-{n:012}")
}

/// The AWS endpoint of a world: moto, or the local cloud's (big tables).
#[allow(dead_code)] // held for its drop
enum Endpoint {
    Moto(Moto),
    Local(LocalAwsEndpoint),
}

/// A moto (or the local cloud's AWS endpoint) with the metrics table and a valkey-server, both empty.
pub struct World {
    _aws: Endpoint,
    pub valkey: Valkey,
    pub config: aws_config::SdkConfig,
    /// A connection for seeding and inspecting the counter store.
    pub store: CounterStore,
}

impl World {
    pub async fn start() -> World {
        let moto = Moto::start();
        let endpoint = moto.endpoint();
        World::on(Endpoint::Moto(moto), &endpoint).await
    }

    /// A world on the local cloud's AWS endpoint instead of moto: its DynamoDB answers in memory, so a table
    /// of 10,000 campaigns is seeded and read in seconds.
    pub async fn start_local() -> World {
        let aws = LocalAwsEndpoint::start();
        let endpoint = aws.endpoint();
        World::on(Endpoint::Local(aws), &endpoint).await
    }

    async fn on(aws: Endpoint, endpoint: &str) -> World {
        let valkey = Valkey::start();
        let config = sdk_config(endpoint).await;
        tally_aws_testing::create_metrics_table(&aws_sdk_dynamodb::Client::new(&config), TABLE)
            .await;
        let store = source(&valkey).await.get().await.expect("a store");
        World {
            _aws: aws,
            valkey,
            config,
            store,
        }
    }

    /// The local AWS endpoint's meter (a world started with [`World::start_local`]).
    pub fn meter(&self) -> Option<&tally_localcloud_aws::meter::Meter> {
        match &self._aws {
            Endpoint::Local(aws) => Some(aws.meter()),
            Endpoint::Moto(_) => None,
        }
    }

    /// Read units charged on the metrics table since the meter was last reset.
    pub fn read_units(&self) -> f64 {
        let meter = self.meter().expect("a world on the local AWS endpoint");
        meter
            .snapshot()
            .dynamodb
            .tables
            .get(TABLE)
            .map_or(0.0, |t| t.totals.read_units)
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config)
    }

    /// The query function over this world, as its `main` builds it.
    pub async fn query(&self, auth: Auth) -> Query {
        Query::new(self.dynamodb(), TABLE, source(&self.valkey).await, auth)
    }

    pub fn metrics(&self) -> MetricsTable {
        MetricsTable::new(self.dynamodb(), TABLE)
    }

    pub fn compacted(&self) -> CompactedTable {
        CompactedTable::new(self.dynamodb(), TABLE)
    }

    /// Applies `records` (sequence numbers `first_seq`, `first_seq + 1`, …) of shard `n` to the realtime
    /// lane, as the realtime function does; each batch is delivered twice (a Lambda retry).
    pub async fn realtime(&self, n: u32, first_seq: u64, records: Vec<Vec<Event>>) {
        let id = shard(n);
        let mut batch = Batch::new();
        for (i, events) in records.into_iter().enumerate() {
            let position =
                Position::new(&id, &(first_seq + i as u64).to_string()).expect("position");
            batch
                .push_record(position, events)
                .expect("records in order");
        }
        for _ in 0..2 {
            self.store
                .process(StoreLane::Realtime, &batch, |_| true)
                .await
                .expect("the realtime lane applies");
        }
    }

    /// Applies the same `records` of shard `n` to the settled lane, as the deferred function does: the same
    /// claims (so the occurrence the realtime lane counted is the one settled), the events `valid` accepts
    /// kept; delivered twice.
    pub async fn settled(
        &self,
        n: u32,
        first_seq: u64,
        records: Vec<Vec<Event>>,
        valid: impl Fn(&Event) -> bool,
    ) {
        let id = shard(n);
        let mut batch = Batch::new();
        for (i, events) in records.into_iter().enumerate() {
            let position =
                Position::new(&id, &(first_seq + i as u64).to_string()).expect("position");
            batch
                .push_record(position, events)
                .expect("records in order");
        }
        for _ in 0..2 {
            self.store
                .process(StoreLane::Settled, &batch, &valid)
                .await
                .expect("the settled lane applies");
        }
    }

    /// One run of the real compactor at `now_ms`, looking back `first_run_minutes` on its first run.
    pub async fn compact(&self, now_ms: i64, first_run_minutes: i64) -> Watermark {
        let policy = CompactPolicy {
            first_run_minutes,
            max_minutes_per_run: first_run_minutes.max(60),
            ..CompactPolicy::default()
        };
        let compactor = Compactor::new(source(&self.valkey).await, self.compacted(), policy)
            .expect("a valid policy");
        compactor.process(now_ms).await.expect("compacts").to
    }

    /// The live counter hash of a campaign's minute on shard `n` (realtime lane).
    pub fn counter_key(&self, n: u32, campaign: &str, minute: i64) -> String {
        tally_domain::store_keys::counter_key(StoreLane::Realtime, &shard(n), campaign, minute)
    }
}

/// A connection to `valkey` as the functions make theirs (plain TCP, no TTL on counters, 5 s timeout).
pub async fn source(valkey: &Valkey) -> StoreSource {
    StoreSource::connect(
        CacheEnv::plain(valkey.addr()),
        0,
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("connects to valkey")
}

/// The truth of the realtime lane: each distinct event id once (its first occurrence), per (campaign, ad,
/// minute).
pub fn truth<'a>(
    events: impl IntoIterator<Item = &'a Event>,
) -> BTreeMap<(String, String, i64), Tally> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out: BTreeMap<(String, String, i64), Tally> = BTreeMap::new();
    for e in events {
        if seen.insert(e.id.clone()) {
            out.entry((
                e.campaign_id.clone(),
                e.ad_id.clone(),
                minute_of(e.received_ms),
            ))
            .or_default()
            .add(e);
        }
    }
    out
}

/// Minutes the fixed world's compactor looks back on its first run: 26 hours, so winter's impression of
/// yesterday is compacted.
pub const LOOKBACK_MINUTES: i64 = 26 * 60;

/// The fixed traffic of these tests, realtime lane as records per shard:
/// * `summer` on shard 0: 3 impressions (users a, b, a) and 1 click at now-5 min on ads `banner` and
///   `video`; 2 impressions and 1 conversion at now-2 min. Shard 1 resends `s1` (now stamped now-2 min) and
///   shard 0 resends `s4` in a later record: neither counts again.
/// * `winter` on shard 1: 1 impression yesterday (25 hours ago).
///
/// Settled lane: `s1` and `s3` (user a) at now-5 min (the ids [`SETTLED`] names: the others are invalid).
pub fn traffic() -> (Vec<ShardRecords>, Vec<Event>) {
    let realtime = vec![
        (
            0,
            vec![
                vec![
                    event("s1", "impression", "summer", "banner", Some("a"), 5, 1000),
                    event("s2", "impression", "summer", "banner", Some("b"), 5, 1000),
                    event("s3", "impression", "summer", "video", Some("a"), 5, 3000),
                    event("s4", "click", "summer", "banner", Some("a"), 5, 0),
                ],
                vec![
                    event("s5", "impression", "summer", "video", None, 2, 3000),
                    event("s6", "impression", "summer", "video", None, 2, 3000),
                    event("s7", "conversion", "summer", "banner", Some("b"), 2, 0),
                    event("s4", "click", "summer", "banner", Some("a"), 2, 0),
                ],
            ],
        ),
        (
            1,
            vec![vec![
                event("w1", "impression", "winter", "sky", Some("z"), 25 * 60, 500),
                event("s1", "impression", "summer", "banner", Some("a"), 2, 1000),
            ]],
        ),
    ];
    let settled = vec![
        event("s1", "impression", "summer", "banner", Some("a"), 5, 1000),
        event("s3", "impression", "summer", "video", Some("a"), 5, 3000),
    ];
    (realtime, settled)
}

/// The ids the settled lane finds valid in [`traffic`].
pub const SETTLED: [&str; 2] = ["s1", "s3"];

/// A world holding [`traffic`]: both lanes applied to valkey (the settled lane keeping [`SETTLED`]), then the
/// compactor run at [`NOW_MS`] (realtime minutes up to [`COMPACTED_TO`] — summer's now-5 min, winter's
/// yesterday — are compacted items; summer's now-2 min stays live in valkey, and so do the settled lane's
/// last ten minutes).
pub async fn filled_world() -> World {
    filled_world_with(Vec::new(), &[], LOOKBACK_MINUTES).await
}

/// [`filled_world`] with more records (sequence numbers from 900 on their shard), whose events with the
/// ids in `valid` settle, compacted looking back `lookback` minutes.
pub async fn filled_world_with(extra: Vec<ShardRecords>, valid: &[&str], lookback: i64) -> World {
    fill(World::start().await, extra, valid, lookback).await
}

/// [`filled_world_with`] on the local cloud's AWS endpoint ([`World::start_local`]).
pub async fn filled_local_world_with(
    extra: Vec<ShardRecords>,
    valid: &[&str],
    lookback: i64,
) -> World {
    fill(World::start_local().await, extra, valid, lookback).await
}

async fn fill(world: World, extra: Vec<ShardRecords>, valid: &[&str], lookback: i64) -> World {
    let (realtime, _) = traffic();
    let keep = |e: &Event| SETTLED.contains(&e.id.as_str()) || valid.contains(&e.id.as_str());
    for (first_seq, (n, records)) in realtime
        .into_iter()
        .map(|r| (100, r))
        .chain(extra.into_iter().map(|r| (900, r)))
    {
        world.realtime(n, first_seq, records.clone()).await;
        world.settled(n, first_seq, records, keep).await;
    }
    let watermark = world.compact(NOW_MS, lookback).await;
    assert_eq!(watermark.realtime, Some(COMPACTED_TO), "{watermark:?}");
    world
}
