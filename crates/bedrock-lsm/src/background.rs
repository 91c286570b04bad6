//! Background work: one thread flushes immutable memtables, oldest first;
//! `background_compactions` threads run compactions. Flushing has its own
//! thread so a long compaction never delays it (RocksDB keeps separate
//! flush and compaction pools for the same reason).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use bedrock_sstable::{decode_internal_key, TableBuilder, ValueKind};
use bedrock_wal::FileSystem;

use crate::compaction;
use crate::db::{table_name, Inner};
use crate::iter::InternalIterator;
use crate::memtable::Memtable;
use crate::stats::Counters;
use crate::version::{FileMeta, VersionEdit};
use crate::{Error, Options, Result};

/// Manifests are rewritten from a snapshot once they pass this size.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Starts the flush thread and `background_compactions` compaction threads.
pub(crate) fn spawn(inner: Arc<Inner>) -> Result<Vec<JoinHandle<()>>> {
    let mut handles = Vec::new();
    let flusher = inner.clone();
    handles.push(spawn_named("bedrock-flush", move || flush_loop(&flusher))?);
    for i in 0..inner.opts.background_compactions {
        let worker = inner.clone();
        handles.push(spawn_named(&format!("bedrock-compact-{i}"), move || compaction_loop(&worker))?);
    }
    Ok(handles)
}

fn spawn_named(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| Error::io("spawn thread", Path::new(name), e))
}

/// Flushes immutable memtables, oldest first, one at a time.
fn flush_loop(inner: &Inner) {
    loop {
        let mem = {
            let mut core = inner.core.lock();
            loop {
                if core.shutdown {
                    return;
                }
                if core.bg_error.is_none() {
                    if let Some(mem) = core.imms.front().cloned() {
                        core.flushing = true;
                        break mem;
                    }
                }
                inner.core_cv.wait(&mut core);
            }
        };
        let result = flush(inner, &mem);
        let mut core = inner.core.lock();
        core.flushing = false;
        if let Err(e) = result {
            inner.set_bg_error(&mut core, &e);
        }
        inner.core_cv.notify_all();
    }
}

/// Runs compactions while some level's score is >= 1.
fn compaction_loop(inner: &Inner) {
    loop {
        let job = {
            let mut core = inner.core.lock();
            loop {
                if core.shutdown {
                    return;
                }
                if core.bg_error.is_none() {
                    if let Some(c) = compaction::pick(&inner.opts, &core) {
                        core.running.push(c.running());
                        break c;
                    }
                }
                inner.core_cv.wait(&mut core);
            }
        };
        let id = job.id;
        let result = compaction::run(inner, job);
        let mut core = inner.core.lock();
        core.running.retain(|r| r.id != id);
        if let Err(e) = result {
            inner.set_bg_error(&mut core, &e);
        }
        inner.core_cv.notify_all();
    }
}

/// Flushes the oldest immutable memtable to an L0 SSTable and records it,
/// with the new WAL log number and last flushed sequence, in the manifest.
fn flush(inner: &Inner, mem: &Arc<Memtable>) -> Result<()> {
    if inner.wal.is_poisoned() {
        return Err(Error::Poisoned("WAL is poisoned; refusing to flush unsynced data".into()));
    }
    // The WAL segments holding this memtable are not synced: once its
    // SSTable is recorded they are deleted unread (`discard_before`).
    // Under `SyncPolicy::Always` every record in them was synced by its
    // commit; under `Never` and `EveryMs` a power cut before the record
    // loses what the OS had not written back, as it would anyway.
    let number = inner.next_file.fetch_add(1, Ordering::Relaxed);
    let (snapshots, floor) = inner.snapshots.sorted_with_floor(&inner.visible_seq);
    let slot = inner.jobs.flush();
    let meta = write_l0_table(&inner.fs, &inner.dir, &inner.opts, mem, number, &snapshots, floor);
    drop(slot);
    let meta = meta?;
    let mut manifest = inner.manifest.lock();
    let (base, log_number, last_seq) = {
        let core = inner.core.lock();
        let log_number = core.imms.get(1).map_or(core.mem.first_segment, |m| m.first_segment);
        (Base::of(&core), log_number, mem.max_seq().max(core.last_flushed_seq))
    };
    let mut edit = VersionEdit {
        log_number: Some(log_number),
        last_sequence: Some(last_seq),
        next_file_number: Some(inner.next_file.load(Ordering::Relaxed)),
        ..VersionEdit::default()
    };
    let opened: Vec<Arc<FileMeta>> = meta.into_iter().collect();
    for m in &opened {
        edit.added.push((0, m.new_file()));
        Counters::add(&inner.counters.flush_bytes, m.size);
    }
    let version = log_edit(inner, &mut manifest, &base, &edit, &opened)?;
    let mut core = inner.core.lock();
    core.version = Arc::new(version);
    core.imms.pop_front();
    core.last_flushed_seq = last_seq;
    core.log_number = log_number;
    let old = inner.publish(&core);
    drop(core);
    drop(manifest);
    drop(old);
    Counters::add(&inner.counters.flushes, 1);
    inner.wal.discard_before(log_number)?;
    tracing::debug!(file = number, entries = mem.len(), "flushed memtable");
    Ok(())
}

