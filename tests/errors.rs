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

/// `modelcar.toml` in a fresh directory of `s`: the shared keys, `extra` lines at the top, and
/// one image `m` built from `models` on busybox.
fn project_file(s: &Setup, name: &str, extra: &str, models: &Path) -> PathBuf {
    let dir = s.path(name);
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("modelcar.toml");
    fs::write(
        &file,
        format!(
            "registry = \"quay.io/test\"\nversion = \"v1\"\nbase = \"{}\"\n{extra}\n\n\
             [images.m]\nrepository = \"{name}\"\nmodels = \"{}\"\nformat = \"sklearn\"\n",
            bases().busybox(),
            models.display()
        ),
    )
    .unwrap();
    file
}

/// `modelcar build -f FILE` with `extra` arguments.
fn project_build(s: &Setup, file: &Path, extra: &[&str]) -> Outcome {
    modelcar(&s.store)
        .cwd(file.parent().unwrap())
        .args(["build", "-f"])
        .arg(file)
        .args(extra)
        .run()
}

/// The index is as it was and no temporary file is left: nothing was tagged, nothing half
/// written (blobs of the refused image may stay as unreferenced cache, which `clean` removes).
#[track_caller]
fn nothing_tagged(store: &Path, before: &Snapshot, what: &str) {
    let after = snapshot(store);
    assert_eq!(after.index, before.index, "{what} changed the index");
    assert!(
        !after
            .files
            .keys()
            .any(|k| k.starts_with(".modelcar/tmp/") && !k.ends_with('/')),
        "{what} left temporary files: {:?}",
        after.files
    );
}

#[test]
fn a_build_whose_image_would_fail_verify_fails_unless_explicitly_allowed() {
    let s = Setup::new();
    // Modes a random UID in group 0 cannot read: refused before anything is written.
    let with_extra = s.models("with-extra", |d| {
        fs::write(d.join("extra.bin"), b"1").unwrap()
    });
    let file = project_file(&s, "unreadable", "file-mode = \"0400\"", &with_extra);
    let out = project_build(&s, &file, &[]).failure();
    out.stderr_has(&["0400", "cannot read", "--allow-failing-checks"]);
    s.unchanged("a build with file-mode 0400");

    // Allowed explicitly: built and tagged, with the failure as a warning; verify fails it.
    let out = project_build(&s, &file, &["--allow-failing-checks"]).success();
    out.stderr_has(&["warning:", "0400"]);
    let reference = "quay.io/test/unreadable:v1";
    let verdict = modelcar(&s.store).args(["verify", reference]).run();
    assert_eq!(verdict.status.code(), Some(1), "{}", verdict.all_output());
    assert!(
        verdict.stdout.contains("FAIL  permissions"),
        "{}",
        verdict.stdout
    );

    // A base whose own /models holds files nobody in group 0 can read, merged into the image:
    // only the check of the built image can see it, and it fails the build.
    let before = snapshot(&s.store);
    let other = s.models("other", |_| {});
    let out = modelcar(&s.store)
        .build(&other, "quay.io/test/on-unreadable:v1", reference)
        .run()
        .failure();
    out.stderr_has(&["permissions", "/models/extra.bin", "--allow-failing-checks"]);
    nothing_tagged(
        &s.store,
        &before,
        "a build on a base with unreadable /models entries",
    );
    // The project key opts out as the flag does.
    let file = project_file(
        &s,
        "allowed",
        "file-mode = \"0400\"\nallow-failing-checks = true",
        &example_model("sklearn"),
    );
    project_build(&s, &file, &[]).success();
}

