//! CloudWatch embedded metric format (EMF): the stream lanes' batch metrics as JSON log lines, which
//! CloudWatch Logs turns into metrics without any API call from the function.
//!
//! A line is log bytes too (CloudWatch Logs ingestion is priced per GB), and its fixed part (the `_aws`
//! metadata) is most of a one-batch line. So the lanes do not write one line per batch: a [`Window`] gathers
//! up to [`WINDOW_BATCHES`] batches, or the batches of [`WINDOW_MS`], and writes one line for them. The per-batch
//! metrics keep their meaning, because EMF takes up to [`MAX_VALUES`] values per metric in one line, each a
//! sample: `BatchRecords`, `BatchEvents` and `FailedRecords` carry one value per batch of the window;
//! `ReceiveToAppliedMs` carries evenly spaced order statistics of every event's latency in the window (minimum
//! and maximum included), so CloudWatch's percentiles stay close. What a window holds when its instance is
//! shut down is not written (Lambda gives a function no signal at shutdown): at most
//! [`WINDOW_MS`] of metrics per instance.
//!
//! Every embedded-metric line of every function is built here: the lanes' windows ([`Window::line`]) and the
//! single counts of the HTTP functions ([`count_line`]: collect's `PixelRejected`, `PixelUnsigned`). All of them
//! are in [`NAMESPACE`] under the one dimension [`DIMENSION`], the function's name.

use serde_json::{json, Map, Value};

/// The metric namespace of every tally function.
pub const NAMESPACE: &str = "tally";
/// The one dimension of every tally metric: the function's name (`collect`, `realtime`, `deferred`).
pub const DIMENSION: &str = "Function";
/// EMF accepts at most 100 values per metric in one line.
pub const MAX_VALUES: usize = 100;
/// A window holds at most this many batches (one value each per batch metric).
pub const WINDOW_BATCHES: usize = MAX_VALUES;
/// A window is written at the first batch at least this long after its first batch.
pub const WINDOW_MS: i64 = 60_000;

/// The metrics of one applied batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMetrics {
    /// `realtime` or `deferred`; the `Function` dimension.
    pub function: &'static str,
    /// When the batch's counters were applied, unix ms.
    pub now_ms: i64,
    /// Records in the invocation.
    pub records: usize,
    /// Events decoded from them.
    pub events: usize,
    /// Records reported as failed (`batchItemFailures`).
    pub failed_records: usize,
    /// Per event: collect's receive time to the moment the counters were applied, ms.
    pub latencies_ms: Vec<i64>,
}

impl BatchMetrics {
    /// The EMF line of this batch alone.
    pub fn to_line(&self) -> String {
        let mut window = Window::new(self.function);
        window.push(self);
        window.line(self.now_ms)
    }
}

/// The batches since the last line written, as [`Window::push`] gathers them.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    function: &'static str,
    first_ms: Option<i64>,
    records: Vec<usize>,
    events: Vec<usize>,
    failed: Vec<usize>,
    /// Each batch's latencies as at most [`MAX_VALUES`] order statistics, each standing for `weight` events.
    latencies: Vec<(i64, f64)>,
}

impl Window {
    /// An empty window of `function` (`realtime`, `deferred`).
    pub fn new(function: &'static str) -> Window {
        Window {
            function,
            first_ms: None,
            records: Vec::new(),
            events: Vec::new(),
            failed: Vec::new(),
            latencies: Vec::new(),
        }
    }

    /// Adds a batch; returns the line to write when the window is full ([`WINDOW_BATCHES`] batches) or old
    /// ([`WINDOW_MS`] since its first batch), and starts a new window.
    pub fn push(&mut self, batch: &BatchMetrics) -> Option<String> {
        let first = *self.first_ms.get_or_insert(batch.now_ms);
        self.records.push(batch.records);
        self.events.push(batch.events);
        self.failed.push(batch.failed_records);
        let sample = sample(&batch.latencies_ms);
        if !sample.is_empty() {
            let weight = batch.latencies_ms.len() as f64 / sample.len() as f64;
            self.latencies
                .extend(sample.into_iter().map(|v| (v, weight)));
        }
        let due = self.records.len() >= WINDOW_BATCHES || batch.now_ms - first >= WINDOW_MS;
        due.then(|| {
            let line = self.line(batch.now_ms);
            *self = Window::new(self.function);
            line
        })
    }

