//! The dashboard page: one self-contained HTML document (inline CSS and JS, charts drawn as inline SVG, no
//! external request except to this function's own API), so it works offline and under a strict CSP.
//!
//! The page is served under a strict content security policy ([`content_security_policy`]): its one inline
//! script and one inline style are allowed by their SHA-256 hashes, computed from the page text, and nothing
//! else runs (no `'unsafe-inline'`, no style attributes, no frames, no plugins, no `<base>`).
//!
//! Every 5 seconds it reads the 24 most recently seen campaigns (`GET /v1/campaigns?order=recent&limit=24`,
//! one page: the list is paginated) and, for each, `GET /v1/campaigns/{id}/series?step=1m` (the last hour), and redraws one card per campaign: today's totals
//! and a chart of impressions and clicks per minute (realtime solid, settled dashed). Each chart's `<svg>`
//! carries `data-points` (points drawn) and `data-max` (the y-axis top), which the browser test reads.

/// The dashboard.
pub const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tally — live campaigns</title>
<link rel="icon" href="data:,">
<style>
  :root { --bg:#0f1419; --card:#182029; --fg:#e6edf3; --muted:#8b98a5; --imp:#4fa3ff; --clk:#ffb347; --grid:#2a3540; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; background:var(--bg); color:var(--fg); }
  header { display:flex; align-items:baseline; gap:16px; padding:16px 24px; border-bottom:1px solid var(--grid); }
  header h1 { font-size:18px; margin:0; }
  #status { color:var(--muted); }
  #status.error { color:#ff6b6b; }
  main { display:grid; grid-template-columns:repeat(auto-fill, minmax(380px, 1fr)); gap:16px; padding:16px 24px; }
  .card { background:var(--card); border-radius:8px; padding:12px 16px; }
  .card h2 { font-size:15px; margin:0 0 6px; font-family:ui-monospace, monospace; }
  .totals { display:flex; flex-wrap:wrap; gap:4px 14px; color:var(--muted); margin-bottom:8px; }
  .totals b { color:var(--fg); font-weight:600; }
  svg { width:100%; height:auto; display:block; }
  .legend { color:var(--muted); font-size:12px; }
  .legend i { display:inline-block; width:18px; height:3px; vertical-align:middle; margin:0 4px 0 10px; }
  .legend i.imp { background:var(--imp); } .legend i.clk { background:var(--clk); }
  .legend i.settled { border-top:2px dashed var(--muted); }
  header form { margin-left:auto; } header button { font:inherit; }
  #empty { color:var(--muted); padding:24px; }
</style>
</head>
<body>
<header><h1>tally</h1><span>live campaigns, last hour per minute (UTC)</span><span id="status">loading…</span>
<form method="post" action="/logout"><button type="submit">Sign out</button></form></header>
<div id="empty" hidden>No campaign has sent events yet.</div>
<main id="cards"></main>
<script>
"use strict";
const W = 560, H = 170, PAD_L = 44, PAD_R = 8, PAD_T = 10, PAD_B = 22;
const SVG_NS = "http://www.w3.org/2000/svg";
const MAX_CARDS = 24, REFRESH_MS = 5000;
const cards = new Map();

function fmt(n) { return n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(n); }
function money(micros) { return "$" + (micros / 1e6).toFixed(2); }

function el(tag, attrs, parent) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function card(id) {
  let c = cards.get(id);
  if (c) return c;
  const root = document.createElement("section");
  root.className = "card";
  const title = document.createElement("h2");
  title.textContent = id;
  const totals = document.createElement("div");
  totals.className = "totals";
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "impressions and clicks per minute" });
  svg.dataset.campaign = id;
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = '<i class="imp"></i>impressions<i class="clk"></i>clicks<i class="settled"></i>settled';
  root.append(title, totals, svg, legend);
  document.getElementById("cards").appendChild(root);
  c = { root, totals, svg };
  cards.set(id, c);
  return c;
}

