//! `build --models modelpack:REF`: CNCF ModelPack artifacts, generated here as OCI layouts (and
//! copied into a real registry with skopeo), become runnable modelcars that `verify` passes; the
//! same files give the same model layers as a model directory; layers modelcar wrote are reused
//! as they are (mounted across repositories); `--push` writes no weights to the local disk; and
//! hostile artifacts (absolute paths, `..`, links out of the tree, hard links, whiteouts, huge
//! annotations, too many layers) are refused with an error naming the problem, leaving the
//! store as it was.
//!
//! Needs docker-registry, skopeo, umoci and busybox-static.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

use serde_json::{json, Value};

use support::env::Env;
use support::files::{sha256, write_random};
use support::fixtures::{bases, example_model};
use support::images::{blob_path, tar_listing, tar_member};
use support::registries::Registry;

/// One layer of a generated artifact.
struct Layer {
    media_type: String,
    bytes: Vec<u8>,
    annotations: BTreeMap<String, String>,
}

/// An entry of a generated tar layer: path (written into the header as it is, hostile or not),
/// and what it is.
enum Entry<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    Fifo(&'a str),
}

/// A tar archive of `entries`, as a packager writes one (owner 0:0, its own modes); names are
/// put into the header bytes directly, so that `..` and absolute paths get through.
fn tar_of(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_ustar();
        let (name, size, data): (&str, u64, &[u8]) = match e {
            Entry::File(p, d, mode) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                (p, d.len() as u64, d)
            }
            Entry::Dir(p) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                (p, 0, &[])
            }
            Entry::Fifo(p) => {
                h.set_entry_type(tar::EntryType::Fifo);
                h.set_mode(0o644);
                (p, 0, &[])
            }
            Entry::Symlink(p, t) | Entry::Hardlink(p, t) => {
                h.set_entry_type(if matches!(e, Entry::Symlink(..)) {
                    tar::EntryType::Symlink
                } else {
                    tar::EntryType::Link
                });
                h.set_mode(0o777);
                let u = h.as_ustar_mut().unwrap();
                u.linkname[..t.len()].copy_from_slice(t.as_bytes());
                (p, 0, &[])
            }
        };
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        let u = h.as_ustar_mut().unwrap();
        u.name = [0; 100];
        u.name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(512), 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(bytes, 3).unwrap()
}

fn filepath(path: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("org.cncf.model.filepath".to_string(), path.to_string())])
}

/// A layer of this role and packing holding `files` (raw: the one file).
fn layer(role: &str, packing: &str, files: &[(&str, &[u8])]) -> Layer {
    let media_type = format!("application/vnd.cncf.model.{role}.v1.{packing}");
    if packing == "raw" {
        assert_eq!(files.len(), 1);
        return Layer {
            media_type,
            bytes: files[0].1.to_vec(),
            annotations: filepath(files[0].0),
        };
    }
    let entries: Vec<Entry> = files
        .iter()
        .map(|(p, d)| Entry::File(p, d, 0o644))
        .collect();
    let tar = tar_of(&entries);
    let bytes = match packing {
        "tar" => tar,
        "tar+gzip" => gzip(&tar),
        "tar+zstd" => zstd(&tar),
        other => panic!("packing {other}"),
    };
    let annotations = if files.len() == 1 {
        filepath(files[0].0)
    } else {
        BTreeMap::new()
    };
    Layer {
        media_type,
        bytes,
        annotations,
    }
}

fn put_blob(dir: &Path, bytes: &[u8]) -> String {
    let hex = sha256(bytes);
    let hex = hex.trim_start_matches("sha256:");
    let p = dir.join("blobs/sha256").join(hex);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    format!("sha256:{hex}")
}

/// The config of a ModelPack artifact (as config.md describes it).
fn config() -> Vec<u8> {
    serde_json::to_vec(&json!({
        "descriptor": {"name": "iris", "version": "v1"},
        "config": {"format": "joblib"},
        "modelfs": {"type": "layers", "diffIds": []}
    }))
    .unwrap()
}

