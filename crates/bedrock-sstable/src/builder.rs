//! [`TableBuilder`]: writes a table from entries added in sorted order.
//!
//! Data blocks are written as they fill up; the filter and index blocks are
//! kept in memory (one hash per distinct user key, one index entry per data
//! block) and written by [`TableBuilder::finish`], followed by the footer
//! and an fsync of the file.

use std::cmp::Ordering;
use std::path::PathBuf;

use bedrock_wal::File;

use crate::block::{BlockBuilder, BlockTooLarge};
use crate::filter::FilterBuilder;
use crate::format::{append_block, append_block_compressed, put_varint64, BlockHandle, Footer};
use crate::key::{compare_internal_keys, decode_internal_key, shortest_separator, user_key};
use crate::{Error, Result, TableOptions};

/// Longest internal key (user key plus the 8-byte trailer) a table accepts:
/// 1 GiB. Longer keys are [`Error::EntryTooLarge`].
pub const MAX_KEY_BYTES: usize = 1 << 30;

/// Longest value a table accepts: 1 GiB. Longer values are
/// [`Error::EntryTooLarge`].
pub const MAX_VALUE_BYTES: usize = 1 << 30;

/// Finished blocks are gathered into writes of at least this many bytes.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// True if an entry with these lengths (bytes) breaks [`MAX_KEY_BYTES`] or
/// [`MAX_VALUE_BYTES`].
fn exceeds_limits(key_len: usize, value_len: usize) -> bool {
    key_len > MAX_KEY_BYTES || value_len > MAX_VALUE_BYTES
}

/// What [`TableBuilder::finish`] reports about the table it wrote; the LSM
/// records this in its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    /// Length of the file in bytes.
    pub file_size: u64,
    /// Number of entries (puts and deletes).
    pub entries: u64,
    /// The first internal key; empty if the table has no entries.
    pub smallest: Vec<u8>,
    /// The last internal key; empty if the table has no entries.
    pub largest: Vec<u8>,
    /// The smallest sequence number of any entry; 0 if there are none.
    pub min_seq: u64,
    /// The largest sequence number of any entry; 0 if there are none.
    pub max_seq: u64,
}

/// A data block that was written and waits for the next key, which decides
/// how short its index key can be.
#[derive(Debug, Clone, Copy)]
struct PendingIndex {
    handle: BlockHandle,
    entries: u64,
}

/// Writes one table to a file, entries in strictly increasing internal-key
/// order.
///
/// Writes go to the file as blocks fill (gathered into writes of 64 KiB);
/// nothing is durable until [`TableBuilder::finish`] returns, which fsyncs
/// the file. It does not sync the directory: the caller that created the
/// file does that before recording the table anywhere. A builder dropped
/// without `finish` leaves a partial file for the caller to delete.
///
/// After an I/O error the builder is poisoned: every later call returns
/// [`Error::Poisoned`].
#[derive(Debug)]
pub struct TableBuilder {
    file: Box<dyn File>,
    path: PathBuf,
    opts: TableOptions,
    /// Why the options are invalid; returned by every call.
    invalid_options: Option<String>,
    poisoned: bool,
    /// Bytes handed to `write_at` so far.
    written: u64,
    /// Bytes covered by writeback hints so far (`opts.bytes_per_sync`).
    hinted: u64,
    /// Finished bytes not yet written, starting at offset `written`.
    out: Vec<u8>,
    data: BlockBuilder,
    index: BlockBuilder,
    filter: Option<FilterBuilder>,
    pending: Option<PendingIndex>,
    last_key: Vec<u8>,
    smallest: Vec<u8>,
    entries: u64,
    min_seq: u64,
    max_seq: u64,
}

impl TableBuilder {
    /// A builder writing to `file` from offset 0. `path` is used only in
    /// error messages. Invalid `opts` are reported by the first `add` or
    /// `finish` as [`Error::InvalidOptions`].
    pub fn new(file: Box<dyn File>, path: PathBuf, opts: TableOptions) -> TableBuilder {
        let invalid_options = match opts.validate() {
            Err(Error::InvalidOptions(msg)) => Some(msg),
            Err(other) => Some(other.to_string()),
            Ok(()) => None,
        };
        let filter = (opts.bloom_bits_per_key > 0).then(|| FilterBuilder::new(opts.bloom_bits_per_key));
        TableBuilder {
            file,
            path,
            data: BlockBuilder::new(opts.restart_interval),
            index: BlockBuilder::new(1),
            opts,
            invalid_options,
            poisoned: false,
            written: 0,
            hinted: 0,
            out: Vec::new(),
            filter,
            pending: None,
            last_key: Vec::new(),
            smallest: Vec::new(),
            entries: 0,
            min_seq: u64::MAX,
            max_seq: 0,
        }
    }

