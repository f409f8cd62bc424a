//! `cargo xtask plan` end to end: the shipped profiles through the real binary (template synthesized by
//! tally-pipeline), every output format, the HTML rendered by headless Chromium, and hostile input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const PROFILES: [&str; 3] = [
    "steady-small-publisher",
    "daily-curve-network",
    "launch-spike",
];

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("run the xtask binary")
}

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A fresh scratch directory under the system temp dir.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-plan-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

pub(crate) fn profile(name: &str) -> String {
    format!("xtask/profiles/{name}.toml")
}

#[test]
fn profiles_give_a_table() {
    for name in PROFILES {
        let out = xtask(&["plan", "--stage", "plan-test", "--profile", &profile(name)]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let text = stdout(&out);
        for expect in [
            "monthly cost per service",
            "per 1e9 events",
            "Kinesis",
            "DynamoDB",
            "Lambda",
            "CloudWatch",
            "scaler simulation",
            "freshness on AWS",
            "lane realtime (enhanced fan-out, window 0 s)",
            "recommendation",
        ] {
            assert!(
                text.contains(expect),
                "{name}: `{expect}` missing in\n{text}"
            );
        }
    }
}

#[test]
fn profiles_give_json() {
    for name in PROFILES {
        let out = xtask(&[
            "plan",
            "--stage",
            "plan-test",
            "--profile",
            &profile(name),
            "--json",
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let shards = v["scaler"]["shards_per_minute"].as_array().expect("shards");
        assert_eq!(shards.len(), 1440, "{name}: a day, minute by minute");
        let (lo, hi) = (
            v["scaler"]["bounds"][0].as_u64().expect("lo"),
            v["scaler"]["bounds"][1].as_u64().expect("hi"),
        );
        for pair in shards.windows(2) {
            let (a, b) = (pair[0].as_u64().expect("a"), pair[1].as_u64().expect("b"));
            assert!(
                b <= a * 2 && b >= a.div_ceil(2),
                "{name}: {a} -> {b} breaks ×2/÷2"
            );
            assert!((lo..=hi).contains(&b), "{name}: {b} outside {lo}..{hi}");
        }
        assert!(
            v["scaler"]["calls_per_period"].as_u64().expect("calls") <= 10,
            "{name}: at most 10 calls a day"
        );
        for design in ["tally", "tally_other_mode", "naive"] {
            let bill = &v[design];
            let total = bill["total_usd"].as_f64().expect("total");
            let lines: f64 = bill["lines"]
                .as_array()
                .expect("lines")
                .iter()
                .map(|l| l["usd"].as_f64().expect("usd"))
                .sum();
            assert!(
                (total - lines).abs() < 1e-6 * total.max(1.0),
                "{name} {design}: {total} != {lines}"
            );
            let per_billion = bill["per_billion_events_usd"]
                .as_f64()
                .expect("per billion");
            let events = bill["events_per_month"].as_f64().expect("events");
            assert!(
                (per_billion - total / events * 1e9).abs() < 1e-6 * per_billion,
                "{name} {design}"
            );
        }
        // The metrics table: provisioned by default, its lines are the capacity auto scaling holds (priced as
        // `provisioned_auto_scaling_usd`), on-demand priced beside it; the naive design pays request units.
        let table = &v["dynamodb"];
        assert_eq!(table["billing"], "provisioned", "{name}");
        let service = |d: &str, unit: &str| -> f64 {
            v[d]["lines"]
                .as_array()
                .expect("lines")
                .iter()
                .filter(|l| l["service"] == "DynamoDB" && (unit.is_empty() || l["unit"] == unit))
                .map(|l| l["usd"].as_f64().expect("usd"))
                .sum()
        };
        let provisioned = table["provisioned_auto_scaling_usd"].as_f64().expect("usd");
        assert!(
            (service("tally", "") - provisioned).abs() < 1e-6 * provisioned.max(1.0),
            "{name}: {} vs {provisioned}",
            service("tally", "")
        );
        assert!(
            service("tally", "WCU-h") > 0.0 && service("tally", "WRU") == 0.0,
            "{name}"
        );
        assert!(
            table["on_demand_usd"].as_f64().expect("usd") > 0.0,
            "{name}"
        );
        assert!(service("naive", "WRU") > 0.0, "{name}");
        // Packing: `pack_request` writes one record per request, so tally writes at most one record per event.
        let units = |d: &str| {
            let lines = v[d]["lines"].as_array().expect("lines");
            let line = lines
                .iter()
                .find(|l| l["item"] == "PUT payload units (25 KB)")
                .expect("PUT line");
            line["quantity"].as_f64().expect("quantity")
        };
        assert!(
            units("tally") <= units("naive") * 1.000_001,
            "{name}: {} vs {}",
            units("tally"),
            units("naive")
        );
        let lanes = v["latency"].as_array().expect("latency");
        assert_eq!(
            lanes[0]["lane"], "realtime",
            "{name}: the fastest lane is realtime"
        );
        // The freshness budget waits half the cycle the cost model computed for the lane.
        let cycle = v["lanes_at_peak"]
            .as_array()
            .expect("lanes_at_peak")
            .iter()
            .find(|l| l["lane"] == "realtime")
            .and_then(|l| l["cycle_ms"].as_f64())
            .expect("realtime cycle");
        let wait = lanes[0]["components"]
            .as_array()
            .expect("components")
            .iter()
            .find(|c| c["name"].as_str().is_some_and(|n| n.starts_with("wait")))
            .and_then(|c| c["p50_ms"].as_f64())
            .expect("wait");
        assert!(
            (wait - cycle / 2.0).abs() < 1e-9,
            "{name}: {wait} vs {cycle}"
        );
        assert!(!v["recommendations"].as_array().expect("recs").is_empty());
    }
}

/// Pixels of `png` within a small distance of `rgb`.
pub(crate) fn count_color(png_path: &Path, rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::fs::File::open(png_path).expect("screenshot"));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    let channels = info.color_type.samples();
    assert!(
        channels >= 3,
        "expected an RGB(A) screenshot, got {:?}",
        info.color_type
    );
    buf[..info.buffer_size()]
        .chunks_exact(channels)
        .filter(|px| px.iter().zip(rgb).all(|(&a, b)| a.abs_diff(b) <= 6))
        .count()
}

/// Debian's Chromium; the test fails with the install command when it is missing.
pub(crate) fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("headless Chromium is needed for this test: apt-get install -y chromium (.ci/run does)")
        })
}

