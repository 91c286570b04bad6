//! WAL segment bytes: the record scanner, then each payload through the
//! write-batch decoder (what recovery does). Fuzz builds skip the record
//! CRC, so mutated payloads reach `WriteBatch::from_bytes`. Must never
//! panic; a decoded batch must re-encode to bytes that decode to it.
#![no_main]

use bedrock_lsm::WriteBatch;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = bedrock_wal::record::scan(data, 1 << 20, |_offset, payload| {
        if let Some(batch) = WriteBatch::from_bytes(payload) {
            let again = WriteBatch::from_bytes(&batch.to_bytes()).expect("a decoded batch re-encodes");
            assert_eq!(again.to_bytes(), batch.to_bytes());
        }
        Ok::<(), ()>(())
    });
    // The payload decoder alone, on raw bytes too.
    let _ = WriteBatch::from_bytes(data);
});
