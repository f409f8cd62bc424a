//! `cargo xtask plan --check LOADTEST.json [--tolerance 15]`: the model against a load test's metered units.
//!
//! The load test's JSON (`cargo xtask loadtest --json`, the `metered` section) gives the traffic profile, the
//! achieved rate, the open shards and each lane's measured cycle. The model is evaluated with exactly those
//! inputs ([`super::lanes::Overrides`]) and its units per event are printed next to the measured ones:
//! DynamoDB write and read units per event (realtime, deferred), Kinesis records and PUT payload units per
//! event, Lambda invocations and GB-seconds per event (collect, realtime, deferred). Lambda GB-seconds take
//! the measured mean billed duration per invocation as their duration input, so that they check the model's
//! arithmetic (invocations × duration × memory), not the speed of the machine the load test ran on.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;
use tally_traffic::{Profile, KIND_NAMES};

use super::counters::Rows;
use super::lanes::{Model, Overrides};
use super::stack::{self, FunctionModel, StackModel};
use super::traffic;

/// What the load test measured, as far as the check needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub rate: f64,
    pub events: f64,
    pub shards: u32,
    /// How long the tables took traffic: the clients' sending time (`duration_s`; `metered.window_s` in files
    /// that lack it). Rows are keyed by the events' receive time, so none holds more than this much traffic,
    /// however long the lanes take to catch up. A load test starts on empty tables, so its rows are younger
    /// (fewer users in their sketches, fewer fence marks) than a steady day's; `None` when the file says
    /// neither (then rows are priced as in a steady day).
    pub history_secs: Option<f64>,
    /// Lane (function role) → measured cycle, ms.
    pub cycles: Vec<(String, f64)>,
    pub units: Vec<(String, f64)>,
    /// Function role → mean billed ms per invocation.
    pub billed_ms: Vec<(String, f64)>,
}

/// One compared unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub unit: String,
    pub predicted: f64,
    pub measured: f64,
}

impl Row {
    /// measured / predicted (1 when both are 0, infinite when only the prediction is).
    pub fn ratio(&self) -> f64 {
        if self.predicted == 0.0 {
            if self.measured == 0.0 {
                1.0
            } else {
                f64::INFINITY
            }
        } else {
            self.measured / self.predicted
        }
    }

    pub fn within(&self, tolerance: f64) -> bool {
        (self.ratio() - 1.0).abs() <= tolerance
    }
}

/// The lanes and functions the check compares.
pub const LANES: [&str; 2] = ["realtime", "deferred"];
pub const FUNCTIONS: [&str; 3] = ["collect", "realtime", "deferred"];

fn field<'a>(v: &'a Value, path: &str) -> anyhow::Result<&'a Value> {
    let mut at = v;
    for part in path.split('.') {
        at = at.get(part).with_context(|| {
            format!(
                "missing field `{path}` (format: METERED contract, `cargo xtask loadtest --json`)"
            )
        })?;
    }
    Ok(at)
}

fn num(v: &Value, path: &str) -> anyhow::Result<f64> {
    let n = field(v, path)?
        .as_f64()
        .with_context(|| format!("field `{path}` is not a number"))?;
    if !n.is_finite() || n < 0.0 {
        bail!("field `{path}` is {n}: expected a finite number >= 0");
    }
    Ok(n)
}

