//! EventBridge schedule expressions: `rate(value unit)` and `cron(minutes hours day-of-month month day-of-week
//! year)`, parsed by the grammar of the EventBridge user guide, and the pure "next fire time after t" of a cron
//! expression (UTC, minute precision).
//!
//! Errors name the grammar rule broken. Two constructs outside the documented grammar that other cron dialects
//! know (`LW` and `L-n` in day-of-month) are refused as not run locally; wrapping ranges (`FRI-MON`) too.

use std::time::Duration;

use tally_domain::calendar::{civil_from_days, days_from_civil, days_in_month, weekday};

/// A parsed `ScheduleExpression`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `rate(N unit)`: every period, counted from the rule's creation.
    Rate(Duration),
    /// `cron(…)`: at the matching minutes, UTC.
    Cron(Box<Cron>),
}

/// A cron expression's six fields, as sets of the values they match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Bits,
    hours: Bits,
    months: Bits,
    /// Years as offsets from 1970.
    years: Bits,
    days: Days,
}

/// The day fields: exactly one of day-of-month and day-of-week is `?`, so the other alone picks the days.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Days {
    /// Day-of-month values (1-31); day-of-week is `?`.
    OfMonth(Bits),
    /// `L` in day-of-month: the month's last day.
    LastOfMonth,
    /// `nW`: the weekday (Monday-Friday) nearest day n, within the month.
    NearestWeekday(u32),
    /// Day-of-week values (1 = SUN … 7 = SAT); day-of-month is `?`.
    OfWeek(Bits),
    /// `dL` in day-of-week: the month's last day d.
    LastWeekdayOfMonth(u32),
    /// `d#n`: the month's n-th day d.
    NthWeekdayOfMonth(u32, u32),
}

/// A set of small numbers (0..256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Bits([u64; 4]);

impl Bits {
    fn insert(&mut self, n: u32) {
        self.0[(n / 64) as usize] |= 1 << (n % 64);
    }
    fn contains(&self, n: u32) -> bool {
        n < 256 && self.0[(n / 64) as usize] & (1 << (n % 64)) != 0
    }
}

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One cron field's rules: its values, its names, whether `/` is allowed.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    increments: bool,
    /// Subtracted from each value before it goes in a [`Bits`] (years: 1970).
    offset: u32,
}

const MINUTES: Field = Field {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    increments: true,
    offset: 0,
};
const HOURS: Field = Field {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    increments: true,
    offset: 0,
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    increments: true,
    offset: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: MONTHS,
    increments: true,
    offset: 0,
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: WEEKDAYS,
    increments: false,
    offset: 0,
};
const YEAR: Field = Field {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    increments: true,
    offset: 1970,
};

impl Schedule {
    /// Parses a `ScheduleExpression`; the error names the grammar rule broken.
    pub fn parse(expression: &str) -> Result<Schedule, String> {
        if let Some(inner) = expression
            .strip_prefix("rate(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return rate(inner).map(Schedule::Rate);
        }
        if let Some(inner) = expression
            .strip_prefix("cron(")
            .and_then(|rest| rest.strip_suffix(')'))
        {
            return Cron::parse(inner).map(|cron| Schedule::Cron(Box::new(cron)));
        }
        Err(format!(
            "{:?} is neither `rate(value unit)` nor `cron(minutes hours day-of-month month day-of-week year)`",
            expression
        ))
    }
}

fn rate(inner: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = inner.split_whitespace().collect();
    let [value, unit] = parts[..] else {
        return Err(format!(
            "rate({inner}) must have two fields, a positive whole number and a unit: rate(5 minutes)"
        ));
    };
    if value.is_empty()
        || !value.bytes().all(|b| b.is_ascii_digit())
        || (value.starts_with('0') && value != "0")
    {
        return Err(format!(
            "rate value {value:?} is not a positive whole number (digits, no sign, no leading zero)"
        ));
    }
    let n: u64 = value
        .parse()
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
        .ok_or_else(|| format!("rate value {value} is too large"))?;
    if n == 0 {
        return Err("rate value must be positive: rate(0 …) never fires".to_owned());
    }
    let (seconds, singular) = match unit {
        "minute" => (60, true),
        "minutes" => (60, false),
        "hour" => (3600, true),
        "hours" => (3600, false),
        "day" => (86_400, true),
        "days" => (86_400, false),
        other => {
            return Err(format!(
                "rate unit {other:?} is not one of minute, minutes, hour, hours, day, days"
            ))
        }
    };
    if singular != (n == 1) {
        return Err(format!(
            "rate({n} {unit}): the unit must be singular when the value is 1 and plural when it is more (rate(1 minute), rate(5 minutes))"
        ));
    }
    Ok(Duration::from_secs(n * seconds))
}

