//! Fixtures: the repository's example models and project, the base images of
//! `tests/fixtures/make-bases.sh`, an image with a layer larger than the monolithic upload
//! limit, and model directories made for a test.
//!
//! The base images and the large image are made once per version of what they are made from
//! (the script, busybox, the modelcar binary), under a file lock so that `cargo nextest` (one
//! process per test) does not make them for every test, in Cargo's target tmp directory so that
//! nothing piles up in `/tmp`; sets for other versions, unused for an hour, are removed. Tests
//! only read them.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use super::cmd::{tool_ok_bytes, MODELCAR};
use super::env::Env;
use super::files::{chmod, sha256, write_random};

/// The repository root (where `modelcar.toml` and `models/` are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// An example model directory, e.g. `example_model("sklearn")`.
pub fn example_model(name: &str) -> PathBuf {
    repo_root().join("models/mlserver").join(name)
}

/// The example models: name, repository of the project's image, and the file MLServer loads.
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

/// Make `dir` a model directory holding the sklearn example's `model.joblib`; returns `dir`.
pub fn sklearn_models(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    fs::copy(
        example_model("sklearn").join("model.joblib"),
        dir.join("model.joblib"),
    )
    .unwrap();
    dir.to_path_buf()
}

// ---------------------------------------------------------------------------------------------
// Made once

/// The fixture `name` for the current version of `inputs` (a missing input counts as one
/// version): made by `make` into its directory, which is returned, unless that was done before.
fn made_once(name: &str, inputs: &[&Path], make: impl FnOnce(&Path)) -> PathBuf {
    let mut key = Vec::new();
    for input in inputs {
        key.extend(input.as_os_str().as_encoded_bytes());
        if let Ok(m) = fs::metadata(input) {
            key.extend(
                format!(":{}:{}:{}:{};", m.len(), m.mtime(), m.mtime_nsec(), m.ino()).bytes(),
            );
        }
    }
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    fs::create_dir_all(&parent).expect("create the fixtures directory");
    let dir = parent.join(format!("{name}-{}", &sha256(&key)[7..23]));
    let done = dir.join(".complete");
    if !done.exists() {
        let lock = fs::File::create(parent.join(format!("{name}.lock"))).expect("create a lock");
        lock.lock().expect("lock the fixture");
        if !done.exists() {
            remove_stale(&parent, name, &dir);
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            // Readable by everyone: some tests run programs as an unprivileged user.
            chmod(&dir, 0o755);
            make(&dir);
            fs::write(&done, b"").unwrap();
        }
    }
    dir
}

/// Remove the sets of fixture `name` other than `keep` that were not changed for an hour.
fn remove_stale(parent: &Path, name: &str, keep: &Path) {
    let Ok(items) = fs::read_dir(parent) else {
        return;
    };
    let prefix = format!("{name}-");
    for e in items.flatten() {
        let path = e.path();
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && path != keep && e.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = fs::remove_dir_all(path);
        }
    }
}

fn make_bases_script() -> PathBuf {
    repo_root().join("tests/fixtures/make-bases.sh")
}

fn busybox() -> PathBuf {
    std::env::var_os("BUSYBOX")
        .unwrap_or_else(|| "/bin/busybox".into())
        .into()
}

// ---------------------------------------------------------------------------------------------
// Base images

/// Where the base images of `make-bases.sh` are.
pub struct Bases {
    pub dir: PathBuf,
    /// The OCI layout with `busybox`, `multi` (linux/amd64 and linux/arm64) and `noshell`.
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

/// The base images of `tests/fixtures/make-bases.sh` (resolved once per test process).
pub fn bases() -> &'static Bases {
    static BASES: OnceLock<Bases> = OnceLock::new();
    BASES.get_or_init(|| {
        let script = make_bases_script();
        let dir = made_once("bases", &[&script, &busybox()], |dir| {
            tool_ok_bytes("bash", [script.as_os_str(), dir.join("bases").as_os_str()]);
        });
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
// The large image

/// Size of the large file of the large image: more than twice the chunk size, so its layer
/// (built with `--compression none`) is uploaded in three chunks.
pub const BIG_FILE: u64 = 2 * modelcar::registry::push::CHUNK + (8 << 20);

/// An image in a store of its own with one layer of [`BIG_FILE`] pseudo-random bytes.
pub struct BigImage {
    pub store: PathBuf,
    /// Its reference in that store.
    pub reference: String,
    pub digest: String,
    pub big_layer: String,
    pub big_layer_size: u64,
    /// Config and layers.
    pub blobs: usize,
    pub total_size: u64,
}

pub fn big_image() -> BigImage {
    let reference = "localhost/fixtures/big:v1".to_string();
    let inputs = [Path::new(MODELCAR), &make_bases_script(), &busybox()];
    let dir = made_once("big", &inputs, |out| {
        let models = sklearn_models(&out.join("model"));
        write_random(&models.join("weights.bin"), BIG_FILE, 0x9E37_79B9_7F4A_7C15);
        let env = Env::new().with_store(&out.join("store"));
        env.build(
            &models,
            &reference,
            &bases().busybox(),
            &["--format", "sklearn", "--compression", "none"],
        );
        fs::remove_dir_all(models).unwrap();
    });
    let env = Env::new().with_store(&dir.join("store"));
    let info = env
        .modelcar(&["inspect", &reference, "--json"])
        .success()
        .json();
    let m = &info["manifests"][0];
    let layers = m["layers"].as_array().expect("layers");
    let big = layers
        .iter()
        .max_by_key(|l| l["size"].as_u64().unwrap())
        .unwrap();
    let store = dir.join("store");
    let config = m["config_digest"].as_str().unwrap();
    let config_size = fs::metadata(super::images::blob_path(&store, config))
        .unwrap()
        .len();
    BigImage {
        digest: info["digest"].as_str().unwrap().to_string(),
        big_layer: big["digest"].as_str().unwrap().to_string(),
        big_layer_size: big["size"].as_u64().unwrap(),
        blobs: layers.len() + 1,
        total_size: layers
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
            + config_size,
        reference,
        store,
    }
}
