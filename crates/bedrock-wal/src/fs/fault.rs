//! [`FaultFs`]: an in-memory file system that models power cuts and injects
//! I/O errors.
//!
//! Each file keeps its *live* bytes (what reads see) and its *durable* bytes
//! (what survives a power cut), plus the list of writes made since the last
//! successful `sync_data`. The namespace likewise has a live and a durable
//! view; a directory's entries become durable at `sync_dir`. [`FaultFs::crash`]
//! builds the image a power cut would leave: names that were never made
//! durable vanish, and of each file's unsynced writes a random prefix
//! survives (the last one possibly cut short), chosen by a seeded RNG so a
//! failing case reproduces. The model follows pebble's `vfs.MemFS`
//! (`CrashClone`) and LevelDB's `fault_injection_test`.
//!
//! Directories are treated as durable as soon as they are created.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{File, FileBytes, FileSystem};

/// The file-system operations an [`Injection`] can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `FileSystem::create`.
    Create,
    /// `File::write_at`.
    Write,
    /// `File::set_len` and `File::allocate`.
    SetLen,
    /// `File::sync_data`.
    Sync,
    /// `FileSystem::sync_dir`.
    SyncDir,
    /// `FileSystem::rename`.
    Rename,
    /// `FileSystem::remove`.
    Remove,
    /// `File::read_at` and `File::map`.
    Read,
}

/// The error an injection produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `EIO`: a generic I/O error.
    Eio,
    /// `ENOSPC`: no space left on the device.
    Enospc,
}

impl FaultKind {
    fn to_error(self) -> io::Error {
        match self {
            FaultKind::Eio => io::Error::from_raw_os_error(libc::EIO),
            FaultKind::Enospc => io::Error::from_raw_os_error(libc::ENOSPC),
        }
    }
}

/// A rule that makes a matching operation fail.
#[derive(Debug, Clone)]
pub struct Injection {
    /// Which operation fails.
    pub op: OpKind,
    /// Only paths containing this string match; `None` matches every path.
    pub path_contains: Option<String>,
    /// How many matching operations succeed before the first failure.
    pub after: u64,
    /// The error returned.
    pub kind: FaultKind,
    /// Keep failing every later matching operation (a dead disk) instead of
    /// failing once.
    pub sticky: bool,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default, Clone)]
struct Node {
    live: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    live: BTreeMap<PathBuf, Entry>,
    durable: BTreeMap<PathBuf, Entry>,
    injections: Vec<(Injection, u64)>,
    mutations: u64,
    mutation_limit: Option<u64>,
    locks: HashSet<PathBuf>,
    /// Bytes covered by `start_writeback` hints so far.
    writeback_hinted: u64,
}

/// An in-memory, fault-injecting file system for tests. Cloning shares the
/// same state.
#[derive(Debug, Clone, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct FaultFile {
    state: Arc<Mutex<State>>,
    ino: u64,
    path: PathBuf,
}

#[derive(Debug)]
struct LockGuard {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

impl FaultFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an error-injection rule.
    pub fn inject(&self, injection: Injection) {
        self.state.lock().injections.push((injection, 0));
    }

    /// Removes every injection rule and the mutation limit.
    pub fn clear_faults(&self) {
        let mut s = self.state.lock();
        s.injections.clear();
        s.mutation_limit = None;
    }

    /// How many mutating operations (create, write, set_len, sync, sync_dir,
    /// rename, remove, link) have been attempted so far.
    pub fn mutation_count(&self) -> u64 {
        self.state.lock().mutations
    }

    /// Bytes covered by [`File::start_writeback`] hints so far, over every
    /// file. The hints change nothing here: durability still takes
    /// [`File::sync_data`].
    pub fn writeback_hinted_bytes(&self) -> u64 {
        self.state.lock().writeback_hinted
    }

    /// After `limit` mutating operations, every further one fails with EIO,
    /// as if the machine had lost power at that point. Used to crash after
    /// each operation of a workload in turn (the ALICE method).
    pub fn set_mutation_limit(&self, limit: Option<u64>) {
        self.state.lock().mutation_limit = limit;
    }

    /// The image a power cut at this instant would leave, as a new file
    /// system with no faults. `seed` decides which unsynced writes survive.
    pub fn crash(&self, seed: u64) -> FaultFs {
        let s = self.state.lock();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut nodes = HashMap::new();
        for entry in s.durable.values() {
            let Entry::File(ino) = *entry else { continue };
            if nodes.contains_key(&ino) {
                continue;
            }
            let Some(node) = s.nodes.get(&ino) else { continue };
            let bytes = surviving_bytes(node, &mut rng);
            nodes.insert(ino, Node { live: bytes.clone(), durable: bytes, pending: Vec::new() });
        }
        let state = State {
            nodes,
            next_ino: s.next_ino,
            live: s.durable.clone(),
            durable: s.durable.clone(),
            ..State::default()
        };
        FaultFs { state: Arc::new(Mutex::new(state)) }
    }

