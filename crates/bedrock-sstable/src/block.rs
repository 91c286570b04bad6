//! Blocks: sorted entries with prefix-compressed keys and restart points,
//! used for both data blocks and the index block.
//!
//! ```text
//! entry:   shared: varint32 | unshared: varint32 | value_len: varint32
//!          | key_delta: unshared bytes | value: value_len bytes
//! block:   entry* | restart: u32 LE * num_restarts | num_restarts: u32 LE
//! ```
//!
//! An entry's key is the first `shared` bytes of the previous entry's key
//! followed by `key_delta`. Every `restart_interval`-th entry is a *restart
//! point*: it has `shared == 0` and its offset is listed in the restart
//! array, so a seek can binary-search the restart points and then scan at
//! most one interval. The reader ([`BlockIter`]) treats the bytes as
//! untrusted: every length and offset is checked and a bad one is a
//! [`BlockError`], never a panic.

use std::cmp::Ordering;
use std::mem::size_of;
use std::ops::Range;

use crate::format::{get_varint32, put_varint32, read_u32};
use crate::key::compare_internal_keys;

/// Bytes of one restart offset, and of the restart count.
const RESTART_LEN: usize = size_of::<u32>();

/// A block grew past 4 GiB, so its offsets no longer fit the u32 fields.
/// The table builder's key and value limits make this unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockTooLarge;

/// Builds one block. Keys must be added in increasing order (the table
/// builder checks this).
#[derive(Debug)]
pub(crate) struct BlockBuilder {
    buf: Vec<u8>,
    restarts: Vec<u32>,
    restart_interval: usize,
    /// Entries added since the last restart point.
    since_restart: usize,
    last_key: Vec<u8>,
    entries: u64,
}

impl BlockBuilder {
    /// An empty builder with a restart point every `restart_interval`
    /// entries (at least 1).
    pub(crate) fn new(restart_interval: usize) -> Self {
        let restart_interval = restart_interval.max(1);
        BlockBuilder {
            buf: Vec::new(),
            restarts: Vec::new(),
            restart_interval,
            since_restart: restart_interval,
            last_key: Vec::new(),
            entries: 0,
        }
    }

    /// Appends an entry.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), BlockTooLarge> {
        let shared = if self.since_restart < self.restart_interval {
            key.iter().zip(&self.last_key).take_while(|(a, b)| a == b).count()
        } else {
            self.restarts.push(u32::try_from(self.buf.len()).map_err(|_| BlockTooLarge)?);
            self.since_restart = 0;
            0
        };
        let delta = key.get(shared..).unwrap_or_default();
        for len in [shared, delta.len(), value.len()] {
            put_varint32(&mut self.buf, u32::try_from(len).map_err(|_| BlockTooLarge)?);
        }
        self.buf.extend_from_slice(delta);
        self.buf.extend_from_slice(value);
        self.last_key.truncate(shared);
        self.last_key.extend_from_slice(delta);
        self.since_restart = self.since_restart.saturating_add(1);
        self.entries = self.entries.saturating_add(1);
        Ok(())
    }

    /// Bytes the finished block would take (without its trailer).
    pub(crate) fn estimated_size(&self) -> usize {
        let restarts = self.restarts.len().saturating_add(1).saturating_mul(RESTART_LEN);
        self.buf.len().saturating_add(restarts)
    }

    /// True if no entry was added since the last `finish`.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entries added since the last `finish`.
    pub(crate) fn entries(&self) -> u64 {
        self.entries
    }

    /// The block's contents (entries, restart array, restart count); the
    /// builder is reset for the next block.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, BlockTooLarge> {
        let count = u32::try_from(self.restarts.len()).map_err(|_| BlockTooLarge)?;
        let mut out = std::mem::take(&mut self.buf);
        for r in &self.restarts {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&count.to_le_bytes());
        u32::try_from(out.len()).map_err(|_| BlockTooLarge)?;
        self.restarts.clear();
        self.since_restart = self.restart_interval;
        self.last_key.clear();
        self.entries = 0;
        Ok(out)
    }
}

