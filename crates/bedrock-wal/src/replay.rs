//! Replay of existing segments on open, with torn-tail handling.

use std::path::{Path, PathBuf};

use crate::fs::FileSystem;
use crate::record::{self, ScanEnd};
use crate::segment::{list_segments, segment_path};
use crate::{Error, LogPosition, RecoveryMode, WalOptions};

/// What [`replay`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Segments read, ascending.
    pub segments: Vec<u64>,
    /// Records passed to the callback.
    pub records: u64,
    /// Payload bytes passed to the callback.
    pub bytes: u64,
    /// A torn tail that was cut off: the file and the offset it was cut at.
    pub truncated: Option<(PathBuf, u64)>,
}

/// Reads every record of the segments in `dir` with id `>= from_segment`,
/// in log order, and calls `f(position, payload)` for each; `position` is
/// the log position just past the record. Damaged records are handled by
/// `opts.recovery`: a torn tail is truncated (and the file synced), so a
/// later [`crate::Wal::open`] starts from a clean log.
///
/// # Errors
/// [`Error::Corruption`] naming the segment file and byte offset of a
/// damaged record that is not a torn tail (or any damaged record under
/// [`RecoveryMode::AbsoluteConsistency`]); [`Error::Io`] if a segment
/// cannot be read or truncated; and whatever `f` returns.
pub fn replay<E: From<Error>>(
    fs: &dyn FileSystem,
    dir: &Path,
    opts: &WalOptions,
    from_segment: u64,
    mut f: impl FnMut(LogPosition, &[u8]) -> Result<(), E>,
) -> Result<ReplayReport, E> {
    opts.validate()?;
    fs.create_dir_all(dir).map_err(|e| Error::io("create_dir_all", dir, e))?;
    let ids: Vec<u64> = list_segments(fs, dir)?.into_iter().filter(|&id| id >= from_segment).collect();
    let mut report = ReplayReport { segments: ids.clone(), ..ReplayReport::default() };
    let mut ends = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let path = segment_path(dir, id);
        let data = crate::fs::read_all(fs, &path).map_err(|e| Error::io("read", &path, e))?;
        let end = record::scan(&data, opts.max_record_bytes, |off, payload| {
            report.records += 1;
            report.bytes += payload.len() as u64;
            let pos = LogPosition { segment: id, offset: off + (record::HEADER_LEN + payload.len()) as u64 };
            f(pos, payload)
        })?;
        ends.push(end.clone());
        let ScanEnd::Damaged { offset, reason, tail } = end else { continue };
        let later_all_empty = later_segments_empty(fs, dir, &ids[i + 1..], opts)?;
        // A torn tail with records in later segments: if this segment was
        // never sealed, no later record was ever made durable by an fsync
        // (every closed segment is sealed before any later fsync), so the
        // log ends here, as at the torn tail of the newest segment.
        let unsealed_torn = tail
            && !later_all_empty
            && usize::try_from(offset).is_ok_and(|at| record::torn_before_zero_fill(&data, at));
        match opts.recovery {
            RecoveryMode::TolerateTornTail if tail && later_all_empty => {
                tracing::warn!(file = %path.display(), offset, %reason, "WAL: truncating torn tail");
                truncate(fs, &path, offset)?;
                report.truncated = Some((path, offset));
            }
            RecoveryMode::TolerateTornTail if unsealed_torn => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    %reason,
                    later_segments = ids.len() - i - 1,
                    "WAL: torn tail of a segment that was never sealed; the log ends here and the later segments, \
                     never synced, are removed"
                );
                end_log_at(fs, dir, &path, offset, &ids[i + 1..])?;
                report.truncated = Some((path, offset));
                report.segments.truncate(i + 1);
            }
            RecoveryMode::PointInTime => {
                tracing::warn!(file = %path.display(), offset, %reason, "WAL: point-in-time recovery stops here");
                end_log_at(fs, dir, &path, offset, &ids[i + 1..])?;
                report.truncated = Some((path, offset));
                report.segments.truncate(i + 1);
            }
            _ => return Err(Error::Corruption { path, offset, reason }.into()),
        }
        break;
    }
    Ok(report)
}

/// True if segment `id` in `dir` is *sealed*: its valid records run to the
/// end of the file, with no preallocated zero fill and no damaged tail
/// after them. A segment that a roll closed is sealed before any later
/// segment is fsynced (see [`crate::Wal::seal_before`]), so after a crash
/// an unsealed segment followed by later records means those later records
/// were never acknowledged as durable. The newest segment is normally
/// unsealed. A missing segment is reported as unsealed.
///
/// # Errors
/// [`Error::Io`] if the segment cannot be read.
pub fn segment_is_sealed(fs: &dyn FileSystem, dir: &Path, id: u64, opts: &WalOptions) -> Result<bool, Error> {
    let path = segment_path(dir, id);
    if !fs.exists(&path) {
        return Ok(false);
    }
    let data = crate::fs::read_all(fs, &path).map_err(|e| Error::io("read", &path, e))?;
    let end = record::scan::<()>(&data, opts.max_record_bytes, |_, _| Ok(())).ok();
    Ok(matches!(end, Some(ScanEnd::Clean { end }) if end == data.len() as u64))
}

/// True if none of `ids` holds a record (fresh segments created just before
/// a crash are zero-filled).
fn later_segments_empty(fs: &dyn FileSystem, dir: &Path, ids: &[u64], opts: &WalOptions) -> Result<bool, Error> {
    for &id in ids {
        let path = segment_path(dir, id);
        let data = crate::fs::read_all(fs, &path).map_err(|e| Error::io("read", &path, e))?;
        let mut any = false;
        record::scan::<()>(&data, opts.max_record_bytes, |_, _| {
            any = true;
            Ok(())
        })
        .ok();
        if any || data.iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Ends the log at `offset` of `path`: truncates it there and removes the
/// `later` segments, then syncs the directory.
fn end_log_at(fs: &dyn FileSystem, dir: &Path, path: &Path, offset: u64, later: &[u64]) -> Result<(), Error> {
    truncate(fs, path, offset)?;
    for &id in later {
        let p = segment_path(dir, id);
        fs.remove(&p).map_err(|e| Error::io("remove", &p, e))?;
    }
    fs.sync_dir(dir).map_err(|e| Error::io("sync_dir", dir, e))
}

fn truncate(fs: &dyn FileSystem, path: &Path, offset: u64) -> Result<(), Error> {
    let file = fs.open(path).map_err(|e| Error::io("open", path, e))?;
    file.set_len(offset).map_err(|e| Error::io("set_len", path, e))?;
    file.sync_data().map_err(|e| Error::io("sync_data", path, e))
}
