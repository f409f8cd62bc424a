//! The freshness budget on AWS, component by component, for each stream-reading lane of the template:
//! from the collector's receipt of an event to the counter row a query reads. Figures are AWS's
//! documented ones where AWS documents them (enhanced fan-out ≈ 70 ms average; shared iterators polled
//! about once a second; DynamoDB single-digit milliseconds), and the design brief's measurements for the
//! propagation percentiles.

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

    /// The sum of the components' p99s: an upper bound (the p99s rarely coincide).
    pub fn p99_ms(&self) -> f64 {
        self.components.iter().map(|c| c.p99_ms).sum()
    }
}

/// The budget of one mapping.
pub fn budget(lane: &str, m: &KinesisMapping) -> Budget {
    let mut components = vec![
        Component {
            name: "collect (Function URL, warm)",
            p50_ms: 5.0,
            p99_ms: 20.0,
            source: "typical warm invoke; not an AWS guarantee",
        },
        Component {
            name: "PutRecords",
            p50_ms: 10.0,
            p99_ms: 30.0,
            source: "typical in-region PutRecords round trip",
        },
    ];
    components.push(if m.efo {
        Component {
            name: "enhanced fan-out push",
            p50_ms: 49.0,
            p99_ms: 109.0,
            source: "AWS: ≈70 ms average; measured p50 49 ms, p99 109 ms",
        }
    } else {
        Component {
            name: "shared-iterator polling",
            p50_ms: 630.0,
            p99_ms: 1600.0,
            source: "AWS: polled about once a second; measured p50 630 ms, p99 1.6 s",
        }
    });
    let window_ms = f64::from(m.window_secs) * 1000.0;
    components.push(Component {
        name: "batching window",
        p50_ms: window_ms / 2.0,
        p99_ms: window_ms,
        source: "MaximumBatchingWindowInSeconds of the mapping",
    });
    components.push(Component {
        name: "function (decode, aggregate)",
        p50_ms: 1.0,
        p99_ms: 5.0,
        source: "tally-domain benchmarks: millions of events/s",
    });
    components.push(Component {
        name: "table write",
        p50_ms: 5.0,
        p99_ms: 20.0,
        source: "AWS: DynamoDB single-digit millisecond latency",
    });
    Budget {
        lane: lane.to_owned(),
        efo: m.efo,
        window_secs: m.window_secs,
        components,
    }
}

/// Budgets of every stream-reading lane, fastest first.
pub fn budgets(stack: &StackModel) -> Vec<Budget> {
    let mut out: Vec<Budget> = stack
        .kinesis_mappings
        .iter()
        .map(|m| {
            let name = stack
                .functions
                .get(&m.function)
                .map_or(m.function.as_str(), |f| f.name.as_str());
            budget(name, m)
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

    #[track_caller]
    fn check(efo: bool, window: u32, p50: f64, p99: f64) {
        let b = budget("lane", &mapping(efo, window));
        assert_eq!((b.p50_ms(), b.p99_ms()), (p50, p99));
    }

    #[test]
    fn budgets_add_up() {
        // 5 + 10 + 49 + 0 + 1 + 5 = 70; 20 + 30 + 109 + 0 + 5 + 20 = 184.
        check(true, 0, 70.0, 184.0);
        // Polling: 5 + 10 + 630 + 0 + 1 + 5.
        check(false, 0, 651.0, 1675.0);
        // A 30 s window dominates.
        check(false, 30, 15651.0, 31675.0);
    }

    #[test]
    fn only_enhanced_fan_out_with_no_window_is_under_100ms_at_p50() {
        for (efo, window) in [(true, 0), (true, 1), (false, 0)] {
            let under = budget("l", &mapping(efo, window)).p50_ms() < 100.0;
            assert_eq!(under, efo && window == 0, "efo {efo} window {window}");
        }
    }
}
