//! Leveled compaction: picking by score like RocksDB, merging inputs into
//! the next level, and dropping versions no reader can see.
//!
//! Score of L0 = file count / `l0_compaction_trigger`; score of level n >= 1
//! = bytes / target(n) (see [`LevelTargets`]: fixed targets growing from
//! L1 down, or RocksDB's dynamic targets sized from the last level up).
//! The level with the highest score >= 1 is compacted: all of L0 (its
//! files overlap) into the base level, or one file of level n into level
//! n + 1, together with the overlapping files of the output level. The
//! file is the one with the least overlap per byte (RocksDB's
//! `kMinOverlappingRatio`) or the next in key order after the previous
//! compaction's (round-robin), per [`Options::compaction_pri`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bedrock_sstable::{decode_internal_key, Table, TableBuilder, ValueKind};

use crate::db::{table_name, Core, Inner};
use crate::iter::{InternalIterator, LevelIterator, MergingIterator};
use crate::jobs::JobSlot;
use crate::stats::Counters;
use crate::version::{FileMeta, VersionEdit};
use crate::{CompactionPri, Error, Options, Result};

/// A compaction in progress, as the picker sees it.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) id: u64,
    pub(crate) files: Vec<u64>,
    pub(crate) output_level: usize,
    pub(crate) lo: Vec<u8>,
    pub(crate) hi: Vec<u8>,
    pub(crate) from_l0: bool,
}

static NEXT_COMPACTION_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Level size targets in effect for one version.
///
/// Fixed (`dynamic_level_bytes` false): target(n) =
/// `max_bytes_for_level_base * level_size_multiplier^(n-1)`, base level 1.
///
/// Dynamic (RocksDB's `level_compaction_dynamic_level_bytes`, see
/// `VersionStorageInfo::CalculateBaseBytes`): the last level's target is
/// the largest level's size (at least `max_bytes_for_level_base`); each
/// level above is `level_size_multiplier` times smaller, up to the first
/// one whose target is at most `max_bytes_for_level_base`: that is the
/// base level, where L0 compacts to. Levels between L0 and the base level
/// have target 0 and are kept empty.
#[derive(Debug, Clone)]
pub(crate) struct LevelTargets {
    /// Bytes per level, L0 first.
    sizes: Vec<u64>,
    targets: Vec<u64>,
    base_level: usize,
}

impl LevelTargets {
    pub(crate) fn new(opts: &Options, v: &crate::version::Version) -> Self {
        Self::from_sizes(opts, (0..v.levels.len()).map(|l| v.level_bytes(l)).collect())
    }

    /// The targets for levels holding `sizes` bytes (L0 first).
    fn from_sizes(opts: &Options, sizes: Vec<u64>) -> Self {
        let last = sizes.len().saturating_sub(1);
        let mut targets = vec![0; sizes.len()];
        if !opts.dynamic_level_bytes {
            for (level, t) in targets.iter_mut().enumerate().skip(1) {
                *t = opts.level_target_bytes(level);
            }
            return LevelTargets { sizes, targets, base_level: 1.min(last) };
        }
        let largest = sizes.iter().skip(1).copied().max().unwrap_or(0).max(opts.max_bytes_for_level_base);
        let mut level = last;
        let mut target = largest;
        if let Some(t) = targets.get_mut(level) {
            *t = target;
        }
        while level > 1 && target > opts.max_bytes_for_level_base {
            level -= 1;
            target /= opts.level_size_multiplier;
            // No level from the base down targets less than the base size
            // (RocksDB's `CalculateBaseBytes`): a base level of a few dozen
            // MiB over a last level of a few hundred would push every L0
            // compaction's output on down at once, and with keys spread
            // over the whole range each push rewrites the whole last level.
            if let Some(t) = targets.get_mut(level) {
                *t = target.max(opts.max_bytes_for_level_base);
            }
        }
        LevelTargets { sizes, targets, base_level: level }
    }

    /// Target bytes of `level` (0 for L0 and for levels kept empty).
    pub(crate) fn target(&self, level: usize) -> u64 {
        self.targets.get(level).copied().unwrap_or(0)
    }

    fn size(&self, level: usize) -> u64 {
        self.sizes.get(level).copied().unwrap_or(0)
    }

