//! The Raft transport, client side: openraft messages over gRPC.
//!
//! Bodies are postcard-encoded openraft types. A transport failure (refused
//! connection, dead peer) is `Unreachable` — openraft backs off; a peer that
//! answered with a gRPC error is `Network`; a peer that answered with a Raft
//! error is `RemoteError`. Every call carries the deadline openraft gives it.

use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_security::Tls;
use tonic::transport::Channel;

pub use sluice_api::wire::{lazy_channel, CONNECT_TIMEOUT_MS};

use crate::proto::raft_client::RaftClient;
use crate::proto::RaftMessage;
use crate::types::{MasterNode, NodeId, TypeConfig};

/// Opens (lazily) one gRPC channel per peer.
#[derive(Debug, Clone)]
pub struct NetworkFactory {
    /// Pause between attempts to reach an unreachable peer.
    retry: Duration,
    tls: Option<Tls>,
}

impl NetworkFactory {
    /// `retry` should be about one heartbeat interval: a restarted peer must
    /// hear from the leader before its own election timer fires, or it
    /// campaigns with a stale log, which openraft then holds against it at
    /// its next election (an extra 2 x election timeout). openraft's default
    /// of 500 ms is longer than the election timeout.
    pub fn new(retry: Duration, tls: Option<Tls>) -> Self {
        Self { retry, tls }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &MasterNode) -> PeerClient {
        PeerClient::new(target, node.clone(), self.retry, self.tls.as_ref())
    }
}

/// The Raft connection to one peer.
#[derive(Debug)]
pub struct PeerClient {
    target: NodeId,
    node: MasterNode,
    client: Result<RaftClient<Channel>, String>,
    retry: Duration,
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, MasterNode, RaftError<NodeId, E>>>;

impl PeerClient {
    fn new(target: NodeId, node: MasterNode, retry: Duration, tls: Option<&Tls>) -> Self {
        let client = lazy_channel(&node.raft_addr, tls).map(RaftClient::new);
        Self {
            target,
            node,
            client,
            retry,
        }
    }

    async fn call<Req, Resp, E>(
        &mut self,
        kind: RpcKind,
        request: &Req,
        timeout: Duration,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(client) => client,
            Err(message) => {
                return Err(RPCError::Unreachable(Unreachable::new(&StrError(
                    message.clone(),
                ))))
            }
        };
        let body =
            postcard::to_stdvec(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut req = tonic::Request::new(RaftMessage { body });
        req.set_timeout(timeout);
        let reply = match kind {
            RpcKind::Append => client.append_entries(req).await,
            RpcKind::Vote => client.vote(req).await,
            RpcKind::Snapshot => client.install_snapshot(req).await,
        };
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) if is_unreachable(&status) => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Err(status) => return Err(RPCError::Network(NetworkError::new(&status))),
        };
        let decoded: Result<Resp, RaftError<NodeId, E>> = postcard::from_bytes(&reply.body)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        decoded.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

#[derive(Clone, Copy)]
enum RpcKind {
    Append,
    Vote,
    Snapshot,
}

/// Whether a gRPC failure means the peer was never reached.
fn is_unreachable(status: &tonic::Status) -> bool {
    use tonic::Code;
    // tonic reports refused/reset connections as Unavailable; Unknown with a
    // transport source is a connection that broke before any answer.
    matches!(status.code(), Code::Unavailable)
        || (status.code() == Code::Unknown && status.message().contains("transport"))
}

#[derive(Debug)]
struct StrError(String);

impl std::fmt::Display for StrError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StrError {}

impl RaftNetwork<TypeConfig> for PeerClient {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.retry))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RpcKind::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        self.call(RpcKind::Vote, &rpc, option.hard_ttl()).await
    }
}
