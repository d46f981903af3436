//! Requests that carry a blob's bytes, sent over a connection of their own: HTTP/1.1 written
//! here, the body read from its file 1 MiB at a time and written to the socket (or into full
//! 16 KiB TLS records) in writes as large; over plain HTTP, a streamed layer's file ranges go by
//! `sendfile`.
//!
//! Hand-written because reqwest's blocking client cannot send a large body cheaply: a body
//! streamed from a reader goes through its runtime 8 KiB at a time (a read, a channel send, a
//! task wakeup and a socket write each), which made a 2 GiB push cost 4 to 5 times the CPU of
//! `curl -T` of the same file, and a body held in memory would hold the whole blob. Everything
//! around the body stays with [`Client`](super::Client): authentication, which origins get
//! credentials, retries, error kinds. Only the bytes on the wire are written here.
//!
//! A stored blob (`push`) goes by writes, not `sendfile`: `sendfile` saves the copy into this
//! process (0.2 s against 0.55 s of CPU for 2 GiB), but a registry on the same machine then took
//! the bytes more slowly. Pushes of the same blob alternated into fresh in-memory registries took
//! 8.5 to 9.5 s by `sendfile` against 7.5 s by writes and 7.6 to 8.6 s for `curl -T`, which
//! writes too. A model file's range in a streamed layer (`build --push`) goes by `sendfile` on
//! plain HTTP: there the build's two SHA-256s of the same bytes (the layer's and the file's)
//! need both cores while the upload runs, the build paces the upload, and writes cost the build
//! a tenth more CPU (4.0 to 4.2 s against 3.4 to 3.6 s for 2 GiB).
//!
//! Every request gets a connection of its own (`Connection: close`): a blob upload takes seconds
//! to hours, next to which a connection setup costs nothing. The connect timeout bounds the
//! connection and TLS handshake; while the body is sent, a registry that takes no bytes for the
//! read timeout ends the request (`SO_SNDTIMEO`: a send blocks as long whether the registry
//! stopped reading or vanished and left the bytes unacknowledged), and so does an answer that
//! does not start within the read timeout after the whole body.

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::Url;

use crate::limits;

/// What a request carries.
pub enum Body {
    /// `len` bytes of `file` from `offset`, with `Content-Length`.
    File { file: File, offset: u64, len: u64 },
    /// Pieces as they come, until the sender hangs up, with `Transfer-Encoding: chunked`.
    Pieces(Receiver<Piece>),
}

/// A piece of a streamed body: bytes, or a range of a file (a chunk of its own, by `sendfile`
/// over plain HTTP).
pub enum Piece {
    Bytes(Vec<u8>),
    File { file: File, offset: u64, len: u64 },
}

/// How a request failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection (or no TLS session) within the connect timeout, or none at all.
    Connect(io::Error),
    /// The registry took no bytes of the body for the read timeout.
    Stalled,
    /// The registry took the whole body, then sent no answer for the read timeout.
    Unanswered,
    /// The connection broke, or the answer was not HTTP.
    Io(io::Error),
}

/// A failed connection, as the cause of a registry error: marks it as a connect failure.
#[derive(Debug)]
pub struct ConnectFailed(pub io::Error);

impl std::fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect: {}", self.0)
    }
}

impl std::error::Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Connection settings, and the TLS configurations (made once, when first needed).
pub struct Connector {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// PEM files of `--cert-dir`, trusted beside the system's roots.
    pub extra_roots: Vec<Vec<u8>>,
    verified: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
    unverified: OnceLock<Arc<rustls::ClientConfig>>,
}

/// One request: method, URL and headers (besides `Host`, `Content-Length` and the like, which
/// are written here).
pub struct Request<'a> {
    pub method: &'a str,
    pub url: &'a Url,
    pub headers: &'a [(String, String)],
}

const PIECE: usize = 1 << 20;
/// Most header bytes an answer may have.
const MAX_HEAD: usize = 64 << 10;

impl Connector {
    pub fn new(
        connect_timeout: Duration,
        read_timeout: Duration,
        extra_roots: Vec<Vec<u8>>,
    ) -> Self {
        Connector {
            connect_timeout,
            read_timeout,
            extra_roots,
            verified: OnceLock::new(),
            unverified: OnceLock::new(),
        }
    }

