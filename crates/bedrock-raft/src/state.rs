//! The state machine: the LSM database that log entries are applied to,
//! its checkpoints (the snapshots sent to followers), and the installation
//! of a received snapshot.
//!
//! Layout of a node's data directory:
//!
//! ```text
//! raft/                     the Raft log (bedrock-wal segments)
//! kv-<generation>/          the LSM database (no WAL of its own)
//! KV_CURRENT                names the live kv-<generation> directory
//! snapshots/send-<index>/   a checkpoint at log index <index>, for sending
//! snapshots/recv-<index>-<term>/  a snapshot being received or received
//! ```
//!
//! Entry *i* is applied with sequence number *i* (`bedrock_lsm::Db::write_at`),
//! so the LSM's flushed sequence number is the durable applied index: on
//! restart the driver replays the log after it. Installing a snapshot
//! renames the received directory to a new generation and switches
//! `KV_CURRENT` to it (write, fsync, rename, directory fsync); a crash in
//! between leaves either the old or the new state machine, and the log
//! marker written before it lets a restart finish the job.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use bedrock_lsm::WriteBatch;
use bedrock_txn::{validate, Db};
use parking_lot::{Mutex, RwLock};

use crate::command::Command;
use crate::storage::SnapshotSource;
use crate::{Error, Result};

/// The first log index of a bootstrapped cluster: the initial
/// configuration counts as a snapshot at this index (TiKV's
/// `RAFT_INIT_LOG_INDEX`), so nodes that join later always catch up
/// through a snapshot.
pub const INIT_INDEX: u64 = 5;

/// The outcome of one command: the revision it committed at, or why not.
pub type CommandResult = std::result::Result<u64, Error>;

/// The replicated key-value state of one node.
#[derive(Debug)]
pub struct StateMachine {
    root: PathBuf,
    options: bedrock_lsm::Options,
    db: RwLock<Db>,
    generation: Mutex<u64>,
    applied: AtomicU64,
    checkpoint: Mutex<CheckpointState>,
    checkpointing: AtomicBool,
    snapshots_installed: AtomicU64,
}

#[derive(Debug, Default)]
struct CheckpointState {
    /// Finished checkpoints by index (newest last).
    ready: Vec<u64>,
}

