//! The fixed-layout pieces of the table format: varints, block handles, the
//! 5-byte block trailer and the 48-byte footer. `docs/formats.md` (section
//! "SSTable") is the byte-level reference; the offsets below are derived
//! from chains of `size_of` terms and checked by tests.
//!
//! ```text
//! block:   contents | compression: u8 | crc32: u32 LE       (trailer: 5 bytes)
//!          crc32 = CRC-32 (crc32fast) of contents followed by the compression byte
//! footer:  filter_offset u64 | filter_size u64 | index_offset u64 | index_size u64
//!          | format_version u32 | footer_crc u32 | magic u64      (48 bytes)
//!          footer_crc = CRC-32 of the 36 bytes before it
//! ```
#![deny(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]

use std::borrow::Cow;
use std::mem::size_of;
use std::path::Path;

use crate::options::Compression;

use crate::{Error, Result};

/// Magic number closing every table file: the bytes `BDRK-SST` when the
/// u64 is written little-endian, so `tail -c 8` of a table reads `BDRK-SST`.
pub const MAGIC: u64 = u64::from_le_bytes(*b"BDRK-SST");

/// The format version this crate writes, and the only one it reads.
pub const FORMAT_VERSION: u32 = 1;

/// Compression type byte: none.
pub(crate) const COMPRESSION_NONE: u8 = 0;
/// Compression type byte: LZ4 block format, contents =
/// `uncompressed_len: u32 LE | lz4 block`.
pub(crate) const COMPRESSION_LZ4: u8 = 1;
/// A compressed block may not claim to expand beyond this many bytes
/// (LZ4's best ratio is about 255:1; the cap stops a damaged length from
/// allocating gigabytes).
const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

/// Bytes of the trailer after every block: compression type then CRC32.
pub const BLOCK_TRAILER_LEN: usize = size_of::<u8>() + size_of::<u32>();

/// Bytes of an encoded block handle in the footer: offset then size.
const FOOTER_HANDLE_LEN: usize = size_of::<u64>() + size_of::<u64>();
const FILTER_HANDLE_AT: usize = 0;
const INDEX_HANDLE_AT: usize = FILTER_HANDLE_AT + FOOTER_HANDLE_LEN;
const VERSION_AT: usize = INDEX_HANDLE_AT + FOOTER_HANDLE_LEN;
const FOOTER_CRC_AT: usize = VERSION_AT + size_of::<u32>();
const MAGIC_AT: usize = FOOTER_CRC_AT + size_of::<u32>();

/// Bytes of the footer at the end of every table.
pub const FOOTER_LEN: usize = MAGIC_AT + size_of::<u64>();

/// Most bytes a varint32 / varint64 takes.
const MAX_VARINT32_LEN: usize = 5;
const MAX_VARINT64_LEN: usize = 10;

/// Where a block lives: `size` bytes of contents at `offset`, followed by
/// the [`BLOCK_TRAILER_LEN`]-byte trailer (not counted in `size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BlockHandle {
    /// Byte offset of the block's first byte in the file.
    pub offset: u64,
    /// Bytes of block contents, excluding the trailer.
    pub size: u64,
}

impl BlockHandle {
    /// Offset just past the block's trailer, or `None` on overflow.
    pub(crate) fn end_with_trailer(&self) -> Option<u64> {
        self.offset.checked_add(self.size)?.checked_add(BLOCK_TRAILER_LEN as u64)
    }
}

/// Appends `v` as a LEB128 varint (7 bits per byte, low bits first).
#[expect(clippy::cast_possible_truncation, reason = "each cast is of a value below 0x80")]
pub(crate) fn put_varint64(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `v` as a varint.
pub(crate) fn put_varint32(out: &mut Vec<u8>, v: u32) {
    put_varint64(out, u64::from(v));
}

/// Decodes a varint of at most `max_len` bytes whose value fits `bits` bits
/// from the start of `buf`; returns the value and the bytes consumed.
fn get_varint(buf: &[u8], max_len: usize, bits: u32) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(max_len).enumerate() {
        let shift = u32::try_from(i).ok()?.checked_mul(7)?;
        let part = u64::from(byte & 0x7f);
        // Reject bits that would fall off the top of the value.
        if shift.checked_add(u64::BITS.checked_sub(part.leading_zeros())?)? > bits {
            return None;
        }
        value |= part.checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((value, i.checked_add(1)?));
        }
    }
    None
}

