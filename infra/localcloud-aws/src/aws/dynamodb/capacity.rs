//! Capacity units: what one DynamoDB request is charged, by AWS's rules ([`tally_billing::dynamodb`]), recorded in
//! the meter under the request's caller and answered as `ConsumedCapacity` when the request asks for it.
//!
//! Each operation adds its charges to a [`Consumed`] as it reads and writes items, the failed conditional writes
//! too (AWS charges them); [`super::call`] records them in the meter whatever the outcome and, on success, adds
//! the `ConsumedCapacity` member shaped as AWS shapes it for that operation.

use serde_json::{json, Map, Value};
use tally_billing::dynamodb as billing;

use super::expr::Item;
use crate::aws::input::opt_str;
use crate::aws::AwsError;
use crate::meter::{DynamoDbUsage, Meter};

/// What `ReturnConsumedCapacity` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Detail {
    None,
    Total,
    Indexes,
}

impl Detail {
    /// Reads `ReturnConsumedCapacity` (default `NONE`).
    pub(crate) fn of(input: &Value) -> Result<Detail, AwsError> {
        match opt_str(input, "ReturnConsumedCapacity")? {
            None | Some("NONE") => Ok(Detail::None),
            Some("TOTAL") => Ok(Detail::Total),
            Some("INDEXES") => Ok(Detail::Indexes),
            Some(other) => Err(AwsError::validation(format!(
                "1 validation error detected: Value '{}' at 'returnConsumedCapacity' failed to satisfy constraint: Member must satisfy enum value set: [INDEXES, TOTAL, NONE]",
                crate::aws::short(&Value::String(other.to_owned())).trim_matches('"')
            ))),
        }
    }
}

/// How an operation's answer carries `ConsumedCapacity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One structure (`PutItem`, `GetItem`, `UpdateItem`, `DeleteItem`, `Query`, `Scan`).
    One,
    /// A list, one entry per table (`BatchGetItem`, `BatchWriteItem`).
    PerTable,
    /// A list, one entry per table, with `WriteCapacityUnits` (`TransactWriteItems`).
    Transaction,
}

impl Shape {
    /// The shape for a metered operation; `None` for the operations AWS does not meter in capacity units.
    pub(crate) fn of(operation: &str) -> Option<Shape> {
        match operation {
            "PutItem" | "GetItem" | "UpdateItem" | "DeleteItem" | "Query" | "Scan" => {
                Some(Shape::One)
            }
            "BatchGetItem" | "BatchWriteItem" => Some(Shape::PerTable),
            "TransactWriteItems" => Some(Shape::Transaction),
            _ => None,
        }
    }
}

/// The size of an item, AWS's way.
pub(crate) fn size(item: &Item) -> u64 {
    billing::item_size(item)
}

/// The units one request consumed, per table, in the order the tables were first touched.
#[derive(Debug, Default)]
pub(crate) struct Consumed {
    tables: Vec<(String, DynamoDbUsage)>,
}

impl Consumed {
    fn table(&mut self, name: &str) -> &mut DynamoDbUsage {
        let at = match self.tables.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.tables
                    .push((name.to_owned(), DynamoDbUsage::default()));
                self.tables.len() - 1
            }
        };
        &mut self.tables[at].1
    }

    /// A plain write (`PutItem`, `UpdateItem`, `DeleteItem`, one item of a `BatchWriteItem`) changing an item of
    /// `before` bytes into one of `after` bytes.
    pub(crate) fn write(&mut self, table: &str, before: Option<u64>, after: Option<u64>) {
        let units = billing::change_units(before, after);
        let t = self.table(table);
        t.write_units += units;
        t.write_requests += 1;
    }

    /// A conditional write whose condition failed: charged as if it had been written.
    pub(crate) fn failed_write(&mut self, table: &str, before: Option<u64>, after: Option<u64>) {
        let units = billing::change_units(before, after);
        let t = self.table(table);
        t.write_units += units;
        t.write_requests += 1;
        t.failed_conditional_writes += 1;
        t.failed_conditional_write_units += units;
    }

    /// One action of a `TransactWriteItems` on an item of `bytes` (the larger of before and after), whose
    /// condition held or not.
    pub(crate) fn transactional_write(&mut self, table: &str, bytes: u64, condition_held: bool) {
        let units = billing::transactional_write_units(bytes);
        let t = self.table(table);
        t.write_units += units;
        t.write_requests += 1;
        t.transactional_writes += 1;
        if !condition_held {
            t.failed_conditional_writes += 1;
            t.failed_conditional_write_units += units;
        }
    }

    /// One read request of `bytes`: an item of `GetItem` or `BatchGetItem` (`None` when absent: the minimum
    /// is charged all the same), or a whole `Query`/`Scan` page.
    pub(crate) fn read(&mut self, table: &str, bytes: Option<u64>, consistent: bool) {
        let units = billing::read_units(bytes.unwrap_or(0), consistent);
        let t = self.table(table);
        t.read_units += units;
        t.read_requests += 1;
    }

    /// Adds this request's units to the meter, under `caller`.
    pub(crate) fn record(&self, meter: &Meter, caller: &str) {
        if self.tables.is_empty() {
            return;
        }
        meter.record(|snapshot| {
            for (name, usage) in &self.tables {
                snapshot
                    .dynamodb
                    .tables
                    .entry(name.clone())
                    .or_default()
                    .add(caller, usage);
            }
        });
    }

    /// The `ConsumedCapacity` member of the answer, or `None` when not asked for.
    pub(crate) fn answer(&self, detail: Detail, shape: Shape) -> Option<Value> {
        if detail == Detail::None {
            return None;
        }
        let entry = |name: &str, usage: &DynamoDbUsage| {
            let total = usage.read_units + usage.write_units;
            let mut capacity = Map::new();
            capacity.insert("CapacityUnits".into(), json!(total));
            if shape == Shape::Transaction {
                capacity.insert("WriteCapacityUnits".into(), json!(usage.write_units));
            }
            let mut entry = Map::new();
            entry.insert("TableName".into(), json!(name));
            entry.extend(capacity.clone());
            if detail == Detail::Indexes {
                // The local tables have no secondary indexes: the table's share is the whole.
                entry.insert("Table".into(), Value::Object(capacity));
            }
            Value::Object(entry)
        };
        match shape {
            Shape::One => self.tables.first().map(|(n, u)| entry(n, u)),
            Shape::PerTable | Shape::Transaction => Some(Value::Array(
                self.tables.iter().map(|(n, u)| entry(n, u)).collect(),
            )),
        }
    }
}
