//! Hostile requests to the local endpoint over a real socket: requests from other sites or other names (the
//! loopback guard), oversized bodies, deep JSON, deep and long expressions. Each is answered with a clear
//! error in AWS's shape and the endpoint keeps serving. Local only (moto has no such guard).

use std::io::{Read, Write};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};
use aws_sdk_s3::primitives::ByteStream;

use crate::harness::{code, local, sdk_config, unique};

/// One raw HTTP/1.1 request (`head` without the blank line) and `body`: (status, head, body) of the answer.
fn raw(endpoint: &str, head: &str, body: &[u8]) -> (u16, String, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut request = format!("{head}\r\nConnection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(body);
    // The server may answer (and close) before reading all of an oversized body.
    let _ = stream.write_all(&request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

fn json_post(
    endpoint: &str,
    host: &str,
    target: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String, String) {
    raw(
        endpoint,
        &format!(
            "POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: {target}\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}{extra}",
            body.len()
        ),
        body,
    )
}

fn authority(endpoint: &str) -> &str {
    endpoint.trim_start_matches("http://")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_and_cross_site_origins_are_refused() {
    let target = local().await;
    let s3 = target.s3();
    let bucket = unique("guard");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    s3.put_object()
        .bucket(&bucket)
        .key("keep")
        .body(ByteStream::from_static(b"x"))
        .send()
        .await
        .expect("put");
    let endpoint = target.endpoint.clone();
    let port = endpoint.rsplit(':').next().expect("port").to_owned();
    let delete = "<Delete><Object><Key>keep</Key></Object></Delete>";
    let (bucket2, endpoint2, port2) = (bucket.clone(), endpoint.clone(), port.clone());
    let answers = tokio::task::spawn_blocking(move || {
        let post_delete = |host: &str, origin: &str| {
            raw(
                &endpoint2,
                &format!(
                    "POST /{bucket2}?delete HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: application/xml\r\nContent-Length: {}",
                    delete.len()
                ),
                delete.as_bytes(),
            )
        };
        vec![
            // A page on another site posting to the endpoint (browsers send its Origin).
            post_delete(authority(&endpoint2), "Origin: https://evil.example\r\n"),
            // A DNS-rebinding page: its own name in Host.
            post_delete(&format!("rebind.evil.example:{port2}"), ""),
            json_post(
                &endpoint2,
                &format!("evil.example:{port2}"),
                "Kinesis_20131202.ListStreams",
                "",
                b"{}",
            ),
            json_post(
                &endpoint2,
                authority(&endpoint2),
                "DynamoDB_20120810.ListTables",
                "\r\nOrigin: null",
                b"{}",
            ),
        ]
    })
    .await
    .expect("raw requests");
    for (status, head, body) in &answers[..2] {
        assert_eq!(*status, 403, "{head}\n{body}");
        assert!(body.contains("<Code>AccessDenied</Code>"), "{body}");
    }
    assert!(
        answers[0]
            .2
            .contains("Origin &quot;https://evil.example&quot; is not a loopback origin"),
        "{}",
        answers[0].2
    );
    assert!(answers[1].2.contains("DNS-rebinding"), "{}", answers[1].2);
    for (status, head, body) in &answers[2..] {
        assert_eq!(*status, 403, "{head}\n{body}");
        assert!(body.contains("AccessDeniedException"), "{body}");
    }
    // Nothing was deleted.
    let object = s3.get_object().bucket(&bucket).key("keep").send().await;
    assert!(object.is_ok(), "{object:?}");
    // The SDKs keep working under every loopback name, and so do pages on loopback origins.
    let by_name =
        aws_sdk_kinesis::Client::new(&sdk_config(&format!("http://localhost:{port}")).await);
    by_name
        .list_streams()
        .send()
        .await
        .expect("SDK via localhost");
    let endpoint2 = endpoint.clone();
    let (status, head, body) = tokio::task::spawn_blocking(move || {
        json_post(
            &endpoint2,
            authority(&endpoint2),
            "Kinesis_20131202.ListStreams",
            "\r\nOrigin: http://localhost:3000",
            b"{}",
        )
    })
    .await
    .expect("raw");
    assert_eq!(status, 200, "{head}\n{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_deep_bodies_get_errors_and_the_endpoint_lives_on() {
    let target = local().await;
    let endpoint = target.endpoint.clone();
    let answers = tokio::task::spawn_blocking(move || {
        let host = authority(&endpoint).to_owned();
        // Declared larger than DynamoDB's 16 MiB: refused before a byte of the body is read.
        let declared = raw(
            &endpoint,
            &format!("POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: DynamoDB_20120810.BatchWriteItem\r\nContent-Length: {}", 17 * 1024 * 1024),
            b"",
        );
        // Sent chunked, so only counting the bytes finds it larger than SQS's 1 MiB.
        let chunk = vec![b' '; 1024 * 1024 + 1];
        let mut chunked = format!("{:x}\r\n", chunk.len()).into_bytes();
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        let streamed = raw(
            &endpoint,
            &format!("POST / HTTP/1.1\r\nHost: {host}\r\nX-Amz-Target: AmazonSQS.SendMessage\r\nTransfer-Encoding: chunked"),
            &chunked,
        );
        // JSON nested 100,000 deep.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let deep = json_post(&endpoint, &host, "DynamoDB_20120810.PutItem", "", deep.as_bytes());
        (declared, streamed, deep)
    })
    .await
    .expect("raw requests");
    let (declared, streamed, deep) = answers;
    assert_eq!(declared.0, 413, "{declared:?}");
    assert!(
        declared
            .2
            .contains("larger than the 16777216 bytes the local DynamoDB endpoint accepts"),
        "{declared:?}"
    );
    assert_eq!(streamed.0, 413, "{streamed:?}");
    assert!(streamed.2.contains("local SQS endpoint"), "{streamed:?}");
    assert_eq!(deep.0, 400, "{deep:?}");
    assert!(
        deep.2.contains("SerializationException") && deep.2.contains("recursion limit"),
        "{deep:?}"
    );

    // Through the SDK: an item nested deeper than AWS's 32 levels, and a condition nested 100,000 parentheses
    // deep (before the limits, that overflowed the parser's stack and killed the process).
    let dynamodb = target.dynamodb();
    let table = unique("hostile");
    dynamodb
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .expect("key"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create table");
    let mut nested = AttributeValue::S("leaf".to_owned());
    for _ in 0..40 {
        nested = AttributeValue::L(vec![nested]);
    }
    let put = dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("a".to_owned()))
        .item("deep", nested)
        .send()
        .await;
    let error = format!("{:?}", put.as_ref().err());
    assert_eq!(code(put), "ValidationException");
    assert!(
        error.contains("Nesting Levels have exceeded supported limits"),
        "{error}"
    );
    let condition = format!(
        "{}attribute_not_exists(pk){}",
        "(".repeat(2000),
        ")".repeat(2000)
    );
    let put = dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("a".to_owned()))
        .condition_expression(condition)
        .send()
        .await;
    assert_eq!(code(put), "ValidationException");
    let put = dynamodb
        .put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("a".to_owned()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await;
    assert_eq!(code(put), "ok", "the endpoint still serves");
}