#[test]
fn verify_exits_1_for_a_failing_image_and_2_for_an_error() {
    let s = Setup::new();
    let pass = modelcar(&s.store)
        .args(["verify", "quay.io/test/existing:v1"])
        .run()
        .success();
    assert!(pass.stdout.contains("pass  models"), "{}", pass.stdout);

    let file = project_file(
        &s,
        "failing",
        "file-mode = \"0400\"\nallow-failing-checks = true",
        &example_model("sklearn"),
    );
    project_build(&s, &file, &[]).success();
    let fail = modelcar(&s.store)
        .args(["verify", "quay.io/test/failing:v1"])
        .run();
    assert_eq!(fail.status.code(), Some(1), "{}", fail.all_output());
    assert!(
        fail.stderr.contains("will not work as a KServe modelcar"),
        "{}",
        fail.stderr
    );

    let garbage = s.path("garbage-layout");
    fs::create_dir_all(&garbage).unwrap();
    fs::write(
        garbage.join("oci-layout"),
        "{\"imageLayoutVersion\": \"1.0.0\"}",
    )
    .unwrap();
    fs::write(garbage.join("index.json"), "not json").unwrap();
    let garbage = format!("oci:{}", garbage.display());
    for (image, says) in [
        (garbage.as_str(), "index.json"),
        ("oci:/nonexistent/layout", "/nonexistent/layout"),
        ("Not A Reference", "Not A Reference"),
    ] {
        let err = modelcar(&s.store).args(["verify", image]).run();
        assert_eq!(err.status.code(), Some(2), "{image}: {}", err.all_output());
        assert!(
            err.stderr.contains("error: ") && err.stderr.contains(says),
            "{}",
            err.stderr
        );
        assert!(!err.stderr.contains("panicked"), "{}", err.stderr);
    }
    // A command line that does not parse: 2, for every command.
    for args in [&["verify"][..], &["images", "--no-such-flag"]] {
        let usage = modelcar(&s.store).args(args).run();
        assert_eq!(
            usage.status.code(),
            Some(2),
            "{args:?}: {}",
            usage.all_output()
        );
    }
}

/// A pipe whose reading end is closed before the command starts: every write fails with EPIPE.
#[test]
fn output_into_a_closed_pipe_ends_quietly_with_exit_0() {
    let s = Setup::new();
    for args in [
        &["images", "--json"][..],
        &["images"],
        &["inspect", "quay.io/test/existing:v1", "--files"],
        &["inspect", "quay.io/test/existing:v1", "--json"],
        &["verify", "quay.io/test/existing:v1"],
        &["kserve", "quay.io/test/existing:v1"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut cmd = modelcar(&s.store).args(args).command();
        cmd.stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped());
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.trim().is_empty(), "{args:?} printed: {stderr}");
    }
}

/// Rewrite a JSON blob of the store (`edit` changes it), write it under its new digest, and
/// return the new digest and size.
fn rewrite_blob(
    store: &Path,
    digest: &str,
    edit: impl FnOnce(&mut serde_json::Value),
) -> (String, u64) {
    let mut doc = read_json(&blob_path(store, digest));
    edit(&mut doc);
    let bytes = serde_json::to_vec(&doc).unwrap();
    let new = sha256(&bytes);
    fs::write(blob_path(store, &new), &bytes).unwrap();
    (new, bytes.len() as u64)
}

/// Text an attacker puts in an image: a newline, then a line that reads like a passing check, in
/// green, with a terminal-title escape and a bidirectional override.
const FORGED: &str = "x\n  pass  models       \x1b[32mall good\x1b[0m\x1b]0;owned\x07\u{202e}";
/// The same as a file name, ASCII only: the tar crate that reads layers back cannot parse a PAX
/// path holding a newline, and an ASCII name needs no PAX record.
const FORGED_FILE: &str = "x\n  pass  models       \x1b[32mall good\x1b[0m\x1b]0;owned\x07";

