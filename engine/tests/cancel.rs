//! Cancelling running jobs through `JobControl`: an unbounded job stops promptly once
//! cancelled and says it was cancelled; a job split across two workers stops on both sides,
//! and a worker whose peer was cancelled fails instead of waiting forever; a worker still
//! waiting for its peers gives up at once when cancelled.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use sluice_engine::api::{run_job_remote_with, run_job_with, JobControl};
use sluice_engine::builder::StreamEnv;
use sluice_engine::record::Batch;
use sluice_engine::runtime::{JobReport, RemoteExchangeConfig};
use sluice_engine::sink::Sink;
use sluice_engine::source::NexmarkConfig;
use sluice_engine::{EngineError, JobSpec};

/// How long a cancelled job may take to return.
const STOP_DEADLINE: Duration = Duration::from_secs(5);
/// How long a job may take to produce its first output.
const OUTPUT_DEADLINE: Duration = Duration::from_secs(30);

/// Counts what reaches the sinks.
struct CountingSink(Arc<AtomicU64>);

impl Sink for CountingSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.0.fetch_add(batch.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// An unbounded Nexmark bid stream, exchanged by auction, into a counting sink.
fn unbounded_job(shards: usize, count: &Arc<AtomicU64>) -> JobSpec {
    let count = count.clone();
    StreamEnv::new("cancel-me")
        .parallelism(shards)
        .pin_cores(false)
        .nexmark(NexmarkConfig::default())
        .key_by("auction")
        .custom_sink(
            "counting",
            Arc::new(move |_, _| Ok(Box::new(CountingSink(count.clone())) as Box<dyn Sink>)),
        )
        .spec()
        .clone()
}

fn wait_until(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

type Outcome = (&'static str, Result<JobReport, EngineError>);

/// Runs `job` on a thread of its own; its result arrives on the returned channel.
fn spawn_job(
    name: &'static str,
    job: impl FnOnce() -> Result<JobReport, EngineError> + Send + 'static,
) -> mpsc::Receiver<Outcome> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("job-{name}"))
        .spawn(move || {
            let _ = tx.send((name, job()));
        })
        .unwrap();
    rx
}

#[test]
fn an_unbounded_job_stops_promptly_once_cancelled() {
    let count = Arc::new(AtomicU64::new(0));
    let spec = unbounded_job(2, &count);
    let control = JobControl::new();
    let job_control = control.clone();
    let done = spawn_job("local", move || run_job_with(spec, &job_control));
    wait_until("output", OUTPUT_DEADLINE, || {
        count.load(Ordering::Relaxed) > 10_000
    });
    assert!(
        done.try_recv().is_err(),
        "an unbounded job must not end on its own"
    );
    let cancelled_at = Instant::now();
    control.cancel();
    assert!(control.is_cancelled());
    let (_, result) = done
        .recv_timeout(STOP_DEADLINE)
        .expect("the cancelled job did not return in time");
    let took = cancelled_at.elapsed();
    assert!(
        matches!(result, Err(EngineError::Cancelled)),
        "expected Cancelled, got {result:?}"
    );
    assert!(took < STOP_DEADLINE, "took {took:?}");
    // The shards are gone: nothing more arrives.
    let after = count.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(count.load(Ordering::Relaxed), after);
}

#[test]
fn a_job_cancelled_before_it_starts_returns_at_once() {
    let count = Arc::new(AtomicU64::new(0));
    let control = JobControl::new();
    control.cancel();
    let result = run_job_with(unbounded_job(1, &count), &control);
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert_eq!(count.load(Ordering::Relaxed), 0);
}

/// Two workers, shards 0..1 and 1..2 of one job, over loopback.
fn split_configs() -> [(RemoteExchangeConfig, TcpListener); 2] {
    let (la, lb) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let (a, b) = (la.local_addr().unwrap(), lb.local_addr().unwrap());
    let config = |local, peer, addr, listen| RemoteExchangeConfig {
        local_shards: local,
        peers: vec![(peer, addr)],
        listen,
        connect_timeout: Duration::from_secs(20),
        tls: None,
    };
    [
        (config(0..1, 1..2, b, a), la),
        (config(1..2, 0..1, a, b), lb),
    ]
}

/// Starts both workers of a split unbounded job, each with its control; waits for output.
fn start_split(controls: [JobControl; 2], count: &Arc<AtomicU64>) -> [mpsc::Receiver<Outcome>; 2] {
    let spec = unbounded_job(2, count);
    let [(ca, la), (cb, lb)] = split_configs();
    let [xa, xb] = controls;
    let sa = spec.clone();
    let a = spawn_job("a", move || run_job_remote_with(sa, ca, Some(la), &xa));
    let b = spawn_job("b", move || run_job_remote_with(spec, cb, Some(lb), &xb));
    wait_until("output of the split job", OUTPUT_DEADLINE, || {
        count.load(Ordering::Relaxed) > 10_000
    });
    [a, b]
}

#[test]
fn a_split_job_cancelled_on_both_sides_returns_on_both() {
    let count = Arc::new(AtomicU64::new(0));
    let control = JobControl::new();
    let [a, b] = start_split([control.clone(), control.clone()], &count);
    control.cancel();
    for rx in [a, b] {
        let (name, result) = rx
            .recv_timeout(STOP_DEADLINE)
            .expect("a cancelled worker did not return in time");
        assert!(
            matches!(result, Err(EngineError::Cancelled)),
            "worker {name}: expected Cancelled, got {result:?}"
        );
    }
}

#[test]
fn a_worker_whose_peer_is_cancelled_fails_promptly() {
    let count = Arc::new(AtomicU64::new(0));
    let (xa, xb) = (JobControl::new(), JobControl::new());
    let [a, b] = start_split([xa.clone(), xb], &count);
    xa.cancel();
    let (_, ra) = a.recv_timeout(STOP_DEADLINE).expect("worker a hangs");
    assert!(matches!(ra, Err(EngineError::Cancelled)), "{ra:?}");
    let (_, rb) = b.recv_timeout(STOP_DEADLINE).expect("worker b hangs");
    assert!(
        matches!(rb, Err(EngineError::Peer { .. })),
        "the peer of a cancelled worker fails naming it: {rb:?}"
    );
}

#[test]
fn a_worker_waiting_for_its_peers_stops_when_cancelled() {
    let count = Arc::new(AtomicU64::new(0));
    let [_, (config, listener)] = split_configs();
    let config = RemoteExchangeConfig {
        connect_timeout: Duration::from_secs(600),
        tls: None,
        ..config
    };
    let control = JobControl::new();
    let job_control = control.clone();
    let spec = unbounded_job(2, &count);
    let done = spawn_job("alone", move || {
        run_job_remote_with(spec, config, Some(listener), &job_control)
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(done.try_recv().is_err(), "it waits for its peer");
    control.cancel();
    let (_, result) = done
        .recv_timeout(STOP_DEADLINE)
        .expect("a cancelled worker waiting for peers did not return");
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
}
