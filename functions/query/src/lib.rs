//! `query` — the analytics API and live dashboard of tally, served by a Lambda Function URL.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/campaigns?limit=&cursor=&offset=&order=id\|recent\|spend\|impressions&q=` | a page of campaigns with today's (UTC) totals, realtime and settled, an hourly sparkline, `matched` and `next_cursor` |
//! | `GET /v1/overview` | every campaign's totals of today and the last hour, events per second, the realtime and settled lags |
//! | `GET /v1/campaigns/{id}/series?from=&to=&step=1m\|1h\|1d` | one point per bucket, zero-filled, realtime and settled |
//! | `GET /v1/campaigns/{id}/ads?from=&to=` | per-ad totals over the buckets overlapping the range |
//! | `GET /` | the overview page ([`dashboard::PAGE`]), or the login form |
//! | `GET /campaigns/{id}` | the campaign page ([`dashboard::CAMPAIGN_PAGE`]), or the login form |
//! | `POST /login` | form `token=…`: sets the session cookie |
//! | `POST /logout` | clears the session cookie |
//!
//! **Where the numbers come from.** Realtime counts (every deduplicated event): closed minutes from the
//! compacted items in the metrics table, minutes after the compactor's watermark from the counter store
//! (Valkey), summed over the lane's shards ([`tally_aws::compacted::read_series`]); the realtime lane has no
//! unique-user sketches, so its `unique_users` is the settled lane's estimate for the same bucket. Realtime
//! minutes older than [`REALTIME_HISTORY_MINUTES`] are served as the settled counts of their bucket. Settled
//! counts (valid traffic) and unique users ([`tally_aws::compacted::read_settled`]): closed hours and days
//! from the compactor's hour and day items, closed minutes from its minute items, the open ones from the
//! settled lane's counters and sketch registers in the cache (merged over its shards). Campaigns: the table's
//! index (the compactor adds each campaign of a closed minute) and the campaigns of the counter store's open
//! minutes.
//!
//! Parameters are parsed strictly ([`params`]): unknown or repeated parameters, malformed times, ranges over
//! the limits and ids outside `[A-Za-z0-9._:-]{1,64}` are `400` problem documents naming the parameter and the
//! rule; a campaign that was never seen is `404`.
//!
//! **Auth.** One bearer token, held in a Secrets Manager secret, read at cold start and again after
//! [`TOKEN_TTL_MS`], its `AWSCURRENT` and `AWSPREVIOUS` versions both accepted ([`token`], [`load_auth`]). The API
//! takes it as `Authorization: Bearer <token>`; the dashboard takes it once, from the login form or from
//! `/?token=<token>` (answered with a redirect to `/` so the token leaves the address bar), and gives back a
//! signed session in the `__Host-tally_session` cookie (`HttpOnly; Secure; SameSite=Strict; Path=/`), never the
//! token ([`session`]): the server checks its MAC and its 12-hour expiry. Tokens and MACs are compared in
//! constant time. Pages carry a CSP built from the hashes of their own inline script and style
//! ([`dashboard::content_security_policy`]). `TALLY_QUERY_AUTH=off` ([`Auth::Off`]) is for the local cloud only.

pub mod dashboard;
pub mod params;
pub mod session;
pub mod token;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::sync::Arc;
use tally_contract::metrics_table::{PARTITION_KEY, SORT_KEY};

use aws_sdk_dynamodb::types::AttributeValue;
use lambda_http::http::{header, HeaderValue, Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{json, Value};
use tally_aws::cache_auth::StoreSource;
use tally_aws::compacted::{
    read_series, read_settled, shared_minute_range, CompactedTable, MinuteItems, SettledCell,
};
use tally_aws::metrics::{CampaignEntry, MetricsTable, Resolution, CAMPAIGNS_PK};
use tally_domain::compact::Span;
use tally_domain::exactly_once::Tally;
use tally_domain::hll::Hll;
use tally_domain::rollup::Counters;
use tally_domain::store_keys::StoreLane;

use crate::params::{
    check_id, parse_limit, parse_offset, parse_order, parse_query, parse_search, parse_step,
    parse_time, series_range, step_name, BadParam, Cursor, Order, Range, DEFAULT_PAGE,
};
use crate::session::{Refused, SessionKey};
pub use crate::token::{SecretTokens, Tokens, MIN_TOKEN_CHARS, TOKEN_TTL_MS};
use tally_domain::totals::{matches_search, overview_reads, RankBy, ALL_CAMPAIGNS};
use tally_edge::Answers;

/// query is private: no CORS, no answer cached (`tally_edge::Answers::PRIVATE`).
const EDGE: Answers = Answers::PRIVATE;

/// The session cookie's name: the `__Host-` prefix makes the browser refuse it unless it is `Secure`, has
/// `Path=/` and no `Domain` (so no sibling domain can set or shadow it).
pub const COOKIE: &str = "__Host-tally_session";
pub use crate::session::SESSION_SECS;
/// How far back the cache holds a minute's counters (their TTL), in minutes: the live part of a read never
/// starts earlier.
const LIVE_MINUTES: i64 = (tally_domain::compact::COUNTER_TTL_SECS / 60) as i64;
/// How far back realtime minutes are read (two days); older realtime buckets show the settled counts.
pub const REALTIME_HISTORY_MINUTES: i64 = 2 * 1440;
/// How long an instance answers with the compaction watermark it read last before reading it again. The
/// watermark moves once per compactor run (a minute), and a minute stays in the cache for at least
/// [`tally_domain::compact::FOLDED_TTL_SECS`] after it passes: an answer with a watermark this old reads the
/// newest minutes from the cache instead of their compacted items, the same counts (after a cache failover that
/// lost data, the repaired counts show this much later). Without it every request paid one consistent DynamoDB
/// read: a dashboard polling twice a second, or the load test's probes a hundred times, mostly re-read a value
/// that had not moved. Ages are measured on the requests' clock (`handle_at`'s `now_ms`).
pub const WATERMARK_MAX_AGE_MS: i64 = 1_000;

/// Who may read.
#[derive(Clone)]
pub enum Auth {
    /// Anyone (local development only: `TALLY_QUERY_AUTH=off`).
    Off,
    /// Holders of this fixed bearer token (tests and tools; the deployed function reads a secret).
    Token(String),
    /// Holders of the token in a Secrets Manager secret, current or previous version, re-read after a TTL.
    Secret(Arc<SecretTokens>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Off => f.write_str("Auth::Off"),
            Auth::Token(_) => f.write_str("Auth::Token(<redacted>)"),
            Auth::Secret(_) => f.write_str("Auth::Secret(<redacted>)"),
        }
    }
}

impl Auth {
    /// The tokens accepted at `now_ms` (`None`: auth is off), or why they could not be read.
    async fn tokens(&self, now_ms: i64) -> Result<Option<Tokens>, String> {
        match self {
            Auth::Off => Ok(None),
            Auth::Token(token) => Ok(Some(Tokens {
                current: token.clone(),
                previous: None,
            })),
            Auth::Secret(secret) => secret.get(now_ms).await.map(Some),
        }
    }
}