/// The measured side of the comparison, from the load test's JSON.
pub fn measured(v: &Value) -> anyhow::Result<Measured> {
    let events = num(v, "metered.events")?;
    if events <= 0.0 {
        bail!("metered.events is 0: the load test acknowledged no event inside its metered window, so there is nothing to compare (run it longer, or check it reached collect)");
    }
    let rate = num(v, "rate_achieved")?;
    if rate <= 0.0 {
        bail!("rate_achieved is 0: the load test sent nothing");
    }
    let shards = num(v, "metered.shards")?;
    if shards < 1.0 {
        bail!("metered.shards is {shards}: expected at least one open shard");
    }
    let history_secs = ["/duration_s", "/metered/window_s"].iter().find_map(|p| {
        v.pointer(p)
            .and_then(Value::as_f64)
            .filter(|w| w.is_finite() && *w > 0.0)
    });
    let mut m = Measured {
        rate,
        events,
        shards: shards as u32,
        history_secs,
        cycles: Vec::new(),
        units: Vec::new(),
        billed_ms: Vec::new(),
    };
    for lane in LANES {
        m.cycles.push((
            lane.to_owned(),
            num(v, &format!("metered.lanes.{lane}.cycle_ms"))?,
        ));
        for (unit, key) in [
            ("write", "write_units_per_event"),
            ("read", "read_units_per_event"),
        ] {
            m.units.push((
                format!("dynamodb {unit} units per event ({lane})"),
                num(v, &format!("metered.dynamodb.by_lane.{lane}.{key}"))?,
            ));
        }
    }
    // Units of the counter cache's design, when the load test metered them (older files lack them).
    if let Some(ecpu) = cache_ecpu_per_event(v, events)? {
        m.units
            .push(("elasticache ECPU per event".to_owned(), ecpu));
    }
    if v.pointer("/metered/dynamodb/by_lane/compactor").is_some() {
        m.units.push((
            "dynamodb write units per event (compactor)".to_owned(),
            num(
                v,
                "metered.dynamodb.by_lane.compactor.write_units_per_event",
            )?,
        ));
    }
    m.units.push((
        "kinesis records per event".to_owned(),
        num(v, "metered.kinesis.records_per_event")?,
    ));
    m.units.push((
        "kinesis PUT payload units per event".to_owned(),
        num(v, "metered.kinesis.put_units_per_event")?,
    ));
    if let Some(bytes) = log_bytes_per_event(v)? {
        m.units.push((LOG_UNIT.to_owned(), bytes));
    }
    for f in FUNCTIONS {
        let base = format!("metered.lambda.by_function.{f}");
        m.units.push((
            format!("lambda invocations per event ({f})"),
            num(v, &format!("{base}.invocations_per_event"))?,
        ));
        m.units.push((
            format!("lambda GB-s per event ({f})"),
            num(v, &format!("{base}.gb_seconds_per_event"))?,
        ));
        let invocations = num(v, &format!("{base}.invocations"))?;
        let billed = num(v, &format!("{base}.billed_ms"))?;
        m.billed_ms.push((
            f.to_owned(),
            if invocations > 0.0 {
                billed / invocations
            } else {
                0.0
            },
        ));
    }
    Ok(m)
}

/// The unit of the functions' CloudWatch Logs bytes.
pub const LOG_UNIT: &str = "cloudwatch log bytes per event";

/// The log bytes collect, realtime and deferred sent per event (`metered.lambda.by_function.*.log_bytes_per_event`,
/// the meter's `log_bytes` under each function's `LoggingConfig`); `None` for a file from before the meter
/// counted them (no function has the field).
pub fn log_bytes_per_event(v: &Value) -> anyhow::Result<Option<f64>> {
    let mut total = None;
    for f in FUNCTIONS {
        let path = format!("metered.lambda.by_function.{f}.log_bytes_per_event");
        if v.pointer(&format!("/{}", path.replace('.', "/"))).is_some() {
            *total.get_or_insert(0.0) += num(v, &path)?;
        }
    }
    Ok(total)
}

/// The lanes' ECPU per event from `metered.elasticache`: its `lanes_commands_per_event` (the lanes' commands,
/// one ECPU each: what the model's claims, marks and scripts predict), else its `ecpu_per_event`, or its `ecpu`
/// over the metered events, or
/// the sum of `caches.*.ecpu` (the meter snapshot's shape, `infra/localcloud-aws/src/meter.rs`) over them. `None`
/// when the section is absent or has no cache.
pub fn cache_ecpu_per_event(v: &Value, events: f64) -> anyhow::Result<Option<f64>> {
    let Some(section) = v.pointer("/metered/elasticache") else {
        return Ok(None);
    };
    // The lanes' commands alone (the query function's polling and the compactor's reads left out), when the
    // file has them: one ECPU each.
    if section.get("lanes_commands_per_event").is_some() {
        return num(v, "metered.elasticache.lanes_commands_per_event").map(Some);
    }
    if section.get("ecpu_per_event").is_some() {
        return num(v, "metered.elasticache.ecpu_per_event").map(Some);
    }
    if section.get("ecpu").is_some() {
        return Ok(Some(num(v, "metered.elasticache.ecpu")? / events));
    }
    let Some(caches) = section.get("caches").and_then(Value::as_object) else {
        bail!("metered.elasticache has neither `ecpu_per_event`, `ecpu` nor `caches`: expected the meter's elasticache section");
    };
    if caches.is_empty() {
        return Ok(None);
    }
    let mut ecpu = 0.0;
    for name in caches.keys() {
        ecpu += num(v, &format!("metered.elasticache.caches.{name}.ecpu"))?;
    }
    Ok(Some(ecpu / events))
}

