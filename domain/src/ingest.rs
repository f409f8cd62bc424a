//! Decoding what clients send: pixel query strings, JSON arrays, NDJSON and `navigator.sendBeacon` bodies.
//!
//! The result is [`RawEvent`]s (nothing validated yet beyond types); `collect` validates them with
//! [`RawEvent::validate`]. A body that cannot be read at all is a [`BodyError`] (the whole request fails);
//! a single bad event in a readable batch is a per-item [`FieldError`] so the rest of the batch is kept.
//!
//! The field names and pixel short keys are documented for users in `docs/events.md`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::event::{quote, FieldError, RawEvent};
use crate::urlencoded::decode as percent_decode;

/// Largest accepted body. Bigger bodies are [`BodyError::TooLarge`] (HTTP 413).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most events in one body.
pub const MAX_EVENTS_PER_BODY: usize = 1000;
/// The header CloudFront adds to every request it forwards to collect when the stack has the edge, holding the
/// stack's origin secret; collect refuses requests without it then (`docs/events.md`, "Behind the edge").
pub const ORIGIN_HEADER: &str = "x-tally-origin";
/// Longest accepted pixel query string (browsers and CDNs cut URLs around 8 KB anyway).
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// A body that cannot be decoded at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "body is {actual} bytes, more than the limit of {limit}; split it into smaller batches"
    )]
    TooLarge { limit: usize, actual: usize },
    #[error("more than {limit} events in one body; split it into smaller batches")]
    TooManyEvents { limit: usize },
    #[error("malformed body: {0}")]
    Malformed(String),
    #[error("empty body, send at least one event")]
    Empty,
}

/// One decoded item of a body: the raw event, or what is wrong with it.
pub type Item = Result<RawEvent, FieldError>;

// ---------------------------------------------------------------------------------------------------------
// Pixel query strings

/// The pixel's short keys (`GET /p.gif?c=…&a=…&e=impression`), in documentation order: (key, field).
pub const PIXEL_KEYS: [(&str, &str); 11] = [
    ("i", "id"),
    ("e", "kind"),
    ("c", "campaign_id"),
    ("a", "ad_id"),
    ("p", "placement_id"),
    ("u", "user_id"),
    ("t", "client_ts_ms"),
    ("m", "cost_micros"),
    ("v", "value_micros"),
    ("g", "country"),
    ("d", "device"),
];

/// Decodes a pixel query string (with or without the leading `?`) into a raw event.
///
/// Keys are the short keys of [`PIXEL_KEYS`]; `cb` and keys starting with `_` (cache busters) are ignored, and
/// so are the signature's `kid`, `exp` and `sig` (checked by [`crate::signing::verify_pixel`]);
/// any other key, a key given twice, bad percent-encoding or a non-numeric number is an error. The user agent
/// is not part of the query: `collect` takes it from the request header.
pub fn decode_pixel(query: &str) -> Result<RawEvent, FieldError> {
    const Q: &str = "query";
    let query = query.strip_prefix('?').unwrap_or(query);
    if query.len() > MAX_QUERY_BYTES {
        return Err(FieldError::new(
            Q,
            format!(
                "longer than {MAX_QUERY_BYTES} bytes ({}); send big batches as a JSON POST",
                query.len()
            ),
        ));
    }
    let mut raw = RawEvent::default();
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key).map_err(|bad| FieldError::new(Q, bad.to_string()))?;
        if key == "cb"
            || key.starts_with('_')
            || crate::signing::SIGNATURE_KEYS.contains(&key.as_ref())
        {
            continue;
        }
        let Some(field) = Field::from_pixel_key(&key) else {
            return Err(FieldError::new(
                Q,
                format!(
                    "unknown parameter {}, the pixel keys are i e c a p u t m v g d (see docs/events.md)",
                    quote(&key)
                ),
            ));
        };
        let name = field.name();
        let value = percent_decode(value).map_err(|bad| FieldError::new(name, bad.to_string()))?;
        field.set(&mut raw, Scalar::Str(value.into_owned()))?;
    }
    Ok(raw)
}

// ---------------------------------------------------------------------------------------------------------
// Fields shared by the pixel and the JSON decoders

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Id,
    Kind,
    Campaign,
    Ad,
    Placement,
    User,
    ClientTs,
    Cost,
    Value,
    Country,
    Device,
    UserAgent,
}

