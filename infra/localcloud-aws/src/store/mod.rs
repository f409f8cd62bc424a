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
//! **Durability rule:** [`Log::append`] returns only after the entry is in the file (`write(2)`: the kernel
//! holds it whatever happens to this process). The endpoint answers a write only after `append` returned, so a
//! `kill -9` of the whole local cloud loses nothing that was acknowledged. When it reaches the disk is the
//! log's [`Durability`]: by default one background thread `fdatasync`s every log with new entries about once a
//! second ([`Durability::EverySecond`], Redis's `appendfsync everysec`), so a machine crash or power loss may
//! lose the last second of acknowledged writes; with [`Durability::EveryWrite`] `append` returns only after the
//! `fdatasync`, and concurrent appenders share syncs (group commit: an appender whose entry was already covered
//! by another thread's `fdatasync` returns without a sync of its own).
//!
//! **Torn-write rule:** a write that fails part-way (a full disk, an I/O error) is cut off again at once: the
//! file is truncated back to the end of the last good frame before the error is returned, so an entry appended
//! later never sits behind a torn frame (replay stops at the first bad frame, and would drop it). When that
//! truncation fails too, or an `fdatasync` fails (the kernel may have dropped the unsynced pages, so the file's
//! tail is unknown), the log refuses every later write with an error naming the file: restart the local cloud,
//! whose reopen cuts the file back to its last good frame.
//!
//! Logs are read entry by entry ([`Log::open_with`] hands each payload and its offset to a visitor without
//! holding the file in memory) and single entries are read back by offset ([`Log::read_at`]), so a service
//! may keep only an index of a large log (Kinesis does). Only Kinesis rewrites its logs (dropping records past
//! the retention period, see [`crate::aws::kinesis`]); other logs are never compacted: the local cloud is for
//! development sessions, and replay of a few million entries takes seconds. Delete the state directory to
//! start afresh.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};

/// Largest entry accepted on replay; anything longer is a corrupt length field.
const MAX_ENTRY: u32 = 64 * 1024 * 1024;

/// How often the background flusher syncs the logs written with [`Durability::EverySecond`].
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// When an acknowledged write reaches the disk. Either way it is in the file before it is acknowledged, so a
/// `kill -9` of any process loses nothing acknowledged; the two differ only when the machine itself stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// `fdatasync`ed by a background thread within about [`FLUSH_EVERY`]: a machine crash or power loss may
    /// lose the last second of acknowledged writes (Redis's `appendfsync everysec`; Kafka's default does not
    /// sync at all). Writers never wait for the disk.
    #[default]
    EverySecond,
    /// `fdatasync`ed before the write is acknowledged (group commit): nothing acknowledged is lost even when
    /// the machine stops, and every write waits for the disk.
    EveryWrite,
}

