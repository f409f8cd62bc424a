//! Enrichment: what the deferred lane learns about events that the critical lane does not take the time to.
//!
//! * **User agent** → device class, browser family and operating system ([`parse_user_agent`]). Token rules,
//!   not a device database: they name the families an ad-tech dashboard breaks down by, and anything
//!   unrecognised is `Other` / `Unknown` rather than a guess.
//! * **Invalid-traffic verdict** ([`enrich_batch`]), first matching reason wins:
//!   1. [`InvalidReason::KnownCrawler`] — the user agent names a crawler (search engines, social previews, SEO
//!      and AI crawlers) or calls itself a bot, crawler or spider;
//!   2. [`InvalidReason::Automation`] — headless browsers, browser automation and HTTP libraries (`curl`,
//!      `python-requests`, …): no person behind them;
//!   3. [`InvalidReason::DataCentre`] — traffic that says it runs in a data centre: health checkers, uptime
//!      monitors, cloud SDKs and functions. collect does not keep client IP addresses (privacy by design),
//!      so IP ranges are not a signal here; what the event says about itself is;
//!   4. [`InvalidReason::ImpossibleRate`] — a user whose events within one minute of this batch exceed what a
//!      person can do ([`RateLimits`]): all of that user's events in that minute are invalid.
//!
//!   The rate rule sees one invocation's batch: a burst split across two batches (or across the halves of a
//!   bisected retry) can stay under the limit in each. Counting stays exactly once either way (the fencing works
//!   per record), but which events are judged invalid can depend on how the stream was cut; a rate check that
//!   sees across batches needs per-user state and is not done here.
//!
//!   Events without a user agent are valid (server-to-server events from ad servers have none), and events
//!   without a user id are not rate-checked.
//!
//! The settled counters are the rollup of the valid events: the same numbers as the realtime lane, with
//! invalid traffic removed.

use std::collections::HashMap;

use crate::event::{DeviceClass, Event, EventKind};
use crate::rollup::minute_of;

/// A browser family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Browser {
    /// No user agent.
    Unknown,
    Chrome,
    Edge,
    Firefox,
    Safari,
    Opera,
    SamsungInternet,
    /// A user agent none of the rules recognise.
    Other,
}

impl Browser {
    pub fn as_str(self) -> &'static str {
        match self {
            Browser::Unknown => "unknown",
            Browser::Chrome => "chrome",
            Browser::Edge => "edge",
            Browser::Firefox => "firefox",
            Browser::Safari => "safari",
            Browser::Opera => "opera",
            Browser::SamsungInternet => "samsung_internet",
            Browser::Other => "other",
        }
    }
}

/// An operating system family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Os {
    /// No user agent.
    Unknown,
    Windows,
    MacOs,
    Ios,
    Android,
    Linux,
    ChromeOs,
    /// TV platforms (Tizen, webOS, Roku, Fire OS on TV sticks…), consoles, and anything unrecognised.
    Other,
}

impl Os {
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Unknown => "unknown",
            Os::Windows => "windows",
            Os::MacOs => "macos",
            Os::Ios => "ios",
            Os::Android => "android",
            Os::Linux => "linux",
            Os::ChromeOs => "chromeos",
            Os::Other => "other",
        }
    }
}

/// Why an event is invalid traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InvalidReason {
    KnownCrawler,
    Automation,
    DataCentre,
    ImpossibleRate,
    /// Not a bot verdict: the stack excludes unsigned events from settled counts (stack option
    /// `exclude_unsigned`, [`exclude_unsigned`]); they still count in the realtime lane.
    Unsigned,
}

impl InvalidReason {
    pub fn as_str(self) -> &'static str {
        match self {
            InvalidReason::KnownCrawler => "known_crawler",
            InvalidReason::Automation => "automation",
            InvalidReason::DataCentre => "data_centre",
            InvalidReason::ImpossibleRate => "impossible_rate",
            InvalidReason::Unsigned => "unsigned",
        }
    }
}

