//! One peer connection, in plain TCP or in TLS (rustls), split into the read
//! half the reader thread owns and the write half the writer thread owns.
//!
//! With TLS both halves share one `rustls::Connection` behind a mutex, held
//! only to move bytes in or out of it, never across a socket read or write:
//! the reader reads raw bytes from the socket unlocked, then feeds them in;
//! the writer encrypts under the lock into its own buffer, then writes it to
//! the socket unlocked. A blocked socket therefore never blocks the other
//! half, and two peers writing to each other cannot deadlock. Only the
//! writer thread writes to the socket, so TLS records go out in the order
//! they were made; records the reader's side makes (a key update's answer)
//! wait for the writer, which the reader wakes.
//!
//! The handshake is mutual: the dialer checks that the acceptor's
//! certificate names an agent of this cluster, the acceptor checks the
//! dialer's the same way ([`ExchangeTls::peer_check`]); both chain to the
//! cluster's CA.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};

/// Checks a peer's certificate chain (leaf first) beyond what the handshake
/// checked: the role it names.
pub type PeerCheck = Arc<dyn Fn(&[CertificateDer<'_>]) -> Result<(), String> + Send + Sync>;

/// TLS for the exchange: this process's identity as dialer and acceptor.
#[derive(Clone)]
pub struct ExchangeTls {
    pub client: Arc<rustls::ClientConfig>,
    pub server: Arc<rustls::ServerConfig>,
    /// The name a peer's certificate must carry (`agent.<cluster>.sluice`).
    pub server_name: ServerName<'static>,
    pub peer_check: PeerCheck,
}

impl fmt::Debug for ExchangeTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExchangeTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// Raw bytes read from the socket at a time.
const RAW_BYTES: usize = 64 << 10;

/// A connected peer link: its socket, and its TLS state when encrypted.
pub struct Link {
    pub stream: TcpStream,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
    /// The read half, already used during setup: it may hold raw bytes
    /// read past the last setup message, which belong to the stream.
    reader: LinkReader,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("stream", &self.stream)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn lock(conn: &Mutex<rustls::Connection>) -> MutexGuard<'_, rustls::Connection> {
    conn.lock().unwrap_or_else(|p| p.into_inner())
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}"))
}

impl Link {
    /// A plain TCP link.
    pub fn plain(stream: TcpStream) -> io::Result<Self> {
        let reader = LinkReader::new(stream.try_clone()?, None);
        Ok(Self {
            stream,
            tls: None,
            reader,
        })
    }

    /// Runs the TLS handshake on `stream` (as the dialer when `dialer`),
    /// within `deadline`, and checks the peer's certificate.
    pub fn handshake(
        mut stream: TcpStream,
        tls: &ExchangeTls,
        dialer: bool,
        deadline: Instant,
    ) -> Result<Self, String> {
        let mut conn: rustls::Connection = if dialer {
            rustls::ClientConnection::new(tls.client.clone(), tls.server_name.clone())
                .map_err(|e| format!("TLS setup: {e}"))?
                .into()
        } else {
            rustls::ServerConnection::new(tls.server.clone())
                .map_err(|e| format!("TLS setup: {e}"))?
                .into()
        };
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let timeouts = |stream: &TcpStream, t: Option<Duration>| {
            stream
                .set_read_timeout(t)
                .and_then(|()| stream.set_write_timeout(t))
        };
        timeouts(&stream, Some(remaining)).map_err(|e| e.to_string())?;
        while conn.is_handshaking() {
            conn.complete_io(&mut stream)
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
        }
        // The client's last flight (its certificate) may still be queued.
        while conn.wants_write() {
            conn.write_tls(&mut stream)
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
        }
        timeouts(&stream, None).map_err(|e| e.to_string())?;
        let certs = conn
            .peer_certificates()
            .ok_or("the peer presented no certificate")?;
        (tls.peer_check)(certs)?;
        let tls = Some(Arc::new(Mutex::new(conn)));
        let reader = LinkReader::new(stream.try_clone().map_err(|e| e.to_string())?, tls.clone());
        Ok(Self {
            stream,
            tls,
            reader,
        })
    }

    /// Whether the link is encrypted.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Writes all of `buf` (during setup: before the link is split).
    pub fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut writer = LinkWriter {
            stream: self.stream.try_clone()?,
            tls: self.tls.clone(),
            out: Vec::new(),
        };
        writer.write_all(buf)
    }

    /// Reads exactly `buf.len()` bytes within `timeout` (during setup).
    pub fn receive(&mut self, buf: &mut [u8], timeout: Duration) -> io::Result<()> {
        // The reader's socket is a clone of this one: the timeout is shared.
        self.stream.set_read_timeout(Some(timeout))?;
        let result = self.reader.read_exact(buf);
        self.stream.set_read_timeout(None)?;
        result
    }

    /// The halves for the reader and writer threads, and a handle that can
    /// shut the socket down from elsewhere.
    pub fn split(self) -> io::Result<(LinkReader, LinkWriter, TcpStream)> {
        let reader = self.reader;
        let keep = self.stream.try_clone()?;
        let writer = LinkWriter {
            stream: self.stream,
            tls: self.tls,
            out: Vec::new(),
        };
        Ok((reader, writer, keep))
    }
}

