//! The remote exchange over real loopback TCP: a job split across two workers (two runtimes
//! in this process, connected only by TCP) produces exactly what the same job produces on one
//! worker — no loss, no duplication, per-producer order kept — also when a slow sink
//! backpressures the senders across the connection; and a failing worker fails its peer
//! instead of leaving it waiting.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_engine::api::run_job_remote_on;
use sluice_engine::bench::{nexmark_spec, NexmarkBenchConfig, NexmarkQuery};
use sluice_engine::builder::StreamEnv;
use sluice_engine::record::{Batch, DataType, Schema, SchemaRef, Value, BATCH_RECORDS_MAX};
use sluice_engine::runtime::remote::ExchangeTls;
use sluice_engine::runtime::{JobReport, RemoteExchangeConfig};
use sluice_engine::sink::Sink;
use sluice_engine::source::{DeadLetters, Source, SourceStatus};
use sluice_engine::spec::{CustomSource, JobSpec, SinkSpec};
use sluice_engine::EngineError;
use sluice_security::pki::{Ca, Issued, Validity};
use sluice_security::{Role, Tls, TlsFiles};

/// Longest a test waits for its workers.
const TEST_DEADLINE: Duration = Duration::from_secs(120);
const RECORDS_PER_PRODUCER: i64 = 30_000;
const KEYS: i64 = 23;
const SHARDS: usize = 4;

fn schema() -> SchemaRef {
    Schema::of(&[
        ("producer", DataType::Int),
        ("seq", DataType::Int),
        ("key", DataType::Int),
        ("tag", DataType::String),
    ])
    .unwrap()
}

struct Sequence {
    schema: SchemaRef,
    producer: i64,
    next: i64,
}

impl Source for Sequence {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn poll(
        &mut self,
        out: &mut Batch,
        _dead: &mut DeadLetters,
    ) -> Result<SourceStatus, EngineError> {
        while self.next < RECORDS_PER_PRODUCER && out.len() < BATCH_RECORDS_MAX {
            let key = (self.next * 7 + self.producer) % KEYS;
            let tag = ["", "a", "ünï", "longer tag text"][(self.next % 4) as usize];
            out.push_row(&[
                Value::Int(self.producer),
                Value::Int(self.next),
                Value::Int(key),
                Value::Str(tag),
            ])?;
            self.next += 1;
        }
        Ok(if self.next == RECORDS_PER_PRODUCER {
            SourceStatus::Exhausted
        } else {
            SourceStatus::Ready
        })
    }
}

/// (consumer shard, producer, seq, key, tag) in arrival order.
type Seen = Arc<Mutex<Vec<(usize, i64, i64, i64, String)>>>;

/// Records what reaches each shard; shard `slow` sleeps per batch, so the rings feeding it
/// (including those across TCP) fill up.
struct RecordingSink {
    shard: usize,
    slow: Option<usize>,
    fail_after: Option<usize>,
    seen: Seen,
}

