//! [`WriteBatch`]: writes applied atomically with one sequence number, and
//! its encoding as a WAL record payload.
//!
//! ```text
//! payload := sequence: u64 LE | count: varint | op*count
//! op      := kind: u8 (0 = delete, 1 = put) | key: varint len + bytes
//!            [ value: varint len + bytes ]   (puts only)
//! ```

use bedrock_sstable::ValueKind;

use crate::coding::{put_slice, put_varint, Reader};

/// A group of puts and deletes applied atomically: readers see all of it
/// or none of it, and it survives a crash whole or not at all. Within a
/// batch a later operation on a key replaces an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<(ValueKind, Vec<u8>, Vec<u8>)>,
    approximate_bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put of `key` = `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.approximate_bytes += key.len() + value.len() + 12;
        self.ops.push((ValueKind::Put, key.to_vec(), value.to_vec()));
    }

    /// Adds a delete of `key` (a tombstone).
    pub fn delete(&mut self, key: &[u8]) {
        self.approximate_bytes += key.len() + 6;
        self.ops.push((ValueKind::Delete, key.to_vec(), Vec::new()));
    }

    /// Number of operations, duplicates included.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True if the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Approximate encoded size in bytes.
    pub fn approximate_bytes(&self) -> usize {
        self.approximate_bytes + 18
    }

    /// The operations in order: (kind, key, value); the value of a delete
    /// is empty.
    pub fn ops(&self) -> impl DoubleEndedIterator<Item = (ValueKind, &[u8], &[u8])> {
        self.ops.iter().map(|(k, key, v)| (*k, key.as_slice(), v.as_slice()))
    }

    /// Encodes the batch with its sequence number as a WAL payload.
    pub(crate) fn encode(&self, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.approximate_bytes());
        out.extend_from_slice(&seq.to_le_bytes());
        put_varint(&mut out, self.ops.len() as u64);
        for (kind, key, value) in &self.ops {
            out.push(*kind as u8);
            put_slice(&mut out, key);
            if *kind == ValueKind::Put {
                put_slice(&mut out, value);
            }
        }
        out
    }

    /// The batch as bytes (the WAL payload format with sequence number 0),
    /// for callers that log batches themselves, e.g. in Raft entries.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode(0)
    }

    /// Decodes [`WriteBatch::to_bytes`]; `None` if the bytes are not a
    /// well-formed batch.
    pub fn from_bytes(bytes: &[u8]) -> Option<WriteBatch> {
        Self::decode(bytes).map(|(_, batch)| batch)
    }

    /// Decodes a WAL payload into (sequence number, batch); `None` if the
    /// bytes are not a well-formed batch.
    pub(crate) fn decode(payload: &[u8]) -> Option<(u64, WriteBatch)> {
        let mut r = Reader::new(payload);
        let seq = r.u64_le()?;
        let count = r.varint()?;
        let mut batch = WriteBatch::new();
        for _ in 0..count {
            match r.u8()? {
                0 => batch.delete(r.slice()?),
                1 => {
                    let key = r.slice()?;
                    batch.put(key, r.slice()?);
                }
                _ => return None,
            }
        }
        r.is_empty().then_some((seq, batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut b = WriteBatch::new();
        b.put(b"a", b"1");
        b.delete(b"b");
        b.put(b"", b"");
        let enc = b.encode(42);
        let (seq, back) = WriteBatch::decode(&enc).unwrap();
        assert_eq!(seq, 42);
        assert_eq!(back.ops, b.ops);
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let mut b = WriteBatch::new();
        b.put(b"key", b"value");
        let enc = b.encode(7);
        for cut in 0..enc.len() {
            assert!(WriteBatch::decode(&enc[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(WriteBatch::decode(&longer).is_none());
    }
}