/// What a user agent says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserAgent {
    pub device: DeviceClass,
    pub browser: Browser,
    pub os: Os,
    /// Set when the user agent alone makes the event invalid traffic.
    pub invalid: Option<InvalidReason>,
}

/// Crawlers that name themselves (lowercase substrings).
const CRAWLERS: &[&str] = &[
    "googlebot",
    "adsbot-google",
    "mediapartners-google",
    "google-inspectiontool",
    "storebot-google",
    "bingbot",
    "bingpreview",
    "adidxbot",
    "yandex",
    "baiduspider",
    "duckduckbot",
    "slurp",
    "sogou",
    "exabot",
    "seznambot",
    "naver",
    "yeti/",
    "applebot",
    "petalbot",
    "bytespider",
    "gptbot",
    "chatgpt-user",
    "claudebot",
    "ccbot",
    "perplexitybot",
    "amazonbot",
    "facebookexternalhit",
    "facebookcatalog",
    "meta-externalagent",
    "twitterbot",
    "linkedinbot",
    "pinterestbot",
    "slackbot",
    "discordbot",
    "telegrambot",
    "whatsapp",
    "skypeuripreview",
    "embedly",
    "semrushbot",
    "ahrefsbot",
    "mj12bot",
    "dotbot",
    "rogerbot",
    "screaming frog",
    "dataforseobot",
    "serpstatbot",
    "blexbot",
    "archive.org_bot",
    "ia_archiver",
];

/// Generic self-descriptions of crawlers (lowercase substrings).
const CRAWLER_WORDS: &[&str] = &[
    "bot/", "bot;", "bot)", "bot ", "-bot", "_bot", "robot", "crawler", "spider", "scraper",
];

/// Phone makers whose names end in "bot" (lowercase), so that the generic words above do not catch them.
const NOT_CRAWLERS: &[&str] = &["cubot"];

/// Headless browsers, automation and HTTP libraries (lowercase substrings).
const AUTOMATION: &[&str] = &[
    "headlesschrome",
    "headless",
    "phantomjs",
    "slimerjs",
    "selenium",
    "webdriver",
    "puppeteer",
    "playwright",
    "cypress",
    "nightmare",
    "electron/",
    "curl/",
    "wget/",
    "python-requests",
    "python-urllib",
    "python/",
    "aiohttp",
    "httpx",
    "scrapy",
    "go-http-client",
    "java/",
    "apache-httpclient",
    "libwww-perl",
    "lwp::",
    "node-fetch",
    "axios/",
    "undici",
    "got (",
    "postmanruntime",
    "insomnia",
    "httpie",
    "okhttp/2",
    "ruby",
    "guzzlehttp",
    "php/",
    "winhttp",
    "powershell",
];

/// Data-centre traffic that describes itself (lowercase substrings).
const DATA_CENTRE: &[&str] = &[
    "elb-healthchecker",
    "amazon-route53-health-check",
    "amazon cloudfront",
    "aws-sdk",
    "aws-cli",
    "aws lambda",
    "googlehc",
    "google-cloud-functions",
    "google-cloud-sdk",
    "gce-",
    "azure",
    "kube-probe",
    "kubernetes",
    "prometheus",
    "blackbox-exporter",
    "pingdom",
    "uptimerobot",
    "statuscake",
    "site24x7",
    "datadog",
    "newrelicpinger",
    "checkly",
    "gtmetrix",
    "pagespeed",
    "lighthouse",
    "cloudflare-healthchecks",
    "digitalocean",
    "hetzner",
    "ovh",
];

