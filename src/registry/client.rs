//! The HTTP side of the distribution API: endpoints, authentication, retries.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::{Client as Http, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::StatusCode;

use super::auth::{self, Challenge, Credential};
use crate::error::{io_err, Error, Result};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct Options {
    /// `Some(false)` skips TLS verification and allows plain HTTP for every registry.
    pub tls_verify: Option<bool>,
    /// Registries (host[:port]) for which TLS is not verified (from the project file).
    pub insecure_registries: Vec<String>,
    /// A directory of `*.crt` (PEM) files trusted in addition to the system's roots.
    pub cert_dir: Option<PathBuf>,
    /// Attempts after the first for a failing request.
    pub retries: u32,
    /// First backoff delay; doubled after each attempt.
    pub backoff: Duration,
    /// Blobs transferred at once.
    pub jobs: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls_verify: None,
            insecure_registries: Vec::new(),
            cert_dir: None,
            retries: 5,
            backoff: Duration::from_millis(250),
            jobs: 4,
        }
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
}

struct Token {
    header: String,
    expires: Instant,
}

/// A client for any number of registries.
pub struct Client {
    secure: Http,
    insecure: Http,
    opts: Options,
    /// Scheme and whether to verify TLS, per registry, once known.
    endpoints: Mutex<HashMap<String, (&'static str, bool)>>,
    challenges: Mutex<HashMap<String, Challenge>>,
    tokens: Mutex<HashMap<(String, String), Token>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
    ping: Mutex<()>,
}

fn http_client(verify: bool, opts: &Options) -> Result<Http> {
    let mut b = Http::builder()
        .user_agent(concat!("modelcar/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .timeout(None::<Duration>)
        .tcp_keepalive(Duration::from_secs(30))
        .pool_idle_timeout(Duration::from_secs(60));
    if !verify {
        b = b.danger_accept_invalid_certs(true);
    }
    if let Some(dir) = &opts.cert_dir {
        let entries =
            std::fs::read_dir(dir).map_err(io_err("read the certificate directory", dir))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "crt" || x == "pem") {
                let pem = std::fs::read(&p).map_err(io_err("read certificate", &p))?;
                for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                    Error::invalid(format!("{} is not a PEM certificate: {e}", p.display()))
                })? {
                    b = b.add_root_certificate(cert);
                }
            }
        }
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

fn transport_error(registry: &str, e: &reqwest::Error) -> Error {
    let mut msg = format!("cannot reach registry {registry}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    if let Some((what, hint)) = certificate_problem(&msg) {
        return Error::Unsupported {
            what: format!("the TLS certificate of registry {registry} {what}"),
            hint: Some(hint.into()),
        };
    }
    Error::Unsupported {
        what: msg,
        hint: Some("check the address and your network; for a registry with a private CA pass --cert-dir, for one without TLS --tls-verify=false".into()),
    }
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

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

impl Client {
    pub fn new(opts: Options) -> Result<Client> {
        Ok(Client {
            secure: http_client(true, &opts)?,
            insecure: http_client(false, &opts)?,
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

    fn verify_tls(&self, registry: &str) -> bool {
        self.opts.tls_verify != Some(false)
            && !self.opts.insecure_registries.iter().any(|r| r == registry)
    }

    /// Find scheme and TLS mode for a registry by pinging `/v2/`; remembers its challenge.
    fn known_endpoint(&self, registry: &str) -> Option<(&Http, String)> {
        let (scheme, verify) = self
            .endpoints
            .lock()
            .expect("lock")
            .get(registry)
            .copied()?;
        let http = if verify { &self.secure } else { &self.insecure };
        Some((http, format!("{scheme}://{registry}")))
    }

    fn endpoint(&self, registry: &str) -> Result<(&Http, String)> {
        if let Some(found) = self.known_endpoint(registry) {
            return Ok(found);
        }
        // One ping per registry, however many transfers start at once.
        let _pinging = self.ping.lock().expect("lock");
        if let Some(found) = self.known_endpoint(registry) {
            return Ok(found);
        }
        let verify = self.verify_tls(registry);
        let http = if verify { &self.secure } else { &self.insecure };
        let plain_ok = !verify || is_loopback(registry);
        let mut https_error = None;
        for scheme in ["https", "http"] {
            if scheme == "http" && !plain_ok {
                break;
            }
            let url = format!("{scheme}://{registry}/v2/");
            let mut attempt = 0;
            let resp = loop {
                match http.get(&url).send() {
                    Ok(r) if retryable(r.status()) && attempt < self.opts.retries => {
                        self.sleep_before_retry(attempt, Some(&r));
                        attempt += 1;
                    }
                    other => break other,
                }
            };
            let r = match resp {
                Ok(r) => r,
                Err(e) => {
                    if scheme == "https" {
                        https_error = Some(transport_error(registry, &e));
                    }
                    continue;
                }
            };
            let status = r.status();
            let speaks_distribution = r.headers().contains_key("docker-distribution-api-version");
            if !(status.is_success() || status == StatusCode::UNAUTHORIZED || speaks_distribution) {
                // Not a registry answering (for example a TLS port answering plain HTTP with 400):
                // the HTTPS error, if any, is the one that tells the user what is wrong.
                if scheme == "http" {
                    if let Some(e) = https_error.take() {
                        return Err(e);
                    }
                }
                return Err(Error::corrupt(format!(
                    "{url} answered {status}: this does not look like an OCI registry"
                )));
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
            self.endpoints.lock().expect("lock").insert(
                registry.to_string(),
                (if scheme == "https" { "https" } else { "http" }, verify),
            );
            return Ok((http, format!("{scheme}://{registry}")));
        }
        Err(https_error
            .unwrap_or_else(|| Error::corrupt(format!("registry {registry} cannot be reached"))))
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

    /// Answer a challenge: get a Bearer token for the scope, or use Basic credentials.
    fn authenticate(
        &self,
        registry: &str,
        scope: &Scope,
        challenge: &Challenge,
        repository: Option<&str>,
    ) -> Result<()> {
        let cred = self.credential(registry, repository)?;
        let refused = |what: &str| {
            Error::Invalid {
            what: format!("registry {registry} refused {what}"),
            hint: Some(format!(
                "log in with `modelcar login {registry}` (or podman login); check the user, the password and access to the repository"
            )),
        }
        };
        match challenge.scheme.as_str() {
            "basic" => {
                let Some(Credential::Basic { username, password }) = cred else {
                    return Err(refused(
                        "anonymous access (it asks for a user and password)",
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
                    Error::corrupt(format!(
                        "registry {registry} sent a Bearer challenge without a realm"
                    ))
                })?;
                let service = challenge.params.get("service").cloned().unwrap_or_default();
                let http = if self.verify_tls(registry) {
                    &self.secure
                } else {
                    &self.insecure
                };
                let mut query: Vec<(&str, String)> = vec![("service", service.clone())];
                for s in &scope.scopes {
                    query.push(("scope", s.clone()));
                }
                let resp = match &cred {
                    Some(Credential::IdentityToken(t)) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_string()),
                            ("refresh_token", t.clone()),
                            ("service", service.clone()),
                            ("client_id", "modelcar".to_string()),
                            ("scope", scope.scopes.join(" ")),
                        ];
                        form.retain(|(_, v)| !v.is_empty());
                        http.post(realm).form(&form).send()
                    }
                    Some(Credential::Basic { username, password }) => http
                        .get(realm)
                        .query(&query)
                        .basic_auth(username, Some(password))
                        .send(),
                    None => http.get(realm).query(&query).send(),
                }
                .map_err(|e| transport_error(realm, &e))?;
                if resp.status() == StatusCode::UNAUTHORIZED
                    || resp.status() == StatusCode::FORBIDDEN
                {
                    return Err(refused(if cred.is_some() {
                        "the credentials"
                    } else {
                        "anonymous access"
                    }));
                }
                if !resp.status().is_success() {
                    return Err(Error::corrupt(format!(
                        "token service {realm} answered {}",
                        resp.status()
                    )));
                }
                let body: serde_json::Value = resp.json().map_err(|e| {
                    Error::corrupt(format!(
                        "token service {realm} answered something that is not JSON: {e}"
                    ))
                })?;
                let token = body
                    .get("token")
                    .or_else(|| body.get("access_token"))
                    .and_then(|v| v.as_str())
                    .ok_or_else(|| {
                        Error::corrupt(format!("token service {realm} sent no token"))
                    })?;
                let ttl = body
                    .get("expires_in")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(60)
                    .max(10);
                self.tokens.lock().expect("lock").insert(
                    (registry.to_string(), scope.key()),
                    Token {
                        header: format!("Bearer {token}"),
                        expires: Instant::now() + Duration::from_secs(ttl.saturating_sub(5)),
                    },
                );
                Ok(())
            }
            other => Err(Error::Unsupported {
                what: format!(
                    "registry {registry} asks for {other} authentication, which is not supported"
                ),
                hint: None,
            }),
        }
    }

    fn sleep_before_retry(&self, attempt: u32, resp: Option<&Response>) {
        let after = resp
            .and_then(|r| r.headers().get(RETRY_AFTER))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(120)));
        let backoff = self.opts.backoff.saturating_mul(1 << attempt.min(8));
        std::thread::sleep(after.unwrap_or(backoff));
    }

    /// Send a request built by `make` (called again for each attempt), authenticating and
    /// retrying as needed. Returns the final response whatever its status, except that a 401
    /// after authenticating is an error.
    pub fn send(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        make: &dyn Fn(&Http, &str) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        self.send_retrying(registry, repository, scope, make, true)
    }

    /// [`Client::send`] without retrying a request whose connection dropped (its body may have
    /// reached the registry in part: the caller asks the registry what it has instead).
    pub fn send_once(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        make: &dyn Fn(&Http, &str) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        self.send_retrying(registry, repository, scope, make, false)
    }

    fn send_retrying(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
        make: &dyn Fn(&Http, &str) -> Result<RequestBuilder>,
        retry_dropped: bool,
    ) -> Result<Response> {
        let mut authenticated = false;
        let mut attempt = 0;
        loop {
            let (http, base) = self.endpoint(registry)?;
            if !authenticated {
                let known = self.challenges.lock().expect("lock").get(registry).cloned();
                if let (Some(c), None) = (known, self.cached_auth(registry, scope)) {
                    self.authenticate(registry, scope, &c, Some(repository))?;
                    authenticated = true;
                }
            }
            let mut rb = make(http, &base)?;
            if let Some(h) = self.cached_auth(registry, scope) {
                rb = rb.header(AUTHORIZATION, h);
            }
            match rb.send() {
                Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => {
                    let challenge = resp
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(auth::parse_challenge);
                    match challenge {
                        Some(c) if !authenticated => {
                            self.challenges.lock().expect("lock").insert(registry.to_string(), c.clone());
                            self.authenticate(registry, scope, &c, Some(repository))?;
                            authenticated = true;
                        }
                        // No repository: a request to /v2/ itself (`login`), which only
                        // the credentials can fail.
                        _ if repository.is_empty() => {
                            return Err(Error::Invalid {
                                what: format!("registry {registry} refused the credentials"),
                                hint: Some("check the user name and the password (or token)".into()),
                            })
                        }
                        _ => {
                            return Err(Error::Invalid {
                                what: format!("registry {registry} refused access to {repository}"),
                                hint: Some(format!("log in with `modelcar login {registry}` and check your access to {repository}")),
                            })
                        }
                    }
                }
                Ok(resp) if retryable(resp.status()) && attempt < self.opts.retries => {
                    tracing::info!("{registry}: {} ; retrying", resp.status());
                    self.sleep_before_retry(attempt, Some(&resp));
                    attempt += 1;
                }
                Ok(resp) => return Ok(resp),
                Err(e) if retry_dropped && attempt < self.opts.retries && !e.is_builder() => {
                    tracing::info!("{registry}: {e}; retrying");
                    self.sleep_before_retry(attempt, None);
                    attempt += 1;
                }
                Err(e) => return Err(transport_error(registry, &e)),
            }
        }
    }

    /// Everything needed to send one request outside [`Client::send`] (for a streamed body,
    /// which cannot be replayed): the HTTP client, the base URL and the authorization header,
    /// after authenticating for `scope`.
    pub fn prepare(
        &self,
        registry: &str,
        repository: &str,
        scope: &Scope,
    ) -> Result<(Http, String, Option<String>)> {
        let (http, base) = self.endpoint(registry)?;
        let (http, base) = (http.clone(), base);
        if self.cached_auth(registry, scope).is_none() {
            let known = self.challenges.lock().expect("lock").get(registry).cloned();
            if let Some(c) = known {
                self.authenticate(registry, scope, &c, Some(repository))?;
            }
        }
        Ok((http, base, self.cached_auth(registry, scope)))
    }

    /// Check that the registry accepts the current credentials (for `login`).
    pub fn check_login(&self, registry: &str) -> Result<()> {
        self.endpoint(registry)?;
        // An authorized request to /v2/ must succeed: storing a Basic header proves nothing.
        let resp = self.send(registry, "", &Scope { scopes: vec![] }, &|http, base| {
            Ok(http.get(format!("{base}/v2/")))
        })?;
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else if status == StatusCode::FORBIDDEN {
            Err(Error::Invalid {
                what: format!("registry {registry} refused the credentials"),
                hint: Some("check the user name and password (or token)".into()),
            })
        } else {
            Err(unexpected(
                &format!("checking the login to {registry}"),
                resp,
            ))
        }
    }
}

/// Turn an unexpected response into an error naming the request.
pub fn unexpected(what: &str, resp: Response) -> Error {
    let status = resp.status();
    let body = resp.text().unwrap_or_default();
    let detail: String = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("errors").cloned())
        .and_then(|e| e.as_array().cloned())
        .map(|errs| {
            errs.iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.get("code").and_then(|c| c.as_str()).unwrap_or("?"),
                        e.get("message").and_then(|c| c.as_str()).unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    Error::corrupt(format!(
        "{what}: the registry answered {status}{}",
        if detail.is_empty() {
            String::new()
        } else {
            format!(" ({detail})")
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

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
