//! modelcar against real registries: Debian's `docker-registry` (the CNCF distribution
//! registry) plain, behind TLS with Basic authentication, and with token authentication; and a
//! fault-injecting proxy for what a registry cannot be made to do on demand. Every result is
//! checked with skopeo as well as with modelcar.
//!
//! Needs docker-registry, skopeo, umoci, busybox-static, openssl and apache2-utils (htpasswd).

mod support;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;

use support::cmd::{wait, Outcome};
use support::env::Env;
use support::files::read_json;
use support::fixtures::{bases, big_image, example_model, sklearn_models, BigImage};
use support::images::{blob_names, oci};
use support::proxy::{Fault, FaultProxy, Record, Rule};
use support::registries::{htpasswd, Auth, Registry, RegistryOptions, Tls};
use support::token::TokenService;

const MIB: u64 = 1 << 20;
/// modelcar's chunk size for blobs over its monolithic limit.
const CHUNK: u64 = modelcar::registry::push::CHUNK;
/// Where the fault proxy drops the connection of the first PATCH (which carries the whole blob):
/// a chunk and a half into it.
const DROP_AFTER: u64 = CHUNK + CHUNK / 2;

/// Push with `--json`; the one result.
fn push_json(env: &Env, image: &str, dest: Option<&str>, extra: &[&str]) -> Value {
    let mut args = vec!["push", image];
    args.extend(dest);
    args.push("--json");
    args.extend_from_slice(extra);
    let out = env.modelcar(&args).success();
    let v = out.json();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{}", out.stdout);
    v[0].clone()
}

