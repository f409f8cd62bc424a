//! `collect` — the tracking endpoint of tally, served by a Lambda Function URL.
//!
//! * `GET /p.gif?c=…&a=…&e=impression…` answers a 1×1 transparent GIF with no-cache headers, always: a broken
//!   pixel must never show on a publisher's page. An invalid pixel is counted ([`Collector::rejected_pixels`],
//!   and a `PixelRejected` embedded-metric log line) and logged with the field and rule.
//! * `POST /v1/events` takes a JSON array, NDJSON or a sendBeacon `text/plain` body
//!   ([`tally_domain::ingest::decode_body`]) and answers `202 {"accepted": n, "ids": […]}` when every event was
//!   valid and written, `400` with an RFC 9457 problem document listing each rejected event's index, field and
//!   rule (the valid events of a mixed batch are still written: `accepted`/`ids` say which), `413` over the body
//!   limit, and `503` with `Retry-After` when Kinesis kept throttling some records: `ids` then lists only the
//!   events that were written and `unwritten_ids` the others. An event is never reported accepted unless its
//!   record was written.
//! * CORS: every answer allows any origin (no credentials), and `OPTIONS` answers preflights, so a publisher's
//!   page can post from anywhere. Preflights allow only `content-type`: a browser page cannot send a key.
//! * Trust (`docs/events.md`, "Trust and money"): a post with `Authorization: Bearer <key id>:<secret>` whose
//!   key is in the collect keys ([`keys::Keys`]) is *authenticated*; a post with a bad or unknown key is refused
//!   whole (`401`); a post without one is accepted *unsigned*. A pixel whose `kid`/`exp`/`sig` verify is
//!   *signed*, any other pixel *unsigned* (still counted, the failure logged). Money (`cost_micros`,
//!   `value_micros`) is only taken from authenticated and signed events: an unsigned event's is dropped to 0,
//!   and the 202 says how many events lost it (`money_dropped`). Unsigned posts take the request's
//!   `User-Agent` for events that do not carry one (the invalid-traffic check reads it); authenticated posts
//!   come from ad servers and keep what their events say.
//! * Behind the edge (`edge = true`): every request must carry the origin secret CloudFront adds
//!   ([`origin::ORIGIN_HEADER`]); one without it, or with a wrong value, is refused whole (`403`) before
//!   anything is read ([`origin`]).
//!
//! [`Collector::handle`] is a plain async function from request to response; `main` only wires it to
//! `lambda_http`. Events are stamped with the receive time, keep the client's id (the idempotency key) or get
//! one (`{received_ms}-{per-process nonce}-{counter}`), are packed with [`tally_domain::wire::pack_request`] into one
//! record per request (several only beyond Kinesis' 1 MiB per record) under a partition key drawn per request
//! from [`tally_domain::partition::RequestKeys`] (uniform over the shards, not steerable by clients), and
//! written with [`tally_aws::kinesis::put_records_with_retry`]. When some records of a request fail, the answer
//! names exactly the events of those records: each record holds a consecutive run of the request's events.

pub mod keys;
pub mod origin;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use tally_aws::kinesis::{put_records_with_retry, RetryPolicy};
use tally_domain::emf::count_line;
use tally_domain::event::{Event, FieldError, RawEvent, Trust};
use tally_domain::ingest::{decode_body, decode_pixel, BodyError, MAX_BODY_BYTES};
use tally_domain::partition::RequestKeys;
use tally_domain::signing::{check_bearer, verify_pixel, SignatureError};
use tally_domain::wire::{event_count, pack_request_within, MAX_RECORD_BYTES};
use tally_edge::Answers;

/// collect is public: every answer carries CORS headers (`tally_edge::Answers::PUBLIC`).
const EDGE: Answers = Answers::PUBLIC;

