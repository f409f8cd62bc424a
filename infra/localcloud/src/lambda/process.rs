//! One function instance = one operating-system process: spawn with the Lambda environment and a memory
//! limit, forward its output to the terminal and the log files, and report its exit.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use super::logs::LogConfig;
use tally_localcloud_aws::meter::Meter;

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

    /// The log of function `name`: its lines filtered by `config` as Lambda filters them, and the lines sent
    /// metered into `meter`.
    pub(crate) fn for_function(
        &self,
        name: &str,
        config: LogConfig,
        memory_mb: u32,
        meter: Arc<Meter>,
    ) -> FunctionLog {
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
            config,
            memory_mb,
            meter,
        }
    }
}

/// The log of one function, shared by its instances.
#[derive(Debug, Clone)]
pub(crate) struct FunctionLog {
    name: String,
    terminal: bool,
    file: Arc<Mutex<Option<std::fs::File>>>,
    config: LogConfig,
    memory_mb: u32,
    meter: Arc<Meter>,
}

impl FunctionLog {
    /// A line of the local cloud's own (an instance that could not start, a timeout): shown and kept in the
    /// file, not metered (Lambda's equivalents are its system lines).
    pub(crate) fn line(&self, line: &str) {
        if self.terminal {
            eprintln!("[{}] {line}", self.name);
        }
        self.to_file(line);
    }

    fn to_file(&self, line: &str) {
        if let Ok(mut file) = self.file.lock() {
            if let Some(file) = file.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    }

    /// A line CloudWatch Logs would receive: shown, kept and metered.
    fn sent(&self, line: &str) {
        self.line(line);
        self.meter
            .lambda_log(&self.name, self.memory_mb, line.len() as u64);
    }

    /// A system line: kept in the file and metered, not shown on the terminal (one per invocation would
    /// drown the functions' own lines).
    fn sent_to_file(&self, line: &str) {
        self.to_file(line);
        self.meter
            .lambda_log(&self.name, self.memory_mb, line.len() as u64);
    }

    /// A line the function wrote: sent unless the log level filters it out.
    fn application(&self, line: &str) {
        if self.config.sends_application_line(line) {
            self.sent(line);
        }
    }

    /// Lambda's line at the start of invocation `request_id`, when the system level sends it.
    pub(crate) fn platform_start(&self, request_id: &str) {
        if self.config.sends_platform_lines() {
            self.sent_to_file(&self.config.start_line(request_id, &now_iso()));
        }
    }

    /// Lambda's lines at the end of invocation `request_id` after `micros`, when the system level sends them.
    pub(crate) fn platform_end(&self, request_id: &str, micros: u64) {
        if self.config.sends_platform_lines() {
            for line in self
                .config
                .end_lines(request_id, &now_iso(), micros, self.memory_mb)
            {
                self.sent_to_file(&line);
            }
        }
    }

    /// What Lambda tells the runtime about its log configuration.
    pub(crate) fn runtime_env(&self) -> Vec<(&'static str, String)> {
        self.config.runtime_env()
    }

    fn forward(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.application(&line);
            }
        });
    }
}

fn now_iso() -> String {
    crate::esm::event::iso_ms(tally_localcloud_aws::aws::now_ms())
}

/// Starts `executable` with exactly `env` (nothing inherited but `PATH`), its data segment limited to
/// `memory_mb`, at nice value `nice` (coreutils' `nice`; 0 leaves the priority as it is).
///
/// The limit is `RLIMIT_DATA`, set by `ulimit -d` in a `/bin/sh` that then `exec`s the binary, so it holds
/// from the first instruction and needs no `unsafe` pre-exec hook (the workspace forbids `unsafe`).
/// `RLIMIT_AS` is not used on purpose: it counts address space that is only reserved (glibc reserves 64 MiB
/// per malloc arena, tokio 2 MiB per worker stack), so a 128 MB function would fail at start although it
/// uses a few MiB. `RLIMIT_DATA` counts private writable memory, which is what Lambda's memory setting bounds.
pub(crate) fn spawn(
    executable: &Path,
    memory_mb: u32,
    nice: u8,
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
        .arg(r#"ulimit -d "$1" && exec nice -n "$2" "$0""#)
        .arg(executable)
        .arg(limit_kb.to_string())
        .arg(nice.to_string())
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
