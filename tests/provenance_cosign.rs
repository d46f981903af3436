//! Provenance against a real registry (Debian's `docker-registry`, the CNCF distribution
//! registry 2.8, which has no referrers API): cosign-compatible signatures and the CycloneDX
//! ML-BOM pushed as an OCI referrer.
//!
//! There is no cosign on these machines and Debian's skopeo is built with sigstore disabled, so
//! cosign's formats are checked by an independent implementation written from cosign's
//! specifications in Python (`tests/provenance_check.py`: `cryptography` and PyNaCl): it makes
//! keys modelcar must read, opens keys modelcar makes, and verifies the signatures modelcar
//! stores, fetching them from the registry itself. The BOM is validated against the CycloneDX
//! 1.6 schema with `cyclonedx-python-lib`. The Python packages are pinned in
//! `tests/provenance-requirements.txt` and installed once into a venv under
//! `~/.cache/modelcar-provenance`.
//!
//! Needs docker-registry, skopeo, umoci, busybox-static, openssl and python3 with venv (and
//! PyPI the first time).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use support::env::Env;
use support::files::sha256;
use support::fixtures::{bases, example_model, repo_root};
use support::proxy::{FaultProxy, Rule};
use support::registries::{Registry, RegistryOptions};
use support::token::TokenService;

const EPOCH: &str = "1700000000";

/// The venv of the Python checkers, made once (under a lock) and kept, keyed on the pinned
/// requirements.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let requirements = repo_root().join("tests/provenance-requirements.txt");
        let key = sha256(&std::fs::read(&requirements).unwrap());
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache")
            })
            .join("modelcar-provenance");
        std::fs::create_dir_all(&cache).unwrap();
        let venv = cache.join(format!("venv-{}", &key[7..23]));
        let python = venv.join("bin/python");
        if !venv.join(".complete").exists() {
            let lock = std::fs::File::create(cache.join("venv.lock")).unwrap();
            lock.lock().unwrap();
            if !venv.join(".complete").exists() {
                // Venvs of older requirements go.
                for old in std::fs::read_dir(&cache).unwrap().flatten() {
                    let name = old.file_name().to_string_lossy().into_owned();
                    if name.starts_with("venv-") && old.path() != venv {
                        let _ = std::fs::remove_dir_all(old.path());
                    }
                }
                let _ = std::fs::remove_dir_all(&venv);
                let ok = |c: &mut Command| {
                    let out = c.output().expect("run python3");
                    assert!(
                        out.status.success(),
                        "{c:?}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                };
                ok(Command::new("python3").arg("-m").arg("venv").arg(&venv));
                ok(Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                    ])
                    .args(["--no-deps", "-r"])
                    .arg(&requirements));
                std::fs::write(venv.join(".complete"), b"").unwrap();
            }
        }
        python
    })
}