    fn tls_config(&self, verify: bool) -> Result<Arc<rustls::ClientConfig>, Failure> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = || {
            rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())
        };
        let config = if verify {
            self.verified
                .get_or_init(|| {
                    let mut roots = rustls::RootCertStore::empty();
                    // As reqwest does: the system's roots that parse, and the extra ones.
                    for c in rustls_native_certs::load_native_certs().certs {
                        let _ = roots.add(c);
                    }
                    for pem in &self.extra_roots {
                        use rustls::pki_types::pem::PemObject;
                        for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                            let c = c.map_err(|e| format!("a --cert-dir certificate: {e}"))?;
                            roots.add(c).map_err(|e| e.to_string())?;
                        }
                    }
                    let mut c = builder()?
                        .with_root_certificates(roots)
                        .with_no_client_auth();
                    c.alpn_protocols = vec![b"http/1.1".to_vec()];
                    Ok(Arc::new(c))
                })
                .clone()
                .map_err(|e| Failure::Connect(io::Error::other(e)))?
        } else {
            self.unverified
                .get_or_init(|| {
                    let mut c = builder()
                        .expect("the ring provider supports the default protocol versions")
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCertificate(
                            provider.clone(),
                        )))
                        .with_no_client_auth();
                    c.alpn_protocols = vec![b"http/1.1".to_vec()];
                    Arc::new(c)
                })
                .clone()
        };
        Ok(config)
    }

    fn connect(&self, url: &Url) -> Result<TcpStream, Failure> {
        let host = url
            .host_str()
            .ok_or_else(|| Failure::Connect(io::Error::other("the URL names no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| Failure::Connect(io::Error::other("the URL names no port")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = (host, port).to_socket_addrs().map_err(Failure::Connect)?;
        let mut last = io::Error::other(format!("{host} has no address"));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.connect_timeout) {
                Ok(s) => {
                    configure(&s, self.read_timeout).map_err(Failure::Connect)?;
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(Failure::Connect(last))
    }

    /// Send one request and read the answer's head and at most
    /// [`limits::MAX_ERROR_BODY`] bytes of its body.
    pub fn send(
        &self,
        verify: bool,
        req: &Request,
        body: Body,
    ) -> Result<http::Response<Vec<u8>>, Failure> {
        let sock = self.connect(req.url)?;
        let head = request_head(req, &body);
        match req.url.scheme() {
            "https" => {
                let config = self.tls_config(verify)?;
                let host = req
                    .url
                    .host_str()
                    .unwrap_or_default()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let name = rustls::pki_types::ServerName::try_from(host)
                    .map_err(|e| Failure::Connect(io::Error::other(e)))?;
                let conn = rustls::ClientConnection::new(config, name)
                    .map_err(|e| Failure::Connect(io::Error::other(e)))?;
                let mut tls = rustls::StreamOwned::new(conn, Tracked::new(sock, None));
                // The handshake, within the connect timeout.
                tls.sock
                    .sock
                    .set_read_timeout(Some(self.connect_timeout))
                    .map_err(Failure::Connect)?;
                while tls.conn.is_handshaking() {
                    tls.conn
                        .complete_io(&mut tls.sock)
                        .map_err(Failure::Connect)?;
                }
                let sent = send_tls_body(&mut tls, &head, body);
                let stalled = tls.sock.idle() >= self.read_timeout;
                finish(sent, stalled, self.read_timeout, &mut tls, |t, d| {
                    t.sock.sock.set_read_timeout(d)
                })
            }
            _ => {
                let mut sock = Tracked::new(sock, Some(self.read_timeout));
                let sent = send_plain_body(&mut sock, &head, body);
                let stalled = sock.idle() >= self.read_timeout;
                finish(sent, stalled, self.read_timeout, &mut sock, |s, d| {
                    s.sock.set_read_timeout(d)
                })
            }
        }
    }
}

/// After the body: the answer, which must start within `idle`. A body cut short by the
/// registry may still have been answered (a refusal sent before the whole body was read): that
/// answer wins over the broken send. A send that failed after taking no bytes for `idle`
/// (`stalled`: the send timeout, or the kernel dropping the connection) is a stall.
fn finish<S: Read>(
    sent: io::Result<()>,
    stalled: bool,
    idle: Duration,
    stream: &mut S,
    set_timeout: impl Fn(&mut S, Option<Duration>) -> io::Result<()>,
) -> Result<http::Response<Vec<u8>>, Failure> {
    match sent {
        Ok(()) => {
            set_timeout(stream, Some(idle.max(Duration::from_millis(1)))).map_err(Failure::Io)?;
            read_response(stream).map_err(|e| {
                if is_stall(&e) {
                    Failure::Unanswered
                } else {
                    Failure::Io(e)
                }
            })
        }
        Err(e) => {
            let _ = set_timeout(stream, Some(Duration::from_secs(1)));
            match read_response(stream) {
                Ok(r) => Ok(r),
                Err(_) if stalled || is_stall(&e) => Err(Failure::Stalled),
                Err(_) => Err(Failure::Io(e)),
            }
        }
    }
}

/// A connection that remembers when it last took bytes.
///
/// Over plain HTTP (`watch` is the idle limit) it also listens while it sends: an answer that
/// arrives before the whole body (a registry refusing the upload, then reading no more of it)
/// ends the body at once, and the answer is read, instead of a send blocking until the idle
/// limit. Over TLS the socket's readability cannot tell an answer from other records (a session
/// ticket), so sends block as the socket's send timeout allows.
struct Tracked {
    sock: TcpStream,
    progress: std::time::Instant,
    watch: Option<Duration>,
}

impl Tracked {
    fn new(sock: TcpStream, watch: Option<Duration>) -> Tracked {
        Tracked {
            sock,
            progress: std::time::Instant::now(),
            watch,
        }
    }
    /// How long since bytes were last taken.
    fn idle(&self) -> Duration {
        self.progress.elapsed()
    }

    /// Wait until the socket takes bytes, within the idle limit: an error if the registry
    /// answered (or closed the connection) first, or took nothing for the limit.
    fn writable(&self, idle: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut fd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN | libc::POLLOUT,
            revents: 0,
        };
        let limit = idle.as_millis().clamp(1, i32::MAX as u128) as i32;
        loop {
            // SAFETY: one pollfd for a socket this value owns, for the call's duration.
            let n = unsafe { libc::poll(&mut fd, 1, limit) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::TimedOut));
            }
            if fd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
                return Err(answered_early());
            }
            return Ok(());
        }
    }
}

