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
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, LAST_MODIFIED};
use hyper::{Method, Request, Response, StatusCode};
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use tally_domain::urlencoded::{self, Malformed};

use super::{now_ms, AwsError, LocalAws};
use crate::store::{lock, write_file_durable, Log};

/// All buckets of the local endpoint.
#[derive(Debug)]
pub struct S3 {
    dir: Option<PathBuf>,
    log: Option<Log>,
    buckets: Mutex<BTreeMap<String, Bucket>>,
    files: AtomicU64,
}

#[derive(Debug, Default)]
struct Bucket {
    created_ms: i64,
    objects: BTreeMap<String, Object>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Object {
    etag: String,
    size: u64,
    content_type: String,
    metadata: BTreeMap<String, String>,
    modified_ms: i64,
    /// The body file's number under `<state>/s3/objects/`, when persisted.
    file: Option<u64>,
    #[serde(skip)]
    body: Option<Bytes>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Entry {
    CreateBucket {
        name: String,
        created_ms: i64,
    },
    DeleteBucket {
        name: String,
    },
    Put {
        bucket: String,
        key: String,
        object: Object,
    },
    Delete {
        bucket: String,
        keys: Vec<String>,
    },
}

/// An S3 error: status, code, message and the resource it concerns.
fn s3_error(status: u16, code: &str, message: impl Into<String>) -> AwsError {
    AwsError {
        status,
        code: code.to_owned(),
        message: message.into(),
        extra: None,
    }
}

fn no_bucket(name: &str) -> AwsError {
    s3_error(
        404,
        "NoSuchBucket",
        format!("The specified bucket does not exist: {name}"),
    )
}

impl S3 {
    pub(crate) fn new(dir: Option<PathBuf>) -> S3 {
        S3 {
            dir,
            log: None,
            buckets: Mutex::new(BTreeMap::new()),
            files: AtomicU64::new(0),
        }
    }

    /// Reloads the buckets persisted under `dir`.
    pub(crate) fn open(dir: &Path) -> Result<S3, AwsError> {
        let path = dir.join("log");
        let (log, entries) = Log::open(&path).map_err(|e| AwsError::storage(&path, e))?;
        let mut s3 = S3::new(Some(dir.to_owned()));
        let mut max_file = 0;
        {
            let mut buckets = lock(&s3.buckets);
            for bytes in entries {
                let entry: Entry = serde_json::from_slice(&bytes).map_err(|e| {
                    AwsError::internal(format!("corrupt entry in {}: {e}", path.display()))
                })?;
                match entry {
                    Entry::CreateBucket { name, created_ms } => {
                        buckets.insert(
                            name,
                            Bucket {
                                created_ms,
                                objects: BTreeMap::new(),
                            },
                        );
                    }
                    Entry::DeleteBucket { name } => {
                        buckets.remove(&name);
                    }
                    Entry::Put {
                        bucket,
                        key,
                        object,
                    } => {
                        max_file = max_file.max(object.file.unwrap_or(0) + 1);
                        if let Some(bucket) = buckets.get_mut(&bucket) {
                            bucket.objects.insert(key, object);
                        }
                    }
                    Entry::Delete { bucket, keys } => {
                        if let Some(bucket) = buckets.get_mut(&bucket) {
                            for key in keys {
                                bucket.objects.remove(&key);
                            }
                        }
                    }
                }
            }
        }
        // Body files written after the last logged entry (a crash between the two) are never referenced.
        s3.files = AtomicU64::new(max_file.max(next_free_file(&dir.join("objects"))));
        s3.log = Some(log);
        Ok(s3)
    }

    fn object_path(&self, file: u64) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join("objects").join(file.to_string()))
    }

    fn append(&self, entry: &Entry) -> Result<(), AwsError> {
        let ticket = super::log_write(self.log.as_ref(), entry)?;
        super::log_sync(self.log.as_ref(), ticket)
    }

