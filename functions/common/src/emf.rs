//! CloudWatch embedded metric format: one JSON line on stdout per batch, which CloudWatch Logs turns into
//! metrics without any API call from the function.

use serde_json::{json, Map, Value};

/// The metric namespace of every tally function.
pub const NAMESPACE: &str = "tally";
/// EMF accepts at most 100 values per metric in one line.
pub const MAX_VALUES: usize = 100;

/// The metrics of one applied batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMetrics<'a> {
    /// `realtime` or `deferred`; the `Function` dimension.
    pub function: &'a str,
    /// When the line is written, unix ms.
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

impl BatchMetrics<'_> {
    /// The EMF line. Latencies beyond [`MAX_VALUES`] are represented by evenly spaced order statistics of the
    /// sorted values (minimum and maximum included), so CloudWatch's percentiles stay close.
    pub fn to_line(&self) -> String {
        let mut root = Map::new();
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": self.now_ms,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": [
                        {"Name": "ReceiveToAppliedMs", "Unit": "Milliseconds"},
                        {"Name": "BatchRecords", "Unit": "Count"},
                        {"Name": "BatchEvents", "Unit": "Count"},
                        {"Name": "FailedRecords", "Unit": "Count"},
                    ],
                }],
            }),
        );
        root.insert("Function".to_owned(), json!(self.function));
        root.insert(
            "ReceiveToAppliedMs".to_owned(),
            json!(sample(&self.latencies_ms)),
        );
        root.insert("BatchRecords".to_owned(), json!(self.records));
        root.insert("BatchEvents".to_owned(), json!(self.events));
        root.insert("FailedRecords".to_owned(), json!(self.failed_records));
        Value::Object(root).to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[i64], expect: &[i64]) {
        assert_eq!(sample(values), expect);
    }

    #[test]
    fn samples() {
        check(&[], &[]);
        check(&[3, 1, 2], &[1, 2, 3]);
        let many: Vec<i64> = (0..1000).rev().collect();
        let got = sample(&many);
        assert_eq!(got.len(), MAX_VALUES);
        assert_eq!((got[0], got[49], got[99]), (0, 494, 999));
    }

    #[test]
    fn line_is_valid_emf() {
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
        // Every declared metric and dimension is present at the root, as EMF requires.
        for metric in value["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("metrics")
        {
            let name = metric["Name"].as_str().expect("name");
            assert!(value.get(name).is_some(), "{name} missing");
        }
    }
}
