//! `sluice master`: one Raft member, until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use sluice_consensus::{MasterConfig, MasterHandle};

use crate::cli::{MasterArgs, RaftTuning, TlsArgs};

/// The master's TOML config file; every key is optional and flags win.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterFile {
    id: Option<u64>,
    raft_addr: Option<String>,
    api_addr: Option<String>,
    data_dir: Option<PathBuf>,
    advertise_raft_addr: Option<String>,
    advertise_api_addr: Option<String>,
    heartbeat_ms: Option<u64>,
    election_timeout_min_ms: Option<u64>,
    election_timeout_max_ms: Option<u64>,
    snapshot_logs: Option<u64>,
    logs_kept: Option<u64>,
    request_timeout_ms: Option<u64>,
    agent_timeout_ms: Option<u64>,
    agent_grace_ms: Option<u64>,
    schedule_interval_ms: Option<u64>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    acl: bool,
}

fn read_file(path: &Path) -> Result<MasterFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

impl RaftTuning {
    /// Applies the settings that were given onto `config`.
    pub fn apply(&self, config: &mut MasterConfig) {
        let set = |slot: &mut u64, value: Option<u64>| {
            if let Some(v) = value {
                *slot = v;
            }
        };
        set(&mut config.heartbeat_interval_ms, self.heartbeat_ms);
        set(
            &mut config.election_timeout_min_ms,
            self.election_timeout_min_ms,
        );
        set(
            &mut config.election_timeout_max_ms,
            self.election_timeout_max_ms,
        );
        set(&mut config.snapshot_logs, self.snapshot_logs);
        set(&mut config.logs_kept_after_snapshot, self.logs_kept);
        set(&mut config.request_timeout_ms, self.request_timeout_ms);
        set(&mut config.agent_timeout_ms, self.agent_timeout_ms);
        set(&mut config.agent_grace_ms, self.agent_grace_ms);
        set(&mut config.schedule_interval_ms, self.schedule_interval_ms);
    }

    fn or_file(self, file: &MasterFile) -> Self {
        Self {
            heartbeat_ms: self.heartbeat_ms.or(file.heartbeat_ms),
            election_timeout_min_ms: self
                .election_timeout_min_ms
                .or(file.election_timeout_min_ms),
            election_timeout_max_ms: self
                .election_timeout_max_ms
                .or(file.election_timeout_max_ms),
            snapshot_logs: self.snapshot_logs.or(file.snapshot_logs),
            logs_kept: self.logs_kept.or(file.logs_kept),
            request_timeout_ms: self.request_timeout_ms.or(file.request_timeout_ms),
            agent_timeout_ms: self.agent_timeout_ms.or(file.agent_timeout_ms),
            agent_grace_ms: self.agent_grace_ms.or(file.agent_grace_ms),
            schedule_interval_ms: self.schedule_interval_ms.or(file.schedule_interval_ms),
        }
    }
}

fn resolve(args: MasterArgs) -> Result<MasterConfig> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => MasterFile::default(),
    };
    let Some(id) = args.id.or(file.id) else {
        bail!("missing the member id: pass --id N (or `id` in --config, or SLUICE_ID)");
    };
    let Some(raft_addr) = args.raft_addr.clone().or(file.raft_addr.clone()) else {
        bail!("missing the Raft address: pass --raft-addr HOST:PORT");
    };
    let Some(api_addr) = args.api_addr.clone().or(file.api_addr.clone()) else {
        bail!("missing the API address: pass --api-addr HOST:PORT");
    };
    let Some(data_dir) = args.data_dir.clone().or(file.data_dir.clone()) else {
        bail!("missing the data dir: pass --data-dir DIR");
    };
    let mut config = MasterConfig::new(id, raft_addr, api_addr, data_dir);
    config.advertise_raft_addr = args
        .advertise_raft_addr
        .clone()
        .or(file.advertise_raft_addr.clone());
    config.advertise_api_addr = args
        .advertise_api_addr
        .clone()
        .or(file.advertise_api_addr.clone());
    config.tls = TlsArgs {
        tls_ca: args.tls.tls_ca.clone().or(file.tls_ca.clone()),
        tls_cert: args.tls.tls_cert.clone().or(file.tls_cert.clone()),
        tls_key: args.tls.tls_key.clone().or(file.tls_key.clone()),
    }
    .for_daemon(args.insecure || file.insecure, "master")?;
    config.acl = args.acl || file.acl;
    args.tuning.or_file(&file).apply(&mut config);
    config
        .raft_config()
        .map_err(|e| anyhow::anyhow!("invalid settings: {e}"))?;
    Ok(config)
}

pub async fn run(args: MasterArgs) -> Result<()> {
    let config = resolve(args)?;
    let id = config.id;
    let api = config.api_addr.clone();
    let master = MasterHandle::start(config)
        .await
        .with_context(|| format!("starting master {id}"))?;
    eprintln!("master {id} serving the admin API on {api}; Ctrl-C to stop");
    wait_for_signal().await?;
    eprintln!("master {id} shutting down");
    master.shutdown().await?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
        _ = term.recv() => {}
    }
    Ok(())
}
