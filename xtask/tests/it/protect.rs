//! Protected stages through the real binary: a checkout on a branch named `production` (or looking like it)
//! cannot deploy or destroy production, whatever it confirms; `--stage production --yes` is refused with what
//! to type; the preview command line of the workflows (`--pr N`) gets past the guard to its own stack only.
//!
//! AWS is pointed at a closed loopback port (`127.0.0.1:9`) with dummy keys: a refusal must come before any
//! AWS call, and nothing here could reach a real endpoint.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::plan::{scratch, stderr};

/// A git repository whose HEAD is the branch `branch` (one empty commit), or detached when `None`.
fn repo(name: &str, branch: Option<&str>) -> std::path::PathBuf {
    let dir = scratch(name);
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(&dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
    };
    git(&["init", "-q", "-b", branch.unwrap_or("main")]);
    git(&["commit", "-q", "--allow-empty", "-m", "x"]);
    if branch.is_none() {
        git(&["checkout", "-q", "--detach"]);
    }
    dir
}

/// Runs the binary in `dir` with no terminal, AWS on a closed loopback port, and `env` set.
fn xtask_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .env_remove("GITHUB_HEAD_REF")
        .env_remove("GITHUB_REF_NAME")
        .env_remove("AWS_PROFILE")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run the xtask binary")
}

#[track_caller]
fn refused(out: &Output, expect: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "should be refused: {err}");
    assert!(err.contains(expect), "expected `{expect}` in:\n{err}");
    for sign_of_aws in [
        "deploying stack",
        "while deploying",
        "while destroying",
        "DescribeStacks",
    ] {
        assert!(
            !err.contains(sign_of_aws),
            "refused only after touching AWS:\n{err}"
        );
    }
}

#[test]
fn a_branch_named_production_cannot_reach_production() {
    let on_production = repo("branch-production", Some("production"));
    for args in [
        &["deploy", "--no-build", "--yes"][..],
        &["deploy", "--no-build", "--yes-i-mean", "production"],
        &["destroy", "--yes"],
        &["destroy", "--yes-i-mean", "production"],
    ] {
        refused(
            &xtask_in(&on_production, args, &[]),
            "came from the git branch's name, and `production` is protected",
        );
    }
    // A detached CI checkout takes the branch from GITHUB_HEAD_REF: the same wall.
    let detached = repo("detached", None);
    refused(
        &xtask_in(
            &detached,
            &["destroy", "--yes"],
            &[("GITHUB_HEAD_REF", "production")],
        ),
        "came from the git branch's name",
    );
    // Branches that only look like production.
    for branch in ["Production", "pr0duction", "production-", "PRODUCTION_"] {
        let dir = repo(&format!("look-alike-{branch}"), Some(branch));
        refused(
            &xtask_in(&dir, &["deploy", "--no-build", "--yes"], &[]),
            "looks like the protected stage `production`",
        );
    }
    let _ = std::fs::remove_dir_all(&on_production);
    let _ = std::fs::remove_dir_all(&detached);
}

#[test]
fn a_named_protected_stage_needs_a_confirmation_that_names_it() {
    let dir = repo("named", Some("main"));
    for command in ["deploy", "destroy"] {
        let mut args = vec![command, "--stage", "production", "--yes"];
        if command == "deploy" {
            args.push("--no-build");
        }
        refused(
            &xtask_in(&dir, &args, &[]),
            &format!(
                "--yes is not enough for the protected stage `production`: the confirmation must name it. Run \
                 `cargo xtask {command} --stage production --yes-i-mean production`"
            ),
        );
        refused(
            &xtask_in(&dir, &[command, "--stage", "production"], &[]),
            "there is no terminal to type it on",
        );
        refused(
            &xtask_in(
                &dir,
                &[command, "--stage", "production", "--yes-i-mean", "prod"],
                &[],
            ),
            "--yes-i-mean \"prod\" does not name the stage `production`",
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_preview_command_line_reaches_only_its_own_stack() {
    let on_production = repo("preview-on-production", Some("production"));
    for bad in ["production", "0", "7 ", "../production"] {
        refused(
            &xtask_in(&on_production, &["destroy", "--pr", bad, "--yes"], &[]),
            "expected a pull request number",
        );
    }
    refused(
        &xtask_in(
            &on_production,
            &["destroy", "--pr", "7", "--stage", "production", "--yes"],
            &[],
        ),
        "give --stage or --pr, not both",
    );
    // The workflow's command line on a branch named production: past the guard, to stack tally-pr-7 only
    // (then the closed port fails the AWS call).
    let out = xtask_in(
        &on_production,
        &["deploy", "--pr", "7", "--no-build", "--yes"],
        &[],
    );
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("deploying stack tally-pr-7 (stage pr-7, branch pr-7)"),
        "{err}"
    );
    assert!(!err.contains("tally-production"), "{err}");
    let _ = std::fs::remove_dir_all(&on_production);
}
