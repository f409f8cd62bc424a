//! The local AWS endpoint: Kinesis, DynamoDB, SQS and S3 over their wire protocols on one port.
//!
//! The real `aws-sdk-*` clients talk to it unchanged when `AWS_ENDPOINT_URL` points at it. Requests are routed
//! by protocol:
//!
//! * `X-Amz-Target: Kinesis_20131202.<Op>` — Kinesis, awsJson1.1 ([`kinesis`]);
//! * `X-Amz-Target: DynamoDB_20120810.<Op>` — DynamoDB, awsJson1.0 ([`dynamodb`]);
//! * `X-Amz-Target: AmazonSQS.<Op>` — SQS, awsJson1.0 ([`sqs`]);
//! * `X-Amz-Target: secretsmanager.<Op>` — Secrets Manager, awsJson1.1 ([`secretsmanager`]);
//! * anything else — S3 REST, path-style (`/bucket/key`) or virtual-hosted (`bucket.localhost`) ([`s3`]).
//!
//! Signatures (SigV4) are accepted without being checked: the endpoint listens on 127.0.0.1 only and has one
//! account (`123456789012`) and one region (`us-east-1` unless configured otherwise). The access key id a
//! request was signed with names its caller in the meter ([`caller`]).
//!
//! Errors have AWS's shapes and statuses, so the SDKs' retry classifiers behave as against AWS: JSON protocols
//! answer `{"__type": ..., "message": ...}` (400 for client errors and throttling, 500 for internal failures);
//! S3 answers `<Error><Code>..</Code><Message>..</Message></Error>`. An operation the local cloud does not
//! implement answers `UnknownOperationException` (S3: `NotImplemented`, 501) with the message
//! "operation X is not supported by the tally local cloud".
//!
//! **API Boundary:** [`LocalAws`] is the state of all four services; [`handle`] turns one HTTP request into
//! one response without a socket (tests call it directly), [`serve`] runs it on a listener. The in-process
//! Kinesis API for event source mappings is [`kinesis::Kinesis`]. Resources come from clients' Create* calls
//! or from the template loader through [`kinesis::Kinesis::create`], [`kinesis::Stream::register_consumer`],
//! [`dynamodb::DynamoDb::create_table`] / [`dynamodb::DynamoDb::update_ttl`], [`sqs::Sqs::create_queue`] and
//! [`s3::S3::create_bucket`].

pub mod dynamodb;
pub mod kinesis;
pub mod s3;
pub mod secretsmanager;
pub mod sqs;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::Durability;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

/// The account id of every ARN the local cloud makes.
pub const ACCOUNT_ID: &str = "123456789012";

/// Largest request body accepted by S3 (an object PUT; AWS takes 5 GB in one PUT, the local cloud less).
const MAX_S3_BODY: usize = 64 * 1024 * 1024;
/// Largest S3 request body other than a PUT: DeleteObjects' XML of at most 1,000 keys of at most 1,024 bytes.
const MAX_S3_XML_BODY: usize = 2 * 1024 * 1024;
/// Largest DynamoDB request: AWS documents 16 MB for the largest one, BatchWriteItem.
const MAX_DYNAMODB_BODY: usize = 16 * 1024 * 1024;
/// Largest Kinesis request: PutRecords takes 5 MiB of data, which is 6.7 MiB as base64, plus keys and JSON.
const MAX_KINESIS_BODY: usize = 8 * 1024 * 1024;
/// Largest SQS request: a message or a batch is at most 256 KiB; JSON escaping can at most double it (and
/// message attributes add some).
const MAX_SQS_BODY: usize = 1024 * 1024;
/// Largest Secrets Manager request: a 64 KiB secret string, JSON-escaped.
const MAX_SECRETSMANAGER_BODY: usize = 256 * 1024;
/// Any other request (an unknown `X-Amz-Target`, answered with an error anyway).
const MAX_OTHER_BODY: usize = 64 * 1024;