/// The pixel: a 1×1 GIF89a whose only pixel is transparent (43 bytes).
pub const PIXEL_GIF: [u8; 43] = [
    b'G', b'I', b'F', b'8', b'9', b'a', // signature
    1, 0, 1, 0, 0x80, 0, 0, // 1×1, global colour table of 2 entries
    0, 0, 0, 0xff, 0xff, 0xff, // black, white
    0x21, 0xf9, 4, 1, 0, 0, 0, 0, // graphic control: colour 0 is transparent
    0x2c, 0, 0, 0, 0, 1, 0, 1, 0, 0, // image at 0,0, 1×1
    2, 2, 0x44, 1, 0,    // LZW data: one pixel of colour 0
    0x3b, // trailer
];

/// The environment variable naming the collect keys secret (its ARN); unset, collect has no keys.
pub const KEYS_SECRET_ENV: &str = tally_contract::env::COLLECT_KEYS_SECRET_ARN;

/// Seconds a client should wait before resending after a `503`.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The collector: where events go, and its counters.
#[derive(Debug)]
pub struct Collector {
    kinesis: aws_sdk_kinesis::Client,
    stream: String,
    retry: RetryPolicy,
    keys: RequestKeys,
    record_limit: usize,
    nonce: u32,
    next_id: AtomicU64,
    rejected_pixels: AtomicU64,
    unsigned_pixels: AtomicU64,
    collect_keys: keys::Keys,
    origin: origin::Origin,
}

impl Collector {
    /// A collector writing to `stream` with the default retry policy (bounded: under a second of backoff).
    pub fn new(kinesis: aws_sdk_kinesis::Client, stream: impl Into<String>) -> Collector {
        let nonce = RandomState::new().build_hasher().finish() as u32;
        Collector {
            kinesis,
            stream: stream.into(),
            retry: RetryPolicy::default(),
            keys: RequestKeys::random(),
            record_limit: MAX_RECORD_BYTES,
            nonce,
            next_id: AtomicU64::new(0),
            rejected_pixels: AtomicU64::new(0),
            unsigned_pixels: AtomicU64::new(0),
            collect_keys: keys::Keys::none(),
            origin: origin::Origin::Open,
        }
    }

    /// Checks post keys and pixel signatures against `keys` (without, every post with a key is refused and
    /// every pixel is unsigned).
    pub fn with_keys(mut self, keys: keys::Keys) -> Collector {
        self.collect_keys = keys;
        self
    }

    /// Refuses requests that did not come through the edge ([`origin::Origin::Edge`]); the default,
    /// [`origin::Origin::Open`], takes every request.
    pub fn with_origin(mut self, origin: origin::Origin) -> Collector {
        self.origin = origin;
        self
    }

