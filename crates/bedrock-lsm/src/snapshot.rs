//! Snapshots: registered sequence numbers that compaction must preserve.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

/// The live snapshots, counted per sequence number.
#[derive(Debug, Default)]
pub(crate) struct SnapshotList {
    seqs: Mutex<BTreeMap<u64, usize>>,
}

impl SnapshotList {
    /// Sorted sequence numbers of live snapshots plus the visible sequence
    /// number read under the same lock (the *floor*, included in the list).
    /// A snapshot registered later reads at a sequence number >= the floor,
    /// because [`SnapshotList::take`] reads `visible` under this lock too.
    pub(crate) fn sorted_with_floor(&self, visible: &AtomicU64) -> (Vec<u64>, u64) {
        let seqs = self.seqs.lock();
        let floor = visible.load(Ordering::Acquire);
        let mut list: Vec<u64> = seqs.keys().copied().collect();
        if let Err(pos) = list.binary_search(&floor) {
            list.insert(pos, floor);
        }
        (list, floor)
    }

    /// Registers a snapshot at the current visible sequence number.
    pub(crate) fn take(self: &Arc<Self>, visible: &AtomicU64) -> Snapshot {
        let mut seqs = self.seqs.lock();
        let seq = visible.load(Ordering::Acquire);
        *seqs.entry(seq).or_insert(0) += 1;
        Snapshot { seq, list: self.clone() }
    }

    pub(crate) fn len(&self) -> usize {
        self.seqs.lock().values().sum()
    }
}

/// A consistent, repeatable view of the database: reads through it see
/// exactly the writes with sequence number `<=` [`Snapshot::seq`].
/// Compaction keeps every version a live snapshot can see; dropping the
/// snapshot releases them. Cheap to create; cloning registers another
/// reference.
#[derive(Debug)]
pub struct Snapshot {
    seq: u64,
    list: Arc<SnapshotList>,
}

impl Snapshot {
    pub(crate) fn new(list: Arc<SnapshotList>, seq: u64) -> Snapshot {
        *list.seqs.lock().entry(seq).or_insert(0) += 1;
        Snapshot { seq, list }
    }

    /// The sequence number this snapshot reads at.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        Snapshot::new(self.list.clone(), self.seq)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut seqs = self.list.seqs.lock();
        if let Some(n) = seqs.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                seqs.remove(&self.seq);
            }
        }
    }
}
