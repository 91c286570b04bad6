//! Snapshot reads: single-key gets and paged range scans.
//!
//! Every read runs in a `bedrock_txn::ReadTransaction` (a snapshot that
//! never blocks writers and never aborts), so a scan read page by page still
//! sees one state, and its revision is the snapshot's sequence number.
//! Pages are bounded in entries and streamed chunks in bytes, so a large
//! range never sits in memory whole when it is streamed.

use bedrock_txn::{Db, ReadTransaction};

use crate::error::ApiError;
use crate::store::Read;

/// Entries read from the storage layer per page.
pub const PAGE_ENTRIES: usize = 256;

/// A streamed chunk is closed once its keys and values reach this many
/// bytes (a single entry may exceed it, up to the key and value limits).
pub const CHUNK_TARGET_BYTES: usize = 1 << 20;

/// One key with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

/// The keys `[start, end)`, at most `limit` of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanRange {
    /// First key (inclusive); empty means the smallest key.
    pub start: Vec<u8>,
    /// End (exclusive); `None` means unbounded.
    pub end: Option<Vec<u8>>,
    /// Maximum number of entries; 0 means no limit.
    pub limit: usize,
}

/// A chunk of a streamed scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanChunk {
    /// Consecutive entries in ascending key order.
    pub kvs: Vec<KeyValue>,
    /// The revision of the snapshot the whole scan reads.
    pub revision: u64,
}

/// Reads one key with the revision of the snapshot it was read at.
pub fn get(db: &Db, key: &[u8]) -> Result<Read<Option<Vec<u8>>>, ApiError> {
    let snapshot = db.begin_read_only();
    Ok(Read { value: snapshot.get(key)?, revision: snapshot.snapshot_seq() })
}

/// Reads the whole range into memory.
pub fn collect(db: &Db, range: &ScanRange) -> Result<Read<Vec<KeyValue>>, ApiError> {
    let mut pages = Pages::new(db, range);
    let mut kvs = Vec::new();
    while let Some(page) = pages.next_page()? {
        kvs.extend(page);
    }
    Ok(Read { value: kvs, revision: pages.revision() })
}

/// Streams the range to `sink` in chunks of at most about
/// [`CHUNK_TARGET_BYTES`]. An empty range yields one empty chunk, so the
/// receiver always learns the revision. Stops early, without error, when
/// `sink` returns false (the receiver went away).
pub fn stream(db: &Db, range: &ScanRange, mut sink: impl FnMut(ScanChunk) -> bool) -> Result<(), ApiError> {
    let mut pages = Pages::new(db, range);
    let revision = pages.revision();
    let mut sent_any = false;
    while let Some(page) = pages.next_page()? {
        for kvs in split_by_bytes(page, CHUNK_TARGET_BYTES) {
            if !sink(ScanChunk { kvs, revision }) {
                return Ok(());
            }
            sent_any = true;
        }
    }
    if !sent_any {
        sink(ScanChunk { kvs: Vec::new(), revision });
    }
    Ok(())
}

/// Splits `kvs` into runs whose key and value bytes reach at most
/// `target` (each run holds at least one entry).
fn split_by_bytes(kvs: Vec<KeyValue>, target: usize) -> Vec<Vec<KeyValue>> {
    let mut chunks = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0usize;
    for kv in kvs {
        let size = kv.key.len().saturating_add(kv.value.len());
        if !current.is_empty() && bytes.saturating_add(size) > target {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes = bytes.saturating_add(size);
        current.push(kv);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// Walks a range page by page inside one read-only transaction.
struct Pages<'a> {
    snapshot: ReadTransaction,
    range: &'a ScanRange,
    /// Where the next page starts (inclusive), and whether that key was
    /// already returned (it is then skipped).
    next_start: Vec<u8>,
    skip_first: bool,
    /// Entries still allowed by the limit; `None` means unlimited.
    remaining: Option<usize>,
    done: bool,
}

impl<'a> Pages<'a> {
    fn new(db: &Db, range: &'a ScanRange) -> Pages<'a> {
        let empty = matches!(&range.end, Some(end) if *end <= range.start);
        Pages {
            snapshot: db.begin_read_only(),
            range,
            next_start: range.start.clone(),
            skip_first: false,
            remaining: (range.limit > 0).then_some(range.limit),
            done: empty,
        }
    }

    /// The next page, or `None` after the last one.
    fn next_page(&mut self) -> bedrock_txn::Result<Option<Vec<KeyValue>>> {
        if self.done || self.remaining == Some(0) {
            return Ok(None);
        }
        let want = self.remaining.map_or(PAGE_ENTRIES, |r| r.min(PAGE_ENTRIES));
        // Resuming at the last returned key (rather than at its successor)
        // never builds a key longer than the key size limit.
        let ask = want + usize::from(self.skip_first);
        let rows = self.snapshot.scan(&self.next_start, self.range.end.as_deref(), ask)?;
        self.done = rows.len() < ask;
        let mut page: Vec<KeyValue> = rows.into_iter().map(|(key, value)| KeyValue { key, value }).collect();
        if self.skip_first && page.first().is_some_and(|kv| kv.key == self.next_start) {
            page.remove(0);
        }
        page.truncate(want);
        if let Some(last) = page.last() {
            self.next_start.clone_from(&last.key);
            self.skip_first = true;
        } else {
            self.done = true;
        }
        if let Some(remaining) = &mut self.remaining {
            *remaining -= page.len();
        }
        Ok(if page.is_empty() { None } else { Some(page) })
    }

    /// The revision of the snapshot the pages are read from.
    fn revision(&self) -> u64 {
        self.snapshot.snapshot_seq()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value_len: usize) -> KeyValue {
        KeyValue { key: key.as_bytes().to_vec(), value: vec![b'v'; value_len] }
    }

    #[test]
    fn split_by_bytes_bounds_chunks() {
        let kvs = vec![kv("a", 9), kv("b", 9), kv("c", 29), kv("d", 0)];
        let sizes: Vec<usize> = split_by_bytes(kvs, 20).iter().map(Vec::len).collect();
        // a+b = 20 fits; c alone exceeds the target but is kept whole.
        assert_eq!(sizes, vec![2, 1, 1]);
        assert!(split_by_bytes(Vec::new(), 20).is_empty());
    }
}
