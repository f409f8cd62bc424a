//! Record ages (how long a record took from the stream to its function's success), kept as counts per bucket:
//! the one place for the bucket rule and for reading quantiles from it. The local cloud's meter records them
//! (`mappings.*.record_age_ms` of its snapshot); the load test (`tally-traffic`) reads that JSON back and
//! reports the quantiles.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A distribution of ages in milliseconds, kept as counts per bucket so a snapshot stays small: 1 ms wide
/// below 100 ms, 10 ms wide below 1 s, 100 ms wide beyond; each bucket is named by its upper bound (an age is
/// rounded up to its bucket), so a quantile read from it never understates.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ages(pub BTreeMap<u64, u64>);

impl Ages {
    /// The bucket (its upper bound) of an age of `ms`.
    pub fn bucket(ms: u64) -> u64 {
        match ms {
            0..100 => ms,
            100..1000 => ms.div_ceil(10) * 10,
            _ => ms.div_ceil(100) * 100,
        }
    }

    /// The buckets of `doc` as the meter's snapshot writes them (a JSON object from each bucket's upper bound,
    /// a number as a key, to its count); what is not a bucket and a count is left out (an absent field is
    /// empty).
    pub fn of(doc: &Value) -> Ages {
        Ages(
            doc.as_object()
                .into_iter()
                .flatten()
                .filter_map(|(bound, count)| Some((bound.parse().ok()?, count.as_u64()?)))
                .collect(),
        )
    }

    pub fn add(&mut self, ms: u64) {
        *self.0.entry(Ages::bucket(ms)).or_default() += 1;
    }

    pub fn count(&self) -> u64 {
        self.0.values().sum()
    }

    /// The `q` quantile (nearest rank, `q` in 0..=1) as its bucket's upper bound; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((n - 1) as f64 * q.clamp(0.0, 1.0)).round() as u64;
        let mut seen = 0;
        for (&bound, &count) in &self.0 {
            seen += count;
            if seen > rank {
                return Some(bound);
            }
        }
        self.0.keys().next_back().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_round_up_to_their_bucket_and_read_quantiles_by_rank() {
        assert_eq!(
            [0, 7, 99, 100, 101, 999, 1000, 1001, 12_345].map(Ages::bucket),
            [0, 7, 99, 100, 110, 1000, 1000, 1100, 12_400]
        );
        let mut ages = Ages::default();
        assert_eq!(ages.quantile(0.5), None);
        for ms in [3, 3, 5, 250, 4_321] {
            ages.add(ms);
        }
        assert_eq!(ages.count(), 5);
        assert_eq!(ages.quantile(0.0), Some(3));
        assert_eq!(ages.quantile(0.5), Some(5));
        assert_eq!(ages.quantile(0.75), Some(250));
        assert_eq!(ages.quantile(1.0), Some(4_400));
        // Kept small in the snapshot: buckets, not samples; read back as written.
        let json = serde_json::to_value(&ages).expect("JSON");
        assert_eq!(json.as_object().expect("an object").len(), 4);
        assert_eq!(
            serde_json::from_value::<Ages>(json).expect("read back"),
            ages
        );
    }
}