    /// Batches gathered and not written yet.
    pub fn batches(&self) -> usize {
        self.records.len()
    }

    /// The line for the batches gathered, stamped `now_ms`.
    pub fn line(&self, now_ms: i64) -> String {
        line(
            now_ms,
            self.function,
            &[
                ("ReceiveToAppliedMs", "Milliseconds"),
                ("BatchRecords", "Count"),
                ("BatchEvents", "Count"),
                ("FailedRecords", "Count"),
            ],
            [
                (
                    "ReceiveToAppliedMs",
                    json!(weighted_sample(&self.latencies)),
                ),
                ("BatchRecords", values(&self.records)),
                ("BatchEvents", values(&self.events)),
                ("FailedRecords", values(&self.failed)),
            ],
        )
    }
}

/// One line counting one occurrence of `metric` (unit `Count`) in `function`, with `fields` (what happened:
/// a rule, a reason) beside it as plain members, searchable in the log and not dimensions.
pub fn count_line(function: &str, now_ms: i64, metric: &str, fields: &[(&str, Value)]) -> String {
    let members = std::iter::once((metric, json!(1))).chain(fields.iter().cloned());
    line(now_ms, function, &[(metric, "Count")], members)
}

/// An EMF line: the `_aws` metadata declaring `metrics` (name, unit) in [`NAMESPACE`] under [`DIMENSION`],
/// the dimension's value `function`, then `members` (each declared metric's value among them).
fn line<'a>(
    now_ms: i64,
    function: &str,
    metrics: &[(&str, &str)],
    members: impl IntoIterator<Item = (&'a str, Value)>,
) -> String {
    let declared: Vec<Value> = metrics
        .iter()
        .map(|(name, unit)| json!({"Name": name, "Unit": unit}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": declared,
            }],
        }),
    );
    root.insert(DIMENSION.to_owned(), json!(function));
    for (name, value) in members {
        root.insert(name.to_owned(), value);
    }
    Value::Object(root).to_string()
}

/// One value as a number, several as an array (both are EMF).
fn values(v: &[usize]) -> Value {
    match v {
        [one] => json!(one),
        many => json!(many),
    }
}

/// At most [`MAX_VALUES`] values representing `values`' distribution.
fn sample(values: &[i64]) -> Vec<i64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.len() <= MAX_VALUES {
        return sorted;
    }
    let last = sorted.len() - 1;
    (0..MAX_VALUES)
        .map(|i| sorted[i * last / (MAX_VALUES - 1)])
        .collect()
}