impl Field {
    fn from_pixel_key(key: &str) -> Option<Self> {
        Some(match key {
            "i" => Field::Id,
            "e" => Field::Kind,
            "c" => Field::Campaign,
            "a" => Field::Ad,
            "p" => Field::Placement,
            "u" => Field::User,
            "t" => Field::ClientTs,
            "m" => Field::Cost,
            "v" => Field::Value,
            "g" => Field::Country,
            "d" => Field::Device,
            _ => return None,
        })
    }

    fn from_json_name(s: &str) -> Option<Self> {
        Some(match s {
            "id" => Field::Id,
            "kind" => Field::Kind,
            "campaign_id" => Field::Campaign,
            "ad_id" => Field::Ad,
            "placement_id" => Field::Placement,
            "user_id" => Field::User,
            "client_ts_ms" => Field::ClientTs,
            "cost_micros" => Field::Cost,
            "value_micros" => Field::Value,
            "country" => Field::Country,
            "device" => Field::Device,
            "user_agent" => Field::UserAgent,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Field::Id => "id",
            Field::Kind => "kind",
            Field::Campaign => "campaign_id",
            Field::Ad => "ad_id",
            Field::Placement => "placement_id",
            Field::User => "user_id",
            Field::ClientTs => "client_ts_ms",
            Field::Cost => "cost_micros",
            Field::Value => "value_micros",
            Field::Country => "country",
            Field::Device => "device",
            Field::UserAgent => "user_agent",
        }
    }

    /// Stores a value; `null` means absent; a field given twice is an error.
    fn set(self, raw: &mut RawEvent, v: Scalar) -> Result<(), FieldError> {
        if matches!(v, Scalar::Null) {
            return Ok(());
        }
        let name = self.name();
        let twice = || FieldError::new(name, "given twice, give each field once");
        macro_rules! put {
            ($slot:expr, $value:expr) => {{
                if $slot.is_some() {
                    return Err(twice());
                }
                $slot = Some($value);
            }};
        }
        match self {
            Field::Id => put!(raw.id, v.text(name)?),
            Field::Kind => put!(raw.kind, v.text(name)?),
            Field::Campaign => put!(raw.campaign_id, v.text(name)?),
            Field::Ad => put!(raw.ad_id, v.text(name)?),
            Field::Placement => put!(raw.placement_id, v.text(name)?),
            Field::User => put!(raw.user_id, v.text(name)?),
            Field::ClientTs => put!(raw.client_ts_ms, v.int(name)?),
            Field::Cost => put!(raw.cost_micros, v.uint(name)?),
            Field::Value => put!(raw.value_micros, v.uint(name)?),
            Field::Country => put!(raw.country, v.text(name)?),
            Field::Device => put!(raw.device, v.text(name)?),
            Field::UserAgent => put!(raw.user_agent, v.text(name)?),
        }
        Ok(())
    }
}

/// Any JSON value, as far as a field needs to know.
#[derive(Debug)]
enum Scalar {
    Str(String),
    U(u64),
    I(i64),
    F(f64),
    Bool,
    Null,
    Array,
    Object,
}

impl Scalar {
    fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => format!("the string {}", quote(s)),
            Scalar::U(n) => format!("the number {n}"),
            Scalar::I(n) => format!("the number {n}"),
            Scalar::F(n) => format!("the number {n}"),
            Scalar::Bool => "a boolean".to_owned(),
            Scalar::Null => "null".to_owned(),
            Scalar::Array => "an array".to_owned(),
            Scalar::Object => "an object".to_owned(),
        }
    }

    /// Strings as they are; integers are accepted for ids (numeric campaign ids are common).
    fn text(self, field: &'static str) -> Result<String, FieldError> {
        match self {
            Scalar::Str(s) => Ok(s),
            Scalar::U(n) => Ok(n.to_string()),
            Scalar::I(n) => Ok(n.to_string()),
            other => Err(FieldError::new(
                field,
                format!("expected a string, got {}", other.describe()),
            )),
        }
    }

    /// Non-negative integers, as JSON numbers or decimal strings.
    fn uint(self, field: &'static str) -> Result<u64, FieldError> {
        match self {
            Scalar::U(n) => Ok(n),
            Scalar::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse()
                .map_err(|_| FieldError::new(field, format!("{} is too large", quote(&s)))),
            Scalar::I(n) => Err(FieldError::new(
                field,
                format!("{n} is negative, give 0 or more"),
            )),
            other => Err(FieldError::new(
                field,
                format!(
                    "expected a whole non-negative number of micros, got {}",
                    other.describe()
                ),
            )),
        }
    }

    /// Integers, as JSON numbers or decimal strings (unix milliseconds).
    fn int(self, field: &'static str) -> Result<i64, FieldError> {
        let parse = |s: &str| -> Option<i64> {
            let digits = s.strip_prefix('-').unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        match self {
            Scalar::I(n) => Ok(n),
            Scalar::U(n) => {
                i64::try_from(n).map_err(|_| FieldError::new(field, format!("{n} is too large")))
            }
            Scalar::Str(s) => parse(&s).ok_or_else(|| {
                FieldError::new(
                    field,
                    format!(
                        "expected whole unix milliseconds, got {}",
                        Scalar::Str(s.clone()).describe()
                    ),
                )
            }),
            other => Err(FieldError::new(
                field,
                format!("expected whole unix milliseconds, got {}", other.describe()),
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::U(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(if v >= 0 {
                    Scalar::U(v as u64)
                } else {
                    Scalar::I(v)
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::F(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Scalar, D::Error> {
                Scalar::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key: a known field, an extension key (`x_…` or `_…`, ignored) or an unknown one.
enum Key {
    Known(Field),
    Extension,
    Unknown(String),
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match Field::from_json_name(v) {
                    Some(f) => Key::Known(f),
                    None if v.starts_with("x_") || v.starts_with('_') => Key::Extension,
                    None => Key::Unknown(quote(v)),
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// One element of a body: an object becomes a raw event; type mistakes inside it and non-objects become a
/// per-item error. Only broken JSON syntax fails the deserializer itself.
struct Element(Item);

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        fn not_object<E>(what: &str) -> Result<Element, E> {
            Ok(Element(Err(FieldError::new(
                "event",
                format!("expected a JSON object, got {what}"),
            ))))
        }
        impl<'de> Visitor<'de> for V {
            type Value = Element;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
                let mut raw = RawEvent::default();
                let mut first_error = None;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Known(field) => {
                            let v: Scalar = map.next_value()?;
                            if first_error.is_none() {
                                first_error = field.set(&mut raw, v).err();
                            }
                        }
                        Key::Extension => {
                            map.next_value::<IgnoredAny>()?;
                        }
                        Key::Unknown(name) => {
                            map.next_value::<IgnoredAny>()?;
                            if first_error.is_none() {
                                first_error = Some(FieldError::new(
                                    "event",
                                    format!(
                                        "unknown field {name} (see docs/events.md; prefix your own fields with x_)"
                                    ),
                                ));
                            }
                        }
                    }
                }
                Ok(Element(match first_error {
                    None => Ok(raw),
                    Some(e) => Err(e),
                }))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                not_object("an array")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Element, E> {
                not_object("a string")
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Element, E> {
                not_object("a number")
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Element, E> {
                not_object("a number")
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Element, E> {
                not_object("a number")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Element, E> {
                not_object("a boolean")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Element, E> {
                not_object("null")
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Bodies

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Look at the first byte: `[` is an array, `{` one object or NDJSON.
    Sniff,
    /// One object per line.
    Lines,
}

fn format_of(content_type: Option<&str>) -> Result<Format, BodyError> {
    let Some(ct) = content_type else {
        return Ok(Format::Sniff);
    };
    let mut parts = ct.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"').to_ascii_lowercase();
            if charset != "utf-8" && charset != "utf8" && charset != "us-ascii" {
                return Err(BodyError::Malformed(format!(
                    "charset {} is not supported, send UTF-8",
                    quote(&charset)
                )));
            }
        }
    }
    match media.as_str() {
        "" | "application/json" | "text/plain" | "text/json" => Ok(Format::Sniff),
        "application/x-ndjson" | "application/ndjson" | "application/jsonl"
        | "application/x-jsonlines" | "application/jsonlines" => Ok(Format::Lines),
        other => Err(BodyError::Malformed(format!(
            "content type {} is not supported, send application/json, application/x-ndjson or text/plain",
            quote(other)
        ))),
    }
}

/// Decodes a JSON array, NDJSON (one object per line) or a sendBeacon `text/plain` body (either of those).
///
/// Returns one item per event, in body order (blank NDJSON lines are not events), so that a mixed batch keeps
/// its valid events. `content_type` may be `None`; `application/json`, `text/plain` and no type are sniffed
/// (`[` starts an array, `{` one object or NDJSON); the NDJSON types are read line by line.
pub fn decode_body(body: &[u8], content_type: Option<&str>) -> Result<Vec<Item>, BodyError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BodyError::TooLarge {
            limit: MAX_BODY_BYTES,
            actual: body.len(),
        });
    }
    let format = format_of(content_type)?;
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let body = body.trim_ascii();
    let Some(&first) = body.first() else {
        return Err(BodyError::Empty);
    };
    let items = match (format, first) {
        (Format::Lines, _) => decode_objects(body, true)?,
        (Format::Sniff, b'[') => decode_array(body)?,
        (Format::Sniff, b'{') => decode_objects(body, false)?,
        (Format::Sniff, _) => {
            return Err(BodyError::Malformed(format!(
                "expected a JSON array, a JSON object or NDJSON, but the body starts with {}",
                quote(&String::from_utf8_lossy(&body[..body.len().min(16)]))
            )))
        }
    };
    if items.is_empty() {
        return Err(BodyError::Empty);
    }
    Ok(items)
}

/// A guess of the number of events in a body (an event object takes at least ~40 bytes in practice), so the item
/// vector rarely grows; bounded by the event limit.
fn capacity_for(body: &[u8]) -> usize {
    (body.len() / 48 + 1).min(MAX_EVENTS_PER_BODY)
}

fn invalid_json(e: &serde_json::Error) -> String {
    format!("invalid JSON: {e}")
}

fn decode_array(body: &[u8]) -> Result<Vec<Item>, BodyError> {
    struct Bounded<'a>(&'a mut bool, usize);
    impl<'de> Visitor<'de> for Bounded<'_> {
        type Value = Vec<Item>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON array of event objects")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Item>, A::Error> {
            let mut out = Vec::with_capacity(self.1);
            while let Some(Element(item)) = seq.next_element()? {
                if out.len() == MAX_EVENTS_PER_BODY {
                    *self.0 = true;
                    return Err(de::Error::custom("too many events"));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    let mut too_many = false;
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = de.deserialize_seq(Bounded(&mut too_many, capacity_for(body)));
    if too_many {
        return Err(BodyError::TooManyEvents {
            limit: MAX_EVENTS_PER_BODY,
        });
    }
    let items = result.map_err(|e| BodyError::Malformed(invalid_json(&e)))?;
    de.end()
        .map_err(|e| BodyError::Malformed(invalid_json(&e)))?;
    Ok(items)
}

/// One object, or several separated by whitespace (NDJSON is a special case), read with one streaming parser.
/// When the JSON is broken somewhere, reads again line by line so one broken line costs only its own event:
/// always for a declared NDJSON body (`lines`), and for a sniffed body when every line starts with `{`.
fn decode_objects(body: &[u8], lines_declared: bool) -> Result<Vec<Item>, BodyError> {
    let mut out = Vec::with_capacity(capacity_for(body));
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Element>();
    loop {
        let start = stream.byte_offset();
        match stream.next() {
            None => return Ok(out),
            Some(Ok(Element(item))) => {
                // In declared NDJSON an event is one line: an element spanning lines (for example a broken line
                // that happens to complete the next one) means the lines must be read one by one.
                if lines_declared
                    && body[start..stream.byte_offset()]
                        .trim_ascii()
                        .contains(&b'\n')
                {
                    return decode_lines(body);
                }
                if out.len() == MAX_EVENTS_PER_BODY {
                    return Err(BodyError::TooManyEvents {
                        limit: MAX_EVENTS_PER_BODY,
                    });
                }
                out.push(item);
            }
            Some(Err(e)) => {
                return if lines_declared || lines(body).all(|l| l.first() == Some(&b'{')) {
                    decode_lines(body)
                } else {
                    Err(BodyError::Malformed(invalid_json(&e)))
                };
            }
        }
    }
}

fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|l| !l.is_empty())
}

fn decode_lines(body: &[u8]) -> Result<Vec<Item>, BodyError> {
    let mut out = Vec::with_capacity(capacity_for(body));
    for line in lines(body) {
        if out.len() == MAX_EVENTS_PER_BODY {
            return Err(BodyError::TooManyEvents {
                limit: MAX_EVENTS_PER_BODY,
            });
        }
        out.push(match serde_json::from_slice::<Element>(line) {
            Ok(Element(item)) => item,
            Err(e) => Err(FieldError::new("event", invalid_json(&e))),
        });
    }
    Ok(out)
}

/// Decodes one JSON object leniently (numbers as strings, `null` as absent, `x_` fields ignored), as
/// [`decode_body`] does for each element.
pub fn decode_object(json: &[u8]) -> Item {
    match serde_json::from_slice::<Element>(json) {
        Ok(Element(item)) => item,
        Err(e) => Err(FieldError::new("event", invalid_json(&e))),
    }
}
