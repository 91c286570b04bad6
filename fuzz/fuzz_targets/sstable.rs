//! SSTable file bytes: open (footer, index and filter blocks), iterate
//! forward and backward, point lookups, and a full verify. Fuzz builds
//! skip block and footer CRCs, so the block, restart-point, index and
//! filter decoders see the fuzzer's bytes. Must never panic or hang.
#![no_main]

use std::sync::Arc;

use bedrock_sstable::Table;
use bedrock_wal::FileBytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(table) = Table::open(FileBytes::from_vec(data.to_vec()), "fuzz.sst".into()) else { return };
    let table = Arc::new(table);
    let mut keys = Vec::new();
    let mut it = table.iter();
    it.seek_to_first();
    while it.valid() && keys.len() < 10_000 {
        keys.push(it.key().to_vec());
        let _ = it.value();
        it.next();
    }
    let _ = it.status();
    it.seek_to_last();
    for _ in 0..1_000 {
        if !it.valid() {
            break;
        }
        it.prev();
    }
    for ikey in keys.iter().take(100) {
        it.seek(ikey);
        if let Some(user_key) = bedrock_sstable::key::user_key(ikey) {
            let _ = table.get(user_key, u64::MAX >> 8);
            let _ = table.may_contain(user_key);
        }
    }
    let _ = table.get(b"absent", 1);
    let _ = table.verify();
});
