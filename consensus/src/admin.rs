//! The `Master` gRPC service: the admin API every CLI command talks to.
//!
//! Any member answers. Requests that need the leader (writes, linearizable
//! reads, membership changes) fail on a follower with `FAILED_PRECONDITION`
//! and the leader's id and API address in the response metadata, which
//! [`MasterClient`](crate::MasterClient) follows without the user noticing.

pub mod auth;
mod leadership;
mod membership;

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use openraft::ServerState;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use sluice_security::Role;

use crate::acl::Need;
use crate::config::MasterConfig;
use crate::leader::{now_unix_ms, Liveness};
use crate::lease::{LeaderLease, LeaseError};
use crate::proposer::{ProposeError, Proposer};
use crate::proto::master_server::Master;
use crate::proto::*;
use crate::request::{self as api_request, Request as ApiRequest};
use crate::state::Query;
use crate::types::{MasterNode, NodeId, Raft, StateHandle};

pub use sluice_api::wire::{COMMAND_ERROR_KEY, LEADER_API_KEY, LEADER_ID_KEY, NO_QUORUM_KEY};

/// The admin API of one master.
#[derive(Clone)]
pub struct AdminService {
    raft: Raft,
    proposer: Proposer,
    state: StateHandle,
    config: Arc<MasterConfig>,
    elect_suppression: Arc<std::sync::atomic::AtomicU64>,
    /// Set while this leader hands leadership over; writes wait meanwhile,
    /// since replicating them would keep followers from electing the target.
    transferring: Arc<std::sync::atomic::AtomicBool>,
    liveness: Arc<Liveness>,
    lease: Arc<LeaderLease>,
}

impl AdminService {
    pub fn new(
        raft: Raft,
        proposer: Proposer,
        state: StateHandle,
        config: Arc<MasterConfig>,
        liveness: Arc<Liveness>,
        lease: Arc<LeaderLease>,
    ) -> Self {
        Self {
            raft,
            proposer,
            state,
            config,
            elect_suppression: Arc::default(),
            transferring: Arc::default(),
            liveness,
            lease,
        }
    }

    fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.config.request_timeout_ms)
    }

    /// A "not the leader" answer pointing at the leader if one is known.
    fn not_leader(&self, leader_id: Option<NodeId>, leader_node: Option<&MasterNode>) -> Status {
        let metrics = self.raft.metrics().borrow().clone();
        let leader_id = leader_id.or(metrics.current_leader);
        let api = leader_node.map(|n| n.api_addr.clone()).or_else(|| {
            leader_id.and_then(|id| {
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|n| n.api_addr.clone())
            })
        });
        let message = match (leader_id, &api) {
            (Some(id), Some(api)) => format!("member {} is not the leader; leader is {id} at {api}", self.config.id),
            _ => format!("member {} is not the leader and no leader is known yet (election in progress or no quorum)", self.config.id),
        };
        let mut status = Status::failed_precondition(message);
        if let (Some(id), Some(api)) = (leader_id, api) {
            if let (Ok(id), Ok(api)) = (
                MetadataValue::try_from(id.to_string()),
                MetadataValue::try_from(api),
            ) {
                status.metadata_mut().insert(LEADER_ID_KEY, id);
                status.metadata_mut().insert(LEADER_API_KEY, api);
            }
        }
        status
    }

    fn forward(&self, forward: &ForwardToLeader<NodeId, MasterNode>) -> Status {
        self.not_leader(forward.leader_id, forward.leader_node.as_ref())
    }

    fn write_error(&self, err: RaftError<NodeId, ClientWriteError<NodeId, MasterNode>>) -> Status {
        match err {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => self.forward(&f),
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Status::failed_precondition(format!("membership change refused: {e}"))
            }
            RaftError::Fatal(e) => {
                Status::internal(format!("master {} has stopped: {e}", self.config.id))
            }
        }
    }

    fn propose_error(&self, err: ProposeError) -> Status {
        match err {
            ProposeError::NotLeader {
                leader_id,
                leader_node,
            } => self.not_leader(leader_id, leader_node.as_ref()),
            ProposeError::Refused(message) => Status::failed_precondition(message),
            ProposeError::Stopped(message) => {
                Status::internal(format!("master {} has stopped: {message}", self.config.id))
            }
        }
    }

    /// Succeeds only while this member leads and holds its leader lease (a
    /// majority acknowledged it within the lease). A leader without the
    /// lease refuses at once with `UNAVAILABLE` and [`NO_QUORUM_KEY`], so a
    /// write that cannot commit is never proposed, and a partitioned leader
    /// never answers a heartbeat or a read that the majority's leader would
    /// not see; clients move on to another member.
    fn require_lease(&self) -> Result<u64, Status> {
        self.require_leader()?;
        self.lease.check().map_err(|e| match e {
            LeaseError::NotLeader { .. } => self.not_leader(None, None),
            lapsed @ (LeaseError::Lapsed { .. } | LeaseError::CatchingUp { .. }) => no_quorum(
                format!("{lapsed}; nothing was done here: retry on another master"),
            ),
        })
    }

    fn require_leader(&self) -> Result<(), Status> {
        if self.transferring.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Status::failed_precondition(format!(
                "member {} is not the leader any more: leadership transfer in progress",
                self.config.id
            )));
        }
        let state = self.raft.metrics().borrow().state;
        if state == ServerState::Leader {
            Ok(())
        } else {
            Err(self.not_leader(None, None))
        }
    }

    fn member_info(&self, initialized: bool) -> MemberInfo {
        MemberInfo {
            id: self.config.id,
            raft_addr: self.config.public_raft_addr().to_owned(),
            api_addr: self.config.public_api_addr().to_owned(),
            initialized,
        }
    }
}

