//! `cargo xtask loadtest` — a fresh local cloud of the synthesized stack (release build unless `--debug`),
//! driven through collect with a traffic profile's requests at `--rate` for `--duration`. The local cloud runs
//! as a child (the `tally-localcloud` binary); the load test runs in this process as its client
//! (`tally_traffic::loadtest`: freshness, exact counts per lane, the meter's units per event), with the URLs
//! and the collect key of the child's endpoints file. This command adds `cost_per_billion`: the metered units
//! priced with the same price table as `cargo xtask plan` ([`price`]).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use tally_pipeline::StreamCapacity;
use tally_traffic::endpoints::Endpoints;
use tally_traffic::loadtest::{LoadOptions, Resend};
use tally_traffic::Profile;

use crate::dev::{local_cloud, start, stop};
use crate::flags::Loadtest;
use xtask::plan::prices::Prices;

const GB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Reads and validates `--profile FILE`, with errors that name the flag and the file.
pub fn load_profile(path: &Path) -> anyhow::Result<Profile> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "--profile {}: cannot read the file (profiles are TOML files such as xtask/profiles/daily-curve-network.toml)",
            path.display()
        )
    })?;
    Profile::parse(&text).with_context(|| format!("--profile {}", path.display()))
}

impl crate::Run for Loadtest {
    fn run(self) -> anyhow::Result<()> {
        // Check what can be checked before building anything.
        let (profile, profile_file) = match &self.profile {
            Some(path) => (load_profile(path)?, Some(path.display().to_string())),
            None => (
                Profile::parse(tally_traffic::DEFAULT_PROFILE)
                    .context("the shipped default profile")?,
                None,
            ),
        };
        let duration = tally_traffic::loadtest::duration(&self.duration)
            .map_err(|error| anyhow::anyhow!("--duration: {error}"))?;
        let resend =
            Resend::new(self.resend_acked, self.repeat_in_body).map_err(anyhow::Error::msg)?;
        let prices = Prices::load(self.prices.as_deref())?;
        let stage = tally_pipeline::Stage::new("loadtest");
        let on_demand = matches!(
            crate::stack_options(&stage)?.stream,
            StreamCapacity::OnDemand
        );
        let run_id = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let state = crate::target_dir()
            .join("tally-loadtest")
            .join(run_id.to_string());
        let mut run = local_cloud(&stage, &state, !self.debug)?;
        let endpoints_file = state.join("endpoints.json");
        run.args(["--port", "0", "--url-port-base", "0", "--quiet"]);
        run.arg("--endpoints-file").arg(&endpoints_file);
        // This process's stdout is the report's; the child writes its own messages to stderr.
        run.stdout(Stdio::null()).stderr(Stdio::inherit());
        let (mut child, endpoints) = start(run, &endpoints_file)?;
        let endpoints = Endpoints::from_json(&endpoints);
        let (Some(collect_url), Some(query_url)) = (endpoints.collect_url, endpoints.query_url)
        else {
            stop(&mut child);
            bail!("the load test needs the template's CollectUrl and QueryUrl outputs");
        };
        let options = LoadOptions {
            collect_url,
            query_url,
            rate: f64::from(self.rate),
            duration,
            profile,
            profile_file,
            seed: 1,
            connections: 8,
            aws_endpoint: endpoints.aws_endpoint,
            key: endpoints.collect_key,
            origin: endpoints.collect_origin,
            // The deferred lane batches for up to 30 s.
            settle_timeout: Duration::from_secs(90),
            resend,
        };
        let report = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("while starting the load test's runtime")
            .map(|runtime| runtime.block_on(tally_traffic::loadtest::run(options)));
        stop(&mut child);
        let mut report = match report? {
            Ok(report) => report,
            Err(error) => bail!(
                "the load test could not run: {error}; see {}/logs",
                state.display()
            ),
        };
        if let Some(metered) = report.get("metered") {
            report["cost_per_billion"] = price(metered, &prices, on_demand);
        }
        if self.json {
            println!("{report}");
        } else {
            print!("{}", readable(&report));
        }
        if report["events_acknowledged"] == 0 {
            bail!(
                "collect acknowledged no event; see {}/logs and the list of resources not run above",
                state.display()
            );
        }
        if report["lost"] != 0 || report["duplicated"] != 0 {
            bail!(
                "counts are not exact: lost {}, duplicated {}; state and logs in {}",
                report["lost"],
                report["duplicated"],
                state.display()
            );
        }
        Ok(())
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Prices a `metered` section (units per event) with `prices`: one line per billed item, dollars per billion
/// events. Time-based items (shard-hours, consumer-shard-hours) are priced at the measured shard count and the
/// measured event rate of the window.
pub fn price(metered: &Value, prices: &Prices, on_demand: bool) -> Value {
    let events = f(&metered["events"]);
    let window_s = f(&metered["window_s"]);
    // The rate while the load was sent (the window also holds the lanes' catch-up).
    let rate = match metered["events_per_sec"].as_f64() {
        Some(rate) => rate,
        None if window_s > 0.0 => events / window_s,
        None => 0.0,
    };
    let shards = f(&metered["shards"]);
    let k = &metered["kinesis"];
    let per_event = |x: f64| if events > 0.0 { x / events } else { 0.0 };
    let hours_per_event = if rate > 0.0 {
        1.0 / (rate * 3600.0)
    } else {
        0.0
    };
    let mut lines: Vec<(&str, String, f64, f64)> = Vec::new();
    let kp = &prices.kinesis;
    let efo = metered["lanes"]["realtime"]["kind"] == "enhanced-fan-out";
    if on_demand {
        lines.push((
            "kinesis",
            "stream-hours (on-demand)".into(),
            hours_per_event,
            kp.on_demand_stream_hour,
        ));
        lines.push((
            "kinesis",
            "GB in (records rounded up to 1 KB)".into(),
            per_event(f(&k["on_demand_kb"]) * 1024.0 / GB),
            kp.on_demand_gb_in,
        ));
        if efo {
            lines.push((
                "kinesis",
                "enhanced fan-out GB".into(),
                per_event(f(&k["efo_bytes"]) / GB),
                kp.on_demand_efo_gb,
            ));
        }
    } else {
        lines.push((
            "kinesis",
            format!("shard-hours ({shards} shards)"),
            shards * hours_per_event,
            kp.shard_hour,
        ));
        lines.push((
            "kinesis",
            "PUT payload units".into(),
            f(&k["put_units_per_event"]),
            kp.put_payload_units_per_million / 1e6,
        ));
        if efo {
            lines.push((
                "kinesis",
                format!("enhanced fan-out consumer-shard-hours ({shards} shards)"),
                shards * hours_per_event,
                kp.efo_consumer_shard_hour,
            ));
            lines.push((
                "kinesis",
                "enhanced fan-out GB".into(),
                per_event(f(&k["efo_bytes"]) / GB),
                kp.efo_gb,
            ));
        }
    }
    let d = &metered["dynamodb"];
    lines.push((
        "dynamodb",
        "write request units (realtime + deferred)".into(),
        f(&d["write_units_per_event"]),
        prices.dynamodb.write_request_units_per_million / 1e6,
    ));
    lines.push((
        "dynamodb",
        "read request units (realtime + deferred)".into(),
        f(&d["read_units_per_event"]),
        prices.dynamodb.read_request_units_per_million / 1e6,
    ));
    if let Some(c) = d["by_lane"].get("compactor") {
        lines.push((
            "dynamodb",
            "write request units (compactor)".into(),
            f(&c["write_units_per_event"]),
            prices.dynamodb.write_request_units_per_million / 1e6,
        ));
    }
    if let Some((ecpu, gb_hours)) = cache_per_event(metered, events) {
        lines.push((
            "elasticache",
            "ECPU".into(),
            ecpu,
            prices.elasticache.valkey_ecpu_per_million / 1e6,
        ));
        lines.push((
            "elasticache",
            "data stored, GB-hours (100 MB minimum; time-based)".into(),
            gb_hours,
            prices.elasticache.valkey_gb_hour,
        ));
    }
    for (role, m) in metered["lambda"]["by_function"]
        .as_object()
        .into_iter()
        .flatten()
    {
        // The query function served the load test's own polling: not the pipeline's cost.
        if role == "query" {
            continue;
        }
        lines.push((
            "lambda",
            format!("{role} requests"),
            f(&m["invocations_per_event"]),
            prices.lambda.requests_per_million / 1e6,
        ));
        lines.push((
            "lambda",
            format!("{role} GB-seconds (arm64)"),
            f(&m["gb_seconds_per_event"]),
            prices.lambda.arm64_gb_second,
        ));
        // What Lambda would send to CloudWatch Logs under the function's LoggingConfig (the meter's
        // `log_bytes`; absent in older files).
        if m.get("log_bytes_per_event").is_some() {
            lines.push((
                "cloudwatch",
                format!("{role} logs ingested, GB"),
                f(&m["log_bytes_per_event"]) / GB,
                prices.cloudwatch.logs_ingestion_gb,
            ));
        }
    }
    let s = &metered["s3"];
    let class_b = per_event(f(&s["class_b_requests"]));
    lines.push((
        "s3",
        "PUT/COPY/POST/LIST requests".into(),
        f(&s["class_a_per_event"]),
        prices.s3.put_per_thousand / 1000.0,
    ));
    lines.push((
        "s3",
        "GET and other requests".into(),
        class_b,
        prices.s3.get_per_thousand / 1000.0,
    ));
    let mut by_service = serde_json::Map::new();
    for service in ["kinesis", "dynamodb", "lambda", "s3"] {
        // ElastiCache is added by its lines when the run metered a cache.
        by_service.insert(service.to_owned(), json!(0.0));
    }
    let mut total = 0.0;
    let lines: Vec<Value> = lines
        .into_iter()
        .map(|(service, item, units, unit_price)| {
            let dollars = units * unit_price * 1e9;
            total += dollars;
            let slot = by_service.entry(service).or_insert(json!(0.0));
            *slot = json!(f(slot) + dollars);
            json!({"service": service, "item": item, "units_per_event": units, "unit_price": unit_price,
                   "dollars_per_billion": dollars})
        })
        .collect();
    json!({
        "prices_as_of": prices.as_of,
        "lines": lines,
        "by_service": by_service,
        "total": total,
        "note": format!(
            "metered units of the measured window priced per event; shard-hours and consumer-shard-hours are \
             time-based, priced at the measured {shards} shards and {rate:.0} events/s; the query function \
             (the load test's own polling) is left out; DynamoDB is priced per request unit (on-demand) \
             even when the stack's table is provisioned with auto scaling, whose capacity-hours depend on the \
             day's shape (`cargo xtask plan` prices those); not included: S3 storage, SQS, CloudWatch, \
             Secrets Manager, DynamoDB storage"
        ),
    })
}

/// ECPU and storage GB-hours per event from `metered.elasticache`: its `ecpu_per_event` and
/// `storage_gb_hours_per_event` when given, else the meter's per-cache totals (`caches.*.ecpu`,
/// `caches.*.storage_gb_hours`, `infra/localcloud-aws/src/meter.rs`) over the metered events. `None` without a cache.
fn cache_per_event(metered: &Value, events: f64) -> Option<(f64, f64)> {
    let c = metered.get("elasticache")?;
    let per = |x: f64| if events > 0.0 { x / events } else { 0.0 };
    let (mut ecpu, mut gb_hours) = (0.0, 0.0);
    let caches = c.get("caches").and_then(Value::as_object);
    for cache in caches.into_iter().flatten().map(|(_, v)| v) {
        ecpu += f(&cache["ecpu"]);
        gb_hours += f(&cache["storage_gb_hours"]);
    }
    let ecpu = c
        .get("ecpu_per_event")
        .and_then(Value::as_f64)
        .or_else(|| c.get("ecpu").and_then(Value::as_f64).map(per))
        .unwrap_or_else(|| per(ecpu));
    let gb_hours = c
        .get("storage_gb_hours_per_event")
        .and_then(Value::as_f64)
        .or_else(|| c.get("storage_gb_hours").and_then(Value::as_f64).map(per))
        .unwrap_or_else(|| per(gb_hours));
    (ecpu > 0.0 || gb_hours > 0.0).then_some((ecpu, gb_hours))
}

/// The report without `--json`.
fn readable(r: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let p = &r["profile"];
    let _ = writeln!(
        out,
        "load test: profile {} ({}), {} campaigns, skew {}, {} events/request",
        p["name"],
        p["file"].as_str().unwrap_or("shipped default"),
        p["campaigns"],
        p["campaign_skew"],
        p["events_per_request"]
    );
    let _ = writeln!(
        out,
        "  rate        {} events/s target, {} achieved, {} s",
        r["rate_target"], r["rate_achieved"], r["duration_s"]
    );
    let _ = writeln!(
        out,
        "  events      {} sent, {} acknowledged, {} counted; lost {}, duplicated {}",
        r["events_sent"], r["events_acknowledged"], r["events_counted"], r["lost"], r["duplicated"]
    );
    for lane in ["realtime", "settled"] {
        let l = &r["lanes_checked"][lane];
        let _ = writeln!(
            out,
            "  {lane:<11} counted {}, lost {}, duplicated {}, complete {} s after the sending",
            l["counted"], l["lost"], l["duplicated"], l["complete_after_s"]
        );
    }
    let fr = &r["freshness_ms"];
    let _ = writeln!(
        out,
        "  freshness   p50 {} ms, p90 {} ms, p99 {} ms, max {} ms ({} samples on {})",
        fr["p50"], fr["p90"], fr["p99"], fr["max"], fr["samples"], fr["probes"]
    );
    let c = &r["client"];
    let _ = writeln!(
        out,
        "  client      {} requests ({} POSTs, {} pixels), {} answered 503, {} events resent",
        c["requests"], c["posts"], c["pixels"], c["retries_503"], c["resent_events"]
    );
    let m = &r["metered"];
    if m.is_object() {
        let k = &m["kinesis"];
        let d = &m["dynamodb"];
        let _ = writeln!(
            out,
            "metered ({} events in {} s, {} shards):",
            m["events"], m["window_s"], m["shards"]
        );
        let _ = writeln!(
            out,
            "  kinesis     {:.2} events/record, {:.3} PUT units/event, {} throttled records",
            f(&k["events_per_record"]),
            f(&k["put_units_per_event"]),
            k["throttled_records"]
        );
        let _ = writeln!(
            out,
            "  dynamodb    {:.3} write units/event, {:.3} read units/event (realtime + deferred)",
            f(&d["write_units_per_event"]),
            f(&d["read_units_per_event"])
        );
        for (role, l) in m["lambda"]["by_function"].as_object().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  lambda      {role:<9} {:.5} invocations/event, {:.3e} GB-s/event",
                f(&l["invocations_per_event"]),
                f(&l["gb_seconds_per_event"])
            );
        }
        for (lane, l) in m["lanes"].as_object().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  lane        {lane:<9} {:.1} events/invocation, cycle {:.1} ms per shard",
                f(&l["events_per_invocation"]),
                f(&l["cycle_ms"])
            );
        }
    }
    let cost = &r["cost_per_billion"];
    if cost.is_object() {
        let _ = writeln!(
            out,
            "cost per billion events (prices as of {}):",
            cost["prices_as_of"].as_str().unwrap_or("?")
        );
        for line in cost["lines"].as_array().into_iter().flatten() {
            let _ = writeln!(
                out,
                "  {:<9} {:<58} ${:>10.2}",
                line["service"].as_str().unwrap_or(""),
                line["item"].as_str().unwrap_or(""),
                f(&line["dollars_per_billion"])
            );
        }
        let _ = writeln!(out, "  {:<68} ${:>10.2}", "total", f(&cost["total"]));
        let _ = writeln!(out, "  ({})", cost["note"].as_str().unwrap_or(""));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_errors_name_the_flag_and_the_file() {
        let err = format!(
            "{:#}",
            load_profile(Path::new("/nonexistent/p.toml")).expect_err("missing")
        );
        assert!(
            err.contains("--profile /nonexistent/p.toml: cannot read the file"),
            "{err}"
        );
        let dir = std::env::temp_dir().join(format!("xtask-loadtest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "name = [").expect("write");
        let err = format!("{:#}", load_profile(&bad).expect_err("bad toml"));
        assert!(
            err.contains("--profile") && err.contains("not a valid profile"),
            "{err}"
        );
        let shipped = crate::workspace_root().join("xtask/profiles/daily-curve-network.toml");
        assert_eq!(load_profile(&shipped).expect("shipped").campaigns, 2000);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    /// Dollars per billion of the first line whose item starts with `item` (NaN when none).
    fn dollars(cost: &Value, item: &str) -> f64 {
        cost["lines"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|l| l["item"].as_str().is_some_and(|i| i.starts_with(item)))
            .map(|l| f(&l["dollars_per_billion"]))
            .unwrap_or(f64::NAN)
    }

    #[test]
    fn pricing_follows_the_table() {
        let metered = json!({
            "events": 3_600_000, "window_s": 7200.0, "events_per_sec": 1000.0, "shards": 2,
            "kinesis": {"put_units_per_event": 1.0, "efo_bytes": 0, "on_demand_kb": 0},
            "dynamodb": {"write_units_per_event": 2.0, "read_units_per_event": 1.0},
            "lambda": {"by_function": {
                "collect": {"invocations_per_event": 0.04, "gb_seconds_per_event": 1e-5},
                "realtime": {"invocations_per_event": 0.01, "gb_seconds_per_event": 1e-5,
                             "log_bytes_per_event": 2.0},
                "query": {"invocations_per_event": 1.0, "gb_seconds_per_event": 1.0,
                          "log_bytes_per_event": 500.0}}},
            "lanes": {"realtime": {"kind": "enhanced-fan-out"}},
            "s3": {"class_a_per_event": 0.0, "class_b_requests": 0},
        });
        let prices = Prices::shipped().expect("prices");
        let cost = price(&metered, &prices, false);
        let line = |item: &str| dollars(&cost, item);
        // 1 PUT unit per event at $0.014 per million: $14 per billion.
        assert!((line("PUT payload units") - 14.0).abs() < 1e-9);
        // 2 write units at $0.625 per million: $1,250 per billion.
        assert!((line("write request units") - 1250.0).abs() < 1e-9);
        // 1,000 events/s on 2 shards: 2 shard-hours per 3.6 M events.
        let shard_hours = 2.0 * 0.015 / 3.6e6 * 1e9;
        assert!((line("shard-hours") - shard_hours).abs() < 1e-9);
        assert!((line("enhanced fan-out consumer") - shard_hours).abs() < 1e-9);
        assert!(line("query").is_nan(), "query is left out");
        // 2 log bytes an event at $0.50 per GB: 2e9 / 2^30 GB × $0.50 per billion.
        let logs = 2e9 / GB * 0.5;
        assert!((line("realtime logs ingested") - logs).abs() < 1e-9);
        assert!(line("collect logs").is_nan(), "no field, no line");
        let sum: f64 = ["kinesis", "dynamodb", "lambda", "s3", "cloudwatch"]
            .iter()
            .map(|s| f(&cost["by_service"][*s]))
            .sum();
        assert!((sum - f(&cost["total"])).abs() < 1e-9);
        assert!(line("ECPU").is_nan(), "no cache metered, no cache line");
    }

    #[test]
    fn pricing_prices_the_cache_and_the_compactor() {
        // The meter's shape: per-cache totals over 3.6 M events.
        let metered = json!({
            "events": 3_600_000, "window_s": 3600.0, "events_per_sec": 1000.0, "shards": 2,
            "kinesis": {}, "lambda": {"by_function": {}}, "lanes": {}, "s3": {},
            "dynamodb": {"write_units_per_event": 0.0, "read_units_per_event": 0.0,
                         "by_lane": {"compactor": {"write_units_per_event": 0.01}}},
            "elasticache": {"caches": {"c": {"ecpu": 7_200_000.0, "storage_gb_hours": 0.5}}},
        });
        let cost = price(&metered, &Prices::shipped().expect("prices"), false);
        let line = |item: &str| dollars(&cost, item);
        // 2 ECPU per event at $0.0023 per million: $4.60 per billion.
        assert!((line("ECPU") - 4.6).abs() < 1e-9, "{cost}");
        // 0.5 GB-hours over 3.6 M events at $0.084: $11,666.67 per billion.
        assert!((line("data stored") - 0.5 / 3.6e6 * 0.084 * 1e9).abs() < 1e-6);
        // 0.01 write units per event at $0.625 per million: $6.25 per billion.
        assert!((line("write request units (compactor)") - 6.25).abs() < 1e-9);
        assert!(
            (f(&cost["by_service"]["elasticache"]) - line("ECPU") - line("data stored")).abs()
                < 1e-9
        );
        // A section that gives per-event figures directly.
        let mut m = metered.clone();
        m["elasticache"] = json!({"ecpu_per_event": 1.0, "storage_gb_hours_per_event": 0.0});
        let cost = price(&m, &Prices::shipped().expect("prices"), false);
        assert!((dollars(&cost, "ECPU") - 2.3).abs() < 1e-9);
    }
}