/// Write an OCI layout at `dir` holding one ModelPack artifact named `tag`; returns the manifest
/// document.
fn write_artifact(dir: &Path, tag: &str, layers: &[Layer]) -> Value {
    write_manifest(
        dir,
        tag,
        "application/vnd.cncf.model.config.v1+json",
        Some("application/vnd.cncf.model.manifest.v1+json"),
        layers,
    )
}

fn write_manifest(
    dir: &Path,
    tag: &str,
    config_type: &str,
    artifact_type: Option<&str>,
    layers: &[Layer],
) -> Value {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let config = config();
    let config_digest = put_blob(dir, &config);
    let descs: Vec<Value> = layers
        .iter()
        .map(|l| {
            let mut d = json!({
                "mediaType": l.media_type,
                "digest": put_blob(dir, &l.bytes),
                "size": l.bytes.len(),
            });
            if !l.annotations.is_empty() {
                d["annotations"] = json!(l.annotations);
            }
            d
        })
        .collect();
    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config_type, "digest": config_digest, "size": config.len()},
        "layers": descs,
    });
    if let Some(t) = artifact_type {
        manifest["artifactType"] = json!(t);
    }
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = put_blob(dir, &bytes);
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    manifest
}

fn joblib() -> Vec<u8> {
    fs::read(example_model("sklearn").join("model.joblib")).unwrap()
}

const README: &[u8] = b"# iris\nA scikit-learn classifier of the iris data set.\n";

/// The sklearn example as a ModelPack artifact whose layers are all of one packing: the weights,
/// and a doc layer.
fn sklearn_artifact(dir: &Path, packing: &str) {
    let weights = joblib();
    write_artifact(
        dir,
        "v1",
        &[
            layer("weight", packing, &[("model.joblib", &weights)]),
            layer("doc", packing, &[("README.md", README)]),
        ],
    );
}

fn modelpack(dir: &Path, tag: &str) -> String {
    format!("modelpack:oci:{}:{tag}", dir.display())
}

/// Build `models` (a `modelpack:` source or a directory) into `env`'s store; the outcome JSON.
/// `build --models modelpack:oci:DIR:v1 --tag TAG` on the busybox base with `extra` flags,
/// expected to fail: what it printed.
fn build_refused(env: &Env, dir: &Path, tag: &str, extra: &[&str]) -> support::cmd::Outcome {
    let source = modelpack(dir, "v1");
    let base = bases().busybox();
    let mut args = vec!["build", "--models", &source, "--tag", tag, "--base", &base];
    args.extend_from_slice(extra);
    env.modelcar(&args).failure()
}

fn build_json(env: &Env, models: &str, tag: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "build",
        "--models",
        models,
        "--tag",
        tag,
        "--base",
        &bases().busybox(),
        "--json",
    ]
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = env.modelcar(&refs).success();
    out.json()[0].clone()
}

/// The files of `/models` of a stored image (path, uid, gid, mode, contents of files), unpacked
/// by umoci from an export.
/// Path, uid, gid, mode and (for a file) contents of everything under `/models`.
type Unpacked = BTreeMap<String, (u32, u32, u32, Option<Vec<u8>>)>;

fn unpacked_models(env: &Env, tag: &str) -> Unpacked {
    use std::os::unix::fs::MetadataExt;
    let layout = env.path("export");
    let _ = fs::remove_dir_all(&layout);
    env.modelcar(&["export", tag, &format!("oci:{}:x", layout.display())])
        .success();
    let bundle = env.path("bundle");
    let _ = fs::remove_dir_all(&bundle);
    support::images::umoci_unpack(&layout, "x", &bundle);
    let root = bundle.join("rootfs/models");
    let mut out = BTreeMap::new();
    support::files::walk(&root, &mut |p, m| {
        let rel = p
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let data = m.is_file().then(|| fs::read(p).unwrap());
        out.insert(rel, (m.uid(), m.gid(), m.mode() & 0o7777, data));
        true
    });
    out
}

