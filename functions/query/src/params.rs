//! Query-string and path parameters of the API: strict parsing, UTC timestamps, range limits.
//!
//! Times are RFC 3339 UTC (`2026-11-26T13:00:00Z`, seconds optional fraction ignored) or unix milliseconds.
//! Ranges are limited per step so that one request reads at most a few thousand rows:
//! `1m` → 24 hours, `1h` → 31 days, `1d` → 366 days.

use std::collections::BTreeMap;

use tally_aws::metrics::Resolution;
#[cfg(test)]
use tally_domain::calendar::civil_from_days;
use tally_domain::calendar::{days_from_civil, days_in_month, iso_seconds};
use tally_domain::event::{id_violation, IdViolation};
use tally_domain::urlencoded::{self, Malformed};

/// Most points one series request returns per step (24 h of minutes, 31 days of hours, 366 days).
pub fn max_points(res: Resolution) -> i64 {
    match res {
        Resolution::Minute => 1440,
        Resolution::Hour => 744,
        Resolution::Day => 366,
    }
}

/// The default span (in buckets) when `from` is not given.
pub fn default_points(res: Resolution) -> i64 {
    match res {
        Resolution::Minute => 60,
        Resolution::Hour => 24,
        Resolution::Day => 30,
    }
}

/// Longest range of the per-ad breakdown, in days.
pub const MAX_ADS_DAYS: i64 = 366;

/// A parameter that cannot be used; the message names it, the rule and what to send instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadParam {
    pub param: String,
    pub rule: String,
}

impl BadParam {
    pub fn new(param: impl Into<String>, rule: impl Into<String>) -> BadParam {
        BadParam {
            param: param.into(),
            rule: rule.into(),
        }
    }
}

/// Parses `a=1&b=2` strictly: every key must be in `allowed`, none twice, values percent-decoded as UTF-8.
pub fn parse_query(query: &str, allowed: &[&str]) -> Result<BTreeMap<String, String>, BadParam> {
    let mut out = BTreeMap::new();
    if query.len() > 2048 {
        return Err(BadParam::new("query", "longer than 2048 bytes"));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(raw_key).map_err(|rule| BadParam::new("query", rule))?;
        if !allowed.contains(&key.as_str()) {
            let shown: String = key.chars().take(40).collect();
            let expected = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(BadParam::new(
                shown,
                format!("unknown parameter; this endpoint takes {expected}"),
            ));
        }
        let value = percent_decode(raw_value).map_err(|rule| BadParam::new(key.clone(), rule))?;
        if out.insert(key.clone(), value).is_some() {
            return Err(BadParam::new(key, "given more than once"));
        }
    }
    Ok(out)
}

/// `%XX` and `+` decoding, strict ([`tally_domain::urlencoded::decode`]), in query's words.
fn percent_decode(s: &str) -> Result<String, String> {
    match urlencoded::decode(s) {
        Ok(decoded) => Ok(decoded.into_owned()),
        Err(Malformed::BadEscape { .. }) => Err("bad percent-encoding".to_owned()),
        Err(Malformed::NotUtf8) => Err("not utf-8 after percent-decoding".to_owned()),
    }
}

/// An id as the pipeline accepts them ([`tally_domain::event::id_violation`]: 1..=64 characters of
/// `[A-Za-z0-9._:-]`), in query's words.
pub fn check_id(param: &str, id: &str) -> Result<(), BadParam> {
    match id_violation(id) {
        None => Ok(()),
        Some(IdViolation::Empty | IdViolation::TooLong(_)) => {
            Err(BadParam::new(param, "must be 1 to 64 characters"))
        }
        Some(IdViolation::Char(c)) => Err(BadParam::new(
            param,
            format!("character {c:?} not allowed, use only A-Z a-z 0-9 . _ : -"),
        )),
    }
}

/// `1m`, `1h` or `1d`.
pub fn parse_step(value: &str) -> Result<Resolution, BadParam> {
    match value {
        "1m" => Ok(Resolution::Minute),
        "1h" => Ok(Resolution::Hour),
        "1d" => Ok(Resolution::Day),
        _ => Err(BadParam::new("step", "must be 1m, 1h or 1d")),
    }
}

