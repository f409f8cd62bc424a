//! S3, REST with XML: buckets and objects for the archive.
//!
//! Operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, PutObject, GetObject (with `Range`),
//! HeadObject, DeleteObject, DeleteObjects, ListObjectsV2 (`prefix`, `delimiter`, `max-keys`,
//! `continuation-token`, `start-after`). Addressing is path-style (`/bucket/key`, what the SDK uses for an
//! IP endpoint) or virtual-hosted (`bucket.localhost:PORT`). Bodies sent with `aws-chunked` encoding (the
//! SDK's default for streaming uploads with checksums) are decoded; `Content-MD5` is verified
//! (`BadDigest`); trailing checksums are accepted without being verified. Anything else (versioning, ACLs,
//! multipart uploads, tagging, ...) answers `NotImplemented` (501) naming the operation.
//!
//! Metering ([`crate::meter`]): every request on an existing bucket answered with success or a client error counts
//! in its price tier (`tally_billing::s3`); uploads add to `bytes_in`, and the stored bytes and objects are kept
//! as levels (puts add, replaced and deleted objects are taken off).
//!
//! Durability: an object body is written to `<state>/s3/objects/<n>` and synced, then its metadata entry is
//! appended to `<state>/s3/log` and synced, then the answer is sent.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use hyper::{Method, Request, Response, StatusCode};

use super::{AwsError, LocalAws};
use crate::store::{lock, Log};

mod replay;
mod state;
mod wire;

use state::{Bucket, ListQuery};
use wire::{
    address, body_of, check_content_md5, empty, encode_key, no_bucket, parse_range, s3_error,
    xml_all, xml_escape, xml_response, xml_unescape, SUBRESOURCES,
};
pub(crate) use wire::{error_response, http_date, iso8601};

/// All buckets of the local endpoint.
#[derive(Debug)]
pub struct S3 {
    dir: Option<PathBuf>,
    log: Option<Log>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
    files: AtomicU64,
}

pub(crate) async fn handle(aws: &Arc<LocalAws>, request: Request<Bytes>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let resource = request.uri().path().to_owned();
    let target = address(&request)
        .ok()
        .and_then(|(bucket, key, _)| Some((bucket?, key.is_some())));
    let response = match route(aws, request).await {
        Ok(response) => response,
        Err(error) => error_response(&error, &method, &resource),
    };
    // Metered per bucket, as AWS bills the bucket owner: requests on a bucket that exists (or that it created or
    // deleted), answered with success or a client error; server errors (including NotImplemented) are not billed.
    if let Some((bucket, object)) = target {
        let status = response.status();
        let exists = lock(&aws.s3.buckets).contains_key(&bucket);
        if tally_billing::s3::billed_status(status.as_u16()) && (exists || status.is_success()) {
            let class = tally_billing::s3::request_class(method.as_str(), object);
            aws.meter.s3_request(&bucket, class);
        }
    }
    response
}

