//! `cargo xtask plan` — what a traffic profile costs on AWS with the stack `synth` would deploy, how the
//! scaler keeps up with it, and how fresh the numbers are. Details and the model's assumptions:
//! `docs/plan.md`.
//!
//! * [`profile`]: traffic profiles (TOML) → events per second per minute.
//! * [`prices`]: the price table.
//! * [`stack`]: what matters for cost, read from the synthesized CloudFormation template.
//! * [`simulate`]: the scaler's decision logic (`tally_domain::scaling`) minute by minute.
//! * [`traffic`]: requests sampled from the profile, packed by the real `wire::pack`, routed by MD5.
//! * [`lanes`]: each lane's cycle, batch and invocation time (shared with the freshness budget).
//! * [`counters`]: the rows a batch writes and their DynamoDB units (real `Rollup`, real item sizes).
//! * [`cost`]: usage and monthly bills, for tally and for a naive one-record-one-write-per-event design.
//! * [`latency`]: the freshness budget per lane.
//! * [`check`]: `--check LOADTEST.json`, the model against a load test's metered units.
//! * [`render`]: terminal table, JSON, HTML.
//! * [`sweep`]: `--sweep`, the profile's shape from 1,000 to 1,000,000 events/s and the AWS limits met.
//! * [`defences`]: what bounds the bill against hostile traffic and what each defence costs (reserved
//!   concurrency, the cache's and table's ceilings, budgets, the edge); sizes collect's reserved concurrency.

pub mod cache;
pub mod check;
pub mod cost;
pub mod counters;
pub mod defences;
pub mod lanes;
pub mod latency;
pub mod logs;
pub mod prices;
pub mod render;
pub mod simulate;
pub mod stack;
pub mod sweep;
pub mod traffic;

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::flags::PlanFlags;
use cost::{Bill, Design};
use lanes::{LaneEval, Model, Overrides};
use prices::Prices;
use simulate::Simulation;
use stack::{Mode, StackModel};
use tally_traffic::Profile;

/// Everything `plan` computed.
#[derive(Debug, Clone)]
pub struct Report {
    pub stage: String,
    pub profile: Profile,
    pub prices: Prices,
    pub stack: StackModel,
    pub events_per_record: f64,
    pub record_bytes: f64,
    /// The scaler on tally's stream.
    pub sim: Simulation,
    /// The template's stream mode: provisioned with the scaler, or on-demand.
    pub on_demand: bool,
    pub tally: Bill,
    /// tally with the other stream mode.
    pub alternative: Bill,
    pub naive: Bill,
    pub naive_sim: Simulation,
    pub latency: Vec<latency::Budget>,
    /// tally with a 1 s batching window on the enhanced fan-out lanes, and that lane's p50 freshness.
    pub what_if_window: Option<(Bill, f64)>,
    /// tally with the critical lane writing minute rows only (hour and day rows from the deferred lane).
    pub what_if_minute_rows: Bill,
    pub recommendations: Vec<String>,
    /// What `pack` made of the sampled requests.
    pub packing: traffic::Packing,
    /// Each stream lane at the profile's peak minute (the freshness budget's numbers).
    pub lanes_at_peak: Vec<(String, LaneEval)>,
    /// What the naive design does not do.
    pub naive_notes: NaiveNotes,
    /// What bounds the bill against hostile traffic and what each defence costs.
    pub defences: Vec<defences::Defence>,
}

/// The naive design's limits, stated next to its price.
#[derive(Debug, Clone, PartialEq)]
pub struct NaiveNotes {
    /// p50 freshness: shared-iterator polling (about once a second), one write per event.
    pub freshness_p50_ms: f64,
    /// The top campaign's events per second at the peak: its day-total item's write units per second.
    pub hottest_item_wcu_per_sec: f64,
    /// DynamoDB's per-item limit.
    pub item_limit_wcu_per_sec: f64,
}

