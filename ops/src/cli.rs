//! Command-line definitions of the `sluice` binary.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sluice_consensus::state::Change;

mod security;
pub use security::{AclCommand, AclTokenCommand, TlsArgs, TlsCommand};

/// Sluice: a cluster resource manager and stream processing engine.
///
/// Masters keep the cluster's allocation state replicated with Raft over
/// RocksDB. Every admin command accepts any master's address.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true, after_help = EXIT_CODES_HELP)]
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

/// The exit statuses, as `--help` lists them (kept equal to the constants
/// in `main.rs` by a test).
pub const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  failed, and nothing was changed (refused, rejected, unreachable, bad input)
  2  the command line is wrong (unknown flag, bad value); nothing was sent
  3  outcome unknown: a write was sent but it may or may not be applied
     (a commit timeout, a connection lost mid-request); read the state
     before retrying";

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
    /// Administer the master cluster: form it, inspect it, change its
    /// members, choose the scheduler's policy.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Run an agent on this machine (`sluice agent --masters A,B,C
    /// --data-dir DIR`), or inspect and drain agents (`sluice agent list`).
    Agent(AgentCli),
    /// Roles (tenants): weights, quotas, limits, reservations.
    #[command(subcommand)]
    Role(RoleCommand),
    /// Submit, inspect and cancel jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Act on one task of a job.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Measure Sluice: latency histograms and throughput.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// The cluster's certificate authority and certificates (mutual TLS).
    #[command(subcommand)]
    Tls(TlsCommand),
    /// ACL tokens: bootstrap the first, create, list and revoke others.
    #[command(subcommand)]
    Acl(AclCommand),
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
    /// The ACL token to send with every request (when the masters run with --acl).
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<sluice_security::token::Secret>,
    #[command(flatten)]
    pub tls: TlsArgs,
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
    pub tls: TlsArgs,
    /// Serve plain text, without TLS: anyone who reaches the ports can read
    /// and change the cluster. Only for tests and trusted networks.
    #[arg(long, env = "SLUICE_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,
    /// Require an ACL token that allows it on every API call (bootstrap the
    /// first with `sluice acl bootstrap`).
    #[arg(long, env = "SLUICE_ACL", value_parser = clap::builder::BoolishValueParser::new())]
    pub acl: bool,
    #[command(flatten)]
    pub tuning: RaftTuning,
}

