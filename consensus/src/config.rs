//! Settings of one master.

use std::path::PathBuf;
use std::sync::Arc;

use openraft::SnapshotPolicy;

use crate::types::NodeId;

/// Everything needed to start one master. Defaults suit a LAN: a dead
/// leader is replaced in well under a second.
#[derive(Debug, Clone)]
pub struct MasterConfig {
    pub id: NodeId,
    /// HOST:PORT peers send Raft messages to.
    pub raft_addr: String,
    /// HOST:PORT of the admin API (CLI, agents).
    pub api_addr: String,
    /// The Raft address peers are told to use, when it differs from the one
    /// bound (0.0.0.0, NAT, containers).
    pub advertise_raft_addr: Option<String>,
    /// The API address clients and peers are told to use.
    pub advertise_api_addr: Option<String>,
    pub data_dir: PathBuf,
    /// How often the leader heartbeats followers.
    pub heartbeat_interval_ms: u64,
    /// A follower that hears nothing for a random time in
    /// [min, max] starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Entries applied since the last snapshot that trigger a new one.
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot (for slow followers).
    pub logs_kept_after_snapshot: u64,
    /// How long a write or linearizable read may wait for commit.
    pub request_timeout_ms: u64,
    /// An agent silent this long is marked Lost by the leader.
    pub agent_timeout_ms: u64,
    /// After becoming leader, how long to let agents reconnect before
    /// counting their silence.
    pub agent_grace_ms: u64,
    /// How often the leader checks liveness and runs the scheduler.
    pub schedule_interval_ms: u64,
    /// Mutual TLS on both ports and to peers; None is plain text (`--insecure`).
    pub tls: Option<sluice_security::Tls>,
    /// Whether every API call must carry an ACL token that allows it.
    pub acl: bool,
}

pub const HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 50;
pub const ELECTION_TIMEOUT_MIN_MS_DEFAULT: u64 = 150;
pub const ELECTION_TIMEOUT_MAX_MS_DEFAULT: u64 = 300;
pub const SNAPSHOT_LOGS_DEFAULT: u64 = 10_000;
pub const LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT: u64 = 1_000;
pub const REQUEST_TIMEOUT_MS_DEFAULT: u64 = 5_000;
pub const AGENT_TIMEOUT_MS_DEFAULT: u64 = 10_000;
pub const AGENT_GRACE_MS_DEFAULT: u64 = 10_000;
pub const SCHEDULE_INTERVAL_MS_DEFAULT: u64 = 100;
/// Most entries in one AppendEntries RPC.
pub const REPLICATION_ENTRIES_MAX: u64 = 8;

const _: () = assert!(HEARTBEAT_INTERVAL_MS_DEFAULT * 3 <= ELECTION_TIMEOUT_MIN_MS_DEFAULT);
const _: () = assert!(ELECTION_TIMEOUT_MIN_MS_DEFAULT < ELECTION_TIMEOUT_MAX_MS_DEFAULT);
const _: () = assert!(ELECTION_TIMEOUT_MAX_MS_DEFAULT < REQUEST_TIMEOUT_MS_DEFAULT);

impl MasterConfig {
    pub fn new(id: NodeId, raft_addr: String, api_addr: String, data_dir: PathBuf) -> Self {
        Self {
            id,
            raft_addr,
            api_addr,
            advertise_raft_addr: None,
            advertise_api_addr: None,
            data_dir,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS_DEFAULT,
            election_timeout_min_ms: ELECTION_TIMEOUT_MIN_MS_DEFAULT,
            election_timeout_max_ms: ELECTION_TIMEOUT_MAX_MS_DEFAULT,
            snapshot_logs: SNAPSHOT_LOGS_DEFAULT,
            logs_kept_after_snapshot: LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT,
            request_timeout_ms: REQUEST_TIMEOUT_MS_DEFAULT,
            agent_timeout_ms: AGENT_TIMEOUT_MS_DEFAULT,
            agent_grace_ms: AGENT_GRACE_MS_DEFAULT,
            schedule_interval_ms: SCHEDULE_INTERVAL_MS_DEFAULT,
            tls: None,
            acl: false,
        }
    }

    /// The Raft address others use to reach this member.
    pub fn public_raft_addr(&self) -> &str {
        self.advertise_raft_addr
            .as_deref()
            .unwrap_or(&self.raft_addr)
    }