/// What a manifest edit is applied to: the current version and the log
/// position a rewritten manifest's snapshot must record. Read under the
/// core lock by a caller that holds [`Inner::manifest`], so it stays
/// current until that caller installs its result (only holders of the
/// manifest lock change these fields).
pub(crate) struct Base {
    version: Arc<crate::version::Version>,
    log_number: u64,
    last_flushed_seq: u64,
}

impl Base {
    pub(crate) fn of(core: &crate::db::Core) -> Base {
        Base { version: core.version.clone(), log_number: core.log_number, last_flushed_seq: core.last_flushed_seq }
    }
}

/// Appends `edit` to `manifest` (rewriting the manifest from a snapshot
/// if it grew past [`MAX_MANIFEST_BYTES`]) and returns the version it
/// makes of `base`. Called with the manifest lock and without the core
/// lock, so the append and its fsync never hold up writers; the caller
/// installs the returned version under the core lock before it releases
/// the manifest lock.
///
/// # Errors
/// [`Error::Io`] if the manifest cannot be written or synced (the caller
/// records it as a background error); [`Error::Corruption`] in debug
/// builds if the edit breaks a version invariant.
pub(crate) fn log_edit(
    inner: &Inner,
    manifest: &mut crate::manifest::Manifest,
    base: &Base,
    edit: &VersionEdit,
    opened: &[Arc<FileMeta>],
) -> Result<crate::version::Version> {
    let version = base.version.apply(edit, opened);
    if cfg!(debug_assertions) {
        version.check_invariants().map_err(|reason| Error::Corruption {
            path: inner.dir.clone(),
            offset: 0,
            reason: format!("compaction produced an invalid version: {reason}"),
        })?;
    }
    if manifest.size() > MAX_MANIFEST_BYTES {
        let number = inner.next_file.fetch_add(1, Ordering::Relaxed);
        let mut snapshot = VersionEdit {
            log_number: Some(edit.log_number.unwrap_or(base.log_number)),
            last_sequence: Some(edit.last_sequence.unwrap_or(base.last_flushed_seq)),
            next_file_number: Some(number + 1),
            ..VersionEdit::default()
        };
        snapshot.added = version.all_files().map(|(l, f)| (l, f.new_file())).collect();
        let old = crate::manifest::manifest_name(manifest.number());
        *manifest = crate::manifest::Manifest::create(&*inner.fs, &inner.dir, number, &snapshot)?;
        let old_path = inner.dir.join(old);
        if let Err(e) = inner.fs.remove(&old_path) {
            tracing::warn!(file = %old_path.display(), error = %e, "could not remove old manifest");
        }
    } else {
        manifest.append(edit)?;
    }
    Ok(version)
}

/// Writes the contents of `mem` as SSTable `number` (synced, directory
/// synced) and opens it; `None` if nothing survives the snapshot filter.
pub(crate) fn write_l0_table(
    fs: &Arc<dyn FileSystem>,
    dir: &Path,
    opts: &Options,
    mem: &Arc<Memtable>,
    number: u64,
    snapshots: &[u64],
    floor: u64,
) -> Result<Option<Arc<FileMeta>>> {
    let mut it = mem.iter();
    it.seek_to_first();
    let mut filter = compaction::VersionFilter::new(snapshots, false, floor);
    let path = dir.join(table_name(number));
    let file = fs.create(&path).map_err(|e| Error::io("create", &path, e))?;
    let mut builder = TableBuilder::new(file, path.clone(), opts.table_options_for(0));
    while it.valid() {
        let Some((user_key, seq, kind)) = decode_internal_key(it.key()) else {
            return Err(Error::Corruption { path, offset: 0, reason: "malformed key in memtable".into() });
        };
        if filter.keep(user_key, seq, kind == ValueKind::Delete) {
            builder.add(it.key(), it.value())?;
        }
        it.next();
    }
    if builder.entries() == 0 {
        drop(builder);
        fs.remove(&path).map_err(|e| Error::io("remove", &path, e))?;
        return Ok(None);
    }
    let summary = builder.finish()?;
    fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))?;
    Inner::open_table(&**fs, dir, number, summary.smallest, summary.largest).map(Some)
}
