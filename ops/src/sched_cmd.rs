//! `sluice agent|role|job ...` and `sluice cluster policy ...`: the
//! resource manager's admin commands. Each works against any master.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use sluice_consensus::state::{
    Agent, Change, Constraint, Job, JobKind, JobSpec, JobState, PlacementStrategy, Policy,
    Resources, RestartPolicy, Role, RolePatch, SchedulerSummary,
};
use sluice_consensus::units::{format_bytes, format_duration_ms};
use sluice_consensus::{CommandOutput, MasterClient, Query, Request};

use crate::checkpoints_view::{print_checkpoints, CheckpointsView};
use crate::cli::{
    AgentCommand, ClientArgs, JobCommand, PolicyCommand, RoleCommand, SubmitArgs, TaskCommand,
};
use crate::cluster_cmd::client;
use crate::output::{emit, opt, table};

async fn read<T: serde::de::DeserializeOwned>(client: &MasterClient, query: Query) -> Result<T> {
    let value = client.read(&query, false).await?;
    serde_json::from_value(value).context("undecodable answer from the master")
}

async fn write(args: &ClientArgs, command: Request) -> Result<CommandOutput> {
    Ok(client(args)?.write(&command).await?.output)
}

fn res(r: &Resources) -> String {
    let cores = if r.cores == Resources::UNLIMITED.cores {
        "any".to_owned()
    } else {
        r.cores.to_string()
    };
    let bytes = |b: u64| {
        if b == u64::MAX {
            "any".to_owned()
        } else {
            format_bytes(b)
        }
    };
    format!(
        "{cores} cores, {} memory, {} disk",
        bytes(r.memory_bytes),
        bytes(r.disk_bytes)
    )
}

