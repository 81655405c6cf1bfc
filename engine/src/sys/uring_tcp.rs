//! A TCP server on the shard's own io_uring: accepts connections and receives bytes, never
//! blocking the shard (completions are reaped without waiting).
//!
//! At most [`TCP_CONNECTIONS_MAX`] connections are open at once; each has a slot (an id and a
//! receive buffer) that is reused once the connection is closed, so the server's memory is
//! bounded however many clients come and go. A client connecting while every slot is taken is
//! closed at once, with a warning naming the limit (one per refused connection, never per
//! record).
//!
//! Ownership rule: each connection's receive buffer belongs to the ring while a receive is in
//! flight; it is touched again only after that completion is reaped. On drop the server shuts
//! the sockets down and cancels the accept so that every operation completes, waits for
//! them, and leaks the buffers if waiting fails rather than free memory the kernel may write.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, types, IoUring};

use crate::error::EngineError;

/// Bytes per receive.
pub const RECV_BUFFER_BYTES: usize = 64 * 1024;
/// Connections served at once; a client beyond them is closed on accept.
pub const TCP_CONNECTIONS_MAX: usize = 64;
const RING_ENTRIES: u32 = 128;
const ACCEPT: u64 = u64::MAX;
const CANCEL: u64 = u64::MAX - 1;
const _: () = assert!(RING_ENTRIES as usize > TCP_CONNECTIONS_MAX + 2);

struct Conn {
    /// `None` once the connection is closed.
    socket: Option<OwnedFd>,
    buf: Box<[u8]>,
    in_flight: bool,
    open: bool,
}

/// What happened on a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum TcpEvent<'a> {
    /// Connection `id` was accepted (`id < TCP_CONNECTIONS_MAX`; the id of a closed
    /// connection is given to a later one).
    Accepted(usize),
    /// Bytes arrived on connection `id`.
    Data(usize, &'a [u8]),
    /// Connection `id` was closed by the peer (or failed).
    Closed(usize),
}

/// Accepts and reads connections through io_uring.
pub struct UringTcpServer {
    ring: IoUring,
    listener: TcpListener,
    /// At most [`TCP_CONNECTIONS_MAX`] slots; a closed one is reused.
    conns: Vec<Conn>,
    accept_in_flight: bool,
    accepting: bool,
    refused: u64,
}

impl std::fmt::Debug for UringTcpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringTcpServer")
            .field("conns", &self.conns.len())
            .finish()
    }
}

impl UringTcpServer {
    /// Listens on `addr`.
    pub fn bind(addr: SocketAddr) -> Result<Self, EngineError> {
        let listener = TcpListener::bind(addr).map_err(|e| EngineError::io(addr.to_string(), e))?;
        let ring = IoUring::new(RING_ENTRIES).map_err(EngineError::Uring)?;
        Ok(Self {
            ring,
            listener,
            conns: Vec::new(),
            accept_in_flight: false,
            accepting: true,
            refused: 0,
        })
    }

    /// Returns the bound address.
    pub fn local_addr(&self) -> Result<SocketAddr, EngineError> {
        self.listener
            .local_addr()
            .map_err(|e| EngineError::io("listener", e))
    }

    /// Stops accepting new connections (those already accepted keep being read).
    pub fn stop_accepting(&mut self) {
        self.accepting = false;
    }

    /// Returns how many connections are open.
    pub fn open_connections(&self) -> usize {
        self.conns.iter().filter(|c| c.open).count()
    }

    /// Returns how many clients were closed on accept because every slot was taken.
    pub fn refused_connections(&self) -> u64 {
        self.refused
    }

    /// Queues `entry` on the ring.
    ///
    /// # Safety
    ///
    /// Every descriptor and buffer `entry` refers to must stay valid, and the buffers
    /// untouched, until the completion carrying the entry's user data is reaped.
    unsafe fn push(&mut self, entry: &io_uring::squeue::Entry) -> Result<(), EngineError> {
        // SAFETY: the caller guarantees what the submission queue requires (see above).
        unsafe { self.ring.submission().push(entry) }
            .map_err(|_| EngineError::Uring(io::Error::other("submission queue full")))
    }

