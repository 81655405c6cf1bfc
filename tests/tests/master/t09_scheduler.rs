use std::collections::BTreeMap;
use std::time::Duration;

use sluice_consensus::state::{AgentState, Grant, JobState};
use sluice_consensus::Query;
use sluice_tests::*;

fn job_json(stdout: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(stdout)?)
}

/// Jobs submitted through the CLI are placed on heartbeating agents; a job
/// bigger than any agent waits and says why; bad requests are refused; an
/// agent that stops heartbeating is marked Lost and its work re-placed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_jobs_are_placed_and_a_silent_agent_s_work_moves() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = ProcessCluster::start(tmp.path(), 3, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let client = std::sync::Arc::new(cluster.client(&[], Duration::from_secs(20))?);
    let as_a = std::sync::Arc::new(
        cluster
            .agent_client("agent-a", Duration::from_secs(20))
            .await?,
    );
    let as_b = std::sync::Arc::new(
        cluster
            .agent_client("agent-b", Duration::from_secs(20))
            .await?,
    );
    let a = register_agent(&as_a, "agent-a", 4, 8).await?;
    let b = register_agent(&as_b, "agent-b", 4, 8).await?;
    let beat_a = heartbeat(as_a, a);
    let beat_b = heartbeat(as_b, b);

    let masters = cluster.api_addrs().join(",");
    let env = cluster.cli_env();
    let env = &env;
    let submit = |extra: &[&str]| {
        let mut args = vec!["job", "submit", "--masters", masters.as_str(), "-o", "json"];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        sluice_with(&refs, env, Duration::from_secs(30)).await
    };
    let spec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engine/examples/jobs/wordcount.toml"
    );
    let mut ids = Vec::new();
    for extra in [
        &[
            "--name", "web", "--cpus", "2", "--memory", "1GiB", "--", "sleep", "100",
        ][..],
        &["--stream", spec, "--parallelism", "2", "--spread"][..],
        &[
            "--name", "huge", "--cpus", "64", "--memory", "1GiB", "--", "true",
        ][..],
    ] {
        let (ok, stdout, stderr) = run(submit(extra)).await?;
        assert!(ok, "{stderr}");
        let out = job_json(&stdout)?;
        ids.push(out["job_submitted"]["id"].as_u64().expect("job id"));
    }
    let (web, stream, huge) = (ids[0], ids[1], ids[2]);
    wait_job(&client, web, JobState::Running).await?;
    let placed = wait_job(&client, stream, JobState::Running).await?;
    let agents: Vec<u64> = placed
        .tasks
        .iter()
        .map(|t| t.grant.as_ref().unwrap().agent)
        .collect();
    assert_ne!(
        agents[0], agents[1],
        "--spread puts the shards on distinct agents"
    );

    let show_huge: Vec<String> = vec![
        "job".into(),
        "show".into(),
        huge.to_string(),
        "--masters".into(),
        masters.clone(),
    ];
    wait_until(PATIENCE, "the huge job to say why it waits", || async {
        let (ok, stdout, _) = run(show_huge.clone()).await.ok()?;
        (ok && stdout.contains("needs 64 cores on one agent; the largest agent has 4"))
            .then_some(())
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\n{}\n{}\n{}",
            cluster.log_tail(1),
            cluster.log_tail(2),
            cluster.log_tail(3)
        )
    })?;

    // Bad input: clear errors, nothing changed.
    let before = cluster_state(&client).await?.jobs.len();
    let (ok, _, stderr) = run(submit(&[
        "--role", "nobody", "--cpus", "1", "--memory", "1GiB", "--", "true",
    ]))
    .await?;
    assert!(
        !ok && stderr.contains("unknown role \"nobody\""),
        "{stderr}"
    );
    let (ok, _, stderr) = run(submit(&["--cpus", "1", "--memory", "lots", "--", "true"])).await?;
    assert!(!ok && stderr.contains("--memory"), "{stderr}");
    let (ok, _, stderr) = run(vec![
        "agent".into(),
        "drain".into(),
        "999".into(),
        "--masters".into(),
        masters.clone(),
    ])
    .await?;
    assert!(!ok && stderr.contains("unknown agent 999"), "{stderr}");
    assert_eq!(cluster_state(&client).await?.jobs.len(), before);

    // The agent running "web" goes silent.
    let web_agent = wait_job(&client, web, JobState::Running).await?.tasks[0]
        .grant
        .as_ref()
        .unwrap()
        .agent;
    let (silent, other, stop, keep) = if web_agent == a {
        (a, b, beat_a, beat_b)
    } else {
        (b, a, beat_b, beat_a)
    };
    stop.abort();
    wait_until(PATIENCE, "the silent agent to be marked Lost", || async {
        let state = cluster_state(&client).await.ok()?;
        (state.agents[&silent].state == AgentState::Lost).then_some(())
    })
    .await?;
    wait_until(
        PATIENCE,
        "web and the stream job to run on the live agent",
        || async {
            let state = cluster_state(&client).await.ok()?;
            let on_other = |id: u64| {
                let job = &state.jobs[&id];
                job.state == JobState::Running
                    && job
                        .tasks
                        .iter()
                        .all(|t| t.grant.as_ref().is_some_and(|g| g.agent == other))
            };
            (on_other(web) && on_other(stream)).then_some(())
        },
    )
    .await?;
    let state = cluster_state(&client).await?;
    state.validate()?;
    assert!(state.jobs[&web]
        .events
        .iter()
        .any(|e| e.message.contains("lost")));

    // `task kill` ends the job and frees what it held.
    let kill = |task: String| {
        vec![
            "task".to_owned(),
            "kill".to_owned(),
            task,
            "--masters".to_owned(),
            masters.clone(),
        ]
    };
    let (ok, stdout, stderr) = run(kill(format!("{web}.0"))).await?;
    assert!(ok && stdout.contains("killed"), "{stdout}{stderr}");
    let killed = wait_job(&client, web, JobState::Cancelled).await?;
    assert_eq!(killed.reason.as_deref(), Some("task 0 killed by user"));
    let (ok, _, stderr) = run(kill("nonsense".into())).await?;
    assert!(!ok && stderr.contains("JOB.TASK"), "{stderr}");
    keep.abort();
    Ok(())
}

