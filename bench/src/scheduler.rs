//! `sluice bench scheduler`: one allocation cycle at Mesos' allocator
//! benchmark size, and placements committed per second through three masters.
//!
//! - `scheduler.cycle.<policy>[.busy]`: [`sluice_consensus::scheduler::schedule`]
//!   over N agents and M pending jobs (mixed command tasks and stream jobs,
//!   some spread, some constrained, over ten roles), timed per cycle. `busy`
//!   starts from a cluster whose agents are 7/8 full, so placement has to search.
//! - `scheduler.placements`: jobs are queued on a real three-master cluster
//!   (Raft over RocksDB, in this process), then agents register; the time
//!   until every job runs gives placements committed per second, each
//!   placement checked at apply time on every master.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sluice_consensus::scheduler::schedule;
use sluice_consensus::state::{
    AgentSpec, ClusterState, Constraint, JobKind, JobSpec, JobState, PlacementStrategy, Policy,
    RoleSpec,
};
use sluice_consensus::Command;

use crate::raft::InProcessCluster;
use crate::recorder::Recorder;
use crate::report::{self, Report};

const GIB: u64 = 1 << 30;
const ROLES: usize = 10;
/// Unix ms the synthetic cycles run at.
const NOW_MS: u64 = 1_700_000_000_000;

#[derive(Debug, Args, Clone)]
pub struct SchedulerBenchArgs {
    /// A short smoke run instead of the full one.
    #[arg(long)]
    pub quick: bool,
    /// Agents in the allocation-cycle scenarios [default: 10000, quick: 1000].
    #[arg(long)]
    pub agents: Option<usize>,
    /// Pending jobs per cycle [default: 1000, quick: 100].
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Cycles timed per scenario [default: 20, quick: 3].
    #[arg(long)]
    pub cycles: Option<usize>,
    /// Jobs placed through the three masters (0 skips it) [default: 100000, quick: 5000].
    #[arg(long)]
    pub placements: Option<usize>,
    /// Seed of the synthetic workload.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Output directory [default: bench-results/scheduler-<unix time>].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl SchedulerBenchArgs {
    fn pick(&self, given: Option<usize>, full: usize, quick: usize) -> usize {
        given.unwrap_or(if self.quick { quick } else { full })
    }
}

/// Runs the scheduler suite and prints its table.
pub async fn run(args: SchedulerBenchArgs) -> Result<()> {
    let agents = args.pick(args.agents, 10_000, 1_000);
    let jobs = args.pick(args.jobs, 1_000, 100);
    let cycles = args.pick(args.cycles, 20, 3);
    let placements = args.pick(args.placements, 100_000, 5_000);
    if agents == 0 || jobs == 0 || cycles == 0 {
        bail!("--agents, --jobs and --cycles must be positive");
    }
    let out = report::out_dir_or_default(args.out.as_deref(), "scheduler");
    let mut report = Report::new("scheduler", &out)?;
    eprintln!("bench scheduler: results in {}", out.display());

    let steps = Policy::ALL.len() + 1 + usize::from(placements > 0);
    let mut progress = report::Progress::new("scheduler", steps);
    for policy in Policy::ALL {
        progress.step(format!(
            "allocation cycle, {}: {agents} agents x {jobs} jobs",
            policy.name()
        ));
        cycle_scenario(&mut report, &args, policy, agents, jobs, cycles, false)?;
    }
    progress.step("allocation cycle on a busy cluster (agents 7/8 full), drf");
    cycle_scenario(&mut report, &args, Policy::Drf, agents, jobs, cycles, true)?;
    if placements > 0 {
        progress.step(format!("{placements} placements through three masters"));
        let data = tempfile::tempdir_in(report.out_dir())?;
        placement_scenario(&mut report, data.path(), placements).await?;
    }
    progress.finish();
    report.note(format!(
        "workload (seed {}): 70% command tasks of 1-4 cores and 1-8 GiB, 25% stream jobs of 2-8 shards (half spread), \
         5% constrained to 3 of 40 racks; {ROLES} roles; agents offer 32 cores, 128 GiB",
        args.seed
    ));
    report.note("anchors: Apache Mesos' allocator benchmark takes 1.06 s per cycle at 10,000 agents x 1,000 frameworks; Nomad's C1M placed 3,750 containers/s");
    let summary = report.finish()?;
    println!("{}", report::table(&summary));
    println!("files: {}", out.display());
    Ok(())
}