    /// The live contents of `path`, for tests that corrupt or inspect files.
    pub fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        match s.live.get(path)? {
            Entry::File(ino) => s.nodes.get(ino).map(|n| n.live.clone()),
            Entry::Dir => None,
        }
    }

    /// Replaces the contents of `path` durably (for corruption tests).
    pub fn set_contents(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut s = self.state.lock();
        let Some(Entry::File(ino)) = s.live.get(path).copied() else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such file"));
        };
        let node = s.nodes.get_mut(&ino).ok_or_else(|| io::Error::other("dangling inode"))?;
        node.live = bytes.clone();
        node.durable = bytes;
        node.pending.clear();
        Ok(())
    }
}

fn surviving_bytes(node: &Node, rng: &mut SmallRng) -> Vec<u8> {
    let mut bytes = node.durable.clone();
    if node.pending.is_empty() {
        return bytes;
    }
    let keep = rng.gen_range(0..=node.pending.len());
    for (i, op) in node.pending.iter().take(keep).enumerate() {
        match op {
            Pending::SetLen(len) => bytes.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
            Pending::Write { offset, data } => {
                let last = i + 1 == keep;
                let n = if last && rng.gen_bool(0.5) { rng.gen_range(0..=data.len()) } else { data.len() };
                apply_write(&mut bytes, *offset, data.get(..n).unwrap_or(data));
            }
        }
    }
    bytes
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    let end = start.saturating_add(data.len());
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    if let Some(dst) = bytes.get_mut(start..end) {
        dst.copy_from_slice(data);
    }
}

fn parent_of(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl State {
    /// Applies the injection rules and the mutation limit to one operation.
    fn check(&mut self, op: OpKind, path: &Path) -> io::Result<()> {
        if op != OpKind::Read {
            self.mutations += 1;
            if self.mutation_limit.is_some_and(|limit| self.mutations > limit) {
                return Err(FaultKind::Eio.to_error());
            }
        }
        let path_str = path.to_string_lossy();
        let mut fired = None;
        for (idx, (inj, seen)) in self.injections.iter_mut().enumerate() {
            let matches = inj.op == op && inj.path_contains.as_deref().is_none_or(|p| path_str.contains(p));
            if !matches {
                continue;
            }
            *seen += 1;
            if *seen > inj.after {
                fired = Some((idx, inj.kind, inj.sticky));
                break;
            }
        }
        match fired {
            None => Ok(()),
            Some((idx, kind, sticky)) => {
                if !sticky {
                    self.injections.remove(idx);
                }
                Err(kind.to_error())
            }
        }
    }

    fn has_dir(&self, dir: &Path) -> bool {
        dir.as_os_str().is_empty() || dir == Path::new("/") || self.live.get(dir) == Some(&Entry::Dir)
    }

    fn file_ino(&self, path: &Path) -> io::Result<u64> {
        match self.live.get(path) {
            Some(Entry::File(ino)) => Ok(*ino),
            Some(Entry::Dir) => Err(io::Error::new(io::ErrorKind::IsADirectory, "is a directory")),
            None => Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", path.display()))),
        }
    }

    fn node(&mut self, ino: u64) -> io::Result<&mut Node> {
        self.nodes.get_mut(&ino).ok_or_else(|| io::Error::other("dangling inode"))
    }
}

impl FileSystem for FaultFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let mut s = self.state.lock();
        s.check(OpKind::Create, path)?;
        if !s.has_dir(&parent_of(path)) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "parent directory missing"));
        }
        // Truncating an existing file gives it a new inode here; names bound
        // to the old one (hard links, the durable view) keep the old bytes,
        // which is what O_TRUNC plus a crash before the dir sync can leave.
        let ino = s.next_ino;
        s.next_ino += 1;
        s.nodes.insert(ino, Node::default());
        s.live.insert(path.to_path_buf(), Entry::File(ino));
        Ok(Box::new(FaultFile { state: self.state.clone(), ino, path: path.to_path_buf() }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let s = self.state.lock();
        let ino = s.file_ino(path)?;
        Ok(Box::new(FaultFile { state: self.state.clone(), ino, path: path.to_path_buf() }))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        if !s.has_dir(dir) {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(s.live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        for anc in dir.ancestors() {
            if anc.as_os_str().is_empty() || anc == Path::new("/") {
                continue;
            }
            if let Some(Entry::File(_)) = s.live.get(anc) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file is in the way"));
            }
            s.live.insert(anc.to_path_buf(), Entry::Dir);
            s.durable.insert(anc.to_path_buf(), Entry::Dir);
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::Rename, from)?;
        let ino = s.file_ino(from)?;
        s.live.remove(from);
        s.live.insert(to.to_path_buf(), Entry::File(ino));
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::Remove, path)?;
        s.file_ino(path)?;
        s.live.remove(path);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::SyncDir, dir)?;
        let State { live, durable, .. } = &mut *s;
        durable.retain(|p, e| *e == Entry::Dir || p.parent() != Some(dir));
        for (p, e) in live.iter() {
            if p.parent() == Some(dir) {
                durable.insert(p.clone(), *e);
            }
        }
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.state.lock().live.contains_key(path)
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::Create, to)?;
        let ino = s.file_ino(from)?;
        if s.live.contains_key(to) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "link target exists"));
        }
        s.live.insert(to.to_path_buf(), Entry::File(ino));
        Ok(())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let mut s = self.state.lock();
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::Error::new(io::ErrorKind::WouldBlock, "already locked"));
        }
        if !s.live.contains_key(path) {
            let ino = s.next_ino;
            s.next_ino += 1;
            s.nodes.insert(ino, Node::default());
            s.live.insert(path.to_path_buf(), Entry::File(ino));
        }
        Ok(Box::new(LockGuard { state: self.state.clone(), path: path.to_path_buf() }))
    }
}

