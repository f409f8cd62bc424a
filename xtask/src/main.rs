//! `cargo xtask` — the commands of tally. This file only parses flags (`flags`, on clap) and dispatches;
//! each command lives in its own module with one `run`.

mod bootstrap;
mod build;
mod ci;
mod deploy;
mod destroy;
mod dev;
mod diff;
#[cfg(test)]
mod docs_check;
mod flags;
mod loadtest;
mod options;
mod plan;
mod previews;
mod protect;
mod redrive;
mod sign_pixel;
mod stage;
mod synth;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The workspace root: the directory above this crate.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set (cargo sets it for `cargo xtask` too when the user
/// did), else `target/` in the workspace. Built binaries are looked up here; state kept for later runs too.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// The stack options of `stage` (`tally.toml`, see [`options`]).
pub fn stack_options(
    stage: &tally_pipeline::Stage,
) -> anyhow::Result<tally_pipeline::PipelineOptions> {
    options::load(&workspace_root(), stage)
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
        flags::Cmd::Deploy(cmd) => cmd.run(),
        flags::Cmd::Diff(cmd) => cmd.run(),
        flags::Cmd::Destroy(cmd) => cmd.run(),
        flags::Cmd::Previews(cmd) => cmd.run(),
        flags::Cmd::Redrive(cmd) => cmd.run(),
        flags::Cmd::SignPixel(cmd) => cmd.run(),
        flags::Cmd::Bootstrap(flags) => {
            bootstrap::Bootstrap::from_flags(flags).and_then(bootstrap::Bootstrap::run)
        }
        flags::Cmd::Completions(cmd) => cmd.run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