impl PlanFlags {
    /// `cargo xtask plan`: the table, JSON, HTML, sweep or check the flags ask for.
    pub fn run(self) -> anyhow::Result<()> {
        if let Some(path) = &self.check {
            return run_check(path, self.tolerance.unwrap_or(15.0) / 100.0);
        }
        let profile = match (&self.profile, self.events_per_sec) {
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("while reading the profile {}", path.display()))?;
                let mut p = Profile::parse(&text)
                    .with_context(|| format!("in profile {}", path.display()))?;
                if let Some(bytes) = self.event_bytes {
                    p.event_bytes = Profile::flat(0.0, bytes)
                        .context("--event-bytes")?
                        .event_bytes;
                }
                p
            }
            (None, Some(rate)) => Profile::flat(rate, self.event_bytes.unwrap_or(300))?,
            _ => anyhow::bail!("give exactly one of --profile FILE and --events-per-sec N"),
        };
        let prices = Prices::load(self.prices.as_deref())?;
        let stage = crate::stage::resolve(self.stage.as_deref())?;
        let template = tally_pipeline::synth_value(&stage, &crate::stack_options(&stage)?)
            .context("while synthesizing the pipeline stack")?;
        if self.sweep {
            let (json, html) = (self.json, self.html.as_deref());
            return sweep::run(&stage.label(), &profile, &prices, &template, json, html);
        }
        let report = plan(&stage.label(), profile, prices, &template)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&render::json(&report))?);
        } else {
            print!("{}", render::table(&report));
        }
        if let Some(path) = &self.html {
            write(path, &render::html(&report))?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}

/// `plan --check`: the load test's stage ("loadtest") is synthesized with the same options the load test used.
fn run_check(path: &Path, tolerance: f64) -> anyhow::Result<()> {
    let value = check::read(path)?;
    let stage = tally_pipeline::Stage::new("loadtest");
    let template = tally_pipeline::synth_value(&stage, &crate::stack_options(&stage)?)
        .context("while synthesizing the load test's stack")?;
    let rows = check::check_value(&value, &crate::workspace_root(), &template)
        .with_context(|| format!("in {}", path.display()))?;
    print!("{}", check::table(&rows, tolerance));
    check::verdict(&rows, tolerance)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("while writing {}", path.display()))
}

