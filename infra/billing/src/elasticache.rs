//! ElastiCache Serverless (Valkey): ElastiCache Processing Units (ECPU) for requests, GB-hours for the data
//! stored.
//!
//! AWS's published rule: a simple read or write consumes 1 ECPU per kilobyte of data it transfers (a `GET`
//! that transfers 3.2 KB consumes 3.2 ECPU), at least 1 ECPU per request; a command that needs more vCPU time
//! (a script, a command over many elements) consumes proportionally more. Storage is the average of the data
//! stored, sampled several times a minute, billed in GB-hours with a minimum of 100 MB per Valkey cache.
//!
//! [`request_ecpu`] is the rule for one request whose size is known. What a server's counters give (the local
//! cloud's meter reads `INFO commandstats` and `INFO stats`) is only totals: commands executed and bytes in and
//! out, not the size of each command. [`ecpu_from_totals`] is the estimate from totals, `max(commands,
//! bytes / 1 KB)`; see its documentation for the direction of its error.

/// Bytes of one ECPU's worth of transfer: a kilobyte of 1,024 bytes.
pub const BYTES_PER_ECPU: u64 = 1024;

/// The least a Valkey serverless cache is billed for storing: 100 MB (of 2^20 bytes).
pub const MIN_STORAGE_BYTES: u64 = 100 * 1024 * 1024;

/// Bytes in a GB as storage is priced (2^30, as for the other services here).
pub const BYTES_PER_GB: f64 = 1_073_741_824.0;

/// ECPU of one simple request that transferred `bytes` (request and response): 1 per KB, at least 1.
pub fn request_ecpu(bytes: u64) -> f64 {
    (bytes as f64 / BYTES_PER_ECPU as f64).max(1.0)
}

/// ECPU estimated from totals: `commands` executed (commands inside a script counted one each, as the server
/// counts them) that transferred `bytes` in all, in and out.
///
/// `max(commands, bytes / 1 KB)`. Against the per-request rule summed over the same requests this is a lower
/// bound: `max(Σ 1, Σ kbᵢ) ≤ Σ max(1, kbᵢ)`, with equality when every request is under 1 KB (the counter
/// store's claims and increments) or every request is over it. Counting a script's inner commands one ECPU
/// each stands in for the vCPU time AWS charges a script for; a script's own bytes are in `bytes`.
pub fn ecpu_from_totals(commands: u64, bytes: u64) -> f64 {
    (commands as f64).max(bytes as f64 / BYTES_PER_ECPU as f64)
}

/// The bytes billed for storing `stored` bytes: at least [`MIN_STORAGE_BYTES`].
pub fn billed_storage_bytes(stored: u64) -> u64 {
    stored.max(MIN_STORAGE_BYTES)
}

/// GB-hours of storing `stored` bytes for `millis` milliseconds (the minimum applied).
pub fn storage_gb_hours(stored: u64, millis: u64) -> f64 {
    billed_storage_bytes(stored) as f64 / BYTES_PER_GB * millis as f64 / 3_600_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn a_request_costs_one_ecpu_per_kilobyte_and_at_least_one() {
        for (bytes, ecpu) in [
            (0, 1.0),
            (100, 1.0),
            (1024, 1.0),
            (2048, 2.0),
            (3277, 3277.0 / 1024.0),
        ] {
            assert!(
                close(request_ecpu(bytes), ecpu),
                "{bytes} B: {}",
                request_ecpu(bytes)
            );
        }
    }

    #[test]
    fn totals_give_the_larger_of_commands_and_kilobytes() {
        for (commands, bytes, ecpu) in [
            (0, 0, 0.0),
            (10, 2048, 10.0),
            (1, 10 * 1024, 10.0),
            (1000, 100 * 1024, 1000.0),
            (1000, 2000 * 1024, 2000.0),
        ] {
            assert!(
                close(ecpu_from_totals(commands, bytes), ecpu),
                "{commands} {bytes}"
            );
        }
    }

    #[test]
    fn totals_never_exceed_the_per_request_sum() {
        // Mixed sizes: the estimate is a lower bound of the per-request rule.
        let sizes = [10u64, 100, 5000, 200, 40_000, 1024, 1];
        let exact: f64 = sizes.iter().map(|&b| request_ecpu(b)).sum();
        let estimate = ecpu_from_totals(sizes.len() as u64, sizes.iter().sum());
        assert!(estimate <= exact + 1e-9, "{estimate} > {exact}");
        // All small: exact.
        let small = [10u64, 100, 500, 1000];
        let exact: f64 = small.iter().map(|&b| request_ecpu(b)).sum();
        assert!(close(ecpu_from_totals(4, small.iter().sum()), exact));
    }

    #[test]
    fn storage_is_billed_with_a_100_mb_minimum() {
        assert_eq!(billed_storage_bytes(0), MIN_STORAGE_BYTES);
        assert_eq!(billed_storage_bytes(5), MIN_STORAGE_BYTES);
        assert_eq!(billed_storage_bytes(1 << 30), 1 << 30);
        assert!(close(storage_gb_hours(1 << 30, 3_600_000), 1.0));
        assert!(close(storage_gb_hours(0, 3_600_000), 100.0 / 1024.0));
        assert!(close(storage_gb_hours(0, 0), 0.0));
    }
}
