//! The remote exchange: a job's shards split across processes. Each process runs a range of
//! the job's shards; records for shards of another process go over one TCP connection per
//! process pair, in length-prefixed frames ([`frame`]) with credit-based flow control
//! ([`credit`]). Two I/O threads per peer ([`peer`]) serve the connection with blocking
//! sockets; shards reach them through bounded SPSC rings behind the same
//! `ExchangeSender`/`ExchangeReceiver` traits as local rings ([`endpoint`]), so a stage does
//! not know whether its target is local.
//!
//! Connections: a process dials every peer whose shards come after its own and accepts the
//! others on its listen address; both ends then exchange a HELLO with the plan fingerprint,
//! the job's shard count and their shard ranges, and refuse a peer that runs another plan or
//! claims other shards.
//!
//! Failure: an I/O error, a protocol violation or a peer that closes early fails the job in
//! this process (the error names the peer); a failure here closes the connections, so the
//! peers fail too instead of waiting forever.
//!
//! ```no_run
//! use std::time::Duration;
//! use sluice_engine::runtime::RemoteExchangeConfig;
//! use sluice_engine::{EngineError, JobReport, JobSpec};
//!
//! /// Runs shards 0..2 of a 4-shard job here; another process runs 2..4 at 10.0.0.2:7100.
//! fn run_my_half(spec: JobSpec) -> Result<JobReport, EngineError> {
//!     let config = RemoteExchangeConfig {
//!         local_shards: 0..2,
//!         peers: vec![(2..4, "10.0.0.2:7100".parse().unwrap())],
//!         listen: "0.0.0.0:7100".parse().unwrap(),
//!         connect_timeout: Duration::from_secs(10),
//!         tls: None,
//!     };
//!     sluice_engine::api::run_job_remote(spec, config)
//! }
//! ```

pub mod credit;
pub mod endpoint;
pub mod frame;
pub mod link;
pub mod peer;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::error::EngineError;
use crate::spec::plan::Plan;
use frame::{decode, encode_hello, Frame, Hello};

pub use endpoint::{RemoteReceiver, RemoteSender};
pub use link::{ExchangeTls, Link};

/// How long a dialer waits between attempts while a peer is not listening yet.
const DIAL_RETRY: Duration = Duration::from_millis(20);
/// Longest an accepted connection may take to finish its handshake and
/// HELLO (within the overall connect deadline).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an acceptor waits between polls of its listener.
const ACCEPT_POLL: Duration = Duration::from_millis(2);
/// The default time to wait for all peers to connect.
pub const CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// Where a job's shards run: this process runs `local_shards`; each peer process at its
/// address runs its range. Together the ranges cover every shard of the job exactly once.
#[derive(Clone, Debug)]
pub struct RemoteExchangeConfig {
    /// The shards this process runs.
    pub local_shards: Range<u32>,
    /// The other processes: their shards and the address they listen on.
    pub peers: Vec<(Range<u32>, SocketAddr)>,
    /// Where this process accepts connections from peers whose shards come before its own.
    pub listen: SocketAddr,
    /// How long to wait for every peer to connect and answer.
    pub connect_timeout: Duration,
    /// Mutual TLS on every connection (None: plain TCP).
    pub tls: Option<ExchangeTls>,
}

impl RemoteExchangeConfig {
    /// Checks that the ranges are non-empty, disjoint and cover `0..shards`.
    pub fn validate(&self, shards: usize) -> Result<(), EngineError> {
        let bad = |m: String| Err(EngineError::Plan(format!("remote exchange: {m}")));
        let mut ranges: Vec<Range<u32>> = self.peers.iter().map(|(r, _)| r.clone()).collect();
        ranges.push(self.local_shards.clone());
        if let Some(r) = ranges.iter().find(|r| r.is_empty()) {
            return bad(format!("shard range {r:?} is empty"));
        }
        ranges.sort_by_key(|r| r.start);
        let mut next = 0u32;
        for r in &ranges {
            if r.start != next {
                return bad(format!(
                    "shard ranges {ranges:?} must cover 0..{shards} without gaps or overlaps \
                     (expected a range starting at {next})"
                ));
            }
            next = r.end;
        }
        if next as usize != shards {
            return bad(format!(
                "shard ranges {ranges:?} cover 0..{next} but the job has {shards} shards"
            ));
        }
        Ok(())
    }
}

