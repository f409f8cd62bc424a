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

/// The format of a function's logs (`LoggingConfig.LogFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The system line Lambda writes when invocation `request_id` starts (`START`, or a `platform.start` record),
/// at `time` (RFC 3339).
pub fn start_line(format: LogFormat, request_id: &str, time: &str) -> String {
    match format {
        LogFormat::Json => serde_json::json!({
            "time": time,
            "type": "platform.start",
            "record": { "requestId": request_id, "version": "$LATEST" },
        })
        .to_string(),
        LogFormat::Text => format!("START RequestId: {request_id} Version: $LATEST"),
    }
}

/// The system lines Lambda writes when invocation `request_id` ends after `micros` (`END` and `REPORT`, or
/// one `platform.report` record). The memory used is not known here; it is written as 32 MB (two digits, as
/// tally's functions use).
pub fn end_lines(
    format: LogFormat,
    request_id: &str,
    time: &str,
    micros: u64,
    memory_mb: u32,
) -> Vec<String> {
    let ms = micros as f64 / 1000.0;
    let billed = billed_ms(micros);
    match format {
        LogFormat::Json => vec![serde_json::json!({
            "time": time,
            "type": "platform.report",
            "record": {
                "requestId": request_id,
                "metrics": {
                    "durationMs": (ms * 100.0).round() / 100.0,
                    "billedDurationMs": billed,
                    "memorySizeMB": memory_mb,
                    "maxMemoryUsedMB": 32,
                },
                "status": "success",
            },
        })
        .to_string()],
        LogFormat::Text => vec![
            format!("END RequestId: {request_id}"),
            format!(
                "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {billed} ms\tMemory Size: {memory_mb} MB\tMax Memory Used: 32 MB\t"
            ),
        ],
    }
}

/// The bytes of one invocation's system lines (start and end), with a request id and a time as Lambda writes
/// them (36 and 24 characters).
pub fn platform_bytes(format: LogFormat, micros: u64, memory_mb: u32) -> u64 {
    let id = "8fc6f963-411b-58b5-8483-a32130c0f45d";
    let time = "2026-12-06T09:00:00.000Z";
    let start = start_line(format, id, time).len();
    let end: usize = end_lines(format, id, time, micros, memory_mb)
        .iter()
        .map(String::len)
        .sum();
    (start + end) as u64
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
