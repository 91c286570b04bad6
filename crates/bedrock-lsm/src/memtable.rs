//! The memtable: a concurrent skip list of internal keys.
//!
//! Entries are keyed by internal key (user key ascending, sequence number
//! descending, see `bedrock_sstable::compare_internal_keys`), so the
//! newest version of a key visible at a snapshot is the first entry at or
//! after `(key, snapshot, Put)`. Reads never take a lock
//! (crossbeam-skiplist); writes are serialized by the database's write lock.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use bedrock_sstable::{compare_internal_keys, decode_internal_key, encode_internal_key, ValueKind};
use crossbeam_skiplist::SkipMap;

use crate::batch::WriteBatch;
use crate::iter::InternalIterator;
use crate::Result;

/// An encoded internal key ordered by `compare_internal_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemKey(pub(crate) Vec<u8>);

impl Ord for MemKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_internal_keys(&self.0, &other.0)
    }
}

impl PartialOrd for MemKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Bytes charged per entry beyond key and value: skip-list node and
/// allocation overhead, so the size limit tracks real memory.
const ENTRY_OVERHEAD: usize = 64;

/// A sorted in-memory table of recent writes.
#[derive(Debug)]
pub(crate) struct Memtable {
    map: SkipMap<MemKey, Vec<u8>>,
    approximate_bytes: AtomicUsize,
    max_seq: AtomicU64,
    /// The WAL segment that was current when this memtable was created:
    /// every record of this memtable is in this segment or a later one.
    pub(crate) first_segment: u64,
}

impl Memtable {
    pub(crate) fn new(first_segment: u64) -> Self {
        Memtable {
            map: SkipMap::new(),
            approximate_bytes: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            first_segment,
        }
    }

    /// Inserts every operation of `batch` at sequence number `seq`. When a
    /// key appears more than once, only its last operation is kept, so one
    /// (key, seq) never has two entries.
    pub(crate) fn apply(&self, batch: &WriteBatch, seq: u64) {
        // Single-operation batches (most writes) need no duplicate check.
        let dedup = batch.len() > 1;
        let mut seen = HashSet::with_capacity(if dedup { batch.len() } else { 0 });
        let mut added = 0;
        for (kind, key, value) in batch.ops().rev() {
            if dedup && !seen.insert(key) {
                continue;
            }
            let mut ikey = Vec::with_capacity(key.len() + bedrock_sstable::TRAILER_LEN);
            encode_internal_key(key, seq, kind, &mut ikey);
            added += ikey.len() + value.len() + ENTRY_OVERHEAD;
            self.map.insert(MemKey(ikey), value.to_vec());
        }
        self.approximate_bytes.fetch_add(added, AtomicOrdering::Relaxed);
        self.max_seq.fetch_max(seq, AtomicOrdering::Release);
    }

    /// The newest entry of `user_key` with sequence number `<= seq`, as
    /// (sequence number, kind, value).
    pub(crate) fn get(&self, user_key: &[u8], seq: u64) -> Option<(u64, ValueKind, Vec<u8>)> {
        let mut target = Vec::with_capacity(user_key.len() + bedrock_sstable::TRAILER_LEN);
        encode_internal_key(user_key, seq, ValueKind::Put, &mut target);
        let entry = self.map.lower_bound(Bound::Included(&MemKey(target)))?;
        let (found, found_seq, kind) = decode_internal_key(&entry.key().0)?;
        (found == user_key).then(|| (found_seq, kind, entry.value().clone()))
    }

