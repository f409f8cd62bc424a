//! The grammar (valid and hostile expressions) and next fire times against hand-checked dates.

use super::*;
use tally_domain::calendar::iso_seconds;

/// `2026-11-26T10:15:30Z` as milliseconds (test input only).
fn ms(iso: &str) -> i64 {
    let field = |range: std::ops::Range<usize>| -> i64 { iso[range].parse().expect("an ISO time") };
    let days = days_from_civil(field(0..4), field(5..7) as u32, field(8..10) as u32);
    ((days * 24 + field(11..13)) * 60 + field(14..16)) * 60_000 + field(17..19) * 1000
}

/// The fire times of `expression` after `after`, `count` of them (fewer when it stops firing).
fn fires(expression: &str, after: &str, count: usize) -> Vec<String> {
    let Ok(Schedule::Cron(cron)) = Schedule::parse(expression) else {
        panic!("{expression} is not a valid cron expression")
    };
    let mut out = Vec::new();
    let mut t = ms(after);
    while out.len() < count {
        let Some(next) = cron.next_after(t) else {
            break;
        };
        assert!(
            next > t && next % 60_000 == 0,
            "{expression}: {next} after {t}"
        );
        out.push(iso_seconds(next / 1000));
        t = next;
    }
    out
}

fn check(expression: &str, after: &str, expect: &[&str]) {
    assert_eq!(
        fires(expression, after, expect.len().max(1)),
        expect,
        "{expression} after {after}"
    );
}

fn refused(expression: &str, expect: &str) {
    match Schedule::parse(expression) {
        Ok(parsed) => panic!("{expression:?} was accepted as {parsed:?}"),
        Err(message) => assert!(
            message.contains(expect),
            "{expression:?}: {message:?} lacks {expect:?}"
        ),
    }
}

#[test]
fn rates_follow_the_singular_and_plural_rule() {
    let rate = |expression: &str, secs: u64| {
        assert_eq!(
            Schedule::parse(expression),
            Ok(Schedule::Rate(Duration::from_secs(secs))),
            "{expression}"
        );
    };
    rate("rate(1 minute)", 60);
    rate("rate(5 minutes)", 300);
    rate("rate(1 hour)", 3600);
    rate("rate(12 hours)", 43_200);
    rate("rate(1 day)", 86_400);
    rate("rate(7 days)", 604_800);
    refused("rate(0 minutes)", "must be positive");
    refused("rate(0 minute)", "must be positive");
    refused("rate(1 minutes)", "singular when the value is 1");
    refused("rate(1 hours)", "singular when the value is 1");
    refused("rate(5 hour)", "plural");
    refused("rate(5 weeks)", "not one of minute, minutes");
    refused("rate(5 Minutes)", "not one of minute");
    refused("rate(-1 minutes)", "not a positive whole number");
    refused("rate(+5 minutes)", "not a positive whole number");
    refused("rate(01 minutes)", "leading zero");
    refused("rate(1.5 hours)", "not a positive whole number");
    refused("rate(99999999999 minutes)", "too large");
    refused("rate(5)", "two fields");
    refused("rate(5 minutes now)", "two fields");
    refused("rate()", "two fields");
    refused("RATE(5 minutes)", "neither `rate(value unit)` nor `cron(");
    refused("rate(5 minutes", "neither");
    refused("rate(5 minutes) ", "neither");
    refused("", "neither");
}

