//! `cargo xtask deploy` — build, synthesize, and hand both to `tally_deploy::deploy`. Also the helpers the
//! other stack commands (diff, destroy, previews) share: the runtime, the clients, the request for a stage.

use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tally_deploy::{Asset, Clients, Confirm, DeployOutcome, DeployRequest, Output, StackTags};
use tally_pipeline::{code_key_parameter, code_version_parameter, Stage, FUNCTIONS};

use crate::flags::{Arch, Build, Deploy};
use crate::protect;

/// The `tally:project` tag of every stack this checkout deploys; `previews` touches only stacks with it.
pub const PROJECT: &str = "tally";

/// How long to follow CloudFormation before giving up (the operation continues on AWS).
const TIMEOUT: Duration = Duration::from_secs(60 * 60);

impl crate::Run for Deploy {
    fn run(self) -> anyhow::Result<()> {
        // Before anything is built or touches AWS: a protected stage must be named twice.
        let target = protect::target(
            "deploy",
            self.stage.as_deref(),
            self.guard.pr.as_deref(),
            protect::consent(self.yes, self.guard.yes_i_mean),
        )?;
        let stage = target.stage;
        if !self.no_build {
            Build {
                arch: Arch::Arm64,
                cold_start: false,
            }
            .run()
            .context("while building the function zips")?;
        }
        let mut req = request(&stage, target.confirm)?;
        req.protected = target.protected;
        eprintln!(
            "deploying stack {} (stage {}, branch {})",
            req.stack_name, req.tags.stage, req.tags.branch
        );
        let outcome = block_on(async {
            let clients = Clients::from_env().await?;
            tally_deploy::deploy(&clients, &req).await
        })
        .with_context(|| format!("while deploying stack {}", req.stack_name))?;
        match outcome {
            DeployOutcome::NoChanges { outputs } => {
                println!(
                    "no changes: stack {} is up to date; nothing was executed",
                    req.stack_name
                );
                print_outputs(&outputs);
            }
            DeployOutcome::Deployed {
                outputs,
                elapsed,
                uploaded,
                ..
            } => {
                println!(
                    "deployed stack {} in {:.1}s ({uploaded} function zips uploaded)",
                    req.stack_name,
                    elapsed.as_secs_f32()
                );
                print_outputs(&outputs);
            }
        }
        Ok(())
    }
}

fn print_outputs(outputs: &[(String, String)]) {
    for (key, value) in outputs {
        println!("  {key} = {value}");
    }
}

/// `--yes` → go ahead; a terminal → ask; otherwise (CI) refuse what needs a confirmation.
pub fn confirm(yes: bool) -> Confirm {
    use std::io::IsTerminal;
    if yes {
        Confirm::Yes
    } else if std::io::stdin().is_terminal() {
        Confirm::Ask
    } else {
        Confirm::Refuse
    }
}

/// The deploy request for a stage: the synthesized template, the built zips, the tags.
pub fn request(stage: &Stage, confirm: Confirm) -> anyhow::Result<DeployRequest> {
    let template = tally_pipeline::synth_json(stage, &crate::stack_options(stage)?)
        .with_context(|| format!("while synthesizing stack {}", stage.stack_name()))?;
    let lambda_dir = crate::workspace_root().join("target").join("lambda");
    let assets = FUNCTIONS
        .iter()
        .map(|name| Asset {
            name: (*name).to_owned(),
            path: lambda_dir
                .join(format!("tally-{name}"))
                .join("bootstrap.zip"),
            parameter: code_key_parameter(name),
            version_parameter: code_version_parameter(name),
        })
        .collect();
    Ok(DeployRequest {
        stack_name: stage.stack_name(),
        template,
        parameters: Default::default(),
        assets,
        tags: StackTags {
            project: PROJECT.to_owned(),
            stage: stage.label(),
            branch: stage.raw().to_owned(),
            commit: commit(),
            created_at: tally_deploy::tags::now_rfc3339(),
        },
        confirm,
        // `deploy` sets it from `protect::target` too; this covers `diff`'s hints.
        protected: protect::Protected::load(&crate::workspace_root())?
            .names()
            .contains(stage.raw()),
        output: Output::detect(),
        timeout: TIMEOUT,
    })
}

/// The commit being deployed: `GITHUB_SHA` in Actions, else `git rev-parse HEAD`, else `unknown`.
pub fn commit() -> String {
    if let Ok(sha) = std::env::var("GITHUB_SHA") {
        return sha;
    }
    Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "unknown".to_owned())
}
/// Runs one async operation of `tally_deploy` on a fresh runtime.
pub fn block_on<T>(
    fut: impl std::future::Future<Output = Result<T, tally_deploy::Error>>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    Ok(runtime.block_on(fut)?)
}
