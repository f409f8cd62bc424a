//! The ad event: its kinds, its fields, their limits, and validation.
//!
//! [`RawEvent`] is what arrives from the outside (every field optional, nothing checked); it is the only type
//! here with serde derives. [`RawEvent::validate`] turns it into an [`Event`], whose fields always satisfy the
//! limits documented in `docs/events.md`. Everything downstream (stream encoding, partitioning, rollups) relies
//! on those limits, so the checks live in one place: the `check_*` functions below, also used by
//! [`crate::wire::unpack`] to re-check what it reads back.

use std::fmt;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Impression,
    ViewableImpression,
    Click,
    Conversion,
}

impl EventKind {
    pub const ALL: [EventKind; 4] = [
        EventKind::Impression,
        EventKind::ViewableImpression,
        EventKind::Click,
        EventKind::Conversion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Impression => "impression",
            EventKind::ViewableImpression => "viewable",
            EventKind::Click => "click",
            EventKind::Conversion => "conversion",
        }
    }

    /// Accepts the names of [`EventKind::as_str`] and `viewable_impression`. Case-sensitive.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "impression" => EventKind::Impression,
            "viewable" | "viewable_impression" => EventKind::ViewableImpression,
            "click" => EventKind::Click,
            "conversion" => EventKind::Conversion,
            _ => return None,
        })
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of device the event came from; `Unknown` until the client says or enrichment finds out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DeviceClass {
    #[default]
    Unknown,
    Desktop,
    Mobile,
    Tablet,
    Ctv,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 5] = [
        DeviceClass::Unknown,
        DeviceClass::Desktop,
        DeviceClass::Mobile,
        DeviceClass::Tablet,
        DeviceClass::Ctv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Unknown => "unknown",
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Ctv => "ctv",
        }
    }

    /// Accepts the names of [`DeviceClass::as_str`]. Case-sensitive.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unknown" => DeviceClass::Unknown,
            "desktop" => DeviceClass::Desktop,
            "mobile" => DeviceClass::Mobile,
            "tablet" => DeviceClass::Tablet,
            "ctv" => DeviceClass::Ctv,
            _ => return None,
        })
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far an event's sender is trusted, decided by collect from the request (`docs/events.md`, "Trust"). Money
/// (`cost_micros`, `value_micros`) is only taken from trusted events: an [`Trust::Unsigned`] event always carries
/// zero ([`check_event`] refuses anything else), whatever its sender wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Trust {
    /// Posted with a valid server-to-server key (`Authorization: Bearer <key id>:<secret>`).
    Authenticated,
    /// A pixel whose signature (`kid`, `exp`, `sig`) verified and had not expired.
    Signed,
    /// Anything else: a post without a key, a pixel without a valid signature. Counts impressions and clicks,
    /// never money.
    Unsigned,
}

impl Trust {
    pub const ALL: [Trust; 3] = [Trust::Authenticated, Trust::Signed, Trust::Unsigned];