/// Decodes a varint32 at the start of `buf`: (value, bytes consumed), or
/// `None` if it is truncated or overflows 32 bits.
pub(crate) fn get_varint32(buf: &[u8]) -> Option<(u32, usize)> {
    let (v, n) = get_varint(buf, MAX_VARINT32_LEN, u32::BITS)?;
    Some((u32::try_from(v).ok()?, n))
}

/// Decodes a varint64 at the start of `buf`: (value, bytes consumed), or
/// `None` if it is truncated or overflows 64 bits.
pub(crate) fn get_varint64(buf: &[u8]) -> Option<(u64, usize)> {
    get_varint(buf, MAX_VARINT64_LEN, u64::BITS)
}

/// Reads a little-endian u32 at `at`, or `None` if out of bounds.
pub(crate) fn read_u32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(size_of::<u32>())?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Reads a little-endian u64 at `at`, or `None` if out of bounds.
pub(crate) fn read_u64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes = buf.get(at..at.checked_add(size_of::<u64>())?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The checksum stored in a block trailer: CRC-32 of contents then type.
pub(crate) fn block_crc(contents: &[u8], compression: u8) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(contents);
    h.update(&[compression]);
    h.finalize()
}

/// Appends `contents` followed by its trailer (no compression) to `out`.
pub(crate) fn append_block(out: &mut Vec<u8>, contents: &[u8]) {
    out.extend_from_slice(contents);
    out.push(COMPRESSION_NONE);
    out.extend_from_slice(&block_crc(contents, COMPRESSION_NONE).to_le_bytes());
}

/// Appends `contents` compressed with `compression` when that saves at
/// least 1/8 of its size, else uncompressed; then the trailer. Returns the
/// number of bytes stored before the trailer.
pub(crate) fn append_block_compressed(out: &mut Vec<u8>, contents: &[u8], compression: Compression) -> usize {
    if compression == Compression::Lz4 {
        let len = u32::try_from(contents.len()).unwrap_or(u32::MAX);
        let mut packed = Vec::with_capacity(contents.len().saturating_add(16));
        packed.extend_from_slice(&len.to_le_bytes());
        packed.extend_from_slice(&lz4_flex::block::compress(contents));
        if packed.len() <= contents.len().saturating_sub(contents.len() / 8) {
            out.extend_from_slice(&packed);
            out.push(COMPRESSION_LZ4);
            out.extend_from_slice(&block_crc(&packed, COMPRESSION_LZ4).to_le_bytes());
            return packed.len();
        }
    }
    append_block(out, contents);
    contents.len()
}

/// Decompresses an LZ4 block's stored contents; `None` if malformed.
fn decompress_lz4(stored: &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(read_u32(stored, 0)?).ok()?;
    let body = stored.get(size_of::<u32>()..)?;
    if len > MAX_DECOMPRESSED_BYTES || len > body.len().saturating_mul(255).saturating_add(16) {
        return None;
    }
    let mut out = vec![0; len];
    let n = lz4_flex::block::decompress_into(body, &mut out).ok()?;
    (n == len).then_some(out)
}

/// The contents of the block at `handle` in `file`, after checking that it
/// and its trailer lie within `file`, and (if `verify`) its checksum.
///
/// # Errors
/// [`Error::Corruption`] if the block is out of range or uses an unknown
/// compression type; [`Error::ChecksumMismatch`] if `verify` and the CRC
/// does not match.
pub(crate) fn read_block<'a>(file: &'a [u8], handle: BlockHandle, path: &Path, verify: bool) -> Result<&'a [u8]> {
    match read_block_any(file, handle, path, verify)? {
        Cow::Borrowed(b) => Ok(b),
        Cow::Owned(_) => Err(Error::corruption(path, handle.offset, "compressed metadata block")),
    }
}

