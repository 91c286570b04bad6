//! Conversions between the `bedrock.v1` protobuf messages and the
//! protocol-neutral types of [`crate::txn`] and [`crate::read`]. Decoding
//! from protobuf is a trust boundary: unknown enum numbers and mismatched
//! oneofs become [`ApiError::InvalidArgument`].

use bedrock_proto::v1 as pb;
use pb::compare::{CompareResult as PbResult, CompareTarget as PbTarget, TargetUnion};

use crate::error::ApiError;
use crate::read::{KeyValue, ScanRange};
use crate::txn::{Compare, CompareResult, CompareTarget, Op, OpResult, TxnRequest, TxnResponse};

/// Decodes a `TxnRequest` message.
pub fn txn_request(msg: pb::TxnRequest) -> Result<TxnRequest, ApiError> {
    Ok(TxnRequest {
        compare: msg.compare.into_iter().map(compare).collect::<Result<_, _>>()?,
        success: msg.success.into_iter().map(op).collect::<Result<_, _>>()?,
        failure: msg.failure.into_iter().map(op).collect::<Result<_, _>>()?,
    })
}

/// Decodes one `Compare`.
fn compare(msg: pb::Compare) -> Result<Compare, ApiError> {
    let result = match PbResult::try_from(msg.result) {
        Ok(PbResult::Equal) => CompareResult::Equal,
        Ok(PbResult::NotEqual) => CompareResult::NotEqual,
        Ok(PbResult::Greater) => CompareResult::Greater,
        Ok(PbResult::Less) => CompareResult::Less,
        Err(_) => return Err(ApiError::invalid(format!("unknown compare result {}", msg.result))),
    };
    let target = match (PbTarget::try_from(msg.target), msg.target_union) {
        (Ok(PbTarget::Value), Some(TargetUnion::Value(v))) => CompareTarget::Value(v),
        (Ok(PbTarget::Value), None) => CompareTarget::Value(Vec::new()),
        (Ok(PbTarget::Exists), Some(TargetUnion::Exists(e))) => CompareTarget::Exists(e),
        (Ok(PbTarget::Exists), None) => CompareTarget::Exists(false),
        (Ok(PbTarget::Value), Some(TargetUnion::Exists(_))) => {
            return Err(ApiError::invalid("compare target VALUE needs `value`, not `exists`"))
        }
        (Ok(PbTarget::Exists), Some(TargetUnion::Value(_))) => {
            return Err(ApiError::invalid("compare target EXISTS needs `exists`, not `value`"))
        }
        (Err(_), _) => return Err(ApiError::invalid(format!("unknown compare target {}", msg.target))),
    };
    Ok(Compare { key: msg.key, result, target })
}

/// Decodes one `RequestOp`.
fn op(msg: pb::RequestOp) -> Result<Op, ApiError> {
    use pb::request_op::Request;
    match msg.request {
        Some(Request::Put(p)) => Ok(Op::Put { key: p.key, value: p.value }),
        Some(Request::Delete(d)) => Ok(Op::Delete { key: d.key }),
        Some(Request::Get(g)) => Ok(Op::Get { key: g.key }),
        None => Err(ApiError::invalid("transaction operation without put, delete or get")),
    }
}

/// Encodes a transaction's outcome.
pub fn txn_response(resp: TxnResponse) -> pb::TxnResponse {
    use pb::response_op::Response;
    let revision = resp.revision;
    let responses = resp
        .responses
        .into_iter()
        .map(|r| pb::ResponseOp {
            response: Some(match r {
                OpResult::Put => Response::Put(pb::PutResponse { revision }),
                OpResult::Delete => Response::Delete(pb::DeleteResponse { revision }),
                OpResult::Get { key, value } => Response::Get(get_response(key, value, revision)),
            }),
        })
        .collect();
    pb::TxnResponse { succeeded: resp.succeeded, responses, revision }
}

/// Encodes the answer to a get.
pub fn get_response(key: Vec<u8>, value: Option<Vec<u8>>, revision: u64) -> pb::GetResponse {
    pb::GetResponse { kv: value.map(|value| pb::KeyValue { key, value }), revision }
}

/// Decodes a `ScanRequest`.
pub fn scan_range(msg: pb::ScanRequest) -> ScanRange {
    ScanRange {
        start: msg.start,
        end: (!msg.end.is_empty()).then_some(msg.end),
        // A limit beyond the address space is no limit at all.
        limit: usize::try_from(msg.limit).unwrap_or(0),
    }
}

/// Encodes key-values.
pub fn key_values(kvs: Vec<KeyValue>) -> Vec<pb::KeyValue> {
    kvs.into_iter().map(|kv| pb::KeyValue { key: kv.key, value: kv.value }).collect()
}

