//! The memtable: a skip list of internal keys whose nodes live in an arena.
//!
//! Entries are keyed by internal key (user key ascending, sequence number
//! descending, see `bedrock_sstable::compare_internal_keys`), so the
//! newest version of a key visible at a snapshot is the first entry at or
//! after `(key, snapshot, Put)`.
//!
//! # Layout
//! The skip list is LevelDB's (`db/skiplist.h`, after Pugh, "Skip Lists: A
//! Probabilistic Alternative to Balanced Trees", 1990) with RocksDB's
//! inline layout (`memtable/inlineskiplist.h`): one arena allocation per
//! entry holds the node header, its tower of next pointers, the internal
//! key and the value.
//!
//! ```text
//! +-----------+-----------+----------+-----+---------------------+---------------+--------+
//! | key_len   | value_len | height   | pad | next[0..height]     | internal key  | value  |
//! | u32       | u32       | u32      | u32 | height x 8 bytes    | key_len bytes | bytes  |
//! +-----------+-----------+----------+-----+---------------------+---------------+--------+
//! ```
//!
//! The arena hands out memory from blocks of up to [`MAX_BLOCK_BYTES`]
//! and frees nothing until the memtable is dropped, when it frees the
//! blocks at once. An insert therefore costs no heap allocation (one per
//! block), and dropping a flushed memtable of a million entries frees a
//! few dozen blocks rather than millions of small allocations, which
//! would hold the allocator's locks against the writers for hundreds of
//! milliseconds.
//!
//! # Concurrency
//! One writer at a time (the `writer` mutex, uncontended because the
//! database's write lock already serializes writers), any number of
//! readers without a lock. A node is written completely before it is
//! linked, and linked bottom level first with release stores that
//! readers load with acquire, so a reader sees either the whole node or
//! none of it. Nodes are never unlinked or moved while the memtable lives.

use std::fmt;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

use bedrock_sstable::{
    compare_internal_keys, decode_internal_key, encode_internal_key, internal_key_trailer, ValueKind, TRAILER_LEN,
};
use parking_lot::Mutex;

use crate::batch::WriteBatch;
use crate::iter::InternalIterator;
use crate::Result;

/// The tallest tower. With [`BRANCHING`] 4, twelve levels index 4^12
/// (about 16.7 million) entries in O(log n) steps, more than a memtable
/// of the largest sensible size holds.
const MAX_HEIGHT: usize = 12;

/// A node reaches level `h + 1` with probability 1 / `BRANCHING` given
/// level `h`, as in LevelDB.
const BRANCHING: u64 = 4;

/// The first arena block. Blocks double up to [`MAX_BLOCK_BYTES`], so a
/// small memtable (tests use 4 KiB ones) holds little memory.
const FIRST_BLOCK_BYTES: usize = 8 << 10;

/// The largest arena block (1 MiB). An entry larger than a quarter of the
/// current block size gets a block of its own, so a block wastes at most
/// a quarter of itself.
const MAX_BLOCK_BYTES: usize = 1 << 20;

/// The fixed part of a node; the tower, key and value follow it.
#[repr(C)]
struct Node {
    key_len: u32,
    value_len: u32,
    height: u32,
    _pad: u32,
}

const TOWER_SLOT: usize = size_of::<AtomicPtr<Node>>();

const _: () = assert!(size_of::<Node>() % align_of::<AtomicPtr<Node>>() == 0);
const _: () = assert!(align_of::<u64>() >= align_of::<Node>());
const _: () = assert!(align_of::<u64>() >= align_of::<AtomicPtr<Node>>());

/// Bytes of a node with this tower height, key and value, rounded up to 8
/// so the next node stays aligned.
fn node_size(height: usize, key_len: usize, value_len: usize) -> usize {
    (size_of::<Node>() + height * TOWER_SLOT + key_len + value_len).next_multiple_of(align_of::<u64>())
}

/// True if internal keys `a` and `b` have the same user key and sequence
/// number (they may differ in kind: the first trailer byte, little-endian).
fn same_user_key_and_seq(a: &[u8], b: &[u8]) -> bool {
    let split = a.len().saturating_sub(TRAILER_LEN);
    a.len() == b.len() && a.get(..split) == b.get(..split) && a.get(split + 1..) == b.get(split + 1..)
}

/// A pointer to a node (or the head) in one memtable's arena. It is
/// derived from the arena block's pointer, so it may reach the tower, key
/// and value past the header (a `&Node` could not).
#[derive(Clone, Copy, PartialEq, Eq)]
struct NodePtr(NonNull<Node>);