/// Reads the auth configuration: `TALLY_QUERY_AUTH=off` → [`Auth::Off`]; otherwise the secret named by
/// `secret_arn` holds the token, either as the whole secret string or as the `token` member of a JSON object.
/// The secret is read now (so a broken one fails the cold start with its reason) and again every
/// [`TOKEN_TTL_MS`].
pub async fn load_auth(
    auth_env: Option<&str>,
    secret_arn: Option<&str>,
    secrets: &aws_sdk_secretsmanager::Client,
) -> anyhow::Result<Auth> {
    load_auth_at(
        auth_env,
        secret_arn,
        secrets,
        TOKEN_TTL_MS,
        tally_edge::now_ms(),
    )
    .await
}

/// [`load_auth`] with the cache's TTL and the clock given.
pub async fn load_auth_at(
    auth_env: Option<&str>,
    secret_arn: Option<&str>,
    secrets: &aws_sdk_secretsmanager::Client,
    ttl_ms: i64,
    now_ms: i64,
) -> anyhow::Result<Auth> {
    use anyhow::Context;
    if let Some(value) = auth_env {
        match value.trim() {
            "off" => return Ok(Auth::Off),
            "" | "on" => {}
            other => anyhow::bail!("TALLY_QUERY_AUTH is {other:?}: leave it unset, or set it to off (local development only)"),
        }
    }
    let arn = secret_arn
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .context(
            "TALLY_QUERY_TOKEN_SECRET_ARN is not set: it names the secret holding the API token",
        )?;
    let secret = SecretTokens::load(secrets.clone(), arn, ttl_ms, now_ms).await?;
    Ok(Auth::Secret(Arc::new(secret)))
}

/// The query function: the metrics table, the counter store, and who may read them.
#[derive(Debug, Clone)]
pub struct Query {
    table: MetricsTable,
    compacted: CompactedTable,
    store: Arc<StoreSource>,
    kept: Arc<Kept>,
    dynamodb: aws_sdk_dynamodb::Client,
    auth: Auth,
    watermark_max_age_ms: i64,
}

/// The counter store and the compaction watermark as one request reads them ([`Query::seen`]).
struct Seen {
    store: tally_aws::store::CounterStore,
    watermark: tally_domain::compact::Watermark,
}

impl Query {
    pub fn new(
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
        store: StoreSource,
        auth: Auth,
    ) -> Query {
        let table: String = table.into();
        Query {
            table: MetricsTable::new(dynamodb.clone(), table.clone()),
            compacted: CompactedTable::new(dynamodb.clone(), table),
            store: Arc::new(store),
            kept: Arc::default(),
            dynamodb,
            auth,
            watermark_max_age_ms: WATERMARK_MAX_AGE_MS,
        }
    }

    /// This instance with another [`WATERMARK_MAX_AGE_MS`] (zero: read the watermark on every request).
    pub fn with_watermark_max_age_ms(mut self, age_ms: i64) -> Query {
        self.watermark_max_age_ms = age_ms;
        self
    }

    /// The compaction watermark at `now_ms`: the one read last if younger than the instance's maximum age,
    /// else read now.
    async fn watermark(&self, now_ms: i64) -> Result<tally_domain::compact::Watermark, Failure> {
        if let Some(kept) = self.kept.watermark(now_ms, self.watermark_max_age_ms) {
            return Ok(kept);
        }
        let watermark = self
            .compacted
            .watermark()
            .await
            .map_err(Failure::from_aws)?;
        self.kept.keep_watermark(now_ms, watermark);
        Ok(watermark)
    }

    /// The counter store and the compaction watermark, read at once: what one request's reads go through
    /// (one watermark for the whole answer, so its realtime and settled parts meet at the same seam).
    async fn seen(&self, now_ms: i64) -> Result<Seen, Failure> {
        let (store, watermark) = tokio::try_join!(
            async { self.store.get().await.map_err(Failure::from_aws) },
            self.watermark(now_ms),
        )?;
        Ok(Seen { store, watermark })
    }

    /// A campaign's realtime counts per (ad, minute) for minutes `from..=to`, the part older than
    /// [`REALTIME_HISTORY_MINUTES`] before `now_minute` left out.
    async fn realtime(
        &self,
        seen: &Seen,
        items: &MinuteItems<'_>,
        id: &str,
        minutes: Option<RangeInclusive<i64>>,
    ) -> Result<BTreeMap<(String, i64), Tally>, Failure> {
        let Some(minutes) = minutes else {
            return Ok(BTreeMap::new());
        };
        read_series(
            items,
            &seen.store,
            &seen.watermark,
            StoreLane::Realtime,
            id,
            *minutes.start(),
            *minutes.end(),
        )
        .await
        .map_err(Failure::from_aws)
    }

    /// A campaign's settled counts and unique users per (ad, bucket) at resolution `res`, buckets
    /// `first..=last`: closed hours and days from their roll-up items, minutes from the minute items up to the
    /// settled watermark and from the cache after it ([`read_settled`]).
    #[allow(clippy::too_many_arguments)]
    async fn settled(
        &self,
        seen: &Seen,
        items: &MinuteItems<'_>,
        id: &str,
        res: Resolution,
        first: i64,
        last: i64,
        now_minute: i64,
    ) -> Result<BTreeMap<(String, i64), SettledCell>, Failure> {
        read_settled(
            items,
            &seen.store,
            &seen.watermark,
            id,
            span_of(res),
            first,
            last,
            now_minute - LIVE_MINUTES,
            Some(&self.kept.settled),
        )
        .await
        .map_err(Failure::from_aws)
    }

    /// A campaign's settled and realtime cells over the same buckets, read at once (the series and the ads
    /// tables need both; read one after the other they doubled the answer's latency).
    async fn both_lanes(
        &self,
        id: &str,
        range: &Range,
        now_ms: i64,
    ) -> Result<
        (
            BTreeMap<(String, i64), SettledCell>,
            BTreeMap<(String, i64), Tally>,
        ),
        Failure,
    > {
        let res = range.res;
        let now_minute = now_ms.div_euclid(60_000);
        let seen = self.seen(now_ms).await?;
        let realtime = realtime_minutes(
            &seen.watermark,
            range.first,
            range.last + res.minutes() - 1,
            now_minute,
        );
        // Both lanes' counts are in the same minute items: read them once for both readers.
        let shared = shared_minute_range(
            &seen.watermark,
            realtime.clone(),
            (span_of(res), range.first, range.last),
        );
        let items = MinuteItems::shared(&self.compacted, id, shared);
        let lanes = tokio::try_join!(
            self.settled(&seen, &items, id, res, range.first, range.last, now_minute),
            self.realtime(&seen, &items, id, realtime),
        )?;
        // Cells read say the campaign is known. Only an empty answer asks whether it was ever seen: the
        // campaign index (compacted minutes), then the open minutes' campaign sets (every campaign of up to
        // `LIVE_MINUTES` minutes and shards). Read on every request, they were most of a polled series' cost
        // (the load test's probes); an empty range pays one or two more round trips instead.
        if lanes.0.is_empty() && lanes.1.is_empty() && !self.indexed(id).await? {
            known_live(&seen, id, now_minute).await?;
        }
        Ok(lanes)
    }

    pub async fn handle(&self, request: Request) -> Response<Body> {
        self.handle_at(request, tally_edge::now_ms()).await
    }

