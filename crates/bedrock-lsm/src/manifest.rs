//! The manifest: a log of [`VersionEdit`]s naming the live SSTables, and
//! the `CURRENT` file naming the live manifest.
//!
//! Records use the WAL's framing (`crc32 | len | payload`). A new manifest
//! starts with one edit describing the whole version; `CURRENT` is switched
//! to it by writing `CURRENT.tmp`, fsyncing it, renaming it over `CURRENT`
//! and fsyncing the directory, so a crash leaves either the old or the new
//! manifest in effect, never neither.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bedrock_wal::record::{self, ScanEnd};
use bedrock_wal::{File, FileSystem};

use crate::version::{NewFile, VersionEdit};
use crate::{Error, Result};

/// Name of the file that names the live manifest.
pub(crate) const CURRENT: &str = "CURRENT";

/// Largest manifest record accepted on read, in bytes.
const MAX_EDIT_BYTES: usize = 64 << 20;

pub(crate) fn manifest_name(number: u64) -> String {
    format!("MANIFEST-{number:06}")
}

/// The state a manifest describes after all its edits are applied.
#[derive(Debug, Default)]
pub(crate) struct ManifestState {
    pub(crate) number: u64,
    pub(crate) log_number: u64,
    pub(crate) next_file_number: u64,
    pub(crate) last_sequence: u64,
    /// file number -> (level, file)
    pub(crate) files: BTreeMap<u64, (usize, NewFile)>,
}

impl ManifestState {
    fn apply(&mut self, edit: VersionEdit) {
        if let Some(n) = edit.log_number {
            self.log_number = self.log_number.max(n);
        }
        if let Some(n) = edit.next_file_number {
            self.next_file_number = self.next_file_number.max(n);
        }
        if let Some(s) = edit.last_sequence {
            self.last_sequence = self.last_sequence.max(s);
        }
        for (level, number) in edit.deleted {
            if self.files.get(&number).is_some_and(|(l, _)| *l == level) {
                self.files.remove(&number);
            }
        }
        for (level, file) in edit.added {
            self.next_file_number = self.next_file_number.max(file.number + 1);
            self.files.insert(file.number, (level, file));
        }
    }
}

/// Reads `CURRENT` and the manifest it names. `Ok(None)` if there is no
/// `CURRENT` (a new database).
///
/// # Errors
/// [`Error::Corruption`] if `CURRENT` is malformed, the manifest is missing,
/// or a manifest record other than a torn tail is damaged.
pub(crate) fn load(fs: &dyn FileSystem, dir: &Path, num_levels: usize) -> Result<Option<ManifestState>> {
    let current_path = dir.join(CURRENT);
    if !fs.exists(&current_path) {
        return Ok(None);
    }
    let current = bedrock_wal::fs::read_all(fs, &current_path).map_err(|e| Error::io("read", &current_path, e))?;
    let name = std::str::from_utf8(&current).ok().and_then(|s| s.strip_suffix('\n')).filter(|s| {
        s.strip_prefix("MANIFEST-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    let Some(name) = name else {
        return Err(Error::Corruption {
            path: current_path,
            offset: 0,
            reason: "CURRENT does not name a manifest".into(),
        });
    };
    let number = name.trim_start_matches("MANIFEST-").parse::<u64>().map_err(|_| Error::Corruption {
        path: current_path.clone(),
        offset: 0,
        reason: "manifest number out of range".into(),
    })?;
    let path = dir.join(name);
    let data = bedrock_wal::fs::read_all(fs, &path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            Error::Corruption { path: path.clone(), offset: 0, reason: "manifest named by CURRENT is missing".into() }
        }
        _ => Error::io("read", &path, e),
    })?;
    let mut state = ManifestState { number, ..ManifestState::default() };
    let mut edits = 0u64;
    let end = record::scan(&data, MAX_EDIT_BYTES, |offset, payload| {
        let edit = VersionEdit::decode(payload, num_levels).map_err(|reason| Error::Corruption {
            path: path.clone(),
            offset,
            reason: format!("bad version edit: {reason}"),
        })?;
        state.apply(edit);
        edits += 1;
        Ok::<(), Error>(())
    })?;
    // `CURRENT` is switched to a manifest only after its first edit (the
    // whole version) is synced, so a named manifest without one was damaged.
    if edits == 0 {
        return Err(Error::Corruption {
            path,
            offset: 0,
            reason: "the manifest named by CURRENT holds no complete version edit".into(),
        });
    }
    if let ScanEnd::Damaged { offset, reason, tail } = end {
        if !tail {
            return Err(Error::Corruption { path, offset, reason });
        }
        // The edit being written when the process died was never
        // acknowledged (the flush or compaction it describes did not
        // finish); the manifest is rewritten on open, so nothing is cut here.
        tracing::warn!(file = %path.display(), offset, %reason, "manifest: ignoring torn tail");
    }
    if state.number == 0 || state.files.keys().any(|&n| n >= state.next_file_number) {
        return Err(Error::Corruption { path, offset: 0, reason: "inconsistent file numbers".into() });
    }
    Ok(Some(state))
}

/// An open manifest being appended to.
#[derive(Debug)]
pub(crate) struct Manifest {
    file: Box<dyn File>,
    path: PathBuf,
    offset: u64,
    number: u64,
}

impl Manifest {
    /// Writes a new manifest holding `snapshot`, makes it durable, and
    /// switches `CURRENT` to it.
    pub(crate) fn create(fs: &dyn FileSystem, dir: &Path, number: u64, snapshot: &VersionEdit) -> Result<Manifest> {
        let path = dir.join(manifest_name(number));
        let file = fs.create(&path).map_err(|e| Error::io("create", &path, e))?;
        let mut m = Manifest { file, path, offset: 0, number };
        m.append(snapshot)?;
        let current = format!("{}\n", manifest_name(number));
        bedrock_wal::fs::write_atomic(fs, &dir.join(CURRENT), current.as_bytes())
            .map_err(|e| Error::io("write CURRENT", dir.join(CURRENT), e))?;
        Ok(m)
    }

    /// Appends one edit and fsyncs it.
    pub(crate) fn append(&mut self, edit: &VersionEdit) -> Result<()> {
        let mut buf = Vec::new();
        record::encode(&edit.encode(), &mut buf);
        self.file.write_at(&buf, self.offset).map_err(|e| Error::io("write", &self.path, e))?;
        self.file.sync_data().map_err(|e| Error::io("sync_data", &self.path, e))?;
        self.offset += buf.len() as u64;
        Ok(())
    }

    pub(crate) fn size(&self) -> u64 {
        self.offset
    }

    pub(crate) fn number(&self) -> u64 {
        self.number
    }
}
