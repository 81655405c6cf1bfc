//! `sluice dev`: a whole cluster in one command, on loopback.
//!
//! Three masters run in this process on real code paths: Raft over gRPC on
//! loopback, RocksDB on disk. The data dir is named on start; it is kept when
//! given with --data-dir (a restart then reuses the cluster) and removed on
//! exit otherwise.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_consensus::{MasterClient, MasterConfig, MasterHandle};

use crate::cli::DevArgs;
use crate::cluster_cmd::{collect_status, print_status};
use crate::master_cmd::wait_for_signal;

const DEV_MASTERS: u16 = 3;

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
    let mut masters = Vec::new();
    let mut api_addrs = Vec::new();
    for n in 1..=DEV_MASTERS {
        let api = format!("127.0.0.1:{}", port(args.base_port, n)?);
        let raft = format!("127.0.0.1:{}", port(args.base_port, n + 10)?);
        let mut config = MasterConfig::new(u64::from(n), raft, api.clone(), member_dir(&root, n));
        args.tuning.apply(&mut config);
        let master = MasterHandle::start(config)
            .await
            .with_context(|| format!("starting master {n}"))?;
        masters.push(master);
        api_addrs.push(api);
    }
    let client = MasterClient::new(api_addrs.clone(), Duration::from_secs(10))?;
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
    println!("\nTry, in another terminal:");
    println!("  sluice cluster status --masters {}", api_addrs.join(","));
    println!(
        "  sluice cluster transfer-leader 2 --masters {}",
        api_addrs[0]
    );
    println!("  sluice bench raft --quick");
    let outcome = if args.once {
        Ok(())
    } else {
        println!("\nRunning; Ctrl-C to stop.");
        wait_for_signal().await
    };
    println!("stopping {} masters", masters.len());
    for master in masters {
        master.shutdown().await?;
    }
    outcome
}

fn port(base: u16, offset: u16) -> Result<u16> {
    base.checked_add(offset)
        .with_context(|| format!("--base-port {base} leaves no room for port offset {offset}"))
}

fn member_dir(root: &std::path::Path, n: u16) -> PathBuf {
    root.join(format!("master-{n}"))
}