/// Raft timing, snapshot and scheduling settings.
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
    /// The leader marks an agent Lost after this many milliseconds without
    /// a heartbeat [default: 10000].
    #[arg(long, env = "SLUICE_AGENT_TIMEOUT_MS")]
    pub agent_timeout_ms: Option<u64>,
    /// A new leader waits this many milliseconds for agents to reconnect
    /// before it counts their silence [default: 10000].
    #[arg(long, env = "SLUICE_AGENT_GRACE_MS")]
    pub agent_grace_ms: Option<u64>,
    /// How often the leader checks liveness and schedules, in milliseconds [default: 100].
    #[arg(long, env = "SLUICE_SCHEDULE_INTERVAL_MS")]
    pub schedule_interval_ms: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job spec (TOML); see engine/examples/jobs/.
    pub file: PathBuf,
    /// Only check the spec, run nothing.
    #[arg(long)]
    pub check: bool,
    /// Take a checkpoint this often (`1s`, `500ms`; `0` turns checkpoints off), overriding
    /// the spec's `checkpoint_interval_ms`. Needs checkpoint storage.
    #[arg(long, value_parser = parse_duration)]
    pub checkpoint_interval: Option<u64>,
    /// Where checkpoints go (`file:///DIR` or `s3://BUCKET/PREFIX`), overriding the spec's
    /// `checkpoint_storage`. A job run again with the same name resumes from its latest
    /// completed checkpoint: file sinks are then exactly-once; stdout and TCP sinks, the late
    /// output and dead letters are at-least-once, and a TCP source is at-most-once (it cannot
    /// replay).
    #[arg(long)]
    pub checkpoint_storage: Option<String>,
    /// Where stateful operators keep their state, overriding the spec's `state_backend`:
    /// in memory, or in RocksDB on local disk (state larger than memory, incremental
    /// checkpoints).
    #[arg(long, value_enum)]
    pub state_backend: Option<StateBackendArg>,
    /// Local scratch directory of RocksDB state (rebuilt from checkpoints), overriding the
    /// spec's `state_dir`.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// How to print the job's report.
    #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// `--state-backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateBackendArg {
    /// In memory.
    Memory,
    /// In RocksDB on local disk.
    Rocksdb,
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
    /// Agents to start on loopback (0: masters only).
    #[arg(long, default_value_t = 1)]
    pub agents: u16,
    /// Do not submit the demo stream job.
    #[arg(long)]
    pub no_demo: bool,
    /// Run without TLS and ACLs (plain text, no tokens).
    #[arg(long)]
    pub insecure: bool,
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
    /// Show or choose the scheduler's queue policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// The policy, the queue and the cluster's capacity at a glance.
    Show {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Choose the policy: fcfs, sjf, srtf, priority or drf.
    Set {
        policy: sluice_consensus::state::Policy,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCli {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    #[command(flatten)]
    pub run: AgentRunArgs,
}

/// The agent daemon's settings.
#[derive(Debug, Args, Clone)]
pub struct AgentRunArgs {
    /// Any master API addresses (HOST:PORT, comma-separated); the agent
    /// follows the leader by itself.
    #[arg(
        long,
        env = "SLUICE_MASTERS",
        value_delimiter = ',',
        default_value = "127.0.0.1:7101"
    )]
    pub masters: Vec<String>,
    /// The agent's directory: identity, status journal, task sandboxes.
    #[arg(long, env = "SLUICE_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cores to offer: a count (`4`: cores 0-3) or a list (`0-3,6`)
    /// [default: those this process may run on].
    #[arg(long, env = "SLUICE_AGENT_CORES")]
    pub cores: Option<String>,
    /// Memory to offer (e.g. 16GiB) [default: the machine's].
    #[arg(long, env = "SLUICE_AGENT_MEMORY", value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Disk to offer (e.g. 100GiB) [default: free space of the data dir].
    #[arg(long, env = "SLUICE_AGENT_DISK", value_parser = parse_size)]
    pub disk: Option<u64>,
    /// Attribute for placement constraints (repeatable): `--attr rack=r1`.
    #[arg(long = "attr")]
    pub attributes: Vec<String>,
    /// Name to register with [default: the kernel's host name].
    #[arg(long)]
    pub hostname: Option<String>,
    /// Address other agents dial for stream data.
    #[arg(long, default_value = "127.0.0.1")]
    pub data_addr: std::net::IpAddr,
    /// Ports for stream data, `FIRST-LAST`.
    #[arg(long, default_value = "7300-7399")]
    pub data_ports: String,
    /// HOST:PORT of the agent's API (task logs), published to the masters
    /// for the CLI to dial; port 0 picks a free one.
    #[arg(long, env = "SLUICE_AGENT_API_ADDR", default_value = "127.0.0.1:7400")]
    pub api_addr: std::net::SocketAddr,
    /// Milliseconds between heartbeats to the leader.
    #[arg(long, default_value_t = 1000)]
    pub heartbeat_ms: u64,
    /// Checkpoint storage for stream jobs whose spec names none
    /// (`file:///SHARED/DIR` or `s3://BUCKET/PREFIX`): unbounded jobs then take
    /// a checkpoint every 10 s unless their spec says otherwise. It must
    /// outlive this agent: the agent a job moves to resumes from it.
    #[arg(long, env = "SLUICE_CHECKPOINT_STORAGE")]
    pub checkpoint_storage: Option<String>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Talk to the masters and serve the agent API in plain text, without
    /// TLS. Only for tests and trusted networks.
    #[arg(long, env = "SLUICE_INSECURE", value_parser = clap::builder::BoolishValueParser::new())]
    pub insecure: bool,
    /// The agent's ACL token (policy `agent`), when the masters run with --acl.
    #[arg(long, env = "SLUICE_TOKEN", hide_env_values = true)]
    pub token: Option<sluice_security::token::Secret>,
    /// Run command tasks as this (unprivileged) user; the agent must run as
    /// root to switch to it.
    #[arg(long, env = "SLUICE_TASK_USER")]
    pub task_user: Option<String>,
    /// Let an agent running as root run command tasks as root (refused
    /// without this flag or --task-user).
    #[arg(
        long,
        env = "SLUICE_ALLOW_ROOT_TASKS",
        value_parser = clap::builder::BoolishValueParser::new(),
        conflicts_with = "task_user"
    )]
    pub allow_root_tasks: bool,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Every agent: state, cores, memory and disk, used and offered.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One agent: resources, attributes, drain, and the tasks placed on it.
    Show {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop placing work on an agent and move its work elsewhere.
    Drain {
        id: u64,
        /// After this long (e.g. 10m), work that could not move yet is
        /// returned to the queue; without it, work moves only where there is room.
        #[arg(long, value_parser = parse_duration)]
        deadline: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Let a draining agent take work again.
    Undrain {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Create a role, or change the settings given of an existing one (the
    /// others stay as they are; a new role starts from weight 1, no quota,
    /// no limit, nothing reserved).
    Set {
        name: String,
        /// Share under DRF relative to other roles: a finite number in
        /// (0, 1000000].
        #[arg(long, value_parser = parse_weight)]
        weight: Option<f64>,
        /// Guaranteed resources, e.g. `cores=4,memory=16GiB,disk=100GiB`;
        /// `none` removes the quota.
        #[arg(long, value_parser = parse_quota_change)]
        quota: Option<Change<sluice_consensus::state::Resources>>,
        /// Most resources the role may hold, same form as --quota; a
        /// resource not named is not limited; `none` removes the limit.
        #[arg(long, value_parser = parse_limit_change)]
        limit: Option<Change<sluice_consensus::state::Resources>>,
        /// Resources set aside for the role on one agent:
        /// `AGENT_ID:cores=2,memory=4GiB` (repeatable; replaces the role's
        /// reservations); `none` removes them all.
        #[arg(long = "reserve", value_parser = parse_reservation)]
        reservations: Vec<Option<(u64, sluice_consensus::state::Resources)>>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Every role with its usage.
    List {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One role.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a role no live job uses.
    Remove {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Queue a job: a stream job (`--stream JOB.toml`) or a command task
    /// (`--cpus N --memory SIZE -- PROGRAM ARGS...`).
    Submit(Box<SubmitArgs>),
    /// Jobs, newest last.
    List {
        /// Only jobs in this state: pending, running, finished, failed, cancelled.
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// One job: state, why it waits, where its tasks run, its history.
    Show {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a job and free its resources.
    Cancel {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A stream job's checkpoints as the masters record them: the completed ones
    /// kept, the one in progress and the latest failed ones, with id, trigger
    /// time, duration, size and per-shard alignment; and the one its current run
    /// resumed from.
    Checkpoints {
        id: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Print a command task's stdout (or stderr), fetched from its agent.
    Logs {
        /// `JOB.TASK`, or `JOB` for task 0.
        task: String,
        /// Keep printing as the task writes, until it ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Standard error instead of standard output.
        #[arg(long)]
        stderr: bool,
        /// Only the last N bytes.
        #[arg(long, value_parser = parse_size)]
        tail: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Kill a task (`JOB.TASK`, or `JOB` for task 0); its job ends Cancelled
    /// and its resources are freed.
    Kill {
        task: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// A name to recognise the job by [default: the program or spec name].
    #[arg(long)]
    pub name: Option<String>,
    /// The role (tenant) it runs under.
    #[arg(long, default_value = sluice_consensus::state::DEFAULT_ROLE)]
    pub role: String,
    /// Higher runs first under `priority` (and may preempt lower), -1000..=1000.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
    /// Expected run time of bounded work (e.g. 90s), used by SJF and SRTF.
    #[arg(long, value_parser = parse_duration)]
    pub estimate: Option<u64>,
    /// Agent attribute constraint (repeatable): `rack = r1`, `zone != a`,
    /// `disk in (ssd, nvme)`.
    #[arg(long = "constraint")]
    pub constraints: Vec<String>,
    /// Spread the job's tasks over agents instead of packing them.
    #[arg(long)]
    pub spread: bool,
    /// What to do when a task fails: `never` (the job fails),
    /// `fixed:ATTEMPTS:DELAY` (e.g. `fixed:3:10s`) or
    /// `exponential:ATTEMPTS:FIRST:MAX` (e.g. `exponential:10:1s:5m`)
    /// [default: exponential:10:1s:1m for stream jobs, never for command
    /// tasks]. A restarted stream job resumes from its latest checkpoint;
    /// each restart and its reason are in the job's history.
    #[arg(long, value_parser = parse_restart)]
    pub restart: Option<sluice_consensus::state::RestartPolicy>,
    /// Take a checkpoint of the stream job this often (`1s`), overriding the
    /// spec's `checkpoint_interval_ms`; needs `checkpoint_storage` in the spec.
    #[arg(long, requires = "stream", value_parser = parse_duration)]
    pub checkpoint_interval: Option<u64>,
    /// A stream job spec (TOML), checked before it is submitted.
    #[arg(long, conflicts_with_all = ["cpus", "disk", "argv"])]
    pub stream: Option<PathBuf>,
    /// Shards of the stream job [default: the spec's parallelism].
    #[arg(long, requires = "stream")]
    pub parallelism: Option<u32>,
    /// Memory for each shard of a stream job (e.g. 512MiB), or for the
    /// command task.
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Cores of the command task.
    #[arg(long)]
    pub cpus: Option<u32>,
    /// Disk for the command task (e.g. 10GiB).
    #[arg(long, value_parser = parse_size)]
    pub disk: Option<u64>,
    /// The command task's program and arguments (after `--`).
    #[arg(last = true)]
    pub argv: Vec<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn parse_duration(text: &str) -> Result<u64, String> {
    sluice_consensus::units::parse_duration_ms(text)
}

/// `never`, `fixed:ATTEMPTS:DELAY` or `exponential:ATTEMPTS:FIRST:MAX`.
pub fn parse_restart(text: &str) -> Result<sluice_consensus::state::RestartPolicy, String> {
    use sluice_consensus::state::RestartPolicy;
    let parts: Vec<&str> = text.trim().split(':').map(str::trim).collect();
    let attempts = |t: &str| {
        t.parse::<u32>()
            .map_err(|_| format!("restart attempts {t:?} is not a whole number"))
    };
    let policy = match parts.as_slice() {
        ["never"] => RestartPolicy::Never,
        ["fixed", n, delay] => RestartPolicy::FixedDelay {
            attempts: attempts(n)?,
            delay_ms: parse_duration(delay)?,
        },
        ["exponential", n, first, max] => RestartPolicy::ExponentialBackoff {
            attempts: attempts(n)?,
            initial_ms: parse_duration(first)?,
            max_ms: parse_duration(max)?,
        },
        _ => {
            return Err(format!(
                "restart {text:?}: expected never, fixed:ATTEMPTS:DELAY (fixed:3:10s) or \
                 exponential:ATTEMPTS:FIRST:MAX (exponential:10:1s:5m)"
            ))
        }
    };
    policy.validate()?;
    Ok(policy)
}

fn parse_size(text: &str) -> Result<u64, String> {
    sluice_consensus::units::parse_bytes(text)
}

/// `cores=4,memory=16GiB,disk=100GiB`; absent parts are zero.
pub fn parse_resources(text: &str) -> Result<sluice_consensus::state::Resources, String> {
    parse_resources_from(text, sluice_consensus::state::Resources::ZERO)
}

/// As [`parse_resources`], absent parts unlimited.
pub fn parse_limit(text: &str) -> Result<sluice_consensus::state::Resources, String> {
    parse_resources_from(text, sluice_consensus::state::Resources::UNLIMITED)
}

fn parse_resources_from(
    text: &str,
    mut resources: sluice_consensus::state::Resources,
) -> Result<sluice_consensus::state::Resources, String> {
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?}: expected KEY=VALUE with cores, memory or disk"))?;
        match key.trim() {
            "cores" | "cpus" => {
                resources.cores = value
                    .trim()
                    .parse()
                    .map_err(|_| format!("cores {value:?} is not a whole number"))?
            }
            "memory" | "mem" => {
                resources.memory_bytes = sluice_consensus::units::parse_bytes(value)?
            }
            "disk" => resources.disk_bytes = sluice_consensus::units::parse_bytes(value)?,
            other => {
                return Err(format!(
                    "unknown resource {other:?}: use cores, memory or disk"
                ))
            }
        }
    }
    Ok(resources)
}

/// A role's DRF weight: finite and in (0, 1e6], as the masters require.
pub fn parse_weight(text: &str) -> Result<f64, String> {
    const WEIGHT_MAX: f64 = 1e6;
    let weight: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{:?} is not a number", clip_arg(text)))?;
    if !(weight.is_finite() && weight > 0.0 && weight <= WEIGHT_MAX) {
        return Err(format!(
            "{} is out of range: a weight is a finite number in (0, {WEIGHT_MAX}]",
            clip_arg(text)
        ));
    }
    Ok(weight)
}

/// An argument quoted back in an error, bounded.
fn clip_arg(text: &str) -> String {
    sluice_consensus::text::clip(text, 64).into_owned()
}

fn parse_quota_change(text: &str) -> Result<Change<sluice_consensus::state::Resources>, String> {
    if text.trim() == "none" {
        return Ok(Change::Clear);
    }
    parse_resources(text).map(Change::Set)
}

fn parse_limit_change(text: &str) -> Result<Change<sluice_consensus::state::Resources>, String> {
    if text.trim() == "none" {
        return Ok(Change::Clear);
    }
    parse_limit(text).map(Change::Set)
}

/// `AGENT_ID:RESOURCES`, or `none` (no reservations).
fn parse_reservation(
    text: &str,
) -> Result<Option<(u64, sluice_consensus::state::Resources)>, String> {
    if text.trim() == "none" {
        return Ok(None);
    }
    let (agent, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("{text:?}: expected AGENT_ID:cores=N,memory=SIZE"))?;
    let agent = agent
        .trim()
        .parse()
        .map_err(|_| format!("{agent:?} is not an agent id"))?;
    Ok(Some((agent, parse_resources(rest)?)))
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
    /// The scheduler: one allocation cycle at 10,000 agents x 1,000 jobs per
    /// policy, and placements committed per second through three masters.
    Scheduler(sluice_bench::scheduler::SchedulerBenchArgs),
    /// Master failover: leader kill -> first commit, and a running stream
    /// job's latency before, during and after a leader kill.
    Failover(sluice_bench::failover::FailoverBenchArgs),
    /// Inter-shard exchange: CPU cost per record and throughput of the local
    /// ring mesh and of the TCP path between agents.
    Exchange(sluice_bench::exchange::ExchangeBenchArgs),
    /// Checkpoints: Nexmark q5 and q7 with checkpoints off, every 10 s and every
    /// 1 s; throughput cost, checkpoint duration, shard pause, alignment.
    Checkpoint(sluice_bench::checkpoint::CheckpointBenchArgs),
    /// Every suite in turn (raft, engine, scheduler, failover, exchange), each in its
    /// own directory under --out.
    All(AllBenchArgs),
    /// Compare two runs (summary.json files or result dirs): each metric's
    /// ratio, regressions flagged; exits 2 if any metric regressed.
    Compare(CompareArgs),
}

#[derive(Debug, Args)]
pub struct AllBenchArgs {
    /// Short smoke runs of every suite.
    #[arg(long)]
    pub quick: bool,
    /// Output directory [default: bench-results/all-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The earlier run.
    pub old: PathBuf,
    /// The later run.
    pub new: PathBuf,
    /// A change beyond this many percent is a regression or an improvement.
    #[arg(long, default_value_t = 10.0)]
    pub threshold_percent: f64,
}