/// The four services of the local endpoint, with their state.
#[derive(Debug)]
pub struct LocalAws {
    pub region: String,
    pub kinesis: kinesis::Kinesis,
    pub dynamodb: dynamodb::DynamoDb,
    pub sqs: sqs::Sqs,
    pub s3: s3::S3,
    pub secretsmanager: secretsmanager::SecretsManager,
    /// What AWS would bill for the requests served (see [`crate::meter`]).
    pub meter: Arc<crate::meter::Meter>,
    state_dir: Option<PathBuf>,
}

impl LocalAws {
    /// Services whose state lives in memory only (tests).
    pub fn ephemeral() -> Arc<LocalAws> {
        let region = "us-east-1".to_owned();
        Arc::new(LocalAws {
            kinesis: kinesis::Kinesis::new(&region, None),
            dynamodb: dynamodb::DynamoDb::new(&region, None),
            sqs: sqs::Sqs::new(&region, None),
            s3: s3::S3::new(None),
            secretsmanager: secretsmanager::SecretsManager::new(&region),
            meter: Arc::default(),
            region,
            state_dir: None,
        })
    }

    /// Services persisted under `dir` (see [`crate::store`]), reloading whatever an earlier run left there;
    /// their logs synced about once a second ([`Durability::EverySecond`]).
    pub fn open(dir: &Path) -> Result<Arc<LocalAws>, AwsError> {
        LocalAws::open_with(dir, Durability::default())
    }

    /// [`LocalAws::open`] with the resources' logs synced as `durability` says.
    pub fn open_with(dir: &Path, durability: Durability) -> Result<Arc<LocalAws>, AwsError> {
        let region = "us-east-1".to_owned();
        std::fs::create_dir_all(dir).map_err(|e| AwsError::storage(dir, e))?;
        let aws = Arc::new(LocalAws {
            kinesis: kinesis::Kinesis::open(&region, &dir.join("kinesis"), durability)?,
            dynamodb: dynamodb::DynamoDb::open(&region, &dir.join("dynamodb"), durability)?,
            sqs: sqs::Sqs::open(&region, &dir.join("sqs"), durability)?,
            s3: s3::S3::open(&dir.join("s3"), durability)?,
            secretsmanager: secretsmanager::SecretsManager::open(
                &region,
                Some(&dir.join("secretsmanager.json")),
            )?,
            meter: Arc::default(),
            region,
            state_dir: Some(dir.to_owned()),
        });
        // What S3 already stores is a level the meter starts from.
        for (bucket, bytes, objects) in aws.s3.stored() {
            aws.meter.s3_stored(&bucket, bytes as i64, objects as i64);
        }
        Ok(aws)
    }

    /// Where the state is kept, if anywhere.
    pub fn state_dir(&self) -> Option<&Path> {
        self.state_dir.as_deref()
    }
}

/// An error as AWS answers it: an HTTP status, an error code (`__type` / `<Code>`) and a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct AwsError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// Members AWS adds to some errors (`CancellationReasons`, `Item`), merged into the JSON body.
    pub extra: Option<Box<Value>>,
}

impl AwsError {
    /// A 400 client error.
    pub fn client(code: &str, message: impl Into<String>) -> AwsError {
        AwsError {
            status: 400,
            code: code.to_owned(),
            message: message.into(),
            extra: None,
        }
    }

    /// A 400 `ValidationException` (DynamoDB) / `InvalidArgumentException` (Kinesis) style error.
    pub fn validation(message: impl Into<String>) -> AwsError {
        AwsError::client("ValidationException", message)
    }

    /// An operation the local cloud does not implement.
    pub fn unsupported(service: &str, operation: &str) -> AwsError {
        AwsError::client(
            "UnknownOperationException",
            format!("operation {service}.{operation} is not supported by the tally local cloud"),
        )
    }