impl NodePtr {
    fn header(&self) -> &Node {
        // SAFETY: every `NodePtr` points to a fully written node header in
        // a live arena (see `Memtable::allocate_node`); headers are never
        // written again.
        unsafe { self.0.as_ref() }
    }

    /// The next pointer at `level`.
    ///
    /// # Safety
    /// `level` is below the node's height.
    unsafe fn next(&self, level: usize) -> &AtomicPtr<Node> {
        debug_assert!(level < self.header().height as usize);
        // SAFETY: the tower follows the 8-aligned header, which is a
        // multiple of 8 bytes long, and holds `height` initialised slots.
        unsafe { &*self.0.as_ptr().add(1).cast::<AtomicPtr<Node>>().add(level) }
    }

    fn key_ptr(&self) -> *const u8 {
        let height = self.header().height as usize;
        // SAFETY: stays inside the node's allocation, which holds the
        // tower and then the key and value.
        unsafe { self.0.as_ptr().add(1).cast::<u8>().add(height * TOWER_SLOT) }
    }

    /// The internal key.
    fn key(&self) -> &[u8] {
        // SAFETY: a node is fully written before it is linked, and its key
        // bytes are never written again.
        unsafe { std::slice::from_raw_parts(self.key_ptr(), self.header().key_len as usize) }
    }

    /// The value.
    fn value(&self) -> &[u8] {
        let header = self.header();
        // SAFETY: as for `key`; the value follows the key.
        unsafe { std::slice::from_raw_parts(self.key_ptr().add(header.key_len as usize), header.value_len as usize) }
    }
}

/// Bump allocation from blocks that live until the arena is dropped.
/// Blocks are `Vec<u64>` so every allocation is 8-aligned; a block's heap
/// buffer never moves, so pointers into it stay valid while the `Vec`
/// handles are moved around.
struct Arena {
    blocks: Vec<Vec<u64>>,
    /// Next free byte of the current block.
    cursor: NonNull<u8>,
    /// Free bytes left at `cursor`.
    remaining: usize,
    /// Size of the next regular block.
    next_block_bytes: usize,
}

impl Arena {
    fn new() -> Self {
        Arena { blocks: Vec::new(), cursor: NonNull::dangling(), remaining: 0, next_block_bytes: FIRST_BLOCK_BYTES }
    }

    /// Total bytes of all blocks (the memory the arena holds).
    #[cfg(test)]
    fn block_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.len() * size_of::<u64>()).sum()
    }

    fn new_block(&mut self, bytes: usize) -> NonNull<u8> {
        let mut block = vec![0u64; bytes.div_ceil(size_of::<u64>())];
        let start = NonNull::from(block.as_mut_slice()).cast::<u8>();
        self.blocks.push(block);
        start
    }

    /// `bytes` (a multiple of 8, not 0) of 8-aligned memory, valid until
    /// the arena is dropped.
    fn allocate(&mut self, bytes: usize) -> NonNull<u8> {
        debug_assert!(bytes > 0 && bytes % align_of::<u64>() == 0);
        if bytes > self.remaining {
            if bytes > self.next_block_bytes / 4 {
                // A large entry gets its own block; the current one stays
                // open for the small entries that follow.
                return self.new_block(bytes);
            }
            let size = self.next_block_bytes;
            self.next_block_bytes = (size * 2).min(MAX_BLOCK_BYTES);
            self.cursor = self.new_block(size);
            self.remaining = size;
        }
        let start = self.cursor;
        // SAFETY: `bytes <= remaining`, so the result stays in the block
        // (or one past its end).
        self.cursor = unsafe { self.cursor.add(bytes) };
        self.remaining -= bytes;
        start
    }
}

/// What only the (single) writer touches.
struct Writer {
    arena: Arena,
    /// xorshift64* state for tower heights (fixed seed, as LevelDB's).
    rng: u64,
}

