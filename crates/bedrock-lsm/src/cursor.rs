//! [`DbCursor`]: a bidirectional, bounded cursor over the user's view of
//! the database at a snapshot.
//!
//! The algorithm is LevelDB's `DBIter`. Going forward, the merged internal
//! iterator sits on the entry being returned (the newest visible version of
//! its user key). Going backward it sits *before* every entry of the
//! current user key: walking backward meets a key's versions oldest first,
//! so the cursor keeps the last visible version it saw as the candidate and
//! stops when the user key changes.

use bedrock_sstable::{decode_internal_key, encode_internal_key, ValueKind, MAX_SEQUENCE};

use crate::iter::{InternalIterator, MergingIterator};
use crate::{Error, Result, Snapshot};

/// A cursor over keys in `[lower, upper)` at a snapshot: `seek`,
/// `seek_for_prev`, `seek_to_first`, `seek_to_last`, `next`, `prev`. After
/// any move, check [`DbCursor::valid`]; when it is false, [`DbCursor::status`]
/// says whether the end was reached or an error (corruption, I/O) stopped
/// the cursor. Holds the memtables and SSTables it was created with, so it
/// is consistent while flushes and compactions run.
pub struct DbCursor {
    inner: MergingIterator,
    snapshot: u64,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    forward: bool,
    valid: bool,
    key: Vec<u8>,
    value: Vec<u8>,
    /// Forward scans skip entries of keys up to this one.
    skip: Vec<u8>,
    error: Option<String>,
    _guard: Option<Snapshot>,
}

impl DbCursor {
    pub(crate) fn new(
        inner: MergingIterator,
        snapshot: u64,
        lower: &[u8],
        upper: Option<&[u8]>,
        guard: Option<Snapshot>,
    ) -> Self {
        DbCursor {
            inner,
            snapshot,
            lower: lower.to_vec(),
            upper: upper.map(<[u8]>::to_vec),
            forward: true,
            valid: false,
            key: Vec::new(),
            value: Vec::new(),
            skip: Vec::new(),
            error: None,
            _guard: guard,
        }
    }

    /// The sequence number this cursor reads at.
    pub fn snapshot_seq(&self) -> u64 {
        self.snapshot
    }

    /// True if positioned at a key.
    pub fn valid(&self) -> bool {
        self.valid
    }

    /// The current key (empty if not valid).
    pub fn key(&self) -> &[u8] {
        if self.valid {
            &self.key
        } else {
            &[]
        }
    }

    /// The current value (empty if not valid).
    pub fn value(&self) -> &[u8] {
        if self.valid {
            &self.value
        } else {
            &[]
        }
    }

    /// `Ok` unless an error stopped the cursor.
    ///
    /// # Errors
    /// The SSTable checksum, corruption or I/O error met while moving.
    pub fn status(&self) -> Result<()> {
        if let Some(reason) = &self.error {
            return Err(Error::Corruption { path: Default::default(), offset: 0, reason: reason.clone() });
        }
        self.inner.status()
    }

    /// Positions at the first key (`>= lower`).
    pub fn seek_to_first(&mut self) {
        let lower = self.lower.clone();
        self.seek(&lower);
    }

    /// Positions at the first key `>= key` (and `>= lower`).
    pub fn seek(&mut self, key: &[u8]) {
        let key = if key < self.lower.as_slice() { self.lower.clone() } else { key.to_vec() };
        self.inner.seek(&internal(&key, self.snapshot.min(MAX_SEQUENCE)));
        self.forward = true;
        self.find_next_user_entry(false);
    }

    /// Positions at the last key (`< upper`).
    pub fn seek_to_last(&mut self) {
        match self.upper.clone() {
            Some(upper) => self.seek_before(&upper),
            None => {
                self.inner.seek_to_last();
                self.forward = false;
                self.find_prev_user_entry();
            }
        }
    }

