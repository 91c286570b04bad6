//! The Raft log on `bedrock-wal`: [`LogStore`] implements `raft::Storage`.
//!
//! Every change is a WAL record, so the log survives a crash exactly as far
//! as it was synced; the driver syncs once per `Ready` (all entries and the
//! hard state of that `Ready` share one fsync, and concurrent proposals
//! share the `Ready`). Records (first byte is the tag):
//!
//! - `1` entries: `count: varint | (len: varint | eraftpb.Entry)*`. The first
//!   entry's index says where they go: any entry at or after it is
//!   replaced (a new leader overwriting an uncommitted suffix).
//! - `2` hard state: `eraftpb.HardState` (term, vote, commit).
//! - `3` conf state: `index: u64 | len | eraftpb.ConfState | members`, the
//!   configuration after the change at log index `index`.
//! - `4` snapshot marker: `index: u64 | term: u64`: entries up to `index`
//!   are gone (compacted, or replaced by an installed snapshot).
//!
//! Replaying the records in order rebuilds the state; the live entries are
//! also held in memory (between compactions, at most about
//! `compact_entries` of them plus what is not yet flushed by the LSM).
//! Compaction rolls the WAL to a new segment, writes the marker and the
//! current hard and conf state there, and deletes the segments that hold
//! nothing newer.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bedrock_wal::{FileSystem, LogPosition, Wal, WalOptions};
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::command::{put_slice, put_varint, Reader};
use crate::members::Members;
use crate::{Error, Result};

const TAG_ENTRIES: u8 = 1;
const TAG_HARD_STATE: u8 = 2;
const TAG_CONF_STATE: u8 = 3;
const TAG_SNAPSHOT: u8 = 4;

/// Where `Storage::snapshot` gets snapshots from (the state machine's
/// checkpoints, made in the background).
pub trait SnapshotSource: Send + Sync {
    /// The index of the newest finished checkpoint, or `None` if none is
    /// ready. `min_index` is the lowest index that is still useful; a
    /// source whose checkpoint is older starts a new one.
    fn ready_snapshot(&self, min_index: u64) -> Option<u64>;
}

/// The persisted state of the Raft log.
#[derive(Debug, Default, Clone)]
struct LogState {
    hard_state: HardState,
    conf_state: ConfState,
    /// The log index of the configuration change `conf_state` results from.
    conf_index: u64,
    members: Members,
    /// Past configurations `(index, conf state, members)`, oldest first, to
    /// describe a snapshot taken at an older index.
    conf_history: Vec<(u64, ConfState, Members)>,
    snap_index: u64,
    snap_term: u64,
    entries: VecDeque<Entry>,
    /// During replay: entries up to this index are missing, because
    /// compaction deleted the segment that held them. A snapshot marker at
    /// or past it must follow later in the log (the one that compaction
    /// wrote); if none does, the log is damaged.
    gap: Option<u64>,
}

