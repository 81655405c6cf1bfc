//! `sluice dev`: a whole cluster in one command, on loopback.
//!
//! Three masters and (by default) one agent run in this process on real code
//! paths: Raft over gRPC on loopback, RocksDB on disk, the agent registering
//! and heartbeating over gRPC and running what it is granted. A demo stream
//! job is submitted and its windowed results print here as they fire. The
//! data dir is named on start; it is kept when given with --data-dir (a
//! restart then reuses the cluster) and removed on exit otherwise.
//!
//! Unless `--insecure`, the cluster runs as a production one should: mutual
//! TLS everywhere (a CA and one certificate per role in `DATA/tls`) and ACLs
//! on (the management token bootstrapped into `DATA/management.token`,
//! one token per agent into `DATA/agent-N.token`, all readable by their owner
//! only); the two lines to export for the CLI are printed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_agent::{Agent, AgentConfig, AgentHandle};
use sluice_consensus::acl::AclPolicy;
use sluice_consensus::state::{Job, JobKind, JobSpec, JobState, PlacementStrategy};
use sluice_consensus::{CommandOutput, MasterClient, MasterConfig, MasterHandle, Query, Request};

use crate::cli::DevArgs;
use crate::cluster_cmd::{collect_status, print_status};
use crate::master_cmd::wait_for_signal;

const DEV_MASTERS: u16 = 3;
const DEMO_NAME: &str = "dev-demo";

/// The demo: Nexmark bids at 20,000 a second, event time keeping pace with
/// the clock; bids and the top price per channel in 2 s tumbling windows.
const DEMO_JOB: &str = r#"
name = "dev-demo"
parallelism = 1

[watermark]
column = "date_time"
out_of_orderness_ms = 100

[[source]]
kind = "nexmark"
table = "bid"
rate_per_sec = 20000
events_per_ms = 20

[[operator]]
key_by = "channel"

[[operator]]
window = { kind = "tumbling", size_ms = 2000, aggregate = ["count(*) AS bids", "max(price) AS top_price"] }

[[sink]]
kind = "stdout"
"#;

pub async fn run(args: DevArgs) -> Result<()> {
    let (root, _temp) = match &args.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("sluice-dev-")
                .tempdir()
                .context("creating a temporary data dir")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    println!(
        "sluice dev: {DEV_MASTERS} masters, data under {}",
        root.display()
    );
    let pki = if args.insecure {
        println!("INSECURE: no TLS, no ACLs (--insecure)");
        None
    } else {
        Some(crate::security_cmd::dev_pki(&root).context("the dev cluster's certificates")?)
    };
    let mut masters = Vec::new();
    let mut api_addrs = Vec::new();
    for n in 1..=DEV_MASTERS {
        let api = format!("127.0.0.1:{}", port(args.base_port, n)?);
        let raft = format!("127.0.0.1:{}", port(args.base_port, n + 10)?);
        let mut config = MasterConfig::new(u64::from(n), raft, api.clone(), member_dir(&root, n));
        args.tuning.apply(&mut config);
        config.tls = pki.as_ref().map(|p| p.master.clone());
        config.acl = pki.is_some();
        let master = MasterHandle::start(config)
            .await
            .with_context(|| format!("starting master {n}"))?;
        masters.push(master);
        api_addrs.push(api);
    }
    let client = MasterClient::new(api_addrs.clone(), Duration::from_secs(10))?
        .with_tls(pki.as_ref().map(|p| p.client.clone()));
    let first = client.info(&api_addrs[0]).await?;
    if first.initialized {
        println!("reusing the cluster found in {}", root.display());
    } else {
        client
            .init(&api_addrs)
            .await
            .context("forming the cluster")?;
    }
    let status = collect_status(&client, false)
        .await
        .context("waiting for a leader")?;
    print_status(&status);
    let client = match &pki {
        Some(_) => dev_tokens(client, &root).await?,
        None => client,
    };

    let mut agents: Vec<AgentHandle> = Vec::new();
    let checkpoints = std::path::absolute(root.join("checkpoints"))
        .context("the checkpoint directory's absolute path")?;
    for n in 0..args.agents {
        let first_port = port(args.base_port, 200 + n * 20)?;
        let mut config = AgentConfig::new(api_addrs.clone(), root.join(format!("agent-{n}")));
        config.data_ports = first_port..=port(first_port, 19)?;
        config.heartbeat_interval = Duration::from_millis(500);
        config.hostname = Some(format!("dev-agent-{n}"));
        // Every agent shares one checkpoint directory, so a job resumes wherever it moves.
        config.checkpoint_storage = Some(format!("file://{}", checkpoints.display()));
        config.tls = pki.as_ref().map(|p| p.agent.clone());
        if pki.is_some() {
            config.token = Some(agent_token(&client, &root, n).await?.into());
        }
        // A local demo: tasks run as whoever started it, root included.
        config.allow_root_tasks = true;
        let agent = Agent::start(config)
            .await
            .with_context(|| format!("starting agent {n}"))?;
        println!("agent {} registered", agent.id());
        agents.push(agent);
    }
    let demo = if args.agents > 0 && !args.no_demo {
        Some(submit_demo(&client, args.agents).await?)
    } else {
        None
    };
    if let Some(pki) = &pki {
        println!("\nTLS and ACLs are on. For the CLI, export:");
        println!(
            "  export SLUICE_TLS_CA={} SLUICE_TLS_CERT={} SLUICE_TLS_KEY={}",
            pki.client_files.ca.display(),
            pki.client_files.cert.display(),
            pki.client_files.key.display()
        );
        println!(
            "  export SLUICE_TOKEN=$(cat {})",
            root.join(MANAGEMENT_TOKEN_FILE).display()
        );
    }
    println!("\nTry, in another terminal:");
    let m = api_addrs[0].clone();
    println!("  sluice job list --masters {m}");
    if let Some(id) = demo {
        println!("  sluice job show {id} --masters {m}");
    }
    println!("  sluice agent list --masters {m}");
    println!("  sluice cluster status --masters {}", api_addrs.join(","));
    println!("  sluice cluster transfer-leader 2 --masters {m}   # the demo keeps running");
    println!("  sluice job submit --cpus 1 --memory 64MiB --masters {m} -- sh -c 'echo hello from a task'");
    let outcome = if args.once {
        Ok(())
    } else {
        println!("\nRunning; Ctrl-C to stop. Demo output: one line per channel and 2 s window.\n");
        wait_for_signal().await
    };
    println!(
        "stopping {} agents and {} masters",
        agents.len(),
        masters.len()
    );
    for agent in agents {
        agent.shutdown().await;
    }
    for master in masters {
        master.shutdown().await?;
    }
    outcome
}

