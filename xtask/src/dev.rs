//! `cargo xtask dev` — the whole stack on this machine: builds the functions for the host, synthesizes the
//! stack, and hands over to the `tally-localcloud` binary (crate `infra/localcloud`), which runs that
//! template until Ctrl-C. State lives under `target/tally-dev/<stage>/`; the next start continues from it.
//!
//! With `--demo`, this process stays: it starts the local cloud as a child, waits for its endpoints file and
//! posts the demo traffic (`tally_traffic::demo`) to its collect URL until Ctrl-C.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;
use tally_pipeline::{code_key_parameter, FUNCTIONS};
use tally_traffic::demo::{self, DemoOptions};
use tally_traffic::endpoints::Endpoints;

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
        if let Some(policy) = &self.fsync {
            run.args(["--fsync", policy]);
        }
        // Without a file of the user's, the state directory gets one: `cargo xtask redrive --local` reads it.
        let endpoints = self
            .endpoints_file
            .clone()
            .unwrap_or_else(|| xtask::dev_endpoints_file(&stage));
        run.arg("--endpoints-file").arg(&endpoints);
        if self.demo {
            return with_demo(run, &endpoints);
        }
        exec(run)
    }
}

/// Runs the local cloud of `run` as a child and posts demo traffic to its collect URL, signed with its collect
/// key, until Ctrl-C (or SIGTERM); then stops the child and waits for it.
fn with_demo(run: Command, endpoints_file: &Path) -> anyhow::Result<()> {
    let (mut child, endpoints) = start(run, endpoints_file)?;
    let endpoints = Endpoints::from_json(&endpoints);
    let Some(url) = endpoints.collect_url else {
        stop(&mut child);
        bail!("--demo needs the template's CollectUrl output");
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the demo traffic's runtime")?;
    let signalled = runtime.block_on(async {
        eprintln!(
            "demo traffic: posting synthetic ad events to {url}, signed with the collect key"
        );
        let (stop_demo, stopped) = tokio::sync::watch::channel(false);
        let options = DemoOptions {
            key: endpoints.collect_key,
            ..DemoOptions::default()
        };
        let traffic = tokio::spawn(async move { demo::drive(&url, options, stopped).await });
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("while installing the SIGTERM handler")?;
        let mut exited = tokio::time::interval(Duration::from_millis(500));
        let signalled = loop {
            tokio::select! {
                signal = tokio::signal::ctrl_c() => {
                    signal.context("while waiting for Ctrl-C")?;
                    break true;
                }
                _ = terminate.recv() => break true,
                _ = exited.tick() => {
                    if !matches!(child.try_wait(), Ok(None)) {
                        break false;
                    }
                }
            }
        };
        stop_demo.send_replace(true);
        if let Ok((sent, refused)) = traffic.await {
            eprintln!("demo: {sent} events sent, {refused} batches refused");
        }
        anyhow::Ok(signalled)
    })?;
    let status = if signalled {
        stop(&mut child)
    } else {
        child.wait().ok()
    };
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!("tally-localcloud stopped: {status}"),
        None => bail!("tally-localcloud: its exit status is unknown"),
    }
}

