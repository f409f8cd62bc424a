//! The compactor end to end against a real `valkey-server` and `moto_server`: batches applied to both lanes
//! over three shards, runs at chosen times (before the minutes close, after the realtime lane closes them,
//! after the settled lane does, twice at once), series read across the seam, and the cache losing all its
//! data after compaction.

use std::collections::BTreeMap;
use std::time::Duration;

use lambda_runtime::{Context, LambdaEvent};
use tally_aws::compacted::{read_series, read_settled, CompactedTable, MinuteItems};
use tally_aws::store::{CounterStore, StoreConfig};
use tally_compactor::Compactor;
use tally_domain::compact::{CompactPolicy, Span, Watermark, MINUTE_MS};
use tally_domain::event::{DeviceClass, Event, EventKind};
use tally_domain::exactly_once::{Batch, DedupWindow, Position, Tally};
use tally_domain::hll::Hll;
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::StoreLane;
use tally_domain::totals::{ALL_ADS, ALL_CAMPAIGNS};
use tally_testkit::{LocalAwsEndpoint, Moto, Valkey};

mod progress;
mod repair;

/// A minute boundary (2026-11-26).
const NOW: i64 = 1_795_698_000_000;

fn event(i: usize) -> Event {
    let kind = EventKind::ALL[i % 4];
    Event {
        id: format!("e{i}"),
        kind,
        campaign_id: format!("c{}", (i / 2) % 2),
        ad_id: format!("a{}", i % 3),
        placement_id: None,
        user_id: Some(format!("user-{}", i % 17)),
        client_ts_ms: None,
        received_ms: NOW + ((i % 2) as i64) * MINUTE_MS + 7,
        cost_micros: 10 * i as u64 + 1,
        value_micros: if kind == EventKind::Conversion {
            1_000
        } else {
            0
        },
        country: None,
        device: DeviceClass::Unknown,
        trust: tally_domain::event::Trust::Authenticated,
        user_agent: None,
    }
}

fn valid(e: &Event) -> bool {
    !e.cost_micros.is_multiple_of(3)
}

type Truth = [BTreeMap<(String, String, i64), Tally>; 2];

/// Events `0..n` over three shards (every fourth one resent on a second shard), both lanes, each batch
/// delivered twice; the truth per lane from the distinct ids.
async fn fill(store: &CounterStore, n: usize) -> Truth {
    for shard in 0..3 {
        let id = format!("shardId-{shard:012}");
        let mut batch = Batch::new();
        for r in 0..3 {
            let events = (0..n)
                .filter(|i| i % 3 == r && (i % 3 == shard || i % 4 == 0))
                .map(event)
                .collect();
            let position = Position::new(&id, &(200 + r).to_string()).expect("position");
            batch.push_record(position, events).expect("in order");
        }
        for lane in StoreLane::ALL {
            store.register_shard(lane, &id).await.expect("register");
            for _ in 0..2 {
                let keep = |e: &Event| lane == StoreLane::Realtime || valid(e);
                store.process(lane, &batch, keep).await.expect("applies");
            }
        }
    }
    let mut truth = Truth::default();
    for e in (0..n).map(event) {
        for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
            if lane == StoreLane::Realtime || valid(&e) {
                truth[l]
                    .entry((
                        e.campaign_id.clone(),
                        e.ad_id.clone(),
                        minute_of(e.received_ms),
                    ))
                    .or_default()
                    .add(&e);
            }
        }
    }
    truth
}

/// Where the metrics table lives: `moto_server`, or the local cloud's AWS endpoint in memory — whose conditional
/// writes are atomic, as DynamoDB's are. moto's are not: two concurrent `UpdateItem`s of one item with the same
/// condition can both pass (and one increment be lost or added twice), so a test of concurrent compactor runs
/// on moto fails now and then for moto's reason, not ours.
enum Aws {
    Moto(Moto),
    Local(LocalAwsEndpoint),
}

impl Aws {
    fn endpoint(&self) -> String {
        match self {
            Aws::Moto(m) => m.endpoint(),
            Aws::Local(l) => l.endpoint(),
        }
    }
}

