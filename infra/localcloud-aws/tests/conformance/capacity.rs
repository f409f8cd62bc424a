//! DynamoDB capacity units: `ReturnConsumedCapacity` and the meter, through the real `aws-sdk-dynamodb` client.
//!
//! moto answers `ConsumedCapacity` with fixed figures (1.0 per write, 0.5 per `GetItem`, 1.0 per `Query` page,
//! whatever the sizes); where those happen to be AWS's figures (small items) the two must agree. Everything that
//! depends on item sizes, consistency or transactions is checked against AWS's published rules on the local
//! endpoint only, and against its meter.

use std::collections::HashMap;
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConsumedCapacity, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, PutRequest, ReturnConsumedCapacity, ScalarAttributeType,
    TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use tally_localcloud_aws::aws::LocalAws;

use crate::harness::{agree, code, Target};

type Item = HashMap<String, AttributeValue>;

async fn table(client: &Client) -> String {
    let name = crate::harness::unique("capacity");
    let def = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("def")
    };
    let key = |n: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(kind)
            .build()
            .expect("key")
    };
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(def("pk"))
        .attribute_definitions(def("sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
    name
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn k(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// An item of exactly `bytes` bytes, AWS's way: key attributes of one character each ("pk" 2 + 1, "sk" 2 + 1)
/// and a string attribute "data" (4 + the rest). `bytes` must be at least 10.
fn sized(pk: &str, sk: &str, bytes: usize) -> Item {
    assert_eq!((pk.len(), sk.len()), (1, 1), "one-character keys");
    let mut item = k(pk, sk);
    item.insert("data".into(), s(&"x".repeat(bytes - 10)));
    item
}

/// `(table name, capacity units, the Table member's units, write units)` of a `ConsumedCapacity`.
type Figures = (Option<String>, Option<f64>, Option<f64>, Option<f64>);

fn figures(c: Option<&ConsumedCapacity>) -> Option<Figures> {
    c.map(|c| {
        (
            c.table_name().map(str::to_owned),
            c.capacity_units(),
            c.table().and_then(|t| t.capacity_units()),
            c.write_capacity_units(),
        )
    })
}

/// A client of the local endpoint signing with `access_key`, as a function of the local cloud does.
async fn client_as(endpoint: &str, access_key: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access_key, "secret", None, None, "test"))
        .load()
        .await;
    Client::new(&config)
}

#[tokio::test]
async fn consumed_capacity_of_small_items_agrees_with_moto() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        let total = ReturnConsumedCapacity::Total;
        let put = c
            .put_item()
            .table_name(&name)
            .set_item(Some(sized("a", "1", 100)))
            .return_consumed_capacity(total.clone())
            .send()
            .await
            .expect("put");
        let indexes = c
            .put_item()
            .table_name(&name)
            .set_item(Some(sized("a", "2", 100)))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .expect("put");
        let none = c
            .put_item()
            .table_name(&name)
            .set_item(Some(sized("a", "3", 100)))
            .send()
            .await
            .expect("put");
        // Eventually consistent (the default): half a unit.
        let get = c
            .get_item()
            .table_name(&name)
            .set_key(Some(k("a", "1")))
            .return_consumed_capacity(total.clone())
            .send()
            .await
            .expect("get");
        let query = c
            .query()
            .table_name(&name)
            .key_condition_expression("pk = :p")
            .expression_attribute_values(":p", s("a"))
            .consistent_read(true)
            .return_consumed_capacity(total.clone())
            .send()
            .await
            .expect("query");
        let delete = c
            .delete_item()
            .table_name(&name)
            .set_key(Some(k("a", "3")))
            .return_consumed_capacity(total)
            .send()
            .await
            .expect("delete");
        let bad = c
            .get_item()
            .table_name(&name)
            .set_key(Some(k("a", "1")))
            .return_consumed_capacity(ReturnConsumedCapacity::from("SOMETIMES"))
            .send()
            .await;
        (
            figures(put.consumed_capacity()).map(|f| (f.0 == Some(name.clone()), f.1, f.2)),
            figures(indexes.consumed_capacity()).map(|f| (f.1, f.2)),
            none.consumed_capacity().is_some(),
            figures(get.consumed_capacity()).map(|f| f.1),
            figures(query.consumed_capacity()).map(|f| f.1),
            figures(delete.consumed_capacity()).map(|f| f.1),
            code(bad),
        )
    })
    .await;
}