/// A fingerprint of what both ends of a connection must agree on: the job's name, shard
/// count and exchange edges with their schemas.
pub fn plan_fingerprint(plan: &Plan) -> u64 {
    // FNV-1a: stable across processes and builds, unlike `DefaultHasher`.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(plan.spec.name.as_bytes());
    eat(&(plan.spec.parallelism as u64).to_le_bytes());
    eat(&(plan.edges as u64).to_le_bytes());
    for schema in &plan.edge_schemas {
        eat(schema.to_string().as_bytes());
        eat(b";");
    }
    h
}

/// A connected, handshaken peer.
pub struct Connected {
    /// The peer's address.
    pub addr: SocketAddr,
    /// Its shards.
    pub shards: Range<u32>,
    /// The connection.
    pub link: Link,
}

fn unreachable(addr: SocketAddr, source: std::io::Error) -> EngineError {
    EngineError::Unreachable {
        addr: addr.to_string(),
        source,
    }
}

fn peer_error(addr: SocketAddr, message: impl Into<String>) -> EngineError {
    EngineError::Peer {
        addr: addr.to_string(),
        message: message.into(),
    }
}

fn send_hello(link: &mut Link, addr: SocketAddr, hello: &Hello) -> Result<(), EngineError> {
    let mut buf = Vec::new();
    encode_hello(&mut buf, hello);
    link.send(&buf)
        .map_err(|e| peer_error(addr, format!("sending HELLO failed: {e}")))
}

fn read_hello(link: &mut Link, addr: SocketAddr, deadline: Instant) -> Result<Hello, EngineError> {
    let remaining = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let mut len = [0u8; 4];
    link.receive(&mut len, remaining())
        .map_err(|e| peer_error(addr, format!("no HELLO from the peer: {e}")))?;
    let len = u32::from_le_bytes(len) as usize;
    // A HELLO is 27 bytes; anything much larger is not one.
    if len > 64 {
        return Err(peer_error(
            addr,
            format!("expected a HELLO, got a frame of {len} bytes"),
        ));
    }
    let mut body = vec![0u8; len];
    link.receive(&mut body, remaining())
        .map_err(|e| peer_error(addr, format!("no HELLO from the peer: {e}")))?;
    match decode(&body) {
        Ok(Frame::Hello(h)) => Ok(h),
        Ok(other) => Err(peer_error(addr, format!("expected a HELLO, got {other:?}"))),
        Err(e) => Err(peer_error(addr, format!("bad HELLO: {e}"))),
    }
}

fn check_hello(
    got: &Hello,
    ours: &Hello,
    expected: &Range<u32>,
    addr: SocketAddr,
) -> Result<(), EngineError> {
    if got.fingerprint != ours.fingerprint || got.shards != ours.shards {
        return Err(peer_error(
            addr,
            format!(
                "the peer runs another job (fingerprint {:x}, {} shards; here {:x}, {} shards)",
                got.fingerprint, got.shards, ours.fingerprint, ours.shards
            ),
        ));
    }
    if got.local != *expected {
        return Err(peer_error(
            addr,
            format!(
                "the peer runs shards {:?}, expected {expected:?}",
                got.local
            ),
        ));
    }
    Ok(())
}

/// The link over a fresh connection: TLS (handshake and peer check) when
/// the exchange is configured for it.
fn secure(
    stream: TcpStream,
    config: &RemoteExchangeConfig,
    dialer: bool,
    addr: SocketAddr,
    deadline: Instant,
) -> Result<Link, EngineError> {
    match &config.tls {
        Some(tls) => {
            Link::handshake(stream, tls, dialer, deadline).map_err(|e| peer_error(addr, e))
        }
        None => Link::plain(stream).map_err(|e| peer_error(addr, e.to_string())),
    }
}

