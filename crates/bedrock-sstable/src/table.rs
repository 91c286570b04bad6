//! [`Table`]: an open, immutable table read straight out of its bytes.
//!
//! Opening checks the footer (magic, version, checksum) and the layout,
//! then loads and checksums the index block (decoded into memory) and the
//! filter block (kept as a slice of the file). Data blocks are sliced out
//! of the [`FileBytes`] on demand, without copying.
//!
//! **Checksum strategy.** A data block's CRC is verified the first time the
//! block is read through this `Table`, and remembered in an atomic bitmap
//! (one bit per data block); later reads of the same block skip the CRC.
//! The bytes are immutable for the life of the `Table` (an owned copy, or a
//! read-only mmap of a file Bedrock never rewrites), so a block that passed
//! once stays correct unless the media changes it under the page cache;
//! [`Table::verify`] ignores the bitmap and rechecks everything, for
//! scrubbing. Setting a bit is `Relaxed`: it guards no other data, and a
//! race only means two threads both verify the same block.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bedrock_wal::FileBytes;

use crate::block::{BlockError, BlockIter};
use crate::filter;
use crate::format::{read_block, read_block_any, BlockHandle, Footer, FOOTER_LEN};
use crate::index::{decode_index, find_block, IndexEntry};
use crate::key::{decode_internal_key, encode_internal_key, ValueKind, MAX_SEQUENCE};
use crate::{Error, Result, TableIter};

/// Where a data block's contents are: a range of the mapped file (no
/// copy) or a decompressed buffer.
#[derive(Debug, Clone)]
pub(crate) enum BlockData {
    /// Uncompressed: the block's range within the table's bytes.
    Mapped(Range<usize>),
    /// Decompressed contents (shared without another copy).
    Owned(Arc<Vec<u8>>),
}

/// Cumulative counters of one [`Table`], since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Data blocks read by `get`, iterators and `verify` (a block read
    /// twice counts twice).
    pub block_reads: u64,
    /// Bloom filter probes (by `get` and `may_contain`; none when the table
    /// has no filter).
    pub bloom_checks: u64,
    /// Probes that answered "certainly absent", each saving a block read.
    pub bloom_negatives: u64,
}

#[derive(Debug, Default)]
struct Counters {
    block_reads: AtomicU64,
    bloom_checks: AtomicU64,
    bloom_negatives: AtomicU64,
}

/// An open table: immutable, `Send + Sync`, shared behind an `Arc`.
pub struct Table {
    bytes: FileBytes,
    path: PathBuf,
    footer: Footer,
    index: Vec<IndexEntry>,
    /// The filter block's contents within `bytes`, if the table has one.
    filter: Option<Range<usize>>,
    entries: u64,
    /// Bit `i` set: data block `i` passed its checksum.
    verified: Box<[AtomicU64]>,
    stats: Counters,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("path", &self.path)
            .field("file_size", &self.file_size())
            .field("data_blocks", &self.index.len())
            .field("entries", &self.entries)
            .field("has_filter", &self.filter.is_some())
            .finish()
    }
}

