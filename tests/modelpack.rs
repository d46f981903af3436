//! `build --modelpack`: the CNCF ModelPack manifest written beside the runnable image, checked
//! against a real distribution registry with tools nobody here wrote: modelpack-client 0.1.0
//! from PyPI pulls it (and validates its config against the specification's schema), the
//! config is validated again against the schema's copy in `tests/fixtures/modelpack` with
//! Python's `jsonschema`, skopeo copies the index whole, and the registry's storage directory
//! shows each weight stored once.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use support::cmd::*;
use support::files::*;
use support::fixtures::*;
use support::images::*;
use support::registries::Registry;
use support::snapshot::*;

const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
/// Files from 64 KiB get a layer of their own in these tests.
const SPLIT: [&str; 2] = ["--layer-threshold", "64KiB"];

/// The python of the modelpack-client venv.
fn client_python() -> PathBuf {
    support::venv::venv_bin(
        "modelpack-client",
        "tests/fixtures/modelpack-client-requirements.txt",
        &["python", "-c", "import modelpack_client, jsonschema"],
    )
    .join("python")
}

/// `tests/modelpack_check.py ARGS...` in the modelpack-client venv.
fn check_py(args: &[&str]) -> std::process::Output {
    Command::new(client_python())
        .arg(repo_root().join("tests/modelpack_check.py"))
        .args(args)
        .output()
        .expect("run modelpack_check.py")
}