function drawTotals(c, today) {
  const rt = today.realtime;
  const ctr = rt.ctr === null ? "–" : (rt.ctr * 100).toFixed(2) + "%";
  c.totals.replaceChildren();
  for (const [label, value] of [["impressions", fmt(rt.impressions)], ["clicks", fmt(rt.clicks)], ["CTR", ctr],
                                ["conversions", fmt(rt.conversions)], ["spend", money(rt.spend_micros)],
                                ["users", fmt(rt.unique_users)]]) {
    const span = document.createElement("span");
    const b = document.createElement("b");
    b.textContent = value;
    span.append(b, " " + label + " today");
    c.totals.appendChild(span);
  }
}

function drawChart(c, series) {
  const svg = c.svg, pts = series.points, n = pts.length;
  svg.replaceChildren();
  const lines = [
    { get: p => p.realtime.impressions, color: "var(--imp)", dash: null, name: "rt-impressions" },
    { get: p => p.realtime.clicks, color: "var(--clk)", dash: null, name: "rt-clicks" },
    { get: p => p.settled.impressions, color: "var(--imp)", dash: "4 3", name: "st-impressions" },
  ];
  let max = 1;
  for (const p of pts) for (const l of lines) max = Math.max(max, l.get(p));
  const x = i => PAD_L + (n <= 1 ? 0 : i * (W - PAD_L - PAD_R) / (n - 1));
  const y = v => PAD_T + (H - PAD_T - PAD_B) * (1 - v / max);
  for (const frac of (max % 2 === 0 ? [0, 0.5, 1] : [0, 1])) {
    const yy = y(max * frac);
    el("line", { x1: PAD_L, x2: W - PAD_R, y1: yy, y2: yy, stroke: "var(--grid)", "stroke-width": 1 }, svg);
    const label = el("text", { x: PAD_L - 6, y: yy + 4, "text-anchor": "end", fill: "var(--muted)", "font-size": 11 }, svg);
    label.textContent = fmt(Math.round(max * frac));
  }
  if (n > 0) {
    for (const [i, anchor] of [[0, "start"], [n - 1, "end"]]) {
      const t = el("text", { x: x(i), y: H - 6, "text-anchor": anchor, fill: "var(--muted)", "font-size": 11 }, svg);
      t.textContent = pts[i].t.slice(11, 16);
    }
  }
  for (const l of lines) {
    const d = pts.map((p, i) => (i ? "L" : "M") + x(i).toFixed(1) + " " + y(l.get(p)).toFixed(1)).join(" ");
    const attrs = { d, fill: "none", stroke: l.color, "stroke-width": 2, "stroke-linejoin": "round", "data-line": l.name };
    if (l.dash) { attrs["stroke-dasharray"] = l.dash; attrs["stroke-width"] = 1.5; attrs.opacity = 0.7; }
    el("path", attrs, svg);
  }
  svg.dataset.points = String(n);
  svg.dataset.max = String(max);
}

