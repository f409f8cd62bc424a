//! `cargo xtask build` — the five function binaries as reproducible, content-hashed Lambda zips.
//!
//! cargo-lambda compiles with the workspace's `lambda` profile (release + `opt-level = "s"`, `panic = "abort"`:
//! `cargo lambda build --profile lambda --arm64|--x86-64 --output-format binary`), then this
//! module packs each `bootstrap` itself: one entry, fixed timestamp (1980-01-01 00:00), fixed mode (0755),
//! raw deflate at level 9. The same binary therefore always gives the same zip bytes and the same sha256,
//! which is what lets deploy skip uploads. Hashes land in `target/lambda/manifest.json`; the table printed at
//! the end says which zips changed since the previous manifest.
//!
//! `--cold-start` (host architecture only) also starts each bootstrap against a loopback listener that plays
//! the Lambda Runtime API and reports process start → first `GET /2018-06-01/runtime/invocation/next`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

use crate::flags::{Arch, Build};

/// The functions of the pipeline (the stack's list): package and binary `tally-<name>` under `functions/<name>/`.
pub use tally_pipeline::FUNCTIONS;

/// How many cold starts are measured per function with `--cold-start`.
const COLD_START_RUNS: usize = 15;

impl Build {
    pub fn run(self) -> anyhow::Result<()> {
        let root = crate::workspace_root();
        for name in FUNCTIONS {
            let manifest = root.join("functions").join(name).join("Cargo.toml");
            if !manifest.is_file() {
                bail!("{} is missing: every function is a crate `functions/<name>/` named `tally-<name>`", manifest.display());
            }
        }
        let lambda_dir = root.join("target").join("lambda");
        compile(&root, &lambda_dir, self.arch)?;

        let manifest_path = lambda_dir.join("manifest.json");
        let previous = read_manifest(&manifest_path);
        let mut entries = BTreeMap::new();
        for name in FUNCTIONS {
            let package = format!("tally-{name}");
            let dir = lambda_dir.join(&package);
            let bootstrap_path = dir.join("bootstrap");
            let bootstrap = std::fs::read(&bootstrap_path).with_context(|| {
                format!(
                    "while reading {} (did cargo lambda build it?)",
                    bootstrap_path.display()
                )
            })?;
            let zip = deterministic_zip(&[ZipEntry {
                name: "bootstrap",
                mode: 0o755,
                data: &bootstrap,
            }])
            .with_context(|| format!("while zipping {}", bootstrap_path.display()))?;
            let zip_path = dir.join("bootstrap.zip");
            std::fs::write(&zip_path, &zip)
                .with_context(|| format!("while writing {}", zip_path.display()))?;
            entries.insert(
                package,
                Artifact {
                    zip: format!("target/lambda/tally-{name}/bootstrap.zip"),
                    zip_bytes: zip.len() as u64,
                    bootstrap_bytes: bootstrap.len() as u64,
                    sha256: hex(&Sha256::digest(&zip)),
                },
            );
        }
        let manifest = Manifest {
            arch: self.arch,
            functions: entries,
        };
        std::fs::write(&manifest_path, manifest.to_json())
            .with_context(|| format!("while writing {}", manifest_path.display()))?;

        let cold_starts = if self.cold_start {
            if !self.arch.is_host() {
                bail!(
                    "--cold-start runs the binaries on this machine: build with `--arch {}`",
                    Arch::host().as_str()
                );
            }
            let mut measured = BTreeMap::new();
            for name in FUNCTIONS {
                let package = format!("tally-{name}");
                let bin = lambda_dir.join(&package).join("bootstrap");
                let runs = measure_cold_start(&bin, &package, COLD_START_RUNS)?;
                measured.insert(package, runs);
            }
            Some(measured)
        } else {
            None
        };
        print!(
            "{}",
            table(&manifest, previous.as_ref(), cold_starts.as_ref())
        );
        println!("manifest: {}", manifest_path.display());
        Ok(())
    }
}
fn compile(root: &Path, lambda_dir: &Path, arch: Arch) -> anyhow::Result<()> {
    let version = Command::new("cargo").args(["lambda", "--version"]).output();
    match version {
        Ok(out) if out.status.success() => {}
        _ => bail!("cargo-lambda is not installed: run `pip install cargo-lambda ziglang` (seconds) and retry"),
    }
    let mut cmd = tally_contract::cargo::command();
    cmd.current_dir(root)
        .args([
            "lambda",
            "build",
            "--profile",
            "lambda",
            "--output-format",
            "binary",
            "--lambda-dir",
        ])
        .arg(lambda_dir)
        .arg(match arch {
            Arch::Arm64 => "--arm64",
            Arch::X86_64 => "--x86-64",
        });
    for name in FUNCTIONS {
        cmd.args(["--package", &format!("tally-{name}")]);
    }
    let status = cmd.status().context("while running `cargo lambda build`")?;
    if !status.success() {
        bail!("`cargo lambda build` failed ({status}); its output above says why");
    }
    Ok(())
}

