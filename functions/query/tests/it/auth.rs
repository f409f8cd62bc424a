//! The token and the sessions: the token read from Secrets Manager (in moto) and re-read after its TTL, current
//! and previous versions accepted; taken as a bearer token, or exchanged once (login form or `?token=`) for a
//! signed `__Host-` session cookie with a server-checked expiry.

use tally_query::{load_auth, load_auth_at, Auth, Query, COOKIE, SESSION_SECS, TOKEN_TTL_MS};
use tally_testkit::Moto;

use crate::support::{
    filled_world, header, sdk_config, source, text, url_request, World, NOW_MS, TABLE,
};

const TOKEN: &str = "s3cr3t-t0ken-0123456789abcdef";

async fn status_at(
    query: &Query,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
    now_ms: i64,
) -> u16 {
    query
        .handle_at(url_request(method, path, headers, body), now_ms)
        .await
        .status()
        .as_u16()
}

async fn status(
    query: &Query,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> u16 {
    status_at(query, method, path, headers, body, NOW_MS).await
}

/// Signs in through the login form with `token` at `now_ms`: the `Cookie` header value carrying the session.
async fn sign_in(query: &Query, token: &str, now_ms: i64) -> String {
    let response = query
        .handle_at(
            url_request(
                "POST",
                "/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(&format!("token={token}")),
            ),
            now_ms,
        )
        .await;
    assert_eq!(response.status().as_u16(), 303, "{}", text(&response));
    let set_cookie = header(&response, "set-cookie");
    set_cookie
        .split(';')
        .next()
        .filter(|pair| pair.starts_with(&format!("{COOKIE}=v1.")))
        .unwrap_or_else(|| panic!("a session cookie: {set_cookie:?}"))
        .to_owned()
}

/// A query over a fresh, empty world whose token is the secret `arn` in its moto.
async fn secret_query(world: &World, arn: &str) -> Query {
    let secrets = aws_sdk_secretsmanager::Client::new(&world.config);
    let auth = load_auth_at(None, Some(arn), &secrets, TOKEN_TTL_MS, NOW_MS)
        .await
        .expect("the secret holds a valid token");
    world.query(auth).await
}

#[tokio::test]
async fn the_api_needs_the_token_or_a_session() {
    let world = filled_world().await;
    let q = world.query(Auth::Token(TOKEN.to_owned())).await;
    let bearer = format!("Bearer {TOKEN}");
    let session = sign_in(&q, TOKEN, NOW_MS).await;
    let cookies = format!("theme=dark; {session}");
    let raw_token = format!("{COOKIE}={TOKEN}");
    for (headers, expect) in [
        (vec![], 401),
        (vec![("authorization", bearer.as_str())], 200),
        (vec![("authorization", "Bearer wrong")], 401),
        (vec![("authorization", "Bearer ")], 401),
        (vec![("authorization", "Basic czNjcjN0")], 401),
        (vec![("authorization", &bearer[..bearer.len() - 1])], 401),
        (vec![("cookie", cookies.as_str())], 200),
        // The old cookie (the raw token) is no session.
        (vec![("cookie", raw_token.as_str())], 401),
        (
            vec![("cookie", "tally_session=s3cr3t-t0ken-0123456789abcdef")],
            401,
        ),
        (vec![("cookie", "__Host-tally_session=v1.1.2.3.nope")], 401),
    ] {
        assert_eq!(
            status(&q, "GET", "/v1/campaigns", &headers, None).await,
            expect,
            "{headers:?}"
        );
        assert_eq!(
            status(&q, "GET", "/v1/campaigns/summer/series", &headers, None).await,
            expect,
            "{headers:?}"
        );
    }
    let response = q
        .handle_at(url_request("GET", "/v1/campaigns", &[], None), NOW_MS)
        .await;
    assert_eq!(
        header(&response, "www-authenticate"),
        "Bearer realm=\"tally\""
    );
    // An unknown campaign is not revealed without the token.
    assert_eq!(
        status(&q, "GET", "/v1/campaigns/nope/series", &[], None).await,
        401
    );

    // The server checks the expiry: 12 hours after sign-in the session is refused, whatever the browser keeps.
    let headers = [("cookie", session.as_str())];
    let end = NOW_MS + SESSION_SECS * 1000;
    assert_eq!(
        status_at(&q, "GET", "/v1/campaigns", &headers, None, end - 1000).await,
        200
    );
    assert_eq!(
        status_at(&q, "GET", "/v1/campaigns", &headers, None, end).await,
        401
    );
    let page = q
        .handle_at(url_request("GET", "/", &headers, None), end)
        .await;
    assert_eq!(page.status().as_u16(), 401);
    assert!(text(&page).contains("action=\"/login\""), "the login form");

    // A session with a forged (edited) expiry is refused.
    let value = session.split_once('=').expect("name=value").1;
    let (payload, mac) = value.rsplit_once('.').expect("a mac");
    let mut parts: Vec<String> = payload.split('.').map(str::to_owned).collect();
    parts[2] = (NOW_MS / 1000 + 2 * SESSION_SECS).to_string();
    let forged = format!("{COOKIE}={}.{mac}", parts.join("."));
    assert_eq!(
        status_at(
            &q,
            "GET",
            "/v1/campaigns",
            &[("cookie", &forged)],
            None,
            end
        )
        .await,
        401
    );
    // Another deployment's token signs sessions this one refuses.
    let other = world
        .query(Auth::Token("another-token-0123456789".to_owned()))
        .await;
    let foreign = sign_in(&other, "another-token-0123456789", NOW_MS).await;
    assert_eq!(
        status(&q, "GET", "/v1/campaigns", &[("cookie", &foreign)], None).await,
        401
    );
}

#[tokio::test]
async fn the_dashboard_takes_the_token_once() {
    let closed = tally_testkit::free_loopback_addr();
    let config = sdk_config(&format!("http://{closed}")).await;
    let valkey = tally_testkit::Valkey::start();
    let q = Query::new(
        aws_sdk_dynamodb::Client::new(&config),
        TABLE,
        source(&valkey).await,
        Auth::Token(TOKEN.to_owned()),
    );

    let login = q
        .handle_at(url_request("GET", "/", &[], None), NOW_MS)
        .await;
    assert_eq!(login.status().as_u16(), 401);
    assert!(text(&login).contains("<form method=\"post\" action=\"/login\">"));
    assert_eq!(header(&login, "x-frame-options"), "DENY");

    let via_url = q
        .handle_at(
            url_request("GET", &format!("/?token={TOKEN}"), &[], None),
            NOW_MS,
        )
        .await;
    assert_eq!(via_url.status().as_u16(), 303);
    assert_eq!(
        header(&via_url, "location"),
        "/",
        "the token leaves the address bar"
    );
    assert_eq!(header(&via_url, "referrer-policy"), "no-referrer");
    let set_cookie = header(&via_url, "set-cookie");
    assert!(
        set_cookie.starts_with(&format!("{COOKIE}=v1.{}.", NOW_MS / 1000)),
        "{set_cookie}"
    );
    assert!(!set_cookie.contains(TOKEN), "never the token: {set_cookie}");
    assert!(
        !set_cookie.to_ascii_lowercase().contains("domain"),
        "{set_cookie}"
    );
    for attr in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(set_cookie.contains(attr), "{attr} in {set_cookie}");
    }

    let first = sign_in(&q, TOKEN, NOW_MS).await;
    let second = sign_in(&q, TOKEN, NOW_MS).await;
    assert_ne!(first, second, "each session has its own random id");

    for (method, path, body) in [
        ("GET", "/?token=wrong", None),
        ("GET", "/?token=", None),
        ("POST", "/login", Some("token=wrong")),
        ("POST", "/login", Some("token=%ZZ")),
        ("POST", "/login", Some("")),
        ("POST", "/login", Some("user=admin&token=x")),
    ] {
        let response = q
            .handle_at(url_request(method, path, &[], body), NOW_MS)
            .await;
        assert_eq!(response.status().as_u16(), 401, "{method} {path} {body:?}");
        assert!(header(&response, "set-cookie").is_empty());
    }
    assert_eq!(status(&q, "GET", "/?token=a&token=b", &[], None).await, 400);
    assert_eq!(status(&q, "GET", "/?debug=1", &[], None).await, 400);

    let page = q
        .handle_at(url_request("GET", "/", &[("cookie", &first)], None), NOW_MS)
        .await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(text(&page).contains("all campaigns, today"));
    // The campaign view takes the same session, and without it is the sign-in form.
    let view = q
        .handle_at(
            url_request(
                "GET",
                "/campaigns/summer?range=today",
                &[("cookie", &first)],
                None,
            ),
            NOW_MS,
        )
        .await;
    assert_eq!(view.status().as_u16(), 200);
    assert!(text(&view).contains("data-range=\"30d\""));
    let anonymous = q
        .handle_at(url_request("GET", "/campaigns/summer", &[], None), NOW_MS)
        .await;
    assert_eq!(anonymous.status().as_u16(), 401);
    assert!(text(&anonymous).contains("action=\"/login\""));
    let csp = header(&page, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "connect-src 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "form-action 'self'",
        "script-src 'sha256-",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&page, "x-frame-options"), "DENY");

    // Signing out clears the cookie (the browser drops it; the session itself ends at its expiry).
    let out = q
        .handle_at(
            url_request("POST", "/logout", &[("cookie", &first)], None),
            NOW_MS,
        )
        .await;
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(header(&out, "location"), "/");
    let cleared = header(&out, "set-cookie");
    assert!(cleared.starts_with(&format!("{COOKIE}=;")), "{cleared}");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Secure") && cleared.contains("Path=/")
    );
    assert_eq!(status(&q, "GET", "/logout", &[], None).await, 405);
    // Another site's form cannot sign the browser in or out.
    for (path, body) in [
        ("/login", Some(format!("token={TOKEN}"))),
        ("/logout", None),
    ] {
        let response = q
            .handle_at(
                url_request(
                    "POST",
                    path,
                    &[("sec-fetch-site", "cross-site")],
                    body.as_deref(),
                ),
                NOW_MS,
            )
            .await;
        assert_eq!(response.status().as_u16(), 403, "{path}");
        assert!(header(&response, "set-cookie").is_empty(), "{path}");
    }
}

