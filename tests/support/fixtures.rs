//! Fixtures shared by the tests of one build of modelcar: the base-image layouts of
//! `tests/fixtures/make-bases.sh` and a store holding an image with a layer larger than the
//! monolithic upload limit. They are made once, under a file lock (nextest runs each test in its
//! own process), in Cargo's target tmp directory, keyed by the modelcar binary and the script, so
//! a rebuilt binary gets fresh fixtures; older sets are removed after an hour.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::cmd::{example_model, Env, MODELCAR, REPO};

/// Size of the large file of the large image: more than twice the 64 MiB chunk size, so its
/// layer (built with `--compression none`) is uploaded in three chunks.
pub const BIG_FILE: u64 = 150 << 20;

fn fixtures_dir() -> PathBuf {
    let script = Path::new(REPO).join("tests/fixtures/make-bases.sh");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for p in [Path::new(MODELCAR), script.as_path()] {
        let md = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        md.len().hash(&mut h);
        md.modified().ok().hash(&mut h);
    }
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR")).join("registry-fixtures");
    let dir = parent.join(format!("{:016x}", h.finish()));
    if !dir.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        // Sets of other builds, unused for an hour, go.
        if let Ok(rd) = std::fs::read_dir(&parent) {
            for e in rd.flatten() {
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > Duration::from_secs(3600));
                if e.path() != dir && old {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    dir
}

/// Make `name` in the fixtures directory once: `make` is run under an exclusive lock unless a
/// previous run finished it.
fn once(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let dir = fixtures_dir();
    let lock = File::create(dir.join(format!("{name}.lock"))).unwrap();
    lock.lock().unwrap();
    let out = dir.join(name);
    let done = dir.join(format!("{name}.done"));
    if !done.exists() {
        let _ = std::fs::remove_dir_all(&out);
        make(&out);
        File::create(&done).unwrap();
    }
    lock.unlock().unwrap();
    out
}

/// The OCI layout with the base images `busybox`, `multi` (linux/amd64 and linux/arm64) and
/// `noshell`.
pub fn bases() -> PathBuf {
    once("bases", |out| {
        let status = std::process::Command::new("bash")
            .arg(Path::new(REPO).join("tests/fixtures/make-bases.sh"))
            .arg(out)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("run make-bases.sh");
        assert!(status.success(), "make-bases.sh failed");
    })
    .join("layout")
}

/// `oci:LAYOUT:NAME` for a base image of [`bases`].
pub fn base(name: &str) -> String {
    format!("oci:{}:{name}", bases().display())
}

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
    let dir = once("big", |out| {
        std::fs::create_dir_all(out.join("model")).unwrap();
        std::fs::copy(
            example_model("sklearn").join("model.joblib"),
            out.join("model/model.joblib"),
        )
        .unwrap();
        write_pseudo_random(&out.join("model/weights.bin"), BIG_FILE);
        let env = Env::new().with_store(&out.join("store"));
        env.build(
            &out.join("model"),
            &reference,
            &base("busybox"),
            &["--format", "sklearn", "--compression", "none"],
        );
        std::fs::remove_dir_all(out.join("model")).unwrap();
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
    let config = m["config_digest"].as_str().unwrap().to_string();
    let blob_size = |d: &str| {
        std::fs::metadata(
            store
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .unwrap()
        .len()
    };
    BigImage {
        digest: info["digest"].as_str().unwrap().to_string(),
        big_layer: big["digest"].as_str().unwrap().to_string(),
        big_layer_size: big["size"].as_u64().unwrap(),
        blobs: layers.len() + 1,
        total_size: layers
            .iter()
            .map(|l| l["size"].as_u64().unwrap())
            .sum::<u64>()
            + blob_size(&config),
        reference,
        store,
    }
}

/// `len` bytes of xorshift output: incompressible, and the same on every run.
pub fn write_pseudo_random(path: &Path, len: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for chunk in buf.chunks_exact_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes());
        }
        let n = left.min(buf.len() as u64) as usize;
        w.write_all(&buf[..n]).unwrap();
        left -= n as u64;
    }
    w.flush().unwrap();
}
