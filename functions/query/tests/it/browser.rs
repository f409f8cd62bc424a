//! The dashboard in headless Chromium: the real handler served on 127.0.0.1 over the metrics table in moto
//! and the counter store in valkey (filled as the pipeline fills them), signed in through `/?token=`, draws
//! one chart per campaign from the API.
//!
//! The sessions and the content security policy are driven through the DevTools protocol ([`tally_testkit::cdp`]):
//! sign-in through the form, the cookie's attributes, the page's script running under the policy while an
//! injected one is refused, sign-out, `?token=` leaving the address bar, no framing, and an expired session
//! sending the page back to the login form.
//!
//! Needs `chromium` (Debian package); the screenshot lands in `<target dir>/tmp/dashboard.png` (wherever
//! `CARGO_TARGET_DIR` puts it) for people to look at.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lambda_http::Body;
use tally_query::{Auth, Query};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::support::{filled_world, url_request, NOW_MS};
use tally_testkit::cdp::Browser;

pub const TOKEN: &str = "dashboard-test-token-0123456789";

/// The targets of the requests a test server received, in order.
pub type RequestLog = Arc<std::sync::Mutex<Vec<String>>>;

/// Serves `query` over HTTP/1.1 on a loopback port (one request per connection), the clock fixed at NOW_MS.
async fn serve(query: Query) -> String {
    serve_with_clock(query, Arc::new(AtomicI64::new(NOW_MS))).await
}

/// A page of the test (not of the function) that frames the dashboard, served at `/__frame`.
const FRAMING_PAGE: &str =
    "<!doctype html><html><body><iframe id=\"f\" src=\"/\"></iframe></body></html>";

/// Serves `query` as [`serve`] does, the clock read from `clock` (unix ms) at each request; `/__frame` answers
/// [`FRAMING_PAGE`] instead.
pub async fn serve_with_clock(query: Query, clock: Arc<AtomicI64>) -> String {
    serve_logged(query, clock, Arc::default()).await
}

