//! The loopback guard of every listener the local cloud opens (the AWS endpoint, Function URLs, the Runtime
//! API): a request is answered only when it is addressed to a loopback name and, if it comes from a web page,
//! that page is on a loopback origin too.
//!
//! Binding 127.0.0.1 keeps other machines out, but not the developer's own browser: any page it opens can
//! send requests to `127.0.0.1:4566` (a cross-site `POST /bucket?delete`), and a page whose DNS name is
//! rebound to 127.0.0.1 can even read the answers. Both carry a name that is not loopback, in `Host` (DNS
//! rebinding) or in `Origin` (a cross-site request), and are refused with 403.
//!
//! Loopback names: `localhost` and any `*.localhost` (browsers and resolvers map them to loopback; the S3
//! virtual-hosted style uses `bucket.localhost`), `127.0.0.0/8` addresses and `[::1]`, each with an optional
//! port. Origins: `http://` or `https://` followed by a loopback name. `Origin: null` (sandboxed frames,
//! `file:` pages) is refused.

use hyper::header::{HOST, ORIGIN};
use hyper::HeaderMap;

/// Why a request is refused, for the 403's message; `None` when it is admitted.
pub fn refusal(headers: &HeaderMap) -> Option<String> {
    let host = headers
        .get(HOST)
        .map(|h| h.to_str().unwrap_or("<not text>"));
    match host {
        None => return Some(
            "the tally local cloud answers only requests with a Host header naming a loopback address (localhost, 127.0.0.1, [::1])".to_owned(),
        ),
        Some(host) if !is_loopback_host(host) => return Some(format!(
            "the tally local cloud answers only requests addressed to a loopback name (localhost, 127.0.0.1, [::1]); Host {host:?} is refused (a DNS-rebinding web page?): address it as 127.0.0.1"
        )),
        Some(_) => {}
    }
    let origin = headers
        .get(ORIGIN)
        .map(|o| o.to_str().unwrap_or("<not text>"));
    match origin {
        Some(origin) if !is_loopback_origin(origin) => Some(format!(
            "the tally local cloud refuses requests from web pages on other sites: Origin {origin:?} is not a loopback origin; serve the page from http://localhost or http://127.0.0.1"
        )),
        _ => None,
    }
}

/// `host[:port]` where host is a loopback name.
pub fn is_loopback_host(host_port: &str) -> bool {
    let (host, port) = split_port(host_port);
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok && is_loopback_name(host)
}

/// `http://host[:port]` or `https://host[:port]` where host is a loopback name.
pub fn is_loopback_origin(origin: &str) -> bool {
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(is_loopback_host)
}

/// Splits `host:port`, `[v6]:port`, `host` or `[v6]`.
fn split_port(host_port: &str) -> (&str, Option<&str>) {
    if host_port.starts_with('[') {
        return match host_port.split_once(']') {
            Some((v6, rest)) => {
                let host = &host_port[..v6.len() + 1];
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => ("", None),
                }
            }
            None => ("", None),
        };
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (host_port, None),
    }
}

fn is_loopback_name(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.strip_suffix('.').unwrap_or(&host);
    if host == "localhost" || host == "[::1]" {
        return true;
    }
    if let Some(sub) = host.strip_suffix(".localhost") {
        return !sub.is_empty()
            && sub.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
    }
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(HOST, HeaderValue::from_str(host).expect("host"));
        }
        if let Some(origin) = origin {
            headers.insert(ORIGIN, HeaderValue::from_str(origin).expect("origin"));
        }
        headers
    }

    #[test]
    fn loopback_hosts_are_admitted() {
        for host in [
            "127.0.0.1:4566",
            "127.0.0.1",
            "localhost",
            "LOCALHOST:80",
            "localhost.:4566",
            "[::1]:4566",
            "[::1]",
            "archive.localhost:4566",
            "127.1.2.3:9",
        ] {
            assert_eq!(refusal(&headers(Some(host), None)), None, "{host}");
        }
    }

    #[test]
    fn other_hosts_and_origins_are_refused_with_a_reason() {
        for host in [
            "evil.example:4566",
            "localhost.evil.example",
            "127.0.0.1.nip.io:4566",
            "10.0.0.1:4566",
            "0.0.0.0:4566",
            "[::2]:4566",
            "[::1]x",
            "localhost:",
            "localhost:45a",
            ".localhost",
            "a..localhost",
            "",
        ] {
            let why = refusal(&headers(Some(host), None)).expect(host);
            assert!(why.contains("loopback"), "{host}: {why}");
        }
        assert!(refusal(&headers(None, None))
            .expect("no host")
            .contains("Host header"));
        for origin in [
            "https://evil.example",
            "http://localhost.evil.example",
            "null",
            "file://",
            "http://127.0.0.1.evil.example",
            "ftp://localhost",
        ] {
            let why = refusal(&headers(Some("127.0.0.1:4566"), Some(origin))).expect(origin);
            assert!(why.contains("Origin"), "{origin}: {why}");
        }
        for origin in [
            "http://localhost:3000",
            "https://127.0.0.1",
            "http://[::1]:8080",
        ] {
            assert_eq!(
                refusal(&headers(Some("127.0.0.1:4566"), Some(origin))),
                None,
                "{origin}"
            );
        }
    }
}
