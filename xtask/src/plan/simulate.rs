//! The scaler against a profile, minute by minute: `tally_domain::scaling::simulate` (the same decision
//! function the scaler Lambda runs) on the profile's write demand. The period is run twice and the second
//! run is reported, so the result starts from where a day of scaling leaves the stream, not from the
//! template's initial shard count.

use anyhow::Context;
use tally_domain::scaling::{self, Bounds, Decision, Demand, KeepReason, Policy, SimConfig};

use tally_traffic::Profile;

/// How long `UpdateShardCount` takes to take effect in the simulation (AWS: "a few minutes").
pub const RESHARDING_MINUTES: u32 = 5;
/// How often the scaler runs (the template's schedule; alarms trigger it sooner in reality).
pub const SCALER_EVERY_MINUTES: u32 = 1;

#[derive(Debug, Clone, PartialEq)]
pub struct Simulation {
    pub bounds: (u32, u32),
    /// Open shards per minute of the period.
    pub shards: Vec<u32>,
    /// Share of records throttled per minute.
    pub throttled: Vec<f64>,
    /// `UpdateShardCount` calls in the period.
    pub calls: usize,
    /// Minutes in which the scaler wanted more shards than the ceiling allows.
    pub ceiling_minutes: usize,
    /// Shards the peak needs at the target utilisation.
    pub peak_needs: u32,
}

impl Simulation {
    pub fn throttled_minutes(&self) -> usize {
        self.throttled.iter().filter(|&&t| t > 0.0).count()
    }

    pub fn max_shards(&self) -> u32 {
        self.shards.iter().copied().max().unwrap_or(0)
    }

    pub fn min_shards(&self) -> u32 {
        self.shards.iter().copied().min().unwrap_or(0)
    }

    pub fn mean_shards(&self) -> f64 {
        self.shards.iter().map(|&s| f64::from(s)).sum::<f64>() / self.shards.len().max(1) as f64
    }
}

/// Write demand per minute when `events_per_record` events share a record of `record_bytes`.
pub fn demand(profile: &Profile, events_per_record: f64, record_bytes: f64) -> Vec<Demand> {
    profile
        .events_per_sec
        .iter()
        .map(|&eps| {
            let records = eps / events_per_record;
            Demand {
                bytes_per_sec: records * record_bytes,
                records_per_sec: records,
            }
        })
        .collect()
}

/// Runs the scaler between `bounds` from `start` shards.
pub fn run(demand: &[Demand], bounds: (u32, u32), start: u32) -> anyhow::Result<Simulation> {
    let b = Bounds::new(bounds.0, bounds.1).context("the template's shard bounds")?;
    let config = SimConfig {
        bounds: b,
        start_shards: start,
        resharding_minutes: RESHARDING_MINUTES,
        every_minutes: SCALER_EVERY_MINUTES,
        policy: Policy::default(),
    };
    let twice: Vec<Demand> = demand.iter().chain(demand.iter()).copied().collect();
    let minutes = scaling::simulate(&twice, &config).context("while simulating the scaler")?;
    let second = &minutes[demand.len().min(minutes.len())..];
    let peak = demand
        .iter()
        .map(|d| scaling::demand_shards(d.bytes_per_sec, d.records_per_sec))
        .fold(0.0, f64::max);
    Ok(Simulation {
        bounds,
        shards: second.iter().map(|m| m.shards).collect(),
        throttled: second.iter().map(|m| m.throttled_fraction).collect(),
        calls: second
            .iter()
            .filter(|m| matches!(m.decision, Some(Decision::Scale { .. })))
            .count(),
        ceiling_minutes: second
            .iter()
            .filter(|m| {
                matches!(
                    m.decision,
                    Some(Decision::Keep(KeepReason::AtCeiling { .. }))
                )
            })
            .count(),
        peak_needs: scaling::shards_for(peak, Policy::default().target_utilisation),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(mb: f64, minutes: usize) -> Vec<Demand> {
        vec![
            Demand {
                bytes_per_sec: mb * 1_048_576.0,
                records_per_sec: mb * 40.0
            };
            minutes
        ]
    }

    #[test]
    fn steady_load_settles() {
        let s = run(&flat(3.0, 1440), (1, 64), 1).expect("sim");
        assert_eq!(s.shards.len(), 1440);
        assert_eq!(s.throttled_minutes(), 0, "the second day starts scaled");
        assert_eq!(s.calls, 0, "and needs no call");
        assert!((4..=5).contains(&s.max_shards()), "{}", s.max_shards());
    }

    #[test]
    fn ceiling_is_reported() {
        let s = run(&flat(30.0, 600), (1, 8), 8).expect("sim");
        assert_eq!(s.max_shards(), 8);
        assert_eq!(s.throttled_minutes(), 600);
        assert!(s.ceiling_minutes > 500);
        assert_eq!(s.peak_needs, 50);
    }

    #[test]
    fn bad_bounds_are_errors() {
        let err = format!("{:#}", run(&flat(1.0, 10), (5, 2), 1).expect_err("bounds"));
        assert!(err.contains("the floor 5 is above the ceiling 2"), "{err}");
    }
}