/// Screenshots `html` into `shot` with headless Chromium (`window` = `"W,H"`, a fresh profile in
/// `profile_dir`, nothing fetched), and fails the test when Chromium fails.
#[track_caller]
pub(crate) fn screenshot(html: &Path, shot: &Path, profile_dir: &Path, window: &str) {
    let status = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile_dir.display()),
            &format!("--screenshot={}", shot.display()),
            &format!("--window-size={window}"),
            &format!("file://{}", html.display()),
        ])
        .output()
        .expect("run chromium");
    assert!(
        status.status.success() && shot.exists(),
        "{}: chromium failed: {}",
        html.display(),
        stderr(&status)
    );
}

#[test]
fn html_renders_in_headless_chromium() {
    chromium();
    let dir = scratch("html");
    for name in PROFILES {
        let html = dir.join(format!("{name}.html"));
        let out = xtask(&[
            "plan",
            "--stage",
            "plan-test",
            "--profile",
            &profile(name),
            "--html",
            html.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let page = std::fs::read_to_string(&html).expect("page");
        assert!(
            page.contains("<svg id=\"traffic\"") && page.contains("<svg id=\"costs\""),
            "{name}"
        );
        // Self-contained: nothing fetched from anywhere (the SVG namespace is an identifier, not a fetch).
        let outside = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !outside.contains("http://") && !outside.contains("https://"),
            "{name}: the page links out"
        );
        assert!(
            !outside.contains("<script src") && !outside.contains("<link"),
            "{name}"
        );

        let shot = dir.join(format!("{name}.png"));
        screenshot(
            &html,
            &shot,
            &dir.join(format!("chromium-{name}")),
            "1200,1600",
        );
        // The charts' own colours: traffic area fill, the shard line, tally's cost bars, naive's bars.
        let traffic = count_color(&shot, [0x9e, 0xca, 0xe1]);
        let shards = count_color(&shot, [0xe6, 0x55, 0x0d]);
        let tally = count_color(&shot, [0x31, 0xa3, 0x54]);
        let naive = count_color(&shot, [0x96, 0x96, 0x96]);
        assert!(
            traffic > 20_000,
            "{name}: traffic area has {traffic} pixels"
        );
        assert!(shards > 1_500, "{name}: shard line has {shards} pixels");
        // tally's bars are drawn to naive's scale: at the daily curve they are an eleventh of naive's height
        // (975 pixels against 12,805), so they are asked to be there, not big.
        assert!(
            tally > 300 && naive > 1_000,
            "{name}: cost bars have {tally} / {naive} pixels"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[track_caller]
pub(crate) fn check_fails(args: &[&str], expect: &str) {
    let out = xtask(args);
    assert!(!out.status.success(), "{args:?} must fail");
    let err = stderr(&out);
    assert!(
        err.contains(expect),
        "{args:?}: expected `{expect}` in\n{err}"
    );
}

#[test]
fn hostile_input() {
    let dir = scratch("hostile");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_owned()
    };
    check_fails(
        &["plan"],
        "give exactly one of --profile FILE and --events-per-sec N",
    );
    check_fails(
        &["plan", "--events-per-sec", "5", "--profile", "x.toml"],
        "exactly one of",
    );
    check_fails(
        &["plan", "--events-per-sec", "lots"],
        "--events-per-sec `lots`: expected a number",
    );
    check_fails(&["plan", "--events-per-sec", "-5"], "--events-per-sec `-5`");
    check_fails(
        &["plan", "--events-per-sec", "NaN"],
        "--events-per-sec `NaN`",
    );
    check_fails(
        &["plan", "--events-per-sec", "5", "--event-bytes", "big"],
        "--event-bytes `big`",
    );
    check_fails(
        &[
            "plan",
            "--stage",
            "t",
            "--events-per-sec",
            "5",
            "--event-bytes",
            "2",
        ],
        "event_bytes: 2 is outside",
    );
    check_fails(
        &[
            "plan",
            "--stage",
            "t",
            "--events-per-sec",
            "5",
            "--event-bytes",
            "1048576",
        ],
        "event_bytes: 1048576 is outside 16..=65536",
    );
    check_fails(
        &["plan", "--stage", "t", "--events-per-sec", "5", "--bogus"],
        "while reading `plan` flags",
    );
    check_fails(
        &["plan", "--stage", "t", "--profile", "no/such/profile.toml"],
        "while reading the profile no/such/profile.toml",
    );
    let bad = write("bad.toml", "name = \"x\"\nevent_bytes = \"large\"\n");
    check_fails(
        &["plan", "--stage", "t", "--profile", &bad],
        "not a valid profile",
    );
    let prices = write("prices.toml", "region = \"us-east-1\"\n");
    check_fails(
        &[
            "plan",
            "--stage",
            "t",
            "--events-per-sec",
            "5",
            "--prices",
            &prices,
        ],
        "missing field",
    );
    let html = dir.join("no/such/dir/out.html");
    check_fails(
        &[
            "plan",
            "--stage",
            "t",
            "--events-per-sec",
            "5",
            "--html",
            html.to_str().expect("utf-8"),
        ],
        "while writing",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flat_rate_and_price_override() {
    let out = xtask(&[
        "plan",
        "--stage",
        "plan-test",
        "--events-per-sec",
        "5000",
        "--event-bytes",
        "200",
        "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["profile"]["mean_events_per_sec"], 5000.0);
    assert_eq!(v["profile"]["event_bytes"], 200);
    // No traffic: a bill with fixed costs only, and no cost per event to speak of.
    let idle = xtask(&["plan", "--stage", "plan-test", "--events-per-sec", "0"]);
    assert!(idle.status.success(), "{}", stderr(&idle));
    assert!(stdout(&idle).contains("n/a"), "{}", stdout(&idle));
    // Doubling every Kinesis price doubles the Kinesis bill.
    let dir = scratch("prices");
    let shipped =
        std::fs::read_to_string(root().join("xtask/prices/us-east-1.toml")).expect("prices");
    let doubled = shipped
        .replace("shard_hour = 0.015 ", "shard_hour = 0.030 ")
        .replace(
            "put_payload_units_per_million = 0.014",
            "put_payload_units_per_million = 0.028",
        )
        .replace(
            "efo_consumer_shard_hour = 0.015",
            "efo_consumer_shard_hour = 0.030",
        )
        .replace("efo_gb = 0.013", "efo_gb = 0.026");
    let path = dir.join("double.toml");
    std::fs::write(&path, doubled).expect("write");
    let out2 = xtask(&[
        "plan",
        "--stage",
        "plan-test",
        "--events-per-sec",
        "5000",
        "--event-bytes",
        "200",
        "--json",
        "--prices",
        path.to_str().expect("utf-8"),
    ]);
    assert!(out2.status.success(), "{}", stderr(&out2));
    let v2: Value = serde_json::from_slice(&out2.stdout).expect("json");
    let k = |v: &Value| {
        v["tally"]["by_service"]["Kinesis"]
            .as_f64()
            .expect("kinesis")
    };
    assert!(
        (k(&v2) - 2.0 * k(&v)).abs() < 1e-6 * k(&v),
        "{} vs {}",
        k(&v2),
        k(&v)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