/// Applies a command to a state built outside Raft, as every master would.
struct Builder {
    state: ClusterState,
    index: u64,
}

impl Builder {
    fn apply(&mut self, mut command: Command) -> Result<()> {
        self.index += 1;
        command.stamp(NOW_MS);
        self.state
            .apply_command(self.index, &command)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("building the benchmark state: {e}"))
    }
}

fn agent_spec(i: usize, cores: u32, memory_gib: u64) -> AgentSpec {
    AgentSpec {
        id: None,
        hostname: format!("agent-{i}"),
        cores: (0..cores).collect(),
        memory_bytes: memory_gib * GIB,
        disk_bytes: 1 << 40,
        attributes: [
            ("rack".to_owned(), format!("r{}", i % 40)),
            ("zone".to_owned(), format!("z{}", i % 3)),
        ]
        .into(),
    }
}

/// A job of the synthetic mix.
pub fn synthetic_job(rng: &mut StdRng, n: usize) -> JobSpec {
    let roll = rng.gen_range(0..100);
    let kind = if !(70..95).contains(&roll) {
        JobKind::Command {
            argv: vec!["work".into()],
            cpus: rng.gen_range(1..=4),
            memory_bytes: rng.gen_range(1..=8) * GIB,
            disk_bytes: 0,
        }
    } else {
        JobKind::Stream {
            spec_toml: "name = \"bench\"".into(),
            parallelism: rng.gen_range(2..=8),
            memory_per_shard_bytes: 2 * GIB,
        }
    };
    let constraints = if roll >= 95 {
        vec![Constraint::parse("rack in (r1, r2, r3)").expect("valid")]
    } else {
        Vec::new()
    };
    JobSpec {
        name: format!("job-{n}"),
        role: format!("role-{}", rng.gen_range(0..ROLES)),
        priority: rng.gen_range(-5..=5),
        estimated_duration_ms: Some(rng.gen_range(1_000..600_000)),
        kind,
        constraints,
        placement: if rng.gen_bool(0.5) {
            PlacementStrategy::Spread
        } else {
            PlacementStrategy::BinPack
        },
        restart: Default::default(),
    }
}

fn cycle_state(
    seed: u64,
    policy: Policy,
    agents: usize,
    jobs: usize,
    busy: bool,
) -> Result<ClusterState> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut b = Builder {
        state: ClusterState::default(),
        index: 0,
    };
    b.apply(Command::SetPolicy { policy })?;
    for r in 0..ROLES {
        b.apply(Command::SetRole(RoleSpec {
            name: format!("role-{r}"),
            weight: 1.0 + (r % 3) as f64,
            quota: None,
            limit: None,
            reservations: Default::default(),
        }))?;
    }
    for i in 0..agents {
        b.apply(Command::RegisterAgent {
            spec: agent_spec(i, 32, 128),
            token: None,
        })?;
    }
    if busy {
        // One filler per agent takes 28 of its 32 cores.
        for i in 0..agents {
            b.apply(Command::SubmitJob {
                job: JobSpec {
                    name: format!("filler-{i}"),
                    role: "role-0".into(),
                    priority: 10,
                    estimated_duration_ms: None,
                    kind: JobKind::Command {
                        argv: vec!["filler".into()],
                        cpus: 28,
                        memory_bytes: 100 * GIB,
                        disk_bytes: 0,
                    },
                    constraints: Vec::new(),
                    placement: PlacementStrategy::BinPack,
                    restart: Default::default(),
                },
                now_ms: 0,
            })?;
        }
        for command in schedule(&b.state, NOW_MS).commands {
            b.apply(command)?;
        }
    }
    for n in 0..jobs {
        b.apply(Command::SubmitJob {
            job: synthetic_job(&mut rng, n),
            now_ms: 0,
        })?;
    }
    Ok(b.state)
}

