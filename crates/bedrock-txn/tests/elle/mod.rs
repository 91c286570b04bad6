//! An Elle-style serializability checker for list-append histories
//! (Kingsbury & Alvaro, "Elle: Inferring Isolation Anomalies from
//! Experimental Observations", VLDB 2020).
//!
//! Each key holds a list; a transaction appends unique elements to lists
//! and reads whole lists. Because every append is unique and a read
//! returns the whole list, a read reveals the order of every append it
//! contains, so the checker can *infer* the version order of each key
//! (the longest list read; every other read must be a prefix of it) and
//! from it the dependencies between committed transactions:
//!
//! - **ww**: `T1` appended the element just before one `T2` appended;
//! - **wr**: `T2` read a list whose last element `T1` appended;
//! - **rw** (anti-dependency): `T1` read a list, and `T2` appended the
//!   element that comes right after the end of what `T1` saw.
//!
//! The history is serializable only if this graph has no cycle (Adya's
//! G0, G1c and G2) and none of the non-cycle anomalies below occurs:
//! duplicated or unknown elements, reads of aborted appends (G1a), reads
//! of intermediate states (G1b), reads incompatible with one version
//! order, and transactions inconsistent with themselves.

use std::collections::{HashMap, HashSet};

/// A list's key.
pub type Key = u32;
/// An element appended to a list; unique per key across the history.
pub type Elem = u64;

/// One micro-operation of a transaction, with its observed result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Appended `elem` to the list at `key`.
    Append { key: Key, elem: Elem },
    /// Read the list at `key`.
    Read { key: Key, list: Vec<Elem> },
}

/// How a transaction ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    Aborted,
}

/// A transaction of the history.
#[derive(Debug, Clone)]
pub struct Txn {
    pub ops: Vec<Op>,
    pub outcome: Outcome,
}

/// A dependency between two committed transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dep {
    WW,
    WR,
    RW,
}

/// Why a history is not serializable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    DuplicateElements {
        txn: usize,
        key: Key,
    },
    UnknownElement {
        txn: usize,
        key: Key,
        elem: Elem,
    },
    /// G1a: a committed transaction read an element of an aborted one.
    AbortedRead {
        txn: usize,
        key: Key,
        elem: Elem,
    },
    /// G1b: a read ended at an element that its writer later followed
    /// with another append to the same key.
    IntermediateRead {
        txn: usize,
        key: Key,
        elem: Elem,
    },
    /// Two reads of one key where neither is a prefix of the other: no
    /// single version order explains both (e.g. a lost update).
    IncompatibleOrder {
        key: Key,
        a: Vec<Elem>,
        b: Vec<Elem>,
    },
    /// A transaction's reads disagree with each other or with its own
    /// appends.
    InternalInconsistency {
        txn: usize,
        key: Key,
    },
    /// A dependency cycle among committed transactions, with the kind of
    /// each edge (`deps[i]` goes from `txns[i]` to `txns[i + 1]`, the last
    /// back to `txns[0]`) and Adya's name for it.
    Cycle {
        txns: Vec<usize>,
        deps: Vec<Dep>,
        kind: &'static str,
    },
}

/// What a passing check looked at.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub committed: usize,
    pub ww: usize,
    pub wr: usize,
    pub rw: usize,
}

/// Where each element was appended.
struct Appends {
    /// (key, elem) → (transaction, is that transaction's last append to key).
    by_elem: HashMap<(Key, Elem), (usize, bool)>,
    aborted: HashSet<usize>,
}

impl Appends {
    fn index(history: &[Txn]) -> Result<Appends, Anomaly> {
        let mut by_elem = HashMap::new();
        let mut aborted = HashSet::new();
        for (t, txn) in history.iter().enumerate() {
            if txn.outcome == Outcome::Aborted {
                aborted.insert(t);
            }
            let mut last: HashMap<Key, Elem> = HashMap::new();
            for op in &txn.ops {
                if let Op::Append { key, elem } = *op {
                    if by_elem.insert((key, elem), (t, false)).is_some() {
                        return Err(Anomaly::DuplicateElements { txn: t, key });
                    }
                    last.insert(key, elem);
                }
            }
            for (key, elem) in last {
                by_elem.insert((key, elem), (t, true));
            }
        }
        Ok(Appends { by_elem, aborted })
    }

    fn writer(&self, key: Key, elem: Elem) -> Option<(usize, bool)> {
        self.by_elem.get(&(key, elem)).copied()
    }
}

