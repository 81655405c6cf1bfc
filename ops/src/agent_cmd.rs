//! `sluice agent`: run the agent daemon until SIGINT or SIGTERM.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sluice_agent::{Agent, AgentConfig};

use crate::cli::AgentRunArgs;
use crate::master_cmd::wait_for_signal;

/// `4` means cores 0-3; `0-3,6` is a list.
pub fn parse_cores(text: &str) -> Result<BTreeSet<u32>> {
    let text = text.trim();
    if let Ok(count) = text.parse::<u32>() {
        if count == 0 {
            bail!("--cores 0: offer at least one core");
        }
        return Ok((0..count).collect());
    }
    let mut cores = BTreeSet::new();
    for part in text.split(',').map(str::trim) {
        let bad = || format!("--cores {text:?}: {part:?} is not a core id or FIRST-LAST range");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (
                    a.trim().parse().with_context(bad)?,
                    b.trim().parse().with_context(bad)?,
                );
                if a > b || b - a > 4096 {
                    bail!(bad());
                }
                cores.extend(a..=b);
            }
            None => {
                cores.insert(part.parse().with_context(bad)?);
            }
        }
    }
    Ok(cores)
}

fn parse_ports(text: &str) -> Result<std::ops::RangeInclusive<u16>> {
    let bad = || format!("--data-ports {text:?}: expected FIRST-LAST, e.g. 7300-7399");
    let (a, b) = text.split_once('-').with_context(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().with_context(bad)?,
        b.trim().parse().with_context(bad)?,
    );
    if a > b || a == 0 {
        bail!(bad());
    }
    Ok(a..=b)
}

/// The agent's config from flags.
pub fn config(args: &AgentRunArgs) -> Result<AgentConfig> {
    let Some(data_dir) = args.data_dir.clone() else {
        bail!("missing the agent's data dir: pass --data-dir DIR (or SLUICE_AGENT_DATA_DIR)");
    };
    let mut config = AgentConfig::new(args.masters.clone(), data_dir);
    config.cores = args.cores.as_deref().map(parse_cores).transpose()?;
    config.memory_bytes = args.memory;
    config.disk_bytes = args.disk;
    config.hostname = args.hostname.clone();
    config.data_addr = args.data_addr;
    config.data_ports = parse_ports(&args.data_ports)?;
    config.api_addr = args.api_addr;
    config.checkpoint_storage = args.checkpoint_storage.clone();
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms);
    config.tls = args.tls.for_daemon(args.insecure, "agent")?;
    config.token = args.token.clone();
    config.task_user = args.task_user.clone();
    config.allow_root_tasks = args.allow_root_tasks;
    let mut attributes = BTreeMap::new();
    for attr in &args.attributes {
        let (k, v) = attr
            .split_once('=')
            .with_context(|| format!("--attr {attr:?}: expected KEY=VALUE"))?;
        attributes.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    config.attributes = attributes;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("invalid agent settings: {e}"))?;
    Ok(config)
}

pub async fn run(args: AgentRunArgs) -> Result<()> {
    let config = config(&args)?;
    let dir = config.data_dir.clone();
    let agent = Agent::start(config)
        .await
        .with_context(|| format!("starting the agent in {}", dir.display()))?;
    eprintln!(
        "agent {} running, data in {}; Ctrl-C to stop",
        agent.id(),
        dir.display()
    );
    wait_for_signal().await?;
    eprintln!("agent {} stopping its tasks", agent.id());
    agent.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_lists() {
        assert_eq!(parse_cores("4").unwrap(), (0..4).collect());
        assert_eq!(parse_cores("0-2,6").unwrap(), [0, 1, 2, 6].into());
        assert!(parse_cores("0").is_err());
        assert!(parse_cores("3-1").is_err());
        assert!(parse_cores("x")
            .unwrap_err()
            .to_string()
            .contains("not a core id"));
        assert!(parse_ports("7300-7399").is_ok());
        assert!(parse_ports("7399-7300").is_err());
    }
}
