//! Throughput of the hot paths, in events per second on one core (`Throughput::Elements`).
//!
//! `cargo bench -p tally-domain -- --warm-up-time 1 --measurement-time 3`; figures in docs/benchmarks.md.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), not wall time: on a machine shared with
//! other work, wall time counts the moments another process had the core, and "per core" would be wrong.
//! Set `TALLY_BENCH_WALL=1` to measure wall time instead.

use std::hint::black_box;

use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_main, BatchSize, Criterion, Throughput};
use tally_domain::event::{DeviceClass, Event, EventKind, RawEvent};
use tally_domain::hll::Hll;
use tally_domain::ingest::{decode_body, decode_pixel};
use tally_domain::partition::RequestKeys;
use tally_domain::rollup::Rollup;
use tally_domain::wire::{pack_request, unpack};

/// CPU time of the calling thread: what one core spent on the benchmark.
struct ThreadCpuTime;

fn thread_cpu_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;

    fn start(&self) -> Duration {
        thread_cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Values are nanoseconds, as for wall time, so criterion's own formatting applies.
        static WALL: WallTime = WallTime;
        WALL.formatter()
    }
}

const NOW: i64 = 1_795_698_000_000;
const BATCH: usize = 1000;
const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Roku/DVP-13.0 (13.0.0.4190-C3)",
];

/// A realistic batch: 20 campaigns, 10 ads each, a pool of 5,000 users, mostly impressions, a spread of
/// receive times over two minutes.
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let kind = match i % 20 {
                0 => EventKind::Click,
                1 => EventKind::Conversion,
                2..=9 => EventKind::ViewableImpression,
                _ => EventKind::Impression,
            };
            let received_ms = NOW + (i as i64 * 97) % 120_000;
            Event {
                id: format!("01J9ZK4W7Q{i:016}"),
                kind,
                campaign_id: format!("cmp-{}", i % 20),
                ad_id: format!("cmp-{}.ad-{}", i % 20, (i / 20) % 10),
                placement_id: Some(format!("pub-{}:slot-{}", i % 37, i % 3)),
                user_id: Some(format!("u-{:08x}", (i * 7919) % 5000)),
                client_ts_ms: Some(received_ms - 250),
                received_ms,
                cost_micros: if kind == EventKind::Impression {
                    1_850
                } else {
                    0
                },
                value_micros: if kind == EventKind::Conversion {
                    49_990_000
                } else {
                    0
                },
                country: Some(["US", "DE", "FR", "BR", "JP"][i % 5].to_owned()),
                device: [
                    DeviceClass::Mobile,
                    DeviceClass::Desktop,
                    DeviceClass::Mobile,
                    DeviceClass::Ctv,
                ][i % 4],
                trust: tally_domain::event::Trust::Authenticated,
                user_agent: Some(AGENTS[i % 4].to_owned()),
            }
        })
        .collect()
}

fn raw_json(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .map(|e| {
            let mut raw = RawEvent::from(e);
            raw.id = None; // collect assigns ids to most events
            serde_json::to_vec(&raw).expect("serializes")
        })
        .collect()
}

fn json_array(events: &[Event]) -> Vec<u8> {
    let items = raw_json(events);
    let mut body = b"[".to_vec();
    body.extend(items.join(&b","[..]));
    body.push(b']');
    body
}

fn ndjson(events: &[Event]) -> Vec<u8> {
    raw_json(events).join(&b"\n"[..])
}

fn pixel_query(e: &Event) -> String {
    format!(
        "c={}&a={}&e={}&p={}&u={}&t={}&m={}&g={}&d={}&cb=1234",
        e.campaign_id,
        e.ad_id,
        e.kind.as_str(),
        e.placement_id.as_deref().unwrap_or(""),
        e.user_id.as_deref().unwrap_or(""),
        e.client_ts_ms.unwrap_or(0),
        e.cost_micros,
        e.country.as_deref().unwrap_or(""),
        e.device.as_str()
    )
}

/// What collect and a consumer do with a body, end to end in memory.
fn ingest(body: &[u8], content_type: &str) -> Rollup {
    let mut next = 0u64;
    let mut new_id = || {
        next += 1;
        format!("gen-{next}")
    };
    let mut rollup = Rollup::new();
    if let Ok(items) = decode_body(body, Some(content_type)) {
        for raw in items.into_iter().flatten() {
            if let Ok(e) = raw.validate(NOW, &mut new_id) {
                rollup.add(&e);
            }
        }
    }
    rollup
}