/// How long a local cloud may take to write its endpoints file (its functions and caches start first).
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// Starts the local cloud of `run` (which writes its endpoints to `endpoints_file`) as a child and waits until
/// the file is written: the child and the file's JSON. A file left by an earlier run is removed first; a child
/// that exits, or takes longer than [`START_TIMEOUT`], is an error.
pub fn start(mut run: Command, endpoints_file: &Path) -> anyhow::Result<(Child, Value)> {
    match std::fs::remove_file(endpoints_file) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(error)
                .with_context(|| format!("while removing {}", endpoints_file.display()))
        }
    }
    let mut child = run
        .spawn()
        .context("while starting target/<profile>/tally-localcloud")?;
    let since = Instant::now();
    loop {
        // Written whole once everything is ready: a partial file does not parse yet.
        let written = std::fs::read_to_string(endpoints_file)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok());
        if let Some(endpoints) = written {
            return Ok((child, endpoints));
        }
        if let Ok(Some(status)) = child.try_wait() {
            bail!("tally-localcloud stopped before it was ready ({status}); see its errors above");
        }
        if since.elapsed() > START_TIMEOUT {
            stop(&mut child);
            bail!(
                "tally-localcloud did not write {} within {} s",
                endpoints_file.display(),
                START_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a local cloud started by [`start`] as Ctrl-C does (SIGTERM: it shuts down its functions and caches and
/// writes its meter file) and waits for it; its exit status, `None` when it cannot be had.
pub fn stop(child: &mut Child) -> Option<std::process::ExitStatus> {
    let terminated = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !terminated {
        // Gone already, or no `kill`: make sure it does not outlive this process.
        let _ = child.kill();
    }
    child.wait().ok()
}

/// The packages [`local_cloud`] builds: `tally-localcloud` and the functions that exist in this checkout (a
/// missing one is reported by the local cloud).
fn build_packages(root: &Path) -> Vec<String> {
    let present = FUNCTIONS.iter().filter(|name| {
        root.join("functions")
            .join(name)
            .join("Cargo.toml")
            .is_file()
    });
    std::iter::once("tally-localcloud".to_owned())
        .chain(present.map(|name| format!("tally-{name}")))
        .collect()
}

/// Builds the local cloud and the functions for the host, synthesizes `stage` into `state/template.json`,
/// and returns the `tally-localcloud` command that runs it on `state` (shared with `cargo xtask loadtest`).
pub fn local_cloud(
    stage: &tally_pipeline::Stage,
    state: &Path,
    release: bool,
) -> anyhow::Result<Command> {
    let root = crate::workspace_root();
    // Before the build: a fresh machine learns in seconds, not after minutes of compiling.
    crate::ci::ensure_cache_server()?;
    std::fs::create_dir_all(state)
        .with_context(|| format!("while creating {}", state.display()))?;

    let packages = build_packages(&root);
    let mut build = tally_contract::cargo::command();
    // `--bins`, not `--bin tally-localcloud`: a `--bin` filter applies to every package given.
    build.current_dir(&root).args(["build", "--bins"]);
    for package in &packages {
        build.args(["-p", package]);
    }
    if release {
        build.arg("--release");
    }
    eprintln!(
        "building tally-localcloud and {} functions for the host…",
        packages.len() - 1
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Each package in `packages`' build (normal and build dependencies) with its features, from `cargo tree`.
    fn features(root: &Path, packages: &[String]) -> std::collections::BTreeMap<String, String> {
        let mut tree = tally_contract::cargo::command();
        tree.current_dir(root)
            .args(["tree", "--offline", "--quiet", "--prefix", "none"]);
        tree.args(["-e", "normal,build", "--format", "{p}|{f}"]);
        for package in packages {
            tree.args(["-p", package]);
        }
        let out = tree.output().expect("cargo tree runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| line.split_once('|'))
            .map(|(package, features)| {
                // `name vX.Y.Z (path)` and `(proc-macro)`: the name and version; `(*)` (printed before) ends
                // the line.
                let id = package.split(" (").next().unwrap_or(package);
                let features = features.trim().trim_end_matches("(*)").trim();
                (id.trim().to_owned(), features.to_owned())
            })
            .collect()
    }

    /// A first start builds `cargo xtask` and then `dev`'s packages; every dependency they share is built once
    /// only if both builds enable the same features on it (xtask/Cargo.toml, "Feature unification").
    #[test]
    fn dev_build_shares_features() {
        let root = crate::workspace_root();
        let xtask = features(&root, &["xtask".to_owned()]);
        let dev = features(&root, &build_packages(&root));
        let drift: Vec<String> = xtask
            .iter()
            .filter_map(|(package, features)| {
                let other = dev.get(package)?;
                (other != features).then(|| format!("{package}: xtask [{features}], dev [{other}]"))
            })
            .collect();
        assert!(
            drift.is_empty(),
            "built twice on a first start; enable dev's features in xtask/Cargo.toml:\n{}",
            drift.join("\n")
        );
    }

    /// A stand-in for the local cloud: a shell that runs `script` with the endpoints file as `$1`.
    fn child(script: &str, file: &Path) -> Command {
        let mut run = Command::new("sh");
        run.args(["-c", script, "sh"]).arg(file);
        run
    }

    #[test]
    fn start_waits_for_a_fresh_endpoints_file_and_stop_ends_the_child() {
        let dir = std::env::temp_dir().join(format!("xtask-dev-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("endpoints.json");
        // A file of an earlier run is not taken for this one's.
        std::fs::write(&file, r#"{"collect_url": "stale"}"#).expect("write");
        let script =
            r#"sleep 0.3; printf '{"collect_url": "http://127.0.0.1:9"}' > "$1"; exec sleep 30"#;
        let (mut running, endpoints) = start(child(script, &file), &file).expect("started");
        assert_eq!(endpoints["collect_url"], "http://127.0.0.1:9");
        let since = Instant::now();
        let status = stop(&mut running).expect("a status");
        assert!(!status.success(), "ended by SIGTERM: {status}");
        assert!(since.elapsed() < Duration::from_secs(10));

        // A child that exits before it is ready is an error, not a wait.
        let error = start(child("exit 3", &file), &file).expect_err("exited");
        assert!(
            format!("{error:#}").contains("stopped before it was ready"),
            "{error:#}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