/// A committed transaction's reads of other transactions' state: its own
/// appends are stripped off the end of each read.
struct ExternalRead {
    txn: usize,
    key: Key,
    list: Vec<Elem>,
}

/// Checks `history`; `Ok` with edge counts if it is serializable.
pub fn check(history: &[Txn]) -> Result<Report, Anomaly> {
    let appends = Appends::index(history)?;
    let reads = external_reads(history, &appends)?;
    let orders = version_orders(&reads)?;
    let edges = dependencies(history, &appends, &reads, &orders);
    let mut report = Report { committed: committed(history).count(), ..Report::default() };
    for deps in edges.values() {
        for dep in deps {
            match dep {
                Dep::WW => report.ww += 1,
                Dep::WR => report.wr += 1,
                Dep::RW => report.rw += 1,
            }
        }
    }
    match find_cycle(history.len(), &edges) {
        Some(anomaly) => Err(anomaly),
        None => Ok(report),
    }
}

/// Committed appends missing from `final_reads` (one list per key read
/// after every transaction ended), and aborted ones present in them.
pub fn lost_or_phantom_appends(history: &[Txn], final_reads: &HashMap<Key, Vec<Elem>>) -> Vec<(Key, Elem)> {
    let seen: HashSet<(Key, Elem)> =
        final_reads.iter().flat_map(|(k, list)| list.iter().map(move |e| (*k, *e))).collect();
    let mut bad = Vec::new();
    for txn in history {
        for op in &txn.ops {
            if let Op::Append { key, elem } = *op {
                if seen.contains(&(key, elem)) != (txn.outcome == Outcome::Committed) {
                    bad.push((key, elem));
                }
            }
        }
    }
    bad
}

fn committed(history: &[Txn]) -> impl Iterator<Item = (usize, &Txn)> {
    history.iter().enumerate().filter(|(_, t)| t.outcome == Outcome::Committed)
}

/// Validates every read of every committed transaction and returns them
/// with the transaction's own appends stripped.
fn external_reads(history: &[Txn], appends: &Appends) -> Result<Vec<ExternalRead>, Anomaly> {
    let mut out = Vec::new();
    for (t, txn) in committed(history) {
        let mut own: HashMap<Key, Vec<Elem>> = HashMap::new();
        let mut seen: HashMap<Key, Vec<Elem>> = HashMap::new();
        for op in &txn.ops {
            match op {
                Op::Append { key, elem } => own.entry(*key).or_default().push(*elem),
                Op::Read { key, list } => {
                    let key = *key;
                    check_elements(t, key, list, appends)?;
                    let mine = own.get(&key).map_or(&[][..], Vec::as_slice);
                    let Some(external) = list.strip_suffix(mine) else {
                        return Err(Anomaly::InternalInconsistency { txn: t, key });
                    };
                    if seen.get(&key).is_some_and(|earlier| earlier.as_slice() != external) {
                        return Err(Anomaly::InternalInconsistency { txn: t, key });
                    }
                    seen.insert(key, external.to_vec());
                    out.push(ExternalRead { txn: t, key, list: external.to_vec() });
                }
            }
        }
    }
    Ok(out)
}

fn check_elements(t: usize, key: Key, list: &[Elem], appends: &Appends) -> Result<(), Anomaly> {
    let mut distinct = HashSet::new();
    for (i, &elem) in list.iter().enumerate() {
        if !distinct.insert(elem) {
            return Err(Anomaly::DuplicateElements { txn: t, key });
        }
        let Some((writer, writers_last)) = appends.writer(key, elem) else {
            return Err(Anomaly::UnknownElement { txn: t, key, elem });
        };
        if appends.aborted.contains(&writer) {
            return Err(Anomaly::AbortedRead { txn: t, key, elem });
        }
        if writer != t && i + 1 == list.len() && !writers_last {
            return Err(Anomaly::IntermediateRead { txn: t, key, elem });
        }
    }
    Ok(())
}

/// The version order of each key: its longest read, of which every other
/// read must be a prefix.
fn version_orders(reads: &[ExternalRead]) -> Result<HashMap<Key, Vec<Elem>>, Anomaly> {
    let mut orders: HashMap<Key, Vec<Elem>> = HashMap::new();
    for r in reads {
        let order = orders.entry(r.key).or_default();
        if r.list.len() > order.len() {
            order.clone_from(&r.list);
        }
    }
    for r in reads {
        let order = &orders[&r.key];
        if !order.starts_with(&r.list) {
            return Err(Anomaly::IncompatibleOrder { key: r.key, a: r.list.clone(), b: order.clone() });
        }
    }
    Ok(orders)
}

