//! DynamoDB numbers: exact decimal arithmetic and comparison for up to 38 significant digits.
//!
//! A number is `mantissa × 10^exponent` with an `i128` mantissa. Results that do not fit answer a
//! `ValidationException`, as DynamoDB does for numbers beyond its 38 digits of precision.

use std::cmp::Ordering;

use serde_json::Value;

use crate::aws::AwsError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Decimal {
    mantissa: i128,
    exponent: i32,
}

fn bad(text: &str) -> AwsError {
    AwsError::validation(format!(
        "The parameter cannot be converted to a numeric value: {}",
        text.chars().take(60).collect::<String>()
    ))
}

fn parse(text: &str) -> Result<Decimal, AwsError> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (number, exp) = match t.find(['e', 'E']) {
        Some(at) => (&t[..at], t[at + 1..].parse::<i32>().map_err(|_| bad(text))?),
        None => (t, 0),
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(bad(text));
    }
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.len() > 38 {
        return Err(AwsError::validation(format!(
            "Attempting to store more than 38 significant digits in a Number: {text}"
        )));
    }
    let trailing = (digits.len() - significant.len()) as i32;
    let mut mantissa: i128 = if significant.is_empty() {
        0
    } else {
        significant.parse().map_err(|_| bad(text))?
    };
    if negative {
        mantissa = -mantissa;
    }
    let exponent = exp
        .checked_sub(frac.len() as i32)
        .and_then(|e| e.checked_add(trailing))
        .ok_or_else(|| bad(text))?;
    let exponent = if mantissa == 0 { 0 } else { exponent };
    if !(-130..=126).contains(&(exponent + significant.len() as i32)) && mantissa != 0 {
        return Err(AwsError::validation(format!(
            "Number out of the range DynamoDB stores: {text}"
        )));
    }
    Ok(Decimal { mantissa, exponent })
}

/// Both numbers scaled to the smaller exponent, if that fits.
fn align(a: Decimal, b: Decimal) -> Option<(i128, i128, i32)> {
    let exponent = a.exponent.min(b.exponent);
    let scale = |d: Decimal| -> Option<i128> {
        let shift = u32::try_from(d.exponent - exponent).ok()?;
        d.mantissa.checked_mul(10i128.checked_pow(shift)?)
    };
    Some((scale(a)?, scale(b)?, exponent))
}

fn format(d: Decimal) -> String {
    let mut mantissa = d.mantissa;
    let mut exponent = d.exponent;
    if mantissa == 0 {
        return "0".to_owned();
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    let negative = mantissa < 0;
    let digits = mantissa.unsigned_abs().to_string();
    let body = if exponent >= 0 {
        format!("{digits}{}", "0".repeat(exponent as usize))
    } else {
        let point = digits.len() as i32 + exponent;
        if point > 0 {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        } else {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        }
    };
    if negative {
        format!("-{body}")
    } else {
        body
    }
}

/// Validates a number and returns it in canonical form.
pub fn canonical(text: &str) -> Result<String, AwsError> {
    parse(text).map(format)
}

/// `a + b` (or `a - b`), exactly.
pub fn add(a: &str, b: &str, subtract: bool) -> Result<String, AwsError> {
    let (a, b) = (parse(a)?, parse(b)?);
    let overflow = || {
        AwsError::validation("Number overflow. Attempting to store a number with magnitude larger than supported range")
    };
    let (x, y, exponent) = align(a, b).ok_or_else(overflow)?;
    let y = if subtract {
        y.checked_neg().ok_or_else(overflow)?
    } else {
        y
    };
    let mantissa = x.checked_add(y).ok_or_else(overflow)?;
    let result = Decimal { mantissa, exponent };
    let text = format(result);
    if text
        .trim_start_matches('-')
        .replace('.', "")
        .trim_start_matches('0')
        .trim_end_matches('0')
        .len()
        > 38
    {
        return Err(overflow());
    }
    Ok(text)
}

/// Numeric order of two number strings; `None` when either is not a number.
pub fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (parse(a).ok()?, parse(b).ok()?);
    match align(a, b) {
        Some((x, y, _)) => Some(x.cmp(&y)),
        None => {
            let f = |d: Decimal| d.mantissa as f64 * 10f64.powi(d.exponent);
            f(a).partial_cmp(&f(b))
        }
    }
}

/// Equality of two JSON strings holding numbers (set elements).
pub fn compare_json(a: &Value, b: &Value) -> bool {
    match (a.as_str(), b.as_str()) {
        (Some(a), Some(b)) => compare(a, b) == Some(Ordering::Equal),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic() {
        fn check(a: &str, b: &str, subtract: bool, expect: &str) {
            assert_eq!(
                add(a, b, subtract).as_deref(),
                Ok(expect),
                "{a} {} {b}",
                if subtract { '-' } else { '+' }
            );
        }
        check("1", "1", false, "2");
        check("0.1", "0.2", false, "0.3");
        check("10", "0.5", true, "9.5");
        check("-3", "3", false, "0");
        check("1e3", "1", false, "1001");
        check(
            "170141183460469231731687303715884105",
            "1",
            false,
            "170141183460469231731687303715884106",
        );
        check("00012.3400", "0", false, "12.34");
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for text in [
            "",
            "-",
            "abc",
            "1.2.3",
            "1e",
            "0x10",
            "1,000",
            " ",
            "NaN",
            "inf",
            &"9".repeat(39),
        ] {
            assert!(canonical(text).is_err(), "{text:?}");
        }
        assert!(
            add(&"9".repeat(38), &"9".repeat(38), false).is_err(),
            "overflow past 38 digits"
        );
    }

    #[test]
    fn ordering() {
        fn check(a: &str, b: &str, expect: Ordering) {
            assert_eq!(compare(a, b), Some(expect), "{a} vs {b}");
        }
        check("2", "10", Ordering::Less);
        check("10.0", "10", Ordering::Equal);
        check("-1", "0.5", Ordering::Less);
        check("1e2", "99.9", Ordering::Greater);
        assert_eq!(compare("x", "1"), None);
    }
}