#[test]
fn control_characters_from_an_image_never_reach_the_terminal_and_json_keeps_them_exact() {
    let s = Setup::new();
    let models = s.models("hostile", |d| fs::write(d.join(FORGED_FILE), b"x").unwrap());
    let reference = "quay.io/test/hostile:v1";
    modelcar(&s.store).build_one(&models, reference, &bases().busybox(), &[]);

    // Put the same text in the config's User and a label, a manifest annotation, and the name
    // of a second entry of the store's index.
    let index_path = s.store.join("index.json");
    let mut index = read_json(&index_path);
    let entries = index["manifests"].as_array_mut().unwrap();
    let entry = entries
        .iter_mut()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == reference)
        .unwrap();
    let manifest_digest = entry["digest"].as_str().unwrap().to_string();
    let config_digest = read_json(&blob_path(&s.store, &manifest_digest))["config"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let (config, config_size) = rewrite_blob(&s.store, &config_digest, |c| {
        c["config"]["User"] = format!("1001{FORGED}").into();
        c["config"]["Labels"]["forged"] = FORGED.into();
    });
    let (manifest, manifest_size) = rewrite_blob(&s.store, &manifest_digest, |m| {
        m["config"]["digest"] = config.clone().into();
        m["config"]["size"] = config_size.into();
        m["annotations"]["forged"] = FORGED.into();
    });
    entry["digest"] = manifest.clone().into();
    entry["size"] = manifest_size.into();
    let mut evil = entry.clone();
    evil["annotations"]["org.opencontainers.image.ref.name"] =
        format!("quay.io/x/y:{FORGED}").into();
    entries.push(evil);
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let human = [
        modelcar(&s.store).args(["images"]).run().success(),
        modelcar(&s.store)
            .args(["inspect", reference, "--files"])
            .run()
            .success(),
        modelcar(&s.store).args(["verify", reference]).run(),
    ];
    for out in &human {
        for (stream, text) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            let bad: Vec<char> = text
                .chars()
                .filter(|c| (c.is_control() && *c != '\n') || *c == '\u{202e}')
                .collect();
            assert!(
                bad.is_empty(),
                "{}: {stream} holds {bad:?}:\n{text}",
                out.command
            );
            // The forged line never stands on its own: its text follows the escaped newline.
            for line in text.lines().filter(|l| l.contains("all good")) {
                assert!(
                    line.contains(r"x\n  pass"),
                    "{}: forged line {line:?}",
                    out.command
                );
            }
        }
    }
    let escaped = modelcar::text::escape(FORGED).into_owned();
    assert!(human[0].stdout.contains(&escaped), "{}", human[0].stdout);
    let escaped_file = modelcar::text::escape(FORGED_FILE).into_owned();
    assert!(
        human[1]
            .stdout
            .contains(&format!("/models/{escaped_file}\n")),
        "{}",
        human[1].stdout
    );
    assert!(
        human[1].stdout.contains(&format!("forged: {escaped}")),
        "{}",
        human[1].stdout
    );
    assert!(
        human[2].stdout.contains(&format!("1001{escaped}")),
        "{}",
        human[2].stdout
    );

    // JSON keeps every byte.
    let inspect = modelcar(&s.store)
        .args(["inspect", reference, "--files", "--json"])
        .run()
        .success()
        .json();
    assert_eq!(inspect["annotations"]["forged"], FORGED);
    let m = &inspect["manifests"][0];
    assert_eq!(m["labels"]["forged"], FORGED);
    assert_eq!(m["user"], format!("1001{FORGED}"));
    assert!(
        m["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"] == format!("/models/{FORGED_FILE}")),
        "{m}"
    );
    let images = modelcar(&s.store)
        .args(["images", "--json"])
        .run()
        .success()
        .json();
    assert!(
        images
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["reference"] == format!("quay.io/x/y:{FORGED}")),
        "{images}"
    );
    let verify = modelcar(&s.store)
        .args(["verify", reference, "--json"])
        .run()
        .json();
    // The user matters to the sidecar, so its finding is in that mode's report.
    let sidecar = verify["platforms"][0]["modes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mode"] == "sidecar")
        .unwrap_or_else(|| panic!("no sidecar mode: {verify}"));
    let user = sidecar["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == "user")
        .unwrap_or_else(|| panic!("no user finding: {verify}"))
        .clone();
    assert_eq!(user["message"], format!("runs as user 1001{FORGED}"));
}

#[test]
fn values_downstream_tools_refuse_are_refused_naming_the_key_and_the_form() {
    let s = Setup::new();
    let sklearn = example_model("sklearn");
    for (line, says) in [
        (
            "file-mode = 444",
            &["file-mode = 444", "file-mode = \"0444\""][..],
        ),
        (
            "dir-mode = \"4555\"",
            &["dir-mode", "setuid, setgid or sticky"],
        ),
        (
            "file-mode = \"1444\"",
            &["file-mode", "setuid, setgid or sticky"],
        ),
        ("owner = \"4294967296:0\"", &["owner", "4294967295"]),
    ] {
        let file = project_file(&s, "values", line, &sklearn);
        project_build(&s, &file, &[]).failure().stderr_has(says);
    }
    let pinned = format!("quay.io/test/new:v1@sha256:{}", "a".repeat(64));
    modelcar(&s.store)
        .build(&sklearn, &pinned, &bases().busybox())
        .run()
        .failure()
        .stderr_has(&["--tag", "digest"]);
    for epoch in ["253402300800", "-1"] {
        s.build(&sklearn, &bases().busybox())
            .env("SOURCE_DATE_EPOCH", epoch)
            .run()
            .failure()
            .stderr_has(&["SOURCE_DATE_EPOCH", epoch, "9999"]);
    }
    s.unchanged("builds with values downstream tools refuse");
}

