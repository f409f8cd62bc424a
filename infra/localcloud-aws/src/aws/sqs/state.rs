//! A queue's in-memory state: its attributes (and their defaults), its messages.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Notify;

#[derive(Debug)]
pub(super) struct Queue {
    pub(super) created_ms: i64,
    pub(super) modified_ms: i64,
    pub(super) attributes: BTreeMap<String, String>,
    pub(super) messages: BTreeMap<u64, Message>,
    pub(super) next: u64,
    pub(super) notify: Arc<Notify>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Message {
    pub(super) id: String,
    pub(super) body: String,
    pub(super) attributes: Map<String, Value>,
    pub(super) sent_ms: i64,
    pub(super) visible_at_ms: i64,
    pub(super) receive_count: u32,
    pub(super) first_receive_ms: i64,
    pub(super) receipt: Option<String>,
}

pub(super) fn defaults() -> BTreeMap<String, String> {
    [
        ("VisibilityTimeout", "30"),
        ("DelaySeconds", "0"),
        ("MessageRetentionPeriod", "345600"),
        ("MaximumMessageSize", "262144"),
        ("ReceiveMessageWaitTimeSeconds", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Queue {
    pub(super) fn new(attributes: BTreeMap<String, String>, now: i64) -> Queue {
        Queue {
            created_ms: now,
            modified_ms: now,
            attributes,
            messages: BTreeMap::new(),
            next: 0,
            notify: Arc::new(Notify::new()),
        }
    }

    pub(super) fn push(&mut self, message: Message) {
        self.messages.insert(self.next, message);
        self.next += 1;
    }
}