/// [`serve_with_clock`], each request's target appended to `log` as it arrives.
pub async fn serve_logged(query: Query, clock: Arc<AtomicI64>, log: RequestLog) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let query = Arc::new(query);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (query, clock, log) = (query.clone(), clock.clone(), log.clone());
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut reader = BufReader::new(read);
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                    return;
                }
                let mut parts = request_line.split_whitespace();
                let (method, target) = (
                    parts.next().unwrap_or("GET").to_owned(),
                    parts.next().unwrap_or("/").to_owned(),
                );
                if let Ok(mut log) = log.lock() {
                    log.push(target.clone());
                }
                let mut headers = Vec::new();
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.trim_end().split_once(':') {
                        let (name, value) =
                            (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                        if name == "content-length" {
                            length = value.parse().unwrap_or(0);
                        }
                        if name != "host" {
                            headers.push((name, value));
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).await.is_err() {
                    return;
                }
                let body = String::from_utf8(body).ok().filter(|b| !b.is_empty());
                let header_refs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let response = if target == "/__frame" {
                    let mut page = lambda_http::Response::new(Body::Text(FRAMING_PAGE.to_owned()));
                    page.headers_mut().insert(
                        "content-type",
                        lambda_http::http::HeaderValue::from_static("text/html"),
                    );
                    page
                } else {
                    query
                        .handle_at(
                            url_request(&method, &target, &header_refs, body.as_deref()),
                            clock.load(Ordering::SeqCst),
                        )
                        .await
                };
                let mut head = format!("HTTP/1.1 {}\r\nconnection: close\r\n", response.status());
                for (name, value) in response.headers() {
                    head.push_str(&format!("{}: {}\r\n", name, value.to_str().unwrap_or("")));
                }
                let bytes: Vec<u8> = match response.body() {
                    Body::Text(t) => t.clone().into_bytes(),
                    Body::Binary(b) => b.clone(),
                    _ => Vec::new(),
                };
                head.push_str(&format!("content-length: {}\r\n\r\n", bytes.len()));
                let _ = write.write_all(head.as_bytes()).await;
                let _ = write.write_all(&bytes).await;
                let _ = write.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

/// Runs headless Chromium on `url` with `extra` flags; its stdout.
async fn chromium(url: &str, extra: &[&str], profile: &std::path::Path) -> String {
    let mut cmd = tokio::process::Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        "--virtual-time-budget=15000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(extra)
    .arg(url)
    .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finished within 2 minutes")
        .expect("chromium runs (apt-get install -y chromium)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_draws_a_live_chart_per_campaign() {
    let world = filled_world().await;
    let query = world.query(Auth::Token(TOKEN.to_owned())).await;
    let base = serve(query).await;
    let profile = std::env::temp_dir().join(format!("tally-chromium-{}", std::process::id()));
    let signed_in = format!("{base}/?token={TOKEN}");

    let dom = chromium(&signed_in, &["--dump-dom"], &profile).await;
    assert!(
        dom.contains("data-ready=\""),
        "the page finished a refresh: {dom}"
    );
    // A row per campaign, each with a sparkline of today's impressions per hour (00:00 to 13:00: 14 points).
    for (campaign, max) in [("summer", 5), ("winter", 0)] {
        let row = dom
            .split("<tr")
            .find(|s| s.contains(&format!("data-campaign=\"{campaign}\"")))
            .unwrap_or_else(|| panic!("a row for {campaign}: {dom}"));
        assert!(
            row.contains("data-points=\"14\"") && row.contains(&format!("data-max=\"{max}\"")),
            "{campaign}: 14 hours drawn, the y axis fits the busiest: {row}"
        );
        let d = row.rsplit(" d=\"").next().unwrap_or("");
        assert_eq!(
            d.split('"').next().unwrap_or("").matches('L').count(),
            13,
            "{campaign}: a line through every point: {row}"
        );
    }
    assert!(
        dom.contains("data-col=\"impressions\" data-value=\"5\">5<"),
        "today's totals: {dom}"
    );

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(
        &signed_in,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,760",
        ],
        &profile,
    )
    .await;
    assert!(
        std::fs::metadata(&shot)
            .map(|m| m.len() > 10_000)
            .unwrap_or(false),
        "a screenshot at {}",
        shot.display()
    );

    // Without the token the page shows the login form and draws nothing.
    let fresh = profile.with_extension("anon");
    let dom = chromium(&base, &["--dump-dom"], &fresh).await;
    assert!(
        dom.contains("action=\"/login\"") && !dom.contains("<svg"),
        "{dom}"
    );
    let _ = std::fs::remove_dir_all(&profile);
    let _ = std::fs::remove_dir_all(&fresh);
}

/// Records the page's CSP violations in `window.__violations` (installed by DevTools before any page script,
/// so it is not itself subject to the policy).
pub const RECORD_VIOLATIONS: &str =
    "window.__violations = []; document.addEventListener('securitypolicyviolation', \
     e => window.__violations.push(e.effectiveDirective + ' ' + e.blockedURI));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_and_the_content_security_policy_hold_in_chromium() {
    let world = filled_world().await;
    let query = world.query(Auth::Token(TOKEN.to_owned())).await;
    let clock = Arc::new(AtomicI64::new(NOW_MS));
    let base = serve_with_clock(query, clock.clone()).await;
    let profile = std::env::temp_dir().join(format!("tally-cdp-{}", std::process::id()));
    let mut b = Browser::start(&profile).await;
    b.call(
        "Page.addScriptToEvaluateOnNewDocument",
        serde_json::json!({"source": RECORD_VIOLATIONS}),
    )
    .await;

    // Signed out: the login form.
    b.navigate(&format!("{base}/")).await;
    assert!(
        b.wait_for("!!document.querySelector('form[action=\"/login\"] #token')")
            .await,
        "the login form"
    );
    // Sign in through the form.
    b.eval(&format!(
        "document.getElementById('token').value = '{TOKEN}'; document.querySelector('form').submit(); true"
    ))
    .await;
    assert!(
        b.wait_for("document.body && Number(document.body.dataset.ready || 0) >= 1")
            .await,
        "the dashboard ran its script and drew: {}",
        b.eval("document.documentElement.outerHTML").await
    );
    assert_eq!(b.eval("location.href").await, format!("{base}/"));
    assert_eq!(
        b.eval("document.querySelectorAll('tr[data-campaign] svg[data-points=\"14\"]').length")
            .await,
        2,
        "a row and a sparkline per campaign"
    );
    assert_eq!(
        b.eval("window.__violations").await,
        serde_json::json!([]),
        "the page's own script and style run under the policy"
    );

    // The cookie: __Host- prefixed, HttpOnly (invisible to scripts), Secure, SameSite=Strict, host-only, Path=/,
    // carrying a signed session and never the token.
    let cookies = b.cookies(&format!("{base}/")).await;
    assert_eq!(cookies.len(), 1, "{cookies:?}");
    let c = &cookies[0];
    assert_eq!(c["name"], "__Host-tally_session", "{c}");
    assert_eq!(c["httpOnly"], true, "{c}");
    assert_eq!(c["secure"], true, "{c}");
    assert_eq!(c["sameSite"], "Strict", "{c}");
    assert_eq!(c["path"], "/", "{c}");
    assert_eq!(c["domain"], "127.0.0.1", "host-only: {c}");
    let value = c["value"].as_str().unwrap_or("");
    assert!(value.starts_with("v1.") && !value.contains(TOKEN), "{c}");
    assert_eq!(b.eval("document.cookie").await, "");

    // An injected inline script (as an XSS would add) is refused, and reported.
    let ran = b
        .eval(
            "(() => { const s = document.createElement('script'); s.textContent = 'window.__injected = 1'; \
             document.body.appendChild(s); return window.__injected === 1; })()",
        )
        .await;
    assert_eq!(ran, false, "the injected script did not run");
    assert!(
        b.wait_for("window.__violations.some(v => v.startsWith('script-src'))")
            .await,
        "a script-src violation: {}",
        b.eval("window.__violations").await
    );

    // The page refuses to be framed, even by its own origin.
    b.navigate(&format!("{base}/__frame")).await;
    assert!(b.wait_for("document.readyState === 'complete'").await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        b.eval(
            "(() => { try { const d = document.getElementById('f').contentDocument; \
                return !!(d && d.getElementById('campaigns')); } catch (e) { return false; } })()"
        )
        .await,
        false,
        "the dashboard did not render in a frame"
    );

    // Sign out: the cookie is gone and the login form is back.
    b.navigate(&format!("{base}/")).await;
    assert!(
        b.wait_for("document.body && Number(document.body.dataset.ready || 0) >= 1")
            .await
    );
    b.eval("document.querySelector('form[action=\"/logout\"]').submit(); true")
        .await;
    assert!(
        b.wait_for("!!document.querySelector('form[action=\"/login\"]')")
            .await
    );
    assert_eq!(b.cookies(&format!("{base}/")).await.len(), 0);

    // `?token=` is exchanged once: the page ends at `/`, the token nowhere in the address.
    b.navigate(&format!("{base}/?token={TOKEN}")).await;
    assert!(
        b.wait_for("document.body && Number(document.body.dataset.ready || 0) >= 1")
            .await
    );
    let href = b.eval("location.href").await;
    assert_eq!(href, format!("{base}/"));
    assert_eq!(b.cookies(&format!("{base}/")).await.len(), 1);

    // Thirteen hours later the server refuses the session: the open page's next refresh gets a 401 and goes
    // back to the login form by itself.
    clock.fetch_add(13 * 3600 * 1000, Ordering::SeqCst);
    assert!(
        b.wait_for("!!document.querySelector('form[action=\"/login\"]')")
            .await,
        "the login form after expiry: {}",
        b.eval("document.documentElement.outerHTML").await
    );
    assert_eq!(b.eval("document.querySelectorAll('svg').length").await, 0);
}