async function getJson(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (response.status === 401) {
    // The session ended (expired, signed out, or the token rotated twice): back to the login form.
    location.replace("/");
    throw new Error("the session ended: sign in again");
  }
  if (!response.ok) throw new Error(url + " answered " + response.status);
  return response.json();
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const list = await getJson("/v1/campaigns?order=recent&limit=" + MAX_CARDS);
    const shown = list.campaigns;
    document.getElementById("empty").hidden = shown.length > 0;
    await Promise.all(shown.map(async campaign => {
      const c = card(campaign.campaign_id);
      drawTotals(c, campaign.today);
      const series = await getJson("/v1/campaigns/" + encodeURIComponent(campaign.campaign_id) + "/series?step=1m");
      drawChart(c, series);
    }));
    status.className = "";
    status.textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
    document.body.dataset.ready = "1";
  } catch (error) {
    status.className = "error";
    status.textContent = String(error.message || error);
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
</script>
</body>
</html>
"##;

/// The campaign page (`/campaigns/{id}`).
pub const CAMPAIGN_PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tally — campaign</title></head><body></body></html>
"##;

/// The login form (`POST /login`, field `token`), with an optional error line.
pub fn login_page(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tally — sign in</title>
<style>body{{font:15px system-ui,sans-serif;background:#0f1419;color:#e6edf3;display:grid;place-items:center;height:100vh;margin:0}}
form{{background:#182029;padding:24px;border-radius:8px;display:grid;gap:10px;min-width:320px}}
input{{padding:8px;font:inherit}} .error{{color:#ff6b6b;margin:0}}</style></head>
<body><form method="post" action="/login"><h1>tally</h1>{error}
<label for="token">API token (from the stack's query token secret)</label>
<input id="token" name="token" type="password" autocomplete="current-password" required>
<button type="submit">Sign in</button></form></body></html>
"#
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The content security policy of an HTML page of this crate: `default-src 'none'`, the page's own inline
/// `<script>` and `<style>` elements allowed by their SHA-256 hashes (computed here from `page`, so an edit to
/// the page cannot leave a stale hash), API calls to this origin only, forms posting to this origin only, no
/// framing, no plugins, no `<base>`.
pub fn content_security_policy(page: &str) -> String {
    let sources = |tag: &str| {
        let hashes: Vec<String> = inline_elements(page, tag)
            .into_iter()
            .map(|text| format!("'sha256-{}'", sha256_base64(text)))
            .collect();
        if hashes.is_empty() {
            "'none'".to_owned()
        } else {
            hashes.join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; connect-src 'self'; img-src data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        sources("script"),
        sources("style"),
    )
}

/// The text of every `<tag>…</tag>` element in `page` (an opening tag without attributes, as this crate
/// writes them), as the browser hashes it: everything between the tags.
pub fn inline_elements<'a>(page: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut found = Vec::new();
    let mut rest = page;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        found.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    found
}

/// Base64 (standard, padded) of the SHA-256 of `text`: a CSP hash source.
fn sha256_base64(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive<'a>(csp: &'a str, name: &str) -> &'a str {
        csp.split(';')
            .map(str::trim)
            .find_map(|d| d.strip_prefix(name).map(str::trim))
            .unwrap_or_else(|| panic!("{name} in {csp}"))
    }

    #[test]
    fn the_header_hashes_the_script_in_the_page() {
        let csp = content_security_policy(PAGE);
        let scripts = inline_elements(PAGE, "script");
        assert_eq!(scripts.len(), 1, "one inline script");
        assert!(
            scripts[0].contains("function refresh()"),
            "the dashboard's script"
        );
        assert_eq!(
            directive(&csp, "script-src"),
            format!("'sha256-{}'", sha256_base64(scripts[0]))
        );
        let styles = inline_elements(PAGE, "style");
        assert_eq!(styles.len(), 1);
        assert_eq!(
            directive(&csp, "style-src"),
            format!("'sha256-{}'", sha256_base64(styles[0]))
        );
        for (name, value) in [
            ("default-src", "'none'"),
            ("base-uri", "'none'"),
            ("frame-ancestors", "'none'"),
            ("object-src", "'none'"),
            ("connect-src", "'self'"),
            ("form-action", "'self'"),
        ] {
            assert_eq!(directive(&csp, name), value, "{csp}");
        }
        assert!(!csp.contains("unsafe"), "{csp}");
        // No inline style attributes: the policy would block them.
        assert!(!PAGE.contains("style="), "no style attributes");
    }

    #[test]
    fn the_hash_is_the_browsers_sha256_of_the_element_text() {
        // `printf 'alert(1)' | openssl dgst -sha256 -binary | base64`
        assert_eq!(
            sha256_base64("alert(1)"),
            "bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
        let page = "<p>x</p><script>alert(1)</script><script>b()</script>";
        assert_eq!(inline_elements(page, "script"), vec!["alert(1)", "b()"]);
        let csp = content_security_policy(page);
        assert!(
            directive(&csp, "script-src")
                .starts_with("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=' 'sha256-"),
            "{csp}"
        );
        assert_eq!(directive(&csp, "style-src"), "'none'");
    }

    #[test]
    fn the_login_page_is_covered_by_its_own_hashes() {
        let page = login_page(Some("<b>bad</b>"));
        assert!(page.contains("&lt;b&gt;bad&lt;/b&gt;"));
        let csp = content_security_policy(&page);
        assert_eq!(directive(&csp, "script-src"), "'none'");
        assert_eq!(
            directive(&csp, "style-src"),
            format!(
                "'sha256-{}'",
                sha256_base64(inline_elements(&page, "style")[0])
            )
        );
    }
}
