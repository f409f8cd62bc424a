//! The part of `cargo xtask` both binaries share: the command line (`flags`, on clap), the stage, the stack
//! options, the function build, synth and sign-pixel. The `xtask` binary (`src/main.rs`) runs the local
//! commands; `xtask-aws` (the `xtask-aws/` crate) runs the ones that call AWS (deploy, diff, destroy,
//! previews, redrive, bootstrap), so that `dev`, `synth`, `plan`, `ci` and `loadtest` never compile an AWS SDK
//! client.

pub mod build;
pub mod flags;
pub mod options;
pub mod plan;
pub mod sign_pixel;
pub mod stage;
pub mod synth;

use std::path::{Path, PathBuf};

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

/// The endpoints file of the stage's `cargo xtask dev` cloud (`redrive --local` reads it).
pub fn dev_endpoints_file(stage: &tally_pipeline::Stage) -> PathBuf {
    target_dir()
        .join("tally-dev")
        .join(stage.label())
        .join("endpoints.json")
}
