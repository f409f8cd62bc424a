use std::collections::BTreeSet;

use aws_sdk_kinesis::types::ShardIteratorType;
use tally_aws::kinesis::{put_records_with_retry, RetryPolicy};
use tally_aws::Error;
use tally_domain::wire::StreamRecord;
use tally_testkit::Moto;

use crate::sdk;

async fn stream(moto: &Moto, shards: i32) -> aws_sdk_kinesis::Client {
    let client = aws_sdk_kinesis::Client::new(&sdk(moto).await);
    client
        .create_stream()
        .stream_name("events")
        .shard_count(shards)
        .send()
        .await
        .expect("create stream");
    client
}

/// Every record's data on every shard of the stream, from the start.
async fn read_back(client: &aws_sdk_kinesis::Client) -> Vec<Vec<u8>> {
    let shards = client
        .list_shards()
        .stream_name("events")
        .send()
        .await
        .expect("list shards");
    let mut out = Vec::new();
    for shard in shards.shards() {
        let iterator = client
            .get_shard_iterator()
            .stream_name("events")
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("iterator");
        let mut next = iterator.shard_iterator;
        while let Some(it) = next {
            let page = client
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .expect("get records");
            if page.records().is_empty() {
                break;
            }
            out.extend(page.records().iter().map(|r| r.data().as_ref().to_vec()));
            next = page.next_shard_iterator;
        }
    }
    out
}

#[tokio::test]
async fn every_record_is_written_across_requests() {
    let moto = Moto::start();
    let client = stream(&moto, 3).await;
    // 1,200 records need three PutRecords requests.
    let records: Vec<StreamRecord> = (0..1200)
        .map(|i| StreamRecord {
            partition_key: format!("key-{}", i % 97),
            data: format!("record {i}").into_bytes(),
        })
        .collect();
    let outcome = put_records_with_retry(&client, "events", &records, RetryPolicy::default())
        .await
        .expect("put");
    assert_eq!(outcome.failed, Vec::<usize>::new());
    assert_eq!(outcome.attempts, 1);
    let got: BTreeSet<Vec<u8>> = read_back(&client).await.into_iter().collect();
    let want: BTreeSet<Vec<u8>> = records.into_iter().map(|r| r.data).collect();
    assert_eq!(got.len(), 1200);
    assert_eq!(got, want);
}

#[tokio::test]
async fn an_unknown_stream_is_an_error_not_a_retry() {
    let moto = Moto::start();
    let client = stream(&moto, 1).await;
    let records = vec![StreamRecord {
        partition_key: "k".into(),
        data: b"x".to_vec(),
    }];
    let err = put_records_with_retry(&client, "no-such-stream", &records, RetryPolicy::default())
        .await
        .expect_err("unknown stream");
    assert!(
        matches!(
            err,
            Error::Kinesis {
                retryable: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("kinesis PutRecords on stream no-such-stream failed: ResourceNotFound"),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_records_are_refused_before_anything_is_sent() {
    let moto = Moto::start();
    let client = stream(&moto, 1).await;
    let records = vec![
        StreamRecord {
            partition_key: "k".into(),
            data: b"fine".to_vec(),
        },
        StreamRecord {
            partition_key: String::new(),
            data: b"no key".to_vec(),
        },
    ];
    let err = put_records_with_retry(&client, "events", &records, RetryPolicy::default())
        .await
        .expect_err("invalid");
    assert_eq!(
        err.to_string(),
        "record 1 cannot be written to kinesis: partition key is empty"
    );
    assert!(
        read_back(&client).await.is_empty(),
        "nothing may be written when the input is refused"
    );
}
