//! CloudWatch embedded metric format: the lanes' batch metrics, gathered in windows and written as one JSON
//! line per window on stdout (`tally_domain::emf`, where the format and the window rule live).

pub use tally_domain::emf::{
    BatchMetrics, Window, MAX_VALUES, NAMESPACE, WINDOW_BATCHES, WINDOW_MS,
};