impl Sink for RecordingSink {
    fn write(&mut self, batch: &Batch) -> Result<(), EngineError> {
        if Some(self.shard) == self.slow {
            // Being slow is the point of this sink; nothing waits on this sleep.
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut seen = self.seen.lock().unwrap();
        if self.fail_after.is_some_and(|n| seen.len() >= n) {
            return Err(EngineError::Plan("the test sink fails on purpose".into()));
        }
        for r in 0..batch.len() {
            let get = |c| batch.column(c).get_i64(r).unwrap();
            let tag = batch.value(r, 3).to_string();
            seen.push((self.shard, get(0), get(1), get(2), tag));
        }
        Ok(())
    }
}

fn sequence_job(seen: &Seen, slow: Option<usize>, fail_after: Option<usize>) -> JobSpec {
    let schema = schema();
    let source_schema = schema.clone();
    let sink_seen = seen.clone();
    StreamEnv::new("remote-exchange")
        .parallelism(SHARDS)
        .pin_cores(false)
        .ring_capacity(2)
        .custom_source(CustomSource {
            name: "sequence".into(),
            schema,
            factory: Arc::new(move |shard, _| {
                Ok(Box::new(Sequence {
                    schema: source_schema.clone(),
                    producer: shard as i64,
                    next: 0,
                }))
            }),
        })
        .key_by("key")
        .custom_sink(
            "recording",
            Arc::new(move |shard, _| {
                Ok(Box::new(RecordingSink {
                    shard,
                    slow,
                    fail_after,
                    seen: sink_seen.clone(),
                }) as Box<dyn Sink>)
            }),
        )
        .spec()
        .clone()
}

/// Runs `spec` split in two workers, shards `0..split` and `split..SHARDS`, connected over
/// loopback TCP; returns both reports (worker A's first).
fn run_split(
    spec: JobSpec,
    split: u32,
) -> (
    Result<JobReport, EngineError>,
    Result<JobReport, EngineError>,
) {
    run_split_with(spec, split, None, None)
}

/// [`run_split`] with each worker's exchange TLS.
fn run_split_with(
    spec: JobSpec,
    split: u32,
    tls_a: Option<ExchangeTls>,
    tls_b: Option<ExchangeTls>,
) -> (
    Result<JobReport, EngineError>,
    Result<JobReport, EngineError>,
) {
    let listen_a = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_b = TcpListener::bind("127.0.0.1:0").unwrap();
    let tls = [tls_a, tls_b];
    run_split_on(
        spec,
        split,
        tls,
        Duration::from_secs(20),
        listen_a,
        listen_b,
    )
}

/// [`run_split_with`] on given listeners (worker B accepts worker A's
/// connection on `listen_b`), each worker waiting `connect_timeout` for its peer.
fn run_split_on(
    spec: JobSpec,
    split: u32,
    [tls_a, tls_b]: [Option<ExchangeTls>; 2],
    connect_timeout: Duration,
    listen_a: TcpListener,
    listen_b: TcpListener,
) -> (
    Result<JobReport, EngineError>,
    Result<JobReport, EngineError>,
) {
    let (addr_a, addr_b) = (
        listen_a.local_addr().unwrap(),
        listen_b.local_addr().unwrap(),
    );
    let shards = SHARDS as u32;
    let config_a = RemoteExchangeConfig {
        local_shards: 0..split,
        peers: vec![(split..shards, addr_b)],
        listen: addr_a,
        connect_timeout,
        tls: tls_a,
    };
    let config_b = RemoteExchangeConfig {
        local_shards: split..shards,
        peers: vec![(0..split, addr_a)],
        listen: addr_b,
        connect_timeout,
        tls: tls_b,
    };
    let (tx, rx) = mpsc::channel();
    for (name, config, listener) in [("a", config_a, listen_a), ("b", config_b, listen_b)] {
        let (spec, tx) = (spec.clone(), tx.clone());
        std::thread::Builder::new()
            .name(format!("worker-{name}"))
            .spawn(move || {
                let result = run_job_remote_on(spec, config, listener);
                let _ = tx.send((name, result));
            })
            .unwrap();
    }
    let mut results = HashMap::new();
    for _ in 0..2 {
        let (name, result) = rx
            .recv_timeout(TEST_DEADLINE)
            .expect("a worker did not finish in time");
        results.insert(name, result);
    }
    (results.remove("a").unwrap(), results.remove("b").unwrap())
}

fn check_order_and_count(seen: &[(usize, i64, i64, i64, String)]) {
    let total = SHARDS as i64 * RECORDS_PER_PRODUCER;
    assert_eq!(seen.len() as i64, total, "records lost or duplicated");
    let mut last: HashMap<(usize, i64), i64> = HashMap::new();
    for (shard, producer, seq, _, _) in seen {
        let l = last.entry((*shard, *producer)).or_insert(-1);
        assert!(
            *l < *seq,
            "producer {producer} out of order on shard {shard}"
        );
        *l = *seq;
    }
}

fn sorted(seen: &[(usize, i64, i64, i64, String)]) -> Vec<(usize, i64, i64, i64, String)> {
    let mut v = seen.to_vec();
    v.sort();
    v
}

#[test]
fn a_split_job_matches_one_worker_under_backpressure() {
    let single: Seen = Arc::default();
    run_job_remote_free(sequence_job(&single, None, None));
    let single = single.lock().unwrap().clone();
    check_order_and_count(&single);

    // Shard 3 (worker B) is slow: producers in worker A must wait on credits over TCP.
    let split: Seen = Arc::default();
    let (a, b) = run_split(sequence_job(&split, Some(3), None), 2);
    let (a, b) = (a.unwrap(), b.unwrap());
    let split = split.lock().unwrap().clone();
    check_order_and_count(&split);
    assert_eq!(sorted(&split), sorted(&single), "outputs differ");
    assert_eq!(a.shards.len() + b.shards.len(), SHARDS);
    assert_eq!(
        (a.records_in + b.records_in) as i64,
        SHARDS as i64 * RECORDS_PER_PRODUCER
    );
    assert!(
        a.backpressure_waits > 0,
        "the slow sink in worker B must have held back worker A"
    );
}

/// Runs a job on one worker (all shards local).
fn run_job_remote_free(spec: JobSpec) -> JobReport {
    sluice_engine::run_job(spec).unwrap()
}

#[test]
fn nexmark_q5_split_across_workers_matches_one_worker() {
    let config = NexmarkBenchConfig {
        query: NexmarkQuery::Q5,
        events: 60_000,
        parallelism: SHARDS,
        seed: 9,
        pin_cores: false,
    };
    let mut spec = nexmark_spec(&config);
    spec.sinks = vec![SinkSpec::Collect];
    let rows = |r: &JobReport| {
        let mut rows: Vec<String> = r
            .collected_rows()
            .iter()
            .map(|row| format!("{row:?}"))
            .collect();
        rows.sort();
        rows
    };
    let single = sluice_engine::run_job(spec.clone()).unwrap();
    assert!(!single.collected.is_empty());
    for split in [1, 3] {
        let (a, b) = run_split(spec.clone(), split);
        let (a, b) = (a.unwrap(), b.unwrap());
        let mut got = rows(&a);
        got.extend(rows(&b));
        got.sort();
        assert_eq!(got, rows(&single), "split at {split}");
        assert_eq!(a.late_records + b.late_records, 0);
    }
}

#[test]
fn a_failing_worker_fails_its_peer_instead_of_hanging() {
    let seen: Seen = Arc::default();
    // Sinks fail once 5,000 records arrived anywhere: whichever worker fails first, the
    // other must fail too (its peer vanished), within the deadline.
    let (a, b) = run_split(sequence_job(&seen, Some(0), Some(5_000)), 2);
    let (a, b) = (a.unwrap_err(), b.unwrap_err());
    let messages = format!("{a} | {b}");
    assert!(
        messages.contains("fails on purpose"),
        "the cause must be reported: {messages}"
    );
    let by_peer = [&a, &b]
        .iter()
        .any(|e| matches!(e, EngineError::Peer { .. }));
    let both_own = [&a, &b]
        .iter()
        .all(|e| e.to_string().contains("fails on purpose"));
    assert!(by_peer || both_own, "{messages}");
}

#[test]
fn a_worker_alone_gives_up_when_its_peer_never_comes() {
    let seen: Seen = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let config = RemoteExchangeConfig {
        local_shards: 2..4,
        peers: vec![(0..2, "127.0.0.1:9".parse().unwrap())],
        listen: addr,
        connect_timeout: Duration::from_millis(300),
        tls: None,
    };
    let err = run_job_remote_on(sequence_job(&seen, None, None), config, listener).unwrap_err();
    assert!(
        matches!(err, EngineError::Unreachable { .. }),
        "expected unreachable, got {err}"
    );
    // Shard ranges that do not cover the job are refused before anything connects.
    let config = RemoteExchangeConfig {
        local_shards: 0..2,
        peers: vec![(3..4, "127.0.0.1:9".parse().unwrap())],
        listen: "127.0.0.1:0".parse().unwrap(),
        connect_timeout: Duration::from_millis(300),
        tls: None,
    };
    let err =
        sluice_engine::api::run_job_remote(sequence_job(&seen, None, None), config).unwrap_err();
    assert!(err.to_string().contains("without gaps"), "{err}");
}

/// An identity of `role` from `ca`, as the exchange uses it: peers must be
/// agents of the same cluster.
fn exchange_tls(ca: &Ca, role: Role) -> ExchangeTls {
    let issued = ca.issue(role, Validity::days(1).unwrap()).unwrap();
    let names = TlsFiles {
        ca: "ca.pem".into(),
        cert: "cert.pem".into(),
        key: "key.pem".into(),
    };
    let tls = Tls::from_pem(
        ca.cert_pem().as_bytes(),
        issued.cert_pem.as_bytes(),
        issued.key_pem.as_bytes(),
        &names,
    )
    .unwrap();
    let (client, server) = tls.rustls_configs().unwrap();
    ExchangeTls {
        client,
        server,
        server_name: rustls::pki_types::ServerName::try_from(Role::Agent.name_in(tls.cluster()))
            .unwrap(),
        peer_check: Arc::new(move |chain| match tls.peer_role(chain)? {
            Role::Agent => Ok(()),
            other => Err(format!(
                "{} certificate is no exchange peer",
                other.with_article()
            )),
        }),
    }
}

#[test]
fn a_split_job_over_mutual_tls_gives_the_same_answer() {
    let single: Seen = Arc::default();
    run_job_remote_free(sequence_job(&single, None, None));
    let single = single.lock().unwrap().clone();
    let ca = Ca::generate("exchange").unwrap();
    let split: Seen = Arc::default();
    let (a, b) = run_split_with(
        sequence_job(&split, Some(3), None),
        2,
        Some(exchange_tls(&ca, Role::Agent)),
        Some(exchange_tls(&ca, Role::Agent)),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let split = split.lock().unwrap().clone();
    check_order_and_count(&split);
    assert_eq!(sorted(&split), sorted(&single), "outputs differ over TLS");
    assert!(a.backpressure_waits > 0, "credits must flow over TLS too");
    assert_eq!(a.shards.len() + b.shards.len(), SHARDS);
}

/// An agent's exchange TLS whose dialing side presents `identity` (or no
/// certificate) as is, as a peer with an expired certificate, or none, dials.
fn dialing_with(ca: &Ca, identity: Option<&Issued>) -> ExchangeTls {
    let mut tls = exchange_tls(ca, Role::Agent);
    tls.client = sluice_security::tls::unchecked_client_config(
        ca.cert_pem().as_bytes(),
        identity.map(|id| (id.cert_pem.as_bytes(), id.key_pem.as_bytes())),
    )
    .unwrap();
    tls
}

#[test]
fn exchange_peers_without_the_right_certificate_are_refused() {
    let ca = Ca::generate("exchange").unwrap();
    let other_ca = Ca::generate("exchange").unwrap();
    let agent = || Some(exchange_tls(&ca, Role::Agent));
    let now = time::OffsetDateTime::now_utc();
    let expired = ca
        .issue(
            Role::Agent,
            Validity {
                not_before: now - time::Duration::days(2),
                not_after: now - time::Duration::days(1),
            },
        )
        .unwrap();
    // Worker A (shards 0..2) dials worker B (2..4).
    let cases: [(&str, Option<ExchangeTls>, Option<ExchangeTls>, &str); 6] = [
        (
            "a dialer with no certificate",
            Some(dialing_with(&ca, None)),
            agent(),
            "TLS handshake failed",
        ),
        (
            "a dialer with an expired certificate",
            Some(dialing_with(&ca, Some(&expired))),
            agent(),
            "TLS handshake failed",
        ),
        (
            "a dialer with a client certificate",
            Some(exchange_tls(&ca, Role::Client)),
            agent(),
            "a client certificate is no exchange peer",
        ),
        (
            "an acceptor with a client certificate",
            agent(),
            Some(exchange_tls(&ca, Role::Client)),
            "TLS handshake failed",
        ),
        (
            "another CA's certificate",
            agent(),
            Some(exchange_tls(&other_ca, Role::Agent)),
            "TLS handshake failed",
        ),
        ("a peer in plain TCP", agent(), None, "TLS handshake failed"),
    ];
    for (what, tls_a, tls_b, reason) in cases {
        let seen: Seen = Arc::default();
        // The acceptor drops a refused connection and waits on for the
        // right peer until its timeout: keep that short here.
        let (a, b) = run_split_on(
            sequence_job(&seen, None, None),
            2,
            [tls_a, tls_b],
            Duration::from_secs(2),
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        );
        let (a, b) = (a.unwrap_err().to_string(), b.unwrap_err().to_string());
        assert!(
            a.contains(reason) || b.contains(reason),
            "{what}: expected {reason:?} in\n a: {a}\n b: {b}"
        );
        assert!(seen.lock().unwrap().is_empty(), "{what}: records flowed");
    }
}

/// Anyone can connect to an agent's exchange port: connections that stay
/// silent, speak garbage or present no certificate are dropped, and the job
/// still starts when its real peer connects.
#[test]
fn stray_connections_to_the_exchange_port_do_not_fail_the_job() {
    let ca = Ca::generate("exchange").unwrap();
    let listen_a = TcpListener::bind("127.0.0.1:0").unwrap();
    let listen_b = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr_b = listen_b.local_addr().unwrap();
    // Queued before the real peer's connection, so worker B meets them first.
    let silent = std::net::TcpStream::connect(addr_b).unwrap();
    let mut garbage = std::net::TcpStream::connect(addr_b).unwrap();
    std::io::Write::write_all(&mut garbage, b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let no_certificate = std::thread::Builder::new()
        .name("no-certificate".into())
        .spawn({
            let tls = dialing_with(&ca, None);
            move || {
                let stream = std::net::TcpStream::connect(addr_b).unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                // In TLS 1.3 the dialer finishes its side before the acceptor has
                // judged its certificate: the refusal arrives as an alert on the
                // first read, or as the connection closing.
                match sluice_engine::runtime::remote::Link::handshake(stream, &tls, true, deadline)
                {
                    Err(_) => true,
                    Ok(mut link) => link
                        .receive(&mut [0u8; 1], Duration::from_secs(10))
                        .is_err(),
                }
            }
        })
        .unwrap();
    let seen: Seen = Arc::default();
    let (a, b) = run_split_on(
        sequence_job(&seen, None, None),
        2,
        [
            Some(exchange_tls(&ca, Role::Agent)),
            Some(exchange_tls(&ca, Role::Agent)),
        ],
        Duration::from_secs(30),
        listen_a,
        listen_b,
    );
    a.unwrap();
    b.unwrap();
    assert!(
        no_certificate.join().unwrap(),
        "a dialer without a certificate must not get through"
    );
    drop((silent, garbage));
    let seen = seen.lock().unwrap();
    check_order_and_count(&seen);
}
