//! The local ElastiCache Serverless: one real `valkey-server` per `AWS::ElastiCache::ServerlessCache`, run as a
//! one-node cluster on 127.0.0.1 with its data under `<state>/cache/<logical id>/`.
//!
//! What differs from AWS, on purpose (docs/local-cloud.md lists it): plain TCP instead of TLS and no
//! authentication (every function gets [`FUNCTION_ENV`]), one node instead of a fleet, and persistence by an
//! append-only file fsynced before each write is acknowledged, so a `kill -9` of the whole local cloud loses
//! nothing the cache acknowledged. The server dies with the local cloud, even by `kill -9`
//! ([`valkey::Server`]).

pub mod valkey;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::store::Durability;
use crate::Error;
use valkey::{Launch, Reply, Server};

/// What every function the local cloud runs finds in its environment about the cache: no TLS, no IAM
/// authentication (the template says `true` and `iam`, for AWS). The names are the contract's.
pub const FUNCTION_ENV: [(&str, &str); 2] = [
    (tally_contract::env::CACHE_TLS, "false"),
    (tally_contract::env::CACHE_AUTH, "none"),
];

/// Where the caches' data lives under the state directory.
pub const CACHE_DIR: &str = "cache";

/// How long a cache has to come up (loading its append-only file included).
const READY_LIMIT: Duration = Duration::from_secs(30);

/// A CloudFormation logical id: 1 to 255 ASCII letters and digits. It names the cache's directory, so nothing
/// else (no `/`, no `..`) is accepted.
pub fn check_logical_id(id: &str) -> Result<(), String> {
    if (1..=255).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(())
    } else {
        Err(format!(
            "logical id {id:?} is not 1 to 255 ASCII letters and digits (CloudFormation's rule); the local cloud \
             names the cache's directory after it and refuses anything else"
        ))
    }
}

/// A serverless cache name as ElastiCache accepts it: 1 to 40 characters, lowercase letters, digits and
/// hyphens, starting with a letter, no two hyphens in a row, not ending with a hyphen.
pub fn check_cache_name(name: &str) -> Result<(), String> {
    let ok = (1..=40).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.contains("--")
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "ServerlessCacheName {name:?} is not a valid cache name: 1 to 40 lowercase letters, digits and \
             hyphens, starting with a letter, without two hyphens in a row or a hyphen at the end"
        ))
    }
}

/// `<state>/cache/<logical id>` (the id checked by [`check_logical_id`]).
pub fn cache_dir(state_dir: &Path, id: &str) -> Result<PathBuf, Error> {
    check_logical_id(id).map_err(|message| Error::template(id, message))?;
    Ok(state_dir.join(CACHE_DIR).join(id))
}

/// The port for the cache in `dir`: the one it had last time (recorded in `dir/port`) when that is free again
/// within 5 s (a server stopping after a `kill -9` of the previous local cloud lets go of it), else any free
/// port.
pub fn choose_port(dir: &Path) -> Result<u16, Error> {
    let previous = std::fs::read_to_string(dir.join("port"))
        .ok()
        .and_then(|text| text.trim().parse::<u16>().ok())
        .filter(|&port| port != 0);
    if let Some(port) = previous {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| Error::start("a cache", format!("no free port on 127.0.0.1: {e}")))
}

/// One running cache.
#[derive(Debug)]
pub struct CacheServer {
    pub id: String,
    /// The cache's name (its `Ref`).
    pub name: String,
    addr: SocketAddr,
    durability: Durability,
    server: Mutex<Server>,
}

