//! Iterators: the internal-key iterator trait, the merging iterator over
//! memtables and SSTables, a concatenating iterator over one sorted level,
//! and [`DbIterator`], which turns internal entries into the user's view at
//! a snapshot.

use std::cmp::Ordering;
use std::sync::Arc;

use bedrock_sstable::{compare_internal_keys, decode_internal_key, encode_internal_key, Table, TableIter, ValueKind};

use crate::version::FileMeta;
use crate::{Error, Result};

/// A forward iterator over `(internal key, value)` entries in
/// `compare_internal_keys` order. `key`/`value` may only be called while
/// `valid()`; an error ends iteration and is reported by `status()`.
pub(crate) trait InternalIterator: Send {
    fn seek_to_first(&mut self);
    /// Positions at the first entry `>= target` (an internal key).
    fn seek(&mut self, target: &[u8]);
    fn next(&mut self);
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
    fn next(&mut self) {
        TableIter::next(self)
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

/// Merges child iterators into one sorted stream. Children are given
/// newest first; for equal internal keys (which cannot happen between
/// distinct sources in practice) the newer child wins. With the handful of
/// children an LSM has, a linear scan for the minimum beats a heap.
pub(crate) struct MergingIterator {
    children: Vec<Box<dyn InternalIterator>>,
    current: Option<usize>,
}

impl MergingIterator {
    pub(crate) fn new(children: Vec<Box<dyn InternalIterator>>) -> Self {
        MergingIterator { children, current: None }
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
        self.find_smallest();
    }

    fn seek(&mut self, target: &[u8]) {
        self.children.iter_mut().for_each(|c| c.seek(target));
        self.find_smallest();
    }

    fn next(&mut self) {
        if let Some(i) = self.current {
            if let Some(child) = self.children.get_mut(i) {
                child.next();
            }
            self.find_smallest();
        }
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

    fn next(&mut self) {
        if let Some(it) = &mut self.current {
            it.next();
        }
        self.skip_exhausted();
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

/// The user's view of the database at a snapshot: for each user key in
/// `[lower, upper)`, its newest version with sequence number `<= snapshot`,
/// skipping keys whose newest version is a tombstone. Yields
/// `Result<(key, value)>`; an I/O or corruption error is yielded once and
/// ends the iteration.
///
/// The iterator holds the memtables and SSTables it started with, so it is
/// consistent while flushes and compactions run.
pub struct DbIterator {
    inner: MergingIterator,
    snapshot: u64,
    upper: Option<Vec<u8>>,
    started: bool,
    lower: Vec<u8>,
    done: bool,
    _guard: Option<crate::Snapshot>,
}

impl DbIterator {
    pub(crate) fn new(
        inner: MergingIterator,
        snapshot: u64,
        lower: &[u8],
        upper: Option<&[u8]>,
        guard: Option<crate::Snapshot>,
    ) -> Self {
        DbIterator {
            inner,
            snapshot,
            lower: lower.to_vec(),
            upper: upper.map(<[u8]>::to_vec),
            started: false,
            done: false,
            _guard: guard,
        }
    }

    /// The sequence number this iterator reads at.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot
    }

    fn start(&mut self) {
        self.started = true;
        if self.lower.is_empty() {
            self.inner.seek_to_first();
        } else {
            let mut target = Vec::new();
            encode_internal_key(&self.lower, bedrock_sstable::MAX_SEQUENCE, ValueKind::Put, &mut target);
            self.inner.seek(&target);
        }
    }

    /// Skips to the first entry of the next user key after `user_key`.
    fn skip_key(&mut self, user_key: &[u8]) {
        while self.inner.valid() {
            match decode_internal_key(self.inner.key()) {
                Some((k, _, _)) if k == user_key => self.inner.next(),
                _ => return,
            }
        }
    }

    fn advance(&mut self) -> Option<Result<(Vec<u8>, Vec<u8>)>> {
        loop {
            if !self.inner.valid() {
                return self.inner.status().err().map(Err);
            }
            let Some((user_key, seq, kind)) = decode_internal_key(self.inner.key()) else {
                return Some(Err(Error::Corruption {
                    path: Default::default(),
                    offset: 0,
                    reason: "malformed internal key in iterator".into(),
                }));
            };
            let user_key = user_key.to_vec();
            if self.upper.as_deref().is_some_and(|u| user_key.as_slice() >= u) {
                return None;
            }
            if seq > self.snapshot {
                self.inner.next();
                continue;
            }
            let value = self.inner.value().to_vec();
            self.skip_key(&user_key);
            if kind == ValueKind::Put {
                return Some(Ok((user_key, value)));
            }
        }
    }
}

impl Iterator for DbIterator {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if !self.started {
            self.start();
        }
        let item = self.advance();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}
