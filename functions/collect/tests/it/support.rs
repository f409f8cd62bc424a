//! Function URL events, SDK clients for loopback endpoints, and response helpers.

use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};

/// A Kinesis client for `endpoint` (a loopback URL) with test credentials; never a real AWS endpoint.
pub async fn kinesis_client(endpoint: &str) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&tally_aws_testing::sdk_config(endpoint).await)
}

/// A Lambda Function URL event (payload format 2.0), decoded by `lambda_http` exactly as in production.
pub fn url_request(
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Request {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut header_map = serde_json::Map::new();
    header_map.insert("host".into(), json!("abc.lambda-url.us-east-1.on.aws"));
    for (name, value) in headers {
        header_map.insert((*name).into(), json!(value));
    }
    let (body, base64) = match body {
        None => (Value::Null, false),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => (json!(text), false),
            Err(_) => (json!(base64(bytes)), true),
        },
    };
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "domainPrefix": "abc",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "test"},
            "requestId": "req-1",
            "routeKey": "$default",
            "stage": "$default",
            "time": "26/Nov/2026:13:00:00 +0000",
            "timeEpoch": 1_795_698_000_000_i64
        },
        "body": body,
        "isBase64Encoded": base64
    });
    lambda_http::request::from_str(&event.to_string()).expect("function url event")
}

/// A fixture file under `tests/it/fixtures/`, decoded as a Function URL event.
pub fn fixture(name: &str) -> Request {
    let path = format!("{}/tests/it/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    lambda_http::request::from_str(&text).expect("fixture is a function url event")
}

pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (with padding), as Kinesis' JSON protocol carries record data; `None` if malformed.
pub fn unbase64(text: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

pub fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

pub fn body_json(response: &Response<Body>) -> Value {
    match response.body() {
        Body::Text(text) => {
            serde_json::from_str(text).unwrap_or_else(|e| panic!("body is not json ({e}): {text}"))
        }
        other => panic!("expected a text body, got {other:?}"),
    }
}

/// Now, unix milliseconds.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(since.as_millis()).expect("ms")
}