/// One file in a zip.
#[derive(Debug)]
pub struct ZipEntry<'a> {
    pub name: &'a str,
    pub mode: u32,
    pub data: &'a [u8],
}

/// A zip archive whose bytes depend only on the entries: fixed DOS timestamp 1980-01-01 00:00:00, Unix
/// permissions from `mode`, entries in the given order, raw deflate (level 9), no extra fields, no comment.
pub fn deterministic_zip(entries: &[ZipEntry<'_>]) -> anyhow::Result<Vec<u8>> {
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
    const VERSION_NEEDED: u16 = 20; // deflate
    const VERSION_MADE_BY: u16 = (3 << 8) | 20; // Unix, spec 2.0: external attributes carry the mode

    let mut out = Vec::new();
    let mut central = Vec::new();
    for entry in entries {
        let mut crc = flate2::Crc::new();
        crc.update(entry.data);
        let mut encoder =
            flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(entry.data).context("while deflating")?;
        let compressed = encoder.finish().context("while deflating")?;
        let (Ok(csize), Ok(usize_), Ok(offset), Ok(name_len)) = (
            u32::try_from(compressed.len()),
            u32::try_from(entry.data.len()),
            u32::try_from(out.len()),
            u16::try_from(entry.name.len()),
        ) else {
            bail!(
                "zip entry `{}` is too large for a zip without zip64",
                entry.name
            );
        };

        put32(&mut out, 0x0403_4b50);
        put16(&mut out, VERSION_NEEDED);
        put16(&mut out, 0); // flags: sizes are in the header, no data descriptor
        put16(&mut out, 8); // deflate
        put16(&mut out, DOS_TIME);
        put16(&mut out, DOS_DATE);
        put32(&mut out, crc.sum());
        put32(&mut out, csize);
        put32(&mut out, usize_);
        put16(&mut out, name_len);
        put16(&mut out, 0); // extra
        out.extend_from_slice(entry.name.as_bytes());
        out.extend_from_slice(&compressed);

        put32(&mut central, 0x0201_4b50);
        put16(&mut central, VERSION_MADE_BY);
        put16(&mut central, VERSION_NEEDED);
        put16(&mut central, 0);
        put16(&mut central, 8);
        put16(&mut central, DOS_TIME);
        put16(&mut central, DOS_DATE);
        put32(&mut central, crc.sum());
        put32(&mut central, csize);
        put32(&mut central, usize_);
        put16(&mut central, name_len);
        put16(&mut central, 0); // extra
        put16(&mut central, 0); // comment
        put16(&mut central, 0); // disk
        put16(&mut central, 0); // internal attributes
        put32(&mut central, (0o100_000 | (entry.mode & 0o7777)) << 16);
        put32(&mut central, offset);
        central.extend_from_slice(entry.name.as_bytes());
    }
    let (Ok(count), Ok(cd_size), Ok(cd_offset)) = (
        u16::try_from(entries.len()),
        u32::try_from(central.len()),
        u32::try_from(out.len()),
    ) else {
        bail!("zip too large for a zip without zip64");
    };
    out.extend_from_slice(&central);
    put32(&mut out, 0x0605_4b50);
    put16(&mut out, 0);
    put16(&mut out, 0);
    put16(&mut out, count);
    put16(&mut out, count);
    put32(&mut out, cd_size);
    put32(&mut out, cd_offset);
    put16(&mut out, 0);
    Ok(out)
}

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Clone, PartialEq)]
struct Artifact {
    zip: String,
    zip_bytes: u64,
    bootstrap_bytes: u64,
    sha256: String,
}

#[derive(Debug, PartialEq)]
struct Manifest {
    arch: Arch,
    functions: BTreeMap<String, Artifact>,
}

