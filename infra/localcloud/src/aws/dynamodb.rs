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

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use self::capacity::{Consumed, Detail, Shape};
use self::expr::{Cond, Item, Refs};
use super::input::{opt_array, opt_bool, opt_i64, opt_object, opt_str, req_str};
use super::{epoch_seconds, now_ms, AwsError, LocalAws, ACCOUNT_ID};
use crate::store::{lock, Log};

const MAX_ITEM_BYTES: usize = 400 * 1024;
const MAX_PAGE_BYTES: usize = 1024 * 1024;
const TOKEN_LIFETIME_MS: i64 = 10 * 60 * 1000;

pub(crate) fn decode_b64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(text)
}

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

/// A key attribute's value, ordered as DynamoDB orders sort keys.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    None,
    S(String),
    N(String),
    B(Vec<u8>),
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::S(a), Key::S(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Key::N(a), Key::N(b)) => number::compare(a, b).unwrap_or(Ordering::Equal),
            (Key::B(a), Key::B(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Key {
    fn rank(&self) -> u8 {
        match self {
            Key::None => 0,
            Key::S(_) => 1,
            Key::N(_) => 2,
            Key::B(_) => 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TableDef {
    name: String,
    hash: (String, String),
    range: Option<(String, String)>,
    attribute_definitions: Value,
    billing_mode: String,
    /// `ProvisionedThroughput` (read, write) as created: reported by DescribeTable, never enforced (the
    /// local table does not throttle).
    #[serde(default)]
    provisioned: Option<(u64, u64)>,
    created_ms: i64,
    ttl_attribute: Option<String>,
}

#[derive(Debug)]
struct Table {
    def: TableDef,
    items: BTreeMap<Key, BTreeMap<Key, Item>>,
    count: usize,
}

/// One write of a batch or transaction: the item's key and its new image (`None` deletes it).
#[derive(Debug, Serialize, Deserialize)]
struct Op {
    table: String,
    key: Item,
    item: Option<Item>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Entry {
    CreateTable {
        def: TableDef,
    },
    DeleteTable {
        name: String,
    },
    Ttl {
        name: String,
        attribute: Option<String>,
    },
    Write {
        ops: Vec<Op>,
        token: Option<(String, i64, String)>,
    },
}

fn not_found(name: &str) -> AwsError {
    AwsError::client(
        "ResourceNotFoundException",
        format!("Requested resource not found: Table: {name} not found"),
    )
}

fn conditional_failed(old: Option<&Item>, want_old: bool) -> AwsError {
    let mut error = AwsError::client(
        "ConditionalCheckFailedException",
        "The conditional request failed",
    );
    if let (true, Some(old)) = (want_old, old) {
        error.extra = Some(Box::new(json!({"Item": old})));
    }
    error
}

/// Checks that a value is a well-formed AttributeValue.
/// Deepest nesting of `M` and `L` values AWS accepts in an item.
const MAX_NESTING: usize = 32;

pub(crate) fn check_value(value: &Value, at: &str) -> Result<(), AwsError> {
    check_nested(value, at, 0)
}

fn check_nested(value: &Value, at: &str, depth: usize) -> Result<(), AwsError> {
    if depth > MAX_NESTING {
        return Err(AwsError::validation(format!(
            "Nesting Levels have exceeded supported limits: {at} nests maps and lists more than {MAX_NESTING} levels deep"
        )));
    }
    let bad = |why: &str| {
        AwsError::validation(format!(
            "One or more parameter values were invalid: {why} (at {at})"
        ))
    };
    let Some(object) = value.as_object() else {
        return Err(AwsError::client(
            "SerializationException",
            format!("AttributeValue at {at} must be a structure such as {{\"S\": \"text\"}}"),
        ));
    };
    if object.len() != 1 {
        return Err(bad("Supplied AttributeValue has more than one datatypes set, must contain exactly one of the supported datatypes"));
    }
    let Some((t, v)) = object.iter().next() else {
        return Err(bad("Supplied AttributeValue is empty"));
    };
    let set = |v: &Value, check: &dyn Fn(&str) -> bool, name: &str| -> Result<(), AwsError> {
        let list = v
            .as_array()
            .ok_or_else(|| bad(&format!("{name} must be a list")))?;
        if list.is_empty() {
            return Err(bad("An string set  may not be empty"));
        }
        let mut seen = BTreeSet::new();
        for e in list {
            let s = e
                .as_str()
                .ok_or_else(|| bad(&format!("{name} members must be strings")))?;
            if !check(s) {
                return Err(bad(&format!("{name} member {s} is not valid")));
            }
            let canonical = if name == "NS" {
                number::canonical(s)?
            } else {
                s.to_owned()
            };
            if !seen.insert(canonical) {
                return Err(bad(&format!("Input collection {name} contains duplicates")));
            }
        }
        Ok(())
    };
    match (t.as_str(), v) {
        ("S", Value::String(_)) => Ok(()),
        ("N", Value::String(n)) => number::canonical(n).map(|_| ()),
        ("B", Value::String(b)) => decode_b64(b)
            .map(|_| ())
            .map_err(|_| bad("B is not base64")),
        ("BOOL", Value::Bool(_)) => Ok(()),
        ("NULL", Value::Bool(true)) => Ok(()),
        ("SS", v) => set(v, &|_| true, "SS"),
        ("NS", v) => set(v, &|s| number::canonical(s).is_ok(), "NS"),
        ("BS", v) => set(v, &|s| decode_b64(s).is_ok(), "BS"),
        ("L", Value::Array(list)) => list.iter().try_for_each(|e| check_nested(e, at, depth + 1)),
        ("M", Value::Object(map)) => map
            .iter()
            .try_for_each(|(k, e)| check_nested(e, &format!("{at}.{k}"), depth + 1)),
        (t, _) => Err(bad(&format!("unknown or ill-typed datatype {t}"))),
    }
}

fn check_item(item: &Item) -> Result<(), AwsError> {
    for (name, value) in item {
        check_value(value, name)?;
    }
    let size: usize = item
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len())
        .sum();
    if size > MAX_ITEM_BYTES {
        return Err(AwsError::validation(
            "Item size has exceeded the maximum allowed size",
        ));
    }
    Ok(())
}

fn item_of(input: &Value, member: &str) -> Result<Item, AwsError> {
    let item = opt_object(input, member)?
        .ok_or_else(|| super::input::missing(member))?
        .clone();
    check_item(&item)?;
    Ok(item)
}

impl TableDef {
    fn arn(&self, region: &str) -> String {
        format!("arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{}", self.name)
    }

    fn key_names(&self) -> Vec<&str> {
        let mut names = vec![self.hash.0.as_str()];
        if let Some((range, _)) = &self.range {
            names.push(range);
        }
        names
    }

    fn key_value(&self, (name, t): &(String, String), item: &Item) -> Result<Key, AwsError> {
        let value = item.get(name).ok_or_else(|| {
            AwsError::validation(format!(
                "One of the required keys was not given a value (missing key {name})"
            ))
        })?;
        let got = expr::type_of(value);
        if got != t {
            return Err(AwsError::validation(format!(
                "One or more parameter values were invalid: Type mismatch for key {name} expected: {t} actual: {got}"
            )));
        }
        let text = value.get(t).and_then(Value::as_str).unwrap_or_default();
        if text.is_empty() {
            return Err(AwsError::validation(format!(
                "One or more parameter values are not valid. The AttributeValue for a key attribute cannot contain an empty string value. Key: {name}"
            )));
        }
        Ok(match t.as_str() {
            "S" => Key::S(text.to_owned()),
            "N" => Key::N(number::canonical(text)?),
            _ => Key::B(
                decode_b64(text)
                    .map_err(|_| AwsError::validation(format!("key {name} is not base64")))?,
            ),
        })
    }

    /// The key of an item (or of a `Key` member, which must hold exactly the key attributes).
    fn key_of(&self, item: &Item, exact: bool) -> Result<(Key, Key), AwsError> {
        if exact
            && (item.len() != self.key_names().len()
                || item.keys().any(|k| !self.key_names().contains(&k.as_str())))
        {
            return Err(AwsError::validation(
                "The provided key element does not match the schema",
            ));
        }
        let hash = self.key_value(&self.hash, item)?;
        let range = match &self.range {
            Some(range) => self.key_value(range, item)?,
            None => Key::None,
        };
        Ok((hash, range))
    }

    fn key_item(&self, item: &Item) -> Item {
        self.key_names()
            .iter()
            .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    }

    fn description(&self, region: &str, count: usize) -> Value {
        let mut schema = vec![json!({"AttributeName": self.hash.0, "KeyType": "HASH"})];
        if let Some((range, _)) = &self.range {
            schema.push(json!({"AttributeName": range, "KeyType": "RANGE"}));
        }
        json!({
            "TableName": self.name,
            "TableArn": self.arn(region),
            "TableId": format!("{:032x}", expr_hash(&self.name)),
            "TableStatus": "ACTIVE",
            "KeySchema": schema,
            "AttributeDefinitions": self.attribute_definitions,
            "CreationDateTime": epoch_seconds(self.created_ms),
            "ItemCount": count,
            "TableSizeBytes": 0,
            "BillingModeSummary": {"BillingMode": self.billing_mode},
            "ProvisionedThroughput": {
                "NumberOfDecreasesToday": 0,
                "ReadCapacityUnits": self.provisioned.map_or(0, |(read, _)| read),
                "WriteCapacityUnits": self.provisioned.map_or(0, |(_, write)| write),
            },
            "DeletionProtectionEnabled": false,
        })
    }
}

/// CreateTable's `ProvisionedThroughput` as (read, write): each at least 1, and none with
/// `PAY_PER_REQUEST` (DynamoDB's rules). A `PROVISIONED` table without it is accepted and reports 0.
fn provisioned_throughput(
    input: &Value,
    billing_mode: &str,
) -> Result<Option<(u64, u64)>, AwsError> {
    if !matches!(billing_mode, "PROVISIONED" | "PAY_PER_REQUEST") {
        return Err(AwsError::validation(format!(
            "1 validation error detected: Value '{billing_mode}' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]"
        )));
    }
    let Some(throughput) = input.get("ProvisionedThroughput").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    if billing_mode == "PAY_PER_REQUEST" {
        return Err(AwsError::validation(
            "One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST",
        ));
    }
    let units = |name: &str| {
        match opt_i64(throughput, name)? {
        Some(n) if n >= 1 => Ok(n as u64),
        _ => Err(AwsError::validation(format!(
            "One or more parameter values were invalid: {name} must be at least 1 in ProvisionedThroughput"
        ))),
    }
    };
    Ok(Some((
        units("ReadCapacityUnits")?,
        units("WriteCapacityUnits")?,
    )))
}

fn expr_hash(name: &str) -> u128 {
    super::kinesis::hash_key(name)
}

impl Table {
    fn get(&self, key: &(Key, Key)) -> Option<&Item> {
        self.items.get(&key.0)?.get(&key.1)
    }

    fn set(&mut self, key: (Key, Key), item: Option<Item>) {
        match item {
            Some(item) => {
                if self
                    .items
                    .entry(key.0)
                    .or_default()
                    .insert(key.1, item)
                    .is_none()
                {
                    self.count += 1;
                }
            }
            None => {
                if let Some(partition) = self.items.get_mut(&key.0) {
                    if partition.remove(&key.1).is_some() {
                        self.count -= 1;
                    }
                    if partition.is_empty() {
                        self.items.remove(&key.0);
                    }
                }
            }
        }
    }
}

/// What a ReturnValues member asks for.
fn return_values(input: &Value, allowed: &[&str]) -> Result<String, AwsError> {
    let value = opt_str(input, "ReturnValues")?.unwrap_or("NONE");
    if !allowed.contains(&value) {
        return Err(AwsError::validation(format!(
            "ReturnValues can only be {} on this operation, got {value}",
            allowed.join(", ")
        )));
    }
    Ok(value.to_owned())
}

fn wants_old_on_failure(input: &Value) -> Result<bool, AwsError> {
    match opt_str(input, "ReturnValuesOnConditionCheckFailure")? {
        None | Some("NONE") => Ok(false),
        Some("ALL_OLD") => Ok(true),
        Some(other) => Err(AwsError::validation(format!(
            "ReturnValuesOnConditionCheckFailure must be NONE or ALL_OLD, got {other}"
        ))),
    }
}

/// A parsed condition of one request member, or `None` when the member is absent.
fn condition(
    input: &Value,
    member: &'static str,
    refs: &mut Refs<'_>,
) -> Result<Option<Cond>, AwsError> {
    opt_str(input, member)?
        .map(|text| expr::parse_condition(text, member, refs))
        .transpose()
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

    /// Reloads the tables persisted under `dir`.
    pub(crate) fn open(region: &str, dir: &Path) -> Result<DynamoDb, AwsError> {
        let path: PathBuf = dir.join("log");
        let (log, entries) = Log::open(&path).map_err(|e| AwsError::storage(&path, e))?;
        let db = DynamoDb::new(region, Some(log));
        for bytes in entries {
            let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
                AwsError::internal(format!("corrupt entry in {}: {e}", path.display()))
            })?;
            db.replay(entry)?;
        }
        Ok(db)
    }

    fn replay(&self, entry: Entry) -> Result<(), AwsError> {
        match entry {
            Entry::CreateTable { def } => {
                let table = Table {
                    def,
                    items: BTreeMap::new(),
                    count: 0,
                };
                write(&self.tables).insert(table.def.name.clone(), Arc::new(Mutex::new(table)));
            }
            Entry::DeleteTable { name } => {
                write(&self.tables).remove(&name);
            }
            Entry::Ttl { name, attribute } => {
                if let Ok(table) = self.table(&name) {
                    lock(&table).def.ttl_attribute = attribute;
                }
            }
            Entry::Write { ops, token } => {
                for op in ops {
                    let Ok(table) = self.table(&op.table) else {
                        continue;
                    };
                    let mut table = lock(&table);
                    let key = table.def.key_of(&op.key, false)?;
                    table.set(key, op.item);
                }
                if let Some((token, at, digest)) = token {
                    lock(&self.tokens).insert(token, (at, digest));
                }
            }
        }
        Ok(())
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

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