    pub fn as_str(self) -> &'static str {
        match self {
            Trust::Authenticated => "authenticated",
            Trust::Signed => "signed",
            Trust::Unsigned => "unsigned",
        }
    }

    /// Accepts the names of [`Trust::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        Trust::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether money fields are taken from events of this trust.
    pub fn takes_money(self) -> bool {
        self != Trust::Unsigned
    }
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest event, campaign, ad and placement id, in characters (all ASCII).
pub const MAX_ID_LEN: usize = 64;
/// Longest user id, in characters (all ASCII).
pub const MAX_USER_ID_LEN: usize = 128;
/// Longest user agent, in bytes.
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Highest cost of one event: 100 USD.
pub const MAX_COST_MICROS: u64 = 100_000_000;
/// Highest value of one conversion: 1,000,000 USD.
pub const MAX_VALUE_MICROS: u64 = 1_000_000_000_000;
/// How far a client clock may run ahead of ours.
pub const MAX_CLIENT_AHEAD_MS: i64 = 5 * 60 * 1000;
/// How old an event may be when it arrives.
pub const MAX_CLIENT_BEHIND_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// A validated event. Every field satisfies the limits in `docs/events.md`.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// Idempotency key: 1..=64 characters of `[A-Za-z0-9._:-]`.
    pub id: String,
    pub kind: EventKind,
    /// 1..=64 characters of `[A-Za-z0-9._:-]`.
    pub campaign_id: String,
    /// The creative: 1..=64 characters of `[A-Za-z0-9._:-]`.
    pub ad_id: String,
    /// Publisher / placement: 1..=64 characters of `[A-Za-z0-9._:-]`.
    pub placement_id: Option<String>,
    /// Pseudonymous user: 1..=128 printable ASCII characters, no whitespace.
    pub user_id: Option<String>,
    /// Unix milliseconds from the client, within [-7 days, +5 minutes] of `received_ms`.
    pub client_ts_ms: Option<i64>,
    /// Unix milliseconds, stamped by collect.
    pub received_ms: i64,
    /// `<= MAX_COST_MICROS`.
    pub cost_micros: u64,
    /// `<= MAX_VALUE_MICROS`; zero unless `kind` is `Conversion`.
    pub value_micros: u64,
    /// ISO 3166-1 alpha-2, two uppercase ASCII letters.
    pub country: Option<String>,
    pub device: DeviceClass,
    /// Raw, 1..=512 bytes, no control characters.
    pub user_agent: Option<String>,
    /// Who vouches for the event; `cost_micros` and `value_micros` are 0 unless it [`Trust::takes_money`].
    pub trust: Trust,
}

/// A field that broke a rule. Displays as `campaign_id: longer than 64 characters`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    /// The field's name as documented in `docs/events.md` (JSON name), or `event` / `query` for the whole item.
    pub field: &'static str,
    /// What is wrong, lowercase, and where it helps what is expected instead.
    pub rule: String,
}

impl FieldError {
    pub fn new(field: &'static str, rule: impl Into<String>) -> Self {
        FieldError {
            field,
            rule: rule.into(),
        }
    }
}

/// An event as decoded from the wire, before validation: every field optional, nothing checked.
///
/// The JSON field names are the ones below; see `docs/events.md`. The lenient decoder used by
/// [`crate::ingest::decode_body`] also accepts numbers given as strings and reports type mistakes per field;
/// this derive is the plain, strict shape for callers that build or parse a `RawEvent` themselves.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ts_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micros: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_micros: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