    /// Answers one request as of `now_ms` (unix milliseconds; "today" and default ranges derive from it).
    pub async fn handle_at(&self, request: Request, now_ms: i64) -> Response<Body> {
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or("").to_owned();
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let method = request.method().clone();
        let get_only = |response: Response<Body>| {
            if tally_edge::is_read(&method) {
                response
            } else {
                EDGE.method_not_allowed("GET, HEAD")
            }
        };
        match segments.as_slice() {
            [""] => get_only(self.root(&request, &query, now_ms).await),
            ["campaigns", id] if !id.is_empty() => {
                get_only(self.campaign_page(&request, id, &query, now_ms).await)
            }
            ["login" | "logout"] if method == Method::POST && cross_site(&request) => {
                cross_site_refused()
            }
            ["login"] if method == Method::POST => self.login(&request, now_ms).await,
            ["login"] => EDGE.method_not_allowed("POST"),
            ["logout"] if method == Method::POST => signed_out(),
            ["logout"] => EDGE.method_not_allowed("POST"),
            ["v1", "campaigns"] | ["v1", "overview"] | ["v1", "campaigns", _, "series" | "ads"] => {
                if !tally_edge::is_read(&method) {
                    return EDGE.method_not_allowed("GET, HEAD");
                }
                match self.authorized(&request, now_ms).await {
                    Ok(true) => {}
                    Ok(false) => return unauthorized(),
                    Err(failure) => return failure.into_response(),
                }
                let result = match segments.as_slice() {
                    ["v1", "campaigns", id, "series"] => self.series(id, &query, now_ms).await,
                    ["v1", "campaigns", id, "ads"] => self.ads(id, &query, now_ms).await,
                    ["v1", "overview"] => self.overview(&query, now_ms).await,
                    _ => self.campaigns(&query, now_ms).await,
                };
                match result {
                    Ok(value) => EDGE.json(StatusCode::OK, &value),
                    Err(failure) => failure.into_response(),
                }
            }
            _ => EDGE.problem(
                StatusCode::NOT_FOUND,
                "not-found",
                "no such endpoint",
                "see GET / for the dashboard and /v1/campaigns for the API".to_owned(),
                json!({}),
            ),
        }
    }

    /// Whether the request may read the API: a bearer token (current or previous) or a valid session cookie.
    /// An error when the token secret cannot be read (answered 503).
    async fn authorized(&self, request: &Request, now_ms: i64) -> Result<bool, Failure> {
        let Some(tokens) = self.tokens(now_ms).await? else {
            return Ok(true);
        };
        if bearer(request).is_some_and(|given| tokens.accepts(given.as_bytes())) {
            return Ok(true);
        }
        Ok(cookie(request, COOKIE).is_some_and(|value| session_valid(&tokens, value, now_ms)))
    }

    /// The accepted tokens (`None`: auth is off).
    async fn tokens(&self, now_ms: i64) -> Result<Option<Tokens>, Failure> {
        self.auth.tokens(now_ms).await.map_err(|error| {
            Failure::Internal(format!("the API token secret could not be read: {error}"))
        })
    }

    /// `GET /`: the dashboard for a valid session; `?token=` exchanged for a session (a redirect to `/` that
    /// sets the cookie, so the token leaves the address bar); otherwise the login form.
    async fn root(&self, request: &Request, query: &str, now_ms: i64) -> Response<Body> {
        let tokens = match self.tokens(now_ms).await {
            Ok(Some(tokens)) => tokens,
            Ok(None) => return html(StatusCode::OK, dashboard::PAGE),
            Err(failure) => return failure.into_response(),
        };
        // `order`, `q` and `page` are the page's own state (its script reads them from the address).
        let params = match parse_query(query, &["token", "order", "q", "page"]) {
            Ok(params) => params,
            Err(bad) => return bad_request(&bad),
        };
        if let Some(given) = params.get("token") {
            return if tokens.accepts(given.as_bytes()) {
                session_redirect(&tokens, now_ms)
            } else {
                html(
                    StatusCode::UNAUTHORIZED,
                    &dashboard::login_page(Some("that token is not valid")),
                )
            };
        }
        if cookie(request, COOKIE).is_some_and(|value| session_valid(&tokens, value, now_ms)) {
            html(StatusCode::OK, dashboard::PAGE)
        } else {
            html(StatusCode::UNAUTHORIZED, &dashboard::login_page(None))
        }
    }

    /// `POST /login` with the form field `token`: a session for a valid token, the form again otherwise.
    async fn login(&self, request: &Request, now_ms: i64) -> Response<Body> {
        let tokens = match self.tokens(now_ms).await {
            Ok(Some(tokens)) => tokens,
            Ok(None) => return redirect_home(None),
            Err(failure) => return failure.into_response(),
        };
        let body = std::str::from_utf8(request.body().as_ref()).unwrap_or("");
        match parse_query(body, &["token"]) {
            Ok(form)
                if form
                    .get("token")
                    .is_some_and(|t| tokens.accepts(t.trim().as_bytes())) =>
            {
                session_redirect(&tokens, now_ms)
            }
            _ => html(
                StatusCode::UNAUTHORIZED,
                &dashboard::login_page(Some("that token is not valid")),
            ),
        }
    }