    /// Replaces the retry policy of the Kinesis writes.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Collector {
        self.retry = retry;
        self
    }

    /// Packs records of at most `bytes` (data and partition key; capped at Kinesis' 1 MiB, at least 64) instead
    /// of Kinesis' limit: tests use it to split a request into several records with a few events.
    pub fn with_record_limit(mut self, bytes: usize) -> Collector {
        self.record_limit = bytes.clamp(64, MAX_RECORD_BYTES);
        self
    }

    /// Invalid pixels seen by this process.
    pub fn rejected_pixels(&self) -> u64 {
        self.rejected_pixels.load(Ordering::Relaxed)
    }

    /// Pixels that carried a signature that did not verify (counted unsigned), seen by this process.
    pub fn unsigned_pixels(&self) -> u64 {
        self.unsigned_pixels.load(Ordering::Relaxed)
    }

    /// Answers one request, stamping events with the current time.
    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.handle_at(request, tally_edge::now_ms()).await
    }

    /// Answers one request, stamping events with `received_ms`.
    pub async fn handle_at(&self, request: Request, received_ms: i64) -> Response<Body> {
        if let Err(refusal) = self.check_origin(&request, received_ms).await {
            return origin_refused(refusal);
        }
        let path = request.uri().path();
        match (path, request.method()) {
            ("/p.gif", &Method::GET) => self.pixel(&request, received_ms).await,
            // Link checkers and crawlers probe with HEAD: they get the GIF's headers, and nothing is counted.
            ("/p.gif", &Method::HEAD) => gif(),
            ("/v1/events", &Method::POST) => self.events(&request, received_ms).await,
            ("/v1/events", &Method::OPTIONS) | ("/p.gif", &Method::OPTIONS) => {
                EDGE.preflight("GET, HEAD, POST, OPTIONS", "content-type")
            }
            ("/p.gif", _) => EDGE.method_not_allowed("GET, HEAD, OPTIONS"),
            ("/v1/events", _) => EDGE.method_not_allowed("POST, OPTIONS"),
            _ => EDGE.problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such endpoint",
                "collect serves GET /p.gif and POST /v1/events".to_owned(),
                json!({}),
            ),
        }
    }

    /// Behind the edge, whether the request carries the origin secret CloudFront adds.
    async fn check_origin(&self, request: &Request, now_ms: i64) -> Result<(), origin::Refusal> {
        let header = request
            .headers()
            .get(origin::ORIGIN_HEADER)
            .map(HeaderValue::as_bytes);
        self.origin.check(header, now_ms).await
    }

    async fn pixel(&self, request: &Request, received_ms: i64) -> Response<Body> {
        let query = request.uri().query().unwrap_or("");
        let event = match decode_pixel(query) {
            Ok(mut raw) => {
                if raw.user_agent.is_none() {
                    raw.user_agent = header_user_agent(request);
                }
                let trust = self.pixel_trust(query, received_ms).await;
                raw.validate_as(trust, received_ms, &mut || self.new_id(received_ms))
            }
            Err(error) => Err(error),
        };
        match event {
            Ok(event) => {
                // The pixel answers the same whatever happens: a failed write is logged, never shown.
                if let Err(unwritten) = self.write(std::slice::from_ref(&event)).await {
                    tracing::error!(message = "pixel event not written", id = %event.id, reason = %unwritten.reason, retryable = unwritten.retryable);
                }
            }
            Err(error) => {
                self.rejected_pixels.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "pixel rejected", field = error.field, rule = %error.rule);
                println!("{}", pixel_rejected_emf(received_ms, &error));
            }
        }
        gif()
    }

    /// Signed when the pixel's signature verifies, else unsigned; a signature that was there and failed is
    /// logged and counted ([`Collector::unsigned_pixels`], `PixelUnsigned` metric) with its reason.
    async fn pixel_trust(&self, query: &str, received_ms: i64) -> Trust {
        if !query.split('&').any(|p| p.starts_with("sig=")) {
            return Trust::Unsigned;
        }
        let now_secs = u64::try_from(received_ms / 1000).unwrap_or(0);
        let outcome = match self.collect_keys.ring().await {
            Ok(ring) => verify_pixel(query, now_secs, &ring),
            Err(_) => Err(SignatureError::Malformed(
                "the collect keys could not be read".to_owned(),
            )),
        };
        match outcome {
            Ok(_) => Trust::Signed,
            Err(error) => {
                self.unsigned_pixels.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(message = "pixel signature not accepted, counted unsigned", reason = error.reason(), %error);
                println!("{}", pixel_unsigned_emf(received_ms, &error));
                Trust::Unsigned
            }
        }
    }

    /// The trust of a post: authenticated with a good key, unsigned without one; a bad key is an answer
    /// (`401`, or `503` when the keys cannot be read).
    async fn post_trust(&self, request: &Request) -> Result<Trust, Response<Body>> {
        let Some(header) = request.headers().get(header::AUTHORIZATION) else {
            return Ok(Trust::Unsigned);
        };
        let Ok(header) = header.to_str() else {
            return Err(unauthorized(
                "the Authorization header is not ascii".to_owned(),
            ));
        };
        let ring = match self.collect_keys.ring().await {
            Ok(ring) => ring,
            Err(_) => {
                let mut response = EDGE.problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "keys-unavailable",
                    "the key cannot be checked now",
                    format!("nothing was accepted; resend after {RETRY_AFTER_SECS} s"),
                    json!({"accepted": 0}),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                return Err(response);
            }
        };
        match check_bearer(header, &ring) {
            Ok(_) => Ok(Trust::Authenticated),
            Err(error) => {
                tracing::warn!(message = "post key refused", %error);
                Err(unauthorized(error.to_string()))
            }
        }
    }

    async fn events(&self, request: &Request, received_ms: i64) -> Response<Body> {
        let trust = match self.post_trust(request).await {
            Ok(trust) => trust,
            Err(response) => return response,
        };
        let body: &[u8] = request.body().as_ref();
        if body.len() > MAX_BODY_BYTES {
            return body_problem(&BodyError::TooLarge {
                limit: MAX_BODY_BYTES,
                actual: body.len(),
            });
        }
        let content_type = match request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::to_str)
        {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => {
                return body_problem(&BodyError::Malformed(
                    "the content-type header is not ascii; send application/json".to_owned(),
                ))
            }
        };
        let items = match decode_body(body, content_type) {
            Ok(items) => items,
            Err(error) => return body_problem(&error),
        };
        // An unsigned post (JSON, NDJSON or sendBeacon) is judged by the invalid-traffic check as the agent
        // that sent it when its event names none. An authenticated post comes from an ad server, whose own
        // agent says nothing about the browser: its events carry the browser's `user_agent` or none.
        let user_agent = match trust {
            Trust::Unsigned => header_user_agent(request),
            Trust::Authenticated | Trust::Signed => None,
        };
        let mut events = Vec::with_capacity(items.len());
        let mut errors = Vec::new();
        let mut money_dropped = 0usize;
        for (index, item) in items.into_iter().enumerate() {
            let event = item.and_then(|mut raw| {
                if raw.user_agent.is_none() {
                    raw.user_agent.clone_from(&user_agent);
                }
                let had_money = carries_money(&raw);
                let event =
                    raw.validate_as(trust, received_ms, &mut || self.new_id(received_ms))?;
                if had_money && !trust.takes_money() {
                    money_dropped += 1;
                }
                Ok(event)
            });
            match event {
                Ok(event) => events.push(event),
                Err(FieldError { field, rule }) => {
                    errors.push(json!({"index": index, "field": field, "rule": rule}))
                }
            }
        }
        if events.is_empty() {
            return rejected(errors, &[]);
        }
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        match self.write(&events).await {
            Ok(()) if errors.is_empty() => EDGE.json(
                StatusCode::ACCEPTED,
                &json!({"accepted": ids.len(), "ids": ids, "trust": trust.as_str(), "money_dropped": money_dropped}),
            ),
            Ok(()) => rejected(errors, &ids),
            Err(unwritten) => {
                tracing::warn!(message = "events not written", count = unwritten.events.len(), reason = %unwritten.reason);
                let (status, kind, title) = if unwritten.retryable {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not-written",
                        "some events could not be written",
                    )
                } else {
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "write-failed",
                        "the events stream refused the write",
                    )
                };
                // By position, not by id: an id sent twice may be written once and unwritten once.
                let mut failed = vec![false; ids.len()];
                for &i in &unwritten.events {
                    failed[i] = true;
                }
                let (mut written, mut unwritten_ids) = (Vec::new(), Vec::new());
                for (&id, failed) in ids.iter().zip(failed) {
                    if failed {
                        unwritten_ids.push(id);
                    } else {
                        written.push(id);
                    }
                }
                let mut response = EDGE.problem(
                    status,
                    kind,
                    title,
                    format!(
                        "{} of {} valid events were not written ({}); resend those (their ids are idempotency keys) after {RETRY_AFTER_SECS} s",
                        unwritten_ids.len(),
                        ids.len(),
                        unwritten.reason
                    ),
                    json!({"accepted": written.len(), "ids": written, "unwritten_ids": unwritten_ids, "errors": errors}),
                );
                if unwritten.retryable {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                }
                response
            }
        }
    }

    /// Packs `events` (one request) under a fresh partition key and writes them; on failure, which of them
    /// (positions in `events`) are not written.
    async fn write(&self, events: &[Event]) -> Result<(), Unwritten> {
        let records = pack_request_within(events, &self.keys.next_key(), self.record_limit);
        let outcome = match put_records_with_retry(
            &self.kinesis,
            &self.stream,
            &records,
            self.retry,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(message = "kinesis write failed", %error, retryable = error.is_retryable());
                // AWS's text (account ids, ARNs, role names) stays in the log; the client learns what to do.
                let reason = if error.is_retryable() {
                    "the event stream is unavailable (see the collect function's log)"
                } else {
                    "the event stream refused the write (see the collect function's log)"
                };
                return Err(Unwritten {
                    events: (0..events.len()).collect(),
                    reason: reason.to_owned(),
                    retryable: error.is_retryable(),
                });
            }
        };
        if outcome.failed.is_empty() {
            return Ok(());
        }
        let Some(runs) = runs(&records) else {
            // Cannot happen for records we just packed; count every event unwritten rather than guess.
            return Err(Unwritten {
                events: (0..events.len()).collect(),
                reason: "unreadable packed record".to_owned(),
                retryable: false,
            });
        };
        let mut unwritten = Vec::new();
        for &index in &outcome.failed {
            if let Some(run) = runs.get(index) {
                unwritten.extend(run.clone());
            }
        }
        unwritten.sort_unstable();
        unwritten.dedup();
        if let Some(error) = &outcome.last_error {
            tracing::warn!(message = "kinesis kept throttling", attempts = outcome.attempts, %error);
        }
        // Kinesis' message names the account ("… under account 123456789012"): the log keeps it, the client
        // gets the fact.
        let reason = format!(
            "the event stream is over its write capacity (throttled after {} attempts)",
            outcome.attempts
        );
        Err(Unwritten {
            events: unwritten,
            reason,
            retryable: true,
        })
    }

    fn new_id(&self, received_ms: i64) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{received_ms}-{:08x}-{n}", self.nonce)
    }
}

