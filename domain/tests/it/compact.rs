//! Compaction and the seam, simulated against the store model.
//!
//! Records arrive over about ten minutes on a few shards; some bodies reach two shards (a client's resend) and
//! some records are redelivered. Both lanes apply every record within their lag (below their grace period),
//! each shard in order. A compactor runs at random times (sometimes twice at once) with [`plan_run`], folding
//! the model's counters into [`CompactedItem`]s kept in a map that plays the table. Whenever a reader looks,
//! every series read across the seam ([`split_at_seam`]: items up to the watermark, the model's counters
//! after) equals the counters the store holds; in the end it equals the rollup of the distinct ids (the
//! valid ones for the settled lane), and still does for the compacted minutes after the store lost all its
//! data. Item sizes of the chosen encoding against the alternatives are measured at the end.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tally_billing::dynamodb::item_size;
use tally_domain::compact::{
    encode_ads, lane_progress, plan_run, split_at_seam, CompactPolicy, CompactedItem, LaneProgress,
    ShardProgress, Watermark, MINUTE_MS, RECEIVE_TO_ARRIVAL_MAX_MS,
};
use tally_domain::event::{Event, EventKind};
use tally_domain::exactly_once::{Batch, DedupWindow, Position, Tally};
use tally_domain::rollup::minute_of;
use tally_domain::store_keys::StoreLane;
use tally_domain::store_model::MemoryStore;

use crate::fixtures::{event, NOW};

type Cells = BTreeMap<(String, String, i64), Tally>;

const POLICY: CompactPolicy = CompactPolicy {
    realtime_grace_ms: MINUTE_MS,
    settled_grace_ms: 3 * MINUTE_MS,
    max_minutes_per_run: 4,
    first_run_minutes: 30,
};

fn content(id: u16, received_ms: i64) -> Event {
    let n = usize::from(id);
    let kind = EventKind::ALL[n % 4];
    Event {
        kind,
        campaign_id: format!("c{}", n % 3),
        ad_id: format!("a{}", (n / 3) % 3),
        received_ms,
        cost_micros: 10 * n as u64 + 1,
        value_micros: if kind == EventKind::Conversion {
            1_000 + n as u64
        } else {
            0
        },
        ..event(&format!("e{id}"))
    }
}

fn valid(e: &Event) -> bool {
    !e.cost_micros.is_multiple_of(7)
}

/// A request: its receive time (ms after the start), the shards it reached, the ids of its events.
#[derive(Clone, Debug)]
struct Request {
    at_ms: i64,
    shards: Vec<usize>,
    ids: Vec<u16>,
}

fn requests() -> impl Strategy<Value = Vec<Request>> {
    prop::collection::vec(
        (
            0..9 * MINUTE_MS,
            prop::sample::subsequence(vec![0usize, 1, 2], 1..=2),
            prop::collection::vec(0u16..6, 1..5),
        )
            .prop_map(|(at_ms, shards, ids)| Request { at_ms, shards, ids }),
        1..40,
    )
}

/// What happens, in time order.
#[derive(Clone, Debug)]
enum Step {
    Apply {
        lane: StoreLane,
        shard: usize,
        record: usize,
    },
    Compact {
        twice: bool,
    },
    Read,
}

fn shard_id(shard: usize) -> String {
    format!("shardId-{shard:012}")
}

/// The items a compactor wrote, by (campaign, minute): the table.
#[derive(Debug, Default)]
struct Table {
    items: BTreeMap<(String, i64), CompactedItem>,
    watermark: Watermark,
    /// Puts per (campaign, minute), duplicate runs left out.
    puts: BTreeMap<(String, i64), usize>,
}

fn compact(
    store: &MemoryStore,
    table: &mut Table,
    now_ms: i64,
    progress: LaneProgress,
    duplicate: bool,
) {
    let plan = plan_run(now_ms, &POLICY, progress, table.watermark).expect("policy");
    let (rt, _) = store.counters(StoreLane::Realtime);
    let (st, _) = store.counters(StoreLane::Settled);
    for job in &plan.jobs {
        let mut lanes: BTreeMap<String, [BTreeMap<String, Tally>; 2]> = BTreeMap::new();
        for (i, cells) in [&rt, &st].into_iter().enumerate() {
            for ((campaign, ad, minute), t) in cells {
                if *minute == job.minute {
                    lanes.entry(campaign.clone()).or_default()[i].insert(ad.clone(), *t);
                }
            }
        }
        for (campaign, [r, s]) in lanes {
            let item = CompactedItem::from_lanes(&campaign, job.minute, &r, &s, job.settled_final);
            encode_ads(&item).expect("small items encode");
            if !duplicate {
                *table
                    .puts
                    .entry((campaign.clone(), job.minute))
                    .or_default() += 1;
            }
            table.items.insert((campaign, job.minute), item);
        }
    }
    table.watermark = table
        .watermark
        .advance(plan.watermark)
        .expect("the watermark moves forward");
}

