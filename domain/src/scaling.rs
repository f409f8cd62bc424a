//! Shard scaling for a provisioned Kinesis stream: the decision, as a pure function.
//!
//! The scaler Lambda reads the stream's recent load from CloudWatch, the stream's open shard count and
//! the times of its own recent `UpdateShardCount` calls, and asks [`decide`] what to do. `cargo xtask
//! plan` asks the same function, minute by minute, against a traffic profile ([`simulate`]). Nothing here
//! does I/O or reads a clock: `now` is an input.
//!
//! # Kinesis' rules (AWS `UpdateShardCount` documentation)
//!
//! * One call may at most double the open shard count or halve it (rounded up: 3 shards may go to 2,
//!   never to 1). [`decide`] never asks for more.
//! * At most [`MAX_CALLS_PER_DAY`] calls per stream in any rolling 24 hours ([`CALL_WINDOW_SECS`]).
//! * A call is asynchronous: the stream is `UPDATING` for a few minutes and no further call is accepted;
//!   [`Input::updating`] makes [`decide`] wait.
//! * At most [`MAX_SHARDS_PER_STREAM`] shards per stream (the default quota).
//! * One shard takes [`SHARD_WRITE_BYTES_PER_SEC`] (1 MiB/s) and [`SHARD_WRITE_RECORDS_PER_SEC`]
//!   (1,000 records/s) of writes; whichever limit is closer decides the shard's *utilisation*.
//!
//! # The decision, in order
//!
//! 1. Stream `UPDATING` → keep. Call budget spent (10 calls in the last 24 h) → keep.
//! 2. Shard count outside `[floor, ceiling]` → move toward the bound (one ×2 / ÷2 step at a time).
//! 3. **Scale up** when, over the last [`Policy::up_window_secs`] (5 min), the peak utilisation exceeds
//!    [`Policy::scale_up_utilisation`] (80 %), or writes were throttled, or the iterator age stayed above
//!    [`Policy::max_iterator_age_ms`] in every sample. Demand counts throttled records too (the incoming
//!    metrics only see what was accepted). The new count brings the peak to
//!    [`Policy::target_utilisation`] (60 %), at least one more shard, at most ×2 and the ceiling. When
//!    throttling or iterator age triggered it but the measured utilisation is low (a hot shard, a slow
//!    consumer), the count doubles — but only on evidence measured at the current count: throttling in
//!    the latest sample, iterator age with no call in the up window. Otherwise the minutes of throttling
//!    before the last scale-up took effect would double the count once more.
//! 4. **Scale down** only after sustained low load: every sample of the last
//!    [`Policy::scale_down_after_secs`] (30 min, and the samples must cover that whole span) is below
//!    [`Policy::scale_down_utilisation`] (35 %), nothing was throttled, no call happened in that span,
//!    and more than [`Policy::calls_reserved_for_scale_up`] calls remain in the 24 h budget (so a
//!    quiet night can never spend the calls a morning peak needs). The new count brings the peak to the
//!    target utilisation, at least ÷2 and the floor.
//!
//! **Hysteresis**: scale-down needs a peak below 35 %; after halving that is at most 70 %, still below the
//! 80 % that scales up, so a steady load never flaps. Scale-up aims at 60 %, well under the 80 % trigger.
//!
//! # Input the caller must provide
//!
//! One [`LoadSample`] per CloudWatch period (one minute), covering at least the last 30 minutes. A
//! minute without a datapoint (CloudWatch omits them when nothing was written) is a sample of zeros: the
//! caller fills it. Metric values must be finite and non-negative; anything else is a [`ScalingError`].

use std::fmt;

/// Write capacity of one shard in bytes per second (1 MiB/s).
pub const SHARD_WRITE_BYTES_PER_SEC: f64 = 1_048_576.0;
/// Write capacity of one shard in records per second.
pub const SHARD_WRITE_RECORDS_PER_SEC: f64 = 1_000.0;
/// `UpdateShardCount` calls allowed per stream in a rolling [`CALL_WINDOW_SECS`].
pub const MAX_CALLS_PER_DAY: usize = 10;
/// The rolling window of the call limit: 24 hours, in seconds.
pub const CALL_WINDOW_SECS: i64 = 86_400;
/// The default per-stream shard quota.
pub const MAX_SHARDS_PER_STREAM: u32 = 10_000;
/// How far the oldest sample may start after the beginning of the scale-down span and still count as
/// covering it (one CloudWatch period of lateness plus one of slack).
pub const COVERAGE_SLACK_SECS: i64 = 120;

/// What can be wrong with the scaler's input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScalingError {
    #[error("shard bounds: the floor must be at least 1, found {floor}; set TALLY_MIN_SHARDS to 1 or more")]
    FloorZero { floor: u32 },
    #[error(
        "shard bounds: the floor {floor} is above the ceiling {ceiling}; set TALLY_MIN_SHARDS <= TALLY_MAX_SHARDS"
    )]
    FloorAboveCeiling { floor: u32, ceiling: u32 },
    #[error(
        "shard bounds: the ceiling {ceiling} is above the per-stream quota of {MAX_SHARDS_PER_STREAM} shards"
    )]
    CeilingAboveQuota { ceiling: u32 },
    #[error("open shards: a stream has at least one open shard, found 0")]
    NoOpenShards,
    #[error("load sample at {at}: {field} is {value}, expected a finite number >= 0")]
    BadSample {
        at: i64,
        field: &'static str,
        value: f64,
    },
    #[error("policy: {0}")]
    BadPolicy(&'static str),
}

/// The shard count the scaler keeps the stream within (`TALLY_MIN_SHARDS`, `TALLY_MAX_SHARDS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    floor: u32,
    ceiling: u32,
}

