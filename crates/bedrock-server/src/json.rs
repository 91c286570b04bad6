//! The JSON shapes of the HTTP API: `/scan` results and `/txn` requests and
//! results. The transaction JSON mirrors the `bedrock.v1.TxnRequest` proto:
//!
//! ```json
//! {
//!   "compare": [{"key": "k", "target": "VALUE", "result": "EQUAL", "value": "old"},
//!               {"key": "lock", "target": "EXISTS", "result": "EQUAL", "exists": false}],
//!   "success": [{"put": {"key": "k", "value": "new"}}, {"get": {"key": "k"}}],
//!   "failure": [{"get": {"key": "k"}}, {"delete": {"key": "other"}}]
//! }
//! ```
//!
//! `target` defaults to `VALUE` and `result` to `EQUAL`; enum names are
//! also accepted in lower case. The result looks like
//! `{"succeeded": true, "revision": 7, "responses": [{"put": {"revision": 7}},
//! {"get": {"kv": {"key": "k", "value": "new"}, "revision": 7}}]}`, with
//! `"kv": null` for a missing key. Keys and values are UTF-8 strings; bytes
//! that are not UTF-8 are shown lossily (U+FFFD).

use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::read::KeyValue;
use crate::txn::{Compare, CompareResult, CompareTarget, Op, OpResult, TxnRequest, TxnResponse};

/// A key-value as JSON strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvJson {
    /// The key (lossy UTF-8).
    pub key: String,
    /// The value (lossy UTF-8).
    pub value: String,
}

impl From<KeyValue> for KvJson {
    fn from(kv: KeyValue) -> KvJson {
        KvJson { key: lossy(kv.key), value: lossy(kv.value) }
    }
}

/// The body of a `/scan` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanJson {
    /// The entries in key order.
    pub kvs: Vec<KvJson>,
    /// `kvs.len()`.
    pub count: usize,
    /// The revision of the snapshot the scan read.
    pub revision: u64,
}

/// Builds a `/scan` answer.
pub fn scan(kvs: Vec<KeyValue>, revision: u64) -> ScanJson {
    let kvs: Vec<KvJson> = kvs.into_iter().map(KvJson::from).collect();
    ScanJson { count: kvs.len(), kvs, revision }
}

/// The body of a `/txn` request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxnJson {
    /// Conditions that must all hold for `success` to run.
    #[serde(default)]
    pub compare: Vec<CompareJson>,
    /// Operations run when every comparison holds.
    #[serde(default)]
    pub success: Vec<OpJson>,
    /// Operations run otherwise.
    #[serde(default)]
    pub failure: Vec<OpJson>,
}

/// One comparison of a `/txn` request.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompareJson {
    /// The key inspected.
    pub key: String,
    /// What is compared; default `VALUE`.
    #[serde(default)]
    pub target: TargetJson,
    /// The operator; default `EQUAL`.
    #[serde(default)]
    pub result: ResultJson,
    /// Expected value (target `VALUE`); default empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Expected existence (target `EXISTS`); default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
}

/// `Compare.CompareTarget` in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetJson {
    /// Compare the value.
    #[default]
    #[serde(alias = "value")]
    Value,
    /// Compare existence.
    #[serde(alias = "exists")]
    Exists,
}

/// `Compare.CompareResult` in JSON.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ResultJson {
    /// Equal.
    #[default]
    #[serde(alias = "equal")]
    Equal,
    /// Not equal.
    #[serde(alias = "not_equal")]
    NotEqual,
    /// Greater.
    #[serde(alias = "greater")]
    Greater,
    /// Less.
    #[serde(alias = "less")]
    Less,
}

/// One operation of a `/txn` branch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum OpJson {
    /// Write a key.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Delete a key.
    Delete {
        /// The key.
        key: String,
    },
    /// Read a key.
    Get {
        /// The key.
        key: String,
    },
}

impl TxnJson {
    /// Converts to the protocol-neutral request.
    pub fn into_request(self) -> Result<TxnRequest, ApiError> {
        Ok(TxnRequest {
            compare: self.compare.into_iter().map(CompareJson::into_compare).collect::<Result<_, _>>()?,
            success: self.success.into_iter().map(OpJson::into_op).collect(),
            failure: self.failure.into_iter().map(OpJson::into_op).collect(),
        })
    }
}

