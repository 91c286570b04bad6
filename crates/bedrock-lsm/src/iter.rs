//! Iterators: the internal-key iterator trait, the merging iterator over
//! memtables and SSTables, a concatenating iterator over one sorted level,
//! and [`DbIterator`], which turns internal entries into the user's view at
//! a snapshot.

use std::cmp::Ordering;
use std::sync::Arc;

use bedrock_sstable::{compare_internal_keys, Table, TableIter};

use crate::version::FileMeta;
use crate::{Error, Result};

/// A forward iterator over `(internal key, value)` entries in
/// `compare_internal_keys` order. `key`/`value` may only be called while
/// `valid()`; an error ends iteration and is reported by `status()`.
pub(crate) trait InternalIterator: Send {
    fn seek_to_first(&mut self);
    /// Positions at the first entry `>= target` (an internal key).
    fn seek(&mut self, target: &[u8]);
    fn seek_to_last(&mut self);
    /// Positions at the last entry `<= target`.
    fn seek_for_prev(&mut self, target: &[u8]);
    fn next(&mut self);
    fn prev(&mut self);
    fn valid(&self) -> bool;
    fn key(&self) -> &[u8];
    fn value(&self) -> &[u8];
    fn status(&self) -> Result<()>;
}

impl InternalIterator for TableIter {
    fn seek_to_first(&mut self) {
        TableIter::seek_to_first(self)
    }
    fn seek(&mut self, target: &[u8]) {
        TableIter::seek(self, target)
    }
    fn seek_to_last(&mut self) {
        TableIter::seek_to_last(self)
    }
    fn seek_for_prev(&mut self, target: &[u8]) {
        TableIter::seek_for_prev(self, target)
    }
    fn next(&mut self) {
        TableIter::next(self)
    }
    fn prev(&mut self) {
        TableIter::prev(self)
    }
    fn valid(&self) -> bool {
        TableIter::valid(self)
    }
    fn key(&self) -> &[u8] {
        TableIter::key(self)
    }
    fn value(&self) -> &[u8] {
        TableIter::value(self)
    }
    fn status(&self) -> Result<()> {
        TableIter::status(self).map_err(Error::from)
    }
}

/// Merges child iterators into one sorted stream, in both directions.
/// Internal keys are unique across children (a memtable and the SSTable it
/// was flushed to are never in one super version together). With the
/// handful of children an LSM has, a linear scan for the minimum beats a
/// heap. Changing direction repositions every other child around the
/// current key, as LevelDB's `MergingIterator` does.
pub(crate) struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    current: Option<usize>,
    forward: bool,
}

impl MergingIterator {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        MergingIterator { children, current: None, forward: true }
    }

    fn find_largest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, child) in self.children.iter().enumerate() {
            if !child.valid() {
                continue;
            }
            best = match best {
                Some(b) if compare_internal_keys(child.key(), self.children[b].key()) != Ordering::Greater => Some(b),
                _ => Some(i),
            };
        }
        self.current = best;
    }

    fn find_smallest(&mut self) {
        let mut best: Option<usize> = None;
        for (i, child) in self.children.iter().enumerate() {
            if !child.valid() {
                continue;
            }
            best = match best {
                Some(b) if compare_internal_keys(child.key(), self.children[b].key()) != Ordering::Less => Some(b),
                _ => Some(i),
            };
        }
        self.current = best;
    }
}

impl InternalIterator for MergingIterator {
    fn seek_to_first(&mut self) {
        self.children.iter_mut().for_each(|c| c.seek_to_first());
        self.forward = true;
        self.find_smallest();
    }

    fn seek(&mut self, target: &[u8]) {
        self.children.iter_mut().for_each(|c| c.seek(target));
        self.forward = true;
        self.find_smallest();
    }

    fn seek_to_last(&mut self) {
        self.children.iter_mut().for_each(|c| c.seek_to_last());
        self.forward = false;
        self.find_largest();
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        self.children.iter_mut().for_each(|c| c.seek_for_prev(target));
        self.forward = false;
        self.find_largest();
    }

    fn next(&mut self) {
        let Some(cur) = self.current else { return };
        if !self.forward {
            // Every other child is at or before the current key; move each
            // to its first entry after it.
            let key = self.key().to_vec();
            for (i, child) in self.children.iter_mut().enumerate() {
                if i != cur {
                    child.seek(&key);
                    if child.valid() && child.key() == key.as_slice() {
                        child.next();
                    }
                }
            }
            self.forward = true;
        }
        if let Some(child) = self.children.get_mut(cur) {
            child.next();
        }
        self.find_smallest();
    }

    fn prev(&mut self) {
        let Some(cur) = self.current else { return };
        if self.forward {
            // Every other child is after the current key; move each to its
            // last entry before it.
            let key = self.key().to_vec();
            for (i, child) in self.children.iter_mut().enumerate() {
                if i != cur {
                    child.seek(&key);
                    if child.valid() {
                        child.prev();
                    } else {
                        child.seek_to_last();
                    }
                }
            }
            self.forward = false;
        }
        if let Some(child) = self.children.get_mut(cur) {
            child.prev();
        }
        self.find_largest();
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        self.current.and_then(|i| self.children.get(i)).map_or(&[], |c| c.key())
    }

