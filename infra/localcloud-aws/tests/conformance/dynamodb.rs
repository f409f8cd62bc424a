//! DynamoDB behaviours, each run against the local endpoint and moto.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, KeySchemaElement,
    KeyType, KeysAndAttributes, Put, PutRequest, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;

use crate::harness::{agree, code, Target};

type Item = HashMap<String, AttributeValue>;

async fn table(client: &Client) -> String {
    let name = crate::harness::unique("metrics");
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

fn def(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .expect("def")
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key")
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_owned())
}

fn n(v: &str) -> AttributeValue {
    AttributeValue::N(v.to_owned())
}

fn k(pk: &str, sk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
}

/// An item as sorted text, for comparison across targets.
fn show(item: Option<&Item>) -> String {
    let Some(item) = item else {
        return "-".to_owned();
    };
    let mut parts: Vec<String> = item
        .iter()
        .map(|(k, v)| match v {
            AttributeValue::S(x) => format!("{k}=S:{x}"),
            AttributeValue::N(x) => format!("{k}=N:{x}"),
            AttributeValue::B(x) => format!("{k}=B:{}", x.as_ref().len()),
            other => format!("{k}={other:?}"),
        })
        .collect();
    parts.sort();
    parts.join(",")
}

#[tokio::test]
async fn put_get_delete_with_conditions_and_return_values() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        let mut item = k("campaigns", "c1");
        item.insert("first_seen_ms".into(), n("100"));
        let first = c
            .put_item()
            .table_name(&name)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        let again = c
            .put_item()
            .table_name(&name)
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let old_in_error = match &again {
            Err(aws_sdk_dynamodb::error::SdkError::ServiceError(e)) => match e.err() {
                aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => show(c.item()),
                other => format!("{:?}", other.code()),
            },
            other => format!("{other:?}"),
        };
        item.insert("first_seen_ms".into(), n("200"));
        let replaced = c
            .put_item()
            .table_name(&name)
            .set_item(Some(item))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .expect("put");
        let got = c.get_item().table_name(&name).set_key(Some(k("campaigns", "c1"))).send().await.expect("get");
        let projected = c
            .get_item()
            .table_name(&name)
            .set_key(Some(k("campaigns", "c1")))
            .projection_expression("#f")
            .expression_attribute_names("#f", "first_seen_ms")
            .send()
            .await
            .expect("get projected");
        let missing = c.get_item().table_name(&name).set_key(Some(k("campaigns", "nope"))).send().await.expect("get");
        let delete_guarded = code(
            c.delete_item()
                .table_name(&name)
                .set_key(Some(k("campaigns", "c1")))
                .condition_expression("first_seen_ms < :v")
                .expression_attribute_values(":v", n("150"))
                .send()
                .await,
        );
        let deleted =
            c.delete_item().table_name(&name).set_key(Some(k("campaigns", "c1"))).return_values(ReturnValue::AllOld).send().await.expect("delete");
        let gone = c.get_item().table_name(&name).set_key(Some(k("campaigns", "c1"))).send().await.expect("get");
        vec![
            code(first),
            code(again),
            old_in_error,
            show(replaced.attributes()),
            show(got.item()),
            show(projected.item()),
            show(missing.item()),
            delete_guarded,
            show(deleted.attributes()),
            show(gone.item()),
        ]
    })
    .await;
}