impl File for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = self.state.lock();
        s.check(OpKind::Read, &self.path)?;
        let node = s.node(self.ino)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(node.live.len());
        let src = node.live.get(start..).unwrap_or_default();
        let n = src.len().min(buf.len());
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(src.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::Write, &self.path)?;
        let node = s.node(self.ino)?;
        apply_write(&mut node.live, offset, buf);
        node.pending.push(Pending::Write { offset, data: buf.to_vec() });
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let mut s = self.state.lock();
        Ok(s.node(self.ino)?.live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::SetLen, &self.path)?;
        let node = s.node(self.ino)?;
        node.live.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
        node.pending.push(Pending::SetLen(len));
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::SetLen, &self.path)?;
        let node = s.node(self.ino)?;
        if (node.live.len() as u64) < len {
            node.live.resize(usize::try_from(len).map_err(io::Error::other)?, 0);
            node.pending.push(Pending::SetLen(len));
        }
        Ok(())
    }

    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        let size = s.node(self.ino)?.live.len() as u64;
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "writeback range past the end of the file"));
        }
        s.writeback_hinted += len;
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(OpKind::Sync, &self.path)?;
        let node = s.node(self.ino)?;
        for op in std::mem::take(&mut node.pending) {
            match op {
                Pending::Write { offset, data } => apply_write(&mut node.durable, offset, &data),
                Pending::SetLen(len) => node.durable.resize(usize::try_from(len).unwrap_or(usize::MAX), 0),
            }
        }
        debug_assert_eq!(node.durable.len(), node.live.len(), "after a sync the durable bytes equal the live bytes");
        Ok(())
    }

    fn map(&self) -> io::Result<FileBytes> {
        let mut s = self.state.lock();
        s.check(OpKind::Read, &self.path)?;
        Ok(FileBytes::from_vec(s.node(self.ino)?.live.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_file_vanishes_and_synced_survives() {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("d")).unwrap();
        let a = fs.create(Path::new("d/a")).unwrap();
        a.write_at(b"hello", 0).unwrap();
        a.sync_data().unwrap();
        let img = fs.crash(1);
        assert!(!img.exists(Path::new("d/a")), "name was never made durable by sync_dir");
        fs.sync_dir(Path::new("d")).unwrap();
        a.write_at(b" world", 5).unwrap();
        for seed in 0..20 {
            let img = fs.crash(seed);
            let bytes = img.contents(Path::new("d/a")).unwrap();
            assert!(bytes.starts_with(b"hello"), "synced prefix always survives");
            assert!(b"hello world".starts_with(&bytes), "unsynced tail survives only as a prefix");
        }
    }

    #[test]
    fn rename_is_durable_only_after_dir_sync() {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("d")).unwrap();
        let f = fs.create(Path::new("d/tmp")).unwrap();
        f.write_at(b"x", 0).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(Path::new("d")).unwrap();
        fs.rename(Path::new("d/tmp"), Path::new("d/final")).unwrap();
        let img = fs.crash(0);
        assert!(img.exists(Path::new("d/tmp")) && !img.exists(Path::new("d/final")));
        fs.sync_dir(Path::new("d")).unwrap();
        let img = fs.crash(0);
        assert!(!img.exists(Path::new("d/tmp")) && img.exists(Path::new("d/final")));
    }

    #[test]
    fn injection_fails_the_nth_matching_op_once() {
        let fs = FaultFs::new();
        fs.create_dir_all(Path::new("d")).unwrap();
        let f = fs.create(Path::new("d/a")).unwrap();
        fs.inject(Injection {
            op: OpKind::Sync,
            path_contains: None,
            after: 1,
            kind: FaultKind::Enospc,
            sticky: false,
        });
        f.sync_data().unwrap();
        let err = f.sync_data().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        f.sync_data().unwrap();
    }

    #[test]
    fn second_lock_fails_until_guard_drops() {
        let fs = FaultFs::new();
        let g = fs.lock(Path::new("LOCK")).unwrap();
        assert_eq!(fs.lock(Path::new("LOCK")).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(g);
        fs.lock(Path::new("LOCK")).unwrap();
    }
}
