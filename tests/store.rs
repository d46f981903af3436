//! The local store and what reads it: `images`, `inspect`, `export`, `clean`, `kserve`; and that
//! the store stays consistent when builds are killed or run side by side.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use support::cmd::*;
use support::files::*;
use support::fixtures::*;
use support::images::*;
use support::kserve::*;

const MIB: u64 = 1 << 20;

/// A store holding the three example images, built on the busybox base.
fn store_with_examples(dir: &Path) -> (std::path::PathBuf, Vec<(String, String)>) {
    let store = dir.join("store");
    let built = modelcar(&store)
        .args(["build", "--all", "--base", &bases().busybox()])
        .run()
        .success()
        .built();
    assert_eq!(built.len(), 3);
    (store, built)
}

/// `modelcar export REFERENCE DEST EXTRA...`, which must succeed.
fn export(store: &Path, reference: &str, dest: &str, extra: &[&str]) {
    modelcar(store)
        .args(["export", reference, dest])
        .args(extra)
        .run()
        .success();
}

/// Read a document blob of a layout, checking it against its digest.
fn document(layout: &Path, digest: &str) -> Value {
    let bytes = fs::read(blob_path(layout, digest)).unwrap();
    assert_eq!(
        sha256(&bytes),
        digest,
        "blob content does not match its name"
    );
    serde_json::from_slice(&bytes).unwrap()
}

/// Every blob an image needs (hex names), walking its documents.
fn reachable(layout: &Path, digest: &str, out: &mut BTreeSet<String>) {
    out.insert(digest.trim_start_matches("sha256:").to_string());
    let doc = document(layout, digest);
    if let Some(children) = doc["manifests"].as_array() {
        for c in children {
            reachable(layout, c["digest"].as_str().unwrap(), out);
        }
    } else {
        for d in std::iter::once(&doc["config"]).chain(doc["layers"].as_array().unwrap()) {
            out.insert(
                d["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:")
                    .to_string(),
            );
        }
    }
}

/// Blobs reachable from the named entries of a layout's index.json.
fn reachable_from_index(layout: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in read_json(&layout.join("index.json"))["manifests"]
        .as_array()
        .unwrap()
    {
        reachable(layout, m["digest"].as_str().unwrap(), &mut out);
    }
    out
}

/// Every tagged image is complete, and any other blob is one of the base images' own (the
/// store keeps imported base documents until `clean` collects them); nothing else.
fn assert_complete_with_only_base_extras(store: &Path) {
    let blobs = blob_names(store);
    let reachable = reachable_from_index(store);
    let missing: Vec<_> = reachable.difference(&blobs).collect();
    assert!(missing.is_empty(), "blobs missing: {missing:?}");
    let base = blob_names(&bases().layout);
    let stray: Vec<_> = blobs
        .difference(&reachable)
        .filter(|b| !base.contains(*b))
        .collect();
    assert!(stray.is_empty(), "blobs no image uses: {stray:?}");
}

/// `sha256sum` over every blob: each must hash to its file name.
fn assert_blobs_match_their_names(layout: &Path) {
    let out = sh(&format!(
        "cd {} && find . -type f -print0 | xargs -0 -r sha256sum",
        q(layout.join("blobs/sha256"))
    ));
    let mut n = 0;
    for line in out.lines() {
        let (hash, name) = line.split_once("  ").unwrap();
        assert_eq!(
            format!("./{hash}"),
            name,
            "blob {name} does not hash to its name"
        );
        n += 1;
    }
    assert!(n > 0, "no blobs in {}", layout.display());
}

// ---------------------------------------------------------------------------------------------
// images and inspect