/// Connects to every peer (dialing later ranges, accepting earlier ones on `listener`) and
/// exchanges HELLOs. `listener` may be `None` when no peer comes before this process.
pub fn connect_peers(
    config: &RemoteExchangeConfig,
    listener: Option<&TcpListener>,
    hello: &Hello,
) -> Result<Vec<Connected>, EngineError> {
    connect_peers_cancellable(config, listener, hello, &AtomicBool::new(false))
}

/// Like [`connect_peers`], giving up with [`EngineError::Cancelled`] once `cancel` is set
/// (looked at between dial attempts and accept polls).
pub fn connect_peers_cancellable(
    config: &RemoteExchangeConfig,
    listener: Option<&TcpListener>,
    hello: &Hello,
    cancel: &AtomicBool,
) -> Result<Vec<Connected>, EngineError> {
    let cancelled = || cancel.load(Ordering::Relaxed);
    let deadline = Instant::now() + config.connect_timeout;
    let mut connected = Vec::with_capacity(config.peers.len());
    let mut to_accept: Vec<(Range<u32>, SocketAddr)> = Vec::new();
    for (range, addr) in &config.peers {
        if range.start < config.local_shards.start {
            to_accept.push((range.clone(), *addr));
            continue;
        }
        let stream = loop {
            if cancelled() {
                return Err(EngineError::Cancelled);
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            match TcpStream::connect_timeout(addr, remaining.max(Duration::from_millis(1))) {
                Ok(s) => break s,
                Err(e) if Instant::now() + DIAL_RETRY < deadline => {
                    tracing::debug!(%addr, error = %e, "peer not listening yet; retrying");
                    std::thread::sleep(DIAL_RETRY);
                }
                Err(e) => return Err(unreachable(*addr, e)),
            }
        };
        stream
            .set_nodelay(true)
            .map_err(|e| peer_error(*addr, e.to_string()))?;
        let mut link = secure(stream, config, true, *addr, deadline)?;
        send_hello(&mut link, *addr, hello)?;
        let theirs = read_hello(&mut link, *addr, deadline)?;
        check_hello(&theirs, hello, range, *addr)?;
        connected.push(Connected {
            addr: *addr,
            shards: range.clone(),
            link,
        });
    }
    if to_accept.is_empty() {
        return Ok(connected);
    }
    let Some(listener) = listener else {
        return Err(EngineError::Plan(
            "remote exchange: peers come before this process's shards but there is no \
             listener to accept them"
                .into(),
        ));
    };
    let local = listener.local_addr().unwrap_or(config.listen);
    listener
        .set_nonblocking(true)
        .map_err(|e| EngineError::io(local.to_string(), e))?;
    let mut last_refusal: Option<String> = None;
    while !to_accept.is_empty() {
        if cancelled() {
            return Err(EngineError::Cancelled);
        }
        let (stream, from) = match listener.accept() {
            Ok(pair) => pair,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<_> = to_accept
                        .iter()
                        .map(|(r, a)| format!("{a} ({r:?})"))
                        .collect();
                    return Err(EngineError::Unreachable {
                        addr: missing.join(", "),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "no connection on {local} within {:?}{}",
                                config.connect_timeout,
                                last_refusal
                                    .as_deref()
                                    .map(|r| format!(" (last refused: {r})"))
                                    .unwrap_or_default()
                            ),
                        ),
                    });
                }
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(e) => return Err(EngineError::io(local.to_string(), e)),
        };
        // Whoever can reach the port can connect: a connection that fails
        // the handshake or says the wrong HELLO is dropped and logged, and
        // the expected peers still have until the deadline. Each gets a
        // bounded time of its own, so one that connects and stays silent
        // cannot hold the others off.
        let own_deadline = deadline.min(Instant::now() + HANDSHAKE_TIMEOUT);
        match accept_one(stream, from, config, hello, &to_accept, own_deadline) {
            Ok((pos, link)) => {
                let (range, addr) = to_accept.swap_remove(pos);
                connected.push(Connected {
                    addr,
                    shards: range,
                    link,
                });
            }
            Err(e) => {
                tracing::warn!(peer = %from, error = %e, "exchange connection refused and dropped");
                last_refusal = Some(format!("{from}: {e}"));
            }
        }
    }
    Ok(connected)
}