/// The positions in `events` that each record of `pack_request(events, key)` holds: consecutive runs, in order (`pack_request`'s
/// promise), read from the records' event counts. `None` if a record's header does not read.
fn runs(records: &[tally_domain::wire::StreamRecord]) -> Option<Vec<std::ops::Range<usize>>> {
    let mut start = 0;
    records
        .iter()
        .map(|r| {
            let n = event_count(&r.data).ok()?;
            let run = start..start + n;
            start += n;
            Some(run)
        })
        .collect()
}

/// Events whose records Kinesis did not take.
#[derive(Debug)]
struct Unwritten {
    /// Positions in the request's valid events, ascending.
    events: Vec<usize>,
    /// Why, for the client: never AWS's own text (it names accounts, ARNs and roles); that goes to the log.
    reason: String,
    /// Throttling that outlasted the retries (`503`, try later) rather than a refusal (`500`).
    retryable: bool,
}

/// The request's `User-Agent`, made to fit the event rule ([`tally_domain::event::header_user_agent`]).
fn header_user_agent(request: &Request) -> Option<String> {
    tally_domain::event::header_user_agent(
        request.headers().get(header::USER_AGENT)?.to_str().ok()?,
    )
}

/// Whether a raw event names money (before trust decides whether it is kept).
fn carries_money(raw: &RawEvent) -> bool {
    raw.cost_micros.is_some_and(|m| m > 0) || raw.value_micros.is_some_and(|v| v > 0)
}

