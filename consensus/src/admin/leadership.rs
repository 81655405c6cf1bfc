//! Leadership transfer.
//!
//! openraft 0.9 has no transfer primitive, so it is built from its switches:
//! the other voters hold off their own elections for a while, the leader
//! stops heartbeating so followers' leases lapse, and the target campaigns
//! until it wins. Suppression expires by itself, so a transfer that fails
//! half-way leaves the cluster electing normally.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use openraft::ServerState;
use tonic::Status;

use super::AdminService;
use crate::client::admin_client;
use crate::proto::{CampaignRequest, SuppressElectionRequest, TransferLeaderReply};
use crate::types::NodeId;

/// Interval between a campaigning member's election attempts.
const CAMPAIGN_RETRY_MS: u64 = 100;

pub(super) fn suppress(svc: &AdminService, millis: u64) {
    let until = svc.elect_suppression.fetch_add(1, Ordering::SeqCst) + 1;
    svc.raft.runtime_config().elect(false);
    let raft = svc.raft.clone();
    let generation = svc.elect_suppression.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        // Only the latest suppression lifts it.
        if generation.load(Ordering::SeqCst) == until {
            raft.runtime_config().elect(true);
        }
    });
}

pub(super) async fn campaign(svc: &AdminService, deadline_millis: u64) -> Result<bool, Status> {
    let deadline = Instant::now() + Duration::from_millis(deadline_millis);
    let is_leader = || svc.raft.metrics().borrow().state == ServerState::Leader;
    while Instant::now() < deadline {
        if is_leader() {
            return Ok(true);
        }
        svc.raft
            .trigger()
            .elect()
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        // Let this round finish: electing again at once would raise the term
        // and void the votes this round is collecting.
        let round = Duration::from_millis(CAMPAIGN_RETRY_MS)
            .min(deadline.saturating_duration_since(Instant::now()));
        let _ = svc
            .raft
            .wait(Some(round))
            .state(ServerState::Leader, "campaign")
            .await;
    }
    Ok(is_leader())
}

/// Moves leadership to `to`. `token` is the caller's ACL token, passed on to
/// the members asked to hold off or campaign (without TLS, that token is
/// how they know the request is allowed; with TLS, this master's
/// certificate is).
pub(super) async fn transfer(
    svc: &AdminService,
    to: NodeId,
    token: Option<String>,
) -> Result<TransferLeaderReply, Status> {
    svc.require_leader()?;
    if svc.transferring.swap(true, Ordering::SeqCst) {
        return Err(Status::failed_precondition(
            "a leadership transfer is already in progress; retry when it ends",
        ));
    }
    let result = transfer_inner(svc, to, token.as_deref()).await;
    svc.transferring.store(false, Ordering::SeqCst);
    result
}

/// The voter other than this leader that holds the most of the log.
pub(super) fn best_successor(svc: &AdminService) -> Option<NodeId> {
    let metrics = svc.raft.metrics().borrow().clone();
    let replication = metrics.replication.as_ref()?;
    metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != svc.config.id)
        .max_by_key(|id| replication.get(id).cloned().flatten().map(|l| l.index))
}

/// A request to a peer, carrying `token` if there is one.
fn peer_request<T>(message: T, timeout: Duration, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(timeout);
    if let Some(value) = token.and_then(|t| format!("Bearer {t}").parse().ok()) {
        req.metadata_mut().insert(super::auth::TOKEN_KEY, value);
    }
    req
}

async fn transfer_inner(
    svc: &AdminService,
    to: NodeId,
    token: Option<&str>,
) -> Result<TransferLeaderReply, Status> {
    let me = svc.config.id;
    if to == me {
        return Ok(TransferLeaderReply { leader_id: me });
    }
    let metrics = svc.raft.metrics().borrow().clone();
    let membership = metrics.membership_config.membership().clone();
    if !membership.voter_ids().any(|id| id == to) {
        return Err(Status::not_found(format!("member {to} is not a voter")));
    }
    let timeout = svc.request_timeout();
    let started = Instant::now();

    // The target must hold the whole log, or it cannot win.
    let mut watch = svc.raft.metrics();
    loop {
        let m = watch.borrow().clone();
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&to).cloned().flatten())
            .map(|l| l.index);
        if matched.is_some() && matched == m.last_log_index {
            break;
        }
        if started.elapsed() > timeout {
            return Err(Status::deadline_exceeded(format!(
                "member {to} did not catch up within {} ms",
                timeout.as_millis()
            )));
        }
        let _ = tokio::time::timeout(Duration::from_millis(50), watch.changed()).await;
    }

    let hold_ms = svc.config.election_timeout_max_ms * 4 + 1_000;
    for (id, node) in membership.nodes() {
        if *id == to || !membership.voter_ids().any(|v| v == *id) {
            continue;
        }
        if *id == me {
            suppress(svc, hold_ms);
            continue;
        }
        // A voter we cannot reach cannot campaign against the target either.
        if let Ok(mut client) = admin_client(&node.api_addr, svc.config.tls.as_ref()) {
            let req = peer_request(SuppressElectionRequest { millis: hold_ms }, timeout, token);
            if let Err(status) = client.suppress_election(req).await {
                tracing::warn!(
                    member = id,
                    "could not ask a member to hold off elections: {}",
                    status.message()
                );
            }
        }
    }
    svc.raft.runtime_config().heartbeat(false);
    let target = membership
        .get_node(&to)
        .ok_or_else(|| Status::not_found(format!("member {to} has no address")))?;
    let result = async {
        let mut client =
            admin_client(&target.api_addr, svc.config.tls.as_ref()).map_err(Status::unavailable)?;
        let req = peer_request(
            CampaignRequest {
                deadline_millis: hold_ms,
            },
            Duration::from_millis(hold_ms + 1_000),
            token,
        );
        client.campaign(req).await.map(|r| r.into_inner().leader)
    }
    .await;
    svc.raft.runtime_config().heartbeat(true);
    match result {
        Ok(true) => Ok(TransferLeaderReply { leader_id: to }),
        Ok(false) => Err(Status::aborted(format!(
            "member {to} did not win its election; leadership is unchanged or re-elected normally"
        ))),
        Err(status) => Err(Status::unavailable(format!(
            "could not ask member {to} to campaign: {}",
            status.message()
        ))),
    }
}