/// AWS's rules, request by request, on the local endpoint: the answer's `ConsumedCapacity`, then the meter's
/// reading of the same requests, split by the caller's access key.
#[tokio::test]
async fn local_endpoint_charges_and_meters_as_aws_bills() {
    let aws = LocalAws::ephemeral();
    let target = crate::harness::local_with(aws.clone()).await;
    let c = client_as(&target.endpoint, "writer-fn").await;
    let name = table(&c).await;
    let total = || ReturnConsumedCapacity::Total;
    // The sum of every answer's CapacityUnits (and of the charges no answer carries).
    let mut charged = 0.0;
    let units = |charged: &mut f64, cc: Option<&ConsumedCapacity>| {
        let u = cc
            .and_then(|c| c.capacity_units())
            .expect("ConsumedCapacity");
        *charged += u;
        u
    };

    // 1,025 bytes: two write units.
    let put = c
        .put_item()
        .table_name(&name)
        .set_item(Some(sized("a", "1", 1_025)))
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("put");
    assert_eq!(units(&mut charged, put.consumed_capacity()), 2.0);
    assert_eq!(
        figures(put.consumed_capacity()),
        Some((Some(name.clone()), Some(2.0), None, None))
    );
    // An update that grows the item to 2,110 bytes is charged on the new size: 3 units.
    let grow = c
        .update_item()
        .table_name(&name)
        .set_key(Some(k("a", "1")))
        .update_expression("SET #d = :d")
        .expression_attribute_names("#d", "data")
        .expression_attribute_values(":d", s(&"y".repeat(2_100)))
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("grow");
    assert_eq!(units(&mut charged, grow.consumed_capacity()), 3.0);
    // One that shrinks it to 20 bytes is charged on the old size: 3 units again.
    let shrink = c
        .update_item()
        .table_name(&name)
        .set_key(Some(k("a", "1")))
        .update_expression("SET #d = :d")
        .expression_attribute_names("#d", "data")
        .expression_attribute_values(":d", s("0123456789"))
        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
        .send()
        .await
        .expect("shrink");
    assert_eq!(
        figures(shrink.consumed_capacity()),
        Some((Some(name.clone()), Some(3.0), Some(3.0), None))
    );
    units(&mut charged, shrink.consumed_capacity());
    // A put whose condition fails is charged on the larger of the item there (20 bytes) and the one it would
    // have written (3,010 bytes): 3 units, and no ConsumedCapacity in the error.
    let failed = c
        .put_item()
        .table_name(&name)
        .set_item(Some(sized("a", "1", 3_010)))
        .condition_expression("attribute_not_exists(pk)")
        .return_consumed_capacity(total())
        .send()
        .await;
    match &failed {
        Err(SdkError::ServiceError(e)) => {
            assert_eq!(e.err().code(), Some("ConditionalCheckFailedException"));
            let body = String::from_utf8_lossy(e.raw().body().bytes().unwrap_or_default());
            assert!(!body.contains("ConsumedCapacity"), "{body}");
        }
        other => panic!("expected ConditionalCheckFailedException, got {other:?}"),
    }
    charged += 3.0;
    // A transaction of two 1 KB puts: 2 units each.
    let tput = |sk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&name)
                    .set_item(Some(sized("t", sk, 1_024)))
                    .build()
                    .expect("put"),
            )
            .build()
    };
    let transaction = c
        .transact_write_items()
        .transact_items(tput("1"))
        .transact_items(tput("2"))
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("transaction");
    assert_eq!(
        transaction
            .consumed_capacity()
            .iter()
            .map(|c| figures(Some(c)))
            .collect::<Vec<_>>(),
        vec![Some((Some(name.clone()), Some(4.0), None, Some(4.0)))]
    );
    charged += 4.0;
    // Five items of 1,010 bytes in partition "q" in one batch: 1 unit each.
    let writes: Vec<WriteRequest> = (0..5)
        .map(|i| {
            WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .set_item(Some(sized("q", &i.to_string(), 1_010)))
                        .build()
                        .expect("put request"),
                )
                .build()
        })
        .collect();
    let batch = c
        .batch_write_item()
        .request_items(&name, writes)
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("batch write");
    assert_eq!(batch.consumed_capacity().len(), 1);
    assert_eq!(units(&mut charged, batch.consumed_capacity().first()), 5.0);
    // A query reading the five (5,050 bytes, rounded up once to 8 KB): 2 units consistent, 1 eventually, and the
    // filter that drops every item does not lower it.
    let query = |consistent: bool| {
        c.query()
            .table_name(&name)
            .key_condition_expression("pk = :p")
            .filter_expression("attribute_not_exists(#d)")
            .expression_attribute_names("#d", "data")
            .expression_attribute_values(":p", s("q"))
            .consistent_read(consistent)
            .return_consumed_capacity(total())
            .send()
    };
    let strong = query(true).await.expect("query");
    assert_eq!((strong.count(), strong.scanned_count()), (0, 5));
    assert_eq!(units(&mut charged, strong.consumed_capacity()), 2.0);
    let eventual = query(false).await.expect("query");
    assert_eq!(units(&mut charged, eventual.consumed_capacity()), 1.0);
    // A scan reads all eight items: 20 + 2 × 1,024 + 5 × 1,010 = 7,118 bytes, 2 units consistent.
    let scan = c
        .scan()
        .table_name(&name)
        .consistent_read(true)
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("scan");
    assert_eq!(units(&mut charged, scan.consumed_capacity()), 2.0);
    // A missing item costs the minimum read; a batch get is charged item by item (3 × 0.5).
    let missing = c
        .get_item()
        .table_name(&name)
        .set_key(Some(k("z", "z")))
        .consistent_read(true)
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("get");
    assert_eq!(units(&mut charged, missing.consumed_capacity()), 1.0);
    let keys = KeysAndAttributes::builder()
        .keys(k("q", "0"))
        .keys(k("q", "1"))
        .keys(k("z", "z"))
        .build()
        .expect("keys");
    let batch_get = c
        .batch_get_item()
        .request_items(&name, keys)
        .return_consumed_capacity(total())
        .send()
        .await
        .expect("batch get");
    assert_eq!(
        units(&mut charged, batch_get.consumed_capacity().first()),
        1.5
    );
    // Deleting a missing item costs one unit; without ReturnConsumedCapacity nothing is answered.
    let delete = c
        .delete_item()
        .table_name(&name)
        .set_key(Some(k("z", "z")))
        .send()
        .await
        .expect("delete");
    assert!(delete.consumed_capacity().is_none());
    charged += 1.0;

    // Another caller's reads are counted apart.
    let poller = client_as(&target.endpoint, "poller").await;
    poller
        .get_item()
        .table_name(&name)
        .set_key(Some(k("a", "1")))
        .send()
        .await
        .expect("poll");

    let reading = aws.meter.snapshot();
    let t = reading
        .dynamodb
        .tables
        .get(&name)
        .expect("the table is metered");
    let writer = t.callers.get("writer-fn").expect("writer-fn is a caller");
    assert_eq!(writer.write_units + writer.read_units, charged);
    // Writes: 2 + 3 + 3 + 3 (failed) + 4 (transaction) + 5 (batch) + 1 (delete); reads: 2 + 1 + 2 + 1 + 1.5.
    assert_eq!(writer.write_units, 21.0);
    assert_eq!(writer.read_units, 7.5);
    assert_eq!(writer.write_requests, 1 + 2 + 1 + 2 + 5 + 1);
    assert_eq!(writer.read_requests, 2 + 1 + 1 + 3);
    assert_eq!(
        (
            writer.failed_conditional_writes,
            writer.failed_conditional_write_units
        ),
        (1, 3.0)
    );
    assert_eq!(writer.transactional_writes, 2);
    let poll = t.callers.get("poller").expect("poller is a caller");
    assert_eq!(
        (poll.read_units, poll.read_requests, poll.write_units),
        (0.5, 1, 0.0)
    );
    assert_eq!(t.totals.read_units, writer.read_units + poll.read_units);
    assert_eq!(t.totals.write_units, writer.write_units);
    assert_eq!(t.totals.failed_conditional_writes, 1);
    assert_eq!(t.callers.len(), 2, "{:?}", t.callers.keys());
    // The reading is JSON with the callers inside each table.
    let json = serde_json::to_value(&reading).expect("json");
    assert_eq!(
        json["dynamodb"]["tables"][&name]["callers"]["poller"],
        serde_json::json!({
            "write_units": 0.0, "read_units": 0.5, "write_requests": 0, "read_requests": 1,
            "failed_conditional_writes": 0, "failed_conditional_write_units": 0.0, "transactional_writes": 0
        })
    );
}