    /// The state directory could not be read or written: a 500, so SDKs retry.
    pub fn storage(path: &Path, error: std::io::Error) -> AwsError {
        AwsError {
            status: 500,
            code: "InternalFailure".to_owned(),
            message: format!("local cloud storage failed at {}: {error}", path.display()),
            extra: None,
        }
    }

    pub fn internal(message: impl Into<String>) -> AwsError {
        AwsError {
            status: 500,
            code: "InternalFailure".to_owned(),
            message: message.into(),
            extra: None,
        }
    }
}

/// Writes one entry to a service's log, if it has one (called under the service's lock, so entries keep the
/// order of the changes); returns the ticket to [`log_sync`] on after releasing the lock.
pub(crate) fn log_write(
    log: Option<&crate::store::Log>,
    entry: &impl serde::Serialize,
) -> Result<Option<u64>, AwsError> {
    let Some(log) = log else { return Ok(None) };
    let bytes = serde_json::to_vec(entry).map_err(|e| AwsError::internal(e.to_string()))?;
    log.write(&bytes)
        .map(Some)
        .map_err(|e| AwsError::storage(log.path(), e))
}

/// Waits until the entry with `ticket` is durable (see [`crate::store::Log::sync`]).
pub(crate) fn log_sync(
    log: Option<&crate::store::Log>,
    ticket: Option<u64>,
) -> Result<(), AwsError> {
    match (log, ticket) {
        (Some(log), Some(ticket)) => log
            .sync(ticket)
            .map_err(|e| AwsError::storage(log.path(), e)),
        _ => Ok(()),
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Epoch seconds as the JSON protocols' timestamps (a number with a fraction).
pub(crate) fn epoch_seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// Runs the endpoint on `listener` until the task is dropped: HTTP/1.1, one task per connection. Accept
/// errors are logged and retried, so the `Result` is only for callers that `select!` on it.
pub async fn serve(listener: tokio::net::TcpListener, aws: Arc<LocalAws>) -> std::io::Result<()> {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the connections that exist.
                tracing::warn!(message = "local aws accept failed", %error);
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let aws = aws.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let aws = aws.clone();
                async move { Ok::<_, Infallible>(handle_incoming(&aws, request).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(error) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await
            {
                tracing::debug!(message = "local aws connection ended", %error);
            }
        });
    }
}

async fn handle_incoming(aws: &Arc<LocalAws>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .map(|t| t.to_str().unwrap_or_default().to_owned());
    if let Some(why) = crate::guard::refusal(&parts.headers) {
        tracing::warn!(message = "local aws refused a request", %why);
        return refused(target.as_deref(), &parts.method, why);
    }
    let (limit, service) = body_limit(target.as_deref(), &parts.method);
    let too_large = |got: &str| {
        let message = format!(
            "request body of {got} bytes is larger than the {limit} bytes the local {service} endpoint accepts; send smaller requests"
        );
        match target {
            Some(_) => json_error(
                "application/x-amz-json-1.1",
                &AwsError {
                    status: 413,
                    ..AwsError::client("RequestEntityTooLarge", message)
                },
            ),
            None => s3::error_response(
                &AwsError {
                    status: 400,
                    ..AwsError::client("EntityTooLarge", message)
                },
                &parts.method,
                parts.uri.path(),
            ),
        }
    };
    let declared = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|d| *d > limit as u64) {
        return too_large(&declared.to_string());
    }
    match Limited::new(body, limit).collect().await {
        Ok(body) => handle(aws, Request::from_parts(parts, body.to_bytes())).await,
        Err(error) if error.is::<http_body_util::LengthLimitError>() => too_large("more than that"),
        Err(error) => json_error(
            "application/x-amz-json-1.1",
            &AwsError::client(
                "SerializationException",
                format!("cannot read the request body: {error}"),
            ),
        ),
    }
}