impl Cron {
    fn parse(inner: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, dom, month, dow, year] = fields[..] else {
            return Err(format!(
                "cron({inner}) has {} fields; a cron expression has six: minutes hours day-of-month month day-of-week year",
                fields.len()
            ));
        };
        let days = match (dom, dow) {
            ("?", "?") => {
                return Err(
                    "day-of-month and day-of-week are both `?`: exactly one of them must be `?`"
                        .to_owned(),
                )
            }
            (dom, "?") => day_of_month(dom)?,
            ("?", dow) => day_of_week(dow)?,
            (dom, dow) => {
                return Err(format!(
                    "day-of-month {dom:?} and day-of-week {dow:?} are both given: one of them must be `?` (EventBridge does not combine them)"
                ))
            }
        };
        Ok(Cron {
            minutes: values(&MINUTES, minutes)?,
            hours: values(&HOURS, hours)?,
            months: values(&MONTH, month)?,
            years: values(&YEAR, year)?,
            days,
        })
    }

    /// The first fire time strictly after `after_ms` (milliseconds since the epoch, UTC): a whole minute, or
    /// `None` when the expression never fires again (its years are past, or it names a day that never comes).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start_minute = after_ms.div_euclid(60_000) + 1;
        let mut day = start_minute.div_euclid(1440);
        let mut from_minute = start_minute.rem_euclid(1440) as u32;
        loop {
            let (year, month, dom) = civil_from_days(day);
            if year > i64::from(YEAR.max) {
                return None;
            }
            if year < i64::from(YEAR.min) {
                (day, from_minute) = (0, 0);
                continue;
            }
            if !self.years.contains((year - i64::from(YEAR.offset)) as u32) {
                (day, from_minute) = (days_from_civil(year + 1, 1, 1), 0);
                continue;
            }
            if !self.months.contains(month) {
                let (y, m) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (day, from_minute) = (days_from_civil(y, m, 1), 0);
                continue;
            }
            if self.day_matches(year, month, dom, day) {
                if let Some(minute) = self.first_minute_from(from_minute) {
                    return Some((day * 1440 + i64::from(minute)) * 60_000);
                }
            }
            (day, from_minute) = (day + 1, 0);
        }
    }

    fn first_minute_from(&self, from: u32) -> Option<u32> {
        (from / 60..24)
            .filter(|h| self.hours.contains(*h))
            .find_map(|h| {
                let first = if h == from / 60 { from % 60 } else { 0 };
                (first..60)
                    .find(|m| self.minutes.contains(*m))
                    .map(|m| h * 60 + m)
            })
    }

    fn day_matches(&self, year: i64, month: u32, dom: u32, day: i64) -> bool {
        let last = days_in_month(year, month);
        match self.days {
            Days::OfMonth(days) => days.contains(dom),
            Days::LastOfMonth => dom == last,
            Days::NearestWeekday(n) => {
                if n > last {
                    return false;
                }
                let target = match weekday(days_from_civil(year, month, n)) {
                    // Saturday: Friday before, unless that leaves the month (then Monday after).
                    7 if n == 1 => 3,
                    7 => n - 1,
                    // Sunday: Monday after, unless that leaves the month (then Friday before).
                    1 if n == last => n - 2,
                    1 => n + 1,
                    _ => n,
                };
                dom == target
            }
            Days::OfWeek(days) => days.contains(weekday(day)),
            Days::LastWeekdayOfMonth(d) => weekday(day) == d && dom + 7 > last,
            Days::NthWeekdayOfMonth(d, n) => weekday(day) == d && (dom - 1) / 7 + 1 == n,
        }
    }
}