#[tokio::test]
async fn the_token_comes_from_secrets_manager() {
    let moto = Moto::start();
    let config = sdk_config(&moto.endpoint()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&config);
    let mut arns = Vec::new();
    for (name, value) in [
        ("plain", TOKEN.to_owned()),
        ("json", format!("{{\"token\":\"{TOKEN}\"}}")),
        ("short", "abc".to_owned()),
        (
            "json-without-token",
            "{\"password\":\"0123456789abcdef0123\"}".to_owned(),
        ),
        ("spaces", "0123456789 abcdef 0123".to_owned()),
    ] {
        let out = secrets
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .expect("create secret");
        arns.push(out.arn().expect("arn").to_owned());
    }
    async fn check(got: anyhow::Result<Auth>) -> Result<String, String> {
        match got {
            Ok(Auth::Secret(secret)) => secret.get(NOW_MS).await.map(|t| t.current),
            Ok(Auth::Token(_)) => Ok("fixed".to_owned()),
            Ok(Auth::Off) => Ok("off".to_owned()),
            Err(e) => Err(format!("{e:#}")),
        }
    }
    assert_eq!(
        check(load_auth(None, Some(&arns[0]), &secrets).await).await,
        Ok(TOKEN.to_owned())
    );
    assert_eq!(
        check(load_auth(Some("on"), Some(&arns[1]), &secrets).await).await,
        Ok(TOKEN.to_owned())
    );
    assert_eq!(
        check(load_auth(Some("off"), None, &secrets).await).await,
        Ok("off".to_owned())
    );
    for (auth, arn, expect) in [
        (None, Some(arns[2].as_str()), "at least 16 characters"),
        (
            None,
            Some(arns[3].as_str()),
            "without a string member `token`",
        ),
        (None, Some(arns[4].as_str()), "without whitespace"),
        (None, None, "TALLY_QUERY_TOKEN_SECRET_ARN is not set"),
        (None, Some("  "), "TALLY_QUERY_TOKEN_SECRET_ARN is not set"),
        (
            Some("OFF!"),
            Some(arns[0].as_str()),
            "leave it unset, or set it to off",
        ),
        (
            None,
            Some("arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"),
            "while reading the token secret",
        ),
    ] {
        let got = check(load_auth(auth, arn, &secrets).await).await;
        assert!(
            got.as_ref().is_err_and(|e| e.contains(expect)),
            "{auth:?} {arn:?}: {got:?}"
        );
    }
}