/// A cancelled transaction is charged (AWS consumes the units either way); a validation error is not.
#[tokio::test]
async fn cancelled_transactions_are_charged_and_malformed_requests_are_not() {
    let aws = LocalAws::ephemeral();
    let target = crate::harness::local_with(aws.clone()).await;
    let c = client_as(&target.endpoint, "tx").await;
    let name = table(&c).await;
    c.put_item()
        .table_name(&name)
        .set_item(Some(k("a", "1")))
        .send()
        .await
        .expect("put");
    let guarded = |sk: &str| {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&name)
                    .set_item(Some(sized("a", sk, 1_500)))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .expect("put"),
            )
            .build()
    };
    let cancelled = c
        .transact_write_items()
        .transact_items(guarded("1"))
        .transact_items(guarded("2"))
        .send()
        .await;
    assert_eq!(code(cancelled), "TransactionCanceledException");
    let bad = c
        .put_item()
        .table_name(&name)
        .set_item(Some(HashMap::from([("pk".to_owned(), s("only"))])))
        .send()
        .await;
    assert_eq!(code(bad), "ValidationException");
    let reading = aws.meter.snapshot();
    let t = &reading.dynamodb.tables[&name];
    // 1 (the first put) + 2 × 2 × 2 (two 1,500-byte transactional puts), one of them a failed condition.
    assert_eq!(t.totals.write_units, 1.0 + 8.0);
    assert_eq!(t.totals.transactional_writes, 2);
    assert_eq!(
        (
            t.totals.failed_conditional_writes,
            t.totals.failed_conditional_write_units
        ),
        (1, 4.0)
    );
    assert_eq!(t.totals.write_requests, 3);
}