pub fn step_name(res: Resolution) -> &'static str {
    match res {
        Resolution::Minute => "1m",
        Resolution::Hour => "1h",
        Resolution::Day => "1d",
    }
}

/// Unix milliseconds from `1732626000000` or `2026-11-26T13:00:00Z` (also `…:00.123Z`, `+00:00`).
pub fn parse_time(param: &str, value: &str) -> Result<i64, BadParam> {
    let bad = || {
        BadParam::new(
            param,
            "must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z",
        )
    };
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let ms: i64 = value.parse().map_err(|_| bad())?;
        return if ms <= MAX_MS {
            Ok(ms)
        } else {
            Err(BadParam::new(param, "after the year 9999"))
        };
    }
    let b = value.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't')
        || b[13] != b':'
        || b[16] != b':'
    {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, BadParam> {
        let part = value.get(range).ok_or_else(bad)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    // Two digits each: always in range of u32.
    let month = u32::try_from(num(5..7)?).map_err(|_| bad())?;
    let day = u32::try_from(num(8..10)?).map_err(|_| bad())?;
    let year = num(0..4)?;
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &value[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let first3: String = fraction[..digits]
            .chars()
            .chain("000".chars())
            .take(3)
            .collect();
        millis = first3.parse().map_err(|_| bad())?;
        rest = &fraction[digits..];
    }
    if !matches!(rest, "Z" | "z" | "+00:00" | "-00:00") {
        return Err(BadParam::new(param, "must be in UTC (end with Z)"));
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(BadParam::new(param, "is not a valid calendar time"));
    }
    let days = days_from_civil(year, month, day);
    Ok(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/// `2026-11-26T13:00:00Z` for unix milliseconds (whole seconds).
pub fn format_time(ms: i64) -> String {
    iso_seconds(ms.div_euclid(1000))
}

/// A validated range of buckets: first and last bucket start, unix minutes, aligned to `res`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub res: Resolution,
    pub first: i64,
    pub last: i64,
}

impl Range {
    /// Buckets in the range.
    pub fn points(&self) -> i64 {
        (self.last - self.first) / self.res.minutes() + 1
    }
}

/// The series range from `from`/`to` (either may be absent) at `res`, relative to `now_ms`.
/// `from` is rounded down and `to` rounded down to their buckets; `to` defaults to now, `from` to
/// [`default_points`] buckets before `to`.
pub fn series_range(
    res: Resolution,
    from: Option<i64>,
    to: Option<i64>,
    now_ms: i64,
) -> Result<Range, BadParam> {
    let to_ms = to.unwrap_or(now_ms);
    let last = res.bucket(to_ms.div_euclid(60_000));
    let first = match from {
        Some(from_ms) => res.bucket(from_ms.div_euclid(60_000)),
        None => last - (default_points(res) - 1) * res.minutes(),
    };
    if from.is_some_and(|f| f > to_ms) {
        return Err(BadParam::new("from", "is after to"));
    }
    if first < 0 {
        return Err(BadParam::new("from", "is before 1970"));
    }
    let range = Range { res, first, last };
    if range.points() > max_points(res) {
        return Err(BadParam::new(
            "to",
            format!(
                "the range holds {} points at step={}, at most {} are returned; narrow from/to or use a coarser step",
                range.points(),
                step_name(res),
                max_points(res)
            ),
        ));
    }
    Ok(range)
}

/// Campaigns per `GET /v1/campaigns` page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// Most campaigns one `GET /v1/campaigns` page holds: each costs the day's reads of one campaign, and a page
/// must answer well inside the function's timeout.
pub const MAX_PAGE: usize = 500;

/// The order of `GET /v1/campaigns`: by id (stable, the default), most recently seen first, or by today's
/// realtime spend or impressions (largest first, from the compactor's day rows: through the realtime
/// watermark, see `docs/counter-store.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Id,
    Recent,
    Spend,
    Impressions,
}

impl Order {
    pub const ALL: [Order; 4] = [Order::Id, Order::Recent, Order::Spend, Order::Impressions];

    /// The parameter's value.
    pub fn name(self) -> &'static str {
        match self {
            Order::Id => "id",
            Order::Recent => "recent",
            Order::Spend => "spend",
            Order::Impressions => "impressions",
        }
    }

    /// Whether the order sorts by a key before the id (largest first).
    fn keyed(self) -> bool {
        self != Order::Id
    }
}