impl AdminService {
    /// A client's management call (masters, leadership); returns the
    /// caller's token, for the calls the leader makes on its behalf.
    fn authorize_management<T>(
        &self,
        request: &Request<T>,
        what: &str,
    ) -> Result<Option<String>, Status> {
        self.authorize(request, &[Role::Client], what, Some(Need::Management))?;
        auth::token_of(request.metadata())
    }

    /// A master's call steering elections (leadership transfer): with TLS,
    /// only another master's certificate may; without, the management token
    /// the transfer's caller gave, passed on by the leader.
    fn authorize_peer<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let need = self.config.tls.is_none().then_some(Need::Management);
        self.authorize(request, &[Role::Master], "steer elections", need)
            .map(|_| ())
    }

    /// Decodes, authorises, audits and proposes one write request.
    async fn write_request(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let parsed = ApiRequest::try_from(request.get_ref().clone())
            .map_err(|e| Status::invalid_argument(format!("invalid request: {e}")))?;
        let (roles, what): (&[Role], &str) = if parsed.from_agents() {
            (&[Role::Agent], "make an agent's report")
        } else {
            (&[Role::Client], "change the cluster")
        };
        // The leader first: a follower's state may not hold a token just
        // created, and the client follows the redirect.
        self.require_lease()?;
        let need =
            api_request::need(&parsed, &self.state.read().state).map_err(|e| rejected(&e))?;
        let name = parsed.name();
        let caller = self
            .authorize(&request, roles, what, need)
            .inspect_err(|denied| {
                tracing::info!(
                    target: "sluice::audit",
                    request = name,
                    outcome = "denied",
                    reason = denied.message(),
                    "write"
                );
            })?;
        if let Err(refused) = self.check_reporter(&parsed, &caller) {
            tracing::info!(
                target: "sluice::audit",
                caller = %caller.name,
                request = name,
                outcome = "denied",
                reason = refused.message(),
                "write"
            );
            return Err(refused);
        }
        let (command, secret) =
            api_request::into_command(parsed, now_unix_ms(), caller.token_to_bind()).map_err(
                |e| {
                    tracing::info!(
                        target: "sluice::audit",
                        caller = %caller.name,
                        request = name,
                        outcome = "rejected",
                        reason = %e,
                        "write"
                    );
                    rejected(&e)
                },
            )?;
        let audit = |outcome: &str| {
            tracing::info!(
                target: "sluice::audit",
                caller = %caller.name,
                accessor = caller.accessor.as_deref().unwrap_or("-"),
                request = name,
                outcome,
                "write"
            );
        };
        let applied = tokio::time::timeout(self.request_timeout(), self.proposer.propose(command))
            .await
            .map_err(|_| {
                audit("unknown");
                Status::deadline_exceeded(format!(
                    "not committed within {} ms (this leader may have lost its majority); \
                     the outcome is unknown: the write may or may not be applied. \
                     Read the state to find out before retrying",
                    self.config.request_timeout_ms
                ))
            })?
            .map_err(|e| {
                audit("not proposed");
                self.propose_error(e)
            })?;
        match applied.result {
            Ok(output) => {
                audit("applied");
                Ok(Response::new(WriteReply {
                    log_index: applied.log_index,
                    output: Some(sluice_api::convert::output_to_proto(&output)),
                    secret: secret.map(|s| s.0),
                }))
            }
            Err(error) => {
                audit("rejected");
                Err(rejected(&error))
            }
        }
    }
}

