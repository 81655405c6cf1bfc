//! Command-line definitions of the `sluice` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sluice: a cluster resource manager and stream processing engine.
///
/// Masters keep the cluster's allocation state replicated with Raft over
/// RocksDB. Every admin command accepts any master's address.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log filter (tracing env-filter syntax), e.g. `info` or `sluice=debug`.
    #[arg(
        long,
        global = true,
        env = "SLUICE_LOG",
        default_value = "warn,openraft=error"
    )]
    pub log: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local cluster in one process: three masters on loopback, real
    /// Raft, real RocksDB on disk, real gRPC.
    Dev(DevArgs),
    /// Run one master (a Raft member).
    Master(MasterArgs),
    /// Run a stream job (TOML spec) with the engine on this machine, no
    /// cluster; ends when its sources are exhausted and every window fired.
    Run(RunArgs),
    /// Administer the master cluster: form it, inspect it, change its members.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Measure Sluice: latency histograms and throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
}

/// How admin commands print their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Readable tables.
    Table,
    /// One JSON document on stdout.
    Json,
}

/// Options shared by every command that talks to the masters.
#[derive(Debug, Args, Clone)]
pub struct ClientArgs {
    /// Any master API addresses (HOST:PORT, comma-separated); requests reach
    /// the leader by themselves.
    #[arg(
        long,
        env = "SLUICE_MASTERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7101"
    )]
    pub masters: Vec<String>,
    /// Output format.
    #[arg(long, short = 'o', env = "SLUICE_OUTPUT", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Give up on a request after this many milliseconds.
    #[arg(long, env = "SLUICE_TIMEOUT_MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

#[derive(Debug, Args)]
pub struct MasterArgs {
    /// TOML file with any of the settings below (flags and SLUICE_* variables win).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// This member's id; must stay the same for the life of its data dir.
    #[arg(long, env = "SLUICE_ID")]
    pub id: Option<u64>,
    /// HOST:PORT for Raft traffic from other masters.
    #[arg(long, env = "SLUICE_RAFT_ADDR")]
    pub raft_addr: Option<String>,
    /// HOST:PORT for the admin API (CLI, agents).
    #[arg(long, env = "SLUICE_API_ADDR")]
    pub api_addr: Option<String>,
    /// Directory for this member's RocksDB; created if missing.
    #[arg(long, env = "SLUICE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The Raft address peers should dial, if not the bound one (e.g. when
    /// binding 0.0.0.0 or behind NAT).
    #[arg(long, env = "SLUICE_ADVERTISE_RAFT_ADDR")]
    pub advertise_raft_addr: Option<String>,
    /// The API address clients and peers should dial, if not the bound one.
    #[arg(long, env = "SLUICE_ADVERTISE_API_ADDR")]
    pub advertise_api_addr: Option<String>,
    #[command(flatten)]
    pub tuning: RaftTuning,
}

/// Raft timing and snapshot settings.
#[derive(Debug, Args, Clone, Default)]
pub struct RaftTuning {
    /// Leader heartbeat interval in milliseconds [default: 50].
    #[arg(long, env = "SLUICE_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Lower bound of the randomized election timeout in milliseconds [default: 150].
    #[arg(long, env = "SLUICE_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Upper bound of the randomized election timeout in milliseconds [default: 300].
    #[arg(long, env = "SLUICE_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Build a snapshot after this many applied entries [default: 10000].
    #[arg(long, env = "SLUICE_SNAPSHOT_LOGS")]
    pub snapshot_logs: Option<u64>,
    /// Keep this many entries behind a snapshot for slow followers [default: 1000].
    #[arg(long, env = "SLUICE_LOGS_KEPT")]
    pub logs_kept: Option<u64>,
    /// Deadline of a write or linearizable read in milliseconds [default: 5000].
    #[arg(long, env = "SLUICE_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job spec (TOML); see engine/examples/jobs/.
    pub file: PathBuf,
    /// Only check the spec, run nothing.
    #[arg(long)]
    pub check: bool,
    /// How to print the job's report.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Keep the masters' data here (reused on the next run); default: a fresh
    /// temporary directory, removed on exit.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// First port: master N serves its API on BASE+N and Raft on BASE+10+N.
    #[arg(long, default_value_t = 7100)]
    pub base_port: u16,
    /// Start, print the cluster status and exit (for scripts and tests).
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub tuning: RaftTuning,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Form a new cluster from running, new masters (given by API address).
    Init {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Members, leader, term, commit and applied index, each member's lag.
    Status {
        #[command(flatten)]
        client: ClientArgs,
        /// Report the contacted member's local view instead of asking the leader.
        #[arg(long)]
        stale: bool,
    },
    /// Add a running, new master (by its API address) as a voter.
    AddMaster {
        /// The new master's API address.
        api_addr: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove master ID from the cluster.
    RemoveMaster {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make master ID the leader.
    TransferLeader {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Save or restore the cluster's replicated state.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Write the current state (read linearizably) to FILE.
    Save {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Replace the cluster's state with the one saved in FILE (through Raft).
    Restore {
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Stream engine: Nexmark q0-q7 events per CPU-second, and end-to-end
    /// TCP ingest-to-sink latency at fixed offered rates.
    Engine(sluice_bench::engine::EngineBenchArgs),
    /// Raft commit latency and throughput on a local three-master cluster,
    /// the disk's fdatasync floor, and leader failover time.
    Raft(sluice_bench::raft::RaftBenchArgs),
}