impl Durability {
    /// The command-line spelling: `every-second`, `every-write`.
    pub fn parse(text: &str) -> Result<Durability, String> {
        match text {
            "every-second" => Ok(Durability::EverySecond),
            "every-write" => Ok(Durability::EveryWrite),
            other => Err(format!(
                "unknown fsync policy {other:?}: use every-second (the default: a machine crash may lose the last second) or every-write (each acknowledged write is on disk first)"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Durability::EverySecond => "every-second",
            Durability::EveryWrite => "every-write",
        }
    }
}

/// An append-only, checksummed log file, synced as its [`Durability`] says.
#[derive(Debug)]
pub struct Log {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    durability: Durability,
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
    /// The end of the last complete frame: where the next frame starts.
    end: u64,
    /// Why the log refuses writes (its tail is unknown), if it does.
    broken: Option<String>,
    /// Tests: the next write stops after this many bytes and fails, as a full disk would.
    #[cfg(test)]
    fail_after: Option<usize>,
    /// Tests: the next sync fails, as an I/O error would.
    #[cfg(test)]
    fail_sync: bool,
}

/// Where an entry's frame starts in its log file (see [`Log::read_at`]).
pub type Offset = u64;

impl Log {
    /// Opens (creating it and its directory if needed) the log at `path` and returns it with the payloads of
    /// every complete entry, in order. A torn tail is cut off.
    pub fn open(path: &Path, durability: Durability) -> io::Result<(Log, Vec<Vec<u8>>)> {
        let mut entries = Vec::new();
        let log = Log::open_with(path, durability, |_, payload| {
            entries.push(payload);
            Ok(())
        })?;
        Ok((log, entries))
    }

    /// Opens the log at `path` like [`Log::open`], handing each complete entry (its offset and payload) to
    /// `visit` in order instead of collecting them: memory stays at one entry whatever the file's size.
    pub fn open_with(
        path: &Path,
        durability: Durability,
        mut visit: impl FnMut(Offset, Vec<u8>) -> io::Result<()>,
    ) -> io::Result<Log> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let size = file.metadata()?.len();
        let (count, good) = {
            let mut reader = BufReader::with_capacity(256 * 1024, &mut file);
            read_entries(&mut reader, &mut visit)?
        };
        if good < size {
            tracing::warn!(
                message = "truncating torn log tail",
                path = %path.display(),
                kept = good,
                dropped = size - good
            );
            file.set_len(good)?;
            file.sync_data()?;
        }
        file.seek(SeekFrom::End(0))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        let sync_handle = file.try_clone()?;
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            durability,
            writer: Mutex::new(Writer {
                file,
                written: count,
                end: good,
                broken: None,
                #[cfg(test)]
                fail_after: None,
                #[cfg(test)]
                fail_sync: false,
            }),
            synced: Mutex::new(count),
            sync_handle,
        });
        if durability == Durability::EverySecond {
            flusher::register(&inner)?;
        }
        Ok(Log { inner })
    }

    /// The payload of the entry whose frame starts at `offset` (as [`Log::open_with`] or [`Log::write_at`]
    /// reported it), checked against its checksum.
    pub fn read_at(&self, offset: Offset) -> io::Result<Vec<u8>> {
        let corrupt = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: no valid entry at offset {offset} ({what})",
                    self.inner.path.display()
                ),
            )
        };
        let mut header = [0u8; 8];
        self.inner.sync_handle.read_exact_at(&mut header, offset)?;
        let (len, sum) = frame_header(&header);
        if len > MAX_ENTRY {
            return Err(corrupt("length field out of range"));
        }
        let mut payload = vec![0; len as usize];
        self.inner
            .sync_handle
            .read_exact_at(&mut payload, offset + 8)?;
        if check(&payload) != sum {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(payload)
    }

    /// The log's file.
    pub fn path(&self) -> &Path {
        &self.inner.path
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
        self.write_at(payload).map(|(ticket, _)| ticket)
    }

    /// [`Log::write`], also returning where the entry's frame starts (for [`Log::read_at`]).
    pub fn write_at(&self, payload: &[u8]) -> io::Result<(u64, Offset)> {
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
        let mut writer = lock(&self.inner.writer);
        if let Some(why) = &writer.broken {
            return Err(self.inner.refused(why));
        }
        let offset = writer.end;
        if let Err(error) = writer.write_frame(&frame) {
            writer.cut_back(&self.inner.path);
            return Err(error);
        }
        writer.end += frame.len() as u64;
        writer.written += 1;
        Ok((writer.written, offset))
    }

    /// Tests: the next write writes `bytes` bytes of its frame, then fails.
    #[cfg(test)]
    fn fail_next_write_after(&self, bytes: usize) {
        lock(&self.inner.writer).fail_after = Some(bytes);
    }

    /// Tests: the next `fdatasync` fails.
    #[cfg(test)]
    fn fail_next_sync(&self) {
        lock(&self.inner.writer).fail_sync = true;
    }

    /// Returns once the entry with `ticket`, and every entry written before it, is as durable as the log's
    /// [`Durability`] asks: on disk with [`Durability::EveryWrite`]; at once with [`Durability::EverySecond`]
    /// (the entry is in the file; the flusher syncs it), unless a background sync failed, which refuses it.
    pub fn sync(&self, ticket: u64) -> io::Result<()> {
        match self.inner.durability {
            Durability::EveryWrite => self.inner.sync_through(ticket),
            Durability::EverySecond => match &lock(&self.inner.writer).broken {
                Some(why) => Err(self.inner.refused(why)),
                None => Ok(()),
            },
        }
    }

    /// Tests: how many written entries are not known to be on disk yet.
    #[cfg(test)]
    fn unsynced(&self) -> u64 {
        let synced = *lock(&self.inner.synced);
        lock(&self.inner.writer).written - synced
    }
}