/// Handshakes one accepted connection: which expected peer it is (its
/// index in `to_accept`) and its link, or why it is refused.
fn accept_one(
    stream: TcpStream,
    from: SocketAddr,
    config: &RemoteExchangeConfig,
    hello: &Hello,
    to_accept: &[(Range<u32>, SocketAddr)],
    deadline: Instant,
) -> Result<(usize, Link), EngineError> {
    stream
        .set_nonblocking(false)
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| peer_error(from, e.to_string()))?;
    let mut link = secure(stream, config, false, from, deadline)?;
    let theirs = read_hello(&mut link, from, deadline)?;
    let Some(pos) = to_accept.iter().position(|(r, _)| *r == theirs.local) else {
        return Err(peer_error(
            from,
            format!(
                "the peer claims shards {:?}, which no expected peer runs",
                theirs.local
            ),
        ));
    };
    check_hello(&theirs, hello, &to_accept[pos].0, from)?;
    send_hello(&mut link, from, hello)?;
    Ok((pos, link))
}

#[cfg(test)]
// Shard ranges are what these tests are about, not vectors of numbers.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    fn config(local: Range<u32>, peers: &[Range<u32>]) -> RemoteExchangeConfig {
        RemoteExchangeConfig {
            local_shards: local,
            peers: peers
                .iter()
                .map(|r| (r.clone(), "127.0.0.1:1".parse().unwrap()))
                .collect(),
            listen: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: Duration::from_secs(1),
            tls: None,
        }
    }

    #[test]
    fn ranges_must_cover_the_job_exactly() {
        assert!(config(0..2, &[2..4]).validate(4).is_ok());
        assert!(config(2..4, &[0..2]).validate(4).is_ok());
        assert!(config(0..4, &[]).validate(4).is_ok());
        for (local, peers, shards) in [
            (0..2, vec![3..4], 4),
            (0..2, vec![1..4], 4),
            (0..2, vec![2..4], 5),
            (0..0, vec![0..4], 4),
        ] {
            let err = config(local, &peers).validate(shards).unwrap_err();
            assert!(err.to_string().contains("remote exchange"), "{err}");
        }
    }

    #[test]
    fn a_peer_running_another_job_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let a = RemoteExchangeConfig {
            local_shards: 0..1,
            peers: vec![(1..2, addr)],
            listen: "127.0.0.1:0".parse().unwrap(),
            connect_timeout: Duration::from_secs(5),
            tls: None,
        };
        let b = RemoteExchangeConfig {
            local_shards: 1..2,
            peers: vec![(0..1, "127.0.0.1:1".parse().unwrap())],
            listen: addr,
            connect_timeout: Duration::from_secs(5),
            tls: None,
        };
        let hello = |fingerprint, local| Hello {
            fingerprint,
            shards: 2,
            local,
        };
        let acceptor = std::thread::Builder::new()
            .spawn(move || connect_peers(&b, Some(&listener), &hello(2, 1..2)).map(|c| c.len()))
            .unwrap();
        let dialer = connect_peers(&a, None, &hello(1, 0..1));
        let accepted = acceptor.join().unwrap();
        let err = accepted
            .err()
            .or(dialer.err())
            .expect("a mismatch must fail");
        assert!(err.to_string().contains("another job"), "{err}");
    }
}