    async fn campaigns(&self, query: &str, now_ms: i64) -> Result<Value, Failure> {
        let params = parse_query(query, &["limit", "cursor", "offset", "order", "q"])
            .map_err(Failure::Bad)?;
        let search = params
            .get("q")
            .map(|q| parse_search(q))
            .transpose()
            .map_err(Failure::Bad)?
            .flatten();
        let order = params
            .get("order")
            .map(|o| parse_order(o))
            .transpose()
            .map_err(Failure::Bad)?
            .unwrap_or(Order::Id);
        let limit = params
            .get("limit")
            .map(|l| parse_limit(l))
            .transpose()
            .map_err(Failure::Bad)?
            .unwrap_or(DEFAULT_PAGE);
        let cursor = params
            .get("cursor")
            .map(|c| Cursor::parse(c, order))
            .transpose()
            .map_err(Failure::Bad)?;
        let offset = params
            .get("offset")
            .map(|o| parse_offset(o))
            .transpose()
            .map_err(Failure::Bad)?;
        if cursor.is_some() && offset.is_some() {
            return Err(Failure::Bad(BadParam::new(
                "offset",
                "give cursor or offset, not both (cursor continues after a campaign, offset skips ranks)",
            )));
        }
        let now_minute = now_ms.div_euclid(60_000);
        let Seen { store, watermark } = self.seen(now_ms).await?;
        let mut entries: BTreeMap<String, CampaignEntry> = self
            .index(watermark)
            .await?
            .iter()
            .map(|e| (e.campaign_id.clone(), e.clone()))
            .collect();
        // The open minutes' campaigns over the whole realtime history (a campaign seen only yesterday is listed
        // with its first and last minute), not only today's.
        for (id, (first, last)) in campaigns_after(&store, &watermark, now_minute).await? {
            let entry = entries.entry(id.clone()).or_insert(CampaignEntry {
                campaign_id: id,
                first_seen_ms: first * 60_000,
                last_seen_ms: last * 60_000,
            });
            entry.first_seen_ms = entry.first_seen_ms.min(first * 60_000);
            entry.last_seen_ms = entry.last_seen_ms.max(last * 60_000);
        }
        // The page: the listing is cheap (the index, the cache's minute sets and, sorted by a total, the day
        // rows: one read of a partition), the totals are not (each campaign's day), so only the page's
        // campaigns have theirs read.
        let mut listed: Vec<CampaignEntry> = entries
            .into_values()
            .filter(|e| {
                search
                    .as_ref()
                    .is_none_or(|q| matches_search(&e.campaign_id, q))
            })
            .collect();
        let matched = listed.len();
        let day = Resolution::Day.bucket(now_minute);
        let keys = self.sort_keys(order, day, watermark, &listed).await?;
        let key_of = |e: &CampaignEntry| keys.get(&e.campaign_id).copied().unwrap_or(0);
        if order != Order::Id {
            listed.sort_by(|a, b| {
                (std::cmp::Reverse(key_of(a)), &a.campaign_id)
                    .cmp(&(std::cmp::Reverse(key_of(b)), &b.campaign_id))
            });
        }
        let mut rest = listed
            .into_iter()
            .filter(|e| {
                cursor
                    .as_ref()
                    .is_none_or(|c| c.is_before(key_of(e), &e.campaign_id))
            })
            .skip(offset.unwrap_or(0))
            .peekable();
        let entries: Vec<CampaignEntry> = rest.by_ref().take(limit).collect();
        let next_cursor = match (rest.peek(), entries.last()) {
            (Some(_), Some(last)) => Some(
                Cursor {
                    order,
                    key: key_of(last),
                    campaign_id: last.campaign_id.clone(),
                }
                .encode(),
            ),
            _ => None,
        };
        let page: BTreeSet<String> = entries.iter().map(|e| e.campaign_id.clone()).collect();
        let mut rows = self
            .today_rows(&store, &watermark, day, now_minute, &page)
            .await?;
        let totals: Vec<(Counters, Counters, Value)> = entries
            .iter()
            .map(|e| {
                let (hourly, sums) = rows
                    .remove(&e.campaign_id)
                    .unwrap_or_else(|| (Hourly::new(day, now_minute), LaneSums::default()));
                (
                    realtime_counters(&hourly.total(), &sums.settled),
                    sums.settled,
                    hourly.json(),
                )
            })
            .collect();
        let day_start = day * 60_000;
        let campaigns: Vec<Value> = entries
            .iter()
            .zip(totals)
            .map(|(entry, (rt, st, hourly))| {
                let mut row = json!({
                    "campaign_id": entry.campaign_id,
                    "first_seen": params::format_time(entry.first_seen_ms),
                    "last_seen": params::format_time(entry.last_seen_ms),
                    "today": {
                        "realtime": counters_json(&rt),
                        "settled": counters_json(&st),
                    },
                    "today_hourly": hourly,
                });
                if matches!(order, Order::Spend | Order::Impressions) {
                    row["sort_key"] = json!(key_of(entry));
                }
                row
            })
            .collect();
        Ok(json!({
            "day": params::format_time(day_start),
            "order": order.name(),
            "matched": matched,
            "sorted_through": matches!(order, Order::Spend | Order::Impressions)
                .then(|| watermark.realtime.map(|m| params::format_time((m + 1) * 60_000)))
                .flatten(),
            "campaigns": campaigns,
            "next_cursor": next_cursor,
        }))
    }

