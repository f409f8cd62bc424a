//! The freshness budget on AWS, component by component, for each stream-reading lane of the template:
//! from the collector's receipt of an event to the counter row a query reads. Figures are AWS's
//! documented ones where AWS documents them (enhanced fan-out ≈ 70 ms average; shared iterators polled
//! about once a second; DynamoDB single-digit milliseconds), and the design brief's measurements for the
//! propagation percentiles.

use std::collections::BTreeMap;

use super::lanes::{
    LaneEval, COLLECT_MS, EFO_PUSH_MS, FUNCTION_BASE_MS, POLL_INTERVAL_SECS, POLL_MS,
    PUT_RECORDS_MS,
};
use super::stack::{KinesisMapping, StackModel};

#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    pub name: &'static str,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub source: &'static str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// The lane's function (package name).
    pub lane: String,
    pub efo: bool,
    pub window_secs: u32,
    pub components: Vec<Component>,
}

impl Budget {
    pub fn p50_ms(&self) -> f64 {
        self.components.iter().map(|c| c.p50_ms).sum()
    }

    /// The component with the largest p50 and its share of the p50: what sets the lane's freshness.
    pub fn dominant(&self) -> Option<(&Component, f64)> {
        let total = self.p50_ms();
        self.components
            .iter()
            .max_by(|a, b| a.p50_ms.total_cmp(&b.p50_ms))
            .map(|c| (c, if total > 0.0 { c.p50_ms / total } else { 0.0 }))
    }

    /// The sum of the components' p99s: an upper bound (the p99s rarely coincide).
    pub fn p99_ms(&self) -> f64 {
        self.components.iter().map(|c| c.p99_ms).sum()
    }
}

/// The budget of one mapping, whose lane the cost model evaluated as `t` (cycle, function and write times):
/// the same numbers the bill is computed from.
pub fn budget(lane: &str, m: &KinesisMapping, t: &LaneEval) -> Budget {
    let mut components = vec![
        Component {
            name: "collect (Function URL, warm)",
            p50_ms: COLLECT_MS.0,
            p99_ms: COLLECT_MS.1,
            source: "typical warm invoke; not an AWS guarantee",
        },
        Component {
            name: "PutRecords",
            p50_ms: PUT_RECORDS_MS.0,
            p99_ms: PUT_RECORDS_MS.1,
            source: "typical in-region PutRecords round trip",
        },
    ];
    let polled = !m.efo && m.window_secs == 0;
    components.push(if m.efo {
        Component {
            name: "enhanced fan-out push",
            p50_ms: EFO_PUSH_MS.0,
            p99_ms: EFO_PUSH_MS.1,
            source: "AWS: ≈70 ms average; measured p50 49 ms, p99 109 ms",
        }
    } else {
        Component {
            name: "shared-iterator polling",
            p50_ms: POLL_MS.0,
            p99_ms: POLL_MS.1,
            source: "AWS: polled about once a second; measured p50 630 ms, p99 1.6 s",
        }
    });
    // An event waits for the shard's running invocation (or the window) to end: half a cycle, a whole one.
    let wait = if polled {
        (t.cycle_ms - POLL_INTERVAL_SECS * 1000.0).max(0.0)
    } else {
        t.cycle_ms
    };
    components.push(Component {
        name: "wait for the shard's next batch",
        p50_ms: wait / 2.0,
        p99_ms: wait,
        source: "the lane's cycle in the cost model (window, or the running invocation)",
    });
    components.push(Component {
        name: "function (decode, aggregate)",
        p50_ms: t.function_ms,
        p99_ms: t.function_ms + FUNCTION_BASE_MS.1 - FUNCTION_BASE_MS.0,
        source: "the cost model's function time for the lane's batch",
    });
    components.push(if t.cache.events > 0.0 {
        Component {
            name: "counter cache (claims, script)",
            p50_ms: t.write_ms,
            p99_ms: t.write_ms_p99,
            source: "claims + mark in one round trip per 1,024, the script in one; ElastiCache same-AZ round trip 0.5 ms (p99 2 ms, assumed: plan::cache::CACHE_RTT_MS) + 2 µs a command",
        }
    } else {
        Component {
            name: "table writes",
            p50_ms: t.write_ms,
            p99_ms: t.write_ms_p99,
            source: "the batch's row requests, 16 in flight, DynamoDB 5 ms (p99 20 ms) each",
        }
    });
    Budget {
        lane: lane.to_owned(),
        efo: m.efo,
        window_secs: m.window_secs,
        components,
    }
}

/// Budgets of every stream-reading lane, fastest first; `timing` maps a mapping's function (logical id) to
/// its lane evaluation at the profile's peak.
pub fn budgets(stack: &StackModel, timing: &BTreeMap<String, LaneEval>) -> Vec<Budget> {
    let mut out: Vec<Budget> = stack
        .kinesis_mappings
        .iter()
        .map(|m| {
            let name = stack
                .functions
                .get(&m.function)
                .map_or(m.function.as_str(), |f| f.name.as_str());
            let t = timing.get(&m.function).copied().unwrap_or_default();
            budget(name, m, &t)
        })
        .collect();
    out.sort_by(|a, b| a.p50_ms().total_cmp(&b.p50_ms()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(efo: bool, window_secs: u32) -> KinesisMapping {
        KinesisMapping {
            function: "F".into(),
            batch_size: 100,
            window_secs,
            parallelization: 1,
            efo,
            starting_position: "LATEST".into(),
        }
    }

    fn timing(cycle_ms: f64, function_ms: f64, write_ms: f64) -> LaneEval {
        LaneEval {
            cycle_ms,
            function_ms,
            write_ms,
            write_ms_p99: write_ms * 4.0,
            ..LaneEval::default()
        }
    }

    #[track_caller]
    fn check(efo: bool, window: u32, t: LaneEval, p50: f64, p99: f64) {
        let b = budget("lane", &mapping(efo, window), &t);
        assert_eq!((b.p50_ms(), b.p99_ms()), (p50, p99));
    }

    #[test]
    fn budgets_add_up() {
        // 5 + 10 + 49 + 40/2 + 2 + 10 = 96; 20 + 30 + 109 + 40 + 6 + 40 = 245.
        check(true, 0, timing(40.0, 2.0, 10.0), 96.0, 245.0);
        // Polling: the poll covers the first second of the cycle. 5 + 10 + 630 + 0 + 1 + 5.
        check(
            false,
            0,
            timing(1000.0, 1.0, 5.0),
            651.0,
            1675.0 - 20.0 + 20.0,
        );
        // A 30 s window dominates: 5 + 10 + 630 + 15000 + 1 + 5.
        check(
            false,
            30,
            timing(30_000.0, 1.0, 5.0),
            15_651.0,
            20.0 + 30.0 + 1600.0 + 30_000.0 + 5.0 + 20.0,
        );
    }

    #[test]
    fn a_long_cycle_shows_in_the_freshness() {
        // The cost model's batches and the budget are the same numbers: a 4 s cycle is 2 s at p50.
        let slow = budget("l", &mapping(true, 0), &timing(4000.0, 10.0, 3000.0));
        assert!(slow.p50_ms() > 2000.0, "{}", slow.p50_ms());
        let fast = budget("l", &mapping(true, 0), &timing(20.0, 1.0, 5.0));
        assert!(fast.p50_ms() < 100.0, "{}", fast.p50_ms());
        let polled = budget("l", &mapping(false, 0), &timing(1000.0, 1.0, 5.0));
        assert!(polled.p50_ms() > 600.0);
    }
}
