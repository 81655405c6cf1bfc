//! The agent's identity, kept in its data dir: the id the masters gave it and
//! the resources it registered with, so that a restart re-registers as the
//! same agent with the same resources.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sluice_api::model::AgentId;

use crate::error::AgentError;

/// Name of the identity file in the data dir.
pub const IDENTITY_FILE: &str = "SLUICE_AGENT";
const FORMAT_VERSION: u32 = 1;

/// What the agent registered as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub format: u32,
    pub id: AgentId,
    pub hostname: String,
    pub cores: BTreeSet<u32>,
    pub memory_bytes: u64,
    pub disk_bytes: u64,
}

impl Identity {
    pub fn new(
        id: AgentId,
        hostname: String,
        cores: BTreeSet<u32>,
        memory_bytes: u64,
        disk_bytes: u64,
    ) -> Self {
        Self {
            format: FORMAT_VERSION,
            id,
            hostname,
            cores,
            memory_bytes,
            disk_bytes,
        }
    }

    fn path(dir: &Path) -> PathBuf {
        dir.join(IDENTITY_FILE)
    }

    /// Reads the identity in `dir`, if the agent registered before.
    pub fn load(dir: &Path) -> Result<Option<Self>, AgentError> {
        let path = Self::path(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AgentError::io(&path)(e)),
        };
        let identity: Self = serde_json::from_str(&text).map_err(|e| AgentError::Corrupt {
            path: path.clone(),
            reason: format!("not an agent identity file ({e}); restore it or use a new data dir"),
        })?;
        if identity.format != FORMAT_VERSION {
            return Err(AgentError::Corrupt {
                path,
                reason: format!(
                    "format {} is not the supported {FORMAT_VERSION}",
                    identity.format
                ),
            });
        }
        Ok(Some(identity))
    }

    /// Writes the identity durably (temp file, fsync, rename, fsync dir).
    pub fn save(&self, dir: &Path) -> Result<(), AgentError> {
        let path = Self::path(dir);
        let tmp = dir.join(format!("{IDENTITY_FILE}.tmp"));
        let json = serde_json::to_vec_pretty(self).map_err(|e| AgentError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(AgentError::io(&tmp))?;
        file.write_all(&json).map_err(AgentError::io(&tmp))?;
        file.sync_all().map_err(AgentError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(AgentError::io(&path))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(AgentError::io(dir))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trips_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
        let id = Identity::new(7, "h".into(), [0, 1].into(), 1 << 30, 1 << 20);
        id.save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id));
        std::fs::write(dir.path().join(IDENTITY_FILE), "nope").unwrap();
        let err = Identity::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not an agent identity file"), "{err}");
    }
}
