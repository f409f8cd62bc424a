//! `cargo xtask bootstrap` — once per account and region (like `cdk bootstrap`): the `tally-bootstrap` stack
//! with the assets bucket, the CloudFormation execution role and the GitHub OIDC deploy roles
//! (`docs/bootstrap.md`). `--show` prints the roles' policies for review and calls no AWS API.

use std::time::Duration;

use anyhow::Context;
use tally_deploy::bootstrap::show::{render, ShowContext};
use tally_deploy::bootstrap::stack::{BootstrapOptions, GithubRepo};
use tally_deploy::bootstrap::BootstrapRequest;
use tally_deploy::{Clients, DeployOutcome, Output};

use crate::deploy::{block_on, confirm};
use crate::flags::BootstrapFlags;

/// How long to follow CloudFormation before giving up (the operation continues on AWS).
const TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `cargo xtask bootstrap`.
#[derive(Debug)]
pub struct Bootstrap {
    pub options: BootstrapOptions,
    pub show: bool,
    /// `--show`: the account and region the printed ARNs are for (no AWS call finds them out).
    pub account: Option<String>,
    pub region: Option<String>,
    pub yes: bool,
}

impl Bootstrap {
    /// The bootstrap the flags ask for: the repository and the OIDC provider checked as names.
    pub fn from_flags(flags: BootstrapFlags) -> anyhow::Result<Bootstrap> {
        let mut options = BootstrapOptions::new(GithubRepo::parse(&flags.github_repo)?);
        if let Some(environment) = flags.release_environment {
            options.release_environment = environment;
        }
        options.oidc_provider_arn = flags.oidc_provider_arn;
        Ok(Bootstrap {
            options,
            show: flags.show,
            account: flags.account,
            region: flags.region,
            yes: flags.yes,
        })
    }
}

impl Bootstrap {
    pub fn run(self) -> anyhow::Result<()> {
        if self.show {
            print!("{}", self.shown()?);
            return Ok(());
        }
        let req = BootstrapRequest {
            options: self.options.clone(),
            commit: crate::deploy::commit(),
            confirm: confirm(self.yes),
            output: Output::detect(),
            timeout: TIMEOUT,
        };
        eprintln!(
            "bootstrapping stack tally-bootstrap for {} (version {})",
            self.options.github_repo.slug(),
            tally_deploy::bootstrap::stack::BOOTSTRAP_VERSION
        );
        let outcome = block_on(async {
            let clients = Clients::from_env().await?;
            tally_deploy::bootstrap::deploy(&clients, &req).await
        })
        .context("while bootstrapping")?;
        let outputs = match outcome {
            DeployOutcome::NoChanges { outputs } => {
                println!("no changes: tally-bootstrap is up to date");
                outputs
            }
            DeployOutcome::Deployed {
                outputs, elapsed, ..
            } => {
                println!("bootstrapped in {:.1}s", elapsed.as_secs_f32());
                outputs
            }
        };
        for (key, value) in outputs {
            println!("  {key} = {value}");
        }
        Ok(())
    }

    /// What `--show` prints.
    fn shown(&self) -> anyhow::Result<String> {
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "REGION".to_owned());
        let account = self.account.clone().unwrap_or_else(|| "ACCOUNT".to_owned());
        Ok(render(&self.options, &ShowContext::new(&account, &region))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(args: &str) -> anyhow::Result<Bootstrap> {
        let argv = std::iter::once("bootstrap")
            .chain(args.split_whitespace())
            .map(std::ffi::OsString::from);
        match crate::flags::parse(argv).map_err(|e| anyhow::anyhow!("{e}"))? {
            crate::flags::Cmd::Bootstrap(flags) => Bootstrap::from_flags(flags),
            other => anyhow::bail!("parsed as {other:?}"),
        }
    }

    fn fails(args: &str, expect: &str) {
        let error = format!("{:#}", parsed(args).expect_err(args));
        assert!(error.contains(expect), "`{args}`: {error}");
    }

    #[test]
    fn flags() {
        let cmd = parsed("--github-repo acme/tally --yes").expect("valid");
        assert_eq!(cmd.options.github_repo.slug(), "acme/tally");
        assert_eq!(cmd.options.release_environment, "production");
        assert!(cmd.yes && !cmd.show);
        let cmd = parsed("--github-repo acme/tally --show --account 123456789012 --region eu-west-1 --release-environment prod")
            .expect("valid");
        assert!(cmd.show);
        assert_eq!(cmd.options.release_environment, "prod");
        fails("", "--github-repo <OWNER/NAME>");
        fails("--github-repo acme", "has no `/`; give it as owner/name");
        fails(
            "--github-repo acme/ta*lly",
            "is not a GitHub repository name",
        );
        fails(
            "--github-repo acme/tally --show --account 12",
            "an AWS account id is 12 digits",
        );
        fails(
            "--github-repo acme/tally --region eu-west-1",
            "only label `bootstrap --show`",
        );
        fails(
            "--github-repo acme/tally --oidc-provider-arn nope",
            "expected the ARN of the account's GitHub OIDC provider",
        );
        fails(
            "--github-repo acme/tally --stage x",
            "while reading `bootstrap` flags",
        );
    }

    /// `--show` prints the three roles with their policies, resolved for the account and region, and
    /// evaluates the way the policy test does (`infra/deploy/tests/it/bootstrap_policy.rs`).
    #[test]
    fn show_prints_resolved_policies() {
        let cmd =
            parsed("--github-repo acme/tally --show --account 123456789012 --region eu-west-1")
                .expect("valid");
        let text = cmd.shown().expect("renders");
        let shown: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        for role in ["ExecutionRole", "PreviewRole", "ReleaseRole"] {
            assert!(
                shown["Roles"][role]["Policy"]["Statement"].is_array(),
                "{role}"
            );
        }
        assert!(
            !text.contains("Fn::") && !text.contains("\"Ref\""),
            "intrinsics resolved:\n{text}"
        );
        assert!(text.contains("arn:aws:cloudformation:eu-west-1:123456789012:stack/tally-pr-*/*"));
        assert!(text.contains("arn:aws:iam::123456789012:policy/tally-function-boundary-eu-west-1"));
    }
}
