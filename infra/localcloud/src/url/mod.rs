//! Function URLs: a local HTTP listener per `AWS::Lambda::Url` that turns each request into the payload
//! format 2.0 event, invokes the function, and turns its answer back into an HTTP response, as Lambda's
//! Function URL front end does (CORS preflights answered without invoking, as in AWS).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode};
use serde_json::{json, Map, Value};
use tally_domain::urlencoded::decode_lossy;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::lambda::http::{read_body, respond, serve, HttpResponse};
use crate::lambda::{Function, InvokeFailure, MAX_PAYLOAD_BYTES};

/// Serves `function` at `listener` until `shutdown`.
pub async fn serve_url(
    listener: TcpListener,
    function: Function,
    cors: Option<Value>,
    shutdown: watch::Receiver<bool>,
) {
    let addr = listener.local_addr().ok();
    serve(
        listener,
        move |request| {
            let function = function.clone();
            let cors = cors.clone();
            async move { handle(&function, cors.as_ref(), addr, request).await }
        },
        shutdown,
    )
    .await;
}

async fn handle(
    function: &Function,
    cors: Option<&Value>,
    addr: Option<SocketAddr>,
    request: Request<Incoming>,
) -> HttpResponse {
    let (parts, body) = request.into_parts();
    let origin = parts
        .headers
        .get("origin")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let (Some(cors), Some(origin), &Method::OPTIONS) = (cors, &origin, &parts.method) {
        if parts.headers.contains_key("access-control-request-method") {
            return preflight(cors, origin);
        }
    }
    let body = match read_body(body, MAX_PAYLOAD_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
            )
        }
    };
    let host = addr
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".to_owned());
    let event = request_event(
        &parts.method,
        &parts.uri,
        &parts.headers,
        &body,
        &host,
        now_ms(),
    );
    let mut response = match function.invoke(event.to_string()).await {
        Ok(answer) => http_response(&answer),
        Err(InvokeFailure::Throttled) => message(StatusCode::TOO_MANY_REQUESTS, "Rate Exceeded."),
        Err(InvokeFailure::PayloadTooLarge) => {
            message(StatusCode::PAYLOAD_TOO_LARGE, "Request payload too large")
        }
        Err(failure) => {
            tracing::warn!(message = "function url invocation failed", function = %function.spec().name, %failure);
            message(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
    };
    if let (Some(cors), Some(origin)) = (cors, origin) {
        if let Some(allowed) = allowed_origin(cors, &origin) {
            insert(
                response.headers_mut(),
                "access-control-allow-origin",
                &allowed,
            );
            if cors.get("AllowCredentials").and_then(Value::as_bool) == Some(true) {
                insert(
                    response.headers_mut(),
                    "access-control-allow-credentials",
                    "true",
                );
            }
            if let Some(expose) = list(cors, "ExposeHeaders") {
                insert(
                    response.headers_mut(),
                    "access-control-expose-headers",
                    &expose,
                );
            }
        }
    }
    response
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn message(status: StatusCode, text: &str) -> HttpResponse {
    let mut response = respond(status, json!({ "Message": text }).to_string());
    insert(response.headers_mut(), "content-type", "application/json");
    response
}

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(name, value);
    }
}

fn list(cors: &Value, key: &str) -> Option<String> {
    let items: Vec<&str> = cors
        .get(key)?
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    (!items.is_empty()).then(|| items.join(","))
}

fn allowed_origin(cors: &Value, origin: &str) -> Option<String> {
    let origins = cors.get("AllowOrigins")?.as_array()?;
    if origins.iter().any(|o| o == "*") {
        return Some("*".to_owned());
    }
    origins
        .iter()
        .filter_map(Value::as_str)
        .find(|o| o.eq_ignore_ascii_case(origin))
        .map(str::to_owned)
}

fn preflight(cors: &Value, origin: &str) -> HttpResponse {
    let mut response = respond(StatusCode::OK, Bytes::new());
    if let Some(allowed) = allowed_origin(cors, origin) {
        let headers = response.headers_mut();
        insert(headers, "access-control-allow-origin", &allowed);
        if let Some(methods) = list(cors, "AllowMethods") {
            insert(headers, "access-control-allow-methods", &methods);
        }
        if let Some(allow) = list(cors, "AllowHeaders") {
            insert(headers, "access-control-allow-headers", &allow);
        }
        if let Some(age) = cors.get("MaxAge").and_then(Value::as_i64) {
            insert(headers, "access-control-max-age", &age.to_string());
        }
    }
    response
}

