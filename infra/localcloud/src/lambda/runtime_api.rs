//! The Lambda Runtime API of one instance (`/2018-06-01/runtime/...`), as `lambda_runtime` speaks it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode};
use md5::{Digest, Md5};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::http::{json_error, read_body, respond, HttpResponse};
use super::{lock, Function, InvokeFailure, Reply, MAX_PAYLOAD_BYTES};

const PREFIX: &str = "/2018-06-01/runtime/";

/// What the pool learns when an instance's process exits.
pub(crate) enum Exit {
    /// It held an invocation, now failed as crashed.
    HeldInvocation,
    /// It never asked for work; the init error it posted, if any.
    NeverReady(Option<String>),
    /// It was idle (or its invocation had already ended, e.g. by a timeout).
    Idle,
}

pub(crate) struct InstanceState {
    function: Function,
    id: u64,
    kill: Arc<Notify>,
    st: Mutex<St>,
}

struct St {
    started: Instant,
    ready: bool,
    /// Answered its invocation and has not asked for the next one yet.
    returning: bool,
    dead: bool,
    current: Option<Current>,
    init_error: Option<String>,
}

struct Current {
    request_id: String,
    reply: Reply,
    timer: JoinHandle<()>,
    /// When `/next` handed it out: the start of its billed duration.
    handed_out: Instant,
}

impl InstanceState {
    pub(crate) fn new(function: Function, id: u64, kill: Arc<Notify>) -> InstanceState {
        InstanceState {
            function,
            id,
            kill,
            st: Mutex::new(St {
                started: Instant::now(),
                ready: false,
                returning: false,
                dead: false,
                current: None,
                init_error: None,
            }),
        }
    }

    pub(crate) fn set_started(&self, at: Instant) {
        lock(&self.st).started = at;
    }

    pub(crate) fn exited(&self, status: &str) -> Exit {
        let mut st = lock(&self.st);
        st.dead = true;
        if std::mem::take(&mut st.returning) {
            lock(&self.function.inner.pool).returning -= 1;
        }
        if let Some(current) = st.current.take() {
            current.timer.abort();
            self.meter_end(&current, true);
            let _ = current.reply.send(Err(InvokeFailure::Crashed {
                status: status.to_owned(),
            }));
            return Exit::HeldInvocation;
        }
        if !st.ready {
            lock(&self.function.inner.pool).starting -= 1;
            return Exit::NeverReady(st.init_error.take());
        }
        Exit::Idle
    }

    /// Ends the current invocation with `result` if `request_id` is the current one.
    fn complete(&self, request_id: &str, result: Result<Bytes, InvokeFailure>) -> bool {
        let mut st = lock(&self.st);
        match st
            .current
            .take_if(|current| current.request_id == request_id)
        {
            Some(current) => {
                current.timer.abort();
                self.meter_end(&current, result.is_err());
                if !st.dead && !matches!(result, Err(InvokeFailure::Timeout { .. })) {
                    st.returning = true;
                    lock(&self.function.inner.pool).returning += 1;
                }
                let _ = current.reply.send(result);
                true
            }
            None => false,
        }
    }

    /// Meters the end of an invocation: its billed duration from hand-out to now, and whether it failed.
    fn meter_end(&self, current: &Current, error: bool) {
        let spec = self.function.spec();
        let micros = current.handed_out.elapsed().as_micros() as u64;
        self.function
            .meter()
            .lambda_ended(&spec.name, spec.memory_mb, micros, error);
        self.function
            .inner
            .log
            .platform_end(&current.request_id, micros);
    }

    fn timed_out(&self, request_id: &str) {
        let after = self.function.inner.spec.timeout;
        if self.complete(request_id, Err(InvokeFailure::Timeout { after })) {
            lock(&self.function.inner.stats).timeouts += 1;
            self.function.inner.log.line(&format!(
                "instance {}: request {request_id} timed out after {:.2} s; killing the instance",
                self.id,
                after.as_secs_f64()
            ));
            self.kill.notify_one();
        }
    }
}

