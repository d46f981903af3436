//! OpenSSF model signatures inside `/models` (`build --sign-model`, `verify --model-key`), checked
//! with the reference implementation nobody here wrote: `model-signing` 1.1.1 from PyPI
//! (`model_signing verify key`), on the source directory and on `/models` unpacked by umoci.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use serde_json::Value;

use support::cmd::*;
use support::env::Env;
use support::files::*;
use support::fixtures::*;
use support::images::*;
use support::registries::Registry;

const TAG: &str = "localhost/signed/model:v1";

/// `model_signing`, the reference implementation.
fn reference_tool() -> PathBuf {
    support::venv::venv_bin(
        "model-signing",
        "tests/fixtures/model-signing-requirements.txt",
        &["model_signing", "--help"],
    )
    .join("model_signing")
}

/// `model_signing verify key --signature SIG --public_key KEY --allow_symlinks DIR`.
fn reference_verify(signature: &Path, key: &Path, dir: &Path) -> std::process::Output {
    Command::new(reference_tool())
        .args(["verify", "key", "--allow_symlinks", "--signature"])
        .arg(signature)
        .arg("--public_key")
        .arg(key)
        .arg(dir)
        .output()
        .expect("run model_signing")
}

#[track_caller]
fn assert_reference_accepts(signature: &Path, key: &Path, dir: &Path) {
    let out = reference_verify(signature, key, dir);
    assert!(
        out.status.success(),
        "model_signing verify key {}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the reference verifier says when it refuses (it must refuse).
#[track_caller]
fn reference_refusal(signature: &Path, key: &Path, dir: &Path) -> String {
    let out = reference_verify(signature, key, dir);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "model_signing accepted {}: {said}",
        dir.display()
    );
    said
}

/// An EC key pair made by openssl: (private key PEM in PKCS#8, public key PEM).
fn key_pair(dir: &Path, name: &str, curve: &str) -> (PathBuf, PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub"));
    sh(&format!(
        "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:{curve} -out {} && openssl pkey -in {} -pubout -out {}",
        q(&private),
        q(&private),
        q(&public)
    ));
    (private, public)
}

/// A model directory with what a signature has to get right: a subdirectory, a file large
/// enough for a layer of its own (copied in-kernel when nothing asks for its digest), a symlink
/// to a file (signed under its own name), a symlink to a directory (the reference tool does not
/// follow it) and git's files (left out of signatures).
fn model_dir(dir: &Path) -> PathBuf {
    let m = sklearn_models(&dir.join("model"));
    fs::create_dir_all(m.join("sub")).unwrap();
    fs::write(m.join("sub/config.json"), b"{\"n\": 1}\n").unwrap();
    write_random(&m.join("weights.bin"), 3 << 20, 42);
    std::os::unix::fs::symlink("model.joblib", m.join("latest.joblib")).unwrap();
    std::os::unix::fs::symlink("sub", m.join("sub-link")).unwrap();
    fs::create_dir_all(m.join(".git")).unwrap();
    fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main\n").unwrap();
    fs::write(m.join(".gitignore"), b"*.tmp\n").unwrap();
    m
}

const SPLIT: [&str; 2] = ["--layer-threshold", "1MiB"];

fn signed_build(store: &Path, models: &Path, key: &Path, extra: &[&str]) -> String {
    let mut flags = vec!["--sign-model", key.to_str().unwrap()];
    flags.extend_from_slice(&SPLIT);
    flags.extend_from_slice(extra);
    build_one(store, models, TAG, &bases().busybox(), &flags)
}

/// `/models` of an image of a store, unpacked by umoci into `dir`.
fn unpack_models(store: &Path, reference: &str, dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let layout = dir.join("layout");
    skopeo_copy(&[], &oci(store, reference), &oci(&layout, "x"));
    let bundle = dir.join("bundle");
    umoci_unpack(&layout, "x", &bundle);
    bundle.join("rootfs/models")
}

/// The layers of a single-platform image of a store.
fn layer_digests(store: &Path, reference: &str) -> Vec<String> {
    skopeo_raw_json(&oci(store, reference))["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// `/models/model.sig` of an image of a store.
fn signature_of(store: &Path, reference: &str) -> Vec<u8> {
    let m = skopeo_raw_json(&oci(store, reference));
    let last = m["layers"].as_array().unwrap().last().unwrap().clone();
    tar_member(
        &blob_path(store, last["digest"].as_str().unwrap()),
        last["mediaType"].as_str().unwrap(),
        "models/model.sig",
    )
}

/// The statement a signature signs.
fn statement(signature: &[u8]) -> Value {
    let bundle: Value = serde_json::from_slice(signature).unwrap();
    let payload = base64::engine::general_purpose::STANDARD
        .decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// `modelcar verify IMAGE --model-key KEY` in `store`.
fn verify(store: &Path, key: &Path) -> Outcome {
    modelcar(store)
        .args(["verify", TAG, "--model-key"])
        .arg(key)
        .run()
}

/// The `model-signature` line of a verify report, which must have failed.
#[track_caller]
fn verify_fails(store: &Path, key: &Path) -> String {
    let out = verify(store, key);
    assert_eq!(out.status.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("model-signature"))
        .unwrap_or_else(|| panic!("no model-signature check:\n{}", out.stdout));
    assert!(line.contains("FAIL"), "{line}");
    line.to_string()
}

#[test]
fn a_signed_image_verifies_with_the_reference_tool_on_the_source_and_on_models_unpacked() {
    let dir = temp();
    let models = model_dir(dir.path());
    let (key, public) = key_pair(dir.path(), "p256", "P-256");
    let store = dir.path().join("store");
    let digest = signed_build(&store, &models, &key, &[]);

    let unpacked = unpack_models(&store, TAG, &dir.path().join("unpacked"));
    let signature = unpacked.join("model.sig");
    assert_reference_accepts(&signature, &public, &unpacked);
    assert_reference_accepts(&signature, &public, &models);

    // The statement lists every model file once, by relative path, and leaves out git's files.
    let st = statement(&fs::read(&signature).unwrap());
    assert_eq!(
        st["predicateType"], "https://model_signing/signature/v1.0",
        "{st}"
    );
    let names: Vec<&str> = st["predicate"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "latest.joblib",
            "model.joblib",
            "sub/config.json",
            "weights.bin"
        ]
    );
    let weights = st["predicate"]["resources"][3]["digest"].as_str().unwrap();
    assert_eq!(
        format!("sha256:{weights}"),
        sha256(&fs::read(models.join("weights.bin")).unwrap())
    );

    let out = verify(&store, &public).success();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("pass") && l.contains("model-signature")),
        "{}",
        out.stdout
    );

    // A model file changed after signing fails the reference verification.
    let weights = unpacked.join("weights.bin");
    chmod(&weights, 0o644);
    let mut bytes = fs::read(&weights).unwrap();
    bytes[1000] ^= 1;
    fs::write(&weights, &bytes).unwrap();
    let said = reference_refusal(&signature, &public, &unpacked);
    assert!(said.contains("weights.bin"), "{said}");

    // Same inputs and key, same image: in a new store, from the cache, and after an unsigned
    // build left cache entries without file digests.
    assert_eq!(
        signed_build(&dir.path().join("store2"), &models, &key, &[]),
        digest
    );
    assert_eq!(signed_build(&store, &models, &key, &[]), digest);
    let store3 = dir.path().join("store3");
    build_one(&store3, &models, TAG, &bases().busybox(), &SPLIT);
    let unsigned_layers = layer_digests(&store3, TAG);
    assert_eq!(signed_build(&store3, &models, &key, &[]), digest);
    // The model layers are the same signed or not; the signature adds a layer of its own.
    let signed_layers = layer_digests(&store3, TAG);
    assert_eq!(
        signed_layers[..signed_layers.len() - 1],
        unsigned_layers[..]
    );
}

#[test]
fn verify_model_key_finds_changed_missing_and_unsigned_files_and_a_wrong_key() {
    let dir = temp();
    let models = model_dir(dir.path());
    let (key, public) = key_pair(dir.path(), "p256", "P-256");
    let (_, other_public) = key_pair(dir.path(), "other", "P-256");
    let signed_store = dir.path().join("signed");
    signed_build(&signed_store, &models, &key, &[]);
    let signature = signature_of(&signed_store, TAG);

    let line = verify_fails(&signed_store, &other_public);
    assert!(line.contains("another key"), "{line}");

    // An image with no signature.
    let plain = dir.path().join("plain");
    build_one(&plain, &models, TAG, &bases().busybox(), &[]);
    let line = verify_fails(&plain, &public);
    assert!(line.contains("no /models/model.sig"), "{line}");

    // Images of model directories that hold the signature of the original files, built
    // without signing (the signature is then copied as it is).
    let variant = |name: &str, change: &dyn Fn(&Path)| -> PathBuf {
        let m = dir.path().join(name);
        sh(&format!("cp -a {} {}", q(&models), q(&m)));
        fs::write(m.join("model.sig"), &signature).unwrap();
        change(&m);
        let store = dir.path().join(format!("{name}-store"));
        build_one(&store, &m, TAG, &bases().busybox(), &SPLIT);
        store
    };
    let same = variant("same", &|_| {});
    verify(&same, &public).success();
    let changed = variant("changed", &|m| {
        write_random(&m.join("weights.bin"), 3 << 20, 7)
    });
    let line = verify_fails(&changed, &public);
    assert!(
        line.contains("1 changed since signing (weights.bin)"),
        "{line}"
    );
    let added = variant("added", &|m| {
        fs::write(m.join("sub/extra.txt"), b"x").unwrap()
    });
    let line = verify_fails(&added, &public);
    assert!(line.contains("1 not signed (sub/extra.txt)"), "{line}");
    let removed = variant("removed", &|m| {
        fs::remove_file(m.join("sub/config.json")).unwrap()
    });
    let line = verify_fails(&removed, &public);
    assert!(
        line.contains("1 signed but missing (sub/config.json)"),
        "{line}"
    );

    // A payload changed after signing (a digest swapped), the key hint left as it was.
    let mut bundle: Value = serde_json::from_slice(&signature).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = String::from_utf8(
        b64.decode(bundle["dsseEnvelope"]["payload"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    let st = statement(&signature);
    let original = st["predicate"]["resources"][3]["digest"].as_str().unwrap();
    let payload = payload.replace(original, &sha256(b"something else"));
    bundle["dsseEnvelope"]["payload"] = b64.encode(payload).into();
    let tampered = serde_json::to_vec(&bundle).unwrap();
    let m = dir.path().join("tampered");
    sh(&format!("cp -a {} {}", q(&models), q(&m)));
    fs::write(m.join("model.sig"), &tampered).unwrap();
    let reference = reference_refusal(&m.join("model.sig"), &public, &m);
    assert!(!reference.is_empty());
    let store = dir.path().join("tampered-store");
    build_one(&store, &m, TAG, &bases().busybox(), &SPLIT);
    let line = verify_fails(&store, &public);
    assert!(line.contains("does not verify"), "{line}");
}

#[test]
fn bad_keys_and_a_model_signed_already_are_refused_before_anything_is_written() {
    let dir = temp();
    let models = model_dir(dir.path());
    let (key, public) = key_pair(dir.path(), "p256", "P-256");
    let rsa = dir.path().join("rsa.pem");
    let rsa_pub = dir.path().join("rsa.pub");
    sh(&format!(
        "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out {} 2>/dev/null && openssl pkey -in {} -pubout -out {}",
        q(&rsa),
        q(&rsa),
        q(&rsa_pub)
    ));
    let encrypted = dir.path().join("encrypted.pem");
    sh(&format!(
        "openssl pkcs8 -topk8 -in {} -passout pass:secret -out {}",
        q(&key),
        q(&encrypted)
    ));
    let text = dir.path().join("notes.txt");
    fs::write(&text, "not a key\n").unwrap();
    let store = dir.path().join("store");
    let base = bases().busybox();

    for (file, says) in [
        (&public, "this is a public key"),
        (&rsa, "not a P-256, P-384 or P-521"),
        (&encrypted, "the key is encrypted"),
        (&text, "is not a PEM file"),
        (&dir.path().join("missing.pem"), "cannot read the key file"),
    ] {
        modelcar(&store)
            .build(&models, TAG, &base)
            .arg("--sign-model")
            .arg(file)
            .run()
            .failure()
            .stderr_has(&[file.to_str().unwrap(), says]);
        assert!(
            !store.join("index.json").exists() || index_refs(&store).is_empty(),
            "a refused build tagged an image"
        );
    }
    fs::write(models.join("model.sig"), b"{}").unwrap();
    modelcar(&store)
        .build(&models, TAG, &base)
        .arg("--sign-model")
        .arg(&key)
        .run()
        .failure()
        .stderr_has(&["already holds model.sig", "hint:"]);
    fs::remove_file(models.join("model.sig")).unwrap();

    signed_build(&store, &models, &key, &[]);
    for (file, says) in [
        (&key, "this is a private key"),
        (&rsa_pub, "not a P-256, P-384 or P-521"),
        (&text, "is not a PEM file"),
    ] {
        modelcar(&store)
            .args(["verify", TAG, "--model-key"])
            .arg(file)
            .run()
            .failure()
            .stderr_has(&[file.to_str().unwrap(), says]);
    }
}

#[test]
fn p384_sec1_keys_sign_from_the_project_file() {
    let dir = temp();
    let project = dir.path().join("project");
    let models = model_dir(&project);
    assert_eq!(models, project.join("model"));
    fs::create_dir_all(project.join("keys")).unwrap();
    let key = project.join("keys/signing.pem");
    let public = project.join("keys/signing.pub");
    sh(&format!(
        "openssl ecparam -name secp384r1 -genkey -noout -out {} && openssl pkey -in {} -pubout -out {}",
        q(&key),
        q(&key),
        q(&public)
    ));
    assert!(fs::read_to_string(&key)
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    fs::write(
        project.join("modelcar.toml"),
        format!(
            "registry = \"localhost/signed\"\nversion = \"v1\"\nbase = \"{}\"\n\n[images.model]\nrepository = \"model\"\nmodels = \"model\"\nsign-model = \"keys/signing.pem\"\n",
            bases().busybox()
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    modelcar(&store)
        .cwd(&project)
        .args(["build", "--all"])
        .run()
        .success();
    let unpacked = unpack_models(&store, TAG, &dir.path().join("unpacked"));
    assert_reference_accepts(&unpacked.join("model.sig"), &public, &unpacked);
    verify(&store, &public).success();
}

#[test]
fn p521_keys_sign_deterministically_in_pkcs8_and_sec1() {
    let dir = temp();
    let models = model_dir(dir.path());
    let (pkcs8, public) = key_pair(dir.path(), "p521", "P-521");
    // The same key in SEC1 (`EC PRIVATE KEY`), as `openssl ecparam -genkey` writes keys.
    let sec1 = dir.path().join("p521-sec1.pem");
    sh(&format!(
        "openssl ec -in {} -out {} 2>/dev/null",
        q(&pkcs8),
        q(&sec1)
    ));
    assert!(fs::read_to_string(&sec1)
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));

    let store = dir.path().join("store");
    let digest = signed_build(&store, &models, &pkcs8, &[]);
    let signature = signature_of(&store, TAG);
    let unpacked = unpack_models(&store, TAG, &dir.path().join("unpacked"));
    assert_reference_accepts(&unpacked.join("model.sig"), &public, &unpacked);
    assert_reference_accepts(&unpacked.join("model.sig"), &public, &models);
    verify(&store, &public).success();
    // A P-521 signature is DER of two integers of up to 66 bytes each, over SHA-512.
    let bundle: Value = serde_json::from_slice(&signature).unwrap();
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            bundle["dsseEnvelope"]["signatures"][0]["sig"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert!(der.len() > 130, "{} bytes", der.len());

    // RFC 6979: the same files and key give the same signature and image, from either encoding
    // of the key and in a store that never saw the model.
    let store2 = dir.path().join("store2");
    assert_eq!(signed_build(&store2, &models, &sec1, &[]), digest);
    assert_eq!(signature_of(&store2, TAG), signature);
    let (_, other) = key_pair(dir.path(), "p521-other", "P-521");
    let line = verify_fails(&store, &other);
    assert!(line.contains("another key"), "{line}");
}

#[test]
fn a_signed_build_streamed_to_a_registry_verifies_after_a_pull() {
    let registry = Registry::plain();
    let env = Env::new();
    let models = model_dir(env.dir.path());
    let (key, public) = key_pair(env.dir.path(), "p256", "P-256");
    let dest = format!("{}/signed/model:v1", registry.host());
    env.cmd()
        .args(["--tls-verify=false", "-q", "build", "--push", "--models"])
        .arg(&models)
        .args(["--tag", &dest, "--base", &bases().busybox(), "--sign-model"])
        .arg(&key)
        .args(SPLIT)
        .run()
        .success();
    let layout = env.path("pulled");
    env.skopeo_pull(&[], &dest, &oci(&layout, "x")).success();
    let bundle = env.path("bundle");
    umoci_unpack(&layout, "x", &bundle);
    let unpacked = bundle.join("rootfs/models");
    assert_reference_accepts(&unpacked.join("model.sig"), &public, &unpacked);
    env.cmd()
        .args(["--tls-verify=false", "verify", &dest, "--model-key"])
        .arg(&public)
        .run()
        .success();
}

#[test]
fn verify_model_key_accepts_what_the_reference_tool_signed() {
    let dir = temp();
    let models = model_dir(dir.path());
    for (name, curve) in [("p256", "P-256"), ("p384", "P-384"), ("p521", "P-521")] {
        let (key, public) = key_pair(dir.path(), name, curve);
        // The reference tool writes model.sig into the model directory (and leaves it out).
        let out = Command::new(reference_tool())
            .args(["sign", "key", "--allow_symlinks", "--private_key"])
            .arg(&key)
            .arg("--signature")
            .arg(models.join("model.sig"))
            .arg(&models)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let store = dir.path().join(format!("store-{name}"));
        build_one(&store, &models, TAG, &bases().busybox(), &SPLIT);
        verify(&store, &public).success();
        let (_, other) = key_pair(dir.path(), &format!("{name}-other"), curve);
        let line = verify_fails(&store, &other);
        assert!(line.contains("another key"), "{line}");
    }
}

#[test]
fn a_multi_platform_image_shares_one_signature_checked_for_every_platform() {
    let dir = temp();
    let models = model_dir(dir.path());
    let (key, public) = key_pair(dir.path(), "p256", "P-256");
    let store = dir.path().join("store");
    build_one(
        &store,
        &models,
        TAG,
        &bases().multi(),
        &["--sign-model", key.to_str().unwrap()],
    );
    let index = skopeo_raw_json(&oci(&store, TAG));
    let last_layers: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let blob = blob_path(&store, m["digest"].as_str().unwrap());
            read_json(&blob)["layers"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()["digest"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(last_layers.len(), 2);
    assert_eq!(
        last_layers[0], last_layers[1],
        "one signature layer for both"
    );
    let out = verify(&store, &public).success();
    let passed = out
        .stdout
        .lines()
        .filter(|l| l.contains("pass") && l.contains("model-signature"))
        .count();
    assert_eq!(passed, 2, "{}", out.stdout);
}