fn decode_validate_aggregate<M: Measurement>(c: &mut Criterion<M>) {
    let events = events(BATCH);
    let array = json_array(&events);
    let lines = ndjson(&events);
    let queries: Vec<String> = events.iter().map(pixel_query).collect();
    let mut g = c.benchmark_group("decode_validate_aggregate");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("json_array", |b| {
        b.iter(|| ingest(black_box(&array), "application/json"))
    });
    g.bench_function("ndjson", |b| {
        b.iter(|| ingest(black_box(&lines), "application/x-ndjson"))
    });
    g.bench_function("pixel", |b| {
        b.iter(|| {
            let mut rollup = Rollup::new();
            for q in &queries {
                if let Ok(e) = decode_pixel(black_box(q))
                    .and_then(|raw| raw.validate(NOW, &mut || "gen".to_owned()))
                {
                    rollup.add(&e);
                }
            }
            rollup
        })
    });
    g.bench_function("decode_only_json_array", |b| {
        b.iter(|| decode_body(black_box(&array), Some("application/json")))
    });
    g.bench_function("aggregate_only", |b| {
        b.iter(|| black_box(&events).iter().collect::<Rollup>())
    });
    g.finish();
}

fn wire<M: Measurement>(c: &mut Criterion<M>) {
    let events = events(BATCH);
    let keys = RequestKeys::with_secret([7; 16]);
    // A collect request of 1,000 events (the body limit) is one record; the decoders read 25-event requests.
    let records: Vec<_> = events
        .chunks(25)
        .flat_map(|request| pack_request(request, &keys.next_key()))
        .collect();
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("pack", |b| {
        b.iter(|| {
            pack_request(
                black_box(&events),
                black_box("0123456789abcdef0123456789abcdef"),
            )
        })
    });
    g.bench_function("pack_requests_of_25", |b| {
        b.iter(|| {
            let mut n = 0;
            for request in black_box(&events).chunks(25) {
                n += pack_request(request, &keys.next_key()).len();
            }
            n
        })
    });
    g.bench_function("unpack", |b| {
        b.iter(|| {
            let mut n = 0;
            for r in &records {
                n += unpack(black_box(&r.data)).map_or(0, |v| v.len());
            }
            n
        })
    });
    g.bench_function("unpack_aggregate", |b| {
        b.iter(|| {
            let mut rollup = Rollup::new();
            for r in &records {
                if let Ok(v) = unpack(black_box(&r.data)) {
                    rollup.extend(&v);
                }
            }
            rollup
        })
    });
    g.finish();
}

fn sketches<M: Measurement>(c: &mut Criterion<M>) {
    let users: Vec<String> = (0..BATCH).map(|i| format!("u-{i:08x}")).collect();
    let mut g = c.benchmark_group("hll");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("insert_sparse", |b| {
        b.iter(|| {
            let mut h = Hll::new();
            for u in &users {
                h.insert(black_box(u.as_bytes()));
            }
            h
        })
    });
    let mut dense = Hll::new();
    for i in 0..100_000u32 {
        dense.insert(&i.to_le_bytes());
    }
    g.bench_function("insert_dense", |b| {
        b.iter_batched_ref(
            || dense.clone(),
            |h| {
                for u in &users {
                    h.insert(black_box(u.as_bytes()));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
    let mut g = c.benchmark_group("hll_serialize");
    g.throughput(Throughput::Elements(1));
    g.bench_function("dense_round_trip", |b| {
        b.iter(|| Hll::from_bytes(&black_box(&dense).to_bytes()))
    });
    g.bench_function("estimate_dense", |b| {
        b.iter(|| black_box(&dense).estimate())
    });
    g.finish();
}

/// The compactor's repair after a cache loss, per archived event: one archive object of a batch (gzip'd
/// ndjson, as the deferred lane writes it) decoded, each line parsed and folded (`RepairFold`, per id the
/// occurrence the lanes count). A repair run does this for every event of the dedup window (an hour by default)
/// and the repaired minutes: docs/counter-store.md, "What a repair can read".
fn repair<M: Measurement>(c: &mut Criterion<M>) {
    use tally_domain::archive::{decode_text, encode_object, ArchiveLine};
    use tally_domain::compact_repair::{parse_archive_line, RepairFold};
    use tally_domain::enrich::{enrich_batch, RateLimits};

    let events = events(BATCH);
    let enriched = enrich_batch(&events, &RateLimits::default());
    let lines: Vec<ArchiveLine> = enriched
        .iter()
        .enumerate()
        .map(|(i, e)| {
            ArchiveLine::new(
                e,
                "shardId-000000000001",
                &format!("4959033827149025660855969253836157109592157598913658{i:04}"),
            )
        })
        .collect();
    let object = encode_object(&lines);
    let minute = tally_domain::rollup::minute_of(NOW);
    let mut g = c.benchmark_group("repair");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decode_parse_fold", |b| {
        b.iter_batched(
            || RepairFold::new(minute..=minute + 1),
            |mut fold| {
                let text = decode_text(black_box(&object)).expect("decodes");
                for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
                    fold.add(parse_archive_line(line, i + 1).expect("parses"), i);
                }
                fold
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn run<M: Measurement>(mut c: Criterion<M>) {
    decode_validate_aggregate(&mut c);
    wire(&mut c);
    sketches(&mut c);
    repair(&mut c);
}

fn benches() {
    let wall = std::env::var_os("TALLY_BENCH_WALL").is_some_and(|v| v != "0");
    if wall {
        run(Criterion::default().configure_from_args());
    } else {
        run(Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args());
    }
}

criterion_main!(benches);
