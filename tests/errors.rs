//! Bad input is refused with a message that names what is wrong, and leaves the store as it was.
//!
//! Each test first builds an image so the store is not empty, takes a snapshot of it (every file
//! and its size, and `index.json`), runs the failing command and compares.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use support::cmd::*;
use support::files::*;
use support::fixtures::*;
use support::images::*;
use support::snapshot::*;

/// A store holding one image, its snapshot, and a scratch directory.
struct Setup {
    dir: tempfile::TempDir,
    store: PathBuf,
    before: Snapshot,
}

impl Setup {
    fn new() -> Setup {
        let dir = temp();
        let store = dir.path().join("store");
        build_one(
            &store,
            &example_model("sklearn"),
            "quay.io/test/existing:v1",
            &bases().busybox(),
            &[],
        );
        let before = snapshot(&store);
        assert!(
            before.files.keys().any(|k| k.starts_with("blobs/sha256/")),
            "the store should hold blobs: {before:?}"
        );
        Setup { dir, store, before }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `modelcar build --models MODELS --tag quay.io/test/new:v1 --base BASE` into the store.
    fn build(&self, models: &Path, base: &str) -> Modelcar {
        modelcar(&self.store).build(models, "quay.io/test/new:v1", base)
    }

    /// [`Setup::build`] on busybox with `extra` flags, which must fail.
    #[track_caller]
    fn build_fails(&self, models: &Path, extra: &[&str]) -> Outcome {
        self.build(models, &bases().busybox())
            .args(extra)
            .run()
            .failure()
    }

    #[track_caller]
    fn unchanged(&self, what: &str) {
        assert_unchanged(&self.before, &self.store, what);
        assert!(
            skopeo_can_inspect(&oci(&self.store, "quay.io/test/existing:v1")),
            "the earlier image should still be readable after {what}"
        );
    }

    /// A model directory with a valid sklearn model and whatever `extra` adds.
    fn models(&self, name: &str, extra: impl FnOnce(&Path)) -> PathBuf {
        let dir = sklearn_models(&self.path(name));
        extra(&dir);
        dir
    }
}

#[test]
fn a_missing_model_directory_is_named() {
    let s = Setup::new();
    let missing = s.path("no-such-models");
    let out = s.build_fails(&missing, &[]);
    out.stderr_has(&[&missing.display().to_string(), "does not exist"]);
    s.unchanged("a build from a missing directory");
}

#[test]
fn a_model_directory_with_only_empty_subdirectories_is_refused_as_empty() {
    let s = Setup::new();
    let dir = s.path("hollow");
    fs::create_dir_all(dir.join("a/b")).unwrap();
    fs::create_dir_all(dir.join("c")).unwrap();
    let out = s.build_fails(&dir, &[]);
    out.stderr_has(&[&dir.display().to_string(), "holds no files", "/models"]);
    s.unchanged("a build from a directory without files");
}

#[test]
fn a_fifo_in_the_model_directory_is_named() {
    let s = Setup::new();
    let dir = s.models("with-fifo", |d| {
        tool_ok("mkfifo", [d.join("pipe")]);
    });
    let out = s.build_fails(&dir, &[]);
    out.stderr_has(&[&dir.join("pipe").display().to_string(), "named pipe"]);
    s.unchanged("a build with a FIFO");
}

#[test]
fn a_symlink_leaving_the_model_directory_is_named() {
    let s = Setup::new();
    let secret = s.path("outside.txt");
    fs::write(&secret, b"not part of the model").unwrap();
    let dir = s.models("escaping", |d| symlink(&secret, d.join("escape")).unwrap());
    let out = s.build_fails(&dir, &[]);
    out.stderr_has(&[&dir.join("escape").display().to_string(), "outside"]);
    s.unchanged("a build with an escaping symlink");
}

#[test]
fn a_dangling_symlink_is_named() {
    let s = Setup::new();
    let dir = s.models("dangling", |d| {
        symlink("gone.bin", d.join("weights")).unwrap()
    });
    let out = s.build_fails(&dir, &[]);
    out.stderr_has(&[
        &dir.join("weights").display().to_string(),
        "gone.bin",
        "does not exist",
    ]);
    s.unchanged("a build with a dangling symlink");
}

#[test]
fn content_of_another_format_is_refused_with_the_format_it_looks_like() {
    let s = Setup::new();
    let out = s.build_fails(&example_model("xgboost"), &["--format", "lightgbm"]);
    out.stderr_has(&["model.bst", "lightgbm", "--format xgboost"]);
    s.unchanged("a build with the wrong --format");
}

#[test]
fn sklearn_without_a_file_mlserver_loads_is_refused_naming_the_expected_names() {
    let s = Setup::new();
    let dir = s.path("sklearn-misnamed");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(
        example_model("sklearn").join("model.joblib"),
        dir.join("classifier.joblib"),
    )
    .unwrap();
    let out = s.build_fails(&dir, &["--format", "sklearn"]);
    out.stderr_has(&["model.joblib", "model.pickle", "model.pkl"]);
    s.unchanged("a build without model.joblib");
}

#[test]
fn a_base_without_a_shell_is_refused_unless_the_check_is_skipped() {
    let s = Setup::new();
    let noshell = bases().oci("noshell");
    let out = s.build(&example_model("sklearn"), &noshell).run().failure();
    out.stderr_has(&["noshell", "lacks sh", "KServe", "sh -c", "--no-base-check"]);
    // Nothing became visible: the index is the same and no temporary file is left. The base's
    // own blobs may stay behind as cached, unreferenced content (a later `clean` removes them);
    // anything else new would be a partial write.
    let after = snapshot(&s.store);
    assert_eq!(after.index, s.before.index, "the index must not change");
    let base_blobs = blob_names(&bases().layout);
    for (path, _) in after
        .files
        .iter()
        .filter(|(k, _)| !s.before.files.contains_key(*k))
    {
        let blob = path
            .strip_prefix("blobs/sha256/")
            .unwrap_or_else(|| panic!("the failed build left {path} in the store"));
        assert!(
            base_blobs.contains(blob),
            "the failed build left blob {blob}, which is not the base's"
        );
    }
    assert!(
        !after
            .files
            .keys()
            .any(|k| k.starts_with(".modelcar/tmp/") && !k.ends_with('/')),
        "temporary files left: {:?}",
        after.files
    );

    let digest = s
        .build(&example_model("sklearn"), &noshell)
        .arg("--no-base-check")
        .run()
        .success()
        .digest();
    let inspected = skopeo_inspect(&oci(&s.store, "quay.io/test/new:v1"), &[]);
    assert_eq!(inspected["Digest"], digest.as_str());
}

#[test]
fn a_malformed_tag_is_refused_naming_it() {
    let s = Setup::new();
    for tag in [
        "Quay.io/Upper/Case:v1",
        "quay.io/org/model:",
        "quay.io/org/model:-v1",
    ] {
        let out = modelcar(&s.store)
            .build(&example_model("sklearn"), tag, &bases().busybox())
            .run()
            .failure();
        out.stderr_has(&[tag, "invalid image reference"]);
    }
    s.unchanged("builds with malformed tags");
}

#[test]
fn an_unknown_key_in_the_project_file_is_named() {
    let s = Setup::new();
    let dir = s.path("project");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("modelcar.toml");
    fs::write(
        &file,
        format!(
            "registry = \"quay.io/test\"\nversion = \"v1\"\nbase = \"{}\"\n\n\
             [images.sklearn]\nrepository = \"sk\"\nmodels = \"{}\"\nformat = \"sklearn\"\n\
             compresion = \"zstd\"\n",
            bases().busybox(),
            example_model("sklearn").display()
        ),
    )
    .unwrap();
    let out = modelcar(&s.store)
        .cwd(&dir)
        .args(["build", "-f"])
        .arg(&file)
        .run()
        .failure();
    out.stderr_has(&["compresion", &file.display().to_string()]);
    s.unchanged("a build with a misspelt key");
}

#[test]
fn a_platform_without_an_architecture_is_refused() {
    let s = Setup::new();
    let out = s.build_fails(&example_model("sklearn"), &["--platform", "linux"]);
    out.stderr_has(&["`linux`", "os/arch"]);
    s.unchanged("a build with --platform linux");
}

#[test]
fn an_unknown_image_name_in_a_base_layout_lists_the_names_there() {
    let s = Setup::new();
    let base = bases().oci("nosuch");
    let out = s.build(&example_model("sklearn"), &base).run().failure();
    out.stderr_has(&["nosuch", "busybox", "multi", "noshell"]);
    s.unchanged("a build on an unknown base name");
}

#[test]
fn a_base_layout_that_does_not_exist_is_named() {
    let s = Setup::new();
    let missing = s.path("no-such-layout");
    let out = s
        .build(&example_model("sklearn"), &oci(&missing, "busybox"))
        .run()
        .failure();
    out.stderr_has(&[&missing.display().to_string()]);
    s.unchanged("a build on a missing layout");
}

#[test]
fn a_source_date_epoch_that_is_not_a_number_is_refused() {
    let s = Setup::new();
    let out = s
        .build(&example_model("sklearn"), &bases().busybox())
        .env("SOURCE_DATE_EPOCH", "abc")
        .run()
        .failure();
    out.stderr_has(&["SOURCE_DATE_EPOCH", "`abc`"]);
    s.unchanged("a build with SOURCE_DATE_EPOCH=abc");
}

#[test]
fn unknown_compression_and_layer_modes_are_named() {
    let s = Setup::new();
    let out = s.build_fails(&example_model("sklearn"), &["--compression", "brotli"]);
    out.stderr_has(&["brotli", "gzip", "zstd"]);
    let out = s.build_fails(&example_model("sklearn"), &["--layers", "many"]);
    out.stderr_has(&["many", "split", "single"]);
    let out = s.build_fails(
        &example_model("sklearn"),
        &["--layer-threshold", "12 parsecs"],
    );
    out.stderr_has(&["12 parsecs"]);
    s.unchanged("builds with unknown option values");
}

/// As root every file is readable, so this runs modelcar as `nobody` (65534) with `setpriv`.
#[test]
fn an_unreadable_model_file_is_named() {
    let dir = temp_for_nobody();
    let store = dir.path().join("store");
    fs::create_dir(&store).unwrap();
    std::os::unix::fs::chown(&store, Some(65534), Some(65534)).unwrap();
    // The base as a file nobody can read (the fixture layout's index.json is 0600).
    let base = dir.path().join("busybox.docker.tar");
    fs::copy(&bases().docker_tar, &base).unwrap();
    chmod(&base, 0o644);
    let models = sklearn_models(&dir.path().join("models"));
    let secret = models.join("tokenizer.json");
    fs::write(&secret, b"{\"vocab\": {}}").unwrap();
    chmod(&secret, 0o644);
    chmod(&models, 0o755);

    // A copy of the binary, so that the unprivileged user can run it wherever the checkout is.
    let binary = dir.path().join("modelcar");
    fs::copy(MODELCAR, &binary).unwrap();
    chmod(&binary, 0o755);
    let build_as_nobody = |tag: &str| {
        let mut cmd = as_nobody();
        cmd.args(["--reset-env", "--"])
            .arg(&binary)
            .arg("--store")
            .arg(&store)
            .args(["build", "--models"])
            .arg(&models)
            .args(["--tag", tag, "--base"])
            .arg(docker_archive(&base))
            .current_dir(dir.path());
        run(cmd, None)
    };

    // Control: with every file readable, the unprivileged user can build into this store.
    build_as_nobody("quay.io/test/readable:v1").success();
    let before = snapshot(&store);

    chmod(&secret, 0o000);
    let out = build_as_nobody("quay.io/test/unreadable:v1").failure();
    out.stderr_has(&[&secret.display().to_string(), "cannot be read"]);
    assert_unchanged(&before, &store, "a build with an unreadable file");
}