#[tokio::test]
async fn hostile_return_consumed_capacity_and_items() {
    let aws = LocalAws::ephemeral();
    let target = crate::harness::local_with(aws.clone()).await;
    let c = target.dynamodb();
    let name = table(&c).await;
    // A bad value names the member and the values allowed, and the request is not executed.
    let bad = c
        .put_item()
        .table_name(&name)
        .set_item(Some(k("a", "1")))
        .return_consumed_capacity(ReturnConsumedCapacity::from("ALL"))
        .send()
        .await;
    match &bad {
        Err(SdkError::ServiceError(e)) => {
            assert_eq!(e.err().code(), Some("ValidationException"));
            let message = e.err().message().unwrap_or_default();
            assert!(
                message.contains("'ALL' at 'returnConsumedCapacity'")
                    && message.contains("[INDEXES, TOTAL, NONE]"),
                "{message}"
            );
        }
        other => panic!("expected ValidationException, got {other:?}"),
    }
    let got = c
        .get_item()
        .table_name(&name)
        .set_key(Some(k("a", "1")))
        .send()
        .await
        .expect("get");
    assert!(got.item().is_none(), "the refused put wrote nothing");
    // A nearly 400 KB item, deeply nested maps: sized and charged without trouble.
    let mut nested = s("leaf");
    for _ in 0..30 {
        nested = AttributeValue::M(HashMap::from([("m".to_owned(), nested)]));
    }
    let mut item = sized("b", "1", 390 * 1024);
    item.insert("nest".into(), nested);
    let put = c
        .put_item()
        .table_name(&name)
        .set_item(Some(item))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await
        .expect("put a big item");
    // 390 KB + "nest" 4 + 30 × (3 + 1 + "m" 1) + "leaf" 4: 391 units.
    assert_eq!(
        put.consumed_capacity().and_then(|c| c.capacity_units()),
        Some(391.0)
    );
    // The default test credentials name the caller by their access key.
    let reading = aws.meter.snapshot();
    let callers: Vec<&String> = reading.dynamodb.tables[&name].callers.keys().collect();
    assert_eq!(callers.len(), 1, "{callers:?}");
}
