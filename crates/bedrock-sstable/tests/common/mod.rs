//! Helpers shared by the integration tests: a model of a table's contents
//! and functions to build and open tables on a `FaultFs`.

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bedrock_sstable::{encode_internal_key, Table, TableBuilder, TableOptions, TableSummary, ValueKind};
use bedrock_wal::{FaultFs, FileBytes, FileSystem};

/// What a table should hold: (user key, Reverse(seq)) -> (kind, value),
/// which iterates in internal-key order.
pub type Model = BTreeMap<(Vec<u8>, Reverse<u64>), (ValueKind, Vec<u8>)>;

pub fn ikey(user_key: &[u8], seq: u64, kind: ValueKind) -> Vec<u8> {
    let mut out = Vec::new();
    encode_internal_key(user_key, seq, kind, &mut out);
    out
}

/// The model's entries as (internal key, value), in order.
pub fn entries(model: &Model) -> Entries {
    model.iter().map(|((k, Reverse(s)), (kind, v))| (ikey(k, *s, *kind), v.clone())).collect()
}

/// What `Table::get(user_key, seq)` must return.
pub fn model_get(model: &Model, user_key: &[u8], seq: u64) -> Option<(u64, ValueKind, Vec<u8>)> {
    let from = (user_key.to_vec(), Reverse(seq));
    let ((k, Reverse(s)), (kind, v)) = model.range(from..).next()?;
    (k == user_key).then(|| (*s, *kind, v.clone()))
}

/// Writes the model's entries to `path` on `fs`.
pub fn write_table(fs: &dyn FileSystem, path: &Path, model: &Model, opts: TableOptions) -> TableSummary {
    let mut b = TableBuilder::new(fs.create(path).unwrap(), path.to_path_buf(), opts);
    for (k, v) in entries(model) {
        b.add(&k, &v).unwrap();
    }
    b.finish().unwrap()
}

/// Builds a table from `model` in memory and returns its bytes.
pub fn table_bytes(model: &Model, opts: TableOptions) -> Vec<u8> {
    let fs = FaultFs::new();
    let path = PathBuf::from("t.sst");
    write_table(&fs, &path, model, opts);
    fs.contents(&path).unwrap()
}

pub fn open_bytes(bytes: Vec<u8>) -> bedrock_sstable::Result<Arc<Table>> {
    Table::open(FileBytes::from_vec(bytes), PathBuf::from("t.sst")).map(Arc::new)
}

/// (internal key, value) pairs in order.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every (internal key, value) of a full scan, and the final status.
pub fn scan(table: &Arc<Table>) -> (Entries, bedrock_sstable::Result<()>) {
    let mut it = table.iter();
    it.seek_to_first();
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    (out, it.status())
}

/// A small model with several versions per key, tombstones and empty
/// values.
pub fn small_model() -> Model {
    let mut m = Model::new();
    for i in 0..30u64 {
        let key = format!("user-{:03}", i * 7).into_bytes();
        for v in 0..(i % 3 + 1) {
            let seq = 100 - i - v * 31;
            let kind = if (i + v) % 5 == 0 { ValueKind::Delete } else { ValueKind::Put };
            let value = if kind == ValueKind::Delete { Vec::new() } else { format!("value-{i}-{v}").into_bytes() };
            m.insert((key.clone(), Reverse(seq)), (kind, value));
        }
    }
    m
}