/// Damage found while decoding a block: the byte offset within the block
/// and what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockError {
    /// Offset within the block's contents.
    pub at: usize,
    /// What was wrong.
    pub reason: &'static str,
}

fn damaged(at: usize, reason: &'static str) -> BlockError {
    BlockError { at, reason }
}

/// One decoded entry header: where its key delta and value are.
#[derive(Debug)]
struct RawEntry {
    shared: usize,
    delta: Range<usize>,
    value: Range<usize>,
}

/// A cursor over one block. It borrows nothing: every method that reads
/// takes the block's bytes, so a [`crate::TableIter`] can keep it next to
/// the `Arc<Table>` that owns them. Pass the same bytes to every call.
///
/// Once a method returns an error the cursor is invalid until the next
/// successful seek.
#[derive(Debug, Clone)]
pub(crate) struct BlockIter {
    /// End of the entries, which is where the restart array starts.
    entries_end: usize,
    num_restarts: usize,
    /// Offset of the entry after the current one.
    next: usize,
    /// Offset of the current entry.
    current: usize,
    key: Vec<u8>,
    value: Range<usize>,
    valid: bool,
}

#[deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
impl BlockIter {
    /// A cursor over `block`, positioned nowhere (invalid).
    ///
    /// # Errors
    /// If the restart array does not fit in the block, or a non-empty block
    /// has no restart point.
    pub(crate) fn new(block: &[u8]) -> Result<Self, BlockError> {
        let count_at =
            block.len().checked_sub(RESTART_LEN).ok_or(damaged(0, "block shorter than its restart count"))?;
        let num_restarts = read_u32(block, count_at).ok_or(damaged(count_at, "restart count out of range"))?;
        let num_restarts = usize::try_from(num_restarts).map_err(|_| damaged(count_at, "restart count too large"))?;
        let entries_end = num_restarts
            .checked_mul(RESTART_LEN)
            .and_then(|len| count_at.checked_sub(len))
            .ok_or(damaged(count_at, "restart array larger than the block"))?;
        if num_restarts == 0 && entries_end != 0 {
            return Err(damaged(0, "entries without a restart point"));
        }
        let it =
            BlockIter { entries_end, num_restarts, next: 0, current: 0, key: Vec::new(), value: 0..0, valid: false };
        Ok(it)
    }

    /// True if positioned at an entry.
    pub(crate) fn valid(&self) -> bool {
        self.valid
    }

    /// The current entry's key (empty if invalid).
    pub(crate) fn key(&self) -> &[u8] {
        if self.valid {
            &self.key
        } else {
            &[]
        }
    }

