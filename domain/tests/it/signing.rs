//! Authenticated tracking: HMAC, the test vectors of `docs/events.md`, canonicalization, hostile pixel
//! parameters, bearer keys and the key ring across a rotation.

use tally_domain::event::{check_event, RawEvent, Trust};
use tally_domain::signing::{
    canonical_query, check_bearer, hmac_sha256, pixel_signature, sign_pixel, verify_pixel,
    KeyError, KeyRing, KeyRingError, SignError, SignatureError,
};

use crate::fixtures::event;

const SECRET: &str = "test-secret-0123456789abcdef";
const EXP: u64 = 1_795_698_300;
const NOW_S: u64 = 1_795_698_000;

fn ring(json: &str) -> KeyRing {
    let mut ring = KeyRing::default();
    ring.add_version(json).expect("a valid keys secret");
    ring
}

fn pub1() -> KeyRing {
    ring(&format!(r#"{{"pub-1": "{SECRET}"}}"#))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn hmac_matches_rfc_4231() {
    // Test case 1 and 6 (a key longer than the block) of RFC 4231.
    assert_eq!(
        hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    assert_eq!(
        hex(&hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First"
        )),
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
    );
}

/// (key id, secret, parameters, exp, canonical form, sig).
type Vector<'a> = (
    &'a str,
    &'a str,
    Vec<(&'a str, &'a str)>,
    u64,
    &'a str,
    &'a str,
);

/// The vectors of `docs/events.md` ("Test vectors"): (key id, secret, parameters, exp) → canonical, sig.
#[test]
fn documented_test_vectors() {
    let long = "L".repeat(100);
    let vectors: [Vector<'_>; 3] = [
        (
            "pub-1",
            SECRET,
            vec![("c", "cmp-1"), ("a", "ad-9"), ("e", "impression")],
            EXP,
            "a=ad-9&c=cmp-1&e=impression&exp=1795698300&kid=pub-1",
            "3f9a07729ace065a0ee76ce36b67ce682ec851f0511d70f7b69f9af44c6e41a7",
        ),
        (
            "pub-1",
            SECRET,
            vec![
                ("c", "cmp-1"),
                ("a", "ad-9"),
                ("e", "click"),
                ("u", "user 42/é"),
                ("m", "2500"),
                ("cb", "77"),
            ],
            EXP,
            "a=ad-9&c=cmp-1&e=click&exp=1795698300&kid=pub-1&m=2500&u=user%2042%2F%C3%A9",
            "406fbdcc04bec98ca1f9c8d076c5c682f975f186d7e43af45242d118cd573804",
        ),
        (
            "ad-server.eu",
            &long,
            vec![
                ("e", "conversion"),
                ("c", "cmp-2"),
                ("a", "ad-1"),
                ("v", "1500000"),
                ("m", "0"),
            ],
            4_102_444_800,
            "a=ad-1&c=cmp-2&e=conversion&exp=4102444800&kid=ad-server.eu&m=0&v=1500000",
            "08f96e35513f5135ed0c8c5bfd057362b6aadeda0c53ae608d7176a752f1de44",
        ),
    ];
    for (kid, secret, params, exp, canonical, sig) in vectors {
        assert_eq!(pixel_signature(secret, canonical), sig, "{canonical}");
        let signed = sign_pixel(&params, kid, secret, exp).expect("signs");
        assert_eq!(signed, format!("{canonical}&sig={sig}"));
        let ring = ring(&format!(r#"{{"{kid}": "{secret}"}}"#));
        assert_eq!(verify_pixel(&signed, NOW_S, &ring), Ok(kid.to_owned()));
    }
}

#[test]
fn canonical_form_ignores_order_encoding_and_cache_busters() {
    let signed = sign_pixel(
        &[("c", "cmp-1"), ("a", "ad-9"), ("e", "impression")],
        "pub-1",
        SECRET,
        EXP,
    )
    .expect("signs");
    let sig = signed.rsplit_once("sig=").expect("has sig").1;
    // The same parameters in another order, with form encoding and cache busters added after signing.
    for query in [
        format!("?sig={sig}&kid=pub-1&exp={EXP}&e=impression&c=cmp-1&a=ad-9"),
        format!(
            "e=impressio%6E&c=cmp%2D1&a=ad-9&&cb=123&_r=x&kid=pub-1&exp={EXP}&sig={}",
            sig.to_uppercase()
        ),
    ] {
        assert_eq!(
            verify_pixel(&query, NOW_S, &pub1()),
            Ok("pub-1".to_owned()),
            "{query}"
        );
    }
    // `+` is a space, and a space is %20 in the canonical form.
    assert_eq!(
        canonical_query(&[("u", "a b"), ("c", "x+y")]),
        Ok("c=x%2By&u=a%20b".to_owned())
    );
}

#[test]
fn tampering_is_detected() {
    let signed = sign_pixel(
        &[("c", "cmp-1"), ("a", "ad-9"), ("e", "click"), ("m", "1")],
        "pub-1",
        SECRET,
        EXP,
    )
    .expect("signs");
    assert_eq!(
        verify_pixel(&signed, NOW_S, &pub1()),
        Ok("pub-1".to_owned())
    );
    for (from, to) in [
        ("m=1", "m=100000000"),
        ("c=cmp-1", "c=cmp-2"),
        ("e=click", "e=impression"),
    ] {
        let forged = signed.replace(from, to);
        assert_eq!(
            verify_pixel(&forged, NOW_S, &pub1()),
            Err(SignatureError::BadSignature),
            "{forged}"
        );
    }
    // An added signed parameter, a dropped one, a later expiry.
    for forged in [
        format!("{signed}&u=u-1"),
        signed.replace("a=ad-9&", ""),
        signed.replace(&EXP.to_string(), &(EXP + 3600).to_string()),
    ] {
        assert_eq!(
            verify_pixel(&forged, NOW_S, &pub1()),
            Err(SignatureError::BadSignature),
            "{forged}"
        );
    }
    // Another secret.
    let other = ring(r#"{"pub-1": "another-secret-0123456789"}"#);
    assert_eq!(
        verify_pixel(&signed, NOW_S, &other),
        Err(SignatureError::BadSignature)
    );
}

#[test]
fn expiry_unknown_keys_and_missing_parts() {
    let signed = sign_pixel(&[("c", "cmp-1")], "pub-1", SECRET, EXP).expect("signs");
    assert_eq!(
        verify_pixel(&signed, EXP, &pub1()),
        Ok("pub-1".to_owned()),
        "valid through exp"
    );
    assert_eq!(
        verify_pixel(&signed, EXP + 1, &pub1()),
        Err(SignatureError::Expired {
            exp: EXP,
            now: EXP + 1
        })
    );
    let wrong_kid = ring(&format!(r#"{{"pub-2": "{SECRET}"}}"#));
    assert_eq!(
        verify_pixel(&signed, NOW_S, &wrong_kid),
        Err(SignatureError::UnknownKey("\"pub-1\"".to_owned()))
    );
    assert_eq!(
        verify_pixel("c=cmp-1&a=ad-9", NOW_S, &pub1()),
        Err(SignatureError::NotSigned)
    );
    let reason = |q: &str| verify_pixel(q, NOW_S, &pub1()).map_err(|e| e.to_string());
    let sig = "0".repeat(64);
    assert_eq!(
        reason(&format!("c=1&exp={EXP}&sig={sig}")),
        Err("malformed signature: sig without kid".to_owned())
    );
    assert_eq!(
        reason(&format!("c=1&kid=pub-1&sig={sig}")),
        Err("malformed signature: sig without exp".to_owned())
    );
    assert_eq!(
        reason(&format!("c=1&kid=pub-1&exp={EXP}&sig=xyz")),
        Err("malformed signature: sig is not 64 hex digits".to_owned())
    );
    assert_eq!(
        reason(&format!("c=1&kid=pub-1&exp={EXP}&sig={}", "g".repeat(64))),
        Err("malformed signature: sig is not 64 hex digits".to_owned())
    );
}

#[test]
fn hostile_parameters() {
    let signed = sign_pixel(&[("c", "cmp-1"), ("m", "5")], "pub-1", SECRET, EXP).expect("signs");
    let reason = |q: &str| verify_pixel(q, NOW_S, &pub1()).map_err(|e| e.reason());
    // Repeated parameters: a second m, sig, kid or exp is never read as signed.
    for repeated in [
        "&m=100000000",
        "&m=5",
        "&sig=00",
        "&kid=pub-2",
        &format!("&exp={EXP}"),
    ] {
        assert_eq!(
            reason(&format!("{signed}{repeated}")),
            Err("malformed"),
            "{repeated}"
        );
    }
    // exp overflow, negative, not digits.
    for exp in [
        "18446744073709551616",
        "99999999999999999999999",
        "-1",
        "1e9",
        "",
        "+5",
    ] {
        let q = signed.replace(&format!("exp={EXP}"), &format!("exp={exp}"));
        assert_eq!(reason(&q), Err("malformed"), "exp={exp}");
    }
    // u64::MAX is a valid (if silly) expiry, but not this signature's.
    let q = signed.replace(&format!("exp={EXP}"), &format!("exp={}", u64::MAX));
    assert_eq!(reason(&q), Err("bad-signature"));
    // Huge values: over the query limit is malformed, never a panic or a slow path.
    let huge = format!("{signed}&u={}", "x".repeat(9000));
    assert_eq!(reason(&huge), Err("malformed"));
    // Bad percent-encoding, invalid UTF-8.
    assert_eq!(reason(&format!("{signed}&u=%zz")), Err("malformed"));
    assert_eq!(reason(&format!("{signed}&u=%ff")), Err("malformed"));
    // A key id with characters outside the id rule is simply unknown.
    let q = signed.replace("kid=pub-1", "kid=pub%201");
    assert_eq!(reason(&q), Err("unknown-key"));
}

#[test]
fn signer_refuses_bad_input() {
    let p = [("c", "cmp-1")];
    assert!(matches!(
        sign_pixel(&p, "pub 1", SECRET, EXP),
        Err(SignError::KeyId(_))
    ));
    assert!(matches!(
        sign_pixel(&p, "a:b", SECRET, EXP),
        Err(SignError::KeyId(_))
    ));
    assert_eq!(
        sign_pixel(&p, "pub-1", "short", EXP),
        Err(SignError::Secret)
    );
    assert_eq!(
        sign_pixel(&[("sig", "x")], "pub-1", SECRET, EXP).map_err(|e| e.to_string()),
        Err("parameter \"sig\" is set by the signer; leave it out".to_owned())
    );
    assert!(matches!(
        sign_pixel(&[("c", "1"), ("c", "2")], "pub-1", SECRET, EXP),
        Err(SignError::Canonical(_))
    ));
}

#[test]
fn bearer_keys_and_rotation() {
    let mut ring = ring(
        r#"{"adserver-1": "new-secret-0123456789abcdef", "adserver-2": "other-secret-0123456789ab"}"#,
    );
    ring.add_version(r#"{"adserver-1": "old-secret-0123456789abcdef"}"#)
        .expect("previous version");
    let check = |h: &str| check_bearer(h, &ring);
    assert_eq!(
        check("Bearer adserver-1:new-secret-0123456789abcdef"),
        Ok("adserver-1".to_owned())
    );
    assert_eq!(
        check("bearer adserver-1:old-secret-0123456789abcdef"),
        Ok("adserver-1".to_owned())
    );
    assert_eq!(
        check("Bearer adserver-2:other-secret-0123456789ab"),
        Ok("adserver-2".to_owned())
    );
    assert_eq!(
        check("Bearer adserver-2:new-secret-0123456789abcdef"),
        Err(KeyError::WrongSecret("\"adserver-2\"".to_owned()))
    );
    assert_eq!(
        check("Bearer adserver-9:new-secret-0123456789abcdef"),
        Err(KeyError::UnknownKey("\"adserver-9\"".to_owned()))
    );
    for malformed in [
        "",
        "Bearer",
        "Basic YWI6Y2Q=",
        "Bearer new-secret-0123456789abcdef",
        "Bearer :x",
        "Bearer a b:c",
    ] {
        assert_eq!(check(malformed), Err(KeyError::Malformed), "{malformed:?}");
    }
    // The error never carries the secret that was sent.
    let message = check("Bearer adserver-1:guess-0123456789abcdef")
        .expect_err("wrong")
        .to_string();
    assert!(!message.contains("guess"), "{message}");
    // After the rotation completes, only the current version is loaded: the old secret is refused.
    let current = self::ring(r#"{"adserver-1": "new-secret-0123456789abcdef"}"#);
    assert!(check_bearer("Bearer adserver-1:old-secret-0123456789abcdef", &current).is_err());
}

#[test]
fn key_ring_refuses_bad_versions_whole() {
    let mut ring = KeyRing::default();
    for (json, expect) in [
        ("[]", "the keys secret is not a JSON object of key id to secret (not an object); store {\"<key id>\": \"<secret>\"}"),
        ("{", "the keys secret is not a JSON object of key id to secret (invalid JSON: EOF while parsing an object at line 1 column 1); store {\"<key id>\": \"<secret>\"}"),
        (r#"{"a b": "0123456789abcdef0"}"#, "key id \"a b\": character \" \" not allowed, use only A-Z a-z 0-9 . _ : -"),
        (r#"{"ok": "0123456789abcdef0", "k": "short"}"#, "key \"k\": the secret must be a string of 16 to 256 printable ASCII characters without spaces or ':'"),
        (r#"{"k": 12345678901234567890}"#, "key \"k\": the secret must be a string of 16 to 256 printable ASCII characters without spaces or ':'"),
    ] {
        assert_eq!(ring.add_version(json).map_err(|e| e.to_string()), Err(expect.to_owned()), "{json}");
    }
    assert!(ring.is_empty(), "a refused version adds nothing");
    let many: String = (0..1001)
        .map(|i| format!(r#""k{i}": "0123456789abcdef0""#))
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        ring.add_version(&format!("{{{many}}}")),
        Err(KeyRingError::TooManyKeys(1001))
    );
}

#[test]
fn money_only_from_trusted_events() {
    let raw = RawEvent {
        kind: Some("conversion".to_owned()),
        campaign_id: Some("cmp-1".to_owned()),
        ad_id: Some("ad-1".to_owned()),
        cost_micros: Some(100_000_000),
        value_micros: Some(1_000_000_000_000),
        ..RawEvent::default()
    };
    let id = &mut || "id-1".to_owned();
    let unsigned = raw
        .clone()
        .validate_as(Trust::Unsigned, 0, id)
        .expect("valid");
    assert_eq!(
        (unsigned.cost_micros, unsigned.value_micros, unsigned.trust),
        (0, 0, Trust::Unsigned)
    );
    for trust in [Trust::Signed, Trust::Authenticated] {
        let e = raw.clone().validate_as(trust, 0, id).expect("valid");
        assert_eq!(
            (e.cost_micros, e.value_micros, e.trust),
            (100_000_000, 1_000_000_000_000, trust)
        );
    }
    // An unsigned event's money is still checked: a client's mistake is reported.
    let over = RawEvent {
        cost_micros: Some(100_000_001),
        ..raw
    };
    assert!(over.validate_as(Trust::Unsigned, 0, id).is_err());
    // An unsigned event with money breaks the event's invariant (the stream decoder refuses it).
    let forged = tally_domain::event::Event {
        trust: Trust::Unsigned,
        ..event("e1")
    };
    assert_eq!(
        check_event(&forged).map_err(|e| e.to_string()),
        Err("cost_micros: money on an unsigned event; money is only taken from authenticated posts and signed pixels".to_owned())
    );
}