/// Like [`read_block`], but a compressed block is decompressed (into a
/// new buffer); only data blocks may be compressed.
///
/// # Errors
/// As for [`read_block`], plus [`Error::Corruption`] if a compressed block
/// does not decompress to its recorded length.
pub(crate) fn read_block_any<'a>(
    file: &'a [u8],
    handle: BlockHandle,
    path: &Path,
    verify: bool,
) -> Result<Cow<'a, [u8]>> {
    let out_of_range = || Error::corruption(path, handle.offset, format!("block handle {handle:?} out of range"));
    let start = usize::try_from(handle.offset).map_err(|_| out_of_range())?;
    let end = usize::try_from(handle.size).ok().and_then(|s| start.checked_add(s)).ok_or_else(out_of_range)?;
    let contents = file.get(start..end).ok_or_else(out_of_range)?;
    let compression = *file.get(end).ok_or_else(out_of_range)?;
    let stored = end.checked_add(size_of::<u8>()).and_then(|at| read_u32(file, at)).ok_or_else(out_of_range)?;
    // Fuzz builds (`--cfg fuzzing`) skip the CRC, so the fuzzer's inputs
    // reach the block, index and filter decoders; every other build checks it.
    if verify && !cfg!(fuzzing) {
        let actual = block_crc(contents, compression);
        if actual != stored {
            return Err(Error::ChecksumMismatch { path: path.into(), offset: handle.offset, expected: stored, actual });
        }
    }
    match compression {
        COMPRESSION_NONE => Ok(Cow::Borrowed(contents)),
        COMPRESSION_LZ4 => decompress_lz4(contents)
            .map(Cow::Owned)
            .ok_or_else(|| Error::corruption(path, handle.offset, "LZ4 block does not decompress")),
        _ => Err(Error::corruption(path, handle.offset, format!("unknown compression type {compression}"))),
    }
}

/// The table's footer: where the filter and index blocks are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    /// The filter block; `{ offset: 0, size: 0 }` means the table has none.
    pub filter: BlockHandle,
    /// The index block.
    pub index: BlockHandle,
}

