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
    let mut core = inner.core.lock();
    let log_number = core.imms.get(1).map_or(core.mem.first_segment, |m| m.first_segment);
    let last_seq = mem.max_seq().max(core.last_flushed_seq);
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
    log_and_apply(inner, &mut core, &edit, &opened)?;
    core.imms.pop_front();
    core.last_flushed_seq = last_seq;
    core.log_number = log_number;
    let old = inner.publish(&core);
    drop(core);
    drop(old);
    Counters::add(&inner.counters.flushes, 1);
    inner.wal.discard_before(log_number)?;
    tracing::debug!(file = number, entries = mem.len(), "flushed memtable");
    Ok(())
}

/// Appends `edit` to the manifest (rewriting the manifest if it grew too
/// large) and installs the resulting version. Called with the core lock.
pub(crate) fn log_and_apply(
    inner: &Inner,
    core: &mut crate::db::Core,
    edit: &VersionEdit,
    opened: &[Arc<FileMeta>],
) -> Result<()> {
    let version = core.version.apply(edit, opened);
    if cfg!(debug_assertions) {
        version.check_invariants().map_err(|reason| Error::Corruption {
            path: inner.dir.clone(),
            offset: 0,
            reason: format!("compaction produced an invalid version: {reason}"),
        })?;
    }
    if core.manifest.size() > MAX_MANIFEST_BYTES {
        let number = inner.next_file.fetch_add(1, Ordering::Relaxed);
        let mut snapshot = VersionEdit {
            log_number: Some(edit.log_number.unwrap_or(core.log_number)),
            last_sequence: Some(edit.last_sequence.unwrap_or(core.last_flushed_seq)),
            next_file_number: Some(number + 1),
            ..VersionEdit::default()
        };
        snapshot.added = version.all_files().map(|(l, f)| (l, f.new_file())).collect();
        let old = crate::manifest::manifest_name(core.manifest.number());
        core.manifest = crate::manifest::Manifest::create(&*inner.fs, &inner.dir, number, &snapshot)?;
        let old_path = inner.dir.join(old);
        if let Err(e) = inner.fs.remove(&old_path) {
            tracing::warn!(file = %old_path.display(), error = %e, "could not remove old manifest");
        }
    } else {
        core.manifest.append(edit)?;
    }
    core.version = Arc::new(version);
    Ok(())
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
