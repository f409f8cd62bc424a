//! The token: read from Secrets Manager at cold start, taken as a bearer token or a session cookie.

use tally_query::{load_auth, Auth, Query, COOKIE};
use tally_testkit::Moto;

use crate::support::{filled_world, header, sdk_config, source, text, url_request, NOW_MS, TABLE};

const TOKEN: &str = "s3cr3t-t0ken-0123456789abcdef";

async fn status(
    query: &Query,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> u16 {
    query
        .handle_at(url_request(method, path, headers, body), NOW_MS)
        .await
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_api_needs_the_token() {
    let world = filled_world().await;
    let q = world.query(Auth::Token(TOKEN.to_owned())).await;
    let bearer = format!("Bearer {TOKEN}");
    let cookie = format!("theme=dark; {COOKIE}={TOKEN}");
    for (headers, expect) in [
        (vec![], 401),
        (vec![("authorization", bearer.as_str())], 200),
        (vec![("authorization", "Bearer wrong")], 401),
        (vec![("authorization", "Bearer ")], 401),
        (vec![("authorization", "Basic czNjcjN0")], 401),
        (vec![("authorization", &bearer[..bearer.len() - 1])], 401),
        (vec![("cookie", cookie.as_str())], 200),
        (vec![("cookie", "tally_session=nope")], 401),
        (
            vec![("cookie", "other_session=s3cr3t-t0ken-0123456789abcdef")],
            401,
        ),
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
    let set_cookie = header(&via_url, "set-cookie");
    assert!(
        set_cookie.starts_with(&format!("{COOKIE}={TOKEN};")),
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

    let form = q
        .handle_at(
            url_request(
                "POST",
                "/login",
                &[("content-type", "application/x-www-form-urlencoded")],
                Some(&format!("token={TOKEN}")),
            ),
            NOW_MS,
        )
        .await;
    assert_eq!(form.status().as_u16(), 303);
    assert!(header(&form, "set-cookie").contains(TOKEN));

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
        .handle_at(
            url_request(
                "GET",
                "/",
                &[("cookie", &format!("{COOKIE}={TOKEN}"))],
                None,
            ),
            NOW_MS,
        )
        .await;
    assert_eq!(page.status().as_u16(), 200);
    assert!(text(&page).contains("live campaigns"));
    assert!(header(&page, "content-security-policy").contains("connect-src 'self'"));
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
    let check = |got: anyhow::Result<Auth>| match got {
        Ok(Auth::Token(t)) => Ok(t),
        Ok(Auth::Off) => Ok("off".to_owned()),
        Err(e) => Err(format!("{e:#}")),
    };
    assert_eq!(
        check(load_auth(None, Some(&arns[0]), &secrets).await),
        Ok(TOKEN.to_owned())
    );
    assert_eq!(
        check(load_auth(Some("on"), Some(&arns[1]), &secrets).await),
        Ok(TOKEN.to_owned())
    );
    assert_eq!(
        check(load_auth(Some("off"), None, &secrets).await),
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
        let got = check(load_auth(auth, arn, &secrets).await);
        assert!(
            got.as_ref().is_err_and(|e| e.contains(expect)),
            "{auth:?} {arn:?}: {got:?}"
        );
    }
}
