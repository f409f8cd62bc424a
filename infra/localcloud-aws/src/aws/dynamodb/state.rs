//! A table's in-memory state and its operations: key values in DynamoDB's order, the definition, the items.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::expr::Item;
use super::wire::decode_b64;
use super::{expr, expr_hash, number};
use crate::aws::{epoch_seconds, AwsError, ACCOUNT_ID};

/// A key attribute's value, ordered as DynamoDB orders sort keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Key {
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
    pub(super) fn rank(&self) -> u8 {
        match self {
            Key::None => 0,
            Key::S(_) => 1,
            Key::N(_) => 2,
            Key::B(_) => 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct TableDef {
    pub(super) name: String,
    pub(super) hash: (String, String),
    pub(super) range: Option<(String, String)>,
    pub(super) attribute_definitions: Value,
    pub(super) billing_mode: String,
    /// `ProvisionedThroughput` (read, write) as created: reported by DescribeTable, never enforced (the
    /// local table does not throttle).
    #[serde(default)]
    pub(super) provisioned: Option<(u64, u64)>,
    pub(super) created_ms: i64,
    pub(super) ttl_attribute: Option<String>,
}

#[derive(Debug)]
pub(super) struct Table {
    pub(super) def: TableDef,
    pub(super) items: BTreeMap<Key, BTreeMap<Key, Item>>,
    pub(super) count: usize,
}

/// One write of a batch or transaction: the item's key and its new image (`None` deletes it).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Op {
    pub(super) table: String,
    pub(super) key: Item,
    pub(super) item: Option<Item>,
}

impl TableDef {
    pub(super) fn arn(&self, region: &str) -> String {
        format!("arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{}", self.name)
    }

    pub(super) fn key_names(&self) -> Vec<&str> {
        let mut names = vec![self.hash.0.as_str()];
        if let Some((range, _)) = &self.range {
            names.push(range);
        }
        names
    }

    pub(super) fn key_value(
        &self,
        (name, t): &(String, String),
        item: &Item,
    ) -> Result<Key, AwsError> {
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
    pub(super) fn key_of(&self, item: &Item, exact: bool) -> Result<(Key, Key), AwsError> {
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

    pub(super) fn key_item(&self, item: &Item) -> Item {
        self.key_names()
            .iter()
            .filter_map(|k| item.get(*k).map(|v| ((*k).to_owned(), v.clone())))
            .collect()
    }

    pub(super) fn description(&self, region: &str, count: usize) -> Value {
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

impl Table {
    pub(super) fn get(&self, key: &(Key, Key)) -> Option<&Item> {
        self.items.get(&key.0)?.get(&key.1)
    }

    pub(super) fn set(&mut self, key: (Key, Key), item: Option<Item>) {
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

pub(super) fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(super) fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
