//! The request generator: a [`Profile`] and a seed in, the requests real clients would send out.
//!
//! * **Campaigns** are drawn with the profile's Zipf skew: campaign of rank `k` (1-based) has weight `k^-s`
//!   over `campaigns` campaigns ([`Zipf`]: the CDF precomputed once, a binary search per draw).
//! * **Ads** are uniform within `ads_per_campaign`, **kinds** follow the profile's shares, **users** are
//!   uniform over the profile's `users` pool.
//! * **Request sizes**: `events_per_request` is a mean `m`; a request carries `⌊m⌋` or `⌈m⌉` events, the
//!   larger with probability `m − ⌊m⌋`, so the mean is exactly `m` (1.2 → 80 % single events, 20 % pairs;
//!   25 → batches of 25). A single event is sent as a pixel (`GET /p.gif`), larger requests as a JSON `POST
//!   /v1/events`, as browsers and ad servers do.
//! * **Money**: impressions cost 0.5–12 USD CPM, clicks 0.10–3 USD, conversions carry 5–250 USD of value;
//!   viewable impressions cost nothing (the impression was already paid for).
//! * **Ids** are unique per generator (`<prefix><seed>-<serial>`), so a resent event is recognised by collect's
//!   consumers as the same event.
//!
//! Everything the generator makes is valid by collect's rules and by the deferred lane's invalid-traffic
//! rules (`tally_domain::enrich`): POSTs come from ad servers (no user agent), pixels from a browser whose
//! user agent no rule flags ([`PIXEL_USER_AGENT`]); the per-user rate rule is met as long as the user pool is
//! large enough for the rate ([`Generator::max_user_rate_share`] helps the caller check).
//!
//! Determinism: the same profile, seed and sequence of `now_ms` give the same requests.

use std::fmt::Write as _;

use tally_domain::event::{DeviceClass, Event, EventKind};

use crate::Profile;

/// The user agent of the generated pixels: a desktop Chrome on Windows (valid traffic by every enrich rule).
pub const PIXEL_USER_AGENT: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// How a request reaches collect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `GET /p.gif?…`: one event, the fields in the query string.
    Pixel,
    /// `POST /v1/events`: a JSON array.
    Post,
}

/// One collect request: its events (a pixel has exactly one).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kind: RequestKind,
    pub events: Vec<Event>,
}

impl Request {
    /// The path and query of a pixel (`/p.gif?i=…&e=…`), `None` for a POST.
    pub fn pixel_path(&self) -> Option<String> {
        match (self.kind, self.events.as_slice()) {
            (RequestKind::Pixel, [event]) => Some(format!("/p.gif?{}", pixel_query(event))),
            _ => None,
        }
    }

    /// The JSON body of a POST of these events (any subset can be rendered with [`json_body`]).
    pub fn json_body(&self) -> String {
        json_body(&self.events)
    }
}

/// The JSON array collect's `POST /v1/events` takes, with the fields of `docs/events.md`.
pub fn json_body<'a>(events: impl IntoIterator<Item = &'a Event>) -> String {
    let items: Vec<serde_json::Value> = events.into_iter().map(event_json).collect();
    serde_json::Value::Array(items).to_string()
}

fn event_json(e: &Event) -> serde_json::Value {
    let mut item = serde_json::json!({
        "id": e.id,
        "kind": e.kind.as_str(),
        "campaign_id": e.campaign_id,
        "ad_id": e.ad_id,
    });
    let object = item.as_object_mut().expect("a JSON object literal");
    if let Some(p) = &e.placement_id {
        object.insert("placement_id".into(), p.as_str().into());
    }
    if let Some(u) = &e.user_id {
        object.insert("user_id".into(), u.as_str().into());
    }
    if let Some(t) = e.client_ts_ms {
        object.insert("client_ts_ms".into(), t.into());
    }
    if e.cost_micros > 0 {
        object.insert("cost_micros".into(), e.cost_micros.into());
    }
    if e.value_micros > 0 {
        object.insert("value_micros".into(), e.value_micros.into());
    }
    if let Some(c) = &e.country {
        object.insert("country".into(), c.as_str().into());
    }
    if e.device != DeviceClass::Unknown {
        object.insert("device".into(), e.device.as_str().into());
    }
    if let Some(ua) = &e.user_agent {
        object.insert("user_agent".into(), ua.as_str().into());
    }
    item
}

