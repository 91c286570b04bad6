//! Options of the table builder.

use crate::{Error, Result};

/// Largest `block_size_bytes`: 1 GiB. Together with [`crate::MAX_KEY_BYTES`]
/// and [`crate::MAX_VALUE_BYTES`] it keeps every block under 4 GiB, so the
/// u32 restart offsets cannot overflow.
pub const MAX_BLOCK_SIZE_BYTES: usize = 1 << 30;

/// Largest `bloom_bits_per_key`: 64.
pub const MAX_BLOOM_BITS_PER_KEY: usize = 64;

/// Per-block compression of data blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Blocks are stored as they are. Reads slice the mapped file with no
    /// copy. Default.
    #[default]
    None,
    /// LZ4 block format (lz4_flex). A block is stored compressed only if
    /// that saves at least 1/8 of its size (RocksDB's rule); reads of a
    /// compressed block decompress into a fresh buffer.
    Lz4,
}

/// How a table is laid out. Only the builder reads these; a reader learns
/// everything it needs from the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableOptions {
    /// A data block is cut once its uncompressed contents (entries plus
    /// restart array) reach this many bytes, so a block exceeds it by at
    /// most one entry. Default: 4096 bytes. Minimum: 1 byte (one entry per
    /// block). Maximum: 1 GiB ([`MAX_BLOCK_SIZE_BYTES`]).
    pub block_size_bytes: usize,
    /// A restart point (an entry with its full key, no prefix compression)
    /// every this many entries of a data block. Smaller means faster seeks
    /// within a block and less compression. Default: 16 entries. Minimum: 1.
    pub restart_interval: usize,
    /// Bits of bloom filter per distinct user key; 0 writes no filter.
    /// 10 bits give a false-positive rate of about 0.8%. Default: 10.
    /// Minimum: 0. Maximum: 64 ([`MAX_BLOOM_BITS_PER_KEY`]).
    pub bloom_bits_per_key: usize,
    /// Compression of data blocks (index and filter blocks are never
    /// compressed). Default: [`Compression::None`].
    pub compression: Compression,
    /// While a table is written, every time this many bytes have been
    /// written since the last hint the builder asks the OS to start writing
    /// them back ([`bedrock_wal::File::start_writeback`]; RocksDB's
    /// `bytes_per_sync`), so the fsync in [`crate::TableBuilder::finish`]
    /// finds little left to write and the device sees a steady stream
    /// instead of one burst per table. 0 turns the hints off. Default:
    /// 1 MiB (1,048,576 bytes). Not stored in the table.
    pub bytes_per_sync: u64,
}

impl Default for TableOptions {
    fn default() -> Self {
        TableOptions {
            block_size_bytes: 4096,
            restart_interval: 16,
            bloom_bits_per_key: 10,
            compression: Compression::None,
            bytes_per_sync: 1 << 20,
        }
    }
}

impl TableOptions {
    /// Checks every option against its documented range.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] naming the first option out of range.
    pub fn validate(&self) -> Result<()> {
        if self.block_size_bytes == 0 || self.block_size_bytes > MAX_BLOCK_SIZE_BYTES {
            return Err(Error::InvalidOptions(format!(
                "block_size_bytes must be in 1..={MAX_BLOCK_SIZE_BYTES}, got {}",
                self.block_size_bytes
            )));
        }
        if self.restart_interval == 0 {
            return Err(Error::InvalidOptions("restart_interval must be at least 1, got 0".into()));
        }
        if self.bloom_bits_per_key > MAX_BLOOM_BITS_PER_KEY {
            return Err(Error::InvalidOptions(format!(
                "bloom_bits_per_key must be in 0..={MAX_BLOOM_BITS_PER_KEY}, got {}",
                self.bloom_bits_per_key
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_their_docs() {
        let o = TableOptions::default();
        assert_eq!(o.block_size_bytes, 4096);
        assert_eq!(o.restart_interval, 16);
        assert_eq!(o.bloom_bits_per_key, 10);
        assert_eq!(o.bytes_per_sync, 1024 * 1024);
        assert_eq!(MAX_BLOCK_SIZE_BYTES, 1024 * 1024 * 1024);
        assert_eq!(MAX_BLOOM_BITS_PER_KEY, 64);
        o.validate().unwrap();
    }

    #[test]
    fn validate_rejects_each_out_of_range_option() {
        let bad = [
            TableOptions { block_size_bytes: 0, ..TableOptions::default() },
            TableOptions { block_size_bytes: MAX_BLOCK_SIZE_BYTES + 1, ..TableOptions::default() },
            TableOptions { restart_interval: 0, ..TableOptions::default() },
            TableOptions { bloom_bits_per_key: 65, ..TableOptions::default() },
        ];
        for o in bad {
            assert!(matches!(o.validate(), Err(Error::InvalidOptions(_))), "{o:?}");
        }
        let edges = [
            TableOptions { block_size_bytes: 1, restart_interval: 1, bloom_bits_per_key: 0, ..TableOptions::default() },
            TableOptions {
                block_size_bytes: MAX_BLOCK_SIZE_BYTES,
                restart_interval: 1 << 20,
                bloom_bits_per_key: 64,
                ..TableOptions::default()
            },
        ];
        for o in edges {
            o.validate().unwrap();
        }
    }
}