    /// The level L0 compacts into: the base level, or a level above it
    /// that still holds data (newer data must stay above older data, so
    /// L0 may only skip empty levels).
    fn l0_output(&self) -> usize {
        (1..self.base_level).find(|&l| self.size(l) > 0).unwrap_or(self.base_level)
    }

    /// Compaction score of level `level >= 1`: bytes / target; a level
    /// above the base level that holds data scores at least 1, so it is
    /// drained into the next one.
    fn score(&self, level: usize) -> f64 {
        let bytes = self.size(level) as f64;
        if level < self.base_level {
            return if bytes == 0.0 { 0.0 } else { (bytes / self.target(self.base_level).max(1) as f64).max(1.0) };
        }
        bytes / self.target(level).max(1) as f64
    }
}

/// A chosen compaction.
#[derive(Debug)]
pub(crate) struct Compaction {
    pub(crate) id: u64,
    pub(crate) level: usize,
    /// Where the outputs go: `level + 1`, or the base level for L0.
    pub(crate) output_level: usize,
    pub(crate) inputs: Vec<Arc<FileMeta>>,
    pub(crate) next_inputs: Vec<Arc<FileMeta>>,
    /// No level below the output holds any key of the compaction's range,
    /// so tombstones can be dropped.
    pub(crate) bottommost: bool,
}

/// Decides, for entries in internal-key order, which versions to keep.
///
/// Snapshots split sequence-number space into stripes: stripe(s) is the
/// index of the oldest snapshot that can see s (or "latest" if none can).
/// Within one stripe only the newest version of a key is visible to
/// anyone, so older ones are dropped. A tombstone in the oldest stripe of
/// a bottommost compaction hides nothing any reader needs and is dropped
/// too. (RocksDB's `CompactionIterator` works the same way.)
pub(crate) struct VersionFilter<'a> {
    snapshots: &'a [u64],
    bottommost: bool,
    /// Versions newer than this are all kept: a snapshot taken after the
    /// job started reads at a sequence number >= `floor` that the job does
    /// not know. `floor` itself must be in `snapshots`.
    floor: u64,
    last_key: Option<Vec<u8>>,
    last_stripe: usize,
}

impl<'a> VersionFilter<'a> {
    pub(crate) fn new(snapshots: &'a [u64], bottommost: bool, floor: u64) -> Self {
        VersionFilter { snapshots, bottommost, floor, last_key: None, last_stripe: 0 }
    }

    /// Returns true if the entry must be written out.
    pub(crate) fn keep(&mut self, user_key: &[u8], seq: u64, is_tombstone: bool) -> bool {
        let stripe = self.snapshots.partition_point(|&s| s < seq);
        if seq > self.floor {
            self.last_key = Some(user_key.to_vec());
            self.last_stripe = usize::MAX;
            return true;
        }
        let same_key = self.last_key.as_deref() == Some(user_key);
        if !same_key {
            self.last_key = Some(user_key.to_vec());
        } else if stripe == self.last_stripe {
            return false;
        }
        self.last_stripe = stripe;
        !(is_tombstone && self.bottommost && stripe == 0)
    }
}

impl Compaction {
    pub(crate) fn running(&self) -> Running {
        let files = self.inputs.iter().chain(&self.next_inputs).map(|f| f.number).collect();
        let (lo, hi) = key_range(self.inputs.iter().chain(&self.next_inputs)).unwrap_or_default();
        Running { id: self.id, files, output_level: self.output_level, lo, hi, from_l0: self.level == 0 }
    }
}

/// Levels whose score is >= 1, most urgent first.
fn scores(opts: &Options, core: &Core, targets: &LevelTargets) -> Vec<(f64, usize)> {
    let v = &core.version;
    let mut out = Vec::new();
    for level in 0..v.levels.len().saturating_sub(1) {
        let score = if level == 0 {
            v.levels.first().map_or(0, Vec::len) as f64 / opts.l0_compaction_trigger as f64
        } else {
            targets.score(level)
        };
        if score >= 1.0 {
            out.push((score, level));
        }
    }
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out
}

/// True if some level's score is >= 1.
pub(crate) fn compaction_due(opts: &Options, core: &Core) -> bool {
    !scores(opts, core, &LevelTargets::new(opts, &core.version)).is_empty()
}