impl Writer {
    fn random_height(&mut self) -> usize {
        let mut height = 1;
        while height < MAX_HEIGHT && self.next_random() % BRANCHING == 0 {
            height += 1;
        }
        height
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// A sorted in-memory table of recent writes.
pub(crate) struct Memtable {
    /// The head node: no key, a tower of [`MAX_HEIGHT`].
    head: NodePtr,
    /// The tallest tower in use; readers may see it raised before the
    /// node that raised it is linked, and then find null at the head.
    max_height: AtomicUsize,
    writer: Mutex<Writer>,
    /// Bytes of all linked nodes (headers, towers, keys, values).
    used_bytes: AtomicUsize,
    len: AtomicUsize,
    max_seq: AtomicU64,
    /// The WAL segment that was current when this memtable was created:
    /// every record of this memtable is in this segment or a later one.
    pub(crate) first_segment: u64,
}

// SAFETY: the node pointers point into the arena, which the memtable owns
// and frees only when dropped. Readers only read fully written nodes and
// atomics; all writes go through the `writer` mutex.
unsafe impl Send for Memtable {}
// SAFETY: as above.
unsafe impl Sync for Memtable {}

impl fmt::Debug for Memtable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memtable")
            .field("len", &self.len())
            .field("bytes", &self.approximate_bytes())
            .field("max_seq", &self.max_seq())
            .field("first_segment", &self.first_segment)
            .finish()
    }
}

impl Memtable {
    pub(crate) fn new(first_segment: u64) -> Self {
        let mut writer = Writer { arena: Arena::new(), rng: 0xdead_beef };
        let head = Self::allocate_node(&mut writer.arena, MAX_HEIGHT, &[], &[]);
        Memtable {
            head,
            max_height: AtomicUsize::new(1),
            writer: Mutex::new(writer),
            used_bytes: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            first_segment,
        }
    }

    /// Writes a node (null tower, key made of `key_parts`, value) into the
    /// arena; it is not linked yet.
    fn allocate_node(arena: &mut Arena, height: usize, key_parts: &[&[u8]], value: &[u8]) -> NodePtr {
        let key_len: usize = key_parts.iter().map(|p| p.len()).sum();
        let node = arena.allocate(node_size(height, key_len, value.len())).cast::<Node>();
        // SAFETY: the allocation is 8-aligned and large enough for the
        // header, `height` tower slots, the key and the value; nothing else
        // refers to it yet. Lengths fit in u32: `Options::validate` bounds
        // keys and values far below 4 GiB.
        unsafe {
            node.as_ptr().write(Node {
                key_len: key_len as u32,
                value_len: value.len() as u32,
                height: height as u32,
                _pad: 0,
            });
            let tower = node.as_ptr().add(1).cast::<AtomicPtr<Node>>();
            for level in 0..height {
                tower.add(level).write(AtomicPtr::new(ptr::null_mut()));
            }
            let mut out = tower.add(height).cast::<u8>();
            for part in key_parts.iter().copied().chain([value]) {
                ptr::copy_nonoverlapping(part.as_ptr(), out, part.len());
                out = out.add(part.len());
            }
        }
        NodePtr(node)
    }

    /// The node after `node` at `level`, if any. `level` must be below
    /// the node's height: every search walks down from the head, and
    /// reaches a node only at a level its tower has.
    fn next(&self, node: NodePtr, level: usize) -> Option<NodePtr> {
        // SAFETY: `level` is in range (above). A non-null pointer is a
        // fully written node of this arena: it was published by a release
        // store after being written, and this load acquires it.
        NonNull::new(unsafe { node.next(level) }.load(AtomicOrdering::Acquire)).map(NodePtr)
    }

    /// The first node with key `>= target`, filling `prev` (if given) with
    /// the last node before it at every level up to `max_height`.
    fn find_greater_or_equal(&self, target: &[u8], mut prev: Option<&mut [NodePtr; MAX_HEIGHT]>) -> Option<NodePtr> {
        let mut node = self.head;
        let mut level = self.max_height.load(AtomicOrdering::Relaxed) - 1;
        loop {
            let next = self.next(node, level);
            match next {
                Some(n) if compare_internal_keys(n.key(), target).is_lt() => node = n,
                _ => {
                    if let Some(prev) = prev.as_deref_mut() {
                        prev[level] = node;
                    }
                    if level == 0 {
                        return next;
                    }
                    level -= 1;
                }
            }
        }
    }

    /// The last node with key `< target` (`inclusive`: `<= target`), if any.
    fn find_before(&self, target: &[u8], inclusive: bool) -> Option<NodePtr> {
        let mut node = self.head;
        let mut level = self.max_height.load(AtomicOrdering::Relaxed) - 1;
        loop {
            match self.next(node, level) {
                Some(n) if compare_internal_keys(n.key(), target).is_lt() || (inclusive && n.key() == target) => {
                    node = n
                }
                _ if level == 0 => return (node != self.head).then_some(node),
                _ => level -= 1,
            }
        }
    }

