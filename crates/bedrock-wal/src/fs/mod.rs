//! The narrow file-system interface every Bedrock storage layer goes through.
//!
//! Two implementations: [`RealFs`] on the operating system, and [`FaultFs`],
//! an in-memory file system for tests that separates bytes that were written
//! (*live*) from bytes a power cut would keep (*durable*), and can inject
//! I/O errors. The trait is modelled on raft-engine's `env` module and
//! pebble's `vfs`.
//!
//! All methods return `std::io::Error`; callers attach the path and
//! operation when they turn it into their crate's error.

mod fault;
mod real;

use std::fmt::Debug;
use std::io;
use std::ops::Deref;
use std::path::Path;

pub use fault::{FaultFs, FaultKind, Injection, OpKind};
pub use real::RealFs;

/// A file system: namespace operations plus opening files.
///
/// Durability contract (the same as POSIX): file contents are durable after
/// [`File::sync_data`]; the existence of a new name (create, rename, link,
/// remove) is durable only after [`FileSystem::sync_dir`] on its parent.
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates `path` (truncating an existing file) for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Opens an existing file for reading and writing.
    /// Errors with `NotFound` if it does not exist.
    fn open(&self, path: &Path) -> io::Result<Box<dyn File>>;
    /// Names (not paths) of the entries in `dir`, in no particular order.
    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its missing parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// True if `path` names an existing file or directory.
    fn exists(&self, path: &Path) -> bool;
    /// Creates `to` as a hard link to `from` (used by checkpoints).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Takes an exclusive advisory lock on `path` (created if missing),
    /// held until the returned guard drops. A second lock on the same path,
    /// from this or another process, fails with `WouldBlock`.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>>;
}

/// An open file. Reads and writes are positional, so a file can be shared
/// between threads without a cursor.
pub trait File: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read
    /// (0 at end of file).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True if the file has no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Truncates or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for the first `len` bytes so later writes into
    /// them do not allocate (`fallocate(2)`); the file reads as zeros there.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes the contents durable (`fdatasync(2)`).
    fn sync_data(&self) -> io::Result<()>;
    /// Asks the OS to start writing `len` bytes at `offset` back to the
    /// device now, without waiting for them and without any durability
    /// promise (`sync_file_range(2)` with `SYNC_FILE_RANGE_WRITE`, RocksDB's
    /// `bytes_per_sync`). Spreads the writeback of a large file over its
    /// writing instead of leaving it all to the final
    /// [`File::sync_data`]. A hint: the default does nothing.
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }
    /// A read-only view of the whole file: an mmap on [`RealFs`], a copy on
    /// [`FaultFs`]. The view must not be used after the file is rewritten.
    fn map(&self) -> io::Result<FileBytes>;

    /// Reads exactly `buf.len()` bytes at `offset`; `UnexpectedEof` if the
    /// file is shorter.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.read_at(buf, offset)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file too short"));
            }
            buf = &mut buf[n..];
            offset += n as u64;
        }
        Ok(())
    }
}

/// Immutable bytes of a whole file: memory-mapped or owned.
#[derive(Debug)]
pub struct FileBytes(BytesInner);

#[derive(Debug)]
enum BytesInner {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Wraps an owned buffer.
    pub fn from_vec(bytes: Vec<u8>) -> Self {
        FileBytes(BytesInner::Owned(bytes))
    }

    fn from_mmap(map: memmap2::Mmap) -> Self {
        FileBytes(BytesInner::Mmap(map))
    }
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            BytesInner::Mmap(m) => m,
            BytesInner::Owned(v) => v,
        }
    }
}

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Reads a whole file into memory.
pub fn read_all(fs: &dyn FileSystem, path: &Path) -> io::Result<Vec<u8>> {
    let file = fs.open(path)?;
    let len = usize::try_from(file.len()?).map_err(|_| io::Error::other("file too large"))?;
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// Writes `bytes` to `path` durably and atomically: a temporary file is
/// written and synced, renamed over `path`, and the directory is synced.
pub fn write_atomic(fs: &dyn FileSystem, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let file = fs.create(&tmp)?;
    file.write_at(bytes, 0)?;
    file.sync_data()?;
    drop(file);
    fs.rename(&tmp, path)?;
    fs.sync_dir(dir)
}
