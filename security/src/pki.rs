//! The cluster's certificate authority and the certificates it issues.
//!
//! `sluice tls init DIR` writes `DIR/ca.pem` (the CA certificate every member
//! trusts), `DIR/ca-key.pem` (its key, readable by its owner only; keep it off
//! the cluster's machines) and `DIR/cluster` (the cluster's name).
//! `sluice tls issue` signs a certificate and key for one role. Keys are ECDSA
//! P-256; a certificate's only name is `<role>.<cluster>.sluice`, which is
//! what peers verify (a client dialling a master expects
//! `master.<cluster>.sluice` whatever address it dialled).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::SecureRandom;
use time::{Duration, OffsetDateTime};

use crate::{check_cluster_name, Role};

/// The CA certificate's file in a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file in a CA directory.
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The file holding the cluster's name in a CA directory.
pub const CLUSTER_FILE: &str = "cluster";
/// How long a CA certificate is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// How long an issued certificate is valid unless told otherwise.
pub const DEFAULT_VALIDITY_DAYS: i64 = 365;
/// Start of validity this far in the past, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Why a CA or a certificate could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} already exists; nothing was written (remove it to start over)")]
    Exists { path: PathBuf },
    #[error("{0}")]
    Invalid(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// When an issued certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From now (less a few minutes of clock skew) for `days` days.
    pub fn days(days: i64) -> Result<Self, PkiError> {
        if days <= 0 {
            return Err(PkiError::Invalid(format!(
                "validity of {days} days: give a positive number of days"
            )));
        }
        let now = OffsetDateTime::now_utc();
        Ok(Self {
            not_before: now - CLOCK_SKEW,
            not_after: now + Duration::days(days),
        })
    }
}

/// A cluster's certificate authority.
pub struct Ca {
    cluster: String,
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

/// The CA's parameters; [`Ca::load`] rebuilds them from the cluster name, so
/// they must not depend on anything else.
fn ca_params(cluster: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Sluice");
    name.push(
        DnType::CommonName,
        format!("Sluice CA for cluster {cluster}"),
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn serial() -> Result<SerialNumber, PkiError> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Invalid("the system's random source failed".into()))?;
    // A positive number: DER integers are signed.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

impl Ca {
    /// A new CA for `cluster`.
    pub fn generate(cluster: &str) -> Result<Self, PkiError> {
        check_cluster_name(cluster).map_err(PkiError::Invalid)?;
        let mut params = ca_params(cluster);
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(serial()?);
        let key = KeyPair::generate()?;
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self {
            cluster: cluster.to_owned(),
            params: ca_params(cluster),
            key,
            cert_pem,
        })
    }

    /// Writes the CA into `dir` (created if missing); refuses to overwrite.
    pub fn write(&self, dir: &Path) -> Result<(), PkiError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let files = [
            (CA_CERT_FILE, self.cert_pem.as_str(), 0o644),
            (CA_KEY_FILE, &self.key.serialize_pem(), 0o600),
            (CLUSTER_FILE, &format!("{}\n", self.cluster), 0o644),
        ];
        for (name, _, _) in &files {
            let path = dir.join(name);
            if path.exists() {
                return Err(PkiError::Exists { path });
            }
        }
        for (name, contents, mode) in files {
            write_new(&dir.join(name), contents, mode)?;
        }
        Ok(())
    }

    /// Reads a CA written by [`Ca::write`].
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(io(&path))
        };
        let cluster = read(CLUSTER_FILE)?.trim().to_owned();
        check_cluster_name(&cluster)
            .map_err(|e| PkiError::Invalid(format!("{}: {e}", dir.join(CLUSTER_FILE).display())))?;
        let key = KeyPair::from_pem(&read(CA_KEY_FILE)?).map_err(|e| {
            PkiError::Invalid(format!(
                "{}: not a private key: {e}",
                dir.join(CA_KEY_FILE).display()
            ))
        })?;
        Ok(Self {
            params: ca_params(&cluster),
            cluster,
            key,
            cert_pem: read(CA_CERT_FILE)?,
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate and key for `role`, valid during `validity`.
    pub fn issue(&self, role: Role, validity: Validity) -> Result<Issued, PkiError> {
        if validity.not_after <= validity.not_before {
            return Err(PkiError::Invalid(
                "the certificate would expire before it becomes valid".into(),
            ));
        }
        let name = role.name_in(&self.cluster);
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Sluice");
        dn.push(DnType::CommonName, name.clone());
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![SanType::DnsName(name.try_into().map_err(|e| {
                PkiError::Invalid(format!("certificate name: {e}"))
            })?)];
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.serial_number = Some(serial()?);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Masters and agents both serve and dial; clients only dial.
        params.extended_key_usages = match role {
            Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Role::Master | Role::Agent => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let key = KeyPair::generate()?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Where [`write_issued`] put a certificate and its key.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `issued` as `DIR/STEM.pem` and `DIR/STEM-key.pem` (the key readable
/// by its owner only); refuses to overwrite either.
pub fn write_issued(dir: &Path, stem: &str, issued: &Issued) -> Result<IssuedFiles, PkiError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    let files = IssuedFiles {
        cert: dir.join(format!("{stem}.pem")),
        key: dir.join(format!("{stem}-key.pem")),
    };
    for path in [&files.cert, &files.key] {
        if path.exists() {
            return Err(PkiError::Exists { path: path.clone() });
        }
    }
    write_new(&files.cert, &issued.cert_pem, 0o644)?;
    write_new(&files.key, &issued.key_pem, 0o600)?;
    Ok(files)
}

fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_written_and_loaded_issues_certificates_it_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::generate("prod").unwrap();
        ca.write(dir.path()).unwrap();
        let again = Ca::write(&ca, dir.path()).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
        let loaded = Ca::load(dir.path()).unwrap();
        assert_eq!(loaded.cluster(), "prod");
        let issued = loaded
            .issue(Role::Agent, Validity::days(1).unwrap())
            .unwrap();
        let files = write_issued(dir.path(), "agent", &issued).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode(&files.key).mode() & 0o777, 0o600);
        assert_eq!(mode(&dir.path().join(CA_KEY_FILE)).mode() & 0o777, 0o600);
        // The loaded CA signs certificates that chain to the written CA certificate.
        let tls = crate::tls::Tls::load(&crate::TlsFiles {
            ca: dir.path().join(CA_CERT_FILE),
            cert: files.cert,
            key: files.key,
        })
        .unwrap();
        assert_eq!(tls.role(), Role::Agent);
        assert_eq!(tls.cluster(), "prod");
        assert!(Validity::days(0).is_err());
    }
}