/// The largest body accepted for a request with this `X-Amz-Target` (none: S3, where only a PUT carries an
/// object), and the service's name.
fn body_limit(target: Option<&str>, method: &hyper::Method) -> (usize, &'static str) {
    let Some(target) = target else {
        return match *method {
            hyper::Method::PUT => (MAX_S3_BODY, "S3"),
            _ => (MAX_S3_XML_BODY, "S3"),
        };
    };
    match target
        .split_once('.')
        .map_or(target, |(service, _)| service)
    {
        "DynamoDB_20120810" => (MAX_DYNAMODB_BODY, "DynamoDB"),
        "Kinesis_20131202" => (MAX_KINESIS_BODY, "Kinesis"),
        "AmazonSQS" => (MAX_SQS_BODY, "SQS"),
        "secretsmanager" => (MAX_SECRETSMANAGER_BODY, "Secrets Manager"),
        _ => (MAX_OTHER_BODY, "AWS"),
    }
}

/// The 403 of the loopback guard, in the shape of the protocol the request used.
fn refused(target: Option<&str>, method: &hyper::Method, why: String) -> Response<Full<Bytes>> {
    let error = AwsError {
        status: 403,
        ..AwsError::client("AccessDeniedException", why)
    };
    match target {
        Some(_) => json_error("application/x-amz-json-1.1", &error),
        None => s3::error_response(
            &AwsError {
                code: "AccessDenied".to_owned(),
                ..error
            },
            method,
            "/",
        ),
    }
}

/// One request, one response: the whole endpoint without a socket.
pub async fn handle(aws: &Arc<LocalAws>, request: Request<Bytes>) -> Response<Full<Bytes>> {
    // The meter (`/_tally/meter`): before S3, which it cannot shadow (see `meter::http`).
    if let Some(response) = crate::meter::http(&aws.meter, &request) {
        return response;
    }
    let target = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let Some(target) = target else {
        return s3::handle(aws, request).await;
    };
    let (service, operation) = target.split_once('.').unwrap_or((target.as_str(), ""));
    let (content_type, result) = match service {
        "Kinesis_20131202" => {
            ("application/x-amz-json-1.1", json_call(aws, request.body(), operation, kinesis::call).await)
        }
        "DynamoDB_20120810" => {
            let caller = caller(request.headers());
            let call = move |aws: &LocalAws, operation: &str, input| dynamodb::call(aws, operation, input, &caller);
            ("application/x-amz-json-1.0", json_call(aws, request.body(), operation, call).await)
        }
        "secretsmanager" => (
            "application/x-amz-json-1.1",
            json_call(aws, request.body(), operation, secretsmanager::call).await,
        ),
        "AmazonSQS" => {
            let host = request.headers().get(hyper::header::HOST).and_then(|h| h.to_str().ok());
            ("application/x-amz-json-1.0", sqs::call(aws, request.body(), operation, host).await)
        }
        _ => (
            "application/x-amz-json-1.1",
            Err(AwsError::client(
                "UnknownOperationException",
                format!("service {service} (X-Amz-Target {target}) is not supported by the tally local cloud"),
            )),
        ),
    };
    match result {
        Ok(value) => json_response(content_type, &value),
        Err(error) if service == "AmazonSQS" => sqs::error_response(&error),
        Err(mut error) if service == "DynamoDB_20120810" => {
            error.code = format!("com.amazonaws.dynamodb.v20120810#{}", error.code);
            json_error(content_type, &error)
        }
        Err(error) => json_error(content_type, &error),
    }
}

/// Who the meter charges a request to: the access key id of its SigV4 signature
/// (`Authorization: AWS4-HMAC-SHA256 Credential=<AccessKeyId>/<date>/<region>/<service>/aws4_request, ...`),
/// `"unknown"` when the request is not signed, `"malformed"` when the key is not 1 to 128 characters of
/// `[A-Za-z0-9_.-]` (the local cloud gives each function its function name as access key id).
pub fn caller(headers: &hyper::HeaderMap) -> String {
    let Some(authorization) = headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return "unknown".to_owned();
    };
    let key = authorization
        .split_once("Credential=")
        .map(|(_, rest)| rest.split(['/', ',', ' ']).next().unwrap_or_default());
    match key {
        Some(key)
            if (1..=128).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)) =>
        {
            key.to_owned()
        }
        _ => "malformed".to_owned(),
    }
}