impl Bounds {
    /// Checks `1 <= floor <= ceiling <= MAX_SHARDS_PER_STREAM`.
    pub fn new(floor: u32, ceiling: u32) -> Result<Bounds, ScalingError> {
        if floor == 0 {
            return Err(ScalingError::FloorZero { floor });
        }
        if floor > ceiling {
            return Err(ScalingError::FloorAboveCeiling { floor, ceiling });
        }
        if ceiling > MAX_SHARDS_PER_STREAM {
            return Err(ScalingError::CeilingAboveQuota { ceiling });
        }
        Ok(Bounds { floor, ceiling })
    }

    pub fn floor(self) -> u32 {
        self.floor
    }

    pub fn ceiling(self) -> u32 {
        self.ceiling
    }
}

/// The tunables of [`decide`]; [`Policy::default`] is what the scaler Lambda uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Peak utilisation (0–1) over the up window above which the stream scales up.
    pub scale_up_utilisation: f64,
    /// Utilisation a new shard count is sized for.
    pub target_utilisation: f64,
    /// Peak utilisation over the down span below which the stream may scale down.
    pub scale_down_utilisation: f64,
    /// The window whose peak decides scale-up, in seconds.
    pub up_window_secs: i64,
    /// How long the load must stay low (and no call happen) before a scale-down, in seconds.
    pub scale_down_after_secs: i64,
    /// Iterator age (ms) that, sustained over the whole up window, means consumers fall behind.
    pub max_iterator_age_ms: f64,
    /// Calls of the 24 h budget that scale-downs leave for scale-ups.
    pub calls_reserved_for_scale_up: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            scale_up_utilisation: 0.80,
            target_utilisation: 0.60,
            scale_down_utilisation: 0.35,
            up_window_secs: 300,
            scale_down_after_secs: 1_800,
            max_iterator_age_ms: 60_000.0,
            calls_reserved_for_scale_up: 2,
        }
    }
}

impl Policy {
    /// Checks the thresholds keep the hysteresis: `0 < down < up/2`, `down < target < up <= 1`, and
    /// positive windows.
    pub fn validate(&self) -> Result<(), ScalingError> {
        let Policy {
            scale_up_utilisation: up,
            target_utilisation: target,
            scale_down_utilisation: down,
            ..
        } = *self;
        if !(up.is_finite() && target.is_finite() && down.is_finite()) {
            return Err(ScalingError::BadPolicy(
                "utilisation thresholds must be finite",
            ));
        }
        if !(0.0 < down && down < target && target < up && up <= 1.0) {
            return Err(ScalingError::BadPolicy(
                "utilisation thresholds must satisfy 0 < scale_down < target < scale_up <= 1",
            ));
        }
        if down * 2.0 >= up {
            return Err(ScalingError::BadPolicy(
                "scale_down_utilisation must be below half of scale_up_utilisation, or halving would flap",
            ));
        }
        if self.up_window_secs <= 0 || self.scale_down_after_secs <= 0 {
            return Err(ScalingError::BadPolicy("windows must be positive"));
        }
        if !(self.max_iterator_age_ms.is_finite() && self.max_iterator_age_ms > 0.0) {
            return Err(ScalingError::BadPolicy(
                "max_iterator_age_ms must be a positive number",
            ));
        }
        if self.calls_reserved_for_scale_up >= MAX_CALLS_PER_DAY {
            return Err(ScalingError::BadPolicy(
                "calls_reserved_for_scale_up must be below 10",
            ));
        }
        Ok(())
    }
}

/// The stream's load over one CloudWatch period, as per-second rates.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadSample {
    /// Start of the period, unix seconds.
    pub at: i64,
    /// `IncomingBytes` / period.
    pub incoming_bytes_per_sec: f64,
    /// `IncomingRecords` / period.
    pub incoming_records_per_sec: f64,
    /// `WriteProvisionedThroughputExceeded` (records) / period.
    pub throttled_records_per_sec: f64,
    /// `GetRecords.IteratorAgeMilliseconds` (maximum over the period).
    pub iterator_age_ms: f64,
}

impl LoadSample {
    fn check(&self) -> Result<(), ScalingError> {
        let fields = [
            ("incoming_bytes_per_sec", self.incoming_bytes_per_sec),
            ("incoming_records_per_sec", self.incoming_records_per_sec),
            ("throttled_records_per_sec", self.throttled_records_per_sec),
            ("iterator_age_ms", self.iterator_age_ms),
        ];
        for (field, value) in fields {
            if !value.is_finite() || value < 0.0 {
                return Err(ScalingError::BadSample {
                    at: self.at,
                    field,
                    value,
                });
            }
        }
        Ok(())
    }

    /// The write demand of this period in shards (1.0 = one shard at its limit): accepted writes plus
    /// the throttled ones, bytes of throttled records estimated at the accepted records' mean size.
    pub fn demand_shards(&self) -> f64 {
        let records = self.incoming_records_per_sec + self.throttled_records_per_sec;
        let bytes = if self.incoming_records_per_sec > 0.0 {
            self.incoming_bytes_per_sec * records / self.incoming_records_per_sec
        } else {
            self.incoming_bytes_per_sec
        };
        demand_shards(bytes, records)
    }
}

/// Write demand in shards for a byte and a record rate: the larger of the two limits' shares.
pub fn demand_shards(bytes_per_sec: f64, records_per_sec: f64) -> f64 {
    (bytes_per_sec / SHARD_WRITE_BYTES_PER_SEC).max(records_per_sec / SHARD_WRITE_RECORDS_PER_SEC)
}

