//! `sluice tls ...` and `sluice acl ...`, and the TLS settings of every
//! process.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sluice_consensus::acl::TokenInfo;
use sluice_consensus::{CommandOutput, Query, Request};
use sluice_security::pki::{self, Ca, Validity};
use sluice_security::{Tls, TlsFiles};

use crate::cli::{AclCommand, AclTokenCommand, ClientArgs, TlsArgs, TlsCommand};
use crate::cluster_cmd::client;
use crate::output::{emit, table};

impl TlsArgs {
    /// The TLS identity the flags name, if any (all three or none).
    pub fn load(&self) -> Result<Option<Tls>> {
        let files = TlsFiles::from_parts(
            self.tls_ca.clone(),
            self.tls_cert.clone(),
            self.tls_key.clone(),
        )?;
        files
            .map(|files| Tls::load(&files).map_err(anyhow::Error::from))
            .transpose()
    }

    /// A daemon's TLS: required unless `insecure` says plain text on purpose.
    pub fn for_daemon(&self, insecure: bool, what: &str) -> Result<Option<Tls>> {
        match (self.load()?, insecure) {
            (Some(_), true) => bail!(
                "--insecure and --tls-* both given: choose TLS (the certificate flags) or plain \
                 text (--insecure)"
            ),
            (Some(tls), false) => Ok(Some(tls)),
            (None, true) => Ok(None),
            (None, false) => bail!(
                "no TLS configured for the {what}: give --tls-ca, --tls-cert and --tls-key \
                 (make them with `sluice tls init DIR` and `sluice tls issue --ca-dir DIR \
                 --role ROLE`), or --insecure to serve plain text on a trusted network"
            ),
        }
    }
}

pub fn tls(cmd: TlsCommand) -> Result<()> {
    match cmd {
        TlsCommand::Init { dir, cluster } => {
            let ca = Ca::generate(&cluster)?;
            ca.write(&dir)?;
            println!(
                "CA of cluster {cluster:?} written to {}: {} (give it to every member), {} \
                 (keep it off the cluster's machines)",
                dir.display(),
                pki::CA_CERT_FILE,
                pki::CA_KEY_FILE
            );
            println!(
                "next: sluice tls issue --ca-dir {} --role master (and agent, client)",
                dir.display()
            );
            Ok(())
        }
        TlsCommand::Issue {
            role,
            ca_dir,
            out,
            name,
            days,
        } => {
            let ca = Ca::load(&ca_dir)?;
            let issued = ca.issue(role, Validity::days(days)?)?;
            let out = out.unwrap_or_else(|| ca_dir.clone());
            let stem = name.unwrap_or_else(|| role.as_str().to_owned());
            let files = pki::write_issued(&out, &stem, &issued)?;
            println!(
                "{role} certificate for cluster {:?} ({}), valid {days} days: {} and {}",
                ca.cluster(),
                role.name_in(ca.cluster()),
                files.cert.display(),
                files.key.display()
            );
            Ok(())
        }
    }
}

/// Writes a dev cluster's CA and one certificate per role under `dir`
/// (kept across runs: an existing CA is reused).
pub fn dev_pki(dir: &Path) -> Result<DevPki> {
    let ca_dir = dir.join("tls");
    if !ca_dir.join(pki::CA_CERT_FILE).exists() {
        Ca::generate("dev")?.write(&ca_dir)?;
    }
    let ca = Ca::load(&ca_dir)?;
    let load = |role: sluice_security::Role| -> Result<(Tls, TlsFiles)> {
        let files = TlsFiles {
            ca: ca_dir.join(pki::CA_CERT_FILE),
            cert: ca_dir.join(format!("{role}.pem")),
            key: ca_dir.join(format!("{role}-key.pem")),
        };
        if !files.cert.exists() {
            let issued = ca.issue(role, Validity::days(pki::DEFAULT_VALIDITY_DAYS)?)?;
            pki::write_issued(&ca_dir, role.as_str(), &issued)?;
        }
        let tls = Tls::load(&files).with_context(|| format!("the dev {role} certificate"))?;
        Ok((tls, files))
    };
    let (master, _) = load(sluice_security::Role::Master)?;
    let (agent, _) = load(sluice_security::Role::Agent)?;
    let (client, client_files) = load(sluice_security::Role::Client)?;
    Ok(DevPki {
        master,
        agent,
        client,
        client_files,
    })
}

/// The certificates `sluice dev` runs with.
#[derive(Debug)]
pub struct DevPki {
    pub master: Tls,
    pub agent: Tls,
    pub client: Tls,
    pub client_files: TlsFiles,
}

pub async fn acl(cmd: AclCommand) -> Result<()> {
    match cmd {
        AclCommand::Bootstrap { client: args } => {
            let written = client(&args)?.write(&Request::AclBootstrap).await?;
            print_created(&args, written.output, written.secret)
        }
        AclCommand::Token(AclTokenCommand::Create {
            name,
            policies,
            ttl,
            client: args,
        }) => {
            let written = client(&args)?
                .write(&Request::AclCreateToken {
                    name,
                    policies,
                    ttl_ms: ttl,
                })
                .await?;
            print_created(&args, written.output, written.secret)
        }
        AclCommand::Token(AclTokenCommand::List { client: args }) => {
            let value = client(&args)?.read(&Query::AclTokens, false).await?;
            let tokens: Vec<TokenInfo> =
                serde_json::from_value(value).context("undecodable token list")?;
            emit(args.output, &tokens, |tokens| {
                let time = crate::checkpoints_view::format_unix_ms;
                let mut t = table(&[
                    "accessor", "name", "policies", "created", "expires", "revoked",
                ]);
                for token in tokens {
                    t.add_row(vec![
                        token.accessor.clone(),
                        token.name.clone(),
                        token
                            .policies
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                        time(token.created_ms),
                        token.expires_ms.map_or_else(|| "never".into(), time),
                        token.revoked_ms.map_or_else(|| "-".into(), time),
                    ]);
                }
                println!("{t}");
            })
        }
        AclCommand::Token(AclTokenCommand::Revoke {
            accessor,
            client: args,
        }) => {
            let written = client(&args)?
                .write(&Request::AclRevokeToken { accessor })
                .await?;
            emit(args.output, &written.output, |out| {
                if let CommandOutput::AclTokenRevoked { accessor, name } = out {
                    println!("token {name:?} ({accessor}) revoked");
                }
            })
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Created {
    accessor: String,
    name: String,
    secret: String,
}

fn print_created(args: &ClientArgs, output: CommandOutput, secret: Option<String>) -> Result<()> {
    let (CommandOutput::AclTokenCreated { accessor, name }, Some(secret)) = (output, secret) else {
        bail!("the leader's answer holds no new token");
    };
    let created = Created {
        accessor,
        name,
        secret,
    };
    emit(args.output, &created, |c| {
        println!("token {:?} created (accessor {})", c.name, c.accessor);
        println!("secret: {}", c.secret);
        println!("it is shown only this once; use it with --token or SLUICE_TOKEN");
    })
}
