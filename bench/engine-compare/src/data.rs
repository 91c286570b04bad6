//! Keys, values and key orders of the workloads (db_bench conventions).

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

/// Key length in bytes.
pub const KEY_LEN: usize = 16;
/// Value length in bytes.
pub const VALUE_LEN: usize = 100;
/// Logical bytes of one entry.
pub const ENTRY_BYTES: u64 = (KEY_LEN + VALUE_LEN) as u64;

/// Key of entry `i`: `2 * i` as 16 zero-padded decimal digits (db_bench's
/// `%016d`), so byte order is numeric order. Odd numbers are never
/// written: [`missing_key`] uses them, so absent keys fall between present
/// ones and only a bloom filter (not a table's key range) can rule them out.
pub fn key(i: u64) -> [u8; KEY_LEN] {
    digits(2 * i)
}

/// A key that no workload writes, next to [`key`]`(i)`.
pub fn missing_key(i: u64) -> [u8; KEY_LEN] {
    digits(2 * i + 1)
}

fn digits(mut n: u64) -> [u8; KEY_LEN] {
    let mut out = [b'0'; KEY_LEN];
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out
}

/// Values as db_bench makes them: a 1 MiB pool of 100-byte chunks, each
/// 50 random printable bytes repeated once, so values compress to about
/// half (db_bench's `--compression_ratio=0.5`).
pub struct Values {
    pool: Vec<u8>,
}

impl Values {
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut pool = Vec::with_capacity(1 << 20);
        while pool.len() + VALUE_LEN <= 1 << 20 {
            let half: Vec<u8> = (0..VALUE_LEN / 2).map(|_| rng.gen_range(b' '..=b'~')).collect();
            pool.extend_from_slice(&half);
            pool.extend_from_slice(&half);
        }
        Values { pool }
    }

    /// The value written by operation `i`.
    pub fn get(&self, i: u64) -> &[u8] {
        let chunks = (self.pool.len() / VALUE_LEN) as u64;
        let at = ((i % chunks) as usize) * VALUE_LEN;
        &self.pool[at..at + VALUE_LEN]
    }
}

/// `0..n` in a random order (every index once), reproducible from `seed`.
pub fn permutation(n: u64, seed: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n).collect();
    v.shuffle(&mut SmallRng::seed_from_u64(seed));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_numerically_and_missing_keys_interleave() {
        assert_eq!(&key(0), b"0000000000000000");
        assert_eq!(&key(21), b"0000000000000042");
        assert_eq!(&missing_key(21), b"0000000000000043");
        assert!(key(9) < key(10) && key(10) < missing_key(10) && missing_key(10) < key(11));
    }

    #[test]
    fn values_are_half_repeated() {
        let v = Values::new(1);
        let x = v.get(7);
        assert_eq!(x.len(), VALUE_LEN);
        assert_eq!(x[..50], x[50..]);
    }
}