/// Shards needed to carry `demand` (in shards) at `utilisation`, at least 1.
pub fn shards_for(demand: f64, utilisation: f64) -> u32 {
    let needed = (demand / utilisation).ceil();
    if needed.is_nan() || needed < 1.0 {
        1
    } else if needed >= f64::from(MAX_SHARDS_PER_STREAM) {
        MAX_SHARDS_PER_STREAM
    } else {
        needed as u32
    }
}

/// The largest count one `UpdateShardCount` call may reach from `open`.
pub fn max_step_up(open: u32) -> u32 {
    open.saturating_mul(2).min(MAX_SHARDS_PER_STREAM)
}

/// The smallest count one `UpdateShardCount` call may reach from `open` (half, rounded up).
pub fn min_step_down(open: u32) -> u32 {
    open.div_ceil(2).max(1)
}

/// Calls in `calls` that count against the budget at `now`: those of the last 24 h, and any dated in
/// the future (clock skew is counted, not forgiven).
pub fn calls_in_window(calls: &[i64], now: i64) -> usize {
    calls
        .iter()
        .filter(|&&t| t > now.saturating_sub(CALL_WINDOW_SECS))
        .count()
}

/// When the next call is allowed if the budget is spent at `now`: the moment the oldest counted call
/// leaves the window. `None` when a call is allowed now.
pub fn next_call_allowed_at(calls: &[i64], now: i64) -> Option<i64> {
    let mut counted: Vec<i64> = calls
        .iter()
        .copied()
        .filter(|&t| t > now.saturating_sub(CALL_WINDOW_SECS))
        .collect();
    if counted.len() < MAX_CALLS_PER_DAY {
        return None;
    }
    counted.sort_unstable();
    // The call that must leave the window so that only MAX_CALLS_PER_DAY - 1 remain.
    let leaving = counted[counted.len() - MAX_CALLS_PER_DAY];
    Some(leaving.saturating_add(CALL_WINDOW_SECS))
}

/// Everything [`decide`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Unix seconds.
    pub now: i64,
    /// Open shards of the stream now.
    pub open_shards: u32,
    pub bounds: Bounds,
    /// The stream is `UPDATING` (a call is in progress).
    pub updating: bool,
    /// Recent load, one sample per period, any order; older than 24 h is ignored.
    pub samples: &'a [LoadSample],
    /// Times (unix seconds) of this stream's `UpdateShardCount` calls; older than 24 h is ignored.
    pub calls: &'a [i64],
}

/// Why the count stays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeepReason {
    /// The load is inside the band between scale-down and scale-up.
    WithinBand { utilisation: f64 },
    /// A call is in progress.
    Updating,
    /// 10 calls in the last 24 h; the next is allowed at `until` (unix seconds).
    CallLimit { until: i64 },
    /// Scaling up is needed but the stream is at its ceiling.
    AtCeiling { utilisation: f64 },
    /// The load has been low, but not long enough, or a call happened too recently.
    NotSustained { utilisation: f64 },
    /// Scaling down would spend calls kept for scale-ups.
    SavingCalls { calls_left: usize },
    /// Low load, but already at the floor.
    AtFloor { utilisation: f64 },
    /// No load samples in the up window: nothing to decide on.
    NoData,
}

/// Why the count changes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleReason {
    BelowFloor {
        floor: u32,
    },
    AboveCeiling {
        ceiling: u32,
    },
    /// Peak utilisation (including throttled writes) above the scale-up threshold.
    HighLoad {
        utilisation: f64,
    },
    /// Writes were throttled although the average utilisation looked fine (a hot shard).
    Throttled {
        records_per_sec: f64,
    },
    /// Consumers fell behind for the whole up window.
    IteratorAge {
        age_ms: f64,
    },
    /// Peak utilisation below the scale-down threshold for the whole down span.
    SustainedLowLoad {
        utilisation: f64,
    },
}

/// What the scaler should do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    Keep(KeepReason),
    /// Call `UpdateShardCount` with `to` (UNIFORM_SCALING).
    Scale {
        from: u32,
        to: u32,
        reason: ScaleReason,
    },
}

impl Decision {
    /// The shard count after this decision.
    pub fn target(&self, open: u32) -> u32 {
        match *self {
            Decision::Keep(_) => open,
            Decision::Scale { to, .. } => to,
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Decision::Keep(reason) => match reason {
                KeepReason::WithinBand { utilisation } => {
                    write!(f, "keep: peak utilisation {:.0}% is within the band", utilisation * 100.0)
                }
                KeepReason::Updating => write!(f, "keep: the stream is updating"),
                KeepReason::CallLimit { until } => {
                    write!(f, "keep: 10 UpdateShardCount calls in the last 24 h; next allowed at {until}")
                }
                KeepReason::AtCeiling { utilisation } => write!(
                    f,
                    "keep: peak utilisation {:.0}% needs more shards but the stream is at its ceiling",
                    utilisation * 100.0
                ),
                KeepReason::NotSustained { utilisation } => write!(
                    f,
                    "keep: utilisation {:.0}% is low but not for long enough",
                    utilisation * 100.0
                ),
                KeepReason::SavingCalls { calls_left } => {
                    write!(f, "keep: only {calls_left} calls left today, kept for scaling up")
                }
                KeepReason::AtFloor { utilisation } => {
                    write!(f, "keep: utilisation {:.0}% is low but the stream is at its floor", utilisation * 100.0)
                }
                KeepReason::NoData => write!(f, "keep: no load samples in the last minutes"),
            },
            Decision::Scale { from, to, reason } => {
                write!(f, "scale {from} -> {to}: ")?;
                match reason {
                    ScaleReason::BelowFloor { floor } => write!(f, "below the floor of {floor}"),
                    ScaleReason::AboveCeiling { ceiling } => write!(f, "above the ceiling of {ceiling}"),
                    ScaleReason::HighLoad { utilisation } => {
                        write!(f, "peak utilisation {:.0}%", utilisation * 100.0)
                    }
                    ScaleReason::Throttled { records_per_sec } => {
                        write!(f, "{records_per_sec:.0} throttled records/s")
                    }
                    ScaleReason::IteratorAge { age_ms } => write!(f, "iterator age {age_ms:.0} ms"),
                    ScaleReason::SustainedLowLoad { utilisation } => {
                        write!(f, "sustained low utilisation {:.0}%", utilisation * 100.0)
                    }
                }
            }
        }
    }
}

