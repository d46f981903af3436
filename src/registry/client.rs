//! The HTTP side of the distribution API: endpoints, authentication, timeouts and retries.
//!
//! Every request has a connect timeout and an idle read timeout ("no byte for N seconds", never
//! a limit on a whole transfer). Failures become [`RegistryError`]s that keep their kind, the
//! HTTP status and the registry's error codes; [`Client::retrying`] is the one place that
//! retries, and only what [`Error::is_temporary`] calls temporary. Credentials go only to the
//! scheme, host and port of the registry they belong to, and a Bearer token realm must be HTTPS
//! unless the registry itself is reached over plain HTTP.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};

use super::auth::{self, Challenge, Credential};
use super::upload;
use crate::error::{io_err, Error, RegistryCode, RegistryError, RegistryErrorKind as Kind, Result};
use crate::limits;

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `Some(false)` skips TLS verification and allows plain HTTP for every registry.
    pub tls_verify: Option<bool>,
    /// Registries (host[:port]) for which TLS is not verified (from the project file).
    pub insecure_registries: Vec<String>,
    /// A directory of `*.crt` (PEM) files trusted in addition to the system's roots.
    pub cert_dir: Option<PathBuf>,
    /// Attempts after the first for a request that failed temporarily.
    pub retries: u32,
    /// First backoff delay; doubled after each attempt.
    pub backoff: Duration,
    /// Blobs transferred at once.
    pub jobs: usize,
    /// Time to open a connection.
    pub connect_timeout: Duration,
    /// Longest silence on an open connection.
    pub read_timeout: Duration,
    /// Longest `Retry-After` honoured; a registry asking for more makes the request fail.
    pub max_retry_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls_verify: None,
            insecure_registries: Vec::new(),
            cert_dir: None,
            retries: limits::RETRIES,
            backoff: Duration::from_millis(limits::BACKOFF_MILLIS),
            jobs: 4,
            connect_timeout: Duration::from_secs(limits::CONNECT_TIMEOUT_SECS),
            read_timeout: Duration::from_secs(limits::READ_TIMEOUT_SECS),
            max_retry_wait: Duration::from_secs(limits::MAX_RETRY_WAIT_SECS),
        }
    }
}

/// Which HTTP client a request goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// A request with no body or a small one: the wait for the answer is bounded by the read
    /// timeout.
    Small,
    /// A request that carries a blob: sending it may take hours, so the wait for the answer
    /// is not bounded as a whole. `TCP_USER_TIMEOUT` (the read timeout) has the kernel drop a
    /// connection whose sent bytes stay unacknowledged that long (a vanished peer); a registry
    /// that keeps the connection open and stops reading is not detected here.
    Upload,
}

/// The body of a request sent by [`Client::upload_attempt`].
pub struct UploadBody(pub(super) upload::Body);

impl UploadBody {
    /// `len` bytes of `file` from `offset`.
    pub fn file(file: std::fs::File, offset: u64, len: u64) -> UploadBody {
        UploadBody(upload::Body::File { file, offset, len })
    }
    /// Pieces as a channel brings them, sent chunked.
    pub fn pieces(rx: std::sync::mpsc::Receiver<upload::Piece>) -> UploadBody {
        UploadBody(upload::Body::Pieces(rx))
    }
}

/// The access a request needs on a repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    pub scopes: Vec<String>,
}

impl Scope {
    pub fn pull(repository: &str) -> Scope {
        Scope {
            scopes: vec![format!("repository:{repository}:pull")],
        }
    }
    pub fn push(repository: &str) -> Scope {
        Scope {
            scopes: vec![format!("repository:{repository}:pull,push")],
        }
    }
    /// Push on `repository` and pull on `from` (for cross-repository mounts).
    pub fn push_mount(repository: &str, from: &str) -> Scope {
        let mut s = Scope::push(repository);
        if from != repository {
            s.scopes.push(format!("repository:{from}:pull"));
        }
        s
    }
    fn key(&self) -> String {
        self.scopes.join(" ")
    }
    /// This scope with the scopes a challenge names added (space-separated, as the token
    /// protocol writes them): a registry that asks for more than was expected gets asked for it.
    pub fn merged(&self, challenge: Option<&str>) -> Scope {
        let mut s = self.clone();
        for extra in challenge.unwrap_or("").split(' ').filter(|x| !x.is_empty()) {
            if !s.scopes.iter().any(|have| have == extra) {
                s.scopes.push(extra.to_string());
            }
        }
        s
    }
}

struct Token {
    header: String,
    expires: Instant,
}

/// The two HTTP clients of one TLS mode.
struct Clients {
    small: Http,
    upload: Http,
}

/// Where a registry answers: its base URL and whether its certificate is verified.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    verify: bool,
}

/// The waits a failure message names; copied into threads that send requests on their own.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
}

/// A client for any number of registries.
pub struct Client {
    secure: Clients,
    insecure: Clients,
    /// Sends the requests that carry blobs, unless a proxy is configured.
    uploader: Option<std::sync::Arc<upload::Connector>>,
    opts: Options,
    endpoints: Mutex<HashMap<String, Endpoint>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
    ping: Mutex<()>,
}

/// The certificates of `--cert-dir`, parsed, and as the PEM text they came as.
fn read_certificates(opts: &Options) -> Result<(Vec<reqwest::Certificate>, Vec<Vec<u8>>)> {
    let mut certs = Vec::new();
    let mut pems = Vec::new();
    let Some(dir) = &opts.cert_dir else {
        return Ok((certs, pems));
    };
    let entries = std::fs::read_dir(dir).map_err(io_err("read the certificate directory", dir))?;
    for e in entries.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "crt" || x == "pem") {
            let pem = std::fs::read(&p).map_err(io_err("read certificate", &p))?;
            certs.extend(reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::invalid(format!("{} is not a PEM certificate: {e}", p.display()))
            })?);
            pems.push(pem);
        }
    }
    Ok((certs, pems))
}