/// modelpack-client pulls `reference` into `dest`; what it reported.
#[track_caller]
fn client_pull(reference: &str, dest: &Path) -> Value {
    let out = check_py(&["pull", reference, dest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "modelpack-client pull {reference}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Validate a config against the specification's schema (the fixture copy).
#[track_caller]
fn assert_schema_valid(config: &[u8], dir: &Path) {
    let file = dir.join("modelpack-config.json");
    fs::write(&file, config).unwrap();
    let schema = repo_root().join("tests/fixtures/modelpack/config-schema.json");
    let out = check_py(&["validate", schema.to_str().unwrap(), file.to_str().unwrap()]);
    assert!(
        out.status.success() && out.stdout == b"valid\n",
        "the ModelPack config does not validate against config-schema.json: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(config)
    );
}

/// A safetensors file of float32/float16 tensors, `(name, dtype, shape)`, with seeded data.
fn safetensors(path: &Path, tensors: &[(&str, &str, &[u64])], seed: u64) {
    let mut header = serde_json::Map::new();
    let mut at = 0u64;
    for (name, dtype, shape) in tensors {
        let bytes = shape.iter().product::<u64>() * if *dtype == "F16" { 2 } else { 4 };
        header.insert(
            name.to_string(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [at, at + bytes]}),
        );
        at += bytes;
    }
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let data = dir_of(path).join(".data");
    write_random(&data, at, seed);
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(fs::read(&data).unwrap());
    fs::remove_file(&data).unwrap();
    fs::write(path, out).unwrap();
}

fn dir_of(path: &Path) -> &Path {
    path.parent().unwrap()
}

/// A small Hugging Face model: two safetensors shards (a layer each), their index, config,
/// tokenizer, a README and a Python module.
fn hf_model(dir: &Path) -> PathBuf {
    let m = dir.join("tiny-llm");
    fs::create_dir_all(m.join("code")).unwrap();
    safetensors(
        &m.join("model-00001-of-00002.safetensors"),
        &[("embed", "F32", &[256, 128])],
        1,
    );
    safetensors(
        &m.join("model-00002-of-00002.safetensors"),
        &[("head", "F16", &[128, 256]), ("norm", "F32", &[128])],
        2,
    );
    fs::write(
        m.join("model.safetensors.index.json"),
        br#"{"metadata":{},"weight_map":{"embed":"model-00001-of-00002.safetensors","head":"model-00002-of-00002.safetensors","norm":"model-00002-of-00002.safetensors"}}"#,
    )
    .unwrap();
    fs::write(
        m.join("config.json"),
        br#"{"architectures":["LlamaForCausalLM"],"model_type":"llama","torch_dtype":"float32"}"#,
    )
    .unwrap();
    fs::write(m.join("tokenizer.json"), br#"{"version":"1.0","model":{}}"#).unwrap();
    fs::write(m.join("README.md"), b"# tiny-llm\n").unwrap();
    fs::write(m.join("code/modeling_tiny.py"), b"print('tiny')\n").unwrap();
    m
}

/// Every file under `dir` by relative path, with its bytes.
fn files_of(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    walk(dir, &mut |p, meta| {
        if meta.is_file() {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            out.insert(rel, fs::read(p).unwrap());
        }
        true
    });
    out
}

/// The image index of `reference` in `store` and its ModelPack entry.
fn index_and_entry(store: &Path, reference: &str) -> (Value, Value) {
    let index = skopeo_raw_json(&oci(store, reference));
    let entries: Vec<Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            blob_json(store, m["digest"].as_str().unwrap())["artifactType"] == ARTIFACT_TYPE
        })
        .cloned()
        .collect();
    assert_eq!(entries.len(), 1, "one ModelPack entry in {index}");
    (index.clone(), entries[0].clone())
}

fn blob_json(store: &Path, digest: &str) -> Value {
    read_json(&blob_path(store, digest))
}

/// The build's JSON outcome.
fn build_json(store: &Path, models: &Path, tag: &str, base: &str, extra: &[&str]) -> Value {
    let out = modelcar(store)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .build(models, tag, base)
        .args(extra)
        .arg("--json")
        .run()
        .success();
    out.json()[0].clone()
}

/// modelpack-client pulls what modelcar pushed and gets the model's files; the config follows
/// the schema and says what modelcar detected; weights are the image's blobs, stored once.
#[test]
fn modelpack_client_pulls_the_files_and_the_registry_stores_each_weight_once() {
    let tmp = temp();
    let models = hf_model(tmp.path());
    let store = tmp.path().join("store");
    let reg = Registry::plain();
    let tag = format!("{}/llm/tiny:v1", reg.host());
    let mut flags = vec!["--modelpack"];
    flags.extend(SPLIT);
    let built = build_json(&store, &models, &tag, &bases().busybox(), &flags);
    let mp_digest = built["modelpack"]["digest"].as_str().unwrap().to_string();
    assert_eq!(built["modelpack"]["layers_shared"], 2, "{built}");
    let pushed = modelcar(&store)
        .args(["--tls-verify=false", "push", &tag])
        .run()
        .success()
        .digest();
    assert_eq!(pushed, built["digest"].as_str().unwrap());

    // The index: the runnable platform, and the ModelPack as unknown/unknown.
    let (index, entry) = index_and_entry(&store, &tag);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "a single-platform base still gives an index to hold the ModelPack"
    );
    assert_eq!(
        entry["platform"],
        json!({"os": "unknown", "architecture": "unknown"})
    );
    // No artifactType on the entry: skopeo 1.9 would drop it and rewrite the index.
    assert!(entry.get("artifactType").is_none(), "{entry}");
    assert_eq!(entry["digest"], mp_digest.as_str());
    let image = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["platform"]["os"] == "linux")
        .unwrap()
        .clone();
    let image_manifest = blob_json(&store, image["digest"].as_str().unwrap());
    let manifest = blob_json(&store, &mp_digest);
    assert_eq!(manifest["artifactType"], ARTIFACT_TYPE);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );

    // Layers typed by role; the shards are the image's own blobs.
    let layers = manifest["layers"].as_array().unwrap();
    let by_path: BTreeMap<String, Value> = layers
        .iter()
        .map(|l| {
            (
                l["annotations"]["org.cncf.model.filepath"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                l.clone(),
            )
        })
        .collect();
    let image_layers: Vec<&Value> = image_manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let l = &by_path[&format!("models/{shard}")];
        assert_eq!(l["mediaType"], "application/vnd.cncf.model.weight.v1.tar");
        let same = image_layers
            .iter()
            .find(|il| il["annotations"]["org.opencontainers.image.title"] == shard)
            .unwrap_or_else(|| panic!("the image has a layer of its own for {shard}"));
        assert_eq!(l["digest"], same["digest"], "{shard}: the image's blob");
    }
    let types: Vec<&str> = layers
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    for role in ["weight.config", "doc", "code"] {
        assert!(
            types
                .iter()
                .any(|t| t.starts_with(&format!("application/vnd.cncf.model.{role}.v1.tar"))),
            "a {role} layer in {types:?}"
        );
    }
    let listing = |l: &Value| {
        tar_listing(
            &blob_path(&store, l["digest"].as_str().unwrap()),
            l["mediaType"].as_str().unwrap(),
        )
    };
    let config_layer = layers
        .iter()
        .find(|l| l["mediaType"].as_str().unwrap().contains(".weight.config."))
        .unwrap();
    let names = listing(config_layer);
    for f in [
        "models/config.json",
        "models/tokenizer.json",
        "models/model.safetensors.index.json",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(&format!(" {f}"))),
            "{f} in {names:?}"
        );
    }
    assert!(!names.iter().any(|n| n.ends_with("README.md")), "{names:?}");

    // The config: the schema's, with what modelcar detected.
    let config_desc = &manifest["config"];
    let config_bytes =
        fs::read(blob_path(&store, config_desc["digest"].as_str().unwrap())).unwrap();
    assert_schema_valid(&config_bytes, tmp.path());
    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(
        config["descriptor"],
        json!({"createdAt": "2023-11-14T22:13:20Z", "name": "tiny", "version": "v1", "family": "llama"})
    );
    // 256*128 + 128*256 + 128 parameters.
    assert_eq!(
        config["config"],
        json!({"architecture": "LlamaForCausalLM", "format": "safetensors", "paramSize": "65.7K", "precision": "float16,float32"})
    );
    // One diff ID per layer; an uncompressed layer's is its digest.
    assert_eq!(config["modelfs"]["type"], "layers");
    let diff_ids = config["modelfs"]["diffIds"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len());
    for (l, d) in layers.iter().zip(diff_ids) {
        if l["mediaType"].as_str().unwrap().ends_with(".tar") {
            assert_eq!(&l["digest"], d);
        }
    }

    // modelpack-client pulls the ModelPack and gets the model's files, under models/.
    let pulled = tmp.path().join("pulled");
    let said = client_pull(&format!("{}/llm/tiny@{mp_digest}", reg.host()), &pulled);
    assert_eq!(said["config"], config);
    let want: BTreeMap<String, Vec<u8>> = files_of(&models)
        .into_iter()
        .map(|(k, v)| (format!("models/{k}"), v))
        .collect();
    assert_eq!(
        files_of(&pulled),
        want,
        "modelpack-client got the model's files"
    );

    // skopeo copies the index whole, byte for byte, to another repository, given
    // --preserve-digests (without it skopeo 1.9 gzips raw layers it cannot mount, in any image).
    let copy = format!("docker://{}/llm/copy:v1", reg.host());
    skopeo_copy(
        &[
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
        ],
        &format!("docker://{tag}"),
        &copy,
    );
    let raw = tool_ok_bytes("skopeo", ["inspect", "--raw", "--tls-verify=false", &copy]);
    assert_eq!(sha256(&raw), pushed, "skopeo copy --all --preserve-digests");

    // The registry holds each weight file's bytes in one blob.
    let blobs = reg.root.join("docker/registry/v2/blobs/sha256");
    let mut datas = Vec::new();
    walk(&blobs, &mut |p, meta| {
        if meta.is_file() && p.file_name().is_some_and(|n| n == "data") {
            datas.push(fs::read(p).unwrap());
        }
        true
    });
    for shard in [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ] {
        let bytes = fs::read(models.join(shard)).unwrap();
        let holding = datas
            .iter()
            .filter(|d| d.windows(bytes.len()).any(|w| w == bytes))
            .count();
        assert_eq!(
            holding, 1,
            "{shard}: blobs of the registry holding its bytes"
        );
    }
}

