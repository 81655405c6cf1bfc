//! A member's TLS identity and what it takes to use it with tonic.
//!
//! Every connection is mutual: the server presents its certificate and asks
//! for the caller's, and both must chain to the cluster's CA (rustls checks
//! the chain, the validity dates and the key usage during the handshake, so
//! a certificate of another CA, an expired one or none at all never gets a
//! request through). A client also checks the server's role: it dials a
//! master as `master.<cluster>.sluice` whatever address it used, so an agent's
//! certificate cannot pose as a master. A server checks the caller's role per
//! call with [`Tls::require`], answering `PERMISSION_DENIED` with the reason.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::Role;

/// The three files of a member's TLS setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate (PEM), trusted for every peer.
    pub ca: PathBuf,
    /// This member's certificate (PEM), issued by that CA.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

impl TlsFiles {
    /// All three or none: anything else is a configuration mistake.
    pub fn from_parts(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Result<Option<Self>, TlsError> {
        match (ca, cert, key) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(Self { ca, cert, key })),
            (ca, cert, key) => {
                let missing: Vec<&str> = [
                    ("--tls-ca", ca.is_none()),
                    ("--tls-cert", cert.is_none()),
                    ("--tls-key", key.is_none()),
                ]
                .iter()
                .filter(|(_, missing)| *missing)
                .map(|(flag, _)| *flag)
                .collect();
                Err(TlsError::Incomplete(missing.join(", ")))
            }
        }
    }
}

/// Why a TLS identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS is half configured: {0} missing (give --tls-ca, --tls-cert and --tls-key together, or none with --insecure)")]
    Incomplete(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
}

/// A member's TLS identity: the CA it trusts, its certificate and key, and
/// the role and cluster its certificate names.
#[derive(Clone)]
pub struct Tls {
    inner: Arc<Inner>,
}

struct Inner {
    role: Role,
    cluster: String,
    ca: Certificate,
    identity: Identity,
    ca_der: CertificateDer<'static>,
    cert_der: CertificateDer<'static>,
    key_pem: Vec<u8>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("role", &self.inner.role)
            .field("cluster", &self.inner.cluster)
            .finish_non_exhaustive()
    }
}

/// The role and cluster a certificate's names say.
fn named(der: &CertificateDer<'_>) -> Result<(Role, String), String> {
    let cert = webpki::EndEntityCert::try_from(der)
        .map_err(|e| format!("not a certificate webpki can read: {e}"))?;
    let names: Vec<&str> = cert.valid_dns_names().collect();
    names
        .iter()
        .find_map(|n| Role::parse_name(n).map(|(role, cluster)| (role, cluster.to_owned())))
        .ok_or_else(|| {
            format!(
                "it names no Sluice role (expected a DNS name <role>.<cluster>.sluice, found \
                 {names:?}); issue one with `sluice tls issue`"
            )
        })
}

fn webpki_problem(err: &webpki::Error) -> String {
    match err {
        webpki::Error::CertExpired { .. } => "the certificate has expired".into(),
        webpki::Error::CertNotValidYet { .. } => "the certificate is not valid yet".into(),
        // Another CA of the same cluster name has the same subject, so its
        // certificates are found as this CA's and fail on the signature.
        webpki::Error::UnknownIssuer | webpki::Error::InvalidSignatureForPublicKey => {
            "the certificate was not issued by this CA".into()
        }
        other => format!("the certificate does not verify: {other}"),
    }
}