    pub(crate) fn approximate_bytes(&self) -> usize {
        self.approximate_bytes.load(AtomicOrdering::Relaxed)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    pub(crate) fn max_seq(&self) -> u64 {
        self.max_seq.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn iter(self: &Arc<Self>) -> MemtableIter {
        MemtableIter { mem: self.clone(), current: None }
    }
}

/// A forward iterator over a memtable that owns an `Arc` of it. Each step
/// re-seeks past the current key, which keeps the iterator free of
/// borrowed lifetimes at the cost of an O(log n) step.
#[derive(Debug)]
pub(crate) struct MemtableIter {
    mem: Arc<Memtable>,
    current: Option<(Vec<u8>, Vec<u8>)>,
}

impl MemtableIter {
    fn load(&mut self, bound: Bound<&MemKey>) {
        self.current = self.mem.map.lower_bound(bound).map(|e| (e.key().0.clone(), e.value().clone()));
    }
}

impl InternalIterator for MemtableIter {
    fn seek_to_first(&mut self) {
        self.current = self.mem.map.front().map(|e| (e.key().0.clone(), e.value().clone()));
    }

    fn seek(&mut self, target: &[u8]) {
        self.load(Bound::Included(&MemKey(target.to_vec())));
    }

    fn seek_to_last(&mut self) {
        self.current = self.mem.map.back().map(|e| (e.key().0.clone(), e.value().clone()));
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        let bound = MemKey(target.to_vec());
        self.current =
            self.mem.map.upper_bound(Bound::Included(&bound)).map(|e| (e.key().0.clone(), e.value().clone()));
    }

    fn next(&mut self) {
        if let Some((key, _)) = self.current.take() {
            self.load(Bound::Excluded(&MemKey(key)));
        }
    }

    fn prev(&mut self) {
        if let Some((key, _)) = self.current.take() {
            let bound = MemKey(key);
            self.current =
                self.mem.map.upper_bound(Bound::Excluded(&bound)).map(|e| (e.key().0.clone(), e.value().clone()));
        }
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |(k, _)| k.as_slice())
    }

    fn value(&self) -> &[u8] {
        self.current.as_ref().map_or(&[], |(_, v)| v.as_slice())
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_sees_newest_visible_version() {
        let mem = Memtable::new(1);
        let mut b = WriteBatch::new();
        b.put(b"k", b"v1");
        mem.apply(&b, 5);
        let mut b = WriteBatch::new();
        b.delete(b"k");
        mem.apply(&b, 9);
        assert_eq!(mem.get(b"k", 4), None);
        assert_eq!(mem.get(b"k", 5), Some((5, ValueKind::Put, b"v1".to_vec())));
        assert_eq!(mem.get(b"k", 8), Some((5, ValueKind::Put, b"v1".to_vec())));
        assert_eq!(mem.get(b"k", 9), Some((9, ValueKind::Delete, Vec::new())));
        assert_eq!(mem.get(b"j", 100), None);
        assert_eq!(mem.get(b"k", bedrock_sstable::MAX_SEQUENCE).map(|(s, _, _)| s), Some(9));
    }

    #[test]
    fn last_op_on_a_key_in_a_batch_wins() {
        let mem = Memtable::new(1);
        let mut b = WriteBatch::new();
        b.put(b"k", b"v1");
        b.delete(b"k");
        b.put(b"x", b"1");
        b.put(b"x", b"2");
        mem.apply(&b, 3);
        assert_eq!(mem.get(b"k", 3), Some((3, ValueKind::Delete, Vec::new())));
        assert_eq!(mem.get(b"x", 3), Some((3, ValueKind::Put, b"2".to_vec())));
        assert_eq!(mem.len(), 2);
    }

    #[test]
    fn iterator_walks_in_internal_key_order() {
        let mem = Arc::new(Memtable::new(1));
        for (i, key) in [b"b", b"a", b"c"].iter().enumerate() {
            let mut batch = WriteBatch::new();
            batch.put(*key, b"v");
            mem.apply(&batch, i as u64 + 1);
        }
        let mut it = mem.iter();
        it.seek_to_first();
        let mut keys = Vec::new();
        while it.valid() {
            keys.push(decode_internal_key(it.key()).unwrap().0.to_vec());
            it.next();
        }
        assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
    }
}