impl RawEvent {
    /// [`RawEvent::validate_as`] for a sender whose word is taken ([`Trust::Authenticated`]): tests, tools and
    /// generators that build events themselves. The collector decides trust per request and calls
    /// `validate_as`.
    pub fn validate(
        self,
        received_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<Event, FieldError> {
        self.validate_as(Trust::Authenticated, received_ms, new_id)
    }

    /// Validates every field (the first failing field, in declaration order, is reported), stamps
    /// `received_ms`, keeps the client's event id or calls `new_id` to assign one. Client timestamps more than
    /// 5 minutes in the future or 7 days in the past relative to `received_ms` are rejected.
    ///
    /// `country` is upper-cased (`us` becomes `US`). Money fields are checked against their rules whatever
    /// `trust` is (a client's mistake is reported either way), then dropped (set to 0) when `trust` does not
    /// [`Trust::takes_money`]; nothing else is rewritten.
    pub fn validate_as(
        self,
        trust: Trust,
        received_ms: i64,
        new_id: &mut dyn FnMut() -> String,
    ) -> Result<Event, FieldError> {
        let id = match self.id {
            Some(id) => {
                check_id("id", &id)?;
                id
            }
            None => {
                let id = new_id();
                // An id generator that breaks the rules is a bug of ours, but an Event must hold its invariant.
                check_id("id", &id).map_err(|e| {
                    FieldError::new("id", format!("generated id is invalid ({})", e.rule))
                })?;
                id
            }
        };
        let kind = match self.kind {
            None => return Err(missing("kind")),
            Some(k) => EventKind::parse(&k).ok_or_else(|| {
                FieldError::new(
                    "kind",
                    format!(
                        "unknown kind {}, expected one of impression, viewable, click, conversion",
                        quote(&k)
                    ),
                )
            })?,
        };
        let campaign_id = required_id("campaign_id", self.campaign_id)?;
        let ad_id = required_id("ad_id", self.ad_id)?;
        let placement_id = optional(self.placement_id, |p| check_id("placement_id", p))?;
        let user_id = optional(self.user_id, check_user_id)?;
        if let Some(ts) = self.client_ts_ms {
            check_client_ts(ts, received_ms)?;
        }
        let cost_micros = self.cost_micros.unwrap_or(0);
        check_cost(cost_micros)?;
        let value_micros = self.value_micros.unwrap_or(0);
        check_value(kind, value_micros)?;
        let country = match self.country {
            None => None,
            Some(mut c) => {
                c.make_ascii_uppercase();
                check_country(&c)?;
                Some(c)
            }
        };
        let device = match self.device {
            None => DeviceClass::Unknown,
            Some(d) => DeviceClass::parse(&d).ok_or_else(|| {
                FieldError::new(
                    "device",
                    format!(
                        "unknown device class {}, expected one of unknown, desktop, mobile, tablet, ctv",
                        quote(&d)
                    ),
                )
            })?,
        };
        let user_agent = optional(self.user_agent, check_user_agent)?;
        let (cost_micros, value_micros) = if trust.takes_money() {
            (cost_micros, value_micros)
        } else {
            (0, 0)
        };
        Ok(Event {
            id,
            kind,
            campaign_id,
            ad_id,
            placement_id,
            user_id,
            client_ts_ms: self.client_ts_ms,
            received_ms,
            cost_micros,
            value_micros,
            country,
            device,
            user_agent,
            trust,
        })
    }
}

impl From<&Event> for RawEvent {
    /// The raw form of a valid event (what a client would have sent); validating it again gives the event back.
    fn from(e: &Event) -> Self {
        RawEvent {
            id: Some(e.id.clone()),
            kind: Some(e.kind.as_str().to_owned()),
            campaign_id: Some(e.campaign_id.clone()),
            ad_id: Some(e.ad_id.clone()),
            placement_id: e.placement_id.clone(),
            user_id: e.user_id.clone(),
            client_ts_ms: e.client_ts_ms,
            cost_micros: Some(e.cost_micros),
            value_micros: Some(e.value_micros),
            country: e.country.clone(),
            device: Some(e.device.as_str().to_owned()),
            user_agent: e.user_agent.clone(),
        }
    }
}

fn missing(field: &'static str) -> FieldError {
    FieldError::new(field, "missing, it is required")
}

fn required_id(field: &'static str, v: Option<String>) -> Result<String, FieldError> {
    let v = v.ok_or_else(|| missing(field))?;
    check_id(field, &v)?;
    Ok(v)
}

fn optional(
    v: Option<String>,
    check: impl FnOnce(&str) -> Result<(), FieldError>,
) -> Result<Option<String>, FieldError> {
    match v {
        None => Ok(None),
        Some(v) => {
            check(&v)?;
            Ok(Some(v))
        }
    }
}

/// Quotes a piece of client input for an error message: at most 40 characters, escaped.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(48) + 2);
    out.push('"');
    for (i, c) in s.chars().enumerate() {
        if i == 40 {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// `[A-Za-z0-9._:-]`, as a table: the id check runs several times per event on the hot path.
const ID_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || c == b'.' || c == b'_' || c == b':' || c == b'-';
        b += 1;
    }
    t
};

/// The character starting at byte `at` (a char boundary), quoted for a message.
fn quoted_char_at(v: &str, at: usize) -> String {
    let c = v[at..].chars().next().unwrap_or('?');
    quote(c.encode_utf8(&mut [0; 4]))
}

/// Why a string is not an id ([`id_violation`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdViolation {
    /// No characters.
    Empty,
    /// The first character outside `[A-Za-z0-9._:-]`.
    Char(char),
    /// Longer than [`MAX_ID_LEN`] (the length given).
    TooLong(usize),
}