    fn arm(&mut self) -> Result<(), EngineError> {
        // Accepting goes on with every slot taken, so that clients beyond the limit are told
        // (closed) rather than left waiting in the backlog.
        if self.accepting && !self.accept_in_flight {
            let entry = opcode::Accept::new(
                types::Fd(self.listener.as_raw_fd()),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
            .build()
            .user_data(ACCEPT);
            // SAFETY: the accept refers only to the listener, which `self` owns and closes
            // after `Drop` has reaped the accept's completion.
            unsafe { self.push(&entry)? };
            self.accept_in_flight = true;
        }
        for id in 0..self.conns.len() {
            let c = &mut self.conns[id];
            let Some(socket) = c.socket.as_ref().filter(|_| c.open && !c.in_flight) else {
                continue;
            };
            {
                let entry = opcode::Recv::new(
                    types::Fd(socket.as_raw_fd()),
                    c.buf.as_mut_ptr(),
                    c.buf.len() as u32,
                )
                .build()
                .user_data(id as u64);
                // SAFETY: the receive refers to this connection's socket and buffer, owned by
                // `self.conns[id]`; `in_flight` keeps both alive and the buffer untouched until
                // the completion is reaped (in `poll`, or in `Drop`).
                unsafe { self.push(&entry)? };
                self.conns[id].in_flight = true;
            }
        }
        loop {
            match self.ring.submit() {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(EngineError::Uring(e)),
            }
        }
    }

    /// Reaps whatever completed, without waiting, and reports each event to `on_event`; then
    /// re-arms the accept and the receives. Returns how many events there were.
    pub fn poll(
        &mut self,
        on_event: &mut dyn FnMut(TcpEvent<'_>) -> Result<(), EngineError>,
    ) -> Result<usize, EngineError> {
        self.arm()?;
        let mut events = 0;
        while let Some(cqe) = self.ring.completion().next() {
            let (id, res) = (cqe.user_data(), cqe.result());
            events += 1;
            if id == CANCEL {
                continue;
            }
            if id == ACCEPT {
                self.accept_in_flight = false;
                if res >= 0 {
                    // SAFETY: a successful accept returns a new descriptor that nothing else
                    // owns; wrapping it makes `self` close it exactly once.
                    let socket = unsafe { OwnedFd::from_raw_fd(res) };
                    let Some(id) = free_slot(&mut self.conns) else {
                        self.refused += 1;
                        tracing::warn!(
                            addr = ?self.listener.local_addr().ok(),
                            limit = TCP_CONNECTIONS_MAX,
                            refused = self.refused,
                            "tcp source: closing a new connection, {TCP_CONNECTIONS_MAX} connections \
                             (tcp_connections_max) are open already"
                        );
                        drop(socket);
                        continue;
                    };
                    let c = &mut self.conns[id];
                    if c.buf.len() != RECV_BUFFER_BYTES {
                        c.buf = vec![0u8; RECV_BUFFER_BYTES].into_boxed_slice();
                    }
                    c.socket = Some(socket);
                    c.open = true;
                    on_event(TcpEvent::Accepted(id))?;
                }
                continue;
            }
            let id = id as usize;
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            c.in_flight = false;
            if res <= 0 {
                // Nothing is in flight on this connection any more: close it now; the slot
                // and its buffer serve the next connection.
                c.open = false;
                c.socket = None;
                on_event(TcpEvent::Closed(id))?;
            } else {
                on_event(TcpEvent::Data(id, &c.buf[..res as usize]))?;
            }
        }
        Ok(events)
    }

    fn outstanding(&self) -> usize {
        usize::from(self.accept_in_flight) + self.conns.iter().filter(|c| c.in_flight).count()
    }
}

impl Drop for UringTcpServer {
    fn drop(&mut self) {
        // Make every operation in flight complete: receives end when their socket is shut
        // down, the accept when it is cancelled.
        for c in &self.conns {
            if let Some(socket) = c.socket.as_ref().filter(|_| c.in_flight) {
                let _ = shutdown(socket);
            }
        }
        if self.accept_in_flight {
            let entry = opcode::AsyncCancel::new(ACCEPT).build().user_data(CANCEL);
            // SAFETY: a cancel refers to no descriptor or buffer, only to a user data value.
            let _ = unsafe { self.push(&entry) };
        }
        while self.outstanding() > 0 {
            if self.ring.submit_and_wait(1).is_err() {
                break;
            }
            while let Some(cqe) = self.ring.completion().next() {
                match cqe.user_data() {
                    ACCEPT => {
                        self.accept_in_flight = false;
                        if cqe.result() >= 0 {
                            // SAFETY: as in `poll`, the new descriptor is ours to close.
                            drop(unsafe { OwnedFd::from_raw_fd(cqe.result()) });
                        }
                    }
                    CANCEL => {}
                    id => {
                        if let Some(c) = self.conns.get_mut(id as usize) {
                            c.in_flight = false;
                        }
                    }
                }
            }
        }
        for c in &mut self.conns {
            if c.in_flight {
                // The kernel may still own this buffer: leak it instead of freeing it.
                std::mem::forget(std::mem::take(&mut c.buf));
            }
        }
    }
}

/// Returns a slot for a new connection: a closed one with nothing in flight, else a new one
/// while there are fewer than [`TCP_CONNECTIONS_MAX`].
fn free_slot(conns: &mut Vec<Conn>) -> Option<usize> {
    if let Some(id) = conns.iter().position(|c| !c.open && !c.in_flight) {
        return Some(id);
    }
    (conns.len() < TCP_CONNECTIONS_MAX).then(|| {
        conns.push(Conn {
            socket: None,
            buf: Box::default(),
            in_flight: false,
            open: false,
        });
        conns.len() - 1
    })
}

/// Shuts a socket down in both directions.
fn shutdown(socket: &OwnedFd) -> io::Result<()> {
    // SAFETY: `socket` is an open descriptor owned by the caller; shutdown only changes the
    // connection state and touches no memory.
    let rc = unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Polls until `done` holds for the events seen so far, or fails after a deadline.
    fn poll_until(
        server: &mut UringTcpServer,
        events: &mut Vec<String>,
        done: impl Fn(&[String]) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(events) {
            assert!(Instant::now() < deadline, "timed out; events: {events:?}");
            server
                .poll(&mut |e| {
                    events.push(format!("{e:?}"));
                    Ok(())
                })
                .unwrap();
        }
    }

    #[test]
    fn closed_slots_are_reused_and_clients_past_the_limit_are_closed() {
        use std::io::Read;
        let mut server = UringTcpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let mut events = Vec::new();
        // Many clients one after another: each closes before the next comes, so they all
        // share the first slot.
        for round in 0..3 * TCP_CONNECTIONS_MAX {
            let client = std::net::TcpStream::connect(addr).unwrap();
            drop(client);
            poll_until(&mut server, &mut events, |e| {
                e.iter().filter(|x| x.starts_with("Closed")).count() > round
            });
        }
        assert!(server.conns.len() <= 1, "slots: {}", server.conns.len());
        assert!(events
            .iter()
            .all(|e| e == "Accepted(0)" || e == "Closed(0)"));
        // Fill every slot, then one more: that one is closed by the server.
        events.clear();
        let clients: Vec<_> = (0..TCP_CONNECTIONS_MAX)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        poll_until(&mut server, &mut events, |e| e.len() == TCP_CONNECTIONS_MAX);
        assert_eq!(server.open_connections(), TCP_CONNECTIONS_MAX);
        let mut extra = std::net::TcpStream::connect(addr).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.refused_connections() == 0 {
            assert!(
                Instant::now() < deadline,
                "the extra client was not refused"
            );
            server.poll(&mut |_| Ok(())).unwrap();
        }
        extra
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        assert_eq!(extra.read(&mut byte).unwrap(), 0, "the server closed it");
        assert_eq!(server.conns.len(), TCP_CONNECTIONS_MAX);
        // A slot freed by a leaving client serves the next one.
        drop(clients);
        poll_until(&mut server, &mut events, |e| {
            e.iter().filter(|x| x.starts_with("Closed")).count() == TCP_CONNECTIONS_MAX
        });
        let _again = std::net::TcpStream::connect(addr).unwrap();
        events.clear();
        poll_until(&mut server, &mut events, |e| !e.is_empty());
        assert!(events[0].starts_with("Accepted"), "{events:?}");
        assert_eq!(server.conns.len(), TCP_CONNECTIONS_MAX);
    }

    #[test]
    fn dropping_with_operations_in_flight_returns() {
        let mut server = UringTcpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client = std::net::TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut accepted = false;
        while !accepted {
            assert!(Instant::now() < deadline, "no accept");
            server
                .poll(&mut |e| {
                    accepted |= matches!(e, TcpEvent::Accepted(_));
                    Ok(())
                })
                .unwrap();
        }
        // Arm the receive (and a new accept), then drop while both are in flight: the
        // client is still connected, so only shutdown and cancel can end them.
        server.poll(&mut |_| Ok(())).unwrap();
        assert_eq!(server.outstanding(), 2);
        drop(server);
        drop(client);
    }
}
