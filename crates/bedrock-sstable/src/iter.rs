//! [`TableIter`]: a forward iterator over a table's entries.
//!
//! It is a two-level iterator: a position in the in-memory index picks a
//! data block, and a [`BlockIter`] walks that block. It owns an
//! `Arc<Table>`, so it has no lifetime; the current block is kept as a
//! range of the table's bytes, not a copy.

use crate::table::BlockData;
use std::sync::Arc;

use crate::block::{BlockError, BlockIter};
use crate::index::find_block;
use crate::{Error, Result, Table};

/// A forward iterator over (internal key, value) pairs in key order.
///
/// It starts unpositioned (not [`valid`](TableIter::valid)); call
/// [`seek_to_first`](TableIter::seek_to_first) or [`seek`](TableIter::seek).
/// If it meets a damaged block it becomes invalid for good and
/// [`status`](TableIter::status) returns the error: an iteration that
/// ends must check `status()` to tell the end of the table from damage.
/// It never panics and never yields entries of a block that failed its
/// checksum.
#[derive(Debug)]
pub struct TableIter {
    table: Arc<Table>,
    /// Index of the current data block.
    block: usize,
    /// The current block's contents.
    data: BlockData,
    /// Cursor within the current block; `None` when unpositioned or past
    /// the end.
    cursor: Option<BlockIter>,
    error: Option<Error>,
}

impl TableIter {
    pub(crate) fn new(table: Arc<Table>) -> Self {
        TableIter { table, block: 0, data: BlockData::Mapped(0..0), cursor: None, error: None }
    }

    /// Positions at the table's first entry (invalid if the table is empty).
    pub fn seek_to_first(&mut self) {
        if self.load(0) {
            self.with_cursor(|it, block| it.seek_to_first(block));
            self.skip_exhausted_blocks();
        }
    }

    /// Positions at the first entry whose internal key is `>= target_ikey`
    /// per [`crate::compare_internal_keys`] (invalid if there is none). To
    /// find the newest version of user key `k` visible at `seq`, seek to
    /// `encode_internal_key(k, seq, ValueKind::Put)`.
    pub fn seek(&mut self, target_ikey: &[u8]) {
        let i = find_block(self.table.index(), target_ikey);
        if self.load(i) {
            self.with_cursor(|it, block| it.seek(block, target_ikey));
            self.skip_exhausted_blocks();
        }
    }

    /// Positions at the table's last entry (invalid if the table is empty).
    pub fn seek_to_last(&mut self) {
        let Some(last) = self.table.index().len().checked_sub(1) else {
            self.cursor = None;
            return;
        };
        if self.load(last) {
            self.with_cursor(|it, block| it.seek_to_last(block));
            self.skip_exhausted_blocks_backward();
        }
    }

    /// Positions at the last entry whose internal key is `<= target_ikey`
    /// (invalid if there is none).
    pub fn seek_for_prev(&mut self, target_ikey: &[u8]) {
        self.seek(target_ikey);
        if self.error.is_some() {
            return;
        }
        if !self.valid() {
            self.seek_to_last();
        } else if crate::compare_internal_keys(self.key(), target_ikey) == std::cmp::Ordering::Greater {
            self.prev();
        }
    }

    /// Moves to the previous entry. Does nothing if not valid.
    pub fn prev(&mut self) {
        if !self.valid() {
            return;
        }
        self.with_cursor(|it, block| it.prev(block));
        self.skip_exhausted_blocks_backward();
    }

    /// Moves to the next entry. Does nothing if not valid.
    pub fn next(&mut self) {
        if !self.valid() {
            return;
        }
        self.with_cursor(|it, block| it.next(block));
        self.skip_exhausted_blocks();
    }

    /// True if positioned at an entry.
    pub fn valid(&self) -> bool {
        self.error.is_none() && self.cursor.as_ref().is_some_and(BlockIter::valid)
    }

    /// The current internal key; empty if not [`valid`](TableIter::valid).
    pub fn key(&self) -> &[u8] {
        self.cursor.as_ref().map_or(&[], BlockIter::key)
    }

    /// The current value; empty if not [`valid`](TableIter::valid).
    pub fn value(&self) -> &[u8] {
        let Some(it) = &self.cursor else { return &[] };
        it.value(self.table.block_bytes(&self.data))
    }

    /// `Ok` unless the iterator met a damaged block.
    ///
    /// # Errors
    /// A copy of the [`Error::ChecksumMismatch`] or [`Error::Corruption`]
    /// that stopped the iterator.
    pub fn status(&self) -> Result<()> {
        match &self.error {
            Some(e) => Err(e.duplicate()),
            None => Ok(()),
        }
    }