/// Decodes a transaction's outcome (used by the CLI client). A missing key's
/// get result has an empty `key`: the response does not repeat it.
pub fn txn_response_from_proto(msg: pb::TxnResponse) -> Result<TxnResponse, ApiError> {
    use pb::response_op::Response;
    let responses = msg
        .responses
        .into_iter()
        .map(|r| match r.response {
            Some(Response::Put(_)) => Ok(OpResult::Put),
            Some(Response::Delete(_)) => Ok(OpResult::Delete),
            Some(Response::Get(g)) => Ok(match g.kv {
                Some(kv) => OpResult::Get { key: kv.key, value: Some(kv.value) },
                None => OpResult::Get { key: Vec::new(), value: None },
            }),
            None => Err(ApiError::Internal("transaction result without an operation".into())),
        })
        .collect::<Result<_, _>>()?;
    Ok(TxnResponse { succeeded: msg.succeeded, responses, revision: msg.revision })
}

/// Encodes a transaction request (used by the CLI client).
pub fn txn_request_to_proto(req: TxnRequest) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: req.compare.into_iter().map(compare_to_proto).collect(),
        success: req.success.into_iter().map(op_to_proto).collect(),
        failure: req.failure.into_iter().map(op_to_proto).collect(),
    }
}

fn compare_to_proto(c: Compare) -> pb::Compare {
    let result = match c.result {
        CompareResult::Equal => PbResult::Equal,
        CompareResult::NotEqual => PbResult::NotEqual,
        CompareResult::Greater => PbResult::Greater,
        CompareResult::Less => PbResult::Less,
    };
    let (target, union) = match c.target {
        CompareTarget::Value(v) => (PbTarget::Value, TargetUnion::Value(v)),
        CompareTarget::Exists(e) => (PbTarget::Exists, TargetUnion::Exists(e)),
    };
    pb::Compare { result: result.into(), target: target.into(), key: c.key, target_union: Some(union) }
}

fn op_to_proto(op: Op) -> pb::RequestOp {
    use pb::request_op::Request;
    let request = match op {
        Op::Put { key, value } => Request::Put(pb::PutRequest { key, value }),
        Op::Delete { key } => Request::Delete(pb::DeleteRequest { key }),
        Op::Get { key } => Request::Get(pb::GetRequest { key, serializable: false }),
    };
    pb::RequestOp { request: Some(request) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnRequest {
        TxnRequest {
            compare: vec![
                Compare {
                    key: b"a".to_vec(),
                    result: CompareResult::Less,
                    target: CompareTarget::Value(b"x".to_vec()),
                },
                Compare { key: b"b".to_vec(), result: CompareResult::NotEqual, target: CompareTarget::Exists(true) },
            ],
            success: vec![Op::Put { key: b"a".to_vec(), value: b"1".to_vec() }],
            failure: vec![Op::Delete { key: b"a".to_vec() }, Op::Get { key: b"b".to_vec() }],
        }
    }

    #[test]
    fn txn_request_round_trips() {
        let req = sample();
        assert_eq!(txn_request(txn_request_to_proto(req.clone())), Ok(req));
    }

    #[test]
    fn txn_response_round_trips() {
        let resp = TxnResponse {
            succeeded: true,
            revision: 4,
            responses: vec![
                OpResult::Put,
                OpResult::Get { key: b"k".to_vec(), value: Some(b"v".to_vec()) },
                OpResult::Delete,
            ],
        };
        assert_eq!(txn_response_from_proto(txn_response(resp.clone())), Ok(resp));
    }

    #[test]
    fn malformed_compares_are_invalid() {
        let mut msg = txn_request_to_proto(sample());
        msg.compare[0].result = 42;
        assert!(matches!(txn_request(msg), Err(ApiError::InvalidArgument(_))));

        let mut msg = txn_request_to_proto(sample());
        msg.compare[1].target_union = Some(TargetUnion::Value(b"v".to_vec()));
        assert!(matches!(txn_request(msg), Err(ApiError::InvalidArgument(_))));

        let mut msg = txn_request_to_proto(sample());
        msg.success[0].request = None;
        assert!(matches!(txn_request(msg), Err(ApiError::InvalidArgument(_))));
    }

    #[test]
    fn empty_scan_end_is_unbounded() {
        let range = scan_range(pb::ScanRequest { start: b"a".to_vec(), limit: 3, ..Default::default() });
        assert_eq!(range, ScanRange { start: b"a".to_vec(), end: None, limit: 3 });
    }
}