/// The profile the load test ran: its file (relative to the workspace root), or the shape in the JSON.
pub fn profile(v: &Value, root: &Path) -> anyhow::Result<Profile> {
    let p = field(v, "profile")?;
    if let Some(file) = p.get("file").and_then(Value::as_str) {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "while reading the load test's profile {} (profile.file)",
                path.display()
            )
        })?;
        return Profile::parse(&text).with_context(|| format!("in profile {}", path.display()));
    }
    // The shipped default: its shape is in the JSON.
    let mut out =
        Profile::flat(0.0, num(p, "event_bytes")? as u32).context("profile.event_bytes")?;
    out.name = p
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("load test default")
        .to_owned();
    out.events_per_request = num(p, "events_per_request")?.max(1.0);
    out.campaigns = num(p, "campaigns")? as u32;
    out.ads_per_campaign = num(p, "ads_per_campaign")?.max(1.0) as u32;
    out.campaign_skew = num(p, "campaign_skew")?;
    if let Some(kinds) = p.get("kinds") {
        for (i, name) in KIND_NAMES.iter().enumerate() {
            out.kinds[i] = match kinds {
                Value::Array(a) => a.get(i).and_then(Value::as_f64),
                other => other.get(*name).and_then(Value::as_f64),
            }
            .with_context(|| format!("profile.kinds: no share for `{name}`"))?;
        }
    }
    if out.campaigns == 0 {
        bail!("profile.campaigns is 0");
    }
    Ok(out)
}