fn http_client(
    verify: bool,
    transfer: Transfer,
    opts: &Options,
    certs: &[reqwest::Certificate],
) -> Result<Http> {
    let mut b = reqwest::blocking::Client::builder()
        .user_agent(concat!("modelcar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(opts.connect_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(60));
    match transfer {
        // The blocking client's timeout bounds the wait for an answer's head and then each
        // read of its body on its own: an idle timeout, not a limit on a whole download.
        Transfer::Small => b = b.timeout(opts.read_timeout),
        Transfer::Upload => {
            b = b.timeout(None::<Duration>);
            #[cfg(any(target_os = "linux", target_os = "android", target_os = "fuchsia"))]
            {
                b = b.tcp_user_timeout(opts.read_timeout);
            }
        }
    }
    if !verify {
        b = b.danger_accept_invalid_certs(true);
    }
    for c in certs {
        b = b.add_root_certificate(c.clone());
    }
    b.build()
        .map_err(|e| Error::invalid(format!("cannot set up HTTPS: {e}")))
}

/// Whether a registry host is on the loopback interface (plain HTTP allowed, as Docker does).
pub fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        registry.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` of a URL, as registries are named.
fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.as_str().chars().take(100).collect(),
    }
}

/// The host serving a registry's API: Docker Hub's references name `docker.io`, but its API is
/// at `registry-1.docker.io` (as Docker, skopeo and containerd reach it); every other registry
/// serves the API under its own name.
fn api_host(registry: &str) -> &str {
    if registry == crate::reference::DOCKER_HUB {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// Whether `url` is on the same scheme, host and port as the registry's base URL: only then
/// does a request to it carry the registry's credentials.
fn same_origin(url: &Url, base: &str) -> bool {
    Url::parse(base).is_ok_and(|b| {
        b.scheme() == url.scheme()
            && b.host_str() == url.host_str()
            && b.port_or_known_default() == url.port_or_known_default()
    })
}

fn any_cause(
    e: &(dyn std::error::Error + 'static),
    test: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool,
) -> bool {
    let mut cur = Some(e);
    while let Some(c) = cur {
        if test(c) {
            return true;
        }
        // An `io::Error`'s `source` skips the error it wraps: look at that one too.
        cur = match c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    false
}

/// An error and its causes as one line of text, as a TLS library's reasons reach us.
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cur = c.source();
    }
    text
}

/// A failed exchange (no connection, no answer, a broken connection) as a registry error
/// naming the registry, what was being done and the wait that ran out.
pub fn network_error(
    registry: &str,
    doing: &str,
    timeouts: Timeouts,
    e: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    let reqwest_flag = |f: fn(&reqwest::Error) -> bool| {
        any_cause(&e, &|c| c.downcast_ref::<reqwest::Error>().is_some_and(f))
    };
    let io_kind = |k: std::io::ErrorKind| {
        any_cause(&e, &|c| {
            c.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == k)
        })
    };
    let timed_out =
        reqwest_flag(reqwest::Error::is_timeout) || io_kind(std::io::ErrorKind::TimedOut);
    let connect = reqwest_flag(reqwest::Error::is_connect)
        || any_cause(&e, &|c| c.is::<upload::ConnectFailed>());
    let certificate = certificate_problem(&chain_text(&e));
    let (kind, message, hint) = if timed_out && connect {
        (
            Kind::TimedOut,
            format!(
                "registry {registry} did not accept a connection within {} s while {doing}",
                timeouts.connect.as_secs_f64()
            ),
            Some(
                "check the address and your network; --connect-timeout sets how long to wait"
                    .to_string(),
            ),
        )
    } else if timed_out {
        (
            Kind::TimedOut,
            format!(
                "registry {registry} sent no bytes for {} s while {doing}",
                timeouts.read.as_secs_f64()
            ),
            Some(
                "the registry or the network stalled; try again later, or raise --read-timeout"
                    .to_string(),
            ),
        )
    } else if let Some((what, hint)) = certificate {
        (
            Kind::Refused,
            format!("the TLS certificate of registry {registry} {what}"),
            Some(hint.to_string()),
        )
    } else if connect && io_kind(std::io::ErrorKind::ConnectionRefused) {
        (
            Kind::Dropped,
            format!("registry {registry} refused the connection while {doing}"),
            Some("check that the registry is running and the address is right".to_string()),
        )
    } else if connect {
        (
            Kind::Unreachable,
            format!("cannot connect to registry {registry} while {doing}"),
            Some("check the address and your network; for a registry with a private CA pass --cert-dir, for one without TLS --tls-verify=false".to_string()),
        )
    } else {
        (
            Kind::Dropped,
            format!("the connection to registry {registry} broke while {doing}"),
            None,
        )
    };
    let mut err = RegistryError::new(registry, kind, message);
    // A certificate problem is told in full above; the TLS library's own names add nothing.
    if certificate.is_none() {
        err = err.with_source(e);
    }
    if let Some(h) = hint {
        err = err.with_hint(h);
    }
    err.into()
}

/// What is wrong with a registry's certificate, in a user's terms, from the names rustls and
/// webpki give certificate errors (they reach us only as text through reqwest's chain).
fn certificate_problem(chain: &str) -> Option<(&'static str, &'static str)> {
    if !chain.contains("invalid peer certificate") {
        return None;
    }
    const TRUST: &str = "give the CA that signed it with --cert-dir DIR (a DIR/*.crt file), or, for a test registry only, --tls-verify=false";
    // The names of rustls's certificate errors, and the phrases of their variants with context.
    let table: [(&[&str], &str, &str); 6] = [
        (&["CaUsedAsEndEntity"], "is a CA certificate (basicConstraints CA:TRUE) used as the server's own certificate, which TLS clients refuse even when it is trusted", "give the registry a server certificate (CA:FALSE, its host name in subjectAltName) signed by that CA, and pass the CA with --cert-dir"),
        (&["NotValidForName", "not valid for name"], "does not name the host it was reached by (its subjectAltName lacks it)", "reach the registry by a name its certificate lists, or give it a certificate with this name in subjectAltName"),
        (&["Expired", "certificate expired"], "has expired", "renew the registry's certificate (and check this machine's clock)"),
        (&["NotValidYet", "not valid yet"], "is not valid yet", "check this machine's clock, or the certificate's start date"),
        (&["UnknownIssuer"], "is signed by a CA this machine does not trust", TRUST),
        (&["BadSignature"], "has a signature that does not verify", TRUST),
    ];
    Some(
        table
            .iter()
            .find(|(names, _, _)| names.iter().any(|n| chain.contains(n)))
            .map(|(_, what, hint)| (*what, *hint))
            .unwrap_or(("is not accepted", TRUST)),
    )
}

/// The wait a `Retry-After` header asks for (seconds or an HTTP date).
fn retry_after(resp: &Response) -> Option<Duration> {
    let v = resp.headers().get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (at.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// What kind of failure an HTTP answer is, from its status and the registry's error codes.
fn kind_of(status: StatusCode, codes: &[RegistryCode]) -> Kind {
    let has = |c: &str| codes.iter().any(|x| x.code == c);
    if status == StatusCode::TOO_MANY_REQUESTS || has("TOOMANYREQUESTS") {
        Kind::TooManyRequests
    } else if status.is_server_error() || has("UNAVAILABLE") {
        Kind::Unavailable
    } else if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || has("DENIED")
        || has("UNAUTHORIZED")
    {
        Kind::Denied
    } else if status == StatusCode::NOT_FOUND || codes.iter().any(|c| c.code.ends_with("_UNKNOWN"))
    {
        Kind::NotFound
    } else {
        Kind::Refused
    }
}

/// The error entries of a distribution API error body (bounded in count and length).
fn error_codes(body: &[u8]) -> Vec<RegistryCode> {
    let clip = |s: &str| s.chars().take(500).collect::<String>();
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
        .map(|errs| {
            errs.iter()
                .take(16)
                .map(|e| RegistryCode {
                    code: clip(e.get("code").and_then(|c| c.as_str()).unwrap_or("?")),
                    message: clip(e.get("message").and_then(|c| c.as_str()).unwrap_or("")),
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Client {
    pub fn new(opts: Options) -> Result<Client> {
        let (certs, pems) = read_certificates(&opts)?;
        let clients = |verify| -> Result<Clients> {
            Ok(Clients {
                small: http_client(verify, Transfer::Small, &opts, &certs)?,
                upload: http_client(verify, Transfer::Upload, &opts, &certs)?,
            })
        };
        // reqwest reaches a registry through the proxy the environment names; the uploader
        // does not speak to proxies, so there every request stays with reqwest.
        let proxied = [
            "http_proxy",
            "HTTP_PROXY",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        Ok(Client {
            secure: clients(true)?,
            insecure: clients(false)?,
            uploader: (!proxied).then(|| {
                std::sync::Arc::new(upload::Connector::new(
                    opts.connect_timeout,
                    opts.read_timeout,
                    pems,
                ))
            }),
            opts,
            endpoints: Mutex::new(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            credentials: Mutex::new(HashMap::new()),
            ping: Mutex::new(()),
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// The connect and read timeouts, for messages.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.opts.connect_timeout,
            read: self.opts.read_timeout,
        }
    }

    fn verify_tls(&self, registry: &str) -> bool {
        self.opts.tls_verify != Some(false)
            && !self.opts.insecure_registries.iter().any(|r| r == registry)
    }

    fn http(&self, verify: bool, transfer: Transfer) -> &Http {
        let c = if verify { &self.secure } else { &self.insecure };
        match transfer {
            Transfer::Small => &c.small,
            Transfer::Upload => &c.upload,
        }
    }

    fn known_endpoint(&self, registry: &str) -> Option<Endpoint> {
        self.endpoints.lock().expect("lock").get(registry).cloned()
    }

    /// Find scheme and TLS mode for a registry by pinging `/v2/`; remembers its challenge.
    /// The registry API's base URL (scheme and host), found by asking `/v2/` over HTTPS first.
    fn endpoint(&self, registry: &str) -> Result<Endpoint> {
        if let Some(found) = self.known_endpoint(registry) {
            return Ok(found);
        }
        // One ping per registry, however many transfers start at once.
        let _pinging = self.ping.lock().expect("lock");
        if let Some(found) = self.known_endpoint(registry) {
            return Ok(found);
        }
        let verify = self.verify_tls(registry);
        let http = self.http(verify, Transfer::Small);
        let plain_ok = !verify || is_loopback(registry);
        let mut https_error: Option<Error> = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !plain_ok {
                break;
            }
            let url = format!("{scheme}://{}/v2/", api_host(registry));
            let r = match http.get(&url).send() {
                Ok(r) => r,
                Err(e) => {
                    let err =
                        network_error(registry, "connecting to its API (/v2/)", self.timeouts(), e);
                    // Even a timeout falls back: a plain-HTTP server may wait for a line that a
                    // TLS handshake never sends.
                    if scheme == "https" {
                        https_error = Some(err);
                        continue;
                    }
                    // A plain-HTTP server that accepted and then said nothing: that wait is
                    // what the user must hear about, not the failed TLS handshake before it.
                    if err.registry().is_some_and(|r| r.kind == Kind::TimedOut) {
                        return Err(err);
                    }
                    return Err(https_error.unwrap_or(err));
                }
            };
            let status = r.status();
            if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                return Err(unexpected(&format!("connecting to registry {registry}"), r));
            }
            let speaks_distribution = r.headers().contains_key("docker-distribution-api-version");
            if !(status.is_success() || status == StatusCode::UNAUTHORIZED || speaks_distribution) {
                // Not a registry answering (for example a TLS port answering plain HTTP with 400):
                // the HTTPS error, if any, is the one that tells the user what is wrong.
                if scheme == "http" {
                    if let Some(e) = https_error.take() {
                        return Err(e);
                    }
                }
                return Err(RegistryError::new(
                    registry,
                    Kind::Protocol,
                    format!("{url} answered {status}: this does not look like an OCI registry"),
                )
                .with_status(status.as_u16())
                .into());
            }
            if status == StatusCode::UNAUTHORIZED {
                if let Some(c) = r
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(auth::parse_challenge)
                {
                    self.challenges
                        .lock()
                        .expect("lock")
                        .insert(registry.to_string(), c);
                }
            }
            let found = Endpoint {
                base: format!("{scheme}://{}", api_host(registry)),
                verify,
            };
            self.endpoints
                .lock()
                .expect("lock")
                .insert(registry.to_string(), found.clone());
            return Ok(found);
        }
        Err(https_error.unwrap_or_else(|| {
            RegistryError::new(
                registry,
                Kind::Unreachable,
                format!("registry {registry} cannot be reached"),
            )
            .into()
        }))
    }

    fn credential(&self, registry: &str, repository: Option<&str>) -> Result<Option<Credential>> {
        let key = format!("{registry}/{}", repository.unwrap_or(""));
        if let Some(c) = self.credentials.lock().expect("lock").get(&key) {
            return Ok(c.clone());
        }
        let c = auth::lookup(registry, repository)?;
        self.credentials
            .lock()
            .expect("lock")
            .insert(key, c.clone());
        Ok(c)
    }

    /// Use this credential for a registry instead of the auth files (for `login`).
    pub fn set_credential(&self, registry: &str, credential: Credential) {
        let mut map = self.credentials.lock().expect("lock");
        map.retain(|k, _| !k.starts_with(&format!("{registry}/")));
        map.insert(format!("{registry}/"), Some(credential));
    }

    fn cached_auth(&self, registry: &str, scope: &Scope) -> Option<String> {
        let tokens = self.tokens.lock().expect("lock");
        let t = tokens
            .get(&(registry.to_string(), scope.key()))
            .or_else(|| tokens.get(&(registry.to_string(), String::new())))?;
        (t.expires > Instant::now()).then(|| t.header.clone())
    }

    /// Answer a challenge: get a Bearer token for `ask` (the scope the request needs with the
    /// scopes the challenge names), kept for requests of scope `cache_as`; or use Basic
    /// credentials.
    fn authenticate(
        &self,
        registry: &str,
        cache_as: &Scope,
        challenge: &Challenge,
        repository: Option<&str>,
    ) -> Result<()> {
        let ask = cache_as.merged(challenge.params.get("scope").map(String::as_str));
        let cred = self.credential(registry, repository)?;
        let denied = |what: &str, status: Option<StatusCode>| {
            let mut e = RegistryError::new(
                registry,
                Kind::Denied,
                format!("registry {registry} refused {what}"),
            )
            .with_hint(format!(
                "log in with `modelcar login {registry}` (or podman login); check the user, the password and access to the repository"
            ));
            if let Some(s) = status {
                e = e.with_status(s.as_u16());
            }
            Error::from(e)
        };
        match challenge.scheme.as_str() {
            "basic" => {
                let Some(Credential::Basic { username, password }) = cred else {
                    return Err(denied(
                        "anonymous access (it asks for a user and password)",
                        None,
                    ));
                };
                let header = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD
                        .encode(format!("{username}:{password}"))
                );
                self.tokens.lock().expect("lock").insert(
                    (registry.to_string(), String::new()),
                    Token {
                        header,
                        expires: Instant::now() + Duration::from_secs(24 * 3600),
                    },
                );
                Ok(())
            }
            "bearer" => {
                let realm = challenge.params.get("realm").ok_or_else(|| {
                    Error::from(RegistryError::new(
                        registry,
                        Kind::Protocol,
                        format!("registry {registry} sent a Bearer challenge without a realm"),
                    ))
                })?;
                let realm_url = self.check_realm(registry, realm)?;
                let token_host = authority(&realm_url);
                let service = challenge.params.get("service").cloned().unwrap_or_default();
                let verify = self.verify_tls(registry);
                let http = self.http(verify, Transfer::Small);
                let mut query: Vec<(&str, String)> = vec![("service", service.clone())];
                for s in &ask.scopes {
                    query.push(("scope", s.clone()));
                }
                let resp = match &cred {
                    Some(Credential::IdentityToken(t)) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_string()),
                            ("refresh_token", t.clone()),
                            ("service", service.clone()),
                            ("client_id", "modelcar".to_string()),
                            ("scope", ask.scopes.join(" ")),
                        ];
                        form.retain(|(_, v)| !v.is_empty());
                        http.post(realm_url.clone()).form(&form).send()
                    }
                    Some(Credential::Basic { username, password }) => http
                        .get(realm_url.clone())
                        .query(&query)
                        .basic_auth(username, Some(password))
                        .send(),
                    None => http.get(realm_url.clone()).query(&query).send(),
                }
                .map_err(|e| {
                    network_error(
                        &token_host,
                        &format!("asking for a token for {registry}"),
                        self.timeouts(),
                        e,
                    )
                })?;
                let status = resp.status();
                if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                    return Err(denied(
                        if cred.is_some() {
                            "the credentials"
                        } else {
                            "anonymous access"
                        },
                        Some(status),
                    ));
                }
                if !status.is_success() {
                    return Err(unexpected(
                        &format!("asking {token_host} for a token for {registry}"),
                        resp,
                    ));
                }
                let mut bytes = Vec::new();
                resp.take(limits::MAX_DOCUMENT)
                    .read_to_end(&mut bytes)
                    .map_err(|e| {
                        network_error(
                            &token_host,
                            &format!("reading a token for {registry}"),
                            self.timeouts(),
                            e,
                        )
                    })?;
                let protocol = |what: String| {
                    Error::from(RegistryError::new(&token_host, Kind::Protocol, what))
                };
                let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                    protocol(format!(
                        "token service {token_host} answered something that is not JSON: {e}"
                    ))
                })?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| protocol(format!("token service {token_host} sent no token")))?;
                let ttl = body
                    .get("expires_in")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(60)
                    .max(10);
                self.tokens.lock().expect("lock").insert(
                    (registry.to_string(), cache_as.key()),
                    Token {
                        header: format!("Bearer {token}"),
                        expires: Instant::now() + Duration::from_secs(ttl.saturating_sub(5)),
                    },
                );
                Ok(())
            }
            other => Err(RegistryError::new(
                registry,
                Kind::Refusing,
                format!(
                    "registry {registry} asks for {} authentication, which is not supported",
                    other.chars().take(40).collect::<String>()
                ),
            )
            .into()),
        }
    }

    /// A token realm must be an HTTPS URL, unless the registry itself is reached over plain
    /// HTTP or without verifying TLS: credentials never travel in clear text for a registry
    /// the user reaches over verified TLS.
    fn check_realm(&self, registry: &str, realm: &str) -> Result<Url> {
        let url = Url::parse(realm).map_err(|_| {
            Error::from(RegistryError::new(
                registry,
                Kind::Protocol,
                format!("registry {registry} sent a token realm that is not a URL"),
            ))
        })?;
        let plain_registry = self
            .known_endpoint(registry)
            .is_some_and(|e| e.base.starts_with("http://") || !e.verify);
        match url.scheme() {
            "https" => Ok(url),
            "http" if plain_registry => Ok(url),
            "http" => Err(RegistryError::new(
                registry,
                Kind::Refusing,
                format!(
                    "registry {registry} is reached over HTTPS but sends its token requests to {} over plain HTTP; modelcar does not send credentials there",
                    authority(&url)
                ),
            )
            .with_hint("ask the registry's operator to serve the token service over HTTPS; only for a registry used without TLS (--tls-verify=false) is a plain-HTTP realm accepted")
            .into()),
            other => Err(RegistryError::new(
                registry,
                Kind::Refusing,
                format!(
                    "registry {registry} sent a token realm with scheme {}, which is not supported",
                    other.chars().take(20).collect::<String>()
                ),
            )
            .into()),
        }
    }

    /// Run `op` again while it fails temporarily, up to the configured retries, waiting the
    /// backoff (or the registry's `Retry-After`, up to `--max-retry-wait`) between attempts.
    /// This is the only retry loop: code inside `op` sends with [`Client::send_attempt`].
    pub fn retrying<T>(&self, mut op: impl FnMut() -> Result<T>) -> Result<T> {
        let mut attempt = 0u32;
        loop {
            match op() {
                Err(e) if e.is_temporary() && attempt < self.opts.retries => {
                    let wait = self.wait_before_retry(attempt, e)?;
                    attempt += 1;
                    std::thread::sleep(wait);
                }
                Err(Error::Registry(r)) if r.is_temporary() && attempt > 0 => {
                    let n = attempt + 1;
                    return Err(r
                        .extend_message(&format!(" (gave up after {n} attempts)"))
                        .into());
                }
                r => return r,
            }
        }
    }

    fn wait_before_retry(&self, attempt: u32, e: Error) -> Result<Duration> {
        let backoff = self
            .opts
            .backoff
            .saturating_mul(1 << attempt.min(16))
            .min(Duration::from_secs(limits::MAX_BACKOFF_SECS));
        let Error::Registry(r) = e else {
            return Ok(backoff);
        };
        let wait = match r.retry_after {
            Some(asked) if asked > self.opts.max_retry_wait => {
                let max = self.opts.max_retry_wait.as_secs_f64();
                return Err(r
                    .with_kind(Kind::WaitTooLong)
                    .extend_message(&format!(
                        "; it asks to wait {} s before trying again, longer than the {max} s modelcar waits",
                        asked.as_secs()
                    ))
                    .with_hint("try again later, or allow a longer wait with --max-retry-wait")
                    .into());
            }
            Some(asked) => asked,
            None => backoff,
        };
        tracing::warn!("{r}; trying again in {:.1} s", wait.as_secs_f64());
        Ok(wait)
    }

    /// Send a request built by `make` (called again for each attempt), authenticating and
    /// retrying what fails temporarily. Returns the final response, whatever its status, except
    /// that 401 after authenticating, 429 and 5xx are errors. `what` says what the request is
    /// for, in messages ("fetching blob sha256:...").
    pub fn send(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        what: &str,
        transfer: Transfer,
        make: &dyn Fn(&Http, &str) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        self.retrying(|| self.send_attempt(registry, repository, scope, what, transfer, make))
    }

    /// One attempt of [`Client::send`] (with its authentication round trip), for callers that
    /// retry a larger operation with [`Client::retrying`] or resume it themselves.
    pub fn send_attempt(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        what: &str,
        transfer: Transfer,
        make: &dyn Fn(&Http, &str) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let endpoint = self.endpoint(registry)?;
        let http = self.http(endpoint.verify, transfer);
        let mut authenticated = false;
        loop {
            if !authenticated {
                authenticated = self.authenticate_ahead(registry, scope, repository)?;
            }
            let request =
                self.authorized(registry, scope, &endpoint.base, make(http, &endpoint.base)?)?;
            let resp = http
                .execute(request)
                .map_err(|e| network_error(registry, what, self.timeouts(), e))?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && !authenticated
                && self.answer_challenge(registry, scope, repository, &resp)?
            {
                authenticated = true;
                continue;
            }
            return judged(registry, repository, what, resp);
        }
    }

    /// Authenticate for `scope` before the first request, when no credential for it is kept
    /// and the registry's challenge is already known (saving the round trip of a 401): whether
    /// it did.
    fn authenticate_ahead(&self, registry: &str, scope: &Scope, repository: &str) -> Result<bool> {
        if self.cached_auth(registry, scope).is_some() {
            return Ok(false);
        }
        let known = self.challenges.lock().expect("lock").get(registry).cloned();
        match known {
            Some(c) => {
                self.authenticate(registry, scope, &c, Some(repository))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The request `rb` builds, with the registry's credentials if (and only if) it goes to
    /// the registry's own scheme, host and port: an upload location on another host, which
    /// the registry names, gets none.
    fn authorized(
        &self,
        registry: &str,
        scope: &Scope,
        base: &str,
        rb: RequestBuilder,
    ) -> Result<reqwest::blocking::Request> {
        let mut request = rb.build().map_err(|e| unusable_location(registry, e))?;
        if same_origin(request.url(), base) {
            if let Some(h) = self.cached_auth(registry, scope) {
                request
                    .headers_mut()
                    .insert(AUTHORIZATION, header_value(registry, h)?);
            }
        } else {
            tracing::debug!(
                "{registry}: no credentials sent to {}, another host",
                authority(request.url())
            );
        }
        Ok(request)
    }

    /// A request of `make` with everything needed to send it outside [`Client::send`] (for a
    /// streamed body, which cannot be replayed): authenticated for `scope` when it goes to the
    /// registry itself, through the upload client.
    pub fn prepare(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        make: &dyn Fn(&Http, &str) -> Result<RequestBuilder>,
    ) -> Result<(Http, reqwest::blocking::Request)> {
        let endpoint = self.endpoint(registry)?;
        self.authenticate_ahead(registry, scope, repository)?;
        let http = self.http(endpoint.verify, Transfer::Upload).clone();
        let request = self.authorized(
            registry,
            scope,
            &endpoint.base,
            make(&http, &endpoint.base)?,
        )?;
        Ok((http, request))
    }

    /// Authenticate for `scope` as a 401 answer's `WWW-Authenticate` challenge asks (kept for
    /// the registry's later requests): false when the answer has no challenge to answer.
    fn answer_challenge(
        &self,
        registry: &str,
        scope: &Scope,
        repository: &str,
        resp: &Response,
    ) -> Result<bool> {
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(auth::parse_challenge);
        let Some(c) = challenge else {
            return Ok(false);
        };
        self.challenges
            .lock()
            .expect("lock")
            .insert(registry.to_string(), c.clone());
        self.authenticate(registry, scope, &c, Some(repository))?;
        Ok(true)
    }

    /// Whether requests carrying blobs go through the uploader ([`Client::upload_attempt`]);
    /// not when a proxy is configured, which only reqwest reaches.
    pub fn direct_uploads(&self) -> bool {
        self.uploader.is_some()
    }

    /// One attempt at a request that carries a blob (`method` to the URL `url` makes from the
    /// registry's base URL, with `headers` and `body`), sent by the uploader
    /// (`src/registry/upload.rs`) rather than by reqwest, with the same authentication, rules
    /// on which origins get credentials, and error kinds as [`Client::send_attempt`]. `body` is
    /// called once per request sent (a 401 answer sends it again, authenticated).
    #[allow(clippy::too_many_arguments)]
    pub fn upload_attempt(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        what: &str,
        method: &str,
        url: &dyn Fn(&str) -> String,
        headers: &[(&str, String)],
        body: &dyn Fn() -> Result<UploadBody>,
    ) -> Result<Response> {
        let uploader = self.uploader.as_ref().ok_or_else(|| {
            Error::from(RegistryError::new(
                registry,
                Kind::Protocol,
                "uploads go through the proxy".to_string(),
            ))
        })?;
        let endpoint = self.endpoint(registry)?;
        let mut authenticated = false;
        loop {
            if !authenticated {
                authenticated = self.authenticate_ahead(registry, scope, repository)?;
            }
            let (parsed, all) = self.upload_target(
                registry,
                scope,
                &endpoint.base,
                &url(&endpoint.base),
                headers,
            )?;
            let request = upload::Request {
                method,
                url: &parsed,
                headers: &all,
            };
            let answer = uploader.send(endpoint.verify, &request, body()?.0);
            let resp = answered(registry, what, self.timeouts(), &parsed, answer)?;
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED
                && !authenticated
                && self.answer_challenge(registry, scope, repository, &resp)?
            {
                authenticated = true;
                continue;
            }
            return judged(registry, repository, what, resp);
        }
    }

    /// The URL of an upload request and its headers: `headers`, and the registry's
    /// credentials for `scope` only when `url` is on the registry's own origin (`base`).
    fn upload_target(
        &self,
        registry: &str,
        scope: &Scope,
        base: &str,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<(Url, Vec<(String, String)>)> {
        let parsed = Url::parse(url).map_err(|e| unusable_location(registry, e))?;
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        if same_origin(&parsed, base) {
            if let Some(h) = self.cached_auth(registry, scope) {
                let value = header_value(registry, h)?;
                let value = value.to_str().expect("a header value of visible ASCII");
                all.push(("Authorization".to_string(), value.to_string()));
            }
        } else {
            tracing::debug!(
                "{registry}: no credentials sent to {}, another host",
                authority(&parsed)
            );
        }
        Ok((parsed, all))
    }

    /// A request carrying a blob, made ready to be sent by [`PreparedUpload::send`] on
    /// another thread (a streamed body, which cannot be sent twice): authenticated for `scope`
    /// when `url` is on the registry's own origin. `None` when a proxy is configured.
    pub fn prepare_upload(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        method: &'static str,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Option<PreparedUpload>> {
        let Some(uploader) = self.uploader.clone() else {
            return Ok(None);
        };
        let endpoint = self.endpoint(registry)?;
        self.authenticate_ahead(registry, scope, repository)?;
        let (parsed, all) = self.upload_target(registry, scope, &endpoint.base, url, headers)?;
        Ok(Some(PreparedUpload {
            uploader,
            verify: endpoint.verify,
            registry: registry.to_string(),
            method,
            url: parsed,
            headers: all,
            timeouts: self.timeouts(),
        }))
    }

    /// The registry's base URL (`https://host:port`), once it answered.
    pub fn base_url(&self, registry: &str) -> Result<String> {
        Ok(self.endpoint(registry)?.base)
    }

    /// Check that the registry accepts the current credentials (for `login`).
    pub fn check_login(&self, registry: &str) -> Result<()> {
        self.endpoint(registry)?;
        // An authorized request to /v2/ must succeed: storing a Basic header proves nothing.
        let resp = self.send(
            registry,
            "",
            &Scope { scopes: vec![] },
            &format!("checking the login to {registry}"),
            Transfer::Small,
            &|http, base| Ok(http.get(format!("{base}/v2/"))),
        )?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(
                unexpected(&format!("checking the login to {registry}"), resp)
                    .with_hint("check the user name and password (or token)"),
            )
        }
    }
}