    /// Today's figures of the campaigns of a page, per campaign: the realtime counts per hour (the sparkline;
    /// their sum is the day's) and the settled counts and users so far — read as the overview reads the
    /// all-campaigns item ([`overview_reads`]), for the page's campaigns at once: the hour items of the hours
    /// the settled lane has closed and the minute items after them up to the realtime watermark in a few
    /// `BatchGetItem`s ([`tally_aws::compacted_batch::items_at`]; their settled counts through the settled watermark), the
    /// cache's open minutes of both lanes in one read each for the page's campaigns. Nothing is read campaign
    /// by campaign.
    async fn today_rows(
        &self,
        store: &tally_aws::store::CounterStore,
        wm: &tally_domain::compact::Watermark,
        day: i64,
        now_minute: i64,
        page: &BTreeSet<String>,
    ) -> Result<BTreeMap<String, (Hourly, LaneSums)>, Failure> {
        let mut rows: BTreeMap<String, (Hourly, LaneSums)> = page
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    (Hourly::new(day, now_minute), LaneSums::default()),
                )
            })
            .collect();
        if page.is_empty() {
            return Ok(rows);
        }
        // `first = now`: no minute before the first open hour is wanted (today's closed hours are hour items).
        let reads = overview_reads(day, now_minute, now_minute, wm, LIVE_MINUTES);
        let cells = page_cells(page, &reads);
        for item in tally_aws::compacted_batch::items_at(&self.compacted, &cells)
            .await
            .map_err(Failure::from_aws)?
        {
            // Hour items (closed hours, before the first open one) are final; minute items through the
            // settled watermark are.
            let is_hour = item.minute < reads.today_minutes_from;
            let settled = is_hour || wm.settled.is_some_and(|s| item.minute <= s);
            if let Some((hourly, sums)) = rows.get_mut(&item.campaign_id) {
                for (_, t) in item.lane(StoreLane::Realtime) {
                    hourly.add(item.minute, &t);
                }
                sums.add_item(&item, settled);
            }
        }
        if let Some((a, b)) = reads.live {
            let live = store
                .read_range(StoreLane::Realtime, a, b, Some(page))
                .await
                .map_err(Failure::from_aws)?;
            for (id, cells) in live {
                if let Some((hourly, _)) = rows.get_mut(&id) {
                    for ((_, minute), t) in cells {
                        hourly.add(minute, &t);
                    }
                }
            }
        }
        // The settled lane's open minutes (after its watermark, today, at most the counters' TTL back), as the
        // series and the per-ad table count them: the row's settled figures are what is settled so far.
        let open_from = wm.settled.map_or(day, |s| s + 1).max(day);
        let open_from = open_from.max(now_minute - LIVE_MINUTES);
        if open_from <= now_minute {
            let open = store
                .read_range_users(StoreLane::Settled, open_from, now_minute, Some(page))
                .await
                .map_err(Failure::from_aws)?;
            for (id, (cells, users)) in open {
                if let Some((_, sums)) = rows.get_mut(&id) {
                    for t in cells.values() {
                        sums.settled.merge(&counters_of(t, &Hll::new()));
                    }
                    sums.settled.users.merge(&users);
                }
            }
        }
        Ok(rows)
    }

    /// The sort key of each listed campaign in `order` (absent: 0): its last minute seen in recent order,
    /// today's realtime spend or impressions from the compactor's day rows (one read of the day's partition,
    /// not one per campaign) in those orders; none in id order.
    async fn sort_keys(
        &self,
        order: Order,
        day: i64,
        watermark: tally_domain::compact::Watermark,
        listed: &[CampaignEntry],
    ) -> Result<BTreeMap<String, i64>, Failure> {
        let by = match order {
            Order::Id => return Ok(BTreeMap::new()),
            Order::Recent => {
                return Ok(listed
                    .iter()
                    .map(|e| (e.campaign_id.clone(), e.last_seen_ms))
                    .collect())
            }
            Order::Spend => RankBy::Spend,
            Order::Impressions => RankBy::Impressions,
        };
        let rows = self.day_rows(day, watermark).await?;
        Ok(rows
            .iter()
            .map(|(id, t)| (id.clone(), i64::try_from(by.key(t)).unwrap_or(i64::MAX)))
            .collect())
    }

    /// The campaign index as of `watermark` (see [`Kept`]).
    async fn index(
        &self,
        watermark: tally_domain::compact::Watermark,
    ) -> Result<Arc<Vec<CampaignEntry>>, Failure> {
        if let Some(index) = self.kept.index(watermark) {
            return Ok(index);
        }
        // As of the watermark (the index rows expired by then are left out); before the first compaction
        // there is no index to filter.
        let as_of_ms = watermark
            .realtime
            .map_or(i64::MIN, |minute| (minute + 1) * 60_000);
        let index = Arc::new(
            self.table
                .campaigns_at(as_of_ms)
                .await
                .map_err(Failure::from_aws)?,
        );
        self.kept.keep_index(watermark, index.clone());
        Ok(index)
    }

    /// The day rows of `day` as of `watermark` (see [`Kept`]).
    async fn day_rows(
        &self,
        day: i64,
        watermark: tally_domain::compact::Watermark,
    ) -> Result<Arc<BTreeMap<String, Tally>>, Failure> {
        if let Some(rows) = self.kept.day_rows(day, watermark) {
            return Ok(rows);
        }
        let rows = Arc::new(
            self.compacted
                .day_totals(day)
                .await
                .map_err(Failure::from_aws)?,
        );
        self.kept.keep_day_rows(day, watermark, rows.clone());
        Ok(rows)
    }

    /// `GET /v1/overview`: every campaign's totals of today and of the last hour, events per second in the
    /// last whole minute, and how far behind now the final realtime and settled counts are — from the
    /// all-campaigns items and the cache's open minutes ([`tally_domain::totals::overview_reads`]), never
    /// campaign by campaign.
    async fn overview(&self, query: &str, now_ms: i64) -> Result<Value, Failure> {
        parse_query(query, &[]).map_err(Failure::Bad)?;
        let now_minute = now_ms.div_euclid(60_000);
        let day = Resolution::Day.bucket(now_minute);
        let hour_from = now_minute - 59;
        let Seen {
            store,
            watermark: wm,
        } = self.seen(now_ms).await?;
        let reads = overview_reads(day, hour_from, now_minute, &wm, LIVE_MINUTES);
        let mut sums = OverviewSums::default();
        if let Some((a, b)) = reads.hours {
            for item in self
                .compacted
                .span_items(Span::Hour, ALL_CAMPAIGNS, a, b)
                .await
                .map_err(Failure::from_aws)?
            {
                sums.today.add_item(&item, true);
            }
        }
        if let Some((a, b)) = reads.minutes {
            for item in self
                .compacted
                .items(ALL_CAMPAIGNS, a, b)
                .await
                .map_err(Failure::from_aws)?
            {
                let settled = wm.settled.is_some_and(|s| item.minute <= s);
                if item.minute >= reads.today_minutes_from.max(day) {
                    sums.today.add_item(&item, settled);
                }
                if item.minute >= hour_from {
                    sums.last_hour.add_item(&item, settled);
                    for c in item.ads.values() {
                        sums.per_minute
                            .entry(item.minute)
                            .or_default()
                            .merge(&c.realtime);
                    }
                }
            }
        }
        if let Some((a, b)) = reads.live {
            let live = store
                .read_range(StoreLane::Realtime, a, b, None)
                .await
                .map_err(Failure::from_aws)?;
            for ((_, minute), t) in live.values().flatten() {
                sums.add_live(*minute, t, day.max(reads.today_minutes_from), hour_from);
            }
        }
        Ok(sums.json(now_ms, day, hour_from, &wm))
    }

    /// `GET /campaigns/{id}?range=hour|today|30d`: the campaign page for a valid session, otherwise the login
    /// form. `range` is the page's own state (its script reads it from the address).
    async fn campaign_page(
        &self,
        request: &Request,
        id: &str,
        query: &str,
        now_ms: i64,
    ) -> Response<Body> {
        let checked = check_id("campaign_id", id).and_then(|()| {
            let params = parse_query(query, &["range"])?;
            match params.get("range").map(String::as_str) {
                None | Some("hour" | "today" | "30d") => Ok(()),
                Some(_) => Err(BadParam::new("range", "must be hour, today or 30d")),
            }
        });
        if let Err(bad) = checked {
            return bad_request(&bad);
        }
        match self.tokens(now_ms).await {
            Ok(None) => html(StatusCode::OK, dashboard::CAMPAIGN_PAGE),
            Ok(Some(tokens))
                if cookie(request, COOKIE)
                    .is_some_and(|value| session_valid(&tokens, value, now_ms)) =>
            {
                html(StatusCode::OK, dashboard::CAMPAIGN_PAGE)
            }
            Ok(Some(_)) => html(StatusCode::UNAUTHORIZED, &dashboard::login_page(None)),
            Err(failure) => failure.into_response(),
        }
    }

    async fn series(&self, id: &str, query: &str, now_ms: i64) -> Result<Value, Failure> {
        check_id("campaign_id", id).map_err(Failure::Bad)?;
        let params = parse_query(query, &["from", "to", "step"]).map_err(Failure::Bad)?;
        let res = params
            .get("step")
            .map(|s| parse_step(s))
            .transpose()
            .map_err(Failure::Bad)?
            .unwrap_or(Resolution::Minute);
        let (from, to) = from_to(&params, now_ms).map_err(Failure::Bad)?;
        let range = series_range(res, from, to, now_ms).map_err(Failure::Bad)?;
        let now_minute = now_ms.div_euclid(60_000);
        let (settled, minutes) = self.both_lanes(id, &range, now_ms).await?;
        let mut st: BTreeMap<i64, Counters> = BTreeMap::new();
        for ((_, bucket), (t, users)) in settled {
            st.entry(bucket)
                .or_default()
                .merge(&counters_of(&t, &users));
        }
        let mut rt: BTreeMap<i64, Tally> = BTreeMap::new();
        for ((_, minute), t) in &minutes {
            rt.entry(res.bucket(*minute)).or_default().merge(t);
        }
        let history = now_minute - REALTIME_HISTORY_MINUTES;
        let empty = Counters::default();
        let points: Vec<Value> = (0..range.points())
            .map(|i| {
                let bucket = range.first + i * res.minutes();
                let settled = st.get(&bucket).unwrap_or(&empty);
                let realtime = if bucket < history {
                    // Older than the realtime history: the settled counts (see the crate docs).
                    settled.clone()
                } else {
                    realtime_counters(&rt.get(&bucket).copied().unwrap_or_default(), settled)
                };
                json!({
                    "t": params::format_time(bucket * 60_000),
                    "realtime": counters_json(&realtime),
                    "settled": counters_json(settled),
                })
            })
            .collect();
        Ok(json!({
            "campaign_id": id,
            "step": step_name(res),
            "from": params::format_time(range.first * 60_000),
            "to": params::format_time(range.last * 60_000),
            "points": points,
        }))
    }

    async fn ads(&self, id: &str, query: &str, now_ms: i64) -> Result<Value, Failure> {
        check_id("campaign_id", id).map_err(Failure::Bad)?;
        let params = parse_query(query, &["from", "to"]).map_err(Failure::Bad)?;
        let (from, to) = from_to(&params, now_ms).map_err(Failure::Bad)?;
        let to_ms = to.unwrap_or(now_ms);
        let from_ms = from.unwrap_or(Resolution::Day.bucket(to_ms.div_euclid(60_000)) * 60_000);
        if from_ms > to_ms {
            return Err(Failure::Bad(BadParam::new("from", "is after to")));
        }
        let span_minutes = (to_ms - from_ms).div_euclid(60_000);
        if span_minutes > params::MAX_ADS_DAYS * 1440 {
            return Err(Failure::Bad(BadParam::new(
                "to",
                format!(
                    "the range is longer than {} days; narrow from/to",
                    params::MAX_ADS_DAYS
                ),
            )));
        }
        // Hour rows for ranges up to two days, day rows beyond: at most a few hundred rows per ad.
        let res = if span_minutes <= 2 * 1440 {
            Resolution::Hour
        } else {
            Resolution::Day
        };
        let range = Range {
            res,
            first: res.bucket(from_ms.div_euclid(60_000)),
            last: res.bucket(to_ms.div_euclid(60_000)),
        };
        let now_minute = now_ms.div_euclid(60_000);
        let (settled_cells, realtime_cells) = self.both_lanes(id, &range, now_ms).await?;
        let mut settled: BTreeMap<String, Counters> = BTreeMap::new();
        let history = now_minute - REALTIME_HISTORY_MINUTES;
        // Settled buckets older than the realtime history stand in for the realtime ones.
        let mut settled_old: BTreeMap<String, Counters> = BTreeMap::new();
        for ((ad, bucket), (t, users)) in settled_cells {
            let counters = counters_of(&t, &users);
            if bucket + res.minutes() <= history {
                settled_old.entry(ad.clone()).or_default().merge(&counters);
            }
            settled.entry(ad).or_default().merge(&counters);
        }
        let mut realtime: BTreeMap<String, Tally> = BTreeMap::new();
        for ((ad, _), t) in realtime_cells {
            realtime.entry(ad).or_default().merge(&t);
        }
        let ids: BTreeSet<&String> = settled.keys().chain(realtime.keys()).collect();
        let empty = Counters::default();
        let ads: Vec<Value> = ids
            .into_iter()
            .map(|ad| {
                let st = settled.get(ad).unwrap_or(&empty);
                let mut rt = realtime_counters(&realtime.get(ad).copied().unwrap_or_default(), st);
                if let Some(old) = settled_old.get(ad) {
                    rt.merge(&Counters {
                        users: Default::default(),
                        ..old.clone()
                    });
                }
                json!({"ad_id": ad, "realtime": counters_json(&rt), "settled": counters_json(st)})
            })
            .collect();
        Ok(json!({
            "campaign_id": id,
            "from": params::format_time(range.first * 60_000),
            "to": params::format_time((range.last + res.minutes()) * 60_000),
            "resolution": step_name(res),
            "ads": ads,
        }))
    }

    /// Whether the campaign index has `id`.
    async fn indexed(&self, id: &str) -> Result<bool, Failure> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(self.table.table())
            .key(PARTITION_KEY, AttributeValue::S(CAMPAIGNS_PK.to_owned()))
            .key(SORT_KEY, AttributeValue::S(id.to_owned()))
            .projection_expression(SORT_KEY)
            .send()
            .await
            .map_err(|e| {
                Failure::Internal(format!(
                    "dynamodb GetItem on {} failed: {}",
                    self.table.table(),
                    aws_sdk_dynamodb::Error::from(e)
                ))
            })?;
        Ok(output.item.is_some())
    }
}

