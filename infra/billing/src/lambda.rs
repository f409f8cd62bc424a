//! Lambda: billed duration and GB-seconds.

/// Lambda prices memory in GB of 1,024 MB.
pub const MB_PER_GB: f64 = 1024.0;

/// The billed duration of an invocation that ran `micros`: rounded up to the next millisecond, at least 1 ms.
pub fn billed_ms(micros: u64) -> u64 {
    micros.div_ceil(1000).max(1)
}

/// GB-seconds of `billed_ms` at `memory_mb`.
pub fn gb_seconds(billed_ms: u64, memory_mb: u32) -> f64 {
    billed_ms as f64 / 1000.0 * f64::from(memory_mb) / MB_PER_GB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_rounds_up_to_the_millisecond() {
        assert_eq!(billed_ms(0), 1);
        assert_eq!(billed_ms(1), 1);
        assert_eq!(billed_ms(1000), 1);
        assert_eq!(billed_ms(1001), 2);
    }

    #[test]
    fn gb_seconds_of_a_second_at_one_gb() {
        assert!((gb_seconds(1000, 1024) - 1.0).abs() < 1e-12);
        assert!((gb_seconds(100, 128) - 0.0125).abs() < 1e-12);
    }
}
