//! Checkpoints: a point-in-time copy of the database that shares SSTables
//! with it through hard links.

use std::path::Path;
use std::sync::atomic::Ordering;

use crate::db::{table_name, Db};
use crate::manifest::Manifest;
use crate::version::VersionEdit;
use crate::{Error, Result};

impl Db {
    /// Writes a checkpoint of the database into `dir`, which must not
    /// exist yet: the memtables are flushed, every live SSTable is
    /// hard-linked into `dir`, and a manifest and `CURRENT` describing
    /// exactly those files are written and synced. `Db::open` on `dir`
    /// then opens an exact copy of the data as of the flush; the copy and
    /// the original evolve independently (SSTables are immutable, so
    /// sharing their inodes is safe). Returns the checkpoint's sequence
    /// number: every write up to it is in the copy. `dir` must be on the
    /// same file system as the database.
    ///
    /// # Errors
    /// [`Error::Io`] if `dir` exists or a link or write fails (a partial
    /// checkpoint directory may be left behind; it has no `CURRENT` and
    /// `Db::open` treats it as empty); [`Error::Poisoned`] after an
    /// earlier failure.
    pub fn checkpoint(&self, dir: &Path) -> Result<u64> {
        let inner = &*self.inner;
        let fs = &*inner.fs;
        if fs.exists(dir) {
            return Err(Error::io("checkpoint", dir, std::io::Error::new(std::io::ErrorKind::AlreadyExists, "exists")));
        }
        self.flush()?;
        // Hold the core lock so no compaction deletes a file between
        // reading the version and linking it.
        let core = inner.core.lock();
        inner.check_writable(&core)?;
        fs.create_dir_all(dir).map_err(|e| Error::io("create_dir_all", dir, e))?;
        let mut edit =
            VersionEdit { log_number: Some(0), last_sequence: Some(core.last_flushed_seq), ..VersionEdit::default() };
        for (level, f) in core.version.all_files() {
            let name = table_name(f.number);
            let (from, to) = (inner.dir.join(&name), dir.join(&name));
            fs.hard_link(&from, &to).map_err(|e| Error::io("hard_link", &to, e))?;
            edit.added.push((level, f.new_file()));
        }
        let number = inner.next_file.load(Ordering::Relaxed);
        edit.next_file_number = Some(number + 1);
        fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))?;
        Manifest::create(fs, dir, number, &edit)?;
        tracing::info!(dir = %dir.display(), sequence = core.last_flushed_seq, files = edit.added.len(), "checkpoint written");
        Ok(core.last_flushed_seq)
    }
}
