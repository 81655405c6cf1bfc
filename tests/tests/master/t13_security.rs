//! A cluster run with mutual TLS and ACLs, attacked with the wrong
//! certificates and tokens: every refusal names its reason and changes
//! nothing. Real `sluice master` processes, real TLS (rustls), certificates
//! made by `sluice tls init` / `sluice tls issue`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use sluice_consensus::acl::AclPolicy;
use sluice_consensus::proto::master_client::MasterClient as MasterGrpc;
use sluice_consensus::proto::raft_client::RaftClient;
use sluice_consensus::proto::{RaftMessage, ReadRequest, WriteRequest};
use sluice_consensus::{ClientError, MasterClient, Query, Request};
use sluice_security::pki::{self, Ca, Issued, Validity};
use sluice_security::{Role, Tls, TlsFiles};
use sluice_tests::*;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

const CLUSTER: &str = "prod";

/// A certificate a test caller presents (or none).
struct Presented {
    what: &'static str,
    identity: Option<Issued>,
}

fn issued_from(dir: &Path, stem: &str) -> Result<Issued> {
    Ok(Issued {
        cert_pem: std::fs::read_to_string(dir.join(format!("{stem}.pem")))?,
        key_pem: std::fs::read_to_string(dir.join(format!("{stem}-key.pem")))?,
    })
}

/// A channel to `addr` that trusts `ca_pem`, expects a master, and presents
/// `identity`.
async fn channel(addr: &str, ca_pem: &str, identity: &Option<Issued>) -> Result<Channel> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(Role::Master.name_in(CLUSTER));
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    Ok(Endpoint::from_shared(format!("https://{addr}"))?
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect_lazy())
}

/// A status with its whole error chain, for assertions on the reason.
fn chain(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        text.push_str(&format!(": {err}"));
        source = err.source();
    }
    text
}

