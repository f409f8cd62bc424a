//! DynamoDB, awsJson1.0: tables with a partition key and an optional sort key, and the item operations and
//! expression subset ([`expr`]) that tally's functions use.
//!
//! Operations: CreateTable, DescribeTable, DeleteTable, ListTables, UpdateTimeToLive, DescribeTimeToLive,
//! PutItem, GetItem, UpdateItem, DeleteItem, Query, Scan, BatchGetItem, BatchWriteItem, TransactWriteItems.
//! `ConditionalCheckFailedException` (with the old item when `ReturnValuesOnConditionCheckFailure` is
//! `ALL_OLD`) and `TransactionCanceledException` (with `CancellationReasons`) are raised where AWS raises
//! them; `ReturnValues` is honoured (`NONE`, `ALL_OLD`, `UPDATED_OLD`, `ALL_NEW`, `UPDATED_NEW`).
//!
//! Capacity units ([`capacity`]): every item operation is charged as AWS charges it (item sizes and rounding
//! from `tally_billing`), recorded in the meter under the caller's access key id, and returned as
//! `ConsumedCapacity` when `ReturnConsumedCapacity` is `TOTAL` or `INDEXES`.
//!
//! Local simplifications: TTL is recorded but items do not expire; secondary indexes and streams are not
//! supported (indexes are refused at CreateTable, by name); every read is strongly consistent (an eventually
//! consistent one is charged half, as in AWS); there is no throttling (tables are on-demand).
//! `ClientRequestToken` makes TransactWriteItems idempotent for ten minutes, as in AWS.
//!
//! Durability: every write is one entry of the service log (`<state>/dynamodb/log`); a transaction or batch is
//! one entry, so it is all-or-nothing across a crash. The answer is sent after the entry is synced; another
//! client may read an item a few hundred microseconds before its write is durable.

pub mod capacity;
pub mod expr;
pub mod number;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::Serialize;
use serde_json::{json, Map, Value};

use self::capacity::{Consumed, Detail, Shape};
use self::expr::{Cond, Item, Refs};
use super::input::{opt_array, opt_bool, opt_i64, opt_object, opt_str, req_str};
use super::{now_ms, AwsError, LocalAws};
use crate::store::{lock, Log};

mod replay;
mod state;
mod wire;

use replay::Entry;
use state::{read, write, Key, Op, Table, TableDef};
use wire::{
    check_item, condition, conditional_failed, item_of, not_found, provisioned_throughput,
    return_values, wants_old_on_failure,
};
pub(crate) use wire::{check_value, decode_b64};

const MAX_ITEM_BYTES: usize = 400 * 1024;
const MAX_PAGE_BYTES: usize = 1024 * 1024;
const TOKEN_LIFETIME_MS: i64 = 10 * 60 * 1000;

/// Dispatches one DynamoDB operation of `caller` (the access key id the request was signed with, or
/// `"unknown"`), meters it, and adds `ConsumedCapacity` to the answer when asked.
pub(crate) fn call(
    aws: &LocalAws,
    operation: &str,
    input: Value,
    caller: &str,
) -> Result<Value, AwsError> {
    let Some(shape) = Shape::of(operation) else {
        return call_unmetered(aws, operation, input);
    };
    let detail = Detail::of(&input)?;
    let d = &aws.dynamodb;
    let mut used = Consumed::default();
    let result = match operation {
        "PutItem" => d.put_item(&input, &mut used),
        "GetItem" => d.get_item(&input, &mut used),
        "UpdateItem" => d.update_item(&input, &mut used),
        "DeleteItem" => d.delete_item(&input, &mut used),
        "Query" => d.query(&input, false, &mut used),
        "Scan" => d.query(&input, true, &mut used),
        "BatchGetItem" => d.batch_get(&input, &mut used),
        "BatchWriteItem" => d.batch_write(&input, &mut used),
        "TransactWriteItems" => d.transact_write(&input, &mut used),
        other => Err(AwsError::unsupported("DynamoDB", other)),
    };
    // A failed conditional write or a cancelled transaction costs units too; a refused or failed request not.
    let charged = match &result {
        Ok(_) => true,
        Err(error) => matches!(
            error.code.as_str(),
            "ConditionalCheckFailedException" | "TransactionCanceledException"
        ),
    };
    if charged {
        used.record(&aws.meter, caller);
    }
    let mut answer = result?;
    if let (Some(capacity), Some(object)) = (used.answer(detail, shape), answer.as_object_mut()) {
        object.insert("ConsumedCapacity".into(), capacity);
    }
    Ok(answer)
}