/// Whether a body of this content type is passed as text (else base64, `isBase64Encoded: true`).
fn is_text(content_type: Option<&str>) -> bool {
    let Some(content_type) = content_type else {
        return true;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/x-www-form-urlencoded"
                | "application/x-amz-json-1.0"
                | "application/x-amz-json-1.1"
        )
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
}

/// The Function URL event (payload format 2.0) of one request.
pub fn request_event(
    method: &Method,
    uri: &hyper::Uri,
    headers: &HeaderMap,
    body: &[u8],
    host: &str,
    time_ms: i64,
) -> Value {
    let mut joined: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(
                value
                    .split(';')
                    .map(|c| c.trim().to_owned())
                    .filter(|c| !c.is_empty()),
            );
            continue;
        }
        joined
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value);
    }
    let header_map: Map<String, Value> = joined
        .into_iter()
        .map(|(k, v)| (k, Value::String(v.join(","))))
        .collect();
    let raw_query = uri.query().unwrap_or_default().to_owned();
    let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        // Lenient, as Lambda relays them: a bad escape stays as it was (the function judges the raw query).
        query
            .entry(decode_lossy(key))
            .or_default()
            .push(decode_lossy(value));
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok());
    let (body_value, base64) = if body.is_empty() {
        (Value::Null, false)
    } else {
        match std::str::from_utf8(body) {
            Ok(text) if is_text(content_type) => (Value::String(text.to_owned()), false),
            _ => (Value::String(STANDARD.encode(body)), true),
        }
    };
    let request_id = format!("{:016x}-{:08x}", time_ms, body.len());
    let user_agent = headers
        .get("user-agent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": uri.path(),
        "rawQueryString": raw_query,
        "headers": header_map,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "local",
            "domainName": host,
            "domainPrefix": "local",
            "http": {
                "method": method.as_str(),
                "path": uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": user_agent,
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": clf_time(time_ms),
            "timeEpoch": time_ms,
        },
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(
            query
                .into_iter()
                .map(|(k, v)| (k, Value::String(v.join(","))))
                .collect(),
        );
    }
    if !body_value.is_null() {
        event["body"] = body_value;
    }
    event
}