/// A lane's cells as a reader gets them: minutes up to the watermark from the items, later ones live.
fn read(store: &MemoryStore, table: &Table, lane: StoreLane, from: i64, to: i64) -> Cells {
    let (compacted, live) = split_at_seam(&table.watermark, lane, from, to);
    let mut out = Cells::new();
    if let Some(minutes) = compacted {
        for ((campaign, minute), item) in table.items.range((String::new(), i64::MIN)..) {
            if minutes.contains(minute) {
                for (ad, t) in item.lane(lane) {
                    out.insert((campaign.clone(), ad.to_owned(), *minute), t);
                }
            }
        }
    }
    if let Some(minutes) = live {
        let (cells, unknown) = store.counters(lane);
        assert_eq!(unknown, 0);
        out.extend(
            cells
                .into_iter()
                .filter(|((_, _, m), t)| minutes.contains(m) && !t.is_zero()),
        );
    }
    out
}

fn nonzero(cells: Cells) -> Cells {
    cells.into_iter().filter(|(_, t)| !t.is_zero()).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn series_across_the_seam_are_exact(
        requests in requests(),
        lags in prop::collection::vec((0..MINUTE_MS, 0..3 * MINUTE_MS, Just(0)), 40),
        compactions in prop::collection::vec((0..14 * MINUTE_MS, any::<bool>()), 0..12),
        reads in prop::collection::vec(0..14 * MINUTE_MS, 0..8),
        redeliver in prop::collection::vec(any::<bool>(), 40),
    ) {
        check_seam(requests, &lags, compactions, reads, &redeliver, false)?;
    }

    /// C1 without trusting the clock: both lanes lag up to ten minutes — far past their grace periods — and
    /// records arrive in the stream up to [`RECEIVE_TO_ARRIVAL_MAX_MS`] after they were received; the compactor
    /// reads how far each lane has got per shard ([`ShardProgress`], what `tally_aws::lane_progress` reads from
    /// the marks and the stream) and the series stay exact. The same steps without the progress fail.
    #[test]
    fn series_across_the_seam_are_exact_when_the_lanes_lag_past_their_grace(
        requests in requests(),
        lags in prop::collection::vec((0..10 * MINUTE_MS, 0..10 * MINUTE_MS, 0..=RECEIVE_TO_ARRIVAL_MAX_MS), 40),
        compactions in prop::collection::vec((0..24 * MINUTE_MS, any::<bool>()), 0..16),
        reads in prop::collection::vec(0..24 * MINUTE_MS, 0..8),
        redeliver in prop::collection::vec(any::<bool>(), 40),
    ) {
        check_seam(requests, &lags, compactions, reads, &redeliver, true)?;
    }
}

/// A lane's progress as the compactor reads it at `now_ms`: per shard, the arrival of the first record the lane
/// has not applied if it has arrived, else caught up as of `now_ms`.
fn progress_at(
    records: &[Vec<(i64, i64, Vec<Event>)>],
    applied: &[usize],
    now_ms: i64,
) -> Option<i64> {
    let shards: Vec<ShardProgress> = records
        .iter()
        .zip(applied)
        .map(|(recs, &n)| match recs.get(n) {
            Some(&(_, arrived_ms, _)) if arrived_ms <= now_ms => {
                ShardProgress::Behind { arrived_ms }
            }
            _ => ShardProgress::CaughtUp { read_ms: now_ms },
        })
        .collect();
    lane_progress(&shards, RECEIVE_TO_ARRIVAL_MAX_MS)
}

