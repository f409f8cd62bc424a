//! The HTTP edge of tally's Function URL handlers (`collect`, `query`): the one place that shapes their answers.
//!
//! * [`problem_document`] — RFC 9457 problem documents (`type`, `title`, `status`, `detail`, plus members).
//! * [`Answers`] — how one function answers: [`Answers::json`], [`Answers::problem`],
//!   [`Answers::method_not_allowed`] and [`Answers::respond`], each finished with the function's policy:
//!   [`Answers::PUBLIC`] (collect: any origin may call, CORS on every answer, [`Answers::preflight`]) or
//!   [`Answers::PRIVATE`] (query: no CORS, nothing cached).
//! * [`is_read`] — the method check of read-only routes (`GET`, `HEAD`).
//! * [`now_ms`] — the clock the handlers' `handle` passes to their `handle_at` (tests inject their own time).
//!
//! A crate of its own rather than a module of `tally-aws`: these are `lambda_http` types, which the stream
//! functions (realtime, deferred, compactor, scaler) that depend on `tally-aws` do not build; and nothing here
//! needs the AWS SDK.

use lambda_http::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{json, Value};

/// An RFC 9457 problem document: `type`, `title`, `status`, `detail`, plus the members of `extra` (when it is an
/// object).
pub fn problem_document(
    status: u16,
    kind: &str,
    title: &str,
    detail: String,
    extra: Value,
) -> Value {
    let mut doc = json!({
        "type": format!("https://tally.invalid/problems/{kind}"),
        "title": title,
        "status": status,
        "detail": detail,
    });
    if let (Some(doc), Value::Object(extra)) = (doc.as_object_mut(), extra) {
        doc.extend(extra);
    }
    doc
}

/// How a function's answers are finished: CORS for public endpoints, `no-store` for private data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answers {
    /// Every answer allows any origin (no credentials) and exposes `retry-after`.
    cors: bool,
    /// Every JSON answer says `Cache-Control: no-store`.
    no_store: bool,
}

impl Answers {
    /// collect: a publisher's page anywhere may call it, so every answer carries CORS headers.
    pub const PUBLIC: Answers = Answers {
        cors: true,
        no_store: false,
    };
    /// query: behind a token, so no CORS, and no answer is kept by a cache.
    pub const PRIVATE: Answers = Answers {
        cors: false,
        no_store: true,
    };