/// A connection source to `server`: plain, no counter TTL, 5 s timeouts.
async fn source(server: &Valkey) -> tally_aws::cache_auth::StoreSource {
    tally_aws::cache_auth::StoreSource::connect(
        tally_aws::store::CacheEnv::plain(server.addr()),
        0,
        Duration::from_secs(5),
        None,
    )
    .await
    .expect("connect")
}

struct Setup {
    server: Valkey,
    _aws: Aws,
    store: CounterStore,
    table: CompactedTable,
    compactor: Compactor,
}

async fn setup() -> Setup {
    setup_on(Aws::Moto(Moto::start())).await
}

async fn setup_on(aws: Aws) -> Setup {
    let server = Valkey::start();
    let store = CounterStore::connect(&StoreConfig {
        nodes: vec![server.url()],
        credentials: None,
        window: DedupWindow::default(),
        counter_ttl_secs: 0,
        timeout: Duration::from_secs(5),
    })
    .await
    .expect("connect");
    let client =
        aws_sdk_dynamodb::Client::new(&tally_aws_testing::sdk_config(&aws.endpoint()).await);
    tally_aws_testing::create_metrics_table(&client, "metrics").await;
    let table = CompactedTable::new(client, "metrics");
    let source = source(&server).await;
    let compactor =
        Compactor::new(source, table.clone(), CompactPolicy::default()).expect("policy");
    Setup {
        server,
        _aws: aws,
        store,
        table,
        compactor,
    }
}

/// Every lane's series of every campaign over minutes around the data, across the seam.
async fn series(s: &Setup, from: i64, to: i64) -> Truth {
    series_of(&s.table, &s.store, from, to).await
}

/// Every lane's series of campaigns `c0` and `c1`, minutes `from..=to`, as readers serve it (the repair tests
/// read through the same).
async fn series_of(table: &CompactedTable, store: &CounterStore, from: i64, to: i64) -> Truth {
    let wm = table.watermark().await.expect("watermark");
    let mut out = Truth::default();
    for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
        for c in ["c0", "c1"] {
            let cells = read_series(
                &MinuteItems::unshared(table, c),
                store,
                &wm,
                lane,
                c,
                from,
                to,
            )
            .await
            .expect("series");
            for ((ad, minute), t) in cells {
                out[l].insert((c.to_owned(), ad, minute), t);
            }
        }
    }
    out
}

/// The TTL (`TTL` in seconds, -1 for none) of every index set of `minute` in both lanes and of every hash it
/// lists.
fn minute_ttls(s: &Setup, minute: i64) -> Vec<(String, i64)> {
    let ttl = |key: &str| match s.server.command(&["TTL", key]).expect("TTL") {
        tally_testkit::Reply::Integer(t) => t,
        other => panic!("TTL {key}: {other:?}"),
    };
    let mut out = Vec::new();
    for lane in StoreLane::ALL {
        for shard in 0..3 {
            let shard = format!("shardId-{shard:012}");
            let index = tally_domain::store_keys::index_key(lane, &shard, minute);
            let members = match s.server.command(&["SMEMBERS", &index]).expect("SMEMBERS") {
                tally_testkit::Reply::Array(m) => m,
                other => panic!("SMEMBERS {index}: {other:?}"),
            };
            for m in members {
                let tally_testkit::Reply::Bulk(Some(c)) = m else {
                    panic!("member {m:?}")
                };
                let key = tally_domain::store_keys::counter_key(lane, &shard, &c, minute);
                out.push((key.clone(), ttl(&key)));
            }
            match ttl(&index) {
                -2 => {} // no such set: the shard had nothing of this lane in the minute
                t => out.push((index.clone(), t)),
            }
        }
    }
    out
}