#[test]
fn cron_grammar_refuses_what_eventbridge_refuses() {
    refused(
        "cron(0 12 * * ?)",
        "has 5 fields; a cron expression has six",
    );
    refused("cron(0 0 12 * * ? *)", "has 7 fields");
    refused("cron()", "has 0 fields");
    refused("cron(0 12 ? * ? *)", "both `?`");
    refused("cron(0 12 * * * *)", "one of them must be `?`");
    refused("cron(0 12 1 * MON *)", "one of them must be `?`");
    refused(
        "cron(60 12 * * ? *)",
        "minutes value 60 is out of range 0-59",
    );
    refused("cron(0 24 * * ? *)", "hours value 24 is out of range 0-23");
    refused(
        "cron(0 12 0 * ? *)",
        "day-of-month value 0 is out of range 1-31",
    );
    refused("cron(0 12 32 * ? *)", "out of range 1-31");
    refused(
        "cron(0 12 * 13 ? *)",
        "month value 13 is out of range 1-12 or JAN-DEC",
    );
    refused(
        "cron(0 12 * JANUARY ? *)",
        "month value \"JANUARY\" is not a number or name",
    );
    refused(
        "cron(0 12 ? * 8 *)",
        "day-of-week value 8 is out of range 1-7 or SUN-SAT",
    );
    refused("cron(0 12 ? * 0 *)", "out of range 1-7");
    refused(
        "cron(0 12 * * ? 1969)",
        "year value 1969 is out of range 1970-2199",
    );
    refused("cron(0 12 * * ? 2200)", "out of range 1970-2199");
    refused("cron(? 12 * * ? *)", "`?` is only allowed");
    refused(
        "cron(0 12 ? * MON/2 *)",
        "`/` (increments) is not allowed in day-of-week",
    );
    refused(
        "cron(*/0 * * * ? *)",
        "increment after `/` must be a number from 1 to 60",
    );
    refused("cron(*/61 * * * ? *)", "from 1 to 60");
    refused("cron(*/-1 * * * ? *)", "increment");
    refused("cron(0 12 ? * 3#1,6#3 *)", "one expression only");
    refused("cron(0 12 ? * 3#6 *)", "1 to 5");
    refused("cron(0 12 ? * 8#1 *)", "out of range 1-7");
    refused(
        "cron(0 12 LW * ? *)",
        "not in EventBridge's documented grammar",
    );
    refused(
        "cron(0 12 L-3 * ? *)",
        "not in EventBridge's documented grammar",
    );
    refused("cron(0 12 1,L * ? *)", "`L` and `W` stand alone");
    refused("cron(0 12 1-5W * ? *)", "`W` follows a single day");
    refused("cron(0 12 32W * ? *)", "out of range 1-31");
    refused("cron(0 12 ? * FRI-MON *)", "runs backwards");
    refused(
        "cron(0 12 ? * 1-2L *)",
        "`L` stands alone or follows one day",
    );
    refused("cron(0 1-2-3 * * ? *)", "not a number");
    refused("cron(0 12 * * ? *,)", "not a number");
    refused("cron(a b c d ? f)", "is not a number");
    // Valid, including names in any case, lists of ranges with increments and every documented wildcard.
    for ok in [
        "cron(0 10 * * ? *)",
        "cron(15 12 * * ? *)",
        "cron(0 18 ? * MON-FRI *)",
        "cron(0 8 1 * ? *)",
        "cron(0/15 * * * ? *)",
        "cron(0/10 * ? * MON-FRI *)",
        "cron(0/5 8-17 ? * MON-FRI *)",
        "cron(0 9 ? * 2#1 *)",
        "cron(0 0 L * ? *)",
        "cron(0 0 ? * L *)",
        "cron(0 0 ? * 6L *)",
        "cron(0 0 15W * ? *)",
        "cron(0 0 1 jan,Jul ? 2026-2030/2)",
        "cron(0,30 1-5,22 * JAN-MAR,DEC ? *)",
    ] {
        assert!(
            matches!(Schedule::parse(ok), Ok(Schedule::Cron(_))),
            "{ok}: {:?}",
            Schedule::parse(ok)
        );
    }
}

#[test]
fn next_fire_times_of_minutes_and_hours() {
    check(
        "cron(0/15 * * * ? *)",
        "2026-11-26T10:07:59Z",
        &[
            "2026-11-26T10:15:00Z",
            "2026-11-26T10:30:00Z",
            "2026-11-26T10:45:00Z",
            "2026-11-26T11:00:00Z",
        ],
    );
    // Strictly after: a time on a fire minute goes to the next one.
    check(
        "cron(0/15 * * * ? *)",
        "2026-11-26T10:15:00Z",
        &["2026-11-26T10:30:00Z"],
    );
    check(
        "cron(1/10 * * * ? *)",
        "2026-11-26T10:00:00Z",
        &[
            "2026-11-26T10:01:00Z",
            "2026-11-26T10:11:00Z",
            "2026-11-26T10:21:00Z",
        ],
    );
    check(
        "cron(59 23 * * ? *)",
        "2026-12-31T23:59:00Z",
        &["2027-01-01T23:59:00Z"],
    );
    check(
        "cron(0 10 * * ? *)",
        "2026-12-31T10:00:30Z",
        &["2027-01-01T10:00:00Z"],
    );
    check(
        "cron(0,30 1-2,22 * * ? *)",
        "2026-11-26T02:30:00Z",
        &[
            "2026-11-26T22:00:00Z",
            "2026-11-26T22:30:00Z",
            "2026-11-27T01:00:00Z",
        ],
    );
}

