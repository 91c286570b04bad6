//! Damaged tables: every single-byte change and every truncation of a small
//! multi-block table must be caught, by `open` or by the first read that
//! touches the damaged bytes, and nothing may panic or return wrong data.
//!
//! Every byte of a table is covered by something: data, filter and index
//! blocks by their CRC32 (which detects every error of up to 32 bits), the
//! footer by its own CRC and the magic number, and the layout by `open`'s
//! check that the blocks tile the file. So a flipped byte must also make
//! `verify` fail, which this test asserts.

mod common;

use std::cmp::Reverse;
use std::panic::{catch_unwind, AssertUnwindSafe};

use bedrock_sstable::{compare_internal_keys, Error, TableOptions};
use common::*;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

fn opts() -> TableOptions {
    TableOptions { block_size_bytes: 128, restart_interval: 2, bloom_bits_per_key: 10, ..TableOptions::default() }
}

/// Checks everything a reader can do with `bytes` against `model`: open,
/// get at several sequence numbers, a full scan, seeks and verify. Returns
/// true if any of them reported an error.
fn check_damaged(bytes: Vec<u8>, model: &Model) -> bool {
    let Ok(table) = open_bytes(bytes) else { return true };
    let mut detected = false;
    for ((k, Reverse(s)), _) in model.iter() {
        for seq in [*s, s.saturating_sub(1), u64::MAX] {
            match table.get(k, seq) {
                Ok(got) => assert_eq!(got, model_get(model, k, seq), "wrong data from get({k:?}, {seq})"),
                Err(e) => detected |= is_damage(&e),
            }
        }
    }
    let want = entries(model);
    let (got, status) = scan(&table);
    assert!(got.len() <= want.len() && got[..] == want[..got.len()], "scan returned wrong entries");
    if got.len() < want.len() {
        assert!(status.is_err(), "scan stopped early without an error");
    }
    detected |= status.is_err();
    detected |= check_seeks(&table, &want);
    let verify = table.verify();
    assert!(verify.as_ref().is_ok_and(|n| *n == want.len() as u64) || verify.is_err());
    detected | verify.is_err()
}

/// Seeks to each key and one past it; each result must be right or an error.
fn check_seeks(table: &std::sync::Arc<bedrock_sstable::Table>, want: &[(Vec<u8>, Vec<u8>)]) -> bool {
    let mut detected = false;
    let mut it = table.iter();
    for (target, _) in want {
        it.seek(target);
        if it.status().is_err() {
            detected = true;
            continue;
        }
        let expected = want.iter().find(|(k, _)| compare_internal_keys(k, target).is_ge());
        assert_eq!(it.valid(), expected.is_some());
        if let Some((k, v)) = expected {
            assert_eq!((it.key(), it.value()), (&k[..], &v[..]), "wrong entry from seek");
        }
    }
    detected
}

fn is_damage(e: &Error) -> bool {
    matches!(e, Error::Corruption { .. } | Error::ChecksumMismatch { .. })
}

fn run(case: &str, bytes: Vec<u8>, model: &Model) -> bool {
    match catch_unwind(AssertUnwindSafe(|| check_damaged(bytes, model))) {
        Ok(detected) => detected,
        Err(_) => panic!("reader panicked or returned wrong data on {case}"),
    }
}

#[test]
fn every_single_byte_flip_is_detected() {
    let model = small_model();
    let good = table_bytes(&model, opts());
    assert!(good.len() > 2000, "want a table of a few KiB, got {} bytes", good.len());
    assert!(!run("the intact table", good.clone(), &model), "intact table reported damage");
    let mut cases = 0;
    for pos in 0..good.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[pos] ^= mask;
            assert!(run(&format!("xor {mask:#04x} at byte {pos}"), bad, &model), "flip at {pos} undetected");
            cases += 1;
        }
    }
    println!("{cases} single-byte flips of a {}-byte table, all detected", good.len());
}

#[test]
fn every_truncation_and_extension_fails_to_open() {
    let model = small_model();
    let good = table_bytes(&model, opts());
    for len in 0..good.len() {
        let cut = good[..len].to_vec();
        assert!(open_bytes(cut).is_err(), "table truncated to {len} bytes opened");
    }
    for extra in [1usize, 5, 48, 100] {
        let mut long = good.clone();
        long.extend(std::iter::repeat_n(0u8, extra));
        assert!(open_bytes(long).is_err(), "table extended by {extra} zero bytes opened");
    }
}

#[test]
fn random_multi_byte_damage_never_panics_or_lies() {
    let model = small_model();
    let good = table_bytes(&model, opts());
    let mut rng = SmallRng::seed_from_u64(0x5eed);
    for case in 0..2000 {
        let mut bad = good.clone();
        let n = rng.gen_range(2..10);
        for _ in 0..n {
            let pos = rng.gen_range(0..bad.len());
            bad[pos] = rng.gen();
        }
        if bad == good {
            continue;
        }
        run(&format!("random case {case}"), bad, &model);
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let mut rng = SmallRng::seed_from_u64(7);
    let model = small_model();
    let good = table_bytes(&model, opts());
    for case in 0..2000 {
        let len = rng.gen_range(0..300);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        // Half the time keep a valid footer magic so decoding goes deeper.
        if case % 2 == 0 {
            bytes.extend_from_slice(&good[good.len() - 48..]);
        }
        let _ = catch_unwind(|| {
            if let Ok(t) = open_bytes(bytes) {
                let _ = t.get(b"user-007", u64::MAX);
                let _ = scan(&t);
                let _ = t.verify();
            }
        })
        .map_err(|_| panic!("panic on random input {case}"));
    }
}

#[test]
fn checksum_mismatch_names_file_and_block_offset() {
    let model = small_model();
    let mut bytes = table_bytes(&model, opts());
    bytes[3] ^= 0x40; // inside the first data block
    let table = open_bytes(bytes).unwrap();
    let first_user_key = &model.keys().next().unwrap().0;
    match table.get(first_user_key, u64::MAX) {
        Err(Error::ChecksumMismatch { path, offset: 0, expected, actual }) => {
            assert_eq!(path, std::path::PathBuf::from("t.sst"));
            assert_ne!(expected, actual);
        }
        other => panic!("expected a checksum mismatch at offset 0, got {other:?}"),
    }
    let (got, status) = scan(&table);
    assert!(got.is_empty());
    assert!(matches!(status, Err(Error::ChecksumMismatch { offset: 0, .. })));
}
