//! Shared helpers of the integration tests: the base-image fixture, running `modelcar` and the
//! external tools that check its output (skopeo, umoci, GNU tar), and store snapshots that prove
//! a failed command changed nothing.
//!
//! Every test uses a store of its own (tests run in parallel under `cargo test` and in separate
//! processes under `cargo nextest`). The base images are built once by
//! `tests/fixtures/make-bases.sh` and shared read-only.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The repository root (where `modelcar.toml` and `models/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared` next to the repository (KServe data files).
pub fn shared_dir() -> PathBuf {
    repo_root().join("../shared")
}

/// An example model directory, e.g. `example_model("sklearn")`.
pub fn example_model(name: &str) -> PathBuf {
    repo_root().join("models/mlserver").join(name)
}

/// The file of each example model, as MLServer looks for it.
pub const EXAMPLES: [(&str, &str, &str); 3] = [
    ("sklearn", "mlserver-sklearn", "model.joblib"),
    ("xgboost", "mlserver-xgboost", "model.bst"),
    ("lightgbm", "mlserver-lightgbm", "model.bst"),
];

/// The reference `modelcar.toml` gives a project image.
pub fn project_ref(name: &str) -> String {
    let repo = EXAMPLES
        .iter()
        .find(|e| e.0 == name)
        .map(|e| e.1)
        .unwrap_or_else(|| panic!("no example image {name}"));
    format!("quay.io/jooholee/{repo}:v1.0.0")
}

// ---------------------------------------------------------------------------------------------
// Base images

/// Where the base images of `make-bases.sh` are.
pub struct Bases {
    pub dir: PathBuf,
    /// The OCI layout with `busybox`, `multi` and `noshell`.
    pub layout: PathBuf,
    pub docker_tar: PathBuf,
    pub oci_tar: PathBuf,
}

impl Bases {
    /// `oci:LAYOUT:NAME`.
    pub fn oci(&self, name: &str) -> String {
        format!("oci:{}:{name}", self.layout.display())
    }
    /// The single-platform busybox base.
    pub fn busybox(&self) -> String {
        self.oci("busybox")
    }
    /// The linux/amd64 + linux/arm64 index.
    pub fn multi(&self) -> String {
        self.oci("multi")
    }
}