    /// The last node, if any.
    fn find_last(&self) -> Option<NodePtr> {
        let mut node = self.head;
        let mut level = self.max_height.load(AtomicOrdering::Relaxed) - 1;
        loop {
            match self.next(node, level) {
                Some(n) => node = n,
                None if level == 0 => return (node != self.head).then_some(node),
                None => level -= 1,
            }
        }
    }

    /// Inserts every operation of `batch` at sequence number `seq`. When a
    /// key appears more than once, only its last operation is kept, so one
    /// (key, seq) never has two entries.
    pub(crate) fn apply(&self, batch: &WriteBatch, seq: u64) {
        let mut writer = self.writer.lock();
        let mut added = 0;
        for (kind, key, value) in batch.ops().rev() {
            added += self.insert(&mut writer, &[key, &internal_key_trailer(seq, kind)], value);
        }
        self.used_bytes.fetch_add(added, AtomicOrdering::Relaxed);
        self.max_seq.fetch_max(seq, AtomicOrdering::Release);
    }

    /// Links a new node for (internal key `key_parts`, `value`) unless an
    /// entry with the same user key and sequence number exists (a later
    /// operation of the same batch, inserted first). Returns the bytes
    /// the node occupies (0 if skipped; its arena space then stays unused).
    fn insert(&self, writer: &mut Writer, key_parts: &[&[u8]], value: &[u8]) -> usize {
        let height = writer.random_height();
        let node = Self::allocate_node(&mut writer.arena, height, key_parts, value);
        let key = node.key();
        let mut prev = [self.head; MAX_HEIGHT];
        let after = self.find_greater_or_equal(key, Some(&mut prev));
        // Entries of one (user key, seq) differ only in the kind, the
        // lowest trailer byte (the first, little-endian), and sit next to
        // each other: the duplicate is right before or right after.
        let same = |n: NodePtr| n != self.head && same_user_key_and_seq(n.key(), key);
        if after.is_some_and(same) || same(prev[0]) {
            return 0;
        }
        let max_height = self.max_height.load(AtomicOrdering::Relaxed);
        if height > max_height {
            // `prev` holds the head at the levels above the old maximum.
            self.max_height.store(height, AtomicOrdering::Relaxed);
        }
        for (level, p) in prev.iter().enumerate().take(height) {
            // SAFETY: `p` is the head or a node whose tower reaches `level`
            // (the search stopped on it at `level`), and `node` has
            // `height` slots. The node is complete before the release
            // store publishes it.
            unsafe {
                let slot = p.next(level);
                node.next(level).store(slot.load(AtomicOrdering::Relaxed), AtomicOrdering::Relaxed);
                slot.store(node.0.as_ptr(), AtomicOrdering::Release);
            }
        }
        self.len.fetch_add(1, AtomicOrdering::Relaxed);
        node_size(height, key.len(), value.len())
    }

    /// The newest entry of `user_key` with sequence number `<= seq`, as
    /// (sequence number, kind, value).
    pub(crate) fn get(&self, user_key: &[u8], seq: u64) -> Option<(u64, ValueKind, Vec<u8>)> {
        let mut target = Vec::with_capacity(user_key.len() + TRAILER_LEN);
        encode_internal_key(user_key, seq, ValueKind::Put, &mut target);
        let node = self.find_greater_or_equal(&target, None)?;
        let (found, found_seq, kind) = decode_internal_key(node.key())?;
        (found == user_key).then(|| (found_seq, kind, node.value().to_vec()))
    }

    /// Bytes the entries occupy in the arena: keys, values, node headers
    /// and towers. The flush trigger compares this with
    /// `Options::memtable_size_bytes`.
    pub(crate) fn approximate_bytes(&self) -> usize {
        self.used_bytes.load(AtomicOrdering::Relaxed)
    }

    /// Bytes of memory the arena holds (at least `approximate_bytes`).
    #[cfg(test)]
    fn arena_bytes(&self) -> usize {
        self.writer.lock().arena.block_bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(AtomicOrdering::Relaxed)
    }

    pub(crate) fn max_seq(&self) -> u64 {
        self.max_seq.load(AtomicOrdering::Acquire)
    }

    pub(crate) fn iter(self: &Arc<Self>) -> MemtableIter {
        MemtableIter { mem: self.clone(), node: None }
    }
}

