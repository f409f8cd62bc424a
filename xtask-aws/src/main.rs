//! `cargo xtask-aws` — the `cargo xtask` commands that call AWS: deploy, diff, destroy, previews, redrive,
//! bootstrap. `cargo xtask <one of them>` runs this binary (building it on first use), so both spellings do
//! the same. The command line is xtask's (`xtask::flags`); this file only dispatches, each command in its own
//! module with one `run`.

mod bootstrap;
mod deploy;
mod destroy;
mod diff;
mod previews;
mod protect;
mod redrive;

use std::process::ExitCode;

// The shared modules, under the names the command modules use (`crate::flags`, `crate::stage`, …).
use xtask::{flags, options, stack_options, stage, workspace_root};

/// A command that calls AWS: what it runs.
trait Run {
    fn run(self) -> anyhow::Result<()>;
}

fn main() -> ExitCode {
    let cmd = match flags::parse(std::env::args_os().skip(1)) {
        Ok(cmd) => cmd,
        Err(refused) => return refused.report(),
    };
    let result = match cmd {
        flags::Cmd::Deploy(cmd) => cmd.run(),
        flags::Cmd::Diff(cmd) => cmd.run(),
        flags::Cmd::Destroy(cmd) => cmd.run(),
        flags::Cmd::Previews(cmd) => cmd.run(),
        flags::Cmd::Redrive(cmd) => cmd.run(),
        flags::Cmd::Bootstrap(flags) => {
            bootstrap::Bootstrap::from_flags(flags).and_then(bootstrap::Bootstrap::run)
        }
        flags::Cmd::Help => flags::command().print_help().map_err(anyhow::Error::from),
        local => Err(anyhow::anyhow!(
            "`{0}` calls no AWS API, so it is not in xtask-aws (deploy, diff, destroy, previews, redrive, \
             bootstrap): run `cargo xtask {0}`",
            local.name()
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
