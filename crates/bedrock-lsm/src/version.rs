//! Versions (the set of live SSTables per level) and version edits (the
//! deltas logged in the manifest), after LevelDB's `version_set` and
//! `version_edit`.

use std::cmp::Ordering;
use std::sync::Arc;

use bedrock_sstable::{compare_internal_keys, decode_internal_key, Table};

use crate::coding::{put_slice, put_varint, Reader};

/// One live SSTable.
#[derive(Debug)]
pub(crate) struct FileMeta {
    pub(crate) number: u64,
    pub(crate) size: u64,
    /// Smallest and largest internal keys in the table.
    pub(crate) smallest: Vec<u8>,
    pub(crate) largest: Vec<u8>,
    pub(crate) table: Arc<Table>,
}

impl FileMeta {
    pub(crate) fn smallest_user_key(&self) -> &[u8] {
        decode_internal_key(&self.smallest).map_or(&[], |(k, _, _)| k)
    }

    pub(crate) fn largest_user_key(&self) -> &[u8] {
        decode_internal_key(&self.largest).map_or(&[], |(k, _, _)| k)
    }

    /// True if the table's user-key range intersects `[lo, hi]`.
    pub(crate) fn overlaps(&self, lo: &[u8], hi: &[u8]) -> bool {
        self.smallest_user_key() <= hi && self.largest_user_key() >= lo
    }
}

/// The live SSTables, per level. Level 0 holds flushed memtables, which
/// may overlap, ordered oldest to newest; every other level is sorted by
/// key and non-overlapping. Immutable: changes make a new `Version`.
#[derive(Debug, Clone)]
pub(crate) struct Version {
    pub(crate) levels: Vec<Vec<Arc<FileMeta>>>,
}

impl Version {
    pub(crate) fn new(num_levels: usize) -> Self {
        Version { levels: vec![Vec::new(); num_levels] }
    }

    /// Applies `edit` (whose added files are already opened in `opened`).
    pub(crate) fn apply(&self, edit: &VersionEdit, opened: &[Arc<FileMeta>]) -> Version {
        let mut v = self.clone();
        for (level, number) in &edit.deleted {
            if let Some(files) = v.levels.get_mut(*level) {
                files.retain(|f| f.number != *number);
            }
        }
        for (level, added) in &edit.added {
            let Some(meta) = opened.iter().find(|m| m.number == added.number) else { continue };
            if let Some(files) = v.levels.get_mut(*level) {
                files.push(meta.clone());
            }
        }
        for (level, files) in v.levels.iter_mut().enumerate() {
            if level == 0 {
                files.sort_by_key(|f| f.number);
            } else {
                files.sort_by(|a, b| compare_internal_keys(&a.smallest, &b.smallest));
            }
        }
        v
    }

    pub(crate) fn all_files(&self) -> impl Iterator<Item = (usize, &Arc<FileMeta>)> {
        self.levels.iter().enumerate().flat_map(|(l, files)| files.iter().map(move |f| (l, f)))
    }

    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.levels.get(level).map_or(0, |fs| fs.iter().map(|f| f.size).sum())
    }

    /// Files of `level` whose user-key range intersects `[lo, hi]`.
    pub(crate) fn overlapping(&self, level: usize, lo: &[u8], hi: &[u8]) -> Vec<Arc<FileMeta>> {
        self.levels.get(level).map_or_else(Vec::new, |fs| fs.iter().filter(|f| f.overlaps(lo, hi)).cloned().collect())
    }

    /// In a sorted level, the file that may hold `user_key`.
    pub(crate) fn find_in_sorted_level(&self, level: usize, user_key: &[u8]) -> Option<&Arc<FileMeta>> {
        let files = self.levels.get(level)?;
        let idx = files.partition_point(|f| f.largest_user_key().cmp(user_key) == Ordering::Less);
        files.get(idx).filter(|f| f.smallest_user_key() <= user_key)
    }

    /// Checks the level invariants; used in debug builds after every change.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for (level, files) in self.levels.iter().enumerate().skip(1) {
            for pair in files.windows(2) {
                if let [a, b] = pair {
                    if compare_internal_keys(&a.largest, &b.smallest) != Ordering::Less
                        || a.largest_user_key() >= b.smallest_user_key()
                    {
                        return Err(format!("level {level}: files {} and {} overlap", a.number, b.number));
                    }
                }
            }
        }
        Ok(())
    }
}

/// A table added by an edit, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub(crate) number: u64,
    pub(crate) size: u64,
    pub(crate) smallest: Vec<u8>,
    pub(crate) largest: Vec<u8>,
}