/// The id rule, the one every side applies (events, campaign and ad ids in query's parameters and cursors,
/// key ids of signed pixels, ids read back from the stores): 1..=[`MAX_ID_LEN`] characters of
/// `[A-Za-z0-9._:-]`. `None` for an id; otherwise the first thing wrong, characters before length. Callers word
/// the answer for their audience ([`check_id`] for events).
pub fn id_violation(v: &str) -> Option<IdViolation> {
    if v.is_empty() {
        return Some(IdViolation::Empty);
    }
    // Every byte before the first bad one is ASCII, so the bad byte starts a character.
    if let Some(at) = v.bytes().position(|b| !ID_BYTES[usize::from(b)]) {
        return Some(IdViolation::Char(v[at..].chars().next().unwrap_or('?')));
    }
    (v.len() > MAX_ID_LEN).then_some(IdViolation::TooLong(v.len()))
}

/// Event, campaign, ad and placement ids ([`id_violation`]), as a field error of an event.
pub fn check_id(field: &'static str, v: &str) -> Result<(), FieldError> {
    match id_violation(v) {
        None => Ok(()),
        Some(IdViolation::Empty) => Err(FieldError::new(field, "empty, give 1 to 64 characters")),
        Some(IdViolation::Char(c)) => Err(FieldError::new(
            field,
            format!(
                "character {} not allowed, use only A-Z a-z 0-9 . _ : -",
                quote(c.encode_utf8(&mut [0; 4]))
            ),
        )),
        Some(IdViolation::TooLong(len)) => Err(FieldError::new(
            field,
            format!("longer than {MAX_ID_LEN} characters ({len})"),
        )),
    }
}

/// User ids: 1..=128 printable ASCII characters, no whitespace.
pub fn check_user_id(v: &str) -> Result<(), FieldError> {
    const F: &str = "user_id";
    if v.is_empty() {
        return Err(FieldError::new(F, "empty, leave it out instead"));
    }
    if let Some(at) = v.bytes().position(|b| !b.is_ascii_graphic()) {
        return Err(FieldError::new(
            F,
            format!(
                "character {} not allowed, use printable ASCII without whitespace",
                quoted_char_at(v, at)
            ),
        ));
    }
    if v.len() > MAX_USER_ID_LEN {
        return Err(FieldError::new(
            F,
            format!("longer than {MAX_USER_ID_LEN} characters ({})", v.len()),
        ));
    }
    Ok(())
}

/// Client timestamps: within 7 days before and 5 minutes after `received_ms`.
pub fn check_client_ts(ts: i64, received_ms: i64) -> Result<(), FieldError> {
    const F: &str = "client_ts_ms";
    let delta = i128::from(ts) - i128::from(received_ms);
    if delta > i128::from(MAX_CLIENT_AHEAD_MS) {
        return Err(FieldError::new(
            F,
            format!("more than 5 minutes in the future ({ts} is {delta} ms ahead of the server clock; send unix milliseconds)"),
        ));
    }
    if -delta > i128::from(MAX_CLIENT_BEHIND_MS) {
        return Err(FieldError::new(
            F,
            format!("more than 7 days in the past ({ts}; send unix milliseconds, events older than 7 days are not accepted)"),
        ));
    }
    Ok(())
}

pub fn check_cost(v: u64) -> Result<(), FieldError> {
    if v > MAX_COST_MICROS {
        return Err(FieldError::new(
            "cost_micros",
            format!("{v} is more than {MAX_COST_MICROS} (100 USD in micros)"),
        ));
    }
    Ok(())
}