    /// Appends an entry: `ikey` is an internal key (see
    /// [`crate::encode_internal_key`]) and `value` the value (empty for a
    /// delete, by convention).
    ///
    /// # Errors
    /// - [`Error::MalformedKey`] if `ikey` does not decode;
    /// - [`Error::EntryTooLarge`] if `ikey` exceeds [`MAX_KEY_BYTES`] or
    ///   `value` exceeds [`MAX_VALUE_BYTES`];
    /// - [`Error::OutOfOrder`] unless `ikey` sorts strictly after the
    ///   previous key;
    /// - [`Error::Io`] if writing a finished block fails (which poisons the
    ///   builder), [`Error::Poisoned`], [`Error::InvalidOptions`].
    ///
    /// The first three leave the builder unchanged and usable.
    pub fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        self.check_usable()?;
        let (ukey, seq, _) = decode_internal_key(ikey)
            .ok_or_else(|| Error::MalformedKey { path: self.path.clone(), len: ikey.len() })?;
        if exceeds_limits(ikey.len(), value.len()) {
            return Err(self.too_large(ikey, value));
        }
        if self.entries > 0 && compare_internal_keys(ikey, &self.last_key) != Ordering::Greater {
            return Err(Error::OutOfOrder { path: self.path.clone() });
        }
        if let Some(pending) = self.pending.take() {
            let separator = shortest_separator(&self.last_key, ikey);
            self.add_index_entry(&separator, pending)?;
        }
        let new_user_key = self.entries == 0 || user_key(&self.last_key) != Some(ukey);
        if let (Some(filter), true) = (&mut self.filter, new_user_key) {
            filter.add_key(ukey);
        }
        if self.data.add(ikey, value).is_err() {
            self.poisoned = true;
            return Err(self.too_large(ikey, value));
        }
        self.record(ikey, seq);
        if self.data.estimated_size() >= self.opts.block_size_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Bytes written to the file plus bytes buffered (including the data
    /// block being built): roughly the file size if `finish` were called
    /// now, less the filter, index and footer.
    pub fn estimated_size(&self) -> u64 {
        let block = if self.data.is_empty() { 0 } else { self.data.estimated_size() };
        let buffered = self.out.len().saturating_add(block);
        self.written.saturating_add(buffered as u64)
    }

    /// Entries added so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Writes the last data block, the filter block, the index block and
    /// the footer, then fsyncs the file (`sync_data`). A table with no
    /// entries is valid.
    ///
    /// # Errors
    /// [`Error::Io`] if a write or the fsync fails (the file's contents are
    /// then unknown: delete it), [`Error::Poisoned`],
    /// [`Error::InvalidOptions`].
    pub fn finish(mut self) -> Result<TableSummary> {
        self.check_usable()?;
        if !self.data.is_empty() {
            self.flush_data_block()?;
        }
        if let Some(pending) = self.pending.take() {
            let last = self.last_key.clone();
            self.add_index_entry(&last, pending)?;
        }
        let filter = match self.filter.take() {
            Some(filter) => self.write_block(&filter.finish())?,
            None => BlockHandle::default(),
        };
        let index = self.index.finish().map_err(|e| self.block_too_large(e))?;
        let index = self.write_block(&index)?;
        self.out.extend_from_slice(&Footer { filter, index }.encode());
        self.flush_out()?;
        self.file.sync_data().map_err(|e| Error::io("sync_data", &self.path, e))?;
        Ok(self.summary())
    }

    fn check_usable(&self) -> Result<()> {
        if let Some(msg) = &self.invalid_options {
            return Err(Error::InvalidOptions(msg.clone()));
        }
        if self.poisoned {
            return Err(Error::Poisoned { path: self.path.clone() });
        }
        Ok(())
    }

    fn too_large(&self, ikey: &[u8], value: &[u8]) -> Error {
        Error::EntryTooLarge { path: self.path.clone(), key_len: ikey.len(), value_len: value.len() }
    }

    /// A block outgrew its u32 offsets; unreachable within the key, value
    /// and block-size limits, but reported rather than written wrongly.
    fn block_too_large(&mut self, _: BlockTooLarge) -> Error {
        self.poisoned = true;
        Error::InvalidOptions("a block grew past 4 GiB".into())
    }

    /// Updates the summary fields for an added key.
    fn record(&mut self, ikey: &[u8], seq: u64) {
        if self.entries == 0 {
            self.smallest = ikey.to_vec();
        }
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
        self.entries = self.entries.saturating_add(1);
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
    }

    fn flush_data_block(&mut self) -> Result<()> {
        let entries = self.data.entries();
        let contents = self.data.finish().map_err(|e| self.block_too_large(e))?;
        let offset = self.written.saturating_add(self.out.len() as u64);
        let stored = append_block_compressed(&mut self.out, &contents, self.opts.compression);
        let handle = BlockHandle { offset, size: stored as u64 };
        if self.out.len() >= WRITE_BUFFER_BYTES {
            self.flush_out()?;
        }
        self.pending = Some(PendingIndex { handle, entries });
        Ok(())
    }

    /// Index entry value: offset varint64 | size varint64 | entries varint64.
    fn add_index_entry(&mut self, key: &[u8], pending: PendingIndex) -> Result<()> {
        let mut value = Vec::with_capacity(30);
        put_varint64(&mut value, pending.handle.offset);
        put_varint64(&mut value, pending.handle.size);
        put_varint64(&mut value, pending.entries);
        self.index.add(key, &value).map_err(|e| self.block_too_large(e))
    }

    /// Queues a block and its trailer for writing; returns its handle.
    fn write_block(&mut self, contents: &[u8]) -> Result<BlockHandle> {
        let handle =
            BlockHandle { offset: self.written.saturating_add(self.out.len() as u64), size: contents.len() as u64 };
        append_block(&mut self.out, contents);
        if self.out.len() >= WRITE_BUFFER_BYTES {
            self.flush_out()?;
        }
        Ok(handle)
    }

    fn flush_out(&mut self) -> Result<()> {
        if let Err(e) = self.file.write_at(&self.out, self.written) {
            self.poisoned = true;
            return Err(Error::io("write", &self.path, e));
        }
        self.written = self.written.saturating_add(self.out.len() as u64);
        self.out.clear();
        let unhinted = self.written - self.hinted;
        if self.opts.bytes_per_sync > 0 && unhinted >= self.opts.bytes_per_sync {
            if let Err(e) = self.file.start_writeback(self.hinted, unhinted) {
                self.poisoned = true;
                return Err(Error::io("sync_file_range", &self.path, e));
            }
            self.hinted = self.written;
        }
        Ok(())
    }

    fn summary(&self) -> TableSummary {
        TableSummary {
            file_size: self.written,
            entries: self.entries,
            smallest: self.smallest.clone(),
            largest: if self.entries == 0 { Vec::new() } else { self.last_key.clone() },
            min_seq: if self.entries == 0 { 0 } else { self.min_seq },
            max_seq: self.max_seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{encode_internal_key, ValueKind};
    use bedrock_wal::fs::{FaultKind, Injection, OpKind};
    use bedrock_wal::{FaultFs, FileSystem};
    use std::path::Path;

    fn ik(user_key: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
        let mut out = Vec::new();
        encode_internal_key(user_key, seq, kind, &mut out);
        out
    }

    fn builder(fs: &FaultFs, opts: TableOptions) -> TableBuilder {
        let path = PathBuf::from("t.sst");
        TableBuilder::new(fs.create(&path).unwrap(), path, opts)
    }

    #[test]
    fn summary_describes_the_table() {
        let fs = FaultFs::new();
        let mut b = builder(&fs, TableOptions::default());
        b.add(&ik(b"a", 5, ValueKind::Put), b"1").unwrap();
        b.add(&ik(b"a", 3, ValueKind::Delete), b"").unwrap();
        b.add(&ik(b"b", 9, ValueKind::Put), b"2").unwrap();
        assert_eq!(b.entries(), 3);
        let s = b.finish().unwrap();
        assert_eq!(s.entries, 3);
        assert_eq!((s.min_seq, s.max_seq), (3, 9));
        assert_eq!(s.smallest, ik(b"a", 5, ValueKind::Put));
        assert_eq!(s.largest, ik(b"b", 9, ValueKind::Put));
        assert_eq!(s.file_size, fs.contents(Path::new("t.sst")).unwrap().len() as u64);
    }

    #[test]
    fn empty_table_summary() {
        let fs = FaultFs::new();
        let s = builder(&fs, TableOptions::default()).finish().unwrap();
        assert_eq!((s.entries, s.min_seq, s.max_seq), (0, 0, 0));
        assert!(s.smallest.is_empty() && s.largest.is_empty());
    }

    #[test]
    fn rejects_out_of_order_duplicate_and_malformed_keys_without_damage() {
        let fs = FaultFs::new();
        let mut b = builder(&fs, TableOptions::default());
        b.add(&ik(b"b", 5, ValueKind::Put), b"").unwrap();
        let dup = ik(b"b", 5, ValueKind::Put);
        assert!(matches!(b.add(&dup, b""), Err(Error::OutOfOrder { .. })));
        assert!(matches!(b.add(&ik(b"b", 6, ValueKind::Put), b""), Err(Error::OutOfOrder { .. })), "newer sorts first");
        assert!(matches!(b.add(&ik(b"a", 1, ValueKind::Put), b""), Err(Error::OutOfOrder { .. })));
        assert!(matches!(b.add(b"short", b""), Err(Error::MalformedKey { len: 5, .. })));
        b.add(&ik(b"b", 4, ValueKind::Put), b"").unwrap();
        assert_eq!(b.finish().unwrap().entries, 2);
    }

    #[test]
    fn size_limits_are_inclusive() {
        // Checked on lengths: a real 1 GiB value would make the test heavy.
        assert!(!exceeds_limits(MAX_KEY_BYTES, MAX_VALUE_BYTES));
        assert!(exceeds_limits(MAX_KEY_BYTES + 1, 0));
        assert!(exceeds_limits(8, MAX_VALUE_BYTES + 1));
        assert_eq!((MAX_KEY_BYTES, MAX_VALUE_BYTES), (1 << 30, 1 << 30));
    }

    #[test]
    fn invalid_options_are_reported_by_add_and_finish() {
        let fs = FaultFs::new();
        let opts = TableOptions { restart_interval: 0, ..TableOptions::default() };
        let mut b = builder(&fs, opts.clone());
        assert!(matches!(b.add(&ik(b"k", 1, ValueKind::Put), b""), Err(Error::InvalidOptions(_))));
        assert!(matches!(builder(&fs, opts).finish(), Err(Error::InvalidOptions(_))));
    }

    #[test]
    fn estimated_size_grows_and_ends_below_file_size() {
        let fs = FaultFs::new();
        let mut b = builder(&fs, TableOptions::default());
        let mut last = 0;
        for i in 0..2000u32 {
            b.add(&ik(format!("key{i:06}").as_bytes(), 1, ValueKind::Put), &[7; 50]).unwrap();
            assert!(b.estimated_size() >= last);
            last = b.estimated_size();
        }
        assert!(last > 2000 * 50);
        let s = b.finish().unwrap();
        assert!(s.file_size > last);
    }

    #[test]
    fn write_failure_poisons_the_builder() {
        let fs = FaultFs::new();
        let mut b = builder(&fs, TableOptions::default());
        fs.inject(Injection { op: OpKind::Write, path_contains: None, after: 0, kind: FaultKind::Eio, sticky: false });
        let mut failed = None;
        for i in 0..5000u32 {
            if let Err(e) = b.add(&ik(format!("{i:08}").as_bytes(), 1, ValueKind::Put), &[1; 100]) {
                failed = Some(e);
                break;
            }
        }
        assert!(matches!(failed, Some(Error::Io { op: "write", .. })), "{failed:?}");
        assert!(matches!(b.add(&ik(b"zzzz", 1, ValueKind::Put), b""), Err(Error::Poisoned { .. })));
        assert!(matches!(b.finish(), Err(Error::Poisoned { .. })));
    }

    #[test]
    fn writeback_is_hinted_every_bytes_per_sync() {
        let fill = |bytes_per_sync: u64| {
            let fs = FaultFs::new();
            let mut b = builder(&fs, TableOptions { bytes_per_sync, ..TableOptions::default() });
            for i in 0..20_000u32 {
                b.add(&ik(format!("{i:08}").as_bytes(), 1, ValueKind::Put), &[1; 100]).unwrap();
            }
            let size = b.finish().unwrap().file_size;
            (fs.writeback_hinted_bytes(), size)
        };
        let (hinted, size) = fill(256 << 10);
        assert!(size > 2 << 20, "the table is {size} bytes");
        // Hints run behind the writes by less than one interval plus one
        // gathered write (64 KiB), and never past the end of the file.
        assert!(hinted <= size && hinted + (256 << 10) + (64 << 10) >= size, "{hinted} of {size} bytes hinted");
        assert_eq!(fill(0).0, 0, "0 turns the hints off");
    }

    #[test]
    fn sync_failure_is_reported() {
        let fs = FaultFs::new();
        let mut b = builder(&fs, TableOptions::default());
        b.add(&ik(b"k", 1, ValueKind::Put), b"v").unwrap();
        fs.inject(Injection { op: OpKind::Sync, path_contains: None, after: 0, kind: FaultKind::Eio, sticky: false });
        assert!(matches!(b.finish(), Err(Error::Io { op: "sync_data", .. })));
    }

    #[test]
    fn finish_makes_the_contents_durable() {
        let fs = FaultFs::new();
        let path = PathBuf::from("t.sst");
        let file = fs.create(&path).unwrap();
        fs.sync_dir(Path::new("")).unwrap(); // the name is durable; the contents not yet
        let mut b = TableBuilder::new(file, path.clone(), TableOptions::default());
        for i in 0..1000u32 {
            b.add(&ik(format!("{i:08}").as_bytes(), 1, ValueKind::Put), &[1; 100]).unwrap();
        }
        b.finish().unwrap();
        let live = fs.contents(&path).unwrap();
        for seed in 0..5 {
            assert_eq!(fs.crash(seed).contents(&path).unwrap(), live, "seed {seed}");
        }
    }
}