/// A registry's answer once authentication is settled: a 401 (refused credentials, or no
/// access to `repository`), 429 and 5xx are errors; anything else is the caller's to read.
fn judged(registry: &str, repository: &str, what: &str, resp: Response) -> Result<Response> {
    let status = resp.status();
    if status == StatusCode::UNAUTHORIZED {
        if repository.is_empty() {
            // A request to /v2/ itself (`login`), which only the credentials can fail.
            return Err(RegistryError::new(
                registry,
                Kind::Denied,
                format!("registry {registry} refused the credentials"),
            )
            .with_status(status.as_u16())
            .with_hint("check the user name and the password (or token)")
            .into());
        }
        let hint = format!(
            "log in with `modelcar login {registry}` and check your access to {repository}"
        );
        return Err(unexpected(what, resp).with_hint(hint));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return Err(unexpected(what, resp));
    }
    Ok(resp)
}

/// A request carrying a streamed blob, ready to send ([`Client::prepare_upload`]).
pub struct PreparedUpload {
    uploader: std::sync::Arc<upload::Connector>,
    verify: bool,
    registry: String,
    method: &'static str,
    url: Url,
    headers: Vec<(String, String)>,
    timeouts: Timeouts,
}

impl PreparedUpload {
    /// Send the request with `body`; one attempt. `what` says what it is for, in messages.
    pub fn send(self, what: &str, body: UploadBody) -> Result<Response> {
        let request = upload::Request {
            method: self.method,
            url: &self.url,
            headers: &self.headers,
        };
        let answer = self.uploader.send(self.verify, &request, body.0);
        answered(&self.registry, what, self.timeouts, &self.url, answer)
    }
}