/// Run the Python checker; its standard output, or the failure.
fn check(args: &[&str]) -> Result<String, String> {
    let out = Command::new(python())
        .arg(repo_root().join("tests/provenance_check.py"))
        .args(args)
        .output()
        .expect("run the Python checker");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[track_caller]
fn check_ok(args: &[&str]) -> String {
    check(args).unwrap_or_else(|e| panic!("provenance_check.py {args:?} failed:\n{e}"))
}

/// The signature layers of `repo`'s image `digest`, as the Python verifier sees them, checked
/// against each of `pubs`.
fn signatures(reg: &Registry, repo: &str, digest: &str, pubs: &[&Path]) -> Vec<Value> {
    let host = reg.host();
    let mut args = vec!["signatures", &host, repo, digest];
    let pubs: Vec<String> = pubs.iter().map(|p| p.display().to_string()).collect();
    args.extend(pubs.iter().map(String::as_str));
    serde_json::from_str::<Value>(&check_ok(&args))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn busybox() -> String {
    format!("oci:{}:busybox", bases().layout.display())
}

/// Build the sklearn example as `reference` into `env`'s store (with SOURCE_DATE_EPOCH).
fn build(env: &Env, reference: &str, extra: &[&str]) -> String {
    env.cmd().env("SOURCE_DATE_EPOCH", EPOCH).build_one(
        &example_model("sklearn"),
        reference,
        &busybox(),
        extra,
    )
}

/// Write a file in the environment's directory; its path.
fn write(env: &Env, name: &str, text: &str) -> PathBuf {
    let p = env.path(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn signatures_use_cosigns_formats_for_keys_made_by_cosigns_format_or_by_modelcar() {
    let reg = Registry::plain();
    let env = Env::new();
    let image = format!("{}/models/iris:v1", reg.host());
    let digest = build(&env, &image, &[]);

    // A key made by the independent implementation signs a push.
    let py = env.path("py");
    check_ok(&["make-key", s(&py), "py-secret"]);
    let py_pass = write(&env, "py-pass", "py-secret\n");
    let py_key = py.with_extension("key");
    let py_pub = py.with_extension("pub");
    env.modelcar(&[
        "push",
        &image,
        "--sign-by-sigstore-private-key",
        s(&py_key),
        "--sign-passphrase-file",
        s(&py_pass),
    ])
    .success();
    assert_eq!(env.skopeo_digest(&image), digest);
    let sig_tag = format!(
        "{}/models/iris:{}.sig",
        reg.host(),
        digest.replace(':', "-")
    );
    let sig = env.skopeo_raw(&sig_tag);
    assert_eq!(sig["layers"].as_array().unwrap().len(), 1, "{sig}");
    let layers = signatures(&reg, "models/iris", &digest, &[&py_pub]);
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["verified_by"][0], s(&py_pub));
    assert_eq!(layers[0]["docker_manifest_digest"], digest.as_str());
    assert_eq!(
        layers[0]["docker_reference"],
        format!("{}/models/iris", reg.host())
    );
    assert_eq!(layers[0]["type"], "cosign container image signature");

    // A key modelcar makes opens with the independent implementation, and its signature is
    // added beside the first, which stays.
    let mc = env.path("mc");
    env.cmd()
        .env("COSIGN_PASSWORD", "mc-secret")
        .args(["generate-key", "--output-prefix", s(&mc)])
        .run()
        .success();
    let mc_key = mc.with_extension("key");
    let mc_pub = mc.with_extension("pub");
    assert!(std::fs::read_to_string(&mc_key)
        .unwrap()
        .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    check_ok(&["open-key", s(&mc_key), "mc-secret", s(&mc_pub)]);
    assert!(check(&["open-key", s(&mc_key), "not-it", s(&mc_pub)]).is_err());
    for _ in 0..2 {
        // Twice: the same signature is not stored twice.
        env.cmd()
            .env("COSIGN_PASSWORD", "mc-secret")
            .args(["sign", &image, "--sign-by-sigstore-private-key", s(&mc_key)])
            .run()
            .success();
    }
    let layers = signatures(&reg, "models/iris", &digest, &[&py_pub, &mc_pub]);
    assert_eq!(layers.len(), 2, "{layers:?}");
    assert_eq!(layers[0]["verified_by"], serde_json::json!([s(&py_pub)]));
    assert_eq!(layers[1]["verified_by"], serde_json::json!([s(&mc_pub)]));
    assert_eq!(layers[1]["docker_manifest_digest"], digest.as_str());

    for public in [&py_pub, &mc_pub] {
        env.modelcar(&["verify", &image, "--sigstore-public-key", s(public)])
            .success();
    }
    let listed = env
        .modelcar(&["inspect", &image, "--referrers", "--json"])
        .success()
        .json();
    let sigs: Vec<&Value> = listed["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "signature")
        .collect();
    assert_eq!(sigs.len(), 1, "{listed}");
    assert_eq!(sigs[0]["found_by"], "cosign-tag");
    assert_eq!(sigs[0]["signatures"], 2);
}

#[test]
fn build_push_signs_the_index_of_a_multi_platform_image() {
    let reg = Registry::plain();
    let env = Env::new();
    let image = format!("{}/models/multi:v1", reg.host());
    let mc = env.path("mc");
    env.modelcar(&["generate-key", "--output-prefix", s(&mc)])
        .success();
    let out = env
        .cmd()
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .build(
            &example_model("sklearn"),
            &image,
            &format!("oci:{}:multi", bases().layout.display()),
        )
        .args(["--push", "--sign-by-sigstore-private-key"])
        .arg(mc.with_extension("key"))
        .run()
        .success();
    let digest = out.digest();
    let top = env.skopeo_raw(&image);
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(env.skopeo_digest(&image), digest);
    let pub_key = mc.with_extension("pub");
    let layers = signatures(&reg, "models/multi", &digest, &[&pub_key]);
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0]["docker_manifest_digest"], digest.as_str());
    assert_eq!(layers[0]["verified_by"][0], s(&pub_key));
    // build --push sends the BOM as a referrer too.
    let index = env.skopeo_raw(&format!(
        "{}/models/multi:{}",
        reg.host(),
        digest.replace(':', "-")
    ));
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.cyclonedx+json"
    );
}

/// `verify REF --sigstore-public-key KEY --json`, which must exit with `code` (0: a signature
/// covers the digest; 1: the image fails the check): the report's `cosign_signature`, after
/// checking that its finding says the same and that the human report shows it.
#[track_caller]
fn cosign_verdict(env: &Env, image: &str, key: &Path, code: i32) -> Value {
    let out = env.modelcar(&["verify", image, "--sigstore-public-key", s(key), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{}\n{}\n{}",
        out.command,
        out.stdout,
        out.stderr
    );
    let report = out.json();
    let check = report["cosign_signature"].clone();
    assert_eq!(check["key"], s(key), "{report}");
    let finding = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "cosign-signature")
        .unwrap_or_else(|| panic!("no cosign-signature finding: {report}"))
        .clone();
    assert_eq!(finding["severity"], check["result"], "{report}");
    let human = env.modelcar(&["verify", image, "--sigstore-public-key", s(key)]);
    assert_eq!(human.status.code(), Some(code), "{}", human.stdout);
    let line = human
        .stdout
        .lines()
        .find(|l| l.contains("cosign-signature"))
        .unwrap_or_else(|| panic!("no cosign-signature line:\n{}", human.stdout));
    let mark = if code == 0 { "pass" } else { "FAIL" };
    assert!(line.trim_start().starts_with(mark), "{line}");
    check
}

#[test]
fn verify_fails_no_signature_another_key_a_tampered_payload_and_another_digest() {
    let reg = Registry::plain();
    let env = Env::new();
    let a = format!("{}/models/iris:a", reg.host());
    let b = format!("{}/models/iris:b", reg.host());
    let digest_a = build(&env, &a, &[]);
    let digest_b = build(&env, &b, &["--owner", "1002:0"]);
    assert_ne!(digest_a, digest_b);
    for name in ["k1", "k2"] {
        env.modelcar(&["generate-key", "--output-prefix", s(&env.path(name))])
            .success();
    }
    let k1 = env.path("k1.key");
    let p1 = env.path("k1.pub");
    let p2 = env.path("k2.pub");
    let repository = format!("{}/models/iris", reg.host());
    env.modelcar(&["push", &a]).success();
    // No signature: the image fails the check (1), it is not an error (2).
    let unsigned = cosign_verdict(&env, &a, &p1, 1);
    assert_eq!(unsigned["result"], "fail");
    assert_eq!(unsigned["digest"], digest_a.as_str());
    assert_eq!(unsigned["repository"], repository.as_str());
    let why = unsigned["reason"].as_str().unwrap();
    assert!(
        why.contains("has no cosign signature") && why.contains(&digest_a.replace(':', "-")),
        "{why}"
    );
    assert!(unsigned["hint"].as_str().unwrap().contains("modelcar sign"));

    env.modelcar(&["sign", &a, "--sign-by-sigstore-private-key", s(&k1)])
        .success();
    let signed = cosign_verdict(&env, &a, &p1, 0);
    assert_eq!(signed["result"], "pass");
    assert_eq!(signed["digest"], digest_a.as_str());
    assert_eq!(signed["identity"], repository.as_str());
    assert!(signed.get("reason").is_none(), "{signed}");
    let other_key = cosign_verdict(&env, &a, &p2, 1);
    let why = other_key["reason"].as_str().unwrap();
    assert!(
        why.contains("no valid signature") && why.contains("does not match the public key"),
        "{why}"
    );

    // A payload changed after signing (kept with its signature) no longer verifies.
    check_ok(&["tamper", &reg.host(), "models/iris", &digest_a]);
    let tampered = cosign_verdict(&env, &a, &p1, 1);
    assert!(
        tampered["reason"]
            .as_str()
            .unwrap()
            .contains("does not match the public key"),
        "{tampered}"
    );

    // A valid signature of another image, put where a's signatures belong.
    env.modelcar(&["push", &b, "--sign-by-sigstore-private-key", s(&k1)])
        .success();
    env.skopeo(&[
        "copy",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        "--preserve-digests",
        &format!(
            "docker://{}/models/iris:{}.sig",
            reg.host(),
            digest_b.replace(':', "-")
        ),
        &format!(
            "docker://{}/models/iris:{}.sig",
            reg.host(),
            digest_a.replace(':', "-")
        ),
    ])
    .success();
    let moved = cosign_verdict(&env, &a, &p1, 1);
    assert!(
        moved["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("the payload signs {digest_b}, not {digest_a}")),
        "{moved}"
    );
    cosign_verdict(&env, &b, &p1, 0);

    // Errors stay errors (2): an unreadable key, a registry that cannot be reached.
    env.modelcar(&[
        "verify",
        &a,
        "--sigstore-public-key",
        s(&env.path("missing.pub")),
    ])
    .failure()
    .stderr_has(&["missing.pub"]);
    // Port 1 on loopback: nothing listens, the connection is refused.
    env.modelcar(&[
        "--retries",
        "0",
        "verify",
        "127.0.0.1:1/models/iris:a",
        "--sigstore-public-key",
        s(&p1),
    ])
    .failure();
}

#[test]
fn bad_keys_and_passphrases_are_refused_before_anything_is_pushed() {
    let reg = Registry::plain();
    let env = Env::new();
    let image = format!("{}/models/iris:v1", reg.host());
    build(&env, &image, &[]);
    let k = env.path("k");
    let pass = write(&env, "pass", "right\n");
    env.modelcar(&[
        "generate-key",
        "--output-prefix",
        s(&k),
        "--passphrase-file",
        s(&pass),
    ])
    .success();
    env.modelcar(&["generate-key", "--output-prefix", s(&k)])
        .failure()
        .stderr_has(&["k.key already exists"]);
    let key = k.with_extension("key");
    let public = k.with_extension("pub");
    let wrong = write(&env, "wrong", "wrong\n");
    let pkcs8 = env.path("plain.pem");
    support::cmd::tool_ok(
        "openssl",
        [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            s(&pkcs8),
        ],
    );
    let push = |key: &Path, pass: &Path| {
        env.modelcar(&[
            "push",
            &image,
            "--sign-by-sigstore-private-key",
            s(key),
            "--sign-passphrase-file",
            s(pass),
        ])
        .failure()
    };
    push(&key, &wrong).stderr_has(&["cannot decrypt", "k.key", "wrong passphrase", "hint:"]);
    push(&public, &pass).stderr_has(&["k.pub is not a cosign private key", "`PUBLIC KEY`"]);
    push(&pkcs8, &pass).stderr_has(&["plain.pem is not a cosign private key", "`PRIVATE KEY`"]);
    env.modelcar(&["push", &image, "--sign-by-sigstore-private-key", s(&key)])
        .failure()
        .stderr_has(&["wrong passphrase"]);
    // Nothing reached the registry.
    let tags = env.skopeo(&[
        "list-tags",
        "--tls-verify=false",
        &format!("docker://{}/models/iris", reg.host()),
    ]);
    assert!(
        !tags.status.success(),
        "the registry has tags: {}",
        tags.stdout
    );
    env.modelcar(&["verify", &image, "--sigstore-public-key", s(&key)])
        .failure()
        .stderr_has(&["is not an ECDSA P-256 public key"]);
    // A P-521 key sealed in cosign's format (as `cosign import-key-pair` keeps one): refused,
    // saying which keys work, before anything is pushed; its public key cannot check either.
    let p521 = env.path("p521");
    check_ok(&["make-key", s(&p521), "right", "P-521"]);
    push(&p521.with_extension("key"), &pass).stderr_has(&[
        "p521.key",
        "not an ECDSA P-256 key",
        "P-256 keys only",
        "generate-key",
    ]);
    env.modelcar(&[
        "verify",
        &image,
        "--sigstore-public-key",
        s(&p521.with_extension("pub")),
    ])
    .failure()
    .stderr_has(&["p521.pub", "P-256 keys only"]);
    env.cmd()
        .build(&example_model("sklearn"), &image, &busybox())
        .args(["--sign-by-sigstore-private-key", s(&key)])
        .run()
        .failure()
        .stderr_has(&["needs --push"]);
}

#[test]
fn a_registry_that_refuses_the_tags_gets_a_clear_error_and_no_half_signature() {
    let reg = Registry::plain();
    let proxy = FaultProxy::start(reg.addr());
    let env = Env::new();
    let image = format!("{}/models/iris:v1", proxy.host());
    let digest = build(&env, &image, &[]);
    for name in ["k1", "k2"] {
        env.modelcar(&["generate-key", "--output-prefix", s(&env.path(name))])
            .success();
    }
    let hex = digest.replace(':', "-");
    proxy.add_rule(
        Rule::status(403)
            .method("PUT")
            .path(&format!("manifests/{hex}"))
            .always(),
    );
    env.modelcar(&["push", &image])
        .failure()
        .stderr_has(&[&hex, "403"]);
    proxy.clear_rules();
    env.modelcar(&[
        "push",
        &image,
        "--sign-by-sigstore-private-key",
        s(&env.path("k1.key")),
    ])
    .success();
    proxy.add_rule(
        Rule::status(403)
            .method("PUT")
            .path(&format!("{hex}.sig"))
            .always(),
    );
    env.modelcar(&[
        "sign",
        &image,
        "--sign-by-sigstore-private-key",
        s(&env.path("k2.key")),
    ])
    .failure()
    .stderr_has(&[&format!("{hex}.sig"), "403"]);
    // The first signature is there as it was, and nothing of the second.
    let layers = signatures(
        &reg,
        "models/iris",
        &digest,
        &[&env.path("k1.pub"), &env.path("k2.pub")],
    );
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_eq!(layers[0]["verified_by"][0], s(&env.path("k1.pub")));
}

#[test]
fn every_build_records_a_valid_reproducible_bom_without_paths_of_the_machine() {
    let first = Env::new();
    let second = Env::new();
    let image = "registry.example/models/iris:v1";
    let digest = build(&first, image, &[]);
    assert_eq!(build(&second, image, &[]), digest);
    let bom = first.modelcar(&["sbom", image]).success().stdout;
    assert_eq!(bom, second.modelcar(&["sbom", image]).success().stdout);
    let file = write(&first, "bom.json", &bom);
    assert_eq!(check_ok(&["validate-bom", s(&file)]), "ok");

    let v: Value = serde_json::from_str(&bom).unwrap();
    assert_eq!(v["specVersion"], "1.6");
    assert_eq!(v["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(v["metadata"]["tools"]["components"][0]["name"], "modelcar");
    let model = &v["components"][0];
    assert_eq!(model["type"], "machine-learning-model");
    assert_eq!(model["name"], "iris");
    assert_eq!(model["version"], "v1");
    assert_eq!(
        model["modelCard"]["modelParameters"]["architectureFamily"],
        "sklearn"
    );
    let files = model["components"].as_array().unwrap();
    let on_disk = std::fs::read(example_model("sklearn").join("model.joblib")).unwrap();
    let joblib = files.iter().find(|f| f["name"] == "model.joblib").unwrap();
    assert_eq!(joblib["hashes"][0]["content"], &sha256(&on_disk)[7..]);
    assert_eq!(joblib["properties"][0]["value"], on_disk.len().to_string());
    let inspected = first
        .modelcar(&["inspect", image, "--json"])
        .success()
        .json();
    assert_eq!(v["components"][1]["type"], "container");
    assert_eq!(
        v["components"][1]["version"],
        inspected["annotations"]["org.opencontainers.image.base.digest"]
    );
    for path in [
        repo_root().display().to_string(),
        bases().dir.display().to_string(),
        first.dir.path().display().to_string(),
    ] {
        assert!(!bom.contains(&path), "the BOM names {path}");
    }
}

#[test]
fn pushed_boms_are_referrers_through_the_tag_schema_beside_those_of_other_tools() {
    let reg = Registry::plain();
    let env = Env::new();
    let image = format!("{}/models/iris:v1", reg.host());
    let digest = build(&env, &image, &[]);
    let bom = env.modelcar(&["sbom", &image]).success().stdout;

    // The image reaches the registry without modelcar, and another tool adds a referrer.
    let layout = env.path("layout");
    env.modelcar(&["export", &image, &format!("oci:{}:v1", layout.display())])
        .success();
    env.skopeo_push(&[], &format!("oci:{}:v1", layout.display()), &image);
    let other = check_ok(&[
        "add-referrer",
        &reg.host(),
        "models/iris",
        &digest,
        "application/vnd.example.other+json",
    ]);

    let pushed = env.modelcar(&["push", &image, "--json"]).success().json();
    let tag = format!("{}/models/iris:{}", reg.host(), digest.replace(':', "-"));
    let index = env.skopeo_raw(&tag);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{index}");
    assert_eq!(listed[0]["digest"], other.as_str());
    assert_eq!(listed[1]["artifactType"], "application/vnd.cyclonedx+json");
    let referrer = env.skopeo_raw(&format!(
        "{}/models/iris@{}",
        reg.host(),
        listed[1]["digest"].as_str().unwrap()
    ));
    assert_eq!(pushed[0]["referrers"][0], listed[1]["digest"]);
    assert_eq!(referrer["subject"]["digest"], digest.as_str());
    assert_eq!(referrer["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(
        referrer["layers"][0]["digest"],
        sha256(bom.trim_end().as_bytes())
    );

    // Pushing again changes nothing; inspect lists both; a fresh store gets the BOM back.
    env.modelcar(&["push", &image]).success();
    assert_eq!(env.skopeo_raw(&tag), index);
    let referrers = env
        .modelcar(&["inspect", &image, "--referrers", "--json"])
        .success()
        .json();
    let kinds: Vec<(&str, &str)> = referrers["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["kind"].as_str().unwrap(), r["found_by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("application/vnd.example.other+json", "tag-schema"),
            ("sbom", "tag-schema")
        ]
    );
    let fresh = Env::new();
    assert_eq!(fresh.modelcar(&["sbom", &image]).success().stdout, bom);
}

#[test]
fn the_bom_stays_in_the_store_as_long_as_its_image() {
    let env = Env::new();
    let keep = "registry.example/models/iris:keep";
    let drop = "registry.example/models/iris:drop";
    let kept = build(&env, keep, &[]);
    let dropped = build(&env, drop, &["--owner", "1002:0"]);
    let subjects = || -> Vec<String> {
        let index = support::files::read_json(&env.store.join("index.json"));
        index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"].is_null())
            .map(|m| {
                let hex = m["digest"].as_str().unwrap().trim_start_matches("sha256:");
                let manifest = support::files::read_json(&env.store.join("blobs/sha256").join(hex));
                manifest["subject"]["digest"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let mut both = subjects();
    both.sort();
    let mut want = vec![kept.clone(), dropped.clone()];
    want.sort();
    assert_eq!(both, want);
    env.modelcar(&["clean", drop]).success();
    assert_eq!(subjects(), vec![kept]);
    env.modelcar(&["sbom", keep]).success();
}

/// A registry with the OCI 1.1 referrers API, in memory: no registry installable here has the
/// API (distribution 2.8 does not), so this fake plays one. It keeps blobs and manifests, answers
/// a manifest with a `subject` with `OCI-Subject`, and lists referrers at
/// `/v2/<repo>/referrers/<digest>`; it records the tags written.
struct ReferrersRegistry {
    server: support::http::Server,
    state: std::sync::Arc<std::sync::Mutex<FakeState>>,
}

#[derive(Default)]
struct FakeState {
    blobs: std::collections::HashMap<String, Vec<u8>>,
    /// (repository, tag or digest) -> (media type, bytes)
    manifests: std::collections::HashMap<(String, String), (String, Vec<u8>)>,
    tags: Vec<String>,
    uploads: usize,
}

impl ReferrersRegistry {
    fn start() -> ReferrersRegistry {
        let state = std::sync::Arc::new(std::sync::Mutex::new(FakeState::default()));
        let shared = state.clone();
        let server = support::http::Server::start(move |conn| serve_fake(&shared, conn));
        ReferrersRegistry { server, state }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.server.port)
    }

    fn tags(&self) -> Vec<String> {
        self.state.lock().unwrap().tags.clone()
    }
}

fn serve_fake(state: &std::sync::Mutex<FakeState>, conn: std::net::TcpStream) {
    use support::http::{read_body, respond, Head};
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut r = std::io::BufReader::new(read_half);
    let mut w = conn;
    while let Ok(Some(head)) = Head::read(&mut r) {
        let Ok(body) = read_body(&mut r, &head) else {
            break;
        };
        let method = head.method().to_string();
        let target = head.target().to_string();
        let path = target.split('?').next().unwrap_or("").to_string();
        let mut st = state.lock().unwrap();
        let (status, headers, out): (u16, Vec<(&str, String)>, Vec<u8>) = if path == "/v2/" {
            (200, vec![], b"{}".to_vec())
        } else if let Some((repo, rest)) = path
            .strip_prefix("/v2/")
            .and_then(|p| {
                p.rsplit_once("/blobs/uploads/")
                    .or_else(|| p.rsplit_once("/blobs/"))
            })
            .map(|(a, b)| (a.to_string(), b.to_string()))
        {
            if path.contains("/blobs/uploads/") {
                if method == "POST" {
                    st.uploads += 1;
                    let loc = format!("/v2/{repo}/blobs/uploads/{}", st.uploads);
                    (202, vec![("Location", loc)], vec![])
                } else {
                    let digest = support::http::query_pairs(&target)
                        .into_iter()
                        .find(|(k, _)| k == "digest")
                        .map(|(_, v)| v)
                        .unwrap_or_default();
                    assert_eq!(
                        sha256(&body),
                        digest,
                        "the fake got a blob that is not its digest"
                    );
                    st.blobs.insert(digest.clone(), body);
                    (201, vec![("Docker-Content-Digest", digest)], vec![])
                }
            } else {
                match st.blobs.get(&rest) {
                    Some(b) if method == "GET" => (200, vec![], b.clone()),
                    Some(b) => (200, vec![("Content-Length", b.len().to_string())], vec![]),
                    None => (404, vec![], vec![]),
                }
            }
        } else if let Some((repo, reference)) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.rsplit_once("/manifests/"))
            .map(|(a, b)| (a.to_string(), b.to_string()))
        {
            let key = (repo.clone(), reference.clone());
            if method == "PUT" {
                let media_type = head.get("content-type").unwrap_or("").to_string();
                let digest = sha256(&body);
                if !reference.starts_with("sha256:") {
                    st.tags.push(reference.clone());
                }
                let subject = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v["subject"]["digest"].as_str().map(str::to_string));
                st.manifests.insert(key, (media_type.clone(), body.clone()));
                st.manifests
                    .insert((repo, digest.clone()), (media_type, body));
                let mut headers = vec![("Docker-Content-Digest", digest)];
                if let Some(s) = subject {
                    headers.push(("OCI-Subject", s));
                }
                (201, headers, vec![])
            } else {
                match st.manifests.get(&key) {
                    Some((mt, b)) => (
                        200,
                        vec![
                            ("Content-Type", mt.clone()),
                            ("Docker-Content-Digest", sha256(b)),
                        ],
                        if method == "GET" { b.clone() } else { vec![] },
                    ),
                    None => (
                        404,
                        vec![],
                        support::http::error_body("MANIFEST_UNKNOWN", "unknown"),
                    ),
                }
            }
        } else if let Some((repo, digest)) = path
            .strip_prefix("/v2/")
            .and_then(|p| p.rsplit_once("/referrers/"))
        {
            let mut seen = std::collections::BTreeSet::new();
            let manifests: Vec<Value> = st
                .manifests
                .iter()
                .filter(|((r, reference), _)| r == repo && reference.starts_with("sha256:"))
                .filter_map(|(_, (mt, b))| {
                    let v: Value = serde_json::from_slice(b).ok()?;
                    (v["subject"]["digest"] == digest && seen.insert(sha256(b))).then(|| {
                        serde_json::json!({
                            "mediaType": mt, "digest": sha256(b), "size": b.len(),
                            "artifactType": v["artifactType"],
                        })
                    })
                })
                .collect();
            let index = serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            });
            (
                200,
                vec![(
                    "Content-Type",
                    "application/vnd.oci.image.index.v1+json".into(),
                )],
                index.to_string().into_bytes(),
            )
        } else {
            (404, vec![], vec![])
        };
        drop(st);
        if method == "HEAD" {
            // A HEAD answer carries the length of what a GET would send, but no body.
            let mut head = Head {
                start: format!("HTTP/1.1 {status} {}", support::http::reason(status)),
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
            };
            if head.get("content-length").is_none() {
                head.set("Content-Length", "0");
            }
            if head.write_to(&mut w).is_err() {
                break;
            }
            continue;
        }
        if respond(&mut w, status, &headers, &out).is_err() {
            break;
        }
    }
}

#[test]
fn a_registry_with_the_referrers_api_indexes_the_bom_itself_and_gets_no_tag_schema() {
    let reg = ReferrersRegistry::start();
    let env = Env::new();
    let image = format!("{}/models/iris:v1", reg.host());
    let digest = build(&env, &image, &[]);
    let bom = env.modelcar(&["sbom", &image]).success().stdout;
    env.modelcar(&["push", &image]).success();
    // Only the image's tag: the registry indexed the BOM, so no referrers tag was written.
    assert_eq!(reg.tags(), ["v1"]);
    let listed = env
        .modelcar(&["inspect", &image, "--referrers", "--json"])
        .success()
        .json();
    assert_eq!(listed["digest"], digest.as_str());
    let referrers = listed["referrers"].as_array().unwrap();
    assert_eq!(referrers.len(), 1, "{listed}");
    assert_eq!(referrers[0]["kind"], "sbom");
    assert_eq!(referrers[0]["found_by"], "referrers-api");
    assert_eq!(Env::new().modelcar(&["sbom", &image]).success().stdout, bom);
}

#[test]
fn signatures_and_boms_go_to_a_registry_with_token_authentication() {
    let env = Env::new();
    let (user, password) = ("alice", "Pa55-w0rd-provenance");
    let tokens = TokenService::start(&env.path("token"), &[(user, password)]);
    let reg = Registry::start(RegistryOptions {
        tls: None,
        auth: tokens.auth(),
    });
    let image = format!("{}/models/iris:v1", reg.host());
    let digest = build(&env, &image, &[]);
    env.modelcar_stdin(
        &["login", &reg.host(), "-u", user, "--password-stdin"],
        &format!("{password}\n"),
    )
    .success();
    let k = env.path("k");
    env.modelcar(&["generate-key", "--output-prefix", s(&k)])
        .success();
    env.modelcar(&[
        "push",
        &image,
        "--sign-by-sigstore-private-key",
        s(&k.with_extension("key")),
    ])
    .success();
    env.modelcar(&[
        "verify",
        &image,
        "--sigstore-public-key",
        s(&k.with_extension("pub")),
    ])
    .success();
    let listed = env
        .modelcar(&["inspect", &image, "--referrers", "--json"])
        .success()
        .json();
    let kinds: Vec<&str> = listed["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["sbom", "signature"]);
    let creds = format!("{user}:{password}");
    let sig = env
        .skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &format!(
                "docker://{}/models/iris:{}.sig",
                reg.host(),
                digest.replace(':', "-")
            ),
        ])
        .success()
        .json();
    assert_eq!(
        sig["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );
}
