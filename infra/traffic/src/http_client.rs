//! The one HTTP client of the traffic tools (`cargo xtask loadtest`'s clients and probes, `dev`'s demo traffic),
//! on hyper's client connection (`hyper::client::conn::http1`), so framing, chunked bodies and header parsing are
//! hyper's, not ours. Two ways to use it:
//!
//! * [`Connection`]: one kept-alive HTTP/1.1 connection, opened on first use and again whenever the server
//!   closed it. What an ad server posting batches or a dashboard polling the API holds; the load test's clients
//!   and probes use one each, so the machine does not spend its CPU opening and closing a loopback connection
//!   per request (about 800 a second at 10,000 events/s) instead of on the pipeline it measures.
//! * [`request`]: one request over a fresh connection (`Connection: close`), for one-off calls.
//!
//! Every request is a Function URL request of its own either way, as the meter counts them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONNECTION, HOST, RETRY_AFTER};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// An HTTP answer: status, `Retry-After` seconds, body (lossy UTF-8).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub retry_after: Option<u64>,
    pub body: String,
}

/// `method path` with `headers` and `body` to `base_url` (`http://host:port`), over a fresh connection.
/// An error when nothing listens, the request cannot be written, or the answer is not HTTP.
pub async fn request(
    base_url: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let authority = authority(base_url);
    let request = build(authority, method, path, body, headers, false)?;
    let mut sender = open(authority).await?;
    exchange(authority, &mut sender, request).await
}

/// One kept-alive HTTP/1.1 connection to a server (see the module's documentation).
#[derive(Debug)]
pub struct Connection {
    authority: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `base_url` (`http://host:port`); nothing is opened before the first request.
    pub fn new(base_url: &str) -> Connection {
        Connection {
            authority: authority(base_url).to_owned(),
            sender: None,
        }
    }

    /// Like [`request`], on this connection: opened when there is none or the server closed it. A request that
    /// fails on a connection already used before is sent once more on a new one (the server may have closed it
    /// between two requests, as HTTP/1.1 allows: browsers do the same); a failure on a new connection is the
    /// caller's.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let authority = self.authority.as_str();
        let request = || build(authority, method, path, body, headers, true);
        if let Some(mut sender) = self.sender.take() {
            if sender.ready().await.is_ok() {
                if let Ok(response) = exchange(authority, &mut sender, request()?).await {
                    self.sender = Some(sender);
                    return Ok(response);
                }
            }
        }
        let mut sender = open(authority).await?;
        let response = exchange(authority, &mut sender, request()?).await?;
        self.sender = Some(sender);
        Ok(response)
    }
}

fn authority(base_url: &str) -> &str {
    base_url.trim_start_matches("http://").trim_end_matches('/')
}

fn build(
    authority: &str,
    method: &str,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    keep_alive: bool,
) -> std::io::Result<Request<Full<Bytes>>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority);
    if !keep_alive {
        builder = builder.header(CONNECTION, "close");
    }
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|error| invalid(format!("{method} {path} is not a request: {error}")))
}

