//! Kinesis Data Streams: PUT payload units (provisioned) and billed ingress (on-demand).

/// Bytes of one PUT payload unit: each record is charged in 25 KB units, rounded up.
pub const PUT_PAYLOAD_UNIT_BYTES: u64 = 25 * 1024;

/// On-demand rounds each record up to this many bytes.
pub const ON_DEMAND_ROUNDING_BYTES: u64 = 1024;

/// The PUT payload units of one record of `bytes` (data + partition key): at least one.
pub fn put_payload_units(bytes: u64) -> u64 {
    bytes.div_ceil(PUT_PAYLOAD_UNIT_BYTES).max(1)
}

/// The KB on-demand bills for one record of `bytes`: rounded up to 1 KB, at least one.
pub fn on_demand_kb(bytes: u64) -> u64 {
    bytes.div_ceil(ON_DEMAND_ROUNDING_BYTES).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_units_round_up_per_record() {
        assert_eq!(put_payload_units(0), 1);
        assert_eq!(put_payload_units(1), 1);
        assert_eq!(put_payload_units(25 * 1024), 1);
        assert_eq!(put_payload_units(25 * 1024 + 1), 2);
        assert_eq!(put_payload_units(1024 * 1024), 41);
    }

    #[test]
    fn on_demand_rounds_to_kilobytes() {
        assert_eq!(on_demand_kb(1), 1);
        assert_eq!(on_demand_kb(1024), 1);
        assert_eq!(on_demand_kb(1025), 2);
    }
}