/// The read half.
pub struct LinkReader {
    stream: TcpStream,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
    raw: Vec<u8>,
    /// Raw bytes read from the socket and not yet fed to TLS: `raw[pending]`.
    pending: std::ops::Range<usize>,
    /// Woken when TLS has something to send (the writer sends it).
    writer: Option<std::thread::Thread>,
}

impl LinkReader {
    fn new(stream: TcpStream, tls: Option<Arc<Mutex<rustls::Connection>>>) -> Self {
        Self {
            stream,
            raw: if tls.is_some() {
                vec![0; RAW_BYTES]
            } else {
                Vec::new()
            },
            tls,
            pending: 0..0,
            writer: None,
        }
    }

    /// The thread that writes for this link, woken when TLS needs to send.
    pub fn set_writer(&mut self, writer: std::thread::Thread) {
        self.writer = Some(writer);
    }
}

impl Read for LinkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return self.stream.read(buf);
        };
        loop {
            {
                let mut conn = lock(tls);
                match conn.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if !self.pending.is_empty() {
                    let mut slice = &self.raw[self.pending.clone()];
                    let before = slice.len();
                    conn.read_tls(&mut slice)?;
                    self.pending.start += before - slice.len();
                    conn.process_new_packets().map_err(tls_error)?;
                    if conn.wants_write() {
                        if let Some(w) = &self.writer {
                            w.unpark();
                        }
                    }
                    continue;
                }
            }
            // Nothing decrypted and nothing pending: wait for the socket,
            // without the lock.
            let n = loop {
                match self.stream.read(&mut self.raw) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other?,
                }
            };
            if n == 0 {
                // End of stream: rustls says whether it was a clean close.
                let mut conn = lock(tls);
                conn.read_tls(&mut io::empty())?;
                conn.process_new_packets().map_err(tls_error)?;
                return match conn.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection without ending TLS (close_notify)",
                        ))
                    }
                    Err(e) => Err(e),
                };
            }
            self.pending = 0..n;
        }
    }
}

/// The write half.
pub struct LinkWriter {
    stream: TcpStream,
    tls: Option<Arc<Mutex<rustls::Connection>>>,
    /// Encrypted bytes on their way to the socket.
    out: Vec<u8>,
}

impl LinkWriter {
    /// Encrypts what TLS has queued (under the lock) and sends it (without).
    fn send_queued(&mut self, plaintext: &[u8]) -> io::Result<usize> {
        let Some(tls) = &self.tls else {
            return Ok(0);
        };
        let taken = {
            let mut conn = lock(tls);
            let taken = if plaintext.is_empty() {
                0
            } else {
                conn.writer().write(plaintext)?
            };
            self.out.clear();
            while conn.wants_write() {
                conn.write_tls(&mut self.out)?;
            }
            taken
        };
        self.stream.write_all(&self.out)?;
        Ok(taken)
    }

    /// Ends the stream cleanly: TLS's close_notify, then the TCP write side.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(tls) = &self.tls {
            lock(tls).send_close_notify();
            self.send_queued(&[])?;
        }
        self.stream.shutdown(Shutdown::Write)
    }

    /// Shuts the socket down both ways (on failure or stop).
    pub fn abort(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(timeout)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }
}

impl Write for LinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.stream.write(buf);
        }
        let mut done = 0;
        while done < buf.len() {
            let n = self.send_queued(&buf[done..])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS accepted no more bytes",
                ));
            }
            done += n;
        }
        Ok(done)
    }

    /// Sends whatever TLS queued meanwhile (e.g. an answer to a key update).
    fn flush(&mut self) -> io::Result<()> {
        match &self.tls {
            Some(_) => self.send_queued(&[]).map(|_| ()),
            None => self.stream.flush(),
        }
    }
}
