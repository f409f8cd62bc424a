//! The one HTTP client of the traffic tools (`cargo xtask loadtest`'s clients and probes, `dev`'s demo traffic):
//! one HTTP/1.1 request over a fresh loopback connection, on hyper's client connection
//! (`hyper::client::conn::http1`), so framing, chunked bodies and header parsing are hyper's, not ours.
//!
//! A fresh connection per request (`Connection: close`) on purpose: the load test stands for many browsers and
//! ad servers, each with its own connection, and every Function URL request of the local cloud is then a
//! request of its own, as the meter counts them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
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
    let authority = base_url.trim_start_matches("http://").trim_end_matches('/');
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, authority)
        .header(CONNECTION, "close");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
        .map_err(|error| invalid(format!("{method} {path} is not a request: {error}")))?;
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    // Title-case header names (`Content-Length`), as browsers and ad servers write them over HTTP/1.1.
    let (mut sender, connection) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|error| broken(authority, error))?;
    // The connection is driven beside the request; it ends when the server closes it (`Connection: close`).
    tokio::spawn(connection);
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
