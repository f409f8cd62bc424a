//! A real `valkey-server` on 127.0.0.1 as a one-node cluster, started and stopped by the test that uses it.
//!
//! The finder, the process and the RESP client are the local cloud's (`tally_localcloud_aws::cache::valkey`): one
//! place for where the binary comes from and how a one-node cluster comes up. This peer adds what only tests
//! want: a throw-away directory, no persistence, panics instead of errors, and clusters of several nodes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tally_localcloud_aws::cache::valkey::{command, find_valkey_server, Launch, Reply, Server};

use crate::free_loopback_addr;

/// A running one-node cluster on 127.0.0.1, killed on drop (its temporary directory removed).
#[derive(Debug)]
pub struct Valkey {
    server: Server,
    dir: PathBuf,
}

static STARTED: AtomicUsize = AtomicUsize::new(0);

impl Valkey {
    /// Starts a server ([`find_valkey_server`]) on a free loopback port with `cluster-enabled yes`, no
    /// persistence, assigns it every slot and waits (at most 20 s) for `cluster_state:ok`.
    ///
    /// Panics with the reason and an install hint when no server can be found or it does not come up: tests
    /// that need it cannot run without it.
    pub fn start() -> Valkey {
        let mut valkey = Valkey::spawn();
        valkey.wait_ok();
        valkey
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
        let seed = servers[0].addr();
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
            self.binary().display(),
            self.addr()
        );
    }

    fn spawn() -> Valkey {
        let dir = std::env::temp_dir().join(format!(
            "tally-valkey-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        let server = Valkey::spawn_in(&dir, free_loopback_addr().port());
        Valkey { server, dir }
    }

    /// A server on `port` with `dir` (emptied first) as its directory, not waited for.
    fn spawn_in(dir: &Path, port: u16) -> Server {
        let _ = std::fs::remove_dir_all(dir);
        let launch = Launch {
            binary: find_valkey_server().unwrap_or_else(|e| panic!("{e}")),
            dir: dir.to_owned(),
            port,
            persistence: None,
            allocator: tally_localcloud_aws::cache::valkey::find_allocator()
                .unwrap_or_else(|e| panic!("{e}")),
        };
        Server::spawn(&launch).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits (at most 20 s) for `cluster_state:ok`.
    fn wait_ok(&mut self) {
        self.server
            .wait_cluster_ok(Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}"));
    }

    /// Stops the server and starts a fresh one, empty, on the same port (as a cache that lost its data looks to
    /// its clients: their connections closed, then a node with nothing in it); waits for `cluster_state:ok`.
    pub fn restart_empty(&mut self) {
        self.server.stop();
        self.server = Valkey::spawn_in(&self.dir, self.addr().port());
        self.wait_ok();
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `redis://127.0.0.1:PORT` (plain TCP; AWS is `rediss://` with TLS).
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    /// The binary that runs.
    pub fn binary(&self) -> &Path {
        self.server.binary()
    }

    /// One command on a fresh connection; the reply (an error reply is `Ok(Reply::Error)`), or why nothing
    /// readable came back.
    pub fn command(&self, args: &[&str]) -> Result<Reply, String> {
        command(self.addr(), args)
    }

    /// `INFO <section>` as `name → value` lines.
    pub fn info(&self, section: &str) -> Vec<(String, String)> {
        match self.command(&["INFO", section]) {
            Ok(Reply::Bulk(Some(text))) => tally_localcloud_aws::cache::valkey::parse_info(&text),
            other => panic!("INFO {section} answered {other:?}"),
        }
    }
}

impl Drop for Valkey {
    fn drop(&mut self) {
        self.server.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