#[test]
fn next_fire_times_at_month_ends_and_the_leap_day() {
    check(
        "cron(0 0 L * ? *)",
        "2024-02-15T00:00:00Z",
        &[
            "2024-02-29T00:00:00Z",
            "2024-03-31T00:00:00Z",
            "2024-04-30T00:00:00Z",
        ],
    );
    check(
        "cron(0 0 L * ? *)",
        "2023-02-15T00:00:00Z",
        &["2023-02-28T00:00:00Z"],
    );
    check(
        "cron(0 0 L 2 ? *)",
        "2099-03-01T00:00:00Z",
        &["2100-02-28T00:00:00Z", "2101-02-28T00:00:00Z"],
    );
    check(
        "cron(0 12 29 2 ? *)",
        "2025-01-01T00:00:00Z",
        &["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"],
    );
    check(
        "cron(0 12 29 FEB ? *)",
        "2096-03-01T00:00:00Z",
        &["2104-02-29T12:00:00Z"],
    );
    // The 31st skips the months without one.
    check(
        "cron(5 4 31 * ? *)",
        "2026-04-01T00:00:00Z",
        &[
            "2026-05-31T04:05:00Z",
            "2026-07-31T04:05:00Z",
            "2026-08-31T04:05:00Z",
        ],
    );
    // A day that never comes, and years that are past, never fire.
    check("cron(0 0 30 2 ? *)", "2026-01-01T00:00:00Z", &[]);
    check("cron(0 0 1 1 ? 1970)", "2026-01-01T00:00:00Z", &[]);
    check("cron(0 0 1 JAN ? 2199)", "2199-01-01T00:00:00Z", &[]);
    check(
        "cron(0 0 1 JAN ? 2198-2199)",
        "2198-01-01T00:00:00Z",
        &["2199-01-01T00:00:00Z"],
    );
    check(
        "cron(0 0 1 1 ? 2026-2030/2)",
        "2025-06-01T00:00:00Z",
        &[
            "2026-01-01T00:00:00Z",
            "2028-01-01T00:00:00Z",
            "2030-01-01T00:00:00Z",
        ],
    );
}

#[test]
fn next_fire_times_by_day_of_week() {
    // 2026-11-26 is a Thursday, 2026-11-27 a Friday, 2026-11-30 a Monday.
    check(
        "cron(15 10 ? * MON-FRI *)",
        "2026-11-27T10:15:00Z",
        &["2026-11-30T10:15:00Z", "2026-12-01T10:15:00Z"],
    );
    check(
        "cron(15 10 ? * 2-6 *)",
        "2026-11-27T10:15:00Z",
        &["2026-11-30T10:15:00Z"],
    );
    check(
        "cron(0 8 ? * sun,SAT *)",
        "2026-11-26T00:00:00Z",
        &[
            "2026-11-28T08:00:00Z",
            "2026-11-29T08:00:00Z",
            "2026-12-05T08:00:00Z",
        ],
    );
    // L alone is Saturday; 6L the month's last Friday; 2#1 its first Monday; 1#5 a fifth Sunday (not every month).
    check(
        "cron(0 0 ? * L *)",
        "2026-11-26T00:00:00Z",
        &["2026-11-28T00:00:00Z", "2026-12-05T00:00:00Z"],
    );
    check(
        "cron(0 9 ? * 6L *)",
        "2026-11-01T00:00:00Z",
        &[
            "2026-11-27T09:00:00Z",
            "2026-12-25T09:00:00Z",
            "2027-01-29T09:00:00Z",
        ],
    );
    check(
        "cron(0 9 ? * FRIL *)",
        "2026-11-01T00:00:00Z",
        &["2026-11-27T09:00:00Z"],
    );
    check(
        "cron(0 9 ? * 2#1 *)",
        "2026-11-01T00:00:00Z",
        &["2026-11-02T09:00:00Z", "2026-12-07T09:00:00Z"],
    );
    check(
        "cron(0 9 ? * MON#1 *)",
        "2026-11-01T00:00:00Z",
        &["2026-11-02T09:00:00Z"],
    );
    check(
        "cron(0 9 ? * 1#5 *)",
        "2026-11-01T00:00:00Z",
        &["2026-11-29T09:00:00Z", "2027-01-31T09:00:00Z"],
    );
    check(
        "cron(0 9 ? * 5#4 *)",
        "2026-11-01T00:00:00Z",
        &["2026-11-26T09:00:00Z"],
    );
}

#[test]
fn next_fire_times_of_the_nearest_weekday() {
    // 2026-08-15 is a Saturday: Friday the 14th. 2026-11-15 a Sunday: Monday the 16th.
    check(
        "cron(0 9 15W 8 ? 2026)",
        "2026-01-01T00:00:00Z",
        &["2026-08-14T09:00:00Z"],
    );
    check(
        "cron(0 9 15W 11 ? 2026)",
        "2026-01-01T00:00:00Z",
        &["2026-11-16T09:00:00Z"],
    );
    // 2026-11-26 is a Thursday: itself.
    check(
        "cron(0 9 26W 11 ? 2026)",
        "2026-01-01T00:00:00Z",
        &["2026-11-26T09:00:00Z"],
    );
    // 2026-08-01 is a Saturday: not Friday July 31st but Monday the 3rd (W stays in the month).
    check(
        "cron(0 9 1W 8 ? 2026)",
        "2026-01-01T00:00:00Z",
        &["2026-08-03T09:00:00Z"],
    );
    // 2026-05-31 is a Sunday: not Monday June 1st but Friday the 29th.
    check(
        "cron(0 9 31W 5 ? 2026)",
        "2026-01-01T00:00:00Z",
        &["2026-05-29T09:00:00Z"],
    );
    // No 31st in April: 31W does not fire there.
    check(
        "cron(0 9 31W 4,5 ? 2026)",
        "2026-01-01T00:00:00Z",
        &["2026-05-29T09:00:00Z"],
    );
}
