//! A token service for distribution's `auth: token` (the Docker token protocol): checks Basic
//! credentials and issues RS256 JWTs, signed with `openssl dgst`, whose `x5c` header carries the
//! signing certificate that the registry trusts through its `rootcertbundle`.
//!
//! It is honest: a wrong password gets 401 and no token; an anonymous request gets a token that
//! grants nothing (as Docker Hub and Harbor do for private repositories), so the registry
//! refuses it; a known user gets the actions asked for.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::json;

use super::cmd::{output, tool_ok_in};
use super::http::{error_body, query_pairs, respond, Head, Server};
use super::registries::Auth;

pub const SERVICE: &str = "modelcar-test-registry";
pub const ISSUER: &str = "modelcar-test-token-service";

/// What one request to the token service got.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The user who authenticated; `None` for an anonymous request.
    pub user: Option<String>,
    pub scopes: Vec<String>,
    /// 200 with a token, or 401 for bad credentials, 400 for a bad request.
    pub status: u16,
    /// The access granted, as `type:name:actions`.
    pub granted: Vec<String>,
}

struct Shared {
    users: Vec<(String, String)>,
    key: PathBuf,
    x5c: String,
    issued: Mutex<Vec<Issued>>,
    serial: AtomicU64,
}

pub struct TokenService {
    server: Server,
    /// The signing certificate, for the registry's `rootcertbundle`.
    pub cert: PathBuf,
    shared: Arc<Shared>,
}

impl TokenService {
    pub fn start(dir: &Path, users: &[(&str, &str)]) -> TokenService {
        std::fs::create_dir_all(dir).unwrap();
        tool_ok_in(
            dir,
            "openssl",
            [
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "signer.key",
                "-out",
                "signer.crt",
                "-days",
                "2",
                "-subj",
                "/CN=modelcar test token signer",
            ],
        );
        tool_ok_in(
            dir,
            "openssl",
            [
                "x509",
                "-in",
                "signer.crt",
                "-outform",
                "DER",
                "-out",
                "signer.der",
            ],
        );
        let der = std::fs::read(dir.join("signer.der")).unwrap();
        let shared = Arc::new(Shared {
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            key: dir.join("signer.key"),
            x5c: base64::engine::general_purpose::STANDARD.encode(der),
            issued: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let s = shared.clone();
        let server = Server::start(move |c| s.serve(c));
        TokenService {
            server,
            cert: dir.join("signer.crt"),
            shared,
        }
    }

    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.server.port)
    }

    /// How a registry trusting this service authenticates: distribution's `auth: token` with
    /// this realm and its signing certificate.
    pub fn auth(&self) -> Auth {
        Auth::Token {
            realm: self.realm(),
            service: SERVICE.into(),
            issuer: ISSUER.into(),
            root_cert_bundle: self.cert.clone(),
        }
    }

    pub fn issued(&self) -> Vec<Issued> {
        self.shared.issued.lock().unwrap().clone()
    }
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl Shared {
    fn serve(&self, client: TcpStream) {
        let Ok(read_half) = client.try_clone() else {
            return;
        };
        let mut r = BufReader::new(read_half);
        let mut w = client;
        while let Ok(Some(head)) = Head::read(&mut r) {
            if super::http::read_body(&mut r, &head).is_err() {
                break;
            }
            let (status, body) = self.answer(&head);
            let mut headers = vec![("Content-Type", "application/json".to_string())];
            if status == 401 {
                headers.push((
                    "WWW-Authenticate",
                    "Basic realm=\"modelcar test token service\"".to_string(),
                ));
            }
            if respond(&mut w, status, &headers, &body).is_err() || head.wants_close() {
                break;
            }
        }
        let _ = w.flush();
        let _ = w.shutdown(Shutdown::Both);
    }

    fn answer(&self, head: &Head) -> (u16, Vec<u8>) {
        let target = head.target();
        if head.method() != "GET" || !target.starts_with("/token") {
            return (404, error_body("NOT_FOUND", "only GET /token is served"));
        }
        let params = query_pairs(target);
        let scopes: Vec<String> = params
            .iter()
            .filter(|(k, _)| k == "scope")
            .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
            .filter(|s| !s.is_empty())
            .collect();
        let service = params
            .iter()
            .find(|(k, _)| k == "service")
            .map(|(_, v)| v.as_str());
        let mut record = Issued {
            user: None,
            scopes: scopes.clone(),
            status: 400,
            granted: Vec::new(),
        };
        let result = (|| {
            if service != Some(SERVICE) {
                return (400, error_body("UNSUPPORTED", "unknown service"));
            }
            if let Some(auth) = head.get("authorization") {
                let decoded = auth
                    .strip_prefix("Basic ")
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.trim())
                            .ok()
                    })
                    .and_then(|b| String::from_utf8(b).ok());
                let Some((user, password)) = decoded.as_deref().and_then(|t| t.split_once(':'))
                else {
                    return (401, error_body("UNAUTHORIZED", "malformed credentials"));
                };
                if !self.users.iter().any(|(u, p)| u == user && p == password) {
                    return (
                        401,
                        error_body("UNAUTHORIZED", "invalid username or password"),
                    );
                }
                record.user = Some(user.to_string());
            }
            // A known user gets what it asks for; an anonymous one gets nothing.
            let mut access = Vec::new();
            if record.user.is_some() {
                for s in &scopes {
                    let mut parts = s.rsplitn(2, ':');
                    let actions = parts.next().unwrap_or("");
                    let Some((kind, name)) = parts.next().and_then(|r| r.split_once(':')) else {
                        continue;
                    };
                    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
                    access.push(json!({"type": kind, "name": name, "actions": actions}));
                    record.granted.push(s.clone());
                }
            }
            match self.sign(record.user.as_deref().unwrap_or(""), access) {
                Ok(token) => (
                    200,
                    json!({"token": token, "access_token": token, "expires_in": 300})
                        .to_string()
                        .into_bytes(),
                ),
                Err(e) => (500, error_body("UNKNOWN", &e)),
            }
        })();
        record.status = result.0;
        self.issued.lock().unwrap().push(record);
        result
    }

    fn sign(&self, subject: &str, access: Vec<serde_json::Value>) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = json!({"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]});
        let claims = json!({
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("token-{}", self.serial.fetch_add(1, Ordering::SeqCst)),
            "access": access,
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let mut cmd = Command::new("openssl");
        cmd.args(["dgst", "-sha256", "-binary", "-sign"])
            .arg(&self.key);
        let out = output(cmd, Some(signing_input.as_bytes()));
        if !out.status.success() || out.stdout.is_empty() {
            return Err(format!(
                "openssl dgst failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(format!("{signing_input}.{}", b64url(&out.stdout)))
    }
}
