//! The sparse index: one entry per data block, decoded into memory when a
//! table is opened.
//!
//! Index entry (in a block with restart interval 1):
//!
//! ```text
//! key:   an internal key k with  last key of block i <= k < first key of block i+1
//! value: offset: varint64 | size: varint64 | entries: varint64
//! ```
//!
//! `size` excludes the 5-byte trailer and `entries` counts the block's
//! entries. Opening checks every entry: keys are well-formed and strictly
//! increasing, and the data blocks tile `[0, data_end)` exactly, in order.

use std::cmp::Ordering;
use std::path::Path;

use crate::block::BlockIter;
use crate::format::{get_varint64, BlockHandle};
use crate::key::{compare_internal_keys, decode_internal_key};
use crate::{Error, Result};

/// One data block as the index describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// A key `>=` every key in the block and `<` every key in later blocks.
    pub key: Box<[u8]>,
    /// Where the block is.
    pub handle: BlockHandle,
    /// How many entries it holds (at least 1).
    pub entries: u64,
}

/// Decodes and checks the index block `contents`, which starts at
/// `block_offset` in the file; the data blocks must tile `[0, data_end)`.
///
/// # Errors
/// [`Error::Corruption`] naming the offset of the bad entry.
pub(crate) fn decode_index(contents: &[u8], block_offset: u64, data_end: u64, path: &Path) -> Result<Vec<IndexEntry>> {
    let at = |off: usize| block_offset.saturating_add(off as u64);
    let block_err = |e: crate::block::BlockError| Error::corruption(path, at(e.at), e.reason);
    let mut it = BlockIter::new(contents).map_err(block_err)?;
    it.seek_to_first(contents).map_err(block_err)?;
    let mut entries: Vec<IndexEntry> = Vec::new();
    let mut next_offset = 0u64;
    while it.valid() {
        let bad = |reason: &str| Error::corruption(path, at(it.entry_offset()), format!("index entry: {reason}"));
        let entry = decode_value(it.key(), it.value(contents)).map_err(bad)?;
        if let Some(prev) = entries.last() {
            if compare_internal_keys(&prev.key, &entry.key) != Ordering::Less {
                return Err(bad("keys out of order"));
            }
        }
        if entry.handle.offset != next_offset {
            return Err(bad("data block does not start where the previous one ended"));
        }
        next_offset = entry.handle.end_with_trailer().ok_or_else(|| bad("block handle overflows"))?;
        entries.push(entry);
        it.next(contents).map_err(block_err)?;
    }
    if next_offset != data_end {
        let reason = format!("data blocks end at byte {next_offset}, but the meta blocks start at {data_end}");
        return Err(Error::corruption(path, block_offset, reason));
    }
    Ok(entries)
}

/// Decodes one index entry's key and value.
fn decode_value(key: &[u8], value: &[u8]) -> Result<IndexEntry, &'static str> {
    decode_internal_key(key).ok_or("malformed key")?;
    let (offset, n1) = get_varint64(value).ok_or("bad block offset")?;
    let rest = value.get(n1..).ok_or("value too short")?;
    let (size, n2) = get_varint64(rest).ok_or("bad block size")?;
    let rest = rest.get(n2..).ok_or("value too short")?;
    let (entries, n3) = get_varint64(rest).ok_or("bad entry count")?;
    if rest.len() != n3 {
        return Err("trailing bytes after the entry count");
    }
    if entries == 0 {
        return Err("empty data block");
    }
    Ok(IndexEntry { key: key.into(), handle: BlockHandle { offset, size }, entries })
}

/// Index of the first entry whose key is `>= target`: the only data block
/// that can hold the first key `>= target` (or, if that block's keys are
/// all smaller, the block after it). `entries.len()` if there is none.
pub(crate) fn find_block(entries: &[IndexEntry], target: &[u8]) -> usize {
    entries.partition_point(|e| compare_internal_keys(&e.key, target) == Ordering::Less)
}