/// `12/Mar/2020:19:03:58 +0000`
fn clf_time(ms: i64) -> String {
    let iso = crate::esm::event::iso_ms(ms);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = iso[5..7].parse::<usize>().unwrap_or(1).clamp(1, 12);
    format!(
        "{}/{}/{}:{} +0000",
        &iso[8..10],
        MONTHS[month - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

/// The HTTP response for a function's answer: a `{"statusCode": ...}` object is a structured response
/// (headers, multi-value headers, cookies, base64 bodies); anything else is a 200 `application/json` body,
/// as Lambda's Function URLs do.
pub fn http_response(answer: &[u8]) -> HttpResponse {
    let parsed: Option<Value> = serde_json::from_slice(answer).ok();
    let Some(Value::Object(map)) = parsed.as_ref().filter(|v| v.get("statusCode").is_some()) else {
        let mut response = respond(StatusCode::OK, Bytes::copy_from_slice(answer));
        insert(response.headers_mut(), "content-type", "application/json");
        return response;
    };
    let status = map
        .get("statusCode")
        .and_then(Value::as_u64)
        .filter(|code| (100..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code as u16).ok())
        .unwrap_or(StatusCode::BAD_GATEWAY);
    let body = match map.get("body") {
        Some(Value::String(text))
            if map.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) =>
        {
            match STANDARD.decode(text) {
                Ok(bytes) => Bytes::from(bytes),
                Err(_) => return message(StatusCode::BAD_GATEWAY, "Internal Server Error"),
            }
        }
        Some(Value::String(text)) => Bytes::from(text.clone()),
        Some(Value::Null) | None => Bytes::new(),
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut response = respond(status, body);
    let headers = response.headers_mut();
    if let Some(Value::Object(multi)) = map.get("multiValueHeaders") {
        for (name, values) in multi {
            for value in values
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(value),
                ) {
                    headers.append(name, value);
                }
            }
        }
    }
    if let Some(Value::Object(single)) = map.get("headers") {
        for (name, value) in single {
            let text = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            insert(headers, name, &text);
        }
    }
    for cookie in map
        .get("cookies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            headers.append("set-cookie", value);
        }
    }
    if !headers.contains_key("content-type") {
        insert(headers, "content-type", "application/json");
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn text_or_base64_bodies() {
        let check = |content_type: Option<&str>, expect: bool| {
            assert_eq!(is_text(content_type), expect, "{content_type:?}")
        };
        check(None, true);
        check(Some("text/plain; charset=utf-8"), true);
        check(Some("application/json"), true);
        check(Some("application/vnd.api+json"), true);
        check(Some("image/gif"), false);
        check(Some("application/octet-stream"), false);
    }

    #[test]
    fn events_of_requests() {
        let uri: hyper::Uri = "/p/x?a=1&a=2&b=%20c&flag".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.append("x-multi", HeaderValue::from_static("1"));
        headers.append("x-multi", HeaderValue::from_static("2"));
        headers.append("cookie", HeaderValue::from_static("s=1; t=2"));
        headers.append("content-type", HeaderValue::from_static("image/gif"));
        let event = request_event(
            &Method::POST,
            &uri,
            &headers,
            b"GIF\xff",
            "127.0.0.1:9",
            1_583_348_638_390,
        );
        assert_eq!(event["rawPath"], "/p/x");
        assert_eq!(event["rawQueryString"], "a=1&a=2&b=%20c&flag");
        assert_eq!(
            event["queryStringParameters"],
            json!({"a": "1,2", "b": " c", "flag": ""})
        );
        assert_eq!(event["headers"]["x-multi"], "1,2");
        assert!(event["headers"].get("cookie").is_none());
        assert_eq!(event["cookies"], json!(["s=1", "t=2"]));
        assert_eq!(event["isBase64Encoded"], true);
        assert_eq!(event["body"], STANDARD.encode(b"GIF\xff"));
        assert_eq!(event["requestContext"]["http"]["method"], "POST");
        assert_eq!(
            event["requestContext"]["time"],
            "04/Mar/2020:19:03:58 +0000"
        );
        let parsed: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
            serde_json::from_value(event).expect("lambda_function_urls request");
        assert_eq!(parsed.raw_path.as_deref(), Some("/p/x"));
        let bare = request_event(
            &Method::GET,
            &"/".parse().unwrap(),
            &HeaderMap::new(),
            b"",
            "h",
            0,
        );
        assert!(bare.get("body").is_none() && bare.get("queryStringParameters").is_none());
        let _: aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest =
            serde_json::from_value(bare).expect("bare request");
    }

    #[test]
    fn responses_of_answers() {
        let check = |answer: &str, status: u16, body: &str| {
            let response = http_response(answer.as_bytes());
            assert_eq!(response.status().as_u16(), status, "{answer}");
            let got = futures_body(response);
            assert_eq!(got, body, "{answer}");
        };
        check(r#"{"statusCode":201,"body":"made"}"#, 201, "made");
        check(
            r#"{"statusCode":200,"body":"aGk=","isBase64Encoded":true}"#,
            200,
            "hi",
        );
        check(
            r#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#,
            502,
            r#"{"Message":"Internal Server Error"}"#,
        );
        check(r#"{"statusCode":999}"#, 502, "");
        check(r#"{"statusCode":"x"}"#, 502, "");
        check(r#"{"ok":true}"#, 200, r#"{"ok":true}"#);
        check("not json", 200, "not json");
        check("", 200, "");
        let response = http_response(br#"{"statusCode":200,"headers":{"x-a":"1"},"multiValueHeaders":{"x-b":["1","2"]},"cookies":["c=1","d=2"]}"#);
        assert_eq!(response.headers()["x-a"], "1");
        assert_eq!(response.headers().get_all("x-b").iter().count(), 2);
        assert_eq!(response.headers().get_all("set-cookie").iter().count(), 2);
    }

    fn futures_body(response: HttpResponse) -> String {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(response.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