/// An iterator over a memtable that owns an `Arc` of it, so the nodes it
/// points to live as long as it does. `next` follows one pointer; `prev`
/// searches from the head (O(log n)), as in LevelDB.
pub(crate) struct MemtableIter {
    mem: Arc<Memtable>,
    /// The current node; `None` when not valid.
    node: Option<NodePtr>,
}

// SAFETY: `node` points into the arena of `mem`, which the iterator keeps
// alive; nodes are immutable once linked.
unsafe impl Send for MemtableIter {}

impl fmt::Debug for MemtableIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemtableIter").field("mem", &self.mem).field("valid", &self.valid()).finish()
    }
}

impl InternalIterator for MemtableIter {
    fn seek_to_first(&mut self) {
        self.node = self.mem.next(self.mem.head, 0);
    }

    fn seek(&mut self, target: &[u8]) {
        self.node = self.mem.find_greater_or_equal(target, None);
    }

    fn seek_to_last(&mut self) {
        self.node = self.mem.find_last();
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        self.node = self.mem.find_before(target, true);
    }

    fn next(&mut self) {
        self.node = self.node.and_then(|node| self.mem.next(node, 0));
    }

    fn prev(&mut self) {
        self.node = self.node.and_then(|node| self.mem.find_before(node.key(), false));
    }

    fn valid(&self) -> bool {
        self.node.is_some()
    }

    fn key(&self) -> &[u8] {
        self.node.as_ref().map_or(&[], NodePtr::key)
    }

