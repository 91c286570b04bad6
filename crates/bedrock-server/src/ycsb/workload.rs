//! The YCSB core workloads A–F: operation mix, key distribution and scan
//! length, as in YCSB's `workloads/workloada` … `workloadf` property files.
//!
//! | workload | mix | request distribution |
//! |---|---|---|
//! | A, update heavy | 50% read, 50% update | zipfian |
//! | B, read mostly | 95% read, 5% update | zipfian |
//! | C, read only | 100% read | zipfian |
//! | D, read latest | 95% read, 5% insert | latest |
//! | E, short ranges | 95% scan, 5% insert | zipfian; scan length uniform 1..=100 |
//! | F, read-modify-write | 50% read, 50% read-modify-write | zipfian |

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::generators::{ScrambledZipfian, SkewedLatest};
use crate::cli::YcsbWorkload;

/// The kinds of operation YCSB issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// Put of a new record.
    Insert,
    /// Get of one record.
    Read,
    /// Put of an existing record.
    Update,
    /// Scan of up to `max_scan_length` records from a chosen key.
    Scan,
    /// Get then Put of one record; its parts are also counted as a read
    /// and an update.
    ReadModifyWrite,
}

impl OpKind {
    /// Every kind, in the order of [`OpKind::index`].
    pub const ALL: [OpKind; 5] = [OpKind::Insert, OpKind::Read, OpKind::Update, OpKind::Scan, OpKind::ReadModifyWrite];

    /// Position in [`OpKind::ALL`], for per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The name used in reports (the serde name).
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Insert => "insert",
            OpKind::Read => "read",
            OpKind::Update => "update",
            OpKind::Scan => "scan",
            OpKind::ReadModifyWrite => "read-modify-write",
        }
    }
}

/// How the records that operations touch are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDistribution {
    /// Scrambled zipfian over the records (YCSB `requestdistribution=zipfian`).
    Zipfian,
    /// Skewed towards the most recent inserts (YCSB `latest`).
    Latest,
}

/// One workload's definition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WorkloadSpec {
    /// Which workload.
    pub workload: YcsbWorkload,
    /// Short description, e.g. "update heavy".
    pub title: &'static str,
    /// Proportion of each operation kind; they sum to 1.
    pub mix: &'static [(OpKind, f64)],
    /// How records are chosen.
    pub distribution: KeyDistribution,
    /// Scans read a uniform 1..=this many records.
    pub max_scan_length: u64,
}

/// The definition of `workload`.
pub fn spec(workload: YcsbWorkload) -> WorkloadSpec {
    use KeyDistribution::{Latest, Zipfian};
    use OpKind::{Insert, Read, ReadModifyWrite, Scan, Update};
    let (title, mix, distribution): (_, &'static [(OpKind, f64)], _) = match workload {
        YcsbWorkload::A => ("update heavy", &[(Read, 0.5), (Update, 0.5)], Zipfian),
        YcsbWorkload::B => ("read mostly", &[(Read, 0.95), (Update, 0.05)], Zipfian),
        YcsbWorkload::C => ("read only", &[(Read, 1.0)], Zipfian),
        YcsbWorkload::D => ("read latest", &[(Read, 0.95), (Insert, 0.05)], Latest),
        YcsbWorkload::E => ("short ranges", &[(Scan, 0.95), (Insert, 0.05)], Zipfian),
        YcsbWorkload::F => ("read-modify-write", &[(Read, 0.5), (ReadModifyWrite, 0.5)], Zipfian),
    };
    WorkloadSpec { workload, title, mix, distribution, max_scan_length: 100 }
}

impl WorkloadSpec {
    /// The operation for a uniform draw `u` in `[0, 1)`.
    pub fn choose(&self, u: f64) -> OpKind {
        let mut acc = 0.0;
        for &(kind, share) in self.mix {
            acc += share;
            if u < acc {
                return kind;
            }
        }
        // Rounding can leave the shares summing to just under 1.
        self.mix.last().map_or(OpKind::Read, |&(kind, _)| kind)
    }

    /// The share of inserts in the mix.
    pub fn insert_proportion(&self) -> f64 {
        self.mix.iter().filter(|(kind, _)| *kind == OpKind::Insert).map(|(_, share)| share).sum()
    }

    /// One line, e.g. "A, update heavy: 50% read, 50% update; zipfian".
    pub fn describe(&self) -> String {
        let letter = format!("{:?}", self.workload);
        let mix: Vec<String> =
            self.mix.iter().map(|(kind, share)| format!("{}% {}", (share * 100.0).round(), kind.name())).collect();
        let distribution = match (self.distribution, self.mix.iter().any(|(k, _)| *k == OpKind::Scan)) {
            (KeyDistribution::Latest, _) => "latest".to_string(),
            (KeyDistribution::Zipfian, false) => "zipfian 0.99".to_string(),
            (KeyDistribution::Zipfian, true) => {
                format!("zipfian 0.99, scan length uniform 1..={}", self.max_scan_length)
            }
        };
        format!("{letter}, {}: {}; {distribution}", self.title, mix.join(", "))
    }
}

/// Draws record numbers for reads, updates and scan starts.
#[derive(Debug, Clone)]
pub enum KeyChooser {
    /// Scrambled zipfian over the loaded records plus room for inserts.
    Zipfian(ScrambledZipfian),
    /// Skewed to the newest record.
    Latest(SkewedLatest),
}

/// Draws of a key number beyond the inserted records before falling back
/// to folding it into range (YCSB redraws without a bound).
const MAX_REDRAWS: u32 = 64;

impl KeyChooser {
    /// The chooser of `spec` for `records` loaded records and `operations`
    /// run operations. As in YCSB, the zipfian key space includes twice
    /// the expected number of inserts, and draws of records not yet
    /// inserted are redrawn.
    pub fn new(spec: &WorkloadSpec, records: u64, operations: u64) -> Self {
        match spec.distribution {
            KeyDistribution::Zipfian => {
                let expected_inserts = (operations as f64 * spec.insert_proportion() * 2.0) as u64;
                KeyChooser::Zipfian(ScrambledZipfian::new(records.saturating_add(expected_inserts)))
            }
            KeyDistribution::Latest => KeyChooser::Latest(SkewedLatest::new(records)),
        }
    }

    /// A key number in `0..inserted` (`inserted` at least 1), where
    /// `inserted` is the count of records whose insert has completed.
    pub fn next<R: Rng + ?Sized>(&mut self, rng: &mut R, inserted: u64) -> u64 {
        let inserted = inserted.max(1);
        match self {
            KeyChooser::Zipfian(gen) => {
                for _ in 0..MAX_REDRAWS {
                    let keynum = gen.next(rng);
                    if keynum < inserted {
                        return keynum;
                    }
                }
                gen.next(rng) % inserted
            }
            KeyChooser::Latest(gen) => gen.next(rng, inserted),
        }
    }
}
