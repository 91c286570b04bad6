//! The random generators that define YCSB's key choice, after YCSB's
//! `site.ycsb.generator` package: a zipfian generator (Gray et al.,
//! "Quickly Generating Billion-Record Synthetic Databases", SIGMOD 1994),
//! its scrambled form, the skewed-latest form, and the counter that hands
//! out insert key numbers.
//!
//! Key numbers are ordinals (`0..records` for the load phase, then
//! upwards for inserts); [`key_name`] turns one into a key, hashed so that
//! consecutive inserts land far apart in key order, as in YCSB's
//! `CoreWorkload.buildKeyName` with `insertorder=hashed`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rand::Rng;

/// Zipfian constant (theta) of every YCSB core workload.
pub const ZIPFIAN_CONSTANT: f64 = 0.99;

/// Items of the zipfian underneath [`ScrambledZipfian`]: popularity ranks
/// are drawn from this many items and then hashed onto the key space, so
/// the skew does not depend on the record count.
pub const SCRAMBLED_ITEM_COUNT: u64 = 10_000_000_000;

/// zeta(10^10, 0.99), precomputed by YCSB (`ScrambledZipfianGenerator.ZETAN`)
/// because summing 10^10 terms takes minutes. Later YCSB versions raised
/// `ITEM_COUNT` to 10^16 but kept this value, which belongs to 10^10 (the
/// Euler-Maclaurin estimate gives 26.469 for 10^10 and 45.12 for 10^16), so
/// the item count here is 10^10.
pub const SCRAMBLED_ZETA: f64 = 26.469_028_201_783_02;

const FNV_OFFSET_BASIS_64: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME_64: u64 = 1_099_511_628_211;

/// YCSB's `Utils.fnvhash64`: FNV-1a over the eight bytes of `value`, least
/// significant first, then the absolute value of the result read as a
/// signed 64-bit number (so the result is below 2^63, or exactly 2^63 for
/// the one hash equal to `i64::MIN`).
pub fn fnv_hash64(mut value: u64) -> u64 {
    let mut hash = FNV_OFFSET_BASIS_64;
    for _ in 0..8 {
        hash ^= value & 0xff;
        hash = hash.wrapping_mul(FNV_PRIME_64);
        value >>= 8;
    }
    (hash as i64).unsigned_abs()
}

/// The key of record `keynum`: `user` followed by the decimal FNV hash of
/// the ordinal.
pub fn key_name(keynum: u64) -> Vec<u8> {
    format!("user{}", fnv_hash64(keynum)).into_bytes()
}

/// zeta(n, theta) - zeta(from, theta) + `initial`: the sum of `1 / i^theta`
/// for `i` in `from + 1..=n`, added to `initial`. O(n - from).
pub fn zeta(from: u64, n: u64, theta: f64, initial: f64) -> f64 {
    (from..n).fold(initial, |sum, i| sum + 1.0 / ((i + 1) as f64).powf(theta))
}

/// Zipfian draws over `0..items`, item 0 the most popular, item `i` drawn
/// with probability proportional to `1 / (i + 1)^theta`.
///
/// Items 0 and 1 get their exact shares (`1 / zeta(n)` and
/// `0.5^theta / zeta(n)`); the rest follow Gray et al.'s closed-form
/// approximation.
#[derive(Debug, Clone)]
pub struct Zipfian {
    items: u64,
    theta: f64,
    alpha: f64,
    zeta2theta: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// A generator over `items` (at least 1) items; computes zeta in
    /// O(items).
    pub fn new(items: u64, theta: f64) -> Self {
        let items = items.max(1);
        Self::with_zeta(items, theta, zeta(0, items, theta, 0.0))
    }

    /// A generator over `items` items with zeta(items, theta) given.
    pub fn with_zeta(items: u64, theta: f64, zetan: f64) -> Self {
        let items = items.max(1);
        let zeta2theta = zeta(0, 2, theta, 0.0);
        let mut gen = Self { items, theta, alpha: 1.0 / (1.0 - theta), zeta2theta, zetan, eta: 0.0 };
        gen.eta = gen.eta_for(items);
        gen
    }