/// The registry answered, or closed the connection, before taking the whole body.
fn answered_early() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the registry stopped the upload before taking the whole body",
    )
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for Tracked {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.watch {
            None => self.sock.write(buf)?,
            Some(idle) => loop {
                use std::os::fd::AsRawFd;
                self.writable(idle)?;
                // SAFETY: a send from a live buffer of `buf.len()` bytes on a socket this value
                // owns; MSG_DONTWAIT takes what fits now instead of blocking for the rest.
                let n = unsafe {
                    libc::send(
                        self.sock.as_raw_fd(),
                        buf.as_ptr().cast(),
                        buf.len(),
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    )
                };
                if n >= 0 {
                    break n as usize;
                }
                let e = io::Error::last_os_error();
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) {
                    return Err(e);
                }
            },
        };
        if n > 0 {
            self.progress = std::time::Instant::now();
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.sock.flush()
    }
}

fn is_stall(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Socket options: a send that makes no progress for `idle` fails. (No `TCP_USER_TIMEOUT`: the
/// kernel would drop a connection whose window stayed closed that long before the send timeout
/// could say so, and the send timeout covers a vanished peer too.)
fn configure(s: &TcpStream, idle: Duration) -> io::Result<()> {
    s.set_nodelay(true)?;
    s.set_write_timeout(Some(idle.max(Duration::from_millis(1))))?;
    Ok(())
}

fn request_head(req: &Request, body: &Body) -> Vec<u8> {
    let url = req.url;
    let mut target = url.path().to_string();
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(q);
    }
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let mut h = format!(
        "{} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: modelcar/{}\r\nConnection: close\r\n",
        req.method,
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in req.headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Body::File { len, .. } => h.push_str(&format!("Content-Length: {len}\r\n")),
        Body::Pieces(_) => h.push_str("Transfer-Encoding: chunked\r\n"),
    }
    h.push_str("\r\n");
    h.into_bytes()
}

fn shrank() -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        "the blob in the store is shorter than its descriptor says",
    )
}