impl AdminService {
    /// An agent's report must come from that agent's token: a token is
    /// bound to the agent that first registered with it, so one agent's
    /// certificate and token cannot report, re-register or heartbeat for
    /// another. A checkpoint report names a job, not an agent: the caller's
    /// agent must run one of that job's tasks.
    fn check_reporter(&self, request: &ApiRequest, caller: &auth::Caller) -> Result<(), Status> {
        let job_on_caller = |job: &u64| -> Result<(), Status> {
            let auth::ActsFor::Agent(agent) = caller.acts_for else {
                return caller.check_acts_for(u64::MAX);
            };
            let view = self.state.read();
            let runs_it = view.state.jobs.get(job).is_some_and(|j| {
                j.tasks
                    .iter()
                    .any(|t| t.grant.as_ref().is_some_and(|g| g.agent == agent))
            });
            if runs_it {
                Ok(())
            } else {
                Err(Status::permission_denied(format!(
                    "permission denied: token {:?} acts for agent {agent}, which runs no task of \
                     job {job}",
                    caller.name
                )))
            }
        };
        match request {
            ApiRequest::RegisterAgent(spec) => match (caller.acts_for, spec.id) {
                (auth::ActsFor::Agent(_), Some(id)) => caller.check_acts_for(id),
                (auth::ActsFor::Agent(bound), None) => Err(Status::permission_denied(format!(
                    "permission denied: token {:?} acts for agent {bound} already; a new agent \
                     needs a token of its own",
                    caller.name
                ))),
                _ => Ok(()),
            },
            ApiRequest::UpdateTask { update } => caller.check_acts_for(update.agent),
            ApiRequest::CheckpointCompleted { job, attempt, .. }
            | ApiRequest::CheckpointFailed { job, attempt, .. }
            | ApiRequest::CheckpointTriggered { job, attempt, .. } => {
                let current = self
                    .state
                    .read()
                    .state
                    .jobs
                    .get(job)
                    .is_some_and(|j| j.attempt == *attempt);
                // A report from a replaced run is refused by apply as stale
                // (which tells that run to stop), whoever sends it.
                if caller.acts_for == auth::ActsFor::Any || !current {
                    Ok(())
                } else {
                    job_on_caller(job)
                }
            }
            _ => Ok(()),
        }
    }
}

/// A refusal by the state machine's rules, with the typed error attached
/// for the client.
fn rejected(error: &crate::command::CommandError) -> Status {
    let mut status = Status::failed_precondition(format!("rejected: {error}"));
    if let Ok(json) = serde_json::to_string(error) {
        if let Ok(value) = MetadataValue::try_from(json) {
            status.metadata_mut().insert(COMMAND_ERROR_KEY, value);
        }
    }
    status
}

/// Most bytes of an error message sent back: it travels in a gRPC header,
/// which the client refuses past its size limit ("h2 protocol error").
pub const STATUS_MESSAGE_BYTES_MAX: usize = 2048;
/// Most bytes of one metadata value attached to an error.
const STATUS_METADATA_BYTES_MAX: usize = 4096;