/// Submits the demo job unless a live one exists; waits until it runs.
async fn submit_demo(client: &MasterClient, agents: u16) -> Result<u64> {
    let jobs: Vec<Job> =
        serde_json::from_value(client.read(&Query::Jobs { state: None }, false).await?)?;
    let live = jobs
        .iter()
        .find(|j| j.spec.name == DEMO_NAME && !j.state.is_ended())
        .map(|j| j.id);
    let id = match live {
        Some(id) => id,
        None => {
            let spec = JobSpec {
                name: DEMO_NAME.into(),
                role: "default".into(),
                priority: 0,
                estimated_duration_ms: None,
                kind: JobKind::Stream {
                    spec_toml: DEMO_JOB.into(),
                    parallelism: u32::from(agents),
                    memory_per_shard_bytes: 64 << 20,
                },
                constraints: Vec::new(),
                placement: PlacementStrategy::Spread,
                restart: Default::default(),
            };
            match client
                .write(&Request::SubmitJob { job: spec })
                .await?
                .output
            {
                CommandOutput::JobSubmitted { id } => id,
                other => anyhow::bail!("unexpected answer to the demo submission: {other:?}"),
            }
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job: Job = serde_json::from_value(client.read(&Query::Job { id }, false).await?)?;
        if job.state == JobState::Running {
            let agents: Vec<u64> = job
                .tasks
                .iter()
                .filter_map(|t| t.grant.as_ref().map(|g| g.agent))
                .collect();
            println!("demo job {id} ({DEMO_NAME}) running on agents {agents:?}");
            return Ok(id);
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "the demo job {id} is still {:?} after 30 s: {}",
                job.state,
                job.reason.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Where `sluice dev` keeps the management token's secret.
const MANAGEMENT_TOKEN_FILE: &str = "management.token";
/// The client with the management token: bootstrapped and saved on a new
/// cluster, read back on a reused one.
async fn dev_tokens(client: MasterClient, root: &std::path::Path) -> Result<MasterClient> {
    let management = match read_secret(&root.join(MANAGEMENT_TOKEN_FILE)) {
        Ok(management) => management,
        Err(_) => {
            let management = client
                .write(&Request::AclBootstrap)
                .await
                .context(
                    "bootstrapping the ACL system (a reused data dir without its token files?)",
                )?
                .secret
                .context("the bootstrap answer holds no secret")?;
            save_secret(&root.join(MANAGEMENT_TOKEN_FILE), &management)?;
            management
        }
    };
    Ok(client.with_token(Some(management)))
}

/// Agent `n`'s own token (each agent's token is bound to it when it first
/// registers): made and saved in `DATA/agent-N.token` the first time, read
/// back after.
async fn agent_token(client: &MasterClient, root: &std::path::Path, n: u16) -> Result<String> {
    let path = root.join(format!("agent-{n}.token"));
    if let Ok(secret) = read_secret(&path) {
        return Ok(secret);
    }
    let secret = client
        .write(&Request::AclCreateToken {
            name: format!("dev-agent-{n}"),
            policies: vec![AclPolicy::Agent],
            ttl_ms: None,
        })
        .await
        .with_context(|| format!("creating agent {n}'s token"))?
        .secret
        .context("the answer holds no secret")?;
    save_secret(&path, &secret)?;
    Ok(secret)
}

fn read_secret(path: &std::path::Path) -> std::io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned())
}

fn save_secret(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("saving a token to {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn port(base: u16, offset: u16) -> Result<u16> {
    base.checked_add(offset)
        .with_context(|| format!("--base-port {base} leaves no room for port offset {offset}"))
}

fn member_dir(root: &std::path::Path, n: u16) -> PathBuf {
    root.join(format!("master-{n}"))
}
