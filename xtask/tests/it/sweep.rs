//! `cargo xtask plan --sweep` end to end: the daily-curve profile through the real binary at every swept
//! rate, the JSON array, the table, the page rendered by headless Chromium, and bad combinations.

use serde_json::Value;

use crate::plan::{
    check_fails, chromium, count_color, profile, scratch, screenshot, stderr, stdout, xtask,
};

const PARTS: [&str; 5] = ["Kinesis", "fan-out", "Lambda", "DynamoDB", "scaler"];

#[test]
fn sweep_json_table_and_page() {
    chromium();
    let dir = scratch("sweep");
    let html = dir.join("sweep.html");
    let daily = profile("daily-curve-network");
    let out = xtask(&[
        "plan",
        "--stage",
        "plan-test",
        "--profile",
        &daily,
        "--sweep",
        "--json",
        "--html",
        html.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Value = serde_json::from_slice(&out.stdout).expect("one JSON array");
    let rows = rows.as_array().expect("an array of rows");
    let rates: Vec<f64> = rows
        .iter()
        .map(|r| r["mean_events_per_sec"].as_f64().expect("rate"))
        .collect();
    let want = [1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6];
    assert_eq!(rates.len(), want.len(), "{rates:?}");
    for (got, want) in rates.iter().zip(want) {
        assert!(
            (got - want).abs() < 1e-9 * want,
            "log-spaced 1k..1M: {rates:?}"
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let tally = row["tally_per_billion_usd"].as_f64().expect("tally");
        let naive = row["naive_per_billion_usd"].as_f64().expect("naive");
        assert!(tally > 0.0 && naive > 0.0, "row {i}");
        for part in PARTS {
            let first = &row["first_limit"][part];
            assert!(
                first == "ok" || first["raise"].is_string(),
                "row {i} {part}: {first}"
            );
        }
        for l in row["limits"].as_array().expect("limits") {
            let (demand, quota) = (
                l["demand"].as_f64().expect("demand"),
                l["quota"].as_f64().expect("quota"),
            );
            assert_eq!(l["met"].as_bool(), Some(demand > quota), "{l}");
        }
    }
    // Shards grow with the rate; the hottest key's rate is proportional to it.
    let shards = |i: usize| rows[i]["peak_shards"].as_f64().expect("shards");
    assert!(shards(9) > shards(0) * 100.0);
    let key = |i: usize| rows[i]["hot_key_records_per_sec"].as_f64().expect("key");
    assert!((key(9) / key(0) - 1000.0).abs() < 1e-6 * 1000.0);
    // The default scaler ceiling (16) is met somewhere in the sweep, and named as a stack option.
    let scaler: Vec<&Value> = rows
        .iter()
        .map(|r| &r["first_limit"]["scaler"])
        .filter(|v| v.is_object())
        .collect();
    assert!(!scaler.is_empty(), "max_shards 16 is met below 1M events/s");
    assert!(scaler[0]["raise"]
        .as_str()
        .expect("raise")
        .contains("not an AWS quota"));

    // The table.
    let out = xtask(&[
        "plan",
        "--stage",
        "plan-test",
        "--profile",
        &daily,
        "--sweep",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for expect in [
        "tally plan --sweep",
        "$/1e9 tally",
        "1,000,000",
        "where each limit is first met, and what to raise",
        "max_shards",
    ] {
        assert!(text.contains(expect), "`{expect}` missing in\n{text}");
    }

    // The page: self-contained, and the curve is drawn.
    let page = std::fs::read_to_string(&html).expect("page");
    assert!(page.contains("<svg id=\"sweep\""));
    let outside = page.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
    assert!(!outside.contains("http://") && !outside.contains("https://"));
    assert!(!outside.contains("<script") && !outside.contains("<link"));
    let shot = dir.join("sweep.png");
    screenshot(&html, &shot, &dir.join("chromium"), "1200,1000");
    // tally's curve, naive's curve (4 px lines across ~1,000 px), the limit markers (r = 8 px discs).
    let tally = count_color(&shot, [0x31, 0xa3, 0x54]);
    let naive = count_color(&shot, [0x96, 0x96, 0x96]);
    let markers = count_color(&shot, [0xd6, 0x27, 0x28]);
    assert!(tally > 2_500, "tally curve has {tally} pixels");
    assert!(naive > 2_500, "naive curve has {naive} pixels");
    assert!(markers > 300, "limit markers have {markers} pixels");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sweep_bad_input() {
    check_fails(
        &["plan", "--sweep"],
        "give exactly one of --profile FILE and --events-per-sec N",
    );
    check_fails(
        &["plan", "--sweep", "--events-per-sec", "0"],
        "--events-per-sec 0 has none",
    );
    let dir = scratch("sweep-bad");
    let idle = dir.join("idle.toml");
    std::fs::write(
        &idle,
        "name = \"idle\"\nevent_bytes = 300\ncampaigns = 10\n[kinds]\nimpression = 1.0\nviewable = 0.0\nclick = 0.0\nconversion = 0.0\n[traffic]\nperiod = \"day\"\npoints = [{ at = \"00:00\", events_per_sec = 0 }]\n",
    )
    .expect("write");
    check_fails(
        &[
            "plan",
            "--stage",
            "t",
            "--sweep",
            "--profile",
            idle.to_str().expect("utf-8"),
        ],
        "no traffic (mean 0 events/s): there is no shape to scale",
    );
    let html = dir.join("no/such/dir/s.html");
    check_fails(
        &[
            "plan",
            "--stage",
            "t",
            "--sweep",
            "--events-per-sec",
            "100",
            "--html",
            html.to_str().expect("utf-8"),
        ],
        "while writing",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
