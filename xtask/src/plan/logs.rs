//! CloudWatch Logs bytes of the functions, from the code that writes them.
//!
//! * **System lines**: Lambda's `START`/`END`/`REPORT` (text) or `platform.start`/`platform.report` (JSON) per
//!   invocation, unless the function's `LoggingConfig` has `SystemLogLevel: WARN` (read from the template,
//!   [`super::stack::FunctionModel::platform_log`]); sized by `tally_billing::lambda::platform_bytes`, the
//!   same generator the local cloud writes them with.
//! * **The stream lanes' metrics**: `tally_domain::emf::Window` lines, one per [`WINDOW_BATCHES`] batches or
//!   per [`WINDOW_MS`] of an instance (one instance per shard), sized by encoding a full window of the lane's
//!   modelled batches.
//! * Nothing else per invocation: the functions' per-batch summaries are `debug` lines and the hot functions'
//!   `ApplicationLogLevel` is `INFO`; warnings and errors are assumed rare. The compactor's and scaler's one
//!   line per run is left out (a few MB a month).

use tally_domain::emf::{BatchMetrics, Window, WINDOW_BATCHES, WINDOW_MS};

/// Bytes of one window line of `function` holding [`WINDOW_BATCHES`] batches of `records` records and
/// `events` events each, whose events waited about `latency_ms` (the line's size depends on the digits).
pub fn window_line_bytes(
    function: &'static str,
    records: f64,
    events: f64,
    latency_ms: f64,
) -> f64 {
    let mut window = Window::new(function);
    let events_n = events.round().max(1.0) as usize;
    let latency = latency_ms.round().max(1.0) as i64;
    let batch = BatchMetrics {
        function,
        now_ms: 1_765_000_000_000,
        records: records.round().max(1.0) as usize,
        events: events_n,
        failed_records: 0,
        // Three values spread ±50 % around the latency (the window's 100 order statistics keep about this
        // many digits; three per batch keep the encoding cheap, the line has 100 values either way).
        latencies_ms: vec![latency / 2, latency, latency * 3 / 2],
    };
    for _ in 0..WINDOW_BATCHES - 1 {
        window.push(&batch);
    }
    window.line(batch.now_ms).len() as f64
}

/// Window lines per second of a lane invoked `invocations_per_sec` times over `instances` instances: one per
/// [`WINDOW_BATCHES`] batches, at least one per [`WINDOW_MS`] per instance with traffic, at most one per
/// batch.
pub fn window_lines_per_sec(invocations_per_sec: f64, instances: f64) -> f64 {
    let per_batches = invocations_per_sec / WINDOW_BATCHES as f64;
    let per_age = instances / (WINDOW_MS as f64 / 1000.0);
    per_batches.max(per_age).min(invocations_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_per_second() {
        // 100 batches a second on 4 instances: one line a second (the age rule gives 4/60).
        assert!((window_lines_per_sec(100.0, 4.0) - 1.0).abs() < 1e-12);
        // One batch a second on 4 instances: the age rule, 4 lines a minute.
        assert!((window_lines_per_sec(1.0, 4.0) - 4.0 / 60.0).abs() < 1e-12);
        // A batch every two minutes: each batch ends the window its predecessor opened.
        assert!((window_lines_per_sec(1.0 / 120.0, 1.0) - 1.0 / 120.0).abs() < 1e-12);
        assert_eq!(window_lines_per_sec(0.0, 2.0), 0.0);
    }

    #[test]
    fn a_window_line_is_the_encoders_size() {
        let small = window_line_bytes("realtime", 1.0, 25.0, 40.0);
        let big = window_line_bytes("realtime", 100.0, 2500.0, 40_000.0);
        // Fixed part (~330 bytes) + 3 × 100 counts + 100 latencies.
        assert!((800.0..1500.0).contains(&small), "{small}");
        assert!(big > small + 500.0, "{big} vs {small}");
    }
}