/// The model's units per event for `profile` at the measured rate, shards and cycles, on `stack`.
pub fn predicted(profile: &Profile, stack: &StackModel, m: &Measured) -> Vec<(String, f64)> {
    let packing = traffic::packing(profile, traffic::PACKING_SAMPLE_EVENTS);
    let epr = packing.events_per_record.max(1.0);
    let mut overrides = Overrides {
        shards: Some(m.shards),
        history_secs: m.history_secs,
        ..Overrides::default()
    };
    for (lane, cycle) in &m.cycles {
        if *cycle > 0.0 {
            overrides.cycle_ms.insert(lane.clone(), *cycle);
        }
    }
    let mut model = Model::new(profile, packing.clone(), overrides);
    let billed = |f: &str| {
        m.billed_ms
            .iter()
            .find(|(name, _)| name == f)
            .map_or(0.0, |(_, ms)| *ms)
    };
    let gb_s = |invocations: f64, f: &str, memory_mb: u32| {
        invocations * billed(f) / 1000.0 * f64::from(memory_mb) / 1024.0
    };
    let mut out = Vec::new();
    let shards = f64::from(m.shards);
    let mut lambda = Vec::new();
    let mut ecpu = 0.0;
    // Lambda's system lines per invocation, when the function's LoggingConfig sends them.
    let platform_bytes = |f: &FunctionModel, billed_ms: f64| {
        f.platform_log.map_or(0.0, |format| {
            tally_billing::lambda::platform_bytes(format, (billed_ms * 1000.0) as u64, f.memory_mb)
                as f64
        })
    };
    let mut log_bytes = 0.0;
    for lane in LANES {
        let found = stack.kinesis_mappings.iter().find_map(|mapping| {
            let f = stack.functions.get(&mapping.function)?;
            (f.name == lane).then_some((mapping, f))
        });
        let (wru, rru, inv, memory) = match found {
            Some((mapping, f)) => {
                let e = model.lane(
                    lane,
                    super::cost::lane_kind(f),
                    mapping,
                    m.shards,
                    m.rate,
                    Rows::All,
                );
                let inv = e.invocations_per_shard_sec * shards / m.rate;
                ecpu += inv * e.cache.ecpu();
                log_bytes += super::cost::lane_metric_log_bytes_per_sec(
                    f,
                    &e,
                    e.invocations_per_shard_sec * shards,
                    shards,
                ) / m.rate
                    + inv * platform_bytes(f, billed(lane));
                (
                    inv * e.units.write_units,
                    inv * e.units.read_units,
                    inv,
                    f.memory_mb,
                )
            }
            None => (0.0, 0.0, 0.0, 0),
        };
        out.push((format!("dynamodb write units per event ({lane})"), wru));
        out.push((format!("dynamodb read units per event ({lane})"), rru));
        lambda.push((lane, inv, memory));
    }
    // The compactor: a minute of the load test's rate, its reads of the cache and its writes.
    let mut compactor_wru = 0.0;
    if stack.cache.is_some() && super::cost::compactor_function(stack).is_some() {
        let cache_lanes = stack
            .kinesis_mappings
            .iter()
            .filter_map(|mapping| stack.functions.get(&mapping.function))
            .filter(|f| super::cost::lane_kind(f).cache_window_secs.is_some())
            .count() as f64;
        let (hashes, pairs) = model.minute_keys(m.shards, m.rate);
        let per_pair = if pairs > 0.0 {
            m.rate * 60.0 / pairs
        } else {
            0.0
        };
        let fields = if hashes > 0.0 {
            pairs * super::cache::expected_fields(&profile.kinds, per_pair) / hashes
        } else {
            0.0
        };
        let c = super::cache::compactor_minute(
            profile,
            &traffic::Zipf::new(profile.campaigns, profile.campaign_skew),
            m.rate,
            shards,
            hashes,
            fields,
            cache_lanes,
            &mut std::collections::HashMap::new(),
        );
        // The compactor's reads (`c.ecpu`) are not compared: the load test's cache figure is the lanes'
        // commands (`lanes_commands`), the query function's polling left out with the compactor's reads.
        compactor_wru = (c.minute_wru + c.hour_wru) / (m.rate * 60.0);
    }
    out.push(("elasticache ECPU per event".to_owned(), ecpu));
    out.push((
        "dynamodb write units per event (compactor)".to_owned(),
        compactor_wru,
    ));
    out.push(("kinesis records per event".to_owned(), 1.0 / epr));
    out.push((
        "kinesis PUT payload units per event".to_owned(),
        packing.put_units_per_record / epr,
    ));
    let collect = stack
        .functions_with_env(tally_contract::env::STREAM_NAME)
        .find(|f| f.has_url);
    let collect_memory = collect.map_or(0, |f| f.memory_mb);
    if let Some(f) = collect {
        log_bytes += platform_bytes(f, billed("collect")) / profile.events_per_request.max(1.0);
    }
    out.push((LOG_UNIT.to_owned(), log_bytes));
    lambda.insert(
        0,
        (
            "collect",
            1.0 / profile.events_per_request.max(1.0),
            collect_memory,
        ),
    );
    for (f, inv, memory) in lambda {
        out.push((format!("lambda invocations per event ({f})"), inv));
        out.push((format!("lambda GB-s per event ({f})"), gb_s(inv, f, memory)));
    }
    out
}

/// Both sides, unit by unit (in the order of the measured units).
pub fn compare(predicted: &[(String, f64)], measured: &Measured) -> anyhow::Result<Vec<Row>> {
    measured
        .units
        .iter()
        .map(|(unit, value)| {
            let p = predicted
                .iter()
                .find(|(name, _)| name == unit)
                .map(|(_, v)| *v)
                .with_context(|| format!("the model has no prediction for `{unit}`"))?;
            Ok(Row {
                unit: unit.clone(),
                predicted: p,
                measured: *value,
            })
        })
        .collect()
}

/// The table `--check` prints.
pub fn table(rows: &[Row], tolerance: f64) -> String {
    let mut s = format!(
        "{:<44} {:>14} {:>14} {:>8}  (tolerance ±{:.0}%)\n",
        "unit",
        "predicted",
        "measured",
        "ratio",
        tolerance * 100.0
    );
    for r in rows {
        s.push_str(&format!(
            "{:<44} {:>14.6} {:>14.6} {:>8.3}  {}\n",
            r.unit,
            r.predicted,
            r.measured,
            r.ratio(),
            if r.within(tolerance) { "ok" } else { "OFF" }
        ));
    }
    s
}

/// The verdict: an error naming every unit more than `tolerance` off.
pub fn verdict(rows: &[Row], tolerance: f64) -> anyhow::Result<()> {
    let off: Vec<String> = rows
        .iter()
        .filter(|r| !r.within(tolerance))
        .map(|r| {
            format!(
                "{}: predicted {:.6}, measured {:.6}, ratio {:.3}",
                r.unit,
                r.predicted,
                r.measured,
                r.ratio()
            )
        })
        .collect();
    if off.is_empty() {
        return Ok(());
    }
    bail!(
        "plan --check: {} of {} units are more than {:.0}% off the model:\n  {}",
        off.len(),
        rows.len(),
        tolerance * 100.0,
        off.join("\n  ")
    )
}

