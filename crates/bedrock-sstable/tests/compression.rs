//! LZ4-compressed data blocks: smaller files, identical reads, and damage
//! inside a compressed block detected like any other.

mod common;

use std::cmp::Reverse;

use bedrock_sstable::{Compression, TableOptions, ValueKind};
use common::{entries, model_get, open_bytes, table_bytes, Model};

fn model() -> Model {
    let mut m = Model::new();
    for i in 0..5_000u64 {
        // Half of each value repeats, as in db_bench's 50%-compressible data.
        let value = format!("{:050}{}", i, "abcdefghij".repeat(5)).into_bytes();
        m.insert((format!("key-{i:08}").into_bytes(), Reverse(i + 1)), (ValueKind::Put, value));
    }
    m
}

fn opts(compression: Compression) -> TableOptions {
    TableOptions { compression, ..TableOptions::default() }
}

#[test]
fn lz4_tables_are_smaller_and_read_the_same() {
    let m = model();
    let plain = table_bytes(&m, opts(Compression::None));
    let packed = table_bytes(&m, opts(Compression::Lz4));
    assert!(packed.len() * 10 < plain.len() * 8, "lz4 {} vs plain {} bytes", packed.len(), plain.len());
    let table = open_bytes(packed).unwrap();
    assert_eq!(table.verify().unwrap(), m.len() as u64);
    for ((k, Reverse(s)), _) in m.iter().step_by(37) {
        let got = table.get(k, u64::MAX).unwrap();
        assert_eq!(got, model_get(&m, k, u64::MAX));
        assert_eq!(got.map(|(seq, _, _)| seq), Some(*s));
    }
    let mut it = table.iter();
    it.seek_to_first();
    let mut scanned = Vec::new();
    while it.valid() {
        scanned.push((it.key().to_vec(), it.value().to_vec()));
        it.next();
    }
    it.status().unwrap();
    assert_eq!(scanned, entries(&m));
}

#[test]
fn incompressible_blocks_are_stored_plain() {
    let mut m = Model::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..500u64 {
        let value: Vec<u8> = (0..100)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        m.insert((format!("k{i:05}").into_bytes(), Reverse(1)), (ValueKind::Put, value));
    }
    let plain = table_bytes(&m, opts(Compression::None));
    let packed = table_bytes(&m, opts(Compression::Lz4));
    assert_eq!(packed.len(), plain.len(), "random data must not be stored compressed");
}

#[test]
fn damage_in_compressed_blocks_is_an_error_never_wrong_data() {
    let m = model();
    let packed = table_bytes(&m, opts(Compression::Lz4));
    let expected = entries(&m);
    for pos in (0..packed.len()).step_by(97) {
        let mut bad = packed.clone();
        bad[pos] ^= 0x55;
        let Ok(table) = open_bytes(bad) else { continue };
        assert!(table.verify().is_err(), "flip at {pos} not detected by verify");
        let mut it = table.iter();
        it.seek_to_first();
        let mut i = 0;
        while it.valid() {
            assert_eq!(
                (it.key(), it.value()),
                (expected[i].0.as_slice(), expected[i].1.as_slice()),
                "wrong data after flip at {pos}"
            );
            i += 1;
            it.next();
        }
        assert!(it.status().is_err() || i == expected.len(), "flip at {pos}: silent truncation");
    }
}