pub(crate) async fn handle(state: Arc<InstanceState>, request: Request<Incoming>) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let Some(route) = path.strip_prefix(PREFIX) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "InvalidRoute",
            &format!("no runtime API route {path}"),
        );
    };
    match (method, route.split('/').collect::<Vec<_>>().as_slice()) {
        (Method::GET, ["invocation", "next"]) => next(state).await,
        (Method::POST, ["invocation", id, "response"]) => {
            let id = (*id).to_owned();
            response(state, &id, request.into_body()).await
        }
        (Method::POST, ["invocation", id, "error"]) => {
            let id = (*id).to_owned();
            let error_type = header(&request, "lambda-runtime-function-error-type");
            error(state, &id, error_type, request.into_body()).await
        }
        (Method::POST, ["init", "error"]) => {
            let error_type = header(&request, "lambda-runtime-function-error-type");
            init_error(state, error_type, request.into_body()).await
        }
        (method, _) => json_error(
            StatusCode::NOT_FOUND,
            "InvalidRoute",
            &format!("no runtime API route {method} {path}; the local runtime API serves invocation/next, invocation/{{id}}/response, invocation/{{id}}/error and init/error"),
        ),
    }
}

fn header(request: &Request<Incoming>, name: &str) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Keeps the pool's idle count right even when the long poll is abandoned (connection closed).
struct IdleGuard<'a>(&'a Function);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.inner.pool).idle -= 1;
    }
}

async fn next(state: Arc<InstanceState>) -> HttpResponse {
    let function = &state.function;
    let inner = &function.inner;
    {
        let mut st = lock(&state.st);
        if let Some(current) = st.current.take() {
            current.timer.abort();
            state.meter_end(&current, true);
            let _ = current.reply.send(Err(InvokeFailure::Function {
                error_type: "Runtime.InvalidResponse".to_owned(),
                message: "the runtime asked for the next invocation without answering this one"
                    .to_owned(),
            }));
        }
        if std::mem::take(&mut st.returning) {
            lock(&inner.pool).returning -= 1;
        }
        if !st.ready {
            st.ready = true;
            let cold = st.started.elapsed().as_micros() as u64;
            lock(&inner.stats).cold_starts_us.push(cold);
            lock(&inner.pool).starting -= 1;
            inner.log.line(&format!(
                "instance {} ready: process start to first /next in {:.1} ms",
                state.id,
                cold as f64 / 1000.0
            ));
        }
    }
    lock(&inner.pool).idle += 1;
    let guard = IdleGuard(function);
    let mut shutdown = inner.shutdown.subscribe();
    // A long poll: wait as long as it takes. Never answer 204 (lambda_runtime only tolerates it in debug builds).
    let pending = loop {
        let notified = inner.work.notified();
        if let Some(pending) = lock(&inner.queue).pop_front() {
            break pending;
        }
        tokio::select! {
            _ = notified => {}
            _ = super::http::stopped(&mut shutdown) => {
                std::future::pending::<()>().await;
            }
        }
    };
    drop(guard);

    let request_id = request_id();
    let timeout = inner.spec.timeout;
    let deadline_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + timeout;
    {
        let mut st = lock(&state.st);
        if st.dead {
            // The process died while we waited: give the work back.
            lock(&inner.queue).push_front(pending);
            inner.work.notify_one();
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "instance is gone",
            );
        }
        let timer_state = state.clone();
        let timer_id = request_id.clone();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            timer_state.timed_out(&timer_id);
        });
        st.current = Some(Current {
            request_id: request_id.clone(),
            reply: pending.reply,
            timer,
            handed_out: Instant::now(),
        });
        inner
            .meter
            .lambda_handed_out(&inner.spec.name, inner.spec.memory_mb);
        inner.log.platform_start(&request_id);
    }
    let mut response = respond(StatusCode::OK, pending.payload);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let values = [
        ("lambda-runtime-aws-request-id", request_id.clone()),
        (
            "lambda-runtime-deadline-ms",
            deadline_ms.as_millis().to_string(),
        ),
        ("lambda-runtime-invoked-function-arn", inner.spec.arn()),
        ("lambda-runtime-trace-id", trace_id(&request_id)),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

async fn response(state: Arc<InstanceState>, request_id: &str, body: Incoming) -> HttpResponse {
    match read_body(body, MAX_PAYLOAD_BYTES).await {
        Ok(body) => {
            if state.complete(request_id, Ok(body)) {
                respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
            } else {
                invalid_request_id(request_id)
            }
        }
        Err(_) => {
            state.complete(request_id, Err(InvokeFailure::ResponseTooLarge));
            json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                &format!("response payload larger than {MAX_PAYLOAD_BYTES} bytes"),
            )
        }
    }
}