impl Manifest {
    fn to_json(&self) -> String {
        let functions: serde_json::Map<String, serde_json::Value> = self
            .functions
            .iter()
            .map(|(name, a)| {
                let value = serde_json::json!({
                    "zip": a.zip,
                    "zip_bytes": a.zip_bytes,
                    "bootstrap_bytes": a.bootstrap_bytes,
                    "sha256": a.sha256,
                });
                (name.clone(), value)
            })
            .collect();
        let doc = serde_json::json!({ "arch": self.arch.as_str(), "functions": functions });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a manifest written by [`Manifest::to_json`]; anything else is `None` (every zip counts as changed).
    fn from_json(text: &str) -> Option<Manifest> {
        let doc: serde_json::Value = serde_json::from_str(text).ok()?;
        let arch = Arch::parse(doc.get("arch")?.as_str()?)?;
        let mut functions = BTreeMap::new();
        for (name, a) in doc.get("functions")?.as_object()? {
            let artifact = Artifact {
                zip: a.get("zip")?.as_str()?.to_owned(),
                zip_bytes: a.get("zip_bytes")?.as_u64()?,
                bootstrap_bytes: a.get("bootstrap_bytes")?.as_u64()?,
                sha256: a.get("sha256")?.as_str()?.to_owned(),
            };
            functions.insert(name.clone(), artifact);
        }
        Some(Manifest { arch, functions })
    }
}

fn read_manifest(path: &Path) -> Option<Manifest> {
    Manifest::from_json(&std::fs::read_to_string(path).ok()?)
}

fn table(
    manifest: &Manifest,
    previous: Option<&Manifest>,
    cold_starts: Option<&BTreeMap<String, Vec<Duration>>>,
) -> String {
    let mut out = format!(
        "{:<16} {:>10} {:>12}  {:<16} {:<9}",
        "function", "zip", "bootstrap", "sha256", "changed"
    );
    if cold_starts.is_some() {
        out.push_str("  cold start (median / max)");
    }
    out.push('\n');
    for (name, a) in &manifest.functions {
        let changed = match previous.and_then(|p| p.functions.get(name).map(|old| (p.arch, old))) {
            Some((arch, old)) if arch == manifest.arch && old.sha256 == a.sha256 => "no",
            Some(_) => "yes",
            None => "new",
        };
        out.push_str(&format!(
            "{:<16} {:>10} {:>12}  {:<16} {:<9}",
            name,
            human_bytes(a.zip_bytes),
            human_bytes(a.bootstrap_bytes),
            &a.sha256[..16.min(a.sha256.len())],
            changed
        ));
        if let Some(runs) = cold_starts.and_then(|c| c.get(name)) {
            let mut sorted = runs.clone();
            sorted.sort();
            let median = sorted.get(sorted.len() / 2).copied().unwrap_or_default();
            let max = sorted.last().copied().unwrap_or_default();
            out.push_str(&format!("  {:.1} ms / {:.1} ms", ms(median), ms(max)));
        }
        out.push('\n');
    }
    out.lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.2} MiB", n as f64 / f64::from(1u32 << 20))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// Starts `bin` `runs` times against a loopback listener playing the Lambda Runtime API and returns, per run,
/// the time from spawning the process to its first `GET /2018-06-01/runtime/invocation/next`.
///
/// The environment is what Lambda sets plus the function's own variables with placeholder values; AWS calls
/// would go to a closed loopback port (none are made before the first poll, except as documented in README).
pub fn measure_cold_start(
    bin: &Path,
    function_name: &str,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let listener =
            TcpListener::bind("127.0.0.1:0").context("while binding a loopback listener")?;
        let addr = listener
            .local_addr()
            .context("while reading the listener address")?;
        let closed =
            TcpListener::bind("127.0.0.1:0").context("while binding a loopback listener")?;
        let closed_addr = closed
            .local_addr()
            .context("while reading the listener address")?;
        drop(closed);
        let mut child = Command::new(bin)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", function_name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "cold-start")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/cold-start")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_ENDPOINT_URL", format!("http://{closed_addr}"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env(tally_contract::env::STREAM_NAME, "events")
            .env(tally_contract::env::METRICS_TABLE, "metrics")
            .env(tally_contract::env::ARCHIVE_BUCKET, "archive")
            .env(tally_contract::env::QUERY_AUTH, "off")
            .env(tally_contract::env::MIN_SHARDS, "1")
            .env(tally_contract::env::MAX_SHARDS, "4")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("while starting {}", bin.display()))?;
        let started = Instant::now();
        listener
            .set_nonblocking(false)
            .context("while configuring the listener")?;
        let polled = first_poll(&listener, Duration::from_secs(10));
        let _ = child.kill();
        let _ = child.wait();
        match polled {
            Some(at) => out.push(at.duration_since(started)),
            None => bail!(
                "{} never polled the Runtime API within 10 s (does it fail at init?)",
                bin.display()
            ),
        }
    }
    Ok(out)
}