    /// The current entry's value within `block` (empty if invalid).
    pub(crate) fn value<'b>(&self, block: &'b [u8]) -> &'b [u8] {
        if !self.valid {
            return &[];
        }
        block.get(self.value.clone()).unwrap_or_default()
    }

    /// Offset of the current entry within the block.
    pub(crate) fn entry_offset(&self) -> usize {
        self.current
    }

    /// Number of restart points in the block.
    pub(crate) fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// Offset of restart point `i` (checked against the entries' extent).
    pub(crate) fn restart_offset(&self, block: &[u8], i: usize) -> Result<usize, BlockError> {
        let at = i.checked_mul(RESTART_LEN).and_then(|o| o.checked_add(self.entries_end));
        let at = at.ok_or(damaged(self.entries_end, "restart index out of range"))?;
        let off = read_u32(block, at).ok_or(damaged(at, "restart offset out of range"))?;
        let off = usize::try_from(off).map_err(|_| damaged(at, "restart offset too large"))?;
        if off >= self.entries_end {
            return Err(damaged(at, "restart offset points past the entries"));
        }
        Ok(off)
    }

    /// Checks that the entry at `at` has a full key (`shared == 0`), as a
    /// restart point must.
    pub(crate) fn check_restart_entry(&self, block: &[u8], at: usize) -> Result<(), BlockError> {
        restart_key(block, at, self.entries_end).map(|_| ())
    }

    /// Positions at the first entry (invalid if the block is empty).
    pub(crate) fn seek_to_first(&mut self, block: &[u8]) -> Result<(), BlockError> {
        self.key.clear();
        self.next = 0;
        self.valid = false;
        self.step(block)
    }

    /// Moves to the next entry (invalid past the last).
    pub(crate) fn next(&mut self, block: &[u8]) -> Result<(), BlockError> {
        if !self.valid {
            return Ok(());
        }
        self.step(block)
    }

    /// Positions at the first entry whose key is `>= target` per
    /// [`compare_internal_keys`]; invalid if there is none.
    pub(crate) fn seek(&mut self, block: &[u8], target: &[u8]) -> Result<(), BlockError> {
        self.valid = false;
        // Count restart points whose key is < target, then scan forward from
        // the last of them (or from the start if there is none).
        let (mut lo, mut hi) = (0usize, self.num_restarts);
        while lo < hi {
            let mid = lo.midpoint(hi);
            let at = self.restart_offset(block, mid)?;
            if compare_internal_keys(restart_key(block, at, self.entries_end)?, target) == Ordering::Less {
                lo = mid.checked_add(1).ok_or(damaged(at, "restart index overflow"))?;
            } else {
                hi = mid;
            }
        }
        let Some(start) = lo.checked_sub(1) else { return self.seek_to_first_then(block, target) };
        self.key.clear();
        self.next = self.restart_offset(block, start)?;
        self.step(block)?;
        self.scan_to(block, target)
    }

    /// Positions at the last entry (invalid if the block is empty).
    pub(crate) fn seek_to_last(&mut self, block: &[u8]) -> Result<(), BlockError> {
        self.valid = false;
        let Some(last) = self.num_restarts.checked_sub(1) else { return Ok(()) };
        self.key.clear();
        self.next = self.restart_offset(block, last)?;
        self.step(block)?;
        while self.valid && self.next < self.entries_end {
            self.step(block)?;
        }
        Ok(())
    }

    /// Moves to the previous entry (invalid before the first): re-decodes
    /// forward from the last restart point before the current entry, as
    /// LevelDB's `Block::Iter::Prev` does.
    pub(crate) fn prev(&mut self, block: &[u8]) -> Result<(), BlockError> {
        if !self.valid {
            return Ok(());
        }
        let original = self.current;
        self.valid = false;
        // The last restart point strictly before the current entry.
        let (mut lo, mut hi) = (0usize, self.num_restarts);
        while lo < hi {
            let mid = lo.midpoint(hi);
            if self.restart_offset(block, mid)? < original {
                lo = mid.checked_add(1).ok_or(damaged(original, "restart index overflow"))?;
            } else {
                hi = mid;
            }
        }
        let Some(restart) = lo.checked_sub(1) else { return Ok(()) };
        self.key.clear();
        self.next = self.restart_offset(block, restart)?;
        self.step(block)?;
        while self.valid && self.next < original {
            self.step(block)?;
        }
        if !self.valid || self.next != original {
            self.valid = false;
            return Err(damaged(original, "entries do not lead to the current entry"));
        }
        Ok(())
    }

    fn seek_to_first_then(&mut self, block: &[u8], target: &[u8]) -> Result<(), BlockError> {
        self.seek_to_first(block)?;
        self.scan_to(block, target)
    }

    /// Advances until the current key is `>= target` or the block ends.
    fn scan_to(&mut self, block: &[u8], target: &[u8]) -> Result<(), BlockError> {
        while self.valid && compare_internal_keys(&self.key, target) == Ordering::Less {
            self.step(block)?;
        }
        Ok(())
    }

    /// Decodes the entry at `self.next` and makes it current.
    fn step(&mut self, block: &[u8]) -> Result<(), BlockError> {
        if self.next >= self.entries_end {
            self.valid = false;
            return Ok(());
        }
        self.valid = false;
        let at = self.next;
        let e = decode_entry(block, at, self.entries_end)?;
        if e.shared > self.key.len() {
            return Err(damaged(at, "entry shares more bytes than the previous key has"));
        }
        let delta = block.get(e.delta.clone()).ok_or(damaged(at, "key out of range"))?;
        self.key.truncate(e.shared);
        self.key.extend_from_slice(delta);
        self.current = at;
        self.next = e.value.end;
        self.value = e.value;
        self.valid = true;
        Ok(())
    }
}