#[test]
fn images_lists_references_digests_and_platforms_of_what_was_built() {
    let dir = temp();
    let store = dir.path().join("store");
    let single = build_one(
        &store,
        &example_model("sklearn"),
        "quay.io/test/single:v1",
        &bases().busybox(),
        &[],
    );
    let multi = build_one(
        &store,
        &example_model("lightgbm"),
        "quay.io/test/multi:v2",
        &bases().multi(),
        &[],
    );
    let rows = modelcar(&store)
        .args(["images", "--json"])
        .run()
        .success()
        .json();
    let rows = rows.as_array().expect("an array");
    let row = |r: &str| {
        rows.iter()
            .find(|x| x["reference"] == r)
            .unwrap_or_else(|| panic!("{r} not listed: {rows:?}"))
            .clone()
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    let s = row("quay.io/test/single:v1");
    assert_eq!(s["digest"], single.as_str());
    assert_eq!(s["platforms"], serde_json::json!(["linux/amd64"]));
    let m = row("quay.io/test/multi:v2");
    assert_eq!(m["digest"], multi.as_str());
    assert_eq!(
        m["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    // The same digests as skopeo reads them from the store.
    for (r, d) in [
        ("quay.io/test/single:v1", &single),
        ("quay.io/test/multi:v2", &multi),
    ] {
        assert_eq!(&sha256(&skopeo_raw(&oci(&store, r))), d);
    }
}

#[test]
fn inspect_files_lists_the_model_files_with_owner_1001_0_and_read_only_modes() {
    let dir = temp();
    let models = sklearn_models(&dir.path().join("models"));
    fs::create_dir_all(models.join("sub")).unwrap();
    fs::write(models.join("sub/notes.txt"), b"hello").unwrap();
    let store = dir.path().join("store");
    build_one(
        &store,
        &models,
        "quay.io/test/m:v1",
        &bases().busybox(),
        &[],
    );
    let v = modelcar(&store)
        .args(["inspect", "quay.io/test/m:v1", "--files", "--json"])
        .run()
        .success()
        .json();
    let manifests = v["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1);
    let files = manifests[0]["files"].as_array().expect("files listed");
    let got: Vec<(String, String, u64, u64, String, u64)> = files
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["kind"].as_str().unwrap().to_string(),
                f["uid"].as_u64().unwrap(),
                f["gid"].as_u64().unwrap(),
                f["mode"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let t = |p: &str, k: &str, m: &str, s: u64| {
        (p.to_string(), k.to_string(), 1001, 0, m.to_string(), s)
    };
    assert_eq!(
        got,
        [
            t("/models", "dir", "0555", 0),
            t("/models/model.joblib", "file", "0444", 991),
            t("/models/sub", "dir", "0555", 0),
            t("/models/sub/notes.txt", "file", "0444", 5),
        ]
    );
    assert_eq!(manifests[0]["user"], "1001");
    assert!(manifests[0]["entrypoint"].is_null());
}

// ---------------------------------------------------------------------------------------------
// export

#[test]
fn export_writes_oci_layouts_and_archives_that_skopeo_reads() {
    let dir = temp();
    let (store, built) = store_with_examples(dir.path());
    let reference = project_ref("sklearn");
    let digest = digest_of(&built, &reference);
    let config = skopeo_inspect(&oci(&store, &reference), &["--config"]);
    let diff_ids = config["rootfs"]["diff_ids"].clone();
    let layers = skopeo_inspect(&oci(&store, &reference), &[])["Layers"].clone();

    // oci:DIR:TAG, by project name.
    let layout = dir.path().join("exported");
    export(&store, "sklearn", &oci(&layout, "mytag"), &[]);
    let info = skopeo_inspect(&oci(&layout, "mytag"), &[]);
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Layers"], layers);
    // A second image into the same layout keeps the first.
    export(&store, &project_ref("xgboost"), &oci(&layout, "other"), &[]);
    assert!(skopeo_can_inspect(&oci(&layout, "mytag")));
    assert!(skopeo_can_inspect(&oci(&layout, "other")));
    assert_blobs_match_their_names(&layout);

    // oci-archive:FILE
    let archive = oci_archive(&dir.path().join("image.oci.tar"));
    export(&store, &reference, &archive, &[]);
    let info = skopeo_inspect(&archive, &[]);
    assert_eq!(info["Digest"], digest.as_str());
    assert_eq!(info["Layers"], layers);

    // docker-archive:FILE: skopeo lists a Docker archive's layers by diff ID.
    let location = docker_archive(&dir.path().join("image.docker.tar"));
    export(&store, &reference, &location, &[]);
    let info = skopeo_inspect(&location, &[]);
    assert_eq!(info["Layers"], diff_ids);
    assert_eq!(info["Labels"]["io.modelcar.model.format"], "sklearn");
    let docker_config = skopeo_inspect(&location, &["--config"]);
    assert_eq!(docker_config["config"]["User"], "1001");
    assert!(docker_config["config"]["Entrypoint"].is_null());
    // And the archive holds everything: skopeo copies it and umoci unpacks the copy.
    let copy = dir.path().join("from-docker");
    skopeo_copy(&[], &location, &oci(&copy, "x"));
    let bundle = dir.path().join("bundle");
    umoci_unpack(&copy, "x", &bundle);
    assert_eq!(
        fs::read(bundle.join("rootfs/models/model.joblib")).unwrap(),
        fs::read(example_model("sklearn").join("model.joblib")).unwrap()
    );
    assert_eq!(
        owner_mode(&bundle.join("rootfs/models/model.joblib")),
        (1001, 0, 0o444)
    );
}

#[test]
fn a_multi_platform_image_exported_as_a_docker_archive_holds_one_platform() {
    let dir = temp();
    let store = dir.path().join("store");
    let tag = "quay.io/test/multi:v1";
    build_one(
        &store,
        &example_model("sklearn"),
        tag,
        &bases().multi(),
        &[],
    );
    let location = oci(&store, tag);

    for arch in ["amd64", "arm64"] {
        let file = dir.path().join(format!("{arch}.tar"));
        let archive = docker_archive(&file);
        let platform = format!("linux/{arch}");
        export(&store, tag, &archive, &["--platform", &platform]);
        let config = skopeo_inspect(&archive, &["--config"]);
        let want = skopeo_inspect(&location, &["--override-arch", arch, "--config"]);
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["rootfs"], want["rootfs"], "{arch}");
        // One image in the archive.
        let manifest = tool_ok("tar", ["-xOf", file.to_str().unwrap(), "manifest.json"]);
        let manifest: Value = serde_json::from_str(&manifest).unwrap();
        assert_eq!(manifest.as_array().unwrap().len(), 1);
    }

    // Without --platform it still writes one platform.
    let default = docker_archive(&dir.path().join("default.tar"));
    export(&store, tag, &default, &[]);
    let config = skopeo_inspect(&default, &["--config"]);
    assert!(
        config["architecture"] == "amd64" || config["architecture"] == "arm64",
        "{config}"
    );
}

#[test]
fn exports_are_readable_by_other_users() {
    let dir = temp_for_nobody();
    let store = dir.path().join("store");
    let tag = "quay.io/test/shared:v1";
    build_one(
        &store,
        &example_model("sklearn"),
        tag,
        &bases().busybox(),
        &[],
    );
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    chmod(&out, 0o755);
    for dest in [
        oci(&out.join("layout"), "x"),
        oci_archive(&out.join("image.oci.tar")),
        docker_archive(&out.join("image.docker.tar")),
    ] {
        export(&store, tag, &dest, &[]);
        let mut cmd = as_nobody();
        cmd.args(["--", "skopeo", "inspect", &dest])
            .current_dir(dir.path());
        let o = run(cmd, None);
        assert!(
            o.status.success(),
            "another user cannot read {dest}: {}",
            o.stderr
        );
    }
}

// ---------------------------------------------------------------------------------------------
// clean

#[test]
fn clean_removes_only_the_named_image_and_the_blobs_nothing_else_uses() {
    let dir = temp();
    let (store, built) = store_with_examples(dir.path());
    build_one(
        &store,
        &example_model("sklearn"),
        "quay.io/test/multi:v1",
        &bases().multi(),
        &[],
    );
    let sklearn = project_ref("sklearn");
    let sklearn_layers = skopeo_inspect(&oci(&store, &sklearn), &[])["Layers"].clone();
    let model_layer = sklearn_layers
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap();
    let base_layer = sklearn_layers[0].as_str().unwrap();
    assert_complete_with_only_base_extras(&store);

    let out = modelcar(&store).args(["clean", "sklearn"]).run().success();
    assert!(out.stderr.contains(&sklearn), "{}", out.stderr);

    assert!(
        !skopeo_can_inspect(&oci(&store, &sklearn)),
        "sklearn is gone"
    );
    let gone = tool(
        "umoci",
        ["stat", "--image", &format!("{}:{sklearn}", store.display())],
    );
    assert!(!gone.status.success(), "umoci still finds {sklearn}");
    for r in [project_ref("xgboost"), project_ref("lightgbm")] {
        let info = skopeo_inspect(&oci(&store, &r), &[]);
        assert_eq!(info["Digest"], digest_of(&built, &r).as_str());
    }
    assert!(skopeo_can_inspect(&oci(&store, "quay.io/test/multi:v1")));
    skopeo_copy(
        &["--multi-arch", "all"],
        &oci(&store, "quay.io/test/multi:v1"),
        &oci(&dir.path().join("copy"), "m"),
    );

    // The sklearn model layer went with it (the multi image has the same model layer, so it
    // stays: it is still used); the base layer the others share stays.
    let blobs = blob_names(&store);
    assert!(blobs.contains(base_layer.trim_start_matches("sha256:")));
    let multi_layers = skopeo_inspect(
        &oci(&store, "quay.io/test/multi:v1"),
        &["--override-arch", "amd64"],
    )["Layers"]
        .clone();
    assert_eq!(
        multi_layers
            .as_array()
            .unwrap()
            .contains(&Value::from(model_layer)),
        blobs.contains(model_layer.trim_start_matches("sha256:"))
    );
    // Exactly what the remaining images need is left.
    assert_eq!(blobs, reachable_from_index(&store), "after");
    assert_eq!(
        index_refs(&store),
        [
            project_ref("lightgbm"),
            project_ref("xgboost"),
            "quay.io/test/multi:v1".to_string()
        ]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );

    // Removing the multi image too frees the model layer.
    modelcar(&store)
        .args(["clean", "quay.io/test/multi:v1"])
        .run()
        .success();
    let blobs = blob_names(&store);
    assert!(!blobs.contains(model_layer.trim_start_matches("sha256:")));
    assert_eq!(blobs, reachable_from_index(&store));
    assert_blobs_match_their_names(&store);
}

// ---------------------------------------------------------------------------------------------
// consistency

/// Start four builds of different tags into `store` at once; check that all succeed and that
/// the store holds the four complete images and nothing else.
fn concurrent_builds(dir: &Path, store: &Path) {
    let base = bases().multi();
    let mut models = Vec::new();
    for i in 0..4u64 {
        let m = sklearn_models(&dir.join(format!("models-{i}")));
        write_random(&m.join("weights.bin"), 3 << 20, 100 + i);
        models.push(m);
    }
    // Started together, so that they import the same base and write the index concurrently.
    let children: Vec<_> = models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            modelcar(store)
                .build(m, &format!("quay.io/test/concurrent-{i}:v1"), &base)
                .spawn()
        })
        .collect();
    let digests: Vec<String> = children
        .into_iter()
        .map(|(c, line)| wait(c, line).success().digest())
        .collect();
    for (i, d) in digests.iter().enumerate() {
        let location = oci(store, &format!("quay.io/test/concurrent-{i}:v1"));
        assert_eq!(&sha256(&skopeo_raw(&location)), d);
        skopeo_inspect(&location, &["--override-arch", "arm64"]);
    }
    assert_eq!(index_refs(store).len(), 4);
    assert_blobs_match_their_names(store);
    assert_complete_with_only_base_extras(store);
}

#[test]
fn builds_into_one_store_at_the_same_time_all_succeed() {
    let dir = temp();
    let store = dir.path().join("store");
    // The store exists already (see the next test for a new one).
    let listed = modelcar(&store)
        .args(["images", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(listed, serde_json::json!([]));
    concurrent_builds(dir.path(), &store);
}

#[test]
fn builds_into_a_new_store_at_the_same_time_all_succeed() {
    let dir = temp();
    concurrent_builds(dir.path(), &dir.path().join("store"));
}

#[test]
fn a_build_killed_midway_leaves_the_store_consistent_and_a_rerun_succeeds() {
    let dir = temp();
    let (store, built) = store_with_examples(dir.path());
    let models = dir.path().join("big");
    fs::create_dir_all(&models).unwrap();
    // Random bytes: compressed output reaches the temporary blob early in the build.
    write_random(&models.join("weights.bin"), 32 * MIB, 9);
    let tag = "quay.io/test/killed:v1";
    let build = || {
        modelcar(&store)
            .build(&models, tag, &bases().busybox())
            .args(["--compression", "gzip"])
    };

    // Kill the build (SIGKILL) as soon as a partial blob is on disk.
    let (mut child, _) = build().spawn();
    let tmp = store.join(".modelcar/tmp");
    let partial = || {
        fs::read_dir(&tmp)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.len() > 0))
    };
    let started = Instant::now();
    while !partial() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before writing a partial blob; the test proves nothing"
        );
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "no partial blob appeared in {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the build must have been killed, not finished: {status}"
    );

    let index = read_json(&store.join("index.json"));
    assert!(
        !index_refs(&store).contains(&tag.to_string()),
        "a killed build must not be listed: {index}"
    );
    for (r, d) in &built {
        assert_eq!(skopeo_inspect(&oci(&store, r), &[])["Digest"], d.as_str());
    }
    assert_blobs_match_their_names(&store);
    assert_complete_with_only_base_extras(&store);

    let digest = build().run().success().digest();
    let info = skopeo_inspect(&oci(&store, tag), &[]);
    assert_eq!(info["Digest"], digest.as_str());
    assert_blobs_match_their_names(&store);
    // A later clean removes what the killed build left behind.
    modelcar(&store)
        .args(["clean", "quay.io/test/nothing:v1"])
        .run()
        .success();
    assert_eq!(blob_names(&store), reachable_from_index(&store));
    let leftovers: Vec<_> = fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

// ---------------------------------------------------------------------------------------------
// kserve

fn isvc_model(yaml: &str) -> serde_yaml::Value {
    let doc: serde_yaml::Value = serde_yaml::from_str(yaml).expect("kserve prints YAML");
    doc["spec"]["predictor"]["model"].clone()
}

#[test]
fn kserve_prints_an_inference_service_pinned_to_the_built_digest() {
    let dir = temp();
    let (store, built) = store_with_examples(dir.path());
    let digest = digest_of(&built, &project_ref("sklearn"));
    let out = modelcar(&store).args(["kserve", "sklearn"]).run().success();
    let model = isvc_model(&out.stdout);
    assert_eq!(
        model["storageUri"].as_str(),
        Some(format!("oci://quay.io/jooholee/mlserver-sklearn@{digest}").as_str())
    );
    assert_eq!(model["runtime"].as_str(), Some("kserve-mlserver"));
    assert_eq!(model["protocolVersion"].as_str(), Some("v2"));
    assert_eq!(model["modelFormat"]["name"].as_str(), Some("sklearn"));
    let v = validate_kserve(&out.stdout);
    assert!(v.status.success(), "{}\n{}", out.stdout, v.stderr);

    // Every example validates, with its own format.
    for (name, repo, _) in EXAMPLES {
        let out = modelcar(&store)
            .args(["kserve", name, "--name", &format!("{name}-iris")])
            .run()
            .success();
        let model = isvc_model(&out.stdout);
        assert_eq!(model["modelFormat"]["name"].as_str(), Some(name));
        let uri = model["storageUri"].as_str().unwrap();
        assert!(
            uri.starts_with(&format!("oci://quay.io/jooholee/{repo}@sha256:")),
            "{uri}"
        );
        let v = validate_kserve(&out.stdout);
        assert!(v.status.success(), "{}\n{}", out.stdout, v.stderr);
    }

    // The image volume form.
    let out = modelcar(&store)
        .args(["kserve", "sklearn", "--storage", "native"])
        .run()
        .success();
    assert_eq!(
        isvc_model(&out.stdout)["storageUri"].as_str(),
        Some(format!("oci+native://quay.io/jooholee/mlserver-sklearn@{digest}").as_str())
    );
    assert!(validate_kserve(&out.stdout).status.success());
}

#[test]
fn kserve_warns_that_xgboost_fails_behind_the_sidecar_but_not_as_an_image_volume() {
    let dir = temp();
    let (store, _) = store_with_examples(dir.path());
    let out = modelcar(&store).args(["kserve", "xgboost"]).run().success();
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("XGBoost"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("--storage native"), "{}", out.stderr);
    assert!(validate_kserve(&out.stdout).status.success());
    let out = modelcar(&store)
        .args(["kserve", "xgboost", "--storage", "native"])
        .run()
        .success();
    assert!(!out.stderr.contains("warning"), "{}", out.stderr);
    assert!(isvc_model(&out.stdout)["storageUri"]
        .as_str()
        .unwrap()
        .starts_with("oci+native://"));
}

/// `modelcar kserve sklearn` with the options given, from a store holding the sklearn example:
/// the image only provides the digest; `--format` says what the manifest is for.
fn kserve_with(store: &Path, args: &[&str]) -> Outcome {
    modelcar(store)
        .arg("kserve")
        .arg("sklearn")
        .args(args)
        .run()
}

#[test]
fn every_manifest_kserve_prints_validates_strictly_against_kserves_crds() {
    use modelcar::kserve::{combination_supported, runtimes, Kind, Storage};
    let dir = temp();
    let (store, _) = store_with_examples(dir.path());
    let mut printed = Vec::new();
    let mut refused = 0;
    let kinds = [(Kind::InferenceService, "isvc"), (Kind::Llm, "llm")];
    let storages = [
        (Storage::Sidecar, "oci"),
        (Storage::Native, "native"),
        (Storage::Fetch, "fetch"),
    ];
    // Every format KServe's runtimes serve, in every storage mode and kind: KServe's choice of
    // runtime.
    for format in runtimes::known_formats() {
        for (kind, k) in kinds {
            for (storage, st) in storages {
                let out = kserve_with(
                    &store,
                    &[
                        "--format",
                        format,
                        "--storage",
                        st,
                        "--kind",
                        k,
                        "--name",
                        "m",
                    ],
                );
                if combination_supported(format, kind, storage) {
                    let out = out.success();
                    let doc: serde_yaml::Value = serde_yaml::from_str(&out.stdout).unwrap();
                    let uri = match kind {
                        Kind::InferenceService => &doc["spec"]["predictor"]["model"]["storageUri"],
                        Kind::Llm => &doc["spec"]["model"]["uri"],
                    };
                    assert!(
                        uri.as_str().unwrap().starts_with(&format!(
                            "{}://quay.io/jooholee/mlserver-sklearn@sha256:",
                            storage.scheme()
                        )),
                        "{}",
                        out.stdout
                    );
                    printed.push(out.stdout);
                } else {
                    out.failure().stderr_has(&["LLMInferenceService"]);
                    refused += 1;
                }
            }
        }
    }
    // Every runtime KServe ships, named, for every format it serves; and a custom runtime.
    for rt in runtimes::RUNTIMES {
        for f in rt.formats {
            let out = kserve_with(&store, &["--format", f.name, "--runtime", rt.name]).success();
            assert_eq!(
                isvc_model(&out.stdout)["runtime"].as_str(),
                Some(rt.name),
                "{}",
                out.stdout
            );
            printed.push(out.stdout);
        }
    }
    let out = kserve_with(
        &store,
        &["--format", "my-format", "--runtime", "my-runtime"],
    )
    .success();
    printed.push(out.stdout);
    // LLM formats and three storages, plus every other format refused as an LLM service.
    assert!(refused > runtimes::known_formats().len());
    assert_valid(&printed.join("---\n"));
}

#[test]
fn kserve_refuses_unknown_formats_and_runtimes_that_do_not_serve_the_format() {
    let dir = temp();
    let store = dir.path().join("store");
    build_one(
        &store,
        &example_model("sklearn"),
        "quay.io/t/sklearn:v1",
        &bases().busybox(),
        &["-q", "--format", "sklearn"],
    );
    let k = |args: &[&str]| {
        modelcar(&store)
            .arg("kserve")
            .arg("quay.io/t/sklearn:v1")
            .args(args)
            .run()
    };
    // KServe's choice for the three original formats stays kserve-mlserver, protocol v2.
    let out = k(&[]).success();
    assert_eq!(
        isvc_model(&out.stdout)["runtime"].as_str(),
        Some("kserve-mlserver")
    );
    assert_eq!(
        isvc_model(&out.stdout)["protocolVersion"].as_str(),
        Some("v2")
    );
    // KServe's own sklearn server, named, keeps v2 (it speaks v1 and v2).
    let out = k(&["--runtime", "kserve-sklearnserver"]).success();
    assert_eq!(
        isvc_model(&out.stdout)["protocolVersion"].as_str(),
        Some("v2")
    );
    k(&["--runtime", "kserve-sklearnserver", "--protocol", "v1"]).success();
    k(&["--runtime", "kserve-mlserver", "--protocol", "v1"])
        .failure()
        .stderr_has(&["kserve-mlserver", "v1", "v2"]);
    // A runtime that does not serve the format: the ones that do are listed.
    k(&["--runtime", "kserve-torchserve"])
        .failure()
        .stderr_has(&[
            "kserve-torchserve",
            "sklearn",
            "kserve-mlserver",
            "kserve-sklearnserver",
            "kserve-predictiveserver",
        ]);
    // An unknown format: the known ones are listed; a custom runtime takes it.
    k(&["--format", "bogus"])
        .failure()
        .stderr_has(&["bogus", "huggingface", "onnx", "--runtime"]);
    k(&["--format", "bogus", "--runtime", "my-runtime"]).success();
    k(&["--kind", "llm"])
        .failure()
        .stderr_has(&["sklearn", "huggingface"]);
    k(&["--storage", "s3"])
        .failure()
        .stderr_has(&["s3", "fetch"]);
    k(&["--kind", "pod"]).failure().stderr_has(&["pod", "llm"]);
}

#[test]
fn kserve_refuses_the_fetch_mode_for_an_image_with_zstd_layers() {
    let dir = temp();
    let store = dir.path().join("store");
    for (tag, compression) in [("zstd", "zstd"), ("gzip", "gzip")] {
        build_one(
            &store,
            &example_model("sklearn"),
            &format!("quay.io/t/sklearn:{tag}"),
            &bases().busybox(),
            &["-q", "--format", "sklearn", "--compression", compression],
        );
    }
    let k = |tag: &str, storage: &str| {
        modelcar(&store)
            .args([
                "kserve",
                &format!("quay.io/t/sklearn:{tag}"),
                "--storage",
                storage,
            ])
            .run()
    };
    k("zstd", "fetch").failure().stderr_has(&[
        "quay.io/t/sklearn:zstd",
        "oci+fetch",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "--compression gzip",
    ]);
    k("zstd", "oci").success();
    k("zstd", "native").success();
    k("gzip", "fetch").success();
}

#[test]
fn the_inference_service_validator_rejects_what_a_cluster_would() {
    let good = "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\n\
                metadata:\n  name: sklearn-iris\nspec:\n  predictor:\n    model:\n\
                \x20     runtime: kserve-mlserver\n      protocolVersion: v2\n\
                \x20     modelFormat:\n        name: sklearn\n\
                \x20     storageUri: oci://quay.io/org/m@sha256:0000000000000000000000000000000000000000000000000000000000000000\n";
    let ok = validate_kserve(good);
    assert!(ok.status.success(), "{}", ok.stderr);
    for (change, says) in [
        (
            (
                "storageUri: oci://quay.io/org/m@sha256:",
                "storageUri: 42 #",
            ),
            "storageUri",
        ),
        (("name: sklearn\n", "name: [sklearn]\n"), "modelFormat.name"),
        (("name: sklearn\n", "name: pytorch\n"), "pytorch"),
        (
            ("protocolVersion: v2", "protocolVersion: v1"),
            "protocolVersion",
        ),
        (("runtime:", "runtim:"), "runtim"),
        (
            ("name: sklearn-iris", "name: Sklearn_Iris"),
            "metadata.name",
        ),
        (("kind: InferenceService", "kind: Pod"), "kind"),
        // Without a runtime, one KServe ships must auto-select the format and protocol.
        (("      runtime: kserve-mlserver\n", ""), "ok: "),
        (
            (
                "      runtime: kserve-mlserver\n      protocolVersion: v2\n",
                "",
            ),
            "ok: ",
        ),
        (
            (
                "      runtime: kserve-mlserver\n      protocolVersion: v2\n",
                "      protocolVersion: grpc-v1\n",
            ),
            "auto-selects",
        ),
    ] {
        let bad = good.replacen(change.0, change.1, 1);
        assert_ne!(bad, good);
        let out = validate_kserve(&bad);
        if says == "ok: " {
            assert!(out.status.success(), "{bad}\n{}", out.stderr);
            continue;
        }
        assert_eq!(
            out.status.code(),
            Some(1),
            "accepted:\n{bad}\n{}",
            out.stdout
        );
        assert!(out.stderr.contains(says), "{says}: {}", out.stderr);
    }
}

#[test]
fn the_llm_service_validator_rejects_what_a_cluster_would() {
    let good = "apiVersion: serving.kserve.io/v1alpha2\nkind: LLMInferenceService\n\
                metadata:\n  name: llama\nspec:\n  model:\n\
                \x20   uri: oci://quay.io/org/llama@sha256:0000000000000000000000000000000000000000000000000000000000000000\n\
                \x20   name: llama\n";
    let ok = validate_kserve(good);
    assert!(ok.status.success(), "{}", ok.stderr);
    for (change, says) in [
        (("    name: llama\n", "    nam: llama\n"), "nam"),
        (("    uri: oci://", "    url: oci://"), "uri"),
        (("uri: oci://", "uri: ftp://"), "scheme"),
        (("v1alpha2", "v1beta1"), "apiVersion"),
        (("  model:\n", "  models:\n"), "models"),
    ] {
        let bad = good.replacen(change.0, change.1, 1);
        assert_ne!(bad, good);
        let out = validate_kserve(&bad);
        assert_eq!(
            out.status.code(),
            Some(1),
            "accepted:\n{bad}\n{}",
            out.stdout
        );
        assert!(out.stderr.contains(says), "{says}: {}", out.stderr);
    }
}
