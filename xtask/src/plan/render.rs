//! The report as a terminal table, one JSON object, or a self-contained HTML page (inline SVG, no script
//! from anywhere else).

use std::fmt::Write as _;

use serde_json::{json, Value};

use super::cost::Bill;
use super::Report;
use tally_traffic::KIND_NAMES;

fn usd(v: f64) -> String {
    let v = v + 0.0; // an empty sum is -0.0
    if v >= 100.0 {
        format!("${v:.0}")
    } else {
        format!("${v:.2}")
    }
}

/// USD per billion events, or `n/a` for a profile without events.
fn per_billion(b: &Bill) -> String {
    if b.events > 0.0 {
        usd(b.per_billion())
    } else {
        "n/a".to_owned()
    }
}

fn mode(on_demand: bool) -> &'static str {
    if on_demand {
        "on-demand"
    } else {
        "provisioned + scaler"
    }
}

/// The terminal table.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let p = &r.profile;
    let _ = writeln!(s, "tally plan — stage {}, profile \"{}\"", r.stage, p.name);
    let _ = writeln!(
        s,
        "traffic: mean {:.0} events/s, peak {:.0} events/s, {:.0} M events/month; {} B/event, {:.1} events/request, {:.2} events/record ({:.0} B)",
        p.mean_events_per_sec(),
        p.peak_events_per_sec(),
        r.tally.events / 1e6,
        p.event_bytes,
        p.events_per_request,
        r.events_per_record,
        r.record_bytes
    );
    let _ = writeln!(
        s,
        "packing (real wire::pack on {} sampled events): {:.3} events/record, {:.0} B/record, {:.2} PUT units/record; archived (real tally_domain::archive, gzip NDJSON): {:.1} B/event",
        r.packing.events,
        r.packing.events_per_record,
        r.packing.bytes_per_record,
        r.packing.put_units_per_record,
        r.packing.archive_bytes_per_event
    );
    for (lane, e) in &r.lanes_at_peak {
        let _ = writeln!(
            s,
            "lane {lane} at the peak: cycle {:.0} ms, {:.1} events/invocation, {:.0} rows ({:.0} with a sketch), {:.1} write + {:.1} read units per batch, {:.2} failed conditional writes, mean item {:.0} B",
            e.cycle_ms,
            e.events_per_invocation,
            e.units.rows,
            e.units.sketch_rows,
            e.units.write_units,
            e.units.read_units,
            e.units.failed_conditional_writes,
            e.units.mean_item_bytes
        );
    }
    let _ = writeln!(
        s,
        "metrics table ({} in the template): on-demand {} a month, provisioned with auto scaling {} (peak {:.0} write units/s)",
        if r.tally.dynamodb_provisioned { "provisioned" } else { "on-demand" },
        usd(r.tally.dynamodb_on_demand_usd),
        usd(r.tally.dynamodb_provisioned_usd),
        r.tally.dynamodb_peak_wcu_per_sec
    );
    let n = &r.naive_notes;
    let _ = writeln!(
        s,
        "naive design: freshness p50 ≈ {:.0} ms (shared-iterator polling), not exactly-once (a redelivered batch is written again), hottest item {:.0} write units/s at the peak against DynamoDB's {:.0} per item{}",
        n.freshness_p50_ms,
        n.hottest_item_wcu_per_sec,
        n.item_limit_wcu_per_sec,
        if n.hottest_item_wcu_per_sec > n.item_limit_wcu_per_sec { " (throttled)" } else { "" }
    );
    let _ = writeln!(
        s,
        "prices: {} list prices as of {}\n",
        r.prices.region, r.prices.as_of
    );

    let _ = writeln!(s, "monthly cost per service");
    let _ = writeln!(
        s,
        "  {:<16} {:>14} {:>14} {:>14}",
        "service",
        format!("tally ({})", if r.on_demand { "od" } else { "prov" }),
        format!("tally ({})", if r.on_demand { "prov" } else { "od" }),
        "naive"
    );
    let services: Vec<&str> = {
        let mut v: Vec<&str> = r
            .tally
            .by_service()
            .keys()
            .chain(r.naive.by_service().keys())
            .copied()
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    for svc in &services {
        let _ = writeln!(
            s,
            "  {:<16} {:>14} {:>14} {:>14}",
            svc,
            usd(r.tally.service(svc)),
            usd(r.alternative.service(svc)),
            usd(r.naive.service(svc))
        );
    }
    let _ = writeln!(
        s,
        "  {:<16} {:>14} {:>14} {:>14}",
        "total",
        usd(r.tally.total()),
        usd(r.alternative.total()),
        usd(r.naive.total())
    );
    let _ = writeln!(
        s,
        "  {:<16} {:>14} {:>14} {:>14}\n",
        "per 1e9 events",
        per_billion(&r.tally),
        per_billion(&r.alternative),
        per_billion(&r.naive)
    );

    let _ = writeln!(s, "tally line items ({})", mode(r.on_demand));
    for l in &r.tally.lines {
        let _ = writeln!(
            s,
            "  {:<16} {:<48} {:>16.0} {:<9} {:>10}",
            l.service,
            l.item,
            l.quantity,
            l.unit,
            usd(l.usd)
        );
    }

    let sim = &r.sim;
    let _ = writeln!(
        s,
        "\nscaler simulation (minute by minute, ×2/÷2 per call, 10 calls/24 h, {} min per call)",
        super::simulate::RESHARDING_MINUTES
    );
    let _ = writeln!(
        s,
        "  shards {}..{} (bounds {}..{}), mean {:.1}; {} calls per period; {} throttled minutes; peak needs {} shards",
        sim.min_shards(),
        sim.max_shards(),
        sim.bounds.0,
        sim.bounds.1,
        sim.mean_shards(),
        sim.calls,
        sim.throttled_minutes(),
        sim.peak_needs
    );
    let _ = writeln!(
        s,
        "  naive design: shards {}..{}, {} throttled minutes",
        r.naive_sim.min_shards(),
        r.naive_sim.max_shards(),
        r.naive_sim.throttled_minutes()
    );

    let _ = writeln!(s, "\nfreshness on AWS (event received → counter readable)");
    for b in &r.latency {
        let _ = writeln!(
            s,
            "  lane {} ({}, window {} s): p50 ≈ {:.0} ms, p99 ≤ {:.0} ms",
            b.lane,
            if b.efo {
                "enhanced fan-out"
            } else {
                "shared iterator"
            },
            b.window_secs,
            b.p50_ms(),
            b.p99_ms()
        );
        for c in &b.components {
            let _ = writeln!(
                s,
                "    {:<30} {:>8.0} {:>8.0}   {}",
                c.name, c.p50_ms, c.p99_ms, c.source
            );
        }
        if let Some((c, share)) = b.dominant() {
            let _ = writeln!(
                s,
                "    set by: {} ({:.0} % of the p50)",
                c.name,
                share * 100.0
            );
        }
    }
    let _ = writeln!(
        s,
        "\ndefences (what bounds the bill against hostile traffic, USD a month)"
    );
    for d in &r.defences {
        let _ = writeln!(
            s,
            "  {:<32} {:>9}  {}: {}",
            d.name,
            usd(d.monthly_usd),
            d.bounds,
            d.detail
        );
    }
    let _ = writeln!(s, "\nrecommendation");
    for line in &r.recommendations {
        let _ = writeln!(s, "  * {line}");
    }
    s
}