#[tokio::test]
async fn update_item_counters_fencing_and_return_values() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        let row = k("c#1", "rt#m#0029000000#*");
        let update = |expr: &'static str,
                      cond: Option<&'static str>,
                      values: Vec<(&'static str, AttributeValue)>,
                      rv: ReturnValue| {
            let mut call = c
                .update_item()
                .table_name(&name)
                .set_key(Some(row.clone()))
                .update_expression(expr)
                .set_condition_expression(cond.map(str::to_owned))
                .return_values(rv);
            for (k, v) in values {
                call = call.expression_attribute_values(k, v);
            }
            call.send()
        };
        let mut out = Vec::new();
        let r = update(
            "ADD impressions :one, clicks :zero",
            None,
            vec![(":one", n("1")), (":zero", n("0"))],
            ReturnValue::AllNew,
        )
        .await;
        out.push(
            r.map(|o| show(o.attributes()))
                .unwrap_or_else(|e| format!("{:?}", e.code())),
        );
        let r = update(
            "SET spend_micros = if_not_exists(spend_micros, :z) + :spend, fence = :batch",
            Some("attribute_not_exists(fence) OR fence < :batch"),
            vec![(":z", n("0")), (":spend", n("2500")), (":batch", n("7"))],
            ReturnValue::UpdatedNew,
        )
        .await;
        out.push(
            r.map(|o| show(o.attributes()))
                .unwrap_or_else(|e| format!("{:?}", e.code())),
        );
        // The same batch again: the fence refuses it (exactly-once apply).
        let r = update(
            "SET spend_micros = if_not_exists(spend_micros, :z) + :spend, fence = :batch",
            Some("attribute_not_exists(fence) OR fence < :batch"),
            vec![(":z", n("0")), (":spend", n("2500")), (":batch", n("7"))],
            ReturnValue::UpdatedNew,
        )
        .await;
        out.push(code(r));
        let r = update(
            "ADD impressions :two REMOVE clicks",
            Some("impressions = :one"),
            vec![(":two", n("2")), (":one", n("1"))],
            ReturnValue::UpdatedOld,
        )
        .await;
        out.push(
            r.map(|o| show(o.attributes()))
                .unwrap_or_else(|e| format!("{:?}", e.code())),
        );
        let r = update(
            "SET expires_at = :t",
            Some("NOT attribute_exists(expires_at) AND impressions BETWEEN :lo AND :hi"),
            vec![(":t", n("1700000000")), (":lo", n("1")), (":hi", n("5"))],
            ReturnValue::None,
        )
        .await;
        out.push(
            r.map(|o| show(o.attributes()))
                .unwrap_or_else(|e| format!("{:?}", e.code())),
        );
        let got = c
            .get_item()
            .table_name(&name)
            .set_key(Some(row.clone()))
            .consistent_read(true)
            .send()
            .await
            .expect("get");
        out.push(show(got.item()));
        // Hostile input: updating a key attribute, a syntax error, an undefined value, an unused value.
        out.push(code(
            update("SET pk = :v", None, vec![(":v", s("x"))], ReturnValue::None).await,
        ));
        out.push(code(
            update("SET = :v", None, vec![(":v", s("x"))], ReturnValue::None).await,
        ));
        out.push(code(
            update("SET a = :undefined", None, vec![], ReturnValue::None).await,
        ));
        out.push(code(
            update(
                "SET a = :v",
                None,
                vec![(":v", s("x")), (":unused", s("y"))],
                ReturnValue::None,
            )
            .await,
        ));
        out.push(code(
            update(
                "ADD impressions :s",
                None,
                vec![(":s", s("text"))],
                ReturnValue::None,
            )
            .await,
        ));
        out
    })
    .await;
}

#[tokio::test]
async fn query_key_conditions_order_limits_and_pages() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        for minute in 0..12 {
            for lane in ["rt", "st"] {
                let mut item = k("c#9", &format!("{lane}#m#{:010}#*", 29_000_000 + minute));
                item.insert("impressions".into(), n(&minute.to_string()));
                c.put_item()
                    .table_name(&name)
                    .set_item(Some(item))
                    .send()
                    .await
                    .expect("put");
            }
        }
        c.put_item()
            .table_name(&name)
            .set_item(Some(k("c#10", "rt#m#0029000000#*")))
            .send()
            .await
            .expect("put");
        let sks = |items: &[Item]| -> Vec<String> {
            items
                .iter()
                .map(|i| match i.get("sk") {
                    Some(AttributeValue::S(s)) => s.clone(),
                    _ => "?".to_owned(),
                })
                .collect()
        };
        let mut out = Vec::new();
        let conditions = [
            ("pk = :pk", vec![]),
            ("pk = :pk AND sk = :a", vec![(":a", "rt#m#0029000003#*")]),
            ("pk = :pk AND sk < :a", vec![(":a", "rt#m#0029000002#*")]),
            ("pk = :pk AND sk <= :a", vec![(":a", "rt#m#0029000002#*")]),
            ("pk = :pk AND sk > :a", vec![(":a", "st#m#0029000009#*")]),
            ("pk = :pk AND sk >= :a", vec![(":a", "st#m#0029000009#*")]),
            (
                "pk = :pk AND sk BETWEEN :a AND :b",
                vec![(":a", "rt#m#0029000004"), (":b", "rt#m#0029000007~")],
            ),
            ("pk = :pk AND begins_with(sk, :a)", vec![(":a", "st#")]),
            (
                "begins_with(sk, :a) AND pk = :pk",
                vec![(":a", "rt#m#002900001")],
            ),
        ];
        for (cond, values) in conditions {
            let mut q = c
                .query()
                .table_name(&name)
                .key_condition_expression(cond)
                .expression_attribute_values(":pk", s("c#9"));
            for (k, v) in values {
                q = q.expression_attribute_values(k, s(v));
            }
            let r = q.send().await.expect(cond);
            out.push(format!("{cond}: {:?}", sks(r.items())));
        }
        let backwards = c
            .query()
            .table_name(&name)
            .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
            .expression_attribute_values(":pk", s("c#9"))
            .expression_attribute_values(":p", s("rt#"))
            .scan_index_forward(false)
            .send()
            .await
            .expect("backwards");
        out.push(format!("backwards: {:?}", sks(backwards.items())));
        let filtered = c
            .query()
            .table_name(&name)
            .key_condition_expression("pk = :pk")
            .filter_expression("impressions >= :min")
            .expression_attribute_values(":pk", s("c#9"))
            .expression_attribute_values(":min", n("10"))
            .send()
            .await
            .expect("filtered");
        out.push(format!(
            "filtered: {:?} count {} scanned {}",
            sks(filtered.items()),
            filtered.count(),
            filtered.scanned_count()
        ));
        // Pages of 5 with ExclusiveStartKey; the concatenation is the whole partition, in order.
        let mut start = None;
        let mut pages = Vec::new();
        loop {
            let r = c
                .query()
                .table_name(&name)
                .key_condition_expression("pk = :pk AND begins_with(sk, :p)")
                .expression_attribute_values(":pk", s("c#9"))
                .expression_attribute_values(":p", s("rt#"))
                .limit(5)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("page");
            pages.push(sks(r.items()));
            match r.last_evaluated_key() {
                Some(key) if !r.items().is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        let all: Vec<String> = pages.concat();
        assert_eq!(
            all.len(),
            12,
            "pages cover the lane exactly once: {pages:?}"
        );
        out.push(format!("paged: {all:?}"));
        let errors = [
            code(
                c.query()
                    .table_name(&name)
                    .key_condition_expression("sk = :a")
                    .expression_attribute_values(":a", s("x"))
                    .send()
                    .await,
            ),
            code(
                c.query()
                    .table_name("no-such-table")
                    .key_condition_expression("pk = :a")
                    .expression_attribute_values(":a", s("x"))
                    .send()
                    .await,
            ),
        ];
        out.push(format!("{errors:?}"));
        out
    })
    .await;
}