/// The Raft log storage of one node. Owned by the `RawNode`; the driver
/// mutates it through `RawNode::mut_store`.
pub struct LogStore {
    wal: Wal,
    dir: PathBuf,
    state: LogState,
    /// Segment id -> largest entry index appended in it.
    segment_max: BTreeMap<u64, u64>,
    source: Option<Arc<dyn SnapshotSource>>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("first_index", &self.first())
            .field("last_index", &self.last())
            .field("hard_state", &self.state.hard_state)
            .finish()
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir` and replays it.
    ///
    /// # Errors
    /// [`Error::Wal`] for I/O errors or a damaged record that is not a torn
    /// tail; [`Error::Corruption`] for a record that is not a valid log
    /// record (file and offset named).
    pub fn open(fs: Arc<dyn FileSystem>, dir: &Path, opts: WalOptions) -> Result<LogStore> {
        let mut state = LogState::default();
        let mut segment_max = BTreeMap::new();
        bedrock_wal::replay(&*fs, dir, &opts, 0, |pos, payload| {
            apply_record(&mut state, &mut segment_max, pos, payload).map_err(|reason| Error::Corruption {
                path: bedrock_wal::segment_path(dir, pos.segment),
                offset: pos.offset,
                reason: format!("raft log record ending here: {reason}"),
            })
        })?;
        if let Some(missing) = state.gap {
            return Err(Error::Corruption {
                path: dir.to_path_buf(),
                offset: 0,
                reason: format!(
                    "raft log entries up to index {missing} are missing and no snapshot marker covers them \
                     (a deleted or lost WAL segment)"
                ),
            });
        }
        let wal = Wal::open(fs, dir, opts)?;
        Ok(LogStore { wal, dir: dir.to_path_buf(), state, segment_max, source: None })
    }

    /// Sets where snapshots come from.
    pub fn set_snapshot_source(&mut self, source: Arc<dyn SnapshotSource>) {
        self.source = Some(source);
    }

    /// True if the log holds any state (the node was bootstrapped or has
    /// received a snapshot or entries).
    pub fn is_initialized(&self) -> bool {
        !self.state.conf_state.voters.is_empty() || self.state.snap_index > 0 || !self.state.entries.is_empty()
    }

    /// Writes the initial state of a new cluster member that bootstraps
    /// the cluster: the configuration `conf_state` as if a snapshot at
    /// `index` (term `index`) had been installed, as TiKV does with its
    /// initial log index, so that nodes added later catch up by snapshot.
    ///
    /// # Errors
    /// WAL errors.
    pub fn bootstrap(&mut self, index: u64, conf_state: ConfState, members: Members) -> Result<()> {
        self.apply_snapshot_meta(index, index, conf_state, members)?;
        Ok(())
    }

    /// First index of a live entry.
    pub fn first(&self) -> u64 {
        self.state.snap_index + 1
    }

    /// Index of the last entry (the snapshot index if there is none).
    pub fn last(&self) -> u64 {
        self.state.entries.back().map_or(self.state.snap_index, |e| e.index)
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> &HardState {
        &self.state.hard_state
    }

    /// The current configuration and the index of the change it came from.
    pub fn conf_state(&self) -> (&ConfState, u64) {
        (&self.state.conf_state, self.state.conf_index)
    }

    /// The members with their addresses.
    pub fn members(&self) -> &Members {
        &self.state.members
    }

    /// The configuration and members in force at `index`.
    pub fn conf_at(&self, index: u64) -> (ConfState, Members) {
        self.state
            .conf_history
            .iter()
            .rev()
            .find(|(i, _, _)| *i <= index)
            .map(|(_, cs, m)| (cs.clone(), m.clone()))
            .unwrap_or_else(|| (self.state.conf_state.clone(), self.state.members.clone()))
    }

    /// Appends (or overwrites from `entries[0].index`) entries; returns the
    /// position to sync. Nothing is durable until [`LogStore::sync`].
    ///
    /// # Errors
    /// WAL errors (the log is then poisoned).
    pub fn append(&mut self, entries: &[Entry]) -> Result<Option<LogPosition>> {
        if entries.is_empty() {
            return Ok(None);
        }
        let mut payload = vec![TAG_ENTRIES];
        put_varint(&mut payload, entries.len() as u64);
        for e in entries {
            let bytes = e.write_to_bytes().map_err(|e| Error::Transport(e.to_string()))?;
            put_slice(&mut payload, &bytes);
        }
        let pos = self.wal.append(&payload)?;
        let max = entries.last().map_or(0, |e| e.index);
        let m = self.segment_max.entry(pos.segment).or_insert(0);
        *m = (*m).max(max);
        append_entries(&mut self.state, entries.to_vec());
        Ok(Some(pos))
    }

    /// Records a new hard state; returns the position to sync.
    ///
    /// # Errors
    /// WAL errors.
    pub fn set_hard_state(&mut self, hs: HardState) -> Result<LogPosition> {
        let mut payload = vec![TAG_HARD_STATE];
        payload.extend(hs.write_to_bytes().map_err(|e| Error::Transport(e.to_string()))?);
        let pos = self.wal.append(&payload)?;
        self.state.hard_state = hs;
        Ok(pos)
    }

    /// Records the configuration after the change at `index` (durably: the
    /// conf state must be persisted with each change).
    ///
    /// # Errors
    /// WAL errors.
    pub fn set_conf_state(&mut self, index: u64, cs: ConfState, members: Members) -> Result<()> {
        let pos = self.wal.append(&conf_record(index, &cs, &members)?)?;
        record_conf(&mut self.state, index, cs, members);
        self.wal.commit(pos)?;
        Ok(())
    }

    /// Waits until everything up to `pos` is durable.
    ///
    /// # Errors
    /// WAL errors (the log is then poisoned: no retry of a failed fsync).
    pub fn sync(&self, pos: LogPosition) -> Result<()> {
        self.wal.commit(pos)?;
        Ok(())
    }

    /// Replaces the log by an installed snapshot at (`index`, `term`) with
    /// its configuration; durable on return.
    ///
    /// # Errors
    /// WAL errors.
    pub fn apply_snapshot_meta(&mut self, index: u64, term: u64, cs: ConfState, members: Members) -> Result<()> {
        let mut hs = self.state.hard_state.clone();
        hs.term = hs.term.max(term);
        hs.commit = hs.commit.max(index);
        self.write_checkpoint(index, term, Some((cs, members)), hs)?;
        self.state.entries.clear();
        Ok(())
    }

    /// Drops entries up to `index` (which the state machine has made
    /// durable) and deletes WAL segments holding nothing newer.
    ///
    /// # Errors
    /// WAL errors; [`Error::InvalidArgument`] if `index` is past the last
    /// entry.
    pub fn compact(&mut self, index: u64) -> Result<()> {
        if index <= self.state.snap_index {
            return Ok(());
        }
        if index > self.last() {
            return Err(Error::InvalidArgument(format!("compact to {index} past last index {}", self.last())));
        }
        let term = self.term_of(index).ok_or_else(|| Error::InvalidArgument(format!("no term for {index}")))?;
        let hs = self.state.hard_state.clone();
        let first_live_segment = self.write_checkpoint(index, term, None, hs)?;
        // Segments before `keep` hold only entries <= index and older state.
        let keep = self
            .segment_max
            .iter()
            .find(|(_, &max)| max > index)
            .map_or(first_live_segment, |(&seg, _)| seg.min(first_live_segment));
        let removed = self.wal.purge_before(keep)?;
        self.segment_max.retain(|&seg, _| seg >= keep);
        tracing::debug!(index, removed_segments = removed, "raft log compacted");
        Ok(())
    }

    /// Rolls to a new segment and writes the snapshot marker, the hard
    /// state and the conf state there (durably), so older segments can go.
    /// Returns the new segment.
    fn write_checkpoint(
        &mut self,
        index: u64,
        term: u64,
        conf: Option<(ConfState, Members)>,
        hs: HardState,
    ) -> Result<u64> {
        let segment = self.wal.roll()?;
        let mut marker = vec![TAG_SNAPSHOT];
        marker.extend_from_slice(&index.to_le_bytes());
        marker.extend_from_slice(&term.to_le_bytes());
        self.wal.append(&marker)?;
        apply_marker(&mut self.state, index, term);
        let (conf_index, cs, members) = match conf {
            Some((cs, m)) => (index, cs, m),
            None => (self.state.conf_index, self.state.conf_state.clone(), self.state.members.clone()),
        };
        self.wal.append(&conf_record(conf_index, &cs, &members)?)?;
        record_conf(&mut self.state, conf_index, cs, members);
        let pos = self.set_hard_state(hs)?;
        self.wal.commit(pos)?;
        Ok(segment)
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.state.snap_index {
            return Some(self.state.snap_term);
        }
        let first = self.state.entries.front()?.index;
        if idx < first {
            return None;
        }
        self.state.entries.get((idx - first) as usize).map(|e| e.term)
    }

    /// Number of live entries held in memory.
    pub fn len(&self) -> usize {
        self.state.entries.len()
    }

    /// True if no entries are held.
    pub fn is_empty(&self) -> bool {
        self.state.entries.is_empty()
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.state.hard_state.clone(), self.state.conf_state.clone()))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.state.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let first = self.first();
        let mut out: Vec<Entry> =
            self.state.entries.range((low - first) as usize..(high - first) as usize).cloned().collect();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.state.snap_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last() {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let unavailable = || raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable);
        let source = self.source.as_ref().ok_or_else(unavailable)?;
        // The follower needs the entries after the snapshot from our log,
        // and a new member must find itself in the snapshot's configuration
        // (raft-rs refuses a snapshot whose conf state lacks the receiver).
        let min_index = request_index.max(self.state.snap_index).max(self.state.conf_index);
        let index = source.ready_snapshot(min_index).ok_or_else(unavailable)?;
        let term = self.term_of(index).ok_or_else(unavailable)?;
        let (cs, members) = self.conf_at(index);
        let mut snap = Snapshot { data: members.to_bytes().into(), ..Default::default() };
        let meta = snap.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(cs);
        Ok(snap)
    }
}

fn conf_record(index: u64, cs: &ConfState, members: &Members) -> Result<Vec<u8>> {
    let mut payload = vec![TAG_CONF_STATE];
    payload.extend_from_slice(&index.to_le_bytes());
    put_slice(&mut payload, &cs.write_to_bytes().map_err(|e| Error::Transport(e.to_string()))?);
    members.encode_to(&mut payload);
    Ok(payload)
}

fn record_conf(state: &mut LogState, index: u64, cs: ConfState, members: Members) {
    state.conf_history.retain(|(i, _, _)| *i < index);
    state.conf_history.push((index, cs.clone(), members.clone()));
    // Keep the history short: a snapshot is never older than the log start.
    while state.conf_history.len() > 2 && state.conf_history[1].0 <= state.snap_index {
        state.conf_history.remove(0);
    }
    state.conf_state = cs;
    state.conf_index = index;
    state.members = members;
}

fn append_entries(state: &mut LogState, entries: Vec<Entry>) {
    let Some(first_new) = entries.first().map(|e| e.index) else { return };
    let first = state.snap_index + 1;
    if first_new < first {
        // Only entries after the snapshot are kept.
        let skip = (first - first_new) as usize;
        state.entries.truncate(0);
        state.entries.extend(entries.into_iter().skip(skip));
        return;
    }
    let last = state.entries.back().map_or(state.snap_index, |e| e.index);
    if first_new > last + 1 {
        // Only in replay: compaction deleted the segment holding the
        // entries before these, and the marker it wrote comes later.
        state.entries.clear();
        state.snap_index = first_new - 1;
        state.snap_term = 0;
        state.gap = Some(first_new - 1);
        state.entries.extend(entries);
        return;
    }
    state.entries.truncate((first_new - first) as usize);
    state.entries.extend(entries);
}

fn apply_marker(state: &mut LogState, index: u64, term: u64) {
    if index >= state.snap_index {
        let drop = state.entries.iter().take_while(|e| e.index <= index).count();
        state.entries.drain(..drop);
        if state.entries.front().is_some_and(|e| e.index != index + 1) {
            state.entries.clear();
        }
        state.snap_index = index;
        state.snap_term = term;
        if state.gap.is_some_and(|missing| index >= missing) {
            state.gap = None;
        }
    }
}

fn apply_record(
    state: &mut LogState,
    segment_max: &mut BTreeMap<u64, u64>,
    pos: LogPosition,
    payload: &[u8],
) -> std::result::Result<(), String> {
    let mut r = Reader { data: payload };
    match r.u8()? {
        TAG_ENTRIES => {
            let n = r.varint()?;
            let mut entries = Vec::with_capacity(n.min(4096) as usize);
            for _ in 0..n {
                entries.push(Entry::parse_from_bytes(r.slice()?).map_err(|e| e.to_string())?);
            }
            if let Some(last) = entries.last() {
                let m = segment_max.entry(pos.segment).or_insert(0);
                *m = (*m).max(last.index);
            }
            append_entries(state, entries);
        }
        TAG_HARD_STATE => state.hard_state = HardState::parse_from_bytes(r.data).map_err(|e| e.to_string())?,
        TAG_CONF_STATE => {
            let index = r.u64()?;
            let cs = ConfState::parse_from_bytes(r.slice()?).map_err(|e| e.to_string())?;
            let members = Members::decode_from(&mut r)?;
            record_conf(state, index, cs, members);
        }
        TAG_SNAPSHOT => {
            let index = r.u64()?;
            let term = r.u64()?;
            apply_marker(state, index, term);
        }
        t => return Err(format!("unknown record tag {t}")),
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::field_reassign_with_default)]
mod tests {
    use super::*;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        e.index = index;
        e.term = term;
        e.data = format!("e{index}").into_bytes().into();
        e
    }

    fn small_wal() -> WalOptions {
        WalOptions { segment_size_bytes: 4096, preallocate: false, ..WalOptions::default() }
    }

    fn open(dir: &Path) -> LogStore {
        LogStore::open(bedrock_wal::RealFs::shared(), dir, small_wal()).unwrap()
    }

    #[test]
    fn recovers_entries_hard_state_and_conf_state_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            assert!(!s.is_initialized());
            let mut cs = ConfState::default();
            cs.voters = vec![1, 2, 3];
            s.bootstrap(5, cs, Members::default()).unwrap();
            let pos = s.append(&(6..=10).map(|i| entry(i, 6)).collect::<Vec<_>>()).unwrap().unwrap();
            s.sync(pos).unwrap();
            // A new leader overwrites 9 and 10.
            s.append(&[entry(9, 7)]).unwrap();
            let mut hs = HardState::default();
            hs.term = 7;
            hs.vote = 2;
            hs.commit = 8;
            let pos = s.set_hard_state(hs).unwrap();
            s.sync(pos).unwrap();
        }
        let s = open(dir.path());
        assert!(s.is_initialized());
        assert_eq!((s.first(), s.last()), (6, 9));
        assert_eq!(s.term(5).unwrap(), 5);
        assert_eq!(s.term(9).unwrap(), 7);
        assert_eq!(s.term(8).unwrap(), 6);
        let st = s.initial_state().unwrap();
        assert_eq!((st.hard_state.term, st.hard_state.vote, st.hard_state.commit), (7, 2, 8));
        assert_eq!(st.conf_state.voters, vec![1, 2, 3]);
        let got = s.entries(6, 10, None, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(got.iter().map(|e| (e.index, e.term)).collect::<Vec<_>>(), vec![(6, 6), (7, 6), (8, 6), (9, 7)]);
        assert!(matches!(
            s.entries(5, 7, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
    }

    #[test]
    fn compaction_deletes_old_segments_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = open(dir.path());
            let mut cs = ConfState::default();
            cs.voters = vec![1];
            s.bootstrap(5, cs, Members::default()).unwrap();
            for i in 6..=400 {
                let pos = s.append(&[entry(i, 6)]).unwrap().unwrap();
                s.sync(pos).unwrap();
            }
            let before = s.wal.segments().unwrap().len();
            assert!(before > 3, "{before} segments");
            s.compact(390).unwrap();
            let after = s.wal.segments().unwrap().len();
            assert!(after < before, "{after} >= {before}");
            assert_eq!((s.first(), s.last()), (391, 400));
        }
        let s = open(dir.path());
        assert_eq!((s.first(), s.last()), (391, 400));
        assert_eq!(s.term(390).unwrap(), 6);
        assert_eq!(s.initial_state().unwrap().conf_state.voters, vec![1]);
    }

    /// Found by the deterministic simulation: compaction deleted a segment
    /// whose entries an older marker (in the next segment) was followed
    /// by, so replay met entries after a hole before reaching the newer
    /// marker that covers it.
    #[test]
    fn replay_survives_a_deleted_segment_behind_an_older_marker() {
        let dir = tempfile::tempdir().unwrap();
        let append = |s: &mut LogStore, range: std::ops::RangeInclusive<u64>| {
            for i in range {
                let pos = s.append(&[entry(i, 6)]).unwrap().unwrap();
                s.sync(pos).unwrap();
            }
        };
        {
            let mut s = open(dir.path());
            let mut cs = ConfState::default();
            cs.voters = vec![1];
            s.bootstrap(5, cs, Members::default()).unwrap();
            append(&mut s, 6..=52);
            s.compact(44).unwrap(); // New segment: marker 44, needs 45..52 from before it.
            append(&mut s, 53..=71);
            s.compact(49).unwrap();
            append(&mut s, 72..=76);
            s.compact(68).unwrap(); // Deletes the segment with 45..52.
            assert_eq!((s.first(), s.last()), (69, 76));
        }
        let s = open(dir.path());
        assert_eq!((s.first(), s.last()), (69, 76));
        let got: Vec<u64> =
            s.entries(69, 77, None, GetEntriesContext::empty(false)).unwrap().iter().map(|e| e.index).collect();
        assert_eq!(got, (69..=76).collect::<Vec<_>>());
        assert_eq!(s.term(68).unwrap(), 6);
    }

    #[test]
    fn a_hole_no_marker_covers_is_corruption() {
        let mut state = LogState::default();
        append_entries(&mut state, vec![entry(1, 1), entry(2, 1)]);
        append_entries(&mut state, vec![entry(5, 1)]);
        assert_eq!(state.gap, Some(4));
        apply_marker(&mut state, 3, 1);
        assert_eq!(state.gap, Some(4), "a marker before the hole does not cover it");
        apply_marker(&mut state, 4, 1);
        assert_eq!((state.gap, state.entries.front().map(|e| e.index)), (None, Some(5)));
    }
}
