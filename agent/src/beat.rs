//! One heartbeat of the agent: what the masters want running here, and the
//! data-plane addresses of the peers its spread stream jobs need.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use sluice_api::model::{
    Agent as AgentRecord, AgentAssignment, AgentId, AgentSpec, AgentState, JobKind, TaskState,
};
use sluice_api::{ClientError, MasterClient, Query, Request};

use crate::config::{DATA_ADDR_ATTRIBUTE, DATA_PORTS_ATTRIBUTE};

/// A heartbeat's outcome, with what spread stream jobs need to start.
pub(crate) struct Beat {
    pub(crate) result: Result<AgentAssignment, ClientError>,
    /// Data-plane listen addresses of peers of spread stream jobs, by agent.
    pub(crate) peer_data:
        BTreeMap<AgentId, Result<(IpAddr, std::ops::RangeInclusive<u16>), String>>,
}

/// One heartbeat; re-registers first when the masters say the agent is Lost,
/// or that its token acts for no agent yet (a token made before tokens were
/// bound to their agents: registering binds it).
pub(crate) async fn heartbeat(client: &MasterClient, id: AgentId, spec: &AgentSpec) -> Beat {
    let mut result = client.heartbeat(id).await;
    let unbound = matches!(
        &result,
        Err(ClientError::Failed { code: tonic::Code::PermissionDenied, message, .. })
            if message.contains("acts for no agent yet")
    );
    if unbound {
        tracing::warn!(
            id,
            "this agent's token acts for no agent yet; registering again to bind it"
        );
    }
    if unbound || matches!(&result, Ok(a) if a.state == AgentState::Lost) {
        if !unbound {
            tracing::warn!(id, "the masters marked this agent Lost; registering again");
        }
        match client.write(&Request::RegisterAgent(spec.clone())).await {
            Ok(_) => result = client.heartbeat(id).await,
            Err(e) => result = Err(e),
        }
    }
    let mut peer_data = BTreeMap::new();
    if let Ok(assignment) = &result {
        let peers: BTreeSet<AgentId> = assignment
            .tasks
            .iter()
            .filter(|a| a.state == TaskState::Staging && matches!(a.kind, JobKind::Stream { .. }))
            .flat_map(|a| a.peers.iter().flatten().copied())
            .filter(|&p| p != id)
            .collect();
        for peer in peers {
            peer_data.insert(peer, peer_data_addr(client, peer).await);
        }
    }
    Beat { result, peer_data }
}

/// Reads a peer agent's published data-plane address and port range.
async fn peer_data_addr(
    client: &MasterClient,
    peer: AgentId,
) -> Result<(IpAddr, std::ops::RangeInclusive<u16>), String> {
    let value = client
        .read(&Query::Agent { id: peer }, true)
        .await
        .map_err(|e| format!("cannot read agent {peer}: {e}"))?;
    let agent: AgentRecord =
        serde_json::from_value(value).map_err(|e| format!("bad agent {peer} record: {e}"))?;
    let ip = agent
        .attributes
        .get(DATA_ADDR_ATTRIBUTE)
        .and_then(|a| a.parse::<IpAddr>().ok())
        .ok_or_else(|| format!("agent {peer} publishes no valid {DATA_ADDR_ATTRIBUTE}"))?;
    let ports = agent
        .attributes
        .get(DATA_PORTS_ATTRIBUTE)
        .and_then(|p| p.split_once('-'))
        .and_then(|(a, b)| Some(a.parse::<u16>().ok()?..=b.parse::<u16>().ok()?))
        .filter(|r| !r.is_empty())
        .ok_or_else(|| format!("agent {peer} publishes no valid {DATA_PORTS_ATTRIBUTE}"))?;
    Ok((ip, ports))
}
