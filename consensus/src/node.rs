//! One running master: its data dir, Raft, and the two gRPC servers.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::admin::AdminService;
use crate::config::MasterConfig;
use crate::leader::{self, Liveness};
use crate::lease::LeaderLease;
use crate::network::NetworkFactory;
use crate::proposer::Proposer;
use crate::proto::master_server::MasterServer;
use crate::proto::raft_server::RaftServer;
use crate::raft_service::RaftService;
use crate::types::{LogStore, Raft, StateHandle, StateMachine};

/// Why a master could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    DataDir(#[from] sluice_storage::DirError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("cannot listen on {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("raft: {0}")]
    Raft(String),
}

/// A started master. Dropping it does not stop it: call [`MasterHandle::shutdown`].
pub struct MasterHandle {
    pub raft: Raft,
    /// Batches commands into Raft entries; use it to write in-process.
    pub proposer: Proposer,
    pub state: StateHandle,
    pub config: Arc<MasterConfig>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    duties: JoinHandle<()>,
}

impl std::fmt::Debug for MasterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterHandle")
            .field("id", &self.config.id)
            .finish()
    }
}

impl MasterHandle {
    /// Opens the data dir, starts Raft and serves both APIs.
    pub async fn start(config: MasterConfig) -> Result<Self, MasterError> {
        let raft_config = config.raft_config().map_err(MasterError::Config)?;
        let dir = sluice_storage::MemberDir::open(&config.data_dir, config.id)?;
        let log_store = LogStore::open(&dir).map_err(|e| MasterError::Storage(e.to_string()))?;
        let state_machine =
            StateMachine::open(&dir).map_err(|e| MasterError::Storage(e.to_string()))?;
        let state = state_machine.handle();

        // Bind before starting Raft so a taken port fails fast and cleanly.
        let raft_listener = bind("Raft address", &config.raft_addr).await?;
        let api_listener = bind("API address", &config.api_addr).await?;

        let raft = Raft::new(
            config.id,
            raft_config,
            NetworkFactory::new(
                std::time::Duration::from_millis(config.heartbeat_interval_ms),
                config.tls.clone(),
            ),
            log_store,
            state_machine,
        )
        .await
        .map_err(|e| MasterError::Raft(e.to_string()))?;
        let config = Arc::new(config);
        let (stop, stopped) = watch::channel(false);
        let raft_server = server_builder(&config)?
            .add_service(
                RaftServer::new(RaftService::new(raft.clone(), config.tls.clone()))
                    .max_decoding_message_size(MESSAGE_BYTES_MAX),
            )
            .serve_with_incoming_shutdown(incoming(raft_listener), wait_stop(stopped.clone()));
        let proposer = Proposer::start(raft.clone());
        let liveness = Arc::new(Liveness::default());
        let lease = LeaderLease::start(&raft, &config, stopped.clone());
        let admin = AdminService::new(
            raft.clone(),
            proposer.clone(),
            state.clone(),
            config.clone(),
            liveness.clone(),
            lease.clone(),
        );
        let duties = tokio::spawn(leader::run(
            raft.clone(),
            proposer.clone(),
            state.clone(),
            liveness,
            lease,
            config.clone(),
            stopped.clone(),
        ));
        let api_server = server_builder(&config)?
            .add_service(MasterServer::new(admin).max_decoding_message_size(MESSAGE_BYTES_MAX))
            .serve_with_incoming_shutdown(incoming(api_listener), wait_stop(stopped));
        let servers = vec![tokio::spawn(raft_server), tokio::spawn(api_server)];
        match &config.tls {
            Some(tls) => tracing::info!(
                cluster = tls.cluster(),
                acl = config.acl,
                "mutual TLS on both ports"
            ),
            None => tracing::warn!(
                acl = config.acl,
                "INSECURE: TLS is off (--insecure): anyone who can reach this master's ports can \
                 read and change the cluster and join its Raft group"
            ),
        }
        tracing::info!(id = config.id, raft = %config.raft_addr, api = %config.api_addr, dir = %config.data_dir.display(), "master started");
        Ok(Self {
            raft,
            proposer,
            state,
            config,
            stop,
            servers,
            duties,
        })
    }

    /// Stops serving and shuts Raft down; the data dir stays consistent.
    pub async fn shutdown(self) -> Result<(), MasterError> {
        let _ = self.stop.send(true);
        for server in self.servers {
            let _ = server.await;
        }
        let _ = self.duties.await;
        self.raft
            .shutdown()
            .await
            .map_err(|e| MasterError::Raft(e.to_string()))
    }
}

/// Largest gRPC message a master accepts (snapshot chunks, log batches).
pub use sluice_api::wire::MESSAGE_BYTES_MAX;

/// A gRPC server builder, serving mutual TLS when the master has it.
fn server_builder(config: &MasterConfig) -> Result<tonic::transport::Server, MasterError> {
    let builder = tonic::transport::Server::builder();
    match &config.tls {
        Some(tls) => builder
            .tls_config(tls.server_config())
            .map_err(|e| MasterError::Config(format!("TLS: {e}"))),
        None => Ok(builder),
    }
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, MasterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MasterError::Bind {
            what,
            addr: addr.to_owned(),
            source,
        })
}

/// Accepted connections with Nagle off: gRPC writes a reply as several small
/// frames, and Nagle plus delayed ACKs would hold them for tens of ms.
fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(std::time::Duration::from_secs(10)))
}

async fn wait_stop(mut stopped: watch::Receiver<bool>) {
    while !*stopped.borrow() {
        if stopped.changed().await.is_err() {
            return;
        }
    }
}
