//! `cargo xtask bootstrap` — once per account and region (like `cdk bootstrap`): the `tally-bootstrap` stack
//! with the assets bucket, the CloudFormation execution role and the GitHub OIDC deploy roles
//! (`docs/bootstrap.md`). `--show` prints the roles' policies for review and calls no AWS API.

use std::ffi::OsString;
use std::time::Duration;

use anyhow::Context;
use lexopt::prelude::*;
use tally_deploy::bootstrap::show::{render, ShowContext};
use tally_deploy::bootstrap::stack::{BootstrapOptions, GithubRepo};
use tally_deploy::bootstrap::BootstrapRequest;
use tally_deploy::{Clients, DeployOutcome, Output};

use crate::deploy::{block_on, confirm};

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

/// The flags after `bootstrap`.
pub fn parse(parser: &mut lexopt::Parser) -> anyhow::Result<Bootstrap> {
    let (mut repo, mut environment, mut provider) = (None, None, None);
    let mut cmd = Bootstrap {
        options: BootstrapOptions::new(GithubRepo {
            owner: String::new(),
            name: String::new(),
        }),
        show: false,
        account: None,
        region: None,
        yes: false,
    };
    while let Some(arg) = parser.next()? {
        match arg {
            Long("github-repo") => repo = Some(parser.value()?.string()?),
            Long("release-environment") => environment = Some(parser.value()?.string()?),
            Long("oidc-provider-arn") => provider = Some(arn(parser.value()?)?),
            Long("show") => cmd.show = true,
            Long("account") => cmd.account = Some(account(parser.value()?)?),
            Long("region") => cmd.region = Some(parser.value()?.string()?),
            Long("yes") | Short('y') => cmd.yes = true,
            other => return Err(other.unexpected()).context("while reading `bootstrap` flags"),
        }
    }
    let repo = repo.context(
        "bootstrap needs --github-repo OWNER/NAME: the repository whose workflows may assume the deploy roles",
    )?;
    cmd.options = BootstrapOptions::new(GithubRepo::parse(&repo)?);
    if let Some(environment) = environment {
        cmd.options.release_environment = environment;
    }
    cmd.options.oidc_provider_arn = provider;
    if !cmd.show && (cmd.account.is_some() || cmd.region.is_some()) {
        anyhow::bail!("--account and --region only label `bootstrap --show`; the bootstrap itself uses the AWS configuration (AWS_REGION, AWS_PROFILE)");
    }
    Ok(cmd)
}

fn account(value: OsString) -> anyhow::Result<String> {
    let text = value.string()?;
    anyhow::ensure!(
        text.len() == 12 && text.chars().all(|c| c.is_ascii_digit()),
        "--account `{text}`: an AWS account id is 12 digits"
    );
    Ok(text)
}

fn arn(value: OsString) -> anyhow::Result<String> {
    let text = value.string()?;
    anyhow::ensure!(
        text.starts_with("arn:") && text.contains(":oidc-provider/token.actions.githubusercontent.com"),
        "--oidc-provider-arn `{text}`: expected the ARN of the account's GitHub OIDC provider, arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com"
    );
    Ok(text)
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
        let mut parser = lexopt::Parser::from_args(args.split_whitespace().map(OsString::from));
        parse(&mut parser)
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
        fails("", "bootstrap needs --github-repo OWNER/NAME");
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