/// A new connection, driven beside its requests until the server or the last sender closes it.
async fn open(authority: &str) -> std::io::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    // Title-case header names (`Content-Length`), as browsers and ad servers write them over HTTP/1.1.
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| broken(authority, error))?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn exchange(
    authority: &str,
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> std::io::Result<Response> {
    let response = sender
        .send_request(request)
        .await
        .map_err(|error| broken(authority, error))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse().ok());
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| broken(authority, error))?
        .to_bytes();
    Ok(Response {
        status,
        retry_after,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn invalid(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

fn broken(authority: &str, error: hyper::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("no HTTP answer from {authority}: {error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    /// A one-request server on loopback: answers `answer` and hands back the request it read (head and body).
    async fn server(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let handle = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.expect("accept");
            let mut stream = BufReader::new(stream);
            let (mut seen, mut length) = (String::new(), 0);
            // The head, line by line, to the empty line; then exactly the body its Content-Length announces.
            loop {
                let mut line = String::new();
                if stream.read_line(&mut line).await.expect("read") == 0 || line == "\r\n" {
                    seen.push_str(&line);
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().expect("a length");
                    }
                }
                seen.push_str(&line);
            }
            let mut body = vec![0; length];
            stream.read_exact(&mut body).await.expect("the body");
            seen.push_str(&String::from_utf8_lossy(&body));
            stream.write_all(answer.as_bytes()).await.expect("write");
            stream.shutdown().await.expect("shutdown");
            seen
        });
        (base, handle)
    }

    #[tokio::test]
    async fn a_post_sends_its_headers_and_body_and_reads_the_answer() {
        let (base, seen) = server(
            "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 5\r\nConnection: close\r\n\r\nslow!",
        )
        .await;
        let answer = request(
            &base,
            "POST",
            "/v1/events",
            "[{\"a\":1}]",
            &[("Content-Type", "application/json")],
        )
        .await
        .expect("an answer");
        assert_eq!(
            (answer.status, answer.retry_after, answer.body.as_str()),
            (503, Some(2), "slow!")
        );
        let raw = seen.await.expect("server");
        assert!(
            raw.contains("\r\nContent-Length: 9\r\n"),
            "title case: {raw}"
        );
        let seen = raw.to_ascii_lowercase();
        assert!(seen.starts_with("post /v1/events http/1.1\r\n"), "{seen}");
        for line in [
            "content-type: application/json",
            "content-length: 9",
            "connection: close",
        ] {
            assert!(seen.contains(line), "{line} missing: {seen}");
        }
        assert!(seen.ends_with("\r\n\r\n[{\"a\":1}]"), "{seen}");
    }

    /// How the keep-alive test server ends each answer.
    #[derive(Clone, Copy)]
    enum After {
        /// Keeps the connection for the next request.
        KeepAlive,
        /// Says `Connection: close` and closes.
        Close,
        /// Says nothing and closes (as a server closing an idle connection between two requests).
        Vanish,
        /// Keeps the connection, but reads its second request and closes without answering (the server closed
        /// it as the request went out).
        DropSecond,
    }

    /// A server on loopback answering every request `200` with its own ordinal as the body; counts the
    /// connections it accepted.
    async fn counting_server(after: After) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.expect("accept");
                counter.fetch_add(1, Ordering::SeqCst);
                let served = served.clone();
                tokio::spawn(async move {
                    let mut stream = BufReader::new(stream);
                    for nth in 0.. {
                        // Requests without bodies: the head to its empty line.
                        let mut line = String::new();
                        loop {
                            line.clear();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        if nth == 1 && matches!(after, After::DropSecond) {
                            return;
                        }
                        let n = served.fetch_add(1, Ordering::SeqCst).to_string();
                        let close = if matches!(after, After::Close) {
                            "Connection: close\r\n"
                        } else {
                            ""
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\n{close}Content-Length: {}\r\n\r\n{n}",
                            n.len()
                        );
                        stream.write_all(answer.as_bytes()).await.expect("write");
                        if matches!(after, After::Close | After::Vanish) {
                            let _ = stream.shutdown().await;
                            return;
                        }
                    }
                });
            }
        });
        (base, accepted)
    }

    async fn three_requests(after: After) -> (Vec<String>, usize) {
        let (base, accepted) = counting_server(after).await;
        let mut connection = Connection::new(&base);
        let mut bodies = Vec::new();
        for _ in 0..3 {
            let answer = connection
                .request("GET", "/x", "", &[])
                .await
                .expect("an answer");
            assert_eq!(answer.status, 200);
            bodies.push(answer.body);
            // Let the server's close reach the client before the next request.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (bodies, accepted.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn a_connection_is_kept_for_the_next_request() {
        assert_eq!(
            three_requests(After::KeepAlive).await,
            (vec!["0".into(), "1".into(), "2".into()], 1)
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_opened_again() {
        assert_eq!(
            three_requests(After::Close).await,
            (vec!["0".into(), "1".into(), "2".into()], 3)
        );
        // Closed without a word between two requests: the next one finds out before it goes.
        assert_eq!(
            three_requests(After::Vanish).await,
            (vec!["0".into(), "1".into(), "2".into()], 3)
        );
        // Closed while a request was out: it goes out once more, on a new connection.
        assert_eq!(
            three_requests(After::DropSecond).await,
            (vec!["0".into(), "1".into(), "2".into()], 3)
        );
    }

    #[tokio::test]
    async fn a_kept_connection_to_nothing_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        assert!(Connection::new(&base)
            .request("GET", "/", "", &[])
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_chunked_answer_is_read_whole() {
        let (base, _seen) = server(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let answer = request(&base, "GET", "/p.gif?c=x", "", &[])
            .await
            .expect("an answer");
        assert_eq!(
            (answer.status, answer.retry_after, answer.body.as_str()),
            (200, None, "abcde")
        );
    }

    #[tokio::test]
    async fn what_is_not_http_is_an_error_naming_the_server() {
        let (base, _seen) = server("SMTP ready\r\n\r\n").await;
        let error = request(&base, "GET", "/", "", &[])
            .await
            .expect_err("not HTTP");
        assert!(
            error.to_string().contains("no HTTP answer from 127.0.0.1:"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn nothing_listening_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        drop(listener);
        assert!(request(&base, "GET", "/", "", &[]).await.is_err());
    }

    #[tokio::test]
    async fn a_bad_header_is_refused_before_connecting() {
        let error = request("http://127.0.0.1:9", "GET", "/", "", &[("bad header", "x")])
            .await
            .expect_err("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
}