/// A credential as a header value: visible ASCII only, so it cannot end the header it is in.
fn header_value(registry: &str, value: String) -> Result<reqwest::header::HeaderValue> {
    reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
        RegistryError::new(
            registry,
            Kind::Protocol,
            format!("the token for registry {registry} is not a valid header value"),
        )
        .into()
    })
}

/// A location (of an upload, a redirect) the registry named that is not a usable URL.
fn unusable_location(registry: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    RegistryError::new(
        registry,
        Kind::Protocol,
        format!("registry {registry} named a location that is not a usable URL"),
    )
    .with_source(e)
    .into()
}

/// The uploader's answer as a reqwest answer (what the rest of the client reads), or its
/// failure as a registry error worded as [`network_error`] words reqwest's.
fn answered(
    registry: &str,
    what: &str,
    timeouts: Timeouts,
    url: &Url,
    answer: std::result::Result<http::Response<Vec<u8>>, upload::Failure>,
) -> Result<Response> {
    let answer = match answer {
        Ok(a) => a,
        Err(upload::Failure::Connect(e)) => {
            return Err(network_error(
                registry,
                what,
                timeouts,
                upload::ConnectFailed(e),
            ))
        }
        Err(upload::Failure::Io(e)) => return Err(network_error(registry, what, timeouts, e)),
        Err(e @ (upload::Failure::Stalled | upload::Failure::Unanswered)) => {
            let waited = if matches!(e, upload::Failure::Stalled) {
                "took no bytes"
            } else {
                "took the whole body and sent no answer"
            };
            return Err(RegistryError::new(
                registry,
                Kind::TimedOut,
                format!(
                    "registry {registry} {waited} for {} s while {what}",
                    timeouts.read.as_secs_f64()
                ),
            )
            .with_hint(
                "the registry or the network stalled; try again later, or raise --read-timeout",
            )
            .into());
        }
    };
    let (parts, body) = answer.into_parts();
    let mut r = reqwest::ResponseBuilderExt::url(http::Response::builder(), url.clone())
        .status(parts.status)
        .body(body)
        .expect("a status and a URL make a valid answer");
    *r.headers_mut() = parts.headers;
    Ok(Response::from(r))
}

