//! The bootstrap template passes `cfn-lint` with no findings and `checkov` with no failed check; every checkov
//! skip has a one-line reason and is needed (the check fails without it). Both tools are Python programs
//! (`pip install cfn-lint checkov`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use tally_deploy::bootstrap::stack::{synth, BootstrapOptions, GithubRepo};

/// The two shapes: the GitHub OIDC provider created by the stack, or an existing one passed in.
fn variants() -> Vec<(&'static str, Value)> {
    let repo = GithubRepo::parse("acme/tally").expect("repo");
    let created = BootstrapOptions::new(repo.clone());
    let existing = BootstrapOptions {
        oidc_provider_arn: Some(
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com".into(),
        ),
        ..BootstrapOptions::new(repo)
    };
    vec![
        ("created-provider", synth(&created).expect("synth")),
        ("existing-provider", synth(&existing).expect("synth")),
    ]
}

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tally-bootstrap-lint-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the lint directory");
    dir
}

fn tool(name: &str) -> Command {
    match Command::new(name).arg("--version").output() {
        Ok(out) if out.status.success() => Command::new(name),
        _ => panic!("`{name}` is not installed: run `pip install {name}`"),
    }
}

#[test]
fn cfn_lint_finds_nothing() {
    let dir = workdir("cfn");
    let mut files = Vec::new();
    for (file, template) in variants() {
        let path = dir.join(format!("{file}.json"));
        std::fs::write(
            &path,
            serde_json::to_string_pretty(&template).expect("json"),
        )
        .expect("write");
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

fn checkov(dir: &Path) -> (Findings, Findings) {
    let out = tool("checkov")
        .arg("--directory")
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
    let report: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("checkov printed no JSON report ({e}):\n{text}"));
    let reports = match report {
        Value::Array(list) => list,
        one => vec![one],
    };
    let collect = |kind: &str| -> Findings {
        reports
            .iter()
            .flat_map(|r| r["results"][kind].as_array().cloned().unwrap_or_default())
            .map(|c| {
                (
                    c["file_path"]
                        .as_str()
                        .unwrap_or("?")
                        .trim_start_matches('/')
                        .to_owned(),
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
    for (file, mut template) in variants() {
        std::fs::write(dir.join(format!("{file}.json")), template.to_string()).expect("write");
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
        std::fs::write(strip.join(format!("{file}.json")), template.to_string()).expect("write");
    }
    let (failed, skipped) = checkov(&dir);
    assert!(failed.is_empty(), "checkov failed checks:\n{failed:#?}");
    assert!(
        !skipped.is_empty(),
        "checkov saw no skips: did it read the templates?"
    );
    let (failed_without_skips, _) = checkov(&strip);
    assert_eq!(
        failed_without_skips, skipped,
        "skips that are not needed, or failures not skipped"
    );
    for d in [dir, strip] {
        std::fs::remove_dir_all(&d).expect("remove the lint directory");
    }
}
