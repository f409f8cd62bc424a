//! SQS, awsJson1.0 (query-compatible errors): standard queues with visibility timeouts, long polling and
//! redrive to a dead-letter queue.
//!
//! Operations: CreateQueue, GetQueueUrl, GetQueueAttributes, SetQueueAttributes, ListQueues, DeleteQueue,
//! PurgeQueue, SendMessage, SendMessageBatch, ReceiveMessage (`WaitTimeSeconds` long polling, visibility
//! timeout), DeleteMessage, DeleteMessageBatch, ChangeMessageVisibility.
//!
//! As in AWS: a message received `maxReceiveCount` times (the queue's `RedrivePolicy`) and not deleted is
//! moved to the dead-letter queue instead of being received again; a stale receipt handle deletes nothing
//! and succeeds; errors carry the query-protocol code in `x-amzn-query-error`, which the SDK matches on.
//! Queue URLs are `http://<the Host the client used>/123456789012/<name>`; any URL whose last segment is a
//! queue name resolves to it (so CloudFormation-style `https://sqs.us-east-1.amazonaws.com/...` URLs work).
//!
//! Local simplifications: FIFO queues are refused; messages are not expired by `MessageRetentionPeriod`;
//! `ApproximateNumberOf*` are exact. Sends, receives (visibility and receive counts), deletes and moves are
//! logged and synced before the answer, so a restart keeps in-flight messages in flight.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use md5::{Digest, Md5};
use serde_json::{json, Map, Value};
use tokio::sync::Notify;

use super::input::{opt_array, opt_i64, opt_object, opt_str, req_str};
use super::{now_ms, AwsError, LocalAws, ACCOUNT_ID};
use crate::store::{lock, Log};

mod replay;
mod state;
mod wire;

use replay::Entry;
use state::{defaults, Message, Queue};
pub(crate) use wire::error_response;
use wire::{
    check_attributes, check_body, check_message_attributes, error, md5_hex, md5_of_attributes,
    message_json, no_queue, queue_name, redrive,
};

const MAX_MESSAGE_BYTES: usize = 256 * 1024;
const MAX_WAIT_SECONDS: i64 = 20;

/// Dispatches one SQS operation; ReceiveMessage long-polls here, outside the blocking pool.
pub(crate) async fn call(
    aws: &Arc<LocalAws>,
    body: &Bytes,
    operation: &str,
    host: Option<&str>,
) -> Result<Value, AwsError> {
    let mut input = super::parse_json_body(body)?;
    if let (Some(host), Some(object)) = (host, input.as_object_mut()) {
        // Queue URLs name the host the client used.
        object.insert("__host".to_owned(), json!(host));
    }
    if operation == "ReceiveMessage" {
        return receive_long_poll(aws, input).await;
    }
    let aws = aws.clone();
    let operation = operation.to_owned();
    tokio::task::spawn_blocking(move || {
        let s = &aws.sqs;
        match operation.as_str() {
            "CreateQueue" => s.create_queue(&input),
            "GetQueueUrl" => s.get_queue_url(&input),
            "GetQueueAttributes" => s.get_attributes(&input),
            "SetQueueAttributes" => s.set_attributes(&input),
            "ListQueues" => s.list_queues(&input),
            "DeleteQueue" => s.delete_queue(&input),
            "PurgeQueue" => s.purge(&input),
            "SendMessage" => s.send_message(&input),
            "SendMessageBatch" => s.send_batch(&input),
            "DeleteMessage" => s.delete_message(&input),
            "DeleteMessageBatch" => s.delete_batch(&input),
            "ChangeMessageVisibility" => s.change_visibility(&input),
            other => Err(error(
                "AWS.SimpleQueueService.UnsupportedOperation",
                format!("operation SQS.{other} is not supported by the tally local cloud"),
            )),
        }
    })
    .await
    .map_err(|e| AwsError::internal(format!("operation panicked: {e}")))?
}

/// All queues of the local endpoint.
#[derive(Debug)]
pub struct Sqs {
    region: String,
    log: Option<Log>,
    state: Mutex<BTreeMap<String, Queue>>,
    ids: AtomicU64,
}