/// `id`, `recent`, `spend` or `impressions`.
pub fn parse_order(value: &str) -> Result<Order, BadParam> {
    Order::ALL
        .into_iter()
        .find(|o| o.name() == value)
        .ok_or_else(|| BadParam::new("order", "must be id, recent, spend or impressions"))
}

/// Longest `q` (a search in campaign ids: ids are at most 64 characters).
pub const MAX_SEARCH: usize = 64;

/// `q`: 1..=64 characters of the campaign id alphabet (`[A-Za-z0-9._:-]`), matched as a case-insensitive
/// substring of the id. Empty means no search.
pub fn parse_search(value: &str) -> Result<Option<String>, BadParam> {
    if value.is_empty() {
        return Ok(None);
    }
    check_id("q", value)
        .map_err(|bad| BadParam::new("q", format!("a search in campaign ids {}", bad.rule)))?;
    Ok(Some(value.to_owned()))
}

/// `1..=MAX_PAGE`.
pub fn parse_limit(value: &str) -> Result<usize, BadParam> {
    let bad = || {
        BadParam::new(
            "limit",
            format!("must be a whole number from 1 to {MAX_PAGE}"),
        )
    };
    match value.parse::<usize>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) && !value.starts_with('+') => Ok(n),
        _ => Err(bad()),
    }
}

/// The largest `offset` of `GET /v1/campaigns`.
pub const MAX_OFFSET: usize = 1_000_000;

/// `0..=MAX_OFFSET`: how many campaigns of the order to skip (the dashboard's page number, so a page is the
/// same ranks at every refresh while the totals move).
pub fn parse_offset(value: &str) -> Result<usize, BadParam> {
    match value.parse::<usize>() {
        Ok(n) if n <= MAX_OFFSET && !value.starts_with('+') => Ok(n),
        _ => Err(BadParam::new(
            "offset",
            format!("must be a whole number from 0 to {MAX_OFFSET}"),
        )),
    }
}

