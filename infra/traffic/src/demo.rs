//! Synthetic ad traffic for `cargo xtask dev --demo`: campaigns of very different sizes, a daily curve
//! compressed into minutes, realistic viewability, click-through and conversion rates, some bots and some
//! malformed events, posted to the collect Function URL as JSON batches.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::http_client::request;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Events per second at the top of the daily curve.
    pub peak_rate: f64,
    /// One simulated day lasts this long.
    pub day: Duration,
    pub seed: u64,
    /// Small campaigns after the six named ones (`tail-01`, `tail-02`, …), sharing [`TAIL_SHARE`] of the
    /// impressions: enough of them that the dashboard's campaign table has more than one page.
    pub long_tail: usize,
    /// The collect key the posts are signed with (`Authorization: Bearer <id>:<secret>`): only an
    /// authenticated post's costs and conversion values are counted (unsigned events carry no money), so
    /// without one every spend is 0. The local cloud's is `LocalAws::secretsmanager.collect_key()`, which the
    /// `tally-localcloud` binary writes to its endpoints file ([`crate::endpoints::Endpoints::collect_key`]).
    pub key: Option<(String, String)>,
}

/// The long tail's share of the impressions.
pub const TAIL_SHARE: f64 = 0.04;

impl Default for DemoOptions {
    fn default() -> DemoOptions {
        DemoOptions {
            peak_rate: 300.0,
            day: Duration::from_secs(600),
            seed: 0x7a11,
            long_tail: 30,
            key: None,
        }
    }
}

/// A small deterministic PRNG (xorshift64*), enough for traffic shapes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize % n.max(1)
    }
}

/// One demo campaign.
#[derive(Debug, Clone)]
struct Campaign {
    id: &'static str,
    /// Share of impressions.
    weight: f64,
    ads: usize,
    ctr: f64,
    cvr: f64,
    cpm_micros: u64,
}

const CAMPAIGNS: [Campaign; 6] = [
    Campaign {
        id: "acme-shoes",
        weight: 0.52,
        ads: 5,
        ctr: 0.009,
        cvr: 0.03,
        cpm_micros: 2_500_000,
    },
    Campaign {
        id: "globex-travel",
        weight: 0.25,
        ads: 4,
        ctr: 0.014,
        cvr: 0.02,
        cpm_micros: 4_000_000,
    },
    Campaign {
        id: "initech-saas",
        weight: 0.12,
        ads: 3,
        ctr: 0.006,
        cvr: 0.08,
        cpm_micros: 9_000_000,
    },
    Campaign {
        id: "umbrella-pharma",
        weight: 0.07,
        ads: 3,
        ctr: 0.004,
        cvr: 0.05,
        cpm_micros: 6_000_000,
    },
    Campaign {
        id: "hooli-phones",
        weight: 0.03,
        ads: 2,
        ctr: 0.02,
        cvr: 0.04,
        cpm_micros: 3_000_000,
    },
    Campaign {
        id: "tiny-bakery",
        weight: 0.01,
        ads: 1,
        ctr: 0.03,
        cvr: 0.06,
        cpm_micros: 1_000_000,
    },
];

const USER_AGENTS: [&str; 3] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
];
const BOT_AGENTS: [&str; 2] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.31",
];
const COUNTRIES: [&str; 6] = ["US", "US", "GB", "DE", "FR", "BR"];

/// The rate at a point of the simulated day: low at night, peaking in the evening (between 15% and 100%).
pub fn daily_factor(elapsed: Duration, day: Duration) -> f64 {
    let phase = (elapsed.as_secs_f64() / day.as_secs_f64().max(1.0)).fract();
    0.15 + 0.85 * (0.5 - 0.5 * (std::f64::consts::TAU * phase).cos())
}