/// Picks the most urgent compaction that does not collide with one in
/// progress, if any level's score is >= 1.
pub(crate) fn pick(opts: &Options, core: &Core) -> Option<Compaction> {
    let targets = LevelTargets::new(opts, &core.version);
    scores(opts, core, &targets).into_iter().find_map(|(_, level)| {
        let output_level = if level == 0 { targets.l0_output() } else { level + 1 };
        pick_level(opts, core, level, output_level)
    })
}

/// True if a running compaction holds `f`.
fn busy(core: &Core, f: &FileMeta) -> bool {
    core.running.iter().any(|r| r.files.contains(&f.number))
}

fn pick_level(opts: &Options, core: &Core, level: usize, output_level: usize) -> Option<Compaction> {
    let v = &core.version;
    if level == 0 {
        if core.running.iter().any(|r| r.from_l0) {
            return None;
        }
        let inputs = v.levels.first()?.iter().filter(|f| !busy(core, f)).cloned().collect();
        return expand(core, level, output_level, inputs);
    }
    let files = v.levels.get(level)?;
    let order: Vec<usize> = match opts.compaction_pri {
        CompactionPri::MinOverlappingRatio => {
            let next = v.levels.get(output_level).map_or(&[][..], Vec::as_slice);
            let mut by_ratio: Vec<(u64, usize)> =
                overlapping_ratios(&key_ranges(files), &key_ranges(next)).into_iter().zip(0..).collect();
            by_ratio.sort_unstable();
            by_ratio.into_iter().map(|(_, i)| i).collect()
        }
        CompactionPri::RoundRobin => {
            let pointer = core.compact_pointer.get(level).map_or(&[][..], Vec::as_slice);
            let start = files.partition_point(|f| f.largest_user_key() <= pointer);
            (start..files.len()).chain(0..start).collect()
        }
    };
    order
        .into_iter()
        .filter_map(|i| files.get(i))
        .filter(|f| !busy(core, f))
        .find_map(|f| expand(core, level, output_level, vec![f.clone()]))
}

/// `inputs` of `level` with their overlap in `output_level`, unless a
/// running compaction holds one of those files or writes into the same
/// key range of `output_level`.
fn expand(core: &Core, level: usize, output_level: usize, inputs: Vec<Arc<FileMeta>>) -> Option<Compaction> {
    let v = &core.version;
    let (lo, hi) = key_range(&inputs)?;
    let next_inputs = v.overlapping(output_level, &lo, &hi);
    if next_inputs.iter().any(|f| busy(core, f)) {
        return None;
    }
    let (lo, hi) = key_range(inputs.iter().chain(&next_inputs))?;
    let collides = core.running.iter().any(|r| r.output_level == output_level && r.lo <= hi && lo <= r.hi);
    if collides {
        return None;
    }
    let bottommost = (output_level + 1..v.levels.len()).all(|l| v.overlapping(l, &lo, &hi).is_empty());
    let id = NEXT_COMPACTION_ID.fetch_add(1, Ordering::Relaxed);
    Some(Compaction { id, level, output_level, inputs, next_inputs, bottommost })
}

/// A file's smallest and largest user key and its size in bytes.
type KeyRange<'a> = (&'a [u8], &'a [u8], u64);

fn key_ranges(files: &[Arc<FileMeta>]) -> Vec<KeyRange<'_>> {
    files.iter().map(|f| (f.smallest_user_key(), f.largest_user_key(), f.size)).collect()
}

/// For each file of a sorted level, the bytes of the files of the sorted
/// level below (`next`) that overlap its key range, times 1024, divided
/// by its own size (RocksDB's overlapping ratio, before its compensation
/// for deletions). One merge-like pass: O(files + next) comparisons, plus
/// the files of `next` that straddle two neighbours.
fn overlapping_ratios(files: &[KeyRange<'_>], next: &[KeyRange<'_>]) -> Vec<u64> {
    let mut first = 0;
    files
        .iter()
        .map(|&(lo, hi, size)| {
            while next.get(first).is_some_and(|n| n.1 < lo) {
                first += 1;
            }
            let overlap: u64 =
                next.get(first..).unwrap_or_default().iter().take_while(|n| n.0 <= hi).map(|n| n.2).sum();
            let ratio = u128::from(overlap) * 1024 / u128::from(size.max(1));
            u64::try_from(ratio).unwrap_or(u64::MAX)
        })
        .collect()
}