impl StateMachine {
    /// Opens the state machine under `root` (the node's data directory);
    /// `options` are the LSM options (`dir` is replaced, `disable_wal` set).
    ///
    /// # Errors
    /// I/O and storage errors.
    pub fn open(root: &Path, mut options: bedrock_lsm::Options) -> Result<Arc<StateMachine>> {
        std::fs::create_dir_all(root.join("snapshots")).map_err(|e| Error::io("create_dir_all", root, e))?;
        let current = root.join("KV_CURRENT");
        let generation = match std::fs::read_to_string(&current) {
            Ok(s) => s.trim().strip_prefix("kv-").and_then(|g| g.parse().ok()).ok_or_else(|| Error::Corruption {
                path: current.clone(),
                offset: 0,
                reason: format!("expected kv-<number>, found {s:?}"),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_current(root, 1)?;
                1
            }
            Err(e) => return Err(Error::io("read", current, e)),
        };
        options.disable_wal = true;
        options.dir = root.join(format!("kv-{generation}"));
        let db = Db::open(options.clone())?;
        let applied = db.last_sequence();
        remove_stale(root, generation);
        Ok(Arc::new(StateMachine {
            root: root.to_path_buf(),
            options,
            db: RwLock::new(db),
            generation: Mutex::new(generation),
            applied: AtomicU64::new(applied),
            checkpoint: Mutex::new(CheckpointState::default()),
            checkpointing: AtomicBool::new(false),
            snapshots_installed: AtomicU64::new(0),
        }))
    }

    /// The current database (cheap clone). After a snapshot install the
    /// next call returns the new one.
    pub fn db(&self) -> Db {
        self.db.read().clone()
    }

    /// The last applied log index (= the store's revision).
    pub fn applied(&self) -> u64 {
        self.applied.load(Ordering::Acquire)
    }

    /// The applied index that is durable (flushed to SSTables).
    pub fn durable_applied(&self) -> u64 {
        self.db().lsm().last_flushed_sequence()
    }

    /// Snapshots installed since open.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    /// Records the bootstrap index as applied and durable.
    ///
    /// # Errors
    /// Storage errors.
    pub fn bootstrap(&self) -> Result<()> {
        let db = self.db();
        if db.last_sequence() < INIT_INDEX {
            db.lsm().write_at(INIT_INDEX, |_| Ok(WriteBatch::new()))?;
            db.flush()?;
            self.applied.store(INIT_INDEX, Ordering::Release);
        }
        Ok(())
    }

    /// Applies log entry `index` holding `commands` and returns one result
    /// per command. Entries at or below the applied index are skipped
    /// (replay after restart). Transactions are validated against the
    /// state before this entry plus the writes of earlier commands of the
    /// entry; a rejected command is not applied, the others are.
    ///
    /// # Errors
    /// Storage failures (the node must stop: applying cannot be skipped).
    pub fn apply(&self, index: u64, commands: &[Command]) -> Result<Vec<CommandResult>> {
        if index <= self.applied() {
            return Ok(Vec::new());
        }
        let db = self.db();
        let mut results: Vec<CommandResult> = Vec::with_capacity(commands.len());
        let outcome = db.lsm().write_at(index, |view| {
            let mut batch = WriteBatch::new();
            let mut written: BTreeSet<&[u8]> = BTreeSet::new();
            let max_batch = self.options.max_batch_bytes;
            for c in commands {
                let verdict = match c {
                    Command::Write(_) => Ok(()),
                    Command::Txn { reads, .. } => match validate(view, reads) {
                        Ok(()) => match conflict_in_entry(reads, &written) {
                            Some(key) => Err(Error::Conflict { key }),
                            None => Ok(()),
                        },
                        Err(bedrock_txn::Error::Conflict { key }) => Err(Error::Conflict { key }),
                        Err(bedrock_txn::Error::Storage(e)) => return Err(e),
                        Err(e) => Err(Error::Storage(e)),
                    },
                };
                let verdict =
                    verdict.and_then(|()| check_batch(&self.options, c.writes(), batch.approximate_bytes(), max_batch));
                match verdict {
                    Ok(()) => {
                        for (kind, key, value) in c.writes().ops() {
                            match kind {
                                bedrock_sstable::ValueKind::Put => batch.put(key, value),
                                _ => batch.delete(key),
                            }
                            written.insert(key);
                        }
                        results.push(Ok(index));
                    }
                    Err(e) => results.push(Err(e)),
                }
            }
            Ok(batch)
        });
        match outcome {
            Ok(_) => {}
            // Deterministic input errors were filtered above; anything else
            // is a storage failure.
            Err(e) => return Err(e.into()),
        }
        self.applied.store(index, Ordering::Release);
        Ok(results)
    }

    /// Applies an entry without commands (a leader's empty entry or a
    /// configuration change): advances the sequence number only.
    ///
    /// # Errors
    /// Storage failures.
    pub fn apply_empty(&self, index: u64) -> Result<()> {
        self.apply(index, &[]).map(|_| ())
    }

    /// Flushes the memtable in the background if none is running (to let
    /// the log be compacted).
    pub fn flush_in_background(self: &Arc<Self>) {
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let sm = self.clone();
        let spawned = std::thread::Builder::new().name("bedrock-raft-flush".into()).spawn(move || {
            if let Err(e) = sm.db().flush() {
                tracing::error!(error = %e, "background flush of the state machine failed");
            }
            sm.checkpointing.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.checkpointing.store(false, Ordering::Release);
        }
    }

    /// Directory of the finished checkpoint at `index`, if it exists.
    pub fn snapshot_dir(&self, index: u64) -> Option<PathBuf> {
        let dir = self.root.join("snapshots").join(format!("send-{index}"));
        dir.join("CURRENT").exists().then_some(dir)
    }

    /// Where a snapshot at (`index`, `term`) is received.
    pub fn receive_dir(&self, index: u64, term: u64) -> PathBuf {
        self.root.join("snapshots").join(format!("recv-{index}-{term}"))
    }

    /// Replaces the state with the snapshot received in
    /// [`StateMachine::receive_dir`]`(index, term)` (complete and synced,
    /// with a `COMPLETE` marker).
    ///
    /// # Errors
    /// [`Error::Io`] if the directory is missing or incomplete or a rename
    /// fails; storage errors opening it.
    pub fn install(&self, index: u64, term: u64) -> Result<()> {
        let received = self.receive_dir(index, term);
        if !received.join("COMPLETE").exists() {
            return Err(Error::io(
                "install snapshot",
                &received,
                std::io::Error::new(std::io::ErrorKind::NotFound, "snapshot files missing or incomplete"),
            ));
        }
        let mut generation = self.generation.lock();
        let next = *generation + 1;
        let target = self.root.join(format!("kv-{next}"));
        std::fs::rename(&received, &target).map_err(|e| Error::io("rename", &target, e))?;
        let _ = std::fs::remove_file(target.join("COMPLETE"));
        sync_dir(&self.root)?;
        let mut options = self.options.clone();
        options.dir = target;
        let db = Db::open(options)?;
        if db.last_sequence() != index {
            tracing::warn!(index, db_sequence = db.last_sequence(), "snapshot sequence differs from its index");
        }
        write_current(&self.root, next)?;
        let old = std::mem::replace(&mut *self.db.write(), db);
        let old_generation = std::mem::replace(&mut *generation, next);
        drop(old);
        let old_dir = self.root.join(format!("kv-{old_generation}"));
        if let Err(e) = std::fs::remove_dir_all(&old_dir) {
            tracing::warn!(dir = %old_dir.display(), error = %e, "cannot remove the replaced state machine");
        }
        self.applied.store(index, Ordering::Release);
        self.snapshots_installed.fetch_add(1, Ordering::Relaxed);
        tracing::info!(index, term, generation = next, "snapshot installed");
        Ok(())
    }

    /// Makes a checkpoint for sending in the background.
    fn start_checkpoint(self: &Arc<Self>) {
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let sm = self.clone();
        let spawned = std::thread::Builder::new().name("bedrock-raft-checkpoint".into()).spawn(move || {
            if let Err(e) = sm.make_checkpoint() {
                tracing::error!(error = %e, "checkpoint for a snapshot failed");
            }
            sm.checkpointing.store(false, Ordering::Release);
        });
        if spawned.is_err() {
            self.checkpointing.store(false, Ordering::Release);
        }
    }

    fn make_checkpoint(&self) -> Result<()> {
        let snapshots = self.root.join("snapshots");
        let tmp = snapshots.join(format!("tmp-{}", std::process::id()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove_dir_all", &tmp, e))?;
        }
        let index = self.db().lsm().checkpoint(&tmp)?;
        let dir = snapshots.join(format!("send-{index}"));
        if dir.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io("remove_dir_all", &tmp, e))?;
        } else {
            std::fs::rename(&tmp, &dir).map_err(|e| Error::io("rename", &dir, e))?;
        }
        let mut cp = self.checkpoint.lock();
        if !cp.ready.contains(&index) {
            cp.ready.push(index);
        }
        // Keep the two newest: one may be streaming while the next is made.
        while cp.ready.len() > 2 {
            let old = cp.ready.remove(0);
            let _ = std::fs::remove_dir_all(snapshots.join(format!("send-{old}")));
        }
        tracing::info!(index, "checkpoint ready for snapshots");
        Ok(())
    }
}

/// The [`SnapshotSource`] of a state machine.
#[derive(Debug, Clone)]
pub struct CheckpointSource(pub Arc<StateMachine>);

impl SnapshotSource for CheckpointSource {
    fn ready_snapshot(&self, min_index: u64) -> Option<u64> {
        let newest = self.0.checkpoint.lock().ready.last().copied();
        match newest {
            Some(index) if index >= min_index && self.0.snapshot_dir(index).is_some() => Some(index),
            _ => {
                self.0.start_checkpoint();
                None
            }
        }
    }
}

fn check_batch(options: &bedrock_lsm::Options, writes: &WriteBatch, so_far: usize, max: usize) -> Result<()> {
    for (_, key, value) in writes.ops() {
        if key.is_empty() || key.len() > options.max_key_bytes || value.len() > options.max_value_bytes {
            return Err(Error::InvalidArgument(format!(
                "key of {} bytes or value of {} bytes outside the limits (keys 1..={}, values <= {})",
                key.len(),
                value.len(),
                options.max_key_bytes,
                options.max_value_bytes
            )));
        }
    }
    if so_far + writes.approximate_bytes() > max {
        return Err(Error::InvalidArgument(format!("write batch exceeds {max} bytes")));
    }
    Ok(())
}

/// A key read by the transaction that an earlier command of the same
/// entry wrote (it would see a version newer than it observed).
fn conflict_in_entry(reads: &bedrock_txn::ReadSet, written: &BTreeSet<&[u8]>) -> Option<Vec<u8>> {
    if let Some(k) = reads.keys.keys().find(|k| written.contains(k.as_slice())) {
        return Some(k.clone());
    }
    for r in &reads.ranges {
        let hit = written
            .range::<[u8], _>((std::ops::Bound::Included(r.start.as_slice()), std::ops::Bound::Unbounded))
            .next()
            .filter(|k| r.end.as_deref().is_none_or(|end| **k < end));
        if hit.is_some() {
            return Some(r.start.clone());
        }
    }
    None
}

fn write_current(root: &Path, generation: u64) -> Result<()> {
    let tmp = root.join("KV_CURRENT.tmp");
    let path = root.join("KV_CURRENT");
    std::fs::write(&tmp, format!("kv-{generation}\n")).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
    sync_dir(root)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io("fsync directory", dir, e))
}

/// Removes state machine generations other than `live` and leftover
/// snapshot directories (from before a crash).
fn remove_stale(root: &Path, live: u64) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("kv-") && name != format!("kv-{live}") {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    if let Ok(entries) = std::fs::read_dir(root.join("snapshots")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("send-") || name.starts_with("tmp-") {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