/// Waits for a connection whose request line is the Runtime API's `next` poll; the instant it was read.
fn first_poll(listener: &TcpListener, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    let (tx, rx) = std::sync::mpsc::channel();
    let listener = listener.try_clone().ok()?;
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut line = String::new();
            if BufReader::new(stream).read_line(&mut line).is_ok()
                && line.starts_with("GET /2018-06-01/runtime/invocation/next")
            {
                let _ = tx.send(Instant::now());
                return;
            }
        }
    });
    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python_unzip(zip: &[u8]) -> Option<String> {
        let dir =
            std::env::temp_dir().join(format!("tally-zip-{}-{}", std::process::id(), zip.len()));
        std::fs::create_dir_all(&dir).ok()?;
        let path = dir.join("t.zip");
        std::fs::write(&path, zip).ok()?;
        let script = "import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nfor i in z.infolist():\n    print(i.filename, oct(i.external_attr >> 16), i.date_time, len(z.read(i)), z.read(i)[:8])\n";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(&path)
            .output()
            .ok()?;
        let _ = std::fs::remove_dir_all(&dir);
        Some(
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn check(entries: &[ZipEntry<'_>], expect: &str) {
        let zip = deterministic_zip(entries).expect("zip");
        assert_eq!(
            zip,
            deterministic_zip(entries).expect("zip"),
            "zip bytes must not vary"
        );
        match python_unzip(&zip) {
            Some(listing) => assert_eq!(listing.trim(), expect.trim()),
            None => panic!("python3 is needed to check zips against an independent reader"),
        }
    }

    #[test]
    fn zips_are_readable_and_reproducible() {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        check(
            &[ZipEntry {
                name: "bootstrap",
                mode: 0o755,
                data: b"\x7fELF-ish",
            }],
            "bootstrap 0o100755 (1980, 1, 1, 0, 0, 0) 8 b'\\x7fELF-ish'",
        );
        check(
            &[ZipEntry {
                name: "empty",
                mode: 0o644,
                data: b"",
            }],
            "empty 0o100644 (1980, 1, 1, 0, 0, 0) 0 b''",
        );
        check(
            &[ZipEntry { name: "a", mode: 0o644, data: &big }, ZipEntry { name: "b", mode: 0o755, data: b"x" }],
            "a 0o100644 (1980, 1, 1, 0, 0, 0) 200000 b'\\x00\\x01\\x02\\x03\\x04\\x05\\x06\\x07'\nb 0o100755 (1980, 1, 1, 0, 0, 0) 1 b'x'",
        );
    }

    #[test]
    fn manifest_round_trips_and_rejects_garbage() {
        let mut functions = BTreeMap::new();
        functions.insert(
            "tally-collect".to_owned(),
            Artifact {
                zip: "z".into(),
                zip_bytes: 3,
                bootstrap_bytes: 9,
                sha256: "ab".into(),
            },
        );
        let m = Manifest {
            arch: Arch::Arm64,
            functions,
        };
        assert_eq!(Manifest::from_json(&m.to_json()), Some(m));
        for garbage in [
            "",
            "{",
            "[]",
            r#"{"arch":"sparc","functions":{}}"#,
            r#"{"arch":"arm64","functions":{"x":1}}"#,
        ] {
            assert_eq!(Manifest::from_json(garbage), None, "{garbage}");
        }
    }

    #[test]
    fn table_says_what_changed() {
        let art = |h: &str| Artifact {
            zip: "z".into(),
            zip_bytes: 2048,
            bootstrap_bytes: 3 << 20,
            sha256: h.into(),
        };
        let now = Manifest {
            arch: Arch::Arm64,
            functions: [
                ("a".to_owned(), art("11")),
                ("b".to_owned(), art("22")),
                ("c".to_owned(), art("33")),
            ]
            .into_iter()
            .collect(),
        };
        let before = Manifest {
            arch: Arch::Arm64,
            functions: [("a".to_owned(), art("11")), ("b".to_owned(), art("99"))]
                .into_iter()
                .collect(),
        };
        let t = table(&now, Some(&before), None);
        let changed: Vec<&str> = t
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().last().unwrap_or(""))
            .collect();
        assert_eq!(changed, ["no", "yes", "new"]);
        assert!(t.contains("2.0 KiB") && t.contains("3.00 MiB"), "{t}");
        let other_arch = Manifest {
            arch: Arch::X86_64,
            functions: before.functions.clone(),
        };
        let t = table(&now, Some(&other_arch), None);
        assert!(t.lines().nth(1).is_some_and(|l| l.ends_with("yes")), "{t}");
    }
}
