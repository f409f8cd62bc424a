//! SQS behaviours, each run against the local endpoint and moto.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use crate::harness::{agree, code, unique, Target};

async fn queue(client: &Client, attributes: &[(QueueAttributeName, String)]) -> (String, String) {
    let name = unique("failures");
    let mut create = client.create_queue().queue_name(&name);
    for (k, v) in attributes {
        create = create.attributes(k.clone(), v);
    }
    let url = create
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("url")
        .to_owned();
    (name, url)
}

async fn arn(client: &Client, url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("attributes")
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("arn")
        .clone()
}

async fn receive(
    client: &Client,
    url: &str,
    max: i32,
    visibility: i32,
    wait: i32,
) -> Vec<aws_sdk_sqs::types::Message> {
    client
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(max)
        .visibility_timeout(visibility)
        .wait_time_seconds(wait)
        .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
        .send()
        .await
        .expect("receive")
        .messages()
        .to_vec()
}

fn bodies(messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
    let mut out: Vec<String> = messages
        .iter()
        .map(|m| m.body().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

fn receive_count(message: &aws_sdk_sqs::types::Message) -> String {
    message
        .attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn send_receive_hide_and_delete() {
    agree(|t: Arc<Target>| async move {
        let c = t.sqs();
        let (name, url) = queue(&c, &[]).await;
        let looked_up = c
            .get_queue_url()
            .queue_name(&name)
            .send()
            .await
            .expect("url");
        assert!(looked_up.queue_url().is_some_and(|u| u.ends_with(&name)));
        let sent = c
            .send_message()
            .queue_url(&url)
            .message_body("poison record")
            .send()
            .await
            .expect("send");
        let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(b"poison record"));
        assert_eq!(sent.md5_of_message_body(), Some(md5.as_str()));
        let first = receive(&c, &url, 10, 1, 0).await;
        let hidden = receive(&c, &url, 10, 1, 0).await;
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let again = receive(&c, &url, 10, 30, 0).await;
        let stale = first[0].receipt_handle().expect("receipt").to_owned();
        // A stale receipt handle succeeds and deletes nothing.
        let stale_delete = code(
            c.delete_message()
                .queue_url(&url)
                .receipt_handle(&stale)
                .send()
                .await,
        );
        let fresh = again[0].receipt_handle().expect("receipt").to_owned();
        let deleted = code(
            c.delete_message()
                .queue_url(&url)
                .receipt_handle(&fresh)
                .send()
                .await,
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let attributes = c
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("attributes");
        let mut counts: Vec<String> = attributes
            .attributes()
            .map(|a| a.values().cloned().collect())
            .unwrap_or_default();
        counts.sort();
        (
            bodies(&first),
            hidden.len(),
            bodies(&again),
            receive_count(&first[0]),
            receive_count(&again[0]),
            stale_delete,
            deleted,
            counts,
        )
    })
    .await;
}

#[tokio::test]
async fn long_polling_waits_and_wakes_on_send() {
    agree(|t: Arc<Target>| async move {
        let c = t.sqs();
        let (_, url) = queue(&c, &[]).await;
        let started = Instant::now();
        let empty = receive(&c, &url, 1, 30, 1).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(900),
            "an empty long poll waits WaitTimeSeconds: {waited:?}"
        );
        let sender = {
            let c = c.clone();
            let url = url.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                c.send_message()
                    .queue_url(&url)
                    .message_body("late")
                    .send()
                    .await
                    .expect("send");
            })
        };
        let started = Instant::now();
        let got = receive(&c, &url, 1, 30, 5).await;
        let took = started.elapsed();
        sender.await.expect("sender");
        assert!(
            took < Duration::from_secs(4),
            "a long poll returns when a message arrives: {took:?}"
        );
        (empty.len(), bodies(&got))
    })
    .await;
}

#[tokio::test]
async fn redrive_moves_a_message_to_the_dead_letter_queue_after_max_receives() {
    agree(|t: Arc<Target>| async move {
        let c = t.sqs();
        let (_, dlq_url) = queue(&c, &[]).await;
        let dlq_arn = arn(&c, &dlq_url).await;
        let policy = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"2"}}"#);
        let (_, url) = queue(&c, &[(QueueAttributeName::RedrivePolicy, policy)]).await;
        c.send_message()
            .queue_url(&url)
            .message_body("poison")
            .send()
            .await
            .expect("send");
        let mut seen = Vec::new();
        for _ in 0..4 {
            let got = receive(&c, &url, 1, 0, 0).await;
            seen.push(got.iter().map(receive_count).collect::<Vec<_>>());
        }
        let dead = receive(&c, &dlq_url, 10, 30, 0).await;
        (seen, bodies(&dead))
    })
    .await;
}

#[tokio::test]
async fn batches_and_visibility_changes() {
    agree(|t: Arc<Target>| async move {
        let c = t.sqs();
        let (_, url) = queue(&c, &[]).await;
        let entries: Vec<SendMessageBatchRequestEntry> = (0..3)
            .map(|i| {
                SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(format!("body {i}"))
                    .build()
                    .expect("entry")
            })
            .collect();
        let sent = c
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("batch");
        let mut ids: Vec<String> = sent
            .successful()
            .iter()
            .map(|s| s.id().to_owned())
            .collect();
        ids.sort();
        let got = receive(&c, &url, 10, 30, 0).await;
        let first = got[0].receipt_handle().expect("receipt").to_owned();
        let shown = code(
            c.change_message_visibility()
                .queue_url(&url)
                .receipt_handle(&first)
                .visibility_timeout(0)
                .send()
                .await,
        );
        let visible_again = receive(&c, &url, 10, 30, 0).await;
        let deletes: Vec<DeleteMessageBatchRequestEntry> = got
            .iter()
            .skip(1)
            .chain(visible_again.iter())
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .expect("entry")
            })
            .collect();
        let deleted = c
            .delete_message_batch()
            .queue_url(&url)
            .set_entries(Some(deletes))
            .send()
            .await
            .expect("delete batch");
        let duplicate_ids: Vec<SendMessageBatchRequestEntry> = (0..2)
            .map(|_| {
                SendMessageBatchRequestEntry::builder()
                    .id("same")
                    .message_body("x")
                    .build()
                    .expect("entry")
            })
            .collect();
        let duplicate = code(
            c.send_message_batch()
                .queue_url(&url)
                .set_entries(Some(duplicate_ids))
                .send()
                .await,
        );
        let empty = code(
            c.send_message_batch()
                .queue_url(&url)
                .set_entries(Some(Vec::new()))
                .send()
                .await,
        );
        let missing = code(c.get_queue_url().queue_name("no-such-queue").send().await);
        let send_missing = code(
            c.send_message()
                .queue_url(format!("{}/123456789012/no-such-queue", t.endpoint))
                .message_body("x")
                .send()
                .await,
        );
        (
            ids,
            got.len(),
            shown,
            visible_again.len(),
            deleted.successful().len(),
            duplicate,
            empty,
            missing,
            send_missing,
        )
    })
    .await;
}