    fn eta_for(&self, items: u64) -> f64 {
        (1.0 - (2.0 / items as f64).powf(1.0 - self.theta)) / (1.0 - self.zeta2theta / self.zetan)
    }

    /// Number of items drawn from.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// Grows the item count to `items`, extending zeta incrementally in
    /// O(`items` - current count); a smaller count is ignored, as in YCSB
    /// (recomputing from scratch would cost O(`items`) per draw).
    pub fn grow_to(&mut self, items: u64) {
        if items > self.items {
            self.zetan = zeta(self.items, items, self.theta, self.zetan);
            self.items = items;
            self.eta = self.eta_for(items);
        }
    }

    /// Draws one item in `0..items`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        let u: f64 = rng.gen();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5_f64.powf(self.theta) {
            return 1.min(self.items - 1);
        }
        let rank = self.items as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha);
        (rank as u64).min(self.items - 1)
    }
}

/// YCSB's `ScrambledZipfianGenerator`: a zipfian rank over
/// [`SCRAMBLED_ITEM_COUNT`] items, FNV-hashed onto `0..items`, so the
/// popular records are scattered over the key space instead of being the
/// first ones loaded.
#[derive(Debug, Clone)]
pub struct ScrambledZipfian {
    ranks: Zipfian,
    items: u64,
}

impl ScrambledZipfian {
    /// A generator over `0..items` (at least 1 item).
    pub fn new(items: u64) -> Self {
        Self { ranks: Zipfian::with_zeta(SCRAMBLED_ITEM_COUNT, ZIPFIAN_CONSTANT, SCRAMBLED_ZETA), items: items.max(1) }
    }

    /// Draws one item in `0..items`.
    pub fn next<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        fnv_hash64(self.ranks.next(rng)) % self.items
    }
}

/// YCSB's `SkewedLatestGenerator`: zipfian by age, the newest record the
/// most popular.
#[derive(Debug, Clone)]
pub struct SkewedLatest {
    ages: Zipfian,
}

impl SkewedLatest {
    /// A generator for a data set of `records` records (it grows as
    /// records are inserted; see [`SkewedLatest::next`]).
    pub fn new(records: u64) -> Self {
        Self { ages: Zipfian::new(records, ZIPFIAN_CONSTANT) }
    }

    /// Draws a key number in `0..count`, where `count` is the number of
    /// records inserted so far (keys `0..count`); `count - 1` is the most
    /// likely. YCSB draws `last - zipfian(last)`, which never returns 0;
    /// this draws the age from `0..count`, so every record can be chosen.
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, count: u64) -> u64 {
        let count = count.max(1);
        self.ages.grow_to(count);
        let age = self.ages.next(rng);
        (count - 1).saturating_sub(age)
    }
}

/// Hands out key numbers for inserts and tracks how far the acknowledged
/// ones form a contiguous prefix (YCSB's `AcknowledgedCounterGenerator`),
/// so reads only choose records whose insert has completed.
#[derive(Debug)]
pub struct InsertSequence {
    next: AtomicU64,
    acknowledged: AtomicU64,
    pending: Mutex<BTreeSet<u64>>,
}

impl InsertSequence {
    /// A sequence whose first key number is `start`; key numbers below
    /// `start` count as acknowledged.
    pub fn new(start: u64) -> Self {
        Self { next: AtomicU64::new(start), acknowledged: AtomicU64::new(start), pending: Mutex::new(BTreeSet::new()) }
    }

    /// The next key number to insert.
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Marks the insert of `keynum` as finished (successfully or not: a
    /// failed insert must not stop the prefix from growing).
    pub fn acknowledge(&self, keynum: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        pending.insert(keynum);
        let mut limit = self.acknowledged.load(Ordering::Relaxed);
        while pending.remove(&limit) {
            limit += 1;
        }
        self.acknowledged.store(limit, Ordering::Release);
    }

    /// How many key numbers, from 0, have all been acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged.load(Ordering::Acquire)
    }
}
