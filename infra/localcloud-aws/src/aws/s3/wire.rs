//! S3's wire form: errors and their XML, keys, percent-decoding and encoding, XML, dates, aws-chunked bodies, request
//! addressing (bucket, key, query), Content-MD5, ranges.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use md5::{Digest, Md5};
use tally_domain::urlencoded::{self, Malformed};

use crate::aws::{now_ms, AwsError};

/// An S3 error: status, code, message and the resource it concerns.
pub(super) fn s3_error(status: u16, code: &str, message: impl Into<String>) -> AwsError {
    AwsError {
        status,
        code: code.to_owned(),
        message: message.into(),
        extra: None,
    }
}

pub(super) fn no_bucket(name: &str) -> AwsError {
    s3_error(
        404,
        "NoSuchBucket",
        format!("The specified bucket does not exist: {name}"),
    )
}

pub(super) fn check_key(key: &str) -> Result<(), AwsError> {
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

/// Percent-decoding of a path segment or query value (`+` is a space only in queries), strict
/// ([`tally_domain::urlencoded`]), in S3's words.
pub(super) fn decode(text: &str, plus_is_space: bool) -> Result<String, AwsError> {
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

pub(super) fn encode_key(key: &str) -> String {
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

pub(super) fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

pub(super) fn xml_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of every `<tag>...</tag>` in `xml`, in order.
pub(super) fn xml_all<'x>(xml: &'x str, tag: &str) -> Vec<&'x str> {
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

pub(super) fn split_ms(ms: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
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
pub(super) fn decode_aws_chunked(body: &[u8]) -> Result<Bytes, AwsError> {
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

pub(super) fn xml_response(status: StatusCode, xml: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(xml)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

pub(super) fn empty(status: StatusCode) -> Response<Full<Bytes>> {
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
pub(super) type Address = (Option<String>, Option<String>, BTreeMap<String, String>);

pub(super) fn address(request: &Request<Bytes>) -> Result<Address, AwsError> {
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
pub(super) const SUBRESOURCES: &[&str] = &[
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

/// The request body, decoded from `aws-chunked` when the client streamed it.
pub(super) fn body_of(request: &Request<Bytes>) -> Result<Bytes, AwsError> {
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

pub(super) fn check_content_md5(request: &Request<Bytes>, body: &[u8]) -> Result<(), AwsError> {
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
pub(super) fn parse_range(range: &str, size: u64) -> Result<(u64, u64), AwsError> {
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
