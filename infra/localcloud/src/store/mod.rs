//! Persistence of the local AWS endpoint under a state directory.
//!
//! Every resource (a stream, a table, a queue, a bucket) owns one append-only [`Log`] in its own directory
//! under the state directory (`target/tally-dev/<stage>/` for `cargo xtask dev`):
//!
//! ```text
//! <state>/kinesis/<stream>/log      stream created, records appended, reshards, consumers
//! <state>/dynamodb/<table>/log      table created, item images written and deleted
//! <state>/sqs/<queue>/log           queue created, messages sent, received, deleted
//! <state>/s3/<bucket>/log           bucket created, objects put and deleted (metadata)
//! <state>/s3/<bucket>/objects/<n>   object bodies, written and synced before their log entry
//! ```
//!
//! An entry is framed as `len: u32 LE`, `check: u32 LE` (the first four bytes of the payload's MD5), `payload`.
//! Reopening replays every complete entry; a torn tail (a write cut short by `kill -9` or a power loss) fails its
//! length or check and is truncated away. That entry was never acknowledged, because:
//!
//! **Durability rule:** [`Log::append`] returns only after the entry is on disk (`fdatasync`). The endpoint
//! answers a write only after `append` returned, so a `kill -9` of the whole local cloud loses nothing that
//! was acknowledged. Concurrent appenders share syncs (group commit): an appender whose entry was already
//! covered by another thread's `fdatasync` returns without a sync of its own.
//!
//! Logs are never compacted: the local cloud is for development sessions, and replay of a few million
//! entries takes seconds. Delete the state directory to start afresh.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use md5::{Digest, Md5};

/// Largest entry accepted on replay; anything longer is a corrupt length field.
const MAX_ENTRY: u32 = 64 * 1024 * 1024;

/// An append-only, checksummed, synced log file.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    /// The file and the number of entries written to it (not necessarily synced).
    writer: Mutex<Writer>,
    /// The number of entries known to be on disk; the sync lock.
    synced: Mutex<u64>,
    /// A second handle on the same file, for `fdatasync` outside the writer lock.
    sync_handle: File,
}

#[derive(Debug)]
struct Writer {
    file: File,
    written: u64,
}

impl Log {
    /// Opens (creating it and its directory if needed) the log at `path` and returns it with the payloads of
    /// every complete entry, in order. A torn tail is cut off.
    pub fn open(path: &Path) -> io::Result<(Log, Vec<Vec<u8>>)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (entries, good) = parse_entries(&bytes);
        if good < bytes.len() {
            tracing::warn!(
                message = "truncating torn log tail",
                path = %path.display(),
                kept = good,
                dropped = bytes.len() - good
            );
            file.set_len(good as u64)?;
            file.seek(SeekFrom::End(0))?;
            file.sync_data()?;
        }
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let sync_handle = file.try_clone()?;
        let count = entries.len() as u64;
        let log = Log {
            path: path.to_owned(),
            writer: Mutex::new(Writer {
                file,
                written: count,
            }),
            synced: Mutex::new(count),
            sync_handle,
        };
        Ok((log, entries))
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry and returns once it is durable.
    pub fn append(&self, payload: &[u8]) -> io::Result<()> {
        let ticket = self.write(payload)?;
        self.sync(ticket)
    }

    /// Writes one entry without waiting for the disk and returns its ticket for [`Log::sync`].
    ///
    /// Entries land in the file in the order of `write` calls; callers that must keep an order (a stream's
    /// records) call `write` under their own lock and `sync` after releasing it, so syncs are shared.
    pub fn write(&self, payload: &[u8]) -> io::Result<u64> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|len| *len <= MAX_ENTRY)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "log entry larger than 64 MiB")
            })?;
        let mut frame = Vec::with_capacity(payload.len() + 8);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&check(payload).to_le_bytes());
        frame.extend_from_slice(payload);
        let mut writer = lock(&self.writer);
        writer.file.write_all(&frame)?;
        writer.written += 1;
        Ok(writer.written)
    }

    /// Returns once the entry with `ticket`, and every entry written before it, is on disk.
    pub fn sync(&self, ticket: u64) -> io::Result<()> {
        let mut synced = lock(&self.synced);
        if *synced >= ticket {
            return Ok(());
        }
        // Everything written before this point is covered by the sync below.
        let upto = lock(&self.writer).written;
        self.sync_handle.sync_data()?;
        *synced = upto;
        Ok(())
    }
}

/// Locks a mutex, recovering from a poisoned lock: the guarded data is plain bookkeeping that stays consistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn check(payload: &[u8]) -> u32 {
    let digest = Md5::digest(payload);
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// The complete entries of `bytes` and the length of the prefix they occupy.
fn parse_entries(bytes: &[u8]) -> (Vec<Vec<u8>>, usize) {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_ENTRY {
            break;
        }
        let Some(payload) = bytes.get(at + 8..at + 8 + len as usize) else {
            break;
        };
        if check(payload) != sum {
            break;
        }
        entries.push(payload.to_vec());
        at += 8 + len as usize;
    }
    (entries, at)
}

/// Writes a whole file durably: to a temporary name, synced, renamed, directory synced.
pub fn write_file_durable(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_data()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Syncs a directory, so a file created or renamed in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The resource directories directly under `dir` (`<state>/kinesis`, ...), sorted; none when it does not exist.
pub fn resource_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut dirs = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    dirs.push(entry.path());
                }
            }
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tally-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn entries_survive_reopen_in_order() {
        let dir = temp_dir("reopen");
        let path = dir.join("log");
        let (log, entries) = Log::open(&path).expect("open");
        assert!(entries.is_empty());
        for payload in [&b"one"[..], b"", b"three"] {
            log.append(payload).expect("append");
        }
        drop(log);
        let (_, entries) = Log::open(&path).expect("reopen");
        assert_eq!(
            entries,
            vec![b"one".to_vec(), Vec::new(), b"three".to_vec()]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Damage of every kind at the tail is cut off; what came before survives.
    #[test]
    fn torn_or_corrupt_tails_are_truncated() {
        fn check(tail: &[u8], expect_kept: usize) {
            let mut bytes = Vec::new();
            for payload in [&b"alpha"[..], b"beta"] {
                bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                bytes.extend_from_slice(&super::check(payload).to_le_bytes());
                bytes.extend_from_slice(payload);
            }
            bytes.extend_from_slice(tail);
            let (entries, good) = parse_entries(&bytes);
            assert_eq!(entries.len(), expect_kept, "tail {tail:?}");
            assert_eq!(good, 25, "tail {tail:?}");
        }
        check(b"", 2);
        check(&[1], 2);
        check(&[5, 0, 0, 0], 2);
        check(&[5, 0, 0, 0, 1, 2, 3, 4, b'x'], 2);
        check(&[5, 0, 0, 0, 1, 2, 3, 4, b'a', b'b', b'c', b'd', b'e'], 2);
        check(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0], 2);
    }

    #[test]
    fn reopen_after_torn_tail_appends_cleanly() {
        let dir = temp_dir("torn");
        let path = dir.join("log");
        let (log, _) = Log::open(&path).expect("open");
        log.append(b"kept").expect("append");
        drop(log);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open raw");
        file.write_all(&[9, 0, 0, 0, 1]).expect("write torn");
        drop(file);
        let (log, entries) = Log::open(&path).expect("reopen");
        assert_eq!(entries, vec![b"kept".to_vec()]);
        log.append(b"after").expect("append");
        drop(log);
        let (_, entries) = Log::open(&path).expect("reopen");
        assert_eq!(entries, vec![b"kept".to_vec(), b"after".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
