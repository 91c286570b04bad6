//! Compare-and-swap transactions (etcd's `Txn`) on top of
//! `bedrock_txn::Transaction`: the protocol-neutral request and response
//! types shared by the gRPC and HTTP front ends, and their execution.
//!
//! A transaction reads every compared key through one optimistic
//! `bedrock_txn::Transaction`, runs the `success` or `failure` branch in it
//! and commits. The compared keys are in the transaction's read set, so a
//! concurrent write to one of them makes the commit fail with `Conflict`; a
//! conflicting commit applies nothing, so `Db::transaction` retries the
//! whole thing from the comparisons, with backoff, up to
//! `bedrock_txn::MAX_TRANSACTION_ATTEMPTS` times before the conflict reaches
//! the client.

use std::cmp::Ordering;

use bedrock_txn::{Db, Transaction};

use crate::error::ApiError;
use crate::store::Limits;

/// A transaction: if every comparison holds run `success`, else `failure`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// Conditions that must all hold for `success` to run.
    pub compare: Vec<Compare>,
    /// Operations run when every comparison holds.
    pub success: Vec<Op>,
    /// Operations run when any comparison fails.
    pub failure: Vec<Op>,
}

/// One condition on the current state of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compare {
    /// The key inspected.
    pub key: Vec<u8>,
    /// The operator.
    pub result: CompareResult,
    /// What is compared, with the expected state.
    pub target: CompareTarget,
}

/// The comparison operator of a [`Compare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareResult {
    /// Current equals expected.
    Equal,
    /// Current differs from expected.
    NotEqual,
    /// Current is bytewise greater than expected (values only).
    Greater,
    /// Current is bytewise less than expected (values only).
    Less,
}

/// What a [`Compare`] looks at, with the expected state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompareTarget {
    /// The value of the key. A missing key makes the comparison false.
    Value(Vec<u8>),
    /// Whether the key exists (only `Equal` and `NotEqual` are valid).
    Exists(bool),
}

/// One operation of a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Write `value` under `key`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Delete `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// Read `key` (sees earlier writes of the same branch).
    Get {
        /// The key.
        key: Vec<u8>,
    },
}

/// The result of one [`Op`], in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    /// The put was applied (at the transaction's revision).
    Put,
    /// The delete was applied (at the transaction's revision).
    Delete,
    /// The value read, `None` if the key does not exist.
    Get {
        /// The key read.
        key: Vec<u8>,
        /// Its value.
        value: Option<Vec<u8>>,
    },
}

/// The outcome of a committed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every comparison held (so `success` ran).
    pub succeeded: bool,
    /// One result per operation of the branch that ran.
    pub responses: Vec<OpResult>,
    /// Commit revision (the snapshot's revision if nothing was written).
    pub revision: u64,
}

impl Op {
    fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } | Op::Get { key } => key,
        }
    }
}

impl TxnRequest {
    /// Checks everything that can be checked without reading the store:
    /// key sizes and operator/target combinations. Value sizes are checked
    /// by the storage layer.
    pub fn validate(&self, limits: &Limits) -> Result<(), ApiError> {
        for cmp in &self.compare {
            limits.check_key(&cmp.key)?;
            if matches!(cmp.target, CompareTarget::Exists(_))
                && matches!(cmp.result, CompareResult::Greater | CompareResult::Less)
            {
                return Err(ApiError::invalid("compare on EXISTS supports only EQUAL and NOT_EQUAL"));
            }
        }
        for op in self.success.iter().chain(&self.failure) {
            limits.check_key(op.key())?;
        }
        Ok(())
    }
}

impl Compare {
    /// Evaluates the comparison against the current value (`None`: missing).
    pub fn holds(&self, current: Option<&[u8]>) -> bool {
        let ordering = match (&self.target, current) {
            (CompareTarget::Value(_), None) => return false,
            (CompareTarget::Value(expected), Some(cur)) => cur.cmp(expected.as_slice()),
            (CompareTarget::Exists(expected), cur) => cur.is_some().cmp(expected),
        };
        match self.result {
            CompareResult::Equal => ordering == Ordering::Equal,
            CompareResult::NotEqual => ordering != Ordering::Equal,
            CompareResult::Greater => ordering == Ordering::Greater,
            CompareResult::Less => ordering == Ordering::Less,
        }
    }
}

/// Runs `req` against `db`, retrying on `Conflict` (blocking: call it from
/// `spawn_blocking`). `req` should have passed [`TxnRequest::validate`].
pub fn execute(db: &Db, req: &TxnRequest) -> Result<TxnResponse, ApiError> {
    let ((succeeded, responses), revision) = db.transaction(|txn| run_branch(txn, req))?;
    Ok(TxnResponse { succeeded, responses, revision })
}

