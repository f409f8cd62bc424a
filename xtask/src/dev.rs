//! `cargo xtask dev` — the whole stack on this machine: builds the functions for the host, synthesizes the
//! stack, and hands over to the `tally-localcloud` binary (crate `infra/localcloud`), which runs that
//! template until Ctrl-C. State lives under `target/tally-dev/<stage>/`; the next start continues from it.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use tally_pipeline::{code_key_parameter, FUNCTIONS};

use crate::flags::Dev;
use crate::stage;

impl crate::Run for Dev {
    fn run(self) -> anyhow::Result<()> {
        let stage = stage::resolve(self.stage.as_deref())?;
        let state = crate::target_dir().join("tally-dev").join(stage.label());
        let mut run = local_cloud(&stage, &state, self.release)?;
        if let Some(port) = self.port {
            run.args([
                "--port",
                &port.to_string(),
                "--url-port-base",
                &(port + 1).to_string(),
            ]);
        }
        // Without a file of the user's, the state directory gets one: `cargo xtask redrive --local` reads it.
        let endpoints = self
            .endpoints_file
            .clone()
            .unwrap_or_else(|| xtask::dev_endpoints_file(&stage));
        run.arg("--endpoints-file").arg(endpoints);
        if self.demo {
            run.arg("--demo");
        }
        exec(run)
    }
}

/// Builds the local cloud and the functions for the host, synthesizes `stage` into `state/template.json`,
/// and returns the `tally-localcloud` command that runs it on `state` (shared with `cargo xtask loadtest`).
pub fn local_cloud(
    stage: &tally_pipeline::Stage,
    state: &Path,
    release: bool,
) -> anyhow::Result<Command> {
    let root = crate::workspace_root();
    std::fs::create_dir_all(state)
        .with_context(|| format!("while creating {}", state.display()))?;

    // The functions that exist in this checkout; a missing one is reported by the local cloud.
    let present: Vec<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|name| {
            root.join("functions")
                .join(name)
                .join("Cargo.toml")
                .is_file()
        })
        .collect();
    let mut build = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    // `--bins`, not `--bin tally-localcloud`: a `--bin` filter applies to every package given.
    build
        .current_dir(&root)
        .args(["build", "--bins", "-p", "tally-localcloud"]);
    for name in &present {
        build.args(["-p", &format!("tally-{name}")]);
    }
    if release {
        build.arg("--release");
    }
    eprintln!(
        "building tally-localcloud and {} functions for the host…",
        present.len()
    );
    let status = build.status().context("while running cargo build")?;
    if !status.success() {
        bail!("cargo build failed ({status}); fix the build and run the command again");
    }

    let template = tally_pipeline::synth_json(stage, &crate::stack_options(stage)?)
        .with_context(|| format!("while synthesizing stack {}", stage.stack_name()))?;
    let template_path = state.join("template.json");
    std::fs::write(&template_path, template)
        .with_context(|| format!("while writing {}", template_path.display()))?;

    let bin = crate::target_dir().join(if release { "release" } else { "debug" });
    let mut run = Command::new(bin.join("tally-localcloud"));
    run.arg("--template").arg(&template_path);
    run.arg("--state").arg(state);
    run.args(["--stack", &stage.stack_name(), "--skip-unbuilt"]);
    for name in FUNCTIONS {
        run.arg("--param").arg(format!(
            "{}={}",
            code_key_parameter(name),
            bin.join(format!("tally-{name}")).display()
        ));
    }
    run.args(["--param", "AssetsBucket=local-assets"]);
    // The query API and dashboard need no bearer token locally (the template never sets this).
    run.args([
        "--env",
        &format!("{}:TALLY_QUERY_AUTH=off", code_key_parameter("query")),
    ]);
    Ok(run)
}
/// Replaces this process with `command`, so Ctrl-C reaches the local cloud directly and it stops cleanly.
pub fn exec(mut command: Command) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    Err(error).context("while starting target/<profile>/tally-localcloud")
}