    /// Makes data block `i` current, with an unpositioned cursor. Returns
    /// false (and leaves the iterator invalid) past the last block or on
    /// error.
    fn load(&mut self, i: usize) -> bool {
        self.cursor = None;
        if self.error.is_some() || i >= self.table.index().len() {
            return false;
        }
        let loaded = self.table.data_block(i).and_then(|data| {
            let block = self.table.block_bytes(&data);
            let cursor = BlockIter::new(block).map_err(|e| self.table.block_error(i, e))?;
            Ok((data, cursor))
        });
        match loaded {
            Ok((data, cursor)) => {
                (self.block, self.data, self.cursor) = (i, data, Some(cursor));
                true
            }
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    /// Runs a cursor operation on the current block, recording any error.
    fn with_cursor(&mut self, op: impl FnOnce(&mut BlockIter, &[u8]) -> Result<(), BlockError>) {
        let Some(it) = self.cursor.as_mut() else { return };
        let block = self.table.block_bytes(&self.data);
        if let Err(e) = op(it, block) {
            self.error = Some(self.table.block_error(self.block, e));
            self.cursor = None;
        }
    }

    /// While the cursor is past the end of its block, moves to the first
    /// entry of the next block.
    fn skip_exhausted_blocks(&mut self) {
        while self.error.is_none() && self.cursor.as_ref().is_some_and(|it| !it.valid()) {
            if !self.load(self.block.saturating_add(1)) {
                return;
            }
            self.with_cursor(|it, block| it.seek_to_first(block));
        }
    }

    /// Moves to the last entry of an earlier block while the current block
    /// is exhausted going backwards.
    fn skip_exhausted_blocks_backward(&mut self) {
        while self.error.is_none() && self.cursor.as_ref().is_some_and(|it| !it.valid()) {
            let Some(prev) = self.block.checked_sub(1) else {
                self.cursor = None;
                return;
            };
            if !self.load(prev) {
                return;
            }
            self.with_cursor(|it, block| it.seek_to_last(block));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_internal_key, TableBuilder, TableOptions, ValueKind};
    use bedrock_wal::{FaultFs, FileSystem};
    use std::path::PathBuf;

    fn ik(user_key: &[u8], seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(user_key, seq, ValueKind::Put, &mut out);
        out
    }

    fn table(n: u32, opts: TableOptions) -> (Arc<Table>, Vec<Vec<u8>>) {
        let fs = FaultFs::new();
        let path = PathBuf::from("t.sst");
        let mut b = TableBuilder::new(fs.create(&path).unwrap(), path.clone(), opts);
        let keys: Vec<Vec<u8>> = (0..n).map(|i| ik(format!("k{:05}", i * 10).as_bytes(), 1)).collect();
        for k in &keys {
            b.add(k, k).unwrap();
        }
        b.finish().unwrap();
        let t = Table::open(fs.open(&path).unwrap().map().unwrap(), path).unwrap();
        (Arc::new(t), keys)
    }

    fn rest(it: &mut TableIter) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while it.valid() {
            assert_eq!(it.key(), it.value());
            out.push(it.key().to_vec());
            it.next();
        }
        it.status().unwrap();
        out
    }

    #[test]
    fn unpositioned_iterator_is_invalid_and_empty() {
        let (t, _) = table(10, TableOptions::default());
        let mut it = t.iter();
        assert!(!it.valid());
        assert_eq!((it.key(), it.value()), (&[][..], &[][..]));
        it.next();
        assert!(!it.valid());
        it.status().unwrap();
    }

    #[test]
    fn full_scan_and_seeks_cross_block_boundaries() {
        for block_size_bytes in [1, 60, 4096] {
            let (t, keys) =
                table(300, TableOptions { block_size_bytes, restart_interval: 3, ..TableOptions::default() });
            let mut it = t.iter();
            it.seek_to_first();
            assert_eq!(rest(&mut it), keys);
            for probe in 0..3005u32 {
                let target = ik(format!("k{probe:05}").as_bytes(), 1);
                it.seek(&target);
                let want: Vec<_> = keys.iter().filter(|k| **k >= target).cloned().collect();
                assert_eq!(rest(&mut it), want, "probe {probe} block size {block_size_bytes}");
            }
        }
    }

    #[test]
    fn seek_between_block_end_and_separator_moves_to_next_block() {
        // One entry per block, so each index key is a shortened separator.
        let (t, keys) = table(20, TableOptions { block_size_bytes: 1, ..TableOptions::default() });
        let mut it = t.iter();
        it.seek(&ik(b"k00005", 0)); // just after k00000 at seq 1
        assert_eq!(it.key(), keys[1]);
        it.seek(&ik(b"k00009\xff", 1));
        assert_eq!(it.key(), keys[1]);
        it.seek(&ik(b"k99999", 1));
        assert!(!it.valid());
        it.status().unwrap();
    }
}
