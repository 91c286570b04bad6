//! Commands: what a Raft log entry asks the state machine to do, and their
//! byte encoding inside the entry.
//!
//! An entry carries a list of commands, so that many clients' writes share
//! one entry (and one fsync). They are applied in order at one sequence
//! number, the entry's index; a transaction is validated against the state
//! before the entry plus the writes of the commands before it in the entry,
//! so its verdict is the same on every replica.
//!
//! Encoding (little-endian, varints as in LEB128):
//! `version: u8 = 1 | count: varint | command*`, and a command is
//! `tag: u8 | batch_len: varint | batch` for a write (tag 1), or
//! `tag: u8 = 2 | batch_len | batch | keys: varint | (key_len | key | seq: u64)* |
//! ranges: varint | (start_len | start | has_end: u8 | (end_len | end)? | seq: u64)*`
//! for a transaction. `batch` is [`WriteBatch::to_bytes`].

use bedrock_lsm::WriteBatch;
use bedrock_txn::ReadSet;

const VERSION: u8 = 1;
const TAG_WRITE: u8 = 1;
const TAG_TXN: u8 = 2;

/// One replicated request.
#[derive(Debug, Clone)]
pub enum Command {
    /// Unconditional writes (puts and deletes), atomic.
    Write(WriteBatch),
    /// A transaction: its writes apply only if nothing it read changed
    /// since it read it ([`bedrock_txn::validate`]).
    Txn {
        /// What the transaction observed, with sequence numbers (= log
        /// indexes) of the observations.
        reads: ReadSet,
        /// Its writes.
        writes: WriteBatch,
    },
}

impl Command {
    /// Approximate encoded size in bytes.
    pub fn approximate_bytes(&self) -> usize {
        match self {
            Command::Write(b) => b.approximate_bytes() + 8,
            Command::Txn { reads, writes } => {
                writes.approximate_bytes()
                    + reads.keys.keys().map(|k| k.len() + 12).sum::<usize>()
                    + reads
                        .ranges
                        .iter()
                        .map(|r| r.start.len() + r.end.as_ref().map_or(0, Vec::len) + 16)
                        .sum::<usize>()
            }
        }
    }

    /// The writes of the command.
    pub fn writes(&self) -> &WriteBatch {
        match self {
            Command::Write(b) | Command::Txn { writes: b, .. } => b,
        }
    }
}

/// Encodes `commands` as the data of one log entry.
pub fn encode(commands: &[Command]) -> Vec<u8> {
    let mut out = Vec::with_capacity(commands.iter().map(Command::approximate_bytes).sum::<usize>() + 8);
    out.push(VERSION);
    put_varint(&mut out, commands.len() as u64);
    for c in commands {
        match c {
            Command::Write(batch) => {
                out.push(TAG_WRITE);
                put_slice(&mut out, &batch.to_bytes());
            }
            Command::Txn { reads, writes } => {
                out.push(TAG_TXN);
                put_slice(&mut out, &writes.to_bytes());
                put_varint(&mut out, reads.keys.len() as u64);
                for (key, seq) in &reads.keys {
                    put_slice(&mut out, key);
                    out.extend_from_slice(&seq.to_le_bytes());
                }
                put_varint(&mut out, reads.ranges.len() as u64);
                for r in &reads.ranges {
                    put_slice(&mut out, &r.start);
                    match &r.end {
                        Some(end) => {
                            out.push(1);
                            put_slice(&mut out, end);
                        }
                        None => out.push(0),
                    }
                    out.extend_from_slice(&r.observed_seq.to_le_bytes());
                }
            }
        }
    }
    out
}

/// Decodes entry data written by [`encode`].
///
/// # Errors
/// A description of the first malformed field.
pub fn decode(data: &[u8]) -> Result<Vec<Command>, String> {
    let mut r = Reader { data };
    let version = r.u8()?;
    if version != VERSION {
        return Err(format!("unknown command encoding version {version}"));
    }
    let count = r.varint()?;
    let mut commands = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let tag = r.u8()?;
        let batch = WriteBatch::from_bytes(r.slice()?).ok_or("malformed write batch")?;
        commands.push(match tag {
            TAG_WRITE => Command::Write(batch),
            TAG_TXN => {
                let mut reads = ReadSet::default();
                for _ in 0..r.varint()? {
                    let key = r.slice()?;
                    reads.record_key(key, r.u64()?);
                }
                for _ in 0..r.varint()? {
                    let start = r.slice()?.to_vec();
                    let end = match r.u8()? {
                        0 => None,
                        1 => Some(r.slice()?.to_vec()),
                        b => return Err(format!("bad range end flag {b}")),
                    };
                    let seq = r.u64()?;
                    reads.record_range(&start, end.as_deref(), seq);
                }
                Command::Txn { reads, writes: batch }
            }
            t => return Err(format!("unknown command tag {t}")),
        });
    }
    if !r.data.is_empty() {
        return Err(format!("{} trailing bytes", r.data.len()));
    }
    Ok(commands)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn put_slice(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A bounds-checked reader over encoded bytes.
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn u8(&mut self) -> Result<u8, String> {
        let (&b, rest) = self.data.split_first().ok_or("truncated")?;
        self.data = rest;
        Ok(b)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, String> {
        if self.data.len() < 8 {
            return Err("truncated u64".into());
        }
        let (head, rest) = self.data.split_at(8);
        self.data = rest;
        Ok(u64::from_le_bytes(head.try_into().map_err(|_| "truncated u64")?))
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint too long".into())
    }

    pub(crate) fn slice(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
        if self.data.len() < len {
            return Err(format!("truncated: {len} bytes announced, {} left", self.data.len()));
        }
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Command> {
        let mut w = WriteBatch::new();
        w.put(b"a", b"1");
        w.delete(b"b");
        let mut reads = ReadSet::default();
        reads.record_key(b"k", 7);
        reads.record_range(b"r", Some(b"s"), 9);
        reads.record_range(b"t", None, 10);
        vec![Command::Write(w.clone()), Command::Txn { reads, writes: w }]
    }

    #[test]
    fn round_trip() {
        let enc = encode(&sample());
        let back = decode(&enc).unwrap();
        assert_eq!(encode(&back), enc);
        let Command::Txn { reads, .. } = &back[1] else { panic!("not a txn") };
        assert_eq!(reads.keys.get(&b"k"[..]), Some(&7));
        assert_eq!(reads.ranges.len(), 2);
        assert_eq!(reads.ranges[1].end, None);
    }

    #[test]
    fn every_truncation_and_trailing_garbage_is_an_error() {
        let enc = encode(&sample());
        for cut in 0..enc.len() {
            assert!(decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = enc.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad_version = enc;
        bad_version[0] = 9;
        assert!(decode(&bad_version).unwrap_err().contains("version"));
    }
}
