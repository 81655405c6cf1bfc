//! The `sluice` binary: every process entry point and the admin CLI.

#![forbid(unsafe_code)]

mod agent_cmd;
mod checkpoints_view;
mod cli;
mod cluster_cmd;
mod dev;
mod master_cmd;
mod output;
mod run_cmd;
mod sched_cmd;
mod security_cmd;

use clap::Parser;
use sluice_consensus::ClientError;

use crate::cli::{BenchCommand, Cli, Command};

/// Exit status: the command failed and changed nothing (a refused or
/// rejected request, an unreachable cluster, a bad file...).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: a write was sent but its outcome is unknown: it may or may
/// not be applied. Read the state before retrying.
pub const EXIT_OUTCOME_UNKNOWN: u8 = 3;

fn main() -> std::process::ExitCode {
    quiet_on_broken_pipe();
    // Every TLS connection of this process (gRPC included) prefers
    // AES-128-GCM; nothing has made a TLS setting yet, so this cannot fail.
    let _ =
        rustls::crypto::CryptoProvider::install_default(sluice_security::tls::cluster_provider());
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log).unwrap_or_else(|e| {
        eprintln!(
            "warning: bad --log filter {:?} ({e}); using `warn`",
            cli.log
        );
        tracing_subscriber::EnvFilter::new("warn")
    });
    // Colours only on a terminal: a log file gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let result = match cli.command {
        // The engine runs its own pinned threads: no async runtime, and none
        // may run on its threads.
        Command::Run(args) => run_cmd::run(args),
        Command::Bench(BenchCommand::Engine(args)) => sluice_bench::engine::run(args),
        Command::Bench(BenchCommand::Exchange(args)) => sluice_bench::exchange::run(args),
        Command::Bench(BenchCommand::Checkpoint(args)) => sluice_bench::checkpoint::run(args),
        Command::Bench(BenchCommand::Failover(args)) => block_on(sluice_bench::failover::run(args)),
        Command::Dev(args) => block_on(dev::run(args)),
        Command::Master(args) => block_on(master_cmd::run(args)),
        Command::Cluster(cmd) => block_on(cluster_cmd::run(cmd)),
        Command::Agent(cli::AgentCli {
            command: Some(cmd), ..
        }) => block_on(sched_cmd::agent(cmd)),
        Command::Agent(cli::AgentCli { command: None, run }) => block_on(agent_cmd::run(run)),
        Command::Role(cmd) => block_on(sched_cmd::role(cmd)),
        Command::Job(cmd) => block_on(sched_cmd::job(cmd)),
        Command::Task(cmd) => block_on(sched_cmd::task(cmd)),
        Command::Bench(BenchCommand::Raft(args)) => block_on(sluice_bench::raft::run(args)),
        Command::Bench(BenchCommand::Scheduler(args)) => {
            block_on(sluice_bench::scheduler::run(args))
        }
        Command::Bench(BenchCommand::Compare(args)) => return compare(&args),
        Command::Bench(BenchCommand::All(args)) => bench_all(&args),
        Command::Tls(cmd) => security_cmd::tls(cmd),
        Command::Acl(cmd) => block_on(security_cmd::acl(cmd)),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(exit_code(&e))
        }
    }
}

/// The exit status for an error: [`EXIT_OUTCOME_UNKNOWN`] only when a
/// write may have been applied, [`EXIT_FAILED`] otherwise.
fn exit_code(error: &anyhow::Error) -> u8 {
    let unknown = error
        .chain()
        .filter_map(|e| e.downcast_ref::<ClientError>())
        .any(ClientError::outcome_unknown);
    if unknown {
        EXIT_OUTCOME_UNKNOWN
    } else {
        EXIT_FAILED
    }
}

/// `sluice job list | head -1`: once the reader of stdout is gone, printing
/// fails with EPIPE, which `println!` turns into a panic (exit 101 and a
/// backtrace hint). The standard library ignores SIGPIPE, and restoring its
/// default would also kill the daemons on a closed socket, so the panic is
/// caught here instead: a failed print to a closed stdout ends the process
/// quietly with success, as a Unix filter whose reader left does.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// A suite's arguments as if given on the command line.
fn suite_args<T: clap::Args + clap::FromArgMatches>(args: &[String]) -> anyhow::Result<T> {
    #[derive(clap::Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        inner: T,
    }
    use clap::Parser;
    Ok(Wrap::<T>::try_parse_from(
        std::iter::once("sluice-bench".to_owned()).chain(args.iter().cloned()),
    )?
    .inner)
}

/// `sluice bench all`: every suite, one directory each.
fn bench_all(args: &cli::AllBenchArgs) -> anyhow::Result<()> {
    let out = args.out.clone().unwrap_or_else(|| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        std::path::PathBuf::from(format!("bench-results/all-{unix}"))
    });
    let common = |suite: &str| {
        let mut v = vec!["--out".to_owned(), out.join(suite).display().to_string()];
        if args.quick {
            v.push("--quick".to_owned());
        }
        v
    };
    eprintln!("== bench all: raft");
    block_on(sluice_bench::raft::run(suite_args(&common("raft"))?))?;
    eprintln!("== bench all: engine");
    sluice_bench::engine::run(suite_args(&common("engine"))?)?;
    eprintln!("== bench all: scheduler");
    block_on(sluice_bench::scheduler::run(suite_args(&common(
        "scheduler",
    ))?))?;
    eprintln!("== bench all: failover");
    block_on(sluice_bench::failover::run(suite_args(&common(
        "failover",
    ))?))?;
    eprintln!("== bench all: exchange");
    sluice_bench::exchange::run(suite_args(&common("exchange"))?)?;
    println!("all suites done; results under {}", out.display());
    Ok(())
}

/// `sluice bench compare`: exit 0 if nothing regressed, 2 if something
/// did, 1 on an error.
fn compare(args: &cli::CompareArgs) -> std::process::ExitCode {
    if !(args.threshold_percent > 0.0 && args.threshold_percent < 100.0) {
        eprintln!(
            "error: --threshold-percent must be in (0, 100), got {}",
            args.threshold_percent
        );
        return std::process::ExitCode::FAILURE;
    }
    match sluice_bench::compare::compare_with_threshold(
        &args.old,
        &args.new,
        args.threshold_percent / 100.0,
    ) {
        Ok(comparison) => {
            sluice_bench::compare::print_comparison(&comparison);
            if comparison.has_regressions() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a control-plane command on a multi-threaded tokio runtime.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(command)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_help_lists_the_exit_codes_main_uses() {
        let help = cli::EXIT_CODES_HELP;
        assert!(help.contains(&format!("  {EXIT_FAILED}  failed, and nothing was changed")));
        assert!(help.contains(&format!("  {EXIT_OUTCOME_UNKNOWN}  outcome unknown")));
        assert!(help.contains("  2  the command line is wrong"));
    }

    #[test]
    fn only_an_unknown_outcome_exits_3() {
        let unknown = anyhow::Error::new(ClientError::OutcomeUnknown {
            addr: "a".into(),
            message: "timed out".into(),
        })
        .context("writing");
        assert_eq!(exit_code(&unknown), EXIT_OUTCOME_UNKNOWN);
        let refused = anyhow::Error::new(ClientError::Usage("x".into()));
        assert_eq!(exit_code(&refused), EXIT_FAILED);
    }
}