/// The table operations, which AWS does not charge in capacity units.
fn call_unmetered(aws: &LocalAws, operation: &str, input: Value) -> Result<Value, AwsError> {
    let d = &aws.dynamodb;
    match operation {
        "CreateTable" => d.create_table(&input),
        "DescribeTable" => d.describe_table(&input),
        "DeleteTable" => d.delete_table(&input),
        "ListTables" => Ok(json!({"TableNames": d.table_names()})),
        "UpdateTimeToLive" => d.update_ttl(&input),
        "DescribeTimeToLive" => d.describe_ttl(&input),
        other => Err(AwsError::unsupported("DynamoDB", other)),
    }
}

/// All tables of the local endpoint.
#[derive(Debug)]
pub struct DynamoDb {
    region: String,
    log: Option<Log>,
    tables: RwLock<BTreeMap<String, Arc<Mutex<Table>>>>,
    tokens: Mutex<HashMap<String, (i64, String)>>,
}

fn expr_hash(name: &str) -> u128 {
    super::kinesis::hash_key(name)
}

impl DynamoDb {
    pub(crate) fn new(region: &str, log: Option<Log>) -> DynamoDb {
        DynamoDb {
            region: region.to_owned(),
            log,
            tables: RwLock::new(BTreeMap::new()),
            tokens: Mutex::new(HashMap::new()),
        }
    }

    fn log_entry(&self, entry: &Entry) -> Result<Option<u64>, AwsError> {
        super::log_write(self.log.as_ref(), entry)
    }

    fn sync(&self, ticket: Option<u64>) -> Result<(), AwsError> {
        super::log_sync(self.log.as_ref(), ticket)
    }

