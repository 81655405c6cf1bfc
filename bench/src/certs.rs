//! Throwaway certificates for benchmarks that measure what TLS costs.

use anyhow::Result;
use sluice_security::pki::{Ca, Validity};
use sluice_security::{Role, Tls, TlsFiles};

/// A cluster CA that lives as long as the benchmark, in memory.
pub struct BenchCa {
    ca: Ca,
}

impl BenchCa {
    pub fn new(cluster: &str) -> Result<Self> {
        Ok(Self {
            ca: Ca::generate(cluster)?,
        })
    }

    /// A fresh identity of `role`, valid for a day.
    pub fn identity(&self, role: Role) -> Result<Tls> {
        let issued = self.ca.issue(role, Validity::days(1)?)?;
        let names = TlsFiles {
            ca: "(bench CA)".into(),
            cert: format!("(bench {role} certificate)").into(),
            key: format!("(bench {role} key)").into(),
        };
        Ok(Tls::from_pem(
            self.ca.cert_pem().as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            &names,
        )?)
    }
}
