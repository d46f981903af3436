//! Running programs from the tests: modelcar (with a store of the test's own, in the repository
//! root, with none of the caller's modelcar settings) and the external tools that check its
//! output. A run is captured as an [`Outcome`]; a program that is not installed fails the test,
//! never skips it.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use serde_json::Value;

use super::files::{chmod, temp};
use super::fixtures::repo_root;

/// The modelcar binary under test.
pub const MODELCAR: &str = env!("CARGO_BIN_EXE_modelcar");

/// Environment variables modelcar reads; cleared so that the caller's environment cannot change
/// what a test sees.
const MODELCAR_ENV: [&str; 8] = [
    "MODELCAR_STORE",
    "MODELCAR_LOG",
    "REGISTRY",
    "VERSION",
    "BASE_IMAGE",
    "SOURCE_DATE_EPOCH",
    "XDG_DATA_HOME",
    "REGISTRY_AUTH_FILE",
];

/// The command line of `cmd`, for messages: the program's file name and the arguments.
pub fn command_line(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program());
    std::iter::once(program.file_name().unwrap_or(program.as_os_str()))
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Start `cmd` with its standard output and error captured, and its standard input piped (for
/// `stdin`) or closed.
pub fn spawn(cmd: &mut Command, stdin: bool) -> Child {
    cmd.stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{}` is not installed, and this test needs it \
             (scripts/test-deps.sh installs what the tests need): {e}",
            cmd.get_program().to_string_lossy()
        ),
        Err(e) => panic!("cannot run {}: {e}", command_line(cmd)),
    }
}

/// Run `cmd` to its end with its output captured, with `input` on its standard input (closed
/// when `None`).
pub fn output(mut cmd: Command, input: Option<&[u8]>) -> Output {
    let mut child = spawn(&mut cmd, input.is_some());
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input)
            .unwrap_or_else(|e| panic!("writing to {}: {e}", command_line(&cmd)));
    }
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {}: {e}", command_line(&cmd)))
}

/// What a command did.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
}

/// Run `cmd` (see [`output`]).
pub fn run(cmd: Command, input: Option<&[u8]>) -> Outcome {
    let command = command_line(&cmd);
    Outcome::from_output(command, output(cmd, input))
}

/// Wait for a child started by [`Modelcar::spawn`].
pub fn wait(child: Child, command: String) -> Outcome {
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {command}: {e}"));
    Outcome::from_output(command, out)
}

impl Outcome {
    fn from_output(command: String, o: Output) -> Outcome {
        Outcome {
            status: o.status,
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            command,
        }
    }

    /// Assert success and return self.
    #[track_caller]
    pub fn success(self) -> Outcome {
        assert!(
            self.status.success(),
            "`{}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Assert a failure reported as modelcar reports errors (`error: ...` on stderr, nothing
    /// on stdout, no panic, the command's exit code for an error: 2 for `verify`, whose 1 means
    /// a failed check, else 1) and return self.
    #[track_caller]
    pub fn failure(self) -> Outcome {
        let code = if self.command.split_whitespace().any(|w| w == "verify") {
            2
        } else {
            1
        };
        assert_eq!(
            self.status.code(),
            Some(code),
            "`{}` should fail with exit code {code} ({}):\nstdout:\n{}\nstderr:\n{}",
            self.command,
            self.status,
            self.stdout,
            self.stderr
        );
        assert!(
            self.stderr.contains("error: "),
            "`{}`: no `error:` line on stderr:\n{}",
            self.command,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "`{}` panicked:\n{}",
            self.command,
            self.stderr
        );
        assert!(
            self.stdout.trim().is_empty(),
            "`{}` failed but printed a result:\n{}",
            self.command,
            self.stdout
        );
        self
    }

    /// Assert that stderr contains every one of `parts`.
    #[track_caller]
    pub fn stderr_has(self, parts: &[&str]) -> Outcome {
        for p in parts {
            assert!(
                self.stderr.contains(p),
                "`{}`: stderr should mention `{p}`:\n{}",
                self.command,
                self.stderr
            );
        }
        self
    }

    /// Standard output as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!("`{}` printed no JSON ({e}):\n{}", self.command, self.stdout)
        })
    }

    /// Both streams, for checks that something never appears.
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }

    /// The `REF@sha256:...` lines a build prints, as (reference, digest).
    #[track_caller]
    pub fn built(&self) -> Vec<(String, String)> {
        self.stdout
            .lines()
            .map(|l| {
                let (r, d) = l
                    .rsplit_once('@')
                    .unwrap_or_else(|| panic!("not REF@DIGEST: {l:?} in\n{}", self.stdout));
                assert!(
                    d.starts_with("sha256:") && d.len() == 71,
                    "not a digest: {d:?}"
                );
                (r.to_string(), d.to_string())
            })
            .collect()
    }

    /// The digest of the one image a build printed.
    #[track_caller]
    pub fn digest(&self) -> String {
        let built = self.built();
        assert_eq!(built.len(), 1, "one image expected:\n{}", self.stdout);
        built[0].1.clone()
    }
}

/// The digest of `reference` among the (reference, digest) pairs of [`Outcome::built`].
#[track_caller]
pub fn digest_of(built: &[(String, String)], reference: &str) -> String {
    built
        .iter()
        .find(|(r, _)| r == reference)
        .unwrap_or_else(|| panic!("{reference} not in {built:?}"))
        .1
        .clone()
}

// ---------------------------------------------------------------------------------------------
// modelcar

/// A modelcar command line being put together.
pub struct Modelcar {
    cmd: Command,
}

