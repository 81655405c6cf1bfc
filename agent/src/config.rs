//! Settings of one agent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

/// How often the agent heartbeats the leader by default. The masters mark an
/// agent Lost after 10 s of silence by default, so this leaves room for
/// several missed beats.
pub const HEARTBEAT_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// How long one request to the masters may take (following the leader
/// included) before it counts as failed and is retried.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// How long [`crate::Agent::start`] keeps trying to register before giving up.
pub const REGISTER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
/// How long a task has between SIGTERM and SIGKILL when it is stopped.
pub const KILL_GRACE_DEFAULT: Duration = Duration::from_secs(3);
/// Ports tried for the stream data plane: job J listens on
/// `start + J % len` so that every agent computes its peers' ports alike.
pub const DATA_PORTS_DEFAULT: RangeInclusive<u16> = 7100..=7199;
/// Agent attribute that publishes the data-plane address to peers.
pub const DATA_ADDR_ATTRIBUTE: &str = "sluice.data_addr";
/// Agent attribute that publishes the data-plane port range to peers.
pub const DATA_PORTS_ATTRIBUTE: &str = "sluice.data_ports";
/// Agent attribute that publishes the address of the agent's own API (task
/// logs), as bound: `HOST:PORT`.
pub const API_ADDR_ATTRIBUTE: &str = "sluice.api_addr";
/// Where the agent's API listens by default: loopback, a port the kernel
/// picks (published in [`API_ADDR_ATTRIBUTE`]).
pub const API_ADDR_DEFAULT: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

const _: () = assert!(HEARTBEAT_INTERVAL_DEFAULT.as_millis() * 5 <= 10_000);

/// Everything needed to start one agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Master API addresses (HOST:PORT); any one is enough, the agent
    /// follows the leader by itself.
    pub masters: Vec<String>,
    /// Where the agent keeps its identity, its journal and task files.
    pub data_dir: PathBuf,
    /// Core ids to offer; None offers every core this process may run on.
    pub cores: Option<BTreeSet<u32>>,
    /// Memory to offer; None offers the machine's total memory.
    pub memory_bytes: Option<u64>,
    /// Disk to offer; None offers the space available under `data_dir`.
    pub disk_bytes: Option<u64>,
    /// Attributes for placement constraints (`zone=a`).
    pub attributes: BTreeMap<String, String>,
    /// None uses the machine's host name.
    pub hostname: Option<String>,
    pub heartbeat_interval: Duration,
    pub request_timeout: Duration,
    pub register_timeout: Duration,
    pub kill_grace: Duration,
    /// Address the stream data plane listens on and other agents dial.
    pub data_addr: IpAddr,
    /// Ports of the stream data plane (see [`DATA_PORTS_DEFAULT`]).
    pub data_ports: RangeInclusive<u16>,
    /// Where the agent's API (task logs) listens; port 0 lets the kernel
    /// pick one. The bound address is published to the masters as
    /// [`API_ADDR_ATTRIBUTE`], so the IP must be one clients can dial.
    pub api_addr: SocketAddr,
    /// Checkpoint storage (`file:///DIR`, `s3://BUCKET/PREFIX`) for stream jobs whose spec
    /// names none; it must outlive this agent (a shared directory, object storage), since the
    /// agent a job moves to resumes from what is there.
    pub checkpoint_storage: Option<String>,
    /// Mutual TLS to the masters and on the agent's API (an agent
    /// certificate); None is plain text (`--insecure`).
    pub tls: Option<sluice_security::Tls>,
    /// The agent's ACL token (policy `agent`), sent with every call to the
    /// masters when their ACLs are on.
    pub token: Option<sluice_security::token::Secret>,
    /// The user command tasks run as, and whose permissions every file a
    /// stream job opens is checked with (the agent must run as root to
    /// switch).
    pub task_user: Option<String>,
    /// Lets an agent running as root run command tasks and stream jobs as
    /// root (without `task_user`); refused otherwise.
    pub allow_root_tasks: bool,
}

impl AgentConfig {
    /// A config with defaults: detected resources, loopback data plane.
    pub fn new(masters: Vec<String>, data_dir: PathBuf) -> Self {
        Self {
            masters,
            data_dir,
            cores: None,
            memory_bytes: None,
            disk_bytes: None,
            attributes: BTreeMap::new(),
            hostname: None,
            heartbeat_interval: HEARTBEAT_INTERVAL_DEFAULT,
            request_timeout: REQUEST_TIMEOUT_DEFAULT,
            register_timeout: REGISTER_TIMEOUT_DEFAULT,
            kill_grace: KILL_GRACE_DEFAULT,
            data_addr: IpAddr::from([127, 0, 0, 1]),
            data_ports: DATA_PORTS_DEFAULT,
            api_addr: API_ADDR_DEFAULT,
            checkpoint_storage: None,
            tls: None,
            token: None,
            task_user: None,
            allow_root_tasks: false,
        }
    }

    /// Checks what can be checked before touching the disk or the network.
    pub fn validate(&self) -> Result<(), String> {
        if self.masters.is_empty() {
            return Err("no master address given (--masters HOST:PORT,...)".into());
        }
        if self.heartbeat_interval.is_zero() {
            return Err("heartbeat interval must be above zero".into());
        }
        if self.request_timeout.is_zero() || self.register_timeout.is_zero() {
            return Err("request and register timeouts must be above zero".into());
        }
        if self.data_ports.is_empty() {
            return Err(format!("data port range {:?} is empty", self.data_ports));
        }
        if self.data_addr.is_unspecified() {
            return Err(format!(
                "data address {} binds every interface, which other agents cannot dial; \
                 give an address they can reach",
                self.data_addr
            ));
        }
        if self.api_addr.ip().is_unspecified() {
            return Err(format!(
                "API address {} binds every interface, but it is published for clients \
                 (`sluice task logs`) to dial; give an address they can reach",
                self.api_addr
            ));
        }
        if let Some(cores) = &self.cores {
            if cores.is_empty() {
                return Err("the core list is empty; offer at least one core".into());
            }
        }
        if self.memory_bytes == Some(0) {
            return Err("memory must be above zero".into());
        }
        for key in self.attributes.keys() {
            if key.starts_with("sluice.") {
                return Err(format!(
                    "attribute {key:?}: names starting with `sluice.` are reserved for the agent"
                ));
            }
        }
        Ok(())
    }
}