#[tokio::test]
async fn compactor_closes_minutes_and_the_seam_holds() {
    let s = setup().await;
    let truth = fill(&s.store, 120).await;
    let m0 = minute_of(NOW);
    let (from, to) = (m0 - 5, m0 + 5);
    let end = (m0 + 2) * MINUTE_MS; // the end of the last minute with data

    // Before the minutes close: the first run looks back an hour and finds nothing.
    let o = s.compactor.process(end + 30_000).await.expect("run");
    assert_eq!(
        (o.items, o.to.realtime, o.to.settled),
        (0, Some(m0 - 1), Some(m0 - 9))
    );
    assert_eq!(series(&s, from, to).await, truth);

    // The realtime lane has closed both minutes: realtime final, settled not yet.
    let o = s
        .compactor
        .process(end + 2 * MINUTE_MS + 1)
        .await
        .expect("run");
    assert_eq!((o.minutes, o.items, o.settled_final), (4, 4, 2), "{o:?}");
    assert_eq!(
        o.to,
        Watermark {
            realtime: Some(m0 + 1),
            settled: Some(m0 - 7)
        }
    );
    let items = s.table.items("c0", from, to).await.expect("items");
    assert_eq!(items.len(), 2);
    assert!(items.iter().all(|i| !i.settled_final));
    assert_eq!(series(&s, from, to).await, truth);
    // Not settled-final: the minutes' keys keep the lanes' expiry (none in this set-up).
    let before = minute_ttls(&s, m0);
    assert!(before.len() > 6, "{before:?}");
    assert!(before.iter().all(|(_, t)| *t == -1), "{before:?}");

    // Two compactors at once, after the settled lane closed them too: the same items, one watermark.
    let at = end + 10 * MINUTE_MS + 1;
    let (a, b) = tokio::join!(s.compactor.process(at), s.compactor.process(at));
    let (a, b) = (a.expect("run a"), b.expect("run b"));
    assert_eq!(a.to, b.to);
    assert_eq!(
        a.to,
        Watermark {
            realtime: Some(m0 + 9),
            settled: Some(m0 + 1)
        }
    );
    let items = s.table.items("c1", from, to).await.expect("items");
    assert!(
        items.len() == 2 && items.iter().all(|i| i.settled_final),
        "{items:?}"
    );
    assert_eq!(series(&s, from, to).await, truth);
    // Settled-final: the compactor let both minutes go — every key expires within FOLDED_TTL_SECS.
    let folded = tally_domain::compact::FOLDED_TTL_SECS as i64;
    for minute in [m0, m0 + 1] {
        let after = minute_ttls(&s, minute);
        assert!(after.len() > 6, "{after:?}");
        assert!(
            after
                .iter()
                .all(|(_, t)| (folded - 10..=folded).contains(t)),
            "minute {minute}: {after:?}"
        );
    }

    // A run with nothing new changes nothing.
    let o = s.compactor.process(at).await.expect("run");
    assert_eq!((o.minutes, o.items, o.from, o.to), (0, 0, a.to, a.to));

    // The cache loses everything: the compacted minutes still read right.
    s.server.command(&["FLUSHALL"]).expect("flush");
    assert_eq!(series(&s, from, to).await, truth);
}