/// The `PixelUnsigned` line ([`tally_domain::emf::count_line`]): a signature that was there and failed.
fn pixel_unsigned_emf(now_ms: i64, error: &SignatureError) -> String {
    count_line(
        "collect",
        now_ms,
        "PixelUnsigned",
        &[("reason", json!(error.reason()))],
    )
}

/// The `PixelRejected` line: an invalid pixel, with the field and the rule it broke.
fn pixel_rejected_emf(now_ms: i64, error: &FieldError) -> String {
    count_line(
        "collect",
        now_ms,
        "PixelRejected",
        &[("field", json!(error.field)), ("rule", json!(error.rule))],
    )
}

fn gif() -> Response<Body> {
    EDGE.respond(
        StatusCode::OK,
        &[
            (header::CONTENT_TYPE, "image/gif"),
            (
                header::CACHE_CONTROL,
                "no-store, no-cache, must-revalidate, max-age=0",
            ),
            (header::PRAGMA, "no-cache"),
            (header::EXPIRES, "0"),
        ],
        Body::Binary(PIXEL_GIF.to_vec()),
    )
}

/// A request refused by the origin check: a problem document saying why (`503` ones with `Retry-After`).
fn origin_refused(refusal: origin::Refusal) -> Response<Body> {
    let status =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = EDGE.problem(
        status,
        refusal.kind(),
        refusal.title(),
        refusal.detail(),
        json!({"accepted": 0}),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    response
}

/// `401` for a post whose key is refused: nothing of it is accepted, and the document says what to send.
fn unauthorized(reason: String) -> Response<Body> {
    let mut response = EDGE.problem(
        StatusCode::UNAUTHORIZED,
        "bad-key",
        "the key is not accepted",
        format!(
            "{reason}. Send Authorization: Bearer <key id>:<secret> with a key of the collect keys secret \
             (docs/events.md, \"Server-to-server keys\"), or no Authorization header to send unsigned events \
             (counted without money); nothing was accepted"
        ),
        json!({"accepted": 0}),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tally-collect\""),
    );
    response
}

