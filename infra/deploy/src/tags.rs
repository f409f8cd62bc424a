//! The tags every stack carries, and reading them back.
//!
//! `tally:project` scopes everything `previews` does: a stack without our project's tag is never listed,
//! pruned or destroyed by it, whatever its name.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_cloudformation::primitives::{DateTime, DateTimeFormat};
use aws_sdk_cloudformation::types::Tag;

use crate::Error;

pub const PROJECT: &str = "tally:project";
pub const STAGE: &str = "tally:stage";
pub const BRANCH: &str = "tally:branch";
pub const COMMIT: &str = "tally:commit";
pub const CREATED_AT: &str = "tally:created-at";

/// What a stack is tagged with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackTags {
    pub project: String,
    pub stage: String,
    pub branch: String,
    pub commit: String,
    /// RFC 3339, UTC; kept from the first deploy on every update.
    pub created_at: String,
}

impl StackTags {
    pub fn to_sdk(&self) -> Vec<Tag> {
        [
            (PROJECT, &self.project),
            (STAGE, &self.stage),
            (BRANCH, &self.branch),
            (COMMIT, &self.commit),
            (CREATED_AT, &self.created_at),
        ]
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(tag_value(v)).build())
        .collect()
    }

    /// Reads our tags back from a stack; `None` when the stack is not of any tally project.
    pub fn from_sdk(tags: &[Tag]) -> Option<StackTags> {
        let get = |key: &str| {
            tags.iter()
                .find(|t| t.key() == Some(key))
                .and_then(|t| t.value())
                .map(str::to_owned)
        };
        Some(StackTags {
            project: get(PROJECT)?,
            stage: get(STAGE).unwrap_or_default(),
            branch: get(BRANCH).unwrap_or_default(),
            commit: get(COMMIT).unwrap_or_default(),
            created_at: get(CREATED_AT).unwrap_or_default(),
        })
    }
}

/// A tag value CloudFormation accepts: at most 256 characters of letters, digits, spaces and `_.:/=+-@`;
/// anything else becomes `_`.
pub fn tag_value(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if c.is_alphanumeric() || c.is_whitespace() || "_.:/=+-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(256)
        .collect()
}

/// Now, as RFC 3339 (`2026-11-26T13:00:00Z`).
pub fn now_rfc3339() -> String {
    DateTime::from(SystemTime::now())
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// Seconds since the epoch of an RFC 3339 timestamp.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = DateTime::from_str(text, DateTimeFormat::DateTime).ok()?;
    let secs = u64::try_from(t.secs()).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Parses an age such as `7d`, `36h`, `90m`, `2w`, `45s` (one number and one unit).
pub fn parse_age(input: &str) -> Result<Duration, Error> {
    let bad = |problem: &str| Error::Duration {
        input: input.to_owned(),
        problem: problem.to_owned(),
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| bad("missing unit: use s, m, h, d or w (e.g. 7d)"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(bad("must start with a number (e.g. 7d)"));
    }
    let n: u64 = number.parse().map_err(|_| bad("number too large"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad("unknown unit: use s, m, h, d or w (e.g. 7d)")),
    };
    n.checked_mul(unit_secs)
        .map(Duration::from_secs)
        .ok_or_else(|| bad("too long"))
}

/// `3d 4h`, `25m`, `12s`: an age for people.
pub fn human_age(age: Duration) -> String {
    let s = age.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_are_sanitised() {
        let check = |raw: &str, expect: &str| assert_eq!(tag_value(raw), expect, "{raw}");
        check("main", "main");
        check("feature/ÜBER_new--thing", "feature/ÜBER_new--thing");
        check("fix#12 (urgent)!", "fix_12 _urgent__");
        check("a\u{0}b", "a_b");
        check("", "");
        assert_eq!(tag_value(&"x".repeat(300)).len(), 256);
    }

    #[test]
    fn tags_round_trip_and_foreign_stacks_are_none() {
        let tags = StackTags {
            project: "tally".into(),
            stage: "pr-7".into(),
            branch: "feature/x".into(),
            commit: "abc123".into(),
            created_at: "2026-11-20T10:00:00Z".into(),
        };
        assert_eq!(StackTags::from_sdk(&tags.to_sdk()), Some(tags));
        let foreign = [Tag::builder().key("team").value("other").build()];
        assert_eq!(StackTags::from_sdk(&foreign), None);
    }

    #[test]
    fn ages() {
        let check = |input: &str, expect: Result<u64, &str>| {
            let got = parse_age(input)
                .map(|d| d.as_secs())
                .map_err(|e| e.to_string());
            match expect {
                Ok(secs) => assert_eq!(got, Ok(secs), "{input}"),
                Err(part) => {
                    let e = got.expect_err(input);
                    assert!(e.contains(part) && e.contains(input.trim()), "{input}: {e}");
                }
            }
        };
        check("7d", Ok(604_800));
        check("36h", Ok(129_600));
        check("90m", Ok(5400));
        check("2w", Ok(1_209_600));
        check("0s", Ok(0));
        check(" 1d ", Ok(86_400));
        check("7", Err("missing unit"));
        check("d", Err("must start with a number"));
        check("7days", Err("unknown unit"));
        check("-1d", Err("must start with a number"));
        check("1.5d", Err("unknown unit"));
        check("99999999999999999999d", Err("number too large"));
        check("999999999999999999w", Err("too long"));
        check("", Err("missing unit"));
    }

    #[test]
    fn rfc3339_round_trip() {
        let now = now_rfc3339();
        let parsed = parse_rfc3339(&now).expect("own format parses");
        assert!(
            SystemTime::now()
                .duration_since(parsed)
                .expect("not in the future")
                .as_secs()
                < 5
        );
        assert_eq!(parse_rfc3339("not a date"), None);
        assert_eq!(
            human_age(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d 4h"
        );
        assert_eq!(human_age(Duration::from_secs(1500)), "25m");
    }
}