    fn table(&self, name: &str) -> Result<Arc<Mutex<Table>>, AwsError> {
        let name = name.rsplit(":table/").next().unwrap_or(name);
        read(&self.tables)
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    pub fn table_names(&self) -> Vec<String> {
        read(&self.tables).keys().cloned().collect()
    }

    /// Creates a table from a CreateTable request (the template loader passes the template's properties).
    pub fn create_table(&self, input: &Value) -> Result<Value, AwsError> {
        let name = req_str(input, "TableName")?;
        if name.len() < 3
            || name.len() > 255
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value '{name}' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length 3 to 255"
            )));
        }
        for unsupported in ["GlobalSecondaryIndexes", "LocalSecondaryIndexes"] {
            if input.get(unsupported).is_some_and(|v| !v.is_null()) {
                return Err(AwsError::validation(format!(
                    "{unsupported} on table {name} are not supported by the tally local cloud"
                )));
            }
        }
        let definitions = opt_array(input, "AttributeDefinitions")?
            .ok_or_else(|| super::input::missing("AttributeDefinitions"))?;
        let mut types = BTreeMap::new();
        for d in definitions {
            let n = d.get("AttributeName").and_then(Value::as_str);
            let t = d.get("AttributeType").and_then(Value::as_str);
            match (n, t) {
                (Some(n), Some(t @ ("S" | "N" | "B"))) => {
                    types.insert(n.to_owned(), t.to_owned());
                }
                _ => {
                    return Err(AwsError::validation(format!(
                        "AttributeDefinitions entry {d} needs AttributeName and AttributeType S, N or B"
                    )))
                }
            }
        }
        let schema =
            opt_array(input, "KeySchema")?.ok_or_else(|| super::input::missing("KeySchema"))?;
        let mut hash = None;
        let mut range = None;
        for k in schema {
            let n = k
                .get("AttributeName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let t = types.get(n).cloned().ok_or_else(|| {
                AwsError::validation(format!(
                    "One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [{n}]"
                ))
            })?;
            match k.get("KeyType").and_then(Value::as_str) {
                Some("HASH") if hash.is_none() => hash = Some((n.to_owned(), t)),
                Some("RANGE") if range.is_none() => range = Some((n.to_owned(), t)),
                _ => {
                    return Err(AwsError::validation(format!(
                        "KeySchema entry {k} is invalid: one HASH and at most one RANGE key"
                    )))
                }
            }
        }
        let hash = hash.ok_or_else(|| AwsError::validation("KeySchema needs a HASH key"))?;
        let billing_mode = opt_str(input, "BillingMode")?.unwrap_or("PROVISIONED");
        if types.len() != 1 + usize::from(range.is_some()) {
            return Err(AwsError::validation(
                "One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions",
            ));
        }
        let def = TableDef {
            name: name.to_owned(),
            hash,
            range,
            attribute_definitions: Value::Array(definitions.clone()),
            billing_mode: billing_mode.to_owned(),
            provisioned: provisioned_throughput(input, billing_mode)?,
            created_ms: now_ms(),
            ttl_attribute: None,
        };
        let ticket = {
            let mut tables = write(&self.tables);
            if tables.contains_key(name) {
                return Err(AwsError::client(
                    "ResourceInUseException",
                    format!("Table already exists: {name}"),
                ));
            }
            let ticket = self.log_entry(&Entry::CreateTable { def: def.clone() })?;
            let table = Table {
                def: def.clone(),
                items: BTreeMap::new(),
                count: 0,
            };
            tables.insert(name.to_owned(), Arc::new(Mutex::new(table)));
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({"TableDescription": def.description(&self.region, 0)}))
    }

    fn describe_table(&self, input: &Value) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        let table = lock(&table);
        Ok(json!({"Table": table.def.description(&self.region, table.count)}))
    }

    fn delete_table(&self, input: &Value) -> Result<Value, AwsError> {
        let name = req_str(input, "TableName")?;
        let table = self.table(name)?;
        let description = {
            let table = lock(&table);
            let mut d = table.def.description(&self.region, table.count);
            d["TableStatus"] = json!("DELETING");
            d
        };
        let ticket = {
            let mut tables = write(&self.tables);
            let ticket = self.log_entry(&Entry::DeleteTable {
                name: name.to_owned(),
            })?;
            tables.remove(name);
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({"TableDescription": description}))
    }

    /// UpdateTimeToLive (the template loader for `TimeToLiveSpecification`); recorded, not enforced.
    pub fn update_ttl(&self, input: &Value) -> Result<Value, AwsError> {
        let name = req_str(input, "TableName")?;
        let table = self.table(name)?;
        let spec = opt_object(input, "TimeToLiveSpecification")?
            .ok_or_else(|| super::input::missing("TimeToLiveSpecification"))?;
        let enabled = spec
            .get("Enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let attribute = spec
            .get("AttributeName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let ticket = {
            let mut table = lock(&table);
            let value = enabled.then(|| attribute.clone());
            let ticket = self.log_entry(&Entry::Ttl {
                name: name.to_owned(),
                attribute: value.clone(),
            })?;
            table.def.ttl_attribute = value;
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({"TimeToLiveSpecification": {"Enabled": enabled, "AttributeName": attribute}}))
    }

    fn describe_ttl(&self, input: &Value) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        let table = lock(&table);
        Ok(match &table.def.ttl_attribute {
            Some(attribute) => {
                json!({"TimeToLiveDescription": {"TimeToLiveStatus": "ENABLED", "AttributeName": attribute}})
            }
            None => json!({"TimeToLiveDescription": {"TimeToLiveStatus": "DISABLED"}}),
        })
    }

    fn put_item(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        let item = item_of(input, "Item")?;
        let mut refs = Refs::new(input)?;
        let cond = condition(input, "ConditionExpression", &mut refs)?;
        refs.check_all_used()?;
        let returns = return_values(input, &["NONE", "ALL_OLD"])?;
        let want_old = wants_old_on_failure(input)?;
        let (ticket, old) = {
            let mut table = lock(&table);
            let key = table.def.key_of(&item, false)?;
            let old = table.get(&key).cloned();
            let sizes = (
                old.as_ref().map(capacity::size),
                Some(capacity::size(&item)),
            );
            if let Err(error) = check_condition(cond.as_ref(), old.as_ref(), want_old) {
                charge_failure(used, &table.def.name, &error, sizes);
                return Err(error);
            }
            used.write(&table.def.name, sizes.0, sizes.1);
            let op = Op {
                table: table.def.name.clone(),
                key: table.def.key_item(&item),
                item: Some(item.clone()),
            };
            let ticket = self.log_entry(&Entry::Write {
                ops: vec![op],
                token: None,
            })?;
            table.set(key, Some(item));
            (ticket, old)
        };
        self.sync(ticket)?;
        Ok(match (returns.as_str(), old) {
            ("ALL_OLD", Some(old)) => json!({"Attributes": old}),
            _ => json!({}),
        })
    }

    fn get_item(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        let key = item_of(input, "Key")?;
        let consistent = opt_bool(input, "ConsistentRead")?.unwrap_or(false);
        let mut refs = Refs::new(input)?;
        let projection = opt_str(input, "ProjectionExpression")?
            .map(|text| expr::parse_projection(text, &mut refs))
            .transpose()?;
        refs.check_all_used()?;
        let table = lock(&table);
        let key = table.def.key_of(&key, true)?;
        // The whole item is charged, projected or not; a missing one costs the minimum.
        used.read(
            &table.def.name,
            table.get(&key).map(capacity::size),
            consistent,
        );
        Ok(match table.get(&key) {
            Some(item) => match &projection {
                Some(paths) => json!({"Item": expr::project(item, paths)}),
                None => json!({"Item": item}),
            },
            None => json!({}),
        })
    }

    fn update_item(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        let key = item_of(input, "Key")?;
        let mut refs = Refs::new(input)?;
        let update = opt_str(input, "UpdateExpression")?
            .map(|text| expr::parse_update(text, &mut refs))
            .transpose()?;
        let cond = condition(input, "ConditionExpression", &mut refs)?;
        refs.check_all_used()?;
        for legacy in ["AttributeUpdates", "Expected"] {
            if input.get(legacy).is_some() {
                return Err(AwsError::validation(format!(
                    "{legacy} (a legacy parameter) is not supported by the tally local cloud; use UpdateExpression / ConditionExpression"
                )));
            }
        }
        let returns = return_values(
            input,
            &["NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"],
        )?;
        let want_old = wants_old_on_failure(input)?;
        let (ticket, old, new, touched) = {
            let mut table = lock(&table);
            let k = table.def.key_of(&key, true)?;
            let old = table.get(&k).cloned();
            if let Err(error) = check_condition(cond.as_ref(), old.as_ref(), want_old) {
                // Charged on the item the update would have made, when it can be made.
                let mut would = old.clone().unwrap_or_else(|| key.clone());
                let after = match &update {
                    Some(update) => expr::apply(&mut would, update).ok().map(|_| &would),
                    None => Some(&would),
                };
                let sizes = (old.as_ref().map(capacity::size), after.map(capacity::size));
                charge_failure(used, &table.def.name, &error, sizes);
                return Err(error);
            }
            let mut new = old.clone().unwrap_or_else(|| key.clone());
            let touched = update.as_ref().map(expr::updated_names).unwrap_or_default();
            if let Some(update) = &update {
                for name in table.def.key_names() {
                    if touched.contains(name) {
                        return Err(AwsError::validation(format!(
                            "One or more parameter values were invalid: Cannot update attribute {name}. This attribute is part of the key"
                        )));
                    }
                }
                expr::apply(&mut new, update)?;
            }
            check_item(&new)?;
            used.write(
                &table.def.name,
                old.as_ref().map(capacity::size),
                Some(capacity::size(&new)),
            );
            let op = Op {
                table: table.def.name.clone(),
                key: key.clone(),
                item: Some(new.clone()),
            };
            let ticket = self.log_entry(&Entry::Write {
                ops: vec![op],
                token: None,
            })?;
            table.set(k, Some(new.clone()));
            (ticket, old, new, touched)
        };
        self.sync(ticket)?;
        let pick = |item: &Item| -> Item {
            item.iter()
                .filter(|(k, _)| touched.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        let attributes = match returns.as_str() {
            "ALL_OLD" => old,
            "UPDATED_OLD" => old.as_ref().map(pick),
            "ALL_NEW" => Some(new),
            "UPDATED_NEW" => Some(pick(&new)),
            _ => None,
        };
        Ok(match attributes {
            Some(attributes) if !attributes.is_empty() => json!({"Attributes": attributes}),
            _ => json!({}),
        })
    }

    fn delete_item(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        let key = item_of(input, "Key")?;
        let mut refs = Refs::new(input)?;
        let cond = condition(input, "ConditionExpression", &mut refs)?;
        refs.check_all_used()?;
        let returns = return_values(input, &["NONE", "ALL_OLD"])?;
        let want_old = wants_old_on_failure(input)?;
        let (ticket, old) = {
            let mut table = lock(&table);
            let k = table.def.key_of(&key, true)?;
            let old = table.get(&k).cloned();
            let sizes = (old.as_ref().map(capacity::size), None);
            if let Err(error) = check_condition(cond.as_ref(), old.as_ref(), want_old) {
                charge_failure(used, &table.def.name, &error, sizes);
                return Err(error);
            }
            used.write(&table.def.name, sizes.0, sizes.1);
            let ticket = if old.is_some() {
                let op = Op {
                    table: table.def.name.clone(),
                    key: key.clone(),
                    item: None,
                };
                self.log_entry(&Entry::Write {
                    ops: vec![op],
                    token: None,
                })?
            } else {
                None
            };
            table.set(k, None);
            (ticket, old)
        };
        self.sync(ticket)?;
        Ok(match (returns.as_str(), old) {
            ("ALL_OLD", Some(old)) => json!({"Attributes": old}),
            _ => json!({}),
        })
    }

    /// Query (key condition on one partition) and Scan (every item).
    fn query(&self, input: &Value, scan: bool, used: &mut Consumed) -> Result<Value, AwsError> {
        let table = self.table(req_str(input, "TableName")?)?;
        if input.get("IndexName").is_some_and(|v| !v.is_null()) {
            return Err(AwsError::validation(
                "IndexName: secondary indexes are not supported by the tally local cloud",
            ));
        }
        let mut refs = Refs::new(input)?;
        let key_cond = if scan {
            None
        } else {
            condition(input, "KeyConditionExpression", &mut refs)?
        };
        if !scan && key_cond.is_none() {
            return Err(AwsError::validation("Either the KeyConditions or KeyConditionExpression parameter must be specified in the request."));
        }
        let filter = condition(input, "FilterExpression", &mut refs)?;
        let projection = opt_str(input, "ProjectionExpression")?
            .map(|text| expr::parse_projection(text, &mut refs))
            .transpose()?;
        refs.check_all_used()?;
        let limit = match opt_i64(input, "Limit")? {
            None => usize::MAX,
            Some(n) if n >= 1 => n as usize,
            Some(n) => {
                return Err(AwsError::validation(format!(
                    "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value greater than or equal to 1"
                )))
            }
        };
        let forward = opt_bool(input, "ScanIndexForward")?.unwrap_or(true);
        let consistent = opt_bool(input, "ConsistentRead")?.unwrap_or(false);
        let count_only = match opt_str(input, "Select")? {
            None | Some("ALL_ATTRIBUTES") | Some("SPECIFIC_ATTRIBUTES") => false,
            Some("COUNT") => true,
            Some(other) => {
                return Err(AwsError::validation(format!(
                    "Select {other} is not supported"
                )))
            }
        };
        let start = opt_object(input, "ExclusiveStartKey")?.cloned();
        let table = lock(&table);
        let def = &table.def;
        let start = start
            .map(|k| def.key_of(&k, true))
            .transpose()
            .map_err(|mut e| {
                e.message = format!("The provided starting key is invalid: {}", e.message);
                e
            })?;
        let partitions: Vec<(&Key, &BTreeMap<Key, Item>)> = match &key_cond {
            Some(cond) => {
                let hash = partition_of(def, cond)?;
                table.items.get_key_value(&hash).into_iter().collect()
            }
            None => table.items.iter().collect(),
        };
        let mut items = Vec::new();
        let mut scanned = 0;
        let mut bytes = 0;
        let mut read_bytes = 0;
        let mut last = None;
        let mut started = start.is_none();
        let ordered: Box<dyn Iterator<Item = (&Key, &Key, &Item)>> = if forward {
            Box::new(
                partitions
                    .into_iter()
                    .flat_map(|(h, p)| p.iter().map(move |(r, i)| (h, r, i))),
            )
        } else {
            Box::new(
                partitions
                    .into_iter()
                    .rev()
                    .flat_map(|(h, p)| p.iter().rev().map(move |(r, i)| (h, r, i))),
            )
        };
        for (hash, range, item) in ordered {
            if !started {
                if let Some((sh, sr)) = &start {
                    if hash == sh && range == sr {
                        started = true;
                    }
                }
                continue;
            }
            if let Some(cond) = &key_cond {
                if !expr::eval(item, cond)? {
                    continue;
                }
            }
            scanned += 1;
            read_bytes += capacity::size(item);
            bytes += item
                .iter()
                .map(|(k, v)| k.len() + v.to_string().len())
                .sum::<usize>();
            let keep = match &filter {
                Some(filter) => expr::eval(item, filter)?,
                None => true,
            };
            if keep {
                items.push(match &projection {
                    Some(paths) => expr::project(item, paths),
                    None => item.clone(),
                });
            }
            if scanned >= limit || bytes >= MAX_PAGE_BYTES {
                last = Some(def.key_item(item));
                break;
            }
        }
        // One page, charged on the total size of the items read (before the filter), rounded up once.
        used.read(&def.name, Some(read_bytes), consistent);
        let mut out = json!({"Count": items.len(), "ScannedCount": scanned});
        if !count_only {
            out["Items"] = json!(items);
        }
        if let Some(last) = last {
            out["LastEvaluatedKey"] = Value::Object(last);
        }
        Ok(out)
    }

    fn batch_get(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let requests = opt_object(input, "RequestItems")?
            .ok_or_else(|| super::input::missing("RequestItems"))?;
        let total: usize = requests
            .values()
            .map(|r| r.get("Keys").and_then(Value::as_array).map_or(0, Vec::len))
            .sum();
        if total == 0 || total > 100 {
            return Err(AwsError::validation(format!(
                "Too many items requested for the BatchGetItem call: {total} keys; use 1 to 100"
            )));
        }
        let mut responses = Map::new();
        // Charged only once every table and key checked out: a malformed request costs nothing.
        let mut reads = Vec::new();
        for (name, request) in requests {
            let table = self.table(name)?;
            let consistent = opt_bool(request, "ConsistentRead")?.unwrap_or(false);
            let mut refs = Refs::new(request)?;
            let projection = opt_str(request, "ProjectionExpression")?
                .map(|text| expr::parse_projection(text, &mut refs))
                .transpose()?;
            refs.check_all_used()?;
            let keys = opt_array(request, "Keys")?.ok_or_else(|| super::input::missing("Keys"))?;
            let table = lock(&table);
            let mut seen = BTreeSet::new();
            let mut found = Vec::new();
            for key in keys {
                let key = key
                    .as_object()
                    .cloned()
                    .ok_or_else(|| AwsError::validation("Keys entries must be maps"))?;
                check_item(&key)?;
                let k = table.def.key_of(&key, true)?;
                if !seen.insert(k.clone()) {
                    return Err(AwsError::validation(
                        "Provided list of item keys contains duplicates",
                    ));
                }
                reads.push((
                    table.def.name.clone(),
                    table.get(&k).map(capacity::size),
                    consistent,
                ));
                if let Some(item) = table.get(&k) {
                    found.push(match &projection {
                        Some(paths) => expr::project(item, paths),
                        None => item.clone(),
                    });
                }
            }
            responses.insert(name.clone(), json!(found));
        }
        for (table, bytes, consistent) in reads {
            used.read(&table, bytes, consistent);
        }
        Ok(json!({"Responses": responses, "UnprocessedKeys": {}}))
    }

    fn batch_write(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let requests = opt_object(input, "RequestItems")?
            .ok_or_else(|| super::input::missing("RequestItems"))?;
        let mut writes: Vec<(String, Item, bool)> = Vec::new();
        for (name, list) in requests {
            let list = list
                .as_array()
                .ok_or_else(|| AwsError::validation("RequestItems values must be lists"))?;
            for request in list {
                if let Some(put) = request.get("PutRequest") {
                    writes.push((name.clone(), item_of(put, "Item")?, true));
                } else if let Some(delete) = request.get("DeleteRequest") {
                    writes.push((name.clone(), item_of(delete, "Key")?, false));
                } else {
                    return Err(AwsError::validation(
                        "Each write request needs PutRequest or DeleteRequest",
                    ));
                }
            }
        }
        if writes.is_empty() || writes.len() > 25 {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Member must have length less than or equal to 25 (got {} write requests)",
                writes.len()
            )));
        }
        let mut names: Vec<String> = writes.iter().map(|w| w.0.clone()).collect();
        names.sort();
        names.dedup();
        let tables = names
            .iter()
            .map(|n| self.table(n).map(|t| (n.clone(), t)))
            .collect::<Result<Vec<_>, _>>()?;
        let ticket = {
            let mut guards: BTreeMap<String, MutexGuard<'_, Table>> =
                tables.iter().map(|(n, t)| (n.clone(), lock(t))).collect();
            let mut seen = BTreeSet::new();
            let mut ops = Vec::new();
            let mut keys = Vec::new();
            let mut charges = Vec::new();
            for (name, item, put) in writes {
                let table = guards.get(&name).ok_or_else(|| not_found(&name))?;
                let key = table.def.key_of(&item, !put)?;
                if !seen.insert((name.clone(), key.clone())) {
                    return Err(AwsError::validation(
                        "Provided list of item keys contains duplicates",
                    ));
                }
                // Each item as its own PutItem or DeleteItem.
                charges.push((
                    table.def.name.clone(),
                    table.get(&key).map(capacity::size),
                    put.then(|| capacity::size(&item)),
                ));
                ops.push(Op {
                    table: name.clone(),
                    key: table.def.key_item(&item),
                    item: put.then_some(item),
                });
                keys.push(key);
            }
            let ticket = self.log_entry_ops(&ops, None)?;
            for (table, before, after) in charges {
                used.write(&table, before, after);
            }
            for (op, key) in ops.into_iter().zip(keys) {
                if let Some(table) = guards.get_mut(&op.table) {
                    table.set(key, op.item);
                }
            }
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({"UnprocessedItems": {}}))
    }

    fn log_entry_ops(
        &self,
        ops: &[Op],
        token: Option<(String, i64, String)>,
    ) -> Result<Option<u64>, AwsError> {
        /// `Entry::Write` by reference, so a batch is not cloned to be logged.
        #[derive(Serialize)]
        #[serde(tag = "t", rename = "write")]
        struct WriteRef<'a> {
            ops: &'a [Op],
            token: Option<(String, i64, String)>,
        }
        super::log_write(self.log.as_ref(), &WriteRef { ops, token })
    }

    fn transact_write(&self, input: &Value, used: &mut Consumed) -> Result<Value, AwsError> {
        let items = opt_array(input, "TransactItems")?
            .ok_or_else(|| super::input::missing("TransactItems"))?;
        if items.is_empty() || items.len() > 100 {
            return Err(AwsError::validation(format!(
                "1 validation error detected: Value at 'transactItems' failed to satisfy constraint: Member must have length less than or equal to 100 (got {})",
                items.len()
            )));
        }
        let token = opt_str(input, "ClientRequestToken")?.map(str::to_owned);
        let digest = hex::encode(
            super::kinesis::hash_key(&input["TransactItems"].to_string()).to_be_bytes(),
        );
        let now = now_ms();
        if let Some(token) = &token {
            let mut tokens = lock(&self.tokens);
            tokens.retain(|_, (at, _)| now - *at < TOKEN_LIFETIME_MS);
            if let Some((_, earlier)) = tokens.get(token) {
                if *earlier == digest {
                    return Ok(json!({}));
                }
                return Err(AwsError::client(
                    "IdempotentParameterMismatchException",
                    format!("ClientRequestToken {token} was used with a different request in the last 10 minutes"),
                ));
            }
        }
        // Parse every action first: a malformed one fails the whole request before anything is checked.
        struct Action {
            table: String,
            key: Item,
            kind: &'static str,
            item: Option<Item>,
            update: Option<expr::Update>,
            cond: Option<Cond>,
            want_old: bool,
        }
        let mut actions = Vec::new();
        for entry in items {
            let (kind, body) = ["ConditionCheck", "Put", "Delete", "Update"]
                .iter()
                .find_map(|k| entry.get(*k).map(|b| (*k, b)))
                .ok_or_else(|| {
                    AwsError::validation(
                        "Each TransactItems entry needs one of ConditionCheck, Put, Delete, Update",
                    )
                })?;
            let table = req_str(body, "TableName")?.to_owned();
            let mut refs = Refs::new(body)?;
            let cond = condition(body, "ConditionExpression", &mut refs)?;
            let (key, item, update) = match kind {
                "Put" => {
                    let item = item_of(body, "Item")?;
                    (item.clone(), Some(item), None)
                }
                "Update" => {
                    let text = req_str(body, "UpdateExpression")?;
                    (
                        item_of(body, "Key")?,
                        None,
                        Some(expr::parse_update(text, &mut refs)?),
                    )
                }
                _ => (item_of(body, "Key")?, None, None),
            };
            if kind == "ConditionCheck" && cond.is_none() {
                return Err(AwsError::validation(
                    "ConditionCheck needs a ConditionExpression",
                ));
            }
            refs.check_all_used()?;
            actions.push(Action {
                table,
                key,
                kind,
                item,
                update,
                cond,
                want_old: wants_old_on_failure(body)?,
            });
        }
        let mut names: Vec<String> = actions.iter().map(|a| a.table.clone()).collect();
        names.sort();
        names.dedup();
        let tables = names
            .iter()
            .map(|n| self.table(n).map(|t| (n.clone(), t)))
            .collect::<Result<Vec<_>, _>>()?;
        let ticket = {
            let mut guards: BTreeMap<String, MutexGuard<'_, Table>> =
                tables.iter().map(|(n, t)| (n.clone(), lock(t))).collect();
            let mut seen = BTreeSet::new();
            let mut reasons = Vec::new();
            let mut failed = false;
            let mut ops = Vec::new();
            let mut keys = Vec::new();
            // (table, bytes, condition held) per action, charged once the whole request is known to be valid.
            let mut charges = Vec::new();
            for action in &actions {
                let table = guards
                    .get(&action.table)
                    .ok_or_else(|| not_found(&action.table))?;
                let key = table.def.key_of(&action.key, action.kind != "Put")?;
                if !seen.insert((action.table.clone(), key.clone())) {
                    return Err(AwsError::validation(
                        "Transaction request cannot include multiple operations on one item",
                    ));
                }
                let old = table.get(&key);
                let ok = match &action.cond {
                    Some(cond) => expr::eval(old.unwrap_or(&Item::new()), cond)?,
                    None => true,
                };
                if ok {
                    reasons.push(json!({"Code": "None"}));
                } else {
                    failed = true;
                    let mut reason = json!({"Code": "ConditionalCheckFailed", "Message": "The conditional request failed"});
                    if let (true, Some(old)) = (action.want_old, old) {
                        reason["Item"] = json!(old);
                    }
                    reasons.push(reason);
                }
                let before = old.map(capacity::size);
                let new = match action.kind {
                    "Put" => action.item.clone(),
                    "Delete" => None,
                    "Update" => {
                        let mut new = old.cloned().unwrap_or_else(|| action.key.clone());
                        if let Some(update) = &action.update {
                            let touched = expr::updated_names(update);
                            if let Some(k) = table
                                .def
                                .key_names()
                                .into_iter()
                                .find(|k| touched.contains(*k))
                            {
                                return Err(AwsError::validation(format!(
                                    "One or more parameter values were invalid: Cannot update attribute {k}. This attribute is part of the key"
                                )));
                            }
                            expr::apply(&mut new, update)?;
                        }
                        check_item(&new)?;
                        Some(new)
                    }
                    _ => {
                        // A ConditionCheck: charged as a transactional write of the item it checks.
                        charges.push((table.def.name.clone(), before.unwrap_or(0), ok));
                        continue;
                    }
                };
                let after = new.as_ref().map(capacity::size);
                charges.push((
                    table.def.name.clone(),
                    before.unwrap_or(0).max(after.unwrap_or(0)),
                    ok,
                ));
                ops.push(Op {
                    table: action.table.clone(),
                    key: table.def.key_item(&action.key),
                    item: new,
                });
                keys.push(key);
            }
            // A cancelled transaction is charged too (AWS: the units are consumed either way).
            for (table, bytes, held) in charges {
                used.transactional_write(&table, bytes, held);
            }
            if failed {
                let codes: Vec<&str> = reasons
                    .iter()
                    .map(|r| r["Code"].as_str().unwrap_or("None"))
                    .collect();
                let mut error = AwsError::client(
                    "TransactionCanceledException",
                    format!("Transaction cancelled, please refer cancellation reasons for specific reasons [{}]", codes.join(", ")),
                );
                error.extra = Some(Box::new(json!({"CancellationReasons": reasons})));
                return Err(error);
            }
            let token_entry = token.clone().map(|t| (t, now, digest.clone()));
            let ticket = self.log_entry_ops(&ops, token_entry)?;
            for (op, key) in ops.into_iter().zip(keys) {
                if let Some(table) = guards.get_mut(&op.table) {
                    table.set(key, op.item);
                }
            }
            if let Some(token) = token {
                lock(&self.tokens).insert(token, (now, digest));
            }
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({}))
    }
}