fn key_range<'a>(files: impl IntoIterator<Item = &'a Arc<FileMeta>>) -> Option<(Vec<u8>, Vec<u8>)> {
    let mut range: Option<(&[u8], &[u8])> = None;
    for f in files {
        let (lo, hi) = (f.smallest_user_key(), f.largest_user_key());
        range = Some(match range {
            None => (lo, hi),
            Some((a, b)) => (a.min(lo), b.max(hi)),
        });
    }
    range.map(|(a, b)| (a.to_vec(), b.to_vec()))
}

/// Runs `c`: merges its inputs into new files of the next level, logs the
/// edit, installs the new version and deletes the inputs.
pub(crate) fn run(inner: &Inner, c: Compaction) -> Result<()> {
    let output_level = c.output_level;
    let mut children: Vec<Box<dyn InternalIterator>> = Vec::new();
    for f in c.inputs.iter().rev() {
        children.push(Box::new(Table::iter(&f.table)));
    }
    children.push(Box::new(LevelIterator::new(c.next_inputs.clone())));
    let mut merged = MergingIterator::new(children);
    merged.seek_to_first();

    let (snapshots, floor) = inner.snapshots.sorted_with_floor(&inner.visible_seq);
    let mut slot = inner.jobs.compaction();
    let outputs = write_outputs(inner, &mut slot, &mut merged, &snapshots, c.bottommost, floor, output_level)?;
    drop(slot);
    merged.status()?;

    let mut edit =
        VersionEdit { next_file_number: Some(inner.next_file.load(Ordering::Relaxed)), ..VersionEdit::default() };
    edit.deleted.extend(c.inputs.iter().map(|f| (c.level, f.number)));
    edit.deleted.extend(c.next_inputs.iter().map(|f| (output_level, f.number)));
    edit.added.extend(outputs.iter().map(|f| (output_level, f.new_file())));
    let read: u64 = c.inputs.iter().chain(&c.next_inputs).map(|f| f.size).sum();
    let written: u64 = outputs.iter().map(|f| f.size).sum();
    let mut manifest = inner.manifest.lock();
    let base = crate::background::Base::of(&inner.core.lock());
    let version = crate::background::log_edit(inner, &mut manifest, &base, &edit, &outputs)?;
    let old = {
        let mut core = inner.core.lock();
        core.version = Arc::new(version);
        if let (Some(last), Some(p)) = (c.inputs.last(), core.compact_pointer.get_mut(c.level)) {
            *p = last.largest_user_key().to_vec();
        }
        inner.publish(&core)
    };
    drop(manifest);
    drop(old);
    for f in c.inputs.iter().chain(&c.next_inputs) {
        // Readers still holding the old version keep the file mapped; on
        // Unix the unlinked inode stays readable until they let go.
        let path = inner.dir.join(table_name(f.number));
        if let Err(e) = inner.fs.remove(&path) {
            tracing::warn!(file = %path.display(), error = %e, "could not remove compacted SSTable");
        }
    }
    Counters::add(&inner.counters.compaction_bytes_read, read);
    Counters::add(&inner.counters.compaction_bytes_written, written);
    Counters::add(&inner.counters.compactions, 1);
    tracing::debug!(
        level = c.level,
        inputs = c.inputs.len() + c.next_inputs.len(),
        outputs = outputs.len(),
        read,
        written,
        "compaction done"
    );
    Ok(())
}

