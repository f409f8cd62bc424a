//! The local AWS endpoint through the real SDK clients, in memory and with state on disk under both fsync
//! policies (`every_second`: synced in the background; `every_write`: fdatasync before every answer): Kinesis PutRecords (100 records of 100 bytes) and GetRecords (100 records), DynamoDB
//! UpdateItem with the counters' ADD / SET / condition shape. Figures go to docs/local-cloud.md.
//!
//! `cargo bench -p tally-localcloud-aws --bench aws_endpoint`

use std::sync::Arc;
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tally_localcloud_aws::aws::{serve, LocalAws};
use tally_localcloud_aws::store::Durability;

/// Enough shards that the 1,000 records/s per-shard limit never throttles the benchmark.
const SHARDS: i32 = 500;

struct Bench {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    shard_iterator: String,
}

async fn setup(aws: Arc<LocalAws>) -> Bench {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = serve(listener, aws).await;
    });
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&endpoint)
        .region(Region::new("us-east-1"))
        .test_credentials()
        .load()
        .await;
    let kinesis = aws_sdk_kinesis::Client::new(&config);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    kinesis
        .create_stream()
        .stream_name("events")
        .shard_count(SHARDS)
        .send()
        .await
        .expect("stream");
    dynamodb
        .create_table()
        .table_name("metrics")
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("def"),
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("sk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("def"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("sk")
                .key_type(KeyType::Range)
                .build()
                .expect("key"),
        )
        .send()
        .await
        .expect("table");
    // One shard filled with 100 records for GetRecords.
    let entries: Vec<PutRecordsRequestEntry> = (0..100)
        .map(|_| {
            PutRecordsRequestEntry::builder()
                .partition_key("k")
                .explicit_hash_key("0")
                .data(Blob::new(vec![7u8; 100]))
                .build()
                .expect("entry")
        })
        .collect();
    kinesis
        .put_records()
        .stream_name("events")
        .set_records(Some(entries))
        .send()
        .await
        .expect("fill");
    let shard_iterator = kinesis
        .get_shard_iterator()
        .stream_name("events")
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("iterator")
        .shard_iterator()
        .expect("iterator")
        .to_owned();
    Bench {
        kinesis,
        dynamodb,
        shard_iterator,
    }
}

fn bench_target(c: &mut Criterion, label: &str, aws: Arc<LocalAws>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let bench = rt.block_on(setup(aws));
    let mut group = c.benchmark_group(label);
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    let mut n = 0u64;
    group.throughput(Throughput::Elements(100));
    group.bench_function("kinesis_put_records_100", |b| {
        b.iter(|| {
            n += 1;
            let entries: Vec<PutRecordsRequestEntry> = (0..100)
                .map(|i| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(format!("campaign-{n}-{i}"))
                        .data(Blob::new(vec![1u8; 100]))
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = rt
                .block_on(
                    bench
                        .kinesis
                        .put_records()
                        .stream_name("events")
                        .set_records(Some(entries))
                        .send(),
                )
                .expect("put");
            assert_eq!(out.failed_record_count(), Some(0));
        })
    });
    group.bench_function("kinesis_get_records_100", |b| {
        b.iter(|| {
            let out = rt
                .block_on(
                    bench
                        .kinesis
                        .get_records()
                        .shard_iterator(&bench.shard_iterator)
                        .limit(100)
                        .send(),
                )
                .expect("get");
            assert_eq!(out.records().len(), 100);
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut batch = 0u64;
    group.bench_function("dynamodb_update_item_counters", |b| {
        b.iter(|| {
            batch += 1;
            let mark = format!("{batch:020}");
            let call = bench
                .dynamodb
                .update_item()
                .table_name("metrics")
                .key("pk", AttributeValue::S(format!("c#{}", batch % 50)))
                .key("sk", AttributeValue::S("rt#m#0029000000#*".into()))
                .update_expression("ADD #ver :one, impressions :imp, clicks :clk SET #hw = :mark, expires_at = :exp")
                .condition_expression("attribute_not_exists(#hw) OR #hw < :mark")
                .expression_attribute_names("#ver", "ver")
                .expression_attribute_names("#hw", "hw_0")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":imp", AttributeValue::N("40".into()))
                .expression_attribute_values(":clk", AttributeValue::N("2".into()))
                .expression_attribute_values(":mark", AttributeValue::S(mark))
                .expression_attribute_values(":exp", AttributeValue::N("1796000000".into()))
                .send();
            rt.block_on(call).expect("update");
        })
    });
    // 16 writers at once: their fdatasyncs are shared (group commit), so the durable cost per write falls.
    group.throughput(Throughput::Elements(16));
    group.bench_function("dynamodb_update_item_16_concurrent", |b| {
        b.iter(|| {
            batch += 1;
            let calls: Vec<_> = (0..16)
                .map(|i| {
                    let call = bench
                        .dynamodb
                        .update_item()
                        .table_name("metrics")
                        .key("pk", AttributeValue::S(format!("c#{i}")))
                        .key("sk", AttributeValue::S("rt#h#0029000000#*".into()))
                        .update_expression("ADD impressions :imp")
                        .expression_attribute_values(":imp", AttributeValue::N("1".into()))
                        .send();
                    rt.spawn(call)
                })
                .collect();
            rt.block_on(async {
                for call in calls {
                    call.await.expect("task").expect("update");
                }
            });
        })
    });
    group.finish();
}

fn endpoint(c: &mut Criterion) {
    bench_target(c, "memory", LocalAws::ephemeral());
    // Under target/ (the same disk as `cargo xtask dev` state), not a tmpfs.
    let dir = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("tally-bench-state-{}", std::process::id()));
    for (label, durability) in [
        ("every_second", Durability::EverySecond),
        ("every_write", Durability::EveryWrite),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        bench_target(
            c,
            label,
            LocalAws::open_with(&dir, durability).expect("state dir"),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, endpoint);
criterion_main!(benches);