    fn value(&self) -> &[u8] {
        self.current.and_then(|i| self.children.get(i)).map_or(&[], |c| c.value())
    }

    fn status(&self) -> Result<()> {
        self.children.iter().try_for_each(|c| c.status())
    }
}

/// Iterates a sorted, non-overlapping run of SSTables (a level >= 1) as one
/// sequence, opening one table iterator at a time.
pub(crate) struct LevelIterator {
    files: Vec<Arc<FileMeta>>,
    index: usize,
    current: Option<TableIter>,
}

impl LevelIterator {
    pub(crate) fn new(files: Vec<Arc<FileMeta>>) -> Self {
        LevelIterator { files, index: 0, current: None }
    }

    fn open(&mut self, index: usize) {
        self.index = index;
        self.current = self.files.get(index).map(|f| Table::iter(&f.table));
    }

    /// Moves to the previous file's last entry while the current one is
    /// exhausted (without error).
    fn skip_exhausted_backward(&mut self) {
        while let Some(it) = &self.current {
            if it.valid() || it.status().is_err() {
                return;
            }
            let Some(prev) = self.index.checked_sub(1) else {
                self.current = None;
                return;
            };
            self.open(prev);
            if let Some(it) = &mut self.current {
                it.seek_to_last();
            }
        }
    }

    /// Moves to the next file's first entry while the current one is
    /// exhausted (without error).
    fn skip_exhausted(&mut self) {
        while let Some(it) = &self.current {
            if it.valid() || it.status().is_err() {
                return;
            }
            self.open(self.index + 1);
            if let Some(it) = &mut self.current {
                it.seek_to_first();
            }
        }
    }
}

impl InternalIterator for LevelIterator {
    fn seek_to_first(&mut self) {
        self.open(0);
        if let Some(it) = &mut self.current {
            it.seek_to_first();
        }
        self.skip_exhausted();
    }

    fn seek(&mut self, target: &[u8]) {
        // The first file whose largest key is >= target.
        let idx = self.files.partition_point(|f| compare_internal_keys(&f.largest, target) == Ordering::Less);
        self.open(idx);
        if let Some(it) = &mut self.current {
            it.seek(target);
        }
        self.skip_exhausted();
    }

    fn seek_to_last(&mut self) {
        match self.files.len().checked_sub(1) {
            Some(last) => self.open(last),
            None => self.current = None,
        }
        if let Some(it) = &mut self.current {
            it.seek_to_last();
        }
        self.skip_exhausted_backward();
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        // The first file whose largest key is >= target holds the answer or
        // the answer is the last entry of the file before it.
        let idx = self.files.partition_point(|f| compare_internal_keys(&f.largest, target) == Ordering::Less);
        let Some(last) = self.files.len().checked_sub(1) else {
            self.current = None;
            return;
        };
        self.open(idx.min(last));
        if let Some(it) = &mut self.current {
            it.seek_for_prev(target);
        }
        self.skip_exhausted_backward();
    }

    fn next(&mut self) {
        if let Some(it) = &mut self.current {
            it.next();
        }
        self.skip_exhausted();
    }

    fn prev(&mut self) {
        if let Some(it) = &mut self.current {
            it.prev();
        }
        self.skip_exhausted_backward();
    }

    fn valid(&self) -> bool {
        self.current.as_ref().is_some_and(TableIter::valid)
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], TableIter::key)
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], TableIter::value)
    }

    fn status(&self) -> Result<()> {
        match &self.current {
            Some(it) => it.status().map_err(Error::from),
            None => Ok(()),
        }
    }
}

/// A forward iterator over the user's view of the database at a snapshot:
/// for each user key in `[lower, upper)`, its newest version with sequence
/// number `<= snapshot`, skipping deleted keys. Yields
/// `Result<(key, value)>`; an I/O or corruption error is yielded once and
/// ends the iteration. For backward iteration and seeks use [`DbCursor`]
/// ([`DbIterator::into_cursor`] or `Db::cursor`).
///
/// The iterator holds the memtables and SSTables it started with, so it is
/// consistent while flushes and compactions run.
pub struct DbIterator {
    cursor: DbCursor,
    started: bool,
    done: bool,
}

impl DbIterator {
    pub(crate) fn new(cursor: DbCursor) -> Self {
        DbIterator { cursor, started: false, done: false }
    }

    /// The sequence number this iterator reads at.
    pub fn snapshot_seq(&self) -> u64 {
        self.cursor.snapshot_seq()
    }

    /// The underlying cursor, for seeks and backward steps.
    pub fn into_cursor(self) -> DbCursor {
        self.cursor
    }
}

impl Iterator for DbIterator {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.started {
            self.cursor.next();
        } else {
            self.started = true;
            self.cursor.seek_to_first();
        }
        if self.cursor.valid() {
            return Some(Ok((self.cursor.key().to_vec(), self.cursor.value().to_vec())));
        }
        self.done = true;
        self.cursor.status().err().map(Err)
    }
}

pub use crate::cursor::DbCursor;
