//! `sluice cluster ...`: forming, inspecting and changing the master cluster.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sluice_consensus::proto::StatusReply;
use sluice_consensus::{ClusterState, MasterClient, Query, Request};

use crate::cli::{ClientArgs, ClusterCommand, SnapshotCommand};
use crate::output::{emit, opt, table};

/// Format tag of `cluster snapshot save` files.
pub const SNAPSHOT_FORMAT: &str = "sluice-cluster-state/1";

pub fn client(args: &ClientArgs) -> Result<MasterClient> {
    Ok(
        MasterClient::new(args.masters.clone(), Duration::from_millis(args.timeout_ms))?
            .with_tls(args.tls.load()?)
            .with_token(args.token.as_ref().map(|t| t.expose().to_owned())),
    )
}

pub async fn run(cmd: ClusterCommand) -> Result<()> {
    match cmd {
        ClusterCommand::Init { client: args } => init(&args).await,
        ClusterCommand::Status {
            client: args,
            stale,
        } => status(&args, stale).await,
        ClusterCommand::AddMaster {
            api_addr,
            client: args,
        } => {
            let reply = client(&args)?.add_master(&api_addr).await?;
            let view = MembershipView {
                voters: reply.voters,
                log_index: reply.log_index,
            };
            emit(args.output, &view, |v| {
                println!(
                    "added {api_addr}; voters now {:?} (log index {})",
                    v.voters, v.log_index
                )
            })
        }
        ClusterCommand::RemoveMaster { id, client: args } => {
            let reply = client(&args)?.remove_master(id).await?;
            let view = MembershipView {
                voters: reply.voters,
                log_index: reply.log_index,
            };
            emit(args.output, &view, |v| {
                println!(
                    "removed master {id}; voters now {:?} (log index {})",
                    v.voters, v.log_index
                )
            })
        }
        ClusterCommand::TransferLeader { id, client: args } => {
            let reply = client(&args)?.transfer_leader(id).await?;
            #[derive(Serialize, serde::Deserialize)]
            struct Leader {
                leader_id: u64,
            }
            emit(
                args.output,
                &Leader {
                    leader_id: reply.leader_id,
                },
                |l| println!("master {} is now the leader", l.leader_id),
            )
        }
        ClusterCommand::Snapshot(SnapshotCommand::Save { file, client: args }) => {
            save(&args, &file).await
        }
        ClusterCommand::Snapshot(SnapshotCommand::Restore { file, client: args }) => {
            restore(&args, &file).await
        }
        ClusterCommand::Policy(cmd) => crate::sched_cmd::policy(cmd).await,
    }
}

#[derive(Serialize, serde::Deserialize)]
struct MembershipView {
    voters: Vec<u64>,
    log_index: u64,
}

async fn init(args: &ClientArgs) -> Result<()> {
    let client = client(args)?;
    let members = client.init(&args.masters).await?;
    let leader = client
        .leader_status()
        .await
        .context("cluster formed, but no leader was elected")?;
    #[derive(Serialize, serde::Deserialize)]
    struct Initialized {
        members: Vec<u64>,
        leader_id: u64,
        term: u64,
    }
    let view = Initialized {
        members: members.iter().map(|m| m.id).collect(),
        leader_id: leader.id,
        term: leader.term,
    };
    emit(args.output, &view, |v| {
        println!(
            "cluster formed with masters {:?}; leader is {} (term {})",
            v.members, v.leader_id, v.term
        )
    })
}

/// The cluster as `cluster status` shows it.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ClusterStatusView {
    pub leader_id: Option<u64>,
    pub term: u64,
    pub committed_index: Option<u64>,
    pub members: Vec<MemberView>,
    /// The scheduler's policy and queue (absent if the read failed).
    pub scheduler: Option<sluice_consensus::state::SchedulerSummary>,
}

/// One member's line in `cluster status`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct MemberView {
    pub id: u64,
    pub api_addr: String,
    pub raft_addr: String,
    pub voter: bool,
    /// leader, follower, candidate, learner, or unreachable.
    pub role: String,
    /// For a leader: whether it holds its lease (a majority acknowledged it
    /// recently). A leader without it acts as none until one does.
    #[serde(default)]
    pub lease_held: Option<bool>,
    pub term: Option<u64>,
    pub last_log_index: Option<u64>,
    pub applied_index: Option<u64>,
    pub snapshot_index: Option<u64>,
    /// Entries the member is behind the leader's log (from the leader's view).
    pub lag: Option<u64>,
}