/// Where a `GET /v1/campaigns` page ended: the last campaign it held, in the order it was listed in. Clients
/// pass `next_cursor` back unchanged; its text is hex so that it needs no escaping in a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    /// The last campaign's sort key: `last_seen` (milliseconds) in recent order, today's spend (micros) or
    /// impressions in those orders; 0 in id order.
    pub key: i64,
    pub campaign_id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let plain = if self.order.keyed() {
            format!("{}\n{}\n{}", self.order.name(), self.key, self.campaign_id)
        } else {
            format!("id\n{}", self.campaign_id)
        };
        plain.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// A cursor this API handed out for `order`.
    pub fn parse(value: &str, order: Order) -> Result<Cursor, BadParam> {
        let bad = |rule: &str| BadParam::new("cursor", rule.to_owned());
        let not_ours =
            "not a cursor this API handed out; pass next_cursor from the previous page unchanged, \
                        or leave cursor out for the first page";
        if value.is_empty() || value.len() > 256 || !value.len().is_multiple_of(2) {
            return Err(bad(not_ours));
        }
        let bytes: Option<Vec<u8>> = (0..value.len())
            .step_by(2)
            .map(|i| {
                value
                    .get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let plain = bytes
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| bad(not_ours))?;
        let parts: Vec<&str> = plain.split('\n').collect();
        let tag = parts.first().copied().unwrap_or("");
        let Some(given) = Order::ALL.into_iter().find(|o| o.name() == tag) else {
            return Err(bad(not_ours));
        };
        let cursor = match (parts.as_slice(), given.keyed()) {
            ([_, id], false) => Cursor {
                order: given,
                key: 0,
                campaign_id: (*id).to_owned(),
            },
            ([_, key, id], true) => Cursor {
                order: given,
                key: key
                    .parse()
                    .ok()
                    .filter(|k: &i64| *k >= 0)
                    .ok_or_else(|| bad(not_ours))?,
                campaign_id: (*id).to_owned(),
            },
            _ => return Err(bad(not_ours)),
        };
        check_id("cursor", &cursor.campaign_id).map_err(|_| bad(not_ours))?;
        if given != order {
            return Err(bad(
                "was handed out for another order; keep the order of the first page while paging",
            ));
        }
        Ok(cursor)
    }

    /// Whether a campaign `(key, id)` comes after this cursor in its order.
    pub fn is_before(&self, key: i64, campaign_id: &str) -> bool {
        if self.order.keyed() {
            (std::cmp::Reverse(key), campaign_id)
                > (std::cmp::Reverse(self.key), self.campaign_id.as_str())
        } else {
            campaign_id > self.campaign_id.as_str()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_did_not_hand_out() {
        let id = Cursor {
            order: Order::Id,
            key: 0,
            campaign_id: "cmp:0.1_a-b".to_owned(),
        };
        assert_eq!(Cursor::parse(&id.encode(), Order::Id), Ok(id.clone()));
        let recent = Cursor {
            order: Order::Recent,
            key: 1_764_000_000_000,
            campaign_id: "summer".to_owned(),
        };
        assert_eq!(
            Cursor::parse(&recent.encode(), Order::Recent),
            Ok(recent.clone())
        );
        let rule = |value: &str, order| Cursor::parse(value, order).expect_err("refused").rule;
        assert!(rule(&id.encode(), Order::Recent).contains("another order"));
        assert!(rule(&recent.encode(), Order::Id).contains("another order"));
        let forged = |plain: &str| {
            plain
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        for hostile in [
            String::new(),
            "abc".to_owned(),
            "zz".to_owned(),
            "é".repeat(2),
            "00".repeat(200),
            forged("id"),
            forged("id\n"),
            forged("id\n../etc"),
            forged("id\n<script>"),
            forged("recent\nnot-a-number\nx"),
            forged("recent\n1"),
            forged("id\na\nb"),
            forged(&format!("id\n{}", "a".repeat(65))),
            "ffff".to_owned(),
        ] {
            for order in [Order::Id, Order::Recent] {
                let e = Cursor::parse(&hostile, order).expect_err("refused");
                assert_eq!(e.param, "cursor", "{hostile:?}");
                assert!(
                    e.rule.contains("next_cursor") || e.rule.contains("another order"),
                    "{hostile:?}: {}",
                    e.rule
                );
            }
            // In its own order, a forged cursor is not ours.
            let own = if hostile.starts_with("726563656e74") {
                Order::Recent
            } else {
                Order::Id
            };
            let e = Cursor::parse(&hostile, own).expect_err("refused");
            assert!(e.rule.contains("next_cursor"), "{hostile:?}: {}", e.rule);
        }
    }

    #[test]
    fn page_limits_are_bounded_whole_numbers() {
        assert_eq!(parse_limit("1"), Ok(1));
        assert_eq!(parse_limit(&MAX_PAGE.to_string()), Ok(MAX_PAGE));
        assert_eq!(parse_offset("0"), Ok(0));
        assert_eq!(parse_offset(&MAX_OFFSET.to_string()), Ok(MAX_OFFSET));
        for bad in ["-1", "+3", "1.5", "", "1000001", "x"] {
            let err = parse_offset(bad).expect_err(bad);
            assert_eq!(err.param, "offset");
            assert!(err.rule.contains("0 to 1000000"), "{}", err.rule);
        }
        for bad in [
            "0",
            "",
            "-1",
            "+5",
            "1.5",
            "501",
            "1e3",
            "99999999999999999999999",
            " 5",
        ] {
            assert_eq!(
                parse_limit(bad).expect_err("refused").param,
                "limit",
                "{bad:?}"
            );
        }
        assert_eq!(parse_order("recent"), Ok(Order::Recent));
        assert_eq!(parse_order("spend"), Ok(Order::Spend));
        assert_eq!(parse_order("impressions"), Ok(Order::Impressions));
        assert!(parse_order("RECENT").is_err());
        assert_eq!(
            parse_order("ctr").expect_err("refused").rule,
            "must be id, recent, spend or impressions"
        );
    }

    #[test]
    fn searches_are_id_characters_and_keyed_cursors_round_trip() {
        assert_eq!(parse_search(""), Ok(None));
        assert_eq!(parse_search("c10"), Ok(Some("c10".to_owned())));
        for bad in ["a b", "<x>", &"a".repeat(65)] {
            let e = parse_search(bad).expect_err("refused");
            assert_eq!(e.param, "q");
            assert!(
                e.rule.starts_with("a search in campaign ids "),
                "{}",
                e.rule
            );
        }
        for order in [Order::Spend, Order::Impressions] {
            let c = Cursor {
                order,
                key: 12_345,
                campaign_id: "c7".to_owned(),
            };
            assert_eq!(Cursor::parse(&c.encode(), order), Ok(c.clone()));
            assert!(Cursor::parse(&c.encode(), Order::Recent)
                .expect_err("another order")
                .rule
                .contains("another order"));
            assert!(
                c.is_before(12_344, "a") && c.is_before(12_345, "c8") && !c.is_before(12_346, "a")
            );
        }
    }

    #[test]
    fn recent_order_pages_after_the_cursor() {
        let c = Cursor {
            order: Order::Recent,
            key: 100,
            campaign_id: "m".to_owned(),
        };
        assert!(c.is_before(99, "a"), "seen earlier: later in the list");
        assert!(c.is_before(100, "n"), "same time: by id");
        assert!(
            !c.is_before(100, "m"),
            "the cursor's own campaign is not repeated"
        );
        assert!(!c.is_before(101, "z"), "seen later: earlier in the list");
    }

    fn check_time(input: &str, expect: Result<&str, &str>) {
        let got = parse_time("from", input)
            .map(format_time)
            .map_err(|e| e.rule);
        assert_eq!(got.as_deref().map_err(String::as_str), expect, "{input}");
    }

    #[test]
    fn times() {
        check_time("2026-11-26T13:00:00Z", Ok("2026-11-26T13:00:00Z"));
        check_time("2026-11-26t13:00:00.999z", Ok("2026-11-26T13:00:00Z"));
        check_time("2024-02-29T23:59:59+00:00", Ok("2024-02-29T23:59:59Z"));
        check_time("1970-01-01T00:00:00Z", Ok("1970-01-01T00:00:00Z"));
        check_time("1795698000000", Ok("2026-11-26T13:00:00Z"));
        check_time("0", Ok("1970-01-01T00:00:00Z"));
        check_time("2023-02-29T00:00:00Z", Err("is not a valid calendar time"));
        check_time("2026-13-01T00:00:00Z", Err("is not a valid calendar time"));
        check_time("2026-11-26T24:00:00Z", Err("is not a valid calendar time"));
        check_time(
            "2026-11-26T13:00:00+02:00",
            Err("must be in UTC (end with Z)"),
        );
        check_time(
            "2026-11-26T13:00:00",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time(
            "2026-11-26",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time(
            "-5",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time(
            "",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time(
            "99999999999999999999999",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time("999999999999999", Err("after the year 9999"));
        check_time(
            "2026-11-26T13:00:00.Z",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time(
            "2026-11-2€T13:00:00Z",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
        check_time(
            "2026-1١-26T13:00:00Z",
            Err("must be unix milliseconds or an RFC 3339 UTC time such as 2026-11-26T13:00:00Z"),
        );
    }

    #[test]
    fn calendar_round_trip() {
        for days in [-1, 0, 59, 365, 10_957, 20_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    fn check_query(input: &str, expect: Result<&[(&str, &str)], (&str, &str)>) {
        let got = parse_query(input, &["from", "to", "step"]);
        match expect {
            Ok(pairs) => {
                let want: BTreeMap<String, String> = pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                assert_eq!(got, Ok(want), "{input}");
            }
            Err((param, rule)) => {
                let err = got.expect_err(input);
                assert_eq!(
                    (err.param.as_str(), err.rule.as_str()),
                    (param, rule),
                    "{input}"
                );
            }
        }
    }

    #[test]
    fn query_strings() {
        check_query("", Ok(&[]));
        check_query("step=1h", Ok(&[("step", "1h")]));
        check_query(
            "from=2026-11-26T13%3A00%3A00Z&to=1",
            Ok(&[("from", "2026-11-26T13:00:00Z"), ("to", "1")]),
        );
        check_query("step=1h&&", Ok(&[("step", "1h")]));
        check_query("step", Ok(&[("step", "")]));
        check_query("step=1h&step=1d", Err(("step", "given more than once")));
        check_query(
            "limit=5",
            Err((
                "limit",
                "unknown parameter; this endpoint takes from, to, step",
            )),
        );
        check_query("%73tep=1m", Ok(&[("step", "1m")]));
        check_query("step=%ZZ", Err(("step", "bad percent-encoding")));
        check_query(
            "step=%ff",
            Err(("step", "not utf-8 after percent-decoding")),
        );
        check_query("%", Err(("query", "bad percent-encoding")));
    }

    fn check_range(step: &str, from: Option<&str>, to: Option<&str>, expect: Result<i64, &str>) {
        let now = parse_time("now", "2026-11-26T13:30:45Z").expect("now");
        let res = parse_step(step).expect("step");
        let from = from.map(|f| parse_time("from", f).expect("from"));
        let to = to.map(|t| parse_time("to", t).expect("to"));
        let got = series_range(res, from, to, now)
            .map(|r| r.points())
            .map_err(|e| e.rule);
        assert_eq!(
            got.as_ref().map_err(String::as_str),
            expect.as_ref().map_err(|e| *e),
            "{step} {from:?} {to:?}"
        );
    }

    #[test]
    fn ranges() {
        check_range("1m", None, None, Ok(60));
        check_range("1h", None, None, Ok(24));
        check_range("1d", None, None, Ok(30));
        check_range(
            "1m",
            Some("2026-11-26T13:00:00Z"),
            Some("2026-11-26T13:00:59Z"),
            Ok(1),
        );
        check_range("1m", Some("2026-11-25T13:31:00Z"), None, Ok(1440));
        check_range("1m", Some("2026-11-25T13:30:00Z"), None, Err("the range holds 1441 points at step=1m, at most 1440 are returned; narrow from/to or use a coarser step"));
        check_range(
            "1h",
            Some("2026-10-01T00:00:00Z"),
            Some("2026-10-31T23:00:00Z"),
            Ok(744),
        );
        check_range(
            "1d",
            Some("2025-01-01T00:00:00Z"),
            Some("2025-12-31T00:00:00Z"),
            Ok(365),
        );
        check_range("1d", Some("2024-01-01T00:00:00Z"), Some("2025-12-31T00:00:00Z"), Err("the range holds 731 points at step=1d, at most 366 are returned; narrow from/to or use a coarser step"));
        check_range(
            "1m",
            Some("2026-11-26T14:00:00Z"),
            Some("2026-11-26T13:00:00Z"),
            Err("is after to"),
        );
    }

    #[test]
    fn ids() {
        assert_eq!(check_id("id", "summer-sale.2026:v2_x"), Ok(()));
        assert!(check_id("id", "").is_err());
        assert!(check_id("id", &"x".repeat(65)).is_err());
        assert_eq!(
            check_id("id", "a'b").map_err(|e| e.rule),
            Err("character '\\'' not allowed, use only A-Z a-z 0-9 . _ : -".to_owned())
        );
        assert!(check_id("id", "<script>").is_err());
        assert!(check_id("id", "a b").is_err());
        assert!(check_id("id", "ü").is_err());
    }
}