/// What the campaign list reads whole and only the compactor changes — the campaign index and a day's rows —
/// kept by this instance until the watermark moves. The compactor writes both before it moves the watermark,
/// so a copy read at watermark `w` holds everything up to `w` (and perhaps more); once the watermark moves the
/// next request reads them again. At 10,000 campaigns this turns two whole-partition reads per request into two
/// per compactor run (a minute) per warm instance. Campaigns not yet in the index are listed from the cache's
/// open minutes on every request, as before. Also kept: the watermark itself, for [`WATERMARK_MAX_AGE_MS`], and
/// the settled lane's open minutes while the lane has not moved.
#[derive(Debug, Default)]
struct Kept {
    /// The settled lane's open minutes as read, while the lane has not moved (`tally_aws::cache_read::SettledKept`).
    settled: tally_aws::cache_read::SettledKept,
    /// The watermark read last and when (the request's clock, ms) ([`Query::watermark`]).
    watermark: std::sync::Mutex<Option<(i64, tally_domain::compact::Watermark)>>,
    index: std::sync::Mutex<Option<(tally_domain::compact::Watermark, Arc<Vec<CampaignEntry>>)>>,
    day_rows: std::sync::Mutex<Option<KeptRows>>,
}

/// A day's rows as read at a watermark: (day, watermark, rows).
type KeptRows = (
    i64,
    tally_domain::compact::Watermark,
    Arc<BTreeMap<String, Tally>>,
);

impl Kept {
    /// The watermark kept, if read at most `max_age_ms` before `now_ms` (and not after it).
    fn watermark(&self, now_ms: i64, max_age_ms: i64) -> Option<tally_domain::compact::Watermark> {
        let kept = self.watermark.lock().ok()?;
        kept.filter(|(read_at, _)| (0..max_age_ms).contains(&(now_ms - read_at)))
            .map(|(_, watermark)| watermark)
    }

    /// Keeps `watermark` unless one read later is kept already.
    fn keep_watermark(&self, read_at: i64, watermark: tally_domain::compact::Watermark) {
        if let Ok(mut kept) = self.watermark.lock() {
            if kept.is_none_or(|(at, _)| at <= read_at) {
                *kept = Some((read_at, watermark));
            }
        }
    }

    fn index(&self, at: tally_domain::compact::Watermark) -> Option<Arc<Vec<CampaignEntry>>> {
        let kept = self.index.lock().ok()?;
        kept.as_ref()
            .filter(|(w, _)| *w == at)
            .map(|(_, index)| index.clone())
    }

    fn keep_index(&self, at: tally_domain::compact::Watermark, index: Arc<Vec<CampaignEntry>>) {
        if let Ok(mut kept) = self.index.lock() {
            *kept = Some((at, index));
        }
    }

    fn day_rows(
        &self,
        day: i64,
        at: tally_domain::compact::Watermark,
    ) -> Option<Arc<BTreeMap<String, Tally>>> {
        let kept = self.day_rows.lock().ok()?;
        kept.as_ref()
            .filter(|(d, w, _)| *d == day && *w == at)
            .map(|(_, _, rows)| rows.clone())
    }

    fn keep_day_rows(
        &self,
        day: i64,
        at: tally_domain::compact::Watermark,
        rows: Arc<BTreeMap<String, Tally>>,
    ) {
        if let Ok(mut kept) = self.day_rows.lock() {
            *kept = Some((day, at, rows));
        }
    }
}

/// A campaign's realtime counts of today per hour (the campaign table's sparkline) and in total.
struct Hourly {
    day: i64,
    hours: Vec<Tally>,
}