type Edges = HashMap<usize, HashMap<usize, HashSet<Dep>>>;

fn dependencies(
    history: &[Txn],
    appends: &Appends,
    reads: &[ExternalRead],
    orders: &HashMap<Key, Vec<Elem>>,
) -> HashMap<(usize, usize), Vec<Dep>> {
    let mut edges: Edges = HashMap::new();
    let mut add = |from: usize, to: usize, dep: Dep| {
        if from != to && history[from].outcome == Outcome::Committed && history[to].outcome == Outcome::Committed {
            edges.entry(from).or_default().entry(to).or_default().insert(dep);
        }
    };
    let writer = |key: Key, elem: Elem| appends.writer(key, elem).map(|(t, _)| t);
    for (&key, order) in orders {
        for pair in order.windows(2) {
            if let (Some(a), Some(b)) = (writer(key, pair[0]), writer(key, pair[1])) {
                add(a, b, Dep::WW);
            }
        }
    }
    for r in reads {
        if let Some(w) = r.list.last().and_then(|&e| writer(r.key, e)) {
            add(w, r.txn, Dep::WR);
        }
        if let Some(w) = orders[&r.key].get(r.list.len()).and_then(|&e| writer(r.key, e)) {
            add(r.txn, w, Dep::RW);
        }
    }
    edges
        .into_iter()
        .flat_map(|(from, tos)| tos.into_iter().map(move |(to, deps)| ((from, to), deps.into_iter().collect())))
        .collect()
}

/// Finds a cycle with an iterative three-colour depth-first search and
/// names it: G0 (only ww), G1c (ww and wr), G-single (one rw), G2 (more).
fn find_cycle(n: usize, edges: &HashMap<(usize, usize), Vec<Dep>>) -> Option<Anomaly> {
    let mut adj: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(from, to) in edges.keys() {
        adj[from].push(to);
    }
    for list in &mut adj {
        list.sort_unstable();
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; n];
    for root in 0..n {
        if colour[root] != Colour::White {
            continue;
        }
        // Stack of (node, next child index); the grey path is the stack.
        let mut stack = vec![(root, 0usize)];
        colour[root] = Colour::Grey;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&child) = adj[node].get(*next) {
                *next += 1;
                match colour[child] {
                    Colour::White => {
                        colour[child] = Colour::Grey;
                        stack.push((child, 0));
                    }
                    Colour::Grey => {
                        let start = stack.iter().position(|(t, _)| *t == child).unwrap_or(0);
                        let txns: Vec<usize> = stack[start..].iter().map(|(t, _)| *t).collect();
                        return Some(name_cycle(txns, edges));
                    }
                    Colour::Black => {}
                }
            } else {
                colour[node] = Colour::Black;
                stack.pop();
            }
        }
    }
    None
}

