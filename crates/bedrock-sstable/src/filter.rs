//! The table's bloom filter over user keys.
//!
//! ```text
//! filter block:  bits: m/8 bytes | k: u8
//! ```
//!
//! Bit `i` is bit `i % 8` of byte `i / 8` (least significant first). A key
//! sets the `k` bits `(h + j * delta) mod m` for `j` in `0..k`, where
//! `h = xxh3_64(user_key)` and `delta = h` rotated right by 17 bits: the
//! double hashing of Kirsch and Mitzenmacher ("Less Hashing, Same
//! Performance", 2006), as LevelDB's `util/bloom.cc` does with a 32-bit
//! hash. With `b` bits per key, `k = round(b * ln 2)` clamped to `[1, 30]`,
//! and the false-positive rate is about `(1 - e^(-k/b))^k`: 0.82% for
//! `b = 10` (k = 7).
//!
//! The filter is over *user* keys, so a point lookup at any sequence number
//! can use it; consecutive versions of one user key are added once.

use xxhash_rust::xxh3::xxh3_64;

/// Bits in the smallest filter, so a table with very few keys does not get
/// a filter that is nearly all ones.
const MIN_BITS: usize = 64;

/// Largest `k` a filter may use; larger bytes are rejected as corruption.
pub(crate) const MAX_PROBES: u8 = 30;

/// The number of probes `k` for `bits_per_key` bits per key:
/// `round(bits_per_key * ln 2)` clamped to `[1, MAX_PROBES]`.
pub(crate) fn num_probes(bits_per_key: usize) -> u8 {
    let k = (bits_per_key as f64 * std::f64::consts::LN_2).round();
    #[expect(clippy::cast_possible_truncation, reason = "clamped to [1, 30] first, so the cast is exact")]
    let k = k.clamp(1.0, f64::from(MAX_PROBES)) as u8;
    k
}

/// The theoretical false-positive rate `(1 - e^(-k/b))^k` of a filter with
/// `bits_per_key` bits per key and the `k` this crate picks for it.
pub fn theoretical_false_positive_rate(bits_per_key: usize) -> f64 {
    if bits_per_key == 0 {
        return 1.0;
    }
    let k = f64::from(num_probes(bits_per_key));
    (1.0 - (-k / bits_per_key as f64).exp()).powf(k)
}

/// Collects the hashes of a table's user keys and builds its filter block.
#[derive(Debug)]
pub(crate) struct FilterBuilder {
    bits_per_key: usize,
    hashes: Vec<u64>,
}

impl FilterBuilder {
    /// A builder with `bits_per_key` bits per key (at least 1).
    pub(crate) fn new(bits_per_key: usize) -> Self {
        FilterBuilder { bits_per_key: bits_per_key.max(1), hashes: Vec::new() }
    }

    /// Adds a user key. The caller adds each distinct user key once.
    pub(crate) fn add_key(&mut self, user_key: &[u8]) {
        self.hashes.push(xxh3_64(user_key));
    }

    /// The filter block's contents: the bit array, then `k`.
    pub(crate) fn finish(&self) -> Vec<u8> {
        let bits = self.hashes.len().saturating_mul(self.bits_per_key).max(MIN_BITS);
        let bytes = bits.div_ceil(8);
        let k = num_probes(self.bits_per_key);
        let mut out = vec![0u8; bytes];
        let m = (bytes as u64).saturating_mul(8);
        for &h in &self.hashes {
            for pos in probes(h, k, m) {
                if let Some(byte) = out.get_mut(byte_index(pos)) {
                    *byte |= 1 << (pos % 8);
                }
            }
        }
        out.push(k);
        out
    }
}

/// The `k` bit positions of hash `h` in a filter of `m` bits (`m > 0`).
#[expect(clippy::arithmetic_side_effects, reason = "wrapping_add and `% m` with m > 0 checked by callers")]
fn probes(h: u64, k: u8, m: u64) -> impl Iterator<Item = u64> {
    let delta = h.rotate_right(17);
    (0..u64::from(k)).map(move |j| h.wrapping_add(j.wrapping_mul(delta)) % m)
}

/// Index of the byte holding bit `pos`.
fn byte_index(pos: u64) -> usize {
    usize::try_from(pos / 8).unwrap_or(usize::MAX)
}

/// Checks a filter block's shape: at least one byte of bits and a `k` in
/// `[1, MAX_PROBES]`.
pub(crate) fn check(filter: &[u8]) -> Result<(), &'static str> {
    match filter.split_last() {
        None | Some((_, [])) => Err("filter block too short"),
        Some((&k, _)) if k == 0 || k > MAX_PROBES => Err("filter block has an invalid probe count"),
        Some(_) => Ok(()),
    }
}

/// True if `user_key` may be in the set `filter` was built from; false
/// means it certainly is not. A malformed filter (see [`check`]) answers
/// true, so damage can cost speed but never correctness.
pub(crate) fn may_contain(filter: &[u8], user_key: &[u8]) -> bool {
    let Some((&k, bits)) = filter.split_last() else { return true };
    if bits.is_empty() || k == 0 || k > MAX_PROBES {
        return true;
    }
    let m = (bits.len() as u64).saturating_mul(8);
    probes(xxh3_64(user_key), k, m).all(|pos| bits.get(byte_index(pos)).is_some_and(|b| b & (1 << (pos % 8)) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter_of(n: u32, bits_per_key: usize) -> Vec<u8> {
        let mut b = FilterBuilder::new(bits_per_key);
        for i in 0..n {
            b.add_key(format!("present-{i}").as_bytes());
        }
        b.finish()
    }

    #[test]
    fn probe_count_is_rounded_and_clamped() {
        assert_eq!(num_probes(1), 1);
        assert_eq!(num_probes(10), 7);
        assert_eq!(num_probes(20), 14);
        assert_eq!(num_probes(64), 30);
        assert!((theoretical_false_positive_rate(10) - 0.0082).abs() < 0.0002);
    }

    #[test]
    fn empty_filter_rejects_everything_and_has_min_size() {
        let f = filter_of(0, 10);
        assert_eq!(f.len(), MIN_BITS / 8 + 1);
        check(&f).unwrap();
        assert!(!may_contain(&f, b"anything"));
    }

    #[test]
    fn malformed_filters_fail_check_but_answer_maybe() {
        for f in [&[][..], &[7][..], &[0, 0][..], &[0, 31][..]] {
            assert!(check(f).is_err());
            assert!(may_contain(f, b"x"));
        }
    }

    #[test]
    fn false_positive_rate_is_near_theory_on_100k_keys() {
        let n = 100_000;
        let f = filter_of(n, 10);
        for i in 0..n {
            assert!(may_contain(&f, format!("present-{i}").as_bytes()), "false negative for {i}");
        }
        let fp = (0..n).filter(|i| may_contain(&f, format!("absent-{i}").as_bytes())).count();
        let measured = fp as f64 / f64::from(n);
        let theory = theoretical_false_positive_rate(10);
        println!("bloom 10 bits/key: measured false-positive rate {measured:.5}, theoretical {theory:.5}");
        assert!(measured < theory * 1.5 && measured > theory / 1.5, "measured {measured}, theory {theory}");
    }
}
