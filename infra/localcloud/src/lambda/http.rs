//! A small HTTP/1.1 serving loop on hyper, shared by the Runtime API and the Function URL listeners; every
//! request passes the loopback guard ([`tally_localcloud_aws::guard`]) first.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// Serves `handler` on `listener` until `shutdown` turns true. Each connection gets its own task.
pub(crate) async fn serve<H, Fut>(
    listener: TcpListener,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = HttpResponse> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped(&mut shutdown) => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    if let Some(why) = tally_localcloud_aws::guard::refusal(request.headers()) {
                        tracing::warn!(message = "local listener refused a request", %why);
                        return Ok::<_, Infallible>(refused(&why));
                    }
                    Ok::<_, Infallible>(handler(request).await)
                }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = stopped(&mut stop) => {}
            }
        });
    }
}

/// The loopback guard's 403 (see [`tally_localcloud_aws::guard`]), shaped as a Function URL's `{"Message": ...}`.
fn refused(why: &str) -> HttpResponse {
    let body = serde_json::json!({ "Message": why }).to_string();
    let mut response = respond(StatusCode::FORBIDDEN, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Resolves once `shutdown` is true (or its sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Reads a whole request body, refusing more than `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, String> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) => Err(error.to_string()),
    }
}

pub(crate) fn respond(status: StatusCode, body: impl Into<Bytes>) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

/// A JSON error document in the Runtime API's shape: `{"errorType": ..., "errorMessage": ...}`.
pub(crate) fn json_error(status: StatusCode, error_type: &str, message: &str) -> HttpResponse {
    let body = serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string();
    let mut response = respond(status, body);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