/// Collects the leader's view plus every member's own.
pub async fn collect_status(client: &MasterClient, stale: bool) -> Result<ClusterStatusView> {
    let leader: StatusReply = if stale {
        client.status_of(&client.seeds()[0]).await?
    } else {
        client.leader_status().await?
    };
    let mut members = Vec::new();
    for member in &leader.members {
        let own = if member.id == leader.id {
            Some(leader.clone())
        } else {
            client.status_of(&member.api_addr).await.ok()
        };
        let lag = match (
            leader.role.as_str(),
            leader.last_log_index,
            member.matched_index,
        ) {
            ("leader", Some(last), Some(matched)) => Some(last.saturating_sub(matched)),
            ("leader", Some(last), None) => Some(last),
            _ => None,
        };
        members.push(MemberView {
            id: member.id,
            api_addr: member.api_addr.clone(),
            raft_addr: member.raft_addr.clone(),
            voter: member.voter,
            role: own
                .as_ref()
                .map_or_else(|| "unreachable".to_owned(), |s| s.role.clone()),
            lease_held: own.as_ref().and_then(|s| s.lease_held),
            term: own.as_ref().map(|s| s.term),
            last_log_index: own.as_ref().and_then(|s| s.last_log_index),
            applied_index: own.as_ref().and_then(|s| s.applied_index),
            snapshot_index: own.as_ref().and_then(|s| s.snapshot_index),
            lag,
        });
    }
    let scheduler = client
        .read(&Query::Scheduler, stale)
        .await
        .ok()
        .and_then(|v| serde_json::from_value(v).ok());
    Ok(ClusterStatusView {
        leader_id: leader.leader_id,
        term: leader.term,
        committed_index: leader.committed_index,
        members,
        scheduler,
    })
}

pub fn print_status(view: &ClusterStatusView) {
    println!(
        "leader: {}   term: {}   committed index: {}",
        opt(view.leader_id),
        view.term,
        opt(view.committed_index)
    );
    if let Some(s) = &view.scheduler {
        println!(
            "scheduler: {}   jobs: {} pending, {} running   cores granted: {}/{}",
            s.policy.name(),
            s.pending,
            s.running,
            s.granted.cores,
            s.offered.cores
        );
    }
    let mut t = table(&[
        "id", "role", "voter", "api", "raft", "term", "last log", "applied", "snapshot", "lag",
    ]);
    for m in &view.members {
        let role = if m.lease_held == Some(false) {
            format!("{} (no quorum)", m.role)
        } else {
            m.role.clone()
        };
        t.add_row(vec![
            m.id.to_string(),
            role,
            if m.voter { "yes" } else { "no" }.to_owned(),
            m.api_addr.clone(),
            m.raft_addr.clone(),
            opt(m.term),
            opt(m.last_log_index),
            opt(m.applied_index),
            opt(m.snapshot_index),
            opt(m.lag),
        ]);
    }
    println!("{t}");
}

async fn status(args: &ClientArgs, stale: bool) -> Result<()> {
    let view = collect_status(&client(args)?, stale).await?;
    emit(args.output, &view, print_status)
}

#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    format: String,
    state: ClusterState,
}

async fn save(args: &ClientArgs, file: &Path) -> Result<()> {
    let value = client(args)?.read(&Query::State, false).await?;
    let state: ClusterState =
        serde_json::from_value(value).context("decoding the state the leader sent")?;
    let doc = SnapshotFile {
        format: SNAPSHOT_FORMAT.to_owned(),
        state,
    };
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, file)
        .with_context(|| format!("renaming {} to {}", tmp.display(), file.display()))?;
    #[derive(Serialize, serde::Deserialize)]
    struct Saved {
        file: std::path::PathBuf,
        agents: usize,
        roles: usize,
    }
    let saved = Saved {
        file: file.to_path_buf(),
        agents: doc.state.agents.len(),
        roles: doc.state.roles.len(),
    };
    emit(args.output, &saved, |s| {
        println!(
            "saved {} agents and {} roles to {}",
            s.agents,
            s.roles,
            s.file.display()
        )
    })
}

async fn restore(args: &ClientArgs, file: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let doc: SnapshotFile = serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a Sluice cluster snapshot (line {} column {}): {e}",
            file.display(),
            e.line(),
            e.column()
        )
    })?;
    if doc.format != SNAPSHOT_FORMAT {
        bail!(
            "{}: format {:?} is not supported (expected {SNAPSHOT_FORMAT:?}); nothing changed",
            file.display(),
            doc.format
        );
    }
    doc.state
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: invalid state: {e}; nothing changed", file.display()))?;
    let written = client(args)?
        .write(&Request::RestoreState {
            snapshot: serde_json::to_string(&doc.state)?,
        })
        .await?;
    #[derive(Serialize, serde::Deserialize)]
    struct Restored {
        log_index: u64,
        output: sluice_consensus::CommandOutput,
    }
    let restored = Restored {
        log_index: written.log_index,
        output: written.output,
    };
    emit(args.output, &restored, |r| {
        println!("restored {} at log index {}", file.display(), r.log_index)
    })
}