/// Parses the JSON body and runs a synchronous operation on the blocking pool (it may wait for `fdatasync`).
async fn json_call(
    aws: &Arc<LocalAws>,
    body: &Bytes,
    operation: &str,
    call: impl FnOnce(&LocalAws, &str, Value) -> Result<Value, AwsError> + Send + 'static,
) -> Result<Value, AwsError> {
    let input = parse_json_body(body)?;
    let aws = aws.clone();
    let operation = operation.to_owned();
    tokio::task::spawn_blocking(move || call(&aws, &operation, input))
        .await
        .map_err(|error| AwsError::internal(format!("operation panicked: {error}")))?
}

pub(crate) fn parse_json_body(body: &Bytes) -> Result<Value, AwsError> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        AwsError::client(
            "SerializationException",
            format!("request body is not JSON: {error}"),
        )
    })?;
    if !value.is_object() {
        return Err(AwsError::client(
            "SerializationException",
            "request body must be a JSON object",
        ));
    }
    Ok(value)
}

pub(crate) fn json_response(content_type: &str, value: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Ok(value) = HeaderValue::from_str(content_type) {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

pub(crate) fn json_error(content_type: &str, error: &AwsError) -> Response<Full<Bytes>> {
    let mut body = json!({"__type": error.code, "message": error.message});
    if let (Some(Value::Object(extra)), Some(body)) = (error.extra.as_deref(), body.as_object_mut())
    {
        body.extend(extra.clone());
    }
    let mut response = json_response(content_type, &body);
    *response.status_mut() = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    let short_code = error.code.rsplit('#').next().unwrap_or(&error.code);
    if let Ok(value) = HeaderValue::from_str(short_code) {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

/// Typed access to request members, with errors naming the member.
pub(crate) mod input {
    use super::AwsError;
    use serde_json::Value;

    pub fn opt_str<'a>(input: &'a Value, name: &str) -> Result<Option<&'a str>, AwsError> {
        match input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(wrong_type(name, "a string", other)),
        }
    }

    pub fn req_str<'a>(input: &'a Value, name: &str) -> Result<&'a str, AwsError> {
        opt_str(input, name)?.ok_or_else(|| missing(name))
    }

    pub fn opt_i64(input: &Value, name: &str) -> Result<Option<i64>, AwsError> {
        match input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| wrong_type(name, "an integer", &Value::Number(n.clone()))),
            Some(other) => Err(wrong_type(name, "an integer", other)),
        }
    }

    pub fn opt_f64(input: &Value, name: &str) -> Result<Option<f64>, AwsError> {
        match input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => Ok(n.as_f64()),
            Some(other) => Err(wrong_type(name, "a number", other)),
        }
    }

    pub fn opt_bool(input: &Value, name: &str) -> Result<Option<bool>, AwsError> {
        match input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(wrong_type(name, "a boolean", other)),
        }
    }

    pub fn opt_array<'a>(input: &'a Value, name: &str) -> Result<Option<&'a Vec<Value>>, AwsError> {
        match input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(wrong_type(name, "a list", other)),
        }
    }

    pub fn opt_object<'a>(
        input: &'a Value,
        name: &str,
    ) -> Result<Option<&'a serde_json::Map<String, Value>>, AwsError> {
        match input.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(other) => Err(wrong_type(name, "a structure", other)),
        }
    }

    pub fn missing(name: &str) -> AwsError {
        AwsError::validation(format!("1 validation error detected: value null at '{name}' failed to satisfy constraint: member must not be null"))
    }

    fn wrong_type(name: &str, expected: &str, got: &Value) -> AwsError {
        AwsError::client(
            "SerializationException",
            format!(
                "member {name} must be {expected}, got {}",
                super::short(got)
            ),
        )
    }
}