/// Decodes the header of the entry at `at`, checking that its key delta and
/// value end within `entries_end`.
#[deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
fn decode_entry(block: &[u8], at: usize, entries_end: usize) -> Result<RawEntry, BlockError> {
    let region = block.get(at..entries_end).ok_or(damaged(at, "entry offset out of range"))?;
    let mut pos = 0usize;
    let mut fields = [0usize; 3];
    for field in &mut fields {
        let rest = region.get(pos..).ok_or(damaged(at, "entry header out of range"))?;
        let (v, n) = get_varint32(rest).ok_or(damaged(at, "bad varint in entry header"))?;
        *field = usize::try_from(v).map_err(|_| damaged(at, "entry length too large"))?;
        pos = pos.checked_add(n).ok_or(damaged(at, "entry header overflow"))?;
    }
    let [shared, unshared, value_len] = fields;
    let delta_start = at.checked_add(pos).ok_or(damaged(at, "entry overflow"))?;
    let value_start = delta_start.checked_add(unshared).ok_or(damaged(at, "entry overflow"))?;
    let value_end = value_start.checked_add(value_len).ok_or(damaged(at, "entry overflow"))?;
    if value_end > entries_end {
        return Err(damaged(at, "entry runs past the end of the entries"));
    }
    Ok(RawEntry { shared, delta: delta_start..value_start, value: value_start..value_end })
}