/// Parses a user agent. Matching is case-insensitive and by substring.
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let lower = ua.to_ascii_lowercase();
    let has = |needle: &str| lower.contains(needle);
    let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let invalid = if any(CRAWLERS) || (any(CRAWLER_WORDS) && !any(NOT_CRAWLERS)) {
        Some(InvalidReason::KnownCrawler)
    } else if any(AUTOMATION) {
        Some(InvalidReason::Automation)
    } else if any(DATA_CENTRE) {
        Some(InvalidReason::DataCentre)
    } else {
        None
    };
    let tv = any(&[
        "smart-tv",
        "smarttv",
        "smart tv",
        "appletv",
        "apple tv",
        "crkey",
        "roku",
        "aftb",
        "aftm",
        "afts",
        "aftt",
        "aftka",
        "aftmm",
        "bravia",
        "web0s",
        "webos",
        "hbbtv",
        "netcast",
        "googletv",
        "android tv",
        "playstation",
        "xbox",
        "nintendo",
        "tizen",
    ]);
    let device = if tv {
        DeviceClass::Ctv
    } else if has("ipad")
        || has("tablet")
        || has("kindle")
        || has("silk/")
        || (has("android") && !has("mobile"))
    {
        DeviceClass::Tablet
    } else if has("mobi") || has("iphone") || has("ipod") || has("windows phone") || has("android")
    {
        DeviceClass::Mobile
    } else if has("windows nt") || has("macintosh") || has("x11") || has("cros") {
        DeviceClass::Desktop
    } else {
        DeviceClass::Unknown
    };
    let os = if has("windows phone") {
        Os::Other
    } else if has("windows") {
        Os::Windows
    } else if has("iphone") || has("ipad") || has("ipod") {
        Os::Ios
    } else if has("cros") {
        Os::ChromeOs
    } else if has("android") && !tv {
        Os::Android
    } else if has("mac os x") || has("macintosh") {
        Os::MacOs
    } else if tv || ua.is_empty() {
        if ua.is_empty() {
            Os::Unknown
        } else {
            Os::Other
        }
    } else if has("linux") || has("x11") {
        Os::Linux
    } else {
        Os::Other
    };
    let browser = if ua.is_empty() {
        Browser::Unknown
    } else if has("edg/") || has("edge/") || has("edga/") || has("edgios/") {
        Browser::Edge
    } else if has("opr/") || has("opera") || has("opt/") {
        Browser::Opera
    } else if has("samsungbrowser/") {
        Browser::SamsungInternet
    } else if has("firefox/") || has("fxios/") {
        Browser::Firefox
    } else if has("chrome/") || has("crios/") || has("chromium/") {
        Browser::Chrome
    } else if has("safari/") && has("version/") {
        Browser::Safari
    } else {
        Browser::Other
    };
    UserAgent {
        device,
        browser,
        os,
        invalid,
    }
}

/// What one person can plausibly do within one minute; more from one user id is invalid traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Events of any kind.
    pub events_per_minute: u32,
    pub clicks_per_minute: u32,
    pub conversions_per_minute: u32,
}

impl Default for RateLimits {
    /// 600 events (ten a second, a busy page of ads reloaded), 20 clicks, 10 conversions per minute.
    fn default() -> RateLimits {
        RateLimits {
            events_per_minute: 600,
            clicks_per_minute: 20,
            conversions_per_minute: 10,
        }
    }
}

/// An event with what enrichment found.
#[derive(Clone, Debug, PartialEq)]
pub struct Enriched<'a> {
    pub event: &'a Event,
    /// From the user agent when it tells, else what the client reported.
    pub device: DeviceClass,
    pub browser: Browser,
    pub os: Os,
    /// `None`: valid traffic.
    pub invalid: Option<InvalidReason>,
}

impl Enriched<'_> {
    /// Whether the event counts in the settled lane.
    pub fn is_valid(&self) -> bool {
        self.invalid.is_none()
    }
}