    /// The API address others use to reach this member.
    pub fn public_api_addr(&self) -> &str {
        self.advertise_api_addr.as_deref().unwrap_or(&self.api_addr)
    }

    /// Checks the addresses: each advertised one must be reachable by others,
    /// so a wildcard IP (bind to every interface) needs an explicit one.
    pub fn check_addresses(&self) -> Result<(), String> {
        for (what, flag, addr) in [
            ("Raft", "--advertise-raft-addr", self.public_raft_addr()),
            ("API", "--advertise-api-addr", self.public_api_addr()),
        ] {
            let Some((host, port)) = addr.rsplit_once(':') else {
                return Err(format!("{what} address {addr:?} is not HOST:PORT"));
            };
            if port.parse::<u16>().is_err() || host.is_empty() {
                return Err(format!("{what} address {addr:?} is not HOST:PORT"));
            }
            let unspecified = host
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_unspecified());
            if unspecified {
                return Err(format!(
                    "{what} address {addr} binds every interface, which others cannot dial; \
                     pass {flag} HOST:PORT with an address they can reach"
                ));
            }
        }
        Ok(())
    }

    /// The openraft configuration, validated; the error says which setting is wrong.
    pub fn raft_config(&self) -> Result<Arc<openraft::Config>, String> {
        self.check_addresses()?;
        if self.heartbeat_interval_ms == 0 {
            return Err("heartbeat interval must be above 0 ms".into());
        }
        if self.election_timeout_min_ms < self.heartbeat_interval_ms * 2 {
            return Err(format!(
                "election timeout min ({} ms) must be at least twice the heartbeat interval ({} ms)",
                self.election_timeout_min_ms, self.heartbeat_interval_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(format!(
                "election timeout max ({} ms) must be above min ({} ms)",
                self.election_timeout_max_ms, self.election_timeout_min_ms
            ));
        }
        if self.agent_timeout_ms == 0 || self.schedule_interval_ms == 0 {
            return Err("agent timeout and schedule interval must be above 0 ms".into());
        }
        if self.snapshot_logs == 0 {
            return Err("snapshot threshold must be at least 1 entry".into());
        }
        let config = openraft::Config {
            cluster_name: "sluice".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_logs),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            // Replication RPCs must finish well within an election timeout.
            install_snapshot_timeout: self.election_timeout_max_ms.max(1000),
            // openraft 0.9 gives an AppendEntries RPC one heartbeat interval
            // to complete; entries are batches of up to 1024 commands, so a
            // small count keeps each RPC well inside that deadline.
            max_payload_entries: REPLICATION_ENTRIES_MAX,
            ..Default::default()
        };
        config.validate().map(Arc::new).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(raft: &str, api: &str) -> MasterConfig {
        MasterConfig::new(1, raft.into(), api.into(), PathBuf::from("/tmp/x"))
    }

    #[test]
    fn wildcard_binds_need_an_advertised_address() {
        let mut c = config("0.0.0.0:7201", "127.0.0.1:7101");
        let err = c.raft_config().unwrap_err();
        assert!(err.contains("--advertise-raft-addr"), "{err}");
        c.advertise_raft_addr = Some("10.0.0.1:7201".into());
        assert!(c.raft_config().is_ok());
        assert_eq!(c.public_raft_addr(), "10.0.0.1:7201");
        let err = config("127.0.0.1:7201", "[::]:7101")
            .raft_config()
            .unwrap_err();
        assert!(err.contains("--advertise-api-addr"), "{err}");
        let err = config("no-port", "127.0.0.1:7101")
            .raft_config()
            .unwrap_err();
        assert!(err.contains("not HOST:PORT"), "{err}");
    }

    #[test]
    fn timing_relations_are_checked() {
        let mut c = config("127.0.0.1:1", "127.0.0.1:2");
        assert!(c.raft_config().is_ok());
        c.election_timeout_max_ms = c.election_timeout_min_ms;
        assert!(c.raft_config().unwrap_err().contains("must be above min"));
        let mut c = config("127.0.0.1:1", "127.0.0.1:2");
        c.election_timeout_min_ms = c.heartbeat_interval_ms;
        assert!(c.raft_config().unwrap_err().contains("twice the heartbeat"));
    }
}