fn name_cycle(txns: Vec<usize>, edges: &HashMap<(usize, usize), Vec<Dep>>) -> Anomaly {
    let deps: Vec<Dep> = (0..txns.len())
        .map(|i| {
            let options = &edges[&(txns[i], txns[(i + 1) % txns.len()])];
            // Prefer the strongest explanation: ww, then wr, then rw.
            [Dep::WW, Dep::WR, Dep::RW].into_iter().find(|d| options.contains(d)).unwrap_or(Dep::RW)
        })
        .collect();
    let rw = deps.iter().filter(|d| **d == Dep::RW).count();
    let kind = match rw {
        0 if deps.iter().all(|d| *d == Dep::WW) => "G0",
        0 => "G1c",
        1 => "G-single",
        _ => "G2",
    };
    Anomaly::Cycle { txns, deps, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(key: Key, elem: Elem) -> Op {
        Op::Append { key, elem }
    }

    fn read(key: Key, list: &[Elem]) -> Op {
        Op::Read { key, list: list.to_vec() }
    }

    fn ok(ops: Vec<Op>) -> Txn {
        Txn { ops, outcome: Outcome::Committed }
    }

    #[test]
    fn accepts_a_serial_history() {
        let h = vec![
            ok(vec![append(1, 1), read(2, &[])]),
            ok(vec![read(1, &[1]), append(1, 2), read(1, &[1, 2])]),
            Txn { ops: vec![append(1, 3)], outcome: Outcome::Aborted },
            ok(vec![read(1, &[1, 2]), append(2, 4)]),
            ok(vec![read(1, &[1, 2]), read(2, &[4])]),
        ];
        let report = check(&h).unwrap();
        assert_eq!(report.committed, 4);
        assert!(report.ww >= 1 && report.wr >= 3 && report.rw >= 1, "{report:?}");
    }

    /// Write skew: each reads both lists empty and appends to a different
    /// one. T0 rw→ T1 (T0 missed T1's append to 2) and T1 rw→ T0.
    #[test]
    fn rejects_write_skew_as_g2() {
        let h = vec![
            ok(vec![read(1, &[]), read(2, &[]), append(1, 10)]),
            ok(vec![read(1, &[]), read(2, &[]), append(2, 20)]),
            ok(vec![read(1, &[10]), read(2, &[20])]),
        ];
        match check(&h) {
            Err(Anomaly::Cycle { txns, deps, kind }) => {
                assert_eq!(kind, "G2");
                assert_eq!(deps, vec![Dep::RW, Dep::RW]);
                assert_eq!(txns.len(), 2);
            }
            other => panic!("{other:?}"),
        }
    }

    /// Each transaction read the other's append: a wr cycle (G1c).
    #[test]
    fn rejects_circular_information_flow_as_g1c() {
        let h = vec![ok(vec![append(1, 10), read(2, &[20])]), ok(vec![append(2, 20), read(1, &[10])])];
        assert!(matches!(check(&h), Err(Anomaly::Cycle { kind: "G1c", .. })), "{:?}", check(&h));
    }

    /// T1 appends after T0 on key 1 but before T0 on key 2: a ww cycle.
    #[test]
    fn rejects_write_cycles_as_g0() {
        let h = vec![
            ok(vec![append(1, 10), append(2, 21)]),
            ok(vec![append(1, 11), append(2, 20)]),
            ok(vec![read(1, &[10, 11]), read(2, &[20, 21])]),
        ];
        assert!(matches!(check(&h), Err(Anomaly::Cycle { kind: "G0", .. })), "{:?}", check(&h));
    }

    /// A lost update: both appended to the same empty list, and readers
    /// saw each list without the other's element.
    #[test]
    fn rejects_incompatible_orders() {
        let h = vec![
            ok(vec![read(1, &[]), append(1, 10)]),
            ok(vec![read(1, &[]), append(1, 11)]),
            ok(vec![read(1, &[10])]),
            ok(vec![read(1, &[11])]),
        ];
        assert!(matches!(check(&h), Err(Anomaly::IncompatibleOrder { key: 1, .. })), "{:?}", check(&h));
    }

    #[test]
    fn rejects_aborted_intermediate_unknown_and_duplicate_reads() {
        let aborted = vec![Txn { ops: vec![append(1, 10)], outcome: Outcome::Aborted }, ok(vec![read(1, &[10])])];
        assert!(matches!(check(&aborted), Err(Anomaly::AbortedRead { txn: 1, key: 1, elem: 10 })));
        let intermediate = vec![ok(vec![append(1, 10), append(1, 11)]), ok(vec![read(1, &[10])])];
        assert!(matches!(check(&intermediate), Err(Anomaly::IntermediateRead { txn: 1, key: 1, elem: 10 })));
        let unknown = vec![ok(vec![read(1, &[99])])];
        assert!(matches!(check(&unknown), Err(Anomaly::UnknownElement { elem: 99, .. })));
        let duplicate = vec![ok(vec![append(1, 10)]), ok(vec![read(1, &[10, 10])])];
        assert!(matches!(check(&duplicate), Err(Anomaly::DuplicateElements { txn: 1, key: 1 })));
    }

    #[test]
    fn rejects_transactions_inconsistent_with_themselves() {
        let lost_own_write = vec![ok(vec![append(1, 10), read(1, &[])])];
        assert!(matches!(check(&lost_own_write), Err(Anomaly::InternalInconsistency { txn: 0, key: 1 })));
        let h = vec![ok(vec![append(1, 10)]), ok(vec![read(1, &[]), read(1, &[10])])];
        assert!(matches!(check(&h), Err(Anomaly::InternalInconsistency { txn: 1, key: 1 })), "non-repeatable read");
    }

    #[test]
    fn finds_lost_and_phantom_appends_in_the_final_state() {
        let h = vec![ok(vec![append(1, 10)]), Txn { ops: vec![append(1, 11)], outcome: Outcome::Aborted }];
        let good: HashMap<Key, Vec<Elem>> = [(1, vec![10])].into();
        assert!(lost_or_phantom_appends(&h, &good).is_empty());
        let bad: HashMap<Key, Vec<Elem>> = [(1, vec![11])].into();
        assert_eq!(lost_or_phantom_appends(&h, &bad), vec![(1, 10), (1, 11)]);
    }
}
