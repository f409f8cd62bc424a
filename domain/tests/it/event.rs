//! Validation: every field's rule, with the exact error users see.

use tally_domain::event::{
    check_user_agent, header_user_agent, DeviceClass, EventKind, FieldError, RawEvent,
};
use tally_domain::ingest::decode_object;

use crate::fixtures::{event, NOW};

const BASE: &str = r#""kind":"impression","campaign_id":"cmp-1","ad_id":"ad-1""#;

/// Decodes `{BASE, extra}` leniently, validates at NOW with generated id `gen-1`, and compares the outcome
/// (`ok` or the error's Display) with `expect`.
#[track_caller]
fn check(extra: &str, expect: &str) {
    let json = if extra.is_empty() {
        format!("{{{BASE}}}")
    } else {
        format!("{{{BASE},{extra}}}")
    };
    check_whole(&json, expect);
}

/// Like `check`, with the whole object given.
#[track_caller]
fn check_whole(json: &str, expect: &str) {
    let got = decode_object(json.as_bytes())
        .and_then(|raw| raw.validate(NOW, &mut || "gen-1".to_owned()))
        .map(|_| "ok".to_owned())
        .unwrap_or_else(|e| e.to_string());
    assert_eq!(got, expect, "input: {json}");
}

#[test]
fn required_fields() {
    check("", "ok");
    check_whole(
        r#"{"campaign_id":"c","ad_id":"a"}"#,
        "kind: missing, it is required",
    );
    check_whole(
        r#"{"kind":"click","ad_id":"a"}"#,
        "campaign_id: missing, it is required",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"c"}"#,
        "ad_id: missing, it is required",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"c","ad_id":null}"#,
        "ad_id: missing, it is required",
    );
    check_whole("{}", "kind: missing, it is required");
}