    /// Positions at the last key `<= key` (and `< upper`).
    pub fn seek_for_prev(&mut self, key: &[u8]) {
        if self.upper.as_deref().is_some_and(|u| key >= u) {
            return self.seek_to_last();
        }
        self.inner.seek_for_prev(&internal(key, 0));
        self.forward = false;
        self.find_prev_user_entry();
    }

    /// Moves to the next key. Does nothing if not valid.
    pub fn next(&mut self) {
        if !self.valid {
            return;
        }
        if !self.forward {
            // The inner iterator is before the current key's entries: step
            // onto them, then past them.
            if self.inner.valid() {
                self.inner.next();
            } else {
                self.inner.seek_to_first();
            }
            self.forward = true;
        }
        std::mem::swap(&mut self.skip, &mut self.key);
        self.find_next_user_entry(true);
    }

    /// Moves to the previous key. Does nothing if not valid.
    pub fn prev(&mut self) {
        if !self.valid {
            return;
        }
        if self.forward {
            // The inner iterator is on the current key's newest visible
            // entry: step back before all of that key's entries.
            let current = self.key.clone();
            while self.inner.valid() {
                match decode_internal_key(self.inner.key()) {
                    Some((k, _, _)) if k >= current.as_slice() => self.inner.prev(),
                    _ => break,
                }
            }
            self.forward = false;
        }
        self.find_prev_user_entry();
    }

    /// Positions at the last key `< bound`.
    fn seek_before(&mut self, bound: &[u8]) {
        self.inner.seek(&internal(bound, MAX_SEQUENCE));
        if self.inner.valid() {
            self.inner.prev();
        } else {
            self.inner.seek_to_last();
        }
        self.forward = false;
        self.find_prev_user_entry();
    }

    /// Forward: skips invisible entries, entries of keys `<= self.skip`
    /// (the key just returned, or a deleted key) and stops on the next
    /// visible put. Reuses the key, value and skip buffers, so a scan does
    /// not allocate per entry.
    fn find_next_user_entry(&mut self, skipping: bool) {
        self.valid = false;
        let mut skipping = skipping;
        while self.inner.valid() {
            let Some((user_key, seq, kind)) = decode_internal_key(self.inner.key()) else {
                self.error = Some("malformed internal key".into());
                return;
            };
            if self.upper.as_deref().is_some_and(|u| user_key >= u) {
                return;
            }
            let skipped = skipping && user_key <= self.skip.as_slice();
            if seq <= self.snapshot && !skipped {
                if kind == ValueKind::Delete {
                    self.skip.clear();
                    self.skip.extend_from_slice(user_key);
                    skipping = true;
                } else {
                    self.key.clear();
                    self.key.extend_from_slice(user_key);
                    self.value.clear();
                    self.value.extend_from_slice(self.inner.value());
                    self.valid = true;
                    return;
                }
            }
            self.inner.next();
        }
    }

    /// Backward: see the module docs.
    fn find_prev_user_entry(&mut self) {
        self.valid = false;
        let mut found: Option<ValueKind> = None;
        while self.inner.valid() {
            let Some((user_key, seq, kind)) = decode_internal_key(self.inner.key()) else {
                self.error = Some("malformed internal key".into());
                return;
            };
            if user_key < self.lower.as_slice() {
                break;
            }
            let above = self.upper.as_deref().is_some_and(|u| user_key >= u);
            if seq <= self.snapshot && !above {
                if found == Some(ValueKind::Put) && user_key < self.key.as_slice() {
                    break;
                }
                found = Some(kind);
                if kind == ValueKind::Put {
                    self.key.clear();
                    self.key.extend_from_slice(user_key);
                    self.value.clear();
                    self.value.extend_from_slice(self.inner.value());
                } else {
                    self.key.clear();
                    self.value.clear();
                }
            }
            self.inner.prev();
        }
        self.valid = found == Some(ValueKind::Put);
    }
}

fn internal(user_key: &[u8], seq: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + bedrock_sstable::TRAILER_LEN);
    encode_internal_key(user_key, seq, ValueKind::Put, &mut out);
    out
}
