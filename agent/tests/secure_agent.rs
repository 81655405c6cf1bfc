//! An agent in a cluster that runs mutual TLS and ACLs, and command tasks
//! run as an unprivileged user. Real masters, real TLS, real setuid.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::*;
use sluice_agent::{task_logs, Agent, AgentError, LogStream};
use sluice_consensus::acl::AclPolicy;
use sluice_consensus::state::JobState;
use sluice_consensus::Request;
use sluice_security::pki::{Ca, Validity};
use sluice_security::{Role, Tls};

async fn token(cluster: &Cluster, name: &str, policies: Vec<AclPolicy>) -> Result<String> {
    cluster
        .client
        .write(&Request::AclCreateToken {
            name: name.into(),
            policies,
            ttl_ms: None,
        })
        .await?
        .secret
        .context("no secret")
}

async fn logs(
    addr: &str,
    tls: Option<&Tls>,
    token: Option<&str>,
    job: u64,
) -> Result<String, AgentError> {
    let mut out = Vec::new();
    task_logs(
        addr,
        tls,
        token,
        job,
        0,
        LogStream::Stdout,
        None,
        false,
        &mut out,
    )
    .await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_needs_its_certificate_and_token_and_serves_logs_over_tls() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (master, agent_tls, client_tls) = test_pki(&root.path().join("pki"))?;
    let (cluster, _management) =
        Cluster::start_secure(root.path(), master, client_tls.clone()).await?;
    let agent_token = token(&cluster, "agents", vec![AclPolicy::Agent]).await?;
    let reader = token(&cluster, "reader", vec![AclPolicy::Read]).await?;

    // Each missing piece is refused at registration, naming it.
    let refusals = [
        (
            "no token",
            Some(agent_tls.clone()),
            None,
            "no ACL token given",
        ),
        (
            "a token without the agent policy",
            Some(agent_tls.clone()),
            Some(reader.clone()),
            "needs agent",
        ),
        (
            "a client certificate",
            Some(client_tls.clone()),
            Some(agent_token.clone()),
            "a client certificate cannot make an agent's report",
        ),
    ];
    for (what, tls, token, reason) in refusals {
        let mut config = cluster.agent_config(root.path().join(format!("refused-{what}")));
        config.tls = tls;
        config.token = token.map(Into::into);
        config.register_timeout = Duration::from_secs(5);
        match Agent::start(config).await {
            Err(e) => ensure!(e.to_string().contains(reason), "{what}: {e}"),
            Ok(agent) => {
                agent.shutdown().await;
                anyhow::bail!("{what}: the agent registered");
            }
        }
    }

    let mut config = cluster.agent_config(root.path().join("agent"));
    config.tls = Some(agent_tls.clone());
    config.token = Some(agent_token.clone().into());
    let agent = Agent::start(config).await?;

    // The token is now bound to that agent: it registers no other agent,
    // and heartbeats or task reports for another agent are refused.
    let mut second = cluster.agent_config(root.path().join("second"));
    second.tls = Some(agent_tls.clone());
    second.token = Some(agent_token.clone().into());
    second.register_timeout = Duration::from_secs(5);
    match Agent::start(second).await {
        Err(e) => ensure!(e.to_string().contains("acts for agent"), "{e}"),
        Ok(other) => {
            other.shutdown().await;
            anyhow::bail!("a second agent registered with the first one's token");
        }
    }
    let as_first =
        sluice_consensus::MasterClient::new(cluster.api_addrs.clone(), Duration::from_secs(5))?
            .with_tls(Some(agent_tls.clone()))
            .with_token(Some(agent_token));
    let other_id = agent.id() + 1;
    let refused = as_first.heartbeat(other_id).await.unwrap_err().to_string();
    ensure!(
        refused.contains(&format!(
            "acts for agent {}, not agent {other_id}",
            agent.id()
        )),
        "{refused}"
    );
    as_first.heartbeat(agent.id()).await?;
    let report = Request::UpdateTask {
        update: sluice_consensus::state::TaskUpdate {
            job: 0,
            task: 0,
            agent: other_id,
            state: sluice_consensus::state::TaskState::Failed,
            message: None,
        },
    };
    let refused = as_first.write(&report).await.unwrap_err().to_string();
    ensure!(refused.contains("acts for agent"), "{refused}");
    let addr = agent.api_addr().to_string();
    let id = cluster
        .submit("hello", command(&["sh", "-c", "echo over tls"]))
        .await?;
    let job = cluster.wait_ended(id).await?;
    ensure!(job.state == JobState::Finished, "{job:#?}");

    // The agent API: a client certificate with a token the masters accept
    // reads; an agent's certificate is refused by name, plain text gets
    // nothing, and the masters judge the token: none, a revoked one.
    let read = |token| logs(&addr, Some(&client_tls), token, id);
    ensure!(read(Some(reader.as_str())).await? == "over tls\n");
    let refused = logs(&addr, Some(&agent_tls), Some(&reader), id)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        refused.contains("an agent certificate cannot read task logs"),
        "{refused}"
    );
    ensure!(
        logs(&addr, None, Some(&reader), id).await.is_err(),
        "plain text read the logs"
    );
    let refused = read(None).await.unwrap_err().to_string();
    ensure!(refused.contains("no ACL token given"), "{refused}");
    // What `sluice task logs` shows an agent: a ticket that reads this job
    // alone, for a minute; never the user's own token.
    let ticket = |job| {
        let as_reader =
            sluice_consensus::MasterClient::new(cluster.api_addrs.clone(), Duration::from_secs(5))
                .map(|c| {
                    c.with_tls(Some(client_tls.clone()))
                        .with_token(Some(reader.clone()))
                });
        async move {
            anyhow::Ok(
                as_reader?
                    .write(&Request::IssueLogTicket { job })
                    .await?
                    .secret
                    .context("no ticket")?,
            )
        }
    };
    let for_this_job = ticket(id).await?;
    ensure!(read(Some(for_this_job.as_str())).await? == "over tls\n");
    let other = cluster.submit("other", command(&["true"])).await?;
    let for_another_job = ticket(other).await?;
    let refused = read(Some(for_another_job.as_str()))
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        refused.contains(&format!("needs read on job {id}")),
        "{refused}"
    );
    let replayed =
        sluice_consensus::MasterClient::new(cluster.api_addrs.clone(), Duration::from_secs(5))?
            .with_tls(Some(client_tls.clone()))
            .with_token(Some(for_this_job.clone()));
    let refused = replayed
        .read(&sluice_consensus::Query::Agents, false)
        .await
        .unwrap_err()
        .to_string();
    ensure!(
        refused.contains("needs read"),
        "a ticket reads nothing else: {refused}"
    );
    let doomed = token(&cluster, "doomed", vec![AclPolicy::Read]).await?;
    ensure!(read(Some(doomed.as_str())).await? == "over tls\n");
    let tokens = cluster
        .client
        .read(&sluice_consensus::Query::AclTokens, false)
        .await?;
    let accessor = tokens
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "doomed"))
        .and_then(|t| t["accessor"].as_str())
        .context("the doomed token's accessor")?
        .to_owned();
    cluster
        .client
        .write(&Request::AclRevokeToken { accessor })
        .await?;
    let refused = read(Some(doomed.as_str())).await.unwrap_err().to_string();
    ensure!(refused.contains("was revoked"), "{refused}");
    // The handshake refuses a missing, foreign or expired certificate, with
    // an alert naming why.
    let pki_dir = root.path().join("pki");
    let ca = Ca::load(&pki_dir)?;
    let now = time::OffsetDateTime::now_utc();
    let expired = ca.issue(
        Role::Client,
        Validity {
            not_before: now - time::Duration::days(2),
            not_after: now - time::Duration::days(1),
        },
    )?;
    let foreign = Ca::generate("other")?.issue(Role::Client, Validity::days(1)?)?;
    for (what, identity, reason) in [
        ("no certificate", None, "CertificateRequired"),
        ("another CA's certificate", Some(foreign), "UnknownCA"),
        (
            "an expired certificate",
            Some(expired),
            "CertificateExpired",
        ),
    ] {
        let config = sluice_security::tls::unchecked_client_config(
            ca.cert_pem().as_bytes(),
            identity
                .as_ref()
                .map(|id| (id.cert_pem.as_bytes(), id.key_pem.as_bytes())),
        )?;
        let (target, name) = (addr.clone(), Role::Agent.name_in(ca.cluster()));
        let refusal = tokio::task::spawn_blocking(move || {
            sluice_security::tls::probe(&target, config, &name, Duration::from_secs(10))
        })
        .await?
        .map_err(anyhow::Error::msg)?;
        let errors = [refusal];
        ensure!(
            errors.iter().any(|e| e.contains(reason)),
            "{what}: no refusal names {reason}: {errors:?}"
        );
    }
    agent.shutdown().await;
    cluster.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_tasks_run_as_the_task_user_and_root_needs_a_flag() -> Result<()> {
    if !sluice_agent::sys::running_as_root() {
        eprintln!("skipped: switching the task user needs root, and this test runs as a user");
        return Ok(());
    }
    let root = tempfile::tempdir()?;
    // The task user must reach its sandbox under the agent's data dir.
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o711))?;
    let cluster = Cluster::start(root.path()).await?;
    let nobody = sluice_agent::sys::lookup_user("nobody")?;

    let refused = |config: sluice_agent::AgentConfig| async move {
        match Agent::start(config).await {
            Err(e) => Ok(e.to_string()),
            Ok(agent) => {
                agent.shutdown().await;
                anyhow::bail!("the agent started")
            }
        }
    };
    let mut as_root = cluster.agent_config(root.path().join("a"));
    as_root.allow_root_tasks = false;
    let err = refused(as_root).await?;
    ensure!(
        err.contains("would run command tasks and stream jobs as root")
            && err.contains("--task-user"),
        "{err}"
    );
    let mut root_user = cluster.agent_config(root.path().join("b"));
    root_user.allow_root_tasks = false;
    root_user.task_user = Some("root".into());
    let err = refused(root_user).await?;
    ensure!(err.contains("is root or in group root"), "{err}");
    let mut unknown = cluster.agent_config(root.path().join("c"));
    unknown.allow_root_tasks = false;
    unknown.task_user = Some("no-such-user-anywhere".into());
    let err = refused(unknown).await?;
    ensure!(err.contains("no user \"no-such-user-anywhere\""), "{err}");

    let data_dir = root.path().join("agent");
    let mut config = cluster.agent_config(data_dir.clone());
    config.allow_root_tasks = false;
    config.task_user = Some("nobody".into());
    let agent = Agent::start(config).await?;
    let id = cluster
        .submit(
            "whoami",
            command(&["sh", "-c", "id -u; id -g; id -G; touch mine; env > env.txt"]),
        )
        .await?;
    let job = cluster.wait_ended(id).await?;
    ensure!(job.state == JobState::Finished, "{job:#?}");
    let task_dir = data_dir.join("tasks").join(format!("{id}.0"));
    let out = std::fs::read_to_string(task_dir.join("stdout"))?;
    let lines: Vec<&str> = out.lines().collect();
    // The user's uid and gid, and none of root's groups.
    ensure!(
        lines
            == [
                nobody.uid.to_string(),
                nobody.gid.to_string(),
                nobody.gid.to_string()
            ],
        "{out}"
    );
    use std::os::unix::fs::MetadataExt;
    ensure!(std::fs::metadata(task_dir.join("mine"))?.uid() == nobody.uid);
    // Nothing of the agent's environment (which may hold its token) but PATH
    // and the user's name; the shell adds its own few.
    let env = std::fs::read_to_string(task_dir.join("env.txt"))?;
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .collect();
    let allowed = ["PATH", "USER", "LOGNAME", "PWD", "OLDPWD", "SHLVL", "_"];
    ensure!(names.iter().all(|n| allowed.contains(n)), "{env}");

    // A task that swaps its output for a link to a file only root may read
    // gets nothing through the agent, which reads as root.
    let secret = root.path().join("root-only");
    std::fs::write(&secret, "root's secret\n")?;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))?;
    let swap = format!("rm -f stdout && ln -s {} stdout", secret.display());
    let id = cluster
        .submit("swap", command(&["sh", "-c", &swap]))
        .await?;
    let job = cluster.wait_ended(id).await?;
    ensure!(job.state == JobState::Finished, "{job:#?}");
    let refused = logs(&agent.api_addr().to_string(), None, None, id)
        .await
        .unwrap_err()
        .to_string();
    ensure!(refused.contains("symbolic link"), "{refused}");
    agent.shutdown().await;
    cluster.shutdown().await
}