/// The campaign of one impression: one of the long tail's `long_tail` campaigns with probability
/// [`TAIL_SHARE`] (each as likely; a cost per mille that grows with the number, so that ranking by spend and by
/// impressions differ), else a named one by its weight.
fn pick_campaign(rng: &mut Rng, long_tail: usize) -> (String, Campaign) {
    if long_tail > 0 && rng.unit() < TAIL_SHARE {
        let n = rng.below(long_tail) + 1;
        let tail = Campaign {
            id: "tail",
            weight: TAIL_SHARE / long_tail as f64,
            ads: 1 + n % 2,
            ctr: 0.01,
            cvr: 0.04,
            cpm_micros: 500_000 + 150_000 * n as u64,
        };
        return (format!("tail-{n:02}"), tail);
    }
    let mut pick = rng.unit();
    let campaign = CAMPAIGNS
        .iter()
        .find(|c| {
            pick -= c.weight;
            pick < 0.0
        })
        .unwrap_or(&CAMPAIGNS[0]);
    (campaign.id.to_owned(), campaign.clone())
}

/// The events of one impression: the impression, maybe viewable, maybe a click, maybe a conversion; the
/// campaign one of the six named ones or of `long_tail` small ones.
pub fn impression_events(rng: &mut Rng, now_ms: i64, serial: u64, long_tail: usize) -> Vec<Value> {
    let (campaign_id, campaign) = pick_campaign(rng, long_tail);
    let ad = format!("{campaign_id}-ad{}", rng.below(campaign.ads) + 1);
    let bot = rng.unit() < 0.03;
    let user = if bot {
        format!("bot{}", rng.below(20))
    } else {
        format!("u{}", rng.below(200_000))
    };
    let agent = if bot {
        BOT_AGENTS[rng.below(BOT_AGENTS.len())]
    } else {
        USER_AGENTS[rng.below(USER_AGENTS.len())]
    };
    let base = |kind: &str, n: u32| {
        json!({
            "id": format!("demo-{now_ms}-{serial}-{n}"),
            "kind": kind,
            "campaign_id": campaign_id,
            "ad_id": ad,
            "placement_id": format!("site{}", serial % 40),
            "user_id": user,
            "client_ts_ms": now_ms,
            "country": COUNTRIES[(serial % COUNTRIES.len() as u64) as usize],
            "user_agent": agent,
        })
    };
    let mut impression = base("impression", 0);
    impression["cost_micros"] = json!(campaign.cpm_micros / 1000);
    let mut events = vec![impression];
    if rng.unit() < 0.62 {
        events.push(base("viewable", 1));
    }
    // Bots click far more often than people: the deferred lane's invalid-traffic filter removes them.
    let ctr = if bot {
        campaign.ctr * 8.0
    } else {
        campaign.ctr
    };
    if rng.unit() < ctr {
        events.push(base("click", 2));
        if !bot && rng.unit() < campaign.cvr {
            let mut conversion = base("conversion", 3);
            conversion["value_micros"] = json!(10_000_000 + rng.below(70) as u64 * 1_000_000);
            events.push(conversion);
        }
    }
    events
}

/// A malformed event, one of several kinds of mistakes clients make.
pub fn malformed_event(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => json!({"kind": "impresion", "campaign_id": "acme-shoes", "ad_id": "acme-shoes-ad1"}),
        1 => json!({"kind": "click", "ad_id": "acme-shoes-ad1"}),
        2 => {
            json!({"kind": "conversion", "campaign_id": "acme shoes!", "ad_id": "x", "value_micros": -5})
        }
        _ => {
            json!({"kind": "impression", "campaign_id": "acme-shoes", "ad_id": "acme-shoes-ad1", "client_ts_ms": 1})
        }
    }
}