/// Writes the filtered merge into files of about `target_file_size_bytes`,
/// cut only between user keys (so a key's versions never straddle files).
fn write_outputs(
    inner: &Inner,
    slot: &mut JobSlot<'_>,
    merged: &mut MergingIterator,
    snapshots: &[u64],
    bottommost: bool,
    floor: u64,
    output_level: usize,
) -> Result<Vec<Arc<FileMeta>>> {
    let table_options = inner.opts.table_options_for(output_level);
    let mut filter = VersionFilter::new(snapshots, bottommost, floor);
    let mut outputs = Vec::new();
    let mut current: Option<(u64, TableBuilder)> = None;
    let mut last_user_key: Vec<u8> = Vec::new();
    let result = (|| {
        let mut entries = 0u32;
        while merged.valid() {
            entries = entries.wrapping_add(1);
            if entries % 64 == 0 && slot.yield_to_flush() {
                Counters::add(&inner.counters.compaction_pauses, 1);
            }
            let Some((user_key, seq, kind)) = decode_internal_key(merged.key()) else {
                return Err(Error::Corruption {
                    path: inner.dir.clone(),
                    offset: 0,
                    reason: "malformed key in compaction input".into(),
                });
            };
            let new_key = user_key != last_user_key.as_slice();
            if new_key {
                if let Some((_, b)) = &current {
                    if b.estimated_size() >= inner.opts.target_file_size_bytes {
                        if let Some((number, builder)) = current.take() {
                            outputs.push(finish_output(inner, number, builder)?);
                        }
                    }
                }
                last_user_key.clear();
                last_user_key.extend_from_slice(user_key);
            }
            if filter.keep(user_key, seq, kind == ValueKind::Delete) {
                if current.is_none() {
                    let number = inner.next_file.fetch_add(1, Ordering::Relaxed);
                    let path = inner.dir.join(table_name(number));
                    let file = inner.fs.create(&path).map_err(|e| Error::io("create", &path, e))?;
                    current = Some((number, TableBuilder::new(file, path, table_options.clone())));
                }
                if let Some((_, b)) = &mut current {
                    b.add(merged.key(), merged.value())?;
                }
            }
            merged.next();
        }
        if let Some((number, builder)) = current.take() {
            outputs.push(finish_output(inner, number, builder)?);
        }
        inner.fs.sync_dir(&inner.dir).map_err(|e| Error::io("sync_dir", &inner.dir, e))
    })();
    if let Err(e) = result {
        for f in &outputs {
            let _ = inner.fs.remove(&inner.dir.join(table_name(f.number)));
        }
        return Err(e);
    }
    Ok(outputs)
}

fn finish_output(inner: &Inner, number: u64, builder: TableBuilder) -> Result<Arc<FileMeta>> {
    let summary = builder.finish()?;
    Inner::open_table(&*inner.fs, &inner.dir, number, summary.smallest, summary.largest)
}

#[cfg(test)]
mod tests {
    const MIB: u64 = 1 << 20;

    fn dynamic() -> Options {
        Options { max_bytes_for_level_base: 256 * MIB, level_size_multiplier: 10, ..Options::with_dir("db") }
    }

    #[test]
    fn fixed_targets_grow_from_level_1() {
        let opts = Options { dynamic_level_bytes: false, ..dynamic() };
        let t = LevelTargets::from_sizes(&opts, vec![0; 7]);
        assert_eq!(
            (0..7).map(|l| t.target(l)).collect::<Vec<_>>(),
            [0, 256, 2560, 25600, 256000, 2560000, 25600000].map(|m| m * MIB)
        );
        assert_eq!(t.l0_output(), 1);
    }

    #[test]
    fn a_small_database_lives_in_the_last_level() {
        let t = LevelTargets::from_sizes(&dynamic(), vec![0, 0, 0, 0, 0, 0, 100 * MIB]);
        assert_eq!(t.l0_output(), 6);
        assert_eq!(t.target(6), 256 * MIB);
        assert_eq!((1..6).map(|l| t.target(l)).sum::<u64>(), 0);
        assert!(t.score(6) < 1.0);
    }

    #[test]
    fn dynamic_targets_shrink_from_the_largest_level_up_to_the_base() {
        // 70 GB at the bottom: L6 70000, L5 7000, L4 700, L3 70 MiB (the
        // first at most 256 MiB, so the base level, whose target is raised
        // to 256); L1-L2 stay empty.
        let t = LevelTargets::from_sizes(&dynamic(), vec![0, 0, 0, 30 * MIB, 500 * MIB, 5000 * MIB, 70000 * MIB]);
        assert_eq!((0..7).map(|l| t.target(l) / MIB).collect::<Vec<_>>(), [0, 0, 0, 256, 700, 7000, 70000]);
        assert_eq!(t.l0_output(), 3);
        assert!(t.score(3) < 1.0 && t.score(4) < 1.0);
        let over = LevelTargets::from_sizes(&dynamic(), vec![0, 0, 0, 512 * MIB, 500 * MIB, 5000 * MIB, 70000 * MIB]);
        assert_eq!(over.score(3), 2.0);
    }