async fn route(
    aws: &Arc<LocalAws>,
    request: Request<Bytes>,
) -> Result<Response<Full<Bytes>>, AwsError> {
    let (bucket, key, query) = address(&request)?;
    let method = request.method().clone();
    if let Some(sub) = SUBRESOURCES.iter().find(|s| query.contains_key(**s)) {
        return Err(s3_error(
            501,
            "NotImplemented",
            format!("operation S3 {method} ?{sub} is not supported by the tally local cloud"),
        ));
    }
    let s3 = &aws.s3;
    let unsupported = || {
        s3_error(
            501,
            "NotImplemented",
            format!(
                "operation S3 {method} {} is not supported by the tally local cloud",
                request.uri().path()
            ),
        )
    };
    match (method.clone(), bucket, key) {
        (Method::GET, None, None) => {
            let buckets: Vec<(String, i64)> = lock(&s3.buckets)
                .iter()
                .map(|(n, b)| (n.clone(), b.created_ms))
                .collect();
            let list: String = buckets
                .iter()
                .map(|(n, at)| {
                    format!(
                        "<Bucket><Name>{}</Name><CreationDate>{}</CreationDate></Bucket>",
                        xml_escape(n),
                        iso8601(*at)
                    )
                })
                .collect();
            Ok(xml_response(
                StatusCode::OK,
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListAllMyBucketsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Owner><ID>local</ID></Owner><Buckets>{list}</Buckets></ListAllMyBucketsResult>"),
            ))
        }
        (Method::PUT, Some(bucket), None) => {
            let s3b = aws.clone();
            let name = bucket.clone();
            blocking(move || s3b.s3.create_bucket(&name)).await?;
            let mut response = empty(StatusCode::OK);
            if let Ok(location) = HeaderValue::from_str(&format!("/{bucket}")) {
                response.headers_mut().insert("location", location);
            }
            Ok(response)
        }
        (Method::HEAD, Some(bucket), None) => {
            if lock(&s3.buckets).contains_key(&bucket) {
                Ok(empty(StatusCode::OK))
            } else {
                Err(no_bucket(&bucket))
            }
        }
        (Method::DELETE, Some(bucket), None) => {
            let s3b = aws.clone();
            blocking(move || s3b.s3.delete_bucket(&bucket)).await?;
            Ok(empty(StatusCode::NO_CONTENT))
        }
        (Method::GET, Some(bucket), None) => list_objects(s3, &bucket, &query),
        (Method::POST, Some(bucket), None) if query.contains_key("delete") => {
            let xml = String::from_utf8_lossy(&body_of(&request)?).into_owned();
            check_content_md5(&request, &body_of(&request)?)?;
            if !xml.contains("<Delete") {
                return Err(s3_error(400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema"));
            }
            let quiet = xml_all(&xml, "Quiet")
                .first()
                .is_some_and(|q| q.trim() == "true");
            let keys: Vec<String> = xml_all(&xml, "Object")
                .iter()
                .filter_map(|o| xml_all(o, "Key").first().map(|k| xml_unescape(k)))
                .collect();
            if keys.is_empty() || keys.len() > 1000 {
                return Err(s3_error(
                    400,
                    "MalformedXML",
                    format!("DeleteObjects takes 1 to 1000 keys, got {}", keys.len()),
                ));
            }
            let s3b = aws.clone();
            let b = bucket.clone();
            let k = keys.clone();
            let (bytes, objects) = blocking(move || s3b.s3.delete_objects(&b, &k)).await?;
            aws.meter
                .s3_stored(&bucket, -(bytes as i64), -(objects as i64));
            let deleted: String = if quiet {
                String::new()
            } else {
                keys.iter()
                    .map(|k| format!("<Deleted><Key>{}</Key></Deleted>", xml_escape(k)))
                    .collect()
            };
            Ok(xml_response(
                StatusCode::OK,
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DeleteResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">{deleted}</DeleteResult>"),
            ))
        }
        (Method::PUT, Some(bucket), Some(key)) => {
            if request.headers().contains_key("x-amz-copy-source") {
                return Err(unsupported());
            }
            let body = body_of(&request)?;
            check_content_md5(&request, &body)?;
            let content_type = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("binary/octet-stream")
                .to_owned();
            let metadata: BTreeMap<String, String> = request
                .headers()
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str().strip_prefix("x-amz-meta-")?.to_owned(),
                        v.to_str().ok()?.to_owned(),
                    ))
                })
                .collect();
            let s3b = aws.clone();
            let size = body.len() as u64;
            let name = bucket.clone();
            let (etag, replaced) =
                blocking(move || s3b.s3.store(&name, &key, body, &content_type, metadata)).await?;
            aws.meter.s3_put(&bucket, size, replaced);
            let mut response = empty(StatusCode::OK);
            if let Ok(etag) = HeaderValue::from_str(&etag) {
                response.headers_mut().insert(ETAG, etag);
            }
            Ok(response)
        }
        (m @ (Method::GET | Method::HEAD), Some(bucket), Some(key)) => {
            let object = s3.head(&bucket, &key)?;
            let mut body = if m == Method::GET {
                s3.body(&object).await?
            } else {
                Bytes::new()
            };
            let mut status = StatusCode::OK;
            let mut content_range = None;
            if let Some(range) = request.headers().get("range").and_then(|r| r.to_str().ok()) {
                let (start, end) = parse_range(range, object.size)?;
                if m == Method::GET {
                    body = body.slice(start as usize..=end as usize);
                }
                status = StatusCode::PARTIAL_CONTENT;
                content_range = Some(format!("bytes {start}-{end}/{}", object.size));
            }
            let length = if m == Method::GET {
                body.len() as u64
            } else {
                object.size
            };
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            let mut set = |name: &str, value: &str| {
                if let (Ok(n), Ok(v)) = (
                    hyper::header::HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.insert(n, v);
                }
            };
            set(ETAG.as_str(), &object.etag);
            set(CONTENT_TYPE.as_str(), &object.content_type);
            set(CONTENT_LENGTH.as_str(), &length.to_string());
            set(LAST_MODIFIED.as_str(), &http_date(object.modified_ms));
            set("accept-ranges", "bytes");
            if let Some(range) = content_range {
                set("content-range", &range);
            }
            for (k, v) in &object.metadata {
                set(&format!("x-amz-meta-{k}"), v);
            }
            Ok(response)
        }
        (Method::DELETE, Some(bucket), Some(key)) => {
            let s3b = aws.clone();
            let name = bucket.clone();
            let (bytes, objects) = blocking(move || s3b.s3.delete_objects(&name, &[key])).await?;
            aws.meter
                .s3_stored(&bucket, -(bytes as i64), -(objects as i64));
            Ok(empty(StatusCode::NO_CONTENT))
        }
        _ => Err(unsupported()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AwsError> + Send + 'static,
) -> Result<T, AwsError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AwsError::internal(format!("operation panicked: {e}")))?
}