/// Decides whether to change the stream's shard count. Pure; see the module docs for the rules.
pub fn decide(input: &Input<'_>, policy: &Policy) -> Result<Decision, ScalingError> {
    policy.validate()?;
    if input.open_shards == 0 {
        return Err(ScalingError::NoOpenShards);
    }
    for sample in input.samples {
        sample.check()?;
    }
    let open = input.open_shards;
    let (floor, ceiling) = (input.bounds.floor, input.bounds.ceiling);
    let now = input.now;

    if input.updating {
        return Ok(Decision::Keep(KeepReason::Updating));
    }
    let used = calls_in_window(input.calls, now);
    if used >= MAX_CALLS_PER_DAY {
        let until = next_call_allowed_at(input.calls, now).unwrap_or(now);
        return Ok(Decision::Keep(KeepReason::CallLimit { until }));
    }
    let scale = |to: u32, reason| {
        Ok(Decision::Scale {
            from: open,
            to,
            reason,
        })
    };

    if open < floor {
        return scale(
            floor.min(max_step_up(open)),
            ScaleReason::BelowFloor { floor },
        );
    }
    if open > ceiling {
        return scale(
            ceiling.max(min_step_down(open)),
            ScaleReason::AboveCeiling { ceiling },
        );
    }

    let capacity = f64::from(open);
    let recent: Vec<&LoadSample> = input
        .samples
        .iter()
        .filter(|s| s.at > now - policy.up_window_secs)
        .collect();
    if recent.is_empty() {
        return Ok(Decision::Keep(KeepReason::NoData));
    }
    let peak_demand = recent.iter().map(|s| s.demand_shards()).fold(0.0, f64::max);
    let peak = peak_demand / capacity;
    // The blind reasons (throttling, iterator age) double the count without a demand figure, so they
    // only count evidence measured at the current count: the latest sample for throttling, and no call
    // in the up window for iterator age (which decays slowly after a scale-up).
    let latest = recent
        .iter()
        .copied()
        .max_by_key(|s| s.at)
        .copied()
        .unwrap_or_default();
    let throttled = latest.throttled_records_per_sec;
    let quiet = !input.calls.iter().any(|&t| t > now - policy.up_window_secs);
    let min_age = recent
        .iter()
        .map(|s| s.iterator_age_ms)
        .fold(f64::INFINITY, f64::min);

    let up_reason = if peak > policy.scale_up_utilisation {
        Some(ScaleReason::HighLoad { utilisation: peak })
    } else if throttled > 0.0 {
        Some(ScaleReason::Throttled {
            records_per_sec: throttled,
        })
    } else if quiet && min_age > policy.max_iterator_age_ms {
        Some(ScaleReason::IteratorAge { age_ms: min_age })
    } else {
        None
    };
    if let Some(reason) = up_reason {
        if open >= ceiling {
            return Ok(Decision::Keep(KeepReason::AtCeiling { utilisation: peak }));
        }
        let wanted = match reason {
            ScaleReason::HighLoad { .. } => shards_for(peak_demand, policy.target_utilisation),
            _ => max_step_up(open),
        };
        let to = wanted.max(open + 1).min(max_step_up(open)).min(ceiling);
        return scale(to, reason);
    }

    // Scale-down: sustained low load over the whole down span.
    let span_start = now - policy.scale_down_after_secs;
    let span: Vec<&LoadSample> = input.samples.iter().filter(|s| s.at > span_start).collect();
    let span_peak = span.iter().map(|s| s.demand_shards()).fold(0.0, f64::max) / capacity;
    if span_peak >= policy.scale_down_utilisation {
        return Ok(Decision::Keep(KeepReason::WithinBand { utilisation: peak }));
    }
    if open <= floor {
        return Ok(Decision::Keep(KeepReason::AtFloor {
            utilisation: span_peak,
        }));
    }
    let oldest = span.iter().map(|s| s.at).min().unwrap_or(now);
    let covered = oldest <= span_start + COVERAGE_SLACK_SECS;
    let recent_call = input.calls.iter().any(|&t| t > span_start);
    let span_throttled = span.iter().any(|s| s.throttled_records_per_sec > 0.0);
    if !covered || recent_call || span_throttled {
        return Ok(Decision::Keep(KeepReason::NotSustained {
            utilisation: span_peak,
        }));
    }
    let calls_left = MAX_CALLS_PER_DAY - used;
    if calls_left <= policy.calls_reserved_for_scale_up {
        return Ok(Decision::Keep(KeepReason::SavingCalls { calls_left }));
    }
    let span_demand = span_peak * capacity;
    let to = shards_for(span_demand, policy.target_utilisation)
        .max(min_step_down(open))
        .max(floor);
    if to >= open {
        return Ok(Decision::Keep(KeepReason::WithinBand { utilisation: peak }));
    }
    scale(
        to,
        ScaleReason::SustainedLowLoad {
            utilisation: span_peak,
        },
    )
}

/// One minute of write demand on the stream, for [`simulate`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Demand {
    pub bytes_per_sec: f64,
    pub records_per_sec: f64,
}

