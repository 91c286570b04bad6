//! A database directory whose manifest is the fuzzer's bytes (on the
//! in-memory file system): `Db::open` reads `CURRENT`, replays the version
//! edits (fuzz builds skip the record CRC, so the edit decoder sees
//! everything) and checks the files they name. Must end in an error or an
//! open database, never a panic.
#![no_main]

use std::path::Path;
use std::sync::Arc;

use bedrock_wal::{FaultFs, FileSystem};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fs = FaultFs::new();
    let dir = Path::new("/db");
    fs.create_dir_all(dir).unwrap();
    bedrock_wal::fs::write_atomic(&fs, &dir.join("CURRENT"), b"MANIFEST-000001\n").unwrap();
    bedrock_wal::fs::write_atomic(&fs, &dir.join("MANIFEST-000001"), data).unwrap();
    let mut options = bedrock_lsm::Options::with_dir(dir);
    options.fs = Arc::new(fs);
    if let Ok(db) = bedrock_lsm::Db::open(options) {
        let _ = db.scan(b"", None, 1_000);
        let _ = db.get(b"k");
    }
});
