//! Decoding pixels and bodies, including hostile and malformed input.

use tally_domain::event::RawEvent;
use tally_domain::ingest::{
    decode_body, decode_pixel, BodyError, MAX_BODY_BYTES, MAX_EVENTS_PER_BODY, PIXEL_KEYS,
};

/// Decodes a pixel query and renders the outcome compactly: `kind=… campaign_id=…` for the fields set, or the
/// error's Display.
#[track_caller]
fn check_pixel(query: &str, expect: &str) {
    let got = match decode_pixel(query) {
        Ok(raw) => render(&raw),
        Err(e) => e.to_string(),
    };
    assert_eq!(got, expect, "query: {query}");
}

fn render(raw: &RawEvent) -> String {
    let v = serde_json::to_value(raw).expect("serializes");
    let obj = v.as_object().expect("an object");
    obj.iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn pixels() {
    check_pixel(
        "c=cmp-1&a=ad-9&e=impression",
        "kind=impression campaign_id=cmp-1 ad_id=ad-9",
    );
    check_pixel(
        "?c=cmp-1&a=ad-9&e=click",
        "kind=click campaign_id=cmp-1 ad_id=ad-9",
    );
    check_pixel(
        "i=ev1&e=conversion&c=c&a=a&p=pub&u=u1&t=1700000000000&m=250&v=9000&g=de&d=mobile",
        "id=ev1 kind=conversion campaign_id=c ad_id=a placement_id=pub user_id=u1 client_ts_ms=1700000000000 cost_micros=250 value_micros=9000 country=de device=mobile",
    );
    check_pixel(
        "c=a%2Fb&a=x+y&e=click",
        "kind=click campaign_id=a/b ad_id=x y",
    );
    check_pixel(
        "c=%E2%82%AC&a=a&e=click",
        "kind=click campaign_id=€ ad_id=a",
    );
    check_pixel("c=c&&a=a&e=click&", "kind=click campaign_id=c ad_id=a");
    check_pixel(
        "c=c&a=a&e=click&cb=123&_=456&_r=1",
        "kind=click campaign_id=c ad_id=a",
    );
    check_pixel("", "");
    check_pixel("c", "campaign_id=");
    check_pixel("c=c&c=d", "campaign_id: given twice, give each field once");
    check_pixel(
        "c=c&x=1",
        r#"query: unknown parameter "x", the pixel keys are i e c a p u t m v g d (see docs/events.md)"#,
    );
    check_pixel(
        "campaign_id=c",
        r#"query: unknown parameter "campaign_id", the pixel keys are i e c a p u t m v g d (see docs/events.md)"#,
    );
    check_pixel(
        "c=%zz",
        "campaign_id: bad percent-encoding at byte 0, '%' must be followed by two hex digits",
    );
    check_pixel(
        "c=ab%",
        "campaign_id: bad percent-encoding at byte 2, '%' must be followed by two hex digits",
    );
    check_pixel(
        "c=ab%4",
        "campaign_id: bad percent-encoding at byte 2, '%' must be followed by two hex digits",
    );
    check_pixel(
        "c=%FF%FE",
        "campaign_id: percent-encoding decodes to invalid UTF-8",
    );
    check_pixel("%63=x", "campaign_id=x");
    check_pixel(
        "%ZZ=x",
        "query: bad percent-encoding at byte 0, '%' must be followed by two hex digits",
    );
    check_pixel(
        "m=12x",
        r#"cost_micros: expected a whole non-negative number of micros, got the string "12x""#,
    );
    check_pixel(
        "m=-5",
        r#"cost_micros: expected a whole non-negative number of micros, got the string "-5""#,
    );
    check_pixel(
        "m=",
        r#"cost_micros: expected a whole non-negative number of micros, got the string """#,
    );
    check_pixel("t=-5", "client_ts_ms=-5");
    check_pixel(
        "t=1.5",
        r#"client_ts_ms: expected whole unix milliseconds, got the string "1.5""#,
    );
    check_pixel(
        "t=99999999999999999999",
        r#"client_ts_ms: expected whole unix milliseconds, got the string "99999999999999999999""#,
    );
    check_pixel(
        &format!("c={}", "x".repeat(9000)),
        "query: longer than 8192 bytes (9002); send big batches as a JSON POST",
    );
}

/// Decodes a body and renders each item as `ok:<campaign_id>` or `err:<Display>`, joined by ` | `; a body
/// error renders as `body:<Display>`.
#[track_caller]
fn check_body(body: &str, content_type: Option<&str>, expect: &str) {
    let got = render_body(body.as_bytes(), content_type);
    assert_eq!(got, expect, "body: {body:?} content type: {content_type:?}");
}

fn render_body(body: &[u8], content_type: Option<&str>) -> String {
    match decode_body(body, content_type) {
        Err(e) => format!("body:{e}"),
        Ok(items) => items
            .iter()
            .map(|i| match i {
                Ok(raw) => format!("ok:{}", raw.campaign_id.as_deref().unwrap_or("-")),
                Err(e) => format!("err:{e}"),
            })
            .collect::<Vec<_>>()
            .join(" | "),
    }
}

const JSON: Option<&str> = Some("application/json");
const NDJSON: Option<&str> = Some("application/x-ndjson");
const BEACON: Option<&str> = Some("text/plain;charset=UTF-8");

#[test]
fn arrays() {
    check_body(
        r#"[{"campaign_id":"a"},{"campaign_id":"b"}]"#,
        JSON,
        "ok:a | ok:b",
    );
    check_body(r#"  [ {"campaign_id":"a"} ]  "#, None, "ok:a");
    check_body(r#"[{"campaign_id":"a"}, 5, "x", null, [1], {"campaign_id":"b"}]"#, JSON,
        "ok:a | err:event: expected a JSON object, got a number | err:event: expected a JSON object, got a string | err:event: expected a JSON object, got null | err:event: expected a JSON object, got an array | ok:b");
    check_body(
        r#"[{"campaign_id":"a"},{"cost_micros":-1},{"campaign_id":"c"}]"#,
        JSON,
        "ok:a | err:cost_micros: -1 is negative, give 0 or more | ok:c",
    );
    check_body("[]", JSON, "body:empty body, send at least one event");
    check_body(
        r#"[{"campaign_id":"a"}"#,
        JSON,
        "body:malformed body: invalid JSON: EOF while parsing a list at line 1 column 20",
    );
    check_body(
        r#"[{"campaign_id":"a"}] x"#,
        JSON,
        "body:malformed body: invalid JSON: trailing characters at line 1 column 23",
    );
    check_body(
        r#"[{"campaign_id":"a",}]"#,
        JSON,
        "body:malformed body: invalid JSON: trailing comma at line 1 column 21",
    );
    check_body("\u{feff}[{\"campaign_id\":\"a\"}]", JSON, "ok:a");
    check_body(
        r#"[{"campaign_id":"\ud800"}]"#,
        JSON,
        "body:malformed body: invalid JSON: unexpected end of hex escape at line 1 column 24",
    );
}

#[test]
fn ndjson_and_beacons() {
    check_body(
        "{\"campaign_id\":\"a\"}\n{\"campaign_id\":\"b\"}\n",
        NDJSON,
        "ok:a | ok:b",
    );
    check_body(
        "{\"campaign_id\":\"a\"}\r\n\r\n{\"campaign_id\":\"b\"}",
        None,
        "ok:a | ok:b",
    );
    check_body(
        "{\"campaign_id\":\"a\"}\n{\"campaign_id\":\n{\"campaign_id\":\"c\"}",
        NDJSON,
        "ok:a | err:event: invalid JSON: EOF while parsing a value at line 1 column 15 | ok:c",
    );
    // Sniffed: a broken line in NDJSON costs only its own event.
    check_body(
        "{\"campaign_id\":\"a\"}\n{\"campaign_id\":\n{\"campaign_id\":\"c\"}",
        BEACON,
        "ok:a | err:event: invalid JSON: EOF while parsing a value at line 1 column 15 | ok:c",
    );
    // Declared NDJSON is line by line even where two broken lines would make one valid object; sniffed, the
    // same body is one multi-line object.
    check_body(
        "{\"campaign_id\":\"a\"}\n{\"campaign_id\":\n\"b\"}",
        NDJSON,
        "ok:a | err:event: invalid JSON: EOF while parsing a value at line 1 column 15 | err:event: invalid JSON: trailing characters at line 1 column 4",
    );
    check_body(
        "{\"campaign_id\":\"a\"}\n{\"campaign_id\":\n\"b\"}",
        BEACON,
        "ok:a | ok:b",
    );
    // A single (pretty-printed) object.
    check_body("{\n  \"campaign_id\": \"a\"\n}\n", BEACON, "ok:a");
    check_body("{\"campaign_id\":\"a\"}", Some("text/plain"), "ok:a");
    // Pretty-printed and broken: not line-shaped, so the whole body is malformed.
    check_body(
        "{\n  \"campaign_id\": \"a\",\n}\n",
        JSON,
        "body:malformed body: invalid JSON: trailing comma at line 3 column 1",
    );
    check_body(
        "{\"campaign_id\":\"a\"}\n[1]",
        NDJSON,
        "ok:a | err:event: expected a JSON object, got an array",
    );
    check_body(
        "\n\n  \n",
        NDJSON,
        "body:empty body, send at least one event",
    );
    check_body("", None, "body:empty body, send at least one event");
    check_body("   ", BEACON, "body:empty body, send at least one event");
    check_body(
        "hello",
        BEACON,
        r#"body:malformed body: expected a JSON array, a JSON object or NDJSON, but the body starts with "hello""#,
    );
    check_body(
        "c=a&a=b",
        Some("application/x-www-form-urlencoded"),
        r#"body:malformed body: content type "application/x-www-form-urlencoded" is not supported, send application/json, application/x-ndjson or text/plain"#,
    );
    check_body(
        "[]",
        Some("application/json; charset=latin1"),
        r#"body:malformed body: charset "latin1" is not supported, send UTF-8"#,
    );
    check_body(
        r#"[{"campaign_id":"a"}]"#,
        Some("Application/JSON; Charset=\"utf-8\""),
        "ok:a",
    );
}

#[test]
fn hostile_bodies() {
    // Not UTF-8.
    assert_eq!(
        render_body(b"[{\"campaign_id\":\"\xff\"}]", JSON),
        "body:malformed body: invalid JSON: invalid unicode code point at line 1 column 18"
    );
    assert_eq!(
        render_body(
            b"{\"campaign_id\":\"\xff\"}\n{\"campaign_id\":\"b\"}",
            NDJSON
        ),
        "err:event: invalid JSON: invalid unicode code point at line 1 column 17 | ok:b"
    );
    assert_eq!(render_body(b"\x00\x01\x02", None), "body:malformed body: expected a JSON array, a JSON object or NDJSON, but the body starts with \"\\0\\u{1}\\u{2}\"");
    // Deep nesting is skipped without recursion (no stack overflow) or refused by serde_json's recursion limit.
    let deep = format!(
        "[{{\"x_a\":{}{}}}]",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_eq!(render_body(deep.as_bytes(), JSON), "ok:-");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        render_body(deep.as_bytes(), JSON),
        "err:event: expected a JSON object, got an array"
    );
    let deep = format!(
        "[{{\"campaign_id\":{}1{}}}]",
        "{\"a\":".repeat(50_000),
        "}".repeat(50_000)
    );
    assert_eq!(
        render_body(deep.as_bytes(), JSON),
        "err:campaign_id: expected a string, got an object"
    );
    // Huge strings inside the limit are decoded and then rejected by validation, not by the decoder.
    let long = format!(r#"[{{"campaign_id":"{}"}}]"#, "c".repeat(500_000));
    assert!(render_body(long.as_bytes(), JSON).starts_with("ok:ccc"));
}

#[test]
fn limits() {
    let too_big = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        decode_body(&too_big, JSON),
        Err(BodyError::TooLarge {
            limit: MAX_BODY_BYTES,
            actual: MAX_BODY_BYTES + 1
        })
    );
    assert_eq!(
        BodyError::TooLarge {
            limit: 10,
            actual: 11
        }
        .to_string(),
        "body is 11 bytes, more than the limit of 10; split it into smaller batches"
    );

    let many = |n: usize, sep: &str| vec![r#"{"campaign_id":"a"}"#; n].join(sep);
    let exactly = format!("[{}]", many(MAX_EVENTS_PER_BODY, ","));
    assert_eq!(
        decode_body(exactly.as_bytes(), JSON).map(|v| v.len()),
        Ok(MAX_EVENTS_PER_BODY)
    );
    let over = format!("[{}]", many(MAX_EVENTS_PER_BODY + 1, ","));
    assert_eq!(
        decode_body(over.as_bytes(), JSON),
        Err(BodyError::TooManyEvents {
            limit: MAX_EVENTS_PER_BODY
        })
    );
    // Tiny items cannot blow up memory: the count is checked while decoding.
    let tiny = format!("[{}]", vec!["{}"; 300_000].join(","));
    assert_eq!(
        decode_body(tiny.as_bytes(), JSON),
        Err(BodyError::TooManyEvents {
            limit: MAX_EVENTS_PER_BODY
        })
    );
    for (ct, sep) in [(NDJSON, "\n"), (None, "\n"), (BEACON, " ")] {
        assert_eq!(
            decode_body(many(MAX_EVENTS_PER_BODY, sep).as_bytes(), ct).map(|v| v.len()),
            Ok(MAX_EVENTS_PER_BODY)
        );
        assert_eq!(
            decode_body(many(MAX_EVENTS_PER_BODY + 1, sep).as_bytes(), ct),
            Err(BodyError::TooManyEvents {
                limit: MAX_EVENTS_PER_BODY
            }),
            "{ct:?}"
        );
    }
    let broken_many = format!("{}\n{{", many(MAX_EVENTS_PER_BODY + 1, "\n"));
    assert_eq!(
        decode_body(broken_many.as_bytes(), None),
        Err(BodyError::TooManyEvents {
            limit: MAX_EVENTS_PER_BODY
        })
    );
}

#[test]
fn documented_pixel_keys_are_the_decoded_ones() {
    for (key, field) in PIXEL_KEYS {
        check_pixel(&format!("{key}=7"), &format!("{field}=7"));
    }
    assert_eq!(PIXEL_KEYS.len(), 11);
}
