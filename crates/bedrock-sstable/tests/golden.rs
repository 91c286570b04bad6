//! The worked example of `docs/formats.md` (section "SSTable"), byte for
//! byte: a two-entry table with default options.
//!
//! If this test fails, the on-disk format changed. Either fix the code, or
//! bump `FORMAT_VERSION`, keep reading version 1 (this fixture must still
//! open), and update the docs.

mod common;

use std::cmp::Reverse;

use bedrock_sstable::{TableOptions, ValueKind, FORMAT_VERSION};
use common::*;

/// `cat`@5 Put "meow", `cow`@3 Delete, as printed in docs/formats.md.
const EXAMPLE: &str = "
    00 0b 04 63 61 74 01 05 00 00 00 00 00 00 6d 65
    6f 77 01 0a 00 6f 77 00 03 00 00 00 00 00 00 00
    00 00 00 01 00 00 00 00 0c 42 d5 70 14 0c 80 41
    60 40 12 11 07 00 60 d6 0e 62 00 0b 03 63 6f 77
    00 03 00 00 00 00 00 00 00 27 02 00 00 00 00 01
    00 00 00 00 c2 ae db 75 2c 00 00 00 00 00 00 00
    09 00 00 00 00 00 00 00 3a 00 00 00 00 00 00 00
    19 00 00 00 00 00 00 00 01 00 00 00 78 67 8d b3
    42 44 52 4b 2d 53 53 54";

fn example_bytes() -> Vec<u8> {
    EXAMPLE.split_whitespace().map(|h| u8::from_str_radix(h, 16).unwrap()).collect()
}

fn example_model() -> Model {
    let mut model = Model::new();
    model.insert((b"cat".to_vec(), Reverse(5)), (ValueKind::Put, b"meow".to_vec()));
    model.insert((b"cow".to_vec(), Reverse(3)), (ValueKind::Delete, Vec::new()));
    model
}

#[test]
fn builder_writes_the_documented_bytes() {
    assert_eq!(FORMAT_VERSION, 1);
    let written = table_bytes(&example_model(), TableOptions::default());
    assert_eq!(written, example_bytes());
}

#[test]
fn documented_bytes_open_and_read_back() {
    let table = open_bytes(example_bytes()).unwrap();
    assert_eq!(table.entries(), 2);
    assert_eq!(table.get(b"cat", 9).unwrap(), Some((5, ValueKind::Put, b"meow".to_vec())));
    assert_eq!(table.get(b"cow", 9).unwrap(), Some((3, ValueKind::Delete, Vec::new())));
    assert_eq!(table.get(b"cat", 4).unwrap(), None);
    let (got, status) = scan(&table);
    status.unwrap();
    assert_eq!(got, entries(&example_model()));
    assert_eq!(table.verify().unwrap(), 2);
}
