//! A fault-injecting HTTP/1.1 proxy in front of a registry, for what a real registry cannot be
//! made to do on demand: 429 with `Retry-After`, 5xx, a connection dropped in the middle of a
//! request body, chunks over a size refused with 413 (as GHCR does), a cross-repository mount
//! answered with 202 (an upload session instead of a mount).
//!
//! Requests are relayed byte for byte (the `Host` header too, so the registry's `Location`s
//! point back at the proxy) over one upstream connection per client connection. Every request
//! is recorded with the body bytes it brought and the bytes the registry got, so tests can
//! assert what crossed the wire. Streamed (chunked) request bodies are relayed as they come, with
//! no fault applied. [`FaultProxy::wait_idle`] waits for the requests of a killed client, which
//! the registry may still complete, before a test looks at the registry.
//!
//! In *resumable* mode the proxy also makes the registry behave as the OCI distribution spec
//! asks of one that keeps partial uploads: the registry (distribution 2.8) embeds the upload
//! offset in a signed `_state` query parameter and refuses a stale one, so the proxy always
//! forwards the latest `_state` it has seen for an upload, and a PATCH whose `Content-Range`
//! does not start where the upload stands is answered `416` with the current `Range`, as the
//! spec requires.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::http::{copy_exact, error_body, relay_chunked, respond, Head, Server};

/// What a matching rule does to a request.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` seconds) instead of forwarding.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Read `after` bytes of the request body, then drop the connection without an answer.
    /// With `forward`, those bytes reach the registry first (as a request of that length).
    Drop { after: u64, forward: bool },
    /// Forward a cross-repository mount (`POST ...?mount=&from=`) as a plain upload start, so
    /// the registry answers 202 with an upload location, as registries that cannot mount do.
    RefuseMount,
}

/// When a fault applies: method, a fragment of the target, a minimum body size; after `skip`
/// matching requests, for `times` of them.
#[derive(Clone, Debug)]
pub struct Rule {
    method: Option<String>,
    path: Option<String>,
    min_body: u64,
    skip: usize,
    times: usize,
    fault: Fault,
    seen: usize,
    fired: usize,
}

impl Rule {
    pub fn new(fault: Fault) -> Rule {
        Rule {
            method: None,
            path: None,
            min_body: 0,
            skip: 0,
            times: 1,
            fault,
            seen: 0,
            fired: 0,
        }
    }
    pub fn status(status: u16) -> Rule {
        Rule::new(Fault::Status {
            status,
            retry_after: None,
        })
    }
    pub fn method(mut self, m: &str) -> Rule {
        self.method = Some(m.to_string());
        self
    }
    /// The request target contains this fragment.
    pub fn path(mut self, fragment: &str) -> Rule {
        self.path = Some(fragment.to_string());
        self
    }
    /// The request body is larger than `n` bytes.
    pub fn body_over(mut self, n: u64) -> Rule {
        self.min_body = n + 1;
        self
    }
    pub fn skip(mut self, n: usize) -> Rule {
        self.skip = n;
        self
    }
    pub fn times(mut self, n: usize) -> Rule {
        self.times = n;
        self
    }
    pub fn always(self) -> Rule {
        self.times(usize::MAX)
    }
    fn matches(&self, method: &str, target: &str, len: u64) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self.path.as_deref().is_none_or(|p| target.contains(p))
            && len >= self.min_body
    }
}

/// One request as the proxy saw it.
#[derive(Clone, Debug)]
pub struct Record {
    pub method: String,
    /// The target as the client sent it.
    pub target: String,
    pub content_length: u64,
    pub content_range: Option<String>,
    /// Body bytes read from the client.
    pub received: u64,
    /// Body bytes written to the registry.
    pub forwarded: u64,
    /// What the client was answered; `None` when its connection was dropped.
    pub status: Option<u16>,
    /// What the proxy did instead of relaying faithfully.
    pub fault: Option<String>,
    /// The upload session (UUID) the request belongs to.
    pub upload: Option<String>,
    pub at: Instant,
}