/// The whole check on parsed JSON: the rows, for printing and the verdict.
pub fn check_value(v: &Value, root: &Path, template: &Value) -> anyhow::Result<Vec<Row>> {
    let measured = measured(v)?;
    let profile = profile(v, root)?;
    let stack = stack::read(template).context("while reading the template")?;
    compare(&predicted(&profile, &stack, &measured), &measured)
}

/// Reads `path` and parses it as the load test's JSON.
pub fn read(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("while reading the load test output {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not JSON (expected the output of `cargo xtask loadtest --json`)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A load test's JSON whose measured units are `scale` × the model's, on the plain fixture.
    fn crafted(scale: f64) -> Value {
        crafted_on(&stack::tests::fixture(), scale)
    }

    /// The same on `template`: with a cache, the file also has the elasticache and compactor units.
    fn crafted_on(template: &Value, scale: f64) -> Value {
        let shape = json!({ "name": "t", "file": null, "event_bytes": 300, "events_per_request": 5,
            "campaigns": 50, "ads_per_campaign": 3, "campaign_skew": 1.0,
            "kinds": { "impression": 0.7, "viewable": 0.25, "click": 0.04, "conversion": 0.01 } });
        let mut v = json!({
            "rate_achieved": 400.0,
            "profile": shape,
            "metered": {
                "events": 24000, "shards": 2,
                "lanes": { "realtime": { "cycle_ms": 60.0 }, "deferred": { "cycle_ms": 30000.0 } },
                "lambda": { "by_function": {
                    "collect": { "invocations": 4800, "billed_ms": 9600 },
                    "realtime": { "invocations": 800, "billed_ms": 4000 },
                    "deferred": { "invocations": 4, "billed_ms": 400 } } },
                "kinesis": {}, "dynamodb": { "by_lane": { "realtime": {}, "deferred": {} } },
            }
        });
        let m = measured_skeleton(&v);
        let profile = profile(&v, Path::new(".")).expect("profile");
        let stack = stack::read(template).expect("stack");
        for (unit, value) in predicted(&profile, &stack, &m) {
            let value = value * scale;
            let (path, key): (Vec<&str>, &str) = match unit.as_str() {
                _ if stack.cache.is_none()
                    && (unit.starts_with("elasticache") || unit.contains("(compactor)")) =>
                {
                    continue
                }
                "elasticache ECPU per event" => (vec!["elasticache"], "ecpu_per_event"),
                // The sum over the three functions: all of it on realtime's field.
                LOG_UNIT => (
                    vec!["lambda", "by_function", "realtime"],
                    "log_bytes_per_event",
                ),
                "dynamodb write units per event (compactor)" => (
                    vec!["dynamodb", "by_lane", "compactor"],
                    "write_units_per_event",
                ),
                "kinesis records per event" => (vec!["kinesis"], "records_per_event"),
                "kinesis PUT payload units per event" => (vec!["kinesis"], "put_units_per_event"),
                u if u.starts_with("dynamodb") => {
                    let lane = if u.contains("realtime") {
                        "realtime"
                    } else {
                        "deferred"
                    };
                    let key = if u.contains("write") {
                        "write_units_per_event"
                    } else {
                        "read_units_per_event"
                    };
                    (vec!["dynamodb", "by_lane", lane], key)
                }
                u => {
                    let f = FUNCTIONS
                        .iter()
                        .find(|f| u.contains(&format!("({f})")))
                        .expect("fn");
                    let key = if u.contains("GB-s") {
                        "gb_seconds_per_event"
                    } else {
                        "invocations_per_event"
                    };
                    (vec!["lambda", "by_function", f], key)
                }
            };
            let mut at = &mut v["metered"];
            for p in path {
                at = &mut at[p];
            }
            at[key] = json!(value);
        }
        v
    }

    /// The inputs `measured` reads before the units (for building a crafted file from the model).
    fn measured_skeleton(v: &Value) -> Measured {
        let mut m = Measured {
            rate: 400.0,
            events: 24000.0,
            shards: 2,
            history_secs: None,
            cycles: vec![("realtime".into(), 60.0), ("deferred".into(), 30000.0)],
            units: Vec::new(),
            billed_ms: Vec::new(),
        };
        for f in FUNCTIONS {
            let base = &v["metered"]["lambda"]["by_function"][f];
            let inv = base["invocations"].as_f64().expect("inv");
            m.billed_ms
                .push((f.into(), base["billed_ms"].as_f64().expect("ms") / inv));
        }
        m
    }

    fn run(v: &Value) -> anyhow::Result<Vec<Row>> {
        check_value(v, Path::new("."), &stack::tests::fixture())
    }

    #[test]
    fn a_run_that_matches_the_model_passes() {
        let rows = run(&crafted(1.05)).expect("check");
        assert_eq!(rows.len(), 4 + 2 + 6 + 1);
        verdict(&rows, 0.15).expect("within 15 %");
        let t = table(&rows, 0.15);
        assert!(
            t.contains("dynamodb write units per event (realtime)") && t.contains(" ok"),
            "{t}"
        );
        // The realtime lane writes rows: its prediction is not trivially zero.
        let wru = rows
            .iter()
            .find(|r| r.unit == "dynamodb write units per event (realtime)")
            .expect("row");
        assert!(wru.predicted > 0.5, "{wru:?}");
    }

    #[test]
    fn the_cache_units_are_checked_when_the_file_has_them() {
        let template = stack::tests::cache_fixture();
        let rows =
            check_value(&crafted_on(&template, 1.05), Path::new("."), &template).expect("check");
        assert_eq!(rows.len(), 4 + 2 + 6 + 2 + 1);
        verdict(&rows, 0.15).expect("within 15 %");
        let unit = |name: &str| rows.iter().find(|r| r.unit == name).expect(name).clone();
        // Both lanes claim each event once (one ECPU each), plus the scripts: at 200 events/s per shard a
        // 60 ms cycle makes batches of ~12 events, so each event also brings a few HINCRBY/SADD/EXPIRE.
        let ecpu = unit("elasticache ECPU per event");
        assert!(ecpu.predicted > 2.0 && ecpu.predicted < 10.0, "{ecpu:?}");
        assert!(unit("dynamodb write units per event (compactor)").predicted > 0.0);
        // The cache lanes write no table rows.
        assert_eq!(
            unit("dynamodb write units per event (realtime)").predicted,
            0.0
        );
        // ECPU 30 % over the model: named.
        let mut v = crafted_on(&template, 1.0);
        v["metered"]["elasticache"] = json!({ "ecpu_per_event": ecpu.predicted * 1.3 });
        let rows = check_value(&v, Path::new("."), &template).expect("check");
        let err = format!("{:#}", verdict(&rows, 0.15).expect_err("must fail"));
        assert!(
            err.contains("elasticache ECPU per event: predicted"),
            "{err}"
        );
        // The meter's own shape: caches with their ECPU, summed over the metered events (24,000).
        v["metered"]["elasticache"] =
            json!({ "caches": { "a": { "ecpu": 24000.0 }, "b": { "ecpu": 12000.0 } } });
        assert_eq!(cache_ecpu_per_event(&v, 24000.0).expect("ecpu"), Some(1.5));
        v["metered"]["elasticache"] = json!({ "ecpu": 48000.0 });
        assert_eq!(cache_ecpu_per_event(&v, 24000.0).expect("ecpu"), Some(2.0));
        v["metered"]["elasticache"] = json!({ "caches": {} });
        assert_eq!(cache_ecpu_per_event(&v, 24000.0).expect("ecpu"), None);
        v["metered"]["elasticache"] = json!({ "caches": { "a": { "ecpu": "lots" } } });
        let err = format!("{:#}", cache_ecpu_per_event(&v, 1.0).expect_err("bad"));
        assert!(
            err.contains("metered.elasticache.caches.a.ecpu` is not a number"),
            "{err}"
        );
        v["metered"]["elasticache"] = json!({ "stored": 1 });
        let err = format!("{:#}", cache_ecpu_per_event(&v, 1.0).expect_err("bad"));
        assert!(err.contains("neither `ecpu_per_event`"), "{err}");
        // A file without the section (an older load test) keeps working on the cache template.
        let mut old = crafted_on(&template, 1.0);
        old["metered"]
            .as_object_mut()
            .expect("m")
            .remove("elasticache");
        old["metered"]["dynamodb"]["by_lane"]
            .as_object_mut()
            .expect("lanes")
            .remove("compactor");
        assert_eq!(
            check_value(&old, Path::new("."), &template)
                .expect("check")
                .len(),
            13
        );
    }

    #[test]
    fn log_bytes_are_summed_over_the_functions_that_have_them() {
        let v = json!({ "metered": { "lambda": { "by_function": {
            "collect": { "log_bytes_per_event": 0.5 }, "realtime": { "log_bytes_per_event": 2.0 } } } } });
        assert_eq!(log_bytes_per_event(&v).expect("sum"), Some(2.5));
        let old = json!({ "metered": { "lambda": { "by_function": { "collect": { "invocations": 1 } } } } });
        assert_eq!(log_bytes_per_event(&old).expect("none"), None);
        let bad = json!({ "metered": { "lambda": { "by_function": { "deferred": { "log_bytes_per_event": -1 } } } } });
        let err = format!("{:#}", log_bytes_per_event(&bad).expect_err("negative"));
        assert!(
            err.contains("metered.lambda.by_function.deferred.log_bytes_per_event"),
            "{err}"
        );
    }

    #[test]
    fn a_unit_out_of_tolerance_fails_with_its_name_and_both_values() {
        let mut v = crafted(1.0);
        let got = v["metered"]["kinesis"]["records_per_event"]
            .as_f64()
            .expect("n");
        v["metered"]["kinesis"]["records_per_event"] = json!(got * 1.3);
        let rows = run(&v).expect("check");
        let err = format!("{:#}", verdict(&rows, 0.15).expect_err("must fail"));
        assert!(err.contains("1 of 13 units are more than 15% off"), "{err}");
        assert!(
            err.contains("kinesis records per event: predicted"),
            "{err}"
        );
        assert!(err.contains("ratio 1.300"), "{err}");
        // A wider tolerance accepts it.
        verdict(&rows, 0.35).expect("within 35 %");
    }

    #[test]
    fn the_history_is_the_sending_time_not_the_drain() {
        // The lanes may drain long after the clients stop; rows hold only what was received while sending.
        let mut v = crafted(1.0);
        v["duration_s"] = json!(63.2);
        v["metered"]["window_s"] = json!(287.0);
        assert_eq!(measured(&v).expect("m").history_secs, Some(63.2));
        // Older files without `duration_s` (or a useless one) fall back to the metered window.
        v["duration_s"] = json!(0);
        assert_eq!(measured(&v).expect("m").history_secs, Some(287.0));
        v.as_object_mut().expect("object").remove("duration_s");
        assert_eq!(measured(&v).expect("m").history_secs, Some(287.0));
        // The history changes the prediction: older rows are bigger.
        let young = run(&v).expect("check");
        v["metered"]["window_s"] = json!(5.0);
        let younger = run(&v).expect("check");
        let wru = |rows: &[Row]| rows[0].predicted;
        assert!(
            wru(&young) > wru(&younger),
            "{} vs {}",
            wru(&young),
            wru(&younger)
        );
    }

    #[track_caller]
    fn check_err(edit: impl FnOnce(&mut Value), expect: &str) {
        let mut v = crafted(1.0);
        edit(&mut v);
        let err = format!("{:#}", run(&v).expect_err("must fail"));
        assert!(err.contains(expect), "expected `{expect}` in `{err}`");
    }

    #[test]
    fn malformed_input() {
        check_err(|v| v["metered"]["events"] = json!(0), "metered.events is 0");
        check_err(
            |v| {
                v["metered"]
                    .as_object_mut()
                    .expect("object")
                    .remove("shards");
            },
            "missing field `metered.shards`",
        );
        check_err(
            |v| v["metered"]["kinesis"]["records_per_event"] = json!("many"),
            "field `metered.kinesis.records_per_event` is not a number",
        );
        check_err(|v| *v = json!([1, 2]), "missing field `metered.events`");
        check_err(
            |v| v["profile"]["file"] = json!("no/such/profile.toml"),
            "while reading the load test's profile",
        );
        let dir = std::env::temp_dir().join(format!("tally-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{ not json").expect("write");
        let err = format!("{:#}", read(&bad).expect_err("not json"));
        assert!(err.contains("is not JSON"), "{err}");
        let err = format!(
            "{:#}",
            read(&dir.join("missing.json")).expect_err("missing")
        );
        assert!(err.contains("while reading the load test output"), "{err}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