impl Tls {
    /// Reads and checks the three files.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Io {
                path: path.to_owned(),
                source,
            })
        };
        Self::from_pem(
            &read(&files.ca)?,
            &read(&files.cert)?,
            &read(&files.key)?,
            files,
        )
    }

    /// Checks PEM contents (`files` only names them in errors): the CA is
    /// one certificate, this member's certificate chains to it, is valid now
    /// and names a role, and the key is a private key.
    pub fn from_pem(
        ca_pem: &[u8],
        cert_pem: &[u8],
        key_pem: &[u8],
        files: &TlsFiles,
    ) -> Result<Self, TlsError> {
        let invalid = |path: &Path, problem: String| TlsError::Invalid {
            what: path.display().to_string(),
            problem,
        };
        let ca_der: CertificateDer<'static> = CertificateDer::from_pem_slice(ca_pem)
            .map_err(|e| invalid(&files.ca, format!("no PEM certificate: {e}")))?;
        let cert_der: CertificateDer<'static> = CertificateDer::from_pem_slice(cert_pem)
            .map_err(|e| invalid(&files.cert, format!("no PEM certificate: {e}")))?;
        rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| invalid(&files.key, format!("no PEM private key: {e}")))?;
        let (role, cluster) = named(&cert_der).map_err(|p| invalid(&files.cert, p))?;
        let anchor = webpki::anchor_from_trusted_cert(&ca_der)
            .map_err(|e| invalid(&files.ca, format!("not a usable CA certificate: {e}")))?;
        let usage = match role {
            Role::Client => webpki::KeyUsage::client_auth(),
            Role::Master | Role::Agent => webpki::KeyUsage::server_auth(),
        };
        webpki::EndEntityCert::try_from(&cert_der)
            .map_err(|e| invalid(&files.cert, e.to_string()))?
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                &[],
                UnixTime::now(),
                usage,
                None,
                None,
            )
            .map_err(|e| {
                invalid(
                    &files.cert,
                    format!("{} (CA {})", webpki_problem(&e), files.ca.display()),
                )
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                role,
                cluster,
                ca: Certificate::from_pem(ca_pem),
                identity: Identity::from_pem(cert_pem, key_pem),
                ca_der,
                cert_der,
                key_pem: key_pem.to_vec(),
            }),
        })
    }

    /// The role this member's certificate names.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// A server that presents this certificate and requires the caller's.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.inner.identity.clone())
            .client_ca_root(self.inner.ca.clone())
    }

    /// A client that presents this certificate and accepts only a server
    /// whose certificate names `server` in this cluster.
    pub fn client_config(&self, server: Role) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(self.inner.ca.clone())
            .identity(self.inner.identity.clone())
            .domain_name(server.name_in(&self.inner.cluster))
    }

    /// The role of the certificate the caller presented (the handshake has
    /// already checked that it chains to the CA and is valid now).
    pub fn caller_role<T>(&self, request: &tonic::Request<T>) -> Result<Role, String> {
        let certs = request
            .peer_certs()
            .ok_or("the caller presented no certificate")?;
        self.peer_role(&certs)
    }

    /// The role a peer's certificate chain (leaf first) names in this cluster.
    pub fn peer_role(&self, chain: &[CertificateDer<'_>]) -> Result<Role, String> {
        let leaf = chain.first().ok_or("the peer presented no certificate")?;
        let (role, cluster) = named(leaf)?;
        if cluster != self.inner.cluster {
            return Err(format!(
                "the peer's certificate is for cluster {cluster:?}, this is {:?}",
                self.inner.cluster
            ));
        }
        Ok(role)
    }

    /// rustls settings for a raw TCP protocol (the stream exchange): mutual
    /// TLS with this identity; peers must chain to the cluster's CA. The
    /// dialer should expect the name of the role it dials
    /// ([`Role::name_in`]); the acceptor should check the dialer's role with
    /// [`Tls::peer_role`].
    pub fn rustls_configs(
        &self,
    ) -> Result<(Arc<rustls::ClientConfig>, Arc<rustls::ServerConfig>), TlsError> {
        let invalid = |problem: String| TlsError::Invalid {
            what: "TLS settings".into(),
            problem,
        };
        let provider = Arc::new(cluster_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(self.inner.ca_der.clone())
            .map_err(|e| invalid(format!("the CA certificate: {e}")))?;
        let roots = Arc::new(roots);
        let key = || {
            rustls_pki_types::PrivateKeyDer::from_pem_slice(&self.inner.key_pem)
                .map_err(|e| invalid(format!("the private key: {e}")))
        };
        let chain = vec![self.inner.cert_der.clone()];
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| invalid(e.to_string()))?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key()?)
            .map_err(|e| invalid(e.to_string()))?;
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| invalid(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| invalid(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key()?)
            .map_err(|e| invalid(e.to_string()))?;
        Ok((Arc::new(client), Arc::new(server)))
    }

    /// Lets the call through only if the caller's certificate names one of
    /// `allowed`; otherwise `PERMISSION_DENIED` naming the reason.
    pub fn require<T>(
        &self,
        request: &tonic::Request<T>,
        allowed: &[Role],
        what: &str,
    ) -> Result<Role, tonic::Status> {
        let role = self
            .caller_role(request)
            .map_err(|e| tonic::Status::permission_denied(format!("permission denied: {e}")))?;
        if allowed.contains(&role) {
            return Ok(role);
        }
        let wanted: Vec<&str> = allowed.iter().map(|r| r.with_article()).collect();
        Err(tonic::Status::permission_denied(format!(
            "permission denied: {} certificate cannot {what} (needs {} certificate)",
            role.with_article(),
            wanted.join(" or ")
        )))
    }
}

