//! The README's transcripts are real.
//!
//! The quickstart's commands, between the `<!-- quickstart` and `<!-- /quickstart -->` markers,
//! run here against a real registry, and their standard output must be what the README shows,
//! digests aside (shown as `sha256:…`). `quay.io/you` stands for the test registry; `build/base`
//! is made by `scripts/offline-base.sh` (what `make offline-base` runs) in the directory the
//! commands run in.
//!
//! "What you get" (`<!-- build-all` ... `<!-- /build-all -->`) is `make build-all` of the example
//! project on the offline base, run in a copy of the project (Makefile, modelcar.toml, models),
//! and everything it prints (standard output and error, as a terminal shows them) must be what
//! the README shows, digests aside: they follow the base, built from the build machine's
//! `busybox-static`. Then `modelcar kserve sklearn` must print the `<!-- kserve` block.

mod support;

use std::fs;
use std::process::Command;

use support::fixtures::{example_model, repo_root};
use support::registries::Registry;

const MODELCAR: &str = env!("CARGO_BIN_EXE_modelcar");

/// The lines of the README between `<!-- NAME` and `<!-- /NAME -->`, without code fences and
/// markers.
fn block(name: &str) -> Vec<String> {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find(&format!("<!-- {name}"))
        .unwrap_or_else(|| panic!("README: no `<!-- {name}` marker"));
    let end = readme
        .find(&format!("<!-- /{name} -->"))
        .unwrap_or_else(|| panic!("README: no `<!-- /{name} -->` marker"));
    readme[start..end]
        .lines()
        .filter(|l| !l.starts_with("```") && !l.starts_with("<!--"))
        .map(str::to_string)
        .collect()
}

/// The commands (`$ ` lines) of a README block and the output shown after each.
fn transcript(name: &str) -> Vec<(String, Vec<String>)> {
    let mut steps: Vec<(String, Vec<String>)> = Vec::new();
    for line in block(name) {
        if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push((cmd.to_string(), Vec::new()));
        } else if let Some((_, out)) = steps.last_mut() {
            out.push(line);
        }
    }
    steps
}

/// Digests as the README shows them.
fn elide_digests(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("sha256:") {
        let (head, tail) = rest.split_at(i + "sha256:".len());
        out.push_str(head);
        let hex = tail.chars().take_while(char::is_ascii_hexdigit).count();
        if hex == 64 {
            out.push('…');
            rest = &tail[64..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn the_quickstart_runs_and_prints_what_the_readme_shows() {
    let steps = transcript("quickstart");
    assert!(steps.len() >= 4, "{steps:?}");
    let reg = Registry::plain();
    let dir = support::files::temp();
    let work = dir.path();
    let model = work.join("my-model");
    fs::create_dir(&model).unwrap();
    fs::copy(
        example_model("sklearn").join("model.joblib"),
        model.join("model.joblib"),
    )
    .unwrap();
    let base = work.join("build/base");
    let made = Command::new(repo_root().join("scripts/offline-base.sh"))
        .arg(&base)
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    let bin = work.join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(MODELCAR, bin.join("modelcar")).unwrap();
    let here = format!("{}/you", reg.host());
    let mut mismatches = Vec::new();
    for (cmd, shown) in &steps {
        let out = Command::new("sh")
            .arg("-c")
            .arg(cmd.replace("quay.io/you", &here))
            .current_dir(work)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .env("HOME", work)
            .env("MODELCAR_STORE", work.join("store"))
            .env("REGISTRY_AUTH_FILE", work.join("auth.json"))
            .env_remove("REGISTRY")
            .env_remove("VERSION")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "`{cmd}` failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = elide_digests(&stdout.replace(&here, "quay.io/you"));
        let want = shown.join("\n");
        if got.trim_end() != want.trim_end() {
            mismatches.push(format!("$ {cmd}\n--- README\n{want}\n--- actual\n{got}"));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}

/// Copy the files of `from` into `to`, recursively (the example models are a few kilobytes).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn make_build_all_prints_what_the_readme_shows() {
    let steps = transcript("build-all");
    assert_eq!(steps.len(), 1, "one make command: {steps:?}");
    let (cmd, shown) = &steps[0];
    assert!(
        cmd.starts_with("make ") && cmd.ends_with(" build-all"),
        "{cmd}"
    );

    // The project, copied: make runs in its directory and writes build/ and target/ there.
    let dir = support::files::temp();
    let work = dir.path();
    let root = repo_root();
    for file in ["Makefile", "modelcar.toml"] {
        fs::copy(root.join(file), work.join(file)).unwrap();
    }
    copy_tree(&root.join("models"), &work.join("models"));
    let made = Command::new(root.join("scripts/offline-base.sh"))
        .arg(work.join("build/base"))
        .output()
        .unwrap();
    assert!(made.status.success(), "{made:?}");
    // make runs `cargo build --release` (a release compile takes minutes) and then
    // target/release/modelcar: here the binary cargo built for the tests stands at that path,
    // and `cargo` on PATH is a stand-in that accepts exactly that command line and does nothing.
    fs::create_dir_all(work.join("target/release")).unwrap();
    std::os::unix::fs::symlink(MODELCAR, work.join("target/release/modelcar")).unwrap();
    let bin = work.join("bin");
    fs::create_dir(&bin).unwrap();
    let cargo = bin.join("cargo");
    fs::write(
        &cargo,
        "#!/bin/sh\n[ \"$*\" = 'build --release --locked --quiet' ] || { echo \"cargo stand-in: unexpected arguments: $*\" >&2; exit 1; }\n",
    )
    .unwrap();
    fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut make = Command::new("sh");
    make.arg("-c")
        .arg(format!("{cmd} 2>&1"))
        .current_dir(work)
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", work)
        .env("MODELCAR_STORE", work.join("store"));
    // What would change make's output or modelcar's settings when the tests run under make or
    // with these set.
    for k in [
        "REGISTRY",
        "VERSION",
        "BASE_IMAGE",
        "MAKEFLAGS",
        "MFLAGS",
        "MAKELEVEL",
        "MAKEOVERRIDES",
        "CARGO",
        "CARGO_TARGET_DIR",
        "SOURCE_DATE_EPOCH",
    ] {
        make.env_remove(k);
    }
    let out = make.output().unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "`{cmd}` failed:\n{printed}");
    let got = elide_digests(&printed);
    let want = shown.join("\n");
    assert_eq!(
        got.trim_end(),
        want.trim_end(),
        "`{cmd}`: the README shows\n{want}\n--- make printed\n{got}"
    );

    // The InferenceService shown after it.
    let kserve = Command::new(work.join("target/release/modelcar"))
        .args(["kserve", "sklearn", "--name", "sklearn-iris"])
        .current_dir(work)
        .env("HOME", work)
        .env("MODELCAR_STORE", work.join("store"))
        .env_remove("REGISTRY")
        .env_remove("VERSION")
        .output()
        .unwrap();
    assert!(kserve.status.success(), "{kserve:?}");
    assert_eq!(
        elide_digests(&String::from_utf8_lossy(&kserve.stdout)).trim_end(),
        block("kserve").join("\n").trim_end()
    );
}
