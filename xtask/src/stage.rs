//! The stage of a command: `--stage S` when given, else the current git branch.
//! Shared by every command that takes `--stage` (synth, deploy, diff, destroy, dev, plan).

use std::process::Command;

use anyhow::{bail, Context};
use tally_pipeline::Stage;

/// The stage named by `explicit`, or the current git branch's.
pub fn resolve(explicit: Option<&str>) -> anyhow::Result<Stage> {
    match explicit {
        Some(stage) if stage.trim().is_empty() => {
            bail!("--stage is empty; give a stage name such as `production` or a branch name")
        }
        Some(stage) => Ok(Stage::new(stage)),
        None => Ok(Stage::from_branch(&current_branch()?)),
    }
}

/// The current git branch. CI checkouts are often detached; there the branch comes from
/// `GITHUB_HEAD_REF` (pull requests) or `GITHUB_REF_NAME` when set.
pub fn current_branch() -> anyhow::Result<String> {
    let output = Command::new("git")
        .args(["rev-parse", "--abbrev-ref", "HEAD"])
        .output()
        .context("while running `git rev-parse` to find the current branch (is git installed?)")?;
    if !output.status.success() {
        bail!(
            "cannot find the current git branch ({}); pass --stage",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let branch =
        String::from_utf8(output.stdout).context("while reading the branch name from git")?;
    let branch = branch.trim();
    if branch != "HEAD" {
        return Ok(branch.to_owned());
    }
    for var in ["GITHUB_HEAD_REF", "GITHUB_REF_NAME"] {
        if let Ok(value) = std::env::var(var) {
            if !value.trim().is_empty() {
                return Ok(value);
            }
        }
    }
    bail!("the checkout is a detached HEAD, so there is no branch to name the stage after; pass --stage")
}

#[cfg(test)]
mod tests {
    use super::resolve;

    fn check(explicit: &str, expect: Result<&str, &str>) {
        match (resolve(Some(explicit)), expect) {
            (Ok(stage), Ok(stack)) => assert_eq!(stage.stack_name(), stack, "{explicit:?}"),
            (Err(error), Err(message)) => {
                assert!(format!("{error:#}").contains(message), "{error:#}")
            }
            (got, _) => panic!("{explicit:?}: unexpected {got:?}"),
        }
    }

    #[test]
    fn explicit_stages() {
        check("production", Ok("tally-production"));
        check("123-fix", Ok("tally-123-fix"));
        check("", Err("--stage is empty"));
        check("  \t", Err("--stage is empty"));
    }
}