/// Once the settled lane has closed an hour and a day, the compactor writes their roll-up items: both lanes'
/// counts summed from the minute items and each ad's unique users merged from every shard's registers; the
/// settled series at hour and day resolution read from them equal the truth, also after the cache lost
/// everything.
#[tokio::test]
async fn closed_hours_and_days_get_rollups_with_unique_users() {
    let s = setup().await;
    let truth = fill(&s.store, 120).await;
    let mut users: BTreeMap<(String, String), Hll> = BTreeMap::new();
    for e in (0..120).map(event).filter(valid) {
        users
            .entry((e.campaign_id.clone(), e.ad_id.clone()))
            .or_default()
            .insert(e.user_id.as_deref().unwrap_or("").as_bytes());
    }
    let m0 = minute_of(NOW);
    let (hour, day) = (Span::Hour.bucket(m0), Span::Day.bucket(m0));
    let policy = CompactPolicy {
        first_run_minutes: 1500,
        max_minutes_per_run: 1500,
        ..CompactPolicy::default()
    };
    let source = source(&s.server).await;
    let compactor = Compactor::new(source, s.table.clone(), policy).expect("policy");
    // The end of the day, past the settled grace: every minute of it is settled-final in one run.
    let at = (day + 1440) * MINUTE_MS + 10 * MINUTE_MS + 1;
    let o = compactor.process(at).await.expect("run");
    assert!(o.to.settled >= Some(day + 1439), "{o:?}");
    assert_eq!(
        o.rollups, 6,
        "an hour and a day item for each of c0, c1 and all campaigns (`*`): {o:?}"
    );
    let wm = s.table.watermark().await.expect("watermark");
    let settled = |span: Span, bucket: i64| {
        let (s, wm) = (&s, &wm);
        async move {
            let mut out: BTreeMap<(String, String), (Tally, Hll)> = BTreeMap::new();
            for c in ["c0", "c1"] {
                let cells = read_settled(
                    &MinuteItems::unshared(&s.table, c),
                    &s.store,
                    wm,
                    c,
                    span,
                    bucket,
                    bucket,
                    0,
                    None,
                )
                .await
                .expect("settled");
                for ((ad, b), cell) in cells {
                    assert_eq!(b, bucket);
                    out.insert((c.to_owned(), ad), cell);
                }
            }
            out
        }
    };
    let mut want: BTreeMap<(String, String), (Tally, Hll)> = BTreeMap::new();
    for ((c, ad, _), t) in &truth[1] {
        let cell = want.entry((c.clone(), ad.clone())).or_default();
        cell.0.merge(t);
        cell.1 = users[&(c.clone(), ad.clone())].clone();
    }
    assert!(want.values().all(|(_, h)| h.estimate() > 0));
    let items = s
        .table
        .span_items(Span::Hour, "c0", hour, hour)
        .await
        .expect("hour items");
    assert_eq!(items.len(), 1);
    assert!(
        items[0].settled_final && !items[0].users.is_empty(),
        "{items:?}"
    );
    assert_eq!(settled(Span::Hour, hour).await, want);
    assert_eq!(settled(Span::Day, day).await, want);
    // The all-campaigns day item: every campaign's settled counts summed, their users' union.
    let all = s
        .table
        .span_items(Span::Day, ALL_CAMPAIGNS, day, day)
        .await
        .expect("all-campaigns day item");
    assert_eq!(all.len(), 1);
    let mut want_all = Tally::default();
    for t in truth[1].values() {
        want_all.merge(t);
    }
    let mut want_users = Hll::new();
    for e in (0..120).map(event).filter(valid) {
        want_users.insert(e.user_id.as_deref().unwrap_or("").as_bytes());
    }
    assert_eq!(all[0].ads[ALL_ADS].settled, want_all);
    assert_eq!(
        all[0].campaign_users().estimate(),
        want_users.estimate(),
        "17 users over both campaigns"
    );
    // A second run at the same time writes nothing new; the cache losing everything changes no answer.
    assert_eq!(compactor.process(at).await.expect("run").rollups, 0);
    s.server.command(&["FLUSHALL"]).expect("flush");
    assert_eq!(settled(Span::Hour, hour).await, want);
    assert_eq!(settled(Span::Day, day).await, want);
    // Minute m0 from its minute items: the (campaign, ad) cells the truth has then.
    assert_eq!(
        settled(Span::Minute, m0).await.len(),
        truth[1].keys().filter(|(_, _, m)| *m == m0).count()
    );
}

/// The realtime lane's counts per campaign of a day, summed from the truth.
fn day_truth(truth: &Truth) -> BTreeMap<String, Tally> {
    let mut out: BTreeMap<String, Tally> = BTreeMap::new();
    for ((c, _, _), t) in &truth[0] {
        out.entry(c.clone()).or_default().merge(t);
    }
    out
}