impl Drop for Log {
    /// A log closed normally is on disk whatever its durability (a failure is logged: the next open replays
    /// what the file holds).
    fn drop(&mut self) {
        if self.inner.durability == Durability::EverySecond {
            self.inner.flush();
        }
    }
}

impl Inner {
    fn refused(&self, why: &str) -> io::Error {
        io::Error::other(format!(
            "log {} refuses writes: {why}; restart the local cloud (reopening cuts the log back to its last good entry)",
            self.path.display()
        ))
    }

    /// Syncs everything written so far; a failure is logged and makes the log refuse later writes.
    fn flush(&self) {
        let upto = lock(&self.writer).written;
        if let Err(error) = self.sync_through(upto) {
            tracing::error!(message = "cannot sync a log", path = %self.path.display(), %error);
        }
    }

    /// Returns once the entry with `ticket`, and every entry written before it, is on disk.
    fn sync_through(&self, ticket: u64) -> io::Result<()> {
        let mut synced = lock(&self.synced);
        if *synced >= ticket {
            return Ok(());
        }
        // Everything written before this point is covered by the sync below.
        #[cfg_attr(not(test), allow(unused_mut))]
        let (upto, mut synced_now) = {
            let writer = lock(&self.writer);
            if let Some(why) = &writer.broken {
                return Err(self.refused(why));
            }
            (writer.written, Ok(()))
        };
        #[cfg(test)]
        if std::mem::take(&mut lock(&self.writer).fail_sync) {
            synced_now = Err(io::Error::other("injected fdatasync failure"));
        }
        if let Err(error) = synced_now.and_then(|()| self.sync_handle.sync_data()) {
            // The kernel may have dropped the unsynced pages: what the file holds past the last sync is unknown.
            lock(&self.writer).broken = Some(format!("fdatasync failed: {error}"));
            return Err(error);
        }
        *synced = upto;
        Ok(())
    }
}

/// The one background thread that syncs the [`Durability::EverySecond`] logs, started with the first of them.
mod flusher {
    use super::{lock, Inner, FLUSH_EVERY};
    use std::io;
    use std::sync::{Arc, Mutex, Weak};

    struct Logs {
        open: Vec<Weak<Inner>>,
        running: bool,
    }

    static LOGS: Mutex<Logs> = Mutex::new(Logs {
        open: Vec::new(),
        running: false,
    });

    pub(super) fn register(log: &Arc<Inner>) -> io::Result<()> {
        let mut logs = lock(&LOGS);
        if !logs.running {
            std::thread::Builder::new()
                .name("log-flusher".to_owned())
                .spawn(run)?;
            logs.running = true;
        }
        logs.open.push(Arc::downgrade(log));
        Ok(())
    }

    fn run() {
        loop {
            std::thread::sleep(FLUSH_EVERY);
            let open: Vec<Arc<Inner>> = {
                let mut logs = lock(&LOGS);
                logs.open.retain(|log| log.strong_count() > 0);
                logs.open.iter().filter_map(Weak::upgrade).collect()
            };
            for log in open {
                log.flush();
            }
        }
    }
}

impl Writer {
    fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        #[cfg(test)]
        if let Some(bytes) = self.fail_after.take() {
            self.file.write_all(&frame[..bytes.min(frame.len())])?;
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected failure after a partial write",
            ));
        }
        self.file.write_all(frame)
    }

    /// After a failed write: cuts the file back to the last good frame, or refuses later writes if it cannot.
    fn cut_back(&mut self, path: &Path) {
        if let Err(error) = self.file.set_len(self.end) {
            tracing::error!(message = "cannot truncate a torn log write", path = %path.display(), %error);
            self.broken = Some(format!("truncating a torn write failed: {error}"));
        }
    }
}

/// Reads every complete entry of the log file at `path` (offset and payload) without opening it for writing;
/// a torn tail ends the scan. Used to rewrite a log (see [`crate::aws::kinesis`]).
pub fn scan(
    path: &Path,
    mut visit: impl FnMut(Offset, Vec<u8>) -> io::Result<()>,
) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    read_entries(&mut reader, &mut visit).map(|_| ())
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