/// `modelcar --store STORE`, run in the repository root without the caller's modelcar settings.
pub fn modelcar(store: &Path) -> Modelcar {
    let mut cmd = Command::new(MODELCAR);
    cmd.current_dir(repo_root());
    for k in MODELCAR_ENV {
        cmd.env_remove(k);
    }
    cmd.arg("--store").arg(store);
    Modelcar::new(cmd)
}

impl Modelcar {
    /// A command line starting from `cmd`, a command of the modelcar binary.
    pub fn new(cmd: Command) -> Modelcar {
        Modelcar { cmd }
    }

    pub fn arg(mut self, a: impl AsRef<OsStr>) -> Self {
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// `build --models MODELS --tag TAG --base BASE`.
    pub fn build(self, models: &Path, tag: &str, base: &str) -> Self {
        self.args(["build", "--models"])
            .arg(models)
            .args(["--tag", tag, "--base", base])
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// Run [`Modelcar::build`] with `extra` flags, which must succeed; the digest of the one
    /// image built.
    #[track_caller]
    pub fn build_one(self, models: &Path, tag: &str, base: &str, extra: &[&str]) -> String {
        self.build(models, tag, base)
            .args(extra)
            .run()
            .success()
            .digest()
    }

    /// The command, for callers that run it another way (for example under strace).
    pub fn command(self) -> Command {
        self.cmd
    }

    pub fn run(self) -> Outcome {
        run(self.cmd, None)
    }

    /// Run with `input` on standard input.
    pub fn run_with_input(self, input: &str) -> Outcome {
        run(self.cmd, Some(input.as_bytes()))
    }

    /// Run under `/usr/bin/time`, which reports the peak resident memory of the run; the outcome,
    /// the peak in bytes and the time taken.
    pub fn run_measured(self) -> (Outcome, u64, std::time::Duration) {
        let report = tempfile::NamedTempFile::new().expect("a temporary file");
        let mut timed = Command::new("/usr/bin/time");
        timed
            .args(["-f", "%M", "-o"])
            .arg(report.path())
            .arg(self.cmd.get_program())
            .args(self.cmd.get_args());
        for (k, v) in self.cmd.get_envs() {
            match v {
                Some(v) => timed.env(k, v),
                None => timed.env_remove(k),
            };
        }
        if let Some(dir) = self.cmd.get_current_dir() {
            timed.current_dir(dir);
        }
        let command = command_line(&self.cmd);
        let start = std::time::Instant::now();
        let out = output(timed, None);
        let took = start.elapsed();
        let text = std::fs::read_to_string(report.path()).expect("time's report");
        // The last line is the figure; a line before it says when the program was killed.
        let kib: u64 = text
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("no peak memory in time's report: {text:?}"));
        (Outcome::from_output(command, out), kib * 1024, took)
    }

    /// Start without waiting (output captured); [`wait`] collects it.
    pub fn spawn(mut self) -> (Child, String) {
        let child = spawn(&mut self.cmd, false);
        (child, command_line(&self.cmd))
    }
}

/// Build one image from `models` tagged `tag` on `base`, with extra flags, into `store`; asserts
/// success and returns the digest.
#[track_caller]
pub fn build_one(store: &Path, models: &Path, tag: &str, base: &str, extra: &[&str]) -> String {
    modelcar(store).build_one(models, tag, base, extra)
}

// ---------------------------------------------------------------------------------------------
// External tools

/// `PROGRAM ARGS...`.
fn tool_command(program: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args);
    cmd
}

/// Run an external tool with standard input closed; its raw output.
pub fn tool(program: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Output {
    output(tool_command(program, args), None)
}

/// Run an external tool that must succeed; its standard output.
#[track_caller]
pub fn tool_ok(program: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> String {
    String::from_utf8(tool_ok_bytes(program, args)).expect("tool output is UTF-8")
}

/// [`tool_ok`] for output that need not be text.
#[track_caller]
pub fn tool_ok_bytes(program: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Vec<u8> {
    succeed(tool_command(program, args))
}

/// [`tool_ok`] in the directory `dir`.
#[track_caller]
pub fn tool_ok_in(
    dir: &Path,
    program: &str,
    args: impl IntoIterator<Item = impl AsRef<OsStr>>,
) -> String {
    let mut cmd = tool_command(program, args);
    cmd.current_dir(dir);
    String::from_utf8(succeed(cmd)).expect("tool output is UTF-8")
}

/// Run `cmd`, which must succeed (see [`Outcome::success`]); its raw standard output.
#[track_caller]
fn succeed(cmd: Command) -> Vec<u8> {
    let command = command_line(&cmd);
    let out = output(cmd, None);
    let stdout = out.stdout.clone();
    Outcome::from_output(command, out).success();
    stdout
}

/// Run `sh -c SCRIPT` that must succeed; its standard output.
#[track_caller]
pub fn sh(script: &str) -> String {
    tool_ok("sh", ["-c", script])
}

/// Quote a path for `sh -c`.
pub fn q(p: impl AsRef<Path>) -> String {
    format!(
        "'{}'",
        p.as_ref().display().to_string().replace('\'', r"'\''")
    )
}

/// `setpriv` set to run a command as `nobody` (uid and gid 65534, no supplementary groups):
/// add `--reset-env` if wanted, then `--` and the command.
pub fn as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    cmd
}

/// A temporary directory that `nobody` can enter, for tests that run programs as that user;
/// fails (never skips) first when setpriv is not installed.
pub fn temp_for_nobody() -> tempfile::TempDir {
    tool_ok("setpriv", ["--version"]);
    let dir = temp();
    chmod(dir.path(), 0o755);
    dir
}