impl CompareJson {
    fn into_compare(self) -> Result<Compare, ApiError> {
        let target = match (self.target, self.value, self.exists) {
            (TargetJson::Value, value, None) => CompareTarget::Value(value.unwrap_or_default().into_bytes()),
            (TargetJson::Exists, None, exists) => CompareTarget::Exists(exists.unwrap_or(false)),
            (TargetJson::Value, _, Some(_)) => {
                return Err(ApiError::invalid("compare target VALUE takes `value`, not `exists`"))
            }
            (TargetJson::Exists, Some(_), _) => {
                return Err(ApiError::invalid("compare target EXISTS takes `exists`, not `value`"))
            }
        };
        let result = match self.result {
            ResultJson::Equal => CompareResult::Equal,
            ResultJson::NotEqual => CompareResult::NotEqual,
            ResultJson::Greater => CompareResult::Greater,
            ResultJson::Less => CompareResult::Less,
        };
        Ok(Compare { key: self.key.into_bytes(), result, target })
    }
}

impl OpJson {
    fn into_op(self) -> Op {
        match self {
            OpJson::Put { key, value } => Op::Put { key: key.into_bytes(), value: value.into_bytes() },
            OpJson::Delete { key } => Op::Delete { key: key.into_bytes() },
            OpJson::Get { key } => Op::Get { key: key.into_bytes() },
        }
    }
}

/// The body of a `/txn` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResultJson {
    /// Whether every comparison held.
    pub succeeded: bool,
    /// The commit revision.
    pub revision: u64,
    /// One result per operation of the branch that ran.
    pub responses: Vec<OpResultJson>,
}

/// The result of one operation, tagged with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpResultJson {
    /// A put.
    Put {
        /// The transaction's revision.
        revision: u64,
    },
    /// A delete.
    Delete {
        /// The transaction's revision.
        revision: u64,
    },
    /// A get.
    Get {
        /// The key and value read; `null` for a missing key.
        kv: Option<KvJson>,
        /// The transaction's revision.
        revision: u64,
    },
}

/// Builds the body of a `/txn` answer.
pub fn txn_response(resp: TxnResponse) -> TxnResultJson {
    let revision = resp.revision;
    let responses = resp
        .responses
        .into_iter()
        .map(|r| match r {
            OpResult::Put => OpResultJson::Put { revision },
            OpResult::Delete => OpResultJson::Delete { revision },
            OpResult::Get { key, value } => {
                OpResultJson::Get { kv: value.map(|value| KvJson { key: lossy(key), value: lossy(value) }), revision }
            }
        })
        .collect();
    TxnResultJson { succeeded: resp.succeeded, revision, responses }
}

fn lossy(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let body = r#"{
          "compare": [{"key": "k", "target": "VALUE", "result": "EQUAL", "value": "old"},
                      {"key": "lock", "target": "exists", "result": "not_equal", "exists": true}],
          "success": [{"put": {"key": "k", "value": "new"}}, {"get": {"key": "k"}}],
          "failure": [{"delete": {"key": "other"}}]
        }"#;
        let req = serde_json::from_str::<TxnJson>(body).unwrap().into_request().unwrap();
        assert_eq!(req.compare[0].target, CompareTarget::Value(b"old".to_vec()));
        assert_eq!(req.compare[1].result, CompareResult::NotEqual);
        assert_eq!(req.compare[1].target, CompareTarget::Exists(true));
        assert_eq!(req.success[0], Op::Put { key: b"k".to_vec(), value: b"new".to_vec() });
        assert_eq!(req.failure, vec![Op::Delete { key: b"other".to_vec() }]);
    }

    #[test]
    fn rejects_mismatched_and_unknown_fields() {
        let mismatched = r#"{"compare": [{"key": "k", "target": "EXISTS", "value": "v"}]}"#;
        let req: TxnJson = serde_json::from_str(mismatched).unwrap();
        assert!(req.into_request().is_err());
        assert!(serde_json::from_str::<TxnJson>(r#"{"compares": []}"#).is_err());
        assert!(serde_json::from_str::<TxnJson>(r#"{"success": [{"cas": {}}]}"#).is_err());
    }

    #[test]
    fn renders_results_lossily() {
        let resp = TxnResponse {
            succeeded: false,
            revision: 9,
            responses: vec![
                OpResult::Get { key: b"k".to_vec(), value: Some(vec![b'a', 0xff]) },
                OpResult::Get { key: b"m".to_vec(), value: None },
                OpResult::Delete,
            ],
        };
        let v = serde_json::to_value(txn_response(resp)).unwrap();
        assert_eq!(v["succeeded"], false);
        assert_eq!(v["responses"][0]["get"]["kv"]["value"], "a\u{fffd}");
        assert!(v["responses"][1]["get"]["kv"].is_null());
        assert_eq!(v["responses"][2]["delete"]["revision"], 9);
    }
}
