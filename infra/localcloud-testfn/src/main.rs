//! A tiny Lambda function for the local cloud's own tests (not deployed anywhere). It runs on the real
//! `lambda_runtime`, so the tests exercise the Runtime API exactly as the project's functions use it.
//!
//! Direct invocations carry `{"action": ...}`: `echo` (payload, context and environment back), `sleep`
//! (`ms`), `crash` (exit mid-invocation), `error` (a function error), `alloc` (`mb` of memory, touched),
//! `print` (each of `lines` on stdout, as the function's log lines).
//! Kinesis and SQS events are answered per record: data `error` fails the whole invocation, `crash` exits,
//! `sleep:<ms>` sleeps, `fail...` is reported in `batchItemFailures`, `malformed` answers a malformed
//! response; every batch is appended as one JSON line to `$TESTFN_LOG`. Tumbling-window events count records
//! in the state. A scheduled event (`source` `aws.events`), or a payload with `"log": true`, is appended as
//! `{"pid", "event"}` to `$TESTFN_LOG`; with `TESTFN_SCHEDULED=error` a scheduled event then fails the
//! invocation. `TESTFN_INIT=fail` posts an init error, `TESTFN_INIT=exit` exits before asking for work.

use std::io::{Read, Write};
use std::time::Duration;

use base64::Engine;
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    match std::env::var("TESTFN_INIT").as_deref() {
        Ok("fail") => {
            post_init_error();
            std::process::exit(1);
        }
        Ok("exit") => std::process::exit(2),
        _ => {}
    }
    lambda_runtime::run(service_fn(handler)).await
}

fn post_init_error() {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = r#"{"errorType":"Testfn.InitFailed","errorMessage":"configured to fail at init"}"#;
    if let Ok(mut stream) = std::net::TcpStream::connect(&api) {
        let request = format!(
            "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nLambda-Runtime-Function-Error-Type: Testfn.InitFailed\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(request.as_bytes());
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
    }
}

async fn handler(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        return batch(&payload, records).await;
    }
    let scheduled = payload.get("source").and_then(Value::as_str) == Some("aws.events");
    if scheduled || payload.get("log") == Some(&Value::Bool(true)) {
        append_line(&json!({"pid": std::process::id(), "event": payload}));
        if scheduled && std::env::var("TESTFN_SCHEDULED").as_deref() == Ok("error") {
            return Err("TESTFN_SCHEDULED=error fails scheduled events".into());
        }
    }
    if payload
        .get("requestContext")
        .and_then(|c| c.get("http"))
        .is_some()
    {
        return Ok(json!({
            "statusCode": 201,
            "headers": {"content-type": "application/json", "x-testfn": "yes"},
            "cookies": ["a=1", "b=2"],
            "body": json!({"path": payload.get("rawPath"), "query": payload.get("rawQueryString"),
                            "method": payload["requestContext"]["http"]["method"],
                            "body": payload.get("body"), "b64": payload.get("isBase64Encoded"),
                            "headers": payload.get("headers"), "cookies": payload.get("cookies")}).to_string(),
        }));
    }
    match payload
        .get("action")
        .and_then(Value::as_str)
        .unwrap_or("echo")
    {
        "sleep" => {
            let ms = payload.get("ms").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        "crash" => std::process::exit(3),
        "print" => {
            let mut out = std::io::stdout().lock();
            for line in payload["lines"].as_array().into_iter().flatten() {
                writeln!(out, "{}", line.as_str().unwrap_or_default())?;
            }
            out.flush()?;
        }
        "error" => return Err("asked to fail".into()),
        "nice" => {
            // The process's nice value: field 19 of /proc/self/stat, after the command name's parentheses.
            let stat = std::fs::read_to_string("/proc/self/stat")?;
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let nice: i64 = after
                .split_whitespace()
                .nth(16)
                .and_then(|v| v.parse().ok())
                .ok_or("cannot read the nice value from /proc/self/stat")?;
            return Ok(json!({ "nice": nice }));
        }
        "alloc" => {
            let mb = payload.get("mb").and_then(Value::as_u64).unwrap_or(0) as usize;
            let mut block = Vec::<u8>::new();
            if block.try_reserve_exact(mb * 1024 * 1024).is_err() {
                return Err(format!("cannot allocate {mb} MB").into());
            }
            block.resize(mb * 1024 * 1024, 1);
            return Ok(
                json!({"allocated_mb": mb, "sum": block.iter().step_by(4096).map(|b| u64::from(*b)).sum::<u64>()}),
            );
        }
        _ => {}
    }
    let env: serde_json::Map<String, Value> = std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_")
                || k.starts_with("TALLY_")
                || k.starts_with("TESTFN_")
                || k == "RUST_LOG"
                || k == "TZ"
                || k == "_HANDLER"
        })
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Ok(json!({
        "payload": payload,
        "request_id": context.request_id,
        "deadline": context.deadline,
        "arn": context.invoked_function_arn,
        "trace": context.xray_trace_id,
        "pid": std::process::id(),
        "env": env,
    }))
}

async fn batch(payload: &Value, records: &[Value]) -> Result<Value, Error> {
    let mut seen = Vec::new();
    let mut failures = Vec::new();
    let mut malformed = false;
    let mut error = false;
    for record in records {
        let (id, data) = if let Some(kinesis) = record.get("kinesis") {
            let data = kinesis
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let data = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap_or_default();
            (
                kinesis
                    .get("sequenceNumber")
                    .cloned()
                    .unwrap_or(Value::Null),
                String::from_utf8_lossy(&data).into_owned(),
            )
        } else {
            let body = record
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            (
                record.get("messageId").cloned().unwrap_or(Value::Null),
                body,
            )
        };
        seen.push(json!({"id": id, "data": data, "key": record.get("kinesis").and_then(|k| k.get("partitionKey"))}));
        if data == "crash" {
            log_batch(payload, &seen, "crash");
            std::process::exit(4);
        }
        if let Some(ms) = data.strip_prefix("sleep:").and_then(|ms| ms.parse().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        error |= data == "error";
        malformed |= data == "malformed";
        if data.starts_with("fail") {
            failures.push(json!({"itemIdentifier": id}));
        }
    }
    let outcome = if error {
        "error"
    } else if malformed {
        "malformed"
    } else {
        "ok"
    };
    log_batch(payload, &seen, outcome);
    if error {
        return Err("a record asked to fail the batch".into());
    }
    if malformed {
        return Ok(json!({"batchItemFailures": [{"itemIdentifier": ""}]}));
    }
    let mut response = json!({"batchItemFailures": failures});
    if payload.get("window").is_some() {
        let before = payload
            .get("state")
            .and_then(|s| s.get("count"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        response["state"] = json!({"count": before + records.len() as u64});
    }
    Ok(response)
}

fn log_batch(payload: &Value, seen: &[Value], outcome: &str) {
    let mut line = json!({"pid": std::process::id(), "records": seen, "outcome": outcome});
    for key in [
        "window",
        "state",
        "isFinalInvokeForWindow",
        "isWindowTerminatedEarly",
        "shardId",
        "eventSourceARN",
    ] {
        if let Some(value) = payload.get(key) {
            line[key] = value.clone();
        }
    }
    append_line(&line);
}

/// Appends one JSON line to `$TESTFN_LOG`, if set.
fn append_line(line: &Value) {
    let Ok(path) = std::env::var("TESTFN_LOG") else {
        return;
    };
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        // One write per line: instances of a parallelized mapping append to the same file, and `writeln!` may
        // write the line and its newline separately, interleaving two lines into one unreadable line.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}
