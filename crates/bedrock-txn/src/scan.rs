//! Merging a stored range with a transaction's buffered writes.

use std::collections::BTreeMap;
use std::ops::Bound;

use bedrock_lsm::DbIterator;

use crate::Result;

/// Key-value rows, ascending by key.
pub(crate) type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// The result of [`merge`].
pub(crate) struct Merged {
    pub(crate) rows: Rows,
    /// End of the range actually read: with a limit that was reached, just
    /// past the last row returned, since nothing after it was read.
    pub(crate) covered_end: Option<Vec<u8>>,
}

/// Rows of `[start, end)` from `stored` overlaid with `writes` (a buffered
/// put replaces or adds a row, a buffered delete hides it), ascending, at
/// most `limit` (0 = no limit).
pub(crate) fn merge(
    mut stored: DbIterator,
    writes: &BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Merged> {
    let limit = if limit == 0 { usize::MAX } else { limit };
    let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
    let mut own = writes.range::<[u8], _>((Bound::Included(start), upper)).peekable();
    let mut next_stored = stored.next().transpose()?;
    let mut out = Vec::new();
    while out.len() < limit {
        let take_own = match (&next_stored, own.peek()) {
            (None, None) => break,
            (Some((s, _)), Some((o, _))) => o.as_slice() <= s.as_slice(),
            (None, Some(_)) => true,
            (Some(_), None) => false,
        };
        if take_own {
            let Some((k, v)) = own.next() else { break };
            if next_stored.as_ref().is_some_and(|(s, _)| s == k) {
                next_stored = stored.next().transpose()?;
            }
            if let Some(v) = v {
                out.push((k.clone(), v.clone()));
            }
        } else if let Some(kv) = next_stored.take() {
            out.push(kv);
            next_stored = stored.next().transpose()?;
        }
    }
    let covered_end = match out.last() {
        Some((k, _)) if out.len() == limit => {
            let mut after = k.clone();
            after.push(0);
            Some(after)
        }
        _ => end.map(<[u8]>::to_vec),
    };
    Ok(Merged { rows: out, covered_end })
}