    fn value(&self) -> &[u8] {
        self.node.as_ref().map_or(&[], NodePtr::value)
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn ikey(user_key: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(user_key, seq, kind, &mut out);
        out
    }

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
        b.delete(b"y");
        b.put(b"y", b"3");
        mem.apply(&b, 3);
        assert_eq!(mem.get(b"k", 3), Some((3, ValueKind::Delete, Vec::new())));
        assert_eq!(mem.get(b"x", 3), Some((3, ValueKind::Put, b"2".to_vec())));
        assert_eq!(mem.get(b"y", 3), Some((3, ValueKind::Put, b"3".to_vec())));
        assert_eq!(mem.len(), 3);
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

    #[test]
    fn empty_memtable_has_no_entries_in_any_direction() {
        let mem = Arc::new(Memtable::new(1));
        let mut it = mem.iter();
        it.seek_to_first();
        assert!(!it.valid());
        it.seek_to_last();
        assert!(!it.valid());
        it.seek(b"anything");
        assert!(!it.valid());
        it.seek_for_prev(b"anything");
        assert!(!it.valid());
        assert_eq!(mem.get(b"k", 10), None);
        assert!(mem.is_empty());
    }

    #[test]
    fn large_values_get_their_own_blocks_and_small_tables_stay_small() {
        let mem = Memtable::new(1);
        let mut b = WriteBatch::new();
        b.put(b"small", b"v");
        mem.apply(&b, 1);
        assert!(mem.arena_bytes() <= FIRST_BLOCK_BYTES, "{}", mem.arena_bytes());
        let big = vec![7u8; 3 * MAX_BLOCK_BYTES];
        let mut b = WriteBatch::new();
        b.put(b"big", &big);
        mem.apply(&b, 2);
        let mut b = WriteBatch::new();
        b.put(b"tiny", b"t");
        mem.apply(&b, 3);
        assert_eq!(mem.get(b"big", 5).map(|(_, _, v)| v.len()), Some(big.len()));
        assert_eq!(mem.get(b"small", 5).map(|(_, _, v)| v), Some(b"v".to_vec()));
        assert_eq!(mem.get(b"tiny", 5).map(|(_, _, v)| v), Some(b"t".to_vec()));
        assert!(mem.approximate_bytes() > big.len());
        assert!(mem.arena_bytes() < big.len() + 2 * FIRST_BLOCK_BYTES, "{}", mem.arena_bytes());
    }

    #[test]
    fn readers_on_other_threads_see_whole_entries_while_a_writer_inserts() {
        let mem = Arc::new(Memtable::new(1));
        let writes = 20_000u64;
        std::thread::scope(|s| {
            for _ in 0..2 {
                let mem = mem.clone();
                s.spawn(move || {
                    let mut sweeps = 0;
                    while mem.len() < writes as usize || sweeps < 2 {
                        let mut it = mem.iter();
                        it.seek_to_first();
                        let mut last: Option<Vec<u8>> = None;
                        while it.valid() {
                            let (user_key, seq, kind) = decode_internal_key(it.key()).unwrap();
                            assert_eq!(kind, ValueKind::Put);
                            // Every value is its key repeated, so a torn
                            // node would show.
                            assert_eq!(it.value(), [user_key, user_key].concat());
                            assert_eq!(user_key, format!("{seq:08}").as_bytes());
                            if let Some(last) = &last {
                                assert_eq!(compare_internal_keys(last, it.key()), Ordering::Less);
                            }
                            last = Some(it.key().to_vec());
                            it.next();
                        }
                        sweeps += 1;
                    }
                });
            }
            for seq in 1..=writes {
                // Keys in a scattered order so inserts land everywhere.
                let seq = (seq * 7_919) % writes + 1;
                let key = format!("{seq:08}");
                let mut b = WriteBatch::new();
                b.put(key.as_bytes(), key.repeat(2).as_bytes());
                mem.apply(&b, seq);
            }
        });
        assert_eq!(mem.len(), writes as usize);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, u8, Vec<u8>),
        Delete(u8, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..24, 1u8..6, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(k, s, v)| Op::Put(k, s, v)),
            (0u8..24, 1u8..6).prop_map(|(k, s)| Op::Delete(k, s)),
        ]
    }

    proptest! {
        /// Seeks and walks in both directions match a sorted model of the
        /// same internal keys.
        #[test]
        fn iterator_matches_a_sorted_model(
            batches in prop::collection::vec(prop::collection::vec(op(), 1..6), 1..30),
            probes in prop::collection::vec((0u8..26, 0u64..40), 1..20),
        ) {
            let mem = Arc::new(Memtable::new(1));
            let mut model: BTreeMap<Vec<u8>, (u64, ValueKind, Vec<u8>)> = BTreeMap::new();
            for (i, ops) in batches.iter().enumerate() {
                let seq = i as u64 + 1;
                let mut batch = WriteBatch::new();
                let mut last = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Put(k, s, v) => {
                            let key = vec![b'a' + k; *s as usize];
                            batch.put(&key, v);
                            last.insert(key, (ValueKind::Put, v.clone()));
                        }
                        Op::Delete(k, s) => {
                            let key = vec![b'a' + k; *s as usize];
                            batch.delete(&key);
                            last.insert(key, (ValueKind::Delete, Vec::new()));
                        }
                    }
                }
                mem.apply(&batch, seq);
                for (key, (kind, value)) in last {
                    model.insert(ikey(&key, seq, kind), (seq, kind, value));
                }
            }
            let mut sorted: Vec<_> = model.iter().map(|(k, (_, _, v))| (k.clone(), v.clone())).collect();
            sorted.sort_by(|a, b| compare_internal_keys(&a.0, &b.0));
            prop_assert_eq!(mem.len(), sorted.len());

            let mut it = mem.iter();
            let mut forward = Vec::new();
            it.seek_to_first();
            while it.valid() {
                forward.push((it.key().to_vec(), it.value().to_vec()));
                it.next();
            }
            prop_assert_eq!(&forward, &sorted);
            let mut backward = Vec::new();
            it.seek_to_last();
            while it.valid() {
                backward.push((it.key().to_vec(), it.value().to_vec()));
                it.prev();
            }
            backward.reverse();
            prop_assert_eq!(&backward, &sorted);

            for (k, seq) in probes {
                let user_key = vec![b'a' + k; 2];
                let target = ikey(&user_key, seq, ValueKind::Put);
                let at_or_after = sorted.iter().find(|(key, _)| compare_internal_keys(key, &target).is_ge());
                it.seek(&target);
                prop_assert_eq!(it.valid().then(|| it.key().to_vec()), at_or_after.map(|(key, _)| key.clone()));
                let at_or_before = sorted.iter().rev().find(|(key, _)| compare_internal_keys(key, &target).is_le());
                it.seek_for_prev(&target);
                prop_assert_eq!(it.valid().then(|| it.key().to_vec()), at_or_before.map(|(key, _)| key.clone()));
                let newest = sorted
                    .iter()
                    .filter_map(|(key, value)| {
                        let (uk, s, kind) = decode_internal_key(key)?;
                        (uk == user_key.as_slice() && s <= seq).then(|| (s, kind, value.clone()))
                    })
                    .next();
                prop_assert_eq!(mem.get(&user_key, seq), newest);
            }
        }
    }
}