fn frame_header(header: &[u8; 8]) -> (u32, u32) {
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    (len, sum)
}

/// Reads complete entries from `reader`, handing each (offset, payload) to `visit`; returns how many there
/// were and the length of the prefix they occupy. Stops at the first torn or corrupt frame.
fn read_entries(
    reader: &mut impl Read,
    visit: &mut impl FnMut(Offset, Vec<u8>) -> io::Result<()>,
) -> io::Result<(u64, u64)> {
    let (mut count, mut at) = (0u64, 0u64);
    loop {
        let mut header = [0u8; 8];
        if !read_full(reader, &mut header)? {
            break;
        }
        let (len, sum) = frame_header(&header);
        if len > MAX_ENTRY {
            break;
        }
        let mut payload = vec![0; len as usize];
        if !read_full(reader, &mut payload)? || check(&payload) != sum {
            break;
        }
        visit(at, payload)?;
        count += 1;
        at += 8 + u64::from(len);
    }
    Ok((count, at))
}

/// Fills `buf`; false when the reader ends first.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
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
        let (log, entries) = Log::open(&path, Durability::EveryWrite).expect("open");
        assert!(entries.is_empty());
        for payload in [&b"one"[..], b"", b"three"] {
            log.append(payload).expect("append");
        }
        drop(log);
        let (_, entries) = Log::open(&path, Durability::EveryWrite).expect("reopen");
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
            let mut entries = Vec::new();
            let (count, good) = read_entries(&mut &bytes[..], &mut |_, payload| {
                entries.push(payload);
                Ok(())
            })
            .expect("read");
            assert_eq!(count as usize, entries.len());
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
        let (log, _) = Log::open(&path, Durability::EveryWrite).expect("open");
        log.append(b"kept").expect("append");
        drop(log);
        let mut file = OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open raw");
        file.write_all(&[9, 0, 0, 0, 1]).expect("write torn");
        drop(file);
        let (log, entries) = Log::open(&path, Durability::EveryWrite).expect("reopen");
        assert_eq!(entries, vec![b"kept".to_vec()]);
        log.append(b"after").expect("append");
        drop(log);
        let (_, entries) = Log::open(&path, Durability::EveryWrite).expect("reopen");
        assert_eq!(entries, vec![b"kept".to_vec(), b"after".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A write that fails part-way (a full disk) must not leave a torn frame in front of later entries: before,
    /// the entry appended after it was acknowledged and then dropped by the next replay.
    #[test]
    fn a_failed_partial_write_does_not_hide_later_entries() {
        let dir = temp_dir("partial");
        let path = dir.join("log");
        let (log, _) = Log::open(&path, Durability::EveryWrite).expect("open");
        log.append(b"first").expect("append");
        for cut in [0, 3, 8, 10] {
            log.fail_next_write_after(cut);
            let error = log.append(b"lost-write").expect_err("injected failure");
            assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        }
        log.append(b"acknowledged")
            .expect("append after the failure");
        drop(log);
        let (_, entries) = Log::open(&path, Durability::EveryWrite).expect("reopen");
        assert_eq!(entries, vec![b"first".to_vec(), b"acknowledged".to_vec()]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Offsets from `write_at` and `open_with` read the same entries back; a wrong offset is a clear error.
    #[test]
    fn entries_are_read_back_by_offset() {
        let dir = temp_dir("offsets");
        let path = dir.join("log");
        let (log, _) = Log::open(&path, Durability::EveryWrite).expect("open");
        let (_, first) = log.write_at(b"one").expect("write");
        let (ticket, second) = log.write_at(b"two").expect("write");
        log.sync(ticket).expect("sync");
        assert_eq!((first, second), (0, 11));
        assert_eq!(log.read_at(second).expect("read"), b"two");
        let error = log.read_at(3).expect_err("not a frame");
        assert!(error.to_string().contains("offset 3"), "{error}");
        drop(log);
        let mut seen = Vec::new();
        let log = Log::open_with(&path, Durability::EveryWrite, |offset, payload| {
            seen.push((offset, payload));
            Ok(())
        })
        .expect("reopen");
        assert_eq!(seen, vec![(0, b"one".to_vec()), (11, b"two".to_vec())]);
        assert_eq!(log.read_at(0).expect("read"), b"one");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// After a failed `fdatasync` the file's tail is unknown: every later write is refused with a message
    /// naming the file and the way out, and a reopen keeps what was synced before.
    #[test]
    fn a_failed_sync_makes_the_log_refuse_writes_until_reopened() {
        let dir = temp_dir("syncfail");
        let path = dir.join("log");
        let (log, _) = Log::open(&path, Durability::EveryWrite).expect("open");
        log.append(b"synced").expect("append");
        log.fail_next_sync();
        log.append(b"unsure").expect_err("injected sync failure");
        let refused = log.append(b"later").expect_err("refused");
        let message = refused.to_string();
        assert!(
            message.contains("refuses writes: fdatasync failed")
                && message.contains("restart the local cloud")
                && message.contains(&path.display().to_string()),
            "{message}"
        );
        drop(log);
        let (log, entries) = Log::open(&path, Durability::EveryWrite).expect("reopen");
        assert_eq!(entries[0], b"synced".to_vec());
        log.append(b"after reopen")
            .expect("writes again after a reopen");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Polls `done` for up to five flush periods.
    fn within_flushes(done: impl Fn() -> bool) -> bool {
        let deadline = std::time::Instant::now() + FLUSH_EVERY * 5;
        while std::time::Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        done()
    }

    /// Every write: the answer waits for the disk.
    #[test]
    fn every_write_syncs_before_answering() {
        let dir = temp_dir("everywrite");
        let (log, _) = Log::open(&dir.join("log"), Durability::EveryWrite).expect("open");
        log.append(b"one").expect("append");
        log.append(b"two").expect("append");
        assert_eq!(log.unsynced(), 0);
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Every second: the answer comes before the disk (the entry is in the file, so a reopen, as after a
    /// `kill -9`, reads it), and the flusher syncs it soon after; a log dropped normally is synced at once.
    #[test]
    fn every_second_answers_before_the_disk_and_the_flusher_catches_up() {
        let dir = temp_dir("everysecond");
        let path = dir.join("log");
        let (log, _) = Log::open(&path, Durability::EverySecond).expect("open");
        let before = std::time::Instant::now();
        log.append(b"one").expect("append");
        log.append(b"two").expect("append");
        if before.elapsed() < FLUSH_EVERY / 2 {
            assert_eq!(log.unsynced(), 2, "answered only after a sync");
        }
        let (_, entries) = Log::open(&path, Durability::EveryWrite).expect("read beside it");
        assert_eq!(entries, vec![b"one".to_vec(), b"two".to_vec()]);
        assert!(
            within_flushes(|| log.unsynced() == 0),
            "the flusher never synced the log"
        );
        log.append(b"three").expect("append");
        drop(log);
        let (log, entries) = Log::open(&path, Durability::EveryWrite).expect("reopen");
        assert_eq!(entries.len(), 3);
        assert_eq!(log.unsynced(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A background sync that fails is not silent: the next write is refused, naming the file.
    #[test]
    fn a_failed_background_sync_refuses_later_writes() {
        let dir = temp_dir("flushfail");
        let path = dir.join("log");
        let (log, _) = Log::open(&path, Durability::EverySecond).expect("open");
        log.fail_next_sync();
        log.append(b"unsure").expect("answered before the sync");
        assert!(
            within_flushes(|| log.append(b"later").is_err()),
            "writes still accepted after the background sync failed"
        );
        let message = log.append(b"later").expect_err("refused").to_string();
        assert!(
            message.contains("fdatasync failed") && message.contains(&path.display().to_string()),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fsync_policies_parse_from_their_names_and_nothing_else() {
        for policy in [Durability::EverySecond, Durability::EveryWrite] {
            assert_eq!(Durability::parse(policy.name()), Ok(policy));
        }
        for bad in ["", "always", "Every-Second", "every-second ", "everysec"] {
            let error = Durability::parse(bad).expect_err(bad);
            assert!(
                error.contains("every-second") && error.contains("every-write"),
                "{error}"
            );
        }
    }
}