fn state_name<T: Serialize>(state: &T) -> String {
    serde_json::to_value(state)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub async fn policy(cmd: PolicyCommand) -> Result<()> {
    match cmd {
        PolicyCommand::Show { client: args } => {
            let summary: SchedulerSummary = read(&client(&args)?, Query::Scheduler).await?;
            emit(args.output, &summary, |s| {
                println!("policy: {}", s.policy.name());
                println!(
                    "jobs: {} pending, {} running, {} ended (kept)",
                    s.pending, s.running, s.ended
                );
                println!("offered: {}", res(&s.offered));
                println!("granted: {}", res(&s.granted));
            })
        }
        PolicyCommand::Set {
            policy,
            client: args,
        } => {
            let out = write(&args, Request::SetPolicy { policy }).await?;
            let previous = match out {
                CommandOutput::PolicySet { previous } => previous,
                other => bail!("unexpected answer {other:?}"),
            };
            #[derive(Serialize, serde::Deserialize)]
            struct Set {
                policy: Policy,
                previous: Policy,
            }
            emit(args.output, &Set { policy, previous }, |s| {
                println!(
                    "scheduler policy is now {} (was {})",
                    s.policy.name(),
                    s.previous.name()
                )
            })
        }
    }
}

pub async fn agent(cmd: AgentCommand) -> Result<()> {
    match cmd {
        AgentCommand::List { client: args } => {
            let agents: Vec<Agent> = read(&client(&args)?, Query::Agents).await?;
            emit(args.output, &agents, |agents| {
                let mut t = table(&[
                    "id",
                    "hostname",
                    "state",
                    "cores used",
                    "memory used",
                    "disk used",
                    "tasks",
                    "attributes",
                ]);
                for a in agents {
                    t.add_row(vec![
                        a.id.to_string(),
                        a.hostname.clone(),
                        state_name(&a.state),
                        format!("{}/{}", a.used_cores.len(), a.cores.len()),
                        format!(
                            "{}/{}",
                            format_bytes(a.used_memory_bytes),
                            format_bytes(a.memory_bytes)
                        ),
                        format!(
                            "{}/{}",
                            format_bytes(a.used_disk_bytes),
                            format_bytes(a.disk_bytes)
                        ),
                        a.tasks.len().to_string(),
                        attributes(&a.attributes),
                    ]);
                }
                println!("{t}");
            })
        }
        AgentCommand::Show { id, client: args } => {
            let agent: Agent = read(&client(&args)?, Query::Agent { id }).await?;
            emit(args.output, &agent, |a| {
                println!("agent {} ({}) — {}", a.id, a.hostname, state_name(&a.state));
                if let Some(reason) = &a.lost_reason {
                    println!("lost: {reason}");
                }
                if let Some(drain) = a.drain {
                    println!(
                        "draining since {}; deadline: {}",
                        drain.since_ms,
                        opt(drain.deadline_ms)
                    );
                }
                println!("offers: {}", res(&a.total()));
                println!("free:   {}", res(&a.free()));
                println!("cores:  {:?} (granted {:?})", a.cores, a.used_cores);
                println!("attributes: {}", attributes(&a.attributes));
                let tasks: Vec<String> = a
                    .tasks
                    .iter()
                    .map(|(job, task)| format!("{job}.{task}"))
                    .collect();
                println!(
                    "tasks (job.task): {}",
                    if tasks.is_empty() {
                        "-".into()
                    } else {
                        tasks.join(" ")
                    }
                );
            })
        }
        AgentCommand::Drain {
            id,
            deadline,
            client: args,
        } => {
            let out = write(
                &args,
                Request::DrainAgent {
                    id,
                    deadline_ms: deadline,
                },
            )
            .await?;
            emit(args.output, &out, |out| {
                if let CommandOutput::AgentDraining { id, tasks } = out {
                    let deadline = deadline.map_or_else(
                        || "no deadline: work moves as room appears elsewhere".to_owned(),
                        |d| {
                            format!(
                                "what has not moved in {} returns to the queue",
                                format_duration_ms(d)
                            )
                        },
                    );
                    println!("agent {id} is draining; {tasks} tasks to move; {deadline}");
                }
            })
        }
        AgentCommand::Undrain { id, client: args } => {
            let out = write(&args, Request::UndrainAgent { id }).await?;
            emit(args.output, &out, |_| {
                println!("agent {id} is active again")
            })
        }
    }
}

fn attributes(attrs: &BTreeMap<String, String>) -> String {
    if attrs.is_empty() {
        return "-".into();
    }
    attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A role with what it holds now.
#[derive(Serialize, serde::Deserialize)]
struct RoleView {
    #[serde(flatten)]
    role: Role,
    usage: Resources,
}

async fn role_views(client: &MasterClient) -> Result<Vec<RoleView>> {
    let state: sluice_consensus::ClusterState = read(client, Query::State).await?;
    Ok(state
        .roles
        .values()
        .map(|role| RoleView {
            role: role.clone(),
            usage: state
                .role_usage
                .get(&role.name)
                .copied()
                .unwrap_or_default(),
        })
        .collect())
}

pub async fn role(cmd: RoleCommand) -> Result<()> {
    match cmd {
        RoleCommand::Set {
            name,
            weight,
            quota,
            limit,
            reservations,
            client: args,
        } => {
            let reservations = if reservations.is_empty() {
                Change::Keep
            } else if reservations.iter().all(Option::is_none) {
                Change::Clear
            } else if reservations.iter().any(Option::is_none) {
                bail!("--reserve none removes every reservation: do not combine it with others");
            } else {
                Change::Set(reservations.into_iter().flatten().collect())
            };
            let patch = RolePatch {
                name: name.clone(),
                weight,
                quota: quota.unwrap_or_default(),
                limit: limit.unwrap_or_default(),
                reservations,
            };
            let out = write(&args, Request::UpdateRole(patch)).await?;
            emit(args.output, &out, |out| {
                if let CommandOutput::RoleSet { name, created } = out {
                    println!(
                        "role {name} {}",
                        if *created { "created" } else { "updated" }
                    );
                }
            })
        }
        RoleCommand::List { client: args } => {
            let views = role_views(&client(&args)?).await?;
            emit(args.output, &views, |views| {
                let mut t = table(&["name", "weight", "using", "quota", "limit", "reservations"]);
                for v in views {
                    t.add_row(vec![
                        v.role.name.clone(),
                        v.role.weight.to_string(),
                        res(&v.usage),
                        v.role.quota.as_ref().map_or("-".into(), res),
                        v.role.limit.as_ref().map_or("-".into(), res),
                        v.role.reservations.len().to_string(),
                    ]);
                }
                println!("{t}");
            })
        }
        RoleCommand::Show { name, client: args } => {
            let views = role_views(&client(&args)?).await?;
            let view = views
                .into_iter()
                .find(|v| v.role.name == name)
                .ok_or_else(|| anyhow::anyhow!("unknown role {name:?}"))?;
            emit(args.output, &view, |v| {
                println!("role {} (weight {})", v.role.name, v.role.weight);
                println!("using: {}", res(&v.usage));
                println!("quota: {}", v.role.quota.as_ref().map_or("-".into(), res));
                println!("limit: {}", v.role.limit.as_ref().map_or("-".into(), res));
                for (agent, r) in &v.role.reservations {
                    println!("reserved on agent {agent}: {}", res(r));
                }
            })
        }
        RoleCommand::Remove { name, client: args } => {
            let out = write(&args, Request::RemoveRole { name }).await?;
            emit(args.output, &out, |out| {
                if let CommandOutput::RoleRemoved { name } = out {
                    println!("role {name} removed");
                }
            })
        }
    }
}

/// Builds the job spec from `job submit` flags; the stream spec is checked
/// by the engine first, so a bad one never reaches the cluster.
fn job_spec(args: &SubmitArgs) -> Result<JobSpec> {
    let constraints = args
        .constraints
        .iter()
        .map(|c| Constraint::parse(c).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let (kind, default_name) = if let Some(path) = &args.stream {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let text = match args.checkpoint_interval {
            Some(ms) => with_checkpoint_interval(&text, ms)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            None => text,
        };
        let plan = sluice_engine::spec::load::load_spec_portable(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let parsed = sluice_engine::spec::load::parse_spec(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        drop(plan);
        let parallelism = args.parallelism.unwrap_or(parsed.parallelism as u32);
        let kind = JobKind::Stream {
            spec_toml: text,
            parallelism,
            memory_per_shard_bytes: args.memory.unwrap_or(256 << 20),
        };
        (kind, parsed.name.clone())
    } else {
        let Some(program) = args.argv.first() else {
            bail!("nothing to run: give --stream JOB.toml, or a command after `--` (e.g. `-- sleep 10`)");
        };
        let memory = args
            .memory
            .context("a command task needs --memory (e.g. --memory 512MiB)")?;
        let kind = JobKind::Command {
            argv: args.argv.clone(),
            cpus: args.cpus.unwrap_or(1),
            memory_bytes: memory,
            disk_bytes: args.disk.unwrap_or(0),
        };
        (kind, default_job_name(program))
    };
    let kind_is_stream = matches!(kind, JobKind::Stream { .. });
    Ok(JobSpec {
        name: args.name.clone().unwrap_or(default_name),
        role: args.role.clone(),
        priority: args.priority,
        estimated_duration_ms: args.estimate,
        kind,
        constraints,
        placement: if args.spread {
            PlacementStrategy::Spread
        } else {
            PlacementStrategy::BinPack
        },
        restart: args.restart.unwrap_or(match kind_is_stream {
            // A stream job recovers from its checkpoints: restart it, with backoff.
            true => RestartPolicy::ExponentialBackoff {
                attempts: 10,
                initial_ms: 1000,
                max_ms: 60_000,
            },
            false => RestartPolicy::Never,
        }),
    })
}

/// A command's default job name: its program's file name, with anything a
/// job name may not hold replaced by `-`.
fn default_job_name(program: &str) -> String {
    let file = program.rsplit('/').next().unwrap_or(program);
    let name: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric()
                || sluice_consensus::state::JOB_NAME_PUNCTUATION.contains(c)
            {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "command".to_owned()
    } else {
        name
    }
}

pub async fn job(cmd: JobCommand) -> Result<()> {
    match cmd {
        JobCommand::Submit(args) => {
            let spec = job_spec(&args)?;
            let out = write(&args.client, Request::SubmitJob { job: spec }).await?;
            emit(args.client.output, &out, |out| {
                if let CommandOutput::JobSubmitted { id } = out {
                    println!("job {id} submitted; `sluice job show {id}` follows it");
                }
            })
        }
        JobCommand::List {
            state,
            client: args,
        } => {
            let state = state
                .map(|s| {
                    serde_json::from_value::<JobState>(serde_json::Value::String(s.clone()))
                        .map_err(|_| anyhow::anyhow!("unknown job state {s:?}: one of pending, running, finished, failed, cancelled"))
                })
                .transpose()?;
            let jobs: Vec<Job> = read(&client(&args)?, Query::Jobs { state }).await?;
            emit(args.output, &jobs, |jobs| {
                let mut t = table(&[
                    "id", "name", "role", "state", "prio", "tasks", "each", "agents", "reason",
                ]);
                for j in jobs {
                    let (tasks, each) = j.spec.demand();
                    let mut agents: Vec<u64> = j
                        .tasks
                        .iter()
                        .filter_map(|t| t.grant.as_ref().map(|g| g.agent))
                        .collect();
                    agents.dedup();
                    t.add_row(vec![
                        j.id.to_string(),
                        j.spec.name.clone(),
                        j.spec.role.clone(),
                        state_name(&j.state),
                        j.spec.priority.to_string(),
                        tasks.to_string(),
                        res(&each),
                        format!("{agents:?}"),
                        j.reason.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            })
        }
        JobCommand::Show { id, client: args } => {
            let job: Job = read(&client(&args)?, Query::Job { id }).await?;
            emit(args.output, &job, print_job)
        }
        JobCommand::Cancel { id, client: args } => {
            let out = write(&args, Request::CancelJob { id }).await?;
            emit(args.output, &out, |_| println!("job {id} cancelled"))
        }
        JobCommand::Checkpoints { id, client: args } => {
            let job: Job = read(&client(&args)?, Query::Job { id }).await?;
            let view = CheckpointsView::of(&job);
            emit(args.output, &view, print_checkpoints)
        }
    }
}

/// The stream spec `text` with `checkpoint_interval_ms` set to `ms`.
fn with_checkpoint_interval(text: &str, ms: u64) -> Result<String> {
    let mut table: toml::Table = text.parse()?;
    let ms = i64::try_from(ms).map_err(|_| anyhow::anyhow!("checkpoint interval too long"))?;
    table.insert("checkpoint_interval_ms".into(), toml::Value::Integer(ms));
    Ok(toml::to_string(&table)?)
}

/// `JOB.TASK` or `JOB` (task 0).
fn parse_task_ref(text: &str) -> Result<(u64, u32)> {
    let bad = || anyhow::anyhow!("task {text:?}: expected JOB.TASK (e.g. 7.0) or JOB");
    match text.split_once('.') {
        Some((job, task)) => Ok((
            job.trim().parse().map_err(|_| bad())?,
            task.trim().parse().map_err(|_| bad())?,
        )),
        None => Ok((text.trim().parse().map_err(|_| bad())?, 0)),
    }
}

pub async fn task(cmd: TaskCommand) -> Result<()> {
    match cmd {
        TaskCommand::Logs {
            task,
            follow,
            stderr,
            tail,
            client: args,
        } => {
            let (job, task) = parse_task_ref(&task)?;
            task_logs(&args, job, task, follow, stderr, tail).await
        }
        TaskCommand::Kill { task, client: args } => {
            let (job, task) = parse_task_ref(&task)?;
            let out = write(&args, Request::KillTask { job, task }).await?;
            emit(args.output, &out, |_| {
                println!("task {job}.{task} killed; job {job} cancelled")
            })
        }
    }
}

/// Finds the agent that runs (or ran) a task and streams its log from it.
async fn task_logs(
    args: &ClientArgs,
    job: u64,
    task: u32,
    follow: bool,
    stderr: bool,
    tail: Option<u64>,
) -> Result<()> {
    let client = client(args)?;
    let tls = args.tls.load()?;
    let stream = if stderr {
        sluice_agent::LogStream::Stderr
    } else {
        sluice_agent::LogStream::Stdout
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(args.timeout_ms);
    loop {
        let found: Job = read(&client, Query::Job { id: job }).await?;
        let slot = found
            .tasks
            .get(task as usize)
            .ok_or_else(|| anyhow::anyhow!("job {job} has no task {task}"))?;
        if matches!(found.spec.kind, JobKind::Stream { .. }) {
            bail!("job {job} is a stream job; its output goes to its sinks, not to task logs");
        }
        let Some(agent_id) = slot.last_agent else {
            bail!(
                "task {job}.{task} has not been placed yet ({})",
                found.reason.unwrap_or_default()
            );
        };
        let agent: Agent = read(&client, Query::Agent { id: agent_id }).await?;
        let Some(addr) = sluice_agent::api::published_api_addr(&agent.attributes) else {
            bail!("agent {agent_id} publishes no API address (an older agent?)");
        };
        // The agent sees a ticket that reads this job alone for a minute,
        // never this command's own token.
        let ticket = match &args.token {
            Some(_) => client
                .write(&Request::IssueLogTicket { job })
                .await?
                .secret
                .ok_or_else(|| anyhow::anyhow!("the leader answered without a log ticket"))
                .map(Some)?,
            None => None,
        };
        let mut out = tokio::io::stdout();
        match sluice_agent::task_logs(
            addr,
            tls.as_ref(),
            ticket.as_deref(),
            job,
            task,
            stream,
            tail,
            follow,
            &mut out,
        )
        .await
        {
            // Placed but not started yet: wait for it.
            Err(sluice_agent::AgentError::AgentApi { code, .. })
                if code == sluice_agent::api::Code::NotFound
                    && slot.state == sluice_consensus::state::TaskState::Staging
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            // The reader of stdout left (`sluice task logs 3.0 | head`).
            Err(sluice_agent::AgentError::Output(e))
                if e.kind() == std::io::ErrorKind::BrokenPipe =>
            {
                return Ok(())
            }
            result => return result.map_err(Into::into),
        }
    }
}

fn print_job(j: &Job) {
    let (tasks, each) = j.spec.demand();
    println!("job {} ({}) — {}", j.id, j.spec.name, state_name(&j.state));
    if let Some(reason) = &j.reason {
        let label = if j.state == JobState::Pending {
            "waiting"
        } else {
            "reason"
        };
        println!("{label}: {reason}");
    }
    let kind = match &j.spec.kind {
        JobKind::Stream { .. } => format!("stream job, {tasks} shards"),
        JobKind::Command { argv, .. } => format!("command: {}", argv.join(" ")),
    };
    println!("{kind}; each task needs {}", res(&each));
    println!(
        "role {}, priority {}, estimate {}, placement {}",
        j.spec.role,
        j.spec.priority,
        j.spec
            .estimated_duration_ms
            .map_or("-".into(), format_duration_ms),
        state_name(&j.spec.placement)
    );
    if !j.spec.constraints.is_empty() {
        let list: Vec<String> = j.spec.constraints.iter().map(ToString::to_string).collect();
        println!("constraints: {}", list.join(", "));
    }
    println!(
        "preemptions: {}, time run before this run: {}",
        j.preemptions,
        format_duration_ms(j.run_ms)
    );
    if j.spec.restart != sluice_consensus::state::RestartPolicy::Never || j.restarts > 0 {
        println!(
            "restarts: {} of {} ({:?})",
            j.restarts,
            j.spec.restart.attempts(),
            j.spec.restart
        );
    }
    if matches!(j.spec.kind, JobKind::Stream { .. }) {
        let last = j
            .checkpoints
            .last()
            .map_or("none".into(), |c| c.id.to_string());
        let from = j
            .restore_from
            .map_or("none (started afresh)".into(), |id| id.to_string());
        let taking = j
            .checkpoint_in_progress
            .as_ref()
            .map_or(String::new(), |p| {
                format!("; checkpoint {} in progress", p.id)
            });
        println!(
            "run {}; resumed from checkpoint: {from}; latest completed checkpoint: {last}{taking}; \
             failed checkpoints: {}",
            j.attempt, j.checkpoints_failed
        );
    }
    let mut t = table(&["task", "state", "agent", "cores", "memory", "message"]);
    for (i, task) in j.tasks.iter().enumerate() {
        t.add_row(vec![
            i.to_string(),
            state_name(&task.state),
            opt(task.grant.as_ref().map(|g| g.agent)),
            task.grant
                .as_ref()
                .map_or("-".into(), |g| format!("{:?}", g.cores)),
            task.grant
                .as_ref()
                .map_or("-".into(), |g| format_bytes(g.memory_bytes)),
            task.message.clone().unwrap_or_default(),
        ]);
    }
    println!("{t}");
    println!("history:");
    for e in &j.events {
        println!("  #{:<8} {}", e.index, e.message);
    }
}