/// Posts traffic to `collect_url` until `stop`; returns (events sent, batches refused).
pub async fn drive(
    collect_url: &str,
    options: DemoOptions,
    mut stop: watch::Receiver<bool>,
) -> (u64, u64) {
    let mut rng = Rng::new(
        options.seed
            ^ SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
    );
    let started = Instant::now();
    let tick = Duration::from_millis(200);
    let authorization = options
        .key
        .as_ref()
        .map(|(id, secret)| format!("Bearer {id}:{secret}"));
    let (mut sent, mut refused, mut serial) = (0u64, 0u64, 0u64);
    let mut owed = 0.0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|stop| *stop) => return (sent, refused),
        }
        owed +=
            options.peak_rate * daily_factor(started.elapsed(), options.day) * tick.as_secs_f64()
                / 1.6;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut batch = Vec::new();
        while owed >= 1.0 {
            owed -= 1.0;
            serial += 1;
            batch.extend(impression_events(
                &mut rng,
                now_ms,
                serial,
                options.long_tail,
            ));
        }
        if rng.unit() < 0.05 {
            batch.push(malformed_event(&mut rng));
        }
        for chunk in batch.chunks(400) {
            let body = Value::Array(chunk.to_vec()).to_string();
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(authorization) = authorization.as_deref() {
                headers.push(("Authorization", authorization));
            }
            match request(collect_url, "POST", "/v1/events", &body, &headers).await {
                Ok(answer) if answer.status < 300 => {}
                Ok(_) => refused += 1,
                Err(error) => {
                    refused += 1;
                    tracing::warn!(message = "demo traffic could not reach collect", %error);
                }
            }
            sent += chunk.len() as u64;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn traffic_has_realistic_shape() {
        let mut rng = Rng::new(42);
        let (mut impressions, mut clicks, mut conversions, mut viewable) = (0.0, 0.0, 0.0, 0.0);
        let mut per_campaign = std::collections::BTreeMap::new();
        for serial in 0..200_000 {
            for event in impression_events(&mut rng, 1_700_000_000_000, serial, 0) {
                match event["kind"].as_str().unwrap() {
                    "impression" => {
                        impressions += 1.0;
                        *per_campaign
                            .entry(event["campaign_id"].as_str().unwrap().to_owned())
                            .or_insert(0u64) += 1;
                    }
                    "viewable" => viewable += 1.0,
                    "click" => clicks += 1.0,
                    _ => conversions += 1.0,
                }
            }
        }
        let ctr = clicks / impressions;
        assert!((0.005..0.03).contains(&ctr), "ctr {ctr}");
        assert!(
            (0.01..0.1).contains(&(conversions / clicks)),
            "cvr {}",
            conversions / clicks
        );
        assert!((0.5..0.75).contains(&(viewable / impressions)));
        let biggest = per_campaign["acme-shoes"] as f64;
        let smallest = per_campaign["tiny-bakery"] as f64;
        assert!(
            biggest / smallest > 20.0,
            "campaign sizes too even: {per_campaign:?}"
        );
    }

    #[test]
    fn the_long_tail_is_every_tail_campaign_at_its_share() {
        let mut rng = Rng::new(7);
        let mut tail = std::collections::BTreeMap::new();
        let n = 100_000;
        for serial in 0..n {
            let events = impression_events(&mut rng, 1_700_000_000_000, serial, 30);
            let id = events[0]["campaign_id"].as_str().unwrap().to_owned();
            if id.starts_with("tail-") {
                *tail.entry(id).or_insert(0u64) += 1;
            }
        }
        assert_eq!(tail.len(), 30, "{tail:?}");
        assert!(tail.contains_key("tail-01") && tail.contains_key("tail-30"));
        let share = tail.values().sum::<u64>() as f64 / n as f64;
        assert!(
            (TAIL_SHARE * 0.9..TAIL_SHARE * 1.1).contains(&share),
            "{share}"
        );
    }

    #[test]
    fn daily_curve_spans_night_and_peak() {
        let day = Duration::from_secs(100);
        let check = |at: u64, low: f64, high: f64| {
            let f = daily_factor(Duration::from_secs(at), day);
            assert!((low..=high).contains(&f), "{at}: {f}");
        };
        check(0, 0.15, 0.16);
        check(50, 0.99, 1.0);
        check(100, 0.15, 0.16);
        check(25, 0.5, 0.65);
    }
}
