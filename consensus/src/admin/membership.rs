//! Forming the cluster and changing its members.

use std::collections::{BTreeMap, BTreeSet};

use openraft::error::{InitializeError, RaftError};
use openraft::ChangeMembers;
use tonic::Status;

use super::AdminService;
use crate::proto::{
    AddMasterRequest, InitReply, InitRequest, MemberInfo, MembershipReply, RemoveMasterRequest,
};
use crate::types::{MasterNode, NodeId};

/// Most masters one cluster may have; Raft gains nothing past seven.
pub const MASTERS_MAX: usize = 7;

fn node_of(info: &MemberInfo) -> Result<MasterNode, Status> {
    for (what, addr) in [
        ("raft address", &info.raft_addr),
        ("API address", &info.api_addr),
    ] {
        if addr.parse::<std::net::SocketAddr>().is_err() && !addr.contains(':') {
            return Err(Status::invalid_argument(format!(
                "member {}: {what} {addr:?} is not HOST:PORT",
                info.id
            )));
        }
    }
    Ok(MasterNode {
        raft_addr: info.raft_addr.clone(),
        api_addr: info.api_addr.clone(),
    })
}

pub(super) async fn init(svc: &AdminService, request: InitRequest) -> Result<InitReply, Status> {
    if request.members.is_empty() {
        return Err(Status::invalid_argument("init needs at least one member"));
    }
    if request.members.len() > MASTERS_MAX {
        return Err(Status::invalid_argument(format!(
            "{} members given; at most {MASTERS_MAX}",
            request.members.len()
        )));
    }
    let mut nodes = BTreeMap::new();
    for member in &request.members {
        if nodes.insert(member.id, node_of(member)?).is_some() {
            return Err(Status::invalid_argument(format!(
                "member id {} given twice",
                member.id
            )));
        }
    }
    if !nodes.contains_key(&svc.config.id) {
        return Err(Status::invalid_argument(format!(
            "init was sent to member {}, which is not in the member list",
            svc.config.id
        )));
    }
    svc.raft.initialize(nodes).await.map_err(|e| match e {
        RaftError::APIError(InitializeError::NotAllowed(e)) => Status::already_exists(format!(
            "member {} already belongs to a cluster ({e}); nothing changed",
            svc.config.id
        )),
        RaftError::APIError(other) => Status::invalid_argument(other.to_string()),
        RaftError::Fatal(e) => Status::internal(e.to_string()),
    })?;
    Ok(InitReply {
        leader_hint: svc.config.id,
    })
}

fn voters(svc: &AdminService) -> BTreeSet<NodeId> {
    svc.raft
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect()
}

pub(super) async fn add(
    svc: &AdminService,
    request: AddMasterRequest,
) -> Result<MembershipReply, Status> {
    let member = request
        .member
        .ok_or_else(|| Status::invalid_argument("add-master needs the new member's info"))?;
    let node = node_of(&member)?;
    svc.require_lease()?;
    let current = voters(svc);
    if current.contains(&member.id) {
        return Err(Status::already_exists(format!(
            "member {} is already a voter",
            member.id
        )));
    }
    if current.len() >= MASTERS_MAX {
        return Err(Status::failed_precondition(format!(
            "the cluster already has {MASTERS_MAX} masters"
        )));
    }
    // A learner first: it catches up (from a snapshot if needed) before it
    // can count towards any quorum.
    let catch_up = svc.request_timeout() * 12;
    tokio::time::timeout(catch_up, svc.raft.add_learner(member.id, node, true))
        .await
        .map_err(|_| {
            Status::deadline_exceeded(format!(
                "member {} did not catch up within {} s; it stays a learner, retry add-master to promote it",
                member.id,
                catch_up.as_secs()
            ))
        })?
        .map_err(|e| svc.write_error(e))?;
    change_voters(svc, ChangeMembers::AddVoterIds([member.id].into())).await
}

/// Removes a member; `token` is the caller's, passed on if this leader must
/// hand over first.
pub(super) async fn remove(
    svc: &AdminService,
    request: RemoveMasterRequest,
    token: Option<String>,
) -> Result<MembershipReply, Status> {
    svc.require_lease()?;
    let current = voters(svc);
    if !current.contains(&request.id) {
        return Err(Status::not_found(format!(
            "member {} is not a voter (voters: {current:?})",
            request.id
        )));
    }
    if current.len() == 1 {
        return Err(Status::failed_precondition("cannot remove the last master"));
    }
    if request.id == svc.config.id {
        // A leader removing itself would strand the writes it has in flight;
        // hand leadership to the most caught-up voter, and let the client
        // send the removal to it (it follows the hint).
        let successor = super::leadership::best_successor(svc)
            .ok_or_else(|| Status::unavailable("no other voter to hand leadership to"))?;
        let reply = super::leadership::transfer(svc, successor, token).await?;
        return Err(svc.not_leader(Some(reply.leader_id), None));
    }
    change_voters(svc, ChangeMembers::RemoveVoters([request.id].into())).await
}

/// Commits a change of the voter set (joint consensus inside openraft).
async fn change_voters(
    svc: &AdminService,
    change: ChangeMembers<NodeId, MasterNode>,
) -> Result<MembershipReply, Status> {
    let written = tokio::time::timeout(
        svc.request_timeout(),
        svc.raft.change_membership(change, false),
    )
    .await
    .map_err(|_| Status::deadline_exceeded("membership change not committed in time"))?
    .map_err(|e| svc.write_error(e))?;
    Ok(MembershipReply {
        voters: voters(svc).into_iter().collect(),
        log_index: written.log_id.index,
    })
}