fn day_of_month(text: &str) -> Result<Days, String> {
    if text == "L" {
        return Ok(Days::LastOfMonth);
    }
    if text == "LW" || text.starts_with("L-") {
        return Err(format!(
            "day-of-month {text:?} is not in EventBridge's documented grammar (L, nW): the local cloud does not run it"
        ));
    }
    if let Some(day) = text.strip_suffix('W') {
        let n = number(&DAY_OF_MONTH, day).map_err(|e| {
            format!("day-of-month {text:?}: `W` follows a single day, as in 15W ({e})")
        })?;
        return Ok(Days::NearestWeekday(n));
    }
    if text.contains(['L', 'W']) {
        return Err(format!(
            "day-of-month {text:?}: `L` and `W` stand alone (L, or a day then W as in 15W), not in lists, ranges or increments"
        ));
    }
    values(&DAY_OF_MONTH, text).map(Days::OfMonth)
}

fn day_of_week(text: &str) -> Result<Days, String> {
    if text.contains('#') {
        let Some((day, nth)) = text.split_once('#') else {
            unreachable!("contains '#'")
        };
        if text.contains(',') {
            return Err(format!(
                "day-of-week {text:?}: with `#` the field holds one expression only (3#1,6#3 is refused)"
            ));
        }
        let day = number(&DAY_OF_WEEK, day)
            .map_err(|e| format!("day-of-week {text:?}: `#` follows one day ({e})"))?;
        let n = match nth {
            "1" | "2" | "3" | "4" | "5" => nth.parse().unwrap_or(1),
            _ => {
                return Err(format!(
                    "day-of-week {text:?}: the instance after `#` is 1 to 5"
                ))
            }
        };
        return Ok(Days::NthWeekdayOfMonth(day, n));
    }
    if text == "L" {
        return Ok(Days::OfWeek({
            let mut saturday = Bits::default();
            saturday.insert(7);
            saturday
        }));
    }
    if let Some(day) = text.strip_suffix('L') {
        let d = number(&DAY_OF_WEEK, day).map_err(|e| {
            format!("day-of-week {text:?}: `L` stands alone or follows one day, as in 6L ({e})")
        })?;
        return Ok(Days::LastWeekdayOfMonth(d));
    }
    values(&DAY_OF_WEEK, text).map(Days::OfWeek)
}

/// A field of values: a comma-separated list of `*`, `v`, `a-b`, each optionally `/step`.
fn values(field: &Field, text: &str) -> Result<Bits, String> {
    let name = field.name;
    if text.contains('?') {
        return Err(format!(
            "{name} {text:?}: `?` is only allowed, alone, in day-of-month or day-of-week"
        ));
    }
    let mut set = Bits::default();
    for item in text.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) if field.increments => {
                let span = field.max - field.min + 1;
                let digits = !step.is_empty() && step.bytes().all(|b| b.is_ascii_digit());
                let step = match step.parse::<u32>() {
                    Ok(step) if digits && (1..=span).contains(&step) => step,
                    _ => {
                        return Err(format!(
                            "{name} {text:?}: the increment after `/` must be a number from 1 to {span}"
                        ))
                    }
                };
                (base, Some(step))
            }
            Some(_) => {
                return Err(format!(
                    "{name} {text:?}: `/` (increments) is not allowed in {name}"
                ))
            }
            None => (item, None),
        };
        let (from, to) = match base {
            "*" => (field.min, field.max),
            _ => match base.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (number(field, a)?, number(field, b)?);
                    if a > b {
                        return Err(format!(
                            "{name} {text:?}: the range {base} runs backwards; the local cloud does not run wrapping ranges: write two ranges"
                        ));
                    }
                    (a, b)
                }
                None => {
                    let a = number(field, base)?;
                    (a, if step.is_some() { field.max } else { a })
                }
            },
        };
        let mut v = from;
        while v <= to {
            set.insert(v - field.offset);
            v += step.unwrap_or(1);
        }
    }
    Ok(set)
}

/// One value of a field: a number in its range, or a name (JAN-DEC, SUN-SAT; any case).
fn number(field: &Field, text: &str) -> Result<u32, String> {
    let name = field.name;
    let range = match field.names {
        [] => format!("{}-{}", field.min, field.max),
        names => format!(
            "{}-{} or {}-{}",
            field.min,
            field.max,
            names[0],
            names[names.len() - 1]
        ),
    };
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        return Ok(field.min + i as u32);
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name} value {text:?} is not a number or name in {range}"
        ));
    }
    match text.parse::<u32>() {
        Ok(n) if (field.min..=field.max).contains(&n) => Ok(n),
        _ => Err(format!("{name} value {text} is out of range {range}")),
    }
}

#[cfg(test)]
mod tests;
