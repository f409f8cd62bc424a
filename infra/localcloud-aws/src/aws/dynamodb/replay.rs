//! The service log: its entries and their replay on open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::state::{write, Op, Table, TableDef};
use super::DynamoDb;
use crate::aws::AwsError;
use crate::store::{lock, Durability, Log};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Entry {
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

impl DynamoDb {
    /// Reloads the tables persisted under `dir`.
    pub(crate) fn open(
        region: &str,
        dir: &Path,
        durability: Durability,
    ) -> Result<DynamoDb, AwsError> {
        let path: PathBuf = dir.join("log");
        let (log, entries) =
            Log::open(&path, durability).map_err(|e| AwsError::storage(&path, e))?;
        let db = DynamoDb::new(region, Some(log));
        for bytes in entries {
            let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
                AwsError::internal(format!("corrupt entry in {}: {e}", path.display()))
            })?;
            db.replay(entry)?;
        }
        Ok(db)
    }

    pub(super) fn replay(&self, entry: Entry) -> Result<(), AwsError> {
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
}