impl Sqs {
    pub(crate) fn new(region: &str, log: Option<Log>) -> Sqs {
        Sqs {
            region: region.to_owned(),
            log,
            state: Mutex::new(BTreeMap::new()),
            ids: AtomicU64::new(0),
        }
    }

    fn arn(&self, name: &str) -> String {
        format!("arn:aws:sqs:{}:{ACCOUNT_ID}:{name}", self.region)
    }

    /// Writes a log entry (under the state lock, so entries keep the order of the changes).
    fn log_entry(&self, entry: &Entry) -> Result<Option<u64>, AwsError> {
        super::log_write(self.log.as_ref(), entry)
    }

    fn sync(&self, ticket: Option<u64>) -> Result<(), AwsError> {
        super::log_sync(self.log.as_ref(), ticket)
    }

    fn new_id(&self) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let digest = Md5::digest(format!("{}|{n}|{}", now_ms(), std::process::id()).as_bytes());
        let h = hex::encode(digest);
        format!(
            "{}-{}-4{}-a{}-{}",
            &h[..8],
            &h[8..12],
            &h[13..16],
            &h[17..20],
            &h[20..32]
        )
    }

    fn url(&self, input: &Value, name: &str) -> String {
        let host = input
            .get("__host")
            .and_then(Value::as_str)
            .unwrap_or("127.0.0.1");
        format!("http://{host}/{ACCOUNT_ID}/{name}")
    }

    /// Creates a queue (the template loader and tests); an existing queue with the same attributes is returned.
    pub fn create_queue(&self, input: &Value) -> Result<Value, AwsError> {
        let name = req_str(input, "QueueName")?;
        if name.is_empty()
            || name.len() > 80
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            if name.ends_with(".fifo") {
                return Err(error(
                    "InvalidParameterValue",
                    "FIFO queues are not supported by the tally local cloud",
                ));
            }
            return Err(error(
                "InvalidParameterValue",
                "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length",
            ));
        }
        let attributes = check_attributes(opt_object(input, "Attributes")?.unwrap_or(&Map::new()))?;
        let now = now_ms();
        let ticket = {
            let mut queues = lock(&self.state);
            if let Some(queue) = queues.get(name) {
                let differs = attributes
                    .iter()
                    .any(|(k, v)| queue.attributes.get(k) != Some(v));
                if differs {
                    return Err(error(
                        "QueueAlreadyExists",
                        format!("A queue already exists with the same name and a different value for attribute(s) {}", attributes.keys().cloned().collect::<Vec<_>>().join(", ")),
                    ));
                }
                return Ok(json!({"QueueUrl": self.url(input, name)}));
            }
            let mut all = defaults();
            all.extend(attributes.clone());
            let ticket = self.log_entry(&Entry::Create {
                name: name.to_owned(),
                attributes: all.clone(),
                created_ms: now,
            })?;
            queues.insert(name.to_owned(), Queue::new(all, now));
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({"QueueUrl": self.url(input, name)}))
    }

    fn get_queue_url(&self, input: &Value) -> Result<Value, AwsError> {
        let name = req_str(input, "QueueName")?;
        if !lock(&self.state).contains_key(name) {
            return Err(no_queue());
        }
        Ok(json!({"QueueUrl": self.url(input, name)}))
    }

    fn queue_of<'q>(
        queues: &'q mut BTreeMap<String, Queue>,
        input: &Value,
    ) -> Result<(String, &'q mut Queue), AwsError> {
        let name = queue_name(req_str(input, "QueueUrl")?).to_owned();
        let queue = queues.get_mut(&name).ok_or_else(no_queue)?;
        Ok((name, queue))
    }

    fn get_attributes(&self, input: &Value) -> Result<Value, AwsError> {
        let mut queues = lock(&self.state);
        let (name, queue) = Self::queue_of(&mut queues, input)?;
        let wanted: Vec<String> = opt_array(input, "AttributeNames")?
            .map(|names| {
                names
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let now = now_ms();
        let mut all = queue.attributes.clone();
        let visible = queue
            .messages
            .values()
            .filter(|m| m.visible_at_ms <= now)
            .count();
        let in_flight = queue
            .messages
            .values()
            .filter(|m| m.visible_at_ms > now && m.receipt.is_some())
            .count();
        let delayed = queue
            .messages
            .values()
            .filter(|m| m.visible_at_ms > now && m.receipt.is_none())
            .count();
        all.insert("ApproximateNumberOfMessages".into(), visible.to_string());
        all.insert(
            "ApproximateNumberOfMessagesNotVisible".into(),
            in_flight.to_string(),
        );
        all.insert(
            "ApproximateNumberOfMessagesDelayed".into(),
            delayed.to_string(),
        );
        all.insert("QueueArn".into(), self.arn(&name));
        all.insert(
            "CreatedTimestamp".into(),
            (queue.created_ms / 1000).to_string(),
        );
        all.insert(
            "LastModifiedTimestamp".into(),
            (queue.modified_ms / 1000).to_string(),
        );
        let out: Map<String, Value> = all
            .into_iter()
            .filter(|(k, _)| wanted.iter().any(|w| w == "All" || w == k))
            .map(|(k, v)| (k, json!(v)))
            .collect();
        for w in &wanted {
            if w != "All"
                && !out.contains_key(w)
                && !matches!(
                    w.as_str(),
                    "RedrivePolicy" | "Policy" | "RedriveAllowPolicy"
                )
            {
                return Err(error(
                    "InvalidAttributeName",
                    format!("Unknown Attribute {w}."),
                ));
            }
        }
        Ok(if out.is_empty() {
            json!({})
        } else {
            json!({"Attributes": out})
        })
    }

    fn set_attributes(&self, input: &Value) -> Result<Value, AwsError> {
        let attributes = check_attributes(opt_object(input, "Attributes")?.ok_or_else(|| {
            error(
                "MissingParameter",
                "The request must contain the parameter Attributes.",
            )
        })?)?;
        let now = now_ms();
        let ticket = {
            let mut queues = lock(&self.state);
            let (name, queue) = Self::queue_of(&mut queues, input)?;
            let ticket = self.log_entry(&Entry::Attributes {
                name,
                attributes: attributes.clone(),
                at_ms: now,
            })?;
            queue.attributes.extend(attributes);
            queue.modified_ms = now;
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({}))
    }

    fn list_queues(&self, input: &Value) -> Result<Value, AwsError> {
        let prefix = opt_str(input, "QueueNamePrefix")?.unwrap_or("");
        let urls: Vec<String> = lock(&self.state)
            .keys()
            .filter(|n| n.starts_with(prefix))
            .map(|n| self.url(input, n))
            .collect();
        Ok(if urls.is_empty() {
            json!({})
        } else {
            json!({"QueueUrls": urls})
        })
    }

    fn delete_queue(&self, input: &Value) -> Result<Value, AwsError> {
        let ticket = {
            let mut queues = lock(&self.state);
            let (name, queue) = Self::queue_of(&mut queues, input)?;
            queue.notify.notify_waiters();
            let ticket = self.log_entry(&Entry::Delete { name: name.clone() })?;
            queues.remove(&name);
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({}))
    }

    fn purge(&self, input: &Value) -> Result<Value, AwsError> {
        let ticket = {
            let mut queues = lock(&self.state);
            let (name, queue) = Self::queue_of(&mut queues, input)?;
            let ticket = self.log_entry(&Entry::Purge { name })?;
            queue.messages.clear();
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({}))
    }

    /// A new message from a SendMessage(Batch) entry, validated.
    fn new_message(&self, entry: &Value, queue_delay: i64, now: i64) -> Result<Message, AwsError> {
        let body = opt_str(entry, "MessageBody")?.unwrap_or_default();
        check_body(body)?;
        let delay = match opt_i64(entry, "DelaySeconds")? {
            None => queue_delay,
            Some(d @ 0..=900) => d,
            Some(d) => {
                return Err(error(
                    "InvalidParameterValue",
                    format!("Value {d} for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900."),
                ))
            }
        };
        let attributes = opt_object(entry, "MessageAttributes")?
            .cloned()
            .unwrap_or_default();
        check_message_attributes(&attributes)?;
        Ok(Message {
            id: self.new_id(),
            body: body.to_owned(),
            attributes,
            sent_ms: now,
            visible_at_ms: now + delay * 1000,
            receive_count: 0,
            first_receive_ms: 0,
            receipt: None,
        })
    }

    fn send(
        &self,
        input: &Value,
        entries: &[&Value],
    ) -> Result<Vec<Result<Message, AwsError>>, AwsError> {
        let now = now_ms();
        let (ticket, results) = {
            let mut queues = lock(&self.state);
            let (name, queue) = Self::queue_of(&mut queues, input)?;
            let delay = queue
                .attributes
                .get("DelaySeconds")
                .and_then(|d| d.parse().ok())
                .unwrap_or(0);
            let results: Vec<Result<Message, AwsError>> = entries
                .iter()
                .map(|e| self.new_message(e, delay, now))
                .collect();
            let messages: Vec<Message> = results
                .iter()
                .filter_map(|r| r.as_ref().ok().cloned())
                .collect();
            let ticket = if messages.is_empty() {
                None
            } else {
                self.log_entry(&Entry::Send {
                    queue: name,
                    messages: messages.clone(),
                })?
            };
            for message in messages {
                queue.push(message);
            }
            (ticket, results)
        };
        self.sync(ticket)?;
        if let Some(queue) = lock(&self.state).get(queue_name(req_str(input, "QueueUrl")?)) {
            queue.notify.notify_waiters();
        }
        Ok(results)
    }

    fn send_message(&self, input: &Value) -> Result<Value, AwsError> {
        let message = self
            .send(input, &[input])?
            .pop()
            .ok_or_else(|| AwsError::internal("no result"))??;
        let mut out =
            json!({"MessageId": message.id, "MD5OfMessageBody": md5_hex(message.body.as_bytes())});
        if let Some(md5) = md5_of_attributes(&message.attributes) {
            out["MD5OfMessageAttributes"] = json!(md5);
        }
        Ok(out)
    }

    fn batch_entries(input: &Value) -> Result<Vec<(&str, &Value)>, AwsError> {
        let entries = opt_array(input, "Entries")?
            .map(Vec::as_slice)
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(error(
                "AWS.SimpleQueueService.EmptyBatchRequest",
                "There should be at least one SendMessageBatchRequestEntry in the request.",
            ));
        }
        if entries.len() > 10 {
            return Err(error(
                "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
                format!(
                    "Maximum number of entries per request are 10. You have sent {}.",
                    entries.len()
                ),
            ));
        }
        let mut out = Vec::new();
        for entry in entries {
            let id = req_str(entry, "Id")?;
            if id.is_empty()
                || id.len() > 80
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
            {
                return Err(error(
                    "AWS.SimpleQueueService.InvalidBatchEntryId",
                    "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.",
                ));
            }
            if out.iter().any(|(seen, _)| *seen == id) {
                return Err(error(
                    "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                    format!("Id {id} repeated."),
                ));
            }
            out.push((id, entry));
        }
        Ok(out)
    }

    fn send_batch(&self, input: &Value) -> Result<Value, AwsError> {
        let entries = Self::batch_entries(input)?;
        let total: usize = entries
            .iter()
            .map(|(_, e)| {
                e.get("MessageBody")
                    .and_then(Value::as_str)
                    .map_or(0, str::len)
            })
            .sum();
        if total > MAX_MESSAGE_BYTES {
            return Err(error(
                "AWS.SimpleQueueService.BatchRequestTooLong",
                format!("Batch requests cannot be longer than {MAX_MESSAGE_BYTES} bytes. You have sent {total} bytes."),
            ));
        }
        let bodies: Vec<&Value> = entries.iter().map(|(_, e)| *e).collect();
        let results = self.send(input, &bodies)?;
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for ((id, _), result) in entries.iter().zip(results) {
            match result {
                Ok(message) => {
                    let mut out = json!({"Id": id, "MessageId": message.id, "MD5OfMessageBody": md5_hex(message.body.as_bytes())});
                    if let Some(md5) = md5_of_attributes(&message.attributes) {
                        out["MD5OfMessageAttributes"] = json!(md5);
                    }
                    successful.push(out);
                }
                Err(e) => failed.push(
                    json!({"Id": id, "SenderFault": true, "Code": e.code, "Message": e.message}),
                ),
            }
        }
        Ok(json!({"Successful": successful, "Failed": failed}))
    }

    /// One non-waiting receive: up to `max` visible messages, redriving those past their receive limit.
    fn receive_now(
        &self,
        input: &Value,
        max: usize,
        visibility: Option<i64>,
    ) -> Result<(Vec<Message>, Arc<Notify>, i64), AwsError> {
        let now = now_ms();
        let (ticket, received, notify, wait) = {
            let mut guard = lock(&self.state);
            let queues = &mut *guard;
            let name = queue_name(req_str(input, "QueueUrl")?).to_owned();
            let queue = queues.get(&name).ok_or_else(no_queue)?;
            let notify = queue.notify.clone();
            let visibility = visibility
                .or_else(|| {
                    queue
                        .attributes
                        .get("VisibilityTimeout")
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(30);
            let wait = queue
                .attributes
                .get("ReceiveMessageWaitTimeSeconds")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let policy = queue
                .attributes
                .get("RedrivePolicy")
                .map(|p| redrive(p))
                .transpose()?;
            let ready: Vec<u64> = queue
                .messages
                .iter()
                .filter(|(_, m)| m.visible_at_ms <= now)
                .map(|(k, _)| *k)
                .collect();
            let mut entries = Vec::new();
            let mut received = Vec::new();
            for key in ready {
                if received.len() >= max {
                    break;
                }
                let Some(queue) = queues.get_mut(&name) else {
                    break;
                };
                let Some(message) = queue.messages.get(&key).cloned() else {
                    continue;
                };
                if let Some((dlq, limit)) = &policy {
                    if message.receive_count >= *limit && dlq != &name && queues.contains_key(dlq) {
                        if let Some(queue) = queues.get_mut(&name) {
                            queue.messages.remove(&key);
                        }
                        let moved = Message {
                            receipt: None,
                            visible_at_ms: now,
                            ..message
                        };
                        entries.push(Entry::Move {
                            from: name.clone(),
                            to: dlq.clone(),
                            message: moved.clone(),
                        });
                        if let Some(target) = queues.get_mut(dlq) {
                            target.push(moved);
                            target.notify.notify_waiters();
                        }
                        continue;
                    }
                }
                let Some(queue) = queues.get_mut(&name) else {
                    break;
                };
                let Some(message) = queue.messages.get_mut(&key) else {
                    continue;
                };
                message.receive_count += 1;
                if message.first_receive_ms == 0 {
                    message.first_receive_ms = now;
                }
                message.visible_at_ms = now + visibility * 1000;
                let n = self.ids.fetch_add(1, Ordering::Relaxed);
                message.receipt =
                    Some(URL_SAFE_NO_PAD.encode(format!("{name}|{}|{n}|{now}", message.id)));
                received.push(message.clone());
            }
            if !received.is_empty() {
                entries.push(Entry::Update {
                    queue: name.clone(),
                    messages: received.clone(),
                });
            }
            let mut ticket = None;
            for entry in &entries {
                ticket = self.log_entry(entry)?.or(ticket);
            }
            (ticket, received, notify, wait)
        };
        self.sync(ticket)?;
        Ok((received, notify, wait))
    }

    fn find_receipt<'q>(
        queue: &'q mut Queue,
        receipt: &str,
    ) -> Result<Option<(u64, &'q mut Message)>, AwsError> {
        let decoded = URL_SAFE_NO_PAD
            .decode(receipt)
            .ok()
            .and_then(|d| String::from_utf8(d).ok());
        let Some(id) = decoded
            .as_deref()
            .and_then(|d| d.split('|').nth(1))
            .map(str::to_owned)
        else {
            return Err(error(
                "ReceiptHandleIsInvalid",
                format!("The input receipt handle \"{receipt}\" is not a valid receipt handle."),
            ));
        };
        Ok(queue
            .messages
            .iter_mut()
            .find(|(_, m)| m.id == id && m.receipt.as_deref() == Some(receipt))
            .map(|(k, m)| (*k, m)))
    }

    fn delete_receipts(
        &self,
        input: &Value,
        receipts: &[&str],
    ) -> Result<Vec<Result<(), AwsError>>, AwsError> {
        let (ticket, results) = {
            let mut queues = lock(&self.state);
            let (name, queue) = Self::queue_of(&mut queues, input)?;
            let mut ids = Vec::new();
            let mut results = Vec::new();
            for receipt in receipts {
                match Self::find_receipt(queue, receipt) {
                    Ok(Some((key, message))) => {
                        ids.push(message.id.clone());
                        queue.messages.remove(&key);
                        results.push(Ok(()));
                    }
                    // A stale handle (the message was received again, or is gone) deletes nothing and succeeds.
                    Ok(None) => results.push(Ok(())),
                    Err(e) => results.push(Err(e)),
                }
            }
            let ticket = if ids.is_empty() {
                None
            } else {
                self.log_entry(&Entry::Remove { queue: name, ids })?
            };
            (ticket, results)
        };
        self.sync(ticket)?;
        Ok(results)
    }

    fn delete_message(&self, input: &Value) -> Result<Value, AwsError> {
        let receipt = req_str(input, "ReceiptHandle")?;
        self.delete_receipts(input, &[receipt])?
            .pop()
            .unwrap_or(Ok(()))?;
        Ok(json!({}))
    }

    fn delete_batch(&self, input: &Value) -> Result<Value, AwsError> {
        let entries = Self::batch_entries(input)?;
        let receipts = entries
            .iter()
            .map(|(_, e)| req_str(e, "ReceiptHandle"))
            .collect::<Result<Vec<_>, _>>()?;
        let results = self.delete_receipts(input, &receipts)?;
        let mut successful = Vec::new();
        let mut failed = Vec::new();
        for ((id, _), result) in entries.iter().zip(results) {
            match result {
                Ok(()) => successful.push(json!({"Id": id})),
                Err(e) => failed.push(
                    json!({"Id": id, "SenderFault": true, "Code": e.code, "Message": e.message}),
                ),
            }
        }
        Ok(json!({"Successful": successful, "Failed": failed}))
    }

    fn change_visibility(&self, input: &Value) -> Result<Value, AwsError> {
        let receipt = req_str(input, "ReceiptHandle")?;
        let timeout = opt_i64(input, "VisibilityTimeout")?.ok_or_else(|| {
            error(
                "MissingParameter",
                "The request must contain the parameter VisibilityTimeout.",
            )
        })?;
        if !(0..=43_200).contains(&timeout) {
            return Err(error(
                "InvalidParameterValue",
                format!("Value {timeout} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."),
            ));
        }
        let now = now_ms();
        let ticket = {
            let mut queues = lock(&self.state);
            let (name, queue) = Self::queue_of(&mut queues, input)?;
            let notify = queue.notify.clone();
            let Some((_, message)) = Self::find_receipt(queue, receipt)? else {
                return Err(error(
                    "AWS.SimpleQueueService.MessageNotInflight",
                    "Message does not exist or is not available for visibility timeout change.",
                ));
            };
            if message.visible_at_ms <= now {
                return Err(error(
                    "AWS.SimpleQueueService.MessageNotInflight",
                    "Message does not exist or is not available for visibility timeout change.",
                ));
            }
            message.visible_at_ms = now + timeout * 1000;
            let ticket = self.log_entry(&Entry::Update {
                queue: name,
                messages: vec![message.clone()],
            })?;
            notify.notify_waiters();
            ticket
        };
        self.sync(ticket)?;
        Ok(json!({}))
    }

    /// When the next message of a queue becomes visible, if any is waiting.
    fn next_visible_ms(&self, input: &Value) -> Option<i64> {
        let queues = lock(&self.state);
        let queue = queues.get(queue_name(input.get("QueueUrl")?.as_str()?))?;
        queue.messages.values().map(|m| m.visible_at_ms).min()
    }
}

/// ReceiveMessage: returns at once when messages are visible, otherwise waits up to `WaitTimeSeconds` for a
/// send, a visibility change or a message's timeout to expire.
async fn receive_long_poll(aws: &Arc<LocalAws>, input: Value) -> Result<Value, AwsError> {
    let max = match opt_i64(&input, "MaxNumberOfMessages")? {
        None => 1,
        Some(n @ 1..=10) => n as usize,
        Some(n) => {
            return Err(error(
                "InvalidParameterValue",
                format!("Value {n} for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided."),
            ))
        }
    };
    let visibility = match opt_i64(&input, "VisibilityTimeout")? {
        None => None,
        Some(v @ 0..=43_200) => Some(v),
        Some(v) => {
            return Err(error(
                "InvalidParameterValue",
                format!("Value {v} for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200."),
            ))
        }
    };
    let wait = match opt_i64(&input, "WaitTimeSeconds")? {
        None => None,
        Some(w @ 0..=MAX_WAIT_SECONDS) => Some(w),
        Some(w) => {
            return Err(error(
                "InvalidParameterValue",
                format!("Value {w} for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided."),
            ))
        }
    };
    let input = Arc::new(input);
    let started = now_ms();
    let mut deadline = None;
    loop {
        let (aws2, input2) = (aws.clone(), input.clone());
        let (messages, notify, queue_wait) =
            tokio::task::spawn_blocking(move || aws2.sqs.receive_now(&input2, max, visibility))
                .await
                .map_err(|e| AwsError::internal(format!("operation panicked: {e}")))??;
        let deadline = *deadline.get_or_insert(started + wait.unwrap_or(queue_wait) * 1000);
        if !messages.is_empty() {
            let list: Vec<Value> = messages.iter().map(|m| message_json(m, &input)).collect();
            return Ok(json!({"Messages": list}));
        }
        let now = now_ms();
        if now >= deadline {
            return Ok(json!({}));
        }
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Re-check after registering: a send between the receive and `enable` must not be missed.
        let wake = aws
            .sqs
            .next_visible_ms(&input)
            .filter(|at| *at > now)
            .map_or(deadline, |at| at.min(deadline));
        if aws.sqs.next_visible_ms(&input).is_some_and(|at| at <= now) {
            continue;
        }
        let _ =
            tokio::time::timeout(Duration::from_millis((wake - now).max(1) as u64), notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redrive_policies() {
        fn check(text: &str, expect: Result<(&str, u32), &str>) {
            match (redrive(text), expect) {
                (Ok((name, count)), Ok((n, c))) => {
                    assert_eq!((name.as_str(), count), (n, c), "{text}")
                }
                (Err(e), Err(fragment)) => {
                    assert!(e.message.contains(fragment), "{text}: {}", e.message)
                }
                (got, expect) => panic!("{text}: got {got:?}, expected {expect:?}"),
            }
        }
        check(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":3}"#,
            Ok(("dlq", 3)),
        );
        check(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":"5"}"#,
            Ok(("dlq", 5)),
        );
        check(
            r#"{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:123456789012:dlq","maxReceiveCount":0}"#,
            Err("maxReceiveCount"),
        );
        check(r#"{"maxReceiveCount":3}"#, Err("deadLetterTargetArn"));
        check("not json", Err("not a valid JSON"));
        check(
            r#"{"deadLetterTargetArn":"arn:","maxReceiveCount":3}"#,
            Err("Invalid deadLetterTargetArn"),
        );
    }

    #[test]
    fn bodies() {
        assert!(check_body("hello").is_ok());
        assert!(check_body("").is_err());
        assert!(check_body("\u{0}").is_err());
        assert!(check_body("\u{fffe}").is_err());
        assert!(check_body(&"x".repeat(MAX_MESSAGE_BYTES + 1)).is_err());
    }

    #[test]
    fn attribute_md5_matches_the_documented_encoding() {
        // Independent computation of the same encoding for one String attribute.
        let mut attributes = Map::new();
        attributes.insert(
            "k".into(),
            json!({"DataType": "String", "StringValue": "v"}),
        );
        let mut buf = Vec::new();
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(b"k");
        buf.extend_from_slice(&6u32.to_be_bytes());
        buf.extend_from_slice(b"String");
        buf.push(1);
        buf.extend_from_slice(&1u32.to_be_bytes());
        buf.extend_from_slice(b"v");
        assert_eq!(md5_of_attributes(&attributes), Some(md5_hex(&buf)));
        assert_eq!(md5_of_attributes(&Map::new()), None);
    }

    #[test]
    fn queue_names_come_from_urls_or_names() {
        assert_eq!(
            queue_name("http://127.0.0.1:4566/123456789012/failures"),
            "failures"
        );
        assert_eq!(
            queue_name("https://sqs.us-east-1.amazonaws.com/123456789012/failures/"),
            "failures"
        );
        assert_eq!(queue_name("failures"), "failures");
    }
}
