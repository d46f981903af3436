//! Just enough HTTP/1.1 for the fault proxy and the token service: a loopback server, message
//! heads, bodies framed by Content-Length or chunked encoding, canned responses and query
//! strings.

use std::io::{self, BufRead, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A server on a free loopback port that hands each connection to a handler on a thread of its
/// own, until dropped.
pub struct Server {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(handle: impl Fn(TcpStream) + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Arc::new(handle);
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    let handle = handle.clone();
                    std::thread::spawn(move || handle(c));
                }
            }
        });
        Server { port, stop }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// The start line and headers of a request or a response.
#[derive(Debug, Clone)]
pub struct Head {
    pub start: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// Read a head; `None` at a clean end of stream before any byte of it.
    pub fn read(r: &mut impl BufRead) -> io::Result<Option<Head>> {
        let mut start = String::new();
        loop {
            start.clear();
            if r.read_line(&mut start)? == 0 {
                return Ok(None);
            }
            if !start.trim().is_empty() {
                break;
            }
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Ok(Some(Head {
            start: start.trim_end().to_string(),
            headers,
        }))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.remove(name);
        self.headers.push((name.to_string(), value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    pub fn content_length(&self) -> Option<u64> {
        self.get("content-length").and_then(|v| v.parse().ok())
    }

    pub fn is_chunked(&self) -> bool {
        self.get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    pub fn wants_close(&self) -> bool {
        self.get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// Request method.
    pub fn method(&self) -> &str {
        self.start.split(' ').next().unwrap_or("")
    }

    /// Request target (path and query).
    pub fn target(&self) -> &str {
        self.start.split(' ').nth(1).unwrap_or("")
    }

    pub fn set_target(&mut self, target: &str) {
        let parts: Vec<&str> = self.start.split(' ').collect();
        if parts.len() == 3 {
            self.start = format!("{} {target} {}", parts[0], parts[2]);
        }
    }

    /// Response status.
    pub fn status(&self) -> u16 {
        self.start
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub fn write_to(&self, w: &mut (impl Write + ?Sized)) -> io::Result<()> {
        let mut text = format!("{}\r\n", self.start);
        for (k, v) in &self.headers {
            text.push_str(&format!("{k}: {v}\r\n"));
        }
        text.push_str("\r\n");
        w.write_all(text.as_bytes())
    }
}

/// Copy exactly `n` bytes from `r` to `w` (or discard them); returns how many were copied
/// before an error, with the error.
pub fn copy_exact(
    r: &mut impl Read,
    mut w: Option<&mut dyn Write>,
    n: u64,
) -> (u64, io::Result<()>) {
    let mut buf = vec![0u8; 256 << 10];
    let mut done = 0u64;
    while done < n {
        let want = buf.len().min((n - done) as usize);
        let got = match r.read(&mut buf[..want]) {
            Ok(0) => return (done, Err(io::ErrorKind::UnexpectedEof.into())),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (done, Err(e)),
        };
        if let Some(w) = w.as_deref_mut() {
            if let Err(e) = w.write_all(&buf[..got]) {
                return (done, Err(e));
            }
        }
        done += got as u64;
    }
    (done, Ok(()))
}

/// Relay a chunked body as it is framed, up to and including its last chunk and trailers.
pub fn relay_chunked(r: &mut impl BufRead, w: &mut dyn Write) -> io::Result<()> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        w.write_all(line.as_bytes())?;
        let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                w.write_all(t.as_bytes())?;
                if t.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let (_, res) = copy_exact(r, Some(w), size + 2);
        res?;
    }
}

/// Read a whole body framed by `head` (Content-Length or chunked; none otherwise).
pub fn read_body(r: &mut impl BufRead, head: &Head) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if head.is_chunked() {
        let mut framed = Vec::new();
        relay_chunked(r, &mut framed)?;
        let mut cur = io::Cursor::new(framed);
        loop {
            let mut line = String::new();
            cur.read_line(&mut line)?;
            let size =
                usize::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
                    .unwrap_or(0);
            if size == 0 {
                break;
            }
            let mut chunk = vec![0u8; size + 2];
            cur.read_exact(&mut chunk)?;
            out.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(n) = head.content_length() {
        let (_, res) = copy_exact(r, Some(&mut out), n);
        res?;
    }
    Ok(out)
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        416 => "Requested Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

/// Write a complete response with a body (always framed by Content-Length).
pub fn respond(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = Head {
        start: format!("HTTP/1.1 {status} {}", reason(status)),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    };
    head.set("Content-Length", body.len().to_string());
    head.write_to(w)?;
    w.write_all(body)?;
    w.flush()
}

/// A distribution-style JSON error body.
pub fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::json!({"errors": [{"code": code, "message": message}]})
        .to_string()
        .into_bytes()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The decoded `key=value` pairs of a request target's query, in order.
pub fn query_pairs(target: &str) -> Vec<(String, String)> {
    let Some((_, query)) = target.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}