impl Hourly {
    /// The hours of `day` up to the one holding `now_minute`.
    fn new(day: i64, now_minute: i64) -> Hourly {
        let n = usize::try_from((now_minute - day).div_euclid(60) + 1).unwrap_or(0);
        Hourly {
            day,
            hours: vec![Tally::default(); n],
        }
    }

    /// Adds a minute's counts (minutes outside the day's hours so far are left out).
    fn add(&mut self, minute: i64, t: &Tally) {
        if minute < self.day {
            return;
        }
        let hour = usize::try_from((minute - self.day) / 60).unwrap_or(usize::MAX);
        if let Some(h) = self.hours.get_mut(hour) {
            h.merge(t);
        }
    }

    fn total(&self) -> Tally {
        let mut total = Tally::default();
        for h in &self.hours {
            total.merge(h);
        }
        total
    }

    /// `{"step": "1h", "from": <day>, "impressions": [...], "spend_micros": [...]}`, one value per hour.
    fn json(&self) -> Value {
        json!({
            "step": "1h",
            "from": params::format_time(self.day * 60_000),
            "impressions": self.hours.iter().map(|h| h.impressions).collect::<Vec<_>>(),
            "spend_micros": self.hours.iter().map(|h| h.spend_micros).collect::<Vec<_>>(),
        })
    }
}

/// Both lanes' counts of a stretch of the overview: realtime sums, and the settled counts and users of the
/// minutes the settled lane has made final.
#[derive(Default)]
struct LaneSums {
    realtime: Tally,
    settled: Counters,
}

impl LaneSums {
    /// Adds an all-campaigns item; its settled counts only when `settled` (final).
    fn add_item(&mut self, item: &tally_domain::compact::CompactedItem, settled: bool) {
        for c in item.ads.values() {
            self.realtime.merge(&c.realtime);
            if settled {
                self.settled.merge(&counters_of(&c.settled, &Hll::new()));
            }
        }
        if settled {
            self.settled.users.merge(&item.campaign_users());
        }
    }

    fn json(&self) -> Value {
        json!({
            "realtime": counters_json(&realtime_counters(&self.realtime, &self.settled)),
            "settled": counters_json(&self.settled),
        })
    }
}

/// What the overview adds up.
#[derive(Default)]
struct OverviewSums {
    today: LaneSums,
    last_hour: LaneSums,
    /// The last hour's realtime counts per minute.
    per_minute: BTreeMap<i64, Tally>,
}

impl OverviewSums {
    /// Adds a cache minute's realtime counts: to today from `today_from`, to the last hour from `hour_from`.
    fn add_live(&mut self, minute: i64, t: &Tally, today_from: i64, hour_from: i64) {
        if minute >= today_from {
            self.today.realtime.merge(t);
        }
        if minute >= hour_from {
            self.last_hour.realtime.merge(t);
            self.per_minute.entry(minute).or_default().merge(t);
        }
    }

    fn json(
        &self,
        now_ms: i64,
        day: i64,
        hour_from: i64,
        wm: &tally_domain::compact::Watermark,
    ) -> Value {
        let now_minute = now_ms.div_euclid(60_000);
        let events = |t: &Tally| realtime_counters(t, &Counters::default()).events();
        let last_whole = self.per_minute.get(&(now_minute - 1)).map_or(0, events);
        let minutes: Vec<Value> = (hour_from..=now_minute)
            .map(|m| {
                json!({
                    "t": params::format_time(m * 60_000),
                    "events": self.per_minute.get(&m).map_or(0, events),
                })
            })
            .collect();
        let time = |m: Option<i64>| m.map(|m| params::format_time(m * 60_000));
        let lag = |m: Option<i64>| m.map(|m| (now_ms - (m + 1) * 60_000).max(0));
        json!({
            "as_of": params::format_time(now_ms),
            "day": params::format_time(day * 60_000),
            "today": self.today.json(),
            "last_hour": {"from": params::format_time(hour_from * 60_000), "counts": self.last_hour.json()},
            "events_per_second": last_whole as f64 / 60.0,
            "events_per_minute": minutes,
            "watermark": {"realtime": time(wm.realtime), "settled": time(wm.settled)},
            "lag_ms": {"realtime": lag(wm.realtime), "settled": lag(wm.settled)},
        })
    }
}

/// The items a page of campaigns' today is read from: per campaign, the hour items of `reads.hours` and the
/// minute items of `reads.minutes` from the first open hour on (today's closed hours are in the hour items).
fn page_cells(
    page: &BTreeSet<String>,
    reads: &tally_domain::totals::OverviewReads,
) -> Vec<(Span, String, i64)> {
    let mut cells = Vec::new();
    for id in page {
        if let Some((a, b)) = reads.hours {
            cells.extend((a..=b).step_by(60).map(|h| (Span::Hour, id.clone(), h)));
        }
        if let Some((a, b)) = reads.minutes {
            let from = a.max(reads.today_minutes_from);
            cells.extend((from..=b).map(|m| (Span::Minute, id.clone(), m)));
        }
    }
    cells
}

/// `404` unless the counter store's open minutes (read through `seen`, the answer's own store and watermark)
/// have `id`: for a campaign not in the index.
async fn known_live(seen: &Seen, id: &str, now_minute: i64) -> Result<(), Failure> {
    if campaigns_after(&seen.store, &seen.watermark, now_minute)
        .await?
        .contains_key(id)
    {
        return Ok(());
    }
    Err(Failure::NotFound(id.to_owned()))
}

/// Realtime counts as counters: the lane's six sums, and the settled lane's users for the same bucket (the
/// realtime lane keeps no sketches).
/// The campaigns of `store`'s open minutes after `watermark`'s realtime minute, at most [`LIVE_MINUTES`] back
/// from `now_minute`: id → (first, last) minute seen.
async fn campaigns_after(
    store: &tally_aws::store::CounterStore,
    watermark: &tally_domain::compact::Watermark,
    now_minute: i64,
) -> Result<BTreeMap<String, (i64, i64)>, Failure> {
    let from = watermark
        .realtime
        .map_or(now_minute - LIVE_MINUTES, |m| m + 1)
        .max(now_minute - LIVE_MINUTES);
    store
        .campaigns_in(StoreLane::Realtime, from, now_minute)
        .await
        .map_err(Failure::from_aws)
}

/// The minutes of `from..=to` the realtime lane is read for: the realtime history only, and of the minutes after
/// the watermark, which live only in the cache and only for the counters' TTL, none older than that (a range
/// wholly after the watermark starts at most a TTL back). `None`: none.
fn realtime_minutes(
    watermark: &tally_domain::compact::Watermark,
    from: i64,
    to: i64,
    now_minute: i64,
) -> Option<RangeInclusive<i64>> {
    let from = from.max(now_minute - REALTIME_HISTORY_MINUTES);
    let from = if watermark.realtime.is_none_or(|w| w < from) {
        from.max(now_minute - LIVE_MINUTES)
    } else {
        from
    };
    (from <= to).then_some(from..=to)
}

fn realtime_counters(t: &Tally, settled: &Counters) -> Counters {
    Counters {
        impressions: t.impressions,
        viewable: t.viewable,
        clicks: t.clicks,
        conversions: t.conversions,
        spend_micros: t.spend_micros,
        value_micros: t.value_micros,
        users: settled.users.clone(),
    }
}