/// Rotation in moto: `PutSecretValue` moves `AWSCURRENT` to the new version and `AWSPREVIOUS` to the old one.
/// The new token works once the cached one's TTL is over; the old token and its sessions keep working while
/// it is `AWSPREVIOUS`, and stop when the next rotation drops it.
#[tokio::test]
async fn a_rotated_token_takes_effect_after_the_ttl_and_the_previous_one_until_the_next_rotation() {
    let world = World::start().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&world.config);
    let (a, b, c) = (
        "token-a-0123456789abcdef",
        "token-b-0123456789abcdef",
        "token-c-0123456789abcdef",
    );
    let arn = secrets
        .create_secret()
        .name("tally-query-token")
        .secret_string(a)
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("arn")
        .to_owned();
    let q = secret_query(&world, &arn).await;
    let bearer = |t: &str| format!("Bearer {t}");
    let api = |token: &'static str, now_ms: i64| {
        let q = &q;
        let auth = bearer(token);
        async move {
            status_at(
                q,
                "GET",
                "/v1/campaigns",
                &[("authorization", &auth)],
                None,
                now_ms,
            )
            .await
        }
    };
    let session_a = sign_in(&q, a, NOW_MS).await;
    let rotate = |value: &'static str| {
        let secrets = secrets.clone();
        let arn = arn.clone();
        async move {
            secrets
                .put_secret_value()
                .secret_id(arn)
                .secret_string(value)
                .send()
                .await
                .expect("put secret value");
        }
    };

    rotate(b).await;
    // Within the TTL the cached token stands.
    let t1 = NOW_MS + TOKEN_TTL_MS - 1000;
    assert_eq!((api(a, t1).await, api(b, t1).await), (200, 401));
    // After it, the new token works at once, and the old one too (AWSPREVIOUS), sessions included.
    let t2 = NOW_MS + TOKEN_TTL_MS;
    assert_eq!((api(a, t2).await, api(b, t2).await), (200, 200));
    assert_eq!(
        status_at(&q, "GET", "/", &[("cookie", &session_a)], None, t2).await,
        200
    );
    let session_b = sign_in(&q, b, t2).await;
    assert_eq!(
        status_at(&q, "GET", &format!("/?token={a}"), &[], None, t2).await,
        303,
        "the previous token still signs in"
    );

    rotate(c).await;
    let t3 = t2 + TOKEN_TTL_MS;
    assert_eq!(
        (api(a, t3).await, api(b, t3).await, api(c, t3).await),
        (401, 200, 200)
    );
    // Sessions signed under the dropped token end with it; the previous token's live on.
    let ended = q
        .handle_at(url_request("GET", "/", &[("cookie", &session_a)], None), t3)
        .await;
    assert_eq!(ended.status().as_u16(), 401);
    assert!(text(&ended).contains("action=\"/login\""));
    assert_eq!(
        status_at(
            &q,
            "GET",
            "/v1/campaigns",
            &[("cookie", &session_b)],
            None,
            t3
        )
        .await,
        200
    );
}