/// Turn an unexpected answer into a registry error naming the request, with the status, the
/// registry's error codes and messages, and its `Retry-After`.
pub fn unexpected(what: &str, resp: Response) -> Error {
    let registry = authority(resp.url());
    let status = resp.status();
    let after = retry_after(&resp);
    let mut body = Vec::new();
    // Whatever the answer's length, only its head is read; a broken body leaves the codes out.
    let _ = resp.take(limits::MAX_ERROR_BODY).read_to_end(&mut body);
    let codes = error_codes(&body);
    let detail = if codes.is_empty() {
        String::from_utf8_lossy(&body)
            .chars()
            .take(200)
            .collect::<String>()
    } else {
        codes
            .iter()
            .map(|c| format!("{}: {}", c.code, c.message))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let kind = kind_of(status, &codes);
    let message = format!(
        "{what}: registry {registry} answered {status}{}",
        if detail.trim().is_empty() {
            String::new()
        } else {
            format!(" ({})", detail.trim())
        }
    );
    let hint = match kind {
        Kind::Denied => Some(format!(
            "check that your account may do this; log in with `modelcar login {registry}`"
        )),
        Kind::TooManyRequests => Some("the registry limits requests; try again later".to_string()),
        Kind::Unavailable => {
            Some("the registry is failing on its side; try again later".to_string())
        }
        _ => None,
    };
    let mut e = RegistryError::new(registry, kind, message)
        .with_status(status.as_u16())
        .with_codes(codes)
        .with_retry_after(after);
    if let Some(h) = hint {
        e = e.with_hint(h);
    }
    e.into()
}

#[cfg(test)]
mod tests {

    #[test]
    fn docker_hubs_api_is_reached_at_registry_1() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("quay.io"), "quay.io");
        assert_eq!(api_host("127.0.0.1:5000"), "127.0.0.1:5000");
    }
    use super::*;

    fn client(retries: u32, max_wait: Duration) -> Client {
        Client::new(Options {
            retries,
            backoff: Duration::from_millis(1),
            max_retry_wait: max_wait,
            ..Default::default()
        })
        .unwrap()
    }

    fn failure(kind: Kind, after: Option<Duration>) -> Error {
        RegistryError::new("r.example", kind, "it failed".into())
            .with_retry_after(after)
            .into()
    }

    #[test]
    fn only_temporary_failures_are_retried_and_up_to_the_retries() {
        let c = client(3, Duration::from_secs(1));
        for (kind, calls) in [
            (Kind::Dropped, 4),
            (Kind::TimedOut, 4),
            (Kind::TooManyRequests, 4),
            (Kind::Unavailable, 4),
            (Kind::Denied, 1),
            (Kind::NotFound, 1),
            (Kind::Refused, 1),
            (Kind::Protocol, 1),
            (Kind::Unreachable, 1),
        ] {
            let mut n = 0;
            let r: Result<()> = c.retrying(|| {
                n += 1;
                Err(failure(kind, None))
            });
            assert_eq!(n, calls, "{kind:?}");
            assert_eq!(r.unwrap_err().registry().unwrap().kind, kind);
        }
        let mut n = 0;
        let r: Result<()> = c.retrying(|| {
            n += 1;
            Err(Error::corrupt("digest mismatch"))
        });
        assert!(r.is_err());
        assert_eq!(n, 1, "integrity failures are never retried");
    }

    #[test]
    fn a_retry_after_beyond_the_maximum_wait_ends_the_retries_at_once() {
        let c = client(5, Duration::from_millis(50));
        let mut n = 0;
        let r: Result<()> = c.retrying(|| {
            n += 1;
            Err(failure(
                Kind::TooManyRequests,
                Some(Duration::from_secs(3600)),
            ))
        });
        assert_eq!(n, 1);
        let e = r.unwrap_err();
        assert_eq!(e.registry().unwrap().kind, Kind::WaitTooLong);
        assert!(e.to_string().contains("3600 s"), "{e}");
        assert!(!e.is_temporary());
    }

    #[test]
    fn credentials_go_only_to_the_registrys_own_origin() {
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(same_origin(
            &url("https://r.example/v2/x/blobs/uploads/1"),
            "https://r.example"
        ));
        assert!(same_origin(
            &url("https://r.example:443/v2/"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &url("https://storage.example/upload"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &url("http://r.example/v2/"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &url("https://r.example:5000/v2/"),
            "https://r.example"
        ));
        assert!(!same_origin(
            &url("https://r.example.evil/v2/"),
            "https://r.example"
        ));
    }

    #[test]
    fn statuses_and_codes_decide_the_kind_of_failure() {
        let code = |c: &str| {
            vec![RegistryCode {
                code: c.into(),
                message: String::new(),
            }]
        };
        assert_eq!(
            kind_of(StatusCode::FORBIDDEN, &code("DENIED")),
            Kind::Denied
        );
        assert_eq!(
            kind_of(StatusCode::BAD_REQUEST, &code("DENIED")),
            Kind::Denied
        );
        assert_eq!(
            kind_of(StatusCode::NOT_FOUND, &code("BLOB_UNKNOWN")),
            Kind::NotFound
        );
        assert_eq!(
            kind_of(StatusCode::BAD_REQUEST, &code("MANIFEST_INVALID")),
            Kind::Refused
        );
        assert_eq!(
            kind_of(StatusCode::TOO_MANY_REQUESTS, &[]),
            Kind::TooManyRequests
        );
        assert_eq!(
            kind_of(StatusCode::FORBIDDEN, &code("TOOMANYREQUESTS")),
            Kind::TooManyRequests
        );
        assert_eq!(kind_of(StatusCode::BAD_GATEWAY, &[]), Kind::Unavailable);
        let body = br#"{"errors":[{"code":"DENIED","message":"no"},{"code":"X"}]}"#;
        assert_eq!(error_codes(body).len(), 2);
        assert_eq!(error_codes(b"not json"), vec![]);
    }

    #[test]
    fn the_scopes_a_challenge_names_are_asked_for_too() {
        let s = Scope::pull("a/b");
        assert_eq!(s.merged(None), s);
        let m = s.merged(Some("repository:a/b:pull repository:c/d:pull"));
        assert_eq!(m.scopes, vec!["repository:a/b:pull", "repository:c/d:pull"]);
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.8.9.1"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("quay.io"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }
}
