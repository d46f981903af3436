//! `modelcar build`: what the images hold, checked with tools nobody here wrote (umoci, skopeo,
//! GNU tar, chroot), and that the same inputs always give the same bytes.

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::cmd::*;
use support::files::*;
use support::fixtures::*;
use support::images::*;

const MIB: u64 = 1 << 20;

/// The layers of an image as skopeo sees them (for a multi-platform image, the platform chosen
/// with `--override-arch`).
fn layers(location: &str, arch: Option<&str>) -> Vec<String> {
    let extra: Vec<&str> = arch.map(|a| vec!["--override-arch", a]).unwrap_or_default();
    skopeo_inspect(location, &extra)["Layers"]
        .as_array()
        .expect("Layers")
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// The raw manifest of a single-platform image in the store, with its layer descriptors.
fn manifest(store: &Path, reference: &str) -> Value {
    let m = skopeo_raw_json(&oci(store, reference));
    assert_eq!(
        m["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{m}"
    );
    m
}

/// The model layers of a manifest: those after the base's `base_layers`.
fn model_layers(m: &Value, base_layers: usize) -> Vec<Value> {
    m["layers"].as_array().unwrap()[base_layers..].to_vec()
}

fn base_layer_count() -> usize {
    layers(&bases().busybox(), None).len()
}

/// GNU tar's listing of a layer of a store (see [`tar_listing`]).
fn layer_listing(store: &Path, layer: &Value) -> Vec<String> {
    tar_listing(
        &blob_path(store, layer["digest"].as_str().unwrap()),
        layer["mediaType"].as_str().unwrap(),
    )
}

#[test]
fn example_images_hold_the_model_under_models_readable_by_any_uid_of_group_0() {
    let dir = temp();
    let store = dir.path().join("store");
    let base = bases().busybox();
    let out = modelcar(&store)
        .args(["build", "--all", "--base", &base])
        .run()
        .success();
    let built = out.built();
    assert_eq!(built.len(), 3, "{}", out.stdout);
    assert!(
        out.stderr.contains("ENTRYPOINT"),
        "removing the base's entrypoint should be said: {}",
        out.stderr
    );
    let base_info = skopeo_inspect(&base, &[]);
    let base_layers = base_info["Layers"].as_array().unwrap().clone();

    for (name, repo, file) in EXAMPLES {
        let reference = project_ref(name);
        let digest = digest_of(&built, &reference);

        // skopeo: digest, labels, base layers kept byte for byte.
        let info = skopeo_inspect(&oci(&store, &reference), &[]);
        assert_eq!(info["Digest"], digest.as_str(), "{reference}");
        let labels = &info["Labels"];
        assert_eq!(labels["org.opencontainers.image.version"], "v1.0.0");
        assert_eq!(labels["org.opencontainers.image.title"], repo);
        assert_eq!(labels["org.opencontainers.image.base.name"], "busybox");
        assert_eq!(
            labels["org.opencontainers.image.base.digest"],
            base_info["Digest"]
        );
        assert_eq!(
            labels["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(labels["io.modelcar.model.format"], name);
        let layers = info["Layers"].as_array().unwrap();
        assert_eq!(
            &layers[..base_layers.len()],
            &base_layers[..],
            "{reference}"
        );
        assert_eq!(
            layers.len(),
            base_layers.len() + 1,
            "{reference}: {layers:?}"
        );
        let config = skopeo_inspect(&oci(&store, &reference), &["--config"]);
        assert_eq!(config["config"]["User"], "1001");
        assert!(
            config["config"]["Entrypoint"].is_null(),
            "{reference}: the base's ENTRYPOINT must be gone: {config}"
        );

        // umoci: the files as a runtime unpacks them.
        let bundle = dir.path().join(format!("bundle-{name}"));
        umoci_unpack(&store, &reference, &bundle);
        let rootfs = bundle.join("rootfs");
        let model = rootfs.join("models").join(file);
        assert!(model.is_file(), "{} missing", model.display());
        assert_eq!(
            fs::read(&model).unwrap(),
            fs::read(example_model(name).join(file)).unwrap()
        );
        assert_eq!(owner_mode(&model), (1001, 0, 0o444), "{}", model.display());
        assert_eq!(owner_mode(&rootfs.join("models")), (1001, 0, 0o555));
        assert!(
            rootfs.join("bin/busybox").is_file(),
            "the base's files are there"
        );
        let runtime = read_json(&bundle.join("config.json"));
        assert_eq!(runtime["process"]["user"]["uid"], 1001);
        assert_eq!(
            runtime["process"]["args"],
            serde_json::json!(["-c"]),
            "only the base's Cmd may remain, not its /bin/sh entrypoint"
        );
    }

    // What KServe runs, run for real: modelcar-init's check as OpenShift's random UID with
    // group 0, and the sidecar's commands.
    let rootfs = dir.path().join("bundle-sklearn/rootfs");
    let init = r#"echo 'Pre-fetching modelcar' && [ -d /models ] && [ "$(ls -A /models)" ] && echo 'OK ... Prefetched and valid (/models exists)' || (echo 'NOK ... Prefetched but modelcar is invalid (/models does not exist or is empty)' && exit 1)"#;
    let ran = tool_ok(
        "chroot",
        [
            "--userspec=1000650000:0",
            rootfs.to_str().unwrap(),
            "/bin/sh",
            "-c",
            init,
        ],
    );
    assert!(ran.contains("OK ... Prefetched and valid"), "{ran}");
    let read = tool_ok_bytes(
        "chroot",
        [
            "--userspec=1000650000:0",
            rootfs.to_str().unwrap(),
            "/bin/cat",
            "/models/model.joblib",
        ],
    );
    assert_eq!(
        read,
        fs::read(example_model("sklearn").join("model.joblib")).unwrap()
    );
    fs::create_dir_all(rootfs.join("mnt")).unwrap();
    let sidecar = "mkdir -p /mnt && ln -sf /models /mnt/models && sleep 0 && ls -A /mnt/models/";
    let ran = tool_ok(
        "chroot",
        [rootfs.to_str().unwrap(), "/bin/sh", "-c", sidecar],
    );
    assert_eq!(ran.trim(), "model.joblib");
}

#[test]
fn a_two_platform_base_gives_an_index_whose_platforms_share_the_model_layer() {
    let dir = temp();
    let store = dir.path().join("store");
    let reference = project_ref("sklearn");
    let digest = modelcar(&store)
        .args(["build", "sklearn", "--base", &bases().multi()])
        .run()
        .success()
        .digest();
    let location = oci(&store, &reference);
    let raw = skopeo_raw(&location);
    assert_eq!(sha256(&raw), digest, "the printed digest is the index's");
    let index: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
            format!(
                "{}/{}",
                m["platform"]["os"].as_str().unwrap(),
                m["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    let amd64 = layers(&location, Some("amd64"));
    let arm64 = layers(&location, Some("arm64"));
    let base_amd64 = layers(&bases().multi(), Some("amd64"));
    let base_arm64 = layers(&bases().multi(), Some("arm64"));
    assert_ne!(base_amd64, base_arm64, "the fixture's platforms differ");
    assert_eq!(&amd64[..base_amd64.len()], &base_amd64[..]);
    assert_eq!(&arm64[..base_arm64.len()], &base_arm64[..]);
    assert_eq!(
        &amd64[base_amd64.len()..],
        &arm64[base_arm64.len()..],
        "one model layer for both platforms"
    );
    assert_eq!(amd64.len(), base_amd64.len() + 1);
    let arm_config = skopeo_inspect(&location, &["--override-arch", "arm64", "--config"]);
    assert_eq!(arm_config["architecture"], "arm64");
    assert_eq!(arm_config["config"]["User"], "1001");

    let copy = oci(&dir.path().join("copy"), "copied");
    skopeo_copy(&["--multi-arch", "all"], &location, &copy);
    let copied = skopeo_raw(&copy);
    assert_eq!(sha256(&copied), digest, "skopeo copies the index unchanged");

    // --platform narrows the image to the platform asked for.
    let narrowed = modelcar(&store)
        .args(["build", "sklearn", "--base", &bases().multi()])
        .args(["--platform", "linux/arm64"])
        .run()
        .success()
        .digest();
    assert_ne!(narrowed, digest);
    let top = skopeo_raw_json(&location);
    match top["mediaType"].as_str() {
        Some("application/vnd.oci.image.index.v1+json") => {
            let m = top["manifests"].as_array().unwrap();
            assert_eq!(m.len(), 1, "{top}");
            assert_eq!(m[0]["platform"]["architecture"], "arm64");
        }
        _ => {
            let config = skopeo_inspect(&location, &["--config"]);
            assert_eq!(config["architecture"], "arm64");
        }
    }
    assert_eq!(layers(&location, Some("arm64")), arm64);

    // A platform the base does not have is an error, and the image stays as it was.
    let out = modelcar(&store)
        .args(["build", "sklearn", "--base", &bases().multi()])
        .args(["--platform", "linux/s390x"])
        .run()
        .failure();
    out.stderr_has(&["linux/s390x"]);
    assert_eq!(sha256(&skopeo_raw(&location)), narrowed);
}

#[test]
fn docker_and_oci_archive_bases_give_oci_images_with_the_same_base_layers() {
    let dir = temp();
    let store = dir.path().join("store");
    let b = bases();
    let docker = docker_archive(&b.docker_tar);
    let ociarchive = oci_archive(&b.oci_tar);
    // The Docker archive speaks Docker media types (the control of this test).
    let docker_raw = skopeo_raw_json(&docker);
    assert_eq!(
        docker_raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );

    for (tag, base) in [
        ("quay.io/test/from-docker:v1", &docker),
        ("quay.io/test/from-oci-archive:v1", &ociarchive),
    ] {
        let digest = build_one(&store, &example_model("sklearn"), tag, base, &[]);
        let location = oci(&store, tag);
        let m = skopeo_raw_json(&location);
        assert_eq!(sha256(&skopeo_raw(&location)), digest);
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert_eq!(
            m["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        for l in m["layers"].as_array().unwrap() {
            let mt = l["mediaType"].as_str().unwrap();
            assert!(
                mt.starts_with("application/vnd.oci.image.layer.v1.tar"),
                "{tag}: layer media type {mt}"
            );
        }
        let base_layers = layers(base, None);
        assert_eq!(
            &layers(&location, None)[..base_layers.len()],
            &base_layers[..]
        );
        // The media types tell the truth about the bytes: umoci unpacks every layer.
        let bundle = dir.path().join(tag.replace(['/', ':'], "_"));
        umoci_unpack(&store, tag, &bundle);
        assert!(bundle.join("rootfs/bin/busybox").is_file());
        assert_eq!(
            owner_mode(&bundle.join("rootfs/models/model.joblib")),
            (1001, 0, 0o444)
        );
        let config = skopeo_inspect(&location, &["--config"]);
        assert!(config["config"]["Entrypoint"].is_null(), "{config}");
    }
}

/// A model directory with files of several sizes in subdirectories.
fn varied_model(dir: &Path) {
    sklearn_models(dir);
    fs::create_dir_all(dir.join("tokenizer/extra")).unwrap();
    write_random(&dir.join("weights-a.bin"), 300 << 10, 1);
    write_random(&dir.join("weights-b.bin"), 200 << 10, 2);
    fs::write(
        dir.join("tokenizer/vocab.txt"),
        "hello world\n".repeat(5000),
    )
    .unwrap();
    fs::write(dir.join("tokenizer/extra/merges.txt"), "a b\n").unwrap();
    std::os::unix::fs::symlink("../model.joblib", dir.join("tokenizer/model-link")).unwrap();
}

#[test]
fn the_same_files_give_the_same_digest_whatever_their_mtimes_modes_and_the_thread_count() {
    let dir = temp();
    let models = dir.path().join("models");
    varied_model(&models);
    let base = bases().busybox();
    // A low threshold gives several layers, so that threads have work to share.
    let flags = ["--layer-threshold", "100KiB", "--threads", "1"];
    let first = build_one(
        &dir.path().join("s1"),
        &models,
        "quay.io/t/m:v1",
        &base,
        &flags,
    );

    let copy = dir.path().join("elsewhere/models");
    fs::create_dir_all(copy.parent().unwrap()).unwrap();
    sh(&format!(
        "umask 077 && cp -r {} {} && find {} -exec touch -h -d '2001-01-01 12:00' {{}} +",
        q(&models),
        q(&copy),
        q(&copy)
    ));
    // The copy really differs in what a naive tar would record.
    let (_, _, mode_orig) = owner_mode(&models.join("model.joblib"));
    let (_, _, mode_copy) = owner_mode(&copy.join("model.joblib"));
    assert_ne!(mode_orig, mode_copy);
    assert_ne!(
        fs::metadata(models.join("weights-a.bin"))
            .unwrap()
            .modified()
            .unwrap(),
        fs::metadata(copy.join("weights-a.bin"))
            .unwrap()
            .modified()
            .unwrap()
    );

    let one = build_one(
        &dir.path().join("s2"),
        &copy,
        "quay.io/t/m:v1",
        &base,
        &flags,
    );
    let four = build_one(
        &dir.path().join("s3"),
        &copy,
        "quay.io/t/m:v1",
        &base,
        &["--layer-threshold", "100KiB", "--threads", "4"],
    );
    assert_eq!(first, one, "copy with other mtimes and modes");
    assert_eq!(first, four, "four threads");
    let m = manifest(&dir.path().join("s3"), "quay.io/t/m:v1");
    assert_eq!(
        model_layers(&m, base_layer_count()).len(),
        3,
        "two large files and the rest: {m}"
    );
}

#[test]
fn source_date_epoch_sets_the_creation_time_and_the_file_times() {
    let dir = temp();
    let base = bases().busybox();
    let models = example_model("sklearn");
    let plain = build_one(
        &dir.path().join("s1"),
        &models,
        "quay.io/t/m:v1",
        &base,
        &[],
    );
    let store = dir.path().join("s2");
    let dated = modelcar(&store)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .build(&models, "quay.io/t/m:v1", &base)
        .run()
        .success()
        .digest();
    assert_ne!(plain, dated);
    let info = skopeo_inspect(&oci(&store, "quay.io/t/m:v1"), &[]);
    assert_eq!(info["Created"], "2023-11-14T22:13:20Z");
    assert_eq!(
        info["Labels"]["org.opencontainers.image.created"],
        "2023-11-14T22:13:20Z"
    );
    let m = manifest(&store, "quay.io/t/m:v1");
    let listing = layer_listing(&store, &model_layers(&m, base_layer_count())[0]);
    assert!(!listing.is_empty());
    for line in &listing {
        assert!(line.contains("2023-11-14 22:13:20"), "{line}");
        assert!(line.contains(" 1001/0 "), "{line}");
    }
}

#[test]
fn a_large_file_gets_a_layer_of_its_own_that_survives_changes_to_small_files() {
    let dir = temp();
    let models = sklearn_models(&dir.path().join("models"));
    fs::write(models.join("config.json"), b"{\"n_features\": 4}").unwrap();
    // Over the default threshold of 32 MiB, and incompressible.
    write_random(&models.join("weights.bin"), 40 * MIB, 42);
    let store = dir.path().join("store");
    let base = bases().busybox();
    let n_base = base_layer_count();

    let first = build_one(&store, &models, "quay.io/t/big:v1", &base, &[]);
    let m1 = manifest(&store, "quay.io/t/big:v1");
    let l1 = model_layers(&m1, n_base);
    assert_eq!(l1.len(), 2, "{m1}");
    let big = l1
        .iter()
        .find(|l| l["annotations"]["org.opencontainers.image.title"] == "weights.bin")
        .unwrap_or_else(|| panic!("no layer titled weights.bin: {m1}"))
        .clone();
    // auto compression keeps random bytes raw.
    assert_eq!(big["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    let listing = layer_listing(&store, &big);
    let names: Vec<&str> = listing
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(names, ["models/", "models/weights.bin"]);

    fs::write(models.join("config.json"), b"{\"n_features\": 5}").unwrap();
    let second = build_one(&store, &models, "quay.io/t/big:v2", &base, &[]);
    assert_ne!(first, second);
    let l2 = model_layers(&manifest(&store, "quay.io/t/big:v2"), n_base);
    assert!(l2.contains(&big), "the large file's layer is unchanged");
    let small1: Vec<_> = l1.iter().filter(|l| **l != big).collect();
    let small2: Vec<_> = l2.iter().filter(|l| **l != big).collect();
    assert_ne!(small1, small2, "the small files' layer changed");
    assert!(layers(&oci(&store, "quay.io/t/big:v2"), None)
        .contains(&big["digest"].as_str().unwrap().to_string()));
}

#[test]
fn layers_single_puts_the_whole_model_in_one_layer() {
    let dir = temp();
    let models = dir.path().join("models");
    varied_model(&models);
    let store = dir.path().join("store");
    build_one(
        &store,
        &models,
        "quay.io/t/m:v1",
        &bases().busybox(),
        &["--layers", "single", "--layer-threshold", "1KiB"],
    );
    let m = manifest(&store, "quay.io/t/m:v1");
    let l = model_layers(&m, base_layer_count());
    assert_eq!(l.len(), 1, "{m}");
    let listing = layer_listing(&store, &l[0]);
    let names: Vec<&str> = listing
        .iter()
        .map(|l| l.split(" -> ").next().unwrap().rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "models/",
            "models/model.joblib",
            "models/tokenizer/",
            "models/tokenizer/extra/",
            "models/tokenizer/extra/merges.txt",
            "models/tokenizer/model-link",
            "models/tokenizer/vocab.txt",
            "models/weights-a.bin",
            "models/weights-b.bin",
        ]
    );
    assert!(
        listing
            .iter()
            .any(|l| l.starts_with('l') && l.ends_with("-> ../model.joblib")),
        "the symlink is kept as a symlink: {listing:?}"
    );
}

#[test]
fn compression_choices_set_the_layer_media_type_and_the_bytes() {
    let dir = temp();
    let models = dir.path().join("models");
    fs::create_dir_all(&models).unwrap();
    write_random(&models.join("weights.bin"), 600 << 10, 7);
    fs::write(
        models.join("vocab.txt"),
        "the quick brown fox\n".repeat(20_000),
    )
    .unwrap();
    let base = bases().busybox();
    let n_base = base_layer_count();
    let flags = |c: &'static str| vec!["--compression", c, "--layer-threshold", "512KiB"];

    let expect = [
        (
            "none",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        // auto: the random weights stay raw, the text is compressed.
        (
            "auto",
            "application/vnd.oci.image.layer.v1.tar",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
    ];
    for (choice, weights_type, text_type) in expect {
        let store = dir.path().join(choice);
        build_one(&store, &models, "quay.io/t/m:v1", &base, &flags(choice));
        let m = manifest(&store, "quay.io/t/m:v1");
        let l = model_layers(&m, n_base);
        assert_eq!(l.len(), 2, "{choice}: {m}");
        for layer in &l {
            let title = layer["annotations"]["org.opencontainers.image.title"].as_str();
            let (want, member) = if title == Some("weights.bin") {
                (weights_type, "models/weights.bin")
            } else {
                (text_type, "models/vocab.txt")
            };
            let mt = layer["mediaType"].as_str().unwrap();
            assert_eq!(mt, want, "{choice}: {layer}");
            let blob = blob_path(&store, layer["digest"].as_str().unwrap());
            let head = &fs::read(&blob).unwrap()[..4];
            match mt.rsplit('.').next().unwrap() {
                "tar+gzip" => assert_eq!(&head[..2], [0x1f, 0x8b], "gzip magic"),
                "tar+zstd" => assert_eq!(head, [0x28, 0xb5, 0x2f, 0xfd], "zstd magic"),
                _ => assert_eq!(&head[..4], b"mode", "a raw tar starts with models/"),
            }
            // The system's decompressor and tar read the member back intact.
            let content = tar_member(&blob, mt, member);
            let original = fs::read(models.join(member.trim_start_matches("models/"))).unwrap();
            assert!(content == original, "{choice}: {member} differs");
            let size = fs::metadata(&blob).unwrap().len();
            assert_eq!(layer["size"].as_u64(), Some(size));
            if mt.ends_with(".tar") {
                assert!(size > original.len() as u64);
            } else if member.ends_with("vocab.txt") {
                assert!(
                    size < original.len() as u64 / 10,
                    "{choice}: text compressed"
                );
            }
        }
    }
}

/// A modelcar run under `strace -f -qq -y` with `filter` (its `-e` options), from the
/// repository's root with the command's own environment: its outcome and the trace.
fn straced(build: Modelcar, filter: &[&str]) -> (Outcome, String) {
    let cmd = build.command();
    let trace = tempfile::NamedTempFile::new().unwrap();
    let mut traced = std::process::Command::new("strace");
    traced
        .args(["-f", "-qq", "-y", "-o"])
        .arg(trace.path())
        .args(filter)
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .current_dir(repo_root());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => traced.env(k, v),
            None => traced.env_remove(k),
        };
    }
    let outcome = run(traced, None);
    (outcome, fs::read_to_string(trace.path()).unwrap())
}

/// Model-file reads of a modelcar run, seen by strace (`-y` names the file behind each
/// descriptor): the lines of data-reading system calls on `file`.
fn reads_of(file: &Path, build: Modelcar) -> (Outcome, usize) {
    let (outcome, trace) = straced(
        build,
        &[
            "-e",
            "trace=read,pread64,readv,preadv,preadv2,copy_file_range,sendfile,splice,mmap",
        ],
    );
    let needle = format!("<{}>", file.display());
    let reads = trace.lines().filter(|l| l.contains(&needle)).count();
    (outcome, reads)
}

/// Bytes a modelcar run read into the process from each of `files` (read-family system calls
/// seen by strace, summed by their results). In-kernel copies (`copy_file_range`, which writes a
/// large file into its store blob) bring no byte into the process and are not counted.
fn bytes_read_of(files: &[&Path], build: Modelcar) -> (Outcome, Vec<u64>) {
    let (outcome, text) = straced(
        build,
        &[
            "-e",
            "trace=read,pread64,readv,preadv,preadv2",
            "-e",
            "signal=none",
        ],
    );
    let counts = files
        .iter()
        .map(|f| {
            let needle = format!("<{}>", f.display());
            let result = |l: &str| -> u64 {
                l.rsplit_once(") = ")
                    .and_then(|(_, r)| r.split(' ').next()?.parse().ok())
                    .unwrap_or(0)
            };
            // A call that another thread's interrupts is split in two lines: `PID read(FD<path>,
            // <unfinished ...>`, then `PID <... read resumed>..., N) = M`, without the path.
            let mut pending = std::collections::HashSet::new();
            let mut sum = 0;
            for l in text.lines() {
                let pid = l.split(' ').next().unwrap_or("");
                if l.contains(&needle) {
                    if l.ends_with("<unfinished ...>") {
                        pending.insert(pid.to_string());
                    } else {
                        sum += result(l);
                    }
                } else if l.contains(" resumed>") && pending.remove(pid) {
                    sum += result(l);
                }
            }
            sum
        })
        .collect();
    (outcome, counts)
}

#[test]
fn a_build_reads_each_model_byte_once_for_its_layers_bom_and_signature() {
    let dir = temp();
    let models = dir.path().join("models");
    fs::create_dir_all(&models).unwrap();
    // A file for the in-kernel copy into its own layer, and one written through the process.
    let big = models.join("weights.bin");
    let small = models.join("tokenizer.bin");
    write_random(&big, 3 * MIB, 11);
    write_random(&small, 200 << 10, 12);
    let sizes = vec![3 * MIB, 200 << 10];
    let key = dir.path().join("signing.key");
    tool_ok(
        "openssl",
        [
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            key.to_str().unwrap(),
        ],
    );
    let base = bases().busybox();
    let tag = "quay.io/t/m:v1";
    for (i, (compression, sign)) in [("none", false), ("gzip", false), ("none", true)]
        .into_iter()
        .enumerate()
    {
        let store = dir.path().join(format!("store-{i}"));
        let build = || {
            let mut b = modelcar(&store).build(&models, tag, &base).args([
                "--format",
                "weights",
                "--custom-format",
                "--layer-threshold",
                "1MiB",
                "--compression",
                compression,
            ]);
            if sign {
                b = b.arg("--sign-model").arg(&key);
            }
            b
        };
        let (out, read) = bytes_read_of(&[&big, &small], build().arg("--json"));
        let first = out.success().json();
        assert_eq!(
            read, sizes,
            "{compression}, signed {sign}: every model byte read once, for layers, BOM and signature"
        );
        // The BOM lists each file with the SHA-256 of its bytes.
        let bom: Value =
            serde_json::from_str(&modelcar(&store).args(["sbom", tag]).run().success().stdout)
                .unwrap();
        for f in [&big, &small] {
            let name = f.file_name().unwrap().to_str().unwrap();
            let listed = bom["components"][0]["components"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .unwrap_or_else(|| panic!("{name} is not in the BOM: {bom}"));
            assert_eq!(
                listed["hashes"][0]["content"].as_str().unwrap(),
                &sha256(&fs::read(f).unwrap())[7..]
            );
        }
        // After `touch`, each file is read once more to prove it unchanged, and nothing else.
        for f in [&big, &small] {
            fs::File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(std::time::SystemTime::now() + Duration::from_secs(3))
                .unwrap();
        }
        let (out, read) = bytes_read_of(&[&big, &small], build().arg("--json"));
        let again = out.success().json();
        // Read once (a layer written again would read them twice), and the same image.
        assert_eq!(read, sizes, "{compression}: touched files read once");
        assert_eq!(again[0]["digest"], first[0]["digest"]);
    }
}

#[test]
fn an_unchanged_rebuild_reuses_its_layers_without_reading_the_files_again() {
    let dir = temp();
    let models = sklearn_models(&dir.path().join("models"));
    let extra = models.join("extra.bin");
    write_random(&extra, 2 * MIB, 3);
    let store = dir.path().join("store");
    let base = bases().busybox();
    let build = || {
        modelcar(&store)
            .build(&models, "quay.io/t/m:v1", &base)
            .args(["--json", "--layer-threshold", "1MiB"])
    };
    let (first, reads) = reads_of(&extra, build());
    let first = first.success().json();
    assert!(
        reads > 0,
        "strace should see the first build read extra.bin"
    );

    let (second, reads) = reads_of(&extra, build());
    let second = second.success().json();
    assert_eq!(first[0]["digest"], second[0]["digest"]);
    assert_eq!(first[0]["layers"], second[0]["layers"]);
    assert_eq!(
        reads, 0,
        "extra.bin was read again although it did not change"
    );

    // Another store has no cache: the file is read again.
    let (_, reads) = reads_of(
        &extra,
        modelcar(&dir.path().join("other-store")).build(&models, "quay.io/t/m:v1", &base),
    );
    assert!(reads > 0);
}

#[test]
fn a_content_change_that_keeps_size_and_mtime_is_still_seen() {
    let dir = temp();
    let models = sklearn_models(&dir.path().join("models"));
    let weights = models.join("weights.bin");
    write_random(&weights, MIB, 5);
    let store = dir.path().join("store");
    let base = bases().busybox();
    let first = build_one(&store, &models, "quay.io/t/m:v1", &base, &[]);
    let meta = fs::metadata(&weights).unwrap();
    let (mtime, size) = (meta.modified().unwrap(), meta.len());
    let ctime = |m: &fs::Metadata| {
        std::os::unix::fs::MetadataExt::ctime_nsec(m) as i128
            + std::os::unix::fs::MetadataExt::ctime(m) as i128 * 1_000_000_000
    };
    let ctime_before = ctime(&meta);

    // Same size, same inode, other bytes; then the old mtime back (as rsync -t or a careless
    // tool would). Only the ctime tells.
    std::thread::sleep(Duration::from_millis(20));
    {
        use std::io::{Seek, Write};
        let mut f = fs::File::options().write(true).open(&weights).unwrap();
        f.seek(std::io::SeekFrom::Start(1000)).unwrap();
        f.write_all(b"a different weight").unwrap();
        f.set_modified(mtime).unwrap();
    }
    let meta = fs::metadata(&weights).unwrap();
    assert_eq!((meta.modified().unwrap(), meta.len()), (mtime, size));
    assert_ne!(
        ctime(&meta),
        ctime_before,
        "the change must show in the ctime"
    );

    let second = build_one(&store, &models, "quay.io/t/m:v1", &base, &[]);
    assert_ne!(first, second, "a changed file must give a new image");
    let m = manifest(&store, "quay.io/t/m:v1");
    let layer = &model_layers(&m, base_layer_count())[0];
    let content = tar_member(
        &blob_path(&store, layer["digest"].as_str().unwrap()),
        layer["mediaType"].as_str().unwrap(),
        "models/weights.bin",
    );
    assert!(
        content == fs::read(&weights).unwrap(),
        "the layer holds the new bytes"
    );
}

/// A sparse 8.5 GiB file: sizes over ustar's 8 GiB limit need a PAX header GNU tar reads.
#[test]
fn files_over_8_gib_keep_their_size() {
    let started = Instant::now();
    let dir = temp();
    let models = dir.path().join("models");
    fs::create_dir_all(&models).unwrap();
    let size: u64 = 8 * 1024 * MIB + 512 * MIB;
    assert_eq!(size, 9_126_805_504);
    fs::File::create(models.join("huge.safetensors"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let store = dir.path().join("store");
    build_one(
        &store,
        &models,
        "quay.io/t/huge:v1",
        &bases().busybox(),
        &[
            "--compression",
            "zstd",
            "--layers",
            "single",
            "--no-base-check",
        ],
    );
    let m = manifest(&store, "quay.io/t/huge:v1");
    let layer = &model_layers(&m, base_layer_count())[0];
    assert_eq!(
        layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let listing = layer_listing(&store, layer);
    let file = listing
        .iter()
        .find(|l| l.ends_with(" models/huge.safetensors"))
        .unwrap_or_else(|| panic!("models/huge.safetensors not listed: {listing:?}"));
    let fields: Vec<&str> = file.split_whitespace().collect();
    assert_eq!(fields[0], "-r--r--r--", "{file}");
    assert_eq!(fields[1], "1001/0", "{file}");
    assert_eq!(fields[2], "9126805504", "{file}");
    eprintln!("8.5 GiB build and check took {:?}", started.elapsed());
}

#[test]
fn compressed_layers_are_the_same_whatever_the_thread_count() {
    let dir = temp();
    let models = dir.path().join("models");
    fs::create_dir_all(&models).unwrap();
    // Text that compresses, large enough for several gzip blocks and zstd jobs.
    let text: String = (0..600_000)
        .map(|i| format!("token-{i} {}\n", i % 97))
        .collect();
    fs::write(models.join("vocab.txt"), &text).unwrap();
    let base = bases().busybox();
    for (compression, media_type) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ] {
        let digests: Vec<String> = ["1", "3"]
            .iter()
            .map(|threads| {
                let store = dir.path().join(format!("{compression}-{threads}"));
                let flags = [
                    "--format",
                    "tokenizer",
                    "--custom-format",
                    "--compression",
                    compression,
                    "--threads",
                    threads,
                ];
                build_one(&store, &models, "quay.io/t/text:v1", &base, &flags)
            })
            .collect();
        assert_eq!(digests[0], digests[1], "{compression}: 1 and 3 threads");
        let store = dir.path().join(format!("{compression}-3"));
        let m = manifest(&store, "quay.io/t/text:v1");
        let layer = &model_layers(&m, base_layer_count())[0];
        assert_eq!(layer["mediaType"], media_type);
        assert!(layer["size"].as_u64().unwrap() < text.len() as u64 / 2);
        let blob = blob_path(&store, layer["digest"].as_str().unwrap());
        assert_eq!(
            tar_member(&blob, media_type, "models/vocab.txt"),
            text.as_bytes(),
            "{compression}: GNU tar reads back the file"
        );
    }
}