/// Computes the whole report from a profile, prices and a template.
pub fn plan(
    stage: &str,
    profile: Profile,
    prices: Prices,
    template: &Value,
) -> anyhow::Result<Report> {
    let stack = stack::read(template).context("while reading the template")?;
    let packing = traffic::packing(&profile, traffic::PACKING_SAMPLE_EVENTS);
    let epr = packing.events_per_record;
    let record_bytes = packing.bytes_per_record;
    let mut model = Model::new(&profile, packing.clone(), Overrides::default());
    let (start, on_demand) = match stack.stream.mode {
        Mode::Provisioned { shards } => (shards, false),
        Mode::OnDemand => (1, true),
    };
    let bounds = stack.scaler_bounds.unwrap_or(match stack.stream.mode {
        // A provisioned stream without a scaler keeps its shard count.
        Mode::Provisioned { shards } => (shards, shards),
        Mode::OnDemand => (1, tally_domain::scaling::MAX_SHARDS_PER_STREAM),
    });
    let sim = simulate::run(
        &simulate::demand(&profile, epr, record_bytes),
        bounds,
        start,
    )?;
    let naive_sim = simulate::run(
        &simulate::demand(&profile, 1.0, f64::from(profile.event_bytes)),
        (1, tally_domain::scaling::MAX_SHARDS_PER_STREAM),
        1,
    )?;
    let mut bill = |design, stack: &StackModel, shards: &[u32], od| {
        cost::bill(design, &profile, stack, shards, od, &prices, &mut model)
    };
    let mut tally = bill(Design::Tally, &stack, &sim.shards, on_demand);
    let mut alternative = bill(Design::Tally, &stack, &sim.shards, !on_demand);
    for b in [&mut tally, &mut alternative] {
        defences::add_edge_lines(b, &profile, &stack, &prices);
    }
    let naive = bill(Design::Naive, &stack, &naive_sim.shards, on_demand);
    let what_if_minute_rows = bill(Design::TallyMinuteRows, &stack, &sim.shards, on_demand);
    let mut windowed = stack.clone();
    let mut changed = false;
    for m in windowed
        .kinesis_mappings
        .iter_mut()
        .filter(|m| m.efo && m.window_secs == 0)
    {
        m.window_secs = 1;
        changed = true;
    }
    let windowed_bill = changed.then(|| bill(Design::Tally, &windowed, &sim.shards, on_demand));
    // The lanes at the peak minute: the freshness budget reads the same evaluations the bill used.
    let peak_minute = profile
        .events_per_sec
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let peak_eps = profile.peak_events_per_sec();
    let peak_shards = if on_demand {
        cost::on_demand_shards(&profile, epr, record_bytes) as u32
    } else {
        sim.shards.get(peak_minute).copied().unwrap_or(1)
    };
    let timing_of = |model: &mut Model, stack: &StackModel| {
        let mut timing = std::collections::BTreeMap::new();
        let mut named = Vec::new();
        for m in &stack.kinesis_mappings {
            if let Some(f) = stack.functions.get(&m.function) {
                let e = model.lane(
                    &f.name,
                    cost::lane_kind(f),
                    m,
                    peak_shards,
                    peak_eps,
                    counters::Rows::All,
                );
                timing.insert(m.function.clone(), e);
                named.push((f.name.clone(), e));
            }
        }
        (timing, named)
    };
    let (timing, lanes_at_peak) = timing_of(&mut model, &stack);
    let latency = latency::budgets(&stack, &timing);
    let what_if_window = windowed_bill.map(|bill| {
        let (timing, _) = timing_of(&mut model, &windowed);
        let p50 = latency::budgets(&windowed, &timing)
            .iter()
            .find(|b| b.efo)
            .map_or(0.0, |b| b.p50_ms());
        (bill, p50)
    });
    let top_share = traffic::Zipf::new(profile.campaigns, profile.campaign_skew).share(0);
    let naive_notes = NaiveNotes {
        freshness_p50_ms: latency::budget(
            "naive",
            &stack::KinesisMapping {
                function: "naive".into(),
                batch_size: cost::NAIVE_BATCH_SIZE,
                window_secs: 0,
                parallelization: 1,
                efo: false,
                starting_position: "LATEST".into(),
            },
            &LaneEval {
                cycle_ms: lanes::POLL_INTERVAL_SECS * 1000.0,
                function_ms: lanes::FUNCTION_BASE_MS.0,
                write_ms: lanes::DYNAMODB_MS.0,
                write_ms_p99: lanes::DYNAMODB_MS.1,
                ..LaneEval::default()
            },
        )
        .p50_ms(),
        hottest_item_wcu_per_sec: peak_eps * top_share,
        item_limit_wcu_per_sec: cost::DYNAMODB_ITEM_WCU_PER_SEC,
    };
    let mut report = Report {
        stage: stage.to_owned(),
        profile,
        prices,
        stack,
        events_per_record: epr,
        record_bytes,
        sim,
        on_demand,
        tally,
        alternative,
        naive,
        naive_sim,
        latency,
        what_if_window,
        what_if_minute_rows,
        recommendations: Vec::new(),
        packing,
        lanes_at_peak,
        naive_notes,
        defences: Vec::new(),
    };
    report.defences = defences::defences(
        &report.profile,
        &report.stack,
        &report.prices,
        &report.tally,
    );
    report.recommendations = recommend(&report);
    Ok(report)
}

/// Which way the metrics table should pay, against the way the template has it (`table_billing` in
/// `tally.toml`), and whether auto scaling's maximum is too low for the peak.
fn table_billing_recommendation(b: &Bill) -> String {
    let (od, prov) = (b.dynamodb_on_demand_usd, b.dynamodb_provisioned_usd);
    let mut line = match (b.dynamodb_provisioned, prov <= od) {
        (true, true) => format!(
            "keep the metrics table on provisioned capacity with auto scaling: ${prov:.2}/month against ${od:.2} on-demand"
        ),
        (true, false) => format!(
            "put the metrics table on-demand (table_billing = \"on-demand\" in tally.toml): ${od:.2}/month against ${prov:.2} provisioned with auto scaling"
        ),
        (false, true) => format!(
            "put the metrics table on provisioned capacity with auto scaling (table_billing = \"provisioned\" in tally.toml): ${prov:.2}/month against ${od:.2} on-demand"
        ),
        (false, false) => format!(
            "keep the metrics table on-demand: ${od:.2}/month against ${prov:.2} provisioned with auto scaling"
        ),
    };
    if b.dynamodb_short_minutes > 0 {
        line.push_str(&format!(
            "; {} minutes of the period need more capacity than auto scaling's maximum allows (throttled): raise table_max_write_capacity / table_max_read_capacity in tally.toml",
            b.dynamodb_short_minutes
        ));
    }
    line
}

