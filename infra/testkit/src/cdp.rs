//! Just enough of the Chrome DevTools Protocol to drive headless Chromium from a test: the browser started
//! with `--remote-debugging-port=0`, a WebSocket client (RFC 6455, text frames only) to its endpoint, one page
//! target attached in flat mode, commands answered by id and events kept for inspection. Used by the query
//! function's page tests and by the local cloud's dashboard test; needs `chromium` (Debian package).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// A headless Chromium and a DevTools session on one page.
pub struct Browser {
    _child: Child,
    profile: PathBuf,
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
    next_id: u64,
    session: String,
    /// Events received so far (`method`, `params`).
    pub events: Vec<Value>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("profile", &self.profile)
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl Browser {
    /// Starts Chromium with a fresh profile under `profile` and attaches to a blank page.
    pub async fn start(profile: &Path) -> Browser {
        let _ = std::fs::remove_dir_all(profile);
        std::fs::create_dir_all(profile).expect("profile dir");
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium runs (apt-get install -y chromium)");
        let (port, path) = devtools_endpoint(profile).await;
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect to devtools");
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGFsbHktcXVlcnktdGVzdA==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        write
            .write_all(handshake.as_bytes())
            .await
            .expect("handshake");
        let mut status = String::new();
        read.read_line(&mut status).await.expect("handshake answer");
        assert!(status.contains(" 101 "), "websocket upgrade: {status}");
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await.expect("handshake headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        let mut browser = Browser {
            _child: child,
            profile: profile.to_owned(),
            read,
            write,
            next_id: 0,
            session: String::new(),
            events: Vec::new(),
        };
        let target = browser
            .browser_call("Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = browser
            .browser_call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Network.enable"] {
            browser.call(domain, json!({})).await;
        }
        browser
    }

    /// A command to the browser target.
    pub async fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(json!({"method": method, "params": params})).await
    }

    /// A command to the page: its `result` (panics on a protocol error).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(json!({"method": method, "params": params, "sessionId": session}))
            .await
    }

    /// The value of a JavaScript expression in the page (promises awaited); `null` when it threw.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits (up to 30 s) until `expression` is `true` in the page.
    pub async fn wait_for(&mut self, expression: &str) -> bool {
        for _ in 0..150 {
            if self.eval(expression).await == json!(true) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }

    /// Navigates the page to `url` (does not wait for the load).
    pub async fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url})).await;
    }

    /// The browser's cookies for `url`.
    pub async fn cookies(&mut self, url: &str) -> Vec<Value> {
        let result = self
            .call("Network.getCookies", json!({"urls": [url]}))
            .await;
        result["cookies"].as_array().cloned().unwrap_or_default()
    }

    async fn send(&mut self, mut message: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        message["id"] = json!(id);
        self.write_frame(message.to_string().as_bytes()).await;
        let reply = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let message: Value =
                    serde_json::from_slice(&self.read_message().await).expect("CDP sends JSON");
                if message["id"] == json!(id) {
                    return message;
                }
                self.events.push(message);
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {message}"));
        assert!(
            reply.get("error").is_none(),
            "CDP error for {message}: {reply}"
        );
        reply["result"].clone()
    }

    /// Writes one masked text frame.
    async fn write_frame(&mut self, payload: &[u8]) {
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        let mut frame = vec![0x81];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.write
            .write_all(&frame)
            .await
            .expect("send to devtools");
    }

    /// Reads one whole message (continuation frames joined; control frames skipped).
    async fn read_message(&mut self) -> Vec<u8> {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.read
                .read_exact(&mut head)
                .await
                .expect("devtools frame");
            let len = match head[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    self.read.read_exact(&mut n).await.expect("length");
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.read.read_exact(&mut n).await.expect("length");
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).expect("frame fits in memory")];
            self.read
                .read_exact(&mut payload)
                .await
                .expect("frame payload");
            let opcode = head[0] & 0x0f;
            if opcode >= 0x8 {
                continue;
            }
            message.extend_from_slice(&payload);
            if head[0] & 0x80 != 0 {
                return message;
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self._child.start_kill();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// The port and path Chromium writes to `DevToolsActivePort` in its profile once it listens.
async fn devtools_endpoint(profile: &Path) -> (u16, String) {
    let file = profile.join("DevToolsActivePort");
    for _ in 0..300 {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                if let Ok(port) = port.trim().parse() {
                    return (port, path.trim().to_owned());
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromium wrote no {} within 30 s", file.display());
}
