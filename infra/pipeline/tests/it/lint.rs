//! The template passes `cfn-lint` with no findings and `checkov` with no failed check; every checkov
//! skip in the template has a reason and is needed (the check fails without it).
//!
//! Both tools are Python programs: `.ci/run` installs them (`pip install cfn-lint checkov`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tally_pipeline::{synth_json, CriticalLane, EdgeOptions, PipelineOptions, Stage, TableBilling};

/// The templates the linters see: two stages with the defaults, and the other options (an on-demand
/// stream and table, a shared-iterator lane, alerts, retained data, a budget and the edge).
fn variants() -> Vec<(&'static str, String)> {
    let shared = PipelineOptions {
        critical_lane: CriticalLane::SharedIterator,
        table_billing: TableBilling::OnDemand,
        ..PipelineOptions::on_demand()
    };
    let with_email = PipelineOptions {
        alert_email: Some("ops@example.com".into()),
        retain_data: true,
        budget_monthly_usd: Some(500),
        budget_email: Some("finance@example.com".into()),
        edge: Some(EdgeOptions::default()),
        ..PipelineOptions::default()
    };
    [
        ("main", "main", PipelineOptions::default()),
        (
            "feature",
            "feature/ÜBER_new--thing",
            PipelineOptions::default(),
        ),
        ("ondemand-shared", "dependabot/cargo/aws-sdk-1.2.3", shared),
        ("email", &"9".repeat(200), with_email),
    ]
    .into_iter()
    .map(
        |(file, stage, options)| match synth_json(&Stage::new(stage), &options) {
            Ok(json) => (file, json),
            Err(error) => panic!("{stage:?} does not synthesize: {error}"),
        },
    )
    .collect()
}

fn workdir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("pipeline-lint-{name}-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).expect("clean the lint directory");
    }
    std::fs::create_dir_all(&dir).expect("create the lint directory");
    dir
}

fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("--version").output();
    match probe {
        Ok(out) if out.status.success() => Command::new(name),
        _ => panic!("`{name}` is not installed: run `pip install {name}` (or `bash .ci/run`, which installs it)"),
    }
}

#[test]
fn cfn_lint_finds_nothing() {
    let dir = workdir("cfn");
    let mut files = Vec::new();
    for (file, json) in variants() {
        let path = dir.join(format!("{file}.json"));
        std::fs::write(&path, json).expect("write template");
        files.push(path);
    }
    let out = tool("cfn-lint")
        .args(&files)
        .output()
        .expect("run cfn-lint");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "cfn-lint findings:\n{report}"
    );
    std::fs::remove_dir_all(&dir).expect("remove the lint directory");
}

/// `(file, check id, resource)` triples.
type Findings = BTreeSet<(String, String, String)>;

/// `(file, check id, resource)` of checkov's `failed_checks` or `skipped_checks`.
fn checkov(dir: &Path) -> (Findings, Findings) {
    let out = tool("checkov")
        .args(["--directory"])
        .arg(dir)
        .args([
            "--framework",
            "cloudformation",
            "--output",
            "json",
            "--skip-download",
            "--compact",
        ])
        .env("BC_SKIP_MAPPING", "TRUE")
        .output()
        .expect("run checkov");
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "checkov printed no JSON report ({e}):\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let reports = match report {
        Value::Array(list) => list,
        one => vec![one],
    };
    let collect = |kind: &str| -> Findings {
        reports
            .iter()
            .flat_map(|r| r["results"][kind].as_array().cloned().unwrap_or_default())
            .map(|c| {
                let file = c["file_path"]
                    .as_str()
                    .unwrap_or("?")
                    .trim_start_matches('/')
                    .to_owned();
                (
                    file,
                    c["check_id"].as_str().unwrap_or("?").to_owned(),
                    c["resource"].as_str().unwrap_or("?").to_owned(),
                )
            })
            .collect()
    };
    (collect("failed_checks"), collect("skipped_checks"))
}

#[test]
fn checkov_passes_with_only_needed_and_explained_skips() {
    let dir = workdir("checkov");
    let strip = workdir("checkov-stripped");
    for (file, json) in variants() {
        std::fs::write(dir.join(format!("{file}.json")), &json).expect("write template");
        let mut template: Value = serde_json::from_str(&json).expect("template is JSON");
        for resource in template["Resources"]
            .as_object_mut()
            .expect("resources")
            .values_mut()
        {
            if let Some(skips) = resource
                .get("Metadata")
                .and_then(|m| m["checkov"]["skip"].as_array())
            {
                for skip in skips {
                    let comment = skip["comment"].as_str().unwrap_or("");
                    assert!(
                        !comment.trim().is_empty() && !comment.contains('\n'),
                        "skip without a one-line reason: {skip}"
                    );
                }
            }
            if let Some(object) = resource.as_object_mut() {
                object.remove("Metadata");
            }
        }
        std::fs::write(strip.join(format!("{file}.json")), template.to_string())
            .expect("write stripped template");
    }

    let (failed, skipped) = checkov(&dir);
    assert!(
        failed.is_empty(),
        "checkov failed checks (fix them or skip them with a reason):\n{failed:#?}"
    );
    assert!(
        !skipped.is_empty(),
        "checkov saw no skips: did it read the templates?"
    );

    // Without the metadata, exactly the skipped checks fail: no skip hides a check that passes.
    let (failed_without_skips, _) = checkov(&strip);
    assert_eq!(
        failed_without_skips, skipped,
        "skips that are not needed, or failures not skipped"
    );
    for d in [dir, strip] {
        std::fs::remove_dir_all(&d).expect("remove the lint directory");
    }
}