#[test]
fn ids() {
    let c64 = "c".repeat(64);
    let c65 = "c".repeat(65);
    check_whole(
        &format!(r#"{{"kind":"click","campaign_id":"{c64}","ad_id":"a"}}"#),
        "ok",
    );
    check_whole(
        &format!(r#"{{"kind":"click","campaign_id":"{c65}","ad_id":"a"}}"#),
        "campaign_id: longer than 64 characters (65)",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"","ad_id":"a"}"#,
        "campaign_id: empty, give 1 to 64 characters",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"a b","ad_id":"a"}"#,
        r#"campaign_id: character " " not allowed, use only A-Z a-z 0-9 . _ : -"#,
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"c","ad_id":"ad/1"}"#,
        r#"ad_id: character "/" not allowed, use only A-Z a-z 0-9 . _ : -"#,
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"c","ad_id":"é"}"#,
        r#"ad_id: character "é" not allowed, use only A-Z a-z 0-9 . _ : -"#,
    );
    check_whole(
        r#"{"kind":"click","campaign_id":"c#1","ad_id":"a"}"#,
        r##"campaign_id: character "#" not allowed, use only A-Z a-z 0-9 . _ : -"##,
    );
    check(r#""id":"ev-1.a_b:c""#, "ok");
    check(r#""id":"""#, "id: empty, give 1 to 64 characters");
    check(
        r#""id":"x\u0000y""#,
        r#"id: character "\0" not allowed, use only A-Z a-z 0-9 . _ : -"#,
    );
    check(r#""placement_id":"pub:1""#, "ok");
    check(
        r#""placement_id":"pub 1""#,
        r#"placement_id: character " " not allowed, use only A-Z a-z 0-9 . _ : -"#,
    );
    // Numeric ids are accepted and kept as their decimal text.
    check_whole(r#"{"kind":"click","campaign_id":12345,"ad_id":7}"#, "ok");
    check_whole(
        r#"{"kind":"click","campaign_id":1.5,"ad_id":7}"#,
        "campaign_id: expected a string, got the number 1.5",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":true,"ad_id":7}"#,
        "campaign_id: expected a string, got a boolean",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":["c"],"ad_id":7}"#,
        "campaign_id: expected a string, got an array",
    );
    check_whole(
        r#"{"kind":"click","campaign_id":{"a":1},"ad_id":7}"#,
        "campaign_id: expected a string, got an object",
    );
}

#[test]
fn kinds() {
    let k = |kind: &str, expect: &str| {
        check_whole(
            &format!(r#"{{"kind":"{kind}","campaign_id":"c","ad_id":"a"}}"#),
            expect,
        )
    };
    k("impression", "ok");
    k("viewable", "ok");
    k("viewable_impression", "ok");
    k("click", "ok");
    k("conversion", "ok");
    k(
        "Click",
        r#"kind: unknown kind "Click", expected one of impression, viewable, click, conversion"#,
    );
    k(
        "",
        r#"kind: unknown kind "", expected one of impression, viewable, click, conversion"#,
    );
    k(
        &"x".repeat(100),
        &format!(
            r#"kind: unknown kind "{}...", expected one of impression, viewable, click, conversion"#,
            "x".repeat(40)
        ),
    );
    for kind in EventKind::ALL {
        assert_eq!(EventKind::parse(kind.as_str()), Some(kind));
    }
    for device in DeviceClass::ALL {
        assert_eq!(DeviceClass::parse(device.as_str()), Some(device));
    }
}

#[test]
fn user_ids() {
    check(r#""user_id":"u-1""#, "ok");
    check(&format!(r#""user_id":"{}""#, "u".repeat(128)), "ok");
    check(
        &format!(r#""user_id":"{}""#, "u".repeat(129)),
        "user_id: longer than 128 characters (129)",
    );
    check(
        r#""user_id":"a b""#,
        r#"user_id: character " " not allowed, use printable ASCII without whitespace"#,
    );
    check(
        r#""user_id":"a\tb""#,
        r#"user_id: character "\t" not allowed, use printable ASCII without whitespace"#,
    );
    check(
        r#""user_id":"ü""#,
        r#"user_id: character "ü" not allowed, use printable ASCII without whitespace"#,
    );
    check(r#""user_id":"""#, "user_id: empty, leave it out instead");
    check(r#""user_id":"{\"x\":1}""#, "ok");
}

#[test]
fn client_timestamps() {
    let ts = |v: i64| format!(r#""client_ts_ms":{v}"#);
    check(&ts(NOW), "ok");
    check(&ts(NOW + 300_000), "ok");
    check(
        &ts(NOW + 300_001),
        &format!("client_ts_ms: more than 5 minutes in the future ({} is 300001 ms ahead of the server clock; send unix milliseconds)", NOW + 300_001),
    );
    check(&ts(NOW - 7 * 86_400_000), "ok");
    check(
        &ts(NOW - 7 * 86_400_000 - 1),
        &format!("client_ts_ms: more than 7 days in the past ({}; send unix milliseconds, events older than 7 days are not accepted)", NOW - 7 * 86_400_000 - 1),
    );
    // Seconds instead of milliseconds: far in the past.
    check(&ts(NOW / 1000), &format!("client_ts_ms: more than 7 days in the past ({}; send unix milliseconds, events older than 7 days are not accepted)", NOW / 1000));
    check(&ts(i64::MIN), &format!("client_ts_ms: more than 7 days in the past ({}; send unix milliseconds, events older than 7 days are not accepted)", i64::MIN));
    check(&format!(r#""client_ts_ms":"{NOW}""#), "ok");
    check(
        r#""client_ts_ms":1.5e12"#,
        "client_ts_ms: expected whole unix milliseconds, got the number 1500000000000",
    );
    check(
        r#""client_ts_ms":"soon""#,
        r#"client_ts_ms: expected whole unix milliseconds, got the string "soon""#,
    );
    check(
        r#""client_ts_ms":"""#,
        r#"client_ts_ms: expected whole unix milliseconds, got the string """#,
    );
    check(
        r#""client_ts_ms":18446744073709551615"#,
        "client_ts_ms: 18446744073709551615 is too large",
    );
}

#[test]
fn money() {
    check(r#""cost_micros":0"#, "ok");
    check(r#""cost_micros":100000000"#, "ok");
    check(r#""cost_micros":"2500""#, "ok");
    check(
        r#""cost_micros":100000001"#,
        "cost_micros: 100000001 is more than 100000000 (100 USD in micros)",
    );
    check(
        r#""cost_micros":-1"#,
        "cost_micros: -1 is negative, give 0 or more",
    );
    check(
        r#""cost_micros":2.5"#,
        "cost_micros: expected a whole non-negative number of micros, got the number 2.5",
    );
    check(
        r#""cost_micros":"-1""#,
        r#"cost_micros: expected a whole non-negative number of micros, got the string "-1""#,
    );
    check(
        r#""cost_micros":"99999999999999999999999""#,
        r#"cost_micros: "99999999999999999999999" is too large"#,
    );
    check(
        r#""cost_micros":1e400"#,
        "event: invalid JSON: number out of range at line 1 column 77",
    );
    check(
        r#""value_micros":5"#,
        "value_micros: only allowed on conversion events, not on impression events",
    );
    check(r#""value_micros":0"#, "ok");
    check_whole(
        r#"{"kind":"conversion","campaign_id":"c","ad_id":"a","value_micros":1000000000000}"#,
        "ok",
    );
    check_whole(
        r#"{"kind":"conversion","campaign_id":"c","ad_id":"a","value_micros":1000000000001}"#,
        "value_micros: 1000000000001 is more than 1000000000000 (1,000,000 USD in micros)",
    );
}

#[test]
fn country_device_user_agent() {
    check(r#""country":"US""#, "ok");
    check(r#""country":"us""#, "ok");
    check(
        r#""country":"USA""#,
        r#"country: "USA" is not an ISO 3166-1 alpha-2 code, give two letters such as US or DE"#,
    );
    check(
        r#""country":"1A""#,
        r#"country: "1A" is not an ISO 3166-1 alpha-2 code, give two letters such as US or DE"#,
    );
    check(
        r#""country":"ÄÖ""#,
        r#"country: "ÄÖ" is not an ISO 3166-1 alpha-2 code, give two letters such as US or DE"#,
    );
    check(r#""device":"ctv""#, "ok");
    check(
        r#""device":"phone""#,
        r#"device: unknown device class "phone", expected one of unknown, desktop, mobile, tablet, ctv"#,
    );
    check(r#""user_agent":"Mozilla/5.0""#, "ok");
    check(&format!(r#""user_agent":"{}""#, "m".repeat(512)), "ok");
    check(
        &format!(r#""user_agent":"{}""#, "m".repeat(513)),
        "user_agent: longer than 512 bytes (513)",
    );
    check(
        &format!(r#""user_agent":"{}""#, "ü".repeat(257)),
        "user_agent: longer than 512 bytes (514)",
    );
    check(
        r#""user_agent":"a\nb""#,
        "user_agent: contains a control character",
    );
    check(
        r#""user_agent":"""#,
        "user_agent: empty, leave it out instead",
    );
}

#[test]
fn object_shape() {
    check(r#""x_sdk":"1.2","_debug":true"#, "ok");
    check(
        r#""campain_id":"c""#,
        r#"event: unknown field "campain_id" (see docs/events.md; prefix your own fields with x_)"#,
    );
    check(
        r#""received_ms":1"#,
        r#"event: unknown field "received_ms" (see docs/events.md; prefix your own fields with x_)"#,
    );
    check(
        r#""kind":"click""#,
        "kind: given twice, give each field once",
    );
    check(r#""placement_id":null"#, "ok");
    // The first failing field is reported, in body order.
    check(
        r#""cost_micros":-1,"country":"XXX""#,
        "cost_micros: -1 is negative, give 0 or more",
    );
}

#[test]
fn validated_fields_and_generated_ids() {
    let raw = decode_object(
        br#"{"kind":"viewable_impression","campaign_id":"c","ad_id":"a","country":"de","cost_micros":"7","device":"tablet"}"#,
    )
    .expect("decodes");
    let mut calls = 0;
    let e = raw
        .validate(NOW, &mut || {
            calls += 1;
            format!("gen-{calls}")
        })
        .expect("valid");
    assert_eq!(e.id, "gen-1");
    assert_eq!(e.kind, EventKind::ViewableImpression);
    assert_eq!(e.country.as_deref(), Some("DE"));
    assert_eq!(e.cost_micros, 7);
    assert_eq!(e.device, DeviceClass::Tablet);
    assert_eq!(e.received_ms, NOW);
    assert_eq!(calls, 1);

    // A client id is kept and the generator not called.
    let e2 = RawEvent::from(&event("client-id"))
        .validate(NOW, &mut || panic!("not called"))
        .expect("valid");
    assert_eq!(e2, event("client-id"));

    // A broken generator is caught rather than producing an invalid event.
    let raw = RawEvent {
        kind: Some("click".into()),
        campaign_id: Some("c".into()),
        ad_id: Some("a".into()),
        ..RawEvent::default()
    };
    let err = raw
        .validate(NOW, &mut || "has space".to_owned())
        .expect_err("invalid generated id");
    assert_eq!(err.field, "id");
}

#[test]
fn raw_event_strict_serde_shape() {
    let raw: RawEvent =
        serde_json::from_str(r#"{"kind":"click","campaign_id":"c","ad_id":"a","cost_micros":5}"#)
            .expect("parses");
    assert_eq!(raw.cost_micros, Some(5));
    assert!(serde_json::from_str::<RawEvent>(r#"{"kind":"click","bogus":1}"#).is_err());
    let back = serde_json::to_string(&raw).expect("serializes");
    assert_eq!(
        back,
        r#"{"kind":"click","campaign_id":"c","ad_id":"a","cost_micros":5}"#
    );
    assert_eq!(
        FieldError::new("campaign_id", "longer than 64 characters").to_string(),
        "campaign_id: longer than 64 characters"
    );
}

#[test]
fn header_user_agents_are_clamped_not_rejected() {
    let check = |header: &str, expect: Option<&str>| {
        let got = header_user_agent(header);
        assert_eq!(got.as_deref(), expect, "{header:?}");
        if let Some(ua) = &got {
            assert_eq!(check_user_agent(ua), Ok(()));
        }
    };
    check("Mozilla/5.0", Some("Mozilla/5.0"));
    check("  Mozilla/5.0 ", Some("Mozilla/5.0"));
    check("", None);
    check(" \t\r\n", None);
    check("a\u{0}b\u{7f}c", Some("abc"));
    check(&"m".repeat(600), Some(&"m".repeat(512)));
    check(&"ü".repeat(300), Some(&"ü".repeat(256)));
    check(
        &format!("m{}", "ü".repeat(300)),
        Some(&format!("m{}", "ü".repeat(255))),
    );
}