/// Cluster mode: evaluates `req` against one snapshot of `db` and returns
/// the command to replicate (`None` if the chosen branch writes nothing)
/// with the response it will give once committed. The command carries
/// every key read (compared or fetched) as observed at the snapshot, so
/// each replica validates it at apply time: if any of them changed since,
/// the entry applies nothing and the caller retries from a new snapshot.
pub fn prepare(db: &Db, req: &TxnRequest) -> Result<(Option<bedrock_raft::command::Command>, TxnResponse), ApiError> {
    use std::collections::BTreeMap;
    let snapshot = db.begin_read_only();
    let seq = snapshot.snapshot_seq();
    let mut reads = bedrock_txn::ReadSet::default();
    let mut overlay: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
    let mut read = |key: &[u8], overlay: &BTreeMap<Vec<u8>, Option<Vec<u8>>>| -> Result<Option<Vec<u8>>, ApiError> {
        if let Some(v) = overlay.get(key) {
            return Ok(v.clone());
        }
        reads.record_key(key, seq);
        Ok(snapshot.get(key)?)
    };
    let mut succeeded = true;
    for cmp in &req.compare {
        let current = read(&cmp.key, &overlay)?;
        if !cmp.holds(current.as_deref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &req.success } else { &req.failure };
    let mut writes = bedrock_txn::WriteBatch::new();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            Op::Put { key, value } => {
                writes.put(key, value);
                overlay.insert(key.clone(), Some(value.clone()));
                OpResult::Put
            }
            Op::Delete { key } => {
                writes.delete(key);
                overlay.insert(key.clone(), None);
                OpResult::Delete
            }
            Op::Get { key } => OpResult::Get { key: key.clone(), value: read(key, &overlay)? },
        });
    }
    let response = TxnResponse { succeeded, responses, revision: seq };
    if writes.is_empty() {
        return Ok((None, response));
    }
    Ok((Some(bedrock_raft::command::Command::Txn { reads, writes }), response))
}

/// Evaluates the comparisons and applies the chosen branch inside `txn`.
fn run_branch(txn: &mut Transaction, req: &TxnRequest) -> bedrock_txn::Result<(bool, Vec<OpResult>)> {
    let mut succeeded = true;
    for cmp in &req.compare {
        let current = txn.get(&cmp.key)?;
        if !cmp.holds(current.as_deref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &req.success } else { &req.failure };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            Op::Put { key, value } => txn.put(key, value).map(|()| OpResult::Put)?,
            Op::Delete { key } => txn.delete(key).map(|()| OpResult::Delete)?,
            Op::Get { key } => OpResult::Get { key: key.clone(), value: txn.get(key)? },
        });
    }
    Ok((succeeded, responses))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(result: CompareResult, target: CompareTarget) -> Compare {
        Compare { key: b"k".to_vec(), result, target }
    }

    #[test]
    fn value_comparisons() {
        use CompareResult::*;
        let v = |s: &str| CompareTarget::Value(s.as_bytes().to_vec());
        assert!(cmp(Equal, v("b")).holds(Some(b"b")));
        assert!(!cmp(Equal, v("b")).holds(Some(b"c")));
        assert!(cmp(NotEqual, v("b")).holds(Some(b"c")));
        assert!(cmp(Greater, v("b")).holds(Some(b"c")));
        assert!(!cmp(Greater, v("b")).holds(Some(b"a")));
        assert!(cmp(Less, v("b")).holds(Some(b"a")));
        assert!(cmp(Greater, v("b")).holds(Some(b"ba")));
        // A missing key fails every value comparison, NOT_EQUAL included.
        for op in [Equal, NotEqual, Greater, Less] {
            assert!(!cmp(op, v("b")).holds(None), "{op:?}");
        }
    }

    #[test]
    fn exists_comparisons() {
        use CompareResult::*;
        assert!(cmp(Equal, CompareTarget::Exists(true)).holds(Some(b"")));
        assert!(!cmp(Equal, CompareTarget::Exists(true)).holds(None));
        assert!(cmp(Equal, CompareTarget::Exists(false)).holds(None));
        assert!(cmp(NotEqual, CompareTarget::Exists(false)).holds(Some(b"x")));
    }

    #[test]
    fn validate_rejects_bad_requests() {
        let limits = Limits { max_key_bytes: 4 };
        let ok = TxnRequest {
            compare: vec![cmp(CompareResult::Equal, CompareTarget::Exists(true))],
            success: vec![Op::Put { key: b"k".to_vec(), value: vec![] }],
            failure: vec![Op::Get { key: b"k".to_vec() }],
        };
        assert_eq!(ok.validate(&limits), Ok(()));

        let mut ordered_exists = ok.clone();
        ordered_exists.compare[0].result = CompareResult::Greater;
        assert!(ordered_exists.validate(&limits).is_err());

        let mut empty_key = ok.clone();
        empty_key.failure.push(Op::Delete { key: vec![] });
        assert!(empty_key.validate(&limits).is_err());

        let mut long_key = ok;
        long_key.success.push(Op::Get { key: b"12345".to_vec() });
        assert!(long_key.validate(&limits).is_err());
    }
}