#[test]
fn a_project_file_without_images_is_an_error() {
    let s = Setup::new();
    let dir = s.path("empty-project");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join("modelcar.toml");
    fs::write(&file, "registry = \"quay.io/test\"\n").unwrap();
    project_build(&s, &file, &[]).failure().stderr_has(&[
        &file.display().to_string(),
        "no images",
        "[images.NAME]",
    ]);
    s.unchanged("a build of a project without images");
}

#[test]
fn a_symlink_loop_in_the_model_directory_is_called_a_loop() {
    let s = Setup::new();
    let models = s.models("loop", |d| {
        symlink("b", d.join("a")).unwrap();
        symlink("a", d.join("b")).unwrap();
    });
    let out = s.build_fails(&models, &[]);
    let out = out.stderr_has(&["loop of symlinks"]);
    assert!(!out.stderr.contains("does not exist"), "{}", out.stderr);
    s.unchanged("a build with a symlink loop");
}

#[test]
fn an_error_quoting_a_name_with_control_characters_is_printed_escaped() {
    let s = Setup::new();
    let models = s.path(FORGED_FILE);
    let out = s.build_fails(&models, &[]);
    let bad: Vec<char> = out
        .stderr
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(bad.is_empty(), "stderr holds {bad:?}:\n{}", out.stderr);
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("error: "))
            .count(),
        1
    );
    let out = out.stderr_has(&[&modelcar::text::escape(FORGED_FILE), "does not exist"]);
    assert!(
        !out.stderr.lines().any(|l| l.starts_with("  pass")),
        "{}",
        out.stderr
    );
}

/// A small tmpfs, unmounted when dropped (the tests run as root).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(dir: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(dir).unwrap();
        tool_ok(
            "mount",
            [
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                dir.to_str().unwrap(),
            ],
        );
        SmallDisk(dir.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_build_with_a_hint_to_free_space_or_move_the_store() {
    let s = Setup::new();
    let disk = SmallDisk::mount(&s.path("small-disk"), "2m");
    let models = s.models("big", |d| write_random(&d.join("weights.bin"), 4 << 20, 7));
    let out = modelcar(&disk.0.join("store"))
        .build(&models, "quay.io/test/full:v1", &bases().busybox())
        .args(["--compression", "none"])
        .run()
        .failure()
        .stderr_has(&[
            "No space left on device",
            "hint: the disk holding that path is full",
            "--store",
        ]);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let tmp = disk.0.join("store/.modelcar/tmp");
    let left: Vec<_> = fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "temporary files left on the full disk: {left:?}"
    );
}

#[test]
fn a_sha512_digest_in_a_layout_is_called_unsupported_not_a_mismatch() {
    let s = Setup::new();
    let layout = s.path("sha512-layout");
    modelcar(&s.store)
        .args(["export", "quay.io/test/existing:v1"])
        .arg(format!("oci:{}:v1", layout.display()))
        .run()
        .success();
    let index_path = layout.join("index.json");
    let mut index = read_json(&index_path);
    index["manifests"][0]["digest"] = format!("sha512:{}", "a".repeat(128)).into();
    fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let out = modelcar(&s.store)
        .arg("verify")
        .arg(format!("oci:{}:v1", layout.display()))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", out.all_output());
    let out = out.stderr_has(&["sha512", "sha256 digests only"]);
    assert!(!out.stderr.contains("does not match"), "{}", out.stderr);
}

#[test]
fn a_base_whose_registry_cannot_be_reached_names_the_ways_out() {
    let s = Setup::new();
    // Port 1 on the loopback address: nothing listens, so the connection is refused at once.
    let out = s
        .build(&example_model("sklearn"), "127.0.0.1:1/base/busybox:v1")
        .run()
        .failure()
        .stderr_has(&[
            "the base image 127.0.0.1:1/base/busybox:v1 cannot be fetched",
            "registry 127.0.0.1:1 refused the connection",
            "hint: build on a base this machine has",
            "make offline-base && make BASE_IMAGE=oci:build/base:busybox build-all",
            "--base oci:DIR",
            "mirror",
        ]);
    assert!(!out.stderr.contains("--cert-dir"), "{}", out.stderr);
    s.unchanged("a build on an unreachable base");
}