/// The day rows (the campaign table's ranking) hold each campaign's realtime counts once, however often the
/// runs repeat (two at once, a later one re-writing the minutes with settled counts); the all-campaigns
/// minute items hold every campaign's counts summed.
#[tokio::test]
async fn day_rows_and_all_campaigns_items_count_every_minute_once() {
    // Two runs at once update the same day rows concurrently: on an endpoint whose conditions are atomic.
    let s = setup_on(Aws::Local(LocalAwsEndpoint::start())).await;
    let truth = fill(&s.store, 120).await;
    let m0 = minute_of(NOW);
    let day = Span::Day.bucket(m0);
    let end = (m0 + 2) * MINUTE_MS;
    assert!(s.table.day_totals(day).await.expect("rows").is_empty());
    for at in [end + 2 * MINUTE_MS + 1, end + 10 * MINUTE_MS + 1] {
        let (a, b) = tokio::join!(s.compactor.process(at), s.compactor.process(at));
        a.expect("run a");
        b.expect("run b");
        assert_eq!(
            s.table.day_totals(day).await.expect("rows"),
            day_truth(&truth),
            "after the runs at {at}"
        );
    }
    // A retried run's increments (a crash after the writes, before the watermark moved) add nothing.
    tally_aws::metrics_write::MetricsWriter::of(&s.table)
        .add_day_totals(&tally_domain::totals::day_increments(
            &s.table.items("c0", m0, m0 + 1).await.expect("items"),
            None,
        ))
        .await
        .expect("a repeated increment is refused, not added");
    assert_eq!(
        s.table.day_totals(day).await.expect("rows"),
        day_truth(&truth)
    );
    let all = s
        .table
        .items(ALL_CAMPAIGNS, m0 - 5, m0 + 5)
        .await
        .expect("all-campaigns items");
    assert_eq!(all.len(), 2, "{all:?}");
    for item in &all {
        let mut want = [Tally::default(), Tally::default()];
        for (l, lane_truth) in truth.iter().enumerate() {
            for ((_, _, m), t) in lane_truth {
                if *m == item.minute {
                    want[l].merge(t);
                }
            }
        }
        assert_eq!(
            item.ads[ALL_ADS].realtime, want[0],
            "minute {}",
            item.minute
        );
        assert_eq!(item.ads[ALL_ADS].settled, want[1], "minute {}", item.minute);
        assert!(item.settled_final);
    }
}

#[tokio::test]
async fn the_handler_runs_on_a_schedule_event() {
    let s = setup().await;
    let payload = serde_json::from_str(
        r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa","detail-type":"Scheduled Event",
            "source":"aws.events","account":"123456789012","time":"2026-11-26T11:00:00Z","region":"us-east-1",
            "resources":["arn:aws:events:us-east-1:123456789012:rule/tally-compactor"],"detail":{}}"#,
    )
    .expect("a schedule event");
    let reply = tally_compactor::handler(
        &s.compactor,
        LambdaEvent {
            payload,
            context: Context::default(),
        },
    )
    .await
    .expect("runs");
    assert_eq!(reply["items"], 0);
    assert!(reply["realtime_watermark"].is_i64(), "{reply}");
    // The stored watermark is the one reported.
    let wm = s.table.watermark().await.expect("watermark");
    assert_eq!(reply["realtime_watermark"].as_i64(), wm.realtime);
}

/// The index rows the compactor writes expire the stack's window (`campaign_index_days`, here 1 day) after
/// the campaign's last event: listed until then, not after (the row itself is still stored until DynamoDB's
/// TTL deletes it), and the compactor's own roll-ups read only the live rows.
#[tokio::test]
async fn the_index_lists_campaigns_active_within_its_window() {
    const DAY_MS: i64 = 86_400_000;
    let s = setup().await;
    fill(&s.store, 120).await;
    let source = source(&s.server).await;
    let compactor = Compactor::new(source, s.table.clone(), CompactPolicy::default())
        .expect("policy")
        .with_campaign_index_days(1);
    let m0 = minute_of(NOW);
    let o = compactor
        .process((m0 + 4) * MINUTE_MS + 1)
        .await
        .expect("run");
    assert!(o.items > 0, "{o:?}");
    let index = s.table.metrics();
    let listed = |at: i64| {
        let index = index.clone();
        async move {
            index
                .campaigns_at(at)
                .await
                .expect("index")
                .into_iter()
                .map(|c| c.campaign_id)
                .collect::<Vec<_>>()
        }
    };
    // Both campaigns were last seen in minute m0 + 1 (the index records the compacted minute's span); the
    // rows expire a day after, to the second.
    let stored = index.campaigns().await.expect("stored");
    let last = stored.iter().map(|c| c.last_seen_ms).max().expect("rows");
    assert_eq!(minute_of(last), m0 + 1, "{stored:?}");
    let expires_ms = (last / 1000) * 1000 + DAY_MS;
    assert_eq!(listed(NOW).await, ["c0", "c1"]);
    assert_eq!(listed(expires_ms - 1).await, ["c0", "c1"]);
    assert_eq!(listed(expires_ms).await, Vec::<String>::new());
    assert_eq!(index.campaigns().await.expect("stored").len(), 2);
}