/// Killing the leader while jobs are being placed loses no placement,
/// re-places nothing already placed, marks no agent Lost, and grants no
/// core twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_mid_stream_keeps_placements_and_double_grants_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut cluster = ProcessCluster::start(tmp.path(), 3, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    let leader = cluster.leader(PATIENCE).await?;
    let client = std::sync::Arc::new(cluster.client(&[], Duration::from_secs(20))?);
    let mut beats = Vec::new();
    for i in 0..3 {
        let name = format!("agent-{i}");
        let agent =
            std::sync::Arc::new(cluster.agent_client(&name, Duration::from_secs(20)).await?);
        let id = register_agent(&agent, &name, 16, 32).await?;
        beats.push(heartbeat(agent, id));
    }
    let job = |i: usize| {
        let spec = sluice_consensus::state::JobSpec {
            name: format!("job-{i}"),
            role: "default".into(),
            priority: 0,
            estimated_duration_ms: None,
            kind: sluice_consensus::state::JobKind::Command {
                argv: vec!["sleep".into(), "1000".into()],
                cpus: 1,
                memory_bytes: 1 << 30,
                disk_bytes: 0,
            },
            constraints: Vec::new(),
            placement: Default::default(),
            restart: Default::default(),
        };
        sluice_consensus::Request::SubmitJob { job: spec }
    };
    for i in 0..10 {
        client.write(&job(i)).await?;
    }
    let before: BTreeMap<u64, Vec<Grant>> = wait_until(PATIENCE, "10 jobs placed", || async {
        let state = cluster_state(&client).await.ok()?;
        let running: BTreeMap<u64, Vec<Grant>> = state
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .map(|j| {
                (
                    j.id,
                    j.tasks.iter().filter_map(|t| t.grant.clone()).collect(),
                )
            })
            .collect();
        (running.len() == 10).then_some(running)
    })
    .await?;

    // Keep submitting while the leader dies. A write cut off by the kill
    // has an unknown outcome and is sent again (it may then exist twice).
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 10..30 {
                loop {
                    match client.write(&job(i)).await {
                        Ok(_) => break,
                        Err(e) => tracing::debug!(%e, "submit retried"),
                    }
                }
                acknowledged.push(format!("job-{i}"));
            }
            acknowledged
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    cluster.kill(leader)?;
    let acknowledged = writer.await?;
    let state = wait_until(PATIENCE, "every submitted job placed", || async {
        let state = cluster_state(&client).await.ok()?;
        let all_running = state.jobs.values().all(|j| j.state == JobState::Running);
        (all_running && state.jobs.len() >= 30).then_some(state)
    })
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "{e}\n{}\n{}\n{}",
            cluster.log_tail(1),
            cluster.log_tail(2),
            cluster.log_tail(3)
        )
    })?;
    for name in &acknowledged {
        assert!(
            state.jobs.values().any(|j| &j.spec.name == name),
            "{name} lost"
        );
    }
    state.validate()?;
    for (id, grants) in &before {
        let now: Vec<Grant> = state.jobs[id]
            .tasks
            .iter()
            .filter_map(|t| t.grant.clone())
            .collect();
        assert_eq!(&now, grants, "job {id} was re-placed by the failover");
        let placements = state.jobs[id]
            .events
            .iter()
            .filter(|e| e.message.starts_with("placed"))
            .count();
        assert_eq!(placements, 1, "job {id}: {:?}", state.jobs[id].events);
    }
    for agent in state.agents.values() {
        assert_eq!(
            agent.state,
            AgentState::Active,
            "agent {} after the failover",
            agent.id
        );
    }
    let granted: usize = state.agents.values().map(|a| a.used_cores.len()).sum();
    assert_eq!(
        granted,
        state.jobs.len(),
        "one core per job, none granted twice"
    );
    let answer = client.read(&Query::Scheduler, false).await?;
    assert_eq!(answer["running"], state.jobs.len());
    for beat in beats {
        beat.abort();
    }
    Ok(())
}