/// `len` bytes of `file` from `offset` into the socket, by the kernel (`sendfile`).
fn sendfile(sock: &mut Tracked, file: &File, offset: u64, len: u64) -> io::Result<()> {
    // Watching for an early answer, the socket does not block: each call takes what fits.
    sock.sock.set_nonblocking(sock.watch.is_some())?;
    let sent = sendfile_range(sock, file, offset, len);
    sock.sock.set_nonblocking(false)?;
    sent
}

fn sendfile_range(sock: &mut Tracked, file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    let mut left = len;
    while left > 0 {
        if let Some(idle) = sock.watch {
            sock.writable(idle)?;
        }
        let count = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the duration of the call; `off` is a live
        // offset the kernel advances.
        let n = unsafe { libc::sendfile(sock.sock.as_raw_fd(), file.as_raw_fd(), &mut off, count) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if matches!(
                e.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
            ) {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(shrank());
        }
        sock.progress = std::time::Instant::now();
        left -= n as u64;
    }
    Ok(())
}

/// Head, then body: a file range with `Content-Length`, pieces as chunks.
fn send_plain_body(sock: &mut Tracked, head: &[u8], body: Body) -> io::Result<()> {
    sock.write_all(head)?;
    match body {
        Body::File { file, offset, len } => file_into(sock, &file, offset, len),
        Body::Pieces(rx) => {
            for piece in rx {
                match piece {
                    Piece::Bytes(b) if b.is_empty() => {}
                    Piece::Bytes(b) => {
                        sock.write_all(format!("{:x}\r\n", b.len()).as_bytes())?;
                        sock.write_all(&b)?;
                        sock.write_all(b"\r\n")?;
                    }
                    Piece::File { len: 0, .. } => {}
                    Piece::File { file, offset, len } => {
                        sock.write_all(format!("{len:x}\r\n").as_bytes())?;
                        sendfile(sock, &file, offset, len)?;
                        sock.write_all(b"\r\n")?;
                    }
                }
            }
            sock.write_all(b"0\r\n\r\n")
        }
    }
}

/// `len` bytes of `file` from `offset` into `out`, in 1 MiB reads and writes.
fn file_into<W: Write>(out: &mut W, file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = crate::readbuf::ReadBuf::new(PIECE.min(len as usize));
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], offset + done)?;
        if n == 0 {
            return Err(shrank());
        }
        out.write_all(&buf[..n])?;
        done += n as u64;
    }
    Ok(())
}

/// Head, then body, through TLS: the file read in 1 MiB pieces, written as full records.
fn send_tls_body<S: Read + Write>(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, S>,
    head: &[u8],
    body: Body,
) -> io::Result<()> {
    tls.write_all(head)?;
    match body {
        Body::File { file, offset, len } => file_into(tls, &file, offset, len)?,
        Body::Pieces(rx) => {
            for piece in rx {
                match piece {
                    Piece::Bytes(b) if b.is_empty() => {}
                    Piece::Bytes(b) => {
                        tls.write_all(format!("{:x}\r\n", b.len()).as_bytes())?;
                        tls.write_all(&b)?;
                        tls.write_all(b"\r\n")?;
                    }
                    Piece::File { len: 0, .. } => {}
                    Piece::File { file, offset, len } => {
                        tls.write_all(format!("{len:x}\r\n").as_bytes())?;
                        file_into(tls, &file, offset, len)?;
                        tls.write_all(b"\r\n")?;
                    }
                }
            }
            tls.write_all(b"0\r\n\r\n")?;
        }
    }
    tls.flush()
}