fn body_problem(error: &BodyError) -> Response<Body> {
    let (status, kind) = match error {
        BodyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "body-too-large"),
        BodyError::TooManyEvents { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-many-events"),
        BodyError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed-body"),
        BodyError::Empty => (StatusCode::BAD_REQUEST, "empty-body"),
    };
    EDGE.problem(
        status,
        kind,
        "the body cannot be read",
        error.to_string(),
        json!({"accepted": 0}),
    )
}

fn rejected(errors: Vec<Value>, written: &[&str]) -> Response<Body> {
    let detail = if written.is_empty() {
        format!(
            "all {} events were rejected; nothing was accepted",
            errors.len()
        )
    } else {
        format!(
            "{} events were rejected; the other {} were accepted and must not be resent",
            errors.len(),
            written.len()
        )
    };
    EDGE.problem(
        StatusCode::BAD_REQUEST,
        "invalid-events",
        "some events are invalid",
        detail,
        json!({"accepted": written.len(), "ids": written, "errors": errors}),
    )
}

#[cfg(test)]
mod emf_tests {
    use super::*;

    #[test]
    fn a_rejected_pixel_is_one_counted_metric_with_its_field_and_rule() {
        let error = FieldError {
            field: "campaign_id",
            rule: "missing".to_owned(),
        };
        let line: Value =
            serde_json::from_str(&pixel_rejected_emf(1_000, &error)).expect("one JSON line");
        let meta = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(line["_aws"]["Timestamp"], 1_000);
        assert_eq!(meta["Namespace"], "tally");
        assert_eq!(meta["Dimensions"], json!([["Function"]]));
        assert_eq!(
            meta["Metrics"],
            json!([{"Name": "PixelRejected", "Unit": "Count"}])
        );
        assert_eq!(
            (&line["Function"], &line["PixelRejected"]),
            (&json!("collect"), &json!(1))
        );
        assert_eq!(
            (&line["field"], &line["rule"]),
            (&json!("campaign_id"), &json!("missing"))
        );
    }
}
