//! One function instance = one operating-system process: spawn with the Lambda environment and a memory
//! limit, forward its output to the terminal and the log files, and report its exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// Where the output of the function instances goes: the terminal (each line prefixed with the function name)
/// and one append-only file per function under `dir`.
#[derive(Debug, Clone)]
pub struct LogSink {
    dir: Option<PathBuf>,
    terminal: bool,
}

impl LogSink {
    /// Lines go to `dir/<function>.log` and, when `terminal`, to standard error.
    pub fn new(dir: Option<PathBuf>, terminal: bool) -> LogSink {
        LogSink { dir, terminal }
    }

    /// Nowhere: for tests that do not look at logs.
    pub fn discard() -> LogSink {
        LogSink {
            dir: None,
            terminal: false,
        }
    }

    pub(crate) fn for_function(&self, name: &str) -> FunctionLog {
        let file = self.dir.as_ref().and_then(|dir| {
            std::fs::create_dir_all(dir).ok()?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(format!("{name}.log")))
                .ok()
        });
        FunctionLog {
            name: name.to_owned(),
            terminal: self.terminal,
            file: Arc::new(Mutex::new(file)),
        }
    }
}

/// The log of one function, shared by its instances.
#[derive(Debug, Clone)]
pub(crate) struct FunctionLog {
    name: String,
    terminal: bool,
    file: Arc<Mutex<Option<std::fs::File>>>,
}

impl FunctionLog {
    pub(crate) fn line(&self, line: &str) {
        if self.terminal {
            eprintln!("[{}] {line}", self.name);
        }
        if let Ok(mut file) = self.file.lock() {
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    }

    fn forward(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.line(&line);
            }
        });
    }
}

/// Starts `executable` with exactly `env` (nothing inherited but `PATH`), its data segment limited to
/// `memory_mb`.
///
/// The limit is `RLIMIT_DATA`, set by `ulimit -d` in a `/bin/sh` that then `exec`s the binary, so it holds
/// from the first instruction and needs no `unsafe` pre-exec hook (the workspace forbids `unsafe`).
/// `RLIMIT_AS` is not used on purpose: it counts address space that is only reserved (glibc reserves 64 MiB
/// per malloc arena, tokio 2 MiB per worker stack), so a 128 MB function would fail at start although it
/// uses a few MiB. `RLIMIT_DATA` counts private writable memory, which is what Lambda's memory setting bounds.
pub(crate) fn spawn(
    executable: &Path,
    memory_mb: u32,
    env: &BTreeMap<String, String>,
    log: &FunctionLog,
) -> std::io::Result<Child> {
    // Checked here: behind `sh -c exec` a missing binary would only show as exit status 127.
    if !executable.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such executable file; build the function first",
        ));
    }
    let limit_kb = u64::from(memory_mb) * 1024;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"ulimit -d "$1" && exec "$0""#)
        .arg(executable)
        .arg(limit_kb.to_string())
        .env_clear()
        .env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        )
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let Some(stdout) = child.stdout.take() {
        log.forward(stdout);
    }
    if let Some(stderr) = child.stderr.take() {
        log.forward(stderr);
    }
    Ok(child)
}

/// How an exit status reads in an invocation error.
pub(crate) fn describe_exit(status: std::io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit status {code}"),
                (None, Some(signal)) => format!("killed by signal {signal}"),
                _ => status.to_string(),
            }
        }
        Err(error) => format!("cannot wait for the process: {error}"),
    }
}