/// Bounds an error answer's message and metadata, so that no request,
/// however large what it quotes, gets an answer the client cannot read.
fn bounded<T>(result: Result<T, Status>) -> Result<T, Status> {
    result.map_err(|status| {
        let too_long = status.message().len() > STATUS_MESSAGE_BYTES_MAX;
        let big_meta = status
            .metadata()
            .iter()
            .any(|kv| matches!(kv, tonic::metadata::KeyAndValueRef::Ascii(_, v) if v.len() > STATUS_METADATA_BYTES_MAX));
        if !too_long && !big_meta {
            return status;
        }
        let message = crate::text::clip(status.message(), STATUS_MESSAGE_BYTES_MAX).into_owned();
        let mut bounded = Status::new(status.code(), message);
        for kv in status.metadata().iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(key, value) = kv {
                if value.len() <= STATUS_METADATA_BYTES_MAX {
                    bounded.metadata_mut().insert(key.clone(), value.clone());
                }
            }
        }
        bounded
    })
}

/// A refusal because this leader cannot prove a quorum: nothing was done,
/// so retrying elsewhere is safe.
fn no_quorum(message: String) -> Status {
    let mut status = Status::unavailable(message);
    status
        .metadata_mut()
        .insert(NO_QUORUM_KEY, MetadataValue::from_static("1"));
    status
}

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

#[tonic::async_trait]
impl Master for AdminService {
    async fn info(&self, request: Request<InfoRequest>) -> Result<Response<MemberInfo>, Status> {
        bounded(
            async move {
                self.authorize(&request, &Role::ALL, "ask who this member is", None)?;
                let initialized = self
                    .raft
                    .is_initialized()
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                Ok(Response::new(self.member_info(initialized)))
            }
            .await,
        )
    }

    async fn init(&self, request: Request<InitRequest>) -> Result<Response<InitReply>, Status> {
        bounded(
            async move {
                // No token: a new cluster has none yet (and an initialised
                // member refuses this anyway).
                self.authorize(&request, &[Role::Client], "form a cluster", None)?;
                membership::init(self, request.into_inner())
                    .await
                    .map(Response::new)
            }
            .await,
        )
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        bounded(
            async move {
                self.authorize(&request, &Role::ALL, "read Raft status", None)?;
                let metrics = self.raft.metrics().borrow().clone();
                let committed = self
                    .raft
                    .with_raft_state(|st| st.committed.map(|id| id.index))
                    .await
                    .map_err(|e| Status::internal(e.to_string()))?;
                let membership = metrics.membership_config.membership();
                let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
                let members = membership
                    .nodes()
                    .map(|(id, node)| MemberStatus {
                        id: *id,
                        raft_addr: node.raft_addr.clone(),
                        api_addr: node.api_addr.clone(),
                        voter: voters.contains(id),
                        matched_index: metrics
                            .replication
                            .as_ref()
                            .and_then(|r| r.get(id).cloned().flatten())
                            .map(|log_id| log_id.index),
                    })
                    .collect();
                Ok(Response::new(StatusReply {
                    id: self.config.id,
                    role: role_name(metrics.state).to_owned(),
                    term: metrics.current_term,
                    leader_id: metrics.current_leader,
                    last_log_index: metrics.last_log_index,
                    applied_index: metrics.last_applied.map(|l| l.index),
                    snapshot_index: metrics.snapshot.map(|l| l.index),
                    purged_index: metrics.purged.map(|l| l.index),
                    members,
                    millis_since_quorum_ack: metrics.millis_since_quorum_ack,
                    committed_index: committed,
                    lease_held: (metrics.state == ServerState::Leader)
                        .then(|| self.lease.check().is_ok()),
                }))
            }
            .await,
        )
    }