    #[test]
    fn no_level_below_the_base_targets_less_than_the_base_size() {
        // L6 600 MiB: L5 would target 60 MiB; it targets 256 MiB, so L0's
        // output collects there before it is pushed into L6.
        let t = LevelTargets::from_sizes(&dynamic(), vec![0, 0, 0, 0, 0, 100 * MIB, 600 * MIB]);
        assert_eq!(t.base_level, 5);
        assert_eq!((t.target(5) / MIB, t.target(6) / MIB), (256, 600));
        assert!(t.score(5) < 1.0, "100 MiB in L5 is under its target");
    }

    #[test]
    fn data_above_the_base_level_is_drained_and_l0_may_not_skip_it() {
        // A database written with fixed targets: data in L1 and L2.
        let t = LevelTargets::from_sizes(&dynamic(), vec![0, 200 * MIB, 1000 * MIB, 0, 0, 0, 0]);
        assert_eq!(t.base_level, 5, "the largest level, 1000 MiB, is taken as the last level's size: L5 100 MiB");
        assert_eq!(t.l0_output(), 1, "L0 goes to L1, the first level holding data, not past it");
        assert!(t.score(1) >= 1.0 && t.score(2) >= 1.0, "both are drained");
        assert_eq!(t.score(3), 0.0);
    }

    use super::{overlapping_ratios, LevelTargets, Options, VersionFilter};

    #[test]
    fn overlapping_ratio_counts_each_next_level_file_a_range_touches() {
        let files: [(&[u8], &[u8], u64); 4] =
            [(b"a0", b"a9", 100), (b"c0", b"c9", 100), (b"e0", b"e9", 50), (b"g0", b"g9", 0)];
        let next: [(&[u8], &[u8], u64); 4] =
            [(b"a0", b"a4", 300), (b"a8", b"c2", 100), (b"c5", b"c7", 50), (b"f0", b"f9", 1000)];
        // "a8".."c2" straddles the first two files and counts for both; the
        // third file overlaps nothing; an empty file is divided by 1 byte.
        assert_eq!(overlapping_ratios(&files, &next), [4 * 1024, 3 * 512, 0, 0]);
        assert_eq!(overlapping_ratios(&files, &[]), [0, 0, 0, 0]);
        assert_eq!(overlapping_ratios(&[], &next), Vec::<u64>::new());
        let wide: [(&[u8], &[u8], u64); 1] = [(b"a", b"z", 1)];
        assert_eq!(overlapping_ratios(&wide, &next), [1450 * 1024]);
    }

    #[test]
    fn keeps_only_newest_per_stripe() {
        // Snapshots at 10 and 20; versions of one key at 25, 22, 15, 12, 5.
        let snaps = [10, 20];
        let mut f = VersionFilter::new(&snaps, false, u64::MAX);
        let kept: Vec<u64> = [25, 22, 15, 12, 5].into_iter().filter(|&s| f.keep(b"k", s, false)).collect();
        assert_eq!(kept, vec![25, 15, 5]);
    }

    #[test]
    fn bottommost_tombstone_dropped_only_when_no_snapshot_needs_it() {
        let mut f = VersionFilter::new(&[], true, u64::MAX);
        assert!(!f.keep(b"k", 9, true), "tombstone with no snapshots is dropped");
        assert!(!f.keep(b"k", 3, false), "and so is what it hides");
        let snaps = [5];
        let mut f = VersionFilter::new(&snaps, true, u64::MAX);
        assert!(f.keep(b"k", 9, true), "a snapshot at 5 still sees the put at 3, so the tombstone stays");
        assert!(f.keep(b"k", 3, false));
        let mut f = VersionFilter::new(&snaps, false, u64::MAX);
        assert!(f.keep(b"j", 2, true), "not bottommost: tombstones stay");
    }

    #[test]
    fn versions_above_the_floor_are_all_kept() {
        let snaps = [10];
        let mut f = VersionFilter::new(&snaps, true, 10);
        let kept: Vec<u64> = [14, 12, 9, 7].into_iter().filter(|&s| f.keep(b"k", s, false)).collect();
        assert_eq!(kept, vec![14, 12, 9]);
    }
}
