//! DynamoDB: item sizes and capacity units, by AWS's published rules ("DynamoDB item sizes and formats",
//! "Read/write capacity mode").
//!
//! Items are DynamoDB JSON, as on the wire: `{"name": {"S": "..."}, "n": {"N": "12"}, ...}`.
//!
//! * the size of an item is the sum over its attributes of the name's UTF-8 bytes plus the value's size;
//! * a string is its UTF-8 bytes; a binary its raw bytes (the wire carries base64); a null or boolean 1 byte;
//! * a number is 1 byte per two significant digits (leading and trailing zeros trimmed), rounded up, plus 1 byte;
//! * a list or map is 3 bytes plus, per element, 1 byte and the element's size (for a map, name + value);
//! * a set is the sum of its elements' sizes.
//!
//! Writes are charged one unit per started 1 KB, reads one unit per started 4 KB (half of it when eventually
//! consistent). A `Query` or `Scan` is charged on the total size of the items it read, not item by item.

use serde_json::{Map, Value};

/// Bytes one write unit covers.
pub const WRITE_UNIT_BYTES: u64 = 1024;
/// Bytes one read unit covers (strongly consistent).
pub const READ_UNIT_BYTES: u64 = 4096;

/// Bytes of an item (a map of attribute names to DynamoDB JSON values).
pub fn item_size(item: &Map<String, Value>) -> u64 {
    item.iter()
        .map(|(name, value)| name.len() as u64 + value_size(value))
        .sum()
}

/// Bytes of one attribute value in DynamoDB JSON (`{"S": ...}`, `{"N": ...}`, `{"M": {...}}`, ...). A value
/// that is not DynamoDB JSON counts as its JSON text, so a malformed item is never free.
pub fn value_size(value: &Value) -> u64 {
    let Some((tag, inner)) = value.as_object().and_then(|o| o.iter().next()) else {
        return value.to_string().len() as u64;
    };
    match (tag.as_str(), inner) {
        ("S", Value::String(s)) => s.len() as u64,
        ("N", Value::String(n)) => number_size(n),
        ("B", Value::String(b)) => base64_len(b),
        ("BOOL" | "NULL", _) => 1,
        ("SS", Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.len() as u64)
            .sum(),
        ("NS", Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(number_size)
            .sum(),
        ("BS", Value::Array(items)) => items.iter().filter_map(Value::as_str).map(base64_len).sum(),
        ("L", Value::Array(items)) => 3 + items.iter().map(|v| 1 + value_size(v)).sum::<u64>(),
        ("M", Value::Object(members)) => {
            3 + members
                .iter()
                .map(|(name, v)| 1 + name.len() as u64 + value_size(v))
                .sum::<u64>()
        }
        _ => value.to_string().len() as u64,
    }
}

/// Bytes of a number given as its decimal text: 1 byte per two significant digits, rounded up, plus 1.
pub fn number_size(text: &str) -> u64 {
    let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.div_ceil(2) + 1
}

/// Raw bytes of base64 text (padding and whitespace ignored).
fn base64_len(text: &str) -> u64 {
    let symbols = text
        .bytes()
        .filter(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
        .count() as u64;
    symbols * 3 / 4
}

/// Write units for writing an item of `bytes`: one per started KB, at least one.
pub fn write_units(bytes: u64) -> f64 {
    bytes.div_ceil(WRITE_UNIT_BYTES).max(1) as f64
}

/// Read units for reading `bytes` (one item, or a whole `Query` page): one per started 4 KB, at least one, half
/// of it when eventually consistent.
pub fn read_units(bytes: u64, consistent: bool) -> f64 {
    let units = bytes.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    if consistent {
        units
    } else {
        units / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn size(item: Value) -> u64 {
        item_size(item.as_object().expect("an item"))
    }

    #[test]
    fn strings_numbers_binaries_and_flags() {
        assert_eq!(size(json!({"pk": {"S": "campaign"}})), 2 + 8);
        // 12345 has 5 significant digits: 3 bytes + 1.
        assert_eq!(size(json!({"n": {"N": "12345"}})), 1 + 4);
        // Leading and trailing zeros are trimmed: 00120.500 is 1205.
        assert_eq!(number_size("00120.500"), 3);
        assert_eq!(number_size("0"), 1);
        assert_eq!(size(json!({"b": {"B": "AAECAw=="}})), 1 + 4);
        assert_eq!(
            size(json!({"t": {"BOOL": true}, "z": {"NULL": true}})),
            2 + 2
        );
    }

    #[test]
    fn lists_and_maps_carry_overhead() {
        assert_eq!(size(json!({"l": {"L": []}})), 1 + 3);
        // 3 + (1 + 1) + (1 + 2)
        assert_eq!(
            size(json!({"l": {"L": [{"S": "a"}, {"N": "12"}]}})),
            1 + 3 + 2 + 3
        );
        // 3 + (1 + name 1 + "xy" 2)
        assert_eq!(size(json!({"m": {"M": {"k": {"S": "xy"}}}})), 1 + 3 + 4);
    }

    #[test]
    fn units_round_up() {
        assert_eq!(write_units(1), 1.0);
        assert_eq!(write_units(1024), 1.0);
        assert_eq!(write_units(1025), 2.0);
        assert_eq!(read_units(4096, true), 1.0);
        assert_eq!(read_units(4097, true), 2.0);
        assert_eq!(read_units(4097, false), 1.0);
    }
}