/// Charges a write whose condition check ended in `error`: a failed condition costs what the write would have;
/// any other error (a malformed condition) costs nothing.
fn charge_failure(
    used: &mut Consumed,
    table: &str,
    error: &AwsError,
    (before, after): (Option<u64>, Option<u64>),
) {
    if error.code == "ConditionalCheckFailedException" {
        used.failed_write(table, before, after);
    }
}

fn check_condition(
    cond: Option<&Cond>,
    old: Option<&Item>,
    want_old: bool,
) -> Result<(), AwsError> {
    if let Some(cond) = cond {
        if !expr::eval(old.unwrap_or(&Item::new()), cond)? {
            return Err(conditional_failed(old, want_old));
        }
    }
    Ok(())
}

/// The partition a key condition selects, after checking the condition's shape: `hash = :v`, optionally `AND`
/// one condition on the sort key (`= < <= > >=`, `BETWEEN`, `begins_with`).
fn partition_of(def: &TableDef, cond: &Cond) -> Result<Key, AwsError> {
    use expr::{Cmp, Operand, Seg};
    let invalid =
        |why: &str| AwsError::validation(format!("Invalid KeyConditionExpression: {why}"));
    let mut parts = Vec::new();
    fn flatten<'c>(cond: &'c Cond, out: &mut Vec<&'c Cond>) {
        match cond {
            Cond::And(a, b) => {
                flatten(a, out);
                flatten(b, out);
            }
            other => out.push(other),
        }
    }
    flatten(cond, &mut parts);
    if parts.len() > 2 {
        return Err(invalid("The expression has too many conditions: use one on the partition key and at most one on the sort key"));
    }
    let name_of = |o: &Operand| match o {
        Operand::Path(p) => match p.as_slice() {
            [Seg::Name(n)] => Some(n.clone()),
            _ => None,
        },
        _ => None,
    };
    let mut hash = None;
    let mut range_seen = false;
    for part in parts {
        let (attr, is_eq) = match part {
            Cond::Cmp(a, op, b) => {
                let attr = name_of(a).or_else(|| name_of(b));
                if matches!(op, Cmp::Ne) {
                    return Err(invalid(
                        "Unsupported operator in KeyConditionExpression: <>",
                    ));
                }
                (attr, matches!(op, Cmp::Eq))
            }
            Cond::Between(a, _, _) => (name_of(a), false),
            Cond::BeginsWith(a, _) => (name_of(a), false),
            Cond::Or(..) => {
                return Err(invalid(
                    "Invalid operator used in KeyConditionExpression: OR",
                ))
            }
            Cond::Not(..) => {
                return Err(invalid(
                    "Invalid operator used in KeyConditionExpression: NOT",
                ))
            }
            _ => {
                return Err(invalid(
                    "only comparisons, BETWEEN and begins_with may be used on key attributes",
                ))
            }
        };
        let attr = attr.ok_or_else(|| invalid("a key condition must name a key attribute"))?;
        if attr == def.hash.0 {
            if !is_eq || hash.is_some() {
                return Err(AwsError::validation("Query key condition not supported"));
            }
            let Cond::Cmp(a, _, b) = part else {
                return Err(invalid("partition key needs ="));
            };
            let value = match (a, b) {
                (Operand::Value(v), _) | (_, Operand::Value(v)) => v.clone(),
                _ => return Err(invalid("the partition key must be compared with a value")),
            };
            let mut item = Item::new();
            item.insert(attr.clone(), value);
            hash = Some(def.key_value(&def.hash, &item)?);
        } else if def.range.as_ref().is_some_and(|(r, _)| *r == attr) && !range_seen {
            range_seen = true;
            if let (Cond::BeginsWith(..), Some((_, t))) = (part, &def.range) {
                if t == "N" {
                    return Err(invalid("Incorrect operand type for operator or function; operator or function: begins_with, operand type: N"));
                }
            }
        } else {
            return Err(AwsError::validation(format!(
                "Query condition missed key schema element: {}",
                if hash.is_none() {
                    def.hash.0.clone()
                } else {
                    attr
                }
            )));
        }
    }
    hash.ok_or_else(|| {
        AwsError::validation(format!(
            "Query condition missed key schema element: {}",
            def.hash.0
        ))
    })
}