/// A secret that cannot be read any more: the cached token serves for at most an hour, then every request is
/// a 503 that carries no AWS text (no ARN, no error code).
#[tokio::test]
async fn an_unreadable_secret_keeps_the_cached_token_for_an_hour_then_fails_closed() {
    let world = World::start().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&world.config);
    let arn = secrets
        .create_secret()
        .name("tally-query-token")
        .secret_string(TOKEN)
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("arn")
        .to_owned();
    let q = secret_query(&world, &arn).await;
    secrets
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete secret");
    let auth = format!("Bearer {TOKEN}");
    let headers = [("authorization", auth.as_str())];
    let later = NOW_MS + TOKEN_TTL_MS;
    assert_eq!(
        status_at(&q, "GET", "/v1/campaigns", &headers, None, later).await,
        200
    );
    let stale = NOW_MS + tally_query::token::MAX_STALE_MS;
    for path in ["/v1/campaigns", "/"] {
        let response = q
            .handle_at(url_request("GET", path, &headers, None), stale)
            .await;
        assert_eq!(response.status().as_u16(), 503, "{path}");
        let body = text(&response);
        for leak in ["arn:", "ResourceNotFound", "secretsmanager", "123456789012"] {
            assert!(!body.contains(leak), "{leak} in {body}");
        }
    }
}

/// A request: method, path and query, headers, body, clock (unix ms).
type Call = (
    &'static str,
    String,
    Vec<(&'static str, String)>,
    Option<String>,
    i64,
);

/// Everything logged through `tracing` (all levels, all crates), kept in memory.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The process-wide subscriber at TRACE into one buffer (a thread's scoped subscriber misses events when other
/// tests' threads register call sites at the same time): every test of the binary logs there once it is set,
/// which only widens the check.
fn global_logs() -> Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        logs
    })
    .clone()
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

