//! What a repair's fold holds per archived id: folds `N` distinct events (one archive line each, one shard)
//! into a `RepairFold` and prints the process's peak resident memory before and after, per id.
//!
//! `cargo run --release -p tally-domain --example repair_memory -- 1000000 window` (ids of the dedup window
//! before the repaired minutes: the fold keeps their first occurrence only) or `… minutes` (ids in the repaired
//! minutes: their events are kept too). Figures in docs/counter-store.md, "What a repair can read".

use tally_domain::archive::ArchiveLine;
use tally_domain::compact_repair::{parse_archive_line, RepairFold};
use tally_domain::enrich::{enrich_batch, RateLimits};
use tally_domain::event::{DeviceClass, Event, EventKind, Trust};

const NOW: i64 = 1_795_698_000_000;

/// Peak resident set (`VmHWM`), bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/self/status")
        * 1024
}

fn event(i: usize) -> Event {
    Event {
        id: format!("01J9ZK4W7Q{i:016}"),
        kind: EventKind::Impression,
        campaign_id: format!("cmp-{}", i % 2000),
        ad_id: format!("cmp-{}.ad-{}", i % 2000, (i / 2000) % 10),
        placement_id: Some(format!("pub-{}:slot-{}", i % 37, i % 3)),
        user_id: Some(format!("u-{:08x}", (i * 7919) % 500_000)),
        client_ts_ms: Some(NOW - 250),
        received_ms: NOW + (i as i64 % 60_000),
        cost_micros: 1_850,
        value_micros: 0,
        country: Some("US".to_owned()),
        device: DeviceClass::Mobile,
        trust: Trust::Authenticated,
        user_agent: Some(
            "Mozilla/5.0 (X11; Linux x86_64) Chrome/124.0.0.0 Safari/537.36".to_owned(),
        ),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let minute = tally_domain::rollup::minute_of(NOW);
    let (minutes, what) = match args.next().as_deref() {
        Some("minutes") => (minute..=minute, "in the repaired minutes"),
        _ => (minute + 1..=minute + 1, "in the dedup window before them"),
    };
    let before = peak_rss();
    let mut fold = RepairFold::new(minutes);
    let limits = RateLimits::default();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let events: Vec<Event> = chunk.iter().map(|&i| event(i)).collect();
        for (e, (j, enriched)) in chunk
            .iter()
            .zip(enrich_batch(&events, &limits).iter().enumerate())
        {
            let line = ArchiveLine::new(enriched, "shardId-000000000001", &format!("4959{e:052}"))
                .to_json();
            fold.add(parse_archive_line(&line, j + 1).expect("parses"), j);
        }
    }
    let after = peak_rss();
    assert_eq!(fold.ids(), n, "every id distinct");
    println!(
        "{n} ids {what}: peak resident {:.1} MiB → {:.1} MiB, {:.0} bytes per id",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / n as f64
    );
}