#[tokio::test]
async fn expression_syntax_errors_are_validation_errors() {
    // AWS answers a malformed expression with ValidationException ("Invalid ConditionExpression: Syntax error");
    // moto answers some of them with HTTP 500 (observed, moto 5.2.1). Local only.
    let t = crate::harness::local().await;
    let c = t.dynamodb();
    let name = table(&c).await;
    for cond in [
        "attribute_exists(",
        "pk = ",
        "pk = :a OR",
        "(pk = :a",
        "pk = :a)",
        "pk == :a",
        "nosuch(pk)",
        "#undefined = :a",
    ] {
        let r = c
            .put_item()
            .table_name(&name)
            .set_item(Some(k("a", "b")))
            .condition_expression(cond)
            .expression_attribute_values(":a", s("x"))
            .send()
            .await;
        assert_eq!(code(r), "ValidationException", "{cond}");
    }
    for key_cond in [
        "pk = :a OR sk = :a",
        "NOT pk = :a",
        "pk < :a",
        "pk = :a AND sk = :a AND sk = :a",
        "other = :a",
    ] {
        let r = c
            .query()
            .table_name(&name)
            .key_condition_expression(key_cond)
            .expression_attribute_values(":a", s("x"))
            .send()
            .await;
        assert_eq!(code(r), "ValidationException", "{key_cond}");
    }
}

#[tokio::test]
async fn batch_write_and_batch_get() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        let puts: Vec<WriteRequest> = (0..25)
            .map(|i| {
                let mut item = k("c#b", &format!("{i:03}"));
                item.insert("v".into(), n(&i.to_string()));
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(item))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        let written = c
            .batch_write_item()
            .request_items(&name, puts)
            .send()
            .await
            .expect("batch write");
        let unprocessed = written.unprocessed_items().map_or(0, |u| u.len());
        let keys = KeysAndAttributes::builder()
            .set_keys(Some(vec![
                k("c#b", "003"),
                k("c#b", "017"),
                k("c#b", "999"),
            ]))
            .build()
            .expect("keys");
        let got = c
            .batch_get_item()
            .request_items(&name, keys)
            .send()
            .await
            .expect("batch get");
        let mut items: Vec<String> = got
            .responses()
            .and_then(|r| r.get(&name))
            .map(|items| items.iter().map(|i| show(Some(i))).collect())
            .unwrap_or_default();
        items.sort();
        let duplicate = KeysAndAttributes::builder()
            .set_keys(Some(vec![k("c#b", "003"), k("c#b", "003")]))
            .build()
            .expect("keys");
        let duplicate = code(
            c.batch_get_item()
                .request_items(&name, duplicate)
                .send()
                .await,
        );
        // AWS: "Provided list of item keys contains duplicates" (ValidationException); moto serves the
        // duplicates (observed, moto 5.2.1). Follow AWS on the local endpoint.
        let duplicate = if t.is_moto() {
            "ValidationException".to_owned()
        } else {
            duplicate
        };
        let too_many: Vec<WriteRequest> = (0..26)
            .map(|i| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(k("c#b", &format!("x{i}"))))
                            .build()
                            .expect("put"),
                    )
                    .build()
            })
            .collect();
        let too_many = code(
            c.batch_write_item()
                .request_items(&name, too_many)
                .send()
                .await,
        );
        // AWS allows 25 write requests per BatchWriteItem (ValidationException beyond); moto takes 26 (observed).
        let too_many = if t.is_moto() {
            "ValidationException".to_owned()
        } else {
            too_many
        };
        (unprocessed, items, duplicate, too_many)
    })
    .await;
}