/// The same inputs give the same ModelPack digest, whatever the files' times and the store.
#[test]
fn the_same_inputs_give_the_same_modelpack() {
    let tmp = temp();
    let models = hf_model(tmp.path());
    let mut flags = vec!["--modelpack"];
    flags.extend(SPLIT);
    let a = build_json(
        &tmp.path().join("a"),
        &models,
        "localhost/r/m:v1",
        &bases().busybox(),
        &flags,
    );
    for f in files_of(&models).keys() {
        let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(models.join(f))
            .unwrap()
            .set_modified(t)
            .unwrap();
    }
    let b = build_json(
        &tmp.path().join("b"),
        &models,
        "localhost/r/m:v1",
        &bases().busybox(),
        &flags,
    );
    assert_eq!(a["modelpack"]["digest"], b["modelpack"]["digest"]);
    assert_eq!(a["digest"], b["digest"]);
    // Without --modelpack the image is what it always was: a manifest, no ModelPack.
    let plain = build_json(
        &tmp.path().join("c"),
        &models,
        "localhost/r/m:v1",
        &bases().busybox(),
        &SPLIT,
    );
    assert!(plain.get("modelpack").is_none());
    assert_eq!(
        plain["media_type"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

/// A compressed build's ModelPack lists the same gzip (zstd) blobs as `tar+gzip` (`tar+zstd`)
/// layers, and modelpack-client unpacks them; a multi-platform base gives one ModelPack for every
/// platform; `pull` brings the ModelPack along, so a push elsewhere carries it.
#[test]
fn compressed_and_multi_platform_builds_share_blobs_too() {
    for compression in ["gzip", "zstd"] {
        compressed_build_shares_blobs(compression);
    }
}

fn compressed_build_shares_blobs(compression: &str) {
    let tmp = temp();
    let models = hf_model(tmp.path());
    let store = tmp.path().join("store");
    let reg = Registry::plain();
    let tag = format!("{}/llm/gz:v1", reg.host());
    let mut flags = vec!["--modelpack", "--compression", compression];
    flags.extend(SPLIT);
    let built = build_json(&store, &models, &tag, &bases().multi(), &flags);
    let (index, entry) = index_and_entry(&store, &tag);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3, "{index}");
    let manifest = blob_json(&store, entry["digest"].as_str().unwrap());
    let image_blobs: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["platform"]["os"] == "linux")
        .flat_map(|m| {
            blob_json(&store, m["digest"].as_str().unwrap())["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let weights: Vec<&Value> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| {
            l["mediaType"] == format!("application/vnd.cncf.model.weight.v1.tar+{compression}")
        })
        .collect();
    assert_eq!(weights.len(), 2, "{manifest}");
    for w in &weights {
        assert!(image_blobs.contains(&w["digest"].as_str().unwrap().to_string()));
    }
    assert_eq!(built["modelpack"]["layers_shared"], 2);
    modelcar(&store)
        .args(["--tls-verify=false", "push", &tag])
        .run()
        .success();
    let pulled = tmp.path().join("pulled");
    client_pull(
        &format!(
            "{}/llm/gz@{}",
            reg.host(),
            entry["digest"].as_str().unwrap()
        ),
        &pulled,
    );
    assert_eq!(files_of(&pulled.join("models")), files_of(&models));
    // modelcar's own readers take the index's platforms only.
    modelcar(&store)
        .args(["verify", &tag, "--mode", "sidecar"])
        .run()
        .success();

    // Pulled and pushed elsewhere, the image keeps its ModelPack.
    let other = tmp.path().join("other");
    modelcar(&other)
        .args(["--tls-verify=false", "pull", &tag])
        .run()
        .success();
    let again = format!("{}/llm/again:v1", reg.host());
    modelcar(&other)
        .args(["--tls-verify=false", "push", &tag, &again])
        .run()
        .success();
    let pulled = tmp.path().join("pulled-again");
    client_pull(
        &format!(
            "{}/llm/again@{}",
            reg.host(),
            entry["digest"].as_str().unwrap()
        ),
        &pulled,
    );
    assert_eq!(files_of(&pulled.join("models")), files_of(&models));
}

/// skopeo copies the ModelPack with the index (`--all`); `export` carries it; `clean` removes it
/// with the image and garbage collection keeps it while the image is there.
#[test]
fn the_modelpack_travels_with_the_image_and_goes_with_it() {
    let tmp = temp();
    let models = hf_model(tmp.path());
    let store = tmp.path().join("store");
    let tag = "localhost/r/m:v1";
    let mut flags = vec!["--modelpack"];
    flags.extend(SPLIT);
    let built = build_json(&store, &models, tag, &bases().busybox(), &flags);
    let mp = built["modelpack"]["digest"].as_str().unwrap().to_string();
    let manifest = blob_json(&store, &mp);
    let own: Vec<String> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .chain([manifest["config"]["digest"].as_str().unwrap().to_string()])
        .collect();

    let inspected = modelcar(&store)
        .args(["inspect", tag, "--json"])
        .run()
        .success()
        .json();
    assert_eq!(
        inspected["modelpack"],
        mp.as_str(),
        "inspect names the ModelPack"
    );
    assert_eq!(inspected["manifests"].as_array().unwrap().len(), 1);

    let copied = tmp.path().join("copied");
    skopeo_copy(&["--all"], &oci(&store, tag), &oci(&copied, "x"));
    let names = blob_names(&copied);
    for d in own.iter().chain([&mp]) {
        assert!(
            names.contains(d.trim_start_matches("sha256:")),
            "skopeo copy --all: {d}"
        );
    }
    let exported = tmp.path().join("exported");
    modelcar(&store)
        .args(["export", tag, &format!("oci:{}:x", exported.display())])
        .run()
        .success();
    assert!(blob_names(&exported).contains(mp.trim_start_matches("sha256:")));
    // An OCI archive carries it too; a Docker archive holds the platform image only.
    for (kind, carries) in [("oci-archive", true), ("docker-archive", false)] {
        let file = tmp.path().join(format!("{kind}.tar"));
        modelcar(&store)
            .args(["export", tag, &format!("{kind}:{}", file.display())])
            .run()
            .success();
        let members = tool_ok("tar", ["tf", file.to_str().unwrap()]);
        let has = members
            .lines()
            .any(|m| m.ends_with(mp.trim_start_matches("sha256:")));
        assert_eq!(has, carries, "{kind}: {members}");
    }

    // Garbage collection keeps the ModelPack while its image is named; clean takes it along.
    modelcar(&store)
        .args(["build", "--models"])
        .arg(example_model("sklearn"))
        .args([
            "--tag",
            "localhost/r/other:v1",
            "--base",
            &bases().busybox(),
        ])
        .run()
        .success();
    modelcar(&store)
        .args(["clean", "localhost/r/other:v1"])
        .run()
        .success();
    let kept = blob_names(&store);
    for d in own.iter().chain([&mp]) {
        assert!(
            kept.contains(d.trim_start_matches("sha256:")),
            "{d} collected too early"
        );
    }
    modelcar(&store).args(["clean", tag]).run().success();
    let left = blob_names(&store);
    for d in own.iter().chain([&mp]) {
        assert!(
            !left.contains(d.trim_start_matches("sha256:")),
            "{d} left after clean"
        );
    }
}

/// Bad input: a model with a symlink cannot become a ModelPack (its clients refuse links); the
/// build says so and leaves the store as it was.
#[test]
fn a_symlink_is_refused_with_modelpack_and_nothing_is_written() {
    let tmp = temp();
    let models = hf_model(tmp.path());
    std::os::unix::fs::symlink("config.json", models.join("config-link.json")).unwrap();
    let store = tmp.path().join("store");
    build_one(
        &store,
        &example_model("sklearn"),
        "localhost/r/other:v1",
        &bases().busybox(),
        &[],
    );
    let before = snapshot(&store);
    modelcar(&store)
        .build(&models, "localhost/r/m:v1", &bases().busybox())
        .arg("--modelpack")
        .run()
        .failure()
        .stderr_has(&[
            "--modelpack cannot carry symlinks",
            "config-link.json",
            "hint:",
        ]);
    assert_unchanged(&before, &store, "a refused --modelpack build");
}

/// `modelpack = true` in the project file does what `--modelpack` does.
#[test]
fn the_project_file_asks_for_a_modelpack() {
    let tmp = temp();
    let models = hf_model(tmp.path());
    let dir = tmp.path().join("project");
    fs::create_dir_all(&dir).unwrap();
    fs::write(
        dir.join("modelcar.toml"),
        format!(
            "registry = \"localhost/p\"\nversion = \"v2\"\nbase = \"{}\"\nmodelpack = true\n\n[images.tiny]\nrepository = \"tiny\"\nmodels = \"{}\"\n",
            bases().busybox(),
            models.display()
        ),
    )
    .unwrap();
    let store = tmp.path().join("store");
    modelcar(&store)
        .cwd(&dir)
        .args(["build", "-q"])
        .run()
        .success();
    let (_, entry) = index_and_entry(&store, "localhost/p/tiny:v2");
    let manifest = blob_json(&store, entry["digest"].as_str().unwrap());
    let config = blob_json(&store, manifest["config"]["digest"].as_str().unwrap());
    assert_eq!(config["descriptor"]["version"], "v2");
}
