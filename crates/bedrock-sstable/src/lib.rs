//! Bedrock's sorted string tables (SSTables): immutable files of
//! (internal key, value) entries in key order, the on-disk unit of the LSM
//! tree.
//!
//! A table is written once by a [`TableBuilder`] (entries added in strictly
//! increasing [`compare_internal_keys`] order, then [`TableBuilder::finish`]
//! fsyncs the file) and read many times through a [`Table`], which slices
//! blocks straight out of the file's bytes (an mmap under
//! [`bedrock_wal::RealFs`], a copy under [`bedrock_wal::FaultFs`]).
//! The format is LevelDB's table format, adapted:
//!
//! - **data blocks** of prefix-compressed entries with restart points, cut
//!   at [`TableOptions::block_size_bytes`];
//! - a **filter block**: a bloom filter over the table's *user* keys, so a
//!   point lookup that misses usually reads no data block;
//! - an **index block**: one entry per data block (the sparse index),
//!   decoded into memory when the table is opened;
//! - a fixed 48-byte **footer** with the magic number [`MAGIC`], the
//!   [`FORMAT_VERSION`] and a checksum.
//!
//! Every block ends with a CRC32 (crc32fast) checksum. `docs/formats.md`,
//! section "SSTable", is the byte-level reference.
//!
//! Keys are *internal keys* (module [`key`]): the user key followed by an
//! 8-byte trailer holding the sequence number and [`ValueKind`]. They order
//! by user key ascending, then sequence number descending, so
//! [`Table::get`]`(k, seq)` finds the newest version of `k` visible at
//! `seq` with one seek.
//!
//! It is not: a mutable or appendable structure (a table is written once and
//! never changed), a cache (blocks are read from the mapped file each time;
//! the OS page cache is the cache), a compressor (the compression byte is
//! reserved; only "none" is written), or a multi-table reader (merging
//! tables, deciding what a tombstone hides and which tables are live are
//! the LSM's job).
//!
//! # Invariants and limits
//!
//! - Keys in a table are strictly increasing; a value is at most
//!   [`MAX_VALUE_BYTES`] (1 GiB) and an internal key at most
//!   [`MAX_KEY_BYTES`] (1 GiB); larger entries are [`Error::EntryTooLarge`].
//! - Sequence numbers are at most [`MAX_SEQUENCE`] (2^56 - 1).
//! - A table is durable once [`TableBuilder::finish`] returns; the caller
//!   syncs the directory that holds it.
//! - Reading never panics on any input: damaged bytes give
//!   [`Error::Corruption`] or [`Error::ChecksumMismatch`] naming the file
//!   and offset, never wrong data (up to the strength of CRC32).
//! - A data block's checksum is verified on its first read through a
//!   [`Table`] and remembered (see the `table` module); [`Table::verify`]
//!   rechecks everything.
//!
//! # Example
//!
//! ```
//! use std::path::PathBuf;
//! use std::sync::Arc;
//! use bedrock_sstable::{encode_internal_key, Table, TableBuilder, TableOptions, ValueKind};
//! use bedrock_wal::{FaultFs, FileSystem};
//!
//! let fs = FaultFs::new();
//! let path = PathBuf::from("000001.sst");
//! let mut builder = TableBuilder::new(fs.create(&path)?, path.clone(), TableOptions::default());
//! let mut ikey = Vec::new();
//! for (user_key, seq, kind, value) in [
//!     (&b"apple"[..], 7, ValueKind::Put, &b"red"[..]),
//!     (b"apple", 3, ValueKind::Put, b"green"),
//!     (b"pear", 5, ValueKind::Delete, b""),
//! ] {
//!     ikey.clear();
//!     encode_internal_key(user_key, seq, kind, &mut ikey);
//!     builder.add(&ikey, value)?;
//! }
//! let summary = builder.finish()?;
//! assert_eq!(summary.entries, 3);
//!
//! let file = fs.open(&path)?;
//! let table = Arc::new(Table::open(file.map()?, path)?);
//! assert_eq!(table.get(b"apple", 5)?, Some((3, ValueKind::Put, b"green".to_vec())));
//! assert_eq!(table.get(b"apple", u64::MAX)?, Some((7, ValueKind::Put, b"red".to_vec())));
//! assert_eq!(table.get(b"pear", 9)?, Some((5, ValueKind::Delete, Vec::new())));
//! assert_eq!(table.get(b"plum", 9)?, None);
//!
//! let mut it = table.iter();
//! let mut seen = Vec::new();
//! it.seek_to_first();
//! while it.valid() {
//!     let (user_key, seq, _kind) = bedrock_sstable::decode_internal_key(it.key()).unwrap();
//!     seen.push((user_key.to_vec(), seq, it.value().to_vec()));
//!     it.next();
//! }
//! it.status()?; // distinguishes the end of the table from a damaged block
//! assert_eq!(seen[0], (b"apple".to_vec(), 7, b"red".to_vec()));
//! assert_eq!(seen.len(), 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Decoders are a trust boundary (STYLE.md section 4): outside tests, no
// unwrap, expect, panic or unchecked indexing. `usize::to_le_bytes` is
// disallowed in clippy.toml.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo,
        clippy::unimplemented
    )
)]
#![deny(clippy::disallowed_methods)]

mod block;
mod builder;
mod error;
mod filter;
mod format;
mod index;
mod iter;
pub mod key;
mod options;
mod table;
mod verify;

pub use builder::{TableBuilder, TableSummary, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use error::{Error, Result};
pub use filter::theoretical_false_positive_rate;
pub use format::{BLOCK_TRAILER_LEN, FOOTER_LEN, FORMAT_VERSION, MAGIC};
pub use iter::TableIter;
pub use key::{
    compare_internal_keys, decode_internal_key, encode_internal_key, internal_key_trailer, ValueKind, MAX_SEQUENCE,
    TRAILER_LEN,
};
pub use options::{Compression, TableOptions, MAX_BLOCK_SIZE_BYTES, MAX_BLOOM_BITS_PER_KEY};
pub use table::{Table, TableStats};