#[test]
fn every_layer_kind_becomes_an_image_verify_passes_with_the_files_owned_and_moded_as_modelcar_writes(
) {
    let weights = joblib();
    for packing in ["raw", "tar", "tar+gzip", "tar+zstd"] {
        let env = Env::new();
        let dir = env.path("artifact");
        sklearn_artifact(&dir, packing);
        let tag = "localhost/iris:v1";
        let out = build_json(&env, &modelpack(&dir, "v1"), tag, &[]);
        assert_eq!(out["format"]["format"], "sklearn", "{packing}: {out}");
        assert_eq!(out["format"]["model_file"], "model.joblib", "{packing}");
        env.modelcar(&["verify", tag]).success();
        let files = unpacked_models(&env, tag);
        assert_eq!(
            files.get("model.joblib"),
            Some(&(1001, 0, 0o444, Some(weights.clone()))),
            "{packing}"
        );
        assert_eq!(
            files.get("README.md"),
            Some(&(1001, 0, 0o444, Some(README.to_vec()))),
            "{packing}"
        );
        assert_eq!(files.len(), 2, "{packing}: {:?}", files.keys());
        // The same artifact gives the same image.
        let again = build_json(&env, &modelpack(&dir, "v1"), "localhost/iris:v2", &[]);
        assert_eq!(again["layers"], out["layers"], "{packing}");
    }
}

