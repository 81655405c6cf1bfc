use std::time::{Duration, Instant};

use sluice_bench::procs::sluice_bin;
use sluice_consensus::state::{AgentState, JobState};
use sluice_consensus::Query;
use sluice_tests::netns::Net;
use sluice_tests::*;

/// Longer than the agent grace period plus the agent timeout of
/// [`SCHED_TIMING`] (3 s + 2 s).
const PARTITION: Duration = Duration::from_secs(9);

/// The leader is cut off from the other masters (not from the agent or the
/// CLI) for longer than the agent grace period plus timeout, while an agent
/// runs a task. The cut-off leader stops acting as one (its lease lapses),
/// the agent and the CLI move to the majority's leader within seconds, and
/// the task keeps running: never marked Lost, placed exactly once, started
/// once. (Before the lease, the old leader kept answering the agent's
/// heartbeats, the new one marked the agent Lost, and the task ran twice.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_reschedules_nothing() -> anyhow::Result<()> {
    let net = Net::create(4)?;
    let tmp = tempfile::tempdir()?;
    let hosts: Vec<_> = (0..3).map(|h| net.host(h)).collect();
    let cluster = ProcessCluster::start_on(tmp.path(), &hosts, SCHED_TIMING).await?;
    cluster.init(&[]).await?;
    let leader = cluster.leader(PATIENCE).await?;
    let masters = cluster.api_addrs().join(",");
    let client = cluster.client(&[], Duration::from_secs(20))?;
    let env = cluster.cli_env();

    // An agent on a host of its own, reaching every master.
    let agent_ip = net.ip(3);
    let agent_log = std::fs::File::create(tmp.path().join("agent.log"))?;
    let mut agent = net
        .command(3, &sluice_bin()?)
        .args([
            "agent",
            "--allow-root-tasks",
            "--masters",
            &masters,
            "--data-dir",
        ])
        .arg(tmp.path().join("agent"))
        .args(["--cores", "1", "--memory", "1GiB", "--disk", "1GiB"])
        .args(["--heartbeat-ms", "300", "--data-addr", &agent_ip])
        .args(["--api-addr", &format!("{agent_ip}:7400")])
        .envs(cluster.agent_env("agent").await?)
        .env("SLUICE_LOG", "info,openraft=error")
        .stdout(agent_log.try_clone()?)
        .stderr(agent_log)
        .kill_on_drop(true)
        .spawn()?;

    let starts = tmp.path().join("starts");
    let script = format!("echo started >> {}; exec sleep 600", starts.display());
    let (ok, stdout, stderr) = sluice_with(
        &[
            "job",
            "submit",
            "--masters",
            &masters,
            "-o",
            "json",
            "--name",
            "steady",
            "--cpus",
            "1",
            "--memory",
            "64MiB",
            "--",
            "sh",
            "-c",
            &script,
        ],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    assert!(ok, "{stderr}");
    let id = serde_json::from_str::<serde_json::Value>(&stdout)?["job_submitted"]["id"]
        .as_u64()
        .expect("job id");
    wait_job(&client, id, JobState::Running).await?;
    wait_until(PATIENCE, "the task to start", || async {
        std::fs::read_to_string(&starts)
            .ok()?
            .contains("started")
            .then_some(())
    })
    .await?;

    // A client that knows the leader, as an agent's or a script's does.
    let ids: Vec<u64> = std::iter::once(leader)
        .chain((1..=3).filter(|id| *id != leader))
        .collect();
    let sticky = cluster.client(&ids, Duration::from_secs(10))?;
    sticky.read(&Query::Jobs { state: None }, false).await?;

    // Cut the leader off from its peers.
    let leader_host = (leader - 1) as usize;
    let peers: Vec<usize> = (0..3).filter(|h| *h != leader_host).collect();
    for &p in &peers {
        net.cut(leader_host, p)?;
    }
    let cut_at = Instant::now();

    // The majority elects a leader, and the old one says it has no quorum.
    let old = cluster.client(&[leader], Duration::from_secs(2))?;
    let old_addr = cluster.member(leader)?.api_addr.clone();
    wait_until(
        PATIENCE,
        "the cut-off leader to give up its lease",
        || async {
            let s = old.status_of(&old_addr).await.ok()?;
            (s.role != "leader" || s.lease_held == Some(false)).then_some(())
        },
    )
    .await?;
    let majority = cluster.client(
        &[(peers[0] + 1) as u64, (peers[1] + 1) as u64],
        Duration::from_secs(10),
    )?;
    let new_leader = wait_until(PATIENCE, "the majority to elect a leader", || async {
        let s = majority.leader_status().await.ok()?;
        (s.id != leader).then_some(s.id)
    })
    .await?;
    let elected_after = cut_at.elapsed();

    assert!(elected_after < Duration::from_secs(5), "{elected_after:?}");
    // A read sent first to the cut-off leader moves on and succeeds.
    sticky
        .read(&Query::Jobs { state: None }, false)
        .await
        .map_err(|e| anyhow::anyhow!("a read through the old leader first: {e}"))?;

    // The CLI, given every master, reads and writes through the majority.
    let (ok, stdout, stderr) = sluice_with(
        &["job", "list", "--masters", &masters],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    assert!(
        ok && stdout.contains("steady"),
        "job list during the partition: {stderr}"
    );
    let (ok, _, stderr) = sluice_with(
        &["role", "set", "during-partition", "--masters", &masters],
        &env,
        Duration::from_secs(30),
    )
    .await?;
    assert!(ok, "a write during the partition: {stderr}");

    // Hold the partition past grace + timeout; the agent must stay Active
    // on the new leader throughout.
    let mut moved_after = None;
    while cut_at.elapsed() < PARTITION {
        let state = cluster_state(&majority).await?;
        let agent_state = state.agents.values().next().map(|a| a.state);
        assert_eq!(
            agent_state,
            Some(AgentState::Active),
            "the agent must never be marked Lost"
        );
        let job = &state.jobs[&id];
        assert_eq!(job.state, JobState::Running, "{:?}", job.events);
        if moved_after.is_none() {
            let status = majority
                .status_of(&cluster.member(new_leader)?.api_addr)
                .await?;
            if status.lease_held == Some(true) {
                moved_after = Some(cut_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for &p in &peers {
        net.heal(leader_host, p)?;
    }
    wait_until(PATIENCE, "the old leader to follow again", || async {
        let s = old.status_of(&old_addr).await.ok()?;
        (s.role == "follower").then_some(())
    })
    .await?;

    let state = cluster_state(&client).await?;
    state.validate()?;
    let job = &state.jobs[&id];
    assert_eq!(job.state, JobState::Running);
    let placements = job
        .events
        .iter()
        .filter(|e| e.message.contains("placed on"))
        .count();
    assert_eq!(placements, 1, "placed exactly once: {:?}", job.events);
    assert!(
        !job.events.iter().any(|e| e.message.contains("lost")),
        "no loss in the history: {:?}",
        job.events
    );
    let agent_record = state.agents.values().next().expect("the agent");
    assert_eq!(agent_record.state, AgentState::Active);
    let started = std::fs::read_to_string(&starts)?.lines().count();
    assert_eq!(started, 1, "the task started once");
    let roles = role_names(&client, false).await?;
    assert!(roles.contains(&"during-partition".to_owned()));
    assert!(client
        .read(&Query::Jobs { state: None }, false)
        .await
        .is_ok());
    eprintln!(
        "partition: new leader {new_leader} elected {elected_after:?} after the cut, \
         leading with its lease {moved_after:?} after"
    );

    agent.start_kill()?;
    let _ = agent.wait().await;
    Ok(())
}