impl Record {
    /// A decoded query parameter of the target.
    pub fn query(&self, key: &str) -> Option<String> {
        super::http::query_pairs(&self.target)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
    /// The first byte of `Content-Range`.
    pub fn range_start(&self) -> Option<u64> {
        range_start(self.content_range.as_deref())
    }
    /// A request that carries blob bytes into an upload session.
    pub fn is_upload_data(&self) -> bool {
        (self.method == "PATCH" || self.method == "PUT") && self.target.contains("/blobs/uploads/")
    }
}

#[derive(Clone, Debug, Default)]
struct Upload {
    location: String,
    offset: u64,
}

#[derive(Default)]
struct State {
    rules: Vec<Rule>,
    resumable: bool,
    uploads: HashMap<String, Upload>,
    records: Vec<Record>,
}

struct Shared {
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Requests being handled (read, forwarded or answered) right now.
    active: AtomicUsize,
}

enum Action {
    Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
        fault: String,
    },
    Drop {
        after: u64,
        forward: bool,
        target: String,
    },
    Forward {
        target: String,
        fault: Option<String>,
    },
}

/// The proxy: listens on a loopback port until dropped.
pub struct FaultProxy {
    server: Server,
    shared: Arc<Shared>,
}

impl FaultProxy {
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let shared = Arc::new(Shared {
            upstream,
            state: Mutex::new(State::default()),
            active: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let server = Server::start(move |c| s.serve(c));
        FaultProxy { server, shared }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    pub fn add_rule(&self, rule: Rule) {
        self.shared.state.lock().unwrap().rules.push(rule);
    }

    pub fn clear_rules(&self) {
        self.shared.state.lock().unwrap().rules.clear();
    }

    pub fn set_resumable(&self, on: bool) {
        self.shared.state.lock().unwrap().resumable = on;
    }

    pub fn records(&self) -> Vec<Record> {
        self.shared.state.lock().unwrap().records.clone()
    }

    /// Wait until no request is being handled (those of a killed client finish on their own:
    /// the registry may still complete an upload whose client is gone); false after `limit`.
    pub fn wait_idle(&self, limit: std::time::Duration) -> bool {
        let started = Instant::now();
        while self.shared.active.load(Ordering::SeqCst) > 0 {
            if started.elapsed() > limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        true
    }

    pub fn clear_records(&self) {
        self.shared.state.lock().unwrap().records.clear();
    }

    /// A readable list of the requests seen, for assertion messages.
    pub fn summary(&self) -> String {
        self.records()
            .iter()
            .map(|r| {
                format!(
                    "{} {} range={:?} len={} received={} forwarded={} -> {:?} {}",
                    r.method,
                    r.target.split('?').next().unwrap_or(""),
                    r.content_range,
                    r.content_length,
                    r.received,
                    r.forwarded,
                    r.status,
                    r.fault.as_deref().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

struct Upstream {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Upstream {
    fn connect(addr: SocketAddr) -> io::Result<Upstream> {
        let w = TcpStream::connect(addr)?;
        w.set_nodelay(true)?;
        Ok(Upstream {
            r: BufReader::with_capacity(1 << 16, w.try_clone()?),
            w,
        })
    }
}

/// The upload session of a request target or `Location`.
fn upload_id(target: &str) -> Option<String> {
    let rest = &target[target.find("/blobs/uploads/")? + "/blobs/uploads/".len()..];
    let id = rest.split(['?', '/']).next().unwrap_or("");
    (!id.is_empty()).then(|| id.to_string())
}

fn range_start(content_range: Option<&str>) -> Option<u64> {
    content_range?
        .trim()
        .trim_start_matches("bytes")
        .trim_start_matches([' ', '='])
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Distribution's `Range` for an upload holding `offset` bytes.
fn range_header(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// `target` with its `_state` parameter taken from `location`.
fn with_latest_state(target: &str, location: &str) -> String {
    let state = location
        .split_once('?')
        .and_then(|(_, q)| q.split('&').find(|p| p.starts_with("_state=")));
    let (Some(state), Some((path, query))) = (state, target.split_once('?')) else {
        return target.to_string();
    };
    let query: Vec<&str> = query
        .split('&')
        .map(|p| if p.starts_with("_state=") { state } else { p })
        .collect();
    format!("{path}?{}", query.join("&"))
}

fn has_body(method: &str, status: u16) -> bool {
    method != "HEAD" && !(100..200).contains(&status) && status != 204 && status != 304
}

impl Shared {
    fn serve(&self, client: TcpStream) {
        let _ = client.set_nodelay(true);
        let Ok(read_half) = client.try_clone() else {
            return;
        };
        let mut cr = BufReader::with_capacity(1 << 16, read_half);
        let mut cw = client;
        // modelcar tries HTTPS first on loopback registries: refuse a TLS handshake (0x16) as a
        // plain HTTP server would, so it falls back to HTTP at once.
        if matches!(cr.fill_buf(), Ok([0x16, ..]) | Ok([]) | Err(_)) {
            let _ = cw.shutdown(Shutdown::Both);
            return;
        }
        let mut up: Option<Upstream> = None;
        while let Ok(Some(head)) = Head::read(&mut cr) {
            let keep = !head.wants_close();
            self.active.fetch_add(1, Ordering::SeqCst);
            let done = self.exchange(head, &mut cr, &mut cw, &mut up);
            self.active.fetch_sub(1, Ordering::SeqCst);
            match done {
                Ok(true) if keep => continue,
                _ => break,
            }
        }
        let _ = cw.shutdown(Shutdown::Both);
    }

    fn decide(
        &self,
        method: &str,
        target: &str,
        len: u64,
        content_range: Option<&str>,
        upload: Option<&str>,
    ) -> Action {
        let mut st = self.state.lock().unwrap();
        let mut rewritten = target.to_string();
        let mut out_of_order = None;
        if st.resumable {
            if let Some(u) = upload.and_then(|u| st.uploads.get(u)) {
                rewritten = with_latest_state(target, &u.location);
                if method == "PATCH" {
                    if let Some(start) = range_start(content_range) {
                        if start != u.offset {
                            out_of_order = Some(u.clone());
                        }
                    }
                }
            }
        }
        for rule in st.rules.iter_mut() {
            if !rule.matches(method, target, len) {
                continue;
            }
            rule.seen += 1;
            if rule.seen <= rule.skip || rule.fired >= rule.times {
                continue;
            }
            rule.fired += 1;
            return match &rule.fault {
                Fault::Status {
                    status,
                    retry_after,
                } => {
                    let code = match status {
                        429 => "TOOMANYREQUESTS",
                        413 => "SIZE_INVALID",
                        _ => "UNKNOWN",
                    };
                    let mut headers = vec![("Content-Type", "application/json".to_string())];
                    if let Some(s) = retry_after {
                        headers.push(("Retry-After", s.to_string()));
                    }
                    Action::Answer {
                        status: *status,
                        headers,
                        body: error_body(code, "injected by the test proxy"),
                        fault: format!("answered {status}"),
                    }
                }
                Fault::Drop { after, forward } => Action::Drop {
                    after: *after,
                    forward: *forward,
                    target: rewritten,
                },
                Fault::RefuseMount => Action::Forward {
                    target: target.split('?').next().unwrap_or(target).to_string(),
                    fault: Some("mount turned into a plain upload start".into()),
                },
            };
        }
        if let Some(u) = out_of_order {
            return Action::Answer {
                status: 416,
                headers: vec![
                    ("Content-Type", "application/json".to_string()),
                    ("Range", range_header(u.offset)),
                    ("Location", u.location),
                    ("Docker-Upload-UUID", upload.unwrap_or("").to_string()),
                ],
                body: error_body(
                    "BLOB_UPLOAD_INVALID",
                    "chunk does not start at the upload's offset",
                ),
                fault: format!("416: the upload stands at {}", u.offset),
            };
        }
        Action::Forward {
            target: rewritten,
            fault: None,
        }
    }

    /// Handle one request; `Ok(true)` when the client connection can carry another.
    fn exchange(
        &self,
        mut head: Head,
        cr: &mut BufReader<TcpStream>,
        cw: &mut TcpStream,
        up: &mut Option<Upstream>,
    ) -> io::Result<bool> {
        let method = head.method().to_string();
        let target = head.target().to_string();
        let content_range = head.get("content-range").map(str::to_string);
        let upload = upload_id(&target);
        let mut rec = Record {
            method: method.clone(),
            target: target.clone(),
            content_length: head.content_length().unwrap_or(0),
            content_range: content_range.clone(),
            received: 0,
            forwarded: 0,
            status: None,
            fault: None,
            upload: upload.clone(),
            at: Instant::now(),
        };
        let result = if head.is_chunked() {
            // A body streamed as it is made (`build --push`): relayed faithfully, no rule applies.
            self.forward(&mut head, cr, 0, Some(cw), up, &mut rec)
                .map(|_| true)
        } else {
            let len = rec.content_length;
            match self.decide(
                &method,
                &target,
                len,
                content_range.as_deref(),
                upload.as_deref(),
            ) {
                Action::Answer {
                    status,
                    headers,
                    body,
                    fault,
                } => {
                    rec.fault = Some(fault);
                    let (n, res) = copy_exact(cr, None, len);
                    rec.received = n;
                    res.and_then(|_| respond(cw, status, &headers, &body))
                        .map(|_| {
                            rec.status = Some(status);
                            true
                        })
                }
                Action::Drop {
                    after,
                    forward,
                    target,
                } => {
                    let n = after.min(len);
                    rec.fault = Some(format!("dropped the connection after {n} body bytes"));
                    if forward {
                        head.set_target(&target);
                        head.set("Content-Length", n.to_string());
                        if let Some(start) = range_start(content_range.as_deref()) {
                            if n > 0 {
                                head.set("Content-Range", format!("{start}-{}", start + n - 1));
                            }
                        }
                        if let Ok(status) = self.forward(&mut head, cr, n, None, up, &mut rec) {
                            rec.fault = Some(format!(
                                "dropped the connection after {n} body bytes, which the registry got (it answered {status})"
                            ));
                        }
                        // The client got no answer.
                        rec.status = None;
                    } else {
                        let (k, _) = copy_exact(cr, None, n);
                        rec.received = k;
                    }
                    Ok(false)
                }
                Action::Forward { target, fault } => {
                    rec.fault = fault;
                    head.set_target(&target);
                    self.forward(&mut head, cr, len, Some(cw), up, &mut rec)
                        .map(|_| true)
                }
            }
        };
        self.state.lock().unwrap().records.push(rec);
        result
    }

    /// Send the request to the registry and its answer to `client` (or nowhere); returns the
    /// registry's status.
    fn forward(
        &self,
        head: &mut Head,
        cr: &mut BufReader<TcpStream>,
        len: u64,
        client: Option<&mut TcpStream>,
        up: &mut Option<Upstream>,
        rec: &mut Record,
    ) -> io::Result<u16> {
        let mut connected = false;
        for _ in 0..2 {
            if up.is_none() {
                match Upstream::connect(self.upstream) {
                    Ok(u) => *up = Some(u),
                    Err(e) => {
                        let (n, _) = copy_exact(cr, None, len);
                        rec.received = n;
                        rec.fault = Some(format!("registry unreachable: {e}"));
                        if let Some(c) = client {
                            respond(c, 502, &[], b"registry unreachable")?;
                            rec.status = Some(502);
                        }
                        return Ok(502);
                    }
                }
            }
            // A kept-alive registry connection may have been closed meanwhile: retry once.
            if head.write_to(&mut up.as_mut().unwrap().w).is_ok() {
                connected = true;
                break;
            }
            *up = None;
        }
        if !connected {
            return Err(io::Error::other("cannot write to the registry"));
        }
        let u = up.as_mut().unwrap();
        let (n, res) = if head.is_chunked() {
            let mut counted = Counting(&mut u.w, 0);
            let res = relay_chunked(cr, &mut counted);
            (counted.1, res)
        } else {
            copy_exact(cr, Some(&mut u.w), len)
        };
        rec.received = n;
        rec.forwarded = n;
        if let Err(e) = res {
            *up = None;
            return Err(e);
        }
        let resp = match Head::read(&mut u.r) {
            Ok(Some(h)) => h,
            Ok(None) => {
                *up = None;
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            Err(e) => {
                *up = None;
                return Err(e);
            }
        };
        let status = resp.status();
        self.track(&rec.method, rec.upload.as_deref(), n, &resp);
        let method = rec.method.clone();
        let mut sink = io::sink();
        let out: &mut dyn Write = match client {
            Some(c) => c,
            None => &mut sink,
        };
        resp.write_to(out)?;
        let mut close_upstream = resp.wants_close();
        if has_body(&method, status) {
            if resp.is_chunked() {
                relay_chunked(&mut u.r, out)?;
            } else if let Some(cl) = resp.content_length() {
                let (_, res) = copy_exact(&mut u.r, Some(out), cl);
                res?;
            } else {
                io::copy(&mut u.r, out)?;
                close_upstream = true;
            }
        }
        out.flush()?;
        if close_upstream {
            *up = None;
        }
        rec.status = Some(status);
        Ok(status)
    }

    /// Follow upload sessions: their latest location and how many bytes the registry has.
    fn track(&self, method: &str, upload: Option<&str>, forwarded: u64, resp: &Head) {
        let mut st = self.state.lock().unwrap();
        let status = resp.status();
        if let Some(loc) = resp.get("location") {
            if let Some(id) = upload_id(loc) {
                let u = st.uploads.entry(id).or_default();
                u.location = loc.to_string();
                if method == "PATCH" && status == 202 {
                    u.offset += forwarded;
                }
                return;
            }
        }
        if method == "PUT" && status == 201 {
            if let Some(id) = upload {
                st.uploads.remove(id);
            }
        }
    }
}

/// A writer that counts what passes through it.
struct Counting<'a>(&'a mut TcpStream, u64);

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.0.write(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