/// The seam property; `with_progress`: the compactor reads the lanes' progress (else the clock alone decides,
/// which needs every lag below its lane's grace).
fn check_seam(
    requests: Vec<Request>,
    lags: &[(i64, i64, i64)],
    compactions: Vec<(i64, bool)>,
    reads: Vec<i64>,
    redeliver: &[bool],
    with_progress: bool,
) -> Result<(), TestCaseError> {
    {
        let start = NOW - NOW.rem_euclid(MINUTE_MS);
        // Ids are the request's own (a resend carries the same body, so the same content); the same id may
        // repeat within one body.
        let mut requests = requests;
        for (i, r) in requests.iter_mut().enumerate() {
            for id in &mut r.ids {
                *id += 8 * i as u16;
            }
        }
        requests.sort_by_key(|r| r.at_ms);
        // Records per shard, in receive order; each lane applies record r of a shard at its receive time
        // plus a lag below the lane's grace, and never before the shard's previous record.
        // (receive time, arrival in the stream, events); arrivals keep the shard's order.
        let mut records: Vec<Vec<(i64, i64, Vec<Event>)>> = vec![Vec::new(); 3];
        for (i, r) in requests.iter().enumerate() {
            let events: Vec<Event> = r
                .ids
                .iter()
                .map(|&id| content(id, start + r.at_ms))
                .collect();
            let delay = lags[(i * 11) % lags.len()].2;
            for &s in &r.shards {
                let arrived = records[s]
                    .last()
                    .map_or(i64::MIN, |r| r.1)
                    .max(start + r.at_ms + delay);
                records[s].push((start + r.at_ms, arrived, events.clone()));
            }
        }
        let mut steps: Vec<(i64, u8, Step)> = Vec::new();
        for (shard, recs) in records.iter().enumerate() {
            let mut last = [i64::MIN; 2];
            for (i, (_, arrived, _)) in recs.iter().enumerate() {
                let (rt_lag, st_lag, _) = lags[(shard * 13 + i) % lags.len()];
                for (l, (lane, lag)) in
                    [(StoreLane::Realtime, rt_lag), (StoreLane::Settled, st_lag)]
                        .into_iter()
                        .enumerate()
                {
                    last[l] = last[l].max(arrived + lag);
                    steps.push((
                        last[l],
                        1,
                        Step::Apply {
                            lane,
                            shard,
                            record: i,
                        },
                    ));
                    if redeliver[(shard * 7 + i) % redeliver.len()] {
                        steps.push((
                            last[l] + 1,
                            1,
                            Step::Apply {
                                lane,
                                shard,
                                record: i,
                            },
                        ));
                    }
                }
            }
        }
        for (at, twice) in compactions {
            steps.push((start + at, 0, Step::Compact { twice }));
        }
        for at in reads {
            steps.push((start + at, 2, Step::Read));
        }
        steps.sort_by_key(|(at, order, _)| (*at, *order));

        let mut store = MemoryStore::new();
        let mut table = Table::default();
        // Records applied per lane and shard (in order: a shard's records are applied one after the other).
        let mut applied = [[0usize; 3]; 2];
        let progress = |applied: &[[usize; 3]; 2], now_ms: i64| {
            if with_progress {
                LaneProgress {
                    realtime_ms: progress_at(&records, &applied[0], now_ms),
                    settled_ms: progress_at(&records, &applied[1], now_ms),
                }
            } else {
                LaneProgress::default()
            }
        };
        let (first, last) = (minute_of(start), minute_of(start) + 20);
        let keep = |lane: StoreLane| move |e: &Event| lane == StoreLane::Realtime || valid(e);
        for (at, _, step) in steps {
            match step {
                Step::Apply {
                    lane,
                    shard,
                    record,
                } => {
                    let mut batch = Batch::new();
                    let seq = (100 + record).to_string();
                    let position = Position::new(&shard_id(shard), &seq).expect("position");
                    batch
                        .push_record(position, records[shard][record].2.clone())
                        .expect("one record");
                    store
                        .process(lane, &batch, DedupWindow::default(), 0, keep(lane))
                        .expect("applies");
                    let n = &mut applied[usize::from(lane == StoreLane::Settled)][shard];
                    *n = (*n).max(record + 1);
                }
                Step::Compact { twice } => {
                    let read_before = table.watermark;
                    let progress = progress(&applied, at);
                    compact(&store, &mut table, at, progress, false);
                    if twice {
                        // A second compactor that read the same watermark: writes the same items, the
                        // same watermark.
                        let (items, wm) = (table.items.clone(), table.watermark);
                        table.watermark = read_before;
                        compact(&store, &mut table, at, progress, true);
                        prop_assert_eq!(&items, &table.items);
                        prop_assert_eq!(wm, table.watermark);
                    }
                }
                Step::Read => {
                    for lane in StoreLane::ALL {
                        let (cells, _) = store.counters(lane);
                        prop_assert_eq!(
                            read(&store, &table, lane, first, last),
                            nonzero(cells),
                            "{:?} at {}",
                            lane,
                            at - start
                        );
                    }
                }
            }
        }

        // Everything applied; time passes and the compactor catches up.
        let mut now = start + 30 * MINUTE_MS;
        for _ in 0..10 {
            compact(&store, &mut table, now, progress(&applied, now), false);
            now += MINUTE_MS;
        }
        prop_assert!(table.watermark.settled >= Some(minute_of(start) + 9));
        // The oracle: the rollup of the distinct ids (their content does not depend on the copy).
        let mut truth: [Cells; 2] = Default::default();
        let mut seen = BTreeSet::new();
        for r in &requests {
            for &id in &r.ids {
                if seen.insert(id) {
                    let e = content(id, start + r.at_ms);
                    for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
                        if keep(lane)(&e) {
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
            }
        }
        for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
            prop_assert_eq!(
                &read(&store, &table, lane, first, last),
                &truth[l],
                "{:?}",
                lane
            );
        }
        // Every item is final and was written at most twice per (campaign, minute).
        prop_assert!(table.items.values().all(|i| i.settled_final));
        prop_assert!(table.puts.values().all(|&n| n <= 2), "{:?}", table.puts);
        // The cache loses everything: the compacted minutes still read right.
        store.flush();
        for (l, lane) in StoreLane::ALL.into_iter().enumerate() {
            prop_assert_eq!(
                &read(&store, &table, lane, first, last),
                &truth[l],
                "{:?} after a flush",
                lane
            );
        }
    }
    Ok(())
}

/// Standard base64 (the wire form of a DynamoDB binary attribute), for measuring.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A realistic minute of one ad: counts in the thousands, money in micros; settled a little below.
fn minute_item(ads: usize) -> CompactedItem {
    let mut rt = BTreeMap::new();
    let mut st = BTreeMap::new();
    for i in 0..ads {
        let base = 1_000 + 37 * i as u64;
        let t = Tally {
            impressions: base,
            viewable: base * 6 / 10,
            clicks: base / 47,
            conversions: base / 613,
            spend_micros: base * 1_537,
            value_micros: (base / 613) * 48_123_457,
        };
        let mut s = t;
        if i % 4 == 0 {
            s.impressions -= 5;
            s.spend_micros -= 5 * 1_537;
        }
        rt.insert(format!("ad-{i:05}"), t);
        st.insert(format!("ad-{i:05}"), s);
    }
    CompactedItem::from_lanes("campaign-00042", 29_928_300, &rt, &st, true)
}

fn keys() -> Map<String, Value> {
    let mut item = Map::new();
    item.insert("pk".into(), json!({"S": "cm#campaign-00042"}));
    item.insert("sk".into(), json!({"S": "0029928300"}));
    item.insert("sf".into(), json!({"BOOL": true}));
    item
}

fn numbers(t: &Tally) -> Vec<Value> {
    tally_domain::store_keys::Counter::ALL
        .iter()
        .map(|c| json!({"N": t.get(*c).to_string()}))
        .collect()
}

/// The chosen encoding: one binary attribute `ads`.
fn size_blob(item: &CompactedItem) -> u64 {
    let mut m = keys();
    m.insert(
        "ads".into(),
        json!({"B": base64(&encode_ads(item).expect("fits"))}),
    );
    item_size(&m)
}

/// One attribute per ad holding a list of twelve numbers.
fn size_list_per_ad(item: &CompactedItem) -> u64 {
    let mut m = keys();
    for (ad, c) in &item.ads {
        let mut list = numbers(&c.realtime);
        list.extend(numbers(&c.settled));
        m.insert(format!("a#{ad}"), json!({"L": list}));
    }
    item_size(&m)
}

/// One map attribute per lane, ad → map of named counters (the readable form).
fn size_named_maps(item: &CompactedItem) -> u64 {
    let mut m = keys();
    for lane in StoreLane::ALL {
        let ads: Map<String, Value> = item
            .ads
            .iter()
            .map(|(ad, c)| {
                let t = c.lane(lane);
                let named: Map<String, Value> = tally_domain::store_keys::Counter::ALL
                    .iter()
                    .map(|k| (k.as_str().to_owned(), json!({"N": t.get(*k).to_string()})))
                    .collect();
                (ad.clone(), json!({"M": named}))
            })
            .collect();
        m.insert(lane.as_str().to_owned(), json!({"M": ads}));
    }
    item_size(&m)
}

#[test]
fn compacted_item_sizes() {
    let mut lines = Vec::new();
    for ads in [1, 10, 100] {
        let item = minute_item(ads);
        let (blob, list, named) = (
            size_blob(&item),
            size_list_per_ad(&item),
            size_named_maps(&item),
        );
        lines.push(format!(
            "measured: {ads:>3} ads: binary `ads` {blob} B, a list of 12 numbers per ad {list} B, named maps per lane {named} B"
        ));
        assert!(blob < list && list < named, "{ads}: {blob} {list} {named}");
    }
    // The figures docs/counter-store.md quotes.
    assert_eq!(
        [1, 10, 100].map(|n| size_blob(&minute_item(n))),
        [68, 331, 3_080],
        "{lines:#?}"
    );
    for l in lines {
        println!("{l}");
    }
}
