//! Running modelcar and skopeo hermetically: a temporary HOME, XDG_RUNTIME_DIR, auth file,
//! working directory (no modelcar.toml) and store for each test, and no inherited proxy or
//! credential settings from the machine.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use tempfile::TempDir;

pub const MODELCAR: &str = env!("CARGO_BIN_EXE_modelcar");
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// An example model directory of the repository (`sklearn`, `xgboost`, `lightgbm`).
pub fn example_model(name: &str) -> PathBuf {
    Path::new(REPO).join("models/mlserver").join(name)
}

/// What a command did.
pub struct Outcome {
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    fn from_output(cmdline: String, out: Output) -> Outcome {
        Outcome {
            cmdline,
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn describe(&self) -> String {
        format!(
            "`{}` exited with {}\n--- stdout\n{}\n--- stderr\n{}",
            self.cmdline, self.status, self.stdout, self.stderr
        )
    }

    /// Panic unless the command succeeded.
    #[track_caller]
    pub fn success(self) -> Outcome {
        assert!(
            self.status.success(),
            "expected success: {}",
            self.describe()
        );
        self
    }

    /// Panic unless the command failed (with an ordinary error, not a crash).
    #[track_caller]
    pub fn failure(self) -> Outcome {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected an exit status of 1: {}",
            self.describe()
        );
        assert!(
            !self.stderr.contains("panicked"),
            "it panicked: {}",
            self.describe()
        );
        self
    }

    /// Panic unless standard error contains every one of `needles`.
    #[track_caller]
    pub fn stderr_has(self, needles: &[&str]) -> Outcome {
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "expected `{n}` on standard error: {}",
                self.describe()
            );
        }
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }

    /// Both streams, for checks that something never appears.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A private environment for modelcar and skopeo runs.
pub struct Env {
    pub dir: TempDir,
    pub home: PathBuf,
    pub runtime: PathBuf,
    pub auth_file: PathBuf,
    pub store: PathBuf,
    pub cwd: PathBuf,
    policy: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("modelcar-registry-test-")
            .tempdir()
            .expect("temporary directory");
        let p = dir.path().to_path_buf();
        let home = p.join("home");
        let runtime = p.join("run");
        let cwd = p.join("work");
        for d in [&home, &runtime, &cwd] {
            std::fs::create_dir_all(d).unwrap();
        }
        let policy = p.join("policy.json");
        std::fs::write(
            &policy,
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        Env {
            auth_file: p.join("auth.json"),
            store: p.join("store"),
            home,
            runtime,
            cwd,
            policy,
            dir,
        }
    }

    /// The same environment with another store (shared fixtures).
    pub fn with_store(mut self, store: &Path) -> Env {
        self.store = store.to_path_buf();
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn base_command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("TMPDIR", self.dir.path())
            .env("LANG", "C.UTF-8")
            .current_dir(&self.cwd);
        c
    }

    fn modelcar_command(&self, args: &[&str]) -> Command {
        let mut c = self.base_command(MODELCAR);
        c.env("REGISTRY_AUTH_FILE", &self.auth_file)
            .env("MODELCAR_STORE", &self.store)
            .args(args);
        c
    }

    fn run(mut c: Command, stdin: Option<&str>) -> Outcome {
        let cmdline = std::iter::once(c.get_program())
            .chain(c.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        c.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {cmdline}: {e}"));
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        Outcome::from_output(cmdline, out)
    }

    /// Run modelcar.
    pub fn modelcar(&self, args: &[&str]) -> Outcome {
        Env::run(self.modelcar_command(args), None)
    }

    /// Run modelcar with text on standard input.
    pub fn modelcar_stdin(&self, args: &[&str], input: &str) -> Outcome {
        Env::run(self.modelcar_command(args), Some(input))
    }

    /// Start modelcar in the background (output captured).
    pub fn spawn_modelcar(&self, args: &[&str]) -> Child {
        self.modelcar_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start modelcar")
    }

    /// Run skopeo with a permissive policy and no credentials but those passed explicitly.
    pub fn skopeo(&self, args: &[&str]) -> Outcome {
        let mut c = self.base_command("skopeo");
        c.env("REGISTRY_AUTH_FILE", self.path("skopeo-auth.json"))
            .arg("--policy")
            .arg(&self.policy)
            .args(args);
        Env::run(c, None)
    }

    /// `skopeo inspect --raw` of a plain-HTTP registry reference, parsed.
    pub fn skopeo_raw(&self, reference: &str) -> serde_json::Value {
        let out = self
            .skopeo(&[
                "inspect",
                "--raw",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ])
            .success();
        serde_json::from_str(&out.stdout).expect("manifest JSON")
    }

    /// The digest skopeo reports for a plain-HTTP registry reference.
    pub fn skopeo_digest(&self, reference: &str) -> String {
        let out = self
            .skopeo(&[
                "inspect",
                "--tls-verify=false",
                &format!("docker://{reference}"),
            ])
            .success();
        out.json()["Digest"].as_str().expect("Digest").to_string()
    }

    /// Build an image from a model directory into this environment's store; returns its digest.
    pub fn build(&self, models: &Path, tag: &str, base: &str, extra: &[&str]) -> String {
        let models = models.to_str().unwrap();
        let mut args = vec![
            "build", "--models", models, "--tag", tag, "--base", base, "-q",
        ];
        args.extend_from_slice(extra);
        let out = self.modelcar(&args).success();
        out.stdout
            .trim()
            .rsplit_once('@')
            .map(|(_, d)| d.to_string())
            .unwrap_or_else(|| panic!("no digest in {:?}", out.stdout))
    }

    /// The blob files of this environment's store, by `sha256:` digest.
    pub fn store_blobs(&self) -> Vec<String> {
        let dir = self.store.join("blobs/sha256");
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|rd| {
                rd.flatten()
                    .map(|e| format!("sha256:{}", e.file_name().to_string_lossy()))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}
