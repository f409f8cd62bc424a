//! The service log: its entries and their replay on open.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use super::state::{Message, Queue};
use super::Sqs;
use crate::aws::AwsError;
use crate::store::{lock, Durability, Log};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum Entry {
    Create {
        name: String,
        attributes: BTreeMap<String, String>,
        created_ms: i64,
    },
    Delete {
        name: String,
    },
    Attributes {
        name: String,
        attributes: BTreeMap<String, String>,
        at_ms: i64,
    },
    Purge {
        name: String,
    },
    Send {
        queue: String,
        messages: Vec<Message>,
    },
    /// Messages received (new visibility, count, receipt) or made visible again.
    Update {
        queue: String,
        messages: Vec<Message>,
    },
    Remove {
        queue: String,
        ids: Vec<String>,
    },
    Move {
        from: String,
        to: String,
        message: Message,
    },
}

impl Sqs {
    /// Reloads the queues persisted under `dir`.
    pub(crate) fn open(region: &str, dir: &Path, durability: Durability) -> Result<Sqs, AwsError> {
        let path: PathBuf = dir.join("log");
        let (log, entries) =
            Log::open(&path, durability).map_err(|e| AwsError::storage(&path, e))?;
        let sqs = Sqs::new(region, Some(log));
        {
            let mut queues = lock(&sqs.state);
            for bytes in &entries {
                let entry: Entry = serde_json::from_slice(bytes).map_err(|e| {
                    AwsError::internal(format!("corrupt entry in {}: {e}", path.display()))
                })?;
                replay(&mut queues, entry);
            }
        }
        sqs.ids.store(entries.len() as u64, Ordering::Relaxed);
        Ok(sqs)
    }
}

pub(super) fn replay(queues: &mut BTreeMap<String, Queue>, entry: Entry) {
    match entry {
        Entry::Create {
            name,
            attributes,
            created_ms,
        } => {
            queues.insert(name, Queue::new(attributes, created_ms));
        }
        Entry::Delete { name } => {
            queues.remove(&name);
        }
        Entry::Attributes {
            name,
            attributes,
            at_ms,
        } => {
            if let Some(queue) = queues.get_mut(&name) {
                queue.attributes.extend(attributes);
                queue.modified_ms = at_ms;
            }
        }
        Entry::Purge { name } => {
            if let Some(queue) = queues.get_mut(&name) {
                queue.messages.clear();
            }
        }
        Entry::Send { queue, messages } => {
            if let Some(queue) = queues.get_mut(&queue) {
                for message in messages {
                    queue.push(message);
                }
            }
        }
        Entry::Update { queue, messages } => {
            if let Some(queue) = queues.get_mut(&queue) {
                for update in messages {
                    if let Some(message) = queue.messages.values_mut().find(|m| m.id == update.id) {
                        *message = update;
                    }
                }
            }
        }
        Entry::Remove { queue, ids } => {
            if let Some(queue) = queues.get_mut(&queue) {
                queue.messages.retain(|_, m| !ids.contains(&m.id));
            }
        }
        Entry::Move { from, to, message } => {
            if let Some(queue) = queues.get_mut(&from) {
                queue.messages.retain(|_, m| m.id != message.id);
            }
            if let Some(queue) = queues.get_mut(&to) {
                queue.push(message);
            }
        }
    }
}
