//! `cargo xtask plan` — what a traffic profile costs on AWS with the stack `synth` would deploy, how the
//! scaler keeps up with it, and how fresh the numbers are. Details and the model's assumptions:
//! `docs/plan.md`.
//!
//! * [`profile`]: traffic profiles (TOML) → events per second per minute.
//! * [`prices`]: the price table.
//! * [`stack`]: what matters for cost, read from the synthesized CloudFormation template.
//! * [`simulate`]: the scaler's decision logic (`tally_domain::scaling`) minute by minute.
//! * [`cost`]: usage and monthly bills, for tally and for a naive one-record-one-write-per-event design.
//! * [`latency`]: the freshness budget per lane.
//! * [`render`]: terminal table, JSON, HTML.
//! * [`sweep`]: `--sweep`, the profile's shape from 1,000 to 1,000,000 events/s and the AWS limits met.

pub mod cost;
pub mod latency;
pub mod prices;
pub mod render;
pub mod simulate;
pub mod stack;
pub mod sweep;

use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::flags::Plan;
use cost::{Bill, Design};
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
}

impl Plan {
    pub fn run(self) -> anyhow::Result<()> {
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
        let prices = match &self.prices {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("while reading the price table {}", path.display()))?;
                Prices::parse(&text)
                    .with_context(|| format!("in price table {}", path.display()))?
            }
            None => Prices::shipped()?,
        };
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
    let epr = cost::events_per_record(&profile);
    let record_bytes = epr * f64::from(profile.event_bytes) + cost::RECORD_OVERHEAD_BYTES;
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
    let tally = cost::bill(
        Design::Tally,
        &profile,
        &stack,
        &sim.shards,
        on_demand,
        &prices,
    );
    let alternative = cost::bill(
        Design::Tally,
        &profile,
        &stack,
        &sim.shards,
        !on_demand,
        &prices,
    );
    let naive = cost::bill(
        Design::Naive,
        &profile,
        &stack,
        &naive_sim.shards,
        on_demand,
        &prices,
    );
    let latency = latency::budgets(&stack);
    let what_if_window = {
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
        changed.then(|| {
            let bill = cost::bill(
                Design::Tally,
                &profile,
                &windowed,
                &sim.shards,
                on_demand,
                &prices,
            );
            let p50 = latency::budgets(&windowed)
                .first()
                .map_or(0.0, |b| b.p50_ms());
            (bill, p50)
        })
    };
    let what_if_minute_rows = cost::bill(
        Design::TallyMinuteRows,
        &profile,
        &stack,
        &sim.shards,
        on_demand,
        &prices,
    );
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
    };
    report.recommendations = recommend(&report);
    Ok(report)
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
    let wru = |b: &Bill| {
        b.lines
            .iter()
            .filter(|l| l.unit == "WRU")
            .map(|l| l.quantity)
            .sum::<f64>()
            / b.events.max(1.0)
    };
    let (t, n) = (wru(&r.tally), wru(&r.naive));
    if t > n {
        out.push(format!(
            "the metrics table takes {t:.2} write units per event against the naive design's {n:.2}: every batch rewrites the minute, hour and day rows (dense HyperLogLog, 4 units a day row) of every key it holds"
        ));
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
    fn packing_makes_the_stream_cheaper_than_naive() {
        let r = report(Profile::flat(20_000.0, 300).expect("profile"));
        let (t, n) = (r.tally.service("Kinesis"), r.naive.service("Kinesis"));
        assert!(t * 2.0 < n, "Kinesis: tally {t} vs naive {n}");
        assert_eq!(r.latency[0].lane, "realtime");
        assert!(r.latency[0].p50_ms() < 100.0);
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
