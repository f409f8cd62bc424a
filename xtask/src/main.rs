//! `cargo xtask` — the commands of tally. This file only parses flags (`xtask::flags`, on clap) and
//! dispatches: the local commands run here, each in its own module with one `run`; the commands that call AWS
//! run in the `xtask-aws` binary, built on first use (see [`forward_to_aws`]).

mod ci;
mod dev;
#[cfg(test)]
mod docs_check;
mod loadtest;

use std::process::ExitCode;

use anyhow::Context;
// The shared modules, under the names the command modules use (`crate::flags`, `crate::stage`, …).
use xtask::{flags, stack_options, stage, target_dir, workspace_root};

/// mimalloc instead of glibc's malloc, as in the functions: `cargo xtask loadtest` generates and checks its
/// traffic in this process, and glibc's malloc was ~2 % of the machine's CPU in its profile (docs/benchmarks.md,
/// "Allocator"), CPU the pipeline it measures competes for.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A local command: what it runs.
trait Run {
    fn run(self) -> anyhow::Result<()>;
}

fn main() -> ExitCode {
    let cmd = match flags::parse(std::env::args_os().skip(1)) {
        Ok(cmd) => cmd,
        Err(refused) => return refused.report(),
    };
    let result = match cmd {
        flags::Cmd::Help => flags::command().print_help().map_err(anyhow::Error::from),
        flags::Cmd::Synth(cmd) => cmd.run(),
        flags::Cmd::Dev(cmd) => cmd.run(),
        flags::Cmd::Loadtest(cmd) => cmd.run(),
        flags::Cmd::Ci(cmd) => cmd.run(),
        flags::Cmd::Build(cmd) => cmd.run(),
        flags::Cmd::Plan(cmd) => cmd.run(),
        flags::Cmd::SignPixel(cmd) => cmd.run(),
        flags::Cmd::Completions(cmd) => cmd.run(),
        flags::Cmd::Deploy(_)
        | flags::Cmd::Diff(_)
        | flags::Cmd::Destroy(_)
        | flags::Cmd::Previews(_)
        | flags::Cmd::Redrive(_)
        | flags::Cmd::Bootstrap(_) => return forward_to_aws(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The commands that call AWS live in the `xtask-aws` binary (the AWS SDK clients take minutes to compile on
/// a small machine, and `dev`, `synth`, `plan`, `ci` need none of them): `cargo run` builds it when it is
/// missing or stale and runs it with the same arguments; its exit code is this one.
fn forward_to_aws() -> ExitCode {
    match run_aws(std::env::args_os().skip(1)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_aws(args: impl Iterator<Item = std::ffi::OsString>) -> anyhow::Result<ExitCode> {
    let first_build = !target_dir().join("debug").join("xtask-aws").exists();
    if first_build {
        eprintln!(
            "xtask: building the AWS commands (crate xtask-aws, the AWS SDK clients) on their first use; \
             `cargo xtask-aws --help` lists them"
        );
    }
    let mut cargo_run = tally_contract::cargo::command();
    cargo_run.arg("run");
    if !first_build {
        cargo_run.arg("--quiet");
    }
    let status = cargo_run
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .args(["--package", "xtask-aws", "--"])
        .args(args)
        .status()
        .context("while starting `cargo run --package xtask-aws` (is cargo on PATH?)")?;
    Ok(match status.code() {
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
mod tests {
    /// The point of the `xtask-aws` split: building `cargo xtask` compiles no AWS SDK crate (nor the crates
    /// that bring them: `tally-deploy`, `tally-aws`). Asked of cargo itself, so a new dependency that pulls one
    /// in fails here.
    #[test]
    fn xtask_builds_no_aws_sdk() {
        // `cargo tree` of one package's normal dependencies, one crate a line.
        let tree_of = |package: &str| {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = std::process::Command::new(cargo)
                .args([
                    "tree",
                    "--offline",
                    "-p",
                    package,
                    "-e",
                    "normal",
                    "--prefix",
                    "none",
                ])
                .current_dir(crate::workspace_root())
                .output()
                .expect("cargo tree runs");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).expect("utf-8")
        };
        let tree = tree_of("xtask");
        let aws: Vec<&str> = tree
            .lines()
            .filter(|l| {
                l.starts_with("aws-") || l.starts_with("tally-deploy") || l.starts_with("tally-aws")
            })
            .collect();
        assert!(tree.contains("tally-pipeline"), "{tree}");
        assert!(aws.is_empty(), "xtask depends on {aws:?}");
        // And the other binary has them.
        assert!(tree_of("xtask-aws").contains("aws-sdk-cloudformation"));
    }
}