#[tokio::test]
async fn transactions_apply_all_or_nothing() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        let put = |sk: &str| {
            TransactWriteItem::builder()
                .put(Put::builder().table_name(&name).set_item(Some(k("c#t", sk))).condition_expression("attribute_not_exists(pk)").build().expect("put"))
                .build()
        };
        let add = |sk: &str| {
            TransactWriteItem::builder()
                .update(
                    Update::builder()
                        .table_name(&name)
                        .set_key(Some(k("c#t", sk)))
                        .update_expression("ADD n :one")
                        .expression_attribute_values(":one", n("1"))
                        .build()
                        .expect("update"),
                )
                .build()
        };
        let first = code(c.transact_write_items().transact_items(put("a")).transact_items(add("counter")).send().await);
        // The second put of "a" fails its condition: nothing of this transaction applies.
        let second = c.transact_write_items().transact_items(add("counter")).transact_items(put("a")).send().await;
        let reasons = match &second {
            Err(aws_sdk_dynamodb::error::SdkError::ServiceError(e)) => match e.err() {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(x) => {
                    x.cancellation_reasons().iter().map(|r| r.code().unwrap_or("-").to_owned()).collect::<Vec<_>>()
                }
                other => vec![format!("{:?}", other.code())],
            },
            other => vec![format!("{other:?}")],
        };
        let counter = c.get_item().table_name(&name).set_key(Some(k("c#t", "counter"))).send().await.expect("get");
        let check = TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(&name)
                    .set_key(Some(k("c#t", "a")))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .expect("check"),
            )
            .build();
        let delete = TransactWriteItem::builder()
            .delete(Delete::builder().table_name(&name).set_key(Some(k("c#t", "counter"))).build().expect("delete"))
            .build();
        let third = code(c.transact_write_items().transact_items(check).transact_items(delete).send().await);
        let same_item = code(c.transact_write_items().transact_items(add("z")).transact_items(add("z")).send().await);
        let gone = c.get_item().table_name(&name).set_key(Some(k("c#t", "counter"))).send().await.expect("get");
        (first, code(second), reasons, show(counter.item()), third, same_item, show(gone.item()))
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_are_validation_errors() {
    agree(|t: Arc<Target>| async move {
        let c = t.dynamodb();
        let name = table(&c).await;
        let wrong_type = HashMap::from([("pk".to_owned(), n("1")), ("sk".to_owned(), s("x"))]);
        let missing_sk = HashMap::from([("pk".to_owned(), s("x"))]);
        let extra = {
            let mut key = k("a", "b");
            key.insert("other".into(), s("c"));
            key
        };
        vec![
            code(
                c.put_item()
                    .table_name(&name)
                    .set_item(Some(wrong_type.clone()))
                    .send()
                    .await,
            ),
            code(
                c.put_item()
                    .table_name(&name)
                    .set_item(Some(missing_sk.clone()))
                    .send()
                    .await,
            ),
            code(
                c.get_item()
                    .table_name(&name)
                    .set_key(Some(missing_sk))
                    .send()
                    .await,
            ),
            code(
                c.get_item()
                    .table_name(&name)
                    .set_key(Some(extra))
                    .send()
                    .await,
            ),
            code(
                c.get_item()
                    .table_name("no-such-table")
                    .set_key(Some(k("a", "b")))
                    .send()
                    .await,
            ),
            code(
                c.create_table()
                    .table_name(&name)
                    .attribute_definitions(def("pk"))
                    .key_schema(key("pk", KeyType::Hash))
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await,
            ),
        ]
    })
    .await;
}
