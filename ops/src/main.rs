//! The `sluice` binary: every process entry point and the admin CLI.

#![forbid(unsafe_code)]

mod cli;
mod cluster_cmd;
mod dev;
mod master_cmd;
mod output;

use clap::Parser;

use crate::cli::{BenchCommand, Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!(
            "warning: bad --log filter {:?} ({e}); using `warn`",
            cli.log
        );
        tracing_subscriber::EnvFilter::new("warn")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => dev::run(args).await,
            Command::Master(args) => master_cmd::run(args).await,
            Command::Cluster(cmd) => cluster_cmd::run(cmd).await,
            Command::Bench(BenchCommand::Raft(args)) => sluice_bench::raft::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