/// At most [`MAX_VALUES`] evenly spaced order statistics of weighted values (minimum and maximum included).
fn weighted_sample(values: &[(i64, f64)]) -> Vec<i64> {
    let mut sorted = values.to_vec();
    sorted.sort_by_key(|(v, _)| *v);
    if sorted.len() <= MAX_VALUES {
        return sorted.into_iter().map(|(v, _)| v).collect();
    }
    let total: f64 = sorted.iter().map(|(_, w)| w).sum();
    let mut out = Vec::with_capacity(MAX_VALUES);
    let (mut at, mut below) = (0, 0.0);
    for i in 0..MAX_VALUES {
        // The rank of the i-th statistic, from the first value's weight to the total.
        let rank = i as f64 / (MAX_VALUES - 1) as f64 * total;
        while at + 1 < sorted.len() && below + sorted[at].1 < rank {
            below += sorted[at].1;
            at += 1;
        }
        out.push(sorted[at].0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(now_ms: i64, records: usize, latencies: Vec<i64>) -> BatchMetrics {
        BatchMetrics {
            function: "realtime",
            now_ms,
            records,
            events: latencies.len(),
            failed_records: 0,
            latencies_ms: latencies,
        }
    }

    #[test]
    fn samples() {
        assert_eq!(sample(&[]), Vec::<i64>::new());
        assert_eq!(sample(&[3, 1, 2]), vec![1, 2, 3]);
        let many: Vec<i64> = (0..1000).rev().collect();
        let got = sample(&many);
        assert_eq!(got.len(), MAX_VALUES);
        assert_eq!((got[0], got[49], got[99]), (0, 494, 999));
    }

    #[test]
    fn weighted_samples_follow_the_weights() {
        // 100 values of weight 1 at 1..=100 and one value 1000 standing for 100 events: the upper half of
        // the statistics is 1000.
        let mut values: Vec<(i64, f64)> = (1..=100).map(|v| (v, 1.0)).collect();
        values.push((1000, 100.0));
        let got = weighted_sample(&values);
        assert_eq!(got.len(), MAX_VALUES);
        assert_eq!(got[0], 1);
        assert_eq!(got[99], 1000);
        assert!(got[40] < 100 && got[60] == 1000, "{got:?}");
    }

    #[test]
    fn one_batch_line_is_valid_emf() {
        let line = BatchMetrics {
            function: "realtime",
            now_ms: 1_700_000_000_000,
            records: 3,
            events: 40,
            failed_records: 1,
            latencies_ms: vec![5, 2],
        }
        .to_line();
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["_aws"]["Timestamp"], 1_700_000_000_000i64);
        assert_eq!(value["_aws"]["CloudWatchMetrics"][0]["Namespace"], "tally");
        assert_eq!(value["Function"], "realtime");
        assert_eq!(value["ReceiveToAppliedMs"], json!([2, 5]));
        assert_eq!(value["BatchRecords"], 3);
        assert_eq!(value["FailedRecords"], 1);
        // Every declared metric and dimension is present at the root, as EMF requires.
        for metric in value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
        {
            let name = metric["Name"].as_str().expect("name");
            assert!(value.get(name).is_some(), "{name} missing");
        }
    }

    #[test]
    fn a_count_line_declares_its_metric_under_the_function_dimension() {
        let line = count_line(
            "collect",
            1_000,
            "PixelRejected",
            &[("field", json!("campaign_id")), ("rule", json!("missing"))],
        );
        assert!(!line.contains('\n'));
        let value: Value = serde_json::from_str(&line).expect("json");
        let expected = json!({
            "_aws": {
                "Timestamp": 1_000,
                "CloudWatchMetrics": [{
                    "Namespace": "tally",
                    "Dimensions": [["Function"]],
                    "Metrics": [{"Name": "PixelRejected", "Unit": "Count"}],
                }],
            },
            "Function": "collect",
            "PixelRejected": 1,
            "field": "campaign_id",
            "rule": "missing",
        });
        assert_eq!(value, expected);
    }

    #[test]
    fn window_and_count_lines_share_the_dimension() {
        let window: Value = serde_json::from_str(&batch(5, 1, vec![1]).to_line()).expect("json");
        let count: Value =
            serde_json::from_str(&count_line("collect", 5, "PixelUnsigned", &[])).expect("json");
        for line in [&window, &count] {
            let meta = &line["_aws"]["CloudWatchMetrics"][0];
            assert_eq!(meta["Dimensions"], json!([[DIMENSION]]));
            assert!(line.get(DIMENSION).is_some(), "{line}");
        }
    }

    #[test]
    fn a_window_writes_one_line_per_hundred_batches() {
        let mut window = Window::new("realtime");
        for i in 0..(WINDOW_BATCHES - 1) {
            assert_eq!(
                window.push(&batch(1_000 + i as i64, 2, vec![i as i64; 3])),
                None
            );
        }
        let line = window.push(&batch(2_000, 7, vec![9])).expect("full window");
        assert_eq!(window.batches(), 0, "a new window starts");
        let value: Value = serde_json::from_str(&line).expect("json");
        let records = value["BatchRecords"]
            .as_array()
            .expect("one value per batch");
        assert_eq!(records.len(), WINDOW_BATCHES);
        assert_eq!(records[WINDOW_BATCHES - 1], 7);
        assert_eq!(value["BatchEvents"][0], 3);
        assert_eq!(
            value["ReceiveToAppliedMs"]
                .as_array()
                .expect("values")
                .len(),
            MAX_VALUES
        );
        assert_eq!(value["_aws"]["Timestamp"], 2_000);
    }

    #[test]
    fn an_old_window_is_written_at_its_next_batch() {
        let mut window = Window::new("deferred");
        assert_eq!(window.push(&batch(0, 1, vec![1])), None);
        assert_eq!(window.push(&batch(WINDOW_MS - 1, 1, vec![1])), None);
        let line = window
            .push(&batch(WINDOW_MS, 1, vec![4]))
            .expect("old window");
        let value: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(value["BatchRecords"], json!([1, 1, 1]));
        assert_eq!(value["ReceiveToAppliedMs"], json!([1, 1, 4]));
        assert_eq!(value["Function"], "deferred");
    }
}
