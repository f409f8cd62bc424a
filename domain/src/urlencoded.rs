//! Percent-decoding of query strings and form bodies (`application/x-www-form-urlencoded`: `%XX` is a byte,
//! `+` a space): the one decoder of the workspace, on the `percent-encoding` crate.
//!
//! Two strictnesses, because the callers differ:
//! * [`decode`] — for what tally itself serves (the pixel's query string, query's parameters and login form):
//!   a `%` not followed by two hex digits, or bytes that are not UTF-8 once decoded, are errors the caller
//!   answers with (`400`, a rejected pixel). `percent-encoding` alone passes a bad escape through as text, so
//!   the escapes are checked here first ([`Malformed::BadEscape`] names the byte).
//!   [`decode_path`] is the same for a path segment, where `+` stays a plus (the local cloud's S3 keys).
//! * [`decode_lossy`] — for what the local cloud relays as AWS does (a Function URL event's
//!   `queryStringParameters`) and for documents AWS sends encoded: a bad escape stays as it was, bytes that are
//!   not UTF-8 become U+FFFD, as in Lambda's events.

use std::borrow::Cow;
use std::fmt;

use percent_encoding::percent_decode_str;

/// Why [`decode`] refused a component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// The `%` at byte `at` of the input is not followed by two hex digits.
    BadEscape { at: usize },
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::BadEscape { at } => write!(
                f,
                "bad percent-encoding at byte {at}, '%' must be followed by two hex digits"
            ),
            Malformed::NotUtf8 => f.write_str("percent-encoding decodes to invalid UTF-8"),
        }
    }
}

impl std::error::Error for Malformed {}

/// One key or value, strictly: `+` is a space, `%XX` a byte, every `%` starts an escape, the result is UTF-8.
pub fn decode(component: &str) -> Result<Cow<'_, str>, Malformed> {
    strict(plus_as_space(component), component)
}

/// One path segment, strictly as [`decode`], but `+` is a plus (RFC 3986 paths: S3 keys in the local cloud).
pub fn decode_path(segment: &str) -> Result<Cow<'_, str>, Malformed> {
    strict(Cow::Borrowed(segment), segment)
}

/// `spaced` (the `original`, its pluses already decided) percent-decoded, or where it is malformed.
fn strict<'a>(spaced: Cow<'a, str>, original: &str) -> Result<Cow<'a, str>, Malformed> {
    if let Some(at) = bad_escape(original) {
        return Err(Malformed::BadEscape { at });
    }
    match spaced {
        Cow::Borrowed(text) => percent_decode_str(text)
            .decode_utf8()
            .map_err(|_| Malformed::NotUtf8),
        Cow::Owned(text) => percent_decode_str(&text)
            .decode_utf8()
            .map(|decoded| Cow::Owned(decoded.into_owned()))
            .map_err(|_| Malformed::NotUtf8),
    }
}

/// One key or value, leniently: `+` is a space, `%XX` a byte, a bad escape is kept as text, bytes that are not
/// UTF-8 become U+FFFD.
pub fn decode_lossy(component: &str) -> String {
    percent_decode_str(&plus_as_space(component))
        .decode_utf8_lossy()
        .into_owned()
}

/// The byte of the first `%` not followed by two hex digits. (The digits of a good escape are never `%`, so
/// every `%` of the input starts an escape.)
fn bad_escape(component: &str) -> Option<usize> {
    let bytes = component.as_bytes();
    let hex = |at: usize| bytes.get(at).is_some_and(u8::is_ascii_hexdigit);
    (0..bytes.len()).find(|&at| bytes[at] == b'%' && !(hex(at + 1) && hex(at + 2)))
}

