//! The gRPC front end: `bedrock.v1.KV` served by tonic on top of [`Store`].
//! Each method decodes its request, calls the store and encodes the answer;
//! errors become statuses through [`crate::error::ApiError`]'s conversion.

use std::pin::Pin;

use bedrock_proto::v1 as pb;
use pb::kv_server::{Kv, KvServer};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::convert;
use crate::store::{Store, MAX_REQUEST_BYTES};

/// The `KV` service implementation.
#[derive(Debug, Clone)]
pub struct KvService {
    store: Store,
}

impl KvService {
    /// A service answering from `store`.
    pub fn new(store: Store) -> KvService {
        KvService { store }
    }

    /// Wraps the service in tonic's generated server with Bedrock's
    /// message size limits.
    pub fn into_server(self) -> KvServer<KvService> {
        KvServer::new(self).max_decoding_message_size(MAX_REQUEST_BYTES).max_encoding_message_size(MAX_REQUEST_BYTES)
    }
}

/// The stream of chunks answering `Scan`.
pub type ScanStream = Pin<Box<dyn Stream<Item = Result<pb::ScanResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let req = req.into_inner();
        let key = req.key;
        let read = self.store.get_with(key.clone(), req.serializable).await?;
        Ok(Response::new(convert::get_response(key, read.value, read.revision)))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let pb::PutRequest { key, value } = req.into_inner();
        let revision = self.store.put(key, value).await?;
        Ok(Response::new(pb::PutResponse { revision }))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let revision = self.store.delete(req.into_inner().key).await?;
        Ok(Response::new(pb::DeleteResponse { revision }))
    }

    type ScanStream = ScanStream;

    async fn scan(&self, req: Request<pb::ScanRequest>) -> Result<Response<ScanStream>, Status> {
        let range = convert::scan_range(req.into_inner());
        let chunks = tokio_stream::wrappers::ReceiverStream::new(self.store.scan_stream(range));
        let stream = chunks.map(|chunk| {
            let chunk = chunk?;
            Ok(pb::ScanResponse { kvs: convert::key_values(chunk.kvs), revision: chunk.revision })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let txn = convert::txn_request(req.into_inner())?;
        let resp = self.store.txn(txn).await?;
        Ok(Response::new(convert::txn_response(resp)))
    }
}
