//! The record framing shared by WAL segments and the LSM manifest log.
//!
//! ```text
//! +----------------+----------------+-------------------------+
//! | crc32: u32 LE  | len: u32 LE    | payload: len bytes      |
//! +----------------+----------------+-------------------------+
//!  crc32 = CRC-32 (IEEE, crc32fast) of the 4 `len` bytes followed by payload
//! ```
//!
//! A header of eight zero bytes can never be valid (the CRC of a zero
//! length is not zero), so it marks the end of the written part of a
//! preallocated, zero-filled segment.

use std::mem::size_of;

/// Bytes of the record header: checksum then length.
pub const HEADER_LEN: usize = size_of::<u32>() + size_of::<u32>();

/// Appends one framed record holding `payload` to `out`.
///
/// # Panics
/// Never for payloads within [`crate::WalOptions::max_record_bytes`]; the
/// caller checks the limit, and a payload of 4 GiB or more is rejected by
/// `debug_assert`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    debug_assert_eq!(len as usize, payload.len(), "record payload exceeds u32");
    let len_bytes = len.to_le_bytes();
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(payload);
}

/// How a scan of a log file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every record was valid; the written part ends at `end` (the rest, if
    /// any, is zero fill).
    Clean {
        /// Byte offset just past the last record.
        end: u64,
    },
    /// The record at `offset` is damaged.
    Damaged {
        /// Byte offset of the damaged record; every record before it is valid.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// True if nothing valid follows it in the file, so it may be a torn
        /// write rather than corruption of acknowledged data.
        tail: bool,
    },
}

/// Reads the records of one log file in order, calling `f(offset, payload)`
/// for each valid one, until the end of the written data or the first
/// damaged record. Decoding never panics: every length is checked.
///
/// # Errors
/// Only what `f` returns.
pub fn scan<E>(data: &[u8], max_record: usize, mut f: impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<ScanEnd, E> {
    let mut off = 0usize;
    loop {
        match decode_at(data, off, max_record) {
            Decoded::End => return Ok(ScanEnd::Clean { end: off as u64 }),
            Decoded::Record { payload, next } => {
                f(off as u64, payload)?;
                off = next;
            }
            Decoded::Bad(reason) => {
                let tail = !valid_record_after(data, off, max_record);
                return Ok(ScanEnd::Damaged { offset: off as u64, reason, tail });
            }
        }
    }
}

enum Decoded<'a> {
    End,
    Record { payload: &'a [u8], next: usize },
    Bad(String),
}

fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn decode_at(data: &[u8], off: usize, max_record: usize) -> Decoded<'_> {
    let rest = data.get(off..).unwrap_or_default();
    if rest.len() < HEADER_LEN {
        return if all_zero(rest) { Decoded::End } else { Decoded::Bad("truncated record header".into()) };
    }
    let (Some(crc), Some(len)) = (read_u32(rest, 0), read_u32(rest, 4)) else {
        return Decoded::Bad("truncated record header".into());
    };
    if crc == 0 && len == 0 {
        return if all_zero(rest) { Decoded::End } else { Decoded::Bad("zero header followed by data".into()) };
    }
    let len = len as usize;
    if len > max_record {
        return Decoded::Bad(format!("record length {len} exceeds the limit {max_record}"));
    }
    let Some(payload) = rest.get(HEADER_LEN..HEADER_LEN + len) else {
        return Decoded::Bad(format!("record length {len} runs past the end of the file"));
    };
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&(len as u32).to_le_bytes());
    hasher.update(payload);
    let actual = hasher.finalize();
    // Fuzz builds (`--cfg fuzzing`) accept any checksum, so the fuzzer's
    // inputs reach the decoders behind it; every other build checks it.
    if actual != crc && !cfg!(fuzzing) {
        return Decoded::Bad(format!("checksum mismatch: stored {crc:#010x}, computed {actual:#010x}"));
    }
    Decoded::Record { payload, next: off + HEADER_LEN + len }
}

