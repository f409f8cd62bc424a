//! A stream mapping's checkpoints: per shard, where reading resumes (`<state>/esm/<mapping>/<shard>.json`,
//! replaced atomically and synced).
//!
//! A shard reader moves its checkpoint after every batch, and the batch's writes are already done by then:
//! the file is written behind the reader, by one writer thread per mapping, so the next batch does not wait
//! for two `fsync`s (on this machine 1–7 ms each, more under load, on the realtime lane's critical path).
//! Several moves of one shard while a write is out become one write of the newest. What that costs: after a
//! `kill -9`, a batch whose checkpoint was not yet on disk is delivered again — as AWS's own mapping does after
//! a failure (its checkpoints are asynchronous too); the functions are idempotent per record. Where the reader
//! needs the file on disk before it goes on (the starting position fixed at the first start, the end of a
//! shard, a mapping stopped) it waits for it ([`Checkpoints::save_now`], [`Writer::flush`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

use serde_json::{json, Value};

use crate::lambda::lock;

/// A shard's checkpoint: where reading resumes, and the tumbling window in progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Checkpoint {
    /// The last sequence number fully handled.
    pub after: Option<String>,
    /// Resume at this arrival time (LATEST and AT_TIMESTAMP before the first batch).
    pub at_ms: Option<i64>,
    /// The shard is closed and read to its end.
    pub end: bool,
    /// The open tumbling window: start, end (ms) and state.
    pub window: Option<(i64, i64, Value)>,
}

impl Checkpoint {
    fn to_json(&self) -> Value {
        json!({ "after": self.after, "at_ms": self.at_ms, "end": self.end,
                "window": self.window.as_ref().map(|(s, e, state)| json!({"start": s, "end": e, "state": state})) })
    }

    fn from_json(value: &Value) -> Checkpoint {
        let window = value.get("window").filter(|w| !w.is_null()).and_then(|w| {
            Some((
                w.get("start")?.as_i64()?,
                w.get("end")?.as_i64()?,
                w.get("state").cloned().unwrap_or(json!({})),
            ))
        });
        Checkpoint {
            after: value
                .get("after")
                .and_then(Value::as_str)
                .map(str::to_owned),
            at_ms: value.get("at_ms").and_then(Value::as_i64),
            end: value.get("end").and_then(Value::as_bool).unwrap_or(false),
            window,
        }
    }
}

/// The checkpoints of one mapping: the newest in memory, the files written behind by a [`Writer`].
pub(super) struct Checkpoints {
    memory: Mutex<HashMap<String, Checkpoint>>,
    /// Writes under the state directory (none: no state directory, checkpoints live in memory).
    writer: Option<Arc<Writer>>,
}

impl Checkpoints {
    /// Checkpoints under `dir` (none: in memory only, as with no state directory).
    pub fn new(dir: Option<PathBuf>) -> Checkpoints {
        Checkpoints {
            memory: Mutex::new(HashMap::new()),
            writer: dir.map(Writer::start),
        }
    }

    /// What waits for the files: [`KinesisMapping::stop`](super::KinesisMapping::stop) flushes it.
    pub fn writer(&self) -> Option<Arc<Writer>> {
        self.writer.clone()
    }

    pub fn load(&self, shard: &str) -> Checkpoint {
        if let Some(found) = lock(&self.memory).get(shard) {
            return found.clone();
        }
        let Some(writer) = &self.writer else {
            return Checkpoint::default();
        };
        let Ok(text) = std::fs::read(writer.path(shard)) else {
            return Checkpoint::default();
        };
        match serde_json::from_slice::<Value>(&text) {
            Ok(value) => Checkpoint::from_json(&value),
            Err(error) => {
                tracing::warn!(message = "unreadable checkpoint ignored; reading from the starting position", shard, %error);
                Checkpoint::default()
            }
        }
    }

    /// Moves `shard`'s checkpoint; its file is written behind. Fails when an earlier write failed (the reader
    /// stops: going on would let the file fall further and further behind).
    pub fn save(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), String> {
        lock(&self.memory).insert(shard.to_owned(), checkpoint.clone());
        match &self.writer {
            Some(writer) => writer.queue(shard, checkpoint),
            None => Ok(()),
        }
    }

    /// [`Checkpoints::save`], returning once the file (and every earlier one) is on disk.
    pub async fn save_now(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), String> {
        self.save(shard, checkpoint)?;
        let Some(writer) = self.writer.clone() else {
            return Ok(());
        };
        tokio::task::spawn_blocking(move || writer.flush())
            .await
            .map_err(|error| error.to_string())?
    }
}

/// One thread writing a mapping's checkpoint files, newest per shard.
#[derive(Debug)]
pub(super) struct Writer {
    dir: PathBuf,
    state: Mutex<Queue>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    /// Checkpoints not yet handed to a write, newest per shard.
    waiting: HashMap<String, Checkpoint>,
    /// Saves queued so far, and how many of them are on disk.
    queued: u64,
    written: u64,
    /// The first write that failed: every later save and flush reports it.
    failed: Option<String>,
    /// The mapping is gone: the thread writes what waits and ends.
    closed: bool,
}