/// A change to the version set, one manifest record.
///
/// ```text
/// edit := field*
/// field := tag: u8 | body
///   1 log_number:       varint  WAL segments below it are obsolete
///   2 next_file_number: varint
///   3 last_sequence:    varint  every sequence number <= it is in SSTables
///   4 add file:         level varint | number varint | size varint
///                       | smallest (varint len + bytes) | largest (same)
///   5 delete file:      level varint | number varint
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub(crate) log_number: Option<u64>,
    pub(crate) next_file_number: Option<u64>,
    pub(crate) last_sequence: Option<u64>,
    pub(crate) added: Vec<(usize, NewFile)>,
    pub(crate) deleted: Vec<(usize, u64)>,
}

const TAG_LOG_NUMBER: u8 = 1;
const TAG_NEXT_FILE: u8 = 2;
const TAG_LAST_SEQUENCE: u8 = 3;
const TAG_ADD_FILE: u8 = 4;
const TAG_DELETE_FILE: u8 = 5;

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |tag: u8, v: Option<u64>| {
            if let Some(v) = v {
                out.push(tag);
                put_varint(&mut out, v);
            }
        };
        field(TAG_LOG_NUMBER, self.log_number);
        field(TAG_NEXT_FILE, self.next_file_number);
        field(TAG_LAST_SEQUENCE, self.last_sequence);
        for (level, f) in &self.added {
            out.push(TAG_ADD_FILE);
            put_varint(&mut out, *level as u64);
            put_varint(&mut out, f.number);
            put_varint(&mut out, f.size);
            put_slice(&mut out, &f.smallest);
            put_slice(&mut out, &f.largest);
        }
        for (level, number) in &self.deleted {
            out.push(TAG_DELETE_FILE);
            put_varint(&mut out, *level as u64);
            put_varint(&mut out, *number);
        }
        out
    }

    /// Decodes one edit; `Err` says what is malformed.
    pub(crate) fn decode(bytes: &[u8], num_levels: usize) -> Result<VersionEdit, String> {
        let mut r = Reader::new(bytes);
        let mut edit = VersionEdit::default();
        let level = |r: &mut Reader<'_>| -> Result<usize, String> {
            let l = r.varint().ok_or("truncated level")?;
            usize::try_from(l).ok().filter(|l| *l < num_levels).ok_or_else(|| format!("level {l} out of range"))
        };
        while !r.is_empty() {
            let tag = r.u8().ok_or("truncated tag")?;
            match tag {
                TAG_LOG_NUMBER => edit.log_number = Some(r.varint().ok_or("truncated log number")?),
                TAG_NEXT_FILE => edit.next_file_number = Some(r.varint().ok_or("truncated next file")?),
                TAG_LAST_SEQUENCE => edit.last_sequence = Some(r.varint().ok_or("truncated last sequence")?),
                TAG_ADD_FILE => {
                    let l = level(&mut r)?;
                    let number = r.varint().ok_or("truncated file number")?;
                    let size = r.varint().ok_or("truncated file size")?;
                    let smallest = r.slice().ok_or("truncated smallest key")?.to_vec();
                    let largest = r.slice().ok_or("truncated largest key")?.to_vec();
                    if decode_internal_key(&smallest).is_none() || decode_internal_key(&largest).is_none() {
                        return Err(format!("file {number}: malformed key range"));
                    }
                    edit.added.push((l, NewFile { number, size, smallest, largest }));
                }
                TAG_DELETE_FILE => {
                    let l = level(&mut r)?;
                    edit.deleted.push((l, r.varint().ok_or("truncated file number")?));
                }
                other => return Err(format!("unknown tag {other}")),
            }
        }
        Ok(edit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bedrock_sstable::{encode_internal_key, ValueKind};

    fn ikey(k: &[u8], seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(k, seq, ValueKind::Put, &mut out);
        out
    }

    #[test]
    fn edit_round_trip_and_rejects_damage() {
        let edit = VersionEdit {
            log_number: Some(3),
            next_file_number: Some(10),
            last_sequence: Some(99),
            added: vec![(1, NewFile { number: 7, size: 1234, smallest: ikey(b"a", 1), largest: ikey(b"z", 2) })],
            deleted: vec![(0, 5)],
        };
        let enc = edit.encode();
        assert_eq!(VersionEdit::decode(&enc, 7).unwrap(), edit);
        for cut in 1..enc.len() {
            let _ = VersionEdit::decode(&enc[..cut], 7); // must not panic
        }
        assert!(VersionEdit::decode(&enc, 1).is_err(), "level 1 is out of range with one level");
        assert!(VersionEdit::decode(&[42], 7).is_err());
    }
}

impl FileMeta {
    /// The manifest record of this file.
    pub(crate) fn new_file(&self) -> NewFile {
        NewFile { number: self.number, size: self.size, smallest: self.smallest.clone(), largest: self.largest.clone() }
    }
}

#[cfg(test)]
mod golden {
    /// The worked example of docs/formats.md ("Version edit").
    #[test]
    fn documented_example_bytes() {
        let edit = super::VersionEdit { log_number: Some(3), last_sequence: Some(99), ..Default::default() };
        assert_eq!(edit.encode(), [0x01, 0x03, 0x03, 0x63]);
    }
}