    /// An answer with `status`, the static `headers` and `body`, finished with this policy.
    pub fn respond(
        self,
        status: StatusCode,
        headers: &[(HeaderName, &'static str)],
        body: Body,
    ) -> Response<Body> {
        let mut response = Response::new(body);
        *response.status_mut() = status;
        insert_static(&mut response, headers);
        self.finish(response)
    }

    /// `value` as `application/json`.
    pub fn json(self, status: StatusCode, value: &Value) -> Response<Body> {
        self.typed(status, "application/json", value)
    }

    /// An RFC 9457 problem document ([`problem_document`]) as `application/problem+json`.
    pub fn problem(
        self,
        status: StatusCode,
        kind: &str,
        title: &str,
        detail: String,
        extra: Value,
    ) -> Response<Body> {
        let doc = problem_document(status.as_u16(), kind, title, detail, extra);
        self.typed(status, "application/problem+json", &doc)
    }

    /// `405` naming the methods the endpoint takes, in the document and in `Allow`.
    pub fn method_not_allowed(self, allow: &'static str) -> Response<Body> {
        let mut response = self.problem(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "method not allowed",
            format!("this endpoint accepts {allow}"),
            json!({}),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    }

    /// `204` to a CORS preflight: `methods` and `headers` allowed, the answer kept by the browser for a day.
    pub fn preflight(self, methods: &'static str, headers: &'static str) -> Response<Body> {
        self.respond(
            StatusCode::NO_CONTENT,
            &[
                (header::ACCESS_CONTROL_ALLOW_METHODS, methods),
                (header::ACCESS_CONTROL_ALLOW_HEADERS, headers),
                (header::ACCESS_CONTROL_MAX_AGE, "86400"),
            ],
            Body::Empty,
        )
    }

    fn typed(
        self,
        status: StatusCode,
        content_type: &'static str,
        value: &Value,
    ) -> Response<Body> {
        let mut headers = vec![(header::CONTENT_TYPE, content_type)];
        if self.no_store {
            headers.push((header::CACHE_CONTROL, "no-store"));
        }
        self.respond(status, &headers, Body::Text(value.to_string()))
    }

    /// Adds this policy's headers to an answer built elsewhere.
    pub fn finish(self, mut response: Response<Body>) -> Response<Body> {
        if self.cors {
            insert_static(&mut response, &CORS_HEADERS);
        }
        response
    }
}

/// What a public answer carries: any origin may read it (no credentials), and see when to come back.
const CORS_HEADERS: [(HeaderName, &str); 2] = [
    (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    (header::ACCESS_CONTROL_EXPOSE_HEADERS, "retry-after"),
];

fn insert_static(response: &mut Response<Body>, headers: &[(HeaderName, &'static str)]) {
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name.clone(), HeaderValue::from_static(value));
    }
}

/// Whether a read-only route takes `method` (`GET` or `HEAD`).
pub fn is_read(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// Unix milliseconds now (0 before the epoch, `i64::MAX` past its range).
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(response: &'a Response<Body>, name: &str) -> Option<&'a str> {
        response.headers().get(name).and_then(|v| v.to_str().ok())
    }

    fn body(response: &Response<Body>) -> Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).expect("a JSON body"),
            other => panic!("not a text body: {other:?}"),
        }
    }

    #[test]
    fn extra_members_join_the_standard_ones() {
        let doc = problem_document(
            400,
            "invalid-events",
            "invalid events",
            "2 of 3 events were rejected".into(),
            json!({"rejected": [{"index": 1}]}),
        );
        assert_eq!(
            doc,
            json!({"type": "https://tally.invalid/problems/invalid-events", "title": "invalid events",
                   "status": 400, "detail": "2 of 3 events were rejected", "rejected": [{"index": 1}]})
        );
        assert_eq!(
            problem_document(404, "k", "t", "d".into(), Value::Null)["status"],
            404
        );
    }

    #[test]
    fn public_answers_carry_cors_and_no_cache_rule() {
        let response = Answers::PUBLIC.json(StatusCode::ACCEPTED, &json!({"accepted": 1}));
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        assert_eq!(header(&response, "content-type"), Some("application/json"));
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            header(&response, "access-control-expose-headers"),
            Some("retry-after")
        );
        assert_eq!(header(&response, "cache-control"), None);
        assert_eq!(body(&response), json!({"accepted": 1}));
    }

    #[test]
    fn private_answers_are_not_stored_and_carry_no_cors() {
        let response = Answers::PRIVATE.problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "no such endpoint",
            "see GET /".to_owned(),
            json!({"param": "x"}),
        );
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            header(&response, "content-type"),
            Some("application/problem+json")
        );
        assert_eq!(header(&response, "cache-control"), Some("no-store"));
        assert_eq!(header(&response, "access-control-allow-origin"), None);
        let doc = body(&response);
        assert_eq!(doc["type"], "https://tally.invalid/problems/not-found");
        assert_eq!((&doc["status"], &doc["param"]), (&json!(404), &json!("x")));
    }

    #[test]
    fn method_not_allowed_names_the_methods_twice() {
        for answers in [Answers::PUBLIC, Answers::PRIVATE] {
            let response = answers.method_not_allowed("POST, OPTIONS");
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            assert_eq!(header(&response, "allow"), Some("POST, OPTIONS"));
            assert_eq!(
                body(&response)["detail"],
                "this endpoint accepts POST, OPTIONS"
            );
        }
    }

    #[test]
    fn preflights_allow_what_they_name_for_a_day() {
        let response = Answers::PUBLIC.preflight("GET, POST", "content-type");
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header(&response, "access-control-allow-methods"),
            Some("GET, POST")
        );
        assert_eq!(
            header(&response, "access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(header(&response, "access-control-max-age"), Some("86400"));
        assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    }

    #[test]
    fn reads_are_get_and_head() {
        assert!(is_read(&Method::GET) && is_read(&Method::HEAD));
        assert!(!is_read(&Method::POST) && !is_read(&Method::OPTIONS));
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(now_ms() > 1_577_836_800_000);
    }
}