/// The pixel query string of one event (short keys of `tally_domain::ingest::PIXEL_KEYS`). The generator's
/// ids and names need no percent-encoding; the user agent goes in the request header, not here.
pub fn pixel_query(e: &Event) -> String {
    let mut q = format!(
        "i={}&e={}&c={}&a={}",
        e.id,
        e.kind.as_str(),
        e.campaign_id,
        e.ad_id
    );
    let mut add = |key: &str, value: &str| {
        let _ = write!(q, "&{key}={value}");
    };
    if let Some(p) = &e.placement_id {
        add("p", p);
    }
    if let Some(u) = &e.user_id {
        add("u", u);
    }
    if let Some(t) = e.client_ts_ms {
        add("t", &t.to_string());
    }
    if e.cost_micros > 0 {
        add("m", &e.cost_micros.to_string());
    }
    if e.value_micros > 0 {
        add("v", &e.value_micros.to_string());
    }
    if let Some(c) = &e.country {
        add("g", c);
    }
    if e.device != DeviceClass::Unknown {
        add("d", e.device.as_str());
    }
    q
}

/// A Zipf distribution over ranks `0..n` (rank 0 the largest): weight of rank `k` is `(k+1)^-s`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: u32, exponent: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for k in 1..=n.max(1) {
            sum += f64::from(k).powf(-exponent);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// The number of ranks.
    pub fn len(&self) -> usize {
        self.cdf.len()
    }

    /// Whether there are no ranks (never: `new` makes at least one).
    pub fn is_empty(&self) -> bool {
        self.cdf.is_empty()
    }

    /// The share of rank `k` (0-based).
    pub fn share(&self, k: usize) -> f64 {
        match k {
            0 => self.cdf.first().copied().unwrap_or(0.0),
            k if k < self.cdf.len() => self.cdf[k] - self.cdf[k - 1],
            _ => 0.0,
        }
    }

    /// A rank drawn with `u` uniform in `[0, 1)`.
    pub fn rank(&self, u: f64) -> usize {
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

const COUNTRIES: [(&str, f64); 8] = [
    ("US", 0.40),
    ("GB", 0.12),
    ("DE", 0.12),
    ("FR", 0.10),
    ("JP", 0.08),
    ("BR", 0.07),
    ("IN", 0.06),
    ("CA", 0.05),
];
const DEVICES: [(DeviceClass, f64); 4] = [
    (DeviceClass::Mobile, 0.55),
    (DeviceClass::Desktop, 0.35),
    (DeviceClass::Tablet, 0.06),
    (DeviceClass::Ctv, 0.04),
];
/// Placements (publisher sites and slots) an ad can show on.
const PLACEMENTS: u32 = 500;

/// Turns a profile into requests.
#[derive(Debug, Clone)]
pub struct Generator {
    campaigns: Zipf,
    ads_per_campaign: u32,
    users: u32,
    kinds: [f64; 4],
    events_per_request: f64,
    rng: fastrand::Rng,
    id_prefix: String,
    serial: u64,
}

impl Generator {
    /// A generator of `profile`'s traffic; event ids are `<seed>-<serial>`.
    pub fn new(profile: &Profile, seed: u64) -> Generator {
        Generator {
            campaigns: Zipf::new(profile.campaigns, profile.campaign_skew),
            ads_per_campaign: profile.ads_per_campaign,
            users: profile.users,
            kinds: profile.kinds,
            events_per_request: profile.events_per_request,
            rng: fastrand::Rng::with_seed(seed),
            id_prefix: format!("{seed:x}-"),
            serial: 0,
        }
    }

    /// Event ids start with `prefix` (1–40 characters of `[A-Za-z0-9._:-]`), e.g. a run id, so that two
    /// generators with the same seed write distinct events.
    pub fn with_id_prefix(mut self, prefix: &str) -> Generator {
        self.id_prefix = format!("{prefix}-");
        self
    }

    /// The campaign id of a rank (0 = the largest campaign).
    pub fn campaign_id(rank: usize) -> String {
        format!("cmp-{rank:06}")
    }

    /// The Zipf distribution of campaigns (share of each rank).
    pub fn campaigns(&self) -> &Zipf {
        &self.campaigns
    }

    /// Events generated so far.
    pub fn events(&self) -> u64 {
        self.serial
    }

    /// The largest share of all events one user is expected to send (uniform pool: `1 / users`), for checking
    /// a rate against the deferred lane's per-user limits.
    pub fn max_user_rate_share(&self) -> f64 {
        1.0 / f64::from(self.users.max(1))
    }

    /// The next request, its events stamped with `now_ms` as the client's and the receive time (collect
    /// stamps its own receive time; [`Event::received_ms`] here is what `pack` would see).
    pub fn next_request(&mut self, now_ms: i64) -> Request {
        let m = self.events_per_request;
        let low = m.floor().max(1.0) as usize;
        let size = if self.rng.f64() < m - m.floor() {
            low + 1
        } else {
            low
        };
        let kind = if size == 1 {
            RequestKind::Pixel
        } else {
            RequestKind::Post
        };
        let events = (0..size).map(|_| self.event(kind, now_ms)).collect();
        Request { kind, events }
    }

    fn event(&mut self, request: RequestKind, now_ms: i64) -> Event {
        self.serial += 1;
        let rank = self.campaigns.rank(self.rng.f64());
        let kind = pick(&mut self.rng, &EventKind::ALL, &self.kinds);
        let ad = self.rng.u32(0..self.ads_per_campaign);
        let user = self.rng.u32(0..self.users.max(1));
        let (cost_micros, value_micros) = match kind {
            // 0.5–12 USD per thousand impressions.
            EventKind::Impression => (self.rng.u64(500..12_000), 0),
            EventKind::ViewableImpression => (0, 0),
            // 0.10–3 USD per click.
            EventKind::Click => (self.rng.u64(100_000..3_000_000), 0),
            // 5–250 USD per conversion.
            EventKind::Conversion => (0, self.rng.u64(5_000_000..250_000_000)),
        };
        let country = pick(
            &mut self.rng,
            &COUNTRIES.map(|c| c.0),
            &COUNTRIES.map(|c| c.1),
        );
        let device = pick(&mut self.rng, &DEVICES.map(|d| d.0), &DEVICES.map(|d| d.1));
        let placement = self.rng.u32(0..PLACEMENTS);
        Event {
            id: format!("{}{}", self.id_prefix, self.serial),
            kind,
            campaign_id: Self::campaign_id(rank),
            ad_id: format!("ad-{rank}-{ad}"),
            placement_id: Some(format!("pub-{placement}")),
            user_id: Some(format!("u{user:08}")),
            client_ts_ms: Some(now_ms),
            received_ms: now_ms,
            cost_micros,
            value_micros,
            country: Some(country.to_owned()),
            device,
            trust: tally_domain::event::Trust::Authenticated,
            user_agent: match request {
                RequestKind::Pixel => Some(PIXEL_USER_AGENT.to_owned()),
                RequestKind::Post => None,
            },
        }
    }
}

/// One of `items` drawn with `weights` (summing to about 1; the last item takes any rounding remainder).
fn pick<T: Copy>(rng: &mut fastrand::Rng, items: &[T], weights: &[f64]) -> T {
    let mut u = rng.f64();
    for (item, w) in items.iter().zip(weights) {
        if u < *w {
            return *item;
        }
        u -= w;
    }
    // Zero-weight tail items are never picked: walk back to the last item with weight.
    let last = weights
        .iter()
        .rposition(|w| *w > 0.0)
        .unwrap_or(items.len() - 1);
    items[last]
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use tally_domain::ingest::decode_pixel;

    fn profile(extra: &str) -> Profile {
        Profile::parse(&format!(
            "name = \"t\"\nevent_bytes = 300\ncampaigns = 2000\nads_per_campaign = 6\ncampaign_skew = 1.1\n\
             events_per_request = 25\n{extra}\
             [kinds]\nimpression = 0.7\nviewable = 0.25\nclick = 0.04\nconversion = 0.01\n\
             [traffic]\nperiod = \"day\"\npoints = [{{ at = \"00:00\", events_per_sec = 100 }}]\n"
        ))
        .expect("valid profile")
    }

    fn draw(p: &Profile, seed: u64, events: usize) -> Vec<Request> {
        let mut g = Generator::new(p, seed);
        let mut out = Vec::new();
        while g.events() < events as u64 {
            out.push(g.next_request(1_764_000_000_000));
        }
        out
    }

    #[test]
    fn zipf_shares_match_the_exponent() {
        let p = profile("");
        let requests = draw(&p, 7, 200_000);
        let mut per_campaign: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0;
        for e in requests.iter().flat_map(|r| &r.events) {
            *per_campaign.entry(e.campaign_id.clone()).or_default() += 1;
            total += 1;
        }
        // Analytic share of the top campaign: 1 / H(2000, 1.1).
        let h: f64 = (1..=2000).map(|k| f64::from(k).powf(-1.1)).sum();
        for rank in [0usize, 1, 9] {
            let expect = f64::from(rank as u32 + 1).powf(-1.1) / h;
            let got = per_campaign[&Generator::campaign_id(rank)] as f64 / total as f64;
            assert!(
                (got - expect).abs() < 0.05 * expect + 0.002,
                "rank {rank}: share {got:.4}, analytic {expect:.4}"
            );
        }
        assert!((Zipf::new(2000, 1.1).share(0) - 1.0 / h).abs() < 1e-12);
        // Skew 0: uniform.
        let flat = Zipf::new(4, 0.0);
        assert!((0..4).all(|k| (flat.share(k) - 0.25).abs() < 1e-12));
        assert_eq!(flat.rank(0.0), 0);
        assert_eq!(flat.rank(0.99999), 3);
        assert_eq!(flat.rank(0.25), 1);
    }

    #[test]
    fn kinds_ads_and_users_follow_the_profile() {
        let p = profile("users = 50\n");
        let requests = draw(&p, 3, 100_000);
        let mut kinds = [0u64; 4];
        let mut users = HashSet::new();
        let mut total = 0;
        for e in requests.iter().flat_map(|r| &r.events) {
            kinds[EventKind::ALL
                .iter()
                .position(|k| *k == e.kind)
                .expect("a kind")] += 1;
            users.insert(e.user_id.clone().expect("a user"));
            let ad: u32 = e
                .ad_id
                .rsplit('-')
                .next()
                .and_then(|a| a.parse().ok())
                .expect("ad");
            assert!(ad < 6);
            match e.kind {
                EventKind::Conversion => assert!(e.value_micros >= 5_000_000 && e.cost_micros == 0),
                EventKind::Click => assert!(e.cost_micros >= 100_000),
                _ => assert_eq!(e.value_micros, 0),
            }
            total += 1;
        }
        for (i, share) in p.kinds.iter().enumerate() {
            let got = kinds[i] as f64 / total as f64;
            assert!((got - share).abs() < 0.01, "kind {i}: {got} vs {share}");
        }
        assert_eq!(users.len(), 50);
    }

    #[test]
    fn request_sizes_have_the_profile_mean() {
        let p = profile("").clone();
        assert!(draw(&p, 1, 1000)
            .iter()
            .all(|r| r.kind == RequestKind::Post && r.events.len() == 25));
        let mut small = p.clone();
        small.events_per_request = 1.2;
        let requests = draw(&small, 1, 50_000);
        let pixels = requests
            .iter()
            .filter(|r| r.kind == RequestKind::Pixel)
            .count();
        let mean =
            requests.iter().map(|r| r.events.len()).sum::<usize>() as f64 / requests.len() as f64;
        assert!((mean - 1.2).abs() < 0.01, "mean {mean}");
        assert!((pixels as f64 / requests.len() as f64 - 0.8).abs() < 0.01);
        assert!(requests.iter().all(|r| match r.kind {
            RequestKind::Pixel => r.events.len() == 1 && r.pixel_path().is_some(),
            RequestKind::Post => r.events.len() == 2 && r.pixel_path().is_none(),
        }));
    }

    #[test]
    fn ids_are_unique_and_runs_are_deterministic() {
        let p = profile("");
        let a = draw(&p, 42, 20_000);
        let ids: HashSet<&str> = a
            .iter()
            .flat_map(|r| &r.events)
            .map(|e| e.id.as_str())
            .collect();
        assert_eq!(ids.len(), a.iter().map(|r| r.events.len()).sum::<usize>());
        assert_eq!(a, draw(&p, 42, 20_000));
        assert_ne!(a, draw(&p, 43, 20_000));
        let prefixed = Generator::new(&p, 42)
            .with_id_prefix("run7")
            .next_request(0);
        assert!(prefixed.events[0].id.starts_with("run7-"));
    }

    #[test]
    fn renderings_are_what_collect_accepts() {
        let mut small = profile("");
        small.events_per_request = 1.0;
        let mut g = Generator::new(&small, 5);
        let now = 1_764_000_000_000;
        for _ in 0..200 {
            let r = g.next_request(now);
            let path = r.pixel_path().expect("a pixel");
            let query = path.strip_prefix("/p.gif?").expect("the pixel path");
            let mut raw = decode_pixel(query).expect("a valid pixel query");
            raw.user_agent = Some(PIXEL_USER_AGENT.to_owned());
            let event = raw.validate(now, &mut || unreachable!()).expect("valid");
            assert_eq!(event, r.events[0]);
            let enriched = tally_domain::enrich::enrich_batch(
                std::slice::from_ref(&event),
                &tally_domain::enrich::RateLimits::default(),
            );
            assert!(enriched[0].is_valid(), "{enriched:?}");
        }
        let post = Generator::new(&profile(""), 5).next_request(now);
        let items = tally_domain::ingest::decode_body(
            post.json_body().as_bytes(),
            Some("application/json"),
        )
        .expect("a valid body");
        assert_eq!(items.len(), 25);
        for (item, want) in items.into_iter().zip(&post.events) {
            let event = item
                .expect("valid")
                .validate(now, &mut || unreachable!())
                .expect("valid");
            assert_eq!(&event, want);
        }
    }
}
