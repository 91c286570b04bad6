//! Segment file naming.

use std::path::{Path, PathBuf};

/// File name suffix of WAL segments.
pub const SEGMENT_SUFFIX: &str = ".wal";

/// The file name of segment `id`: 20 zero-padded decimal digits, so names
/// sort in id order.
pub fn segment_name(id: u64) -> String {
    format!("{id:020}{SEGMENT_SUFFIX}")
}

/// The path of segment `id` in `dir`.
pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(segment_name(id))
}

/// Parses a segment file name back to its id; `None` for other files.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Ids of the segments in `dir`, ascending.
pub(crate) fn list_segments(fs: &dyn crate::FileSystem, dir: &Path) -> crate::Result<Vec<u64>> {
    let names = fs.read_dir(dir).map_err(|e| crate::Error::io("read_dir", dir, e))?;
    let mut ids: Vec<u64> = names.iter().filter_map(|n| parse_segment_name(n)).collect();
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_name(7), "00000000000000000007.wal");
        assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_segment_name("7.wal"), None);
        assert_eq!(parse_segment_name("00000000000000000007.log"), None);
        assert!(segment_name(9) < segment_name(10));
    }
}