/// How the simulated stream behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimConfig {
    pub bounds: Bounds,
    /// Open shards at minute 0 (clamped into the bounds).
    pub start_shards: u32,
    /// How long an `UpdateShardCount` call keeps the stream `UPDATING` before the new count takes
    /// effect, in minutes (AWS: "a few minutes"). While updating, the old count carries the load.
    pub resharding_minutes: u32,
    /// How often the scaler runs, in minutes (its schedule; the alarms trigger it sooner in reality).
    pub every_minutes: u32,
    pub policy: Policy,
}

/// One simulated minute.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimMinute {
    pub minute: u32,
    /// Open shards carrying this minute's load.
    pub shards: u32,
    /// Fraction (0–1) of this minute's records that were throttled.
    pub throttled_fraction: f64,
    /// The decision taken at the end of this minute, if the scaler ran.
    pub decision: Option<Decision>,
}

/// Runs [`decide`] against a demand curve minute by minute, with Kinesis' rules: a call takes
/// `resharding_minutes` to take effect, the stream throttles what exceeds its shards' write limits, and
/// the scaler sees accepted and throttled writes as CloudWatch would report them. Iterator age is taken
/// as zero (consumers keep up); skew between shards is not modelled.
pub fn simulate(demand: &[Demand], config: &SimConfig) -> Result<Vec<SimMinute>, ScalingError> {
    config.policy.validate()?;
    let bounds = config.bounds;
    let mut shards = config.start_shards.clamp(bounds.floor, bounds.ceiling);
    let mut pending: Option<(u32, u32)> = None; // (minute it takes effect, new count)
    let mut calls: Vec<i64> = Vec::new();
    let keep = (config.policy.scale_down_after_secs / 60 + 2) as usize;
    let mut samples: std::collections::VecDeque<LoadSample> = std::collections::VecDeque::new();
    let every = config.every_minutes.max(1);
    let mut out = Vec::with_capacity(demand.len());
    for (minute, d) in demand.iter().enumerate() {
        let minute = u32::try_from(minute).unwrap_or(u32::MAX);
        if let Some((effective, to)) = pending {
            if minute >= effective {
                shards = to;
                pending = None;
            }
        }
        let sample_at = i64::from(minute) * 60;
        let bytes = if d.bytes_per_sec.is_finite() {
            d.bytes_per_sec.max(0.0)
        } else {
            0.0
        };
        let records = if d.records_per_sec.is_finite() {
            d.records_per_sec.max(0.0)
        } else {
            0.0
        };
        let need = demand_shards(bytes, records);
        let cap = f64::from(shards);
        let throttled_fraction = if need > cap { 1.0 - cap / need } else { 0.0 };
        let sample = LoadSample {
            at: sample_at,
            incoming_bytes_per_sec: bytes * (1.0 - throttled_fraction),
            incoming_records_per_sec: records * (1.0 - throttled_fraction),
            throttled_records_per_sec: records * throttled_fraction,
            iterator_age_ms: 0.0,
        };
        samples.push_back(sample);
        while samples.len() > keep {
            samples.pop_front();
        }
        let mut decision = None;
        if (minute + 1) % every == 0 {
            let now = sample_at + 60;
            let window: Vec<LoadSample> = samples.iter().copied().collect();
            let input = Input {
                now,
                open_shards: shards,
                bounds,
                updating: pending.is_some(),
                samples: &window,
                calls: &calls,
            };
            let d = decide(&input, &config.policy)?;
            if let Decision::Scale { to, .. } = d {
                calls.push(now);
                calls.retain(|&t| t > now - CALL_WINDOW_SECS);
                pending = Some((minute + 1 + config.resharding_minutes, to));
            }
            decision = Some(d);
        }
        out.push(SimMinute {
            minute,
            shards,
            throttled_fraction,
            decision,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MB: f64 = SHARD_WRITE_BYTES_PER_SEC;

    fn sample(at: i64, mb_per_sec: f64) -> LoadSample {
        LoadSample {
            at,
            incoming_bytes_per_sec: mb_per_sec * MB,
            incoming_records_per_sec: mb_per_sec * 40.0, // 25 KB records
            ..LoadSample::default()
        }
    }

    /// `minutes` samples of a flat load ending at `now`.
    fn flat(now: i64, minutes: i64, mb_per_sec: f64) -> Vec<LoadSample> {
        (1..=minutes)
            .map(|m| sample(now - m * 60, mb_per_sec))
            .collect()
    }

    #[track_caller]
    fn check(
        open: u32,
        floor: u32,
        ceiling: u32,
        samples: &[LoadSample],
        calls: &[i64],
        expect: &str,
    ) {
        let input = Input {
            now: 100_000,
            open_shards: open,
            bounds: Bounds::new(floor, ceiling).expect("test bounds"),
            updating: false,
            samples,
            calls,
        };
        let got = decide(&input, &Policy::default())
            .expect("valid input")
            .to_string();
        assert!(got.starts_with(expect), "expected `{expect}…`, got `{got}`");
    }

    const NOW: i64 = 100_000;

    #[test]
    fn decisions() {
        // Band: 50 % on 4 shards.
        check(
            4,
            1,
            64,
            &flat(NOW, 40, 2.0),
            &[],
            "keep: peak utilisation 50% is within the band",
        );
        // High load: 3.6 MB/s on 4 shards = 90 % → 6 shards (60 %).
        check(
            4,
            1,
            64,
            &flat(NOW, 40, 3.6),
            &[],
            "scale 4 -> 6: peak utilisation 90%",
        );
        // Far above: at most ×2.
        check(
            4,
            1,
            64,
            &flat(NOW, 40, 40.0),
            &[],
            "scale 4 -> 8: peak utilisation 1000%",
        );
        // Ceiling caps a step.
        check(4, 1, 5, &flat(NOW, 40, 40.0), &[], "scale 4 -> 5: peak");
        check(
            5,
            1,
            5,
            &flat(NOW, 40, 40.0),
            &[],
            "keep: peak utilisation 800% needs more shards but",
        );
        // Sustained low: 0.5 MB/s on 8 shards = 6 % → halve, not lower.
        check(
            8,
            1,
            64,
            &flat(NOW, 40, 0.5),
            &[],
            "scale 8 -> 4: sustained low utilisation 6%",
        );
        check(
            3,
            1,
            64,
            &flat(NOW, 40, 0.1),
            &[],
            "scale 3 -> 2: sustained low",
        );
        // Floor.
        check(
            4,
            4,
            64,
            &flat(NOW, 40, 0.1),
            &[],
            "keep: utilisation 2% is low but the stream is at its floor",
        );
        check(
            8,
            6,
            64,
            &flat(NOW, 40, 0.1),
            &[],
            "scale 8 -> 6: sustained low",
        );
        check(
            1,
            5,
            64,
            &flat(NOW, 40, 0.1),
            &[],
            "scale 1 -> 2: below the floor of 5",
        );
        check(
            100,
            1,
            30,
            &flat(NOW, 40, 0.1),
            &[],
            "scale 100 -> 50: above the ceiling of 30",
        );
        // Low, but only for 10 minutes (samples do not cover 30 minutes).
        check(
            8,
            1,
            64,
            &flat(NOW, 10, 0.1),
            &[],
            "keep: utilisation 1% is low but not for long enough",
        );
        // Low, but a call 20 minutes ago.
        check(
            8,
            1,
            64,
            &flat(NOW, 40, 0.1),
            &[NOW - 1200],
            "keep: utilisation 1% is low but not",
        );
        // No data.
        check(8, 1, 64, &[], &[], "keep: no load samples");
        check(
            8,
            1,
            64,
            &flat(NOW - 3600, 40, 9.0),
            &[],
            "keep: no load samples",
        );
    }

    #[test]
    fn throttling_and_iterator_age() {
        let hot = |at| LoadSample {
            throttled_records_per_sec: 50.0,
            ..sample(at, 1.0)
        };
        check(
            4,
            1,
            64,
            &[hot(NOW - 60)],
            &[],
            "scale 4 -> 8: 50 throttled records/s",
        );
        // Throttled records count as demand: 3.0 MB/s accepted with 20 % more throttled → 90 %.
        let t = LoadSample {
            throttled_records_per_sec: 24.0,
            ..sample(NOW - 60, 3.0)
        };
        check(4, 1, 64, &[t], &[], "scale 4 -> 6: peak utilisation 90%");
        let slow = |at| LoadSample {
            iterator_age_ms: 90_000.0,
            ..sample(at, 1.0)
        };
        let all_slow: Vec<_> = (1..=5).map(|m| slow(NOW - m * 60)).collect();
        check(
            4,
            1,
            64,
            &all_slow,
            &[],
            "scale 4 -> 8: iterator age 90000 ms",
        );
        // One slow sample is not sustained.
        let mut mixed = flat(NOW, 5, 2.0);
        mixed[0] = slow(NOW - 60);
        check(
            4,
            1,
            64,
            &mixed,
            &[],
            "keep: peak utilisation 50% is within the band",
        );
        // Slow for the whole window, but a call 2 minutes ago: wait for it to show.
        check(4, 1, 64, &all_slow, &[NOW - 120], "keep:");
        // Throttling before the last scale-up took effect is not evidence now.
        let stale = vec![hot(NOW - 240), sample(NOW - 60, 1.0)];
        check(
            8,
            1,
            64,
            &stale,
            &[NOW - 400],
            "keep: utilisation 28% is low but not for long enough",
        );
    }

    #[test]
    fn call_budget() {
        let ten: Vec<i64> = (0..10).map(|i| NOW - 80_000 + i * 1_000).collect();
        check(
            4,
            1,
            64,
            &flat(NOW, 40, 9.0),
            &ten,
            "keep: 10 UpdateShardCount calls in the last 24 h; next allowed at 106400",
        );
        // Calls older than 24 h do not count.
        let old: Vec<i64> = (0..10).map(|i| NOW - 90_000 - i).collect();
        check(4, 1, 64, &flat(NOW, 40, 9.0), &old, "scale 4 -> 8");
        // Calls in the future (clock skew) count.
        let future: Vec<i64> = (0..10).map(|i| NOW + i).collect();
        check(
            4,
            1,
            64,
            &flat(NOW, 40, 9.0),
            &future,
            "keep: 10 UpdateShardCount calls",
        );
        // Two calls left: kept for scale-up, not spent on scale-down.
        let eight: Vec<i64> = (0..8).map(|i| NOW - 80_000 + i * 1_000).collect();
        check(
            8,
            1,
            64,
            &flat(NOW, 40, 0.1),
            &eight,
            "keep: only 2 calls left today, kept for scaling up",
        );
        check(4, 1, 64, &flat(NOW, 40, 9.0), &eight, "scale 4 -> 8");
    }

    #[test]
    fn hostile_input() {
        let bounds = Bounds::new(1, 10).expect("bounds");
        let base = Input {
            now: NOW,
            open_shards: 2,
            bounds,
            updating: false,
            samples: &[],
            calls: &[],
        };
        let policy = Policy::default();
        assert_eq!(
            decide(
                &Input {
                    open_shards: 0,
                    ..base
                },
                &policy
            ),
            Err(ScalingError::NoOpenShards)
        );
        for (field, bad) in [
            ("incoming_bytes_per_sec", f64::NAN),
            ("iterator_age_ms", -1.0),
        ] {
            let mut s = sample(NOW - 60, 1.0);
            match field {
                "incoming_bytes_per_sec" => s.incoming_bytes_per_sec = bad,
                _ => s.iterator_age_ms = bad,
            }
            let err = decide(
                &Input {
                    samples: &[s],
                    ..base
                },
                &policy,
            )
            .expect_err("bad sample");
            assert!(err.to_string().contains(field), "{err}");
        }
        let inf = LoadSample {
            incoming_records_per_sec: f64::INFINITY,
            ..sample(NOW - 60, 1.0)
        };
        assert!(decide(
            &Input {
                samples: &[inf],
                ..base
            },
            &policy
        )
        .is_err());
        assert_eq!(Bounds::new(0, 3), Err(ScalingError::FloorZero { floor: 0 }));
        assert_eq!(
            Bounds::new(4, 3),
            Err(ScalingError::FloorAboveCeiling {
                floor: 4,
                ceiling: 3
            })
        );
        assert_eq!(
            Bounds::new(1, 20_000),
            Err(ScalingError::CeilingAboveQuota { ceiling: 20_000 })
        );
        let flappy = Policy {
            scale_down_utilisation: 0.5,
            target_utilisation: 0.6,
            ..policy
        };
        assert!(decide(&base, &flappy)
            .expect_err("flappy")
            .to_string()
            .contains("flap"));
        let nan = Policy {
            target_utilisation: f64::NAN,
            ..policy
        };
        assert!(decide(&base, &nan).is_err());
        assert_eq!(
            decide(
                &Input {
                    updating: true,
                    ..base
                },
                &policy
            ),
            Ok(Decision::Keep(KeepReason::Updating))
        );
        assert_eq!(
            ScalingError::FloorAboveCeiling { floor: 4, ceiling: 3 }.to_string(),
            "shard bounds: the floor 4 is above the ceiling 3; set TALLY_MIN_SHARDS <= TALLY_MAX_SHARDS"
        );
    }

    // ---- traffic curves ----

    /// Demand in MB/s (25 KB records) per minute.
    fn curve(minutes: usize, mb: impl Fn(usize) -> f64) -> Vec<Demand> {
        (0..minutes)
            .map(|m| Demand {
                bytes_per_sec: mb(m) * MB,
                records_per_sec: mb(m) * 40.0,
            })
            .collect()
    }

    struct Outcome {
        max_shards: u32,
        last_shards: u32,
        calls: usize,
        throttled_minutes: usize,
    }

    fn run(demand: &[Demand], floor: u32, ceiling: u32, start: u32) -> Outcome {
        let config = SimConfig {
            bounds: Bounds::new(floor, ceiling).expect("bounds"),
            start_shards: start,
            resharding_minutes: 3,
            every_minutes: 1,
            policy: Policy::default(),
        };
        let minutes = simulate(demand, &config).expect("simulate");
        assert_rules(&minutes, &config);
        Outcome {
            max_shards: minutes.iter().map(|m| m.shards).max().unwrap_or(0),
            last_shards: minutes.last().map(|m| m.shards).unwrap_or(0),
            calls: minutes
                .iter()
                .filter(|m| matches!(m.decision, Some(Decision::Scale { .. })))
                .count(),
            throttled_minutes: minutes
                .iter()
                .filter(|m| m.throttled_fraction > 0.0)
                .count(),
        }
    }

    /// The Kinesis rules, checked on a whole simulated run.
    fn assert_rules(minutes: &[SimMinute], config: &SimConfig) {
        let mut calls: Vec<u32> = Vec::new();
        for m in minutes {
            assert!(
                m.shards >= config.bounds.floor() && m.shards <= config.bounds.ceiling(),
                "{m:?}"
            );
            if let Some(Decision::Scale { from, to, .. }) = m.decision {
                assert!(
                    to <= from * 2 && to >= from.div_ceil(2) && to != from,
                    "{m:?}"
                );
                assert!(
                    to >= config.bounds.floor() && to <= config.bounds.ceiling(),
                    "{m:?}"
                );
                calls.push(m.minute);
                let in_day = calls.iter().filter(|&&c| c + 1440 > m.minute).count();
                assert!(
                    in_day <= MAX_CALLS_PER_DAY,
                    "{in_day} calls in 24 h at minute {}",
                    m.minute
                );
            }
        }
        for pair in minutes.windows(2) {
            let (a, b) = (pair[0].shards, pair[1].shards);
            assert!(b <= a * 2 && b >= a.div_ceil(2), "{a} -> {b}");
        }
    }

    #[test]
    fn ramp() {
        // 0.5 → 20 MB/s over 4 hours, then flat for 2 hours.
        let demand = curve(360, |m| 0.5 + 19.5 * (m.min(240) as f64 / 240.0));
        let o = run(&demand, 1, 64, 1);
        // Between demand / 80 % (the trigger) and demand / 60 % (the target).
        assert!(
            (25..=34).contains(&o.last_shards),
            "ends at 20 MB/s / 60..80 %: {}",
            o.last_shards
        );
        assert!(o.calls <= 10, "{} calls", o.calls);
        assert!(
            o.throttled_minutes <= 5,
            "a slow ramp barely throttles: {}",
            o.throttled_minutes
        );
    }

    #[test]
    fn daily_peak() {
        // Two days of a daily curve: trough 2 MB/s, peak 10 MB/s (5×) in the afternoon.
        let day = |m: usize| {
            let phase = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
            6.0 - 4.0 * phase.cos()
        };
        let demand = curve(2 * 1440, day);
        let o = run(&demand, 2, 64, 4);
        assert!(
            (13..=17).contains(&o.max_shards),
            "10 MB/s at 60..80 %: {}",
            o.max_shards
        );
        assert!(o.last_shards <= 8, "back down at night: {}", o.last_shards);
        assert!(
            o.calls <= 20 && o.calls >= 4,
            "{} calls in two days",
            o.calls
        );
        assert_eq!(
            o.throttled_minutes, 0,
            "a smooth daily curve never throttles"
        );
    }

    #[test]
    fn spike() {
        // Launch spike: 1 MB/s, then 20× within 10 minutes for an hour, then back.
        let demand = curve(300, |m| match m {
            0..=59 => 1.0,
            60..=69 => 1.0 + 19.0 * (m - 60) as f64 / 10.0,
            70..=129 => 20.0,
            _ => 1.0,
        });
        let o = run(&demand, 1, 100, 2);
        assert!(
            o.max_shards >= 25,
            "catches up with the spike: {}",
            o.max_shards
        );
        assert!(
            o.throttled_minutes > 0,
            "a 20x spike in 10 minutes outruns ×2 steps"
        );
        assert!(
            o.throttled_minutes <= 25,
            "but not for long: {}",
            o.throttled_minutes
        );
        // Down in ÷2 steps until only the calls reserved for scale-ups are left.
        assert!(
            o.last_shards <= 10,
            "and scales back down: {}",
            o.last_shards
        );
    }

    #[test]
    fn drop() {
        // Traffic drops from 16 MB/s to 0.2 MB/s: halving steps, one at a time, each after 30 quiet minutes.
        let demand = curve(600, |m| if m < 60 { 16.0 } else { 0.2 });
        let o = run(&demand, 1, 64, 28);
        assert_eq!(o.max_shards, 28);
        assert!(o.last_shards <= 2, "ends small: {}", o.last_shards);
        assert!(o.calls <= 8, "{}", o.calls);
    }

    #[test]
    fn flat_load_never_flaps() {
        // From one shard, a flat load is reached in ×2 steps and then held: the count only ever grows.
        for mb in [0.3, 1.0, 2.7, 5.0, 13.3, 40.0] {
            let o = run(&curve(1440, |_| mb), 1, 200, 1);
            assert_eq!(o.last_shards, o.max_shards, "{mb} MB/s scaled down again");
            assert!(o.calls <= 7, "{mb} MB/s: {} calls", o.calls);
        }
        // Starting too big, a flat load is reached in ÷2 steps and then held.
        for mb in [0.3, 1.0, 2.7] {
            let o = run(&curve(1440, |_| mb), 1, 200, 40);
            assert_eq!(o.max_shards, 40, "{mb} MB/s scaled up");
            assert!(o.calls <= 6, "{mb} MB/s: {} calls", o.calls);
        }
    }

    fn arb_sample(now: i64) -> impl Strategy<Value = LoadSample> {
        (
            0..3600i64,
            0.0..200.0f64,
            0.0..2.0f64,
            0.0..50.0f64,
            0.0..200_000.0f64,
        )
            .prop_map(move |(ago, mb, rec_per_kb, throttled, age)| LoadSample {
                at: now - ago,
                incoming_bytes_per_sec: mb * MB,
                incoming_records_per_sec: mb * 1024.0 * rec_per_kb,
                throttled_records_per_sec: if throttled < 40.0 {
                    0.0
                } else {
                    throttled * 10.0
                },
                iterator_age_ms: age,
            })
    }

    proptest! {
        #[test]
        fn decide_respects_kinesis_rules(
            open in 1u32..2_000,
            floor in 1u32..100,
            extra in 0u32..3_000,
            updating in any::<bool>(),
            samples in proptest::collection::vec(arb_sample(NOW), 0..60),
            calls in proptest::collection::vec(NOW - 100_000..NOW + 10, 0..14),
        ) {
            let bounds = Bounds::new(floor, (floor + extra).min(MAX_SHARDS_PER_STREAM)).expect("bounds");
            let input = Input { now: NOW, open_shards: open, bounds, updating, samples: &samples, calls: &calls };
            let decision = decide(&input, &Policy::default()).expect("valid");
            if let Decision::Scale { from, to, .. } = decision {
                prop_assert_eq!(from, open);
                prop_assert!(to != open);
                prop_assert!(to <= open * 2 && to >= open.div_ceil(2));
                prop_assert!(!updating);
                prop_assert!(calls_in_window(&calls, NOW) < MAX_CALLS_PER_DAY);
                // Moves toward the bounds, never out of them from inside.
                if open >= bounds.floor() && open <= bounds.ceiling() {
                    prop_assert!(to >= bounds.floor() && to <= bounds.ceiling());
                } else if open < bounds.floor() {
                    prop_assert!(to > open && to <= bounds.floor());
                } else {
                    prop_assert!(to < open && to >= bounds.ceiling());
                }
            }
        }

        #[test]
        fn simulation_respects_kinesis_rules(
            levels in proptest::collection::vec(0.0..60.0f64, 1..12),
            floor in 1u32..4,
            ceiling in 4u32..128,
            resharding in 0u32..10,
        ) {
            // Piecewise-flat demand, each level held for 4 hours.
            let demand: Vec<Demand> = levels.iter().flat_map(|&mb| {
                std::iter::repeat_n(Demand { bytes_per_sec: mb * MB, records_per_sec: mb * 40.0 }, 240)
            }).collect();
            let config = SimConfig {
                bounds: Bounds::new(floor, ceiling).expect("bounds"),
                start_shards: floor,
                resharding_minutes: resharding,
                every_minutes: 1,
                policy: Policy::default(),
            };
            let minutes = simulate(&demand, &config).expect("simulate");
            prop_assert_eq!(minutes.len(), demand.len());
            assert_rules(&minutes, &config);
        }
    }
}