#[test]
fn a_project_file_names_a_modelpack_artifact_relative_to_itself() {
    let env = Env::new();
    let project = env.path("project");
    sklearn_artifact(&project.join("packs/iris"), "tar+gzip");
    fs::write(
        project.join("modelcar.toml"),
        "registry = \"localhost/packs\"\nversion = \"v1\"\n\n[images.iris]\nrepository = \"iris\"\nmodels = \"modelpack:oci:packs/iris:v1\"\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .cwd(&project)
        .args(["build", "--base", &bases().busybox(), "--json"])
        .run()
        .success();
    assert_eq!(
        out.json()[0]["format"]["format"],
        "sklearn",
        "{}",
        out.stdout
    );
    env.modelcar(&["verify", "localhost/packs/iris:v1"])
        .success();
}

#[test]
fn a_modelpack_of_a_directory_gives_the_layers_the_directory_gives() {
    let env = Env::new();
    let models = env.path("models");
    fs::create_dir_all(models.join("weights")).unwrap();
    fs::write(models.join("model.joblib"), joblib()).unwrap();
    fs::write(models.join("README.md"), README).unwrap();
    write_random(&models.join("weights/big.bin"), 3 << 20, 7);
    let big = fs::read(models.join("weights/big.bin")).unwrap();
    let dir = env.path("artifact");
    write_artifact(
        &dir,
        "v1",
        &[
            layer("weight", "raw", &[("model.joblib", &joblib())]),
            layer("weight", "tar", &[("weights/big.bin", &big)]),
            layer("doc", "raw", &[("README.md", README)]),
        ],
    );
    let flags = ["--layer-threshold", "1MiB", "--format", "sklearn"];
    let from_dir = build_json(&env, models.to_str().unwrap(), "localhost/d:v1", &flags);
    let from_pack = build_json(&env, &modelpack(&dir, "v1"), "localhost/p:v1", &flags);
    let digests = |v: &Value| -> Vec<String> {
        v["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(digests(&from_pack), digests(&from_dir));
    assert_eq!(from_pack["layers"].as_array().unwrap().len(), 2);
}

/// A layout whose ModelPack layers are the model layers of an image modelcar built.
fn artifact_of_image(env: &Env, image: &str, dir: &Path) -> Vec<String> {
    let layout = env.path("image-layout");
    env.modelcar(&["export", image, &format!("oci:{}:x", layout.display())])
        .success();
    let index: Value = support::files::read_json(&layout.join("index.json"));
    let manifest: Value = support::files::read_json(&blob_path(
        &layout,
        index["manifests"][0]["digest"].as_str().unwrap(),
    ));
    let base_layers = 1; // the busybox base has one layer
    let mut layers = Vec::new();
    let mut digests = Vec::new();
    for l in manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .skip(base_layers)
    {
        let digest = l["digest"].as_str().unwrap();
        let packing = match l["mediaType"].as_str().unwrap() {
            "application/vnd.oci.image.layer.v1.tar" => "tar",
            "application/vnd.oci.image.layer.v1.tar+gzip" => "tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+zstd" => "tar+zstd",
            other => panic!("{other}"),
        };
        layers.push(Layer {
            media_type: format!("application/vnd.cncf.model.weight.v1.{packing}"),
            bytes: fs::read(blob_path(&layout, digest)).unwrap(),
            annotations: BTreeMap::new(),
        });
        digests.push(digest.to_string());
    }
    write_artifact(dir, "v1", &layers);
    digests
}

#[test]
fn layers_modelcar_wrote_are_reused_and_mounted_across_repositories_others_are_rewritten() {
    let reg = Registry::plain();
    let env = Env::new();
    let models = env.path("models");
    fs::create_dir_all(&models).unwrap();
    fs::write(models.join("model.joblib"), joblib()).unwrap();
    write_random(&models.join("weights.bin"), 4 << 20, 3);
    build_json(
        &env,
        models.to_str().unwrap(),
        "localhost/src:v1",
        &["--layer-threshold", "1MiB", "--compression", "gzip"],
    );
    let dir = env.path("artifact");
    let sources = artifact_of_image(&env, "localhost/src:v1", &dir);
    assert_eq!(sources.len(), 2);
    let host = reg.host();
    env.skopeo_push(
        &[],
        &format!("oci:{}:v1", dir.display()),
        &format!("{host}/packs/iris:v1"),
    );

    // From the layout into the store: the same layers, taken as they are.
    let stored = build_json(
        &env,
        &modelpack(&dir, "v1"),
        "localhost/again:v1",
        &["--layer-threshold", "1MiB"],
    );
    let layers = stored["layers"].as_array().unwrap();
    let got: Vec<&str> = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(got, sources.iter().map(String::as_str).collect::<Vec<_>>());
    env.modelcar(&["verify", "localhost/again:v1"]).success();

    // From the registry into another repository of it, with --push: mounted, not uploaded.
    let target = format!("{host}/serve/iris:v1");
    let pushed = build_json(
        &env,
        &format!("modelpack:{host}/packs/iris:v1"),
        &target,
        &["--push", "--layer-threshold", "1MiB"],
    );
    for l in pushed["layers"].as_array().unwrap() {
        assert_eq!(l["reused"], "mounted", "{pushed}");
    }
    assert!(
        reg.log().contains("mount"),
        "the registry saw no mount request"
    );
    let fresh = Env::new();
    fresh.modelcar(&["verify", &target]).success();

    // Other owner or modes: the layers are rewritten, not reused.
    let other = build_json(
        &fresh,
        &format!("modelpack:{host}/packs/iris:v1"),
        &format!("{host}/serve/iris:v2"),
        &["--push", "--owner", "1002:0"],
    );
    for l in other["layers"].as_array().unwrap() {
        assert!(l.get("reused").is_none(), "{other}");
        assert!(!sources.contains(&l["digest"].as_str().unwrap().to_string()));
    }
}

#[test]
fn build_push_from_a_registry_writes_no_weights_to_the_local_disk() {
    let reg = Registry::plain();
    let env = Env::new();
    let weights = env.path("weights.bin");
    let size: u64 = 96 << 20;
    write_random(&weights, size, 11);
    let bytes = fs::read(&weights).unwrap();
    let dir = env.path("artifact");
    write_artifact(
        &dir,
        "v1",
        &[
            layer("weight", "raw", &[("model.joblib", &joblib())]),
            layer("weight", "raw", &[("shards/weights.bin", &bytes)]),
            layer("weight", "tar+gzip", &[("extra.bin", &bytes[..8 << 20])]),
        ],
    );
    drop(bytes);
    let host = reg.host();
    env.skopeo_push(
        &[],
        &format!("oci:{}:v1", dir.display()),
        &format!("{host}/packs/big:v1"),
    );
    fs::remove_dir_all(&dir).unwrap();
    let target = format!("{host}/serve/big:v1");
    let (run, peak, _) = env
        .cmd()
        .args([
            "build",
            "--models",
            &format!("modelpack:{host}/packs/big:v1"),
            "--tag",
            &target,
            "--base",
            &bases().busybox(),
            "--push",
            "--format",
            "sklearn",
            "--json",
        ])
        .run_measured();
    let out = run.success().json()[0].clone();
    assert!(peak < 64 << 20, "build --push peaked at {peak} bytes");
    // The shard (over the 32 MiB threshold) gets a layer; the small files share one.
    assert_eq!(out["layers"].as_array().unwrap().len(), 2, "{out}");
    // Nothing the size of the weights was written into the store (blobs, temporary files,
    // caches): the model layers went from one registry stream into another.
    let store = env.path("store");
    let mut total = 0;
    support::files::walk(&store, &mut |_, m| {
        total += if m.is_file() { m.len() } else { 0 };
        true
    });
    // The busybox base (about 1 MB), documents and caches; the model is 104 MiB.
    assert!(total < 3 << 20, "the store holds {total} bytes");
    // skopeo reads the image back from the registry, every blob checked against its digest.
    let layout = env.path("pulled");
    env.skopeo_pull(
        &["--preserve-digests"],
        &target,
        &format!("oci:{}:x", layout.display()),
    )
    .success();
    let manifest = env.skopeo_raw(&target);
    let shard = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["annotations"]["org.opencontainers.image.title"] == "shards/weights.bin")
        .expect("the shard has its own layer");
    let blob = blob_path(&layout, shard["digest"].as_str().unwrap());
    let media = shard["mediaType"].as_str().unwrap();
    let listing = tar_listing(&blob, media);
    assert!(
        listing.iter().any(
            |l| l.starts_with("-r--r--r-- 1001/0") && l.ends_with(" models/shards/weights.bin")
        ),
        "{listing:?}"
    );
    let member = tar_member(&blob, media, "models/shards/weights.bin");
    assert_eq!(sha256(&member), sha256(&fs::read(&weights).unwrap()));
    Env::new().modelcar(&["verify", &target]).success();
}

/// Build a hostile artifact; the error, after checking nothing was tagged.
fn refused(layers: &[Layer]) -> String {
    let env = Env::new();
    let dir = env.path("artifact");
    write_artifact(&dir, "v1", layers);
    let out = build_refused(&env, &dir, "localhost/evil:v1", &[]);
    let images = env.modelcar(&["images", "--json"]).success();
    assert_eq!(images.json(), json!([]), "a refused build tagged nothing");
    assert!(out.stderr.contains("hint:"), "{}", out.stderr);
    out.stderr
}

fn tar_layer(entries: &[Entry]) -> Layer {
    Layer {
        media_type: "application/vnd.cncf.model.weight.v1.tar".into(),
        bytes: tar_of(entries),
        annotations: BTreeMap::new(),
    }
}

/// A zstd-compressed tar layer holding one file of `len` zeros, compressed as it is made (a few
/// hundred KB for gigabytes): a decompression bomb.
fn zstd_bomb(path: &str, len: u64) -> Layer {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    {
        let mut b = tar::Builder::new(&mut enc);
        let mut h = tar::Header::new_ustar();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path(path).unwrap();
        h.set_cksum();
        b.append(&h, std::io::repeat(0).take(len)).unwrap();
        b.finish().unwrap();
    }
    Layer {
        media_type: "application/vnd.cncf.model.weight.v1.tar+zstd".into(),
        bytes: enc.finish().unwrap(),
        annotations: BTreeMap::new(),
    }
}

#[test]
fn a_decompression_bomb_layer_is_refused_at_the_expansion_limit_saying_why() {
    // 2 GiB of zeros: beyond 100 times its compressed size plus the shared 1 GiB.
    let bomb = zstd_bomb("model.joblib", 2 << 30);
    assert!(bomb.bytes.len() < 4 << 20, "{}", bomb.bytes.len());
    let err = refused(&[bomb]);
    assert!(err.contains("expands to more than"), "{err}");
    assert!(err.contains("--max-layer-expansion"), "{err}");
}

#[test]
fn hostile_artifacts_are_refused_naming_the_problem() {
    let w = joblib();
    let model = || layer("weight", "raw", &[("model.joblib", &w)]);
    let cases: Vec<(Vec<Layer>, &[&str])> = vec![
        (
            vec![tar_layer(&[Entry::File("/etc/cron.d/evil", b"x", 0o644)])],
            &["/etc/cron.d/evil", "absolute path"],
        ),
        (
            vec![model(), tar_layer(&[Entry::Dir("/var/lib/")])],
            &["/var/lib/", "absolute path"],
        ),
        (
            vec![tar_layer(&[Entry::File("../../evil", b"x", 0o644)])],
            &["../../evil", "`..`"],
        ),
        (
            vec![model(), layer("weight", "raw", &[("sub/../../x", b"x")])],
            &["sub/../../x", "`..`"],
        ),
        (
            vec![model(), layer("weight", "raw", &[("/abs", b"x")])],
            &["/abs", "absolute path"],
        ),
        (
            vec![
                model(),
                tar_layer(&[Entry::Symlink("link", "../../etc/passwd")]),
            ],
            &["symlink link", "outside the model"],
        ),
        (
            vec![model(), tar_layer(&[Entry::Symlink("link", "/etc/passwd")])],
            &["symlink link", "absolute"],
        ),
        (
            vec![
                model(),
                tar_layer(&[Entry::Symlink("d", "."), Entry::File("d/x", b"1", 0o644)]),
            ],
            &["d/x", "under the symlink d"],
        ),
        (
            vec![model(), tar_layer(&[Entry::Hardlink("h", "model.joblib")])],
            &["hard link"],
        ),
        (
            vec![model(), tar_layer(&[Entry::Fifo("pipe")])],
            &["pipe", "not a regular file, directory or symlink"],
        ),
        (
            vec![
                model(),
                tar_layer(&[Entry::File(".wh.model.joblib", b"", 0o644)]),
            ],
            &["whiteout"],
        ),
        (
            vec![
                model(),
                layer("weight", "raw", &[("model.joblib", b"again")]),
            ],
            &["model.joblib is given twice"],
        ),
        (
            vec![Layer {
                annotations: BTreeMap::new(),
                ..model()
            }],
            &["no org.cncf.model.filepath annotation"],
        ),
        (
            vec![Layer {
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                ..model()
            }],
            &["not one of ModelPack's"],
        ),
        (
            vec![Layer {
                annotations: filepath(&"a".repeat(300 << 10)),
                ..model()
            }],
            &["annotation longer than"],
        ),
        (
            (0..1025).map(|_| model()).collect(),
            &["1025 layers", "more than the 1024"],
        ),
    ];
    for (layers, words) in cases {
        let err = refused(&layers);
        for w in words {
            assert!(err.contains(w), "expected {w:?} in: {err}");
        }
    }
}

#[test]
fn the_entries_of_all_layers_together_are_bounded() {
    // One tar of 100,001 directories, listed twice: each layer is within the limit of a layer,
    // together they are not.
    let names: Vec<String> = (0..100_001).map(|i| format!("d{i:06}/")).collect();
    let entries: Vec<Entry> = names.iter().map(|n| Entry::Dir(n)).collect();
    let tar = tar_layer(&entries);
    let again = Layer {
        media_type: tar.media_type.clone(),
        bytes: tar.bytes.clone(),
        annotations: BTreeMap::new(),
    };
    let w = joblib();
    let err = refused(&[layer("weight", "raw", &[("model.joblib", &w)]), tar, again]);
    assert!(err.contains("more than 200000 entries"), "{err}");
}

#[test]
fn a_blob_that_does_not_match_its_digest_is_refused() {
    for packing in ["raw", "tar", "tar+gzip"] {
        let env = Env::new();
        let dir = env.path("artifact");
        let manifest = write_artifact(
            &dir,
            "v1",
            &[layer("weight", packing, &[("model.joblib", &joblib())])],
        );
        // The same size, one byte changed near the end (inside the file for raw and tar, in
        // gzip's trailer for tar+gzip).
        let blob = blob_path(&dir, manifest["layers"][0]["digest"].as_str().unwrap());
        let mut bytes = fs::read(&blob).unwrap();
        let n = bytes.len();
        let at = if packing == "tar" { 600 } else { n - 2 };
        bytes[at] ^= 0x20;
        fs::write(&blob, bytes).unwrap();
        let out = build_refused(&env, &dir, "localhost/x:v1", &["--format", "sklearn"]);
        assert!(
            out.stderr.contains("does not match its digest")
                || out.stderr.contains("cannot read layer"),
            "{packing}: {}",
            out.stderr
        );
        assert_eq!(
            env.modelcar(&["images", "--json"]).success().json(),
            json!([])
        );
    }
}

#[test]
fn images_and_other_artifacts_are_not_taken_for_modelpacks() {
    let env = Env::new();
    let dir = env.path("artifact");
    write_manifest(
        &dir,
        "v1",
        "application/vnd.oci.image.config.v1+json",
        None,
        &[layer("weight", "raw", &[("model.joblib", &joblib())])],
    );
    let out = build_refused(&env, &dir, "localhost/x:v1", &[]);
    assert!(
        out.stderr.contains("is not a ModelPack artifact"),
        "{}",
        out.stderr
    );
    let missing = env
        .modelcar(&[
            "build",
            "--models",
            &modelpack(&dir, "nope"),
            "--tag",
            "localhost/x:v1",
            "--base",
            &bases().busybox(),
        ])
        .failure();
    assert!(missing.stderr.contains("nope"), "{}", missing.stderr);
}

#[test]
fn a_failing_format_check_names_the_artifact_and_the_file() {
    let env = Env::new();
    let dir = env.path("artifact");
    write_artifact(
        &dir,
        "v1",
        &[layer(
            "weight",
            "tar+zstd",
            &[("model.joblib", b"not a pickle at all")],
        )],
    );
    let out = build_refused(&env, &dir, "localhost/x:v1", &["--format", "sklearn"]);
    assert!(
        out.stderr.contains("modelpack:oci:") && out.stderr.contains("model.joblib"),
        "{}",
        out.stderr
    );
}

#[test]
fn publishing_a_modelpack_of_a_modelpack_source_is_refused_before_anything_is_written() {
    let env = Env::new();
    let dir = env.path("artifact");
    sklearn_artifact(&dir, "raw");
    let out = build_refused(&env, &dir, "localhost/x:v1", &["--modelpack"]);
    assert!(
        out.stderr.contains("--modelpack") && out.stderr.contains("modelpack:oci:"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("hint: leave out --modelpack"),
        "{}",
        out.stderr
    );
    assert_eq!(
        env.modelcar(&["images", "--json"]).success().json(),
        json!([])
    );
}

#[test]
fn a_modelpack_build_signs_the_model_with_the_digests_taken_while_writing() {
    let env = Env::new();
    let dir = env.path("artifact");
    let big = {
        let p = env.path("big.bin");
        write_random(&p, 2 << 20, 5);
        fs::read(&p).unwrap()
    };
    write_artifact(
        &dir,
        "v1",
        &[
            layer("weight", "raw", &[("model.joblib", &joblib())]),
            layer("weight", "tar+gzip", &[("weights/big.bin", &big)]),
            layer("doc", "tar", &[("README.md", README)]),
        ],
    );
    let key = env.path("model.pem");
    let public = env.path("model.pub");
    support::cmd::sh(&format!(
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out {} && openssl pkey -in {} -pubout -out {}",
        support::cmd::q(&key),
        support::cmd::q(&key),
        support::cmd::q(&public)
    ));
    build_json(
        &env,
        &modelpack(&dir, "v1"),
        "localhost/signed:v1",
        &["--sign-model", key.to_str().unwrap()],
    );
    env.modelcar(&[
        "verify",
        "localhost/signed:v1",
        "--model-key",
        public.to_str().unwrap(),
    ])
    .success();
}
