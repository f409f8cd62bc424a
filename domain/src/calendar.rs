//! The proleptic Gregorian calendar in UTC: the one place the workspace turns days since the epoch into dates
//! and back (query's RFC 3339 times, the archive's hour partitions, the local cloud's ISO timestamps, S3 dates
//! and schedule cron fields).
//!
//! Hand-written on purpose, rather than on `jiff` or `time`: what tally needs is two conversions of a few lines
//! each (Howard Hinnant's era arithmetic: 400-year eras of 146,097 days, years starting in March so the leap
//! day comes last), leap years and weekdays. Both libraries bound their dates (`time`: years ±9999), so every
//! caller — hostile timestamps in query strings, stream records, S3 requests — would need an error path for
//! values this arithmetic simply answers; and `tally-domain` stays a crate without date dependencies, which
//! `cargo xtask` and the local cloud build on their first start. Exhaustive round trips and known dates below
//! pin it.

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// Days since 1970-01-01 to `(year, month 1-12, day 1-31)`. Total for every day count a timestamp in
/// milliseconds can give (`i64::MAX / DAY_MS` and its negative).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    // 1..=31 and 1..=12 by construction: the casts cannot truncate.
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `(year, month 1-12, day 1-31)` to days since 1970-01-01 (the inverse of [`civil_from_days`]). The caller
/// checks the date first ([`days_in_month`]); an impossible one (`2026-02-30`) counts on past the month's end.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether `year` has a 29 February.
pub fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// The number of days of `month` (1-12) in `year`.
pub fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day of the week of a day since the epoch, numbered as cron does: 1 = Sunday … 7 = Saturday.
pub fn weekday(days: i64) -> u32 {
    // 1970-01-01 was a Thursday (5); rem_euclid is 0..=6.
    ((days + 4).rem_euclid(7) + 1) as u32
}

/// Seconds since the epoch as ISO-8601 UTC (`2015-10-08T16:53:06Z`, as EventBridge writes `time`).
pub fn iso_seconds(secs: i64) -> String {
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch as ISO-8601 UTC with milliseconds (`2019-11-14T00:38:04.835Z`).
pub fn iso_ms(ms: i64) -> String {
    let mut text = iso_seconds(ms.div_euclid(1000));
    text.truncate(text.len() - 1);
    format!("{text}.{:03}Z", ms.rem_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(9999, 12, 31), 2_932_896);
        assert_eq!(civil_from_days(-719_468), (0, 3, 1));
        assert_eq!(weekday(0), 5, "1970-01-01 was a Thursday");
        assert_eq!(weekday(days_from_civil(2026, 11, 26)), 5, "a Thursday");
        assert_eq!(weekday(days_from_civil(2023, 1, 1)), 1, "a Sunday");
        assert_eq!(weekday(-1), 4, "1969-12-31 was a Wednesday");
        assert_eq!(days_in_month(2024, 2), 29);
        assert_eq!(days_in_month(2100, 2), 28);
        assert_eq!(days_in_month(2000, 2), 29);
        assert_eq!(days_in_month(2026, 4), 30);
        assert_eq!(iso_seconds(1_444_323_186), "2015-10-08T16:53:06Z");
        assert_eq!(iso_ms(1_573_691_884_835), "2019-11-14T00:38:04.835Z");
        assert_eq!(iso_ms(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn every_day_of_three_eras_round_trips_in_order() {
        // 1200-03-01 to 2400-02-29: each day is the next valid date after the one before.
        let (first, last) = (days_from_civil(1200, 3, 1), days_from_civil(2400, 2, 29));
        let mut previous = civil_from_days(first - 1);
        for days in first..=last {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
            assert!((1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m));
            let (py, pm, pd) = previous;
            let next_day = (y, m, d) == (py, pm, pd + 1);
            let next_month = d == 1 && pd == days_in_month(py, pm) && (y, m) == (py, pm + 1);
            let next_year = (m, d, pm, pd) == (1, 1, 12, 31) && y == py + 1;
            assert!(
                next_day || next_month || next_year,
                "{previous:?} then {y}-{m}-{d}"
            );
            previous = (y, m, d);
        }
    }

    #[test]
    fn the_extremes_of_millisecond_timestamps_convert() {
        for ms in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX] {
            let days = ms.div_euclid(DAY_MS);
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(iso_ms(ms).ends_with('Z'));
        }
    }
}