impl Table {
    /// Opens the table whose whole contents are `bytes` (from
    /// [`bedrock_wal::File::map`]). `path` is used in errors and returned
    /// by [`Table::path`].
    ///
    /// Checks the footer (magic, format version, footer checksum), that the
    /// data, filter and index blocks and the footer tile the file exactly,
    /// and loads the index and filter blocks, verifying their checksums.
    /// Data blocks are not read.
    ///
    /// # Errors
    /// [`Error::Corruption`] or [`Error::ChecksumMismatch`] naming `path`
    /// and the offset of the damaged structure.
    pub fn open(bytes: FileBytes, path: PathBuf) -> Result<Table> {
        let footer = Footer::decode(&bytes, &path)?;
        let data_end = check_layout(&footer, bytes.len() as u64, &path)?;
        let index_block = read_block(&bytes, footer.index, &path, true)?;
        let index = decode_index(index_block, footer.index.offset, data_end, &path)?;
        let filter = load_filter(&bytes, footer.filter, &path)?;
        let entries = index.iter().try_fold(0u64, |sum, e| sum.checked_add(e.entries));
        let entries = entries.ok_or_else(|| Error::corruption(&path, footer.index.offset, "entry count overflows"))?;
        let verified = (0..index.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect();
        Ok(Table { bytes, path, footer, index, filter, entries, verified, stats: Counters::default() })
    }

    /// The newest entry for `user_key` whose sequence number is `<= seq`,
    /// as (sequence number, kind, value). A tombstone is returned as
    /// `(seq, ValueKind::Delete, value)`; the caller decides what it hides.
    /// `None` if this table has no such entry. A `seq` above
    /// [`MAX_SEQUENCE`] means "the newest".
    ///
    /// Consults the bloom filter first; a negative answer reads no block.
    ///
    /// # Errors
    /// [`Error::ChecksumMismatch`] or [`Error::Corruption`] if a data block
    /// it reads is damaged.
    pub fn get(&self, user_key: &[u8], seq: u64) -> Result<Option<(u64, ValueKind, Vec<u8>)>> {
        if !self.may_contain(user_key) {
            return Ok(None);
        }
        let mut target = Vec::with_capacity(user_key.len().saturating_add(crate::TRAILER_LEN));
        encode_internal_key(user_key, seq.min(MAX_SEQUENCE), ValueKind::Put, &mut target);
        let mut i = find_block(&self.index, &target);
        // Usually one block; the next one only if `target` falls between a
        // block's last key and its index key.
        while i < self.index.len() {
            let data = self.data_block(i)?;
            let block = self.block_bytes(&data);
            let mut it = BlockIter::new(block).map_err(|e| self.block_error(i, e))?;
            it.seek(block, &target).map_err(|e| self.block_error(i, e))?;
            if it.valid() {
                return self.found(i, &it, block, user_key);
            }
            i = i.saturating_add(1);
        }
        Ok(None)
    }

    /// The entry at `it` if its user key is `user_key`.
    fn found(
        &self,
        i: usize,
        it: &BlockIter,
        block: &[u8],
        user_key: &[u8],
    ) -> Result<Option<(u64, ValueKind, Vec<u8>)>> {
        let (found_key, seq, kind) = decode_internal_key(it.key()).ok_or_else(|| {
            self.block_error(i, BlockError { at: it.entry_offset(), reason: "malformed internal key" })
        })?;
        if found_key != user_key {
            return Ok(None);
        }
        Ok(Some((seq, kind, it.value(block).to_vec())))
    }

    /// False if `user_key` is certainly not in this table (the bloom filter
    /// says so); true if it may be, or the table has no filter. Counts a
    /// bloom check (and a negative) in [`Table::stats`] when there is a
    /// filter.
    pub fn may_contain(&self, user_key: &[u8]) -> bool {
        let Some(filter) = self.filter_bytes() else { return true };
        self.stats.bloom_checks.fetch_add(1, Relaxed);
        let hit = filter::may_contain(filter, user_key);
        if !hit {
            self.stats.bloom_negatives.fetch_add(1, Relaxed);
        }
        hit
    }

    /// A forward iterator over every (internal key, value), holding a clone
    /// of this `Arc`. It starts unpositioned: call `seek_to_first` or `seek`.
    pub fn iter(self: &Arc<Table>) -> TableIter {
        TableIter::new(Arc::clone(self))
    }

    /// The path given to [`Table::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Number of entries (puts and deletes), from the index.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// A snapshot of the cumulative counters.
    pub fn stats(&self) -> TableStats {
        TableStats {
            block_reads: self.stats.block_reads.load(Relaxed),
            bloom_checks: self.stats.bloom_checks.load(Relaxed),
            bloom_negatives: self.stats.bloom_negatives.load(Relaxed),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    pub(crate) fn footer(&self) -> Footer {
        self.footer
    }

    pub(crate) fn filter_bytes(&self) -> Option<&[u8]> {
        self.bytes.get(self.filter.clone()?)
    }

    /// The contents of data block `i`, checksummed on first use (see the
    /// module docs), decompressed if stored compressed. Counts a block read.
    pub(crate) fn data_block(&self, i: usize) -> Result<BlockData> {
        let handle = self.handle(i)?;
        self.stats.block_reads.fetch_add(1, Relaxed);
        let verify = !self.is_verified(i);
        let contents = read_block_any(&self.bytes, handle, &self.path, verify)?;
        if verify {
            self.mark_verified(i);
        }
        Ok(match contents {
            Cow::Borrowed(b) => {
                // read_block_any proved the range is in bounds.
                let start = usize::try_from(handle.offset).unwrap_or(usize::MAX);
                BlockData::Mapped(start..start.saturating_add(b.len()))
            }
            Cow::Owned(v) => BlockData::Owned(Arc::new(v)),
        })
    }

    /// The bytes of a block returned by [`Table::data_block`].
    pub(crate) fn block_bytes<'a>(&'a self, block: &'a BlockData) -> &'a [u8] {
        match block {
            BlockData::Mapped(range) => self.bytes.get(range.clone()).unwrap_or_default(),
            BlockData::Owned(bytes) => bytes,
        }
    }

    pub(crate) fn handle(&self, i: usize) -> Result<BlockHandle> {
        let entry = self.index.get(i);
        entry.map(|e| e.handle).ok_or_else(|| Error::corruption(&self.path, 0, format!("no data block {i}")))
    }

    pub(crate) fn count_block_read(&self) {
        self.stats.block_reads.fetch_add(1, Relaxed);
    }

    /// A [`BlockError`] in data block `i` as an [`Error::Corruption`] at the
    /// file offset of the damaged entry.
    pub(crate) fn block_error(&self, i: usize, e: BlockError) -> Error {
        let base = self.index.get(i).map_or(0, |entry| entry.handle.offset);
        Error::corruption(&self.path, base.saturating_add(e.at as u64), format!("data block {i}: {}", e.reason))
    }

    fn is_verified(&self, i: usize) -> bool {
        let Some(word) = self.verified.get(i / 64) else { return false };
        word.load(Relaxed) & (1 << (i % 64)) != 0
    }

    pub(crate) fn mark_verified(&self, i: usize) {
        if let Some(word) = self.verified.get(i / 64) {
            word.fetch_or(1 << (i % 64), Relaxed);
        }
    }
}

/// Checks that the filter block (if any), the index block and the footer
/// follow each other exactly up to the end of a file of `file_len` bytes;
/// returns where the data blocks end.
pub(crate) fn check_layout(footer: &Footer, file_len: u64, path: &Path) -> Result<u64> {
    let footer_at = file_len.saturating_sub(FOOTER_LEN as u64);
    let bad = |reason: &str| Error::corruption(path, footer_at, format!("footer: {reason}"));
    if footer.index.end_with_trailer() != Some(footer_at) {
        return Err(bad("index block does not end where the footer starts"));
    }
    if footer.filter.size == 0 {
        if footer.filter.offset != 0 {
            return Err(bad("empty filter handle with a nonzero offset"));
        }
        return Ok(footer.index.offset);
    }
    if footer.filter.end_with_trailer() != Some(footer.index.offset) {
        return Err(bad("filter block does not end where the index block starts"));
    }
    Ok(footer.filter.offset)
}

/// Verifies the filter block's checksum and shape; returns its contents'
/// range in the file, or `None` if the table has no filter.
fn load_filter(bytes: &[u8], handle: BlockHandle, path: &Path) -> Result<Option<Range<usize>>> {
    if handle.size == 0 {
        return Ok(None);
    }
    let contents = read_block(bytes, handle, path, true)?;
    filter::check(contents).map_err(|reason| Error::corruption(path, handle.offset, reason))?;
    let start = usize::try_from(handle.offset).unwrap_or(usize::MAX);
    Ok(Some(start..start.saturating_add(contents.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{TableBuilder, TableOptions};
    use bedrock_wal::{FaultFs, FileSystem};

    fn ik(user_key: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(user_key, seq, kind, &mut out);
        out
    }

    fn build(entries: &[(Vec<u8>, &[u8])], opts: TableOptions) -> Table {
        let fs = FaultFs::new();
        let path = PathBuf::from("t.sst");
        let mut b = TableBuilder::new(fs.create(&path).unwrap(), path.clone(), opts);
        for (k, v) in entries {
            b.add(k, v).unwrap();
        }
        b.finish().unwrap();
        Table::open(fs.open(&path).unwrap().map().unwrap(), path).unwrap()
    }

    fn versions() -> Vec<(Vec<u8>, &'static [u8])> {
        vec![
            (ik(b"apple", 9, ValueKind::Delete), b""),
            (ik(b"apple", 5, ValueKind::Put), b"v5"),
            (ik(b"apple", 2, ValueKind::Put), b"v2"),
            (ik(b"pear", 4, ValueKind::Put), b"p4"),
        ]
    }

    #[test]
    fn get_returns_the_newest_visible_version() {
        for block_size_bytes in [1, 4096] {
            let t = build(&versions(), TableOptions { block_size_bytes, ..TableOptions::default() });
            assert_eq!(t.get(b"apple", 1).unwrap(), None);
            assert_eq!(t.get(b"apple", 2).unwrap(), Some((2, ValueKind::Put, b"v2".to_vec())));
            assert_eq!(t.get(b"apple", 8).unwrap(), Some((5, ValueKind::Put, b"v5".to_vec())));
            assert_eq!(t.get(b"apple", 9).unwrap(), Some((9, ValueKind::Delete, vec![])));
            assert_eq!(t.get(b"apple", u64::MAX).unwrap(), Some((9, ValueKind::Delete, vec![])));
            assert_eq!(t.get(b"appl", u64::MAX).unwrap(), None);
            assert_eq!(t.get(b"pear", 3).unwrap(), None);
            assert_eq!(t.get(b"zebra", 100).unwrap(), None);
            assert_eq!(t.entries(), 4);
        }
    }

    #[test]
    fn bloom_negatives_skip_block_reads() {
        let t = build(&versions(), TableOptions::default());
        assert_eq!(t.get(b"definitely-absent", 10).unwrap(), None);
        let s = t.stats();
        assert_eq!((s.bloom_checks, s.bloom_negatives, s.block_reads), (1, 1, 0));
        t.get(b"pear", 10).unwrap().unwrap();
        assert_eq!(t.stats(), TableStats { block_reads: 1, bloom_checks: 2, bloom_negatives: 1 });
    }

    #[test]
    fn table_without_filter_says_maybe_and_counts_no_checks() {
        let t = build(&versions(), TableOptions { bloom_bits_per_key: 0, ..TableOptions::default() });
        assert!(t.may_contain(b"anything"));
        assert_eq!(t.get(b"pear", 10).unwrap(), Some((4, ValueKind::Put, b"p4".to_vec())));
        assert_eq!(t.stats().bloom_checks, 0);
    }

    #[test]
    fn empty_table_opens_and_finds_nothing() {
        let t = build(&[], TableOptions::default());
        assert_eq!(t.entries(), 0);
        assert_eq!(t.get(b"k", 1).unwrap(), None);
        assert_eq!(t.verify().unwrap(), 0);
        let t = build(&[], TableOptions { bloom_bits_per_key: 0, ..TableOptions::default() });
        assert_eq!(t.get(b"k", 1).unwrap(), None);
    }

    #[test]
    fn checksum_is_verified_once_per_block() {
        let t = build(&versions(), TableOptions::default());
        assert!(!t.is_verified(0));
        t.get(b"pear", 10).unwrap();
        assert!(t.is_verified(0));
        for i in [1, 63, 64, 1000] {
            t.mark_verified(i); // out of range indices are ignored
        }
        assert!(!t.is_verified(1000));
    }

    #[test]
    fn table_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Table>();
        assert_send_sync::<TableIter>();
    }
}
