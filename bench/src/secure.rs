//! A test cluster's security, as an operator would set it up: a CA of its
//! own, a certificate per role, ACLs on, the management token from
//! `acl bootstrap`, and a token of its own for each agent.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use sluice_consensus::acl::AclPolicy;
use sluice_consensus::{CommandOutput, MasterClient, Request};
use sluice_security::pki::{self, Ca, Validity};
use sluice_security::{Role, Tls, TlsFiles};

/// The cluster name the harness's certificates carry.
pub const TEST_CLUSTER: &str = "test";

/// Certificates for every role and the tokens made so far.
#[derive(Debug)]
pub struct ClusterSecurity {
    /// Where the CA and the certificates are.
    pub dir: PathBuf,
    pub master: TlsFiles,
    pub agent: TlsFiles,
    pub client: TlsFiles,
    client_tls: Tls,
    agent_tls: Tls,
    management: Mutex<Option<String>>,
}

impl ClusterSecurity {
    /// A new CA in `dir` (created) and a certificate for each role.
    pub fn create(dir: &Path) -> Result<Self> {
        let ca = Ca::generate(TEST_CLUSTER)?;
        ca.write(dir)?;
        let files = |role: Role| -> Result<TlsFiles> {
            let issued = ca.issue(role, Validity::days(2)?)?;
            let written = pki::write_issued(dir, role.as_str(), &issued)?;
            Ok(TlsFiles {
                ca: dir.join("ca.pem"),
                cert: written.cert,
                key: written.key,
            })
        };
        let client = files(Role::Client)?;
        let agent = files(Role::Agent)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            master: files(Role::Master)?,
            client_tls: Tls::load(&client).context("loading the test client's certificate")?,
            agent_tls: Tls::load(&agent).context("loading the test agent's certificate")?,
            agent,
            client,
            management: Mutex::new(None),
        })
    }

    /// What a `sluice master` needs to run TLS and ACLs.
    pub fn master_args(&self) -> Vec<String> {
        let mut args = tls_args(&self.master);
        args.push("--acl".into());
        args
    }

    /// The identity the harness's own clients present.
    pub fn client_tls(&self) -> Tls {
        self.client_tls.clone()
    }

    /// The identity an agent presents.
    pub fn agent_tls(&self) -> Tls {
        self.agent_tls.clone()
    }

    /// The management token, once [`ClusterSecurity::bootstrap`] made it.
    pub fn management_token(&self) -> Option<String> {
        self.management
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the management token a `sluice acl bootstrap` printed.
    pub fn set_management_token(&self, token: String) {
        *self.management.lock().unwrap_or_else(|p| p.into_inner()) = Some(token);
    }

    /// Makes the management token through `client` (`acl bootstrap`), once;
    /// later calls keep the first token.
    pub async fn bootstrap(&self, client: &MasterClient) -> Result<String> {
        if let Some(token) = self.management_token() {
            return Ok(token);
        }
        let written = client.write(&Request::AclBootstrap).await?;
        let token = written
            .secret
            .ok_or_else(|| anyhow!("acl bootstrap answered without a token"))?;
        self.set_management_token(token.clone());
        Ok(token)
    }

    /// A new token with `policies`, made with the management token.
    pub async fn new_token(
        &self,
        client: &MasterClient,
        name: &str,
        policies: Vec<AclPolicy>,
    ) -> Result<String> {
        let written = client
            .write(&Request::AclCreateToken {
                name: name.to_owned(),
                policies,
                ttl_ms: None,
            })
            .await?;
        match (written.output, written.secret) {
            (CommandOutput::AclTokenCreated { .. }, Some(secret)) => Ok(secret),
            (output, _) => Err(anyhow!(
                "creating token {name}: unexpected answer {output:?}"
            )),
        }
    }

    /// Environment for a `sluice` command acting as a client: the client
    /// certificate and the management token.
    pub fn client_env(&self) -> Vec<(String, String)> {
        let mut env = tls_env(&self.client);
        if let Some(token) = self.management_token() {
            env.push(("SLUICE_TOKEN".into(), token));
        }
        env
    }

    /// Environment for a `sluice agent`: the agent certificate and `token`
    /// (one made for that agent with the `agent` policy).
    pub fn agent_env(&self, token: &str) -> Vec<(String, String)> {
        let mut env = tls_env(&self.agent);
        env.push(("SLUICE_TOKEN".into(), token.to_owned()));
        env
    }
}

fn tls_args(files: &TlsFiles) -> Vec<String> {
    [
        ("--tls-ca", &files.ca),
        ("--tls-cert", &files.cert),
        ("--tls-key", &files.key),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
    .collect()
}

fn tls_env(files: &TlsFiles) -> Vec<(String, String)> {
    [
        ("SLUICE_TLS_CA", &files.ca),
        ("SLUICE_TLS_CERT", &files.cert),
        ("SLUICE_TLS_KEY", &files.key),
    ]
    .into_iter()
    .map(|(key, path)| (key.to_owned(), path.display().to_string()))
    .collect()
}