/// True if the damaged record at `bad` shows the shape a crash leaves in a
/// segment that was never sealed: its header is whole and its declared
/// extent fits in the file, and everything after that extent is zero fill
/// (at least one byte). A sealed segment ends exactly at its last record
/// (sealing cuts the zero fill), so this shape cannot come from damage to
/// a sealed segment's last record unless its length field changed too.
pub(crate) fn torn_before_zero_fill(data: &[u8], bad: usize) -> bool {
    let Some(len) = read_u32(data, bad.saturating_add(4)) else { return false };
    let Some(claimed_end) = bad.checked_add(HEADER_LEN).and_then(|o| o.checked_add(len as usize)) else {
        return false;
    };
    data.get(claimed_end..).is_some_and(|fill| !fill.is_empty() && all_zero(fill))
}

/// True if a valid record starts anywhere after `bad` (before the zero fill).
/// Used to tell a torn tail (nothing valid after it) from damage in the
/// middle of a log. Offsets whose length field cannot fit are skipped
/// cheaply, so the scan is near-linear on real data.
fn valid_record_after(data: &[u8], bad: usize, max_record: usize) -> bool {
    let written_end = data.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    (bad + 1..written_end).any(|off| matches!(decode_at(data, off, max_record), Decoded::Record { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(p, &mut out);
        }
        out
    }

    fn collect(data: &[u8]) -> (Vec<Vec<u8>>, ScanEnd) {
        let mut got = Vec::new();
        let end = scan::<()>(data, 1 << 20, |_, p| {
            got.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        (got, end)
    }

    #[test]
    fn header_is_eight_bytes() {
        assert_eq!(HEADER_LEN, 8);
        let mut out = Vec::new();
        encode(b"abc", &mut out);
        assert_eq!(out.len(), HEADER_LEN + 3);
    }

    #[test]
    fn round_trip_with_zero_fill() {
        let mut data = log(&[b"a", b"", b"hello"]);
        let end = data.len() as u64;
        data.resize(4096, 0);
        let (got, scan_end) = collect(&data);
        assert_eq!(got, vec![b"a".to_vec(), b"".to_vec(), b"hello".to_vec()]);
        assert_eq!(scan_end, ScanEnd::Clean { end });
    }

    #[test]
    fn torn_last_record_is_a_tail() {
        let full = log(&[b"first", b"second-record"]);
        let mut data = full[..full.len() - 4].to_vec();
        data.resize(4096, 0);
        let (got, end) = collect(&data);
        assert_eq!(got, vec![b"first".to_vec()]);
        assert!(matches!(end, ScanEnd::Damaged { offset: 13, tail: true, .. }), "{end:?}");
    }

    #[test]
    fn bit_flip_before_a_valid_record_is_not_a_tail() {
        let mut data = log(&[b"first", b"second", b"third"]);
        data[HEADER_LEN + 2] ^= 0x40;
        let (got, end) = collect(&data);
        assert!(got.is_empty());
        assert!(matches!(end, ScanEnd::Damaged { offset: 0, tail: false, .. }), "{end:?}");
    }

    #[test]
    fn flipped_length_before_valid_records_is_not_a_tail() {
        let mut data = log(&[b"first", b"second", b"third"]);
        data[6] = 0x7f; // huge length in the first header
        let (_, end) = collect(&data);
        assert!(matches!(end, ScanEnd::Damaged { offset: 0, tail: false, .. }), "{end:?}");
    }
}

#[cfg(test)]
mod golden {
    /// The worked example of docs/formats.md ("WAL segment and record").
    #[test]
    fn documented_example_bytes() {
        let mut out = Vec::new();
        super::encode(b"abc", &mut out);
        assert_eq!(out, [0x33, 0x5d, 0xe1, 0x66, 0x03, 0x00, 0x00, 0x00, b'a', b'b', b'c']);
    }
}