/// Read an answer: its head (skipping `100 Continue`), then up to
/// [`limits::MAX_ERROR_BODY`] bytes of its body, which only error messages use.
fn read_response<S: Read>(stream: &mut S) -> io::Result<http::Response<Vec<u8>>> {
    let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 96];
        let mut resp = httparse::Response::new(&mut headers);
        match resp
            .parse(&buf)
            .map_err(|e| bad(format!("the registry's answer is not HTTP: {e}")))?
        {
            httparse::Status::Complete(n) => {
                let code = resp.code.unwrap_or(0);
                if (100..200).contains(&code) {
                    buf.drain(..n);
                    continue;
                }
                let mut b = http::Response::builder().status(code);
                let mut length = None;
                let mut chunked = false;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok());
                    }
                    if h.name.eq_ignore_ascii_case("transfer-encoding")
                        && h.value.to_ascii_lowercase().ends_with(b"chunked")
                    {
                        chunked = true;
                    }
                    b = b.header(h.name, h.value);
                }
                let rest = buf.split_off(n);
                let no_body = code == 204 || code == 304;
                let body = if no_body {
                    Vec::new()
                } else {
                    read_body(stream, rest, length, chunked)
                };
                return b
                    .body(body)
                    .map_err(|e| bad(format!("the registry's answer is not HTTP: {e}")));
            }
            httparse::Status::Partial => {
                if buf.len() > MAX_HEAD {
                    return Err(bad(format!(
                        "the registry's answer has more than {MAX_HEAD} bytes of headers"
                    )));
                }
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the registry closed the connection without an answer",
                    ));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}

/// The head of a body, [`limits::MAX_ERROR_BODY`] bytes at most; a broken body ends it early
/// (it only ever feeds an error message).
fn read_body<S: Read>(
    stream: &mut S,
    mut got: Vec<u8>,
    length: Option<u64>,
    chunked: bool,
) -> Vec<u8> {
    let max = limits::MAX_ERROR_BODY as usize;
    let want = length.map_or(max, |l| (l as usize).min(max));
    let mut chunk = [0u8; 4096];
    let limit = if chunked { max + 4096 } else { want };
    while got.len() < limit && !(length.is_some() && got.len() >= want) {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
        if chunked && got.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    if chunked {
        return dechunk(&got, max);
    }
    got.truncate(want);
    got
}

/// The data of a chunked body (as far as it is whole), at most `max` bytes.
fn dechunk(raw: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = raw;
    while let Some(end) = rest.windows(2).position(|w| w == b"\r\n") {
        let size_text = std::str::from_utf8(&rest[..end]).unwrap_or("");
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        if size == 0 {
            break;
        }
        let start = end + 2;
        let stop = (start + size).min(rest.len());
        out.extend_from_slice(&rest[start..stop]);
        if out.len() >= max || stop < start + size {
            break;
        }
        rest = &rest[(stop + 2).min(rest.len())..];
    }
    out.truncate(max);
    out
}

/// The verifier of `--tls-verify=false`: any certificate is taken (signatures are still checked
/// for the handshake itself).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_with_their_head_and_a_bounded_body() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\nLocation: /x\r\n\r\nhello and more";
        let r = read_response(&mut &raw[..]).unwrap();
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["location"], "/x");
        assert_eq!(r.body(), b"hello");
        let raw = b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(read_response(&mut &raw[..]).unwrap().body(), b"abcde");
        let cut = b"HTTP/1.1 201 Cre";
        assert!(read_response(&mut &cut[..]).is_err());
        assert!(read_response(&mut &b"SSH-2.0-x\r\n\r\n"[..]).is_err());
    }

    #[test]
    fn the_head_names_host_length_and_target() {
        let url =
            Url::parse("http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=s&digest=d").unwrap();
        let headers = [(
            "Content-Type".to_string(),
            "application/octet-stream".to_string(),
        )];
        let req = Request {
            method: "PUT",
            url: &url,
            headers: &headers,
        };
        let f = tempfile::tempfile().unwrap();
        let head = request_head(
            &req,
            &Body::File {
                file: f,
                offset: 0,
                len: 7,
            },
        );
        let text = String::from_utf8(head).unwrap();
        assert!(
            text.starts_with(
                "PUT /v2/a/blobs/uploads/x?_state=s&digest=d HTTP/1.1\r\nHost: 127.0.0.1:5000\r\n"
            ),
            "{text}"
        );
        assert!(text.contains("Content-Length: 7\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