/// The optional `from` and `to` times of a request; `from=today` is the start of the UTC day of `now_ms`.
fn from_to(
    params: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<(Option<i64>, Option<i64>), BadParam> {
    let time = |name: &str| match params.get(name).map(String::as_str) {
        Some("today") if name == "from" => Ok(Some(now_ms - now_ms.rem_euclid(86_400_000))),
        other => other.map(|v| parse_time(name, v)).transpose(),
    };
    Ok((time("from")?, time("to")?))
}

/// The compacted span of a resolution.
fn span_of(res: Resolution) -> Span {
    match res {
        Resolution::Minute => Span::Minute,
        Resolution::Hour => Span::Hour,
        Resolution::Day => Span::Day,
    }
}

/// Settled counts and users as the API's counters.
fn counters_of(t: &Tally, users: &Hll) -> Counters {
    Counters {
        impressions: t.impressions,
        viewable: t.viewable,
        clicks: t.clicks,
        conversions: t.conversions,
        spend_micros: t.spend_micros,
        value_micros: t.value_micros,
        users: users.clone(),
    }
}

/// The JSON of one set of counters: the sums, CTR (clicks / impressions, `null` without impressions) and the
/// estimated unique users.
pub fn counters_json(c: &Counters) -> Value {
    let ctr = if c.impressions == 0 {
        Value::Null
    } else {
        json!(c.clicks as f64 / c.impressions as f64)
    };
    json!({
        "impressions": c.impressions,
        "viewable": c.viewable,
        "clicks": c.clicks,
        "ctr": ctr,
        "conversions": c.conversions,
        "spend_micros": c.spend_micros,
        "conversion_value_micros": c.value_micros,
        "unique_users": c.users.estimate(),
    })
}

/// Why a request failed.
#[derive(Debug)]
enum Failure {
    Bad(BadParam),
    NotFound(String),
    /// A store that did not answer (throttled, down, timed out): worth retrying.
    Internal(String),
    /// Data that does not follow the layout: retrying cannot help; an operator must look.
    Corrupt(String),
}

impl Failure {
    fn from_aws(error: tally_aws::Error) -> Failure {
        match error {
            tally_aws::Error::CorruptRow { .. } | tally_aws::Error::CorruptStore { .. } => {
                Failure::Corrupt(error.to_string())
            }
            other => Failure::Internal(other.to_string()),
        }
    }

    fn into_response(self) -> Response<Body> {
        match self {
            Failure::Bad(bad) => bad_request(&bad),
            Failure::NotFound(id) => EDGE.problem(
                StatusCode::NOT_FOUND,
                "unknown-campaign",
                "unknown campaign",
                format!(
                    "campaign {id:?} has never been seen; GET /v1/campaigns lists the known ones"
                ),
                json!({"campaign_id": id}),
            ),
            Failure::Internal(message) => {
                tracing::error!(message = "query failed", error = %message);
                let mut response = EDGE.problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the metrics could not be read",
                    "the metrics table or the counter cache did not answer; retry shortly"
                        .to_owned(),
                    json!({}),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Failure::Corrupt(message) => {
                // The key and the value stay in the log: the answer does not echo stored data.
                tracing::error!(message = "stored metrics do not follow the layout", error = %message);
                EDGE.problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt-metrics",
                    "stored metrics could not be read",
                    "a stored counter does not follow the layout; an operator must look (the function's log names the key)".to_owned(),
                    json!({}),
                )
            }
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The bearer token of an `Authorization` header, if any.
fn bearer(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Whether a session cookie value is signed by the current or the previous token's key and not expired.
fn session_valid(tokens: &Tokens, value: &str, now_ms: i64) -> bool {
    let keys: Vec<SessionKey> = tokens.all().map(SessionKey::of_token).collect();
    match session::check(&keys, value, now_ms) {
        Ok(_) => true,
        Err(refused) => {
            let reason = match refused {
                Refused::Malformed => "malformed",
                Refused::BadSignature => "bad signature",
                Refused::Expired => "expired",
                Refused::FromTheFuture => "issued in the future",
            };
            tracing::debug!(message = "session refused", reason);
            false
        }
    }
}

/// A redirect to `/` setting a new session signed with the current token's key.
fn session_redirect(tokens: &Tokens, now_ms: i64) -> Response<Body> {
    let id = match session::random_id() {
        Ok(id) => id,
        Err(error) => return Failure::Internal(error).into_response(),
    };
    let value = session::issue(&SessionKey::of_token(&tokens.current), now_ms, id);
    let cookie = format!(
        "{COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}"
    );
    redirect_home(HeaderValue::from_str(&cookie).ok())
}

/// `POST /logout`: a redirect to `/` clearing the session cookie.
fn signed_out() -> Response<Body> {
    let cleared = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    redirect_home(HeaderValue::from_str(&cleared).ok())
}

fn redirect_home(cookie: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(Body::Empty);
    *response.status_mut() = StatusCode::SEE_OTHER;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/"));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(cookie) = cookie {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// The dashboard's content security policy, computed once from its text.
static DASHBOARD_CSP: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| dashboard::content_security_policy(dashboard::PAGE));
/// The campaign page's, likewise.
static CAMPAIGN_CSP: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| dashboard::content_security_policy(dashboard::CAMPAIGN_PAGE));

/// An HTML page with its content security policy (hashes of its own inline script and style), no framing,
/// no referrer, no caching.
fn html(status: StatusCode, page: &str) -> Response<Body> {
    let mut response = Response::new(Body::Text(page.to_owned()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let csp = if page == dashboard::PAGE {
        DASHBOARD_CSP.clone()
    } else if page == dashboard::CAMPAIGN_PAGE {
        CAMPAIGN_CSP.clone()
    } else {
        dashboard::content_security_policy(page)
    };
    // Hashes are base64: the header is always valid; were it not, the page would run nothing rather than
    // anything.
    let csp = HeaderValue::from_str(&csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    headers.insert(header::CONTENT_SECURITY_POLICY, csp);
    // Older browsers without frame-ancestors; no referrer so no URL leaves with a request.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn bad_request(bad: &BadParam) -> Response<Body> {
    EDGE.problem(
        StatusCode::BAD_REQUEST,
        "bad-parameter",
        "a parameter is invalid",
        format!("{}: {}", bad.param, bad.rule),
        json!({"param": bad.param, "rule": bad.rule}),
    )
}

fn unauthorized() -> Response<Body> {
    let mut response = EDGE.problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "a token is required",
        "send Authorization: Bearer <token> (the token is in the stack's query token secret)"
            .to_owned(),
        json!({}),
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"tally\""),
    );
    response
}

/// Whether the browser says the request comes from another site (`Sec-Fetch-Site: cross-site`): a form on
/// someone else's page posting to `/login` or `/logout`.
fn cross_site(request: &Request) -> bool {
    request
        .headers()
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"))
}

fn cross_site_refused() -> Response<Body> {
    EDGE.problem(
        StatusCode::FORBIDDEN,
        "cross-site",
        "cross-site form posts are refused",
        "sign in and out from the dashboard's own pages".to_owned(),
        json!({}),
    )
}
