//! Test peers for tally's tests.
//!
//! [`Moto`] starts `moto_server` (PyPI `moto[server]`) on 127.0.0.1 on a free port and stops it when dropped,
//! so every test owns its server and nothing outlives the test. [`Valkey`] does the same for a real
//! `valkey-server` run as a one-node cluster (see [`find_valkey_server`] for where the binary comes from), and
//! [`LocalAwsEndpoint`] for the local cloud's AWS endpoint in memory (quicker than moto on big tables).
//! [`cdp::Browser`] drives a headless Chromium through the DevTools protocol. Nothing here talks to a real AWS
//! endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod cdp;
mod valkey;
pub use tally_localcloud_aws::cache::valkey::{
    command as valkey_command, find_valkey_server, Reply, SERVER_ENV,
};
pub use valkey::Valkey;

/// A running `moto_server` on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    addr: SocketAddr,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits until it answers.
    ///
    /// Panics with an instruction when `moto_server` is not installed: tests that need it cannot run without it,
    /// and `.ci/run` installs it.
    pub fn start() -> Moto {
        let addr = free_loopback_addr();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start moto_server ({error}); install it with `pip install 'moto[server]'`")
            });
        let mut moto = Moto { child, addr };
        moto.wait_ready(Duration::from_secs(30));
        moto
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The environment an AWS SDK client needs to talk to this server and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
        ]
    }

    /// Resets all of moto's state (its `/moto-api/reset` endpoint).
    pub fn reset(&self) {
        let status = http_status(self.addr, "POST", "/moto-api/reset");
        assert_eq!(status, Some(200), "moto reset failed");
    }

    fn wait_ready(&mut self, limit: Duration) {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited at start with {status}");
            }
            if http_status(self.addr, "GET", "/moto-api/").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "moto_server did not answer on {} within {limit:?}",
            self.addr
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local cloud's AWS endpoint (`tally_localcloud_aws::aws`: DynamoDB, Kinesis, SQS, S3, Secrets Manager) with
/// its state in memory, served on 127.0.0.1 from a thread and runtime of its own, stopped when dropped. For
/// tests whose tables are too big for moto's pace (the query function's 10,000-campaign test seeds in 14–20 s
/// here, 199 s in moto); the same SDK clients talk to it.
#[derive(Debug)]
pub struct LocalAwsEndpoint {
    addr: SocketAddr,
    aws: std::sync::Arc<tally_localcloud_aws::aws::LocalAws>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalAwsEndpoint {
    /// Binds a free loopback port and serves the endpoint on it.
    pub fn start() -> LocalAwsEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let aws = tally_localcloud_aws::aws::LocalAws::ephemeral();
        let served = aws.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("a runtime for the local AWS endpoint");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                tokio::select! {
                    _ = tally_localcloud_aws::aws::serve(listener, served) => {}
                    _ = stopped => {}
                }
            });
        });
        LocalAwsEndpoint {
            addr,
            aws,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the endpoint meters (capacity units by table and caller, …), as AWS would bill it.
    pub fn meter(&self) -> &tally_localcloud_aws::meter::Meter {
        &self.aws.meter
    }
}

impl Drop for LocalAwsEndpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A loopback address with a port that was free a moment ago.
pub fn free_loopback_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// One plain HTTP/1.1 request; the status code, or `None` when nothing answered.
fn http_status(addr: SocketAddr, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moto_starts_answers_and_stops() {
        let moto = Moto::start();
        let addr = moto.addr;
        moto.reset();
        drop(moto);
        assert_eq!(
            http_status(addr, "GET", "/moto-api/"),
            None,
            "server still answering after drop"
        );
    }
}
