//! [`Table::verify`]: a full consistency check of a table, for scrubbing
//! and for tests.
//!
//! It rereads everything and ignores the verified-block bitmap: the index
//! and filter checksums, every data block's checksum, every entry's
//! framing, restart points that sit on entry boundaries with full keys,
//! keys that are well-formed and strictly increasing across the whole
//! table and consistent with the index, per-block entry counts, and a
//! filter that contains every user key.

use std::cmp::Ordering;

use crate::block::{BlockError, BlockIter};
use crate::filter;
use crate::format::{read_block, read_block_any};
use crate::index::decode_index;
use crate::key::{compare_internal_keys, decode_internal_key, user_key};
use crate::table::check_layout;
use crate::{Error, Result, Table};

/// State carried from one data block to the next.
#[derive(Debug, Default)]
struct Walk {
    /// The last key seen, for the ordering check.
    last_key: Vec<u8>,
    /// True once any key was seen.
    started: bool,
    entries: u64,
}

impl Table {
    /// Checks the whole table; see the module docs for what is checked.
    /// Returns the number of entries checked (equal to
    /// [`Table::entries`]).
    ///
    /// # Errors
    /// The first problem found: [`Error::ChecksumMismatch`] or
    /// [`Error::Corruption`], naming the file and offset.
    pub fn verify(&self) -> Result<u64> {
        self.verify_meta_blocks()?;
        let mut walk = Walk::default();
        for i in 0..self.index().len() {
            self.verify_data_block(i, &mut walk)?;
        }
        if walk.entries != self.entries() {
            let reason = format!("found {} entries, the index says {}", walk.entries, self.entries());
            return Err(Error::corruption(self.path(), self.footer().index.offset, reason));
        }
        Ok(walk.entries)
    }

    /// Rechecks the index and filter blocks against what `open` loaded.
    fn verify_meta_blocks(&self) -> Result<()> {
        let footer = self.footer();
        let index_block = read_block(self.bytes(), footer.index, self.path(), true)?;
        let data_end = check_layout(&footer, self.file_size(), self.path())?;
        let index = decode_index(index_block, footer.index.offset, data_end, self.path())?;
        if index != self.index() {
            return Err(Error::corruption(self.path(), footer.index.offset, "index block changed since open"));
        }
        if footer.filter.size > 0 {
            let filter_block = read_block(self.bytes(), footer.filter, self.path(), true)?;
            filter::check(filter_block).map_err(|r| Error::corruption(self.path(), footer.filter.offset, r))?;
        }
        Ok(())
    }

    /// Checks data block `i` entry by entry.
    fn verify_data_block(&self, i: usize, walk: &mut Walk) -> Result<()> {
        let entry = self.index().get(i).ok_or_else(|| Error::corruption(self.path(), 0, "index changed"))?;
        self.count_block_read();
        let data = read_block_any(self.bytes(), entry.handle, self.path(), true)?;
        let block: &[u8] = &data;
        self.mark_verified(i);
        let err = |at: usize, reason: &'static str| self.block_error(i, BlockError { at, reason });
        let mut it = BlockIter::new(block).map_err(|e| self.block_error(i, e))?;
        it.seek_to_first(block).map_err(|e| self.block_error(i, e))?;
        let mut restarts = RestartCheck::default();
        let mut count = 0u64;
        while it.valid() {
            restarts.at_entry(&it, block).map_err(|e| self.block_error(i, e))?;
            self.check_key(i, &it, walk)?;
            if compare_internal_keys(it.key(), &entry.key) == Ordering::Greater {
                return Err(err(it.entry_offset(), "key is past the block's index key"));
            }
            count = count.saturating_add(1);
            it.next(block).map_err(|e| self.block_error(i, e))?;
        }
        restarts.at_end(&it).map_err(|e| self.block_error(i, e))?;
        if count != entry.entries {
            return Err(err(0, "entry count differs from the index"));
        }
        walk.entries = walk.entries.saturating_add(count);
        Ok(())
    }

    /// Checks the current key: well-formed, after the previous key, after
    /// the previous block's index key, and present in the filter.
    fn check_key(&self, i: usize, it: &BlockIter, walk: &mut Walk) -> Result<()> {
        let key = it.key();
        let err = |reason: &'static str| self.block_error(i, BlockError { at: it.entry_offset(), reason });
        let (ukey, _, _) = decode_internal_key(key).ok_or_else(|| err("malformed internal key"))?;
        if walk.started && compare_internal_keys(&walk.last_key, key) != Ordering::Less {
            return Err(err("keys out of order"));
        }
        let prev_index_key = i.checked_sub(1).and_then(|p| self.index().get(p));
        if prev_index_key.is_some_and(|p| compare_internal_keys(&p.key, key) != Ordering::Less) {
            return Err(err("key is not after the previous block's index key"));
        }
        let new_user_key = !walk.started || user_key(&walk.last_key) != Some(ukey);
        if new_user_key && self.filter_bytes().is_some_and(|f| !filter::may_contain(f, ukey)) {
            return Err(err("bloom filter does not contain a key of the table"));
        }
        walk.last_key.clear();
        walk.last_key.extend_from_slice(key);
        walk.started = true;
        Ok(())
    }
}

/// Checks that restart points are exactly some entries' offsets, in order,
/// starting with the first entry, and that each restart entry has a full key.
#[derive(Debug, Default)]
struct RestartCheck {
    /// Next restart point to match.
    next: usize,
}

impl RestartCheck {
    fn at_entry(&mut self, it: &BlockIter, block: &[u8]) -> Result<(), BlockError> {
        let at = it.entry_offset();
        let restart = if self.next < it.num_restarts() { Some(it.restart_offset(block, self.next)?) } else { None };
        match restart {
            Some(r) if r == at => {
                it.check_restart_entry(block, at)?;
                self.next = self.next.saturating_add(1);
                Ok(())
            }
            Some(r) if r < at => Err(BlockError { at, reason: "restart point is not at an entry boundary" }),
            _ if at == 0 => Err(BlockError { at, reason: "first entry is not a restart point" }),
            _ => Ok(()),
        }
    }

    fn at_end(&self, it: &BlockIter) -> Result<(), BlockError> {
        if self.next != it.num_restarts() {
            return Err(BlockError { at: 0, reason: "restart point past the last entry" });
        }
        Ok(())
    }
}