pub fn check_value(kind: EventKind, v: u64) -> Result<(), FieldError> {
    const F: &str = "value_micros";
    if v > MAX_VALUE_MICROS {
        return Err(FieldError::new(
            F,
            format!("{v} is more than {MAX_VALUE_MICROS} (1,000,000 USD in micros)"),
        ));
    }
    if v != 0 && kind != EventKind::Conversion {
        return Err(FieldError::new(
            F,
            format!("only allowed on conversion events, not on {kind} events"),
        ));
    }
    Ok(())
}

/// Money only on trusted events: an unsigned event carries 0 in `cost_micros` and `value_micros`.
pub fn check_trusted_money(e: &Event) -> Result<(), FieldError> {
    if e.trust.takes_money() {
        return Ok(());
    }
    let field = match (e.cost_micros, e.value_micros) {
        (0, 0) => return Ok(()),
        (0, _) => "value_micros",
        _ => "cost_micros",
    };
    Err(FieldError::new(
        field,
        format!(
            "money on an {} event; money is only taken from authenticated posts and signed pixels",
            e.trust
        ),
    ))
}

/// Countries: two uppercase ASCII letters (ISO 3166-1 alpha-2).
pub fn check_country(v: &str) -> Result<(), FieldError> {
    if v.len() != 2 || !v.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(FieldError::new(
            "country",
            format!(
                "{} is not an ISO 3166-1 alpha-2 code, give two letters such as US or DE",
                quote(v)
            ),
        ));
    }
    Ok(())
}

/// User agents: 1..=512 bytes, no control characters.
pub fn check_user_agent(v: &str) -> Result<(), FieldError> {
    const F: &str = "user_agent";
    if v.is_empty() {
        return Err(FieldError::new(F, "empty, leave it out instead"));
    }
    if v.len() > MAX_USER_AGENT_BYTES {
        return Err(FieldError::new(
            F,
            format!("longer than {MAX_USER_AGENT_BYTES} bytes ({})", v.len()),
        ));
    }
    // Fast path for the usual all-ASCII agent; C1 controls (U+0080..U+009F) need the char check.
    let ascii_clean = v.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !ascii_clean && v.chars().any(char::is_control) {
        return Err(FieldError::new(F, "contains a control character"));
    }
    Ok(())
}

/// A user agent taken from a request header, made to fit the `user_agent` rule instead of failing it: control
/// characters are dropped and the value is cut to 512 bytes at a character boundary. `None` when nothing is left.
/// (The client does not choose its browser's user agent, so an over-long header must not reject its events.)
pub fn header_user_agent(header: &str) -> Option<String> {
    let mut out = String::with_capacity(header.len().min(MAX_USER_AGENT_BYTES));
    for c in header.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > MAX_USER_AGENT_BYTES {
            break;
        }
        out.push(c);
    }
    let trimmed = out.trim();
    if trimmed.is_empty() {
        None
    } else if trimmed.len() == out.len() {
        Some(out)
    } else {
        Some(trimmed.to_owned())
    }
}

/// Checks every invariant of an [`Event`] built elsewhere (for example decoded from the stream).
pub fn check_event(e: &Event) -> Result<(), FieldError> {
    check_id("id", &e.id)?;
    check_id("campaign_id", &e.campaign_id)?;
    check_id("ad_id", &e.ad_id)?;
    if let Some(p) = &e.placement_id {
        check_id("placement_id", p)?;
    }
    if let Some(u) = &e.user_id {
        check_user_id(u)?;
    }
    if let Some(ts) = e.client_ts_ms {
        check_client_ts(ts, e.received_ms)?;
    }
    check_cost(e.cost_micros)?;
    check_value(e.kind, e.value_micros)?;
    check_trusted_money(e)?;
    if let Some(c) = &e.country {
        check_country(c)?;
    }
    if let Some(ua) = &e.user_agent {
        check_user_agent(ua)?;
    }
    Ok(())
}