/// collect's reservation against the profile's peak, and a budget when there is none.
fn defence_recommendations(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let need = defences::collect_peak_concurrency(&r.profile);
    let sized = defences::collect_reserved_for(&r.profile);
    let collect =
        r.stack.functions.iter().find(|(_, f)| {
            f.has_url && f.env.iter().any(|e| e == tally_contract::env::STREAM_NAME)
        });
    if let Some((id, _)) = collect {
        match r.stack.defences.reserved.get(id) {
            Some(&n) if f64::from(n) < need => out.push(format!(
                "collect's reserved concurrency {n} is below this profile's peak need of {need:.0}: set profile = \"<this profile>\" (sized {sized}) or collect_reserved_concurrency = {sized} in tally.toml"
            )),
            Some(_) => {}
            None => out.push(format!(
                "collect has no reserved concurrency: a flood can take the account's pool; give it {sized} (collect_reserved_concurrency in tally.toml)"
            )),
        }
    }
    if r.stack.defences.budgets.is_empty() {
        let limit = (r.tally.total() * 1.25 / 10.0).ceil() * 10.0;
        out.push(format!(
            "no budget: set budget_monthly_usd = {limit:.0} in tally.toml (this plan's bill +25 %, rounded up); free for an account's first {} budgets",
            defences::FREE_BUDGETS
        ));
    }
    out
}