/// ring's provider with TLS 1.3's AES-128-GCM first: the peers are the
/// cluster's own, both sides offer the same suites, and AES-128 does 10
/// rounds per block where AES-256 does 14, so every byte sent costs less to
/// seal and open. AES-256-GCM and ChaCha20-Poly1305 stay available after it.
/// The exchange uses it; the `sluice` binary installs it as the process's
/// default, which tonic's gRPC TLS takes.
pub fn cluster_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    provider
}

/// A rustls client trusting the CA in `ca_pem` and presenting `identity`
/// (certificate and key PEM) as given, or no certificate: unlike
/// [`Tls::load`], nothing checks the identity first, so this is how a test
/// dials with an expired certificate, or none.
pub fn unchecked_client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let invalid = |problem: String| TlsError::Invalid {
        what: "TLS client settings".into(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    let ca = CertificateDer::from_pem_slice(ca_pem).map_err(|e| invalid(e.to_string()))?;
    roots.add(ca).map_err(|e| invalid(e.to_string()))?;
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(e.to_string()))?
    .with_root_certificates(roots);
    let config = match identity {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert_pem).map_err(|e| invalid(e.to_string()))?],
                rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem)
                    .map_err(|e| invalid(e.to_string()))?,
            )
            .map_err(|e| invalid(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Dials `addr` as `config`'s client, expecting a server certificate named
/// `server_name`, and reads once: the server's verdict on the client's
/// certificate. (In TLS 1.3 that verdict, an alert such as `UnknownCA` or
/// `CertificateExpired`, arrives after the client has finished its side of
/// the handshake, so a gRPC call may see only the connection close.)
/// Returns what the first read gave: bytes (accepted) or the error.
pub fn probe(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    server_name: &str,
    timeout: std::time::Duration,
) -> Result<String, String> {
    use std::io::{Read, Write};
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned())
        .map_err(|e| format!("{server_name}: {e}"))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut sock = std::net::TcpStream::connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut stream = rustls::Stream::new(&mut conn, &mut sock);
    // An HTTP/2 preface, so that a gRPC server that accepted answers.
    let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let mut buf = [0u8; 64];
    Ok(match stream.read(&mut buf) {
        Ok(n) => format!("read {n} bytes"),
        Err(e) => e.to_string(),
    })
}

/// Checks the caller's role when TLS is on; lets everything through when it
/// is off (the member said `--insecure`).
pub fn require_role<T>(
    tls: Option<&Tls>,
    request: &tonic::Request<T>,
    allowed: &[Role],
    what: &str,
) -> Result<(), tonic::Status> {
    match tls {
        Some(tls) => tls.require(request, allowed, what).map(|_| ()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{Ca, Validity};

    fn files() -> TlsFiles {
        TlsFiles {
            ca: "ca.pem".into(),
            cert: "me.pem".into(),
            key: "me-key.pem".into(),
        }
    }

    #[test]
    fn loading_refuses_certificates_that_would_fail_the_handshake() {
        let ca = Ca::generate("prod").unwrap();
        let other = Ca::generate("prod").unwrap();
        let good = ca.issue(Role::Master, Validity::days(1).unwrap()).unwrap();
        let load = |ca: &Ca, cert: &crate::pki::Issued| {
            Tls::from_pem(
                ca.cert_pem().as_bytes(),
                cert.cert_pem.as_bytes(),
                cert.key_pem.as_bytes(),
                &files(),
            )
        };
        let tls = load(&ca, &good).unwrap();
        assert_eq!((tls.role(), tls.cluster()), (Role::Master, "prod"));
        let err = load(&other, &good).unwrap_err().to_string();
        assert!(err.contains("not issued by this CA"), "{err}");
        let now = time::OffsetDateTime::now_utc();
        let expired = ca
            .issue(
                Role::Client,
                Validity {
                    not_before: now - time::Duration::days(3),
                    not_after: now - time::Duration::days(1),
                },
            )
            .unwrap();
        let err = load(&ca, &expired).unwrap_err().to_string();
        assert!(err.contains("me.pem") && err.contains("expired"), "{err}");
        let err = Tls::from_pem(ca.cert_pem().as_bytes(), b"junk", b"junk", &files())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("me.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = TlsFiles::from_parts(Some("a".into()), None, Some("k".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--tls-cert missing"), "{err}");
    }
}