    async fn write(&self, request: Request<WriteRequest>) -> Result<Response<WriteReply>, Status> {
        bounded(async move { self.write_request(request).await }.await)
    }

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<ReadReply>, Status> {
        bounded(
            async move {
                let query = Query::try_from(request.get_ref())
                    .map_err(|e| Status::invalid_argument(format!("invalid query: {e}")))?;
                let need = match query {
                    Query::State | Query::AclTokens => Need::Management,
                    Query::Job { id } => Need::ReadJob(id),
                    _ => Need::Read,
                };
                if !request.get_ref().stale {
                    self.require_lease()?;
                }
                self.authorize(&request, &Role::ALL, "read the state", Some(need))?;
                let request = request.into_inner();
                if !request.stale {
                    tokio::time::timeout(self.request_timeout(), self.raft.ensure_linearizable())
                        .await
                        .map_err(|_| {
                            Status::deadline_exceeded(format!(
                                "linearizable read not confirmed by a majority within {} ms; \
                             retry, or pass --stale to read this member's local state",
                                self.config.request_timeout_ms
                            ))
                        })?
                        .map_err(|e| match e {
                            RaftError::APIError(
                                openraft::error::CheckIsLeaderError::ForwardToLeader(f),
                            ) => self.forward(&f),
                            RaftError::APIError(
                                openraft::error::CheckIsLeaderError::QuorumNotEnough(e),
                            ) => no_quorum(format!(
                                "no quorum: master {} could not confirm its leadership with a \
                             majority ({e}); retry on another master",
                                self.config.id
                            )),
                            RaftError::Fatal(e) => Status::internal(format!(
                                "master {} has stopped: {e}",
                                self.config.id
                            )),
                        })?;
                }
                let view = self.state.read();
                let result = view
                    .state
                    .answer(&query)
                    .map_err(|e| Status::not_found(e.to_string()))?;
                Ok(Response::new(ReadReply {
                    result: Some(result),
                    applied_index: view.last_applied.map(|l| l.index),
                }))
            }
            .await,
        )
    }

    async fn add_master(
        &self,
        request: Request<AddMasterRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        bounded(
            async move {
                self.authorize_management(&request, "change the masters")?;
                membership::add(self, request.into_inner())
                    .await
                    .map(Response::new)
            }
            .await,
        )
    }

    async fn remove_master(
        &self,
        request: Request<RemoveMasterRequest>,
    ) -> Result<Response<MembershipReply>, Status> {
        bounded(
            async move {
                let token = self.authorize_management(&request, "change the masters")?;
                membership::remove(self, request.into_inner(), token)
                    .await
                    .map(Response::new)
            }
            .await,
        )
    }

    async fn transfer_leader(
        &self,
        request: Request<TransferLeaderRequest>,
    ) -> Result<Response<TransferLeaderReply>, Status> {
        bounded(
            async move {
                // The leader first, caught up with earlier terms: its state
                // holds every revocation committed before it was elected.
                self.require_lease()?;
                let token = self.authorize_management(&request, "move leadership")?;
                leadership::transfer(self, request.into_inner().to, token)
                    .await
                    .map(Response::new)
            }
            .await,
        )
    }

    async fn suppress_election(
        &self,
        request: Request<SuppressElectionRequest>,
    ) -> Result<Response<Empty>, Status> {
        bounded(
            async move {
                self.authorize_peer(&request)?;
                leadership::suppress(self, request.into_inner().millis);
                Ok(Response::new(Empty {}))
            }
            .await,
        )
    }

    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignReply>, Status> {
        bounded(
            async move {
                self.authorize_peer(&request)?;
                let leader =
                    leadership::campaign(self, request.into_inner().deadline_millis).await?;
                Ok(Response::new(CampaignReply { leader }))
            }
            .await,
        )
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatReply>, Status> {
        bounded(
            async move {
                self.require_lease()?;
                let caller =
                    self.authorize(&request, &[Role::Agent], "heartbeat", Some(Need::Agent))?;
                let id = request.into_inner().agent_id.ok_or_else(|| {
                    Status::invalid_argument("invalid request: agent_id: missing")
                })?;
                caller.check_acts_for(id)?;
                let view = self.state.read();
                let agent = view.state.agents.get(&id).ok_or_else(|| {
                    Status::not_found(format!(
                        "unknown agent {id}: register first (register_agent without an id)"
                    ))
                })?;
                self.liveness.beat(id);
                let assignment = view.state.assignment_of(agent);
                Ok(Response::new(HeartbeatReply {
                    assignment: Some(sluice_api::convert::assignment_to_proto(&assignment)),
                    applied_index: view.last_applied.map(|l| l.index),
                    leader_id: self.config.id,
                }))
            }
            .await,
        )
    }
}