/// The full key of the restart entry at `at` (which must not share bytes).
fn restart_key(block: &[u8], at: usize, entries_end: usize) -> Result<&[u8], BlockError> {
    let e = decode_entry(block, at, entries_end)?;
    if e.shared != 0 {
        return Err(damaged(at, "restart point with a shared key prefix"));
    }
    block.get(e.delta).ok_or(damaged(at, "key out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::{encode_internal_key, ValueKind};
    use proptest::prelude::*;

    fn ik(user_key: &[u8], seq: u64) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(user_key, seq, ValueKind::Put, &mut out);
        out
    }

    fn build(entries: &[(Vec<u8>, Vec<u8>)], interval: usize) -> Vec<u8> {
        let mut b = BlockBuilder::new(interval);
        for (k, v) in entries {
            b.add(k, v).unwrap();
        }
        let est = b.estimated_size();
        let block = b.finish().unwrap();
        assert_eq!(block.len(), est, "estimated_size is exact before compression");
        assert!(b.is_empty());
        block
    }

    fn collect(block: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut it = BlockIter::new(block).unwrap();
        it.seek_to_first(block).unwrap();
        let mut out = Vec::new();
        while it.valid() {
            out.push((it.key().to_vec(), it.value(block).to_vec()));
            it.next(block).unwrap();
        }
        out
    }

    fn sample(n: u64) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n).map(|i| (ik(format!("key{:04}", i * 2).as_bytes(), 7), format!("v{i}").into_bytes())).collect()
    }

    #[test]
    fn empty_block_is_just_a_zero_count() {
        let block = build(&[], 16);
        assert_eq!(block, [0, 0, 0, 0]);
        assert!(collect(&block).is_empty());
    }

    #[test]
    fn round_trips_with_each_restart_interval() {
        let entries = sample(50);
        for interval in [1, 2, 16, 100] {
            let block = build(&entries, interval);
            assert_eq!(collect(&block), entries, "interval {interval}");
            let it = BlockIter::new(&block).unwrap();
            assert_eq!(it.num_restarts(), 50usize.div_ceil(interval));
        }
    }

    #[test]
    fn prev_and_seek_to_last_walk_backwards() {
        let keys: Vec<Vec<u8>> = (0..20u64).map(|i| ik(format!("k{i:02}").as_bytes(), 1)).collect();
        let entries: Vec<(Vec<u8>, Vec<u8>)> = keys.iter().map(|k| (k.clone(), b"v".to_vec())).collect();
        let block = build(&entries, 3);
        let mut it = BlockIter::new(&block).unwrap();
        it.seek_to_last(&block).unwrap();
        let mut back = Vec::new();
        while it.valid() {
            back.push(it.key().to_vec());
            it.prev(&block).unwrap();
        }
        back.reverse();
        assert_eq!(back, keys);
    }

    #[test]
    fn prefix_compression_encodes_the_documented_bytes() {
        let block = build(&[(b"abc".to_vec(), b"1".to_vec()), (b"abd".to_vec(), b"".to_vec())], 16);
        let expected = [
            0, 3, 1, b'a', b'b', b'c', b'1', // restart entry
            2, 1, 0, b'd', // shares "ab"
            0, 0, 0, 0, // restart[0] = 0
            1, 0, 0, 0, // one restart
        ];
        assert_eq!(block, expected);
    }

    #[test]
    fn seek_finds_first_key_at_or_after_target() {
        let entries = sample(40);
        for interval in [1, 3, 16] {
            let block = build(&entries, interval);
            let mut it = BlockIter::new(&block).unwrap();
            for probe in 0..82u64 {
                let target = ik(format!("key{probe:04}").as_bytes(), 7);
                it.seek(&block, &target).unwrap();
                let want = entries.iter().find(|(k, _)| compare_internal_keys(k, &target) != Ordering::Less);
                assert_eq!(it.valid(), want.is_some(), "probe {probe} interval {interval}");
                if let Some((k, v)) = want {
                    assert_eq!((it.key(), it.value(&block)), (&k[..], &v[..]));
                }
            }
        }
    }

    #[test]
    fn damaged_restart_arrays_are_errors() {
        assert!(BlockIter::new(&[1, 0, 0]).is_err());
        assert!(BlockIter::new(&[5, 0, 0, 0]).is_err(), "5 restarts do not fit");
        assert!(BlockIter::new(&[9, 0, 0, 0, 0]).is_err(), "entries with no restart");
        let mut block = build(&sample(3), 1);
        let n = block.len();
        block[n - 8] = 200; // last restart offset points past the entries
        let mut it = BlockIter::new(&block).unwrap();
        assert!(it.seek(&block, &ik(b"zzz", 0)).is_err());
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(
            bytes in proptest::collection::vec(any::<u8>(), 0..64),
            target in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            if let Ok(mut it) = BlockIter::new(&bytes) {
                let mut steps = 0;
                if it.seek_to_first(&bytes).is_ok() {
                    while it.valid() && steps < 100 && it.next(&bytes).is_ok() {
                        steps += 1;
                        let _ = it.value(&bytes);
                    }
                }
                let _ = it.seek(&bytes, &target);
                for i in 0..it.num_restarts() {
                    let _ = it.restart_offset(&bytes, i);
                }
            }
        }

        #[test]
        fn mutated_blocks_never_panic(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let mut block = build(&sample(20), 4);
            let i = pos.index(block.len());
            block[i] = byte;
            if let Ok(mut it) = BlockIter::new(&block) {
                let _ = it.seek(&block, &ik(b"key0011", 7));
                if it.seek_to_first(&block).is_ok() {
                    while it.valid() && it.next(&block).is_ok() {}
                }
            }
        }
    }
}