#[test]
fn a_bare_name_outside_a_project_says_so_before_docker_hub_is_asked() {
    let s = Setup::new();
    let empty = s.path("elsewhere");
    fs::create_dir_all(&empty).unwrap();
    // Docker Hub is reached through a proxy on a closed loopback port: the lookup is made and
    // fails without leaving this machine.
    let out = modelcar(&s.store)
        .cwd(&empty)
        .env("HTTPS_PROXY", "http://127.0.0.1:1")
        .env("https_proxy", "http://127.0.0.1:1")
        .args(["inspect", "sklearn"])
        .run()
        .failure()
        .stderr_has(&[
            "note: `sklearn` names no image of a modelcar.toml here and none in the local store; \
             looking it up on Docker Hub (registry-1.docker.io) as docker.io/library/sklearn:latest",
            // Docker Hub's API is asked where it is served, as skopeo and containerd ask it.
            "https://registry-1.docker.io/v2/",
            "hint: name a project image from the project's directory or with --file",
        ]);
    let note = out.stderr.find("note: `sklearn`").unwrap();
    let error = out.stderr.find("error: ").unwrap();
    assert!(note < error, "the note should come first:\n{}", out.stderr);
}

#[test]
fn pushing_a_default_build_elsewhere_gives_the_command_that_works() {
    let s = Setup::new();
    let file = project_file(&s, "pushing", "", &example_model("sklearn"));
    project_build(&s, &file, &[]).success();
    let out = modelcar(&s.store)
        .cwd(file.parent().unwrap())
        .args(["push", "--registry", "127.0.0.1:1/other", "--all"])
        .run()
        .failure()
        .stderr_has(&[
            "image 127.0.0.1:1/other/pushing:v1 not found in the local store",
            "hint: the store has quay.io/test/pushing:v1",
            "`modelcar push quay.io/test/pushing:v1 127.0.0.1:1/other/pushing:v1`",
        ]);
    assert_eq!(
        out.stderr.matches("local store").count(),
        1,
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("--pull"), "{}", out.stderr);
    // The command the hint gives is one push takes: it parses and reaches for the registry.
    let follow = modelcar(&s.store)
        .cwd(file.parent().unwrap())
        .args([
            "push",
            "quay.io/test/pushing:v1",
            "127.0.0.1:1/other/pushing:v1",
        ])
        .run()
        .failure();
    assert!(
        follow
            .stderr
            .contains("registry 127.0.0.1:1 refused the connection"),
        "{}",
        follow.stderr
    );
}

#[test]
fn with_json_an_error_is_a_json_object_on_standard_output_too() {
    let s = Setup::new();
    let out = s
        .build(&s.path("no-such-dir"), &bases().busybox())
        .arg("--json")
        .run();
    assert_eq!(out.status.code(), Some(1), "{}", out.all_output());
    let v = out.json();
    assert!(v["error"].as_str().unwrap().contains("no-such-dir"), "{v}");
    assert!(v["hint"].is_string(), "{v}");
    assert_eq!(v["exit_code"], 1);
    assert!(out.stderr.contains("error: "), "{}", out.stderr);

    // verify's error (not a verdict) carries its own exit code, 2.
    let out = modelcar(&s.store)
        .args(["verify", "--json"])
        .arg(format!("oci:{}", s.path("missing-layout").display()))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", out.all_output());
    assert_eq!(out.json()["exit_code"], 2);
}

#[test]
fn verify_counts_in_words_and_keeps_every_message_in_one_column() {
    let s = Setup::new();
    // The example sklearn model is one file.
    let out = modelcar(&s.store)
        .args(["verify", "quay.io/test/existing:v1"])
        .run()
        .success();
    assert!(
        out.stdout.contains("/models holds 1 entry\n"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("1 entries"), "{}", out.stdout);
    // Each finding is `  MARK  CHECK  MESSAGE`: the messages all start in the same column.
    let starts: Vec<usize> = out
        .stdout
        .lines()
        .filter(|l| {
            ["  pass  ", "  WARN  ", "  FAIL  "]
                .iter()
                .any(|m| l.starts_with(m))
        })
        .map(|l| {
            let after_check = 8 + l[8..].find(' ').unwrap();
            after_check + l[after_check..].find(|c| c != ' ').unwrap()
        })
        .collect();
    assert!(starts.len() > 3, "{}", out.stdout);
    assert!(
        starts.iter().all(|&c| c == starts[0]),
        "{starts:?}\n{}",
        out.stdout
    );
}