fn list_objects(
    s3: &S3,
    bucket: &str,
    query: &BTreeMap<String, String>,
) -> Result<Response<Full<Bytes>>, AwsError> {
    if query.get("list-type").map(String::as_str) != Some("2") {
        return Err(s3_error(501, "NotImplemented", "operation S3 ListObjects (v1) is not supported by the tally local cloud; use ListObjectsV2"));
    }
    let max = match query.get("max-keys") {
        None => 1000,
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| {
                s3_error(
                    400,
                    "InvalidArgument",
                    format!("max-keys {m} must be a non-negative integer"),
                )
            })?
            .min(1000),
    };
    let token = query.get("continuation-token");
    let after = match token {
        Some(token) => {
            let decoded = URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|d| String::from_utf8(d).ok());
            Some(decoded.ok_or_else(|| {
                s3_error(
                    400,
                    "InvalidArgument",
                    "The continuation token provided is incorrect",
                )
            })?)
        }
        None => query.get("start-after").cloned(),
    };
    let list_query = ListQuery {
        prefix: query.get("prefix").cloned().unwrap_or_default(),
        delimiter: query.get("delimiter").cloned(),
        max,
        after,
    };
    let page = s3.list(bucket, &list_query)?;
    let url = query.get("encoding-type").is_some_and(|e| e == "url");
    let show = |k: &str| if url { encode_key(k) } else { xml_escape(k) };
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
    xml.push_str(&format!(
        "<Name>{}</Name><Prefix>{}</Prefix>",
        xml_escape(bucket),
        show(&list_query.prefix)
    ));
    xml.push_str(&format!(
        "<KeyCount>{}</KeyCount><MaxKeys>{max}</MaxKeys>",
        page.objects.len() + page.prefixes.len()
    ));
    if let Some(d) = &list_query.delimiter {
        xml.push_str(&format!("<Delimiter>{}</Delimiter>", show(d)));
    }
    if url {
        xml.push_str("<EncodingType>url</EncodingType>");
    }
    xml.push_str(&format!("<IsTruncated>{}</IsTruncated>", page.truncated));
    if let Some(token) = token {
        xml.push_str(&format!(
            "<ContinuationToken>{}</ContinuationToken>",
            xml_escape(token)
        ));
    }
    if let Some(start) = query.get("start-after") {
        xml.push_str(&format!("<StartAfter>{}</StartAfter>", show(start)));
    }
    if let Some(next) = &page.next {
        xml.push_str(&format!(
            "<NextContinuationToken>{}</NextContinuationToken>",
            URL_SAFE_NO_PAD.encode(next)
        ));
    }
    for (key, object) in &page.objects {
        xml.push_str(&format!(
            "<Contents><Key>{}</Key><LastModified>{}</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            show(key),
            iso8601(object.modified_ms),
            xml_escape(&object.etag),
            object.size
        ));
    }
    for prefix in &page.prefixes {
        xml.push_str(&format!(
            "<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>",
            show(prefix)
        ));
    }
    xml.push_str("</ListBucketResult>");
    Ok(xml_response(StatusCode::OK, xml))
}