async fn error(
    state: Arc<InstanceState>,
    request_id: &str,
    error_type: Option<String>,
    body: Incoming,
) -> HttpResponse {
    let body = read_body(body, MAX_PAYLOAD_BYTES).await.unwrap_or_default();
    let (error_type, message) = diagnostic(&body, error_type);
    if state.complete(
        request_id,
        Err(InvokeFailure::Function {
            error_type,
            message,
        }),
    ) {
        respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
    } else {
        invalid_request_id(request_id)
    }
}

async fn init_error(
    state: Arc<InstanceState>,
    error_type: Option<String>,
    body: Incoming,
) -> HttpResponse {
    let body = read_body(body, MAX_PAYLOAD_BYTES).await.unwrap_or_default();
    let (error_type, message) = diagnostic(&body, error_type);
    state.function.inner.log.line(&format!(
        "instance {}: init error {error_type}: {message}",
        state.id
    ));
    lock(&state.st).init_error = Some(format!("{error_type}: {message}"));
    // Lambda stops an environment whose init failed.
    state.kill.notify_one();
    respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#)
}

fn invalid_request_id(request_id: &str) -> HttpResponse {
    json_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestID",
        &format!("request {request_id} is not the invocation this instance holds (already answered, timed out, or unknown)"),
    )
}

/// `errorType` and `errorMessage` of an error document; lenient, since a crashing runtime may send anything.
pub(crate) fn diagnostic(body: &[u8], header_type: Option<String>) -> (String, String) {
    let doc: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        doc.as_ref()
            .and_then(|d| d.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let error_type = field("errorType")
        .or(header_type)
        .unwrap_or_else(|| "Unhandled".to_owned());
    let message = field("errorMessage")
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(1024).collect());
    (error_type, message)
}

/// A fresh request id in the UUID shape Lambda uses.
fn request_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let digest = Md5::new()
        .chain_update(n.to_le_bytes())
        .chain_update(nanos.to_le_bytes())
        .chain_update(std::process::id().to_le_bytes())
        .finalize();
    let h = hex::encode(digest);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// An X-Ray trace header derived from the request id (`Root=1-<time>-<id>;Sampled=0`).
fn trace_id(request_id: &str) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let hex: String = request_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(24)
        .collect();
    format!(
        "Root=1-{secs:08x}-{hex};Parent={};Sampled=0",
        &hex[..16.min(hex.len())]
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn diagnostics() {
        let check = |body: &str, header: Option<&str>, expect: (&str, &str)| {
            let got = diagnostic(body.as_bytes(), header.map(str::to_owned));
            assert_eq!((got.0.as_str(), got.1.as_str()), expect, "{body}");
        };
        check(r#"{"errorType":"E","errorMessage":"m"}"#, None, ("E", "m"));
        check(
            r#"{"errorMessage":"m"}"#,
            Some("unhandled"),
            ("unhandled", "m"),
        );
        check("not json", None, ("Unhandled", "not json"));
        check("", None, ("Unhandled", ""));
        check(
            r#"{"errorType":7,"errorMessage":null}"#,
            None,
            ("Unhandled", r#"{"errorType":7,"errorMessage":null}"#),
        );
        check("\u{0}\u{1}", Some("x"), ("x", "\u{0}\u{1}"));
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_unique() {
        let a = request_id();
        let b = request_id();
        assert_ne!(a, b);
        let parts: Vec<_> = a.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{a}");
        assert!(trace_id(&a).starts_with("Root=1-"));
    }
}