/// The config and layer digests of a manifest, with their sizes.
fn manifest_blobs(manifest: &Value) -> Vec<(String, u64)> {
    std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().expect("layers"))
        .map(|d| {
            (
                d["digest"].as_str().unwrap().to_string(),
                d["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Build the sklearn example into `env`'s store as `tag` on `base`; its digest.
fn build_sklearn(env: &Env, tag: &str, base: &str) -> String {
    env.build(
        &example_model("sklearn"),
        tag,
        base,
        &["--format", "sklearn"],
    )
}

/// A plain registry, and a fault proxy in front of it.
fn proxied_registry() -> (Registry, FaultProxy) {
    let reg = Registry::plain();
    let proxy = FaultProxy::start(reg.addr());
    (reg, proxy)
}

/// Where the tests put the busybox base in a registry.
const BASE_REPO: &str = "base/busybox:latest";

/// [`proxied_registry`] holding the busybox base (copied in by skopeo) as [`BASE_REPO`]; with
/// the base's reference through the proxy.
fn proxied_registry_with_base(env: &Env) -> (Registry, FaultProxy, String) {
    let (reg, proxy) = proxied_registry();
    env.skopeo_push(
        &[],
        &bases().busybox(),
        &format!("{}/{BASE_REPO}", reg.host()),
    );
    let base_ref = format!("{}/{BASE_REPO}", proxy.host());
    (reg, proxy, base_ref)
}

fn images(env: &Env) -> Vec<String> {
    let out = env.modelcar(&["images", "--json"]).success();
    out.json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            i["name"]
                .as_str()
                .or_else(|| i["reference"].as_str())
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

// 1. Pushing to a plain registry.

#[test]
fn pushed_example_images_are_what_skopeo_reads_back_and_a_second_push_uploads_nothing() {
    let reg = Registry::plain();
    let env = Env::new();
    let busybox = bases().busybox();
    for name in ["sklearn", "xgboost", "lightgbm"] {
        let dest = format!("{}/models/{name}:v1", reg.host());
        let built = env.build(&example_model(name), &dest, &busybox, &["--format", name]);
        let digestfile = env.path(&format!("{name}.digest"));
        let r = push_json(
            &env,
            &dest,
            None,
            &["--digestfile", digestfile.to_str().unwrap()],
        );
        assert_eq!(r["digest"], built.as_str());
        assert_eq!(r["reference"], dest.as_str());
        assert_eq!(std::fs::read_to_string(&digestfile).unwrap(), built);

        // The registry serves the same manifest, with every blob modelcar said it uploaded.
        assert_eq!(env.skopeo_digest(&dest), built);
        let blobs = manifest_blobs(&env.skopeo_raw(&dest));
        assert_eq!(r["blobs_uploaded"], blobs.len() as u64, "{r}");
        assert_eq!(r["blobs_present"], 0);
        assert_eq!(r["blobs_mounted"], 0);
        assert_eq!(
            r["bytes_uploaded"],
            blobs.iter().map(|(_, s)| s).sum::<u64>(),
            "{r}"
        );

        // skopeo copies it out, checking every blob against its digest.
        let copy = env.path(&format!("{name}-copy"));
        env.skopeo_pull(&[], &dest, &oci(&copy, name)).success();
        assert_eq!(
            read_json(&copy.join("index.json"))["manifests"][0]["digest"],
            built.as_str()
        );

        // A second push finds every blob there.
        let again = push_json(&env, &dest, None, &[]);
        assert_eq!(again["digest"], built.as_str());
        assert_eq!(again["blobs_uploaded"], 0, "{again}");
        assert_eq!(again["bytes_uploaded"], 0, "{again}");
        assert_eq!(again["blobs_present"], blobs.len() as u64, "{again}");
    }
}

// 2. Pulling.

#[test]
fn an_image_pushed_by_skopeo_is_pulled_into_a_fresh_store_that_skopeo_can_read() {
    let reg = Registry::plain();
    let env = Env::new();
    let dest = format!("{}/{BASE_REPO}", reg.host());
    env.skopeo_push(&[], &bases().busybox(), &dest);
    let want = env.skopeo_digest(&dest);

    let out = env.modelcar(&["pull", &dest]).success();
    assert_eq!(out.stdout.trim(), format!("{dest}@{want}"));
    assert!(images(&env).contains(&dest), "{:?}", images(&env));

    // The store is an OCI layout that skopeo reads the image from, blobs and all.
    let store_ref = oci(&env.store, &dest);
    let inspected = env.skopeo(&["inspect", &store_ref]).success().json();
    assert_eq!(inspected["Digest"], want.as_str());
    env.skopeo(&["copy", &store_ref, &oci(&env.path("copy"), "copy")])
        .success();
}

#[test]
fn kserve_reads_a_pushed_image_from_its_registry_pins_its_digest_and_pulls_no_layer() {
    let reg = Registry::plain();
    let builder = Env::new();
    let busybox = bases().busybox();
    // An sklearn image and an LLM directory (its format recorded as huggingface), pushed.
    let llm = builder.path("llm");
    std::fs::create_dir_all(&llm).unwrap();
    std::fs::write(
        llm.join("config.json"),
        r#"{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}"#,
    )
    .unwrap();
    std::fs::write(llm.join("model.safetensors"), b"\x02\0\0\0\0\0\0\0{}").unwrap();
    let mut pushed = Vec::new();
    for (models, repo, format) in [
        (example_model("sklearn"), "models/sklearn", "sklearn"),
        (llm, "models/llama", "huggingface"),
    ] {
        let dest = format!("{}/{repo}:v1", reg.host());
        builder.build(&models, &dest, &busybox, &["--format", format]);
        let r = push_json(&builder, &dest, None, &[]);
        let digest = r["digest"].as_str().unwrap().to_string();
        assert_eq!(builder.skopeo_digest(&dest), digest);
        pushed.push((dest, repo, digest));
    }

    // A user with an empty store: the format comes from the image's annotation, the digest
    // from the registry.
    let user = Env::new();
    let mut manifests = Vec::new();
    let (dest, repo, digest) = &pushed[0];
    let out = user.modelcar(&["kserve", dest]).success();
    let doc: serde_yaml::Value = serde_yaml::from_str(&out.stdout).unwrap();
    let model = &doc["spec"]["predictor"]["model"];
    assert_eq!(model["modelFormat"]["name"].as_str(), Some("sklearn"));
    assert_eq!(model["runtime"].as_str(), Some("kserve-mlserver"));
    assert_eq!(
        model["storageUri"].as_str().unwrap(),
        format!("oci://{}/{repo}@{digest}", reg.host())
    );
    manifests.push(out.stdout);
    // By digest too, in the fetch mode.
    let by_digest = format!("{}/{repo}@{digest}", reg.host());
    let out = user
        .modelcar(&["kserve", &by_digest, "--storage", "fetch"])
        .success();
    assert!(
        out.stdout
            .contains(&format!("storageUri: oci+fetch://{by_digest}\n")),
        "{}",
        out.stdout
    );
    manifests.push(out.stdout);

    let (dest, repo, digest) = &pushed[1];
    let out = user
        .modelcar(&["kserve", dest, "--kind", "llm", "--storage", "native"])
        .success();
    let doc: serde_yaml::Value = serde_yaml::from_str(&out.stdout).unwrap();
    assert_eq!(doc["kind"].as_str(), Some("LLMInferenceService"));
    assert_eq!(
        doc["spec"]["model"]["uri"].as_str().unwrap(),
        format!("oci+native://{}/{repo}@{digest}", reg.host())
    );
    assert_eq!(doc["spec"]["model"]["name"].as_str(), Some("llama"));
    manifests.push(out.stdout);
    let out = user.modelcar(&["kserve", dest]).success();
    assert_eq!(
        serde_yaml::from_str::<serde_yaml::Value>(&out.stdout).unwrap()["spec"]["predictor"]
            ["model"]["runtime"]
            .as_str(),
        Some("kserve-huggingfaceserver")
    );
    manifests.push(out.stdout);
    support::kserve::assert_valid(&manifests.join("---\n"));

    // Nothing was pulled: the store holds no image and no blob.
    assert!(images(&user).is_empty(), "{:?}", images(&user));
    assert!(
        !user.store.join("blobs/sha256").exists() || blob_names(&user.store).is_empty(),
        "{:?}",
        blob_names(&user.store)
    );

    // An image with zstd layers, only in the registry: refused for KServe's fetch handler,
    // whose layer types are read from the registry too.
    let zstd = format!("{}/models/sklearn-zstd:v1", reg.host());
    builder.build(
        &example_model("sklearn"),
        &zstd,
        &busybox,
        &["--format", "sklearn", "--compression", "zstd"],
    );
    push_json(&builder, &zstd, None, &[]);
    user.modelcar(&["kserve", &zstd, "--storage", "fetch"])
        .failure()
        .stderr_has(&["models/sklearn-zstd", "tar+zstd", "--compression gzip"]);
    user.modelcar(&["kserve", &zstd, "--storage", "native"])
        .success();

    // A reference the registry does not have: the error names it.
    user.modelcar(&["kserve", &format!("{}/models/nothing:v1", reg.host())])
        .failure()
        .stderr_has(&["models/nothing", "not in the local store"]);
}

#[test]
fn a_registry_base_is_pulled_by_the_first_build_only_and_the_pull_policy_decides_when() {
    let env = Env::new();
    // The proxy only counts here: every request modelcar makes goes through it.
    let (mut reg, proxy, base_ref) = proxied_registry_with_base(&env);
    let models = example_model("sklearn");
    let tag = "localhost/models/sklearn:v1";
    let build = |env: &Env, policy: &str| {
        env.modelcar(&[
            "build",
            "--models",
            models.to_str().unwrap(),
            "--tag",
            tag,
            "--base",
            &base_ref,
            "--format",
            "sklearn",
            "--pull",
            policy,
            "-q",
        ])
    };
    let fetched_manifest = |records: &[Record]| {
        records.iter().any(|r| {
            r.method == "GET"
                && r.target.ends_with("/v2/base/busybox/manifests/latest")
                && r.status == Some(200)
        })
    };

    // The first build pulls the base: manifest and blobs.
    build(&env, "missing").success();
    let seen = proxy.records();
    assert!(fetched_manifest(&seen), "{}", proxy.summary());
    assert!(
        seen.iter()
            .any(|r| r.method == "GET" && r.target.contains("/blobs/sha256:")),
        "{}",
        proxy.summary()
    );
    assert!(images(&env).contains(&base_ref), "{:?}", images(&env));

    // The second one finds it in the store and does not ask the registry anything.
    proxy.clear_records();
    build(&env, "missing").success();
    assert!(proxy.records().is_empty(), "{}", proxy.summary());

    // --pull=always asks again.
    build(&env, "always").success();
    assert!(fetched_manifest(&proxy.records()), "{}", proxy.summary());

    // --pull=never with an empty store fails, naming the base, without asking.
    proxy.clear_records();
    let empty = Env::new();
    build(&empty, "never")
        .failure()
        .stderr_has(&[&base_ref, "not found"]);
    assert!(proxy.records().is_empty(), "{}", proxy.summary());

    // With the registry gone, --pull=missing still builds from the store; --pull=always
    // cannot, and says which registry it could not reach.
    drop(proxy);
    reg.kill();
    build(&env, "missing").success();
    let host = base_ref.split('/').next().unwrap();
    build(&env, "always").failure().stderr_has(&[host]);
}

#[test]
fn pull_with_a_platform_fetches_only_that_platforms_manifest_and_blobs() {
    let reg = Registry::plain();
    let env = Env::new();
    let dest = format!("{}/base/multi:latest", reg.host());
    env.skopeo_push(&["--all"], &bases().multi(), &dest);
    let index = env.skopeo_raw(&dest);
    let index_digest = env.skopeo_digest(&dest);
    let mut arm64 = vec![index_digest.clone()];
    let mut amd64 = Vec::new();
    for m in index["manifests"].as_array().unwrap() {
        let digest = m["digest"].as_str().unwrap();
        let manifest = env.skopeo_raw(&format!("{}/base/multi@{digest}", reg.host()));
        let mut blobs: Vec<String> = manifest_blobs(&manifest)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        blobs.push(digest.to_string());
        match m["platform"]["architecture"].as_str().unwrap() {
            "arm64" => arm64.extend(blobs),
            "amd64" => amd64.extend(blobs),
            other => panic!("unexpected platform {other}"),
        }
    }
    amd64.retain(|d| !arm64.contains(d));
    assert!(!amd64.is_empty(), "the platforms share every blob");

    env.modelcar(&["pull", &dest, "--platform", "linux/arm64"])
        .success();
    let have = blob_names(&env.store);
    let has = |d: &str| have.contains(d.trim_start_matches("sha256:"));
    for d in &arm64 {
        assert!(has(d), "{d} (linux/arm64) is missing: {have:?}");
    }
    for d in &amd64 {
        assert!(!has(d), "{d} (linux/amd64 only) was fetched: {have:?}");
    }
}

#[test]
fn an_image_pulled_for_one_platform_is_refused_by_push_before_any_blob_is_sent() {
    let reg = Registry::plain();
    let env = Env::new();
    let src = format!("{}/base/multi:latest", reg.host());
    env.skopeo_push(&["--all"], &bases().multi(), &src);
    env.modelcar(&["pull", &src, "--platform", "linux/arm64"])
        .success();
    let dest = format!("{}/copy/multi:latest", reg.host());
    let out = env.modelcar(&["push", &src, &dest]).failure();
    out.stderr_has(&[
        "linux/amd64",
        "pull --platform",
        "hint: pull the image again",
    ]);
    // The registry logs every request's URI: the pull is there, nothing for the copy.
    let log = reg.log();
    assert!(log.contains("/v2/base/multi/"), "{log}");
    assert!(
        !log.contains("/v2/copy/multi/"),
        "a request reached copy/multi: {log}"
    );
}

// 3. Multi-platform images.

#[test]
fn a_multi_platform_image_is_pushed_as_an_index_that_skopeo_sees_with_both_platforms() {
    let reg = Registry::plain();
    let env = Env::new();
    let dest = format!("{}/models/sklearn-multi:v1", reg.host());
    let built = build_sklearn(&env, &dest, &bases().multi());
    let r = push_json(&env, &dest, None, &[]);
    assert_eq!(r["digest"], built.as_str());

    let index = env.skopeo_raw(&dest);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    assert_eq!(env.skopeo_digest(&dest), built);
    let mut platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap_or("?"),
                m["platform"]["architecture"].as_str().unwrap_or("?")
            )
        })
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    for arch in ["amd64", "arm64"] {
        let out = env
            .skopeo(&[
                "--override-os",
                "linux",
                "--override-arch",
                arch,
                "inspect",
                "--tls-verify=false",
                &format!("docker://{dest}"),
            ])
            .success();
        assert_eq!(out.json()["Architecture"], arch);
    }
    env.skopeo_pull(&["--all"], &dest, &oci(&env.path("copy"), "all"))
        .success();
}

// 4. TLS and Basic authentication.

const USER: &str = "alice";
const PASSWORD: &str = "Pa55-w0rd-7f3e9c";

fn basic_tls_registry(env: &Env) -> (Tls, Registry) {
    let tls = Tls::generate(&env.path("tls"));
    let file = htpasswd(env.dir.path(), USER, PASSWORD);
    let reg = Registry::start(RegistryOptions {
        tls: Some((tls.server_cert.clone(), tls.server_key.clone())),
        auth: Auth::Htpasswd(file),
    });
    (tls, reg)
}

/// The base64 of `USER:password`, as Basic authentication and auth files carry it.
fn basic(password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"))
}

/// Write `env`'s auth file with `USER:password` for `host`, as `login` would.
fn write_auth(env: &Env, host: &str, password: &str) {
    std::fs::write(
        &env.auth_file,
        serde_json::json!({"auths": {host: {"auth": basic(password)}}}).to_string(),
    )
    .unwrap();
}

/// `modelcar GLOBAL... login HOST -u USER --password-stdin` with `password` on standard input.
fn login(env: &Env, global: &[&str], host: &str, password: &str) -> Outcome {
    let mut args = global.to_vec();
    args.extend(["login", host, "-u", USER, "--password-stdin"]);
    env.modelcar_stdin(&args, &format!("{password}\n"))
}

/// Neither the password nor the base64 of `user:password` in anything modelcar printed.
fn assert_no_secret(outputs: &[&Outcome]) {
    let encoded = basic(PASSWORD);
    for o in outputs {
        let text = o.all_output();
        assert!(
            !text.contains(PASSWORD) && !text.contains(&encoded),
            "`{}` printed the password:\n{text}",
            o.command
        );
    }
}

#[test]
fn a_push_to_a_basic_auth_registry_without_credentials_fails_naming_it_and_lands_nothing() {
    let env = Env::new();
    let (tls, reg) = basic_tls_registry(&env);
    let cert_dir = tls.cert_dir.to_str().unwrap();
    let dest = format!("{}/models/sklearn:v1", reg.host());
    build_sklearn(&env, &dest, &bases().busybox());
    let out = env
        .modelcar(&["--cert-dir", cert_dir, "push", &dest])
        .failure()
        .stderr_has(&[&reg.host(), "login"]);
    assert!(out.stdout.trim().is_empty(), "{}", out.stdout);

    let skopeo = env.skopeo(&[
        "inspect",
        "--cert-dir",
        cert_dir,
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{dest}"),
    ]);
    assert!(
        !skopeo.status.success(),
        "a manifest landed: {}",
        skopeo.stdout
    );
    assert!(
        skopeo.stderr.contains("manifest unknown"),
        "{}",
        skopeo.stderr
    );

    // Without the CA the registry's certificate is not trusted: login, which has to reach the
    // registry to check the password, fails and writes nothing...
    let login = login(&env, &[], &reg.host(), PASSWORD)
        .failure()
        .stderr_has(&[&reg.host()]);
    assert!(
        !env.auth_file.exists(),
        "login wrote credentials it could not check: {}",
        login.stderr
    );
    // ... and a push with credentials says that the certificate is the problem.
    write_auth(&env, &reg.host(), PASSWORD);
    let untrusted = env
        .modelcar(&["push", &dest])
        .failure()
        .stderr_has(&[&reg.host()]);
    assert!(
        untrusted.stderr.to_lowercase().contains("certificate"),
        "the error does not say that the certificate is not trusted: {}",
        untrusted.stderr
    );
    assert_no_secret(&[&out, &login, &untrusted]);
}

/// A directory of `docker-credential-*` helpers (shell scripts) for `registry`: `good` answers
/// with the credentials, `hang` never answers, `flood` answers a megabyte, `none` says it has
/// nothing.
fn credential_helpers(env: &Env, registry: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let bin = env.path("helpers");
    std::fs::create_dir_all(&bin).unwrap();
    let answer = serde_json::json!({"ServerURL": registry, "Username": USER, "Secret": PASSWORD});
    let scripts = [
        (
            "good",
            format!("read server; [ \"$server\" = '{registry}' ] || exit 1; echo '{answer}'"),
        ),
        ("hang", "echo $$ > \"$0.pid\"; exec sleep 600".to_string()),
        (
            "flood",
            "head -c 1048576 /dev/zero | tr '\\0' x".to_string(),
        ),
        (
            "none",
            "echo 'credentials not found in native keychain'; exit 1".to_string(),
        ),
    ];
    for (name, body) in scripts {
        let path = bin.join(format!("docker-credential-{name}"));
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn credential_helpers_are_asked_and_one_that_hangs_floods_or_is_misnamed_fails_clearly() {
    let env = Env::new();
    let (tls, reg) = basic_tls_registry(&env);
    let cert_dir = tls.cert_dir.to_str().unwrap();
    let host = reg.host();
    let dest = format!("{host}/models/helped:v1");
    build_sklearn(&env, &dest, &bases().busybox());
    let bin = credential_helpers(&env, &host);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let with_helper = |helper: &str, timeout: &str| {
        std::fs::write(
            &env.auth_file,
            serde_json::json!({"credHelpers": {&host: helper}}).to_string(),
        )
        .unwrap();
        env.cmd()
            .env("PATH", &path)
            .env("MODELCAR_CREDENTIAL_HELPER_TIMEOUT", timeout)
            .args(["--cert-dir", cert_dir, "push", "-q", &dest])
            .run()
    };

    // The helper's answer is the credential.
    with_helper("good", "60").success();
    env.skopeo(&[
        "inspect",
        "--cert-dir",
        cert_dir,
        "--creds",
        &format!("{USER}:{PASSWORD}"),
        &format!("docker://{dest}"),
    ])
    .success();

    // A helper with nothing for this registry is no credential: the registry's refusal.
    with_helper("none", "60")
        .failure()
        .stderr_has(&[&host, "login"]);

    // One that never answers is stopped after the limit, and the command says so.
    let started = Instant::now();
    let hung = with_helper("hang", "2").failure().stderr_has(&[
        "docker-credential-hang",
        "no answer",
        "2 s",
        "MODELCAR_CREDENTIAL_HELPER_TIMEOUT",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "took {:?}: {}",
        started.elapsed(),
        hung.stderr
    );
    let pid = std::fs::read_to_string(bin.join("docker-credential-hang.pid")).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the hung helper ({}) was left running",
        pid.trim()
    );

    // One that answers without end is cut off.
    with_helper("flood", "60")
        .failure()
        .stderr_has(&["docker-credential-flood", "more than"]);

    // A helper name is a name, not a path to run.
    with_helper("../../bin/sh", "60")
        .failure()
        .stderr_has(&["\"../../bin/sh\"", "not a helper name"]);

    // A timeout that is not a number is named.
    with_helper("good", "soon")
        .failure()
        .stderr_has(&["MODELCAR_CREDENTIAL_HELPER_TIMEOUT", "\"soon\""]);
}

#[test]
fn login_checks_the_password_and_writes_podmans_auth_json_that_push_skopeo_and_logout_use() {
    let env = Env::new();
    let (tls, reg) = basic_tls_registry(&env);
    let cert_dir = tls.cert_dir.to_str().unwrap();
    let host = reg.host();
    let mut outputs = Vec::new();

    // A wrong password: refused, and nothing written.
    let wrong = login(&env, &["--cert-dir", cert_dir], &host, "not-the-password")
        .failure()
        .stderr_has(&[&host]);
    assert!(
        !env.auth_file.exists(),
        "a refused login wrote the auth file"
    );
    outputs.push(wrong);

    // The right one: podman's format, private to the user.
    outputs.push(login(&env, &["--cert-dir", cert_dir], &host, PASSWORD).success());
    let auth = read_json(&env.auth_file);
    assert_eq!(
        auth,
        serde_json::json!({"auths": {host.clone(): {"auth": basic(PASSWORD)}}})
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&env.auth_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o077,
        0,
        "the auth file is readable by others"
    );

    // Push with the CA, and with verification off.
    let dest = format!("{host}/models/sklearn:v1");
    let built = build_sklearn(&env, &dest, &bases().busybox());
    let out = env
        .modelcar(&["--cert-dir", cert_dir, "push", &dest, "--json"])
        .success();
    assert_eq!(out.json()[0]["digest"], built.as_str());
    outputs.push(out);
    let insecure_dest = format!("{host}/models/sklearn:insecure");
    outputs.push(
        env.modelcar(&["--tls-verify=false", "push", &dest, &insecure_dest])
            .success(),
    );

    // skopeo sees both, with the credentials and with modelcar's auth file.
    for (reference, creds) in [
        (
            &dest,
            vec!["--creds".to_string(), format!("{USER}:{PASSWORD}")],
        ),
        (
            &insecure_dest,
            vec![
                "--authfile".to_string(),
                env.auth_file.display().to_string(),
            ],
        ),
    ] {
        let mut args = vec!["inspect", "--cert-dir", cert_dir];
        args.extend(creds.iter().map(String::as_str));
        let uri = format!("docker://{reference}");
        args.push(&uri);
        assert_eq!(env.skopeo(&args).success().json()["Digest"], built.as_str());
    }

    // Logout removes the entry, and pushing is refused again.
    outputs.push(env.modelcar(&["logout", &host]).success());
    let auth = read_json(&env.auth_file);
    assert!(
        auth["auths"].get(&host).is_none(),
        "logout left the entry: {auth}"
    );
    outputs.push(
        env.modelcar(&[
            "--cert-dir",
            cert_dir,
            "push",
            &dest,
            &format!("{host}/models/after:logout"),
        ])
        .failure()
        .stderr_has(&[&host]),
    );
    outputs.push(
        env.modelcar(&["logout", &host])
            .failure()
            .stderr_has(&[&host]),
    );
    assert_no_secret(&outputs.iter().collect::<Vec<_>>());
}

// 5. Token authentication.

#[test]
fn token_auth_lets_a_user_push_and_pull_and_refuses_a_wrong_password_or_anonymous_pulls() {
    let env = Env::new();
    let tokens = TokenService::start(&env.path("token"), &[(USER, PASSWORD)]);
    let reg = Registry::start(RegistryOptions {
        tls: None,
        auth: tokens.auth(),
    });
    let host = reg.host();
    let dest = format!("{host}/models/sklearn:v1");
    let built = build_sklearn(&env, &dest, &bases().busybox());

    // Anonymous: refused, clearly.
    let anonymous = env
        .modelcar(&["push", &dest])
        .failure()
        .stderr_has(&[&host, "login"]);

    // A wrong password: the token service refuses it; login fails and writes nothing.
    let wrong = login(&env, &[], &host, "wrong-password")
        .failure()
        .stderr_has(&[&host]);
    assert!(!env.auth_file.exists());

    // The right one: push, with a token for pull and push on the repository.
    let login = login(&env, &[], &host, PASSWORD).success();
    let pushed = push_json(&env, &dest, None, &[]);
    assert_eq!(pushed["digest"], built.as_str());
    assert!(
        tokens
            .issued()
            .iter()
            .any(|t| t.user.as_deref() == Some(USER)
                && t.status == 200
                && t.granted
                    .iter()
                    .any(|s| s == "repository:models/sklearn:pull,push")),
        "{:?}",
        tokens.issued()
    );
    let inspected = env
        .skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("docker://{dest}"),
        ])
        .success();
    assert_eq!(inspected.json()["Digest"], built.as_str());

    // Pull into a fresh store with the same credentials.
    let puller = Env::new();
    std::fs::copy(&env.auth_file, &puller.auth_file).unwrap();
    puller.modelcar(&["pull", &dest]).success();
    let inspected = puller
        .skopeo(&["inspect", &oci(&puller.store, &dest)])
        .success();
    assert_eq!(inspected.json()["Digest"], built.as_str());

    // Anonymous pulls are refused, and so are wrong passwords.
    let stranger = Env::new();
    let anonymous_pull = stranger
        .modelcar(&["pull", &dest])
        .failure()
        .stderr_has(&[&host, "login"]);
    write_auth(&stranger, &host, "wrong-password");
    let wrong_pull = stranger
        .modelcar(&["pull", &dest])
        .failure()
        .stderr_has(&[&host, "credentials"]);
    assert!(images(&stranger).is_empty());
    assert!(
        tokens.issued().iter().any(|t| t.status == 401),
        "{:?}",
        tokens.issued()
    );
    assert_no_secret(&[&anonymous, &wrong, &login, &anonymous_pull, &wrong_pull]);
}

// 6. Faults a registry cannot be made to show: through the proxy.

fn records_with_status(records: &[Record], status: u16) -> Vec<&Record> {
    records
        .iter()
        .filter(|r| r.status == Some(status))
        .collect()
}

#[test]
fn a_push_retries_through_429s_honouring_retry_after_and_through_500s() {
    let (reg, proxy) = proxied_registry();
    let env = Env::new();
    let dest = format!("{}/models/sklearn:v1", proxy.host());
    let built = build_sklearn(&env, &dest, &bases().busybox());
    proxy.add_rule(
        Rule::new(Fault::Status {
            status: 429,
            retry_after: Some(1),
        })
        .times(2),
    );
    for (method, path) in [
        ("HEAD", "/blobs/"),
        ("POST", "/blobs/uploads/"),
        ("PUT", "/blobs/uploads/"),
        ("PUT", "/manifests/"),
    ] {
        proxy.add_rule(Rule::status(500).method(method).path(path));
    }

    // One transfer at a time, so that the request after a 429 is its retry.
    let out = env
        .modelcar(&["--jobs", "1", "push", &dest, "--json"])
        .success();
    assert_eq!(out.json()[0]["digest"], built.as_str());
    let records = proxy.records();
    let throttled = records_with_status(&records, 429);
    assert_eq!(throttled.len(), 2, "{}", proxy.summary());
    assert_eq!(
        records_with_status(&records, 500).len(),
        4,
        "{}",
        proxy.summary()
    );
    // Each 429 was followed by a pause of at least its Retry-After.
    for t in throttled {
        let next = records
            .iter()
            .filter(|r| r.at > t.at)
            .map(|r| r.at)
            .min()
            .expect("a request after the 429");
        assert!(
            next.duration_since(t.at) >= Duration::from_millis(950),
            "retried {:?} after a 429 with Retry-After: 1\n{}",
            next.duration_since(t.at),
            proxy.summary()
        );
    }
    // The image is complete in the registry.
    let direct = format!("{}/models/sklearn:v1", reg.host());
    assert_eq!(env.skopeo_digest(&direct), built);
    env.skopeo_pull(&[], &direct, &oci(&env.path("copy"), "x"))
        .success();
}

/// Push the large image through the proxy to `repo`; returns the result and the records.
fn push_big_through(
    proxy: &FaultProxy,
    reg: &Registry,
    repo: &str,
) -> (BigImage, Value, Vec<Record>) {
    let big = big_image();
    let env = Env::new().with_store(&big.store);
    let dest = format!("{}/{repo}:v1", proxy.host());
    let out = env.modelcar(&["push", &big.reference, &dest, "--json"]);
    assert!(
        out.status.success(),
        "the push failed: {}\nThe proxy saw:\n{}",
        out.stderr,
        proxy.summary()
    );
    let r = out.json()[0].clone();
    assert_eq!(r["digest"], big.digest.as_str());
    assert_eq!(r["blobs_uploaded"], big.blobs as u64, "{r}");
    // The registry has it all, each blob checked against its digest by the registry.
    let direct = format!("{}/{repo}:v1", reg.host());
    assert_eq!(env.skopeo_digest(&direct), big.digest);
    let layer = reg.blob_data(&big.big_layer);
    assert_eq!(
        std::fs::metadata(&layer).map(|m| m.len()).ok(),
        Some(big.big_layer_size),
        "the large layer is not in the registry's storage"
    );
    (big, r, proxy.records())
}

/// The body bytes the registry received into upload sessions add up to the image's size.
#[track_caller]
fn assert_forwarded_once(records: &[Record], big: &BigImage, summary: &str) {
    let forwarded: u64 = records
        .iter()
        .filter(|r| r.is_upload_data())
        .map(|r| r.forwarded)
        .sum();
    assert_eq!(
        forwarded,
        big.total_size + referrer_blob_bytes(big),
        "{summary}"
    );
}

/// Bytes of the blobs of the artifacts that refer to the large image in its store (its BOM),
/// which a push sends after the image.
fn referrer_blob_bytes(big: &BigImage) -> u64 {
    let index = read_json(&big.store.join("index.json"));
    let mut total = 0;
    for entry in index["manifests"].as_array().unwrap() {
        let hex = entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let manifest = read_json(&big.store.join("blobs/sha256").join(hex));
        if manifest["subject"]["digest"] == big.digest.as_str() {
            total += std::iter::once(&manifest["config"])
                .chain(manifest["layers"].as_array().unwrap())
                .map(|d| d["size"].as_u64().unwrap())
                .sum::<u64>();
        }
    }
    total
}

/// Push the large image through the proxy with the connection of its first PATCH (the whole
/// blob) dropped after [`DROP_AFTER`] bytes (which reach the registry first with `forward`). The
/// image, the records, the position of the dropped request and the proxy's summary.
fn push_big_dropping_the_upload(
    proxy: &FaultProxy,
    reg: &Registry,
    repo: &str,
    forward: bool,
) -> (BigImage, Vec<Record>, usize, String) {
    proxy.add_rule(
        Rule::new(Fault::Drop {
            after: DROP_AFTER,
            forward,
        })
        .method("PATCH"),
    );
    let (big, _, records) = push_big_through(proxy, reg, repo);
    let summary = proxy.summary();
    let drop = records
        .iter()
        .position(|r| r.status.is_none())
        .unwrap_or_else(|| panic!("no connection was dropped:\n{summary}"));
    assert_eq!(records[drop].range_start(), Some(0), "{summary}");
    (big, records, drop, summary)
}

#[test]
fn a_chunk_dropped_mid_body_resumes_at_the_offset_the_registry_reports() {
    let (reg, proxy) = proxied_registry();
    proxy.set_resumable(true);
    // A chunk and a half reach the registry, then the connection drops.
    let (big, records, drop, summary) =
        push_big_dropping_the_upload(&proxy, &reg, "models/resumed", true);
    assert_eq!(records[drop].forwarded, DROP_AFTER, "{summary}");
    let upload = records[drop].upload.clone();
    let after: Vec<&Record> = records[drop + 1..]
        .iter()
        .filter(|r| r.upload == upload)
        .collect();
    // No restart: no byte of the blob reached the registry twice, no chunk started over.
    assert!(
        after.iter().all(|r| r.range_start().is_none_or(|s| s > 0)),
        "{summary}"
    );
    let blob_bytes: u64 = records
        .iter()
        .filter(|r| r.upload == upload && r.is_upload_data())
        .map(|r| r.forwarded)
        .sum();
    assert_eq!(blob_bytes, big.big_layer_size, "{summary}");
    let sent: u64 = records
        .iter()
        .filter(|r| r.upload == upload)
        .map(|r| r.received)
        .sum();
    assert!(
        sent < 2 * big.big_layer_size,
        "{sent} bytes sent\n{summary}"
    );
    assert_forwarded_once(&records, &big, &summary);
    // The upload went on from where the registry stood, in chunks.
    assert_eq!(
        after.iter().map(|r| r.forwarded).sum::<u64>(),
        big.big_layer_size - DROP_AFTER,
        "{summary}"
    );
}

#[test]
fn a_chunk_dropped_before_the_registry_got_it_is_sent_again_from_the_same_offset() {
    let (reg, proxy) = proxied_registry();
    let (big, records, drop, summary) =
        push_big_dropping_the_upload(&proxy, &reg, "models/resent", false);
    assert!(
        records[drop + 1..]
            .iter()
            .any(|r| r.method == "PATCH" && r.range_start() == Some(0) && r.status == Some(202)),
        "the dropped chunk was not sent again:\n{summary}"
    );
    assert_forwarded_once(&records, &big, &summary);
}

#[test]
fn chunks_refused_with_413_fall_back_to_one_put_of_the_whole_blob() {
    let (reg, proxy) = proxied_registry();
    proxy.add_rule(
        Rule::status(413)
            .method("PATCH")
            .body_over(4 * MIB)
            .always(),
    );
    let (big, _, records) = push_big_through(&proxy, &reg, "models/unchunked");
    let summary = proxy.summary();
    assert!(
        !records_with_status(&records, 413).is_empty(),
        "no chunk was refused:\n{summary}"
    );
    let put = records
        .iter()
        .find(|r| r.method == "PUT" && r.query("digest").as_deref() == Some(big.big_layer.as_str()))
        .unwrap_or_else(|| panic!("no PUT of the large blob:\n{summary}"));
    assert_eq!(put.status, Some(201), "{summary}");
    assert_eq!(put.forwarded, big.big_layer_size, "{summary}");
    assert_forwarded_once(&records, &big, &summary);
}

#[test]
fn a_cross_repository_mount_answered_with_202_is_uploaded_instead() {
    let env = Env::new();
    let (reg, proxy, base_ref) = proxied_registry_with_base(&env);
    let base_layers = manifest_blobs(&env.skopeo_raw(&format!("{}/{BASE_REPO}", reg.host())));
    let image = format!("{}/models/mounted:v1", proxy.host());
    let built = build_sklearn(&env, &image, &base_ref);

    // As a control: a registry that mounts gets the base's layer mounted.
    let mounted = push_json(&env, &image, None, &[]);
    let base_layers = &base_layers[1..];
    assert_eq!(
        mounted["blobs_mounted"],
        base_layers.len() as u64,
        "{mounted}\n{}",
        proxy.summary()
    );

    // One that answers the mount with an upload session gets the layer uploaded.
    proxy.clear_records();
    proxy.add_rule(
        Rule::new(Fault::RefuseMount)
            .method("POST")
            .path("mount=")
            .always(),
    );
    let dest = format!("{}/models/unmounted:v1", proxy.host());
    let r = push_json(&env, &image, Some(&dest), &[]);
    let records = proxy.records();
    let summary = proxy.summary();
    assert!(
        records
            .iter()
            .any(|r| r.fault.is_some() && r.method == "POST" && r.status == Some(202)),
        "no mount was attempted:\n{summary}"
    );
    assert_eq!(r["blobs_mounted"], 0, "{r}");
    assert_eq!(r["digest"], built.as_str());
    for (layer, size) in base_layers {
        assert!(
            records.iter().any(|r| r.method == "PUT"
                && r.query("digest").as_deref() == Some(layer.as_str())
                && r.forwarded == *size
                && r.status == Some(201)),
            "base layer {layer} was not uploaded:\n{summary}"
        );
    }
    let direct = format!("{}/models/unmounted:v1", reg.host());
    assert_eq!(env.skopeo_digest(&direct), built);
    env.skopeo_pull(&[], &direct, &oci(&env.path("copy"), "x"))
        .success();
}

// 7. A registry that goes away mid-push.

#[test]
fn a_registry_that_dies_mid_push_fails_it_clearly_and_a_rerun_uploads_only_what_is_missing() {
    let big = big_image();
    let mut reg = Registry::plain();
    let env = Env::new().with_store(&big.store);
    let dest = format!("{}/models/big:v1", reg.host());
    let started = Instant::now();
    let (mut child, command) = env
        .cmd()
        .args(["push", &big.reference, &dest, "--json"])
        .spawn();
    // Kill it once the small blobs are in and part of the large one is.
    loop {
        if reg.upload_bytes() >= 8 * MIB && reg.blob_count() >= big.blobs - 1 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the push ended ({status}) before the registry could be killed");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the upload did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    reg.kill();
    let out = wait(child, command);
    let stderr = out.stderr;
    assert!(
        !out.status.success(),
        "the push succeeded without its registry"
    );
    assert!(
        stderr.contains(&format!("registry {} refused the connection", reg.host())),
        "the error does not say what failed: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    reg.restart();
    let r = push_json(&env, &big.reference, Some(&dest), &[]);
    assert_eq!(r["digest"], big.digest.as_str());
    let present = r["blobs_present"].as_u64().unwrap();
    let uploaded = r["blobs_uploaded"].as_u64().unwrap();
    assert!(present > 0, "{r}");
    assert_eq!(present + uploaded, big.blobs as u64, "{r}");
    assert!(
        r["bytes_uploaded"].as_u64().unwrap() < big.total_size,
        "everything was uploaded again: {r}"
    );
    assert_eq!(env.skopeo_digest(&dest), big.digest);
}

// 8. Content that does not match its digest.

#[test]
fn a_pulled_blob_that_does_not_match_its_digest_is_refused_and_nothing_is_tagged() {
    let reg = Registry::plain();
    let env = Env::new();
    let dest = format!("{}/models/sklearn:v1", reg.host());
    build_sklearn(&env, &dest, &bases().busybox());
    push_json(&env, &dest, None, &[]);
    let blobs = manifest_blobs(&env.skopeo_raw(&dest));
    let (digest, _) = blobs.last().unwrap().clone();
    let data = reg.blob_data(&digest);
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&data, &bytes).unwrap();
    // The corruption is real: skopeo refuses it too.
    let skopeo = env.skopeo_pull(&[], &dest, &oci(&env.path("copy"), "x"));
    assert!(!skopeo.status.success(), "skopeo copied a corrupt blob");

    let fresh = Env::new();
    fresh
        .modelcar(&["pull", &dest])
        .failure()
        .stderr_has(&[&digest]);
    assert!(images(&fresh).is_empty(), "{:?}", images(&fresh));
    assert!(
        !blob_names(&fresh.store).contains(digest.trim_start_matches("sha256:")),
        "the corrupt blob was stored"
    );
}

// 9. References that cannot be right.

#[test]
fn bad_references_are_refused_with_a_message_that_shows_what_is_wrong() {
    let env = Env::new();
    env.modelcar(&["pull", "Bad/Ref"])
        .failure()
        .stderr_has(&["Bad/Ref", "Bad", "lowercase"]);
    env.modelcar(&["pull", "localhost:5000/x@sha256:abc"])
        .failure()
        .stderr_has(&["sha256:abc", "64"]);
    env.modelcar(&["pull", "localhost:5000/x:bad!tag"])
        .failure()
        .stderr_has(&["bad!tag"]);

    let image = "localhost/models/sklearn:v1";
    build_sklearn(&env, image, &bases().busybox());
    env.modelcar(&["push", image, "localhost:99999/x"])
        .failure()
        .stderr_has(&["localhost:99999", "port"]);
    env.modelcar(&["push", image, "localhost:5000/Upper/Case"])
        .failure()
        .stderr_has(&["Upper", "lowercase"]);
}

#[test]
fn a_wrong_password_at_login_says_the_credentials_were_refused() {
    let env = Env::new();
    let (tls, reg) = basic_tls_registry(&env);
    let host = reg.host();
    let out = login(
        &env,
        &["--cert-dir", tls.cert_dir.to_str().unwrap()],
        &host,
        "not-the-password",
    )
    .failure()
    .stderr_has(&[
        &host,
        "refused the credentials",
        "user name `",
        "nothing was saved",
    ]);
    assert!(!out.stderr.contains("refused access to"), "{}", out.stderr);
    assert!(!out.stderr.contains("modelcar login"), "{}", out.stderr);
    assert!(
        !env.auth_file.exists(),
        "a refused login wrote the auth file"
    );
}

/// A registry serving a self-signed certificate that is marked as a CA, given as trusted with
/// --cert-dir: rustls refuses it as a CA used as an end entity, and the error says so in a
/// user's terms.
#[test]
fn a_ca_certificate_served_as_the_registrys_own_is_explained() {
    let env = Env::new();
    let dir = env.path("self-signed");
    std::fs::create_dir_all(&dir).unwrap();
    support::cmd::tool_ok_in(
        &dir,
        "openssl",
        [
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
    );
    let certs = dir.join("certs.d");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(dir.join("server.crt"), certs.join("server.crt")).unwrap();
    let reg = Registry::start(RegistryOptions {
        tls: Some((dir.join("server.crt"), dir.join("server.key"))),
        auth: Auth::Anonymous,
    });
    let host = reg.host();
    let out = env
        .modelcar(&[
            "--cert-dir",
            certs.to_str().unwrap(),
            "pull",
            &format!("{host}/models/any:v1"),
        ])
        .failure()
        .stderr_has(&[&host, "is a CA certificate", "server certificate (CA:FALSE"]);
    assert!(!out.stderr.contains("CaUsedAsEndEntity"), "{}", out.stderr);
}

/// `build --push` sends model layers straight to the registry, so the image is never in the
/// store for the checks of `verify`: what they would find in the base's own /models is checked
/// before anything is sent.
#[test]
fn build_push_on_a_base_with_unreadable_models_sends_nothing_unless_allowed() {
    let env = Env::new();
    let reg = Registry::plain();
    // A base whose /models holds a file only its owner can read (kept with the opt-out).
    let base_models = sklearn_models(&env.path("base-models"));
    std::fs::write(base_models.join("secret.bin"), b"1").unwrap();
    let project = env.path("modelcar.toml");
    std::fs::write(
        &project,
        format!(
            "registry = \"quay.io/test\"\nversion = \"v1\"\nbase = \"{}\"\nfile-mode = \"0400\"\n\
             allow-failing-checks = true\n[images.base]\nrepository = \"unreadable\"\n\
             models = \"{}\"\nformat = \"sklearn\"\n",
            bases().busybox(),
            base_models.display()
        ),
    )
    .unwrap();
    env.modelcar(&["-f", project.to_str().unwrap(), "build"])
        .success();

    let models = sklearn_models(&env.path("models"));
    let dest = format!("{}/models/on-unreadable:v1", reg.host());
    let push = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "--models",
            models.to_str().unwrap(),
            "--tag",
            &dest,
        ];
        args.extend(["--base", "quay.io/test/unreadable:v1", "--push"]);
        args.extend_from_slice(extra);
        env.modelcar(&args)
    };
    push(&[])
        .failure()
        .stderr_has(&["/models/secret.bin", "--allow-failing-checks"]);
    assert_eq!(reg.blob_count(), 0, "a refused build --push sent blobs");

    push(&["--allow-failing-checks"])
        .success()
        .stderr_has(&["warning:", "/models/secret.bin"]);
    assert!(reg.blob_count() > 0);
}