impl CacheServer {
    /// Starts (or restarts, on the data already in `dir`) the cache on `127.0.0.1:port` and waits until it
    /// is a one-node cluster with every slot (`cluster_state:ok`). Blocking.
    /// Its append-only file is synced as `durability` says.
    pub fn start(
        id: &str,
        name: &str,
        dir: &Path,
        port: u16,
        durability: Durability,
    ) -> Result<CacheServer, Error> {
        let what = format!("cache {id}");
        let binary = valkey::find_valkey_server().map_err(|message| {
            Error::start(
                what.clone(),
                format!(
                    "the local cloud runs the template's cache as a real valkey-server: {message}"
                ),
            )
        })?;
        let allocator =
            valkey::find_allocator().map_err(|message| Error::start(what.clone(), message))?;
        let mut server = Server::spawn(&Launch {
            binary,
            dir: dir.to_owned(),
            port,
            persistence: Some(durability),
            allocator,
        })
        .map_err(|message| Error::start(what.clone(), message))?;
        server
            .wait_cluster_ok(READY_LIMIT)
            .map_err(|message| Error::start(what.clone(), message))?;
        std::fs::write(dir.join("port"), format!("{port}\n")).map_err(|source| Error::Io {
            what: format!("the port of cache {id}"),
            path: dir.join("port"),
            source,
        })?;
        Ok(CacheServer {
            id: id.to_owned(),
            name: name.to_owned(),
            addr: server.addr(),
            durability,
            server: Mutex::new(server),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// One command on a fresh connection.
    pub fn command(&self, args: &[&str]) -> Result<Reply, String> {
        valkey::command(self.addr, args)
    }

    /// Stops the server, deletes its data (the append-only files and any snapshot; `nodes.conf`, the port
    /// and the log stay) and starts it again on the same port: a cache that lost its data, as its clients see
    /// one after a failover to an empty node. For tests of the compactor's repair (`docs/counter-store.md`).
    /// Blocking.
    pub fn restart_empty(&self) -> Result<(), Error> {
        let what = format!("cache {}", self.id);
        let mut server = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        server.stop();
        let dir = server.dir().to_owned();
        for data in ["appendonlydir", "appendonly.aof", "dump.rdb"] {
            let path = dir.join(data);
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(Error::Io {
                        what: format!("the data of {what}"),
                        path,
                        source,
                    })
                }
            }
        }
        let mut fresh = Server::spawn(&Launch {
            binary: server.binary().to_owned(),
            dir,
            port: self.addr.port(),
            persistence: Some(self.durability),
            allocator: server.allocator().map(Path::to_owned),
        })
        .map_err(|message| Error::start(what.clone(), message))?;
        fresh
            .wait_cluster_ok(READY_LIMIT)
            .map_err(|message| Error::start(what.clone(), message))?;
        *server = fresh;
        Ok(())
    }

    /// Stops the server (it finishes writing its append-only file) and reaps it. Idempotent.
    pub fn stop(&self) {
        self.server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stop();
    }
}

/// A cache's counters as the server reports them (since it started).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// Per command (`set`, `evalsha`, `cluster|slots`): calls and microseconds, commands run by scripts included.
    pub commands: BTreeMap<String, (u64, u64)>,
    pub net_input_bytes: u64,
    pub net_output_bytes: u64,
    /// `used_memory_dataset`: the data, without the server's own overhead.
    pub dataset_bytes: u64,
}

/// The sections one probe asks for (one command, so a probe's own traffic is one request and one reply).
pub const PROBE: [&str; 4] = ["INFO", "commandstats", "stats", "memory"];

impl Counters {
    /// Reads `INFO commandstats stats memory` text.
    pub fn parse(info: &str) -> Counters {
        let mut counters = Counters::default();
        for (key, value) in valkey::parse_info(info) {
            if let Some(name) = key.strip_prefix("cmdstat_") {
                let field = |field: &str| {
                    value
                        .split(',')
                        .find_map(|kv| kv.strip_prefix(field)?.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                counters
                    .commands
                    .insert(name.to_owned(), (field("calls"), field("usec")));
                continue;
            }
            let number = || value.parse::<u64>().unwrap_or(0);
            match key.as_str() {
                "total_net_input_bytes" => counters.net_input_bytes = number(),
                "total_net_output_bytes" => counters.net_output_bytes = number(),
                "used_memory_dataset" => counters.dataset_bytes = number(),
                _ => {}
            }
        }
        counters
    }

    /// Probes the server at `addr`: its counters, and the bytes the probe sent and received.
    pub fn probe(addr: SocketAddr) -> Result<(Counters, u64, u64), String> {
        match valkey::command_sized(addr, &PROBE)? {
            (Reply::Bulk(Some(text)), sent, received) => {
                Ok((Counters::parse(&text), sent, received))
            }
            (other, _, _) => Err(format!("{} answered {other:?}", PROBE.join(" "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logical_ids_and_names_that_could_escape_are_refused() {
        for id in ["CounterCache", "C1", "a"] {
            assert!(check_logical_id(id).is_ok(), "{id}");
        }
        for id in [
            "",
            "../x",
            "a/b",
            "a.b",
            "..",
            "a b",
            "Caché",
            &"a".repeat(256),
        ] {
            assert!(check_logical_id(id).is_err(), "{id:?}");
        }
        for name in ["tally-dev-cache", "c", "a1-b2"] {
            assert!(check_cache_name(name).is_ok(), "{name}");
        }
        for name in [
            "",
            "../x",
            "A",
            "1a",
            "a--b",
            "a-",
            "a/b",
            "a_b",
            &"a".repeat(41),
        ] {
            assert!(check_cache_name(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn info_text_is_read_into_counters() {
        let text = "# Commandstats\r\ncmdstat_set:calls=3,usec=18,usec_per_call=6.00,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_cluster|info:calls=2,usec=4,usec_per_call=2.00,rejected_calls=0,failed_calls=0\r\n\r\n\
                    # Stats\r\ntotal_net_input_bytes:169\r\ntotal_net_output_bytes:275\r\n\r\n\
                    # Memory\r\nused_memory:1078728\r\nused_memory_dataset:42\r\n";
        let counters = Counters::parse(text);
        assert_eq!(counters.commands["set"], (3, 18));
        assert_eq!(counters.commands["cluster|info"], (2, 4));
        assert_eq!(counters.net_input_bytes, 169);
        assert_eq!(counters.net_output_bytes, 275);
        assert_eq!(counters.dataset_bytes, 42);
    }
}