/// "ok", or the refusal with its whole error chain.
fn outcome<T>(result: &Result<T, tonic::Status>) -> String {
    match result {
        Ok(_) => "ok".to_owned(),
        Err(status) => chain(status),
    }
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.set_timeout(Duration::from_secs(10));
    if let Some(token) = token {
        req.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    req
}

async fn sluice_ok(args: &[&str]) -> Result<String> {
    let (ok, stdout, stderr) = sluice(args, Duration::from_secs(30)).await?;
    ensure!(ok, "`sluice {}` failed: {stderr}", args.join(" "));
    Ok(stdout)
}

fn files(dir: &Path, stem: &str) -> TlsFiles {
    TlsFiles {
        ca: dir.join(pki::CA_CERT_FILE),
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    }
}

fn path(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificates_and_tokens_are_refused_with_their_reason() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let pki_dir = tmp.path().join("pki");
    let pki_str = path(pki_dir.clone());
    sluice_ok(&["tls", "init", &pki_str, "--cluster", CLUSTER]).await?;
    for role in ["master", "agent", "client"] {
        sluice_ok(&["tls", "issue", "--ca-dir", &pki_str, "--role", role]).await?;
    }
    let (again_ok, _, again) = sluice(&["tls", "init", &pki_str], Duration::from_secs(30)).await?;
    ensure!(!again_ok && again.contains("already exists"), "{again}");
    let ca = Ca::load(&pki_dir)?;
    let ca_pem = ca.cert_pem().to_owned();
    let now = time::OffsetDateTime::now_utc();
    let expired = ca.issue(
        Role::Client,
        Validity {
            not_before: now - time::Duration::days(10),
            not_after: now - time::Duration::days(1),
        },
    )?;
    // Another CA that claims the same cluster name, and another cluster's.
    let impostor = Ca::generate(CLUSTER)?.issue(Role::Client, Validity::days(1)?)?;
    let foreign = Ca::generate("staging")?.issue(Role::Client, Validity::days(1)?)?;
    let master = files(&pki_dir, "master");

    let mut args: Vec<String> = TIMING.iter().map(|s| (*s).to_owned()).collect();
    args.extend([
        "--tls-ca".into(),
        path(master.ca.clone()),
        "--tls-cert".into(),
        path(master.cert.clone()),
        "--tls-key".into(),
        path(master.key.clone()),
        "--acl".into(),
        "--log".into(),
        "warn,sluice::audit=info".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let client_tls = Tls::load(&files(&pki_dir, "client"))?;
    let cluster =
        ProcessCluster::start_with_tls(tmp.path(), 3, &args, Some(client_tls.clone())).await?;
    cluster.init(&[]).await?;
    cluster.leader(PATIENCE).await?;
    let anonymous = cluster.client(&[], Duration::from_secs(10))?;

    // ACL bootstrap: once, with no token; the secret is shown to the caller only.
    let management = anonymous
        .write(&Request::AclBootstrap)
        .await?
        .secret
        .context("bootstrap gave no secret")?;
    match anonymous.write(&Request::AclBootstrap).await {
        Err(ClientError::Rejected(e)) => ensure!(e.to_string().contains("already bootstrapped")),
        other => anyhow::bail!("a second bootstrap: {other:?}"),
    }
    let admin = cluster
        .client(&[], Duration::from_secs(10))?
        .with_token(Some(management.clone()));
    let create =
        |name: &str, policies: Vec<AclPolicy>, ttl_ms: Option<u64>| Request::AclCreateToken {
            name: name.to_owned(),
            policies,
            ttl_ms,
        };
    let secret = |r: Result<sluice_consensus::client::Written, ClientError>| -> Result<String> {
        r?.secret.context("no secret")
    };
    let operator = secret(
        admin
            .write(&create("ops", vec![AclPolicy::Operator], None))
            .await,
    )?;
    let analytics = secret(
        admin
            .write(&create(
                "analyst",
                vec!["submit:analytics".parse().map_err(anyhow::Error::msg)?],
                None,
            ))
            .await,
    )?;
    let short = secret(
        admin
            .write(&create("short", vec![AclPolicy::Operator], Some(1)))
            .await,
    )?;
    let revoked = secret(
        admin
            .write(&create("gone", vec![AclPolicy::Operator], None))
            .await,
    )?;
    let tokens: Vec<sluice_consensus::acl::TokenInfo> =
        serde_json::from_value(admin.read(&Query::AclTokens, false).await?)?;
    let gone = tokens
        .iter()
        .find(|t| t.name == "gone")
        .context("token gone")?;
    admin
        .write(&Request::AclRevokeToken {
            accessor: gone.accessor.clone(),
        })
        .await?;
    admin
        .write(&Request::SetRole(role_spec("analytics")))
        .await?;
    let roles_before = role_names(&admin, false).await?;

    // Every endpoint, every certificate.
    let leader = cluster.leader(PATIENCE).await?;
    let api = cluster.member(leader)?.api_addr.clone();
    let raft = cluster.member(leader)?.raft_addr.clone();
    let callers = [
        Presented {
            what: "no certificate",
            identity: None,
        },
        Presented {
            what: "another CA's certificate",
            identity: Some(foreign),
        },
        Presented {
            what: "an impostor CA's certificate",
            identity: Some(impostor),
        },
        Presented {
            what: "an expired certificate",
            identity: Some(expired),
        },
        Presented {
            what: "an agent certificate",
            identity: Some(issued_from(&pki_dir, "agent")?),
        },
        Presented {
            what: "a client certificate",
            identity: Some(issued_from(&pki_dir, "client")?),
        },
        Presented {
            what: "a master certificate",
            identity: Some(issued_from(&pki_dir, "master")?),
        },
    ];
    let write_role = || WriteRequest::from(&Request::SetRole(role_spec("intruder")));
    for caller in &callers {
        let api_channel = channel(&api, &ca_pem, &caller.identity).await?;
        let raft_channel = channel(&raft, &ca_pem, &caller.identity).await?;
        let write = MasterGrpc::new(api_channel.clone())
            .write(with_token(write_role(), Some(&management)))
            .await;
        let read = MasterGrpc::new(api_channel)
            .read(with_token(
                ReadRequest {
                    stale: true,
                    ..ReadRequest::from(&Query::Roles)
                },
                Some(&management),
            ))
            .await;
        let vote = RaftClient::new(raft_channel)
            .vote(with_token(
                RaftMessage {
                    body: vec![0xff; 3],
                },
                None,
            ))
            .await;
        let (write, read, vote) = (outcome(&write), outcome(&read), outcome(&vote));
        eprintln!("{}: write {write} | read {read} | raft {vote}", caller.what);
        // The handshake refuses a missing, foreign or expired certificate
        // with an alert that says why (a request sent before the alert
        // arrived may only see the connection close); a certificate of the
        // wrong role gets through the handshake and is refused by name.
        let handshake_reason = match caller.what {
            "no certificate" => Some("CertificateRequired"),
            "another CA's certificate" => Some("UnknownCA"),
            // Same subject as the real CA: found as the issuer, and its
            // signature does not verify.
            "an impostor CA's certificate" => Some("DecryptError"),
            "an expired certificate" => Some("CertificateExpired"),
            _ => None,
        };
        if let Some(reason) = handshake_reason {
            let outcomes = [&write, &read, &vote];
            ensure!(
                outcomes.iter().all(|o| o.as_str() != "ok"),
                "{}: a call went through",
                caller.what
            );
            // The alert itself, read by a raw TLS client on both ports.
            for port in [&api, &raft] {
                let config = sluice_security::tls::unchecked_client_config(
                    ca_pem.as_bytes(),
                    caller
                        .identity
                        .as_ref()
                        .map(|id| (id.cert_pem.as_bytes(), id.key_pem.as_bytes())),
                )?;
                let (target, name) = (port.clone(), Role::Master.name_in(CLUSTER));
                let refusal = tokio::task::spawn_blocking(move || {
                    sluice_security::tls::probe(&target, config, &name, Duration::from_secs(10))
                })
                .await?
                .map_err(anyhow::Error::msg)?;
                ensure!(
                    refusal.contains(reason),
                    "{} on {port}: the refusal does not name {reason}: {refusal} (calls: {outcomes:?})",
                    caller.what
                );
            }
            continue;
        }
        match caller.what {
            "an agent certificate" => {
                ensure!(
                    write.contains("PermissionDenied")
                        && write.contains("an agent certificate cannot change the cluster"),
                    "{write}"
                );
                ensure!(read == "ok", "agents may read: {read}");
                ensure!(
                    vote.contains("an agent certificate cannot speak Raft"),
                    "{vote}"
                );
            }
            "a client certificate" => {
                ensure!(write == "ok" && read == "ok", "{write} / {read}");
                ensure!(
                    vote.contains("a client certificate cannot speak Raft"),
                    "{vote}"
                );
            }
            "a master certificate" => {
                ensure!(
                    write.contains("a master certificate cannot change the cluster"),
                    "{write}"
                );
                // Past the role check, the garbage body is refused.
                ensure!(vote.contains("undecodable Raft message"), "{vote}");
            }
            other => unreachable!("{other}"),
        }
    }
    // Only the client certificate's write went through.
    let mut expected = roles_before.clone();
    expected.push("intruder".into());
    expected.sort();
    let mut roles = role_names(&admin, false).await?;
    roles.sort();
    ensure!(
        roles == expected,
        "refused callers changed the roles: {roles:?}"
    );

    // Every token, one operator request and one submission.
    let with = |token: Option<&str>| -> Result<MasterClient> {
        Ok(cluster
            .client(&[], Duration::from_secs(10))?
            .with_token(token.map(str::to_owned)))
    };
    wait_until(PATIENCE, "the short token to expire", || async {
        let refused = with(Some(&short))
            .ok()?
            .write(&Request::SetRole(role_spec("x")))
            .await
            .err()?;
        refused.to_string().contains("expired").then_some(())
    })
    .await?;
    let cases: [(&str, Option<&str>, Code, &str); 5] = [
        (
            "no token",
            None,
            Code::Unauthenticated,
            "no ACL token given",
        ),
        (
            "an expired token",
            Some(&short),
            Code::Unauthenticated,
            "token \"short\"",
        ),
        (
            "a revoked token",
            Some(&revoked),
            Code::Unauthenticated,
            "was revoked",
        ),
        (
            "a token of another policy",
            Some(&analytics),
            Code::PermissionDenied,
            "permission denied: token \"analyst\" needs operator",
        ),
        (
            "an unknown token",
            Some("sluice_0000"),
            Code::Unauthenticated,
            "unknown ACL token",
        ),
    ];
    let roles_before = role_names(&admin, false).await?;
    for (what, token, code, reason) in cases {
        match with(token)?
            .write(&Request::SetRole(role_spec("denied")))
            .await
        {
            Err(ClientError::Failed {
                code: got, message, ..
            }) => ensure!(
                got == code && message.contains(reason),
                "{what}: got {got:?} {message}, expected {code:?} naming {reason:?}"
            ),
            other => anyhow::bail!("{what}: expected a refusal, got {other:?}"),
        }
    }
    ensure!(
        role_names(&admin, false).await? == roles_before,
        "refused tokens changed the roles"
    );
    with(Some(&operator))?
        .write(&Request::SetRole(role_spec("allowed")))
        .await?;
    let job = |role: &str| Request::SubmitJob {
        job: small_job("j", role),
    };
    let analyst = with(Some(&analytics))?;
    analyst.write(&job("analytics")).await?;
    match analyst.write(&job("default")).await {
        Err(ClientError::Failed { message, .. }) => ensure!(
            message.contains("needs submit on role default"),
            "{message}"
        ),
        other => anyhow::bail!("submit outside the token's roles: {other:?}"),
    }
    // Reading tokens and the state's ACL are management's alone.
    match analyst.read(&Query::AclTokens, false).await {
        Err(ClientError::Failed { message, .. }) => {
            ensure!(message.contains("needs management"), "{message}")
        }
        other => anyhow::bail!("a submitter listed the tokens: {other:?}"),
    }
    let state = admin.read(&Query::State, false).await?;
    ensure!(
        state.get("acl").is_none(),
        "the state dump carries the tokens"
    );

    // Audit lines name the caller, never a secret.
    let log = std::fs::read_to_string(&cluster.member(leader)?.log)?;
    ensure!(
        log.contains("sluice::audit") && log.contains("caller=analyst"),
        "no audit line for the analyst:\n{log}"
    );
    for s in [&management, &operator, &analytics] {
        ensure!(!log.contains(s.as_str()), "a secret is in the log");
    }
    Ok(())
}

fn role_spec(name: &str) -> sluice_consensus::state::RoleSpec {
    sluice_consensus::state::RoleSpec {
        name: name.to_owned(),
        weight: 1.0,
        quota: None,
        limit: None,
        reservations: Default::default(),
    }
}
