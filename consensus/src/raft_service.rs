//! The Raft transport, server side: hands decoded messages to openraft.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_security::tls::require_role;
use sluice_security::{Role, Tls};
use tonic::{Request, Response, Status};

use crate::proto::raft_server::Raft as RaftRpc;
use crate::proto::RaftMessage;
use crate::types::Raft;

/// gRPC service that feeds peers' messages to the local Raft. With TLS,
/// only a master's certificate gets a message through.
#[derive(Clone)]
pub struct RaftService {
    raft: Raft,
    tls: Option<Tls>,
}

impl RaftService {
    pub fn new(raft: Raft, tls: Option<Tls>) -> Self {
        Self { raft, tls }
    }

    fn decode<T: DeserializeOwned>(&self, request: Request<RaftMessage>) -> Result<T, Status> {
        require_role(self.tls.as_ref(), &request, &[Role::Master], "speak Raft")?;
        decode(request)
    }
}

fn decode<T: DeserializeOwned>(request: Request<RaftMessage>) -> Result<T, Status> {
    postcard::from_bytes(&request.into_inner().body)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Result<Response<RaftMessage>, Status> {
    postcard::to_stdvec(value)
        .map(|body| Response::new(RaftMessage { body }))
        .map_err(|e| Status::internal(format!("cannot encode Raft reply: {e}")))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let result = self.raft.append_entries(self.decode(request)?).await;
        encode(&result)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let result = self.raft.vote(self.decode(request)?).await;
        encode(&result)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let result = self.raft.install_snapshot(self.decode(request)?).await;
        encode(&result)
    }
}
