//! Traffic profiles: the TOML files under `xtask/profiles/` (format in `docs/plan.md`), and the flat
//! profile `--events-per-sec N` stands for.

use anyhow::{bail, Context};
use serde::Deserialize;

/// The shipped default profile of `cargo xtask loadtest` (without `--profile`): an ad network of 2,000
/// campaigns, `xtask/profiles/daily-curve-network.toml`.
pub const DEFAULT_PROFILE: &str = include_str!("../../../xtask/profiles/daily-curve-network.toml");
/// Where [`DEFAULT_PROFILE`] lives in the workspace.
pub const DEFAULT_PROFILE_PATH: &str = "xtask/profiles/daily-curve-network.toml";

/// Minutes in a day.
pub const DAY: usize = 1_440;

/// A validated traffic profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// Bytes of one event in the stream encoding.
    pub event_bytes: u32,
    /// Events one collect request carries on average (1 for pixels; SDKs and ad servers batch).
    pub events_per_request: f64,
    pub campaigns: u32,
    pub ads_per_campaign: u32,
    /// Distinct users the events come from (uniform over the pool).
    pub users: u32,
    /// Zipf exponent of campaign sizes (0 = all equal).
    pub campaign_skew: f64,
    /// Shares of impression, viewable, click, conversion (sum 1).
    pub kinds: [f64; 4],
    /// Query API / dashboard requests per day.
    pub query_requests_per_day: f64,
    /// Events per second for each minute of the period (a day or a week).
    pub events_per_sec: Vec<f64>,
}

pub const KIND_NAMES: [&str; 4] = ["impression", "viewable", "click", "conversion"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    event_bytes: u32,
    #[serde(default = "one")]
    events_per_request: f64,
    campaigns: u32,
    #[serde(default = "one_u32")]
    ads_per_campaign: u32,
    #[serde(default = "default_users")]
    users: u32,
    #[serde(default)]
    campaign_skew: f64,
    kinds: Kinds,
    #[serde(default)]
    query_requests_per_day: f64,
    traffic: Traffic,
}

fn one() -> f64 {
    1.0
}

fn one_u32() -> u32 {
    1
}

/// Users in the pool when a profile does not say.
pub const DEFAULT_USERS: u32 = 100_000;