/// The base images of `tests/fixtures/make-bases.sh`.
///
/// Resolved once per test process (`OnceLock`). The images themselves are built once per
/// version of the script: into `CARGO_TARGET_TMPDIR/bases-<hash of the script and of busybox>`,
/// under a file lock, so that `cargo nextest` (one process per test) does not run the script
/// for every test, and nothing piles up in `/tmp`. Tests only read them.
pub fn bases() -> &'static Bases {
    static BASES: OnceLock<Bases> = OnceLock::new();
    BASES.get_or_init(|| {
        let script = repo_root().join("tests/fixtures/make-bases.sh");
        let busybox = std::env::var_os("BUSYBOX").unwrap_or_else(|| "/bin/busybox".into());
        let mut key = fs::read(&script).expect("read tests/fixtures/make-bases.sh");
        if let Ok(m) = fs::metadata(&busybox) {
            key.extend(format!("{}:{}:{}", m.len(), m.mtime(), m.ino()).bytes());
        }
        let key = &sha256(&key)[7..23];
        let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(tmp).expect("create CARGO_TARGET_TMPDIR");
        let dir = tmp.join(format!("modelcar-bases-{key}"));
        let done = dir.join("complete");
        if !done.exists() {
            let lock = fs::File::create(tmp.join("modelcar-bases.lock")).expect("create lock");
            lock.lock().expect("lock the base image fixture");
            if !done.exists() {
                let _ = fs::remove_dir_all(&dir);
                fs::create_dir_all(&dir).unwrap();
                // Readable by everyone: one test runs modelcar as an unprivileged user.
                chmod(&dir, 0o755);
                let output = tool("bash", [script.as_os_str(), dir.join("bases").as_os_str()]);
                assert!(
                    output.status.success(),
                    "tests/fixtures/make-bases.sh failed ({}):\n{}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                );
                fs::write(&done, b"").unwrap();
            }
        }
        let out = dir.join("bases");
        Bases {
            layout: out.join("layout"),
            docker_tar: out.join("busybox.docker.tar"),
            oci_tar: out.join("busybox.oci.tar"),
            dir: out,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Running modelcar

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

/// The result of a command.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub command: String,
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
    /// on stdout, exit code 1) and return self.
    #[track_caller]
    pub fn failure(self) -> Outcome {
        assert_eq!(
            self.status.code(),
            Some(1),
            "`{}` should fail with exit code 1 ({}):\nstdout:\n{}\nstderr:\n{}",
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

/// A modelcar command line being put together.
pub struct Modelcar {
    cmd: Command,
    args: Vec<String>,
}

/// `modelcar --store STORE`, run in the repository root with a clean environment.
pub fn modelcar(store: &Path) -> Modelcar {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_modelcar"));
    cmd.current_dir(repo_root());
    for k in MODELCAR_ENV {
        cmd.env_remove(k);
    }
    cmd.stdin(Stdio::null());
    cmd.arg("--store").arg(store);
    Modelcar {
        cmd,
        args: vec!["--store".into(), store.display().to_string()],
    }
}

impl Modelcar {
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Self {
        self.args.push(a.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(a);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    pub fn env(mut self, k: &str, v: impl AsRef<std::ffi::OsStr>) -> Self {
        self.cmd.env(k, v);
        self
    }

    /// The command for callers that need to change it further (for example to drop privileges).
    pub fn command(self) -> (Command, String) {
        let line = format!("modelcar {}", self.args.join(" "));
        (self.cmd, line)
    }

    pub fn run(mut self) -> Outcome {
        let line = format!("modelcar {}", self.args.join(" "));
        let out = self
            .cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {line}: {e}"));
        Outcome::from_output(line, out)
    }

    /// Start without waiting (output to pipes).
    pub fn spawn(mut self) -> (Child, String) {
        let line = format!("modelcar {}", self.args.join(" "));
        let child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {line}: {e}"));
        (child, line)
    }
}

/// Wait for a child started by [`Modelcar::spawn`].
pub fn wait(child: Child, line: String) -> Outcome {
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {line}: {e}"));
    Outcome::from_output(line, out)
}

/// Run modelcar with `store` in `cwd`: (status, stdout, stderr).
pub fn run_modelcar(store: &Path, cwd: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let o = modelcar(store).cwd(cwd).args(args).run();
    (o.status, o.stdout, o.stderr)
}

/// Build one image from `models` tagged `tag` on `base`, with extra flags; asserts success and
/// returns the digest.
#[track_caller]
pub fn build_one(store: &Path, models: &Path, tag: &str, base: &str, extra: &[&str]) -> String {
    modelcar(store)
        .args(["build", "--models"])
        .arg(models)
        .args(["--tag", tag, "--base", base])
        .args(extra)
        .run()
        .success()
        .digest()
}

// ---------------------------------------------------------------------------------------------
// External tools

/// Run an external tool; panics (failing the test, never skipping it) when it is not installed.
pub fn tool<I, S>(program: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null());
    tool_output(program, cmd)
}

/// Run a prepared command of an external tool; panics when the tool is not installed.
pub fn tool_output(program: &str, mut cmd: Command) -> Output {
    match cmd.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`{program}` is not installed, and this test needs it \
             (Debian: apt-get install skopeo umoci busybox-static zstd tar util-linux coreutils strace): {e}"
        ),
        Err(e) => panic!("cannot run {program}: {e}"),
    }
}

/// Run an external tool that must succeed; its standard output.
#[track_caller]
pub fn tool_ok<I, S>(program: &str, args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let args: Vec<std::ffi::OsString> = args
        .into_iter()
        .map(|a| a.as_ref().to_os_string())
        .collect();
    let out = tool(program, &args);
    assert!(
        out.status.success(),
        "`{program} {}` failed ({}):\n{}",
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
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

/// `oci:STORE:REF`, as skopeo spells an image in the store.
pub fn oci(store: &Path, reference: &str) -> String {
    format!("oci:{}:{reference}", store.display())
}

/// `skopeo inspect LOCATION` as JSON.
#[track_caller]
pub fn skopeo_inspect(location: &str, extra: &[&str]) -> Value {
    let mut args = vec!["inspect"];
    args.extend_from_slice(extra);
    args.push(location);
    serde_json::from_str(&tool_ok("skopeo", &args)).expect("skopeo prints JSON")
}

/// `skopeo inspect --raw LOCATION`: the raw bytes of the top document.
#[track_caller]
pub fn skopeo_raw(location: &str) -> Vec<u8> {
    let out = tool("skopeo", ["inspect", "--raw", location]);
    assert!(
        out.status.success(),
        "skopeo inspect --raw {location} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo inspect --raw` parsed.
#[track_caller]
pub fn skopeo_raw_json(location: &str) -> Value {
    serde_json::from_slice(&skopeo_raw(location)).expect("a raw manifest is JSON")
}

/// Whether skopeo can inspect a location at all.
pub fn skopeo_can_inspect(location: &str) -> bool {
    tool("skopeo", ["inspect", location]).status.success()
}

/// `umoci unpack` an image of an OCI layout into `bundle` (as root, so ownership is kept).
#[track_caller]
pub fn umoci_unpack(layout: &Path, reference: &str, bundle: &Path) {
    let image = format!("{}:{reference}", layout.display());
    let out = tool(
        "umoci",
        [
            std::ffi::OsStr::new("unpack"),
            "--image".as_ref(),
            image.as_ref(),
            bundle.as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "umoci unpack --image {image} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of a blob of an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// `tar -tv` of a layer blob, decompressing it according to its media type with the system's
/// gzip or zstd; lines of GNU tar's verbose listing, in UTC.
#[track_caller]
pub fn tar_listing(blob: &Path, media_type: &str) -> Vec<String> {
    let decompress = if media_type.ends_with("+gzip") {
        "gzip -dc"
    } else if media_type.ends_with("+zstd") {
        "zstd -dcq"
    } else {
        assert!(
            media_type.ends_with(".tar"),
            "unexpected media type {media_type}"
        );
        "cat"
    };
    let script = format!(
        "set -o pipefail; {decompress} {} | TZ=UTC tar --full-time --numeric-owner -tvf -",
        q(blob)
    );
    tool_ok("bash", ["-c", &script])
        .lines()
        .map(str::to_string)
        .collect()
}

/// The content of one member of a layer blob, extracted with GNU tar.
#[track_caller]
pub fn tar_member(blob: &Path, media_type: &str, member: &str) -> Vec<u8> {
    let decompress = if media_type.ends_with("+gzip") {
        "gzip -dc"
    } else if media_type.ends_with("+zstd") {
        "zstd -dcq"
    } else {
        "cat"
    };
    let script = format!(
        "set -o pipefail; {decompress} {} | tar -xOf - {}",
        q(blob),
        q(member)
    );
    let out = tool("bash", ["-c", &script]);
    assert!(
        out.status.success(),
        "extracting {member}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------------------------
// Files

/// `sha256:<hex>` of bytes.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// A temporary directory for one test (removed when dropped).
pub fn temp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("modelcar-test-")
        .tempdir()
        .expect("create a temporary directory")
}

/// Write `size` pseudo-random (incompressible) bytes from `seed` to `path` (xorshift64*).
pub fn write_random(path: &Path, size: u64, seed: u64) {
    let mut f = std::io::BufWriter::with_capacity(
        1 << 20,
        fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display())),
    );
    let mut state = seed | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for chunk in buf.chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let v = state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).expect("write random data");
        left -= n as u64;
    }
    f.flush().expect("flush random data");
}

/// Copy the example model `name` into a new directory under `parent`.
pub fn copy_example(name: &str, parent: &Path) -> PathBuf {
    let dst = parent.join(name);
    fs::create_dir_all(&dst).unwrap();
    for e in fs::read_dir(example_model(name)).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    dst
}

// ---------------------------------------------------------------------------------------------
// Store snapshots

/// What a store holds: every file with its size (the layer cache and lock files aside), and
/// `index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub files: BTreeMap<String, u64>,
    pub index: String,
}

/// Take a snapshot of a store.
pub fn snapshot(store: &Path) -> Snapshot {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        let Ok(items) = fs::read_dir(dir) else { return };
        for item in items {
            let item = item.unwrap();
            let path = item.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".modelcar/cache" || rel.ends_with(".lock") || rel == ".modelcar/lock" {
                continue;
            }
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                out.insert(format!("{rel}/"), 0);
                walk(root, &path, out);
            } else {
                out.insert(rel, meta.size());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(store, store, &mut files);
    Snapshot {
        files,
        index: fs::read_to_string(store.join("index.json")).unwrap_or_default(),
    }
}

/// Assert that a store is as it was.
#[track_caller]
pub fn assert_unchanged(before: &Snapshot, store: &Path, what: &str) {
    let after = snapshot(store);
    if &after == before {
        return;
    }
    let added: Vec<_> = after
        .files
        .keys()
        .filter(|k| !before.files.contains_key(*k))
        .collect();
    let removed: Vec<_> = before
        .files
        .keys()
        .filter(|k| !after.files.contains_key(*k))
        .collect();
    let resized: Vec<_> = before
        .files
        .iter()
        .filter(|(k, v)| after.files.get(*k).is_some_and(|a| a != *v))
        .collect();
    panic!(
        "{what} changed the store:\nadded {added:?}\nremoved {removed:?}\nresized {resized:?}\nindex before {}\nindex after {}",
        before.index, after.index
    );
}

/// The names of the blobs of a layout.
pub fn blob_names(layout: &Path) -> std::collections::BTreeSet<String> {
    fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The references `index.json` of a layout names.
pub fn index_refs(layout: &Path) -> Vec<String> {
    let index: Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str())
        .map(str::to_string)
        .collect()
}

/// Owner, group and permission bits of a path (not following symlinks).
pub fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.uid(), m.gid(), m.mode() & 0o7777)
}