impl Footer {
    /// The [`FOOTER_LEN`] bytes of this footer.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        for v in [self.filter.offset, self.filter.size, self.index.offset, self.index.size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&MAGIC.to_le_bytes());
        debug_assert_eq!(out.len(), FOOTER_LEN);
        out
    }

    /// Decodes the footer at the end of `file`. Checks, in order: length,
    /// magic, footer checksum, version.
    ///
    /// # Errors
    /// [`Error::Corruption`] for a short file, a bad magic number or an
    /// unknown version; [`Error::ChecksumMismatch`] if the footer CRC fails.
    pub(crate) fn decode(file: &[u8], path: &Path) -> Result<Footer> {
        let at = file.len().checked_sub(FOOTER_LEN).ok_or_else(|| {
            Error::corruption(path, 0, format!("file of {} bytes is shorter than the footer", file.len()))
        })?;
        let offset = at as u64;
        let bad = |reason: &str| Error::corruption(path, offset, reason);
        let footer = file.get(at..).ok_or_else(|| bad("footer out of range"))?;
        let field = |at: usize| read_u64(footer, at).ok_or_else(|| bad("footer field out of range"));
        if field(MAGIC_AT)? != MAGIC {
            return Err(bad("bad magic number: not a Bedrock table, or truncated"));
        }
        let expected = read_u32(footer, FOOTER_CRC_AT).ok_or_else(|| bad("footer crc out of range"))?;
        let actual = crc32fast::hash(footer.get(..FOOTER_CRC_AT).ok_or_else(|| bad("footer out of range"))?);
        // Fuzz builds accept any checksum (see `read_block_any`).
        if expected != actual && !cfg!(fuzzing) {
            return Err(Error::ChecksumMismatch { path: path.into(), offset, expected, actual });
        }
        let version = read_u32(footer, VERSION_AT).ok_or_else(|| bad("footer version out of range"))?;
        if version != FORMAT_VERSION {
            return Err(bad(&format!("unsupported format version {version} (this build reads {FORMAT_VERSION})")));
        }
        Ok(Footer {
            filter: BlockHandle { offset: field(FILTER_HANDLE_AT)?, size: field(FILTER_HANDLE_AT + 8)? },
            index: BlockHandle { offset: field(INDEX_HANDLE_AT)?, size: field(INDEX_HANDLE_AT + 8)? },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::arithmetic_side_effects, clippy::cast_possible_truncation)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sizes_are_as_documented() {
        assert_eq!(FOOTER_LEN, 48);
        assert_eq!(BLOCK_TRAILER_LEN, 5);
        assert_eq!((FILTER_HANDLE_AT, INDEX_HANDLE_AT, VERSION_AT, FOOTER_CRC_AT, MAGIC_AT), (0, 16, 32, 36, 40));
        assert_eq!(&MAGIC.to_le_bytes(), b"BDRK-SST");
        assert_eq!(MAGIC, 0x5453_532D_4B52_4442, "as printed in docs/formats.md");
    }

    #[test]
    fn footer_round_trips_and_detects_damage() {
        let f = Footer { filter: BlockHandle { offset: 100, size: 20 }, index: BlockHandle { offset: 125, size: 7 } };
        let mut file = vec![0xaa; 10];
        file.extend(f.encode());
        assert_eq!(Footer::decode(&file, Path::new("t")).unwrap(), f);
        for i in 10..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(Footer::decode(&bad, Path::new("t")).is_err(), "flip at {i} undetected");
        }
        assert!(matches!(Footer::decode(&file[1..40], Path::new("t")), Err(Error::Corruption { offset: 0, .. })));
    }

    #[test]
    fn unknown_version_with_valid_crc_is_rejected() {
        let mut footer = Footer { filter: BlockHandle::default(), index: BlockHandle::default() }.encode();
        footer[VERSION_AT..VERSION_AT + 4].copy_from_slice(&2u32.to_le_bytes());
        let crc = crc32fast::hash(&footer[..FOOTER_CRC_AT]);
        footer[FOOTER_CRC_AT..MAGIC_AT].copy_from_slice(&crc.to_le_bytes());
        let err = Footer::decode(&footer, Path::new("t")).unwrap_err();
        assert!(err.to_string().contains("unsupported format version 2"), "{err}");
    }

    #[test]
    fn varint_edge_cases() {
        assert_eq!(get_varint32(&[0xff, 0xff, 0xff, 0xff, 0x0f]), Some((u32::MAX, 5)));
        assert_eq!(get_varint32(&[0x80, 0x80, 0x80, 0x80, 0x0f]), Some((0xf000_0000, 5)));
        assert_eq!(get_varint32(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None, "33 bits");
        assert_eq!(get_varint32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), None, "6 bytes");
        assert_eq!(get_varint32(&[0x80]), None, "truncated");
        assert_eq!(get_varint32(&[]), None);
        let mut max = Vec::new();
        put_varint64(&mut max, u64::MAX);
        assert_eq!(max.len(), 10);
        assert_eq!(get_varint64(&max), Some((u64::MAX, 10)));
        max[9] = 0x02;
        assert_eq!(get_varint64(&max), None, "65 bits");
    }

    #[test]
    fn read_block_checks_range_checksum_and_type() {
        let mut file = Vec::new();
        append_block(&mut file, b"hello");
        let h = BlockHandle { offset: 0, size: 5 };
        let p = Path::new("t");
        assert_eq!(read_block(&file, h, p, true).unwrap(), b"hello");
        assert!(read_block(&file, BlockHandle { offset: 1, size: 5 }, p, true).is_err());
        assert!(read_block(&file, BlockHandle { offset: u64::MAX, size: 5 }, p, true).is_err());
        file[0] = b'j';
        assert!(matches!(read_block(&file, h, p, true), Err(Error::ChecksumMismatch { offset: 0, .. })));
        assert_eq!(read_block(&file, h, p, false).unwrap(), b"jello", "verify=false skips the crc");
        let mut typed = b"hi".to_vec();
        typed.push(7);
        typed.extend(block_crc(b"hi", 7).to_le_bytes());
        let err = read_block_any(&typed, BlockHandle { offset: 0, size: 2 }, p, true).unwrap_err();
        assert!(err.to_string().contains("unknown compression type 7"), "{err}");
        // A valid checksum over a malformed LZ4 body is still an error.
        let mut lz = 1000u32.to_le_bytes().to_vec();
        lz.extend_from_slice(b"garbage");
        let mut file = lz.clone();
        file.push(COMPRESSION_LZ4);
        file.extend(block_crc(&lz, COMPRESSION_LZ4).to_le_bytes());
        let h = BlockHandle { offset: 0, size: lz.len() as u64 };
        assert!(read_block_any(&file, h, p, true).is_err());
        assert!(read_block(&file, h, p, true).is_err(), "metadata blocks are never compressed");
    }

    proptest! {
        #[test]
        fn varints_round_trip(v in any::<u64>(), w in any::<u32>()) {
            let mut buf = Vec::new();
            put_varint64(&mut buf, v);
            prop_assert_eq!(get_varint64(&buf), Some((v, buf.len())));
            let mut buf = Vec::new();
            put_varint32(&mut buf, w);
            prop_assert_eq!(get_varint32(&buf), Some((w, buf.len())));
        }

        #[test]
        fn varint_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = get_varint32(&bytes);
            let _ = get_varint64(&bytes);
        }
    }
}