/// Sign-ins (form and `?token=`, right and wrong), API calls with tokens and sessions (valid, forged, expired),
/// a rotation and a secret that cannot be read: at every level down to TRACE, no token and no session value
/// reaches the log.
#[tokio::test]
async fn neither_tokens_nor_sessions_are_logged() {
    let logs = global_logs();
    let world = World::start().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&world.config);
    let (a, b, wrong) = (
        "token-a-0123456789abcdef",
        "token-b-0123456789abcdef",
        "wrong-token-0123456789ab",
    );
    let arn = secrets
        .create_secret()
        .name("tally-query-token")
        .secret_string(a)
        .send()
        .await
        .expect("create secret")
        .arn()
        .expect("arn")
        .to_owned();
    let q = secret_query(&world, &arn).await;
    let session = sign_in(&q, a, NOW_MS).await;
    secrets
        .put_secret_value()
        .secret_id(&arn)
        .secret_string(b)
        .send()
        .await
        .expect("rotate");
    let later = NOW_MS + TOKEN_TTL_MS;
    let forged = format!("{session}x");
    let requests: Vec<Call> = vec![
        ("GET", format!("/?token={a}"), vec![], None, NOW_MS),
        ("GET", format!("/?token={wrong}"), vec![], None, NOW_MS),
        (
            "POST",
            "/login".to_owned(),
            vec![],
            Some(format!("token={wrong}")),
            NOW_MS,
        ),
        (
            "GET",
            "/v1/campaigns".to_owned(),
            vec![("authorization", format!("Bearer {wrong}"))],
            None,
            NOW_MS,
        ),
        (
            "GET",
            "/v1/campaigns".to_owned(),
            vec![("authorization", format!("Bearer {b}"))],
            None,
            later,
        ),
        (
            "GET",
            "/v1/campaigns".to_owned(),
            vec![("cookie", session.clone())],
            None,
            later,
        ),
        (
            "GET",
            "/".to_owned(),
            vec![("cookie", forged.clone())],
            None,
            later,
        ),
        (
            "GET",
            "/".to_owned(),
            vec![("cookie", session.clone())],
            None,
            later + SESSION_SECS * 1000,
        ),
        (
            "POST",
            "/login".to_owned(),
            vec![],
            Some(format!("token={b}")),
            later,
        ),
    ];
    for (method, path, headers, body, now) in &requests {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        q.handle_at(url_request(method, path, &headers, body.as_deref()), *now)
            .await;
    }
    secrets
        .delete_secret()
        .secret_id(&arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .expect("delete secret");
    let bearer = format!("Bearer {b}");
    for now in [
        later + TOKEN_TTL_MS,
        later + tally_query::token::MAX_STALE_MS,
    ] {
        q.handle_at(
            url_request("GET", "/v1/campaigns", &[("authorization", &bearer)], None),
            now,
        )
        .await;
    }

    let text = logs.text();
    for (what, secret) in [
        ("token a", a),
        ("token b", b),
        ("the wrong token", wrong),
        (
            "the session",
            session.split_once('=').expect("name=value").1,
        ),
    ] {
        assert!(!text.contains(secret), "{what} is in the log:\n{text}");
    }
    // The log did capture the handler's lines.
    for line in [
        "session refused",
        "the API token secret changed",
        "could not re-read the API token secret",
        "the API token secret could not be read",
    ] {
        assert!(text.contains(line), "{line:?} is logged:\n{text}");
    }
}

/// AWS errors stay in the log: a table that does not exist (moto answers `ResourceNotFoundException` naming
/// it) is a `503` whose body names neither the table, nor the error code, nor the account.
#[tokio::test]
async fn aws_error_text_never_reaches_a_client() {
    let world = World::start().await;
    let q = Query::new(
        world.dynamodb(),
        "no-such-table-3f9a",
        source(&world.valkey).await,
        Auth::Off,
    );
    for path in [
        "/v1/campaigns",
        "/v1/campaigns/summer/series",
        "/v1/campaigns/summer/ads",
    ] {
        let response = q
            .handle_at(url_request("GET", path, &[], None), NOW_MS)
            .await;
        assert_eq!(response.status().as_u16(), 503, "{path}");
        let body = text(&response);
        for leak in [
            "no-such-table-3f9a",
            "ResourceNotFound",
            "arn:",
            "123456789012",
            "dynamodb",
        ] {
            assert!(!body.contains(leak), "{path}: {leak} in {body}");
        }
    }
}