/// `+` as a space (before percent-decoding: an encoded plus, `%2B`, stays a plus).
fn plus_as_space(component: &str) -> Cow<'_, str> {
    if component.contains('+') {
        Cow::Owned(component.replace('+', " "))
    } else {
        Cow::Borrowed(component)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    use proptest::prelude::*;

    #[test]
    fn strict_decoding() {
        let ok = |input: &str, expect: &str| {
            assert_eq!(decode(input).as_deref(), Ok(expect), "{input:?}")
        };
        ok("", "");
        ok("plain-text_1.2:3", "plain-text_1.2:3");
        ok("a%20b", "a b");
        ok("a+b", "a b");
        ok("%2B+%2b", "+ +");
        ok("%C3%BC", "ü");
        ok("%c3%bc", "ü");
        ok("%00", "\0");
        ok("ü", "ü");
        let bad =
            |input: &str, expect: Malformed| assert_eq!(decode(input), Err(expect), "{input:?}");
        bad("%", Malformed::BadEscape { at: 0 });
        bad("%4", Malformed::BadEscape { at: 0 });
        bad("ab%zz", Malformed::BadEscape { at: 2 });
        // Signs that `u8::from_str_radix` would take are not hex digits.
        bad("%+1", Malformed::BadEscape { at: 0 });
        bad("%-1", Malformed::BadEscape { at: 0 });
        // A multi-byte character after `%`: refused, never sliced inside the character.
        bad("%é", Malformed::BadEscape { at: 0 });
        bad("ü%2", Malformed::BadEscape { at: 2 });
        bad("%41%", Malformed::BadEscape { at: 3 });
        bad("%FF", Malformed::NotUtf8);
        bad("%C3", Malformed::NotUtf8);
        bad("%ED%A0%80", Malformed::NotUtf8); // a UTF-16 surrogate
        assert_eq!(
            Malformed::BadEscape { at: 7 }.to_string(),
            "bad percent-encoding at byte 7, '%' must be followed by two hex digits"
        );
    }

    #[test]
    fn paths_keep_their_pluses() {
        assert_eq!(decode_path("a+b%2Fc%20d").as_deref(), Ok("a+b/c d"));
        assert_eq!(decode_path("a+%zz"), Err(Malformed::BadEscape { at: 2 }));
        assert_eq!(decode_path("%ff"), Err(Malformed::NotUtf8));
    }

    #[test]
    fn lossy_decoding_keeps_what_it_cannot_read() {
        let check =
            |input: &str, expect: &str| assert_eq!(decode_lossy(input), expect, "{input:?}");
        check("a%20b", "a b");
        check("a+b", "a b");
        check("%", "%");
        check("%4", "%4");
        check("%zz", "%zz");
        check("%C3%BC", "ü");
        check("%FF", "\u{FFFD}");
        check("", "");
        check("%é", "%é");
        check("ü%2", "ü%2");
        check("%7B%22a%22%3A1%7D", "{\"a\":1}");
    }

    #[test]
    fn a_long_hostile_component_is_refused_at_its_first_bad_escape() {
        let input = format!("{}%G0{}", "%41".repeat(10_000), "%".repeat(10_000));
        assert_eq!(decode(&input), Err(Malformed::BadEscape { at: 30_000 }));
        assert_eq!(decode_lossy(&input).len(), 10_000 + 3 + 10_000);
    }

    proptest! {
        #[test]
        fn encoded_text_decodes_back(text in any::<String>()) {
            let encoded = utf8_percent_encode(&text, NON_ALPHANUMERIC).to_string();
            let decoded = decode(&encoded).map(Cow::into_owned);
            prop_assert_eq!(decoded, Ok(text.clone()));
            prop_assert_eq!(decode_lossy(&encoded), text);
        }

        #[test]
        fn any_input_is_decoded_or_refused_without_panicking(text in any::<String>()) {
            match decode(&text) {
                Ok(decoded) => prop_assert_eq!(decoded.into_owned(), decode_lossy(&text)),
                Err(Malformed::BadEscape { at }) => prop_assert_eq!(text.as_bytes()[at], b'%'),
                Err(Malformed::NotUtf8) => {
                    let lossy = decode_lossy(&text);
                    prop_assert!(lossy.contains(char::REPLACEMENT_CHARACTER), "{:?}", lossy)
                },
            }
        }
    }
}
