//! Tables written and read through both file systems: `RealFs` in a temp
//! directory (read back through an mmap) and `FaultFs` (in memory, with
//! crashes), plus larger tables, the bloom filter through `Table`, and
//! concurrent readers.

mod common;

use std::cmp::Reverse;
use std::path::PathBuf;
use std::sync::Arc;

use bedrock_sstable::{Table, TableOptions, ValueKind};
use bedrock_wal::{FaultFs, FileSystem, RealFs};
use common::*;

/// A model of `n` keys with values of `value_len` bytes, one version each.
fn big_model(n: u64, value_len: usize) -> Model {
    (0..n)
        .map(|i| {
            let key = format!("key-{:08}", i * 3).into_bytes();
            let value = vec![(i % 251) as u8; value_len];
            ((key, Reverse(i + 1)), (ValueKind::Put, value))
        })
        .collect()
}

fn check_table(table: &Arc<Table>, model: &Model) {
    assert_eq!(table.entries(), model.len() as u64);
    let (got, status) = scan(table);
    status.unwrap();
    assert_eq!(got, entries(model));
    for ((k, Reverse(s)), (kind, v)) in model.iter().step_by(97) {
        assert_eq!(table.get(k, u64::MAX).unwrap(), Some((*s, *kind, v.clone())));
        assert_eq!(table.get(k, s - 1).unwrap(), None);
    }
    assert_eq!(table.verify().unwrap(), model.len() as u64);
}

#[test]
fn real_fs_table_reads_back_through_mmap() {
    let dir = tempfile::tempdir().unwrap();
    let fs = RealFs;
    let path = dir.path().join("000001.sst");
    let model = big_model(20_000, 100);
    let summary = write_table(&fs, &path, &model, TableOptions::default());
    fs.sync_dir(dir.path()).unwrap();
    assert_eq!(summary.file_size, std::fs::metadata(&path).unwrap().len());

    let file = fs.open(&path).unwrap();
    let table = Arc::new(Table::open(file.map().unwrap(), path.clone()).unwrap());
    drop(file); // the mapping outlives the descriptor
    assert_eq!(table.path(), path);
    assert_eq!(table.file_size(), summary.file_size);
    check_table(&table, &model);
    assert!(table.stats().block_reads > 0);
}

#[test]
fn real_fs_damaged_file_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("000002.sst");
    let model = big_model(1000, 10);
    write_table(&RealFs, &path, &model, TableOptions::default());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let table = Arc::new(Table::open(RealFs.open(&path).unwrap().map().unwrap(), path.clone()).unwrap());
    let err = table.verify().unwrap_err();
    assert!(err.to_string().contains("000002.sst"), "{err}");
}

#[test]
fn fault_fs_table_survives_a_crash_after_finish() {
    let fs = FaultFs::new();
    fs.create_dir_all(std::path::Path::new("db")).unwrap();
    let path = PathBuf::from("db/000003.sst");
    let model = big_model(5000, 40);
    write_table(&fs, &path, &model, TableOptions::default());
    fs.sync_dir(std::path::Path::new("db")).unwrap();
    let after_crash = fs.crash(42);
    let table = Arc::new(Table::open(after_crash.open(&path).unwrap().map().unwrap(), path).unwrap());
    check_table(&table, &model);
}

#[test]
fn fault_fs_unsynced_table_either_vanishes_or_fails_to_open() {
    // A table whose finish() never ran: whatever a crash leaves of it must
    // not open as a valid table.
    let fs = FaultFs::new();
    let path = PathBuf::from("000004.sst");
    let mut b = bedrock_sstable::TableBuilder::new(fs.create(&path).unwrap(), path.clone(), TableOptions::default());
    for ((k, Reverse(s)), (kind, v)) in big_model(5000, 40) {
        b.add(&ikey(&k, s, kind), &v).unwrap();
    }
    fs.sync_dir(std::path::Path::new("")).unwrap();
    drop(b);
    for seed in 0..20 {
        let crashed = fs.crash(seed);
        let bytes = crashed.open(&path).unwrap().map().unwrap();
        assert!(Table::open(bytes, path.clone()).is_err(), "seed {seed}");
    }
}

#[test]
fn bloom_filter_in_a_table_has_the_theoretical_false_positive_rate() {
    let n = 100_000u64;
    let model = big_model(n, 0);
    let table = open_bytes(table_bytes(&model, TableOptions::default())).unwrap();
    for (k, _) in model.keys() {
        assert!(table.may_contain(k));
    }
    // Absent keys interleave with present ones ("key-…1" and "key-…2").
    let fp = (0..n).filter(|i| table.may_contain(format!("key-{:08}", i * 3 + 1).as_bytes())).count();
    let measured = fp as f64 / n as f64;
    let theory = bedrock_sstable::theoretical_false_positive_rate(10);
    println!("table bloom filter: {fp} false positives in {n} absent keys = {measured:.5}; theory {theory:.5}");
    assert!(measured < theory * 1.5 && measured > theory / 1.5);
    let s = table.stats();
    assert_eq!(s.bloom_checks, 2 * n);
    assert_eq!(s.bloom_negatives, n - fp as u64);
    assert_eq!(s.block_reads, 0);
}

#[test]
fn concurrent_readers_share_one_table() {
    let model = Arc::new(big_model(10_000, 20));
    let table = open_bytes(table_bytes(&model, TableOptions::default())).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (table, model) = (Arc::clone(&table), Arc::clone(&model));
            std::thread::spawn(move || {
                for ((k, Reverse(s)), (_, v)) in model.iter().skip(t).step_by(7) {
                    assert_eq!(table.get(k, u64::MAX).unwrap().unwrap(), (*s, ValueKind::Put, v.clone()));
                }
                let (got, status) = scan(&table);
                status.unwrap();
                assert_eq!(got.len(), model.len());
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn large_values_span_blocks() {
    let mut model = big_model(50, 10);
    model.insert((b"key-big".to_vec(), Reverse(7)), (ValueKind::Put, vec![9u8; 1 << 20]));
    let table = open_bytes(table_bytes(&model, TableOptions::default())).unwrap();
    check_table(&table, &model);
}
