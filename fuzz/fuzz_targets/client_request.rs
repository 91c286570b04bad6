//! Client requests as the server decodes them: protobuf `TxnRequest`,
//! `PutRequest`, `ScanRequest` and `GetRequest` bodies, and the JSON of
//! HTTP `POST /txn`, each converted to the server's own request type the
//! way the handlers do. Must answer with a value or an `ApiError`, never
//! a panic.
#![no_main]

use bedrock_proto::v1 as pb;
use bedrock_server::{convert, json};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(txn) = pb::TxnRequest::decode(data) {
        if let Ok(req) = convert::txn_request(txn) {
            let _ = convert::txn_request_to_proto(req);
        }
    }
    let _ = pb::PutRequest::decode(data);
    let _ = pb::GetRequest::decode(data);
    if let Ok(scan) = pb::ScanRequest::decode(data) {
        let _ = convert::scan_range(scan);
    }
    if let Ok(txn) = serde_json::from_slice::<json::TxnJson>(data) {
        let _ = txn.into_request();
    }
});