/// Marks the valid unsigned events of an enriched batch invalid ([`InvalidReason::Unsigned`]), for a stack
/// whose settled counts leave out traffic nobody vouched for (`docs/events.md`, "Trust and money"). A bot
/// verdict already given is kept.
pub fn exclude_unsigned(enriched: &mut [Enriched<'_>]) {
    for e in enriched {
        if e.invalid.is_none() && e.event.trust == crate::event::Trust::Unsigned {
            e.invalid = Some(InvalidReason::Unsigned);
        }
    }
}

/// Enriches a batch of events, in order (see the module docs for the verdict).
pub fn enrich_batch<'a>(events: &'a [Event], limits: &RateLimits) -> Vec<Enriched<'a>> {
    // Per (user, minute): events, clicks, conversions.
    let mut rates: HashMap<(&str, i64), (u32, u32, u32)> = HashMap::new();
    for e in events {
        if let Some(user) = e.user_id.as_deref() {
            let slot = rates.entry((user, minute_of(e.received_ms))).or_default();
            slot.0 = slot.0.saturating_add(1);
            slot.1 = slot.1.saturating_add(u32::from(e.kind == EventKind::Click));
            slot.2 = slot
                .2
                .saturating_add(u32::from(e.kind == EventKind::Conversion));
        }
    }
    let too_fast = |e: &Event| {
        let Some(user) = e.user_id.as_deref() else {
            return false;
        };
        let (all, clicks, conversions) = rates
            .get(&(user, minute_of(e.received_ms)))
            .copied()
            .unwrap_or_default();
        all > limits.events_per_minute
            || clicks > limits.clicks_per_minute
            || conversions > limits.conversions_per_minute
    };
    events
        .iter()
        .map(|event| {
            let ua = event
                .user_agent
                .as_deref()
                .map(parse_user_agent)
                .unwrap_or(UserAgent {
                    device: DeviceClass::Unknown,
                    browser: Browser::Unknown,
                    os: Os::Unknown,
                    invalid: None,
                });
            let device = if ua.device == DeviceClass::Unknown {
                event.device
            } else {
                ua.device
            };
            let invalid = ua
                .invalid
                .or_else(|| too_fast(event).then_some(InvalidReason::ImpossibleRate));
            Enriched {
                event,
                device,
                browser: ua.browser,
                os: ua.os,
                invalid,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expect "device browser os verdict", e.g. "mobile chrome android valid".
    fn check(ua: &str, expect: &str) {
        let got = parse_user_agent(ua);
        let got = format!(
            "{} {} {} {}",
            got.device.as_str(),
            got.browser.as_str(),
            got.os.as_str(),
            got.invalid.map_or("valid", InvalidReason::as_str)
        );
        assert_eq!(got, expect, "{ua}");
    }

    #[test]
    fn people() {
        check("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "desktop chrome windows valid");
        check("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "desktop edge windows valid");
        check(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "desktop firefox windows valid",
        );
        check("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", "desktop safari macos valid");
        check("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0", "desktop opera macos valid");
        check("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "desktop chrome linux valid");
        check(
            "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
            "desktop firefox linux valid",
        );
        check("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "desktop chrome chromeos valid");
        check("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "mobile safari ios valid");
        check("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", "mobile chrome ios valid");
        check("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/133.0 Mobile/15E148 Safari/605.1.15", "mobile firefox ios valid");
        check("Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1", "tablet safari ios valid");
        check("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.81 Mobile Safari/537.36", "mobile chrome android valid");
        check("Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "mobile samsung_internet android valid");
        check("Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "tablet chrome android valid");
        check(
            "Mozilla/5.0 (Android 14; Mobile; rv:133.0) Gecko/133.0 Firefox/133.0",
            "mobile firefox android valid",
        );
        check("Mozilla/5.0 (Linux; Android 12; CUBOT KINGKONG 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36", "mobile chrome android valid");
        check("Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/131.3.1 like Chrome/131.0.6778.108 Safari/537.36", "tablet chrome android valid");
        check("Mozilla/5.0 (Windows Phone 10.0; Android 6.0.1; Microsoft; Lumia 950) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/52.0.2743.116 Mobile Safari/537.36 Edge/15.15063", "mobile edge other valid");
    }

    #[test]
    fn televisions_and_consoles() {
        check("Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.5) AppleWebKit/537.36 (KHTML, like Gecko) 85.0.4183.93/6.5 TV Safari/537.36", "ctv other other valid");
        check("Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/87.0.4280.88 Safari/537.36 WebAppManager", "ctv chrome other valid");
        check("Roku/DVP-12.5 (12.5.0.4178-AE)", "ctv other other valid");
        check("Mozilla/5.0 (Linux; Android 9; AFTMM Build/PS7633) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.230 Mobile Safari/537.36", "ctv chrome other valid");
        check("Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.225 Safari/537.36 CrKey/1.56.500000", "ctv chrome other valid");
        check("AppleTV14,1/17.2", "ctv other other valid");
        check("Mozilla/5.0 (PlayStation; PlayStation 5/8.40) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/5.0 Safari/605.1.15", "ctv safari other valid");
    }

    #[test]
    fn crawlers_automation_and_data_centres() {
        check(
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "unknown other other known_crawler",
        );
        check("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.69 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "mobile chrome android known_crawler");
        check(
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            "unknown other other known_crawler",
        );
        check(
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
            "unknown other other known_crawler",
        );
        check("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", "unknown other other known_crawler");
        check(
            "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
            "unknown other other known_crawler",
        );
        check("Twitterbot/1.0", "unknown other other known_crawler");
        check("MyCompanyCrawler/3.1", "unknown other other known_crawler");
        check(
            "some-spider (+https://example.org)",
            "unknown other other known_crawler",
        );
        check("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36", "desktop chrome linux automation");
        check("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1", "unknown other linux automation");
        check("curl/8.5.0", "unknown other other automation");
        check("Wget/1.21.4", "unknown other other automation");
        check("python-requests/2.32.3", "unknown other other automation");
        check("Go-http-client/2.0", "unknown other other automation");
        check("Java/17.0.2", "unknown other other automation");
        check("PostmanRuntime/7.42.0", "unknown other other automation");
        check("ELB-HealthChecker/2.0", "unknown other other data_centre");
        check(
            "Amazon-Route53-Health-Check-Service (ref 1f2e3d; report http://amzn.to/1vsZADi)",
            "unknown other other data_centre",
        );
        check("GoogleHC/1.0", "unknown other other data_centre");
        check("kube-probe/1.31", "unknown other other data_centre");
        check(
            "Mozilla/5.0 (compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "unknown other other known_crawler",
        );
        check(
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
            "unknown other other known_crawler",
        );
        check(
            "aws-sdk-rust/1.3.3 os/linux lang/rust/1.85.0",
            "unknown other linux data_centre",
        );
        check("Datadog/Synthetics", "unknown other other data_centre");
    }

    #[test]
    fn odd_input() {
        check("", "unknown unknown unknown valid");
        check("x", "unknown other other valid");
        check("MOZILLA/5.0 (IPHONE; CPU IPHONE OS 18_1 LIKE MAC OS X) VERSION/18.1 MOBILE SAFARI/604.1", "mobile safari ios valid");
        check(&"a".repeat(512), "unknown other other valid");
        check(
            "Mozilla/5.0 (\u{1F600}; Android 14) Chrome/1",
            "tablet chrome android valid",
        );
    }

    fn event(
        i: usize,
        kind: EventKind,
        user: Option<&str>,
        second: i64,
        ua: Option<&str>,
    ) -> Event {
        Event {
            id: format!("e{i}"),
            kind,
            campaign_id: "c".into(),
            ad_id: "a".into(),
            placement_id: None,
            user_id: user.map(str::to_owned),
            client_ts_ms: None,
            received_ms: 1_764_165_480_000 + second * 1_000,
            cost_micros: 0,
            value_micros: 0,
            country: None,
            device: DeviceClass::Desktop,
            trust: crate::event::Trust::Authenticated,
            user_agent: ua.map(str::to_owned),
        }
    }

    #[test]
    fn exclude_unsigned_marks_only_valid_unsigned_events() {
        let mut events: Vec<Event> = (0..3)
            .map(|i| event(i, EventKind::Impression, None, 0, None))
            .collect();
        events[1].trust = crate::event::Trust::Unsigned;
        events[2].trust = crate::event::Trust::Unsigned;
        events[2].user_agent = Some("curl/8.5.0".to_owned());
        let mut enriched = enrich_batch(&events, &RateLimits::default());
        exclude_unsigned(&mut enriched);
        let reasons: Vec<Option<&str>> = enriched
            .iter()
            .map(|e| e.invalid.map(InvalidReason::as_str))
            .collect();
        assert_eq!(reasons, [None, Some("unsigned"), Some("automation")]);
    }

    /// Expect one verdict letter per event: `v` valid, `c` crawler, `a` automation, `d` data centre, `r` rate.
    fn check_batch(events: &[Event], limits: RateLimits, expect: &str) {
        let got: String = enrich_batch(events, &limits)
            .iter()
            .map(|e| match e.invalid {
                None => 'v',
                Some(InvalidReason::KnownCrawler) => 'c',
                Some(InvalidReason::Automation) => 'a',
                Some(InvalidReason::DataCentre) => 'd',
                Some(InvalidReason::ImpossibleRate) => 'r',
                Some(InvalidReason::Unsigned) => 'u',
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn impossible_rates_per_user_and_minute() {
        let tight = RateLimits {
            events_per_minute: 4,
            clicks_per_minute: 2,
            conversions_per_minute: 1,
        };
        let clicks = |user, seconds: &[i64]| -> Vec<Event> {
            seconds
                .iter()
                .enumerate()
                .map(|(i, s)| event(i, EventKind::Click, user, *s, None))
                .collect()
        };
        check_batch(&clicks(Some("u"), &[0, 1]), tight, "vv");
        check_batch(&clicks(Some("u"), &[0, 1, 2]), tight, "rrr");
        // Three clicks, but across two minutes.
        check_batch(&clicks(Some("u"), &[58, 59, 60]), tight, "vvv");
        // Without a user id nothing can be attributed.
        check_batch(&clicks(None, &[0, 1, 2, 3, 4, 5]), tight, "vvvvvv");
        let mut mixed = clicks(Some("u"), &[0, 1, 2]);
        mixed.push(event(9, EventKind::Click, Some("w"), 3, None));
        mixed.push(event(10, EventKind::Impression, Some("u"), 70, None));
        check_batch(&mixed, tight, "rrrvv");
        let imps: Vec<Event> = (0..5)
            .map(|i| event(i, EventKind::Impression, Some("u"), 0, None))
            .collect();
        check_batch(&imps, tight, "rrrrr");
        check_batch(&imps[..4], tight, "vvvv");
        let convs: Vec<Event> = (0..2)
            .map(|i| event(i, EventKind::Conversion, Some("u"), 0, None))
            .collect();
        check_batch(&convs, tight, "rr");
        // The user agent's reason wins over the rate.
        let mut bot = clicks(Some("u"), &[0, 1, 2]);
        bot[1].user_agent = Some("curl/8".into());
        check_batch(&bot, tight, "rar");
        check_batch(
            &clicks(Some("u"), &[0; 20]),
            RateLimits::default(),
            &"v".repeat(20),
        );
    }

    #[test]
    fn device_falls_back_to_what_the_client_reported() {
        let mut events = vec![
            event(0, EventKind::Impression, None, 0, None),
            event(1, EventKind::Impression, None, 0, Some("curl/8")),
            event(
                2,
                EventKind::Impression,
                None,
                0,
                Some("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)"),
            ),
        ];
        events[0].device = DeviceClass::Ctv;
        let enriched = enrich_batch(&events, &RateLimits::default());
        let devices: Vec<_> = enriched.iter().map(|e| e.device).collect();
        assert_eq!(
            devices,
            [DeviceClass::Ctv, DeviceClass::Desktop, DeviceClass::Mobile]
        );
        assert_eq!(enriched[0].browser, Browser::Unknown);
        assert!(enriched[0].is_valid() && !enriched[1].is_valid());
    }
}
