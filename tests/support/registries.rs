//! Real registries for the tests: Debian's `docker-registry` (the CNCF distribution registry)
//! on a free loopback port with its own storage directory, plain or TLS, anonymous, htpasswd
//! (Basic) or token authentication; killed when dropped, and restartable on the same port and
//! storage.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::cmd::tool_ok_in;
use super::files::{temp, walk};

pub const REGISTRY_BIN: &str = "docker-registry";

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A CA made for the test and a server certificate it signed for 127.0.0.1 and localhost.
pub struct Tls {
    pub ca_cert: PathBuf,
    /// A directory holding only the CA as `ca.crt` (for `--cert-dir`).
    pub cert_dir: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Tls {
    pub fn generate(dir: &Path) -> Tls {
        std::fs::create_dir_all(dir).unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend_from_slice(&ec);
        ca.extend_from_slice(&[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=modelcar test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        tool_ok_in(dir, "openssl", &ca);
        let mut csr = vec!["req"];
        csr.extend_from_slice(&ec);
        csr.extend_from_slice(&[
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        tool_ok_in(dir, "openssl", &csr);
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        tool_ok_in(
            dir,
            "openssl",
            [
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                "server.ext",
                "-out",
                "server.crt",
            ],
        );
        let cert_dir = dir.join("certs.d");
        std::fs::create_dir_all(&cert_dir).unwrap();
        std::fs::copy(dir.join("ca.pem"), cert_dir.join("ca.crt")).unwrap();
        Tls {
            ca_cert: dir.join("ca.pem"),
            cert_dir,
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

/// An htpasswd file with one bcrypt entry (apache2-utils' `htpasswd -B`).
pub fn htpasswd(dir: &Path, user: &str, password: &str) -> PathBuf {
    let line = tool_ok_in(dir, "htpasswd", ["-Bbn", user, password]);
    let path = dir.join("htpasswd");
    std::fs::write(&path, line.trim_end().to_string() + "\n").unwrap();
    path
}

/// How a registry authenticates clients.
pub enum Auth {
    Anonymous,
    Htpasswd(PathBuf),
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_cert_bundle: PathBuf,
    },
}

pub struct RegistryOptions {
    pub tls: Option<(PathBuf, PathBuf)>,
    pub auth: Auth,
}

/// A running `docker-registry serve`.
pub struct Registry {
    _dir: TempDir,
    pub port: u16,
    /// The filesystem driver's root directory.
    pub root: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Registry {
    /// Plain HTTP, no authentication.
    pub fn plain() -> Registry {
        Registry::start(RegistryOptions {
            tls: None,
            auth: Auth::Anonymous,
        })
    }

    pub fn start(opts: RegistryOptions) -> Registry {
        let dir = temp();
        let root = dir.path().join("storage");
        std::fs::create_dir_all(&root).unwrap();
        let mut r = Registry {
            log: dir.path().join("registry.log"),
            config: dir.path().join("config.yml"),
            port: 0,
            root,
            child: None,
            _dir: dir,
        };
        let mut last = String::new();
        for _ in 0..5 {
            r.port = free_port();
            std::fs::write(&r.config, config_text(r.port, &r.root, &opts)).unwrap();
            match r.spawn() {
                Ok(()) => return r,
                Err(e) => {
                    last = e;
                    r.kill();
                }
            }
        }
        panic!("the registry did not start: {last}");
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .map_err(|e| {
                format!("cannot run {REGISTRY_BIN}: {e} (apt-get install docker-registry)")
            })?;
        self.child = Some(child);
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return Err(format!("it exited with {status}: {}", self.log()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                // Still ours (not another process that took the port)?
                std::thread::sleep(Duration::from_millis(50));
                if self.child.as_mut().unwrap().try_wait().unwrap().is_none() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Err(format!("no answer on port {}: {}", self.port, self.log()))
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.port).into()
    }

    /// Kill the registry at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same storage.
    pub fn restart(&mut self) {
        self.kill();
        let mut last = String::new();
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => {
                    last = e;
                    self.kill();
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
        panic!("the registry did not restart on port {}: {last}", self.port);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The file holding a blob's bytes in the filesystem driver's layout.
    pub fn blob_data(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.root
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Bytes held by uploads in progress, over all repositories.
    pub fn upload_bytes(&self) -> u64 {
        let repositories = self.root.join("docker/registry/v2/repositories");
        let mut total = 0;
        walk(&repositories, &mut |path, meta| {
            let in_uploads = path
                .strip_prefix(&repositories)
                .is_ok_and(|rel| rel.components().any(|c| c.as_os_str() == "_uploads"));
            if meta.is_file() && in_uploads && path.file_name().is_some_and(|n| n == "data") {
                total += meta.len();
            }
            true
        });
        total
    }

    /// How many blobs the registry holds complete.
    pub fn blob_count(&self) -> usize {
        let mut n = 0;
        walk(
            &self.root.join("docker/registry/v2/blobs/sha256"),
            &mut |path, meta| {
                n += usize::from(meta.is_file() && path.file_name().is_some_and(|f| f == "data"));
                true
            },
        );
        n
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn config_text(port: u16, root: &Path, opts: &RegistryOptions) -> String {
    let mut http = format!(
        "http:\n  addr: 127.0.0.1:{port}\n  secret: modelcar-registry-tests\n  headers:\n    X-Content-Type-Options: [nosniff]\n"
    );
    if let Some((cert, key)) = &opts.tls {
        http.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ));
    }
    let auth = match &opts.auth {
        Auth::Anonymous => String::new(),
        Auth::Htpasswd(file) => format!(
            "auth:\n  htpasswd:\n    realm: modelcar-tests\n    path: {}\n",
            file.display()
        ),
        Auth::Token {
            realm,
            service,
            issuer,
            root_cert_bundle,
        } => format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
            root_cert_bundle.display()
        ),
    };
    format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\n{http}{auth}",
        root.display()
    )
}
