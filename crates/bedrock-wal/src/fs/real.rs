//! [`RealFs`]: the operating system's file system.

use std::fmt::Debug;
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use super::{File, FileBytes, FileSystem};

/// The operating system's file system (Linux and other Unixes).
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

impl RealFs {
    /// A shared handle, the form storage layers take.
    pub fn shared() -> std::sync::Arc<dyn FileSystem> {
        std::sync::Arc::new(RealFs)
    }
}

#[derive(Debug)]
struct RealFile(fs::File);

impl FileSystem for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn File>> {
        let f = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn read_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::hard_link(from, to)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Debug + Send + Sync>> {
        let f = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        // SAFETY: flock on a file descriptor we own; it has no memory effects.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                io::Error::new(io::ErrorKind::WouldBlock, "locked by another process")
            } else {
                err
            });
        }
        // The lock lives as long as the descriptor; dropping the guard closes it.
        Ok(Box::new(f))
    }
}

impl File for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        let len = libc::off_t::try_from(len).map_err(|_| io::Error::other("length overflows off_t"))?;
        // SAFETY: fallocate on a descriptor we own; no memory is touched.
        let rc = unsafe { libc::fallocate(self.0.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOPNOTSUPP) {
            // tmpfs and some others: fall back to a sparse extension.
            return self.0.set_len(len as u64);
        }
        Err(err)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) -> io::Result<()> {
        let off = libc::off64_t::try_from(offset).map_err(|_| io::Error::other("offset overflows off64_t"))?;
        let len = libc::off64_t::try_from(len).map_err(|_| io::Error::other("length overflows off64_t"))?;
        // SAFETY: sync_file_range on a descriptor we own; no memory is touched.
        let rc = unsafe { libc::sync_file_range(self.0.as_raw_fd(), off, len, libc::SYNC_FILE_RANGE_WRITE) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        // Some file systems do not support it; it is only a hint.
        if matches!(err.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::ESPIPE)) {
            return Ok(());
        }
        Err(err)
    }

    fn map(&self) -> io::Result<FileBytes> {
        if self.0.metadata()?.len() == 0 {
            return Ok(FileBytes::from_vec(Vec::new()));
        }
        // SAFETY: Bedrock maps only immutable files (finished SSTables) or
        // files it does not write while the map is alive; a concurrent
        // truncation by another process would be a misuse of the data
        // directory, which the directory lock guards against.
        let map = unsafe { memmap2::Mmap::map(&self.0)? };
        Ok(FileBytes::from_mmap(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writeback_hints_leave_the_contents_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let fs = RealFs::shared();
        let path = dir.path().join("t");
        let file = fs.create(&path).unwrap();
        let data: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
        file.write_at(&data, 0).unwrap();
        file.start_writeback(0, 1 << 20).unwrap();
        file.start_writeback(1 << 20, 2 << 20).unwrap();
        file.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