fn default_users() -> u32 {
    DEFAULT_USERS
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Kinds {
    impression: f64,
    viewable: f64,
    click: f64,
    conversion: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Traffic {
    period: String,
    points: Vec<Point>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Point {
    #[serde(default)]
    day: Option<u32>,
    at: String,
    events_per_sec: f64,
}

impl Profile {
    /// Parses and validates a profile; errors name the field and what to write instead.
    pub fn parse(text: &str) -> anyhow::Result<Profile> {
        let file: File =
            toml::from_str(text).context("not a valid profile (format: docs/plan.md)")?;
        let File {
            name,
            description,
            event_bytes,
            events_per_request,
            campaigns,
            ads_per_campaign,
            users,
            ..
        } = file;
        if name.trim().is_empty() {
            bail!("name: must not be empty");
        }
        check_event_bytes(event_bytes)?;
        if !(events_per_request.is_finite() && (1.0..=1000.0).contains(&events_per_request)) {
            bail!("events_per_request: {events_per_request} is outside 1..=1000 (collect takes at most 1000 events per request)");
        }
        if !(1..=1_000_000).contains(&campaigns) {
            bail!("campaigns: {campaigns} is outside 1..=1000000");
        }
        if !(1..=10_000).contains(&ads_per_campaign) {
            bail!("ads_per_campaign: {ads_per_campaign} is outside 1..=10000");
        }
        if !(1..=100_000_000).contains(&users) {
            bail!("users: {users} is outside 1..=100000000 (the pool of distinct users events come from)");
        }
        let skew = file.campaign_skew;
        if !(skew.is_finite() && (0.0..=3.0).contains(&skew)) {
            bail!("campaign_skew: {skew} is outside 0..=3 (a Zipf exponent; 1 is typical)");
        }
        let k = &file.kinds;
        let kinds = [k.impression, k.viewable, k.click, k.conversion];
        for (share, kind) in kinds.iter().zip(KIND_NAMES) {
            if !(share.is_finite() && (0.0..=1.0).contains(share)) {
                bail!("kinds.{kind}: {share} is not a share between 0 and 1");
            }
        }
        let sum: f64 = kinds.iter().sum();
        if (sum - 1.0).abs() > 0.001 {
            bail!("kinds: the shares add up to {sum}, they must add up to 1");
        }
        let q = file.query_requests_per_day;
        if !(q.is_finite() && (0.0..=1e9).contains(&q)) {
            bail!("query_requests_per_day: {q} is outside 0..=1e9");
        }
        let events_per_sec = curve(&file.traffic).context("traffic")?;
        Ok(Profile {
            name,
            description,
            event_bytes,
            events_per_request,
            campaigns,
            ads_per_campaign,
            users,
            campaign_skew: skew,
            kinds,
            query_requests_per_day: q,
            events_per_sec,
        })
    }

    /// The flat profile of `--events-per-sec N [--event-bytes B]`: one day at N events per second.
    pub fn flat(events_per_sec: f64, event_bytes: u32) -> anyhow::Result<Profile> {
        check_rate(events_per_sec).context("--events-per-sec")?;
        check_event_bytes(event_bytes).context("--event-bytes")?;
        Ok(Profile {
            name: format!("flat {events_per_sec} events/s"),
            description: "a constant rate (--events-per-sec)".to_owned(),
            event_bytes,
            events_per_request: 10.0,
            campaigns: 1_000,
            ads_per_campaign: 5,
            users: DEFAULT_USERS,
            campaign_skew: 1.0,
            kinds: [0.70, 0.25, 0.04, 0.01],
            query_requests_per_day: 10_000.0,
            events_per_sec: vec![events_per_sec; DAY],
        })
    }

    /// Days the profile covers (1 or 7).
    pub fn days(&self) -> f64 {
        self.events_per_sec.len() as f64 / DAY as f64
    }

    pub fn mean_events_per_sec(&self) -> f64 {
        self.events_per_sec.iter().sum::<f64>() / self.events_per_sec.len().max(1) as f64
    }

    pub fn peak_events_per_sec(&self) -> f64 {
        self.events_per_sec.iter().copied().fold(0.0, f64::max)
    }

    /// The same profile (shape, mix, skew) with every minute's rate multiplied so that the mean is `rate`
    /// events per second (`cargo xtask plan --sweep`). A profile without traffic has no shape to scale.
    pub fn scaled_to_mean(&self, rate: f64) -> anyhow::Result<Profile> {
        check_rate(rate).context("the target mean rate")?;
        let mean = self.mean_events_per_sec();
        if mean.is_nan() || mean <= 0.0 {
            bail!(
                "profile \"{}\" has no traffic (mean 0 events/s): there is no shape to scale",
                self.name
            );
        }
        let factor = rate / mean;
        Ok(Profile {
            events_per_sec: self.events_per_sec.iter().map(|v| v * factor).collect(),
            ..self.clone()
        })
    }
}

fn check_event_bytes(bytes: u32) -> anyhow::Result<()> {
    if !(16..=65_536).contains(&bytes) {
        bail!(
            "event_bytes: {bytes} is outside 16..=65536 (a valid event encodes to about a kilobyte at most, docs/events.md)"
        );
    }
    Ok(())
}

fn check_rate(rate: f64) -> anyhow::Result<()> {
    if !(rate.is_finite() && (0.0..=10_000_000.0).contains(&rate)) {
        bail!("events per second: {rate} is outside 0..=10000000");
    }
    Ok(())
}

/// Minute of the period a point stands for: `at` is `HH:MM`, `day` 0–6 in a weekly profile.
fn minute_of(point: &Point, week: bool) -> anyhow::Result<usize> {
    let (h, m) = point
        .at
        .split_once(':')
        .with_context(|| format!("at = {:?}: expected HH:MM, e.g. \"09:30\"", point.at))?;
    let parse = |s: &str, max: usize, what: &str| -> anyhow::Result<usize> {
        match s.parse::<usize>() {
            Ok(v) if v <= max && s.len() == 2 => Ok(v),
            _ => bail!(
                "at = {:?}: {what} must be two digits, at most {max}",
                point.at
            ),
        }
    };
    let minute = parse(h, 23, "the hour")? * 60 + parse(m, 59, "the minute")?;
    let day = match (point.day, week) {
        (None, false) => 0,
        (Some(d), true) if d < 7 => d as usize,
        (Some(d), true) => bail!("day = {d}: must be 0 (Monday) to 6"),
        (None, true) => bail!(
            "at = {:?}: a weekly profile needs `day` (0-6) on every point",
            point.at
        ),
        (Some(_), false) => bail!(
            "at = {:?}: `day` only goes with period = \"week\"",
            point.at
        ),
    };
    Ok(day * DAY + minute)
}

/// Events per second for each minute: linear between points, wrapping around the period.
fn curve(traffic: &Traffic) -> anyhow::Result<Vec<f64>> {
    let week = match traffic.period.as_str() {
        "day" => false,
        "week" => true,
        other => bail!("period = {other:?}: expected \"day\" or \"week\""),
    };
    let len = if week { 7 * DAY } else { DAY };
    if traffic.points.is_empty() {
        bail!("points: at least one point is needed");
    }
    let mut points = Vec::with_capacity(traffic.points.len());
    for (i, p) in traffic.points.iter().enumerate() {
        let minute = minute_of(p, week).with_context(|| format!("points[{i}]"))?;
        check_rate(p.events_per_sec).with_context(|| format!("points[{i}].events_per_sec"))?;
        if let Some(&(prev, _)) = points.last() {
            if minute <= prev {
                bail!(
                    "points[{i}]: times must increase, {} is not after the previous point",
                    p.at
                );
            }
        }
        points.push((minute, p.events_per_sec));
    }
    let mut out = vec![0.0; len];
    let (first, last) = (points[0], points[points.len() - 1]);
    for (minute, slot) in out.iter_mut().enumerate() {
        // The last point at or before this minute and the next one after it, wrapping around the period.
        let (m0, v0) = match points.iter().rev().find(|p| p.0 <= minute) {
            Some(&(m, v)) => (m as f64, v),
            None => (last.0 as f64 - len as f64, last.1),
        };
        let (m1, v1) = match points.iter().find(|p| p.0 > minute) {
            Some(&(m, v)) => (m as f64, v),
            None => (first.0 as f64 + len as f64, first.1),
        };
        let t = (minute as f64 - m0) / (m1 - m0).max(1.0);
        *slot = v0 + (v1 - v0) * t.clamp(0.0, 1.0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(traffic: &str) -> String {
        format!(
            "name = \"t\"\nevent_bytes = 200\ncampaigns = 10\n\
             [kinds]\nimpression = 0.7\nviewable = 0.25\nclick = 0.04\nconversion = 0.01\n{traffic}"
        )
    }

    #[track_caller]
    fn check_err(text: &str, expect: &str) {
        let err = format!("{:#}", Profile::parse(text).expect_err("must fail"));
        assert!(err.contains(expect), "expected `{expect}` in `{err}`");
    }

    #[track_caller]
    fn check_curve(points: &str, minute: usize, expect: f64) {
        let text = profile(&format!(
            "[traffic]\nperiod = \"day\"\npoints = [{points}]\n"
        ));
        let p = Profile::parse(&text).expect("valid");
        assert_eq!(p.events_per_sec.len(), DAY);
        let got = p.events_per_sec[minute];
        assert!(
            (got - expect).abs() < 1e-9,
            "minute {minute}: {got} != {expect}"
        );
    }

    const TWO: &str =
        "{ at = \"06:00\", events_per_sec = 100 }, { at = \"18:00\", events_per_sec = 500 }";

    #[test]
    fn curves() {
        check_curve("{ at = \"00:00\", events_per_sec = 7 }", 0, 7.0);
        check_curve("{ at = \"12:00\", events_per_sec = 7 }", 1439, 7.0);
        check_curve(TWO, 360, 100.0);
        check_curve(TWO, 720, 300.0);
        check_curve(TWO, 1080, 500.0);
        // Wraps: 18:00 → 06:00 next day is 12 h, midnight is halfway.
        check_curve(TWO, 0, 300.0);
        check_curve(TWO, 1260, 400.0);
        check_curve(TWO, 180, 200.0);
    }

    #[test]
    fn hostile_profiles() {
        let day = |points: &str| {
            profile(&format!(
                "[traffic]\nperiod = \"day\"\npoints = [{points}]\n"
            ))
        };
        check_err("name = ", "not a valid profile");
        check_err(&day(""), "at least one point");
        check_err(
            &day("{ at = \"25:00\", events_per_sec = 1 }"),
            "the hour must be two digits",
        );
        check_err(
            &day("{ at = \"9:00\", events_per_sec = 1 }"),
            "the hour must be two digits",
        );
        check_err(
            &day("{ at = \"0900\", events_per_sec = 1 }"),
            "expected HH:MM",
        );
        check_err(
            &day("{ at = \"09:00\", events_per_sec = -1 }"),
            "points[0].events_per_sec",
        );
        check_err(
            &day("{ at = \"09:00\", events_per_sec = nan }"),
            "outside 0..=10000000",
        );
        check_err(
            &day("{ at = \"09:00\", events_per_sec = 1 }, { at = \"08:00\", events_per_sec = 1 }"),
            "times must increase",
        );
        check_err(
            &day("{ day = 1, at = \"09:00\", events_per_sec = 1 }"),
            "`day` only goes with",
        );
        check_err(
            &profile(
                "[traffic]\nperiod = \"week\"\npoints = [{ at = \"09:00\", events_per_sec = 1 }]\n",
            ),
            "needs `day`",
        );
        check_err(&profile("[traffic]\nperiod = \"week\"\npoints = [{ day = 7, at = \"09:00\", events_per_sec = 1 }]\n"), "day = 7");
        check_err(
            &profile("[traffic]\nperiod = \"month\"\npoints = []\n"),
            "expected \"day\" or \"week\"",
        );
        let ok = day("{ at = \"09:00\", events_per_sec = 1 }");
        check_err(
            &ok.replace("event_bytes = 200", "event_bytes = 2"),
            "event_bytes: 2 is outside",
        );
        check_err(
            &ok.replace("campaigns = 10", "campaigns = 0"),
            "campaigns: 0",
        );
        check_err(&ok.replace("click = 0.04", "click = 0.4"), "add up to 1.36");
        check_err(&ok.replace("click = 0.04", "click = -0.04"), "kinds.click");
        check_err(&format!("{ok}surprise = 1\n"), "unknown field");
        check_err(
            &ok.replace("campaigns = 10", "campaigns = 10\nusers = 0"),
            "users: 0 is outside",
        );
        let users = Profile::parse(&ok.replace("campaigns = 10", "campaigns = 10\nusers = 70"))
            .expect("valid");
        assert_eq!(users.users, 70);
        assert_eq!(Profile::parse(&ok).expect("valid").users, DEFAULT_USERS);
        check_err(
            &ok.replace("name = \"t\"", "name = \" \""),
            "name: must not be empty",
        );
    }

    #[test]
    fn weekly() {
        let text = profile(
            "[traffic]\nperiod = \"week\"\npoints = [{ day = 0, at = \"00:00\", events_per_sec = 10 }, \
             { day = 6, at = \"00:00\", events_per_sec = 70 }]\n",
        );
        let p = Profile::parse(&text).expect("valid");
        assert_eq!(p.events_per_sec.len(), 7 * DAY);
        assert_eq!(p.days(), 7.0);
        assert!((p.events_per_sec[3 * DAY] - 40.0).abs() < 1e-9);
        assert!((p.events_per_sec[6 * DAY + 720] - 40.0).abs() < 1e-9);
    }

    #[test]
    fn scaled_to_mean_keeps_the_shape() {
        let text = profile(&format!("[traffic]\nperiod = \"day\"\npoints = [{TWO}]\n"));
        let p = Profile::parse(&text).expect("valid");
        let q = p.scaled_to_mean(30_000.0).expect("scaled");
        assert!((q.mean_events_per_sec() - 30_000.0).abs() < 1e-6);
        // The mean of TWO is 300 events/s: ×100 everywhere, the peak included.
        assert!((q.peak_events_per_sec() - 50_000.0).abs() < 1e-6);
        assert!((q.events_per_sec[720] - 30_000.0).abs() < 1e-6);
        assert_eq!(
            (q.campaigns, q.campaign_skew, &q.name),
            (p.campaigns, p.campaign_skew, &p.name)
        );
        let idle = Profile::flat(0.0, 300).expect("valid");
        let err = format!("{:#}", idle.scaled_to_mean(1_000.0).expect_err("no shape"));
        assert!(err.contains("no traffic"), "{err}");
        let err = format!("{:#}", p.scaled_to_mean(f64::NAN).expect_err("nan"));
        assert!(err.contains("target mean rate"), "{err}");
    }

    #[test]
    fn shipped_default_parses() {
        let p = Profile::parse(DEFAULT_PROFILE).expect("the shipped default");
        assert_eq!(p.campaigns, 2000);
    }

    #[test]
    fn flat() {
        let p = Profile::flat(5000.0, 300).expect("valid");
        assert_eq!(p.mean_events_per_sec(), 5000.0);
        assert!(Profile::flat(f64::NAN, 300).is_err());
        assert!(Profile::flat(10.0, 0).is_err());
    }
}