/// A JSON value shortened for an error message.
pub(crate) fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 60 {
        let end = text.char_indices().nth(57).map_or(text.len(), |(i, _)| i);
        format!("{}...", &text[..end])
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One request through [`handle`] (no socket): the status and the error code, `""` on success.
    fn check(target: Option<&str>, method: &str, uri: &str, body: &str, expect: (u16, &str)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let aws = LocalAws::ephemeral();
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "127.0.0.1:4566");
        if let Some(target) = target {
            request = request.header("x-amz-target", target);
        }
        let request = request.body(Bytes::from(body.to_owned())).expect("request");
        let response = runtime.block_on(async {
            // A stream and a table to aim valid-looking requests at.
            let _ = aws.kinesis.create("s", Some(1), false);
            let _ = aws.dynamodb.create_table(&json!({
                "TableName": "tbl",
                "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            }));
            handle(&aws, request).await
        });
        let status = response.status().as_u16();
        let answer = runtime
            .block_on(BodyExt::collect(response.into_body()))
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&answer).into_owned();
        let code = match serde_json::from_str::<Value>(&text) {
            Ok(v) => v
                .get("__type")
                .and_then(Value::as_str)
                .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
                .unwrap_or_default(),
            Err(_) => text
                .split_once("<Code>")
                .and_then(|(_, rest)| rest.split_once("</Code>"))
                .map(|(code, _)| code.to_owned())
                .unwrap_or_default(),
        };
        assert_eq!(
            (status, code.as_str()),
            expect,
            "{target:?} {method} {uri} {body}: {text}"
        );
    }

    #[test]
    fn the_caller_is_the_signing_access_key() {
        let with = |authorization: Option<&str>| {
            let mut headers = hyper::HeaderMap::new();
            if let Some(a) = authorization {
                headers.insert(
                    hyper::header::AUTHORIZATION,
                    HeaderValue::from_str(a).expect("header"),
                );
            }
            caller(&headers)
        };
        assert_eq!(
            with(Some("AWS4-HMAC-SHA256 Credential=tally-dev-realtime/20261206/us-east-1/dynamodb/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc")),
            "tally-dev-realtime"
        );
        assert_eq!(with(None), "unknown");
        assert_eq!(with(Some("Basic dXNlcjpwdw==")), "malformed");
        assert_eq!(with(Some("AWS4-HMAC-SHA256 Credential=/2026")), "malformed");
        assert_eq!(
            with(Some("AWS4-HMAC-SHA256 Credential=a\"b/2026")),
            "malformed"
        );
        let long = format!("AWS4-HMAC-SHA256 Credential={}/2026", "k".repeat(129));
        assert_eq!(with(Some(&long)), "malformed");
    }

    #[test]
    fn hostile_and_malformed_requests_get_aws_error_shapes() {
        let k = Some("Kinesis_20131202.PutRecord");
        check(k, "POST", "/", "not json", (400, "SerializationException"));
        check(k, "POST", "/", "[1,2]", (400, "SerializationException"));
        check(k, "POST", "/", "{}", (400, "InvalidArgumentException"));
        check(
            k,
            "POST",
            "/",
            r#"{"StreamName": 7}"#,
            (400, "SerializationException"),
        );
        check(
            k,
            "POST",
            "/",
            r#"{"StreamName": "s", "PartitionKey": "k", "Data": "***"}"#,
            (400, "SerializationException"),
        );
        check(
            k,
            "POST",
            "/",
            r#"{"StreamName": "s", "PartitionKey": "k"}"#,
            (400, "ValidationException"),
        );
        check(
            k,
            "POST",
            "/",
            r#"{"StreamName": "s", "PartitionKey": "k", "Data": "eA==", "ExplicitHashKey": "-1"}"#,
            (400, "InvalidArgumentException"),
        );
        check(
            k,
            "POST",
            "/",
            r#"{"StreamName": "s", "PartitionKey": "k", "Data": "eA=="}"#,
            (200, ""),
        );
        check(
            Some("Kinesis_20131202.MergeShards"),
            "POST",
            "/",
            "{}",
            (400, "UnknownOperationException"),
        );
        check(
            Some("Kinesis_20131202.GetRecords"),
            "POST",
            "/",
            r#"{"ShardIterator": "dGFsbHktaXR8c3wwfDB8MA=="}"#,
            (400, "ExpiredIteratorException"),
        );
        check(
            Some("Kinesis_20131202.GetRecords"),
            "POST",
            "/",
            r#"{"ShardIterator": "x", "Limit": 0}"#,
            (400, "ValidationException"),
        );
        check(
            Some("Kinesis_20131202.CreateStream"),
            "POST",
            "/",
            r#"{"StreamName": "bad name!", "ShardCount": 1}"#,
            (400, "ValidationException"),
        );
        check(
            Some("Kinesis_20131202.CreateStream"),
            "POST",
            "/",
            r#"{"StreamName": "big", "ShardCount": 100000}"#,
            (400, "InvalidArgumentException"),
        );
        let d = Some("DynamoDB_20120810.PutItem");
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": {"S": "a"}}}"#,
            (200, ""),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": {"S": "a", "N": "1"}}}"#,
            (400, "ValidationException"),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": "a"}}"#,
            (400, "SerializationException"),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": {"S": "a"}, "n": {"N": "1e999"}}}"#,
            (400, "ValidationException"),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": {"S": ""}}}"#,
            (400, "ValidationException"),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": {"S": "a"}, "s": {"SS": []}}}"#,
            (400, "ValidationException"),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "tbl", "Item": {"pk": {"S": "a"}, "s": {"SS": ["x", "x"]}}}"#,
            (400, "ValidationException"),
        );
        check(
            d,
            "POST",
            "/",
            r#"{"TableName": "nope", "Item": {"pk": {"S": "a"}}}"#,
            (400, "ResourceNotFoundException"),
        );
        check(
            Some("DynamoDB_20120810.Scan"),
            "POST",
            "/",
            r#"{"TableName": "tbl", "Limit": 0}"#,
            (400, "ValidationException"),
        );
        check(
            Some("DynamoDB_20120810.CreateBackup"),
            "POST",
            "/",
            "{}",
            (400, "UnknownOperationException"),
        );
        check(
            Some("AmazonSQS.GetQueueUrl"),
            "POST",
            "/",
            r#"{"QueueName": "nope"}"#,
            (400, "QueueDoesNotExist"),
        );
        check(
            Some("AmazonSQS.CreateQueue"),
            "POST",
            "/",
            r#"{"QueueName": "q.fifo"}"#,
            (400, "InvalidParameterValueException"),
        );
        check(
            Some("AmazonSQS.CreateQueue"),
            "POST",
            "/",
            r#"{"QueueName": "q", "Attributes": {"VisibilityTimeout": "-1"}}"#,
            (400, "InvalidAttributeValue"),
        );
        check(
            Some("AmazonSQS.CreateQueue"),
            "POST",
            "/",
            r#"{"QueueName": "q", "Attributes": {"Bogus": "1"}}"#,
            (400, "InvalidAttributeName"),
        );
        check(
            Some("AmazonSQS.AddPermission"),
            "POST",
            "/",
            "{}",
            (400, "UnsupportedOperation"),
        );
        check(
            Some("Lambda_20150331.Invoke"),
            "POST",
            "/",
            "{}",
            (400, "UnknownOperationException"),
        );
        check(None, "GET", "/nope/key", "", (404, "NoSuchBucket"));
        check(None, "PUT", "/UPPER", "", (400, "InvalidBucketName"));
        check(None, "GET", "/b?versioning", "", (501, "NotImplemented"));
        check(None, "GET", "/b/%zz", "", (400, "InvalidURI"));
        check(None, "PATCH", "/b/k", "", (501, "NotImplemented"));
        check(None, "GET", "/", "", (200, ""));
    }
}
