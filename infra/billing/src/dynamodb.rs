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
//! consistent). A `Query` or `Scan` is charged on the total size of the items it read, not item by item; a
//! `BatchGetItem` or `BatchWriteItem` item by item. A write is sized on the larger of the item before and after it
//! (a delete on the deleted item), and costs at least one unit even when there was nothing to write or delete;
//! a conditional write whose condition fails is charged the same. Transactions (`TransactWriteItems`,
//! `TransactGetItems`) cost twice the units of the same plain requests ("DynamoDB read and write operations",
//! "Capacity units consumed by conditional writes", "Capacity management for transactions").

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

/// Write units of a write that changes an item of `before` bytes (`None`: there was none) into one of `after`
/// bytes (`None`: deleted): the larger of the two, rounded up to 1 KB, at least one unit.
pub fn change_units(before: Option<u64>, after: Option<u64>) -> f64 {
    write_units(before.unwrap_or(0).max(after.unwrap_or(0)))
}

/// Write units of one action of a `TransactWriteItems` on an item of `bytes`: twice a plain write.
pub fn transactional_write_units(bytes: u64) -> f64 {
    2.0 * write_units(bytes)
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

/// Read units of one item of a `TransactGetItems` of `bytes`: twice a strongly consistent read.
pub fn transactional_read_units(bytes: u64) -> f64 {
    2.0 * read_units(bytes, true)
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

    const KB: u64 = 1024;

    /// The worked examples of AWS's "DynamoDB read and write operations" page, one by one.
    #[test]
    fn aws_documented_read_examples() {
        // "reading a 3,500-byte item consumes the same throughput as reading a 4 KB item"
        assert_eq!(read_units(3_500, true), read_units(4 * KB, true));
        assert_eq!(read_units(3_500, true), 1.0);
        assert_eq!(read_units(3_500, false), 0.5);
        // "if your item size is 8 KB, you require 2 read units to sustain one strongly consistent read, 1 read
        // unit if you choose eventually consistent reads, or 4 read units for a transactional read request"
        assert_eq!(read_units(8 * KB, true), 2.0);
        assert_eq!(read_units(8 * KB, false), 1.0);
        assert_eq!(transactional_read_units(8 * KB), 4.0);
        // GetItem: "If you read a 10 KB item, DynamoDB rounds the item size to 12 KB."
        assert_eq!(read_units(10 * KB, true), 3.0);
        // BatchGetItem: "reads a 1.5 KB item and a 6.5 KB item ... calculates the size as 12 KB (4 KB + 8 KB),
        // not 8 KB (1.5 KB + 6.5 KB)": each item is rounded on its own.
        let batch = read_units(3 * KB / 2, true) + read_units(13 * KB / 2, true);
        assert_eq!(batch, 3.0);
        assert_ne!(batch, read_units(3 * KB / 2 + 13 * KB / 2, true));
        // Query: "returns 10 items whose combined size is 40.8 KB. DynamoDB rounds the item size for the
        // operation to 44 KB"; "1500 items of 64 bytes each, the cumulative size is 96 KB".
        assert_eq!(read_units(40 * KB + 820, true), 11.0);
        assert_eq!(read_units(1_500 * 64, true), 24.0);
        assert_eq!(read_units(1_500 * 64, false), 12.0);
    }

    #[test]
    fn aws_documented_write_examples() {
        // "if you put or delete an item of 1.6 KB, DynamoDB rounds the item size up to 2 KB"
        assert_eq!(write_units(16 * KB / 10), 2.0);
        assert_eq!(change_units(None, Some(16 * KB / 10)), 2.0);
        assert_eq!(change_units(Some(16 * KB / 10), None), 2.0);
        // BatchWriteItem: "writes a 500-byte item and a 3.5 KB item, DynamoDB calculates the size as 5 KB
        // (1 KB + 4 KB), not 4 KB (500 bytes + 3.5 KB)"
        assert_eq!(write_units(500) + write_units(7 * KB / 2), 5.0);
        // UpdateItem: "the larger of the before and after item sizes"; a failed conditional write: "an existing
        // item is 300 KB. The new item you're trying to create or update is 310 KB. The write capacity units
        // consumed will be 310 KB".
        assert_eq!(change_units(Some(300 * KB), Some(310 * KB)), 310.0);
        assert_eq!(change_units(Some(310 * KB), Some(300 * KB)), 310.0);
        // Nothing before nor after (a delete of a missing item): the one-unit minimum.
        assert_eq!(change_units(None, None), 1.0);
        // "Transactional write requests require 2 write units per 1 KB item."
        assert_eq!(transactional_write_units(KB), 2.0);
        assert_eq!(transactional_write_units(16 * KB / 10), 4.0);
    }

    /// "DynamoDB item sizes and formats", rule by rule, on items whose size is worked out by hand.
    #[test]
    fn aws_documented_size_rules() {
        // Strings: UTF-8 bytes of the name + UTF-8 bytes of the value ("é" is 2 bytes, "€" 3).
        assert_eq!(size(json!({"café": {"S": "€"}})), 5 + 3);
        // Numbers: "1 byte per two significant digits" + 1; leading and trailing zeros trimmed, so 1000 and 1
        // are the same size, and the sign, the point and the exponent are free.
        assert_eq!(number_size("1000"), number_size("1"));
        assert_eq!(number_size("1"), 2);
        assert_eq!(number_size("-0.000123"), 3);
        assert_eq!(number_size("1.5E+10"), 2);
        // 38 significant digits, the most DynamoDB keeps: 19 + 1 bytes.
        assert_eq!(number_size("12345678901234567890123456789012345678"), 20);
        // Binary: the raw bytes, not the base64 text ("aGVsbG8=" is "hello").
        assert_eq!(size(json!({"b": {"B": "aGVsbG8="}})), 1 + 5);
        // Null and Boolean: 1 byte.
        assert_eq!(size(json!({"flag": {"BOOL": false}})), 4 + 1);
        // An empty List or Map: name + 3 bytes.
        assert_eq!(size(json!({"m": {"M": {}}})), 1 + 3);
        // A List or Map: name + 3 + per element 1 byte + the element's size.
        assert_eq!(
            size(json!({"l": {"L": [{"BOOL": true}, {"NULL": true}, {"S": "abc"}]}})),
            1 + 3 + (1 + 1) + (1 + 1) + (1 + 3)
        );
        // Sets: the sum of their elements.
        assert_eq!(size(json!({"ss": {"SS": ["a", "bc"]}})), 2 + 3);
        assert_eq!(size(json!({"ns": {"NS": ["1", "22"]}})), 2 + 2 + 2);
        // Nesting adds up level by level.
        assert_eq!(
            size(json!({"m": {"M": {"in": {"M": {"x": {"N": "7"}}}}}})),
            1 + 3 + (1 + 2 + (3 + (1 + 1 + 2)))
        );
    }

    #[test]
    fn hostile_values_have_a_size_and_do_not_overflow_the_stack() {
        // Not DynamoDB JSON: counted as its text, never free.
        assert_eq!(value_size(&json!("plain")), 7);
        assert!(value_size(&json!({"S": 5})) > 0);
        // Deep nesting (DynamoDB allows 32 levels; the size walk handles far more).
        let mut deep = json!({"S": "x"});
        for _ in 0..500 {
            deep = json!({"L": [deep]});
        }
        assert_eq!(value_size(&deep), 1 + 500 * 4);
    }
}