    /// Creates a bucket (the template loader and tests). Re-creating an own bucket succeeds, as in us-east-1.
    pub fn create_bucket(&self, name: &str) -> Result<(), AwsError> {
        let valid = (3..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid {
            return Err(s3_error(
                400,
                "InvalidBucketName",
                format!("The specified bucket is not valid: {name} (3-63 lowercase letters, digits, dots and hyphens)"),
            ));
        }
        let mut buckets = lock(&self.buckets);
        if buckets.contains_key(name) {
            return Ok(());
        }
        let created_ms = now_ms();
        self.append(&Entry::CreateBucket {
            name: name.to_owned(),
            created_ms,
        })?;
        buckets.insert(
            name.to_owned(),
            Bucket {
                created_ms,
                objects: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn delete_bucket(&self, name: &str) -> Result<(), AwsError> {
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.get(name).ok_or_else(|| no_bucket(name))?;
        if !bucket.objects.is_empty() {
            return Err(s3_error(
                409,
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
            ));
        }
        self.append(&Entry::DeleteBucket {
            name: name.to_owned(),
        })?;
        buckets.remove(name);
        Ok(())
    }

    /// Stores an object durably.
    pub fn put_object(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<String, AwsError> {
        self.store(bucket, key, body, content_type, metadata)
            .map(|(etag, _)| etag)
    }

    /// Stores an object durably; answers its ETag and the size of the object it replaced, if any.
    fn store(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        content_type: &str,
        metadata: BTreeMap<String, String>,
    ) -> Result<(String, Option<u64>), AwsError> {
        check_key(key)?;
        if !lock(&self.buckets).contains_key(bucket) {
            return Err(no_bucket(bucket));
        }
        let etag = format!("\"{}\"", hex::encode(Md5::digest(&body)));
        let file = match &self.dir {
            Some(_) => {
                let n = self.files.fetch_add(1, Ordering::Relaxed);
                let path = self
                    .object_path(n)
                    .ok_or_else(|| AwsError::internal("no state directory"))?;
                write_file_durable(&path, &body).map_err(|e| AwsError::storage(&path, e))?;
                Some(n)
            }
            None => None,
        };
        let object = Object {
            etag: etag.clone(),
            size: body.len() as u64,
            content_type: content_type.to_owned(),
            metadata,
            modified_ms: now_ms(),
            file,
            body: if file.is_some() { None } else { Some(body) },
        };
        let replaced = {
            let mut buckets = lock(&self.buckets);
            let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
            self.append(&Entry::Put {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                object: object.clone(),
            })?;
            b.objects.insert(key.to_owned(), object)
        };
        let replaced_size = replaced.as_ref().map(|o| o.size);
        self.forget(replaced);
        Ok((etag, replaced_size))
    }

    /// What each bucket stores now: bytes and objects (the meter's levels when the state is reopened).
    pub(crate) fn stored(&self) -> Vec<(String, u64, u64)> {
        lock(&self.buckets)
            .iter()
            .map(|(name, b)| {
                let bytes = b.objects.values().map(|o| o.size).sum();
                (name.clone(), bytes, b.objects.len() as u64)
            })
            .collect()
    }

    fn forget(&self, object: Option<Object>) {
        if let Some(path) = object
            .and_then(|o| o.file)
            .and_then(|n| self.object_path(n))
        {
            let _ = std::fs::remove_file(path);
        }
    }

    fn head(&self, bucket: &str, key: &str) -> Result<Object, AwsError> {
        let buckets = lock(&self.buckets);
        let b = buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        b.objects
            .get(key)
            .cloned()
            .ok_or_else(|| s3_error(404, "NoSuchKey", "The specified key does not exist."))
    }

    /// An object's metadata and body.
    pub async fn get_object(&self, bucket: &str, key: &str) -> Result<(Bytes, String), AwsError> {
        let object = self.head(bucket, key)?;
        let body = self.body(&object).await?;
        Ok((body, object.etag))
    }

    async fn body(&self, object: &Object) -> Result<Bytes, AwsError> {
        if let Some(body) = &object.body {
            return Ok(body.clone());
        }
        let path = object
            .file
            .and_then(|n| self.object_path(n))
            .ok_or_else(|| AwsError::internal("object has no body"))?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| AwsError::storage(&path, e))
    }

    /// Deletes the keys that exist; answers the bytes and the number of objects removed.
    fn delete_objects(&self, bucket: &str, keys: &[String]) -> Result<(u64, u64), AwsError> {
        let removed: Vec<Object> = {
            let mut buckets = lock(&self.buckets);
            let b = buckets.get_mut(bucket).ok_or_else(|| no_bucket(bucket))?;
            let present: Vec<String> = keys
                .iter()
                .filter(|k| b.objects.contains_key(*k))
                .cloned()
                .collect();
            if !present.is_empty() {
                self.append(&Entry::Delete {
                    bucket: bucket.to_owned(),
                    keys: present.clone(),
                })?;
            }
            present.iter().filter_map(|k| b.objects.remove(k)).collect()
        };
        let freed = (removed.iter().map(|o| o.size).sum(), removed.len() as u64);
        for object in removed {
            self.forget(Some(object));
        }
        Ok(freed)
    }

    /// Keys (sorted) under a prefix: `(key, object)` after `start`, at most `max`, and whether more follow.
    fn list(&self, bucket: &str, query: &ListQuery) -> Result<ListPage, AwsError> {
        let buckets = lock(&self.buckets);
        let b = buckets.get(bucket).ok_or_else(|| no_bucket(bucket))?;
        let mut page = ListPage::default();
        let after = query.after.clone().unwrap_or_default();
        let mut last = None;
        for (key, object) in b.objects.range::<String, _>((
            std::ops::Bound::Excluded(after.clone()),
            std::ops::Bound::Unbounded,
        )) {
            if !key.starts_with(&query.prefix) || (after.is_empty() && key.is_empty()) {
                if key.as_str() > query.prefix.as_str() && !key.starts_with(&query.prefix) {
                    break;
                }
                continue;
            }
            let rest = &key[query.prefix.len()..];
            let common = query
                .delimiter
                .as_deref()
                .filter(|d| !d.is_empty())
                .and_then(|d| {
                    rest.find(d)
                        .map(|at| format!("{}{}", query.prefix, &rest[..at + d.len()]))
                });
            if let Some(common) = &common {
                if page.prefixes.last() == Some(common) {
                    last = Some(key.clone());
                    continue;
                }
            }
            if page.objects.len() + page.prefixes.len() >= query.max {
                page.truncated = true;
                break;
            }
            match common {
                Some(common) => page.prefixes.push(common),
                None => page.objects.push((key.clone(), object.clone())),
            }
            last = Some(key.clone());
        }
        if page.truncated {
            page.next = last;
        }
        Ok(page)
    }
}

fn next_free_file(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
                .map(|n| n + 1)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

fn check_key(key: &str) -> Result<(), AwsError> {
    if key.is_empty() || key.len() > 1024 {
        return Err(s3_error(
            400,
            "KeyTooLongError",
            format!(
                "Object keys must be 1 to 1024 bytes long, got {} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

#[derive(Debug)]
struct ListQuery {
    prefix: String,
    delimiter: Option<String>,
    max: usize,
    after: Option<String>,
}

#[derive(Debug, Default)]
struct ListPage {
    objects: Vec<(String, Object)>,
    prefixes: Vec<String>,
    truncated: bool,
    next: Option<String>,
}

/// Percent-decoding of a path segment or query value (`+` is a space only in queries), strict
/// ([`tally_domain::urlencoded`]), in S3's words.
fn decode(text: &str, plus_is_space: bool) -> Result<String, AwsError> {
    let decoded = if plus_is_space {
        urlencoded::decode(text)
    } else {
        urlencoded::decode_path(text)
    };
    decoded
        .map(std::borrow::Cow::into_owned)
        .map_err(|bad| match bad {
            Malformed::BadEscape { .. } => s3_error(
                400,
                "InvalidURI",
                format!("Couldn't parse the specified URI: bad percent-encoding in {text}"),
            ),
            Malformed::NotUtf8 => s3_error(
                400,
                "InvalidURI",
                "Couldn't parse the specified URI: not UTF-8",
            ),
        })
}

fn encode_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of every `<tag>...</tag>` in `xml`, in order.
fn xml_all<'x>(xml: &'x str, tag: &str) -> Vec<&'x str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else { break };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

fn split_ms(ms: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let (days, rest) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let (y, m, d) = tally_domain::calendar::civil_from_days(days);
    (
        y,
        m,
        d,
        rest / 3_600_000,
        rest / 60_000 % 60,
        rest / 1000 % 60,
        rest % 1000,
    )
}

/// `2026-11-26T13:17:41.000Z`
pub(crate) fn iso8601(ms: i64) -> String {
    let (y, m, d, h, mi, s, milli) = split_ms(ms);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// `Thu, 26 Nov 2026 13:17:41 GMT`
pub(crate) fn http_date(ms: i64) -> String {
    let (y, m, d, h, mi, s, _) = split_ms(ms);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
        [ms.div_euclid(86_400_000).rem_euclid(7) as usize];
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(m - 1) as usize];
    format!("{weekday}, {d:02} {month} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

/// Decodes an `aws-chunked` body: `hex-size[;chunk-signature=..]\r\n data \r\n ... 0\r\n trailers \r\n`.
fn decode_aws_chunked(body: &[u8]) -> Result<Bytes, AwsError> {
    let bad = |why: &str| {
        s3_error(
            400,
            "IncompleteBody",
            format!("The aws-chunked request body is malformed: {why}"),
        )
    };
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    loop {
        let line_end = body[at..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("missing chunk header"))?
            + at;
        let header = std::str::from_utf8(&body[at..line_end])
            .map_err(|_| bad("chunk header is not text"))?;
        let size_text = header.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad("chunk size is not hexadecimal"))?;
        at = line_end + 2;
        if size == 0 {
            return Ok(Bytes::from(out));
        }
        let data = body
            .get(at..at + size)
            .ok_or_else(|| bad("chunk shorter than its size"))?;
        out.extend_from_slice(data);
        at += size;
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err(bad("chunk not followed by CRLF"));
        }
        at += 2;
    }
}

fn xml_response(status: StatusCode, xml: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

fn empty(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

pub(crate) fn error_response(
    error: &AwsError,
    method: &Method,
    resource: &str,
) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    if method == Method::HEAD {
        // HEAD answers carry no body; the SDK maps the status (404 -> NotFound).
        return empty(status);
    }
    xml_response(
        status,
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message><Resource>{}</Resource><RequestId>{}</RequestId></Error>",
            xml_escape(&error.code),
            xml_escape(&error.message),
            xml_escape(resource),
            now_ms()
        ),
    )
}

/// Splits a request into bucket, key and query, for path-style or virtual-hosted addressing.
/// Bucket, key and decoded query parameters of a request.
type Address = (Option<String>, Option<String>, BTreeMap<String, String>);

fn address(request: &Request<Bytes>) -> Result<Address, AwsError> {
    let uri = request.uri();
    let mut query = BTreeMap::new();
    for pair in uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.insert(decode(k, true)?, decode(v, true)?);
    }
    let path = uri.path().trim_start_matches('/');
    let host = request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let host_name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let virtual_bucket = host_name
        .strip_suffix(".localhost")
        .or_else(|| host_name.strip_suffix(".s3.amazonaws.com"))
        .filter(|b| !b.is_empty());
    let (bucket, key) = match virtual_bucket {
        Some(bucket) => (
            Some(bucket.to_owned()),
            Some(path).filter(|p| !p.is_empty()).map(str::to_owned),
        ),
        None => {
            let (bucket, key) = path
                .split_once('/')
                .map_or((path, None), |(b, k)| (b, Some(k)));
            (
                Some(bucket).filter(|b| !b.is_empty()).map(str::to_owned),
                key.filter(|k| !k.is_empty()).map(str::to_owned),
            )
        }
    };
    let bucket = bucket.map(|b| decode(&b, false)).transpose()?;
    let key = key.map(|k| decode(&k, false)).transpose()?;
    Ok((bucket, key, query))
}

/// Query parameters that select a sub-resource this endpoint does not implement.
const SUBRESOURCES: &[&str] = &[
    "acl",
    "cors",
    "lifecycle",
    "location",
    "logging",
    "notification",
    "policy",
    "replication",
    "tagging",
    "uploads",
    "uploadId",
    "versioning",
    "versions",
    "website",
    "encryption",
    "object-lock",
    "retention",
    "legal-hold",
    "publicAccessBlock",
    "ownershipControls",
    "accelerate",
    "analytics",
    "inventory",
    "metrics",
    "intelligent-tiering",
    "requestPayment",
    "restore",
    "select",
    "attributes",
    "torrent",
    "partNumber",
];

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

/// The request body, decoded from `aws-chunked` when the client streamed it.
fn body_of(request: &Request<Bytes>) -> Result<Bytes, AwsError> {
    let headers = request.headers();
    let chunked = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("aws-chunked"))
        || headers
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("STREAMING-"));
    if !chunked {
        return Ok(request.body().clone());
    }
    let body = decode_aws_chunked(request.body())?;
    if let Some(expected) = headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if expected != body.len() {
            return Err(s3_error(400, "IncompleteBody", format!("You did not provide the number of bytes specified by x-amz-decoded-content-length ({expected}, got {})", body.len())));
        }
    }
    Ok(body)
}

fn check_content_md5(request: &Request<Bytes>, body: &[u8]) -> Result<(), AwsError> {
    let Some(claimed) = request
        .headers()
        .get("content-md5")
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(());
    };
    let decoded = STANDARD.decode(claimed).map_err(|_| {
        s3_error(
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid base64",
        )
    })?;
    if decoded.as_slice() != Md5::digest(body).as_slice() {
        return Err(s3_error(
            400,
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
        ));
    }
    Ok(())
}

/// `bytes=a-b`, `bytes=a-`, `bytes=-n` within an object of `size` bytes.
fn parse_range(range: &str, size: u64) -> Result<(u64, u64), AwsError> {
    let bad = || {
        s3_error(
            416,
            "InvalidRange",
            format!("The requested range {range} is not satisfiable for an object of {size} bytes"),
        )
    };
    let spec = range.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let (start, end) = match (a.parse::<u64>().ok(), b.parse::<u64>().ok()) {
        (Some(a), Some(b)) => (a, b.min(size.saturating_sub(1))),
        (Some(a), None) if b.is_empty() => (a, size.saturating_sub(1)),
        (None, Some(n)) if a.is_empty() && n > 0 => {
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        _ => return Err(bad()),
    };
    if size == 0 || start > end || start >= size {
        return Err(bad());
    }
    Ok((start, end))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(iso8601(1_795_699_061_123), "2026-11-26T13:17:41.123Z");
        assert_eq!(http_date(951_782_400_000), "Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn aws_chunked_bodies() {
        fn check(body: &[u8], expect: Result<&[u8], &str>) {
            match (decode_aws_chunked(body), expect) {
                (Ok(got), Ok(expect)) => assert_eq!(&got[..], expect),
                (Err(e), Err(fragment)) => assert!(e.message.contains(fragment), "{}", e.message),
                (got, expect) => panic!("{body:?}: got {got:?}, expected {expect:?}"),
            }
        }
        check(
            b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n",
            Ok(b"hello"),
        );
        check(b"3;chunk-signature=ab\r\nabc\r\n2;chunk-signature=cd\r\nde\r\n0;chunk-signature=ef\r\n\r\n", Ok(b"abcde"));
        check(b"0\r\n\r\n", Ok(b""));
        check(b"", Err("missing chunk header"));
        check(b"zz\r\n", Err("hexadecimal"));
        check(b"9\r\nshort\r\n", Err("shorter"));
        check(b"2\r\nabX", Err("CRLF"));
    }

    #[test]
    fn ranges() {
        fn check(range: &str, size: u64, expect: Option<(u64, u64)>) {
            assert_eq!(parse_range(range, size).ok(), expect, "{range} of {size}");
        }
        check("bytes=0-4", 10, Some((0, 4)));
        check("bytes=5-", 10, Some((5, 9)));
        check("bytes=-3", 10, Some((7, 9)));
        check("bytes=0-100", 10, Some((0, 9)));
        check("bytes=10-", 10, None);
        check("bytes=4-2", 10, None);
        check("items=0-1", 10, None);
        check("bytes=x-y", 10, None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(decode("a%2Fb%20c", false).ok().as_deref(), Some("a/b c"));
        assert_eq!(decode("a+b", true).ok().as_deref(), Some("a b"));
        assert_eq!(decode("a+b", false).ok().as_deref(), Some("a+b"));
        assert!(decode("%zz", false).is_err());
        assert!(decode("%ff", false).is_err(), "not UTF-8");
    }
}
