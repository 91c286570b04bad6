//! A Raft entry's payload as a peer could send it: the command decoder
//! (writes and transactions with their read sets). Must never panic; what
//! decodes must re-encode to the same bytes' meaning.
#![no_main]

use bedrock_raft::command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(commands) = command::decode(data) {
        let again = command::decode(&command::encode(&commands)).expect("re-encoded commands decode");
        assert_eq!(command::encode(&again), command::encode(&commands));
    }
});
