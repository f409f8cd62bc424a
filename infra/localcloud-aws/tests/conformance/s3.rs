//! S3 behaviours, each run against the local endpoint and moto.

use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::harness::{agree, code, Target};

#[tokio::test]
async fn objects_put_get_head_list_and_delete() {
    agree(|t: Arc<Target>| async move {
        let c = t.s3();
        let bucket = crate::harness::unique("archive").to_lowercase();
        c.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .expect("create bucket");
        let keys: Vec<String> = (0..7)
            .map(|h| format!("events/dt=2026-11-26/hour={h:02}/part-0.jsonl.gz"))
            .chain([
                "other/x".to_owned(),
                "events/dt=2026-11-27/hour=00/a b+c&d.gz".to_owned(),
            ])
            .collect();
        for (i, key) in keys.iter().enumerate() {
            c.put_object()
                .bucket(&bucket)
                .key(key)
                .content_type("application/gzip")
                .body(ByteStream::from(vec![i as u8; 100 + i]))
                .send()
                .await
                .expect("put object");
        }
        let got = c
            .get_object()
            .bucket(&bucket)
            .key(&keys[3])
            .send()
            .await
            .expect("get");
        let etag = got.e_tag().map(str::to_owned);
        let content_type = got.content_type().map(str::to_owned);
        let body = got.body.collect().await.expect("body").into_bytes();
        let head = c
            .head_object()
            .bucket(&bucket)
            .key(&keys[3])
            .send()
            .await
            .expect("head");
        assert_eq!(head.e_tag().map(str::to_owned), etag);
        let expected_etag = format!(
            "\"{}\"",
            hex::encode(<md5::Md5 as md5::Digest>::digest(vec![3u8; 103]))
        );
        assert_eq!(etag.as_deref(), Some(expected_etag.as_str()));
        let special = c
            .get_object()
            .bucket(&bucket)
            .key(&keys[8])
            .send()
            .await
            .expect("get special key");
        let special_len = special.content_length();
        // Listing by prefix in pages of 3 with continuation tokens.
        let mut token = None;
        let mut pages = Vec::new();
        loop {
            let page = c
                .list_objects_v2()
                .bucket(&bucket)
                .prefix("events/dt=2026-11-26/")
                .max_keys(3)
                .set_continuation_token(token.take())
                .send()
                .await
                .expect("list");
            pages.push((
                page.contents()
                    .iter()
                    .map(|o| (o.key().unwrap_or_default().to_owned(), o.size()))
                    .collect::<Vec<_>>(),
                page.key_count(),
                page.is_truncated(),
            ));
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        let missing = code(
            c.get_object()
                .bucket(&bucket)
                .key("events/none")
                .send()
                .await,
        );
        let head_missing = code(
            c.head_object()
                .bucket(&bucket)
                .key("events/none")
                .send()
                .await,
        );
        let no_bucket = code(
            c.get_object()
                .bucket("no-such-bucket-tally")
                .key("k")
                .send()
                .await,
        );
        c.delete_object()
            .bucket(&bucket)
            .key(&keys[0])
            .send()
            .await
            .expect("delete");
        let delete_absent = code(
            c.delete_object()
                .bucket(&bucket)
                .key("never/was")
                .send()
                .await,
        );
        let ids: Vec<ObjectIdentifier> = keys[1..4]
            .iter()
            .map(|k| ObjectIdentifier::builder().key(k).build().expect("id"))
            .collect();
        let deleted = c
            .delete_objects()
            .bucket(&bucket)
            .delete(
                Delete::builder()
                    .set_objects(Some(ids))
                    .build()
                    .expect("delete"),
            )
            .send()
            .await
            .expect("delete objects");
        let mut deleted: Vec<String> = deleted
            .deleted()
            .iter()
            .filter_map(|d| d.key().map(str::to_owned))
            .collect();
        deleted.sort();
        let left = c
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .expect("list");
        let left: Vec<String> = left
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        (
            body.len(),
            content_type,
            special_len,
            pages,
            missing,
            head_missing,
            no_bucket,
            delete_absent,
            deleted,
            left,
        )
    })
    .await;
}