impl Writer {
    fn start(dir: PathBuf) -> Arc<Writer> {
        let writer = Arc::new(Writer {
            dir,
            state: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let thread = writer.clone();
        // The thread holds the writer until it is closed (Checkpoints' drop) and what waits is written.
        std::thread::Builder::new()
            .name("esm-checkpoints".into())
            .spawn(move || thread.run())
            .expect("a thread for checkpoint files");
        writer
    }

    /// The file of `shard`'s checkpoint.
    fn path(&self, shard: &str) -> PathBuf {
        self.dir.join(format!("{shard}.json"))
    }

    fn queue(&self, shard: &str, checkpoint: &Checkpoint) -> Result<(), String> {
        let mut state = lock(&self.state);
        if let Some(failed) = &state.failed {
            return Err(failed.clone());
        }
        state.waiting.insert(shard.to_owned(), checkpoint.clone());
        state.queued += 1;
        self.changed.notify_all();
        Ok(())
    }

    /// Blocks until every checkpoint queued before the call is on disk (or a write failed).
    pub fn flush(&self) -> Result<(), String> {
        let mut state = lock(&self.state);
        let target = state.queued;
        while state.written < target && state.failed.is_none() {
            state = self
                .changed
                .wait(state)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        match &state.failed {
            Some(failed) => Err(failed.clone()),
            None => Ok(()),
        }
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.changed.notify_all();
    }

    fn run(&self) {
        loop {
            let (batch, upto) = {
                let mut state = lock(&self.state);
                while state.waiting.is_empty() && !state.closed {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if state.waiting.is_empty() {
                    return;
                }
                (std::mem::take(&mut state.waiting), state.queued)
            };
            let mut failed = None;
            for (shard, checkpoint) in batch {
                let path = self.path(&shard);
                let bytes = checkpoint.to_json().to_string().into_bytes();
                if let Err(error) = tally_localcloud_aws::store::write_file_durable(&path, &bytes) {
                    failed = Some(format!(
                        "cannot write checkpoint {}: {error}",
                        path.display()
                    ));
                    break;
                }
            }
            let mut state = lock(&self.state);
            match failed {
                Some(failed) => {
                    tracing::error!(message = "checkpoint write failed; the mapping stops", %failed);
                    state.failed.get_or_insert(failed);
                }
                None => state.written = upto,
            }
            self.changed.notify_all();
            if state.failed.is_some() {
                return;
            }
        }
    }
}

impl Drop for Checkpoints {
    fn drop(&mut self) {
        if let Some(writer) = &self.writer {
            writer.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seq: &str) -> Checkpoint {
        Checkpoint {
            after: Some(seq.to_owned()),
            ..Checkpoint::default()
        }
    }

    /// An empty directory of this test's own, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir = std::env::temp_dir()
                .join(format!("tally-checkpoints-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }

        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn on_disk(dir: &std::path::Path, shard: &str) -> Checkpoint {
        let text = std::fs::read(dir.join(format!("{shard}.json"))).expect("the file");
        Checkpoint::from_json(&serde_json::from_slice(&text).expect("json"))
    }

    #[test]
    fn saves_are_written_behind_and_a_flush_waits_for_the_newest() {
        let dir = Scratch::new("behind");
        let checkpoints = Checkpoints::new(Some(dir.path().to_owned()));
        for seq in 1..=50 {
            checkpoints
                .save("shard-0", &at(&seq.to_string()))
                .expect("save");
            checkpoints
                .save("shard-1", &at(&(seq * 2).to_string()))
                .expect("save");
        }
        // The reader sees its newest checkpoint at once, whatever the files hold.
        assert_eq!(checkpoints.load("shard-0"), at("50"));
        checkpoints
            .writer()
            .expect("a writer")
            .flush()
            .expect("flush");
        assert_eq!(on_disk(dir.path(), "shard-0"), at("50"));
        assert_eq!(on_disk(dir.path(), "shard-1"), at("100"));
        // A restart (a new mapping over the same directory) resumes from the files.
        drop(checkpoints);
        assert_eq!(
            Checkpoints::new(Some(dir.path().to_owned())).load("shard-1"),
            at("100")
        );
    }

    #[tokio::test]
    async fn save_now_returns_with_the_file_on_disk() {
        let dir = Scratch::new("now");
        let checkpoints = Checkpoints::new(Some(dir.path().to_owned()));
        let end = Checkpoint {
            end: true,
            window: Some((1, 2, json!({"n": 3}))),
            ..at("7")
        };
        checkpoints.save_now("shard-0", &end).await.expect("save");
        assert_eq!(on_disk(dir.path(), "shard-0"), end);
    }

    #[test]
    fn dropping_the_checkpoints_still_writes_what_waits() {
        let dir = Scratch::new("dropped");
        let checkpoints = Checkpoints::new(Some(dir.path().to_owned()));
        let writer = checkpoints.writer().expect("a writer");
        checkpoints.save("shard-0", &at("9")).expect("save");
        drop(checkpoints);
        writer.flush().expect("flush");
        assert_eq!(on_disk(dir.path(), "shard-0"), at("9"));
    }

    #[test]
    fn a_failed_write_stops_later_saves_with_its_reason() {
        let dir = Scratch::new("failed");
        // The directory is a file: nothing can be written under it.
        let blocked = dir.path().join("blocked");
        std::fs::write(&blocked, b"not a directory").expect("file");
        let checkpoints = Checkpoints::new(Some(blocked.clone()));
        checkpoints.save("shard-0", &at("1")).expect("queued");
        let writer = checkpoints.writer().expect("a writer");
        let error = writer.flush().expect_err("the write fails");
        assert!(
            error.contains("cannot write checkpoint") && error.contains("blocked"),
            "{error}"
        );
        let again = checkpoints.save("shard-0", &at("2")).expect_err("refused");
        assert_eq!(again, error);
    }

    #[test]
    fn without_a_state_directory_checkpoints_live_in_memory() {
        let checkpoints = Checkpoints::new(None);
        assert!(checkpoints.writer().is_none());
        checkpoints.save("shard-0", &at("3")).expect("save");
        assert_eq!(checkpoints.load("shard-0"), at("3"));
    }
}