fn recommend(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let (provisioned, on_demand) = if r.on_demand {
        (&r.alternative, &r.tally)
    } else {
        (&r.tally, &r.alternative)
    };
    let (pk, ok) = (provisioned.service("Kinesis"), on_demand.service("Kinesis"));
    if r.sim.ceiling_minutes > 0 {
        out.push(format!(
            "the scaler hit its ceiling of {} shards for {} minutes a period; the peak needs {} shards: raise TALLY_MAX_SHARDS (max_shards) to at least {}",
            r.sim.bounds.1, r.sim.ceiling_minutes, r.sim.peak_needs, r.sim.peak_needs
        ));
    }
    let throttled = r.sim.throttled_minutes();
    if throttled > 0 && r.sim.ceiling_minutes == 0 {
        out.push(format!(
            "{throttled} minutes a period had throttled writes while the scaler caught up (×2 per call, {} min per call); collect resends them, but for known launches raise the floor (min_shards) beforehand, or use on-demand mode",
            simulate::RESHARDING_MINUTES
        ));
    }
    let caveat = if r.sim.ceiling_minutes > 0 {
        " (with the ceiling binding the provisioned figure undercounts shards; compare again after raising it)"
    } else {
        ""
    };
    if pk <= ok {
        out.push(format!(
            "keep provisioned mode with the scaler: Kinesis ${pk:.2}/month against ${ok:.2} on-demand ({:.0}% less){caveat}",
            (1.0 - pk / ok.max(1e-9)) * 100.0
        ));
    } else {
        out.push(format!(
            "use on-demand mode (StreamCapacity::OnDemand): Kinesis ${ok:.2}/month against ${pk:.2} provisioned with the scaler{caveat}"
        ));
    }
    let wru = |b: &Bill| b.dynamodb_write_units / b.events.max(1.0);
    let (t, n) = (wru(&r.tally), wru(&r.naive));
    if t > n {
        out.push(format!(
            "the metrics table takes {t:.2} write units per event against the naive design's {n:.2}: every batch read-modify-writes the minute, hour and day rows (with their sketches and one fence mark per writing shard) of every campaign and (campaign, ad) it holds"
        ));
    }
    out.push(table_billing_recommendation(&r.tally));
    for (lane, e) in &r.lanes_at_peak {
        if e.behind {
            out.push(format!(
                "lane {lane} falls behind at the peak: full batches of {:.0} records take {:.0} ms to apply; raise its batch size or cut the rows it writes",
                e.records_per_invocation, e.duration_ms
            ));
        }
    }
    let now = r.tally.per_billion();
    if let Some((bill, p50)) = &r.what_if_window {
        if bill.per_billion() < now * 0.9 {
            out.push(format!(
                "a 1 s batching window on the enhanced fan-out lane: ${:.0} per billion events instead of ${now:.0} ({:.2} write units per event), at a p50 freshness of ≈ {p50:.0} ms",
                bill.per_billion(),
                wru(bill)
            ));
        }
    }
    let minute = &r.what_if_minute_rows;
    if minute.per_billion() < now * 0.9 {
        out.push(format!(
            "let the critical lane write minute rows only and the deferred lane the hour and day rows: ${:.0} per billion events instead of ${now:.0} ({:.2} write units per event), freshness unchanged for minute series",
            minute.per_billion(),
            wru(minute)
        ));
    }
    if let Some(fast) = r.latency.first() {
        if fast.p50_ms() >= 100.0 {
            out.push(format!(
                "the fastest lane ({}) needs {:.0} ms at p50: an enhanced fan-out consumer and a batching window of 0 bring it under 100 ms",
                fast.lane,
                fast.p50_ms()
            ));
        }
    }
    out.extend(defence_recommendations(r));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(profile: Profile) -> Report {
        plan(
            "test",
            profile,
            Prices::shipped().expect("prices"),
            &stack::tests::fixture(),
        )
        .expect("plan")
    }

    #[test]
    fn a_request_is_one_record_and_freshness_follows_the_cycle() {
        let r = report(Profile::flat(2_000.0, 300).expect("profile"));
        // 10 events per request over 1,000 campaigns: one record per request (`wire::pack_request`), so the
        // stream costs less than the naive design's one record per event.
        assert_eq!(r.events_per_record, 10.0);
        let (t, n) = (r.tally.service("Kinesis"), r.naive.service("Kinesis"));
        assert!(t < n, "Kinesis: tally {t} vs naive {n}");
        // The realtime budget's wait is half the cycle the bill was computed with.
        let (_, rt) = r
            .lanes_at_peak
            .iter()
            .find(|(lane, _)| lane == "realtime")
            .expect("realtime lane");
        let budget = r
            .latency
            .iter()
            .find(|b| b.lane == "realtime")
            .expect("budget");
        let wait = budget
            .components
            .iter()
            .find(|c| c.name.starts_with("wait"))
            .expect("wait");
        assert_eq!(wait.p50_ms, rt.cycle_ms / 2.0);
        assert!(r.naive_notes.hottest_item_wcu_per_sec > 0.0);
    }

    /// The daily-curve profile on the cache fixture: every service priced, freshness set by enhanced
    /// fan-out. `cargo test -p xtask --lib daily_curve_on_the_cache -- --nocapture` prints the figures.
    #[test]
    fn daily_curve_on_the_cache_fixture() {
        let text = std::fs::read_to_string(
            crate::workspace_root().join("xtask/profiles/daily-curve-network.toml"),
        )
        .expect("profile");
        let r = plan(
            "test",
            Profile::parse(&text).expect("profile"),
            Prices::shipped().expect("prices"),
            &stack::tests::cache_fixture(),
        )
        .expect("plan");
        for (name, b) in [("tally", &r.tally), ("naive", &r.naive)] {
            eprintln!(
                "measured: {name}: ${:.0} per billion events",
                b.per_billion()
            );
            for (service, usd) in b.by_service() {
                eprintln!("measured:   {service:<16} ${usd:>10.2}/month");
            }
        }
        for l in r
            .tally
            .lines
            .iter()
            .filter(|l| ["ElastiCache", "VPC", "DynamoDB"].contains(&l.service))
        {
            eprintln!(
                "measured:   {} {}: {:.4e} {} ${:.2}",
                l.service, l.item, l.quantity, l.unit, l.usd
            );
        }
        for b in &r.latency {
            eprintln!(
                "measured: lane {} p50 {:.1} ms p99 ≤ {:.1} ms, set by {:?}",
                b.lane,
                b.p50_ms(),
                b.p99_ms(),
                b.dominant().map(|(c, s)| (c.name, (s * 100.0).round()))
            );
        }
        assert!(r.tally.service("ElastiCache") > 0.0);
        assert!(r.tally.service("VPC") > 0.0);
        assert_eq!(r.naive.service("ElastiCache"), 0.0);
        // The critical lane's freshness is set by enhanced fan-out, not the cache.
        let fast = r.latency.first().expect("a lane");
        assert!(fast.efo, "{fast:?}");
        let (set_by, _) = fast.dominant().expect("components");
        assert_eq!(set_by.name, "enhanced fan-out push", "{fast:?}");
        let cache = fast
            .components
            .iter()
            .find(|c| c.name.starts_with("counter cache"))
            .expect("cache component");
        assert!(cache.p50_ms < 10.0, "{cache:?}");
    }

    #[test]
    fn defences_are_priced_from_the_template() {
        let profile = Profile::flat(2_000.0, 300).expect("flat");
        assert_eq!(
            profile.events_per_request, 10.0,
            "the flat profile's batches"
        );
        let synth = |options: &tally_pipeline::PipelineOptions| {
            tally_pipeline::synth_value(&tally_pipeline::Stage::new("main"), options)
                .expect("synth")
        };
        let plain = plan(
            "main",
            profile.clone(),
            Prices::shipped().expect("prices"),
            &synth(&tally_pipeline::PipelineOptions::default()),
        )
        .expect("plan");
        let guarded = plan(
            "main",
            profile,
            Prices::shipped().expect("prices"),
            &synth(&tally_pipeline::PipelineOptions {
                edge: Some(tally_pipeline::EdgeOptions::default()),
                budget_monthly_usd: Some(900),
                ..tally_pipeline::PipelineOptions::default()
            }),
        )
        .expect("plan");
        let row = |r: &Report, name: &str| {
            r.defences
                .iter()
                .find(|d| d.name == name)
                .unwrap_or_else(|| panic!("no {name} in {:?}", r.defences))
                .clone()
        };
        // 2,000 events/s in requests of 10 for 730 h: 525.6 M requests; CloudFront $1 and WAF $0.60 per
        // million, 400 B out at $0.085/GB, 10 × 300 B + 600 B to the origin at $0.02/GB, the ACL $5, its rule $1,
        // and the origin secret collect checks, $0.40 (the bill's third secret).
        let requests = 200.0 * 3600.0 * 730.0;
        let expect = requests / 1e6 * 1.60
            + requests * 400.0 / 1e9 * 0.085
            + requests * 3600.0 / 1e9 * 0.02
            + 6.0
            + 0.40;
        let edge = row(&guarded, "edge (CloudFront + WAF)");
        assert!(
            (edge.monthly_usd - expect).abs() < 0.01,
            "{edge:?} vs {expect}"
        );
        assert!(edge.bounds.contains("30000 requests per address per 300 s"));
        assert!(
            (guarded.tally.total() - plain.tally.total() - expect).abs() < 0.01,
            "the edge's lines are in the bill"
        );
        // Off: what it would cost, not billed.
        let off = row(&plain, "edge (CloudFront + WAF)");
        assert_eq!(off.monthly_usd, 0.0);
        assert!(
            off.detail
                .contains(&format!("would cost ${expect:.2}/month")),
            "{off:?}"
        );
        assert!(row(&guarded, "budget").detail.starts_with("$900 a month"));
        assert!(plain
            .recommendations
            .iter()
            .any(|r| r.starts_with("no budget: set budget_monthly_usd")));
        assert!(!guarded
            .recommendations
            .iter()
            .any(|r| r.starts_with("no budget")));
        let collect = row(&plain, "collect reserved concurrency");
        // 200 requests/s × (20 + 30 + 10 × 0.005) ms = 10.01 concurrent; ×2 → 21.
        assert_eq!(
            collect.detail,
            "100 reserved; the profile's peak needs 10.0 concurrent (×2 headroom = 21)"
        );
        assert!(row(&plain, "query reserved concurrency").detail == "10 reserved");
    }

    #[test]
    fn ceiling_recommendation() {
        // 50,000 events/s of 300 bytes, 10 per record: ~15 MB/s, which a 1-shard ceiling cannot carry.
        let mut t = stack::tests::fixture();
        t["Resources"]["Scaler"]["Properties"]["Environment"]["Variables"]["TALLY_MAX_SHARDS"] =
            "1".into();
        let r = plan(
            "t",
            Profile::flat(50_000.0, 300).expect("p"),
            Prices::shipped().expect("p"),
            &t,
        )
        .expect("plan");
        assert!(
            r.recommendations
                .iter()
                .any(|s| s.contains("raise TALLY_MAX_SHARDS")),
            "{:?}",
            r.recommendations
        );
    }
}
