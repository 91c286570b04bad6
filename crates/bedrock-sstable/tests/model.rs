//! Model test: tables built from random sorted sets of (user key, seq,
//! kind, value), with random block sizes, restart intervals and bloom
//! settings, must answer `get` at any sequence number, a full scan, and
//! `seek` exactly like a `BTreeMap`.

mod common;

use std::cmp::Reverse;

use bedrock_sstable::{compare_internal_keys, TableOptions, ValueKind};
use common::*;
use proptest::prelude::*;

fn user_key() -> impl Strategy<Value = Vec<u8>> {
    // A small alphabet so keys share prefixes and collide across versions.
    proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(0u8), Just(0xff)], 0..6)
}

fn model() -> impl Strategy<Value = Model> {
    let entry = (user_key(), 0u64..60, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..24));
    proptest::collection::vec(entry, 0..300).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(k, seq, put, v)| {
                let kind = if put { ValueKind::Put } else { ValueKind::Delete };
                ((k, Reverse(seq)), (kind, v))
            })
            .collect()
    })
}

fn options() -> impl Strategy<Value = TableOptions> {
    let compression = prop_oneof![Just(bedrock_sstable::Compression::None), Just(bedrock_sstable::Compression::Lz4)];
    (
        prop_oneof![1usize..64, 64usize..1024, Just(4096)],
        1usize..20,
        prop_oneof![Just(0usize), 1usize..16],
        compression,
        prop_oneof![Just(0u64), 1u64..100_000],
    )
        .prop_map(|(block_size_bytes, restart_interval, bloom_bits_per_key, compression, bytes_per_sync)| {
            TableOptions { block_size_bytes, restart_interval, bloom_bits_per_key, compression, bytes_per_sync }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_btreemap(
        model in model(),
        opts in options(),
        probes in proptest::collection::vec((user_key(), 0u64..64), 1..40),
    ) {
        let bytes = table_bytes(&model, opts);
        let table = open_bytes(bytes).unwrap();
        let want = entries(&model);
        prop_assert_eq!(table.entries(), want.len() as u64);

        let (got, status) = scan(&table);
        status.unwrap();
        prop_assert_eq!(&got, &want);

        let mut keys: Vec<(Vec<u8>, u64)> = probes.clone();
        keys.extend(model.keys().map(|(k, Reverse(s))| (k.clone(), *s)));
        for (k, seq) in &keys {
            for s in [*seq, seq.saturating_sub(1), u64::MAX] {
                prop_assert_eq!(table.get(k, s).unwrap(), model_get(&model, k, s), "get({:?}, {})", k, s);
            }
        }

        let mut it = table.iter();
        for (k, seq) in &probes {
            let target = ikey(k, *seq, ValueKind::Put);
            it.seek(&target);
            let expected = want.iter().find(|(ik, _)| compare_internal_keys(ik, &target) != std::cmp::Ordering::Less);
            match expected {
                Some((ik, v)) => {
                    prop_assert!(it.valid());
                    prop_assert_eq!((it.key(), it.value()), (&ik[..], &v[..]));
                }
                None => prop_assert!(!it.valid()),
            }
            it.status().unwrap();
        }

        // Backwards: a full reverse scan, and seek_for_prev at each probe.
        let mut back = Vec::new();
        it.seek_to_last();
        while it.valid() {
            back.push((it.key().to_vec(), it.value().to_vec()));
            it.prev();
        }
        it.status().unwrap();
        back.reverse();
        prop_assert_eq!(&back, &want);
        for (k, seq) in &probes {
            let target = ikey(k, *seq, ValueKind::Put);
            it.seek_for_prev(&target);
            let expected = want.iter().rev().find(|(ik, _)| compare_internal_keys(ik, &target) != std::cmp::Ordering::Greater);
            match expected {
                Some((ik, v)) => {
                    prop_assert!(it.valid());
                    prop_assert_eq!((it.key(), it.value()), (&ik[..], &v[..]));
                }
                None => prop_assert!(!it.valid()),
            }
        }

        prop_assert_eq!(table.verify().unwrap(), want.len() as u64);
    }
}

#[test]
fn summary_matches_model() {
    let model = small_model();
    let fs = bedrock_wal::FaultFs::new();
    let path = std::path::PathBuf::from("t.sst");
    let s = write_table(&fs, &path, &model, TableOptions { block_size_bytes: 100, ..TableOptions::default() });
    let all = entries(&model);
    assert_eq!(s.entries, all.len() as u64);
    assert_eq!(s.smallest, all.first().unwrap().0);
    assert_eq!(s.largest, all.last().unwrap().0);
    let seqs = model.keys().map(|(_, Reverse(s))| *s);
    assert_eq!(s.min_seq, seqs.clone().min().unwrap());
    assert_eq!(s.max_seq, seqs.max().unwrap());
    assert_eq!(s.file_size, fs.contents(&path).unwrap().len() as u64);
}