fn cycle_scenario(
    report: &mut Report,
    args: &SchedulerBenchArgs,
    policy: Policy,
    agents: usize,
    jobs: usize,
    cycles: usize,
    busy: bool,
) -> Result<()> {
    let state = cycle_state(args.seed, policy, agents, jobs, busy)?;
    let mut rec = Recorder::new();
    let mut placed = 0;
    for _ in 0..cycles {
        let started = Instant::now();
        let cycle = schedule(&state, NOW_MS);
        rec.record(started.elapsed());
        placed = cycle.placed;
    }
    let mean = rec.histogram().mean() / 1e9;
    let name = format!(
        "scheduler.cycle.{}{}",
        policy.name(),
        if busy { ".busy" } else { "" }
    );
    report.add(
        &name,
        &format!(
            "one allocation cycle: {agents} agents, {jobs} pending jobs, {placed} placed ({cycles} cycles); ops/s = jobs considered per second"
        ),
        Some(&rec),
        Some(jobs as f64 / mean.max(1e-9)),
    )
}

async fn placement_scenario(report: &mut Report, root: &Path, jobs: usize) -> Result<()> {
    let cluster = InProcessCluster::start_with(root, |config| {
        config.schedule_interval_ms = 20;
        // Nobody heartbeats in this benchmark: liveness must not interfere.
        config.agent_timeout_ms = 3_600_000;
        config.agent_grace_ms = 3_600_000;
    })
    .await?;
    let result = placements(&cluster, jobs, report).await;
    cluster.shutdown().await?;
    result
}

async fn placements(cluster: &InProcessCluster, jobs: usize, report: &mut Report) -> Result<()> {
    let leader = cluster
        .leader()
        .ok_or_else(|| anyhow::anyhow!("no leader among the in-process masters"))?;
    let proposer = leader.proposer.clone();
    let state = leader.state.clone();
    let job = |n: usize| Command::SubmitJob {
        job: JobSpec {
            name: format!("p-{n}"),
            role: "default".into(),
            priority: 0,
            estimated_duration_ms: None,
            kind: JobKind::Command {
                argv: vec!["work".into()],
                cpus: 1,
                memory_bytes: GIB,
                disk_bytes: 0,
            },
            constraints: Vec::new(),
            placement: PlacementStrategy::BinPack,
            restart: Default::default(),
        },
        now_ms: NOW_MS,
    };
    // Queue every job while no agent exists.
    let started = Instant::now();
    for chunk in (0..jobs).collect::<Vec<_>>().chunks(16 * 1024) {
        let results =
            futures::future::join_all(chunk.iter().map(|&n| proposer.propose(job(n)))).await;
        for r in results {
            if let Err(e) = r?.result {
                bail!("submission refused: {e}");
            }
        }
    }
    let submit_secs = started.elapsed().as_secs_f64();
    report.add(
        "scheduler.submit",
        &format!(
            "{jobs} job submissions committed through three masters (batched by the proposer)"
        ),
        None,
        Some(jobs as f64 / submit_secs),
    )?;
    // Then agents arrive: 64 cores each, enough for every job.
    let agents = jobs.div_ceil(64);
    let registrations = futures::future::join_all((0..agents).map(|i| {
        proposer.propose(Command::RegisterAgent {
            spec: agent_spec(i, 64, 256),
            token: None,
        })
    }))
    .await;
    for r in registrations {
        if let Err(e) = r?.result {
            bail!("registration refused: {e}");
        }
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    loop {
        let running = {
            let view = state.read();
            view.state
                .jobs
                .values()
                .filter(|j| j.state == JobState::Running)
                .count()
        };
        if running == jobs {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {running} of {jobs} jobs placed after 600 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    {
        let view = state.read();
        view.state
            .validate()
            .map_err(|e| anyhow::anyhow!("state after the placements breaks an invariant: {e}"))?;
    }
    report.add(
        "scheduler.placements",
        &format!(
            "{jobs} queued jobs placed on {agents} agents once they registered: scheduler cycles on the leader, \
             decisions committed through Raft and checked at apply on every master ({secs:.2} s)"
        ),
        None,
        Some(jobs as f64 / secs),
    )
}