fn bill_json(b: &Bill) -> Value {
    json!({
        "total_usd": b.total(),
        "per_billion_events_usd": b.per_billion(),
        "events_per_month": b.events,
        "by_service": b.by_service(),
        "lines": b.lines.iter().map(|l| json!({
            "service": l.service, "item": l.item, "quantity": l.quantity, "unit": l.unit, "usd": l.usd,
        })).collect::<Vec<_>>(),
    })
}

/// The report as one JSON object.
pub fn json(r: &Report) -> Value {
    let p = &r.profile;
    json!({
        "stage": r.stage,
        "profile": {
            "name": p.name,
            "description": p.description,
            "event_bytes": p.event_bytes,
            "events_per_request": p.events_per_request,
            "campaigns": p.campaigns,
            "ads_per_campaign": p.ads_per_campaign,
            "campaign_skew": p.campaign_skew,
            "kinds": KIND_NAMES.iter().zip(p.kinds).map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "mean_events_per_sec": p.mean_events_per_sec(),
            "peak_events_per_sec": p.peak_events_per_sec(),
            "days": p.days(),
        },
        "prices": { "region": r.prices.region, "as_of": r.prices.as_of },
        "packing": { "events_per_record": r.events_per_record, "record_bytes": r.record_bytes,
            "sampled_events": r.packing.events, "put_units_per_record": r.packing.put_units_per_record,
            "encoded_bytes_per_event": r.packing.encoded_bytes_per_event,
            "archive_bytes_per_event": r.packing.archive_bytes_per_event },
        "lanes_at_peak": r.lanes_at_peak.iter().map(|(lane, e)| json!({
            "lane": lane, "cycle_ms": e.cycle_ms, "events_per_invocation": e.events_per_invocation,
            "records_per_invocation": e.records_per_invocation, "duration_ms": e.duration_ms,
            "rows": e.units.rows, "sketch_rows": e.units.sketch_rows, "write_units": e.units.write_units,
            "read_units": e.units.read_units, "failed_conditional_writes": e.units.failed_conditional_writes,
            "mean_item_bytes": e.units.mean_item_bytes, "behind": e.behind,
        })).collect::<Vec<_>>(),
        "dynamodb": { "billing": if r.tally.dynamodb_provisioned { "provisioned" } else { "on-demand" },
            "on_demand_usd": r.tally.dynamodb_on_demand_usd,
            "provisioned_auto_scaling_usd": r.tally.dynamodb_provisioned_usd,
            "write_units": r.tally.dynamodb_write_units, "read_units": r.tally.dynamodb_read_units,
            "throttled_minutes": r.tally.dynamodb_short_minutes,
            "peak_write_units_per_sec": r.tally.dynamodb_peak_wcu_per_sec },
        "naive_notes": { "freshness_p50_ms": r.naive_notes.freshness_p50_ms, "exactly_once": false,
            "hottest_item_write_units_per_sec": r.naive_notes.hottest_item_wcu_per_sec,
            "item_limit_write_units_per_sec": r.naive_notes.item_limit_wcu_per_sec },
        "stream_mode": mode(r.on_demand),
        "template": {
            "retention_hours": r.stack.stream.retention_hours,
            "enhanced_fan_out_consumers": r.stack.consumers,
            "functions": r.stack.functions.values().map(|f| json!({
                "name": f.name, "memory_mb": f.memory_mb, "timeout_secs": f.timeout_secs, "arm64": f.arm64,
            })).collect::<Vec<_>>(),
            "kinesis_mappings": r.stack.kinesis_mappings.iter().map(|m| json!({
                "function": r.stack.functions.get(&m.function).map_or(m.function.as_str(), |f| f.name.as_str()),
                "batch_size": m.batch_size, "batching_window_secs": m.window_secs,
                "parallelization_factor": m.parallelization, "enhanced_fan_out": m.efo,
                "starting_position": m.starting_position,
            })).collect::<Vec<_>>(),
        },
        "tally": bill_json(&r.tally),
        "tally_other_mode": bill_json(&r.alternative),
        "naive": bill_json(&r.naive),
        "scaler": {
            "bounds": [r.sim.bounds.0, r.sim.bounds.1],
            "min_shards": r.sim.min_shards(),
            "max_shards": r.sim.max_shards(),
            "mean_shards": r.sim.mean_shards(),
            "calls_per_period": r.sim.calls,
            "throttled_minutes": r.sim.throttled_minutes(),
            "ceiling_minutes": r.sim.ceiling_minutes,
            "peak_needs_shards": r.sim.peak_needs,
            "shards_per_minute": r.sim.shards,
        },
        "latency": r.latency.iter().map(|b| json!({
            "lane": b.lane, "enhanced_fan_out": b.efo, "batching_window_secs": b.window_secs,
            "p50_ms": b.p50_ms(), "p99_ms_upper_bound": b.p99_ms(),
            "set_by": b.dominant().map(|(c, _)| c.name),
            "components": b.components.iter().map(|c| json!({
                "name": c.name, "p50_ms": c.p50_ms, "p99_ms": c.p99_ms, "source": c.source,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "what_if_realtime_window_1s": r.what_if_window.as_ref().map(|(b, p50)| json!({
            "bill": bill_json(b), "realtime_p50_ms": p50,
        })),
        "what_if_realtime_minute_rows_only": bill_json(&r.what_if_minute_rows),
        "defences": r.defences.iter().map(|d| json!({
            "name": d.name, "bounds": d.bounds, "monthly_usd": d.monthly_usd, "detail": d.detail,
        })).collect::<Vec<_>>(),
        "recommendations": r.recommendations,
    })
}

/// Text for HTML (element content and quoted attributes); the sweep's page uses it too.
pub(super) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Width and height of every chart, in CSS pixels (the screenshot test knows them).
pub const CHART_W: f64 = 1100.0;
pub const CHART_H: f64 = 320.0;
const PAD_L: f64 = 70.0;
const PAD_R: f64 = 70.0;
const PAD_T: f64 = 20.0;
const PAD_B: f64 = 40.0;

/// Traffic (events/s, left axis) and open shards (right axis) over the period, throttled minutes in red.
fn traffic_chart(r: &Report) -> String {
    let eps = &r.profile.events_per_sec;
    let n = eps.len().max(2) as f64;
    let (w, h) = (CHART_W - PAD_L - PAD_R, CHART_H - PAD_T - PAD_B);
    let max_eps = r.profile.peak_events_per_sec().max(1.0) * 1.1;
    let max_shards = f64::from(r.sim.max_shards().max(1)) * 1.2;
    let x = |i: usize| PAD_L + i as f64 / (n - 1.0) * w;
    let y_eps = |v: f64| PAD_T + h - v / max_eps * h;
    let y_sh = |v: f64| PAD_T + h - v / max_shards * h;
    let mut svg = format!(
        r##"<svg id="traffic" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}">"##
    );
    let _ = write!(
        svg,
        r##"<rect x="{PAD_L}" y="{PAD_T}" width="{w}" height="{h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    for (i, t) in r.sim.throttled.iter().enumerate() {
        if *t > 0.0 {
            let _ = write!(
                svg,
                r##"<rect class="throttled" x="{:.1}" y="{PAD_T}" width="{:.2}" height="{h}" fill="#f8c0c0"/>"##,
                x(i),
                (w / n).max(1.0)
            );
        }
    }
    let mut area = format!("M{:.1},{:.1}", x(0), y_eps(0.0));
    for (i, v) in eps.iter().enumerate() {
        let _ = write!(area, " L{:.1},{:.1}", x(i), y_eps(*v));
    }
    let _ = write!(area, " L{:.1},{:.1} Z", x(eps.len() - 1), y_eps(0.0));
    let _ = write!(
        svg,
        r##"<path class="traffic" d="{area}" fill="#9ecae1" stroke="#3182bd" stroke-width="1.5"/>"##
    );
    let mut line = String::new();
    for (i, s) in r.sim.shards.iter().enumerate() {
        let (xi, yi) = (x(i), y_sh(f64::from(*s)));
        if i == 0 {
            let _ = write!(line, "M{xi:.1},{yi:.1}");
        } else {
            let _ = write!(line, " H{xi:.1} V{yi:.1}");
        }
    }
    let _ = write!(
        svg,
        r##"<path class="shards" d="{line}" fill="none" stroke="#e6550d" stroke-width="3"/>"##
    );
    // Axes: left events/s, right shards, bottom hours.
    for k in 0..=4 {
        let v = max_eps / 4.0 * f64::from(k);
        let _ = write!(
            svg,
            r##"<text x="{:.0}" y="{:.0}" font-size="12" text-anchor="end" fill="#3182bd">{:.0}</text>"##,
            PAD_L - 6.0,
            y_eps(v) + 4.0,
            v
        );
        let s = max_shards / 4.0 * f64::from(k);
        let _ = write!(
            svg,
            r##"<text x="{:.0}" y="{:.0}" font-size="12" fill="#e6550d">{:.0}</text>"##,
            CHART_W - PAD_R + 6.0,
            y_sh(s) + 4.0,
            s
        );
    }
    let hours = (eps.len() / 60).max(1);
    let step = if hours > 48 { 24 } else { 3 };
    for hour in (0..=hours).step_by(step) {
        let xi = x((hour * 60).min(eps.len() - 1));
        let label = if hours > 48 {
            format!("day {}", hour / 24)
        } else {
            format!("{hour:02}:00")
        };
        let _ = write!(
            svg,
            r##"<text x="{xi:.0}" y="{:.0}" font-size="12" text-anchor="middle">{label}</text>"##,
            CHART_H - 20.0
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{PAD_L}" y="{:.0}" font-size="12" fill="#3182bd">events/s</text><text x="{:.0}" y="{:.0}" font-size="12" fill="#e6550d" text-anchor="end">open shards</text>"##,
        CHART_H - 4.0,
        CHART_W - PAD_R,
        CHART_H - 4.0
    );
    svg.push_str("</svg>");
    svg
}

/// Monthly cost per service, tally against the naive design.
fn cost_chart(r: &Report) -> String {
    let mut services: Vec<&str> = r
        .tally
        .by_service()
        .keys()
        .chain(r.naive.by_service().keys())
        .copied()
        .collect();
    services.sort_unstable();
    services.dedup();
    let max = services
        .iter()
        .map(|s| r.tally.service(s).max(r.naive.service(s)))
        .fold(0.0, f64::max)
        .max(0.01);
    let row = (CHART_H - PAD_T - PAD_B) / services.len().max(1) as f64;
    let w = CHART_W - 200.0 - 120.0;
    let mut svg = format!(
        r##"<svg id="costs" xmlns="http://www.w3.org/2000/svg" width="{CHART_W}" height="{CHART_H}" viewBox="0 0 {CHART_W} {CHART_H}">"##
    );
    for (i, svc) in services.iter().enumerate() {
        let y0 = PAD_T + row * i as f64;
        let bar = (row - 8.0) / 2.0;
        let _ = write!(
            svg,
            r##"<text x="190" y="{:.0}" font-size="13" text-anchor="end">{}</text>"##,
            y0 + row / 2.0 + 4.0,
            escape(svc)
        );
        for (j, (value, color, class)) in [
            (r.tally.service(svc), "#31a354", "tally"),
            (r.naive.service(svc), "#969696", "naive"),
        ]
        .into_iter()
        .enumerate()
        {
            let bw = (value / max * w).max(if value > 0.0 { 2.0 } else { 0.0 });
            let yb = y0 + 4.0 + bar * j as f64;
            let _ = write!(
                svg,
                r##"<rect class="{class}" x="200" y="{yb:.1}" width="{bw:.1}" height="{:.1}" fill="{color}"/>"##,
                bar - 1.0
            );
            let _ = write!(
                svg,
                r##"<text x="{:.0}" y="{:.0}" font-size="11">{}</text>"##,
                204.0 + bw,
                yb + bar - 3.0,
                usd(value)
            );
        }
    }
    let _ = write!(
        svg,
        r##"<rect x="200" y="{:.0}" width="12" height="12" fill="#31a354"/><text x="216" y="{:.0}" font-size="12">tally ({})</text><rect x="420" y="{:.0}" width="12" height="12" fill="#969696"/><text x="436" y="{:.0}" font-size="12">naive (one record and one write per event)</text>"##,
        CHART_H - 22.0,
        CHART_H - 12.0,
        mode(r.on_demand),
        CHART_H - 22.0,
        CHART_H - 12.0
    );
    svg.push_str("</svg>");
    svg
}

/// The self-contained page.
pub fn html(r: &Report) -> String {
    let p = &r.profile;
    let mut rows = String::new();
    for l in &r.tally.lines {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td class=n>{:.0} {}</td><td class=n>{}</td></tr>",
            escape(l.service),
            escape(&l.item),
            l.quantity,
            l.unit,
            usd(l.usd)
        );
    }
    let mut lat = String::new();
    for b in &r.latency {
        let _ = write!(lat, "<h3>lane {} — p50 ≈ {:.0} ms, p99 ≤ {:.0} ms</h3><table><tr><th>component</th><th>p50 ms</th><th>p99 ms</th><th>source</th></tr>", escape(&b.lane), b.p50_ms(), b.p99_ms());
        for c in &b.components {
            let _ = write!(
                lat,
                "<tr><td>{}</td><td class=n>{:.0}</td><td class=n>{:.0}</td><td>{}</td></tr>",
                escape(c.name),
                c.p50_ms,
                c.p99_ms,
                escape(c.source)
            );
        }
        lat.push_str("</table>");
    }
    let defences: String = r
        .defences
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td class=n>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.name),
                usd(d.monthly_usd),
                escape(&d.bounds),
                escape(&d.detail)
            )
        })
        .collect();
    let recs: String = r
        .recommendations
        .iter()
        .map(|s| format!("<li>{}</li>", escape(s)))
        .collect();
    format!(
        r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tally plan — {name}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 20px 40px; color: #222; background: #fff; }}
h1 {{ font-size: 20px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 18px 0 6px; }} h3 {{ font-size: 14px; }}
.summary {{ color: #555; margin-bottom: 8px; }}
table {{ border-collapse: collapse; }} td, th {{ padding: 2px 10px; border-bottom: 1px solid #eee; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
.big {{ font-size: 18px; }}
</style></head><body>
<h1>tally plan — {name}</h1>
<div class="summary">stage {stage} · mean {mean:.0} events/s, peak {peak:.0} events/s · {events:.0} M events/month · {region} list prices as of {as_of}</div>
<h2>Traffic and open shards ({mode})</h2>
{traffic}
<h2>Monthly cost per service</h2>
<p class="big">tally {tally_total} per month, {tally_pb} per billion events · naive {naive_total}, {naive_pb} per billion events</p>
{costs}
<h2>Defences</h2><table><tr><th>defence</th><th>USD/month</th><th>bounds</th><th>detail</th></tr>{defences}</table>
<h2>Recommendation</h2><ul>{recs}</ul>
<h2>Scaler simulation</h2>
<p>shards {smin}..{smax} (bounds {b0}..{b1}), {calls} UpdateShardCount calls per period, {throttled} throttled minutes; the peak needs {needs} shards.</p>
<h2>Freshness on AWS</h2>{lat}
<h2>tally line items</h2><table><tr><th>service</th><th>item</th><th>quantity</th><th>USD/month</th></tr>{rows}</table>
</body></html>
"##,
        name = escape(&p.name),
        stage = escape(&r.stage),
        mean = p.mean_events_per_sec(),
        peak = p.peak_events_per_sec(),
        events = r.tally.events / 1e6,
        region = escape(&r.prices.region),
        as_of = escape(&r.prices.as_of),
        mode = mode(r.on_demand),
        traffic = traffic_chart(r),
        tally_total = usd(r.tally.total()),
        tally_pb = per_billion(&r.tally),
        naive_total = usd(r.naive.total()),
        naive_pb = per_billion(&r.naive),
        costs = cost_chart(r),
        smin = r.sim.min_shards(),
        smax = r.sim.max_shards(),
        b0 = r.sim.bounds.0,
        b1 = r.sim.bounds.1,
        calls = r.sim.calls,
        throttled = r.sim.throttled_minutes(),
        needs = r.sim.peak_needs,
    )
}
